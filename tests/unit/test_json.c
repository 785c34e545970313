/* test_json.c — unit tests for core/json: JSONTestSuite-style accept and
 * reject cases, UTF-8 edge cases at every SIMD block offset, truncation,
 * depth, member recording, navigation, decoding, the writer, and a
 * differential check against cJSON on generated documents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "core/json.h"

/* Literal with its length, so cases may hold NUL bytes. */
struct tcase {
	const char *s;
	size_t n;
};
#define T(lit) { (lit), sizeof(lit) - 1 }

static bool parses(const char *s, size_t n)
{
	struct json_val root;
	struct json_err err = { 0, NULL };
	int rc = json_parse(s, n, &root, &err);

	if (rc == UMB_OK)
		return true;
	assert_non_null(err.msg);
	assert_true(err.off <= n);
	return false;
}

static bool parses_c(const char *s)
{
	return parses(s, strlen(s));
}

/* ---- accept / reject tables ---- */

static const struct tcase y_cases[] = {
	T("[]"), T("{}"), T("0"), T("-0"), T("1"), T("-1"), T("123"),
	T("1.5"), T("-1.5e10"), T("1E5"), T("1e+5"), T("1e-5"), T("0.0"),
	T("0e0"), T("1E+2"), T("-0.0e-0"), T("123e65"),
	T("1e999999999999999999"), T("-1e-999999"),
	T("123456789012345678901234567890"), T("\"\""), T("\"a\""),
	T("true"), T("false"), T("null"), T(" [ 1 , 2 ] "),
	T("\t\n\r {\"a\" : [true,false,null]}\n"), T("[[],[[]],{}]"),
	T("{\"\":0}"), T("{\"a\":1,\"a\":2}"), /* duplicate keys: allowed */
	T("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""), T("\"\\u0000\""),
	T("\"\\uD834\\uDD1E\""), T("\"\\uD800\""), /* lone high */
	T("\"\\uDFFF\""), /* lone low */ T("\"\\uDd1e\\uD834\""),
	T("\"\\uFFFF\""), T("\"\\u00e9\""), T("\"\x7f\""),
	T("\"\xc2\x80\""), T("\"\xdf\xbf\""), T("\"\xe0\xa0\x80\""),
	T("\"\xed\x9f\xbf\""), T("\"\xee\x80\x80\""), T("\"\xef\xbf\xbf\""),
	T("\"\xf0\x90\x80\x80\""), T("\"\xf4\x8f\xbf\xbf\""),
	T("\"\xe2\x82\xac\xe6\x97\xa5\xf0\x9f\x98\x80\""),
	T("[\"a\",{\"b\":[1,{\"c\":\"\\n\"}]},-2.5E-3]"),
};

static const struct tcase n_cases[] = {
	T(""), T(" "), T("\n\t"), T("["), T("]"), T("{"), T("}"), T("[1"),
	T("[1,"), T("[1,]"), T("[,1]"), T("[1 2]"), T("{\"a\"}"),
	T("{\"a\":}"), T("{\"a\" 1}"), T("{\"a\":1,}"), T("{,}"),
	T("{1:1}"), T("{a:1}"), T("{'a':1}"), T("{\"a\":1 \"b\":2}"),
	T("[}"), T("{]"), T("[1]]"), T("{}}"), T("[] []"), T("1 2"),
	T("01"), T("-01"), T("00"), T("1."), T(".1"), T("-"), T("+1"),
	T("1e"), T("1e+"), T("1E-"), T("-.5"), T("1.e5"), T("0x10"),
	T("Infinity"), T("-Infinity"), T("NaN"), T("1,"), T("- 1"),
	T("tru"), T("true1"), T("nul"), T("nulll"), T("False"), T("TRUE"),
	T("\""), T("\"abc"), T("'a'"), T("\"\\\""), T("\"\\x\""),
	T("\"\\a\""), T("\"\\'\""), T("\"\\u\""), T("\"\\u12\""),
	T("\"\\u12G4\""), T("\"\\U1234\""), T("\"\\uD800\\u\""),
	T("\"\\\n\""), T("\"a\tb\""), T("\"a\nb\""), T("\"\x00\""),
	T("\"\x1f\""), T("[\"\x01\"]"),
	/* invalid UTF-8 of each kind */
	T("\"\x80\""), T("\"\xbf\""), T("\"\xc0\x80\""), T("\"\xc1\xbf\""),
	T("\"\xc2\""), T("\"\xc2\x41\""), T("\"\xe0\x80\x80\""),
	T("\"\xe0\x9f\xbf\""), T("\"\xed\xa0\x80\""), T("\"\xed\xbf\xbf\""),
	T("\"\xe2\x82\""), T("\"\xe2\x28\xa1\""), T("\"\xf0\x80\x80\x80\""),
	T("\"\xf0\x8f\xbf\xbf\""), T("\"\xf4\x90\x80\x80\""),
	T("\"\xf5\x80\x80\x80\""), T("\"\xf8\x88\x80\x80\x80\""),
	T("\"\xfe\""), T("\"\xff\""), T("\"\xf0\x9f\x98\""),
	T("\"\xe6\x97\xa5\xe6\x97\""),
	/* garbage outside strings */
	T("\xef\xbb\xbf{}"), /* BOM is not JSON */ T("[\x00]"), T("{}\x00"),
	T("[1]x"), T("\x0b[]"), T("[\f]"), T("/* c */[]"), T("[1]//"),
	T("[\"a\",]"), T("{\"a\":1}{"), T("nulltrue"),
};

