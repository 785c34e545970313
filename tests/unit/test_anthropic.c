/* test_anthropic.c — unit tests for the Anthropic Messages format
 * (providers/anthropic_fmt.c) and its wire ops (providers/anthropic.c).
 *
 * Golden files in tests/unit/golden/anthropic/ hold both directions:
 *   req_X.json      a client's Messages request
 *   req_X.canon     its canonical form (a JSON dump made by this file)
 *   req_X.out.json  the canonical form encoded as a Messages request
 *   resp_X.json / resp_X.canon / resp_X.out.json   the same for answers
 *   sdec_X.sse      an upstream SSE stream, sdec_X.events the canonical
 *                   events it decodes to (one JSON line each)
 *   senc_X.events   canonical events, senc_X.sse the SSE an Anthropic
 *                   client gets for them
 * UPDATE_GOLDEN=1 rewrites the expected files instead of comparing (then
 * read the diff before committing it).
 *
 * Beyond the goldens: every byte boundary of a stream split across reads,
 * hostile request bodies refused with a message naming the member, the
 * stream encoder's interleaved tool calls, usage arithmetic, and the
 * upstream request (URL, headers, pass-through edits). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include <cmocka.h>

#include "core/json.h"
#include "providers/anthropic_fmt.h"
#include "providers/provider.h"

#define GOLDEN_DIR "tests/unit/golden/anthropic/"

static struct arena *A; /* per test */

static int setup(void **state)
{
	(void)state;
	A = arena_new(0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	arena_free(A);
	return 0;
}

/* ---- golden files ---- */

static struct str golden_read(const char *name)
{
	char path[256];
	snprintf(path, sizeof path, GOLDEN_DIR "%s", name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open golden file %s (run from the repo root)", path);
	struct buf b;
	buf_init(&b, 0);
	char tmp[4096];
	size_t n;
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
		assert_int_equal(buf_append(&b, tmp, n), 0);
	fclose(f);
	/* a copy of exactly n bytes in the arena: ASan sees overreads */
	struct str s = str_make(arena_strndup(A, b.p ? b.p : "", b.n), b.n);
	buf_clear(&b);
	return s;
}

static void golden_check(const char *name, struct str got)
{
	const char *upd = getenv("UPDATE_GOLDEN");
	if (upd && *upd == '1') {
		char path[256];
		snprintf(path, sizeof path, GOLDEN_DIR "%s", name);
		FILE *f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(got.p, 1, got.n, f), got.n);
		fclose(f);
		return;
	}
	struct str want = golden_read(name);
	if (!str_eq(got, want)) {
		size_t i = 0;
		while (i < got.n && i < want.n && got.p[i] == want.p[i])
			i++;
		fail_msg("%s differs at byte %zu\n--- got:\n%.*s\n--- want:\n%.*s", name, i,
			 STR_FMT(got), STR_FMT(want));
	}
}

/* ---- canonical dumps (the .canon and .events formats) ---- */

static const char *finish_str(enum canon_finish f)
{
	static const char *const n[] = { "none", "stop", "length", "tool_calls", "stop_sequence",
					 "content_filter" };
	return n[f];
}

static enum canon_finish finish_parse(struct json_val v)
{
	for (int f = CANON_FIN_NONE; f <= CANON_FIN_CONTENT_FILTER; f++)
		if (json_str_eq(v, finish_str((enum canon_finish)f)))
			return (enum canon_finish)f;
	fail_msg("unknown finish in an events file");
	return CANON_FIN_NONE;
}

static void put_str(struct buf *b, const char *key, struct str s)
{
	buf_printf(b, ",\"%s\":", key);
	json_write_str_lossy(b, s.p ? s : STR(""));
}

static void dump_part(struct buf *b, const struct canon_part *p)
{
	static const char *const t[] = { "text", "image", "tool_call", "tool_result" };
	buf_printf(b, "{\"type\":\"%s\"", t[p->type]);
	switch (p->type) {
	case CANON_TEXT:
		put_str(b, "text", p->text);
		break;
	case CANON_IMAGE:
		put_str(b, "media_type", p->media_type);
		put_str(b, "data", p->data);
		put_str(b, "url", p->url);
		break;
	case CANON_TOOL_CALL:
		put_str(b, "id", p->id);
		put_str(b, "name", p->name);
		put_str(b, "args", p->args);
		break;
	case CANON_TOOL_RESULT:
		put_str(b, "id", p->id);
		put_str(b, "text", p->text);
		buf_printf(b, ",\"is_error\":%s", p->is_error ? "true" : "false");
		break;
	}
	buf_append_lit(b, "}");
}

static void dump_parts(struct buf *b, const struct canon_part *p, size_t n)
{
	buf_append_lit(b, "[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_append_lit(b, ",");
		dump_part(b, &p[i]);
	}
	buf_append_lit(b, "]");
}

static void dump_usage(struct buf *b, const struct canon_usage *u)
{
	buf_printf(b, "{\"seen\":%s,\"prompt\":%llu,\"completion\":%llu,\"cached\":%llu,\"cache_write\":%llu}",
		   u->seen ? "true" : "false", (unsigned long long)u->prompt_tokens,
		   (unsigned long long)u->completion_tokens,
		   (unsigned long long)u->cached_prompt_tokens,
		   (unsigned long long)u->cache_write_tokens);
}

static struct str dump_req(const struct canon_req *r)
{
	static const char *const tc[] = { "unset", "auto", "none", "any", "tool" };
	struct buf b;
	buf_init(&b, 0);
	buf_append_lit(&b, "{\"x\":0");
	put_str(&b, "model", r->model);
	put_str(&b, "system", r->system);
	buf_printf(&b, ",\"max_tokens\":%lld,\"stream\":%s", (long long)r->max_tokens,
		   r->stream ? "true" : "false");
	if (r->has_temperature)
		buf_printf(&b, ",\"temperature\":%g", r->temperature);
	if (r->has_top_p)
		buf_printf(&b, ",\"top_p\":%g", r->top_p);
	if (r->has_top_k)
		buf_printf(&b, ",\"top_k\":%lld", (long long)r->top_k);
	buf_append_lit(&b, ",\"stop\":[");
	for (size_t i = 0; i < r->n_stop; i++) {
		if (i)
			buf_append_lit(&b, ",");
		json_write_str_lossy(&b, r->stop[i]);
	}
	buf_append_lit(&b, "]");
	put_str(&b, "user", r->user);
	buf_printf(&b, ",\"tool_choice\":\"%s\"", tc[r->tool_choice]);
	put_str(&b, "tool_choice_name", r->tool_choice_name);
	buf_printf(&b, ",\"no_parallel_tools\":%s,\n\"tools\":[",
		   r->no_parallel_tools ? "true" : "false");
	for (size_t i = 0; i < r->n_tools; i++) {
		buf_append_cstr(&b, i ? ",\n {\"x\":0" : "\n {\"x\":0");
		put_str(&b, "name", r->tools[i].name);
		put_str(&b, "description", r->tools[i].description);
		put_str(&b, "schema", r->tools[i].schema);
		buf_append_lit(&b, "}");
	}
	buf_append_lit(&b, "],\n\"msgs\":[");
	for (size_t i = 0; i < r->n_msgs; i++) {
		buf_printf(&b, "%s\n {\"role\":\"%s\",\"parts\":", i ? "," : "",
			   r->msgs[i].role == CANON_USER ? "user" : "assistant");
		dump_parts(&b, r->msgs[i].parts, r->msgs[i].n_parts);
		buf_append_lit(&b, "}");
	}
	buf_append_lit(&b, "]}\n");
	struct str s = str_make(arena_strndup(A, b.p, b.n), b.n);
	buf_clear(&b);
	return s;
}

static struct str dump_resp(const struct canon_resp *r)
{
	struct buf b;
	buf_init(&b, 0);
	buf_append_lit(&b, "{\"x\":0");
	put_str(&b, "id", r->id);
	put_str(&b, "model", r->model);
	buf_printf(&b, ",\"finish\":\"%s\"", finish_str(r->finish));
	put_str(&b, "stop_sequence", r->stop_sequence);
	buf_append_lit(&b, ",\"usage\":");
	dump_usage(&b, &r->usage);
	buf_append_lit(&b, ",\n\"parts\":");
	dump_parts(&b, r->parts, r->n_parts);
	buf_append_lit(&b, "}\n");
	struct str s = str_make(arena_strndup(A, b.p, b.n), b.n);
	buf_clear(&b);
	return s;
}

static void dump_ev(struct buf *b, const struct canon_ev *ev)
{
	switch (ev->type) {
	case CEV_START:
		buf_append_lit(b, "{\"ev\":\"START\"");
		put_str(b, "id", ev->id);
		put_str(b, "model", ev->model);
		break;
	case CEV_TEXT:
		buf_append_lit(b, "{\"ev\":\"TEXT\"");
		put_str(b, "text", ev->text);
		break;
	case CEV_TOOL_START:
		buf_printf(b, "{\"ev\":\"TOOL_START\",\"index\":%d", ev->index);
		put_str(b, "id", ev->id);
		put_str(b, "name", ev->name);
		break;
	case CEV_TOOL_ARGS:
		buf_printf(b, "{\"ev\":\"TOOL_ARGS\",\"index\":%d", ev->index);
		put_str(b, "text", ev->text);
		break;
	case CEV_FINISH:
		buf_printf(b, "{\"ev\":\"FINISH\",\"finish\":\"%s\"", finish_str(ev->finish));
		if (ev->stop_sequence.n)
			put_str(b, "stop_sequence", ev->stop_sequence);
		break;
	case CEV_USAGE:
		buf_printf(b, "{\"ev\":\"USAGE\",\"prompt\":%llu,\"completion\":%llu,\"cached\":%llu,\"cache_write\":%llu",
			   (unsigned long long)ev->usage.prompt_tokens,
			   (unsigned long long)ev->usage.completion_tokens,
			   (unsigned long long)ev->usage.cached_prompt_tokens,
			   (unsigned long long)ev->usage.cache_write_tokens);
		break;
	case CEV_END:
		buf_append_lit(b, "{\"ev\":\"END\"");
		break;
	}
	buf_append_lit(b, "}\n");
}

static struct str dec_str(struct json_val v)
{
	struct buf b;
	buf_init(&b, 0);
	if (v.type == JSON_STRING)
		assert_int_equal(json_str_decode(v, &b), 0);
	struct str s = str_make(arena_strndup(A, b.p ? b.p : "", b.n), b.n);
	buf_clear(&b);
	return s;
}

static uint64_t num(struct json_val o, const char *key)
{
	struct json_val v;
	int64_t x = 0;
	if (json_obj_get(o, key, &v))
		assert_int_equal(json_get_i64(v, &x), 0);
	return (uint64_t)x;
}

/* An .events file (one JSON object per line) as canonical events. */
static size_t events_parse(struct str text, struct canon_ev *evs, size_t max)
{
	size_t n = 0;
	const char *p = text.p, *end = text.p + text.n;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		struct json_val o, v;
		if (len) {
			assert_true(n < max);
			if (json_parse(p, len, &o, NULL))
				fail_msg("bad events line: %.*s", (int)len, p);
			struct canon_ev *ev = &evs[n++];
			memset(ev, 0, sizeof *ev);
			assert_true(json_obj_get(o, "ev", &v));
			static const char *const names[] = { "START", "TEXT", "TOOL_START", "TOOL_ARGS",
							     "FINISH", "USAGE", "END" };
			size_t t = 0;
			while (t < UMB_ARRAY_LEN(names) && !json_str_eq(v, names[t]))
				t++;
			assert_true(t < UMB_ARRAY_LEN(names));
			ev->type = (enum canon_ev_type)t;
			if (json_obj_get(o, "id", &v))
				ev->id = dec_str(v);
			if (json_obj_get(o, "model", &v))
				ev->model = dec_str(v);
			if (json_obj_get(o, "name", &v))
				ev->name = dec_str(v);
			if (json_obj_get(o, "text", &v))
				ev->text = dec_str(v);
			if (json_obj_get(o, "stop_sequence", &v))
				ev->stop_sequence = dec_str(v);
			if (json_obj_get(o, "finish", &v))
				ev->finish = finish_parse(v);
			ev->index = (int)num(o, "index");
			if (ev->type == CEV_USAGE) {
				ev->usage.seen = true;
				ev->usage.prompt_tokens = num(o, "prompt");
				ev->usage.completion_tokens = num(o, "completion");
				ev->usage.cached_prompt_tokens = num(o, "cached");
				ev->usage.cache_write_tokens = num(o, "cache_write");
			}
		}
		p += len + 1;
	}
	return n;
}

