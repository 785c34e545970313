/* eventstream.h — the AWS binary event-stream framing
 * (application/vnd.amazon.eventstream), as Bedrock's ConverseStream and
 * InvokeModelWithResponseStream answer with.
 *
 * A message is
 *   prelude:  total length (4, big endian), headers length (4),
 *             CRC32 of those 8 bytes (4)
 *   headers:  repeated { name length (1), name, value type (1), value }
 *   payload:  total - headers - 16 bytes
 *   trailer:  CRC32 of everything before it (4)
 * with the CRC32 of ISO-HDLC (zlib's). Both CRCs are checked; the prelude
 * one as soon as its 12 bytes are there, so garbage is refused before a
 * large length is waited for. Header value types (0-9) are the ones the
 * AWS SDKs define; any other type is an error.
 *
 * The decoder takes bytes split anywhere. A message that arrives within
 * one feed is handed over with views into the caller's bytes; only a
 * message cut across feeds is copied into the decoder's buffer, whose
 * size is bounded by the maximum message size. */
#ifndef UMB_EVENTSTREAM_H
#define UMB_EVENTSTREAM_H

#include "core/core.h"

#define ES_PRELUDE_LEN 12
#define ES_MIN_MESSAGE 16                /* prelude + message CRC */
#define ES_MAX_MESSAGE (16u << 20)       /* the AWS SDKs' cap: 16 MiB */
#define ES_MAX_HEADERS_LEN (128u << 10)  /* the AWS SDKs' cap: 128 KiB */
#define ES_MAX_HEADERS 32                /* per message; Bedrock sends 3 */

/** Header value types, as numbered on the wire. */
enum es_type {
	ES_BOOL_TRUE = 0,
	ES_BOOL_FALSE = 1,
	ES_BYTE = 2,
	ES_SHORT = 3,
	ES_INT = 4,
	ES_LONG = 5,
	ES_BYTES = 6,
	ES_STRING = 7,
	ES_TIMESTAMP = 8, /* milliseconds since the epoch */
	ES_UUID = 9,      /* 16 bytes */
};

/** One header. Integers (bool, byte, short, int, long, timestamp) are in
 * `i`; bytes, string and uuid are in `v` (a view into the message). */
struct es_header {
	struct str name;
	enum es_type type;
	int64_t i;
	struct str v;
};

/** One decoded message; views are valid only during the callback. */
struct es_message {
	struct es_header headers[ES_MAX_HEADERS];
	size_t n_headers;
	struct str payload;
	struct str raw; /* the whole message, prelude to CRC */
};

/** Called per message; a nonzero return stops es_decoder_feed, which
 * returns it. */
typedef int (*es_message_cb)(void *ctx, const struct es_message *m);

/** Decoder state; embed it, es_decoder_init it, es_decoder_clear it. */
struct es_decoder {
	struct buf pend;     /* a message cut across feeds, from its prelude */
	size_t max;          /* largest total length accepted */
	int err;             /* sticky: after a failure every feed returns it */
	const char *why;     /* what was wrong (static text), when err */
};

/** Prepare a decoder for messages up to max_message bytes (0: ES_MAX_MESSAGE;
 * never more than ES_MAX_MESSAGE). */
void es_decoder_init(struct es_decoder *d, size_t max_message);
/** Free the buffer; es_decoder_init again to reuse the decoder. */
void es_decoder_clear(struct es_decoder *d);

/** Feed bytes; calls cb for every complete message. Returns 0, UMB_ERR
 * for a malformed stream (d->why says how), UMB_ETOOBIG for a length
 * over the cap, UMB_ENOMEM, or the callback's nonzero value. Any failure
 * is sticky. */
int es_decoder_feed(struct es_decoder *d, const char *p, size_t n, es_message_cb cb,
		    void *ctx);
/** Bytes held of a message not yet complete (0 between messages). */
size_t es_decoder_pending(const struct es_decoder *d);

/** Decode one complete message from exactly n bytes (both CRCs checked).
 * UMB_ERR with *why set on any fault. */
int es_message_parse(const char *p, size_t n, struct es_message *m, const char **why);
/** The first header called name, or NULL. */
const struct es_header *es_message_header(const struct es_message *m, const char *name);
/** A string header's value; an empty view when absent or not a string. */
struct str es_message_str(const struct es_message *m, const char *name);

/** Append one encoded message (headers then payload) to out: the
 * encoder the fakes and tests use to build streams. UMB_ERR if it would
 * break a limit (name over 255 bytes, value over 65535, sizes over caps). */
int es_encode(struct buf *out, const struct es_header *headers, size_t n_headers,
	      struct str payload);

/** CRC32 (ISO-HDLC, zlib's crc32) of p[0..n) continuing from crc (0 to start). */
uint32_t es_crc32(uint32_t crc, const void *p, size_t n);

#endif
