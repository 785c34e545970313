/* anthropic_fmt.c — the Anthropic Messages format (POST /v1/messages)
 * both ways, through canon.h:
 *
 *   client dialect:  request body → canon_req (anthropic_req_decode),
 *                    canon_resp → message (anthropic_resp_encode),
 *                    canon_ev → SSE events (anthropic_stream_enc_*);
 *   upstream format: canon_req → request body (anthropic_req_encode),
 *                    message → canon_resp (anthropic_resp_decode),
 *                    SSE events → canon_ev (anthropic_stream_dec_*).
 *
 * What the canonical form cannot carry is said here once:
 *   - thinking / redacted_thinking blocks are skipped (in requests,
 *     answers and streams): their signatures only verify against the
 *     model that produced them, so they cannot cross to another vendor;
 *   - other block types (document, server tools, search results...) and
 *     server tools in `tools` are refused with a message naming them,
 *     never dropped silently; in answers and streams they are skipped;
 *   - tool_result content is text: text blocks are joined with "\n\n",
 *     an image inside a tool_result is refused.
 * Unknown top-level request members are ignored (the SDKs add new ones). */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/json.h"
#include "providers/anthropic_fmt.h"

/* One SSE event from the upstream may hold a whole tool input or a long
 * text delta; past this the stream is garbage. */
#define ANTH_MAX_EVENT_BYTES (8u << 20)

#define TRY(x)                                                                 \
	do {                                                                   \
		if ((rc = (x)))                                                \
			goto out;                                              \
	} while (0)

/* ---- shared helpers ------------------------------------------------- */

/* A JSON string's decoded text. Without escapes it is a view into the
 * JSON bytes themselves (unless copy is set); otherwise, or when copy is
 * set, a copy in the arena. A non-string gives "". */
static struct str anth_str(struct arena *a, struct json_val v, bool copy)
{
	if (v.type != JSON_STRING || v.raw.n < 2)
		return STR("");
	struct str in = str_make(v.raw.p + 1, v.raw.n - 2);
	if (!memchr(in.p, '\\', in.n))
		return copy ? str_make(arena_strndup(a, in.p, in.n), in.n) : in;
	struct buf b;
	buf_init(&b, 0);
	struct str s = STR("");
	if (json_str_decode(v, &b) == UMB_OK)
		s = str_make(arena_strndup(a, b.p ? b.p : "", b.n), b.n);
	buf_clear(&b);
	return s;
}

/* A non-negative integer member, or 0; *present says whether the member
 * was a usable count (null, negative or fractional values are not). */
static uint64_t anth_u64(struct json_val obj, const char *key, bool *present)
{
	struct json_val v;
	int64_t x;
	if (present)
		*present = false;
	if (!json_obj_get(obj, key, &v) || json_get_i64(v, &x) || x < 0)
		return 0;
	if (present)
		*present = true;
	return (uint64_t)x;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t sat_sub(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

/* Apply an Anthropic usage object to u. Members that are present replace
 * their part (message_delta counts are cumulative, and the newer API
 * repeats the input counts there); absent ones keep what was known.
 * prompt_tokens is the sum of the three input counts (canon.h). */
static void usage_apply(struct json_val uo, struct canon_usage *u)
{
	if (uo.type != JSON_OBJECT)
		return;
	uint64_t in = sat_sub(sat_sub(u->prompt_tokens, u->cached_prompt_tokens),
			      u->cache_write_tokens);
	uint64_t rd = u->cached_prompt_tokens, wr = u->cache_write_tokens;
	bool has;
	uint64_t x = anth_u64(uo, "input_tokens", &has);
	if (has)
		in = x;
	x = anth_u64(uo, "cache_read_input_tokens", &has);
	if (has)
		rd = x;
	x = anth_u64(uo, "cache_creation_input_tokens", &has);
	if (has)
		wr = x;
	x = anth_u64(uo, "output_tokens", &has);
	if (has)
		u->completion_tokens = x;
	u->prompt_tokens = sat_add(sat_add(in, rd), wr);
	u->cached_prompt_tokens = rd;
	u->cache_write_tokens = wr;
	u->seen = true;
}

/* Write an Anthropic usage object: input_tokens counts only the prompt
 * tokens that were neither read from nor written to a cache. */
static int usage_write(struct buf *b, const struct canon_usage *u)
{
	uint64_t in = sat_sub(sat_sub(u->prompt_tokens, u->cached_prompt_tokens),
			      u->cache_write_tokens);
	return buf_printf(b,
			  "{\"input_tokens\":%" PRIu64 ",\"cache_creation_input_tokens\":%" PRIu64
			  ",\"cache_read_input_tokens\":%" PRIu64 ",\"output_tokens\":%" PRIu64 "}",
			  in, u->cache_write_tokens, u->cached_prompt_tokens, u->completion_tokens);
}

/* A double as the shortest of %.15g / %.17g that reads back the same. */
static int write_double(struct buf *b, double d)
{
	char tmp[40];
	if (!isfinite(d))
		return UMB_ERR;
	snprintf(tmp, sizeof tmp, "%.15g", d);
	if (strtod(tmp, NULL) != d)
		snprintf(tmp, sizeof tmp, "%.17g", d);
	return buf_append_cstr(b, tmp);
}

/* A message id shown to an Anthropic client: the upstream's own when it
 * is one ("msg_..."), else "msg_" + the letters and digits of the
 * upstream's id (so logs on both sides still match), else random. */
static void message_id(struct str up, char *out, size_t cap)
{
	static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	size_t n = 0;
	if (up.n >= 4 && !memcmp(up.p, "msg_", 4))
		up = str_make(up.p + 4, up.n - 4);
	memcpy(out, "msg_", 4);
	n = 4;
	for (size_t i = 0; i < up.n && n + 1 < cap; i++) {
		char c = up.p[i];
		if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    c == '_' || c == '-')
			out[n++] = c;
	}
	if (n == 4) {
		unsigned char r[24];
		rand_bytes(r, sizeof r);
		for (size_t i = 0; i < sizeof r && n + 1 < cap; i++)
			out[n++] = b62[r[i] % 62];
	}
	out[n] = 0;
}

/* A JSON string of text that came through the canonical form: NULL-safe
 * (events from other decoders leave fields STR_NULL) and lossy (bytes
 * that are not UTF-8 become U+FFFD rather than invalid JSON). */
static int write_text(struct buf *b, struct str s)
{
	return json_write_str_lossy(b, s.p ? s : STR(""));
}

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* s without JSON whitespace at either end */
static struct str trim_ws(struct str s)
{
	while (s.n && is_ws(s.p[s.n - 1]))
		s.n--;
	while (s.n && is_ws(s.p[0]))
		s = str_make(s.p + 1, s.n - 1);
	return s;
}

/* A tool call's input: the args JSON text, "" meaning {}. Anthropic wants
 * an object; anything else cannot be expressed (UMB_ERR). */
static int write_input(struct buf *b, struct str args)
{
	struct json_val v;
	struct str t = trim_ws(args);
	if (t.n == 0)
		return buf_append_lit(b, "{}");
	if (json_parse(t.p, t.n, &v, NULL) || v.type != JSON_OBJECT)
		return UMB_ERR;
	return buf_append_str(b, t);
}

/* ---- request decode -------------------------------------------------- */

/* Decoding state: the arena and where the message for the client goes. */
struct rdec {
	struct arena *a;
	char *why;
	size_t why_n;
};

static int __attribute__((format(printf, 2, 3))) rfail(struct rdec *d, const char *fmt, ...)
{
	if (d->why && d->why_n) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(d->why, d->why_n, fmt, ap);
		va_end(ap);
	}
	return UMB_ERR;
}

/* A client string quoted in a message: at most 40 printable ASCII bytes. */
static const char *clip(struct json_val v, char out[48])
{
	size_t n = 0;
	struct str s = v.type == JSON_STRING && v.raw.n >= 2 ? str_make(v.raw.p + 1, v.raw.n - 2)
							       : v.raw;
	for (size_t i = 0; i < s.n && n < 40; i++)
		out[n++] = s.p[i] >= 0x20 && s.p[i] < 0x7f ? s.p[i] : '?';
	if (s.n > 40)
		out[n++] = '.', out[n++] = '.', out[n++] = '.';
	out[n] = 0;
	return out;
}

static const char *type_name(enum json_type t)
{
	switch (t) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_NUMBER:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	case JSON_INVALID:
		break;
	}
	return "invalid";
}

static size_t arr_len(struct json_val arr)
{
	struct json_iter it;
	struct json_val v;
	size_t n = 0;
	json_iter_init(&it, arr);
	while (json_arr_next(&it, &v))
		n++;
	return n;
}

/* A required string member of obj; path names obj. */
static int req_string(struct rdec *d, struct json_val obj, const char *path, const char *key,
		      struct json_val *out)
{
	if (!json_obj_get(obj, key, out))
		return rfail(d, "%s.%s: Field required", path, key);
	if (out->type != JSON_STRING)
		return rfail(d, "%s.%s: must be a string, not %s", path, key, type_name(out->type));
	return UMB_OK;
}

