/* metrics.h — Prometheus exposition (text format 0.0.4) of gateway counters.
 *
 * Every recording thread owns one shard and is its only writer, so the hot
 * path takes no lock and issues no atomic read-modify-write. `GET /metrics`
 * renders the sum of all shards. Label values must come from the config
 * (model, provider, endpoint names: a bounded set), never from client input;
 * pass "" (or NULL) when a value is unknown. */
#ifndef UMB_METRICS_H
#define UMB_METRICS_H

#include <stdint.h>

#include "core/core.h"

#ifndef UMBRA_VERSION
#define UMBRA_VERSION "dev"
#endif

/** Content-Type the HTTP layer sends with a rendered exposition. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics_shard;

/** Create n_shards shards; call once before any thread records. Each thread
 * that records (every worker, and the main thread if it records) needs its
 * own shard: a shard has exactly one writer thread. */
void metrics_init(int n_shards);
/** Free all shards; no thread may record or render any more. */
void metrics_shutdown(void);
/** Shard idx (0..n_shards-1), or NULL when metrics are not initialised; all
 * recording calls accept a NULL shard and do nothing. */
struct metrics_shard *metrics_shard_get(int idx);

/** One finished client request; route_api is "chat", "embeddings", "models"
 * or "other"; dur_ns is the gateway-observed wall time. */
void metrics_request(struct metrics_shard *s, const char *route_api,
		     const char *model, const char *provider, int status,
		     uint64_t dur_ns, uint64_t prompt_tokens,
		     uint64_t completion_tokens);
/** Every upstream attempt (first try and retries), to compute retry rates. */
void metrics_upstream_attempt(struct metrics_shard *s, const char *provider,
			      const char *endpoint);
/** One failed upstream attempt; kind is "connect", "timeout", "status_5xx",
 * "status_429", "garbage", "reset" or "canceled". */
void metrics_upstream_error(struct metrics_shard *s, const char *provider,
			    const char *endpoint, const char *kind);
/** One routing decision (method: explicit|heuristic|...; route or NULL). */
void metrics_route(struct metrics_shard *s, const char *method, const char *route);
/** n distinct matches of one detector in a request. */
void metrics_detector_hits(struct metrics_shard *s, const char *detector, uint64_t n);
/** A request admitted while its budget is past alert_at. */
void metrics_budget_alert(struct metrics_shard *s, const char *budget);
/** Requests in flight on this shard (gauge, summed over shards). */
void metrics_inflight_add(struct metrics_shard *s, int delta);
/** Open client connections on this shard (gauge, summed over shards). */
void metrics_connections_add(struct metrics_shard *s, int delta);

/** Extra families appended at the end of a render (endpoint health...);
 * returns 0 or the first buf error. */
typedef int (*metrics_extra_cb)(struct buf *out, void *ctx);

/** Append the full exposition to out, then extra(out, ctx) if non-NULL.
 * Safe to call from any thread while writers record. Returns 0, or
 * UMB_ETOOBIG / UMB_ENOMEM from out (its content is then incomplete). */
int metrics_render(struct buf *out, metrics_extra_cb extra, void *ctx);

/** Append the "# HELP" and "# TYPE" lines of a family (type: "gauge",
 * "counter", ...); help must be one line. */
int metrics_write_header(struct buf *out, const char *family,
			 const char *type, const char *help);
/** Append one gauge sample; labels_kv is k,v,k,v,...,NULL (or NULL for no
 * labels) and values are escaped; NaN and infinities are allowed. */
int metrics_write_gauge(struct buf *out, const char *family,
			const char *labels_kv[], double value);

#endif
