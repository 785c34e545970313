/* sse.h — incremental text/event-stream parser for upstream streams
 * (WHATWG HTML "Server-sent events", §9.2.6 parsing rules).
 *
 * The gateway forwards most events untouched, so every event carries the
 * exact raw bytes it came from. The callback sees every block that ends in
 * a blank line, comment-only and empty ones included, so the concatenated
 * raw spans of all events plus sse_pending() bytes are exactly the stream.
 *
 * When a fed chunk holds complete events their views point straight into
 * the caller's input; only the incomplete tail is copied, and data is
 * joined into a buffer only for events with several data lines. */
#ifndef UMB_SSE_H
#define UMB_SSE_H

#include "core/core.h"

/** One event; every view is valid only during the callback. */
struct sse_event {
	struct str raw;   /* exact bytes, including the terminating blank line */
	struct str event; /* "event" field; empty means the default "message" */
	struct str data;  /* data lines joined with '\n' */
	struct str id;    /* "id" field of this event; p NULL when absent */
	bool has_data;    /* at least one data line: the browser would fire it */
};

/* Where the boundary scanner stands at the end of the held bytes. */
struct sse_scan {
	bool line_start; /* the next byte starts a line */
	bool prev_cr;    /* the last byte was a CR: an LF now belongs to it */
	bool cr_end;     /* a CR ended the blank line: the event ends after an
			  * LF, if the next byte is one, or else before it */
};

/** Parser state; embed it, sse_init it, sse_clear it. */
struct sse_parser {
	struct buf pend;  /* the incomplete event at the end of the last feed */
	struct buf join;  /* data of an event with several data lines */
	size_t max;       /* max_event_bytes */
	struct sse_scan scan;
	bool started;     /* the first event (maybe with a BOM) was parsed */
	int err;          /* sticky: after a failure every feed returns it */
};

/** Prepare a parser; an event larger than max_event_bytes (0: no cap) makes sse_feed fail with UMB_ETOOBIG. */
void sse_init(struct sse_parser *p, size_t max_event_bytes);

/** Free the parser's buffers; sse_init again to reuse it. */
void sse_clear(struct sse_parser *p);

/** Event callback; views valid only during the call; a negative return aborts sse_feed with that value. */
typedef int (*sse_event_cb)(void *ctx, const struct sse_event *ev);

/** Feed bytes; calls cb for every complete event. Returns 0, UMB_ETOOBIG, UMB_ENOMEM or the callback's negative value; any failure is sticky. */
int sse_feed(struct sse_parser *p, const char *in, size_t n, sse_event_cb cb,
	     void *ctx);

/* An event whose final blank line is a lone CR stays held until the next
 * byte shows whether an LF belongs to it; streams using CR alone as line
 * end thus see their last event only when more bytes (or nothing) follow. */

/** Bytes held for an incomplete event (to detect a stream that ended mid-event). */
size_t sse_pending(const struct sse_parser *p);

#endif
