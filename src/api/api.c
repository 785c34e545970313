/* api.c — request routing, error bodies, request ids, request logs. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "api/api.h"
#include "audit/audit.h"
#include "spend/usage.h"
#include "core/json.h"
#include "metrics/metrics.h"
#include "providers/anthropic_fmt.h"
#include "upstream/upstream.h"

static void api_errorv(struct req *r, int status, struct str extra, const char *type,
		       const char *code, const char *fmt, va_list ap)
	__attribute__((format(printf, 6, 0)));

enum api_dialect api_dialect(const struct req *r)
{
	struct str path = r->head.path;
	if (path.n > 1 && path.p[path.n - 1] == '/')
		path.n--;
	return str_eq_cstr(path, "/v1/messages") ? DIALECT_ANTHROPIC : DIALECT_OPENAI;
}

/* Anthropic's error type for a status (docs.anthropic.com "Errors"); the
 * OpenAI type is kept where both dialects share the name. */
static const char *anthropic_error_type(int status, const char *openai_type)
{
	switch (status) {
	case 401: return "authentication_error";
	case 403: return "permission_error";
	case 404: return "not_found_error";
	case 413: return "request_too_large";
	case 429: return "rate_limit_error";
	case 503: return "overloaded_error";
	case 504: return "timeout_error";
	default: return status >= 500 ? "api_error" : status >= 400 ? "invalid_request_error"
								  : openai_type;
	}
}

static void api_errorv(struct req *r, int status, struct str extra, const char *type,
		       const char *code, const char *fmt, va_list ap)
{
	char msg[512];
	int len = vsnprintf(msg, sizeof msg, fmt, ap);
	if (len >= (int)sizeof msg) /* never cut a character in two */
		msg[utf8_complete_prefix(msg, sizeof msg - 1)] = 0;
	struct buf b;
	buf_init(&b, 0);
	if (api_dialect(r) == DIALECT_ANTHROPIC) {
		anthropic_error_body(anthropic_error_type(status, type), msg, &b);
	} else {
		buf_append_cstr(&b, "{\"error\":{\"message\":");
		json_write_cstr(&b, msg);
		buf_append_cstr(&b, ",\"type\":");
		json_write_cstr(&b, type);
		buf_append_cstr(&b, ",\"param\":null,\"code\":");
		if (code)
			json_write_cstr(&b, code);
		else
			buf_append_cstr(&b, "null");
		buf_append_cstr(&b, "}}");
	}
	char *body = arena_strndup(r->arena, b.p, b.n);
	struct http_resp resp = { .status = status,
				  .content_type = "application/json",
				  .extra_headers = extra,
				  .body = str_make(body, b.n) };
	buf_clear(&b);
	if (!r->error_kind)
		r->error_kind = code ? code : type;
	http_respond(r, &resp);
}

void api_error(struct req *r, int status, const char *type, const char *code,
	       const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	api_errorv(r, status, STR_NULL, type, code, fmt, ap);
	va_end(ap);
}

void api_error_h(struct req *r, int status, struct str extra, const char *type,
		 const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	api_errorv(r, status, extra, type, code, fmt, ap);
	va_end(ap);
}

void api_request_id(struct req *r)
{
	const struct str *h = http_header_get(&r->head, "x-request-id");
	if (h && h->n > 0 && h->n < sizeof r->id) {
		bool ok = true;
		for (size_t i = 0; i < h->n && ok; i++) {
			char c = h->p[i];
			ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':';
		}
		if (ok) {
			memcpy(r->id, h->p, h->n);
			r->id[h->n] = 0;
			return;
		}
	}
	/* 128 random bits as 32 hex digits, formatted by hand: this runs for
	 * every request and snprintf costs more than everything else here */
	static const char hex[] = "0123456789abcdef";
	for (int half = 0; half < 2; half++) {
		uint64_t v = rand_fast();
		for (int i = 0; i < 16; i++, v >>= 4)
			r->id[half * 16 + i] = hex[v & 15];
	}
	r->id[32] = 0;
}

