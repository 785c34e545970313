/* openai.c — the OpenAI ingress dialect: /v1/chat/completions,
 * /v1/embeddings and /v1/models.
 *
 * A request body is validated once (core/json.c: strict RFC 8259, UTF-8
 * checked) and only its top-level members are looked at; the body then
 * travels upstream as it came, edited in place by the provider. */
#include <stdio.h>

#include "api/api.h"
#include "tunnel/tunnel.h"
#include "core/json.h"
#include "upstream/upstream.h"
#include "metrics/metrics.h"
#include "providers/provider.h"
#include "routing/router.h"

#define API_MAX_MEMBERS 128

static const char *type_name(enum json_type t)
{
	switch (t) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_NUMBER: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	default: return "invalid";
	}
}

/* Parse the body and check the top-level members' types. On failure an
 * error has been sent and false is returned. */
/* The top-level members a handler looks at, found in one pass. */
enum known_key {
	K_MODEL, K_MESSAGES, K_STREAM, K_STREAM_OPTIONS, K_MAX_TOKENS,
	K_MAX_COMPLETION_TOKENS, K_TEMPERATURE, K_TOP_P, K_N, K_TOOLS, K_INPUT, K_COUNT
};
static const char *const known_names[K_COUNT] = {
	"model", "messages", "stream", "stream_options", "max_tokens",
	"max_completion_tokens", "temperature", "top_p", "n", "tools", "input",
};

struct parsed {
	struct json_member m[API_MAX_MEMBERS];
	size_t n;
	struct json_val root;
	const struct json_val *known[K_COUNT];
};

static const struct json_val *get(const struct parsed *p, enum known_key k)
{
	return p->known[k];
}

/* Fill p->known in one pass. Keys are compared raw; a key written with
 * escapes is decoded first, so "mod\u0065l" is still "model". */
static void index_members(struct parsed *p)
{
	memset(p->known, 0, sizeof p->known);
	for (size_t i = 0; i < p->n; i++) {
		struct str k = p->m[i].key_raw;
		bool esc = memchr(k.p, '\\', k.n) != NULL;
		for (int j = 0; j < K_COUNT; j++) {
			size_t kn = strlen(known_names[j]);
			if (esc ? json_key_eq(k, known_names[j])
				: k.n == kn && !memcmp(k.p, known_names[j], kn)) {
				p->known[j] = &p->m[i].val;
				break;
			}
		}
	}
}

static bool parse_body(struct req *r, struct str body, struct parsed *p)
{
	struct json_err err = { 0 };
	if (body.n == 0) {
		api_error(r, 400, "invalid_request_error", "invalid_json",
			  "request body is empty; expected a JSON object");
		return false;
	}
	if (json_parse_top(body.p, body.n, p->m, API_MAX_MEMBERS, &p->n, &p->root, &err)) {
		api_error(r, 400, "invalid_request_error", "invalid_json",
			  "request body is not valid JSON: %s at byte %zu", err.msg, err.off);
		return false;
	}
	if (p->root.type != JSON_OBJECT) {
		api_error(r, 400, "invalid_request_error", "invalid_json",
			  "request body must be a JSON object, not %s", type_name(p->root.type));
		return false;
	}
	/* Duplicate keys are refused: we would act on the first and an
	 * upstream parser on the last (a model-name smuggling vector). */
	for (size_t i = 1; i < p->n; i++) {
		for (size_t j = 0; j < i; j++) {
			struct str a = p->m[i].key_raw, b = p->m[j].key_raw;
			bool same = a.n == b.n && !memcmp(a.p, b.p, a.n);
			if (!same && (memchr(a.p, '\\', a.n) || memchr(b.p, '\\', b.n))) {
				struct buf ka;
				buf_init(&ka, 4096);
				struct json_val kv = { JSON_STRING, str_make(a.p - 1, a.n + 2) };
				same = !json_str_decode(kv, &ka) && ka.p && json_key_eq(b, ka.p) &&
				       strlen(ka.p) == ka.n;
				buf_clear(&ka);
			}
			if (same) {
				api_error(r, 400, "invalid_request_error", "invalid_json",
					  "duplicate key in request body: \"%.*s\"",
					  (int)utf8_complete_prefix(a.p, UMB_MIN(a.n, (size_t)64)), a.p);
				return false;
			}
		}
	}
	index_members(p);
	return true;
}

