/* json_bench.c — parse cost of chat bodies: jansson, cJSON, yajl (tree and
 * SAX) against core/json's validating scanner (json_parse_top, the hot
 * path, and plain json_parse).
 *
 * usage: json_bench BODY.json...   (bodies from gen_bodies.py)
 * Prints one markdown row per parser with the median microseconds per
 * parse (including the library's free) for each body.
 *
 * Each sample times a batch of parses sized to last >= ~50 us so the clock
 * read does not dominate 1 KB parses; the median over many samples drops
 * scheduler noise. Build with -O2 like the libraries.
 *
 * jansson's JSON_OBJECT... enumerators and json_is_true macro collide with
 * core/json.h, so the core/json calls live in json_bench_core.c. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <jansson.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#define BENCH_SAMPLES 301
#define BENCH_MAX_FILES 4

struct body {
	const char *name;
	char *p; /* NUL-terminated: yajl_tree_parse needs it */
	size_t n;
};

typedef int (*parse_cb)(const struct body *b);

static int parse_jansson(const struct body *b)
{
	json_error_t e;
	json_t *j = json_loadb(b->p, b->n, 0, &e);
	if (!j)
		return -1;
	json_decref(j);
	return 0;
}

static int parse_cjson(const struct body *b)
{
	cJSON *j = cJSON_ParseWithLength(b->p, b->n);
	if (!j)
		return -1;
	cJSON_Delete(j);
	return 0;
}

static int parse_yajl_tree(const struct body *b)
{
	char eb[128];
	yajl_val v = yajl_tree_parse(b->p, eb, sizeof(eb));
	if (!v)
		return -1;
	yajl_tree_free(v);
	return 0;
}

/* SAX with no callbacks: yajl still validates the whole text (UTF-8
 * included, the default), it just builds nothing. */
static int parse_yajl_sax(const struct body *b)
{
	static const yajl_callbacks cbs;
	yajl_handle h = yajl_alloc(&cbs, NULL, NULL);
	int rc = 0;

	if (yajl_parse(h, (const unsigned char *)b->p, b->n) != yajl_status_ok ||
	    yajl_complete_parse(h) != yajl_status_ok)
		rc = -1;
	yajl_free(h);
	return rc;
}

/* json_bench_core.c */
int bench_core_parse_top(const char *p, size_t n);
int bench_core_parse(const char *p, size_t n);

static int parse_umbra_top(const struct body *b)
{
	return bench_core_parse_top(b->p, b->n);
}

static int parse_umbra(const struct body *b)
{
	return bench_core_parse(b->p, b->n);
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median microseconds per parse of b. */
static double bench(parse_cb fn, const struct body *b)
{
	static double samples[BENCH_SAMPLES];
	int batch = 1;
	double t;

	/* warm up, and size the batch to >= 50 us */
	for (;;) {
		t = now_us();
		for (int i = 0; i < batch; i++)
			fn(b);
		t = now_us() - t;
		if (t >= 50.0)
			break;
		batch *= 2;
	}
	for (int s = 0; s < BENCH_SAMPLES; s++) {
		t = now_us();
		for (int i = 0; i < batch; i++)
			fn(b);
		samples[s] = (now_us() - t) / batch;
	}
	qsort(samples, BENCH_SAMPLES, sizeof(double), cmp_double);
	return samples[BENCH_SAMPLES / 2];
}

static int load(const char *path, struct body *b)
{
	FILE *f = fopen(path, "rb");
	long n;

	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b->p = malloc((size_t)n + 1);
	b->n = fread(b->p, 1, (size_t)n, f);
	b->p[b->n] = 0;
	b->name = path;
	fclose(f);
	return b->n == (size_t)n ? 0 : -1;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		parse_cb fn;
	} parsers[] = {
		{ "jansson (tree)", parse_jansson },
		{ "cJSON (tree)", parse_cjson },
		{ "yajl (tree)", parse_yajl_tree },
		{ "yajl (SAX, no callbacks)", parse_yajl_sax },
		{ "core/json json_parse_top", parse_umbra_top },
		{ "core/json json_parse", parse_umbra },
	};
	struct body bodies[BENCH_MAX_FILES];
	int nb = argc - 1;

	if (nb < 1 || nb > BENCH_MAX_FILES) {
		fprintf(stderr, "usage: %s BODY.json...\n", argv[0]);
		return 2;
	}
	for (int i = 0; i < nb; i++) {
		if (load(argv[i + 1], &bodies[i])) {
			fprintf(stderr, "cannot read %s\n", argv[i + 1]);
			return 1;
		}
	}

	printf("| parser |");
	for (int i = 0; i < nb; i++)
		printf(" %zu B (median us) |", bodies[i].n);
	printf("\n|---|");
	for (int i = 0; i < nb; i++)
		printf("---:|");
	printf("\n");
	for (size_t k = 0; k < sizeof(parsers) / sizeof(parsers[0]); k++) {
		printf("| %s |", parsers[k].name);
		for (int i = 0; i < nb; i++) {
			if (parsers[k].fn(&bodies[i]) != 0) {
				printf(" rejected |");
				continue;
			}
			printf(" %.2f |", bench(parsers[k].fn, &bodies[i]));
		}
		printf("\n");
		fflush(stdout);
	}
	for (int i = 0; i < nb; i++)
		free(bodies[i].p);
	return 0;
}
