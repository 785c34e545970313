/* h1.c — a lean HTTP/1.1 client for plain upstreams (http:// with an IP
 * literal host, unix://): the on-prem hot path.
 *
 * Why not libcurl here: counted with callgrind, curl spent ~80K
 * instructions per proxied request against ~30K for all of umbra's own
 * work, which alone would cap throughput far below nginx's on the same
 * cores (docs/decisions.md, "Upstream HTTP client"). curl stays for
 * https://, host names (asynchronous DNS) and health checks.
 *
 * The client speaks curl's callback contract (header lines, write
 * callback with CURL_WRITEFUNC_PAUSE/ERROR, a CURLcode at the end) so the
 * forwarding logic in forward.c is one code path for both.
 *
 * Connections are kept per worker and per endpoint (LIFO idle list); a
 * reused connection that turns out to be closed before any response byte
 * arrived is retried once on a fresh one, transparently. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "http/http_parse.h"
#include "upstream/upstream_int.h"

#define H1_READ_CHUNK 16384
#define H1_MAX_HEAD 65536

struct h1_conn {
	struct h1_pool *pool;
	int fd;
	/* Both persistent for the connection's life: re-registering events
	 * per request cost four epoll_ctl calls each time. ev_write is only
	 * added while connecting or while a send would block. */
	struct event *ev_read, *ev_write;
	bool write_armed;
	struct h1_conn *next;   /* idle list */
	struct h1_xfer *x;      /* current exchange, NULL when idle */
};

struct h1_pool {
	struct h1_pool *next;
	char *key;              /* origin + unix path */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char *hostport;         /* Host header */
	char *prefix;           /* path prefix from the URL */
	struct h1_conn *idle;
	int n_idle, max_idle; /* max_idle: the provider's keepalive (last seen) */
	struct event_base *base;
};

enum h1_state { H1_CONNECTING, H1_SENDING, H1_HEAD, H1_BODY, H1_DONE };

struct h1_xfer {
	struct h1_pool *pool;
	struct h1_conn *c;
	struct h1_req rq;
	enum h1_state st;
	bool reused, retried, paused, resume_pending, got_byte, keep_alive;
	CURLcode early; /* failure found inside upstream__h1_start, reported later */
	struct event *ev_connect_timer;
	/* request */
	char *head;
	size_t head_len, body_len, sent;
	/* response */
	struct buf in;            /* unparsed response bytes */
	enum { BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE, BODY_NONE } framing;
	uint64_t remaining;
	struct http_chunked chunked;
	struct buf decoded;       /* chunked payload handed to on_data */
	bool chunk_done;          /* the last chunk was decoded */
};

/* ---- pools ---- */

static void conn_free(struct h1_conn *c)
{
	if (c->ev_read)
		event_free(c->ev_read);
	if (c->ev_write)
		event_free(c->ev_write);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

/* An idle connection became readable: the server closed it (or sent
 * junk we never asked for). Either way it is gone. */
static void idle_on_read(struct h1_conn *c)
{
	struct h1_pool *p = c->pool;
	for (struct h1_conn **pp = &p->idle; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			p->n_idle--;
			break;
		}
	}
	conn_free(c);
}

static void pool_put(struct h1_pool *p, struct h1_conn *c)
{
	c->x = NULL;
	if (p->n_idle >= p->max_idle) {
		conn_free(c);
		return;
	}
	if (c->write_armed) {
		event_del(c->ev_write);
		c->write_armed = false;
	}
	c->next = p->idle;
	p->idle = c;
	p->n_idle++;
}

static struct h1_conn *pool_take(struct h1_pool *p)
{
	struct h1_conn *c = p->idle;
	if (!c)
		return NULL;
	p->idle = c->next;
	p->n_idle--;
	c->next = NULL;
	return c;
}

bool upstream__h1_eligible(const struct cfg_endpoint *ep)
{
	if (ep->scheme == SCHEME_UNIX)
		return true;
	if (ep->scheme != SCHEME_HTTP)
		return false;
	/* only IP literals: a name would need a blocking resolver here */
	const char *h = ep->origin + strlen("http://");
	char host[64];
	size_t n = 0;
	if (*h == '[') {
		h++;
		while (*h && *h != ']' && n < sizeof host - 1)
			host[n++] = *h++;
		host[n] = 0;
		struct in6_addr a6;
		return inet_pton(AF_INET6, host, &a6) == 1;
	}
	while (*h && *h != ':' && *h != '/' && n < sizeof host - 1)
		host[n++] = *h++;
	host[n] = 0;
	struct in_addr a4;
	return inet_pton(AF_INET, host, &a4) == 1;
}

