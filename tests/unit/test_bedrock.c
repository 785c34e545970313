/* test_bedrock.c — unit tests for providers/bedrock.c and aws_creds.c:
 * canonical request → Converse body (golden files), the URL, headers and
 * SigV4 signature of a built request, the credentials chain, Converse
 * answers → canonical answers (golden), and ConverseStream event streams
 * → canonical events (golden), fed whole, cut at every byte and byte by
 * byte, plus every way a stream can be wrong.
 *
 * Golden files live in tests/unit/golden/bedrock/ (run from the repo
 * root). UMBRA_GOLDEN_UPDATE=1 rewrites them; review the diff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "providers/aws_creds.c"
#include "providers/bedrock.c"

#define GOLDEN_DIR "tests/unit/golden/bedrock/"
#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define MODEL_ID "anthropic.claude-3-haiku-20240307-v1:0"

/* ---- golden files ---- */

static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	struct buf b;
	buf_init(&b, 0);
	char tmp[4096];
	size_t k;
	while ((k = fread(tmp, 1, sizeof tmp, f)) > 0)
		buf_append(&b, tmp, k);
	fclose(f);
	*n = b.n;
	if (!b.p)
		buf_append_lit(&b, "");
	return b.p;
}

/* Compare got with the golden file (a trailing newline in the file is
 * not part of the content), or rewrite it under UMBRA_GOLDEN_UPDATE. */
static void golden_check(const char *name, struct str got)
{
	char path[256];
	snprintf(path, sizeof path, GOLDEN_DIR "%s", name);
	const char *upd = getenv("UMBRA_GOLDEN_UPDATE");
	if (upd && !strcmp(upd, "1")) {
		FILE *f = fopen(path, "wb");
		assert_non_null(f);
		fwrite(got.p, 1, got.n, f);
		fputc('\n', f);
		fclose(f);
		return;
	}
	size_t n = 0;
	char *want = slurp(path, &n);
	if (!want) {
		fprintf(stderr, "missing golden file %s (run from the repo root)\n", path);
		fail();
	}
	if (n && want[n - 1] == '\n')
		n--;
	if (n != got.n || memcmp(want, got.p, n)) {
		fprintf(stderr, "%s differs\n got: %.*s\nwant: %.*s\n", path, STR_FMT(got), (int)n,
			want);
		free(want);
		fail();
	}
	free(want);
}

/* ---- canonical requests ---- */

#define TEXT(t) { .type = CANON_TEXT, .text = STR(t) }
#define CALL(i, n, a) { .type = CANON_TOOL_CALL, .id = STR(i), .name = STR(n), .args = STR(a) }
#define RESULT(i, t, e) { .type = CANON_TOOL_RESULT, .id = STR(i), .text = STR(t), .is_error = e }
#define MSG(r, ps) { .role = r, .parts = ps, .n_parts = UMB_ARRAY_LEN(ps) }

static void encode_golden(const struct canon_req *req, const char *golden)
{
	struct buf b;
	buf_init(&b, BEDROCK_MAX_BODY);
	const char *why = NULL;
	assert_int_equal(bedrock_req_encode(req, &b, &why), 0);
	struct json_val root;
	assert_int_equal(json_parse(b.p, b.n, &root, NULL), 0); /* always valid JSON */
	golden_check(golden, buf_str(&b));
	buf_clear(&b);
}

static void test_req_basic(void **state)
{
	(void)state;
	struct canon_part u1[] = { TEXT("Hello \xc3\xa9t\xc3\xa9 \"quoted\"\n\x01") };
	struct canon_msg msgs[] = { MSG(CANON_USER, u1) };
	struct canon_req req = {
		.system = STR("You are terse.\n\nAnswer in French."),
		.msgs = msgs,
		.n_msgs = 1,
		.max_tokens = 300,
		.has_temperature = true,
		.temperature = 0.7,
		.has_top_p = true,
		.top_p = 0.9,
		.has_top_k = true,
		.top_k = 40,
		.stop = { STR("END"), STR("\n\nHuman:") },
		.n_stop = 2,
	};
	encode_golden(&req, "req_basic.json");
	/* nothing optional: just messages */
	struct canon_req bare = { .msgs = msgs, .n_msgs = 1 };
	encode_golden(&bare, "req_bare.json");
}

/* A tool round trip with parallel calls: ids preserved, results first in
 * the merged user turn even when the client put text before them. */
static void test_req_tools(void **state)
{
	(void)state;
	struct canon_part u1[] = { TEXT("Weather in Paris and Oslo?") };
	struct canon_part a1[] = { TEXT("Checking both."),
				   CALL("call_1", "get_weather", "{\"city\":\"Paris\"}"),
				   CALL("toolu_02", "get_weather", " {\"city\": \"Oslo\"} ") };
	struct canon_part u2[] = { TEXT("(results below)"), RESULT("call_1", "18C sunny", false) };
	struct canon_part u3[] = { RESULT("toolu_02", "station offline", true) };
	struct canon_part a2[] = { TEXT("Paris is 18C; Oslo is unknown.") };
	struct canon_msg msgs[] = { MSG(CANON_USER, u1), MSG(CANON_ASSISTANT, a1),
				    MSG(CANON_USER, u2), MSG(CANON_USER, u3),
				    MSG(CANON_ASSISTANT, a2) };
	struct canon_tool tools[] = {
		{ STR("get_weather"), STR("Current weather for a city"),
		  STR("{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}") },
		{ STR("no_args"), STR(""), STR("{}") },
	};
	struct canon_req req = { .msgs = msgs, .n_msgs = UMB_ARRAY_LEN(msgs), .tools = tools,
				 .n_tools = 2, .tool_choice = CANON_TC_AUTO };
	encode_golden(&req, "req_tools.json");
}

