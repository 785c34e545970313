/* server.c — listeners, workers, connections and the request life cycle.
 *
 * Threads: the main thread handles signals (drain, reload) and hosts the
 * active health checks; N worker threads each own one libevent loop, one
 * SO_REUSEPORT listener and every connection it accepts.
 *
 * A connection moves through: HANDSHAKE (TLS) → HEAD → BODY → BUSY (a
 * handler owns the request) → back to HEAD on keep-alive. While BUSY the
 * socket is still read so that a client that goes away cancels its
 * upstream request at once; pipelined bytes wait in `in`.
 *
 * Timeouts are lazy: progress only moves conn->deadline_ns; the single
 * per-connection timer re-arms itself when it fires early. */
#include "http/http.h"
#include "audit/audit.h"
#include "spend/budget.h"
#include "spend/usage.h"
#include "store/store.h"
#include "routing/router.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stddef.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "api/api.h"
#include "identity/auth.h"
#include "tunnel/tunnel.h"
#include "metrics/metrics.h"
#include "upstream/upstream.h"

#define CONN_READ_CHUNK 16384
#define CONN_PIPELINE_MAX 65536     /* bytes buffered ahead while BUSY */
#define CONN_OUT_HIGH_WATER 262144  /* stream producers pause above this */
#define CONN_SSL_WRITE_MAX 16384

enum conn_state {
	CS_HANDSHAKE,
	CS_HEAD,
	CS_BODY,
	CS_BUSY,
	CS_LINGER, /* response sent, write side shut: discard input, then close */
};

struct conn {
	struct worker_priv *wp;
	int fd;
	SSL *ssl;
	enum conn_state state;
	struct event *ev_read, *ev_write, *ev_timer;
	uint64_t deadline_ns, timer_at_ns;
	bool timer_armed, write_armed, read_paused;
	bool closing;     /* close once output is flushed */
	bool broken;      /* write failed: close from the defer queue */
	bool dead;        /* closed; freed when the outermost callback ends */
	bool want_finish; /* request finished, finalise from the defer queue */
	int depth;        /* callback nesting, to defer frees */
	bool in_defer;
	bool process_again;

	struct buf in;    /* request bytes (head, body, pipelined) */
	struct buf *lent; /* the input buffer handed to the current request */
	size_t head_len;
	size_t head_scanned;   /* bytes already known to hold no complete head */
	const char *head_base; /* c->in.p when the head was parsed */
	uint64_t t_first_ns;
	struct http_chunked chunked;
	struct buf chunk_body;
	bool chunked_body;
	size_t ssl_retry_len; /* SSL_write must be retried with this length */

	struct buf out;       /* response bytes queued */
	size_t out_off;
	struct str out_body;  /* borrowed body after `out` */
	size_t out_body_off;

	struct req *req;
	uint64_t requests;
	char peer[64];
	struct auth_conn auth; /* certificate identity, last credentials */
	struct conn *prev, *next, *defer_next;
};

struct worker_priv {
	struct worker w; /* public part handed to handlers */
	pthread_t thread;
	int listen_fd;
	struct event *ev_listen, *ev_notify, *ev_defer, *ev_tick;
	struct runtime *rt;        /* this worker's reference */
	struct conn *conns;        /* all open connections */
	int n_conns, max_conns;
	struct conn *defer_head;
	bool accept_paused, draining;
	atomic_int notify;         /* NOTIFY_* bits from the main thread */
};

enum { NOTIFY_RELOAD = 1, NOTIFY_DRAIN = 2, NOTIFY_STOP = 4, NOTIFY_REVOKED = 8 };

/* ---- process-wide state ---- */

static pthread_mutex_t g_rt_lock = PTHREAD_MUTEX_INITIALIZER;
static struct runtime *g_rt;
static struct audit_log *g_audit; /* opened at start, kept across reloads */
static struct usage_acc *g_usage;  /* rollups pending a flush (main thread) */
static struct spend_ledger *g_spend; /* budget and rate-limit leases */
static struct worker_priv *g_workers;
static int g_n_workers;

static void runtime_free(struct runtime *rt)
{
	upstream_set_free(rt->ups);
	if (rt->ssl_ctx)
		SSL_CTX_free(rt->ssl_ctx);
	if (rt->enroll_ca) {
		pki_ca_clear(rt->enroll_ca);
		free(rt->enroll_ca);
	}
	router_free(rt->router);
	config_free(rt->cfg);
	free(rt);
}

struct runtime *runtime_acquire(void)
{
	pthread_mutex_lock(&g_rt_lock);
	struct runtime *rt = g_rt;
	atomic_fetch_add_explicit(&rt->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&g_rt_lock);
	return rt;
}

void runtime_release(struct runtime *rt)
{
	if (rt && atomic_fetch_sub_explicit(&rt->refs, 1, memory_order_acq_rel) == 1)
		runtime_free(rt);
}

static void runtime_publish(struct runtime *rt)
{
	atomic_store(&rt->refs, 1); /* the global reference */
	pthread_mutex_lock(&g_rt_lock);
	struct runtime *old = g_rt;
	g_rt = rt;
	pthread_mutex_unlock(&g_rt_lock);
	runtime_release(old);
}

/* ---- TLS ---- */

/* POST /enroll signs with the CA key found as ca.key next to
 * tls.client_ca (the layout `umbra pki init` writes); NULL: enrollment
 * is off. */
static struct pki_ca *enroll_ca_load(const struct config *cfg)
{
	if (!cfg->tls.client_ca)
		return NULL;
	char key[PATH_MAX];
	const char *slash = strrchr(cfg->tls.client_ca, '/');
	int dl = slash ? (int)(slash - cfg->tls.client_ca) : 0;
	snprintf(key, sizeof key, "%.*s/ca.key", dl, cfg->tls.client_ca);
	if (access(key, F_OK) != 0)
		return NULL;
	struct pki_ca *ca = umb_calloc(1, sizeof *ca);
	char perr[PKI_ERR_LEN];
	if (pki_ca_load_files(cfg->tls.client_ca, key, ca, perr)) {
		log_warn("enrollment off: %s", perr);
		free(ca);
		return NULL;
	}
	return ca;
}

static SSL_CTX *tls_ctx_new(const struct cfg_tls *t, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	/* Resumed sessions keep the verified client certificate; OpenSSL
	 * refuses to resume a verified session without an id context. */
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"umbra", 5);
	if (t->client_ca && t->client_auth != CLIENT_AUTH_NONE) {
		/* Verify against the umbra CA alone. No FAIL_IF_NO_PEER_CERT even
		 * under `require`: a device without a certificate must still
		 * reach POST /enroll; the HTTP layer refuses everything else. A
		 * certificate that is sent and fails verification (another CA,
		 * expired) fails the handshake. */
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca);
		if (!names || SSL_CTX_load_verify_locations(ctx, t->client_ca, NULL) != 1) {
			sk_X509_NAME_pop_free(names, X509_NAME_free);
			snprintf(err, errlen, "TLS setup (client_ca %s): cannot load CA certificates",
				 t->client_ca);
			ERR_clear_error();
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_verify_depth(ctx, 4);
	}
	return ctx;
