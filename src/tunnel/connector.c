/* connector.c — `umbra connect`: the connector side of the dark-service
 * tunnel (docs/tunnel.md).
 *
 * One libevent loop, one thread. For every configured gateway the
 * connector keeps one outgoing TLS 1.3 connection (client certificate,
 * ALPN h2, the gateway verified against identity.ca alone) and runs an
 * nghttp2 *server* session on it: the gateway opens the streams. Each
 * stream names a service in :authority and is forwarded over HTTP/1.1 to
 * that service's local upstream with libcurl multi on the same loop; the
 * response head and body go back as HEADERS and DATA as they arrive.
 *
 * A gateway connection moves through IDLE (waiting for its backoff timer)
 * → TCP (non-blocking connect) → TLS (handshake) → UP (HTTP/2) and back to
 * IDLE on any failure; `timer` is the backoff in IDLE and the connect
 * deadline in TCP/TLS, `ping_timer`/`ping_deadline` guard UP.
 *
 * Re-entrancy rules:
 *  - nghttp2 callbacks only record state, submit frames and free streams
 *    (freeing a stream removes its curl handle: allowed, no curl callback
 *    is running then). They never close the connection.
 *  - curl callbacks (header/write) only queue bytes and submit frames;
 *    they never write to the socket nor free anything. They "kick" the
 *    connection: a zero-delay event that flushes from the loop.
 *  - the curl done callback runs from the multi's info loop, where
 *    removing the easy handle is allowed; it kicks too.
 *  - only loop callbacks (socket, timers, kick, signals) close
 *    connections.
 *
 * The connector binds and listens on nothing: it only calls connect(). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config/config.h"
#include "core/json.h"
#include "identity/pki.h"
#include "tunnel/connector.h"
#include "upstream/upstream_int.h"

/* A stream with more than this queued for the tunnel pauses its upstream
 * read (docs/tunnel.md point 6); it resumes below the low mark, half of
 * it, so a slow gateway does not make us pause and resume every chunk. */
#define CONNECTOR_HIGH_WATER (256 * 1024)
#define CONNECTOR_LOW_WATER (CONNECTOR_HIGH_WATER / 2)
/* Hard cap of one stream's queue: the pause keeps it near the high mark,
 * this only catches a runaway. */
#define CONNECTOR_OUT_MAX (4 * 1024 * 1024)
/* Concurrent streams the gateway may open on one connection (the
 * gateway's default tunnel.max_streams). */
#define CONNECTOR_MAX_STREAMS 1000
/* Request bodies are buffered: one stream's cap (413 beyond) and the
 * total of one connection (RST_STREAM REFUSED_STREAM beyond). */
#define CONNECTOR_MAX_BODY (32u * 1024 * 1024)
#define CONNECTOR_MAX_BODIES (256u * 1024 * 1024)
/* Request and response head caps (RST_STREAM / 502 beyond). */
#define CONNECTOR_MAX_HEAD (64 * 1024)
#define CONNECTOR_MAX_PATH (16 * 1024)
#define CONNECTOR_MAX_RESP_HEADERS 128
/* Stop pulling frames from nghttp2 when this much waits for the socket. */
#define CONNECTOR_WBUF_HIGH (64 * 1024)
/* Receive windows we grant the gateway (request bodies). */
#define CONNECTOR_STREAM_WINDOW (1024 * 1024)
#define CONNECTOR_CONN_WINDOW (16 * 1024 * 1024)
/* A connection up this long resets the backoff exponent. */
#define CONNECTOR_STABLE_MS 10000
/* The exponent stops growing here (2^20 × base is past any sane max). */
#define CONNECTOR_MAX_EXP 20

#define CONNECTOR_SERVICES_PATH "/.well-known/umbra/services"
#define CONNECTOR_ANNOUNCE_AUTHORITY "umbra-connector"

struct connector;
struct gwc;

/** One HTTP/2 stream opened by a gateway: the request as received, the
 * upstream transfer and the response queue. Owned by its gwc's list;
 * freed from on_stream_close or when the connection goes. */
struct cstream {
	struct umulti_xfer xfer; /* first: CURLOPT_PRIVATE points here */
	struct gwc *g;
	struct cstream *prev, *next;
	int32_t id;

	/* the request */
	char method[24];
	char authority[PKI_NAME_MAX + 8];
	struct buf path;
	struct curl_slist *hdrs;
	size_t head_bytes;
	bool has_accept;
	bool bad_head;       /* a pseudo-header too long: 400 at the end */
	bool too_big;        /* body over CONNECTOR_MAX_BODY: 413 at the end */
	bool refused;        /* RST_STREAM sent, ignore the rest */
	struct buf body;

	/* the upstream exchange */
	const struct conn_service *svc;
	CURL *easy;          /* the upstream exchange: curl, or */
	struct h1_xfer *h1;  /* our HTTP/1.1 client (POST to an IP or unix upstream) */
	int status;          /* current status line (1xx are skipped) */
	struct buf rhdr;     /* response headers "name\0value\0"... */
	size_t n_rhdr;
	const char *fail;    /* why the response head was refused */

	/* the response */
	struct buf out;      /* DATA not yet taken by nghttp2 */
	size_t out_off;
	bool responded;      /* HEADERS submitted */
	bool eof;            /* no more bytes will be queued */
	bool deferred;       /* the data provider returned DEFERRED */
	bool paused;         /* the curl write callback returned PAUSE */
	bool want_unpause;   /* drained below the low mark: resume (kick) */
};

enum gwc_state { GWC_IDLE, GWC_TCP, GWC_TLS, GWC_UP };

/** One gateway address and the connection to it (at most one at a time). */
struct gwc {
	struct connector *c;
	const char *addr;       /* as configured, "host:port" */
	char host[256], port[8];
	bool host_is_ip;
	enum gwc_state state;

	int fd;
	struct addrinfo *ai, *ai_next; /* resolved addresses, the next to try */
	SSL *ssl;
	nghttp2_session *h2;
	char peer[PKI_NAME_MAX + 1];   /* the gateway's identity name */
	struct event *ev_rd, *ev_wr;   /* on fd; freed with the connection */
	struct event *timer;           /* backoff (IDLE) or connect deadline */
	struct event *ping_timer, *ping_deadline;
	struct event *kick;            /* flush from the loop after curl work */
	struct buf wbuf;               /* TLS plaintext waiting for SSL_write */
	size_t retry_len;              /* SSL_write must be repeated with this */

	unsigned attempt;              /* backoff exponent n */
	uint64_t up_since_ns;
	bool goaway_recv;
	struct cstream *streams;
	size_t n_streams;
	size_t body_bytes;             /* request bodies buffered on this connection */
};

struct connector {
	const struct connector_config *cfg;
	struct event_base *base;
	SSL_CTX *ssl_ctx;
	char name[PKI_NAME_MAX + 1];   /* our identity, from our certificate */
	struct buf services_json;      /* the announcement body, built once */
	struct umulti multi;
	struct h1_pool *h1_pools;      /* keep-alive connections per upstream */
	struct cfg_endpoint *h1_eps;   /* the services as endpoints, for h1 */
	struct gwc *gws;
	size_t n_gws;
	struct event *ev_term, *ev_int, *ev_hup, *drain_timer;
	bool draining;
	uint64_t reconnects;
};

static void gwc_close(struct gwc *g, const char *reason);
static void gwc_after_io(struct gwc *g);

