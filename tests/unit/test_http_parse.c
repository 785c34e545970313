/* test_http_parse.c — unit tests for the request head parser and the
 * chunked decoder (http/http_parse.c), smuggling cases first-class. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http_parse.h"

#define MAX_HEAD 8192

static struct http_request_head head;
static char *last_copy; /* the buffer `head` points into */

/* Parse the first n bytes of s; returns the parser's result, *status set.
 * The parser reads a heap copy of exactly n bytes, so ASan sees any read
 * past the end; the copy lives until the next parse, as head's views do. */
static int parse_n(const char *s, size_t n, size_t max, int *status)
{
	free(last_copy);
	last_copy = malloc(n ? n : 1);
	assert_non_null(last_copy);
	memcpy(last_copy, s, n);
	return http_parse_request(last_copy, n, max, &head, status);
}

#define PARSE(lit, st) parse_n((lit), sizeof(lit) - 1, MAX_HEAD, (st))

/* The literal must be refused with `want`. */
#define ASSERT_STATUS(lit, want)                                               \
	do {                                                                   \
		int st_ = 0;                                                   \
		assert_int_equal(PARSE(lit, &st_), UMB_ERR);                   \
		assert_int_equal(st_, (want));                                 \
	} while (0)

/* The literal must parse completely. */
#define ASSERT_OK(lit)                                                         \
	do {                                                                   \
		int st_ = 0;                                                   \
		assert_int_equal(PARSE(lit, &st_), (int)sizeof(lit) - 1);      \
		assert_int_equal(st_, 0);                                      \
	} while (0)

static void assert_view(struct str s, const char *want)
{
	assert_int_equal(s.n, strlen(want));
	assert_memory_equal(s.p, want, s.n);
}

/* ---- request line and headers ---- */

static void test_simple_get(void **state)
{
	static const char req[] = "GET /v1/models?limit=5&x HTTP/1.1\r\n"
				  "Host: gw.local\r\n"
				  "Accept:   */*  \t\r\n"
				  "X-Empty:\r\n"
				  "\r\n";
	int st = -1;
	(void)state;

	assert_int_equal(http_parse_request(req, sizeof(req) - 1, MAX_HEAD,
					    &head, &st),
			 (int)sizeof(req) - 1);
	assert_int_equal(st, 0);
	assert_view(head.method, "GET");
	assert_view(head.target, "/v1/models?limit=5&x");
	assert_view(head.path, "/v1/models");
	assert_view(head.query, "limit=5&x");
	assert_int_equal(head.minor_version, 1);
	assert_int_equal(head.n_headers, 3);
	assert_view(head.headers[0].name, "Host");
	assert_view(head.headers[0].value, "gw.local");
	assert_view(head.headers[1].value, "*/*"); /* trimmed both ends */
	assert_view(head.headers[2].value, "");
	assert_true(head.keep_alive);
	assert_false(head.has_content_length);
	assert_false(head.chunked);
	assert_false(head.expect_continue);
	/* views point into the caller's buffer */
	assert_ptr_equal(head.method.p, req);
}

static void test_no_query(void **state)
{
	static const char req[] = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
	static const char req2[] = "GET /x? HTTP/1.1\r\nHost: a\r\n\r\n";
	int st;
	(void)state;

	assert_true(http_parse_request(req, sizeof(req) - 1, MAX_HEAD, &head,
				       &st) > 0);
	assert_view(head.path, "/health");
	assert_int_equal(head.query.n, 0);
	assert_true(http_parse_request(req2, sizeof(req2) - 1, MAX_HEAD, &head,
				       &st) > 0);
	assert_view(head.path, "/x");
	assert_int_equal(head.query.n, 0);
}

static void test_post_content_length_with_body(void **state)
{
	static const char req[] = "POST /v1/chat/completions HTTP/1.1\r\n"
				  "Host: a\r\nContent-Length: 13\r\n"
				  "Expect: 100-Continue\r\n\r\n"
				  "{\"model\":\"x\"}";
	int st;
	(void)state;

	/* Only the head is consumed, not the body behind it. */
	assert_int_equal(http_parse_request(req, sizeof(req) - 1, MAX_HEAD,
					    &head, &st),
			 (int)sizeof(req) - 1 - 13);
	assert_true(head.has_content_length);
	assert_int_equal(head.content_length, 13);
	assert_true(head.expect_continue);
}

