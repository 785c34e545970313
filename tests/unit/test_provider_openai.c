/* test_provider_openai.c — unit tests for providers/openai.c: the surgical
 * body edits (model rewrite, stream_options.include_usage), the upstream
 * URL and headers, usage extraction from complete bodies and the verdict on
 * every stream event.
 *
 * Every edited body is checked twice: byte for byte against the expected
 * text (nothing but the edited spans may change) and with json_parse (the
 * result is always valid JSON). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include <cmocka.h>

#include "providers/openai.c"

static const char cfg_yaml[] =
	"listen: \"127.0.0.1:8080\"\n"
	"log: { level: error }\n"
	"providers:\n"
	"  - name: prov\n"
	"    type: openai\n"
	"    url: \"http://127.0.0.1:9999/base\"\n"
	"    api_key: \"prov-key\"\n"
	"    headers: { X-Prov: \"pv\", X-Both: \"from-prov\" }\n"
	"  - name: bare\n"
	"    type: openai\n"
	"    url: \"http://127.0.0.1:9998\"\n"
	"models:\n"
	"  - { name: plain, provider: prov }\n"
	"  - { name: renamed, provider: prov, upstream_model: \"meta/Llama \\\"3\\\"\",\n"
	"      api_key: \"model-key\", headers: { X-Model: \"mv\", X-Both: \"from-model\" } }\n"
	"  - { name: \"llama-*\", provider: prov }\n"
	"  - { name: \"glob-up-*\", provider: prov, upstream_model: fixed }\n"
	"  - { name: nokey, provider: bare }\n";

static struct config *cfg;
static const struct provider_ops *ops;

static int group_setup(void **state)
{
	(void)state;
	struct config_err err;
	cfg = config_load_string(cfg_yaml, sizeof cfg_yaml - 1, "test.yaml", "/tmp", &err);
	if (!cfg) {
		fprintf(stderr, "config: %s\n", err.msg);
		return -1;
	}
	ops = provider_ops_get(PROVIDER_OPENAI);
	return ops ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	config_free(cfg);
	return 0;
}

/* One request as the API layer would hand it over. */
struct call_ctx {
	struct arena *a;
	struct json_member m[128];
	struct upstream_call call;
	struct provider_request out;
};

static const struct cfg_model *model(const char *name)
{
	const struct cfg_model *m = config_find_model(cfg, str_cstr(name));
	assert_non_null(m);
	return m;
}

/* Parse body like api/openai.c does and fill ctx->call; stream and
 * client_wants_usage are derived from the body. */
static void prepare(struct call_ctx *c, enum upstream_op op, const char *body)
{
	memset(c, 0, sizeof *c);
	c->a = arena_new(0);
	size_t n = strlen(body);
	char *copy = arena_strndup(c->a, body, n); /* ASan sees overreads */
	struct json_val root;
	struct json_err err;
	if (json_parse_top(copy, n, c->m, UMB_ARRAY_LEN(c->m), &c->call.n_members, &root, &err))
		fail_msg("test body is not JSON: %s", err.msg);
	c->call.op = op;
	c->call.body = str_make(copy, n);
	c->call.members = c->m;
	for (size_t i = 0; i < c->call.n_members; i++) {
		struct json_val v = c->m[i].val;
		if (json_key_eq(c->m[i].key_raw, "model")) {
			struct buf b;
			buf_init(&b, 0);
			assert_int_equal(json_str_decode(v, &b), UMB_OK);
			c->call.requested_model = str_make(arena_strndup(c->a, b.p ? b.p : "", b.n), b.n);
			buf_clear(&b);
		} else if (json_key_eq(c->m[i].key_raw, "stream")) {
			c->call.stream = v.type == JSON_TRUE;
		} else if (json_key_eq(c->m[i].key_raw, "stream_options") && v.type == JSON_OBJECT) {
			struct json_val iu;
			if (json_obj_get(v, "include_usage", &iu))
				c->call.client_wants_usage = iu.type == JSON_TRUE;
		}
	}
	c->call.model = config_find_model(cfg, c->call.requested_model);
	assert_non_null(c->call.model);
}

