/* test_store_pg.c — the PostgreSQL store backend (store/postgres.c) run
 * through the same behaviours as test_store.c: schema migrations
 * (idempotent, raced by threads and a process, newer schema refused),
 * identities, validation, keys, one-time enrollment tokens, the revision
 * (and its NOTIFY), usage rollups, quotas, two handles and two processes.
 * Plus what only a server brings: takers racing on one quota from 4
 * threads and from 2 processes (the total never passes the cap), a key
 * creation racing its identity's revocation, replicas flushing usage in
 * opposite orders, a terminated backend (reconnect) and a held lock
 * (statement timeout).
 *
 * Needs a server: UMBRA_TEST_PG_URL=postgres://USER@HOST:PORT/DB (a role
 * that may CREATE SCHEMA in DB; tests/integration/test_store_pg.py starts
 * one). Unset, the test says so and passes. Each test works in a schema of
 * its own (search_path set through the URL's `options`), dropped after. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#if defined(__has_include)
#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h>
#endif
#else
#include <libpq-fe.h>
#endif

#include "store/store.h"

static const char *pg_base; /* UMBRA_TEST_PG_URL */

struct fx {
	char schema[64];
	char url[2048];
	PGconn *admin; /* a separate session, search_path = schema */
};

/* The base URL with `extra` (already URL-encoded key=value) appended. */
static void url_with(char *out, size_t size, const char *extra)
{
	snprintf(out, size, "%s%s%s", pg_base, strchr(pg_base, '?') ? "&" : "?",
		 extra);
}

static void admin_exec(struct fx *f, const char *sql)
{
	PGresult *r = PQexec(f->admin, sql);
	ExecStatusType s = PQresultStatus(r);

	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
		fprintf(stderr, "admin %s: %s", sql, PQresultErrorMessage(r));
	assert_true(s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK);
	PQclear(r);
}

/* The first column of the first row of constant SQL, as a number. */
static long long admin_int(struct fx *f, const char *sql)
{
	PGresult *r = PQexec(f->admin, sql);
	long long v = -1;

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "admin %s: %s", sql, PQresultErrorMessage(r));
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	if (PQntuples(r) > 0)
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

static int fx_setup(void **state)
{
	static int seq;
	struct fx *f = calloc(1, sizeof(*f));
	char sql[256], extra[256];

	snprintf(f->schema, sizeof(f->schema), "umbra_t_%d_%d", (int)getpid(),
		 ++seq);
	f->admin = PQconnectdb(pg_base);
	if (PQstatus(f->admin) != CONNECTION_OK) {
		fprintf(stderr, "admin connect: %s", PQerrorMessage(f->admin));
		return -1;
	}
	admin_exec(f, "SET client_min_messages = warning"); /* no DROP notices */
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", f->schema);
	admin_exec(f, sql);
	snprintf(sql, sizeof(sql), "SET search_path TO %s", f->schema);
	admin_exec(f, sql);
	/* the handles' sessions find (and create) their tables in the schema;
	 * the application_name lets a test find their backends */
	snprintf(extra, sizeof(extra),
		 "options=-csearch_path%%3D%s&application_name=%s", f->schema,
		 f->schema);
	url_with(f->url, sizeof(f->url), extra);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	char sql[128];

	snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", f->schema);
	admin_exec(f, sql);
	PQfinish(f->admin);
	free(f);
	return 0;
}

static struct store *fx_open(struct fx *f)
{
	struct store *st = NULL;
	struct store_err err;

	int rc = store_open(f->url, NULL, &st, &err);
	if (rc != UMB_OK)
		fprintf(stderr, "store_open: %s\n", err.msg);
	assert_int_equal(rc, UMB_OK);
	assert_non_null(st);
	return st;
}

static void put_identity(struct store *st, const char *name,
			 enum store_kind kind, const char *team)
{
	struct store_identity id = { .kind = kind, .created = 1000 };

	snprintf(id.name, sizeof(id.name), "%s", name);
	snprintf(id.team, sizeof(id.team), "%s", team);
	assert_int_equal(store_identity_put(st, &id), UMB_OK);
}

static struct store_key make_key(const char *id, const char *identity,
				 uint8_t fill)
{
	struct store_key k = { .created = 2000 };

	snprintf(k.id, sizeof(k.id), "%s", id);
	snprintf(k.identity, sizeof(k.identity), "%s", identity);
	memset(k.secret_hash, fill, sizeof(k.secret_hash));
	return k;
}

static uint64_t rev(struct store *st)
{
	uint64_t r = 0;

	assert_int_equal(store_revision(st, &r), UMB_OK);
	return r;
}

/* ---- URL and open ---- */

static void test_url_and_open_errors(void **state)
{
	struct fx *f = *state;
	char scheme[16], target[2048], url[2100];
	struct store *st = (struct store *)1;
	struct store_err err;

	assert_int_equal(store_url_parse("postgresql://u@h:5433/db?sslmode=disable",
					 "/etc", scheme, sizeof(scheme), target,
					 sizeof(target)), UMB_OK);
	assert_string_equal(scheme, "postgresql");
	assert_string_equal(target, "postgresql://u@h:5433/db?sslmode=disable");

	/* libpq's other spelling reaches the same backend and data */
	st = fx_open(f);
	put_identity(st, "alice", STORE_KIND_CLIENT, "eng");
	store_close(st);
	assert_true(strncmp(f->url, "postgres://", 11) == 0);
	snprintf(url, sizeof(url), "postgresql://%s", f->url + 11);
	st = NULL;
	assert_int_equal(store_open(url, NULL, &st, &err), UMB_OK);
	struct store_identity id;
	assert_int_equal(store_identity_get(st, "alice", &id), UMB_OK);
	store_close(st);

	/* nothing listens on port 1: an error naming the URL, no handle */
	st = (struct store *)1;
	assert_int_equal(store_open("postgres://umbra@127.0.0.1:1/umbra", NULL,
				    &st, &err), UMB_ERR);
	assert_null(st);
	assert_non_null(strstr(err.msg, "postgres://umbra@127.0.0.1:1/umbra"));
	assert_non_null(strstr(err.msg, "connect"));
	/* a database that does not exist, on a live server */
	url_with(url, sizeof(url), "dbname=umbra_no_such_db");
	assert_int_equal(store_open(url, NULL, &st, &err), UMB_ERR);
	assert_null(st);
	assert_non_null(strstr(err.msg, "umbra_no_such_db"));
}

