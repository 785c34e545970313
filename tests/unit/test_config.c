/* test_config.c — config loading: every error class with its exact
 * file:line, ${ENV}, defaults, paths, globs, fallbacks, the tunnel and dark
 * services, the connector's own config, the embedded default and the
 * example files.
 *
 * The .c file is #included (STYLE.md "Tests") so the key tables can be
 * checked against docs/config.md; link with core.o and default.o only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../src/config/config.c"
#include "store/store.h"

#ifndef UMB_SRCDIR
#define UMB_SRCDIR "."
#endif

/* A minimal valid file: provider on lines 1-4, model on lines 5-7. */
#define PROV "providers:\n  - name: p\n    type: openai\n    url: http://127.0.0.1:8000\n"
#define MOD "models:\n  - name: m\n    provider: p\n"

static struct config *load(const char *yaml, struct config_err *e)
{
	return config_load_string(yaml, strlen(yaml), "t.yaml", "/etc/umbra", e);
}

/* The connector's config: named "c.yaml" in messages. */
static struct connector_config *conn_load(const char *yaml, struct config_err *e)
{
	return connector_config_load_string(yaml, strlen(yaml), "c.yaml", "/etc/umbra", e);
}

/* Loading yaml as a gateway config (or a connector config, with conn)
 * must fail with exactly `want`. */
static void expect_err_as(bool conn, const char *yaml, const char *want)
{
	struct config_err e;
	void *c = conn ? (void *)conn_load(yaml, &e) : (void *)load(yaml, &e);
	if (c) {
		if (conn)
			connector_config_free(c);
		else
			config_free(c);
		fail_msg("loaded, expected error: %s", want);
	}
	if (strcmp(e.msg, want))
		fail_msg("\n got: %s\nwant: %s", e.msg, want);
}

static void expect_err(const char *yaml, const char *want)
{
	expect_err_as(false, yaml, want);
}

static void conn_expect_err(const char *yaml, const char *want)
{
	expect_err_as(true, yaml, want);
}

/* The load must fail with a message starting with `prefix`. */
static void expect_err_prefix(const char *yaml, const char *prefix)
{
	struct config_err e;
	struct config *c = load(yaml, &e);
	if (c) {
		config_free(c);
		fail_msg("loaded, expected error: %s", prefix);
	}
	if (strncmp(e.msg, prefix, strlen(prefix)))
		fail_msg("\n got: %s\nwant prefix: %s", e.msg, prefix);
}

/* Loading yaml as a gateway config (or a connector config) must work. */
static void *must_load_as(bool conn, const char *yaml)
{
	struct config_err e;
	void *c = conn ? (void *)conn_load(yaml, &e) : (void *)load(yaml, &e);
	if (!c)
		fail_msg("load failed: %s", e.msg);
	return c;
}

static struct config *must_load(const char *yaml)
{
	return must_load_as(false, yaml);
}

static struct connector_config *conn_must_load(const char *yaml)
{
	return must_load_as(true, yaml);
}

/* What `umbra check` prints for c (free it). */
static char *table_of(const struct config *c)
{
	char *out = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&out, &n);
	assert_non_null(f);
	config_print_table(c, f);
	fclose(f);
	return out;
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load(PROV MOD);
	assert_string_equal(c->path, "t.yaml");
	assert_string_equal(c->dir, "/etc/umbra");
	assert_string_equal(c->listen_host, "127.0.0.1");
	assert_int_equal(c->listen_port, 8080);
	assert_int_equal(c->workers, 0);
	assert_false(c->tls.enabled);
	assert_int_equal(c->tls.client_auth, CLIENT_AUTH_NONE);
	assert_int_equal(c->limits.max_body_bytes, 8388608);
	assert_int_equal(c->limits.max_header_bytes, 65536);
	assert_int_equal(c->limits.max_response_bytes, 67108864);
	assert_int_equal(c->limits.header_timeout_ms, 10000);
	assert_int_equal(c->limits.body_timeout_ms, 30000);
	assert_int_equal(c->limits.keepalive_timeout_ms, 75000);
	assert_int_equal(c->limits.write_timeout_ms, 60000);
	assert_int_equal(c->limits.drain_timeout_ms, 30000);
	assert_int_equal(c->limits.max_connections, 10000);
	assert_int_equal(c->auth_mode, AUTH_NONE);
	assert_int_equal(c->log_level, LOG_INFO);
	assert_true(c->log_requests);
	assert_false(c->metrics_public);

	assert_int_equal(c->n_providers, 1);
	struct cfg_provider *p = &c->providers[0];
	assert_string_equal(p->name, "p");
	assert_int_equal(p->type, PROVIDER_OPENAI);
	assert_int_equal(p->line, 2);
	assert_null(p->api_key);
	assert_int_equal(p->n_headers, 0);
	assert_int_equal(p->max_attempts, 3);
	assert_false(p->health.enabled);
	assert_string_equal(p->health.path, "/v1/models");
	assert_int_equal(p->health.interval_s, 30);
	assert_int_equal(p->health.timeout_s, 5);
	assert_int_equal(p->health.unhealthy_after, 2);
	assert_int_equal(p->health.healthy_after, 1);
	assert_int_equal(p->timeouts.connect_ms, 5000);
	assert_int_equal(p->timeouts.first_byte_ms, 120000);
	assert_int_equal(p->timeouts.idle_ms, 60000);
	assert_int_equal(p->ejection.consecutive_failures, 3);
	assert_int_equal(p->ejection.base_ms, 1000);
	assert_int_equal(p->ejection.max_ms, 60000);
	assert_int_equal(p->n_endpoints, 1);
	struct cfg_endpoint *e = &p->endpoints[0];
	assert_string_equal(e->name, "p");
	assert_string_equal(e->url, "http://127.0.0.1:8000");
	assert_string_equal(e->origin, "http://127.0.0.1:8000");
	assert_int_equal(e->scheme, SCHEME_HTTP);
	assert_null(e->unix_path);
	assert_int_equal(e->weight, 1);
	assert_false(e->backup);
	assert_int_equal(e->line, 4);

	assert_int_equal(c->n_models, 1);
	struct cfg_model *m = &c->models[0];
	assert_string_equal(m->name, "m");
	assert_false(m->is_glob);
	assert_ptr_equal(m->provider, p);
	assert_string_equal(m->provider_name, "p");
	assert_null(m->upstream_model);
	assert_int_equal(m->locality, LOCALITY_UNSET);
	assert_false(m->price.set);
	assert_int_equal(m->max_output_tokens, 0);
	assert_int_equal(m->n_fallbacks, 0);
	assert_int_equal(m->line, 6);
	config_free(c);
}

static void test_all_keys_set(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load(
		"listen: \"[::1]:9000\"\n"
		"workers: 4\n"
		"limits: { max_body_bytes: 1024, max_header_bytes: 2048, max_response_bytes: 4096,\n"
		"  header_timeout_ms: 1, body_timeout_ms: 2, keepalive_timeout_ms: 3,\n"
		"  write_timeout_ms: 4, drain_timeout_ms: 0, max_connections: 5 }\n"
		"log: { level: debug, requests: false }\n"
		"auth: { mode: none }\n"
		"metrics: { public: true }\n"
		"providers:\n"
		"  - name: p\n"
		"    type: openai\n"
		"    api_key: sk-1\n"
		"    headers: { X-A: a, X-B: b }\n"
		"    endpoints:\n"
		"      - { name: a, url: \"https://h.example:8443/pre/\", weight: 3 }\n"
		"      - { name: b, url: \"unix:///run/x.sock\", backup: true }\n"
		"    health_check: { path: /health, interval_s: 10, timeout_s: 10, unhealthy_after: 4, healthy_after: 2 }\n"
		"    timeouts: { connect_ms: 1, first_byte_ms: 2, idle_ms: 3 }\n"
		"    ejection: { consecutive_failures: 7, base_ms: 10, max_ms: 10 }\n"
		"    max_attempts: 5\n"
		"models:\n"
		"  - name: m\n"
		"    provider: p\n"
		"    upstream_model: up/m\n"
		"    api_key: sk-m\n"
		"    headers: { X-C: c }\n"
		"    locality: cloud\n"
		"    price: { input_per_mtok: 1.5, output_per_mtok: 3, cached_input_per_mtok: 0.25 }\n"
		"    max_output_tokens: 4096\n"
		"    fallbacks: [n]\n"
		"  - { name: n, provider: p, locality: onprem, price: { input_per_mtok: 2 } }\n");
	assert_string_equal(c->listen_host, "::1");
	assert_int_equal(c->listen_port, 9000);
	assert_int_equal(c->workers, 4);
	assert_int_equal(c->limits.max_body_bytes, 1024);
	assert_int_equal(c->limits.max_header_bytes, 2048);
	assert_int_equal(c->limits.max_response_bytes, 4096);
	assert_int_equal(c->limits.header_timeout_ms, 1);
	assert_int_equal(c->limits.body_timeout_ms, 2);
	assert_int_equal(c->limits.keepalive_timeout_ms, 3);
	assert_int_equal(c->limits.write_timeout_ms, 4);
	assert_int_equal(c->limits.drain_timeout_ms, 0);
	assert_int_equal(c->limits.max_connections, 5);
	assert_int_equal(c->log_level, LOG_DEBUG);
	assert_false(c->log_requests);
	assert_true(c->metrics_public);
	struct cfg_provider *p = &c->providers[0];
	assert_string_equal(p->api_key, "sk-1");
	assert_int_equal(p->n_headers, 2);
	assert_string_equal(p->headers[0].name, "X-A");
	assert_string_equal(p->headers[1].value, "b");
	assert_int_equal(p->n_endpoints, 2);
	assert_string_equal(p->endpoints[0].origin, "https://h.example:8443/pre");
	assert_int_equal(p->endpoints[0].scheme, SCHEME_HTTPS);
	assert_int_equal(p->endpoints[0].weight, 3);
	assert_int_equal(p->endpoints[0].line, 15);
	assert_int_equal(p->endpoints[1].scheme, SCHEME_UNIX);
	assert_string_equal(p->endpoints[1].unix_path, "/run/x.sock");
	assert_string_equal(p->endpoints[1].origin, "http://localhost");
	assert_true(p->endpoints[1].backup);
	assert_true(p->health.enabled);
	assert_string_equal(p->health.path, "/health");
	assert_int_equal(p->health.interval_s, 10);
	assert_int_equal(p->health.unhealthy_after, 4);
	assert_int_equal(p->health.healthy_after, 2);
	assert_int_equal(p->timeouts.idle_ms, 3);
	assert_int_equal(p->ejection.consecutive_failures, 7);
	assert_int_equal(p->max_attempts, 5);
	struct cfg_model *m = &c->models[0];
	assert_string_equal(m->upstream_model, "up/m");
	assert_string_equal(m->api_key, "sk-m");
	assert_int_equal(m->n_headers, 1);
	assert_int_equal(m->locality, LOCALITY_CLOUD);
	assert_true(m->price.set);
	assert_true(m->price.input_per_mtok == 1.5);
	assert_true(m->price.output_per_mtok == 3);
	assert_true(m->price.cached_input_per_mtok == 0.25);
	assert_int_equal(m->max_output_tokens, 4096);
	assert_int_equal(m->n_fallbacks, 1);
	assert_ptr_equal(m->fallback_models[0], &c->models[1]);
	/* cached input defaults to the input price */
	assert_true(c->models[1].price.cached_input_per_mtok == 2);
	assert_int_equal(c->models[1].locality, LOCALITY_ONPREM);
	config_free(c);
}

static void test_embedded_default(void **state)
{
	UMB_UNUSED(state);
	struct config_err e;
	struct config *c = config_load_default(&e);
	if (!c)
		fail_msg("%s", e.msg);
	assert_string_equal(c->path, "<embedded>");
	assert_string_equal(c->listen_host, "127.0.0.1");
	assert_int_equal(c->listen_port, 8080);
	assert_int_equal(c->n_providers, 1);
	const struct cfg_provider *p = config_find_provider(c, "local");
	assert_non_null(p);
	assert_int_equal(p->type, PROVIDER_OPENAI);
	assert_int_equal(p->n_endpoints, 2);
	assert_string_equal(p->endpoints[0].name, "vllm");
	assert_string_equal(p->endpoints[0].origin, "http://127.0.0.1:8000");
	assert_false(p->endpoints[0].backup);
	assert_string_equal(p->endpoints[1].name, "ollama");
	assert_string_equal(p->endpoints[1].origin, "http://127.0.0.1:11434");
	assert_true(p->endpoints[1].backup);
	assert_true(p->health.enabled);
	assert_int_equal(p->health.interval_s, 5);
	assert_int_equal(p->health.timeout_s, 2);
	assert_int_equal(c->n_models, 1);
	const struct cfg_model *m = config_find_model(c, STR("any-model:7b"));
	assert_non_null(m);
	assert_string_equal(m->name, "*");
	assert_true(m->is_glob);
	assert_null(m->upstream_model);
	assert_int_equal(m->locality, LOCALITY_ONPREM);
	config_free(c);
}