static void test_req_tool_choice(void **state)
{
	(void)state;
	struct canon_part u1[] = { TEXT("hi") };
	struct canon_msg plain[] = { MSG(CANON_USER, u1) };
	struct canon_tool tools[] = { { STR("lookup"), STR("Look up"), STR("{\"type\":\"object\"}") } };
	struct canon_req req = { .msgs = plain, .n_msgs = 1, .tools = tools, .n_tools = 1 };

	req.tool_choice = CANON_TC_UNSET;
	encode_golden(&req, "req_tc_unset.json");
	req.tool_choice = CANON_TC_ANY;
	encode_golden(&req, "req_tc_any.json");
	req.tool_choice = CANON_TC_TOOL;
	req.tool_choice_name = STR("lookup");
	encode_golden(&req, "req_tc_tool.json");
	/* none without tool blocks in the history: no toolConfig at all */
	req.tool_choice = CANON_TC_NONE;
	encode_golden(&req, "req_tc_none.json");

	/* none with tool blocks: Bedrock requires toolConfig; tools sent
	 * without toolChoice */
	struct canon_part a1[] = { CALL("functions.lookup:0", "lookup", "{}") };
	struct canon_part u2[] = { RESULT("functions.lookup:0", "found", false) };
	struct canon_msg hist[] = { MSG(CANON_USER, u1), MSG(CANON_ASSISTANT, a1),
				    MSG(CANON_USER, u2) };
	req.msgs = hist;
	req.n_msgs = 3;
	encode_golden(&req, "req_tc_none_history.json");

	/* no tools at all but tool blocks in the history: specs made from
	 * the called names; ids made Bedrock-safe the same way on both sides;
	 * broken arguments become {} */
	struct canon_part a1b[] = { CALL("functions.lookup:0", "lookup", "{not json"),
				    CALL("x", "other", "[1,2]") };
	struct canon_part u2b[] = { RESULT("functions.lookup:0", "found", false),
				    RESULT("x", "", false) };
	struct canon_msg hist2[] = { MSG(CANON_USER, u1), MSG(CANON_ASSISTANT, a1b),
				     MSG(CANON_USER, u2b) };
	struct canon_req synth = { .msgs = hist2, .n_msgs = 3 };
	encode_golden(&synth, "req_synth_tools.json");
}

/* Tool ids Bedrock's pattern refuses are mapped, the same way on both
 * sides; long ones that share a prefix stay distinct. */
static void test_tool_ids(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 0);
	w_tool_id(&b, STR("call_ok-1"));
	assert_string_equal(b.p, "\"call_ok-1\"");
	buf_reset(&b);
	w_tool_id(&b, STR("functions.get:0"));
	assert_string_equal(b.p, "\"functions_get_0\"");
	buf_reset(&b);
	w_tool_id(&b, STR(""));
	assert_string_equal(b.p, "\"tool\"");
	char a[81], c[81];
	memset(a, 'x', 80);
	memcpy(c, a, 80);
	a[79] = 'a';
	c[79] = 'c';
	buf_reset(&b);
	w_tool_id(&b, str_make(a, 80));
	struct buf d;
	buf_init(&d, 0);
	w_tool_id(&d, str_make(c, 80));
	assert_int_equal(b.n, 66); /* 64 and the quotes */
	assert_int_equal(d.n, 66);
	assert_string_not_equal(b.p, d.p);
	assert_memory_equal(b.p, "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx_", 49);
	for (size_t i = 1; i < 65; i++)
		assert_true(isalnum((unsigned char)b.p[i]) || b.p[i] == '_');
	buf_reset(&d);
	w_tool_id(&d, str_make(a, 80)); /* stable */
	assert_string_equal(b.p, d.p);
	buf_clear(&b);
	buf_clear(&d);
}

/* Same-role turns merged; blank texts and messages left out. */
static void test_req_merge(void **state)
{
	(void)state;
	struct canon_part u1[] = { TEXT("first") };
	struct canon_part u2[] = { TEXT(""), TEXT("second") };
	struct canon_part empty_a[] = { TEXT("") };
	struct canon_part u3[] = { TEXT("third") };
	struct canon_part a1[] = { TEXT("answer") };
	struct canon_part a2[] = { TEXT("more") };
	struct canon_msg msgs[] = { MSG(CANON_USER, u1), MSG(CANON_USER, u2),
				    MSG(CANON_ASSISTANT, empty_a), MSG(CANON_USER, u3),
				    MSG(CANON_ASSISTANT, a1), MSG(CANON_ASSISTANT, a2) };
	struct canon_req req = { .msgs = msgs, .n_msgs = UMB_ARRAY_LEN(msgs) };
	encode_golden(&req, "req_merge.json");
}

static void test_req_images(void **state)
{
	(void)state;
	struct canon_part u1[] = {
		TEXT("What is in these?"),
		{ .type = CANON_IMAGE, .media_type = STR("image/png"), .data = STR("iVBORw0KGgo=") },
		{ .type = CANON_IMAGE, .url = STR("s3://bucket/cat.JPG") },
		{ .type = CANON_IMAGE, .media_type = STR("image/webp"), .url = STR("s3://b/x") },
	};
	struct canon_msg msgs[] = { MSG(CANON_USER, u1) };
	struct canon_req req = { .msgs = msgs, .n_msgs = 1 };
	encode_golden(&req, "req_images.json");

	/* what Converse cannot take makes the build fail with a reason */
	struct canon_part http[] = { { .type = CANON_IMAGE, .url = STR("https://x/cat.png") } };
	struct canon_part tiff[] = { { .type = CANON_IMAGE, .media_type = STR("image/tiff"),
				       .data = STR("AAAA") } };
	struct canon_msg m1[] = { MSG(CANON_USER, http) }, m2[] = { MSG(CANON_USER, tiff) };
	struct canon_req r1 = { .msgs = m1, .n_msgs = 1 }, r2 = { .msgs = m2, .n_msgs = 1 };
	struct buf b;
	buf_init(&b, 0);
	const char *why = NULL;
	assert_int_equal(bedrock_req_encode(&r1, &b, &why), UMB_ERR);
	assert_non_null(strstr(why, "http(s) URL"));
	buf_reset(&b);
	why = NULL;
	assert_int_equal(bedrock_req_encode(&r2, &b, &why), UMB_ERR);
	assert_non_null(strstr(why, "png, jpeg, gif and webp"));
	buf_clear(&b);
}

