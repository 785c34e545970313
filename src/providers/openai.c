/* openai.c — the OpenAI wire format, spoken by OpenAI itself and by vLLM,
 * SGLang, TGI, llama-server and Ollama's /v1.
 *
 * The client's body is forwarded with surgical edits only (DESIGN.md:
 * parse once, never rebuild): the model name when the upstream calls the
 * model differently, and stream_options.include_usage on streams so that
 * usage is always known. */
#include <stdlib.h>

#include "core/json.h"
#include "providers/openai_wire.h"

/* One replacement of body[off, off+len) by repl; edits never overlap. */
struct body_edit {
	size_t off, len;
	struct str repl;
};

static int edit_cmp(const void *a, const void *b)
{
	const struct body_edit *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Cut the body at the (sorted, non-overlapping) edits: the pieces in
 * order are client bytes, replacement, client bytes, ... Nothing is
 * copied. */
static void body_split(struct str body, struct body_edit *ed, size_t n,
		       struct provider_request *out)
{
	qsort(ed, n, sizeof *ed, edit_cmp);
	size_t pos = 0, k = 0;
	for (size_t i = 0; i < n; i++) {
		if (ed[i].off > pos)
			out->parts[k++] = str_make(body.p + pos, ed[i].off - pos);
		if (ed[i].repl.n)
			out->parts[k++] = ed[i].repl;
		pos = ed[i].off + ed[i].len;
	}
	if (body.n > pos || k == 0)
		out->parts[k++] = str_make(body.p + pos, body.n - pos);
	out->n_parts = k;
}

static const struct json_member *member(const struct upstream_call *c, const char *key)
{
	for (size_t i = 0; i < c->n_members; i++)
		if (json_key_eq(c->members[i].key_raw, key))
			return &c->members[i];
	return NULL;
}

int openai_build_body(struct arena *a, const struct upstream_call *call,
		      const struct cfg_model *model, struct provider_request *out)
{
	if (call->dialect != DIALECT_OPENAI) {
		/* another dialect's client: encode from the canonical request */
		struct buf b;
		buf_init(&b, 0);
		int rc = openai_req_encode(call->canon, provider_upstream_name(call, model), &b);
		if (rc == UMB_OK)
			provider_body_set(a, out, &b);
		buf_clear(&b);
		return rc;
	}
	struct body_edit ed[3];
	size_t n_ed = 0;
#define OFF(ptr) ((size_t)((ptr) - call->body.p))

	/* model rewrite */
	const struct json_member *mm = member(call, "model");
	struct str want = provider_upstream_name(call, model);
	if (!mm || !str_eq(want, call->requested_model)) {
		/* a routed request may have no model member: insert one */
		struct buf q;
		buf_init(&q, 0);
		if (!mm)
			buf_append_lit(&q, "\"model\":");
		json_write_str(&q, want);
		if (!mm && call->n_members)
			buf_append_lit(&q, ",");
		size_t brace = 0;
		while (!mm && call->body.p[brace] != '{')
			brace++;
		ed[n_ed++] = mm ? (struct body_edit){ OFF(mm->val.raw.p), mm->val.raw.n,
						      str_cstr(arena_strdup_str(a, buf_str(&q))) }
				: (struct body_edit){ brace + 1, 0,
						      str_cstr(arena_strdup_str(a, buf_str(&q))) };
		buf_clear(&q);
	}

	/* streams always ask for usage */
	if (call->op == UPSTREAM_CHAT && call->stream && !call->client_wants_usage) {
		const struct json_member *so = member(call, "stream_options");
		if (!so) {
			/* insert right after the root's '{' */
			size_t brace = 0;
			while (call->body.p[brace] != '{')
				brace++;
			ed[n_ed++] = (struct body_edit){
				brace + 1, 0,
				call->n_members ? STR("\"stream_options\":{\"include_usage\":true},")
						: STR("\"stream_options\":{\"include_usage\":true}") };
		} else if (so->val.type != JSON_OBJECT) {
			ed[n_ed++] = (struct body_edit){ OFF(so->val.raw.p), so->val.raw.n,
							 STR("{\"include_usage\":true}") };
		} else {
			struct json_val iu;
			if (json_obj_get(so->val, "include_usage", &iu)) {
				ed[n_ed++] = (struct body_edit){ OFF(iu.raw.p), iu.raw.n, STR("true") };
			} else {
				struct json_iter it;
				struct str k;
				struct json_val v;
				json_iter_init(&it, so->val);
				bool empty = !json_obj_next(&it, &k, &v);
				ed[n_ed++] = (struct body_edit){
					OFF(so->val.raw.p) + 1, 0,
					empty ? STR("\"include_usage\":true") : STR("\"include_usage\":true,") };
			}
		}
	}
#undef OFF
	/* at most 3 edits: 7 pieces, within PROVIDER_MAX_PARTS */
	body_split(call->body, ed, n_ed, out);
	return UMB_OK;
}

static int openai_build(struct arena *a, const struct upstream_call *call,
			const struct cfg_model *model, const struct cfg_endpoint *ep,
			const char *request_id, struct provider_request *out)
{
	if (openai_build_body(a, call, model, out))
		return UMB_ERR;
	const char *path = call->op == UPSTREAM_EMBEDDINGS ? "/v1/embeddings" : "/v1/chat/completions";
	out->url = arena_join(a, ep->origin, path, NULL);
	size_t h = 0;
	out->headers[h++] = "Content-Type: application/json";
	out->headers[h++] = "Expect:"; /* no 100-continue round trip on big bodies */
	out->headers[h++] = arena_join(a, "x-request-id: ", request_id, NULL);
	const char *key = model->api_key ? model->api_key : model->provider->api_key;
	if (key && *key)
		out->headers[h++] = arena_join(a, "Authorization: Bearer ", key, NULL);
	out->n_headers = h;
	provider_extra_headers(a, model, out);
	return UMB_OK;
}

static void read_usage(struct json_val usage, struct provider_usage *u)
{
	struct json_val v;
	int64_t x;
	if (usage.type != JSON_OBJECT)
		return;
	u->seen = true;
	if (json_obj_get(usage, "prompt_tokens", &v) && json_get_i64(v, &x) == 0 && x >= 0)
		u->prompt_tokens = (uint64_t)x;
	if (json_obj_get(usage, "completion_tokens", &v) && json_get_i64(v, &x) == 0 && x >= 0)
		u->completion_tokens = (uint64_t)x;
	struct json_val d;
	if (json_obj_get(usage, "prompt_tokens_details", &d) && d.type == JSON_OBJECT &&
	    json_obj_get(d, "cached_tokens", &v) && json_get_i64(v, &x) == 0 && x >= 0)
		u->cached_prompt_tokens = UMB_MIN((uint64_t)x, u->prompt_tokens);
}

int openai_finish(const struct upstream_call *call, struct str body, struct provider_usage *usage)
{
	UMB_UNUSED(call);
	struct json_val root, u;
	struct json_err err;
	if (json_parse(body.p, body.n, &root, &err) || root.type != JSON_OBJECT)
		return UMB_ERR;
	if (json_obj_get(root, "usage", &u))
		read_usage(u, usage);
	return UMB_OK;
}

enum provider_event_action openai_stream_event(const struct upstream_call *call,
					       const struct sse_event *ev,
					       struct provider_usage *usage)
{
	if (!ev->has_data)
		return PROVIDER_FORWARD; /* comments, keep-alives */
	struct str d = str_trim(ev->data);
	if (str_eq(d, STR("[DONE]")))
		return PROVIDER_DONE;
	struct json_val root, v;
	struct json_err err;
	if (json_parse(d.p, d.n, &root, &err) || root.type != JSON_OBJECT)
		return PROVIDER_GARBAGE;
	bool has_usage = false, choices_empty = false;
	struct json_iter it;
	struct str key;
	json_iter_init(&it, root);
	while (json_obj_next(&it, &key, &v)) {
		if (v.type == JSON_OBJECT && json_key_eq(key, "usage")) {
			read_usage(v, usage);
			has_usage = true;
		} else if (v.type == JSON_ARRAY && json_key_eq(key, "choices")) {
			struct json_iter ci;
			struct json_val first;
			json_iter_init(&ci, v);
			choices_empty = !json_arr_next(&ci, &first);
		}
	}
	/* the usage-only chunk reaches only clients that asked for it */
	if (has_usage && choices_empty && !call->client_wants_usage)
		return PROVIDER_DROP;
	return PROVIDER_FORWARD;
}

/* ---- translation: an Anthropic client on an OpenAI-shaped upstream ---- */

int openai_decode(struct arena *a, const struct upstream_call *call, struct str body,
		  struct canon_resp *out)
{
	UMB_UNUSED(call);
	return openai_resp_decode(a, body, out);
}

void openai_stream_init(void *st, const struct upstream_call *call)
{
	UMB_UNUSED(call);
	openai_stream_dec_init(st);
}

int openai_stream_feed(void *st, const char *p, size_t n, const struct canon_sink *sink)
{
	return openai_stream_dec_feed(st, p, n, sink);
}

int openai_stream_finish(void *st, const struct canon_sink *sink)
{
	return openai_stream_dec_finish(st, sink);
}

void openai_stream_clear(void *st)
{
	openai_stream_dec_clear(st);
}

const char *openai_error_message(struct arena *a, struct str body)
{
	struct json_val root, err, msg;
	struct json_err jerr;
	if (json_parse(body.p, body.n, &root, &jerr) || root.type != JSON_OBJECT ||
	    !json_obj_get(root, "error", &err) || err.type != JSON_OBJECT ||
	    !json_obj_get(err, "message", &msg) || msg.type != JSON_STRING)
		return NULL;
	struct str m = canon_decode(a, &msg);
	return arena_strndup(a, m.p, utf8_complete_prefix(m.p, UMB_MIN(m.n, (size_t)300)));
}

static const struct provider_ops openai_ops = {
	.name = "openai",
	.native = DIALECT_OPENAI,
	.build = openai_build,
	.finish = openai_finish,
	.stream_event = openai_stream_event,
	.decode = openai_decode,
	.stream_size = sizeof(struct openai_stream_dec),
	.stream_init = openai_stream_init,
	.stream_feed = openai_stream_feed,
	.stream_finish = openai_stream_finish,
	.stream_clear = openai_stream_clear,
	.embeddings = true,
	.error_message = openai_error_message,
	.health_path = "/v1/models",
};

const struct provider_ops *provider_openai_ops(void)
{
	return &openai_ops;
}
