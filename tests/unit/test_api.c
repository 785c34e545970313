/* test_api.c — unit tests for api/api.c and api/openai.c without sockets:
 * routing (404, 405 + allow, trailing slash, HEAD), request ids, request
 * validation and its OpenAI error bodies, what is handed to the upstream
 * module, /v1/models, /health, /metrics and the request log line.
 *
 * Both files are included. The server and the upstream module are replaced
 * by fakes defined here (http_respond, http_is_draining, upstream_forward,
 * upstream_metrics), so the archive's server.o and forward.o are never
 * linked: the handlers run on a hand-made struct req whose head comes from
 * the real http_parse_request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/api.c"
#include "api/openai.c"
#include "metrics/metrics.h"

/* ---- fakes for the server and upstream modules ---- */

static struct {
	int calls;
	int status;
	char content_type[64];
	struct buf headers, body;
} resp;

static struct {
	int calls;
	struct upstream_call call;
	char requested[2048];
	size_t requested_n;
} fwd;

static bool draining;

void http_respond(struct req *r, const struct http_resp *rs)
{
	resp.calls++;
	resp.status = rs->status;
	snprintf(resp.content_type, sizeof resp.content_type, "%s",
		 rs->content_type ? rs->content_type : "");
	buf_reset(&resp.headers);
	buf_append_str(&resp.headers, rs->extra_headers);
	buf_reset(&resp.body);
	buf_append_str(&resp.body, rs->body);
	r->status = rs->status;
	r->finished = true;
}

bool http_is_draining(const struct req *r)
{
	(void)r;
	return draining;
}

void upstream_forward(struct req *r, const struct upstream_call *call)
{
	(void)r;
	fwd.calls++;
	fwd.call = *call;
	fwd.requested_n = UMB_MIN(call->requested_model.n, sizeof fwd.requested - 1);
	memcpy(fwd.requested, call->requested_model.p, fwd.requested_n);
	fwd.requested[fwd.requested_n] = 0;
}

/* Internal calls (routing's classifier and embedder) fail at once: the
 * cascade goes on to its default. */
void upstream_call_internal(struct req *r, const struct upstream_call *call, int timeout_ms,
			    upstream_done_cb cb, void *arg)
{
	(void)r;
	(void)call;
	(void)timeout_ms;
	cb(arg, 0, STR_NULL);
}

int upstream_metrics(struct buf *out, void *rt)
{
	(void)rt;
	return buf_append_cstr(out, "# fake upstream gauges\n");
}

/* ---- a request without a connection ---- */

static const char cfg_yaml[] =
	"listen: \"127.0.0.1:8080\"\n"
	"log: { level: info }\n"
	"providers:\n"
	"  - { name: prov, type: openai, url: \"http://127.0.0.1:9999\" }\n"
	"models:\n"
	"  - { name: plain, provider: prov }\n"
	"  - { name: \"llama-*\", provider: prov }\n"
	"  - { name: renamed, provider: prov, upstream_model: up }\n";

static struct config *cfg;
static struct runtime rt;
static struct worker wk;

static int group_setup(void **state)
{
	(void)state;
	struct config_err err;
	cfg = config_load_string(cfg_yaml, sizeof cfg_yaml - 1, "test.yaml", "/tmp", &err);
	if (!cfg) {
		fprintf(stderr, "config: %s\n", err.msg);
		return -1;
	}
	rt.cfg = cfg;
	metrics_init(1);
	wk.metrics = metrics_shard_get(0);
	buf_init(&resp.headers, 0);
	buf_init(&resp.body, 0);
	log_min_level = LOG_WARN; /* keep request lines off the test output */
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	buf_clear(&resp.headers);
	buf_clear(&resp.body);
	metrics_shutdown();
	config_free(cfg);
	return 0;
}

struct treq {
	struct req r;
	char *raw; /* the request head bytes (the head's views point here) */
};

/* Make a request from a method, target, extra header lines and a body. */
static struct treq *mkreq(const char *method, const char *target, const char *headers,
			  const char *body, size_t body_n)
{
	struct treq *t = umb_calloc(1, sizeof *t);
	struct arena *a = arena_new(0);
	t->raw = arena_printf(a, "%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n", method, target,
			      headers ? headers : "");
	int status = 0;
	int rc = http_parse_request(t->raw, strlen(t->raw), 65536, &t->r.head, &status);
	if (rc <= 0)
		fail_msg("test head refused (%d, status %d): %s", rc, status, t->raw);
	t->r.arena = a;
	t->r.w = &wk;
	t->r.rt = &rt;
	t->r.model = "";
	t->r.t_start_ns = clock_mono_ns();
	snprintf(t->r.peer, sizeof t->r.peer, "127.0.0.1:1234");
	if (body)
		t->r.body = str_make(arena_strndup(a, body, body_n), body_n);
	memset(&fwd, 0, sizeof fwd);
	resp.calls = 0;
	resp.status = 0;
	return t;
}

