/* store.c — backend choice by URL scheme, input validation and dispatch.
 *
 * Every record is validated here, once, before any backend sees it, so
 * backends can trust names, ids and labels (charset and length) and only
 * deal with storage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

static const struct store_ops *const store_backends[] = {
	&store_sqlite_ops,
	&store_postgres_ops,
};

static const char *const store_kind_names[] = {
	[STORE_KIND_CLIENT] = "client",
	[STORE_KIND_CONNECTOR] = "connector",
	[STORE_KIND_GATEWAY] = "gateway",
	[STORE_KIND_ADMIN] = "admin",
};

void store__set_err(struct store *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->errmsg, sizeof(st->errmsg), fmt, ap);
	va_end(ap);
}

const char *store_errmsg(const struct store *st)
{
	return st ? st->errmsg : "";
}

int store_kind_parse(const char *s, enum store_kind *out)
{
	for (size_t i = 0; i < UMB_ARRAY_LEN(store_kind_names); i++) {
		if (s && strcmp(s, store_kind_names[i]) == 0) {
			*out = (enum store_kind)i;
			return UMB_OK;
		}
	}
	return UMB_ERR;
}

const char *store_kind_name(enum store_kind kind)
{
	if ((unsigned)kind >= UMB_ARRAY_LEN(store_kind_names))
		return "unknown";
	return store_kind_names[kind];
}

/* Names end up in certificates (SAN URIs), logs and JSON: a small charset
 * keeps all three free of escaping questions. */
static bool store__charset_ok(const char *s, size_t max, const char *extra)
{
	size_t n = 0;

	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];
		if (n >= max)
			return false;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr(extra, c) != NULL)
			continue;
		return false;
	}
	return n > 0;
}

bool store_name_valid(const char *s)
{
	return s && store__charset_ok(s, STORE_NAME_MAX, "._@-");
}