/* Check that `key`, when present and not null, has one of the types. */
static bool want_type(struct req *r, const struct parsed *p, enum known_key k, bool required,
		      enum json_type t1, enum json_type t2, const char *expected)
{
	const char *key = known_names[k];
	const struct json_val *v = get(p, k);
	if (!v || (v->type == JSON_NULL && !required)) {
		if (!required)
			return true;
		api_error(r, 400, "invalid_request_error", "missing_required_parameter",
			  "'%s' is required", key);
		return false;
	}
	if (v->type == t1 || v->type == t2)
		return true;
	api_error(r, 400, "invalid_request_error", "invalid_type",
		  "'%s' must be %s, not %s", key, expected, type_name(v->type));
	return false;
}

/* Resolve the model member to a configured model; errors are sent. */
static const struct cfg_model *resolve_model(struct req *r, const struct parsed *p,
					     struct str *name)
{
	const struct json_val *v = get(p, K_MODEL);
	struct buf b;
	buf_init(&b, 1024);
	if (json_str_decode(*v, &b)) {
		buf_clear(&b);
		api_error(r, 400, "invalid_request_error", "invalid_value",
			  "'model' is too long");
		return NULL;
	}
	*name = str_make(arena_strndup(r->arena, b.p ? b.p : "", b.n), b.n);
	r->model_requested = name->p;
	bool ctl = false;
	for (size_t i = 0; i < b.n && !ctl; i++)
		ctl = (unsigned char)b.p[i] < 0x20;
	buf_clear(&b);
	if (ctl || name->n == 0) {
		/* a NUL would make us route one name and the upstream read another */
		api_error(r, 400, "invalid_request_error", "invalid_value",
			  "'model' must be a non-empty name without control characters");
		return NULL;
	}
	const struct cfg_model *m = config_find_model(r->rt->cfg, *name);
	if (!m) {
		/* the name is client input: bounded and escaped by the writer */
		api_error(r, 404, "not_found_error", "model_not_found",
			  "The model '%.*s' does not exist or you do not have access to it.",
			  (int)utf8_complete_prefix(name->p, UMB_MIN(name->n, (size_t)200)),
			  name->p);
		return NULL;
	}
	if (!api_model_allowed(r, *name)) {
		api_error(r, 403, "permission_error", "model_not_allowed",
			  "identity %s (team %s) may not use the model '%.*s'",
			  r->who.name, r->who.team[0] ? r->who.team : "none",
			  (int)utf8_complete_prefix(name->p, UMB_MIN(name->n, (size_t)200)),
			  name->p);
		return NULL;
	}
	const char *svc;
	if (!tunnel_provider_allows(r->rt->cfg, m->provider, &r->who, &svc)) {
		api_error(r, 403, "permission_error", "service_not_allowed",
			  "identity %s may not use the dark service %s behind model '%.*s'",
			  r->who.authenticated ? r->who.name : "(anonymous)", svc,
			  (int)utf8_complete_prefix(name->p, UMB_MIN(name->n, (size_t)200)),
			  name->p);
		return NULL;
	}
	return m;
}

/* max_tokens (or max_completion_tokens) when given as a positive integer;
 * 0 otherwise (the worst case then comes from the model or the default). */
static int64_t chat_max_tokens(const struct parsed *p)
{
	const struct json_val *v = get(p, K_MAX_TOKENS);
	if (!v || v->type != JSON_NUMBER)
		v = get(p, K_MAX_COMPLETION_TOKENS);
	int64_t x;
	return v && v->type == JSON_NUMBER && json_get_i64(*v, &x) == UMB_OK && x > 0 ? x : 0;
}

/* A chat request between parsing and forwarding: routing may wait for
 * the classifier. Lives in the request arena. */
struct chat {
	struct req *r;
	struct parsed *p;
	struct upstream_call call;
	struct route_text text;
	struct route_decision dec;
	const struct cfg_model *explicit_model; /* NULL: routed */
};

static void chat_decision_clear(void *arg)
{
	route_decision_clear(&((struct chat *)arg)->dec);
}

