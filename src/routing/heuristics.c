/* heuristics.c — routing rules and custom detectors (see heuristics.h).
 *
 * Keywords. Every keyword and exclude word of every rule, normalised
 * (ASCII lowercase, trimmed, inner whitespace collapsed) and
 * de-duplicated, goes into one Aho-Corasick automaton built at compile
 * time as a full DFA over byte classes: cls[] maps a byte to its class
 * (upper and lower case share one; every ASCII whitespace byte shares the
 * class of ' '; bytes no keyword uses share class 0), and delta[] holds,
 * per state and class, the next state's row offset. A text is scanned
 * once per scope, whatever the number of keywords, with one table load per
 * byte and no folded copy of the text:
 *   - whitespace runs: a state reached by a space loops to itself on a
 *     further space, so a run of whitespace reads as one space;
 *   - reporting states are numbered last, so "did a keyword end here" is
 *     one compare of the row offset;
 *   - a hit is then verified against the original text: the keyword's
 *     start is found by walking back over it (whitespace runs included)
 *     and the word boundaries are checked there;
 *   - texts longer than AC_LANES * AC_LANES_MIN bytes are cut into AC_LANES slices
 *     scanned in one interleaved loop (independent table loads overlap);
 *     each slice but the first starts in a warm-up zone long enough for
 *     the longest keyword, reporting nothing there.
 *
 * Regexes. PCRE2, UTF + MATCH_INVALID_UTF, JIT-compiled when the JIT is
 * available. Compiled code and the match context (limits) are shared
 * read-only; each call creates its own one-pair match data when a regex
 * actually runs, so the struct is safe to share between threads.
 *
 * Rules are evaluated in order, cheap facts first (tools, max_tokens,
 * length, detector counts, system prompt), then keywords (scanning each
 * scope at most once per call), then regexes; the first rule that holds
 * wins and the rest are not looked at. */
#include "routing/heuristics.h"
#include "routing/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define KW_NONE UINT32_MAX
#define AC_LANES 4
/* Below this many bytes per slice (or 2 warm-ups) one lane is used. */
#define AC_LANES_MIN 128
/* Keyword hit bitsets up to this many 64-bit words live on the stack. */
#define HITS_INLINE 16
/* A custom detector stops counting after this many searches (matches,
 * empty ones included): a pattern that matches everywhere costs one
 * pcre2_match per match, and "more than thousands" routes the same. */
#define HEUR_DETECT_MAX_SEARCHES 10000
/* Heap limit for interpreted (non-JIT) matching, in KiB. */
#define HEUR_HEAP_LIMIT_KIB 16384u

/** One distinct normalised keyword (or exclude word). */
struct kw {
	char *s;     /* ASCII lowercase, single spaces, NUL-terminated */
	size_t n;
	bool lb, rb; /* check the word boundary before / after the hit */
	bool spaced; /* holds a space: its span in the text varies */
};

/** One compiled rule. */
struct hrule {
	uint32_t *kw;  size_t n_kw;   /* keyword ids (struct heuristics.kws) */
	uint32_t *ex;  size_t n_ex;   /* exclude ids */
	pcre2_code **re; size_t n_re;
	char **sys; size_t *sys_n; size_t n_sys; /* lowercased substrings */
	enum cfg_tristate has_tools;
	long max_tokens_lt, message_length_lt;
	uint64_t det;                 /* detector slots named */
	enum rule_scope scope;
};

/** A custom detector. */
struct hdet {
	char *name;
	pcre2_code *re;
};

struct heuristics {
	struct hrule *rules; size_t n_rules;
	struct hdet dets[DET_CUSTOM_MAX]; size_t n_dets;
	uint64_t needed, sensitive;
	pcre2_match_context *mctx;

	/* keyword automaton */
	struct kw *kws; size_t n_kws;
	uint8_t cls[256];
	uint32_t k;          /* number of byte classes */
	uint32_t *delta;     /* n_states * k row offsets */
	uint32_t out_base;   /* row offset of the first reporting state */
	uint32_t *own;       /* per state: keyword ending here, or KW_NONE */
	uint32_t *dict;      /* per state: next reporting state down the
	                      * failure chain, or KW_NONE */
	size_t n_states;
	size_t max_syms;     /* longest keyword, in symbols (bytes) */
};

/* Write one error line into err[errlen] (both may be 0/NULL). */
static void errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- bytes and word boundaries (the PII detectors' definition) ---- */

/* The whitespace a keyword's space stands for: space, \t \n \v \f \r. */
static inline bool is_ws(int c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}
static inline int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}
/* Word characters: text.h, shared with the detectors and the embedder. */
static bool word_at(const unsigned char *p, size_t n, size_t i)
{
	return text_word_at(p, n, i);
}

static bool word_before(const unsigned char *p, size_t i)
{
	return text_word_before(p, i);
}

