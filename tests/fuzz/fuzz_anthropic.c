/* fuzz_anthropic.c — libFuzzer target for the Anthropic Messages format
 * (providers/anthropic_fmt.c).
 *
 * Input: one byte choosing what the rest is read as, two bytes choosing a
 * split offset, then the bytes:
 *   - as a request body: anthropic_req_decode; when accepted, the
 *     canonical form is encoded (anthropic_req_encode), the encoding must
 *     be valid JSON and decode again;
 *   - as an answer: anthropic_resp_decode; when accepted, encoded back
 *     (anthropic_resp_encode) as valid JSON, and anthropic_usage;
 *   - as an SSE stream: decoded whole, in two pieces cut at the offset and
 *     byte by byte; the three must give the same events and results; the
 *     events are then fed to the stream encoder, whose output must decode
 *     back without error when the stream was complete.
 * Every run does all three, so each input exercises every parser. */
#include <stdlib.h>

#include "core/json.h"
#include "providers/anthropic_fmt.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

static void fuzz_request(const char *in, size_t n)
{
	struct arena *a = arena_new(0);
	struct canon_req r, again;
	char why[256];
	if (anthropic_req_decode(a, str_make(in, n), &r, why, sizeof why) == UMB_OK) {
		struct buf b;
		buf_init(&b, 0);
		int rc = anthropic_req_encode(&r, STR("fuzz-model"), &b);
		/* a tool_use input is an object by then: encoding cannot fail */
		CHECK(rc == UMB_OK);
		CHECK(json_parse(b.p, b.n, NULL, NULL) == UMB_OK);
		rc = anthropic_req_decode(a, buf_str(&b), &again, why, sizeof why);
		/* merging turns cannot make a valid request invalid; only a
		 * request whose every message was empty (or thinking only)
		 * encodes to no message at all */
		CHECK(rc == UMB_OK || strstr(why, "messages: at least one message"));
		CHECK(rc != UMB_OK || (again.n_tools == r.n_tools && again.max_tokens == r.max_tokens));
		buf_clear(&b);
	} else {
		CHECK(why[0] != 0); /* every refusal says why */
	}
	arena_free(a);
}

static void fuzz_answer(const char *in, size_t n)
{
	struct arena *a = arena_new(0);
	struct canon_resp r;
	struct canon_usage u = { 0 };
	if (anthropic_resp_decode(a, str_make(in, n), &r) == UMB_OK) {
		struct buf b;
		buf_init(&b, 0);
		/* tool inputs are objects: encoding succeeds */
		CHECK(anthropic_resp_encode(&r, STR("m"), &b) == UMB_OK);
		CHECK(json_parse(b.p, b.n, NULL, NULL) == UMB_OK);
		buf_clear(&b);
	}
	anthropic_usage(str_make(in, n), &u);
	CHECK(u.cached_prompt_tokens <= u.prompt_tokens || u.prompt_tokens == UINT64_MAX);
	arena_free(a);
}

/* The events of one decoding, serialised, and re-encoded as SSE. */
struct trace {
	struct buf ser;
	struct buf sse;
	struct anthropic_stream_enc *enc;
	int enc_rc;
};

static int trace_emit(void *ctx, const struct canon_ev *ev)
{
	struct trace *t = ctx;
	uint32_t k[2] = { (uint32_t)ev->type, (uint32_t)ev->index };
	CHECK(buf_append(&t->ser, k, sizeof k) == 0);
	const struct str *f[] = { &ev->id, &ev->model, &ev->name, &ev->text, &ev->stop_sequence };
	for (size_t i = 0; i < 5; i++) {
		uint64_t n = f[i]->n;
		CHECK(buf_append(&t->ser, &n, sizeof n) == 0);
		if (n)
			CHECK(buf_append(&t->ser, f[i]->p, n) == 0);
	}
	CHECK(buf_append(&t->ser, &ev->usage, sizeof ev->usage) == 0);
	if (ev->type == CEV_TEXT || ev->type == CEV_TOOL_ARGS)
		CHECK(ev->text.n > 0 && json_utf8_valid(ev->text.p, ev->text.n));
	if (t->enc && !t->enc_rc)
		t->enc_rc = anthropic_stream_enc_event(t->enc, ev, &t->sse);
	return 0;
}