/* ---- pure helpers (unit-tested) ---- */

/** The n-th reconnect wait in ms: uniform in [d/2, d] with
 * d = min(max_ms, base_ms × 2^n), drawn from `rnd` (docs/tunnel.md point
 * 8). n is clamped so the shift never overflows. */
static uint64_t connector_backoff_ms(int base_ms, int max_ms, unsigned n, uint64_t rnd)
{
	uint64_t base = base_ms > 0 ? (uint64_t)base_ms : 1;
	uint64_t max = max_ms > 0 ? (uint64_t)max_ms : base;
	uint64_t d = base << UMB_MIN(n, (unsigned)CONNECTOR_MAX_EXP);
	if (d > max)
		d = max;
	uint64_t lo = d / 2;
	return lo + rnd % (d - lo + 1);
}

/** Hop-by-hop header names (docs/tunnel.md point 4), case-insensitive. */
static bool connector_hop_by_hop(struct str name)
{
	static const struct str hop[] = {
		STR("connection"), STR("keep-alive"), STR("transfer-encoding"),
		STR("upgrade"), STR("proxy-connection"), STR("te"),
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(hop); i++)
		if (str_ieq(name, hop[i]))
			return true;
	return false;
}

/** Request headers not forwarded to the upstream: hop-by-hop ones, plus
 * those curl writes itself from the buffered request (host, length) and
 * expect (the body is sent at once, no 100-continue round trip). */
static bool connector_request_header_dropped(struct str name)
{
	return connector_hop_by_hop(name) || str_ieq(name, STR("host")) ||
	       str_ieq(name, STR("content-length")) || str_ieq(name, STR("expect"));
}

/** The service named by an :authority; NULL if we host none by that name. */
static const struct conn_service *connector_find_service(const struct connector_config *cfg,
							 struct str name)
{
	for (size_t i = 0; i < cfg->n_services; i++)
		if (str_eq_cstr(name, cfg->services[i].name))
			return &cfg->services[i];
	return NULL;
}

/** Append {"connector": name, "services": [...]} (the announcement). */
static int connector_services_json(struct buf *b, const char *name,
				   const struct connector_config *cfg)
{
	int rc = buf_append_lit(b, "{\"connector\":");
	rc = rc ? rc : json_write_cstr(b, name);
	rc = rc ? rc : buf_append_lit(b, ",\"services\":[");
	for (size_t i = 0; i < cfg->n_services && !rc; i++) {
		if (i)
			rc = buf_append_lit(b, ",");
		rc = rc ? rc : json_write_cstr(b, cfg->services[i].name);
	}
	return rc ? rc : buf_append_lit(b, "]}");
}

/** Append the upstream URL: the service origin (which carries the
 * optional prefix and no trailing '/') followed by the stream's :path.
 * UMB_ERR for a path that is not origin-form or holds a space or control
 * byte (nothing we could put on an HTTP/1.1 request line). */
static int connector_url(struct buf *b, const char *origin, struct str path)
{
	if (path.n == 0 || path.p[0] != '/')
		return UMB_ERR;
	for (size_t i = 0; i < path.n; i++) {
		unsigned char ch = (unsigned char)path.p[i];
		if (ch <= 0x20 || ch >= 0x7f || ch == '#')
			return UMB_ERR;
	}
	int rc = buf_append_cstr(b, origin);
	return rc ? rc : buf_append_str(b, path);
}

/** Append an error body in the gateway's dialect:
 * {"error":{"message":msg,"type":type,"code":code}}. */
static int connector_error_json(struct buf *b, const char *type, const char *code,
				const char *msg)
{
	int rc = buf_append_lit(b, "{\"error\":{\"message\":");
	rc = rc ? rc : json_write_cstr(b, msg);
	rc = rc ? rc : buf_printf(b, ",\"type\":\"%s\",\"code\":\"%s\"}}", type, code);
	return rc;
}

/** Split "host:port" or "[v6]:port" into host[hcap] and port[pcap]. */
static int connector_split_addr(const char *addr, char *host, size_t hcap,
				char *port, size_t pcap)
{
	const char *h = addr, *he, *p;
	if (*addr == '[') {
		h = addr + 1;
		he = strchr(h, ']');
		if (!he || he[1] != ':')
			return UMB_ERR;
		p = he + 2;
	} else {
		he = strrchr(addr, ':');
		if (!he)
			return UMB_ERR;
		p = he + 1;
	}
	size_t hn = (size_t)(he - h), pn = strlen(p);
	if (hn == 0 || hn >= hcap || pn == 0 || pn > 5 || pn >= pcap ||
	    strspn(p, "0123456789") != pn || atoi(p) < 1 || atoi(p) > 65535)
		return UMB_ERR;
	memcpy(host, h, hn);
	host[hn] = 0;
	memcpy(port, p, pn + 1);
	return UMB_OK;
}

/** Add one upstream response header line (no CRLF) to rhdr as
 * "name\0value\0" with the name lower-cased. Hop-by-hop headers, folded
 * continuations and lines HTTP/2 cannot carry are skipped (0). UMB_ETOOBIG
 * when rhdr's cap is reached. */
static int connector_resp_header(struct buf *rhdr, size_t *n_rhdr, struct str line)
{
	const char *colon = line.n ? memchr(line.p, ':', line.n) : NULL;
	if (!colon || colon == line.p || line.p[0] == ' ' || line.p[0] == '\t')
		return UMB_OK;
	struct str name = str_make(line.p, (size_t)(colon - line.p));
	struct str val = str_trim(str_make(colon + 1, line.n - name.n - 1));
	if (connector_hop_by_hop(name))
		return UMB_OK;
	if (*n_rhdr >= CONNECTOR_MAX_RESP_HEADERS)
		return UMB_ETOOBIG;
	size_t start = rhdr->n;
	int rc = buf_reserve(rhdr, name.n + val.n + 2);
	if (rc)
		return rc;
	for (size_t i = 0; i < name.n; i++) {
		char ch = name.p[i];
		rhdr->p[rhdr->n++] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
	}
	rhdr->p[rhdr->n++] = 0;
	if (!nghttp2_check_header_name((const uint8_t *)rhdr->p + start, name.n) ||
	    !nghttp2_check_header_value((const uint8_t *)val.p, val.n)) {
		rhdr->n = start; /* drop the name again */
		rhdr->p[start] = 0;
		return UMB_OK;
	}
	memcpy(rhdr->p + rhdr->n, val.p, val.n);
	rhdr->n += val.n;
	rhdr->p[rhdr->n++] = 0;
	rhdr->p[rhdr->n] = 0;
	(*n_rhdr)++;
	return UMB_OK;
}

/** The status of an "HTTP/x.y NNN reason" line, or -1. */
static int connector_status_line(struct str line)
{
	if (line.n < 12 || memcmp(line.p, "HTTP/", 5))
		return -1;
	const char *sp = memchr(line.p, ' ', line.n);
	if (!sp || (size_t)(line.p + line.n - sp) < 4)
		return -1;
	int st = 0;
	for (int i = 1; i <= 3; i++) {
		if (sp[i] < '0' || sp[i] > '9')
			return -1;
		st = st * 10 + (sp[i] - '0');
	}
	return st >= 100 ? st : -1;
}

/* Arm a one-shot (or persistent) timer event for ms milliseconds. */
static void connector_timer_add(struct event *ev, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(ev, &tv);
}