static void test_accept_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < UMB_ARRAY_LEN(y_cases); i++) {
		if (!parses(y_cases[i].s, y_cases[i].n))
			fail_msg("y case %zu rejected: %s", i, y_cases[i].s);
	}
}

static void test_reject_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < UMB_ARRAY_LEN(n_cases); i++) {
		if (parses(n_cases[i].s, n_cases[i].n))
			fail_msg("n case %zu accepted: %s", i, n_cases[i].s);
	}
}

/* ---- strings at every offset relative to the 16-byte blocks ---- */

/* Put `mid` inside a string after `pad` ASCII bytes and `tail` after it. */
static bool parses_padded(const char *mid, size_t mid_n, size_t pad,
			  size_t tail)
{
	char doc[256];
	size_t n = 0;

	doc[n++] = '"';
	for (size_t i = 0; i < pad; i++)
		doc[n++] = (char)('a' + i % 26);
	memcpy(doc + n, mid, mid_n);
	n += mid_n;
	for (size_t i = 0; i < tail; i++)
		doc[n++] = (char)('A' + i % 26);
	doc[n++] = '"';
	/* parse from a heap copy of the exact size so ASan catches reads
	 * past the end */
	char *h = malloc(n);
	memcpy(h, doc, n);
	bool ok = parses(h, n);
	free(h);
	return ok;
}

static void test_string_block_offsets(void **state)
{
	static const struct tcase good[] = {
		T("\xc2\x80"), T("\xe2\x82\xac"), T("\xf0\x9f\x98\x80"),
		T("\xf4\x8f\xbf\xbf"), T("\\n"), T("\\u00e9"), T("\\\""),
		T("\x7f"), T("\xed\x9f\xbf\xee\x80\x80"),
	};
	static const struct tcase bad[] = {
		T("\x80"), T("\xc0\xaf"), T("\xe0\x9f\xbf"), T("\xed\xa0\x80"),
		T("\xf4\x90\x80\x80"), T("\xf0\x8f\xbf\xbf"), T("\xff"),
		T("\x00"), T("\x1f"), T("\n"), T("\\q"), T("\\u12x4"),
		T("\xe2\x82"),
	};
	(void)state;
	for (size_t pad = 0; pad < 40; pad++) {
		for (size_t tail = 0; tail < 20; tail += 3) {
			for (size_t i = 0; i < UMB_ARRAY_LEN(good); i++)
				if (!parses_padded(good[i].s, good[i].n, pad, tail))
					fail_msg("good %zu rejected pad %zu", i, pad);
			for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++)
				if (parses_padded(bad[i].s, bad[i].n, pad, tail))
					fail_msg("bad %zu accepted pad %zu", i, pad);
		}
	}
}

static void test_control_bytes(void **state)
{
	(void)state;
	for (int c = 0; c < 0x20; c++) {
		char ch = (char)c;
		for (size_t pad = 0; pad < 34; pad++)
			assert_false(parses_padded(&ch, 1, pad, 5));
	}
	char del = 0x7f;
	assert_true(parses_padded(&del, 1, 17, 0));
}

/* Every code point's UTF-8 encoding is accepted; every surrogate rejected. */
static void test_utf8_all_code_points(void **state)
{
	(void)state;
	for (uint32_t cp = 0x80; cp <= 0x10FFFF; cp += (cp < 0x10000 ? 1 : 61)) {
		char u[4];
		size_t n;
		if (cp < 0x800) {
			u[0] = (char)(0xC0 | cp >> 6);
			u[1] = (char)(0x80 | (cp & 63));
			n = 2;
		} else if (cp < 0x10000) {
			u[0] = (char)(0xE0 | cp >> 12);
			u[1] = (char)(0x80 | (cp >> 6 & 63));
			u[2] = (char)(0x80 | (cp & 63));
			n = 3;
		} else {
			u[0] = (char)(0xF0 | cp >> 18);
			u[1] = (char)(0x80 | (cp >> 12 & 63));
			u[2] = (char)(0x80 | (cp >> 6 & 63));
			u[3] = (char)(0x80 | (cp & 63));
			n = 4;
		}
		bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
		assert_int_equal(json_utf8_valid(u, n), !surrogate);
		char doc[6] = { '"' };
		memcpy(doc + 1, u, n);
		doc[n + 1] = '"';
		assert_int_equal(parses(doc, n + 2), !surrogate);
	}
	assert_true(json_utf8_valid("", 0));
	assert_true(json_utf8_valid("plain ascii that is longer than 16", 34));
	assert_false(json_utf8_valid("0123456789abcdefghij\xc0\x80", 22));
	assert_false(json_utf8_valid("\xf4\x90\x80\x80", 4));
}

