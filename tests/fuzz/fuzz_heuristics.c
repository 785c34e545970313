/* fuzz_heuristics.c — libFuzzer target for the routing heuristics
 * (routing/heuristics.c).
 *
 * Two fixed rule sets are compiled once: a realistic one (detectors,
 * keywords with exclude, regexes, scope, facts) and a differential one
 * with one rule per keyword. The input's first byte sets the facts
 * (has_tools, max_tokens); the rest is the conversation, its first line
 * the system prompt and its last line the last user message, each copied
 * to an exact-size heap block so ASan catches any read past its end.
 *
 * Properties: heur_match's answer is the first rule heur_explain calls
 * matched; built-in detector counts equal pii_scan's and custom counts
 * are bounded by the text length; and for every keyword, the automaton
 * agrees with a naive whole-word matcher written here from the rules in
 * heuristics.h (ASCII case folding, whitespace runs, boundaries only on
 * word-character sides). */
#include <stdio.h>
#include <stdlib.h>

#include "routing/heuristics.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

#define LIST(...) ((char *[]){ __VA_ARGS__ })
#define NLIST(...) (sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *))
#define KW(...) .keywords = LIST(__VA_ARGS__), .n_keywords = NLIST(__VA_ARGS__)

static struct cfg_detector dets[] = {
	{ .name = "account_ref", .regex = "\\b(?:ACC|CUST)-\\d{6,}\\b" },
	{ .name = "maybe_empty", .regex = "(?i)x*|\\bé+" },
};

static struct cfg_rule rules[] = {
	{ .detectors = LIST("email", "iban", "account_ref"), .n_detectors = 3 },
	{ KW("customer record", "date of birth", "kyc file"), .scope = SCOPE_LAST_USER },
	{ KW("python", "c++", "c#", ".net", "sql", "stack trace", "git"),
	  .exclude = LIST("homework", "lorem ipsum"), .n_exclude = 2,
	  .regex = LIST("(?m)^\\s*(?:def|class|import)\\b", "(a+)+$"), .n_regex = 2 },
	{ KW("gdpr", "basel", "données"), .regex = LIST("(?i)\\barticle\\s+\\d+"), .n_regex = 1,
	  .has_tools = TRI_FALSE },
	{ .system_prompt_contains = LIST("You are", "auditor"), .n_system_prompt_contains = 2,
	  .max_tokens_lt = 100 },
	{ .message_length_lt = 20, .detectors = LIST("maybe_empty"), .n_detectors = 1 },
};

static char *diff_kw[] = {
	"customer record", "date of birth", "kyc file", "python", "c++", "c#",
	".net", "sql", "stack trace", "git", "homework", "lorem ipsum", "gdpr",
	"basel", "données", "c", "a b c", "=>", "é", "ab", "aab", "x_y", "数据",
};

#define n_diff UMB_ARRAY_LEN(diff_kw)

static struct heuristics *real, *diff;

/* ---- the reference matcher ---- */

