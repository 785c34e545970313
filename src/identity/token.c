/* token.c — one-time enrollment tokens: compact JWS (RFC 7515) with ES256
 * (RFC 7518 §3.4: raw r||s, 64 bytes), signed by the CA key.
 *
 * Verification is deliberately narrow: exactly three base64url segments
 * without padding, a header of only {"alg":"ES256","typ":"JWT"}, a known
 * set of typed claims with no duplicates and no extras. Anything else is
 * refused before it can influence what gets issued. */
#include "identity/pki.h"
#include "identity/pki_int.h"

#include <stdio.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>

#include "core/json.h"

#define TOKEN_MAX_CLAIMS 16
/* A token that claims to live longer than this is not one we made. */
#define TOKEN_MAX_LIFETIME_S (30LL * 86400)

static const char b64url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_encode(struct buf *b, const unsigned char *p, size_t n)
{
	char q[4];
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t k = n - i >= 3 ? 3 : n - i;
		if (k > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (k > 2)
			v |= p[i + 2];
		q[0] = b64url[(v >> 18) & 63];
		q[1] = b64url[(v >> 12) & 63];
		q[2] = b64url[(v >> 6) & 63];
		q[3] = b64url[v & 63];
		if (buf_append(b, q, k + 1))
			return UMB_ERR;
	}
	return UMB_OK;
}

static int b64_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Strict: no padding, no whitespace, a 1-char tail is impossible and the
 * unused low bits of the last char must be zero (one encoding per value). */
static int b64url_decode(struct str s, struct buf *out)
{
	if (s.n % 4 == 1)
		return UMB_ERR;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < s.n; i++) {
		int v = b64_val(s.p[i]);
		if (v < 0)
			return UMB_ERR;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			unsigned char c = (unsigned char)(acc >> bits);
			if (buf_append(out, &c, 1))
				return UMB_ERR;
		}
	}
	if (bits && (acc & ((1u << bits) - 1)))
		return UMB_ERR;
	return UMB_OK;
}

static bool hex_valid(struct str s, size_t n)
{
	if (s.n != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s.p[i] >= '0' && s.p[i] <= '9') ||
		      (s.p[i] >= 'a' && s.p[i] <= 'f')))
			return false;
	return true;
}

/* ---- signing ---- */

/* DER ECDSA-Sig-Value -> JOSE r||s (32 + 32 bytes). */
static int sig_der_to_raw(const unsigned char *der, size_t n,
			  unsigned char raw[64])
{
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)n);
	const BIGNUM *r, *s;
	int rc = UMB_ERR;
	if (!sig)
		return UMB_ERR;
	ECDSA_SIG_get0(sig, &r, &s);
	if (BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32)
		rc = UMB_OK;
	ECDSA_SIG_free(sig);
	return rc;
}

/* JOSE r||s -> DER, for EVP_DigestVerify. *der is OpenSSL-allocated. */
static int sig_raw_to_der(const unsigned char raw[64], unsigned char **der,
			  int *n)
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
	int rc = UMB_ERR;
	if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		goto out;
	}
	*der = NULL;
	if ((*n = i2d_ECDSA_SIG(sig, der)) > 0)
		rc = UMB_OK;
out:
	ECDSA_SIG_free(sig);
	return rc;
}

static void hex_rand(char *out, size_t nbytes)
{
	static const char hx[] = "0123456789abcdef";
	unsigned char r[32];
	rand_bytes(r, nbytes);
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = hx[r[i] >> 4];
		out[2 * i + 1] = hx[r[i] & 15];
	}
	out[2 * nbytes] = 0;
}