/* ---- numbers ---- */

static void test_numbers(void **state)
{
	static const char *good[] = {
		"0", "-0", "9", "10", "-10", "0.1", "10.01", "1e1", "1E1",
		"1e+1", "1e-1", "0e5", "-0.0E+00", "1.5e308", "1e400",
		"-1e-400", "[1,2.5,-3e3]",
	};
	static const char *bad[] = {
		"01", "-", "--1", "1.", ".5", "1e", "1e+", "1.e1", "+0",
		"0.e", "1ee1", "1e1.5", "1.5.5", "0x1", "1_000", "1 000",
		"[01]", "[1.]", "[-]", "{\"a\":-}", "-a", "1f", "\xd9\xa1",
	};
	(void)state;
	for (size_t i = 0; i < UMB_ARRAY_LEN(good); i++)
		if (!parses_c(good[i]))
			fail_msg("number rejected: %s", good[i]);
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++)
		if (parses_c(bad[i]))
			fail_msg("number accepted: %s", bad[i]);
}

/* ---- truncation, depth, trailing data, error reports ---- */

static void test_truncation(void **state)
{
	static const char doc[] =
		"{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
		"\"content\":\"h\\u00e9llo \\uD83D\\uDE00 \xe6\x97\xa5\\n\"}],"
		"\"temperature\":0.7,\"n\":-1e-3,\"stream\":true,\"x\":null,"
		"\"y\":false,\"z\":[[],{}]}";
	size_t n = sizeof(doc) - 1;
	(void)state;
	assert_true(parses(doc, n));
	for (size_t i = 0; i < n; i++) {
		char *h = malloc(i ? i : 1);
		memcpy(h, doc, i);
		if (parses(h, i))
			fail_msg("prefix of %zu bytes accepted", i);
		free(h);
	}
}

static char *nested(size_t depth, char open, char close, size_t *n)
{
	char *s = malloc(2 * depth + 1);
	for (size_t i = 0; i < depth; i++) {
		s[i] = open;
		s[2 * depth - 1 - i] = close;
	}
	*n = 2 * depth;
	s[*n] = 0;
	return s;
}

static void test_depth(void **state)
{
	struct json_err err;
	size_t n;
	char *s;
	(void)state;

	s = nested(JSON_MAX_DEPTH, '[', ']', &n);
	assert_int_equal(json_parse(s, n, NULL, NULL), UMB_OK);
	free(s);
	s = nested(JSON_MAX_DEPTH + 1, '[', ']', &n);
	assert_int_equal(json_parse(s, n, NULL, &err), UMB_ERR);
	assert_string_equal(err.msg, "nesting too deep");
	assert_int_equal(err.off, JSON_MAX_DEPTH);
	free(s);
	s = nested(100000, '[', ']', &n);
	assert_int_equal(json_parse(s, n, NULL, &err), UMB_ERR);
	free(s);

	/* objects: {"a":{"a":...{}}} */
	struct buf b;
	buf_init(&b, 0);
	for (int d = 0; d < JSON_MAX_DEPTH - 1; d++)
		buf_append_cstr(&b, "{\"a\":");
	buf_append_cstr(&b, "{}");
	for (int d = 0; d < JSON_MAX_DEPTH - 1; d++)
		buf_append_cstr(&b, "}");
	assert_int_equal(json_parse(b.p, b.n, NULL, NULL), UMB_OK);
	buf_reset(&b);
	for (int d = 0; d < JSON_MAX_DEPTH; d++)
		buf_append_cstr(&b, "{\"a\":");
	buf_append_cstr(&b, "[]");
	for (int d = 0; d < JSON_MAX_DEPTH; d++)
		buf_append_cstr(&b, "}");
	assert_int_equal(json_parse(b.p, b.n, NULL, &err), UMB_ERR);
	assert_string_equal(err.msg, "nesting too deep");
	/* the top-members path counts depth the same way */
	size_t cnt;
	struct json_member m[4];
	assert_int_equal(json_parse_top(b.p, b.n, m, 4, &cnt, NULL, &err),
			 UMB_ERR);
	assert_string_equal(err.msg, "nesting too deep");
	buf_clear(&b);
}

static void expect_err(const char *doc, size_t off, const char *msg)
{
	struct json_err err = { 0, NULL };
	struct json_val root;

	assert_int_equal(json_parse(doc, strlen(doc), &root, &err), UMB_ERR);
	assert_int_equal(root.type, JSON_INVALID);
	if (err.off != off || strcmp(err.msg, msg) != 0)
		fail_msg("%s: got %zu '%s', want %zu '%s'", doc, err.off,
			 err.msg, off, msg);
}