static void freereq(struct treq *t)
{
	arena_free(t->r.arena);
	free(t);
}

/* Dispatch and return the status (0 when forwarded upstream). */
static int dispatch(struct treq *t)
{
	api_request_id(&t->r);
	api_dispatch(&t->r);
	if (fwd.calls) {
		assert_int_equal(resp.calls, 0);
		return 0;
	}
	assert_int_equal(resp.calls, 1);
	return resp.status;
}

static int post(const char *path, const char *body)
{
	struct treq *t = mkreq("POST", path, "Content-Type: application/json\r\n", body,
			       body ? strlen(body) : 0);
	int st = dispatch(t);
	freereq(t);
	return st;
}

/* Check resp.body is an OpenAI error with this code (NULL: null) and type. */
static void expect_error(const char *type, const char *code)
{
	struct json_val root, err, v;
	struct json_err je;
	if (json_parse(resp.body.p, resp.body.n, &root, &je))
		fail_msg("error body is not JSON (%s at %zu): %s", je.msg, je.off, resp.body.p);
	assert_string_equal(resp.content_type, "application/json");
	assert_true(json_obj_get(root, "error", &err));
	assert_true(json_obj_get(err, "message", &v));
	assert_int_equal(v.type, JSON_STRING);
	assert_true(v.raw.n > 2); /* says something */
	assert_true(json_obj_get(err, "type", &v));
	assert_true(json_str_eq(v, type));
	assert_true(json_obj_get(err, "param", &v));
	assert_true(json_obj_get(err, "code", &v));
	if (code) {
		if (!json_str_eq(v, code))
			fail_msg("code %.*s, want %s in %s", STR_FMT(v.raw), code, resp.body.p);
	} else {
		assert_int_equal(v.type, JSON_NULL);
	}
}

/* ---- request ids ---- */

static const char *id_for(const char *header_value)
{
	static char id[48];
	char hdr[256];
	snprintf(hdr, sizeof hdr, "x-request-id: %s\r\n", header_value);
	struct treq *t = mkreq("GET", "/health", header_value ? hdr : NULL, NULL, 0);
	api_request_id(&t->r);
	memcpy(id, t->r.id, sizeof id);
	assert_true(memchr(t->r.id, 0, sizeof t->r.id) != NULL);
	freereq(t);
	return id;
}

static bool is_random_id(const char *id)
{
	if (strlen(id) != 32)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static void test_request_id(void **state)
{
	(void)state;
	/* sane client ids are kept */
	const char *good[] = { "abc", "req-123_x.y:z", "A", "0123456789abcdef0123456789abcdef",
			       "4f1c2b7e-9a1d-4d7b-8a4e-0c5f6e7d8a9b",
			       "123456789012345678901234567890123456789012345676" + 1 /* 47 chars */ };
	for (size_t i = 0; i < UMB_ARRAY_LEN(good); i++)
		assert_string_equal(id_for(good[i]), good[i]);
	/* anything else gets a fresh random id */
	const char *bad[] = { "has space", "quote\"d", "semi;colon", "slash/", "back\\slash",
			      "tab\tx", "uni\xc3\xa9", "<script>", "a,b", "%41",
			      "123456789012345678901234567890123456789012345678" /* 48 */ };
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		const char *id = id_for(bad[i]);
		if (!is_random_id(id))
			fail_msg("client id \"%s\" gave \"%s\"", bad[i], id);
	}
	char first[48];
	snprintf(first, sizeof first, "%s", id_for(NULL));
	assert_true(is_random_id(first));
	assert_string_not_equal(first, id_for(NULL));
	/* an empty header value also gets a random id */
	struct treq *t = mkreq("GET", "/health", "x-request-id:\r\n", NULL, 0);
	api_request_id(&t->r);
	assert_true(is_random_id(t->r.id));
	freereq(t);
	/* header names are case-insensitive */
	t = mkreq("GET", "/health", "X-Request-ID: Mixed-1\r\n", NULL, 0);
	api_request_id(&t->r);
	assert_string_equal(t->r.id, "Mixed-1");
	freereq(t);
}

