/* openai_fmt.c — OpenAI Chat Completions ↔ canonical (openai_fmt.h).
 *
 * Requests: system and developer messages join the canonical system text;
 * `role: tool` messages become tool-result parts of one user turn (in
 * order, ids kept); assistant tool_calls become tool-call parts. Encoding
 * does the reverse, so a tool result is always a `role: tool` message
 * right after the assistant turn that called it, never user text. */
#include <stdio.h>
#include <time.h>

#include "core/json.h"
#include "providers/openai_fmt.h"

/* ---- small helpers ---- */

static size_t arr_len(struct json_val arr)
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

static bool get_i64(struct json_val obj, const char *key, uint64_t *out)
{
	struct json_val v;
	int64_t x;
	if (!json_obj_get(obj, key, &v) || json_get_i64(v, &x) || x < 0)
		return false;
	*out = (uint64_t)x;
	return true;
}

#define WHY(...) (snprintf(why, why_n, __VA_ARGS__), UMB_ERR)

/* ---- request: OpenAI → canonical ---- */

/* A content value's text parts joined (string, or an array of parts). */
static int content_text(struct arena *a, struct json_val c, struct str *out)
{
	if (c.type == JSON_STRING) {
		*out = canon_decode(a, &c);
		return UMB_OK;
	}
	*out = str_make("", 0);
	if (c.type == JSON_NULL)
		return UMB_OK;
	if (c.type != JSON_ARRAY)
		return UMB_ERR;
	struct buf b;
	buf_init(&b, 0);
	struct json_iter it;
	struct json_val part, t;
	json_iter_init(&it, c);
	while (json_arr_next(&it, &part))
		if (part.type == JSON_OBJECT && json_obj_get(part, "text", &t) && t.type == JSON_STRING)
			json_str_decode(t, &b);
	*out = str_make(arena_strndup(a, b.p ? b.p : "", b.n), b.n);
	buf_clear(&b);
	return UMB_OK;
}

/* "data:image/png;base64,AAAA" → media type and payload; else a URL. */
static void image_from_url(struct str url, struct canon_part *p)
{
	p->type = CANON_IMAGE;
	const char *comma = url.n > 5 && !memcmp(url.p, "data:", 5) ? memchr(url.p, ',', url.n) : NULL;
	if (comma) {
		struct str head = str_make(url.p + 5, (size_t)(comma - url.p) - 5);
		const char *semi = memchr(head.p, ';', head.n);
		p->media_type = str_make(head.p, semi ? (size_t)(semi - head.p) : head.n);
		p->data = str_make(comma + 1, url.n - (size_t)(comma + 1 - url.p));
		return;
	}
	p->url = url;
}

/* User content: a string, or text / image_url parts. */
static int user_parts(struct arena *a, struct json_val c, struct canon_msg *m, size_t idx,
		      char *why, size_t why_n)
{
	if (c.type == JSON_STRING || c.type == JSON_NULL) {
		m->parts = arena_alloc(a, sizeof *m->parts);
		m->parts[0] = (struct canon_part){ .type = CANON_TEXT, .text = canon_decode(a, &c) };
		m->n_parts = 1;
		return UMB_OK;
	}
	if (c.type != JSON_ARRAY)
		return WHY("messages[%zu].content must be a string or an array of parts", idx);
	m->parts = arena_alloc(a, (arr_len(c) + 1) * sizeof *m->parts);
	struct json_iter it;
	struct json_val part, ty, v, url;
	json_iter_init(&it, c);
	for (size_t k = 0; json_arr_next(&it, &part); k++) {
		if (part.type != JSON_OBJECT || !json_obj_get(part, "type", &ty) || ty.type != JSON_STRING)
			return WHY("messages[%zu].content[%zu] must be an object with a string 'type'", idx, k);
		struct canon_part *p = &m->parts[m->n_parts];
		*p = (struct canon_part){ 0 };
		if (json_str_eq(ty, "text")) {
			if (!json_obj_get(part, "text", &v) || v.type != JSON_STRING)
				return WHY("messages[%zu].content[%zu].text must be a string", idx, k);
			p->type = CANON_TEXT;
			p->text = canon_decode(a, &v);
		} else if (json_str_eq(ty, "image_url")) {
			if (!json_obj_get(part, "image_url", &v) ||
			    (v.type == JSON_OBJECT ? !json_obj_get(v, "url", &url) : (url = v, false)) ||
			    url.type != JSON_STRING)
				return WHY("messages[%zu].content[%zu].image_url.url must be a string", idx, k);
			image_from_url(canon_decode(a, &url), p);
		} else {
			return WHY("messages[%zu].content[%zu]: content part type %.*s is not supported "
				   "by this model's provider", idx, k, (int)UMB_MIN(ty.raw.n, (size_t)40), ty.raw.p);
		}
		m->n_parts++;
	}
	return UMB_OK;
}

/* Assistant turn: text content and tool_calls. A client's (strict) call
 * arguments must be a JSON object's text: Anthropic, Bedrock and Gemini
 * carry arguments as an object. A model's own answer is taken as it is. */
