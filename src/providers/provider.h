/* provider.h — one callback table per upstream wire format (DESIGN.md
 * "providers/"), shaped like nginx's ngx_http_upstream_t: build the
 * request, then judge the response body or each stream event.
 *
 * The upstream module owns the transfer; a provider only translates. */
#ifndef UMB_PROVIDER_H
#define UMB_PROVIDER_H

#include "config/config.h"
#include "core/core.h"
#include "http/sse.h"
#include "upstream/upstream.h"

#define PROVIDER_MAX_PARTS 8

/** What one attempt sends. Strings live in `arena`. */
struct provider_request {
	const char *url;           /* full URL */
	/* The body as pieces: slices of the client's own bytes with the
	 * edits between them, so a 200 KB body with one edit is sent with
	 * writev and never copied. */
	struct str parts[PROVIDER_MAX_PARTS];
	size_t n_parts;
	struct str body;           /* one piece; set by provider_body_join */
	const char *headers[32];   /* "Name: value" lines */
	size_t n_headers;
};

/** What the provider learned from a response. */
struct provider_usage {
	bool seen;
	uint64_t prompt_tokens, completion_tokens;
	uint64_t cached_prompt_tokens; /* part of prompt_tokens, billed at the cached price */
};

enum provider_event_action {
	PROVIDER_FORWARD, /* pass the event's raw bytes to the client */
	PROVIDER_DROP,    /* swallow it (e.g. a usage chunk nobody asked for) */
	PROVIDER_DONE,    /* forward, and the stream is complete ([DONE]) */
	PROVIDER_GARBAGE, /* not what the protocol allows: fail the attempt */
};

struct provider_ops {
	const char *name;
	/** Build the upstream request for `model` (the model being tried,
	 * which differs from call->model on a fallback). */
	int (*build)(struct arena *a, const struct upstream_call *call,
		     const struct cfg_model *model, const struct cfg_endpoint *ep,
		     const char *request_id, struct provider_request *out);
	/** A complete non-stream 2xx body: check it and read usage.
	 * Returns UMB_OK, or UMB_ERR when the body is garbage. */
	int (*finish)(const struct upstream_call *call, struct str body,
		      struct provider_usage *usage);
	/** One SSE event of a 2xx stream. */
	enum provider_event_action (*stream_event)(const struct upstream_call *call,
						   const struct sse_event *ev,
						   struct provider_usage *usage);
	/** Health-check path when the config gives none. */
	const char *health_path;
};

/** The body in one piece (for libcurl): joins the parts into the arena
 * when there are several; the client's bytes themselves when unedited. */
struct str provider_body_join(struct arena *a, struct provider_request *pr);

/** Each wire format's table (providers/<name>.c). */
const struct provider_ops *provider_openai_ops(void);

/** The table for a provider type, or NULL if not built in. */
const struct provider_ops *provider_ops_get(enum provider_type type);

#endif