/* ---- keyword normalisation ---- */

/* Lowercase ASCII, trim, collapse whitespace runs to one space. Returns a
 * heap string (NULL when nothing is left) and its length in *len. */
static char *kw_norm(const char *s, size_t *len)
{
	size_t n = strlen(s), o = 0;
	char *d = umb_malloc(n + 1);
	bool ws = false;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];

		if (is_ws(c)) {
			ws = o > 0;
			continue;
		}
		if (ws)
			d[o++] = ' ';
		ws = false;
		d[o++] = (char)lower(c);
	}
	d[o] = 0;
	if (o == 0) {
		free(d);
		return NULL;
	}
	*len = o;
	return d;
}

/* Id of keyword s (normalising and adding it when new); KW_NONE when
 * it is empty after normalisation. Keywords are shared between rules and
 * between keywords and exclude lists: one automaton hit serves all. The
 * boundary flags come from the keyword's own first and last characters,
 * judged by the same word_at/word_before as the text. */
static uint32_t kw_intern(struct heuristics *h, size_t *cap, const char *s)
{
	size_t n;
	char *d = s ? kw_norm(s, &n) : NULL;
	struct kw *k;

	if (!d)
		return KW_NONE;
	for (size_t i = 0; i < h->n_kws; i++) {
		if (h->kws[i].n == n && memcmp(h->kws[i].s, d, n) == 0) {
			free(d);
			return (uint32_t)i;
		}
	}
	if (h->n_kws == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		h->kws = umb_realloc(h->kws, *cap * sizeof(*h->kws));
	}
	k = &h->kws[h->n_kws];
	k->s = d;
	k->n = n;
	k->lb = word_at((const unsigned char *)d, n, 0);
	k->rb = word_before((const unsigned char *)d, n);
	k->spaced = memchr(d, ' ', n) != NULL;
	if (n > h->max_syms)
		h->max_syms = n;
	return (uint32_t)h->n_kws++;
}

/* ---- Aho-Corasick automaton ---- */

/* Build the DFA over h->kws. Returns UMB_OK, or UMB_ERR when the table
 * would not fit 32-bit row offsets. */
static int ac_build(struct heuristics *h)
{
	size_t total = 1, nn = 1, qh = 0, qt = 0, n_rep = 0, nr, nq;
	uint32_t *row, *fail, *own, *dict, *queue, *perm;
	uint8_t *last;
	uint32_t k = 1, sp;

	/* at most 225 classes: keywords hold no NUL, no upper case and no
	 * whitespace but ' ', so k fits the uint8_t class table */
	memset(h->cls, 0, sizeof(h->cls));
	for (size_t i = 0; i < h->n_kws; i++) {
		total += h->kws[i].n;
		for (size_t j = 0; j < h->kws[i].n; j++) {
			unsigned char c = (unsigned char)h->kws[i].s[j];

			if (!h->cls[c])
				h->cls[c] = (uint8_t)k++;
		}
	}
	for (int c = 'A'; c <= 'Z'; c++)
		h->cls[c] = h->cls[c + 32];
	sp = h->cls[' '];
	for (int c = '\t'; c <= '\r'; c++)
		h->cls[c] = (uint8_t)sp;
	h->k = k;
	if ((uint64_t)total * k >= UINT32_MAX)
		return UMB_ERR;

	row = umb_calloc(total * k, sizeof(*row));
	fail = umb_calloc(total, sizeof(*fail));
	own = umb_malloc(total * sizeof(*own));
	dict = umb_malloc(total * sizeof(*dict));
	last = umb_calloc(total, 1);
	queue = umb_malloc(total * sizeof(*queue));
	perm = umb_malloc(total * sizeof(*perm));
	for (size_t i = 0; i < total; i++)
		own[i] = dict[i] = KW_NONE;

	/* Work tables, indexed by trie node: row[] the transitions (k per
	 * node), fail[] the failure link, own[] the keyword ending at the
	 * node, dict[] the nearest node down the failure chain that ends a
	 * keyword, last[] the class of the symbol leading to the node.
	 * Freed at the end; only the renumbered copies stay in h. */

	/* the trie; 0 in row[] means "no child" (the root is nobody's) */
	for (size_t i = 0; i < h->n_kws; i++) {
		uint32_t s = 0;

		for (size_t j = 0; j < h->kws[i].n; j++) {
			uint32_t c = h->cls[(unsigned char)h->kws[i].s[j]];

			if (!row[s * k + c]) {
				last[nn] = (uint8_t)c;
				row[s * k + c] = (uint32_t)nn++;
			}
			s = row[s * k + c];
		}
		own[s] = (uint32_t)i; /* keywords are distinct */
	}

	/* Breadth first: failure links, dictionary links, full transitions.
	 * When s is dequeued its row still holds only real children (0 =
	 * none), and every node shallower than s, fail[s] included, already
	 * has its full row; a missing transition copies fail[s]'s. */
	queue[qt++] = 0;
	while (qh < qt) {
		uint32_t s = queue[qh++];

		for (uint32_t c = 0; c < k; c++) {
			uint32_t v = row[s * k + c];
			uint32_t f = s ? row[fail[s] * k + c] : 0;

			if (v) {
				fail[v] = f;
				dict[v] = own[f] != KW_NONE ? f : dict[f];
				queue[qt++] = v;
			} else {
				row[s * k + c] = f;
			}
		}
	}
	/* A whitespace run reads as one space: after a space the automaton
	 * is in a node whose label ends with a space, or at the root (no
	 * keyword starts with a space); a further space must leave it there,
	 * so those nodes loop to themselves on the space class. */
	if (sp) {
		for (size_t s = 1; s < nn; s++)
			if (last[s] == sp)
				row[s * k + sp] = (uint32_t)s;
	}

	/* Renumber: reporting states (a keyword ends here or down the
	 * failure chain) last, so the scan tests row >= out_base. */
	for (size_t s = 0; s < nn; s++)
		n_rep += own[s] != KW_NONE || dict[s] != KW_NONE;
	nr = 0;
	nq = nn - n_rep;
	for (size_t s = 0; s < nn; s++)
		perm[s] = (uint32_t)(own[s] != KW_NONE || dict[s] != KW_NONE ? nq++ : nr++);
	h->n_states = nn;
	h->out_base = (uint32_t)((nn - n_rep) * k);
	h->delta = umb_malloc(nn * k * sizeof(*h->delta));
	h->own = umb_malloc(nn * sizeof(*h->own));
	h->dict = umb_malloc(nn * sizeof(*h->dict));
	for (size_t s = 0; s < nn; s++) {
		uint32_t ns = perm[s];

		for (uint32_t c = 0; c < k; c++)
			h->delta[ns * k + c] = perm[row[s * k + c]] * k;
		h->own[ns] = own[s];
		h->dict[ns] = dict[s] == KW_NONE ? KW_NONE : perm[dict[s]];
	}
	free(row);
	free(fail);
	free(own);
	free(dict);
	free(last);
	free(queue);
	free(perm);
	return UMB_OK;
}

