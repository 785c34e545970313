/* test_openai_fmt.c — the OpenAI format ↔ canonical translators
 * (providers/openai_fmt.c) against golden files in tests/unit/golden/openai/.
 *
 * Golden outputs were written once with UMBRA_UPDATE_GOLDEN=1 (golden.h)
 * and read by hand; a test fails on any difference. Timestamps ("created") and random
 * ids are normalised before comparing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/json.h"
#include "providers/openai_fmt.h"

#define GOLDEN_DIR "tests/unit/golden/openai/"
#include "golden.h"

/* "created":DIGITS → "created":0 so outputs are stable. */
static void normalise(struct buf *b)
{
	static const char key[] = "\"created\":";
	for (char *p = b->p; p && (p = strstr(p, key));) {
		char *d = p + sizeof key - 1, *e = d;
		while (*e >= '0' && *e <= '9')
			e++;
		if (e > d + 1) {
			memmove(d + 1, e, (size_t)(b->p + b->n - e) + 1);
			b->n -= (size_t)(e - d - 1);
		}
		*d = '0';
		p = d;
	}
}

/* ---- canonical events as text, one line each ---- */

static int record(void *ctx, const struct canon_ev *ev)
{
	struct buf *b = ctx;
	static const char *const names[] = { "START", "TEXT", "TOOL_START", "TOOL_ARGS",
					     "FINISH", "USAGE", "END" };
	buf_append_cstr(b, names[ev->type]);
	switch (ev->type) {
	case CEV_START:
		buf_printf(b, " id=%.*s model=%.*s", STR_FMT(ev->id), STR_FMT(ev->model));
		break;
	case CEV_TEXT:
		buf_append_lit(b, " ");
		json_write_str(b, ev->text);
		break;
	case CEV_TOOL_START:
		buf_printf(b, " %d id=%.*s name=%.*s", ev->index, STR_FMT(ev->id), STR_FMT(ev->name));
		break;
	case CEV_TOOL_ARGS:
		buf_printf(b, " %d ", ev->index);
		json_write_str(b, ev->text);
		break;
	case CEV_FINISH:
		buf_printf(b, " %s", canon_finish_openai(ev->finish));
		break;
	case CEV_USAGE:
		buf_printf(b, " prompt=%llu completion=%llu cached=%llu",
			   (unsigned long long)ev->usage.prompt_tokens,
			   (unsigned long long)ev->usage.completion_tokens,
			   (unsigned long long)ev->usage.cached_prompt_tokens);
		break;
	case CEV_END:
		break;
	}
	buf_append_lit(b, "\n");
	return 0;
}

/* Decode a whole stream cut at `cut` (and, when cut2 > cut, again there). */
static int decode_stream(const char *s, size_t n, size_t cut, size_t cut2, struct buf *out)
{
	struct openai_stream_dec d;
	struct canon_sink sink = { record, out };
	openai_stream_dec_init(&d);
	int rc = openai_stream_dec_feed(&d, s, cut, &sink);
	if (!rc && cut2 > cut)
		rc = openai_stream_dec_feed(&d, s + cut, cut2 - cut, &sink);
	size_t from = cut2 > cut ? cut2 : cut;
	if (!rc)
		rc = openai_stream_dec_feed(&d, s + from, n - from, &sink);
	if (!rc)
		rc = openai_stream_dec_finish(&d, &sink);
	openai_stream_dec_clear(&d);
	return rc;
}

/* ---- requests ---- */

