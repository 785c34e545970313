/* eventstream.c — the AWS binary event-stream decoder and encoder
 * (eventstream.h has the wire layout). */
#include <pthread.h>

#include "providers/eventstream.h"

/* ---- CRC32 (reflected polynomial 0xEDB88320, init and xorout ~0) ---- */

static uint32_t crc_table[4][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* Tables for slicing by 4 bytes at a time. */
static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 4; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
					  crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t es_crc32(uint32_t crc, const void *p, size_t n)
{
	const unsigned char *s = p;
	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (n >= 4) {
		crc ^= (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 |
		       (uint32_t)s[3] << 24;
		crc = crc_table[3][crc & 0xff] ^ crc_table[2][(crc >> 8) & 0xff] ^
		      crc_table[1][(crc >> 16) & 0xff] ^ crc_table[0][crc >> 24];
		s += 4;
		n -= 4;
	}
	while (n--)
		crc = crc_table[0][(crc ^ *s++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- big-endian helpers ---- */

static uint32_t be32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static uint64_t be_n(const char *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | (unsigned char)p[i];
	return v;
}

static void put_be(char *out, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (char)(v >> (8 * (n - 1 - i)));
}

/* ---- parsing ---- */

/* Check a 12-byte prelude against the caps; *total gets the message size. */
static int prelude_check(const char *p, size_t max, uint32_t *total, const char **why)
{
	uint32_t t = be32(p), h = be32(p + 4);
	if (es_crc32(0, p, 8) != be32(p + 8)) {
		*why = "prelude CRC mismatch";
		return UMB_ERR;
	}
	if (t < ES_MIN_MESSAGE) {
		*why = "message shorter than its prelude and CRC";
		return UMB_ERR;
	}
	if (t > max) {
		*why = "message larger than the cap";
		return UMB_ETOOBIG;
	}
	if (h > t - ES_MIN_MESSAGE || h > ES_MAX_HEADERS_LEN) {
		*why = "headers length out of range";
		return UMB_ERR;
	}
	*total = t;
	return UMB_OK;
}

/* Fixed value sizes by type; -1: a 2-byte length prefix; -2: unknown. */
static int value_size(unsigned type)
{
	static const signed char sz[] = { 0, 0, 1, 2, 4, 8, -1, -1, 8, 16 };
	return type < sizeof sz ? sz[type] : -2;
}

/* Decode one header at *pos within p[0..end); advance *pos. */
static int header_parse(const char *p, size_t end, size_t *pos, struct es_header *h,
			const char **why)
{
	size_t i = *pos;
	size_t nl = (unsigned char)p[i++];
	if (nl == 0 || nl + 1 > end - i) {
		*why = nl ? "header name runs past the headers" : "empty header name";
		return UMB_ERR;
	}
	h->name = str_make(p + i, nl);
	i += nl;
	unsigned type = (unsigned char)p[i++];
	int sz = value_size(type);
	if (sz == -2) {
		*why = "unknown header value type";
		return UMB_ERR;
	}
	h->type = (enum es_type)type;
	h->i = 0;
	h->v = STR_NULL;
	size_t vn = (size_t)sz;
	if (sz == -1) {
		if (end - i < 2) {
			*why = "header value length runs past the headers";
			return UMB_ERR;
		}
		vn = (size_t)be_n(p + i, 2);
		i += 2;
	}
	if (vn > end - i) {
		*why = "header value runs past the headers";
		return UMB_ERR;
	}
	if (type == ES_BOOL_TRUE)
		h->i = 1;
	else if (sz == -1 || type == ES_UUID)
		h->v = str_make(p + i, vn);
	else if (vn) /* sign-extend the big-endian integer of vn bytes */
		h->i = (int64_t)(be_n(p + i, vn) << (64 - 8 * vn)) >> (64 - 8 * vn);
	*pos = i + vn;
	return UMB_OK;
}

int es_message_parse(const char *p, size_t n, struct es_message *m, const char **why)
{
	uint32_t total;
	if (n < ES_MIN_MESSAGE) {
		*why = "message shorter than its prelude and CRC";
		return UMB_ERR;
	}
	int rc = prelude_check(p, ES_MAX_MESSAGE, &total, why);
	if (rc)
		return rc;
	if (total != n) {
		*why = "message length does not match its prelude";
		return UMB_ERR;
	}
	if (es_crc32(0, p, n - 4) != be32(p + n - 4)) {
		*why = "message CRC mismatch";
		return UMB_ERR;
	}
	size_t hend = ES_PRELUDE_LEN + be32(p + 4), pos = ES_PRELUDE_LEN;
	m->n_headers = 0;
	while (pos < hend) {
		if (m->n_headers == ES_MAX_HEADERS) {
			*why = "too many headers";
			return UMB_ERR;
		}
		if (header_parse(p, hend, &pos, &m->headers[m->n_headers++], why))
			return UMB_ERR;
	}
	m->payload = str_make(p + hend, n - 4 - hend);
	m->raw = str_make(p, n);
	return UMB_OK;
}

const struct es_header *es_message_header(const struct es_message *m, const char *name)
{
	struct str want = str_cstr(name);
	for (size_t i = 0; i < m->n_headers; i++)
		if (str_eq(m->headers[i].name, want))
			return &m->headers[i];
	return NULL;
}

struct str es_message_str(const struct es_message *m, const char *name)
{
	const struct es_header *h = es_message_header(m, name);
	return h && h->type == ES_STRING ? h->v : STR("");
}

/* ---- the incremental decoder ---- */

void es_decoder_init(struct es_decoder *d, size_t max_message)
{
	if (max_message == 0 || max_message > ES_MAX_MESSAGE)
		max_message = ES_MAX_MESSAGE;
	buf_init(&d->pend, max_message);
	d->max = max_message;
	d->err = 0;
	d->why = NULL;
}

void es_decoder_clear(struct es_decoder *d)
{
	buf_clear(&d->pend);
}

size_t es_decoder_pending(const struct es_decoder *d)
{
	return d->pend.n;
}

static int fail(struct es_decoder *d, int rc)
{
	d->err = rc;
	return rc;
}

/* Parse and deliver one complete message of n bytes. */
static int deliver(struct es_decoder *d, const char *p, size_t n, es_message_cb cb, void *ctx)
{
	struct es_message m;
	if (es_message_parse(p, n, &m, &d->why))
		return fail(d, UMB_ERR);
	int rc = cb(ctx, &m);
	return rc ? fail(d, rc) : UMB_OK;
}

/* Append up to `want` bytes of the input to the pending message. */
static int take(struct es_decoder *d, const char **p, size_t *n, size_t want)
{
	size_t k = UMB_MIN(want, *n);
	int rc = buf_append(&d->pend, *p, k);
	if (rc)
		return rc;
	*p += k;
	*n -= k;
	return UMB_OK;
}

int es_decoder_feed(struct es_decoder *d, const char *p, size_t n, es_message_cb cb, void *ctx)
{
	if (d->err)
		return d->err;
	while (n > 0) {
		uint32_t total;
		int rc;
		if (d->pend.n == 0) {
			/* whole messages straight from the caller's bytes */
			if (n >= ES_PRELUDE_LEN) {
				if ((rc = prelude_check(p, d->max, &total, &d->why)))
					return fail(d, rc);
				if (n >= total) {
					if ((rc = deliver(d, p, total, cb, ctx)))
						return rc;
					p += total;
					n -= total;
					continue;
				}
			}
			if ((rc = take(d, &p, &n, n)))
				return fail(d, rc);
			break;
		}
		/* a message cut across feeds: its prelude first, then the rest */
		if (d->pend.n < ES_PRELUDE_LEN) {
			if ((rc = take(d, &p, &n, ES_PRELUDE_LEN - d->pend.n)))
				return fail(d, rc);
			if (d->pend.n < ES_PRELUDE_LEN)
				break;
		}
		if ((rc = prelude_check(d->pend.p, d->max, &total, &d->why)))
			return fail(d, rc);
		if ((rc = take(d, &p, &n, total - d->pend.n)))
			return fail(d, rc);
		if (d->pend.n < total)
			break;
		rc = deliver(d, d->pend.p, total, cb, ctx);
		buf_reset(&d->pend);
		if (rc)
			return rc;
	}
	return UMB_OK;
}

/* ---- encoding ---- */

/* Bytes one header takes on the wire; 0 if it cannot be encoded. */
static size_t header_size(const struct es_header *h)
{
	int sz = value_size((unsigned)h->type);
	if (h->name.n == 0 || h->name.n > 255 || sz == -2)
		return 0;
	if (sz == -1)
		return h->v.n > 65535 ? 0 : 2 + h->name.n + 2 + h->v.n;
	if (h->type == ES_UUID && h->v.n != 16)
		return 0;
	return 2 + h->name.n + (size_t)sz;
}

static void header_write(char *o, const struct es_header *h)
{
	int sz = value_size((unsigned)h->type);
	*o++ = (char)h->name.n;
	memcpy(o, h->name.p, h->name.n);
	o += h->name.n;
	*o++ = (char)h->type;
	if (sz == -1) {
		put_be(o, h->v.n, 2);
		if (h->v.n)
			memcpy(o + 2, h->v.p, h->v.n);
	} else if (h->type == ES_UUID) {
		memcpy(o, h->v.p, 16);
	} else if (sz > 0) {
		put_be(o, (uint64_t)h->i, (size_t)sz);
	}
}

int es_encode(struct buf *out, const struct es_header *headers, size_t n_headers,
	      struct str payload)
{
	size_t hlen = 0;
	for (size_t i = 0; i < n_headers; i++) {
		size_t s = header_size(&headers[i]);
		if (s == 0)
			return UMB_ERR;
		hlen += s;
	}
	if (hlen > ES_MAX_HEADERS_LEN || payload.n > ES_MAX_MESSAGE)
		return UMB_ERR;
	size_t total = ES_MIN_MESSAGE + hlen + payload.n;
	if (total > ES_MAX_MESSAGE)
		return UMB_ERR;
	int rc = buf_reserve(out, total);
	if (rc)
		return rc;
	char *m = out->p + out->n;
	put_be(m, total, 4);
	put_be(m + 4, hlen, 4);
	put_be(m + 8, es_crc32(0, m, 8), 4);
	char *o = m + ES_PRELUDE_LEN;
	for (size_t i = 0; i < n_headers; i++) {
		header_write(o, &headers[i]);
		o += header_size(&headers[i]);
	}
	if (payload.n)
		memcpy(o, payload.p, payload.n);
	put_be(m + total - 4, es_crc32(0, m, total - 4), 4);
	out->n += total;
	out->p[out->n] = 0;
	return UMB_OK;
}