/* Does keyword kw, whose last byte is p[end - 1], stand as whole words
 * there? Walks back to its start (whitespace runs for its spaces): the
 * automaton matched, so each keyword byte is one text byte and each space
 * one maximal whitespace run (a keyword's spaces sit between non-spaces,
 * so the greedy walk is exact). */
static bool kw_verify(const struct kw *kw, const unsigned char *p, size_t n,
		      size_t end)
{
	size_t start;

	if (kw->rb && word_at(p, n, end))
		return false;
	if (!kw->lb)
		return true;
	if (!kw->spaced) {
		start = end - kw->n;
	} else {
		start = end;
		for (size_t j = kw->n; j-- > 0;) {
			if (kw->s[j] != ' ') {
				start--;
				continue;
			}
			while (start > 0 && is_ws(p[start - 1]))
				start--;
		}
	}
	return !word_before(p, start);
}

/* A reporting state was entered after p[end - 1]: record the keywords
 * that end there and stand as whole words. A keyword already found is
 * not verified again; one whose boundary fails here may still be found
 * at a later position. */
static void ac_report(const struct heuristics *h, const unsigned char *p,
		      size_t n, uint32_t rowoff, size_t end, uint64_t *hits)
{
	uint32_t s = rowoff / h->k;

	if (h->own[s] == KW_NONE)
		s = h->dict[s];
	while (s != KW_NONE) {
		uint32_t id = h->own[s];

		if (!(hits[id >> 6] & (1ull << (id & 63))) &&
		    kw_verify(&h->kws[id], p, n, end))
			hits[id >> 6] |= 1ull << (id & 63);
		s = h->dict[s];
	}
}

/* Run the DFA over p[from..to) from row offset `row`, reporting hits
 * that end at or after report_from. Returns the final row offset. */
static uint32_t ac_run(const struct heuristics *h, const unsigned char *p,
		       size_t n, size_t from, size_t to, size_t report_from,
		       uint32_t row, uint64_t *hits)
{
	const uint32_t *d = h->delta;
	const uint8_t *cls = h->cls;
	uint32_t ob = h->out_base;

	for (size_t i = from; i < to; i++) {
		row = d[row + cls[p[i]]];
		if (UMB_UNLIKELY(row >= ob) && i >= report_from)
			ac_report(h, p, n, row, i + 1, hits);
	}
	return row;
}

/* Where a slice starting at b must begin its warm-up so that at least
 * max_syms symbols (a whitespace run is one) come before b. */
