/* router.c — the routing cascade and the sensitivity guard.
 *
 * Cost on the hot path: the guard and the rules scan the conversation once
 * (heur_detect, then heur_match's one Aho-Corasick pass); the builtin
 * embedder runs only when the rules did not decide, and its answer is
 * cached by text. Nothing here blocks: the classifier is called by the
 * API layer through the upstream module, and its answer comes back in
 * router_classifier_answer. */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "routing/cache.h"
#include "routing/classifier.h"
#include "routing/embed.h"
#include "routing/embed_client.h"
#include "routing/heuristics.h"
#include "routing/router.h"
#include "routing/semantic.h"

/* The classifier sees at most this much of the prompt. */
#define ROUTER_CLASSIFY_BYTES (8 * 1024)

struct router {
	const struct config *cfg;
	const struct cfg_routing *rc;
	struct heuristics *heur;
	uint64_t guard_mask;     /* slots routing.sensitive names */
	uint64_t count_mask;     /* slots counted for every request */
	struct embed_builtin *emb;
	struct sem_index *sem;    /* builtin: built at load */
	/* provider embedder: the index is built from the first answer that
	 * carried the examples, then published once */
	struct sem_index *_Atomic remote_sem;
	size_t remote_dim;              /* set before remote_sem is published */
	pthread_mutex_t remote_lock;
	struct cfg_model embed_model;   /* the provider and model, as a model */
	struct str *examples;           /* every example, in route order */
	size_t *example_route, n_examples;
	struct cache *sem_cache;  /* text → struct sem_result */
	struct cache *cls_cache;  /* text → struct cls_value */
	uint64_t seed;
	const char **route_names, **route_descs;
	const struct cfg_route *default_route;
	bool explain;             /* umbra route --explain: say why rules matched */
};

struct cls_value {
	int route;
	float confidence;
};

static const char *const method_names[ROUTE_METHODS] = {
	"explicit", "heuristic", "semantic", "classifier", "default", "sensitive",
};

const char *route_method_name(enum route_method m)
{
	return (unsigned)m < ROUTE_METHODS ? method_names[m] : "?";
}

void router_free(struct router *rt)
{
	if (!rt)
		return;
	heur_free(rt->heur);
	embed_builtin_free(rt->emb);
	sem_index_free(rt->sem);
	sem_index_free(atomic_load(&rt->remote_sem));
	pthread_mutex_destroy(&rt->remote_lock);
	free(rt->examples);
	free(rt->example_route);
	cache_free(rt->sem_cache);
	cache_free(rt->cls_cache);
	free(rt->route_names);
	free(rt->route_descs);
	free(rt);
}

static const struct cfg_route *router__route(const struct cfg_routing *rc, const char *name)
{
	for (size_t i = 0; i < rc->n_routes; i++)
		if (!strcmp(rc->routes[i].name, name))
			return &rc->routes[i];
	return NULL;
}

/* Embed every route's examples (its description when it has none) into
 * the semantic index. IDF weights are fitted on the same texts. */
static int router__semantic_build(struct router *rt, char *err, size_t errlen)
{
	const struct cfg_routing *rc = rt->rc;
	size_t n = 0;
	for (size_t i = 0; i < rc->n_routes; i++)
		n += rc->routes[i].n_examples + (rc->routes[i].description ? 1 : 0);
	struct str *corpus = umb_calloc(n ? n : 1, sizeof *corpus);
	size_t k = 0;
	for (size_t i = 0; i < rc->n_routes; i++) {
		const struct cfg_route *r = &rc->routes[i];
		for (size_t j = 0; j < r->n_examples; j++)
			corpus[k++] = str_cstr(r->examples[j]);
		if (r->description)
			corpus[k++] = str_cstr(r->description);
	}
	rt->emb = embed_builtin_new(corpus, k);
	free(corpus);
	size_t dim = embed_builtin_dim(rt->emb);
	rt->sem = sem_index_new(rc->n_routes, dim);
	float *v = umb_malloc(dim * sizeof *v);
	size_t added = 0;
	for (size_t i = 0; i < rc->n_routes; i++) {
		const struct cfg_route *r = &rc->routes[i];
		for (size_t j = 0; j < r->n_examples; j++) {
			embed_builtin_vec(rt->emb, str_cstr(r->examples[j]), v);
			sem_index_add(rt->sem, i, v);
			added++;
		}
		if (!r->n_examples && r->description) {
			embed_builtin_vec(rt->emb, str_cstr(r->description), v);
			sem_index_add(rt->sem, i, v);
			added++;
		}
	}
	free(v);
	sem_index_finish(rt->sem);
	if (!added) {
		snprintf(err, errlen, "routing.semantic: no route has examples or a description to compare with");
		return UMB_ERR;
	}
	return UMB_OK;
}