static void test_errors(void **state)
{
	(void)state;
	expect_err("{\"a\" 1}", 5, "expected ':' after object key");
	expect_err("{\"a\":1,}", 7, "expected string key in object");
	expect_err("[1 2]", 3, "expected ',' or ']' in array");
	expect_err("{\"a\":1 2}", 7, "expected ',' or '}' in object");
	expect_err("{} x", 3, "unexpected data after the top value");
	expect_err("01", 1, "unexpected data after the top value");
	expect_err("", 0, "expected a value");
	expect_err("\"ab\\x\"", 3, "invalid escape in string");
	expect_err("\"ab\x01\"", 3, "control character in string");
	expect_err("\"abc", 4, "unterminated string");
	expect_err("[\"\xc3\x28\"]", 2, "invalid UTF-8 in string");
	expect_err("1.", 2, "invalid number: digit expected after '.'");
	expect_err("[tru]", 1, "invalid literal");
	assert_int_equal(json_parse(NULL, 0, NULL, NULL), UMB_ERR);
	assert_int_equal(json_parse(NULL, 3, NULL, NULL), UMB_ERR);
}

/* ---- top-level members ---- */

static void test_parse_top(void **state)
{
	static const char body[] =
		" {\"model\" : \"gpt-4o\", \"messages\":[{\"role\":\"user\","
		"\"content\":\"hi\"}], \"stream\":true, \"max_tokens\":12,"
		"\"k\\u0065y\":null, \"o\":{\"a\":[1]}} ";
	struct json_member m[8];
	struct json_val root;
	struct json_err err;
	size_t n = 99;
	(void)state;

	assert_int_equal(json_parse_top(body, sizeof(body) - 1, m, 8, &n,
					&root, &err), UMB_OK);
	assert_int_equal(root.type, JSON_OBJECT);
	assert_int_equal(root.raw.p, body + 1);
	assert_int_equal(root.raw.n, sizeof(body) - 3);
	assert_int_equal(n, 6);
	assert_true(str_eq_cstr(m[0].key_raw, "model"));
	assert_int_equal(m[0].val.type, JSON_STRING);
	assert_true(str_eq_cstr(m[0].val.raw, "\"gpt-4o\""));
	assert_int_equal(m[1].val.type, JSON_ARRAY);
	assert_true(str_eq_cstr(m[1].val.raw,
				"[{\"role\":\"user\",\"content\":\"hi\"}]"));
	assert_int_equal(m[2].val.type, JSON_TRUE);
	assert_true(json_is_true(m[2].val));
	assert_int_equal(m[3].val.type, JSON_NUMBER);
	assert_true(str_eq_cstr(m[3].val.raw, "12"));
	assert_true(str_eq_cstr(m[4].key_raw, "k\\u0065y"));
	assert_true(json_key_eq(m[4].key_raw, "key"));
	assert_int_equal(m[4].val.type, JSON_NULL);
	assert_int_equal(m[5].val.type, JSON_OBJECT);

	/* exactly max is fine, one more fails */
	assert_int_equal(json_parse_top(body, sizeof(body) - 1, m, 6, &n,
					NULL, NULL), UMB_OK);
	assert_int_equal(json_parse_top(body, sizeof(body) - 1, m, 5, &n,
					&root, &err), UMB_ERR);
	assert_string_equal(err.msg, "too many members");
	assert_int_equal(n, 0);
	assert_int_equal(root.type, JSON_INVALID);

	/* non-object roots */
	assert_int_equal(json_parse_top("[1,2]", 5, m, 8, &n, &root, NULL),
			 UMB_OK);
	assert_int_equal(n, 0);
	assert_int_equal(root.type, JSON_ARRAY);
	assert_int_equal(json_parse_top(" \"s\" ", 5, m, 8, &n, &root, NULL),
			 UMB_OK);
	assert_int_equal(root.type, JSON_STRING);
	assert_true(str_eq_cstr(root.raw, "\"s\""));
	assert_int_equal(json_parse_top("{}", 2, m, 0, &n, &root, NULL),
			 UMB_OK);
	assert_int_equal(n, 0);
	assert_int_equal(root.type, JSON_OBJECT);
	/* an error after recording members reports zero members */
	assert_int_equal(json_parse_top("{\"a\":1,\"b\":}", 12, m, 8, &n,
					NULL, &err), UMB_ERR);
	assert_int_equal(n, 0);
	assert_int_equal(err.off, 11);
}

/* ---- navigation ---- */

