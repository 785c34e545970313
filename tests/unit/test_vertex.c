/* test_vertex.c — unit tests for providers/gemini_fmt.c (canon ↔ Gemini
 * generateContent JSON, the streamGenerateContent SSE decoder, error
 * bodies) and providers/vertex.c (URL, headers, credentials).
 *
 * Golden files (tests/unit/golden/vertex/) hold both directions:
 *   req_*.json       the exact GenerateContentRequest body built from a
 *                    canonical request built here;
 *   resp_*.json      a GenerateContentResponse as Vertex sends it, *.expect
 *                    its canonical decoding (one line per field / part);
 *   stream_*.sse     a streamGenerateContent?alt=sse body, *.events the
 *                    canon_ev sequence and the feed/finish results.
 * UMBRA_UPDATE_GOLDEN=1 rewrites the expected files from the output (to be
 * reviewed by hand, never trusted blindly).
 *
 * Every stream golden is also fed cut at every byte boundary and byte by
 * byte: events and results must not depend on how the bytes arrive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "providers/gemini_fmt.c"
#include "providers/vertex.c"

#define GOLDEN_DIR "tests/unit/golden/vertex/"

/* ------------------------------------------------------------------ */
/* golden files                                                        */

#include "golden.h"

/* ------------------------------------------------------------------ */
/* canonical requests built by hand                                    */

#define T(s) ((struct canon_part){ .type = CANON_TEXT, .text = STR(s) })
#define CALL(i, n, a) ((struct canon_part){ .type = CANON_TOOL_CALL, .id = STR(i), .name = STR(n), .args = STR(a) })
#define RESULT(i, n, t) ((struct canon_part){ .type = CANON_TOOL_RESULT, .id = STR(i), .name = STR(n), .text = STR(t) })
#define ERRRESULT(i, t) ((struct canon_part){ .type = CANON_TOOL_RESULT, .id = STR(i), .text = STR(t), .is_error = true })
#define PARTS(...) (struct canon_part[]){ __VA_ARGS__ }, sizeof((struct canon_part[]){ __VA_ARGS__ }) / sizeof(struct canon_part)
#define USER(...) ((struct canon_msg){ CANON_USER, PARTS(__VA_ARGS__) })
#define MODEL(...) ((struct canon_msg){ CANON_ASSISTANT, PARTS(__VA_ARGS__) })
/* The messages live in the calling block (compound literals), so MSGS is
 * a declaration, not a block of its own. */
#define MSGS_CAT2(a, b) a##b
#define MSGS_CAT(a, b) MSGS_CAT2(a, b)
#define MSGS(req, ...)                                                                \
	struct canon_msg MSGS_CAT(msgs_, __LINE__)[] = { __VA_ARGS__ };               \
	(req).msgs = MSGS_CAT(msgs_, __LINE__);                                       \
	(req).n_msgs = UMB_ARRAY_LEN(MSGS_CAT(msgs_, __LINE__))

/* Encode req: the body must be valid JSON and equal the golden file. */
static void expect_encoded(const char *golden, const struct canon_req *req)
{
	struct buf b;
	char why[160] = "";
	buf_init(&b, 0);
	if (gemini_req_encode(req, &b, why, sizeof why))
		fail_msg("encode failed: %s", why);
	assert_int_equal(json_parse(b.p, b.n, NULL, NULL), 0);
	golden_check(golden, buf_str(&b));
	buf_clear(&b);
}

static void test_encode_basic(void **state)
{
	(void)state;
	struct canon_req r = { 0 };
	r.system = STR("Be terse.\nAnswer in \"French\".");
	MSGS(r, USER(T("Hi"), T("")), MODEL(T("Bonjour")), USER(T("caf\xc3\xa9 \xf0\x9f\x98\x80 \x01")));
	r.max_tokens = 256;
	r.has_temperature = true;
	r.temperature = 0.7;
	r.has_top_p = true;
	r.top_p = 0.95;
	r.has_top_k = true;
	r.top_k = 40;
	const char *stops[] = { "END", "", "STOP", "a", "b", "c", "d" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(stops); i++)
		r.stop[r.n_stop++] = str_cstr(stops[i]);
	r.user = STR("end-user-1"); /* Gemini has no such member: not sent */
	expect_encoded("req_basic.json", &r);
}

/* Consecutive turns of one role become one content; a turn that writes
 * nothing (empty text) does not split the turns around it. */
static void test_encode_merges_roles(void **state)
{
	(void)state;
	struct canon_req r = { 0 };
	MSGS(r, USER(T("one")), USER(T("two")), MODEL(T("")), USER(T("three")), MODEL(T("four")),
	     MODEL(T("five")));
	expect_encoded("req_merge.json", &r);
}

