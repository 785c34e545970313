/* sqlite.c — the embedded store backend (the default: `sqlite://PATH`).
 *
 * Several processes share one file (the gateway's workers and the CLI), so:
 * - WAL journal: readers never block the writer and see a consistent
 *   snapshot; a busy timeout absorbs short writer queues.
 * - every write is one `BEGIN IMMEDIATE` transaction: it takes the write
 *   lock up front, so two writers never deadlock upgrading a read lock
 *   (which the busy handler cannot resolve), and each check-then-write
 *   (is the identity revoked? is the token used?) is atomic across
 *   processes.
 * - every creation and revocation bumps `revision` in the same
 *   transaction; store_revision() is one primary-key read.
 * - a statement is reset as soon as its rows are read, so no handle keeps
 *   an old read snapshot open between calls (it would hide revocations).
 *
 * The schema is versioned: `schema_version` records each applied
 * migration; opening applies the missing ones in one write transaction,
 * and a database newer than this build is refused rather than misread. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

#define SQ_BUSY_TIMEOUT_MS 10000

/* Migration N is sq_migrations[N - 1]; append only, never edit. */
static const char *const sq_migrations[] = {
	/* 1: identities, keys, used enrollment tokens, revision counter */
	"CREATE TABLE identities ("
	" name TEXT PRIMARY KEY,"
	" kind TEXT NOT NULL CHECK (kind IN"
	"  ('client','connector','gateway','admin')),"
	" team TEXT NOT NULL DEFAULT '',"
	" created INTEGER NOT NULL,"
	" expires INTEGER NOT NULL DEFAULT 0,"
	" revoked_at INTEGER NOT NULL DEFAULT 0,"
	" break_glass INTEGER NOT NULL DEFAULT 0,"
	" cert_fp TEXT NOT NULL DEFAULT '');"
	"CREATE TABLE keys ("
	" id TEXT PRIMARY KEY,"
	" identity TEXT NOT NULL REFERENCES identities(name),"
	" secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),"
	" created INTEGER NOT NULL,"
	" expires INTEGER NOT NULL DEFAULT 0,"
	" revoked_at INTEGER NOT NULL DEFAULT 0,"
	" label TEXT NOT NULL DEFAULT '');"
	"CREATE INDEX keys_identity ON keys(identity);"
	"CREATE TABLE used_tokens ("
	" jti TEXT PRIMARY KEY,"
	" expires INTEGER NOT NULL);"
	"CREATE INDEX used_tokens_expires ON used_tokens(expires);"
	"CREATE TABLE revision ("
	" id INTEGER PRIMARY KEY CHECK (id = 1),"
	" value INTEGER NOT NULL);"
	"INSERT INTO revision (id, value) VALUES (1, 0);",
	/* 2: usage rollups per day, identity, team, model and provider */
	"CREATE TABLE usage ("
	" day TEXT NOT NULL,"
	" identity TEXT NOT NULL,"
	" team TEXT NOT NULL,"
	" model TEXT NOT NULL,"
	" provider TEXT NOT NULL,"
	" requests INTEGER NOT NULL,"
	" prompt_tokens INTEGER NOT NULL,"
	" completion_tokens INTEGER NOT NULL,"
	" cost_nusd INTEGER NOT NULL,"
	" PRIMARY KEY (day, identity, team, model, provider));"
	"CREATE INDEX usage_team_day ON usage(team, day);",
	/* 3: quotas (budget and rate-limit leases) per key and window */
	"CREATE TABLE quotas ("
	" key TEXT NOT NULL,"
	" win INTEGER NOT NULL,"
	" used INTEGER NOT NULL,"
	" PRIMARY KEY (key, win));",
};
#define SQ_SCHEMA_VERSION ((int)UMB_ARRAY_LEN(sq_migrations))

/* Cached statements, prepared on first use. */
enum sq_stmt_id {
	SQ_BEGIN,
	SQ_COMMIT,
	SQ_ROLLBACK,
	SQ_BUMP,
	SQ_REVISION,
	SQ_ID_STATUS,
	SQ_ID_UPSERT,
	SQ_ID_GET,
	SQ_ID_LIST,
	SQ_ID_REVOKE,
	SQ_ID_REVOKE_KEYS,
	SQ_KEY_INSERT,
	SQ_KEY_GET,
	SQ_KEY_LIST,
	SQ_KEY_LIST_ID,
	SQ_KEY_REVOKE,
	SQ_USAGE_ADD,
	SQ_QUOTA_GET,
	SQ_QUOTA_SET,
	SQ_QUOTA_PRUNE,
	SQ_KEY_EXISTS,
	SQ_TOK_PRUNE,
	SQ_TOK_INSERT,
	SQ_NSTMT
};

