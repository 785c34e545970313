/* test_sse.c — unit tests for the text/event-stream parser (http/sse.c).
 *
 * The central property: however a stream is cut into feeds (every single
 * split point, every pair of split points, byte by byte) the callback sees
 * the same events with the same raw bytes, and the raw bytes of all events
 * plus the pending tail are exactly the stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/sse.h"

/* ---- a recorder: copies of every event, plus a canonical serialisation
 * used to compare whole event sequences ---- */

#define REC_MAX 64

struct rec_event {
	char raw[512], event[128], data[512], id[128];
	size_t raw_n, event_n, data_n, id_n;
	bool has_event, has_id, has_data;
	const char *raw_ptr; /* to check zero-copy */
};

struct rec {
	struct rec_event ev[REC_MAX];
	size_t n;
	char ser[16384]; /* serialisation of all events */
	size_t ser_n;
	int abort_at; /* return -7 on this event index (1-based), 0 = never */
};

static void rec_ser(struct rec *r, const char *tag, const char *p, size_t n,
		    bool present)
{
	int k = snprintf(r->ser + r->ser_n, sizeof(r->ser) - r->ser_n,
			 "%s%d:%zu:", tag, present, n);

	assert_true(k > 0 && r->ser_n + (size_t)k + n + 1 < sizeof(r->ser));
	r->ser_n += (size_t)k;
	if (n)
		memcpy(r->ser + r->ser_n, p, n);
	r->ser_n += n;
	r->ser[r->ser_n++] = '|';
}

static void copy_field(char *dst, size_t cap, size_t *dn, struct str s)
{
	assert_true(s.n <= cap);
	if (s.n)
		memcpy(dst, s.p, s.n);
	*dn = s.n;
}

static int rec_cb(void *ctx, const struct sse_event *ev)
{
	struct rec *r = ctx;
	struct rec_event *e;

	assert_true(r->n < REC_MAX);
	e = &r->ev[r->n++];
	copy_field(e->raw, sizeof(e->raw), &e->raw_n, ev->raw);
	copy_field(e->event, sizeof(e->event), &e->event_n, ev->event);
	copy_field(e->data, sizeof(e->data), &e->data_n, ev->data);
	copy_field(e->id, sizeof(e->id), &e->id_n, ev->id);
	e->has_event = ev->event.p != NULL;
	e->has_id = ev->id.p != NULL;
	e->has_data = ev->has_data;
	e->raw_ptr = ev->raw.p;
	rec_ser(r, "R", ev->raw.p, ev->raw.n, true);
	rec_ser(r, "E", ev->event.p, ev->event.n, ev->event.p != NULL);
	rec_ser(r, "D", ev->data.p, ev->data.n, ev->has_data);
	rec_ser(r, "I", ev->id.p, ev->id.n, ev->id.p != NULL);
	if (r->abort_at && (int)r->n == r->abort_at)
		return -7;
	return 0;
}

static struct rec *rec_new(void)
{
	struct rec *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	return r;
}

/* Feed `s` cut at the given split points; returns the first non-zero
 * result of sse_feed (or 0) and records the pending byte count. */
static int feed_split(const char *s, size_t n, const size_t *cuts,
		      size_t ncuts, size_t max, struct rec *r, size_t *pending)
{
	struct sse_parser p;
	size_t at = 0;
	int rc = 0;

	sse_init(&p, max);
	for (size_t k = 0; k <= ncuts && rc == 0; k++) {
		size_t to = k < ncuts ? cuts[k] : n;

		rc = sse_feed(&p, s + at, to - at, rec_cb, r);
		at = to;
	}
	*pending = sse_pending(&p);
	sse_clear(&p);
	return rc;
}

static int feed_bytewise(const char *s, size_t n, size_t max, struct rec *r,
			 size_t *pending)
{
	struct sse_parser p;
	int rc = 0;

	sse_init(&p, max);
	for (size_t i = 0; i < n && rc == 0; i++) {
		/* a private copy per byte so ASan catches views into old input */
		char *one = malloc(1);

		assert_non_null(one);
		*one = s[i];
		rc = sse_feed(&p, one, 1, rec_cb, r);
		free(one);
	}
	*pending = sse_pending(&p);
	sse_clear(&p);
	return rc;
}

