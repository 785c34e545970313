/* fuzz_embed.c — libFuzzer target for what an embedder reads: the remote
 * embedder's response parser (routing/embed_client.c) and the builtin
 * embedder (routing/embed.c) over arbitrary text.
 *
 * The input's first byte picks how many vectors the parser expects (1-8);
 * the rest is the response body, and also the text the builtin embedder
 * embeds. Checked: a parsed response has n finite vectors of one dimension
 * within the cap; the builtin vector is finite and of norm 1 or 0; the
 * request body written for the text is valid JSON. The input is copied to
 * an exact-size heap block so ASan catches any read past its end. */
#include <math.h>
#include <stdlib.h>

#include "core/json.h"
#include "routing/embed.h"
#include "routing/embed_client.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

static struct embed_builtin *emb;
static float vec[EMBED_BUILTIN_DIM];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (!emb) {
		struct str corpus[2] = { STR("write a python function"), STR("basel capital rules") };
		emb = embed_builtin_new(corpus, 2);
	}
	size_t n = (size_t)(data[0] % 8) + 1;
	char *t = malloc(size - 1 ? size - 1 : 1);
	CHECK(t);
	memcpy(t, data + 1, size - 1);
	struct str body = str_make(t, size - 1);

	float *vecs = NULL;
	size_t dim = 0;
	char why[160];
	if (embed_client_parse(body, n, &vecs, &dim, why, sizeof why) == UMB_OK) {
		CHECK(vecs && dim >= 1 && dim <= EMBED_CLIENT_MAX_DIM);
		for (size_t i = 0; i < n * dim; i++)
			CHECK(isfinite(vecs[i]));
		free(vecs);
	} else {
		CHECK(!vecs && why[0]);
	}

	CHECK(embed_builtin_dim(emb) == EMBED_BUILTIN_DIM);
	embed_builtin_vec(emb, body, vec);
	double norm = 0;
	for (size_t i = 0; i < EMBED_BUILTIN_DIM; i++) {
		CHECK(isfinite(vec[i]));
		norm += (double)vec[i] * vec[i];
	}
	CHECK(norm == 0 || fabs(norm - 1) < 1e-3);

	struct buf req;
	buf_init(&req, 0);
	CHECK(embed_client_body(&req, "m", &body, 1) == UMB_OK);
	CHECK(json_parse(req.p, req.n, NULL, NULL) == UMB_OK);
	buf_clear(&req);
	free(t);
	return 0;
}
