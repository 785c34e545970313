/* auth.c — request authentication against certificates, keys and the
 * store; the revision poller. See auth.h. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "identity/auth.h"
#include "identity/keys.h"

/* Published by the main thread's poller, read by every worker. */
static _Atomic uint64_t g_revision;

uint64_t auth_revision(void)
{
	return atomic_load_explicit(&g_revision, memory_order_acquire);
}

/* ---- one store handle per thread, reopened if the config moves it ---- */

struct store_slot {
	struct store *st;
	char url[PATH_MAX + 64]; /* "<dir>\n<store url>" it was opened for */
	uint64_t retry_after_ns; /* don't retry a failing open in a tight loop */
};

static struct store *store_slot_get(struct store_slot *s, const struct config *cfg)
{
	char want[sizeof s->url];
	snprintf(want, sizeof want, "%s\n%s", cfg->dir, cfg->store_url);
	if (s->st && !strcmp(s->url, want))
		return s->st;
	store_close(s->st);
	s->st = NULL;
	uint64_t now = clock_mono_ns();
	if (now < s->retry_after_ns)
		return NULL;
	struct store_err err;
	if (store_open(cfg->store_url, cfg->dir, &s->st, &err)) {
		log_error("identity store %s: %s", cfg->store_url, err.msg);
		s->st = NULL;
		s->retry_after_ns = now + 1000000000ull;
		return NULL;
	}
	snprintf(s->url, sizeof s->url, "%s", want);
	return s->st;
}

/* ---- per-worker key cache ---- */

/* Keys verified against the store, kept until the revision moves. The
 * hot path then costs one SHA-256 of 32 bytes and a table probe instead of
 * two SQLite reads. */
#define KEY_CACHE_SLOTS 512 /* power of two */
#define KEY_CACHE_PROBE 8

struct key_entry {
	uint64_t gen; /* valid while equal to the worker's gen */
	char id[STORE_KEY_ID_LEN + 1];
	uint8_t hash[STORE_HASH_LEN];
	int64_t expires; /* the key's */
	struct store_identity ident;
};

struct auth_worker {
	struct store_slot store;
	uint64_t rev; /* revision the cache belongs to */
	const struct config *cfg; /* config it belongs to (a reload may
	                           * name another store or other teams) */
	uint64_t gen; /* bumped to drop every cache entry at once */
	struct key_entry keys[KEY_CACHE_SLOTS];
};

struct auth_worker *auth_worker_new(void)
{
	struct auth_worker *aw = umb_calloc(1, sizeof *aw);
	aw->gen = 1;
	return aw;
}

void auth_worker_free(struct auth_worker *aw)
{
	if (!aw)
		return;
	store_close(aw->store.st);
	free(aw);
}

struct store *auth_worker_store(struct auth_worker *aw, const struct config *cfg)
{
	return store_slot_get(&aw->store, cfg);
}

static uint32_t key_slot(const char *id)
{
	uint32_t h = 2166136261u; /* FNV-1a: ids are random already */
	for (; *id; id++)
		h = (h ^ (uint8_t)*id) * 16777619u;
	return h & (KEY_CACHE_SLOTS - 1);
}

static struct key_entry *key_cache_find(struct auth_worker *aw, const char *id)
{
	uint32_t s = key_slot(id);
	for (int i = 0; i < KEY_CACHE_PROBE; i++) {
		struct key_entry *e = &aw->keys[(s + (uint32_t)i) & (KEY_CACHE_SLOTS - 1)];
		if (e->gen == aw->gen && !strcmp(e->id, id))
			return e;
	}
	return NULL;
}

static void key_cache_put(struct auth_worker *aw, const struct store_key *k,
			  const struct store_identity *id)
{
	uint32_t s = key_slot(k->id);
	struct key_entry *e = &aw->keys[s];
	for (int i = 0; i < KEY_CACHE_PROBE; i++) {
		struct key_entry *c = &aw->keys[(s + (uint32_t)i) & (KEY_CACHE_SLOTS - 1)];
		if (c->gen != aw->gen) {
			e = c;
			break;
		}
	}
	e->gen = aw->gen;
	memcpy(e->id, k->id, sizeof e->id);
	memcpy(e->hash, k->secret_hash, sizeof e->hash);
	e->expires = k->expires;
	e->ident = *id;
}

