/* api.h — the ingress dialects: routes requests to their handlers, owns
 * the one place where errors become OpenAI-shaped bodies, request ids,
 * and the per-request log line and metrics. */
#ifndef UMB_API_H
#define UMB_API_H

#include "http/http.h"
#include "providers/canon.h"

/** Route a complete request to its handler. */
void api_dispatch(struct req *r);
/** Set r->id from a sane client x-request-id, else a fresh random one. */
void api_request_id(struct req *r);
/** The request is over: one log line and the metrics. */
void api_request_done(struct req *r);

/** The client's dialect, from the path: /v1/messages is Anthropic's. */
enum api_dialect api_dialect(const struct req *r);

/** Answer with an error body in the caller's dialect and finish the
 * request: OpenAI {"error":{"message","type","param","code"}}, or for
 * /v1/messages Anthropic {"type":"error","error":{"type","message"}} with
 * the Anthropic type for the status (docs/providers.md). */
void api_error(struct req *r, int status, const char *type, const char *code,
	       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/** Same, with extra preformatted header lines (e.g. retry-after). */
void api_error_h(struct req *r, int status, struct str extra_headers,
		 const char *type, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/** May the authenticated caller use this model name (team policy)? */
bool api_model_allowed(const struct req *r, struct str model);

/** Reserve the caller's budgets and rate limits for a request to m
 * (api/govern.c); false when it was refused (and answered 429/503). */
bool api_govern_admit(struct req *r, const struct cfg_model *m, struct str requested,
		      struct str body, int64_t max_tokens);
/** Settle the reservations with what the upstream reported. */
void api_govern_settle(struct req *r);

/* handlers (api/openai.c) */
void api_openai_chat(struct req *r);
/** The chat path shared by both dialects: body is OpenAI-shaped; for an
 * Anthropic client canon and native (its own body and members) are set. */
struct json_member;
void api_chat(struct req *r, struct str body, const struct canon_req *canon,
	      struct json_member *native, size_t n_native);
/* handlers (api/anthropic.c) */
void api_anthropic_messages(struct req *r);
void api_openai_embeddings(struct req *r);
void api_openai_models(struct req *r);

/* handlers (api/admin.c): POST /enroll and the admin API */
void api_enroll(struct req *r);
void api_admin(struct req *r);

#endif