static void test_every_prefix_is_again(void **state)
{
	static const char req[] = "\r\nPOST /v1/messages?beta=true HTTP/1.1\r\n"
				  "Host: a\r\nContent-Type: application/json\n"
				  "Transfer-Encoding: chunked\r\n\r\n";
	size_t n = sizeof(req) - 1;
	(void)state;

	for (size_t i = 0; i < n; i++) {
		int st = 0;

		assert_int_equal(parse_n(req, i, MAX_HEAD, &st), UMB_AGAIN);
		assert_int_equal(st, 0);
	}
	assert_int_equal(parse_n(req, n, MAX_HEAD, NULL), (int)n);
	assert_true(head.chunked);
}

static void test_bare_lf_accepted(void **state)
{
	(void)state;
	ASSERT_OK("GET / HTTP/1.1\nHost: a\nX: y\n\n");
	ASSERT_OK("GET / HTTP/1.1\r\nHost: a\nX: y\r\n\n");
}

static void test_bare_cr_refused(void **state)
{
	(void)state;
	ASSERT_STATUS("GET / HTTP/1.1\rHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n", 400);
	ASSERT_STATUS("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

static void test_leading_empty_lines_skipped(void **state)
{
	static const char req[] = "\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
	(void)state;

	ASSERT_OK("\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_int_equal(parse_n(req, sizeof(req) - 1, MAX_HEAD, NULL),
			 (int)sizeof(req) - 1);
	assert_view(head.method, "GET");
	/* leading empty lines count toward max_head */
	assert_int_equal(parse_n("\r\n\r\n\r\n\r\n", 8, 8, NULL), UMB_ERR);
}

static void test_bad_method(void **state)
{
	(void)state;
	ASSERT_STATUS(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("G\x80T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET\r\n\r\n", 400);
	/* refused as soon as the bad byte is seen, not at the end */
	int st = 0;
	assert_int_equal(parse_n("GE(T", 4, MAX_HEAD, &st), UMB_ERR);
	assert_int_equal(st, 400);
	/* methods are case-sensitive tokens; unknown ones are the router's
	 * business, not the parser's */
	ASSERT_OK("BREW / HTTP/1.1\r\nHost: a\r\n\r\n");
}

static void test_bad_target(void **state)
{
	(void)state;
	ASSERT_STATUS("GET http://evil/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("CONNECT evil:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET / x HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET /\xC3\xA9 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
	ASSERT_OK("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
	ASSERT_OK("GET /a%20b/~c!$&'()*+,;=:@?q=/? HTTP/1.1\r\nHost: a\r\n\r\n");
}

static void test_versions(void **state)
{
	(void)state;
	ASSERT_STATUS("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
	ASSERT_STATUS("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
	ASSERT_STATUS("GET / HTTP/0.9\r\n\r\n", 505);
	ASSERT_STATUS("GET / HTTP/3.0\r\n\r\n", 505);
	ASSERT_STATUS("GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/a.1\r\nHost: a\r\n\r\n", 400);
	ASSERT_STATUS("GET /\r\nHost: a\r\n\r\n", 400); /* HTTP/0.9 form */
	int st = 0;
	assert_int_equal(parse_n("GET / XT", 8, MAX_HEAD, &st), UMB_ERR);
	assert_int_equal(st, 400);
	ASSERT_OK("GET / HTTP/1.0\r\n\r\n");
	assert_int_equal(head.minor_version, 0);
}

static void test_bad_header_names(void **state)
{
	(void)state;
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nName : x\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nName\t: x\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nA(b): x\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nA\x80: x\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nA/b: x\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHo\x00st: a\r\n\r\n", 400);
}

static void test_obs_fold_refused(void **state)
{
	(void)state;
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\t2\r\n\r\n", 400);
	/* whitespace before the first field: some hops would drop it */
	ASSERT_STATUS("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\n"
		      "Transfer-Encoding: identity\r\n chunked\r\n\r\n",
		      400);
}

static void test_header_value_bytes(void **state)
{
	(void)state;
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nX: a\x00" "b\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f" "b\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b[0m\r\n\r\n", 400);
	/* HTAB inside and obs-text are field-content */
	ASSERT_OK("GET / HTTP/1.1\r\nHost: a\r\nX: a\tb \xC3\xA9\xFF\r\n\r\n");
	assert_view(head.headers[1].value, "a\tb \xC3\xA9\xFF");
}

static void test_sdk_request(void **state)
{
	static const char req[] =
		"POST /v1/chat/completions HTTP/1.1\r\n"
		"Host: 127.0.0.1:8080\r\n"
		"Accept-Encoding: gzip, deflate\r\n"
		"Connection: keep-alive\r\n"
		"Accept: application/json\r\n"
		"Content-Type: application/json\r\n"
		"User-Agent: OpenAI/Python 1.54.4\r\n"
		"X-Stainless-Lang: python\r\n"
		"Authorization: Bearer umb-sk-abc:def\r\n"
		"Content-Length: 2\r\n\r\n{}";
	int st;
	(void)state;

	/* SIZE_MAX as max_head: clamped, not overflowed */
	assert_int_equal(http_parse_request(req, sizeof(req) - 1, SIZE_MAX,
					    &head, &st),
			 (int)sizeof(req) - 3);
	assert_int_equal(head.n_headers, 9);
	assert_view(*http_header_get(&head, "host"), "127.0.0.1:8080");
	assert_view(*http_header_get(&head, "authorization"),
		    "Bearer umb-sk-abc:def");
	assert_true(head.keep_alive);
	assert_int_equal(head.content_length, 2);
}

/* ---- framing: the smuggling cases ---- */

static void test_cl_and_te_refused(void **state)
{
	(void)state;
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
		      "Transfer-Encoding: chunked\r\n\r\n",
		      400);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
		      "Content-Length: 5\r\n\r\n",
		      400);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: gzip\r\n"
		      "content-length: 5\r\n\r\n",
		      400);
}

static void test_content_length_values(void **state)
{
	(void)state;
	ASSERT_OK("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
	assert_true(head.has_content_length);
	assert_int_equal(head.content_length, 0);
	ASSERT_OK("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n"
		  "content-length: 42\r\n\r\n");
	assert_int_equal(head.content_length, 42);
	ASSERT_OK("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7,7\r\n\r\n");
	assert_int_equal(head.content_length, 7);
	ASSERT_OK("POST / HTTP/1.1\r\nHost: a\r\n"
		  "Content-Length: 18446744073709551615\r\n\r\n");
	assert_int_equal(head.content_length, UINT64_MAX);

	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n"
		      "Content-Length: 43\r\n\r\n",
		      400);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
		      400);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n",
		      400);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
		      400);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
		      400);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
		      400);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
		      400);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
		      400);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
		      400);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\n"
		      "Content-Length: 18446744073709551616\r\n\r\n",
		      400);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\n"
		      "Content-Length: 99999999999999999999999\r\n\r\n",
		      400);
}