/* A provider embedder: the texts to embed for the index (examples, or the
 * description of a route without any) and the model to call. */
static int router__remote_prepare(struct router *rt, char *err, size_t errlen)
{
	const struct cfg_routing *rc = rt->rc;
	size_t n = 0;
	for (size_t i = 0; i < rc->n_routes; i++)
		n += rc->routes[i].n_examples ? rc->routes[i].n_examples
					      : rc->routes[i].description ? 1 : 0;
	if (!n || n >= EMBED_CLIENT_MAX_TEXTS) {
		snprintf(err, errlen, "routing.semantic: %zu examples to embed, expected 1 to %d",
			 n, EMBED_CLIENT_MAX_TEXTS - 1);
		return UMB_ERR;
	}
	rt->examples = umb_calloc(n, sizeof *rt->examples);
	rt->example_route = umb_calloc(n, sizeof *rt->example_route);
	for (size_t i = 0; i < rc->n_routes; i++) {
		const struct cfg_route *r = &rc->routes[i];
		for (size_t j = 0; j < r->n_examples; j++) {
			rt->example_route[rt->n_examples] = i;
			rt->examples[rt->n_examples++] = str_cstr(r->examples[j]);
		}
		if (!r->n_examples && r->description) {
			rt->example_route[rt->n_examples] = i;
			rt->examples[rt->n_examples++] = str_cstr(r->description);
		}
	}
	struct cfg_model *m = &rt->embed_model;
	m->name = rc->semantic.model;
	m->upstream_model = rc->semantic.model;
	m->provider = (struct cfg_provider *)config_find_provider(rt->cfg, rc->semantic.provider);
	m->provider_name = m->provider->name;
	m->locality = LOCALITY_UNSET;
	return UMB_OK;
}

struct router *router_new(const struct config *cfg, char *err, size_t errlen)
{
	const struct cfg_routing *rc = &cfg->routing;
	struct router *rt = umb_calloc(1, sizeof *rt);
	pthread_mutex_init(&rt->remote_lock, NULL);
	rt->cfg = cfg;
	rt->rc = rc;
	rt->heur = heur_compile(rc, err, errlen);
	if (!rt->heur)
		goto fail;
	rt->guard_mask = heur_sensitive_mask(rt->heur);
	rt->count_mask = rt->guard_mask |
		(rc->heuristics_enabled ? heur_detectors_needed(rt->heur) : 0);
	rt->seed = cache_seed();
	rt->default_route = router__route(rc, rc->default_route);
	rt->route_names = umb_calloc(rc->n_routes, sizeof(char *));
	rt->route_descs = umb_calloc(rc->n_routes, sizeof(char *));
	for (size_t i = 0; i < rc->n_routes; i++) {
		rt->route_names[i] = rc->routes[i].name;
		rt->route_descs[i] = rc->routes[i].description ? rc->routes[i].description : "";
	}
	if (rc->semantic.enabled) {
		if (rc->semantic.provider ? router__remote_prepare(rt, err, errlen)
					  : router__semantic_build(rt, err, errlen))
			goto fail;
		rt->sem_cache = cache_new((size_t)rc->semantic.cache_size,
					  sizeof(struct sem_result), rc->semantic.cache_ttl_s);
	}
	if (rc->classifier.enabled)
		rt->cls_cache = cache_new((size_t)rc->classifier.cache_size,
					  sizeof(struct cls_value), rc->classifier.cache_ttl_s);
	return rt;
fail:
	router_free(rt);
	return NULL;
}