static void test_example_file(void **state)
{
	UMB_UNUSED(state);
	struct config_err e;
	unsetenv("UMBRA_LISTEN");
	struct config *c = config_load_file(UMB_SRCDIR "/etc/umbra.example.yaml", &e);
	if (!c)
		fail_msg("%s", e.msg);
	assert_true(c->n_providers >= 2);
	assert_true(c->n_models >= 3);
	assert_non_null(config_find_model(c, STR("llama-3.3-70b")));
	assert_string_equal(config_find_model(c, STR("gpt-4-turbo"))->name, "gpt-*");
	config_free(c);
}

/* ---- syntax and structure ---- */

static void test_yaml_syntax(void **state)
{
	UMB_UNUSED(state);
	expect_err_prefix("listen: a\nproviders: [\n  x: {\n", "t.yaml:");
	expect_err_prefix(PROV "models:\n  - name: \"m\n", "t.yaml:");
	expect_err("", "t.yaml:1: empty configuration, expected a mapping with at least providers: and models:");
	expect_err("- a\n- b\n", "t.yaml:1: expected a mapping at the top level (listen:, providers:, models: ...), got a list");
	expect_err(PROV MOD "---\nlisten: x\n",
		   "t.yaml:9: a second YAML document (---), expected exactly one");
}

static void test_syntax_error_line(void **state)
{
	UMB_UNUSED(state);
	struct config_err e;
	assert_null(load("listen: a\nworkers: 1\n  bad: [\n", &e));
	assert_non_null(strstr(e.msg, "YAML syntax error"));
	assert_int_equal(strncmp(e.msg, "t.yaml:3:", 9), 0);
}

static void test_unknown_keys(void **state)
{
	UMB_UNUSED(state);
	expect_err("lsiten: x\n" PROV MOD,
		   "t.yaml:1: unknown key \"lsiten\" (did you mean \"listen\"?)");
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    helth_check: {}\n" MOD,
		   "t.yaml:5: providers[0]: unknown key \"helth_check\" (did you mean \"health_check\"?)");
	expect_err(PROV MOD "limits: { max_bdy_bytes: 1 }\n",
		   "t.yaml:8: limits: unknown key \"max_bdy_bytes\" (did you mean \"max_body_bytes\"?)");
	expect_err(PROV "models:\n  - name: m\n    provider: p\n    fallback: []\n",
		   "t.yaml:8: models[0]: unknown key \"fallback\" (did you mean \"fallbacks\"?)");
	expect_err(PROV MOD "log: { colour: true }\n",
		   "t.yaml:8: log: unknown key \"colour\", expected one of level, requests");
	expect_err("providers:\n  - name: p\n    type: openai\n    endpoints:\n      - { name: a, url: \"http://a\", wieght: 2 }\n" MOD,
		   "t.yaml:5: providers[0].endpoints[0]: unknown key \"wieght\" (did you mean \"weight\"?)");
}

static void test_unimplemented(void **state)
{
	UMB_UNUSED(state);
	const char *sections[] = { "crypto", "airgapped" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(sections); i++) {
		char y[512], want[128];
		snprintf(y, sizeof(y), "%s: x\n" PROV MOD, sections[i]);
		snprintf(want, sizeof(want), "t.yaml:1: %s is not implemented in this build yet", sections[i]);
		expect_err(y, want);
	}
}

/* What each provider type needs, and the vendor endpoint when url is
 * absent (DESIGN.md "Provider URLs"). */
static void test_provider_type_defaults(void **state)
{
	UMB_UNUSED(state);
	static const struct {
		const char *yaml, *origin;
	} ok[] = {
		{ "{ name: p, type: anthropic, api_key: x }", "https://api.anthropic.com" },
		{ "{ name: p, type: ollama }", "http://127.0.0.1:11434" },
		{ "{ name: p, type: bedrock, region: eu-west-3 }", "https://bedrock-runtime.eu-west-3.amazonaws.com" },
		{ "{ name: p, type: vertex, project: x, location: us-central1, access_token: t }",
		  "https://us-central1-aiplatform.googleapis.com" },
		{ "{ name: p, type: vertex, project: x, location: global, access_token: t }",
		  "https://aiplatform.googleapis.com" },
		{ "{ name: p, type: azure, url: \"https://r.openai.azure.com\" }", "https://r.openai.azure.com" },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(ok); i++) {
		char y[512];
		snprintf(y, sizeof y, "providers:\n  - %s\n" MOD, ok[i].yaml);
		struct config *c = must_load(y);
		assert_int_equal(c->providers[0].n_endpoints, 1);
		assert_string_equal(c->providers[0].endpoints[0].origin, ok[i].origin);
		config_free(c);
	}
	expect_err("providers:\n  - { name: p, type: bedrock }\n" MOD,
		   "t.yaml:2: providers[0]: missing required key \"region\" for provider type bedrock "
		   "(the AWS region requests are signed for, e.g. us-east-1)");
	expect_err("providers:\n  - { name: p, type: vertex, location: l, access_token: t }\n" MOD,
		   "t.yaml:2: providers[0]: provider type vertex needs \"project\" and \"location\" (e.g. us-central1)");
	expect_err("providers:\n  - { name: p, type: vertex, project: p, location: l }\n" MOD,
		   "t.yaml:2: providers[0]: provider type vertex needs exactly one of \"credentials_file\" "
		   "(service-account JSON) and \"access_token\"");
	expect_err("providers:\n  - { name: p, type: azure }\n" MOD,
		   "t.yaml:2: providers[0]: missing url or endpoints, expected exactly one of them");
}

static void test_provider_type(void **state)
{
	UMB_UNUSED(state);
	expect_err("providers:\n  - name: p\n    type: opnai\n    url: http://a\n" MOD,
		   "t.yaml:3: providers[0].type: unknown provider type \"opnai\", expected one of openai, anthropic, azure, bedrock, vertex, ollama (did you mean \"openai\"?)");
	expect_err("providers:\n  - name: p\n    url: http://a\n" MOD,
		   "t.yaml:2: providers[0]: missing required key \"type\", expected one of openai, anthropic, azure, bedrock, vertex, ollama");
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    region: us-east-1\n" MOD,
		   "t.yaml:5: providers[0].region: only valid for provider type bedrock, not openai");
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    credentials_file: sa.json\n" MOD,
		   "t.yaml:5: providers[0].credentials_file: only valid for provider type vertex, not openai");
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    api_version: \"2024\"\n" MOD,
		   "t.yaml:5: providers[0].api_version: only valid for provider type azure, not openai");
}

static void test_wrong_types(void **state)
{
	UMB_UNUSED(state);
	expect_err("listen: { a: 1 }\n" PROV MOD,
		   "t.yaml:1: listen: expected a string, got a mapping");
	expect_err("workers: abc\n" PROV MOD,
		   "t.yaml:1: workers: expected an integer from 0 to 1024, got \"abc\"");
	expect_err("workers: 1.5\n" PROV MOD,
		   "t.yaml:1: workers: expected an integer from 0 to 1024, got \"1.5\"");
	expect_err("workers: 5000\n" PROV MOD,
		   "t.yaml:1: workers: \"5000\" is out of range, expected an integer from 0 to 1024");
	expect_err("workers: 99999999999999999999999\n" PROV MOD,
		   "t.yaml:1: workers: \"99999999999999999999999\" is out of range, expected an integer from 0 to 1024");
	expect_err("workers: [1]\n" PROV MOD,
		   "t.yaml:1: workers: expected an integer, got a list");
	expect_err("workers:\n" PROV MOD,
		   "t.yaml:1: workers: expected an integer, got an empty value");
	expect_err("limits: [1]\n" PROV MOD,
		   "t.yaml:1: limits: expected a mapping (key: value ...), got a list");
	expect_err("log: { requests: maybe }\n" PROV MOD,
		   "t.yaml:1: log.requests: expected true or false, got \"maybe\"");
	expect_err("log: { level: verbose }\n" PROV MOD,
		   "t.yaml:1: log.level: unknown value \"verbose\", expected one of debug, info, warn, error");
	expect_err("providers:\n  - name: p\n    type: openai\n    endpoints:\n      - { name: a, url: \"http://a\", weight: -1 }\n" MOD,
		   "t.yaml:5: providers[0].endpoints[0].weight: \"-1\" is out of range, expected an integer from 1 to 10000");
	expect_err("providers:\n  - name: p\n    type: openai\n    endpoints:\n      - { name: a, url: \"http://a\", weight: 0 }\n" MOD,
		   "t.yaml:5: providers[0].endpoints[0].weight: \"0\" is out of range, expected an integer from 1 to 10000");
	expect_err(PROV "models:\n  - name: m\n    provider: p\n    price: { input_per_mtok: -1 }\n",
		   "t.yaml:8: models[0].price.input_per_mtok: \"-1\" is out of range, expected a number from 0 to 1e+09");
	expect_err(PROV "models:\n  - name: m\n    provider: p\n    price: { output_per_mtok: cheap }\n",
		   "t.yaml:8: models[0].price.output_per_mtok: expected a number, got \"cheap\"");
	expect_err(PROV "models:\n  - name: m\n    provider: p\n    price: { output_per_mtok: nan }\n",
		   "t.yaml:8: models[0].price.output_per_mtok: expected a number, got \"nan\"");
	expect_err(PROV "models:\n  - name: m\n    provider: p\n    locality: moon\n",
		   "t.yaml:8: models[0].locality: unknown value \"moon\", expected one of onprem, cloud");
	expect_err(PROV "models:\n  - name: m\n    provider: p\n    fallbacks: x\n",
		   "t.yaml:8: models[0].fallbacks: expected a list of model names, got a scalar");
	expect_err(PROV "models: { name: m }\n",
		   "t.yaml:5: models: expected a list of models, got a mapping");
	expect_err("providers:\n  - just-a-string\n" MOD,
		   "t.yaml:2: providers[0]: expected a mapping { name, type, url | endpoints }, got a scalar");
	expect_err(PROV "models:\n  - [a]\n",
		   "t.yaml:6: models[0]: expected a mapping { name, provider, ... }, got a list");
	expect_err("? [a]\n: b\n" PROV MOD,
		   "t.yaml:1: expected a plain key name, got a list");
}

static void test_duplicates(void **state)
{
	UMB_UNUSED(state);
	expect_err("listen: \"a:1\"\nlisten: \"b:2\"\n" PROV MOD,
		   "t.yaml:2: duplicate key \"listen\" (first given at line 1), expected each key once");
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    url: http://b\n" MOD,
		   "t.yaml:5: providers[0]: duplicate key \"url\" (first given at line 4), expected each key once");
	expect_err(PROV "  - { name: p, type: openai, url: \"http://b\" }\n" MOD,
		   "t.yaml:5: providers[1]: duplicate provider name \"p\" (first at line 2), expected unique names");
	expect_err(PROV "models:\n  - { name: m, provider: p }\n  - { name: m, provider: p }\n",
		   "t.yaml:7: models[1]: duplicate model name \"m\" (first at line 6), expected unique names");
	expect_err("providers:\n  - name: p\n    type: openai\n    endpoints:\n      - { name: a, url: \"http://a\" }\n      - { name: a, url: \"http://b\" }\n" MOD,
		   "t.yaml:6: providers[0].endpoints[1]: duplicate endpoint name \"a\" (first at line 5), expected unique names within a provider");
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    headers: { X-A: 1, x-a: 2 }\n" MOD,
		   "t.yaml:5: providers[0].headers: duplicate header \"x-a\" (first given at line 5), expected each header once");
}

static void test_required(void **state)
{
	UMB_UNUSED(state);
	expect_err(MOD, "t.yaml:1: missing required key \"providers\" (model backends)");
	expect_err(PROV, "t.yaml:1: missing required key \"models\" (the model names clients use)");
	expect_err("providers: []\n" MOD,
		   "t.yaml:1: providers: at least one provider is required, expected a list of { name, type, url }");
	expect_err(PROV "models: []\n",
		   "t.yaml:5: models: at least one model is required, expected a list of { name, provider }");
	expect_err("providers:\n  - { type: openai, url: \"http://a\" }\n" MOD,
		   "t.yaml:2: providers[0]: missing required key \"name\" (provider name that models refer to)");
	expect_err("providers:\n  - { name: p, type: openai }\n" MOD,
		   "t.yaml:2: providers[0]: missing url or endpoints, expected exactly one of them");
	expect_err("providers:\n  - { name: p, type: openai, url: \"http://a\", endpoints: [ { name: a, url: \"http://b\" } ] }\n" MOD,
		   "t.yaml:2: providers[0].endpoints: give either url or endpoints, not both");
	expect_err("providers:\n  - name: p\n    type: openai\n    endpoints: []\n" MOD,
		   "t.yaml:4: providers[0].endpoints: expected at least one endpoint ({ name, url, weight })");
	expect_err("providers:\n  - name: p\n    type: openai\n    endpoints:\n      - { url: \"http://a\" }\n" MOD,
		   "t.yaml:5: providers[0].endpoints[0]: missing required key \"name\" (endpoint name, unique within the provider)");
	expect_err(PROV "models:\n  - { name: m }\n",
		   "t.yaml:6: models[0]: missing required key \"provider\" (name of a provider in providers)");
	expect_err("providers:\n  - name: p\n    type: openai\n    endpoints:\n      - { name: a, url: \"http://a\", backup: true }\n" MOD,
		   "t.yaml:2: providers[0]: every endpoint is a backup, expected at least one with backup: false");
	expect_err("providers:\n  - name: my provider\n    type: openai\n    url: http://a\n" MOD,
		   "t.yaml:2: providers[0].name: invalid name \"my provider\", expected letters, digits, '.', '_' or '-'");
}

