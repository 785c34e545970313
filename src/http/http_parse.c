/* http_parse.c — HTTP/1.1 request head parser and chunked body decoder.
 *
 * The head parser makes one pass over the bytes with a table lookup per
 * byte and no allocation. It is restartable only from the beginning: the
 * caller calls it again on the whole buffer when more bytes arrive, which
 * is cheap next to a syscall, and keeps the parser stateless.
 *
 * The chunked decoder is a byte-level state machine that copies chunk data
 * in bulk, so it resumes at any split of the input. */
#include <limits.h>

#include "http/http_parse.h"

/* Byte classes: one lookup decides each byte of the hot loops. */
enum {
	HC_TCHAR = 1, /* token (RFC 9110 §5.6.2): method, header name */
	HC_VCHAR = 2, /* visible ASCII: request-target */
	HC_FIELD = 4, /* field-content: VCHAR, SP, HTAB, obs-text */
};

static const unsigned char http_cls[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	4, 7, 6, 7, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 6,
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6,
	6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 7, 7,
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 7, 6, 7, 0,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

static inline unsigned char http__lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* Compare a view with a lowercase literal, ignoring ASCII case. Kept local
 * so the parser does not depend on core.c for its hot path. */
static bool http__ieq(const char *p, size_t n, const char *lower, size_t ln)
{
	if (n != ln)
		return false;
	for (size_t i = 0; i < n; i++)
		if (http__lower((unsigned char)p[i]) != (unsigned char)lower[i])
			return false;
	return true;
}

#define HTTP_IEQ(p, n, lit) http__ieq((p), (n), lit, sizeof(lit) - 1)

static inline bool http__ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Skip field-content (VCHAR, SP, HTAB, obs-text) from p. Values are most
 * of a head's bytes, so test eight at a time for a byte below 0x20 or a
 * DEL (the classic "has less than" / "has zero" word tricks; they can
 * report a false hit, never miss one) and finish byte by byte from there. */
static inline const unsigned char *http__skip_field(const unsigned char *p,
						    const unsigned char *end)
{
	const uint64_t ones = 0x0101010101010101ull;
	const uint64_t high = 0x8080808080808080ull;

	while (end - p >= 8) {
		uint64_t x, del;

		memcpy(&x, p, 8);
		del = x ^ (ones * 0x7f);
		if (((x - ones * 0x20) & ~x & high) |
		    ((del - ones) & ~del & high))
			break;
		p += 8;
	}
	while (p < end && (http_cls[*p] & HC_FIELD))
		p++;
	return p;
}

/* Consume one line ending at *pp: CRLF or a bare LF (RFC 9112 §2.2), never
 * a bare CR. Returns 0, UMB_AGAIN when the ending is cut off, or UMB_ERR. */
static inline int http__eol(const unsigned char **pp, const unsigned char *end)
{
	const unsigned char *p = *pp;

	if (p == end)
		return UMB_AGAIN;
	if (*p == '\n') {
		*pp = p + 1;
		return 0;
	}
	if (*p == '\r') {
		if (p + 1 == end)
			return UMB_AGAIN;
		if (p[1] == '\n') {
			*pp = p + 2;
			return 0;
		}
	}
	return UMB_ERR;
}

/* Parse a Content-Length value: 1*DIGIT, or a comma list of identical
 * ones (RFC 9110 §8.6). Overflow, junk and empty elements are refused. */
static int http__content_length(const char *p, size_t n, uint64_t *out)
{
	size_t i = 0;
	bool have = false;
	uint64_t first = 0;

	for (;;) {
		uint64_t v = 0;
		size_t start;

		while (i < n && http__ows((unsigned char)p[i]))
			i++;
		start = i;
		while (i < n && p[i] >= '0' && p[i] <= '9') {
			unsigned d = (unsigned)(p[i] - '0');

			if (v > (UINT64_MAX - d) / 10)
				return UMB_ERR;
			v = v * 10 + d;
			i++;
		}
		if (i == start)
			return UMB_ERR;
		if (have && v != first)
			return UMB_ERR;
		first = v;
		have = true;
		while (i < n && http__ows((unsigned char)p[i]))
			i++;
		if (i == n)
			break;
		if (p[i] != ',')
			return UMB_ERR;
		i++;
	}
	*out = first;
	return 0;
}

/* Scan a Connection value's comma-separated tokens for the two options
 * that change connection reuse. */
static void http__connection(const char *p, size_t n, bool *close,
			     bool *keep_alive)
{
	size_t i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (http__ows((unsigned char)p[i]) || p[i] == ','))
			i++;
		s = i;
		while (i < n && p[i] != ',')
			i++;
		e = i;
		while (e > s && http__ows((unsigned char)p[e - 1]))
			e--;
		if (HTTP_IEQ(p + s, e - s, "close"))
			*close = true;
		else if (HTTP_IEQ(p + s, e - s, "keep-alive"))
			*keep_alive = true;
	}
}

