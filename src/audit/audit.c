/* audit.c — the audit log writer (chain, checkpoints, rotation, fsync,
 * crash recovery) and its verifier. The line format and the hash and
 * signature definitions are in audit.h; docs/audit.md explains why.
 *
 * Writer invariants (all under l->mu):
 * - l->seq / l->prev are the seq and hash of the last line on disk;
 * - l->size is the live file's size, which ends with "\n" or is 0;
 * - l->last_cp is the seq of the last checkpoint (0 when none), so the
 *   next checkpoint's count is l->seq - l->last_cp.
 * A line is formatted as far as possible outside the lock; under it only
 * the "{type,seq,ts" prefix, the prev member, the hash and write(2). */
#include "audit/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/json.h"

#define HEXLEN AUDIT_HASH_HEX
/* The fixed end of every line: ,"prev":"<hex>","hash":"<hex>"}
 * The hash covers everything before ,"hash": — the prev member included. */
#define SFX_PREV ",\"prev\":\""
#define SFX_HASH ",\"hash\":\""
#define SFX_END "\"}"
#define HASH_TAIL (sizeof(SFX_HASH) - 1 + HEXLEN + sizeof(SFX_END) - 1)
#define SFX_LEN (sizeof(SFX_PREV) - 1 + HEXLEN + 1 + HASH_TAIL)
/* Room kept in front of a request body for {"type":"request","seq":S,"ts":"T" */
#define PREFIX_ROOM 96
/* The longest checkpoint line (~420 bytes signed), rounded up. */
#define CP_ROOM 512
#define SIG_MSG_MAX 128
#define PUB_LEN 32
#define SIG_LEN 64
#define PUB_B64 44
#define SIG_B64 88

static const char ZERO_HASH[HEXLEN + 1] =
	"0000000000000000000000000000000000000000000000000000000000000000";

/* ---- small helpers ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static const char *ossl_err(void)
{
	static _Thread_local char b[160];
	unsigned long e = ERR_get_error();

	if (!e)
		return "unknown OpenSSL error";
	ERR_error_string_n(e, b, sizeof(b));
	ERR_clear_error();
	return b;
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = 0;
}

static bool is_hex64(const char *p)
{
	for (size_t i = 0; i < HEXLEN; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

/* SHA-256 of p[0..n) as hex into out[65], through a reusable context. */
static int sha256_hex(EVP_MD_CTX *ctx, const EVP_MD *md, const void *p, size_t n,
		      char out[HEXLEN + 1])
{
	unsigned char d[32];
	unsigned int dn = 0;

	/* a NULL type reuses the context's digest: no provider lookup and
	 * no reference counting (locks) per record */
	const EVP_MD *cur = EVP_MD_CTX_get0_md(ctx);
	if (EVP_DigestInit_ex2(ctx, cur == md ? NULL : md, NULL) != 1 ||
	    EVP_DigestUpdate(ctx, p, n) != 1 ||
	    EVP_DigestFinal_ex(ctx, d, &dn) != 1 || dn != 32)
		return UMB_ERR;
	hex_encode(d, 32, out);
	return UMB_OK;
}

void audit_payload_hash(const void *p, size_t n, char out[AUDIT_HASH_HEX + 1])
{
	unsigned char d[32];
	unsigned int dn = 0;

	if (EVP_Digest(p, n, d, &dn, EVP_sha256(), NULL) != 1 || dn != 32) {
		out[0] = 0;
		return;
	}
	hex_encode(d, 32, out);
}

/* The message a checkpoint signature covers (audit.h). */
static size_t sig_message(char out[SIG_MSG_MAX], uint64_t seq, uint64_t count,
			  const char *prev)
{
	int n = snprintf(out, SIG_MSG_MAX, "umbra-audit/1\n%" PRIu64 "\n%" PRIu64 "\n%.64s",
			 seq, count, prev);
	return n > 0 && n < SIG_MSG_MAX ? (size_t)n : 0;
}

/* Canonical base64 of exactly `want` bytes: decode, then re-encode and
 * compare, so padding bits and lengths cannot vary. */
static bool b64_decode_exact(struct str s, unsigned char *out, size_t want)
{
	unsigned char tmp[SIG_LEN + 4];
	char re[SIG_B64 + 1];
	size_t enc = 4 * ((want + 2) / 3);

	if (want > SIG_LEN || s.n != enc)
		return false;
	if (EVP_DecodeBlock(tmp, (const unsigned char *)s.p, (int)s.n) < (int)want)
		return false;
	EVP_EncodeBlock((unsigned char *)re, tmp, (int)want);
	if (memcmp(re, s.p, s.n) != 0)
		return false;
	memcpy(out, tmp, want);
	return true;
}

/* The raw public key's fingerprint (hex SHA-256) and base64. */
static int key_ids(EVP_PKEY *k, char fp[HEXLEN + 1], char b64[PUB_B64 + 1])
{
	unsigned char raw[PUB_LEN];
	size_t rn = sizeof(raw);

	if (EVP_PKEY_get_raw_public_key(k, raw, &rn) != 1 || rn != PUB_LEN)
		return UMB_ERR;
	audit_payload_hash(raw, rn, fp);
	if (b64)
		EVP_EncodeBlock((unsigned char *)b64, raw, PUB_LEN);
	return fp[0] ? UMB_OK : UMB_ERR;
}

/* ---- the writer ---- */

struct audit_log {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	pthread_t bg;
	bool bg_running, stop;

	struct audit_opts o;
	char *path;
	int fd;
	uint64_t size;
	uint64_t seq, last_cp;
	char prev[HEXLEN + 1];
	bool dirty;            /* written since the last fdatasync */
	uint64_t last_cp_ns;   /* monotonic time of the last checkpoint */
	bool write_failed;     /* log the first failure only */

	EVP_PKEY *key;
	char key_fp[HEXLEN + 1], key_b64[PUB_B64 + 1];
	EVP_MD_CTX *md_ctx;
	const EVP_MD *md;
	struct buf scratch;    /* checkpoint/recovery lines, under mu */
	struct buf pend;       /* complete request lines not yet written */
	uint64_t pend_ns;      /* when the oldest of them was appended */
	struct audit_stats st;
};

/* Request lines are written in batches: when AUDIT_PEND_MAX bytes wait, or
 * AUDIT_FLUSH_MS after the first one (the background thread), and always
 * before a checkpoint, a rotation or close; with fsync: always, at once.
 * One write(2) per batch instead of per request keeps the log off the
 * request path's critical section. A batch is only ever complete lines. */
#define AUDIT_PEND_MAX (32 * 1024)
#define AUDIT_FLUSH_MS 5

/* Format the "{type,seq,ts" prefix of the next line into out. */
static size_t line_prefix(struct audit_log *l, const char *type, char *out, size_t cap)
{
	char ts[32];

	clock_rfc3339(clock_wall_ms(), ts);
	int n = snprintf(out, cap, "{\"type\":\"%s\",\"seq\":%" PRIu64 ",\"ts\":\"%s\"",
			 type, l->seq + 1, ts);
	UMB_BUG_ON(n <= 0 || (size_t)n >= cap);
	return (size_t)n;
}

/* Finish the line b->p[start..b->n) (prefix and members, no prev): add
 * prev, hash it, add the hash and write it with one write(2). Under mu.
 * On failure the file is cut back to l->size and the state is unchanged.
 * The buffer must have SFX_LEN + 2 bytes of reserved room. */