static void test_navigation(void **state)
{
	static const char doc[] =
		"{ \"a\" : [ 1 , \"x\\\"]}\" , { \"b\" : [ ] } , -2.5e3 , true ] ,"
		"\"k\\\"ey\":{\"n\\u00e9\":\"v\"} , \"e\":{}, \"z\" : null }";
	struct json_val root, v, w;
	struct json_iter it, jt;
	struct str k;
	(void)state;

	assert_int_equal(json_parse(doc, sizeof(doc) - 1, &root, NULL), UMB_OK);
	json_iter_init(&it, root);
	assert_true(json_obj_next(&it, &k, &v));
	assert_true(str_eq_cstr(k, "a"));
	assert_int_equal(v.type, JSON_ARRAY);

	json_iter_init(&jt, v);
	enum json_type want[] = { JSON_NUMBER, JSON_STRING, JSON_OBJECT,
				  JSON_NUMBER, JSON_TRUE };
	const char *raw[] = { "1", "\"x\\\"]}\"", "{ \"b\" : [ ] }", "-2.5e3",
			      "true" };
	for (size_t i = 0; i < 5; i++) {
		assert_true(json_arr_next(&jt, &w));
		assert_int_equal(w.type, want[i]);
		if (!str_eq_cstr(w.raw, raw[i]))
			fail_msg("elem %zu: '%.*s'", i, STR_FMT(w.raw));
	}
	assert_false(json_arr_next(&jt, &w));
	assert_false(json_arr_next(&jt, &w));

	assert_true(json_obj_next(&it, &k, &v));
	assert_true(str_eq_cstr(k, "k\\\"ey"));
	assert_true(json_key_eq(k, "k\"ey"));
	assert_true(json_obj_get(v, "n\xc3\xa9", &w));
	assert_true(json_str_eq(w, "v"));
	assert_true(json_obj_next(&it, &k, &v));
	assert_true(str_eq_cstr(v.raw, "{}"));
	json_iter_init(&jt, v);
	assert_false(json_obj_next(&jt, &k, &w));
	assert_true(json_obj_next(&it, &k, &v));
	assert_int_equal(v.type, JSON_NULL);
	assert_false(json_obj_next(&it, &k, &v));

	assert_true(json_obj_get(root, "z", &v));
	assert_true(json_obj_get(root, "k\"ey", NULL));
	assert_false(json_obj_get(root, "b", &v)); /* not at this level */
	assert_false(json_obj_get(root, "", &v));
	assert_false(json_obj_get(w, "a", &v)); /* not an object */

	/* iterating a scalar yields nothing */
	json_iter_init(&jt, w);
	assert_false(json_arr_next(&jt, &v));
}

static void test_key_eq(void **state)
{
	(void)state;
	assert_true(json_key_eq(STR(""), ""));
	assert_false(json_key_eq(STR(""), "a"));
	assert_false(json_key_eq(STR("a"), ""));
	assert_true(json_key_eq(STR("model"), "model"));
	assert_false(json_key_eq(STR("model"), "models"));
	assert_false(json_key_eq(STR("models"), "model"));
	assert_true(json_key_eq(STR("\\u006dodel"), "model"));
	assert_true(json_key_eq(STR("mo\\u0064el"), "model"));
	assert_false(json_key_eq(STR("mo\\u0064el"), "mo"));
	assert_false(json_key_eq(STR("mo\\u0064el"), "modelx"));
	assert_true(json_key_eq(STR("a\\/b\\\\c\\n"), "a/b\\c\n"));
	assert_true(json_key_eq(STR("\\uD83D\\uDE00"), "\xf0\x9f\x98\x80"));
	assert_true(json_key_eq(STR("\\uD83D"), "\xef\xbf\xbd"));
	assert_false(json_key_eq(STR("a\\u0000"), "a"));
	assert_false(json_key_eq(STR("a\\u0000b"), "a"));
	assert_false(json_str_eq((struct json_val){ JSON_NUMBER, STR("1") }, "1"));
	assert_true(json_str_eq((struct json_val){ JSON_STRING, STR("\"\"") }, ""));
}

/* ---- decoding ---- */

static void expect_decode(const char *raw, const char *want, size_t want_n)
{
	struct buf b;

	buf_init(&b, 0);
	assert_int_equal(json_str_decode((struct json_val){ JSON_STRING,
							    str_cstr(raw) },
					 &b), UMB_OK);
	if (b.n != want_n || memcmp(b.p ? b.p : "", want, want_n) != 0)
		fail_msg("decode %s: got %zu bytes", raw, b.n);
	buf_clear(&b);
}

static void test_decode(void **state)
{
	(void)state;
	expect_decode("\"\"", "", 0);
	expect_decode("\"plain\"", "plain", 5);
	expect_decode("\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"",
		      "a\"b\\c/d\be\ff\ng\rh\ti", 17);
	expect_decode("\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac", 6);
	expect_decode("\"\\u0000x\"", "\0x", 2);
	expect_decode("\"\\uD834\\uDD1E\"", "\xf0\x9d\x84\x9e", 4);
	expect_decode("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf", 4);
	/* lone surrogates become U+FFFD */
	expect_decode("\"\\uD800\"", "\xef\xbf\xbd", 3);
	expect_decode("\"\\uDC00x\"", "\xef\xbf\xbdx", 4);
	expect_decode("\"\\uD800\\u0041\"", "\xef\xbf\xbd" "A", 4);
	expect_decode("\"\\uD800\\uD800\\uDC00\"",
		      "\xef\xbf\xbd\xf0\x90\x80\x80", 7);
	expect_decode("\"\\uDC00\\uD800\"", "\xef\xbf\xbd\xef\xbf\xbd", 6);
	expect_decode("\"\\uD800\\n\"", "\xef\xbf\xbd\n", 4);
	expect_decode("\"\xe6\x97\xa5\\n\xf0\x9f\x98\x80\"",
		      "\xe6\x97\xa5\n\xf0\x9f\x98\x80", 8);

	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(json_str_decode((struct json_val){ JSON_NUMBER,
							    STR("1") }, &b),
			 UMB_ERR);
	/* the buf cap is respected */
	buf_clear(&b);
	buf_init(&b, 4);
	assert_int_equal(json_str_decode((struct json_val){ JSON_STRING,
							    STR("\"abcdefgh\"") },
					 &b), UMB_ETOOBIG);
	buf_clear(&b);
}

