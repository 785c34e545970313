/* gateway.c — the gateway side of the tunnel: the tunnel thread, connector
 * connections (TLS 1.3 server, HTTP/2 client), the service registry and
 * the cross-thread exchanges workers run over it. See tunnel.h and
 * docs/tunnel.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/json.h"
#include "metrics/metrics.h"
#include "http/http.h"
#include "identity/auth.h"
#include "tunnel/tunnel.h"
#include "upstream/upstream_int.h"

#define TUN_READ_CHUNK 16384
#define TUN_HANDSHAKE_MS 10000
#define TUN_STREAM_WINDOW (1 << 20)      /* per stream: a 200 KB body in one go */
#define TUN_CONN_WINDOW (16 << 20)       /* per connection */
/* A worker reports consumed bytes (which reopen its stream's window) only
 * once this many have gathered: a streamed response of small events would
 * otherwise wake the tunnel thread, and send a WINDOW_UPDATE, per event. */
#define TUN_CONSUME_BATCH (TUN_STREAM_WINDOW / 4)
#define TUN_SERVICES_PATH "/.well-known/umbra/services"
#define TUN_MAX_SERVICES 256
#define TUN_MAX_TRIES 3                  /* connectors tried before the first byte */

/* ---- the service registry: read by workers, written by the tunnel thread ---- */

/* Append-only: a slot's name never changes once published, so workers
 * find a service without a lock. */
struct svc_slot {
	char name[STORE_NAME_MAX + 1];
	atomic_int hosts;   /* admitted connections hosting it */
	unsigned rr;        /* round robin (tunnel thread only) */
};

static struct svc_slot g_svc[TUN_MAX_SERVICES];
static atomic_size_t g_n_svc;

/* Counters for /metrics (written by the tunnel thread). */
static atomic_long g_connectors, g_conns_total, g_disconnects_total;
static atomic_long g_streams, g_streams_total;

static struct svc_slot *svc_find(const char *name)
{
	size_t n = atomic_load_explicit(&g_n_svc, memory_order_acquire);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(g_svc[i].name, name))
			return &g_svc[i];
	return NULL;
}

/* Tunnel thread only (the single writer). */
static struct svc_slot *svc_get(const char *name)
{
	struct svc_slot *s = svc_find(name);
	size_t n = atomic_load_explicit(&g_n_svc, memory_order_relaxed);
	if (s || n == TUN_MAX_SERVICES)
		return s;
	snprintf(g_svc[n].name, sizeof g_svc[n].name, "%s", name);
	atomic_store_explicit(&g_n_svc, n + 1, memory_order_release);
	return &g_svc[n];
}

bool tunnel_service_up(const char *service)
{
	struct svc_slot *s = svc_find(service);
	return s && atomic_load_explicit(&s->hosts, memory_order_relaxed) > 0;
}

/* ---- exchanges shared by a worker and the tunnel thread ---- */

struct tconn;

struct tunnel_xfer {
	/* set at start, then read-only */
	struct event_base *base;
	struct event *ev_wake; /* on the worker's loop */
	size_t (*on_header)(char *p, size_t size, size_t n, void *ctx);
	size_t (*on_data)(char *p, size_t size, size_t n, void *ctx);
	void (*on_done)(void *ctx, CURLcode code);
	void *ctx;
	char service[STORE_NAME_MAX + 1];
	nghttp2_nv *nva;
	size_t nnv;
	struct buf req; /* the bytes nva and the body point into */
	size_t body_off, body_len;
	atomic_int refs;

	pthread_mutex_t mu;
	/* tunnel → worker, under mu */
	struct buf head, data;
	bool done;
	CURLcode code;
	/* worker → tunnel, under mu */
	bool cancel, worker_gone, in_mail;
	size_t consumed;
	struct tunnel_xfer *mail_next;

	/* worker thread only */
	struct buf wdata;
	size_t unreported;     /* consumed, not yet mailed (TUN_CONSUME_BATCH) */
	bool paused, wdone, in_cb, cancelled_in_cb;
	CURLcode wcode;

	/* tunnel thread only */
	bool dirty;                     /* news for the worker, wake pending */
	struct tunnel_xfer *dirty_next;
	struct tconn *tc;
	struct tunnel_xfer *tc_prev, *tc_next; /* tc's open streams */
	int32_t stream_id;
	size_t sent;       /* body bytes handed to nghttp2 */
	bool got_head, finished, reset;
	int tries;
	struct tconn *tried[TUN_MAX_TRIES];
};

static void xfer_unref(struct tunnel_xfer *x)
{
	if (atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel) != 1)
		return;
	buf_clear(&x->req);
	buf_clear(&x->head);
	buf_clear(&x->data);
	buf_clear(&x->wdata);
	free(x->nva);
	pthread_mutex_destroy(&x->mu);
	free(x);
}

/* ---- the tunnel thread's state ---- */

enum tc_state { TC_HANDSHAKE, TC_ANNOUNCE, TC_READY, TC_CLOSED };

struct tconn {
	struct tconn *prev, *next;
	int fd;
	SSL *ssl;
	nghttp2_session *h2;
	struct event *ev_read, *ev_write, *ev_timer;
	enum tc_state state;
	bool write_armed, goaway, revoked;
	char peer[64];
	struct pki_identity id;
	struct buf out;           /* TLS bytes not yet written */
	size_t out_off;
	struct buf announce;      /* the services answer */
	int32_t announce_id;
	char **offered;           /* what the connector announced */
	size_t n_offered;
	struct svc_slot **admitted;
	size_t n_admitted;
	uint64_t deadline_ns;     /* handshake/announce deadline; 0 none */
	uint64_t ping_sent_ns;    /* outstanding PING, 0 none */
	uint64_t next_ping_ns;
	int n_streams;
	struct tunnel_xfer *streams; /* exchanges with a stream here */
};

struct tun {
	pthread_t thread;
	struct event_base *base;
	struct event *ev_listen, *ev_mail, *ev_ctl;
	int listen_fd;
	struct runtime *rt;       /* the tunnel thread's reference */
	SSL_CTX *ctx;
	struct tconn *conns;
	int n_conns;
	struct auth_worker *aw;   /* store handle for revocation checks */
	pthread_mutex_t mail_lock;
	struct tunnel_xfer *mail; /* exchanges with news from workers */
	struct tunnel_xfer *dirty; /* exchanges with news for their workers */
	atomic_int ctl;           /* CTL_* bits from other threads */
	bool draining;
};

enum { CTL_RELOAD = 1, CTL_REVOKED = 2, CTL_DRAIN = 4, CTL_STOP = 8 };

static struct tun *g_tun;