static void test_request_both_ways(void **state)
{
	(void)state;
	size_t n;
	char *body = golden_slurp("req_tools.json", &n);
	struct arena *a = arena_new(0);
	struct canon_req c;
	char why[256] = "";
	assert_int_equal(openai_req_decode(a, str_make(body, n), &c, why, sizeof why), UMB_OK);
	assert_true(str_eq(c.system, STR("You are terse.\n\nUse tools.")));
	assert_int_equal(c.n_msgs, 4);
	/* the user turn: text and an inline image */
	assert_int_equal(c.msgs[0].n_parts, 2);
	assert_true(str_eq(c.msgs[0].parts[0].text, STR("Weather in Paris and Z\xc3\xbcrich? \xe2\x98\x83")));
	assert_int_equal(c.msgs[0].parts[1].type, CANON_IMAGE);
	assert_true(str_eq(c.msgs[0].parts[1].media_type, STR("image/png")));
	assert_true(str_eq(c.msgs[0].parts[1].data, STR("iVBORw0KGgo=")));
	/* two parallel calls, then both results in ONE user turn, ids kept */
	assert_int_equal(c.msgs[1].role, CANON_ASSISTANT);
	assert_int_equal(c.msgs[1].n_parts, 2);
	assert_true(str_eq(c.msgs[1].parts[1].args, STR("{\"city\":\"Z\xc3\xbcrich\"}")));
	assert_int_equal(c.msgs[2].role, CANON_USER);
	assert_int_equal(c.msgs[2].n_parts, 2);
	assert_int_equal(c.msgs[2].parts[0].type, CANON_TOOL_RESULT);
	assert_true(str_eq(c.msgs[2].parts[0].id, STR("call_1")));
	assert_true(str_eq(c.msgs[2].parts[1].id, STR("call_2")));
	assert_true(str_eq(c.msgs[2].parts[1].text, STR("12C rain")));
	assert_true(str_eq(c.msgs[2].parts[1].name, STR("get_weather"))); /* filled from the call */
	assert_int_equal(c.tool_choice, CANON_TC_ANY);
	assert_true(c.no_parallel_tools);
	assert_int_equal(c.max_tokens, 300);
	assert_int_equal(c.n_stop, 2);
	assert_true(c.stream);
	assert_false(c.include_usage);
	assert_true(str_eq(c.user, STR("u-42")));

	/* from the members the ingress kept: the same request */
	struct json_member mem[32];
	size_t n_mem;
	struct canon_req cm;
	assert_int_equal(json_parse_top(body, n, mem, 32, &n_mem, NULL, NULL), UMB_OK);
	assert_int_equal(openai_req_decode_members(a, mem, n_mem, &cm, why, sizeof why), UMB_OK);
	assert_int_equal(cm.n_msgs, c.n_msgs);
	assert_true(str_eq(cm.system, c.system));
	assert_int_equal(cm.max_tokens, c.max_tokens);
	assert_int_equal(cm.msgs[2].n_parts, 2);

	struct buf out;
	buf_init(&out, 0);
	assert_int_equal(openai_req_encode(&c, STR("upstream-model"), &out), UMB_OK);
	assert_int_equal(json_parse(out.p, out.n, NULL, NULL), UMB_OK);
	golden_check("req_tools.out.json", buf_str(&out));
	buf_clear(&out);
	arena_free(a);
	free(body);
}

static void test_request_refusals(void **state)
{
	(void)state;
	static const struct {
		const char *body, *why;
	} cases[] = {
		{ "[]", "request body must be a JSON object" },
		{ "{\"messages\":{}}", "'messages' must be an array" },
		{ "{\"messages\":[]}", "'messages' must contain a user message" },
		{ "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", "messages[0].role" },
		{ "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "tool_call_id" },
		{ "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}",
		  "not supported" },
		{ "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":1}]}]}",
		  "tool_calls[0]" },
		{ "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":-3}", "max_tokens" },
		{ "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"function\":"
		  "{\"name\":\"f\",\"arguments\":\"[1,2]\"}}]}]}", "function.arguments must be" },
		{ "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"maybe\"}",
		  "tool_choice" },
		{ "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}",
		  "tools[0]" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct arena *a = arena_new(0);
		struct canon_req c;
		char why[256] = "";
		assert_int_equal(openai_req_decode(a, str_cstr(cases[i].body), &c, why, sizeof why),
				 UMB_ERR);
		if (!strstr(why, cases[i].why)) {
			fprintf(stderr, "case %zu: %s\n", i, why);
			fail();
		}
		arena_free(a);
	}
}

/* ---- answers ---- */

