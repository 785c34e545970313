/* auth.h — who is calling, decided per request on a worker thread.
 *
 * Three sources, combined by `auth.mode` (docs/identity.md "The gateway"):
 * the client certificate the TLS handshake verified (kept per connection
 * in struct auth_conn), a virtual key in `Authorization: Bearer` or
 * `x-api-key`, and the store, which says whether an identity or key is
 * revoked or expired and which team an identity belongs to.
 *
 * Revocation reaches running gateways through the store's revision: the
 * main thread polls it (auth_poll, every AUTH_POLL_MS) and publishes it;
 * each worker drops its key cache when the published revision moves, and
 * the server sweeps open connections with auth_conn_revoked(). */
#ifndef UMB_AUTH_H
#define UMB_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "http/http_parse.h"
#include "identity/pki.h"
#include "store/store.h"

#define AUTH_POLL_MS 100

/** Per client connection: what its certificate proved, and the
 * credentials its last request used (for the revocation sweep). */
struct auth_conn {
	bool has_cert;           /* a verified certificate naming an identity */
	struct pki_identity cert;
	bool checked;            /* registered/reg below are valid */
	uint64_t cert_gen;       /* worker cache generation they were read at */
	bool registered;         /* the store knows the certificate's name */
	struct store_identity reg;
	char ident[STORE_NAME_MAX + 1];     /* last request's identity */
	char key_id[STORE_KEY_ID_LEN + 1];  /* last request's key, "" = none */
};

/** The caller, once authenticated. */
struct auth_who {
	bool authenticated; /* false: anonymous (auth.mode none only) */
	char name[STORE_NAME_MAX + 1];
	char team[STORE_NAME_MAX + 1]; /* "" = none */
	enum store_kind kind;
	bool break_glass;
	char key_id[STORE_KEY_ID_LEN + 1]; /* "" = no key used */
	const char *method;                /* "none" | "key" | "cert" | "key+cert" */
	const struct cfg_team *team_cfg;   /* the configured team, or NULL */
};

/** Why a request was refused: HTTP status, error code and message. */
struct auth_refusal {
	int status; /* 401, 403 or 500 */
	const char *code;
	char msg[256];
};

struct auth_worker;

/** Per-worker state: a store handle (opened on first need) and the key
 * cache. Used by one thread only. */
struct auth_worker *auth_worker_new(void);
void auth_worker_free(struct auth_worker *aw);

/** True when the config makes the gateway consult the store: an auth.mode
 * other than none, or client certificates (tls.client_ca). */
bool auth_store_needed(const struct config *cfg);

/** Fill ac from a verified peer certificate (NULL: none). */
void auth_conn_set_cert(struct auth_conn *ac, X509 *peer);

/** Authenticate one request. admin: the path needs an admin identity
 * (then credentials count under auth.mode none too). Returns 0 with who
 * filled, or -1 with why filled. Records the credentials in ac (may be
 * NULL for plain connections). */
int auth_check(struct auth_worker *aw, const struct config *cfg,
	       struct auth_conn *ac, const struct http_request_head *head,
	       bool admin, int64_t now, struct auth_who *who,
	       struct auth_refusal *why);

/** Is the connection's identity or key revoked or expired now? Reads the
 * store; called when the revision moved. */
bool auth_conn_revoked(struct auth_worker *aw, const struct config *cfg,
		       const struct auth_conn *ac, int64_t now);

/** The store record of an identity whose certificate was just issued
 * (`pki issue -c`, POST /enroll). */
void auth_record_from_cert(const struct pki_identity *id, bool break_glass,
			   int64_t now, struct store_identity *out);

/** The worker's store handle, opened on first use (NULL with a logged
 * error if it cannot be opened). */
struct store *auth_worker_store(struct auth_worker *aw, const struct config *cfg);

/** The store revision last published by the poller (0 before the first
 * poll). */
uint64_t auth_revision(void);

/** Main-thread poller of the store revision. */
struct auth_poller;
struct auth_poller *auth_poller_new(void);
void auth_poller_free(struct auth_poller *p);
/** Read the revision; true when it moved since the last call (the
 * workers should sweep their connections). */
bool auth_poll(struct auth_poller *p, const struct config *cfg);

#endif
