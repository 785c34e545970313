/* route_cmd.c — `umbra route -c FILE --explain`: the routing decision for
 * each chat request read as one JSON line on stdin, printed as one JSON
 * line on stdout, for tuning a config and for evaluation (docs/routing.md).
 *
 * The same code decides as in the gateway (router.c): guard, explicit
 * model or cascade. The only network calls are the provider embedder's and
 * the classifier's, made here with libcurl, blocking, within their
 * timeout_ms; one behind a dark service cannot be reached from the CLI
 * (the trace says so, and the cascade goes on as in the gateway). */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"
#include "core/json.h"
#include "routing/router.h"

#define ROUTE_CMD_MAX_LINE (8u << 20)

static size_t route_cmd_collect(char *p, size_t size, size_t n, void *arg)
{
	return buf_append(arg, p, size * n) ? 0 : size * n;
}

/* POST body to the model's provider (first endpoint) at path, blocking
 * for at most timeout_ms; returns the HTTP status (0 when the call failed,
 * with a reason in *why) and the response body in out. */
static int route_cmd_post(const struct cfg_model *m, const char *path, struct str body,
			  int timeout_ms, struct buf *out, const char **why)
{
	const struct cfg_provider *p = m->provider;
	const struct cfg_endpoint *ep = &p->endpoints[0];
	if (ep->scheme == SCHEME_SERVICE) {
		*why = "behind a dark service: not reachable from the CLI";
		return 0;
	}
	struct buf url, auth;
	buf_init(&url, 0);
	buf_init(&auth, 0);
	buf_printf(&url, "%s%s", ep->origin, path);
	CURL *e = curl_easy_init();
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	const char *key = m->api_key ? m->api_key : p->api_key;
	if (key && *key) {
		buf_printf(&auth, "Authorization: Bearer %s", key);
		h = curl_slist_append(h, auth.p);
	}
	curl_easy_setopt(e, CURLOPT_URL, url.p);
	if (ep->unix_path)
		curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, ep->unix_path);
	if (p->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, p->ca_file);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.p);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.n);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, route_cmd_collect);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
	long status = 0;
	CURLcode rc = curl_easy_perform(e);
	if (rc == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	else
		*why = curl_easy_strerror(rc);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	buf_clear(&url);
	buf_clear(&auth);
	return rc == CURLE_OK ? (int)status : 0;
}

/* The remote layers the cascade asked for, in order, blocking. */
static void route_cmd_remote(const struct config *cfg, struct router *rt,
			     const struct route_text *t, struct route_decision *d)
{
	struct buf body, ans;
	const char *why = NULL;
	buf_init(&body, 0);
	buf_init(&ans, 64u << 20);
	if (d->want_embedding) {
		const struct cfg_model *m;
		router_embed_request(rt, t, d, &body, &m);
		int st = route_cmd_post(m, "/v1/embeddings", buf_str(&body),
					cfg->routing.semantic.timeout_ms, &ans, &why);
		router_embed_answer(rt, t, st, buf_str(&ans), d);
	}
	if (d->want_classifier && !router_classifier_cached(rt, t, d)) {
		const struct cfg_classifier *cc = &cfg->routing.classifier;
		const struct cfg_model *m = config_find_model(cfg, str_cstr(cc->model));
		buf_reset(&body);
		buf_reset(&ans);
		router_classifier_body(rt, t, m->upstream_model ? m->upstream_model : m->name, &body);
		int st = route_cmd_post(m, "/v1/chat/completions", buf_str(&body), cc->timeout_ms,
					&ans, &why);
		router_classifier_answer(rt, t, st, buf_str(&ans), d);
	}
	buf_clear(&body);
	buf_clear(&ans);
}

