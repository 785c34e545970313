/* test_eventstream.c — unit tests for providers/eventstream.c: the AWS
 * event-stream test vectors, every header value type, both CRCs, the caps,
 * and bytes split at every boundary (which must change nothing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "providers/eventstream.h"

/* ---- the published vectors ----
 * From aws/aws-sdk-js-v3, packages/eventstream-marshaller/src/
 * TestVectors.fixture.ts (the AWS SDKs' shared event-stream vectors;
 * empty_message is also aws-c-event-stream's encoded/positive/empty_message). */

static const uint8_t v_empty[] = { 0, 0, 0, 16, 0, 0, 0, 0, 5, 194, 72, 235, 125, 152, 200, 255 };
static const uint8_t v_int32[] = { 0, 0, 0, 43, 0, 0, 0, 14, 52, 139, 236, 123, 8, 101, 118,
				   101, 110, 116, 45, 105, 100, 4, 0, 0, 160, 12, 123, 39, 102,
				   111, 111, 39, 58, 39, 98, 97, 114, 39, 125, 211, 137, 2, 133 };
static const uint8_t v_payload[] = { 0, 0, 0, 29, 0, 0, 0, 0, 253, 82, 140, 90, 123, 39, 102,
				     111, 111, 39, 58, 39, 98, 97, 114, 39, 125, 195, 101, 57, 54 };
static const uint8_t v_str[] = { 0, 0, 0, 61, 0, 0, 0, 32, 7, 253, 131, 150, 12, 99, 111, 110,
				 116, 101, 110, 116, 45, 116, 121, 112, 101, 7, 0, 16, 97, 112,
				 112, 108, 105, 99, 97, 116, 105, 111, 110, 47, 106, 115, 111,
				 110, 123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39, 125,
				 141, 156, 8, 177 };
static const uint8_t v_bad_headers[] = { 0, 0, 0, 61, 0, 0, 0, 32, 7, 253, 131, 150, 12, 99,
					 111, 110, 116, 101, 110, 116, 43, 116, 121, 112, 101, 7,
					 0, 16, 97, 112, 112, 108, 105, 99, 97, 116, 105, 111,
					 110, 47, 106, 115, 111, 110, 123, 39, 102, 111, 111, 39,
					 58, 39, 98, 97, 114, 39, 125, 141, 156, 8, 177 };
static const uint8_t v_bad_header_len[] = { 0, 0, 0, 61, 0, 0, 1, 32, 7, 253, 131, 150, 12, 99,
					    111, 110, 116, 101, 110, 116, 45, 116, 121, 112, 101,
					    7, 0, 16, 97, 112, 112, 108, 105, 99, 97, 116, 105,
					    111, 110, 47, 106, 115, 111, 110, 123, 39, 102, 111,
					    111, 39, 58, 39, 98, 97, 114, 39, 125, 141, 156, 8, 177 };
static const uint8_t v_bad_length[] = { 1, 0, 0, 29, 0, 0, 0, 0, 253, 82, 140, 90, 123, 39, 102,
					111, 111, 39, 58, 39, 98, 97, 114, 39, 125, 195, 101, 57, 54 };
static const uint8_t v_bad_payload[] = { 0, 0, 0, 29, 0, 0, 0, 0, 253, 82, 140, 90, 123, 39,
					 102, 111, 111, 39, 58, 39, 98, 97, 114, 39, 141, 195, 101,
					 57, 54 };

#define BYTES(a) ((const char *)(a)), sizeof(a)

/* ---- a recorder: every message serialised, so runs can be compared ---- */

struct rec {
	struct buf log;
	int n;
	int stop_at; /* return 7 from the callback at this message (0: never) */
};

static void rec_init(struct rec *r)
{
	buf_init(&r->log, 0);
	r->n = 0;
	r->stop_at = 0;
}