static size_t ac_warm_start(const struct heuristics *h, const unsigned char *p,
			    size_t b)
{
	size_t j = b, syms = 0;

	while (j > 0 && syms < h->max_syms) {
		j--;
		if (!(is_ws(p[j]) && j > 0 && is_ws(p[j - 1])))
			syms++;
	}
	return j;
}

/* Set in hits (a zeroed bitset of n_kws bits) the bit of every keyword
 * found as whole words in text. Long texts go through four interleaved
 * slices: the table loads of one slice do not wait for another's, which
 * roughly triples the throughput of this latency-bound loop. */
static void ac_scan(const struct heuristics *h, struct str text, uint64_t *hits)
{
	const unsigned char *p = (const unsigned char *)text.p;
	const uint32_t *d = h->delta;
	const uint8_t *cls = h->cls;
	uint32_t ob = h->out_base, r0, r1, r2, r3;
	size_t n = text.p ? text.n : 0, m, b1, b2, b3;

	if (!h->n_kws || !n)
		return;
	m = n / AC_LANES;
	if (m < AC_LANES_MIN || m < 2 * h->max_syms) {
		ac_run(h, p, n, 0, n, 0, 0, hits);
		return;
	}
	b1 = m, b2 = 2 * m, b3 = 3 * m;
	r0 = 0;
	r1 = ac_run(h, p, n, ac_warm_start(h, p, b1), b1, b1, 0, hits);
	r2 = ac_run(h, p, n, ac_warm_start(h, p, b2), b2, b2, 0, hits);
	r3 = ac_run(h, p, n, ac_warm_start(h, p, b3), b3, b3, 0, hits);
	for (size_t j = 0; j < m; j++) {
		r0 = d[r0 + cls[p[j]]];
		r1 = d[r1 + cls[p[b1 + j]]];
		r2 = d[r2 + cls[p[b2 + j]]];
		r3 = d[r3 + cls[p[b3 + j]]];
		if (UMB_UNLIKELY(r0 >= ob))
			ac_report(h, p, n, r0, j + 1, hits);
		if (UMB_UNLIKELY(r1 >= ob))
			ac_report(h, p, n, r1, b1 + j + 1, hits);
		if (UMB_UNLIKELY(r2 >= ob))
			ac_report(h, p, n, r2, b2 + j + 1, hits);
		if (UMB_UNLIKELY(r3 >= ob))
			ac_report(h, p, n, r3, b3 + j + 1, hits);
	}
	ac_run(h, p, n, 4 * m, n, 4 * m, r3, hits);
}

/* ---- PCRE2 ---- */

/* Compile one pattern (UTF, invalid UTF tolerated in subjects) and JIT it
 * when possible. NULL with err filled on a syntax error. */
