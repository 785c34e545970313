/* tunnel.h — the gateway side of the dark-service tunnel (docs/tunnel.md).
 *
 * One tunnel thread owns every connector connection: it accepts them on
 * `tunnel.listen`, verifies the connector's certificate, runs the HTTP/2
 * client session over TLS, learns which services the connector offers and
 * admits those its identity may host (bind policy).
 *
 * Workers start exchanges with tunnel_xfer_start(); the callbacks (the same
 * contract as the HTTP/1.1 client's struct h1_req: curl-style header lines,
 * data with CURL_WRITEFUNC_PAUSE, one done) run on the worker's own loop.
 * Between the threads an exchange is a small mailbox: the tunnel thread
 * appends what arrives and wakes the worker; the worker hands back how much
 * it consumed, which is when the HTTP/2 window opens again (a slow client
 * stalls the connector, not the gateway's memory). */
#ifndef UMB_TUNNEL_H
#define UMB_TUNNEL_H

#include <stdbool.h>

#include "config/config.h"

struct event_base;
struct h1_req;
struct tunnel_xfer;
struct runtime;

/** Start the tunnel thread when the runtime's config has `tunnel:`;
 * 0 also when there is nothing to start. */
int tunnel_start(struct runtime *rt, char *err, size_t errlen);
/** The config was reloaded (services and policy may have changed). */
void tunnel_reload(void);
/** The store's revision moved: close connectors whose identity is revoked. */
void tunnel_revoked(void);
/** Send GOAWAY to every connector (the gateway drains). */
void tunnel_drain(void);
/** Stop the thread and free everything. */
void tunnel_stop(void);

/** Append the tunnel's Prometheus families (connectors, streams, hosts
 * per service); 0 or the first buf error. */
struct buf;
int tunnel_metrics(struct buf *out, const struct config *cfg);

/** True while at least one admitted connector hosts the service. */
bool tunnel_service_up(const char *service);

/** Start an exchange with the service on some connector hosting it. The
 * request's headers and body are copied. Callbacks run from `base`'s loop
 * only, never inside this call; a service with no host gives on_done
 * CURLE_COULDNT_CONNECT. */
struct tunnel_xfer *tunnel_xfer_start(struct event_base *base, const char *service,
				      const struct h1_req *rq);
/** Drop an exchange (the stream is reset); no callback follows. */
void tunnel_xfer_cancel(struct tunnel_xfer *x);
/** Deliver again after on_data returned CURL_WRITEFUNC_PAUSE. */
void tunnel_xfer_resume(struct tunnel_xfer *x);

/** Dial policy: may this caller use the service? ("*" admits anyone). */
struct auth_who;
bool tunnel_service_allows(const struct cfg_service *s, const struct auth_who *who);
/** The dial policy over every dark-service endpoint of a provider: false
 * with *denied naming the first service the caller may not use. */
bool tunnel_provider_allows(const struct config *cfg, const struct cfg_provider *p,
			    const struct auth_who *who, const char **denied);

#endif