/* ---- routing ---- */

static void test_routing(void **state)
{
	(void)state;
	struct treq *t = mkreq("GET", "/nope", NULL, NULL, 0);
	assert_int_equal(dispatch(t), 404);
	expect_error("not_found_error", "unknown_url");
	freereq(t);

	t = mkreq("GET", "/v1/chat/completions", NULL, NULL, 0);
	assert_int_equal(dispatch(t), 405);
	expect_error("invalid_request_error", "method_not_allowed");
	assert_string_equal(resp.headers.p, "allow: POST\r\n");
	assert_string_equal(t->r.api, "chat");
	freereq(t);

	t = mkreq("POST", "/v1/models", NULL, "", 0);
	assert_int_equal(dispatch(t), 405);
	assert_string_equal(resp.headers.p, "allow: GET\r\n");
	freereq(t);

	/* HEAD is allowed where GET is; a trailing slash and a query are fine */
	const char *ok[][2] = { { "GET", "/v1/models" },  { "HEAD", "/v1/models" },
				{ "GET", "/v1/models/" }, { "GET", "/v1/models?x=1" },
				{ "GET", "/health" },     { "HEAD", "/health/" } };
	for (size_t i = 0; i < UMB_ARRAY_LEN(ok); i++) {
		t = mkreq(ok[i][0], ok[i][1], NULL, NULL, 0);
		if (dispatch(t) != 200)
			fail_msg("%s %s: %d %s", ok[i][0], ok[i][1], resp.status, resp.body.p);
		freereq(t);
	}
	/* no prefix matching, no case folding, no double slash */
	const char *nf[] = { "/v1/models/x", "/v1/modelsx", "/V1/models", "//v1/models", "/",
			     "/v1/chat/completions//", "/v1" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(nf); i++) {
		t = mkreq("GET", nf[i], NULL, NULL, 0);
		if (dispatch(t) != 404)
			fail_msg("GET %s: %d", nf[i], resp.status);
		freereq(t);
	}
}

static void test_health_and_metrics(void **state)
{
	(void)state;
	struct treq *t = mkreq("GET", "/health", NULL, NULL, 0);
	assert_int_equal(dispatch(t), 200);
	assert_string_equal(resp.body.p, "{\"status\":\"ok\"}");
	freereq(t);
	draining = true;
	t = mkreq("GET", "/health", NULL, NULL, 0);
	assert_int_equal(dispatch(t), 503);
	assert_string_equal(resp.body.p, "{\"status\":\"draining\"}");
	freereq(t);
	draining = false;

	t = mkreq("GET", "/metrics", NULL, NULL, 0);
	assert_int_equal(dispatch(t), 200);
	assert_string_equal(resp.content_type, METRICS_CONTENT_TYPE);
	assert_non_null(strstr(resp.body.p, "# fake upstream gauges\n"));
	freereq(t); /* the body buffer is freed by an arena hook */
}

static void test_models(void **state)
{
	(void)state;
	struct treq *t = mkreq("GET", "/v1/models", NULL, NULL, 0);
	assert_int_equal(dispatch(t), 200);
	assert_string_equal(resp.body.p,
			    "{\"object\":\"list\",\"data\":["
			    "{\"id\":\"plain\",\"object\":\"model\",\"created\":0,\"owned_by\":\"prov\"},"
			    "{\"id\":\"renamed\",\"object\":\"model\",\"created\":0,\"owned_by\":\"prov\"}]}");
	assert_int_equal(json_parse(resp.body.p, resp.body.n, NULL, NULL), UMB_OK);
	freereq(t);
}

/* ---- chat validation ---- */