#define FEED1(lit, r, pend)                                                    \
	feed_split((lit), sizeof(lit) - 1, NULL, 0, 0, (r), (pend))

static void assert_str_eq_n(const char *got, size_t gn, const char *want)
{
	assert_int_equal(gn, strlen(want));
	assert_memory_equal(got, want, gn);
}

/* ---- basics ---- */

static void test_single_event_lf(void **state)
{
	struct rec *r = rec_new();
	size_t pend;
	(void)state;

	assert_int_equal(FEED1("data: hello\n\n", r, &pend), 0);
	assert_int_equal(r->n, 1);
	assert_str_eq_n(r->ev[0].raw, r->ev[0].raw_n, "data: hello\n\n");
	assert_str_eq_n(r->ev[0].data, r->ev[0].data_n, "hello");
	assert_true(r->ev[0].has_data);
	assert_false(r->ev[0].has_event);
	assert_false(r->ev[0].has_id);
	assert_int_equal(pend, 0);
	free(r);
}

static void test_line_endings(void **state)
{
	static const char *const streams[] = {
		"event: e\r\ndata: x\r\n\r\n",
		"event: e\rdata: x\r\r",
		"event: e\ndata: x\n\n",
		"event: e\r\ndata: x\r\r\n",
		"event: e\rdata: x\n\r\n",
	};
	(void)state;

	for (size_t k = 0; k < UMB_ARRAY_LEN(streams); k++) {
		struct rec *r = rec_new();
		size_t pend, n = strlen(streams[k]);
		int rc = feed_split(streams[k], n, NULL, 0, 0, r, &pend);

		assert_int_equal(rc, 0);
		/* A stream ending in a lone CR holds its last event. */
		if (streams[k][n - 1] == '\r') {
			assert_int_equal(r->n, 0);
			assert_int_equal(pend, n);
		} else {
			assert_int_equal(r->n, 1);
			assert_int_equal(pend, 0);
			assert_str_eq_n(r->ev[0].raw, r->ev[0].raw_n,
					streams[k]);
			assert_str_eq_n(r->ev[0].event, r->ev[0].event_n, "e");
			assert_str_eq_n(r->ev[0].data, r->ev[0].data_n, "x");
		}
		free(r);
	}
}

static void test_cr_only_released_by_next_byte(void **state)
{
	struct rec *r = rec_new();
	size_t pend;
	(void)state;

	assert_int_equal(FEED1("data: a\r\rdata: b\r\r:x", r, &pend), 0);
	assert_int_equal(r->n, 2);
	assert_str_eq_n(r->ev[0].raw, r->ev[0].raw_n, "data: a\r\r");
	assert_str_eq_n(r->ev[1].raw, r->ev[1].raw_n, "data: b\r\r");
	assert_str_eq_n(r->ev[1].data, r->ev[1].data_n, "b");
	assert_int_equal(pend, 2);
	free(r);
}

static void test_multi_data_joined(void **state)
{
	struct rec *r = rec_new();
	size_t pend;
	(void)state;

	assert_int_equal(FEED1("data: a\ndata: b\ndata:c\n\n", r, &pend), 0);
	assert_int_equal(r->n, 1);
	assert_str_eq_n(r->ev[0].data, r->ev[0].data_n, "a\nb\nc");
	free(r);
}

static void test_one_space_stripped(void **state)
{
	struct rec *r = rec_new();
	size_t pend;
	(void)state;

	assert_int_equal(FEED1("data:  two\n\ndata:none\n\ndata:\n\n", r,
			       &pend),
			 0);
	assert_int_equal(r->n, 3);
	assert_str_eq_n(r->ev[0].data, r->ev[0].data_n, " two");
	assert_str_eq_n(r->ev[1].data, r->ev[1].data_n, "none");
	assert_str_eq_n(r->ev[2].data, r->ev[2].data_n, "");
	assert_true(r->ev[2].has_data);
	free(r);
}

