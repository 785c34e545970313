/* fuzz_classifier.c — libFuzzer target for routing/classifier.c, whose
 * input is what a model server (answer) or a client (prompt) controls.
 *
 * The input is used three ways, each from an exact-size heap copy so ASan
 * catches any read past its end:
 *   - as a whole response body (classifier_parse_answer);
 *   - as the bare answer content (classifier_parse_content);
 *   - as the prompt of a request (classifier_build_request), with a limit
 *     taken from the first byte.
 * Properties: a parse either fails with route -1, confidence 0 and a
 * reason, or names a real route with confidence in [0, 1]; the same
 * content wrapped into a well-formed body gives the same result; a built
 * request is always strict, valid UTF-8 JSON. */
#include <stdlib.h>

#include "core/json.h"
#include "routing/classifier.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

static const char *const names[] = { "coding", "pii", "general", "Math" };
static const char *const descs[] = { "code", "personal data", NULL, "sums" };
#define NR (sizeof(names) / sizeof(names[0]))

/* Parse result invariants; returns rc. */
static int check(int rc, int route, double conf, const char *why)
{
	if (rc == UMB_OK) {
		CHECK(route >= 0 && route < (int)NR);
		CHECK(conf >= 0 && conf <= 1);
	} else {
		CHECK(rc == UMB_ERR);
		CHECK(route == -1 && conf == 0);
		CHECK(why[0] != 0 && strlen(why) < 96);
	}
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *t = malloc(size ? size : 1), why[96];
	struct str s;
	struct buf b, wrap;
	int r1, r2, rc1, rc2;
	double c1, c2;

	CHECK(t);
	if (size)
		memcpy(t, data, size);
	s = str_make(t, size);

	/* as the whole body */
	rc1 = classifier_parse_answer(s, names, NR, &r1, &c1, why, sizeof(why));
	check(rc1, r1, c1, why);

	/* as the content itself */
	rc1 = classifier_parse_content(s, names, NR, &r1, &c1, why,
				       sizeof(why));
	check(rc1, r1, c1, why);

	/* the same content inside a well-formed body: same answer (only for
	 * UTF-8 text, which is all a JSON string can carry) */
	if (size <= CLASSIFIER_CONTENT_MAX && json_utf8_valid(t, size)) {
		buf_init(&wrap, 0);
		CHECK(!buf_append_lit(&wrap, "{\"choices\":[{\"message\":"
					     "{\"role\":\"assistant\",\"content\":"));
		CHECK(!json_write_str(&wrap, s));
		CHECK(!buf_append_lit(&wrap, "}}]}"));
		rc2 = classifier_parse_answer(buf_str(&wrap), names, NR, &r2,
					      &c2, why, sizeof(why));
		check(rc2, r2, c2, why);
		CHECK(rc1 == rc2 && r1 == r2 && c1 == c2);
		buf_clear(&wrap);
	}

	/* as a prompt: the request is always valid JSON */
	buf_init(&b, 0);
	CHECK(classifier_build_request(&b, "m", names, descs, NR, s,
				       size ? data[0] * 16u : 0) == UMB_OK);
	CHECK(json_parse(b.p, b.n, NULL, NULL) == UMB_OK);
	CHECK(json_utf8_valid(b.p, b.n));
	buf_clear(&b);

	free(t);
	return 0;
}