/* ---- the request's text ---- */

/* Append the text of one message's content (a string, or the "text" of
 * each part in an array); other shapes add nothing. */
static void router__content(struct json_val content, struct buf *out)
{
	if (content.type == JSON_STRING) {
		json_str_decode(content, out);
		return;
	}
	if (content.type != JSON_ARRAY)
		return;
	struct json_iter it;
	struct json_val part, text;
	bool first = true;
	json_iter_init(&it, content);
	while (json_arr_next(&it, &part)) {
		if (part.type != JSON_OBJECT || !json_obj_get(part, "text", &text) ||
		    text.type != JSON_STRING)
			continue;
		if (!first)
			buf_append_lit(out, "\n");
		first = false;
		json_str_decode(text, out);
	}
}

static size_t router__utf8_chars(struct str s)
{
	size_t n = 0;
	for (size_t i = 0; i < s.n; i++)
		n += ((unsigned char)s.p[i] & 0xC0) != 0x80;
	return n;
}

int router_text_extract(struct arena *a, struct json_val messages,
			const struct json_val *tools, const struct json_val *max_tokens,
			struct route_text *t, char *why, size_t whylen)
{
	struct buf conv, sys, one;
	struct json_iter it;
	struct json_val msg, role, content;
	size_t idx = 0;
	int rc = UMB_OK;
	memset(t, 0, sizeof *t);
	buf_init(&conv, 0);
	buf_init(&sys, 0);
	buf_init(&one, 0);
	size_t last_off = 0, last_len = 0;
	bool have_last = false;
	json_iter_init(&it, messages);
	while (json_arr_next(&it, &msg)) {
		if (msg.type != JSON_OBJECT || !json_obj_get(msg, "role", &role) ||
		    role.type != JSON_STRING) {
			snprintf(why, whylen, "messages[%zu] must be an object with a string 'role'", idx);
			rc = UMB_ERR;
			goto out;
		}
		idx++;
		if (!json_obj_get(msg, "content", &content))
			continue;
		buf_reset(&one);
		router__content(content, &one);
		if (!one.n)
			continue;
		if (conv.n)
			buf_append_lit(&conv, "\n");
		size_t off = conv.n;
		buf_append(&conv, one.p, one.n);
		if (json_str_eq(role, "system") || json_str_eq(role, "developer")) {
			if (sys.n)
				buf_append_lit(&sys, "\n");
			buf_append(&sys, one.p, one.n);
		} else if (json_str_eq(role, "user")) {
			last_off = off;
			last_len = one.n;
			have_last = true;
		}
	}
	char *cp = arena_strndup(a, conv.p ? conv.p : "", conv.n);
	t->conversation = str_make(cp, conv.n);
	t->system = str_make(arena_strndup(a, sys.p ? sys.p : "", sys.n), sys.n);
	t->last_user = have_last ? str_make(cp + last_off, last_len) : str_make(cp, 0);
	t->last_user_chars = router__utf8_chars(t->last_user);
	t->has_tools = false;
	if (tools && tools->type == JSON_ARRAY) {
		struct json_iter ti;
		struct json_val tv;
		json_iter_init(&ti, *tools);
		t->has_tools = json_arr_next(&ti, &tv);
	}
	t->max_tokens = -1;
	int64_t mt;
	if (max_tokens && json_get_i64(*max_tokens, &mt) == UMB_OK && mt >= 0)
		t->max_tokens = mt > LONG_MAX ? LONG_MAX : (long)mt;
out:
	buf_clear(&conv);
	buf_clear(&sys);
	buf_clear(&one);
	return rc;
}