/* ---- number accessors ---- */

static int i64_of(const char *s, int64_t *out)
{
	return json_get_i64((struct json_val){ JSON_NUMBER, str_cstr(s) }, out);
}

static void test_get_numbers(void **state)
{
	int64_t i = 7;
	double d;
	(void)state;

	assert_int_equal(i64_of("0", &i), UMB_OK);
	assert_int_equal(i, 0);
	assert_int_equal(i64_of("-0", &i), UMB_OK);
	assert_int_equal(i, 0);
	assert_int_equal(i64_of("12345", &i), UMB_OK);
	assert_int_equal(i, 12345);
	assert_int_equal(i64_of("9223372036854775807", &i), UMB_OK);
	assert_true(i == INT64_MAX);
	assert_int_equal(i64_of("-9223372036854775808", &i), UMB_OK);
	assert_true(i == INT64_MIN);
	assert_int_equal(i64_of("9223372036854775808", &i), UMB_ERR);
	assert_int_equal(i64_of("-9223372036854775809", &i), UMB_ERR);
	assert_int_equal(i64_of("99999999999999999999", &i), UMB_ERR);
	assert_int_equal(i64_of("1.0", &i), UMB_ERR);
	assert_int_equal(i64_of("1e2", &i), UMB_ERR);
	assert_int_equal(i64_of("-", &i), UMB_ERR);
	assert_int_equal(json_get_i64((struct json_val){ JSON_STRING,
							 STR("\"1\"") }, &i),
			 UMB_ERR);

	struct json_val v = { JSON_NUMBER, STR("-2.5e3") };
	assert_int_equal(json_get_double(v, &d), UMB_OK);
	assert_true(d == -2500.0);
	v.raw = STR("0.7");
	assert_int_equal(json_get_double(v, &d), UMB_OK);
	assert_true(d == 0.7);
	v.raw = STR("1e400");
	assert_int_equal(json_get_double(v, &d), UMB_ERR);
	v.raw = STR("1e-400");
	assert_int_equal(json_get_double(v, &d), UMB_OK);
	assert_true(d == 0.0);
	/* a long number takes the heap path; the view is not NUL-terminated */
	static const char longnum[] =
		"1.00000000000000000000000000000000000000000000000000000000"
		"0000000000000000000000000000000000001,";
	v.raw = str_make(longnum, sizeof(longnum) - 2);
	assert_int_equal(json_get_double(v, &d), UMB_OK);
	assert_true(d == 1.0);
	v.raw = STR("0x10"); /* strtod would take these */
	assert_int_equal(json_get_double(v, &d), UMB_ERR);
	v.raw = STR(" 1");
	assert_int_equal(json_get_double(v, &d), UMB_ERR);
	v.raw = STR("inf");
	assert_int_equal(json_get_double(v, &d), UMB_ERR);
	v.raw = STR("1");
	v.type = JSON_TRUE;
	assert_int_equal(json_get_double(v, &d), UMB_ERR);
}

/* ---- writer ---- */

static void test_writer(void **state)
{
	struct buf b;
	(void)state;

	buf_init(&b, 0);
	assert_int_equal(json_write_cstr(&b, "a\"b\\c\n\t\x01\x1f\x7f/\xc3\xa9"),
			 UMB_OK);
	assert_string_equal(b.p, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f\x7f/\xc3\xa9\"");
	buf_reset(&b);
	assert_int_equal(json_write_str(&b, str_make("x\0y", 3)), UMB_OK);
	assert_string_equal(b.p, "\"x\\u0000y\"");
	buf_reset(&b);
	assert_int_equal(json_write_cstr(&b, ""), UMB_OK);
	assert_string_equal(b.p, "\"\"");
	buf_clear(&b);

	/* over the cap: error, and nothing partial is left behind */
	buf_init(&b, 16);
	buf_append_cstr(&b, "{\"k\":");
	assert_int_equal(json_write_cstr(&b, "0123456789abcdef"), UMB_ETOOBIG);
	assert_int_equal(b.n, 5);
	assert_string_equal(b.p, "{\"k\":");
	buf_clear(&b);
}