/* ---- building: URL, headers, signature ---- */

static time_t fixed_clock(time_t *t)
{
	time_t v = 1440938160; /* 2015-08-30T12:36:00Z */
	if (t)
		*t = v;
	return v;
}

struct build_ctx {
	struct cfg_provider prov;
	struct cfg_model model;
	struct cfg_endpoint ep;
	struct upstream_call call;
	struct canon_req req;
	struct canon_msg msg;
	struct canon_part part;
	struct provider_request out;
	struct arena *a;
};

static void build_ctx_init(struct build_ctx *c, const char *origin, enum endpoint_scheme scheme)
{
	memset(c, 0, sizeof *c);
	c->prov = (struct cfg_provider){ .name = "br", .type = PROVIDER_BEDROCK,
					 .region = "us-east-1", .access_key_id = AKID,
					 .secret_access_key = SECRET };
	c->model = (struct cfg_model){ .name = "claude", .provider = &c->prov,
				       .upstream_model = MODEL_ID };
	c->ep = (struct cfg_endpoint){ .name = "br", .scheme = scheme, .origin = (char *)origin };
	c->part = (struct canon_part){ .type = CANON_TEXT, .text = STR("hi") };
	c->msg = (struct canon_msg){ .role = CANON_USER, .parts = &c->part, .n_parts = 1 };
	c->req = (struct canon_req){ .msgs = &c->msg, .n_msgs = 1 };
	c->call = (struct upstream_call){ .op = UPSTREAM_CHAT, .model = &c->model,
					  .requested_model = STR("claude"), .canon = &c->req,
					  .dialect = DIALECT_OPENAI };
	c->a = arena_new(0);
	bedrock_clock = fixed_clock;
}

static const char *header(const struct provider_request *pr, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < pr->n_headers; i++)
		if (!strncasecmp(pr->headers[i], name, n) && pr->headers[i][n] == ':')
			return pr->headers[i] + n + 1 + (pr->headers[i][n + 1] == ' ');
	return NULL;
}

/* The signature recomputed from a canonical request written out here by
 * hand: an independent check of what bedrock_build signs. */
static void expect_signature(const char *authz, const char *creq, const char *signed_headers,
			     const char *secret)
{
	struct sigv4_key k = { STR(AKID), str_cstr(secret), STR("us-east-1"), STR("bedrock"),
			       STR("20150830T123600Z") };
	struct buf sts, want;
	buf_init(&sts, 0);
	buf_init(&want, 0);
	assert_int_equal(sigv4_string_to_sign(&k, str_cstr(creq), &sts), 0);
	char sig[SIGV4_HEX_LEN + 1];
	assert_int_equal(sigv4_signature(&k, buf_str(&sts), sig), 0);
	buf_printf(&want,
		   "AWS4-HMAC-SHA256 Credential=" AKID "/20150830/us-east-1/bedrock/aws4_request, "
		   "SignedHeaders=%s, Signature=%s",
		   signed_headers, sig);
	assert_string_equal(authz, want.p);
	buf_clear(&sts);
	buf_clear(&want);
}

static void test_build_non_stream(void **state)
{
	(void)state;
	struct build_ctx c;
	build_ctx_init(&c, "https://bedrock-runtime.us-east-1.amazonaws.com", SCHEME_HTTPS);
	assert_int_equal(provider_bedrock_ops()->build(c.a, &c.call, &c.model, &c.ep, "req-1", &c.out),
			 0);
	assert_string_equal(c.out.url, "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
				       "anthropic.claude-3-haiku-20240307-v1%3A0/converse");
	struct str body = provider_body_join(c.a, &c.out);
	assert_true(str_eq(body, STR("{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}]}")));
	assert_string_equal(header(&c.out, "Content-Type"), "application/json");
	assert_string_equal(header(&c.out, "Accept"), "application/json");
	assert_string_equal(header(&c.out, "X-Amz-Date"), "20150830T123600Z");
	assert_string_equal(header(&c.out, "x-request-id"), "req-1");
	assert_null(header(&c.out, "X-Amz-Security-Token"));
	assert_null(header(&c.out, "Host")); /* the transport sends it */
	char payload[SIGV4_HEX_LEN + 1];
	sigv4_sha256_hex(body.p, body.n, payload);
	struct buf creq;
	buf_init(&creq, 0);
	buf_printf(&creq,
		   "POST\n/model/anthropic.claude-3-haiku-20240307-v1%%253A0/converse\n\n"
		   "accept:application/json\ncontent-type:application/json\n"
		   "host:bedrock-runtime.us-east-1.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
		   "accept;content-type;host;x-amz-date\n%s",
		   payload);
	expect_signature(header(&c.out, "Authorization"), creq.p, "accept;content-type;host;x-amz-date",
			 SECRET);
	buf_clear(&creq);
	arena_free(c.a);
}

