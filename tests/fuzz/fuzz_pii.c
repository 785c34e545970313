/* fuzz_pii.c — libFuzzer target for the PII detectors (routing/pii.c).
 *
 * The input is the text. It is scanned with every kind, in distinct and
 * occurrence modes, and per kind alone; the properties checked are that
 * every reported span lies inside the text, that distinct counts never
 * exceed occurrence counts, and that one kind's count does not depend on
 * which other kinds are enabled. The text is copied to an exact-size heap
 * block so ASan catches any read past its end. */
#include <stdlib.h>

#include "routing/pii.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

struct spans {
	size_t n;
	unsigned hits[PII_KINDS];
};

static void span_cb(void *arg, enum pii_kind kind, size_t off, size_t len)
{
	struct spans *sp = arg;

	CHECK((unsigned)kind < PII_KINDS);
	CHECK(len > 0 && off <= sp->n && len <= sp->n - off);
	sp->hits[kind]++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *t = malloc(size ? size : 1);
	struct pii_counts dist, occ, one;
	struct spans sp = { .n = size };
	struct str s;

	CHECK(t);
	if (size)
		memcpy(t, data, size);
	s = str_make(t, size);
	pii_scan(s, PII_ALL, &dist);
	pii_scan_ex(s, PII_ALL, PII_SCAN_OCCURRENCES, &occ, span_cb, &sp);
	for (unsigned k = 0; k < PII_KINDS; k++) {
		CHECK(dist.n[k] <= occ.n[k]);
		CHECK(sp.hits[k] == occ.n[k]);
		CHECK((dist.n[k] == 0) == (occ.n[k] == 0));
		pii_scan(s, PII_MASK(k), &one);
		CHECK(one.n[k] == dist.n[k]);
	}
	free(t);
	return 0;
}
