/* test_core.c — unit tests for core/core.c: capped buffers, arenas with
 * cleanup hooks, string helpers (glob included, with hostile patterns),
 * durations, RFC 3339 time, the fast PRNG and log levels.
 *
 * core.c is included so the archive's copy is not linked in; every test
 * also runs under ASan+UBSan (make BUILD=build-asan SANITIZE=1 unit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/core.c"
#include "core/json.h"

/* ---- buf ---- */

static void test_buf_empty(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 0);
	assert_null(b.p);
	assert_int_equal(b.n, 0);
	assert_true(b.max == SIZE_MAX); /* 0 means no cap */
	buf_reset(&b);                  /* safe on a never-grown buffer */
	buf_consume(&b, 0);
	buf_consume(&b, 10);
	assert_int_equal(buf_append(&b, "", 0), UMB_OK);
	assert_non_null(b.p); /* appending nothing still makes it a C string */
	assert_string_equal(b.p, "");
	buf_clear(&b);
	assert_null(b.p);
	buf_clear(&b); /* idempotent */
}

static void test_buf_cap_exact(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 10);
	assert_int_equal(buf_append(&b, "0123456789", 10), UMB_OK); /* exactly the cap */
	assert_int_equal(b.n, 10);
	assert_int_equal(b.p[10], 0);
	assert_int_equal(buf_append(&b, "x", 1), UMB_ETOOBIG);
	assert_int_equal(b.n, 10); /* a refused append changes nothing */
	assert_string_equal(b.p, "0123456789");
	assert_int_equal(buf_append(&b, "", 0), UMB_OK);
	assert_int_equal(buf_reserve(&b, 0), UMB_OK);
	assert_int_equal(buf_reserve(&b, 1), UMB_ETOOBIG);
	assert_int_equal(buf_reserve(&b, SIZE_MAX), UMB_ETOOBIG);
	buf_clear(&b);
	assert_true(b.max == 10); /* clear keeps the cap */

	buf_init(&b, 10);
	assert_int_equal(buf_append(&b, "01234567890", 11), UMB_ETOOBIG);
	assert_int_equal(b.n, 0);
	assert_int_equal(buf_append(&b, "01234", 5), UMB_OK);
	assert_int_equal(buf_append(&b, "567890", 6), UMB_ETOOBIG);
	assert_int_equal(buf_append(&b, "56789", 5), UMB_OK);
	assert_int_equal(b.n, 10);
	/* printf obeys the cap too, both on the short and the long path */
	buf_reset(&b);
	assert_int_equal(buf_printf(&b, "%s", "0123456789"), UMB_OK);
	assert_int_equal(buf_printf(&b, "%d", 1), UMB_ETOOBIG);
	assert_int_equal(b.n, 10);
	buf_reset(&b);
	assert_int_equal(buf_printf(&b, "%300s", "x"), UMB_ETOOBIG);
	assert_int_equal(b.n, 0);
	buf_clear(&b);

	/* a cap of 1 byte: the NUL is not counted */
	buf_init(&b, 1);
	assert_int_equal(buf_append(&b, "a", 1), UMB_OK);
	assert_int_equal(buf_append(&b, "b", 1), UMB_ETOOBIG);
	assert_string_equal(b.p, "a");
	buf_clear(&b);
}

static void test_buf_growth_and_nul(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 0);
	char chunk[97];
	for (size_t i = 0; i < sizeof chunk; i++)
		chunk[i] = (char)('a' + i % 26);
	size_t want = 0;
	for (int i = 0; i < 200; i++) {
		assert_int_equal(buf_append(&b, chunk, sizeof chunk), UMB_OK);
		want += sizeof chunk;
		assert_int_equal(b.n, want);
		assert_true(b.cap > b.n);
		assert_int_equal(b.p[b.n], 0);
	}
	for (size_t i = 0; i < b.n; i++)
		assert_int_equal(b.p[i], 'a' + (i % sizeof chunk) % 26);
	buf_clear(&b);
}