static void test_build_stream_token_prefix(void **state)
{
	(void)state;
	struct build_ctx c;
	build_ctx_init(&c, "http://127.0.0.1:8123/bedrock", SCHEME_HTTP);
	c.prov.session_token = "FQoGZXIvYXdzE//token+=";
	struct cfg_header extra[] = { { "X-Extra", "1" } };
	c.prov.headers = extra;
	c.prov.n_headers = 1;
	c.call.stream = true;
	c.req.stream = true;
	/* an ARN as the model id: ':' and '/' both encoded */
	c.model.upstream_model = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.x";
	assert_int_equal(provider_bedrock_ops()->build(c.a, &c.call, &c.model, &c.ep, "req-2", &c.out),
			 0);
	assert_string_equal(c.out.url, "http://127.0.0.1:8123/bedrock/model/arn%3Aaws%3Abedrock%3A"
				       "us-east-1%3A123456789012%3Ainference-profile%2Fus.x/converse-stream");
	assert_string_equal(header(&c.out, "Accept"), "application/vnd.amazon.eventstream");
	assert_string_equal(header(&c.out, "X-Amz-Security-Token"), "FQoGZXIvYXdzE//token+=");
	assert_string_equal(header(&c.out, "X-Extra"), "1");
	struct str body = provider_body_join(c.a, &c.out);
	char payload[SIGV4_HEX_LEN + 1];
	sigv4_sha256_hex(body.p, body.n, payload);
	struct buf creq;
	buf_init(&creq, 0);
	/* umbra's own HTTP/1.1 client sends Host as written: port kept */
	buf_printf(&creq,
		   "POST\n/bedrock/model/arn%%253Aaws%%253Abedrock%%253Aus-east-1%%253A123456789012"
		   "%%253Ainference-profile%%252Fus.x/converse-stream\n\n"
		   "accept:application/vnd.amazon.eventstream\ncontent-type:application/json\n"
		   "host:127.0.0.1:8123\nx-amz-date:20150830T123600Z\n"
		   "x-amz-security-token:FQoGZXIvYXdzE//token+=\n\n"
		   "accept;content-type;host;x-amz-date;x-amz-security-token\n%s",
		   payload);
	expect_signature(header(&c.out, "Authorization"), creq.p,
			 "accept;content-type;host;x-amz-date;x-amz-security-token", SECRET);
	buf_clear(&creq);
	arena_free(c.a);
}

static void test_signing_host_and_region(void **state)
{
	(void)state;
	struct cfg_endpoint ep = { .scheme = SCHEME_HTTPS };
	assert_true(str_eq(signing_host(&ep, STR("h.example:443")), STR("h.example")));
	assert_true(str_eq(signing_host(&ep, STR("h.example:8443")), STR("h.example:8443")));
	assert_true(str_eq(signing_host(&ep, STR("[::1]:443")), STR("[::1]")));
	ep.scheme = SCHEME_HTTP;
	assert_true(str_eq(signing_host(&ep, STR("name.local:80")), STR("name.local")));
	assert_true(str_eq(signing_host(&ep, STR("127.0.0.1:80")), STR("127.0.0.1:80")));
	assert_true(str_eq(signing_host(&ep, STR("127.0.0.1:9000")), STR("127.0.0.1:9000")));
	ep.scheme = SCHEME_UNIX;
	assert_true(str_eq(signing_host(&ep, STR("localhost")), STR("localhost")));

	struct cfg_provider p = { .name = "x" };
	unsetenv("AWS_REGION");
	unsetenv("AWS_DEFAULT_REGION");
	assert_true(str_eq(bedrock_region(&p, STR("bedrock-runtime.eu-west-3.amazonaws.com")),
			   STR("eu-west-3")));
	assert_true(str_eq(bedrock_region(&p, STR("bedrock-runtime-fips.us-gov-west-1.amazonaws.com")),
			   STR("us-gov-west-1")));
	assert_int_equal(bedrock_region(&p, STR("127.0.0.1:9")).n, 0);
	setenv("AWS_DEFAULT_REGION", "ap-south-1", 1);
	assert_true(str_eq(bedrock_region(&p, STR("127.0.0.1:9")), STR("ap-south-1")));
	setenv("AWS_REGION", "ca-central-1", 1);
	assert_true(str_eq(bedrock_region(&p, STR("127.0.0.1:9")), STR("ca-central-1")));
	p.region = "us-west-2";
	assert_true(str_eq(bedrock_region(&p, STR("bedrock-runtime.eu-west-3.amazonaws.com")),
			   STR("us-west-2")));
	unsetenv("AWS_REGION");
	unsetenv("AWS_DEFAULT_REGION");
}

static void test_build_failures(void **state)
{
	(void)state;
	log_min_level = LOG_ERROR; /* the warnings are expected */
	struct build_ctx c;
	build_ctx_init(&c, "http://127.0.0.1:9", SCHEME_HTTP);
	const struct provider_ops *ops = provider_bedrock_ops();
	c.prov.region = NULL; /* and no region in the host or the environment */
	assert_int_equal(ops->build(c.a, &c.call, &c.model, &c.ep, "r", &c.out), UMB_ERR);
	c.prov.region = "us-east-1";
	c.prov.secret_access_key = NULL; /* a key id alone */
	assert_int_equal(ops->build(c.a, &c.call, &c.model, &c.ep, "r", &c.out), UMB_ERR);
	c.prov.secret_access_key = SECRET;
	c.call.op = UPSTREAM_EMBEDDINGS;
	assert_int_equal(ops->build(c.a, &c.call, &c.model, &c.ep, "r", &c.out), UMB_ERR);
	c.call.op = UPSTREAM_CHAT;
	c.call.canon = NULL;
	assert_int_equal(ops->build(c.a, &c.call, &c.model, &c.ep, "r", &c.out), UMB_ERR);
	c.call.canon = &c.req;
	c.part = (struct canon_part){ .type = CANON_IMAGE, .url = STR("https://x/y.png") };
	assert_int_equal(ops->build(c.a, &c.call, &c.model, &c.ep, "r", &c.out), UMB_ERR);
	arena_free(c.a);
	log_min_level = LOG_INFO;
}

/* ---- credentials ---- */