/* ---- a sink that records events ---- */

struct rec {
	struct buf out;
	int n, stop_at, stop_rc;
};

static int rec_emit(void *ctx, const struct canon_ev *ev)
{
	struct rec *r = ctx;
	if (r->stop_at && r->n + 1 == r->stop_at)
		return r->stop_rc;
	r->n++;
	dump_ev(&r->out, ev);
	return 0;
}

/* Decode a stream fed as pieces cut at `cuts` (sorted offsets); returns
 * the events dump; *rc the first nonzero feed/finish result. */
static struct str sdec_run(struct str in, const size_t *cuts, size_t n_cuts, int *rc)
{
	struct anthropic_stream_dec d;
	struct rec r = { 0 };
	struct canon_sink sink = { rec_emit, &r };
	buf_init(&r.out, 0);
	anthropic_stream_dec_init(&d);
	size_t pos = 0;
	*rc = 0;
	for (size_t i = 0; i <= n_cuts && !*rc; i++) {
		size_t end = i < n_cuts ? cuts[i] : in.n;
		/* each piece in its own heap block: a view kept into an old
		 * piece reads freed memory under ASan */
		char *piece = malloc(end - pos + 1);
		memcpy(piece, in.p + pos, end - pos);
		*rc = anthropic_stream_dec_feed(&d, piece, end - pos, &sink);
		free(piece);
		pos = end;
	}
	if (!*rc)
		*rc = anthropic_stream_dec_finish(&d, &sink);
	anthropic_stream_dec_clear(&d);
	struct str s = str_make(arena_strndup(A, r.out.p ? r.out.p : "", r.out.n), r.out.n);
	buf_clear(&r.out);
	return s;
}

/* ---- requests ---- */

static struct str req_encode(const struct canon_req *r, const char *model)
{
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(anthropic_req_encode(r, str_cstr(model), &b), 0);
	struct json_err err;
	if (json_parse(b.p, b.n, NULL, &err))
		fail_msg("encoded request is not JSON (%s at %zu): %s", err.msg, err.off, b.p);
	struct str s = str_make(arena_strndup(A, b.p, b.n), b.n);
	buf_clear(&b);
	return s;
}

static void req_golden(const char *name)
{
	char f[96];
	char why[256];
	struct canon_req r;
	snprintf(f, sizeof f, "req_%s.json", name);
	struct str in = golden_read(f);
	if (anthropic_req_decode(A, in, &r, why, sizeof why))
		fail_msg("%s: %s", f, why);
	snprintf(f, sizeof f, "req_%s.canon", name);
	golden_check(f, dump_req(&r));
	struct str out = req_encode(&r, "up-model");
	snprintf(f, sizeof f, "req_%s.out.json", name);
	golden_check(f, str_make(arena_join(A, arena_strdup_str(A, out), "\n", NULL), out.n + 1));
	/* what we send decodes to what we meant and encodes the same again */
	struct canon_req again;
	if (anthropic_req_decode(A, out, &again, why, sizeof why))
		fail_msg("%s re-decoded: %s", name, why);
	assert_true(str_eq(req_encode(&again, "up-model"), out));
}

static void test_req_golden(void **state)
{
	(void)state;
	req_golden("basic");
	req_golden("tools");
	req_golden("merge");
}