static int assistant_parts(struct arena *a, struct json_val c, struct json_val calls,
			   struct canon_msg *m, size_t idx, bool strict, char *why, size_t why_n)
{
	bool has_c = c.type != JSON_INVALID;
	bool has_calls = calls.type != JSON_INVALID && calls.type != JSON_NULL;
	if (has_calls && calls.type != JSON_ARRAY)
		return WHY("messages[%zu].tool_calls must be an array", idx);
	m->parts = arena_alloc(a, (1 + (has_calls ? arr_len(calls) : 0)) * sizeof *m->parts);
	struct str text;
	if (has_c && content_text(a, c, &text))
		return WHY("messages[%zu].content must be a string, an array of parts or null", idx);
	if (has_c && text.n)
		m->parts[m->n_parts++] = (struct canon_part){ .type = CANON_TEXT, .text = text };
	if (!has_calls)
		return UMB_OK;
	struct json_iter it;
	struct json_val call, id, fn, name, args;
	json_iter_init(&it, calls);
	for (size_t k = 0; json_arr_next(&it, &call); k++) {
		if (call.type != JSON_OBJECT || !json_obj_get(call, "id", &id) || id.type != JSON_STRING ||
		    !json_obj_get(call, "function", &fn) || fn.type != JSON_OBJECT ||
		    !json_obj_get(fn, "name", &name) || name.type != JSON_STRING)
			return WHY("messages[%zu].tool_calls[%zu] needs a string id and function.name", idx, k);
		struct canon_part *p = &m->parts[m->n_parts++];
		*p = (struct canon_part){ .type = CANON_TOOL_CALL, .id = canon_decode(a, &id),
					  .name = canon_decode(a, &name) };
		if (json_obj_get(fn, "arguments", &args) && args.type == JSON_STRING)
			p->args = canon_decode(a, &args);
		else if (json_obj_get(fn, "arguments", &args) && args.type == JSON_OBJECT)
			p->args = args.raw; /* lenient: an object instead of its text */
		if (!p->args.n)
			p->args = STR("{}");
		struct json_val parsed;
		if (strict && (json_parse(p->args.p, p->args.n, &parsed, NULL) || parsed.type != JSON_OBJECT))
			return WHY("messages[%zu].tool_calls[%zu].function.arguments must be the text of "
				   "a JSON object", idx, k);
	}
	return UMB_OK;
}

static int decode_tools(struct arena *a, struct json_val tools, struct canon_req *out, char *why,
			size_t why_n)
{
	out->tools = arena_alloc(a, (arr_len(tools) + 1) * sizeof *out->tools);
	struct json_iter it;
	struct json_val t, fn, v;
	json_iter_init(&it, tools);
	for (size_t k = 0; json_arr_next(&it, &t); k++) {
		if (t.type != JSON_OBJECT || !json_obj_get(t, "function", &fn) || fn.type != JSON_OBJECT ||
		    !json_obj_get(fn, "name", &v) || v.type != JSON_STRING)
			return WHY("tools[%zu] must be {\"type\":\"function\",\"function\":{\"name\",...}}", k);
		struct canon_tool *ct = &out->tools[out->n_tools++];
		ct->name = canon_decode(a, &v);
		ct->description = json_obj_get(fn, "description", &v) ? canon_decode(a, &v) : str_make("", 0);
		ct->schema = json_obj_get(fn, "parameters", &v) && v.type == JSON_OBJECT ? v.raw : STR("{}");
	}
	return UMB_OK;
}

static int decode_tool_choice(struct arena *a, struct json_val tc, struct canon_req *out,
			      char *why, size_t why_n)
{
	struct json_val fn, name;
	if (tc.type == JSON_NULL)
		return UMB_OK;
	if (json_str_eq(tc, "auto"))
		out->tool_choice = CANON_TC_AUTO;
	else if (json_str_eq(tc, "none"))
		out->tool_choice = CANON_TC_NONE;
	else if (json_str_eq(tc, "required"))
		out->tool_choice = CANON_TC_ANY;
	else if (tc.type == JSON_OBJECT && json_obj_get(tc, "function", &fn) &&
		 fn.type == JSON_OBJECT && json_obj_get(fn, "name", &name) && name.type == JSON_STRING) {
		out->tool_choice = CANON_TC_TOOL;
		out->tool_choice_name = canon_decode(a, &name);
	} else
		return WHY("tool_choice must be \"none\", \"auto\", \"required\" or "
			   "{\"type\":\"function\",\"function\":{\"name\"}}");
	return UMB_OK;
}

/* The request members read, found in one pass over the root. */
enum req_key {
	R_MODEL, R_MESSAGES, R_TOOLS, R_TOOL_CHOICE, R_MAX_COMPLETION_TOKENS, R_MAX_TOKENS,
	R_TEMPERATURE, R_TOP_P, R_STOP, R_STREAM, R_STREAM_OPTIONS, R_PARALLEL_TOOL_CALLS, R_USER,
	R_COUNT
};
static const char *const req_keys[R_COUNT] = {
	"model", "messages", "tools", "tool_choice", "max_completion_tokens", "max_tokens",
	"temperature", "top_p", "stop", "stream", "stream_options", "parallel_tool_calls", "user",
};

