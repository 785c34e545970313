/* admin.c — POST /enroll and the admin API (/admin/identities, /admin/keys,
 * /admin/revoke). Both write to the store from the worker thread: they are
 * rare, and SQLite's busy timeout queues them behind a concurrent CLI.
 * api.c has already authenticated the caller (an admin for /admin/). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/pem.h>

#include "api/api.h"
#include "core/json.h"
#include "identity/keys.h"
#include "identity/pki.h"
#include "spend/usage_cmd.h"

#define ADMIN_BODY_MAX (64 * 1024) /* enroll: token 8 KiB + CSR 16 KiB */

/* A reply body owned by the request. */
static struct buf *reply_buf(struct req *r)
{
	struct buf *b = arena_alloc(r->arena, sizeof *b);
	buf_init(b, 0);
	arena_cleanup_add(r->arena, (arena_cleanup_cb)buf_clear, b);
	return b;
}

static void reply_json(struct req *r, int status, struct buf *b)
{
	struct http_resp resp = { .status = status, .content_type = "application/json",
				  .body = buf_str(b) };
	http_respond(r, &resp);
}

/* One "msg":"admin" log line per admin request: who did what to whom. */
static void admin_log(struct req *r, const char *action, const char *target, int status)
{
	struct buf b;
	buf_init(&b, 0);
	buf_append_cstr(&b, "\"id\":");
	json_write_cstr(&b, r->id);
	buf_append_cstr(&b, ",\"admin\":");
	json_write_cstr(&b, r->who.name);
	buf_printf(&b, ",\"auth\":\"%s\",\"action\":\"%s\",\"target\":", r->who.method, action);
	json_write_cstr(&b, target ? target : "");
	buf_printf(&b, ",\"status\":%d,\"peer\":\"%s\"", status, r->peer);
	log_emit(LOG_INFO, b.p, "admin");
	buf_clear(&b);
}

/* A string member the body may carry: decoded into the arena (NUL-free,
 * at most max bytes) or left NULL when absent. */
struct field {
	const char *key;
	size_t max;
	const char **out;
};

static bool decode_field(struct req *r, struct json_val v, const struct field *f)
{
	struct buf b;
	buf_init(&b, f->max);
	bool ok = !*f->out && v.type == JSON_STRING && !json_str_decode(v, &b) &&
		  !memchr(b.p ? b.p : "", 0, b.n);
	if (ok)
		*f->out = arena_strndup(r->arena, b.p ? b.p : "", b.n);
	buf_clear(&b);
	return ok;
}

/* Read the body, a JSON object of the string members in f and nothing
 * else; false after answering 400 (or 413), naming the expected shape. */
static bool read_fields(struct req *r, const struct field *f, size_t nf, const char *shape)
{
	struct json_member m[8];
	size_t n;
	struct json_val root;
	struct json_err jerr;
	if (r->body.n > ADMIN_BODY_MAX) {
		api_error(r, 413, "invalid_request_error", "request_too_large",
			  "request body too large");
		return false;
	}
	if (json_parse_top(r->body.p, r->body.n, m, UMB_ARRAY_LEN(m), &n, &root, &jerr)) {
		api_error(r, 400, "invalid_request_error", "invalid_json",
			  "request body is not valid JSON: %s at byte %zu", jerr.msg, jerr.off);
		return false;
	}
	bool ok = root.type == JSON_OBJECT;
	for (size_t i = 0; i < nf; i++)
		*f[i].out = NULL;
	for (size_t i = 0; i < n && ok; i++) {
		size_t j = 0;
		while (j < nf && !json_key_eq(m[i].key_raw, f[j].key))
			j++;
		ok = j < nf && decode_field(r, m[i].val, &f[j]);
	}
	if (!ok)
		api_error(r, 400, "invalid_request_error", "invalid_value", "expected %s", shape);
	return ok;
}

static void store_unavailable(struct req *r)
{
	api_error(r, 500, "api_error", "store_unavailable", "the identity store is unavailable");
}

static struct store *admin_store(struct req *r)
{
	struct store *st = auth_worker_store(r->w->auth, r->rt->cfg);
	if (!st)
		store_unavailable(r);
	return st;
}

/* ---- POST /enroll ---- */

static int append_pem(struct buf *b, X509 *cert)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *p;
	int rc = UMB_ERR;
	if (bio && PEM_write_bio_X509(bio, cert) == 1) {
		long n = BIO_get_mem_data(bio, &p);
		rc = buf_append(b, p, (size_t)n);
	}
	BIO_free(bio);
	return rc;
}