/* every refusal names the member and what is wrong */
static void test_req_hostile(void **state)
{
	(void)state;
	static const struct {
		const char *body, *why;
	} cases[] = {
		{ "", "not valid JSON" },
		{ "{\"model\":\"m\",", "not valid JSON" },
		{ "[1,2]", "must be a JSON object, not an array" },
		{ "\"hi\"", "must be a JSON object" },
		{ "{\"model\":\"m\",\"max_tokens\":5}", "messages: Field required" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		  "max_tokens: Field required" },
		{ "{\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		  "max_tokens: must be an integer >= 1" },
		{ "{\"max_tokens\":1.5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		  "max_tokens: must be an integer" },
		{ "{\"max_tokens\":\"9\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		  "max_tokens: must be an integer" },
		{ "{\"max_tokens\":9,\"messages\":[]}", "messages: at least one message" },
		{ "{\"max_tokens\":9,\"messages\":{}}", "messages: must be an array, not an object" },
		{ "{\"max_tokens\":9,\"messages\":[1]}", "messages.0: must be an object, not a number" },
		{ "{\"max_tokens\":9,\"messages\":[{\"content\":\"x\"}]}", "messages.0.role: Field required" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
		  "messages.0.role: must be 'user' or 'assistant', not 'system'" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\"}]}", "messages.0.content: Field required" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":7}]}",
		  "messages.0.content: must be a string or an array, not a number" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
		  "{\"role\":\"assistant\",\"content\":\"b\"},{\"role\":\"user\",\"content\":[{\"type\":\"foo\"}]}]}",
		  "messages.2.content.0: unknown block type 'foo'" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":{}}]}]}",
		  "messages.0.content.0: block type 'document' is not supported" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}",
		  "messages.0.content.0.type: Field required" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
		  "messages.0.content.0.text: Field required" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":[]}]}]}",
		  "messages.0.content.0.text: must be a string, not an array" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"file\",\"file_id\":\"f\"}}]}]}",
		  "messages.0.content.0.source.type: 'file' is not supported" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"data\":\"x\"}}]}]}",
		  "messages.0.content.0.source.media_type: Field required" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{}}]}]}",
		  "messages.0.content.0: tool_use blocks belong in assistant messages" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":\"{}\"}]}]}",
		  "messages.0.content.0.input: must be an object, not a string" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"name\":\"n\",\"input\":{}}]}]}",
		  "messages.0.content.0.id: Field required" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\"}]}]}",
		  "messages.0.content.0: tool_result blocks belong in user messages" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"is_error\":1}]}]}",
		  "messages.0.content.0.is_error: must be a boolean" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\","
		  "\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"u\"}}]}]}]}",
		  "messages.0.content.0.content.0: block type 'image' is not supported here" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"system\":5}",
		  "system: must be a string or an array of text blocks, not a number" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"system\":[{\"type\":\"image\"}]}",
		  "system.0: block type 'image' is not supported here" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"name\":\"t\"}]}",
		  "tools.0.input_schema: Field required" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
		  "\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}]}",
		  "tools.0: tool type 'web_search_20250305' is not supported" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"name\":\"\",\"input_schema\":{}}]}",
		  "tools.0.name: must not be empty" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":{\"type\":\"required\"}}",
		  "tool_choice.type: must be 'auto', 'any', 'tool' or 'none', not 'required'" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":{\"type\":\"tool\"}}",
		  "tool_choice.name: Field required" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":{\"type\":\"tool\",\"name\":\"ghost\"}}",
		  "tool_choice.name: no tool named 'ghost' in tools" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"auto\"}",
		  "tool_choice: must be an object, not a string" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":1.5}",
		  "temperature: must be between 0 and 1" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":\"high\"}",
		  "top_p: must be a number, not a string" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_k\":-1}",
		  "top_k: must be an integer >= 0" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":\"yes\"}",
		  "stream: must be a boolean, not a string" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop_sequences\":[\"a\",1]}",
		  "stop_sequences.1: must be a string, not a number" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
		  "\"stop_sequences\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}",
		  "stop_sequences: at most 8 are supported" },
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"metadata\":{\"user_id\":42}}",
		  "metadata.user_id: must be a string, not a number" },
		{ "{\"max_tokens\":9,\"model\":7,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		  "model: must be a string, not a number" },
		/* a client string in a message is clipped and made printable */
		{ "{\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
		  "\"\\u0000\\n01234567890123456789012345678901234567890123456789\"}]}]}",
		  "unknown block type '\\u0000\\n01234567890123456789012345678901...'" },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(cases); i++) {
		char why[256] = "untouched";
		struct canon_req r;
		size_t n = strlen(cases[i].body);
		char *body = arena_strndup(A, cases[i].body, n);
		if (anthropic_req_decode(A, str_make(body, n), &r, why, sizeof why) != UMB_ERR)
			fail_msg("case %zu accepted: %s", i, cases[i].body);
		if (!strstr(why, cases[i].why))
			fail_msg("case %zu: why is \"%s\", want \"%s\"", i, why, cases[i].why);
	}
	/* bytes that are not text at all, a NULL body, and deep nesting */
	char why[128];
	struct canon_req r;
	static const char bin[] = "\xff\xfe{\"max_tokens\":\x00\x01}";
	assert_int_equal(anthropic_req_decode(A, str_make(bin, sizeof bin - 1), &r, why, sizeof why),
			 UMB_ERR);
	assert_int_equal(anthropic_req_decode(A, STR_NULL, &r, why, sizeof why), UMB_ERR);
	assert_int_equal(anthropic_req_decode(A, STR_NULL, &r, NULL, 0), UMB_ERR);
	struct buf deep;
	buf_init(&deep, 0);
	buf_append_lit(&deep, "{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"z\":");
	for (int i = 0; i < 5000; i++)
		buf_append_lit(&deep, "[");
	assert_int_equal(anthropic_req_decode(A, buf_str(&deep), &r, why, sizeof why), UMB_ERR);
	assert_non_null(strstr(why, "not valid JSON"));
	buf_clear(&deep);
	/* a tiny why buffer is cut, never overrun */
	char small[8];
	assert_int_equal(anthropic_req_decode(A, STR("[]"), &r, small, sizeof small), UMB_ERR);
	assert_int_equal(strlen(small), sizeof small - 1);
}

/* What an OpenAI client's conversation looks like in canonical form:
 * an assistant turn with empty text and two calls, each result in its own
 * user turn (from `role: tool` messages), a user text after them. */