/* Tools with schemas Vertex would reject as they are, tool choice, and a
 * whole tool round trip: parallel calls, their results (named, found by
 * id, an error, a JSON object result). */
static void test_encode_tools(void **state)
{
	(void)state;
	struct canon_req r = { 0 };
	static struct canon_tool tools[] = {
		{ STR("get_weather"), STR("Weather for a city."),
		  STR("{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"type\":\"object\","
		      "\"additionalProperties\":false,\"properties\":{"
		      "\"city\":{\"type\":\"string\",\"description\":\"City name\",\"minLength\":1},"
		      "\"unit\":{\"type\":[\"string\",\"null\"],\"enum\":[\"C\",\"F\",null]},"
		      "\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":10,\"exclusiveMaximum\":11},"
		      "\"when\":{\"type\":\"string\",\"format\":\"date-time\"},"
		      "\"site\":{\"type\":\"string\",\"format\":\"uri\"},"
		      "\"level\":{\"enum\":[1,2,3]},"
		      "\"kind\":{\"const\":\"daily\"},"
		      "\"loc\":{\"$ref\":\"#/$defs/Loc\",\"description\":\"Where\"},"
		      "\"either\":{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"number\"}]},"
		      "\"multi\":{\"type\":[\"string\",\"integer\"]},"
		      "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":0,\"uniqueItems\":true}},"
		      "\"required\":[\"city\",\"ghost\"],"
		      "\"$defs\":{\"Loc\":{\"type\":\"object\",\"properties\":{\"lat\":{\"type\":\"number\"},"
		      "\"lon\":{\"type\":\"number\"}},\"required\":[\"lat\",\"lon\"],\"additionalProperties\":false}}}") },
		{ STR("now"), STR(""), STR("{\"type\":\"object\",\"properties\":{}}") },
		{ STR("noop"), STR("No parameters at all."), STR("{}") },
	};
	r.tools = tools;
	r.n_tools = UMB_ARRAY_LEN(tools);
	r.tool_choice = CANON_TC_TOOL;
	r.tool_choice_name = STR("get_weather");
	MSGS(r, USER(T("Weather in Paris and Rome?")),
	     MODEL(T("Checking."), CALL("call_a", "get_weather", "{\"city\":\"Paris\"}"),
		   CALL("call_b", "get_weather", "{\"city\": \"Rome\"}"), CALL("call_c", "now", "not json")),
	     USER(RESULT("call_a", "get_weather", "18C and sunny"), RESULT("call_b", "", "{\"temp\":21}"),
		  ERRRESULT("call_c", "clock unavailable")),
	     MODEL(T("Paris 18C, Rome 21C.")));
	expect_encoded("req_tools.json", &r);
}

static void test_encode_tool_choice_modes(void **state)
{
	(void)state;
	static struct canon_tool tool = { STR("f"), STR(""), STR("{\"type\":\"object\",\"properties\":{\"a\":{}}}") };
	static const struct {
		enum canon_tool_choice tc;
		const char *want; /* NULL: no toolConfig at all */
	} cases[] = {
		{ CANON_TC_UNSET, NULL },
		{ CANON_TC_AUTO, ",\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"AUTO\"}}" },
		{ CANON_TC_NONE, ",\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"NONE\"}}" },
		{ CANON_TC_ANY, ",\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"ANY\"}}" },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(cases); i++) {
		struct canon_req r = { 0 };
		MSGS(r, USER(T("x")));
		r.tools = &tool;
		r.n_tools = 1;
		r.tool_choice = cases[i].tc;
		struct buf b;
		char why[64];
		buf_init(&b, 0);
		assert_int_equal(gemini_req_encode(&r, &b, why, sizeof why), 0);
		if (cases[i].want)
			assert_non_null(strstr(b.p, cases[i].want));
		else
			assert_null(strstr(b.p, "toolConfig"));
		/* parameters of an untyped property become the empty schema */
		assert_non_null(strstr(b.p, "\"parameters\":{\"type\":\"OBJECT\",\"properties\":{\"a\":{}}}"));
		buf_clear(&b);
	}
	/* tool_choice without tools: nothing to configure */
	struct canon_req r = { 0 };
	MSGS(r, USER(T("x")));
	r.tool_choice = CANON_TC_ANY;
	struct buf b;
	char why[64];
	buf_init(&b, 0);
	assert_int_equal(gemini_req_encode(&r, &b, why, sizeof why), 0);
	assert_string_equal(b.p, "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"x\"}]}]}");
	buf_clear(&b);
}

/* A client that rewrote or lost the call ids: results are matched to the
 * calls of the model turn before them by position. */