static int rec_cb(void *ctx, const struct es_message *m)
{
	struct rec *r = ctx;
	r->n++;
	buf_printf(&r->log, "msg %zu headers\n", m->n_headers);
	for (size_t i = 0; i < m->n_headers; i++) {
		const struct es_header *h = &m->headers[i];
		buf_printf(&r->log, " %.*s t%d i%lld v[%zu]", STR_FMT(h->name), (int)h->type,
			   (long long)h->i, h->v.n);
		buf_append_str(&r->log, h->v);
		buf_append_lit(&r->log, "\n");
	}
	buf_printf(&r->log, " payload[%zu]", m->payload.n);
	buf_append_str(&r->log, m->payload);
	buf_append_lit(&r->log, "\n");
	return r->n == r->stop_at ? 7 : 0;
}

/* Feed `in` cut at the given offsets (sorted, within n); returns the rc. */
static int feed_cuts(const char *in, size_t n, const size_t *cuts, size_t n_cuts, struct rec *r,
		     size_t max)
{
	struct es_decoder d;
	es_decoder_init(&d, max);
	size_t pos = 0;
	int rc = 0;
	for (size_t i = 0; i <= n_cuts && rc == 0; i++) {
		size_t end = i < n_cuts ? cuts[i] : n;
		/* a fresh heap copy per piece: a view kept into an older feed
		 * would be caught by ASan */
		char *piece = malloc(end - pos + 1);
		memcpy(piece, in + pos, end - pos);
		rc = es_decoder_feed(&d, piece, end - pos, rec_cb, r);
		free(piece);
		pos = end;
	}
	if (rc == 0)
		assert_int_equal(es_decoder_pending(&d), 0);
	es_decoder_clear(&d);
	return rc;
}

static int feed_whole(const char *in, size_t n, struct rec *r)
{
	return feed_cuts(in, n, NULL, 0, r, 0);
}

/* ---- tests ---- */

static void test_crc32(void **state)
{
	(void)state;
	assert_int_equal(es_crc32(0, "123456789", 9), 0xCBF43926u); /* the CRC-32 check value */
	assert_int_equal(es_crc32(0, "", 0), 0);
	/* incremental equals one shot */
	uint32_t c = es_crc32(0, "12345", 5);
	assert_int_equal(es_crc32(c, "6789", 4), 0xCBF43926u);
}

static void test_vectors_decode(void **state)
{
	(void)state;
	struct es_message m;
	const char *why = NULL;

	assert_int_equal(es_message_parse(BYTES(v_empty), &m, &why), 0);
	assert_int_equal(m.n_headers, 0);
	assert_int_equal(m.payload.n, 0);

	assert_int_equal(es_message_parse(BYTES(v_int32), &m, &why), 0);
	assert_int_equal(m.n_headers, 1);
	assert_true(str_eq(m.headers[0].name, STR("event-id")));
	assert_int_equal(m.headers[0].type, ES_INT);
	assert_int_equal(m.headers[0].i, 0xa00c);
	assert_true(str_eq(m.payload, STR("{'foo':'bar'}")));

	assert_int_equal(es_message_parse(BYTES(v_payload), &m, &why), 0);
	assert_int_equal(m.n_headers, 0);
	assert_true(str_eq(m.payload, STR("{'foo':'bar'}")));

	assert_int_equal(es_message_parse(BYTES(v_str), &m, &why), 0);
	assert_int_equal(m.n_headers, 1);
	assert_true(str_eq(es_message_str(&m, "content-type"), STR("application/json")));
	assert_null(es_message_header(&m, ":event-type"));
	assert_true(str_eq(es_message_str(&m, "missing"), STR("")));
}

static void test_vectors_failures(void **state)
{
	(void)state;
	struct es_message m;
	const char *why = NULL;

	assert_int_equal(es_message_parse(BYTES(v_bad_headers), &m, &why), UMB_ERR);
	assert_string_equal(why, "message CRC mismatch");
	assert_int_equal(es_message_parse(BYTES(v_bad_header_len), &m, &why), UMB_ERR);
	assert_string_equal(why, "prelude CRC mismatch");
	assert_int_equal(es_message_parse(BYTES(v_bad_length), &m, &why), UMB_ERR);
	assert_string_equal(why, "prelude CRC mismatch");
	assert_int_equal(es_message_parse(BYTES(v_bad_payload), &m, &why), UMB_ERR);
	assert_string_equal(why, "message CRC mismatch");
	/* the decoder says the same */
	struct rec r;
	rec_init(&r);
	assert_int_equal(feed_whole(BYTES(v_bad_payload), &r), UMB_ERR);
	assert_int_equal(r.n, 0);
	buf_clear(&r.log);
}

