/* anthropic.c — the Anthropic ingress dialect: POST /v1/messages.
 *
 * The body is validated and decoded once into the canonical request
 * (providers/anthropic_fmt.c), then joins the one chat path both dialects
 * share (api_chat: routing, the guard, budgets, forwarding) as an
 * OpenAI-shaped body. Answers and errors go back in Anthropic's shape
 * whatever serves the model; an anthropic-type upstream gets the client's
 * own bytes with only the model member rewritten. */
#include "api/api.h"
#include "core/json.h"
#include "providers/anthropic_fmt.h"
#include "providers/openai_fmt.h"

#define ANTHROPIC_MAX_MEMBERS 128

void api_anthropic_messages(struct req *r)
{
	struct json_member *mem = arena_alloc_raw(r->arena, ANTHROPIC_MAX_MEMBERS * sizeof *mem);
	size_t n_mem = 0;
	struct json_val root;
	struct json_err err = { 0 };
	if (r->body.n == 0) {
		api_error(r, 400, "invalid_request_error", "invalid_json",
			  "request body is empty; expected a JSON object");
		return;
	}
	if (json_parse_top(r->body.p, r->body.n, mem, ANTHROPIC_MAX_MEMBERS, &n_mem, &root, &err)) {
		api_error(r, 400, "invalid_request_error", "invalid_json",
			  "request body is not valid JSON: %s at byte %zu", err.msg, err.off);
		return;
	}
	struct canon_req *c = arena_alloc(r->arena, sizeof *c);
	char why[256];
	if (anthropic_req_decode(r->arena, r->body, c, why, sizeof why)) {
		api_error(r, 400, "invalid_request_error", "invalid_value", "%s", why);
		return;
	}
	struct buf b;
	buf_init(&b, 0);
	int rc = openai_req_encode(c, c->model, &b);
	struct str body = str_make(arena_strndup(r->arena, b.p ? b.p : "", b.n), b.n);
	buf_clear(&b);
	if (rc) {
		api_error(r, 413, "invalid_request_error", "request_too_large", "request too large");
		return;
	}
	api_chat(r, body, c, mem, n_mem);
}
