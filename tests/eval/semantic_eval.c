/* semantic_eval.c — routing accuracy of the builtin embedder with the
 * semantic index alone, on a labelled JSON-lines routing file.
 *
 *   semantic_eval [FILE.jsonl] [--no-idf]
 *
 * Each line is {"id","route","messages":[{"role","content"}...]}. For
 * split k (k = 0..4), rows 10k+1..10k+10 of each route in file order are
 * the route's examples (they also fit the IDF, like a config's examples
 * would) and the route's other rows are scored. Split 0 (the first 10
 * rows) is the reported one: accuracy and per-route precision, recall and
 * F1 for the centroid, max and average comparisons, embedding either the
 * whole conversation (every message content joined by '\n', as
 * route_text.conversation) or the last user message only. The mean
 * accuracy over the 5 splits shows whether split 0 is a lucky one. Ids
 * and texts are never printed. Exit 2 on bad input. Built and run by
 * tests/eval/semantic_eval.sh. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/core.h"
#include "routing/embed.h"
#include "routing/semantic.h"

#define N_ROUTES 5
#define N_SPLITS 5
#define PER_SPLIT 10

static const char *const route_names[N_ROUTES] = {
	"pii", "coding", "regulatory", "fast", "general"
};
static const char *const cmp_names[] = { "centroid", "max", "average" };

struct row {
	int route;
	int ordinal;           /* 0-based position among its route's rows */
	char *conversation;
	char *last_user;
};

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char tmp[65536];
	size_t r;

	if (!f)
		return NULL;
	buf_init(&b, 64u << 20);
	while ((r = fread(tmp, 1, sizeof(tmp), f)) > 0)
		if (buf_append(&b, tmp, r) != UMB_OK)
			break;
	fclose(f);
	*len = b.n;
	return b.p ? b.p : umb_strdup("");
}

static int route_index(const char *name)
{
	for (int r = 0; r < N_ROUTES; r++)
		if (strcmp(name, route_names[r]) == 0)
			return r;
	return -1;
}

/* Parse the file into rows; returns the count or -1 on bad input. */
static long load(const char *path, struct row **out)
{
	size_t len, n = 0, cap = 0;
	char *data = slurp(path, &len), *line, *save = NULL;
	int seen[N_ROUTES] = { 0 };
	struct row *rows = NULL;

	if (!data) {
		perror(path);
		return -1;
	}
	for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		cJSON *j = cJSON_Parse(line), *route, *msgs, *m;
		struct buf conv, last;
		int r;

		if (!j)
			continue;
		route = cJSON_GetObjectItemCaseSensitive(j, "route");
		msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
		if (!cJSON_IsString(route) || !cJSON_IsArray(msgs) ||
		    (r = route_index(route->valuestring)) < 0) {
			fprintf(stderr, "%s: line %zu: no route/messages\n", path, n + 1);
			cJSON_Delete(j);
			free(data);
			return -1;
		}
		buf_init(&conv, 0);
		buf_init(&last, 0);
		cJSON_ArrayForEach(m, msgs) {
			cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
			cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");

			if (!cJSON_IsString(content))
				continue;
			if (conv.n)
				buf_append_lit(&conv, "\n");
			buf_append_cstr(&conv, content->valuestring);
			if (cJSON_IsString(role) && strcmp(role->valuestring, "user") == 0) {
				buf_reset(&last);
				buf_append_cstr(&last, content->valuestring);
			}
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			rows = umb_realloc(rows, cap * sizeof(*rows));
		}
		rows[n].route = r;
		rows[n].ordinal = seen[r]++;
		rows[n].conversation = conv.p ? conv.p : umb_strdup("");
		rows[n].last_user = last.p ? last.p : umb_strdup("");
		n++;
		cJSON_Delete(j);
	}
	free(data);
	*out = rows;
	return (long)n;
}

struct score {
	unsigned tested, correct;
	unsigned tp[N_ROUTES], fp[N_ROUTES], fn[N_ROUTES];
};

static double f1(unsigned tp, unsigned fp, unsigned fn)
{
	return tp ? 2.0 * tp / (2.0 * tp + fp + fn) : 0.0;
}

