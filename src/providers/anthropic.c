/* anthropic.c — the Anthropic Messages API as an upstream (POST
 * {origin}/v1/messages, x-api-key + anthropic-version).
 *
 * An Anthropic client's body passes through with one surgical edit, the
 * model name (DESIGN.md: parse once, never rebuild), and its answer comes
 * back as it is: finish and stream_event only read usage. Any other
 * client's request is encoded from the canonical form and the answer is
 * decoded back into it (providers/anthropic_fmt.c). */
#include <strings.h>

#include "core/json.h"
#include "providers/anthropic_fmt.h"
#include "providers/provider.h"

/* The API version every request states; 2023-06-01 is the current one
 * (tool use, streaming and prompt caching all work on it). */
#define ANTHROPIC_VERSION "2023-06-01"

static const struct json_member *native_member(const struct upstream_call *c, const char *key)
{
	for (size_t i = 0; i < c->n_native_members; i++)
		if (json_key_eq(c->native_members[i].key_raw, key))
			return &c->native_members[i];
	return NULL;
}

/* The client's own Messages body with only the model's value replaced
 * (inserted after the root's '{' when absent: a routed request may have
 * none). Unchanged bytes are never copied: the body goes as up to three
 * pieces. */
static int body_passthrough(struct arena *a, const struct upstream_call *call, struct str want,
			    struct provider_request *out)
{
	struct str body = call->native_body;
	const struct json_member *mm = native_member(call, "model");
	if (mm && mm->val.type == JSON_STRING && mm->val.raw.n >= 2 &&
	    str_eq(str_make(mm->val.raw.p + 1, mm->val.raw.n - 2), want) &&
	    !memchr(want.p, '\\', want.n) && !memchr(want.p, '"', want.n)) {
		out->parts[0] = body; /* already the upstream's name */
		out->n_parts = 1;
		return UMB_OK;
	}
	struct buf q;
	buf_init(&q, 0);
	if (!mm)
		buf_append_lit(&q, "\"model\":");
	json_write_str(&q, want);
	if (!mm && call->n_native_members)
		buf_append_lit(&q, ",");
	struct str repl = str_make(arena_strndup(a, q.p ? q.p : "", q.n), q.n);
	buf_clear(&q);
	size_t off, len = 0;
	if (mm) {
		off = (size_t)(mm->val.raw.p - body.p);
		len = mm->val.raw.n;
	} else {
		const char *brace = memchr(body.p, '{', body.n);
		if (!brace)
			return UMB_ERR; /* not the object the ingress parsed */
		off = (size_t)(brace - body.p) + 1;
	}
	size_t k = 0;
	out->parts[k++] = str_make(body.p, off);
	out->parts[k++] = repl;
	if (body.n > off + len)
		out->parts[k++] = str_make(body.p + off + len, body.n - off - len);
	out->n_parts = k;
	return UMB_OK;
}

/* The body encoded from the canonical request, streaming as the client
 * asked (an internal call never streams). */
static int body_translated(struct arena *a, const struct upstream_call *call, struct str want,
			   struct provider_request *out)
{
	if (!call->canon)
		return UMB_ERR;
	struct canon_req req = *call->canon;
	req.stream = call->stream;
	struct buf b;
	buf_init(&b, 0);
	int rc = anthropic_req_encode(&req, want, &b);
	if (rc == UMB_OK)
		provider_body_set(a, out, &b);
	buf_clear(&b);
	return rc ? UMB_ERR : UMB_OK;
}

static bool has_extra_header(const struct cfg_model *model, const char *name)
{
	for (size_t i = 0; i < model->n_headers; i++)
		if (!strcasecmp(model->headers[i].name, name))
			return true;
	for (size_t i = 0; i < model->provider->n_headers; i++)
		if (!strcasecmp(model->provider->headers[i].name, name))
			return true;
	return false;
}