static void test_encode_result_names_by_position(void **state)
{
	(void)state;
	struct canon_req r = { 0 };
	MSGS(r, USER(T("go")), MODEL(CALL("x1", "alpha", "{}"), CALL("x2", "beta", "{\"k\":1}")),
	     USER(RESULT("other-1", "", "A"), RESULT("other-2", "", "B")));
	expect_encoded("req_positional.json", &r);
}

static void test_encode_result_without_call_fails(void **state)
{
	(void)state;
	struct canon_req r = { 0 };
	MSGS(r, USER(T("go")), USER(RESULT("orphan", "", "A")));
	struct buf b;
	char why[160] = "";
	buf_init(&b, 0);
	assert_int_equal(gemini_req_encode(&r, &b, why, sizeof why), UMB_ERR);
	assert_non_null(strstr(why, "orphan"));
	assert_int_equal(b.n, 0); /* never a partial document */
	buf_clear(&b);
}

static void test_encode_images(void **state)
{
	(void)state;
	struct canon_req r = { 0 };
	MSGS(r, USER(T("What is in these?"),
		     ((struct canon_part){ .type = CANON_IMAGE, .media_type = STR("image/webp"), .data = STR("UklGRgAAAA==") }),
		     ((struct canon_part){ .type = CANON_IMAGE, .data = STR("iVBORw0KGgoAAAA=") }),
		     ((struct canon_part){ .type = CANON_IMAGE, .url = STR("gs://bucket/scan.PDF?x=1") }),
		     ((struct canon_part){ .type = CANON_IMAGE, .url = STR("https://example.com/cat") }),
		     ((struct canon_part){ .type = CANON_IMAGE, .url = STR("data:image/gif;base64,R0lGODlh") })));
	expect_encoded("req_images.json", &r);
}

/* ------------------------------------------------------------------ */
/* schemas                                                             */

static const char *schema_out(const char *in, int *rc)
{
	static struct buf b;
	buf_clear(&b);
	buf_init(&b, 0);
	*rc = gemini_schema_write(str_cstr(in), &b);
	if (*rc == 0)
		assert_int_equal(json_parse(b.p, b.n, NULL, NULL), 0);
	return b.p ? b.p : "";
}

static void test_schema_edges(void **state)
{
	(void)state;
	int rc;
	/* no parameters: the member is omitted (UMB_AGAIN) */
	const char *none[] = { "", "{}", "{\"type\":\"object\"}", "{\"type\":\"object\",\"properties\":{}}",
			       "not json", "[1]", "true" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(none); i++) {
		schema_out(none[i], &rc);
		assert_int_equal(rc, UMB_AGAIN);
	}
	/* a recursive $ref (a tree) is cut, not followed forever */
	const char *tree = "{\"$ref\":\"#/$defs/Node\",\"$defs\":{\"Node\":{\"type\":\"object\","
			   "\"properties\":{\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/Node\"}}}}}}";
	const char *out = schema_out(tree, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "\"kids\":{\"type\":\"ARRAY\",\"items\":{\"type\":\"OBJECT\""));
	assert_null(strstr(out, "$ref"));
	/* references that fan out (each level uses the next twice) stop being
	 * expanded past a size budget instead of growing 2^24-fold */
	struct buf fan;
	buf_init(&fan, 0);
	buf_append_lit(&fan, "{\"$ref\":\"#/$defs/D0\",\"$defs\":{");
	for (int i = 0; i < 24; i++)
		buf_printf(&fan, "%s\"D%d\":{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/D%d\"},"
				 "\"b\":{\"$ref\":\"#/$defs/D%d\"}}}", i ? "," : "", i, i + 1, i + 1);
	buf_append_lit(&fan, ",\"D24\":{\"type\":\"string\"}}}");
	out = schema_out(fan.p, &rc);
	assert_int_equal(rc, 0);
	assert_true(strlen(out) < 4 * fan.n + 65536 + 4096);
	buf_clear(&fan);
	/* an unresolvable $ref becomes the empty schema; definitions/ works */
	out = schema_out("{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/nowhere\"},"
			 "\"b\":{\"$ref\":\"#/definitions/B\"}},\"definitions\":{\"B\":{\"type\":\"boolean\"}}}",
			 &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "{\"type\":\"OBJECT\",\"properties\":{\"a\":{},\"b\":{\"type\":\"BOOLEAN\"}}}");
	/* upper-case type names pass; untyped properties and items are typed */
	out = schema_out("{\"properties\":{\"x\":{\"type\":\"NUMBER\",\"format\":\"float\"},"
			 "\"y\":{\"items\":{\"type\":\"null\"}}},\"propertyOrdering\":[\"y\",\"x\",\"z\"]}",
			 &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "{\"type\":\"OBJECT\",\"properties\":{\"x\":{\"type\":\"NUMBER\",\"format\":\"float\"},"
				 "\"y\":{\"type\":\"ARRAY\",\"items\":{\"nullable\":true}}},"
				 "\"propertyOrdering\":[\"y\",\"x\"]}");
	/* an anyOf root counts as parameters */
	out = schema_out("{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}}},true]}", &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "{\"anyOf\":[{\"type\":\"OBJECT\",\"properties\":{\"a\":{\"type\":\"STRING\"}}},{}]}");
}