static void test_field_without_colon(void **state)
{
	struct rec *r = rec_new();
	size_t pend;
	(void)state;

	/* "data" alone is a data line with an empty value; two of them join
	 * to "\n" (WHATWG). */
	assert_int_equal(FEED1("data\n\ndata\ndata\n\n", r, &pend), 0);
	assert_int_equal(r->n, 2);
	assert_true(r->ev[0].has_data);
	assert_int_equal(r->ev[0].data_n, 0);
	assert_str_eq_n(r->ev[1].data, r->ev[1].data_n, "\n");
	free(r);
}

static void test_comments_and_empty_blocks(void **state)
{
	struct rec *r = rec_new();
	size_t pend;
	(void)state;

	/* Keep-alive comments and stray blank lines are events without data,
	 * so the forwarder sees (and can pass on) every byte. */
	assert_int_equal(FEED1(": keepalive\n\n\ndata: x\n: mid\n\n", r,
			       &pend),
			 0);
	assert_int_equal(r->n, 3);
	assert_str_eq_n(r->ev[0].raw, r->ev[0].raw_n, ": keepalive\n\n");
	assert_false(r->ev[0].has_data);
	assert_str_eq_n(r->ev[1].raw, r->ev[1].raw_n, "\n");
	assert_false(r->ev[1].has_data);
	assert_str_eq_n(r->ev[2].data, r->ev[2].data_n, "x");
	free(r);
}

static void test_event_id_retry_unknown(void **state)
{
	static const char s[] = "event: a\nevent: b\nid: 7\nretry: 100\n"
				"foo: bar\nData: no\ndata: yes\n\n"
				"id: x\0y\ndata: z\n\n";
	struct rec *r = rec_new();
	size_t pend;
	(void)state;

	assert_int_equal(feed_split(s, sizeof(s) - 1, NULL, 0, 0, r, &pend), 0);
	assert_int_equal(r->n, 2);
	assert_str_eq_n(r->ev[0].event, r->ev[0].event_n, "b"); /* last wins */
	assert_str_eq_n(r->ev[0].id, r->ev[0].id_n, "7");
	/* field names are case-sensitive */
	assert_str_eq_n(r->ev[0].data, r->ev[0].data_n, "yes");
	/* an id holding NUL is ignored */
	assert_false(r->ev[1].has_id);
	assert_str_eq_n(r->ev[1].data, r->ev[1].data_n, "z");
	free(r);
}

static void test_bom_stripped_once(void **state)
{
	struct rec *r = rec_new();
	size_t pend;
	(void)state;

	assert_int_equal(FEED1("\xEF\xBB\xBF" "data: a\n\n\xEF\xBB\xBF" "data: b\n\n",
			       r, &pend),
			 0);
	assert_int_equal(r->n, 2);
	assert_int_equal(r->ev[0].raw_n, 12);
	assert_str_eq_n(r->ev[0].data, r->ev[0].data_n, "a");
	/* only at the very start of the stream */
	assert_false(r->ev[1].has_data);
	free(r);
}

static void test_zero_copy_views(void **state)
{
	static const char s[] = "data: a\n\ndata: b\n";
	struct rec *r = rec_new();
	struct sse_parser p;
	(void)state;

	sse_init(&p, 0);
	assert_int_equal(sse_feed(&p, s, sizeof(s) - 1, rec_cb, r), 0);
	assert_int_equal(r->n, 1);
	assert_ptr_equal(r->ev[0].raw_ptr, s); /* a view, not a copy */
	assert_int_equal(sse_pending(&p), 8);
	assert_int_equal(sse_feed(&p, "\n", 1, rec_cb, r), 0);
	assert_int_equal(r->n, 2);
	assert_str_eq_n(r->ev[1].raw, r->ev[1].raw_n, "data: b\n\n");
	assert_int_equal(sse_pending(&p), 0);
	assert_int_equal(sse_feed(&p, "", 0, rec_cb, r), 0);
	assert_int_equal(r->n, 2);
	sse_clear(&p);
	free(r);
}

