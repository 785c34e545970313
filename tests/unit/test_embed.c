/* test_embed.c — unit tests for routing/embed.c (the builtin embedder)
 * and routing/semantic.c (the semantic index): determinism, unit norm,
 * hostile input (empty, blank, binary, invalid UTF-8, 8 MiB), the
 * tokeniser's special words (c++, c#, .net, apostrophes), the stemmer,
 * similar texts scoring closer than unrelated ones, and the three
 * comparisons including a route without examples. embed.c is included
 * so its static tokeniser and stemmer can be tested directly (the
 * library's copy is then not linked: nothing else in the test needs it).
 * Runs under ASan+UBSan too (make BUILD=build-asan SANITIZE=1 unit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "../../src/routing/embed.c"
#include "routing/semantic.h"

static struct embed_builtin *model;

static int setup(void **state)
{
	(void)state;
	model = embed_builtin_new(NULL, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	embed_builtin_free(model);
	return 0;
}

static double dotf(const float *a, const float *b, size_t n)
{
	double s = 0;

	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

/* Embed and check the contract: finite, unit norm or all zero. Returns
 * the norm (0 or 1). */
static double embed_checked(const struct embed_builtin *e, struct str text, float *out)
{
	size_t dim = embed_builtin_dim(e);
	double norm;

	for (size_t i = 0; i < dim; i++)
		out[i] = 1234.0f; /* must be overwritten */
	embed_builtin_vec(e, text, out);
	for (size_t i = 0; i < dim; i++)
		assert_true(isfinite(out[i]));
	norm = sqrt(dotf(out, out, dim));
	assert_true(norm == 0.0 || fabs(norm - 1.0) < 1e-4);
	return norm;
}

static double cosine(const char *a, const char *b)
{
	static float va[EMBED_BUILTIN_DIM], vb[EMBED_BUILTIN_DIM];

	embed_checked(model, str_cstr(a), va);
	embed_checked(model, str_cstr(b), vb);
	return dotf(va, vb, EMBED_BUILTIN_DIM);
}

/* ---- embedder ---- */

static void test_dim(void **state)
{
	(void)state;
	assert_int_equal(embed_builtin_dim(model), EMBED_BUILTIN_DIM);
}

static void test_deterministic(void **state)
{
	static float a[EMBED_BUILTIN_DIM], b[EMBED_BUILTIN_DIM], c[EMBED_BUILTIN_DIM];
	const char *t = "Summarise GDPR Article 22 for our overdraft decisions.";
	struct embed_builtin *other = embed_builtin_new(NULL, 0);

	(void)state;
	embed_builtin_vec(model, str_cstr(t), a);
	embed_builtin_vec(model, str_cstr(t), b);
	embed_builtin_vec(other, str_cstr(t), c);
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_equal(a, c, sizeof(a)); /* no hidden per-model seed */
	embed_builtin_free(other);
}

static void test_normalised(void **state)
{
	static float v[EMBED_BUILTIN_DIM];

	(void)state;
	assert_true(embed_checked(model, STR("Translate 'account statement' into Spanish."), v) > 0.5);
	assert_true(embed_checked(model, STR("x1"), v) > 0.5);
	assert_true(embed_checked(model, STR("Müller Straße ünd €"), v) > 0.5);
}

static void test_empty_and_blank(void **state)
{
	static float v[EMBED_BUILTIN_DIM];
	static const float zero[EMBED_BUILTIN_DIM];

	(void)state;
	assert_true(embed_checked(model, STR_NULL, v) == 0.0);
	assert_memory_equal(v, zero, sizeof(v));
	assert_true(embed_checked(model, STR(""), v) == 0.0);
	assert_true(embed_checked(model, STR(" \t\r\n  \n"), v) == 0.0);
	assert_true(embed_checked(model, STR("?!... ---, ;;"), v) == 0.0);
	assert_true(embed_checked(model, STR("the and of it is"), v) == 0.0);
	/* non-breaking spaces and curly quotes are separators, not words */
	assert_true(embed_checked(model, STR("\xc2\xa0\xe2\x80\x9c\xe2\x80\x9d\xe2\x80\x94"), v) == 0.0);
}

