/* test_ollama.c — unit tests for providers/ollama.c, Ollama's native API.
 *
 * Golden files (tests/unit/golden/ollama/) hold both directions:
 *   req_*.json        the exact /api/chat or /api/embed body built from a
 *                     canonical request (or an OpenAI embeddings body);
 *   answer_*.json     an Ollama answer, *.expect its canonical decoding;
 *   stream_*.ndjson   an NDJSON stream, *.events the canon_ev sequence and
 *                     the feed/finish result;
 *   embed_*.json      an /api/embed answer, *.openai.json OpenAI's form.
 * UMBRA_UPDATE_GOLDEN=1 rewrites the expected files from the output (to be
 * reviewed by hand, never trusted blindly).
 *
 * Every stream golden is also fed cut at every byte boundary and byte by
 * byte: the events and the result must not depend on how bytes arrive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "providers/ollama.c"

#define GOLDEN_DIR "tests/unit/golden/ollama/"

/* ------------------------------------------------------------------ */
/* fixtures: a provider, models and an endpoint built by hand          */
/* ------------------------------------------------------------------ */

static struct cfg_header prov_headers[] = { { "X-Prov", "pv" }, { "X-Both", "from-prov" } };
static struct cfg_header model_headers[] = { { "X-Both", "from-model" } };
static struct cfg_provider prov_keyed = { .name = "ol", .type = PROVIDER_OLLAMA,
					  .api_key = "proxy-key", .headers = prov_headers,
					  .n_headers = 2 };
static struct cfg_provider prov_bare = { .name = "bare", .type = PROVIDER_OLLAMA };
static struct cfg_model m_plain = { .name = "llama3.2", .provider = &prov_bare };
static struct cfg_model m_renamed = { .name = "local", .provider = &prov_keyed,
				      .upstream_model = "qwen3:8b", .headers = model_headers,
				      .n_headers = 1 };
static struct cfg_endpoint ep = { .name = "e", .origin = "http://127.0.0.1:11434/pfx" };

static const struct provider_ops *ops;

/* ------------------------------------------------------------------ */
/* golden files                                                        */
/* ------------------------------------------------------------------ */

#include "golden.h"

/* ------------------------------------------------------------------ */
/* canonical requests                                                  */
/* ------------------------------------------------------------------ */

#define P_TEXT(s) { .type = CANON_TEXT, .text = STR(s) }
#define P_CALL(i, n, a) { .type = CANON_TOOL_CALL, .id = STR(i), .name = STR(n), .args = STR(a) }
#define P_RESULT(i, t) { .type = CANON_TOOL_RESULT, .id = STR(i), .text = STR(t) }
#define P_IMAGE(mt, d) { .type = CANON_IMAGE, .media_type = STR(mt), .data = STR(d) }
#define MSG(r, arr) { .role = r, .parts = arr, .n_parts = UMB_ARRAY_LEN(arr) }

struct built {
	struct arena *a;
	struct upstream_call call;
	struct provider_request out;
	struct json_member m[64];
	int rc;
};

static void build_chat(struct built *b, const struct canon_req *req, const struct cfg_model *m,
		       bool stream)
{
	memset(b, 0, sizeof *b);
	b->a = arena_new(0);
	b->call.op = UPSTREAM_CHAT;
	b->call.model = m;
	b->call.requested_model = STR("client-name");
	b->call.stream = stream;
	b->call.dialect = DIALECT_ANTHROPIC;
	b->call.canon = req;
	b->rc = ops->build(b->a, &b->call, m, &ep, "req-42", &b->out);
	if (!b->rc)
		provider_body_join(b->a, &b->out);
}

static void built_free(struct built *b)
{
	arena_free(b->a);
}

/* The body is golden and valid JSON. */
static void expect_chat(const char *golden, const struct canon_req *req, const struct cfg_model *m,
			bool stream)
{
	struct built b;
	build_chat(&b, req, m, stream);
	assert_int_equal(b.rc, UMB_OK);
	assert_string_equal(b.out.url, "http://127.0.0.1:11434/pfx/api/chat");
	struct json_err err;
	if (json_parse(b.out.body.p, b.out.body.n, NULL, &err))
		fail_msg("body is not JSON (%s at %zu): %.*s", err.msg, err.off, STR_FMT(b.out.body));
	golden_check(golden, b.out.body);
	built_free(&b);
}

static void test_chat_request_simple(void **state)
{
	(void)state;
	struct canon_part u[] = { P_TEXT("Why is the sky blue?") };
	struct canon_msg msgs[] = { MSG(CANON_USER, u) };
	struct canon_req req = {
		.model = STR("client-name"), .system = STR("Be terse.\nAnswer in English."),
		.msgs = msgs, .n_msgs = 1, .max_tokens = 64,
		.has_temperature = true, .temperature = 0.7,
		.has_top_p = true, .top_p = 0.9, .has_top_k = true, .top_k = 40,
		.stop = { STR("\n\n"), STR("END") }, .n_stop = 2, .stream = true,
	};
	expect_chat("req_simple.json", &req, &m_plain, true);
	/* the same request not streamed says stream:false (Ollama streams
	 * when the member is absent) */
	req.stream = false;
	struct built b;
	build_chat(&b, &req, &m_plain, false);
	assert_int_equal(b.rc, UMB_OK);
	assert_non_null(memmem(b.out.body.p, b.out.body.n, "\"stream\":false", 14));
	built_free(&b);
}

