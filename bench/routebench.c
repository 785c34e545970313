/* routebench.c — micro-benchmark of the routing layers that run on every
 * `model: "auto"` request: the detectors (heur_detect) and the heuristic
 * rules (heur_match), on 1 KB and 100 KB English prompts, with a
 * realistic rule set (5 rules, 60 keywords, 2 regexes, one custom
 * detector); then the builtin embedder with a semantic query over five
 * routes of ten examples each (the first rows of each route).
 *
 * build: make && cc -O2 -std=c11 -D_GNU_SOURCE -Isrc bench/routebench.c \
 *          build/libumbra.a -levent_core -levent_pthreads -lcurl -lnghttp2 \
 *          -lssl -lcrypto -lyaml -lsqlite3 -lpq -lpcre2-8 -lcjson -lm -pthread \
 *          -o build/routebench
 * usage: build/routebench [routing-dev.jsonl]   (default ../shared/data/)
 *
 * The prompts are the dataset's message texts joined by '\n' and repeated
 * up to the size (cut at a UTF-8 boundary): "general" uses only rows
 * labelled general (few keywords: most rules are evaluated to the end,
 * close to the worst case), "mixed" every row (rules match early). The
 * text is both the conversation and the last user message. Without the
 * file an embedded paragraph is repeated.
 *
 * Each sample times a batch of calls lasting >= ~200 us; the figure is
 * the median over BENCH_SAMPLES samples, in ns per request. */
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "routing/embed.h"
#include "routing/heuristics.h"
#include "routing/semantic.h"

#define BENCH_SAMPLES 201

static const char fallback[] =
	"Could you help me plan the quarterly offsite for the operations team? "
	"We are about forty people, the budget is modest, and we would like a "
	"mix of workshops and outdoor time. Please suggest an agenda for two "
	"days, a short list of venue criteria, and a reminder email to send "
	"three weeks before. Keep the tone friendly and the plan realistic.\n";

/* ---- the realistic config ---- */

#define LIST(...) ((char *[]){ __VA_ARGS__ })
#define NLIST(...) (sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *))
#define KW(...) .keywords = LIST(__VA_ARGS__), .n_keywords = NLIST(__VA_ARGS__)

static struct cfg_detector dets[] = {
	{ .name = "account_ref", .regex = "\\b(?:ACC|CUST)-\\d{6,}\\b" },
};

static struct cfg_rule rules[] = {
	{ .name = "pii", .route = "onprem",
	  .detectors = LIST("email", "credit_card", "ssn", "iban", "phone", "account_ref"),
	  .n_detectors = 6 },
	{ .name = "pii-words", .route = "onprem",
	  KW("customer record", "account holder", "date of birth", "passport number",
	     "kyc file", "loan file", "payslip", "national insurance number",
	     "tax id", "medical record", "home address", "credit score") },
	{ .name = "coding", .route = "coder",
	  KW("python", "java", "javascript", "typescript", "c++", "c#", ".net", "rust",
	     "golang", "sql", "bash", "shell script", "dockerfile", "kubernetes",
	     "terraform", "yaml", "regex", "stack trace", "traceback", "segfault",
	     "refactor", "unit test", "compile", "linter", "git", "ci/cd",
	     "github actions", "vlookup", "excel formula", "null pointer", "api",
	     "json", "docker", "lambda function", "pull request"),
	  .exclude = LIST("homework"), .n_exclude = 1,
	  .regex = LIST("(?m)^\\s*(?:def|class|import|public|SELECT|INSERT)\\b"), .n_regex = 1 },
	{ .name = "regulatory", .route = "analyst",
	  KW("basel", "crr", "dodd-frank", "mifid", "gdpr", "finra", "aml", "sox",
	     "dora", "liquidity coverage", "capital requirement", "supervisory"),
	  .regex = LIST("(?i)\\barticle\\s+\\d+(?:\\(\\d+\\))?"), .n_regex = 1 },
	{ .name = "fast", .route = "small", .message_length_lt = 80 },
};

/* ---- prompts ---- */

struct text {
	char *p;
	size_t n;
};

/* Message contents of rows whose route is `route` (NULL: all), joined. */
static struct text load(const char *path, const char *route)
{
	struct text t = { 0 };
	FILE *f = fopen(path, "r");
	char line[1 << 16];
	size_t cap = 0;