static void run_build(struct call_ctx *c, const struct cfg_model *m)
{
	const struct cfg_endpoint *ep = &m->provider->endpoints[0];
	assert_int_equal(ops->build(c->a, &c->call, m, ep, "req-123", &c->out), UMB_OK);
	provider_body_join(c->a, &c->out); /* the tests read the whole body */
}

static void done(struct call_ctx *c)
{
	arena_free(c->a);
}

/* Build a chat request for body and check the upstream body is exactly
 * `want` and valid JSON. */
static void expect_body_op(enum upstream_op op, const char *body, const char *want)
{
	struct call_ctx c;
	prepare(&c, op, body);
	run_build(&c, c.call.model);
	struct str got = c.out.body;
	if (!str_eq(got, str_cstr(want)))
		fail_msg("body\n  in:   %s\n  got:  %.*s\n  want: %s", body, STR_FMT(got), want);
	struct json_err err;
	if (json_parse(got.p, got.n, NULL, &err))
		fail_msg("edited body is not JSON (%s at %zu): %.*s", err.msg, err.off, STR_FMT(got));
	if (!strcmp(body, want))
		assert_ptr_equal(got.p, c.call.body.p); /* no edit: no copy either */
	done(&c);
}

static void expect_body(const char *body, const char *want)
{
	expect_body_op(UPSTREAM_CHAT, body, want);
}

/* ---- the model member ---- */

static void test_model_rewrite(void **state)
{
	(void)state;
	/* a configured name the upstream knows as is: untouched, not copied */
	expect_body("{\"model\":\"plain\",\"messages\":[]}",
		    "{\"model\":\"plain\",\"messages\":[]}");
	/* upstream_model: replaced, JSON-escaped */
	expect_body("{\"model\":\"renamed\",\"messages\":[{\"role\":\"user\",\"content\":\"renamed\"}]}",
		    "{\"model\":\"meta/Llama \\\"3\\\"\",\"messages\":[{\"role\":\"user\",\"content\":\"renamed\"}]}");
	/* whitespace and member order are kept */
	expect_body(" {\n  \"messages\" : [] ,\n  \"model\" :\t\"renamed\"\n}\n",
		    " {\n  \"messages\" : [] ,\n  \"model\" :\t\"meta/Llama \\\"3\\\"\"\n}\n");
	/* a glob keeps the requested name */
	expect_body("{\"model\":\"llama-3.3-70b\",\"messages\":[]}",
		    "{\"model\":\"llama-3.3-70b\",\"messages\":[]}");
	/* a glob with upstream_model is rewritten */
	expect_body("{\"messages\":[],\"model\":\"glob-up-anything\"}",
		    "{\"messages\":[],\"model\":\"fixed\"}");
	/* an escaped spelling of a configured name needs no rewrite: it
	 * already means the same string */
	expect_body("{\"model\":\"pl\\u0061in\",\"messages\":[]}",
		    "{\"model\":\"pl\\u0061in\",\"messages\":[]}");
	/* the same text in another member is never touched */
	expect_body("{\"user\":\"renamed\",\"model\":\"renamed\",\"messages\":[]}",
		    "{\"user\":\"renamed\",\"model\":\"meta/Llama \\\"3\\\"\",\"messages\":[]}");
}

static void test_model_fallback(void **state)
{
	(void)state;
	/* a fallback model differs from the requested one: its own name is sent */
	struct call_ctx c;
	prepare(&c, UPSTREAM_CHAT, "{\"model\":\"renamed\",\"messages\":[]}");
	run_build(&c, model("plain"));
	assert_true(str_eq(c.out.body, STR("{\"model\":\"plain\",\"messages\":[]}")));
	done(&c);
	prepare(&c, UPSTREAM_CHAT, "{\"model\":\"plain\",\"messages\":[]}");
	run_build(&c, model("renamed"));
	assert_true(str_eq(c.out.body, STR("{\"model\":\"meta/Llama \\\"3\\\"\",\"messages\":[]}")));
	done(&c);
}

/* ---- stream_options ---- */