static void test_vectors_encode(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(es_encode(&b, NULL, 0, STR("")), 0);
	assert_memory_equal(b.p, v_empty, sizeof v_empty);
	assert_int_equal(b.n, sizeof v_empty);

	buf_reset(&b);
	struct es_header h = { .name = STR("event-id"), .type = ES_INT, .i = 0xa00c };
	assert_int_equal(es_encode(&b, &h, 1, STR("{'foo':'bar'}")), 0);
	assert_int_equal(b.n, sizeof v_int32);
	assert_memory_equal(b.p, v_int32, sizeof v_int32);

	buf_reset(&b);
	h = (struct es_header){ .name = STR("content-type"), .type = ES_STRING,
				.v = STR("application/json") };
	assert_int_equal(es_encode(&b, &h, 1, STR("{'foo':'bar'}")), 0);
	assert_int_equal(b.n, sizeof v_str);
	assert_memory_equal(b.p, v_str, sizeof v_str);
	buf_clear(&b);
}

static void test_all_header_types(void **state)
{
	(void)state;
	static const char uuid[16] = "0123456789abcdef";
	const struct es_header in[] = {
		{ .name = STR("t"), .type = ES_BOOL_TRUE },
		{ .name = STR("f"), .type = ES_BOOL_FALSE },
		{ .name = STR("byte"), .type = ES_BYTE, .i = -2 },
		{ .name = STR("short"), .type = ES_SHORT, .i = -300 },
		{ .name = STR("int"), .type = ES_INT, .i = -70000 },
		{ .name = STR("long"), .type = ES_LONG, .i = -5000000000LL },
		{ .name = STR("bytes"), .type = ES_BYTES, .v = STR("\x00\x01\xff") },
		{ .name = STR("string"), .type = ES_STRING, .v = STR("h\xc3\xa9llo") },
		{ .name = STR("ts"), .type = ES_TIMESTAMP, .i = 1700000000123LL },
		{ .name = STR("uuid"), .type = ES_UUID, .v = { uuid, 16 } },
		{ .name = STR("empty"), .type = ES_STRING, .v = STR("") },
	};
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(es_encode(&b, in, UMB_ARRAY_LEN(in), STR("payload")), 0);
	struct es_message m;
	const char *why = NULL;
	assert_int_equal(es_message_parse(b.p, b.n, &m, &why), 0);
	assert_int_equal(m.n_headers, UMB_ARRAY_LEN(in));
	for (size_t i = 0; i < UMB_ARRAY_LEN(in); i++) {
		assert_true(str_eq(m.headers[i].name, in[i].name));
		assert_int_equal(m.headers[i].type, in[i].type);
		if (in[i].type == ES_BOOL_TRUE)
			assert_int_equal(m.headers[i].i, 1);
		else
			assert_int_equal(m.headers[i].i, in[i].i);
		assert_true(str_eq(m.headers[i].v, in[i].v));
	}
	assert_true(str_eq(m.payload, STR("payload")));
	/* the encoder refuses what it cannot write */
	struct es_header bad = { .name = STR(""), .type = ES_STRING };
	assert_int_equal(es_encode(&b, &bad, 1, STR("")), UMB_ERR);
	bad = (struct es_header){ .name = STR("u"), .type = ES_UUID, .v = STR("short") };
	assert_int_equal(es_encode(&b, &bad, 1, STR("")), UMB_ERR);
	bad = (struct es_header){ .name = STR("x"), .type = (enum es_type)10 };
	assert_int_equal(es_encode(&b, &bad, 1, STR("")), UMB_ERR);
	buf_clear(&b);
}