fail:;
	unsigned long e = ERR_get_error();
	snprintf(err, errlen, "TLS setup (cert %s, key %s): %s", t->cert, t->key,
		 e ? ERR_reason_error_string(e) : "cannot create context");
	ERR_clear_error();
	if (ctx)
		SSL_CTX_free(ctx);
	return NULL;
}

/* Build a runtime from a config; NULL with err on failure (cfg freed). */
static struct runtime *runtime_build(struct config *cfg, const struct runtime *prev,
				     char *err, size_t errlen)
{
	struct runtime *rt = umb_calloc(1, sizeof *rt);
	rt->cfg = cfg;
	if (cfg->tls.enabled) {
		rt->ssl_ctx = tls_ctx_new(&cfg->tls, err, errlen);
		if (!rt->ssl_ctx) {
			config_free(cfg);
			free(rt);
			return NULL;
		}
	}
	if (auth_store_needed(cfg)) {
		/* fail at start (or keep the old config on reload) rather than
		 * on the first request when the store cannot be opened */
		struct store *st;
		struct store_err serr;
		if (store_open(cfg->store_url, cfg->dir, &st, &serr)) {
			snprintf(err, errlen, "identity store %.200s: %.280s", cfg->store_url, serr.msg);
			runtime_free(rt);
			return NULL;
		}
		store_close(st);
	}
	if (cfg->routing.enabled) {
		rt->router = router_new(cfg, err, errlen);
		if (!rt->router) {
			runtime_free(rt);
			return NULL;
		}
	}
	rt->audit = g_audit;
	rt->usage = g_usage;
	rt->spend = g_spend;
	rt->enroll_ca = enroll_ca_load(cfg);
	rt->ups = upstream_set_new(cfg, prev ? prev->ups : NULL);
	return rt;
}

/* ---- connections ---- */

static void conn_process(struct conn *c);
static void conn_hand_over_input(struct conn *c, size_t consumed);
static void conn_flush(struct conn *c);
static void conn_close(struct conn *c);
static void req_finalize(struct conn *c);

static const struct cfg_limits *conn_limits(struct conn *c)
{
	return &c->wp->rt->cfg->limits;
}

static void conn_set_deadline(struct conn *c, uint64_t ms_from_now)
{
	uint64_t now = clock_mono_ns();
	c->deadline_ns = now + ms_from_now * 1000000u;
	if (c->timer_armed && c->timer_at_ns <= c->deadline_ns)
		return; /* the timer fires first and re-arms for the rest */
	struct timeval tv = { (time_t)(ms_from_now / 1000),
			      (suseconds_t)(ms_from_now % 1000) * 1000 };
	event_add(c->ev_timer, &tv);
	c->timer_armed = true;
	c->timer_at_ns = c->deadline_ns;
}

static void conn_clear_deadline(struct conn *c)
{
	c->deadline_ns = 0; /* the armed timer will find nothing to do */
}

static void conn_enter(struct conn *c)
{
	c->depth++;
}

/* Leave a callback; frees the connection if it died inside. */
static void conn_leave(struct conn *c)
{
	if (--c->depth > 0 || !c->dead)
		return;
	if (c->in_defer)
		return; /* the defer queue frees it */
	event_free(c->ev_read);
	event_free(c->ev_write);
	event_free(c->ev_timer);
	buf_clear(&c->in);
	buf_clear(&c->out);
	buf_clear(&c->chunk_body);
	free(c);
}

static void conn_defer(struct conn *c)
{
	if (c->in_defer)
		return;
	c->in_defer = true;
	c->defer_next = c->wp->defer_head;
	c->wp->defer_head = c;
	event_active(c->wp->ev_defer, 0, 0);
}

