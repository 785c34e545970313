/* client.c — libcurl multi driven by a libevent loop (the pattern of
 * curl's docs/examples/multi-event.c): curl tells us which sockets and
 * which timeout it needs; libevent tells curl when they are ready. */
#include <stdlib.h>

#include <event2/event.h>

#include "providers/gcp_auth.h"
#include "upstream/upstream_int.h"

struct usock {
	struct umulti *m;
	curl_socket_t fd;
	struct event *ev;
};

static void multi_check_done(struct umulti *m)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(m->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct umulti_xfer *x = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		CURLcode code = msg->data.result;
		if (x && x->done)
			x->done(x, code); /* removes the handle; allowed here */
	}
}

static void multi_on_socket(evutil_socket_t fd, short what, void *arg)
{
	struct umulti *m = arg;
	int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) |
		    (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
	int running;
	curl_multi_socket_action(m->multi, fd, flags, &running);
	multi_check_done(m);
}

static void multi_on_timer(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct umulti *m = arg;
	int running;
	curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	multi_check_done(m);
}

static int multi_socket_cb(CURL *e, curl_socket_t s, int what, void *userp, void *sockp)
{
	UMB_UNUSED(e);
	struct umulti *m = userp;
	struct usock *us = sockp;
	if (what == CURL_POLL_REMOVE) {
		if (us) {
			event_free(us->ev);
			free(us);
			curl_multi_assign(m->multi, s, NULL);
		}
		return 0;
	}
	short kind = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) |
		     (what & CURL_POLL_OUT ? EV_WRITE : 0);
	if (!us) {
		us = umb_calloc(1, sizeof *us);
		us->m = m;
		us->fd = s;
		curl_multi_assign(m->multi, s, us);
	} else {
		event_free(us->ev);
	}
	us->ev = event_new(m->base, s, kind, multi_on_socket, m);
	event_add(us->ev, NULL);
	return 0;
}

static int multi_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	UMB_UNUSED(multi);
	struct umulti *m = userp;
	if (timeout_ms < 0) {
		evtimer_del(m->timer);
		return 0;
	}
	/* curl asks for 0 ms "now": run it from the loop, never re-entrantly */
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	evtimer_add(m->timer, &tv);
	return 0;
}

void upstream__multi_init(struct umulti *m, struct event_base *base)
{
	memset(m, 0, sizeof *m);
	m->base = base;
	m->multi = curl_multi_init();
	m->timer = evtimer_new(base, multi_on_timer, m);
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, multi_socket_cb);
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, multi_timer_cb);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
	/* Idle upstream connections kept per worker (like nginx's upstream
	 * keepalive): enough for a worker's share of a busy client load,
	 * few enough that a burst does not leave hundreds of idle
	 * connections on a model server. */
	curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, 256L);
	curl_multi_setopt(m->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
}

void upstream__multi_clear(struct umulti *m)
{
	for (int i = 0; i < m->n_spare; i++)
		curl_easy_cleanup(m->spare[i]);
	m->n_spare = 0;
	if (m->multi)
		curl_multi_cleanup(m->multi); /* closes cached connections */
	m->multi = NULL;
	if (m->timer)
		event_free(m->timer);
	m->timer = NULL;
}

CURL *upstream__easy_get(struct umulti *m)
{
	if (m->n_spare)
		return m->spare[--m->n_spare];
	return curl_easy_init();
}

void upstream__easy_put(struct umulti *m, CURL *e, bool added)
{
	if (!e)
		return;
	if (added)
		curl_multi_remove_handle(m->multi, e);
	if (m->n_spare < (int)UMB_ARRAY_LEN(m->spare)) {
		curl_easy_reset(e);
		m->spare[m->n_spare++] = e;
	} else {
		curl_easy_cleanup(e);
	}
}

void upstream__multi_add(struct umulti *m, CURL *e)
{
	curl_multi_add_handle(m->multi, e);
}

void upstream__easy_common(CURL *e, const struct cfg_provider *p,
			   const struct cfg_endpoint *ep)
{
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	/* No proxy from the environment: endpoints are reached directly (an
	 * explicit egress proxy setting can come later); this also spares
	 * curl its per-transfer environment look-ups. */
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)p->timeouts.connect_ms);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	if (ep->unix_path)
		curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, ep->unix_path);
	if (ep->scheme == SCHEME_HTTPS) {
		curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
		if (p->ca_file)
			curl_easy_setopt(e, CURLOPT_CAINFO, p->ca_file);
	} else {
		curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	}
}

void upstream_global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

void upstream_global_cleanup(void)
{
	gcp_auth_shutdown(); /* the Vertex token refreshers use curl */
	curl_global_cleanup();
}