/* Record the decision on the request (headers, log line, metrics). */
static void chat_note_route(struct chat *c)
{
	struct req *r = c->r;
	struct route_decision *d = &c->dec;
	r->route_method = route_method_name(d->method);
	r->route = d->route ? d->route->name : NULL;
	if (d->score >= 0)
		r->route_score = arena_printf(r->arena, "%.3f", d->score);
	struct buf b;
	buf_init(&b, 0);
	router_write_detectors(r->rt->router, d, &b);
	r->detectors_json = arena_strndup(r->arena, b.p, b.n);
	buf_reset(&b);
	buf_printf(&b, ",\"detectors\":%s", r->detectors_json);
	buf_append_lit(&b, ",\"route_trace\":");
	buf_append(&b, d->trace.p, d->trace.n);
	buf_append_lit(&b, "]");
	r->route_log = arena_strndup(r->arena, b.p, b.n);
	buf_clear(&b);
	metrics_route(r->w->metrics, r->route_method, r->route);
	for (int i = 0; i < DET_MAX; i++)
		if (d->det_mask >> i & 1)
			metrics_detector_hits(r->w->metrics, router_detector_name(r->rt->router, i),
					      d->det.n[i]);
}

/* The route is chosen: apply the team's policy and forward. */
static void chat_forward(struct chat *c)
{
	struct req *r = c->r;
	struct route_decision *d = &c->dec;
	chat_note_route(c);
	const struct cfg_model *m = c->explicit_model;
	if (d->route) {
		const struct cfg_team *t = r->who.team_cfg;
		bool listed = !t || !t->n_routes;
		for (size_t i = 0; t && i < t->n_routes && !listed; i++)
			listed = !strcmp(t->routes[i], d->route->name);
		m = d->route->model_ref;
		if (r->rt->cfg->teams_set && r->who.authenticated &&
		    (!t || !listed || !api_model_allowed(r, str_cstr(m->name)))) {
			api_error(r, 403, "permission_error", "route_not_allowed",
				  "identity %s (team %s) may not use the route '%s' (model '%s')",
				  r->who.name, r->who.team[0] ? r->who.team : "none",
				  d->route->name, m->name);
			return;
		}
		const char *svc;
		if (!tunnel_provider_allows(r->rt->cfg, m->provider, &r->who, &svc)) {
			api_error(r, 403, "permission_error", "service_not_allowed",
				  "identity %s may not use the dark service %s behind route '%s'",
				  r->who.authenticated ? r->who.name : "(anonymous)", svc,
				  d->route->name);
			return;
		}
		/* requested_model stays what the client sent ("auto", or the
		 * cloud model a sensitive request was moved from): the provider
		 * rewrites the body's model to the route's */
	}
	c->call.model = m;
	c->call.onprem_only = router_is_sensitive(d);
	if (!api_govern_admit(r, m, c->call.requested_model, c->call.body, chat_max_tokens(c->p)))
		return;
	upstream_forward(r, &c->call);
}

static void chat_classified(void *arg, int status, struct str body)
{
	struct chat *c = arg;
	router_classifier_answer(c->r->rt->router, &c->text, status, body, &c->dec);
	chat_forward(c);
}

/* An internal call for routing: body (built by the router) to model,
 * within timeout_ms; cb gets the answer. */
static void chat_internal_call(struct chat *c, enum upstream_op op, const struct cfg_model *m,
			       struct buf *body, int timeout_ms, upstream_done_cb cb)
{
	struct req *r = c->r;
	struct upstream_call call = { .op = op, .model = m, .requested_model = str_cstr(m->name) };
	call.body = str_make(arena_strndup(r->arena, body->p, body->n), body->n);
	struct json_member *mem = arena_alloc(r->arena, 8 * sizeof *mem);
	struct json_val root;
	struct json_err err;
	if (json_parse_top(call.body.p, call.body.n, mem, 8, &call.n_members, &root, &err)) {
		cb(c, 0, STR_NULL); /* cannot happen: the router wrote it */
		return;
	}
	call.members = mem;
	upstream_call_internal(r, &call, timeout_ms, cb, c);
}

/* Ask the classifier model. */
static void chat_classify(struct chat *c)
{
	struct req *r = c->r;
	struct router *rt = r->rt->router;
	if (router_classifier_cached(rt, &c->text, &c->dec)) {
		chat_forward(c);
		return;
	}
	const struct cfg_classifier *cc = &r->rt->cfg->routing.classifier;
	struct buf b;
	buf_init(&b, 0);
	router_classifier_body(rt, &c->text, cc->model, &b);
	chat_internal_call(c, UPSTREAM_CHAT, config_find_model(r->rt->cfg, str_cstr(cc->model)), &b,
			   cc->timeout_ms, chat_classified);
	buf_clear(&b);
}