int router_text_input(struct arena *a, struct json_val input, struct route_text *t)
{
	struct buf b;
	memset(t, 0, sizeof *t);
	t->max_tokens = -1;
	buf_init(&b, 0);
	if (input.type == JSON_STRING) {
		json_str_decode(input, &b);
	} else if (input.type == JSON_ARRAY) {
		struct json_iter it;
		struct json_val v;
		json_iter_init(&it, input);
		while (json_arr_next(&it, &v)) {
			if (v.type != JSON_STRING)
				continue; /* token ids carry no text we can read */
			if (b.n)
				buf_append_lit(&b, "\n");
			json_str_decode(v, &b);
		}
	}
	t->conversation = t->last_user = str_make(arena_strndup(a, b.p ? b.p : "", b.n), b.n);
	buf_clear(&b);
	return UMB_OK;
}

/* ---- decisions ---- */

void route_decision_init(struct route_decision *d)
{
	memset(d, 0, sizeof *d);
	d->score = -1;
	buf_init(&d->trace, 64 * 1024);
	buf_append_lit(&d->trace, "[");
}

void route_decision_clear(struct route_decision *d)
{
	buf_clear(&d->trace);
}

/* Append one object to the trace array: fmt is the object's members. */
__attribute__((format(printf, 2, 3)))
static void router__trace(struct route_decision *d, const char *fmt, ...)
{
	if (d->trace.n > 1)
		buf_append_lit(&d->trace, ",");
	buf_append_lit(&d->trace, "{");
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&d->trace, fmt, ap);
	va_end(ap);
	buf_append_lit(&d->trace, "}");
}

static void router__decide(struct route_decision *d, const struct cfg_route *r,
			   enum route_method m, double score)
{
	d->route = r;
	d->method = m;
	d->score = score;
	d->want_classifier = false;
}

void router_guard(const struct router *rt, const struct route_text *t,
		  struct route_decision *d)
{
	d->det_mask = rt->count_mask;
	if (rt->count_mask)
		heur_detect(rt->heur, t->conversation, rt->count_mask, &d->det);
	d->sensitive_hits = 0;
	for (int s = 0; s < DET_MAX; s++)
		if ((rt->guard_mask >> s & 1) && d->det.n[s])
			d->sensitive_hits |= 1ull << s;
	if (rt->guard_mask) {
		char hits[256];
		router_hits_text(rt, d, hits, sizeof hits);
		router__trace(d, "\"layer\":\"sensitive\",\"hits\":\"%s\"", hits);
	}
}

enum guard_verdict router_guard_verdict(const struct router *rt,
					const struct cfg_model *explicit_model,
					struct route_decision *d)
{
	if (!router_is_sensitive(d)) {
		if (explicit_model)
			d->method = ROUTE_EXPLICIT;
		return GUARD_PASS;
	}
	const struct cfg_sensitive *sv = &rt->rc->sensitive;
	if (sv->action == SENSITIVE_BLOCK) {
		d->method = ROUTE_SENSITIVE;
		return GUARD_BLOCK;
	}
	if (explicit_model && explicit_model->locality == LOCALITY_ONPREM) {
		/* already on-prem: keep it (its fallbacks stay on-prem too) */
		d->method = ROUTE_EXPLICIT;
		return GUARD_KEEP;
	}
	d->route = router__route(rt->rc, sv->route);
	d->method = ROUTE_SENSITIVE;
	d->score = -1;
	return GUARD_REROUTE;
}

bool router_is_sensitive(const struct route_decision *d)
{
	return d->sensitive_hits != 0;
}

const struct cfg_sensitive *router_sensitive(const struct router *rt)
{
	return &rt->rc->sensitive;
}

void router_hits_text(const struct router *rt, const struct route_decision *d,
		      char *out, size_t outlen)
{
	size_t n = 0;
	out[0] = 0;
	for (int s = 0; s < DET_MAX && n + 1 < outlen; s++) {
		if (!(d->sensitive_hits >> s & 1))
			continue;
		int k = snprintf(out + n, outlen - n, "%s%s", n ? ", " : "",
				 heur_detector_name(rt->heur, s));
		if (k < 0)
			break;
		n += (size_t)k;
	}
}

void router_write_detectors(const struct router *rt, const struct route_decision *d,
			    struct buf *out)
{
	bool first = true;
	buf_append_lit(out, "{");
	for (int s = 0; s < DET_MAX; s++) {
		if (!(d->det_mask >> s & 1) || !d->det.n[s])
			continue;
		if (!first)
			buf_append_lit(out, ",");
		first = false;
		json_write_cstr(out, heur_detector_name(rt->heur, s));
		buf_printf(out, ":%u", d->det.n[s]);
	}
	buf_append_lit(out, "}");
}