static void test_req_encode_from_canon(void **state)
{
	(void)state;
	struct canon_part sys_user[] = { { .type = CANON_TEXT, .text = STR("Weather?") } };
	struct canon_part asst[] = {
		{ .type = CANON_TEXT, .text = STR("") },
		{ .type = CANON_TOOL_CALL, .id = STR("call_1"), .name = STR("w"), .args = STR("{\"c\":\"Paris\"}") },
		{ .type = CANON_TOOL_CALL, .id = STR("call_2"), .name = STR("t"), .args = STR("") },
	};
	struct canon_part res1[] = { { .type = CANON_TOOL_RESULT, .id = STR("call_1"), .text = STR("15C") } };
	struct canon_part res2[] = { { .type = CANON_TOOL_RESULT, .id = STR("call_2"), .text = STR("no clock"), .is_error = true } };
	struct canon_part user2[] = {
		{ .type = CANON_TEXT, .text = STR("and now \"this\":") },
		{ .type = CANON_IMAGE, .media_type = STR("image/jpeg"), .data = STR("/9j/4AAQ") },
		{ .type = CANON_IMAGE, .url = STR("https://x.test/a.png") },
	};
	struct canon_msg msgs[] = {
		{ CANON_USER, sys_user, 1 }, { CANON_ASSISTANT, asst, 3 }, { CANON_USER, res1, 1 },
		{ CANON_USER, res2, 1 },     { CANON_USER, user2, 3 },
	};
	struct canon_tool tools[] = {
		{ STR("w"), STR("weather"), STR("{\"type\":\"object\",\"properties\":{\"c\":{\"type\":\"string\"}}}") },
		{ STR("t"), STR(""), STR("{}") },
	};
	struct canon_req r = { .model = STR("gpt-4o"), .system = STR("Be brief.\n\nReally."),
			       .msgs = msgs, .n_msgs = 5, .tools = tools, .n_tools = 2,
			       .tool_choice = CANON_TC_ANY, .no_parallel_tools = true,
			       .has_temperature = true, .temperature = 0.3, .stream = true,
			       .stop = { STR("END") }, .n_stop = 1, .user = STR("u-9") };
	struct str got = req_encode(&r, "claude-x");
	const char *want =
		"{\"model\":\"claude-x\",\"max_tokens\":4096,\"system\":\"Be brief.\\n\\nReally.\","
		"\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Weather?\"}]},"
		"{\"role\":\"assistant\",\"content\":["
		"{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"w\",\"input\":{\"c\":\"Paris\"}},"
		"{\"type\":\"tool_use\",\"id\":\"call_2\",\"name\":\"t\",\"input\":{}}]},"
		"{\"role\":\"user\",\"content\":["
		"{\"type\":\"tool_result\",\"tool_use_id\":\"call_1\",\"content\":\"15C\"},"
		"{\"type\":\"tool_result\",\"tool_use_id\":\"call_2\",\"content\":\"no clock\",\"is_error\":true},"
		"{\"type\":\"text\",\"text\":\"and now \\\"this\\\":\"},"
		"{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/jpeg\",\"data\":\"/9j/4AAQ\"}},"
		"{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://x.test/a.png\"}}]}],"
		"\"tools\":[{\"name\":\"w\",\"description\":\"weather\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"c\":{\"type\":\"string\"}}}},"
		"{\"name\":\"t\",\"input_schema\":{\"type\":\"object\",\"properties\":{}}}],"
		"\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true},"
		"\"stop_sequences\":[\"END\"],\"temperature\":0.3,\"stream\":true,\"metadata\":{\"user_id\":\"u-9\"}}";
	if (!str_eq(got, str_cstr(want)))
		fail_msg("got  %.*s\nwant %s", STR_FMT(got), want);

	/* results and text in one canonical message: the results go first
	 * (the API wants every tool_result before other content) */
	struct canon_part mixed[] = {
		{ .type = CANON_TEXT, .text = STR("see:") },
		{ .type = CANON_TOOL_RESULT, .id = STR("call_1"), .text = STR("a") },
		{ .type = CANON_TEXT, .text = STR("and") },
		{ .type = CANON_TOOL_RESULT, .id = STR("call_2"), .text = STR("b") },
	};
	struct canon_msg mixed_msgs[] = { { CANON_ASSISTANT, asst, 3 }, { CANON_USER, mixed, 4 } };
	struct canon_req mr = { .msgs = mixed_msgs, .n_msgs = 2 };
	got = req_encode(&mr, "m");
	assert_non_null(strstr(got.p,
			       "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"call_1\",\"content\":\"a\"},"
			       "{\"type\":\"tool_result\",\"tool_use_id\":\"call_2\",\"content\":\"b\"},"
			       "{\"type\":\"text\",\"text\":\"see:\"},{\"type\":\"text\",\"text\":\"and\"}]}"));
	/* a conversation of nothing but empty turns has no message left */
	struct canon_part empty[] = { { .type = CANON_TEXT, .text = STR("") } };
	struct canon_msg empty_msgs[] = { { CANON_USER, empty, 1 }, { CANON_ASSISTANT, NULL, 0 } };
	struct canon_req er = { .msgs = empty_msgs, .n_msgs = 2 };
	assert_non_null(strstr(req_encode(&er, "m").p, "\"messages\":[]"));

	/* tool_choice: none maps to none and never carries the parallel flag;
	 * without tools no tool_choice at all */
	r.tool_choice = CANON_TC_NONE;
	assert_non_null(strstr(req_encode(&r, "m").p, "\"tool_choice\":{\"type\":\"none\"}"));
	r.tool_choice = CANON_TC_TOOL;
	r.tool_choice_name = STR("w");
	assert_non_null(strstr(req_encode(&r, "m").p,
			       "\"tool_choice\":{\"type\":\"tool\",\"name\":\"w\",\"disable_parallel_tool_use\":true}"));
	r.n_tools = 0;
	assert_null(strstr(req_encode(&r, "m").p, "tool_choice"));

	/* arguments that are not a JSON object cannot become an input:
	 * refused, and nothing is left half-written in the buffer */
	asst[1].args = STR("{\"c\":");
	struct buf b;
	buf_init(&b, 0);
	buf_append_lit(&b, "keep");
	assert_int_equal(anthropic_req_encode(&r, STR("m"), &b), UMB_ERR);
	assert_true(str_eq(buf_str(&b), STR("keep")));
	asst[1].args = STR("[1]");
	assert_int_equal(anthropic_req_encode(&r, STR("m"), &b), UMB_ERR);
	asst[1].args = STR(" \n{\"ok\":true}\n ");
	assert_int_equal(anthropic_req_encode(&r, STR("m"), &b), UMB_OK);
	assert_non_null(strstr(b.p, "\"input\":{\"ok\":true}}"));
	/* a capped buffer fails cleanly */
	struct buf capped;
	buf_init(&capped, 64);
	assert_int_equal(anthropic_req_encode(&r, STR("m"), &capped), UMB_ETOOBIG);
	assert_int_equal(capped.n, 0);
	buf_clear(&capped);
	buf_clear(&b);
}

/* ---- answers ---- */

static struct str resp_encode(const struct canon_resp *r, const char *model)
{
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(anthropic_resp_encode(r, str_cstr(model), &b), 0);
	assert_int_equal(json_parse(b.p, b.n, NULL, NULL), 0);
	buf_append_lit(&b, "\n");
	struct str s = str_make(arena_strndup(A, b.p, b.n), b.n);
	buf_clear(&b);
	return s;
}

static void resp_golden(const char *name)
{
	char f[96];
	struct canon_resp r, again;
	snprintf(f, sizeof f, "resp_%s.json", name);
	struct str in = golden_read(f);
	assert_int_equal(anthropic_resp_decode(A, in, &r), UMB_OK);
	snprintf(f, sizeof f, "resp_%s.canon", name);
	golden_check(f, dump_resp(&r));
	struct str out = resp_encode(&r, "shown-model");
	snprintf(f, sizeof f, "resp_%s.out.json", name);
	golden_check(f, out);
	/* our own answer reads back the same, model aside */
	assert_int_equal(anthropic_resp_decode(A, str_make(out.p, out.n - 1), &again), UMB_OK);
	again.model = r.model;
	assert_true(str_eq(dump_resp(&again), dump_resp(&r)));
}

static void test_resp_golden(void **state)
{
	(void)state;
	resp_golden("text");
	resp_golden("tools");
	resp_golden("stopseq");
}

static void test_resp_garbage(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "<html>", "[]", "{}", "{\"type\":\"error\",\"error\":{\"type\":\"api_error\"}}",
		"{\"type\":\"message\"}", "{\"type\":\"message\",\"content\":{}}",
		"{\"type\":\"message\",\"content\":[{\"type\":\"text\"}]}",
		"{\"type\":\"message\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"b\",\"input\":\"{}\"}]}",
		"{\"type\":\"message\",\"content\":[7]}",
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		struct canon_resp r;
		char *body = arena_strndup(A, bad[i], strlen(bad[i]));
		if (anthropic_resp_decode(A, str_make(body, strlen(bad[i])), &r) != UMB_ERR)
			fail_msg("garbage accepted: %s", bad[i]);
	}
	/* an upstream id that is not Anthropic's still gives msg_...; an
	 * empty one a random msg_ id; a call without id gets one */
	struct canon_part parts[] = { { .type = CANON_TOOL_CALL, .name = STR("f"), .args = STR("") } };
	struct canon_resp r = { .id = STR("chatcmpl-Ab.9/x"), .parts = parts, .n_parts = 1,
				.finish = CANON_FIN_TOOL_CALLS };
	struct str out = resp_encode(&r, "m");
	assert_non_null(strstr(out.p, "{\"id\":\"msg_chatcmpl-Ab9x\","));
	assert_non_null(strstr(out.p, "\"id\":\"toolu_chatcmpl-Ab9x_0\",\"name\":\"f\",\"input\":{}"));
	r.id = STR("");
	out = resp_encode(&r, "m");
	assert_true(out.n > 40 && !memcmp(out.p, "{\"id\":\"msg_", 11));
	parts[0].args = STR("not json");
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(anthropic_resp_encode(&r, STR("m"), &b), UMB_ERR);
	assert_int_equal(b.n, 0);
	buf_clear(&b);
}