static bool present(struct json_val v)
{
	return v.type != JSON_INVALID && v.type != JSON_NULL;
}

static int decode_params(struct arena *a, const struct json_val *r, struct canon_req *out,
			 char *why, size_t why_n)
{
	struct json_val v;
	int64_t x;
	if (present(r[R_MAX_COMPLETION_TOKENS]) || present(r[R_MAX_TOKENS])) {
		v = present(r[R_MAX_COMPLETION_TOKENS]) ? r[R_MAX_COMPLETION_TOKENS] : r[R_MAX_TOKENS];
		if (json_get_i64(v, &x) || x <= 0)
			return WHY("max_tokens must be a positive integer");
		out->max_tokens = x;
	}
	if (r[R_TEMPERATURE].type == JSON_NUMBER)
		out->has_temperature = !json_get_double(r[R_TEMPERATURE], &out->temperature);
	if (r[R_TOP_P].type == JSON_NUMBER)
		out->has_top_p = !json_get_double(r[R_TOP_P], &out->top_p);
	if ((v = r[R_STOP]).type != JSON_INVALID) {
		if (v.type == JSON_STRING) {
			out->stop[out->n_stop++] = canon_decode(a, &v);
		} else if (v.type == JSON_ARRAY) {
			struct json_iter it;
			struct json_val s;
			json_iter_init(&it, v);
			while (json_arr_next(&it, &s)) {
				if (s.type != JSON_STRING || out->n_stop == CANON_MAX_STOP)
					return WHY("stop must be a string or up to %d strings", CANON_MAX_STOP);
				out->stop[out->n_stop++] = canon_decode(a, &s);
			}
		} else if (v.type != JSON_NULL) {
			return WHY("stop must be a string or an array of strings");
		}
	}
	out->stream = r[R_STREAM].type == JSON_TRUE;
	struct json_val iu;
	out->include_usage = r[R_STREAM_OPTIONS].type == JSON_OBJECT &&
			     json_obj_get(r[R_STREAM_OPTIONS], "include_usage", &iu) && iu.type == JSON_TRUE;
	out->no_parallel_tools = r[R_PARALLEL_TOOL_CALLS].type == JSON_FALSE;
	if (r[R_USER].type == JSON_STRING)
		out->user = canon_decode(a, &r[R_USER]);
	out->model = canon_decode(a, &r[R_MODEL]);
	return UMB_OK;
}

/* A message's role, content, tool_calls and tool_call_id (mv[0..3]) in
 * one pass that stops as soon as the role's members are found: a user
 * turn written role-then-content is never scanned past its (possibly
 * 200 KB) content. Only an assistant turn may carry tool_calls and only a
 * tool turn a tool_call_id, so the others need not look for them. */
static void pick_message(struct json_val msg, struct json_val mv[4])
{
	static const char *const keys[] = { "role", "content", "tool_calls", "tool_call_id" };
	for (int k = 0; k < 4; k++)
		mv[k] = (struct json_val){ JSON_INVALID, STR_NULL };
	if (msg.type != JSON_OBJECT)
		return;
	struct json_iter it;
	struct str key;
	struct json_val v;
	json_iter_init(&it, msg);
	while (json_obj_next(&it, &key, &v)) {
		for (int k = 0; k < 4; k++)
			if (mv[k].type == JSON_INVALID && json_key_eq(key, keys[k])) {
				mv[k] = v;
				break;
			}
		if (mv[0].type != JSON_STRING || mv[1].type == JSON_INVALID)
			continue;
		if (json_str_eq(mv[0], "assistant") ? mv[2].type != JSON_INVALID
		    : json_str_eq(mv[0], "tool") ? mv[3].type != JSON_INVALID : true)
			break;
	}
}