/* An optional member that is absent or null counts as not given. */
static bool opt_get(struct json_val obj, const char *key, struct json_val *out)
{
	return json_obj_get(obj, key, out) && out->type != JSON_NULL;
}

/* Block types Anthropic documents that the canonical form cannot carry. */
static bool block_known_unsupported(struct json_val t)
{
	static const char *const names[] = {
		"document", "search_result", "server_tool_use", "web_search_tool_result",
		"web_fetch_tool_result", "code_execution_tool_result",
		"bash_code_execution_tool_result", "text_editor_code_execution_tool_result",
		"mcp_tool_use", "mcp_tool_result", "container_upload", "tool_reference",
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(names); i++)
		if (json_str_eq(t, names[i]))
			return true;
	return false;
}

static bool block_skipped(struct json_val t)
{
	return json_str_eq(t, "thinking") || json_str_eq(t, "redacted_thinking");
}

/* text blocks of a system prompt or tool_result, joined with "\n\n" */
static int join_text_blocks(struct rdec *d, struct json_val arr, const char *path,
			    struct str *out)
{
	struct json_iter it;
	struct json_val blk, t, txt;
	struct buf b;
	size_t i = 0;
	int rc = UMB_OK;
	char q[48];

	buf_init(&b, 0);
	json_iter_init(&it, arr);
	for (; json_arr_next(&it, &blk); i++) {
		if (blk.type != JSON_OBJECT) {
			rc = rfail(d, "%s.%zu: must be an object, not %s", path, i, type_name(blk.type));
			goto out;
		}
		if (!json_obj_get(blk, "type", &t)) {
			rc = rfail(d, "%s.%zu.type: Field required", path, i);
			goto out;
		}
		if (!json_str_eq(t, "text")) {
			rc = rfail(d, "%s.%zu: block type '%s' is not supported here (text only)", path,
				   i, clip(t, q));
			goto out;
		}
		char sub[96];
		snprintf(sub, sizeof sub, "%s.%zu", path, i);
		if ((rc = req_string(d, blk, sub, "text", &txt)))
			goto out;
		if (b.n)
			TRY(buf_append_lit(&b, "\n\n"));
		TRY(json_str_decode(txt, &b));
	}
	*out = str_make(arena_strndup(d->a, b.p ? b.p : "", b.n), b.n);
out:
	buf_clear(&b);
	return rc;
}

/* An image block's source: base64 (media_type + data) or url. The file
 * source (Files API ids) is refused: no other vendor can fetch it. */
static int dec_image(struct rdec *d, struct json_val blk, const char *path, struct canon_part *p)
{
	struct json_val src, t, v;
	char sub[112], q[48];
	if (!json_obj_get(blk, "source", &src))
		return rfail(d, "%s.source: Field required", path);
	if (src.type != JSON_OBJECT)
		return rfail(d, "%s.source: must be an object, not %s", path, type_name(src.type));
	snprintf(sub, sizeof sub, "%s.source", path);
	if (req_string(d, src, sub, "type", &t))
		return UMB_ERR;
	p->type = CANON_IMAGE;
	if (json_str_eq(t, "base64")) {
		if (req_string(d, src, sub, "media_type", &v))
			return UMB_ERR;
		p->media_type = anth_str(d->a, v, false);
		if (req_string(d, src, sub, "data", &v))
			return UMB_ERR;
		p->data = anth_str(d->a, v, false);
		return UMB_OK;
	}
	if (json_str_eq(t, "url")) {
		if (req_string(d, src, sub, "url", &v))
			return UMB_ERR;
		p->url = anth_str(d->a, v, false);
		return UMB_OK;
	}
	return rfail(d, "%s.source.type: '%s' is not supported (base64 or url)", path, clip(t, q));
}

/* An assistant's tool call; its input object is kept as the JSON text
 * the client sent (args), never re-serialised. */
static int dec_tool_use(struct rdec *d, struct json_val blk, const char *path, struct canon_part *p)
{
	struct json_val v;
	p->type = CANON_TOOL_CALL;
	if (req_string(d, blk, path, "id", &v))
		return UMB_ERR;
	p->id = anth_str(d->a, v, false);
	if (req_string(d, blk, path, "name", &v))
		return UMB_ERR;
	p->name = anth_str(d->a, v, false);
	if (!json_obj_get(blk, "input", &v))
		return rfail(d, "%s.input: Field required", path);
	if (v.type != JSON_OBJECT)
		return rfail(d, "%s.input: must be an object, not %s", path, type_name(v.type));
	p->args = v.raw; /* kept as JSON text */
	return UMB_OK;
}

/* A user's tool result: the call id, the result as text (a string, or
 * text blocks joined), is_error. Anthropic carries no name: forward.c
 * fills it from the call (canon_fill_result_names) before translating. */
static int dec_tool_result(struct rdec *d, struct json_val blk, const char *path,
			   struct canon_part *p)
{
	struct json_val v;
	char sub[112];
	p->type = CANON_TOOL_RESULT;
	if (req_string(d, blk, path, "tool_use_id", &v))
		return UMB_ERR;
	p->id = anth_str(d->a, v, false);
	p->text = STR("");
	if (opt_get(blk, "content", &v)) {
		if (v.type == JSON_STRING) {
			p->text = anth_str(d->a, v, false);
		} else if (v.type == JSON_ARRAY) {
			snprintf(sub, sizeof sub, "%s.content", path);
			if (join_text_blocks(d, v, sub, &p->text))
				return UMB_ERR;
		} else {
			return rfail(d, "%s.content: must be a string or an array, not %s", path,
				     type_name(v.type));
		}
	}
	if (opt_get(blk, "is_error", &v)) {
		if (v.type != JSON_TRUE && v.type != JSON_FALSE)
			return rfail(d, "%s.is_error: must be a boolean", path);
		p->is_error = v.type == JSON_TRUE;
	}
	return UMB_OK;
}

/* One content block of message `path`; *skip set for blocks dropped on
 * purpose (thinking). */
static int dec_block(struct rdec *d, struct json_val blk, enum canon_role role, const char *path,
		     struct canon_part *p, bool *skip)
{
	struct json_val t, v;
	char q[48];
	*skip = false;
	memset(p, 0, sizeof *p);
	if (blk.type != JSON_OBJECT)
		return rfail(d, "%s: must be an object, not %s", path, type_name(blk.type));
	if (!json_obj_get(blk, "type", &t))
		return rfail(d, "%s.type: Field required", path);
	if (t.type != JSON_STRING)
		return rfail(d, "%s.type: must be a string, not %s", path, type_name(t.type));
	if (json_str_eq(t, "text")) {
		if (req_string(d, blk, path, "text", &v))
			return UMB_ERR;
		p->type = CANON_TEXT;
		p->text = anth_str(d->a, v, false);
		return UMB_OK;
	}
	if (json_str_eq(t, "image"))
		return dec_image(d, blk, path, p);
	if (json_str_eq(t, "tool_use")) {
		if (role != CANON_ASSISTANT)
			return rfail(d, "%s: tool_use blocks belong in assistant messages", path);
		return dec_tool_use(d, blk, path, p);
	}
	if (json_str_eq(t, "tool_result")) {
		if (role != CANON_USER)
			return rfail(d, "%s: tool_result blocks belong in user messages", path);
		return dec_tool_result(d, blk, path, p);
	}
	if (block_skipped(t)) {
		*skip = true;
		return UMB_OK;
	}
	if (block_known_unsupported(t))
		return rfail(d, "%s: block type '%s' is not supported by this gateway", path,
			     clip(t, q));
	return rfail(d, "%s: unknown block type '%s'", path, clip(t, q));
}

/* messages[i] into out: its role and its parts in order (string content
 * is one text part). Parts live in the arena, strings in the body or
 * the arena. */
static int dec_message(struct rdec *d, struct json_val m, size_t i, struct canon_msg *out)
{
	struct json_val role, content, blk;
	char path[64], sub[96], q[48];
	snprintf(path, sizeof path, "messages.%zu", i);
	if (m.type != JSON_OBJECT)
		return rfail(d, "%s: must be an object, not %s", path, type_name(m.type));
	if (req_string(d, m, path, "role", &role))
		return UMB_ERR;
	if (json_str_eq(role, "user"))
		out->role = CANON_USER;
	else if (json_str_eq(role, "assistant"))
		out->role = CANON_ASSISTANT;
	else
		return rfail(d, "%s.role: must be 'user' or 'assistant', not '%s'", path,
			     clip(role, q));
	if (!json_obj_get(m, "content", &content))
		return rfail(d, "%s.content: Field required", path);
	if (content.type == JSON_STRING) {
		out->parts = arena_alloc(d->a, sizeof *out->parts);
		out->parts[0].type = CANON_TEXT;
		out->parts[0].text = anth_str(d->a, content, false);
		out->n_parts = 1;
		return UMB_OK;
	}
	if (content.type != JSON_ARRAY)
		return rfail(d, "%s.content: must be a string or an array, not %s", path,
			     type_name(content.type));
	size_t n = arr_len(content), k = 0, j = 0;
	out->parts = arena_alloc(d->a, (n ? n : 1) * sizeof *out->parts);
	struct json_iter it;
	json_iter_init(&it, content);
	for (; json_arr_next(&it, &blk); j++) {
		bool skip;
		snprintf(sub, sizeof sub, "%s.content.%zu", path, j);
		if (dec_block(d, blk, out->role, sub, &out->parts[k], &skip))
			return UMB_ERR;
		if (!skip)
			k++;
	}
	out->n_parts = k;
	return UMB_OK;
}