static void conn_close(struct conn *c)
{
	if (c->dead)
		return;
	struct worker_priv *wp = c->wp;
	if (c->req && !c->req->finished) {
		/* The client is gone or the gateway gave up on it: tell the
		 * handler to cancel its upstream work, then drop the request. */
		struct req *r = c->req;
		r->finished = true;
		if (!r->status)
			r->status = 499; /* nginx's "client closed request" */
		if (r->hooks.abort)
			r->hooks.abort(r);
		req_finalize(c);
	} else if (c->req) {
		req_finalize(c);
	}
	c->dead = true;
	event_del(c->ev_read);
	event_del(c->ev_write);
	event_del(c->ev_timer);
	if (c->ssl) {
		SSL_set_quiet_shutdown(c->ssl, 1);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		wp->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	wp->n_conns--;
	metrics_connections_add(wp->w.metrics, -1);
	if (wp->accept_paused && !wp->draining && wp->n_conns < wp->max_conns) {
		wp->accept_paused = false;
		event_add(wp->ev_listen, NULL);
	}
	if (c->depth == 0) {
		c->depth = 1;
		conn_leave(c);
	}
}

/* Read what is available into c->in. Returns bytes read, 0 on EOF,
 * UMB_AGAIN when nothing is there, UMB_ERR on a dead socket. */
static ssize_t conn_read_some(struct conn *c)
{
	if (buf_reserve(&c->in, CONN_READ_CHUNK))
		return UMB_ERR;
	size_t room = c->in.cap - c->in.n - 1;
	if (c->ssl) {
		ERR_clear_error();
		int n = SSL_read(c->ssl, c->in.p + c->in.n, (int)UMB_MIN(room, (size_t)INT32_MAX));
		if (n > 0) {
			c->in.n += (size_t)n;
			c->in.p[c->in.n] = 0;
			return n;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return UMB_AGAIN;
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		return UMB_ERR;
	}
	ssize_t n = recv(c->fd, c->in.p + c->in.n, room, 0);
	if (n > 0) {
		c->in.n += (size_t)n;
		c->in.p[c->in.n] = 0;
		return n;
	}
	if (n == 0)
		return 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return UMB_AGAIN;
	return UMB_ERR;
}

/* ---- response writing ---- */

static const char *status_reason(int s)
{
	switch (s) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return s < 300 ? "OK" : s < 500 ? "Client Error" : "Server Error";
	}
}

size_t http_out_pending(const struct req *r)
{
	const struct conn *c = r->conn;
	return (c->out.n - c->out_off) + (c->out_body.n - c->out_body_off);
}

/* Nanoseconds as milliseconds with three decimals ("12.345"). */
static size_t fmt_ms3(char *out, uint64_t ns)
{
	uint64_t us = (ns + 500) / 1000;
	size_t n = fmt_u64(out, us / 1000);
	out[n++] = '.';
	unsigned frac = (unsigned)(us % 1000);
	out[n++] = (char)('0' + frac / 100);
	out[n++] = (char)('0' + frac / 10 % 10);
	out[n++] = (char)('0' + frac % 10);
	return n;
}

/* Format the status line and the headers every response carries. */
static void resp_head(struct req *r, int status, const char *ctype,
		      int64_t content_length, struct str extra)
{
	struct conn *c = r->conn;
	r->status = status;
	r->head_sent = true;
	uint64_t now = clock_mono_ns();
	uint64_t total = now - r->t_start_ns;
	uint64_t own = total > r->upstream_ns ? total - r->upstream_ns : 0;
	struct buf *o = &c->out;
	/* hand-formatted: this runs on every response */
	char num[24];
	buf_append_lit(o, "HTTP/1.1 ");
	buf_append(o, num, fmt_u64(num, (uint64_t)status));
	buf_append_lit(o, " ");
	buf_append_cstr(o, status_reason(status));
	buf_append_lit(o, "\r\n");
	if (ctype) {
		buf_append_lit(o, "content-type: ");
		buf_append_cstr(o, ctype);
		buf_append_lit(o, "\r\n");
	}
	if (content_length >= 0) {
		buf_append_lit(o, "content-length: ");
		buf_append(o, num, fmt_u64(num, (uint64_t)content_length));
		buf_append_lit(o, "\r\n");
	} else if (r->chunked) {
		buf_append_lit(o, "transfer-encoding: chunked\r\n");
	} /* else HTTP/1.0: the body ends when the connection closes */
	buf_append_lit(o, "x-request-id: ");
	buf_append_cstr(o, r->id);
	buf_append_lit(o, "\r\nserver-timing: umbra;dur=");
	buf_append(o, num, fmt_ms3(num, own));
	buf_append_lit(o, ", upstream;dur=");
	buf_append(o, num, fmt_ms3(num, r->upstream_ns));
	buf_append_lit(o, "\r\n");
	/* who handled it (DESIGN.md "Route headers"), errors included */
	if (r->route_method) {
		buf_append_lit(o, "x-umbra-route-method: ");
		buf_append_cstr(o, r->route_method);
		buf_append_lit(o, "\r\n");
	}
	if (r->route) {
		buf_append_lit(o, "x-umbra-route: ");
		buf_append_cstr(o, r->route);
		buf_append_lit(o, "\r\n");
	}
	if (r->route_score) {
		buf_append_lit(o, "x-umbra-route-score: ");
		buf_append_cstr(o, r->route_score);
		buf_append_lit(o, "\r\n");
	}
	if (r->model_shown && r->model_shown[0]) {
		buf_append_lit(o, "x-umbra-model: ");
		buf_append_cstr(o, r->model_shown);
		buf_append_lit(o, "\r\n");
	}
	if (r->provider) {
		buf_append_lit(o, "x-umbra-provider: ");
		buf_append_cstr(o, r->provider);
		buf_append_lit(o, "\r\nx-umbra-endpoint: ");
		buf_append_cstr(o, r->endpoint ? r->endpoint : "");
		buf_append_lit(o, "\r\n");
	}
	if (c->closing)
		buf_append_lit(o, "connection: close\r\n");
	buf_append_str(o, extra);
	buf_append_lit(o, "\r\n");
}

/* Decide whether the connection survives this response. */
static void resp_decide_close(struct req *r)
{
	struct conn *c = r->conn;
	if (!r->head.keep_alive || c->wp->draining)
		c->closing = true;
}

void http_respond(struct req *r, const struct http_resp *resp)
{
	UMB_BUG_ON(r->finished);
	struct conn *c = r->conn;
	resp_decide_close(r);
	bool head_only = str_eq_cstr(r->head.method, "HEAD");
	resp_head(r, resp->status, resp->content_type, (int64_t)resp->body.n,
		  resp->extra_headers);
	if (!head_only && resp->body.n) {
		if (resp->body.n <= 4096) { /* small: one contiguous write */
			buf_append_str(&c->out, resp->body);
		} else {
			c->out_body = resp->body;
			c->out_body_off = 0;
		}
	}
	r->finished = true;
	c->want_finish = true;
	conn_flush(c);
}

void http_stream_begin(struct req *r, int status, const char *content_type,
		       struct str extra_headers)
{
	UMB_BUG_ON(r->finished || r->head_sent);
	resp_decide_close(r);
	/* HTTP/1.0 has no chunked coding: close-delimit the body instead */
	r->chunked = r->head.minor_version >= 1;
	if (!r->chunked)
		r->conn->closing = true;
	resp_head(r, status, content_type, -1, extra_headers);
	conn_flush(r->conn);
}

bool http_stream_write(struct req *r, const char *p, size_t n)
{
	struct conn *c = r->conn;
	if (c->dead || c->broken || r->finished)
		return false;
	if (n && !r->chunked) {
		buf_append(&c->out, p, n);
		conn_flush(c);
	} else if (n) {
		char hex[20];
		size_t k = 0;
		for (int sh = 60; sh >= 0; sh -= 4) {
			unsigned d = (unsigned)(n >> sh) & 15;
			if (d || k || sh == 0)
				hex[k++] = "0123456789abcdef"[d];
		}
		hex[k++] = '\r';
		hex[k++] = '\n';
		buf_append(&c->out, hex, k);
		buf_append(&c->out, p, n);
		buf_append_lit(&c->out, "\r\n");
		conn_flush(c);
	}
	return !c->dead && !c->broken && http_out_pending(r) < CONN_OUT_HIGH_WATER;
}

void http_stream_end(struct req *r, bool abort)
{
	struct conn *c = r->conn;
	if (r->finished)
		return;
	/* The body is always framed completely, so a client never sees a
	 * half chunk; after a broken stream the connection is not reused. */
	if (abort)
		c->closing = true;
	if (r->chunked)
		buf_append_lit(&c->out, "0\r\n\r\n");
	r->finished = true;
	c->want_finish = true;
	conn_flush(c);
}

bool http_is_draining(const struct req *r)
{
	return r->conn->wp->draining;
}

/* Try to write everything queued. On a fatal socket error the connection
 * is closed (which aborts a request in progress). */
static void conn_flush(struct conn *c)
{
	if (c->dead || c->broken)
		return;
	for (;;) {
		size_t head_left = c->out.n - c->out_off;
		size_t body_left = c->out_body.n - c->out_body_off;
		if (!head_left && !body_left)
			break;
		ssize_t n;
		if (c->ssl) {
			const char *p;
			size_t len;
			if (head_left) {
				p = c->out.p + c->out_off;
				len = head_left;
			} else {
				p = c->out_body.p + c->out_body_off;
				len = body_left;
			}
			if (c->ssl_retry_len)
				len = c->ssl_retry_len;
			else if (len > CONN_SSL_WRITE_MAX)
				len = CONN_SSL_WRITE_MAX;
			ERR_clear_error();
			int w = SSL_write(c->ssl, p, (int)len);
			if (w <= 0) {
				int e = SSL_get_error(c->ssl, w);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
					c->ssl_retry_len = len;
					goto would_block;
				}
				goto broken;
			}
			c->ssl_retry_len = 0;
			n = w;
		} else {
			struct iovec iov[2];
			int cnt = 0;
			if (head_left)
				iov[cnt++] = (struct iovec){ c->out.p + c->out_off, head_left };
			if (body_left)
				iov[cnt++] = (struct iovec){ (void *)(c->out_body.p + c->out_body_off), body_left };
			n = writev(c->fd, iov, cnt);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					goto would_block;
				goto broken;
			}
		}
		size_t done = (size_t)n;
		size_t from_head = UMB_MIN(done, head_left);
		c->out_off += from_head;
		c->out_body_off += done - from_head;
		if (c->out_off == c->out.n) {
			c->out_off = 0;
			buf_reset(&c->out);
		}
		if (c->req)
			conn_set_deadline(c, (uint64_t)conn_limits(c)->write_timeout_ms);
	}
	/* everything written */
	c->out_body = STR_NULL;
	c->out_body_off = 0;
	if (c->write_armed) {
		event_del(c->ev_write);
		c->write_armed = false;
	}
	if (c->req && !c->req->finished && c->req->hooks.drain)
		c->req->hooks.drain(c->req);
	if (c->want_finish)
		conn_defer(c);
	return;