static void test_chat_request_minimal(void **state)
{
	(void)state;
	/* no system, no options, no tools: none of those members appear */
	struct canon_part u[] = { P_TEXT("hi") };
	struct canon_msg msgs[] = { MSG(CANON_USER, u) };
	struct canon_req req = { .msgs = msgs, .n_msgs = 1 };
	expect_chat("req_minimal.json", &req, &m_renamed, false);

	/* views without a pointer (STR_NULL) are empty strings: an assistant
	 * turn that only calls a tool, a result with no text, an empty turn */
	struct canon_part a[] = { { .type = CANON_TOOL_CALL, .id = STR("c9"), .name = STR("f") } };
	struct canon_part r[] = { { .type = CANON_TOOL_RESULT, .id = STR("c9") } };
	struct canon_msg m2[] = { MSG(CANON_USER, u), MSG(CANON_ASSISTANT, a), MSG(CANON_USER, r),
				  { .role = CANON_ASSISTANT } };
	struct canon_req r2 = { .msgs = m2, .n_msgs = 4 };
	struct built b;
	build_chat(&b, &r2, &m_plain, false);
	assert_int_equal(b.rc, UMB_OK);
	assert_true(str_eq(b.out.body, STR(
		"{\"model\":\"llama3.2\",\"stream\":false,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
		"{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"c9\",\"function\":"
		"{\"name\":\"f\",\"arguments\":{}}}]},{\"role\":\"tool\",\"content\":\"\",\"tool_name\":\"f\","
		"\"tool_call_id\":\"c9\"},{\"role\":\"assistant\",\"content\":\"\"}]}")));
	built_free(&b);
}

/* A tool round trip as an Anthropic client sends it: the assistant's
 * parallel calls, then one user turn holding both results and text. */
static struct canon_tool weather_tools[] = {
	{ .name = STR("get_weather"), .description = STR("Current weather for a city"),
	  .schema = STR("{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}") },
	{ .name = STR("get_time"), .schema = STR("") },
};

static void tools_request(struct canon_req *req, struct canon_msg *msgs)
{
	static struct canon_part u1[] = { P_TEXT("Weather and time in Paris?") };
	static struct canon_part a1[] = {
		P_TEXT("Let me check."),
		P_CALL("toolu_01A", "get_weather", "{\"city\": \"Paris\"}"),
		P_CALL("toolu_01B", "get_time", ""),
	};
	static struct canon_part u2[] = {
		P_RESULT("toolu_01A", "{\"temp_c\":21,\"sky\":\"clear\"}"),
		P_RESULT("toolu_01B", "14:05"),
		P_TEXT("Thanks, now summarise."),
	};
	msgs[0] = (struct canon_msg)MSG(CANON_USER, u1);
	msgs[1] = (struct canon_msg)MSG(CANON_ASSISTANT, a1);
	msgs[2] = (struct canon_msg)MSG(CANON_USER, u2);
	*req = (struct canon_req){ .msgs = msgs, .n_msgs = 3, .tools = weather_tools, .n_tools = 2 };
}

static void test_chat_request_tools_round_trip(void **state)
{
	(void)state;
	struct canon_msg msgs[3];
	struct canon_req req;
	tools_request(&req, msgs);
	expect_chat("req_tools.json", &req, &m_plain, false);

	/* a result whose call is unknown goes without tool_name; one that
	 * names itself keeps its own name */
	struct canon_part u[] = { P_RESULT("nope", "x"),
				  { .type = CANON_TOOL_RESULT, .id = STR("toolu_01A"),
				    .name = STR("own_name"), .text = STR("y") } };
	msgs[2] = (struct canon_msg)MSG(CANON_USER, u);
	struct built b;
	build_chat(&b, &req, &m_plain, false);
	assert_int_equal(b.rc, UMB_OK);
	struct json_val root, arr, v, name;
	assert_int_equal(json_parse(b.out.body.p, b.out.body.n, &root, NULL), 0);
	assert_true(json_obj_get(root, "messages", &arr));
	struct json_iter it;
	json_iter_init(&it, arr);
	int n = 0, tool_msgs = 0;
	while (json_arr_next(&it, &v)) {
		n++;
		struct json_val role;
		assert_true(json_obj_get(v, "role", &role));
		if (!json_str_eq(role, "tool"))
			continue;
		tool_msgs++;
		bool has = json_obj_get(v, "tool_name", &name);
		if (tool_msgs == 1)
			assert_false(has);
		else
			assert_true(has && json_str_eq(name, "own_name"));
	}
	assert_int_equal(n, 4);
	assert_int_equal(tool_msgs, 2);
	built_free(&b);
}

static void test_chat_request_tool_choice(void **state)
{
	(void)state;
	struct canon_msg msgs[3];
	struct canon_req req;
	tools_request(&req, msgs);
	/* none: Ollama has no tool_choice, so the tools are not offered */
	req.tool_choice = CANON_TC_NONE;
	struct built b;
	build_chat(&b, &req, &m_plain, false);
	assert_int_equal(b.rc, UMB_OK);
	assert_null(memmem(b.out.body.p, b.out.body.n, "\"tools\"", 7));
	built_free(&b);
	/* one named tool: only that tool is offered */
	req.tool_choice = CANON_TC_TOOL;
	req.tool_choice_name = STR("get_time");
	expect_chat("req_tool_choice_named.json", &req, &m_plain, false);
	/* a name that is not a tool: all tools (nothing better to do) */
	req.tool_choice_name = STR("missing");
	build_chat(&b, &req, &m_plain, false);
	assert_int_equal(b.rc, UMB_OK);
	assert_non_null(memmem(b.out.body.p, b.out.body.n, "get_weather", 11));
	assert_non_null(memmem(b.out.body.p, b.out.body.n, "\"name\":\"get_time\"", 17));
	built_free(&b);
}