/* One request line → one decision line. */
static void route_cmd_line(const struct config *cfg, struct router *rt, struct str line,
			   struct buf *o)
{
	struct arena *a = arena_new(0);
	struct json_val root, msgs, model, tools, mt;
	struct json_err jerr;
	struct route_text t;
	struct route_decision d;
	char why[160];
	route_decision_init(&d);
	buf_reset(o);
	if (json_parse(line.p, line.n, &root, &jerr) || root.type != JSON_OBJECT) {
		buf_printf(o, "{\"error\":\"not a JSON object (%s at byte %zu)\"}\n",
			   root.type == JSON_OBJECT ? "" : jerr.msg, jerr.off);
		goto out;
	}
	if (!json_obj_get(root, "messages", &msgs) || msgs.type != JSON_ARRAY) {
		buf_append_lit(o, "{\"error\":\"'messages' must be an array\"}\n");
		goto out;
	}
	bool have_tools = json_obj_get(root, "tools", &tools);
	bool have_mt = json_obj_get(root, "max_tokens", &mt) ||
		       json_obj_get(root, "max_completion_tokens", &mt);
	if (router_text_extract(a, msgs, have_tools ? &tools : NULL, have_mt ? &mt : NULL,
				&t, why, sizeof why)) {
		buf_append_lit(o, "{\"error\":");
		json_write_cstr(o, why);
		buf_append_lit(o, "}\n");
		goto out;
	}
	const struct cfg_model *explicit_model = NULL;
	if (json_obj_get(root, "model", &model) && model.type == JSON_STRING &&
	    !json_str_eq(model, "auto")) {
		struct buf mn;
		buf_init(&mn, 1024);
		json_str_decode(model, &mn);
		explicit_model = config_find_model(cfg, buf_str(&mn));
		buf_clear(&mn);
	}
	router_guard(rt, &t, &d);
	enum guard_verdict v = router_guard_verdict(rt, explicit_model, &d);
	bool blocked = v == GUARD_BLOCK;
	if (v == GUARD_PASS && !explicit_model) {
		router_cascade(rt, &t, &d);
		route_cmd_remote(cfg, rt, &t, &d);
	}
	buf_append_lit(o, "{\"route\":");
	if (d.route)
		json_write_cstr(o, d.route->name);
	else
		buf_append_lit(o, "null");
	buf_printf(o, ",\"method\":\"%s\",\"score\":", route_method_name(d.method));
	if (d.score >= 0)
		buf_printf(o, "%.4f", d.score);
	else
		buf_append_lit(o, "null");
	if (explicit_model) {
		buf_append_lit(o, ",\"model\":");
		json_write_cstr(o, explicit_model->name);
	}
	if (blocked)
		buf_append_lit(o, ",\"blocked\":true");
	buf_append_lit(o, ",\"detectors\":");
	router_write_detectors(rt, &d, o);
	buf_append_lit(o, ",\"trace\":");
	buf_append(o, d.trace.p, d.trace.n);
	buf_append_lit(o, "]}\n");
out:
	route_decision_clear(&d);
	arena_free(a);
}

int route_cmd_main(int argc, char **argv)
{
	const char *path = NULL;
	bool explain = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-c") && i + 1 < argc)
			path = argv[++i];
		else if (!strcmp(argv[i], "--explain"))
			explain = true;
		else {
			fprintf(stderr, "usage: umbra route -c FILE --explain < requests.jsonl\n");
			return 2;
		}
	}
	if (!path || !explain) {
		fprintf(stderr, "usage: umbra route -c FILE --explain < requests.jsonl\n");
		return 2;
	}
	struct config_err err;
	struct config *cfg = config_load_file(path, &err);
	if (!cfg) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	if (!cfg->routing.enabled) {
		fprintf(stderr, "umbra route: %s has no routing: section\n", path);
		config_free(cfg);
		return 1;
	}
	char msg[512];
	struct router *rt = router_new(cfg, msg, sizeof msg);
	if (!rt) {
		fprintf(stderr, "umbra route: %s\n", msg);
		config_free(cfg);
		return 1;
	}
	router_set_explain(rt, true);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	struct buf in, o;
	buf_init(&in, ROUTE_CMD_MAX_LINE);
	buf_init(&o, 0);
	int rc = 0;
	char chunk[65536];
	size_t got;
	bool eof = false;
	while (!eof) {
		got = fread(chunk, 1, sizeof chunk, stdin);
		eof = got < sizeof chunk;
		if (got && buf_append(&in, chunk, got)) {
			fprintf(stderr, "umbra route: a line is longer than %u bytes\n", ROUTE_CMD_MAX_LINE);
			rc = 1;
			break;
		}
		for (;;) {
			char *nl = in.n ? memchr(in.p, '\n', in.n) : NULL;
			if (!nl && !(eof && in.n))
				break;
			size_t len = nl ? (size_t)(nl - in.p) : in.n;
			struct str line = str_trim(str_make(in.p, len));
			if (line.n) {
				route_cmd_line(cfg, rt, line, &o);
				fwrite(o.p, 1, o.n, stdout);
			}
			buf_consume(&in, nl ? len + 1 : len);
		}
	}
	fflush(stdout);
	buf_clear(&in);
	buf_clear(&o);
	router_free(rt);
	config_free(cfg);
	curl_global_cleanup();
	return rc;
}