/* Write the pending lines. A failed write is cut back to the last whole
 * batch and the lines stay pending for the next try. Under mu. */
static int log__flush(struct audit_log *l)
{
	if (!l->pend.n)
		return UMB_OK;
	if (l->fd < 0)
		return UMB_ERR;
	const char *p = l->pend.p;
	size_t n = l->pend.n, done = 0;
	while (done < n) {
		ssize_t w = write(l->fd, p + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = errno;
			/* Never leave half a line: the next line would fuse with it. */
			if (done && ftruncate(l->fd, (off_t)l->size) != 0) {
				log_error("audit: %s: cannot cut a partial write: %s", l->path,
					  strerror(errno));
			}
			if (!l->write_failed)
				log_error("audit: %s: write: %s", l->path, strerror(e));
			l->write_failed = true;
			return UMB_ERR;
		}
		done += (size_t)w;
	}
	l->write_failed = false;
	l->size += n;
	buf_reset(&l->pend);
	l->dirty = true;
	if (l->o.fsync == AUDIT_FSYNC_ALWAYS && fdatasync(l->fd) == 0) {
		l->dirty = false;
		l->st.syncs++;
	}
	return UMB_OK;
}

/* Close the line in b (from start) with prev and hash, and add it to the
 * chain; request lines wait in pend, others are written at once. */
static int log__commit(struct audit_log *l, struct buf *b, size_t start, bool batch)
{
	char h[HEXLEN + 1];

	if (l->fd < 0)
		return UMB_ERR;
	if (buf_append_lit(b, SFX_PREV) || buf_append(b, l->prev, HEXLEN) ||
	    buf_append_lit(b, "\"") ||
	    sha256_hex(l->md_ctx, l->md, b->p + start, b->n - start, h) ||
	    buf_append_lit(b, SFX_HASH) || buf_append(b, h, HEXLEN) ||
	    buf_append_lit(b, SFX_END "\n"))
		return UMB_ERR;
	size_t n = b->n - start;
	bool first = l->pend.n == 0;
	if (buf_append(&l->pend, b->p + start, n))
		return UMB_ERR;
	l->seq++;
	memcpy(l->prev, h, HEXLEN + 1);
	l->st.lines++;
	l->st.bytes += n;
	l->st.seq = l->seq;
	if (!batch || l->o.fsync == AUDIT_FSYNC_ALWAYS || l->pend.n >= AUDIT_PEND_MAX ||
	    !l->bg_running)
		return log__flush(l);
	if (first) {
		l->pend_ns = clock_mono_ns();
		pthread_cond_signal(&l->cond); /* the background thread flushes it */
	}
	return UMB_OK;
}

/* Write a checkpoint covering the lines since the previous one. Under mu. */
static int log__checkpoint(struct audit_log *l)
{
	struct buf *b = &l->scratch;
	uint64_t seq = l->seq + 1, count = l->seq - l->last_cp;
	char pre[PREFIX_ROOM];
	int rc = UMB_ERR;

	buf_reset(b);
	size_t pn = line_prefix(l, "checkpoint", pre, sizeof(pre));
	if (buf_append(b, pre, pn) || buf_printf(b, ",\"count\":%" PRIu64, count))
		return UMB_ERR;
	if (l->key) {
		char msg[SIG_MSG_MAX];
		unsigned char sig[SIG_LEN];
		char sig64[SIG_B64 + 1];
		size_t sn = sizeof(sig), mn = sig_message(msg, seq, count, l->prev);
		EVP_MD_CTX *sc = EVP_MD_CTX_new();

		if (!sc || !mn || EVP_DigestSignInit(sc, NULL, NULL, NULL, l->key) != 1 ||
		    EVP_DigestSign(sc, sig, &sn, (const unsigned char *)msg, mn) != 1 ||
		    sn != SIG_LEN) {
			log_error("audit: checkpoint signing failed: %s", ossl_err());
			EVP_MD_CTX_free(sc);
			return UMB_ERR;
		}
		EVP_MD_CTX_free(sc);
		EVP_EncodeBlock((unsigned char *)sig64, sig, SIG_LEN);
		if (buf_printf(b, ",\"key_fp\":\"%s\",\"pub\":\"%s\",\"sig\":\"%s\"", l->key_fp,
			       l->key_b64, sig64))
			return UMB_ERR;
	}
	if (buf_reserve(b, SFX_LEN + 2) == 0 && log__commit(l, b, 0, false) == 0) {
		l->last_cp = l->seq;
		l->last_cp_ns = clock_mono_ns();
		l->st.checkpoints++;
		rc = UMB_OK;
	}
	return rc;
}

static int log__recovery_line(struct audit_log *l, uint64_t cut)
{
	struct buf *b = &l->scratch;
	char pre[PREFIX_ROOM];

	buf_reset(b);
	size_t pn = line_prefix(l, "recovery", pre, sizeof(pre));
	if (buf_append(b, pre, pn) || buf_printf(b, ",\"cut_bytes\":%" PRIu64, cut) ||
	    buf_reserve(b, SFX_LEN + 2))
		return UMB_ERR;
	return log__commit(l, b, 0, false);
}