static void test_chat_request_images_and_text(void **state)
{
	(void)state;
	struct canon_part u[] = {
		P_TEXT("What is in these?"),
		P_IMAGE("image/png", "iVBORw0KGgo="),
		P_TEXT("Second line \"quoted\" \xc3\xa9 \xf0\x9f\x98\x80 tab\there \x01"),
		{ .type = CANON_IMAGE, .url = STR("data:image/jpeg;base64,/9j/4AAQ") },
	};
	/* invalid UTF-8 in a text becomes U+FFFD, never invalid JSON */
	struct canon_part a[] = { P_TEXT("bad \xff\xfe bytes") };
	struct canon_part u2[] = { P_TEXT("ok") };
	struct canon_msg msgs[] = { MSG(CANON_USER, u), MSG(CANON_ASSISTANT, a), MSG(CANON_USER, u2) };
	struct canon_req req = { .msgs = msgs, .n_msgs = 3 };
	expect_chat("req_images.json", &req, &m_plain, true);
}

static void test_chat_request_refused(void **state)
{
	(void)state;
	log_min_level = LOG_ERROR; /* the refusals log a warning each */
	struct built b;
	/* an image by URL: Ollama takes base64 only */
	struct canon_part u[] = { P_TEXT("look"),
				  { .type = CANON_IMAGE, .url = STR("https://example.com/cat.png") } };
	struct canon_msg msgs[] = { MSG(CANON_USER, u) };
	struct canon_req req = { .msgs = msgs, .n_msgs = 1 };
	build_chat(&b, &req, &m_plain, false);
	assert_int_equal(b.rc, UMB_ERR);
	built_free(&b);
	/* arguments that are not a JSON object */
	static const char *bad_args[] = { "not json", "[1,2]", "\"{}\"", "{\"a\":", "12" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad_args); i++) {
		struct canon_part a[] = { P_CALL("c1", "f", "") };
		a[0].args = str_cstr(bad_args[i]);
		struct canon_msg m2[] = { MSG(CANON_USER, u), MSG(CANON_ASSISTANT, a) };
		m2[0].n_parts = 1;
		struct canon_req r2 = { .msgs = m2, .n_msgs = 2 };
		build_chat(&b, &r2, &m_plain, false);
		if (b.rc != UMB_ERR)
			fail_msg("arguments %s accepted", bad_args[i]);
		built_free(&b);
	}
	/* no canonical request at all */
	build_chat(&b, NULL, &m_plain, false);
	assert_int_equal(b.rc, UMB_ERR);
	built_free(&b);
	log_min_level = LOG_INFO;
}

static void test_chat_request_numbers(void **state)
{
	(void)state;
	/* doubles go out in their shortest exact spelling */
	static const struct { double d; const char *want; } cases[] = {
		{ 0.7, "0.7" }, { 1, "1" }, { 0, "0" }, { 0.1 + 0.2, "0.30000000000000004" },
		{ 1e-7, "9.9999999999999995e-08" }, { 2.5, "2.5" },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(cases); i++) {
		struct buf out;
		buf_init(&out, 0);
		struct jw w = { &out, 0 };
		jw_double(&w, cases[i].d);
		assert_int_equal(w.rc, 0);
		assert_true(strtod(out.p, NULL) == cases[i].d);
		if (cases[i].d != 1e-7)
			assert_string_equal(out.p, cases[i].want);
		buf_clear(&out);
	}
	struct buf out;
	buf_init(&out, 0);
	struct jw w = { &out, 0 };
	jw_double(&w, 1.0 / 0.0);
	assert_int_equal(w.rc, UMB_ERR); /* never "inf" in JSON */
	buf_clear(&out);
}

static void test_headers(void **state)
{
	(void)state;
	struct canon_part u[] = { P_TEXT("hi") };
	struct canon_msg msgs[] = { MSG(CANON_USER, u) };
	struct canon_req req = { .msgs = msgs, .n_msgs = 1 };
	struct built b;
	build_chat(&b, &req, &m_renamed, false);
	assert_int_equal(b.rc, UMB_OK);
	static const char *want[] = {
		"Content-Type: application/json", "Expect:", "x-request-id: req-42",
		"Authorization: Bearer proxy-key", "X-Prov: pv", "X-Both: from-model",
	};
	assert_int_equal(b.out.n_headers, UMB_ARRAY_LEN(want));
	for (size_t i = 0; i < UMB_ARRAY_LEN(want); i++)
		assert_string_equal(b.out.headers[i], want[i]);
	/* the upstream name, not the client's */
	assert_non_null(memmem(b.out.body.p, b.out.body.n, "\"model\":\"qwen3:8b\"", 18));
	built_free(&b);
	/* no key: no Authorization */
	build_chat(&b, &req, &m_plain, false);
	assert_int_equal(b.out.n_headers, 3);
	for (size_t i = 0; i < b.out.n_headers; i++)
		assert_null(strcasestr(b.out.headers[i], "authorization"));
	built_free(&b);
}

