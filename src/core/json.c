/* json.c — strict validating JSON scanner, navigation and writer.
 *
 * Chat bodies are mostly long strings, so the time goes into string
 * scanning: on x86-64 we look at 16 bytes at a time (SSE2; 8-byte SWAR
 * words elsewhere) for '"', '\\', control bytes and non-ASCII bytes, and
 * only drop to scalar code for escapes and multibyte UTF-8, which is
 * validated strictly (RFC 3629 table 3-7).
 * The grammar above strings is a small recursive descent with a depth cap,
 * so the recursion is bounded by JSON_MAX_DEPTH frames.
 *
 * The navigation functions trust that the text was validated (they skip
 * values without re-checking them) but still never read outside the
 * container they were given, so misuse cannot crash. */
#include "core/json.h"

#include <math.h>
#include <stdlib.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ---- byte classes ---- */

/* 1 for bytes that may appear unescaped in a string and need no further
 * look: printable ASCII except '"' and '\\'. */
static const uint8_t json_plain[256] = {
	['\x20'] = 1, ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1,
	['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1,
	['-'] = 1, ['.'] = 1, ['/'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1,
	['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1,
	['9'] = 1, [':'] = 1, [';'] = 1, ['<'] = 1, ['='] = 1, ['>'] = 1,
	['?'] = 1, ['@'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1,
	['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
	['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
	['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1,
	['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['['] = 1, [']'] = 1,
	['^'] = 1, ['_'] = 1, ['`'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,
	['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
	['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1,
	['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
	['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['{'] = 1,
	['|'] = 1, ['}'] = 1, ['~'] = 1, ['\x7f'] = 1,
};

static inline bool json__is_ws(char c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline const char *json__skip_ws(const char *p, const char *end)
{
	while (p < end && json__is_ws(*p))
		p++;
	return p;
}

/* Finding the next interesting byte is where the time goes. SSE2 looks at
 * 16 bytes per step; without it, little-endian targets (arm64 servers) use
 * 8-byte SWAR words, and anything else the byte table. Loads are unaligned
 * and never cross `end`. */
#if !defined(__SSE2__) && defined(__BYTE_ORDER__) && \
	__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define JSON_SWAR 1
#define JSON_ONES 0x0101010101010101ull
#define JSON_HIGH 0x8080808080808080ull

static inline uint64_t json__load64(const char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* High bit set in bytes of v that are below n (n <= 128). A borrow can
 * flag a byte above a true hit, never below one, so the lowest flag is
 * exact, and that is the only one we use. */
static inline uint64_t json__lt(uint64_t v, uint8_t n)
{
	return (v - JSON_ONES * n) & ~v & JSON_HIGH;
}

static inline uint64_t json__eq(uint64_t v, uint8_t c)
{
	return json__lt(v ^ (JSON_ONES * c), 1);
}
#endif

/* First byte at or after p that is '"', '\\', a control byte or non-ASCII;
 * end if none. */
static inline const char *json__find_special(const char *p, const char *end)
{
#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"');
	const __m128i bslash = _mm_set1_epi8('\\');
	const __m128i c1f = _mm_set1_epi8(0x1f);

	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)p);
		/* max(v, 0x1f) == 0x1f  <=>  v <= 0x1f unsigned */
		__m128i ctl = _mm_cmpeq_epi8(_mm_max_epu8(v, c1f), c1f);
		__m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote),
							_mm_cmpeq_epi8(v, bslash)),
					   ctl);
		/* movemask(v) adds the non-ASCII bytes */
		unsigned m = (unsigned)_mm_movemask_epi8(hit) |
			     (unsigned)_mm_movemask_epi8(v);
		if (m)
			return p + __builtin_ctz(m);
		p += 16;
	}
#elif defined(JSON_SWAR)
	while (end - p >= 8) {
		uint64_t v = json__load64(p);
		uint64_t m = json__eq(v, '"') | json__eq(v, '\\') |
			     json__lt(v, 0x20) | (v & JSON_HIGH);
		if (m)
			return p + (__builtin_ctzll(m) >> 3);
		p += 8;
	}
#endif
	while (p < end && json_plain[(uint8_t)*p])
		p++;
	return p;
}

/* First '"' or '\\' at or after p; end if none. For validated text. */
static inline const char *json__find_quote(const char *p, const char *end)
{
#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"');
	const __m128i bslash = _mm_set1_epi8('\\');

	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)p);
		unsigned m = (unsigned)_mm_movemask_epi8(
			_mm_or_si128(_mm_cmpeq_epi8(v, quote),
				     _mm_cmpeq_epi8(v, bslash)));
		if (m)
			return p + __builtin_ctz(m);
		p += 16;
	}
#elif defined(JSON_SWAR)
	while (end - p >= 8) {
		uint64_t v = json__load64(p);
		uint64_t m = json__eq(v, '"') | json__eq(v, '\\');
		if (m)
			return p + (__builtin_ctzll(m) >> 3);
		p += 8;
	}
#endif
	while (p < end && *p != '"' && *p != '\\')
		p++;
	return p;
}

/* First non-ASCII byte at or after p; end if none. */
static inline const uint8_t *json__find_high(const uint8_t *p,
					     const uint8_t *end)
{
#ifdef __SSE2__
	while (end - p >= 16) {
		unsigned m = (unsigned)_mm_movemask_epi8(
			_mm_loadu_si128((const __m128i *)p));
		if (m)
			return p + __builtin_ctz(m);
		p += 16;
	}
#elif defined(JSON_SWAR)
	while (end - p >= 8) {
		uint64_t m = json__load64((const char *)p) & JSON_HIGH;
		if (m)
			return p + (__builtin_ctzll(m) >> 3);
		p += 8;
	}
#endif
	while (p < end && *p < 0x80)
		p++;
	return p;
}

static inline int json__hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Type of the value starting with byte c; the text must be valid there. */
static enum json_type json__type_of(char c)
{
	switch (c) {
	case '{': return JSON_OBJECT;
	case '[': return JSON_ARRAY;
	case '"': return JSON_STRING;
	case 't': return JSON_TRUE;
	case 'f': return JSON_FALSE;
	case 'n': return JSON_NULL;
	case '-': case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		return JSON_NUMBER;
	default: return JSON_INVALID;
	}
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is invalid or
 * truncated. Ranges from RFC 3629 so overlongs, surrogates and code points
 * above U+10FFFF all fail on the second byte. */
static size_t json__utf8_seq(const uint8_t *p, size_t left)
{
	uint8_t c = p[0], lo = 0x80, hi = 0xBF;
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c < 0xC2)
		return 0; /* continuation byte or overlong 2-byte lead */
	if (c < 0xE0) {
		n = 2;
	} else if (c < 0xF0) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0; /* overlong */
		else if (c == 0xED)
			hi = 0x9F; /* U+D800..DFFF */
	} else if (c < 0xF5) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90; /* overlong */
		else if (c == 0xF4)
			hi = 0x8F; /* > U+10FFFF */
	} else {
		return 0;
	}
	if (left < n || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	return n;
}

bool json_utf8_valid(const char *s, size_t n)
{
	const uint8_t *p = (const uint8_t *)s, *end = p + n;

	for (;;) {
		p = json__find_high(p, end);
		if (p == end)
			return true;
		/* a run of multibyte characters stays scalar */
		while (p < end && *p >= 0x80) {
			size_t k = json__utf8_seq(p, (size_t)(end - p));
			if (!k)
				return false;
			p += k;
		}
	}
}

/* ---- validating scanner ---- */

struct json__scan {
	const char *start, *end;
	struct json_err *err;
};

/* Record the first error and return NULL so callers can `return fail()`. */
static const char *json__fail(struct json__scan *s, const char *at,
			      const char *msg)
{
	if (s->err) {
		s->err->off = (size_t)(at - s->start);
		s->err->msg = msg;
	}
	return NULL;
}

/* p is on '\\'; returns the byte after the escape. */
static const char *json__scan_escape(struct json__scan *s, const char *p)
{
	if (s->end - p < 2)
		return json__fail(s, p, "unterminated string");
	switch (p[1]) {
	case '"': case '\\': case '/': case 'b':
	case 'f': case 'n': case 'r': case 't':
		return p + 2;
	case 'u':
		break;
	default:
		return json__fail(s, p, "invalid escape in string");
	}
	/* Lone surrogate escapes are allowed by RFC 8259 grammar: only the
	 * four hex digits are checked here. */
	if (s->end - p < 6)
		return json__fail(s, p, "unterminated string");
	for (int i = 2; i < 6; i++)
		if (json__hex(p[i]) < 0)
			return json__fail(s, p + i, "invalid \\u escape");
	return p + 6;
}

/* p is on the opening quote; returns the byte after the closing quote. */
static const char *json__scan_string(struct json__scan *s, const char *p)
{
	const char *end = s->end;

	p++;
	for (;;) {
		p = json__find_special(p, end);
		if (p >= end)
			return json__fail(s, p, "unterminated string");

		uint8_t c = (uint8_t)*p;
		if (c == '"')
			return p + 1;
		if (c == '\\') {
			p = json__scan_escape(s, p);
			if (!p)
				return NULL;
		} else if (c < 0x20) {
			return json__fail(s, p, "control character in string");
		} else if (c >= 0x80) {
			/* Text in non-Latin scripts is runs of multibyte
			 * characters: stay scalar for the whole run. */
			do {
				size_t k = json__utf8_seq((const uint8_t *)p,
							  (size_t)(end - p));
				if (!k)
					return json__fail(s, p,
							  "invalid UTF-8 in string");
				p += k;
			} while (p < end && (uint8_t)*p >= 0x80);
		}
	}
}

/* -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?  The byte after
 * the number is checked by the caller (so "01" fails there). */
static const char *json__scan_number(struct json__scan *s, const char *p)
{
	const char *end = s->end, *q = p;

	if (q < end && *q == '-')
		q++;
	if (q >= end)
		return json__fail(s, q, "invalid number: missing digits");
	if (*q == '0') {
		q++;
	} else if (*q >= '1' && *q <= '9') {
		while (q < end && *q >= '0' && *q <= '9')
			q++;
	} else {
		return json__fail(s, q, "invalid number: missing digits");
	}
	if (q < end && *q == '.') {
		q++;
		if (q >= end || *q < '0' || *q > '9')
			return json__fail(s, q, "invalid number: digit expected after '.'");
		while (q < end && *q >= '0' && *q <= '9')
			q++;
	}
	if (q < end && (*q == 'e' || *q == 'E')) {
		q++;
		if (q < end && (*q == '+' || *q == '-'))
			q++;
		if (q >= end || *q < '0' || *q > '9')
			return json__fail(s, q, "invalid number: digit expected in exponent");
		while (q < end && *q >= '0' && *q <= '9')
			q++;
	}
	return q;
}

static const char *json__scan_lit(struct json__scan *s, const char *p,
				  const char *lit, size_t n)
{
	if ((size_t)(s->end - p) < n || memcmp(p, lit, n) != 0)
		return json__fail(s, p, "invalid literal");
	return p + n;
}

static const char *json__scan_value(struct json__scan *s, const char *p,
				    int depth);

/* p is on '{'; depth is the depth of this object. */
static const char *json__scan_object(struct json__scan *s, const char *p,
				     int depth)
{
	const char *end = s->end;

	p = json__skip_ws(p + 1, end);
	if (p < end && *p == '}')
		return p + 1;
	for (;;) {
		if (p >= end || *p != '"')
			return json__fail(s, p, "expected string key in object");
		p = json__scan_string(s, p);
		if (!p)
			return NULL;
		p = json__skip_ws(p, end);
		if (p >= end || *p != ':')
			return json__fail(s, p, "expected ':' after object key");
		p = json__skip_ws(p + 1, end);
		p = json__scan_value(s, p, depth);
		if (!p)
			return NULL;
		p = json__skip_ws(p, end);
		if (p < end && *p == ',') {
			p = json__skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == '}')
			return p + 1;
		return json__fail(s, p, "expected ',' or '}' in object");
	}
}

/* p is on '['; depth is the depth of this array. */
static const char *json__scan_array(struct json__scan *s, const char *p,
				    int depth)
{
	const char *end = s->end;

	p = json__skip_ws(p + 1, end);
	if (p < end && *p == ']')
		return p + 1;
	for (;;) {
		p = json__scan_value(s, p, depth);
		if (!p)
			return NULL;
		p = json__skip_ws(p, end);
		if (p < end && *p == ',') {
			p = json__skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == ']')
			return p + 1;
		return json__fail(s, p, "expected ',' or ']' in array");
	}
}

/* p is on the first byte of a value (whitespace already skipped); depth is
 * the depth of the enclosing container (0 at the top). Returns the byte
 * after the value or NULL. */
static const char *json__scan_value(struct json__scan *s, const char *p,
				    int depth)
{
	if (p >= s->end)
		return json__fail(s, p, "expected a value");
	switch (*p) {
	case '"':
		return json__scan_string(s, p);
	case '{':
		if (depth >= JSON_MAX_DEPTH)
			return json__fail(s, p, "nesting too deep");
		return json__scan_object(s, p, depth + 1);
	case '[':
		if (depth >= JSON_MAX_DEPTH)
			return json__fail(s, p, "nesting too deep");
		return json__scan_array(s, p, depth + 1);
	case 't':
		return json__scan_lit(s, p, "true", 4);
	case 'f':
		return json__scan_lit(s, p, "false", 5);
	case 'n':
		return json__scan_lit(s, p, "null", 4);
	case '-': case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		return json__scan_number(s, p);
	default:
		return json__fail(s, p, "expected a value");
	}
}

/* The top object, recording its members as it goes (one pass). */
static const char *json__scan_top_object(struct json__scan *s, const char *p,
					 struct json_member *members,
					 size_t max_members, size_t *count)
{
	const char *end = s->end;

	p = json__skip_ws(p + 1, end);
	if (p < end && *p == '}')
		return p + 1;
	for (;;) {
		const char *key = p, *val;

		if (p >= end || *p != '"')
			return json__fail(s, p, "expected string key in object");
		if (*count >= max_members)
			return json__fail(s, p, "too many members");
		p = json__scan_string(s, p);
		if (!p)
			return NULL;
		members[*count].key_raw =
			str_make(key + 1, (size_t)(p - key - 2));
		p = json__skip_ws(p, end);
		if (p >= end || *p != ':')
			return json__fail(s, p, "expected ':' after object key");
		val = p = json__skip_ws(p + 1, end);
		p = json__scan_value(s, p, 1);
		if (!p)
			return NULL;
		members[*count].val.type = json__type_of(*val);
		members[*count].val.raw = str_make(val, (size_t)(p - val));
		(*count)++;
		p = json__skip_ws(p, end);
		if (p < end && *p == ',') {
			p = json__skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == '}')
			return p + 1;
		return json__fail(s, p, "expected ',' or '}' in object");
	}
}

int json_parse_top(const char *p, size_t n, struct json_member *members,
		   size_t max_members, size_t *n_members, struct json_val *root,
		   struct json_err *err)
{
	struct json__scan s;
	const char *v, *q;
	size_t count = 0;

	if (root)
		*root = (struct json_val){ JSON_INVALID, STR_NULL };
	if (n_members)
		*n_members = 0;
	if (!p) {
		if (err)
			*err = (struct json_err){ 0, "no input" };
		if (n)
			return UMB_ERR;
		p = ""; /* no arithmetic on NULL; empty input fails below */
	}
	s = (struct json__scan){ p, p + n, err };
	v = json__skip_ws(p, s.end);
	if (v < s.end && *v == '{' && members)
		q = json__scan_top_object(&s, v, members, max_members, &count);
	else
		q = json__scan_value(&s, v, 0);
	if (!q)
		return UMB_ERR;
	if (json__skip_ws(q, s.end) != s.end) {
		json__fail(&s, json__skip_ws(q, s.end),
			   "unexpected data after the top value");
		return UMB_ERR;
	}
	if (root)
		*root = (struct json_val){ json__type_of(*v),
					   str_make(v, (size_t)(q - v)) };
	if (n_members)
		*n_members = count;
	return UMB_OK;
}

int json_parse(const char *p, size_t n, struct json_val *root,
	       struct json_err *err)
{
	return json_parse_top(p, n, NULL, 0, NULL, root, err);
}

/* ---- navigation over validated text ---- */

/* p is on an opening quote; returns the byte after the closing quote (or
 * end if there is none). */
static const char *json__skip_string(const char *p, const char *end)
{
	p++;
	for (;;) {
		p = json__find_quote(p, end);
		if (p >= end)
			return end;
		if (*p == '"')
			return p + 1;
		if (end - p < 2)
			return end;
		p += 2; /* an escape: the escaped byte is never the end quote */
	}
}

/* p is on the first byte of a value; returns the byte after it. */
static const char *json__skip_value(const char *p, const char *end)
{
	int depth = 0;

	if (p >= end)
		return end;
	if (*p == '"')
		return json__skip_string(p, end);
	if (*p != '{' && *p != '[') {
		/* number or literal: runs to the next delimiter */
		while (p < end && *p != ',' && *p != ']' && *p != '}' &&
		       !json__is_ws(*p))
			p++;
		return p;
	}
	while (p < end) {
		switch (*p) {
		case '"':
			p = json__skip_string(p, end);
			continue;
		case '{': case '[':
			depth++;
			break;
		case '}': case ']':
			if (--depth == 0)
				return p + 1;
			break;
		}
		p++;
	}
	return end;
}

void json_iter_init(struct json_iter *it, struct json_val c)
{
	if ((c.type == JSON_OBJECT || c.type == JSON_ARRAY) && c.raw.n >= 2) {
		it->p = c.raw.p + 1;
		it->end = c.raw.p + c.raw.n - 1; /* the closing bracket */
	} else {
		it->p = it->end = c.raw.p;
	}
}

/* Past the separator before the next member; false at the end. */
static bool json__iter_advance(struct json_iter *it)
{
	it->p = json__skip_ws(it->p, it->end);
	if (it->p < it->end && *it->p == ',')
		it->p = json__skip_ws(it->p + 1, it->end);
	return it->p < it->end;
}

static void json__iter_value(struct json_iter *it, struct json_val *val)
{
	const char *v = it->p;

	it->p = json__skip_value(v, it->end);
	if (val) {
		val->type = json__type_of(*v);
		val->raw = str_make(v, (size_t)(it->p - v));
	}
}

bool json_obj_next(struct json_iter *it, struct str *key_raw,
		   struct json_val *val)
{
	const char *k;

	if (!json__iter_advance(it) || *it->p != '"')
		return false;
	k = it->p;
	it->p = json__skip_string(k, it->end);
	if (key_raw) {
		/* between the quotes; a missing end quote (text that was never
		 * validated) still yields an in-bounds view */
		size_t kn = (size_t)(it->p - k - 1);
		if (kn && it->p[-1] == '"')
			kn--;
		*key_raw = str_make(k + 1, kn);
	}
	it->p = json__skip_ws(it->p, it->end);
	if (it->p >= it->end || *it->p != ':')
		return false;
	it->p = json__skip_ws(it->p + 1, it->end);
	if (it->p >= it->end)
		return false;
	json__iter_value(it, val);
	return true;
}

bool json_arr_next(struct json_iter *it, struct json_val *val)
{
	if (!json__iter_advance(it))
		return false;
	json__iter_value(it, val);
	return true;
}

bool json_obj_get(struct json_val obj, const char *key, struct json_val *out)
{
	struct json_iter it;
	struct str k;
	struct json_val v;

	if (obj.type != JSON_OBJECT)
		return false;
	json_iter_init(&it, obj);
	while (json_obj_next(&it, &k, &v)) {
		if (json_key_eq(k, key)) {
			if (out)
				*out = v;
			return true;
		}
	}
	return false;
}

void json_obj_pick(struct json_val obj, const char *const *keys, size_t n, struct json_val *out)
{
	struct json_iter it;
	struct str k;
	struct json_val v;
	size_t left = n;

	for (size_t i = 0; i < n; i++)
		out[i] = (struct json_val){ JSON_INVALID, STR_NULL };
	if (obj.type != JSON_OBJECT)
		return;
	json_iter_init(&it, obj);
	while (left && json_obj_next(&it, &k, &v)) {
		for (size_t i = 0; i < n; i++) {
			if (out[i].type == JSON_INVALID && json_key_eq(k, keys[i])) {
				out[i] = v;
				left--;
				break;
			}
		}
	}
}

/* ---- unescaping ---- */

static size_t json__utf8_put(uint32_t cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

static int json__u4(const char *p, const char *end)
{
	int v = 0;

	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		int h = json__hex(p[i]);
		if (h < 0)
			return -1;
		v = v << 4 | h;
	}
	return v;
}

/* p is on '\\'. Decode one escape (a surrogate pair counts as one) into
 * out; returns the bytes consumed, 0 if the escape is malformed. */
static size_t json__unescape(const char *p, const char *end, char out[4],
			     size_t *out_n)
{
	int cp, lo;

	if (end - p < 2)
		return 0;
	*out_n = 1;
	switch (p[1]) {
	case '"': out[0] = '"'; return 2;
	case '\\': out[0] = '\\'; return 2;
	case '/': out[0] = '/'; return 2;
	case 'b': out[0] = '\b'; return 2;
	case 'f': out[0] = '\f'; return 2;
	case 'n': out[0] = '\n'; return 2;
	case 'r': out[0] = '\r'; return 2;
	case 't': out[0] = '\t'; return 2;
	case 'u': break;
	default: return 0;
	}
	cp = json__u4(p + 2, end);
	if (cp < 0)
		return 0;
	if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 12 && p[6] == '\\' &&
	    p[7] == 'u' && (lo = json__u4(p + 8, end)) >= 0xDC00 &&
	    lo <= 0xDFFF) {
		uint32_t c = 0x10000 + (((uint32_t)cp - 0xD800) << 10) +
			     ((uint32_t)lo - 0xDC00);
		*out_n = json__utf8_put(c, out);
		return 12;
	}
	if (cp >= 0xD800 && cp <= 0xDFFF)
		cp = 0xFFFD; /* lone surrogate: not representable in UTF-8 */
	*out_n = json__utf8_put((uint32_t)cp, out);
	return 6;
}

bool json_key_eq(struct str k, const char *key)
{
	const char *p = k.p, *end = k.p + k.n;
	const char *bs = k.n ? memchr(k.p, '\\', k.n) : NULL;
	size_t klen = strlen(key), i;

	if (!bs) /* the common case: no escapes */
		return klen == k.n && (k.n == 0 || !memcmp(k.p, key, k.n));
	i = (size_t)(bs - k.p);
	if (klen < i || memcmp(key, k.p, i) != 0)
		return false;
	p = bs;
	while (p < end) {
		if (*p != '\\') {
			if (key[i] != *p)
				return false;
			i++;
			p++;
			continue;
		}
		char u[4];
		size_t un, used = json__unescape(p, end, u, &un);
		if (!used)
			return false;
		for (size_t j = 0; j < un; j++) {
			/* a decoded NUL can never match a C string */
			if (u[j] == 0 || key[i] != u[j])
				return false;
			i++;
		}
		p += used;
	}
	return key[i] == 0;
}

bool json_str_eq(struct json_val v, const char *s)
{
	if (v.type != JSON_STRING || v.raw.n < 2)
		return false;
	return json_key_eq(str_make(v.raw.p + 1, v.raw.n - 2), s);
}

int json_str_decode(struct json_val v, struct buf *out)
{
	const char *p, *end, *run;
	int rc;

	if (v.type != JSON_STRING || v.raw.n < 2)
		return UMB_ERR;
	p = v.raw.p + 1;
	end = v.raw.p + v.raw.n - 1;
	/* decoded text is never longer than its escaped form: one
	 * reservation, then writes in place */
	if ((rc = buf_reserve(out, (size_t)(end - p))))
		return rc;
	char *w = out->p + out->n;
	while (p < end) {
		run = p;
		p = memchr(p, '\\', (size_t)(end - p));
		if (!p)
			p = end;
		memcpy(w, run, (size_t)(p - run));
		w += p - run;
		if (p < end) {
			size_t un, used = json__unescape(p, end, w, &un);
			if (!used) {
				out->p[out->n] = 0;
				return UMB_ERR;
			}
			w += un;
			p += used;
		}
	}
	out->n = (size_t)(w - out->p);
	out->p[out->n] = 0;
	return UMB_OK;
}

/* ---- numbers ---- */

int json_get_i64(struct json_val v, int64_t *out)
{
	const char *p = v.raw.p, *end = v.raw.p + v.raw.n;
	bool neg = false;
	uint64_t acc = 0, lim;

	if (v.type != JSON_NUMBER || v.raw.n == 0)
		return UMB_ERR;
	if (*p == '-') {
		neg = true;
		p++;
	}
	if (p >= end)
		return UMB_ERR;
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return UMB_ERR; /* fraction or exponent: not an integer */
		unsigned d = (unsigned)(*p - '0');
		if (acc > (lim - d) / 10)
			return UMB_ERR;
		acc = acc * 10 + d;
	}
	if (neg)
		*out = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
	else
		*out = (int64_t)acc;
	return UMB_OK;
}

int json_get_double(struct json_val v, double *out)
{
	char small[64], *tmp = small, *e;
	double d;
	struct json__scan s = { v.raw.p, v.raw.p + v.raw.n, NULL };

	/* strtod would also take hex, "inf" or leading spaces: check the
	 * grammar first in case the view did not come from the parser */
	if (v.type != JSON_NUMBER || v.raw.n == 0 ||
	    json__scan_number(&s, v.raw.p) != s.end)
		return UMB_ERR;
	/* strtod needs a NUL; the view is not terminated. (The gateway keeps
	 * the C locale, so '.' is the decimal point.) */
	if (v.raw.n >= sizeof(small)) {
		tmp = malloc(v.raw.n + 1);
		if (!tmp)
			return UMB_ENOMEM;
	}
	memcpy(tmp, v.raw.p, v.raw.n);
	tmp[v.raw.n] = 0;
	d = strtod(tmp, &e);
	bool whole = (size_t)(e - tmp) == v.raw.n;
	if (tmp != small)
		free(tmp);
	if (!whole || isinf(d))
		return UMB_ERR;
	*out = d;
	return UMB_OK;
}

bool json_is_true(struct json_val v)
{
	return v.type == JSON_TRUE;
}

/* ---- writer ---- */

/* The end of the run of bytes that need no escape (not a control, '"' or
 * '\\') from p: eight bytes at a time (SWAR), the tail one by one. Text
 * is mostly plain, and a byte loop with three compares was most of what
 * translating a 200 KB body cost. */
static const uint8_t *json__plain_run(const uint8_t *p, const uint8_t *end)
{
	const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
	while (end - p >= 8) {
		uint64_t x;
		memcpy(&x, p, 8);
		uint64_t ctl = (x - ones * 0x20) & ~x;          /* a byte < 0x20 */
		uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
		uint64_t hit = (ctl | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & high;
		if (hit)
			break;
		p += 8;
	}
	while (p < end && *p >= 0x20 && *p != '"' && *p != '\\')
		p++;
	return p;
}

int json_write_str(struct buf *b, struct str s)
{
	static const char hex[] = "0123456789abcdef";
	/* an empty view may be { NULL, 0 }: NULL + 0 is undefined in C */
	const uint8_t *p = (const uint8_t *)(s.p ? s.p : ""), *end = p + s.n, *run;
	size_t n0 = b->n;
	/* Room for the quotes and every byte as is, written in place: a
	 * 200 KB text is one reservation, not a call per run. Each escape
	 * grows the reservation by what it adds. */
	int rc = buf_reserve(b, s.n + 2);
	if (rc)
		return rc;
	char *w = b->p + b->n;
	*w++ = '"';
	while (p < end) {
		run = p;
		p = json__plain_run(p, end);
		memcpy(w, run, (size_t)(p - run));
		w += p - run;
		if (p == end)
			break;
		b->n = (size_t)(w - b->p);
		if ((rc = buf_reserve(b, (size_t)(end - p) + 6 + 1))) {
			b->n = n0;
			b->p[n0] = 0; /* never half a string: callers map the error */
			return rc;
		}
		w = b->p + b->n;
		*w++ = '\\';
		switch (*p) {
		case '"': *w++ = '"'; break;
		case '\\': *w++ = '\\'; break;
		case '\b': *w++ = 'b'; break;
		case '\f': *w++ = 'f'; break;
		case '\n': *w++ = 'n'; break;
		case '\r': *w++ = 'r'; break;
		case '\t': *w++ = 't'; break;
		default:
			*w++ = 'u';
			*w++ = '0';
			*w++ = '0';
			*w++ = hex[*p >> 4];
			*w++ = hex[*p & 15];
		}
		p++;
	}
	*w++ = '"';
	b->n = (size_t)(w - b->p);
	b->p[b->n] = 0;
	return UMB_OK;
}

int json_write_cstr(struct buf *b, const char *s)
{
	return json_write_str(b, str_cstr(s));
}

int utf8_append_clean(struct buf *b, struct str s, bool flat)
{
	const uint8_t *p = (const uint8_t *)s.p, *end = p + s.n, *run = p;
	int rc;

	while (p < end) {
		size_t k = json__utf8_seq(p, (size_t)(end - p));
		if (k && !(flat && *p < 0x20)) {
			p += k;
			continue;
		}
		if (p > run && (rc = buf_append(b, run, (size_t)(p - run))))
			return rc;
		if ((rc = k ? buf_append_lit(b, " ") : buf_append_lit(b, "\xEF\xBF\xBD")))
			return rc;
		run = ++p;
	}
	return p > run ? buf_append(b, run, (size_t)(p - run)) : UMB_OK;
}

int json_write_str_lossy(struct buf *b, struct str s)
{
	if (json_utf8_valid(s.p, s.n))
		return json_write_str(b, s);
	struct buf clean;
	buf_init(&clean, 0);
	int rc = utf8_append_clean(&clean, s, false);
	if (!rc)
		rc = json_write_str(b, buf_str(&clean));
	buf_clear(&clean);
	return rc;
}
