/* azure.c — Azure OpenAI: the OpenAI wire format behind Azure's URL and
 * auth (DESIGN.md "Provider URLs", "Credentials"):
 *
 *   {origin}/openai/deployments/{deployment}/chat/completions?api-version=V
 *   {origin}/openai/deployments/{deployment}/embeddings?api-version=V
 *   api-key: KEY
 *
 * The deployment is the provider's `deployment`, else the model's
 * upstream name; api_version defaults to the latest GA data-plane
 * inference version. Bodies, answers and streams are OpenAI's, so every
 * piece but the URL and headers is openai.c's (openai_wire.h). Azure
 * ignores the body's model member; it is kept as openai.c writes it. */
#include "providers/openai_wire.h"

/* Latest GA data-plane inference version for the deployments URL
 * (learn.microsoft.com azure/ai-services/openai/reference). */
#define AZURE_API_VERSION "2024-10-21"

/* s percent-encoded for one URL path segment or query value: RFC 3986
 * unreserved characters stay, every other byte becomes %XX. */
static char *url_escape(struct arena *a, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = arena_alloc_raw(a, n * 3 + 1), *w = out;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			*w++ = (char)c;
		} else {
			*w++ = '%';
			*w++ = hex[c >> 4];
			*w++ = hex[c & 15];
		}
	}
	*w = 0;
	return out;
}

static int azure_build(struct arena *a, const struct upstream_call *call,
		       const struct cfg_model *model, const struct cfg_endpoint *ep,
		       const char *request_id, struct provider_request *out)
{
	const struct cfg_provider *prov = model->provider;
	const char *key = model->api_key ? model->api_key : prov->api_key;
	if (openai_build_body(a, call, model, out))
		return UMB_ERR;

	const char *deployment = prov->deployment && *prov->deployment
					 ? prov->deployment
					 : arena_strdup_str(a, provider_upstream_name(call, model));
	const char *version = prov->api_version && *prov->api_version ? prov->api_version
								      : AZURE_API_VERSION;
	const char *op = call->op == UPSTREAM_EMBEDDINGS ? "/embeddings" : "/chat/completions";
	out->url = arena_join(a, ep->origin, "/openai/deployments/", url_escape(a, deployment), op,
			      "?api-version=", url_escape(a, version), NULL);

	size_t h = 0;
	out->headers[h++] = "Content-Type: application/json";
	out->headers[h++] = "Expect:"; /* no 100-continue round trip on big bodies */
	out->headers[h++] = arena_join(a, "x-request-id: ", request_id, NULL);
	/* without api_key, auth may come from the configured headers (a
	 * proxy, or an Entra ID bearer token) */
	if (key && *key)
		out->headers[h++] = arena_join(a, "api-key: ", key, NULL);
	out->n_headers = h;
	provider_extra_headers(a, model, out);
	return UMB_OK;
}

static const struct provider_ops azure_ops = {
	.name = "azure",
	.native = DIALECT_OPENAI,
	.build = azure_build,
	.finish = openai_finish,
	.stream_event = openai_stream_event,
	.decode = openai_decode,
	.stream_size = OPENAI_STREAM_SIZE,
	.stream_init = openai_stream_init,
	.stream_feed = openai_stream_feed,
	.stream_finish = openai_stream_finish,
	.stream_clear = openai_stream_clear,
	.embeddings_to_openai = NULL, /* Azure's embeddings answer is OpenAI's */
	.embeddings = true,
	.error_message = openai_error_message,
	.health_path = NULL, /* no unauthenticated listing on the data plane: passive only */
};

const struct provider_ops *provider_azure_ops(void)
{
	return &azure_ops;
}