static int open_live(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

	if (fd < 0) {
		set_err(err, errlen, "audit: %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		set_err(err, errlen, "audit: %s: %s", path,
			errno == EWOULDBLOCK ? "in use by another process (locked)"
					     : strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static char *rotated_name(const char *path, int i)
{
	size_t n = strlen(path) + 16;
	char *p = umb_malloc(n);

	snprintf(p, n, "%s.%d", path, i);
	return p;
}

/* Checkpoint, sync and close the live file, shift path.i to path.i+1
 * (dropping what passes `keep`), rename the live file to path.1 and start
 * a new one that continues the chain. Under mu. */
static int log__rotate(struct audit_log *l)
{
	char err[256];

	/* A file ends with a checkpoint (one may have just been written). */
	if ((l->seq > l->last_cp && log__checkpoint(l)) || log__flush(l))
		return UMB_ERR;
	if (fdatasync(l->fd) == 0)
		l->st.syncs++;
	close(l->fd);
	l->fd = -1;
	l->dirty = false;
	if (l->o.keep <= 0) {
		unlink(l->path);
	} else {
		char *last = rotated_name(l->path, l->o.keep);
		unlink(last);
		free(last);
		for (int i = l->o.keep - 1; i >= 1; i--) {
			char *from = rotated_name(l->path, i), *to = rotated_name(l->path, i + 1);
			if (rename(from, to) != 0 && errno != ENOENT)
				log_error("audit: rename %s: %s", from, strerror(errno));
			free(from);
			free(to);
		}
		char *one = rotated_name(l->path, 1);
		if (rename(l->path, one) != 0)
			log_error("audit: rename %s: %s", l->path, strerror(errno));
		free(one);
	}
	l->fd = open_live(l->path, err, sizeof(err));
	l->size = 0;
	if (l->fd < 0) {
		log_error("%s", err);
		return UMB_ERR;
	}
	l->st.rotations++;
	return UMB_OK;
}

/* ---- recovery: reading a file's tail backwards ---- */

/* Offset of the last '\n' in [0, end), or -1. */
static int64_t last_nl(int fd, uint64_t end, char *chunk, size_t csz)
{
	while (end > 0) {
		size_t n = (size_t)UMB_MIN((uint64_t)csz, end);
		uint64_t at = end - n;
		ssize_t r = pread(fd, chunk, n, (off_t)at);
		if (r != (ssize_t)n)
			return -2;
		for (size_t i = n; i-- > 0;)
			if (chunk[i] == '\n')
				return (int64_t)(at + i);
		end = at;
	}
	return -1;
}

/* The chain state a file's complete lines end with. */
struct tail {
	uint64_t end;       /* bytes up to and including the last complete line */
	bool any;           /* there is a complete line */
	uint64_t seq, last_cp;
	char hash[HEXLEN + 1];
};

/* Check one line on its own: JSON object, fixed suffix, own hash, seq.
 * Returns the type in *type (a view into p) or NULL with why. */
static const char *line_selfcheck(const char *p, size_t n, EVP_MD_CTX *ctx,
				  const EVP_MD *md, uint64_t *seq, struct str *type,
				  char prev[HEXLEN + 1], char hash[HEXLEN + 1]);

/* If the line at `ls` (in fd, or in chunk when fully inside it) is a
 * checkpoint, its seq into *out and true. */
static bool is_cp_line(int fd, const char *chunk, uint64_t at, size_t n, uint64_t ls,
		       uint64_t end, uint64_t *out)
{
	static const char cp[] = "{\"type\":\"checkpoint\",\"seq\":";
	char w[sizeof(cp) + 24];
	size_t wn = (size_t)UMB_MIN((uint64_t)sizeof(w) - 1, end - ls);

	if (ls >= at && ls + wn <= at + n)
		memcpy(w, chunk + (ls - at), wn);
	else if (pread(fd, w, wn, (off_t)ls) != (ssize_t)wn)
		return false;
	w[wn] = 0;
	if (wn < sizeof(cp) || memcmp(w, cp, sizeof(cp) - 1))
		return false;
	const char *d = w + sizeof(cp) - 1;
	return str_to_u64(str_make(d, strspn(d, "0123456789")), out) == 0;
}

/* Find the seq of the last checkpoint in fd's first `end` bytes (which
 * end with "\n"): scan backwards for a line starting with the checkpoint
 * prefix; at the start of the file, a zero prev means none (0), otherwise
 * the file continues a rotated one, which ended with a checkpoint just
 * before this file's first seq. */
static int scan_last_cp(int fd, uint64_t end, uint64_t *out, char *chunk, size_t csz)
{
	uint64_t e = end;

	while (e > 0) {
		size_t n = (size_t)UMB_MIN((uint64_t)csz, e);
		uint64_t at = e - n;
		if (pread(fd, chunk, n, (off_t)at) != (ssize_t)n)
			return UMB_ERR;
		for (size_t i = n; i-- > 0;) {
			uint64_t ls = at + i + 1;
			if (chunk[i] == '\n' && ls < end && is_cp_line(fd, chunk, at, n, ls, end, out))
				return UMB_OK;
		}
		e = at;
	}
	if (is_cp_line(fd, chunk, 1, 0, 0, end, out))
		return UMB_OK;
	/* The first line: its seq and prev decide. */
	char *nl = NULL;
	size_t ln = 0;
	struct buf whole;
	struct json_val root, v;
	int64_t s;
	int rc = UMB_ERR;

	buf_init(&whole, AUDIT_LINE_MAX + 2);
	if (buf_reserve(&whole, (size_t)UMB_MIN(end, (uint64_t)AUDIT_LINE_MAX + 1)))
		goto out;
	whole.n = (size_t)UMB_MIN(end, (uint64_t)AUDIT_LINE_MAX + 1);
	if (pread(fd, whole.p, whole.n, 0) != (ssize_t)whole.n ||
	    !(nl = memchr(whole.p, '\n', whole.n)))
		goto out;
	ln = (size_t)(nl - whole.p);
	if (ln < SFX_LEN || json_parse(whole.p, ln, &root, NULL) || root.type != JSON_OBJECT ||
	    !json_obj_get(root, "seq", &v) || json_get_i64(v, &s) || s < 1)
		goto out;
	const char *pv = whole.p + ln - SFX_LEN + sizeof(SFX_PREV) - 1;
	*out = memcmp(pv, ZERO_HASH, HEXLEN) == 0 ? 0 : (uint64_t)s - 1;
	rc = UMB_OK;
out:
	buf_clear(&whole);
	return rc;
}

/* Read fd's tail (size bytes): the last complete line must verify; bytes
 * after it are a partial line. `name` is for messages. */
static int read_tail(int fd, uint64_t size, const char *name, EVP_MD_CTX *ctx,
		     const EVP_MD *md, struct tail *t, char *err, size_t errlen)
{
	char *chunk = umb_malloc(65536);
	struct buf line;
	int rc = UMB_ERR;

	buf_init(&line, AUDIT_LINE_MAX + 1);
	memset(t, 0, sizeof(*t));
	int64_t nl = last_nl(fd, size, chunk, 65536);
	if (nl < -1) {
		set_err(err, errlen, "audit: %s: read: %s", name, strerror(errno));
		goto out;
	}
	if (nl == -1) {
		if (size > AUDIT_LINE_MAX) {
			set_err(err, errlen,
				"audit: %s: %" PRIu64 " bytes without a newline: not an audit log",
				name, size);
			goto out;
		}
		rc = UMB_OK; /* no complete line; everything is a partial one */
		goto out;
	}
	if (size - (uint64_t)nl - 1 > AUDIT_LINE_MAX) {
		set_err(err, errlen, "audit: %s: %" PRIu64 " bytes after the last line: not a partial audit line",
			name, size - (uint64_t)nl - 1);
		goto out;
	}
	t->end = (uint64_t)nl + 1;
	int64_t pnl = last_nl(fd, (uint64_t)nl, chunk, 65536);
	if (pnl < -1) {
		set_err(err, errlen, "audit: %s: read: %s", name, strerror(errno));
		goto out;
	}
	uint64_t start = (uint64_t)(pnl + 1);
	size_t ln = (size_t)((uint64_t)nl - start);
	if (ln > AUDIT_LINE_MAX || buf_reserve(&line, ln + 1) ||
	    pread(fd, line.p, ln, (off_t)start) != (ssize_t)ln) {
		set_err(err, errlen, "audit: %s: the last line (at byte %" PRIu64 ") is unreadable or too long",
			name, start);
		goto out;
	}
	line.n = ln;
	struct str type;
	char prev[HEXLEN + 1];
	const char *why = line_selfcheck(line.p, ln, ctx, md, &t->seq, &type, prev, t->hash);
	if (why) {
		set_err(err, errlen,
			"audit: %s: the last complete line (at byte %" PRIu64 ") does not verify: %s; "
			"refusing to continue a broken chain (run `umbra audit verify`)",
			name, start, why);
		goto out;
	}
	t->any = true;
	if (str_eq_cstr(type, "checkpoint")) {
		t->last_cp = t->seq;
	} else if (scan_last_cp(fd, t->end, &t->last_cp, chunk, 65536) || t->last_cp >= t->seq) {
		set_err(err, errlen, "audit: %s: cannot find the last checkpoint", name);
		goto out;
	}
	rc = UMB_OK;
out:
	buf_clear(&line);
	free(chunk);
	return rc;
}

/* Recover the chain state at open (the lock is held, no thread runs). */
static int log__recover(struct audit_log *l, char *err, size_t errlen)
{
	struct stat st;
	struct tail t;

	if (fstat(l->fd, &st) != 0) {
		set_err(err, errlen, "audit: %s: %s", l->path, strerror(errno));
		return UMB_ERR;
	}
	uint64_t size = (uint64_t)st.st_size;
	if (read_tail(l->fd, size, l->path, l->md_ctx, l->md, &t, err, errlen))
		return UMB_ERR;
	uint64_t cut = size - t.end;
	if (!t.any) {
		/* Nothing complete here: continue from path.1 when it exists. */
		char *one = rotated_name(l->path, 1);
		int fd1 = open(one, O_RDONLY | O_CLOEXEC);
		if (fd1 >= 0) {
			struct stat st1;
			int rc = fstat(fd1, &st1) == 0 ? 0 : UMB_ERR;
			if (rc == 0)
				rc = read_tail(fd1, (uint64_t)st1.st_size, one, l->md_ctx, l->md, &t,
					       err, errlen);
			if (rc == 0 && t.end != (uint64_t)st1.st_size) {
				set_err(err, errlen, "audit: %s: ends with a partial line", one);
				rc = UMB_ERR;
			}
			close(fd1);
			if (rc) {
				free(one);
				return UMB_ERR;
			}
		}
		free(one);
		t.end = 0;
	}
	if (t.any) {
		l->seq = t.seq;
		l->last_cp = t.last_cp;
		memcpy(l->prev, t.hash, HEXLEN + 1);
	} else {
		l->seq = l->last_cp = 0;
		memcpy(l->prev, ZERO_HASH, HEXLEN + 1);
	}
	l->size = size - cut;
	if (cut) {
		if (ftruncate(l->fd, (off_t)l->size) != 0) {
			set_err(err, errlen, "audit: %s: truncate: %s", l->path, strerror(errno));
			return UMB_ERR;
		}
		log_warn("audit: %s: cut a partial last line of %" PRIu64 " bytes", l->path, cut);
		l->st.cut_bytes = cut;
		if (log__recovery_line(l, cut) || fdatasync(l->fd) != 0) {
			set_err(err, errlen, "audit: %s: cannot write the recovery line", l->path);
			return UMB_ERR;
		}
	}
	return UMB_OK;
}

/* ---- background thread: interval fsync and timed checkpoints ---- */

static void *bg_main(void *arg)
{
	struct audit_log *l = arg;
	uint64_t fs_ns = (uint64_t)l->o.fsync_interval_ms * 1000000u;
	uint64_t cp_ns = (uint64_t)UMB_MAX(l->o.checkpoint_interval_ms, 0) * 1000000u;
	uint64_t next_fs = clock_mono_ns() + fs_ns;

	pthread_mutex_lock(&l->mu);
	while (!l->stop) {
		uint64_t now = clock_mono_ns(), wake = UINT64_MAX;
		if (l->o.fsync == AUDIT_FSYNC_INTERVAL)
			wake = next_fs;
		if (cp_ns)
			wake = UMB_MIN(wake, l->seq > l->last_cp ? l->last_cp_ns + cp_ns : now + cp_ns);
		if (l->pend.n)
			wake = UMB_MIN(wake, l->pend_ns + AUDIT_FLUSH_MS * 1000000ull);
		if (wake > now) {
			/* cond uses CLOCK_MONOTONIC, the same clock as clock_mono_ns */
			struct timespec ts = { (time_t)(wake / 1000000000u),
					       (long)(wake % 1000000000u) };
			pthread_cond_timedwait(&l->cond, &l->mu, &ts);
			continue;
		}
		if (l->pend.n && now >= l->pend_ns + AUDIT_FLUSH_MS * 1000000ull &&
		    log__flush(l) != UMB_OK)
			l->pend_ns = now; /* the write failed: try again in a while */
		if (l->o.fsync == AUDIT_FSYNC_INTERVAL && now >= next_fs) {
			next_fs = now + fs_ns;
			if (l->dirty && l->fd >= 0) {
				/* Sync a dup so appenders are not held during the sync
				 * and a rotation cannot close the fd under us. */
				int fd = dup(l->fd);
				l->dirty = false;
				pthread_mutex_unlock(&l->mu);
				int ok = fd >= 0 && fdatasync(fd) == 0;
				if (fd >= 0)
					close(fd);
				pthread_mutex_lock(&l->mu);
				if (ok)
					l->st.syncs++;
			}
		}
		if (cp_ns && l->seq > l->last_cp && clock_mono_ns() >= l->last_cp_ns + cp_ns) {
			if (log__checkpoint(l))
				l->last_cp_ns = clock_mono_ns(); /* retry next period */
		}
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/* ---- public writer API ---- */

static EVP_PKEY *load_private_key(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k;

	if (!f) {
		set_err(err, errlen, "audit: key %s: %s", path, strerror(errno));
		return NULL;
	}
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!k) {
		set_err(err, errlen, "audit: key %s: not a PEM private key: %s", path, ossl_err());
		return NULL;
	}
	if (!EVP_PKEY_is_a(k, "ED25519")) {
		set_err(err, errlen, "audit: key %s: not an Ed25519 key (umbra audit keygen makes one)",
			path);
		EVP_PKEY_free(k);
		return NULL;
	}
	return k;
}

struct audit_log *audit_open(const struct audit_opts *o, char *err, size_t errlen)
{
	struct audit_log *l;
	pthread_condattr_t ca;

	if (!o || !o->path || !*o->path) {
		set_err(err, errlen, "audit: no path");
		return NULL;
	}
	l = umb_calloc(1, sizeof(*l));
	l->o = *o;
	l->path = umb_strdup(o->path);
	l->o.path = l->path;
	l->o.key_path = NULL;
	if (l->o.fsync_interval_ms <= 0)
		l->o.fsync_interval_ms = 1000;
	l->fd = -1;
	buf_init(&l->scratch, AUDIT_LINE_MAX);
	buf_init(&l->pend, 0);
	pthread_mutex_init(&l->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cond, &ca);
	pthread_condattr_destroy(&ca);
	l->md = EVP_sha256();
	l->md_ctx = EVP_MD_CTX_new();
	if (!l->md_ctx) {
		set_err(err, errlen, "audit: out of memory");
		goto fail;
	}
	if (o->key_path) {
		if (!(l->key = load_private_key(o->key_path, err, errlen)))
			goto fail;
		if (key_ids(l->key, l->key_fp, l->key_b64)) {
			set_err(err, errlen, "audit: key %s: no raw public key", o->key_path);
			goto fail;
		}
	}
	if ((l->fd = open_live(l->path, err, errlen)) < 0)
		goto fail;
	if (log__recover(l, err, errlen))
		goto fail;
	l->last_cp_ns = clock_mono_ns();
	{ /* always: it also writes the pending lines (AUDIT_FLUSH_MS) */
		if (pthread_create(&l->bg, NULL, bg_main, l) != 0) {
			set_err(err, errlen, "audit: cannot start the background thread");
			goto fail;
		}
		l->bg_running = true;
	}
	return l;
fail:
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	EVP_PKEY_free(l->key);
	EVP_MD_CTX_free(l->md_ctx);
	buf_clear(&l->scratch);
	buf_clear(&l->pend);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->mu);
	free(l->path);
	free(l);
	return NULL;
}

/* Append a string member: ,"key":"value" (or null), lossy and capped. */
static int put_str(struct buf *b, const char *key, const char *v)
{
	if (buf_append_lit(b, ",\"") || buf_append_cstr(b, key) || buf_append_lit(b, "\":"))
		return UMB_ERR;
	if (!v)
		return buf_append_lit(b, "null");
	size_t n = strlen(v);
	if (n > AUDIT_FIELD_MAX)
		n = utf8_complete_prefix(v, AUDIT_FIELD_MAX);
	return json_write_str_lossy(b, str_make(v, n));
}

static double finite_or_zero(double d)
{
	return isfinite(d) ? d : 0.0;
}

/* Everything of a request line after its prefix, into b (outside mu). */
/* v (>= 0, else 0) with at most `decimals` decimals, trailing zeros
 * dropped: "0.000178", "412.337", "0". Values past 2^63 / 10^decimals
 * are written whole. */
static int put_fixed(struct buf *b, double v, int decimals)
{
	char num[32];
	uint64_t scale = 1;
	for (int i = 0; i < decimals; i++)
		scale *= 10;
	if (!(v > 0))
		return buf_append_lit(b, "0");
	if (v >= (double)(UINT64_MAX / scale))
		return buf_printf(b, "%.0f", v);
	uint64_t x = (uint64_t)(v * (double)scale + 0.5);
	int rc = buf_append(b, num, fmt_u64(num, x / scale));
	uint64_t frac = x % scale;
	if (frac) {
		char d[24];
		int n = decimals;
		for (int i = decimals - 1; i >= 0; i--, frac /= 10)
			d[i] = (char)('0' + frac % 10);
		while (n > 0 && d[n - 1] == '0')
			n--;
		rc |= buf_append_lit(b, ".");
		rc |= buf_append(b, d, (size_t)n);
	}
	return rc;
}

static int format_request(struct buf *b, const struct audit_record *r)
{
	int rc = 0;

	rc |= put_str(b, "id", r->id);
	rc |= put_str(b, "identity", r->identity);
	rc |= put_str(b, "team", r->team);
	rc |= put_str(b, "src", r->src);
	rc |= put_str(b, "cert_fp", r->cert_fp);
	rc |= put_str(b, "dialect", r->dialect);
	rc |= put_str(b, "model_requested", r->model_requested);
	rc |= put_str(b, "route", r->route);
	rc |= put_str(b, "route_method", r->route_method);
	rc |= put_str(b, "provider", r->provider);
	rc |= put_str(b, "endpoint", r->endpoint);
	rc |= put_str(b, "model", r->model);
	rc |= put_str(b, "decision", r->decision);
	rc |= put_str(b, "reason", r->reason);
	rc |= buf_append_lit(b, ",\"detectors\":");
	size_t dn = r->detectors_json ? strlen(r->detectors_json) : 0;
	struct json_val dv;
	if (dn && dn <= AUDIT_DETECTORS_MAX && json_parse(r->detectors_json, dn, &dv, NULL) == 0 &&
	    dv.type == JSON_OBJECT) {
		/* Validated; inner whitespace may hold newlines (strings
		 * cannot), and a line must stay one line. */
		size_t at = b->n;
		rc |= buf_append_str(b, dv.raw);
		for (size_t i = at; rc == 0 && i < b->n; i++)
			if (b->p[i] == '\n' || b->p[i] == '\r' || b->p[i] == '\t')
				b->p[i] = ' ';
	} else {
		rc |= buf_append_lit(b, "{}");
	}
	/* numbers by hand: printf's floating point is the costliest part of
	 * a record (bench/README.md, "Governance") */
	char num[32];
	rc |= buf_append_lit(b, ",\"prompt_tokens\":");
	rc |= buf_append(b, num, fmt_u64(num, r->prompt_tokens));
	rc |= buf_append_lit(b, ",\"completion_tokens\":");
	rc |= buf_append(b, num, fmt_u64(num, r->completion_tokens));
	rc |= buf_append_lit(b, ",\"cost_usd\":");
	rc |= put_fixed(b, finite_or_zero(r->cost_usd), 9);
	rc |= buf_append_lit(b, ",\"status\":");
	rc |= buf_append(b, num, fmt_u64(num, (uint64_t)(r->status < 0 ? 0 : r->status)));
	rc |= buf_append_lit(b, ",\"latency_ms\":");
	rc |= put_fixed(b, finite_or_zero(r->latency_ms), 3);
	if (r->payload_hash && strlen(r->payload_hash) == HEXLEN && is_hex64(r->payload_hash))
		rc |= buf_printf(b, ",\"payload_hash\":\"%s\"", r->payload_hash);
	return rc ? UMB_ERR : UMB_OK;
}

int audit_append(struct audit_log *l, const struct audit_record *r)
{
	struct buf b;
	char pre[PREFIX_ROOM];
	int rc = UMB_ERR;

	if (!l || !r || !r->decision ||
	    (strcmp(r->decision, "allow") != 0 && strcmp(r->decision, "deny") != 0))
		return UMB_ERR;
	buf_init(&b, AUDIT_LINE_MAX);
	if (buf_reserve(&b, 1024))
		goto out;
	b.n = PREFIX_ROOM; /* the prefix goes in front, under the lock */
	if (format_request(&b, r) || buf_reserve(&b, SFX_LEN + 2))
		goto out;

	pthread_mutex_lock(&l->mu);
	if (l->fd < 0) {
		char e[256];
		if ((l->fd = open_live(l->path, e, sizeof(e))) < 0) {
			pthread_mutex_unlock(&l->mu);
			goto out;
		}
		struct stat st;
		l->size = fstat(l->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	}
	/* Room for this line and the checkpoint that closes the file. */
	if (l->o.max_bytes && l->size + l->pend.n > 0 &&
	    l->size + l->pend.n + (b.n - PREFIX_ROOM) + PREFIX_ROOM + SFX_LEN + 1 + CP_ROOM >
		    l->o.max_bytes)
		log__rotate(l);
	size_t pn = line_prefix(l, "request", pre, sizeof(pre));
	memcpy(b.p + PREFIX_ROOM - pn, pre, pn);
	rc = log__commit(l, &b, PREFIX_ROOM - pn, true);
	if (rc == 0) {
		l->st.requests++;
		if (l->o.checkpoint_every > 0 &&
		    l->seq - l->last_cp >= (uint64_t)l->o.checkpoint_every)
			log__checkpoint(l);
	}
	pthread_mutex_unlock(&l->mu);
out:
	buf_clear(&b);
	return rc;
}

int audit_checkpoint(struct audit_log *l)
{
	int rc = UMB_OK;

	pthread_mutex_lock(&l->mu);
	if (l->seq > l->last_cp)
		rc = log__checkpoint(l);
	pthread_mutex_unlock(&l->mu);
	return rc;
}

void audit_get_stats(struct audit_log *l, struct audit_stats *out)
{
	pthread_mutex_lock(&l->mu);
	*out = l->st;
	pthread_mutex_unlock(&l->mu);
}

void audit_close(struct audit_log *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = true;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->mu);
	if (l->bg_running)
		pthread_join(l->bg, NULL);
	if (l->fd >= 0) {
		if (l->seq > l->last_cp)
			log__checkpoint(l);
		log__flush(l);
		if (fdatasync(l->fd) != 0)
			log_error("audit: %s: fdatasync: %s", l->path, strerror(errno));
		close(l->fd);
	}
	EVP_PKEY_free(l->key);
	EVP_MD_CTX_free(l->md_ctx);
	buf_clear(&l->scratch);
	buf_clear(&l->pend);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->mu);
	free(l->path);
	free(l);
}

/* ---- keygen ---- */

static int write_excl(const char *path, mode_t mode, const char *p, size_t n, char *err,
		      size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);

	if (fd < 0) {
		set_err(err, errlen, "audit: %s: %s%s", path, strerror(errno),
			errno == EEXIST ? " (refusing to overwrite)" : "");
		return UMB_ERR;
	}
	/* umask may have narrowed the mode; a key must not be wider. */
	bool ok = fchmod(fd, mode) == 0;
	size_t done = 0;
	while (ok && done < n) {
		ssize_t w = write(fd, p + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		ok = w > 0;
		if (ok)
			done += (size_t)w;
	}
	ok = ok && fsync(fd) == 0;
	if (close(fd) != 0)
		ok = false;
	if (!ok) {
		set_err(err, errlen, "audit: %s: write failed: %s", path, strerror(errno));
		unlink(path);
		return UMB_ERR;
	}
	return UMB_OK;
}

/* PEM of k (private or public) into a malloc'ed string. */
static char *pem_of(EVP_PKEY *k, bool priv, size_t *n)
{
	BIO *mem = BIO_new(BIO_s_mem());
	char *p = NULL, *out = NULL;
	long len;

	if (!mem)
		return NULL;
	if ((priv ? PEM_write_bio_PrivateKey(mem, k, NULL, NULL, 0, NULL, NULL)
		  : PEM_write_bio_PUBKEY(mem, k)) == 1 &&
	    (len = BIO_get_mem_data(mem, &p)) > 0) {
		out = umb_strndup(p, (size_t)len);
		*n = (size_t)len;
	}
	BIO_free(mem);
	return out;
}

int audit_keygen(const char *dir, char fp_out[AUDIT_HASH_HEX + 1], char *err, size_t errlen)
{
	EVP_PKEY *k = NULL;
	char *kp = NULL, *pp = NULL, *priv = NULL, *pub = NULL;
	size_t kn = 0, pn = 0, dl = strlen(dir) + 16;
	char fp[HEXLEN + 1];
	int rc = UMB_ERR;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		set_err(err, errlen, "audit: mkdir %s: %s", dir, strerror(errno));
		return UMB_ERR;
	}
	kp = umb_malloc(dl);
	pp = umb_malloc(dl);
	snprintf(kp, dl, "%s/audit.key", dir);
	snprintf(pp, dl, "%s/audit.pub", dir);
	if (access(kp, F_OK) == 0 || access(pp, F_OK) == 0) {
		set_err(err, errlen, "audit: %s or %s exists (refusing to overwrite)", kp, pp);
		goto out;
	}
	if (!(k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) || key_ids(k, fp, NULL) ||
	    !(priv = pem_of(k, true, &kn)) || !(pub = pem_of(k, false, &pn))) {
		set_err(err, errlen, "audit: keygen: %s", ossl_err());
		goto out;
	}
	if (write_excl(kp, 0600, priv, kn, err, errlen))
		goto out;
	if (write_excl(pp, 0644, pub, pn, err, errlen)) {
		unlink(kp);
		goto out;
	}
	if (fp_out)
		memcpy(fp_out, fp, HEXLEN + 1);
	rc = UMB_OK;
out:
	if (priv)
		OPENSSL_cleanse(priv, kn);
	free(priv);
	free(pub);
	free(kp);
	free(pp);
	EVP_PKEY_free(k);
	return rc;
}

/* ---- verification ---- */

#define V_MAX_MEMBERS 64

static const char *line_selfcheck(const char *p, size_t n, EVP_MD_CTX *ctx,
				  const EVP_MD *md, uint64_t *seq, struct str *type,
				  char prev[HEXLEN + 1], char hash[HEXLEN + 1])
{
	struct json_member m[V_MAX_MEMBERS];
	size_t nm = 0;
	struct json_val root, v;
	char h[HEXLEN + 1];
	int64_t s;

	if (n == 0)
		return "empty line";
	if (n > AUDIT_LINE_MAX)
		return "line too long";
	if (json_parse_top(p, n, m, V_MAX_MEMBERS, &nm, &root, NULL) || root.type != JSON_OBJECT ||
	    root.raw.p != p || root.raw.n != n)
		return "not a JSON object line";
	for (size_t i = 0; i < nm; i++)
		for (size_t j = i + 1; j < nm; j++)
			if (str_eq(m[i].key_raw, m[j].key_raw))
				return "duplicate member";
	/* The fixed order the writer uses (its recovery scan relies on it). */
	if (nm < 4 || !str_eq_cstr(m[0].key_raw, "type") || !str_eq_cstr(m[1].key_raw, "seq") ||
	    p[1] != '"')
		return "the line does not start with the type and seq members";
	if (n < SFX_LEN + 2)
		return "the line does not end with the prev and hash members";
	const char *sfx = p + n - SFX_LEN;
	if (memcmp(sfx, SFX_PREV, sizeof(SFX_PREV) - 1) || !is_hex64(sfx + sizeof(SFX_PREV) - 1) ||
	    sfx[sizeof(SFX_PREV) - 1 + HEXLEN] != '"' ||
	    memcmp(p + n - HASH_TAIL, SFX_HASH, sizeof(SFX_HASH) - 1) ||
	    !is_hex64(p + n - 2 - HEXLEN))
		return "the line does not end with the prev and hash members";
	if (sha256_hex(ctx, md, p, n - HASH_TAIL, h))
		return "hashing failed";
	if (memcmp(h, p + n - 2 - HEXLEN, HEXLEN) != 0)
		return "hash mismatch: the line was edited";
	memcpy(hash, h, HEXLEN + 1);
	memcpy(prev, sfx + sizeof(SFX_PREV) - 1, HEXLEN);
	prev[HEXLEN] = 0;
	if (!json_obj_get(root, "seq", &v) || json_get_i64(v, &s) || s < 1)
		return "no valid seq";
	*seq = (uint64_t)s;
	if (!json_obj_get(root, "type", &v) || v.type != JSON_STRING || v.raw.n < 2)
		return "no type";
	*type = str_make(v.raw.p + 1, v.raw.n - 2);
	if (!str_eq_cstr(*type, "request") && !str_eq_cstr(*type, "checkpoint") &&
	    !str_eq_cstr(*type, "recovery"))
		return "unknown type";
	return NULL;
}

struct vstate {
	FILE *report;
	int flags;
	EVP_PKEY *pin;                 /* --pubkey */
	char pin_fp[HEXLEN + 1];
	char fp[HEXLEN + 1];           /* the key the checkpoints use */
	bool have_fp;
	EVP_MD_CTX *md_ctx;
	const EVP_MD *md;

	const char *name;              /* the current file */
	uint64_t lineno;
	struct buf part;               /* a line split across reads */
	bool failed, io_error;

	bool started, mid_chain, cp_known;
	uint64_t seq, first_seq, last_cp, since_start;
	char prev[HEXLEN + 1], first_prev[HEXLEN + 1];
	uint64_t lines, requests, checkpoints, signed_cps, recoveries, cut;
	uint64_t last_signed, after_signed;
	bool last_is_signed_cp;
	const char *last_name;         /* where the last line was, for --strict */
	uint64_t last_lineno;
	size_t files;
};

static void vfail(struct vstate *v, const char *seq, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void vfail(struct vstate *v, const char *seq, const char *fmt, ...)
{
	va_list ap;

	v->failed = true;
	if (!v->report)
		return;
	fprintf(v->report, "%s:%" PRIu64 ": seq %s: ", v->name, v->lineno, seq);
	va_start(ap, fmt);
	vfprintf(v->report, fmt, ap);
	va_end(ap);
	fputc('\n', v->report);
}

static bool member_str(struct json_val root, const char *key, struct str *out)
{
	struct json_val m;

	if (!json_obj_get(root, key, &m) || m.type != JSON_STRING || m.raw.n < 2)
		return false;
	*out = str_make(m.raw.p + 1, m.raw.n - 2);
	return memchr(out->p, '\\', out->n) == NULL; /* our values never need escapes */
}

static bool member_u64(struct json_val root, const char *key, uint64_t *out)
{
	struct json_val m;
	int64_t x;

	if (!json_obj_get(root, key, &m) || json_get_i64(m, &x) || x < 0)
		return false;
	*out = (uint64_t)x;
	return true;
}

/* A checkpoint's count and signature (the line's hash already verified). */
static void v_checkpoint(struct vstate *v, struct json_val root, uint64_t seq, const char *ss,
			 const char *prev)
{
	uint64_t count;
	struct str fp, pub, sig;

	if (!member_u64(root, "count", &count)) {
		vfail(v, ss, "checkpoint without a valid count");
		return;
	}
	uint64_t want = seq - v->last_cp - 1;
	if (v->cp_known ? count != want : count < v->since_start) {
		vfail(v, ss, "checkpoint count %" PRIu64 " does not match the %" PRIu64
			     " lines since the previous checkpoint",
		      count, v->cp_known ? want : v->since_start);
		return;
	}
	bool hf = member_str(root, "key_fp", &fp), hp = member_str(root, "pub", &pub),
	     hs = member_str(root, "sig", &sig);
	struct json_val tmp;
	if (!hs && !json_obj_get(root, "sig", &tmp) && !json_obj_get(root, "key_fp", &tmp) &&
	    !json_obj_get(root, "pub", &tmp)) {
		if (v->pin) {
			vfail(v, ss, "checkpoint is not signed (--pubkey was given)");
			return;
		}
		v->last_is_signed_cp = false;
		return; /* an unsigned checkpoint: chained, counted, no signature */
	}
	unsigned char rawpub[PUB_LEN], rawsig[SIG_LEN];
	char fpc[HEXLEN + 1];
	if (!hf || !hp || !hs || fp.n != HEXLEN || !is_hex64(fp.p) ||
	    !b64_decode_exact(pub, rawpub, PUB_LEN) || !b64_decode_exact(sig, rawsig, SIG_LEN)) {
		vfail(v, ss, "checkpoint signature members are malformed");
		return;
	}
	audit_payload_hash(rawpub, PUB_LEN, fpc);
	if (memcmp(fpc, fp.p, HEXLEN) != 0) {
		vfail(v, ss, "checkpoint key_fp does not match its pub");
		return;
	}
	if (v->pin && memcmp(fp.p, v->pin_fp, HEXLEN) != 0) {
		vfail(v, ss, "checkpoint signed by key %.16s..., not the --pubkey key %.16s...",
		      fp.p, v->pin_fp);
		return;
	}
	if (!v->pin && v->have_fp && memcmp(fp.p, v->fp, HEXLEN) != 0) {
		vfail(v, ss, "checkpoint key changed from %.16s... to %.16s...", v->fp, fp.p);
		return;
	}
	memcpy(v->fp, fp.p, HEXLEN);
	v->fp[HEXLEN] = 0;
	v->have_fp = true;

	char msg[SIG_MSG_MAX];
	size_t mn = sig_message(msg, seq, count, prev);
	EVP_PKEY *k = v->pin ? v->pin
			     : EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, rawpub, PUB_LEN);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	bool ok = k && c && mn && EVP_DigestVerifyInit(c, NULL, NULL, NULL, k) == 1 &&
		  EVP_DigestVerify(c, rawsig, SIG_LEN, (const unsigned char *)msg, mn) == 1;
	ERR_clear_error();
	EVP_MD_CTX_free(c);
	if (k != v->pin)
		EVP_PKEY_free(k);
	if (!ok) {
		vfail(v, ss, "bad checkpoint signature");
		return;
	}
	v->signed_cps++;
	v->last_signed = seq;
	v->after_signed = 0;
	v->last_is_signed_cp = true;
}

/* One complete line (without its newline). */
static void v_line(struct vstate *v, const char *p, size_t n)
{
	struct json_member m[V_MAX_MEMBERS];
	size_t nm = 0;
	struct json_val root;
	uint64_t seq = 0;
	struct str type;
	char prev[HEXLEN + 1], hash[HEXLEN + 1], ss[24] = "?";

	v->lineno++;
	/* The seq for messages, even when the line is damaged. */
	if (n <= AUDIT_LINE_MAX && json_parse_top(p, n, m, V_MAX_MEMBERS, &nm, &root, NULL) == 0 &&
	    root.type == JSON_OBJECT) {
		uint64_t s;
		if (member_u64(root, "seq", &s))
			snprintf(ss, sizeof(ss), "%" PRIu64, s);
	}
	const char *why = line_selfcheck(p, n, v->md_ctx, v->md, &seq, &type, prev, hash);
	if (why) {
		vfail(v, ss, "%s", why);
		return;
	}
	if (!v->started) {
		v->started = true;
		v->first_seq = seq;
		memcpy(v->first_prev, prev, HEXLEN + 1);
		if (memcmp(prev, ZERO_HASH, HEXLEN) == 0) {
			if (seq != 1) {
				vfail(v, ss, "a chain start (zero prev) must have seq 1");
				return;
			}
			v->cp_known = true;
			v->last_cp = 0;
		} else {
			/* A continuation file: rotation always writes a checkpoint
			 * last, so the previous checkpoint is the line before. */
			v->mid_chain = true;
			v->cp_known = true;
			v->last_cp = seq - 1;
		}
	} else {
		uint64_t exp = v->seq + 1;
		bool prev_ok = memcmp(prev, v->prev, HEXLEN) == 0;
		if (seq > exp) {
			vfail(v, ss, "seq gap: expected %" PRIu64 ", found %" PRIu64
				     " (lines deleted)%s",
			      exp, seq, prev_ok ? "" : "; prev does not match the previous line's hash");
			return;
		}
		if (seq < exp) {
			vfail(v, ss, "seq goes back: expected %" PRIu64 ", found %" PRIu64
				     " (lines inserted, duplicated or reordered)",
			      exp, seq);
			return;
		}
		if (!prev_ok) {
			vfail(v, ss, "prev does not match the previous line's hash "
				     "(a line was inserted, replaced or removed before it)");
			return;
		}
	}
	v->last_is_signed_cp = false;
	if (str_eq_cstr(type, "checkpoint")) {
		v_checkpoint(v, root, seq, ss, prev);
		if (v->failed)
			return;
		v->checkpoints++;
		v->cp_known = true;
		v->last_cp = seq;
	} else if (str_eq_cstr(type, "recovery")) {
		uint64_t c;
		if (!member_u64(root, "cut_bytes", &c)) {
			vfail(v, ss, "recovery line without a valid cut_bytes");
			return;
		}
		v->recoveries++;
		v->cut += c;
	} else {
		v->requests++;
	}
	if (!v->last_is_signed_cp)
		v->after_signed++;
	v->seq = seq;
	memcpy(v->prev, hash, HEXLEN + 1);
	v->lines++;
	v->since_start++;
	v->last_name = v->name;
	v->last_lineno = v->lineno;
}

/* Feed a file's bytes in any pieces; lines split across pieces wait in
 * v->part (capped: a longer line fails). */
static void v_bytes(struct vstate *v, const char *p, size_t n)
{
	while (n && !v->failed) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;
		if (v->part.n || !nl) {
			if (v->part.n + take > AUDIT_LINE_MAX || buf_append(&v->part, p, take)) {
				v->lineno++;
				vfail(v, "?", "line too long (over %d bytes)", AUDIT_LINE_MAX);
				return;
			}
			if (nl) {
				v_line(v, v->part.p, v->part.n);
				buf_reset(&v->part);
			}
		} else {
			v_line(v, p, take);
		}
		if (!nl)
			return;
		p += take + 1;
		n -= take + 1;
	}
}