static void test_creds_parse(void **state)
{
	(void)state;
	static const char text[] =
		"\xef\xbb\xbf# comment\r\n"
		"[default]\r\n"
		"aws_access_key_id = AKIDDEFAULT\r\n"
		"aws_secret_access_key=secretdefault\r\n"
		"\n"
		"[ work ]\n"
		"; another comment\n"
		"AWS_ACCESS_KEY_ID =  AKIDWORK  \n"
		"aws_secret_access_key = sec/ret+work=\n"
		"aws_security_token = legacy\n"
		"aws_session_token = tok\n"
		"region = eu-west-1\n"
		"[partial]\n"
		"aws_access_key_id = ONLYID\n";
	struct aws_creds c;
	assert_int_equal(aws_creds_parse(STR(text), STR("default"), &c), 0);
	assert_true(str_eq(c.access_key_id, STR("AKIDDEFAULT")));
	assert_true(str_eq(c.secret_access_key, STR("secretdefault")));
	assert_int_equal(c.session_token.n, 0);
	assert_int_equal(aws_creds_parse(STR(text), STR("work"), &c), 0);
	assert_true(str_eq(c.access_key_id, STR("AKIDWORK")));
	assert_true(str_eq(c.secret_access_key, STR("sec/ret+work=")));
	assert_true(str_eq(c.session_token, STR("tok"))); /* the current name wins */
	assert_int_equal(aws_creds_parse(STR(text), STR("partial"), &c), 0);
	assert_int_equal(c.secret_access_key.n, 0);
	assert_int_equal(aws_creds_parse(STR(text), STR("nope"), &c), UMB_ERR);
	assert_int_equal(aws_creds_parse(STR(text), STR("defaul"), &c), UMB_ERR);
}

static char creds_dir[64];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Age every cached file so the next lookup stat()s again. */
static void creds_cache_age(void)
{
	for (size_t i = 0; i < CREDS_CACHE_SLOTS; i++)
		if (creds_slots[i].checked_ns)
			creds_slots[i].checked_ns -= 2 * CREDS_RECHECK_NS;
}

static void test_creds_chain(void **state)
{
	(void)state;
	snprintf(creds_dir, sizeof creds_dir, "/tmp/umbra_creds_XXXXXX");
	assert_non_null(mkdtemp(creds_dir));
	char path[128], why[320];
	snprintf(path, sizeof path, "%s/credentials", creds_dir);
	write_file(path, "[default]\naws_access_key_id=FILEDEF\naws_secret_access_key=s1\n"
			 "[prof]\naws_access_key_id=FILEPROF\naws_secret_access_key=s2\n"
			 "aws_session_token=t2\n[bad]\naws_access_key_id=ID\n");
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	unsetenv("AWS_PROFILE");
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	aws_creds_cache_clear();
	struct arena *a = arena_new(0);
	struct cfg_provider p = { .name = "br" };
	struct aws_creds c;

	/* 3. the file, default profile */
	assert_int_equal(aws_creds_resolve(a, &p, &c, why, sizeof why), 0);
	assert_true(str_eq(c.access_key_id, STR("FILEDEF")));
	assert_string_equal(c.source, path);
	/* AWS_PROFILE picks the section; the provider's profile beats it */
	setenv("AWS_PROFILE", "bad", 1);
	assert_int_equal(aws_creds_resolve(a, &p, &c, why, sizeof why), UMB_ERR);
	assert_non_null(strstr(why, "without"));
	p.profile = "prof";
	assert_int_equal(aws_creds_resolve(a, &p, &c, why, sizeof why), 0);
	assert_true(str_eq(c.access_key_id, STR("FILEPROF")));
	assert_true(str_eq(c.session_token, STR("t2")));
	p.profile = "missing";
	assert_int_equal(aws_creds_resolve(a, &p, &c, why, sizeof why), UMB_ERR);
	assert_non_null(strstr(why, "profile [missing] not found"));
	p.profile = NULL;
	unsetenv("AWS_PROFILE");

	/* the file changes: seen after the once-a-second re-check */
	write_file(path, "[default]\naws_access_key_id=ROTATED\naws_secret_access_key=s9\n");
	assert_int_equal(aws_creds_resolve(a, &p, &c, why, sizeof why), 0);
	assert_true(str_eq(c.access_key_id, STR("FILEDEF"))); /* cached within the second */
	creds_cache_age();
	assert_int_equal(aws_creds_resolve(a, &p, &c, why, sizeof why), 0);
	assert_true(str_eq(c.access_key_id, STR("ROTATED")));

	/* 2. the environment beats the file */
	setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	setenv("AWS_SESSION_TOKEN", "envtoken", 1);
	assert_int_equal(aws_creds_resolve(a, &p, &c, why, sizeof why), 0);
	assert_true(str_eq(c.access_key_id, STR("ENVID")));
	assert_true(str_eq(c.session_token, STR("envtoken")));
	assert_string_equal(c.source, "environment");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	assert_int_equal(aws_creds_resolve(a, &p, &c, why, sizeof why), UMB_ERR);
	assert_non_null(strstr(why, "environment"));
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);

	/* 1. the config beats everything */
	p.access_key_id = "CFGID";
	p.secret_access_key = "cfgsecret";
	assert_int_equal(aws_creds_resolve(a, &p, &c, why, sizeof why), 0);
	assert_true(str_eq(c.access_key_id, STR("CFGID")));
	assert_int_equal(c.session_token.n, 0);
	assert_string_equal(c.source, "config");
	p.secret_access_key = "bad\nsecret"; /* would inject a header line */
	assert_int_equal(aws_creds_resolve(a, &p, &c, why, sizeof why), UMB_ERR);
	p.access_key_id = p.secret_access_key = NULL;
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");

	/* no file at all */
	unlink(path);
	creds_cache_age();
	assert_int_equal(aws_creds_resolve(a, &p, &c, why, sizeof why), UMB_ERR);
	assert_non_null(strstr(why, "No such file"));
	/* ~/ in AWS_SHARED_CREDENTIALS_FILE is the home directory */
	char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
	setenv("HOME", creds_dir, 1);
	setenv("AWS_SHARED_CREDENTIALS_FILE", "~/other", 1);
	snprintf(path, sizeof path, "%s/other", creds_dir);
	write_file(path, "[default]\naws_access_key_id=HOMEID\naws_secret_access_key=h\n");
	assert_int_equal(aws_creds_resolve(a, &p, &c, why, sizeof why), 0);
	assert_true(str_eq(c.access_key_id, STR("HOMEID")));
	unlink(path);
	/* and without the variable, ~/.aws/credentials */
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
	snprintf(path, sizeof path, "%s/.aws", creds_dir);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/.aws/credentials", creds_dir);
	write_file(path, "[default]\naws_access_key_id=DOTAWS\naws_secret_access_key=d\n");
	assert_int_equal(aws_creds_resolve(a, &p, &c, why, sizeof why), 0);
	assert_true(str_eq(c.access_key_id, STR("DOTAWS")));
	unlink(path);
	snprintf(path, sizeof path, "%s/.aws", creds_dir);
	rmdir(path);
	rmdir(creds_dir);
	if (home) {
		setenv("HOME", home, 1);
		free(home);
	}
	aws_creds_cache_clear();
	arena_free(a);
}