void api_enroll(struct req *r)
{
	const struct pki_ca *ca = r->rt->enroll_ca;
	if (!ca) {
		api_error(r, 404, "not_found_error", "enrollment_off",
			  "enrollment is off: the gateway has no CA key (ca.key next to tls.client_ca)");
		return;
	}
	static const char shape[] = "{\"token\": string, \"csr\": PEM string}";
	const char *token, *csr;
	const struct field f[] = { { "token", PKI_TOKEN_MAX, &token },
				   { "csr", PKI_CSR_MAX, &csr } };
	if (!read_fields(r, f, UMB_ARRAY_LEN(f), shape))
		return;
	if (!token || !csr) {
		api_error(r, 400, "invalid_request_error", "invalid_value", "expected %s", shape);
		return;
	}
	int64_t now = (int64_t)time(NULL);
	char perr[PKI_ERR_LEN];
	struct pki_token_claims cl;
	if (pki_token_verify(ca, str_cstr(token), (time_t)now, &cl, perr)) {
		api_error(r, 401, "authentication_error", "invalid_token",
			  "enrollment token refused: %s", perr);
		return;
	}
	struct store *st = admin_store(r);
	if (!st)
		return;
	struct store_identity prev;
	if (store_identity_get(st, cl.sub, &prev) == UMB_OK && prev.revoked_at) {
		api_error(r, 403, "permission_error", "identity_revoked",
			  "identity %s is revoked (revocation is final)", cl.sub);
		return;
	}
	/* spend the token before signing: a replay, even a concurrent one on
	 * another gateway, finds it used */
	int rc = store_token_mark_used(st, cl.jti, cl.exp, now);
	if (rc) {
		if (rc == STORE_EEXISTS)
			api_error(r, 401, "authentication_error", "token_used",
				  "enrollment token already used");
		else if (rc == STORE_EEXPIRED)
			api_error(r, 401, "authentication_error", "invalid_token",
				  "enrollment token expired");
		else
			store_unavailable(r);
		return;
	}
	struct buf *b = reply_buf(r);
	struct buf cert;
	buf_init(&cert, 0);
	struct pki_identity id;
	if (pki_enroll_sign(ca, &cl, str_cstr(csr), (time_t)now, &cert, &id, perr)) {
		buf_clear(&cert);
		api_error(r, 400, "invalid_request_error", "csr_rejected",
			  "certificate request refused: %s", perr);
		return;
	}
	struct store_identity rec;
	auth_record_from_cert(&id, false, now, &rec);
	rc = store_identity_put(st, &rec);
	if (rc) {
		buf_clear(&cert);
		api_error(r, rc == STORE_EREVOKED ? 403 : 500,
			  rc == STORE_EREVOKED ? "permission_error" : "api_error",
			  rc == STORE_EREVOKED ? "identity_revoked" : "store_unavailable",
			  "cannot register identity %s", id.name);
		return;
	}
	buf_append_cstr(b, "{\"certificate\":");
	json_write_str(b, buf_str(&cert));
	buf_clear(&cert);
	struct buf capem;
	buf_init(&capem, 0);
	append_pem(&capem, ca->cert);
	buf_append_cstr(b, ",\"ca\":");
	json_write_str(b, buf_str(&capem));
	buf_clear(&capem);
	buf_append_cstr(b, "}");
	char fields[256];
	snprintf(fields, sizeof fields, "\"identity\":\"%s\",\"kind\":\"%s\",\"team\":\"%s\",\"peer\":\"%s\"",
		 id.name, pki_kind_name(id.kind), id.team, r->peer);
	log_emit(LOG_INFO, fields, "enrolled");
	reply_json(r, 200, b);
}

/* ---- the admin API ---- */

struct list_ctx {
	struct buf *b;
	size_t n;
	int64_t now;
};

static int identity_json_cb(void *ctx, const struct store_identity *id)
{
	struct list_ctx *c = ctx;
	struct buf *b = c->b;
	int rc = buf_append_cstr(b, c->n++ ? ",{\"name\":" : "{\"name\":");
	rc |= json_write_cstr(b, id->name);
	rc |= buf_printf(b, ",\"kind\":\"%s\",\"team\":", store_kind_name(id->kind));
	rc |= json_write_cstr(b, id->team);
	rc |= buf_printf(b, ",\"created\":%lld,\"expires\":%lld,\"revoked\":%s,\"revoked_at\":%lld,"
			 "\"break_glass\":%s,\"cert_fp\":\"%s\"}",
			 (long long)id->created, (long long)id->expires,
			 id->revoked_at ? "true" : "false", (long long)id->revoked_at,
			 id->break_glass ? "true" : "false", id->cert_fp);
	return rc ? UMB_ENOMEM : 0;
}