static void tc_close(struct tconn *tc, const char *why);
static void tc_flush(struct tconn *tc);
static void tc_timer_arm(struct tconn *tc);
static void xfer_submit(struct tunnel_xfer *x);

/* ---- worker side ---- */

static void xfer_wake_worker(struct tunnel_xfer *x)
{
	/* under x->mu: a worker that left has freed ev_wake */
	if (!x->worker_gone)
		event_active(x->ev_wake, EV_READ, 0);
}

/* Tell the tunnel thread this exchange has news (cancel, consumed). */
static void xfer_mail(struct tunnel_xfer *x)
{
	struct tun *t = g_tun;
	bool post = false;
	if (!t)
		return;
	pthread_mutex_lock(&x->mu);
	if (!x->in_mail) {
		x->in_mail = true;
		post = true;
		atomic_fetch_add_explicit(&x->refs, 1, memory_order_relaxed); /* the mailbox's */
	}
	pthread_mutex_unlock(&x->mu);
	if (!post)
		return;
	pthread_mutex_lock(&t->mail_lock);
	x->mail_next = t->mail;
	t->mail = x;
	pthread_mutex_unlock(&t->mail_lock);
	event_active(t->ev_mail, EV_READ, 0);
}

/* The worker stops listening: no wake-ups from now on. */
static void xfer_worker_leave(struct tunnel_xfer *x)
{
	pthread_mutex_lock(&x->mu);
	x->worker_gone = true;
	pthread_mutex_unlock(&x->mu);
	event_free(x->ev_wake);
	x->ev_wake = NULL;
}

/* Hand buffered body bytes to the worker's callback until it pauses. */
static void xfer_deliver(struct tunnel_xfer *x)
{
	size_t consumed = 0;
	x->in_cb = true;
	while (x->wdata.n && !x->paused && !x->cancelled_in_cb) {
		size_t n = x->wdata.n;
		size_t r = x->on_data(x->wdata.p, 1, n, x->ctx);
		if (r == CURL_WRITEFUNC_PAUSE) {
			x->paused = true;
			break;
		}
		if (r != n) {
			x->wdone = true;
			x->wcode = CURLE_WRITE_ERROR;
			buf_reset(&x->wdata);
			pthread_mutex_lock(&x->mu);
			x->cancel = true;
			pthread_mutex_unlock(&x->mu);
			break;
		}
		consumed += n;
		buf_reset(&x->wdata);
	}
	x->in_cb = false;
	if (x->cancelled_in_cb) {
		/* the callback cancelled the exchange: finish that now */
		xfer_worker_leave(x);
		xfer_mail(x);
		xfer_unref(x);
		return;
	}
	x->unreported += consumed;
	/* the window matters only while the stream is open (not wdone) */
	bool report = !x->wdone && x->unreported >= TUN_CONSUME_BATCH;
	if (report) {
		pthread_mutex_lock(&x->mu);
		x->consumed += x->unreported;
		pthread_mutex_unlock(&x->mu);
		x->unreported = 0;
	}
	bool finish = x->wdone && !x->paused && !x->wdata.n;
	if (report || (finish && x->wcode == CURLE_WRITE_ERROR))
		xfer_mail(x);
	if (finish) {
		xfer_worker_leave(x);
		x->on_done(x->ctx, x->wcode);
		xfer_unref(x);
	}
}

static void xfer_on_wake(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct tunnel_xfer *x = arg;
	struct buf head;
	buf_init(&head, 0);
	pthread_mutex_lock(&x->mu);
	if (x->head.n) {
		head = x->head;
		buf_init(&x->head, 0);
	}
	if (x->data.n) {
		if (!x->wdata.n) {
			struct buf tmp = x->wdata;
			x->wdata = x->data;
			x->data = tmp;
		} else {
			buf_append(&x->wdata, x->data.p, x->data.n);
			buf_reset(&x->data);
		}
	}
	if (x->done && !x->wdone) {
		x->wdone = true;
		x->wcode = x->code;
	}
	pthread_mutex_unlock(&x->mu);
	/* header lines one by one, as libcurl would give them */
	x->in_cb = true;
	for (size_t off = 0; off < head.n && !x->cancelled_in_cb;) {
		char *nl = memchr(head.p + off, '\n', head.n - off);
		size_t len = (size_t)(nl - (head.p + off)) + 1;
		x->on_header(head.p + off, 1, len, x->ctx);
		off += len;
	}
	x->in_cb = false;
	buf_clear(&head);
	xfer_deliver(x);
}

struct tunnel_xfer *tunnel_xfer_start(struct event_base *base, const char *service,
				      const struct h1_req *rq)
{
	struct tunnel_xfer *x = umb_calloc(1, sizeof *x);
	x->base = base;
	x->on_header = rq->on_header;
	x->on_data = rq->on_data;
	x->on_done = rq->on_done;
	x->ctx = rq->ctx;
	snprintf(x->service, sizeof x->service, "%s", service);
	pthread_mutex_init(&x->mu, NULL);
	buf_init(&x->head, 0);
	buf_init(&x->data, 0);
	buf_init(&x->wdata, 0);
	buf_init(&x->req, 0);
	atomic_store(&x->refs, 2); /* the worker's and the tunnel's */
	x->ev_wake = event_new(base, -1, 0, xfer_on_wake, x);

	/* Copy what nghttp2 will read on the other thread: the request may be
	 * gone (cancelled) while the tunnel thread still sends. Offsets
	 * first, pointers once the buffer stops moving. */
	size_t body_len = 0;
	for (size_t i = 0; i < rq->n_parts; i++)
		body_len += rq->parts[i].n;
	size_t cap = 5 + rq->n_headers;
	x->nva = umb_calloc(cap, sizeof *x->nva);
	size_t offs[64][4];
	size_t n = 0;
	static const char *const pseudo[][2] = {
		{ ":method", NULL }, { ":scheme", "http" }, { ":authority", NULL }, { ":path", NULL },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(pseudo); i++) {
		const char *v = pseudo[i][1];
		struct str val = i == 0 ? (body_len ? STR("POST") : STR("GET"))
			: i == 2 ? str_cstr(x->service)
			: i == 3 ? (rq->path.n ? rq->path : STR("/"))
			: str_cstr(v);
		offs[n][0] = x->req.n;
		offs[n][1] = strlen(pseudo[i][0]);
		buf_append_cstr(&x->req, pseudo[i][0]);
		offs[n][2] = x->req.n;
		offs[n][3] = val.n;
		buf_append_str(&x->req, val);
		n++;
	}
	for (size_t i = 0; i < rq->n_headers && n < UMB_ARRAY_LEN(offs); i++) {
		const char *h = rq->headers[i];
		const char *colon = strchr(h, ':');
		if (!colon || colon == h)
			continue;
		struct str name = str_make(h, (size_t)(colon - h));
		struct str value = str_trim(str_cstr(colon + 1));
		if (!value.n || str_ieq(name, STR("host")) || str_ieq(name, STR("connection")) ||
		    str_ieq(name, STR("transfer-encoding")) || str_ieq(name, STR("keep-alive")) ||
		    str_ieq(name, STR("expect")) || str_ieq(name, STR("content-length")))
			continue;
		offs[n][0] = x->req.n;
		offs[n][1] = name.n;
		for (size_t k = 0; k < name.n; k++) { /* HTTP/2 names are lowercase */
			char c = name.p[k];
			buf_append(&x->req, &(char){ (char)(c >= 'A' && c <= 'Z' ? c + 32 : c) }, 1);
		}
		offs[n][2] = x->req.n;
		offs[n][3] = value.n;
		buf_append_str(&x->req, value);
		n++;
	}
	x->body_off = x->req.n;
	x->body_len = body_len;
	for (size_t i = 0; i < rq->n_parts; i++)
		buf_append_str(&x->req, rq->parts[i]);
	for (size_t i = 0; i < n; i++) {
		x->nva[i] = (nghttp2_nv){ .name = (uint8_t *)x->req.p + offs[i][0],
					  .namelen = offs[i][1],
					  .value = (uint8_t *)x->req.p + offs[i][2],
					  .valuelen = offs[i][3],
					  .flags = NGHTTP2_NV_FLAG_NONE };
	}
	x->nnv = n;

	struct tun *t = g_tun;
	if (!t) { /* no tunnel configured at all */
		pthread_mutex_lock(&x->mu);
		x->done = true;
		x->code = CURLE_COULDNT_CONNECT;
		xfer_wake_worker(x);
		pthread_mutex_unlock(&x->mu);
		xfer_unref(x); /* the tunnel's, never taken */
		return x;
	}
	xfer_mail(x); /* the tunnel thread submits it */
	return x;
}

