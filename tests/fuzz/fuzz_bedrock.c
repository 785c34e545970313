/* fuzz_bedrock.c — libFuzzer target for the Bedrock wire format
 * (providers/bedrock.c): the Converse answer decoder, the ConverseStream
 * translator and the request encoder.
 *
 * Input: one mode byte, two bytes choosing a split offset, then data.
 *  mode 0: data is a Converse answer body; decode must not crash, and
 *    what it gives must be well formed (tool args are JSON texts).
 *  mode 1: data is a raw event stream, fed whole, in two pieces and byte
 *    by byte: the same canon events and results each time, in the order
 *    canon.h promises.
 *  mode 2: data is lines "TYPE PAYLOAD" ("!TYPE" for an exception),
 *    encoded into a valid event stream (real CRCs, so the translator
 *    itself is reached) and checked as in mode 1.
 *  mode 3: data drives a canonical request; the built body must be valid
 *    JSON whenever build succeeds. */
#include <stdlib.h>

#include "core/json.h"
#include "providers/eventstream.h"
#include "providers/provider.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

/* ---- mode 0 ---- */

static void decode_mode(const char *in, size_t n)
{
	struct arena *a = arena_new(0);
	struct canon_resp r;
	struct upstream_call call = { .op = UPSTREAM_CHAT };
	if (provider_bedrock_ops()->decode(a, &call, str_make(in, n), &r) == 0) {
		for (size_t i = 0; i < r.n_parts; i++) {
			const struct canon_part *p = &r.parts[i];
			CHECK(p->type == CANON_TEXT || p->type == CANON_TOOL_CALL);
			if (p->type == CANON_TOOL_CALL)
				CHECK(json_parse(p->args.p, p->args.n, NULL, NULL) == 0);
		}
		CHECK(r.usage.cached_prompt_tokens + r.usage.cache_write_tokens <=
		      r.usage.prompt_tokens);
	}
	arena_free(a);
}

/* ---- modes 1 and 2: a sink that checks canon's order ---- */

struct order {
	struct buf ser;
	bool started, finished, ended;
	int tools;
};

static int order_emit(void *ctx, const struct canon_ev *ev)
{
	struct order *o = ctx;
	CHECK(!o->ended);
	CHECK(o->started == (ev->type != CEV_START));
	switch (ev->type) {
	case CEV_START:
		o->started = true;
		break;
	case CEV_TEXT:
		CHECK(!o->finished && ev->text.n > 0);
		break;
	case CEV_TOOL_START:
		CHECK(!o->finished && ev->index == o->tools);
		o->tools++;
		break;
	case CEV_TOOL_ARGS:
		CHECK(!o->finished && ev->index >= 0 && ev->index < o->tools && ev->text.n > 0);
		break;
	case CEV_FINISH:
		CHECK(!o->finished);
		o->finished = true;
		break;
	case CEV_USAGE:
		break;
	case CEV_END:
		CHECK(o->finished);
		o->ended = true;
		break;
	}
	uint64_t t = (uint64_t)ev->type, k = ev->text.n + ev->id.n + ev->name.n;
	CHECK(buf_append(&o->ser, &t, sizeof t) == 0);
	CHECK(buf_append(&o->ser, &k, sizeof k) == 0);
	CHECK(buf_append_str(&o->ser, ev->text) == 0);
	CHECK(buf_append_str(&o->ser, ev->id) == 0);
	CHECK(buf_append_str(&o->ser, ev->name) == 0);
	CHECK(buf_append(&o->ser, &ev->usage, sizeof ev->usage) == 0);
	return 0;
}

struct outcome {
	struct order o;
	int feed_rc, finish_rc;
};

static void run(const char *in, size_t n, size_t cut, bool bytewise, struct outcome *out)
{
	const struct provider_ops *ops = provider_bedrock_ops();
	void *st = calloc(1, ops->stream_size);
	CHECK(st != NULL);
	struct upstream_call call = { .op = UPSTREAM_CHAT, .stream = true };
	memset(out, 0, sizeof *out);
	buf_init(&out->o.ser, 0);
	struct canon_sink sink = { order_emit, &out->o };
	ops->stream_init(st, &call);
	if (bytewise) {
		char *one = malloc(1);
		CHECK(one != NULL);
		for (size_t i = 0; i < n && out->feed_rc == 0; i++) {
			*one = in[i];
			out->feed_rc = ops->stream_feed(st, one, 1, &sink);
		}
		free(one);
	} else {
		out->feed_rc = ops->stream_feed(st, in, cut, &sink);
		if (out->feed_rc == 0)
			out->feed_rc = ops->stream_feed(st, in + cut, n - cut, &sink);
	}
	out->finish_rc = out->feed_rc ? 0 : ops->stream_finish(st, &sink);
	/* finish succeeds exactly when END went out */
	CHECK(out->feed_rc != 0 || (out->finish_rc == 0) == out->o.ended);
	ops->stream_clear(st);
	free(st);
}

static void stream_check(const char *in, size_t n, size_t cut)
{
	struct outcome whole, split, bytes;
	run(in, n, n, false, &whole);
	run(in, n, cut % (n + 1), false, &split);
	run(in, n, 0, true, &bytes);
	const struct outcome *o[2] = { &split, &bytes };
	for (int i = 0; i < 2; i++) {
		CHECK(o[i]->feed_rc == whole.feed_rc && o[i]->finish_rc == whole.finish_rc);
		CHECK(o[i]->o.ser.n == whole.o.ser.n &&
		      (whole.o.ser.n == 0 || !memcmp(o[i]->o.ser.p, whole.o.ser.p, whole.o.ser.n)));
	}
	buf_clear(&whole.o.ser);
	buf_clear(&split.o.ser);
	buf_clear(&bytes.o.ser);
}

