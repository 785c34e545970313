/* fuzz_gemini.c — libFuzzer target for the Gemini wire format
 * (providers/gemini_fmt.c): the streamGenerateContent SSE decoder, the
 * GenerateContentResponse decoder, the error body reader, and the JSON
 * Schema rewriter the request encoder uses.
 *
 * Input: two bytes choosing a split offset, one byte of flags, then the
 * bytes. The stream is fed whole, in two pieces and byte by byte: the
 * three must give identical event sequences and results, and every
 * sequence must keep the order canon.h promises (START first, nothing but
 * USAGE after FINISH, TOOL_ARGS after their TOOL_START and valid JSON
 * objects, END last and only after FINISH). */
#include <stdlib.h>

#include "core/json.h"
#include "providers/gemini_fmt.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

struct trace {
	struct buf ser;     /* every event, serialised */
	bool started, finished, ended;
	int n_tools;
};

static void ser(struct buf *b, int tag, struct str s)
{
	uint64_t n = s.n;
	char t = (char)tag;
	CHECK(buf_append(b, &t, 1) == 0);
	CHECK(buf_append(b, &n, sizeof n) == 0);
	CHECK(buf_append(b, s.p, s.n) == 0);
}

static int trace_cb(void *ctx, const struct canon_ev *ev)
{
	struct trace *t = ctx;
	CHECK(!t->ended);
	CHECK(t->started == (ev->type != CEV_START)); /* START once, first */
	switch (ev->type) {
	case CEV_START:
		t->started = true;
		ser(&t->ser, 'S', ev->id);
		ser(&t->ser, 's', ev->model);
		break;
	case CEV_TEXT:
		CHECK(!t->finished && ev->text.n > 0);
		CHECK(json_utf8_valid(ev->text.p, ev->text.n));
		ser(&t->ser, 'T', ev->text);
		break;
	case CEV_TOOL_START:
		CHECK(!t->finished && ev->index == t->n_tools);
		CHECK(ev->id.n > 5 && !memcmp(ev->id.p, "call_", 5));
		t->n_tools++;
		ser(&t->ser, 'C', ev->name);
		break;
	case CEV_TOOL_ARGS: {
		struct json_val v;
		CHECK(!t->finished && ev->index == t->n_tools - 1);
		CHECK(json_parse(ev->text.p, ev->text.n, &v, NULL) == 0 && v.type == JSON_OBJECT);
		ser(&t->ser, 'A', ev->text);
		break;
	}
	case CEV_FINISH:
		CHECK(!t->finished);
		CHECK(ev->finish != CANON_FIN_NONE);
		t->finished = true;
		ser(&t->ser, 'F', str_make((const char *)&ev->finish, sizeof ev->finish));
		break;
	case CEV_USAGE:
		CHECK(ev->usage.seen && ev->usage.cached_prompt_tokens <= ev->usage.prompt_tokens);
		ser(&t->ser, 'U', str_make((const char *)&ev->usage.prompt_tokens, 8));
		ser(&t->ser, 'u', str_make((const char *)&ev->usage.completion_tokens, 8));
		break;
	case CEV_END:
		CHECK(t->finished);
		t->ended = true;
		ser(&t->ser, 'E', STR(""));
		break;
	}
	return 0;
}

struct outcome {
	struct trace t;
	int feed_rc, finish_rc;
};

static void run(const char *in, size_t n, size_t cut, bool bytewise, struct outcome *o)
{
	struct gemini_stream_dec d;
	struct canon_sink sink = { trace_cb, &o->t };
	memset(o, 0, sizeof *o);
	buf_init(&o->t.ser, 0);
	gemini_stream_dec_init(&d);
	if (bytewise) {
		/* one reused heap byte: a view kept into an older feed would
		 * read the wrong byte and break the comparison */
		char *one = malloc(1);
		CHECK(one != NULL);
		for (size_t i = 0; i < n && !o->feed_rc; i++) {
			*one = in[i];
			o->feed_rc = gemini_stream_dec_feed(&d, one, 1, &sink);
		}
		free(one);
	} else {
		o->feed_rc = gemini_stream_dec_feed(&d, in, cut, &sink);
		if (!o->feed_rc)
			o->feed_rc = gemini_stream_dec_feed(&d, in + cut, n - cut, &sink);
	}
	o->finish_rc = o->feed_rc ? o->feed_rc : gemini_stream_dec_finish(&d, &sink);
	CHECK(o->feed_rc == 0 || o->feed_rc == UMB_ERR);
	CHECK(o->finish_rc == 0 || o->finish_rc == UMB_ERR);
	CHECK(o->t.ended == (o->finish_rc == 0));
	gemini_stream_dec_clear(&d);
}

