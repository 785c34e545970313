/* ollama.c — Ollama's native API (ollama/ollama docs/api.md):
 *
 *   POST /api/chat   {model, messages, tools, stream, options}
 *                    → one JSON answer, or with stream:true NDJSON
 *                    (application/x-ndjson): one object per line, message
 *                    deltas, the last one with done:true, done_reason and
 *                    the token counts; an {"error":"..."} line on failure.
 *   POST /api/embed  {model, input} → {model, embeddings, prompt_eval_count}
 *
 * Nothing passes through (native = -1): the chat body is encoded from the
 * canonical request, answers are decoded into canon_resp / canon_ev, and
 * embeddings answers are rewritten as OpenAI's.
 *
 * What Ollama cannot express is dropped or approximated, never faked:
 * tool_choice none sends no tools, tool_choice naming one tool sends only
 * that tool, "any" cannot be enforced (all tools are sent); image URLs are
 * refused (Ollama takes base64 data only); a tool result's is_error has no
 * field and the text goes as it is. Ollama's tool calls carry no ids in
 * most versions: ids are made from a hash of the answer's created_at, the
 * call's index, name and arguments ("call_" + 16 hex), so they are
 * deterministic for one answer and distinct across turns. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "core/json.h"
#include "providers/provider.h"

/* A stream line longer than this is garbage (a sane delta is tiny). */
#define OLLAMA_MAX_LINE (8u << 20)
/* Tool calls in one answer; more is garbage. */
#define OLLAMA_MAX_TOOLS 1024

/* ------------------------------------------------------------------ */
/* JSON writing with a sticky error                                    */
/* ------------------------------------------------------------------ */

/* The body being written: every helper is a no-op after the first
 * failure, which is reported once at the end. */
struct jw {
	struct buf *b;
	int rc;
};

static void jw_raw(struct jw *w, struct str s)
{
	if (!w->rc)
		w->rc = buf_append_str(w->b, s);
}

#define jw_lit(w, lit) jw_raw((w), STR(lit))

/* s quoted; an empty view may have no pointer at all (STR_NULL). */
static void jw_str(struct jw *w, struct str s)
{
	if (!w->rc)
		w->rc = json_write_str_lossy(w->b, s.p ? s : STR(""));
}

static void jw_i64(struct jw *w, int64_t v)
{
	if (!w->rc)
		w->rc = buf_printf(w->b, "%lld", (long long)v);
}

/* The shortest %g spelling that reads back as the same double (0.7 is
 * sent as 0.7, not 0.69999999999999996). */