static void test_chat_bad_requests(void **state)
{
	(void)state;
	struct {
		const char *body, *code;
	} cases[] = {
		{ "", "invalid_json" },
		{ "{", "invalid_json" },
		{ "{\"model\":\"plain\",\"messages\":[{\"role\":\"user\"}]} x", "invalid_json" },
		{ "[]", "invalid_json" },
		{ "\"plain\"", "invalid_json" },
		{ "{\"model\":\"plain\",\"messages\":[{\"content\":\"\xff\"}]}", "invalid_json" },
		{ "{\"messages\":[{\"role\":\"user\"}]}", "missing_required_parameter" },
		{ "{\"model\":null,\"messages\":[{\"role\":\"user\"}]}", "invalid_type" },
		{ "{\"model\":\"plain\"}", "missing_required_parameter" },
		{ "{\"model\":\"plain\",\"messages\":null}", "invalid_type" },
		{ "{\"model\":7,\"messages\":[{\"role\":\"user\"}]}", "invalid_type" },
		{ "{\"model\":\"plain\",\"messages\":{}}", "invalid_type" },
		{ "{\"model\":\"plain\",\"messages\":[]}", "invalid_value" },
		{ "{\"model\":\"plain\",\"messages\":[{}]}", "invalid_value" },
		{ "{\"model\":\"plain\",\"messages\":[1]}", "invalid_value" },
		/* only messages[0] is checked by the gateway (docs/decisions.md) */
		{ "{\"model\":\"plain\",\"messages\":[{\"role\":null},{\"role\":\"user\"}]}", "invalid_value" },
		{ "{\"model\":\"plain\",\"messages\":[{\"role\":\"user\"}],\"stream\":\"yes\"}", "invalid_type" },
		{ "{\"model\":\"plain\",\"messages\":[{\"role\":\"user\"}],\"stream\":1}", "invalid_type" },
		{ "{\"model\":\"plain\",\"messages\":[{\"role\":\"user\"}],\"stream_options\":true}", "invalid_type" },
		{ "{\"model\":\"plain\",\"messages\":[{\"role\":\"user\"}],\"stream_options\":{\"include_usage\":1}}", "invalid_type" },
		{ "{\"model\":\"plain\",\"messages\":[{\"role\":\"user\"}],\"max_tokens\":\"5\"}", "invalid_type" },
		{ "{\"model\":\"plain\",\"messages\":[{\"role\":\"user\"}],\"temperature\":[]}", "invalid_type" },
		{ "{\"model\":\"plain\",\"messages\":[{\"role\":\"user\"}],\"tools\":{}}", "invalid_type" },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(cases); i++) {
		int st = post("/v1/chat/completions", cases[i].body);
		if (st != 400)
			fail_msg("case %zu (%s): status %d", i, cases[i].body, st);
		expect_error("invalid_request_error", cases[i].code);
	}
	/* too many top-level members is a 400, not a crash */
	struct buf b;
	buf_init(&b, 0);
	buf_append_cstr(&b, "{\"model\":\"plain\",\"messages\":[{\"role\":\"user\"}]");
	for (int i = 0; i < 200; i++)
		buf_printf(&b, ",\"k%d\":%d", i, i);
	buf_append_cstr(&b, "}");
	assert_int_equal(post("/v1/chat/completions", b.p), 400);
	expect_error("invalid_request_error", "invalid_json");
	buf_clear(&b);
}

static void test_chat_model_errors(void **state)
{
	(void)state;
	assert_int_equal(post("/v1/chat/completions", "{\"model\":\"nope\",\"messages\":[{\"role\":\"user\"}]}"), 404);
	expect_error("not_found_error", "model_not_found");
	assert_non_null(strstr(resp.body.p, "nope"));
	/* a hostile name is escaped in the message */
	assert_int_equal(post("/v1/chat/completions",
			      "{\"model\":\"a\\\"b\\\\c</x>\",\"messages\":[{\"role\":\"user\"}]}"),
			 404);
	expect_error("not_found_error", "model_not_found");
	/* control characters are never part of a model name: 400 */
	assert_int_equal(post("/v1/chat/completions",
			      "{\"model\":\"a\\n\\u0001\",\"messages\":[{\"role\":\"user\"}]}"),
			 400);
	expect_error("invalid_request_error", "invalid_value");
	/* a very long name: bounded in the message */
	struct buf b;
	buf_init(&b, 0);
	buf_append_cstr(&b, "{\"messages\":[{\"role\":\"user\"}],\"model\":\"");
	for (int i = 0; i < 900; i++)
		buf_append_cstr(&b, "x");
	buf_append_cstr(&b, "\"}");
	assert_int_equal(post("/v1/chat/completions", b.p), 404);
	expect_error("not_found_error", "model_not_found");
	assert_true(resp.body.n < 600);
	/* beyond the 1024-byte cap on a model name */
	buf_reset(&b);
	buf_append_cstr(&b, "{\"messages\":[{\"role\":\"user\"}],\"model\":\"");
	for (int i = 0; i < 1100; i++)
		buf_append_cstr(&b, "y");
	buf_append_cstr(&b, "\"}");
	assert_int_equal(post("/v1/chat/completions", b.p), 400);
	expect_error("invalid_request_error", "invalid_value");
	buf_clear(&b);
}