static void chat_embedded(void *arg, int status, struct str body)
{
	struct chat *c = arg;
	router_embed_answer(c->r->rt->router, &c->text, status, body, &c->dec);
	if (c->dec.want_classifier)
		chat_classify(c);
	else
		chat_forward(c);
}

/* Ask the provider embedder. */
static void chat_embed(struct chat *c)
{
	struct req *r = c->r;
	struct buf b;
	const struct cfg_model *m;
	buf_init(&b, 0);
	router_embed_request(r->rt->router, &c->text, &c->dec, &b, &m);
	chat_internal_call(c, UPSTREAM_EMBEDDINGS, m, &b, r->rt->cfg->routing.semantic.timeout_ms,
			   chat_embedded);
	buf_clear(&b);
}

/* Route a chat request: the guard on every request, then the explicit
 * model or the cascade. Errors are sent here. */
static void chat_route(struct chat *c)
{
	struct req *r = c->r;
	struct router *rt = r->rt->router;
	struct route_decision *d = &c->dec;
	char why[160];
	if (router_text_extract(r->arena, *get(c->p, K_MESSAGES), get(c->p, K_TOOLS),
				get(c->p, K_MAX_TOKENS) ? get(c->p, K_MAX_TOKENS)
							: get(c->p, K_MAX_COMPLETION_TOKENS),
				&c->text, why, sizeof why)) {
		api_error(r, 400, "invalid_request_error", "invalid_value", "%s", why);
		return;
	}
	route_decision_init(d);
	arena_cleanup_add(r->arena, chat_decision_clear, c);
	router_guard(rt, &c->text, d);
	switch (router_guard_verdict(rt, c->explicit_model, d)) {
	case GUARD_BLOCK: {
		char hits[256];
		router_hits_text(rt, d, hits, sizeof hits);
		chat_note_route(c);
		api_error(r, 403, "permission_error", "sensitive_data_blocked",
			  "request blocked by the sensitivity guard: it contains %s", hits);
		return;
	}
	case GUARD_REROUTE:
		c->explicit_model = NULL;
		/* fallthrough */
	case GUARD_KEEP:
		chat_forward(c);
		return;
	case GUARD_PASS:
		if (c->explicit_model) {
			chat_forward(c);
			return;
		}
		break;
	}
	router_cascade(rt, &c->text, d);
	if (d->want_embedding)
		chat_embed(c);
	else if (d->want_classifier)
		chat_classify(c);
	else
		chat_forward(c);
}

/* Is the model member absent, null or "auto" (routing decides)? */
static bool chat_model_auto(const struct parsed *p)
{
	const struct json_val *v = get(p, K_MODEL);
	return !v || v->type == JSON_NULL || json_str_eq(*v, "auto");
}

void api_openai_chat(struct req *r)
{
	api_chat(r, r->body, NULL, NULL, 0);
}