static void test_binary_and_invalid_utf8(void **state)
{
	static float v[EMBED_BUILTIN_DIM];
	static const char bad[] = "\xff\xfe\xc0\xaf\xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80"
				  "abc\x00" "def\xe2\x80\x99s \xf0\x9f";
	unsigned char bin[4096];
	uint64_t x = 0x9e3779b97f4a7c15ull;

	(void)state;
	embed_checked(model, str_make(bad, sizeof(bad) - 1), v);
	for (size_t i = 0; i < sizeof(bin); i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		bin[i] = (unsigned char)x;
	}
	embed_checked(model, str_make((const char *)bin, sizeof(bin)), v);
	/* every prefix of a tricky tail: no read past the end */
	for (size_t n = 0; n <= sizeof(bad) - 1; n++) {
		char *p = malloc(n ? n : 1);

		memcpy(p, bad, n);
		embed_checked(model, str_make(p, n), v);
		free(p);
	}
	/* a dangling "c+", "c#", "." and "'" at the very end */
	embed_checked(model, STR("c+"), v);
	embed_checked(model, STR("about c#"), v);
	embed_checked(model, STR(".ne"), v);
	embed_checked(model, STR("don'"), v);
	embed_checked(model, STR("a@b."), v);
}

static void test_huge(void **state)
{
	static float v[EMBED_BUILTIN_DIM];
	size_t n = 8u << 20;
	char *p = malloc(n);
	static const char chunk[] = "SELECT customer_id FROM accounts WHERE balance > 0; ";

	(void)state;
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = chunk[i % (sizeof(chunk) - 1)];
	assert_true(embed_checked(model, str_make(p, n), v) > 0.5);
	/* one 8 MiB word */
	memset(p, 'a', n);
	assert_true(embed_checked(model, str_make(p, n), v) > 0.5);
	free(p);
}

/* Tokens of a text, joined by '|'. */
static void tokens(const char *text, char *out, size_t cap)
{
	struct tok_it it = { (const unsigned char *)text, strlen(text), 0, true, 0, 0, 0 };
	struct tok t;
	size_t n = 0;

	out[0] = 0;
	while (tok_next(&it, &t)) {
		int w = snprintf(out + n, cap - n, "%s%.*s", n ? "|" : "", (int)t.len, t.s);

		assert_true(w > 0 && (size_t)w < cap - n);
		n += (size_t)w;
	}
}

static void test_tokeniser(void **state)
{
	char out[256];

	(void)state;
	tokens("I write C++ and C# on .NET, don't I?", out, sizeof(out));
	assert_string_equal(out, "i|write|c++|and|c#|on|.net|dont|i");
	tokens("g++ -O2 x.c; ASP.NET vs .netrc", out, sizeof(out));
	assert_string_equal(out, "g++|o2|x|c|asp|net|vs|netrc");
	tokens("customer_id=ORA-01555 \xe2\x80\x9cM\xc3\xbcller\xe2\x80\x9d it\xe2\x80\x99s", out, sizeof(out));
	assert_string_equal(out, "customer|id|ora|01555|m\xc3\xbcller|its");
	tokens("c+ +c #c c #", out, sizeof(out));
	assert_string_equal(out, "c|c|c|c");
}

static void test_cxx_is_not_c(void **state)
{
	(void)state;
	/* "c++" is its own word, and both are software words */
	assert_true(cosine("c++", "c++") > 0.99);
	assert_true(cosine("c++", "c") < 0.9);
	assert_true(cosine("port this C++ class", "port this C# class") < 0.99);
}

static void test_stemmer(void **state)
{
	static const char *const cases[][2] = {
		{ "running", "run" }, { "regulations", "regul" },
		{ "relational", "relat" }, { "caresses", "caress" },
		{ "ponies", "poni" }, { "hopping", "hop" }, { "happy", "happi" },
		{ "sayyyy", "sayyyi" }, { "yyyyyy", "yyyyyi" }, { "as", "as" },
		{ "generalization", "gener" }, { "controlling", "control" },
	};

	(void)state;
	for (size_t i = 0; i < UMB_ARRAY_LEN(cases); i++) {
		char b[TOK_MAX + 4];
		size_t n = strlen(cases[i][0]);

		memcpy(b, cases[i][0], n);
		n = porter_stem(b, n);
		assert_int_equal(n, strlen(cases[i][1]));
		assert_memory_equal(b, cases[i][1], n);
	}
}