static void test_stream_options(void **state)
{
	(void)state;
	/* not a stream: nothing to add */
	expect_body("{\"model\":\"plain\",\"messages\":[],\"stream\":false}",
		    "{\"model\":\"plain\",\"messages\":[],\"stream\":false}");
	expect_body("{\"model\":\"plain\",\"messages\":[],\"stream_options\":null}",
		    "{\"model\":\"plain\",\"messages\":[],\"stream_options\":null}");
	/* absent: inserted as the first member */
	expect_body("{\"model\":\"plain\",\"messages\":[],\"stream\":true}",
		    "{\"stream_options\":{\"include_usage\":true},\"model\":\"plain\",\"messages\":[],\"stream\":true}");
	expect_body("\n\t {\"stream\":true,\"model\":\"plain\"}",
		    "\n\t {\"stream_options\":{\"include_usage\":true},\"stream\":true,\"model\":\"plain\"}");
	/* null: replaced */
	expect_body("{\"model\":\"plain\",\"stream\":true,\"stream_options\":null,\"n\":1}",
		    "{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"n\":1}");
	/* an object without include_usage: inserted */
	expect_body("{\"model\":\"plain\",\"stream\":true,\"stream_options\":{}}",
		    "{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
	expect_body("{\"model\":\"plain\",\"stream\":true,\"stream_options\":{ \n }}",
		    "{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"include_usage\":true \n }}");
	expect_body("{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"x\":[1,{}]}}",
		    "{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"include_usage\":true,\"x\":[1,{}]}}");
	expect_body("{\"model\":\"plain\",\"stream\":true,\"stream_options\":{ \"x\" : 1 }}",
		    "{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"include_usage\":true, \"x\" : 1 }}");
	/* include_usage false or null: set to true */
	expect_body("{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"include_usage\":false}}",
		    "{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
	expect_body("{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"a\":1,\"include_usage\" : null,\"b\":2}}",
		    "{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"a\":1,\"include_usage\" : true,\"b\":2}}");
	/* the client asked for usage itself: untouched */
	expect_body("{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
		    "{\"model\":\"plain\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
	/* embeddings never get stream_options */
	expect_body_op(UPSTREAM_EMBEDDINGS, "{\"model\":\"plain\",\"input\":\"x\",\"stream\":true}",
		       "{\"model\":\"plain\",\"input\":\"x\",\"stream\":true}");
}

static void test_both_edits(void **state)
{
	(void)state;
	/* the two edits together, in either order in the body */
	expect_body("{\"model\":\"renamed\",\"stream\":true}",
		    "{\"stream_options\":{\"include_usage\":true},\"model\":\"meta/Llama \\\"3\\\"\",\"stream\":true}");
	expect_body("{\"stream_options\":{\"include_usage\":false},\"model\":\"renamed\",\"stream\":true}",
		    "{\"stream_options\":{\"include_usage\":true},\"model\":\"meta/Llama \\\"3\\\"\",\"stream\":true}");
	expect_body("{\"stream\":true,\"model\":\"glob-up-1\",\"stream_options\":{\"k\":\"v\"}}",
		    "{\"stream\":true,\"model\":\"fixed\",\"stream_options\":{\"include_usage\":true,\"k\":\"v\"}}");
	/* a large body with the edits far apart: everything else identical */
	struct buf in, want;
	buf_init(&in, 0);
	buf_init(&want, 0);
	buf_append_cstr(&in, "{\"model\":\"renamed\",\"messages\":[");
	buf_append_cstr(&want, "{\"stream_options\":{\"include_usage\":true},\"model\":\"meta/Llama \\\"3\\\"\",\"messages\":[");
	for (int i = 0; i < 2000; i++) {
		char msg[128];
		snprintf(msg, sizeof msg, "%s{\"role\":\"user\",\"content\":\"m\\u00e9ssage %d \\\"q\\\"\"}",
			 i ? "," : "", i);
		buf_append_cstr(&in, msg);
		buf_append_cstr(&want, msg);
	}
	buf_append_cstr(&in, "],\"stream\":true}");
	buf_append_cstr(&want, "],\"stream\":true}");
	expect_body(in.p, want.p);
	buf_clear(&in);
	buf_clear(&want);
}

/* ---- URL and headers ---- */

static bool has_header(const struct provider_request *r, const char *line)
{
	for (size_t i = 0; i < r->n_headers; i++)
		if (!strcmp(r->headers[i], line))
			return true;
	return false;
}

static size_t count_header(const struct provider_request *r, const char *name)
{
	size_t n = 0, len = strlen(name);
	for (size_t i = 0; i < r->n_headers; i++)
		if (!strncasecmp(r->headers[i], name, len) && r->headers[i][len] == ':')
			n++;
	return n;
}

static void test_url_and_headers(void **state)
{
	(void)state;
	struct call_ctx c;
	prepare(&c, UPSTREAM_CHAT, "{\"model\":\"plain\",\"messages\":[]}");
	run_build(&c, c.call.model);
	assert_string_equal(c.out.url, "http://127.0.0.1:9999/base/v1/chat/completions");
	assert_true(has_header(&c.out, "Content-Type: application/json"));
	assert_true(has_header(&c.out, "x-request-id: req-123"));
	assert_true(has_header(&c.out, "Authorization: Bearer prov-key"));
	assert_true(has_header(&c.out, "X-Prov: pv"));
	assert_true(has_header(&c.out, "X-Both: from-prov"));
	assert_true(has_header(&c.out, "Expect:")); /* no 100-continue */
	assert_int_equal(count_header(&c.out, "Authorization"), 1);
	assert_int_equal(count_header(&c.out, "x-request-id"), 1);
	done(&c);

	/* the model's api_key overrides the provider's; model headers added */
	prepare(&c, UPSTREAM_CHAT, "{\"model\":\"renamed\",\"messages\":[]}");
	run_build(&c, c.call.model);
	assert_true(has_header(&c.out, "Authorization: Bearer model-key"));
	assert_int_equal(count_header(&c.out, "Authorization"), 1);
	assert_true(has_header(&c.out, "X-Prov: pv"));
	assert_true(has_header(&c.out, "X-Model: mv"));
	done(&c);

	/* no key anywhere: no Authorization at all */
	prepare(&c, UPSTREAM_EMBEDDINGS, "{\"model\":\"nokey\",\"input\":\"x\"}");
	run_build(&c, c.call.model);
	assert_string_equal(c.out.url, "http://127.0.0.1:9998/v1/embeddings");
	assert_int_equal(count_header(&c.out, "Authorization"), 0);
	assert_true(has_header(&c.out, "x-request-id: req-123"));
	assert_true(c.out.n_headers <= UMB_ARRAY_LEN(c.out.headers));
	done(&c);
}

/* A header set on both the provider and the model is sent twice today;
 * the model's value should win, like api_key does. */
static void test_model_header_overrides_provider(void **state)
{
	(void)state;
	struct call_ctx c;
	prepare(&c, UPSTREAM_CHAT, "{\"model\":\"renamed\",\"messages\":[]}");
	run_build(&c, c.call.model);
	size_t n = count_header(&c.out, "X-Both");
	bool model_wins = has_header(&c.out, "X-Both: from-model");
	done(&c);
	assert_int_equal(n, 1);
	assert_true(model_wins);
}

/* ---- complete bodies ---- */

static void test_finish(void **state)
{
	(void)state;
	struct call_ctx c;
	prepare(&c, UPSTREAM_CHAT, "{\"model\":\"plain\",\"messages\":[]}");
	struct provider_usage u;

	memset(&u, 0, sizeof u);
	assert_int_equal(ops->finish(&c.call, STR("{\"id\":\"x\",\"choices\":[{\"index\":0}],"
						 "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34,\"total_tokens\":46}}"),
				     &u),
			 UMB_OK);
	assert_true(u.seen);
	assert_true(u.prompt_tokens == 12 && u.completion_tokens == 34);

	/* no usage, usage null: fine, nothing seen */
	memset(&u, 0, sizeof u);
	assert_int_equal(ops->finish(&c.call, STR("{\"choices\":[]}"), &u), UMB_OK);
	assert_false(u.seen);
	assert_int_equal(ops->finish(&c.call, STR(" {\"usage\":null} \n"), &u), UMB_OK);
	assert_false(u.seen);

	/* odd counts are ignored, not trusted */
	memset(&u, 0, sizeof u);
	assert_int_equal(ops->finish(&c.call, STR("{\"usage\":{\"prompt_tokens\":-5,\"completion_tokens\":1.5}}"), &u),
			 UMB_OK);
	assert_true(u.seen);
	assert_true(u.prompt_tokens == 0 && u.completion_tokens == 0);
	memset(&u, 0, sizeof u);
	assert_int_equal(ops->finish(&c.call, STR("{\"usage\":{\"prompt_tokens\":\"7\",\"completion_tokens\":99999999999999999999}}"), &u),
			 UMB_OK);
	assert_true(u.prompt_tokens == 0 && u.completion_tokens == 0);
	memset(&u, 0, sizeof u);
	assert_int_equal(ops->finish(&c.call, STR("{\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":9007199254740993}}"), &u),
			 UMB_OK);
	assert_true(u.completion_tokens == 9007199254740993ULL);

	/* cached prompt tokens (priced apart), never more than the prompt */
	memset(&u, 0, sizeof u);
	assert_int_equal(ops->finish(&c.call, STR("{\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":1,"
						 "\"prompt_tokens_details\":{\"cached_tokens\":64}}}"), &u),
			 UMB_OK);
	assert_true(u.cached_prompt_tokens == 64);
	memset(&u, 0, sizeof u);
	assert_int_equal(ops->finish(&c.call, STR("{\"usage\":{\"prompt_tokens\":10,"
						 "\"prompt_tokens_details\":{\"cached_tokens\":64}}}"), &u),
			 UMB_OK);
	assert_true(u.cached_prompt_tokens == 10);

	/* garbage */
	const struct str bad[] = {
		STR(""), STR(" "), STR("<html>502 Bad Gateway</html>"), STR("{\"choices\":["),
		STR("[1,2]"), STR("\"str\""), STR("null"), STR("42"), STR("{\"a\":1} trailing"),
		STR("{\"a\":\"\xff\"}"), STR("{\"a\":1,}"), STR("data: {}\n\n"),
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		memset(&u, 0, sizeof u);
		if (ops->finish(&c.call, bad[i], &u) != UMB_ERR)
			fail_msg("garbage body %zu accepted: %.*s", i, STR_FMT(bad[i]));
		assert_false(u.seen);
	}
	done(&c);
}

/* A valid response object with many top-level members (servers add
 * vendor fields) is not garbage. */
static void test_finish_many_members(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 0);
	buf_append_cstr(&b, "{\"choices\":[]");
	for (int i = 0; i < 40; i++)
		buf_printf(&b, ",\"x_vendor_%d\":%d", i, i);
	buf_append_cstr(&b, ",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}");
	struct call_ctx c;
	prepare(&c, UPSTREAM_CHAT, "{\"model\":\"plain\",\"messages\":[]}");
	struct provider_usage u = { 0 };
	int rc = ops->finish(&c.call, buf_str(&b), &u);
	struct sse_event ev = { .raw = buf_str(&b), .data = buf_str(&b), .has_data = true };
	enum provider_event_action act = ops->stream_event(&c.call, &ev, &u);
	done(&c);
	buf_clear(&b);
	assert_int_equal(rc, UMB_OK);
	assert_true(u.seen && u.completion_tokens == 2);
	assert_int_not_equal(act, PROVIDER_GARBAGE);
}

/* ---- stream events ---- */

static enum provider_event_action event(const struct upstream_call *call, const char *data,
					 bool has_data, struct provider_usage *u)
{
	struct sse_event ev = { 0 };
	ev.data = str_cstr(data);
	ev.has_data = has_data;
	ev.raw = ev.data;
	return ops->stream_event(call, &ev, u);
}

static void test_stream_event(void **state)
{
	(void)state;
	struct call_ctx c;
	prepare(&c, UPSTREAM_CHAT, "{\"model\":\"plain\",\"messages\":[],\"stream\":true}");
	assert_false(c.call.client_wants_usage);
	struct provider_usage u = { 0 };

	assert_int_equal(event(&c.call, "[DONE]", true, &u), PROVIDER_DONE);
	assert_int_equal(event(&c.call, " [DONE] ", true, &u), PROVIDER_DONE);
	/* comments and keep-alives have no data */
	assert_int_equal(event(&c.call, "", false, &u), PROVIDER_FORWARD);
	/* a content chunk, usage null in it (what include_usage streams do) */
	assert_int_equal(event(&c.call,
			       "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
			       "\"delta\":{\"content\":\"hi\"}}],\"usage\":null}",
			       true, &u),
			 PROVIDER_FORWARD);
	assert_false(u.seen);
	/* the usage-only chunk: read, and dropped for a client that did not ask */
	assert_int_equal(event(&c.call,
			       "{\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6}}",
			       true, &u),
			 PROVIDER_DROP);
	assert_true(u.seen && u.prompt_tokens == 5 && u.completion_tokens == 6);
	/* usage riding on a chunk that has choices: kept for the content */
	memset(&u, 0, sizeof u);
	assert_int_equal(event(&c.call,
			       "{\"choices\":[{\"index\":0,\"delta\":{}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}",
			       true, &u),
			 PROVIDER_FORWARD);
	assert_true(u.seen && u.completion_tokens == 2);
	/* an in-stream error object is passed through */
	assert_int_equal(event(&c.call, "{\"error\":{\"message\":\"overloaded\"}}", true, &u),
			 PROVIDER_FORWARD);
	/* garbage */
	const char *bad[] = { "", "{", "not json", "[]", "\"s\"", "123", "null",
			      "{\"a\":1}{\"b\":2}", "[DONE] x", "DONE", "{\"a\":\"\xc3\"}" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++)
		if (event(&c.call, bad[i], true, &u) != PROVIDER_GARBAGE)
			fail_msg("garbage event %zu not flagged: %s", i, bad[i]);
	done(&c);

	/* a client that asked for usage gets the usage-only chunk */
	prepare(&c, UPSTREAM_CHAT,
		"{\"model\":\"plain\",\"messages\":[],\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
	assert_true(c.call.client_wants_usage);
	memset(&u, 0, sizeof u);
	assert_int_equal(event(&c.call, "{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6}}",
			       true, &u),
			 PROVIDER_FORWARD);
	assert_true(u.seen && u.prompt_tokens == 5);
	done(&c);
}

static void test_ops_table(void **state)
{
	(void)state;
	assert_string_equal(ops->name, "openai");
	assert_string_equal(ops->health_path, "/v1/models");
	assert_int_equal(ops->native, DIALECT_OPENAI);
	/* every configurable type has its table, each its own name */
	static const struct {
		enum provider_type t;
		const char *name;
		int native;
	} all[] = {
		{ PROVIDER_OPENAI, "openai", DIALECT_OPENAI },
		{ PROVIDER_AZURE, "azure", DIALECT_OPENAI },
		{ PROVIDER_ANTHROPIC, "anthropic", DIALECT_ANTHROPIC },
		{ PROVIDER_BEDROCK, "bedrock", -1 },
		{ PROVIDER_VERTEX, "vertex", -1 },
		{ PROVIDER_OLLAMA, "ollama", -1 },
	};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		const struct provider_ops *o = provider_ops_get(all[i].t);
		assert_non_null(o);
		assert_string_equal(o->name, all[i].name);
		assert_int_equal(o->native, all[i].native);
		/* translation is always possible: decoders for answers and streams */
		assert_non_null(o->decode);
		assert_non_null(o->stream_feed);
		assert_true(o->stream_size > 0);
	}
	assert_null(provider_ops_get((enum provider_type)1234));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_model_rewrite),
		cmocka_unit_test(test_model_fallback),
		cmocka_unit_test(test_stream_options),
		cmocka_unit_test(test_both_edits),
		cmocka_unit_test(test_url_and_headers),
		cmocka_unit_test(test_model_header_overrides_provider),
		cmocka_unit_test(test_finish),
		cmocka_unit_test(test_finish_many_members),
		cmocka_unit_test(test_stream_event),
		cmocka_unit_test(test_ops_table),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