static pcre2_code *re_compile(const char *pat, const char *what, char *err,
			      size_t errlen)
{
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *re;
	PCRE2_UCHAR msg[160];

	if (!pat) {
		errf(err, errlen, "%s: missing regex", what);
		return NULL;
	}
	re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
			   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
	if (!re) {
		pcre2_get_error_message(ec, msg, sizeof(msg));
		errf(err, errlen, "%s: regex \"%s\": %s at offset %zu", what, pat,
		     (const char *)msg, (size_t)eo);
		return NULL;
	}
	/* no JIT on this platform or build: the interpreter is used */
	(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	return re;
}

/* Does re match anywhere in s? Limits hit count as no match. *md is the
 * caller's per-call match data, created on first use (a failed
 * allocation reads as no match). */
static bool re_search(const struct heuristics *h, pcre2_code *re, struct str s,
		      pcre2_match_data **md)
{
	if (!*md)
		*md = pcre2_match_data_create(1, NULL);
	if (!*md)
		return false;
	return pcre2_match(re, (PCRE2_SPTR)(s.p ? s.p : ""), s.p ? s.n : 0, 0, 0,
			   *md, h->mctx) >= 0;
}

static uint64_t hash_bytes(const unsigned char *p, size_t n)
{
	uint64_t x = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		x = (x ^ p[i]) * 0x100000001b3ull;
	x ^= x >> 31; /* spread the high bits into the slot index */
	return x * 0x9e3779b97f4a7c15ull;
}

/* Distinct non-empty matches of re over s: a global search, each search
 * starting where the previous match ended; after an empty match it moves
 * on one character. Stops at the first limit error. */
static unsigned re_count_distinct(const struct heuristics *h, pcre2_code *re,
				  struct str s, pcre2_match_data *md)
{
	const unsigned char *p = (const unsigned char *)(s.p ? s.p : "");
	size_t n = s.p ? s.n : 0, off = 0;
	struct hset set;
	unsigned cnt = 0, searches = 0;

	hset_init(&set);
	while (off <= n && searches++ < HEUR_DETECT_MAX_SEARCHES) {
		PCRE2_SIZE *ov;
		size_t a, b;

		if (pcre2_match(re, p, n, off, 0, md, h->mctx) < 0)
			break; /* no further match, or a limit */
		ov = pcre2_get_ovector_pointer(md);
		a = ov[0];
		b = ov[1];
		if (b > a && b > off) {
			if (hset_add(&set, hash_bytes(p + a, b - a)))
				cnt++;
			off = b;
			continue;
		}
		/* empty match (or \K oddities): step one character on */
		off = UMB_MAX(off, b) + 1;
		while (off < n && (p[off] & 0xC0) == 0x80)
			off++;
	}
	hset_clear(&set);
	return cnt;
}

/* ---- compile ---- */

/* Slot of a detector name: built-ins first, then the custom ones compiled
 * so far (so a custom detector cannot shadow an earlier name). */
static int det_slot(const struct heuristics *h, const char *name)
{
	enum pii_kind k;

	if (!name)
		return -1;
	if (pii_kind_parse(name, &k) == UMB_OK)
		return (int)k;
	for (size_t i = 0; i < h->n_dets; i++)
		if (strcmp(h->dets[i].name, name) == 0)
			return PII_KINDS + (int)i;
	return -1;
}

/* Compile config rule idx into h->rules[idx]. On error fills err and
 * returns UMB_ERR; what was built so far is freed by heur_free. */
static int rule_compile(struct heuristics *h, size_t idx,
			const struct cfg_rule *cr, size_t *kwcap, char *err,
			size_t errlen)
{
	struct hrule *r = &h->rules[idx];
	char what[64];

	snprintf(what, sizeof(what), "rule %zu (line %d)", idx + 1, cr->line);
	r->has_tools = cr->has_tools;
	r->max_tokens_lt = cr->max_tokens_lt;
	r->message_length_lt = cr->message_length_lt;
	r->scope = cr->scope;

	r->kw = umb_calloc(cr->n_keywords + 1, sizeof(*r->kw));
	for (size_t i = 0; i < cr->n_keywords; i++) {
		uint32_t id = kw_intern(h, kwcap, cr->keywords[i]);

		if (id == KW_NONE) {
			errf(err, errlen, "%s: empty keyword", what);
			return UMB_ERR;
		}
		r->kw[r->n_kw++] = id;
	}
	r->ex = umb_calloc(cr->n_exclude + 1, sizeof(*r->ex));
	for (size_t i = 0; i < cr->n_exclude; i++) {
		uint32_t id = kw_intern(h, kwcap, cr->exclude[i]);

		if (id == KW_NONE) {
			errf(err, errlen, "%s: empty exclude word", what);
			return UMB_ERR;
		}
		r->ex[r->n_ex++] = id;
	}
	r->re = umb_calloc(cr->n_regex + 1, sizeof(*r->re));
	for (size_t i = 0; i < cr->n_regex; i++) {
		r->re[i] = re_compile(cr->regex[i], what, err, errlen);
		if (!r->re[i])
			return UMB_ERR;
		r->n_re++;
	}
	r->sys = umb_calloc(cr->n_system_prompt_contains + 1, sizeof(*r->sys));
	r->sys_n = umb_calloc(cr->n_system_prompt_contains + 1, sizeof(*r->sys_n));
	for (size_t i = 0; i < cr->n_system_prompt_contains; i++) {
		const char *s = cr->system_prompt_contains[i] ? cr->system_prompt_contains[i] : "";
		size_t n = strlen(s);

		r->sys[i] = umb_malloc(n + 1);
		for (size_t j = 0; j <= n; j++)
			r->sys[i][j] = (char)lower((unsigned char)s[j]);
		r->sys_n[i] = n;
		r->n_sys++;
	}
	for (size_t i = 0; i < cr->n_detectors; i++) {
		int slot = det_slot(h, cr->detectors[i]);

		if (slot < 0) {
			errf(err, errlen, "%s: unknown detector %s", what,
			     cr->detectors[i] ? cr->detectors[i] : "(null)");
			return UMB_ERR;
		}
		r->det |= 1ull << slot;
	}
	h->needed |= r->det;
	return UMB_OK;
}

/* Order: custom detectors first (rules and the guard name them), then
 * the rules (interning keywords), the guard's names, and last the
 * automaton over every interned keyword. Any error frees the partial
 * object through heur_free. */
struct heuristics *heur_compile(const struct cfg_routing *rt, char *err,
				size_t errlen)
{
	struct heuristics *h = umb_calloc(1, sizeof(*h));
	size_t kwcap = 0;
	char what[160];

	errf(err, errlen, "%s", "");
	h->mctx = pcre2_match_context_create(NULL);
	if (!h->mctx) {
		errf(err, errlen, "out of memory");
		goto fail;
	}
	pcre2_set_match_limit(h->mctx, HEUR_MATCH_LIMIT);
	pcre2_set_depth_limit(h->mctx, HEUR_DEPTH_LIMIT);
	pcre2_set_heap_limit(h->mctx, HEUR_HEAP_LIMIT_KIB);

	if (rt->n_detectors > DET_CUSTOM_MAX) {
		errf(err, errlen, "detector %s (line %d): more than %d custom detectors",
		     rt->detectors[DET_CUSTOM_MAX].name ? rt->detectors[DET_CUSTOM_MAX].name : "?",
		     rt->detectors[DET_CUSTOM_MAX].line, DET_CUSTOM_MAX);
		goto fail;
	}
	for (size_t i = 0; i < rt->n_detectors; i++) {
		const struct cfg_detector *cd = &rt->detectors[i];
		const char *name = cd->name ? cd->name : "";

		snprintf(what, sizeof(what), "detector %s (line %d)", name, cd->line);
		if (!*name || det_slot(h, name) >= 0) {
			errf(err, errlen, "%s: %s", what,
			     *name ? "name already used" : "missing name");
			goto fail;
		}
		h->dets[i].re = re_compile(cd->regex, what, err, errlen);
		if (!h->dets[i].re)
			goto fail;
		h->dets[i].name = umb_strdup(name);
		h->n_dets++;
	}

	h->rules = umb_calloc(rt->n_rules + 1, sizeof(*h->rules));
	for (size_t i = 0; i < rt->n_rules; i++) {
		h->n_rules++;
		if (rule_compile(h, i, &rt->rules[i], &kwcap, err, errlen) < 0)
			goto fail;
	}

	if (rt->sensitive.enabled) {
		for (size_t i = 0; i < rt->sensitive.n_detectors; i++) {
			const char *name = rt->sensitive.detectors[i];
			int slot = det_slot(h, name);

			if (slot < 0) {
				errf(err, errlen, "sensitive (line %d): unknown detector %s",
				     rt->sensitive.line, name ? name : "(null)");
				goto fail;
			}
			h->sensitive |= 1ull << slot;
		}
	}

	if (ac_build(h) < 0) {
		errf(err, errlen, "heuristics: too many keywords (%zu)", h->n_kws);
		goto fail;
	}
	return h;
fail:
	heur_free(h);
	return NULL;
}

void heur_free(struct heuristics *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n_rules; i++) {
		struct hrule *r = &h->rules[i];

		for (size_t j = 0; j < r->n_re; j++)
			pcre2_code_free(r->re[j]);
		for (size_t j = 0; j < r->n_sys; j++)
			free(r->sys[j]);
		free(r->kw);
		free(r->ex);
		free(r->re);
		free(r->sys);
		free(r->sys_n);
	}
	free(h->rules);
	for (size_t i = 0; i < h->n_dets; i++) {
		pcre2_code_free(h->dets[i].re);
		free(h->dets[i].name);
	}
	for (size_t i = 0; i < h->n_kws; i++)
		free(h->kws[i].s);
	free(h->kws);
	free(h->delta);
	free(h->own);
	free(h->dict);
	pcre2_match_context_free(h->mctx);
	free(h);
}