static void test_usage(void **state)
{
	(void)state;
	struct canon_usage u = { 0 };
	assert_int_equal(anthropic_usage(STR("{\"type\":\"message_start\",\"message\":{\"usage\":"
					     "{\"input_tokens\":25,\"cache_creation_input_tokens\":5,"
					     "\"cache_read_input_tokens\":70,\"output_tokens\":1}}}"),
					 &u),
			 UMB_OK);
	assert_true(u.seen);
	assert_int_equal(u.prompt_tokens, 100);
	assert_int_equal(u.cached_prompt_tokens, 70);
	assert_int_equal(u.cache_write_tokens, 5);
	assert_int_equal(u.completion_tokens, 1);
	/* message_delta: output is cumulative; input counts kept when absent */
	assert_int_equal(anthropic_usage(STR("{\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":15}}"), &u),
			 UMB_OK);
	assert_int_equal(u.prompt_tokens, 100);
	assert_int_equal(u.completion_tokens, 15);
	/* the newer API repeats input counts there: they replace */
	assert_int_equal(anthropic_usage(STR("{\"type\":\"message_delta\",\"usage\":{\"input_tokens\":30,"
					     "\"cache_read_input_tokens\":70,\"output_tokens\":16}}"),
					 &u),
			 UMB_OK);
	assert_int_equal(u.prompt_tokens, 105);
	assert_int_equal(u.cached_prompt_tokens, 70);
	assert_int_equal(u.cache_write_tokens, 5);
	assert_int_equal(u.completion_tokens, 16);
	/* a whole message; nulls and negative numbers are ignored */
	struct canon_usage w = { 0 };
	assert_int_equal(anthropic_usage(STR("{\"type\":\"message\",\"content\":[],\"usage\":{\"input_tokens\":3,"
					     "\"cache_read_input_tokens\":null,\"output_tokens\":-4}}"),
					 &w),
			 UMB_OK);
	assert_int_equal(w.prompt_tokens, 3);
	assert_int_equal(w.completion_tokens, 0);
	/* no usage: nothing seen; not JSON: an error */
	struct canon_usage z = { 0 };
	assert_int_equal(anthropic_usage(STR("{\"type\":\"ping\"}"), &z), UMB_OK);
	assert_false(z.seen);
	assert_int_equal(anthropic_usage(STR("{nope"), &z), UMB_ERR);
	/* huge counts saturate instead of wrapping */
	assert_int_equal(anthropic_usage(STR("{\"usage\":{\"input_tokens\":9223372036854775807,"
					     "\"cache_read_input_tokens\":9223372036854775807,"
					     "\"cache_creation_input_tokens\":9223372036854775807}}"),
					 &z),
			 UMB_OK);
	assert_true(z.prompt_tokens == UINT64_MAX);
}

/* ---- stream decoder ---- */

static void sdec_golden(const char *name)
{
	char f[96];
	int rc;
	snprintf(f, sizeof f, "sdec_%s.sse", name);
	struct str in = golden_read(f);
	struct str whole = sdec_run(in, NULL, 0, &rc);
	assert_int_equal(rc, 0);
	snprintf(f, sizeof f, "sdec_%s.events", name);
	golden_check(f, whole);
	/* the same events whatever the reads: split at every byte (inside
	 * data: lines, inside multibyte characters, between CR and LF) */
	for (size_t cut = 0; cut <= in.n; cut++) {
		struct str got = sdec_run(in, &cut, 1, &rc);
		assert_int_equal(rc, 0);
		if (!str_eq(got, whole))
			fail_msg("%s split at %zu:\n%.*s", name, cut, STR_FMT(got));
	}
	size_t *cuts = malloc(in.n * sizeof *cuts);
	for (size_t i = 0; i < in.n; i++)
		cuts[i] = i + 1;
	struct str bytes = sdec_run(in, cuts, in.n ? in.n - 1 : 0, &rc);
	free(cuts);
	assert_int_equal(rc, 0);
	assert_true(str_eq(bytes, whole));
}

static void test_sdec_golden(void **state)
{
	(void)state;
	sdec_golden("text");
	sdec_golden("tools");
}

#define MSG_START                                                                              \
	"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","   \
	"\"model\":\"c\",\"usage\":{\"input_tokens\":3,\"output_tokens\":0}}}\n\n"
#define TEXT_START                                                                             \
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"         \
	"\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
#define TEXT_DELTA(t)                                                                          \
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"         \
	"\"delta\":{\"type\":\"text_delta\",\"text\":\"" t "\"}}\n\n"
#define MSG_STOP "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"

static void sdec_expect(const char *in, int want_rc, const char *want_events)
{
	int rc;
	size_t n = strlen(in);
	struct str got = sdec_run(str_make(arena_strndup(A, in, n), n), NULL, 0, &rc);
	if (rc != want_rc)
		fail_msg("rc %d, want %d for\n%s", rc, want_rc, in);
	if (want_events && !str_eq(got, str_cstr(want_events)))
		fail_msg("events\n%.*s\nwant\n%s", STR_FMT(got), want_events);
}

static void test_sdec_errors(void **state)
{
	(void)state;
	/* an error event mid-stream fails the stream (forward.c answers the
	 * client with its own error) after what came before */
	sdec_expect(MSG_START TEXT_START TEXT_DELTA("a")
		    "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", "
		    "\"message\": \"Overloaded\"}}\n\n" TEXT_DELTA("b") MSG_STOP,
		    UMB_ERR,
		    "{\"ev\":\"START\",\"id\":\"msg_1\",\"model\":\"c\"}\n"
		    "{\"ev\":\"USAGE\",\"prompt\":3,\"completion\":0,\"cached\":0,\"cache_write\":0}\n"
		    "{\"ev\":\"TEXT\",\"text\":\"a\"}\n");
	/* an error as the very first event (no event: line) */
	sdec_expect("data: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"x\"}}\n\n",
		    UMB_ERR, "");
	/* data that is not JSON, or JSON without a type */
	sdec_expect(MSG_START "data: {\"type\":\"content_block_delta\"\n\n", UMB_ERR, NULL);
	sdec_expect(MSG_START "data: [1]\n\n", UMB_ERR, NULL);
	sdec_expect(MSG_START "data: {\"index\":0}\n\n", UMB_ERR, NULL);
	/* content before message_start; a second message_start */
	sdec_expect(TEXT_START MSG_STOP, UMB_ERR, "");
	sdec_expect(MSG_START MSG_START, UMB_ERR, NULL);
	/* indexes out of range, blocks without their members */
	sdec_expect(MSG_START "data: {\"type\":\"content_block_start\",\"index\":256,\"content_block\":"
		    "{\"type\":\"tool_use\",\"id\":\"i\",\"name\":\"n\",\"input\":{}}}\n\n",
		    UMB_ERR, NULL);
	sdec_expect(MSG_START "data: {\"type\":\"content_block_delta\",\"index\":-1,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n",
		    UMB_ERR, NULL);
	/* a text block past the tool table is fine: it needs no slot */
	sdec_expect(MSG_START "data: {\"type\":\"content_block_delta\",\"index\":300,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n"
		    "data: {\"type\":\"content_block_delta\",\"index\":300,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n" MSG_STOP,
		    0,
		    "{\"ev\":\"START\",\"id\":\"msg_1\",\"model\":\"c\"}\n"
		    "{\"ev\":\"USAGE\",\"prompt\":3,\"completion\":0,\"cached\":0,\"cache_write\":0}\n"
		    "{\"ev\":\"TEXT\",\"text\":\"x\"}\n{\"ev\":\"END\"}\n");
	sdec_expect(MSG_START "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"name\":\"n\"}}\n\n",
		    UMB_ERR, NULL);
	sdec_expect(MSG_START "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\"}}\n\n",
		    UMB_ERR, NULL);
	/* cut before message_stop: finish says so; a stream with nothing */
	sdec_expect(MSG_START TEXT_START TEXT_DELTA("a"), UMB_ERR, NULL);
	sdec_expect(MSG_START TEXT_START TEXT_DELTA("a") "event: message_stop\ndata: {\"type\":\"mess", UMB_ERR, NULL);
	sdec_expect("", UMB_ERR, "");
	/* after message_stop anything is ignored; comments and pings always */
	sdec_expect(": hi\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n" MSG_START MSG_STOP
		    "data: garbage after the end\n\n",
		    0,
		    "{\"ev\":\"START\",\"id\":\"msg_1\",\"model\":\"c\"}\n"
		    "{\"ev\":\"USAGE\",\"prompt\":3,\"completion\":0,\"cached\":0,\"cache_write\":0}\n"
		    "{\"ev\":\"END\"}\n");
	/* input_json_delta of a block that is no tool (a server tool's)
	 * and deltas of unknown kinds are skipped */
	sdec_expect(MSG_START
		    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"s\",\"name\":\"web_search\",\"input\":{}}}\n\n"
		    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n"
		    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"citations_delta\",\"citation\":{}}}\n\n" MSG_STOP,
		    0,
		    "{\"ev\":\"START\",\"id\":\"msg_1\",\"model\":\"c\"}\n"
		    "{\"ev\":\"USAGE\",\"prompt\":3,\"completion\":0,\"cached\":0,\"cache_write\":0}\n"
		    "{\"ev\":\"END\"}\n");
	/* an event larger than the cap is garbage, not an allocation */
	struct buf big;
	buf_init(&big, 0);
	buf_append_lit(&big, MSG_START "data: \"");
	for (int i = 0; i < (9 << 20) / 64; i++)
		buf_append_lit(&big, "0123456789012345678901234567890123456789012345678901234567890123");
	int rc;
	sdec_run(buf_str(&big), NULL, 0, &rc);
	assert_int_equal(rc, UMB_ERR);
	buf_clear(&big);
}

