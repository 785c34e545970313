/* test_store.c — the identity store (store/store.c + store/sqlite.c):
 * URL parsing, schema migrations (idempotent, newer schema refused),
 * identities, keys, one-time enrollment tokens, the revision counter, two
 * handles on one file standing in for two processes, and two real
 * processes writing 200 keys each at the same time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/store.h"

struct fx {
	char dir[64];
	char url[128];
	char path[128];
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/umbra-store-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->url, sizeof(f->url), "sqlite://t.db");
	snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static struct store *fx_open(struct fx *f)
{
	struct store *st = NULL;
	struct store_err err;

	int rc = store_open(f->url, f->dir, &st, &err);
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

/* ---- URL ---- */

static void test_url_parse(void **state)
{
	(void)state;
	char scheme[16], target[256];

	assert_int_equal(store_url_parse("sqlite://umbra.db", "/etc/umbra",
					 scheme, sizeof(scheme), target,
					 sizeof(target)), UMB_OK);
	assert_string_equal(scheme, "sqlite");
	assert_string_equal(target, "/etc/umbra/umbra.db");
	assert_int_equal(store_url_parse("sqlite://data/u.db", "/etc/umbra/",
					 scheme, sizeof(scheme), target,
					 sizeof(target)), UMB_OK);
	assert_string_equal(target, "/etc/umbra/data/u.db");
	assert_int_equal(store_url_parse("sqlite:///var/lib/u.db", "/etc",
					 scheme, sizeof(scheme), target,
					 sizeof(target)), UMB_OK);
	assert_string_equal(target, "/var/lib/u.db");
	assert_int_equal(store_url_parse("sqlite://u.db", NULL, scheme,
					 sizeof(scheme), target,
					 sizeof(target)), UMB_OK);
	assert_string_equal(target, "u.db");
	assert_int_equal(store_url_parse("postgres://u@h/db", "/etc", scheme,
					 sizeof(scheme), target,
					 sizeof(target)), UMB_OK);
	assert_string_equal(scheme, "postgres");
	assert_string_equal(target, "postgres://u@h/db");
	/* junk */
	const char *bad[] = { "", "umbra.db", "sqlite://", "://x",
			      "SQLITE://x", "sq lite://x",
			      "averyveryverylongscheme://x" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++)
		assert_int_equal(store_url_parse(bad[i], "/d", scheme,
						 sizeof(scheme), target,
						 sizeof(target)), UMB_ERR);
	assert_int_equal(store_url_parse(NULL, "/d", scheme, sizeof(scheme),
					 target, sizeof(target)), UMB_ERR);
	/* a target that does not fit is refused, not truncated */
	assert_int_equal(store_url_parse("sqlite://abcdefgh.db", "/d", scheme,
					 sizeof(scheme), target, 8), UMB_ERR);
}

static void test_open_errors(void **state)
{
	struct fx *f = *state;
	struct store *st = (struct store *)1;
	struct store_err err;

	assert_int_equal(store_open("postgres://u@h/db", f->dir, &st, &err),
			 UMB_ERR);
	assert_null(st);
	assert_non_null(strstr(err.msg, "postgres"));
	assert_int_equal(store_open("nourl", f->dir, &st, &err), UMB_ERR);
	assert_non_null(strstr(err.msg, "bad URL"));
	/* a directory that does not exist */
	assert_int_equal(store_open("sqlite:///nonexistent-dir/x/u.db", NULL,
				    &st, &err), UMB_ERR);
	assert_non_null(strstr(err.msg, "/nonexistent-dir/x/u.db"));
	/* a file that is not a database is reported, not overwritten */
	FILE *g = fopen(f->path, "w");
	assert_non_null(g);
	for (int i = 0; i < 512; i++)
		fputs("garbage!", g);
	fclose(g);
	assert_int_equal(store_open(f->url, f->dir, &st, &err), UMB_ERR);
	assert_null(st);
	assert_non_null(strstr(err.msg, "not a database"));
	store_close(NULL);
}

/* ---- migrations ---- */

static int count_rows(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	int n = -1;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
	if (sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return n;
}

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
	/* every migration applied exactly once: versions 1..N, N rows */
	assert_int_equal(count_rows(f->path, "SELECT COUNT(*) = MAX(version)"
					     " AND MIN(version) = 1 FROM schema_version"), 1);
	assert_int_equal(count_rows(f->path, "SELECT COUNT(*) FROM revision"),
			 1);
	/* WAL is persistent in the file */
	sqlite3 *db;
	sqlite3_stmt *q;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q,
					    NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
	sqlite3_finalize(q);
	sqlite3_close(db);
}

