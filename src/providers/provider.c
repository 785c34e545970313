/* provider.c — what all providers share: the table of wire formats, the
 * model name and extra headers every format sends, and joining a body that
 * was built as pieces. */
#include "providers/provider.h"

const struct provider_ops *provider_ops_get(enum provider_type type)
{
	switch (type) {
	case PROVIDER_OPENAI:
		return provider_openai_ops();
	case PROVIDER_AZURE:
		return provider_azure_ops();
	case PROVIDER_ANTHROPIC:
		return provider_anthropic_ops();
	case PROVIDER_BEDROCK:
		return provider_bedrock_ops();
	case PROVIDER_VERTEX:
		return provider_vertex_ops();
	case PROVIDER_OLLAMA:
		return provider_ollama_ops();
	}
	return NULL;
}

struct str provider_upstream_name(const struct upstream_call *call, const struct cfg_model *m)
{
	if (m->upstream_model)
		return str_cstr(m->upstream_model);
	if (m->is_glob)
		return call->requested_model;
	return str_cstr(m->name);
}

void provider_extra_headers(struct arena *a, const struct cfg_model *model,
			    struct provider_request *out)
{
	const struct cfg_provider *prov = model->provider;
	size_t h = out->n_headers;
	for (size_t i = 0; i < prov->n_headers && h < UMB_ARRAY_LEN(out->headers); i++) {
		bool overridden = false; /* the model's own header wins */
		for (size_t j = 0; j < model->n_headers && !overridden; j++)
			overridden = !strcasecmp(model->headers[j].name, prov->headers[i].name);
		if (!overridden)
			out->headers[h++] = arena_join(a, prov->headers[i].name, ": ",
						       prov->headers[i].value, NULL);
	}
	for (size_t i = 0; i < model->n_headers && h < UMB_ARRAY_LEN(out->headers); i++)
		out->headers[h++] = arena_join(a, model->headers[i].name, ": ",
					       model->headers[i].value, NULL);
	out->n_headers = h;
}

void provider_body_set(struct arena *a, struct provider_request *out, const struct buf *b)
{
	char *p = arena_strndup(a, b->p ? b->p : "", b->n);
	out->parts[0] = str_make(p, b->n);
	out->n_parts = 1;
}

struct str provider_body_join(struct arena *a, struct provider_request *pr)
{
	if (pr->n_parts == 1) {
		pr->body = pr->parts[0];
		return pr->body;
	}
	size_t total = 0;
	for (size_t i = 0; i < pr->n_parts; i++)
		total += pr->parts[i].n;
	char *out = arena_alloc_raw(a, total + 1), *w = out;
	for (size_t i = 0; i < pr->n_parts; i++) {
		memcpy(w, pr->parts[i].p, pr->parts[i].n);
		w += pr->parts[i].n;
	}
	*w = 0;
	pr->body = str_make(out, total);
	return pr->body;
}