/* the sink's nonzero answer stops the decoder, which returns it (also on
 * every later feed) */
static void test_sdec_sink_stop(void **state)
{
	(void)state;
	struct anthropic_stream_dec d;
	struct rec r = { .stop_at = 3, .stop_rc = 7 };
	struct canon_sink sink = { rec_emit, &r };
	buf_init(&r.out, 0);
	anthropic_stream_dec_init(&d);
	static const char s[] = MSG_START TEXT_START TEXT_DELTA("a") TEXT_DELTA("b") MSG_STOP;
	assert_int_equal(anthropic_stream_dec_feed(&d, s, sizeof s - 1, &sink), 7);
	assert_int_equal(r.n, 2);
	assert_int_equal(anthropic_stream_dec_feed(&d, "\n", 1, &sink), 7);
	assert_int_equal(anthropic_stream_dec_finish(&d, &sink), 7);
	assert_int_equal(r.n, 2);
	anthropic_stream_dec_clear(&d);
	buf_clear(&r.out);
}

/* ---- stream encoder ---- */

static int senc_run(const struct canon_ev *evs, size_t n, struct buf *out)
{
	struct anthropic_stream_enc *e = malloc(sizeof *e);
	anthropic_stream_enc_init(e, STR("claude-shown"));
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++)
		rc = anthropic_stream_enc_event(e, &evs[i], out);
	assert_int_equal(e->held.n, 0); /* drained by END */
	anthropic_stream_enc_clear(e);
	free(e);
	return rc;
}

/* What a client reconstructs from a stream: the text, each tool's id,
 * name and whole arguments, the finish and the last usage. */
struct summary {
	struct buf text, tools;
	char finish[64];
	struct canon_usage usage;
	bool ended;
	struct buf args[8];
	struct str ids[8], names[8];
	int n_tools;
};

static int sum_emit(void *ctx, const struct canon_ev *ev)
{
	struct summary *s = ctx;
	switch (ev->type) {
	case CEV_TEXT:
		buf_append_str(&s->text, ev->text);
		break;
	case CEV_TOOL_START:
		assert_int_equal(ev->index, s->n_tools);
		assert_true(s->n_tools < 8);
		s->ids[s->n_tools] = str_make(arena_strdup_str(A, ev->id), ev->id.n);
		s->names[s->n_tools] = str_make(arena_strdup_str(A, ev->name), ev->name.n);
		buf_init(&s->args[s->n_tools], 0);
		s->n_tools++;
		break;
	case CEV_TOOL_ARGS:
		assert_true(ev->index < s->n_tools);
		buf_append_str(&s->args[ev->index], ev->text);
		break;
	case CEV_FINISH:
		snprintf(s->finish, sizeof s->finish, "%s/%.*s", finish_str(ev->finish),
			 (int)ev->stop_sequence.n, ev->stop_sequence.p ? ev->stop_sequence.p : "");
		break;
	case CEV_USAGE:
		s->usage = ev->usage;
		break;
	case CEV_END:
		s->ended = true;
		break;
	case CEV_START:
		break;
	}
	return 0;
}

/* Summarise a canonical event list directly, tools by their call index. */
static void summarise_events(const struct canon_ev *evs, size_t n, struct summary *s)
{
	for (size_t i = 0; i < n; i++) {
		struct canon_ev ev = evs[i];
		if (ev.type == CEV_TOOL_START) {
			/* renumber in start order like the decoder does */
			ev.index = s->n_tools;
		} else if (ev.type == CEV_TOOL_ARGS) {
			int k = 0;
			for (size_t j = 0; j < i; j++)
				if (evs[j].type == CEV_TOOL_START && evs[j].index == ev.index)
					break;
				else if (evs[j].type == CEV_TOOL_START)
					k++;
			ev.index = k;
		} else if (ev.type == CEV_TEXT && !ev.text.n) {
			continue;
		}
		sum_emit(s, &ev);
	}
}

static void summary_free(struct summary *s)
{
	buf_clear(&s->text);
	for (int i = 0; i < s->n_tools; i++)
		buf_clear(&s->args[i]);
}

/* The encoder's SSE, read back by our decoder, tells the client what the
 * events said (tools in the order their blocks opened). */
static void senc_roundtrip(const struct canon_ev *evs, size_t n, struct str sse)
{
	struct summary want = { 0 }, got = { 0 };
	buf_init(&want.text, 0);
	buf_init(&got.text, 0);
	summarise_events(evs, n, &want);
	struct anthropic_stream_dec d;
	struct canon_sink sink = { sum_emit, &got };
	anthropic_stream_dec_init(&d);
	assert_int_equal(anthropic_stream_dec_feed(&d, sse.p, sse.n, &sink), 0);
	assert_int_equal(anthropic_stream_dec_finish(&d, &sink), 0);
	anthropic_stream_dec_clear(&d);
	assert_true(str_eq(buf_str(&got.text), buf_str(&want.text)));
	assert_int_equal(got.n_tools, want.n_tools);
	for (int i = 0; i < got.n_tools; i++) {
		/* the same call by id, wherever its block landed */
		int j = 0;
		while (j < want.n_tools && !str_eq(want.ids[j], got.ids[i]))
			j++;
		assert_true(j < want.n_tools);
		assert_true(str_eq(got.names[i], want.names[j]));
		if (!str_eq(buf_str(&got.args[i]), buf_str(&want.args[j])))
			fail_msg("tool %d args %.*s want %.*s", i, STR_FMT(buf_str(&got.args[i])),
				 STR_FMT(buf_str(&want.args[j])));
		assert_int_equal(json_parse(got.args[i].p, got.args[i].n, NULL, NULL), 0);
	}
	if (want.finish[0])
		assert_string_equal(got.finish, want.finish);
	assert_int_equal(got.usage.prompt_tokens, want.usage.prompt_tokens);
	assert_int_equal(got.usage.completion_tokens, want.usage.completion_tokens);
	assert_int_equal(got.usage.cached_prompt_tokens, want.usage.cached_prompt_tokens);
	assert_true(got.ended);
	summary_free(&want);
	summary_free(&got);
}

static void senc_golden(const char *name)
{
	char f[96];
	struct canon_ev evs[64];
	snprintf(f, sizeof f, "senc_%s.events", name);
	size_t n = events_parse(golden_read(f), evs, UMB_ARRAY_LEN(evs));
	struct buf out;
	buf_init(&out, 0);
	assert_int_equal(senc_run(evs, n, &out), 0);
	snprintf(f, sizeof f, "senc_%s.sse", name);
	golden_check(f, buf_str(&out));
	senc_roundtrip(evs, n, buf_str(&out));
	buf_clear(&out);
}

static void test_senc_golden(void **state)
{
	(void)state;
	senc_golden("text");
	senc_golden("parallel");
	senc_golden("interleaved");
}

/* message_delta waits for the usage that follows the finish (OpenAI's
 * usage chunk), or for END */