/* ------------------------------------------------------------------ */
/* embeddings request                                                  */
/* ------------------------------------------------------------------ */

static int build_embed(struct built *b, const char *body, const struct cfg_model *m)
{
	memset(b, 0, sizeof *b);
	b->a = arena_new(0);
	size_t n = strlen(body);
	char *copy = arena_strndup(b->a, body, n);
	if (json_parse_top(copy, n, b->m, UMB_ARRAY_LEN(b->m), &b->call.n_members, NULL, NULL))
		fail_msg("test body is not JSON: %s", body);
	b->call.op = UPSTREAM_EMBEDDINGS;
	b->call.body = str_make(copy, n);
	b->call.members = b->m;
	b->call.model = m;
	b->call.requested_model = STR("client-embed");
	b->rc = ops->build(b->a, &b->call, m, &ep, "req-7", &b->out);
	if (!b->rc)
		provider_body_join(b->a, &b->out);
	return b->rc;
}

static void test_embed_request(void **state)
{
	(void)state;
	struct built b;
	assert_int_equal(build_embed(&b, "{\"model\":\"client-embed\",\"input\":[\"caf\\u00e9\", \"two\"],"
					 "\"encoding_format\":\"float\",\"dimensions\":256,\"user\":\"u\"}",
				     &m_renamed),
			 UMB_OK);
	assert_string_equal(b.out.url, "http://127.0.0.1:11434/pfx/api/embed");
	golden_check("req_embed.json", b.out.body);
	built_free(&b);
	assert_int_equal(build_embed(&b, "{\"input\":\"one string\",\"model\":\"x\"}", &m_plain), UMB_OK);
	assert_true(str_eq(b.out.body, STR("{\"model\":\"llama3.2\",\"input\":\"one string\"}")));
	built_free(&b);

	log_min_level = LOG_ERROR;
	static const char *bad[] = {
		"{\"model\":\"x\",\"input\":[1,2,3]}",             /* tokens */
		"{\"model\":\"x\",\"input\":[[1,2],[3]]}",         /* token arrays */
		"{\"model\":\"x\",\"input\":[\"a\",7]}",           /* mixed */
		"{\"model\":\"x\",\"input\":42}",
		"{\"model\":\"x\"}",
		"{\"model\":\"x\",\"input\":\"a\",\"encoding_format\":\"base64\"}",
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		if (build_embed(&b, bad[i], &m_plain) != UMB_ERR)
			fail_msg("accepted: %s", bad[i]);
		built_free(&b);
	}
	log_min_level = LOG_INFO;
}

/* ------------------------------------------------------------------ */
/* answers                                                             */
/* ------------------------------------------------------------------ */

static const char *finish_name(enum canon_finish f)
{
	switch (f) {
	case CANON_FIN_NONE: return "none";
	case CANON_FIN_STOP: return "stop";
	case CANON_FIN_LENGTH: return "length";
	case CANON_FIN_TOOL_CALLS: return "tool_calls";
	case CANON_FIN_STOP_SEQUENCE: return "stop_sequence";
	case CANON_FIN_CONTENT_FILTER: return "content_filter";
	}
	return "?";
}

static void dump_str(struct buf *b, struct str s)
{
	assert_int_equal(json_write_str_lossy(b, s), 0);
}

static void dump_usage(struct buf *b, const struct canon_usage *u)
{
	buf_printf(b, "USAGE seen=%d prompt=%llu completion=%llu cached=%llu\n", u->seen,
		   (unsigned long long)u->prompt_tokens, (unsigned long long)u->completion_tokens,
		   (unsigned long long)u->cached_prompt_tokens);
}

static void dump_resp(struct buf *b, const struct canon_resp *r)
{
	buf_append_lit(b, "MODEL ");
	dump_str(b, r->model);
	buf_append_lit(b, "\n");
	for (size_t i = 0; i < r->n_parts; i++) {
		const struct canon_part *p = &r->parts[i];
		if (p->type == CANON_TEXT) {
			buf_append_lit(b, "TEXT ");
			dump_str(b, p->text);
		} else {
			assert_int_equal(p->type, CANON_TOOL_CALL);
			buf_append_lit(b, "TOOL ");
			dump_str(b, p->id);
			buf_append_lit(b, " ");
			dump_str(b, p->name);
			buf_append_lit(b, " ");
			dump_str(b, p->args);
			/* arguments are always a JSON text */
			assert_int_equal(json_parse(p->args.p, p->args.n, NULL, NULL), 0);
		}
		buf_append_lit(b, "\n");
	}
	buf_printf(b, "FINISH %s\n", finish_name(r->finish));
	dump_usage(b, &r->usage);
}

static void expect_answer(const char *name)
{
	char in[256], exp[256];
	snprintf(in, sizeof in, "%s.json", name);
	snprintf(exp, sizeof exp, "%s.expect", name);
	size_t n;
	char *body = golden_slurp(in, &n);
	struct arena *a = arena_new(0);
	struct canon_resp r;
	struct upstream_call call = { .op = UPSTREAM_CHAT };
	assert_int_equal(ops->decode(a, &call, str_make(body, n), &r), UMB_OK);
	/* strings live in the arena, not in the body */
	memset(body, 'X', n);
	struct buf out;
	buf_init(&out, 0);
	dump_resp(&out, &r);
	if (out.n && out.p[out.n - 1] == '\n')
		out.n--;
	golden_check(exp, buf_str(&out));
	buf_clear(&out);
	arena_free(a);
	free(body);
}