/* Parse the endpoint's origin into an address, Host value and prefix. */
static struct h1_pool *pool_new(struct event_base *base, const struct cfg_endpoint *ep,
				const char *key)
{
	struct h1_pool *p = umb_calloc(1, sizeof *p);
	p->base = base;
	p->key = umb_strdup(key);
	const char *o = ep->origin + strlen("http://");
	const char *slash = strchr(o, '/');
	size_t hostport_len = slash ? (size_t)(slash - o) : strlen(o);
	p->hostport = umb_strndup(o, hostport_len);
	p->prefix = umb_strdup(slash ? slash : "");
	if (ep->scheme == SCHEME_UNIX) {
		struct sockaddr_un *un = (struct sockaddr_un *)&p->addr;
		un->sun_family = AF_UNIX;
		snprintf(un->sun_path, sizeof un->sun_path, "%s", ep->unix_path);
		p->addrlen = sizeof *un;
		return p;
	}
	char host[64] = "";
	int port = 80;
	const char *h = p->hostport;
	if (*h == '[') {
		const char *end = strchr(h, ']');
		size_t n = end ? (size_t)(end - h - 1) : 0;
		memcpy(host, h + 1, UMB_MIN(n, sizeof host - 1));
		if (end && end[1] == ':')
			port = atoi(end + 2);
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&p->addr;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, host, &s6->sin6_addr);
		p->addrlen = sizeof *s6;
	} else {
		const char *colon = strchr(h, ':');
		size_t n = colon ? (size_t)(colon - h) : strlen(h);
		memcpy(host, h, UMB_MIN(n, sizeof host - 1));
		if (colon)
			port = atoi(colon + 1);
		struct sockaddr_in *s4 = (struct sockaddr_in *)&p->addr;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, host, &s4->sin_addr);
		p->addrlen = sizeof *s4;
	}
	return p;
}

struct h1_pool *upstream__h1_pool(struct h1_pool **list, struct event_base *base,
				  const struct cfg_endpoint *ep)
{
	char key[512];
	snprintf(key, sizeof key, "%s|%s", ep->origin, ep->unix_path ? ep->unix_path : "");
	for (struct h1_pool *p = *list; p; p = p->next)
		if (!strcmp(p->key, key))
			return p;
	struct h1_pool *p = pool_new(base, ep, key);
	p->next = *list;
	*list = p;
	return p;
}

void upstream__h1_pools_free(struct h1_pool *list)
{
	while (list) {
		struct h1_pool *next = list->next;
		while (list->idle) {
			struct h1_conn *c = pool_take(list);
			conn_free(c);
		}
		free(list->key);
		free(list->hostport);
		free(list->prefix);
		free(list);
		list = next;
	}
}

/* ---- an exchange ---- */

static void x_on_event(struct h1_xfer *x, evutil_socket_t fd, short what);

static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(what);
	struct h1_conn *c = arg;
	if (c->x)
		x_on_event(c->x, fd, EV_READ);
	else
		idle_on_read(c);
}

static void conn_on_write(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(what);
	struct h1_conn *c = arg;
	if (c->x)
		x_on_event(c->x, fd, EV_WRITE);
}

static void conn_want_write(struct h1_conn *c, bool on)
{
	if (on != c->write_armed) {
		if (on)
			event_add(c->ev_write, NULL);
		else
			event_del(c->ev_write);
		c->write_armed = on;
	}
}
static bool x_process(struct h1_xfer *x);

static void x_free(struct h1_xfer *x)
{
	if (x->ev_connect_timer)
		event_free(x->ev_connect_timer);
	buf_clear(&x->in);
	buf_clear(&x->decoded);
	free(x->head);
	free(x);
}

/* Finish: release the connection, free the exchange, then tell the
 * owner (who must not touch x afterwards — it is gone). */
static void x_done(struct h1_xfer *x, CURLcode code)
{
	struct h1_conn *c = x->c;
	if (c) {
		c->x = NULL;
		if (code == CURLE_OK && x->keep_alive && x->in.n == 0)
			pool_put(x->pool, c);
		else
			conn_free(c);
	}
	struct h1_req rq = x->rq;
	x_free(x);
	rq.on_done(rq.ctx, code);
}

