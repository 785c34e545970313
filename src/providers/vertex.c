/* vertex.c — Google Vertex AI, Gemini models (publishers/google), through
 * generateContent / streamGenerateContent?alt=sse.
 *
 * No client dialect is Gemini's, so every request is translated
 * (native = -1): the canonical request is encoded by gemini_fmt.c, the
 * answer decoded back. Authentication is an OAuth 2.0 access token, the
 * provider's static access_token or one obtained for its service-account
 * credentials_file (gcp_auth.c). */
#include <stdio.h>
#include <stdlib.h>

#include "providers/gcp_auth.h"
#include "providers/gemini_fmt.h"
#include "providers/provider.h"

/* Path segments (project, location, model) percent-encoded: anything but
 * unreserved characters and '@' (model versions such as "m@001"). */
static void path_segment(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~' || c == '@') {
			buf_append(b, s, 1);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			buf_append(b, e, 3);
		}
	}
}

/* origin + /v1/projects/P/locations/L/publishers/google/models/M:method */
static const char *vertex_url(struct arena *a, const struct cfg_endpoint *ep,
			      const struct cfg_provider *prov, struct str model, bool stream)
{
	struct buf b;
	buf_init(&b, 0);
	buf_append_cstr(&b, ep->origin);
	buf_append_lit(&b, "/v1/projects/");
	path_segment(&b, prov->project);
	buf_append_lit(&b, "/locations/");
	path_segment(&b, prov->location);
	buf_append_lit(&b, "/publishers/google/models/");
	char *m = arena_strdup_str(a, model);
	path_segment(&b, m);
	if (stream)
		buf_append_lit(&b, ":streamGenerateContent?alt=sse");
	else
		buf_append_lit(&b, ":generateContent");
	char *url = arena_strndup(a, b.p ? b.p : "", b.n);
	buf_clear(&b);
	return url;
}

/* Log a configuration problem once per process, not per request. */
static void warn_once(bool *done, const char *what, const char *prov)
{
	if (__atomic_exchange_n(done, true, __ATOMIC_RELAXED))
		return;
	log_error("vertex provider %s: %s", prov, what);
}

/* The Authorization header value: the static token, or a cached one for
 * the service account. NULL (logged) when there is none. */
static const char *vertex_bearer(struct arena *a, const struct cfg_provider *prov)
{
	static bool no_creds_logged;
	if (prov->access_token && *prov->access_token)
		return prov->access_token;
	if (!prov->credentials_file || !*prov->credentials_file) {
		warn_once(&no_creds_logged, "neither credentials_file nor access_token is set",
			  prov->name);
		return NULL;
	}
	const char *tok = NULL;
	char why[384];
	if (gcp_auth_token(a, prov->credentials_file, prov->ca_file, prov->timeouts.connect_ms,
			   &tok, why, sizeof why)) {
		/* the refresher logged the cause once; per request only at debug */
		log_debug("vertex provider %s: %s", prov->name, why);
		return NULL;
	}
	return tok;
}

/* Start the key file's refresher now, without waiting: the first request
 * then finds a token instead of waiting up to connect_ms for one. */
static void vertex_prepare(const struct cfg_provider *prov)
{
	if (!prov->credentials_file || !*prov->credentials_file ||
	    (prov->access_token && *prov->access_token))
		return;
	struct arena *a = arena_new(0);
	const char *tok;
	char why[384];
	gcp_auth_token(a, prov->credentials_file, prov->ca_file, 0, &tok, why, sizeof why);
	arena_free(a);
}

static int vertex_build(struct arena *a, const struct upstream_call *call,
			const struct cfg_model *model, const struct cfg_endpoint *ep,
			const char *request_id, struct provider_request *out)
{
	static bool no_project_logged, not_chat_logged;
	const struct cfg_provider *prov = model->provider;
	if (call->op != UPSTREAM_CHAT || !call->canon) {
		warn_once(&not_chat_logged, "serves chat completions only", prov->name);
		return UMB_ERR;
	}
	if (!prov->project || !*prov->project || !prov->location || !*prov->location) {
		warn_once(&no_project_logged, "project and location are required", prov->name);
		return UMB_ERR;
	}
	const char *bearer = vertex_bearer(a, prov);
	if (!bearer)
		return UMB_ERR;

	struct buf body;
	char why[160] = "";
	buf_init(&body, 0);
	if (gemini_req_encode(call->canon, &body, why, sizeof why)) {
		/* the request cannot be said to Gemini: forward.c tells the client */
		buf_clear(&body);
		out->unsupported = arena_strndup(a, why, strlen(why));
		return UMB_ERR;
	}
	provider_body_set(a, out, &body);
	buf_clear(&body);

	out->url = vertex_url(a, ep, prov, provider_upstream_name(call, model), call->stream);
	size_t h = 0;
	out->headers[h++] = "Content-Type: application/json";
	out->headers[h++] = "Expect:"; /* no 100-continue round trip on big bodies */
	out->headers[h++] = arena_join(a, "x-request-id: ", request_id, NULL);
	out->headers[h++] = arena_join(a, "Authorization: Bearer ", bearer, NULL);
	out->n_headers = h;
	provider_extra_headers(a, model, out);
	return UMB_OK;
}

static int vertex_decode(struct arena *a, const struct upstream_call *call, struct str body,
			 struct canon_resp *out)
{
	UMB_UNUSED(call);
	return gemini_resp_decode(a, body, out);
}

static void vertex_stream_init(void *st, const struct upstream_call *call)
{
	UMB_UNUSED(call);
	gemini_stream_dec_init(st);
}

static int vertex_stream_feed(void *st, const char *p, size_t n, const struct canon_sink *sink)
{
	return gemini_stream_dec_feed(st, p, n, sink);
}

static int vertex_stream_finish(void *st, const struct canon_sink *sink)
{
	return gemini_stream_dec_finish(st, sink);
}

static void vertex_stream_clear(void *st)
{
	gemini_stream_dec_clear(st);
}

static const struct provider_ops vertex_ops = {
	.name = "vertex",
	.native = -1,
	.build = vertex_build,
	.decode = vertex_decode,
	.stream_size = sizeof(struct gemini_stream_dec),
	.stream_init = vertex_stream_init,
	.stream_feed = vertex_stream_feed,
	.stream_finish = vertex_stream_finish,
	.stream_clear = vertex_stream_clear,
	.error_message = gemini_error_message,
	.health_path = NULL, /* no unauthenticated cheap GET: passive checks only */
	.prepare = vertex_prepare,
};

const struct provider_ops *provider_vertex_ops(void)
{
	return &vertex_ops;
}
