/* fuzz_eventstream.c — libFuzzer target for the AWS event-stream decoder
 * (providers/eventstream.c).
 *
 * Input: one mode byte, two bytes choosing a split offset, then data.
 *  mode even: the data is a raw stream, fed whole, in two pieces and byte
 *    by byte; the three must give the same messages, result and pending
 *    count, and the delivered messages' raw bytes must be the stream's
 *    prefix.
 *  mode odd: the data describes headers of every type and a payload;
 *    es_encode writes the message, which must decode (whole and split)
 *    to exactly what was encoded. */
#include <stdlib.h>

#include "providers/eventstream.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

struct trace {
	struct buf ser; /* every message, serialised */
	struct buf raw; /* raw bytes of every message, concatenated */
	int n;
};

static void ser(struct buf *b, const void *p, size_t n)
{
	uint64_t len = n;
	CHECK(buf_append(b, &len, sizeof len) == 0);
	CHECK(buf_append(b, p, n) == 0);
}

static int trace_cb(void *ctx, const struct es_message *m)
{
	struct trace *t = ctx;
	CHECK(m->raw.n >= ES_MIN_MESSAGE && m->n_headers <= ES_MAX_HEADERS);
	CHECK(m->payload.p >= m->raw.p && m->payload.p + m->payload.n + 4 == m->raw.p + m->raw.n);
	for (size_t i = 0; i < m->n_headers; i++) {
		const struct es_header *h = &m->headers[i];
		CHECK(h->name.n > 0 && (unsigned)h->type <= ES_UUID);
		CHECK(h->type != ES_UUID || h->v.n == 16);
		ser(&t->ser, h->name.p, h->name.n);
		ser(&t->ser, &h->type, sizeof h->type);
		ser(&t->ser, &h->i, sizeof h->i);
		ser(&t->ser, h->v.p, h->v.n);
	}
	ser(&t->ser, m->payload.p, m->payload.n);
	CHECK(buf_append(&t->raw, m->raw.p, m->raw.n) == 0);
	t->n++;
	return 0;
}

struct outcome {
	struct trace t;
	int rc;
	size_t pending;
};

static void run(const char *in, size_t n, size_t cut, bool bytewise, size_t cap,
		struct outcome *o)
{
	struct es_decoder d;
	buf_init(&o->t.ser, 0);
	buf_init(&o->t.raw, 0);
	o->t.n = 0;
	es_decoder_init(&d, cap);
	o->rc = 0;
	if (bytewise) {
		/* one reused heap byte: a view kept into an older feed would
		 * read the wrong byte and break the comparison */
		char *one = malloc(1);
		CHECK(one != NULL);
		for (size_t i = 0; i < n && o->rc == 0; i++) {
			*one = in[i];
			o->rc = es_decoder_feed(&d, one, 1, trace_cb, &o->t);
		}
		free(one);
	} else {
		o->rc = es_decoder_feed(&d, in, cut, trace_cb, &o->t);
		if (o->rc == 0)
			o->rc = es_decoder_feed(&d, in + cut, n - cut, trace_cb, &o->t);
	}
	o->pending = es_decoder_pending(&d);
	es_decoder_clear(&d);
}

static void done(struct outcome *o)
{
	buf_clear(&o->t.ser);
	buf_clear(&o->t.raw);
}

static bool same(const struct outcome *a, const struct outcome *b)
{
	return a->rc == b->rc && (a->rc != 0 || a->pending == b->pending) && a->t.n == b->t.n &&
	       a->t.ser.n == b->t.ser.n &&
	       (a->t.ser.n == 0 || memcmp(a->t.ser.p, b->t.ser.p, a->t.ser.n) == 0);
}

static void raw_mode(const char *in, size_t n, size_t cut)
{
	struct outcome whole, split, bytes;
	/* a small cap: long claimed lengths are refused early */
	run(in, n, n, false, 1u << 16, &whole);
	run(in, n, cut, false, 1u << 16, &split);
	run(in, n, 0, true, 1u << 16, &bytes);
	CHECK(same(&whole, &split));
	CHECK(same(&whole, &bytes));
	/* nothing invented: the messages are the stream's first bytes */
	CHECK(whole.t.raw.n <= n);
	CHECK(whole.t.raw.n == 0 || memcmp(whole.t.raw.p, in, whole.t.raw.n) == 0);
	if (whole.rc == 0)
		CHECK(whole.t.raw.n + whole.pending == n);
	done(&whole);
	done(&split);
	done(&bytes);
}

