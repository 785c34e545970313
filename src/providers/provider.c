/* provider.c — what all providers share: the table of wire formats and
 * joining a body that was built as pieces. */
#include "providers/provider.h"

const struct provider_ops *provider_ops_get(enum provider_type type)
{
	switch (type) {
	case PROVIDER_OPENAI:
		return provider_openai_ops();
	default:
		return NULL;
	}
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