/* ---- answers ---- */

static void dump_usage(struct buf *b, const struct canon_usage *u)
{
	buf_printf(b, "usage seen=%d prompt=%llu completion=%llu cached=%llu cache_write=%llu\n",
		   u->seen, (unsigned long long)u->prompt_tokens,
		   (unsigned long long)u->completion_tokens,
		   (unsigned long long)u->cached_prompt_tokens,
		   (unsigned long long)u->cache_write_tokens);
}

static const char *finish_name(enum canon_finish f)
{
	static const char *const n[] = { "none", "stop", "length", "tool_calls", "stop_sequence",
					 "content_filter" };
	return (size_t)f < UMB_ARRAY_LEN(n) ? n[f] : "?";
}

static void dump_resp(struct buf *b, const struct canon_resp *r)
{
	buf_printf(b, "finish %s stop_sequence=", finish_name(r->finish));
	json_write_str_lossy(b, r->stop_sequence);
	buf_append_lit(b, "\n");
	dump_usage(b, &r->usage);
	for (size_t i = 0; i < r->n_parts; i++) {
		const struct canon_part *p = &r->parts[i];
		if (p->type == CANON_TEXT) {
			buf_append_lit(b, "text ");
			json_write_str_lossy(b, p->text);
		} else {
			buf_append_lit(b, "tool_call id=");
			json_write_str_lossy(b, p->id);
			buf_append_lit(b, " name=");
			json_write_str_lossy(b, p->name);
			buf_append_lit(b, " args=");
			buf_append_str(b, p->args);
		}
		buf_append_lit(b, "\n");
	}
}

static void decode_golden(const char *name)
{
	char in[128], out[128];
	snprintf(in, sizeof in, GOLDEN_DIR "%s.json", name);
	snprintf(out, sizeof out, "%s.out", name);
	size_t n = 0;
	char *body = slurp(in, &n);
	assert_non_null(body);
	struct arena *a = arena_new(0);
	struct canon_resp r;
	struct upstream_call call = { .op = UPSTREAM_CHAT };
	assert_int_equal(provider_bedrock_ops()->decode(a, &call, str_make(body, n), &r), 0);
	/* the gateway reuses the body's buffer for the answer it writes from
	 * r: nothing in r may point into it */
	memset(body, 'X', n);
	struct buf d;
	buf_init(&d, 0);
	dump_resp(&d, &r);
	golden_check(out, buf_str(&d));
	buf_clear(&d);
	arena_free(a);
	free(body);
}

static void test_decode_golden(void **state)
{
	(void)state;
	decode_golden("converse_text");
	decode_golden("converse_tools");
	decode_golden("converse_cache");
	decode_golden("converse_stop_sequence");
}

static void test_decode_garbage(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"not json",
		"[]",
		"{}",
		"{\"output\":{}}",
		"{\"output\":{\"message\":{\"role\":\"assistant\"}}}",
		"{\"output\":{\"message\":{\"content\":{}}}}",
		"{\"output\":{\"message\":{\"content\":[{\"toolUse\":{\"name\":\"x\",\"input\":{}}}]}}}",
		"{\"output\":{\"message\":{\"content\":[{\"toolUse\":{\"toolUseId\":1,\"name\":\"x\"}}]}}}",
		"{\"output\":{\"message\":{\"content\":[]}},\"usage\":{\"inputTokens\":1}", /* truncated */
	};
	struct arena *a = arena_new(0);
	struct upstream_call call = { .op = UPSTREAM_CHAT };
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		struct canon_resp r;
		if (provider_bedrock_ops()->decode(a, &call, str_cstr(bad[i]), &r) != UMB_ERR) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			fail();
		}
	}
	/* minimal valid: empty content, no usage, no stopReason */
	struct canon_resp r;
	assert_int_equal(provider_bedrock_ops()->decode(
				 a, &call, STR("{\"output\":{\"message\":{\"content\":[]}}}"), &r),
			 0);
	assert_int_equal(r.n_parts, 0);
	assert_false(r.usage.seen);
	assert_int_equal(r.finish, CANON_FIN_STOP);
	arena_free(a);
}

static void test_finish_reasons(void **state)
{
	(void)state;
	static const struct {
		const char *json;
		enum canon_finish f;
	} cases[] = {
		{ "\"end_turn\"", CANON_FIN_STOP },
		{ "\"tool_use\"", CANON_FIN_TOOL_CALLS },
		{ "\"max_tokens\"", CANON_FIN_LENGTH },
		{ "\"model_context_window_exceeded\"", CANON_FIN_LENGTH },
		{ "\"stop_sequence\"", CANON_FIN_STOP_SEQUENCE },
		{ "\"guardrail_intervened\"", CANON_FIN_CONTENT_FILTER },
		{ "\"content_filtered\"", CANON_FIN_CONTENT_FILTER },
		{ "\"malformed_model_output\"", CANON_FIN_STOP },
		{ "\"something_new\"", CANON_FIN_STOP },
		{ "7", CANON_FIN_STOP },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(cases); i++) {
		struct json_val v;
		assert_int_equal(json_parse(cases[i].json, strlen(cases[i].json), &v, NULL), 0);
		assert_int_equal(finish_of(v), cases[i].f);
	}
}