static void test_transfer_encoding_values(void **state)
{
	(void)state;
	ASSERT_OK("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
	assert_true(head.chunked);
	assert_false(head.has_content_length);
	ASSERT_OK("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  ChUnKeD \r\n\r\n");
	assert_true(head.chunked);

	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
		      501);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\n"
		      "Transfer-Encoding: gzip, chunked\r\n\r\n",
		      501);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\n"
		      "Transfer-Encoding: chunked, gzip\r\n\r\n",
		      501);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\n"
		      "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		      501);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
		      501);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n",
		      501);
	ASSERT_STATUS("POST / HTTP/1.1\r\nHost: a\r\n"
		      "Transfer-Encoding: \"chunked\"\r\n\r\n",
		      501);
	/* no chunked coding in HTTP/1.0 */
	ASSERT_STATUS("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
	/* a look-alike name is just another header */
	ASSERT_OK("POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: gzip\r\n\r\n");
	assert_false(head.chunked);
}

static void test_host_rules(void **state)
{
	(void)state;
	ASSERT_STATUS("GET / HTTP/1.1\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
	ASSERT_STATUS("GET / HTTP/1.0\r\nHost: a\r\nHOST: a\r\n\r\n", 400);
	ASSERT_OK("GET / HTTP/1.0\r\n\r\n");
	ASSERT_OK("GET / HTTP/1.1\r\nHOST: a\r\n\r\n");
	ASSERT_OK("GET / HTTP/1.1\r\nHost:\r\n\r\n");
}

static void test_keep_alive(void **state)
{
	(void)state;
	ASSERT_OK("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	assert_true(head.keep_alive);
	ASSERT_OK("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n");
	assert_false(head.keep_alive);
	ASSERT_OK("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, close\r\n\r\n");
	assert_false(head.keep_alive);
	ASSERT_OK("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n");
	assert_true(head.keep_alive);
	ASSERT_OK("GET / HTTP/1.0\r\n\r\n");
	assert_false(head.keep_alive);
	ASSERT_OK("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
	assert_true(head.keep_alive);
	ASSERT_OK("GET / HTTP/1.0\r\nConnection: foo\r\nConnection: ,keep-alive ,\r\n\r\n");
	assert_true(head.keep_alive);
	ASSERT_OK("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
	assert_false(head.keep_alive);
}

static void test_expect(void **state)
{
	(void)state;
	ASSERT_OK("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n");
	assert_true(head.expect_continue);
	ASSERT_OK("POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n");
	assert_false(head.expect_continue);
	/* HTTP/1.0 clients do not understand 100 (RFC 9110 §10.1.1) */
	ASSERT_OK("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
	assert_false(head.expect_continue);
}

/* ---- limits ---- */

static void test_head_too_large(void **state)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"; /* 27 */
	size_t n = sizeof(req) - 1;
	int st = 0;
	(void)state;

	assert_int_equal(parse_n(req, n, n, &st), (int)n); /* exactly fits */
	assert_int_equal(parse_n(req, n, n - 1, &st), UMB_ERR);
	assert_int_equal(st, 431);
	/* fewer bytes than max_head: not certain yet */
	st = 0;
	assert_int_equal(parse_n(req, 10, 11, &st), UMB_AGAIN);
	assert_int_equal(st, 0);
	/* as many as max_head with no end: certain */
	assert_int_equal(parse_n(req, 10, 10, &st), UMB_ERR);
	assert_int_equal(st, 431);
	/* more bytes than max_head (the body follows): judged on the cap */
	assert_int_equal(parse_n(req, n, 20, &st), UMB_ERR);
	assert_int_equal(st, 431);
	/* a syntax error inside the cap still says 400 */
	assert_int_equal(parse_n("GET / HTTP/1.1\r\nBad Name: x\r\n", 29, 20, &st),
			 UMB_ERR);
	assert_int_equal(st, 400);
}

static void test_header_count_limit(void **state)
{
	char *req = malloc(65536);
	size_t n;
	int st = 0;
	(void)state;

	assert_non_null(req);
	n = (size_t)sprintf(req, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 1; i < HTTP_MAX_HEADERS; i++)
		n += (size_t)sprintf(req + n, "X-%d: %d\r\n", i, i);
	memcpy(req + n, "\r\n", 2);
	assert_int_equal(http_parse_request(req, n + 2, 65536, &head, &st),
			 (int)n + 2);
	assert_int_equal(head.n_headers, HTTP_MAX_HEADERS);
	n += (size_t)sprintf(req + n, "X-last: 1\r\n\r\n");
	assert_int_equal(http_parse_request(req, n, 65536, &head, &st), UMB_ERR);
	assert_int_equal(st, 431);
	free(req);
}

static void test_header_get(void **state)
{
	(void)state;
	ASSERT_OK("GET / HTTP/1.1\r\nHost: a\r\nX-Api-Key: k1\r\n"
		  "x-api-key: k2\r\nAuthorization: Bearer t\r\n\r\n");
	assert_view(*http_header_get(&head, "x-api-key"), "k1");
	assert_view(*http_header_get(&head, "AUTHORIZATION"), "Bearer t");
	assert_null(http_header_get(&head, "x-api"));
	assert_null(http_header_get(&head, "x-api-keys"));
	assert_null(http_header_get(&head, "cookie"));
}

/* ---- chunked decoder ---- */

struct chunk_result {
	int rc;
	size_t consumed;
	char out[4096];
	size_t out_n;
};

/* Decode s cut at `cut` (and byte by byte when cut == SIZE_MAX); the
 * input behind the body must be left unconsumed. */
static void decode(const char *s, size_t n, size_t cut, size_t cap,
		   struct chunk_result *res)
{
	struct http_chunked c;
	struct buf out;
	size_t at = 0;

	http_chunked_init(&c);
	buf_init(&out, cap);
	res->rc = 0;
	while (at < n) {
		size_t len, used = 0;

		if (cut == SIZE_MAX)
			len = 1;
		else if (at < cut)
			len = cut - at;
		else
			len = n - at;
		char *piece = malloc(len);

		assert_non_null(piece);
		memcpy(piece, s + at, len);
		res->rc = http_chunked_decode(&c, piece, len, &used, &out);
		free(piece);
		assert_true(used <= len);
		at += used;
		if (res->rc != 0)
			break;
		assert_int_equal(used, len); /* 0 means it wants more */
	}
	res->consumed = at;
	assert_true(out.n <= sizeof(res->out));
	if (out.n)
		memcpy(res->out, out.p, out.n);
	res->out_n = out.n;
	buf_clear(&out);
}

#define DECODE1(lit, res) decode((lit), sizeof(lit) - 1, 0, 0, (res))

static void test_chunked_basic(void **state)
{
	static const char body[] = "5\r\nhello\r\n1;ext=\"v\"\r\n \r\n"
				   "A\r\n0123456789\r\n0\r\n\r\nGET / HTTP/1.1";
	struct chunk_result r;
	(void)state;

	DECODE1(body, &r);
	assert_int_equal(r.rc, 1);
	assert_int_equal(r.consumed, sizeof(body) - 1 - 14);
	assert_int_equal(r.out_n, 16);
	assert_memory_equal(r.out, "hello 0123456789", 16);
}

static void test_chunked_every_split(void **state)
{
	static const char body[] = "4;a=b;c\r\nWiki\r\n5 ;x\r\npedia\r\n"
				   "e\r\n in\r\n\r\nchunks.\r\n000\r\n"
				   "X-Trailer: v\r\nY: \r\n\r\n";
	size_t n = sizeof(body) - 1;
	struct chunk_result one, r;
	(void)state;

	decode(body, n, 0, 0, &one);
	assert_int_equal(one.rc, 1);
	assert_int_equal(one.consumed, n);
	assert_int_equal(one.out_n, 23);
	assert_memory_equal(one.out, "Wikipedia in\r\n\r\nchunks.", 23);
	for (size_t i = 0; i <= n; i++) {
		decode(body, n, i, 0, &r);
		assert_int_equal(r.rc, 1);
		assert_int_equal(r.consumed, n);
		assert_int_equal(r.out_n, one.out_n);
		assert_memory_equal(r.out, one.out, one.out_n);
	}
	decode(body, n, SIZE_MAX, 0, &r);
	assert_int_equal(r.rc, 1);
	assert_int_equal(r.out_n, one.out_n);
}

static void test_chunked_done_is_sticky(void **state)
{
	struct http_chunked c;
	struct buf out;
	size_t used = 99;
	(void)state;

	http_chunked_init(&c);
	buf_init(&out, 0);
	assert_int_equal(http_chunked_decode(&c, "0\r\n\r\n", 5, &used, &out), 1);
	assert_int_equal(used, 5);
	assert_int_equal(http_chunked_decode(&c, "1\r\nx\r\n", 6, &used, &out), 1);
	assert_int_equal(used, 0);
	assert_int_equal(http_chunked_decode(&c, "", 0, &used, &out), 1);
	http_chunked_init(&c);
	assert_int_equal(http_chunked_decode(&c, "", 0, &used, &out), 0);
	assert_int_equal(used, 0);
	buf_clear(&out);
}

static void expect_chunked_error(const char *s)
{
	struct chunk_result r;

	decode(s, strlen(s), 0, 0, &r);
	assert_int_equal(r.rc, UMB_ERR);
	decode(s, strlen(s), SIZE_MAX, 0, &r);
	assert_int_equal(r.rc, UMB_ERR);
}

static void test_chunked_bad_size(void **state)
{
	(void)state;
	expect_chunked_error("\r\nhello\r\n0\r\n\r\n");          /* no size */
	expect_chunked_error("-5\r\nhello\r\n0\r\n\r\n");
	expect_chunked_error("+5\r\nhello\r\n0\r\n\r\n");
	expect_chunked_error("0x5\r\nhello\r\n0\r\n\r\n");
	expect_chunked_error("g\r\n");
	expect_chunked_error(" 5\r\nhello\r\n0\r\n\r\n");
	expect_chunked_error("5 x\r\nhello\r\n0\r\n\r\n"); /* BWS then junk */
	expect_chunked_error("5\nhello\r\n0\r\n\r\n");      /* bare LF */
	expect_chunked_error("5\rhello\r\n0\r\n\r\n");      /* bare CR */
	expect_chunked_error("5;a\nb\r\nhello\r\n0\r\n\r\n");
	expect_chunked_error("5;a\x01\r\nhello\r\n0\r\n\r\n");
	/* 17 digits overflow even with leading zeros */
	expect_chunked_error("00000000000000005\r\nhello\r\n0\r\n\r\n");
	expect_chunked_error("10000000000000000\r\n");
}

static void test_chunked_size_limits(void **state)
{
	struct chunk_result r;
	char *line;
	(void)state;

	/* 16 digits are fine */
	DECODE1("0000000000000005\r\nhello\r\n0\r\n\r\n", &r);
	assert_int_equal(r.rc, 1);
	assert_int_equal(r.out_n, 5);
	/* the largest size parses; the body cap stops it (-> 413) */
	decode("FFFFFFFFFFFFFFFF\r\nabc", 21, 0, 100, &r);
	assert_int_equal(r.rc, 0);
	decode("ffffffffffffffff\r\n0123456789", 28, 0, 8, &r);
	assert_int_equal(r.rc, UMB_ETOOBIG);

	/* a chunk-size line is capped at 4 KiB, extensions included */
	line = malloc(HTTP_CHUNK_LINE_MAX + 64);
	assert_non_null(line);
	memset(line, 'x', HTTP_CHUNK_LINE_MAX + 64);
	memcpy(line, "1;", 2);
	memcpy(line + HTTP_CHUNK_LINE_MAX, "\r\na\r\n0\r\n\r\n", 11);
	decode(line, HTTP_CHUNK_LINE_MAX + 10, 0, 0, &r);
	assert_int_equal(r.rc, 1); /* exactly 4096 bytes before CR */
	memcpy(line + HTTP_CHUNK_LINE_MAX, "x\r\na\r\n0\r\n\r\n", 12);
	decode(line, HTTP_CHUNK_LINE_MAX + 11, 0, 0, &r);
	assert_int_equal(r.rc, UMB_ERR);
	free(line);
}

static void test_chunked_data_crlf_required(void **state)
{
	(void)state;
	expect_chunked_error("5\r\nhelloX\r\n0\r\n\r\n");
	expect_chunked_error("5\r\nhello\n0\r\n\r\n");
	expect_chunked_error("5\r\nhello\r0\r\n\r\n");
	expect_chunked_error("5\r\nhello0\r\n\r\n");
	expect_chunked_error("3\r\nhello\r\n0\r\n\r\n"); /* size too small */
	expect_chunked_error("0\r\n\n");                 /* bare LF at end */
	expect_chunked_error("0\r\n\r\r");
}

static void test_chunked_trailers(void **state)
{
	struct chunk_result r;
	char *s;
	size_t n;
	(void)state;

	DECODE1("0\r\nA: 1\r\nB-c:\r\n\r\n", &r);
	assert_int_equal(r.rc, 1);
	assert_int_equal(r.out_n, 0);
	expect_chunked_error("0\r\nA 1\r\n\r\n");     /* no colon */
	expect_chunked_error("0\r\n A: 1\r\n\r\n");   /* folded */
	expect_chunked_error("0\r\nA: 1\n\r\n");      /* bare LF */
	expect_chunked_error("0\r\nA: 1\x7f\r\n\r\n");
	expect_chunked_error("0\r\n: 1\r\n\r\n");

	/* the trailer section is capped at 8 KiB in total */
	s = malloc(2 * HTTP_TRAILER_MAX);
	assert_non_null(s);
	n = (size_t)sprintf(s, "0\r\n");
	while (n < 3 + HTTP_TRAILER_MAX - 100)
		n += (size_t)sprintf(s + n, "X-Pad: %040d\r\n", 0);
	memcpy(s + n, "\r\n", 2);
	decode(s, n + 2, 0, 0, &r);
	assert_int_equal(r.rc, 1);
	while (n < 3 + HTTP_TRAILER_MAX + 10)
		n += (size_t)sprintf(s + n, "X-Pad: %040d\r\n", 0);
	memcpy(s + n, "\r\n", 2);
	decode(s, n + 2, 0, 0, &r);
	assert_int_equal(r.rc, UMB_ERR);
	free(s);
}

static void test_chunked_body_cap(void **state)
{
	static const char body[] = "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
	struct chunk_result r;
	(void)state;

	decode(body, sizeof(body) - 1, 0, 10, &r);
	assert_int_equal(r.rc, 1);
	decode(body, sizeof(body) - 1, 0, 9, &r);
	assert_int_equal(r.rc, UMB_ETOOBIG);
	decode(body, sizeof(body) - 1, SIZE_MAX, 9, &r);
	assert_int_equal(r.rc, UMB_ETOOBIG);
	assert_int_equal(r.out_n, 9);
}

static void test_chunked_error_is_sticky(void **state)
{
	struct http_chunked c;
	struct buf out;
	size_t used;
	(void)state;

	http_chunked_init(&c);
	buf_init(&out, 0);
	assert_int_equal(http_chunked_decode(&c, "z", 1, &used, &out), UMB_ERR);
	assert_int_equal(used, 0);
	assert_int_equal(http_chunked_decode(&c, "0\r\n\r\n", 5, &used, &out),
			 UMB_ERR);
	buf_clear(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_get),
		cmocka_unit_test(test_no_query),
		cmocka_unit_test(test_post_content_length_with_body),
		cmocka_unit_test(test_every_prefix_is_again),
		cmocka_unit_test(test_bare_lf_accepted),
		cmocka_unit_test(test_bare_cr_refused),
		cmocka_unit_test(test_leading_empty_lines_skipped),
		cmocka_unit_test(test_bad_method),
		cmocka_unit_test(test_bad_target),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_bad_header_names),
		cmocka_unit_test(test_obs_fold_refused),
		cmocka_unit_test(test_header_value_bytes),
		cmocka_unit_test(test_sdk_request),
		cmocka_unit_test(test_cl_and_te_refused),
		cmocka_unit_test(test_content_length_values),
		cmocka_unit_test(test_transfer_encoding_values),
		cmocka_unit_test(test_host_rules),
		cmocka_unit_test(test_keep_alive),
		cmocka_unit_test(test_expect),
		cmocka_unit_test(test_head_too_large),
		cmocka_unit_test(test_header_count_limit),
		cmocka_unit_test(test_header_get),
		cmocka_unit_test(test_chunked_basic),
		cmocka_unit_test(test_chunked_every_split),
		cmocka_unit_test(test_chunked_done_is_sticky),
		cmocka_unit_test(test_chunked_bad_size),
		cmocka_unit_test(test_chunked_size_limits),
		cmocka_unit_test(test_chunked_data_crlf_required),
		cmocka_unit_test(test_chunked_trailers),
		cmocka_unit_test(test_chunked_body_cap),
		cmocka_unit_test(test_chunked_error_is_sticky),
	};

	int failed = cmocka_run_group_tests_name("http_parse", tests, NULL, NULL);

	free(last_copy);
	return failed;
}