/* The messages array: at least one (the API refuses none). Roles need
 * not alternate here: the encoders merge consecutive turns. */
static int dec_messages(struct rdec *d, struct json_val v, struct canon_req *out)
{
	if (v.type != JSON_ARRAY)
		return rfail(d, "messages: must be an array, not %s", type_name(v.type));
	size_t n = arr_len(v), i = 0;
	if (n == 0)
		return rfail(d, "messages: at least one message is required");
	out->msgs = arena_alloc(d->a, n * sizeof *out->msgs);
	struct json_iter it;
	struct json_val m;
	json_iter_init(&it, v);
	for (; json_arr_next(&it, &m); i++)
		if (dec_message(d, m, i, &out->msgs[i]))
			return UMB_ERR;
	out->n_msgs = n;
	return UMB_OK;
}

/* system: a string, or text blocks (their cache_control is dropped:
 * caching hints do not cross vendors). */
static int dec_system(struct rdec *d, struct json_val v, struct canon_req *out)
{
	if (v.type == JSON_STRING) {
		out->system = anth_str(d->a, v, false);
		return UMB_OK;
	}
	if (v.type == JSON_ARRAY)
		return join_text_blocks(d, v, "system", &out->system);
	return rfail(d, "system: must be a string or an array of text blocks, not %s",
		     type_name(v.type));
}

/* One client tool. Server tools (web search, code execution...) carry
 * a versioned type and no schema; they are refused by name. */
static int dec_tool(struct rdec *d, struct json_val t, size_t i, struct canon_tool *out)
{
	struct json_val v;
	char path[48], q[48];
	snprintf(path, sizeof path, "tools.%zu", i);
	if (t.type != JSON_OBJECT)
		return rfail(d, "%s: must be an object, not %s", path, type_name(t.type));
	if (opt_get(t, "type", &v) && !json_str_eq(v, "custom"))
		return rfail(d, "%s: tool type '%s' is not supported by this gateway (custom tools only)",
			     path, clip(v, q));
	if (req_string(d, t, path, "name", &v))
		return UMB_ERR;
	out->name = anth_str(d->a, v, false);
	if (out->name.n == 0)
		return rfail(d, "%s.name: must not be empty", path);
	out->description = STR("");
	if (opt_get(t, "description", &v)) {
		if (v.type != JSON_STRING)
			return rfail(d, "%s.description: must be a string, not %s", path,
				     type_name(v.type));
		out->description = anth_str(d->a, v, false);
	}
	if (!json_obj_get(t, "input_schema", &v))
		return rfail(d, "%s.input_schema: Field required", path);
	if (v.type != JSON_OBJECT)
		return rfail(d, "%s.input_schema: must be an object, not %s", path, type_name(v.type));
	out->schema = v.raw;
	return UMB_OK;
}

static int dec_tools(struct rdec *d, struct json_val v, struct canon_req *out)
{
	if (v.type != JSON_ARRAY)
		return rfail(d, "tools: must be an array, not %s", type_name(v.type));
	size_t n = arr_len(v), i = 0;
	out->tools = arena_alloc(d->a, (n ? n : 1) * sizeof *out->tools);
	struct json_iter it;
	struct json_val t;
	json_iter_init(&it, v);
	for (; json_arr_next(&it, &t); i++)
		if (dec_tool(d, t, i, &out->tools[i]))
			return UMB_ERR;
	out->n_tools = n;
	return UMB_OK;
}

/* tool_choice {type: auto|any|tool|none, name, disable_parallel_tool_use}
 * into the canonical choice; the named tool is checked once all members
 * are read (tools may come after tool_choice). */
static int dec_tool_choice(struct rdec *d, struct json_val v, struct canon_req *out)
{
	struct json_val t, x;
	char q[48];
	if (v.type != JSON_OBJECT)
		return rfail(d, "tool_choice: must be an object, not %s", type_name(v.type));
	if (req_string(d, v, "tool_choice", "type", &t))
		return UMB_ERR;
	if (json_str_eq(t, "auto")) {
		out->tool_choice = CANON_TC_AUTO;
	} else if (json_str_eq(t, "any")) {
		out->tool_choice = CANON_TC_ANY;
	} else if (json_str_eq(t, "none")) {
		out->tool_choice = CANON_TC_NONE;
	} else if (json_str_eq(t, "tool")) {
		out->tool_choice = CANON_TC_TOOL;
		if (req_string(d, v, "tool_choice", "name", &x))
			return UMB_ERR;
		out->tool_choice_name = anth_str(d->a, x, false);
	} else {
		return rfail(d, "tool_choice.type: must be 'auto', 'any', 'tool' or 'none', not '%s'",
			     clip(t, q));
	}
	if (opt_get(v, "disable_parallel_tool_use", &x)) {
		if (x.type != JSON_TRUE && x.type != JSON_FALSE)
			return rfail(d, "tool_choice.disable_parallel_tool_use: must be a boolean");
		out->no_parallel_tools = x.type == JSON_TRUE;
	}
	return UMB_OK;
}

/* stop_sequences: strings, at most CANON_MAX_STOP (the canonical form
 * holds a fixed array; OpenAI itself allows only 4). */
static int dec_stop(struct rdec *d, struct json_val v, struct canon_req *out)
{
	struct json_iter it;
	struct json_val s;
	size_t i = 0;
	if (v.type != JSON_ARRAY)
		return rfail(d, "stop_sequences: must be an array of strings, not %s",
			     type_name(v.type));
	json_iter_init(&it, v);
	for (; json_arr_next(&it, &s); i++) {
		if (s.type != JSON_STRING)
			return rfail(d, "stop_sequences.%zu: must be a string, not %s", i,
				     type_name(s.type));
		if (i >= CANON_MAX_STOP)
			return rfail(d, "stop_sequences: at most %d are supported", CANON_MAX_STOP);
		out->stop[i] = anth_str(d->a, s, false);
	}
	out->n_stop = i;
	return UMB_OK;
}

/* A number member in [lo, hi]. */
static int dec_number(struct rdec *d, struct json_val v, const char *key, double lo, double hi,
		      double *out)
{
	if (v.type != JSON_NUMBER || json_get_double(v, out))
		return rfail(d, "%s: must be a number, not %s", key, type_name(v.type));
	if (*out < lo || *out > hi)
		return rfail(d, "%s: must be between %g and %g", key, lo, hi);
	return UMB_OK;
}

/* metadata.user_id is the end user (OpenAI's `user`); other metadata
 * members are the API's business, not ours. */
static int dec_metadata(struct rdec *d, struct json_val v, struct canon_req *out)
{
	struct json_val u;
	if (v.type != JSON_OBJECT)
		return rfail(d, "metadata: must be an object, not %s", type_name(v.type));
	if (opt_get(v, "user_id", &u)) {
		if (u.type != JSON_STRING)
			return rfail(d, "metadata.user_id: must be a string, not %s", type_name(u.type));
		out->user = anth_str(d->a, u, false);
	}
	return UMB_OK;
}

/* One top-level member; unknown ones are ignored. */
static int dec_member(struct rdec *d, struct str k, struct json_val v, struct canon_req *out,
		      bool *has_msgs, bool *has_max)
{
	int64_t i;
	if (json_key_eq(k, "messages")) {
		*has_msgs = true;
		return dec_messages(d, v, out);
	}
	if (json_key_eq(k, "max_tokens")) {
		if (json_get_i64(v, &i) || i < 1)
			return rfail(d, "max_tokens: must be an integer >= 1");
		out->max_tokens = i;
		*has_max = true;
		return UMB_OK;
	}
	if (v.type == JSON_NULL)
		return UMB_OK; /* an optional member given as null: not given */
	if (json_key_eq(k, "model")) {
		if (v.type != JSON_STRING)
			return rfail(d, "model: must be a string, not %s", type_name(v.type));
		out->model = anth_str(d->a, v, false);
	} else if (json_key_eq(k, "system")) {
		return dec_system(d, v, out);
	} else if (json_key_eq(k, "tools")) {
		return dec_tools(d, v, out);
	} else if (json_key_eq(k, "tool_choice")) {
		return dec_tool_choice(d, v, out);
	} else if (json_key_eq(k, "stop_sequences")) {
		return dec_stop(d, v, out);
	} else if (json_key_eq(k, "temperature")) {
		out->has_temperature = true;
		return dec_number(d, v, "temperature", 0, 1, &out->temperature);
	} else if (json_key_eq(k, "top_p")) {
		out->has_top_p = true;
		return dec_number(d, v, "top_p", 0, 1, &out->top_p);
	} else if (json_key_eq(k, "top_k")) {
		if (json_get_i64(v, &i) || i < 0)
			return rfail(d, "top_k: must be an integer >= 0");
		out->has_top_k = true;
		out->top_k = i;
	} else if (json_key_eq(k, "stream")) {
		if (v.type != JSON_TRUE && v.type != JSON_FALSE)
			return rfail(d, "stream: must be a boolean, not %s", type_name(v.type));
		out->stream = v.type == JSON_TRUE;
	} else if (json_key_eq(k, "metadata")) {
		return dec_metadata(d, v, out);
	}
	return UMB_OK;
}