static void v_file_begin(struct vstate *v, const char *name)
{
	v->name = name;
	v->lineno = 0;
	buf_reset(&v->part);
	v->files++;
}

static void v_file_end(struct vstate *v)
{
	if (v->failed || !v->part.n)
		return;
	char after[32];
	snprintf(after, sizeof(after), "? (after %" PRIu64 ")", v->seq);
	v->lineno++;
	vfail(v, after, "truncated: partial last line (%zu bytes without a newline)", v->part.n);
}

static void v_init(struct vstate *v, FILE *report, int flags)
{
	memset(v, 0, sizeof(*v));
	v->report = report;
	v->flags = flags;
	v->name = "-";
	v->md = EVP_sha256();
	v->md_ctx = EVP_MD_CTX_new();
	buf_init(&v->part, AUDIT_LINE_MAX + 1);
}

static void v_clear(struct vstate *v)
{
	EVP_MD_CTX_free(v->md_ctx);
	EVP_PKEY_free(v->pin);
	buf_clear(&v->part);
}

/* Pin the key from PEM text: a public key or a private one. */
static int v_pin(struct vstate *v, const char *pem, size_t n, const char *name)
{
	BIO *b = BIO_new_mem_buf(pem, (int)UMB_MIN(n, (size_t)INT32_MAX));
	EVP_PKEY *k = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;

	if (!k && b) {
		BIO_free(b);
		b = BIO_new_mem_buf(pem, (int)UMB_MIN(n, (size_t)INT32_MAX));
		k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	}
	BIO_free(b);
	ERR_clear_error();
	if (!k || !EVP_PKEY_is_a(k, "ED25519") || key_ids(k, v->pin_fp, NULL)) {
		if (v->report)
			fprintf(v->report, "%s: not an Ed25519 PEM key\n", name);
		EVP_PKEY_free(k);
		return UMB_ERR;
	}
	v->pin = k;
	return UMB_OK;
}