/* ---- logging ---- */

/** One JSON log line about a gateway: "gateway", then "reason" when set,
 * then `extra` (raw members, may be NULL). */
static void gwc_log(const struct gwc *g, enum log_level lvl, const char *msg,
		    const char *reason, const char *extra)
{
	if (lvl < log_min_level)
		return;
	struct buf f;
	buf_init(&f, 0);
	buf_append_lit(&f, "\"gateway\":");
	json_write_cstr(&f, g->addr);
	if (g->peer[0]) {
		buf_append_lit(&f, ",\"gateway_identity\":");
		json_write_cstr(&f, g->peer);
	}
	if (reason) {
		buf_append_lit(&f, ",\"reason\":");
		json_write_cstr(&f, reason);
	}
	if (extra)
		buf_printf(&f, ",%s", extra);
	log_emit(lvl, f.p, "%s", msg);
	buf_clear(&f);
}

/* ---- streams ---- */

static void gwc_kick(struct gwc *g)
{
	event_active(g->kick, EV_TIMEOUT, 0);
}

static size_t cstream_queued(const struct cstream *s)
{
	return s->out.n - s->out_off;
}

static struct cstream *cstream_new(struct gwc *g, int32_t id)
{
	struct cstream *s = umb_calloc(1, sizeof *s);
	s->g = g;
	s->id = id;
	buf_init(&s->path, CONNECTOR_MAX_PATH);
	buf_init(&s->body, CONNECTOR_MAX_BODY);
	buf_init(&s->rhdr, CONNECTOR_MAX_HEAD);
	buf_init(&s->out, CONNECTOR_OUT_MAX);
	s->next = g->streams;
	if (g->streams)
		g->streams->prev = s;
	g->streams = s;
	g->n_streams++;
	return s;
}

/* Unlink and free; a running upstream transfer is cancelled (its
 * connection closed). Never called from a curl callback. */
static void cstream_free(struct cstream *s)
{
	struct gwc *g = s->g;
	if (s->easy)
		upstream__easy_put(&g->c->multi, s->easy, true);
	upstream__h1_cancel(s->h1);
	curl_slist_free_all(s->hdrs);
	g->body_bytes -= s->body.n;
	buf_clear(&s->path);
	buf_clear(&s->body);
	buf_clear(&s->rhdr);
	buf_clear(&s->out);
	if (s->prev)
		s->prev->next = s->next;
	else
		g->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	g->n_streams--;
	free(s);
}

/* nghttp2 pulls DATA from the stream's queue. DEFERRED while the
 * upstream has nothing new; EOF once it is done and the queue is empty. */
static ssize_t cstream_read_cb(nghttp2_session *h2, int32_t id, uint8_t *dst,
			       size_t len, uint32_t *flags, nghttp2_data_source *src,
			       void *user)
{
	UMB_UNUSED(h2);
	UMB_UNUSED(id);
	UMB_UNUSED(user);
	struct cstream *s = src->ptr;
	size_t n = UMB_MIN(cstream_queued(s), len);
	if (n == 0 && !s->eof) {
		s->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	memcpy(dst, s->out.p + s->out_off, n);
	s->out_off += n;
	if (s->out_off == s->out.n) {
		buf_reset(&s->out);
		s->out_off = 0;
	} else if (s->out_off >= CONNECTOR_LOW_WATER) {
		buf_consume(&s->out, s->out_off);
		s->out_off = 0;
	}
	if (s->eof && cstream_queued(s) == 0)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	if (s->paused && !s->want_unpause && cstream_queued(s) < CONNECTOR_LOW_WATER) {
		s->want_unpause = true; /* curl_easy_pause may call back: not here */
		gwc_kick(s->g);
	}
	return (ssize_t)n;
}

/* Submit HEADERS (:status + rhdr) with the queue as the body. */
static void cstream_submit_head(struct cstream *s, int status)
{
	nghttp2_nv nv[CONNECTOR_MAX_RESP_HEADERS + 1];
	char st[4];
	snprintf(st, sizeof st, "%03u", (unsigned)status % 1000u);
	nv[0] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)st, 7, 3, NGHTTP2_NV_FLAG_NONE };
	size_t n = 1;
	for (const char *p = s->rhdr.p, *end = s->rhdr.p + s->rhdr.n; p && p < end;) {
		size_t nl = strlen(p);
		const char *v = p + nl + 1;
		size_t vl = strlen(v);
		nv[n++] = (nghttp2_nv){ (uint8_t *)p, (uint8_t *)v, nl, vl, NGHTTP2_NV_FLAG_NONE };
		p = v + vl + 1;
	}
	nghttp2_data_provider prd = { .source.ptr = s, .read_callback = cstream_read_cb };
	s->responded = true;
	/* nghttp2 copies the names and values (no NO_COPY flags) */
	int rc = nghttp2_submit_response(s->g->h2, s->id, nv, n, &prd);
	if (rc)
		log_debug("connector: submit response on stream %d: %s", (int)s->id,
			  nghttp2_strerror(rc));
}

/* Answer with a complete body we produced ourselves (announcement,
 * 4xx/5xx JSON). Replaces whatever head the upstream had begun. */
static void cstream_respond(struct cstream *s, int status, struct str body)
{
	char len[24];
	buf_reset(&s->rhdr);
	s->n_rhdr = 0;
	buf_reset(&s->out);
	s->out_off = 0;
	snprintf(len, sizeof len, "%zu", body.n);
	buf_append_lit(&s->rhdr, "content-type\0application/json\0content-length");
	buf_append(&s->rhdr, "", 1);
	buf_append(&s->rhdr, len, strlen(len) + 1);
	s->n_rhdr = 2;
	if (buf_append_str(&s->out, body))
		buf_reset(&s->out);
	s->eof = true;
	cstream_submit_head(s, status);
}

static void cstream_respond_error(struct cstream *s, int status, const char *type,
				  const char *code, const char *msg)
{
	struct buf b;
	buf_init(&b, 0);
	connector_error_json(&b, type, code, msg);
	cstream_respond(s, status, buf_str(&b));
	buf_clear(&b);
}

/* curl header callback: status lines, header lines, then the blank line
 * that ends a head. Informational (1xx) heads are skipped; the final one
 * is submitted at once so the gateway sees the status before the body. */
static size_t cstream_on_header(char *p, size_t size, size_t nmemb, void *ctx)
{
	struct cstream *s = ctx;
	size_t n = size * nmemb;
	struct str line = str_make(p, n);
	while (line.n && (line.p[line.n - 1] == '\n' || line.p[line.n - 1] == '\r'))
		line.n--;
	if (s->responded)
		return n; /* trailers of a chunked body: dropped */
	int st = connector_status_line(line);
	if (st > 0) {
		s->status = st;
		buf_reset(&s->rhdr);
		s->n_rhdr = 0;
		return n;
	}
	if (line.n == 0) {
		if (s->status >= 200) {
			cstream_submit_head(s, s->status);
			gwc_kick(s->g);
		}
		s->status = 0; /* after a 1xx, wait for the next status line */
		return n;
	}
	if (connector_resp_header(&s->rhdr, &s->n_rhdr, line)) {
		s->fail = "response head too large";
		return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
	}
	return n;
}

/* curl write callback: queue body bytes for the data provider, or pause
 * the transfer while the stream already holds more than the high mark
 * (curl keeps the refused bytes and delivers them again on resume). */