/* What the header fields said, gathered for the checks that need the whole
 * head (framing conflicts, Host). */
struct http_head_facts {
	unsigned hosts, te_count;
	bool te_chunked, conn_close, conn_keep_alive;
};

/* Record one header's meaning. Returns 0 or the status to answer. */
static int http__header_meaning(struct http_request_head *h,
				struct http_head_facts *f, struct str name,
				struct str value)
{
	switch (name.n) {
	case 4:
		if (HTTP_IEQ(name.p, name.n, "host"))
			f->hosts++;
		break;
	case 6:
		if (HTTP_IEQ(name.p, name.n, "expect") &&
		    HTTP_IEQ(value.p, value.n, "100-continue"))
			h->expect_continue = true;
		break;
	case 10:
		if (HTTP_IEQ(name.p, name.n, "connection"))
			http__connection(value.p, value.n, &f->conn_close,
					 &f->conn_keep_alive);
		break;
	case 14:
		if (HTTP_IEQ(name.p, name.n, "content-length")) {
			uint64_t v;

			/* Differing values are the classic smuggling lever:
			 * two hops could each pick a different one. */
			if (http__content_length(value.p, value.n, &v) < 0)
				return 400;
			if (h->has_content_length && v != h->content_length)
				return 400;
			h->has_content_length = true;
			h->content_length = v;
		}
		break;
	case 17:
		if (HTTP_IEQ(name.p, name.n, "transfer-encoding")) {
			/* A second field would combine to "chunked, chunked",
			 * which is not exactly "chunked". */
			f->te_count++;
			f->te_chunked = f->te_count == 1 &&
					HTTP_IEQ(value.p, value.n, "chunked");
		}
		break;
	default:
		break;
	}
	return 0;
}

/* Parse the head within [p, end). Returns the head length, UMB_AGAIN when
 * the bytes run out before the end of the head, or UMB_ERR with *status. */
static int http__parse(const unsigned char *start, const unsigned char *end,
		       struct http_request_head *h, int *status)
{
	const unsigned char *p = start, *s;
	struct http_head_facts f = { 0 };
	int rc;

	/* RFC 9112 §2.2: ignore empty lines before the request line (some
	 * clients send a CRLF after a previous POST body). */
	for (;;) {
		if (p == end)
			return UMB_AGAIN;
		if (*p != '\r' && *p != '\n')
			break;
		rc = http__eol(&p, end);
		if (rc == UMB_AGAIN)
			return rc;
		if (rc < 0)
			goto bad;
	}

	/* method SP */
	s = p;
	while (p < end && (http_cls[*p] & HC_TCHAR))
		p++;
	if (p == end)
		return UMB_AGAIN;
	if (p == s || *p != ' ')
		goto bad;
	h->method = str_make((const char *)s, (size_t)(p - s));
	p++;

	/* request-target SP: origin-form, or "*" for OPTIONS. Absolute and
	 * authority forms are for proxies, which the gateway is not. */
	s = p;
	if (p < end && *p != '/' && *p != '*')
		goto bad;
	while (p < end && (http_cls[*p] & HC_VCHAR))
		p++;
	if (p == end)
		return UMB_AGAIN;
	if (p == s || *p != ' ')
		goto bad;
	h->target = str_make((const char *)s, (size_t)(p - s));
	if (*s == '*' && (h->target.n != 1 || !str_eq_cstr(h->method, "OPTIONS")))
		goto bad;
	{
		const char *q = memchr(h->target.p, '?', h->target.n);

		if (q) {
			h->path = str_make(h->target.p, (size_t)(q - h->target.p));
			h->query = str_make(q + 1, h->target.n - h->path.n - 1);
		} else {
			h->path = h->target;
			h->query = str_make(h->target.p + h->target.n, 0);
		}
	}
	p++;