/* The verdict: 0 intact (summary printed), 1 broken, 2 I/O. */
static int v_finish(struct vstate *v)
{
	if (v->io_error)
		return 2;
	if (!v->failed && (v->flags & AUDIT_VERIFY_STRICT) && !v->last_is_signed_cp) {
		char ss[24];
		snprintf(ss, sizeof(ss), "%" PRIu64, v->seq);
		v->name = v->last_name ? v->last_name : v->name;
		v->lineno = v->last_lineno;
		vfail(v, ss, "--strict: the log does not end with a signed checkpoint "
			     "(%" PRIu64 " lines after the last one)",
		      v->after_signed);
	}
	if (v->failed)
		return 1;
	FILE *r = v->report;
	if (!r)
		return 0;
	fprintf(r, "audit verify: OK: %zu file%s, %" PRIu64 " lines (%" PRIu64 " requests, %" PRIu64
		   " checkpoints, %" PRIu64 " recoveries",
		v->files, v->files == 1 ? "" : "s", v->lines, v->requests, v->checkpoints,
		v->recoveries);
	if (v->recoveries)
		fprintf(r, " cutting %" PRIu64 " bytes", v->cut);
	fprintf(r, ")");
	if (v->lines)
		fprintf(r, ", seq %" PRIu64 "..%" PRIu64, v->first_seq, v->seq);
	fprintf(r, "\n");
	if (v->mid_chain)
		fprintf(r, "note: the chain starts at seq %" PRIu64 " after hash %.16s... "
			   "(earlier files not given; lines before them cannot be checked)\n",
			v->first_seq, v->first_prev);
	if (v->signed_cps)
		fprintf(r, "signatures: %" PRIu64 " signed checkpoints, last signed seq %" PRIu64
			   ", key %.16s... (%s)\n",
			v->signed_cps, v->last_signed, v->fp,
			v->pin ? "matches --pubkey" : "not pinned: pass --pubkey to authenticate");
	else
		fprintf(r, "signatures: none (last signed seq: none)\n");
	fprintf(r, "unsigned: %" PRIu64 " line%s after the last signed checkpoint %s not covered "
		   "by a signature%s\n",
		v->after_signed, v->after_signed == 1 ? "" : "s",
		v->after_signed == 1 ? "is" : "are",
		v->after_signed ? " (lines cut from the end of the log cannot be detected)" : "");
	return 0;
}

