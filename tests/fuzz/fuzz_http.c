/* fuzz_http.c — libFuzzer target for the request head parser and the
 * chunked decoder (http/http_parse.c).
 *
 * Input: two bytes choosing a split offset, then the bytes on the wire.
 * Checks, beyond "no crash": every view lies inside the buffer, results are
 * consistent with the documented contract, a prefix of a parsed head gives
 * AGAIN or the same answer, and chunked decoding gives the same result in
 * one piece and in two. */
#include <stdlib.h>

#include "http/http_parse.h"

#define FUZZ_MAX_HEAD 4096
#define FUZZ_BODY_CAP (64 * 1024)

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

static void check_view(struct str s, const char *buf, size_t n)
{
	if (s.n == 0)
		return;
	CHECK(s.p >= buf && s.p + s.n <= buf + n);
}

static struct http_request_head h, h2;

struct chunked_run {
	int rc;
	size_t consumed;
	struct buf out;
};

/* Decode in[0..n) in pieces cut at `cut`; consumed counts all pieces. */
static void run_chunked(const char *in, size_t n, size_t cut,
			struct chunked_run *r)
{
	struct http_chunked c;
	size_t at = 0;

	http_chunked_init(&c);
	buf_init(&r->out, FUZZ_BODY_CAP);
	r->rc = 0;
	while (at < n) {
		size_t len = at < cut ? cut - at : n - at, used = 0;

		r->rc = http_chunked_decode(&c, in + at, len, &used, &r->out);
		CHECK(used <= len);
		CHECK(r->rc == 0 || r->rc == 1 || r->rc == UMB_ERR ||
		      r->rc == UMB_ETOOBIG);
		at += used;
		if (r->rc != 0)
			break;
		CHECK(used == len); /* 0 means all of it was taken */
	}
	r->consumed = at;
	CHECK(r->out.n <= FUZZ_BODY_CAP);
}

static void fuzz_chunked(const char *in, size_t n, size_t cut)
{
	struct chunked_run one, two;

	run_chunked(in, n, 0, &one);
	run_chunked(in, n, cut % (n + 1), &two);
	/* ETOOBIG may show in either run at a different moment only if the
	 * cap is crossed; the outcome itself must match. */
	CHECK(one.rc == two.rc);
	if (one.rc == 1) {
		CHECK(one.consumed == two.consumed);
		CHECK(one.out.n == two.out.n);
		CHECK(one.out.n == 0 ||
		      memcmp(one.out.p, two.out.p, one.out.n) == 0);
	}
	buf_clear(&one.out);
	buf_clear(&two.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf;
	size_t n, cut;
	int rc, st = 0;

	if (size < 2)
		return 0;
	cut = (size_t)data[0] | (size_t)data[1] << 8;
	buf = (const char *)data + 2;
	n = size - 2;

	rc = http_parse_request(buf, n, FUZZ_MAX_HEAD, &h, &st);
	if (rc > 0) {
		size_t len = (size_t)rc;

		CHECK(len <= n && len <= FUZZ_MAX_HEAD && st == 0);
		CHECK(h.n_headers <= HTTP_MAX_HEADERS);
		CHECK(h.minor_version == 0 || h.minor_version == 1);
		CHECK(h.method.n > 0 && h.target.n > 0);
		/* path '?' query tile the target exactly */
		CHECK(h.path.p == h.target.p &&
		      h.path.n + (h.query.p != h.path.p + h.path.n) +
				      h.query.n ==
			      h.target.n);
		CHECK(!(h.chunked && h.has_content_length));
		check_view(h.method, buf, len);
		check_view(h.target, buf, len);
		check_view(h.path, buf, len);
		check_view(h.query, buf, len);
		for (size_t i = 0; i < h.n_headers; i++) {
			check_view(h.headers[i].name, buf, len);
			check_view(h.headers[i].value, buf, len);
			CHECK(h.headers[i].name.n > 0);
		}
		/* the same head alone parses the same */
		CHECK(http_parse_request(buf, len, FUZZ_MAX_HEAD, &h2, &st) ==
		      rc);
		CHECK(h2.n_headers == h.n_headers && h2.chunked == h.chunked &&
		      h2.content_length == h.content_length &&
		      h2.keep_alive == h.keep_alive);
		/* any shorter prefix only asks for more */
		CHECK(http_parse_request(buf, cut % len, FUZZ_MAX_HEAD, &h2,
					 &st) == UMB_AGAIN);
		if (h.chunked)
			fuzz_chunked(buf + len, n - len, cut);
	} else if (rc == UMB_ERR) {
		int st2 = 0, rc2;

		CHECK(st == 400 || st == 431 || st == 501 || st == 505);
		/* a prefix stops at the same first error or asks for more */
		rc2 = http_parse_request(buf, cut % (n + 1), FUZZ_MAX_HEAD, &h2,
					 &st2);
		CHECK(rc2 == UMB_AGAIN || (rc2 == UMB_ERR && st2 == st));
	} else {
		CHECK(rc == UMB_AGAIN && n < FUZZ_MAX_HEAD);
	}

	/* The decoder also gets the raw input, for coverage beyond heads. */
	if (rc <= 0 || !h.chunked)
		fuzz_chunked(buf, n, cut);
	return 0;
}