/* The 404 message cuts a long model name at 200 bytes, which can split a
 * UTF-8 sequence: the error body is then not valid UTF-8 / JSON. */
static void test_model_error_utf8_cut(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 0);
	buf_append_cstr(&b, "{\"messages\":[{\"role\":\"user\"}],\"model\":\"a");
	for (int i = 0; i < 150; i++)
		buf_append_cstr(&b, "\xc3\xa9"); /* é: byte 200 falls inside one */
	buf_append_cstr(&b, "\"}");
	int st = post("/v1/chat/completions", b.p);
	buf_clear(&b);
	assert_int_equal(st, 404);
	expect_error("not_found_error", "model_not_found");
}

static void test_chat_forwarded(void **state)
{
	(void)state;
	const char *body = "{\"model\":\"plain\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	assert_int_equal(post("/v1/chat/completions", body), 0);
	assert_int_equal(fwd.calls, 1);
	assert_int_equal(fwd.call.op, UPSTREAM_CHAT);
	assert_string_equal(fwd.call.model->name, "plain");
	assert_string_equal(fwd.requested, "plain");
	assert_false(fwd.call.stream);
	assert_false(fwd.call.client_wants_usage);
	assert_int_equal(fwd.call.n_members, 2);
	assert_int_equal(fwd.call.body.n, strlen(body)); /* the body as it came */

	/* a glob: the requested name travels on, escapes decoded */
	assert_int_equal(post("/v1/chat/completions",
			      "{\"model\":\"llama-\\u0033\",\"messages\":[{\"role\":\"user\"}],\"stream\":true}"),
			 0);
	assert_string_equal(fwd.call.model->name, "llama-*");
	assert_string_equal(fwd.requested, "llama-3");
	assert_true(fwd.call.stream);
	assert_false(fwd.call.client_wants_usage);

	struct {
		const char *so;
		bool stream, wants;
	} u[] = {
		{ ",\"stream\":true,\"stream_options\":{\"include_usage\":true}", true, true },
		{ ",\"stream\":true,\"stream_options\":{\"include_usage\":false}", true, false },
		{ ",\"stream\":true,\"stream_options\":{\"include_usage\":null}", true, false },
		{ ",\"stream\":true,\"stream_options\":null", true, false },
		{ ",\"stream\":true,\"stream_options\":{}", true, false },
		{ ",\"stream\":false,\"stream_options\":{\"include_usage\":true}", false, true },
		{ ",\"stream\":null", false, false },
		{ ",\"max_tokens\":null,\"temperature\":0.5,\"n\":1,\"tools\":[]", false, false },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(u); i++) {
		char b[256];
		snprintf(b, sizeof b, "{\"model\":\"renamed\",\"messages\":[{\"role\":\"user\"}]%s}", u[i].so);
		if (post("/v1/chat/completions", b) != 0)
			fail_msg("case %zu not forwarded: %d %s", i, resp.status, resp.body.p);
		assert_int_equal(fwd.call.stream, u[i].stream);
		assert_int_equal(fwd.call.client_wants_usage, u[i].wants);
		assert_string_equal(fwd.requested, "renamed");
	}
}

static void test_embeddings(void **state)
{
	(void)state;
	assert_int_equal(post("/v1/embeddings", "{\"model\":\"plain\",\"input\":\"x\"}"), 0);
	assert_int_equal(fwd.call.op, UPSTREAM_EMBEDDINGS);
	assert_false(fwd.call.stream);
	assert_int_equal(post("/v1/embeddings", "{\"model\":\"plain\",\"input\":[\"a\",\"b\"]}"), 0);
	assert_int_equal(post("/v1/embeddings", "{\"model\":\"plain\"}"), 400);
	expect_error("invalid_request_error", "missing_required_parameter");
	assert_int_equal(post("/v1/embeddings", "{\"model\":\"plain\",\"input\":5}"), 400);
	expect_error("invalid_request_error", "invalid_type");
	assert_int_equal(post("/v1/embeddings", "{\"model\":\"zzz\",\"input\":\"x\"}"), 404);
	expect_error("not_found_error", "model_not_found");
	assert_int_equal(post("/v1/embeddings", ""), 400);
	expect_error("invalid_request_error", "invalid_json");
}

/* Duplicate "model" members: the gateway resolves (and would authorise and
 * price) the first one, while the upstream's JSON parser takes the last. */
