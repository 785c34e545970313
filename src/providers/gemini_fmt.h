/* gemini_fmt.h — the Gemini generateContent format (Vertex AI,
 * publishers/google models) as an upstream wire format, through canon.h:
 * the canonical request as a GenerateContentRequest, a
 * GenerateContentResponse as the canonical answer, and the
 * streamGenerateContent?alt=sse chunks as canon events.
 *
 * Gemini has no tool call ids. Decoded calls get generated ids
 * (gemini_call_id); when a conversation comes back, a tool result finds
 * its function name by the id of the earlier call, else by position (the
 * k-th result of a user turn answers the k-th call of the model turn
 * before it). */
#ifndef UMB_GEMINI_FMT_H
#define UMB_GEMINI_FMT_H

#include "core/core.h"
#include "http/sse.h"
#include "providers/canon.h"

/** Vertex accepts at most this many stop sequences; more are dropped. */
#define GEMINI_MAX_STOP 5
/** Largest SSE event accepted from the upstream (one chunk is one whole
 * GenerateContentResponse: function call arguments arrive in one). */
#define GEMINI_MAX_EVENT (8u << 20)

/** The canonical request as a GenerateContentRequest body (the model is in
 * the URL, not the body). UMB_ERR with a reason in why when the request
 * cannot be expressed (a tool result whose function is unknown). */
int gemini_req_encode(const struct canon_req *req, struct buf *out, char *why, size_t why_n);

/** A JSON Schema (as JSON text) rewritten as the OpenAPI 3.0 subset that
 * Vertex's Schema message accepts. Appends "" (nothing) and returns
 * UMB_AGAIN when the schema declares no parameters at all. */
int gemini_schema_write(struct str schema, struct buf *out);

/** A GenerateContentResponse body into the canonical answer (strings in
 * a). UMB_ERR: not a GenerateContentResponse (garbage or an error body). */
int gemini_resp_decode(struct arena *a, struct str body, struct canon_resp *out);

/** The id given to the index-th function call of a response: "call_" +
 * the responseId's id-safe characters + "_" + index, or a random one when
 * the response has no id. Written into out[GEMINI_ID_MAX]. */
#define GEMINI_ID_MAX 80
void gemini_call_id(struct str response_id, int index, char out[GEMINI_ID_MAX]);

/** streamGenerateContent?alt=sse chunks → canon events. */
struct gemini_stream_dec {
	struct sse_parser sse;
	const struct canon_sink *sink; /* during a feed */
	int err;                       /* sticky: the first failure */
	bool started, finished, ended;
	int n_tools;                   /* function calls seen (TOOL_START sent) */
	char resp_id[GEMINI_ID_MAX];   /* responseId of the first chunk */
	struct buf scratch;            /* decoded text of one part */
};
void gemini_stream_dec_init(struct gemini_stream_dec *d);
/** Feed body bytes, split anywhere. UMB_ERR: garbage (or an error object
 * in the stream); the sink's nonzero answer is returned as is. */
int gemini_stream_dec_feed(struct gemini_stream_dec *d, const char *p, size_t n,
			   const struct canon_sink *sink);
/** The body ended: END, or UMB_ERR if no finishReason was seen (cut short). */
int gemini_stream_dec_finish(struct gemini_stream_dec *d, const struct canon_sink *sink);
void gemini_stream_dec_clear(struct gemini_stream_dec *d);

/** The message of a Google API error body {"error":{"code","message",
 * "status"}} (also inside a one-element array), as "STATUS: message", in
 * the arena; NULL if the body is not one. */
const char *gemini_error_message(struct arena *a, struct str body);

#endif