static void test_error_message(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	const struct provider_ops *ops = provider_bedrock_ops();
	assert_string_equal(ops->error_message(a, STR("{\"message\":\"Too many requests, please wait before trying again.\"}")),
			    "Too many requests, please wait before trying again.");
	assert_string_equal(ops->error_message(a, STR("{\"Message\":\"User: arn:aws:iam::1:user/x is not authorized\"}")),
			    "User: arn:aws:iam::1:user/x is not authorized");
	assert_string_equal(ops->error_message(a, STR("{\"message\":\"caf\\u00e9 \\\"q\\\"\"}")),
			    "caf\xc3\xa9 \"q\"");
	assert_null(ops->error_message(a, STR("<html>")));
	assert_null(ops->error_message(a, STR("{\"error\":\"x\"}")));
	assert_null(ops->error_message(a, STR("{\"message\":5}")));
	arena_free(a);
}

/* ---- the event stream ---- */

/* A .events file: one message per line, "event TYPE PAYLOAD" or
 * "exception TYPE PAYLOAD" ('#' lines are comments), encoded as Bedrock
 * sends them. */
static void events_encode(const char *text, size_t n, struct buf *out)
{
	struct str rest = str_make(text, n);
	while (rest.n) {
		const char *nl = memchr(rest.p, '\n', rest.n);
		struct str line = str_make(rest.p, nl ? (size_t)(nl - rest.p) : rest.n);
		rest.p += line.n + (nl != NULL);
		rest.n -= line.n + (nl != NULL);
		if (!line.n || line.p[0] == '#')
			continue;
		const char *sp1 = memchr(line.p, ' ', line.n);
		assert_non_null(sp1);
		struct str kind = str_make(line.p, (size_t)(sp1 - line.p));
		struct str after = str_make(sp1 + 1, line.n - kind.n - 1);
		const char *sp2 = memchr(after.p, ' ', after.n);
		assert_non_null(sp2);
		struct str type = str_make(after.p, (size_t)(sp2 - after.p));
		struct str payload = str_make(sp2 + 1, after.n - type.n - 1);
		bool exc = str_eq(kind, STR("exception"));
		struct es_header h[3] = {
			{ .name = exc ? STR(":exception-type") : STR(":event-type"), .type = ES_STRING,
			  .v = type },
			{ .name = STR(":content-type"), .type = ES_STRING, .v = STR("application/json") },
			{ .name = STR(":message-type"), .type = ES_STRING, .v = kind },
		};
		assert_int_equal(es_encode(out, h, 3, payload), 0);
	}
}

struct dump {
	struct buf b;
	int n, stop_at;
};

static int dump_emit(void *ctx, const struct canon_ev *ev)
{
	struct dump *d = ctx;
	struct buf *b = &d->b;
	switch (ev->type) {
	case CEV_START:
		buf_append_lit(b, "START\n");
		break;
	case CEV_TEXT:
		buf_append_lit(b, "TEXT ");
		json_write_str_lossy(b, ev->text);
		buf_append_lit(b, "\n");
		break;
	case CEV_TOOL_START:
		buf_printf(b, "TOOL_START %d id=", ev->index);
		json_write_str_lossy(b, ev->id);
		buf_append_lit(b, " name=");
		json_write_str_lossy(b, ev->name);
		buf_append_lit(b, "\n");
		break;
	case CEV_TOOL_ARGS:
		buf_printf(b, "TOOL_ARGS %d ", ev->index);
		json_write_str_lossy(b, ev->text);
		buf_append_lit(b, "\n");
		break;
	case CEV_FINISH:
		buf_printf(b, "FINISH %s stop_sequence=", finish_name(ev->finish));
		json_write_str_lossy(b, ev->stop_sequence);
		buf_append_lit(b, "\n");
		break;
	case CEV_USAGE:
		buf_append_lit(b, "USAGE ");
		dump_usage(b, &ev->usage);
		break;
	case CEV_END:
		buf_append_lit(b, "END\n");
		break;
	}
	return d->stop_at && ++d->n == d->stop_at ? 5 : 0;
}

/* Feed the stream cut at the given offsets (fresh heap copies, so a
 * view kept across feeds shows under ASan), then finish. */
static void run_stream(const char *s, size_t n, const size_t *cuts, size_t n_cuts, struct dump *d)
{
	const struct provider_ops *ops = provider_bedrock_ops();
	void *st = calloc(1, ops->stream_size);
	struct upstream_call call = { .op = UPSTREAM_CHAT, .stream = true };
	struct canon_sink sink = { dump_emit, d };
	ops->stream_init(st, &call);
	int rc = 0;
	size_t pos = 0;
	for (size_t i = 0; i <= n_cuts && rc == 0; i++) {
		size_t end = i < n_cuts ? cuts[i] : n;
		char *piece = malloc(end - pos + 1);
		memcpy(piece, s + pos, end - pos);
		rc = ops->stream_feed(st, piece, end - pos, &sink);
		free(piece);
		pos = end;
	}
	buf_printf(&d->b, "feed %d\n", rc);
	if (rc == 0)
		buf_printf(&d->b, "finish %d\n", ops->stream_finish(st, &sink));
	ops->stream_clear(st);
	free(st);
}

static void stream_golden(const char *name)
{
	char in[128], out[128];
	snprintf(in, sizeof in, GOLDEN_DIR "%s.events", name);
	snprintf(out, sizeof out, "%s.out", name);
	size_t n = 0;
	char *text = slurp(in, &n);
	assert_non_null(text);
	struct buf s;
	buf_init(&s, 0);
	events_encode(text, n, &s);
	free(text);

	struct dump whole = { 0 };
	buf_init(&whole.b, 0);
	run_stream(s.p, s.n, NULL, 0, &whole);
	golden_check(out, buf_str(&whole.b));
	/* one cut at every offset, then byte by byte: the same events */
	for (size_t cut = 0; cut <= s.n; cut++) {
		struct dump d = { 0 };
		buf_init(&d.b, 0);
		run_stream(s.p, s.n, &cut, 1, &d);
		if (!str_eq(buf_str(&d.b), buf_str(&whole.b))) {
			fprintf(stderr, "%s cut at %zu:\n%s\nvs whole:\n%s\n", name, cut, d.b.p,
				whole.b.p);
			fail();
		}
		buf_clear(&d.b);
	}
	size_t *cuts = malloc(s.n * sizeof *cuts);
	for (size_t i = 0; i < s.n; i++)
		cuts[i] = i + 1;
	struct dump d = { 0 };
	buf_init(&d.b, 0);
	run_stream(s.p, s.n, cuts, s.n ? s.n - 1 : 0, &d);
	assert_true(str_eq(buf_str(&d.b), buf_str(&whole.b)));
	buf_clear(&d.b);
	free(cuts);
	buf_clear(&whole.b);
	buf_clear(&s);
}