	/* HTTP-version: refuse garbage as 400 as early as it shows, and a
	 * well-formed but unsupported version as 505. */
	{
		size_t avail = (size_t)(end - p);

		if (memcmp(p, "HTTP/", UMB_MIN(avail, 5)) != 0)
			goto bad;
		if (avail < 8)
			return UMB_AGAIN;
		if (p[5] < '0' || p[5] > '9' || p[6] != '.' || p[7] < '0' ||
		    p[7] > '9')
			goto bad;
		if (p[5] != '1' || p[7] > '1') {
			/* Still refuse a malformed line ending first. */
			const unsigned char *e = p + 8;

			rc = http__eol(&e, end);
			if (rc == UMB_AGAIN)
				return rc;
			if (rc < 0)
				goto bad;
			*status = 505;
			return UMB_ERR;
		}
		h->minor_version = p[7] - '0';
		p += 8;
	}
	rc = http__eol(&p, end);
	if (rc == UMB_AGAIN)
		return rc;
	if (rc < 0)
		goto bad;

	/* header fields until the empty line */
	for (;;) {
		const unsigned char *vs, *ve;
		struct http_header *hd;

		if (p == end)
			return UMB_AGAIN;
		if (*p == '\r' || *p == '\n') {
			rc = http__eol(&p, end);
			if (rc == UMB_AGAIN)
				return rc;
			if (rc < 0)
				goto bad;
			break;
		}
		/* A line starting with whitespace is obs-fold (or, right after
		 * the request line, a field some hops would ignore): both let
		 * two parsers disagree, so refuse (RFC 9112 §2.2, §5.2). */
		if (*p == ' ' || *p == '\t')
			goto bad;
		if (h->n_headers == HTTP_MAX_HEADERS) {
			*status = 431;
			return UMB_ERR;
		}

		s = p;
		while (p < end && (http_cls[*p] & HC_TCHAR))
			p++;
		if (p == end)
			return UMB_AGAIN;
		/* No whitespace between name and colon (RFC 9112 §5.1). */
		if (p == s || *p != ':')
			goto bad;
		hd = &h->headers[h->n_headers];
		hd->name = str_make((const char *)s, (size_t)(p - s));
		p++;

		while (p < end && http__ows(*p))
			p++;
		vs = p;
		p = http__skip_field(p, end);
		ve = p;
		rc = http__eol(&p, end);
		if (rc == UMB_AGAIN)
			return rc;
		if (rc < 0)
			goto bad; /* control byte or bare CR in the value */
		while (ve > vs && http__ows(ve[-1]))
			ve--;
		hd->value = str_make((const char *)vs, (size_t)(ve - vs));
		h->n_headers++;

		rc = http__header_meaning(h, &f, hd->name, hd->value);
		if (rc) {
			*status = rc;
			return UMB_ERR;
		}
	}

	/* Whole-head checks (RFC 9112 §3.2, §6.1, §6.3). */
	if (f.hosts > 1 || (h->minor_version == 1 && f.hosts == 0))
		goto bad;
	if (f.te_count) {
		if (h->has_content_length)
			goto bad;
		/* HTTP/1.0 has no chunked coding; a 1.0 hop in front of us
		 * would read the body differently. */
		if (h->minor_version == 0)
			goto bad;
		if (!f.te_chunked) {
			*status = 501;
			return UMB_ERR;
		}
		h->chunked = true;
	}
	if (h->minor_version == 1)
		h->keep_alive = !f.conn_close;
	else
		h->keep_alive = f.conn_keep_alive && !f.conn_close;
	/* A 1.0 client does not understand 100 Continue (RFC 9110 §10.1.1). */
	if (h->minor_version == 0)
		h->expect_continue = false;
	return (int)(p - start);

bad:
	*status = 400;
	return UMB_ERR;
}

int http_parse_request(const char *buf, size_t n, size_t max_head,
		       struct http_request_head *h, int *status)
{
	int dummy, rc;
	size_t lim;

	if (!status)
		status = &dummy;
	*status = 0;
	/* The length is returned as an int. */
	if (max_head > INT_MAX)
		max_head = INT_MAX;
	lim = UMB_MIN(n, max_head);

	/* Only the scalars: clearing the whole header array would cost more
	 * than parsing a typical head. */
	h->method = h->target = h->path = h->query = STR_NULL;
	h->minor_version = 0;
	h->n_headers = 0;
	h->has_content_length = false;
	h->content_length = 0;
	h->chunked = h->keep_alive = h->expect_continue = false;