/* ------------------------------------------------------------------ */
/* answers                                                             */

static const char *finish_name(enum canon_finish f)
{
	static const char *const names[] = { "none", "stop", "length", "tool_calls",
					     "stop_sequence", "content_filter" };
	return (size_t)f < UMB_ARRAY_LEN(names) ? names[f] : "?";
}

static void dump_str(struct buf *o, const char *label, struct str s)
{
	buf_printf(o, "%s ", label);
	json_write_str(o, s);
	buf_append_lit(o, "\n");
}

static void dump_usage(struct buf *o, const struct canon_usage *u)
{
	buf_printf(o, "usage seen=%d prompt=%llu completion=%llu cached=%llu cache_write=%llu\n",
		   u->seen, (unsigned long long)u->prompt_tokens,
		   (unsigned long long)u->completion_tokens,
		   (unsigned long long)u->cached_prompt_tokens,
		   (unsigned long long)u->cache_write_tokens);
}

static void dump_resp(struct buf *o, const struct canon_resp *r)
{
	dump_str(o, "id", r->id);
	dump_str(o, "model", r->model);
	for (size_t i = 0; i < r->n_parts; i++) {
		const struct canon_part *p = &r->parts[i];
		if (p->type == CANON_TEXT) {
			dump_str(o, "text", p->text);
		} else {
			buf_append_lit(o, "call ");
			json_write_str(o, p->id);
			buf_append_lit(o, " ");
			json_write_str(o, p->name);
			buf_append_lit(o, " ");
			buf_append_str(o, p->args);
			buf_append_lit(o, "\n");
		}
	}
	buf_printf(o, "finish %s\n", finish_name(r->finish));
	dump_usage(o, &r->usage);
}

static void expect_decoded(const char *in, const char *exp)
{
	size_t n;
	char *body = golden_slurp(in, &n);
	struct arena *a = arena_new(0);
	struct canon_resp r;
	assert_int_equal(gemini_resp_decode(a, str_make(body, n), &r), 0);
	struct buf o;
	buf_init(&o, 0);
	dump_resp(&o, &r);
	golden_check(exp, buf_str(&o));
	buf_clear(&o);
	arena_free(a);
	free(body);
}

static void test_decode_goldens(void **state)
{
	(void)state;
	expect_decoded("resp_text.json", "resp_text.expect");
	expect_decoded("resp_tools.json", "resp_tools.expect");
	expect_decoded("resp_length.json", "resp_length.expect");
	expect_decoded("resp_safety.json", "resp_safety.expect");
	expect_decoded("resp_blocked.json", "resp_blocked.expect");
	expect_decoded("resp_thoughts.json", "resp_thoughts.expect");
}

static void test_decode_garbage(void **state)
{
	(void)state;
	const char *bad[] = {
		"", "<html>", "[]", "{}", "\"x\"", "{\"candidates\":{}}",
		"{\"error\":{\"code\":500,\"message\":\"Internal error encountered.\",\"status\":\"INTERNAL\"}}",
		"{\"candidates\":[]", /* truncated */
	};
	struct arena *a = arena_new(0);
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		struct canon_resp r;
		if (gemini_resp_decode(a, str_cstr(bad[i]), &r) != UMB_ERR)
			fail_msg("accepted %s", bad[i]);
	}
	/* odd but valid: no parts, unknown members, counts as strings */
	struct canon_resp r;
	assert_int_equal(gemini_resp_decode(a, STR("{\"candidates\":[{\"finishReason\":\"OTHER\",\"x\":1}],"
						   "\"usageMetadata\":{\"promptTokenCount\":\"5\"},\"new\":[]}"),
					 &r),
			 0);
	assert_int_equal(r.n_parts, 0);
	assert_int_equal(r.finish, CANON_FIN_STOP);
	assert_true(r.usage.seen);
	assert_int_equal(r.usage.prompt_tokens, 5);
	arena_free(a);
}