static size_t cstream_on_data(char *p, size_t size, size_t nmemb, void *ctx)
{
	struct cstream *s = ctx;
	size_t n = size * nmemb;
	if (!s->responded) {
		s->fail = "body before the response head";
		return 0;
	}
	if (cstream_queued(s) >= CONNECTOR_HIGH_WATER) {
		s->paused = true;
		return CURL_WRITEFUNC_PAUSE;
	}
	if (buf_append(&s->out, p, n))
		return 0;
	if (s->deferred) {
		s->deferred = false;
		nghttp2_session_resume_data(s->g->h2, s->id);
	}
	gwc_kick(s->g);
	return n;
}

/* The upstream exchange ended (from the loop, never inside a start). */
static void cstream_upstream_done(struct cstream *s, CURLcode code)
{
	struct gwc *g = s->g;
	s->paused = s->want_unpause = false;
	if (!s->responded) {
		char msg[256];
		snprintf(msg, sizeof msg, "connector: upstream of service %s failed: %s",
			 s->svc->name,
			 s->fail ? s->fail
				 : code == CURLE_OK ? "no response head" : curl_easy_strerror(code));
		log_warn("%s (stream %d)", msg, (int)s->id);
		cstream_respond_error(s, 502, "api_error", "upstream_error", msg);
	} else if (code != CURLE_OK) {
		log_debug("connector: stream %d of service %s failed mid-body: %s", (int)s->id,
			  s->svc->name, curl_easy_strerror(code));
		nghttp2_submit_rst_stream(g->h2, NGHTTP2_FLAG_NONE, s->id,
					  NGHTTP2_INTERNAL_ERROR);
	} else {
		s->eof = true;
		if (s->deferred) {
			s->deferred = false;
			nghttp2_session_resume_data(g->h2, s->id);
		}
	}
	gwc_kick(g);
}

/* curl's end of an exchange (called from the multi's info loop). */
static void cstream_on_done(struct umulti_xfer *x, CURLcode code)
{
	struct cstream *s = (struct cstream *)x;
	upstream__easy_put(&s->g->c->multi, s->easy, true);
	s->easy = NULL;
	cstream_upstream_done(s, code);
}

/* Our HTTP/1.1 client's end of an exchange; it has freed the exchange. */
static void cstream_on_h1_done(void *ctx, CURLcode code)
{
	struct cstream *s = ctx;
	s->h1 = NULL;
	cstream_upstream_done(s, code);
}

/* POST to an IP-literal or unix upstream goes through our lean HTTP/1.1
 * client (about a quarter of libcurl's instructions per request, see
 * docs/decisions.md); anything else through libcurl. */
static bool cstream_start_h1(struct cstream *s)
{
	struct connector *c = s->g->c;
	size_t i = (size_t)(s->svc - c->cfg->services);
	const struct cfg_endpoint *ep = &c->h1_eps[i];
	if (strcmp(s->method, "POST") || !upstream__h1_eligible(ep))
		return false;
	const char *hdrs[64];
	size_t n = 0;
	for (struct curl_slist *l = s->hdrs; l && n < UMB_ARRAY_LEN(hdrs); l = l->next)
		hdrs[n++] = l->data;
	if (n == UMB_ARRAY_LEN(hdrs))
		return false; /* unusual: let curl take it */
	struct h1_req rq = {
		.path = buf_str(&s->path),
		.headers = hdrs,
		.n_headers = n,
		.n_parts = s->body.n ? 1 : 0,
		.connect_timeout_ms = c->cfg->connect_timeout_ms,
		.keepalive = 64,
		.on_header = cstream_on_header,
		.on_data = cstream_on_data,
		.on_done = cstream_on_h1_done,
		.ctx = s,
	};
	rq.parts[0] = buf_str(&s->body);
	s->h1 = upstream__h1_start(upstream__h1_pool(&c->h1_pools, c->base, ep), &rq);
	return true;
}

/* Start the HTTP/1.1 exchange with the service's upstream. */
static void cstream_start_upstream(struct cstream *s)
{
	struct connector *c = s->g->c;
	const struct conn_service *svc = s->svc;
	struct buf url;
	buf_init(&url, 0);
	if (connector_url(&url, svc->origin, buf_str(&s->path))) {
		buf_clear(&url);
		cstream_respond_error(s, 400, "invalid_request_error", "invalid_path",
				      "connector: the request path is not origin-form");
		return;
	}
	s->hdrs = curl_slist_append(s->hdrs, "Expect:");
	if (!s->has_accept) /* else curl adds its default Accept */
		s->hdrs = curl_slist_append(s->hdrs, "Accept:");
	if (cstream_start_h1(s)) {
		buf_clear(&url);
		return;
	}

	CURL *e = upstream__easy_get(&c->multi);
	s->easy = e;
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->cfg->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	if (svc->unix_path)
		curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, svc->unix_path);
	curl_easy_setopt(e, CURLOPT_URL, url.p);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->hdrs);
	if (!strcmp(s->method, "HEAD")) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(s->method, "GET") && s->body.n == 0) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else {
		/* the body lives in the stream, which outlives the transfer */
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->body.n);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, s->body.p ? s->body.p : "");
		if (strcmp(s->method, "POST"))
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, s->method);
	}
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, cstream_on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, s);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, cstream_on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(e, CURLOPT_PRIVATE, &s->xfer);
	s->xfer.done = cstream_on_done;
	upstream__multi_add(&c->multi, e); /* callbacks come from the loop */
	buf_clear(&url);
}

/* The request is complete (END_STREAM): answer it ourselves or start the
 * upstream exchange. Runs inside nghttp2's on_frame_recv. */
static void cstream_dispatch(struct cstream *s)
{
	struct connector *c = s->g->c;
	struct str auth = str_cstr(s->authority);
	char msg[160];
	if (s->bad_head) {
		cstream_respond_error(s, 400, "invalid_request_error", "invalid_request",
				      "connector: request head too large");
		return;
	}
	if (s->too_big) {
		cstream_respond_error(s, 413, "invalid_request_error", "request_too_large",
				      "connector: request body too large");
		return;
	}
	if (str_eq_cstr(buf_str(&s->path), CONNECTOR_SERVICES_PATH) &&
	    (auth.n == 0 || str_eq_cstr(auth, CONNECTOR_ANNOUNCE_AUTHORITY))) {
		cstream_respond(s, 200, buf_str(&c->services_json));
		return;
	}
	s->svc = connector_find_service(c->cfg, auth);
	if (!s->svc) {
		snprintf(msg, sizeof msg, "connector %s hosts no service '%s'", c->name,
			 s->authority);
		cstream_respond_error(s, 404, "not_found_error", "unknown_service", msg);
		return;
	}
	cstream_start_upstream(s);
}

/* ---- nghttp2 callbacks (user data: the gwc) ---- */

static int h2_on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
	struct gwc *g = user;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct cstream *s = cstream_new(g, f->hd.stream_id);
	nghttp2_session_set_stream_user_data(h2, f->hd.stream_id, s);
	return 0;
}

/* Copy a pseudo-header into a fixed field; false if it does not fit. */
static bool h2_copy_field(char *dst, size_t cap, const uint8_t *v, size_t n)
{
	if (n >= cap)
		return false;
	memcpy(dst, v, n);
	dst[n] = 0;
	return true;
}