	rc = http__parse((const unsigned char *)buf,
			 (const unsigned char *)buf + lim, h, status);
	/* Out of bytes at the limit: the head cannot fit in max_head. */
	if (rc == UMB_AGAIN && lim == max_head) {
		*status = 431;
		return UMB_ERR;
	}
	return rc;
}

const struct str *http_header_get(const struct http_request_head *h,
				  const char *name)
{
	size_t ln = strlen(name);

	for (size_t i = 0; i < h->n_headers; i++) {
		const struct str *hn = &h->headers[i].name;

		if (hn->n != ln)
			continue;
		size_t k = 0;
		while (k < ln && http__lower((unsigned char)hn->p[k]) ==
					 http__lower((unsigned char)name[k]))
			k++;
		if (k == ln)
			return &h->headers[i].value;
	}
	return NULL;
}

/* ---- chunked transfer coding (RFC 9112 §7.1) ---- */

enum http_chunked_state {
	HCH_SIZE,        /* hex digits of chunk-size */
	HCH_SIZE_BWS,    /* whitespace after the size; only ';' may follow */
	HCH_EXT,         /* chunk extensions up to CR */
	HCH_SIZE_LF,     /* LF of the chunk-size line */
	HCH_DATA,        /* chunk data */
	HCH_DATA_CR,     /* CR after chunk data */
	HCH_DATA_LF,     /* LF after chunk data */
	HCH_TRAILER,     /* start of a trailer line, or the final CRLF */
	HCH_TRAILER_NAME,
	HCH_TRAILER_VALUE,
	HCH_TRAILER_LF,
	HCH_FINAL_LF,
	HCH_DONE,
	HCH_FAILED, /* sticky: a malformed body never becomes valid */
};

void http_chunked_init(struct http_chunked *c)
{
	memset(c, 0, sizeof(*c));
	c->state = HCH_SIZE;
}