static int x_connect(struct h1_xfer *x)
{
	struct h1_pool *p = x->pool;
	struct h1_conn *c = umb_calloc(1, sizeof *c);
	c->pool = p;
	c->fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		free(c);
		return UMB_ERR;
	}
	if (p->addr.ss_family != AF_UNIX) {
		int one = 1;
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	c->x = x;
	x->c = c;
	x->reused = false;
	int rc = connect(c->fd, (struct sockaddr *)&p->addr, p->addrlen);
	if (rc < 0 && errno != EINPROGRESS && errno != EAGAIN)
		return UMB_ERR; /* refused at once (unix socket, local port) */
	x->st = rc == 0 ? H1_SENDING : H1_CONNECTING;
	c->ev_read = event_new(p->base, c->fd, EV_READ | EV_PERSIST, conn_on_read, c);
	c->ev_write = event_new(p->base, c->fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
	event_add(c->ev_read, NULL);
	if (x->st == H1_CONNECTING)
		conn_want_write(c, true);
	if (x->st == H1_CONNECTING) {
		struct timeval tv = { x->rq.connect_timeout_ms / 1000,
				      (x->rq.connect_timeout_ms % 1000) * 1000 };
		evtimer_add(x->ev_connect_timer, &tv);
	}
	return UMB_OK;
}

/* A reused connection failed before any response byte: the server had
 * closed it while idle. Try once more on a fresh connection. */
static bool x_retry_stale(struct h1_xfer *x)
{
	if (!x->reused || x->got_byte || x->retried)
		return false;
	x->retried = true;
	conn_free(x->c);
	x->c = NULL;
	x->sent = 0;
	buf_reset(&x->in);
	if (x_connect(x)) {
		x_done(x, CURLE_COULDNT_CONNECT);
		return true;
	}
	return true;
}

static void x_fail(struct h1_xfer *x, CURLcode code)
{
	if (x_retry_stale(x))
		return;
	x_done(x, code);
}

static void x_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct h1_xfer *x = arg;
	if (x->early)
		x_done(x, x->early);
	else if (x->st == H1_CONNECTING)
		x_done(x, CURLE_OPERATION_TIMEDOUT);
}

/* Write the head and body; the body is never copied. From inside
 * upstream__h1_start (in_caller) errors are left for the event loop to
 * find again, so that no callback runs inside the caller. */
static void x_send(struct h1_xfer *x, bool in_caller)
{
	while (x->sent < x->head_len + x->body_len) {
		/* the head, then the body's pieces, from where we stopped */
		struct iovec iov[1 + UMB_ARRAY_LEN(x->rq.parts)];
		int n = 0;
		size_t skip = x->sent;
		if (skip < x->head_len)
			iov[n++] = (struct iovec){ x->head + skip, x->head_len - skip };
		skip = skip > x->head_len ? skip - x->head_len : 0;
		for (size_t i = 0; i < x->rq.n_parts; i++) {
			struct str part = x->rq.parts[i];
			if (skip >= part.n) {
				skip -= part.n;
				continue;
			}
			iov[n++] = (struct iovec){ (void *)(part.p + skip), part.n - skip };
			skip = 0;
		}
		ssize_t w = writev(x->c->fd, iov, n);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR || in_caller) {
				conn_want_write(x->c, true);
				return;
			}
			x_fail(x, CURLE_SEND_ERROR);
			return;
		}
		x->sent += (size_t)w;
	}
	/* all sent: only reads from now on */
	x->st = H1_HEAD;
	conn_want_write(x->c, false);
	if (x->in.n && !in_caller)
		x_process(x); /* the server answered before we finished */
}

static bool x_header_line(void *ctx, const char *line, size_t len)
{
	struct h1_xfer *x = ctx;
	return x->rq.on_header((char *)line, 1, len, x->rq.ctx) == len;
}

/* Hand the response head to the owner as curl would (status line, each
 * header line, the empty line) and set up the body framing. */
