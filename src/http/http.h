/* http.h — the ingress: listeners, worker threads, client connections,
 * request framing, response writing, timeouts, TLS, drain and reload.
 *
 * Each worker thread runs one libevent loop; connections never move
 * between workers. A request (struct req) is handed to api_dispatch()
 * once its head and body are complete; the handler answers immediately
 * (http_respond) or later from upstream callbacks on the same worker.
 *
 * Ownership: the request owns its arena and the bytes of its head and body
 * (views in `head` and `body` point into them) until http_req_finish(). */
#ifndef UMB_HTTP_H
#define UMB_HTTP_H

#include <stdatomic.h>

#include "config/config.h"
#include "core/core.h"
#include "http/http_parse.h"
#include "identity/auth.h"

struct event_base;
struct worker;
struct conn;
struct upstream_set;
struct router;
struct audit_log;
struct usage_acc;
struct spend_ledger;
struct govern;
struct metrics_shard;
struct req;

/** A config and everything derived from it, shared by all workers and
 * swapped as a whole on reload. Requests hold a reference for their
 * whole life, so a reload never changes a request half way. */
struct runtime {
	struct config *cfg;
	struct upstream_set *ups;
	struct ssl_ctx_st *ssl_ctx; /* ingress TLS, NULL without tls: */
	struct pki_ca *enroll_ca;   /* signs POST /enroll; NULL: enrollment off */
	struct router *router;      /* routing: on; NULL otherwise */
	struct audit_log *audit;    /* audit: on; NULL otherwise (the server's, shared by reloads) */
	struct usage_acc *usage;    /* usage rollups pending a flush (the server's) */
	struct spend_ledger *spend; /* budget and rate-limit leases (the server's) */
	atomic_int refs;
};

struct runtime *runtime_acquire(void);
void runtime_release(struct runtime *rt);

/** Per-thread state that handlers may use. */
struct worker {
	int idx;
	struct event_base *base;
	struct metrics_shard *metrics;
	void *upstream; /* upstream module's per-worker state (curl multi) */
	struct auth_worker *auth; /* store handle and key cache */
};

/** Handler hooks a request's owner installs while it waits on I/O. */
struct req_hooks {
	/** The client went away or the gateway is shutting the request down:
	 * cancel upstream work now. The request is finished right after. */
	void (*abort)(struct req *r);
	/** Output queued earlier has drained below the low-water mark. */
	void (*drain)(struct req *r);
};

struct req {
	struct worker *w;
	struct conn *conn;
	struct arena *arena;
	struct runtime *rt;
	struct str body;
	char id[48];             /* x-request-id */
	uint64_t t_start_ns;     /* first byte of the request head */
	uint64_t upstream_ns;    /* time spent waiting on upstreams */
	bool tls;
	char peer[64];           /* client address */
	struct auth_conn *auth_conn; /* the connection's certificate identity */
	struct auth_who who;     /* the authenticated caller */

	/* what the handler learned, for logs and metrics */
	const char *api;         /* "chat" | "embeddings" | "models" | ... */
	const char *route_method; /* x-umbra-route-method, NULL: not an API call */
	const char *route;       /* x-umbra-route: the chosen route, or NULL */
	const char *route_score; /* x-umbra-route-score, or NULL */
	const char *route_log;   /* ",\"detectors\":{..},\"route_trace\":[..]" for the log */
	const char *detectors_json; /* {"email":1,...} for the audit record, or NULL */
	const char *model_requested; /* the client's model name ("auto"), or NULL */
	const char *model;       /* configured model name ("" if unknown): the
	                          * metrics label, so never client text */
	const char *model_shown; /* what the client sees (x-umbra-model, log):
	                          * the requested name for a glob model */
	const char *provider, *endpoint;
	uint64_t prompt_tokens, completion_tokens;
	int64_t cost_nusd;       /* what the upstream's usage cost, nano-USD */
	bool usage_seen;         /* the upstream reported usage */
	bool usage_missing;      /* it did not: charged the reservation (api/govern.c) */
	struct govern *govern;   /* budget and rate-limit reservations held */
	bool stream;
	int attempts;
	bool upstream_bound;     /* counted in umbra_requests_in_flight */
	const char *error_kind;  /* last upstream failure kind, or NULL */

	/* response state */
	int status;
	bool head_sent, chunked, finished;
	struct req_hooks hooks;
	void *handler; /* owner's context while hooks are set */

	/* Last, and large: req_new zeroes only what comes before it. */
	struct http_request_head head;
};

/* ---- responding ---- */

/** Extra response header lines: "Name: value\r\n" each, or NULL. */
struct http_resp {
	int status;
	const char *content_type; /* NULL: none */
	struct str extra_headers; /* preformatted "Name: value\r\n" lines */
	struct str body;          /* borrowed until the request finishes */
};

/** Send a complete response and finish the request. */
void http_respond(struct req *r, const struct http_resp *resp);
/** Start a streamed (chunked) response; then http_stream_write/_end. */
void http_stream_begin(struct req *r, int status, const char *content_type,
		       struct str extra_headers);
/** Queue one chunk. Returns true while the client keeps up; false means
 * the output queue is above its high-water mark: stop producing until the
 * drain hook runs. */
bool http_stream_write(struct req *r, const char *p, size_t n);
/** Terminate a streamed response (the final chunk is always sent).
 * abort=true: the stream broke, so the connection is closed afterwards. */
void http_stream_end(struct req *r, bool abort);
/** Bytes queued for the client and not yet written. */
size_t http_out_pending(const struct req *r);

/** True while the gateway drains for shutdown (health reports 503). */
bool http_is_draining(const struct req *r);

/* ---- the server ---- */

struct serve_opts {
	const char *config_path; /* NULL: embedded default */
};
/** Run the gateway until SIGTERM/SIGINT has drained it. Returns an exit
 * code. */
int http_serve(const struct serve_opts *opts);

#endif