#define SQ_ID_COLS "name, kind, team, created, expires, revoked_at, " \
		   "break_glass, cert_fp"
#define SQ_KEY_COLS "id, identity, secret_hash, created, expires, " \
		    "revoked_at, label"

static const char *const sq_sql[SQ_NSTMT] = {
	[SQ_BEGIN] = "BEGIN IMMEDIATE",
	[SQ_COMMIT] = "COMMIT",
	[SQ_ROLLBACK] = "ROLLBACK",
	[SQ_BUMP] = "UPDATE revision SET value = value + 1 WHERE id = 1",
	[SQ_REVISION] = "SELECT value FROM revision WHERE id = 1",
	[SQ_ID_STATUS] = "SELECT revoked_at FROM identities WHERE name = ?1",
	[SQ_ID_UPSERT] =
		"INSERT INTO identities (" SQ_ID_COLS ")"
		" VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)"
		" ON CONFLICT (name) DO UPDATE SET kind = excluded.kind,"
		" team = excluded.team, expires = excluded.expires,"
		" break_glass = excluded.break_glass,"
		" cert_fp = excluded.cert_fp",
	[SQ_ID_GET] = "SELECT " SQ_ID_COLS " FROM identities WHERE name = ?1",
	[SQ_ID_LIST] = "SELECT " SQ_ID_COLS " FROM identities ORDER BY name",
	[SQ_ID_REVOKE] = "UPDATE identities SET revoked_at = ?2"
			 " WHERE name = ?1 AND revoked_at = 0",
	[SQ_ID_REVOKE_KEYS] = "UPDATE keys SET revoked_at = ?2"
			      " WHERE identity = ?1 AND revoked_at = 0",
	[SQ_KEY_INSERT] = "INSERT INTO keys (" SQ_KEY_COLS ")"
			  " VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
	[SQ_KEY_GET] = "SELECT " SQ_KEY_COLS " FROM keys WHERE id = ?1",
	[SQ_KEY_LIST] = "SELECT " SQ_KEY_COLS " FROM keys"
			" ORDER BY created, id",
	[SQ_KEY_LIST_ID] = "SELECT " SQ_KEY_COLS " FROM keys"
			   " WHERE identity = ?1 ORDER BY created, id",
	[SQ_KEY_REVOKE] = "UPDATE keys SET revoked_at = ?2"
			  " WHERE id = ?1 AND revoked_at = 0",
	[SQ_KEY_EXISTS] = "SELECT 1 FROM keys WHERE id = ?1",
	[SQ_QUOTA_GET] = "SELECT used FROM quotas WHERE key = ?1 AND win = ?2",
	[SQ_QUOTA_SET] = "INSERT INTO quotas (key, win, used) VALUES (?1, ?2, ?3)"
			 " ON CONFLICT (key, win) DO UPDATE SET used = excluded.used",
	[SQ_QUOTA_PRUNE] = "DELETE FROM quotas WHERE key = ?1 AND win < ?2",
	[SQ_USAGE_ADD] = "INSERT INTO usage (day, identity, team, model, provider, requests,"
			 " prompt_tokens, completion_tokens, cost_nusd)"
			 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
			 " ON CONFLICT (day, identity, team, model, provider) DO UPDATE SET"
			 " requests = requests + excluded.requests,"
			 " prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
			 " completion_tokens = completion_tokens + excluded.completion_tokens,"
			 " cost_nusd = cost_nusd + excluded.cost_nusd",
	[SQ_TOK_PRUNE] = "DELETE FROM used_tokens WHERE expires <= ?1",
	[SQ_TOK_INSERT] = "INSERT INTO used_tokens (jti, expires)"
			  " VALUES (?1, ?2)",
};

struct sq {
	sqlite3 *db;
	sqlite3_stmt *stmt[SQ_NSTMT];
};

static struct sq *sq__of(struct store *st)
{
	return st->impl;
}

static int sq__fail(struct store *st, const char *what)
{
	struct sq *s = sq__of(st);

	store__set_err(st, "%s: %s", what,
		       s && s->db ? sqlite3_errmsg(s->db) : "no database");
	return UMB_ERR;
}