/* The request from its top-level members r[] (see req_keys). */
static int decode_root(struct arena *a, const struct json_val *r, struct canon_req *out, char *why,
		       size_t why_n)
{
	*out = (struct canon_req){ 0 };
	struct json_val msgs = r[R_MESSAGES];
	if (msgs.type != JSON_ARRAY)
		return WHY("'messages' must be an array");
	if (decode_params(a, r, out, why, why_n))
		return UMB_ERR;
	if (r[R_TOOLS].type == JSON_ARRAY && decode_tools(a, r[R_TOOLS], out, why, why_n))
		return UMB_ERR;
	if (r[R_TOOL_CHOICE].type != JSON_INVALID &&
	    decode_tool_choice(a, r[R_TOOL_CHOICE], out, why, why_n))
		return UMB_ERR;

	/* grown as needed: counting first would be one more pass over a
	 * messages array that may be most of a 200 KB body */
	size_t cap = 16;
	out->msgs = arena_alloc(a, cap * sizeof *out->msgs);
	struct buf sys;
	buf_init(&sys, 0);
	struct json_iter it;
	struct json_val msg, mv[4];
	json_iter_init(&it, msgs);
	int rc = UMB_OK;
	for (size_t i = 0; rc == UMB_OK && json_arr_next(&it, &msg); i++) {
		pick_message(msg, mv);
		struct json_val role = mv[0], c = mv[1], id = mv[3];
		if (msg.type != JSON_OBJECT || role.type != JSON_STRING) {
			rc = WHY("messages[%zu] must be an object with a string 'role'", i);
			break;
		}
		bool has_c = c.type != JSON_INVALID;
		if (out->n_msgs == cap) {
			struct canon_msg *grown = arena_alloc(a, 2 * cap * sizeof *grown);
			memcpy(grown, out->msgs, cap * sizeof *grown);
			out->msgs = grown;
			cap *= 2;
		}
		if (json_str_eq(role, "system") || json_str_eq(role, "developer")) {
			struct str t;
			if (!has_c || content_text(a, c, &t)) {
				rc = WHY("messages[%zu].content must be a string or text parts", i);
				break;
			}
			if (sys.n)
				buf_append_lit(&sys, "\n\n");
			buf_append_str(&sys, t);
		} else if (json_str_eq(role, "user")) {
			struct canon_msg *m = &out->msgs[out->n_msgs++];
			*m = (struct canon_msg){ .role = CANON_USER };
			rc = user_parts(a, has_c ? c : (struct json_val){ JSON_NULL, STR("null") }, m, i, why,
					why_n);
		} else if (json_str_eq(role, "assistant")) {
			struct canon_msg *m = &out->msgs[out->n_msgs++];
			*m = (struct canon_msg){ .role = CANON_ASSISTANT };
			rc = assistant_parts(a, c, mv[2], m, i, true, why, why_n);
		} else if (json_str_eq(role, "tool")) {
			if (id.type != JSON_STRING) {
				rc = WHY("messages[%zu] (role tool) needs a string 'tool_call_id'", i);
				break;
			}
			struct canon_part p = { .type = CANON_TOOL_RESULT, .id = canon_decode(a, &id) };
			if (has_c && content_text(a, c, &p.text)) {
				rc = WHY("messages[%zu].content must be a string or text parts", i);
				break;
			}
			/* consecutive results (a parallel call) share one user turn */
			struct canon_msg *prev = out->n_msgs ? &out->msgs[out->n_msgs - 1] : NULL;
			bool join = prev && prev->role == CANON_USER && prev->n_parts &&
				    prev->parts[prev->n_parts - 1].type == CANON_TOOL_RESULT;
			struct canon_msg *m = join ? prev : &out->msgs[out->n_msgs++];
			if (!join)
				*m = (struct canon_msg){ .role = CANON_USER };
			struct canon_part *np = arena_alloc(a, (m->n_parts + 1) * sizeof *np);
			if (m->n_parts)
				memcpy(np, m->parts, m->n_parts * sizeof *np);
			np[m->n_parts++] = p;
			m->parts = np;
		} else {
			rc = WHY("messages[%zu].role %.*s is not supported (system, developer, user, "
				 "assistant, tool)", i, (int)UMB_MIN(role.raw.n, (size_t)40), role.raw.p);
		}
	}
	out->system = str_make(arena_strndup(a, sys.p ? sys.p : "", sys.n), sys.n);
	buf_clear(&sys);
	if (rc == UMB_OK && !out->n_msgs)
		rc = WHY("'messages' must contain a user message");
	canon_fill_result_names(out);
	return rc;
}

int openai_req_decode(struct arena *a, struct str body, struct canon_req *out, char *why,
		      size_t why_n)
{
	struct json_val root, r[R_COUNT];
	struct json_err err;
	if (json_parse(body.p, body.n, &root, &err) || root.type != JSON_OBJECT) {
		*out = (struct canon_req){ 0 };
		return WHY("request body must be a JSON object");
	}
	json_obj_pick(root, req_keys, R_COUNT, r);
	return decode_root(a, r, out, why, why_n);
}

int openai_req_decode_members(struct arena *a, const struct json_member *m, size_t n,
			      struct canon_req *out, char *why, size_t why_n)
{
	struct json_val r[R_COUNT];
	for (size_t k = 0; k < R_COUNT; k++)
		r[k] = (struct json_val){ JSON_INVALID, STR_NULL };
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < R_COUNT; k++)
			if (r[k].type == JSON_INVALID && json_key_eq(m[i].key_raw, req_keys[k])) {
				r[k] = m[i].val;
				break;
			}
	return decode_root(a, r, out, why, why_n);
}

/* ---- request: canonical → OpenAI ---- */

static void put_image_url(struct buf *b, const struct canon_part *p)
{
	buf_append_lit(b, "{\"type\":\"image_url\",\"image_url\":{\"url\":");
	if (p->data.n) {
		struct buf u;
		buf_init(&u, 0);
		buf_append_lit(&u, "data:");
		buf_append_str(&u, p->media_type.n ? p->media_type : STR("image/png"));
		buf_append_lit(&u, ";base64,");
		buf_append_str(&u, p->data);
		json_write_str(b, buf_str(&u));
		buf_clear(&u);
	} else {
		json_write_str(b, p->url);
	}
	buf_append_lit(b, "}}");
}