static void test_call_ids(void **state)
{
	(void)state;
	char a[GEMINI_ID_MAX], b[GEMINI_ID_MAX];
	gemini_call_id(STR("tTCw+ac/uEB=MvnitYP06qsgQY"), 3, a);
	assert_string_equal(a, "call_tTCwacuEBMvnitYP06qsgQY_3");
	/* no responseId: random, never the same twice */
	gemini_call_id(STR_NULL, 0, a);
	gemini_call_id(STR_NULL, 0, b);
	assert_int_equal(strncmp(a, "call_", 5), 0);
	assert_int_equal(strlen(a), strlen("call_") + 24 + 2);
	assert_string_not_equal(a, b);
	/* a very long id is cut, the result always fits */
	char longid[300];
	memset(longid, 'x', sizeof longid);
	gemini_call_id(str_make(longid, sizeof longid), 123456, a);
	assert_true(strlen(a) < GEMINI_ID_MAX);
	assert_non_null(strstr(a, "_123456"));
}

/* ------------------------------------------------------------------ */
/* streams                                                             */

struct ev_log {
	struct buf b;
	int stop_at;  /* return 7 from the sink at this event (1-based), 0: never */
	int count;
};

static int log_ev(void *ctx, const struct canon_ev *ev)
{
	struct ev_log *l = ctx;
	struct buf *o = &l->b;
	static const char *const names[] = { "START", "TEXT", "TOOL_START", "TOOL_ARGS",
					     "FINISH", "USAGE", "END" };
	buf_printf(o, "%s", names[ev->type]);
	switch (ev->type) {
	case CEV_START:
		buf_append_lit(o, " id=");
		json_write_str(o, ev->id);
		buf_append_lit(o, " model=");
		json_write_str(o, ev->model);
		break;
	case CEV_TEXT:
		buf_append_lit(o, " ");
		json_write_str(o, ev->text);
		break;
	case CEV_TOOL_START:
		buf_printf(o, " %d id=", ev->index);
		json_write_str(o, ev->id);
		buf_append_lit(o, " name=");
		json_write_str(o, ev->name);
		break;
	case CEV_TOOL_ARGS:
		buf_printf(o, " %d %.*s", ev->index, STR_FMT(ev->text));
		break;
	case CEV_FINISH:
		buf_printf(o, " %s", finish_name(ev->finish));
		break;
	case CEV_USAGE:
		buf_printf(o, " prompt=%llu completion=%llu cached=%llu",
			   (unsigned long long)ev->usage.prompt_tokens,
			   (unsigned long long)ev->usage.completion_tokens,
			   (unsigned long long)ev->usage.cached_prompt_tokens);
		break;
	case CEV_END:
		break;
	}
	buf_append_lit(o, "\n");
	return ++l->count == l->stop_at ? 7 : 0;
}

/* Feed `in` cut at the given points (sorted offsets; byte by byte when
 * bytewise), then finish; log every event and both results. */
static void run_stream(const char *in, size_t n, const size_t *cuts, size_t n_cuts, bool bytewise,
		       int stop_at, struct ev_log *l)
{
	struct gemini_stream_dec d;
	struct canon_sink sink = { log_ev, l };
	buf_init(&l->b, 0);
	l->count = 0;
	l->stop_at = stop_at;
	gemini_stream_dec_init(&d);
	int rc = 0;
	if (bytewise) {
		char *one = malloc(1); /* a view kept into an old feed reads the wrong byte */
		for (size_t i = 0; i < n && !rc; i++) {
			*one = in[i];
			rc = gemini_stream_dec_feed(&d, one, 1, &sink);
		}
		free(one);
	} else {
		size_t pos = 0;
		for (size_t i = 0; i <= n_cuts && !rc; i++) {
			size_t end = i < n_cuts ? cuts[i] : n;
			char *piece = malloc(end - pos + 1);
			memcpy(piece, in + pos, end - pos);
			rc = gemini_stream_dec_feed(&d, piece, end - pos, &sink);
			free(piece);
			pos = end;
		}
	}
	buf_printf(&l->b, "feed %d\n", rc);
	if (!rc)
		buf_printf(&l->b, "finish %d\n", gemini_stream_dec_finish(&d, &sink));
	gemini_stream_dec_clear(&d);
}

static void expect_stream(const char *in_name, const char *exp_name)
{
	size_t n;
	char *in = golden_slurp(in_name, &n);
	struct ev_log whole, other;
	run_stream(in, n, NULL, 0, false, 0, &whole);
	golden_check(exp_name, buf_str(&whole.b));
	for (size_t cut = 0; cut <= n; cut++) {
		size_t cuts[1] = { cut };
		run_stream(in, n, cuts, 1, false, 0, &other);
		if (!str_eq(buf_str(&whole.b), buf_str(&other.b)))
			fail_msg("%s cut at %zu:\n%s\nvs whole:\n%s", in_name, cut, other.b.p, whole.b.p);
		buf_clear(&other.b);
	}
	run_stream(in, n, NULL, 0, true, 0, &other);
	assert_true(str_eq(buf_str(&whole.b), buf_str(&other.b)));
	buf_clear(&other.b);
	buf_clear(&whole.b);
	free(in);
}