static void test_similar_closer(void **state)
{
	const char *code = "Write a Python function that parses a CSV file of trades.";

	(void)state;
	assert_true(cosine(code, "Fix this Python script: it crashes reading CSV rows.") >
		    cosine(code, "What capital requirements does Basel III set for banks?"));
	assert_true(cosine("What does EBITDA stand for?", "What does the acronym HQLA mean?") >
		    cosine("What does EBITDA stand for?", "Draft a press release about our new office."));
	assert_true(cosine("Which GDPR articles apply to automated credit decisions?",
			   "Does MiFID II require us to record client phone calls?") >
		    cosine("Which GDPR articles apply to automated credit decisions?",
			   "Plan a team offsite for 20 people."));
	/* a capital at the start of a sentence is not a feature; words in
	 * capitals are (acronym shape), but the words still match */
	assert_true(cosine("Convert 10 miles to km", "convert 10 miles to km") > 0.999);
	assert_true(cosine("Convert 10 miles to km", "convert 10 MILES to KM") > 0.8);
}

static void test_idf_corpus(void **state)
{
	static float a[EMBED_BUILTIN_DIM], b[EMBED_BUILTIN_DIM];
	struct str corpus[] = { STR("refund the fee"), STR("refund the charge"), STR(""),
				STR("\xff\xfe"), STR("translate a word") };
	struct embed_builtin *e = embed_builtin_new(corpus, UMB_ARRAY_LEN(corpus));

	(void)state;
	embed_checked(e, STR("refund the fee"), a);
	embed_checked(model, STR("refund the fee"), b);
	/* a word in most documents weighs less than a rarer one */
	assert_true(fabs(dotf(a, b, EMBED_BUILTIN_DIM)) < 0.9999);
	embed_builtin_free(e);
}

/* ---- semantic index ---- */

static void test_comparisons(void **state)
{
	/* route 0: one example on q, one far away; route 1: two examples
	 * near q on either side. max picks 0, centroid and average pick 1. */
	const float q[3] = { 1, 0, 0 };
	const float r0a[3] = { 2, 0, 0 }, r0b[3] = { -1, 0, 1 };
	const float r1a[3] = { 0.8f, 0.6f, 0 }, r1b[3] = { 0.8f, -0.6f, 0 };
	struct sem_index *ix = sem_index_new(3, 3);
	struct sem_result res;

	(void)state;
	assert_int_equal(sem_index_add(ix, 0, r0a), UMB_OK);
	assert_int_equal(sem_index_add(ix, 0, r0b), UMB_OK);
	assert_int_equal(sem_index_add(ix, 1, r1a), UMB_OK);
	assert_int_equal(sem_index_add(ix, 1, r1b), UMB_OK);
	assert_int_equal(sem_index_count(ix, 0), 2);
	assert_int_equal(sem_index_count(ix, 2), 0);
	sem_index_finish(ix);

	sem_index_query(ix, SEM_MAX, q, &res);
	assert_int_equal(res.route, 0);
	assert_float_equal(res.score, 1.0f, 1e-5);
	assert_int_equal(res.second, 1);
	assert_float_equal(res.second_score, 0.8f, 1e-5);

	sem_index_query(ix, SEM_CENTROID, q, &res);
	assert_int_equal(res.route, 1);
	assert_float_equal(res.score, 1.0f, 1e-5);
	assert_int_equal(res.second, 0);
	assert_float_equal(res.second_score, 0.382683f, 1e-4);

	sem_index_query(ix, SEM_AVERAGE, q, &res);
	assert_int_equal(res.route, 1);
	assert_float_equal(res.score, 0.8f, 1e-5);
	assert_int_equal(res.second, 0);
	assert_float_equal(res.second_score, (1.0f - 0.707107f) / 2, 1e-4);

	/* the query's norm does not matter */
	{
		const float q5[3] = { 5, 0, 0 };

		sem_index_query(ix, SEM_AVERAGE, q5, &res);
		assert_float_equal(res.score, 0.8f, 1e-5);
	}
	sem_index_free(ix);
}