/* Rewrite both CRCs of an encoded message after it was patched. */
static void fix_crcs(char *m, size_t n)
{
	uint32_t c = es_crc32(0, m, 8);
	for (int i = 0; i < 4; i++)
		m[8 + i] = (char)(c >> (24 - 8 * i));
	c = es_crc32(0, m, n - 4);
	for (int i = 0; i < 4; i++)
		m[n - 4 + i] = (char)(c >> (24 - 8 * i));
}

static void test_unknown_type_and_overruns(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 0);
	struct es_header h = { .name = STR("name"), .type = ES_STRING, .v = STR("value") };
	assert_int_equal(es_encode(&b, &h, 1, STR("{}")), 0);
	struct es_message m;
	const char *why = NULL;
	/* header layout: [12] len 4, [13..16] "name", [17] type, [18..19] len */

	b.p[17] = 10; /* type 10 does not exist */
	fix_crcs(b.p, b.n);
	assert_int_equal(es_message_parse(b.p, b.n, &m, &why), UMB_ERR);
	assert_string_equal(why, "unknown header value type");

	b.p[17] = ES_STRING;
	b.p[19] = 40; /* string longer than the headers */
	fix_crcs(b.p, b.n);
	assert_int_equal(es_message_parse(b.p, b.n, &m, &why), UMB_ERR);
	assert_string_equal(why, "header value runs past the headers");

	b.p[19] = 5;
	b.p[12] = 60; /* name longer than the headers */
	fix_crcs(b.p, b.n);
	assert_int_equal(es_message_parse(b.p, b.n, &m, &why), UMB_ERR);
	assert_string_equal(why, "header name runs past the headers");

	b.p[12] = 0; /* empty name */
	fix_crcs(b.p, b.n);
	assert_int_equal(es_message_parse(b.p, b.n, &m, &why), UMB_ERR);
	assert_string_equal(why, "empty header name");

	b.p[12] = 4;
	b.p[17] = ES_LONG; /* 8 bytes of value, only 7 left ("value" + 2 len) */
	fix_crcs(b.p, b.n);
	assert_int_equal(es_message_parse(b.p, b.n, &m, &why), UMB_ERR);
	assert_string_equal(why, "header value runs past the headers");
	buf_clear(&b);
}

static void test_too_many_headers(void **state)
{
	(void)state;
	struct es_header h[ES_MAX_HEADERS + 1];
	for (size_t i = 0; i < UMB_ARRAY_LEN(h); i++)
		h[i] = (struct es_header){ .name = STR("h"), .type = ES_BOOL_TRUE };
	struct buf b;
	buf_init(&b, 0);
	struct es_message m;
	const char *why = NULL;
	assert_int_equal(es_encode(&b, h, ES_MAX_HEADERS, STR("")), 0);
	assert_int_equal(es_message_parse(b.p, b.n, &m, &why), 0);
	assert_int_equal(m.n_headers, ES_MAX_HEADERS);
	buf_reset(&b);
	assert_int_equal(es_encode(&b, h, ES_MAX_HEADERS + 1, STR("")), 0);
	assert_int_equal(es_message_parse(b.p, b.n, &m, &why), UMB_ERR);
	assert_string_equal(why, "too many headers");
	buf_clear(&b);
}

/* A Bedrock-like stream: three events, the middle one with a multibyte
 * UTF-8 payload, so cuts land inside characters too. */
static void make_stream(struct buf *b)
{
	const char *types[] = { "messageStart", "contentBlockDelta", "messageStop" };
	const char *payloads[] = {
		"{\"role\":\"assistant\"}",
		"{\"contentBlockIndex\":0,\"delta\":{\"text\":\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"}}",
		"{\"stopReason\":\"end_turn\"}",
	};
	buf_init(b, 0);
	for (size_t i = 0; i < 3; i++) {
		struct es_header h[3] = {
			{ .name = STR(":event-type"), .type = ES_STRING, .v = str_cstr(types[i]) },
			{ .name = STR(":content-type"), .type = ES_STRING, .v = STR("application/json") },
			{ .name = STR(":message-type"), .type = ES_STRING, .v = STR("event") },
		};
		assert_int_equal(es_encode(b, h, 3, str_cstr(payloads[i])), 0);
	}
}

