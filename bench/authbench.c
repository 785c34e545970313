/*
 * authbench — the load client of the auth benchmark (bench/auth.sh).
 *
 * Two modes, sequential (c=1: one request in flight at a time), blocking sockets:
 *
 *   authbench req -n N [-w WARM] -b BODY TARGET...
 *     TARGET = -u URL [-L LABEL] [-b BODY] [-k KEY] [-A CA] [-C CRT -K KEY] [-V 1.2|1.3] [-H 'k: v']...
 *       (-b after -u: that target's body instead of the shared one)
 *       One keep-alive connection per target; WARM unmeasured then N measured
 *       POST /v1/chat/completions (the URL's path) with the body of file BODY,
 *       optional TLS (https://; -A verifies the server against CA), optional
 *       client certificate, optional `Authorization: Bearer KEY`. With several
 *       targets the requests alternate between them in turns of BURST
 *       requests per target (-B, default 1; the first target of each turn
 *       rotates), so the noise of a shared machine falls on every target
 *       alike. Latency per request: request written (first byte) to the last
 *       byte of the response, CLOCK_MONOTONIC.
 *
 *   authbench hs -n N [-r] TARGET
 *       N times: connect + TLS handshake (timed), then one GET /health
 *       (checked, not timed), close_notify, close. Without -r every handshake
 *       is full (no session offered); with -r each connection offers the
 *       session (ticket) received on the previous one, and the reuse ratio
 *       (SSL_session_reused) is reported. WARM (default 1) unmeasured first.
 *
 * Every response is parsed (Content-Length or chunked, keep-alive) and must be
 * 200; a failed request is counted and its connection reopened. Exit status 1
 * if any request failed, 2 on usage errors.
 *
 * Output: one JSON line per target on stdout, e.g.
 *   {"mode":"req","target":"LABEL","n":3000,"errors":0,"reconnects":0,"tls":"TLSv1.3",
 *    "p50_us":..,"p90_us":..,"p99_us":..,"max_us":..,"mean_us":..,"rps":..}
 *   {"mode":"hs","target":"LABEL","n":500,"errors":0,"resume":1,"reused":500,"reuse_ratio":1.000,
 *    "client_cert":0,"tls":"TLSv1.3","cipher":"..","p50_us":..,...}
 * rps is measured requests / the wall time of the measured window (all targets).
 *
 * Other options: -T SEC (stop after SEC seconds, counting only finished
 * requests; default 300), -q (no stderr summary; -q -q: no messages at all).
 *
 * Build: cc -O2 -Wall -Wextra -Werror -o authbench authbench.c -lssl -lcrypto
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define IO_TIMEOUT_S 10
#define MAX_HEAD 65536
#define MAX_BODY (64u << 20)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("authbench: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static int g_quiet;
static void warnx(const char *fmt, ...)
{
	va_list ap;
	if (g_quiet > 1)
		return;
	va_start(ap, fmt);
	fputs("authbench: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ------------------------------------------------------------------ options */

#define MAX_TARGETS 16

struct conn {
	int fd;
	SSL *ssl;
	char *in;
	size_t len, off, cap;
};

struct target {
	char label[64];
	int tls;
	char host[320];
	char port[16];
	char path[1024];
	const char *key, *ca, *cert, *ckey, *tls_ver;
	const char *body_file; /* -b after -u: this target's own body */
	const char *hdrs[16];
	int n_hdrs;
	/* set up by setup_target() */
	struct addrinfo *ai, *addr;
	int host_is_ip;
	SSL_CTX *ctx;
	char *req;
	size_t rlen;
	struct conn c;
	uint64_t *lat;
	size_t done;
	long errors, reconnects;
	int bad_status_reported;
	char tls_used[32], cipher[64];
};

struct opts {
	const char *mode;
	long n, warm, burst;
	const char *body_file;
	int resume;
	double max_s;
	struct target t[MAX_TARGETS];
	int nt;
};