static int anthropic_build(struct arena *a, const struct upstream_call *call,
			   const struct cfg_model *model, const struct cfg_endpoint *ep,
			   const char *request_id, struct provider_request *out)
{
	if (call->op != UPSTREAM_CHAT)
		return UMB_ERR; /* no embeddings API */
	struct str want = provider_upstream_name(call, model);
	int rc = call->dialect == DIALECT_ANTHROPIC && call->native_body.p
			 ? body_passthrough(a, call, want, out)
			 : body_translated(a, call, want, out);
	if (rc)
		return UMB_ERR;

	out->url = arena_join(a, ep->origin, "/v1/messages", NULL);
	size_t h = 0;
	out->headers[h++] = "Content-Type: application/json";
	out->headers[h++] = "Expect:"; /* no 100-continue round trip on big bodies */
	out->headers[h++] = arena_join(a, "x-request-id: ", request_id, NULL);
	const char *key = model->api_key ? model->api_key : model->provider->api_key;
	if (key && *key)
		out->headers[h++] = arena_join(a, "x-api-key: ", key, NULL);
	/* a configured anthropic-version (say, for a beta) replaces ours */
	if (!has_extra_header(model, "anthropic-version"))
		out->headers[h++] = "anthropic-version: " ANTHROPIC_VERSION;
	/* an Anthropic client's betas (prompt caching, long context...) go to
	 * Anthropic as asked, unless the config pins its own */
	if (call->anthropic_beta.n && !has_extra_header(model, "anthropic-beta"))
		out->headers[h++] = arena_join(a, "anthropic-beta: ",
					       arena_strdup_str(a, call->anthropic_beta), NULL);
	out->n_headers = h;
	provider_extra_headers(a, model, out);
	return UMB_OK;
}

/* ---- pass-through ---- */

static int anthropic_finish(const struct upstream_call *call, struct str body,
			    struct provider_usage *usage)
{
	UMB_UNUSED(call);
	struct json_val root, t;
	if (json_parse(body.p, body.n, &root, NULL) || root.type != JSON_OBJECT ||
	    !json_obj_get(root, "type", &t) || !json_str_eq(t, "message"))
		return UMB_ERR;
	return anthropic_usage(body, usage);
}

/* Every event goes to the client as it came; message_stop ends the
 * stream. An error event (overloaded_error mid-stream) fails the attempt
 * instead: before the first byte the chain can still fail over, after it
 * the gateway writes the client's `event: error` itself. */
static enum provider_event_action anthropic_stream_event(const struct upstream_call *call,
							 const struct sse_event *ev,
							 struct provider_usage *usage)
{
	UMB_UNUSED(call);
	struct json_val root, t;
	if (!ev->has_data)
		return PROVIDER_FORWARD; /* comments, keep-alives */
	if (str_eq(ev->event, STR("error")))
		return PROVIDER_GARBAGE;
	if (json_parse(ev->data.p, ev->data.n, &root, NULL) || root.type != JSON_OBJECT)
		return PROVIDER_GARBAGE;
	json_obj_get(root, "type", &t);
	if (json_str_eq(t, "error"))
		return PROVIDER_GARBAGE;
	if (json_str_eq(t, "message_stop"))
		return PROVIDER_DONE;
	if (json_str_eq(t, "message_start") || json_str_eq(t, "message_delta"))
		anthropic_usage(ev->data, usage);
	return PROVIDER_FORWARD;
}

/* ---- translation ---- */

static int anthropic_decode(struct arena *a, const struct upstream_call *call, struct str body,
			    struct canon_resp *out)
{
	UMB_UNUSED(call);
	return anthropic_resp_decode(a, body, out);
}

static void stream_init(void *st, const struct upstream_call *call)
{
	UMB_UNUSED(call);
	anthropic_stream_dec_init(st);
}

static int stream_feed(void *st, const char *p, size_t n, const struct canon_sink *sink)
{
	return anthropic_stream_dec_feed(st, p, n, sink);
}

static int stream_finish(void *st, const struct canon_sink *sink)
{
	return anthropic_stream_dec_finish(st, sink);
}

static void stream_clear(void *st)
{
	anthropic_stream_dec_clear(st);
}

/* {"type":"error","error":{"type":"...","message":"..."}} → the message */
static const char *anthropic_error_message(struct arena *a, struct str body)
{
	struct json_val root, err, msg;
	struct buf b;
	if (json_parse(body.p, body.n, &root, NULL) || !json_obj_get(root, "error", &err) ||
	    !json_obj_get(err, "message", &msg) || msg.type != JSON_STRING)
		return NULL;
	buf_init(&b, 0);
	const char *s = NULL;
	if (json_str_decode(msg, &b) == UMB_OK)
		s = arena_strndup(a, b.p ? b.p : "", b.n);
	buf_clear(&b);
	return s;
}

static const struct provider_ops anthropic_ops = {
	.name = "anthropic",
	.native = DIALECT_ANTHROPIC,
	.build = anthropic_build,
	.finish = anthropic_finish,
	.stream_event = anthropic_stream_event,
	.decode = anthropic_decode,
	.stream_size = sizeof(struct anthropic_stream_dec),
	.stream_init = stream_init,
	.stream_feed = stream_feed,
	.stream_finish = stream_finish,
	.stream_clear = stream_clear,
	.embeddings = false,
	.error_message = anthropic_error_message,
	.health_path = NULL, /* the API has no free endpoint to probe */
};

const struct provider_ops *provider_anthropic_ops(void)
{
	return &anthropic_ops;
}
