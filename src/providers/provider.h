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
#include "providers/canon.h"
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
	/* build failed because the request cannot be said in this wire
	 * format (an image URL to Ollama, ...): why, for the client's 400
	 * when no other model in the chain can take it */
	const char *unsupported;
};

/** What the upstream reported it used (canon.h). */
#define provider_usage canon_usage

enum provider_event_action {
	PROVIDER_FORWARD, /* pass the event's raw bytes to the client */
	PROVIDER_DROP,    /* swallow it (e.g. a usage chunk nobody asked for) */
	PROVIDER_DONE,    /* forward, and the stream is complete ([DONE]) */
	PROVIDER_GARBAGE, /* not what the protocol allows: fail the attempt */
};

/** Pass-through or translation (docs/providers.md): when the client's
 * dialect is the provider's `native` one, the client's body goes upstream
 * with surgical edits and the answer comes back as it is (finish,
 * stream_event only read usage). Otherwise call->canon is set, build
 * encodes the upstream body from it, and the answer is decoded into a
 * canon_resp (decode) or a canon_ev stream (stream_*) that the client's
 * dialect encoder writes out. */
struct provider_ops {
	const char *name;
	int native; /* enum api_dialect passed through, or -1: always translated */
	/** Build the upstream request for `model` (the model being tried,
	 * which differs from call->model on a fallback). UMB_ERR: cannot
	 * (missing credentials, ...; out->unsupported set when the request
	 * itself cannot be expressed): the attempt fails, the chain goes on. */
	int (*build)(struct arena *a, const struct upstream_call *call,
		     const struct cfg_model *model, const struct cfg_endpoint *ep,
		     const char *request_id, struct provider_request *out);

	/* ---- pass-through (call->dialect == native) ---- */
	/** A complete non-stream 2xx body: check it and read usage.
	 * Returns UMB_OK, or UMB_ERR when the body is garbage. */
	int (*finish)(const struct upstream_call *call, struct str body,
		      struct provider_usage *usage);
	/** One SSE event of a 2xx stream. */
	enum provider_event_action (*stream_event)(const struct upstream_call *call,
						   const struct sse_event *ev,
						   struct provider_usage *usage);

	/* ---- translation (call->dialect != native) ---- */
	/** A complete non-stream 2xx chat body into *out (strings in a).
	 * UMB_ERR when the body is garbage. */
	int (*decode)(struct arena *a, const struct upstream_call *call, struct str body,
		      struct canon_resp *out);
	/** A 2xx stream body, whatever its framing (SSE, AWS event stream,
	 * NDJSON), as a canon_ev sequence: stream_size bytes of state,
	 * zeroed then stream_init'ed per attempt; stream_feed gets the bytes
	 * as they arrive (UMB_ERR: garbage, or the sink's nonzero);
	 * stream_finish runs when the upstream ended the body cleanly and
	 * returns UMB_ERR if the stream was cut short (no terminal event);
	 * stream_clear frees the state. END is emitted by feed or finish. */
	size_t stream_size;
	void (*stream_init)(void *st, const struct upstream_call *call);
	int (*stream_feed)(void *st, const char *p, size_t n, const struct canon_sink *sink);
	int (*stream_finish)(void *st, const struct canon_sink *sink);
	void (*stream_clear)(void *st);

	/** An embeddings answer in this wire format rewritten as OpenAI's
	 * (NULL: the body already is OpenAI's). UMB_ERR: garbage. */
	int (*embeddings_to_openai)(struct arena *a, const struct upstream_call *call,
				    struct str body, struct buf *out, struct provider_usage *usage);
	bool embeddings; /* serves /v1/embeddings at all */

	/** The message in an error body of this wire format (arena), or NULL. */
	const char *(*error_message)(struct arena *a, struct str body);
	/** Health-check path when the config gives none (NULL: passive only). */
	const char *health_path;
	/** When a serving config's pools are made (start, reload): begin what
	 * a first request would otherwise wait for (Vertex's token). NULL:
	 * nothing to do. */
	void (*prepare)(const struct cfg_provider *prov);
};

/** The body in one piece (for libcurl): joins the parts into the arena
 * when there are several; the client's bytes themselves when unedited. */
struct str provider_body_join(struct arena *a, struct provider_request *pr);

/** Each wire format's table (providers/<name>.c). */
const struct provider_ops *provider_openai_ops(void);
const struct provider_ops *provider_azure_ops(void);
const struct provider_ops *provider_anthropic_ops(void);
const struct provider_ops *provider_bedrock_ops(void);
const struct provider_ops *provider_vertex_ops(void);
const struct provider_ops *provider_ollama_ops(void);

/* Shared by the wire formats (providers/provider.c). */
/** The name the upstream knows the model by: upstream_model, else the
 * requested name for a glob, else the configured name. */
struct str provider_upstream_name(const struct upstream_call *call, const struct cfg_model *m);
/** Append the provider's and then the model's configured extra headers
 * (a model header overrides a provider header of the same name). */
void provider_extra_headers(struct arena *a, const struct cfg_model *model,
			    struct provider_request *out);
/** The body built in b, copied into the arena as the request's one part. */
void provider_body_set(struct arena *a, struct provider_request *out, const struct buf *b);

/** The table for a provider type, or NULL if not built in. */
const struct provider_ops *provider_ops_get(enum provider_type type);

#endif