void api_chat(struct req *r, struct str body, const struct canon_req *canon,
	      struct json_member *native, size_t n_native)
{
	/* not zeroed: the parser fills what it reports */
	struct parsed *p = arena_alloc_raw(r->arena, sizeof *p);
	if (!parse_body(r, body, p))
		return;
	struct router *router = r->rt->router;
	if (!want_type(r, p, K_MODEL, !router, JSON_STRING, JSON_STRING, "a string") ||
	    !want_type(r, p, K_MESSAGES, true, JSON_ARRAY, JSON_ARRAY, "an array") ||
	    !want_type(r, p, K_STREAM, false, JSON_TRUE, JSON_FALSE, "a boolean") ||
	    !want_type(r, p, K_STREAM_OPTIONS, false, JSON_OBJECT, JSON_OBJECT, "an object") ||
	    !want_type(r, p, K_MAX_TOKENS, false, JSON_NUMBER, JSON_NUMBER, "a number") ||
	    !want_type(r, p, K_MAX_COMPLETION_TOKENS, false, JSON_NUMBER, JSON_NUMBER, "a number") ||
	    !want_type(r, p, K_TEMPERATURE, false, JSON_NUMBER, JSON_NUMBER, "a number") ||
	    !want_type(r, p, K_TOP_P, false, JSON_NUMBER, JSON_NUMBER, "a number") ||
	    !want_type(r, p, K_N, false, JSON_NUMBER, JSON_NUMBER, "a number") ||
	    !want_type(r, p, K_TOOLS, false, JSON_ARRAY, JSON_ARRAY, "an array"))
		return;
	const struct json_val *msgs = get(p, K_MESSAGES);
	/* Only the first message is checked here: walking every message of
	 * a long conversation costs more than the validating parse of the
	 * whole body (docs/decisions.md, "Request bodies"); the upstream
	 * judges the rest and its 400 reaches the client in our shape. With
	 * routing on, router_text_extract walks them all anyway. */
	struct json_iter it;
	struct json_val msg, role;
	json_iter_init(&it, *msgs);
	if (!json_arr_next(&it, &msg)) {
		api_error(r, 400, "invalid_request_error", "invalid_value",
			  "'messages' must contain at least one message");
		return;
	}
	if (msg.type != JSON_OBJECT || !json_obj_get(msg, "role", &role) ||
	    role.type != JSON_STRING) {
		api_error(r, 400, "invalid_request_error", "invalid_value",
			  "messages[0] must be an object with a string 'role'");
		return;
	}
	struct chat *c = arena_alloc(r->arena, sizeof *c);
	c->r = r;
	c->p = p;
	struct upstream_call *call = &c->call;
	*call = (struct upstream_call){ .op = UPSTREAM_CHAT, .body = body,
					.members = p->m, .n_members = p->n };
	if (canon) {
		call->dialect = DIALECT_ANTHROPIC;
		call->canon = canon;
		call->native_body = r->body;
		call->native_members = native;
		call->n_native_members = n_native;
		const struct str *beta = http_header_get(&r->head, "anthropic-beta");
		if (beta)
			call->anthropic_beta = *beta;
	}
	const struct json_val *st = get(p, K_STREAM);
	call->stream = st && st->type == JSON_TRUE;
	const struct json_val *so = get(p, K_STREAM_OPTIONS);
	struct json_val iu;
	if (so && so->type == JSON_OBJECT && json_obj_get(*so, "include_usage", &iu)) {
		if (iu.type != JSON_TRUE && iu.type != JSON_FALSE && iu.type != JSON_NULL) {
			api_error(r, 400, "invalid_request_error", "invalid_type",
				  "'stream_options.include_usage' must be a boolean");
			return;
		}
		call->client_wants_usage = iu.type == JSON_TRUE;
	}
	r->stream = call->stream;
	if (!router) {
		call->model = resolve_model(r, p, &call->requested_model);
		if (call->model && api_govern_admit(r, call->model, call->requested_model, body,
						    chat_max_tokens(p)))
			upstream_forward(r, call);
		return;
	}
	if (!chat_model_auto(p)) {
		c->explicit_model = resolve_model(r, p, &call->requested_model);
		if (!c->explicit_model)
			return;
	} else {
		call->requested_model = STR("auto");
		r->model_requested = "auto";
	}
	chat_route(c);
}

/* The guard on embeddings: personal data may be embedded only on-prem.
 * There is no reroute (another model's vectors are not interchangeable):
 * a cloud model gets 403 whatever the action; an on-prem one keeps its
 * fallbacks on-prem. False when the request was refused (and answered). */
static bool embeddings_guard(struct req *r, const struct parsed *p, struct router *rt,
			     struct upstream_call *call)
{
	struct route_text t;
	struct route_decision d;
	router_text_input(r->arena, *get(p, K_INPUT), &t);
	route_decision_init(&d);
	router_guard(rt, &t, &d);
	bool ok = true;
	if (router_is_sensitive(&d)) {
		char hits[256];
		struct buf dj;
		buf_init(&dj, 0);
		router_write_detectors(rt, &d, &dj);
		r->detectors_json = arena_strndup(r->arena, dj.p, dj.n);
		buf_clear(&dj);
		router_hits_text(rt, &d, hits, sizeof hits);
		call->onprem_only = true;
		if (call->model->locality != LOCALITY_ONPREM) {
			r->route_method = route_method_name(ROUTE_SENSITIVE);
			api_error(r, 403, "permission_error", "sensitive_data_blocked",
				  "embeddings input contains %s; model '%s' is not on-prem", hits,
				  call->model->name);
			ok = false;
		}
	}
	route_decision_clear(&d);
	return ok;
}