static void test_senc_usage_order(void **state)
{
	(void)state;
	struct anthropic_stream_enc *e = malloc(sizeof *e);
	struct buf out;
	buf_init(&out, 0);
	anthropic_stream_enc_init(e, STR("m"));
	struct canon_ev start = { .type = CEV_START, .id = STR("msg_abc") };
	struct canon_ev text = { .type = CEV_TEXT, .text = STR("hi") };
	struct canon_ev fin = { .type = CEV_FINISH, .finish = CANON_FIN_LENGTH };
	struct canon_ev use = { .type = CEV_USAGE,
				.usage = { true, 12, 3, 0, 0 } };
	struct canon_ev end = { .type = CEV_END };
	assert_int_equal(anthropic_stream_enc_event(e, &start, &out), 0);
	assert_non_null(strstr(out.p, "\"id\":\"msg_abc\""));
	assert_int_equal(anthropic_stream_enc_event(e, &text, &out), 0);
	assert_int_equal(anthropic_stream_enc_event(e, &fin, &out), 0);
	assert_null(strstr(out.p, "message_delta"));
	assert_non_null(strstr(out.p, "content_block_stop"));
	buf_reset(&out);
	assert_int_equal(anthropic_stream_enc_event(e, &use, &out), 0);
	assert_string_equal(out.p,
			    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\","
			    "\"stop_sequence\":null},\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":0,"
			    "\"cache_read_input_tokens\":0,\"output_tokens\":3}}\n\n");
	buf_reset(&out);
	assert_int_equal(anthropic_stream_enc_event(e, &end, &out), 0);
	assert_string_equal(out.p, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
	/* nothing after the end */
	buf_reset(&out);
	assert_int_equal(anthropic_stream_enc_event(e, &text, &out), 0);
	assert_int_equal(out.n, 0);

	/* END without START or FINISH still makes a whole message */
	anthropic_stream_enc_clear(e);
	anthropic_stream_enc_init(e, STR("m"));
	buf_reset(&out);
	assert_int_equal(anthropic_stream_enc_event(e, &end, &out), 0);
	assert_non_null(strstr(out.p, "event: message_start\n"));
	assert_non_null(strstr(out.p, "\"stop_reason\":\"end_turn\""));
	assert_non_null(strstr(out.p, "event: message_stop\n"));
	anthropic_stream_enc_clear(e);
	buf_clear(&out);
	free(e);
}

static void test_senc_contract(void **state)
{
	(void)state;
	struct anthropic_stream_enc *e = malloc(sizeof *e);
	struct buf out;
	buf_init(&out, 0);
	struct canon_ev start = { .type = CEV_START };
	struct canon_ev t0 = { .type = CEV_TOOL_START, .index = 0, .id = STR("c0"), .name = STR("f") };
	struct canon_ev t1 = { .type = CEV_TOOL_START, .index = 1, .id = STR("c1"), .name = STR("g") };
	struct canon_ev a0 = { .type = CEV_TOOL_ARGS, .index = 0, .text = STR("{}") };
	struct canon_ev a3 = { .type = CEV_TOOL_ARGS, .index = 3, .text = STR("{}") };
	struct canon_ev big = { .type = CEV_TOOL_START, .index = 300, .id = STR("x"), .name = STR("y") };

	/* arguments for a call never started; a call started twice; an
	 * index past the table */
	anthropic_stream_enc_init(e, STR("m"));
	assert_int_equal(anthropic_stream_enc_event(e, &start, &out), 0);
	assert_int_equal(anthropic_stream_enc_event(e, &a3, &out), UMB_ERR);
	anthropic_stream_enc_clear(e);
	anthropic_stream_enc_init(e, STR("m"));
	assert_int_equal(anthropic_stream_enc_event(e, &t0, &out), 0);
	assert_int_equal(anthropic_stream_enc_event(e, &t0, &out), UMB_ERR);
	anthropic_stream_enc_clear(e);
	anthropic_stream_enc_init(e, STR("m"));
	assert_int_equal(anthropic_stream_enc_event(e, &big, &out), UMB_ERR);

	/* a closed call's JSON may be followed by whitespace only */
	anthropic_stream_enc_clear(e);
	anthropic_stream_enc_init(e, STR("m"));
	buf_reset(&out);
	struct canon_ev ws = { .type = CEV_TOOL_ARGS, .index = 0, .text = STR(" \n") };
	struct canon_ev more = { .type = CEV_TOOL_ARGS, .index = 0, .text = STR(",1") };
	assert_int_equal(anthropic_stream_enc_event(e, &t0, &out), 0);
	assert_int_equal(anthropic_stream_enc_event(e, &a0, &out), 0);
	struct canon_ev a1c = { .type = CEV_TOOL_ARGS, .index = 1, .text = STR("{}") };
	assert_int_equal(anthropic_stream_enc_event(e, &t1, &out), 0); /* closes call 0 */
	assert_int_equal(anthropic_stream_enc_event(e, &a1c, &out), 0);
	assert_int_equal(anthropic_stream_enc_event(e, &ws, &out), 0);
	assert_int_equal(anthropic_stream_enc_event(e, &more, &out), UMB_ERR);

	/* held events have a cap: a second call's huge arguments while the
	 * first is incomplete */
	anthropic_stream_enc_clear(e);
	anthropic_stream_enc_init(e, STR("m"));
	struct canon_ev open0 = { .type = CEV_TOOL_ARGS, .index = 0, .text = STR("{\"a\":") };
	char *chunk = malloc(4096);
	memset(chunk, 'x', 4096);
	struct canon_ev huge = { .type = CEV_TOOL_ARGS, .index = 1, .text = str_make(chunk, 4096) };
	assert_int_equal(anthropic_stream_enc_event(e, &t0, &out), 0);
	assert_int_equal(anthropic_stream_enc_event(e, &open0, &out), 0);
	assert_int_equal(anthropic_stream_enc_event(e, &t1, &out), 0);
	int rc = 0, i = 0;
	for (; i < 1000 && !rc; i++)
		rc = anthropic_stream_enc_event(e, &huge, &out);
	assert_int_equal(rc, UMB_ETOOBIG);
	assert_true(i > 250); /* about 1 MiB held first */
	free(chunk);

	/* arguments that never complete are closed at FINISH as they are */
	anthropic_stream_enc_clear(e);
	anthropic_stream_enc_init(e, STR("m"));
	buf_reset(&out);
	struct canon_ev fin = { .type = CEV_FINISH, .finish = CANON_FIN_TOOL_CALLS };
	struct canon_ev a1 = { .type = CEV_TOOL_ARGS, .index = 1, .text = STR("{\"b\":2}") };
	struct canon_ev end = { .type = CEV_END };
	assert_int_equal(anthropic_stream_enc_event(e, &t0, &out), 0);
	assert_int_equal(anthropic_stream_enc_event(e, &open0, &out), 0);
	assert_int_equal(anthropic_stream_enc_event(e, &t1, &out), 0);
	assert_int_equal(anthropic_stream_enc_event(e, &a1, &out), 0);
	assert_null(strstr(out.p, "\"id\":\"c1\"")); /* held */
	assert_int_equal(anthropic_stream_enc_event(e, &fin, &out), 0);
	assert_int_equal(anthropic_stream_enc_event(e, &end, &out), 0);
	const char *c1 = strstr(out.p, "\"id\":\"c1\"");
	assert_non_null(c1);
	assert_non_null(strstr(c1, "\"partial_json\":\"{\\\"b\\\":2}\""));
	assert_non_null(strstr(out.p, "\"stop_reason\":\"tool_use\""));
	assert_null(e->held.p); /* the held memory went back at FINISH */
	anthropic_stream_enc_clear(e);
	buf_clear(&out);
	free(e);
}

static void test_error_body(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(anthropic_error_body("rate_limit_error", "slow \"down\"\n", &b), 0);
	assert_string_equal(b.p, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
				 "\"message\":\"slow \\\"down\\\"\\n\"}}");
	buf_reset(&b);
	assert_int_equal(anthropic_error_body("api_error", "bad \xff byte", &b), 0);
	assert_int_equal(json_parse(b.p, b.n, NULL, NULL), 0);
	buf_clear(&b);
}

/* ---- the wire ops ---- */

static struct cfg_header prov_headers[] = { { "X-Prov", "pv" }, { "X-Both", "from-prov" } };
static struct cfg_header model_headers[] = { { "X-Both", "from-model" } };
static struct cfg_provider prov = { .name = "anth", .type = PROVIDER_ANTHROPIC,
				    .api_key = "prov-key", .headers = prov_headers,
				    .n_headers = 2 };
static struct cfg_endpoint ep = { .name = "anth", .origin = "http://127.0.0.1:9/prefix" };
static struct cfg_model m_plain = { .name = "claude", .provider = &prov };
static struct cfg_model m_up = { .name = "sonnet", .provider = &prov,
				 .upstream_model = "claude-sonnet-4-5", .api_key = "model-key",
				 .headers = model_headers, .n_headers = 1 };

struct wire {
	struct json_member m[64];
	struct upstream_call call;
	struct provider_request out;
	struct canon_req canon;
};

/* An Anthropic client's call as the ingress hands it over. */
static void wire_prepare(struct wire *w, const char *body, const char *requested)
{
	memset(w, 0, sizeof *w);
	size_t n = strlen(body);
	char *copy = arena_strndup(A, body, n);
	char why[128];
	assert_int_equal(json_parse_top(copy, n, w->m, UMB_ARRAY_LEN(w->m),
					&w->call.n_native_members, NULL, NULL),
			 0);
	assert_int_equal(anthropic_req_decode(A, str_make(copy, n), &w->canon, why, sizeof why), 0);
	w->call.op = UPSTREAM_CHAT;
	w->call.requested_model = str_cstr(requested);
	w->call.dialect = DIALECT_ANTHROPIC;
	w->call.native_body = str_make(copy, n);
	w->call.native_members = w->m;
	w->call.canon = &w->canon;
	w->call.stream = w->canon.stream;
}

static struct str wire_build(struct wire *w, const struct cfg_model *m)
{
	const struct provider_ops *ops = provider_anthropic_ops();
	assert_int_equal(ops->build(A, &w->call, m, &ep, "req-42", &w->out), 0);
	return provider_body_join(A, &w->out);
}

static bool has_header(const struct provider_request *pr, const char *line)
{
	for (size_t i = 0; i < pr->n_headers; i++)
		if (!strcmp(pr->headers[i], line))
			return true;
	return false;
}

static void test_wire_build(void **state)
{
	(void)state;
	struct wire w;
	static const char body[] =
		"{ \"max_tokens\": 5, \"model\" : \"sonnet\", \"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
		" \"thinking\": {\"type\":\"enabled\",\"budget_tokens\":2048} }";
	wire_prepare(&w, body, "sonnet");
	struct str got = wire_build(&w, &m_up);
	/* pass-through: only the model's value changes; the rest (thinking
	 * too, which translation would drop) is the client's bytes */
	assert_string_equal(got.p,
			    "{ \"max_tokens\": 5, \"model\" : \"claude-sonnet-4-5\", \"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
			    " \"thinking\": {\"type\":\"enabled\",\"budget_tokens\":2048} }");
	assert_int_equal(w.out.n_parts, 3);
	assert_ptr_equal(w.out.parts[0].p, w.call.native_body.p);
	assert_string_equal(w.out.url, "http://127.0.0.1:9/prefix/v1/messages");
	assert_true(has_header(&w.out, "x-api-key: model-key"));
	assert_true(has_header(&w.out, "anthropic-version: 2023-06-01"));
	assert_true(has_header(&w.out, "Content-Type: application/json"));
	assert_true(has_header(&w.out, "x-request-id: req-42"));
	assert_true(has_header(&w.out, "Expect:"));
	assert_true(has_header(&w.out, "X-Prov: pv"));
	assert_true(has_header(&w.out, "X-Both: from-model"));
	assert_false(has_header(&w.out, "X-Both: from-prov"));
	for (size_t i = 0; i < w.out.n_headers; i++)
		assert_true(strncasecmp(w.out.headers[i], "authorization", 13));

	/* the name is already the upstream's: the body is not even copied */
	wire_prepare(&w, "{\"model\":\"claude\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		     "claude");
	got = wire_build(&w, &m_plain);
	assert_ptr_equal(got.p, w.call.native_body.p);
	assert_true(has_header(&w.out, "x-api-key: prov-key"));
	/* an escaped spelling is replaced (we cannot tell cheaply) */
	wire_prepare(&w, "{\"model\":\"cl\\u0061ude\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
		     "claude");
	assert_string_equal(wire_build(&w, &m_plain).p,
			    "{\"model\":\"claude\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	/* no model member (a routed request): inserted first */
	wire_prepare(&w, " {\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "");
	assert_string_equal(wire_build(&w, &m_up).p,
			    " {\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");

	/* an OpenAI client: the body is encoded from the canonical form,
	 * streaming as the call says */
	wire_prepare(&w, "{\"model\":\"x\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "x");
	w.call.dialect = DIALECT_OPENAI;
	w.call.stream = true;
	assert_string_equal(wire_build(&w, &m_up).p,
			    "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\","
			    "\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}],\"stream\":true}");
	assert_int_equal(w.out.n_parts, 1);
	/* without a canonical request, or for embeddings: cannot build */
	const struct provider_ops *ops = provider_anthropic_ops();
	w.call.canon = NULL;
	assert_int_equal(ops->build(A, &w.call, &m_up, &ep, "r", &w.out), UMB_ERR);
	w.call.canon = &w.canon;
	w.call.op = UPSTREAM_EMBEDDINGS;
	assert_int_equal(ops->build(A, &w.call, &m_up, &ep, "r", &w.out), UMB_ERR);

	/* a configured anthropic-version replaces ours; no key, no header */
	struct cfg_header v[] = { { "anthropic-version", "2023-01-01" } };
	struct cfg_provider bare = { .name = "bare", .type = PROVIDER_ANTHROPIC, .headers = v,
				     .n_headers = 1 };
	struct cfg_model mb = { .name = "b", .provider = &bare };
	wire_prepare(&w, "{\"model\":\"b\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "b");
	wire_build(&w, &mb);
	assert_true(has_header(&w.out, "anthropic-version: 2023-01-01"));
	assert_false(has_header(&w.out, "anthropic-version: 2023-06-01"));
	for (size_t i = 0; i < w.out.n_headers; i++)
		assert_true(strncasecmp(w.out.headers[i], "x-api-key", 9));
}

static void test_wire_answers(void **state)
{
	(void)state;
	const struct provider_ops *ops = provider_anthropic_ops();
	struct upstream_call call = { .dialect = DIALECT_ANTHROPIC };
	struct canon_usage u = { 0 };
	assert_string_equal(ops->name, "anthropic");
	assert_int_equal(ops->native, DIALECT_ANTHROPIC);
	assert_null(ops->health_path);
	assert_false(ops->embeddings);
	assert_int_equal(ops->stream_size, sizeof(struct anthropic_stream_dec));

	/* pass-through answers: usage read, garbage refused */
	struct str msg = golden_read("resp_text.json");
	assert_int_equal(ops->finish(&call, msg, &u), 0);
	assert_int_equal(u.prompt_tokens, 2095 + 100 + 1800);
	assert_int_equal(u.completion_tokens, 503);
	assert_int_equal(ops->finish(&call, STR("<html>"), &u), UMB_ERR);
	assert_int_equal(ops->finish(&call, STR("{\"type\":\"error\"}"), &u), UMB_ERR);

	/* pass-through stream events */
	struct canon_usage su = { 0 };
	struct sse_event ev = { .has_data = true, .event = STR("message_start"),
				.data = STR("{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}") };
	assert_int_equal(ops->stream_event(&call, &ev, &su), PROVIDER_FORWARD);
	assert_int_equal(su.prompt_tokens, 9);
	ev.data = STR("{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4}}");
	assert_int_equal(ops->stream_event(&call, &ev, &su), PROVIDER_FORWARD);
	assert_int_equal(su.completion_tokens, 4);
	ev.data = STR("{\"type\":\"ping\"}");
	assert_int_equal(ops->stream_event(&call, &ev, &su), PROVIDER_FORWARD);
	ev.data = STR("{\"type\":\"message_stop\"}");
	assert_int_equal(ops->stream_event(&call, &ev, &su), PROVIDER_DONE);
	ev.data = STR("not json");
	assert_int_equal(ops->stream_event(&call, &ev, &su), PROVIDER_GARBAGE);
	ev.event = STR("error");
	ev.data = STR("{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}");
	assert_int_equal(ops->stream_event(&call, &ev, &su), PROVIDER_GARBAGE);
	struct sse_event comment = { .raw = STR(": hi\n\n") };
	assert_int_equal(ops->stream_event(&call, &comment, &su), PROVIDER_FORWARD);

	/* error bodies */
	assert_string_equal(ops->error_message(A, STR("{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
						      "\"message\":\"Number of request tokens has exceeded your per-minute rate limit \\u00e9\"}}")),
			    "Number of request tokens has exceeded your per-minute rate limit \xc3\xa9");
	assert_null(ops->error_message(A, STR("{\"error\":\"x\"}")));
	assert_null(ops->error_message(A, STR("<html>")));

	/* translated answer and stream through the table */
	struct canon_resp r;
	assert_int_equal(ops->decode(A, &call, msg, &r), 0);
	assert_int_equal(r.n_parts, 1);
	void *st = calloc(1, ops->stream_size);
	struct rec rr = { 0 };
	buf_init(&rr.out, 0);
	struct canon_sink sink = { rec_emit, &rr };
	ops->stream_init(st, &call);
	static const char s[] = MSG_START TEXT_START TEXT_DELTA("x") MSG_STOP;
	assert_int_equal(ops->stream_feed(st, s, sizeof s - 1, &sink), 0);
	assert_int_equal(ops->stream_finish(st, &sink), 0);
	ops->stream_clear(st);
	free(st);
	assert_int_equal(rr.n, 4);
	buf_clear(&rr.out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_req_golden, setup, teardown),
		cmocka_unit_test_setup_teardown(test_req_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_req_encode_from_canon, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resp_golden, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resp_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sdec_golden, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sdec_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sdec_sink_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_senc_golden, setup, teardown),
		cmocka_unit_test_setup_teardown(test_senc_usage_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_senc_contract, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wire_build, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wire_answers, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