static void test_answer_decode(void **state)
{
	(void)state;
	expect_answer("answer_text");     /* docs' non-stream chat answer */
	expect_answer("answer_tools");    /* docs' tool answer: no ids, done_reason stop */
	expect_answer("answer_tool_ids"); /* newer Ollama: ids and function.index */
	expect_answer("answer_length");   /* done_reason length, counts omitted */
}

static void test_answer_ids_stable_and_distinct(void **state)
{
	(void)state;
	/* the same answer decodes to the same ids; another created_at (the
	 * next turn) to other ids; calls in one answer differ by index */
	static const char fmt[] =
		"{\"model\":\"m\",\"created_at\":\"%s\",\"message\":{\"role\":\"assistant\",\"content\":\"\","
		"\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{}}},"
		"{\"function\":{\"name\":\"f\",\"arguments\":{}}}]},\"done\":true,\"done_reason\":\"stop\"}";
	char body[512];
	struct str ids[3][2];
	const char *when[3] = { "2025-01-01T00:00:00.1Z", "2025-01-01T00:00:00.1Z", "2025-01-01T00:00:00.2Z" };
	struct arena *a = arena_new(0);
	for (int k = 0; k < 3; k++) {
		struct canon_resp r;
		int n = snprintf(body, sizeof body, fmt, when[k]);
		assert_int_equal(ops->decode(a, NULL, str_make(body, (size_t)n), &r), UMB_OK);
		assert_int_equal(r.n_parts, 2);
		assert_int_equal(r.finish, CANON_FIN_TOOL_CALLS);
		for (int j = 0; j < 2; j++) {
			ids[k][j] = r.parts[j].id;
			assert_int_equal(ids[k][j].n, 21);
			assert_memory_equal(ids[k][j].p, "call_", 5);
		}
	}
	assert_true(str_eq(ids[0][0], ids[1][0]) && str_eq(ids[0][1], ids[1][1]));
	assert_false(str_eq(ids[0][0], ids[0][1]));
	assert_false(str_eq(ids[0][0], ids[2][0]));
	assert_false(str_eq(ids[0][1], ids[2][1]));
	arena_free(a);
}

static void test_answer_garbage(void **state)
{
	(void)state;
	static const char *bad[] = {
		"",
		"not json",
		"[]",
		"\"done\"",
		"{\"error\":\"model \\\"x\\\" not found, try pulling it first\"}",
		"{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"hi\"}}",             /* no done */
		"{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},\"done\":false}",
		"{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},\"done\":\"true\"}",
		"{\"model\":\"m\",\"message\":\"hi\",\"done\":true}",
		"{\"model\":\"m\",\"message\":{\"content\":7},\"done\":true}",
		"{\"model\":\"m\",\"message\":{\"tool_calls\":{}},\"done\":true}",
		"{\"model\":\"m\",\"message\":{\"tool_calls\":[{}]},\"done\":true}",
		"{\"model\":\"m\",\"message\":{\"tool_calls\":[{\"function\":{\"arguments\":{}}}]},\"done\":true}",
		"{\"model\":\"m\",\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"\"}}]},\"done\":true}",
		"{\"model\":\"m\",\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":3}}]},\"done\":true}",
		"{\"model\":\"m\",\"message\":{\"tool_calls\":[{\"id\":5,\"function\":{\"name\":\"f\"}}]},\"done\":true}",
		"{\"model\":\"m\",\"message\":{\"content\":\"\\ud800 ok\"},\"done\":true} trailing",
		"{\"model\":\"m\",\"message\":{\"content\":\"\xff\"},\"done\":true}", /* invalid UTF-8 */
	};
	struct arena *a = arena_new(0);
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		struct canon_resp r;
		if (ops->decode(a, NULL, str_cstr(bad[i]), &r) != UMB_ERR)
			fail_msg("garbage accepted: %s", bad[i]);
	}
	/* arguments as a string (OpenAI's spelling, from proxies) must hold
	 * an object; "" means none */
	struct canon_resp r;
	static const char *str_args[] = { "\"[1]\"", "\"nope\"", "\"{\\\"a\\\":\"" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(str_args); i++) {
		char body[256];
		int n = snprintf(body, sizeof body,
				 "{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":%s}}]},"
				 "\"done\":true}", str_args[i]);
		if (ops->decode(a, NULL, str_make(body, (size_t)n), &r) != UMB_ERR)
			fail_msg("string arguments accepted: %s", body);
	}
	assert_int_equal(ops->decode(a, NULL, STR("{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"f\","
						  "\"arguments\":\" {\\\"a\\\": 1} \"}},{\"function\":{\"name\":\"g\","
						  "\"arguments\":\"\"}}]},\"done\":true}"), &r), 0);
	assert_int_equal(r.n_parts, 2);
	assert_true(str_eq(r.parts[0].args, STR("{\"a\": 1}")));
	assert_true(str_eq(r.parts[1].args, STR("{}")));
	/* a null message or null tool_calls is an empty answer, not garbage */
	assert_int_equal(ops->decode(a, NULL, STR("{\"model\":\"m\",\"message\":null,\"done\":true,\"done_reason\":\"load\"}"), &r), 0);
	assert_int_equal(r.n_parts, 0);
	assert_int_equal(r.finish, CANON_FIN_STOP);
	assert_false(r.usage.seen);
	arena_free(a);
}

