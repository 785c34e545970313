/* pki.h — umbra's built-in certificate authority: the CA itself, identity
 * certificates (SAN URIs umbra://identity/NAME and umbra://kind/KIND),
 * certificate -> identity extraction and chain verification, one-time
 * enrollment tokens (ES256 JWT signed by the CA key) and CSR signing for
 * POST /enroll. Everything here is a pure function over OpenSSL objects
 * and files; the store (registration, used jtis, revocation) is wired by
 * the caller with the data these functions return.
 *
 * Errors: 0 is OK, negative is an error; functions taking `char *err`
 * write a NUL-terminated message of at most PKI_ERR_LEN bytes there (err
 * may be NULL). */
#ifndef UMB_PKI_H
#define UMB_PKI_H

#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "core/core.h"

/** Size of every `char *err` buffer (messages are cut to fit). */
#define PKI_ERR_LEN 256
/** Longest identity or team name (bytes, charset [A-Za-z0-9._-]). */
#define PKI_NAME_MAX 64
/** Longest gateway URL hint carried by a token. */
#define PKI_URL_MAX 512
/** Tokens larger than this are refused before any decoding. */
#define PKI_TOKEN_MAX 8192
/** CSRs larger than this are refused before any parsing. */
#define PKI_CSR_MAX 16384
/** Default lifetimes, seconds. */
#define PKI_CA_LIFETIME_S (10LL * 365 * 86400 + 2 * 86400)
#define PKI_CERT_LIFETIME_S (90LL * 86400)
#define PKI_TOKEN_LIFETIME_S (24LL * 3600)
/** Clock skew tolerated on notBefore and token iat. */
#define PKI_SKEW_S 300

/** What an identity is for; it decides the certificate's EKU. */
enum pki_kind {
	PKI_KIND_CLIENT,
	PKI_KIND_CONNECTOR,
	PKI_KIND_GATEWAY,
	PKI_KIND_ADMIN,
};

/** A loaded CA: certificate, private key and the hex SHA-256 of its DER. */
struct pki_ca {
	X509 *cert;
	EVP_PKEY *key;
	char fp[65];
};

/** What a certificate says about its holder (also what the store records). */
struct pki_identity {
	char name[PKI_NAME_MAX + 1];
	enum pki_kind kind;
	char team[PKI_NAME_MAX + 1]; /* "" when the certificate has no OU */
	int64_t not_after;           /* unix seconds */
	char fp[65];                 /* hex SHA-256 of the certificate DER */
};

/** Parameters of one issued certificate; team, dns and ip may be NULL. */
struct pki_issue_opts {
	const char *name;
	enum pki_kind kind;
	const char *team;
	int64_t lifetime_s;
	const char *const *dns;
	size_t n_dns;
	const char *const *ip;
	size_t n_ip;
};

/** The claims of an enrollment token (all fixed-size, no ownership). */
struct pki_token_claims {
	char sub[PKI_NAME_MAX + 1];
	enum pki_kind kind;
	char team[PKI_NAME_MAX + 1]; /* "" when absent */
	char gw[PKI_URL_MAX + 1];    /* "" when absent */
	char ca_fp[65];
	char jti[33]; /* 128 random bits, hex: the store marks it used */
	int64_t iat, exp;
};

/** Parse "client|connector|gateway|admin". */
int pki_kind_parse(const char *s, enum pki_kind *out);
/** The kind's name as used in SAN URIs and tokens. */
const char *pki_kind_name(enum pki_kind k);
/** True for 1..64 bytes of [A-Za-z0-9._-] (not "." or ".."): safe in file
 * names, URIs and JSON without escaping. */
bool pki_name_valid(struct str name);
/** Parse "90d", "4h", "30m", "45s" into seconds (> 0). */
int pki_lifetime_parse(const char *s, int64_t *out_s);

/** Create dir/ca.crt and dir/ca.key (0600); refuses to overwrite either. */
int pki_ca_create(const char *dir, time_t now, char *err);
/** Load dir/ca.crt and dir/ca.key; the key must match and be EC P-256. */
int pki_ca_load(const char *dir, struct pki_ca *ca, char *err);
/** pki_ca_load with explicit paths (e.g. tls.client_ca and its key). */
int pki_ca_load_files(const char *crt_path, const char *key_path,
		      struct pki_ca *ca, char *err);
/** Free what pki_ca_load filled (safe on a zeroed struct). */
void pki_ca_clear(struct pki_ca *ca);

/** Issue a certificate for `pub` as described by o; *out is the caller's. */
int pki_cert_issue(const struct pki_ca *ca, EVP_PKEY *pub,
		   const struct pki_issue_opts *o, time_t now, X509 **out,
		   char *err);
/** Make a P-256 key, issue, write dir/NAME.key (0600) and dir/NAME.crt
 * (gateway certificates are followed by the CA so TLS sends the chain);
 * *out (may be NULL) is what to register in the store. */
