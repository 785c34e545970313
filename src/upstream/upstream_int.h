/* upstream_int.h — shared inside src/upstream/ only. */
#ifndef UMB_UPSTREAM_INT_H
#define UMB_UPSTREAM_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <curl/curl.h>

#include "providers/provider.h"
#include "upstream/upstream.h"

#define POOL_MAX_ENDPOINTS 64 /* a request's tried-set is one 64-bit mask */

/** Health and ejection state of one endpoint, shared by all workers
 * (atomics) and carried across reloads. */
struct ep_state {
	atomic_bool healthy;          /* active checks' verdict (true at start) */
	int hc_fail, hc_ok;           /* consecutive check results (main thread) */
	atomic_int consecutive_fail;  /* passive failures in a row */
	atomic_int ejections;         /* > 0: on probation after an ejection */
	atomic_uint_fast64_t ejected_until_ms;
};

struct pool {
	const struct cfg_provider *prov;
	const struct provider_ops *ops;
	size_t n;
	struct ep_state *st;
	pthread_mutex_t lock; /* guards cw (smooth weighted round robin) */
	int *cw;
};

struct upstream_set {
	const struct config *cfg;
	struct pool *pools; /* one per provider, same order as cfg->providers */
	size_t n;
};

struct pool *upstream__pool(struct upstream_set *set, const struct cfg_provider *p);
/** Pick an endpoint not in `tried` (bitmask) that is healthy and not
 * ejected: primaries first, backups when no primary is usable. -1 if none. */
int upstream__pick(struct pool *p, uint64_t tried, uint64_t now_ms);
bool upstream__usable(struct pool *p, size_t i, uint64_t now_ms);
/** Passive outcome of one attempt (drives ejection with backoff). */
void upstream__report(struct pool *p, size_t i, bool ok, uint64_t now_ms);
/** Active health-check outcome. */
void upstream__health_result(struct pool *p, size_t i, bool ok);

/* A curl multi handle driven by a libevent loop (curl's multi-event.c
 * pattern). Every easy handle's CURLOPT_PRIVATE is a struct umulti_xfer. */
struct umulti_xfer {
	void (*done)(struct umulti_xfer *x, CURLcode code);
};

struct umulti {
	CURLM *multi;
	struct event_base *base;
	struct event *timer;
	CURL *spare[64]; /* reset easy handles kept for reuse */
	int n_spare;
};

void upstream__multi_init(struct umulti *m, struct event_base *base);
void upstream__multi_clear(struct umulti *m);
CURL *upstream__easy_get(struct umulti *m);
/** Remove from the multi (if added) and keep for reuse. */
void upstream__easy_put(struct umulti *m, CURL *e, bool added);
void upstream__multi_add(struct umulti *m, CURL *e);
/** Apply the options every upstream transfer shares (timeouts, TLS trust,
 * unix socket, HTTP version) for endpoint `ep` of provider `p`. */
void upstream__easy_common(CURL *e, const struct cfg_provider *p,
			   const struct cfg_endpoint *ep);

/* A lean HTTP/1.1 client for http:// IP-literal and unix:// endpoints
 * (h1.c). It calls back exactly like libcurl would. */
struct h1_pool;
struct h1_xfer;
struct h1_req {
	struct str path;               /* after the endpoint's prefix */
	const char *const *headers;    /* "Name: value"; "Name:" is skipped */
	size_t n_headers;
	struct str parts[PROVIDER_MAX_PARTS]; /* the body in pieces, borrowed */
	size_t n_parts;
	int connect_timeout_ms;
	int keepalive;                 /* idle connections the pool may keep */
	size_t (*on_header)(char *p, size_t size, size_t n, void *ctx);
	size_t (*on_data)(char *p, size_t size, size_t n, void *ctx);
	void (*on_done)(void *ctx, CURLcode code); /* the exchange is gone */
	void *ctx;
};
bool upstream__h1_eligible(const struct cfg_endpoint *ep);
struct h1_pool *upstream__h1_pool(struct h1_pool **list, struct event_base *base,
				  const struct cfg_endpoint *ep);
void upstream__h1_pools_free(struct h1_pool *list);
/** Start an exchange; callbacks run only from the loop, never inside. */
struct h1_xfer *upstream__h1_start(struct h1_pool *p, const struct h1_req *rq);
/** Drop an exchange (no callback follows); its connection is closed. */
void upstream__h1_cancel(struct h1_xfer *x);
/** Resume an exchange whose on_data returned CURL_WRITEFUNC_PAUSE. */
void upstream__h1_resume(struct h1_xfer *x);

#endif