/* The published revision moved, or the config was reloaded: nothing
 * cached may be trusted. */
static void auth_worker_sync(struct auth_worker *aw, const struct config *cfg)
{
	uint64_t rev = auth_revision();
	if (rev != aw->rev || cfg != aw->cfg) {
		aw->rev = rev;
		aw->cfg = cfg;
		aw->gen++;
	}
}

bool auth_store_needed(const struct config *cfg)
{
	return cfg->auth_mode != AUTH_NONE || cfg->tls.client_ca;
}

/* ---- credentials ---- */

/* A certificate's kind as the store names it. */
static const enum store_kind store_kind_of[] = {
	[PKI_KIND_CLIENT] = STORE_KIND_CLIENT,
	[PKI_KIND_CONNECTOR] = STORE_KIND_CONNECTOR,
	[PKI_KIND_GATEWAY] = STORE_KIND_GATEWAY,
	[PKI_KIND_ADMIN] = STORE_KIND_ADMIN,
};

void auth_conn_set_cert(struct auth_conn *ac, X509 *peer)
{
	memset(ac, 0, sizeof *ac);
	if (peer && pki_cert_identity(peer, &ac->cert) == UMB_OK)
		ac->has_cert = true;
}

static void refuse(struct auth_refusal *why, int status, const char *code,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void refuse(struct auth_refusal *why, int status, const char *code,
		   const char *fmt, ...)
{
	va_list ap;
	why->status = status;
	why->code = code;
	va_start(ap, fmt);
	vsnprintf(why->msg, sizeof why->msg, fmt, ap);
	va_end(ap);
}

/* Why the store refuses an identity record at `now`, or 0. */
static const char *identity_refusal(const struct store_identity *id, int64_t now)
{
	if (id->revoked_at)
		return "identity_revoked";
	if (id->expires && now >= id->expires)
		return "identity_expired";
	return NULL;
}

/* Bring the connection's view of its certificate identity up to the
 * current revision: registered? revoked? expired? */
static int cert_refresh(struct auth_worker *aw, const struct config *cfg,
			struct auth_conn *ac, struct auth_refusal *why)
{
	if (ac->checked && ac->cert_gen == aw->gen)
		return 0;
	struct store *st = store_slot_get(&aw->store, cfg);
	if (!st) {
		refuse(why, 500, "store_unavailable", "the identity store is unavailable");
		return -1;
	}
	int rc = store_identity_get(st, ac->cert.name, &ac->reg);
	if (rc != UMB_OK && rc != STORE_ENOTFOUND) {
		log_error("identity store: %s", store_errmsg(st));
		refuse(why, 500, "store_unavailable", "the identity store is unavailable");
		return -1;
	}
	ac->registered = rc == UMB_OK;
	ac->checked = true;
	ac->cert_gen = aw->gen;
	return 0;
}

/* The certificate's identity, or a refusal; 1 when there is none. */
static int cert_identity(struct auth_worker *aw, const struct config *cfg,
			 struct auth_conn *ac, int64_t now, struct auth_refusal *why)
{
	if (!ac || !ac->has_cert)
		return 1;
	if (now >= ac->cert.not_after) {
		refuse(why, 401, "certificate_expired", "the client certificate has expired");
		return -1;
	}
	if (cert_refresh(aw, cfg, ac, why))
		return -1;
	const char *code = ac->registered ? identity_refusal(&ac->reg, now) : NULL;
	if (code) {
		refuse(why, 401, code, "identity %s is %s", ac->cert.name,
		       !strcmp(code, "identity_revoked") ? "revoked" : "expired");
		return -1;
	}
	return 0;
}

/* The key in the request, verified; 1 when the request carries none. */
static int key_identity(struct auth_worker *aw, const struct config *cfg,
			const struct http_request_head *head, int64_t now,
			struct keys_cred *cred, struct store_identity *id,
			struct auth_refusal *why)
{
	const struct str *v = http_header_get(head, "authorization");
	enum keys_header hdr = KEYS_HDR_AUTHORIZATION;
	if (!v) {
		v = http_header_get(head, "x-api-key");
		hdr = KEYS_HDR_X_API_KEY;
	}
	if (!v)
		return 1;
	if (keys_parse_header(*v, hdr, cred)) {
		refuse(why, 401, "invalid_api_key", "invalid API key");
		return -1;
	}
	int rc;
	struct key_entry *e = key_cache_find(aw, cred->id);
	if (e) {
		uint8_t h[STORE_HASH_LEN];
		keys_hash_secret(cred->secret, h);
		if (CRYPTO_memcmp(h, e->hash, STORE_HASH_LEN) != 0)
			rc = KEYS_EMISMATCH;
		else if (e->expires && now >= e->expires)
			rc = KEYS_EEXPIRED;
		else if (e->ident.expires && now >= e->ident.expires)
			rc = KEYS_EIDEXPIRED;
		else
			rc = UMB_OK;
		if (rc == UMB_OK)
			*id = e->ident;
	} else {
		struct store *st = store_slot_get(&aw->store, cfg);
		if (!st) {
			refuse(why, 500, "store_unavailable", "the identity store is unavailable");
			return -1;
		}
		struct store_key k;
		rc = keys_verify(st, cred, now, &k, id);
		if (rc == UMB_OK)
			key_cache_put(aw, &k, id);
		else if (rc == UMB_ERR)
			log_error("identity store: %s", store_errmsg(st));
	}
	switch (rc) {
	case UMB_OK:
		return 0;
	case KEYS_EREVOKED:
		refuse(why, 401, "api_key_revoked", "API key %s is revoked", cred->id);
		return -1;
	case KEYS_EEXPIRED:
		refuse(why, 401, "api_key_expired", "API key %s has expired", cred->id);
		return -1;
	case KEYS_EIDREVOKED:
		refuse(why, 401, "identity_revoked", "the identity of API key %s is revoked",
		       cred->id);
		return -1;
	case KEYS_EIDEXPIRED:
		refuse(why, 401, "identity_expired", "the identity of API key %s has expired",
		       cred->id);
		return -1;
	case UMB_ERR:
		refuse(why, 500, "store_unavailable", "the identity store is unavailable");
		return -1;
	default:
		refuse(why, 401, "invalid_api_key", "invalid API key");
		return -1;
	}
}

static void who_set(struct auth_who *who, const char *name, enum store_kind kind,
		    const char *method)
{
	who->authenticated = true;
	snprintf(who->name, sizeof who->name, "%s", name);
	who->kind = kind;
	who->method = method;
}

/* A caller's team: the config's identities entry, the store's
 * registration, the certificate's OU (DESIGN.md). */
static void who_team(struct auth_who *who, const struct config *cfg,
		     const struct store_identity *reg, const struct pki_identity *cert)
{
	const struct cfg_identity *ci = config_find_identity(cfg, str_cstr(who->name));
	const char *team = ci ? ci->team
		: reg && reg->team[0] ? reg->team
		: cert ? cert->team : "";
	snprintf(who->team, sizeof who->team, "%s", team);
	who->team_cfg = team[0] ? config_find_team(cfg, str_cstr(team)) : NULL;
	who->break_glass = reg && reg->break_glass;
}

int auth_check(struct auth_worker *aw, const struct config *cfg,
	       struct auth_conn *ac, const struct http_request_head *head,
	       bool admin, int64_t now, struct auth_who *who,
	       struct auth_refusal *why)
{
	memset(who, 0, sizeof *who);
	who->method = "none";
	enum auth_mode mode = cfg->auth_mode;
	bool want_key = mode == AUTH_KEYS || mode == AUTH_KEYS_CERTS || admin;
	bool want_cert = mode == AUTH_CERTS || mode == AUTH_KEYS_CERTS;

	if (auth_store_needed(cfg))
		auth_worker_sync(aw, cfg);
	int crc = cert_identity(aw, cfg, ac, now, why);
	if (crc < 0)
		return -1;
	struct keys_cred cred;
	struct store_identity kid;
	int krc = want_key ? key_identity(aw, cfg, head, now, &cred, &kid, why) : 1;
	if (krc < 0)
		return -1;
	const struct pki_identity *cert = crc == 0 ? &ac->cert : NULL;
	const struct store_identity *creg = cert && ac->registered ? &ac->reg : NULL;

	if (want_cert && !cert) {
		refuse(why, 401, "client_certificate_required",
		       "a client certificate issued by the umbra CA is required");
		return -1;
	}
	if (krc == 1 && (mode == AUTH_KEYS || mode == AUTH_KEYS_CERTS)) {
		refuse(why, 401, "missing_api_key",
		       "no API key: send Authorization: Bearer sk-umbra-... or x-api-key");
		return -1;
	}
	if (krc == 0 && cert && mode == AUTH_KEYS_CERTS && strcmp(kid.name, cert->name)) {
		refuse(why, 401, "key_identity_mismatch",
		       "the API key does not belong to the certificate's identity %s",
		       cert->name);
		return -1;
	}

	/* a key, where one counts, names the caller; else the certificate */
	if (krc == 0 && (want_key && (mode != AUTH_NONE || !cert ||
				      kid.kind == STORE_KIND_ADMIN))) {
		who_set(who, kid.name, kid.kind, cert && !strcmp(kid.name, cert->name)
			? "key+cert" : "key");
		memcpy(who->key_id, cred.id, sizeof who->key_id);
		who_team(who, cfg, &kid, cert && !strcmp(kid.name, cert->name) ? cert : NULL);
	} else if (cert) {
		who_set(who, cert->name, store_kind_of[cert->kind], "cert");
		who_team(who, cfg, creg, cert);
	}
	if (ac) {
		memcpy(ac->ident, who->name, sizeof ac->ident);
		memcpy(ac->key_id, who->key_id, sizeof ac->key_id);
	}
	return 0;
}

bool auth_conn_revoked(struct auth_worker *aw, const struct config *cfg,
		       const struct auth_conn *ac, int64_t now)
{
	struct store *st = store_slot_get(&aw->store, cfg);
	if (!st)
		return false; /* cannot tell; requests will fail closed */
	struct store_identity id;
	const char *names[2] = { ac->ident, ac->has_cert ? ac->cert.name : "" };
	for (int i = 0; i < 2; i++) {
		if (names[i][0] && store_identity_get(st, names[i], &id) == UMB_OK &&
		    identity_refusal(&id, now))
			return true;
	}
	struct store_key k;
	if (ac->key_id[0] && store_key_get(st, ac->key_id, &k) == UMB_OK &&
	    (k.revoked_at || (k.expires && now >= k.expires)))
		return true;
	return false;
}

void auth_record_from_cert(const struct pki_identity *id, bool break_glass,
			   int64_t now, struct store_identity *out)
{
	memset(out, 0, sizeof *out);
	snprintf(out->name, sizeof out->name, "%s", id->name);
	snprintf(out->team, sizeof out->team, "%s", id->team);
	snprintf(out->cert_fp, sizeof out->cert_fp, "%s", id->fp);
	out->kind = store_kind_of[id->kind];
	out->created = now;
	out->expires = id->not_after;
	out->break_glass = break_glass;
}

/* ---- the poller ---- */

struct auth_poller {
	struct store_slot store;
	bool have;
	uint64_t last;
};

struct auth_poller *auth_poller_new(void)
{
	return umb_calloc(1, sizeof(struct auth_poller));
}

void auth_poller_free(struct auth_poller *p)
{
	if (!p)
		return;
	store_close(p->store.st);
	free(p);
}

bool auth_poll(struct auth_poller *p, const struct config *cfg)
{
	if (!auth_store_needed(cfg))
		return false;
	struct store *st = store_slot_get(&p->store, cfg);
	uint64_t rev;
	if (!st || store_revision(st, &rev))
		return false;
	bool moved = p->have && rev != p->last;
	p->have = true;
	p->last = rev;
	/* +1: 0 means "never polled" to the workers */
	atomic_store_explicit(&g_revision, rev + 1, memory_order_release);
	return moved;
}