int pki_issue_files(const struct pki_ca *ca, const char *dir,
		    const struct pki_issue_opts *o, time_t now,
		    struct pki_identity *out, char *err);

/** Read a certificate's identity: SAN URIs, OU, notAfter, fingerprint.
 * Does not verify anything; use pki_verify_cert for untrusted input. */
int pki_cert_identity(X509 *cert, struct pki_identity *out);
/** Hex SHA-256 of the certificate's DER into out[65]. */
int pki_cert_fp(X509 *cert, char out[65]);
/** A trust store holding only `ca` (the caller frees it). */
X509_STORE *pki_store_new(X509 *ca);
/** Verify leaf (+ untrusted intermediates, may be NULL) against store at
 * time `now` for purpose (X509_PURPOSE_SSL_CLIENT/_SERVER, 0 = any), then
 * extract its identity into *out (may be NULL). */
int pki_verify_cert(X509_STORE *store, X509 *leaf,
		    STACK_OF(X509) *untrusted, time_t now, int purpose,
		    struct pki_identity *out, char *err);
/** Every dir/NAME.crt except ca.crt, sorted by name; *out is malloc'd
 * (free() it), unreadable files are skipped with a warning on stderr. */
int pki_list(const char *dir, struct pki_identity **out, size_t *n,
	     char *err);

/** Sign a token for (name, kind, team, gw hint) valid lifetime_s from now;
 * appends it to out; *claims (may be NULL) gets what was signed. */
int pki_token_make(const struct pki_ca *ca, const char *name,
		   enum pki_kind kind, const char *team, const char *gw,
		   int64_t lifetime_s, time_t now, struct buf *out,
		   struct pki_token_claims *claims, char *err);
/** Strictly verify a token: shape, ES256 only, signature by ca, ca_fp equal
 * to ca's, claims typed, iat <= now+skew < exp. Does NOT check the jti was
 * unused: that is the store's job. */
int pki_token_verify(const struct pki_ca *ca, struct str token, time_t now,
		     struct pki_token_claims *out, char *err);
/** Decode the claims WITHOUT checking the signature (the enrolling device
 * has no CA yet): for reading sub/ca_fp/gw only, never for authorisation. */
int pki_token_decode_unverified(struct str token,
				struct pki_token_claims *out, char *err);

/** POST /enroll core: check a PEM CSR (size cap, self-signature, P-256 or
 * RSA >= 2048, CN and SAN URIs naming exactly claims->sub) and issue a
 * certificate for the token's kind/team; appends PEM to out_cert_pem and
 * fills *out_id (may be NULL) for store registration. The token must have
 * been verified (pki_token_verify) and its jti consumed by the caller. */
int pki_enroll_sign(const struct pki_ca *ca,
		    const struct pki_token_claims *claims, struct str csr_pem,
		    time_t now, struct buf *out_cert_pem,
		    struct pki_identity *out_id, char *err);

/** Hooks the CLI calls when given -c CFG (set by main.c; NULL = refuse). */
struct pki_cmd_hooks {
	/** Register an issued identity in the store named by cfg
	 * (break_glass: `--break-glass`, flagged in every request log). */
	int (*register_identity)(const char *cfg, const struct pki_identity *id,
				 bool break_glass, char *err);
	/** Resolve -c CFG when --dir is absent: the CA directory (holding
	 * ca.crt/ca.key) and, for tokens, the gateway URL hint ("" = none). */
	int (*cfg_resolve)(const char *cfg, char *ca_dir, size_t dir_cap,
			   char *gw_hint, size_t gw_cap, char *err);
};
/** Install the CLI hooks (pointer kept; static storage expected). */
void pki_cmd_set_hooks(const struct pki_cmd_hooks *h);
/** `umbra pki init|issue|list|token ...`: 0 OK, 1 error, 2 usage. */
int pki_cmd_main(int argc, char **argv);

/** Client side of enrollment: build a PEM CSR for name signed by key. */
int enroll_csr_make(EVP_PKEY *key, const char *name, struct buf *out_pem,
		    char *err);
/** Check a POST /enroll response body against the token and our key: the
 * CA must hash to claims->ca_fp, the certificate chain to it, name the
 * token's identity and carry our public key. Appends both PEMs to outs. */
int enroll_response_check(struct str body,
			  const struct pki_token_claims *claims, EVP_PKEY *key,
			  struct buf *cert_pem, struct buf *ca_pem, char *err);
/** The whole client flow (key, CSR, pinned HTTPS POST to url/enroll, checks,
 * files out_dir/NAME.{key,crt} and out_dir/ca.crt); also used by tests. */
int enroll_run(const char *token, const char *url, const char *out_dir,
	       char *err);
/** `umbra enroll TOKEN --gateway URL --out D`: 0 OK, 1 error, 2 usage. */
int enroll_cmd_main(int argc, char **argv);

#endif