static void put_user(struct buf *b, const struct canon_msg *m, bool *first)
{
	/* tool results first: they answer the assistant turn just before */
	size_t other = 0, texts = 0;
	for (size_t i = 0; i < m->n_parts; i++) {
		const struct canon_part *p = &m->parts[i];
		if (p->type != CANON_TOOL_RESULT) {
			other++;
			texts += p->type == CANON_TEXT;
			continue;
		}
		buf_append_str(b, *first ? STR("{\"role\":\"tool\",\"tool_call_id\":")
					 : STR(",{\"role\":\"tool\",\"tool_call_id\":"));
		*first = false;
		json_write_str(b, p->id);
		buf_append_lit(b, ",\"content\":");
		json_write_str(b, p->text);
		buf_append_lit(b, "}");
	}
	if (!other)
		return;
	buf_append_str(b, *first ? STR("{\"role\":\"user\",\"content\":") : STR(",{\"role\":\"user\",\"content\":"));
	*first = false;
	if (other == 1 && texts == 1) {
		for (size_t i = 0; i < m->n_parts; i++)
			if (m->parts[i].type == CANON_TEXT)
				json_write_str(b, m->parts[i].text);
		buf_append_lit(b, "}");
		return;
	}
	buf_append_lit(b, "[");
	bool f = true;
	for (size_t i = 0; i < m->n_parts; i++) {
		const struct canon_part *p = &m->parts[i];
		if (p->type == CANON_TOOL_RESULT || p->type == CANON_TOOL_CALL)
			continue;
		if (!f)
			buf_append_lit(b, ",");
		f = false;
		if (p->type == CANON_TEXT) {
			buf_append_lit(b, "{\"type\":\"text\",\"text\":");
			json_write_str(b, p->text);
			buf_append_lit(b, "}");
		} else {
			put_image_url(b, p);
		}
	}
	buf_append_lit(b, "]}");
}

static void put_assistant(struct buf *b, const struct canon_msg *m, bool *first)
{
	buf_append_str(b, *first ? STR("{\"role\":\"assistant\",\"content\":")
				 : STR(",{\"role\":\"assistant\",\"content\":"));
	*first = false;
	struct buf t;
	buf_init(&t, 0);
	size_t calls = 0;
	for (size_t i = 0; i < m->n_parts; i++) {
		if (m->parts[i].type == CANON_TEXT)
			buf_append_str(&t, m->parts[i].text);
		calls += m->parts[i].type == CANON_TOOL_CALL;
	}
	if (t.n || !calls)
		json_write_str(b, buf_str(&t));
	else
		buf_append_lit(b, "null");
	buf_clear(&t);
	if (calls) {
		buf_append_lit(b, ",\"tool_calls\":[");
		bool f = true;
		for (size_t i = 0; i < m->n_parts; i++) {
			const struct canon_part *p = &m->parts[i];
			if (p->type != CANON_TOOL_CALL)
				continue;
			buf_append_str(b, f ? STR("{\"id\":") : STR(",{\"id\":"));
			f = false;
			json_write_str(b, p->id);
			buf_append_lit(b, ",\"type\":\"function\",\"function\":{\"name\":");
			json_write_str(b, p->name);
			buf_append_lit(b, ",\"arguments\":");
			json_write_str(b, p->args.n ? p->args : STR("{}"));
			buf_append_lit(b, "}}");
		}
		buf_append_lit(b, "]");
	}
	buf_append_lit(b, "}");
}