would_block:
	if (!c->write_armed) {
		event_add(c->ev_write, NULL);
		c->write_armed = true;
	}
	conn_set_deadline(c, (uint64_t)conn_limits(c)->write_timeout_ms);
	/* a producer that paused on high water is resumed from the drain hook */
	return;
broken:
	/* We may be deep inside an upstream callback: closing here would
	 * cancel the upstream transfer from within its own callback. Close
	 * from the defer queue instead, at the top of the loop. */
	c->broken = true;
	event_del(c->ev_read);
	event_del(c->ev_write);
	c->write_armed = false;
	conn_defer(c);
}

/* Answer a protocol-level error before any handler ran, then close. */
static void conn_fail(struct conn *c, int status, const char *type,
		      const char *code, const char *msg)
{
	if (!c->req) {
		struct arena *a = arena_new(1024);
		struct req *r = arena_alloc(a, sizeof *r);
		r->arena = a;
		r->w = &c->wp->w;
		r->conn = c;
		r->rt = c->wp->rt;
		atomic_fetch_add(&r->rt->refs, 1);
		r->t_start_ns = c->t_first_ns ? c->t_first_ns : clock_mono_ns();
		r->api = "other";
		r->model = "";
		memcpy(r->peer, c->peer, sizeof r->peer);
		api_request_id(r);
		c->req = r;
	} else if (c->head_base) {
		/* refused after its head was parsed: its views must survive
		 * whatever the client still sends (QA found a use-after-free
		 * in the request log line here) */
		conn_hand_over_input(c, c->in.n);
	}
	c->closing = true;
	c->state = CS_BUSY;
	api_error(c->req, status, type, code, "%s", msg);
}

/* ---- request framing ---- */

/* The parsed head holds views into c->in, which may move when it grows
 * while the body arrives: shift every view to the buffer's new base. */
static void head_rebase(struct http_request_head *h, const char *from, const char *to)
{
	if (from == to)
		return;
	uintptr_t f = (uintptr_t)from, t = (uintptr_t)to;
#define REBASE(s) do { if ((s).p) (s).p = (const char *)((uintptr_t)(s).p - f + t); } while (0)
	REBASE(h->method);
	REBASE(h->target);
	REBASE(h->path);
	REBASE(h->query);
	for (size_t i = 0; i < h->n_headers; i++) {
		REBASE(h->headers[i].name);
		REBASE(h->headers[i].value);
	}
#undef REBASE
}

static struct req *req_new(struct conn *c)
{
	struct arena *a = arena_new(8192);
	/* the head (~3 KiB) is copied in by the caller: zero only the rest */
	struct req *r = arena_alloc_raw(a, sizeof *r);
	memset(r, 0, offsetof(struct req, head));
	r->arena = a;
	r->w = &c->wp->w;
	r->conn = c;
	r->rt = c->wp->rt;
	atomic_fetch_add_explicit(&r->rt->refs, 1, memory_order_relaxed);
	r->t_start_ns = c->t_first_ns;
	r->tls = c->ssl != NULL;
	r->auth_conn = &c->auth;
	r->model = "";
	r->api = "other";
	memcpy(r->peer, c->peer, sizeof r->peer);
	return r;
}

/* The head and body are complete: hand the bytes to the request and
 * dispatch it. Pipelined bytes after the body stay with the connection. */
/* Give the request the input buffer its head (and body) views point into,
 * so that later reads on the connection can never move those bytes; the
 * first `consumed` bytes are the request's, the rest stay with the
 * connection. Used on dispatch and when a request is refused mid-body. */
static void conn_hand_over_input(struct conn *c, size_t consumed)
{
	struct req *r = c->req;
	head_rebase(&r->head, c->head_base, c->in.p);
	c->head_base = NULL;
	struct buf owned = c->in;
	size_t extra = owned.n - consumed;
	buf_init(&c->in, 0);
	if (extra)
		buf_append(&c->in, owned.p + consumed, extra);
	/* The request's views point into `owned`: it lives in the arena's
	 * cleanup list and dies with the request. */
	struct buf *keep = arena_alloc(r->arena, sizeof *keep);
	*keep = owned;
	arena_cleanup_add(r->arena, (arena_cleanup_cb)buf_clear, keep);
	c->lent = keep;
	if (c->chunked_body) {
		struct buf *cb = arena_alloc(r->arena, sizeof *cb);
		*cb = c->chunk_body;
		buf_init(&c->chunk_body, 0);
		arena_cleanup_add(r->arena, (arena_cleanup_cb)buf_clear, cb);
		r->body = buf_str(cb);
	}
}

/* The head and body are complete: hand the bytes to the request and
 * dispatch it. Pipelined bytes after the body stay with the connection. */
static void conn_dispatch(struct conn *c, size_t consumed)
{
	struct req *r = c->req;
	if (!c->chunked_body && r->head.content_length)
		r->body = str_make(c->in.p + c->head_len, r->head.content_length);
	conn_hand_over_input(c, consumed);
	c->state = CS_BUSY;
	conn_clear_deadline(c);
	c->requests++;
	api_dispatch(r);
}