static bool x_parse_head(struct h1_xfer *x, size_t head_len)
{
	struct http_response_head h;
	if (http_parse_response(x->in.p, head_len, &h, x_header_line, x))
		return false;
	if (h.status < 200) {
		/* interim response: drop it and wait for the real one */
		buf_consume(&x->in, head_len);
		return true;
	}
	x->keep_alive = h.keep_alive;
	if (h.status == 204 || h.status == 304) {
		x->framing = BODY_NONE;
	} else if (h.chunked) {
		if (h.has_content_length)
			return false; /* both framings: a smuggling shape */
		x->framing = BODY_CHUNKED;
		http_chunked_init(&x->chunked);
	} else if (h.has_content_length) {
		x->framing = BODY_LENGTH;
		x->remaining = h.content_length;
	} else {
		x->framing = BODY_CLOSE;
		x->keep_alive = false;
	}
	buf_consume(&x->in, head_len);
	x->st = H1_BODY;
	return true;
}

/* Deliver body bytes; false when the owner paused or aborted (x may be
 * gone in the abort case only via the returned code). */
static int x_deliver(struct h1_xfer *x, const char *p, size_t n)
{
	if (!n)
		return 0;
	size_t r = x->rq.on_data((char *)p, 1, n, x->rq.ctx);
	if (r == CURL_WRITEFUNC_PAUSE) {
		/* backpressure: stop reading until the owner resumes us */
		event_del(x->c->ev_read);
		return 1;
	}
	if (r != n)
		return -1;
	return 0;
}

/* Process buffered input. Returns true if x still exists. */
static bool x_process(struct h1_xfer *x)
{
	for (;;) {
		if (x->st == H1_HEAD) {
			char *e = x->in.n >= 4 ? memmem(x->in.p, x->in.n, "\r\n\r\n", 4) : NULL;
			if (!e) {
				if (x->in.n > H1_MAX_HEAD) {
					x_done(x, CURLE_WEIRD_SERVER_REPLY);
					return false;
				}
				return true;
			}
			if (!x_parse_head(x, (size_t)(e - x->in.p) + 4)) {
				x_done(x, CURLE_WEIRD_SERVER_REPLY);
				return false;
			}
			continue;
		}
		if (x->st != H1_BODY || x->paused)
			return true;
		if (x->framing == BODY_NONE) {
			x_done(x, x->in.n ? CURLE_WEIRD_SERVER_REPLY : CURLE_OK);
			return false;
		}
		if (x->framing == BODY_CHUNKED) {
			/* decode only when the previous delivery went through:
			 * a paused one is retried first, and the end of the body
			 * (chunk_done) survives the pause */
			if (!x->decoded.n && !x->chunk_done) {
				if (!x->in.n)
					return true;
				size_t used = 0;
				int rc = http_chunked_decode(&x->chunked, x->in.p, x->in.n, &used,
							     &x->decoded);
				buf_consume(&x->in, used);
				if (rc < 0) {
					x_done(x, CURLE_WEIRD_SERVER_REPLY);
					return false;
				}
				x->chunk_done = rc == 1;
			}
			int d = x_deliver(x, x->decoded.p, x->decoded.n);
			if (d < 0) {
				x_done(x, CURLE_WRITE_ERROR);
				return false;
			}
			if (d > 0) {
				x->paused = true;
				return true;
			}
			buf_reset(&x->decoded);
			if (x->chunk_done) {
				x_done(x, x->in.n ? CURLE_WEIRD_SERVER_REPLY : CURLE_OK);
				return false;
			}
			return true;
		}
		/* length- or close-delimited */
		size_t n = x->in.n;
		if (x->framing == BODY_LENGTH && n > x->remaining)
			n = (size_t)x->remaining;
		int d = x_deliver(x, x->in.p, n);
		if (d < 0) {
			x_done(x, CURLE_WRITE_ERROR);
			return false;
		}
		if (d > 0) {
			x->paused = true;
			return true;
		}
		buf_consume(&x->in, n);
		if (x->framing == BODY_LENGTH) {
			x->remaining -= n;
			if (x->remaining == 0) {
				x_done(x, x->in.n ? CURLE_WEIRD_SERVER_REPLY : CURLE_OK);
				return false;
			}
		}
		return true;
	}
}