void router_use_default(const struct router *rt, struct route_decision *d)
{
	router__decide(d, rt->default_route, ROUTE_DEFAULT, -1);
	router__trace(d, "\"layer\":\"default\",\"route\":\"%s\"", rt->default_route->name);
}

static uint64_t router__now_ms(void)
{
	return clock_mono_ns() / 1000000u;
}

/* Which text the semantic layer and the classifier look at: the last user
 * message carries the intent (multi-turn rows are labelled by it); the
 * whole conversation when there is no user message. */
static struct str router__intent_text(const struct route_text *t)
{
	return t->last_user.n ? t->last_user : t->conversation;
}

static struct cache_key router__sem_key(const struct router *rt, const struct route_text *t)
{
	return cache_hash(router__intent_text(t), rt->seed);
}

/* Act on a similarity result: confident, ambiguous (ask the classifier)
 * or too far from everything (the caller goes on to the default). */
static void router__semantic_apply(struct router *rt, struct route_decision *d,
				   const struct sem_result *res, bool cached)
{
	const struct cfg_semantic *sc = &rt->rc->semantic;
	const char *best = res->route >= 0 ? rt->route_names[res->route] : "";
	const char *second = res->second >= 0 ? rt->route_names[res->second] : "";
	const char *verdict = res->route < 0 ? "none"
		: res->score >= sc->threshold ? "confident"
		: res->score >= sc->ambiguous_threshold ? "ambiguous" : "below";
	router__trace(d, "\"layer\":\"semantic\",\"route\":\"%s\",\"score\":%.4f,"
		      "\"second\":\"%s\",\"second_score\":%.4f,\"result\":\"%s\",\"cached\":%s",
		      best, res->score, second, res->second_score, verdict, cached ? "true" : "false");
	if (res->route >= 0 && res->score >= sc->threshold) {
		router__decide(d, &rt->rc->routes[res->route], ROUTE_SEMANTIC, res->score);
		return;
	}
	if (res->route >= 0 && res->score >= sc->ambiguous_threshold && rt->rc->classifier.enabled) {
		d->want_classifier = true;
		d->score = res->score;
	}
}

/* The semantic layer from the cache or the builtin embedder; a provider
 * embedder on a cache miss sets want_embedding (router_embed_*). */
static void router__semantic(struct router *rt, const struct route_text *t,
			     struct route_decision *d)
{
	const struct cfg_semantic *sc = &rt->rc->semantic;
	struct cache_key key = router__sem_key(rt, t);
	struct sem_result res;
	if (cache_get(rt->sem_cache, key, &res, router__now_ms())) {
		router__semantic_apply(rt, d, &res, true);
		return;
	}
	if (sc->provider) {
		d->want_embedding = true;
		return;
	}
	size_t dim = embed_builtin_dim(rt->emb);
	float *q = umb_malloc(dim * sizeof *q);
	embed_builtin_vec(rt->emb, router__intent_text(t), q);
	sem_index_query(rt->sem, sc->comparison, q, &res);
	free(q);
	cache_put(rt->sem_cache, key, &res, router__now_ms());
	router__semantic_apply(rt, d, &res, false);
}

/* After the semantic layer could not decide: the classifier if it is on
 * and the layer asked for it (or could not run), else the default. */
static void router__after_semantic(struct router *rt, struct route_decision *d, bool failed)
{
	if (d->route || d->want_classifier)
		return;
	if (failed && rt->rc->classifier.enabled) {
		d->want_classifier = true;
		return;
	}
	router_use_default(rt, d);
}