/* The cached statement `id`, reset and unbound, ready to bind; NULL after
 * recording the error. */
static sqlite3_stmt *sq__stmt(struct store *st, enum sq_stmt_id id)
{
	struct sq *s = sq__of(st);

	if (!s->stmt[id]) {
		if (sqlite3_prepare_v3(s->db, sq_sql[id], -1,
				       SQLITE_PREPARE_PERSISTENT, &s->stmt[id],
				       NULL) != SQLITE_OK) {
			sq__fail(st, "prepare");
			return NULL;
		}
	}
	sqlite3_reset(s->stmt[id]);
	sqlite3_clear_bindings(s->stmt[id]);
	return s->stmt[id];
}

/* Run a statement that returns no rows (or whose rows are ignored). */
static int sq__exec_stmt(struct store *st, sqlite3_stmt *q, const char *what)
{
	int rc;

	if (!q)
		return UMB_ERR;
	rc = sqlite3_step(q);
	sqlite3_reset(q);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return sq__fail(st, what);
	return UMB_OK;
}

static int sq__simple(struct store *st, enum sq_stmt_id id, const char *what)
{
	return sq__exec_stmt(st, sq__stmt(st, id), what);
}

static int sq__begin(struct store *st)
{
	return sq__simple(st, SQ_BEGIN, "begin");
}

static int sq__commit(struct store *st)
{
	return sq__simple(st, SQ_COMMIT, "commit");
}

/* Roll back if a transaction is open; never fails the caller twice. */
static void sq__rollback(struct store *st)
{
	if (!sqlite3_get_autocommit(sq__of(st)->db))
		(void)sq__exec_stmt(st, sq__stmt(st, SQ_ROLLBACK), "rollback");
}

static int sq__bump(struct store *st)
{
	return sq__simple(st, SQ_BUMP, "revision");
}

static void sq__copy_text(char *dst, size_t size, sqlite3_stmt *q, int col)
{
	const unsigned char *t = sqlite3_column_text(q, col);

	snprintf(dst, size, "%s", t ? (const char *)t : "");
}

static void sq__row_identity(sqlite3_stmt *q, struct store_identity *out)
{
	char kind[16];

	memset(out, 0, sizeof(*out));
	sq__copy_text(out->name, sizeof(out->name), q, 0);
	sq__copy_text(kind, sizeof(kind), q, 1);
	if (store_kind_parse(kind, &out->kind) != UMB_OK)
		out->kind = STORE_KIND_CLIENT; /* CHECK constraint forbids it */
	sq__copy_text(out->team, sizeof(out->team), q, 2);
	out->created = sqlite3_column_int64(q, 3);
	out->expires = sqlite3_column_int64(q, 4);
	out->revoked_at = sqlite3_column_int64(q, 5);
	out->break_glass = sqlite3_column_int(q, 6) != 0;
	sq__copy_text(out->cert_fp, sizeof(out->cert_fp), q, 7);
}

static void sq__row_key(sqlite3_stmt *q, struct store_key *out)
{
	const void *h;

	memset(out, 0, sizeof(*out));
	sq__copy_text(out->id, sizeof(out->id), q, 0);
	sq__copy_text(out->identity, sizeof(out->identity), q, 1);
	h = sqlite3_column_blob(q, 2);
	if (h && sqlite3_column_bytes(q, 2) == STORE_HASH_LEN)
		memcpy(out->secret_hash, h, STORE_HASH_LEN);
	out->created = sqlite3_column_int64(q, 3);
	out->expires = sqlite3_column_int64(q, 4);
	out->revoked_at = sqlite3_column_int64(q, 5);
	sq__copy_text(out->label, sizeof(out->label), q, 6);
}

/* ---- open, migrations, close ---- */

/* Highest applied migration, or 0 on a fresh file. Read outside any write
 * transaction so an up-to-date database is opened without the write lock. */
static int sq__schema_version(struct store *st, int *out)
{
	sqlite3 *db = sq__of(st)->db;
	sqlite3_stmt *q = NULL;
	int rc = UMB_ERR, step;

	*out = 0;
	if (sqlite3_prepare_v2(db,
			       "SELECT name FROM sqlite_master WHERE type ="
			       " 'table' AND name = 'schema_version'",
			       -1, &q, NULL) != SQLITE_OK)
		goto fail;
	step = sqlite3_step(q);
	if (step == SQLITE_DONE) {
		rc = UMB_OK;
		goto out;
	}
	if (step != SQLITE_ROW)
		goto fail;
	sqlite3_finalize(q);
	q = NULL;
	if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0)"
				   " FROM schema_version",
			       -1, &q, NULL) != SQLITE_OK ||
	    sqlite3_step(q) != SQLITE_ROW)
		goto fail;
	*out = sqlite3_column_int(q, 0);
	rc = UMB_OK;
	goto out;