void tunnel_xfer_cancel(struct tunnel_xfer *x)
{
	pthread_mutex_lock(&x->mu);
	x->cancel = true;
	pthread_mutex_unlock(&x->mu);
	if (x->in_cb) { /* inside one of our callbacks: finish on return */
		x->cancelled_in_cb = true;
		return;
	}
	xfer_worker_leave(x);
	xfer_mail(x);
	xfer_unref(x);
}

void tunnel_xfer_resume(struct tunnel_xfer *x)
{
	x->paused = false;
	event_active(x->ev_wake, EV_READ, 0); /* deliver from the loop */
}

/* ---- tunnel thread: exchanges ---- */

/* Wake the worker later, once per batch: a response's head, body and end
 * usually arrive in one read, and each cross-thread wake-up costs more
 * than the HTTP/2 and TLS work of a small response (bench/README.md). */
static void xfer_mark_dirty(struct tunnel_xfer *x)
{
	if (x->dirty)
		return;
	x->dirty = true;
	atomic_fetch_add_explicit(&x->refs, 1, memory_order_relaxed); /* the list's */
	x->dirty_next = g_tun->dirty;
	g_tun->dirty = x;
}

/* The end of every tunnel-thread callback: wake the workers with news. */
static void tun_wake_workers(struct tun *t)
{
	struct tunnel_xfer *x = t->dirty;
	t->dirty = NULL;
	while (x) {
		struct tunnel_xfer *next = x->dirty_next;
		x->dirty = false;
		pthread_mutex_lock(&x->mu);
		xfer_wake_worker(x);
		pthread_mutex_unlock(&x->mu);
		xfer_unref(x);
		x = next;
	}
}

/* Every tunnel-thread callback ends by waking the workers with news. */
#define TUN_CALLBACK(name)                                              \
	static void name##_run(evutil_socket_t fd, short what, void *arg); \
	static void name(evutil_socket_t fd, short what, void *arg)      \
	{                                                                \
		name##_run(fd, what, arg);                               \
		tun_wake_workers(g_tun);                                 \
	}
TUN_CALLBACK(tc_on_read)
TUN_CALLBACK(tc_on_write)
TUN_CALLBACK(tc_on_timer)
TUN_CALLBACK(on_mail)
TUN_CALLBACK(on_ctl)

/* Tell the worker what arrived (tunnel thread). */
static void xfer_push(struct tunnel_xfer *x, const char *head, size_t head_n,
		      const uint8_t *data, size_t data_n)
{
	pthread_mutex_lock(&x->mu);
	if (head_n)
		buf_append(&x->head, head, head_n);
	if (data_n)
		buf_append(&x->data, (const char *)data, data_n);
	pthread_mutex_unlock(&x->mu);
	xfer_mark_dirty(x);
}

/* Take the exchange off its connection's stream list. */
static void xfer_detach(struct tunnel_xfer *x)
{
	struct tconn *tc = x->tc;
	if (!tc)
		return;
	if (tc->h2 && x->stream_id > 0)
		nghttp2_session_set_stream_user_data(tc->h2, x->stream_id, NULL);
	if (x->tc_prev)
		x->tc_prev->tc_next = x->tc_next;
	else
		tc->streams = x->tc_next;
	if (x->tc_next)
		x->tc_next->tc_prev = x->tc_prev;
	x->tc_prev = x->tc_next = NULL;
	tc->n_streams--;
	atomic_fetch_sub_explicit(&g_streams, 1, memory_order_relaxed);
	x->tc = NULL;
	x->stream_id = 0;
}

/* The exchange is over on the tunnel side: tell the worker, let go. */
static void xfer_finish(struct tunnel_xfer *x, CURLcode code)
{
	if (x->finished)
		return;
	x->finished = true;
	xfer_detach(x);
	pthread_mutex_lock(&x->mu);
	x->done = true;
	x->code = code;
	pthread_mutex_unlock(&x->mu);
	xfer_mark_dirty(x);
	xfer_unref(x); /* the tunnel's */
}

/* The worker cancelled: reset the stream, but keep the exchange (nghttp2
 * may still read its body) until the stream is closed. */
static void xfer_reset(struct tunnel_xfer *x)
{
	struct tconn *tc = x->tc;
	x->reset = true;
	if (tc && x->stream_id > 0) {
		nghttp2_submit_rst_stream(tc->h2, NGHTTP2_FLAG_NONE, x->stream_id, NGHTTP2_CANCEL);
		tc_flush(tc);
	} else {
		xfer_finish(x, CURLE_ABORTED_BY_CALLBACK);
	}
}

