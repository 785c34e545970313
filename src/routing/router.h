/* router.h — the routing cascade and the sensitivity guard
 * (docs/routing.md).
 *
 * One struct router is built per loaded config and shared read-only by the
 * worker threads (its caches lock inside). A chat request goes through:
 *   router_text_extract   the text and facts routing looks at (once)
 *   router_guard          detectors: does personal data stay on-prem?
 *   router_cascade        heuristics → semantic → (classifier) → default
 * The classifier is a remote call: router_cascade says when it is wanted
 * and router_classifier_answer folds its answer in. Everything is
 * explained in a JSON trace for the log line and `umbra route --explain`. */
#ifndef UMB_ROUTER_H
#define UMB_ROUTER_H

#include "config/config.h"
#include "core/json.h"
#include "routing/routing.h"

struct router;

enum route_method {
	ROUTE_EXPLICIT,
	ROUTE_HEURISTIC,
	ROUTE_SEMANTIC,
	ROUTE_CLASSIFIER,
	ROUTE_DEFAULT,
	ROUTE_SENSITIVE,
	ROUTE_METHODS
};

/** "explicit", "heuristic", "semantic", "classifier", "default", "sensitive". */
const char *route_method_name(enum route_method m);

/** Build the router for a loaded config with routing enabled; NULL with a
 * message in err when something does not compile. */
struct router *router_new(const struct config *cfg, char *err, size_t errlen);
void router_free(struct router *rt);

/** Fill t from a chat request's members. messages must be an array;
 * tools and max_tokens may be NULL. The text lives in a. Returns UMB_ERR
 * with a message in why when a message is not an object with a string
 * role (content may be a string, an array of parts, or null). */
int router_text_extract(struct arena *a, struct json_val messages,
			const struct json_val *tools, const struct json_val *max_tokens,
			struct route_text *t, char *why, size_t whylen);

/** Fill t from an embeddings request's `input` (a string, or an array
 * whose strings are joined by newlines; token arrays add nothing). */
int router_text_input(struct arena *a, struct json_val input, struct route_text *t);

/** What routing decided about one request. */
struct route_decision {
	const struct cfg_route *route;  /* NULL: explicit model, no route */
	enum route_method method;
	double score;                   /* similarity or confidence; < 0: none */
	struct det_counts det;          /* distinct matches per detector slot */
	uint64_t det_mask;              /* slots that were counted */
	uint64_t sensitive_hits;        /* guard slots with a match */
	bool want_classifier;           /* cascade stopped: ask the classifier */
	bool want_embedding;            /* cascade stopped: ask the provider embedder */
	bool embed_with_examples;       /* that request carries the examples too */
	struct buf trace;               /* JSON array of layer results */
};

void route_decision_init(struct route_decision *d);
void route_decision_clear(struct route_decision *d);

/** Count every detector the guard and the rules need over the whole
 * conversation; sets sensitive_hits. */
void router_guard(const struct router *rt, const struct route_text *t,
		  struct route_decision *d);
/** What the guard's hits mean for a request (after router_guard). */
enum guard_verdict {
	GUARD_PASS,      /* nothing found (or guard off): explicit model or cascade */
	GUARD_BLOCK,     /* action block: refuse; method is sensitive */
	GUARD_KEEP,      /* the explicit model is on-prem: keep it (method explicit) */
	GUARD_REROUTE,   /* d->route is the sensitive route (method sensitive) */
};
/** Decide for explicit_model (NULL: a routed request) and record the
 * method (and route) in d; the one place gateway and CLI share. */
enum guard_verdict router_guard_verdict(const struct router *rt,
					const struct cfg_model *explicit_model,
					struct route_decision *d);

/** True when the guard is on and found something. */
bool router_is_sensitive(const struct route_decision *d);
/** The guard's configuration (action, reroute target). */
const struct cfg_sensitive *router_sensitive(const struct router *rt);
/** "email, iban" for the sensitive hits, into out. */
void router_hits_text(const struct router *rt, const struct route_decision *d,
		      char *out, size_t outlen);

/** Heuristics, then the semantic layer. Ends with a route (method set),
 * or with want_embedding (a provider embedder must be asked) or
 * want_classifier set. Call
 * router_guard first (rules may name detectors). */
void router_cascade(struct router *rt, const struct route_text *t,
		    struct route_decision *d);

/** The provider embedder's request (OpenAI /v1/embeddings body) for t,
 * and the model to send it with. Until the semantic index exists the
 * route examples go in the same request. */
int router_embed_request(struct router *rt, const struct route_text *t,
			 struct route_decision *d, struct buf *body,
			 const struct cfg_model **model);
/** The embedder answered (status 0: failed or timed out): the semantic
 * layer decides, or asks for the classifier, or the default is taken. */
void router_embed_answer(struct router *rt, const struct route_text *t, int status,
			 struct str body, struct route_decision *d);

/** The classifier's request body for t (an OpenAI chat completion naming
 * model_name). */
int router_classifier_body(const struct router *rt, const struct route_text *t,
			   const char *model_name, struct buf *out);
/** The classifier answered (body is its whole response; status 0 = the
 * call failed or timed out): take its route when confident, else the
 * default route. Results are cached by text. */
void router_classifier_answer(struct router *rt, const struct route_text *t,
			      int status, struct str body, struct route_decision *d);
/** A cached classification for t, if any: applied to d and true. */
bool router_classifier_cached(struct router *rt, const struct route_text *t,
			      struct route_decision *d);

/** End the cascade at the default route. */
void router_use_default(const struct router *rt, struct route_decision *d);

/** Detector hits as a JSON object {"email":2,...} (zero counts omitted). */
void router_write_detectors(const struct router *rt, const struct route_decision *d,
			    struct buf *out);

/** Explain mode (the CLI): traces also say why a rule matched, at the
 * cost of evaluating it twice. */
void router_set_explain(struct router *rt, bool on);

/** The name of detector slot i ("email", or a custom name). */
const char *router_detector_name(const struct router *rt, int slot);

/** Cache counters, for metrics. */
void router_cache_stats(const struct router *rt, uint64_t *hits, uint64_t *misses);

#endif