/* Refusals by policy (credentials, permissions, budgets) are "deny";
 * everything else, errors included, was allowed to proceed. */
static bool api_denied(int status)
{
	return status == 401 || status == 403 || status == 429;
}

/* One audit record per request (docs/audit.md); /health is not audited:
 * load balancers poll it every few seconds. */
static void api_audit(struct req *r, uint64_t dur)
{
	if (r->api && !strcmp(r->api, "health"))
		return;
	char payload[AUDIT_HASH_HEX + 1];
	bool deny = api_denied(r->status);
	struct audit_record rec = {
		.id = r->id,
		.identity = r->who.name[0] ? r->who.name : NULL,
		.team = r->who.team[0] ? r->who.team : NULL,
		.src = r->peer,
		.cert_fp = r->auth_conn && r->auth_conn->has_cert ? r->auth_conn->cert.fp : NULL,
		.dialect = api_dialect(r) == DIALECT_ANTHROPIC ? "anthropic"
			   : r->head.path.n >= 4 && !memcmp(r->head.path.p, "/v1/", 4) ? "openai" : "umbra",
		.model_requested = r->model_requested,
		.route = r->route,
		.route_method = r->route_method,
		.provider = r->provider,
		.endpoint = r->endpoint,
		.model = r->model && r->model[0] ? r->model : NULL,
		.decision = deny ? "deny" : "allow",
		.reason = r->status >= 400 ? r->error_kind : r->usage_missing ? "usage_missing" : NULL,
		.detectors_json = r->detectors_json,
		.prompt_tokens = r->prompt_tokens,
		.completion_tokens = r->completion_tokens,
		.cost_usd = (double)r->cost_nusd / 1e9,
		.status = r->status,
		.latency_ms = dur / 1e6,
	};
	if (r->rt->cfg->audit.payload_hash && r->body.n) {
		audit_payload_hash(r->body.p, r->body.n, payload);
		rec.payload_hash = payload;
	}
	if (audit_append(r->rt->audit, &rec))
		log_error("audit: cannot append the record of request %s", r->id);
}