static ssize_t body_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
			 uint32_t *flags, nghttp2_data_source *src, void *user)
{
	UMB_UNUSED(s);
	UMB_UNUSED(sid);
	UMB_UNUSED(user);
	struct tunnel_xfer *x = src->ptr;
	size_t n = UMB_MIN(len, x->body_len - x->sent);
	memcpy(buf, x->req.p + x->body_off + x->sent, n);
	x->sent += n;
	if (x->sent == x->body_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static bool tc_hosts(const struct tconn *tc, const struct svc_slot *s)
{
	for (size_t i = 0; i < tc->n_admitted; i++)
		if (tc->admitted[i] == s)
			return true;
	return false;
}

/* Round robin over the ready connections hosting the service, skipping
 * those this exchange already tried. */
static struct tconn *pick_conn(struct tunnel_xfer *x)
{
	struct svc_slot *s = svc_find(x->service);
	if (!s || atomic_load(&s->hosts) == 0)
		return NULL;
	struct tconn *cand[64];
	int n = 0;
	for (struct tconn *tc = g_tun->conns; tc && n < 64; tc = tc->next) {
		if (tc->state != TC_READY || tc->goaway || !tc_hosts(tc, s))
			continue;
		bool tried = false;
		for (int i = 0; i < x->tries; i++)
			tried |= x->tried[i] == tc;
		if (!tried)
			cand[n++] = tc;
	}
	if (!n)
		return NULL;
	return cand[s->rr++ % (unsigned)n];
}

static void xfer_submit(struct tunnel_xfer *x)
{
	struct tconn *tc = x->tries < TUN_MAX_TRIES ? pick_conn(x) : NULL;
	if (!tc) {
		/* never sent: like a refused connection; sent on a connection
		 * that died and nowhere else to go: like a reset */
		xfer_finish(x, x->tries ? CURLE_RECV_ERROR : CURLE_COULDNT_CONNECT);
		return;
	}
	x->tried[x->tries++] = tc;
	x->sent = 0;
	nghttp2_data_provider prd = { .source.ptr = x, .read_callback = body_read };
	int32_t id = nghttp2_submit_request(tc->h2, NULL, x->nva, x->nnv,
					    x->body_len ? &prd : NULL, x);
	if (id < 0) {
		log_warn("tunnel: cannot open a stream to %s: %s", tc->id.name, nghttp2_strerror(id));
		xfer_submit(x); /* another connector, if any */
		return;
	}
	x->tc = tc;
	x->stream_id = id;
	x->tc_prev = NULL;
	x->tc_next = tc->streams;
	if (tc->streams)
		tc->streams->tc_prev = x;
	tc->streams = x;
	tc->n_streams++;
	atomic_fetch_add_explicit(&g_streams, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&g_streams_total, 1, memory_order_relaxed);
	tc_flush(tc);
}

/* A connection died under an exchange: before the first response byte
 * another connector may take it; after, the stream is broken. */
static void xfer_conn_lost(struct tunnel_xfer *x)
{
	xfer_detach(x);
	if (!x->got_head && !x->reset)
		xfer_submit(x);
	else
		xfer_finish(x, CURLE_RECV_ERROR);
}

static void on_mail_run(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct tun *t = arg;
	pthread_mutex_lock(&t->mail_lock);
	struct tunnel_xfer *x = t->mail;
	t->mail = NULL;
	pthread_mutex_unlock(&t->mail_lock);
	while (x) {
		struct tunnel_xfer *next = x->mail_next;
		pthread_mutex_lock(&x->mu);
		x->in_mail = false;
		bool cancel = x->cancel;
		size_t consumed = x->consumed;
		x->consumed = 0;
		pthread_mutex_unlock(&x->mu);
		if (!x->finished && !x->reset) {
			struct tconn *tc = x->tc;
			if (cancel) {
				xfer_reset(x);
			} else if (!tc && !x->tries) {
				xfer_submit(x);
			} else if (tc && consumed) {
				nghttp2_session_consume_stream(tc->h2, x->stream_id, consumed);
				tc_flush(tc);
			}
		}
		xfer_unref(x); /* the mailbox's */
		x = next;
	}
}

/* ---- tunnel thread: HTTP/2 callbacks ---- */

static int on_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user)
{
	UMB_UNUSED(flags);
	struct tconn *tc = user;
	if (fr->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (fr->hd.stream_id == tc->announce_id)
		return 0;
	struct tunnel_xfer *x = nghttp2_session_get_stream_user_data(s, fr->hd.stream_id);
	if (!x)
		return 0;
	char line[8192];
	int n;
	if (namelen == 7 && !memcmp(name, ":status", 7))
		n = snprintf(line, sizeof line, "HTTP/2 %.*s\r\n", (int)valuelen, value);
	else if (name[0] == ':')
		return 0;
	else
		n = snprintf(line, sizeof line, "%.*s: %.*s\r\n", (int)namelen, name,
			     (int)valuelen, value);
	if (n > 0 && (size_t)n < sizeof line)
		xfer_push(x, line, (size_t)n, NULL, 0);
	return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *fr, void *user)
{
	struct tconn *tc = user;
	switch (fr->hd.type) {
	case NGHTTP2_HEADERS:
		if (fr->hd.stream_id != tc->announce_id &&
		    fr->headers.cat == NGHTTP2_HCAT_RESPONSE) {
			struct tunnel_xfer *x = nghttp2_session_get_stream_user_data(s, fr->hd.stream_id);
			if (x) {
				x->got_head = true;
				xfer_push(x, "\r\n", 2, NULL, 0);
			}
		}
		break;
	case NGHTTP2_PING:
		if (fr->hd.flags & NGHTTP2_FLAG_ACK) {
			tc->ping_sent_ns = 0;
			tc_timer_arm(tc);
		}
		break;
	case NGHTTP2_GOAWAY:
		/* the connector drains: no new streams here, and its services
		 * count one host less (503 rather than a doomed attempt) */
		tc->goaway = true;
		for (size_t i = 0; i < tc->n_admitted; i++)
			atomic_fetch_sub(&tc->admitted[i]->hosts, 1);
		tc->n_admitted = 0;
		log_info("tunnel: connector %s (%s) is draining", tc->id.name, tc->peer);
		break;
	default:
		break;
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t sid,
			 const uint8_t *data, size_t len, void *user)
{
	UMB_UNUSED(flags);
	struct tconn *tc = user;
	if (sid == tc->announce_id) {
		if (buf_append(&tc->announce, (const char *)data, len))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		nghttp2_session_consume(s, sid, len);
		return 0;
	}
	/* The connection's window reopens at once; each stream's window only
	 * as its worker consumes. (Consuming both per stream leaked the
	 * connection window whenever a stream closed before its worker had
	 * taken the bytes: after 16 MiB of such leftovers the tunnel stalled.)
	 * A stream's window bounds what one slow client can make us hold. */
	nghttp2_session_consume_connection(s, len);
	struct tunnel_xfer *x = nghttp2_session_get_stream_user_data(s, sid);
	if (!x || x->reset) {
		nghttp2_session_consume_stream(s, sid, len); /* nobody will read it */
		return 0;
	}
	xfer_push(x, NULL, 0, data, len);
	return 0;
}

static bool tc_admit(struct tconn *tc);

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t err, void *user)
{
	struct tconn *tc = user;
	if (sid == tc->announce_id) {
		tc->announce_id = -1;
		/* never close the session from inside its own callback: fail
		 * the callback, and the reader closes it */
		if (err != NGHTTP2_NO_ERROR || !tc_admit(tc))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		return 0;
	}
	struct tunnel_xfer *x = nghttp2_session_get_stream_user_data(s, sid);
	if (!x)
		return 0;
	if (x->reset) {
		xfer_finish(x, CURLE_ABORTED_BY_CALLBACK); /* nobody listens */
	} else if (err == NGHTTP2_NO_ERROR) {
		xfer_finish(x, CURLE_OK);
	} else if (err == NGHTTP2_REFUSED_STREAM && !x->got_head) {
		/* not processed: another connector may take it */
		xfer_conn_lost(x);
	} else {
		xfer_finish(x, x->got_head ? CURLE_PARTIAL_FILE : CURLE_RECV_ERROR);
	}
	return 0;
}

/* ---- tunnel thread: connections ---- */

static void tc_arm_write(struct tconn *tc, bool on)
{
	if (on && !tc->write_armed)
		event_add(tc->ev_write, NULL);
	else if (!on && tc->write_armed)
		event_del(tc->ev_write);
	tc->write_armed = on;
}

/* Write what nghttp2 has to send, as far as TLS takes it. */
static void tc_flush(struct tconn *tc)
{
	if (tc->state == TC_CLOSED || tc->state == TC_HANDSHAKE)
		return;
	for (;;) {
		if (tc->out_off == tc->out.n) {
			buf_reset(&tc->out);
			tc->out_off = 0;
			const uint8_t *p;
			ssize_t n;
			while (tc->out.n < 65536 && (n = nghttp2_session_mem_send(tc->h2, &p)) > 0)
				buf_append(&tc->out, (const char *)p, (size_t)n);
			if (tc->out.n == 0) {
				tc_arm_write(tc, false);
				if (!nghttp2_session_want_read(tc->h2) &&
				    !nghttp2_session_want_write(tc->h2))
					tc_close(tc, "session over");
				return;
			}
		}
		ERR_clear_error();
		int w = SSL_write(tc->ssl, tc->out.p + tc->out_off, (int)(tc->out.n - tc->out_off));
		if (w <= 0) {
			int e = SSL_get_error(tc->ssl, w);
			if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
				tc_arm_write(tc, true);
				return;
			}
			tc_close(tc, "write failed");
			return;
		}
		tc->out_off += (size_t)w;
	}
}

static void tc_free_cb(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct tconn *tc = arg;
	event_free(tc->ev_read);
	event_free(tc->ev_write);
	event_free(tc->ev_timer);
	buf_clear(&tc->out);
	buf_clear(&tc->announce);
	for (size_t i = 0; i < tc->n_offered; i++)
		free(tc->offered[i]);
	free(tc->offered);
	free(tc->admitted);
	free(tc);
}

/* Withdraw the connection from the registry and move or fail its
 * exchanges. The struct is freed from the loop: we may be inside one of
 * its own callbacks. */
static void tc_close(struct tconn *tc, const char *why)
{
	struct tun *t = g_tun;
	if (tc->state == TC_CLOSED)
		return;
	bool known = tc->state != TC_HANDSHAKE;
	if (tc->state == TC_READY)
		atomic_fetch_sub_explicit(&g_connectors, 1, memory_order_relaxed);
	if (known)
		atomic_fetch_add_explicit(&g_disconnects_total, 1, memory_order_relaxed);
	tc->state = TC_CLOSED;
	for (size_t i = 0; i < tc->n_admitted; i++)
		atomic_fetch_sub(&tc->admitted[i]->hosts, 1);
	tc->n_admitted = 0;
	if (known)
		log_info("tunnel: connector %s (%s) disconnected: %s", tc->id.name, tc->peer, why);
	else
		log_debug("tunnel: connection from %s closed during the handshake: %s", tc->peer, why);
	event_del(tc->ev_read);
	event_del(tc->ev_write);
	event_del(tc->ev_timer);
	if (tc->ssl) {
		/* best effort close_notify: the connector then sees an orderly
		 * end rather than a truncated TLS stream */
		if (known) {
			ERR_clear_error();
			SSL_shutdown(tc->ssl);
			ERR_clear_error();
		}
		SSL_free(tc->ssl);
		tc->ssl = NULL;
	}
	close(tc->fd);
	tc->fd = -1;
	if (tc->prev)
		tc->prev->next = tc->next;
	else
		t->conns = tc->next;
	if (tc->next)
		tc->next->prev = tc->prev;
	tc->prev = tc->next = NULL;
	t->n_conns--;
	/* before the session goes: nghttp2_session_del calls no callbacks */
	while (tc->streams)
		xfer_conn_lost(tc->streams);
	if (tc->h2) {
		nghttp2_session_del(tc->h2);
		tc->h2 = NULL;
	}
	event_base_once(t->base, -1, EV_TIMEOUT, tc_free_cb, tc, NULL);
}

/* Close with a GOAWAY that says why (its debug data), so the connector
 * can log the reason rather than a bare disconnect. */
static void tc_refuse(struct tconn *tc, const char *why)
{
	if (tc->h2 && tc->state != TC_CLOSED) {
		nghttp2_submit_goaway(tc->h2, NGHTTP2_FLAG_NONE,
				      nghttp2_session_get_last_proc_stream_id(tc->h2),
				      NGHTTP2_INADEQUATE_SECURITY, (const uint8_t *)why, strlen(why));
		tc_flush(tc);
	}
	tc_close(tc, why);
}

/* The announcement arrived: admit what the bind policy allows; false
 * when it is malformed. */
static bool tc_admit(struct tconn *tc)
{
	const struct config *cfg = g_tun->rt->cfg;
	struct json_val root, arr, v, name;
	struct json_iter it;
	if (json_parse(tc->announce.p ? tc->announce.p : "", tc->announce.n, &root, NULL) ||
	    root.type != JSON_OBJECT || !json_obj_get(root, "services", &arr) ||
	    arr.type != JSON_ARRAY) {
		log_warn("tunnel: connector %s (%s) sent a malformed services announcement",
			 tc->id.name, tc->peer);
		return false;
	}
	if (json_obj_get(root, "connector", &name) && !json_str_eq(name, tc->id.name))
		log_warn("tunnel: connector %s announces itself as another name", tc->id.name);
	json_iter_init(&it, arr);
	while (json_arr_next(&it, &v)) {
		struct buf b;
		buf_init(&b, STORE_NAME_MAX);
		if (v.type == JSON_STRING && !json_str_decode(v, &b) && b.n && tc->n_offered < 256) {
			tc->offered = realloc(tc->offered, (tc->n_offered + 1) * sizeof *tc->offered);
			tc->offered[tc->n_offered++] = strndup(b.p, b.n);
		}
		buf_clear(&b);
	}
	tc->admitted = umb_calloc(tc->n_offered ? tc->n_offered : 1, sizeof *tc->admitted);
	for (size_t i = 0; i < tc->n_offered; i++) {
		const char *svc = tc->offered[i];
		const struct cfg_service *cs = config_find_service(cfg, str_cstr(svc));
		bool may = false;
		for (size_t h = 0; cs && h < cs->n_hosts && !may; h++)
			may = !strcmp(cs->hosts[h], tc->id.name);
		if (!may) {
			log_warn("tunnel: connector %s may not host service %s (%s)", tc->id.name, svc,
				 cs ? "not in its hosts" : "no such service");
			continue;
		}
		struct svc_slot *slot = svc_get(svc);
		if (!slot || tc_hosts(tc, slot))
			continue;
		tc->admitted[tc->n_admitted++] = slot;
		atomic_fetch_add(&slot->hosts, 1);
	}
	tc->state = TC_READY;
	tc->deadline_ns = 0;
	tc_timer_arm(tc);
	atomic_fetch_add_explicit(&g_connectors, 1, memory_order_relaxed);
	char fields[512];
	struct buf list;
	buf_init(&list, 0);
	for (size_t i = 0; i < tc->n_admitted; i++)
		buf_printf(&list, "%s%s", i ? "," : "", tc->admitted[i]->name);
	snprintf(fields, sizeof fields, "\"connector\":\"%s\",\"peer\":\"%s\",\"services\":\"%.300s\"",
		 tc->id.name, tc->peer, list.p ? list.p : "");
	buf_clear(&list);
	log_emit(LOG_INFO, fields, "tunnel: connector admitted");
	return true;
}

/* Re-apply the bind policy after a reload. */
static void tc_readmit(struct tconn *tc)
{
	atomic_fetch_sub_explicit(&g_connectors, 1, memory_order_relaxed); /* tc_admit counts it again */
	for (size_t i = 0; i < tc->n_admitted; i++)
		atomic_fetch_sub(&tc->admitted[i]->hosts, 1);
	tc->n_admitted = 0;
	for (size_t i = 0; i < tc->n_offered; i++)
		free(tc->offered[i]);
	tc->n_offered = 0;
	free(tc->admitted);
	tc->admitted = NULL;
	if (!tc_admit(tc))
		tc_close(tc, "malformed services announcement");
}

static void tc_start_session(struct tconn *tc)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_session_callbacks_new(&cbs);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_option *opt;
	nghttp2_option_new(&opt);
	/* we open the window as workers consume, not as bytes arrive */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_session_client_new2(&tc->h2, cbs, tc, opt);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, TUN_STREAM_WINDOW },
	};
	nghttp2_submit_settings(tc->h2, NGHTTP2_FLAG_NONE, iv, UMB_ARRAY_LEN(iv));
	nghttp2_session_set_local_window_size(tc->h2, NGHTTP2_FLAG_NONE, 0, TUN_CONN_WINDOW);
	static const nghttp2_nv ann[] = {
#define NV(n, v) { (uint8_t *)n, (uint8_t *)v, sizeof n - 1, sizeof v - 1, NGHTTP2_NV_FLAG_NONE }
		NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "umbra-connector"),
		NV(":path", TUN_SERVICES_PATH),