/* Parse as much of the buffered input as the state allows. */
static void conn_process(struct conn *c)
{
	const struct cfg_limits *lim = conn_limits(c);
	while (!c->dead) {
		if (c->state == CS_HEAD) {
			if (c->in.n == 0)
				return;
			if (!c->t_first_ns) {
				c->t_first_ns = clock_mono_ns();
				conn_set_deadline(c, (uint64_t)lim->header_timeout_ms);
			}
			/* The parser keeps no state between calls: only re-run it
			 * when a new line ended, or a client sending a byte at a
			 * time would cost quadratic time. */
			if (c->in.n < lim->max_header_bytes &&
			    !memchr(c->in.p + c->head_scanned, '\n', c->in.n - c->head_scanned)) {
				c->head_scanned = c->in.n;
				return;
			}
			c->head_scanned = c->in.n;
			struct http_request_head tmp;
			int status = 0;
			int rc = http_parse_request(c->in.p, c->in.n, lim->max_header_bytes,
						    &tmp, &status);
			if (rc == UMB_AGAIN)
				return;
			if (rc < 0) {
				const char *m = status == 431 ? "request header fields too large"
					: status == 501 ? "unsupported transfer encoding"
					: status == 505 ? "HTTP version not supported"
					: "malformed HTTP request";
				conn_fail(c, status ? status : 400, "invalid_request_error",
					  status == 431 ? "request_too_large" : "invalid_request", m);
				return;
			}
			c->head_len = (size_t)rc;
			c->head_scanned = 0;
			c->head_base = c->in.p;
			struct req *r = req_new(c);
			r->head = tmp;
			c->req = r;
			api_request_id(r);
			if (tmp.has_content_length && tmp.content_length > lim->max_body_bytes) {
				conn_fail(c, 413, "invalid_request_error", "request_too_large",
					  "request body too large");
				return;
			}
			c->chunked_body = tmp.chunked;
			if (c->chunked_body) {
				http_chunked_init(&c->chunked);
				buf_clear(&c->chunk_body);
				buf_init(&c->chunk_body, lim->max_body_bytes);
			} else if (tmp.content_length) {
				/* one allocation for the whole body; views are
				 * rebased at dispatch if the buffer moved */
				size_t have = c->in.n - c->head_len;
				if (tmp.content_length > have &&
				    buf_reserve(&c->in, tmp.content_length - have)) {
					conn_fail(c, 413, "invalid_request_error", "request_too_large",
						  "request body too large");
					return;
				}
			}
			if (tmp.expect_continue && (tmp.chunked || tmp.content_length)) {
				buf_append_cstr(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
				conn_flush(c);
				if (c->dead)
					return;
			}
			c->state = CS_BODY;
			conn_set_deadline(c, (uint64_t)lim->body_timeout_ms);
		}
		if (c->state == CS_BODY) {
			struct req *r = c->req;
			if (c->chunked_body) {
				size_t used = 0;
				int rc = http_chunked_decode(&c->chunked, c->in.p + c->head_len,
							     c->in.n - c->head_len, &used,
							     &c->chunk_body);
				/* decoded input is dropped; the head stays in place */
				if (used) {
					memmove(c->in.p + c->head_len, c->in.p + c->head_len + used,
						c->in.n - c->head_len - used);
					c->in.n -= used;
					c->in.p[c->in.n] = 0;
				}
				if (rc == UMB_ETOOBIG) {
					conn_fail(c, 413, "invalid_request_error", "request_too_large",
						  "request body too large");
					return;
				}
				if (rc < 0) {
					conn_fail(c, 400, "invalid_request_error", "invalid_request",
						  "malformed chunked request body");
					return;
				}
				if (rc == 0)
					return;
				conn_dispatch(c, c->head_len);
			} else {
				size_t need = c->head_len + r->head.content_length;
				if (c->in.n < need)
					return;
				conn_dispatch(c, need);
			}
			continue;
		}
		if (c->state == CS_BUSY) {
			if (c->in.n > CONN_PIPELINE_MAX && !c->read_paused) {
				/* the client races ahead: stop reading until we
				 * catch up (disconnects are then seen on write) */
				event_del(c->ev_read);
				c->read_paused = true;
			}
			return;
		}
		return;
	}
}

static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct conn *c = arg;
	conn_enter(c);
	if (c->state == CS_HANDSHAKE) {
		ERR_clear_error();
		int rc = SSL_accept(c->ssl);
		if (rc != 1) {
			int e = SSL_get_error(c->ssl, rc);
			if (e == SSL_ERROR_WANT_READ) {
				goto out;
			} else if (e == SSL_ERROR_WANT_WRITE) {
				if (!c->write_armed) {
					event_add(c->ev_write, NULL);
					c->write_armed = true;
				}
				goto out;
			}
			log_debug("TLS handshake with %s failed: %s", c->peer,
				  ERR_reason_error_string(ERR_peek_last_error()));
			/* The alert (unknown CA, expired certificate) is on its
			 * way: close gently, or the reset that close() sends
			 * over unread input can destroy it before the client
			 * reads it. The session is dead: plain reads from now. */
			SSL_free(c->ssl);
			c->ssl = NULL;
			shutdown(c->fd, SHUT_WR);
			c->state = CS_LINGER;
			conn_set_deadline(c, 1000);
			goto out;
		}
		c->state = CS_HEAD;
		conn_set_deadline(c, (uint64_t)conn_limits(c)->keepalive_timeout_ms);
		/* OpenSSL verified it (SSL_VERIFY_PEER): only an accepted
		 * certificate gets here */
		X509 *peer = SSL_get0_peer_certificate(c->ssl);
		if (peer && SSL_get_verify_result(c->ssl) == X509_V_OK)
			auth_conn_set_cert(&c->auth, peer);
	}
	for (int rounds = 0; rounds < 16 && !c->dead; rounds++) {
		ssize_t n = conn_read_some(c);
		if (n == UMB_AGAIN)
			break;
		if (n <= 0) {
			conn_close(c);
			break;
		}
		if (c->state == CS_LINGER) {
			buf_reset(&c->in);
			continue;
		}
		if (c->state == CS_BODY)
			conn_set_deadline(c, (uint64_t)conn_limits(c)->body_timeout_ms);
		conn_process(c);
		if (c->state == CS_BUSY && c->read_paused)
			break;
		/* TLS may hold decrypted bytes the socket no longer signals */
		if (!c->ssl || !SSL_pending(c->ssl))
			if ((size_t)n < CONN_READ_CHUNK / 2)
				break;
	}
out:
	conn_leave(c);
}

static void conn_on_write(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct conn *c = arg;
	conn_enter(c);
	if (c->state == CS_HANDSHAKE) {
		event_del(c->ev_write);
		c->write_armed = false;
		conn_leave(c);
		conn_on_read(c->fd, EV_READ, c);
		return;
	}
	conn_flush(c);
	conn_leave(c);
}

static void conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct conn *c = arg;
	c->timer_armed = false;
	if (!c->deadline_ns)
		return;
	uint64_t now = clock_mono_ns();
	if (now < c->deadline_ns) {
		uint64_t left = c->deadline_ns - now;
		struct timeval tv = { (time_t)(left / 1000000000u),
				      (suseconds_t)(left % 1000000000u) / 1000 + 1 };
		event_add(c->ev_timer, &tv);
		c->timer_armed = true;
		c->timer_at_ns = c->deadline_ns;
		return;
	}
	conn_enter(c);
	switch (c->state) {
	case CS_HEAD:
		if (c->in.n == 0 && !c->t_first_ns) {
			conn_close(c); /* idle keep-alive connection */
			break;
		}
		/* a slow head is a slowloris */
		__attribute__((fallthrough));
	case CS_BODY:
		log_info("closing slow client %s (request %s not complete in time)",
			 c->peer, c->state == CS_HEAD ? "head" : "body");
		if (c->state == CS_HEAD || !c->req || c->req->head_sent) {
			conn_close(c);
		} else {
			conn_fail(c, 408, "invalid_request_error", "request_timeout",
				  "request body not received in time");
		}
		break;
	case CS_HANDSHAKE:
	case CS_LINGER:
		conn_close(c);
		break;
	case CS_BUSY:
		/* the client has not read its response in time */
		log_info("closing client %s: not reading its response", c->peer);
		conn_close(c);
		break;
	}
	conn_leave(c);
}