static void test_stream_goldens(void **state)
{
	(void)state;
	expect_stream("stream_text.sse", "stream_text.events");      /* CRLF framing, UTF-8 */
	expect_stream("stream_tools.sse", "stream_tools.events");    /* text, parallel calls */
	expect_stream("stream_cut.sse", "stream_cut.events");        /* no finishReason */
	expect_stream("stream_error.sse", "stream_error.events");    /* error object mid-stream */
	expect_stream("stream_garbage.sse", "stream_garbage.events");/* data that is not JSON */
	expect_stream("stream_no_blank.sse", "stream_no_blank.events"); /* last event unterminated */
	expect_stream("stream_length.sse", "stream_length.events");  /* MAX_TOKENS, usage-only chunk */
}

/* A sink's nonzero answer stops the decoder and comes back as it is. */
static void test_stream_sink_stop(void **state)
{
	(void)state;
	size_t n;
	char *in = golden_slurp("stream_text.sse", &n);
	struct ev_log l;
	run_stream(in, n, NULL, 0, false, 2, &l);
	assert_string_equal(l.b.p, "START id=\"resp-s1\" model=\"gemini-2.0-flash-001\"\n"
				   "TEXT \"Hel\"\n"
				   "feed 7\n");
	buf_clear(&l.b);
	free(in);
}

/* Later feeds after a failure keep failing; finish too. */
static void test_stream_sticky(void **state)
{
	(void)state;
	struct gemini_stream_dec d;
	struct ev_log l = { 0 };
	struct canon_sink sink = { log_ev, &l };
	buf_init(&l.b, 0);
	gemini_stream_dec_init(&d);
	assert_int_equal(gemini_stream_dec_feed(&d, "data: nope\n\n", 12, &sink), UMB_ERR);
	const char *ok = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},\"finishReason\":\"STOP\"}]}\n\n";
	assert_int_equal(gemini_stream_dec_feed(&d, ok, strlen(ok), &sink), UMB_ERR);
	assert_int_equal(gemini_stream_dec_finish(&d, &sink), UMB_ERR);
	assert_int_equal(l.b.n, 0);
	gemini_stream_dec_clear(&d);
	buf_clear(&l.b);
}

/* ------------------------------------------------------------------ */
/* errors                                                              */

static void test_error_message(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	const char *m = gemini_error_message(
		a, STR("{\"error\":{\"code\":429,\"message\":\"Resource exhausted. Please try again later.\","
		       "\"status\":\"RESOURCE_EXHAUSTED\"}}"));
	assert_string_equal(m, "RESOURCE_EXHAUSTED: Resource exhausted. Please try again later.");
	m = gemini_error_message(a, STR("[{\"error\":{\"code\":400,\"message\":\"bad \\\"x\\\"\",\"status\":\"INVALID_ARGUMENT\",\"details\":[]}}]"));
	assert_string_equal(m, "INVALID_ARGUMENT: bad \"x\"");
	m = gemini_error_message(a, STR("{\"error\":{\"code\":500,\"message\":\"Internal error encountered.\"}}"));
	assert_string_equal(m, "Internal error encountered.");
	assert_null(gemini_error_message(a, STR("{\"error\":\"invalid_grant\"}")));
	assert_null(gemini_error_message(a, STR("<html>502</html>")));
	assert_null(gemini_error_message(a, STR("{\"candidates\":[]}")));
	assert_null(gemini_error_message(a, STR("[]")));
	arena_free(a);
}

/* ------------------------------------------------------------------ */
/* vertex.c: build                                                     */

static struct cfg_header prov_headers[] = { { "X-Prov", "pv" }, { "X-Both", "from-prov" } };
static struct cfg_header model_headers[] = { { "X-Both", "from-model" } };
static struct cfg_provider prov_static = {
	.name = "vx", .type = PROVIDER_VERTEX, .project = "my-proj", .location = "europe-west4",
	.access_token = "ya29.static-token", .headers = prov_headers, .n_headers = 2,
	.timeouts = { .connect_ms = 200 },
};
static struct cfg_model m_gem = { .name = "gem", .provider = &prov_static,
				  .upstream_model = "gemini-2.0-flash-001", .headers = model_headers,
				  .n_headers = 1 };
static struct cfg_model m_odd = { .name = "odd", .provider = &prov_static,
				  .upstream_model = "tuned model@001/x" };
static struct cfg_endpoint ep_pfx = { .name = "e", .origin = "http://127.0.0.1:9/pfx" };