static int key_json_cb(void *ctx, const struct store_key *k)
{
	struct list_ctx *c = ctx;
	if (c->n++)
		buf_append(c->b, ",", 1);
	return keys_write_json(c->b, k, c->now);
}

/* ?identity=NAME (names need no percent-decoding: [A-Za-z0-9._@-]) */
static bool query_identity(struct req *r, char *out, size_t cap)
{
	struct str q = r->head.query;
	out[0] = 0;
	if (!q.n)
		return true;
	if (q.n < 9 || memcmp(q.p, "identity=", 9) || q.n - 9 >= cap)
		return false;
	memcpy(out, q.p + 9, q.n - 9);
	out[q.n - 9] = 0;
	return store_name_valid(out);
}

static void admin_list(struct req *r, bool keys)
{
	struct store *st = admin_store(r);
	if (!st)
		return;
	char who[STORE_NAME_MAX + 1];
	if (keys && !query_identity(r, who, sizeof who)) {
		api_error(r, 400, "invalid_request_error", "invalid_value",
			  "expected ?identity=NAME");
		return;
	}
	struct buf *b = reply_buf(r);
	struct list_ctx c = { .b = b, .now = (int64_t)time(NULL) };
	buf_append(b, "[", 1);
	int rc = keys ? store_key_list(st, who[0] ? who : NULL, key_json_cb, &c)
		      : store_identity_list(st, identity_json_cb, &c);
	if (rc) {
		store_unavailable(r);
		return;
	}
	buf_append(b, "]", 1);
	admin_log(r, keys ? "list_keys" : "list_identities", keys ? who : "", 200);
	reply_json(r, 200, b);
}

/* The value of ?name=VALUE in the query ("" if absent), %XX decoded;
 * false when it does not fit. */
static bool query_param(struct req *r, const char *name, char *out, size_t cap)
{
	struct str q = r->head.query;
	size_t nl = strlen(name);
	out[0] = 0;
	for (size_t i = 0; i < q.n;) {
		const char *amp = memchr(q.p + i, '&', q.n - i);
		size_t end = amp ? (size_t)(amp - q.p) : q.n;
		if (end - i > nl && q.p[i + nl] == '=' && !memcmp(q.p + i, name, nl)) {
			size_t o = 0;
			for (size_t k = i + nl + 1; k < end; k++) {
				char c = q.p[k];
				if (c == '%' && k + 2 < end && isxdigit((unsigned char)q.p[k + 1]) &&
				    isxdigit((unsigned char)q.p[k + 2])) {
					char hex[3] = { q.p[k + 1], q.p[k + 2], 0 };
					c = (char)strtol(hex, NULL, 16);
					k += 2;
				}
				if (o + 1 >= cap)
					return false;
				out[o++] = c;
			}
			out[o] = 0;
			return true;
		}
		i = end + 1;
	}
	return true;
}

/* GET /admin/usage?team=&identity=&since=YYYY-MM-DD&by=model|day|identity|team */
static void admin_usage(struct req *r)
{
	char team[STORE_NAME_MAX + 1], ident[STORE_NAME_MAX + 1], since[16], by[16];
	struct store_usage_query q = { .by = STORE_BY_MODEL };
	if (!query_param(r, "team", team, sizeof team) || (team[0] && !store_name_valid(team)) ||
	    !query_param(r, "identity", ident, sizeof ident) || (ident[0] && !store_name_valid(ident)) ||
	    !query_param(r, "since", since, sizeof since) || (since[0] && !usage_day_valid(since)) ||
	    !query_param(r, "by", by, sizeof by) || (by[0] && usage_by_parse(by, &q.by))) {
		api_error(r, 400, "invalid_request_error", "invalid_value",
			  "expected ?team=NAME&identity=NAME&since=YYYY-MM-DD&by=model|day|identity|team");
		return;
	}
	q.team = team[0] ? team : NULL;
	q.identity = ident[0] ? ident : NULL;
	q.since = since[0] ? since : NULL;
	struct store *st = admin_store(r);
	if (!st)
		return;
	struct buf *b = reply_buf(r);
	if (usage_write(st, &q, 1, b)) {
		store_unavailable(r);
		return;
	}
	admin_log(r, "usage", team, 200);
	reply_json(r, 200, b);
}