static int h2_on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
			size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			void *user)
{
	UMB_UNUSED(flags);
	UMB_UNUSED(user);
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0; /* trailers are not forwarded */
	struct cstream *s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
	if (!s)
		return 0;
	struct str n = str_make((const char *)name, namelen);
	s->head_bytes += namelen + valuelen + 32;
	if (s->head_bytes > CONNECTOR_MAX_HEAD)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM */
	if (namelen && name[0] == ':') {
		bool ok = true;
		if (str_eq(n, STR(":method")))
			ok = h2_copy_field(s->method, sizeof s->method, value, valuelen);
		else if (str_eq(n, STR(":authority")))
			ok = h2_copy_field(s->authority, sizeof s->authority, value, valuelen);
		else if (str_eq(n, STR(":path")))
			ok = buf_append(&s->path, value, valuelen) == 0;
		if (!ok)
			s->bad_head = true;
		return 0;
	}
	if (connector_request_header_dropped(n))
		return 0;
	if (str_eq(n, STR("accept")))
		s->has_accept = true;
	/* curl: "Name:" deletes a header, "Name;" sends it empty */
	char *line = umb_malloc(namelen + valuelen + 3);
	memcpy(line, name, namelen);
	if (valuelen) {
		memcpy(line + namelen, ": ", 2);
		memcpy(line + namelen + 2, value, valuelen);
		line[namelen + 2 + valuelen] = 0;
	} else {
		memcpy(line + namelen, ";", 2);
	}
	s->hdrs = curl_slist_append(s->hdrs, line); /* copies */
	free(line);
	return 0;
}

static int h2_on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id,
			    const uint8_t *data, size_t len, void *user)
{
	UMB_UNUSED(flags);
	struct gwc *g = user;
	struct cstream *s = nghttp2_session_get_stream_user_data(h2, id);
	if (!s || s->refused || s->too_big)
		return 0;
	if (g->body_bytes + len > CONNECTOR_MAX_BODIES) {
		s->refused = true;
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	if (buf_append(&s->body, data, len)) {
		g->body_bytes -= s->body.n;
		buf_clear(&s->body);
		s->too_big = true;
		return 0;
	}
	g->body_bytes += len;
	return 0;
}

static int h2_on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
	struct gwc *g = user;
	switch (f->hd.type) {
	case NGHTTP2_HEADERS:
	case NGHTTP2_DATA:
		if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
			struct cstream *s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
			if (s && !s->refused && !s->responded && !s->easy)
				cstream_dispatch(s);
		}
		break;
	case NGHTTP2_PING:
		if (f->hd.flags & NGHTTP2_FLAG_ACK)
			evtimer_del(g->ping_deadline);
		break;
	case NGHTTP2_GOAWAY:
		if (!g->goaway_recv) {
			char extra[64], why[128] = "";
			snprintf(extra, sizeof extra, "\"error_code\":%u,\"streams\":%zu",
				 f->goaway.error_code, g->n_streams);
			/* the gateway says why in the debug data ("identity revoked") */
			size_t n = UMB_MIN(f->goaway.opaque_data_len, sizeof why - 1);
			if (n && json_utf8_valid((const char *)f->goaway.opaque_data, n)) {
				memcpy(why, f->goaway.opaque_data, n);
				why[n] = 0;
			}
			gwc_log(g, f->goaway.error_code ? LOG_WARN : LOG_INFO, "gateway sent GOAWAY",
				why[0] ? why : NULL, extra);
		}
		g->goaway_recv = true;
		break;
	default:
		break;
	}
	return 0;
}

static int h2_on_stream_close(nghttp2_session *h2, int32_t id, uint32_t error_code,
			      void *user)
{
	UMB_UNUSED(user);
	struct cstream *s = nghttp2_session_get_stream_user_data(h2, id);
	if (!s)
		return 0;
	if (error_code && (s->easy || !s->eof))
		log_debug("connector: stream %d closed by the gateway (%s), upstream cancelled",
			  (int)id, nghttp2_http2_strerror(error_code));
	nghttp2_session_set_stream_user_data(h2, id, NULL);
	cstream_free(s);
	return 0;
}

static nghttp2_session *h2_session_new(struct gwc *g)
{
	nghttp2_session_callbacks *cb;
	nghttp2_session *h2 = NULL;
	if (nghttp2_session_callbacks_new(&cb))
		return NULL;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, h2_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, h2_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_on_stream_close);
	int rc = nghttp2_session_server_new(&h2, cb, g);
	nghttp2_session_callbacks_del(cb);
	if (rc)
		return NULL;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, CONNECTOR_MAX_STREAMS },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, CONNECTOR_STREAM_WINDOW },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, CONNECTOR_MAX_HEAD },
	};
	if (nghttp2_submit_settings(h2, NGHTTP2_FLAG_NONE, iv, UMB_ARRAY_LEN(iv)) ||
	    nghttp2_session_set_local_window_size(h2, NGHTTP2_FLAG_NONE, 0,
						  CONNECTOR_CONN_WINDOW)) {
		nghttp2_session_del(h2);
		return NULL;
	}
	return h2;
}

/* ---- gateway connections ---- */

static void connector_check_done(struct connector *c)
{
	if (!c->draining)
		return;
	for (size_t i = 0; i < c->n_gws; i++)
		if (c->gws[i].state != GWC_IDLE)
			return;
	event_base_loopexit(c->base, NULL);
}

/* Arm the backoff timer for the next dial (not while draining). */
static void gwc_schedule(struct gwc *g)
{
	struct connector *c = g->c;
	const struct connector_config *cfg = c->cfg;
	uint64_t ms = connector_backoff_ms(cfg->reconnect_base_ms, cfg->reconnect_max_ms,
					   g->attempt, rand_fast());
	if (g->attempt < CONNECTOR_MAX_EXP)
		g->attempt++;
	c->reconnects++;
	char extra[96];
	snprintf(extra, sizeof extra, "\"delay_ms\":%llu,\"attempt\":%u,\"reconnects\":%llu",
		 (unsigned long long)ms, g->attempt, (unsigned long long)c->reconnects);
	gwc_log(g, LOG_INFO, "gateway reconnect scheduled", NULL, extra);
	connector_timer_add(g->timer, ms);
}

/* Close the socket and its events (TLS, if any, is freed before). */
static void gwc_socket_close(struct gwc *g)
{
	if (g->ev_rd)
		event_free(g->ev_rd);
	if (g->ev_wr)
		event_free(g->ev_wr);
	g->ev_rd = g->ev_wr = NULL;
	if (g->fd >= 0)
		close(g->fd);
	g->fd = -1;
}

/* Tear the connection down (any state) and, unless draining, schedule the
 * next dial. Cancels every stream's upstream transfer. Only from loop
 * callbacks: never inside nghttp2 or curl callbacks. */