int router_embed_request(struct router *rt, const struct route_text *t,
			 struct route_decision *d, struct buf *body,
			 const struct cfg_model **model)
{
	/* until the index exists, the examples ride along with the prompt */
	d->embed_with_examples = atomic_load_explicit(&rt->remote_sem, memory_order_acquire) == NULL;
	size_t n = d->embed_with_examples ? rt->n_examples + 1 : 1;
	struct str *texts = umb_malloc(n * sizeof *texts);
	if (d->embed_with_examples)
		memcpy(texts, rt->examples, rt->n_examples * sizeof *texts);
	texts[n - 1] = router__intent_text(t);
	int rc = embed_client_body(body, rt->rc->semantic.model, texts, n);
	free(texts);
	*model = &rt->embed_model;
	return rc;
}

/* Build the index from the example vectors (the first answer wins). */
static void router__remote_index(struct router *rt, const float *vecs, size_t dim)
{
	pthread_mutex_lock(&rt->remote_lock);
	if (!atomic_load_explicit(&rt->remote_sem, memory_order_relaxed)) {
		struct sem_index *ix = sem_index_new(rt->rc->n_routes, dim);
		for (size_t i = 0; i < rt->n_examples; i++)
			sem_index_add(ix, rt->example_route[i], vecs + i * dim);
		sem_index_finish(ix);
		rt->remote_dim = dim;
		atomic_store_explicit(&rt->remote_sem, ix, memory_order_release);
	}
	pthread_mutex_unlock(&rt->remote_lock);
}

void router_embed_answer(struct router *rt, const struct route_text *t, int status,
			 struct str body, struct route_decision *d)
{
	size_t n = d->embed_with_examples ? rt->n_examples + 1 : 1, dim = 0;
	float *vecs = NULL;
	char why[160];
	d->want_embedding = false;
	if (status != 200 || embed_client_parse(body, n, &vecs, &dim, why, sizeof why)) {
		if (status != 200)
			snprintf(why, sizeof why, status ? "status %d" : "no answer (failed or timed out)",
				 status);
		struct buf w;
		buf_init(&w, 0);
		json_write_cstr(&w, why);
		router__trace(d, "\"layer\":\"semantic\",\"result\":\"embedder unavailable\",\"why\":%s",
			      w.p);
		buf_clear(&w);
		router__after_semantic(rt, d, true);
		return;
	}
	if (d->embed_with_examples)
		router__remote_index(rt, vecs, dim);
	struct sem_index *ix = atomic_load_explicit(&rt->remote_sem, memory_order_acquire);
	struct sem_result res;
	if (rt->remote_dim != dim) {
		/* the model changed its dimension since the index was built */
		router__trace(d, "\"layer\":\"semantic\",\"result\":\"embedder unavailable\","
			      "\"why\":\"vector of %zu numbers, index of %zu\"", dim, rt->remote_dim);
		free(vecs);
		router__after_semantic(rt, d, true);
		return;
	}
	sem_index_query(ix, rt->rc->semantic.comparison, vecs + (n - 1) * dim, &res);
	free(vecs);
	cache_put(rt->sem_cache, router__sem_key(rt, t), &res, router__now_ms());
	router__semantic_apply(rt, d, &res, false);
	router__after_semantic(rt, d, false);
}

void router_cascade(struct router *rt, const struct route_text *t,
		    struct route_decision *d)
{
	const struct cfg_routing *rc = rt->rc;
	d->route = NULL;
	d->want_classifier = d->want_embedding = false;
	if (rc->heuristics_enabled && rc->n_rules) {
		int i = heur_match(rt->heur, t, &d->det);
		if (i >= 0) {
			const struct cfg_rule *rule = &rc->rules[i];
			router__decide(d, router__route(rc, rule->route), ROUTE_HEURISTIC, 1.0);
			router__trace(d, "\"layer\":\"heuristics\",\"rule\":\"%s\",\"route\":\"%s\"",
				      rule->name, rule->route);
			if (rt->explain) {
				/* evaluates the rule again: for the CLI, not the hot path */
				char why[256];
				struct buf w;
				buf_init(&w, 0);
				heur_explain(rt->heur, (size_t)i, t, &d->det, why, sizeof why);
				json_write_str_lossy(&w, str_cstr(why));
				d->trace.n--; /* reopen the object */
				buf_printf(&d->trace, ",\"why\":%s}", w.p);
				buf_clear(&w);
			}
			return;
		}
		router__trace(d, "\"layer\":\"heuristics\",\"result\":\"no rule matched\"");
	}
	if (rc->semantic.enabled) {
		router__semantic(rt, t, d);
		if (d->route || d->want_classifier || d->want_embedding)
			return;
	} else if (rc->classifier.enabled) {
		/* no semantic layer: the classifier decides what rules did not */
		d->want_classifier = true;
		return;
	}
	router_use_default(rt, d);
}

