/* sse.c — incremental text/event-stream parser.
 *
 * Two steps per event: a boundary scanner that finds where an event ends
 * (resumable across feeds, so held bytes are never rescanned), then a field
 * parser over the event's complete bytes. Both jump between line endings
 * with memchr, so the cost per byte is the cost of memchr.
 *
 * An event whose final blank line ends in a CR is complete only when the
 * next byte is known: if it is an LF, that LF belongs to the event's raw
 * bytes. So such an event is held until the next byte arrives; otherwise a
 * split between CR and LF would give different raw spans (or a spurious
 * empty event) than the same stream in one piece. */
#include "http/sse.h"

static void sse__scan_reset(struct sse_scan *st)
{
	st->line_start = true;
	st->prev_cr = false;
	st->cr_end = false;
}

void sse_init(struct sse_parser *p, size_t max_event_bytes)
{
	/* The caps are enforced here, before appending; the buffers are
	 * uncapped so their own rule cannot disagree with ours. */
	buf_init(&p->pend, 0);
	buf_init(&p->join, 0);
	p->max = max_event_bytes ? max_event_bytes : SIZE_MAX;
	sse__scan_reset(&p->scan);
	p->started = false;
	p->err = 0;
}

void sse_clear(struct sse_parser *p)
{
	buf_clear(&p->pend);
	buf_clear(&p->join);
}

size_t sse_pending(const struct sse_parser *p)
{
	return p->pend.n;
}

/* Offset of the next CR or LF in s[i..n), or n. *cr caches where the next
 * CR is (stale when <= i), so an LF-only stream costs one memchr for CR
 * per scan, not one per line. */
static size_t sse__next_eol(const char *s, size_t i, size_t n, size_t *cr)
{
	const char *lf;

	if (*cr <= i) {
		const char *c = memchr(s + i, '\r', n - i);

		*cr = c ? (size_t)(c - s) : n;
	}
	lf = memchr(s + i, '\n', *cr - i);
	return lf ? (size_t)(lf - s) : *cr;
}

/* Continue the boundary scan over s[i..n). Returns true with *end set to
 * the offset just past the event (possibly i itself: a held CR-ended event
 * followed by a non-LF byte) and resets the scanner; false when the bytes
 * hold no event end, with the scanner state kept for the next bytes. *cr
 * is the next-CR cache of sse__next_eol, shared by all scans of one input
 * so a large chunk of many events is searched for CR once. */
static bool sse__find_end(struct sse_scan *st, const char *s, size_t i,
			  size_t n, size_t *cr, size_t *end)
{
	while (i < n) {
		char c = s[i];

		if (st->cr_end) {
			*end = i + (c == '\n');
			sse__scan_reset(st);
			return true;
		}
		if (st->prev_cr) {
			st->prev_cr = false;
			if (c == '\n') {
				i++;
				continue;
			}
		}
		if (c == '\n' || c == '\r') {
			if (st->line_start) {
				if (c == '\n') {
					*end = i + 1;
					sse__scan_reset(st);
					return true;
				}
				st->cr_end = true;
			} else {
				st->line_start = true;
				st->prev_cr = c == '\r';
			}
			i++;
			continue;
		}
		/* Inside a line: skip to its end in one go. */
		st->line_start = false;
		i = sse__next_eol(s, i, n, cr);
	}
	return false;
}

/* Parse the fields of one complete event raw[0..n) and hand it to cb.
 * Returns 0 or a negative value (callback's, or a buffer failure). */