static void test_answer_both_ways(void **state)
{
	(void)state;
	size_t n;
	char *body = golden_slurp("resp_tools.json", &n);
	struct arena *a = arena_new(0);
	struct canon_resp r;
	assert_int_equal(openai_resp_decode(a, str_make(body, n), &r), UMB_OK);
	assert_int_equal(r.finish, CANON_FIN_TOOL_CALLS);
	assert_int_equal(r.n_parts, 2);
	assert_true(str_eq(r.parts[1].id, STR("call_9")));
	assert_int_equal(r.usage.prompt_tokens, 120);
	assert_int_equal(r.usage.cached_prompt_tokens, 100);
	struct buf out;
	buf_init(&out, 0);
	assert_int_equal(openai_resp_encode(&r, STR("my-gpt"), &out), UMB_OK);
	normalise(&out);
	golden_check("resp_tools.out.json", buf_str(&out));
	buf_clear(&out);
	assert_int_equal(openai_resp_decode(a, STR("{\"choices\":[]}"), &r), UMB_ERR);
	assert_int_equal(openai_resp_decode(a, STR("<html>"), &r), UMB_ERR);
	arena_free(a);
	free(body);
}

/* ---- streams ---- */

static void test_stream_decode_every_split(void **state)
{
	(void)state;
	size_t n;
	char *s = golden_slurp("stream_tools.sse", &n);
	struct buf whole;
	buf_init(&whole, 0);
	assert_int_equal(decode_stream(s, n, n, 0, &whole), UMB_OK);
	golden_check("stream_tools.events", buf_str(&whole));
	/* one event split across reads at every byte, and in three pieces */
	for (size_t cut = 0; cut <= n; cut++) {
		struct buf b;
		buf_init(&b, 0);
		assert_int_equal(decode_stream(s, n, cut, cut + 7 < n ? cut + 7 : 0, &b), UMB_OK);
		assert_true(str_eq(buf_str(&b), buf_str(&whole)));
		buf_clear(&b);
	}
	/* cut short: no [DONE] */
	struct buf b;
	buf_init(&b, 0);
	const char *done = strstr(s, "data: [DONE]");
	assert_int_equal(decode_stream(s, (size_t)(done - s), (size_t)(done - s), 0, &b), UMB_ERR);
	buf_clear(&b);
	buf_clear(&whole);
	free(s);
}

static void test_stream_refusals(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"data: {not json}\n\n",
		"data: {\"error\":{\"message\":\"overloaded\"}}\n\n",
		"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":9999}]}}]}\n\n",
		"data: [DONE]\n\n", /* before anything */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct buf b;
		buf_init(&b, 0);
		assert_int_not_equal(decode_stream(bad[i], strlen(bad[i]), strlen(bad[i]), 0, &b), UMB_OK);
		buf_clear(&b);
	}
}

struct enc_ctx {
	struct openai_stream_enc enc;
	struct buf out;
};

static int encode_ev(void *ctx, const struct canon_ev *ev)
{
	struct enc_ctx *c = ctx;
	return openai_stream_enc_event(&c->enc, ev, &c->out);
}

static void test_stream_encode(void **state)
{
	(void)state;
	size_t n;
	char *s = golden_slurp("stream_tools.sse", &n);
	for (int usage = 0; usage < 2; usage++) {
		struct enc_ctx c;
		buf_init(&c.out, 0);
		openai_stream_enc_init(&c.enc, STR("my-gpt"), usage);
		struct openai_stream_dec d;
		struct canon_sink sink = { encode_ev, &c };
		openai_stream_dec_init(&d);
		assert_int_equal(openai_stream_dec_feed(&d, s, n, &sink), UMB_OK);
		openai_stream_dec_clear(&d);
		normalise(&c.out);
		golden_check(usage ? "stream_tools.usage.out.sse" : "stream_tools.out.sse", buf_str(&c.out));
		/* what we write decodes back to the same events */
		struct buf again, first;
		buf_init(&again, 0);
		buf_init(&first, 0);
		assert_int_equal(decode_stream(s, n, n, 0, &first), UMB_OK);
		assert_int_equal(decode_stream(c.out.p, c.out.n, c.out.n, 0, &again), UMB_OK);
		if (usage) /* the usage chunk only exists when asked for */
			assert_true(str_eq(buf_str(&again), buf_str(&first)) ||
				    strstr(again.p, "USAGE prompt=50 completion=20 cached=8"));
		else
			assert_null(strstr(again.p, "USAGE"));
		buf_clear(&again);
		buf_clear(&first);
		buf_clear(&c.out);
	}
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_both_ways),
		cmocka_unit_test(test_request_refusals),
		cmocka_unit_test(test_answer_both_ways),
		cmocka_unit_test(test_stream_decode_every_split),
		cmocka_unit_test(test_stream_refusals),
		cmocka_unit_test(test_stream_encode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