static void admin_key_create(struct req *r)
{
	static const char shape[] = "{\"identity\": NAME, \"expires\"?: \"30d\", \"label\"?: text}";
	const char *ident, *expires, *label;
	const struct field f[] = { { "identity", STORE_NAME_MAX, &ident },
				   { "expires", 32, &expires },
				   { "label", STORE_LABEL_MAX, &label } };
	if (!read_fields(r, f, UMB_ARRAY_LEN(f), shape))
		return;
	int64_t life = 0;
	if (!ident || !store_name_valid(ident) || (expires && pki_lifetime_parse(expires, &life))) {
		api_error(r, 400, "invalid_request_error", "invalid_value", "expected %s", shape);
		return;
	}
	struct store *st = admin_store(r);
	if (!st)
		return;
	int64_t now = (int64_t)time(NULL);
	struct store_key k;
	char token[KEYS_TOKEN_LEN + 1];
	int rc = keys_create(st, ident, now, life ? now + life : 0, label, &k, token);
	if (rc == STORE_ENOTFOUND || rc == STORE_EREVOKED || rc == STORE_EINVAL) {
		api_error(r, rc == STORE_ENOTFOUND ? 404 : 400,
			  rc == STORE_ENOTFOUND ? "not_found_error" : "invalid_request_error",
			  rc == STORE_ENOTFOUND ? "identity_not_found" : "invalid_value",
			  rc == STORE_ENOTFOUND ? "no identity %s in the store"
			  : rc == STORE_EREVOKED ? "identity %s is revoked"
			  : "invalid key for identity %s", ident);
		admin_log(r, "create_key", ident, r->status);
		return;
	}
	if (rc) {
		store_unavailable(r);
		return;
	}
	struct buf *b = reply_buf(r);
	buf_printf(b, "{\"id\":\"%s\",\"key\":\"%s\",\"identity\":", k.id, token);
	json_write_cstr(b, ident);
	buf_printf(b, ",\"expires\":%lld}", (long long)k.expires);
	OPENSSL_cleanse(token, sizeof token);
	admin_log(r, "create_key", k.id, 201);
	reply_json(r, 201, b);
}

static void admin_revoke(struct req *r)
{
	static const char shape[] = "{\"identity\": NAME} or {\"key\": KEYID}";
	const char *ident, *key;
	const struct field f[] = { { "identity", STORE_NAME_MAX, &ident },
				   { "key", STORE_KEY_ID_LEN, &key } };
	if (!read_fields(r, f, UMB_ARRAY_LEN(f), shape))
		return;
	if (!ident == !key) {
		api_error(r, 400, "invalid_request_error", "invalid_value", "expected %s", shape);
		return;
	}
	struct store *st = admin_store(r);
	if (!st)
		return;
	int64_t now = (int64_t)time(NULL);
	int rc = ident ? store_identity_revoke(st, ident, now) : store_key_revoke(st, key, now);
	const char *target = ident ? ident : key;
	if (rc == STORE_ENOTFOUND || rc == STORE_EINVAL) {
		api_error(r, 404, "not_found_error", ident ? "identity_not_found" : "key_not_found",
			  "no %s %s in the store", ident ? "identity" : "key", target);
	} else if (rc) {
		store_unavailable(r);
	} else {
		struct buf *b = reply_buf(r);
		buf_printf(b, "{\"revoked\":{\"%s\":", ident ? "identity" : "key");
		json_write_cstr(b, target);
		buf_append_cstr(b, "}}");
		reply_json(r, 200, b);
	}
	admin_log(r, ident ? "revoke_identity" : "revoke_key", target, r->status);
}

void api_admin(struct req *r)
{
	struct str path = r->head.path;
	if (path.n > 1 && path.p[path.n - 1] == '/')
		path.n--;
	bool get = str_eq_cstr(r->head.method, "GET");
	bool post = str_eq_cstr(r->head.method, "POST");
	if (str_eq_cstr(path, "/admin/identities") && get)
		admin_list(r, false);
	else if (str_eq_cstr(path, "/admin/keys") && get)
		admin_list(r, true);
	else if (str_eq_cstr(path, "/admin/keys") && post)
		admin_key_create(r);
	else if (str_eq_cstr(path, "/admin/revoke") && post)
		admin_revoke(r);
	else if (str_eq_cstr(path, "/admin/usage") && get)
		admin_usage(r);
	else if (str_eq_cstr(path, "/admin/identities") || str_eq_cstr(path, "/admin/keys") ||
		 str_eq_cstr(path, "/admin/revoke") || str_eq_cstr(path, "/admin/usage"))
		api_error(r, 405, "invalid_request_error", "method_not_allowed",
			  "method not allowed");
	else
		api_error(r, 404, "not_found_error", "unknown_url", "unknown admin path");
}