static void test_split_everywhere(void **state)
{
	(void)state;
	struct buf s;
	make_stream(&s);
	struct rec whole;
	rec_init(&whole);
	assert_int_equal(feed_whole(s.p, s.n, &whole), 0);
	assert_int_equal(whole.n, 3);

	/* one cut at every offset */
	for (size_t cut = 0; cut <= s.n; cut++) {
		struct rec r;
		rec_init(&r);
		assert_int_equal(feed_cuts(s.p, s.n, &cut, 1, &r, 0), 0);
		assert_int_equal(r.n, 3);
		assert_int_equal(r.log.n, whole.log.n);
		assert_memory_equal(r.log.p, whole.log.p, whole.log.n);
		buf_clear(&r.log);
	}
	/* two cuts at every pair of offsets (the prelude, the headers and
	 * the CRC each cut in two at once) */
	for (size_t a = 0; a <= s.n; a += 3)
		for (size_t c = a; c <= s.n; c += 5) {
			size_t cuts[2] = { a, c };
			struct rec r;
			rec_init(&r);
			assert_int_equal(feed_cuts(s.p, s.n, cuts, 2, &r, 0), 0);
			assert_int_equal(r.log.n, whole.log.n);
			assert_memory_equal(r.log.p, whole.log.p, whole.log.n);
			buf_clear(&r.log);
		}
	/* byte by byte */
	size_t *cuts = malloc(s.n * sizeof *cuts);
	for (size_t i = 0; i < s.n; i++)
		cuts[i] = i + 1;
	struct rec r;
	rec_init(&r);
	assert_int_equal(feed_cuts(s.p, s.n, cuts, s.n - 1, &r, 0), 0);
	assert_int_equal(r.log.n, whole.log.n);
	assert_memory_equal(r.log.p, whole.log.p, whole.log.n);
	buf_clear(&r.log);
	free(cuts);
	buf_clear(&whole.log);
	buf_clear(&s);
}

static void test_prelude_crc_refused_early(void **state)
{
	(void)state;
	struct buf s;
	make_stream(&s);
	s.p[9] ^= 0x01; /* prelude CRC of the first message */
	struct es_decoder d;
	es_decoder_init(&d, 0);
	struct rec r;
	rec_init(&r);
	/* 11 bytes: not enough to judge yet */
	assert_int_equal(es_decoder_feed(&d, s.p, 11, rec_cb, &r), 0);
	/* the 12th byte completes the prelude: refused before the rest */
	assert_int_equal(es_decoder_feed(&d, s.p + 11, 1, rec_cb, &r), UMB_ERR);
	assert_string_equal(d.why, "prelude CRC mismatch");
	/* sticky */
	assert_int_equal(es_decoder_feed(&d, s.p + 12, s.n - 12, rec_cb, &r), UMB_ERR);
	assert_int_equal(r.n, 0);
	es_decoder_clear(&d);
	buf_clear(&r.log);
	buf_clear(&s);
}

static void test_message_crc_second_message(void **state)
{
	(void)state;
	struct buf s;
	make_stream(&s);
	uint32_t first = (uint32_t)(unsigned char)s.p[3] | (uint32_t)(unsigned char)s.p[2] << 8;
	s.p[first + 20] ^= 0x20; /* a byte inside the second message's headers */
	struct rec r;
	rec_init(&r);
	assert_int_equal(feed_whole(s.p, s.n, &r), UMB_ERR);
	assert_int_equal(r.n, 1); /* the first message was fine and delivered */
	buf_clear(&r.log);
	buf_clear(&s);
}