static bool url_valid(const char *s)
{
	size_t n = strlen(s);
	if (n > PKI_URL_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

int pki_token_make(const struct pki_ca *ca, const char *name,
		   enum pki_kind kind, const char *team, const char *gw,
		   int64_t lifetime_s, time_t now, struct buf *out,
		   struct pki_token_claims *claims, char *err)
{
	int rc = UMB_ERR;
	struct pki_token_claims c;
	struct buf payload, signing;
	EVP_MD_CTX *md = NULL;
	unsigned char der[80], raw[64];
	size_t dlen = sizeof(der);

	buf_init(&payload, PKI_TOKEN_MAX);
	buf_init(&signing, PKI_TOKEN_MAX);
	memset(&c, 0, sizeof(c));
	if (!name || !pki_name_valid(str_cstr(name)) ||
	    (team && !pki_name_valid(str_cstr(team))) ||
	    (unsigned)kind > PKI_KIND_ADMIN) {
		pki__err(err, "invalid identity, team or kind");
		goto out;
	}
	if (gw && !url_valid(gw)) {
		pki__err(err, "gateway URL hint is too long or has spaces");
		goto out;
	}
	if (lifetime_s <= 0 || lifetime_s > TOKEN_MAX_LIFETIME_S) {
		pki__err(err, "token lifetime must be within 30 days");
		goto out;
	}
	snprintf(c.sub, sizeof(c.sub), "%s", name);
	c.kind = kind;
	snprintf(c.team, sizeof(c.team), "%s", team ? team : "");
	snprintf(c.gw, sizeof(c.gw), "%s", gw ? gw : "");
	memcpy(c.ca_fp, ca->fp, sizeof(c.ca_fp));
	hex_rand(c.jti, 16);
	c.iat = (int64_t)now;
	c.exp = (int64_t)now + lifetime_s;

	/* Names were validated to a charset that needs no escaping, but the
	 * writer escapes anyway so this stays correct if that rule loosens. */
	if (buf_append_lit(&payload, "{\"sub\":") ||
	    json_write_cstr(&payload, c.sub) ||
	    buf_append_lit(&payload, ",\"kind\":") ||
	    json_write_cstr(&payload, pki_kind_name(kind)) ||
	    (c.team[0] && (buf_append_lit(&payload, ",\"team\":") ||
			   json_write_cstr(&payload, c.team))) ||
	    (c.gw[0] && (buf_append_lit(&payload, ",\"gw\":") ||
			 json_write_cstr(&payload, c.gw))) ||
	    buf_append_lit(&payload, ",\"ca_fp\":") ||
	    json_write_cstr(&payload, c.ca_fp) ||
	    buf_append_lit(&payload, ",\"jti\":") ||
	    json_write_cstr(&payload, c.jti) ||
	    buf_printf(&payload, ",\"iat\":%lld,\"exp\":%lld}", (long long)c.iat,
		       (long long)c.exp))
		goto toobig;
	static const char header[] = "{\"alg\":\"ES256\",\"typ\":\"JWT\"}";
	if (b64url_encode(&signing, (const unsigned char *)header,
			  sizeof(header) - 1) ||
	    buf_append_lit(&signing, ".") ||
	    b64url_encode(&signing, (const unsigned char *)payload.p, payload.n))
		goto toobig;
	md = EVP_MD_CTX_new();
	if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, ca->key) != 1 ||
	    EVP_DigestSign(md, der, &dlen, (const unsigned char *)signing.p,
			   signing.n) != 1 ||
	    sig_der_to_raw(der, dlen, raw)) {
		pki__err(err, "signing token failed");
		ERR_clear_error();
		goto out;
	}
	if (buf_append_str(out, buf_str(&signing)) || buf_append_lit(out, ".") ||
	    b64url_encode(out, raw, sizeof(raw)))
		goto toobig;
	if (claims)
		*claims = c;
	rc = UMB_OK;
	goto out;
toobig:
	pki__err(err, "token too large");
out:
	EVP_MD_CTX_free(md);
	buf_clear(&payload);
	buf_clear(&signing);
	return rc;
}

/* ---- parsing ---- */

/* Decode a JSON string value into out[cap] (NUL-terminated); too long or
 * containing a NUL is an error. */
static int claim_str(struct json_val v, char *out, size_t cap)
{
	struct buf b;
	int rc = UMB_ERR;
	buf_init(&b, cap);
	if (v.type == JSON_STRING && json_str_decode(v, &b) == 0 && b.n < cap &&
	    memchr(b.p ? b.p : "", 0, b.n) == NULL) {
		memcpy(out, b.p ? b.p : "", b.n);
		out[b.n] = 0;
		rc = UMB_OK;
	}
	buf_clear(&b);
	return rc;
}

