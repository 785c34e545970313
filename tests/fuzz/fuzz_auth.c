/* fuzz_auth.c — libFuzzer target for the credential parsers
 * (identity/keys.c: keys_parse_header, keys_parse_token).
 *
 * Input: one byte choosing the header (Authorization or x-api-key), then
 * the header value. Properties checked beyond memory safety:
 * - a value over KEYS_HEADER_MAX is always refused;
 * - an accepted credential formats back to a key that occurs verbatim in
 *   the value (only one spelling of a key is accepted), and that text
 *   parses again to the same credential;
 * - the whole input parsed as a bare key is accepted only if it is exactly
 *   the canonical text of what it parsed to. */
#include <stdlib.h>
#include <string.h>

#include "identity/keys.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

static void check_canonical(struct str in, const struct keys_cred *c)
{
	char text[KEYS_TOKEN_LEN + 1];
	struct keys_cred again;

	keys_format(c, text);
	CHECK(strlen(text) == KEYS_TOKEN_LEN);
	CHECK(memmem(in.p, in.n, text, KEYS_TOKEN_LEN) != NULL);
	CHECK(keys_parse_token(str_make(text, KEYS_TOKEN_LEN), &again) == 0);
	CHECK(memcmp(&again, c, sizeof(again)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct keys_cred c;
	struct str v;
	enum keys_header h;
	int rc;

	if (size < 1)
		return 0;
	h = (data[0] & 1) ? KEYS_HDR_X_API_KEY : KEYS_HDR_AUTHORIZATION;
	v = str_make((const char *)data + 1, size - 1);

	memset(&c, 0xa5, sizeof(c));
	rc = keys_parse_header(v, h, &c);
	CHECK(rc == 0 || rc == KEYS_EMALFORMED);
	if (rc == 0) {
		CHECK(v.n <= KEYS_HEADER_MAX);
		CHECK(c.id[KEYS_ID_LEN] == 0);
		check_canonical(v, &c);
	}

	rc = keys_parse_token(v, &c);
	CHECK(rc == 0 || rc == KEYS_EMALFORMED);
	if (rc == 0) {
		char text[KEYS_TOKEN_LEN + 1];
		keys_format(&c, text);
		CHECK(v.n == KEYS_TOKEN_LEN && memcmp(text, v.p, v.n) == 0);
	}
	return 0;
}