int audit_verify_mem(const struct str *files, const char *const *names, size_t n,
		     const char *pubkey_pem, size_t pem_len, int flags, FILE *report)
{
	struct vstate v;
	int rc;

	v_init(&v, report, flags);
	if (pubkey_pem && v_pin(&v, pubkey_pem, pem_len, "--pubkey")) {
		v_clear(&v);
		return 2;
	}
	for (size_t i = 0; i < n && !v.failed; i++) {
		v_file_begin(&v, names && names[i] ? names[i] : "-");
		v_bytes(&v, files[i].p, files[i].n);
		v_file_end(&v);
	}
	rc = v_finish(&v);
	v_clear(&v);
	return rc;
}

int audit_verify(const char *const *files, size_t n, const char *pubkey_path, int flags,
		 FILE *report)
{
	struct vstate v;
	char *chunk = NULL;
	int rc;

	v_init(&v, report, flags);
	if (pubkey_path) {
		FILE *f = fopen(pubkey_path, "r");
		char pem[16384];
		size_t pn = f ? fread(pem, 1, sizeof(pem), f) : 0;
		if (f)
			fclose(f);
		if (!f || v_pin(&v, pem, pn, pubkey_path)) {
			if (!f && report)
				fprintf(report, "%s: %s\n", pubkey_path, strerror(errno));
			v_clear(&v);
			return 2;
		}
	}
	chunk = umb_malloc(1 << 20);
	for (size_t i = 0; i < n && !v.failed; i++) {
		FILE *f = fopen(files[i], "r");
		if (!f) {
			if (report)
				fprintf(report, "%s: %s\n", files[i], strerror(errno));
			v.io_error = true;
			break;
		}
		v_file_begin(&v, files[i]);
		size_t got;
		while (!v.failed && (got = fread(chunk, 1, 1 << 20, f)) > 0)
			v_bytes(&v, chunk, got);
		if (ferror(f)) {
			if (report)
				fprintf(report, "%s: read error\n", files[i]);
			v.io_error = true;
		}
		fclose(f);
		if (v.io_error)
			break;
		v_file_end(&v);
	}
	free(chunk);
	rc = v_finish(&v);
	v_clear(&v);
	return rc;
}
