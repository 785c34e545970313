/* gcp_auth.h — OAuth 2.0 access tokens for a Google service account
 * (RFC 7523 JWT bearer grant, as Google's token endpoint implements it):
 * the service-account key file, the RS256-signed JWT assertion, the token
 * exchange, and a process-wide cache per key file that a background
 * thread keeps fresh.
 *
 * Why a thread: build() runs on a worker's event loop and must not block.
 * The first token of a key file is fetched on first use (build waits a
 * bounded time for it); afterwards the refresher replaces the token
 * GCP_REFRESH_MARGIN_S before it expires, so requests always find a valid
 * one. A failed fetch is retried with exponential backoff (1 s .. 60 s),
 * logged once per run of failures. Tokens and keys are never logged. */
#ifndef UMB_GCP_AUTH_H
#define UMB_GCP_AUTH_H

#include "core/core.h"

#define GCP_SCOPE "https://www.googleapis.com/auth/cloud-platform"
#define GCP_DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"
#define GCP_JWT_LIFETIME_S 3600   /* Google's maximum assertion lifetime */
#define GCP_REFRESH_MARGIN_S 300  /* refresh when less than this is left */
#define GCP_TOKEN_MAX 8192        /* longest access token accepted */

struct evp_pkey_st;

/** A service-account key file (the JSON "Create key" downloads). */
struct gcp_sa {
	char *client_email;
	char *private_key_id;  /* the JWT "kid"; NULL when the file has none */
	char *token_uri;       /* default GCP_DEFAULT_TOKEN_URI */
	struct evp_pkey_st *key; /* RSA private key */
};

/** Parse a key file's JSON. UMB_ERR with a reason (never key material) in
 * why. On success the caller owns *out (gcp_sa_clear). */
int gcp_sa_parse(struct str json, struct gcp_sa *out, char *why, size_t why_n);
/** gcp_sa_parse of a file. */
int gcp_sa_load(const char *path, struct gcp_sa *out, char *why, size_t why_n);
void gcp_sa_clear(struct gcp_sa *sa);

/** The signed assertion: base64url(header) "." base64url(claims) "."
 * base64url(RS256 signature), claims {iss, scope, aud: token_uri, iat,
 * exp: iat + GCP_JWT_LIFETIME_S}. Appends to out. */
int gcp_jwt_sign(const struct gcp_sa *sa, int64_t iat, struct buf *out);
/** The token request body: grant_type=urn%3Aietf%3Aparams%3Aoauth%3A
 * grant-type%3Ajwt-bearer&assertion=JWT (form-urlencoded). */
int gcp_token_form(struct str jwt, struct buf *out);
/** A token endpoint answer: status 200 with {"access_token","expires_in",
 * "token_type":"Bearer"} gives the token (appended to token) and its
 * lifetime; anything else is UMB_ERR with the endpoint's error and
 * error_description in why. */
int gcp_token_parse(long status, struct str body, struct buf *token, int64_t *expires_in,
		    char *why, size_t why_n);
/** One whole exchange with blocking libcurl: load the key file, sign an
 * assertion for now_s, POST it to token_uri (ca_file for https, NULL: the
 * system store), parse the answer. */
int gcp_token_fetch(const char *credentials_file, const char *ca_file, int connect_timeout_ms,
		    int64_t now_s, struct buf *token, int64_t *expires_in, char *why, size_t why_n);

/** A valid access token for the key file, copied into the arena. The
 * first call for a file starts its refresher and waits up to wait_ms for
 * the first token; later calls never wait unless a fetch is under way and
 * no valid token exists. UMB_ERR with the reason in why when there is no
 * valid token. Thread-safe. */
int gcp_auth_token(struct arena *a, const char *credentials_file, const char *ca_file,
		   int wait_ms, const char **token, char *why, size_t why_n);
/** Stop every refresher and forget every token (tests; process exit). */
void gcp_auth_shutdown(void);

/** Seams for tests: the clocks and the exchange itself. */
struct gcp_auth_hooks {
	uint64_t (*mono_ms)(void);
	int64_t (*wall_s)(void);
	int (*fetch)(void *ctx, const char *credentials_file, const char *ca_file,
		     int connect_timeout_ms, int64_t now_s, struct buf *token, int64_t *expires_in,
		     char *why, size_t why_n);
	void *ctx;
};
/** Install hooks (NULL members: the defaults); only while no token is
 * cached (before first use or after gcp_auth_shutdown). */
void gcp_auth_set_hooks(const struct gcp_auth_hooks *h);

#endif
