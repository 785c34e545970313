/* test_router.c — the routing cascade (routing/router.c) without sockets:
 * text extraction, the guard, each layer's decision and trace, the
 * classifier's and the provider embedder's answers folded in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "config/config.h"
#include "core/json.h"
#include "routing/router.h"

static const char cfg_yaml[] =
	"providers:\n"
	"  - { name: on, type: openai, url: \"http://127.0.0.1:1\" }\n"
	"  - { name: emb, type: openai, url: \"http://127.0.0.1:2\" }\n"
	"models:\n"
	"  - { name: llama, provider: on, locality: onprem }\n"
	"  - { name: gpt, provider: on, locality: cloud }\n"
	"routing:\n"
	"  default_route: general\n"
	"  sensitive: { detectors: [email, credit_card, acct], action: reroute, route: pii }\n"
	"  detectors: [ { name: acct, regex: \"ACC-\\\\d{6}\" } ]\n"
	"  heuristics:\n"
	"    rules:\n"
	"      - { name: code, match: { keywords: [\"c++\", python] }, route: coding }\n"
	"      - { name: tools, match: { has_tools: true }, route: coding }\n"
	"      - { name: small, match: { max_tokens_lt: 10 }, route: fast }\n"
	"  semantic: { threshold: 0.7, ambiguous_threshold: 0.3 }\n"
	"  classifier: { model: llama, confidence_threshold: 0.7 }\n"
	"  routes:\n"
	"    - { name: pii, model: llama, description: personal data }\n"
	"    - { name: coding, model: gpt, examples: [\"fix the bug in this function\", \"refactor the class\"] }\n"
	"    - { name: regulatory, model: gpt, examples: [\"what does the Basel III capital regulation require\",\n"
	"        \"explain the GDPR lawful basis for processing personal data under the regulation\"] }\n"
	"    - { name: fast, model: llama }\n"
	"    - { name: general, model: gpt, examples: [\"plan the team offsite and the party\"] }\n";

struct fx {
	struct config *cfg;
	struct router *rt;
	struct arena *a;
};

static int setup(void **state)
{
	struct config_err e;
	struct fx *f = calloc(1, sizeof *f);
	f->cfg = config_load_string(cfg_yaml, strlen(cfg_yaml), "t.yaml", "/tmp", &e);
	if (!f->cfg)
		fail_msg("config: %s", e.msg);
	char err[256];
	f->rt = router_new(f->cfg, err, sizeof err);
	if (!f->rt)
		fail_msg("router: %s", err);
	f->a = arena_new(0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	router_free(f->rt);
	config_free(f->cfg);
	arena_free(f->a);
	free(f);
	return 0;
}

/* Parse a request body and extract its text; returns the extract's rc. */
static int extract(struct fx *f, const char *body, struct route_text *t)
{
	struct json_val root, msgs, tools, mt;
	assert_int_equal(json_parse(body, strlen(body), &root, NULL), UMB_OK);
	assert_true(json_obj_get(root, "messages", &msgs));
	bool ht = json_obj_get(root, "tools", &tools), hm = json_obj_get(root, "max_tokens", &mt);
	char why[160];
	return router_text_extract(f->a, msgs, ht ? &tools : NULL, hm ? &mt : NULL, t, why, sizeof why);
}

/* Route a body through guard + cascade; d must be cleared by the caller. */
static void decide(struct fx *f, const char *body, struct route_text *t, struct route_decision *d)
{
	assert_int_equal(extract(f, body, t), UMB_OK);
	route_decision_init(d);
	router_guard(f->rt, t, d);
	if (!router_is_sensitive(d))
		router_cascade(f->rt, t, d);
}

/* The trace closed as a JSON array parses, and names layer `layer`. */
static void trace_has(struct route_decision *d, const char *layer)
{
	struct buf b;
	buf_init(&b, 0);
	buf_append(&b, d->trace.p, d->trace.n);
	buf_append_lit(&b, "]");
	cJSON *j = cJSON_Parse(b.p);
	assert_non_null(j);
	bool found = false;
	cJSON *it;
	cJSON_ArrayForEach(it, j) {
		cJSON *l = cJSON_GetObjectItem(it, "layer");
		found |= l && cJSON_IsString(l) && !strcmp(l->valuestring, layer);
	}
	cJSON_Delete(j);
	buf_clear(&b);
	if (!found)
		fail_msg("no %s layer in trace %.*s", layer, (int)d->trace.n, d->trace.p);
}