static void gwc_close(struct gwc *g, const char *reason)
{
	struct connector *c = g->c;
	if (g->state == GWC_UP) {
		uint64_t up_ms = (clock_mono_ns() - g->up_since_ns) / 1000000u;
		char extra[64];
		snprintf(extra, sizeof extra, "\"up_ms\":%llu,\"streams\":%zu",
			 (unsigned long long)up_ms, g->n_streams);
		gwc_log(g, c->draining ? LOG_INFO : LOG_WARN, "gateway disconnected", reason, extra);
		if (up_ms >= CONNECTOR_STABLE_MS)
			g->attempt = 0;
	} else if (g->state != GWC_IDLE) {
		gwc_log(g, LOG_WARN, "gateway connect failed", reason, NULL);
	}
	while (g->streams)
		cstream_free(g->streams);
	if (g->h2)
		nghttp2_session_del(g->h2);
	g->h2 = NULL;
	if (g->ssl) {
		if (g->state == GWC_UP)
			SSL_shutdown(g->ssl); /* best effort close_notify */
		SSL_free(g->ssl);
	}
	g->ssl = NULL;
	gwc_socket_close(g);
	if (g->ai)
		freeaddrinfo(g->ai);
	g->ai = g->ai_next = NULL;
	evtimer_del(g->timer);
	evtimer_del(g->ping_timer);
	evtimer_del(g->ping_deadline);
	buf_clear(&g->wbuf);
	g->retry_len = 0;
	g->goaway_recv = false;
	g->body_bytes = 0;
	g->peer[0] = 0;
	bool was_idle = g->state == GWC_IDLE;
	g->state = GWC_IDLE;
	if (c->draining)
		connector_check_done(c);
	else if (!was_idle)
		gwc_schedule(g);
}

/* Write what nghttp2 has for the socket: frames are pulled into wbuf
 * (bounded) and written with SSL_write. 0, or UMB_ERR when the
 * connection is broken. */
static int gwc_flush(struct gwc *g)
{
	for (;;) {
		while (g->wbuf.n < CONNECTOR_WBUF_HIGH) {
			const uint8_t *d;
			ssize_t n = nghttp2_session_mem_send(g->h2, &d);
			if (n < 0)
				return UMB_ERR;
			if (n == 0)
				break;
			if (buf_append(&g->wbuf, d, (size_t)n))
				return UMB_ERR;
		}
		if (g->wbuf.n == 0)
			return UMB_OK;
		size_t len = g->retry_len ? g->retry_len : UMB_MIN(g->wbuf.n, (size_t)INT32_MAX);
		ERR_clear_error();
		int w = SSL_write(g->ssl, g->wbuf.p, (int)len);
		if (w <= 0) {
			int e = SSL_get_error(g->ssl, w);
			if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
				return UMB_ERR;
			g->retry_len = len; /* OpenSSL wants the same write again */
			if (e == SSL_ERROR_WANT_WRITE)
				event_add(g->ev_wr, NULL);
			return UMB_OK;
		}
		g->retry_len = 0;
		buf_consume(&g->wbuf, (size_t)w);
	}
}

/* After any input or queued work on an UP connection: flush, then close
 * it when the session is over (both sides done, GOAWAY and no streams
 * left, or our drain finished). */
static void gwc_after_io(struct gwc *g)
{
	if (g->state != GWC_UP)
		return;
	if (gwc_flush(g)) {
		gwc_close(g, "write failed");
		return;
	}
	bool idle = g->wbuf.n == 0 && !nghttp2_session_want_write(g->h2);
	if (!idle)
		return;
	if (g->goaway_recv && g->n_streams == 0)
		gwc_close(g, "gateway sent GOAWAY");
	else if (g->c->draining && g->n_streams == 0)
		gwc_close(g, "drained");
	else if (!nghttp2_session_want_read(g->h2))
		gwc_close(g, "HTTP/2 session ended");
}

static void gwc_read(struct gwc *g)
{
	uint8_t b[16384];
	for (;;) {
		ERR_clear_error();
		int n = SSL_read(g->ssl, b, sizeof b);
		if (n <= 0) {
			int e = SSL_get_error(g->ssl, n);
			if (e == SSL_ERROR_WANT_READ)
				break;
			if (e == SSL_ERROR_WANT_WRITE) {
				event_add(g->ev_wr, NULL);
				break;
			}
			char why[160];
			unsigned long oe = ERR_peek_last_error();
			snprintf(why, sizeof why, "%s%s",
				 e == SSL_ERROR_ZERO_RETURN ? "closed by the gateway"
				 : e == SSL_ERROR_SYSCALL   ? "connection lost"
							    : "TLS error: ",
				 e == SSL_ERROR_SSL && oe ? ERR_reason_error_string(oe) : "");
			gwc_close(g, why);
			return;
		}
		ssize_t r = nghttp2_session_mem_recv(g->h2, b, (size_t)n);
		if (r < 0) {
			gwc_close(g, nghttp2_strerror((int)r));
			return;
		}
	}
	gwc_after_io(g);
}

/* The handshake finished: check what OpenSSL cannot (the umbra kind of
 * the gateway's certificate and the negotiated protocol), then start
 * HTTP/2. Chain and host name were verified by OpenSSL (SSL_VERIFY_PEER
 * with the host/IP set on the SSL's verify param). */
static void gwc_up(struct gwc *g)
{
	struct connector *c = g->c;
	const unsigned char *alpn = NULL;
	unsigned alpn_len = 0;
	struct pki_identity id;
	X509 *peer = SSL_get0_peer_certificate(g->ssl);
	SSL_get0_alpn_selected(g->ssl, &alpn, &alpn_len);
	if (!peer || SSL_get_verify_result(g->ssl) != X509_V_OK) {
		gwc_close(g, "gateway certificate not verified");
		return;
	}
	if (pki_cert_identity(peer, &id) || id.kind != PKI_KIND_GATEWAY) {
		gwc_close(g, "gateway certificate lacks umbra://kind/gateway");
		return;
	}
	if (alpn_len != 2 || memcmp(alpn, "h2", 2)) {
		gwc_close(g, "gateway did not negotiate ALPN h2");
		return;
	}
	snprintf(g->peer, sizeof g->peer, "%s", id.name);
	g->h2 = h2_session_new(g);
	if (!g->h2) {
		gwc_close(g, "HTTP/2 session setup failed");
		return;
	}
	freeaddrinfo(g->ai);
	g->ai = g->ai_next = NULL;
	evtimer_del(g->timer);
	g->state = GWC_UP;
	g->up_since_ns = clock_mono_ns();
	if (c->cfg->ping_interval_ms > 0)
		connector_timer_add(g->ping_timer, (uint64_t)c->cfg->ping_interval_ms);
	char extra[48];
	snprintf(extra, sizeof extra, "\"reconnects\":%llu", (unsigned long long)c->reconnects);
	gwc_log(g, LOG_INFO, "gateway connected", NULL, extra);
	gwc_read(g); /* records OpenSSL already holds; flushes our SETTINGS */
}

static void gwc_handshake(struct gwc *g)
{
	ERR_clear_error();
	int rc = SSL_connect(g->ssl);
	if (rc == 1) {
		gwc_up(g);
		return;
	}
	int e = SSL_get_error(g->ssl, rc);
	if (e == SSL_ERROR_WANT_READ)
		return; /* ev_rd is persistent */
	if (e == SSL_ERROR_WANT_WRITE) {
		event_add(g->ev_wr, NULL);
		return;
	}
	char why[200];
	long vr = SSL_get_verify_result(g->ssl);
	if (vr != X509_V_OK)
		snprintf(why, sizeof why, "TLS handshake: gateway certificate: %s",
			 X509_verify_cert_error_string(vr));
	else
		snprintf(why, sizeof why, "TLS handshake: %s",
			 ERR_peek_last_error() ? ERR_reason_error_string(ERR_peek_last_error())
					       : "connection closed");
	gwc_close(g, why);
}

static void gwc_try_next(struct gwc *g, int last_err);