static void parse_url(struct target *o, const char *url)
{
	const char *p;
	if (strncmp(url, "http://", 7) == 0) {
		o->tls = 0;
		p = url + 7;
	} else if (strncmp(url, "https://", 8) == 0) {
		o->tls = 1;
		p = url + 8;
	} else {
		die("URL must start with http:// or https://: %s", url);
	}
	const char *slash = strchr(p, '/');
	size_t hl = slash ? (size_t)(slash - p) : strlen(p);
	char hp[300];
	if (hl == 0 || hl >= sizeof hp)
		die("bad URL host: %s", url);
	memcpy(hp, p, hl);
	hp[hl] = 0;
	snprintf(o->path, sizeof o->path, "%s", slash ? slash : "/");
	char *colon = strrchr(hp, ':');
	if (hp[0] == '[') {
		char *rb = strchr(hp, ']');
		if (!rb)
			die("bad URL: %s", url);
		*rb = 0;
		snprintf(o->host, sizeof o->host, "%s", hp + 1);
		colon = rb[1] == ':' ? rb + 1 : NULL;
	} else {
		if (colon)
			*colon = 0;
		snprintf(o->host, sizeof o->host, "%s", hp);
	}
	snprintf(o->port, sizeof o->port, "%s", colon ? colon + 1 : (o->tls ? "443" : "80"));
}

static void usage(void)
{
	fprintf(stderr,
		"usage: authbench req -n N [-w WARM] [-B BURST] -b BODY [-T SEC] [-q] TARGET...\n"
		"       authbench hs  -n N [-w WARM] [-r] [-T SEC] [-q] TARGET\n"
		"  TARGET = -u URL [-L LABEL] [-b BODY] [-k KEY] [-A CA] [-C CRT -K KEY] [-V 1.2|1.3] [-H 'k: v']...\n");
	exit(2);
}

static void parse_opts(struct opts *o, int argc, char **argv)
{
	memset(o, 0, sizeof *o);
	o->warm = -1;
	o->max_s = 300;
	o->burst = 1;
	if (argc < 2)
		usage();
	o->mode = argv[1];
	if (strcmp(o->mode, "req") != 0 && strcmp(o->mode, "hs") != 0)
		usage();
	struct target *t = NULL;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-r") == 0) {
			o->resume = 1;
			continue;
		}
		if (strcmp(a, "-q") == 0) {
			g_quiet++;
			continue;
		}
		if (a[0] != '-' || a[1] == 0 || a[2] != 0 || i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		char *end;
		if (strchr("LkACKVH", a[1]) && !t)
			die("%s before the first -u", a);
		switch (a[1]) {
		case 'u':
			if (o->nt >= MAX_TARGETS)
				die("at most %d targets", MAX_TARGETS);
			t = &o->t[o->nt++];
			parse_url(t, v);
			t->c.fd = -1;
			break;
		case 'L': snprintf(t->label, sizeof t->label, "%s", v); break;
		case 'k': t->key = v; break;
		case 'A': t->ca = v; break;
		case 'C': t->cert = v; break;
		case 'K': t->ckey = v; break;
		case 'V': t->tls_ver = v; break;
		case 'H':
			if (t->n_hdrs >= 16)
				die("too many -H");
			t->hdrs[t->n_hdrs++] = v;
			break;
		case 'n':
			o->n = strtol(v, &end, 10);
			if (*end || o->n < 1 || o->n > 100000000)
				die("bad -n %s", v);
			break;
		case 'w':
			o->warm = strtol(v, &end, 10);
			if (*end || o->warm < 0)
				die("bad -w %s", v);
			break;
		case 'B':
			o->burst = strtol(v, &end, 10);
			if (*end || o->burst < 1 || o->burst > 1000000)
				die("bad -B %s", v);
			break;
		case 'T':
			o->max_s = strtod(v, &end);
			if (*end || o->max_s <= 0)
				die("bad -T %s", v);
			break;
		case 'b':
			/* -b before any -u: every target's body; after: that target's */
			if (t)
				t->body_file = v;
			else
				o->body_file = v;
			break;
		default: usage();
		}
	}
	if (o->nt == 0 || o->n == 0)
		usage();
	for (int i = 0; strcmp(o->mode, "req") == 0 && i < o->nt; i++)
		if (!o->body_file && !o->t[i].body_file)
			die("req needs -b BODY (before the targets, or after each -u)");
	if (strcmp(o->mode, "hs") == 0 && (o->nt != 1 || !o->t[0].tls))
		die("hs takes one https:// target");
	for (int i = 0; i < o->nt; i++)
		if ((o->t[i].cert != NULL) != (o->t[i].ckey != NULL))
			die("-C and -K go together");
	if (o->warm < 0)
		o->warm = strcmp(o->mode, "req") == 0 ? (o->n < 1000 ? o->n / 10 : 100) : 1;
}