/* Small deterministic PRNG so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

/* Append one random code point as UTF-8, biased to the tricky parts. */
static void rand_utf8(struct buf *b)
{
	uint32_t cp;
	char u[4];
	size_t n;

	switch (rng() % 6) {
	case 0: cp = rng() % 0x20; break;
	case 1: cp = "\"\\/"[rng() % 3]; break;
	case 2: cp = 0x80 + rng() % 0x780; break;
	case 3: cp = 0x800 + rng() % 0xF800; break;
	case 4: cp = 0x10000 + rng() % 0x100000; break;
	default: cp = 0x20 + rng() % 0x60; break;
	}
	if (cp >= 0xD800 && cp <= 0xDFFF)
		cp = 0xFFFD;
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | cp >> 6);
		u[1] = (char)(0x80 | (cp & 63));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | cp >> 12);
		u[1] = (char)(0x80 | (cp >> 6 & 63));
		u[2] = (char)(0x80 | (cp & 63));
		n = 3;
	} else {
		u[0] = (char)(0xF0 | cp >> 18);
		u[1] = (char)(0x80 | (cp >> 12 & 63));
		u[2] = (char)(0x80 | (cp >> 6 & 63));
		u[3] = (char)(0x80 | (cp & 63));
		n = 4;
	}
	buf_append(b, u, n);
}

static void test_writer_round_trip(void **state)
{
	struct buf in, doc, out;
	(void)state;

	buf_init(&in, 0);
	buf_init(&doc, 0);
	buf_init(&out, 0);
	for (int iter = 0; iter < 2000; iter++) {
		buf_reset(&in);
		buf_reset(&doc);
		buf_reset(&out);
		size_t len = rng() % 80;
		for (size_t i = 0; i < len; i++)
			rand_utf8(&in);
		assert_true(json_utf8_valid(in.p, in.n));
		assert_int_equal(json_write_str(&doc, buf_str(&in)), UMB_OK);
		struct json_val v;
		assert_int_equal(json_parse(doc.p, doc.n, &v, NULL), UMB_OK);
		assert_int_equal(v.type, JSON_STRING);
		assert_int_equal(json_str_decode(v, &out), UMB_OK);
		assert_int_equal(out.n, in.n);
		assert_memory_equal(out.p ? out.p : "", in.p ? in.p : "", in.n);
	}
	buf_clear(&in);
	buf_clear(&doc);
	buf_clear(&out);
}

/* ---- differential against cJSON ---- */

static void gen_value(struct buf *b, int depth);

static void gen_string(struct buf *b)
{
	static const char *esc[] = { "\\n", "\\\"", "\\\\", "\\/", "\\t",
				     "\\u0041", "\\u00e9", "\\uD83D\\uDE00" };
	size_t len = rng() % 12;

	buf_append_cstr(b, "\"");
	for (size_t i = 0; i < len; i++) {
		if (rng() % 6 == 0)
			buf_append_cstr(b, esc[rng() % UMB_ARRAY_LEN(esc)]);
		else
			buf_printf(b, "%c", (char)('a' + rng() % 20)); /* no 'u' */
	}
	buf_append_cstr(b, "\"");
}

/* Spaces only: a mutated quote can pull whitespace into a string, and
 * cJSON accepts raw \n or \t there. */
static void gen_ws(struct buf *b)
{
	if (rng() % 4 == 0)
		buf_append_cstr(b, (const char *[]){ " ", "  " }[rng() % 2]);
}

static void gen_value(struct buf *b, int depth)
{
	unsigned k = rng() % (depth > 5 ? 5 : 7);

	gen_ws(b);
	switch (k) {
	case 0: buf_printf(b, "%u", rng() % 100000); break;
	case 1: buf_append_cstr(b, (const char *[]){ "true", "false", "null",
						     "-1.5e3", "0.25" }[rng() % 5]); break;
	case 2: case 3: case 4: gen_string(b); break;
	case 5: {
		size_t n = rng() % 5;
		buf_append_cstr(b, "[");
		for (size_t i = 0; i < n; i++) {
			if (i)
				buf_append_cstr(b, ",");
			gen_value(b, depth + 1);
		}
		buf_append_cstr(b, "]");
		break;
	}
	default: {
		size_t n = rng() % 5;
		buf_append_cstr(b, "{");
		for (size_t i = 0; i < n; i++) {
			if (i)
				buf_append_cstr(b, ",");
			gen_ws(b);
			gen_string(b);
			gen_ws(b);
			buf_append_cstr(b, ":");
			gen_value(b, depth + 1);
		}
		buf_append_cstr(b, "}");
	}
	}
	gen_ws(b);
}

/* Mutate structure only. cJSON is lax where we are strict (numbers through
 * strtod, any byte <= 0x20 as whitespace, raw control bytes in strings,
 * unchecked \u hex digits, no UTF-8 check), so mutations stay away from
 * digits, \u escapes, control bytes and non-ASCII: on what is left the two
 * parsers must agree. */