static bool is_example(const struct row *r, int split)
{
	return r->ordinal >= split * PER_SPLIT && r->ordinal < (split + 1) * PER_SPLIT;
}

static const char *row_text(const struct row *r, bool last_user)
{
	return last_user ? r->last_user : r->conversation;
}

/* Embed every row, index the split's examples, score the rest with each
 * comparison. Adds embedding time and bytes to *ns / *bytes. */
static void run_split(const struct row *rows, size_t n, int split, bool last_user,
		      bool idf, struct score sc[3], uint64_t *ns, uint64_t *bytes)
{
	struct str *corpus = umb_calloc(n, sizeof(*corpus));
	size_t nc = 0, dim;
	struct embed_builtin *e;
	struct sem_index *ix;
	float *vecs;

	for (size_t i = 0; i < n; i++)
		if (is_example(&rows[i], split))
			corpus[nc++] = str_cstr(row_text(&rows[i], last_user));
	e = embed_builtin_new(idf ? corpus : NULL, idf ? nc : 0);
	dim = embed_builtin_dim(e);
	vecs = umb_malloc(n * dim * sizeof(float));
	for (size_t i = 0; i < n; i++) {
		struct str t = str_cstr(row_text(&rows[i], last_user));
		uint64_t t0 = clock_mono_ns();

		embed_builtin_vec(e, t, vecs + i * dim);
		*ns += clock_mono_ns() - t0;
		*bytes += t.n;
	}
	ix = sem_index_new(N_ROUTES, dim);
	for (size_t i = 0; i < n; i++)
		if (is_example(&rows[i], split) &&
		    sem_index_add(ix, (size_t)rows[i].route, vecs + i * dim) != UMB_OK)
			fprintf(stderr, "warning: an example without features\n");
	sem_index_finish(ix);
	memset(sc, 0, 3 * sizeof(*sc));
	for (int c = 0; c < 3; c++) {
		for (size_t i = 0; i < n; i++) {
			struct sem_result res;
			int want = rows[i].route;

			if (is_example(&rows[i], split))
				continue;
			sem_index_query(ix, (enum sem_comparison)c, vecs + i * dim, &res);
			sc[c].tested++;
			if (res.route == want) {
				sc[c].correct++;
				sc[c].tp[want]++;
			} else {
				sc[c].fn[want]++;
				if (res.route >= 0)
					sc[c].fp[res.route]++;
			}
		}
	}
	sem_index_free(ix);
	free(vecs);
	embed_builtin_free(e);
	free(corpus);
}