/* ---- migrations ---- */

static void test_migrations_idempotent(void **state)
{
	struct fx *f = *state;
	struct store *st = fx_open(f);

	assert_int_equal(rev(st), 0);
	put_identity(st, "alice", STORE_KIND_CLIENT, "eng");
	store_close(st);
	/* reopening applies nothing twice and keeps the data */
	for (int i = 0; i < 3; i++) {
		st = fx_open(f);
		struct store_identity id;
		assert_int_equal(store_identity_get(st, "alice", &id), UMB_OK);
		assert_int_equal(rev(st), 1);
		store_close(st);
	}
	assert_int_equal(admin_int(f, "SELECT COUNT(*) FROM schema_version"), 3);
	assert_int_equal(admin_int(f, "SELECT MAX(version) FROM schema_version"), 3);
	assert_int_equal(admin_int(f, "SELECT COUNT(*) FROM revision"), 1);
	/* key hashes are bytea, checked to be 32 bytes */
	assert_int_equal(admin_int(f, "SELECT COUNT(*) FROM information_schema.columns"
				      " WHERE table_schema = current_schema()"
				      " AND table_name = 'keys'"
				      " AND column_name = 'secret_hash'"
				      " AND data_type = 'bytea'"), 1);
}

static void *open_close_thread(void *arg)
{
	struct fx *f = arg;
	struct store *st = NULL;
	struct store_err err;
	int rc = store_open(f->url, NULL, &st, &err);

	if (rc != UMB_OK)
		fprintf(stderr, "thread open: %s\n", err.msg);
	store_close(st);
	return (void *)(intptr_t)rc;
}

/* replicas opening a brand-new database at once migrate it exactly once
 * (pg_advisory_xact_lock): 4 threads and a child process */
static void test_migrate_race(void **state)
{
	struct fx *f = *state;
	pthread_t th[4];
	int status = 0;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(open_close_thread(f) == (void *)(intptr_t)UMB_OK ? 0 : 1);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, open_close_thread, f), 0);
	for (int i = 0; i < 4; i++) {
		void *rc;
		assert_int_equal(pthread_join(th[i], &rc), 0);
		assert_int_equal((intptr_t)rc, UMB_OK);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(admin_int(f, "SELECT COUNT(*) FROM schema_version"), 3);
	assert_int_equal(admin_int(f, "SELECT value FROM revision"), 0);
}

static void test_newer_schema_refused(void **state)
{
	struct fx *f = *state;
	struct store *st = fx_open(f);
	struct store_err err;

	store_close(st);
	admin_exec(f, "INSERT INTO schema_version VALUES (99, 0)");
	st = NULL;
	assert_int_equal(store_open(f->url, NULL, &st, &err), UMB_ERR);
	assert_null(st);
	assert_non_null(strstr(err.msg, "newer than this build"));
}

/* ---- identities ---- */

struct collect {
	char names[8][STORE_NAME_MAX + 1];
	int n, stop_at;
};

static int collect_id_cb(void *ctx, const struct store_identity *id)
{
	struct collect *c = ctx;

	snprintf(c->names[c->n], sizeof(c->names[0]), "%s", id->name);
	c->n++;
	return c->n == c->stop_at ? 42 : 0;
}

static void test_identities(void **state)
{
	struct fx *f = *state;
	struct store *st = fx_open(f);
	struct store_identity id = { .kind = STORE_KIND_ADMIN, .created = 10,
				     .expires = 500, .break_glass = true };
	struct store_identity got;
	struct collect c = { 0 };

	snprintf(id.name, sizeof(id.name), "zoe");
	snprintf(id.team, sizeof(id.team), "ops");
	memset(id.cert_fp, 'a', STORE_FP_MAX);
	assert_int_equal(store_identity_put(st, &id), UMB_OK);
	assert_int_equal(store_identity_get(st, "zoe", &got), UMB_OK);
	assert_string_equal(got.name, "zoe");
	assert_int_equal(got.kind, STORE_KIND_ADMIN);
	assert_string_equal(got.team, "ops");
	assert_int_equal(got.created, 10);
	assert_int_equal(got.expires, 500);
	assert_int_equal(got.revoked_at, 0);
	assert_true(got.break_glass);
	assert_string_equal(got.cert_fp, id.cert_fp);

	/* an update keeps `created` and changes the rest */
	id.created = 99;
	id.kind = STORE_KIND_CONNECTOR;
	id.team[0] = 0;
	id.break_glass = false;
	id.cert_fp[0] = 0;
	assert_int_equal(store_identity_put(st, &id), UMB_OK);
	assert_int_equal(store_identity_get(st, "zoe", &got), UMB_OK);
	assert_int_equal(got.created, 10);
	assert_int_equal(got.kind, STORE_KIND_CONNECTOR);
	assert_string_equal(got.team, "");
	assert_false(got.break_glass);
	assert_string_equal(got.cert_fp, "");

	/* bytewise order whatever the database's locale: "B" before "a" */
	put_identity(st, "alice", STORE_KIND_CLIENT, "eng");
	put_identity(st, "bob.b@x-1", STORE_KIND_GATEWAY, "");
	put_identity(st, "Bert", STORE_KIND_CLIENT, "");
	assert_int_equal(store_identity_list(st, collect_id_cb, &c), UMB_OK);
	assert_int_equal(c.n, 4);
	assert_string_equal(c.names[0], "Bert");
	assert_string_equal(c.names[1], "alice");
	assert_string_equal(c.names[2], "bob.b@x-1");
	assert_string_equal(c.names[3], "zoe");
	/* a callback's nonzero result stops the listing and is returned */
	c = (struct collect){ .stop_at = 2 };
	assert_int_equal(store_identity_list(st, collect_id_cb, &c), 42);
	assert_int_equal(c.n, 2);

	assert_int_equal(store_identity_get(st, "nobody", &got),
			 STORE_ENOTFOUND);
	assert_non_null(strstr(store_errmsg(st), "nobody"));
	/* revocation is final: a later put is refused */
	assert_int_equal(store_identity_revoke(st, "zoe", 777), UMB_OK);
	assert_int_equal(store_identity_revoke(st, "zoe", 999), UMB_OK);
	assert_int_equal(store_identity_get(st, "zoe", &got), UMB_OK);
	assert_int_equal(got.revoked_at, 777); /* the first time is kept */
	uint64_t r0 = rev(st);
	assert_int_equal(store_identity_put(st, &id), STORE_EREVOKED);
	assert_non_null(strstr(store_errmsg(st), "revoked"));
	assert_int_equal(rev(st), r0); /* rolled back: no bump */
	assert_int_equal(store_identity_get(st, "zoe", &got), UMB_OK);
	assert_int_equal(got.revoked_at, 777);
	assert_int_equal(store_identity_revoke(st, "nobody", 1),
			 STORE_ENOTFOUND);
	store_close(st);
}