static bool store__key_id_valid(const char *s)
{
	/* base32 lowercase (RFC 4648 alphabet) of exactly the id length */
	size_t n = 0;

	for (; s && s[n]; n++) {
		char c = s[n];
		if (n >= STORE_KEY_ID_LEN ||
		    !((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')))
			return false;
	}
	return n == STORE_KEY_ID_LEN;
}

static bool store__label_valid(const char *s)
{
	/* printable ASCII only: labels are shown in a terminal table */
	size_t n = 0;

	for (; s[n]; n++)
		if (n >= STORE_LABEL_MAX || s[n] < 0x20 || s[n] > 0x7e)
			return false;
	return true;
}

static bool store__fp_valid(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++) {
		char c = s[n];
		if (n >= STORE_FP_MAX ||
		    !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return n == 0 || n == STORE_FP_MAX;
}

int store_url_parse(const char *url, const char *base_dir, char *scheme,
		    size_t scheme_size, char *target, size_t target_size)
{
	const char *sep = url ? strstr(url, "://") : NULL;
	const char *rest;
	size_t slen;
	int n;

	if (!sep || sep == url)
		return UMB_ERR;
	slen = (size_t)(sep - url);
	if (slen >= scheme_size)
		return UMB_ERR;
	for (size_t i = 0; i < slen; i++)
		if (!((url[i] >= 'a' && url[i] <= 'z') || url[i] == '+'))
			return UMB_ERR;
	memcpy(scheme, url, slen);
	scheme[slen] = 0;
	rest = sep + 3;
	if (*rest == 0)
		return UMB_ERR;
	if (strcmp(scheme, "sqlite") != 0) {
		/* other backends take the URL as their connection string */
		n = snprintf(target, target_size, "%s", url);
	} else if (rest[0] == '/' || strcmp(rest, ":memory:") == 0 ||
		   !base_dir || !*base_dir) {
		n = snprintf(target, target_size, "%s", rest);
	} else {
		size_t bl = strlen(base_dir);
		const char *slash = base_dir[bl - 1] == '/' ? "" : "/";
		n = snprintf(target, target_size, "%s%s%s", base_dir, slash,
			     rest);
	}
	if (n < 0 || (size_t)n >= target_size)
		return UMB_ERR;
	return UMB_OK;
}

int store_open(const char *url, const char *base_dir, struct store **out,
	       struct store_err *err)
{
	char scheme[16], target[4096];
	const struct store_ops *ops = NULL;
	struct store *st = NULL;
	int rc = UMB_ERR;

	*out = NULL;
	err->msg[0] = 0;
	if (store_url_parse(url, base_dir, scheme, sizeof(scheme), target,
			    sizeof(target)) != UMB_OK) {
		snprintf(err->msg, sizeof(err->msg),
			 "store: bad URL \"%.200s\" (expected sqlite://PATH or postgres://USER@HOST/DB)",
			 url ? url : "");
		goto out;
	}
	/* libpq's two spellings name one backend */
	if (strcmp(scheme, "postgresql") == 0)
		snprintf(scheme, sizeof(scheme), "postgres");
	for (size_t i = 0; i < UMB_ARRAY_LEN(store_backends); i++)
		if (strcmp(scheme, store_backends[i]->scheme) == 0)
			ops = store_backends[i];
	if (!ops) {
		snprintf(err->msg, sizeof(err->msg),
			 "store: backend \"%s\" is not available in this build",
			 scheme);
		goto out;
	}
	st = umb_calloc(1, sizeof(*st));
	st->ops = ops;
	rc = ops->open(st, target);
	if (rc != UMB_OK) {
		snprintf(err->msg, sizeof(err->msg), "store %.200s: %.300s", target,
			 st->errmsg);
		free(st);
		st = NULL;
		goto out;
	}
	*out = st;
out:
	return rc;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	st->ops->close(st);
	free(st);
}

static int store__bad(struct store *st, const char *what, const char *v)
{
	store__set_err(st, "invalid %s \"%.*s\"", what, 80, v ? v : "(null)");
	return STORE_EINVAL;
}

int store_identity_put(struct store *st, const struct store_identity *id)
{
	if (!store_name_valid(id->name))
		return store__bad(st, "identity name", id->name);
	if (id->team[0] && !store_name_valid(id->team))
		return store__bad(st, "team name", id->team);
	if ((unsigned)id->kind >= UMB_ARRAY_LEN(store_kind_names))
		return store__bad(st, "identity kind", "?");
	if (!store__fp_valid(id->cert_fp))
		return store__bad(st, "certificate fingerprint", id->cert_fp);
	return st->ops->identity_put(st, id);
}

int store_identity_get(struct store *st, const char *name,
		       struct store_identity *out)
{
	if (!store_name_valid(name))
		return store__bad(st, "identity name", name);
	return st->ops->identity_get(st, name, out);
}

int store_identity_list(struct store *st, store_identity_cb cb, void *ctx)
{
	return st->ops->identity_list(st, cb, ctx);
}

int store_identity_revoke(struct store *st, const char *name, int64_t now)
{
	if (!store_name_valid(name))
		return store__bad(st, "identity name", name);
	return st->ops->identity_revoke(st, name, now);
}

int store_key_create(struct store *st, const struct store_key *key)
{
	if (!store__key_id_valid(key->id))
		return store__bad(st, "key id", key->id);
	if (!store_name_valid(key->identity))
		return store__bad(st, "identity name", key->identity);
	if (!store__label_valid(key->label))
		return store__bad(st, "key label", key->label);
	return st->ops->key_create(st, key);
}

int store_key_get(struct store *st, const char *id, struct store_key *out)
{
	if (!store__key_id_valid(id))
		return store__bad(st, "key id", id);
	return st->ops->key_get(st, id, out);
}

int store_key_list(struct store *st, const char *identity, store_key_cb cb,
		   void *ctx)
{
	if (identity && !store_name_valid(identity))
		return store__bad(st, "identity name", identity);
	return st->ops->key_list(st, identity, cb, ctx);
}

int store_key_revoke(struct store *st, const char *id, int64_t now)
{
	if (!store__key_id_valid(id))
		return store__bad(st, "key id", id);
	return st->ops->key_revoke(st, id, now);
}

int store_token_mark_used(struct store *st, const char *jti, int64_t expires,
			  int64_t now)
{
	if (!jti || !store__charset_ok(jti, STORE_JTI_MAX, "._-"))
		return store__bad(st, "token id", jti);
	return st->ops->token_mark_used(st, jti, expires, now);
}

int store_revision(struct store *st, uint64_t *out)
{
	return st->ops->revision(st, out);
}

int store_usage_add(struct store *st, const struct store_usage *rows, size_t n)
{
	return n ? st->ops->usage_add(st, rows, n) : UMB_OK;
}

int store_usage_query(struct store *st, const struct store_usage_query *q,
		      store_usage_cb cb, void *ctx)
{
	return st->ops->usage_query(st, q, cb, ctx);
}

int store_quota_take(struct store *st, const char *key, int64_t window, int64_t cap,
		     int64_t want, int64_t *granted, int64_t *used)
{
	*granted = 0;
	if (want < 0 || cap < 0)
		return store__bad(st, "quota amount", key);
	return st->ops->quota_take(st, key, window, cap, want, granted, used);
}

int store_quota_give(struct store *st, const char *key, int64_t window, int64_t amount)
{
	return amount > 0 ? st->ops->quota_give(st, key, window, amount) : UMB_OK;
}

int store_quota_get(struct store *st, const char *key, int64_t window, int64_t *used)
{
	return st->ops->quota_get(st, key, window, used);
}
