/* fuzz_ollama.c — libFuzzer target for Ollama's native answers
 * (providers/ollama.c): the NDJSON stream decoder, the non-stream chat
 * decoder, the /api/embed rewrite and the error message reader.
 *
 * Input: two bytes choosing a split offset, then the bytes. The stream is
 * fed whole, in two pieces and (when short) byte by byte: the three must
 * give the same events and result. Every event sequence must keep the
 * order canon.h promises; every decoded tool call's arguments and every
 * embeddings rewrite must be valid JSON. The same bytes, cut at 0x1f into
 * the texts of a canonical request (system, user text, tool arguments,
 * tool schema, tool result, image data), must encode to a valid JSON
 * /api/chat body or be refused. */
#include <stdlib.h>

#include "core/json.h"
#include "core/core.h"
#include "providers/provider.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

struct trace {
	struct buf ser;
	int n, n_tools;
	bool ended, finished;
};

static void ser(struct buf *b, char tag, struct str s)
{
	uint64_t n = s.n;
	CHECK(buf_append(b, &tag, 1) == 0);
	CHECK(buf_append(b, &n, sizeof n) == 0);
	CHECK(buf_append(b, s.p, s.n) == 0);
}

static int trace_cb(void *ctx, const struct canon_ev *ev)
{
	struct trace *t = ctx;
	CHECK((t->n == 0) == (ev->type == CEV_START)); /* START first, once */
	CHECK(!t->ended);                              /* nothing after END */
	t->n++;
	switch (ev->type) {
	case CEV_START:
		ser(&t->ser, 'S', ev->model);
		break;
	case CEV_TEXT:
		CHECK(!t->finished && ev->text.n > 0);
		CHECK(json_utf8_valid(ev->text.p, ev->text.n));
		ser(&t->ser, 'T', ev->text);
		break;
	case CEV_TOOL_START:
		CHECK(!t->finished && ev->index == t->n_tools);
		CHECK(ev->id.n > 0 && ev->name.n > 0);
		t->n_tools++;
		ser(&t->ser, 'C', ev->id);
		ser(&t->ser, 'N', ev->name);
		break;
	case CEV_TOOL_ARGS: {
		struct json_val v;
		CHECK(ev->index == t->n_tools - 1);
		CHECK(json_parse(ev->text.p, ev->text.n, &v, NULL) == 0 && v.type == JSON_OBJECT);
		ser(&t->ser, 'A', ev->text);
		break;
	}
	case CEV_FINISH:
		CHECK(!t->finished);
		CHECK((ev->finish == CANON_FIN_TOOL_CALLS) == (t->n_tools > 0) ||
		      ev->finish == CANON_FIN_LENGTH);
		t->finished = true;
		ser(&t->ser, 'F', str_make((const char *)&ev->finish, sizeof ev->finish));
		break;
	case CEV_USAGE:
		CHECK(t->finished && ev->usage.seen);
		ser(&t->ser, 'U', str_make((const char *)&ev->usage.prompt_tokens, 16));
		break;
	case CEV_END:
		CHECK(t->finished);
		t->ended = true;
		ser(&t->ser, 'E', STR(""));
		break;
	}
	return 0;
}

/* Feed in[0, n) at the cuts; returns feed/finish's result. */
static int run(const struct provider_ops *ops, const char *in, size_t n, size_t cut, bool bytewise,
	       struct trace *t)
{
	void *st = calloc(1, ops->stream_size);
	struct canon_sink sink = { trace_cb, t };
	int rc = 0;
	CHECK(st != NULL);
	memset(t, 0, sizeof *t);
	buf_init(&t->ser, 0);
	ops->stream_init(st, NULL);
	if (bytewise) {
		char *one = malloc(1); /* a view kept into an older feed would show */
		CHECK(one != NULL);
		for (size_t i = 0; i < n && !rc; i++) {
			*one = in[i];
			rc = ops->stream_feed(st, one, 1, &sink);
		}
		free(one);
	} else {
		rc = ops->stream_feed(st, in, cut, &sink);
		if (!rc)
			rc = ops->stream_feed(st, in + cut, n - cut, &sink);
	}
	if (!rc)
		rc = ops->stream_finish(st, &sink);
	CHECK(rc == 0 || rc == UMB_ERR);
	CHECK((rc == 0) == t->ended); /* success means a complete answer */
	ops->stream_clear(st);
	free(st);
	return rc;
}

static bool same(int ra, const struct trace *a, int rb, const struct trace *b)
{
	return ra == rb && a->ser.n == b->ser.n &&
	       (a->ser.n == 0 || memcmp(a->ser.p, b->ser.p, a->ser.n) == 0);
}

