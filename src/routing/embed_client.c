/* embed_client.c — request bodies and response parsing for remote
 * embedders (embed_client.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/json.h"
#include "routing/embed_client.h"

int embed_client_body(struct buf *out, const char *model, const struct str *texts, size_t n)
{
	int rc = buf_append_lit(out, "{\"model\":");
	rc = rc ? rc : json_write_cstr(out, model);
	rc = rc ? rc : buf_append_lit(out, ",\"input\":[");
	for (size_t i = 0; i < n && !rc; i++) {
		if (i)
			rc = buf_append_lit(out, ",");
		/* texts come from requests: not necessarily UTF-8 */
		if (!rc)
			rc = json_write_str_lossy(out, texts[i]);
	}
	return rc ? rc : buf_append_lit(out, "],\"encoding_format\":\"float\"}");
}

__attribute__((format(printf, 3, 4)))
static int embed_client_fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return UMB_ERR;
}

/* Count the numbers of a vector and check they are all finite numbers. */
static int embed_client_vec_dim(struct json_val arr, size_t *dim)
{
	struct json_iter it;
	struct json_val v;
	size_t k = 0;
	double d;
	json_iter_init(&it, arr);
	while (json_arr_next(&it, &v)) {
		if (v.type != JSON_NUMBER || json_get_double(v, &d) || !isfinite(d) ||
		    ++k > EMBED_CLIENT_MAX_DIM)
			return UMB_ERR;
	}
	*dim = k;
	return UMB_OK;
}

int embed_client_parse(struct str body, size_t n, float **out, size_t *dim,
		       char *why, size_t whylen)
{
	struct json_val root, data, item, emb, idx;
	struct json_err err;
	struct json_iter it;
	float *vecs = NULL;
	unsigned char *seen = NULL;
	size_t d = 0, count = 0;
	*out = NULL;
	*dim = 0;
	if (n == 0 || n > EMBED_CLIENT_MAX_TEXTS)
		return embed_client_fail(why, whylen, "asked for %zu vectors", n);
	if (json_parse(body.p, body.n, &root, &err))
		return embed_client_fail(why, whylen, "not JSON: %s at byte %zu", err.msg, err.off);
	if (root.type != JSON_OBJECT || !json_obj_get(root, "data", &data) || data.type != JSON_ARRAY)
		return embed_client_fail(why, whylen, "no data array");
	seen = calloc(n, 1);
	if (!seen)
		return embed_client_fail(why, whylen, "out of memory");
	json_iter_init(&it, data);
	while (json_arr_next(&it, &item)) {
		int64_t i = (int64_t)count;
		if (item.type != JSON_OBJECT || !json_obj_get(item, "embedding", &emb) ||
		    emb.type != JSON_ARRAY) {
			embed_client_fail(why, whylen, "data[%zu] has no embedding array", count);
			goto fail;
		}
		if (json_obj_get(item, "index", &idx) && (json_get_i64(idx, &i) || i < 0)) {
			embed_client_fail(why, whylen, "data[%zu].index is not an index", count);
			goto fail;
		}
		if ((uint64_t)i >= n || seen[i]) {
			embed_client_fail(why, whylen, "data[%zu].index %lld is out of range or repeated",
					  count, (long long)i);
			goto fail;
		}
		size_t k;
		if (embed_client_vec_dim(emb, &k) || k == 0) {
			embed_client_fail(why, whylen, "data[%zu].embedding is not 1..%d finite numbers",
					  count, EMBED_CLIENT_MAX_DIM);
			goto fail;
		}
		if (!vecs) {
			d = k;
			vecs = malloc(n * d * sizeof *vecs);
			if (!vecs) {
				embed_client_fail(why, whylen, "out of memory");
				goto fail;
			}
		} else if (k != d) {
			embed_client_fail(why, whylen, "data[%zu].embedding has %zu numbers, data[0] %zu",
					  count, k, d);
			goto fail;
		}
		struct json_iter vi;
		struct json_val v;
		double x;
		float *dst = vecs + (size_t)i * d;
		json_iter_init(&vi, emb);
		for (size_t j = 0; json_arr_next(&vi, &v); j++) {
			json_get_double(v, &x);
			dst[j] = (float)x;
		}
		seen[i] = 1;
		count++;
	}
	if (count != n) {
		embed_client_fail(why, whylen, "%zu vectors for %zu texts", count, n);
		goto fail;
	}
	free(seen);
	*out = vecs;
	*dim = d;
	return UMB_OK;
fail:
	free(seen);
	free(vecs);
	return UMB_ERR;
}
