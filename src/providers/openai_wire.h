/* openai_wire.h — the OpenAI wire format's pieces (providers/openai.c)
 * that other OpenAI-speaking upstreams reuse (providers/azure.c): the
 * body, the answer and stream verdicts, and the translated decoders. */
#ifndef UMB_OPENAI_WIRE_H
#define UMB_OPENAI_WIRE_H

#include "providers/openai_fmt.h"
#include "providers/provider.h"

/** The upstream body for an OpenAI-format upstream into out->parts:
 * the client's OpenAI body with the surgical edits (model member,
 * stream_options.include_usage) when call->dialect is DIALECT_OPENAI,
 * else the body encoded from call->canon. URL and headers are the
 * caller's. UMB_ERR when the body cannot be built. */
int openai_build_body(struct arena *a, const struct upstream_call *call,
		      const struct cfg_model *model, struct provider_request *out);

/* Pass-through (provider_ops.finish / .stream_event). */
/** A complete 2xx chat or embeddings body: check it, read usage. */
int openai_finish(const struct upstream_call *call, struct str body,
		  struct provider_usage *usage);
/** One SSE event of a 2xx chat stream: forward, drop, done or garbage. */
enum provider_event_action openai_stream_event(const struct upstream_call *call,
					       const struct sse_event *ev,
					       struct provider_usage *usage);

/* Translation (provider_ops.decode / .stream_*). */
/** A chat.completion body into the canonical answer (strings in a). */
int openai_decode(struct arena *a, const struct upstream_call *call, struct str body,
		  struct canon_resp *out);
/** The stream state is a struct openai_stream_dec (openai_fmt.h): this
 * many bytes for provider_ops.stream_size. */
#define OPENAI_STREAM_SIZE sizeof(struct openai_stream_dec)
void openai_stream_init(void *st, const struct upstream_call *call);
int openai_stream_feed(void *st, const char *p, size_t n, const struct canon_sink *sink);
int openai_stream_finish(void *st, const struct canon_sink *sink);
void openai_stream_clear(void *st);

/** The message of an OpenAI error body {"error":{"message"}} (arena), or NULL. */
const char *openai_error_message(struct arena *a, struct str body);

#endif