static bool ref_ws(int c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Code point of the well-formed UTF-8 sequence at p[0..n), length in *len;
 * false when malformed. */
static bool ref_decode(const unsigned char *p, size_t n, uint32_t *cp, size_t *len)
{
	size_t l = p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3 :
		   p[0] >= 0xC2 && p[0] <= 0xDF ? 2 : 0;
	uint32_t v = l == 4 ? p[0] & 7u : l == 3 ? p[0] & 15u : p[0] & 31u;

	if (!l || l > n)
		return false;
	for (size_t k = 1; k < l; k++) {
		if ((p[k] & 0xC0) != 0x80)
			return false;
		v = v << 6 | (p[k] & 0x3Fu);
	}
	if ((l == 3 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) ||
	    (l == 4 && (v < 0x10000 || v > 0x10FFFF)))
		return false;
	*cp = v;
	*len = l;
	return true;
}

static bool ref_word_cp(uint32_t cp)
{
	if (cp < 0x80)
		return (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') ||
		       cp == '_';
	return !(cp <= 0xBF || cp == 0xD7 || cp == 0xF7 || (cp >= 0x2000 && cp <= 0x206F) ||
		 (cp >= 0x3000 && cp <= 0x303F) || (cp >= 0xFF00 && cp <= 0xFF0F));
}

/* Word character starting at i / ending at i (exclusive)? */
static bool ref_word_after(const unsigned char *p, size_t n, size_t i)
{
	uint32_t cp;
	size_t l;

	if (i >= n)
		return false;
	if (p[i] < 0x80)
		return ref_word_cp(p[i]);
	return ref_decode(p + i, n - i, &cp, &l) && ref_word_cp(cp);
}

static bool ref_word_before(const unsigned char *p, size_t i)
{
	uint32_t cp;
	size_t l;

	if (i == 0)
		return false;
	if (p[i - 1] < 0x80)
		return ref_word_cp(p[i - 1]);
	for (size_t back = 2; back <= 4 && back <= i; back++)
		if (ref_decode(p + i - back, back, &cp, &l) && l == back)
			return ref_word_cp(cp);
	return false;
}

static bool ref_find(const char *kw, const unsigned char *t, size_t n)
{
	const unsigned char *k = (const unsigned char *)kw;
	size_t kn = strlen(kw);
	bool lb = ref_word_after(k, kn, 0), rb = ref_word_before(k, kn);

	for (size_t s = 0; s < n; s++) {
		size_t i = s, j = 0;

		while (j < kn && i < n) {
			int c = t[i];

			if (k[j] == ' ') {
				if (!ref_ws(c))
					break;
				while (i < n && ref_ws(t[i]))
					i++;
				j++;
				continue;
			}
			if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != k[j])
				break;
			i++, j++;
		}
		if (j < kn)
			continue;
		if (lb && ref_word_before(t, s))
			continue;
		if (rb && ref_word_after(t, n, i))
			continue;
		return true;
	}
	return false;
}

/* ---- the target ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct cfg_rule one[n_diff];
	struct cfg_routing rt = { .enabled = true, .rules = rules,
				  .n_rules = UMB_ARRAY_LEN(rules), .detectors = dets,
				  .n_detectors = UMB_ARRAY_LEN(dets) };
	char err[256];

	(void)argc;
	(void)argv;
	real = heur_compile(&rt, err, sizeof(err));
	if (!real)
		fprintf(stderr, "fuzz_heuristics: %s\n", err);
	CHECK(real);
	memset(one, 0, sizeof(one));
	for (size_t i = 0; i < n_diff; i++) {
		one[i].keywords = &diff_kw[i];
		one[i].n_keywords = 1;
	}
	rt = (struct cfg_routing){ .rules = one, .n_rules = n_diff };
	diff = heur_compile(&rt, err, sizeof(err));
	CHECK(diff);
	return 0;
}

/* An exact-size heap copy of p[0..n). */
static struct str dup_exact(const uint8_t *p, size_t n)
{
	char *d = malloc(n ? n : 1);

	CHECK(d);
	if (n)
		memcpy(d, p, n);
	return str_make(d, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct route_text t = { 0 };
	struct det_counts dc;
	struct pii_counts pc;
	const uint8_t *nl, *last;
	size_t n, first_line;
	int m, first = -1;
	char why[200];

	if (size < 1)
		return 0;
	t.has_tools = data[0] & 1;
	t.max_tokens = data[0] & 2 ? (long)(data[0] >> 2) * 4 : -1;
	data++, size--;

	nl = memchr(data, '\n', size);
	first_line = nl ? (size_t)(nl - data) : size;
	last = data + size;
	while (last > data && last[-1] != '\n')
		last--;
	t.conversation = dup_exact(data, size);
	t.system = dup_exact(data, first_line);
	t.last_user = dup_exact(last, (size_t)(data + size - last));
	n = 0;
	for (size_t i = 0; i < t.last_user.n; i++)
		n += ((unsigned char)t.last_user.p[i] & 0xC0) != 0x80;
	t.last_user_chars = n;

	/* detectors */
	heur_detect(real, t.conversation, (1ull << DET_MAX) - 1, &dc);
	pii_scan(t.conversation, PII_ALL, &pc);
	for (unsigned k = 0; k < PII_KINDS; k++)
		CHECK(dc.n[k] == pc.n[k]);
	for (size_t k = 0; k < UMB_ARRAY_LEN(dets); k++)
		CHECK(dc.n[PII_KINDS + k] <= t.conversation.n);
	for (size_t k = PII_KINDS + UMB_ARRAY_LEN(dets); k < DET_MAX; k++)
		CHECK(dc.n[k] == 0);

	/* rules: the first match is the first rule explain calls matched */
	m = heur_match(real, &t, &dc);
	CHECK(m >= -1 && m < (int)UMB_ARRAY_LEN(rules));
	for (size_t i = 0; i < UMB_ARRAY_LEN(rules); i++) {
		int r = heur_explain(real, i, &t, &dc, why, sizeof(why));

		CHECK(r == 0 || r == 1);
		CHECK(strlen(why) < sizeof(why));
		if (r == 1 && first < 0)
			first = (int)i;
	}
	CHECK(first == m);

	/* keywords against the reference, on the conversation */
	for (size_t i = 0; i < n_diff; i++) {
		bool want = ref_find(diff_kw[i], (const unsigned char *)t.conversation.p,
				     t.conversation.n);
		int got = heur_explain(diff, i, &t, NULL, why, sizeof(why));

		if (got != (int)want)
			fprintf(stderr, "keyword \"%s\": automaton %d, reference %d\n",
				diff_kw[i], got, want);
		CHECK(got == (int)want);
	}

	free((void *)t.conversation.p);
	free((void *)t.system.p);
	free((void *)t.last_user.p);
	return 0;
}
