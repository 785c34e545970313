/* keys.h — virtual API keys bound to identities.
 *
 * A key reads `sk-umbra-<id>_<secret>`: a 12-character base32 id (public,
 * the store's primary key) and a 52-character base32 encoding of 32 random
 * bytes. Both use the lowercase RFC 4648 alphabet (a-z, 2-7), so a key is
 * one word for a double-click and survives any header or shell. The store
 * keeps only SHA-256 of the secret; verification looks the key up by id
 * and compares hashes in constant time. */
#ifndef UMB_KEYS_H
#define UMB_KEYS_H

#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "store/store.h"

#define KEYS_PREFIX "sk-umbra-"
#define KEYS_PREFIX_LEN 9
#define KEYS_ID_LEN STORE_KEY_ID_LEN /* 12 */
#define KEYS_SECRET_BYTES 32
#define KEYS_SECRET_LEN 52 /* base32 of 32 bytes, no padding */
#define KEYS_TOKEN_LEN (KEYS_PREFIX_LEN + KEYS_ID_LEN + 1 + KEYS_SECRET_LEN)
#define KEYS_HEADER_MAX 256 /* longer header values are refused unread */

/* Why a credential was refused; all of them map to 401. */
enum {
	KEYS_EMALFORMED = -30, /* not a well-formed umbra key */
	KEYS_EUNKNOWN = -31,   /* no key with that id */
	KEYS_EMISMATCH = -32,  /* right id, wrong secret */
	KEYS_EREVOKED = -33,   /* the key revoked */
	KEYS_EEXPIRED = -34,   /* the key expired */
	KEYS_EIDREVOKED = -35, /* the key's identity revoked */
	KEYS_EIDEXPIRED = -36, /* the key's identity expired (break-glass) */
};

/** Which request header carried the credential. */
enum keys_header {
	KEYS_HDR_AUTHORIZATION, /* "Bearer <key>" (OpenAI dialect) */
	KEYS_HDR_X_API_KEY,     /* "<key>" (Anthropic dialect) */
};

/** A parsed credential: the id and the decoded secret. */
struct keys_cred {
	char id[KEYS_ID_LEN + 1];
	uint8_t secret[KEYS_SECRET_BYTES];
};

/** Parse a bare key; KEYS_EMALFORMED unless it is exactly one canonical
 * `sk-umbra-<id>_<secret>`. */
int keys_parse_token(struct str tok, struct keys_cred *out);
/** Parse a header value (strict: length cap, scheme, charset); 0 or
 * KEYS_EMALFORMED. Pure: no store, no allocation. */
int keys_parse_header(struct str value, enum keys_header hdr,
		      struct keys_cred *out);
/** Write the canonical key text (NUL-terminated) for a credential. */
void keys_format(const struct keys_cred *c, char out[KEYS_TOKEN_LEN + 1]);
/** SHA-256 of a secret, as the store keeps it. */
void keys_hash_secret(const uint8_t secret[KEYS_SECRET_BYTES],
		      uint8_t out[STORE_HASH_LEN]);

/** Make and store a new key for a registered identity (expires: 0 =
 * never; label may be NULL). The key text goes to out_token, the only time
 * it exists; out_key (may be NULL) receives the stored record. */
int keys_create(struct store *st, const char *identity, int64_t now,
		int64_t expires, const char *label, struct store_key *out_key,
		char out_token[KEYS_TOKEN_LEN + 1]);
/** Check a credential at `now`: 0 with the key and its identity filled
 * (either may be NULL), a KEYS_E* refusal, or UMB_ERR if the store failed.
 * The secret comparison is constant-time, also for unknown ids. */
int keys_verify(struct store *st, const struct keys_cred *c, int64_t now,
		struct store_key *key_out, struct store_identity *id_out);
/** "active", "expired" or "revoked" at `now`. */
const char *keys_status(const struct store_key *k, int64_t now);
/** Append one key as the JSON object `umbra key list --json` and
 * GET /admin/keys print (never the secret). */
int keys_write_json(struct buf *b, const struct store_key *k, int64_t now);
/** A short reason for a keys_verify result (for logs, not for clients). */
const char *keys_strerror(int rc);

/** `umbra key create|list|revoke ...` (argv[0] is the subcommand) on an
 * open store; returns the exit code: 0 OK, 1 error, 2 usage. */
int keys_cmd_main(int argc, char **argv, struct store *st);
/** The same with explicit output streams (tests read them back). */
int keys_cmd_run(int argc, char **argv, struct store *st, FILE *out,
		 FILE *err);

#endif
