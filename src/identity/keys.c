/* keys.c — virtual key format, parsing, creation and verification.
 *
 * Parsing is strict and allocation-free because it runs on every request
 * before anyone is authenticated: a value longer than KEYS_HEADER_MAX is
 * refused unread, and only the one canonical spelling of a key is
 * accepted (base32 with zero pad bits), so a key has exactly one text. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "identity/keys.h"

static const char keys_b32[] = "abcdefghijklmnopqrstuvwxyz234567";

/* Value of a base32 character, or -1. */
static int keys__b32_val(char c)
{
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

/* Encode n bytes to ceil(n*8/5) characters, no padding, no NUL. */
static void keys__b32_encode(const uint8_t *in, size_t n, char *out)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 5) {
			out[o++] = keys_b32[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits > 0)
		out[o++] = keys_b32[(acc << (5 - bits)) & 31];
}

/* Decode exactly `n` output bytes from ceil(n*8/5) characters; the unused
 * low bits of the last character must be zero (one text per secret). */
static int keys__b32_decode(const char *in, size_t len, uint8_t *out,
			    size_t n)
{
	uint32_t acc = 0;
	int bits = 0, v;
	size_t o = 0;

	if (len != (n * 8 + 4) / 5)
		return UMB_ERR;
	for (size_t i = 0; i < len; i++) {
		if ((v = keys__b32_val(in[i])) < 0)
			return UMB_ERR;
		acc = (acc << 5) | (uint32_t)v;
		bits += 5;
		if (bits >= 8) {
			out[o++] = (uint8_t)(acc >> (bits - 8));
			bits -= 8;
		}
	}
	if (o != n || (acc & ((1u << bits) - 1)) != 0)
		return UMB_ERR;
	return UMB_OK;
}

int keys_parse_token(struct str tok, struct keys_cred *out)
{
	const char *id, *sec;

	if (tok.n != KEYS_TOKEN_LEN ||
	    memcmp(tok.p, KEYS_PREFIX, KEYS_PREFIX_LEN) != 0)
		return KEYS_EMALFORMED;
	id = tok.p + KEYS_PREFIX_LEN;
	if (id[KEYS_ID_LEN] != '_')
		return KEYS_EMALFORMED;
	for (size_t i = 0; i < KEYS_ID_LEN; i++)
		if (keys__b32_val(id[i]) < 0)
			return KEYS_EMALFORMED;
	sec = id + KEYS_ID_LEN + 1;
	if (keys__b32_decode(sec, KEYS_SECRET_LEN, out->secret,
			     KEYS_SECRET_BYTES) != UMB_OK) {
		memset(out->secret, 0, sizeof(out->secret));
		return KEYS_EMALFORMED;
	}
	memcpy(out->id, id, KEYS_ID_LEN);
	out->id[KEYS_ID_LEN] = 0;
	return UMB_OK;
}

int keys_parse_header(struct str value, enum keys_header hdr,
		      struct keys_cred *out)
{
	struct str tok;
	size_t i = 0;

	if (value.n > KEYS_HEADER_MAX || !value.p)
		return KEYS_EMALFORMED;
	value = str_trim(value);
	switch (hdr) {
	case KEYS_HDR_AUTHORIZATION:
		/* RFC 9110: the scheme is case-insensitive, then 1*SP */
		if (value.n < 7 || !str_ieq(str_make(value.p, 6), STR("Bearer")))
			return KEYS_EMALFORMED;
		for (i = 6; i < value.n && (value.p[i] == ' ' ||
					    value.p[i] == '\t'); i++)
			;
		if (i == 6)
			return KEYS_EMALFORMED;
		tok = str_make(value.p + i, value.n - i);
		break;
	case KEYS_HDR_X_API_KEY:
		tok = value;
		break;
	default:
		return KEYS_EMALFORMED;
	}
	return keys_parse_token(tok, out);
}

void keys_format(const struct keys_cred *c, char out[KEYS_TOKEN_LEN + 1])
{
	char *p = out;

	memcpy(p, KEYS_PREFIX, KEYS_PREFIX_LEN);
	p += KEYS_PREFIX_LEN;
	memcpy(p, c->id, KEYS_ID_LEN);
	p += KEYS_ID_LEN;
	*p++ = '_';
	keys__b32_encode(c->secret, KEYS_SECRET_BYTES, p);
	out[KEYS_TOKEN_LEN] = 0;
}

/* Fetched once: EVP_sha256() makes OpenSSL 3 look the algorithm up on
 * every call, which tripled the cost of hashing a key (333 vs 117 ns). */
static EVP_MD *keys_sha256;
static pthread_once_t keys_sha256_once = PTHREAD_ONCE_INIT;

