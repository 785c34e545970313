/* core.h — the small vocabulary every umbra module shares: string views,
 * capped buffers, request arenas, error codes, clocks and logging. */
#ifndef UMB_CORE_H
#define UMB_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Return codes: 0 is OK, negative is an error. */
enum {
	UMB_OK = 0,
	UMB_ERR = -1,     /* generic failure, detail in an out-parameter */
	UMB_AGAIN = -2,   /* not enough input yet / would block */
	UMB_ENOMEM = -3,  /* allocation failed */
	UMB_ETOOBIG = -4, /* a capped buffer would exceed its cap */
};

#define UMB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define UMB_MIN(a, b) ((a) < (b) ? (a) : (b))
#define UMB_MAX(a, b) ((a) > (b) ? (a) : (b))
#define UMB_UNUSED(x) ((void)(x))
#define UMB_LIKELY(x) __builtin_expect(!!(x), 1)
#define UMB_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Invariant check: a violated invariant is a bug, so abort loudly. */
#define UMB_BUG_ON(cond)                                                      \
	do {                                                                  \
		if (UMB_UNLIKELY(cond))                                       \
			umb_bug(__FILE__, __LINE__, #cond);                   \
	} while (0)
_Noreturn void umb_bug(const char *file, int line, const char *what);

/* ---- string view: bytes that are not NUL-terminated ---- */

/** A borrowed byte range; the owner of the bytes outlives the view. */
struct str {
	const char *p;
	size_t n;
};

#define STR(lit) ((struct str){ (lit), sizeof(lit) - 1 })
#define STR_NULL ((struct str){ NULL, 0 })
#define STR_FMT(s) (int)(s).n, (s).p /* printf("%.*s", STR_FMT(s)) */

static inline struct str str_make(const char *p, size_t n)
{
	return (struct str){ p, n };
}
static inline struct str str_cstr(const char *s)
{
	return (struct str){ s, s ? strlen(s) : 0 };
}
static inline bool str_eq(struct str a, struct str b)
{
	return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}
static inline bool str_eq_cstr(struct str a, const char *b)
{
	return str_eq(a, str_cstr(b));
}
/** ASCII case-insensitive equality (header names, tokens). */
bool str_ieq(struct str a, struct str b);
/** Trim ASCII spaces and tabs at both ends. */
struct str str_trim(struct str s);
/** Write v in decimal to out[20] (no NUL); returns the length. */
size_t fmt_u64(char *out, uint64_t v);
/** Parse a non-negative decimal; returns UMB_ERR on junk or overflow. */
int str_to_u64(struct str s, uint64_t *out);
/** Length of the longest prefix of p[0..n) that does not end inside a
 * UTF-8 sequence (for cutting text to a size without breaking it). */
size_t utf8_complete_prefix(const char *p, size_t n);
/** Shell-style glob match supporting '*' and '?'. */
bool str_glob(const char *pattern, struct str s);

/* ---- capped growable buffer ---- */

/** A growable byte buffer with a hard cap (`max`, 0 = SIZE_MAX). Growing
 * past the cap fails with UMB_ETOOBIG, which callers map to 413 or 502.
 * The content is always followed by a NUL byte (not counted in n) so it
 * can be handed to C APIs. */
struct buf {
	char *p;
	size_t n, cap, max;
};

void buf_init(struct buf *b, size_t max);
void buf_clear(struct buf *b); /* frees memory, keeps max */
static inline void buf_reset(struct buf *b)
{
	b->n = 0;
	if (b->p)
		b->p[0] = 0;
}
/** Make room for `extra` more bytes; UMB_ETOOBIG or UMB_ENOMEM on failure. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
static inline int buf_append_str(struct buf *b, struct str s)
{
	return buf_append(b, s.p, s.n);
}
/** Append a string literal (its length known at compile time). */
#define buf_append_lit(b, lit) buf_append((b), (lit), sizeof(lit) - 1)
static inline int buf_append_cstr(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/** Drop the first n bytes (consumed input). */
void buf_consume(struct buf *b, size_t n);
static inline struct str buf_str(const struct buf *b)
{
	return (struct str){ b->p, b->n };
}

/* ---- hset: distinct 64-bit hashes ---- */

/** Values held inline before the set moves to the heap (3/4 of this). */
#define HSET_INLINE 256

/** A set of 64-bit hashes for counting distinct values: open addressing in
 * inline storage first, doubling on the heap past 3/4 full. When it cannot
 * grow it stops de-duplicating, so counts err high, never low. */
struct hset {
	uint64_t *v;
	size_t cap, len;
	bool heap, full;
	uint64_t inline_v[HSET_INLINE];
};

void hset_init(struct hset *s);
/** Add x; true if it was not there yet (or the set is full). */
bool hset_add(struct hset *s, uint64_t x);
/** Free the heap part; the set must be hset_init'ed again to be reused. */
void hset_clear(struct hset *s);

/* ---- arena: request-scoped memory with cleanup hooks ---- */

struct arena;
typedef void (*arena_cleanup_cb)(void *data);

/** A new arena whose blocks are `block` bytes (0 picks the default). */
struct arena *arena_new(size_t block);
/** Run cleanup hooks in reverse order, then free all memory. */
void arena_free(struct arena *a);
/** Aligned allocation; never returns NULL (aborts on OOM). Zeroed. */
void *arena_alloc(struct arena *a, size_t n);
/** Same, not zeroed: for buffers the caller fills completely. */
void *arena_alloc_raw(struct arena *a, size_t n);
char *arena_strndup(struct arena *a, const char *s, size_t n);
static inline char *arena_strdup_str(struct arena *a, struct str s)
{
	return arena_strndup(a, s.p, s.n);
}
char *arena_printf(struct arena *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/** Concatenate NUL-terminated strings (the list ends with NULL). */
char *arena_join(struct arena *a, ...) __attribute__((sentinel));
/** Register fn(data) to run when the arena is freed. */
void arena_cleanup_add(struct arena *a, arena_cleanup_cb fn, void *data);

/* ---- allocation that aborts on OOM (config, long-lived state) ---- */
void *umb_malloc(size_t n);
void *umb_calloc(size_t n, size_t sz);
void *umb_realloc(void *p, size_t n);
char *umb_strdup(const char *s);
char *umb_strndup(const char *s, size_t n);

/* ---- time ---- */

/** Monotonic clock in nanoseconds. */
/** A non-blocking, close-on-exec TCP listener on host:port (SO_REUSEADDR,
 * and SO_REUSEPORT when asked: one listener per worker); -1 with err
 * ("WHAT HOST:PORT: reason") on failure. */
int net_listen(const char *what, const char *host, int port, bool reuseport,
	       int backlog, char *err, size_t errlen);
/** "addr:port" of a peer (IPv4 or IPv6), "?:0" otherwise. */
struct sockaddr_storage;
void net_peer_name(const struct sockaddr_storage *ss, char *out, size_t cap);

uint64_t clock_mono_ns(void);
/** Wall clock in milliseconds since the epoch. */
uint64_t clock_wall_ms(void);
/** Format wall-clock ms as RFC 3339 UTC with milliseconds into out[32]. */
void clock_rfc3339(uint64_t wall_ms, char out[32]);
/** Parse "500ms", "30s", "5m", "4h", "90d" into ms; bare numbers are ms. */
int duration_parse_ms(struct str s, uint64_t *out_ms);

/* ---- random ---- */

/** Fill with cryptographically strong random bytes (getrandom). */
void rand_bytes(void *p, size_t n);
/** Fast non-crypto per-thread PRNG for jitter and load spreading. */
uint64_t rand_fast(void);

/* ---- logging: one JSON object per line on stderr ---- */

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
extern enum log_level log_min_level;

/** Parse "debug|info|warn|error"; UMB_ERR if unknown. */
int log_level_parse(const char *s, enum log_level *out);
/** Log a message: {"ts","level","msg"} plus `fields`, raw JSON members
 * ("\"k\":v,...") or NULL. Checks the level before formatting. */
void log_emit(enum log_level lvl, const char *fields, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define log_debug(...) do { if (log_min_level <= LOG_DEBUG) log_emit(LOG_DEBUG, NULL, __VA_ARGS__); } while (0)
#define log_info(...) do { if (log_min_level <= LOG_INFO) log_emit(LOG_INFO, NULL, __VA_ARGS__); } while (0)
#define log_warn(...) do { if (log_min_level <= LOG_WARN) log_emit(LOG_WARN, NULL, __VA_ARGS__); } while (0)
#define log_error(...) log_emit(LOG_ERROR, NULL, __VA_ARGS__)
/** Write a complete prepared line (without newline) atomically. */
void log_write_line(const char *line, size_t n);

#endif