#undef NV
	};
	buf_init(&tc->announce, 64 * 1024);
	tc->announce_id = nghttp2_submit_request(tc->h2, NULL, ann, UMB_ARRAY_LEN(ann), NULL, NULL);
	tc->state = TC_ANNOUNCE;
	tc->deadline_ns = clock_mono_ns() + (uint64_t)TUN_HANDSHAKE_MS * 1000000u;
	const struct cfg_tunnel *tu = &g_tun->rt->cfg->tunnel;
	tc->next_ping_ns = clock_mono_ns() + (uint64_t)tu->ping_interval_ms * 1000000u;
	tc_timer_arm(tc);
	tc_flush(tc);
}

/* The handshake is done: is this a connector we accept? */
static bool tc_verify_peer(struct tconn *tc)
{
	const unsigned char *alpn;
	unsigned alpn_len;
	SSL_get0_alpn_selected(tc->ssl, &alpn, &alpn_len);
	X509 *peer = SSL_get0_peer_certificate(tc->ssl);
	if (!peer || SSL_get_verify_result(tc->ssl) != X509_V_OK) {
		tc_close(tc, "no verified certificate");
		return false;
	}
	if (pki_cert_identity(peer, &tc->id) || tc->id.kind != PKI_KIND_CONNECTOR) {
		log_warn("tunnel: %s presented a certificate that is not a connector's", tc->peer);
		tc->id.name[0] = 0;
		tc_close(tc, "not a connector certificate");
		return false;
	}
	if (alpn_len != 2 || memcmp(alpn, "h2", 2)) {
		tc_close(tc, "no h2 in ALPN");
		return false;
	}
	struct auth_conn ac = { .has_cert = true, .cert = tc->id };
	snprintf(ac.ident, sizeof ac.ident, "%s", tc->id.name);
	if (auth_conn_revoked(g_tun->aw, g_tun->rt->cfg, &ac, (int64_t)time(NULL))) {
		log_warn("tunnel: refused connector %s (%s): identity revoked", tc->id.name, tc->peer);
		tc->revoked = true; /* tc_handshake says so over HTTP/2, then closes */
	}
	return true;
}