static void print_split(const struct score sc[3], const char *what)
{
	printf("\n### %s\n\n", what);
	printf("| comparison | accuracy |");
	for (int r = 0; r < N_ROUTES; r++)
		printf(" %s P / R / F1 |", route_names[r]);
	printf("\n|---|---:|");
	for (int r = 0; r < N_ROUTES; r++)
		printf("---:|");
	printf("\n");
	for (int c = 0; c < 3; c++) {
		printf("| %s | %.3f (%u/%u) |", cmp_names[c],
		       (double)sc[c].correct / sc[c].tested, sc[c].correct, sc[c].tested);
		for (int r = 0; r < N_ROUTES; r++) {
			unsigned tp = sc[c].tp[r], fp = sc[c].fp[r], fn = sc[c].fn[r];

			printf(" %.2f / %.2f / %.2f |", tp + fp ? (double)tp / (tp + fp) : 0.0,
			       tp + fn ? (double)tp / (tp + fn) : 0.0, f1(tp, fp, fn));
		}
		printf("\n");
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Median of 7 runs of the ns per KB to embed `len` bytes of the corpus
 * (all conversations concatenated, repeated as needed). */
static double speed_ns_per_kb(const struct row *rows, size_t n, size_t len)
{
	struct buf all;
	char *t = umb_malloc(len);
	struct embed_builtin *e = embed_builtin_new(NULL, 0);
	float *v = umb_malloc(embed_builtin_dim(e) * sizeof(float));
	unsigned iters = len <= 4096 ? 2000 : len <= (1u << 20) ? 20 : 2;
	uint64_t rep[7];

	buf_init(&all, 0);
	for (size_t i = 0; i < n; i++) {
		buf_append_cstr(&all, rows[i].conversation);
		buf_append_lit(&all, "\n");
	}
	for (size_t k = 0; k < len; k++)
		t[k] = all.p[k % all.n];
	for (size_t r = 0; r < UMB_ARRAY_LEN(rep); r++) {
		uint64_t t0 = clock_mono_ns();

		for (unsigned it = 0; it < iters; it++)
			embed_builtin_vec(e, str_make(t, len), v);
		rep[r] = (clock_mono_ns() - t0) / iters;
	}
	qsort(rep, UMB_ARRAY_LEN(rep), sizeof(rep[0]), cmp_u64);
	buf_clear(&all);
	free(v);
	free(t);
	embed_builtin_free(e);
	return (double)rep[UMB_ARRAY_LEN(rep) / 2] / ((double)len / 1024.0);
}

int main(int argc, char **argv)
{
	const char *path = "../shared/data/routing-dev.jsonl";
	bool idf = true;
	struct row *rows = NULL;
	long n;

	for (int a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--no-idf") == 0)
			idf = false;
		else if (argv[a][0] == '-') {
			fprintf(stderr, "usage: %s [FILE.jsonl] [--no-idf]\n", argv[0]);
			return 2;
		} else
			path = argv[a];
	}
	n = load(path, &rows);
	if (n <= 0)
		return 2;
	printf("Builtin embedder + semantic index on %s (%ld rows), IDF %s\n", path, n,
	       idf ? "fitted on the examples" : "off");

	{
		double mean[2][3] = { { 0 } }, lo[2][3], hi[2][3];
		uint64_t ns = 0, bytes = 0;

		for (int mode = 0; mode < 2; mode++) {
			for (int s = 0; s < N_SPLITS; s++) {
				struct score sc[3];

				run_split(rows, (size_t)n, s, mode == 1, idf, sc, &ns, &bytes);
				if (s == 0) {
					char what[160];

					snprintf(what, sizeof(what),
						 "examples: rows 1-10 of each route; text: %s",
						 mode ? "last user message" : "conversation");
					print_split(sc, what);
				}
				for (int c = 0; c < 3; c++) {
					double acc = (double)sc[c].correct / sc[c].tested;

					mean[mode][c] += acc / N_SPLITS;
					lo[mode][c] = s == 0 || acc < lo[mode][c] ? acc : lo[mode][c];
					hi[mode][c] = s == 0 || acc > hi[mode][c] ? acc : hi[mode][c];
				}
			}
		}
		printf("\n### accuracy over %d splits (rows 10k+1..10k+10 of each route as "
		       "examples, k = 0..%d): mean [min, max]\n\n", N_SPLITS, N_SPLITS - 1);
		printf("| text | centroid | max | average |\n|---|---:|---:|---:|\n");
		for (int mode = 0; mode < 2; mode++) {
			printf("| %s |", mode ? "last user" : "conversation");
			for (int c = 0; c < 3; c++)
				printf(" %.3f [%.3f, %.3f] |", mean[mode][c], lo[mode][c], hi[mode][c]);
			printf("\n");
		}
		printf("\nspeed: %.1f us/KB mean over every embedding above (%.1f KB); "
		       "median of 7: %.1f us/KB on 1 KB, %.1f us/KB on 100 KB, "
		       "%.1f us/KB on 8 MB\n",
		       bytes ? (double)ns / 1e3 / ((double)bytes / 1024.0) : 0.0,
		       (double)bytes / 1024.0,
		       speed_ns_per_kb(rows, (size_t)n, 1024) / 1e3,
		       speed_ns_per_kb(rows, (size_t)n, 100 * 1024) / 1e3,
		       speed_ns_per_kb(rows, (size_t)n, 8u << 20) / 1e3);
	}
	for (long i = 0; i < n; i++) {
		free(rows[i].conversation);
		free(rows[i].last_user);
	}
	free(rows);
	return 0;
}