static void test_extract(void **state)
{
	struct fx *f = *state;
	struct route_text t;
	assert_int_equal(extract(f, "{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
				 "{\"role\":\"user\",\"content\":\"first\"},{\"role\":\"assistant\",\"content\":null},"
				 "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"caf\\u00e9\"},"
				 "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}},{\"type\":\"text\",\"text\":\"two\"}]}],"
				 "\"tools\":[{\"type\":\"function\"}],\"max_tokens\":7}", &t), UMB_OK);
	assert_true(str_eq_cstr(t.conversation, "be brief\nfirst\ncafé\ntwo"));
	assert_true(str_eq_cstr(t.system, "be brief"));
	assert_true(str_eq_cstr(t.last_user, "café\ntwo"));
	assert_int_equal(t.last_user_chars, 8); /* é is one character */
	assert_true(t.has_tools);
	assert_int_equal(t.max_tokens, 7);

	assert_int_equal(extract(f, "{\"messages\":[{\"role\":\"assistant\",\"content\":\"hi\"}],\"tools\":[]}", &t),
			 UMB_OK);
	assert_int_equal(t.last_user.n, 0);
	assert_false(t.has_tools);
	assert_int_equal(t.max_tokens, -1);

	assert_int_equal(extract(f, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},7]}", &t), UMB_ERR);
	assert_int_equal(extract(f, "{\"messages\":[{\"role\":5}]}", &t), UMB_ERR);
	assert_int_equal(extract(f, "{\"messages\":[{\"content\":\"x\"}]}", &t), UMB_ERR);
}

static void test_guard(void **state)
{
	struct fx *f = *state;
	struct route_text t;
	struct route_decision d;
	decide(f, "{\"messages\":[{\"role\":\"system\",\"content\":\"a@example.com A@EXAMPLE.COM\"},"
		  "{\"role\":\"user\",\"content\":\"python: ACC-123456 ACC-123456 ACC-654321\"}]}", &t, &d);
	assert_true(router_is_sensitive(&d));
	char hits[128];
	router_hits_text(f->rt, &d, hits, sizeof hits);
	assert_string_equal(hits, "email, acct");
	struct buf b;
	buf_init(&b, 0);
	router_write_detectors(f->rt, &d, &b);
	assert_string_equal(b.p, "{\"email\":1,\"acct\":2}");
	buf_clear(&b);
	trace_has(&d, "sensitive");
	assert_string_equal(router_sensitive(f->rt)->route, "pii");
	route_decision_clear(&d);
}

static void test_heuristics_layer(void **state)
{
	struct fx *f = *state;
	struct route_text t;
	struct route_decision d;
	decide(f, "{\"messages\":[{\"role\":\"user\",\"content\":\"My C++ code crashes\"}]}", &t, &d);
	assert_false(router_is_sensitive(&d));
	assert_non_null(d.route);
	assert_string_equal(d.route->name, "coding");
	assert_int_equal(d.method, ROUTE_HEURISTIC);
	trace_has(&d, "heuristics");
	route_decision_clear(&d);

	decide(f, "{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"tools\":[{}]}", &t, &d);
	assert_string_equal(d.route->name, "coding");
	route_decision_clear(&d);
	decide(f, "{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":5}", &t, &d);
	assert_string_equal(d.route->name, "fast");
	route_decision_clear(&d);
}

static void test_semantic_and_classifier(void **state)
{
	struct fx *f = *state;
	struct route_text t;
	struct route_decision d;
	/* close to the regulatory examples: confident */
	decide(f, "{\"messages\":[{\"role\":\"user\",\"content\":\"What does the Basel III capital "
		  "regulation require from banks?\"}]}", &t, &d);
	assert_non_null(d.route);
	assert_string_equal(d.route->name, "regulatory");
	assert_int_equal(d.method, ROUTE_SEMANTIC);
	assert_true(d.score >= 0.7 && d.score <= 1.0);
	route_decision_clear(&d);

	/* far from every example but not nothing: the classifier is wanted */
	const char *amb = "{\"messages\":[{\"role\":\"user\",\"content\":\"tell me about the plan for assets\"}]}";
	decide(f, amb, &t, &d);
	if (d.route)
		fail_msg("decided %s (%s), expected the classifier", d.route->name, route_method_name(d.method));
	assert_true(d.want_classifier);
	struct buf body;
	buf_init(&body, 0);
	assert_int_equal(router_classifier_body(f->rt, &t, "llama-up", &body), UMB_OK);
	cJSON *j = cJSON_Parse(body.p);
	assert_non_null(j);
	assert_string_equal(cJSON_GetObjectItem(j, "model")->valuestring, "llama-up");
	cJSON_Delete(j);
	buf_clear(&body);
	/* confident answer: taken, then cached */
	router_classifier_answer(f->rt, &t, 200,
				 STR("{\"choices\":[{\"message\":{\"role\":\"assistant\","
				     "\"content\":\"```json\\n{\\\"route\\\":\\\"Fast\\\",\\\"confidence\\\":0.9}\\n```\"}}]}"),
				 &d);
	assert_string_equal(d.route->name, "fast");
	assert_int_equal(d.method, ROUTE_CLASSIFIER);
	trace_has(&d, "classifier");
	route_decision_clear(&d);
	decide(f, amb, &t, &d);
	assert_true(d.want_classifier);
	assert_true(router_classifier_cached(f->rt, &t, &d));
	assert_string_equal(d.route->name, "fast");
	route_decision_clear(&d);

	/* unconfident, garbage, errors and timeouts: the default route */
	const char *bad[] = {
		"{\"choices\":[{\"message\":{\"content\":\"{\\\"route\\\":\\\"fast\\\",\\\"confidence\\\":0.2}\"}}]}",
		"{\"choices\":[{\"message\":{\"content\":\"no idea\"}}]}",
		"not json",
	};
	const char *other = "{\"messages\":[{\"role\":\"user\",\"content\":\"the regulation of the team\"}]}";
	for (size_t i = 0; i < 3 + 2; i++) {
		decide(f, other, &t, &d);
		assert_true(d.want_classifier);
		int st = i < 3 ? 200 : i == 3 ? 500 : 0;
		router_classifier_answer(f->rt, &t, st, i < 3 ? str_cstr(bad[i]) : STR_NULL, &d);
		assert_string_equal(d.route->name, "general");
		assert_int_equal(d.method, ROUTE_DEFAULT);
		route_decision_clear(&d);
	}
}