/* Log, count and free a finished request; continue with the next one. */
static void req_finalize(struct conn *c)
{
	struct req *r = c->req;
	c->req = NULL;
	c->want_finish = false;
	api_request_done(r);
	if (r->upstream_bound)
		metrics_inflight_add(c->wp->w.metrics, -1);
	/* Take the request's input buffer back for the next request on this
	 * connection: a client sending big bodies then reuses warm memory
	 * instead of a fresh allocation (and its page faults) each time. */
	if (c->lent && c->in.n == 0 && c->lent->cap <= ((size_t)1 << 20)) {
		buf_clear(&c->in);
		c->in = *c->lent;
		buf_reset(&c->in);
		buf_init(c->lent, 0); /* the arena's cleanup now frees nothing */
	}
	c->lent = NULL;
	runtime_release(r->rt);
	arena_free(r->arena);
	c->t_first_ns = 0;
	c->head_len = 0;
	c->head_base = NULL;
	c->chunked_body = false;
}

/* Close gracefully: shut our write side and discard what the client still
 * sends for a moment, so that a response sent before the request body was
 * read (413, 408) reaches the client instead of being lost to a reset. */
static void conn_linger(struct conn *c)
{
	if (c->ssl) {
		ERR_clear_error();
		SSL_shutdown(c->ssl);
	}
	shutdown(c->fd, SHUT_WR);
	c->state = CS_LINGER;
	buf_reset(&c->in);
	if (c->read_paused) {
		event_add(c->ev_read, NULL);
		c->read_paused = false;
	}
	conn_set_deadline(c, 2000);
}

static void worker_on_defer(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct worker_priv *wp = arg;
	while (wp->defer_head) {
		struct conn *c = wp->defer_head;
		wp->defer_head = c->defer_next;
		c->in_defer = false;
		conn_enter(c);
		if (!c->dead && c->broken) {
			conn_close(c);
		} else if (!c->dead && c->want_finish && c->out.n == 0 &&
			   c->out_body.n == c->out_body_off) {
			req_finalize(c);
			if (c->closing || wp->draining) {
				conn_linger(c);
			} else {
				c->state = CS_HEAD;
				conn_set_deadline(c, (uint64_t)conn_limits(c)->keepalive_timeout_ms);
				if (c->read_paused) {
					event_add(c->ev_read, NULL);
					c->read_paused = false;
				}
				conn_process(c);
			}
		}
		conn_leave(c);
	}
}

static void worker_on_accept(evutil_socket_t lfd, short what, void *arg)
{
	UMB_UNUSED(what);
	struct worker_priv *wp = arg;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				log_warn("accept: %s; pausing accepts", strerror(errno));
				event_del(wp->ev_listen);
				wp->accept_paused = true;
			}
			return;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct conn *c = umb_calloc(1, sizeof *c);
		c->wp = wp;
		c->fd = fd;
		buf_init(&c->in, 0);
		buf_init(&c->out, 0);
		buf_init(&c->chunk_body, 0);
		net_peer_name(&ss, c->peer, sizeof c->peer);
		c->ev_read = event_new(wp->w.base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
		c->ev_write = event_new(wp->w.base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
		c->ev_timer = evtimer_new(wp->w.base, conn_on_timer, c);
		c->next = wp->conns;
		if (wp->conns)
			wp->conns->prev = c;
		wp->conns = c;
		wp->n_conns++;
		metrics_connections_add(wp->w.metrics, 1);
		if (wp->rt->ssl_ctx) {
			c->ssl = SSL_new(wp->rt->ssl_ctx);
			SSL_set_fd(c->ssl, fd);
			c->state = CS_HANDSHAKE;
			conn_set_deadline(c, (uint64_t)conn_limits(c)->header_timeout_ms);
		} else {
			c->state = CS_HEAD;
			conn_set_deadline(c, (uint64_t)conn_limits(c)->keepalive_timeout_ms);
		}
		event_add(c->ev_read, NULL);
		if (wp->n_conns >= wp->max_conns) {
			log_warn("connection limit (%d per worker) reached; pausing accepts",
				 wp->max_conns);
			event_del(wp->ev_listen);
			wp->accept_paused = true;
			return;
		}
	}
}

/* ---- workers ---- */

static void worker_begin_drain(struct worker_priv *wp)
{
	if (wp->draining)
		return;
	wp->draining = true;
	if (wp->ev_listen) {
		event_free(wp->ev_listen);
		wp->ev_listen = NULL;
	}
	if (wp->listen_fd >= 0) {
		close(wp->listen_fd);
		wp->listen_fd = -1;
	}
	/* Idle keep-alive connections go now; busy ones after their request. */
	struct conn *c = wp->conns;
	while (c) {
		struct conn *next = c->next;
		if (c->state == CS_HEAD && c->in.n == 0 && !c->req) {
			conn_enter(c);
			conn_close(c);
			conn_leave(c);
		} else {
			c->closing = true;
		}
		c = next;
	}
}

/* The store's revision moved: close every connection whose identity or
 * key is now revoked or expired, cancelling its request (and upstream
 * stream) with it. Others are untouched. */
static void worker_sweep_revoked(struct worker_priv *wp)
{
	int64_t now = (int64_t)time(NULL);
	const struct config *cfg = wp->rt->cfg;
	struct conn *c = wp->conns;
	while (c) {
		struct conn *next = c->next;
		if ((c->auth.ident[0] || c->auth.has_cert) &&
		    auth_conn_revoked(wp->w.auth, cfg, &c->auth, now)) {
			log_info("closing connection %s of revoked %s%s%s", c->peer,
				 c->auth.ident[0] ? c->auth.ident : c->auth.cert.name,
				 c->auth.key_id[0] ? " key " : "", c->auth.key_id);
			conn_enter(c);
			conn_close(c);
			conn_leave(c);
		}
		c = next;
	}
}

static void worker_on_notify(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct worker_priv *wp = arg;
	int bits = atomic_exchange(&wp->notify, 0);
	if (bits & NOTIFY_RELOAD) {
		struct runtime *old = wp->rt;
		wp->rt = runtime_acquire();
		runtime_release(old);
	}
	if (bits & NOTIFY_DRAIN)
		worker_begin_drain(wp);
	if (bits & NOTIFY_REVOKED)
		worker_sweep_revoked(wp);
	if (bits & NOTIFY_STOP) {
		/* drain deadline passed: cut what is left */
		while (wp->conns) {
			struct conn *c = wp->conns;
			conn_enter(c);
			conn_close(c);
			conn_leave(c);
		}
	}
	if (wp->draining && wp->n_conns == 0)
		event_base_loopexit(wp->w.base, NULL);
}