/* ------------------------------------------------------------------ */
/* NDJSON streams                                                      */
/* ------------------------------------------------------------------ */

/* Records every event as a line of text; can stop the decoder. */
struct trace {
	struct buf b;
	int n;
	int stop_at; /* return 7 on this event (1-based), 0: never */
	enum canon_ev_type last;
};

static int trace_emit(void *ctx, const struct canon_ev *ev)
{
	struct trace *t = ctx;
	struct buf *b = &t->b;
	/* the order canon.h promises */
	if (t->n == 0)
		assert_int_equal(ev->type, CEV_START);
	else
		assert_int_not_equal(ev->type, CEV_START);
	assert_true(t->n == 0 || t->last != CEV_END);
	t->n++;
	t->last = ev->type;
	switch (ev->type) {
	case CEV_START:
		buf_append_lit(b, "START model=");
		dump_str(b, ev->model);
		break;
	case CEV_TEXT:
		buf_append_lit(b, "TEXT ");
		dump_str(b, ev->text);
		break;
	case CEV_TOOL_START:
		buf_printf(b, "TOOL_START %d ", ev->index);
		dump_str(b, ev->id);
		buf_append_lit(b, " ");
		dump_str(b, ev->name);
		break;
	case CEV_TOOL_ARGS:
		buf_printf(b, "TOOL_ARGS %d ", ev->index);
		dump_str(b, ev->text);
		break;
	case CEV_FINISH:
		buf_printf(b, "FINISH %s", finish_name(ev->finish));
		break;
	case CEV_USAGE:
		dump_usage(b, &ev->usage);
		b->n--; /* its newline comes below */
		break;
	case CEV_END:
		buf_append_lit(b, "END");
		break;
	}
	buf_append_lit(b, "\n");
	return t->stop_at && t->n == t->stop_at ? 7 : 0;
}

/* Feed `in` cut at the given offsets (sorted, may be empty), then finish
 * when every feed succeeded; the trace ends with "=> rc". */
static void run_stream(const char *in, size_t n, const size_t *cuts, size_t n_cuts,
		       struct trace *t)
{
	struct ollama_stream *st = calloc(1, ops->stream_size);
	struct canon_sink sink = { trace_emit, t };
	ops->stream_init(st, NULL);
	size_t pos = 0;
	int rc = 0;
	for (size_t i = 0; i <= n_cuts && !rc; i++) {
		size_t end = i < n_cuts ? cuts[i] : n;
		/* each piece in its own heap block: ASan catches views kept
		 * into an earlier feed */
		char *piece = malloc(end - pos + 1);
		memcpy(piece, in + pos, end - pos);
		rc = ops->stream_feed(st, piece, end - pos, &sink);
		free(piece);
		pos = end;
	}
	if (!rc)
		rc = ops->stream_finish(st, &sink);
	ops->stream_clear(st);
	free(st);
	buf_printf(&t->b, "=> %s", rc == 0 ? "ok" : rc == UMB_ERR ? "error" : "stopped");
}

static void trace_init(struct trace *t)
{
	memset(t, 0, sizeof *t);
	buf_init(&t->b, 0);
}

static void expect_stream(const char *name)
{
	char in_name[256], exp_name[256];
	snprintf(in_name, sizeof in_name, "%s.ndjson", name);
	snprintf(exp_name, sizeof exp_name, "%s.events", name);
	size_t n;
	char *in = golden_slurp(in_name, &n);
	struct trace whole;
	trace_init(&whole);
	run_stream(in, n, NULL, 0, &whole);
	golden_check(exp_name, buf_str(&whole.b));
	/* every single cut gives the same trace */
	for (size_t cut = 0; cut <= n; cut++) {
		struct trace t;
		trace_init(&t);
		run_stream(in, n, &cut, 1, &t);
		if (!str_eq(buf_str(&t.b), buf_str(&whole.b)))
			fail_msg("%s cut at %zu:\n%s\nvs whole:\n%s", in_name, cut, t.b.p, whole.b.p);
		buf_clear(&t.b);
	}
	/* byte by byte (multibyte UTF-8 split everywhere) */
	size_t *cuts = malloc((n + 1) * sizeof *cuts);
	for (size_t i = 0; i < n; i++)
		cuts[i] = i + 1;
	struct trace t;
	trace_init(&t);
	run_stream(in, n, cuts, n ? n - 1 : 0, &t);
	if (!str_eq(buf_str(&t.b), buf_str(&whole.b)))
		fail_msg("%s byte by byte:\n%s\nvs whole:\n%s", in_name, t.b.p, whole.b.p);
	buf_clear(&t.b);
	free(cuts);
	buf_clear(&whole.b);
	free(in);
}