	if (!f)
		return t;
	while (fgets(line, sizeof(line), f)) {
		cJSON *j = cJSON_Parse(line), *m, *msgs;
		cJSON *r = cJSON_GetObjectItem(j, "route");

		if (!j)
			continue;
		if (route && (!cJSON_IsString(r) || strcmp(r->valuestring, route))) {
			cJSON_Delete(j);
			continue;
		}
		msgs = cJSON_GetObjectItem(j, "messages");
		cJSON_ArrayForEach(m, msgs) {
			cJSON *c = cJSON_GetObjectItem(m, "content");
			size_t l;

			if (!cJSON_IsString(c))
				continue;
			l = strlen(c->valuestring);
			if (t.n + l + 2 > cap) {
				cap = (t.n + l + 2) * 2;
				t.p = realloc(t.p, cap);
			}
			memcpy(t.p + t.n, c->valuestring, l);
			t.n += l;
			t.p[t.n++] = '\n';
		}
		cJSON_Delete(j);
	}
	fclose(f);
	return t;
}

/* src repeated to n bytes, cut at a UTF-8 boundary. */
static struct text sized(struct text src, size_t n)
{
	struct text t = { malloc(n), 0 };

	while (t.n < n) {
		size_t k = UMB_MIN(src.n, n - t.n);

		memcpy(t.p + t.n, src.p, k);
		t.n += k;
	}
	t.n = utf8_complete_prefix(t.p, t.n);
	return t;
}

/* ---- timing ---- */

enum what { W_FULL, W_FULL_CUSTOM, W_DETECT, W_MATCH, W_EMBED };

struct ctx {
	const struct heuristics *h;
	struct route_text rt;
	struct det_counts dc;
	int match;
	const struct embed_builtin *emb;
	const struct sem_index *ix;
	float *vec;
	struct sem_result res;
};