static void worker_notify(struct worker_priv *wp, int bits)
{
	atomic_fetch_or(&wp->notify, bits);
	event_active(wp->ev_notify, 0, 0);
}

static void *worker_main(void *arg)
{
	struct worker_priv *wp = arg;
	signal(SIGPIPE, SIG_IGN);
	upstream_worker_init(&wp->w, wp->rt);
	wp->w.auth = auth_worker_new();
	event_base_dispatch(wp->w.base);
	upstream_worker_shutdown(&wp->w);
	auth_worker_free(wp->w.auth);
	wp->w.auth = NULL;
	return NULL;
}

/* A periodic tick on each worker exits the loop once drained. */
static void worker_on_tick(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct worker_priv *wp = arg;
	if (wp->draining && wp->n_conns == 0)
		event_base_loopexit(wp->w.base, NULL);
}

/* ---- main thread: signals, reload, drain ---- */

struct main_state {
	struct event_base *base;
	const char *config_path;
	bool draining;
	struct event *ev_drain_deadline, *ev_wait;
	struct auth_poller *poller;
	struct store *usage_store;  /* the main thread's handle for usage flushes */
	char usage_store_url[1024];
	bool usage_warned;
};

/* Write the pending usage rollups to the store (every second, and at
 * exit). A store that cannot be written keeps the rows for the next try
 * and is reported once until it works again. */
static void main_flush_usage(struct main_state *ms)
{
	struct store_usage *rows;
	size_t n = usage_acc_take(g_usage, &rows);
	if (!n)
		return;
	struct runtime *rt = runtime_acquire();
	const struct config *cfg = rt->cfg;
	if (ms->usage_store && strcmp(ms->usage_store_url, cfg->store_url)) {
		store_close(ms->usage_store); /* a reload moved the store */
		ms->usage_store = NULL;
	}
	struct store_err serr = { { 0 } };
	if (!ms->usage_store && store_open(cfg->store_url, cfg->dir, &ms->usage_store, &serr) == UMB_OK)
		snprintf(ms->usage_store_url, sizeof ms->usage_store_url, "%s", cfg->store_url);
	runtime_release(rt);
	int rc = ms->usage_store ? store_usage_add(ms->usage_store, rows, n) : UMB_ERR;
	if (rc != UMB_OK) {
		if (!ms->usage_warned)
			log_warn("usage: cannot write %zu rollup rows to the store (kept for the next try): %s",
				 n, ms->usage_store ? store_errmsg(ms->usage_store) : serr.msg);
		ms->usage_warned = true;
		usage_acc_putback(g_usage, rows, n);
	} else {
		ms->usage_warned = false;
	}
	free(rows);
}

static void main_on_usage(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	main_flush_usage(arg);
}

/* Revocation reaches this gateway through the store's revision. */
static void main_on_poll_store(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct main_state *ms = arg;
	struct runtime *rt = runtime_acquire();
	bool moved = auth_poll(ms->poller, rt->cfg);
	runtime_release(rt);
	if (moved) {
		for (int i = 0; i < g_n_workers; i++)
			worker_notify(&g_workers[i], NOTIFY_REVOKED);
		tunnel_revoked();
	}
}

static struct config *load_config(const char *path, struct config_err *err)
{
	return path ? config_load_file(path, err) : config_load_default(err);
}

static void main_on_reload(evutil_socket_t sig, short what, void *arg)
{
	UMB_UNUSED(sig);
	UMB_UNUSED(what);
	struct main_state *ms = arg;
	if (ms->draining)
		return;
	struct config_err cerr;
	struct config *cfg = load_config(ms->config_path, &cerr);
	if (!cfg) {
		log_error("reload failed, keeping the running config: %s", cerr.msg);
		return;
	}
	struct runtime *cur = runtime_acquire();
	if (strcmp(cfg->listen_host, cur->cfg->listen_host) || cfg->listen_port != cur->cfg->listen_port ||
	    cfg->workers != cur->cfg->workers)
		log_warn("reload: listen and workers changes take effect on restart");
	if (cfg->tunnel.enabled != cur->cfg->tunnel.enabled ||
	    (cfg->tunnel.enabled && (strcmp(cfg->tunnel.listen_host, cur->cfg->tunnel.listen_host) ||
				     cfg->tunnel.listen_port != cur->cfg->tunnel.listen_port)))
		log_warn("reload: adding, removing or moving tunnel.listen takes effect on restart");
	if (cfg->audit.enabled != cur->cfg->audit.enabled ||
	    (cfg->audit.enabled && (strcmp(cfg->audit.path, cur->cfg->audit.path) ||
				    !cfg->audit.key != !cur->cfg->audit.key ||
				    (cfg->audit.key && strcmp(cfg->audit.key, cur->cfg->audit.key)))))
		log_warn("reload: audit changes take effect on restart (the log keeps its file and key)");
	char err[512];
	struct runtime *rt = runtime_build(cfg, cur, err, sizeof err);
	runtime_release(cur);
	if (!rt) {
		log_error("reload failed, keeping the running config: %s", err);
		return;
	}
	log_min_level = rt->cfg->log_level;
	runtime_publish(rt);
	upstream_health_runtime(ms->base, rt);
	for (int i = 0; i < g_n_workers; i++)
		worker_notify(&g_workers[i], NOTIFY_RELOAD);
	tunnel_reload();
	log_info("config reloaded from %s", ms->config_path ? ms->config_path : "<embedded>");
}

static void main_on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	UMB_UNUSED(arg);
	log_warn("drain timeout: closing remaining connections");
	for (int i = 0; i < g_n_workers; i++)
		worker_notify(&g_workers[i], NOTIFY_STOP);
}

static void main_on_term(evutil_socket_t sig, short what, void *arg)
{
	UMB_UNUSED(what);
	struct main_state *ms = arg;
	if (ms->draining) {
		log_warn("second signal: stopping now");
		main_on_drain_deadline(-1, 0, NULL);
		return;
	}
	ms->draining = true;
	int ms_grace = g_rt->cfg->limits.drain_timeout_ms;
	log_info("signal %d: draining (up to %d ms)", (int)sig, ms_grace);
	for (int i = 0; i < g_n_workers; i++)
		worker_notify(&g_workers[i], NOTIFY_DRAIN);
	tunnel_drain(); /* GOAWAY: streams in flight finish, no new ones */
	upstream_health_stop();
	struct timeval tv = { ms_grace / 1000, (ms_grace % 1000) * 1000 };
	ms->ev_drain_deadline = evtimer_new(ms->base, main_on_drain_deadline, NULL);
	evtimer_add(ms->ev_drain_deadline, &tv);
}

/* Large request bodies (hundreds of KB, many at once) leave glibc with
 * free heap pages it keeps: RSS would ratchet up with every burst. The
 * main thread hands them back every few seconds (malloc_trim releases
 * free pages inside every arena, not only at the top). */
static void main_on_trim(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	UMB_UNUSED(arg);
	malloc_trim(64 * 1024);
}