/* ---- the classifier ---- */

int router_classifier_body(const struct router *rt, const struct route_text *t,
			   const char *model_name, struct buf *out)
{
	const struct cfg_routing *rc = rt->rc;
	return classifier_build_request(out, model_name, rt->route_names,
					rt->route_descs, rc->n_routes,
					router__intent_text(t), ROUTER_CLASSIFY_BYTES);
}

static void router__classified(struct router *rt, struct route_decision *d,
			       int route, double conf, bool cached)
{
	const struct cfg_classifier *cc = &rt->rc->classifier;
	bool ok = route >= 0 && conf >= cc->confidence_threshold;
	router__trace(d, "\"layer\":\"classifier\",\"route\":\"%s\",\"confidence\":%.3f,"
		      "\"result\":\"%s\",\"cached\":%s",
		      route >= 0 ? rt->route_names[route] : "", conf,
		      ok ? "accepted" : "below confidence_threshold", cached ? "true" : "false");
	if (ok)
		router__decide(d, &rt->rc->routes[route], ROUTE_CLASSIFIER, conf);
	else
		router_use_default(rt, d);
}

bool router_classifier_cached(struct router *rt, const struct route_text *t,
			      struct route_decision *d)
{
	struct cache_key key = cache_hash(router__intent_text(t), rt->seed ^ 0x9e3779b97f4a7c15ull);
	struct cls_value v;
	if (!cache_get(rt->cls_cache, key, &v, router__now_ms()))
		return false;
	router__classified(rt, d, v.route, v.confidence, true);
	return true;
}

void router_classifier_answer(struct router *rt, const struct route_text *t,
			      int status, struct str body, struct route_decision *d)
{
	int route = -1;
	double conf = 0;
	char why[160];
	if (status == 0) {
		router__trace(d, "\"layer\":\"classifier\",\"result\":\"no answer (failed or timed out)\"");
		router_use_default(rt, d);
		return;
	}
	if (status != 200 || classifier_parse_answer(body, rt->route_names, rt->rc->n_routes,
						     &route, &conf, why, sizeof why)) {
		struct buf w;
		buf_init(&w, 0);
		if (status != 200)
			buf_printf(&w, "status %d", status);
		else
			json_write_cstr(&w, why);
		router__trace(d, "\"layer\":\"classifier\",\"result\":\"unusable answer\",\"why\":%s%.*s%s",
			      status != 200 ? "\"" : "", (int)w.n, w.p ? w.p : "",
			      status != 200 ? "\"" : "");
		buf_clear(&w);
		router_use_default(rt, d);
		return;
	}
	struct cache_key key = cache_hash(router__intent_text(t), rt->seed ^ 0x9e3779b97f4a7c15ull);
	struct cls_value v = { route, (float)conf };
	cache_put(rt->cls_cache, key, &v, router__now_ms());
	router__classified(rt, d, route, conf, false);
}

void router_set_explain(struct router *rt, bool on)
{
	rt->explain = on;
}

const char *router_detector_name(const struct router *rt, int slot)
{
	return heur_detector_name(rt->heur, slot);
}

void router_cache_stats(const struct router *rt, uint64_t *hits, uint64_t *misses)
{
	uint64_t h = 0, m = 0, e = 0;
	*hits = *misses = 0;
	if (rt->sem_cache) {
		cache_stats(rt->sem_cache, &h, &m, &e);
		*hits += h;
		*misses += m;
	}
	if (rt->cls_cache) {
		cache_stats(rt->cls_cache, &h, &m, &e);
		*hits += h;
		*misses += m;
	}
}
