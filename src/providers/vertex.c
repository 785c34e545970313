/* vertex.c — placeholder until the vertex wire format lands (issue 7). */
#include "providers/provider.h"

const struct provider_ops *provider_vertex_ops(void)
{
	return NULL;
}