static void jw_double(struct jw *w, double d)
{
	char tmp[40];
	if (w->rc)
		return;
	if (!isfinite(d)) {
		w->rc = UMB_ERR;
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	jw_raw(w, str_cstr(tmp));
}

/* ------------------------------------------------------------------ */
/* Request: canonical → /api/chat body                                 */
/* ------------------------------------------------------------------ */

/* JSON's insignificant whitespace (RFC 8259 ws). */
static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Why a request cannot be encoded, for the log (static strings). */
struct enc_err {
	const char *why;
};

/* A tool call's arguments as Ollama wants them: a JSON object. The
 * canonical form holds the JSON text the model produced; "" (no
 * arguments) becomes {}. Anything but an object cannot be sent (Ollama
 * answers 400), as Ollama's own OpenAI layer decides too. */
static int args_object(struct str args, struct str *out)
{
	struct str t = args;
	while (t.n && is_space(t.p[0])) {
		t.p++;
		t.n--;
	}
	while (t.n && is_space(t.p[t.n - 1]))
		t.n--;
	if (!t.n) {
		*out = STR("{}");
		return UMB_OK;
	}
	struct json_val v;
	if (json_parse(t.p, t.n, &v, NULL) || v.type != JSON_OBJECT)
		return UMB_ERR;
	*out = t;
	return UMB_OK;
}

/* The function name a tool result answers: the part's own, else the
 * latest earlier TOOL_CALL with the same id (the request is const here,
 * so canon_fill_result_names cannot be used). Empty when unknown. */
static struct str result_name(const struct canon_req *req, size_t msg_i,
			      const struct canon_part *res)
{
	if (res->name.n || !res->id.n)
		return res->name;
	for (size_t k = msg_i + 1; k-- > 0;) {
		const struct canon_msg *m = &req->msgs[k];
		for (size_t q = m->n_parts; q-- > 0;)
			if (m->parts[q].type == CANON_TOOL_CALL && str_eq(m->parts[q].id, res->id))
				return m->parts[q].name;
	}
	return STR("");
}

/* The base64 payload of an image part. Ollama takes raw base64 only: an
 * http(s) URL cannot be sent, a data: URL gives its payload. */
static int image_data(const struct canon_part *p, struct str *out)
{
	if (p->data.n) {
		*out = p->data;
		return UMB_OK;
	}
	static const char b64[] = ";base64,";
	if (p->url.n > 5 && !strncasecmp(p->url.p, "data:", 5)) {
		const char *m = memmem(p->url.p, p->url.n, b64, sizeof b64 - 1);
		if (m) {
			const char *d = m + sizeof b64 - 1;
			*out = str_make(d, (size_t)(p->url.p + p->url.n - d));
			return UMB_OK;
		}
	}
	return UMB_ERR;
}

/* One message: ,{"role":ROLE,"content":TEXT[,"images":[...]] for the
 * parts [from, to) that are text or images (text joined by "\n"). The
 * caller closes the object after adding its own members. */
static int msg_open(struct jw *w, bool *first, const char *role, const struct canon_part *parts,
		    size_t from, size_t to, struct enc_err *e)
{
	jw_raw(w, *first ? STR("{\"role\":\"") : STR(",{\"role\":\""));
	*first = false;
	jw_raw(w, str_cstr(role));
	jw_lit(w, "\",\"content\":");
	/* the text parts as one string: write them into a scratch buffer
	 * first so that one JSON string is produced */
	struct buf t;
	buf_init(&t, 0);
	bool any_text = false;
	size_t n_img = 0;
	for (size_t i = from; i < to; i++) {
		if (parts[i].type == CANON_TEXT) {
			if (any_text && buf_append_lit(&t, "\n"))
				w->rc = UMB_ENOMEM;
			if (buf_append_str(&t, parts[i].text))
				w->rc = UMB_ENOMEM;
			any_text = true;
		} else if (parts[i].type == CANON_IMAGE) {
			n_img++;
		}
	}
	jw_str(w, buf_str(&t));
	buf_clear(&t);
	if (!n_img)
		return UMB_OK;
	jw_lit(w, ",\"images\":[");
	bool f = true;
	for (size_t i = from; i < to; i++) {
		struct str d;
		if (parts[i].type != CANON_IMAGE)
			continue;
		if (image_data(&parts[i], &d)) {
			e->why = "an image given by URL: Ollama accepts base64 image data only";
			return UMB_ERR;
		}
		jw_raw(w, f ? STR("") : STR(","));
		jw_str(w, d);
		f = false;
	}
	jw_lit(w, "]");
	return UMB_OK;
}

/* A user turn: runs of text/images become user messages, each tool
 * result its own role:tool message (never user text), in part order. */
static int encode_user(struct jw *w, bool *first, const struct canon_req *req, size_t mi,
		       struct enc_err *e)
{
	const struct canon_msg *m = &req->msgs[mi];
	size_t run = 0; /* start of the pending text/image run */
	if (!m->n_parts) {
		if (msg_open(w, first, "user", m->parts, 0, 0, e))
			return UMB_ERR;
		jw_lit(w, "}");
		return UMB_OK;
	}
	for (size_t i = 0; i <= m->n_parts; i++) {
		bool end = i == m->n_parts;
		if (!end && m->parts[i].type != CANON_TOOL_RESULT)
			continue;
		if (i > run) {
			if (msg_open(w, first, "user", m->parts, run, i, e))
				return UMB_ERR;
			jw_lit(w, "}");
		}
		run = i + 1;
		if (end)
			break;
		const struct canon_part *p = &m->parts[i];
		jw_raw(w, *first ? STR("{") : STR(",{"));
		*first = false;
		jw_lit(w, "\"role\":\"tool\",\"content\":");
		jw_str(w, p->text);
		struct str name = result_name(req, mi, p);
		if (name.n) {
			jw_lit(w, ",\"tool_name\":");
			jw_str(w, name);
		}
		if (p->id.n) {
			/* newer Ollama versions read it; older ones ignore it */
			jw_lit(w, ",\"tool_call_id\":");
			jw_str(w, p->id);
		}
		jw_lit(w, "}");
	}
	return UMB_OK;
}

/* An assistant turn: its text (and images) as content, its tool calls
 * as tool_calls with arguments as objects. */
static int encode_assistant(struct jw *w, bool *first, const struct canon_msg *m,
			    struct enc_err *e)
{
	if (msg_open(w, first, "assistant", m->parts, 0, m->n_parts, e))
		return UMB_ERR;
	bool f = true;
	for (size_t i = 0; i < m->n_parts; i++) {
		const struct canon_part *p = &m->parts[i];
		struct str args;
		if (p->type != CANON_TOOL_CALL)
			continue;
		if (args_object(p->args, &args)) {
			e->why = "a tool call's arguments are not a JSON object";
			return UMB_ERR;
		}
		jw_raw(w, f ? STR(",\"tool_calls\":[{") : STR(",{"));
		f = false;
		if (p->id.n) {
			jw_lit(w, "\"id\":");
			jw_str(w, p->id);
			jw_lit(w, ",");
		}
		jw_lit(w, "\"function\":{\"name\":");
		jw_str(w, p->name);
		jw_lit(w, ",\"arguments\":");
		jw_raw(w, args);
		jw_lit(w, "}}");
	}
	if (!f)
		jw_lit(w, "]");
	jw_lit(w, "}");
	return UMB_OK;
}

/* The schema as a JSON object text. A tool without one takes no
 * arguments: an empty object schema, which model templates render. */
static struct str schema_object(struct str s)
{
	struct str out;
	if (args_object(s, &out) || str_eq(out, STR("{}")))
		return STR("{\"type\":\"object\",\"properties\":{}}");
	return out;
}

/* tools: Ollama has no tool_choice. "none" sends no tools at all, a named
 * tool sends that tool alone (when it exists), anything else all. */
static void encode_tools(struct jw *w, const struct canon_req *req)
{
	if (!req->n_tools || req->tool_choice == CANON_TC_NONE)
		return;
	bool only_named = false;
	if (req->tool_choice == CANON_TC_TOOL)
		for (size_t i = 0; i < req->n_tools && !only_named; i++)
			only_named = str_eq(req->tools[i].name, req->tool_choice_name);
	bool f = true;
	for (size_t i = 0; i < req->n_tools; i++) {
		const struct canon_tool *t = &req->tools[i];
		if (only_named && !str_eq(t->name, req->tool_choice_name))
			continue;
		jw_raw(w, f ? STR(",\"tools\":[") : STR(","));
		f = false;
		jw_lit(w, "{\"type\":\"function\",\"function\":{\"name\":");
		jw_str(w, t->name);
		if (t->description.n) {
			jw_lit(w, ",\"description\":");
			jw_str(w, t->description);
		}
		jw_lit(w, ",\"parameters\":");
		jw_raw(w, schema_object(t->schema));
		jw_lit(w, "}}");
	}
	if (!f)
		jw_lit(w, "]");
}

/* options: the sampling parameters Ollama knows (Modelfile names). */
static void encode_options(struct jw *w, const struct canon_req *req)
{
	bool f = true;
#define OPT(name) (jw_raw(w, f ? STR(",\"options\":{\"" name "\":") : STR(",\"" name "\":")), f = false)
	if (req->max_tokens > 0) {
		OPT("num_predict");
		jw_i64(w, req->max_tokens);
	}
	if (req->has_temperature) {
		OPT("temperature");
		jw_double(w, req->temperature);
	}
	if (req->has_top_p) {
		OPT("top_p");
		jw_double(w, req->top_p);
	}
	if (req->has_top_k) {
		OPT("top_k");
		jw_i64(w, req->top_k);
	}
	for (size_t i = 0; i < req->n_stop && i < CANON_MAX_STOP; i++) {
		if (!i)
			OPT("stop");
		jw_raw(w, i ? STR(",") : STR("["));
		jw_str(w, req->stop[i]);
		if (i + 1 == req->n_stop || i + 1 == CANON_MAX_STOP)
			jw_lit(w, "]");
	}
#undef OPT
	if (!f)
		jw_lit(w, "}");
}

/* The canonical request as an /api/chat body for `model`. stream is
 * always written: Ollama streams when the member is absent. UMB_ERR with
 * e->why when the request cannot be expressed. */
static int ollama_chat_encode(const struct canon_req *req, struct str model, bool stream,
			      struct buf *out, struct enc_err *e)
{
	struct jw w = { out, UMB_OK };
	bool first = true;
	jw_lit(&w, "{\"model\":");
	jw_str(&w, model);
	jw_raw(&w, stream ? STR(",\"stream\":true") : STR(",\"stream\":false"));
	jw_lit(&w, ",\"messages\":[");
	if (req->system.n) {
		jw_lit(&w, "{\"role\":\"system\",\"content\":");
		jw_str(&w, req->system);
		jw_lit(&w, "}");
		first = false;
	}
	for (size_t i = 0; i < req->n_msgs; i++) {
		int rc = req->msgs[i].role == CANON_ASSISTANT
				 ? encode_assistant(&w, &first, &req->msgs[i], e)
				 : encode_user(&w, &first, req, i, e);
		if (rc)
			return UMB_ERR;
	}
	jw_lit(&w, "]");
	encode_tools(&w, req);
	encode_options(&w, req);
	jw_lit(&w, "}");
	if (w.rc && !e->why)
		e->why = "cannot write the request body";
	return w.rc ? UMB_ERR : UMB_OK;
}

/* ------------------------------------------------------------------ */
/* Request: OpenAI embeddings body → /api/embed body                   */
/* ------------------------------------------------------------------ */

static const struct json_member *call_member(const struct upstream_call *c, const char *key)
{
	for (size_t i = 0; i < c->n_members; i++)
		if (json_key_eq(c->members[i].key_raw, key))
			return &c->members[i];
	return NULL;
}

/* {model, input[, dimensions]}: input is a string or an array of strings
 * copied as the client wrote them. Token arrays have no Ollama form, and
 * base64 output cannot be produced from Ollama's float arrays. */
static int ollama_embed_encode(const struct upstream_call *call, struct str model,
			       struct buf *out, struct enc_err *e)
{
	const struct json_member *in = call_member(call, "input");
	const struct json_member *fmt = call_member(call, "encoding_format");
	const struct json_member *dim = call_member(call, "dimensions");
	if (!in || (in->val.type != JSON_STRING && in->val.type != JSON_ARRAY)) {
		e->why = "embeddings input must be a string or an array of strings";
		return UMB_ERR;
	}
	if (in->val.type == JSON_ARRAY) {
		struct json_iter it;
		struct json_val v;
		json_iter_init(&it, in->val);
		while (json_arr_next(&it, &v)) {
			if (v.type != JSON_STRING) {
				e->why = "token-array embeddings input is not supported by Ollama";
				return UMB_ERR;
			}
		}
	}
	if (fmt && fmt->val.type == JSON_STRING && !json_str_eq(fmt->val, "float")) {
		e->why = "Ollama returns float embeddings only (encoding_format)";
		return UMB_ERR;
	}
	struct jw w = { out, UMB_OK };
	jw_lit(&w, "{\"model\":");
	jw_str(&w, model);
	jw_lit(&w, ",\"input\":");
	jw_raw(&w, in->val.raw);
	if (dim && dim->val.type == JSON_NUMBER) {
		jw_lit(&w, ",\"dimensions\":");
		jw_raw(&w, dim->val.raw);
	}
	jw_lit(&w, "}");
	if (w.rc)
		e->why = "cannot write the request body";
	return w.rc ? UMB_ERR : UMB_OK;
}

/* ------------------------------------------------------------------ */
/* build                                                               */
/* ------------------------------------------------------------------ */

static int ollama_build(struct arena *a, const struct upstream_call *call,
			const struct cfg_model *model, const struct cfg_endpoint *ep,
			const char *request_id, struct provider_request *out)
{
	const struct cfg_provider *prov = model->provider;
	struct str name = provider_upstream_name(call, model);
	struct enc_err e = { NULL };
	struct buf b;
	int rc;
	buf_init(&b, 0);
	if (call->op == UPSTREAM_EMBEDDINGS) {
		rc = ollama_embed_encode(call, name, &b, &e);
		out->url = arena_join(a, ep->origin, "/api/embed", NULL);
	} else if (!call->canon) {
		e.why = "no canonical request to translate";
		rc = UMB_ERR;
	} else {
		rc = ollama_chat_encode(call->canon, name, call->stream, &b, &e);
		out->url = arena_join(a, ep->origin, "/api/chat", NULL);
	}
	if (rc) {
		/* a request this wire format cannot carry: forward.c says why */
		buf_clear(&b);
		out->unsupported = e.why ? e.why : "cannot write the request body";
		return UMB_ERR;
	}
	provider_body_set(a, out, &b);
	buf_clear(&b);

	size_t h = 0;
	out->headers[h++] = "Content-Type: application/json";
	out->headers[h++] = "Expect:"; /* no 100-continue round trip on big bodies */
	out->headers[h++] = arena_join(a, "x-request-id: ", request_id, NULL);
	/* Ollama itself has no auth; a proxy in front of it may want a key */
	const char *key = model->api_key ? model->api_key : prov->api_key;
	if (key && *key)
		out->headers[h++] = arena_join(a, "Authorization: Bearer ", key, NULL);
	out->n_headers = h;
	provider_extra_headers(a, model, out);
	return UMB_OK;
}

/* ------------------------------------------------------------------ */
/* Answers                                                             */
/* ------------------------------------------------------------------ */

/* A JSON string's decoded text copied into the arena (the body may not
 * outlive the answer's encoding). Non-strings give "". */
static struct str dup_decoded(struct arena *a, struct json_val v)
{
	if (v.type != JSON_STRING)
		return STR("");
	struct buf b;
	buf_init(&b, 0);
	json_str_decode(v, &b);
	struct str s = str_make(arena_strndup(a, b.p ? b.p : "", b.n), b.n);
	buf_clear(&b);
	return s;
}

/* done_reason → canonical finish. Ollama says "stop" after a tool call
 * too; the caller turns that into TOOL_CALLS. "load"/"unload" answer
 * empty requests and count as stop. */
static enum canon_finish finish_from_ollama(struct json_val reason, bool tool_calls)
{
	if (json_str_eq(reason, "length"))
		return CANON_FIN_LENGTH;
	return tool_calls ? CANON_FIN_TOOL_CALLS : CANON_FIN_STOP;
}

/* prompt_eval_count / eval_count (omitted by Ollama when zero). */
static void read_counts(struct json_val root, struct canon_usage *u)
{
	struct json_val v;
	int64_t x;
	if (json_obj_get(root, "prompt_eval_count", &v) && !json_get_i64(v, &x) && x >= 0) {
		u->prompt_tokens = (uint64_t)x;
		u->seen = true;
	}
	if (json_obj_get(root, "eval_count", &v) && !json_get_i64(v, &x) && x >= 0) {
		u->completion_tokens = (uint64_t)x;
		u->seen = true;
	}
}

/* One tool call of an answer, checked: {id?, function:{name, arguments}}.
 * args is the arguments' JSON text (an object as sent, a string's decoded
 * text, or {} when absent). */
struct tool_call {
	struct json_val id, name, args;
};

static int tool_call_read(struct json_val tc, struct tool_call *out)
{
	struct json_val fn;
	memset(out, 0, sizeof *out);
	if (tc.type != JSON_OBJECT || !json_obj_get(tc, "function", &fn) || fn.type != JSON_OBJECT)
		return UMB_ERR;
	if (!json_obj_get(fn, "name", &out->name) || out->name.type != JSON_STRING ||
	    out->name.raw.n <= 2)
		return UMB_ERR;
	if (!json_obj_get(fn, "arguments", &out->args) || out->args.type == JSON_NULL)
		out->args = (struct json_val){ JSON_OBJECT, STR("{}") };
	else if (out->args.type != JSON_OBJECT && out->args.type != JSON_STRING)
		return UMB_ERR;
	if (json_obj_get(tc, "id", &out->id) && out->id.type != JSON_STRING &&
	    out->id.type != JSON_NULL)
		return UMB_ERR;
	return UMB_OK;
}

static uint64_t fnv1a(uint64_t h, struct str s)
{
	for (size_t i = 0; i < s.n; i++) {
		h ^= (uint8_t)s.p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* The call's own id when Ollama sent one, else "call_" + 16 hex of a
 * hash over the answer's created_at, the index, name and arguments:
 * the same answer always gives the same ids, two answers different ones
 * (created_at has nanoseconds). out must hold 22 bytes. */
static struct str tool_call_id(const struct tool_call *tc, struct json_val created_at, int index,
			       struct buf *scratch, char out[32])
{
	if (tc->id.type == JSON_STRING && tc->id.raw.n > 2) {
		buf_reset(scratch);
		if (!json_str_decode(tc->id, scratch) && scratch->n)
			return buf_str(scratch);
	}
	char idx[24];
	int n = snprintf(idx, sizeof idx, "#%d#", index);
	uint64_t h = 0xcbf29ce484222325ull;
	h = fnv1a(h, created_at.raw);
	h = fnv1a(h, str_make(idx, (size_t)n));
	h = fnv1a(h, tc->name.raw);
	h = fnv1a(h, tc->args.raw);
	snprintf(out, 32, "call_%016llx", (unsigned long long)h);
	return str_make(out, 21);
}

/* The arguments as JSON text into b: an object's raw bytes, or a
 * string's decoded text when that is an object (OpenAI's spelling, seen
 * from proxies); anything else is garbage, so args is always an object. */
static int tool_args_text(const struct tool_call *tc, struct buf *b)
{
	buf_reset(b);
	struct str obj;
	if (tc->args.type != JSON_STRING)
		return buf_append_str(b, tc->args.raw);
	if (json_str_decode(tc->args, b) || args_object(buf_str(b), &obj))
		return UMB_ERR;
	if (str_eq(obj, STR("{}"))) { /* also "" (no arguments) */
		buf_reset(b);
		return buf_append_str(b, STR("{}"));
	}
	memmove(b->p, obj.p, obj.n); /* trimmed in place */
	b->n = obj.n;
	b->p[b->n] = 0;
	return UMB_OK;
}

/* The root of an answer line or body: an object without "error". */
static int parse_answer(struct str body, struct json_val *root)
{
	struct json_val e;
	if (json_parse(body.p, body.n, root, NULL) || root->type != JSON_OBJECT)
		return UMB_ERR;
	if (json_obj_get(*root, "error", &e))
		return UMB_ERR;
	return UMB_OK;
}

/* message.content and message.tool_calls of an answer object; both may
 * be absent. UMB_ERR when present with the wrong shape. */
static int answer_message(struct json_val root, struct json_val *content, struct json_val *calls)
{
	struct json_val msg;
	*content = (struct json_val){ JSON_INVALID, STR_NULL };
	*calls = (struct json_val){ JSON_INVALID, STR_NULL };
	if (!json_obj_get(root, "message", &msg) || msg.type == JSON_NULL)
		return UMB_OK;
	if (msg.type != JSON_OBJECT)
		return UMB_ERR;
	if (json_obj_get(msg, "content", content) && content->type != JSON_STRING &&
	    content->type != JSON_NULL)
		return UMB_ERR;
	if (json_obj_get(msg, "tool_calls", calls) && calls->type != JSON_ARRAY &&
	    calls->type != JSON_NULL)
		return UMB_ERR;
	return UMB_OK;
}

static size_t array_len(struct json_val arr)
{
	struct json_iter it;
	struct json_val v;
	size_t n = 0;
	if (arr.type != JSON_ARRAY)
		return 0;
	json_iter_init(&it, arr);
	while (json_arr_next(&it, &v))
		n++;
	return n;
}

/* A non-stream /api/chat answer into the canonical one (strings in a). */
static int ollama_resp_decode(struct arena *a, struct str body, struct canon_resp *out)
{
	struct json_val root, content, calls, v, created = { JSON_INVALID, STR("") };
	memset(out, 0, sizeof *out);
	if (parse_answer(body, &root) || answer_message(root, &content, &calls))
		return UMB_ERR;
	/* a complete answer says so; anything else is not Ollama's */
	if (!json_obj_get(root, "done", &v) || v.type != JSON_TRUE)
		return UMB_ERR;
	if (json_obj_get(root, "model", &v))
		out->model = dup_decoded(a, v);
	json_obj_get(root, "created_at", &created);
	size_t n_calls = array_len(calls);
	if (n_calls > OLLAMA_MAX_TOOLS)
		return UMB_ERR;
	bool has_text = content.type == JSON_STRING && content.raw.n > 2;
	out->parts = arena_alloc(a, (n_calls + 1) * sizeof *out->parts);
	if (has_text) {
		out->parts[0].type = CANON_TEXT;
		out->parts[0].text = dup_decoded(a, content);
		out->n_parts = 1;
	}
	struct buf scratch;
	buf_init(&scratch, 0);
	struct json_iter it;
	int idx = 0, rc = UMB_OK;
	if (n_calls)
		json_iter_init(&it, calls);
	while (n_calls && json_arr_next(&it, &v)) {
		struct tool_call tc;
		char idbuf[32];
		if ((rc = tool_call_read(v, &tc)))
			break;
		struct canon_part *p = &out->parts[out->n_parts++];
		p->type = CANON_TOOL_CALL;
		p->id = str_cstr(arena_strdup_str(a, tool_call_id(&tc, created, idx++, &scratch, idbuf)));
		p->name = dup_decoded(a, tc.name);
		if ((rc = tool_args_text(&tc, &scratch)))
			break;
		p->args = str_cstr(arena_strdup_str(a, buf_str(&scratch)));
	}
	buf_clear(&scratch);
	if (rc)
		return UMB_ERR;
	if (!json_obj_get(root, "done_reason", &v))
		v.type = JSON_INVALID;
	out->finish = finish_from_ollama(v, idx > 0);
	read_counts(root, &out->usage);
	return UMB_OK;
}

static int ollama_decode(struct arena *a, const struct upstream_call *call, struct str body,
			 struct canon_resp *out)
{
	UMB_UNUSED(call);
	return ollama_resp_decode(a, body, out);
}

/* ------------------------------------------------------------------ */
/* NDJSON stream → canon events                                        */
/* ------------------------------------------------------------------ */

/* Per-attempt state: the incomplete last line, a scratch buffer for
 * decoded strings (both heap, capped, freed by clear: streams never grow
 * the arena) and where the event sequence stands. */
struct ollama_stream {
	struct buf line;
	struct buf scratch, scratch2;
	const struct canon_sink *sink;
	int n_tools;
	bool started, ended;
	int err; /* sticky: every later feed returns it */
};

static void ollama_stream_init(void *st, const struct upstream_call *call)
{
	struct ollama_stream *s = st;
	UMB_UNUSED(call);
	memset(s, 0, sizeof *s);
	buf_init(&s->line, OLLAMA_MAX_LINE);
	buf_init(&s->scratch, OLLAMA_MAX_LINE);
	buf_init(&s->scratch2, OLLAMA_MAX_LINE);
}

static void ollama_stream_clear(void *st)
{
	struct ollama_stream *s = st;
	buf_clear(&s->line);
	buf_clear(&s->scratch);
	buf_clear(&s->scratch2);
}

static int emit(struct ollama_stream *s, struct canon_ev *ev)
{
	return canon_emit(s->sink, ev);
}

/* START once, with the model of the first line. */
static int stream_start(struct ollama_stream *s, struct json_val root)
{
	struct json_val m;
	struct canon_ev ev = { .type = CEV_START };
	if (s->started)
		return UMB_OK;
	s->started = true;
	buf_reset(&s->scratch);
	if (json_obj_get(root, "model", &m) && m.type == JSON_STRING &&
	    json_str_decode(m, &s->scratch))
		return UMB_ERR;
	ev.model = buf_str(&s->scratch);
	return emit(s, &ev);
}

/* Ollama sends each tool call whole: TOOL_START then all its arguments
 * in one TOOL_ARGS. */
static int stream_tool_calls(struct ollama_stream *s, struct json_val calls,
			     struct json_val created)
{
	struct json_iter it;
	struct json_val v;
	int rc;
	json_iter_init(&it, calls);
	while (json_arr_next(&it, &v)) {
		struct tool_call tc;
		char idbuf[32];
		if (s->n_tools >= OLLAMA_MAX_TOOLS || tool_call_read(v, &tc))
			return UMB_ERR;
		struct canon_ev ev = { .type = CEV_TOOL_START, .index = s->n_tools };
		ev.id = tool_call_id(&tc, created, s->n_tools, &s->scratch2, idbuf);
		buf_reset(&s->scratch);
		if (json_str_decode(tc.name, &s->scratch))
			return UMB_ERR;
		ev.name = buf_str(&s->scratch);
		if ((rc = emit(s, &ev)))
			return rc;
		if (tool_args_text(&tc, &s->scratch))
			return UMB_ERR;
		ev = (struct canon_ev){ .type = CEV_TOOL_ARGS, .index = s->n_tools,
					.text = buf_str(&s->scratch) };
		s->n_tools++;
		if ((rc = emit(s, &ev)))
			return rc;
	}
	return UMB_OK;
}

/* The done:true line: FINISH, USAGE (when counted), END. */
static int stream_done(struct ollama_stream *s, struct json_val root)
{
	struct json_val reason = { JSON_INVALID, STR_NULL };
	struct canon_ev ev = { .type = CEV_FINISH };
	int rc;
	json_obj_get(root, "done_reason", &reason);
	ev.finish = finish_from_ollama(reason, s->n_tools > 0);
	if ((rc = emit(s, &ev)))
		return rc;
	ev = (struct canon_ev){ .type = CEV_USAGE };
	read_counts(root, &ev.usage);
	if (ev.usage.seen && (rc = emit(s, &ev)))
		return rc;
	s->ended = true;
	ev = (struct canon_ev){ .type = CEV_END };
	return emit(s, &ev);
}

/* One NDJSON line (without its '\n'). Blank lines are skipped; anything
 * after the done line is ignored (the answer is complete). */
static int stream_line(struct ollama_stream *s, struct str line)
{
	struct json_val root, content, calls, done, created = { JSON_INVALID, STR("") };
	int rc;
	while (line.n && is_space(line.p[0])) {
		line.p++;
		line.n--;
	}
	while (line.n && is_space(line.p[line.n - 1]))
		line.n--;
	if (!line.n || s->ended)
		return UMB_OK;
	if (parse_answer(line, &root) || answer_message(root, &content, &calls))
		return UMB_ERR; /* garbage, or Ollama's {"error": ...} */
	/* every line of Ollama's carries done (false until the last) */
	if (!json_obj_get(root, "done", &done) || (done.type != JSON_TRUE && done.type != JSON_FALSE))
		return UMB_ERR;
	if ((rc = stream_start(s, root)))
		return rc;
	if (content.type == JSON_STRING && content.raw.n > 2) {
		buf_reset(&s->scratch);
		if (json_str_decode(content, &s->scratch))
			return UMB_ERR;
		struct canon_ev ev = { .type = CEV_TEXT, .text = buf_str(&s->scratch) };
		if ((rc = emit(s, &ev)))
			return rc;
	}
	json_obj_get(root, "created_at", &created);
	if (calls.type == JSON_ARRAY && (rc = stream_tool_calls(s, calls, created)))
		return rc;
	if (done.type == JSON_TRUE)
		return stream_done(s, root);
	return UMB_OK;
}

/* Bytes in arbitrary splits: complete lines are parsed where they lie,
 * only an incomplete tail is copied (capped at OLLAMA_MAX_LINE). */
static int ollama_stream_feed(void *st, const char *p, size_t n, const struct canon_sink *sink)
{
	struct ollama_stream *s = st;
	s->sink = sink;
	while (!s->err && n) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;
		if (s->line.n + take > OLLAMA_MAX_LINE) {
			s->err = UMB_ERR;
			break;
		}
		if (!nl || s->line.n) {
			if (buf_append(&s->line, p, take)) {
				s->err = UMB_ERR;
				break;
			}
		}
		if (!nl)
			break;
		struct str line = s->line.n ? buf_str(&s->line) : str_make(p, take);
		s->err = stream_line(s, line);
		buf_reset(&s->line);
		p += take + 1;
		n -= take + 1;
	}
	return s->err;
}

/* The upstream closed the body: a last line without '\n' still counts;
 * no done line means the answer was cut short. */
static int ollama_stream_finish(void *st, const struct canon_sink *sink)
{
	struct ollama_stream *s = st;
	s->sink = sink;
	if (!s->err && s->line.n) {
		s->err = stream_line(s, buf_str(&s->line));
		buf_reset(&s->line);
	}
	if (!s->err && !s->ended)
		s->err = UMB_ERR;
	return s->err;
}

/* ------------------------------------------------------------------ */
/* Embeddings answer → OpenAI's                                        */
/* ------------------------------------------------------------------ */

/* {"model","embeddings":[[...],...],"prompt_eval_count"} → {"object":"list",
 * "data":[{"object":"embedding","index":i,"embedding":[...]}],"model",
 * "usage"}. The number arrays are copied as Ollama wrote them. */
static int ollama_embeddings_to_openai(struct arena *a, const struct upstream_call *call,
				       struct str body, struct buf *out,
				       struct provider_usage *usage)
{
	struct json_val root, embs, model, v;
	UMB_UNUSED(a);
	if (parse_answer(body, &root) || !json_obj_get(root, "embeddings", &embs) ||
	    embs.type != JSON_ARRAY)
		return UMB_ERR;
	struct canon_usage u = { 0 };
	read_counts(root, &u);
	struct jw w = { out, UMB_OK };
	jw_lit(&w, "{\"object\":\"list\",\"data\":[");
	struct json_iter it;
	json_iter_init(&it, embs);
	for (int64_t i = 0; json_arr_next(&it, &v); i++) {
		struct json_iter nums;
		struct json_val x;
		if (v.type != JSON_ARRAY)
			return UMB_ERR;
		json_iter_init(&nums, v);
		while (json_arr_next(&nums, &x))
			if (x.type != JSON_NUMBER)
				return UMB_ERR;
		jw_raw(&w, i ? STR(",{\"object\":\"embedding\",\"index\":")
			     : STR("{\"object\":\"embedding\",\"index\":"));
		jw_i64(&w, i);
		jw_lit(&w, ",\"embedding\":");
		jw_raw(&w, v.raw);
		jw_lit(&w, "}");
	}
	jw_lit(&w, "],\"model\":");
	if (json_obj_get(root, "model", &model) && model.type == JSON_STRING)
		jw_raw(&w, model.raw);
	else
		jw_str(&w, call->requested_model);
	jw_lit(&w, ",\"usage\":{\"prompt_tokens\":");
	jw_i64(&w, (int64_t)u.prompt_tokens);
	jw_lit(&w, ",\"total_tokens\":");
	jw_i64(&w, (int64_t)u.prompt_tokens);
	jw_lit(&w, "}}");
	if (w.rc)
		return UMB_ERR;
	if (u.seen) {
		usage->seen = true;
		usage->prompt_tokens = u.prompt_tokens;
	}
	return UMB_OK;
}

/* {"error":"..."} (and {"error":{"message":"..."}} from proxies). */
static const char *ollama_error_message(struct arena *a, struct str body)
{
	struct json_val root, e, m;
	if (json_parse(body.p, body.n, &root, NULL) || root.type != JSON_OBJECT ||
	    !json_obj_get(root, "error", &e))
		return NULL;
	if (e.type == JSON_OBJECT && json_obj_get(e, "message", &m))
		e = m;
	if (e.type != JSON_STRING)
		return NULL;
	/* a message for a log line and an error body: 300 bytes at most,
	 * never cut inside a UTF-8 sequence */
	struct str text = dup_decoded(a, e);
	return arena_strndup(a, text.p, utf8_complete_prefix(text.p, UMB_MIN(text.n, (size_t)300)));
}

static const struct provider_ops ollama_ops = {
	.name = "ollama",
	.native = -1,
	.build = ollama_build,
	.decode = ollama_decode,
	.stream_size = sizeof(struct ollama_stream),
	.stream_init = ollama_stream_init,
	.stream_feed = ollama_stream_feed,
	.stream_finish = ollama_stream_finish,
	.stream_clear = ollama_stream_clear,
	.embeddings_to_openai = ollama_embeddings_to_openai,
	.embeddings = true,
	.error_message = ollama_error_message,
	.health_path = "/api/tags",
};

const struct provider_ops *provider_ollama_ops(void)
{
	return &ollama_ops;
}