/* TCP connected: set up TLS with the host (or IP) to check. */
static void gwc_tls_start(struct gwc *g)
{
	g->ssl = SSL_new(g->c->ssl_ctx);
	if (!g->ssl || SSL_set_fd(g->ssl, g->fd) != 1) {
		gwc_close(g, "TLS setup failed");
		return;
	}
	X509_VERIFY_PARAM *vp = SSL_get0_param(g->ssl);
	int ok;
	if (g->host_is_ip) {
		ok = X509_VERIFY_PARAM_set1_ip_asc(vp, g->host);
	} else {
		X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		ok = X509_VERIFY_PARAM_set1_host(vp, g->host, 0) &&
		     SSL_set_tlsext_host_name(g->ssl, g->host);
	}
	if (!ok) {
		gwc_close(g, "TLS setup failed");
		return;
	}
	SSL_set_connect_state(g->ssl);
	g->state = GWC_TLS;
	event_add(g->ev_rd, NULL);
	gwc_handshake(g);
}

/* Socket readiness in every state but IDLE. */
static void gwc_on_io(evutil_socket_t fd, short what, void *arg)
{
	struct gwc *g = arg;
	UMB_UNUSED(fd);
	switch (g->state) {
	case GWC_TCP: {
		int err = 0;
		socklen_t len = sizeof err;
		if (getsockopt(g->fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
			gwc_try_next(g, err ? err : errno);
			return;
		}
		gwc_tls_start(g);
		return;
	}
	case GWC_TLS:
		gwc_handshake(g);
		return;
	case GWC_UP:
		if (what & EV_READ)
			gwc_read(g); /* flushes too */
		else
			gwc_after_io(g);
		return;
	case GWC_IDLE:
		return;
	}
}

/* Connect to the next resolved address; when none is left the attempt
 * failed (last_err: why the previous address failed, 0 if none). */
static void gwc_try_next(struct gwc *g, int last_err)
{
	gwc_socket_close(g);
	while (g->ai_next) {
		struct addrinfo *a = g->ai_next;
		g->ai_next = a->ai_next;
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				a->ai_protocol);
		if (fd < 0) {
			last_err = errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) && errno != EINPROGRESS) {
			last_err = errno;
			close(fd);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		g->fd = fd;
		g->ev_rd = event_new(g->c->base, fd, EV_READ | EV_PERSIST, gwc_on_io, g);
		g->ev_wr = event_new(g->c->base, fd, EV_WRITE, gwc_on_io, g);
		event_add(g->ev_wr, NULL);
		return;
	}
	char why[160];
	snprintf(why, sizeof why, "TCP connect: %s",
		 last_err ? strerror(last_err) : "no address");
	gwc_close(g, why);
}

/* Dial: resolve (blocking getaddrinfo; numeric addresses do not block),
 * arm the connect deadline (TCP + TLS), try the first address. */
static void gwc_start(struct gwc *g)
{
	const struct connector_config *cfg = g->c->cfg;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	g->state = GWC_TCP;
	int rc = getaddrinfo(g->host, g->port, &hints, &g->ai);
	if (rc) {
		g->ai = NULL;
		char why[320];
		snprintf(why, sizeof why, "resolve %s: %s", g->host, gai_strerror(rc));
		gwc_close(g, why);
		return;
	}
	g->ai_next = g->ai;
	connector_timer_add(g->timer, (uint64_t)cfg->connect_timeout_ms);
	gwc_log(g, LOG_DEBUG, "gateway connecting", NULL, NULL);
	gwc_try_next(g, 0);
}

static void gwc_on_timer(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct gwc *g = arg;
	if (g->state == GWC_IDLE) {
		if (!g->c->draining)
			gwc_start(g);
	} else if (g->state != GWC_UP) {
		gwc_close(g, "connect timed out");
	}
}

static void gwc_on_ping(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct gwc *g = arg;
	if (g->state != GWC_UP || evtimer_pending(g->ping_deadline, NULL))
		return; /* one PING outstanding at a time */
	if (nghttp2_submit_ping(g->h2, NGHTTP2_FLAG_NONE, NULL)) {
		gwc_close(g, "PING failed");
		return;
	}
	connector_timer_add(g->ping_deadline, (uint64_t)g->c->cfg->ping_timeout_ms);
	gwc_after_io(g);
}

static void gwc_on_ping_deadline(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct gwc *g = arg;
	if (g->state == GWC_UP)
		gwc_close(g, "no PING ACK within ping_timeout_ms");
}

/* Deferred work from curl callbacks: resume drained transfers, flush. */
static void gwc_on_kick(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct gwc *g = arg;
	if (g->state != GWC_UP)
		return;
	for (struct cstream *s = g->streams; s; s = s->next) {
		if (!s->want_unpause)
			continue;
		s->want_unpause = s->paused = false;
		if (s->easy)
			curl_easy_pause(s->easy, CURLPAUSE_CONT); /* may call cstream_on_data */
		else if (s->h1)
			upstream__h1_resume(s->h1);
	}
	gwc_after_io(g);
}

/* ---- the connector ---- */

/* TLS client context: TLS 1.3 only, ALPN h2, our certificate, and trust
 * in identity.ca alone (no system roots). Also reads our identity name
 * and checks our own certificate chains to that CA. */
static SSL_CTX *connector_tls_ctx(const struct connector_config *cfg, char *name,
				  char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	struct pki_identity id;
	char perr[PKI_ERR_LEN];
	if (!ctx) {
		snprintf(err, errlen, "TLS context: out of memory");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "identity.cert/key %s, %s: %s", cfg->cert, cfg->key,
			 ERR_reason_error_string(ERR_peek_last_error()));
		goto fail;
	}
	if (SSL_CTX_load_verify_locations(ctx, cfg->ca, NULL) != 1) {
		snprintf(err, errlen, "identity.ca %s: %s", cfg->ca,
			 ERR_reason_error_string(ERR_peek_last_error()));
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_verify_depth(ctx, 4);
	if (SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3)) {
		snprintf(err, errlen, "TLS context: ALPN setup failed");
		goto fail;
	}
	X509 *own = SSL_CTX_get0_certificate(ctx);
	if (pki_verify_cert(SSL_CTX_get_cert_store(ctx), own, NULL, time(NULL),
			    X509_PURPOSE_SSL_CLIENT, &id, perr)) {
		snprintf(err, errlen, "identity.cert %s against identity.ca: %s", cfg->cert, perr);
		goto fail;
	}
	if (id.kind != PKI_KIND_CONNECTOR) {
		snprintf(err, errlen, "identity.cert %s is a %s certificate, not a connector one",
			 cfg->cert, pki_kind_name(id.kind));
		goto fail;
	}
	memcpy(name, id.name, sizeof id.name);
	ERR_clear_error();
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

/* SIGTERM/SIGINT: GOAWAY everywhere, stop dialling, let in-flight
 * streams finish within drain_timeout_ms. A second signal stops at once. */
