/* fuzz_openai_fmt.c — libFuzzer target for the OpenAI format translators
 * (providers/openai_fmt.c).
 *
 * Input: one byte choosing the mode and a split offset, then the bytes.
 *   request: decode (whole body, and from its top-level members: the two
 *            agree); what decodes must encode to valid JSON that decodes
 *            again;
 *   answer:  decode; what decodes must encode to valid JSON;
 *   stream:  decode cut at the offset and whole: the same events; what
 *            the encoder writes from them decodes again. */
#include <stdlib.h>

#include "core/json.h"
#include "providers/openai_fmt.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

struct rec {
	struct buf trace;               /* every event, serialised */
	struct openai_stream_enc enc;
	struct buf out;                 /* what the encoder wrote */
};

static int rec_ev(void *ctx, const struct canon_ev *ev)
{
	struct rec *r = ctx;
	int t = ev->type;
	CHECK(buf_append(&r->trace, &t, sizeof t) == 0);
	CHECK(buf_append(&r->trace, &ev->index, sizeof ev->index) == 0);
	CHECK(buf_append_str(&r->trace, ev->text) == 0);
	CHECK(buf_append_str(&r->trace, ev->id) == 0);
	CHECK(buf_append_str(&r->trace, ev->name) == 0);
	CHECK(openai_stream_enc_event(&r->enc, ev, &r->out) == 0);
	return 0;
}

static int run_stream(const char *p, size_t n, size_t cut, struct rec *r)
{
	struct openai_stream_dec d;
	struct canon_sink sink = { rec_ev, r };
	buf_init(&r->trace, 0);
	buf_init(&r->out, 0);
	openai_stream_enc_init(&r->enc, STR("m"), true);
	openai_stream_dec_init(&d);
	int rc = openai_stream_dec_feed(&d, p, cut, &sink);
	if (!rc)
		rc = openai_stream_dec_feed(&d, p + cut, n - cut, &sink);
	if (!rc)
		rc = openai_stream_dec_finish(&d, &sink);
	openai_stream_dec_clear(&d);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	int mode = data[0] % 3;
	const char *p = (const char *)data + 2;
	size_t n = size - 2, cut = n ? data[1] % (n + 1) : 0;
	struct arena *a = arena_new(0);
	char why[256];
	if (mode == 0) {
		struct canon_req c, c2;
		/* the two entry points agree: the whole body, or its members */
		struct json_member mem[64];
		size_t n_mem;
		struct json_val root;
		int rc_whole = openai_req_decode(a, str_make(p, n), &c, why, sizeof why);
		if (json_parse_top(p, n, mem, 64, &n_mem, &root, NULL) == UMB_OK && root.type == JSON_OBJECT) {
			struct canon_req cm;
			int rc_mem = openai_req_decode_members(a, mem, n_mem, &cm, why, sizeof why);
			/* a duplicate key may differ: the first wins in both */
			CHECK(rc_mem == rc_whole);
			CHECK(rc_mem || (cm.n_msgs == c.n_msgs && str_eq(cm.system, c.system)));
		}
		if (rc_whole == UMB_OK) {
			struct buf b;
			buf_init(&b, 0);
			CHECK(openai_req_encode(&c, STR("x"), &b) == UMB_OK);
			CHECK(json_parse(b.p, b.n, NULL, NULL) == UMB_OK);
			CHECK(openai_req_decode(a, buf_str(&b), &c2, why, sizeof why) == UMB_OK);
			buf_clear(&b);
		}
	} else if (mode == 1) {
		struct canon_resp r;
		if (openai_resp_decode(a, str_make(p, n), &r) == UMB_OK) {
			struct buf b;
			buf_init(&b, 0);
			CHECK(openai_resp_encode(&r, STR("x"), &b) == UMB_OK);
			CHECK(json_parse(b.p, b.n, NULL, NULL) == UMB_OK);
			buf_clear(&b);
		}
	} else {
		struct rec whole, split;
		int rc1 = run_stream(p, n, n, &whole);
		int rc2 = run_stream(p, n, cut, &split);
		CHECK(rc1 == rc2);
		CHECK(whole.trace.n == split.trace.n &&
		      (!whole.trace.n || !memcmp(whole.trace.p, split.trace.p, whole.trace.n)));
		if (rc1 == UMB_OK) {
			struct rec again;
			CHECK(run_stream(whole.out.p, whole.out.n, whole.out.n, &again) == UMB_OK);
			buf_clear(&again.trace);
			buf_clear(&again.out);
		}
		buf_clear(&whole.trace);
		buf_clear(&whole.out);
		buf_clear(&split.trace);
		buf_clear(&split.out);
	}
	arena_free(a);
	return 0;
}