static void test_identity_validation(void **state)
{
	struct fx *f = *state;
	struct store *st = fx_open(f);
	struct store_identity id = { .kind = STORE_KIND_CLIENT };
	struct store_identity got;
	const char *bad[] = { "", "a b", "x'y", "semi;colon", "é",
			      "slash/es", "new\nline" };

	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		snprintf(id.name, sizeof(id.name), "%s", bad[i]);
		assert_int_equal(store_identity_put(st, &id), STORE_EINVAL);
		assert_int_equal(store_identity_get(st, bad[i], &got),
				 STORE_EINVAL);
	}
	/* 64 characters is the limit */
	memset(id.name, 'n', STORE_NAME_MAX);
	id.name[STORE_NAME_MAX] = 0;
	assert_int_equal(store_identity_put(st, &id), UMB_OK);
	assert_int_equal(store_identity_get(st, id.name, &got), UMB_OK);
	assert_string_equal(got.name, id.name);
	char longer[STORE_NAME_MAX + 2];
	memset(longer, 'n', STORE_NAME_MAX + 1);
	longer[STORE_NAME_MAX + 1] = 0;
	assert_int_equal(store_identity_get(st, longer, &got), STORE_EINVAL);
	snprintf(id.name, sizeof(id.name), "ok");
	snprintf(id.team, sizeof(id.team), "bad team");
	assert_int_equal(store_identity_put(st, &id), STORE_EINVAL);
	id.team[0] = 0;
	snprintf(id.cert_fp, sizeof(id.cert_fp), "ABCDEF"); /* short, upper */
	assert_int_equal(store_identity_put(st, &id), STORE_EINVAL);
	id.cert_fp[0] = 0;
	id.kind = (enum store_kind)7;
	assert_int_equal(store_identity_put(st, &id), STORE_EINVAL);
	assert_int_equal(rev(st), 1); /* refused puts bump nothing */
	store_close(st);
}

/* ---- keys ---- */

static int count_key_cb(void *ctx, const struct store_key *k)
{
	(void)k;
	(*(int *)ctx)++;
	return 0;
}

static void test_keys(void **state)
{
	struct fx *f = *state;
	struct store *st = fx_open(f);
	struct store_key k = make_key("abcdefgh2345", "alice", 0xab), got;
	int n = 0;

	k.expires = 5000;
	snprintf(k.label, sizeof(k.label), "laptop \"ci\" '; DROP TABLE keys; --");
	/* every byte value survives bytea, NUL included */
	for (int i = 0; i < STORE_HASH_LEN; i++)
		k.secret_hash[i] = (uint8_t)(i * 37 + (i & 1 ? 0xf0 : 0));
	k.secret_hash[3] = 0;
	k.secret_hash[4] = 0xff;
	/* the identity must be registered first */
	assert_int_equal(store_key_create(st, &k), STORE_ENOTFOUND);
	assert_non_null(strstr(store_errmsg(st), "not registered"));
	put_identity(st, "alice", STORE_KIND_CLIENT, "eng");
	put_identity(st, "bob", STORE_KIND_CLIENT, "eng");
	uint64_t r0 = rev(st);
	assert_int_equal(store_key_create(st, &k), UMB_OK);
	assert_int_equal(rev(st), r0 + 1);
	assert_int_equal(store_key_create(st, &k), STORE_EEXISTS);
	assert_non_null(strstr(store_errmsg(st), "exists"));
	assert_int_equal(rev(st), r0 + 1);
	assert_int_equal(store_key_get(st, "abcdefgh2345", &got), UMB_OK);
	assert_string_equal(got.identity, "alice");
	assert_memory_equal(got.secret_hash, k.secret_hash, STORE_HASH_LEN);
	assert_int_equal(got.created, 2000);
	assert_int_equal(got.expires, 5000);
	assert_int_equal(got.revoked_at, 0);
	assert_string_equal(got.label, k.label);
	assert_int_equal(admin_int(f, "SELECT octet_length(secret_hash) FROM keys"), 32);

	struct store_key k2 = make_key("bbbbbbbbbbbb", "alice", 1);
	struct store_key k3 = make_key("cccccccccccc", "bob", 2);
	assert_int_equal(store_key_create(st, &k2), UMB_OK);
	assert_int_equal(store_key_create(st, &k3), UMB_OK);
	assert_int_equal(store_key_list(st, NULL, count_key_cb, &n), UMB_OK);
	assert_int_equal(n, 3);
	n = 0;
	assert_int_equal(store_key_list(st, "alice", count_key_cb, &n), UMB_OK);
	assert_int_equal(n, 2);
	n = 0;
	assert_int_equal(store_key_list(st, "nobody", count_key_cb, &n), 0);
	assert_int_equal(n, 0);

	/* revoke: bumps once, idempotent, unknown ids refused */
	r0 = rev(st);
	assert_int_equal(store_key_revoke(st, "bbbbbbbbbbbb", 3000), UMB_OK);
	assert_int_equal(rev(st), r0 + 1);
	assert_int_equal(store_key_revoke(st, "bbbbbbbbbbbb", 4000), UMB_OK);
	assert_int_equal(rev(st), r0 + 1);
	assert_int_equal(store_key_get(st, "bbbbbbbbbbbb", &got), UMB_OK);
	assert_int_equal(got.revoked_at, 3000);
	assert_int_equal(store_key_revoke(st, "zzzzzzzzzzzz", 1),
			 STORE_ENOTFOUND);
	assert_int_equal(store_key_get(st, "zzzzzzzzzzzz", &got),
			 STORE_ENOTFOUND);

	/* revoking an identity revokes its keys, not anyone else's */
	assert_int_equal(store_identity_revoke(st, "alice", 3500), UMB_OK);
	assert_int_equal(store_key_get(st, "abcdefgh2345", &got), UMB_OK);
	assert_int_equal(got.revoked_at, 3500);
	assert_int_equal(store_key_get(st, "bbbbbbbbbbbb", &got), UMB_OK);
	assert_int_equal(got.revoked_at, 3000);
	assert_int_equal(store_key_get(st, "cccccccccccc", &got), UMB_OK);
	assert_int_equal(got.revoked_at, 0);
	/* and no new key for a revoked identity */
	struct store_key k4 = make_key("dddddddddddd", "alice", 3);
	assert_int_equal(store_key_create(st, &k4), STORE_EREVOKED);
	assert_non_null(strstr(store_errmsg(st), "revoked"));

	/* validation */
	struct store_key bad = make_key("ABCDEFGH2345", "bob", 0);
	assert_int_equal(store_key_create(st, &bad), STORE_EINVAL);
	bad = make_key("abc", "bob", 0);
	assert_int_equal(store_key_create(st, &bad), STORE_EINVAL);
	bad = make_key("abcdefgh2341", "bob", 0); /* '1' is not base32 */
	assert_int_equal(store_key_create(st, &bad), STORE_EINVAL);
	bad = make_key("eeeeeeeeeeee", "bob", 0);
	snprintf(bad.label, sizeof(bad.label), "tab\there");
	assert_int_equal(store_key_create(st, &bad), STORE_EINVAL);
	assert_int_equal(store_key_get(st, "x'; DROP TABLE keys; --", &got),
			 STORE_EINVAL);
	assert_int_equal(store_key_list(st, "bad name", count_key_cb, &n),
			 STORE_EINVAL);
	assert_int_equal(admin_int(f, "SELECT COUNT(*) FROM keys"), 3);
	store_close(st);
}

