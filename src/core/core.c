/* core.c — strings, capped buffers, arenas, clocks, randomness, logging. */
#include "core/core.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

_Noreturn void umb_bug(const char *file, int line, const char *what)
{
	fprintf(stderr, "umbra: BUG at %s:%d: %s\n", file, line, what);
	abort();
}

/* ---- allocation ---- */

static _Noreturn void oom(size_t n)
{
	fprintf(stderr, "umbra: out of memory allocating %zu bytes\n", n);
	abort();
}

void *umb_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *umb_calloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if (!p)
		oom(n * sz);
	return p;
}

void *umb_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *umb_strndup(const char *s, size_t n)
{
	char *p = umb_malloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

char *umb_strdup(const char *s)
{
	return umb_strndup(s, strlen(s));
}

/* ---- strings ---- */

bool str_ieq(struct str a, struct str b)
{
	if (a.n != b.n)
		return false;
	for (size_t i = 0; i < a.n; i++)
		if (tolower((unsigned char)a.p[i]) != tolower((unsigned char)b.p[i]))
			return false;
	return true;
}

struct str str_trim(struct str s)
{
	while (s.n && (s.p[0] == ' ' || s.p[0] == '\t')) {
		s.p++;
		s.n--;
	}
	while (s.n && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
		s.n--;
	return s;
}

size_t fmt_u64(char *out, uint64_t v)
{
	char tmp[20];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

int str_to_u64(struct str s, uint64_t *out)
{
	uint64_t v = 0;
	if (s.n == 0 || s.n > 20)
		return UMB_ERR;
	for (size_t i = 0; i < s.n; i++) {
		unsigned d = (unsigned char)s.p[i] - '0';
		if (d > 9)
			return UMB_ERR;
		if (v > (UINT64_MAX - d) / 10)
			return UMB_ERR;
		v = v * 10 + d;
	}
	*out = v;
	return UMB_OK;
}

/* Iterative glob with single backtrack point: O(n*m) worst case, no
 * recursion, so a hostile pattern cannot blow the stack. */
bool str_glob(const char *pat, struct str s)
{
	size_t pi = 0, si = 0, star_p = SIZE_MAX, star_s = 0;
	size_t pn = strlen(pat);
	while (si < s.n) {
		if (pi < pn && pat[pi] == '*') {
			star_p = pi++;
			star_s = si;
		} else if (pi < pn && (pat[pi] == '?' || pat[pi] == s.p[si])) {
			pi++;
			si++;
		} else if (star_p != SIZE_MAX) {
			pi = star_p + 1;
			si = ++star_s;
		} else {
			return false;
		}
	}
	while (pi < pn && pat[pi] == '*')
		pi++;
	return pi == pn;
}

size_t utf8_complete_prefix(const char *p, size_t n)
{
	/* walk back over continuation bytes to the last lead byte */
	size_t i = n, back = 0;
	while (i > 0 && back < 4 && ((unsigned char)p[i - 1] & 0xC0) == 0x80) {
		i--;
		back++;
	}
	if (i == 0)
		return n;
	unsigned char lead = (unsigned char)p[i - 1];
	size_t need = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
	return back + 1 >= need ? n : i - 1;
}

/* ---- buffers ---- */

void buf_init(struct buf *b, size_t max)
{
	b->p = NULL;
	b->n = b->cap = 0;
	b->max = max ? max : SIZE_MAX;
}

void buf_clear(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->n = b->cap = 0;
}

int buf_reserve(struct buf *b, size_t extra)
{
	if (extra > b->max || b->n > b->max - extra)
		return UMB_ETOOBIG;
	size_t need = b->n + extra + 1; /* + NUL */
	if (need <= b->cap)
		return UMB_OK;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	char *p = realloc(b->p, cap);
	if (!p)
		return UMB_ENOMEM;
	b->p = p;
	b->cap = cap;
	return UMB_OK;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int rc = buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = 0;
	return UMB_OK;
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	char tmp[256];
	int len = vsnprintf(tmp, sizeof tmp, fmt, ap2);
	va_end(ap2);
	if (len < 0)
		return UMB_ERR;
	if ((size_t)len < sizeof tmp)
		return buf_append(b, tmp, (size_t)len);
	int rc = buf_reserve(b, (size_t)len);
	if (rc)
		return rc;
	vsnprintf(b->p + b->n, (size_t)len + 1, fmt, ap);
	b->n += (size_t)len;
	return UMB_OK;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->n) {
		buf_reset(b);
		return;
	}
	memmove(b->p, b->p + n, b->n - n);
	b->n -= n;
	b->p[b->n] = 0;
}

/* ---- arena ---- */

struct arena_block {
	struct arena_block *next;
	size_t used, size;
	_Alignas(16) unsigned char data[];
};

struct arena_cleanup {
	struct arena_cleanup *next;
	arena_cleanup_cb fn;
	void *data;
};

struct arena {
	struct arena_block *head;
	struct arena_cleanup *cleanups;
	size_t block;
};

#define ARENA_DEFAULT_BLOCK 4096

struct arena *arena_new(size_t block)
{
	struct arena *a = umb_calloc(1, sizeof *a);
	a->block = block ? block : ARENA_DEFAULT_BLOCK;
	return a;
}

void arena_free(struct arena *a)
{
	if (!a)
		return;
	for (struct arena_cleanup *c = a->cleanups; c; c = c->next)
		c->fn(c->data); /* newest first: later objects may use earlier ones */
	struct arena_block *b = a->head;
	while (b) {
		struct arena_block *next = b->next;
		free(b);
		b = next;
	}
	free(a);
}

void *arena_alloc(struct arena *a, size_t n)
{
	void *p = arena_alloc_raw(a, n);
	memset(p, 0, n);
	return p;
}

void *arena_alloc_raw(struct arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	struct arena_block *b = a->head;
	if (!b || b->size - b->used < n) {
		/* Big requests get a block of their own so they do not waste
		 * the tail of the current block. */
		size_t size = n > a->block / 2 ? n : a->block;
		struct arena_block *nb = umb_malloc(sizeof *nb + size);
		nb->used = 0;
		nb->size = size;
		if (b && size == n && b->size - b->used >= 64) {
			/* keep the roomier current block at the head */
			nb->next = b->next;
			b->next = nb;
			nb->used = n;
			return nb->data;
		}
		nb->next = b;
		a->head = b = nb;
	}
	void *p = b->data + b->used;
	b->used += n;
	return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc_raw(a, n + 1);
	if (n)
		memcpy(p, s, n);
	p[n] = 0;
	return p;
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
	/* One formatting pass for the common short case. */
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (len < 0)
		return arena_strndup(a, "", 0);
	if ((size_t)len < sizeof tmp)
		return arena_strndup(a, tmp, (size_t)len);
	char *p = arena_alloc_raw(a, (size_t)len + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)len + 1, fmt, ap);
	va_end(ap);
	return p;
}

char *arena_join(struct arena *a, ...)
{
	va_list ap;
	size_t len = 0;
	va_start(ap, a);
	for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
		len += strlen(s);
	va_end(ap);
	char *out = arena_alloc_raw(a, len + 1), *w = out;
	va_start(ap, a);
	for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) {
		size_t n = strlen(s);
		memcpy(w, s, n);
		w += n;
	}
	va_end(ap);
	*w = 0;
	return out;
}