void api_request_done(struct req *r)
{
	uint64_t dur = clock_mono_ns() - r->t_start_ns;
	metrics_request(r->w->metrics, r->api, r->model, r->provider ? r->provider : "",
			r->status, dur, r->prompt_tokens, r->completion_tokens);
	api_govern_settle(r);
	if (r->rt->usage && r->provider && r->model && r->model[0])
		usage_acc_add(r->rt->usage, r->who.name, r->who.team, r->model, r->provider,
			      r->prompt_tokens, r->completion_tokens, r->cost_nusd, (int64_t)time(NULL));
	if (r->rt->audit)
		api_audit(r, dur);
	if (!r->rt->cfg->log_requests)
		return;
	struct buf b;
	buf_init(&b, 0);
	buf_append_cstr(&b, "\"id\":");
	json_write_cstr(&b, r->id);
	buf_append_cstr(&b, ",\"method\":");
	json_write_str(&b, r->head.method);
	buf_append_cstr(&b, ",\"path\":");
	/* client-controlled: escape, and never trust it to be UTF-8 */
	if (json_utf8_valid(r->head.path.p, UMB_MIN(r->head.path.n, (size_t)256)))
		json_write_str(&b, str_make(r->head.path.p, UMB_MIN(r->head.path.n, (size_t)256)));
	else
		buf_append_cstr(&b, "\"(invalid utf-8)\"");
	buf_append_cstr(&b, ",\"model\":");
	json_write_cstr(&b, r->model_shown ? r->model_shown : r->model);
	buf_append_cstr(&b, ",\"provider\":");
	json_write_cstr(&b, r->provider ? r->provider : "");
	buf_append_cstr(&b, ",\"endpoint\":");
	json_write_cstr(&b, r->endpoint ? r->endpoint : "");
	buf_append_cstr(&b, ",\"identity\":"); /* "" = anonymous */
	json_write_cstr(&b, r->who.name);
	buf_append_cstr(&b, ",\"team\":");
	json_write_cstr(&b, r->who.team);
	if (r->who.key_id[0])
		buf_printf(&b, ",\"key_id\":\"%s\"", r->who.key_id);
	if (r->who.break_glass)
		buf_append_cstr(&b, ",\"break_glass\":true");
	buf_printf(&b, ",\"auth\":\"%s\"", r->who.method ? r->who.method : "none");
	buf_printf(&b,
		   ",\"status\":%d,\"latency_ms\":%.3f,\"upstream_ms\":%.3f,\"prompt_tokens\":%llu,"
		   "\"completion_tokens\":%llu,\"stream\":%s,\"attempts\":%d,\"peer\":\"%s\"",
		   r->status, dur / 1e6, r->upstream_ns / 1e6,
		   (unsigned long long)r->prompt_tokens,
		   (unsigned long long)r->completion_tokens, r->stream ? "true" : "false",
		   r->attempts, r->peer);
	if (r->error_kind) {
		buf_append_cstr(&b, ",\"error\":");
		json_write_cstr(&b, r->error_kind);
	}
	if (r->route_method) {
		buf_printf(&b, ",\"route_method\":\"%s\"", r->route_method);
		if (r->route) {
			buf_append_cstr(&b, ",\"route\":");
			json_write_cstr(&b, r->route);
		}
		if (r->route_score)
			buf_printf(&b, ",\"route_score\":%s", r->route_score);
		if (r->route_log)
			buf_append_cstr(&b, r->route_log);
	}
	log_emit(LOG_INFO, b.p, "request");
	buf_clear(&b);
}

static void api_health(struct req *r)
{
	bool draining = http_is_draining(r);
	struct http_resp resp = {
		.status = draining ? 503 : 200,
		.content_type = "application/json",
		.body = draining ? STR("{\"status\":\"draining\"}") : STR("{\"status\":\"ok\"}"),
	};
	http_respond(r, &resp);
}

static void api_metrics(struct req *r)
{
	struct buf *b = arena_alloc(r->arena, sizeof *b);
	buf_init(b, 0);
	arena_cleanup_add(r->arena, (arena_cleanup_cb)buf_clear, b);
	if (metrics_render(b, upstream_metrics, r->rt)) {
		api_error(r, 500, "api_error", NULL, "cannot render metrics");
		return;
	}
	struct http_resp resp = { .status = 200,
				  .content_type = METRICS_CONTENT_TYPE,
				  .body = buf_str(b) };
	http_respond(r, &resp);
}

/* Who may call a route. */
enum access {
	ACCESS_OPEN,    /* /health, /enroll: no credentials, even under require */
	ACCESS_API,     /* auth.mode decides */
	ACCESS_METRICS, /* open with auth.mode none or metrics.public, else admin */
	ACCESS_ADMIN,   /* admin identities only */
};

struct route {
	const char *path; /* exact, or a prefix when it ends in '/' */
	const char *method; /* NULL: the handler checks */
	void (*fn)(struct req *r);
	const char *api;
	enum access access;
};

static const struct route routes[] = {
	{ "/v1/chat/completions", "POST", api_openai_chat, "chat", ACCESS_API },
	{ "/v1/embeddings", "POST", api_openai_embeddings, "embeddings", ACCESS_API },
	{ "/v1/models", "GET", api_openai_models, "models", ACCESS_API },
	{ "/v1/messages", "POST", api_anthropic_messages, "messages", ACCESS_API },
	{ "/health", "GET", api_health, "health", ACCESS_OPEN },
	{ "/metrics", "GET", api_metrics, "metrics", ACCESS_METRICS },
	{ "/enroll", "POST", api_enroll, "enroll", ACCESS_OPEN },
	{ "/admin/", NULL, api_admin, "admin", ACCESS_ADMIN },
};