struct built {
	struct arena *a;
	struct canon_req req;
	struct upstream_call call;
	struct provider_request out;
	int rc;
};

static struct canon_part hello_part = { .type = CANON_TEXT, .text = { "hello", 5 } };
static struct canon_msg hello_msg = { CANON_USER, &hello_part, 1 };

static void build(struct built *b, const struct cfg_model *m, bool stream)
{
	memset(b, 0, sizeof *b);
	b->a = arena_new(0);
	b->req.msgs = &hello_msg;
	b->req.n_msgs = 1;
	b->call.op = UPSTREAM_CHAT;
	b->call.model = m;
	b->call.requested_model = str_cstr(m->name);
	b->call.stream = stream;
	b->call.canon = &b->req;
	b->rc = provider_vertex_ops()->build(b->a, &b->call, m, &ep_pfx, "req-42", &b->out);
	if (!b->rc)
		provider_body_join(b->a, &b->out);
}

static void test_build_request(void **state)
{
	(void)state;
	const struct provider_ops *ops = provider_vertex_ops();
	assert_string_equal(ops->name, "vertex");
	assert_int_equal(ops->native, -1);
	assert_false(ops->embeddings);
	assert_null(ops->health_path);

	struct built b;
	build(&b, &m_gem, false);
	assert_int_equal(b.rc, 0);
	assert_string_equal(b.out.url, "http://127.0.0.1:9/pfx/v1/projects/my-proj/locations/europe-west4"
				       "/publishers/google/models/gemini-2.0-flash-001:generateContent");
	const char *want[] = { "Content-Type: application/json", "Expect:", "x-request-id: req-42",
			       "Authorization: Bearer ya29.static-token", "X-Prov: pv",
			       "X-Both: from-model" };
	assert_int_equal(b.out.n_headers, UMB_ARRAY_LEN(want));
	for (size_t i = 0; i < UMB_ARRAY_LEN(want); i++)
		assert_string_equal(b.out.headers[i], want[i]);
	assert_true(str_eq(b.out.body, STR("{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hello\"}]}]}")));
	arena_free(b.a);

	build(&b, &m_odd, true);
	assert_int_equal(b.rc, 0);
	assert_string_equal(b.out.url, "http://127.0.0.1:9/pfx/v1/projects/my-proj/locations/europe-west4"
				       "/publishers/google/models/tuned%20model@001%2Fx:streamGenerateContent?alt=sse");
	arena_free(b.a);
}

static void test_build_refuses(void **state)
{
	(void)state;
	struct built b;
	/* no project */
	struct cfg_provider p = prov_static;
	p.project = NULL;
	struct cfg_model m = { .name = "m", .provider = &p };
	build(&b, &m, false);
	assert_int_equal(b.rc, UMB_ERR);
	arena_free(b.a);
	/* no credentials at all */
	p = prov_static;
	p.access_token = NULL;
	build(&b, &m, false);
	assert_int_equal(b.rc, UMB_ERR);
	arena_free(b.a);
	/* embeddings, or no canonical request */
	m.provider = &prov_static;
	memset(&b, 0, sizeof b);
	b.a = arena_new(0);
	b.call.op = UPSTREAM_EMBEDDINGS;
	b.call.model = &m;
	assert_int_equal(provider_vertex_ops()->build(b.a, &b.call, &m, &ep_pfx, "r", &b.out), UMB_ERR);
	b.call.op = UPSTREAM_CHAT;
	assert_int_equal(provider_vertex_ops()->build(b.a, &b.call, &m, &ep_pfx, "r", &b.out), UMB_ERR);
	arena_free(b.a);
	/* a tool result that answers nothing cannot be encoded */
	memset(&b, 0, sizeof b);
	b.a = arena_new(0);
	MSGS(b.req, USER(RESULT("nope", "", "x")));
	b.call.op = UPSTREAM_CHAT;
	b.call.canon = &b.req;
	assert_int_equal(provider_vertex_ops()->build(b.a, &b.call, &m, &ep_pfx, "r", &b.out), UMB_ERR);
	arena_free(b.a);
}

/* credentials_file: the token comes from the cache (its exchange faked
 * here; test_gcp_auth.c covers the real one). */
static int fetch_calls;
static int fake_fetch(void *ctx, const char *file, const char *ca_file, int timeout_ms, int64_t now_s,
		      struct buf *token, int64_t *expires_in, char *why, size_t why_n)
{
	(void)ctx, (void)ca_file, (void)now_s;
	fetch_calls++;
	assert_int_equal(timeout_ms, 200); /* the provider's connect timeout */
	if (strstr(file, "broken")) {
		snprintf(why, why_n, "token endpoint answered 400 invalid_grant");
		return UMB_ERR;
	}
	*expires_in = 3599;
	return buf_append_lit(token, "ya29.from-sa");
}