/* Members of a decoded object, refusing duplicates (a JSON parser that
 * keeps the last one could otherwise read a different claim than us). */
static int obj_members(struct buf *json, struct json_member *m, size_t max,
		       size_t *n)
{
	struct json_val root;
	if (json_parse_top(json->p, json->n, m, max, n, &root, NULL) ||
	    root.type != JSON_OBJECT)
		return UMB_ERR;
	for (size_t i = 0; i < *n; i++)
		for (size_t j = i + 1; j < *n; j++)
			if (str_eq(m[i].key_raw, m[j].key_raw))
				return UMB_ERR;
	return UMB_OK;
}

static int header_check(struct buf *h, char *err)
{
	struct json_member m[4];
	size_t n;
	bool alg = false;
	if (obj_members(h, m, UMB_ARRAY_LEN(m), &n)) {
		pki__err(err, "token header is not a JSON object");
		return UMB_ERR;
	}
	for (size_t i = 0; i < n; i++) {
		if (json_key_eq(m[i].key_raw, "alg")) {
			if (!json_str_eq(m[i].val, "ES256")) {
				pki__err(err, "token algorithm must be ES256");
				return UMB_ERR;
			}
			alg = true;
		} else if (json_key_eq(m[i].key_raw, "typ")) {
			if (!json_str_eq(m[i].val, "JWT")) {
				pki__err(err, "token typ must be JWT");
				return UMB_ERR;
			}
		} else {
			/* crit, jku, x5u...: honouring none of them is only
			 * safe if we refuse them all. */
			pki__err(err, "token header has an unsupported member");
			return UMB_ERR;
		}
	}
	if (!alg) {
		pki__err(err, "token header has no alg");
		return UMB_ERR;
	}
	return UMB_OK;
}

static int claims_parse(struct buf *p, struct pki_token_claims *c, char *err)
{
	struct json_member m[TOKEN_MAX_CLAIMS];
	size_t n;
	unsigned seen = 0;
	char kind[16];

	memset(c, 0, sizeof(*c));
	if (obj_members(p, m, UMB_ARRAY_LEN(m), &n)) {
		pki__err(err, "token claims are not a JSON object");
		return UMB_ERR;
	}
	for (size_t i = 0; i < n; i++) {
		struct str k = m[i].key_raw;
		struct json_val v = m[i].val;
		int bad;
		if (json_key_eq(k, "sub")) {
			bad = claim_str(v, c->sub, sizeof(c->sub)) ||
			      !pki_name_valid(str_cstr(c->sub));
			seen |= 1;
		} else if (json_key_eq(k, "kind")) {
			bad = claim_str(v, kind, sizeof(kind)) ||
			      pki_kind_parse(kind, &c->kind);
			seen |= 2;
		} else if (json_key_eq(k, "team")) {
			bad = claim_str(v, c->team, sizeof(c->team)) ||
			      !pki_name_valid(str_cstr(c->team));
		} else if (json_key_eq(k, "gw")) {
			bad = claim_str(v, c->gw, sizeof(c->gw)) ||
			      !url_valid(c->gw);
		} else if (json_key_eq(k, "ca_fp")) {
			bad = claim_str(v, c->ca_fp, sizeof(c->ca_fp)) ||
			      !hex_valid(str_cstr(c->ca_fp), 64);
			seen |= 4;
		} else if (json_key_eq(k, "jti")) {
			bad = claim_str(v, c->jti, sizeof(c->jti)) ||
			      !hex_valid(str_cstr(c->jti), 32);
			seen |= 8;
		} else if (json_key_eq(k, "iat")) {
			bad = json_get_i64(v, &c->iat) || c->iat < 0;
			seen |= 16;
		} else if (json_key_eq(k, "exp")) {
			bad = json_get_i64(v, &c->exp) || c->exp < 0;
			seen |= 32;
		} else {
			pki__err(err, "token has an unknown claim");
			return UMB_ERR;
		}
		if (bad) {
			pki__err(err, "token claim '%.*s' is malformed",
				 (int)UMB_MIN(k.n, 16), k.p);
			return UMB_ERR;
		}
	}
	if (seen != 63) {
		pki__err(err, "token lacks a required claim (sub, kind, ca_fp, jti, iat, exp)");
		return UMB_ERR;
	}
	if (c->exp <= c->iat || c->exp - c->iat > TOKEN_MAX_LIFETIME_S) {
		pki__err(err, "token validity window is invalid");
		return UMB_ERR;
	}
	return UMB_OK;
}