/* ---- detectors ---- */

int heur_detector_slot(const struct heuristics *h, const char *name)
{
	return det_slot(h, name);
}

const char *heur_detector_name(const struct heuristics *h, int slot)
{
	if (slot >= 0 && slot < PII_KINDS)
		return pii_kind_name((enum pii_kind)slot);
	if (slot >= PII_KINDS && (size_t)(slot - PII_KINDS) < h->n_dets)
		return h->dets[slot - PII_KINDS].name;
	return "?";
}

/* Built-ins in one pii_scan pass; each custom detector in the mask is
 * one global search sharing a single match data. */
void heur_detect(const struct heuristics *h, struct str text, uint64_t mask,
		 struct det_counts *out)
{
	struct pii_counts pc;
	pcre2_match_data *md = NULL;

	memset(out, 0, sizeof(*out));
	if (mask & PII_ALL) {
		pii_scan(text, (unsigned)(mask & PII_ALL), &pc);
		for (unsigned k = 0; k < PII_KINDS; k++)
			out->n[k] = pc.n[k];
	}
	for (size_t i = 0; i < h->n_dets; i++) {
		if (!(mask & (1ull << (PII_KINDS + i))))
			continue;
		if (!md)
			md = pcre2_match_data_create(1, NULL);
		if (!md)
			break;
		out->n[PII_KINDS + i] = re_count_distinct(h, h->dets[i].re, text, md);
	}
	pcre2_match_data_free(md);
}

uint64_t heur_detectors_needed(const struct heuristics *h)
{
	return h->needed;
}