static void test_listen(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load("listen: 0.0.0.0:80\n" PROV MOD);
	assert_string_equal(c->listen_host, "0.0.0.0");
	assert_int_equal(c->listen_port, 80);
	config_free(c);
	c = must_load("listen: \"[fe80::1]:65535\"\n" PROV MOD);
	assert_string_equal(c->listen_host, "fe80::1");
	assert_int_equal(c->listen_port, 65535);
	config_free(c);
	const char *bad[] = { "localhost", "1.2.3.4:0", "1.2.3.4:65536", "::1:80", ":80", "[::1]", "h:8x" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		char y[256], want[256];
		snprintf(y, sizeof(y), "listen: \"%s\"\n" PROV MOD, bad[i]);
		snprintf(want, sizeof(want), "t.yaml:1: listen: invalid address \"%s\", expected", bad[i]);
		expect_err_prefix(y, want);
	}
}

static void test_urls(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load(
		"providers:\n  - name: p\n    type: openai\n    endpoints:\n"
		"      - { name: a, url: \"http://h\" }\n"
		"      - { name: b, url: \"HTTPS://h:443/v1/proxy//\" }\n"
		"      - { name: c, url: \"http://[::1]:8000/\" }\n"
		"      - { name: d, url: \"unix:///var/run/vllm.sock\" }\n" MOD);
	struct cfg_endpoint *e = c->providers[0].endpoints;
	assert_string_equal(e[0].origin, "http://h");
	assert_string_equal(e[1].origin, "https://h:443/v1/proxy");
	assert_int_equal(e[1].scheme, SCHEME_HTTPS);
	assert_string_equal(e[1].url, "HTTPS://h:443/v1/proxy//");
	assert_string_equal(e[2].origin, "http://[::1]:8000");
	assert_int_equal(e[3].scheme, SCHEME_UNIX);
	assert_string_equal(e[3].unix_path, "/var/run/vllm.sock");
	assert_string_equal(e[3].origin, "http://localhost");
	config_free(c);

#define URLP(u) "providers:\n  - name: p\n    type: openai\n    url: \"" u "\"\n" MOD
	expect_err(URLP("ftp://h"),
		   "t.yaml:4: providers[0].url: unsupported URL \"ftp://h\", expected http://host[:port][/prefix], https://host[:port][/prefix] or unix:///absolute/path.sock");
	expect_err(URLP("unix://rel.sock"),
		   "t.yaml:4: providers[0].url: invalid unix socket URL \"unix://rel.sock\", expected unix:///absolute/path.sock");
	expect_err(URLP("http://h/v1?x=1"),
		   "t.yaml:4: providers[0].url: URL \"http://h/v1?x=1\" has a query or fragment, expected http://host[:port][/prefix], https://host[:port][/prefix] or unix:///absolute/path.sock");
	expect_err(URLP("https://api.openai.com/v1/chat/completions"),
		   "t.yaml:4: providers[0].url: URL \"https://api.openai.com/v1/chat/completions\" ends with an API path; give only the origin and an optional prefix (the gateway appends /chat/completions)");
	expect_err(URLP("http://u:pw@h"),
		   "t.yaml:4: providers[0].url: credentials in a URL are not supported, put them in api_key or headers");
	expect_err_prefix(URLP("http://h:0"), "t.yaml:4: providers[0].url: invalid host or port in URL \"http://h:0\"");
	expect_err_prefix(URLP("http://:80"), "t.yaml:4: providers[0].url: invalid host or port in URL");
	expect_err_prefix(URLP("http://"), "t.yaml:4: providers[0].url: invalid host or port in URL");
	expect_err_prefix(URLP("http://a b"), "t.yaml:4: providers[0].url: invalid URL \"http://a b\" (contains a space)");
#undef URLP
}

/* ---- ${ENV} ---- */

static void test_env(void **state)
{
	UMB_UNUSED(state);
	setenv("UMB_T_HOST", "10.1.2.3", 1);
	setenv("UMB_T_PORT", "9001", 1);
	setenv("UMB_T_EMPTY", "", 1);
	unsetenv("UMB_T_UNSET");
	struct config *c = must_load(
		"listen: \"${UMB_T_HOST}:${UMB_T_PORT}\"\n"
		"workers: ${UMB_T_UNSET:-3}\n"
		"providers:\n  - name: p\n    type: openai\n"
		"    url: \"http://${UMB_T_EMPTY:-h}:${UMB_T_PORT}\"\n"
		"    api_key: \"pa$$word$x${UMB_T_EMPTY}$\"\n"
		"    headers: { X-Org: \"${UMB_T_UNSET:-}\" }\n" MOD);
	assert_string_equal(c->listen_host, "10.1.2.3");
	assert_int_equal(c->listen_port, 9001);
	assert_int_equal(c->workers, 3);
	assert_string_equal(c->providers[0].endpoints[0].origin, "http://h:9001");
	assert_string_equal(c->providers[0].api_key, "pa$word$x$");
	assert_int_equal(c->providers[0].n_headers, 0); /* empty value: header omitted */
	config_free(c);

	expect_err("listen: \"${UMB_T_UNSET}:80\"\n" PROV MOD,
		   "t.yaml:1: listen: environment variable UMB_T_UNSET is not set (set it, or write ${UMB_T_UNSET:-default})");
	expect_err(PROV "models:\n  - name: m\n    provider: p\n    api_key: \"x${UMB_T_HOST\"\n",
		   "t.yaml:8: models[0].api_key: unterminated \"${\", expected ${NAME} or ${NAME:-default} ($$ for a literal $)");
	expect_err(PROV "models:\n  - name: m\n    provider: p\n    api_key: \"${1A}\"\n",
		   "t.yaml:8: models[0].api_key: invalid variable reference \"${1A}\", expected ${NAME} or ${NAME:-default} with NAME made of letters, digits and _");
	expect_err(PROV "models:\n  - name: m\n    provider: p\n    api_key: \"${A-b}\"\n",
		   "t.yaml:8: models[0].api_key: invalid variable reference \"${A-b}\", expected ${NAME} or ${NAME:-default} with NAME made of letters, digits and _");
	expect_err(PROV "models:\n  - name: m\n    provider: p\n    api_key: \"${}\"\n",
		   "t.yaml:8: models[0].api_key: invalid variable reference \"${}\", expected ${NAME} or ${NAME:-default} with NAME made of letters, digits and _");
	/* an expanded value is checked like a written one */
	setenv("UMB_T_BAD", "abc", 1);
	expect_err("workers: ${UMB_T_BAD}\n" PROV MOD,
		   "t.yaml:1: workers: expected an integer from 0 to 1024, got \"abc\"");
	/* CR/LF could forge upstream headers */
	setenv("UMB_T_CRLF", "k\r\nX-Evil: 1", 1);
	expect_err(PROV "models:\n  - name: m\n    provider: p\n    api_key: \"${UMB_T_CRLF}\"\n",
		   "t.yaml:8: models[0].api_key: control character 0x0d in value, expected printable text");
	/* keys are never expanded */
	expect_err_prefix("${UMB_T_HOST}: 1\n" PROV MOD, "t.yaml:1: unknown key \"${UMB_T_HOST}\"");
}

/* ---- paths ---- */