static int sse__emit(struct sse_parser *p, const char *raw, size_t n,
		     sse_event_cb cb, void *ctx)
{
	struct sse_event ev = { .raw = { raw, n } };
	size_t i = 0, cr = 0, ndata = 0;
	int rc;

	/* One U+FEFF at the very start of the stream is not part of the
	 * first field name (WHATWG). */
	if (!p->started) {
		p->started = true;
		if (n >= 3 && memcmp(raw, "\xEF\xBB\xBF", 3) == 0)
			i = 3;
	}
	while (i < n) {
		size_t ls = i, le = sse__next_eol(raw, i, n, &cr);
		const char *line = raw + ls, *colon, *val;
		size_t len = le - ls, flen, vlen;

		/* Step over the terminator; the event always ends with one. */
		i = le + 1;
		if (le < n && raw[le] == '\r' && i < n && raw[i] == '\n')
			i++;
		/* Empty: the final blank line, or the line a leading BOM left
		 * empty (the scanner, which cannot see a BOM split across
		 * feeds, did not end the event there). */
		if (len == 0)
			continue;
		if (line[0] == ':')
			continue; /* comment */
		colon = memchr(line, ':', len);
		if (colon) {
			flen = (size_t)(colon - line);
			val = colon + 1;
			vlen = len - flen - 1;
			if (vlen && *val == ' ') {
				val++;
				vlen--;
			}
		} else {
			flen = len;
			val = line + len;
			vlen = 0;
		}
		if (flen == 4 && memcmp(line, "data", 4) == 0) {
			if (ndata == 0) {
				ev.data = str_make(val, vlen);
			} else {
				if (ndata == 1) {
					buf_reset(&p->join);
					rc = buf_append_str(&p->join, ev.data);
					if (rc < 0)
						return rc;
				}
				rc = buf_append(&p->join, "\n", 1);
				if (rc == 0)
					rc = buf_append(&p->join, val, vlen);
				if (rc < 0)
					return rc;
			}
			ndata++;
		} else if (flen == 5 && memcmp(line, "event", 5) == 0) {
			ev.event = str_make(val, vlen);
		} else if (flen == 2 && memcmp(line, "id", 2) == 0) {
			/* WHATWG ignores an id containing NUL. */
			if (!memchr(val, '\0', vlen))
				ev.id = str_make(val, vlen);
		}
		/* "retry" and unknown fields: nothing the gateway uses. */
	}
	if (ndata > 1)
		ev.data = buf_str(&p->join);
	ev.has_data = ndata > 0;
	return cb(ctx, &ev);
}

static int sse__fail(struct sse_parser *p, int rc)
{
	p->err = rc;
	return rc;
}

int sse_feed(struct sse_parser *p, const char *in, size_t n, sse_event_cb cb,
	     void *ctx)
{
	size_t pos = 0, end, cr = 0;
	int rc;

	if (p->err)
		return p->err;
	if (n == 0)
		return 0;

	/* Finish the held event first: copy only up to its end. */
	if (p->pend.n) {
		if (!sse__find_end(&p->scan, in, 0, n, &cr, &end)) {
			if (n > p->max - p->pend.n)
				return sse__fail(p, UMB_ETOOBIG);
			rc = buf_append(&p->pend, in, n);
			return rc < 0 ? sse__fail(p, rc) : 0;
		}
		if (end > p->max - p->pend.n)
			return sse__fail(p, UMB_ETOOBIG);
		rc = buf_append(&p->pend, in, end);
		if (rc == 0)
			rc = sse__emit(p, p->pend.p, p->pend.n, cb, ctx);
		buf_reset(&p->pend);
		if (rc < 0)
			return sse__fail(p, rc);
		pos = end;
	}

	/* Complete events inside the input: views, no copy. */
	while (pos < n) {
		if (!sse__find_end(&p->scan, in, pos, n, &cr, &end)) {
			if (n - pos > p->max)
				return sse__fail(p, UMB_ETOOBIG);
			rc = buf_append(&p->pend, in + pos, n - pos);
			return rc < 0 ? sse__fail(p, rc) : 0;
		}
		if (end - pos > p->max)
			return sse__fail(p, UMB_ETOOBIG);
		rc = sse__emit(p, in + pos, end - pos, cb, ctx);
		if (rc < 0)
			return sse__fail(p, rc);
		pos = end;
	}
	return 0;
}