/* ------------------------------------------------------------------ transport */

static SSL_SESSION *g_last_sess; /* the newest session received (hs -r) */

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	if (g_last_sess)
		SSL_SESSION_free(g_last_sess);
	g_last_sess = sess;
	return 1; /* we keep the reference */
}

static void ssl_errors(const char *what)
{
	unsigned long e;
	char buf[256];
	if (g_quiet > 1) {
		ERR_clear_error();
		return;
	}
	fprintf(stderr, "authbench: %s", what);
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof buf);
		fprintf(stderr, " [%s]", buf);
	}
	fputc('\n', stderr);
}

static void setup_target(struct target *t)
{
	struct addrinfo hints = {0};
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(t->host, t->port, &hints, &t->ai);
	if (rc != 0)
		die("resolve %s:%s: %s", t->host, t->port, gai_strerror(rc));
	/* prefer IPv4 (the gateway listens on 127.0.0.1; "localhost" may give ::1 first) */
	t->addr = t->ai;
	for (struct addrinfo *a = t->ai; a; a = a->ai_next)
		if (a->ai_family == AF_INET) {
			t->addr = a;
			break;
		}
	struct in6_addr tmp6;
	t->host_is_ip = inet_pton(AF_INET, t->host, &tmp6) == 1 || inet_pton(AF_INET6, t->host, &tmp6) == 1;
	snprintf(t->tls_used, sizeof t->tls_used, "none");
	if (!t->label[0]) {
		char tmp[sizeof t->label];
		snprintf(tmp, sizeof tmp, "%.40s:%s", t->host, t->port);
		memcpy(t->label, tmp, sizeof tmp);
	}

	if (!t->tls)
		return;
	SSL_CTX *ctx = t->ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		die("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (t->tls_ver) {
		int v = strcmp(t->tls_ver, "1.2") == 0 ? TLS1_2_VERSION
			: strcmp(t->tls_ver, "1.3") == 0 ? TLS1_3_VERSION : 0;
		if (!v)
			die("-V takes 1.2 or 1.3");
		SSL_CTX_set_min_proto_version(ctx, v);
		SSL_CTX_set_max_proto_version(ctx, v);
	}
	if (t->ca) {
		if (SSL_CTX_load_verify_locations(ctx, t->ca, NULL) != 1) {
			ssl_errors("loading -A CA file");
			exit(2);
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	if (t->cert) {
		if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(ctx, t->ckey, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			ssl_errors("loading the client certificate/key");
			exit(2);
		}
	}
	/* sessions are handed to new_session_cb; nothing is reused unless asked */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
}

static void free_target(struct target *t)
{
	if (t->ctx)
		SSL_CTX_free(t->ctx);
	if (t->ai)
		freeaddrinfo(t->ai);
	free(t->req);
	free(t->lat);
	free(t->c.in);
}

static void conn_close(struct conn *c, int clean)
{
	if (c->ssl) {
		if (clean)
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->len = c->off = 0;
}

/* connect (+ handshake); returns 0 or -1 */
static int conn_open(struct conn *c, const struct target *o, SSL_SESSION *offer)
{
	c->fd = socket(o->addr->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		warnx("socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct timeval tv = {IO_TIMEOUT_S, 0};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(c->fd, o->addr->ai_addr, o->addr->ai_addrlen) != 0) {
		warnx("connect %s:%s: %s", o->host, o->port, strerror(errno));
		conn_close(c, 0);
		return -1;
	}
	if (!o->tls)
		return 0;
	c->ssl = SSL_new(o->ctx);
	SSL_set_fd(c->ssl, c->fd);
	if (o->host_is_ip) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), o->host);
	} else {
		SSL_set_tlsext_host_name(c->ssl, o->host);
		SSL_set1_host(c->ssl, o->host);
	}
	if (offer)
		SSL_set_session(c->ssl, offer);
	if (SSL_connect(c->ssl) != 1) {
		ssl_errors("TLS handshake failed");
		long vr = SSL_get_verify_result(c->ssl);
		if (vr != X509_V_OK)
			warnx("certificate verify: %s", X509_verify_cert_error_string(vr));
		conn_close(c, 0);
		return -1;
	}
	return 0;
}

static int conn_write(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w;
		if (c->ssl) {
			int r = SSL_write(c->ssl, p, n > (1u << 30) ? (int)(1u << 30) : (int)n);
			if (r <= 0) {
				ssl_errors("SSL_write");
				return -1;
			}
			w = r;
		} else {
			w = send(c->fd, p, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				warnx("send: %s", strerror(errno));
				return -1;
			}
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* read more into c->in; 1 = got bytes, 0 = EOF, -1 = error */
static int conn_fill(struct conn *c)
{
	if (c->off > 0 && c->off == c->len)
		c->off = c->len = 0;
	if (c->cap - c->len < 16384) {
		if (c->off > 0) {
			memmove(c->in, c->in + c->off, c->len - c->off);
			c->len -= c->off;
			c->off = 0;
		}
		if (c->cap - c->len < 16384) {
			size_t nc = c->cap ? c->cap * 2 : 65536;
			char *ni = realloc(c->in, nc);
			if (!ni)
				die("out of memory");
			c->in = ni;
			c->cap = nc;
		}
	}
	for (;;) {
		if (c->ssl) {
			int r = SSL_read(c->ssl, c->in + c->len, (int)(c->cap - c->len));
			if (r > 0) {
				c->len += (size_t)r;
				return 1;
			}
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_ZERO_RETURN)
				return 0;
			if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)
				return 0; /* EOF without close_notify */
			ssl_errors("SSL_read");
			return -1;
		}
		ssize_t r = recv(c->fd, c->in + c->len, c->cap - c->len, 0);
		if (r > 0) {
			c->len += (size_t)r;
			return 1;
		}
		if (r == 0)
			return 0;
		if (errno == EINTR)
			continue;
		warnx("recv: %s", strerror(errno));
		return -1;
	}
}

/* a line ending in CRLF starting at c->off; returns its length without CRLF, or -1 */
static long read_line(struct conn *c, size_t max)
{
	for (;;) {
		char *s = c->in + c->off;
		size_t avail = c->len - c->off;
		char *nl = avail >= 2 ? memmem(s, avail, "\r\n", 2) : NULL;
		if (nl)
			return nl - s;
		if (avail > max)
			return -1;
		if (conn_fill(c) <= 0)
			return -1;
	}
}

static int need_bytes(struct conn *c, size_t n)
{
	while (c->len - c->off < n)
		if (conn_fill(c) <= 0)
			return -1;
	return 0;
}

/* Reads one response. Returns the status (>= 100), or -1 on a transport/parse
 * error. *close_after is set when the server will close the connection. */
static int read_response(struct conn *c, int *close_after, size_t *body_len)
{
	*close_after = 0;
	*body_len = 0;
	for (;;) { /* skip 1xx */
		long ll = read_line(c, MAX_HEAD);
		if (ll < 0)
			return -1;
		char *line = c->in + c->off;
		int status = 0;
		if (ll < 12 || strncmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ' ||
		    sscanf(line + 9, "%3d", &status) != 1 || status < 100) {
			warnx("bad status line: %.*s", (int)(ll > 80 ? 80 : ll), line);
			return -1;
		}
		if (line[7] == '0')
			*close_after = 1;
		c->off += (size_t)ll + 2;
		long long clen = -1;
		int chunked = 0;
		size_t head = 0;
		for (;;) {
			ll = read_line(c, MAX_HEAD);
			if (ll < 0)
				return -1;
			head += (size_t)ll + 2;
			if (head > MAX_HEAD) {
				warnx("response head too large");
				return -1;
			}
			line = c->in + c->off;
			c->off += (size_t)ll + 2;
			if (ll == 0)
				break;
			char *colon = memchr(line, ':', (size_t)ll);
			if (!colon)
				continue;
			size_t nl = (size_t)(colon - line);
			char *v = colon + 1;
			char *end = line + ll;
			while (v < end && (*v == ' ' || *v == '\t'))
				v++;
			size_t vl = (size_t)(end - v);
			if (nl == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
				char tmp[32];
				if (vl == 0 || vl >= sizeof tmp)
					return -1;
				memcpy(tmp, v, vl);
				tmp[vl] = 0;
				char *e;
				clen = strtoll(tmp, &e, 10);
				if (*e || clen < 0)
					return -1;
			} else if (nl == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) {
				chunked = memmem(v, vl, "chunked", 7) != NULL;
			} else if (nl == 10 && strncasecmp(line, "Connection", 10) == 0) {
				if (vl >= 5 && memmem(v, vl, "close", 5))
					*close_after = 1;
			}
		}
		if (status >= 100 && status < 200)
			continue;
		if (status == 204 || status == 304)
			return status;
		if (chunked) {
			for (;;) {
				ll = read_line(c, 1024);
				if (ll < 0)
					return -1;
				char *e;
				unsigned long long sz = strtoull(c->in + c->off, &e, 16);
				if (e == c->in + c->off) {
					warnx("bad chunk size");
					return -1;
				}
				c->off += (size_t)ll + 2;
				if (sz == 0) {
					for (;;) { /* trailers up to the empty line */
						ll = read_line(c, MAX_HEAD);
						if (ll < 0)
							return -1;
						c->off += (size_t)ll + 2;
						if (ll == 0)
							return status;
					}
				}
				if (sz > MAX_BODY || *body_len + sz > MAX_BODY)
					return -1;
				if (need_bytes(c, (size_t)sz + 2) != 0)
					return -1;
				if (memcmp(c->in + c->off + sz, "\r\n", 2) != 0) {
					warnx("chunk not followed by CRLF");
					return -1;
				}
				c->off += (size_t)sz + 2;
				*body_len += (size_t)sz;
			}
		}
		if (clen >= 0) {
			if ((unsigned long long)clen > MAX_BODY)
				return -1;
			/* consume without needing it all in the buffer at once */
			size_t left = (size_t)clen;
			while (left > 0) {
				if (c->off == c->len && conn_fill(c) <= 0)
					return -1;
				size_t take = c->len - c->off;
				if (take > left)
					take = left;
				c->off += take;
				left -= take;
			}
			*body_len = (size_t)clen;
			return status;
		}
		/* delimited by close */
		*close_after = 1;
		for (;;) {
			*body_len += c->len - c->off;
			c->off = c->len;
			int r = conn_fill(c);
			if (r == 0)
				return status;
			if (r < 0)
				return -1;
		}
	}
}

/* ------------------------------------------------------------------ stats */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *v, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t rank = (size_t)(q * (double)n + 0.999999999); /* nearest rank */
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1000.0;
}