static void tc_handshake(struct tconn *tc)
{
	ERR_clear_error();
	int rc = SSL_accept(tc->ssl);
	if (rc != 1) {
		int e = SSL_get_error(tc->ssl, rc);
		if (e == SSL_ERROR_WANT_READ) {
			tc_arm_write(tc, false);
			return;
		}
		if (e == SSL_ERROR_WANT_WRITE) {
			tc_arm_write(tc, true);
			return;
		}
		log_info("tunnel: TLS handshake with %s failed: %s", tc->peer,
			 ERR_reason_error_string(ERR_peek_last_error()));
		tc_close(tc, "TLS handshake failed");
		return;
	}
	tc_arm_write(tc, false);
	if (!tc_verify_peer(tc))
		return;
	atomic_fetch_add_explicit(&g_conns_total, 1, memory_order_relaxed);
	tc_start_session(tc);
	if (tc->revoked)
		tc_refuse(tc, "identity revoked");
}

static void tc_on_read_run(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct tconn *tc = arg;
	if (tc->state == TC_HANDSHAKE) {
		tc_handshake(tc);
		/* the connector's preface may already sit in TLS's buffer */
		if (tc->state != TC_ANNOUNCE)
			return;
	}
	uint8_t buf[TUN_READ_CHUNK];
	for (int rounds = 0; rounds < 16 && tc->state != TC_CLOSED; rounds++) {
		ERR_clear_error();
		int n = SSL_read(tc->ssl, buf, sizeof buf);
		if (n <= 0) {
			int e = SSL_get_error(tc->ssl, n);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				break;
			tc_close(tc, e == SSL_ERROR_ZERO_RETURN ? "closed by the connector" : "read failed");
			return;
		}
		ssize_t r = nghttp2_session_mem_recv(tc->h2, buf, (size_t)n);
		if (r < 0) {
			tc_close(tc, nghttp2_strerror((int)r));
			return;
		}
		if ((size_t)n < sizeof buf && !SSL_pending(tc->ssl))
			break;
	}
	tc_flush(tc);
}