static void check_decode(const struct provider_ops *ops, struct arena *a, struct str in)
{
	struct canon_resp r;
	if (ops->decode(a, NULL, in, &r))
		return;
	int n_tools = 0;
	for (size_t i = 0; i < r.n_parts; i++) {
		struct json_val v;
		if (r.parts[i].type == CANON_TEXT) {
			CHECK(json_utf8_valid(r.parts[i].text.p, r.parts[i].text.n));
			continue;
		}
		CHECK(r.parts[i].type == CANON_TOOL_CALL);
		CHECK(r.parts[i].id.n && r.parts[i].name.n);
		CHECK(json_parse(r.parts[i].args.p, r.parts[i].args.n, &v, NULL) == 0 &&
		      v.type == JSON_OBJECT);
		n_tools++;
	}
	CHECK((r.finish == CANON_FIN_TOOL_CALLS) == (n_tools > 0) || r.finish == CANON_FIN_LENGTH);
}

static void check_embed(const struct provider_ops *ops, struct arena *a, struct str in)
{
	struct upstream_call call = { .op = UPSTREAM_EMBEDDINGS, .requested_model = STR("m") };
	struct canon_usage u = { 0 };
	struct buf out;
	buf_init(&out, 0);
	if (ops->embeddings_to_openai(a, &call, in, &out, &u) == 0)
		CHECK(json_parse(out.p, out.n, NULL, NULL) == 0);
	buf_clear(&out);
	const char *m = ops->error_message(a, in);
	if (m)
		CHECK(strlen(m) <= 300 && json_utf8_valid(m, strlen(m)));
}

/* The slice of in up to the next 0x1f (advancing *pos past it). */
static struct str next_field(const char *in, size_t n, size_t *pos)
{
	size_t start = *pos;
	const char *sep = start < n ? memchr(in + start, 0x1f, n - start) : NULL;
	size_t end = sep ? (size_t)(sep - in) : n;
	*pos = sep ? end + 1 : n;
	return str_make(in + start, end - start);
}

static void check_encode(const struct provider_ops *ops, struct arena *a, const char *in, size_t n)
{
	static struct cfg_provider prov = { .name = "o", .type = PROVIDER_OLLAMA };
	static struct cfg_model model = { .name = "m", .provider = &prov };
	static struct cfg_endpoint ep = { .name = "e", .origin = "http://127.0.0.1:11434" };
	size_t pos = 0;
	struct str f[6];
	for (size_t i = 0; i < 6; i++)
		f[i] = next_field(in, n, &pos);
	struct canon_part user[] = { { .type = CANON_TEXT, .text = f[1] },
				     { .type = CANON_IMAGE, .data = f[5] } };
	struct canon_part asst[] = { { .type = CANON_TOOL_CALL, .id = STR("c1"), .name = f[1],
				       .args = f[2] } };
	struct canon_part res[] = { { .type = CANON_TOOL_RESULT, .id = STR("c1"), .text = f[4] },
				    { .type = CANON_TEXT, .text = f[0] } };
	struct canon_msg msgs[] = { { CANON_USER, user, f[5].n ? 2 : 1 },
				    { CANON_ASSISTANT, asst, 1 },
				    { CANON_USER, res, 2 } };
	struct canon_tool tool = { .name = f[1], .description = f[0], .schema = f[3] };
	struct canon_req req = { .system = f[0], .msgs = msgs, .n_msgs = 3, .tools = &tool,
				 .n_tools = 1, .stop = { f[4] }, .n_stop = f[4].n ? 1 : 0 };
	struct upstream_call call = { .op = UPSTREAM_CHAT, .model = &model, .canon = &req,
				      .requested_model = STR("m"), .stream = n & 1 };
	struct provider_request out;
	memset(&out, 0, sizeof out);
	if (ops->build(a, &call, &model, &ep, "fuzz", &out))
		return;
	struct str body = provider_body_join(a, &out);
	CHECK(json_parse(body.p, body.n, NULL, NULL) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct provider_ops *ops = provider_ollama_ops();
	struct trace whole, split, bytes;
	if (size < 2)
		return 0;
	const char *in = (const char *)data + 2;
	size_t n = size - 2;
	size_t cut = ((size_t)data[0] | (size_t)data[1] << 8) % (n + 1);

	int rw = run(ops, in, n, n, false, &whole);
	int rs = run(ops, in, n, cut, false, &split);
	CHECK(same(rw, &whole, rs, &split));
	if (n <= 4096) {
		int rb = run(ops, in, n, 0, true, &bytes);
		CHECK(same(rw, &whole, rb, &bytes));
		buf_clear(&bytes.ser);
	}
	buf_clear(&whole.ser);
	buf_clear(&split.ser);

	struct arena *a = arena_new(0);
	check_decode(ops, a, str_make(in, n));
	check_embed(ops, a, str_make(in, n));
	check_encode(ops, a, in, n);
	arena_free(a);
	return 0;
}