bool api_model_allowed(const struct req *r, struct str model)
{
	if (!r->rt->cfg->teams_set || !r->who.authenticated)
		return true; /* no policy, or nobody to apply it to */
	return r->who.team_cfg && config_team_allows(r->who.team_cfg, model);
}

static const char *status_type(int status)
{
	return status == 401 ? "authentication_error"
		: status == 403 ? "permission_error"
		: status == 404 ? "not_found_error"
		: status >= 500 ? "api_error" : "invalid_request_error";
}

/* Decide who is calling before the handler runs; false when the request
 * was refused (and answered). */
static bool api_authenticate(struct req *r, enum access access)
{
	const struct config *cfg = r->rt->cfg;
	if (access == ACCESS_OPEN)
		return true;
	if (access == ACCESS_METRICS) {
		if (cfg->auth_mode == AUTH_NONE || cfg->metrics_public)
			return true;
		access = ACCESS_ADMIN;
	}
	bool admin = access == ACCESS_ADMIN;
	if (cfg->tls.client_auth == CLIENT_AUTH_REQUIRE &&
	    !(r->auth_conn && r->auth_conn->has_cert)) {
		api_error(r, 401, "authentication_error", "client_certificate_required",
			  "a client certificate issued by the umbra CA is required");
		return false;
	}
	if (admin && !auth_store_needed(cfg)) {
		api_error(r, 404, "not_found_error", "unknown_url",
			  "the admin API is off: it needs auth.mode keys, certs or "
			  "keys+certs, or tls.client_ca");
		return false;
	}
	struct auth_refusal why;
	if (auth_check(r->w->auth, cfg, r->auth_conn, &r->head, admin, (int64_t)time(NULL),
		       &r->who, &why)) {
		api_error(r, why.status, status_type(why.status), why.code, "%s", why.msg);
		return false;
	}
	if (admin && !r->who.authenticated) {
		api_error(r, 401, "authentication_error", "missing_api_key",
			  "admin credentials required: an admin certificate or API key");
		return false;
	}
	if (admin && r->who.kind != STORE_KIND_ADMIN) {
		api_error(r, 403, "permission_error", "admin_only",
			  "identity %s is not an admin", r->who.name);
		return false;
	}
	return true;
}

void api_dispatch(struct req *r)
{
	struct str path = r->head.path;
	/* tolerate a trailing slash, as clients joining base URLs produce */
	if (path.n > 1 && path.p[path.n - 1] == '/')
		path.n--;
	for (size_t i = 0; i < UMB_ARRAY_LEN(routes); i++) {
		const char *rp = routes[i].path;
		size_t rn = strlen(rp);
		bool prefix = rp[rn - 1] == '/';
		if (prefix ? !(path.n > rn && !memcmp(path.p, rp, rn)) : !str_eq_cstr(path, rp))
			continue;
		r->api = routes[i].api;
		/* no routing cascade in this build: every model is named */
		if (routes[i].fn == api_openai_chat || routes[i].fn == api_openai_embeddings ||
		    routes[i].fn == api_anthropic_messages)
			r->route_method = "explicit";
		const char *method = routes[i].method;
		bool head_ok = method && !strcmp(method, "GET") && str_eq_cstr(r->head.method, "HEAD");
		if (method && !str_eq_cstr(r->head.method, method) && !head_ok) {
			struct str allow = str_cstr(arena_printf(r->arena, "allow: %s\r\n", routes[i].method));
			api_error_h(r, 405, allow, "invalid_request_error", "method_not_allowed",
				    "method not allowed; use %s", routes[i].method);
			return;
		}
		if (api_authenticate(r, routes[i].access))
			routes[i].fn(r);
		return;
	}
	api_error(r, 404, "not_found_error", "unknown_url", "unknown path");
}