static void test_paths(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load("tls: { cert: pki/gw.crt, key: /abs/gw.key, client_ca: ca.crt }\n" PROV MOD);
	assert_true(c->tls.enabled);
	assert_string_equal(c->tls.cert, "/etc/umbra/pki/gw.crt");
	assert_string_equal(c->tls.key, "/abs/gw.key");
	assert_string_equal(c->tls.client_ca, "/etc/umbra/ca.crt");
	assert_int_equal(c->tls.client_auth, CLIENT_AUTH_OPTIONAL); /* CA given */
	config_free(c);

	c = must_load("tls: { cert: a, key: b, client_ca: c, client_auth: none }\n" PROV MOD);
	assert_int_equal(c->tls.client_auth, CLIENT_AUTH_NONE);
	config_free(c);
	c = must_load("tls: { cert: a, key: b, client_ca: c, client_auth: require }\n" PROV MOD);
	assert_int_equal(c->tls.client_auth, CLIENT_AUTH_REQUIRE);
	config_free(c);

	expect_err("tls: { cert: a }\n" PROV MOD, "t.yaml:1: tls: cert and key must be given together");
	expect_err("tls: { client_ca: a }\n" PROV MOD, "t.yaml:1: tls: client_ca needs cert and key (TLS) as well");
	expect_err("tls: { cert: a, key: b, client_auth: require }\n" PROV MOD,
		   "t.yaml:1: tls: client_auth require needs client_ca to verify client certificates");
	expect_err("tls: { cert: a, key: b, client_auth: always }\n" PROV MOD,
		   "t.yaml:1: tls.client_auth: unknown value \"always\", expected one of none, optional, require");

	/* a file's relative paths resolve against the file's directory */
	char dir[] = "/tmp/umb-test-config-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[512];
	snprintf(path, sizeof(path), "%s/u.yaml", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("tls: { cert: gw.crt, key: k/gw.key }\n" PROV MOD, f);
	fclose(f);
	struct config_err e;
	c = config_load_file(path, &e);
	if (!c)
		fail_msg("%s", e.msg);
	char want[600];
	snprintf(want, sizeof(want), "%s/gw.crt", dir);
	assert_string_equal(c->tls.cert, want);
	snprintf(want, sizeof(want), "%s/k/gw.key", dir);
	assert_string_equal(c->tls.key, want);
	assert_string_equal(c->dir, dir);
	assert_string_equal(c->path, path);
	config_free(c);

	/* errors in a file carry the path as given */
	f = fopen(path, "w");
	fputs(PROV MOD "workrs: 2\n", f);
	fclose(f);
	assert_null(config_load_file(path, &e));
	snprintf(want, sizeof(want), "%s:8: unknown key \"workrs\" (did you mean \"workers\"?)", path);
	assert_string_equal(e.msg, want);
	unlink(path);
	rmdir(dir);

	assert_null(config_load_file("/nonexistent/umbra.yaml", &e));
	assert_string_equal(e.msg, "/nonexistent/umbra.yaml: cannot open: No such file or directory");

	/* no dir: the working directory */
	c = config_load_string("tls: { cert: a, key: b }\n" PROV MOD, strlen("tls: { cert: a, key: b }\n" PROV MOD), "s", NULL, &e);
	assert_non_null(c);
	assert_true(c->tls.cert[0] == '/');
	config_free(c);
}

/* ---- globs, fallbacks ---- */

static void test_find_model(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load(PROV
		"models:\n"
		"  - { name: \"*\", provider: p }\n"
		"  - { name: \"gpt-*\", provider: p }\n"
		"  - { name: gpt-4o, provider: p }\n"
		"  - { name: \"llama-?b\", provider: p }\n");
	assert_true(c->models[0].is_glob);
	assert_false(c->models[2].is_glob);
	/* exact beats any glob, even an earlier one */
	assert_string_equal(config_find_model(c, STR("gpt-4o"))->name, "gpt-4o");
	/* globs in config order: "*" comes first */
	assert_string_equal(config_find_model(c, STR("gpt-5"))->name, "*");
	assert_string_equal(config_find_model(c, STR("llama-8b"))->name, "*");
	config_free(c);

	c = must_load(PROV
		"models:\n"
		"  - { name: \"gpt-*\", provider: p }\n"
		"  - { name: \"llama-?b\", provider: p }\n"
		"  - { name: exact, provider: p }\n");
	assert_string_equal(config_find_model(c, STR("gpt-5"))->name, "gpt-*");
	assert_string_equal(config_find_model(c, STR("llama-8b"))->name, "llama-?b");
	assert_null(config_find_model(c, STR("llama-70b")));
	assert_null(config_find_model(c, STR("exac")));
	assert_null(config_find_model(c, STR("")));
	assert_non_null(config_find_model(c, STR("exact")));
	assert_null(config_find_provider(c, "nope"));
	assert_non_null(config_find_provider(c, "p"));
	config_free(c);
}

static void test_model_provider(void **state)
{
	UMB_UNUSED(state);
	expect_err(PROV "models:\n  - name: m\n    provider: q\n",
		   "t.yaml:7: models[0].provider: unknown provider \"q\", expected the name of a provider in providers:");
	expect_err("providers:\n  - { name: onprem, type: openai, url: \"http://a\" }\n"
		   "models:\n  - name: m\n    provider: onprme\n",
		   "t.yaml:5: models[0].provider: unknown provider \"onprme\", expected the name of a provider in providers: (did you mean \"onprem\"?)");
	/* models may come before providers */
	struct config *c = must_load(MOD PROV);
	assert_ptr_equal(c->models[0].provider, &c->providers[0]);
	config_free(c);
	expect_err(PROV "models:\n  - name: \"two words\"\n    provider: p\n",
		   "t.yaml:6: models[0].name: invalid model name \"two words\", expected no spaces");
}

static void test_fallbacks(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load(PROV
		"models:\n"
		"  - { name: a, provider: p, fallbacks: [b, c] }\n"
		"  - { name: b, provider: p, fallbacks: [c] }\n"
		"  - { name: c, provider: p }\n");
	assert_int_equal(c->models[0].n_fallbacks, 2);
	assert_ptr_equal(c->models[0].fallback_models[0], &c->models[1]);
	assert_ptr_equal(c->models[0].fallback_models[1], &c->models[2]);
	assert_string_equal(c->models[0].fallbacks[1], "c");
	config_free(c);

	expect_err(PROV "models:\n  - { name: llama-70b, provider: p, fallbacks: [llama-8b] }\n  - { name: llama-7b, provider: p }\n",
		   "t.yaml:6: models[0].fallbacks[0]: unknown model \"llama-8b\", expected the exact name of a model in models: (did you mean \"llama-7b\"?)");
	expect_err(PROV "models:\n  - name: a\n    provider: p\n    fallbacks:\n      - a\n",
		   "t.yaml:9: models[0].fallbacks[0]: model \"a\" lists itself as a fallback");
	expect_err(PROV "models:\n  - { name: a, provider: p, fallbacks: [\"*\"] }\n  - { name: \"*\", provider: p }\n",
		   "t.yaml:6: models[0].fallbacks[0]: \"*\" is a glob pattern, expected the exact name of a model");
	expect_err(PROV "models:\n  - { name: a, provider: p, fallbacks: [b, b] }\n  - { name: b, provider: p }\n",
		   "t.yaml:6: models[0].fallbacks[1]: \"b\" is listed twice, expected each fallback once");
	expect_err(PROV "models:\n"
		   "  - { name: a, provider: p, fallbacks: [b] }\n"
		   "  - { name: b, provider: p, fallbacks: [c] }\n"
		   "  - { name: c, provider: p, fallbacks: [a] }\n",
		   "t.yaml:8: models[2].fallbacks[0]: fallback cycle a -> b -> c -> a, expected fallbacks to end somewhere");
	expect_err(PROV "models:\n"
		   "  - { name: x, provider: p, fallbacks: [b] }\n"
		   "  - { name: b, provider: p, fallbacks: [c] }\n"
		   "  - { name: c, provider: p, fallbacks: [b] }\n",
		   "t.yaml:8: models[2].fallbacks[0]: fallback cycle b -> c -> b, expected fallbacks to end somewhere");
}

/* ---- auth, teams, identities ---- */

#define TLS_CA "tls: { cert: gw.crt, key: gw.key, client_ca: ca.crt }\n"

static void test_auth_modes(void **state)
{
	UMB_UNUSED(state);
	static const struct { const char *yaml; enum auth_mode mode; } ok[] = {
		{ PROV MOD "auth: { mode: none }\n", AUTH_NONE },
		{ PROV MOD "auth: { mode: keys }\n", AUTH_KEYS },
		{ TLS_CA PROV MOD "auth: { mode: certs }\n", AUTH_CERTS },
		{ TLS_CA PROV MOD "auth: { mode: keys+certs }\n", AUTH_KEYS_CERTS },
		/* auth may come before tls */
		{ "auth: { mode: certs }\n" TLS_CA PROV MOD, AUTH_CERTS },
		{ "tls: { cert: a, key: b, client_ca: c, client_auth: require }\n"
		  "auth: { mode: keys+certs }\n" PROV MOD, AUTH_KEYS_CERTS },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(ok); i++) {
		struct config *c = must_load(ok[i].yaml);
		assert_int_equal(c->auth_mode, ok[i].mode);
		config_free(c);
	}

	expect_err(PROV MOD "auth: { mode: certs }\n",
		   "t.yaml:8: auth.mode: certs needs tls.client_ca (and client_auth optional or require) to verify client certificates");
	expect_err("tls: { cert: a, key: b }\n" PROV MOD "auth:\n  mode: keys+certs\n",
		   "t.yaml:10: auth.mode: keys+certs needs tls.client_ca (and client_auth optional or require) to verify client certificates");
	/* a CA that is not used to verify anything does not count */
	expect_err("tls: { cert: a, key: b, client_ca: c, client_auth: none }\n" PROV MOD "auth: { mode: certs }\n",
		   "t.yaml:9: auth.mode: certs needs tls.client_ca (and client_auth optional or require) to verify client certificates");
	expect_err(PROV MOD "auth: { mode: kys }\n",
		   "t.yaml:8: auth.mode: unknown value \"kys\", expected one of none, keys, certs, keys+certs (did you mean \"keys\"?)");
}

#define TEAMS "teams:\n" \
	"  - name: research\n" \
	"    models: [\"claude-*\", gpt-4o, \"llama-?b\"]\n" \
	"    routes: [fast, private.eu]\n" \
	"  - { name: ops@corp, models: [] }\n" \
	"  - name: idle\n"

static void test_teams(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load(PROV MOD);
	assert_false(c->teams_set);
	assert_int_equal(c->n_teams, 0);
	assert_int_equal(c->n_identities, 0);
	assert_null(config_find_team(c, STR("research")));
	assert_null(config_find_identity(c, STR("alice")));
	config_free(c);

	c = must_load(PROV MOD TEAMS);
	assert_true(c->teams_set);
	assert_int_equal(c->n_teams, 3);
	const struct cfg_team *t = &c->teams[0];
	assert_string_equal(t->name, "research");
	assert_int_equal(t->line, 9);
	assert_int_equal(t->n_models, 3);
	assert_string_equal(t->models[0], "claude-*");
	assert_string_equal(t->models[1], "gpt-4o");
	assert_string_equal(t->models[2], "llama-?b");
	assert_int_equal(t->n_routes, 2);
	assert_string_equal(t->routes[0], "fast");
	assert_string_equal(t->routes[1], "private.eu");
	assert_string_equal(c->teams[1].name, "ops@corp");
	assert_int_equal(c->teams[1].line, 12);
	assert_int_equal(c->teams[1].n_models, 0);
	assert_int_equal(c->teams[2].n_models, 0);
	assert_int_equal(c->teams[2].n_routes, 0);
	config_free(c);

	/* present but empty: policy on, no team */
	const char *empty[] = { PROV MOD "teams: []\n", PROV MOD "teams:\n" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(empty); i++) {
		c = must_load(empty[i]);
		assert_true(c->teams_set);
		assert_int_equal(c->n_teams, 0);
		assert_null(config_find_team(c, STR("research")));
		config_free(c);
	}
}

static void test_team_errors(void **state)
{
	UMB_UNUSED(state);
	expect_err(PROV MOD "teams:\n  - name: \"r&d\"\n",
		   "t.yaml:9: teams[0].name: invalid name \"r&d\", expected letters, digits, '.', '_', '@' or '-'");
	expect_err(PROV MOD "teams:\n  - name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
		   "t.yaml:9: teams[0].name: expected a name of 1 to 64 characters");
	expect_err(PROV MOD "teams:\n  - { models: [m] }\n",
		   "t.yaml:9: teams[0]: missing required key \"name\" (team name: 1-64 letters, digits, '.', '_', '@', '-'; unique)");
	expect_err(PROV MOD "teams:\n  - { name: a }\n  - { name: b }\n  - { name: a, models: [m] }\n",
		   "t.yaml:11: teams[2]: duplicate team name \"a\" (first at line 9), expected unique names");
	expect_err(PROV MOD "teams:\n  - name: a\n    budget: { usd_per_month: 100 }\n",
		   "t.yaml:10: teams[0].budget: unknown key \"usd_per_month\", expected one of usd, period, alert_at");
	expect_err(PROV MOD "teams:\n  - name: a\n    rate_limit: 10\n",
		   "t.yaml:10: teams[0].rate_limit: expected a mapping (key: value ...), got a scalar");
	expect_err(PROV MOD "teams:\n  - name: a\n    rate_limit: {}\n",
		   "t.yaml:10: teams[0].rate_limit: rate_limit needs rpm or tpm (or both)");
	expect_err(PROV MOD "teams:\n  - name: a\n    budget: { period: monthly }\n",
		   "t.yaml:10: teams[0].budget: missing required key \"usd\" (the cap in USD per period)");
	{
		struct config *c = must_load(PROV MOD "budgets: { default_max_tokens: 100 }\n"
					     "teams:\n  - { name: a, budget: { usd: 5, period: weekly },"
					     " rate_limit: { rpm: 60 } }\n"
					     "identities:\n  - { name: u, team: a, budget: { usd: 1.5 } }\n");
		assert_int_equal(c->default_max_tokens, 100);
		assert_true(c->teams[0].budget.set && c->teams[0].budget.usd == 5);
		assert_int_equal(c->teams[0].budget.period, PERIOD_WEEKLY);
		assert_true(c->teams[0].rate_limit.set && c->teams[0].rate_limit.rpm == 60);
		assert_int_equal(c->teams[0].rate_limit.tpm, 0);
		assert_true(c->identities[0].budget.set && c->identities[0].budget.period == PERIOD_MONTHLY);
		assert_true(c->identities[0].budget.alert_at > 0.79 && c->identities[0].budget.alert_at < 0.81);
		assert_false(c->identities[0].rate_limit.set);
		config_free(c);
	}
	expect_err(PROV MOD "teams:\n  - name: a\n    model: [m]\n",
		   "t.yaml:10: teams[0]: unknown key \"model\" (did you mean \"models\"?)");
	expect_err(PROV MOD "teams: { name: a }\n",
		   "t.yaml:8: teams: expected a list of teams, got a mapping");
	expect_err(PROV MOD "teams:\n  - a\n",
		   "t.yaml:9: teams[0]: expected a mapping { name, models, routes }, got a scalar");
	expect_err(PROV MOD "teams:\n  - { name: a, models: m }\n",
		   "t.yaml:9: teams[0].models: expected a list of model names or globs, got a scalar");
	expect_err(PROV MOD "teams:\n  - name: a\n    models:\n      - m\n      - \"\"\n",
		   "t.yaml:12: teams[0].models[1]: expected a model name of 1 to 256 characters");
	expect_err(PROV MOD "teams:\n  - { name: a, models: [[m]] }\n",
		   "t.yaml:9: teams[0].models[0]: expected a model name or glob, got a list");
	expect_err(PROV MOD "teams:\n  - { name: a, models: [\"gpt 4\"] }\n",
		   "t.yaml:9: teams[0].models[0]: invalid model name \"gpt 4\", expected no spaces");
	expect_err(PROV MOD "teams:\n  - { name: a, routes: [\"eu/fast\"] }\n",
		   "t.yaml:9: teams[0].routes[0]: invalid name \"eu/fast\", expected letters, digits, '.', '_', '@' or '-'");

	char *y = malloc(4096);
	assert_non_null(y);
	int n = sprintf(y, PROV MOD "teams:\n  - name: a\n    models: [");
	for (int i = 0; i < 101; i++)
		n += sprintf(y + n, "%sm%d", i ? "," : "", i);
	strcpy(y + n, "]\n");
	expect_err(y, "t.yaml:10: teams[0].models: 101 models, expected at most 100");
	free(y);
}

/* Config names and the store's agree, so a config identity can name a
 * registered one. */
static void test_names_match_store(void **state)
{
	UMB_UNUSED(state);
	const char *names[] = {
		"a", "A.b_c-d", "alice@example.com", "0", "a b", "a/b", "a:b",
		"a+b", "é", "a#b", "a*b",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(names); i++) {
		char y[512];
		struct config_err e;
		snprintf(y, sizeof(y), PROV MOD "teams:\n  - name: \"%s\"\n", names[i]);
		struct config *c = load(y, &e);
		if (!c != !store_name_valid(names[i]))
			fail_msg("\"%s\": config %s, store %s", names[i],
				 c ? "accepts" : "refuses",
				 store_name_valid(names[i]) ? "accepts" : "refuses");
		config_free(c);
	}
}

static void test_identities(void **state)
{
	UMB_UNUSED(state);
	/* identities may come before the teams they name */
	struct config *c = must_load(PROV MOD
		"identities:\n"
		"  - { name: alice@corp, team: research }\n"
		"  - name: ci-bot\n"
		"    team: ops@corp\n"
		TEAMS);
	assert_int_equal(c->n_identities, 2);
	const struct cfg_identity *id = config_find_identity(c, STR("alice@corp"));
	assert_ptr_equal(id, &c->identities[0]);
	assert_string_equal(id->team, "research");
	assert_ptr_equal(id->team, c->teams[0].name);
	assert_int_equal(id->line, 9);
	id = config_find_identity(c, STR("ci-bot"));
	assert_non_null(id);
	assert_string_equal(id->team, "ops@corp");
	assert_int_equal(id->line, 10);
	assert_null(config_find_identity(c, STR("alice")));
	assert_null(config_find_identity(c, STR("alice@corpx")));
	assert_null(config_find_identity(c, STR("")));
	assert_ptr_equal(config_find_team(c, STR("ops@corp")), &c->teams[1]);
	assert_ptr_equal(config_find_team(c, str_cstr(id->team)), &c->teams[1]);
	assert_null(config_find_team(c, STR("ops")));
	assert_null(config_find_team(c, STR("Research")));
	config_free(c);

	c = must_load(PROV MOD TEAMS "identities: []\n");
	assert_int_equal(c->n_identities, 0);
	config_free(c);

	expect_err(PROV MOD TEAMS "identities:\n  - { name: bob, team: reserch }\n",
		   "t.yaml:15: identities[0].team: unknown team \"reserch\", expected one of research, ops@corp, idle (did you mean \"research\"?)");
	expect_err(PROV MOD TEAMS "identities:\n  - { name: bob, team: sales }\n",
		   "t.yaml:15: identities[0].team: unknown team \"sales\", expected one of research, ops@corp, idle");
	expect_err(PROV MOD "teams: []\nidentities:\n  - { name: bob, team: sales }\n",
		   "t.yaml:10: identities[0].team: unknown team \"sales\", teams: lists no team");
	expect_err(PROV MOD "identities:\n  - { name: bob, team: sales }\n",
		   "t.yaml:9: identities: needs teams: as well (each identity's team names an entry in teams:)");
	expect_err(PROV MOD "identities: []\n",
		   "t.yaml:8: identities: needs teams: as well (each identity's team names an entry in teams:)");
	expect_err(PROV MOD TEAMS "identities:\n  - { name: bob, team: idle }\n  - { name: bob, team: research }\n",
		   "t.yaml:16: identities[1]: duplicate identity name \"bob\" (first at line 15), expected unique names");
	expect_err(PROV MOD TEAMS "identities:\n  - { name: bob }\n",
		   "t.yaml:15: identities[0]: missing required key \"team\" (name of a team in teams)");
	expect_err(PROV MOD TEAMS "identities:\n  - { name: \"bob smith\", team: idle }\n",
		   "t.yaml:15: identities[0].name: invalid name \"bob smith\", expected letters, digits, '.', '_', '@' or '-'");
	expect_err(PROV MOD TEAMS "identities:\n  - { name: bob, team: idle, teams: [a] }\n",
		   "t.yaml:15: identities[0]: unknown key \"teams\" (did you mean \"team\"?)");

	/* the candidate list is cut after 20 teams */
	char *y = malloc(8192);
	assert_non_null(y);
	int n = sprintf(y, PROV MOD "teams:\n");
	for (int i = 0; i < 25; i++)
		n += sprintf(y + n, "  - { name: t%d }\n", i);
	strcpy(y + n, "identities: [ { name: x, team: nope } ]\n");
	expect_err(y, "t.yaml:34: identities[0].team: unknown team \"nope\", expected one of "
		   "t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15, t16, t17, t18, t19, ...");
	free(y);
}

static void test_team_allows(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load(PROV MOD TEAMS
		"  - { name: all, models: [\"*\"] }\n");
	const struct cfg_team *r = config_find_team(c, STR("research"));
	assert_non_null(r);
	assert_true(config_team_allows(r, STR("claude-sonnet")));
	assert_true(config_team_allows(r, STR("claude-")));
	assert_false(config_team_allows(r, STR("claude")));
	assert_false(config_team_allows(r, STR("gpt-4o-mini"))); /* exact, not a prefix */
	assert_true(config_team_allows(r, STR("gpt-4o")));
	assert_false(config_team_allows(r, STR("gpt-4")));
	assert_true(config_team_allows(r, STR("llama-8b")));
	assert_false(config_team_allows(r, STR("llama-70b")));
	assert_false(config_team_allows(r, STR("")));
	/* an empty list, or none at all, admits nothing */
	assert_false(config_team_allows(config_find_team(c, STR("ops@corp")), STR("gpt-4o")));
	assert_false(config_team_allows(config_find_team(c, STR("idle")), STR("m")));
	assert_false(config_team_allows(NULL, STR("m")));
	const struct cfg_team *all = config_find_team(c, STR("all"));
	assert_true(config_team_allows(all, STR("anything")));
	assert_true(config_team_allows(all, STR("")));
	config_free(c);
}

/* ---- tunnel, services, service endpoints ---- */

/* TLS_CA on line 1, the tunnel on line 2. */
#define TUN TLS_CA "tunnel: { listen: \"0.0.0.0:8443\" }\n"

static void test_tunnel(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load(PROV MOD);
	assert_false(c->tunnel.enabled);
	assert_int_equal(c->n_services, 0);
	config_free(c);

	/* cert, key and CA come from tls:, even when it comes later */
	const char *from_tls[] = {
		TLS_CA PROV MOD "tunnel:\n  listen: \"0.0.0.0:8443\"\n",
		"tunnel:\n  listen: \"0.0.0.0:8443\"\n" TLS_CA PROV MOD,
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(from_tls); i++) {
		c = must_load(from_tls[i]);
		const struct cfg_tunnel *t = &c->tunnel;
		assert_true(t->enabled);
		assert_string_equal(t->listen_host, "0.0.0.0");
		assert_int_equal(t->listen_port, 8443);
		assert_string_equal(t->cert, "/etc/umbra/gw.crt");
		assert_string_equal(t->key, "/etc/umbra/gw.key");
		assert_string_equal(t->ca, "/etc/umbra/ca.crt");
		assert_int_equal(t->ping_interval_ms, 10000);
		assert_int_equal(t->ping_timeout_ms, 10000);
		assert_int_equal(t->max_streams, 1000);
		/* the gateway's own listen is untouched */
		assert_string_equal(c->listen_host, "127.0.0.1");
		assert_int_equal(c->listen_port, 8080);
		config_free(c);
	}

	/* its own, without tls: at all */
	c = must_load(PROV MOD "tunnel: { listen: \"[::]:8443\", cert: t.crt, key: /k/t.key, ca: tca.crt,\n"
		      "  ping_interval_ms: 100, ping_timeout_ms: 3600000, max_streams: 100000 }\n");
	assert_false(c->tls.enabled);
	assert_string_equal(c->tunnel.listen_host, "::");
	assert_string_equal(c->tunnel.cert, "/etc/umbra/t.crt");
	assert_string_equal(c->tunnel.key, "/k/t.key");
	assert_string_equal(c->tunnel.ca, "/etc/umbra/tca.crt");
	assert_int_equal(c->tunnel.ping_interval_ms, 100);
	assert_int_equal(c->tunnel.ping_timeout_ms, 3600000);
	assert_int_equal(c->tunnel.max_streams, 100000);
	config_free(c);

	/* the same port on another specific address is allowed */
	c = must_load(TLS_CA "listen: \"127.0.0.1:8443\"\n" PROV MOD "tunnel: { listen: \"10.0.0.1:8443\" }\n");
	assert_int_equal(c->tunnel.listen_port, 8443);
	config_free(c);

	/* block sections report at their first line inside */
	expect_err(PROV MOD "tunnel:\n  listen: \"0.0.0.0:8443\"\n",
		   "t.yaml:9: tunnel: no certificate, expected cert and key here or in tls:");
	expect_err(TLS_CA PROV MOD "tunnel: { listen: \"0.0.0.0:8443\", cert: t.crt }\n",
		   "t.yaml:9: tunnel: cert and key must be given together (or neither, to use tls.cert and tls.key)");
	expect_err(PROV MOD "tunnel: { listen: \"0.0.0.0:8443\", key: t.key, ca: ca.crt }\n",
		   "t.yaml:8: tunnel: cert and key must be given together (or neither, to use tls.cert and tls.key)");
	expect_err("tls: { cert: gw.crt, key: gw.key }\n" PROV MOD "tunnel:\n  listen: \"0.0.0.0:8443\"\n",
		   "t.yaml:10: tunnel: no CA to verify connectors, expected ca here or tls.client_ca");
	expect_err(PROV MOD "tunnel: { listen: \"0.0.0.0:8443\", cert: t.crt, key: t.key }\n",
		   "t.yaml:8: tunnel: no CA to verify connectors, expected ca here or tls.client_ca");
	expect_err(TLS_CA "listen: \"127.0.0.1:8443\"\n" PROV MOD "tunnel:\n  listen: \"0.0.0.0:8443\"\n",
		   "t.yaml:11: tunnel.listen: 0.0.0.0:8443 clashes with the gateway's listen 127.0.0.1:8443, expected a port of its own");
	expect_err(TLS_CA PROV MOD "tunnel: { listen: \"127.0.0.1:8080\" }\n",
		   "t.yaml:9: tunnel.listen: 127.0.0.1:8080 clashes with the gateway's listen 127.0.0.1:8080, expected a port of its own");
	expect_err(TLS_CA "listen: \"[::]:9000\"\n" PROV MOD "tunnel: { listen: \"[::1]:9000\" }\n",
		   "t.yaml:10: tunnel.listen: [::1]:9000 clashes with the gateway's listen [::]:9000, expected a port of its own");
	expect_err(TLS_CA PROV MOD "tunnel: { cert: a, key: b }\n",
		   "t.yaml:9: tunnel: missing required key \"listen\" (address connectors dial, host:port or [v6]:port; not the gateway's listen)");
	expect_err(TLS_CA PROV MOD "tunnel:\n",
		   "t.yaml:9: tunnel: missing required key \"listen\" (address connectors dial, host:port or [v6]:port; not the gateway's listen)");
	expect_err_prefix(TLS_CA PROV MOD "tunnel: { listen: gw }\n",
			  "t.yaml:9: tunnel.listen: invalid address \"gw\", expected \"host:port\"");
	expect_err(TLS_CA PROV MOD "tunnel: { listen: \"0.0.0.0:8443\", ping_interval_ms: 99 }\n",
		   "t.yaml:9: tunnel.ping_interval_ms: \"99\" is out of range, expected an integer from 100 to 3600000");
	expect_err(TLS_CA PROV MOD "tunnel: { listen: \"0.0.0.0:8443\", max_streams: 0 }\n",
		   "t.yaml:9: tunnel.max_streams: \"0\" is out of range, expected an integer from 1 to 100000");
	expect_err(TLS_CA PROV MOD "tunnel: { listen: \"0.0.0.0:8443\", max_stream: 5 }\n",
		   "t.yaml:9: tunnel: unknown key \"max_stream\" (did you mean \"max_streams\"?)");
	expect_err(TLS_CA PROV MOD "tunnel: [a]\n",
		   "t.yaml:9: tunnel: expected a mapping (key: value ...), got a list");
}

static void test_services(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load(TUN PROV MOD
		"services:\n"
		"  - name: vllm-pii\n"
		"    hosts: [gpu-1, gpu-2@corp]\n"
		"    users: [compliance, alice@corp, \"*\"]\n"
		"  - { name: ollama, hosts: [gpu-1], users: [] }\n"
		"  - { name: idle, hosts: [gpu-3], users: }\n");
	assert_int_equal(c->n_services, 3);
	const struct cfg_service *sv = &c->services[0];
	assert_string_equal(sv->name, "vllm-pii");
	assert_int_equal(sv->line, 11);
	assert_int_equal(sv->n_hosts, 2);
	assert_string_equal(sv->hosts[0], "gpu-1");
	assert_string_equal(sv->hosts[1], "gpu-2@corp");
	assert_int_equal(sv->n_users, 3);
	assert_string_equal(sv->users[0], "compliance");
	assert_string_equal(sv->users[1], "alice@corp");
	assert_string_equal(sv->users[2], "*");
	assert_int_equal(c->services[1].n_users, 0); /* nobody */
	assert_int_equal(c->services[1].line, 14);
	assert_int_equal(c->services[2].n_users, 0);

	assert_ptr_equal(config_find_service(c, STR("vllm-pii")), &c->services[0]);
	assert_ptr_equal(config_find_service(c, STR("ollama")), &c->services[1]);
	assert_null(config_find_service(c, STR("vllm")));
	assert_null(config_find_service(c, STR("vllm-pii2")));
	assert_null(config_find_service(c, STR("VLLM-PII")));
	assert_null(config_find_service(c, STR("")));
	config_free(c);

	c = must_load(TUN PROV MOD "services: []\n");
	assert_int_equal(c->n_services, 0);
	assert_null(config_find_service(c, STR("x")));
	config_free(c);
	c = must_load(PROV MOD);
	assert_null(config_find_service(c, STR("x")));
	config_free(c);

	expect_err(PROV MOD "services:\n  - { name: s, hosts: [h], users: [] }\n",
		   "t.yaml:9: services: needs tunnel: as well (connectors dial in through it)");
	expect_err(PROV MOD "services: []\n",
		   "t.yaml:8: services: needs tunnel: as well (connectors dial in through it)");
	expect_err(TUN PROV MOD "services:\n  - { name: s, hosts: [], users: [] }\n",
		   "t.yaml:11: services[0].hosts: expected a non-empty list of connector identity names");
	expect_err(TUN PROV MOD "services:\n  - name: s\n    hosts:\n    users: []\n",
		   "t.yaml:12: services[0].hosts: expected a non-empty list of connector identity names");
	expect_err(TUN PROV MOD "services:\n  - { name: s, users: [] }\n",
		   "t.yaml:11: services[0]: missing required key \"hosts\" (bind policy: the connector identities that may host the service)");
	expect_err(TUN PROV MOD "services:\n  - { name: s, hosts: [h] }\n",
		   "t.yaml:11: services[0]: missing required key \"users\" (dial policy: the teams or identities that may use it, \"*\" for anyone; empty: nobody)");
	expect_err(TUN PROV MOD "services:\n  - name: s\n    hosts: [h]\n    users: [ok, \"bob smith\"]\n",
		   "t.yaml:13: services[0].users[1]: invalid name \"bob smith\", expected letters, digits, '.', '_', '@' or '-', or \"*\" for anyone");
	expect_err(TUN PROV MOD "services:\n  - { name: s, hosts: [h], users: [\"**\"] }\n",
		   "t.yaml:11: services[0].users[0]: invalid name \"**\", expected letters, digits, '.', '_', '@' or '-', or \"*\" for anyone");
	expect_err(TUN PROV MOD "services:\n  - { name: s, hosts: [\"*\"], users: [] }\n",
		   "t.yaml:11: services[0].hosts[0]: invalid name \"*\", expected letters, digits, '.', '_', '@' or '-'");
	expect_err(TUN PROV MOD "services:\n  - { name: \"a/b\", hosts: [h], users: [] }\n",
		   "t.yaml:11: services[0].name: invalid name \"a/b\", expected letters, digits, '.', '_', '@' or '-'");
	expect_err(TUN PROV MOD "services:\n  - { name: s, hosts: [h], users: [] }\n  - { name: s, hosts: [g], users: [] }\n",
		   "t.yaml:12: services[1]: duplicate service name \"s\" (first at line 11), expected unique names");
	expect_err(TUN PROV MOD "services:\n  - name: s\n    hosts:\n      - h\n      - h\n    users: []\n",
		   "t.yaml:14: services[0].hosts[1]: \"h\" is listed twice (first at line 13), expected each entry once");
	expect_err(TUN PROV MOD "services:\n  - { name: s, host: [h], users: [] }\n",
		   "t.yaml:11: services[0]: unknown key \"host\" (did you mean \"hosts\"?)");
	expect_err(TUN PROV MOD "services:\n  - { name: s, hosts: h, users: [] }\n",
		   "t.yaml:11: services[0].hosts: expected a list of connector identity names, got a scalar");
}

/* TUN and one service on lines 1-4; a provider from line 5 whose first
 * endpoint (line 9) is the service's. */
#define SVC "services:\n  - { name: vllm-pii, hosts: [gpu-1], users: [\"*\"] }\n"
#define SVC_EP(ep) TUN SVC "providers:\n  - name: p\n    type: openai\n    endpoints:\n" \
	"      - " ep "\n      - { name: h, url: \"http://a\" }\n" MOD

static void test_endpoint_service(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load(SVC_EP("{ name: d, service: vllm-pii, weight: 2 }"));
	const struct cfg_provider *p = &c->providers[0];
	assert_int_equal(p->n_endpoints, 2);
	const struct cfg_endpoint *e = &p->endpoints[0];
	assert_string_equal(e->name, "d");
	assert_int_equal(e->scheme, SCHEME_SERVICE);
	assert_string_equal(e->service, "vllm-pii");
	assert_string_equal(e->origin, "http://vllm-pii");
	assert_null(e->url);
	assert_null(e->unix_path);
	assert_int_equal(e->weight, 2);
	assert_int_equal(e->line, 9);
	assert_ptr_equal(config_find_service(c, str_cstr(e->service)), &c->services[0]);
	assert_null(p->endpoints[1].service);
	assert_int_equal(p->endpoints[1].scheme, SCHEME_HTTP);

	char *out = table_of(c);
	assert_non_null(strstr(out, "d=service:vllm-pii (weight 2), h=http://a (weight 1)\n"));
	assert_non_null(strstr(out, "tunnel 0.0.0.0:8443: max_streams 1000, ping every 10000ms (timeout 10000ms)\n"));
	assert_non_null(strstr(out, "service vllm-pii: hosts gpu-1; users *\n"));
	free(out);
	config_free(c);

	/* services and tunnel may come after the endpoints that use them */
	c = must_load("providers:\n  - name: p\n    type: openai\n    endpoints:\n      - { name: d, service: s }\n"
		      MOD SVC "  - { name: s, hosts: [h], users: [] }\n" TUN);
	assert_int_equal(c->providers[0].endpoints[0].scheme, SCHEME_SERVICE);
	config_free(c);

	expect_err(SVC_EP("{ name: d, service: vllm-pi }"),
		   "t.yaml:9: providers[0].endpoints[0].service: unknown service \"vllm-pi\", expected one of vllm-pii (did you mean \"vllm-pii\"?)");
	expect_err(SVC_EP("{ name: d, service: other }"),
		   "t.yaml:9: providers[0].endpoints[0].service: unknown service \"other\", expected one of vllm-pii");
	expect_err("providers:\n  - name: p\n    type: openai\n    endpoints:\n      - { name: d, service: s }\n" MOD,
		   "t.yaml:5: providers[0].endpoints[0].service: unknown service \"s\", services: lists no service");
	expect_err(SVC_EP("{ name: d, url: \"http://a\", service: vllm-pii }"),
		   "t.yaml:9: providers[0].endpoints[0]: give either url or service, not both");
	expect_err(SVC_EP("{ name: d, weight: 2 }"),
		   "t.yaml:9: providers[0].endpoints[0]: missing url or service, expected exactly one of them");
	expect_err(SVC_EP("{ name: d, service: \"vllm pii\" }"),
		   "t.yaml:9: providers[0].endpoints[0].service: invalid name \"vllm pii\", expected letters, digits, '.', '_', '@' or '-'");
	expect_err(SVC_EP("{ name: d, servce: vllm-pii }"),
		   "t.yaml:9: providers[0].endpoints[0]: unknown key \"servce\" (did you mean \"service\"?)");
	/* a provider's url: stays a URL */
	expect_err(TUN SVC "providers:\n  - { name: p, type: openai, url: \"vllm-pii\" }\n" MOD,
		   "t.yaml:6: providers[0].url: unsupported URL \"vllm-pii\", expected http://host[:port][/prefix], https://host[:port][/prefix] or unix:///absolute/path.sock");
}

/* ---- the connector's config ---- */

#define CONN_ID "identity: { cert: c.crt, key: c.key, ca: ca.crt }\n"
#define CONN_GW "gateways: [\"gw.example.com:8443\"]\n"
#define CONN_SVC "services:\n  - { name: vllm, upstream: \"http://127.0.0.1:8000\" }\n"
#define CONN CONN_ID CONN_GW CONN_SVC /* lines 1-4 */

/* want: ping interval and timeout, reconnect base and max, drain and
 * connect timeouts, log level. */
static void assert_conn_numbers(const struct connector_config *cc, const int want[7])
{
	assert_int_equal(cc->ping_interval_ms, want[0]);
	assert_int_equal(cc->ping_timeout_ms, want[1]);
	assert_int_equal(cc->reconnect_base_ms, want[2]);
	assert_int_equal(cc->reconnect_max_ms, want[3]);
	assert_int_equal(cc->drain_timeout_ms, want[4]);
	assert_int_equal(cc->connect_timeout_ms, want[5]);
	assert_int_equal(cc->log_level, want[6]);
}

static void test_connector_defaults(void **state)
{
	UMB_UNUSED(state);
	struct connector_config *cc = conn_must_load(CONN);
	assert_string_equal(cc->path, "c.yaml");
	assert_string_equal(cc->dir, "/etc/umbra");
	assert_string_equal(cc->cert, "/etc/umbra/c.crt");
	assert_string_equal(cc->key, "/etc/umbra/c.key");
	assert_string_equal(cc->ca, "/etc/umbra/ca.crt");
	assert_int_equal(cc->n_gateways, 1);
	assert_string_equal(cc->gateways[0], "gw.example.com:8443");
	assert_int_equal(cc->n_services, 1);
	const struct conn_service *sv = &cc->services[0];
	assert_string_equal(sv->name, "vllm");
	assert_string_equal(sv->upstream, "http://127.0.0.1:8000");
	assert_int_equal(sv->scheme, SCHEME_HTTP);
	assert_string_equal(sv->origin, "http://127.0.0.1:8000");
	assert_null(sv->unix_path);
	assert_int_equal(sv->line, 4);
	assert_conn_numbers(cc, (const int[]){ 10000, 10000, 250, 30000, 30000, 5000, LOG_INFO });
	connector_config_free(cc);
	connector_config_free(NULL);
}

static void test_connector_all_keys(void **state)
{
	UMB_UNUSED(state);
	setenv("UMB_T_GW", "gw2.example.com:9443", 1);
	struct connector_config *cc = conn_must_load(
		"identity:\n  cert: /pki/c.crt\n  key: pki/c.key\n  ca: pki/ca.crt\n"
		"gateways: [\"gw1.example.com:8443\", \"${UMB_T_GW}\", \"[::1]:8443\", \"10.0.0.1:1\"]\n"
		"services:\n"
		"  - { name: vllm-pii, upstream: \"http://127.0.0.1:8000/v1/\" }\n"
		"  - name: ollama\n"
		"    upstream: \"unix:///run/ollama.sock\"\n"
		"ping_interval_ms: 100\nping_timeout_ms: 3600000\n"
		"reconnect_base_ms: 1\nreconnect_max_ms: 1\n"
		"drain_timeout_ms: 0\nconnect_timeout_ms: 86400000\n"
		"log: { level: debug }\n");
	assert_string_equal(cc->cert, "/pki/c.crt");
	assert_string_equal(cc->key, "/etc/umbra/pki/c.key");
	assert_int_equal(cc->n_gateways, 4);
	assert_string_equal(cc->gateways[1], "gw2.example.com:9443");
	assert_string_equal(cc->gateways[2], "[::1]:8443");
	assert_int_equal(cc->n_services, 2);
	assert_string_equal(cc->services[0].origin, "http://127.0.0.1:8000/v1");
	const struct conn_service *u = &cc->services[1];
	assert_string_equal(u->name, "ollama");
	assert_int_equal(u->scheme, SCHEME_UNIX);
	assert_string_equal(u->unix_path, "/run/ollama.sock");
	assert_string_equal(u->origin, "http://localhost");
	assert_string_equal(u->upstream, "unix:///run/ollama.sock");
	assert_int_equal(u->line, 8);
	assert_conn_numbers(cc, (const int[]){ 100, 3600000, 1, 1, 0, 86400000, LOG_DEBUG });
	connector_config_free(cc);
}

static void test_connector_errors(void **state)
{
	UMB_UNUSED(state);
	conn_expect_err(CONN_GW CONN_SVC,
			"c.yaml:1: missing required key \"identity\" (certificate, key and CA: { cert, key, ca })");
	conn_expect_err("identity: { cert: c.crt, key: c.key }\n" CONN_GW CONN_SVC,
			"c.yaml:1: identity: missing required key \"ca\" (CA bundle that verifies the gateways' certificates)");
	conn_expect_err("identity:\n" CONN_GW CONN_SVC,
			"c.yaml:1: identity: missing required key \"cert\" (this connector's certificate (PEM, kind connector))");
	conn_expect_err(CONN_ID CONN_SVC,
			"c.yaml:1: missing required key \"gateways\" (gateways to dial, host:port or [v6]:port; one connection each)");
	conn_expect_err(CONN_ID CONN_GW,
			"c.yaml:1: missing required key \"services\" (the services this connector offers: { name, upstream })");

	conn_expect_err(CONN_ID "gateways: [gw.example.com]\n" CONN_SVC,
			"c.yaml:2: gateways[0]: invalid address \"gw.example.com\", expected \"host:port\" (e.g. \"gw.example.com:8443\" or \"[2001:db8::1]:8443\") with port 1-65535");
	conn_expect_err(CONN_ID "gateways: [\"gw:0\"]\n" CONN_SVC,
			"c.yaml:2: gateways[0]: invalid address \"gw:0\", expected \"host:port\" (e.g. \"gw.example.com:8443\" or \"[2001:db8::1]:8443\") with port 1-65535");
	conn_expect_err(CONN_ID "gateways:\n  - \"a:1\"\n  - \"b:2\"\n  - \"a:1\"\n" CONN_SVC,
			"c.yaml:5: gateways[2]: \"a:1\" is listed twice (first at line 3), expected each entry once");
	conn_expect_err(CONN_ID "gateways: []\n" CONN_SVC,
			"c.yaml:2: gateways: expected a non-empty list of gateway addresses");
	conn_expect_err(CONN_ID "gateways: \"a:1\"\n" CONN_SVC,
			"c.yaml:2: gateways: expected a list of gateway addresses, got a scalar");
	char *y = malloc(4096);
	assert_non_null(y);
	int n = sprintf(y, CONN_ID "gateways: [");
	for (int i = 0; i < 65; i++)
		n += sprintf(y + n, "%sg%d:1", i ? "," : "", i);
	strcpy(y + n, "]\n" CONN_SVC);
	conn_expect_err(y, "c.yaml:2: gateways: 65 gateways, expected at most 64");
	n = sprintf(y, CONN_ID "gateways: [");
	for (int i = 0; i < 64; i++)
		n += sprintf(y + n, "%sg%d:1", i ? "," : "", i);
	strcpy(y + n, "]\n" CONN_SVC);
	struct connector_config *cc = conn_must_load(y);
	assert_int_equal(cc->n_gateways, 64);
	connector_config_free(cc);
	free(y);

	conn_expect_err(CONN_ID CONN_GW "services:\n  - { name: vllm, upstream: \"https://127.0.0.1:8443\" }\n",
			"c.yaml:4: services[0].upstream: URL \"https://127.0.0.1:8443\" uses https://; the connector reaches local servers over http:// or unix://");
	conn_expect_err(CONN_ID CONN_GW "services:\n  - { name: vllm, upstream: \"ftp://h\" }\n",
			"c.yaml:4: services[0].upstream: unsupported URL \"ftp://h\", expected http://host[:port][/prefix] or unix:///absolute/path.sock");
	conn_expect_err(CONN_ID CONN_GW "services:\n  - { name: vllm, upstream: \"http://h/v1/chat/completions\" }\n",
			"c.yaml:4: services[0].upstream: URL \"http://h/v1/chat/completions\" ends with an API path; give only the origin and an optional prefix (the gateway appends /chat/completions)");
	conn_expect_err(CONN_ID CONN_GW "services: []\n",
			"c.yaml:3: services: expected a non-empty list of services");
	conn_expect_err(CONN_ID CONN_GW "services:\n  - { name: vllm }\n",
			"c.yaml:4: services[0]: missing required key \"upstream\" (local server: http://host[:port][/prefix] or unix:///path.sock)");
	conn_expect_err(CONN "  - { name: vllm, upstream: \"unix:///s.sock\" }\n",
			"c.yaml:5: services[1]: duplicate service name \"vllm\" (first at line 4), expected unique names");
	conn_expect_err(CONN_ID CONN_GW "services:\n  - { name: \"v v\", upstream: \"http://h\" }\n",
			"c.yaml:4: services[0].name: invalid name \"v v\", expected letters, digits, '.', '_', '@' or '-'");
	conn_expect_err(CONN_ID CONN_GW "services:\n  - { name: v, upstrem: \"http://h\" }\n",
			"c.yaml:4: services[0]: unknown key \"upstrem\" (did you mean \"upstream\"?)");

	conn_expect_err(CONN "reconnect_base_ms: 1000\nreconnect_max_ms: 500\n",
			"c.yaml:6: reconnect_max_ms (500) must be at least reconnect_base_ms (1000)");
	conn_expect_err(CONN "reconnect_base_ms: 60000\n",
			"c.yaml:5: reconnect_max_ms (30000) must be at least reconnect_base_ms (60000)");
	conn_expect_err(CONN "reconnect_base_ms: 0\n",
			"c.yaml:5: reconnect_base_ms: \"0\" is out of range, expected an integer from 1 to 3600000");
	conn_expect_err(CONN "ping_timeout_ms: 50\n",
			"c.yaml:5: ping_timeout_ms: \"50\" is out of range, expected an integer from 100 to 3600000");
	conn_expect_err(CONN "drain_timeout_ms: -1\n",
			"c.yaml:5: drain_timeout_ms: \"-1\" is out of range, expected an integer from 0 to 86400000");

	conn_expect_err(CONN "reconect_max_ms: 1\n",
			"c.yaml:5: unknown key \"reconect_max_ms\" (did you mean \"reconnect_max_ms\"?)");
	conn_expect_err(CONN_ID "gateway: [\"a:1\"]\n" CONN_SVC,
			"c.yaml:2: unknown key \"gateway\" (did you mean \"gateways\"?)");
	conn_expect_err(CONN "providers: []\n",
			"c.yaml:5: unknown key \"providers\", expected one of identity, gateways, services, ping_interval_ms, ping_timeout_ms, reconnect_base_ms, reconnect_max_ms, drain_timeout_ms, connect_timeout_ms, log");
	conn_expect_err(CONN "log: { level: verbose }\n",
			"c.yaml:5: log.level: unknown value \"verbose\", expected one of debug, info, warn, error");
	conn_expect_err(CONN "log: { requests: true }\n",
			"c.yaml:5: log: unknown key \"requests\", expected one of level");
	conn_expect_err(CONN_ID "identity: {}\n" CONN_GW CONN_SVC,
			"c.yaml:2: duplicate key \"identity\" (first given at line 1), expected each key once");

	/* the gateway config's shared machinery: ${ENV}, structure, depth */
	unsetenv("UMB_T_UNSET");
	conn_expect_err("identity: { cert: \"${UMB_T_UNSET}\", key: k, ca: c }\n" CONN_GW CONN_SVC,
			"c.yaml:1: identity.cert: environment variable UMB_T_UNSET is not set (set it, or write ${UMB_T_UNSET:-default})");
	conn_expect_err("", "c.yaml:1: empty configuration, expected a mapping with at least identity:, gateways: and services:");
	conn_expect_err("- a\n", "c.yaml:1: expected a mapping at the top level (identity:, gateways:, services: ...), got a list");
	conn_expect_err(CONN "---\nidentity: {}\n", "c.yaml:6: a second YAML document (---), expected exactly one");
	conn_expect_err(CONN "x: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
			"c.yaml:5: nesting deeper than 32 levels, expected a flatter document");
	struct config_err e;
	assert_null(conn_load("identity: [\n", &e));
	assert_int_equal(strncmp(e.msg, "c.yaml:", 7), 0);
	assert_non_null(strstr(e.msg, "YAML syntax error"));
	/* a gateway config is not a connector config */
	assert_null(conn_load(PROV MOD, &e));
	assert_string_equal(e.msg, "c.yaml:1: unknown key \"providers\", expected one of identity, gateways, services, ping_interval_ms, ping_timeout_ms, reconnect_base_ms, reconnect_max_ms, drain_timeout_ms, connect_timeout_ms, log");
}

/* A connector file's relative paths resolve against its directory. */
static void test_connector_file(void **state)
{
	UMB_UNUSED(state);
	char dir[] = "/tmp/umb-test-conn-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[512], want[600];
	snprintf(path, sizeof(path), "%s/c.yaml", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(CONN, f);
	fclose(f);
	struct config_err e;
	struct connector_config *cc = connector_config_load_file(path, &e);
	if (!cc)
		fail_msg("%s", e.msg);
	snprintf(want, sizeof(want), "%s/c.crt", dir);
	assert_string_equal(cc->cert, want);
	assert_string_equal(cc->dir, dir);
	assert_string_equal(cc->path, path);
	connector_config_free(cc);
	unlink(path);
	rmdir(dir);
	/* reading errors come from the code test_paths covers */
	assert_null(connector_config_load_file("/nonexistent/c.yaml", &e));
	assert_string_equal(e.msg, "/nonexistent/c.yaml: cannot open: No such file or directory");
}

static void test_connector_example_file(void **state)
{
	UMB_UNUSED(state);
	struct config_err e;
	unsetenv("UMBRA_GATEWAY");
	struct connector_config *cc =
		connector_config_load_file(UMB_SRCDIR "/etc/connector.example.yaml", &e);
	if (!cc)
		fail_msg("%s", e.msg);
	assert_true(cc->n_gateways >= 1);
	assert_string_equal(cc->gateways[0], "gw1.example.com:8443");
	assert_true(cc->n_services >= 2);
	bool unix_seen = false;
	for (size_t i = 0; i < cc->n_services; i++)
		unix_seen |= cc->services[i].scheme == SCHEME_UNIX;
	assert_true(unix_seen);
	connector_config_free(cc);
}

/* ---- sections ---- */

static void test_health_check(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load("providers:\n  - name: p\n    type: openai\n    url: http://a\n    health_check: {}\n" MOD);
	assert_true(c->providers[0].health.enabled);
	assert_string_equal(c->providers[0].health.path, "/v1/models");
	assert_int_equal(c->providers[0].health.interval_s, 30);
	config_free(c);
	c = must_load("providers:\n  - name: p\n    type: openai\n    url: http://a\n    health_check:\n" MOD);
	assert_true(c->providers[0].health.enabled);
	config_free(c);
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    health_check: { interval_s: 2, timeout_s: 5 }\n" MOD,
		   "t.yaml:5: providers[0].health_check: timeout_s (5) must not exceed interval_s (2)");
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    health_check: { path: health }\n" MOD,
		   "t.yaml:5: providers[0].health_check: path \"health\" must start with '/'");
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    ejection: { base_ms: 500, max_ms: 100 }\n" MOD,
		   "t.yaml:5: providers[0].ejection: max_ms (100) must be at least base_ms (500)");
}