void arena_cleanup_add(struct arena *a, arena_cleanup_cb fn, void *data)
{
	struct arena_cleanup *c = arena_alloc(a, sizeof *c);
	c->fn = fn;
	c->data = data;
	c->next = a->cleanups;
	a->cleanups = c;
}

/* ---- time ---- */

uint64_t clock_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t clock_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void clock_rfc3339(uint64_t wall_ms, char out[32])
{
	/* The seconds part changes once a second: format it then, not for
	 * every log line and audit record (gmtime + strftime cost more than
	 * the rest of a record's timestamp). */
	static _Thread_local uint64_t last_secs = UINT64_MAX;
	static _Thread_local char last[24];
	static _Thread_local size_t last_n;
	uint64_t secs = wall_ms / 1000;
	if (secs != last_secs) {
		time_t t = (time_t)secs;
		struct tm tm;
		gmtime_r(&t, &tm);
		/* strftime keeps the compiler's truncation analysis happy: the
		 * fields are bounded by struct tm's ranges. */
		last_n = strftime(last, sizeof last, "%Y-%m-%dT%H:%M:%S", &tm);
		last_secs = secs;
	}
	unsigned ms = (unsigned)(wall_ms % 1000);
	memcpy(out, last, last_n);
	out[last_n] = '.';
	out[last_n + 1] = (char)('0' + ms / 100);
	out[last_n + 2] = (char)('0' + ms / 10 % 10);
	out[last_n + 3] = (char)('0' + ms % 10);
	out[last_n + 4] = 'Z';
	out[last_n + 5] = 0;
}

int duration_parse_ms(struct str s, uint64_t *out_ms)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = { { "ms", 1 },	    { "s", 1000 },
		      { "m", 60000 },	    { "h", 3600000 },
		      { "d", 86400000 } };
	s = str_trim(s);
	size_t digits = 0;
	while (digits < s.n && s.p[digits] >= '0' && s.p[digits] <= '9')
		digits++;
	uint64_t v;
	if (str_to_u64(str_make(s.p, digits), &v))
		return UMB_ERR;
	struct str suf = str_make(s.p + digits, s.n - digits);
	uint64_t mult = 1;
	if (suf.n) {
		mult = 0;
		for (size_t i = 0; i < UMB_ARRAY_LEN(units); i++)
			if (str_eq_cstr(suf, units[i].suffix))
				mult = units[i].mult;
		if (!mult)
			return UMB_ERR;
	}
	if (v > UINT64_MAX / mult)
		return UMB_ERR;
	*out_ms = v * mult;
	return UMB_OK;
}