static void structured_mode(const char *in, size_t n, size_t cut)
{
	struct buf s;
	buf_init(&s, 0);
	const char *p = in, *end = in + n;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *sp = memchr(p, ' ', (size_t)(le - p));
		struct str type = str_make(p, sp ? (size_t)(sp - p) : (size_t)(le - p));
		struct str payload = sp ? str_make(sp + 1, (size_t)(le - sp - 1)) : STR("");
		bool exc = type.n && type.p[0] == '!';
		if (exc)
			type = str_make(type.p + 1, type.n - 1);
		struct es_header h[3] = {
			{ .name = exc ? STR(":exception-type") : STR(":event-type"), .type = ES_STRING,
			  .v = type },
			{ .name = STR(":content-type"), .type = ES_STRING, .v = STR("application/json") },
			{ .name = STR(":message-type"), .type = ES_STRING,
			  .v = exc ? STR("exception") : STR("event") },
		};
		if (type.n && type.n < 256)
			es_encode(&s, h, 3, payload);
		p = nl ? nl + 1 : end;
	}
	stream_check(s.p ? s.p : "", s.n, cut);
	buf_clear(&s);
}

/* ---- mode 3: a canonical request from bytes ---- */

struct reader {
	const char *p, *end;
};

static unsigned byte(struct reader *r)
{
	return r->p < r->end ? (unsigned char)*r->p++ : 0;
}

static struct str slice(struct reader *r)
{
	size_t want = byte(r) % 24, have = (size_t)(r->end - r->p);
	struct str s = str_make(r->p, want < have ? want : have);
	r->p += s.n;
	return s;
}

static void encode_mode(const char *in, size_t n)
{
	struct reader r = { in, in + n };
	struct canon_msg msgs[6];
	struct canon_part parts[6][4];
	struct canon_tool tools[3];
	struct canon_req req = { 0 };
	req.n_msgs = byte(&r) % 7;
	for (size_t i = 0; i < req.n_msgs; i++) {
		msgs[i].role = byte(&r) & 1 ? CANON_ASSISTANT : CANON_USER;
		msgs[i].n_parts = byte(&r) % 5;
		msgs[i].parts = parts[i];
		for (size_t j = 0; j < msgs[i].n_parts; j++) {
			struct canon_part *p = &parts[i][j];
			memset(p, 0, sizeof *p);
			p->type = (enum canon_part_type)(byte(&r) % 4);
			p->text = slice(&r);
			p->id = slice(&r);
			p->name = slice(&r);
			p->args = slice(&r);
			p->media_type = byte(&r) & 1 ? STR("image/png") : slice(&r);
			p->data = slice(&r);
			p->url = byte(&r) & 1 ? STR("s3://b/k.gif") : slice(&r);
			p->is_error = byte(&r) & 1;
		}
	}
	req.msgs = msgs;
	req.n_tools = byte(&r) % 4;
	for (size_t i = 0; i < req.n_tools; i++)
		tools[i] = (struct canon_tool){ slice(&r), slice(&r), slice(&r) };
	req.tools = tools;
	req.tool_choice = (enum canon_tool_choice)(byte(&r) % 5);
	req.tool_choice_name = slice(&r);
	req.system = slice(&r);
	req.max_tokens = byte(&r);
	req.has_temperature = byte(&r) & 1;
	req.temperature = byte(&r) / 100.0;
	req.has_top_k = byte(&r) & 1;
	req.top_k = byte(&r);
	req.n_stop = byte(&r) % 3;
	for (size_t i = 0; i < req.n_stop; i++)
		req.stop[i] = slice(&r);

	struct cfg_provider prov = { .name = "fz", .type = PROVIDER_BEDROCK, .region = "us-east-1",
				     .access_key_id = "AKIDEXAMPLE", .secret_access_key = "s" };
	struct cfg_model model = { .name = "m", .provider = &prov, .upstream_model = "a.b:0" };
	struct cfg_endpoint ep = { .name = "fz", .scheme = SCHEME_HTTPS,
				   .origin = "https://bedrock-runtime.us-east-1.amazonaws.com" };
	struct upstream_call call = { .op = UPSTREAM_CHAT, .model = &model, .canon = &req,
				      .stream = byte(&r) & 1 };
	struct provider_request out = { 0 };
	struct arena *a = arena_new(0);
	if (provider_bedrock_ops()->build(a, &call, &model, &ep, "id", &out) == 0) {
		struct str body = provider_body_join(a, &out);
		struct json_val root;
		CHECK(json_parse(body.p, body.n, &root, NULL) == 0 && root.type == JSON_OBJECT);
		CHECK(out.n_headers <= UMB_ARRAY_LEN(out.headers));
	}
	arena_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	log_min_level = LOG_ERROR; /* malformed input is logged at warn */
	size_t cut = (size_t)data[1] | (size_t)data[2] << 8;
	const char *in = (const char *)data + 3;
	size_t n = size - 3;
	switch (data[0] % 4) {
	case 0:
		decode_mode(in, n);
		break;
	case 1:
		stream_check(in, n, cut);
		break;
	case 2:
		structured_mode(in, n, cut);
		break;
	default:
		encode_mode(in, n);
		break;
	}
	return 0;
}