static void test_cr_lf_split_no_spurious_event(void **state)
{
	struct rec *r = rec_new();
	struct sse_parser p;
	(void)state;

	sse_init(&p, 0);
	assert_int_equal(sse_feed(&p, "data: x\r", 8, rec_cb, r), 0);
	assert_int_equal(sse_feed(&p, "\n\r", 2, rec_cb, r), 0);
	assert_int_equal(r->n, 0); /* the LF may still follow */
	assert_int_equal(sse_feed(&p, "\n", 1, rec_cb, r), 0);
	assert_int_equal(r->n, 1);
	assert_str_eq_n(r->ev[0].raw, r->ev[0].raw_n, "data: x\r\n\r\n");
	assert_int_equal(sse_feed(&p, "data: y\r\n\r", 10, rec_cb, r), 0);
	assert_int_equal(sse_feed(&p, "data: z\r\n\r\n", 11, rec_cb, r), 0);
	assert_int_equal(r->n, 3);
	assert_str_eq_n(r->ev[1].raw, r->ev[1].raw_n, "data: y\r\n\r");
	assert_str_eq_n(r->ev[2].data, r->ev[2].data_n, "z");
	assert_int_equal(sse_pending(&p), 0);
	sse_clear(&p);
	free(r);
}

static void test_values_with_colons(void **state)
{
	struct rec *r = rec_new();
	size_t pend;
	(void)state;

	/* only the first colon splits; only one space is stripped */
	assert_int_equal(FEED1("data: a: b\nevent:x:y\nid::\n\n", r, &pend),
			 0);
	assert_int_equal(r->n, 1);
	assert_str_eq_n(r->ev[0].data, r->ev[0].data_n, "a: b");
	assert_str_eq_n(r->ev[0].event, r->ev[0].event_n, "x:y");
	assert_str_eq_n(r->ev[0].id, r->ev[0].id_n, ":");
	free(r);
}

static void test_joined_data_spans_feeds(void **state)
{
	struct rec *r = rec_new();
	struct sse_parser p;
	(void)state;

	/* several data lines, cut in the middle of the second: the joined
	 * buffer is built from the held copy */
	sse_init(&p, 0);
	assert_int_equal(sse_feed(&p, "data: one\ndata: t", 17, rec_cb, r), 0);
	assert_int_equal(sse_feed(&p, "wo\ndata: three\n\ndata: 4\ndata: 5\n\n",
				  33, rec_cb, r),
			 0);
	assert_int_equal(r->n, 2);
	assert_str_eq_n(r->ev[0].data, r->ev[0].data_n, "one\ntwo\nthree");
	assert_str_eq_n(r->ev[1].data, r->ev[1].data_n, "4\n5");
	sse_clear(&p);

	/* a cleared parser can be initialised and used again */
	sse_init(&p, 0);
	assert_int_equal(sse_feed(&p, "data: again\n\n", 13, rec_cb, r), 0);
	assert_int_equal(r->n, 3);
	assert_str_eq_n(r->ev[2].data, r->ev[2].data_n, "again");
	sse_clear(&p);
	free(r);
}

/* ---- limits and errors ---- */

static void test_too_big_one_chunk(void **state)
{
	struct rec *r = rec_new();
	size_t pend;
	(void)state;

	/* 11 bytes fit a cap of 11; 12 do not */
	assert_int_equal(feed_split("data: abc\n\n", 11, NULL, 0, 11, r, &pend),
			 0);
	assert_int_equal(r->n, 1);
	assert_int_equal(feed_split("data: abcd\n\n", 12, NULL, 0, 11, r, &pend),
			 UMB_ETOOBIG);
	assert_int_equal(r->n, 1);
	free(r);
}

static void test_too_big_across_chunks_sticky(void **state)
{
	struct rec *r = rec_new();
	struct sse_parser p;
	char big[100];
	(void)state;

	memset(big, 'x', sizeof(big));
	sse_init(&p, 64);
	assert_int_equal(sse_feed(&p, "data: ", 6, rec_cb, r), 0);
	assert_int_equal(sse_feed(&p, big, 50, rec_cb, r), 0);
	assert_int_equal(sse_feed(&p, big, 50, rec_cb, r), UMB_ETOOBIG);
	assert_int_equal(sse_feed(&p, "\n\n", 2, rec_cb, r), UMB_ETOOBIG);
	assert_int_equal(r->n, 0);
	sse_clear(&p);

	/* a tail larger than the cap fails at once, before its end shows */
	sse_init(&p, 64);
	assert_int_equal(sse_feed(&p, big, 65, rec_cb, r), UMB_ETOOBIG);
	sse_clear(&p);
	free(r);
}