uint64_t heur_sensitive_mask(const struct heuristics *h)
{
	return h->sensitive;
}

size_t heur_rule_count(const struct heuristics *h)
{
	return h->n_rules;
}

/* ---- rules ---- */

/* Per-call state: keyword hits per scope, scanned on first use, and the
 * match data of the regexes; lives on the caller's stack, so concurrent
 * calls on one struct heuristics share nothing writable. */
struct eval {
	const struct heuristics *h;
	const struct route_text *t;
	const struct det_counts *dc;
	uint64_t *hits[2];
	bool scanned[2];
	pcre2_match_data *md;
	size_t words;
	uint64_t inline_hits[2][HITS_INLINE];
};

/* Optional explanation sink: a fixed buffer, cut when full. */
struct why {
	char *p;
	size_t n, cap;
};

static void why_add(struct why *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void why_add(struct why *w, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (!w || w->n + 1 >= w->cap)
		return;
	va_start(ap, fmt);
	r = vsnprintf(w->p + w->n, w->cap - w->n, fmt, ap);
	va_end(ap);
	if (r > 0)
		w->n = UMB_MIN(w->n + (size_t)r, w->cap - 1);
}

/* A failure replaces whatever success was noted before it. */
#define why_fail(w, ...)                                                       \
	do {                                                                   \
		if (w)                                                         \
			(w)->n = 0;                                            \
		why_add((w), __VA_ARGS__);                                     \
	} while (0)

static void eval_init(struct eval *ev, const struct heuristics *h,
		      const struct route_text *t, const struct det_counts *dc)
{
	memset(ev, 0, offsetof(struct eval, inline_hits));
	ev->h = h;
	ev->t = t;
	ev->dc = dc;
	ev->words = (h->n_kws + 63) / 64;
}

static void eval_clear(struct eval *ev)
{
	for (int s = 0; s < 2; s++)
		if (ev->hits[s] && ev->hits[s] != ev->inline_hits[s])
			free(ev->hits[s]);
	pcre2_match_data_free(ev->md);
}

static struct str scope_text(const struct eval *ev, enum rule_scope scope)
{
	return scope == SCOPE_LAST_USER ? ev->t->last_user : ev->t->conversation;
}

/* The keyword hits of a scope's text, scanning it on first use. */
static const uint64_t *eval_hits(struct eval *ev, enum rule_scope scope)
{
	int s = scope == SCOPE_LAST_USER;

	if (!ev->scanned[s]) {
		if (ev->words <= HITS_INLINE) {
			ev->hits[s] = ev->inline_hits[s];
			memset(ev->hits[s], 0, ev->words * sizeof(uint64_t));
		} else {
			ev->hits[s] = umb_calloc(ev->words, sizeof(uint64_t));
		}
		ac_scan(ev->h, scope_text(ev, scope), ev->hits[s]);
		ev->scanned[s] = true;
	}
	return ev->hits[s];
}

static inline bool hit(const uint64_t *hits, uint32_t id)
{
	return hits[id >> 6] & (1ull << (id & 63));
}

/* ASCII case-insensitive search of the lowercase needle nd[0..nn) in hay.
 * Candidates come from memchr of the first byte in both cases (each
 * result kept until passed, so the text is read about twice at most). */
static bool ci_contains(struct str hay, const char *nd, size_t nn)
{
	const char *p, *end, *a = NULL, *b = NULL;
	int c0, c1;
	bool a_done = false, b_done;

	if (nn == 0)
		return true;
	if (!hay.p || hay.n < nn)
		return false;
	c0 = (unsigned char)nd[0];
	c1 = c0 >= 'a' && c0 <= 'z' ? c0 - 32 : c0;
	b_done = c1 == c0;
	p = hay.p;
	end = hay.p + hay.n - nn + 1;
	while (p < end) {
		const char *q;
		size_t j;

		if (!a_done && (!a || a < p)) {
			a = memchr(p, c0, (size_t)(end - p));
			a_done = !a;
		}
		if (!b_done && (!b || b < p)) {
			b = memchr(p, c1, (size_t)(end - p));
			b_done = !b;
		}
		if (a_done && b_done)
			return false;
		q = a_done ? b : b_done ? a : UMB_MIN(a, b);
		for (j = 1; j < nn && lower((unsigned char)q[j]) == (unsigned char)nd[j]; j++)
			;
		if (j == nn)
			return true;
		p = q + 1;
	}
	return false;
}

static const char *scope_name(enum rule_scope s)
{
	return s == SCOPE_LAST_USER ? "last_user" : "conversation";
}

/* Does rule r hold? Cheap facts first, then keywords, then regexes. With
 * w, say why (which condition failed, or what matched). */
static bool rule_eval(struct eval *ev, const struct hrule *r, struct why *w)
{
	const struct heuristics *h = ev->h;
	const struct route_text *t = ev->t;
	const uint64_t *hits;
	bool ok;

	if (r->has_tools != TRI_UNSET &&
	    (r->has_tools == TRI_TRUE) != t->has_tools) {
		why_fail(w, "failed: has_tools is %s", t->has_tools ? "true" : "false");
		return false;
	}
	if (r->max_tokens_lt > 0 &&
	    !(t->max_tokens >= 0 && t->max_tokens < r->max_tokens_lt)) {
		if (t->max_tokens < 0)
			why_fail(w, "failed: max_tokens absent");
		else
			why_fail(w, "failed: max_tokens %ld >= %ld", t->max_tokens,
				r->max_tokens_lt);
		return false;
	}
	if (r->message_length_lt > 0 &&
	    !(t->last_user_chars < (size_t)r->message_length_lt)) {
		why_fail(w, "failed: message length %zu >= %ld", t->last_user_chars,
			r->message_length_lt);
		return false;
	}
	if (r->det) {
		int found = -1;

		for (int s = 0; s < DET_MAX && ev->dc && found < 0; s++)
			if ((r->det & (1ull << s)) && ev->dc->n[s] > 0)
				found = s;
		if (found < 0) {
			why_fail(w, "failed: no detector hit");
			return false;
		}
		why_add(w, "detector %s (%u); ", heur_detector_name(h, found),
			ev->dc->n[found]);
	}
	if (r->n_sys) {
		size_t i;

		for (i = 0; i < r->n_sys; i++)
			if (ci_contains(t->system, r->sys[i], r->sys_n[i]))
				break;
		if (i == r->n_sys) {
			why_fail(w, "failed: system prompt lacks every system_prompt_contains");
			return false;
		}
		why_add(w, "system prompt has \"%s\"; ", r->sys[i]);
	}
	if (r->n_kw || r->n_ex) {
		hits = eval_hits(ev, r->scope);
		if (r->n_kw) {
			size_t i;

			for (i = 0; i < r->n_kw && !hit(hits, r->kw[i]); i++)
				;
			if (i == r->n_kw) {
				why_fail(w, "failed: no keyword in %s", scope_name(r->scope));
				return false;
			}
			why_add(w, "keyword \"%s\" in %s; ", h->kws[r->kw[i]].s,
				scope_name(r->scope));
		}
		for (size_t i = 0; i < r->n_ex; i++) {
			if (hit(hits, r->ex[i])) {
				why_fail(w, "failed: exclude \"%s\" in %s",
					h->kws[r->ex[i]].s, scope_name(r->scope));
				return false;
			}
		}
		if (r->n_ex)
			why_add(w, "no exclude word; ");
	}
	if (r->n_re) {
		size_t i;
		struct str s = scope_text(ev, r->scope);

		ok = false;
		for (i = 0; i < r->n_re && !ok; i++)
			ok = re_search(h, r->re[i], s, &ev->md);
		if (!ok) {
			why_fail(w, "failed: no regex matched in %s", scope_name(r->scope));
			return false;
		}
		why_add(w, "regex %zu in %s; ", i, scope_name(r->scope));
	}
	if (r->has_tools != TRI_UNSET)
		why_add(w, "has_tools; ");
	if (r->max_tokens_lt > 0)
		why_add(w, "max_tokens < %ld; ", r->max_tokens_lt);
	if (r->message_length_lt > 0)
		why_add(w, "length < %ld; ", r->message_length_lt);
	return true;
}

/* First rule that holds; rules share the per-call keyword scans. */
int heur_match(const struct heuristics *h, const struct route_text *t,
	       const struct det_counts *dc)
{
	struct eval ev;
	int found = -1;

	eval_init(&ev, h, t, dc);
	for (size_t i = 0; i < h->n_rules; i++) {
		if (rule_eval(&ev, &h->rules[i], NULL)) {
			found = (int)i;
			break;
		}
	}
	eval_clear(&ev);
	return found;
}

int heur_explain(const struct heuristics *h, size_t i,
		 const struct route_text *t, const struct det_counts *dc,
		 char *out, size_t outlen)
{
	struct eval ev;
	char tmp[256];
	struct why w = { tmp, 0, sizeof(tmp) };
	bool ok;

	if (i >= h->n_rules)
		return UMB_ERR;
	tmp[0] = 0;
	eval_init(&ev, h, t, dc);
	ok = rule_eval(&ev, &h->rules[i], &w);
	eval_clear(&ev);
	if (ok) {
		/* drop the trailing "; " */
		if (w.n >= 2 && tmp[w.n - 2] == ';')
			tmp[w.n - 2] = 0;
		errf(out, outlen, "matched: %s", w.n ? tmp : "no condition set");
	} else {
		errf(out, outlen, "%s", tmp);
	}
	return ok;
}