/* ---- enrollment tokens ---- */

static void test_tokens(void **state)
{
	struct fx *f = *state;
	struct store *a = fx_open(f), *b = fx_open(f);

	assert_int_equal(store_token_mark_used(a, "jti-1", 2000, 1000), UMB_OK);
	/* used twice, through either handle, is refused */
	assert_int_equal(store_token_mark_used(a, "jti-1", 2000, 1001),
			 STORE_EEXISTS);
	assert_int_equal(store_token_mark_used(b, "jti-1", 2000, 1002),
			 STORE_EEXISTS);
	assert_non_null(strstr(store_errmsg(b), "already used"));
	/* expired tokens are refused and never recorded */
	assert_int_equal(store_token_mark_used(a, "jti-2", 1000, 1000),
			 STORE_EEXPIRED);
	assert_int_equal(store_token_mark_used(a, "jti-2", 999, 1000),
			 STORE_EEXPIRED);
	assert_int_equal(store_token_mark_used(a, "jti-2", 3000, 1000), UMB_OK);
	assert_int_equal(admin_int(f, "SELECT COUNT(*) FROM used_tokens"), 2);
	/* once past their expiry, used tokens are forgotten */
	assert_int_equal(store_token_mark_used(b, "jti-3", 9000, 2500), UMB_OK);
	assert_int_equal(admin_int(f, "SELECT COUNT(*) FROM used_tokens"), 2);
	assert_int_equal(store_token_mark_used(a, "", 9000, 1), STORE_EINVAL);
	assert_int_equal(store_token_mark_used(a, "a b", 9000, 1),
			 STORE_EINVAL);
	assert_int_equal(store_token_mark_used(a, NULL, 9000, 1), STORE_EINVAL);
	/* tokens are not revocations: the revision does not move */
	assert_int_equal(rev(a), 0);
	store_close(a);
	store_close(b);
}

/* ---- two handles = two replicas' views; the revision's NOTIFY ---- */

static void test_two_handles(void **state)
{
	struct fx *f = *state;
	struct store *gw = fx_open(f), *cli = fx_open(f);
	struct store_key k = make_key("aaaaaaaaaaaa", "alice", 7), got;
	struct store_identity id;
	uint64_t seen = rev(gw);

	put_identity(cli, "alice", STORE_KIND_CLIENT, "eng");
	assert_true(rev(gw) > seen);
	seen = rev(gw);
	assert_int_equal(store_identity_get(gw, "alice", &id), UMB_OK);

	assert_int_equal(store_key_create(cli, &k), UMB_OK);
	assert_true(rev(gw) > seen);
	seen = rev(gw);
	assert_int_equal(store_key_get(gw, "aaaaaaaaaaaa", &got), UMB_OK);
	assert_int_equal(got.revoked_at, 0);

	/* the gateway polls: nothing changed, nothing to reload */
	assert_int_equal(rev(gw), seen);
	assert_int_equal(store_key_revoke(cli, "aaaaaaaaaaaa", 5), UMB_OK);
	assert_true(rev(gw) > seen);
	assert_int_equal(store_key_get(gw, "aaaaaaaaaaaa", &got), UMB_OK);
	assert_int_equal(got.revoked_at, 5);

	seen = rev(gw);
	assert_int_equal(store_identity_revoke(cli, "alice", 6), UMB_OK);
	assert_true(rev(gw) > seen);
	assert_int_equal(store_identity_get(gw, "alice", &id), UMB_OK);
	assert_int_equal(id.revoked_at, 6);
	/* the revision is the same number seen from both sides */
	assert_int_equal(rev(gw), rev(cli));
	store_close(cli);
	store_close(gw);
}

/* Wait up to 5 s for a notification on the admin session. */
static PGnotify *wait_notify(struct fx *f)
{
	for (int i = 0; i < 500; i++) {
		PGnotify *n;
		assert_int_equal(PQconsumeInput(f->admin), 1);
		if ((n = PQnotifies(f->admin)))
			return n;
		usleep(10000);
	}
	return NULL;
}

