/* classifier.h — the last layer of the routing cascade: ask a chat model
 * (OpenAI chat-completions wire format) which route a prompt belongs to,
 * and read its answer tolerantly.
 *
 * The request is one system message (the routes, their descriptions and
 * the answer format) and one user message (the prompt text, as data). The
 * model is asked for {"route": "<name>", "confidence": <0..1>}; small local
 * models bend that format in many ways, so the parser accepts the common
 * deviations and refuses everything else with a short reason.
 *
 * Answer forms accepted (content = choices[0].message.content):
 *   - a JSON object: {"route":"coding","confidence":0.9}
 *   - the object inside a ``` or ```json code fence
 *   - the object with prose around it ("Sure! {...} Hope this helps")
 *   - a bare route name as the whole answer ("coding", "`Coding`.")
 * Inside the object: the "route" key is matched case-insensitively (one
 * only), its value is trimmed and matched case-insensitively against the
 * route names; "confidence" is a number or a numeric string.
 *
 * Decisions:
 *   - Missing or null confidence in an object: CLASSIFIER_CONF_MISSING
 *     (1.0). The model followed the format and committed to a valid route;
 *     many small models drop the second field, and treating that as
 *     uncertain would make the classifier useless with them.
 *   - A bare route name: CLASSIFIER_CONF_BARE (0.5). The model ignored the
 *     format, so the answer is usable only if the router's threshold is
 *     permissive.
 *   - Confidence in [0, 1] is taken as is; in (1, 100] it is read as a
 *     percentage (models that answer 85 mean 0.85) and divided by 100; a
 *     string may end in '%' ("85%" is 0.85). Negative, NaN, infinite or
 *     above 100 is an error, as is any other type (bool, object, words).
 *
 * Everything here is pure (no global state): thread-safe and allocation
 * only inside the caller's struct buf or short-lived scratch buffers. */
#ifndef UMB_CLASSIFIER_H
#define UMB_CLASSIFIER_H

#include "core/core.h"

/** max_tokens sent upstream: the answer object fits easily. */
#define CLASSIFIER_MAX_TOKENS 50
/** Confidence given to an object answer without a confidence member. */
#define CLASSIFIER_CONF_MISSING 1.0
/** Confidence given to a bare route name answer. */
#define CLASSIFIER_CONF_BARE 0.5
/** Largest upstream response body parsed (bigger is an error). */
#define CLASSIFIER_BODY_MAX (1u << 20)
/** Largest decoded message content parsed (bigger is an error). */
#define CLASSIFIER_CONTENT_MAX (16u << 10)
/** Appended to the user message when the prompt was cut. */
#define CLASSIFIER_TRUNC_MARKER "\n[... truncated]"

/** Append to out a complete chat-completions JSON body asking `model` to
 * classify prompt_text into one of the n_routes routes (names required,
 * descriptions may be NULL or have NULL entries). The prompt is cut at a
 * UTF-8 boundary to at most max_prompt_bytes (0 = no limit) and then gets
 * CLASSIFIER_TRUNC_MARKER; every string is JSON-escaped and invalid UTF-8
 * becomes U+FFFD, so any prompt bytes give a valid JSON document. Returns
 * UMB_OK; UMB_ERR on bad arguments; the buf error (UMB_ETOOBIG past its
 * cap, UMB_ENOMEM) otherwise — on error out is left as it was. */
int classifier_build_request(struct buf *out, const char *model,
			     const char *const *route_names,
			     const char *const *route_descriptions,
			     size_t n_routes, struct str prompt_text,
			     size_t max_prompt_bytes);

/** Read the upstream's whole response body (an OpenAI chat.completion):
 * take choices[0].message.content and parse it with
 * classifier_parse_content. On UMB_OK *route is an index into route_names
 * and *confidence is in [0, 1]; on UMB_ERR *route = -1, *confidence = 0
 * and why (if whylen > 0) holds a short NUL-terminated reason. Never reads
 * outside body; bodies over CLASSIFIER_BODY_MAX are refused. */
int classifier_parse_answer(struct str body, const char *const *route_names,
			    size_t n_routes, int *route, double *confidence,
			    char *why, size_t whylen);

/** Parse the model's answer text itself (the forms listed at the top of
 * this file); same results as classifier_parse_answer. */
int classifier_parse_content(struct str content,
			     const char *const *route_names, size_t n_routes,
			     int *route, double *confidence, char *why,
			     size_t whylen);

#endif
