/* anthropic_fmt.h — the Anthropic Messages format both ways: as a client
 * dialect (POST /v1/messages in, message and events out) and as an
 * upstream wire format (request out, message and events in), all through
 * canon.h. */
#ifndef UMB_ANTHROPIC_FMT_H
#define UMB_ANTHROPIC_FMT_H

#include "core/core.h"
#include "http/sse.h"
#include "providers/canon.h"

/** Default max_tokens when an OpenAI client gives none (Anthropic
 * requires the member). */
#define ANTHROPIC_DEFAULT_MAX_TOKENS 4096

/** A Messages request body (any bytes) into the canonical form; views
 * point into body or the arena. UMB_ERR with a message for the client in
 * why (an invalid_request_error). */
int anthropic_req_decode(struct arena *a, struct str body, struct canon_req *out, char *why,
			 size_t why_n);
/** The canonical request as a Messages body for `model` (consecutive
 * tool results merged into one user turn, max_tokens defaulted). */
int anthropic_req_encode(const struct canon_req *req, struct str model, struct buf *out);

/** A Messages answer into the canonical one. UMB_ERR: garbage. */
int anthropic_resp_decode(struct arena *a, struct str body, struct canon_resp *out);
/** The canonical answer as a Messages answer; `model` is the name shown. */
int anthropic_resp_encode(const struct canon_resp *resp, struct str model, struct buf *out);
/** Usage of a Messages answer / of one stream event (message_start,
 * message_delta), for pass-through accounting. */
int anthropic_usage(struct str body, struct canon_usage *u);

#define ANTHROPIC_MAX_BLOCKS 256
#define ANTHROPIC_ENC_HELD_MAX (1u << 20) /* bytes of held stream events */

/** Messages SSE events (message_start, content_block_*, message_delta,
 * message_stop, ping, error) → canon events. */
struct anthropic_stream_dec {
	struct sse_parser sse;
	const struct canon_sink *sink; /* during a feed */
	bool started, ended;
	int block_tool[ANTHROPIC_MAX_BLOCKS]; /* content block index → tool index + 1 (0: not a tool) */
	int n_tools;
	struct canon_usage usage;
	struct buf scratch;
	int sink_rc; /* the sink's nonzero answer, returned by feed (sticky) */
};
void anthropic_stream_dec_init(struct anthropic_stream_dec *d);
int anthropic_stream_dec_feed(struct anthropic_stream_dec *d, const char *p, size_t n,
			      const struct canon_sink *sink);
int anthropic_stream_dec_finish(struct anthropic_stream_dec *d, const struct canon_sink *sink);
void anthropic_stream_dec_clear(struct anthropic_stream_dec *d);

/** canon events → Messages SSE events, in the order the SDKs expect:
 * message_start, content_block_start/delta/stop per block, message_delta
 * (stop_reason, usage), message_stop. */
struct anthropic_stream_enc {
	struct str model;
	char id[80];
	int open_block;          /* index of the open content block, -1: none */
	bool open_is_tool;
	int open_tool;           /* tool index of the open tool block */
	int n_blocks;
	bool started, finish_seen, ended;
	enum canon_finish finish;
	struct str stop_sequence;
	char stop_buf[128];
	struct canon_usage usage;
	bool delta_sent;         /* message_delta written */
	/* The open tool block's arguments as a JSON scanner: the block may
	 * close (for another block to open) only once they are a complete
	 * JSON text, since Anthropic never reopens a block. */
	int args_depth;
	bool args_begun, args_in_str, args_esc, args_done;
	bool replaying;
	unsigned char tool_state[ANTHROPIC_MAX_BLOCKS]; /* per tool index: ENC_TOOL_* */
	/* Interleaved parallel tool calls (OpenAI may stream call 1 before
	 * call 0 is complete): events for other blocks held in arrival order
	 * until the open tool's arguments are complete. Heap memory only
	 * while something is held (freed when the log drains, at the latest
	 * at FINISH/END); over ANTHROPIC_ENC_HELD_MAX the event fails with
	 * UMB_ETOOBIG. */
	struct buf held;
};
/** Start an encoder (fresh or cleared); model must outlive it. */
void anthropic_stream_enc_init(struct anthropic_stream_enc *e, struct str model);
int anthropic_stream_enc_event(struct anthropic_stream_enc *e, const struct canon_ev *ev,
			       struct buf *out);
/** Free what the encoder still holds; call it when the client's stream
 * ends, however it ends (a stream cut while tool calls interleave leaves
 * held events behind). */
void anthropic_stream_enc_clear(struct anthropic_stream_enc *e);

/** An Anthropic error body {"type":"error","error":{"type","message"}}. */
int anthropic_error_body(const char *type, const char *message, struct buf *out);

#endif