static void test_revision_notify(void **state)
{
	struct fx *f = *state;
	struct store *st = fx_open(f);
	struct store_key k = make_key("nnnnnnnnnnnn", "alice", 1);
	char want[32];
	PGnotify *n;

	admin_exec(f, "LISTEN umbra_revision");
	put_identity(st, "alice", STORE_KIND_CLIENT, "");
	assert_int_equal(store_key_create(st, &k), UMB_OK);
	assert_int_equal(store_key_revoke(st, "nnnnnnnnnnnn", 9), UMB_OK);
	/* one notification per commit, carrying the new revision, in order */
	for (uint64_t want_rev = 1; want_rev <= 3; want_rev++) {
		assert_non_null(n = wait_notify(f));
		assert_string_equal(n->relname, "umbra_revision");
		snprintf(want, sizeof(want), "%llu", (unsigned long long)want_rev);
		assert_string_equal(n->extra, want);
		PQfreemem(n);
	}
	/* refused or no-op writes notify nothing */
	assert_int_equal(store_key_revoke(st, "nnnnnnnnnnnn", 10), UMB_OK);
	assert_int_equal(store_token_mark_used(st, "t1", 100, 1), UMB_OK);
	usleep(100000);
	assert_int_equal(PQconsumeInput(f->admin), 1);
	assert_null(PQnotifies(f->admin));
	assert_int_equal(rev(st), 3);
	admin_exec(f, "UNLISTEN *");
	store_close(st);
}

/* ---- two processes writing at once ---- */

#define CONC_N 200

static int create_many(struct fx *f, char tag)
{
	struct store *st = NULL;
	struct store_err err;
	int fails = 0;

	if (store_open(f->url, NULL, &st, &err) != UMB_OK) {
		fprintf(stderr, "child open: %s\n", err.msg);
		return CONC_N;
	}
	for (int i = 0; i < CONC_N; i++) {
		struct store_key k = { .created = i };
		snprintf(k.id, sizeof(k.id), "%c%011d", tag, i);
		for (int j = 1; j < 12; j++) /* digits → base32 letters */
			k.id[j] = (char)('a' + (k.id[j] - '0'));
		snprintf(k.identity, sizeof(k.identity), "%s",
			 tag == 'p' ? "parent" : "child");
		if (store_key_create(st, &k) != UMB_OK) {
			fprintf(stderr, "%c: %s\n", tag, store_errmsg(st));
			fails++;
		}
	}
	store_close(st);
	return fails;
}

static void test_two_processes(void **state)
{
	struct fx *f = *state;
	struct store *st = fx_open(f);
	int status = 0, n = 0;
	pid_t pid;

	put_identity(st, "parent", STORE_KIND_CLIENT, "");
	put_identity(st, "child", STORE_KIND_CLIENT, "");
	store_close(st);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(create_many(f, 'c') == 0 ? 0 : 1);
	assert_int_equal(create_many(f, 'p'), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	st = fx_open(f);
	assert_int_equal(store_key_list(st, NULL, count_key_cb, &n), UMB_OK);
	assert_int_equal(n, 2 * CONC_N);
	/* each creation bumped the revision exactly once */
	assert_int_equal(rev(st), 2 + 2 * CONC_N);
	store_close(st);
}

/* A key created while its identity is being revoked is never left valid:
 * either the creation is refused or the revocation covers the new key. */
struct race_arg {
	struct fx *f;
	int created, refused, errors;
};

static void *create_keys_thread(void *arg)
{
	struct race_arg *ra = arg;
	struct store *st = NULL;
	struct store_err err;

	if (store_open(ra->f->url, NULL, &st, &err) != UMB_OK) {
		ra->errors++;
		return NULL;
	}
	for (int i = 0; i < 400; i++) {
		struct store_key k = { .created = i };
		snprintf(k.id, sizeof(k.id), "r%011d", i);
		for (int j = 1; j < 12; j++)
			k.id[j] = (char)('a' + (k.id[j] - '0'));
		snprintf(k.identity, sizeof(k.identity), "mallory");
		int rc = store_key_create(st, &k);
		if (rc == UMB_OK)
			ra->created++;
		else if (rc == STORE_EREVOKED)
			ra->refused++;
		else
			ra->errors++;
		if (ra->refused > 20)
			break;
	}
	store_close(st);
	return NULL;
}

static void test_revoke_races_key_create(void **state)
{
	struct fx *f = *state;
	struct store *st = fx_open(f);
	struct race_arg ra = { .f = f };
	pthread_t th;
	struct store_key got;
	int live = 0;

	put_identity(st, "mallory", STORE_KIND_CLIENT, "");
	assert_int_equal(pthread_create(&th, NULL, create_keys_thread, &ra), 0);
	/* revoke once the creator is going */
	for (int i = 0; i < 2000 && admin_int(f, "SELECT COUNT(*) FROM keys") < 20; i++)
		usleep(1000);
	assert_int_equal(store_identity_revoke(st, "mallory", 4242), UMB_OK);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(ra.errors, 0);
	assert_true(ra.created >= 20);
	assert_true(ra.refused > 0);
	for (int i = 0; i < ra.created; i++) {
		char id[16];
		snprintf(id, sizeof(id), "r%011d", i);
		for (int j = 1; j < 12; j++)
			id[j] = (char)('a' + (id[j] - '0'));
		assert_int_equal(store_key_get(st, id, &got), UMB_OK);
		if (got.revoked_at == 0)
			live++;
	}
	assert_int_equal(live, 0);
	assert_int_equal(admin_int(f, "SELECT COUNT(*) FROM keys WHERE revoked_at = 0"), 0);
	store_close(st);
}

/* ---- usage rollups ---- */

struct usage_rows {
	struct store_usage r[8];
	int n;
};

static int usage_cb(void *ctx, const struct store_usage *u)
{
	struct usage_rows *c = ctx;
	if (c->n < 8)
		c->r[c->n++] = *u;
	return 0;
}

static struct store_usage urow(const char *day, const char *who, const char *team,
			       const char *model, uint64_t p, uint64_t c, int64_t cost)
{
	struct store_usage u = { .requests = 1, .prompt_tokens = p, .completion_tokens = c,
				 .cost_nusd = cost };
	snprintf(u.day, sizeof u.day, "%s", day);
	snprintf(u.identity, sizeof u.identity, "%s", who);
	snprintf(u.team, sizeof u.team, "%s", team);
	snprintf(u.model, sizeof u.model, "%s", model);
	snprintf(u.provider, sizeof u.provider, "p");
	return u;
}

static void test_usage(void **state)
{
	struct fx *f = *state;
	struct store *st = fx_open(f);
	struct store_usage rows[] = {
		urow("2026-11-01", "alice", "eng", "m", 10, 1, 1000),
		urow("2026-11-01", "alice", "eng", "m", 5, 2, 3),      /* same key: summed */
		urow("2026-11-02", "bob", "ops", "m", 1, 1, 1),
		urow("2026-11-02", "alice", "eng", "n", 7, 7, 4000000000000LL),
	};
	assert_int_equal(store_usage_add(st, rows, 4), UMB_OK);
	assert_int_equal(store_usage_add(st, rows, 1), UMB_OK); /* adds again */
	assert_int_equal(store_usage_add(st, rows, 0), UMB_OK);
	struct usage_rows c = { .n = 0 };
	struct store_usage_query q = { .by = STORE_BY_MODEL };
	assert_int_equal(store_usage_query(st, &q, usage_cb, &c), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.r[0].model, "m");
	assert_int_equal(c.r[0].requests, 4);
	assert_int_equal(c.r[0].prompt_tokens, 26);
	assert_int_equal(c.r[0].completion_tokens, 5);
	assert_int_equal(c.r[0].cost_nusd, 2004);
	assert_int_equal(c.r[1].cost_nusd, 4000000000000LL); /* no rounding */
	c.n = 0;
	q = (struct store_usage_query){ .by = STORE_BY_DAY, .team = "eng", .since = "2026-11-02" };
	assert_int_equal(store_usage_query(st, &q, usage_cb, &c), 0);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.r[0].day, "2026-11-02");
	assert_string_equal(c.r[0].team, "eng");
	assert_int_equal(c.r[0].requests, 1);
	c.n = 0;
	q = (struct store_usage_query){ .by = STORE_BY_IDENTITY, .identity = "nobody" };
	assert_int_equal(store_usage_query(st, &q, usage_cb, &c), 0);
	assert_int_equal(c.n, 0);
	c.n = 0;
	q = (struct store_usage_query){ .by = STORE_BY_TEAM, .team = "" }; /* "" = any */
	assert_int_equal(store_usage_query(st, &q, usage_cb, &c), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.r[0].team, "");
	assert_string_equal(c.r[1].team, "");
	assert_int_equal(c.r[0].requests + c.r[1].requests, 5);
	c.n = 0;
	q = (struct store_usage_query){ .by = STORE_BY_IDENTITY };
	assert_int_equal(store_usage_query(st, &q, usage_cb, &c), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.r[0].identity, "alice");
	assert_int_equal(c.r[0].requests, 4);
	assert_string_equal(c.r[1].identity, "bob");
	store_close(st);
}

