/* http_parse.h — HTTP/1.1 request head parser and chunked body decoder for
 * the ingress (RFC 9112).
 *
 * Both face hostile clients, so both are strict where a lenient reading
 * could let two HTTP implementations disagree about where a request ends
 * (request smuggling): no obs-fold, no bare CR, no Content-Length together
 * with Transfer-Encoding, no conflicting Content-Length values, no transfer
 * coding other than "chunked", and CRLF required inside chunked framing.
 *
 * Both are pure: no I/O, no allocation except into the struct buf the
 * caller passes to the chunked decoder. The parsed head holds views into
 * the caller's buffer, which must outlive it.
 *
 * http_parse_request keeps no state between calls: on UMB_AGAIN, call it
 * again on the whole buffer once more bytes arrived. A head cannot end
 * before an LF, so a caller fed one byte at a time (slowloris) can skip
 * the call until the new bytes hold one. */
#ifndef UMB_HTTP_PARSE_H
#define UMB_HTTP_PARSE_H

#include "core/core.h"

#define HTTP_MAX_HEADERS 100
/* A chunk-size line (size plus extensions) longer than this is refused. */
#define HTTP_CHUNK_LINE_MAX 4096
/* The trailer section of a chunked body, all lines together. */
#define HTTP_TRAILER_MAX 8192

/** One header field; both are views into the caller's buffer, value trimmed. */
struct http_header {
	struct str name, value;
};

/** A parsed request head; every struct str points into the parsed buffer. */
struct http_request_head {
	struct str method, target;
	struct str path;  /* target up to '?' */
	struct str query; /* after the first '?', without it; empty if none */
	int minor_version; /* 0 or 1 */
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t n_headers;
	bool has_content_length;
	uint64_t content_length;
	bool chunked;         /* Transfer-Encoding: chunked */
	bool keep_alive;      /* 1.1: unless "close"; 1.0: only with "keep-alive" */
	bool expect_continue; /* Expect: 100-continue */
};

/** Parse a request head from buf[0..n). Returns the head length in bytes (> 0) when the head is complete (through the blank line), UMB_AGAIN when more bytes are needed, or UMB_ERR with *status set to the HTTP status to answer (400, 431, 501, 505). */
int http_parse_request(const char *buf, size_t n, size_t max_head,
		       struct http_request_head *h, int *status);

/** First header whose name equals `name` (ASCII case-insensitive), or NULL. */
const struct str *http_header_get(const struct http_request_head *h,
				  const char *name);

/** What the upstream client needs from a response head. */
struct http_response_head {
	int minor_version;
	int status;
	bool has_content_length;
	uint64_t content_length;
	bool chunked;
	bool keep_alive; /* 1.1 unless "close"; 1.0 only with "keep-alive" */
};

/** Parse a complete upstream response head buf[0..n) (through the blank
 * line, which the caller found). For each line (status line and headers,
 * CRLF included, then the final empty line) line_cb is called, if not
 * NULL; a false return aborts. Returns UMB_OK or UMB_ERR on a malformed
 * head (bad status line, conflicting Content-Length, a transfer coding
 * other than chunked). */
int http_parse_response(const char *buf, size_t n, struct http_response_head *h,
			bool (*line_cb)(void *ctx, const char *line, size_t len), void *ctx);

/** Incremental chunked decoder state; embed it and call http_chunked_init. */
struct http_chunked {
	uint64_t remaining;  /* data bytes left in the current chunk */
	size_t line_len;     /* bytes seen of the current chunk-size line */
	size_t trailer_len;  /* bytes seen of the trailer section */
	unsigned digits;     /* hex digits seen in the current chunk size */
	int state;           /* private: enum in http_parse.c */
};

/** Reset a decoder to the start of a chunked body. */
void http_chunked_init(struct http_chunked *c);

/** Decode from in[0..n), appending payload to out (a capped struct buf: UMB_ETOOBIG when the body exceeds the cap, which the caller maps to 413). Sets *consumed. Returns 1 when the last chunk and trailers are complete, 0 when more input is needed, UMB_ERR when malformed, UMB_ETOOBIG. */
int http_chunked_decode(struct http_chunked *c, const char *in, size_t n,
			size_t *consumed, struct buf *out);

#endif