static void test_headers(void **state)
{
	UMB_UNUSED(state);
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    headers: { Host: x }\n" MOD,
		   "t.yaml:5: providers[0].headers: header \"Host\" is set by the gateway and cannot be configured");
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    headers: { \"Bad Name\": x }\n" MOD,
		   "t.yaml:5: providers[0].headers: invalid header name \"Bad Name\", expected letters, digits and -");
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    headers: [a]\n" MOD,
		   "t.yaml:5: providers[0].headers: expected a mapping of header name to value, got a list");
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    headers: { X-A: [1] }\n" MOD,
		   "t.yaml:5: providers[0].headers.X-A: expected a header value, got a list");
	expect_err("providers:\n  - name: p\n    type: openai\n    url: http://a\n    headers: { X-A: \"a\\nb\" }\n" MOD,
		   "t.yaml:5: providers[0].headers.X-A: control character 0x0a in value, expected printable text");
}

static void test_aliases(void **state)
{
	UMB_UNUSED(state);
	/* anchors and aliases work for plain reuse */
	struct config *c = must_load(
		"providers:\n  - name: p\n    type: openai\n    url: http://a\n    timeouts: &t { connect_ms: 7 }\n"
		"  - { name: q, type: openai, url: \"http://b\", timeouts: *t }\n" MOD);
	assert_int_equal(c->providers[1].timeouts.connect_ms, 7);
	config_free(c);
	/* a provider aliased twice is a duplicate, not an expansion */
	expect_err("providers:\n  - &p { name: p, type: openai, url: \"http://a\" }\n  - *p\n" MOD,
		   "t.yaml:2: providers[1]: duplicate provider name \"p\" (first at line 2), expected unique names");
}