static void test_build_service_account(void **state)
{
	(void)state;
	struct gcp_auth_hooks h = { .fetch = fake_fetch };
	gcp_auth_set_hooks(&h);
	struct cfg_provider p = prov_static;
	p.access_token = NULL;
	p.credentials_file = "/etc/umbra/sa.json";
	struct cfg_model m = { .name = "m", .provider = &p, .upstream_model = "gemini-pro" };
	struct built b;
	build(&b, &m, false);
	assert_int_equal(b.rc, 0);
	assert_string_equal(b.out.headers[3], "Authorization: Bearer ya29.from-sa");
	arena_free(b.a);
	build(&b, &m, true); /* cached: no second exchange */
	assert_int_equal(b.rc, 0);
	assert_int_equal(fetch_calls, 1);
	arena_free(b.a);
	/* a key file whose exchange fails: the attempt fails, with no wait
	 * beyond the connect timeout */
	p.credentials_file = "/etc/umbra/broken.json";
	uint64_t t0 = clock_mono_ns();
	build(&b, &m, false);
	assert_int_equal(b.rc, UMB_ERR);
	assert_true(clock_mono_ns() - t0 < 1000000000ull);
	arena_free(b.a);
	gcp_auth_shutdown();
	gcp_auth_set_hooks(NULL);
}

/* Gemini 3 wants each functionCall's thoughtSignature back: it travels
 * in the call id the client echoes, and the encoder puts it back beside
 * the call; a call without one (another model's) goes without. */
static void test_thought_signature_round_trip(void **state)
{
	(void)state;
	struct arena *a = arena_new(0);
	struct canon_resp r;
	static const char answer[] =
		"{\"responseId\":\"r1\",\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":["
		"{\"functionCall\":{\"name\":\"now\",\"args\":{}},\"thoughtSignature\":\"Ab+/c9==\"},"
		"{\"functionCall\":{\"name\":\"then\",\"args\":{}}}]},\"finishReason\":\"STOP\"}]}";
	assert_int_equal(gemini_resp_decode(a, STR(answer), &r), UMB_OK);
	assert_int_equal(r.n_parts, 2);
	assert_true(str_eq(r.parts[0].id, STR("call_r1_0__ts_Ab-_c9")));
	assert_true(str_eq(r.parts[1].id, STR("call_r1_1")));
	struct canon_part result = { .type = CANON_TOOL_RESULT, .id = r.parts[0].id, .name = STR("now"),
				     .text = STR("12:00") };
	struct canon_msg msgs[3] = {
		{ .role = CANON_USER, .parts = &(struct canon_part){ .type = CANON_TEXT, .text = STR("t?") },
		  .n_parts = 1 },
		{ .role = CANON_ASSISTANT, .parts = r.parts, .n_parts = 2 },
		{ .role = CANON_USER, .parts = &result, .n_parts = 1 },
	};
	struct canon_req req = { .msgs = msgs, .n_msgs = 3 };
	struct buf out;
	buf_init(&out, 0);
	char why[160];
	assert_int_equal(gemini_req_encode(&req, &out, why, sizeof why), UMB_OK);
	assert_non_null(strstr(out.p, "{\"functionCall\":{\"name\":\"now\",\"args\":{}},"
				      "\"thoughtSignature\":\"Ab+/c9==\"}"));
	assert_non_null(strstr(out.p, "{\"functionCall\":{\"name\":\"then\",\"args\":{}}}"));
	buf_clear(&out);
	arena_free(a);
}

int main(void)
{
	log_min_level = LOG_ERROR + 1; /* the refusals above log by design */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_basic),
		cmocka_unit_test(test_encode_merges_roles),
		cmocka_unit_test(test_encode_tools),
		cmocka_unit_test(test_encode_tool_choice_modes),
		cmocka_unit_test(test_encode_result_names_by_position),
		cmocka_unit_test(test_encode_result_without_call_fails),
		cmocka_unit_test(test_encode_images),
		cmocka_unit_test(test_schema_edges),
		cmocka_unit_test(test_decode_goldens),
		cmocka_unit_test(test_thought_signature_round_trip),
		cmocka_unit_test(test_decode_garbage),
		cmocka_unit_test(test_call_ids),
		cmocka_unit_test(test_stream_goldens),
		cmocka_unit_test(test_stream_sink_stop),
		cmocka_unit_test(test_stream_sticky),
		cmocka_unit_test(test_error_message),
		cmocka_unit_test(test_build_request),
		cmocka_unit_test(test_build_refuses),
		cmocka_unit_test(test_build_service_account),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
