/* store.h — the persistent identity store behind one interface.
 *
 * Callers never see the backend: `store_open("sqlite://umbra.db", dir)`
 * picks it from the URL scheme, and every operation goes through the
 * backend's table of functions (struct store_ops, shaped like curl's
 * `struct Curl_ssl`), so a PostgreSQL backend can follow without touching
 * callers.
 *
 * What it keeps: identities (who may call), virtual keys bound to them
 * (only SHA-256 of the secret), used enrollment token ids, and one
 * monotonically increasing `revision` that every creation and revocation
 * bumps, so a running gateway polls one cheap number and reloads only when
 * it moved.
 *
 * Times are unix seconds passed in by the caller (tests control them);
 * 0 in `expires`/`revoked_at` means never/not revoked.
 * A handle is used by one thread at a time and never crosses fork();
 * several handles (threads or processes, the gateway and the CLI) may share
 * one database. */
#ifndef UMB_STORE_H
#define UMB_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

/* Store-specific results, beyond core's UMB_OK / UMB_ERR / UMB_ENOMEM. */
enum {
	STORE_ENOTFOUND = -20, /* no such identity / key */
	STORE_EEXISTS = -21,   /* key id taken, enrollment token already used */
	STORE_EREVOKED = -22,  /* the identity is revoked; revocation is final */
	STORE_EEXPIRED = -23,  /* an enrollment token past its expiry */
	STORE_EINVAL = -24,    /* a field fails validation (name charset, ...) */
};

#define STORE_NAME_MAX 64   /* identity and team names */
#define STORE_LABEL_MAX 128 /* key labels */
#define STORE_FP_MAX 64     /* hex SHA-256 certificate fingerprint */
#define STORE_KEY_ID_LEN 12 /* base32 key id (see identity/keys.h) */
#define STORE_HASH_LEN 32   /* SHA-256 of a key secret */
#define STORE_JTI_MAX 128   /* enrollment token id */

/** What an identity is for; its certificate carries the same kind. */
enum store_kind {
	STORE_KIND_CLIENT,
	STORE_KIND_CONNECTOR,
	STORE_KIND_GATEWAY,
	STORE_KIND_ADMIN,
};

/** One registered identity; fixed-size fields so records copy freely. */
struct store_identity {
	char name[STORE_NAME_MAX + 1];
	enum store_kind kind;
	char team[STORE_NAME_MAX + 1]; /* "" = none */
	int64_t created;
	int64_t expires;    /* 0 = never */
	int64_t revoked_at; /* 0 = not revoked */
	bool break_glass;
	char cert_fp[STORE_FP_MAX + 1]; /* lowercase hex, "" = none */
};

/** One virtual key: the id is public, only the secret's hash is kept. */
struct store_key {
	char id[STORE_KEY_ID_LEN + 1];
	char identity[STORE_NAME_MAX + 1];
	uint8_t secret_hash[STORE_HASH_LEN];
	int64_t created;
	int64_t expires;    /* 0 = never */
	int64_t revoked_at; /* 0 = not revoked */
	char label[STORE_LABEL_MAX + 1]; /* "" = none */
};

/** One usage rollup row: what one (day, identity, team, model, provider)
 * consumed. Costs are integers of nano-USD so sums never drift. */
struct store_usage {
	char day[11];                        /* YYYY-MM-DD, UTC */
	char identity[STORE_NAME_MAX + 1];   /* "" = anonymous */
	char team[STORE_NAME_MAX + 1];       /* "" = none */
	char model[257];                     /* configured model name */
	char provider[STORE_NAME_MAX + 1];
	uint64_t requests, prompt_tokens, completion_tokens;
	int64_t cost_nusd;
};

/** How store_usage_query groups and filters (NULL / "" = any). */
enum store_usage_by { STORE_BY_MODEL, STORE_BY_DAY, STORE_BY_IDENTITY, STORE_BY_TEAM };
struct store_usage_query {
	const char *team, *identity;
	const char *since;                   /* YYYY-MM-DD inclusive */
	enum store_usage_by by;
};

/** Error detail for store_open (backend messages, resolved path). */
struct store_err {
	char msg[512];
};

/** List callbacks return 0 to go on; a nonzero value stops the listing and
 * is what the list function returns. Do not list again from inside one. */
typedef int (*store_identity_cb)(void *ctx, const struct store_identity *id);
typedef int (*store_key_cb)(void *ctx, const struct store_key *key);
/** A grouped row: only the grouped column and the sums are filled (the
 * others are "" — for STORE_BY_MODEL also team and identity when filtered). */
typedef int (*store_usage_cb)(void *ctx, const struct store_usage *row);

struct store;

/** Open the store named by url ("sqlite://rel.db" relative to base_dir,
 * "sqlite:///abs.db"), creating and migrating the schema as needed. */
int store_open(const char *url, const char *base_dir, struct store **out,
	       struct store_err *err);
/** Close a handle (NULL is fine). */
void store_close(struct store *st);
/** The last error message of this handle ("" if none). */
const char *store_errmsg(const struct store *st);

/** Insert or update an identity (created is kept from the first put);
 * STORE_EREVOKED if the name is revoked. Bumps the revision. */