static void x_on_event(struct h1_xfer *x, evutil_socket_t fd, short what)
{
	/* a refused connect may be reported as readable only */
	if (x->st == H1_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof err;
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			x_done(x, CURLE_COULDNT_CONNECT);
			return;
		}
		evtimer_del(x->ev_connect_timer);
		x->st = H1_SENDING;
	}
	if (x->st != H1_SENDING && x->st != H1_CONNECTING)
		conn_want_write(x->c, false);
	if (x->st == H1_SENDING && (what & EV_WRITE)) {
		x_send(x, false);
		return;
	}
	if (x->resume_pending) {
		/* resumed: deliver what is held before reading more */
		x->resume_pending = false;
		x->paused = false;
		if (!x_process(x) || x->paused)
			return;
	}
	if (!(what & EV_READ))
		return;
	for (int rounds = 0; rounds < 8; rounds++) {
		if (buf_reserve(&x->in, H1_READ_CHUNK)) {
			x_done(x, CURLE_OUT_OF_MEMORY);
			return;
		}
		ssize_t n = recv(fd, x->in.p + x->in.n, x->in.cap - x->in.n - 1, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			x_fail(x, x->got_byte ? CURLE_RECV_ERROR : CURLE_GOT_NOTHING);
			return;
		}
		if (n == 0) {
			if (x->st == H1_BODY && x->framing == BODY_CLOSE) {
				x_done(x, CURLE_OK);
			} else if (!x->got_byte) {
				x_fail(x, CURLE_GOT_NOTHING);
			} else {
				x_done(x, x->st == H1_BODY ? CURLE_PARTIAL_FILE : CURLE_RECV_ERROR);
			}
			return;
		}
		x->got_byte = true;
		x->in.n += (size_t)n;
		if (!x_process(x) || x->paused)
			return;
		if ((size_t)n < H1_READ_CHUNK / 2)
			return;
	}
}

struct h1_xfer *upstream__h1_start(struct h1_pool *p, const struct h1_req *rq)
{
	struct h1_xfer *x = umb_calloc(1, sizeof *x);
	x->pool = p;
	x->rq = *rq;
	p->max_idle = rq->keepalive; /* follows config reloads */
	buf_init(&x->in, 0);
	buf_init(&x->decoded, 0);
	x->ev_connect_timer = evtimer_new(p->base, x_connect_timeout, x);
	/* the request head, formatted once */
	struct buf h;
	buf_init(&h, 0);
	char num[24];
	buf_append_lit(&h, "POST ");
	buf_append_cstr(&h, p->prefix);
	buf_append_str(&h, rq->path);
	buf_append_lit(&h, " HTTP/1.1\r\nHost: ");
	buf_append_cstr(&h, p->hostport);
	buf_append_lit(&h, "\r\nContent-Length: ");
	for (size_t i = 0; i < rq->n_parts; i++)
		x->body_len += rq->parts[i].n;
	buf_append(&h, num, fmt_u64(num, x->body_len));
	buf_append_lit(&h, "\r\n");
	for (size_t i = 0; i < rq->n_headers; i++) {
		const char *hd = rq->headers[i];
		const char *colon = strchr(hd, ':');
		if (!colon || colon[1] == 0)
			continue; /* "Name:" means "do not send" in curl's convention */
		buf_append_cstr(&h, hd);
		buf_append(&h, "\r\n", 2);
	}
	buf_append(&h, "\r\n", 2);
	x->head = h.p;
	x->head_len = h.n;
	struct h1_conn *c = pool_take(p);
	if (c) {
		c->x = x;
		x->c = c;
		x->reused = true;
		x->st = H1_SENDING;
	} else if (x_connect(x)) {
		/* refused at once: report from the loop, never inside the caller */
		x->early = CURLE_COULDNT_CONNECT;
		struct timeval tv = { 0, 0 };
		evtimer_add(x->ev_connect_timer, &tv);
		return x;
	}
	if (x->st == H1_SENDING)
		x_send(x, true); /* usually all of it, saving a loop round */
	return x;
}

void upstream__h1_cancel(struct h1_xfer *x)
{
	if (!x)
		return;
	if (x->c) {
		x->c->x = NULL;
		conn_free(x->c); /* mid-exchange: the connection cannot be reused */
	}
	x_free(x);
}

void upstream__h1_resume(struct h1_xfer *x)
{
	if (x && x->paused && x->c && !x->resume_pending) {
		x->resume_pending = true;
		event_add(x->c->ev_read, NULL);
		event_active(x->c->ev_read, EV_READ, 0);
	}
}
