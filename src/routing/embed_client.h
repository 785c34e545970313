/* embed_client.h — the wire format of a remote embedder: an
 * OpenAI-compatible POST /v1/embeddings (vLLM, TGI, Ollama's /v1, OpenAI,
 * a dark service behind a connector).
 *
 * The request asks for several texts at once (the route examples and the
 * prompt when the semantic index is still empty). The response parser is
 * strict about shape and bounded in size: every vector must be present
 * once, with one dimension for all. */
#ifndef UMB_EMBED_CLIENT_H
#define UMB_EMBED_CLIENT_H

#include "core/core.h"

/** Largest vector accepted from a remote embedder. */
#define EMBED_CLIENT_MAX_DIM 16384
/** Most texts in one request. */
#define EMBED_CLIENT_MAX_TEXTS 4096

/** {"model": model, "input": [texts...], "encoding_format": "float"}. */
int embed_client_body(struct buf *out, const char *model, const struct str *texts, size_t n);

/** Parse an embeddings response holding exactly n vectors: data[] items
 * {"embedding": [numbers], "index": i} in any order (without "index", in
 * array order). On success *out is n * *dim floats (malloc'd, the caller
 * frees). UMB_ERR with a reason in why otherwise. */
int embed_client_parse(struct str body, size_t n, float **out, size_t *dim,
		       char *why, size_t whylen);

#endif