/* ---- random ---- */

void rand_bytes(void *p, size_t n)
{
	unsigned char *c = p;
	while (n) {
		ssize_t r = getrandom(c, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			umb_bug(__FILE__, __LINE__, "getrandom failed");
		}
		c += r;
		n -= (size_t)r;
	}
}

uint64_t rand_fast(void)
{
	/* xorshift64*, seeded per thread from the kernel. */
	static _Thread_local uint64_t s;
	if (UMB_UNLIKELY(s == 0)) {
		rand_bytes(&s, sizeof s);
		s |= 1;
	}
	s ^= s >> 12;
	s ^= s << 25;
	s ^= s >> 27;
	return s * 0x2545F4914F6CDD1DULL;
}

/* ---- logging ---- */

enum log_level log_min_level = LOG_INFO;

static const char *const log_level_names[] = { "debug", "info", "warn", "error" };

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < UMB_ARRAY_LEN(log_level_names); i++)
		if (strcmp(s, log_level_names[i]) == 0) {
			*out = (enum log_level)i;
			return UMB_OK;
		}
	return UMB_ERR;
}

void log_write_line(const char *line, size_t n)
{
	/* One write(2) per line: lines from several threads never interleave
	 * (pipes and files guarantee this for writes up to PIPE_BUF, and in
	 * practice for O_APPEND files of any size). */
	char stackbuf[4096];
	char *p = n + 1 <= sizeof stackbuf ? stackbuf : umb_malloc(n + 1);
	memcpy(p, line, n);
	p[n] = '\n';
	size_t off = 0;
	while (off < n + 1) {
		ssize_t w = write(STDERR_FILENO, p + off, n + 1 - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)w;
	}
	if (p != stackbuf)
		free(p);
}

/* Append s as a JSON string body (without quotes) — the logger cannot use
 * core/json.c (json depends on core), so it has its own tiny escaper. */
static void log_escape(struct buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			buf_append(b, e, 2);
		} else if (c < 0x20) {
			buf_printf(b, "\\u%04x", c);
		} else {
			buf_append(b, s, 1);
		}
	}
}

void log_emit(enum log_level lvl, const char *fields, const char *fmt, ...)
{
	if (lvl < log_min_level)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (len >= (int)sizeof msg) /* cut inside a character: drop its head */
		msg[utf8_complete_prefix(msg, sizeof msg - 1)] = 0;
	char ts[32];
	clock_rfc3339(clock_wall_ms(), ts);
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
		   log_level_names[lvl]);
	log_escape(&b, msg);
	buf_append(&b, "\"", 1);
	if (fields && *fields) {
		buf_append(&b, ",", 1);
		buf_append_cstr(&b, fields);
	}
	buf_append(&b, "}", 1);
	log_write_line(b.p, b.n);
	buf_clear(&b);
}

int net_listen(const char *what, const char *host, int port, bool reuseport,
	       int backlog, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char ps[16];
	snprintf(ps, sizeof ps, "%d", port);
	int rc = getaddrinfo(host, ps, &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "%s %s:%d: %s", what, host, port, gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (reuseport)
			setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	}
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, backlog)) {
		snprintf(err, errlen, "%s %s:%d: %s", what, host, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

void net_peer_name(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
		port = ntohs(s4->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
		port = ntohs(s6->sin6_port);
	}
	snprintf(out, cap, "%s:%d", host, port);
}

/* ---- hset ---- */

void hset_init(struct hset *s)
{
	s->v = s->inline_v;
	s->cap = HSET_INLINE;
	s->len = 0;
	s->heap = s->full = false;
	memset(s->inline_v, 0, sizeof s->inline_v);
}

bool hset_add(struct hset *s, uint64_t x)
{
	size_t i;
	if (x == 0)
		x = 1; /* 0 marks an empty slot */
	if (s->full)
		return true;
	if ((s->len + 1) * 4 > s->cap * 3) {
		size_t ncap = s->cap * 2;
		uint64_t *nv = calloc(ncap, sizeof *nv);
		if (!nv) {
			s->full = true;
			return true;
		}
		for (size_t j = 0; j < s->cap; j++) {
			if (!s->v[j])
				continue;
			i = s->v[j] & (ncap - 1);
			while (nv[i])
				i = (i + 1) & (ncap - 1);
			nv[i] = s->v[j];
		}
		if (s->heap)
			free(s->v);
		s->v = nv;
		s->cap = ncap;
		s->heap = true;
	}
	i = x & (s->cap - 1);
	while (s->v[i]) {
		if (s->v[i] == x)
			return false;
		i = (i + 1) & (s->cap - 1);
	}
	s->v[i] = x;
	s->len++;
	return true;
}

void hset_clear(struct hset *s)
{
	if (s->heap)
		free(s->v);
	s->v = s->inline_v;
	s->heap = false;
}
