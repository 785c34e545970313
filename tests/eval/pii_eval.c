/* pii_eval.c — precision and recall of the PII detectors on a labelled
 * JSON-lines file, plus a speed figure.
 *
 *   pii_eval FILE.jsonl [--distinct] [--show-errors]
 *
 * Each line is {"id","text","expect":{"email":N,...}}. Scoring is
 * count-based per line and kind: TP = min(expected, found), FP = found -
 * expected if positive, FN = expected - found if positive, summed. The
 * labels count every occurrence, so the gate uses PII_SCAN_OCCURRENCES;
 * --distinct scores pii_scan's own distinct counts instead. --show-errors
 * names the ids and kinds that disagree (ids only, never the text).
 * Exit 1 if any detector is below 0.98 precision or recall, 2 on bad
 * input. Built and run by tests/eval/pii_eval.sh. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/core.h"
#include "routing/pii.h"

#define TARGET 0.98

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

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Median over 7 repetitions of the ns per KB pii_scan takes on `len`
 * bytes of the corpus repeated. */
static double speed_ns_per_kb(const struct buf *corpus, size_t len)
{
	char *t = umb_malloc(len);
	uint64_t rep[7];
	unsigned iters = len <= 4096 ? 4000 : 40;
	volatile unsigned sink = 0;
	struct pii_counts c;

	for (size_t k = 0; k < len; k++)
		t[k] = corpus->p[k % corpus->n];
	for (size_t r = 0; r < UMB_ARRAY_LEN(rep); r++) {
		uint64_t t0 = clock_mono_ns();

		for (unsigned it = 0; it < iters; it++) {
			pii_scan(str_make(t, len), PII_ALL, &c);
			sink += c.n[PII_PHONE];
		}
		rep[r] = (clock_mono_ns() - t0) / iters;
	}
	(void)sink;
	free(t);
	qsort(rep, UMB_ARRAY_LEN(rep), sizeof(rep[0]), cmp_u64);
	return (double)rep[UMB_ARRAY_LEN(rep) / 2] / ((double)len / 1024.0);
}

int main(int argc, char **argv)
{
	unsigned long tp[PII_KINDS] = { 0 }, fp[PII_KINDS] = { 0 }, fn[PII_KINDS] = { 0 };
	bool distinct = false, show = false;
	const char *path = NULL;
	size_t len, lines = 0;
	char *data, *line, *save = NULL;
	struct buf corpus;
	int rc = 0;

	for (int a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--distinct") == 0)
			distinct = true;
		else if (strcmp(argv[a], "--show-errors") == 0)
			show = true;
		else
			path = argv[a];
	}
	if (!path) {
		fprintf(stderr, "usage: %s FILE.jsonl [--distinct] [--show-errors]\n", argv[0]);
		return 2;
	}
	data = slurp(path, &len);
	if (!data) {
		perror(path);
		return 2;
	}
	buf_init(&corpus, 0);
	for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		cJSON *j = cJSON_Parse(line), *text, *exp, *id;
		struct pii_counts got;

		if (!j)
			continue;
		text = cJSON_GetObjectItemCaseSensitive(j, "text");
		exp = cJSON_GetObjectItemCaseSensitive(j, "expect");
		id = cJSON_GetObjectItemCaseSensitive(j, "id");
		if (!cJSON_IsString(text) || !cJSON_IsObject(exp)) {
			fprintf(stderr, "%s: line %zu: no text/expect\n", path, lines + 1);
			cJSON_Delete(j);
			free(data);
			return 2;
		}
		lines++;
		pii_scan_ex(str_cstr(text->valuestring), PII_ALL,
			    distinct ? 0 : PII_SCAN_OCCURRENCES, &got, NULL, NULL);
		buf_append_cstr(&corpus, text->valuestring);
		buf_append_lit(&corpus, "\n");
		for (unsigned k = 0; k < PII_KINDS; k++) {
			cJSON *e = cJSON_GetObjectItemCaseSensitive(exp, pii_kind_name(k));
			unsigned want = cJSON_IsNumber(e) ? (unsigned)e->valuedouble : 0;
			unsigned have = got.n[k];

			tp[k] += UMB_MIN(want, have);
			fp[k] += have > want ? have - want : 0;
			fn[k] += want > have ? want - have : 0;
			if (show && want != have)
				printf("  %s %s: expected %u found %u\n",
				       cJSON_IsString(id) ? id->valuestring : "?",
				       pii_kind_name(k), want, have);
		}
		cJSON_Delete(j);
	}
	free(data);

	printf("PII detectors on %s (%zu lines, %s counts)\n\n", path, lines,
	       distinct ? "distinct" : "occurrence");
	printf("| detector | TP | FP | FN | precision | recall |\n");
	printf("|---|---:|---:|---:|---:|---:|\n");
	for (unsigned k = 0; k < PII_KINDS; k++) {
		double p = tp[k] + fp[k] ? (double)tp[k] / (double)(tp[k] + fp[k]) : 1.0;
		double r = tp[k] + fn[k] ? (double)tp[k] / (double)(tp[k] + fn[k]) : 1.0;

		printf("| %s | %lu | %lu | %lu | %.3f | %.3f |\n", pii_kind_name(k),
		       tp[k], fp[k], fn[k], p, r);
		if (p < TARGET || r < TARGET)
			rc = 1;
	}
	if (corpus.n) {
		printf("\nspeed (all detectors, median of 7): %.0f ns/KB on 1 KB, "
		       "%.0f ns/KB on 100 KB\n",
		       speed_ns_per_kb(&corpus, 1024), speed_ns_per_kb(&corpus, 100 * 1024));
	}
	buf_clear(&corpus);
	printf("\n%s (target %.2f precision and recall per detector)\n",
	       rc ? "FAIL" : "PASS", TARGET);
	return rc;
}