static void test_oversized(void **state)
{
	(void)state;
	/* a prelude with a valid CRC claiming 16 MiB + 1: refused at once,
	 * nothing buffered */
	char pre[ES_PRELUDE_LEN];
	uint32_t total = ES_MAX_MESSAGE + 1;
	pre[0] = (char)(total >> 24);
	pre[1] = (char)(total >> 16);
	pre[2] = (char)(total >> 8);
	pre[3] = (char)total;
	memset(pre + 4, 0, 4);
	uint32_t c = es_crc32(0, pre, 8);
	for (int i = 0; i < 4; i++)
		pre[8 + i] = (char)(c >> (24 - 8 * i));
	struct es_decoder d;
	es_decoder_init(&d, 0);
	struct rec r;
	rec_init(&r);
	assert_int_equal(es_decoder_feed(&d, pre, sizeof pre, rec_cb, &r), UMB_ETOOBIG);
	assert_string_equal(d.why, "message larger than the cap");
	es_decoder_clear(&d);

	/* a smaller cap given to the decoder; whole and split */
	struct buf s;
	make_stream(&s);
	assert_int_equal(feed_cuts(s.p, s.n, NULL, 0, &r, 40), UMB_ETOOBIG);
	size_t cut = 5;
	assert_int_equal(feed_cuts(s.p, s.n, &cut, 1, &r, 40), UMB_ETOOBIG);
	/* a cap of exactly the largest message passes */
	assert_int_equal(feed_cuts(s.p, s.n, &cut, 1, &r, 200), 0);

	/* shorter than the minimum, and headers longer than the message */
	char tiny[16] = { 0, 0, 0, 15 };
	c = es_crc32(0, tiny, 8);
	for (int i = 0; i < 4; i++)
		tiny[8 + i] = (char)(c >> (24 - 8 * i));
	es_decoder_init(&d, 0);
	assert_int_equal(es_decoder_feed(&d, tiny, sizeof tiny, rec_cb, &r), UMB_ERR);
	es_decoder_clear(&d);
	char hl[16] = { 0, 0, 0, 16, 0, 0, 0, 1 };
	c = es_crc32(0, hl, 8);
	for (int i = 0; i < 4; i++)
		hl[8 + i] = (char)(c >> (24 - 8 * i));
	es_decoder_init(&d, 0);
	assert_int_equal(es_decoder_feed(&d, hl, sizeof hl, rec_cb, &r), UMB_ERR);
	assert_string_equal(d.why, "headers length out of range");
	es_decoder_clear(&d);
	buf_clear(&r.log);
	buf_clear(&s);
}

static void test_callback_stops(void **state)
{
	(void)state;
	struct buf s;
	make_stream(&s);
	struct rec r;
	rec_init(&r);
	r.stop_at = 2;
	struct es_decoder d;
	es_decoder_init(&d, 0);
	assert_int_equal(es_decoder_feed(&d, s.p, s.n, rec_cb, &r), 7);
	assert_int_equal(r.n, 2);
	assert_int_equal(es_decoder_feed(&d, s.p, s.n, rec_cb, &r), 7); /* sticky */
	assert_int_equal(r.n, 2);
	es_decoder_clear(&d);
	buf_clear(&r.log);
	buf_clear(&s);
}

static void test_pending(void **state)
{
	(void)state;
	struct buf s;
	make_stream(&s);
	struct es_decoder d;
	es_decoder_init(&d, 0);
	struct rec r;
	rec_init(&r);
	assert_int_equal(es_decoder_feed(&d, s.p, 5, rec_cb, &r), 0);
	assert_int_equal(es_decoder_pending(&d), 5);
	assert_int_equal(es_decoder_feed(&d, s.p + 5, s.n - 5 - 3, rec_cb, &r), 0);
	assert_int_equal(r.n, 2);
	assert_true(es_decoder_pending(&d) > 0);
	assert_int_equal(es_decoder_feed(&d, s.p + s.n - 3, 3, rec_cb, &r), 0);
	assert_int_equal(r.n, 3);
	assert_int_equal(es_decoder_pending(&d), 0);
	es_decoder_clear(&d);
	buf_clear(&r.log);
	buf_clear(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32),
		cmocka_unit_test(test_vectors_decode),
		cmocka_unit_test(test_vectors_failures),
		cmocka_unit_test(test_vectors_encode),
		cmocka_unit_test(test_all_header_types),
		cmocka_unit_test(test_unknown_type_and_overruns),
		cmocka_unit_test(test_too_many_headers),
		cmocka_unit_test(test_split_everywhere),
		cmocka_unit_test(test_prelude_crc_refused_early),
		cmocka_unit_test(test_message_crc_second_message),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_callback_stops),
		cmocka_unit_test(test_pending),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