int openai_req_encode(const struct canon_req *req, struct str model, struct buf *b)
{
	buf_append_lit(b, "{\"model\":");
	json_write_str(b, model);
	buf_append_lit(b, ",\"messages\":[");
	bool first = true;
	if (req->system.n) {
		buf_append_lit(b, "{\"role\":\"system\",\"content\":");
		json_write_str(b, req->system);
		buf_append_lit(b, "}");
		first = false;
	}
	for (size_t i = 0; i < req->n_msgs; i++) {
		if (req->msgs[i].role == CANON_USER)
			put_user(b, &req->msgs[i], &first);
		else
			put_assistant(b, &req->msgs[i], &first);
	}
	buf_append_lit(b, "]");
	if (req->n_tools) {
		buf_append_lit(b, ",\"tools\":[");
		for (size_t i = 0; i < req->n_tools; i++) {
			const struct canon_tool *t = &req->tools[i];
			buf_append_str(b, i ? STR(",{\"type\":\"function\",\"function\":{\"name\":")
					    : STR("{\"type\":\"function\",\"function\":{\"name\":"));
			json_write_str(b, t->name);
			if (t->description.n) {
				buf_append_lit(b, ",\"description\":");
				json_write_str(b, t->description);
			}
			buf_append_lit(b, ",\"parameters\":");
			buf_append_str(b, t->schema.n ? t->schema : STR("{}"));
			buf_append_lit(b, "}}");
		}
		buf_append_lit(b, "]");
		if (req->no_parallel_tools)
			buf_append_lit(b, ",\"parallel_tool_calls\":false");
	}
	switch (req->tool_choice) {
	case CANON_TC_AUTO: buf_append_lit(b, ",\"tool_choice\":\"auto\""); break;
	case CANON_TC_NONE: buf_append_lit(b, ",\"tool_choice\":\"none\""); break;
	case CANON_TC_ANY: buf_append_lit(b, ",\"tool_choice\":\"required\""); break;
	case CANON_TC_TOOL:
		buf_append_lit(b, ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":");
		json_write_str(b, req->tool_choice_name);
		buf_append_lit(b, "}}");
		break;
	case CANON_TC_UNSET: break;
	}
	if (req->max_tokens)
		buf_printf(b, ",\"max_tokens\":%lld", (long long)req->max_tokens);
	if (req->has_temperature) {
		buf_append_lit(b, ",\"temperature\":");
		canon_write_double(b, req->temperature);
	}
	if (req->has_top_p) {
		buf_append_lit(b, ",\"top_p\":");
		canon_write_double(b, req->top_p);
	}
	if (req->n_stop) {
		buf_append_lit(b, ",\"stop\":[");
		for (size_t i = 0; i < req->n_stop; i++) {
			if (i)
				buf_append_lit(b, ",");
			json_write_str(b, req->stop[i]);
		}
		buf_append_lit(b, "]");
	}
	if (req->user.n) {
		buf_append_lit(b, ",\"user\":");
		json_write_str(b, req->user);
	}
	/* usage is always asked for: it is what the gateway bills */
	if (req->stream)
		buf_append_lit(b, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
	return buf_append_lit(b, "}");
}

/* ---- answer: OpenAI → canonical ---- */

static void read_usage(struct json_val u, struct canon_usage *out)
{
	struct json_val d;
	if (u.type != JSON_OBJECT)
		return;
	out->seen = true;
	get_i64(u, "prompt_tokens", &out->prompt_tokens);
	get_i64(u, "completion_tokens", &out->completion_tokens);
	if (json_obj_get(u, "prompt_tokens_details", &d) && d.type == JSON_OBJECT &&
	    get_i64(d, "cached_tokens", &out->cached_prompt_tokens))
		out->cached_prompt_tokens = UMB_MIN(out->cached_prompt_tokens, out->prompt_tokens);
}

int openai_resp_decode(struct arena *a, struct str body, struct canon_resp *out)
{
	struct json_val root, v, choices, ch, msg;
	struct json_err err;
	*out = (struct canon_resp){ 0 };
	if (json_parse(body.p, body.n, &root, &err) || root.type != JSON_OBJECT ||
	    !json_obj_get(root, "choices", &choices) || choices.type != JSON_ARRAY)
		return UMB_ERR;
	if (json_obj_get(root, "id", &v))
		out->id = canon_decode(a, &v);
	if (json_obj_get(root, "model", &v))
		out->model = canon_decode(a, &v);
	if (json_obj_get(root, "usage", &v))
		read_usage(v, &out->usage);
	struct json_iter it;
	json_iter_init(&it, choices);
	if (!json_arr_next(&it, &ch) || ch.type != JSON_OBJECT || !json_obj_get(ch, "message", &msg) ||
	    msg.type != JSON_OBJECT)
		return UMB_ERR;
	if (json_obj_get(ch, "finish_reason", &v) && v.type == JSON_STRING)
		out->finish = canon_finish_from_openai(canon_decode(a, &v));
	struct canon_msg m = { .role = CANON_ASSISTANT };
	char why[8];
	static const char *const keys[] = { "content", "tool_calls" };
	struct json_val mv[2];
	json_obj_pick(msg, keys, 2, mv);
	if (assistant_parts(a, mv[0], mv[1], &m, 0, false, why, sizeof why))
		return UMB_ERR;
	out->parts = m.parts;
	out->n_parts = m.n_parts;
	if (!out->finish)
		out->finish = CANON_FIN_STOP;
	return UMB_OK;
}

/* ---- answer: canonical → OpenAI ---- */

static void put_usage(struct buf *b, const struct canon_usage *u)
{
	buf_printf(b, "{\"prompt_tokens\":%llu,\"completion_tokens\":%llu,\"total_tokens\":%llu",
		   (unsigned long long)u->prompt_tokens, (unsigned long long)u->completion_tokens,
		   (unsigned long long)(u->prompt_tokens + u->completion_tokens));
	if (u->cached_prompt_tokens)
		buf_printf(b, ",\"prompt_tokens_details\":{\"cached_tokens\":%llu}",
			   (unsigned long long)u->cached_prompt_tokens);
	buf_append_lit(b, "}");
}

static void put_id(struct buf *b, struct str id)
{
	if (id.n) {
		json_write_str(b, id);
	} else {
		char tmp[40];
		snprintf(tmp, sizeof tmp, "chatcmpl-%016llx", (unsigned long long)rand_fast());
		json_write_cstr(b, tmp);
	}
}

int openai_resp_encode(const struct canon_resp *resp, struct str model, struct buf *b)
{
	buf_append_lit(b, "{\"id\":");
	put_id(b, resp->id);
	buf_printf(b, ",\"object\":\"chat.completion\",\"created\":%lld,\"model\":", (long long)time(NULL));
	json_write_str(b, model);
	buf_append_lit(b, ",\"choices\":[{\"index\":0,\"message\":");
	struct canon_msg m = { .role = CANON_ASSISTANT, .parts = resp->parts, .n_parts = resp->n_parts };
	bool first = true;
	put_assistant(b, &m, &first);
	buf_append_lit(b, ",\"logprobs\":null,\"finish_reason\":");
	json_write_cstr(b, canon_finish_openai(resp->finish));
	buf_append_lit(b, "}],\"usage\":");
	put_usage(b, &resp->usage);
	return buf_append_lit(b, "}");
}

/* ---- stream: OpenAI chunks → canonical events ---- */

static int dec_chunk(struct openai_stream_dec *d, struct json_val root)
{
	const struct canon_sink *s = d->sink;
	struct json_val v, choices, ch, delta, calls, call, fn, x;
	struct canon_ev ev;
	int rc;
	if (!d->started) {
		d->started = true;
		ev = (struct canon_ev){ .type = CEV_START };
		if (json_obj_get(root, "id", &v) && v.type == JSON_STRING)
			ev.id = str_make(v.raw.p + 1, v.raw.n - 2);
		if (json_obj_get(root, "model", &v) && v.type == JSON_STRING)
			ev.model = str_make(v.raw.p + 1, v.raw.n - 2);
		if ((rc = canon_emit(s, &ev)))
			return rc;
	}
	if (json_obj_get(root, "choices", &choices) && choices.type == JSON_ARRAY) {
		struct json_iter it;
		json_iter_init(&it, choices);
		if (json_arr_next(&it, &ch) && ch.type == JSON_OBJECT) {
			if (json_obj_get(ch, "delta", &delta) && delta.type == JSON_OBJECT) {
				if (json_obj_get(delta, "content", &v) && v.type == JSON_STRING && v.raw.n > 2) {
					buf_reset(&d->scratch);
					json_str_decode(v, &d->scratch);
					ev = (struct canon_ev){ .type = CEV_TEXT, .text = buf_str(&d->scratch) };
					if ((rc = canon_emit(s, &ev)))
						return rc;
				}
				if (json_obj_get(delta, "tool_calls", &calls) && calls.type == JSON_ARRAY) {
					struct json_iter ci;
					json_iter_init(&ci, calls);
					while (json_arr_next(&ci, &call)) {
						int64_t idx = 0;
						if (call.type != JSON_OBJECT ||
						    (json_obj_get(call, "index", &x) && json_get_i64(x, &idx)) ||
						    idx < 0 || idx >= OPENAI_MAX_TOOLS)
							return UMB_ERR;
						bool has_fn = json_obj_get(call, "function", &fn) && fn.type == JSON_OBJECT;
						if (!d->tool_started[idx]) {
							d->tool_started[idx] = 1;
							ev = (struct canon_ev){ .type = CEV_TOOL_START, .index = (int)idx };
							buf_reset(&d->scratch);
							if (json_obj_get(call, "id", &x) && x.type == JSON_STRING)
								ev.id = str_make(x.raw.p + 1, x.raw.n - 2);
							if (has_fn && json_obj_get(fn, "name", &x) && x.type == JSON_STRING) {
								json_str_decode(x, &d->scratch);
								ev.name = buf_str(&d->scratch);
							}
							if ((rc = canon_emit(s, &ev)))
								return rc;
						}
						if (has_fn && json_obj_get(fn, "arguments", &x) && x.type == JSON_STRING &&
						    x.raw.n > 2) {
							buf_reset(&d->scratch);
							json_str_decode(x, &d->scratch);
							ev = (struct canon_ev){ .type = CEV_TOOL_ARGS, .index = (int)idx,
										.text = buf_str(&d->scratch) };
							if ((rc = canon_emit(s, &ev)))
								return rc;
						}
					}
				}
			}
			if (json_obj_get(ch, "finish_reason", &v) && v.type == JSON_STRING) {
				d->finished = true;
				ev = (struct canon_ev){ .type = CEV_FINISH,
							.finish = canon_finish_from_openai(
								str_make(v.raw.p + 1, v.raw.n - 2)) };
				if ((rc = canon_emit(s, &ev)))
					return rc;
			}
		}
	}
	if (json_obj_get(root, "usage", &v) && v.type == JSON_OBJECT) {
		ev = (struct canon_ev){ .type = CEV_USAGE };
		read_usage(v, &ev.usage);
		if ((rc = canon_emit(s, &ev)))
			return rc;
	}
	return UMB_OK;
}

static int dec_event(void *arg, const struct sse_event *e)
{
	struct openai_stream_dec *d = arg;
	if (!e->has_data || d->ended)
		return 0;
	struct str data = str_trim(e->data);
	if (str_eq(data, STR("[DONE]"))) {
		d->ended = true;
		if (!d->started)
			return UMB_ERR;
		struct canon_ev ev = { .type = CEV_END };
		return canon_emit(d->sink, &ev);
	}
	struct json_val root, err;
	struct json_err jerr;
	if (json_parse(data.p, data.n, &root, &jerr) || root.type != JSON_OBJECT)
		return UMB_ERR;
	if (json_obj_get(root, "error", &err))
		return UMB_ERR; /* a mid-stream error event */
	return dec_chunk(d, root);
}

void openai_stream_dec_init(struct openai_stream_dec *d)
{
	memset(d, 0, sizeof *d);
	sse_init(&d->sse, 8u << 20);
	buf_init(&d->scratch, 0);
}

int openai_stream_dec_feed(struct openai_stream_dec *d, const char *p, size_t n,
			   const struct canon_sink *sink)
{
	d->sink = sink;
	int rc = sse_feed(&d->sse, p, n, dec_event, d);
	return rc < 0 ? rc : UMB_OK;
}

int openai_stream_dec_finish(struct openai_stream_dec *d, const struct canon_sink *sink)
{
	UMB_UNUSED(sink);
	return d->ended ? UMB_OK : UMB_ERR;
}

void openai_stream_dec_clear(struct openai_stream_dec *d)
{
	sse_clear(&d->sse);
	buf_clear(&d->scratch);
}

/* ---- stream: canonical events → OpenAI chunks ---- */

void openai_stream_enc_init(struct openai_stream_enc *e, struct str model, bool include_usage)
{
	memset(e, 0, sizeof *e);
	e->model = model;
	e->include_usage = include_usage;
	e->created = (long long)time(NULL);
}

static void chunk_head(struct openai_stream_enc *e, struct buf *b)
{
	buf_append_lit(b, "data: {\"id\":");
	json_write_cstr(b, e->id);
	buf_printf(b, ",\"object\":\"chat.completion.chunk\",\"created\":%lld,\"model\":", e->created);
	json_write_str(b, e->model);
}

/* data: {...,"choices":[{"index":0,"delta":DELTA,"logprobs":null,"finish_reason":FIN}]} */
static void chunk_delta_open(struct openai_stream_enc *e, struct buf *b)
{
	chunk_head(e, b);
	buf_append_lit(b, ",\"choices\":[{\"index\":0,\"delta\":");
}

static int chunk_delta_close(struct buf *b, const char *finish)
{
	buf_append_lit(b, ",\"logprobs\":null,\"finish_reason\":");
	if (finish)
		json_write_cstr(b, finish);
	else
		buf_append_lit(b, "null");
	return buf_append_lit(b, "}]}\n\n");
}

int openai_stream_enc_event(struct openai_stream_enc *e, const struct canon_ev *ev, struct buf *b)
{
	switch (ev->type) {
	case CEV_START:
		if (ev->id.n)
			snprintf(e->id, sizeof e->id, "%.*s", (int)UMB_MIN(ev->id.n, sizeof e->id - 1), ev->id.p);
		else
			snprintf(e->id, sizeof e->id, "chatcmpl-%016llx", (unsigned long long)rand_fast());
		/* an id is echoed into JSON: keep it printable ASCII */
		for (char *c = e->id; *c; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
				*c = '_';
		chunk_delta_open(e, b);
		buf_append_lit(b, "{\"role\":\"assistant\",\"content\":\"\"}");
		return chunk_delta_close(b, NULL);
	case CEV_TEXT:
		chunk_delta_open(e, b);
		buf_append_lit(b, "{\"content\":");
		json_write_str(b, ev->text);
		buf_append_lit(b, "}");
		return chunk_delta_close(b, NULL);
	case CEV_TOOL_START:
		chunk_delta_open(e, b);
		buf_printf(b, "{\"tool_calls\":[{\"index\":%d,\"id\":", ev->index);
		json_write_str(b, ev->id);
		buf_append_lit(b, ",\"type\":\"function\",\"function\":{\"name\":");
		json_write_str(b, ev->name);
		buf_append_lit(b, ",\"arguments\":\"\"}}]}");
		return chunk_delta_close(b, NULL);
	case CEV_TOOL_ARGS:
		chunk_delta_open(e, b);
		buf_printf(b, "{\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":", ev->index);
		json_write_str(b, ev->text);
		buf_append_lit(b, "}}]}");
		return chunk_delta_close(b, NULL);
	case CEV_FINISH:
		if (e->finished)
			return UMB_OK;
		e->finished = true;
		chunk_delta_open(e, b);
		buf_append_lit(b, "{}");
		return chunk_delta_close(b, canon_finish_openai(ev->finish));
	case CEV_USAGE:
		e->usage = ev->usage;
		return UMB_OK;
	case CEV_END:
		if (e->include_usage) {
			chunk_head(e, b);
			buf_append_lit(b, ",\"choices\":[],\"usage\":");
			put_usage(b, &e->usage);
			buf_append_lit(b, "}\n\n");
		}
		return buf_append_lit(b, "data: [DONE]\n\n");
	}
	return UMB_OK;
}