static void test_stream_golden(void **state)
{
	(void)state;
	log_min_level = LOG_ERROR; /* exceptions and garbage are logged */
	stream_golden("stream_text");          /* multibyte UTF-8, escapes */
	stream_golden("stream_surrogate_split");/* one character over two messages */
	stream_golden("stream_tools");         /* text + two parallel tool calls */
	stream_golden("stream_unknown");       /* unknown events and deltas ignored */
	stream_golden("stream_metadata_first");/* END waits for both */
	stream_golden("stream_no_start");      /* START implied */
	stream_golden("stream_exception");     /* throttlingException mid-stream */
	stream_golden("stream_no_metadata");   /* cut short: finish fails */
	stream_golden("stream_no_stop");       /* cut short: finish fails */
	stream_golden("stream_bad_tool_delta");/* a delta for a block never started */
	stream_golden("stream_bad_json");      /* a payload that is not JSON */
	stream_golden("stream_stop_twice");    /* two messageStop */
	stream_golden("stream_content_after_stop");
	log_min_level = LOG_INFO;
}

static void test_stream_framing_errors(void **state)
{
	(void)state;
	log_min_level = LOG_ERROR;
	size_t n = 0;
	char *text = slurp(GOLDEN_DIR "stream_text.events", &n);
	assert_non_null(text);
	struct buf s;
	buf_init(&s, 0);
	events_encode(text, n, &s);
	free(text);

	/* a flipped payload byte in the second message: its CRC fails, the
	 * first message's events came through */
	uint32_t first = (uint32_t)(unsigned char)s.p[2] << 8 | (unsigned char)s.p[3];
	s.p[first + 40] ^= 0x01;
	struct dump d = { 0 };
	buf_init(&d.b, 0);
	run_stream(s.p, s.n, NULL, 0, &d);
	assert_string_equal(d.b.p, "START\nfeed -1\n");
	s.p[first + 40] ^= 0x01;

	/* a sink that says stop: its value comes back */
	buf_reset(&d.b);
	d.stop_at = 2;
	run_stream(s.p, s.n, NULL, 0, &d);
	assert_string_equal(d.b.p, "START\nTEXT \"Bonjour \"\nfeed 5\n");

	/* cut inside a message at the end: no END, finish fails */
	buf_reset(&d.b);
	d.stop_at = 0;
	d.n = 0;
	size_t cut = s.n - 5;
	run_stream(s.p, cut, NULL, 0, &d);
	assert_non_null(strstr(d.b.p, "finish -1"));
	assert_null(strstr(d.b.p, "END"));

	/* bytes after END (a complete stream) are not read: no error */
	buf_reset(&d.b);
	struct buf tail;
	buf_init(&tail, 0);
	buf_append(&tail, s.p, s.n);
	buf_append_lit(&tail, "\x00\x00\x00\x20junk after the end of the stream");
	run_stream(tail.p, tail.n, NULL, 0, &d);
	assert_non_null(strstr(d.b.p, "END\nfeed 0\nfinish 0\n"));
	buf_clear(&tail);

	/* a message that is not an event at all */
	buf_reset(&d.b);
	struct buf odd;
	buf_init(&odd, 0);
	struct es_header h[] = { { .name = STR(":message-type"), .type = ES_STRING, .v = STR("other") } };
	es_encode(&odd, h, 1, STR("{}"));
	run_stream(odd.p, odd.n, NULL, 0, &d);
	assert_string_equal(d.b.p, "feed -1\n");
	/* an event without an :event-type */
	buf_reset(&d.b);
	buf_reset(&odd);
	h[0].v = STR("event");
	es_encode(&odd, h, 1, STR("{}"));
	run_stream(odd.p, odd.n, NULL, 0, &d);
	assert_string_equal(d.b.p, "feed -1\n");
	buf_clear(&odd);
	buf_clear(&d.b);
	buf_clear(&s);
	log_min_level = LOG_INFO;
}

static void test_ops_table(void **state)
{
	(void)state;
	const struct provider_ops *ops = provider_bedrock_ops();
	assert_non_null(ops);
	assert_ptr_equal(provider_ops_get(PROVIDER_BEDROCK), ops);
	assert_string_equal(ops->name, "bedrock");
	assert_int_equal(ops->native, -1);
	assert_null(ops->health_path);
	assert_null(ops->finish);
	assert_null(ops->stream_event);
	assert_false(ops->embeddings);
	assert_true(ops->stream_size >= sizeof(struct bedrock_stream));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_req_basic),
		cmocka_unit_test(test_req_tools),
		cmocka_unit_test(test_req_tool_choice),
		cmocka_unit_test(test_req_merge),
		cmocka_unit_test(test_tool_ids),
		cmocka_unit_test(test_req_images),
		cmocka_unit_test(test_build_non_stream),
		cmocka_unit_test(test_build_stream_token_prefix),
		cmocka_unit_test(test_signing_host_and_region),
		cmocka_unit_test(test_build_failures),
		cmocka_unit_test(test_creds_parse),
		cmocka_unit_test(test_creds_chain),
		cmocka_unit_test(test_decode_golden),
		cmocka_unit_test(test_decode_garbage),
		cmocka_unit_test(test_finish_reasons),
		cmocka_unit_test(test_error_message),
		cmocka_unit_test(test_stream_golden),
		cmocka_unit_test(test_stream_framing_errors),
		cmocka_unit_test(test_ops_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