static void keys_sha256_fetch(void)
{
	keys_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void keys_hash_secret(const uint8_t secret[KEYS_SECRET_BYTES],
		      uint8_t out[STORE_HASH_LEN])
{
	unsigned int n = 0;

	pthread_once(&keys_sha256_once, keys_sha256_fetch);
	/* cannot fail for SHA-256 on a fixed-size input short of OOM */
	if (!keys_sha256 ||
	    EVP_Digest(secret, KEYS_SECRET_BYTES, out, &n, keys_sha256,
		       NULL) != 1 || n != STORE_HASH_LEN)
		umb_bug(__FILE__, __LINE__, "EVP_Digest(sha256)");
}

int keys_create(struct store *st, const char *identity, int64_t now,
		int64_t expires, const char *label, struct store_key *out_key,
		char out_token[KEYS_TOKEN_LEN + 1])
{
	struct keys_cred c;
	struct store_key k;
	uint8_t r[KEYS_ID_LEN];
	int rc = UMB_ERR;

	memset(&k, 0, sizeof(k));
	if (!store_name_valid(identity) ||
	    strlen(label ? label : "") > STORE_LABEL_MAX) {
		rc = STORE_EINVAL;
		goto out;
	}
	snprintf(k.identity, sizeof(k.identity), "%s", identity);
	snprintf(k.label, sizeof(k.label), "%s", label ? label : "");
	k.created = now;
	k.expires = expires;
	/* 60 random bits make an id collision a retry, not a failure */
	for (int attempt = 0; attempt < 4; attempt++) {
		rand_bytes(r, sizeof(r));
		for (size_t i = 0; i < KEYS_ID_LEN; i++)
			c.id[i] = keys_b32[r[i] & 31];
		c.id[KEYS_ID_LEN] = 0;
		rand_bytes(c.secret, sizeof(c.secret));
		memcpy(k.id, c.id, sizeof(k.id));
		keys_hash_secret(c.secret, k.secret_hash);
		rc = store_key_create(st, &k);
		if (rc != STORE_EEXISTS)
			break;
	}
	if (rc != UMB_OK)
		goto out;
	keys_format(&c, out_token);
	if (out_key)
		*out_key = k;
out:
	OPENSSL_cleanse(&c, sizeof(c));
	return rc;
}

/* A hash nobody's secret has (SHA-256 preimage), compared against when the
 * id is unknown so that path costs the same as a wrong secret. */
static const uint8_t keys_dummy_hash[STORE_HASH_LEN] = { 0 };

int keys_verify(struct store *st, const struct keys_cred *c, int64_t now,
		struct store_key *key_out, struct store_identity *id_out)
{
	struct store_key k;
	struct store_identity id;
	uint8_t h[STORE_HASH_LEN];
	const uint8_t *want = keys_dummy_hash;
	int rc, found;

	rc = store_key_get(st, c->id, &k);
	if (rc != UMB_OK && rc != STORE_ENOTFOUND && rc != STORE_EINVAL)
		return UMB_ERR; /* the store failed: not the caller's fault */
	found = rc == UMB_OK;
	if (found)
		want = k.secret_hash;
	keys_hash_secret(c->secret, h);
	if (CRYPTO_memcmp(h, want, STORE_HASH_LEN) != 0 || !found)
		return found ? KEYS_EMISMATCH : KEYS_EUNKNOWN;
	/* only now, with the secret proven, say why a real key is refused */
	if (k.revoked_at != 0)
		return KEYS_EREVOKED;
	if (k.expires != 0 && now >= k.expires)
		return KEYS_EEXPIRED;
	rc = store_identity_get(st, k.identity, &id);
	if (rc == STORE_ENOTFOUND)
		return KEYS_EUNKNOWN;
	if (rc != UMB_OK)
		return UMB_ERR;
	if (id.revoked_at != 0)
		return KEYS_EIDREVOKED;
	if (id.expires != 0 && now >= id.expires)
		return KEYS_EIDEXPIRED;
	if (key_out)
		*key_out = k;
	if (id_out)
		*id_out = id;
	return UMB_OK;
}

const char *keys_strerror(int rc)
{
	switch (rc) {
	case UMB_OK:
		return "ok";
	case KEYS_EMALFORMED:
		return "malformed key";
	case KEYS_EUNKNOWN:
		return "unknown key";
	case KEYS_EMISMATCH:
		return "wrong key secret";
	case KEYS_EREVOKED:
		return "key revoked";
	case KEYS_EEXPIRED:
		return "key expired";
	case KEYS_EIDREVOKED:
		return "identity revoked";
	case KEYS_EIDEXPIRED:
		return "identity expired";
	default:
		return "key store error";
	}
}

const char *keys_status(const struct store_key *k, int64_t now)
{
	if (k->revoked_at)
		return "revoked";
	if (k->expires && now >= k->expires)
		return "expired";
	return "active";
}

int keys_write_json(struct buf *b, const struct store_key *k, int64_t now)
{
	if (buf_printf(b, "{\"id\":\"%s\",\"identity\":", k->id) ||
	    json_write_cstr(b, k->identity) ||
	    buf_printf(b,
		       ",\"created\":%lld,\"expires\":%lld,\"revoked\":%s,"
		       "\"revoked_at\":%lld,\"status\":\"%s\",\"label\":",
		       (long long)k->created, (long long)k->expires,
		       k->revoked_at ? "true" : "false",
		       (long long)k->revoked_at, keys_status(k, now)) ||
	    json_write_cstr(b, k->label) || buf_append_lit(b, "}"))
		return UMB_ENOMEM;
	return UMB_OK;
}