static void connector_on_signal(evutil_socket_t sig, short what, void *arg)
{
	UMB_UNUSED(what);
	struct connector *c = arg;
	if (sig == SIGHUP) {
		log_info("connector: SIGHUP ignored (no reload; restart to apply a new config)");
		return;
	}
	if (c->draining) {
		log_warn("connector: second signal, closing now");
		for (size_t i = 0; i < c->n_gws; i++)
			gwc_close(&c->gws[i], "stopped");
		event_base_loopexit(c->base, NULL);
		return;
	}
	c->draining = true;
	char fields[64];
	snprintf(fields, sizeof fields, "\"drain_timeout_ms\":%d", c->cfg->drain_timeout_ms);
	log_emit(LOG_INFO, fields, "connector draining");
	for (size_t i = 0; i < c->n_gws; i++) {
		struct gwc *g = &c->gws[i];
		evtimer_del(g->timer);
		if (g->state == GWC_UP) {
			nghttp2_submit_goaway(g->h2, NGHTTP2_FLAG_NONE,
					      nghttp2_session_get_last_proc_stream_id(g->h2),
					      NGHTTP2_NO_ERROR, NULL, 0);
			gwc_after_io(g);
		} else if (g->state != GWC_IDLE) {
			gwc_close(g, "stopped while connecting");
		}
	}
	connector_timer_add(c->drain_timer, (uint64_t)c->cfg->drain_timeout_ms);
	connector_check_done(c);
}

static void connector_on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct connector *c = arg;
	for (size_t i = 0; i < c->n_gws; i++)
		if (c->gws[i].state != GWC_IDLE)
			gwc_close(&c->gws[i], "drain timeout");
	event_base_loopexit(c->base, NULL);
}

/* Free everything connector_init set up (safe on a partial init). */
static void connector_clear(struct connector *c)
{
	bool draining = c->draining;
	c->draining = true; /* gwc_close must not reschedule */
	for (size_t i = 0; c->gws && i < c->n_gws; i++) {
		struct gwc *g = &c->gws[i];
		if (g->timer)
			gwc_close(g, "stopped");
		if (g->timer)
			event_free(g->timer);
		if (g->ping_timer)
			event_free(g->ping_timer);
		if (g->ping_deadline)
			event_free(g->ping_deadline);
		if (g->kick)
			event_free(g->kick);
	}
	c->draining = draining;
	free(c->gws);
	c->gws = NULL;
	if (c->multi.multi)
		upstream__multi_clear(&c->multi);
	upstream__h1_pools_free(c->h1_pools);
	c->h1_pools = NULL;
	free(c->h1_eps);
	c->h1_eps = NULL;
	struct event *evs[] = { c->ev_term, c->ev_int, c->ev_hup, c->drain_timer };
	for (size_t i = 0; i < UMB_ARRAY_LEN(evs); i++)
		if (evs[i])
			event_free(evs[i]);
	if (c->ssl_ctx)
		SSL_CTX_free(c->ssl_ctx);
	buf_clear(&c->services_json);
	if (c->base)
		event_base_free(c->base);
	memset(c, 0, sizeof *c);
}

/* Everything but the dialling: TLS context, loop, curl multi, events. */
static int connector_init(struct connector *c, const struct connector_config *cfg,
			  char *err, size_t errlen)
{
	memset(c, 0, sizeof *c);
	c->cfg = cfg;
	buf_init(&c->services_json, 0);
	c->ssl_ctx = connector_tls_ctx(cfg, c->name, err, errlen);
	if (!c->ssl_ctx)
		return UMB_ERR;
	connector_services_json(&c->services_json, c->name, cfg);
	c->base = event_base_new();
	if (!c->base) {
		snprintf(err, errlen, "event loop: out of memory");
		return UMB_ERR;
	}
	upstream__multi_init(&c->multi, c->base);
	/* each service as an endpoint, as our HTTP/1.1 client wants it */
	c->h1_eps = umb_calloc(c->cfg->n_services ? c->cfg->n_services : 1, sizeof *c->h1_eps);
	for (size_t i = 0; i < c->cfg->n_services; i++) {
		const struct conn_service *sv = &c->cfg->services[i];
		c->h1_eps[i] = (struct cfg_endpoint){ .name = sv->name, .url = sv->upstream,
						      .scheme = sv->scheme, .origin = sv->origin,
						      .unix_path = sv->unix_path, .weight = 1 };
	}
	c->n_gws = cfg->n_gateways;
	c->gws = umb_calloc(c->n_gws ? c->n_gws : 1, sizeof *c->gws);
	for (size_t i = 0; i < c->n_gws; i++) {
		struct gwc *g = &c->gws[i];
		g->c = c;
		g->fd = -1;
		g->addr = cfg->gateways[i];
		buf_init(&g->wbuf, 0);
		if (connector_split_addr(g->addr, g->host, sizeof g->host, g->port,
					 sizeof g->port)) {
			snprintf(err, errlen, "gateway address %s: expected host:port", g->addr);
			return UMB_ERR;
		}
		unsigned char tmp[16];
		g->host_is_ip = inet_pton(AF_INET, g->host, tmp) == 1 ||
				inet_pton(AF_INET6, g->host, tmp) == 1;
		g->timer = evtimer_new(c->base, gwc_on_timer, g);
		g->ping_timer = event_new(c->base, -1, EV_PERSIST, gwc_on_ping, g);
		g->ping_deadline = evtimer_new(c->base, gwc_on_ping_deadline, g);
		g->kick = event_new(c->base, -1, 0, gwc_on_kick, g);
	}
	c->ev_term = evsignal_new(c->base, SIGTERM, connector_on_signal, c);
	c->ev_int = evsignal_new(c->base, SIGINT, connector_on_signal, c);
	c->ev_hup = evsignal_new(c->base, SIGHUP, connector_on_signal, c);
	c->drain_timer = evtimer_new(c->base, connector_on_drain_timeout, c);
	return UMB_OK;
}

static int connector_usage(FILE *out)
{
	fprintf(out, "usage: umbra connect -c FILE   (docs/tunnel.md)\n");
	return 2;
}

int connector_main(int argc, char **argv)
{
	const char *path = NULL;
	for (int i = 1; i < argc; i++) {
		if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
			path = argv[++i];
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return connector_usage(stdout), 0;
		else
			return connector_usage(stderr);
	}
	if (!path)
		return connector_usage(stderr);

	struct config_err cerr;
	struct connector_config *cfg = connector_config_load_file(path, &cerr);
	if (!cfg) {
		fprintf(stderr, "%s\n", cerr.msg);
		return 1;
	}
	log_min_level = cfg->log_level;
	signal(SIGPIPE, SIG_IGN);
	upstream_global_init();

	struct connector c;
	char err[512];
	int rc = 1;
	if (connector_init(&c, cfg, err, sizeof err)) {
		fprintf(stderr, "umbra connect: %s\n", err);
		goto out;
	}
	evsignal_add(c.ev_term, NULL);
	evsignal_add(c.ev_int, NULL);
	evsignal_add(c.ev_hup, NULL);
	char fields[PKI_NAME_MAX + 128];
	snprintf(fields, sizeof fields, "\"connector\":\"%s\",\"gateways\":%zu,\"services\":%zu",
		 c.name, cfg->n_gateways, cfg->n_services); /* name is [A-Za-z0-9._-] */
	log_emit(LOG_INFO, fields, "connector starting");
	for (size_t i = 0; i < c.n_gws; i++)
		gwc_start(&c.gws[i]);
	event_base_dispatch(c.base);
	snprintf(fields, sizeof fields, "\"reconnects\":%llu", (unsigned long long)c.reconnects);
	log_emit(LOG_INFO, fields, "connector stopped");
	rc = 0;
out:
	connector_clear(&c);
	upstream_global_cleanup();
	connector_config_free(cfg);
	return rc;
}