static void run_once(struct ctx *c, enum what w)
{
	switch (w) {
	case W_FULL:
		heur_detect(c->h, c->rt.conversation, PII_ALL, &c->dc);
		c->match = heur_match(c->h, &c->rt, &c->dc);
		break;
	case W_FULL_CUSTOM:
		heur_detect(c->h, c->rt.conversation, heur_detectors_needed(c->h), &c->dc);
		c->match = heur_match(c->h, &c->rt, &c->dc);
		break;
	case W_DETECT:
		heur_detect(c->h, c->rt.conversation, PII_ALL, &c->dc);
		break;
	case W_MATCH:
		c->match = heur_match(c->h, &c->rt, &c->dc);
		break;
	case W_EMBED:
		embed_builtin_vec(c->emb, c->rt.last_user, c->vec);
		sem_index_query(c->ix, SEM_CENTROID, c->vec, &c->res);
		break;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Median ns per call. */
static double bench(struct ctx *c, enum what w)
{
	static uint64_t s[BENCH_SAMPLES];
	unsigned batch = 1;
	uint64_t t0;

	for (;;) { /* size the batch */
		t0 = clock_mono_ns();
		for (unsigned i = 0; i < batch; i++)
			run_once(c, w);
		if (clock_mono_ns() - t0 >= 200000 || batch >= 1u << 20)
			break;
		batch *= 2;
	}
	for (int k = 0; k < BENCH_SAMPLES; k++) {
		t0 = clock_mono_ns();
		for (unsigned i = 0; i < batch; i++)
			run_once(c, w);
		s[k] = clock_mono_ns() - t0;
	}
	qsort(s, BENCH_SAMPLES, sizeof(s[0]), cmp_u64);
	return (double)s[BENCH_SAMPLES / 2] / batch;
}

/* The builtin embedder and a centroid query: 10 examples per route. */
static int bench_embedder(const char *path)
{
	static const char *const routes[] = { "pii", "coding", "regulatory", "fast", "general" };
	struct str ex[50];
	struct text keep[5];
	size_t n = 0;
	for (size_t r = 0; r < 5; r++) {
		keep[r] = load(path, routes[r]);
		/* load() joins the route's message texts with newlines: the first
		 * ten lines stand in for examples (this measures speed, not quality) */
		const char *p = keep[r].p, *end = p ? p + keep[r].n : p;
		for (size_t k = 0; p && p < end && k < 10; k++) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
			ex[n++] = str_make(p, len);
			p += len + 1;
		}
	}
	if (!n) {
		ex[n++] = str_make(fallback, sizeof(fallback) - 1);
		keep[0] = (struct text){ strdup(fallback), sizeof(fallback) - 1 };
	}
	struct embed_builtin *e = embed_builtin_new(ex, n);
	struct sem_index *ix = sem_index_new(5, embed_builtin_dim(e));
	float *v = malloc(embed_builtin_dim(e) * sizeof *v);
	for (size_t i = 0; i < n; i++) {
		embed_builtin_vec(e, ex[i], v);
		sem_index_add(ix, i / 10, v);
	}
	sem_index_finish(ix);
	printf("\nbuiltin embedder (%zu dims) + centroid query, %zu examples:\n\n", embed_builtin_dim(e), n);
	printf("| prompt | size | embed + query |\n|---|---:|---:|\n");
	static const size_t sizes[] = { 200, 1024, 100 * 1024 };
	struct text src = keep[4].n ? keep[4] : keep[0];
	for (size_t z = 0; z < UMB_ARRAY_LEN(sizes); z++) {
		struct text t = sized(src, sizes[z]);
		struct ctx c = { .emb = e, .ix = ix, .vec = v };
		c.rt.last_user = str_make(t.p, t.n);
		double ns = bench(&c, W_EMBED);
		printf("| general | %zu B | %.2f us |\n", t.n, ns / 1e3);
		free(t.p);
	}
	for (size_t r = 0; r < 5; r++)
		free(keep[r].p);
	free(v);
	sem_index_free(ix);
	embed_builtin_free(e);
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "../shared/data/routing-dev.jsonl";
	struct cfg_routing rt = { .enabled = true, .rules = rules,
				  .n_rules = UMB_ARRAY_LEN(rules), .detectors = dets,
				  .n_detectors = UMB_ARRAY_LEN(dets) };
	/* "general+kw": general text ending with keywords of the coding and
	 * regulatory rules, so both regexes run over the whole text too */
	static const char *const kinds[] = { "general", "general+kw", NULL };
	static const size_t sizes[] = { 1024, 100 * 1024 };
	char err[256];
	size_t nkw = 0, nre = 0;
	struct heuristics *h = heur_compile(&rt, err, sizeof(err));

	if (!h) {
		fprintf(stderr, "routebench: %s\n", err);
		return 1;
	}
	for (size_t i = 0; i < UMB_ARRAY_LEN(rules); i++)
		nkw += rules[i].n_keywords + rules[i].n_exclude, nre += rules[i].n_regex;
	printf("config: %zu rules, %zu keywords, %zu regexes, %zu custom detector\n\n",
	       UMB_ARRAY_LEN(rules), nkw, nre, UMB_ARRAY_LEN(dets));
	printf("| prompt | size | rule | detect(built-ins)+match | +custom detector | detect only | match only |\n");
	printf("|---|---:|---:|---:|---:|---:|---:|\n");
	for (size_t k = 0; k < UMB_ARRAY_LEN(kinds); k++) {
		bool kw = kinds[k] && strcmp(kinds[k], "general+kw") == 0;
		struct text src = load(path, kw ? "general" : kinds[k]);

		if (!src.n)
			src = (struct text){ strdup(fallback), sizeof(fallback) - 1 };
		for (size_t z = 0; z < UMB_ARRAY_LEN(sizes); z++) {
			struct text t = sized(src, sizes[z]);
			static const char tail[] = "\nin python, under GDPR";

			if (kw)
				memcpy(t.p + t.n - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
			struct ctx c = { .h = h };
			double full, cust, det, match;

			c.rt.conversation = c.rt.last_user = str_make(t.p, t.n);
			c.rt.last_user_chars = t.n;
			c.rt.max_tokens = -1;
			full = bench(&c, W_FULL);
			cust = bench(&c, W_FULL_CUSTOM);
			det = bench(&c, W_DETECT);
			match = bench(&c, W_MATCH);
			printf("| %s | %zu B | %d | %.2f us | %.2f us | %.2f us | %.2f us |\n",
			       kinds[k] ? kinds[k] : "mixed", t.n, c.match, full / 1e3,
			       cust / 1e3, det / 1e3, match / 1e3);
			for (size_t i = 0; i < UMB_ARRAY_LEN(rules) && z == 1; i++) {
				char why[160];

				heur_explain(h, i, &c.rt, &c.dc, why, sizeof(why));
				fprintf(stderr, "  %s %zu B rule %zu: %s\n",
					kinds[k] ? kinds[k] : "mixed", t.n, i, why);
			}
			free(t.p);
		}
		free(src.p);
	}
	heur_free(h);
	return bench_embedder(path);
}