/* A provider embedder: the answer builds the index, then decides. */
static void test_provider_embedder(void **state)
{
	UMB_UNUSED(state);
	char yaml[4096];
	snprintf(yaml, sizeof yaml, "%s", cfg_yaml);
	char *s = strstr(yaml, "  semantic: {");
	assert_non_null(s);
	const char repl[] = "  semantic: { provider: emb, model: e5, threshold: 0.9, ambiguous_threshold: 0.5 }\n";
	char *eol = strchr(s, '\n');
	memmove(s + sizeof repl - 1, eol + 1, strlen(eol + 1) + 1);
	memcpy(s, repl, sizeof repl - 1);
	struct config_err e;
	struct config *cfg = config_load_string(yaml, strlen(yaml), "t.yaml", "/tmp", &e);
	if (!cfg)
		fail_msg("config: %s", e.msg);
	char err[256];
	struct router *rt = router_new(cfg, err, sizeof err);
	assert_non_null(rt);
	struct arena *a = arena_new(0);
	struct route_text t;
	struct route_decision d;
	struct json_val root, msgs;
	const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}";
	assert_int_equal(json_parse(body, strlen(body), &root, NULL), UMB_OK);
	json_obj_get(root, "messages", &msgs);
	char why[64];
	assert_int_equal(router_text_extract(a, msgs, NULL, NULL, &t, why, sizeof why), UMB_OK);
	route_decision_init(&d);
	router_guard(rt, &t, &d);
	router_cascade(rt, &t, &d);
	assert_true(d.want_embedding);
	struct buf req;
	buf_init(&req, 0);
	const struct cfg_model *m;
	assert_int_equal(router_embed_request(rt, &t, &d, &req, &m), UMB_OK);
	assert_true(d.embed_with_examples);
	assert_string_equal(m->provider->name, "emb");
	cJSON *j = cJSON_Parse(req.p);
	/* 2 + 2 + 1 examples, pii's description, and the prompt */
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "input")), 7);
	cJSON_Delete(j);
	buf_clear(&req);
	/* vectors: pii (0), coding x2, regulatory x2, general (0), prompt ~ coding */
	const char *ans = "{\"data\":["
		"{\"index\":0,\"embedding\":[0,0,1]},{\"index\":1,\"embedding\":[1,0,0]},"
		"{\"index\":2,\"embedding\":[1,0.1,0]},{\"index\":3,\"embedding\":[0,1,0]},"
		"{\"index\":4,\"embedding\":[0.1,1,0]},{\"index\":5,\"embedding\":[0,0.2,1]},"
		"{\"index\":6,\"embedding\":[1,0.05,0]}]}";
	router_embed_answer(rt, &t, 200, str_cstr(ans), &d);
	assert_non_null(d.route);
	assert_string_equal(d.route->name, "coding");
	assert_int_equal(d.method, ROUTE_SEMANTIC);
	route_decision_clear(&d);

	/* a wrong dimension or a failed call: on to the classifier */
	route_decision_init(&d);
	d.want_embedding = true;
	router_embed_answer(rt, &t, 200, STR("{\"data\":[{\"embedding\":[1,2]}]}"), &d);
	assert_null(d.route);
	assert_true(d.want_classifier);
	route_decision_clear(&d);
	route_decision_init(&d);
	router_embed_answer(rt, &t, 0, STR_NULL, &d);
	assert_true(d.want_classifier);
	route_decision_clear(&d);

	arena_free(a);
	router_free(rt);
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_extract),
		cmocka_unit_test(test_guard),
		cmocka_unit_test(test_heuristics_layer),
		cmocka_unit_test(test_semantic_and_classifier),
		cmocka_unit_test(test_provider_embedder),
	};
	return cmocka_run_group_tests_name("router", tests, setup, teardown);
}