static inline int http__hex(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = http__lower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* A control byte other than HTAB; bare CR and LF included. */
static inline bool http__ctl(unsigned char ch)
{
	return (ch < 0x20 && ch != '\t') || ch == 0x7f;
}

/* Framing is CRLF only here, unlike the head: lenient chunk line endings
 * are how front proxies and back ends come to disagree about chunk
 * boundaries. */
int http_chunked_decode(struct http_chunked *c, const char *in, size_t n,
			size_t *consumed, struct buf *out)
{
	size_t i = 0;
	int rc;

	if (c->state == HCH_FAILED) {
		*consumed = 0;
		return UMB_ERR;
	}
	while (i < n && c->state != HCH_DONE) {
		unsigned char ch = (unsigned char)in[i];

		switch (c->state) {
		case HCH_SIZE: {
			int v = http__hex(ch);

			/* the cap counts the line without its CRLF */
			if (ch != '\r' && ++c->line_len > HTTP_CHUNK_LINE_MAX)
				goto bad;
			if (v >= 0) {
				/* 16 digits fill a uint64_t: more overflow. */
				if (++c->digits > 16)
					goto bad;
				c->remaining = c->remaining << 4 | (unsigned)v;
			} else if (c->digits == 0) {
				goto bad;
			} else if (ch == ';') {
				c->state = HCH_EXT;
			} else if (ch == ' ' || ch == '\t') {
				c->state = HCH_SIZE_BWS;
			} else if (ch == '\r') {
				c->state = HCH_SIZE_LF;
			} else {
				goto bad;
			}
			break;
		}
		case HCH_SIZE_BWS:
			if (++c->line_len > HTTP_CHUNK_LINE_MAX)
				goto bad;
			if (ch == ';')
				c->state = HCH_EXT;
			else if (ch != ' ' && ch != '\t')
				goto bad;
			break;
		case HCH_EXT:
			if (ch == '\r')
				c->state = HCH_SIZE_LF;
			else if (http__ctl(ch) ||
				 ++c->line_len > HTTP_CHUNK_LINE_MAX)
				goto bad;
			break;
		case HCH_SIZE_LF:
			if (ch != '\n')
				goto bad;
			c->state = c->remaining ? HCH_DATA : HCH_TRAILER;
			c->line_len = 0;
			c->digits = 0;
			break;
		case HCH_DATA: {
			size_t take = n - i;

			if ((uint64_t)take > c->remaining)
				take = (size_t)c->remaining;
			rc = buf_append(out, in + i, take);
			if (rc < 0) {
				*consumed = i;
				return rc;
			}
			c->remaining -= take;
			if (c->remaining == 0)
				c->state = HCH_DATA_CR;
			i += take;
			continue;
		}
		case HCH_DATA_CR:
			if (ch != '\r')
				goto bad;
			c->state = HCH_DATA_LF;
			break;
		case HCH_DATA_LF:
			if (ch != '\n')
				goto bad;
			c->state = HCH_SIZE;
			break;
		case HCH_TRAILER:
			if (ch == '\r')
				c->state = HCH_FINAL_LF;
			else if (http_cls[ch] & HC_TCHAR)
				c->state = HCH_TRAILER_NAME;
			else
				goto bad;
			if (++c->trailer_len > HTTP_TRAILER_MAX)
				goto bad;
			break;
		case HCH_TRAILER_NAME:
			if (ch == ':')
				c->state = HCH_TRAILER_VALUE;
			else if (!(http_cls[ch] & HC_TCHAR))
				goto bad;
			if (++c->trailer_len > HTTP_TRAILER_MAX)
				goto bad;
			break;
		case HCH_TRAILER_VALUE:
			if (ch == '\r')
				c->state = HCH_TRAILER_LF;
			else if (http__ctl(ch))
				goto bad;
			if (++c->trailer_len > HTTP_TRAILER_MAX)
				goto bad;
			break;
		case HCH_TRAILER_LF:
			if (ch != '\n')
				goto bad;
			c->state = HCH_TRAILER;
			if (++c->trailer_len > HTTP_TRAILER_MAX)
				goto bad;
			break;
		case HCH_FINAL_LF:
			if (ch != '\n')
				goto bad;
			c->state = HCH_DONE;
			break;
		default:
			goto bad;
		}
		i++;
	}
	*consumed = i;
	return c->state == HCH_DONE ? 1 : 0;

bad:
	c->state = HCH_FAILED;
	*consumed = i;
	return UMB_ERR;
}

/* ---- upstream response heads ---- */

int http_parse_response(const char *buf, size_t n, struct http_response_head *h,
			bool (*line_cb)(void *ctx, const char *line, size_t len), void *ctx)
{
	memset(h, 0, sizeof *h);
	if (n < 12 || memcmp(buf, "HTTP/1.", 7) || (buf[7] != '0' && buf[7] != '1') ||
	    buf[8] != ' ')
		return UMB_ERR;
	h->minor_version = buf[7] - '0';
	for (int i = 9; i < 12; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return UMB_ERR;
		h->status = h->status * 10 + (buf[i] - '0');
	}
	if (h->status < 100)
		return UMB_ERR;
	if (n > 12 && buf[12] != ' ' && buf[12] != '\r' && buf[12] != '\n')
		return UMB_ERR;
	bool conn_close = false, conn_keep = false;
	const char *line = buf, *end = buf + n;
	while (line < end) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		if (!nl)
			return UMB_ERR;
		size_t len = (size_t)(nl - line + 1);
		if (line_cb && !line_cb(ctx, line, len))
			return UMB_ERR;
		struct str l = str_make(line, len);
		while (l.n && (l.p[l.n - 1] == '\n' || l.p[l.n - 1] == '\r'))
			l.n--;
		const char *colon = line == buf ? NULL : memchr(l.p, ':', l.n);
		if (colon) {
			struct str name = str_make(l.p, (size_t)(colon - l.p));
			struct str val = str_trim(str_make(colon + 1, l.n - name.n - 1));
			if (str_ieq(name, STR("content-length"))) {
				uint64_t v;
				if (str_to_u64(val, &v) || (h->has_content_length && v != h->content_length))
					return UMB_ERR;
				h->has_content_length = true;
				h->content_length = v;
			} else if (str_ieq(name, STR("transfer-encoding"))) {
				if (!str_ieq(val, STR("chunked")))
					return UMB_ERR; /* we never ask for other codings */
				h->chunked = true;
			} else if (str_ieq(name, STR("connection"))) {
				if (str_ieq(val, STR("close")))
					conn_close = true;
				else if (str_ieq(val, STR("keep-alive")))
					conn_keep = true;
			}
		}
		line = nl + 1;
	}
	h->keep_alive = h->minor_version == 1 ? !conn_close : conn_keep;
	return UMB_OK;
}