static void stats_json(uint64_t *v, size_t n, double *mean_us)
{
	qsort(v, n, sizeof *v, cmp_u64);
	long double s = 0;
	for (size_t i = 0; i < n; i++)
		s += v[i];
	*mean_us = n ? (double)(s / n) / 1000.0 : 0;
	printf("\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f",
	       pct_us(v, n, 0.50), pct_us(v, n, 0.90), pct_us(v, n, 0.99), n ? (double)v[n - 1] / 1000.0 : 0,
	       *mean_us);
}

/* ------------------------------------------------------------------ modes */

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		die("open %s: %s", path, strerror(errno));
	char *buf = NULL;
	size_t cap = 0, n = 0;
	for (;;) {
		if (cap - n < 65536) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap);
			if (!buf)
				die("out of memory");
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	*len = n;
	return buf;
}

static void build_request(struct target *t, const char *body, size_t blen)
{
	size_t cap = blen + 4096;
	char *req = malloc(cap);
	if (!req)
		die("out of memory");
	int hl = snprintf(req, cap,
			  "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
			  "Content-Length: %zu\r\n",
			  t->path, t->host, t->port, blen);
	if (t->key)
		hl += snprintf(req + hl, cap - (size_t)hl, "Authorization: Bearer %s\r\n", t->key);
	for (int i = 0; i < t->n_hdrs; i++)
		hl += snprintf(req + hl, cap - (size_t)hl, "%s\r\n", t->hdrs[i]);
	if ((size_t)hl + 2 >= cap)
		die("headers too long");
	memcpy(req + hl, "\r\n", 2);
	memcpy(req + hl + 2, body, blen);
	t->req = req;
	t->rlen = (size_t)hl + 2 + blen;
}