void api_openai_embeddings(struct req *r)
{
	struct parsed *p = arena_alloc_raw(r->arena, sizeof *p);
	if (!parse_body(r, r->body, p))
		return;
	if (!want_type(r, p, K_MODEL, true, JSON_STRING, JSON_STRING, "a string") ||
	    !want_type(r, p, K_INPUT, true, JSON_STRING, JSON_ARRAY, "a string or an array"))
		return;
	struct upstream_call call = { .op = UPSTREAM_EMBEDDINGS, .body = r->body,
				      .members = p->m, .n_members = p->n };
	call.model = resolve_model(r, p, &call.requested_model);
	if (!call.model)
		return;
	const struct provider_ops *ops = provider_ops_get(call.model->provider->type);
	if (!ops || !ops->embeddings) {
		api_error(r, 400, "invalid_request_error", "unsupported_operation",
			  "model '%s' is served by a %s provider, which has no embeddings endpoint",
			  call.model->name, provider_type_name(call.model->provider->type));
		return;
	}
	struct router *rt = r->rt->router;
	if (rt && router_sensitive(rt)->enabled && !embeddings_guard(r, p, rt, &call))
		return;
	if (!api_govern_admit(r, call.model, call.requested_model, r->body, 0))
		return;
	upstream_forward(r, &call);
}

/* One entry of the model list in the caller's dialect: OpenAI's
 * {id, object, created, owned_by}, or Anthropic's {type, id, display_name,
 * created_at} for clients that send anthropic-version (the Anthropic SDKs'
 * models.list). */
static void models_entry(struct buf *b, bool anthropic, const char *id, const char *owner)
{
	if (anthropic) {
		buf_append_cstr(b, "{\"type\":\"model\",\"id\":");
		json_write_cstr(b, id);
		buf_append_cstr(b, ",\"display_name\":");
		json_write_cstr(b, id);
		buf_append_cstr(b, ",\"created_at\":\"1970-01-01T00:00:00Z\"}");
		return;
	}
	buf_append_cstr(b, "{\"id\":");
	json_write_cstr(b, id);
	buf_append_cstr(b, ",\"object\":\"model\",\"created\":0,\"owned_by\":");
	json_write_cstr(b, owner);
	buf_append(b, "}", 1);
}

void api_openai_models(struct req *r)
{
	const struct config *cfg = r->rt->cfg;
	bool anthropic = http_header_get(&r->head, "anthropic-version") != NULL;
	struct buf *b = arena_alloc(r->arena, sizeof *b);
	buf_init(b, 0);
	arena_cleanup_add(r->arena, (arena_cleanup_cb)buf_clear, b);
	buf_append_cstr(b, anthropic ? "{\"data\":[" : "{\"object\":\"list\",\"data\":[");
	const char *first_id = NULL, *last_id = NULL;
	if (r->rt->router) {
		/* routing picks the model: "auto" (or no model at all) */
		models_entry(b, anthropic, "auto", "umbra");
		first_id = last_id = "auto";
	}
	for (size_t i = 0; i < cfg->n_models; i++) {
		const struct cfg_model *m = &cfg->models[i];
		if (m->is_glob)
			continue; /* a pattern is not a model a client can name */
		if (!api_model_allowed(r, str_cstr(m->name)))
			continue;
		if (first_id)
			buf_append(b, ",", 1);
		models_entry(b, anthropic, m->name, m->provider->name);
		if (!first_id)
			first_id = m->name;
		last_id = m->name;
	}
	buf_append_cstr(b, "]");
	if (anthropic) {
		buf_append_cstr(b, ",\"has_more\":false,\"first_id\":");
		first_id ? json_write_cstr(b, first_id) : buf_append_cstr(b, "null");
		buf_append_cstr(b, ",\"last_id\":");
		last_id ? json_write_cstr(b, last_id) : buf_append_cstr(b, "null");
	}
	buf_append_cstr(b, "}");
	struct http_resp resp = { .status = 200, .content_type = "application/json",
				  .body = buf_str(b) };
	http_respond(r, &resp);
}
