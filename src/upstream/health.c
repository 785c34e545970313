/* health.c — active health checks, run on the main thread's loop with
 * its own curl multi handle so that checks never compete with requests
 * for a worker. Each endpoint of a provider with `health_check:` gets a
 * GET of its health path every interval_s; unhealthy_after failures in a
 * row take it out of rotation, healthy_after successes bring it back. */
#include <stdlib.h>

#include <event2/event.h>

#include "http/http.h"
#include "metrics/metrics.h"
#include "tunnel/tunnel.h"
#include "upstream/upstream_int.h"

struct hcheck {
	struct umulti_xfer xfer;
	struct hstate *hs;
	struct pool *pool;
	size_t idx;
	const struct cfg_endpoint *ep;
	struct event *timer;
	CURL *easy;
	struct curl_slist *hdrs;
	char *url;
};

struct hstate {
	struct umulti m;
	struct runtime *rt;
	struct metrics_shard *metrics;
	struct hcheck *checks;
	size_t n;
};

static struct hstate *g_hs;

static size_t hc_discard(char *p, size_t size, size_t n, void *arg)
{
	UMB_UNUSED(p);
	UMB_UNUSED(arg);
	return size * n;
}

static void hc_schedule(struct hcheck *c, int seconds)
{
	struct timeval tv = { seconds, (suseconds_t)(rand_fast() % 100000) };
	evtimer_add(c->timer, &tv);
}

static void hc_done(struct umulti_xfer *x, CURLcode code)
{
	struct hcheck *c = (struct hcheck *)x;
	long status = 0;
	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
	bool ok = code == CURLE_OK && status >= 200 && status < 300;
	if (!ok)
		log_debug("health check %s/%s failed: %s, status %ld", c->pool->prov->name,
			  c->ep->name, curl_easy_strerror(code), status);
	upstream__health_result(c->pool, c->idx, ok);
	upstream__easy_put(&c->hs->m, c->easy, true);
	c->easy = NULL;
	curl_slist_free_all(c->hdrs);
	c->hdrs = NULL;
	hc_schedule(c, c->pool->prov->health.interval_s);
}

static void hc_fire(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct hcheck *c = arg;
	const struct cfg_provider *p = c->pool->prov;
	CURL *e = upstream__easy_get(&c->hs->m);
	c->easy = e;
	upstream__easy_common(e, p, c->ep);
	curl_easy_setopt(e, CURLOPT_URL, c->url);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)p->health.timeout_s * 1000L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, hc_discard);
	curl_easy_setopt(e, CURLOPT_PRIVATE, &c->xfer);
	if (p->api_key && *p->api_key) {
		char h[1024];
		snprintf(h, sizeof h, "Authorization: Bearer %s", p->api_key);
		c->hdrs = curl_slist_append(c->hdrs, h);
	}
	for (size_t i = 0; i < p->n_headers; i++) {
		char h[1024];
		snprintf(h, sizeof h, "%s: %s", p->headers[i].name, p->headers[i].value);
		c->hdrs = curl_slist_append(c->hdrs, h);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdrs);
	upstream__multi_add(&c->hs->m, e);
}

static struct hstate *hs_new(struct event_base *base, struct runtime *rt,
			     struct metrics_shard *m)
{
	struct hstate *hs = umb_calloc(1, sizeof *hs);
	upstream__multi_init(&hs->m, base);
	hs->rt = rt;
	atomic_fetch_add(&rt->refs, 1);
	hs->metrics = m;
	size_t total = 0;
	for (size_t i = 0; i < rt->ups->n; i++)
		if (rt->ups->pools[i].prov->health.enabled)
			total += rt->ups->pools[i].n;
	hs->checks = umb_calloc(total ? total : 1, sizeof *hs->checks);
	for (size_t i = 0; i < rt->ups->n; i++) {
		struct pool *p = &rt->ups->pools[i];
		if (!p->prov->health.enabled)
			continue;
		const char *path = p->prov->health.path ? p->prov->health.path
			: p->ops ? p->ops->health_path : "/";
		for (size_t j = 0; j < p->n; j++) {
			const struct cfg_endpoint *ep = &p->prov->endpoints[j];
			if (ep->scheme == SCHEME_SERVICE)
				continue;
			struct hcheck *c = &hs->checks[hs->n++];
			c->xfer.done = hc_done;
			c->hs = hs;
			c->pool = p;
			c->idx = j;
			c->ep = ep;
			size_t len = strlen(ep->origin) + strlen(path) + 1;
			c->url = umb_malloc(len);
			snprintf(c->url, len, "%s%s", ep->origin, path);
			c->timer = evtimer_new(base, hc_fire, c);
			hc_schedule(c, 0); /* first check right away */
		}
	}
	return hs;
}

static void hs_free(struct hstate *hs)
{
	if (!hs)
		return;
	for (size_t i = 0; i < hs->n; i++) {
		struct hcheck *c = &hs->checks[i];
		if (c->easy)
			upstream__easy_put(&hs->m, c->easy, true);
		curl_slist_free_all(c->hdrs);
		event_free(c->timer);
		free(c->url);
	}
	free(hs->checks);
	upstream__multi_clear(&hs->m);
	runtime_release(hs->rt);
	free(hs);
}

void upstream_health_start(struct event_base *base, struct runtime *rt,
			   struct metrics_shard *m)
{
	g_hs = hs_new(base, rt, m);
}

void upstream_health_runtime(struct event_base *base, struct runtime *rt)
{
	struct metrics_shard *m = g_hs ? g_hs->metrics : NULL;
	hs_free(g_hs);
	g_hs = hs_new(base, rt, m);
}

void upstream_health_stop(void)
{
	hs_free(g_hs);
	g_hs = NULL;
}

int upstream_metrics(struct buf *out, void *arg)
{
	struct runtime *rt = arg;
	uint64_t now = clock_wall_ms();
	int rc = metrics_write_header(out, "umbra_endpoint_up", "gauge",
				      "1 when the endpoint is healthy and not ejected");
	for (size_t i = 0; !rc && i < rt->ups->n; i++) {
		struct pool *p = &rt->ups->pools[i];
		for (size_t j = 0; !rc && j < p->n; j++) {
			const char *labels[] = { "provider", p->prov->name, "endpoint",
						 p->prov->endpoints[j].name, NULL };
			rc = metrics_write_gauge(out, "umbra_endpoint_up", labels,
						 upstream__usable(p, j, now) ? 1 : 0);
		}
	}
	if (!rc)
		rc = metrics_write_header(out, "umbra_endpoint_ejections", "gauge",
					  "consecutive ejections of the endpoint (0: in good standing)");
	for (size_t i = 0; !rc && i < rt->ups->n; i++) {
		struct pool *p = &rt->ups->pools[i];
		for (size_t j = 0; !rc && j < p->n; j++) {
			const char *labels[] = { "provider", p->prov->name, "endpoint",
						 p->prov->endpoints[j].name, NULL };
			rc = metrics_write_gauge(out, "umbra_endpoint_ejections", labels,
						 atomic_load(&p->st[j].ejections));
		}
	}
	if (!rc && rt->cfg->tunnel.enabled)
		rc = tunnel_metrics(out, rt->cfg);
	return rc;
}