fail:
	sq__fail(st, "schema version");
out:
	sqlite3_finalize(q);
	return rc;
}

static int sq__exec(struct store *st, const char *sql, const char *what)
{
	if (sqlite3_exec(sq__of(st)->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return sq__fail(st, what);
	return UMB_OK;
}

/* Apply missing migrations. Two processes may race here on a new file:
 * the version is read again under the write lock, so each migration runs
 * exactly once. */
static int sq__migrate(struct store *st)
{
	int v, rc = UMB_ERR;
	char sql[96];

	if (sq__schema_version(st, &v) != UMB_OK)
		return UMB_ERR;
	if (v == SQ_SCHEMA_VERSION)
		return UMB_OK;
	if (sq__exec(st, "BEGIN IMMEDIATE", "begin migration") != UMB_OK)
		return UMB_ERR;
	if (sq__exec(st, "CREATE TABLE IF NOT EXISTS schema_version ("
			 " version INTEGER PRIMARY KEY,"
			 " applied INTEGER NOT NULL)",
		     "schema_version") != UMB_OK ||
	    sq__schema_version(st, &v) != UMB_OK)
		goto out;
	if (v > SQ_SCHEMA_VERSION) {
		store__set_err(st, "schema version %d is newer than this build"
				   " (%d): upgrade umbra",
			       v, SQ_SCHEMA_VERSION);
		goto out;
	}
	for (; v < SQ_SCHEMA_VERSION; v++) {
		if (sq__exec(st, sq_migrations[v], "migration") != UMB_OK)
			goto out;
		snprintf(sql, sizeof(sql),
			 "INSERT INTO schema_version VALUES (%d, %lld)", v + 1,
			 (long long)time(NULL));
		if (sq__exec(st, sql, "schema_version") != UMB_OK)
			goto out;
	}
	if (sq__exec(st, "COMMIT", "commit migration") != UMB_OK)
		goto out;
	rc = UMB_OK;
out:
	if (rc != UMB_OK && !sqlite3_get_autocommit(sq__of(st)->db))
		sqlite3_exec(sq__of(st)->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* Switching to WAL needs a moment of exclusive access; a concurrent
 * opener can make it report busy even with a busy handler, so retry. */
static int sq__wal(struct store *st)
{
	sqlite3 *db = sq__of(st)->db;
	int rc = SQLITE_BUSY;

	for (int i = 0; i < 200 && rc != SQLITE_OK; i++) {
		rc = sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL,
				  NULL);
		if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
			usleep(10000);
		else if (rc != SQLITE_OK)
			break;
	}
	if (rc != SQLITE_OK)
		return sq__fail(st, "journal_mode");
	return UMB_OK;
}

static void sq_close(struct store *st)
{
	struct sq *s = sq__of(st);

	if (!s)
		return;
	for (int i = 0; i < SQ_NSTMT; i++)
		sqlite3_finalize(s->stmt[i]);
	sqlite3_close(s->db);
	free(s);
	st->impl = NULL;
}

static int sq_open(struct store *st, const char *path)
{
	struct sq *s = umb_calloc(1, sizeof(*s));
	int rc = UMB_ERR;

	st->impl = s;
	if (sqlite3_open_v2(path, &s->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				    SQLITE_OPEN_EXRESCODE,
			    NULL) != SQLITE_OK) {
		sq__fail(st, "open");
		goto out;
	}
	sqlite3_busy_timeout(s->db, SQ_BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(s->db, 1);
	if (sq__wal(st) != UMB_OK ||
	    /* FULL: a revocation that returned must survive a power cut */
	    sq__exec(st, "PRAGMA synchronous = FULL", "synchronous") ||
	    sq__exec(st, "PRAGMA foreign_keys = ON", "foreign_keys") ||
	    sq__migrate(st) != UMB_OK)
		goto out;
	rc = UMB_OK;
out:
	if (rc != UMB_OK)
		sq_close(st);
	return rc;
}

/* ---- identities ---- */

/* Under an open transaction: STORE_ENOTFOUND, STORE_EREVOKED or OK. */
static int sq__identity_status(struct store *st, const char *name)
{
	sqlite3_stmt *q = sq__stmt(st, SQ_ID_STATUS);
	int rc, step;

	if (!q)
		return UMB_ERR;
	sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
	step = sqlite3_step(q);
	if (step == SQLITE_ROW)
		rc = sqlite3_column_int64(q, 0) != 0 ? STORE_EREVOKED : UMB_OK;
	else if (step == SQLITE_DONE)
		rc = STORE_ENOTFOUND;
	else
		rc = sq__fail(st, "identity status");
	sqlite3_reset(q);
	return rc;
}

static int sq_identity_put(struct store *st, const struct store_identity *id)
{
	sqlite3_stmt *q;
	int rc = sq__begin(st);

	if (rc != UMB_OK)
		goto out;
	rc = sq__identity_status(st, id->name);
	if (rc == STORE_EREVOKED) {
		store__set_err(st, "identity \"%s\" is revoked", id->name);
		goto out;
	}
	if (rc != UMB_OK && rc != STORE_ENOTFOUND)
		goto out;
	rc = UMB_ERR;
	if (!(q = sq__stmt(st, SQ_ID_UPSERT)))
		goto out;
	sqlite3_bind_text(q, 1, id->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, store_kind_name(id->kind), -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, id->team, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, id->created);
	sqlite3_bind_int64(q, 5, id->expires);
	sqlite3_bind_int(q, 6, id->break_glass ? 1 : 0);
	sqlite3_bind_text(q, 7, id->cert_fp, -1, SQLITE_STATIC);
	if (sq__exec_stmt(st, q, "identity put") != UMB_OK ||
	    sq__bump(st) != UMB_OK || sq__commit(st) != UMB_OK)
		goto out;
	rc = UMB_OK;
out:
	if (rc != UMB_OK)
		sq__rollback(st);
	return rc;
}

/* Fetch the one row a primary key names with statement `sid`, decoded by
 * `row` into `out`; STORE_ENOTFOUND (naming `what`) when there is none. */
static int sq__get_one(struct store *st, enum sq_stmt_id sid, const char *key,
		       const char *what, void (*row)(sqlite3_stmt *q, void *out), void *out)
{
	sqlite3_stmt *q = sq__stmt(st, sid);
	int rc, step;

	if (!q)
		return UMB_ERR;
	sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
	step = sqlite3_step(q);
	if (step == SQLITE_ROW) {
		row(q, out);
		rc = UMB_OK;
	} else if (step == SQLITE_DONE) {
		store__set_err(st, "no %s \"%s\"", what, key);
		rc = STORE_ENOTFOUND;
	} else {
		rc = sq__fail(st, what);
	}
	sqlite3_reset(q);
	return rc;
}

static void sq__row_identity_cb(sqlite3_stmt *q, void *out)
{
	sq__row_identity(q, out);
}

static void sq__row_key_cb(sqlite3_stmt *q, void *out)
{
	sq__row_key(q, out);
}

static int sq_identity_get(struct store *st, const char *name,
			   struct store_identity *out)
{
	return sq__get_one(st, SQ_ID_GET, name, "identity", sq__row_identity_cb, out);
}

static int sq_identity_list(struct store *st, store_identity_cb cb, void *ctx)
{
	sqlite3_stmt *q = sq__stmt(st, SQ_ID_LIST);
	struct store_identity id;
	int rc = UMB_OK, step;

	if (!q)
		return UMB_ERR;
	while ((step = sqlite3_step(q)) == SQLITE_ROW) {
		sq__row_identity(q, &id);
		if ((rc = cb(ctx, &id)) != 0)
			break;
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = sq__fail(st, "identity list");
	sqlite3_reset(q);
	return rc;
}

/* Revoke the row matched by `upd` (name/id in ?1, time in ?2); idempotent.
 * `extra`, if any, runs with the same bindings in the same transaction. */
static int sq__revoke(struct store *st, enum sq_stmt_id upd,
		      enum sq_stmt_id extra, enum sq_stmt_id exists,
		      const char *key, int64_t now, const char *what)
{
	sqlite3_stmt *q;
	int rc = sq__begin(st), changed, step;

	if (rc != UMB_OK)
		goto out;
	rc = UMB_ERR;
	if (!(q = sq__stmt(st, upd)))
		goto out;
	sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, now);
	if (sq__exec_stmt(st, q, what) != UMB_OK)
		goto out;
	changed = sqlite3_changes(sq__of(st)->db);
	if (changed == 0) {
		/* already revoked, or absent */
		if (!(q = sq__stmt(st, exists)))
			goto out;
		sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
		step = sqlite3_step(q);
		sqlite3_reset(q);
		if (step == SQLITE_DONE) {
			store__set_err(st, "no %s \"%s\"", what, key);
			rc = STORE_ENOTFOUND;
			goto out;
		}
		if (step != SQLITE_ROW) {
			sq__fail(st, what);
			goto out;
		}
	} else {
		if (extra != SQ_NSTMT) {
			if (!(q = sq__stmt(st, extra)))
				goto out;
			sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
			sqlite3_bind_int64(q, 2, now);
			if (sq__exec_stmt(st, q, what) != UMB_OK)
				goto out;
		}
		if (sq__bump(st) != UMB_OK)
			goto out;
	}
	if (sq__commit(st) != UMB_OK)
		goto out;
	rc = UMB_OK;
out:
	if (rc != UMB_OK)
		sq__rollback(st);
	return rc;
}

static int sq_identity_revoke(struct store *st, const char *name, int64_t now)
{
	/* its keys are revoked with it, so `key list` tells the truth */
	return sq__revoke(st, SQ_ID_REVOKE, SQ_ID_REVOKE_KEYS, SQ_ID_STATUS,
			  name, now, "identity");
}

/* ---- keys ---- */

static int sq_key_create(struct store *st, const struct store_key *key)
{
	sqlite3_stmt *q;
	int rc = sq__begin(st), step;

	if (rc != UMB_OK)
		goto out;
	rc = sq__identity_status(st, key->identity);
	if (rc == STORE_ENOTFOUND || rc == STORE_EREVOKED) {
		store__set_err(st, "identity \"%s\" is %s", key->identity,
			       rc == STORE_ENOTFOUND ? "not registered"
						     : "revoked");
		goto out;
	}
	if (rc != UMB_OK)
		goto out;
	rc = UMB_ERR;
	if (!(q = sq__stmt(st, SQ_KEY_INSERT)))
		goto out;
	sqlite3_bind_text(q, 1, key->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, key->identity, -1, SQLITE_STATIC);
	sqlite3_bind_blob(q, 3, key->secret_hash, STORE_HASH_LEN,
			  SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, key->created);
	sqlite3_bind_int64(q, 5, key->expires);
	sqlite3_bind_text(q, 6, key->label, -1, SQLITE_STATIC);
	step = sqlite3_step(q);
	sqlite3_reset(q);
	if (step == SQLITE_CONSTRAINT_PRIMARYKEY) {
		store__set_err(st, "key id \"%s\" exists", key->id);
		rc = STORE_EEXISTS;
		goto out;
	}
	if (step != SQLITE_DONE) {
		sq__fail(st, "key create");
		goto out;
	}
	if (sq__bump(st) != UMB_OK || sq__commit(st) != UMB_OK)
		goto out;
	rc = UMB_OK;
out:
	if (rc != UMB_OK)
		sq__rollback(st);
	return rc;
}

static int sq_key_get(struct store *st, const char *id, struct store_key *out)
{
	return sq__get_one(st, SQ_KEY_GET, id, "key", sq__row_key_cb, out);
}

static int sq_key_list(struct store *st, const char *identity,
		       store_key_cb cb, void *ctx)
{
	sqlite3_stmt *q = sq__stmt(st, identity ? SQ_KEY_LIST_ID : SQ_KEY_LIST);
	struct store_key key;
	int rc = UMB_OK, step;

	if (!q)
		return UMB_ERR;
	if (identity)
		sqlite3_bind_text(q, 1, identity, -1, SQLITE_STATIC);
	while ((step = sqlite3_step(q)) == SQLITE_ROW) {
		sq__row_key(q, &key);
		if ((rc = cb(ctx, &key)) != 0)
			break;
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = sq__fail(st, "key list");
	sqlite3_reset(q);
	return rc;
}

static int sq_key_revoke(struct store *st, const char *id, int64_t now)
{
	return sq__revoke(st, SQ_KEY_REVOKE, SQ_NSTMT, SQ_KEY_EXISTS, id, now,
			  "key");
}

/* ---- enrollment tokens, revision ---- */

static int sq_token_mark_used(struct store *st, const char *jti,
			      int64_t expires, int64_t now)
{
	sqlite3_stmt *q;
	int rc, step;

	if (expires <= now) {
		store__set_err(st, "token \"%s\" has expired", jti);
		return STORE_EEXPIRED;
	}
	if ((rc = sq__begin(st)) != UMB_OK)
		goto out;
	rc = UMB_ERR;
	if (!(q = sq__stmt(st, SQ_TOK_PRUNE)))
		goto out;
	sqlite3_bind_int64(q, 1, now);
	if (sq__exec_stmt(st, q, "token prune") != UMB_OK)
		goto out;
	if (!(q = sq__stmt(st, SQ_TOK_INSERT)))
		goto out;
	sqlite3_bind_text(q, 1, jti, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, expires);
	step = sqlite3_step(q);
	sqlite3_reset(q);
	if (step == SQLITE_CONSTRAINT_PRIMARYKEY) {
		store__set_err(st, "token \"%s\" was already used", jti);
		rc = STORE_EEXISTS;
		goto out;
	}
	if (step != SQLITE_DONE) {
		sq__fail(st, "token mark");
		goto out;
	}
	if (sq__commit(st) != UMB_OK)
		goto out;
	rc = UMB_OK;
out:
	if (rc != UMB_OK)
		sq__rollback(st);
	return rc;
}

static int sq_revision(struct store *st, uint64_t *out)
{
	sqlite3_stmt *q = sq__stmt(st, SQ_REVISION);
	int rc = UMB_ERR;

	if (!q)
		return UMB_ERR;
	if (sqlite3_step(q) == SQLITE_ROW) {
		*out = (uint64_t)sqlite3_column_int64(q, 0);
		rc = UMB_OK;
	} else {
		sq__fail(st, "revision");
	}
	sqlite3_reset(q);
	return rc;
}

/* ---- usage rollups ---- */

static int sq_usage_add(struct store *st, const struct store_usage *rows, size_t n)
{
	int rc;
	if ((rc = sq__begin(st)) != UMB_OK)
		return rc;
	for (size_t i = 0; i < n; i++) {
		const struct store_usage *u = &rows[i];
		sqlite3_stmt *q = sq__stmt(st, SQ_USAGE_ADD);
		if (!q) {
			rc = UMB_ERR;
			break;
		}
		sqlite3_bind_text(q, 1, u->day, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, u->identity, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 3, u->team, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 4, u->model, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 5, u->provider, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 6, (sqlite3_int64)u->requests);
		sqlite3_bind_int64(q, 7, (sqlite3_int64)u->prompt_tokens);
		sqlite3_bind_int64(q, 8, (sqlite3_int64)u->completion_tokens);
		sqlite3_bind_int64(q, 9, u->cost_nusd);
		if ((rc = sq__exec_stmt(st, q, "usage add")) != UMB_OK)
			break;
	}
	if (rc == UMB_OK)
		rc = sq__commit(st);
	if (rc != UMB_OK)
		sq__rollback(st);
	return rc;
}

/* ---- quotas ---- */

static int sq__quota_read(struct store *st, const char *key, int64_t window, int64_t *used)
{
	sqlite3_stmt *q = sq__stmt(st, SQ_QUOTA_GET);
	if (!q)
		return UMB_ERR;
	sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, window);
	int step = sqlite3_step(q);
	*used = step == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
	sqlite3_reset(q);
	return step == SQLITE_ROW || step == SQLITE_DONE ? UMB_OK : sq__fail(st, "quota read");
}

static int sq__quota_write(struct store *st, const char *key, int64_t window, int64_t used)
{
	sqlite3_stmt *q = sq__stmt(st, SQ_QUOTA_SET);
	if (!q)
		return UMB_ERR;
	sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, window);
	sqlite3_bind_int64(q, 3, used);
	return sq__exec_stmt(st, q, "quota write");
}

/* Read, decide and write under BEGIN IMMEDIATE: atomic across processes.
 * Older windows of the key are dropped on the way (periods that ended). */
static int sq_quota_take(struct store *st, const char *key, int64_t window, int64_t cap,
			 int64_t want, int64_t *granted, int64_t *used)
{
	int64_t u;
	int rc = sq__begin(st);
	if (rc != UMB_OK)
		return rc;
	sqlite3_stmt *q = sq__stmt(st, SQ_QUOTA_PRUNE);
	if (!q) {
		rc = UMB_ERR;
		goto out;
	}
	sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, window);
	if ((rc = sq__exec_stmt(st, q, "quota prune")) || (rc = sq__quota_read(st, key, window, &u)))
		goto out;
	int64_t g = u >= cap ? 0 : UMB_MIN(want, cap - u);
	if (g > 0 && (rc = sq__quota_write(st, key, window, u + g)))
		goto out;
	if ((rc = sq__commit(st)))
		goto out;
	*granted = g;
	*used = u + g;
out:
	if (rc != UMB_OK)
		sq__rollback(st);
	return rc;
}

static int sq_quota_give(struct store *st, const char *key, int64_t window, int64_t amount)
{
	int64_t u;
	int rc = sq__begin(st);
	if (rc != UMB_OK)
		return rc;
	if (!(rc = sq__quota_read(st, key, window, &u)) &&
	    !(rc = sq__quota_write(st, key, window, u > amount ? u - amount : 0)))
		rc = sq__commit(st);
	if (rc != UMB_OK)
		sq__rollback(st);
	return rc;
}

static int sq_quota_get(struct store *st, const char *key, int64_t window, int64_t *used)
{
	return sq__quota_read(st, key, window, used);
}

/* The grouped column for each STORE_BY_*; the SQL is built from these
 * fixed names only, the filters are bound. */
static const char *const sq_usage_col[] = { "model", "day", "identity", "team" };

static int sq_usage_query(struct store *st, const struct store_usage_query *uq,
			  store_usage_cb cb, void *ctx)
{
	char sql[512];
	const char *col = sq_usage_col[uq->by];
	snprintf(sql, sizeof sql,
		 "SELECT %s, sum(requests), sum(prompt_tokens), sum(completion_tokens),"
		 " sum(cost_nusd) FROM usage"
		 " WHERE (?1 IS NULL OR team = ?1) AND (?2 IS NULL OR identity = ?2)"
		 " AND (?3 IS NULL OR day >= ?3) GROUP BY %s ORDER BY %s",
		 col, col, col);
	sqlite3_stmt *q;
	if (sqlite3_prepare_v2(sq__of(st)->db, sql, -1, &q, NULL) != SQLITE_OK)
		return sq__fail(st, "usage query");
	const char *f[3] = { uq->team, uq->identity, uq->since };
	for (int i = 0; i < 3; i++)
		if (f[i] && *f[i])
			sqlite3_bind_text(q, i + 1, f[i], -1, SQLITE_STATIC);
	int rc = 0, step;
	while ((step = sqlite3_step(q)) == SQLITE_ROW) {
		struct store_usage row;
		memset(&row, 0, sizeof row);
		char *dst = uq->by == STORE_BY_MODEL ? row.model
			: uq->by == STORE_BY_DAY ? row.day
			: uq->by == STORE_BY_IDENTITY ? row.identity : row.team;
		size_t cap = uq->by == STORE_BY_MODEL ? sizeof row.model
			: uq->by == STORE_BY_DAY ? sizeof row.day
			: uq->by == STORE_BY_IDENTITY ? sizeof row.identity : sizeof row.team;
		sq__copy_text(dst, cap, q, 0);
		if (uq->team)
			snprintf(row.team, sizeof row.team, "%s", uq->team);
		if (uq->identity)
			snprintf(row.identity, sizeof row.identity, "%s", uq->identity);
		row.requests = (uint64_t)sqlite3_column_int64(q, 1);
		row.prompt_tokens = (uint64_t)sqlite3_column_int64(q, 2);
		row.completion_tokens = (uint64_t)sqlite3_column_int64(q, 3);
		row.cost_nusd = sqlite3_column_int64(q, 4);
		if ((rc = cb(ctx, &row)) != 0)
			break;
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = sq__fail(st, "usage query");
	sqlite3_finalize(q);
	return rc;
}

const struct store_ops store_sqlite_ops = {
	.scheme = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.identity_put = sq_identity_put,
	.identity_get = sq_identity_get,
	.identity_list = sq_identity_list,
	.identity_revoke = sq_identity_revoke,
	.key_create = sq_key_create,
	.key_get = sq_key_get,
	.key_list = sq_key_list,
	.key_revoke = sq_key_revoke,
	.token_mark_used = sq_token_mark_used,
	.revision = sq_revision,
	.usage_add = sq_usage_add,
	.usage_query = sq_usage_query,
	.quota_take = sq_quota_take,
	.quota_give = sq_quota_give,
	.quota_get = sq_quota_get,
};