/* Inputs that would make the loader (or libyaml) slow are refused early. */
static void test_hostile_input(void **state)
{
	UMB_UNUSED(state);
	char *y = malloc(300000);
	assert_non_null(y);
	strcpy(y, PROV MOD "x: ");
	size_t n = strlen(y);
	for (int i = 0; i < 100000; i++)
		y[n++] = '[';
	for (int i = 0; i < 100000; i++)
		y[n++] = ']';
	y[n] = 0;
	expect_err(y, "t.yaml:8: nesting deeper than 32 levels, expected a flatter document");

	n = (size_t)sprintf(y, "providers:\n  - name: p\n    type: openai\n    url: http://a\n    headers:\n");
	for (int i = 0; i < 101; i++)
		n += (size_t)sprintf(y + n, "      X-%d: v\n", i);
	strcpy(y + n, MOD);
	expect_err(y, "t.yaml:6: providers[0].headers: 101 headers, expected at most 100");

	n = (size_t)sprintf(y, PROV "models:\n  - name: m\n    provider: p\n    fallbacks: [");
	for (int i = 0; i < 101; i++)
		n += (size_t)sprintf(y + n, "%sm%d", i ? "," : "", i);
	strcpy(y + n, "]\n");
	expect_err(y, "t.yaml:8: models[0].fallbacks: 101 fallbacks, expected at most 100");
	free(y);

	/* a NUL byte is a syntax error, not a truncated file */
	struct config_err e;
	const char nul[] = PROV MOD "\0listen: x\n";
	assert_null(config_load_string(nul, sizeof(nul) - 1, "t.yaml", "/", &e));
	assert_non_null(strstr(e.msg, "YAML syntax error"));
}