/* one request on t's keep-alive connection; records its latency if measured */
static void one_request(struct target *t, int measured)
{
	struct conn *c = &t->c;
	if (c->fd < 0) {
		if (t->done > 0 || t->errors > 0)
			t->reconnects++;
		if (conn_open(c, t, NULL) != 0) {
			t->errors++;
			usleep(10000);
			return;
		}
		if (c->ssl)
			snprintf(t->tls_used, sizeof t->tls_used, "%s", SSL_get_version(c->ssl));
	}
	uint64_t t0 = now_ns();
	int close_after = 0, st = -1;
	size_t bl = 0;
	if (conn_write(c, t->req, t->rlen) == 0)
		st = read_response(c, &close_after, &bl);
	uint64_t t1 = now_ns();
	if (st != 200) {
		t->errors++;
		if (st > 0 && !t->bad_status_reported) {
			warnx("%s: status %d", t->label, st);
			t->bad_status_reported = 1;
		}
		if (st < 0)
			close_after = 1;
	} else if (measured) {
		t->lat[t->done++] = t1 - t0;
	}
	if (close_after)
		conn_close(c, st > 0);
}

static int mode_req(struct opts *o)
{
	for (int k = 0; k < o->nt; k++) {
		struct target *t = &o->t[k];
		size_t blen;
		char *body = read_file(t->body_file ? t->body_file : o->body_file, &blen);
		build_request(t, body, blen);
		free(body);
		t->lat = calloc((size_t)o->n, sizeof *t->lat);
		if (!t->lat)
			die("out of memory");
	}

	long total = o->warm + o->n, i, turn = 0;
	long errors = 0;
	uint64_t t_start = 0, t_limit = now_ns() + (uint64_t)(o->max_s * 1e9), t_end;
	for (i = 0; i < total; turn++) {
		if (now_ns() > t_limit) {
			warnx("time bound of %.0f s reached after %ld measured requests per target", o->max_s,
			      i > o->warm ? i - o->warm : 0);
			break;
		}
		/* a turn: BURST requests to each target in turn, the first target
		 * rotating per turn; the warm-up and the measured part never share
		 * a turn */
		long b = o->burst;
		if (i < o->warm && b > o->warm - i)
			b = o->warm - i;
		if (b > total - i)
			b = total - i;
		if (i == o->warm)
			t_start = now_ns();
		for (int k = 0; k < o->nt; k++)
			for (long j = 0; j < b; j++)
				one_request(&o->t[(turn + k) % o->nt], i >= o->warm);
		i += b;
		errors = 0;
		for (int k = 0; k < o->nt; k++)
			errors += o->t[k].errors;
		if (errors > 100) {
			warnx("more than 100 errors, giving up");
			break;
		}
	}
	t_end = now_ns();
	double secs = t_start && t_end > t_start ? (double)(t_end - t_start) / 1e9 : 0;
	int fail = 0;
	for (int k = 0; k < o->nt; k++) {
		struct target *t = &o->t[k];
		conn_close(&t->c, 1);
		double mean;
		printf("{\"mode\":\"req\",\"target\":\"%s\",\"n\":%zu,\"errors\":%ld,\"reconnects\":%ld,\"tls\":\"%s\",",
		       t->label, t->done, t->errors, t->reconnects, t->tls_used);
		double p50 = 0;
		stats_json(t->lat, t->done, &mean);
		p50 = pct_us(t->lat, t->done, 0.5);
		printf(",\"rps\":%.1f}\n", secs > 0 ? (double)t->done / secs : 0);
		if (!g_quiet)
			fprintf(stderr, "authbench req %s: %zu ok, %ld errors, p50 %.1f us\n", t->label, t->done,
				t->errors, p50);
		if (t->errors > 0 || t->done < (size_t)o->n)
			fail = 1;
	}
	fflush(stdout);
	return fail;
}