static void tc_on_write_run(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct tconn *tc = arg;
	if (tc->state == TC_HANDSHAKE) {
		tc_handshake(tc);
		if (tc->state == TC_ANNOUNCE)
			tc_on_read(fd, EV_READ, tc);
	} else {
		tc_flush(tc);
	}
}

/* Arm the connection's one timer for whatever is due first: the
 * handshake/announce deadline, the PING timeout, the next PING. */
static void tc_timer_arm(struct tconn *tc)
{
	const struct cfg_tunnel *tu = &g_tun->rt->cfg->tunnel;
	uint64_t due = tc->deadline_ns ? tc->deadline_ns : UINT64_MAX;
	if (tc->state >= TC_ANNOUNCE) {
		uint64_t p = tc->ping_sent_ns
			? tc->ping_sent_ns + (uint64_t)tu->ping_timeout_ms * 1000000u
			: tc->next_ping_ns;
		due = UMB_MIN(due, p);
	}
	uint64_t now = clock_mono_ns();
	uint64_t left = due > now ? due - now : 0;
	struct timeval tv = { (time_t)(left / 1000000000u),
			      (suseconds_t)(left % 1000000000u) / 1000 + 1 };
	event_add(tc->ev_timer, &tv);
}

static void tc_on_timer_run(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct tconn *tc = arg;
	uint64_t now = clock_mono_ns();
	const struct cfg_tunnel *tu = &g_tun->rt->cfg->tunnel;
	if (tc->deadline_ns && now >= tc->deadline_ns) {
		tc_close(tc, tc->state == TC_HANDSHAKE ? "handshake timeout" : "no services announcement");
		return;
	}
	if (tc->state >= TC_ANNOUNCE) {
		if (tc->ping_sent_ns && now - tc->ping_sent_ns >= (uint64_t)tu->ping_timeout_ms * 1000000u) {
			tc_close(tc, "no PING acknowledgement");
			return;
		}
		if (!tc->ping_sent_ns && now >= tc->next_ping_ns) {
			nghttp2_submit_ping(tc->h2, NGHTTP2_FLAG_NONE, NULL);
			tc->ping_sent_ns = now;
			tc->next_ping_ns = now + (uint64_t)tu->ping_interval_ms * 1000000u;
			tc_flush(tc);
			if (tc->state == TC_CLOSED)
				return;
		}
	}
	tc_timer_arm(tc);
}