static bool same(const struct outcome *a, const struct outcome *b)
{
	return a->feed_rc == b->feed_rc && a->finish_rc == b->finish_rc &&
	       a->t.ser.n == b->t.ser.n &&
	       (a->t.ser.n == 0 || !memcmp(a->t.ser.p, b->t.ser.p, a->t.ser.n));
}

static void fuzz_stream(const char *in, size_t n, size_t cut)
{
	struct outcome whole, split, bytes;
	run(in, n, n, false, &whole);
	run(in, n, cut, false, &split);
	CHECK(same(&whole, &split));
	if (n <= 4096) { /* byte by byte is quadratic in the SSE buffer */
		run(in, n, 0, true, &bytes);
		CHECK(same(&whole, &bytes));
		buf_clear(&bytes.t.ser);
	}
	buf_clear(&whole.t.ser);
	buf_clear(&split.t.ser);
}

static void fuzz_answer(const char *in, size_t n)
{
	struct arena *a = arena_new(0);
	struct canon_resp r;
	if (gemini_resp_decode(a, str_make(in, n), &r) == 0) {
		CHECK(r.finish != CANON_FIN_NONE);
		CHECK(r.usage.cached_prompt_tokens <= r.usage.prompt_tokens);
		for (size_t i = 0; i < r.n_parts; i++) {
			const struct canon_part *p = &r.parts[i];
			struct json_val v;
			CHECK(p->type == CANON_TEXT || p->type == CANON_TOOL_CALL);
			if (p->type == CANON_TEXT)
				CHECK(p->text.n > 0 && json_utf8_valid(p->text.p, p->text.n));
			else
				CHECK(json_parse(p->args.p, p->args.n, &v, NULL) == 0 &&
				      v.type == JSON_OBJECT);
		}
	}
	const char *m = gemini_error_message(a, str_make(in, n));
	CHECK(!m || strlen(m) > 0);
	arena_free(a);
}

/* The input as a tool's JSON Schema, and as the texts of a conversation
 * with a tool round trip: the encoded request is always one valid JSON
 * document. */
static void fuzz_encode(const char *in, size_t n)
{
	struct buf b;
	buf_init(&b, 0);
	int rc = gemini_schema_write(str_make(in, n), &b);
	CHECK(rc == 0 || rc == UMB_AGAIN);
	if (rc == 0)
		CHECK(json_parse(b.p, b.n, NULL, NULL) == 0);
	buf_clear(&b);

	struct str s = str_make(in, n);
	struct canon_part call = { .type = CANON_TOOL_CALL, .id = STR("c1"), .name = s, .args = s };
	struct canon_part res = { .type = CANON_TOOL_RESULT, .id = STR("c1"), .text = s,
				  .is_error = n & 1 };
	struct canon_part user[] = { { .type = CANON_TEXT, .text = s },
				     { .type = CANON_IMAGE, .url = s } };
	struct canon_msg msgs[] = { { CANON_USER, user, 2 }, { CANON_ASSISTANT, &call, 1 },
				    { CANON_USER, &res, 1 } };
	struct canon_tool tool = { .name = s, .description = s, .schema = s };
	struct canon_req req = { .system = s, .msgs = msgs, .n_msgs = 3, .tools = &tool,
				 .n_tools = 1, .tool_choice = CANON_TC_TOOL, .tool_choice_name = s,
				 .stop = { s }, .n_stop = 1 };
	char why[160] = "";
	buf_init(&b, 0);
	rc = gemini_req_encode(&req, &b, why, sizeof why);
	if (rc == 0) {
		CHECK(json_parse(b.p, b.n, NULL, NULL) == 0);
	} else { /* only a nameless call can make its result unencodable */
		CHECK(rc == UMB_ERR && b.n == 0 && *why && call.name.n == 0);
	}
	buf_clear(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	size_t cut = (size_t)data[0] | (size_t)data[1] << 8;
	uint8_t flags = data[2];
	const char *in = (const char *)data + 3;
	size_t n = size - 3;
	cut %= n + 1;
	log_min_level = LOG_ERROR + 1;

	fuzz_stream(in, n, cut);
	if (flags & 1)
		fuzz_answer(in, n);
	if (flags & 2)
		fuzz_encode(in, n);
	return 0;
}