static int mode_hs(struct opts *o)
{
	struct target *t = &o->t[0];
	char req[512];
	int rl = snprintf(req, sizeof req, "GET /health HTTP/1.1\r\nHost: %s:%s\r\n\r\n", t->host, t->port);
	t->lat = calloc((size_t)o->n, sizeof *t->lat);
	if (!t->lat)
		die("out of memory");
	long reused = 0, total = o->warm + o->n;
	struct conn *c = &t->c;
	uint64_t t_limit = now_ns() + (uint64_t)(o->max_s * 1e9);
	for (long i = 0; i < total; i++) {
		if (now_ns() > t_limit) {
			warnx("time bound of %.0f s reached after %zu handshakes", o->max_s, t->done);
			break;
		}
		SSL_SESSION *offer = o->resume ? g_last_sess : NULL;
		if (offer)
			SSL_SESSION_up_ref(offer);
		uint64_t t0 = now_ns();
		int rc = conn_open(c, t, offer);
		uint64_t t1 = now_ns();
		if (offer)
			SSL_SESSION_free(offer);
		if (rc != 0) {
			if (++t->errors > 100)
				break;
			continue;
		}
		int was_reused = SSL_session_reused(c->ssl);
		snprintf(t->tls_used, sizeof t->tls_used, "%s", SSL_get_version(c->ssl));
		snprintf(t->cipher, sizeof t->cipher, "%s", SSL_get_cipher_name(c->ssl));
		int close_after = 0, st = -1;
		size_t bl;
		/* TLS 1.3 tickets arrive after the handshake: reading the response
		 * makes sure new_session_cb has seen them before the next connection */
		if (conn_write(c, req, (size_t)rl) == 0)
			st = read_response(c, &close_after, &bl);
		conn_close(c, st > 0);
		if (st != 200) {
			if (st > 0)
				warnx("GET /health: status %d", st);
			t->errors++;
			continue;
		}
		if (i >= o->warm) {
			t->lat[t->done++] = t1 - t0;
			reused += was_reused;
		}
	}
	double mean, p50;
	printf("{\"mode\":\"hs\",\"target\":\"%s\",\"n\":%zu,\"errors\":%ld,\"resume\":%d,\"reused\":%ld,"
	       "\"reuse_ratio\":%.3f,\"client_cert\":%d,\"tls\":\"%s\",\"cipher\":\"%s\",",
	       t->label, t->done, t->errors, o->resume, reused, t->done ? (double)reused / (double)t->done : 0,
	       t->cert != NULL, t->tls_used, t->cipher);
	stats_json(t->lat, t->done, &mean);
	p50 = pct_us(t->lat, t->done, 0.5);
	printf("}\n");
	fflush(stdout);
	if (!g_quiet)
		fprintf(stderr, "authbench hs %s%s%s: %zu ok, %ld errors, %ld reused, p50 %.1f us\n", t->label,
			o->resume ? " resume" : " full", t->cert ? " +cert" : "", t->done, t->errors, reused, p50);
	return t->errors > 0 || t->done < (size_t)o->n ? 1 : 0;
}

int main(int argc, char **argv)
{
	static struct opts o;
	signal(SIGPIPE, SIG_IGN);
	parse_opts(&o, argc, argv);
	for (int k = 0; k < o.nt; k++)
		setup_target(&o.t[k]);
	int rc = strcmp(o.mode, "req") == 0 ? mode_req(&o) : mode_hs(&o);
	if (g_last_sess)
		SSL_SESSION_free(g_last_sess);
	for (int k = 0; k < o.nt; k++)
		free_target(&o.t[k]);
	return rc;
}
