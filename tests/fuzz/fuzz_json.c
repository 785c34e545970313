/* fuzz_json.c — libFuzzer target for core/json.
 *
 * 1. Parse the input; when it is valid, walk every value through the
 *    navigation API (which must agree with the scanner on where values end)
 *    and decode every string and number.
 * 2. When the input is valid UTF-8, treat it as a string: write it, parse
 *    the result, decode it, and require the original bytes back. */
#include <stdio.h>
#include <stdlib.h>

#include "core/json.h"

#define FUZZ_CHECK(c)                                                         \
	do {                                                                  \
		if (!(c)) {                                                   \
			fprintf(stderr, "check failed: %s (line %d)\n", #c,   \
				__LINE__);                                    \
			abort();                                              \
		}                                                             \
	} while (0)

/* Every value found by the iterator must itself be a complete valid JSON
 * text of the same type: this checks the skipper against the scanner. */
static void walk(struct json_val v, struct buf *scratch, int depth)
{
	struct json_val w;
	struct json_iter it;
	struct str k;

	FUZZ_CHECK(depth <= JSON_MAX_DEPTH);
	FUZZ_CHECK(json_parse(v.raw.p, v.raw.n, &w, NULL) == UMB_OK);
	FUZZ_CHECK(w.type == v.type && w.raw.p == v.raw.p && w.raw.n == v.raw.n);

	switch (v.type) {
	case JSON_OBJECT:
		json_iter_init(&it, v);
		while (json_obj_next(&it, &k, &w)) {
			/* the key decodes, and key_eq agrees with the decoding
			 * whenever it holds no NUL */
			struct json_val kv = { JSON_STRING,
					       str_make(k.p - 1, k.n + 2) };
			buf_reset(scratch);
			FUZZ_CHECK(json_str_decode(kv, scratch) == UMB_OK);
			if (!memchr(scratch->p ? scratch->p : "", 0, scratch->n)) {
				char *key = strndup(scratch->p ? scratch->p : "",
						    scratch->n);
				FUZZ_CHECK(json_key_eq(k, key));
				FUZZ_CHECK(json_obj_get(v, key, NULL));
				free(key);
			}
			walk(w, scratch, depth + 1);
		}
		break;
	case JSON_ARRAY:
		json_iter_init(&it, v);
		while (json_arr_next(&it, &w))
			walk(w, scratch, depth + 1);
		break;
	case JSON_STRING:
		buf_reset(scratch);
		FUZZ_CHECK(json_str_decode(v, scratch) == UMB_OK);
		FUZZ_CHECK(json_utf8_valid(scratch->p ? scratch->p : "",
					   scratch->n));
		break;
	case JSON_NUMBER: {
		int64_t i;
		double d;
		(void)json_get_i64(v, &i);
		(void)json_get_double(v, &d);
		break;
	}
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct json_member m[16];
	struct json_val root, root2;
	struct json_err err;
	struct buf scratch, doc, out;
	size_t nm;
	int rc;

	buf_init(&scratch, 0);
	rc = json_parse(p, size, &root, &err);
	FUZZ_CHECK(json_parse_top(p, size, m, 16, &nm, &root2, NULL) == rc ||
		   (rc == UMB_OK && root.type == JSON_OBJECT));
	if (rc == UMB_OK) {
		walk(root, &scratch, 0);
		if (json_parse_top(p, size, m, 16, &nm, &root2, NULL) == UMB_OK) {
			struct json_iter it;
			struct str k;
			struct json_val v;
			size_t i = 0;

			/* the recorded members are the iterator's members */
			json_iter_init(&it, root2);
			while (json_obj_next(&it, &k, &v)) {
				FUZZ_CHECK(i < nm);
				FUZZ_CHECK(k.p == m[i].key_raw.p && k.n == m[i].key_raw.n);
				FUZZ_CHECK(v.raw.p == m[i].val.raw.p &&
					   v.raw.n == m[i].val.raw.n &&
					   v.type == m[i].val.type);
				i++;
			}
			FUZZ_CHECK(i == nm);
		}
	} else {
		FUZZ_CHECK(err.msg != NULL && err.off <= size);
	}

	if (json_utf8_valid(p, size)) {
		struct json_val v;

		buf_init(&doc, 0);
		buf_init(&out, 0);
		FUZZ_CHECK(json_write_str(&doc, str_make(p, size)) == UMB_OK);
		FUZZ_CHECK(json_parse(doc.p, doc.n, &v, NULL) == UMB_OK);
		FUZZ_CHECK(v.type == JSON_STRING);
		FUZZ_CHECK(json_str_decode(v, &out) == UMB_OK);
		FUZZ_CHECK(out.n == size &&
			   (size == 0 || memcmp(out.p, p, size) == 0));
		buf_clear(&doc);
		buf_clear(&out);
	}
	buf_clear(&scratch);
	return 0;
}