static void test_newer_schema_refused(void **state)
{
	struct fx *f = *state;
	struct store *st = fx_open(f);
	struct store_err err;
	sqlite3 *db;

	store_close(st);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "INSERT INTO schema_version"
					  " VALUES (99, 0)",
				      NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	st = NULL;
	assert_int_equal(store_open(f->url, f->dir, &st, &err), UMB_ERR);
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

	put_identity(st, "alice", STORE_KIND_CLIENT, "eng");
	put_identity(st, "bob.b@x-1", STORE_KIND_GATEWAY, "");
	assert_int_equal(store_identity_list(st, collect_id_cb, &c), UMB_OK);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.names[0], "alice");
	assert_string_equal(c.names[1], "bob.b@x-1");
	assert_string_equal(c.names[2], "zoe");
	/* a callback's nonzero result stops the listing and is returned */
	c = (struct collect){ .stop_at = 2 };
	assert_int_equal(store_identity_list(st, collect_id_cb, &c), 42);
	assert_int_equal(c.n, 2);

	assert_int_equal(store_identity_get(st, "nobody", &got),
			 STORE_ENOTFOUND);
	/* revocation is final: a later put is refused */
	assert_int_equal(store_identity_revoke(st, "zoe", 777), UMB_OK);
	assert_int_equal(store_identity_revoke(st, "zoe", 999), UMB_OK);
	assert_int_equal(store_identity_get(st, "zoe", &got), UMB_OK);
	assert_int_equal(got.revoked_at, 777); /* the first time is kept */
	assert_int_equal(store_identity_put(st, &id), STORE_EREVOKED);
	assert_non_null(strstr(store_errmsg(st), "revoked"));
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

	enum store_kind k;
	assert_int_equal(store_kind_parse("connector", &k), UMB_OK);
	assert_int_equal(k, STORE_KIND_CONNECTOR);
	assert_string_equal(store_kind_name(STORE_KIND_ADMIN), "admin");
	assert_int_equal(store_kind_parse("root", &k), UMB_ERR);
	assert_int_equal(store_kind_parse(NULL, &k), UMB_ERR);
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
	snprintf(k.label, sizeof(k.label), "laptop \"ci\"");
	/* the identity must be registered first */
	assert_int_equal(store_key_create(st, &k), STORE_ENOTFOUND);
	assert_non_null(strstr(store_errmsg(st), "not registered"));
	put_identity(st, "alice", STORE_KIND_CLIENT, "eng");
	put_identity(st, "bob", STORE_KIND_CLIENT, "eng");
	uint64_t r0 = rev(st);
	assert_int_equal(store_key_create(st, &k), UMB_OK);
	assert_int_equal(rev(st), r0 + 1);
	assert_int_equal(store_key_create(st, &k), STORE_EEXISTS);
	assert_int_equal(rev(st), r0 + 1);
	assert_int_equal(store_key_get(st, "abcdefgh2345", &got), UMB_OK);
	assert_string_equal(got.identity, "alice");
	assert_memory_equal(got.secret_hash, k.secret_hash, STORE_HASH_LEN);
	assert_int_equal(got.created, 2000);
	assert_int_equal(got.expires, 5000);
	assert_int_equal(got.revoked_at, 0);
	assert_string_equal(got.label, "laptop \"ci\"");

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
	assert_int_equal(count_rows(f->path, "SELECT COUNT(*) FROM"
					     " used_tokens"), 2);
	/* once past their expiry, used tokens are forgotten */
	assert_int_equal(store_token_mark_used(b, "jti-3", 9000, 2500), UMB_OK);
	assert_int_equal(count_rows(f->path, "SELECT COUNT(*) FROM"
					     " used_tokens"), 2);
	assert_int_equal(store_token_mark_used(a, "", 9000, 1), STORE_EINVAL);
	assert_int_equal(store_token_mark_used(a, "a b", 9000, 1),
			 STORE_EINVAL);
	assert_int_equal(store_token_mark_used(a, NULL, 9000, 1), STORE_EINVAL);
	/* tokens are not revocations: the revision does not move */
	assert_int_equal(rev(a), 0);
	store_close(a);
	store_close(b);
}

/* ---- two handles = two processes' views ---- */

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

/* ---- two processes writing at once ---- */

#define CONC_N 200

static int create_many(struct fx *f, char tag)
{
	struct store *st = NULL;
	struct store_err err;
	int fails = 0;

	if (store_open(f->url, f->dir, &st, &err) != UMB_OK) {
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

/* two processes opening a brand-new file race on its migration */
static void test_two_processes_migrate(void **state)
{
	struct fx *f = *state;
	int status = 0;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *st = NULL;
		struct store_err err;
		int rc = store_open(f->url, f->dir, &st, &err);
		store_close(st);
		_exit(rc == UMB_OK ? 0 : 1);
	}
	struct store *st = fx_open(f);
	store_close(st);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(count_rows(f->path, "SELECT COUNT(*) = MAX(version)"
					     " FROM schema_version"), 1); /* each migration once */
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
	struct usage_rows c = { .n = 0 };
	struct store_usage_query q = { .by = STORE_BY_MODEL };
	assert_int_equal(store_usage_query(st, &q, usage_cb, &c), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.r[0].model, "m");
	assert_int_equal(c.r[0].requests, 4);
	assert_int_equal(c.r[0].prompt_tokens, 26);
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
	store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_parse),
		cmocka_unit_test_setup_teardown(test_open_errors, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_migrations_idempotent,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_newer_schema_refused,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_identities, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_identity_validation,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_keys, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_tokens, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_two_handles, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_two_processes, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_two_processes_migrate,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_usage, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
