/* openai_fmt.h — the OpenAI Chat Completions format both ways: as a client
 * dialect (request in, answer and chunks out) and as an upstream wire
 * format (request out, answer and chunks in), all through canon.h. */
#ifndef UMB_OPENAI_FMT_H
#define UMB_OPENAI_FMT_H

#include "core/core.h"
#include "http/sse.h"
#include "providers/canon.h"

/** An OpenAI chat request body (already validated JSON) into the canonical
 * form; views point into body or the arena. UMB_ERR with a message for the
 * client in why (an invalid_request_error). */
int openai_req_decode(struct arena *a, struct str body, struct canon_req *out, char *why,
		      size_t why_n);
/** The same from a body already validated and split into its top-level
 * members (json_parse_top at the ingress): no second pass over it. */
struct json_member;
int openai_req_decode_members(struct arena *a, const struct json_member *m, size_t n,
			      struct canon_req *out, char *why, size_t why_n);
/** The canonical request as an OpenAI chat body for `model`. */
int openai_req_encode(const struct canon_req *req, struct str model, struct buf *out);

/** A chat.completion body into the canonical answer. UMB_ERR: garbage. */
int openai_resp_decode(struct arena *a, struct str body, struct canon_resp *out);
/** The canonical answer as a chat.completion body; `model` is the name
 * shown to the client. */
int openai_resp_encode(const struct canon_resp *resp, struct str model, struct buf *out);

#define OPENAI_MAX_TOOLS 128 /* parallel tool calls tracked in one stream */

/** chat.completion.chunk SSE events → canon events. */
struct openai_stream_dec {
	struct sse_parser sse;
	const struct canon_sink *sink; /* during a feed */
	bool started, finished, ended;
	unsigned char tool_started[OPENAI_MAX_TOOLS]; /* TOOL_START sent for an index */
	struct buf scratch;
};
void openai_stream_dec_init(struct openai_stream_dec *d);
int openai_stream_dec_feed(struct openai_stream_dec *d, const char *p, size_t n,
			   const struct canon_sink *sink);
int openai_stream_dec_finish(struct openai_stream_dec *d, const struct canon_sink *sink);
void openai_stream_dec_clear(struct openai_stream_dec *d);

/** canon events → chat.completion.chunk SSE events (and data: [DONE]). The
 * usage chunk is written only when include_usage. */
struct openai_stream_enc {
	char id[80];
	struct str model;
	bool include_usage, finished;
	struct canon_usage usage;
	long long created;
};
void openai_stream_enc_init(struct openai_stream_enc *e, struct str model, bool include_usage);
int openai_stream_enc_event(struct openai_stream_enc *e, const struct canon_ev *ev,
			    struct buf *out);

#endif