static void test_duplicate_model_member(void **state)
{
	(void)state;
	int st = post("/v1/chat/completions",
		      "{\"model\":\"plain\",\"messages\":[{\"role\":\"user\"}],\"model\":\"something-else\"}");
	assert_int_equal(st, 400);
	st = post("/v1/chat/completions",
		  "{\"model\":\"plain\",\"messages\":[{\"role\":\"user\"}],\"stream\":false,\"stream\":true}");
	assert_int_equal(st, 400);
}

/* A NUL inside the model name: the gateway looks up the name cut at the
 * NUL, but the body upstream still carries the whole name. */
static void test_model_with_nul(void **state)
{
	(void)state;
	int st = post("/v1/chat/completions", "{\"model\":\"plain\\u0000-other\",\"messages\":[{\"role\":\"user\"}]}");
	if (st == 0)
		fail_msg("forwarded as model \"%s\" (%zu bytes) for \"plain\\0-other\"",
			 fwd.call.model->name, fwd.requested_n);
	assert_true(st >= 400);
}

/* ---- the request log line ---- */

/* Run api_request_done with stderr sent to `tmp`. */
static void log_done(struct treq *t, FILE *tmp)
{
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(fileno(tmp), STDERR_FILENO);
	log_min_level = LOG_INFO;
	api_request_done(&t->r);
	log_min_level = LOG_WARN;
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
}

static void test_request_done_log(void **state)
{
	(void)state;
	FILE *tmp = tmpfile();
	assert_non_null(tmp);

	struct treq *t = mkreq("GET", "/v1/models", "x-request-id: log-1\r\n", NULL, 0);
	dispatch(t);
	log_done(t, tmp);
	freereq(t);
	/* hostile path bytes (the head parser would refuse most of them; the
	 * logger must not rely on it): still one valid JSON line */
	static const char hostile[] = "/x\"y\\z\n\x01\xff\xfe";
	t = mkreq("GET", "/nope", NULL, NULL, 0);
	dispatch(t);
	t->r.head.path = STR(hostile);
	t->r.error_kind = "unknown_url\"";
	log_done(t, tmp);
	t->r.head.path = str_make(hostile, 6); /* the valid prefix /x"y\z */
	log_done(t, tmp);
	freereq(t);
	/* a path cut at 256 bytes inside a UTF-8 sequence */
	char path[600] = "/";
	for (int i = 0; i < 200; i++)
		strcat(path, "\xc3\xa9");
	t = mkreq("GET", "/nope", NULL, NULL, 0);
	dispatch(t);
	t->r.head.path = str_cstr(path);
	log_done(t, tmp);
	freereq(t);

	rewind(tmp);
	char line[8192];
	int lines = 0;
	while (fgets(line, sizeof line, tmp)) {
		size_t n = strlen(line);
		assert_true(n > 0 && line[n - 1] == '\n');
		struct json_val root, v;
		struct json_err je;
		if (json_parse(line, n - 1, &root, &je))
			fail_msg("log line %d is not JSON (%s at %zu): %s", lines, je.msg, je.off, line);
		assert_true(json_obj_get(root, "msg", &v) && json_str_eq(v, "request"));
		assert_true(json_obj_get(root, "status", &v));
		assert_true(json_obj_get(root, "id", &v));
		if (lines == 0) {
			assert_true(json_str_eq(v, "log-1"));
			assert_true(json_obj_get(root, "path", &v) && json_str_eq(v, "/v1/models"));
			assert_true(json_obj_get(root, "status", &v) && !strncmp(v.raw.p, "200", 3));
		}
		if (lines == 1) {
			assert_true(json_obj_get(root, "path", &v) && json_str_eq(v, "(invalid utf-8)"));
			assert_true(json_obj_get(root, "error", &v) && json_str_eq(v, "unknown_url\""));
		}
		if (lines == 2)
			assert_true(json_obj_get(root, "path", &v) && json_str_eq(v, "/x\"y\\z"));
		lines++;
	}
	fclose(tmp);
	assert_int_equal(lines, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_id),
		cmocka_unit_test(test_routing),
		cmocka_unit_test(test_health_and_metrics),
		cmocka_unit_test(test_models),
		cmocka_unit_test(test_chat_bad_requests),
		cmocka_unit_test(test_chat_model_errors),
		cmocka_unit_test(test_model_error_utf8_cut),
		cmocka_unit_test(test_chat_forwarded),
		cmocka_unit_test(test_embeddings),
		cmocka_unit_test(test_duplicate_model_member),
		cmocka_unit_test(test_model_with_nul),
		cmocka_unit_test(test_request_done_log),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