static void tun_on_accept(evutil_socket_t lfd, short what, void *arg)
{
	UMB_UNUSED(what);
	struct tun *t = arg;
	for (int i = 0; i < 16; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (t->draining || !t->ctx) {
			close(fd);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct tconn *tc = umb_calloc(1, sizeof *tc);
		tc->fd = fd;
		tc->announce_id = -1;
		buf_init(&tc->out, 0);
		net_peer_name(&ss, tc->peer, sizeof tc->peer);
		tc->ssl = SSL_new(t->ctx);
		SSL_set_fd(tc->ssl, fd);
		tc->ev_read = event_new(t->base, fd, EV_READ | EV_PERSIST, tc_on_read, tc);
		tc->ev_write = event_new(t->base, fd, EV_WRITE | EV_PERSIST, tc_on_write, tc);
		tc->ev_timer = event_new(t->base, -1, 0, tc_on_timer, tc);
		event_add(tc->ev_read, NULL);
		tc->deadline_ns = clock_mono_ns() + (uint64_t)TUN_HANDSHAKE_MS * 1000000u;
		tc_timer_arm(tc);
		tc->next = t->conns;
		if (t->conns)
			t->conns->prev = tc;
		t->conns = tc;
		t->n_conns++;
	}
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned inlen, void *arg)
{
	UMB_UNUSED(ssl);
	UMB_UNUSED(arg);
	for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
		if (in[i] == 2 && i + 3 <= inlen && !memcmp(in + i + 1, "h2", 2)) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* TLS 1.3 only, connectors' certificates verified against tunnel.ca. */
static SSL_CTX *tun_ctx_new(const struct cfg_tunnel *tu, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	STACK_OF(X509_NAME) *names = NULL;
	if (!ctx)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(ctx, tu->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, tu->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1 ||
	    SSL_CTX_load_verify_locations(ctx, tu->ca, NULL) != 1 ||
	    !(names = SSL_load_client_CA_file(tu->ca)))
		goto fail;
	SSL_CTX_set_client_CA_list(ctx, names);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"umbra-tunnel", 12);
	return ctx;
fail:;
	unsigned long e = ERR_get_error();
	snprintf(err, errlen, "tunnel TLS setup (cert %s, key %s, ca %s): %s", tu->cert, tu->key,
		 tu->ca, e ? ERR_reason_error_string(e) : "cannot create context");
	ERR_clear_error();
	if (ctx)
		SSL_CTX_free(ctx);
	return NULL;
}

/* ---- control from other threads ---- */

static void tun_ctl(int bits)
{
	struct tun *t = g_tun;
	if (!t)
		return;
	atomic_fetch_or(&t->ctl, bits);
	event_active(t->ev_ctl, EV_READ, 0);
}

void tunnel_reload(void) { tun_ctl(CTL_RELOAD); }
void tunnel_revoked(void) { tun_ctl(CTL_REVOKED); }
void tunnel_drain(void) { tun_ctl(CTL_DRAIN); }

static void on_ctl_run(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct tun *t = arg;
	int bits = atomic_exchange(&t->ctl, 0);
	if (bits & CTL_RELOAD) {
		struct runtime *old = t->rt;
		t->rt = runtime_acquire();
		runtime_release(old);
		char err[512];
		SSL_CTX *ctx = t->rt->cfg->tunnel.enabled
			? tun_ctx_new(&t->rt->cfg->tunnel, err, sizeof err) : NULL;
		if (ctx || !t->rt->cfg->tunnel.enabled) {
			if (t->ctx)
				SSL_CTX_free(t->ctx);
			t->ctx = ctx;
		} else {
			log_error("reload: %s; keeping the tunnel's TLS settings", err);
		}
		for (struct tconn *tc = t->conns, *next; tc; tc = next) {
			next = tc->next;
			if (tc->state == TC_READY && !tc->goaway)
				tc_readmit(tc);
		}
	}
	if (bits & CTL_REVOKED) {
		int64_t now = (int64_t)time(NULL);
		for (struct tconn *tc = t->conns, *next; tc; tc = next) {
			next = tc->next;
			if (tc->state == TC_HANDSHAKE)
				continue;
			struct auth_conn ac = { .has_cert = true, .cert = tc->id };
			snprintf(ac.ident, sizeof ac.ident, "%s", tc->id.name);
			if (auth_conn_revoked(t->aw, t->rt->cfg, &ac, now))
				tc_refuse(tc, "identity revoked");
		}
	}
	if (bits & (CTL_DRAIN | CTL_STOP)) {
		t->draining = true;
		for (struct tconn *tc = t->conns, *next; tc; tc = next) {
			next = tc->next;
			if (tc->state == TC_HANDSHAKE || (bits & CTL_STOP)) {
				tc_close(tc, "gateway stopping");
				continue;
			}
			nghttp2_submit_goaway(tc->h2, NGHTTP2_FLAG_NONE,
					      nghttp2_session_get_last_proc_stream_id(tc->h2),
					      NGHTTP2_NO_ERROR, NULL, 0);
			tc_flush(tc);
		}
	}
	if (bits & CTL_STOP)
		event_base_loopexit(t->base, NULL);
}

static void *tun_main(void *arg)
{
	struct tun *t = arg;
	signal(SIGPIPE, SIG_IGN);
	event_base_dispatch(t->base);
	return NULL;
}

int tunnel_start(struct runtime *rt, char *err, size_t errlen)
{
	const struct cfg_tunnel *tu = &rt->cfg->tunnel;
	if (!tu->enabled)
		return 0;
	struct tun *t = umb_calloc(1, sizeof *t);
	t->ctx = tun_ctx_new(tu, err, errlen);
	if (!t->ctx) {
		free(t);
		return -1;
	}
	t->listen_fd = net_listen("tunnel.listen", tu->listen_host, tu->listen_port, false, 512,
				  err, errlen);
	if (t->listen_fd < 0) {
		SSL_CTX_free(t->ctx);
		free(t);
		return -1;
	}
	t->base = event_base_new();
	t->rt = runtime_acquire();
	t->aw = auth_worker_new();
	pthread_mutex_init(&t->mail_lock, NULL);
	t->ev_listen = event_new(t->base, t->listen_fd, EV_READ | EV_PERSIST, tun_on_accept, t);
	t->ev_mail = event_new(t->base, -1, 0, on_mail, t);
	t->ev_ctl = event_new(t->base, -1, 0, on_ctl, t);
	event_add(t->ev_listen, NULL);
	g_tun = t;
	pthread_create(&t->thread, NULL, tun_main, t);
	log_info("tunnel: listening for connectors on %s:%d", tu->listen_host, tu->listen_port);
	return 0;
}

void tunnel_stop(void)
{
	struct tun *t = g_tun;
	if (!t)
		return;
	tun_ctl(CTL_STOP);
	pthread_join(t->thread, NULL);
	/* close what is left (CTL_STOP closed the connections; free them) */
	event_base_loop(t->base, EVLOOP_NONBLOCK);
	on_mail(-1, 0, t);
	event_free(t->ev_listen);
	event_free(t->ev_mail);
	event_free(t->ev_ctl);
	close(t->listen_fd);
	event_base_free(t->base);
	SSL_CTX_free(t->ctx);
	auth_worker_free(t->aw);
	runtime_release(t->rt);
	pthread_mutex_destroy(&t->mail_lock);
	g_tun = NULL;
	free(t);
}

int tunnel_metrics(struct buf *out, const struct config *cfg)
{
	static const struct {
		const char *family, *type, *help;
		atomic_long *v;
	} fam[] = {
		{ "umbra_tunnel_connectors", "gauge", "connector connections admitted and up", &g_connectors },
		{ "umbra_tunnel_connections_total", "counter", "connector connections verified (reconnects included)", &g_conns_total },
		{ "umbra_tunnel_disconnects_total", "counter", "connector connections lost or closed", &g_disconnects_total },
		{ "umbra_tunnel_streams", "gauge", "requests in flight through the tunnel", &g_streams },
		{ "umbra_tunnel_streams_total", "counter", "requests sent through the tunnel", &g_streams_total },
	};
	int rc = 0;
	for (size_t i = 0; !rc && i < UMB_ARRAY_LEN(fam); i++) {
		rc = metrics_write_header(out, fam[i].family, fam[i].type, fam[i].help);
		if (!rc)
			rc = metrics_write_gauge(out, fam[i].family, NULL, (double)atomic_load(fam[i].v));
	}
	if (!rc)
		rc = metrics_write_header(out, "umbra_tunnel_service_hosts", "gauge",
					  "admitted connector connections hosting the service");
	for (size_t i = 0; !rc && i < cfg->n_services; i++) {
		struct svc_slot *sl = svc_find(cfg->services[i].name);
		const char *labels[] = { "service", cfg->services[i].name, NULL };
		rc = metrics_write_gauge(out, "umbra_tunnel_service_hosts", labels,
					 sl ? atomic_load(&sl->hosts) : 0);
	}
	return rc;
}