static void test_buf_printf(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(buf_printf(&b, "%s=%d", "k", 42), UMB_OK);
	assert_string_equal(b.p, "k=42");
	/* 255 bytes fit the stack buffer; 256 and beyond take the long path */
	for (int len = 250; len <= 262; len++) {
		buf_reset(&b);
		assert_int_equal(buf_printf(&b, "<%*d>", len - 2, len), UMB_OK);
		assert_int_equal(b.n, (size_t)len);
		assert_int_equal(strlen(b.p), (size_t)len);
		assert_int_equal(b.p[0], '<');
		assert_int_equal(b.p[len - 1], '>');
	}
	/* long output appended after existing content */
	buf_reset(&b);
	buf_append_cstr(&b, "head:");
	char big[5000];
	memset(big, 'z', sizeof big - 1);
	big[sizeof big - 1] = 0;
	assert_int_equal(buf_printf(&b, "%s|%s", big, "tail"), UMB_OK);
	assert_int_equal(b.n, 5 + 4999 + 5);
	assert_memory_equal(b.p, "head:", 5);
	assert_string_equal(b.p + 5 + 4999, "|tail");
	assert_int_equal(b.p[b.n], 0);
	buf_clear(&b);
}

static void test_buf_consume(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 0);
	buf_append_cstr(&b, "hello world");
	buf_consume(&b, 6);
	assert_int_equal(b.n, 5);
	assert_string_equal(b.p, "world");
	buf_consume(&b, 0);
	assert_string_equal(b.p, "world");
	buf_consume(&b, 5);
	assert_int_equal(b.n, 0);
	assert_string_equal(b.p, "");
	buf_append_cstr(&b, "abc");
	buf_consume(&b, 100); /* more than held: empties */
	assert_int_equal(b.n, 0);
	assert_string_equal(b.p, "");
	struct str s;
	buf_append_cstr(&b, "xyz");
	s = buf_str(&b);
	assert_true(str_eq(s, STR("xyz")));
	buf_clear(&b);
}

/* ---- arena ---- */

static void test_arena_alignment_zeroed(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	for (size_t n = 0; n < 300; n++) {
		unsigned char *p = arena_alloc(a, n);
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % 16, 0);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(p[i], 0);
		memset(p, 0xAB, n); /* dirty it: the next allocations must still be zero */
	}
	arena_free(a);

	/* a tiny block size forces a block per allocation */
	a = arena_new(32);
	for (int i = 0; i < 100; i++) {
		unsigned char *p = arena_alloc(a, 24);
		assert_int_equal((uintptr_t)p % 16, 0);
		for (int k = 0; k < 24; k++)
			assert_int_equal(p[k], 0);
		memset(p, 0xCD, 24);
	}
	arena_free(a);
	arena_free(NULL);
}

static void test_arena_big(void **state)
{
	(void)state;
	struct arena *a = arena_new(4096);
	char *small1 = arena_alloc(a, 100);
	memset(small1, 1, 100);
	/* bigger than the block: its own block, written over its whole size */
	size_t bigs[] = { 2049, 4096, 4097, 100000, 1 << 20 };
	for (size_t i = 0; i < UMB_ARRAY_LEN(bigs); i++) {
		unsigned char *p = arena_alloc(a, bigs[i]);
		assert_int_equal((uintptr_t)p % 16, 0);
		for (size_t k = 0; k < bigs[i]; k += 997)
			assert_int_equal(p[k], 0);
		assert_int_equal(p[bigs[i] - 1], 0);
		memset(p, 0xEE, bigs[i]);
	}
	/* the current block keeps serving small allocations after big ones */
	char *small2 = arena_alloc(a, 100);
	assert_int_equal(small2[0], 0);
	assert_int_equal(small1[99], 1); /* earlier memory untouched */
	char *s = arena_strndup(a, "abcdef", 3);
	assert_string_equal(s, "abc");
	s = arena_strndup(a, NULL, 0);
	assert_string_equal(s, "");
	s = arena_strdup_str(a, STR("view"));
	assert_string_equal(s, "view");
	char big[10000];
	memset(big, 'q', sizeof big - 1);
	big[sizeof big - 1] = 0;
	s = arena_printf(a, "%s-%d", big, 7);
	assert_int_equal(strlen(s), sizeof big - 1 + 2);
	assert_string_equal(s + sizeof big - 1, "-7");
	arena_free(a);
}