/* Workers exit their loops when drained; the main loop waits for that. */
static void *joiner_main(void *arg)
{
	struct main_state *ms = arg;
	for (int i = 0; i < g_n_workers; i++)
		pthread_join(g_workers[i].thread, NULL);
	event_base_loopbreak(ms->base);
	return NULL;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int http_serve(const struct serve_opts *opts)
{
	struct config_err cerr;
	struct config *cfg = load_config(opts->config_path, &cerr);
	if (!cfg) {
		fprintf(stderr, "umbra: %s\n", cerr.msg);
		return 2;
	}
	log_min_level = cfg->log_level;
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	evthread_use_pthreads();
	SSL_library_init();
	upstream_global_init();

	char err[512];
	g_usage = usage_acc_new();
	g_spend = spend_ledger_new();
	if (cfg->audit.enabled) {
		const struct cfg_audit *a = &cfg->audit;
		struct audit_opts ao = {
			.path = a->path, .key_path = a->key, .max_bytes = a->max_bytes,
			.keep = a->keep, .checkpoint_every = a->checkpoint_every,
			.checkpoint_interval_ms = a->checkpoint_interval_s * 1000,
			.fsync = a->fsync == AUDIT_SYNC_ALWAYS ? AUDIT_FSYNC_ALWAYS
				 : a->fsync == AUDIT_SYNC_NEVER ? AUDIT_FSYNC_NEVER : AUDIT_FSYNC_INTERVAL,
			.fsync_interval_ms = a->fsync_interval_ms,
		};
		g_audit = audit_open(&ao, err, sizeof err);
		if (!g_audit) {
			fprintf(stderr, "umbra: audit log %s: %s\n", a->path, err);
			config_free(cfg);
			return 2;
		}
	}
	struct runtime *rt = runtime_build(cfg, NULL, err, sizeof err);
	if (!rt) {
		fprintf(stderr, "umbra: %s\n", err);
		return 2;
	}
	runtime_publish(rt);
	cfg = rt->cfg;
	if (tunnel_start(rt, err, sizeof err)) {
		fprintf(stderr, "umbra: %s\n", err);
		return 2;
	}

	int n = cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > 64)
		n = 64;
	g_n_workers = n;
	g_workers = umb_calloc((size_t)n, sizeof *g_workers);
	metrics_init(n + 1); /* the last shard is the main thread's */

	for (int i = 0; i < n; i++) {
		struct worker_priv *wp = &g_workers[i];
		wp->w.idx = i;
		wp->w.base = event_base_new();
		wp->w.metrics = metrics_shard_get(i);
		wp->rt = runtime_acquire();
		wp->max_conns = UMB_MAX(1, cfg->limits.max_connections / n);
		wp->listen_fd = net_listen("listen", cfg->listen_host, cfg->listen_port, true, 4096,
					   err, sizeof err);
		if (wp->listen_fd < 0) {
			fprintf(stderr, "umbra: %s\n", err);
			return 1;
		}
		wp->ev_listen = event_new(wp->w.base, wp->listen_fd, EV_READ | EV_PERSIST,
					  worker_on_accept, wp);
		event_add(wp->ev_listen, NULL);
		wp->ev_notify = event_new(wp->w.base, -1, 0, worker_on_notify, wp);
		wp->ev_defer = event_new(wp->w.base, -1, 0, worker_on_defer, wp);
		wp->ev_tick = event_new(wp->w.base, -1, EV_PERSIST, worker_on_tick, wp);
		struct timeval tv = { 0, 200000 };
		event_add(wp->ev_tick, &tv);
	}

	struct main_state ms = { .base = event_base_new(), .config_path = opts->config_path };
	struct event *ev_term = evsignal_new(ms.base, SIGTERM, main_on_term, &ms);
	struct event *ev_int = evsignal_new(ms.base, SIGINT, main_on_term, &ms);
	struct event *ev_hup = evsignal_new(ms.base, SIGHUP, main_on_reload, &ms);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);
	event_add(ev_hup, NULL);
	upstream_health_start(ms.base, rt, metrics_shard_get(n));
	struct event *ev_trim = event_new(ms.base, -1, EV_PERSIST, main_on_trim, NULL);
	struct timeval trim_every = { 5, 0 };
	event_add(ev_trim, &trim_every);
	ms.poller = auth_poller_new();
	main_on_poll_store(-1, 0, &ms); /* workers start with the current revision */
	struct event *ev_poll = event_new(ms.base, -1, EV_PERSIST, main_on_poll_store, &ms);
	struct timeval poll_every = { 0, AUTH_POLL_MS * 1000 };
	event_add(ev_poll, &poll_every);
	struct event *ev_usage = event_new(ms.base, -1, EV_PERSIST, main_on_usage, &ms);
	struct timeval usage_every = { 1, 0 };
	event_add(ev_usage, &usage_every);

	for (int i = 0; i < n; i++)
		pthread_create(&g_workers[i].thread, NULL, worker_main, &g_workers[i]);
	pthread_t joiner;
	pthread_create(&joiner, NULL, joiner_main, &ms);

	char fields[256];
	snprintf(fields, sizeof fields,
		 "\"listen\":\"%s:%d\",\"tls\":%s,\"workers\":%d,\"config\":\"%s\",\"version\":\"%s\"",
		 cfg->listen_host, cfg->listen_port, cfg->tls.enabled ? "true" : "false", n,
		 opts->config_path ? opts->config_path : "<embedded>", UMBRA_VERSION);
	log_emit(LOG_INFO, fields, "listening");

	event_base_dispatch(ms.base);
	pthread_join(joiner, NULL);
	upstream_health_stop();
	tunnel_stop();

	/* orderly teardown so leak checkers see a clean exit */
	for (int i = 0; i < n; i++) {
		struct worker_priv *wp = &g_workers[i];
		runtime_release(wp->rt);
		if (wp->ev_listen)
			event_free(wp->ev_listen);
		if (wp->listen_fd >= 0)
			close(wp->listen_fd);
		event_free(wp->ev_notify);
		event_free(wp->ev_defer);
		event_free(wp->ev_tick);
		event_base_free(wp->w.base);
	}
	free(g_workers);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_hup);
	event_free(ev_trim);
	event_free(ev_poll);
	event_free(ev_usage);
	main_flush_usage(&ms); /* the workers are done: the last rows */
	spend_ledger_free(g_spend, ms.usage_store); /* unused leases back to the store */
	g_spend = NULL;
	store_close(ms.usage_store);
	auth_poller_free(ms.poller);
	if (ms.ev_drain_deadline)
		event_free(ms.ev_drain_deadline);
	event_base_free(ms.base);
	pthread_mutex_lock(&g_rt_lock);
	struct runtime *last = g_rt;
	g_rt = NULL;
	pthread_mutex_unlock(&g_rt_lock);
	runtime_release(last);
	audit_close(g_audit); /* after every request is done: a final checkpoint */
	g_audit = NULL;
	usage_acc_free(g_usage);
	g_usage = NULL;
	metrics_shutdown();
	upstream_global_cleanup();
	log_info("stopped");
	return 0;
}