static void test_callback_abort(void **state)
{
	struct rec *r = rec_new();
	struct sse_parser p;
	(void)state;

	r->abort_at = 2;
	sse_init(&p, 0);
	assert_int_equal(sse_feed(&p, "data: 1\n\ndata: 2\n\ndata: 3\n\n", 27,
				  rec_cb, r),
			 -7);
	assert_int_equal(r->n, 2);
	assert_int_equal(sse_feed(&p, "data: 4\n\n", 9, rec_cb, r), -7);
	assert_int_equal(r->n, 2);
	sse_clear(&p);
	free(r);
}

/* ---- split invariance ---- */

/* Mixed line endings, multibyte UTF-8 (2, 3 and 4 bytes), comments, multi
 * data lines, CR-only blank lines, a BOM and an unterminated tail. */
static const char stream_mixed[] =
	"\xEF\xBB\xBF: hello\r\n\r\n"
	"event: message_start\r\ndata: {\"t\":\"h\xC3\xA9llo \xE2\x82\xAC\"}\r\n\r\n"
	"data: line1\ndata: line2 \xF0\x9F\x98\x80\n\n"
	"id: 42\rdata: cr-only\r\r"
	"data:x\r\n\n"
	"\n"
	"event: e\ndata\ndata: last \xE6\x97\xA5\xE6\x9C\xAC\r\r\n"
	"data: [DONE]\n\n"
	"data: unfinished \xE2\x82";

static void check_split_invariance(const char *s, size_t n)
{
	struct rec *one = rec_new(), *r = rec_new();
	size_t pend_one, pend, raw_total = 0;
	int rc_one = feed_split(s, n, NULL, 0, 0, one, &pend_one);

	/* raws + pending reproduce the stream byte for byte */
	for (size_t k = 0; k < one->n; k++) {
		assert_memory_equal(one->ev[k].raw, s + raw_total,
				    one->ev[k].raw_n);
		raw_total += one->ev[k].raw_n;
	}
	if (rc_one == 0)
		assert_int_equal(raw_total + pend_one, n);

	for (size_t i = 0; i <= n; i++) {
		memset(r, 0, sizeof(*r));
		assert_int_equal(feed_split(s, n, &i, 1, 0, r, &pend), rc_one);
		assert_int_equal(pend, pend_one);
		assert_int_equal(r->ser_n, one->ser_n);
		assert_memory_equal(r->ser, one->ser, one->ser_n);
	}
	for (size_t i = 0; i <= n; i++) {
		for (size_t j = i; j <= n; j++) {
			size_t cuts[2] = { i, j };

			memset(r, 0, sizeof(*r));
			assert_int_equal(feed_split(s, n, cuts, 2, 0, r, &pend),
					 rc_one);
			assert_int_equal(pend, pend_one);
			assert_int_equal(r->ser_n, one->ser_n);
			assert_memory_equal(r->ser, one->ser, one->ser_n);
		}
	}
	memset(r, 0, sizeof(*r));
	assert_int_equal(feed_bytewise(s, n, 0, r, &pend), rc_one);
	assert_int_equal(pend, pend_one);
	assert_int_equal(r->ser_n, one->ser_n);
	assert_memory_equal(r->ser, one->ser, one->ser_n);
	free(one);
	free(r);
}