static void test_print_table(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load(
		"providers:\n  - name: p\n    type: openai\n    endpoints:\n"
		"      - { name: a, url: \"http://a:1\", weight: 2 }\n"
		"      - { name: b, url: \"http://b:2\", backup: true }\n"
		"    health_check: { interval_s: 9 }\n"
		"models:\n  - { name: m, provider: p, upstream_model: up, locality: cloud, fallbacks: [n] }\n"
		"  - { name: n, provider: p }\n");
	char *out = table_of(c);
	assert_non_null(strstr(out, "MODEL  PROVIDER    UPSTREAM MODEL  LOCALITY  FALLBACKS  ENDPOINTS\n"));
	assert_non_null(strstr(out, "m      p (openai)  up              cloud     n          a=http://a:1 (weight 2), b=http://b:2 (weight 1, backup)\n"));
	assert_non_null(strstr(out, "n      p (openai)  (as requested)  -         -"));
	assert_non_null(strstr(out, "provider p (openai): health_check GET /v1/models every 9s"));
	free(out);
	config_free(c);
	assert_string_equal(provider_type_name(PROVIDER_BEDROCK), "bedrock");
}

/* Every key of every table is documented in docs/config.md: the
 * gateway's before "## Connector config", the connector's after it. */
static void test_docs_cover_keys(void **state)
{
	UMB_UNUSED(state);
	FILE *f = fopen(UMB_SRCDIR "/docs/config.md", "r");
	assert_non_null(f);
	static char doc[1 << 17];
	size_t n = fread(doc, 1, sizeof(doc) - 1, f);
	doc[n] = 0;
	fclose(f);
	char *conn = strstr(doc, "\n## Connector config\n");
	assert_non_null(conn);
	*conn++ = 0; /* doc: the gateway part, conn: the connector part */
	static const struct { const struct cfg_section *sec; bool connector; } secs[] = {
		{ &config_section, false }, { &tls_section, false },
		{ &limits_section, false }, { &log_section, false },
		{ &auth_section, false }, { &metrics_section, false },
		{ &provider_section, false }, { &endpoint_section, false },
		{ &health_section, false }, { &timeouts_section, false },
		{ &ejection_section, false }, { &model_section, false },
		{ &price_section, false }, { &team_section, false },
		{ &identity_section, false }, { &tunnel_section, false },
		{ &service_section, false }, { &routing_section, false },
		{ &rule_section, false }, { &rule_match_section, false },
		{ &heuristics_section, false }, { &semantic_section, false },
		{ &classifier_section, false }, { &sensitive_section, false },
		{ &detector_section, false }, { &route_section, false },
		{ &audit_section, false }, { &budget_section, false },
		{ &rate_limit_section, false }, { &budgets_section, false },
		{ &connector_section, true }, { &conn_identity_section, true },
		{ &conn_service_section, true }, { &conn_log_section, true },
	};
	for (size_t s = 0; s < UMB_ARRAY_LEN(secs); s++) {
		const struct cfg_section *sec = secs[s].sec;
		char *part = secs[s].connector ? conn : doc;
		const char *where = secs[s].connector ? "its connector part" : "its gateway part";
		for (size_t k = 0; k < sec->n_keys; k++) {
			const struct cfg_key *key = &sec->keys[k];
			char want[128];
			snprintf(want, sizeof(want), "`%s`", key->name);
			if (!strstr(part, want))
				fail_msg("docs/config.md does not document %s.%s in %s",
					 sec->name, key->name, where);
			if (key->def && key->kind != CK_SECTION) {
				snprintf(want, sizeof(want), "| `%s` |", key->name);
				char *row = strstr(part, want);
				char *eol = row ? strchr(row, '\n') : NULL;
				if (eol)
					*eol = 0;
				if (!row || !strstr(row, key->def))
					fail_msg("docs/config.md: %s.%s should show default %s in %s",
						 sec->name, key->name, key->def, where);
				if (eol)
					*eol = '\n';
			}
		}
	}
}