static int cleanup_log[16];
static int cleanup_n;

static void cleanup_rec(void *data)
{
	cleanup_log[cleanup_n++] = *(int *)data;
}

static void cleanup_free(void *data)
{
	free(data);
}

static void test_arena_cleanup_order(void **state)
{
	(void)state;
	cleanup_n = 0;
	struct arena *a = arena_new(64);
	int *ids = arena_alloc(a, 5 * sizeof *ids);
	for (int i = 0; i < 5; i++) {
		ids[i] = i + 1;
		arena_cleanup_add(a, cleanup_rec, &ids[i]);
		arena_alloc(a, 200); /* interleave with new blocks */
	}
	/* a heap object owned by the arena is freed by its hook (ASan/valgrind
	 * would report a leak otherwise) */
	arena_cleanup_add(a, cleanup_free, umb_malloc(123));
	struct buf *b = arena_alloc(a, sizeof *b);
	buf_init(b, 0);
	buf_append_cstr(b, "owned by the arena");
	arena_cleanup_add(a, (arena_cleanup_cb)buf_clear, b);
	assert_int_equal(cleanup_n, 0);
	arena_free(a);
	assert_int_equal(cleanup_n, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(cleanup_log[i], 5 - i); /* newest first */
}

/* ---- strings ---- */

static void test_str_ieq(void **state)
{
	(void)state;
	assert_true(str_ieq(STR("Content-Type"), STR("content-type")));
	assert_true(str_ieq(STR("X-REQUEST-ID"), STR("x-request-id")));
	assert_true(str_ieq(STR(""), STR("")));
	assert_true(str_ieq(STR_NULL, STR("")));
	assert_false(str_ieq(STR("abc"), STR("abcd")));
	assert_false(str_ieq(STR("abc"), STR("abd")));
	/* only ASCII letters fold: '@' (0x40) is not '`' (0x60) */
	assert_false(str_ieq(STR("@"), STR("`")));
	assert_false(str_ieq(STR("["), STR("{")));
	/* high bytes are compared without sign trouble */
	assert_true(str_ieq(STR("\xc3\xa9"), STR("\xc3\xa9")));
	assert_false(str_ieq(STR("\xc3\xa9"), STR("\xc3\x89")));
	/* embedded NUL bytes are data */
	assert_true(str_ieq(STR("a\0B"), STR("A\0b")));
	assert_false(str_ieq(STR("a\0b"), STR("a\0c")));
}

static void test_str_trim(void **state)
{
	(void)state;
	assert_true(str_eq(str_trim(STR("  x y \t")), STR("x y")));
	assert_true(str_eq(str_trim(STR("\t\tabc")), STR("abc")));
	assert_true(str_eq(str_trim(STR("abc  ")), STR("abc")));
	assert_true(str_eq(str_trim(STR("abc")), STR("abc")));
	assert_int_equal(str_trim(STR("   \t ")).n, 0);
	assert_int_equal(str_trim(STR("")).n, 0);
	assert_int_equal(str_trim(STR_NULL).n, 0);
	/* only spaces and tabs: CR/LF are not whitespace for HTTP OWS */
	assert_true(str_eq(str_trim(STR("\r\nx\r\n")), STR("\r\nx\r\n")));
	struct str in = STR("  mid  ");
	struct str out = str_trim(in);
	assert_ptr_equal(out.p, in.p + 2); /* a view into the same bytes */
}

static void test_str_to_u64(void **state)
{
	(void)state;
	uint64_t v = 77;
	assert_int_equal(str_to_u64(STR("0"), &v), UMB_OK);
	assert_true(v == 0);
	assert_int_equal(str_to_u64(STR("12345"), &v), UMB_OK);
	assert_true(v == 12345);
	assert_int_equal(str_to_u64(STR("18446744073709551615"), &v), UMB_OK);
	assert_true(v == UINT64_MAX);
	assert_int_equal(str_to_u64(STR("00000000000000000042"), &v), UMB_OK);
	assert_true(v == 42);
	v = 77;
	const char *bad[] = { "18446744073709551616", "18446744073709551620",
			      "99999999999999999999", "184467440737095516150",
			      "", "-1", "+1", " 1", "1 ", "1a", "0x10", "1.0",
			      "١", "1\0" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		struct str s = str_cstr(bad[i]);
		if (i == UMB_ARRAY_LEN(bad) - 1)
			s = STR("1\0"); /* an embedded NUL is junk */
		assert_int_equal(str_to_u64(s, &v), UMB_ERR);
		assert_true(v == 77); /* untouched on error */
	}
	/* every prefix of UINT64_MAX's neighbourhood: the boundary is exact */
	char num[32];
	for (uint64_t d = 0; d < 10; d++) {
		snprintf(num, sizeof num, "1844674407370955161%llu", (unsigned long long)d);
		int rc = str_to_u64(str_cstr(num), &v);
		assert_int_equal(rc, d <= 5 ? UMB_OK : UMB_ERR);
		if (d <= 5)
			assert_true(v == 18446744073709551610ULL + d);
	}
}

static void test_str_glob(void **state)
{
	(void)state;
	struct {
		const char *pat, *s;
		bool match;
	} cases[] = {
		{ "*", "", true },
		{ "*", "anything", true },
		{ "", "", true },
		{ "", "a", false },
		{ "a", "", false },
		{ "llama-*", "llama-3.3-70b", true },
		{ "llama-*", "llama-", true },
		{ "llama-*", "llama", false },
		{ "llama-*", "xllama-3", false },
		{ "*-mini", "gpt-4o-mini", true },
		{ "*-mini", "gpt-4o-mini2", false },
		{ "gpt-?o", "gpt-4o", true },
		{ "gpt-?o", "gpt-o", false },
		{ "gpt-?o", "gpt-44o", false },
		{ "?", "", false },
		{ "??", "ab", true },
		{ "a*b*c", "abc", true },
		{ "a*b*c", "aXXbYYc", true },
		{ "a*b*c", "aXXbYY", false },
		{ "a*b*c", "acb", false },
		{ "*a*", "bab", true },
		{ "**", "x", true },
		{ "a**b", "ab", true },
		{ "*ab", "aab", true },     /* needs a backtrack */
		{ "*aab", "aaab", true },
		{ "a*", "b", false },
		{ "claude-*", "claude-sonnet-4-5", true },
		{ "Claude-*", "claude-x", false }, /* case-sensitive */
		{ "*", "with\0nul", true },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(cases); i++) {
		struct str s = str_cstr(cases[i].s);
		if (!strcmp(cases[i].s, "with"))
			s = STR("with\0nul");
		if (str_glob(cases[i].pat, s) != cases[i].match)
			fail_msg("str_glob(\"%s\", \"%s\") should be %s", cases[i].pat,
				 cases[i].s, cases[i].match ? "true" : "false");
	}
	/* the subject is a view: bytes past n are not looked at */
	assert_true(str_glob("ab", str_make("abc", 2)));
	assert_false(str_glob("abc", str_make("abc", 2)));
}

/* A '*' in the pattern is a wildcard even where the subject has a literal
 * '*' at that spot. */
static void test_str_glob_literal_star_in_subject(void **state)
{
	(void)state;
	assert_true(str_glob("a*", STR("a*")));
	assert_true(str_glob("*", STR("*")));
	/* "a*b" must match "a*xb" ('*' = "*x"); fails in core.c:112, which
	 * consumes the pattern's '*' as a literal before trying it as a star */
	assert_true(str_glob("a*b", STR("a*xb")));
	assert_true(str_glob("x-*-y", STR("x-*z-y")));
}

static double now_s(void)
{
	return (double)clock_mono_ns() / 1e9;
}

static void test_str_glob_pathological(void **state)
{
	(void)state;
	/* exponential for a naive backtracker; the single-backtrack loop is
	 * O(n*m) */
	size_t n = 100000;
	char *s = umb_malloc(n + 1);
	memset(s, 'a', n);
	s[n] = 0;
	double t0 = now_s();
	assert_false(str_glob("a*a*a*a*a*b", str_make(s, n)));
	assert_false(str_glob("*a*a*a*a*a*a*a*a*a*a*b", str_make(s, n)));
	assert_true(str_glob("a*a*a*a*a*", str_make(s, n)));
	assert_true(str_glob("*a", str_make(s, n)));
	assert_false(str_glob("*b", str_make(s, n)));
	s[n - 1] = 'b';
	assert_true(str_glob("a*a*a*a*a*b", str_make(s, n)));
	/* a long pattern against a long subject */
	char *pat = umb_malloc(2 * 200 + 2);
	for (int i = 0; i < 200; i++) {
		pat[2 * i] = '*';
		pat[2 * i + 1] = 'a';
	}
	pat[400] = 'c';
	pat[401] = 0;
	s[n - 1] = 'a';
	assert_false(str_glob(pat, str_make(s, 20000)));
	double dt = now_s() - t0;
	/* generous for ASan/valgrind, and still far below exponential time */
	if (dt > 5.0)
		fail_msg("pathological globs took %.2fs", dt);
	free(pat);
	free(s);
}

/* ---- durations ---- */

static void test_duration(void **state)
{
	(void)state;
	struct {
		const char *s;
		uint64_t ms;
	} ok[] = {
		{ "0", 0 },
		{ "250", 250 },
		{ "500ms", 500 },
		{ "30s", 30000 },
		{ "5m", 300000 },
		{ "4h", 14400000 },
		{ "90d", 7776000000ULL },
		{ " 15s\t", 15000 },
		{ "0s", 0 },
		{ "18446744073709551615", UINT64_MAX },
		{ "18446744073709551615ms", UINT64_MAX },
		{ "213503982334d", 213503982334ULL * 86400000ULL },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(ok); i++) {
		uint64_t v = 1;
		if (duration_parse_ms(str_cstr(ok[i].s), &v) != UMB_OK)
			fail_msg("duration \"%s\" refused", ok[i].s);
		if (v != ok[i].ms)
			fail_msg("duration \"%s\" = %llu, want %llu", ok[i].s,
				 (unsigned long long)v, (unsigned long long)ok[i].ms);
	}
	const char *bad[] = {
		"", " ", "s", "ms", "-5s", "+5s", "5x", "5 s", "5S", "5MS", "5sec",
		"5ss", "5.5s", "1e3", "5m5s", "0x10", "h5",
		"18446744073709551616",          /* u64 overflow */
		"18446744073709551615s",         /* overflows in the multiply */
		"213503982335d",                 /* first day count that overflows */
		"307445734561825861m",           /* first minute count that overflows */
		"5\0s",
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		uint64_t v = 99;
		struct str s = str_cstr(bad[i]);
		if (!strcmp(bad[i], "5"))
			s = STR("5\0s");
		if (duration_parse_ms(s, &v) != UMB_ERR)
			fail_msg("duration \"%s\" accepted as %llu", bad[i], (unsigned long long)v);
		assert_true(v == 99);
	}
}

/* ---- time ---- */

static void test_clock_rfc3339(void **state)
{
	(void)state;
	char out[32];
	clock_rfc3339(0, out);
	assert_string_equal(out, "1970-01-01T00:00:00.000Z");
	clock_rfc3339(1700000000123ULL, out);
	assert_string_equal(out, "2023-11-14T22:13:20.123Z");
	clock_rfc3339(951782400007ULL, out); /* leap day 2000 */
	assert_string_equal(out, "2000-02-29T00:00:00.007Z");
	clock_rfc3339(253402300799999ULL, out); /* last ms of year 9999 */
	assert_string_equal(out, "9999-12-31T23:59:59.999Z");

	/* the live clock formats with the fixed shape */
	uint64_t now = clock_wall_ms();
	assert_true(now > 1700000000000ULL);
	clock_rfc3339(now, out);
	assert_int_equal(strlen(out), 24);
	assert_int_equal(out[4], '-');
	assert_int_equal(out[10], 'T');
	assert_int_equal(out[19], '.');
	assert_int_equal(out[23], 'Z');

	uint64_t a = clock_mono_ns(), b = clock_mono_ns();
	assert_true(b >= a);
}

/* ---- random ---- */

static void test_rand(void **state)
{
	(void)state;
	uint64_t first = rand_fast();
	int same = 0;
	uint64_t or_all = 0, and_all = UINT64_MAX;
	for (int i = 0; i < 1000; i++) {
		uint64_t v = rand_fast();
		same += v == first;
		or_all |= v;
		and_all &= v;
	}
	assert_true(same < 2);
	assert_true(or_all == UINT64_MAX); /* every bit is set sometimes... */
	assert_true(and_all == 0);         /* ...and clear sometimes */
	/* low bits spread too (used modulo small numbers for jitter) */
	int buckets[8] = { 0 };
	for (int i = 0; i < 8000; i++)
		buckets[rand_fast() % 8]++;
	for (int i = 0; i < 8; i++)
		assert_true(buckets[i] > 700 && buckets[i] < 1300);

	unsigned char x[64] = { 0 }, y[64] = { 0 };
	rand_bytes(x, sizeof x);
	rand_bytes(y, sizeof y);
	assert_memory_not_equal(x, y, sizeof x);
	rand_bytes(x, 0);
}

/* ---- logging ---- */

static void test_log_level_parse(void **state)
{
	(void)state;
	enum log_level l = LOG_ERROR;
	assert_int_equal(log_level_parse("debug", &l), UMB_OK);
	assert_int_equal(l, LOG_DEBUG);
	assert_int_equal(log_level_parse("info", &l), UMB_OK);
	assert_int_equal(l, LOG_INFO);
	assert_int_equal(log_level_parse("warn", &l), UMB_OK);
	assert_int_equal(l, LOG_WARN);
	assert_int_equal(log_level_parse("error", &l), UMB_OK);
	assert_int_equal(l, LOG_ERROR);
	const char *bad[] = { "", "INFO", "warning", "err", "debug ", "trace", "fatal" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		l = LOG_WARN;
		assert_int_equal(log_level_parse(bad[i], &l), UMB_ERR);
		assert_int_equal(l, LOG_WARN);
	}
}

/* Run log_emit/log_write_line with stderr sent to a temporary file and
 * return what was written (caller frees). */
static char *capture_log(void (*fn)(void), size_t *n)
{
	FILE *tmp = tmpfile();
	assert_non_null(tmp);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(fileno(tmp), STDERR_FILENO);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	long len = ftell(tmp);
	fseek(tmp, 0, SEEK_END);
	len = ftell(tmp);
	rewind(tmp);
	char *out = umb_malloc((size_t)len + 1);
	*n = fread(out, 1, (size_t)len, tmp);
	out[*n] = 0;
	fclose(tmp);
	return out;
}

static char big_msg[3000];

static void emit_lines(void)
{
	enum log_level saved = log_min_level;
	log_min_level = LOG_ERROR;
	log_emit(LOG_INFO, NULL, "filtered %s", "out"); /* below the level */
	log_warn("filtered too");
	log_min_level = saved;
	log_emit(LOG_ERROR, "\"k\":1", "quote\" backslash\\ ctl\x01\n %s", big_msg);
	log_emit(LOG_WARN, NULL, "plain");
}

/* log_emit writes one JSON object per line whatever the message holds; a
 * long message is cut (at 1023 bytes) but the line stays valid. */
static void test_log_emit_lines(void **state)
{
	(void)state;
	memset(big_msg, 'L', sizeof big_msg - 1);
	size_t n;
	char *out = capture_log(emit_lines, &n);
	char *line = out, *nl;
	int lines = 0;
	while ((nl = memchr(line, '\n', n - (size_t)(line - out)))) {
		struct json_val root, v;
		struct json_err err;
		if (json_parse(line, (size_t)(nl - line), &root, &err))
			fail_msg("log line %d not JSON (%s at %zu): %.*s", lines, err.msg, err.off,
				 (int)(nl - line), line);
		assert_true(json_obj_get(root, "ts", &v) && v.type == JSON_STRING);
		assert_true(json_obj_get(root, "level", &v));
		assert_true(json_str_eq(v, lines == 0 ? "error" : "warn"));
		if (lines == 0)
			assert_true(json_obj_get(root, "k", &v) && !strncmp(v.raw.p, "1", 1));
		line = nl + 1;
		lines++;
	}
	assert_int_equal(lines, 2);
	assert_ptr_equal(line, out + n); /* nothing after the last newline */
	free(out);
}

static void write_long_line(void)
{
	char line[6000];
	memset(line, 'x', sizeof line);
	log_write_line(line, sizeof line); /* longer than the stack buffer */
}

static void test_log_write_line(void **state)
{
	(void)state;
	size_t n;
	char *out = capture_log(write_long_line, &n);
	assert_int_equal(n, 6001);
	assert_int_equal(out[6000], '\n');
	free(out);
}

static void emit_utf8(void)
{
	/* 600 × "é" = 1200 bytes: the 1023-byte cut falls inside one */
	log_emit(LOG_ERROR, NULL, "%s", big_msg);
}

/* A message cut at the 1 KiB limit may end inside a UTF-8 sequence. */
static void test_log_emit_utf8_cut(void **state)
{
	(void)state;
	for (int i = 0; i < 600; i++)
		memcpy(big_msg + 2 * i, "\xc3\xa9", 2);
	big_msg[1200] = 0;
	size_t n;
	char *out = capture_log(emit_utf8, &n);
	int rc = json_parse(out, n ? n - 1 : 0, NULL, NULL);
	free(out);
	assert_int_equal(rc, UMB_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_empty),
		cmocka_unit_test(test_buf_cap_exact),
		cmocka_unit_test(test_buf_growth_and_nul),
		cmocka_unit_test(test_buf_printf),
		cmocka_unit_test(test_buf_consume),
		cmocka_unit_test(test_arena_alignment_zeroed),
		cmocka_unit_test(test_arena_big),
		cmocka_unit_test(test_arena_cleanup_order),
		cmocka_unit_test(test_str_ieq),
		cmocka_unit_test(test_str_trim),
		cmocka_unit_test(test_str_to_u64),
		cmocka_unit_test(test_str_glob),
		cmocka_unit_test(test_str_glob_literal_star_in_subject),
		cmocka_unit_test(test_str_glob_pathological),
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_clock_rfc3339),
		cmocka_unit_test(test_rand),
		cmocka_unit_test(test_log_level_parse),
		cmocka_unit_test(test_log_emit_lines),
		cmocka_unit_test(test_log_write_line),
		cmocka_unit_test(test_log_emit_utf8_cut),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