static void test_route_without_examples(void **state)
{
	const float v[2] = { 0, 1 }, w[2] = { 1, 0 }, zero[2] = { 0, 0 };
	const float nan2[2] = { NAN, 1 };
	struct sem_index *ix = sem_index_new(3, 2);
	struct sem_result res;

	(void)state;
	/* rejected examples */
	assert_int_equal(sem_index_add(ix, 3, v), UMB_ERR);
	assert_int_equal(sem_index_add(ix, 0, zero), UMB_ERR);
	assert_int_equal(sem_index_add(ix, 0, nan2), UMB_ERR);
	/* only route 1 has an example, orthogonal to the query: it still
	 * wins (score 0); routes 0 and 2 never appear */
	assert_int_equal(sem_index_add(ix, 1, v), UMB_OK);
	sem_index_finish(ix);
	assert_int_equal(sem_index_add(ix, 1, v), UMB_ERR); /* finished */
	for (int c = SEM_CENTROID; c <= SEM_AVERAGE; c++) {
		sem_index_query(ix, (enum sem_comparison)c, w, &res);
		assert_int_equal(res.route, 1);
		assert_float_equal(res.score, 0.0f, 1e-6);
		assert_int_equal(res.second, -1);
		sem_index_query(ix, (enum sem_comparison)c, zero, &res);
		assert_int_equal(res.route, -1);
		assert_int_equal(res.second, -1);
	}
	sem_index_free(ix);

	/* no examples at all: nothing scores */
	ix = sem_index_new(2, 2);
	sem_index_finish(ix);
	sem_index_query(ix, SEM_CENTROID, w, &res);
	assert_int_equal(res.route, -1);
	sem_index_free(ix);
}

static void test_ties_and_opposites(void **state)
{
	const float a[2] = { 1, 0 }, b[2] = { -1, 0 }, q[2] = { 0, 1 };
	struct sem_index *ix = sem_index_new(2, 2);
	struct sem_result res;

	(void)state;
	/* route 0's examples cancel out: a zero centroid scores 0 */
	assert_int_equal(sem_index_add(ix, 0, a), UMB_OK);
	assert_int_equal(sem_index_add(ix, 0, b), UMB_OK);
	assert_int_equal(sem_index_add(ix, 1, a), UMB_OK);
	sem_index_finish(ix);
	sem_index_query(ix, SEM_CENTROID, q, &res);
	assert_int_equal(res.route, 0); /* 0 vs 0: the lower index wins */
	assert_int_equal(res.second, 1);
	sem_index_free(ix);
}

/* The builtin embedder feeding the index end to end. */
static void test_end_to_end(void **state)
{
	static const char *const ex[2][3] = {
		{ "Write a unit test for this Java class.", "Why does my SQL query time out?",
		  "Refactor this Python function to use a dict." },
		{ "What does KYC stand for?", "Convert 30 miles to kilometres.",
		  "Translate 'invoice' into French." },
	};
	static float v[EMBED_BUILTIN_DIM];
	struct sem_index *ix = sem_index_new(2, EMBED_BUILTIN_DIM);
	struct sem_result res;

	(void)state;
	for (size_t r = 0; r < 2; r++)
		for (size_t i = 0; i < 3; i++) {
			embed_builtin_vec(model, str_cstr(ex[r][i]), v);
			assert_int_equal(sem_index_add(ix, r, v), UMB_OK);
		}
	sem_index_finish(ix);
	embed_builtin_vec(model, STR("Debug this stack trace from my Go program."), v);
	for (int c = SEM_CENTROID; c <= SEM_AVERAGE; c++) {
		sem_index_query(ix, (enum sem_comparison)c, v, &res);
		assert_int_equal(res.route, 0);
		assert_true(res.score > res.second_score);
	}
	embed_builtin_vec(model, STR("What does the acronym AML mean?"), v);
	for (int c = SEM_CENTROID; c <= SEM_AVERAGE; c++) {
		sem_index_query(ix, (enum sem_comparison)c, v, &res);
		assert_int_equal(res.route, 1);
	}
	sem_index_free(ix);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dim),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_normalised),
		cmocka_unit_test(test_empty_and_blank),
		cmocka_unit_test(test_binary_and_invalid_utf8),
		cmocka_unit_test(test_huge),
		cmocka_unit_test(test_tokeniser),
		cmocka_unit_test(test_cxx_is_not_c),
		cmocka_unit_test(test_stemmer),
		cmocka_unit_test(test_similar_closer),
		cmocka_unit_test(test_idf_corpus),
		cmocka_unit_test(test_comparisons),
		cmocka_unit_test(test_route_without_examples),
		cmocka_unit_test(test_ties_and_opposites),
		cmocka_unit_test(test_end_to_end),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