static int run_stream(const char *in, size_t n, size_t cut, bool bytewise, struct trace *t)
{
	struct anthropic_stream_dec d;
	struct canon_sink sink = { trace_emit, t };
	int rc = 0;
	anthropic_stream_dec_init(&d);
	if (bytewise) {
		char *one = malloc(1); /* a view kept into an old feed reads the wrong byte */
		CHECK(one != NULL);
		for (size_t i = 0; i < n && !rc; i++) {
			*one = in[i];
			rc = anthropic_stream_dec_feed(&d, one, 1, &sink);
		}
		free(one);
	} else {
		rc = anthropic_stream_dec_feed(&d, in, cut, &sink);
		if (!rc)
			rc = anthropic_stream_dec_feed(&d, in + cut, n - cut, &sink);
	}
	if (!rc)
		rc = anthropic_stream_dec_finish(&d, &sink);
	anthropic_stream_dec_clear(&d);
	return rc;
}

static int count_emit(void *ctx, const struct canon_ev *ev)
{
	UMB_UNUSED(ev);
	++*(int *)ctx;
	return 0;
}

static void fuzz_stream(const char *in, size_t n, size_t cut)
{
	struct trace whole = { 0 }, split = { 0 }, bytes = { 0 };
	buf_init(&whole.ser, 0);
	buf_init(&whole.sse, 0);
	buf_init(&split.ser, 0);
	buf_init(&bytes.ser, 0);
	whole.enc = malloc(sizeof *whole.enc);
	CHECK(whole.enc != NULL);
	anthropic_stream_enc_init(whole.enc, STR("m"));

	int rw = run_stream(in, n, n, false, &whole);
	int rs = run_stream(in, n, cut, false, &split);
	int rb = run_stream(in, n, 0, true, &bytes);
	CHECK(rw == UMB_OK || rw == UMB_ERR);
	CHECK(rw == rs && rw == rb);
	CHECK(whole.ser.n == split.ser.n && whole.ser.n == bytes.ser.n);
	CHECK(whole.ser.n == 0 || (!memcmp(whole.ser.p, split.ser.p, whole.ser.n) &&
				   !memcmp(whole.ser.p, bytes.ser.p, whole.ser.n)));

	/* what we would send an Anthropic client reads back cleanly */
	if (rw == UMB_OK && whole.enc_rc == UMB_OK) {
		struct anthropic_stream_dec d;
		int count = 0;
		struct canon_sink sink = { count_emit, &count };
		anthropic_stream_dec_init(&d);
		CHECK(anthropic_stream_dec_feed(&d, whole.sse.p, whole.sse.n, &sink) == UMB_OK);
		CHECK(anthropic_stream_dec_finish(&d, &sink) == UMB_OK);
		anthropic_stream_dec_clear(&d);
	}
	anthropic_stream_enc_clear(whole.enc);
	free(whole.enc);
	buf_clear(&whole.ser);
	buf_clear(&whole.sse);
	buf_clear(&split.ser);
	buf_clear(&bytes.ser);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t cut = (size_t)data[0] | (size_t)data[1] << 8;
	const char *in = (const char *)data + 2;
	size_t n = size - 2;
	cut %= n + 1;
	/* a private copy of exactly n bytes: ASan sees any overread */
	char *copy = malloc(n ? n : 1);
	CHECK(copy != NULL);
	memcpy(copy, in, n);
	fuzz_request(copy, n);
	fuzz_answer(copy, n);
	fuzz_stream(copy, n, cut);
	free(copy);
	return 0;
}