static void test_split_every_offset_mixed(void **state)
{
	struct rec *r = rec_new();
	size_t pend;
	(void)state;

	assert_int_equal(feed_split(stream_mixed, sizeof(stream_mixed) - 1,
				    NULL, 0, 0, r, &pend),
			 0);
	/* the expected decomposition, checked once */
	assert_int_equal(r->n, 8);
	assert_false(r->ev[0].has_data);
	assert_str_eq_n(r->ev[1].event, r->ev[1].event_n, "message_start");
	assert_str_eq_n(r->ev[1].data, r->ev[1].data_n,
			"{\"t\":\"h\xC3\xA9llo \xE2\x82\xAC\"}");
	assert_str_eq_n(r->ev[2].data, r->ev[2].data_n,
			"line1\nline2 \xF0\x9F\x98\x80");
	assert_str_eq_n(r->ev[3].id, r->ev[3].id_n, "42");
	assert_str_eq_n(r->ev[3].data, r->ev[3].data_n, "cr-only");
	assert_str_eq_n(r->ev[4].raw, r->ev[4].raw_n, "data:x\r\n\n");
	assert_str_eq_n(r->ev[5].raw, r->ev[5].raw_n, "\n");
	assert_str_eq_n(r->ev[6].data, r->ev[6].data_n,
			"\nlast \xE6\x97\xA5\xE6\x9C\xAC");
	assert_str_eq_n(r->ev[6].raw + r->ev[6].raw_n - 3, 3, "\r\r\n");
	assert_str_eq_n(r->ev[7].data, r->ev[7].data_n, "[DONE]");
	assert_int_equal(pend, strlen("data: unfinished \xE2\x82"));
	free(r);

	check_split_invariance(stream_mixed, sizeof(stream_mixed) - 1);
}

static void test_split_every_offset_openai(void **state)
{
	static const char s[] =
		"data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"
		"data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Bonjour \xE2\x80\x94 \xF0\x9F\x91\x8B\"}}]}\n\n"
		": OPENROUTER PROCESSING\n\n"
		"data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n"
		"data: [DONE]\n\n";
	(void)state;

	check_split_invariance(s, sizeof(s) - 1);
}

static void test_split_every_offset_crs(void **state)
{
	/* dense CR / LF runs: every way a terminator can be cut */
	static const char s[] = "a\r\r\r\n\r\n\n\rb\r\n\r\r\n\r\n\rdata\r\r\n";
	(void)state;

	check_split_invariance(s, sizeof(s) - 1);
}

static void test_split_with_cap(void **state)
{
	/* the same failure whatever the split */
	static const char s[] = "data: 1\n\ndata: 0123456789abcdef\n\ndata: 2\n\n";
	struct rec *one = rec_new(), *r = rec_new();
	size_t pend, n = sizeof(s) - 1;
	(void)state;

	assert_int_equal(feed_split(s, n, NULL, 0, 16, one, &pend),
			 UMB_ETOOBIG);
	assert_int_equal(one->n, 1);
	for (size_t i = 0; i <= n; i++) {
		memset(r, 0, sizeof(*r));
		assert_int_equal(feed_split(s, n, &i, 1, 16, r, &pend),
				 UMB_ETOOBIG);
		assert_int_equal(r->n, 1);
	}
	memset(r, 0, sizeof(*r));
	assert_int_equal(feed_bytewise(s, n, 16, r, &pend), UMB_ETOOBIG);
	assert_int_equal(r->n, 1);
	free(one);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_event_lf),
		cmocka_unit_test(test_line_endings),
		cmocka_unit_test(test_cr_only_released_by_next_byte),
		cmocka_unit_test(test_multi_data_joined),
		cmocka_unit_test(test_one_space_stripped),
		cmocka_unit_test(test_field_without_colon),
		cmocka_unit_test(test_comments_and_empty_blocks),
		cmocka_unit_test(test_event_id_retry_unknown),
		cmocka_unit_test(test_bom_stripped_once),
		cmocka_unit_test(test_zero_copy_views),
		cmocka_unit_test(test_cr_lf_split_no_spurious_event),
		cmocka_unit_test(test_values_with_colons),
		cmocka_unit_test(test_joined_data_spans_feeds),
		cmocka_unit_test(test_too_big_one_chunk),
		cmocka_unit_test(test_too_big_across_chunks_sticky),
		cmocka_unit_test(test_callback_abort),
		cmocka_unit_test(test_split_every_offset_mixed),
		cmocka_unit_test(test_split_every_offset_openai),
		cmocka_unit_test(test_split_every_offset_crs),
		cmocka_unit_test(test_split_with_cap),
	};

	return cmocka_run_group_tests_name("sse", tests, NULL, NULL);
}