/* Two replicas flushing the same rollup rows in opposite orders: no
 * deadlock (rows are written in key order), no lost sum. */
struct usage_arg {
	struct fx *f;
	bool reverse;
	int errors;
};

#define USAGE_ROUNDS 100

static void *usage_thread(void *arg)
{
	struct usage_arg *ua = arg;
	struct store *st = NULL;
	struct store_err err;
	struct store_usage rows[4];
	const char *models[4] = { "a", "b", "c", "d" };

	for (int i = 0; i < 4; i++)
		rows[ua->reverse ? 3 - i : i] =
			urow("2026-12-01", "alice", "eng", models[i], 1, 2, 3);
	if (store_open(ua->f->url, NULL, &st, &err) != UMB_OK) {
		ua->errors = USAGE_ROUNDS;
		return NULL;
	}
	for (int i = 0; i < USAGE_ROUNDS; i++)
		if (store_usage_add(st, rows, 4) != UMB_OK) {
			fprintf(stderr, "usage add: %s\n", store_errmsg(st));
			ua->errors++;
		}
	store_close(st);
	return NULL;
}

static void test_usage_concurrent(void **state)
{
	struct fx *f = *state;
	struct usage_arg ua[2] = { { .f = f }, { .f = f, .reverse = true } };
	pthread_t th[2];

	store_close(fx_open(f)); /* migrate before the race */
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, usage_thread, &ua[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	assert_int_equal(ua[0].errors + ua[1].errors, 0);
	assert_int_equal(admin_int(f, "SELECT COUNT(*) FROM usage"), 4);
	assert_int_equal(admin_int(f, "SELECT MIN(requests) FROM usage"), 2 * USAGE_ROUNDS);
	assert_int_equal(admin_int(f, "SELECT MAX(requests) FROM usage"), 2 * USAGE_ROUNDS);
	assert_int_equal(admin_int(f, "SELECT SUM(cost_nusd) FROM usage"), 4 * 2 * USAGE_ROUNDS * 3);
}

/* ---- quotas ---- */

static void test_quotas(void **state)
{
	struct fx *f = *state;
	struct store *st = fx_open(f);
	int64_t g = -1, u = -1;

	assert_int_equal(store_quota_get(st, "team:eng", 100, &u), UMB_OK);
	assert_int_equal(u, 0); /* no row */
	assert_int_equal(store_quota_take(st, "team:eng", 100, 50, 20, &g, &u), UMB_OK);
	assert_int_equal(g, 20);
	assert_int_equal(u, 20);
	assert_int_equal(store_quota_take(st, "team:eng", 100, 50, 20, &g, &u), UMB_OK);
	assert_int_equal(g, 20);
	assert_int_equal(u, 40);
	/* only what is left under the cap */
	assert_int_equal(store_quota_take(st, "team:eng", 100, 50, 20, &g, &u), UMB_OK);
	assert_int_equal(g, 10);
	assert_int_equal(u, 50);
	/* at the cap: nothing, and where the counter is */
	assert_int_equal(store_quota_take(st, "team:eng", 100, 50, 20, &g, &u), UMB_OK);
	assert_int_equal(g, 0);
	assert_int_equal(u, 50);
	/* a lowered cap below the counter grants nothing, changes nothing */
	assert_int_equal(store_quota_take(st, "team:eng", 100, 30, 5, &g, &u), UMB_OK);
	assert_int_equal(g, 0);
	assert_int_equal(u, 50);
	/* give back; never below 0 */
	assert_int_equal(store_quota_give(st, "team:eng", 100, 15), UMB_OK);
	assert_int_equal(store_quota_get(st, "team:eng", 100, &u), UMB_OK);
	assert_int_equal(u, 35);
	assert_int_equal(store_quota_give(st, "team:eng", 100, 1000), UMB_OK);
	assert_int_equal(store_quota_get(st, "team:eng", 100, &u), UMB_OK);
	assert_int_equal(u, 0);
	assert_int_equal(store_quota_give(st, "team:eng", 100, 0), UMB_OK);
	assert_int_equal(store_quota_give(st, "nothing", 100, 5), UMB_OK);
	assert_int_equal(store_quota_get(st, "nothing", 100, &u), UMB_OK);
	assert_int_equal(u, 0);
	/* want 0 and cap 0 */
	assert_int_equal(store_quota_take(st, "team:eng", 100, 50, 0, &g, &u), UMB_OK);
	assert_int_equal(g, 0);
	assert_int_equal(u, 0);
	assert_int_equal(store_quota_take(st, "zero", 100, 0, 5, &g, &u), UMB_OK);
	assert_int_equal(g, 0);
	assert_int_equal(u, 0);
	/* negative amounts are refused before the backend */
	assert_int_equal(store_quota_take(st, "team:eng", 100, 50, -1, &g, &u), STORE_EINVAL);
	assert_int_equal(store_quota_take(st, "team:eng", 100, -1, 1, &g, &u), STORE_EINVAL);
	/* keys and windows are independent; a new window of a key drops the
	 * key's older ones, not other keys' */
	assert_int_equal(store_quota_take(st, "rpm:alice", 7, 10, 4, &g, &u), UMB_OK);
	assert_int_equal(store_quota_take(st, "team:eng", 101, 50, 9, &g, &u), UMB_OK);
	assert_int_equal(g, 9);
	assert_int_equal(u, 9);
	assert_int_equal(store_quota_get(st, "team:eng", 100, &u), UMB_OK);
	assert_int_equal(u, 0);
	assert_int_equal(admin_int(f, "SELECT COUNT(*) FROM quotas WHERE key = 'team:eng'"), 1);
	assert_int_equal(store_quota_get(st, "rpm:alice", 7, &u), UMB_OK);
	assert_int_equal(u, 4);
	/* nano-USD budgets go far past 32 bits */
	assert_int_equal(store_quota_take(st, "usd:eng", 1, 2000000000000000LL,
					  1500000000000000LL, &g, &u), UMB_OK);
	assert_int_equal(g, 1500000000000000LL);
	assert_int_equal(store_quota_take(st, "usd:eng", 1, 2000000000000000LL,
					  1500000000000000LL, &g, &u), UMB_OK);
	assert_int_equal(g, 500000000000000LL);
	assert_int_equal(u, 2000000000000000LL);
	/* settling past the cap takes with cap INT64_MAX (spend_settle) */
	assert_int_equal(store_quota_take(st, "usd:eng", 1, INT64_MAX, 7, &g, &u), UMB_OK);
	assert_int_equal(g, 7);
	assert_int_equal(u, 2000000000000007LL);
	/* quotas are not revocations */
	assert_int_equal(rev(st), 0);
	store_close(st);
}

/* Takers on one (key, window) from several threads, each with its own
 * handle (= replica): the total granted is exactly the cap. */
#define QUOTA_TAKES 1000
#define QUOTA_WANT 7
#define QUOTA_CAP 5000

struct quota_arg {
	struct fx *f;
	pthread_barrier_t *go;
	int64_t granted, max_used;
	int errors, partial;
};

static void quota_takes(struct store *st, struct quota_arg *qa)
{
	for (int i = 0; i < QUOTA_TAKES; i++) {
		int64_t g = 0, u = 0;
		if (store_quota_take(st, "budget:shared", 42, QUOTA_CAP, QUOTA_WANT,
				     &g, &u) != UMB_OK) {
			fprintf(stderr, "quota take: %s\n", store_errmsg(st));
			qa->errors++;
			continue;
		}
		if (g < 0 || g > QUOTA_WANT || u > QUOTA_CAP)
			qa->errors++;
		if (g > 0 && g < QUOTA_WANT)
			qa->partial++;
		qa->granted += g;
		if (u > qa->max_used)
			qa->max_used = u;
	}
}

static void *quota_thread(void *arg)
{
	struct quota_arg *qa = arg;
	struct store *st = NULL;
	struct store_err err;

	if (store_open(qa->f->url, NULL, &st, &err) != UMB_OK) {
		fprintf(stderr, "thread open: %s\n", err.msg);
		qa->errors = QUOTA_TAKES;
	}
	pthread_barrier_wait(qa->go);
	if (st)
		quota_takes(st, qa);
	store_close(st);
	return NULL;
}

static void test_quota_race_threads(void **state)
{
	struct fx *f = *state;
	struct quota_arg qa[4];
	pthread_t th[4];
	pthread_barrier_t go;
	int64_t total = 0, used = 0;
	int partial = 0;
	struct timespec t0, t1;

	struct store *st = fx_open(f); /* migrate before the race */
	assert_int_equal(pthread_barrier_init(&go, NULL, 4), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 4; i++) {
		qa[i] = (struct quota_arg){ .f = f, .go = &go };
		assert_int_equal(pthread_create(&th[i], NULL, quota_thread, &qa[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(qa[i].errors, 0);
		assert_true(qa[i].max_used <= QUOTA_CAP);
		total += qa[i].granted;
		partial += qa[i].partial;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_barrier_destroy(&go);
	assert_int_equal(store_quota_get(st, "budget:shared", 42, &used), UMB_OK);
	printf("quota race: 4 threads x %d takes of %d, cap %d: granted %lld,"
	       " counter %lld, %d partial grant(s), %.2f s\n",
	       QUOTA_TAKES, QUOTA_WANT, QUOTA_CAP, (long long)total,
	       (long long)used, partial,
	       (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	assert_int_equal(total, QUOTA_CAP);
	assert_int_equal(used, QUOTA_CAP);
	assert_int_equal(partial, QUOTA_CAP % QUOTA_WANT ? 1 : 0);
	store_close(st);
}

/* The same from two processes, with give-backs in the mix: every process
 * takes, gives back a third of some grants, and reports its net. */
static int64_t quota_proc(struct fx *f, int64_t *net)
{
	struct store *st = NULL;
	struct store_err err;
	int errors = 0;

	*net = 0;
	if (store_open(f->url, NULL, &st, &err) != UMB_OK)
		return -1;
	for (int i = 0; i < QUOTA_TAKES; i++) {
		int64_t g = 0, u = 0;
		if (store_quota_take(st, "rpm:shared", 9, 3000, 5, &g, &u) != UMB_OK ||
		    u > 3000) {
			errors++;
			continue;
		}
		*net += g;
		if (g == 5 && i % 3 == 0) {
			if (store_quota_give(st, "rpm:shared", 9, 2) != UMB_OK)
				errors++;
			else
				*net -= 2;
		}
	}
	store_close(st);
	return errors;
}

static void test_quota_race_processes(void **state)
{
	struct fx *f = *state;
	int fds[2], status = 0;
	int64_t mine = 0, theirs = 0, used = 0;
	pid_t pid;

	struct store *st = fx_open(f);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int64_t net;
		int64_t errs = quota_proc(f, &net);
		ssize_t w = write(fds[1], &net, sizeof(net));
		_exit(errs == 0 && w == (ssize_t)sizeof(net) ? 0 : 1);
	}
	close(fds[1]);
	assert_int_equal(quota_proc(f, &mine), 0);
	assert_int_equal(read(fds[0], &theirs, sizeof(theirs)), sizeof(theirs));
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(store_quota_get(st, "rpm:shared", 9, &used), UMB_OK);
	/* the counter is exactly what is held, and never passed the cap */
	assert_int_equal(used, mine + theirs);
	assert_true(used <= 3000);
	/* 2 x 1000 takes of 5 would be 10000 without the cap: it was reached */
	assert_int_equal(used, 3000);
	store_close(st);
}

/* ---- connection handling ---- */

/* Terminate this test's store backends from the admin session and wait
 * until they are gone. */
static void kill_backends(struct fx *f)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
		 " WHERE application_name = '%s' AND pid <> pg_backend_pid()",
		 f->schema);
	assert_true(admin_int(f, sql) >= 1);
	snprintf(sql, sizeof(sql),
		 "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = '%s'"
		 " AND pid <> pg_backend_pid()", f->schema);
	for (int i = 0; i < 500 && admin_int(f, sql) > 0; i++)
		usleep(10000);
	assert_int_equal(admin_int(f, sql), 0);
}

static void test_reconnect(void **state)
{
	struct fx *f = *state;
	struct store *st = fx_open(f);
	struct store_usage row = urow("2026-12-02", "alice", "eng", "m", 1, 1, 1);
	struct usage_rows c = { .n = 0 };
	struct store_usage_query q = { .by = STORE_BY_MODEL };
	int64_t g = 0, u = 0;

	put_identity(st, "alice", STORE_KIND_CLIENT, "");
	assert_int_equal(rev(st), 1);
	/* a read on a connection whose backend was terminated */
	kill_backends(f);
	assert_int_equal(rev(st), 1);
	/* a write that must not run twice: the dead peer is noticed before
	 * anything is sent, so it runs once, on the new connection */
	kill_backends(f);
	assert_int_equal(store_usage_add(st, &row, 1), UMB_OK);
	assert_int_equal(store_usage_query(st, &q, usage_cb, &c), 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.r[0].requests, 1);
	kill_backends(f);
	assert_int_equal(store_quota_take(st, "k", 1, 10, 3, &g, &u), UMB_OK);
	assert_int_equal(g, 3);
	/* one statement and never repeated: only the check before sending
	 * can save it */
	kill_backends(f);
	assert_int_equal(store_quota_give(st, "k", 1, 1), UMB_OK);
	assert_int_equal(store_quota_get(st, "k", 1, &u), UMB_OK);
	assert_int_equal(u, 2);
	kill_backends(f);
	struct store_key k = make_key("kkkkkkkkkkkk", "alice", 5);
	assert_int_equal(store_key_create(st, &k), UMB_OK);
	assert_int_equal(rev(st), 2);
	store_close(st);
}

/* A lock held elsewhere makes a call fail after the statement timeout
 * (5 s) instead of hanging a gateway worker; the handle works after. */
static void test_statement_timeout(void **state)
{
	struct fx *f = *state;
	struct store *st = fx_open(f);
	struct timespec t0, t1;

	put_identity(st, "alice", STORE_KIND_CLIENT, "");
	admin_exec(f, "BEGIN");
	admin_exec(f, "SELECT value FROM revision FOR UPDATE");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(store_identity_revoke(st, "alice", 5), UMB_ERR);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_non_null(strstr(store_errmsg(st), "statement timeout"));
	double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(s >= 4.5 && s < 15);
	admin_exec(f, "ROLLBACK");
	/* rolled back entirely: not revoked, no bump; and usable again */
	struct store_identity id;
	assert_int_equal(store_identity_get(st, "alice", &id), UMB_OK);
	assert_int_equal(id.revoked_at, 0);
	assert_int_equal(rev(st), 1);
	assert_int_equal(store_identity_revoke(st, "alice", 6), UMB_OK);
	assert_int_equal(rev(st), 2);
	store_close(st);
}

int main(void)
{
	pg_base = getenv("UMBRA_TEST_PG_URL");
	if (!pg_base || !*pg_base) {
		printf("skipped: UMBRA_TEST_PG_URL not set\n");
		return 0;
	}
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		T(test_url_and_open_errors),
		T(test_migrations_idempotent),
		T(test_migrate_race),
		T(test_newer_schema_refused),
		T(test_identities),
		T(test_identity_validation),
		T(test_keys),
		T(test_tokens),
		T(test_two_handles),
		T(test_revision_notify),
		T(test_two_processes),
		T(test_revoke_races_key_create),
		T(test_usage),
		T(test_usage_concurrent),
		T(test_quotas),
		T(test_quota_race_threads),
		T(test_quota_race_processes),
		T(test_reconnect),
		T(test_statement_timeout),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