/* Split, decode and type-check; with ca != NULL also verify the signature
 * and the CA fingerprint, and with now >= 0 the time window. */
static int token_check(const struct pki_ca *ca, struct str tok, time_t now,
		       bool check_time, struct pki_token_claims *out, char *err)
{
	int rc = UMB_ERR;
	struct buf h, p, s;
	EVP_MD_CTX *md = NULL;
	unsigned char *der = NULL;
	int dlen = 0;
	struct pki_token_claims c;

	buf_init(&h, PKI_TOKEN_MAX);
	buf_init(&p, PKI_TOKEN_MAX);
	buf_init(&s, PKI_TOKEN_MAX);
	if (err)
		err[0] = 0;
	if (out)
		memset(out, 0, sizeof(*out));
	if (!tok.p || tok.n == 0 || tok.n > PKI_TOKEN_MAX) {
		pki__err(err, "token is empty or larger than %d bytes", PKI_TOKEN_MAX);
		goto out;
	}
	const char *d1 = memchr(tok.p, '.', tok.n);
	const char *d2 = d1 ? memchr(d1 + 1, '.', tok.n - (size_t)(d1 + 1 - tok.p)) : NULL;
	if (!d1 || !d2 ||
	    memchr(d2 + 1, '.', tok.n - (size_t)(d2 + 1 - tok.p)) ||
	    d1 == tok.p || d2 == d1 + 1 || d2 + 1 == tok.p + tok.n) {
		pki__err(err, "token must have exactly three non-empty segments");
		goto out;
	}
	struct str hs = str_make(tok.p, (size_t)(d1 - tok.p));
	struct str ps = str_make(d1 + 1, (size_t)(d2 - d1 - 1));
	struct str ss = str_make(d2 + 1, (size_t)(tok.p + tok.n - d2 - 1));
	if (b64url_decode(hs, &h) || b64url_decode(ps, &p) ||
	    b64url_decode(ss, &s)) {
		pki__err(err, "token is not base64url");
		goto out;
	}
	if (header_check(&h, err))
		goto out;
	if (s.n != 64) {
		pki__err(err, "token signature must be 64 bytes (ES256)");
		goto out;
	}
	if (ca) {
		/* Signature first: nothing in an unsigned payload is trusted. */
		md = EVP_MD_CTX_new();
		if (sig_raw_to_der((const unsigned char *)s.p, &der, &dlen) ||
		    !md ||
		    EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, ca->key) != 1 ||
		    EVP_DigestVerify(md, der, (size_t)dlen,
				     (const unsigned char *)tok.p,
				     (size_t)(d2 - tok.p)) != 1) {
			pki__err(err, "token signature is not valid for this CA");
			goto out;
		}
	}
	if (claims_parse(&p, &c, err))
		goto out;
	if (ca && strcmp(c.ca_fp, ca->fp) != 0) {
		pki__err(err, "token was made for another CA");
		goto out;
	}
	if (check_time) {
		if (c.iat > (int64_t)now + PKI_SKEW_S) {
			pki__err(err, "token is not valid yet (issued in the future)");
			goto out;
		}
		if ((int64_t)now >= c.exp) {
			pki__err(err, "token has expired");
			goto out;
		}
	}
	if (out)
		*out = c;
	rc = UMB_OK;
out:
	OPENSSL_free(der);
	EVP_MD_CTX_free(md);
	buf_clear(&h);
	buf_clear(&p);
	buf_clear(&s);
	ERR_clear_error();
	return rc;
}

int pki_token_verify(const struct pki_ca *ca, struct str token, time_t now,
		     struct pki_token_claims *out, char *err)
{
	if (!ca || !ca->key) {
		pki__err(err, "no CA to verify the token with");
		return UMB_ERR;
	}
	return token_check(ca, token, now, true, out, err);
}

int pki_token_decode_unverified(struct str token,
				struct pki_token_claims *out, char *err)
{
	return token_check(NULL, token, 0, false, out, err);
}