static void test_stream_goldens(void **state)
{
	(void)state;
	expect_stream("stream_text");       /* deltas, multibyte text, final counts */
	expect_stream("stream_tools");      /* parallel tool calls in one line */
	expect_stream("stream_tool_ids");   /* calls with ids, over two lines */
	expect_stream("stream_crlf_blank"); /* CRLF, blank and space-only lines */
	expect_stream("stream_length");     /* done_reason length */
	expect_stream("stream_no_final_newline");
	expect_stream("stream_error");      /* {"error":...} mid-stream */
	expect_stream("stream_cut");        /* no done line: cut short */
	expect_stream("stream_after_done"); /* lines after done are ignored */
}

static int stream_str(const char *in, size_t n, struct trace *t)
{
	trace_init(t);
	run_stream(in, n, NULL, 0, t);
	const char *end = strrchr(t->b.p, '>');
	return end && !strcmp(end, "> ok") ? 0 : UMB_ERR;
}

static void test_stream_hostile(void **state)
{
	(void)state;
#define B(lit) { lit, sizeof(lit) - 1 }
	static const struct {
		const char *s;
		size_t n;
	} bad[] = {
		B("garbage\n"),
		B("[]\n"),
		B("{\"model\":\"m\",\"message\":{\"content\":\"a\"}}\n"), /* no done */
		B("{\"model\":\"m\",\"message\":{\"content\":\"a\"},\"done\":\"no\"}\n"),
		B("{\"model\":\"m\",\"message\":[],\"done\":false}\n"),
		B("{\"model\":\"m\",\"message\":{\"content\":\"a\xc3\"},\"done\":false}\n"), /* cut UTF-8 */
		B("{\"model\":\"m\",\"message\":{\"content\":\"a\x00" "b\"},\"done\":false}\n"),
		B("{\"model\":\"m\",\"done\":false}\x00\n"),
		B("{\"model\":\"m\",\"message\":{\"tool_calls\":[{\"function\":{}}]},\"done\":false}\n"),
		B("{\"model\":\"m\",\"done\":false}{\"done\":true}\n"), /* two objects, one line */
		B("{\"error\":\"an error was encountered while running the model\"}\n"),
		B("\n\n\n"), /* nothing at all */
	};
#undef B
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		struct trace t;
		if (stream_str(bad[i].s, bad[i].n, &t) != UMB_ERR)
			fail_msg("hostile stream %zu accepted:\n%s", i, t.b.p);
		buf_clear(&t.b);
	}

	/* deep nesting is refused by the parser, not by the stack */
	struct buf deep;
	buf_init(&deep, 0);
	buf_append_lit(&deep, "{\"done\":false,\"x\":");
	for (int i = 0; i < 10000; i++)
		buf_append_lit(&deep, "[");
	buf_append_lit(&deep, "\n");
	struct trace t;
	assert_int_equal(stream_str(deep.p, deep.n, &t), UMB_ERR);
	buf_clear(&t.b);
	buf_clear(&deep);

	/* a line longer than 8 MiB fails as soon as it is too long, whole
	 * or in pieces; one just under the cap is fine */
	size_t big = OLLAMA_MAX_LINE + 1;
	char *line = malloc(big + 1);
	memset(line, ' ', big);
	line[big] = '\n';
	assert_int_equal(stream_str(line, big + 1, &t), UMB_ERR);
	buf_clear(&t.b);
	struct ollama_stream *st = calloc(1, ops->stream_size);
	struct canon_sink sink = { trace_emit, &t };
	trace_init(&t);
	ops->stream_init(st, NULL);
	int rc = 0;
	for (size_t off = 0; off < big && !rc; off += 65536)
		rc = ops->stream_feed(st, line, UMB_MIN((size_t)65536, big - off), &sink);
	assert_int_equal(rc, UMB_ERR);
	assert_int_equal(ops->stream_feed(st, "\n", 1, &sink), UMB_ERR); /* sticky */
	assert_int_equal(ops->stream_finish(st, &sink), UMB_ERR);
	ops->stream_clear(st);
	free(st);
	buf_clear(&t.b);
	static const char tail[] = "{\"model\":\"m\",\"done\":true}";
	size_t ok_n = OLLAMA_MAX_LINE;
	memset(line, ' ', ok_n);
	memcpy(line + ok_n - (sizeof tail - 1), tail, sizeof tail - 1);
	line[ok_n] = '\n';
	assert_int_equal(stream_str(line, ok_n + 1, &t), 0);
	buf_clear(&t.b);
	free(line);

	/* more tool calls than one answer may have */
	struct buf many;
	buf_init(&many, 0);
	buf_append_lit(&many, "{\"model\":\"m\",\"message\":{\"tool_calls\":[");
	for (int i = 0; i <= OLLAMA_MAX_TOOLS; i++)
		buf_printf(&many, "%s{\"function\":{\"name\":\"f\",\"arguments\":{}}}", i ? "," : "");
	buf_append_lit(&many, "]},\"done\":true}\n");
	assert_int_equal(stream_str(many.p, many.n, &t), UMB_ERR);
	buf_clear(&t.b);
	struct arena *a = arena_new(0);
	struct canon_resp r;
	many.n--; /* the same as a non-stream answer */
	assert_int_equal(ops->decode(a, NULL, buf_str(&many), &r), UMB_ERR);
	arena_free(a);
	buf_clear(&many);
}