static void mutate(struct buf *b)
{
	/* no 'u': a new backslash before one would make a \u escape */
	static const char alphabet[] = "{}[],:\"\\ trefalsn";
	size_t pos;

	if (b->n == 0)
		return;
	pos = rng() % b->n;
	if (b->p[pos] >= '0' && b->p[pos] <= '9')
		return;
	if (pos && (b->p[pos - 1] >= '0' && b->p[pos - 1] <= '9'))
		return;
	/* cJSON reads \uXXXX without checking the hex digits, and rejects
	 * the lone surrogates RFC 8259 allows: leave escapes whole */
	for (size_t j = pos > 6 ? pos - 6 : 0; j <= pos + 2 && j < b->n; j++)
		if (b->p[j] == '\\')
			return;
	switch (rng() % 4) {
	case 0: /* delete a byte */
		memmove(b->p + pos, b->p + pos + 1, b->n - pos - 1);
		b->n--;
		break;
	case 1: /* replace a byte */
		b->p[pos] = alphabet[rng() % (sizeof(alphabet) - 1)];
		break;
	case 2: /* insert a byte */
		buf_append(b, "x", 1);
		memmove(b->p + pos + 1, b->p + pos, b->n - pos - 1);
		b->p[pos] = alphabet[rng() % (sizeof(alphabet) - 1)];
		break;
	default: /* truncate */
		b->n = pos;
		break;
	}
	b->p[b->n] = 0;
}

#ifndef DIFF_ITERS
#define DIFF_ITERS 1000
#endif

static void test_differential_cjson(void **state)
{
	struct buf b;
	int valid = 0, invalid = 0;
	(void)state;

	buf_init(&b, 0);
	for (int iter = 0; iter < DIFF_ITERS; iter++) {
		buf_reset(&b);
		gen_value(&b, 0);
		int muts = iter % 3 == 0 ? 0 : 1 + (int)(rng() % 3);
		for (int m = 0; m < muts; m++)
			mutate(&b);

		/* cJSON's require_null_terminated wants the NUL inside the
		 * length it is given; struct buf always has one */
		cJSON *cj = cJSON_ParseWithLengthOpts(b.p, b.n + 1, NULL, 1);
		bool theirs = cj != NULL;
		cJSON_Delete(cj);
		bool ours = json_parse(b.p ? b.p : "", b.n, NULL, NULL) == UMB_OK;
		if (ours != theirs)
			fail_msg("disagree (ours %d, cJSON %d) on: %s", ours,
				 theirs, b.p);
		if (ours)
			valid++;
		else
			invalid++;
	}
	/* make sure both branches were exercised */
	assert_true(valid > 150);
	assert_true(invalid > 150);
	buf_clear(&b);
}

/* The writer scans eight bytes at a time: every character that needs an
 * escape, at every offset around the 8-byte steps, among plain ASCII and
 * UTF-8, must come out exactly as a byte-by-byte writer would. */
static void test_writer_escape_at_every_offset(void **state)
{
	(void)state;
	static const unsigned char specials[] = { '"', '\\', '\n', 0x01, 0x1f, 0x7f, 0xc3 };
	for (size_t len = 1; len <= 40; len++) {
		for (size_t at = 0; at < len; at++) {
			for (size_t k = 0; k < sizeof specials; k++) {
				char in[48];
				for (size_t i = 0; i < len; i++)
					in[i] = (char)('a' + i % 26);
				in[at] = (char)specials[k];
				if (specials[k] == 0xc3) { /* a whole two-byte character */
					if (at + 1 >= len)
						continue;
					in[at + 1] = (char)0xa9;
				}
				char want[300];
				size_t w = 0;
				want[w++] = '"';
				for (size_t i = 0; i < len; i++) {
					unsigned char c = (unsigned char)in[i];
					if (c == '"' || c == '\\') {
						want[w++] = '\\';
						want[w++] = (char)c;
					} else if (c == '\n') {
						want[w++] = '\\';
						want[w++] = 'n';
					} else if (c < 0x20) {
						w += (size_t)sprintf(want + w, "\\u%04x", c);
					} else {
						want[w++] = (char)c;
					}
				}
				want[w++] = '"';
				struct buf b;
				buf_init(&b, 0);
				assert_int_equal(json_write_str(&b, str_make(in, len)), UMB_OK);
				assert_int_equal(b.n, w);
				assert_memory_equal(b.p, want, w);
				buf_clear(&b);
			}
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accept_table),
		cmocka_unit_test(test_reject_table),
		cmocka_unit_test(test_string_block_offsets),
		cmocka_unit_test(test_control_bytes),
		cmocka_unit_test(test_utf8_all_code_points),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_parse_top),
		cmocka_unit_test(test_navigation),
		cmocka_unit_test(test_key_eq),
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_get_numbers),
		cmocka_unit_test(test_writer),
		cmocka_unit_test(test_writer_round_trip),
		cmocka_unit_test(test_writer_escape_at_every_offset),
		cmocka_unit_test(test_differential_cjson),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