/* Two providers and models of both localities, for routing: lines 1-7. */
#define RPROV "providers:\n  - { name: on, type: openai, url: \"http://127.0.0.1:1\" }\n" \
	"  - { name: cl, type: openai, url: \"http://127.0.0.1:2\" }\n" \
	"models:\n  - { name: llama, provider: on, locality: onprem }\n" \
	"  - { name: gpt, provider: cl, locality: cloud }\n  - { name: \"g-*\", provider: cl }\n"
#define RROUTES "  routes:\n    - { name: pii, model: llama }\n    - { name: general, model: gpt }\n"

static void test_routing(void **state)
{
	UMB_UNUSED(state);
	struct config *c = must_load(RPROV "routing:\n  default_route: general\n"
		"  heuristics:\n    rules:\n"
		"      - { name: code, match: { keywords: [\"c++\", sql], exclude: [excel], scope: last_user,"
		" has_tools: false, max_tokens_lt: 500, message_length_lt: 4000 }, route: general }\n"
		"      - { match: { regex: [\"(?i)\\\\bdef\\\\s\"], detectors: [acct, iban],"
		" system_prompt_contains: [bank] }, route: pii }\n"
		"  semantic: { comparison: max, threshold: 0.8, ambiguous_threshold: 0.4 }\n"
		"  classifier: { model: llama, timeout_ms: 900 }\n"
		"  sensitive: { action: reroute, route: pii }\n"
		"  detectors: [ { name: acct, regex: \"ACC-\\\\d{8}\" } ]\n"
		"  routes:\n    - { name: pii, model: llama, description: \"personal data\",\n"
		"        examples: [\"line one\\nline two ${NOT_EXPANDED}\", b] }\n"
		"    - { name: general, model: gpt }\n");
	const struct cfg_routing *rt = &c->routing;
	assert_true(rt->enabled);
	assert_string_equal(rt->default_route, "general");
	assert_int_equal(rt->n_rules, 2);
	assert_string_equal(rt->rules[0].name, "code");
	assert_string_equal(rt->rules[1].name, "rule-2");
	assert_int_equal(rt->rules[0].n_keywords, 2);
	assert_int_equal(rt->rules[0].scope, SCOPE_LAST_USER);
	assert_int_equal(rt->rules[0].has_tools, TRI_FALSE);
	assert_int_equal(rt->rules[0].max_tokens_lt, 500);
	assert_int_equal(rt->rules[1].has_tools, TRI_UNSET);
	assert_int_equal(rt->rules[1].scope, SCOPE_CONVERSATION);
	assert_true(rt->semantic.enabled);
	assert_string_equal(rt->semantic.embedder, "builtin"); /* the default */
	assert_true(rt->semantic.threshold > 0.79 && rt->semantic.threshold < 0.81); /* as given */
	assert_int_equal(rt->semantic.comparison, SEM_MAX);
	assert_int_equal(rt->semantic.cache_size, 10000);
	assert_true(rt->classifier.enabled);
	assert_int_equal(rt->classifier.timeout_ms, 900);
	assert_true(rt->classifier.confidence_threshold > 0.59 && rt->classifier.confidence_threshold < 0.61);
	assert_true(rt->sensitive.enabled);
	assert_int_equal(rt->sensitive.n_detectors, PII_KINDS); /* every built-in */
	assert_int_equal(rt->sensitive.action, SENSITIVE_REROUTE);
	assert_string_equal(rt->routes[0].examples[0], "line one\nline two ${NOT_EXPANDED}");
	assert_ptr_equal(rt->routes[0].model_ref, &c->models[0]);
	config_free(c);

	/* the builtin embedder's own threshold defaults */
	c = must_load(RPROV "routing:\n  default_route: general\n  semantic: {}\n" RROUTES);
	assert_true(c->routing.semantic.threshold == SEM_BUILTIN_THRESHOLD);
	assert_true(c->routing.semantic.ambiguous_threshold == SEM_BUILTIN_AMBIGUOUS);
	config_free(c);
	c = must_load(RPROV "routing:\n  default_route: general\n  semantic: { provider: on, model: x }\n" RROUTES);
	assert_true(c->routing.semantic.threshold == 0.75 && c->routing.semantic.ambiguous_threshold == 0.5);
	config_free(c);

	/* absent layers are off */
	c = must_load(RPROV "routing:\n  default_route: general\n" RROUTES);
	assert_true(c->routing.enabled && c->routing.heuristics_enabled);
	assert_false(c->routing.semantic.enabled || c->routing.classifier.enabled ||
		     c->routing.sensitive.enabled);
	config_free(c);
	c = must_load(RPROV);
	assert_false(c->routing.enabled);
	config_free(c);

	/* errors name the line and what was expected */
	expect_err(RPROV "routing:\n  default_route: nope\n" RROUTES,
		   "t.yaml:9: routing.default_route: unknown route \"nope\", expected one of pii, general");
	expect_err(RPROV "routing:\n  default_route: general\n  routes:\n    - { name: pii, model: \"g-*\" }\n",
		   "t.yaml:11: routing.routes[0]: model \"g-*\" is not the exact name of a model in models:");
	expect_err(RPROV "routing:\n  default_route: general\n  sensitive: { route: general }\n" RROUTES,
		   "t.yaml:10: routing.sensitive: route \"general\" serves model \"gpt\", which is not "
		   "locality: onprem; sensitive data may only be rerouted on-prem");
	expect_err(RPROV "routing:\n  default_route: general\n  sensitive: { action: reroute }\n" RROUTES,
		   "t.yaml:10: routing.sensitive: action: reroute needs route: (an on-prem route)");
	expect_err(RPROV "routing:\n  default_route: general\n  sensitive: { detectors: [emial], action: block }\n" RROUTES,
		   "t.yaml:10: routing.sensitive: unknown detector \"emial\", expected email, credit_card, "
		   "ssn, iban, phone or a name in routing.detectors");
	expect_err(RPROV "routing:\n  default_route: general\n  heuristics:\n    rules:\n"
		   "      - { match: { regex: [\"(unclosed\"] }, route: general }\n" RROUTES,
		   "t.yaml:12: routing.heuristics.rules[0]: regex \"(unclosed\" does not compile: "
		   "missing closing parenthesis at offset 9");
	expect_err(RPROV "routing:\n  default_route: general\n  heuristics:\n    rules:\n"
		   "      - { match: { scope: last_user }, route: general }\n" RROUTES,
		   "t.yaml:12: routing.heuristics.rules[0]: rule has no condition, expected match: with "
		   "keywords, regex, system_prompt_contains, has_tools, max_tokens_lt, message_length_lt or detectors");
	expect_err(RPROV "routing:\n  default_route: general\n  heuristics:\n    rules:\n"
		   "      - { match: { keywords: [x] }, route: codign }\n" RROUTES,
		   "t.yaml:12: routing.heuristics.rules[0]: unknown route \"codign\", expected one of pii, general");
	expect_err(RPROV "routing:\n  default_route: general\n  detectors: [ { name: email, regex: x } ]\n" RROUTES,
		   "t.yaml:10: routing.detectors[0]: \"email\" is a built-in detector, expected another name");
	expect_err(RPROV "routing:\n  default_route: general\n  semantic: { threshold: 0.3, ambiguous_threshold: 0.5 }\n" RROUTES,
		   "t.yaml:10: routing.semantic: ambiguous_threshold (0.5) must not exceed threshold (0.3)");
	expect_err(RPROV "routing:\n  default_route: general\n  semantic: { embedder: bert }\n" RROUTES,
		   "t.yaml:10: routing.semantic: unknown embedder \"bert\", expected builtin (or provider: NAME with model: M)");
	expect_err(RPROV "routing:\n  default_route: general\n  classifier: { model: \"g-*\" }\n" RROUTES,
		   "t.yaml:10: routing.classifier: model \"g-*\" is not the exact name of a model in models:");
	expect_err(RPROV "routing:\n  default_route: general\n  routes: []\n",
		   "t.yaml:9: routing: routes: lists no route, expected at least one { name, model }");
	expect_err(RPROV "teams:\n  - { name: t, models: [\"*\"], routes: [nope] }\n"
		   "routing:\n  default_route: general\n" RROUTES,
		   "t.yaml:9: teams[0].routes: unknown route \"nope\", expected a name in routing.routes");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_all_keys_set),
		cmocka_unit_test(test_embedded_default),
		cmocka_unit_test(test_example_file),
		cmocka_unit_test(test_yaml_syntax),
		cmocka_unit_test(test_syntax_error_line),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_unimplemented),
		cmocka_unit_test(test_provider_type_defaults),
		cmocka_unit_test(test_provider_type),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_required),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_urls),
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_find_model),
		cmocka_unit_test(test_model_provider),
		cmocka_unit_test(test_fallbacks),
		cmocka_unit_test(test_auth_modes),
		cmocka_unit_test(test_teams),
		cmocka_unit_test(test_team_errors),
		cmocka_unit_test(test_names_match_store),
		cmocka_unit_test(test_identities),
		cmocka_unit_test(test_team_allows),
		cmocka_unit_test(test_tunnel),
		cmocka_unit_test(test_services),
		cmocka_unit_test(test_endpoint_service),
		cmocka_unit_test(test_connector_defaults),
		cmocka_unit_test(test_connector_all_keys),
		cmocka_unit_test(test_connector_errors),
		cmocka_unit_test(test_connector_file),
		cmocka_unit_test(test_connector_example_file),
		cmocka_unit_test(test_health_check),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_hostile_input),
		cmocka_unit_test(test_print_table),
		cmocka_unit_test(test_docs_cover_keys),
		cmocka_unit_test(test_routing),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