int store_identity_put(struct store *st, const struct store_identity *id);
/** Fetch one identity by name; STORE_ENOTFOUND if absent. */
int store_identity_get(struct store *st, const char *name,
		       struct store_identity *out);
/** Every identity in name order. */
int store_identity_list(struct store *st, store_identity_cb cb, void *ctx);
/** Revoke an identity at `now` (and, through it, its keys); idempotent
 * (an earlier revocation time is kept); STORE_ENOTFOUND if absent. */
int store_identity_revoke(struct store *st, const char *name, int64_t now);

/** Insert a new key; STORE_EEXISTS if the id is taken, STORE_ENOTFOUND if
 * the identity is not registered. Bumps the revision. */
int store_key_create(struct store *st, const struct store_key *key);
/** Fetch one key by id (one indexed read: the auth hot path). */
int store_key_get(struct store *st, const char *id, struct store_key *out);
/** Keys of one identity (or all when identity is NULL), oldest first. */
int store_key_list(struct store *st, const char *identity, store_key_cb cb,
		   void *ctx);
/** Revoke a key at `now`; idempotent; STORE_ENOTFOUND if absent. */
int store_key_revoke(struct store *st, const char *id, int64_t now);

/** Atomically record an enrollment token id as used: STORE_EEXISTS if it
 * already was (by any process), STORE_EEXPIRED if expires <= now. Also
 * forgets used tokens that have expired, which can no longer be replayed. */
int store_token_mark_used(struct store *st, const char *jti, int64_t expires,
			  int64_t now);

/** The current revision (one primary-key read): when it differs from the
 * last value seen, something was created or revoked. */
int store_revision(struct store *st, uint64_t *out);

/** Add rows to the rollups (summed into existing rows), in one
 * transaction. */
int store_usage_add(struct store *st, const struct store_usage *rows, size_t n);
/** Sums grouped by q->by, filtered, in group order. */
int store_usage_query(struct store *st, const struct store_usage_query *q,
		      store_usage_cb cb, void *ctx);

/** Quotas shared by every gateway on the store: a counter per (key,
 * window) that may not pass a cap. Budgets (nano-USD per period) and rate
 * limits (requests or tokens per minute) take from it in chunks (leases),
 * so the store is asked once per chunk, not once per request.
 * Take up to `want` (never past cap): *granted is what was taken (0 when
 * the cap is reached), *used the counter after it. */
int store_quota_take(struct store *st, const char *key, int64_t window, int64_t cap,
		     int64_t want, int64_t *granted, int64_t *used);
/** Give back what was taken and not used (the counter never goes below 0). */
int store_quota_give(struct store *st, const char *key, int64_t window, int64_t amount);
/** The counter's value (0 when there is no row). */
int store_quota_get(struct store *st, const char *key, int64_t window, int64_t *used);

/** "client" | "connector" | "gateway" | "admin" → kind; UMB_ERR if unknown. */
int store_kind_parse(const char *s, enum store_kind *out);
/** The kind's name. */
const char *store_kind_name(enum store_kind kind);
/** True if s is a valid identity or team name: [A-Za-z0-9._@-]{1,64}. */
bool store_name_valid(const char *s);

/** Split a store URL into its scheme and a resolved target (a path for
 * sqlite: relative paths are joined to base_dir). UMB_ERR on a bad URL. */
int store_url_parse(const char *url, const char *base_dir, char *scheme,
		    size_t scheme_size, char *target, size_t target_size);

/* ---- backend interface (store/sqlite.c, later store/postgres.c) ---- */

/** One backend's functions; each `st` has its `impl` set by open. */
struct store_ops {
	const char *scheme; /* "sqlite" */
	int (*open)(struct store *st, const char *target);
	void (*close)(struct store *st);
	int (*identity_put)(struct store *st, const struct store_identity *id);
	int (*identity_get)(struct store *st, const char *name,
			    struct store_identity *out);
	int (*identity_list)(struct store *st, store_identity_cb cb, void *ctx);
	int (*identity_revoke)(struct store *st, const char *name, int64_t now);
	int (*key_create)(struct store *st, const struct store_key *key);
	int (*key_get)(struct store *st, const char *id, struct store_key *out);
	int (*key_list)(struct store *st, const char *identity,
			store_key_cb cb, void *ctx);
	int (*key_revoke)(struct store *st, const char *id, int64_t now);
	int (*token_mark_used)(struct store *st, const char *jti,
			       int64_t expires, int64_t now);
	int (*revision)(struct store *st, uint64_t *out);
	int (*usage_add)(struct store *st, const struct store_usage *rows, size_t n);
	int (*usage_query)(struct store *st, const struct store_usage_query *q,
			   store_usage_cb cb, void *ctx);
	int (*quota_take)(struct store *st, const char *key, int64_t window, int64_t cap,
			  int64_t want, int64_t *granted, int64_t *used);
	int (*quota_give)(struct store *st, const char *key, int64_t window, int64_t amount);
	int (*quota_get)(struct store *st, const char *key, int64_t window, int64_t *used);
};

/** A handle: the backend's table, its private state and the last error. */
struct store {
	const struct store_ops *ops;
	void *impl;
	char errmsg[512];
};

/** Backends report detail through this (printf-style, into st->errmsg). */
void store__set_err(struct store *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

extern const struct store_ops store_sqlite_ops;
extern const struct store_ops store_postgres_ops;

#endif