static void test_stream_sink_stops(void **state)
{
	(void)state;
	size_t n;
	char *in = golden_slurp("stream_text.ndjson", &n);
	for (int stop = 1; stop <= 4; stop++) {
		struct trace t;
		trace_init(&t);
		t.stop_at = stop;
		struct ollama_stream *st = calloc(1, ops->stream_size);
		struct canon_sink sink = { trace_emit, &t };
		ops->stream_init(st, NULL);
		/* the sink's own value comes back, and stays */
		assert_int_equal(ops->stream_feed(st, in, n, &sink), 7);
		assert_int_equal(t.n, stop);
		assert_int_equal(ops->stream_feed(st, "\n", 1, &sink), 7);
		assert_int_equal(ops->stream_finish(st, &sink), 7);
		assert_int_equal(t.n, stop);
		ops->stream_clear(st);
		free(st);
		buf_clear(&t.b);
	}
	free(in);
}

/* ------------------------------------------------------------------ */
/* embeddings answer, errors, the table                                */
/* ------------------------------------------------------------------ */

static void test_embed_answer(void **state)
{
	(void)state;
	size_t n;
	char *body = golden_slurp("embed_answer.json", &n);
	struct arena *a = arena_new(0);
	struct upstream_call call = { .op = UPSTREAM_EMBEDDINGS, .requested_model = STR("client-embed") };
	struct buf out;
	buf_init(&out, 0);
	struct canon_usage u = { 0 };
	assert_int_equal(ops->embeddings_to_openai(a, &call, str_make(body, n), &out, &u), UMB_OK);
	assert_int_equal(json_parse(out.p, out.n, NULL, NULL), 0);
	golden_check("embed_answer.openai.json", buf_str(&out));
	assert_true(u.seen);
	assert_int_equal(u.prompt_tokens, 14);
	assert_int_equal(u.completion_tokens, 0);
	/* the number texts are Ollama's own bytes */
	assert_non_null(memmem(out.p, out.n, "0.010071029,-0.0017594862,1e-05", 31));
	buf_clear(&out);
	free(body);

	/* no count, no model: usage unknown, the requested name shown */
	buf_init(&out, 0);
	memset(&u, 0, sizeof u);
	assert_int_equal(ops->embeddings_to_openai(a, &call, STR("{\"embeddings\":[]}"), &out, &u), 0);
	assert_string_equal(out.p, "{\"object\":\"list\",\"data\":[],\"model\":\"client-embed\","
				   "\"usage\":{\"prompt_tokens\":0,\"total_tokens\":0}}");
	assert_false(u.seen);
	buf_clear(&out);

	static const char *bad[] = {
		"", "[]", "{\"model\":\"m\"}", "{\"embeddings\":{}}", "{\"embeddings\":[1,2]}",
		"{\"embeddings\":[[1,\"2\"]]}", "{\"embeddings\":[[1,[2]]]}",
		"{\"error\":\"this model does not support embeddings\"}",
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		buf_init(&out, 0);
		if (ops->embeddings_to_openai(a, &call, str_cstr(bad[i]), &out, &u) != UMB_ERR)
			fail_msg("accepted: %s", bad[i]);
		buf_clear(&out);
	}
	arena_free(a);
}

static void test_error_message(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	const char *m = ops->error_message(a, STR("{\"error\":\"model \\\"llama9\\\" not found, try pulling it first\"}"));
	assert_non_null(m);
	assert_string_equal(m, "model \"llama9\" not found, try pulling it first");
	m = ops->error_message(a, STR("{\"error\":{\"message\":\"from a proxy\",\"type\":\"x\"}}"));
	assert_string_equal(m, "from a proxy");
	assert_null(ops->error_message(a, STR("{\"error\":42}")));
	assert_null(ops->error_message(a, STR("{\"message\":\"no\"}")));
	assert_null(ops->error_message(a, STR("<html>502 Bad Gateway</html>")));
	assert_null(ops->error_message(a, STR("")));
	arena_free(a);
}

static void test_ops_table(void **state)
{
	(void)state;
	assert_ptr_equal(provider_ops_get(PROVIDER_OLLAMA), ops);
	assert_string_equal(ops->name, "ollama");
	assert_int_equal(ops->native, -1);
	assert_string_equal(ops->health_path, "/api/tags");
	assert_true(ops->embeddings);
	assert_non_null(ops->embeddings_to_openai);
	assert_null(ops->finish);       /* never pass-through */
	assert_null(ops->stream_event);
	assert_true(ops->stream_size >= sizeof(struct ollama_stream));
}

static int group_setup(void **state)
{
	(void)state;
	ops = provider_ollama_ops();
	return ops ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chat_request_simple),
		cmocka_unit_test(test_chat_request_minimal),
		cmocka_unit_test(test_chat_request_tools_round_trip),
		cmocka_unit_test(test_chat_request_tool_choice),
		cmocka_unit_test(test_chat_request_images_and_text),
		cmocka_unit_test(test_chat_request_refused),
		cmocka_unit_test(test_chat_request_numbers),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_embed_request),
		cmocka_unit_test(test_answer_decode),
		cmocka_unit_test(test_answer_ids_stable_and_distinct),
		cmocka_unit_test(test_answer_garbage),
		cmocka_unit_test(test_stream_goldens),
		cmocka_unit_test(test_stream_hostile),
		cmocka_unit_test(test_stream_sink_stops),
		cmocka_unit_test(test_embed_answer),
		cmocka_unit_test(test_error_message),
		cmocka_unit_test(test_ops_table),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
