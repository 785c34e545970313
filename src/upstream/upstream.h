/* upstream.h — talking to model servers: endpoint pools with health and
 * ejection, libcurl multi on each worker's loop, active health checks, and
 * upstream_forward(): one client request through endpoints, retries and
 * the fallback chain, streaming included.
 *
 * Failure rules (DESIGN.md "Upstream failures"): before the first byte
 * reaches the client a connect failure, 5xx, garbage or 429 moves on to the
 * next endpoint, then to the model's fallbacks; when nothing is left the
 * client gets 502 (5xx/garbage/reset), 503 (no healthy endpoint), 504
 * (timeouts) or the upstream's 429 with its retry-after. */
#ifndef UMB_UPSTREAM_H
#define UMB_UPSTREAM_H

#include "config/config.h"
#include "core/core.h"
#include "core/json.h"
#include "providers/canon.h"

struct event_base;
struct metrics_shard;
struct req;
struct runtime;
struct worker;
struct upstream_set;

/* ---- lifetime ---- */
void upstream_global_init(void);
void upstream_global_cleanup(void);
/** Pools for every provider of cfg; endpoint health and ejection state
 * carry over from `prev` for endpoints with the same provider and URL. */
struct upstream_set *upstream_set_new(const struct config *cfg,
				      const struct upstream_set *prev);
void upstream_set_free(struct upstream_set *set);
/** Per-worker curl multi handle on the worker's loop. */
void upstream_worker_init(struct worker *w, struct runtime *rt);
void upstream_worker_shutdown(struct worker *w);

/* ---- active health checks (main thread) ---- */
void upstream_health_start(struct event_base *base, struct runtime *rt,
			   struct metrics_shard *m);
/** Switch the checks to a reloaded runtime. */
void upstream_health_runtime(struct event_base *base, struct runtime *rt);
void upstream_health_stop(void);

/** Append endpoint health gauges to a /metrics exposition. */
int upstream_metrics(struct buf *out, void *rt /* struct runtime * */);

/* ---- forwarding ---- */

enum upstream_op { UPSTREAM_CHAT, UPSTREAM_EMBEDDINGS };

/** A parsed client request, as the API layer hands it over. The body is
 * forwarded with surgical edits only; `members` are its top-level members
 * from the single validating parse. */
struct upstream_call {
	enum upstream_op op;
	const struct cfg_model *model; /* first choice */
	struct str requested_model;    /* the name the client sent */
	struct str body;
	struct json_member *members;
	size_t n_members;
	bool stream;              /* client asked for SSE */
	bool client_wants_usage;  /* stream_options.include_usage was true */
	bool onprem_only;         /* sensitive: fallbacks must be locality onprem */
	/* Translation (docs/providers.md). `body` and `members` are always
	 * the OpenAI-shaped request; dialect says how the client speaks. For
	 * an Anthropic client, native_body/native_members are its own
	 * Anthropic body (passed through to anthropic-type upstreams) and
	 * canon is set at ingress. For an OpenAI client canon is built the
	 * first time a non-OpenAI upstream is tried. */
	int dialect;                          /* enum api_dialect */
	const struct canon_req *canon;
	struct str native_body;
	struct json_member *native_members;
	size_t n_native_members;
	struct str anthropic_beta;  /* an Anthropic client's anthropic-beta header:
	                             * forwarded to anthropic-type upstreams only */
};

/** Forward a request; the response (or error) is sent to the client from
 * the worker's loop. `call` is copied; its views must live as long as r. */
void upstream_forward(struct req *r, const struct upstream_call *call);

/** An internal call's answer: status 0 when nothing usable arrived
 * (every attempt failed, or the deadline passed), else the upstream's
 * status and its whole body (valid until the request ends). */
typedef void (*upstream_done_cb)(void *arg, int status, struct str body);

/** A non-streaming call the gateway makes for its own sake on behalf of
 * r (the routing classifier): same endpoints, retries and fallbacks, all
 * within timeout_ms; the answer goes to cb, never to the client. A client
 * disconnect cancels it without calling cb. */
void upstream_call_internal(struct req *r, const struct upstream_call *call, int timeout_ms,
			    upstream_done_cb cb, void *arg);

#endif