/* Take k bytes from the description (zero-filled past its end). */
static const char *take(const char **p, const char *end, size_t k, char *tmp)
{
	size_t have = (size_t)(end - *p) < k ? (size_t)(end - *p) : k;
	memset(tmp, 0, k);
	memcpy(tmp, *p, have);
	*p += have;
	return tmp;
}

static void encode_mode(const char *in, size_t n, size_t cut)
{
	const char *p = in, *end = in + n;
	char tmp[128];
	struct es_header h[ES_MAX_HEADERS];
	size_t nh = n ? (unsigned char)*p++ % (ES_MAX_HEADERS + 1) : 0;
	char names[ES_MAX_HEADERS][16], vals[ES_MAX_HEADERS][64];
	for (size_t i = 0; i < nh; i++) {
		size_t nl = 1 + (unsigned char)*take(&p, end, 1, tmp) % 16;
		memcpy(names[i], take(&p, end, nl, tmp), nl);
		h[i].name = str_make(names[i], nl);
		h[i].type = (enum es_type)((unsigned char)*take(&p, end, 1, tmp) % 10);
		h[i].i = 0;
		h[i].v = STR_NULL;
		int64_t v;
		memcpy(&v, take(&p, end, 8, tmp), 8);
		switch (h[i].type) {
		case ES_BOOL_TRUE: h[i].i = 1; break;
		case ES_BOOL_FALSE: break;
		case ES_BYTE: h[i].i = (int8_t)v; break;
		case ES_SHORT: h[i].i = (int16_t)v; break;
		case ES_INT: h[i].i = (int32_t)v; break;
		case ES_LONG: case ES_TIMESTAMP: h[i].i = v; break;
		case ES_UUID:
			memcpy(vals[i], take(&p, end, 16, tmp), 16);
			h[i].v = str_make(vals[i], 16);
			break;
		case ES_BYTES: case ES_STRING: {
			size_t vl = (uint64_t)v % 64;
			memcpy(vals[i], take(&p, end, vl, tmp), vl);
			h[i].v = str_make(vals[i], vl);
			break;
		}
		}
	}
	struct str payload = str_make(p, (size_t)(end - p));
	struct buf b;
	buf_init(&b, 0);
	CHECK(es_encode(&b, h, nh, payload) == 0);
	struct es_message m;
	const char *why = NULL;
	CHECK(es_message_parse(b.p, b.n, &m, &why) == 0);
	CHECK(m.n_headers == nh && str_eq(m.payload, payload));
	for (size_t i = 0; i < nh; i++) {
		CHECK(str_eq(m.headers[i].name, h[i].name) && m.headers[i].type == h[i].type);
		CHECK(m.headers[i].i == h[i].i && str_eq(m.headers[i].v, h[i].v));
	}
	/* and through the incremental decoder, cut anywhere */
	struct outcome o;
	run(b.p, b.n, cut % (b.n + 1), false, 0, &o);
	CHECK(o.rc == 0 && o.t.n == 1 && o.pending == 0);
	CHECK(o.t.raw.n == b.n && memcmp(o.t.raw.p, b.p, b.n) == 0);
	done(&o);
	/* any one flipped bit is caught by a CRC (or the length checks) */
	size_t bit = cut % (b.n * 8);
	b.p[bit / 8] ^= (char)(1 << (bit % 8));
	CHECK(es_message_parse(b.p, b.n, &m, &why) != 0);
	buf_clear(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	size_t cut = (size_t)data[1] | (size_t)data[2] << 8;
	const char *in = (const char *)data + 3;
	size_t n = size - 3;
	if (data[0] & 1)
		encode_mode(in, n, cut);
	else
		raw_mode(in, n, cut % (n + 1));
	return 0;
}
