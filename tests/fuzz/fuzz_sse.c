/* fuzz_sse.c — libFuzzer target for the text/event-stream parser
 * (http/sse.c).
 *
 * Input: two bytes choosing a split offset, one choosing the event cap,
 * then the stream. The stream is fed whole, in two pieces and byte by
 * byte; the three must give identical event sequences, results and
 * pending counts, and the events' raw bytes plus the pending tail must be
 * the stream itself. */
#include <stdlib.h>

#include "http/sse.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

struct trace {
	struct buf ser; /* every event, serialised */
	struct buf raw; /* raw bytes of every event, concatenated */
};

static void ser_field(struct buf *b, char tag, struct str s, bool present)
{
	uint64_t n = s.n;

	CHECK(buf_append(b, &tag, 1) == 0);
	CHECK(buf_append(b, &present, 1) == 0);
	CHECK(buf_append(b, &n, sizeof(n)) == 0);
	CHECK(buf_append(b, s.p, s.n) == 0);
}

static int trace_cb(void *ctx, const struct sse_event *ev)
{
	struct trace *t = ctx;

	CHECK(ev->raw.n > 0);
	ser_field(&t->ser, 'R', ev->raw, true);
	ser_field(&t->ser, 'E', ev->event, ev->event.p != NULL);
	ser_field(&t->ser, 'D', ev->data, ev->has_data);
	ser_field(&t->ser, 'I', ev->id, ev->id.p != NULL);
	CHECK(ev->has_data || ev->data.n == 0);
	CHECK(buf_append(&t->raw, ev->raw.p, ev->raw.n) == 0);
	return 0;
}

struct outcome {
	struct trace t;
	int rc;
	size_t pending;
};

static void run(const char *in, size_t n, size_t cut, bool bytewise,
		size_t max, struct outcome *o)
{
	struct sse_parser p;

	buf_init(&o->t.ser, 0);
	buf_init(&o->t.raw, 0);
	sse_init(&p, max);
	o->rc = 0;
	if (bytewise) {
		/* one reused heap byte: a view kept into an older feed would
		 * read the wrong byte and break the comparison */
		char *one = malloc(1);

		CHECK(one != NULL);
		for (size_t i = 0; i < n && o->rc == 0; i++) {
			*one = in[i];
			o->rc = sse_feed(&p, one, 1, trace_cb, &o->t);
		}
		free(one);
	} else {
		o->rc = sse_feed(&p, in, cut, trace_cb, &o->t);
		if (o->rc == 0)
			o->rc = sse_feed(&p, in + cut, n - cut, trace_cb, &o->t);
	}
	o->pending = sse_pending(&p);
	sse_clear(&p);
}

static void done(struct outcome *o)
{
	buf_clear(&o->t.ser);
	buf_clear(&o->t.raw);
}

/* Pending bytes are compared on success only: after ETOOBIG a split feed
 * may have held part of the oversized event, a whole feed none. */
static bool same(const struct outcome *a, const struct outcome *b)
{
	return a->rc == b->rc && (a->rc != 0 || a->pending == b->pending) &&
	       a->t.ser.n == b->t.ser.n &&
	       (a->t.ser.n == 0 ||
		memcmp(a->t.ser.p, b->t.ser.p, a->t.ser.n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome whole, split, bytes;
	const char *in;
	size_t n, cut, max;

	if (size < 3)
		return 0;
	cut = (size_t)data[0] | (size_t)data[1] << 8;
	max = (size_t)data[2] * 2; /* 0: no cap */
	in = (const char *)data + 3;
	n = size - 3;
	cut %= n + 1;

	run(in, n, n, false, max, &whole);
	run(in, n, cut, false, max, &split);
	run(in, n, 0, true, max, &bytes);
	CHECK(whole.rc == 0 || whole.rc == UMB_ETOOBIG);
	CHECK(same(&whole, &split));
	CHECK(same(&whole, &bytes));
	if (whole.rc == 0) {
		/* nothing lost, nothing invented */
		CHECK(whole.t.raw.n + whole.pending == n);
		CHECK(whole.t.raw.n == 0 ||
		      memcmp(whole.t.raw.p, in, whole.t.raw.n) == 0);
	}
	done(&whole);
	done(&split);
	done(&bytes);
	return 0;
}