/* The whole body is validated by json_parse first (strict UTF-8, depth
 * cap), so everything after navigates text known to be JSON. Refusals
 * name the member path the way the API does ("messages.2.content.0:
 * ..."), quoting client strings only clipped and printable. */
int anthropic_req_decode(struct arena *a, struct str body, struct canon_req *out, char *why,
			 size_t why_n)
{
	struct rdec d = { a, why, why_n };
	struct json_val root, v;
	struct json_err err;
	struct json_iter it;
	struct str k;
	bool has_msgs = false, has_max = false;

	memset(out, 0, sizeof *out);
	out->model = out->system = out->user = STR("");
	if (why && why_n)
		why[0] = 0;
	if (!body.p || json_parse(body.p, body.n, &root, &err))
		return rfail(&d, "the body is not valid JSON (%s at byte %zu)",
			     body.p ? err.msg : "empty", body.p ? err.off : 0);
	if (root.type != JSON_OBJECT)
		return rfail(&d, "the body must be a JSON object, not %s", type_name(root.type));
	json_iter_init(&it, root);
	while (json_obj_next(&it, &k, &v))
		if (dec_member(&d, k, v, out, &has_msgs, &has_max))
			return UMB_ERR;
	if (!has_msgs)
		return rfail(&d, "messages: Field required");
	if (!has_max)
		return rfail(&d, "max_tokens: Field required");
	if (out->tool_choice == CANON_TC_TOOL) {
		bool found = false;
		for (size_t i = 0; i < out->n_tools && !found; i++)
			found = str_eq(out->tools[i].name, out->tool_choice_name);
		if (!found)
			return rfail(&d, "tool_choice.name: no tool named '%.*s' in tools",
				     (int)UMB_MIN(out->tool_choice_name.n, 64),
				     out->tool_choice_name.p);
	}
	return UMB_OK;
}

/* ---- request encode -------------------------------------------------- */

/* Does this part become a content block? Empty text does not: Anthropic
 * rejects empty text blocks, and OpenAI assistant turns that only call
 * tools often carry content "". */
static bool part_emits(const struct canon_part *p)
{
	return p->type != CANON_TEXT || p->text.n > 0;
}

static size_t msg_emits(const struct canon_msg *m)
{
	size_t n = 0;
	for (size_t i = 0; i < m->n_parts; i++)
		n += part_emits(&m->parts[i]);
	return n;
}

/* One canonical part as a content block. Fails only on a full buffer or
 * tool arguments that are not a JSON object (see write_input). */
static int enc_part(struct buf *b, const struct canon_part *p)
{
	int rc = UMB_OK;
	switch (p->type) {
	case CANON_TEXT:
		TRY(buf_append_lit(b, "{\"type\":\"text\",\"text\":"));
		TRY(write_text(b, p->text));
		break;
	case CANON_IMAGE:
		if (p->data.n) {
			TRY(buf_append_lit(b, "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":"));
			TRY(write_text(b, p->media_type));
			TRY(buf_append_lit(b, ",\"data\":"));
			TRY(write_text(b, p->data));
		} else {
			TRY(buf_append_lit(b, "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":"));
			TRY(write_text(b, p->url));
		}
		TRY(buf_append_lit(b, "}"));
		break;
	case CANON_TOOL_CALL:
		TRY(buf_append_lit(b, "{\"type\":\"tool_use\",\"id\":"));
		TRY(write_text(b, p->id));
		TRY(buf_append_lit(b, ",\"name\":"));
		TRY(write_text(b, p->name));
		TRY(buf_append_lit(b, ",\"input\":"));
		TRY(write_input(b, p->args));
		break;
	case CANON_TOOL_RESULT:
		TRY(buf_append_lit(b, "{\"type\":\"tool_result\",\"tool_use_id\":"));
		TRY(write_text(b, p->id));
		if (p->text.n) {
			TRY(buf_append_lit(b, ",\"content\":"));
			TRY(write_text(b, p->text));
		}
		if (p->is_error)
			TRY(buf_append_lit(b, ",\"is_error\":true"));
		break;
	}
	rc = buf_append_lit(b, "}");
out:
	return rc;
}

/* Consecutive turns of one role as one message (Anthropic wants turns to
 * alternate, and every result of a parallel call in the one user turn
 * after the call). Within a user turn the tool_result blocks come first:
 * the API requires them before any text. */
static int enc_turn(struct buf *b, const struct canon_msg *m, size_t n)
{
	int rc = UMB_OK;
	bool first = true;
	TRY(buf_append_cstr(b, m[0].role == CANON_USER ? "{\"role\":\"user\",\"content\":["
						       : "{\"role\":\"assistant\",\"content\":["));
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			for (size_t j = 0; j < m[i].n_parts; j++) {
				const struct canon_part *p = &m[i].parts[j];
				if (!part_emits(p) || (p->type == CANON_TOOL_RESULT) != (pass == 0))
					continue;
				if (!first)
					TRY(buf_append_lit(b, ","));
				first = false;
				TRY(enc_part(b, p));
			}
		}
	}
	rc = buf_append_lit(b, "]}");
out:
	return rc;
}

/* The messages array: parts that make no block are skipped (so are turns
 * left empty), and runs of one role become one turn (enc_turn). */
static int enc_messages(struct buf *b, const struct canon_req *req)
{
	int rc = UMB_OK;
	bool first = true;
	size_t i = 0;
	TRY(buf_append_lit(b, ",\"messages\":["));
	while (i < req->n_msgs) {
		if (!msg_emits(&req->msgs[i])) {
			i++;
			continue;
		}
		/* the turn: i and the next messages of the same role (empty
		 * ones in between do not break it) */
		size_t k = i + 1;
		while (k < req->n_msgs &&
		       (req->msgs[k].role == req->msgs[i].role || !msg_emits(&req->msgs[k])))
			k++;
		while (k > i + 1 && !msg_emits(&req->msgs[k - 1]))
			k--;
		if (!first)
			TRY(buf_append_lit(b, ","));
		first = false;
		TRY(enc_turn(b, &req->msgs[i], k - i));
		i = k;
	}
	rc = buf_append_lit(b, "]");
out:
	return rc;
}

/* tools (name, description, input_schema) and tool_choice. The parallel
 * flag rides on the choice: without an explicit choice it needs auto. */
static int enc_tools(struct buf *b, const struct canon_req *req)
{
	int rc = UMB_OK;
	TRY(buf_append_lit(b, ",\"tools\":["));
	for (size_t i = 0; i < req->n_tools; i++) {
		const struct canon_tool *t = &req->tools[i];
		if (i)
			TRY(buf_append_lit(b, ","));
		TRY(buf_append_lit(b, "{\"name\":"));
		TRY(write_text(b, t->name));
		if (t->description.n) {
			TRY(buf_append_lit(b, ",\"description\":"));
			TRY(write_text(b, t->description));
		}
		/* Anthropic requires an object schema with a type */
		struct str s = trim_ws(t->schema);
		struct json_val v;
		TRY(buf_append_lit(b, ",\"input_schema\":"));
		if (s.n == 0 || json_parse(s.p, s.n, &v, NULL) || v.type != JSON_OBJECT ||
		    str_eq(s, STR("{}")))
			TRY(buf_append_lit(b, "{\"type\":\"object\",\"properties\":{}}"));
		else
			TRY(buf_append_str(b, s));
		TRY(buf_append_lit(b, "}"));
	}
	TRY(buf_append_lit(b, "]"));
	/* tool_choice only with tools: the API refuses it alone */
	const char *tc = NULL;
	switch (req->tool_choice) {
	case CANON_TC_UNSET:
		tc = req->no_parallel_tools ? "auto" : NULL;
		break;
	case CANON_TC_AUTO:
		tc = "auto";
		break;
	case CANON_TC_ANY:
		tc = "any";
		break;
	case CANON_TC_NONE:
		tc = "none";
		break;
	case CANON_TC_TOOL:
		tc = "tool";
		break;
	}
	if (!tc)
		goto out;
	TRY(buf_printf(b, ",\"tool_choice\":{\"type\":\"%s\"", tc));
	if (req->tool_choice == CANON_TC_TOOL) {
		TRY(buf_append_lit(b, ",\"name\":"));
		TRY(write_text(b, req->tool_choice_name));
	}
	if (req->no_parallel_tools && req->tool_choice != CANON_TC_NONE)
		TRY(buf_append_lit(b, ",\"disable_parallel_tool_use\":true"));
	rc = buf_append_lit(b, "}");
out:
	return rc;
}

/* The sampling and stream members, each only when the request set it:
 * an absent member keeps the API's own default. */
static int enc_params(struct buf *b, const struct canon_req *req)
{
	int rc = UMB_OK;
	if (req->n_stop) {
		TRY(buf_append_lit(b, ",\"stop_sequences\":["));
		for (size_t i = 0; i < req->n_stop && i < CANON_MAX_STOP; i++) {
			if (i)
				TRY(buf_append_lit(b, ","));
			TRY(write_text(b, req->stop[i]));
		}
		TRY(buf_append_lit(b, "]"));
	}
	if (req->has_temperature) {
		TRY(buf_append_lit(b, ",\"temperature\":"));
		TRY(write_double(b, req->temperature));
	}
	if (req->has_top_p) {
		TRY(buf_append_lit(b, ",\"top_p\":"));
		TRY(write_double(b, req->top_p));
	}
	if (req->has_top_k)
		TRY(buf_printf(b, ",\"top_k\":%" PRId64, req->top_k));
	if (req->stream)
		TRY(buf_append_lit(b, ",\"stream\":true"));
	if (req->user.n) {
		TRY(buf_append_lit(b, ",\"metadata\":{\"user_id\":"));
		TRY(write_text(b, req->user));
		TRY(buf_append_lit(b, "}"));
	}
out:
	return rc;
}

/* Members in the API's documented order; out is left as it was on any
 * failure, never with half a body in it. */
int anthropic_req_encode(const struct canon_req *req, struct str model, struct buf *out)
{
	int rc = UMB_OK;
	size_t n0 = out->n;
	TRY(buf_append_lit(out, "{\"model\":"));
	TRY(write_text(out, model));
	TRY(buf_printf(out, ",\"max_tokens\":%" PRId64,
		       req->max_tokens > 0 ? req->max_tokens : (int64_t)ANTHROPIC_DEFAULT_MAX_TOKENS));
	if (req->system.n) {
		TRY(buf_append_lit(out, ",\"system\":"));
		TRY(write_text(out, req->system));
	}
	TRY(enc_messages(out, req));
	if (req->n_tools)
		TRY(enc_tools(out, req));
	TRY(enc_params(out, req));
	rc = buf_append_lit(out, "}");
out:
	if (rc) {
		out->n = n0; /* never half a body */
		if (out->p)
			out->p[n0] = 0;
	}
	return rc;
}

/* ---- answer decode / encode ------------------------------------------ */

/* One content block of an answer: text and tool_use become parts (their
 * strings copied into the arena, the body may be freed first), the rest
 * is skipped. UMB_ERR when a known block lacks its members. */
static int resp_block(struct arena *a, struct json_val blk, struct canon_part *p, bool *skip)
{
	struct json_val t, v;
	*skip = false;
	memset(p, 0, sizeof *p);
	if (blk.type != JSON_OBJECT || !json_obj_get(blk, "type", &t))
		return UMB_ERR;
	if (json_str_eq(t, "text")) {
		if (!json_obj_get(blk, "text", &v) || v.type != JSON_STRING)
			return UMB_ERR;
		p->type = CANON_TEXT;
		p->text = anth_str(a, v, true);
		return UMB_OK;
	}
	if (json_str_eq(t, "tool_use")) {
		p->type = CANON_TOOL_CALL;
		if (!json_obj_get(blk, "id", &v) || v.type != JSON_STRING)
			return UMB_ERR;
		p->id = anth_str(a, v, true);
		if (!json_obj_get(blk, "name", &v) || v.type != JSON_STRING)
			return UMB_ERR;
		p->name = anth_str(a, v, true);
		if (!json_obj_get(blk, "input", &v) || v.type != JSON_OBJECT)
			return UMB_ERR;
		p->args = str_make(arena_strndup(a, v.raw.p, v.raw.n), v.raw.n);
		return UMB_OK;
	}
	*skip = true; /* thinking, server tool blocks, and types not known yet */
	return UMB_OK;
}

/* Garbage is anything but {"type":"message", "content":[...]} with
 * well-formed text and tool_use blocks; everything in *out is copied into
 * the arena. */
int anthropic_resp_decode(struct arena *a, struct str body, struct canon_resp *out)
{
	struct json_val root, content, v, blk;
	struct json_iter it;

	memset(out, 0, sizeof *out);
	out->id = out->model = out->stop_sequence = STR("");
	if (!body.p || json_parse(body.p, body.n, &root, NULL) || root.type != JSON_OBJECT)
		return UMB_ERR;
	if (!json_obj_get(root, "type", &v) || !json_str_eq(v, "message"))
		return UMB_ERR;
	if (!json_obj_get(root, "content", &content) || content.type != JSON_ARRAY)
		return UMB_ERR;
	if (json_obj_get(root, "id", &v))
		out->id = anth_str(a, v, true);
	if (json_obj_get(root, "model", &v))
		out->model = anth_str(a, v, true);
	size_t n = arr_len(content), k = 0;
	out->parts = arena_alloc(a, (n ? n : 1) * sizeof *out->parts);
	json_iter_init(&it, content);
	while (json_arr_next(&it, &blk)) {
		bool skip;
		if (resp_block(a, blk, &out->parts[k], &skip))
			return UMB_ERR;
		k += !skip;
	}
	out->n_parts = k;
	out->finish = CANON_FIN_NONE;
	if (json_obj_get(root, "stop_reason", &v) && v.type == JSON_STRING)
		out->finish = canon_finish_from_anthropic(anth_str(a, v, false));
	if (json_obj_get(root, "stop_sequence", &v) && v.type == JSON_STRING)
		out->stop_sequence = anth_str(a, v, true);
	if (json_obj_get(root, "usage", &v))
		usage_apply(v, &out->usage);
	return UMB_OK;
}

/* The answer as the API writes it: an msg_ id, text and tool_use blocks
 * (empty text skipped), stop_reason (never null), usage with the cache
 * counts apart. out is left as it was on failure. */
int anthropic_resp_encode(const struct canon_resp *resp, struct str model, struct buf *out)
{
	int rc = UMB_OK;
	size_t n0 = out->n;
	char id[80];
	bool first = true;

	message_id(resp->id, id, sizeof id);
	TRY(buf_printf(out, "{\"id\":\"%s\",\"type\":\"message\",\"role\":\"assistant\",\"model\":", id));
	TRY(write_text(out, model.n ? model : resp->model));
	TRY(buf_append_lit(out, ",\"content\":["));
	for (size_t i = 0; i < resp->n_parts; i++) {
		const struct canon_part *p = &resp->parts[i];
		if (p->type == CANON_TEXT && p->text.n == 0)
			continue;
		if (p->type != CANON_TEXT && p->type != CANON_TOOL_CALL)
			continue; /* an answer holds text and tool calls only */
		if (!first)
			TRY(buf_append_lit(out, ","));
		first = false;
		if (p->type == CANON_TOOL_CALL && p->id.n == 0) {
			/* an upstream that gave no call id: make one the
			 * client can answer with */
			struct canon_part q = *p;
			char tid[112];
			snprintf(tid, sizeof tid, "toolu_%s_%zu", id + 4, i);
			q.id = str_cstr(tid);
			TRY(enc_part(out, &q));
		} else {
			TRY(enc_part(out, p));
		}
	}
	TRY(buf_printf(out, "],\"stop_reason\":\"%s\",\"stop_sequence\":", canon_finish_anthropic(resp->finish)));
	if (resp->finish == CANON_FIN_STOP_SEQUENCE && resp->stop_sequence.n)
		TRY(write_text(out, resp->stop_sequence));
	else
		TRY(buf_append_lit(out, "null"));
	TRY(buf_append_lit(out, ",\"usage\":"));
	TRY(usage_write(out, &resp->usage));
	rc = buf_append_lit(out, "}");
out:
	if (rc) {
		out->n = n0;
		if (out->p)
			out->p[n0] = 0;
	}
	return rc;
}

/* Usage lives in message.usage (message_start) or usage (a whole message,
 * message_delta); *u is updated member by member, so feeding every event
 * of a stream leaves the final counts. UMB_ERR only when body is not a
 * JSON object. */
int anthropic_usage(struct str body, struct canon_usage *u)
{
	struct json_val root, t, m, uo;
	if (!body.p || json_parse(body.p, body.n, &root, NULL) || root.type != JSON_OBJECT)
		return UMB_ERR;
	json_obj_get(root, "type", &t);
	if (json_str_eq(t, "message_start")) {
		if (json_obj_get(root, "message", &m) && json_obj_get(m, "usage", &uo))
			usage_apply(uo, u);
	} else if (json_obj_get(root, "usage", &uo)) {
		usage_apply(uo, u); /* a whole message, or message_delta */
	}
	return UMB_OK;
}

int anthropic_error_body(const char *type, const char *message, struct buf *out)
{
	int rc = UMB_OK;
	TRY(buf_append_lit(out, "{\"type\":\"error\",\"error\":{\"type\":"));
	TRY(write_text(out, str_cstr(type ? type : "api_error")));
	TRY(buf_append_lit(out, ",\"message\":"));
	TRY(write_text(out, str_cstr(message ? message : "")));
	rc = buf_append_lit(out, "}}");
out:
	return rc;
}

/* ---- stream decoder: SSE events → canon events ----------------------- */

/* The SSE parser and scratch buffer are capped at ANTH_MAX_EVENT_BYTES:
 * an upstream cannot make the gateway buffer more than that per event. */
void anthropic_stream_dec_init(struct anthropic_stream_dec *d)
{
	memset(d, 0, sizeof *d);
	sse_init(&d->sse, ANTH_MAX_EVENT_BYTES);
	buf_init(&d->scratch, ANTH_MAX_EVENT_BYTES);
}

void anthropic_stream_dec_clear(struct anthropic_stream_dec *d)
{
	sse_clear(&d->sse);
	buf_clear(&d->scratch);
}

/* Deliver one event; a nonzero answer from the sink stops the stream. */
static int dec_emit(struct anthropic_stream_dec *d, const struct canon_ev *ev)
{
	int rc = canon_emit(d->sink, ev);
	if (rc) {
		d->sink_rc = rc;
		return UMB_ERR;
	}
	return UMB_OK;
}

/* Decode strings into the scratch buffer one after the other; the views
 * are made once all are in (the buffer may move while growing). */
static int dec_strs(struct anthropic_stream_dec *d, const struct json_val *v, struct str *out,
		    size_t n)
{
	size_t off[4];
	buf_reset(&d->scratch);
	for (size_t i = 0; i < n; i++) {
		off[i] = d->scratch.n;
		if (v[i].type == JSON_STRING && json_str_decode(v[i], &d->scratch))
			return UMB_ERR;
	}
	for (size_t i = 0; i < n; i++) {
		size_t end = i + 1 < n ? off[i + 1] : d->scratch.n;
		out[i] = str_make(d->scratch.p ? d->scratch.p + off[i] : "", end - off[i]);
	}
	return UMB_OK;
}

/* A content block index from the API. Only tool blocks need a slot in
 * block_tool; callers check the bound where they use it. */
static int dec_index(struct json_val root, int64_t *out)
{
	struct json_val v;
	if (!json_obj_get(root, "index", &v) || json_get_i64(v, out) || *out < 0)
		return UMB_ERR;
	return UMB_OK;
}

/* The tool call a block index carries: its index + 1, 0 for none. */
static int dec_block_tool(const struct anthropic_stream_dec *d, int64_t idx)
{
	return idx < ANTHROPIC_MAX_BLOCKS ? d->block_tool[idx] : 0;
}

/* message_start: START with the message's id and model, then USAGE with
 * the input counts it carries (output_tokens is 1 or so until the end). */
static int on_message_start(struct anthropic_stream_dec *d, struct json_val root)
{
	struct json_val m, v[2] = { { JSON_INVALID, STR_NULL }, { JSON_INVALID, STR_NULL } }, u;
	struct str s[2];
	if (d->started || !json_obj_get(root, "message", &m) || m.type != JSON_OBJECT)
		return UMB_ERR;
	d->started = true;
	json_obj_get(m, "id", &v[0]);
	json_obj_get(m, "model", &v[1]);
	if (dec_strs(d, v, s, 2))
		return UMB_ERR;
	struct canon_ev ev = { .type = CEV_START, .id = s[0], .model = s[1] };
	if (dec_emit(d, &ev))
		return UMB_ERR;
	if (!json_obj_get(m, "usage", &u) || u.type != JSON_OBJECT)
		return UMB_OK;
	usage_apply(u, &d->usage);
	struct canon_ev uev = { .type = CEV_USAGE, .usage = d->usage };
	return dec_emit(d, &uev);
}

/* content_block_start: a tool_use block starts a canonical tool call
 * (numbered 0, 1, ... in block order); a text block says nothing until
 * its deltas, unless it starts with text already. */
static int on_block_start(struct anthropic_stream_dec *d, struct json_val root)
{
	struct json_val cb, t, v[2];
	struct str s[2];
	int64_t idx;
	if (dec_index(root, &idx) || !json_obj_get(root, "content_block", &cb) ||
	    cb.type != JSON_OBJECT || !json_obj_get(cb, "type", &t))
		return UMB_ERR;
	if (idx < ANTHROPIC_MAX_BLOCKS)
		d->block_tool[idx] = 0;
	if (json_str_eq(t, "tool_use")) {
		/* the input is always {} here; it comes as input_json_delta */
		if (idx >= ANTHROPIC_MAX_BLOCKS || !json_obj_get(cb, "id", &v[0]) ||
		    v[0].type != JSON_STRING ||
		    !json_obj_get(cb, "name", &v[1]) || v[1].type != JSON_STRING ||
		    dec_strs(d, v, s, 2) || d->n_tools >= ANTHROPIC_MAX_BLOCKS)
			return UMB_ERR;
		d->block_tool[idx] = ++d->n_tools;
		struct canon_ev ev = { .type = CEV_TOOL_START, .index = d->n_tools - 1,
				       .id = s[0], .name = s[1] };
		return dec_emit(d, &ev);
	}
	if (json_str_eq(t, "text") && json_obj_get(cb, "text", &v[0]) && v[0].type == JSON_STRING &&
	    v[0].raw.n > 2) {
		if (dec_strs(d, v, s, 1))
			return UMB_ERR;
		struct canon_ev ev = { .type = CEV_TEXT, .text = s[0] };
		return dec_emit(d, &ev);
	}
	return UMB_OK; /* thinking and server tool blocks: their deltas are skipped */
}

/* content_block_delta: text_delta → TEXT, input_json_delta of a tool
 * block → TOOL_ARGS; the delta kinds of thinking and citations are
 * skipped. Empty deltas say nothing and are not passed on. */
static int on_block_delta(struct anthropic_stream_dec *d, struct json_val root)
{
	struct json_val delta, t, v;
	struct str s;
	int64_t idx;
	if (dec_index(root, &idx) || !json_obj_get(root, "delta", &delta) ||
	    delta.type != JSON_OBJECT || !json_obj_get(delta, "type", &t))
		return UMB_ERR;
	if (json_str_eq(t, "text_delta")) {
		if (!json_obj_get(delta, "text", &v) || v.type != JSON_STRING || dec_strs(d, &v, &s, 1))
			return UMB_ERR;
		if (!s.n)
			return UMB_OK;
		struct canon_ev ev = { .type = CEV_TEXT, .text = s };
		return dec_emit(d, &ev);
	}
	if (json_str_eq(t, "input_json_delta")) {
		if (!json_obj_get(delta, "partial_json", &v) || v.type != JSON_STRING ||
		    dec_strs(d, &v, &s, 1))
			return UMB_ERR;
		int tool = dec_block_tool(d, idx);
		if (!tool || !s.n)
			return UMB_OK; /* a server tool's input, or nothing */
		struct canon_ev ev = { .type = CEV_TOOL_ARGS, .index = tool - 1,
				       .text = s };
		return dec_emit(d, &ev);
	}
	return UMB_OK; /* thinking_delta, signature_delta, citations_delta, ... */
}

/* message_delta: FINISH with the stop_reason (and which stop sequence
 * matched), then USAGE with the cumulative counts. */
static int on_message_delta(struct anthropic_stream_dec *d, struct json_val root)
{
	struct json_val delta, v, u;
	if (json_obj_get(root, "delta", &delta) && delta.type == JSON_OBJECT &&
	    json_obj_get(delta, "stop_reason", &v) && v.type == JSON_STRING) {
		struct json_val sv[2] = { v, { JSON_INVALID, STR_NULL } };
		struct str s[2];
		json_obj_get(delta, "stop_sequence", &sv[1]);
		if (dec_strs(d, sv, s, 2))
			return UMB_ERR;
		struct canon_ev ev = { .type = CEV_FINISH, .finish = canon_finish_from_anthropic(s[0]),
				       .stop_sequence = s[1] };
		if (dec_emit(d, &ev))
			return UMB_ERR;
	}
	if (!json_obj_get(root, "usage", &u) || u.type != JSON_OBJECT)
		return UMB_OK;
	usage_apply(u, &d->usage);
	struct canon_ev uev = { .type = CEV_USAGE, .usage = d->usage };
	return dec_emit(d, &uev);
}

/* One SSE event. Negative stops the parser: garbage, an error event, or
 * the sink's stop (then in sink_rc). */
static int dec_event_cb(void *ctx, const struct sse_event *ev)
{
	struct anthropic_stream_dec *d = ctx;
	struct json_val root, t;
	if (!ev->has_data)
		return 0; /* comments and keep-alives */
	if (str_eq(ev->event, STR("error")))
		return UMB_ERR; /* overloaded_error and friends mid-stream */
	if (d->ended)
		return 0;
	if (json_parse(ev->data.p, ev->data.n, &root, NULL) || root.type != JSON_OBJECT ||
	    !json_obj_get(root, "type", &t) || t.type != JSON_STRING)
		return UMB_ERR;
	if (json_str_eq(t, "ping"))
		return 0;
	if (json_str_eq(t, "error"))
		return UMB_ERR;
	if (json_str_eq(t, "message_start"))
		return on_message_start(d, root);
	bool known = json_str_eq(t, "content_block_start") || json_str_eq(t, "content_block_delta") ||
		     json_str_eq(t, "content_block_stop") || json_str_eq(t, "message_delta") ||
		     json_str_eq(t, "message_stop");
	if (!known)
		return 0; /* event types added later */
	if (!d->started)
		return UMB_ERR; /* content before message_start */
	if (json_str_eq(t, "content_block_start"))
		return on_block_start(d, root);
	if (json_str_eq(t, "content_block_delta"))
		return on_block_delta(d, root);
	if (json_str_eq(t, "message_delta"))
		return on_message_delta(d, root);
	if (json_str_eq(t, "message_stop")) {
		d->ended = true;
		struct canon_ev end = { .type = CEV_END };
		return dec_emit(d, &end);
	}
	return 0; /* content_block_stop: the next block says enough */
}

/* Bytes split anywhere: the SSE parser holds an incomplete event (also a
 * multibyte character cut in two) until the rest arrives. Errors are
 * sticky: after one, every feed returns it again. */
int anthropic_stream_dec_feed(struct anthropic_stream_dec *d, const char *p, size_t n,
			      const struct canon_sink *sink)
{
	if (d->sink_rc)
		return d->sink_rc;
	d->sink = sink;
	int rc = sse_feed(&d->sse, p, n, dec_event_cb, d);
	d->sink = NULL;
	if (d->sink_rc)
		return d->sink_rc;
	return rc ? UMB_ERR : UMB_OK;
}

int anthropic_stream_dec_finish(struct anthropic_stream_dec *d, const struct canon_sink *sink)
{
	UMB_UNUSED(sink); /* END came with message_stop, or the stream was cut */
	if (d->sink_rc)
		return d->sink_rc;
	return d->ended ? UMB_OK : UMB_ERR;
}

/* ---- stream encoder: canon events → SSE events ----------------------- */

enum { ENC_TOOL_UNSEEN, ENC_TOOL_HELD, ENC_TOOL_OPEN, ENC_TOOL_CLOSED };

/* A content event on its way to a block (live, or read back from the
 * held log). */
enum piece_kind { PIECE_TEXT = 1, PIECE_START, PIECE_ARGS };
struct piece {
	enum piece_kind kind;
	int tool;
	struct str a, b; /* TEXT: text; START: id, name; ARGS: fragment */
};

/* The held log: entries of {kind, tool, len a, len b} + bytes. */
struct held_hdr {
	uint32_t kind, tool, na, nb;
};

/* model must outlive the encoder (it is written into message_start). */
void anthropic_stream_enc_init(struct anthropic_stream_enc *e, struct str model)
{
	memset(e, 0, sizeof *e);
	buf_init(&e->held, ANTHROPIC_ENC_HELD_MAX);
	e->model = model;
	e->open_block = -1;
}

void anthropic_stream_enc_clear(struct anthropic_stream_enc *e)
{
	buf_clear(&e->held);
}

static int sse_open(struct buf *b, const char *event)
{
	return buf_printf(b, "event: %s\ndata: ", event);
}

/* message_start, once, before anything else. ev is the START event, or
 * NULL when the stream began with something else (an id is made up). The
 * usage is what is known so far: from an OpenAI upstream, nothing yet. */
static int enc_message_start(struct anthropic_stream_enc *e, const struct canon_ev *ev,
			     struct buf *out)
{
	int rc = UMB_OK;
	message_id(ev ? ev->id : STR_NULL, e->id, sizeof e->id);
	e->started = true;
	TRY(sse_open(out, "message_start"));
	TRY(buf_printf(out,
		       "{\"type\":\"message_start\",\"message\":{\"id\":\"%s\",\"type\":\"message\","
		       "\"role\":\"assistant\",\"model\":",
		       e->id));
	TRY(write_text(out, e->model.n || !ev ? e->model : ev->model));
	TRY(buf_append_lit(out, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
				"\"usage\":"));
	TRY(usage_write(out, &e->usage));
	rc = buf_append_lit(out, "}}\n\n");
out:
	return rc;
}

/* content_block_stop for the open block, if any; a tool's block closed
 * is closed for good. */
static int enc_block_stop(struct anthropic_stream_enc *e, struct buf *out)
{
	int rc = UMB_OK;
	if (e->open_block < 0)
		return UMB_OK;
	TRY(sse_open(out, "content_block_stop"));
	TRY(buf_printf(out, "{\"type\":\"content_block_stop\",\"index\":%d}\n\n", e->open_block));
	if (e->open_is_tool)
		e->tool_state[e->open_tool] = ENC_TOOL_CLOSED;
	e->open_block = -1;
	e->open_is_tool = false;
out:
	return rc;
}

static int enc_text_open(struct anthropic_stream_enc *e, struct buf *out)
{
	int rc = UMB_OK;
	TRY(enc_block_stop(e, out));
	e->open_block = e->n_blocks++;
	TRY(sse_open(out, "content_block_start"));
	TRY(buf_printf(out,
		       "{\"type\":\"content_block_start\",\"index\":%d,"
		       "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
		       e->open_block));
out:
	return rc;
}

/* content_block_start of a tool_use block for piece START; its input is
 * {} as in the API, the arguments follow as input_json_delta. */
static int enc_tool_open(struct anthropic_stream_enc *e, const struct piece *pc, struct buf *out)
{
	int rc = UMB_OK;
	char tid[112];
	if (e->n_blocks >= ANTHROPIC_MAX_BLOCKS)
		return UMB_ERR; /* past what a decoder (ours) tracks for tools */
	TRY(enc_block_stop(e, out));
	e->open_block = e->n_blocks++;
	e->open_is_tool = true;
	e->open_tool = pc->tool;
	e->tool_state[pc->tool] = ENC_TOOL_OPEN;
	e->args_depth = 0;
	e->args_begun = e->args_in_str = e->args_esc = e->args_done = false;
	struct str id = pc->a;
	if (!id.n) {
		/* an upstream that gave no call id: one the client can answer */
		snprintf(tid, sizeof tid, "toolu_%s_%d", e->id + 4, pc->tool);
		id = str_cstr(tid);
	}
	TRY(sse_open(out, "content_block_start"));
	TRY(buf_printf(out,
		       "{\"type\":\"content_block_start\",\"index\":%d,"
		       "\"content_block\":{\"type\":\"tool_use\",\"id\":",
		       e->open_block));
	TRY(write_text(out, id));
	TRY(buf_append_lit(out, ",\"name\":"));
	TRY(write_text(out, pc->b));
	rc = buf_append_lit(out, ",\"input\":{}}}\n\n");
out:
	return rc;
}

static int enc_delta(struct anthropic_stream_enc *e, const char *kind, const char *field,
		     struct str s, struct buf *out)
{
	int rc = UMB_OK;
	TRY(sse_open(out, "content_block_delta"));
	TRY(buf_printf(out,
		       "{\"type\":\"content_block_delta\",\"index\":%d,"
		       "\"delta\":{\"type\":\"%s\",\"%s\":",
		       e->open_block, kind, field));
	TRY(write_text(out, s));
	rc = buf_append_lit(out, "}}\n\n");
out:
	return rc;
}

/* Follow the open tool's arguments far enough to know when they are a
 * complete JSON text (an object or array whose brackets closed). */
static void args_scan(struct anthropic_stream_enc *e, struct str s)
{
	for (size_t i = 0; i < s.n; i++) {
		char c = s.p[i];
		if (e->args_in_str) {
			if (e->args_esc)
				e->args_esc = false;
			else if (c == '\\')
				e->args_esc = true;
			else if (c == '"')
				e->args_in_str = false;
			continue;
		}
		if (c == '"') {
			e->args_in_str = true;
		} else if (c == '{' || c == '[') {
			e->args_depth++;
			e->args_begun = true;
		} else if ((c == '}' || c == ']') && e->args_depth > 0) {
			e->args_depth--;
		}
	}
}

static bool args_complete(const struct anthropic_stream_enc *e)
{
	return e->args_done || (e->args_begun && e->args_depth == 0 && !e->args_in_str);
}

/* Must a piece for another block wait? While the open tool's arguments
 * are incomplete, yes: its block cannot be closed yet. */
static bool enc_blocked(const struct anthropic_stream_enc *e)
{
	return e->open_block >= 0 && e->open_is_tool && !args_complete(e);
}

/* Append a piece to the held log. The piece's strings may point into the
 * log itself at or after the write position (a re-held entry during a
 * replay): memmove, in order, never overwrites what is still to be read. */
static int held_put(struct anthropic_stream_enc *e, const struct piece *pc)
{
	struct held_hdr h = { (uint32_t)pc->kind, (uint32_t)pc->tool, (uint32_t)pc->a.n,
			      (uint32_t)pc->b.n };
	size_t need = sizeof h + pc->a.n + pc->b.n;
	if (pc->a.n > UINT32_MAX || pc->b.n > UINT32_MAX)
		return UMB_ETOOBIG;
	/* during a replay the entry moves toward the front of bytes already
	 * allocated: this never reallocates under the piece's views */
	int rc = buf_reserve(&e->held, need);
	if (rc)
		return rc;
	char *w = e->held.p + e->held.n;
	memmove(w + sizeof h, pc->a.p ? pc->a.p : "", pc->a.n);
	memmove(w + sizeof h + pc->a.n, pc->b.p ? pc->b.p : "", pc->b.n);
	memcpy(w, &h, sizeof h);
	e->held.n += need;
	e->held.p[e->held.n] = 0;
	if (pc->kind == PIECE_START)
		e->tool_state[pc->tool] = ENC_TOOL_HELD;
	return UMB_OK;
}

/* One content piece: written into its block, or held. `held_before` says
 * earlier pieces are waiting, so this one waits too (order is kept),
 * unless it belongs to the open tool. */
static int enc_piece(struct anthropic_stream_enc *e, const struct piece *pc, bool held_before,
		     struct buf *out)
{
	bool for_open = pc->kind == PIECE_ARGS && e->open_block >= 0 && e->open_is_tool &&
			e->open_tool == pc->tool;
	if (!for_open && (held_before || enc_blocked(e) ||
			  (pc->kind == PIECE_ARGS && e->tool_state[pc->tool] == ENC_TOOL_HELD)))
		return held_put(e, pc);
	int rc = UMB_OK;
	switch (pc->kind) {
	case PIECE_TEXT:
		if (e->open_block < 0 || e->open_is_tool)
			TRY(enc_text_open(e, out));
		rc = enc_delta(e, "text_delta", "text", pc->a, out);
		break;
	case PIECE_START:
		rc = enc_tool_open(e, pc, out);
		break;
	case PIECE_ARGS:
		if (!for_open) {
			/* a closed tool: only whitespace may trail its JSON */
			if (e->tool_state[pc->tool] == ENC_TOOL_CLOSED && trim_ws(pc->a).n == 0)
				return UMB_OK;
			return UMB_ERR;
		}
		args_scan(e, pc->a);
		rc = enc_delta(e, "input_json_delta", "partial_json", pc->a, out);
		break;
	}
out:
	return rc;
}

/* Read back the held log in order, once per pass, for as long as the
 * open tool does not block; entries that still cannot go are compacted
 * to the front. Every pass that starts unblocked writes at least its
 * first entry, so this ends. */
static int held_replay(struct anthropic_stream_enc *e, struct buf *out)
{
	int rc = UMB_OK;
	if (e->replaying)
		return UMB_OK;
	e->replaying = true;
	while (e->held.n && !enc_blocked(e)) {
		size_t end = e->held.n, r = 0;
		e->held.n = 0; /* the write position of the compaction */
		while (r < end) {
			struct held_hdr h;
			memcpy(&h, e->held.p + r, sizeof h);
			const char *p = e->held.p + r + sizeof h;
			struct piece pc = { (enum piece_kind)h.kind, (int)h.tool, str_make(p, h.na),
					    str_make(p + h.na, h.nb) };
			size_t sz = sizeof h + h.na + h.nb;
			rc = enc_piece(e, &pc, e->held.n > 0, out);
			r += sz;
			if (rc)
				goto out;
		}
	}
	if (!e->held.n)
		buf_clear(&e->held); /* interleaving is rare: give the memory back */
out:
	e->replaying = false;
	return rc;
}

/* Everything held goes out: a tool whose arguments never complete is
 * closed as it is (its client sees what the upstream sent). */
static int held_drain(struct anthropic_stream_enc *e, struct buf *out)
{
	int rc = UMB_OK;
	for (size_t guard = 0; e->held.n && guard <= ANTHROPIC_ENC_HELD_MAX; guard++) {
		if (enc_blocked(e))
			e->args_done = true;
		TRY(held_replay(e, out));
	}
	if (e->open_block >= 0 && e->open_is_tool && !args_complete(e))
		e->args_done = true;
out:
	return rc;
}

/* message_delta: the stop reason, and the usage known at this point
 * (input counts included, as the API does since 2025). */
static int enc_message_delta(struct anthropic_stream_enc *e, struct buf *out)
{
	int rc = UMB_OK;
	e->delta_sent = true;
	TRY(sse_open(out, "message_delta"));
	TRY(buf_printf(out, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\",\"stop_sequence\":",
		       canon_finish_anthropic(e->finish)));
	if (e->finish == CANON_FIN_STOP_SEQUENCE && e->stop_sequence.n)
		TRY(write_text(out, e->stop_sequence));
	else
		TRY(buf_append_lit(out, "null"));
	TRY(buf_append_lit(out, "},\"usage\":"));
	TRY(usage_write(out, &e->usage));
	rc = buf_append_lit(out, "}\n\n");
out:
	return rc;
}

/* FINISH: every block is closed; message_delta waits for the usage
 * (OpenAI sends it in a chunk after the finish) or for END. */
static int enc_finish(struct anthropic_stream_enc *e, const struct canon_ev *ev, struct buf *out)
{
	int rc = UMB_OK;
	TRY(held_drain(e, out));
	TRY(enc_block_stop(e, out));
	e->finish_seen = true;
	e->finish = ev->finish;
	/* the view dies with the event: keep a copy (a stop sequence longer
	 * than stop_buf is cut at a character boundary) */
	size_t n = UMB_MIN(ev->stop_sequence.n, sizeof e->stop_buf);
	n = utf8_complete_prefix(ev->stop_sequence.p ? ev->stop_sequence.p : "", n);
	if (n)
		memcpy(e->stop_buf, ev->stop_sequence.p, n);
	e->stop_sequence = str_make(e->stop_buf, n);
out:
	return rc;
}

static int enc_end(struct anthropic_stream_enc *e, struct buf *out)
{
	int rc = UMB_OK;
	TRY(held_drain(e, out));
	TRY(enc_block_stop(e, out));
	if (!e->delta_sent)
		TRY(enc_message_delta(e, out));
	TRY(sse_open(out, "message_stop"));
	TRY(buf_append_lit(out, "{\"type\":\"message_stop\"}\n\n"));
	e->ended = true;
out:
	return rc;
}

/* One canonical event: what it adds to the client's stream is appended
 * to out. Events after END are ignored. UMB_ERR: the events broke the
 * canon.h contract (arguments before their call, a call started twice)
 * or a tool's JSON went on after it was complete; UMB_ETOOBIG: held
 * events over their cap; else the buffer's error. */
int anthropic_stream_enc_event(struct anthropic_stream_enc *e, const struct canon_ev *ev,
			       struct buf *out)
{
	int rc = UMB_OK;
	if (e->ended)
		return UMB_OK;
	if (ev->type == CEV_START || !e->started) {
		if (ev->type == CEV_USAGE)
			e->usage = ev->usage; /* the input count belongs in message_start */
		if (!e->started)
			TRY(enc_message_start(e, ev->type == CEV_START ? ev : NULL, out));
		if (ev->type == CEV_START || ev->type == CEV_USAGE)
			goto out;
	}
	if ((ev->type == CEV_TOOL_START || ev->type == CEV_TOOL_ARGS) &&
	    (ev->index < 0 || ev->index >= ANTHROPIC_MAX_BLOCKS))
		return UMB_ERR;
	struct piece pc = { 0, ev->index, ev->text, STR_NULL };
	switch (ev->type) {
	case CEV_TEXT:
		if (!ev->text.n)
			break;
		pc.kind = PIECE_TEXT;
		rc = enc_piece(e, &pc, e->held.n > 0, out);
		break;
	case CEV_TOOL_START:
		if (e->tool_state[ev->index] != ENC_TOOL_UNSEEN)
			return UMB_ERR; /* one start per call */
		pc.kind = PIECE_START;
		pc.a = ev->id;
		pc.b = ev->name;
		rc = enc_piece(e, &pc, e->held.n > 0, out);
		break;
	case CEV_TOOL_ARGS:
		if (e->tool_state[ev->index] == ENC_TOOL_UNSEEN)
			return UMB_ERR; /* arguments before their call */
		if (!ev->text.n)
			break;
		pc.kind = PIECE_ARGS;
		TRY(enc_piece(e, &pc, e->held.n > 0, out));
		rc = held_replay(e, out); /* the open tool may be complete now */
		break;
	case CEV_FINISH:
		rc = enc_finish(e, ev, out);
		break;
	case CEV_USAGE:
		e->usage = ev->usage;
		if (e->finish_seen && !e->delta_sent)
			rc = enc_message_delta(e, out);
		break;
	case CEV_END:
		rc = enc_end(e, out);
		break;
	case CEV_START:
		break;
	}
out:
	return rc;
}
