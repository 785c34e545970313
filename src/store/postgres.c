/* postgres.c — the shared store backend (`postgres://user@host/db`, also
 * `postgresql://`): several gateway replicas and the CLI share identities,
 * keys, enrollment tokens, the revision, usage rollups and quotas.
 *
 * Same contract as sqlite.c (store.h), with PostgreSQL's tools:
 * - one PGconn per handle (a handle is used by one thread at a time);
 *   `statement_timeout` 5 s so a stuck lock never hangs a worker; every
 *   statement is prepared once per connection (PQprepare on first use)
 *   and run with bound parameters: no value is ever spliced into SQL.
 * - a broken connection is re-established once (PQreset) before a call
 *   fails: checked before the call (PQconsumeInput notices a peer that has
 *   gone), and after a failure the call runs again if a second run is
 *   harmless (reads, idempotent writes) or nothing but BEGIN was sent.
 * - READ COMMITTED transactions. Where sqlite's BEGIN IMMEDIATE serialised
 *   every check-then-write, here rows are locked: a key creation holds its
 *   identity FOR SHARE, so a concurrent revocation either waits and then
 *   revokes the new key too (its UPDATE of the keys runs as a later
 *   statement, with a fresh snapshot) or wins and the creation sees it.
 * - every creation and revocation bumps `revision` in its transaction and
 *   NOTIFYs `umbra_revision` (payload: the new value), delivered at commit.
 * - quota_take is one INSERT .. ON CONFLICT DO UPDATE .. WHERE used < cap:
 *   the row lock makes concurrent takes from any replica serialise on the
 *   counter, which can never pass the cap.
 *
 * Schema: versioned like sqlite's (`schema_version`), migrated at open in
 * one transaction under pg_advisory_xact_lock so replicas starting at once
 * migrate exactly once; a database newer than this build is refused.
 * Text columns use the "C" collation so listings sort bytewise, as sqlite
 * does, whatever the database's locale. Times are bigint unix seconds. */
#if defined(__has_include)
#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h> /* Debian: /usr/include/postgresql */
#endif
#else
#include <libpq-fe.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store.h"

/* Per session: a stuck lock fails the call after 5 s instead of hanging
 * a worker; bytea comes back as hex whatever the server's default. */
#define PG_SESSION_SQL "SET statement_timeout = 5000; SET bytea_output = 'hex'"
#define PG_CONNECT_TIMEOUT_S "10" /* unless the URL says otherwise */

/* Migration N is pg_migrations[N - 1]; append only, never edit. The
 * numbering follows sqlite.c's so both backends name the same steps. */
static const char *const pg_migrations[] = {
	/* 1: identities, keys, used enrollment tokens, revision counter */
	"CREATE TABLE identities ("
	" name text COLLATE \"C\" PRIMARY KEY,"
	" kind text NOT NULL CHECK (kind IN"
	"  ('client','connector','gateway','admin')),"
	" team text COLLATE \"C\" NOT NULL DEFAULT '',"
	" created bigint NOT NULL,"
	" expires bigint NOT NULL DEFAULT 0,"
	" revoked_at bigint NOT NULL DEFAULT 0,"
	" break_glass boolean NOT NULL DEFAULT false,"
	" cert_fp text NOT NULL DEFAULT '');"
	"CREATE TABLE keys ("
	" id text COLLATE \"C\" PRIMARY KEY,"
	" identity text COLLATE \"C\" NOT NULL REFERENCES identities(name),"
	" secret_hash bytea NOT NULL CHECK (octet_length(secret_hash) = 32),"
	" created bigint NOT NULL,"
	" expires bigint NOT NULL DEFAULT 0,"
	" revoked_at bigint NOT NULL DEFAULT 0,"
	" label text NOT NULL DEFAULT '');"
	"CREATE INDEX keys_identity ON keys(identity);"
	"CREATE TABLE used_tokens ("
	" jti text PRIMARY KEY,"
	" expires bigint NOT NULL);"
	"CREATE INDEX used_tokens_expires ON used_tokens(expires);"
	"CREATE TABLE revision ("
	" id integer PRIMARY KEY CHECK (id = 1),"
	" value bigint NOT NULL);"
	"INSERT INTO revision (id, value) VALUES (1, 0);",
	/* 2: usage rollups per day, identity, team, model and provider */
	"CREATE TABLE usage ("
	" day text COLLATE \"C\" NOT NULL,"
	" identity text COLLATE \"C\" NOT NULL,"
	" team text COLLATE \"C\" NOT NULL,"
	" model text COLLATE \"C\" NOT NULL,"
	" provider text COLLATE \"C\" NOT NULL,"
	" requests bigint NOT NULL,"
	" prompt_tokens bigint NOT NULL,"
	" completion_tokens bigint NOT NULL,"
	" cost_nusd bigint NOT NULL,"
	" PRIMARY KEY (day, identity, team, model, provider));"
	"CREATE INDEX usage_team_day ON usage(team, day);",
	/* 3: quotas per key and window; `granted` is what the latest take
	 * added, so one statement can both take and report it */
	"CREATE TABLE quotas ("
	" key text COLLATE \"C\" NOT NULL,"
	" win bigint NOT NULL,"
	" used bigint NOT NULL,"
	" granted bigint NOT NULL DEFAULT 0,"
	" PRIMARY KEY (key, win));",
};
#define PG_SCHEMA_VERSION ((int)UMB_ARRAY_LEN(pg_migrations))

/* Statements, prepared per connection on first use as "umbra_<id>". */
enum pg_stmt_id {
	PG_BUMP,
	PG_REVISION,
	PG_ID_UPSERT,
	PG_ID_LOCK,
	PG_ID_EXISTS,
	PG_ID_GET,
	PG_ID_LIST,
	PG_ID_REVOKE,
	PG_ID_REVOKE_KEYS,
	PG_KEY_INSERT,
	PG_KEY_EXISTS,
	PG_KEY_GET,
	PG_KEY_LIST,
	PG_KEY_LIST_ID,
	PG_KEY_REVOKE,
	PG_TOK_PRUNE,
	PG_TOK_INSERT,
	PG_USAGE_ADD,
	PG_USAGE_BY_MODEL, /* the four groupings, in enum store_usage_by order */
	PG_USAGE_BY_DAY,
	PG_USAGE_BY_IDENTITY,
	PG_USAGE_BY_TEAM,
	PG_QUOTA_TAKE,
	PG_QUOTA_GIVE,
	PG_QUOTA_GET,
	PG_NSTMT
};

#define PG_ID_COLS "name, kind, team, created, expires, revoked_at, " \
		   "break_glass, cert_fp"
#define PG_KEY_COLS "id, identity, secret_hash, created, expires, " \
		    "revoked_at, label"
/* Sums per group; the column is a fixed name, the filters are bound. */
#define PG_USAGE_BY(col)                                                     \
	"SELECT " col ", sum(requests)::bigint, sum(prompt_tokens)::bigint,"  \
	" sum(completion_tokens)::bigint, sum(cost_nusd)::bigint FROM usage"  \
	" WHERE ($1::text IS NULL OR team = $1::text)"                        \
	" AND ($2::text IS NULL OR identity = $2::text)"                      \
	" AND ($3::text IS NULL OR day >= $3::text)"                          \
	" GROUP BY " col " ORDER BY " col

static const char *const pg_sql[PG_NSTMT] = {
	/* the NOTIFY is queued in the transaction, sent at its commit */
	[PG_BUMP] = "WITH b AS (UPDATE revision SET value = value + 1"
		    " WHERE id = 1 RETURNING value)"
		    " SELECT pg_notify('umbra_revision', value::text) FROM b",
	[PG_REVISION] = "SELECT value FROM revision WHERE id = 1",
	/* no row back: the name exists and is revoked (the WHERE is checked
	 * on the locked, latest version of the row) */
	[PG_ID_UPSERT] =
		"INSERT INTO identities AS i (" PG_ID_COLS ")"
		" VALUES ($1, $2, $3, $4::bigint, $5::bigint, 0, $6::boolean, $7)"
		" ON CONFLICT (name) DO UPDATE SET kind = excluded.kind,"
		" team = excluded.team, expires = excluded.expires,"
		" break_glass = excluded.break_glass, cert_fp = excluded.cert_fp"
		" WHERE i.revoked_at = 0 RETURNING 1",
	[PG_ID_LOCK] = "SELECT revoked_at FROM identities WHERE name = $1"
		       " FOR SHARE",
	[PG_ID_EXISTS] = "SELECT 1 FROM identities WHERE name = $1",
	[PG_ID_GET] = "SELECT " PG_ID_COLS " FROM identities WHERE name = $1",
	[PG_ID_LIST] = "SELECT " PG_ID_COLS " FROM identities ORDER BY name",
	[PG_ID_REVOKE] = "UPDATE identities SET revoked_at = $2::bigint"
			 " WHERE name = $1 AND revoked_at = 0",
	[PG_ID_REVOKE_KEYS] = "UPDATE keys SET revoked_at = $2::bigint"
			      " WHERE identity = $1 AND revoked_at = 0",
	[PG_KEY_INSERT] = "INSERT INTO keys (" PG_KEY_COLS ")"
			  " VALUES ($1, $2, $3::bytea, $4::bigint, $5::bigint, 0, $6)"
			  " ON CONFLICT (id) DO NOTHING RETURNING 1",
	[PG_KEY_EXISTS] = "SELECT 1 FROM keys WHERE id = $1",
	[PG_KEY_GET] = "SELECT " PG_KEY_COLS " FROM keys WHERE id = $1",
	[PG_KEY_LIST] = "SELECT " PG_KEY_COLS " FROM keys ORDER BY created, id",
	[PG_KEY_LIST_ID] = "SELECT " PG_KEY_COLS " FROM keys"
			   " WHERE identity = $1 ORDER BY created, id",
	[PG_KEY_REVOKE] = "UPDATE keys SET revoked_at = $2::bigint"
			  " WHERE id = $1 AND revoked_at = 0",
	[PG_TOK_PRUNE] = "DELETE FROM used_tokens WHERE expires <= $1::bigint",
	[PG_TOK_INSERT] = "INSERT INTO used_tokens (jti, expires)"
			  " VALUES ($1, $2::bigint)"
			  " ON CONFLICT (jti) DO NOTHING RETURNING 1",
	[PG_USAGE_ADD] =
		"INSERT INTO usage AS u (day, identity, team, model, provider,"
		" requests, prompt_tokens, completion_tokens, cost_nusd)"
		" VALUES ($1, $2, $3, $4, $5, $6::bigint, $7::bigint, $8::bigint,"
		" $9::bigint)"
		" ON CONFLICT (day, identity, team, model, provider) DO UPDATE SET"
		" requests = u.requests + excluded.requests,"
		" prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,"
		" completion_tokens = u.completion_tokens + excluded.completion_tokens,"
		" cost_nusd = u.cost_nusd + excluded.cost_nusd",
	[PG_USAGE_BY_MODEL] = PG_USAGE_BY("model"),
	[PG_USAGE_BY_DAY] = PG_USAGE_BY("day"),
	[PG_USAGE_BY_IDENTITY] = PG_USAGE_BY("identity"),
	[PG_USAGE_BY_TEAM] = PG_USAGE_BY("team"),
	/* $1 key, $2 window, $3 cap, $4 want. One statement: the upsert locks
	 * the (key, window) row, so concurrent takers queue on it and each
	 * sees the previous one's `used`. The SET expressions read the old
	 * row. No row back: the cap was already reached. Older windows of the
	 * key (periods that ended) are deleted by the CTE on the way. */
	[PG_QUOTA_TAKE] =
		"WITH old AS (DELETE FROM quotas WHERE key = $1 AND win < $2::bigint)"
		" INSERT INTO quotas AS q (key, win, used, granted)"
		" VALUES ($1, $2::bigint, LEAST($4::bigint, $3::bigint),"
		" LEAST($4::bigint, $3::bigint))"
		" ON CONFLICT (key, win) DO UPDATE"
		" SET used = q.used + LEAST($4::bigint, $3::bigint - q.used),"
		" granted = LEAST($4::bigint, $3::bigint - q.used)"
		" WHERE q.used < $3::bigint RETURNING used, granted",
	[PG_QUOTA_GIVE] = "UPDATE quotas SET used = GREATEST(used - $3::bigint, 0)"
			  " WHERE key = $1 AND win = $2::bigint",
	[PG_QUOTA_GET] = "SELECT used FROM quotas WHERE key = $1"
			 " AND win = $2::bigint",
};

struct pg {
	PGconn *conn;
	bool prepared[PG_NSTMT]; /* on this connection (cleared by a reset) */
	unsigned sent;           /* statements past BEGIN run by this attempt */
};

static struct pg *pg__of(struct store *st)
{
	return st->impl;
}

/* ---- errors ---- */

/* Length of a libpq message without its trailing newline(s). */
static int pg__msglen(const char *m)
{
	size_t n = strlen(m);

	while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
		n--;
	return (int)UMB_MIN(n, 4096);
}

/* Record `what: <server or libpq message>` (without libpq's newline). */
static int pg__fail(struct store *st, const char *what, const PGresult *r)
{
	struct pg *p = pg__of(st);
	const char *m = r ? PQresultErrorMessage(r) : "";

	if (!*m)
		m = p && p->conn ? PQerrorMessage(p->conn) : "no connection";
	store__set_err(st, "%s: %.*s", what, pg__msglen(m), m);
	return UMB_ERR;
}

/* ---- bound parameters ---- */

#define PG_MAXP 9

/** Parameters for one statement; numbers are formatted into `num`. */
struct pg_args {
	const char *val[PG_MAXP];
	int len[PG_MAXP], fmt[PG_MAXP];
	char num[PG_MAXP][24];
	int n;
};

static void pg__arg(struct pg_args *a, const char *v, int len, int fmt)
{
	UMB_BUG_ON(a->n >= PG_MAXP);
	a->val[a->n] = v;
	a->len[a->n] = len;
	a->fmt[a->n] = fmt;
	a->n++;
}

/* A text value; NULL binds SQL NULL. */
static void pg__text(struct pg_args *a, const char *s)
{
	pg__arg(a, s, 0, 0);
}

static void pg__i64(struct pg_args *a, int64_t v)
{
	snprintf(a->num[a->n], sizeof(a->num[0]), "%lld", (long long)v);
	pg__arg(a, a->num[a->n], 0, 0);
}

/* Raw bytes, sent in binary format (bytea). */
static void pg__bytes(struct pg_args *a, const void *b, int len)
{
	pg__arg(a, b, len, 1);
}

/* ---- the connection ---- */

/* Server notices and asynchronous errors (a FATAL before a disconnect)
 * go to our log, not libpq's default of raw lines on stderr. */
static void pg__notice_cb(void *arg, const char *msg)
{
	(void)arg;
	log_debug("store: postgres: %.*s", pg__msglen(msg), msg);
}

/* What every new (or reset) connection needs before its first statement.
 * Constant SQL, no values. */
static int pg__session(struct store *st)
{
	struct pg *p = pg__of(st);
	PGresult *r = PQexec(p->conn, PG_SESSION_SQL);
	int rc = UMB_OK;

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		rc = pg__fail(st, "session setup", r);
	PQclear(r);
	memset(p->prepared, 0, sizeof(p->prepared));
	return rc;
}

/* Re-establish a broken connection, once: prepared statements and session
 * settings died with the old server session and are made again. */
static int pg__reconnect(struct store *st)
{
	struct pg *p = pg__of(st);
	const char *m = PQerrorMessage(p->conn);

	log_warn("store: postgres connection lost (%.*s): reconnecting",
		 (int)strcspn(m, "\n"), m); /* its first line */
	PQreset(p->conn);
	if (PQstatus(p->conn) != CONNECTION_OK)
		return pg__fail(st, "reconnect", NULL);
	return pg__session(st);
}

/* Before a call: notice a peer that went away while we were idle (server
 * restart, terminated backend: its FATAL and EOF are already in our socket)
 * without sending anything, and reconnect then, when no work is at risk. */
static int pg__enter(struct store *st)
{
	struct pg *p = pg__of(st);

	p->sent = 0;
	if (PQstatus(p->conn) == CONNECTION_OK) {
		/* twice: the first read may stop at a FATAL message, the
		 * second meets the EOF behind it */
		if (PQconsumeInput(p->conn))
			(void)PQconsumeInput(p->conn);
		(void)PQisBusy(p->conn); /* parses what was read */
	}
	if (PQstatus(p->conn) == CONNECTION_BAD)
		return pg__reconnect(st);
	return UMB_OK;
}

/* After a failed attempt: true (reconnected, run it again) when the
 * connection broke under it and a second run cannot do harm — the call is
 * `idempotent`, or nothing but BEGIN reached the server. */
static bool pg__retry(struct store *st, int rc, bool idempotent)
{
	struct pg *p = pg__of(st);

	if (rc != UMB_ERR || PQstatus(p->conn) != CONNECTION_BAD)
		return false;
	if (!idempotent && p->sent > 0)
		return false;
	if (pg__reconnect(st) != UMB_OK)
		return false;
	p->sent = 0;
	return true;
}

/* Run `call` (an expression giving the op's result) into `rc` with the
 * connection checked first and at most one reconnect-and-retry. */
#define PG_RUN(st, rc, idempotent, call)                                     \
	do {                                                                 \
		(rc) = pg__enter(st);                                        \
		if ((rc) == UMB_OK) {                                        \
			(rc) = (call);                                       \
			if (pg__retry((st), (rc), (idempotent)))             \
				(rc) = (call);                               \
		}                                                            \
	} while (0)

/* Run statement `id` with `a` (NULL: none), preparing it on this
 * connection first if needed. Returns the result (the caller PQclear()s
 * it) or NULL after recording the error as `what`. */
static PGresult *pg__exec(struct store *st, enum pg_stmt_id id,
			  const struct pg_args *a, const char *what)
{
	struct pg *p = pg__of(st);
	char name[24];
	PGresult *r;
	ExecStatusType s;

	snprintf(name, sizeof(name), "umbra_%d", (int)id);
	if (!p->prepared[id]) {
		r = PQprepare(p->conn, name, pg_sql[id], 0, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			pg__fail(st, what, r);
			PQclear(r);
			return NULL;
		}
		PQclear(r);
		p->prepared[id] = true;
	}
	p->sent++;
	r = PQexecPrepared(p->conn, name, a ? a->n : 0, a ? a->val : NULL,
			   a ? a->len : NULL, a ? a->fmt : NULL, 0);
	s = PQresultStatus(r);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		pg__fail(st, what, r);
		PQclear(r);
		return NULL;
	}
	return r;
}

/* Run a statement whose rows are not needed; *ntuples (if asked) gets how
 * many rows it returned. */
static int pg__run(struct store *st, enum pg_stmt_id id,
		   const struct pg_args *a, const char *what, int *ntuples)
{
	PGresult *r = pg__exec(st, id, a, what);

	if (!r)
		return UMB_ERR;
	if (ntuples)
		*ntuples = PQntuples(r);
	PQclear(r);
	return UMB_OK;
}

/* BEGIN / COMMIT / ROLLBACK: constant SQL, no values. */
static int pg__cmd(struct store *st, const char *sql, const char *tag)
{
	PGresult *r = PQexec(pg__of(st)->conn, sql);
	int rc = UMB_OK;

	/* COMMIT of a failed transaction "succeeds" with the tag ROLLBACK */
	if (PQresultStatus(r) != PGRES_COMMAND_OK ||
	    strcmp(PQcmdStatus(r), tag) != 0)
		rc = pg__fail(st, sql, r);
	PQclear(r);
	return rc;
}

static int pg__begin(struct store *st)
{
	return pg__cmd(st, "BEGIN", "BEGIN");
}

static int pg__commit(struct store *st)
{
	return pg__cmd(st, "COMMIT", "COMMIT");
}

/* Roll back if a transaction is open; keeps the first error's message. */
static void pg__rollback(struct store *st)
{
	PGconn *c = pg__of(st)->conn;
	PGTransactionStatusType t = PQtransactionStatus(c);

	if (t == PQTRANS_INTRANS || t == PQTRANS_INERROR)
		PQclear(PQexec(c, "ROLLBACK"));
}

static int pg__bump(struct store *st)
{
	return pg__run(st, PG_BUMP, NULL, "revision", NULL);
}

/* ---- rows ---- */

static void pg__copy(char *dst, size_t size, const PGresult *r, int row, int col)
{
	snprintf(dst, size, "%s", PQgetvalue(r, row, col));
}

static int64_t pg__int(const PGresult *r, int row, int col)
{
	return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int pg__hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* bytea in text form is "\x" and two hex digits a byte (the default
 * bytea_output); the CHECK constraint guarantees 32 bytes. */
static void pg__hash(uint8_t *out, const PGresult *r, int row, int col)
{
	const char *v = PQgetvalue(r, row, col);

	if (strlen(v) != 2 + 2 * STORE_HASH_LEN || v[0] != '\\' || v[1] != 'x')
		return;
	for (int i = 0; i < STORE_HASH_LEN; i++) {
		int hi = pg__hexval(v[2 + 2 * i]), lo = pg__hexval(v[3 + 2 * i]);
		if (hi < 0 || lo < 0)
			return;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
}

static void pg__row_identity(const PGresult *r, int i, struct store_identity *out)
{
	char kind[16];

	memset(out, 0, sizeof(*out));
	pg__copy(out->name, sizeof(out->name), r, i, 0);
	pg__copy(kind, sizeof(kind), r, i, 1);
	if (store_kind_parse(kind, &out->kind) != UMB_OK)
		out->kind = STORE_KIND_CLIENT; /* the CHECK constraint forbids it */
	pg__copy(out->team, sizeof(out->team), r, i, 2);
	out->created = pg__int(r, i, 3);
	out->expires = pg__int(r, i, 4);
	out->revoked_at = pg__int(r, i, 5);
	out->break_glass = PQgetvalue(r, i, 6)[0] == 't';
	pg__copy(out->cert_fp, sizeof(out->cert_fp), r, i, 7);
}

static void pg__row_key(const PGresult *r, int i, struct store_key *out)
{
	memset(out, 0, sizeof(*out));
	pg__copy(out->id, sizeof(out->id), r, i, 0);
	pg__copy(out->identity, sizeof(out->identity), r, i, 1);
	pg__hash(out->secret_hash, r, i, 2);
	out->created = pg__int(r, i, 3);
	out->expires = pg__int(r, i, 4);
	out->revoked_at = pg__int(r, i, 5);
	pg__copy(out->label, sizeof(out->label), r, i, 6);
}

/* ---- open, migrations, close ---- */

/* Highest applied migration, 0 on a fresh database. */
static int pg__schema_version(struct store *st, int *out)
{
	PGconn *c = pg__of(st)->conn;
	PGresult *r;
	bool exists;

	*out = 0;
	r = PQexec(c, "SELECT to_regclass('schema_version') IS NOT NULL");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		pg__fail(st, "schema version", r);
		PQclear(r);
		return UMB_ERR;
	}
	exists = PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	if (!exists)
		return UMB_OK;
	r = PQexec(c, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		pg__fail(st, "schema version", r);
		PQclear(r);
		return UMB_ERR;
	}
	*out = (int)pg__int(r, 0, 0);
	PQclear(r);
	return UMB_OK;
}

/* Run constant SQL (a migration: several statements, no values). */
static int pg__exec_sql(struct store *st, const char *sql, const char *what)
{
	PGresult *r = PQexec(pg__of(st)->conn, sql);
	int rc = UMB_OK;

	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		rc = pg__fail(st, what, r);
	PQclear(r);
	return rc;
}

/* Apply missing migrations. Replicas opening a new database at once queue
 * on a transaction-scoped advisory lock (keyed by the schema, so separate
 * schemas in one database do not wait on each other) and read the version
 * again under it, so each migration runs exactly once. An up-to-date
 * database is opened with two reads and no lock. */
static int pg__migrate(struct store *st)
{
	PGconn *c = pg__of(st)->conn;
	int v, rc = UMB_ERR;

	if (pg__schema_version(st, &v) != UMB_OK)
		return UMB_ERR;
	if (v == PG_SCHEMA_VERSION)
		return UMB_OK;
	if (pg__begin(st) != UMB_OK)
		return UMB_ERR;
	if (pg__exec_sql(st, "SELECT pg_advisory_xact_lock(hashtext('umbra.store'),"
			     " hashtext(COALESCE(current_schema(), '')))",
			 "migration lock") != UMB_OK ||
	    pg__exec_sql(st, "CREATE TABLE IF NOT EXISTS schema_version ("
			     " version integer PRIMARY KEY,"
			     " applied bigint NOT NULL)",
			 "schema_version") != UMB_OK ||
	    pg__schema_version(st, &v) != UMB_OK)
		goto out;
	if (v > PG_SCHEMA_VERSION) {
		store__set_err(st, "schema version %d is newer than this build"
				   " (%d): upgrade umbra",
			       v, PG_SCHEMA_VERSION);
		goto out;
	}
	for (; v < PG_SCHEMA_VERSION; v++) {
		struct pg_args a = { .n = 0 };
		PGresult *r;

		if (pg__exec_sql(st, pg_migrations[v], "migration") != UMB_OK)
			goto out;
		pg__i64(&a, v + 1);
		pg__i64(&a, (int64_t)time(NULL));
		r = PQexecParams(c, "INSERT INTO schema_version (version, applied)"
				    " VALUES ($1::integer, $2::bigint)",
				 a.n, NULL, a.val, a.len, a.fmt, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			pg__fail(st, "schema_version", r);
			PQclear(r);
			goto out;
		}
		PQclear(r);
	}
	if (pg__commit(st) != UMB_OK)
		goto out;
	rc = UMB_OK;
out:
	if (rc != UMB_OK)
		pg__rollback(st);
	return rc;
}

static void pg_close(struct store *st)
{
	struct pg *p = pg__of(st);

	if (!p)
		return;
	PQfinish(p->conn); /* NULL is fine */
	free(p);
	st->impl = NULL;
}

/* `url` is the whole postgres:// or postgresql:// URL (any libpq
 * connection string works); our defaults come first so the URL's own
 * connect_timeout or application_name win. */
static int pg_open(struct store *st, const char *url)
{
	static const char *const keys[] = { "connect_timeout",
					    "fallback_application_name",
					    "dbname", NULL };
	const char *vals[] = { PG_CONNECT_TIMEOUT_S, "umbra", url, NULL };
	struct pg *p = umb_calloc(1, sizeof(*p));
	int rc = UMB_ERR;

	st->impl = p;
	p->conn = PQconnectdbParams(keys, vals, 1);
	if (!p->conn) {
		store__set_err(st, "connect: out of memory");
		goto out;
	}
	if (PQstatus(p->conn) != CONNECTION_OK) {
		pg__fail(st, "connect", NULL);
		goto out;
	}
	PQsetNoticeProcessor(p->conn, pg__notice_cb, NULL); /* kept by PQreset */
	if (pg__session(st) != UMB_OK || pg__migrate(st) != UMB_OK)
		goto out;
	rc = UMB_OK;
out:
	if (rc != UMB_OK)
		pg_close(st);
	return rc;
}

/* ---- identities ---- */

static int pg__identity_put(struct store *st, const struct store_identity *id)
{
	struct pg_args a = { .n = 0 };
	int rc = pg__begin(st), n = 0;

	if (rc != UMB_OK)
		return rc;
	rc = UMB_ERR;
	pg__text(&a, id->name);
	pg__text(&a, store_kind_name(id->kind));
	pg__text(&a, id->team);
	pg__i64(&a, id->created);
	pg__i64(&a, id->expires);
	pg__text(&a, id->break_glass ? "t" : "f");
	pg__text(&a, id->cert_fp);
	if (pg__run(st, PG_ID_UPSERT, &a, "identity put", &n) != UMB_OK)
		goto out;
	if (n == 0) {
		store__set_err(st, "identity \"%s\" is revoked", id->name);
		rc = STORE_EREVOKED;
		goto out;
	}
	if (pg__bump(st) != UMB_OK || pg__commit(st) != UMB_OK)
		goto out;
	rc = UMB_OK;
out:
	if (rc != UMB_OK)
		pg__rollback(st);
	return rc;
}

static int pg_identity_put(struct store *st, const struct store_identity *id)
{
	int rc;

	/* an upsert: running it twice is the same as once (the revision may
	 * move twice, which only costs a reload) */
	PG_RUN(st, rc, true, pg__identity_put(st, id));
	return rc;
}

/* Fetch the one row keyed by `key` with `sid` into `out` via `row`;
 * STORE_ENOTFOUND (naming `what`) when there is none. */
static int pg__get_one(struct store *st, enum pg_stmt_id sid, const char *key,
		       const char *what,
		       void (*row)(const PGresult *r, int i, void *out), void *out)
{
	struct pg_args a = { .n = 0 };
	PGresult *r;
	int rc = UMB_OK;

	pg__text(&a, key);
	if (!(r = pg__exec(st, sid, &a, what)))
		return UMB_ERR;
	if (PQntuples(r) > 0) {
		row(r, 0, out);
	} else {
		store__set_err(st, "no %s \"%s\"", what, key);
		rc = STORE_ENOTFOUND;
	}
	PQclear(r);
	return rc;
}

static void pg__row_identity_cb(const PGresult *r, int i, void *out)
{
	pg__row_identity(r, i, out);
}

static void pg__row_key_cb(const PGresult *r, int i, void *out)
{
	pg__row_key(r, i, out);
}

static int pg_identity_get(struct store *st, const char *name,
			   struct store_identity *out)
{
	int rc;

	PG_RUN(st, rc, true, pg__get_one(st, PG_ID_GET, name, "identity",
					pg__row_identity_cb, out));
	return rc;
}

/* The whole result is read before the first callback: a callback may do
 * anything (even fail) without leaving a half-read statement behind. */
static int pg__identity_list(struct store *st, store_identity_cb cb, void *ctx)
{
	PGresult *r = pg__exec(st, PG_ID_LIST, NULL, "identity list");
	struct store_identity id;
	int rc = UMB_OK;

	if (!r)
		return UMB_ERR;
	for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
		pg__row_identity(r, i, &id);
		rc = cb(ctx, &id);
	}
	PQclear(r);
	return rc;
}

static int pg_identity_list(struct store *st, store_identity_cb cb, void *ctx)
{
	int rc;

	PG_RUN(st, rc, true, pg__identity_list(st, cb, ctx));
	return rc;
}

/* Revoke the row `upd` matches ($1 name/id, $2 time); idempotent (an
 * earlier time is kept). `extra`, unless PG_NSTMT, runs with the same
 * parameters in the same transaction, as a later statement: it sees rows
 * committed while `upd` waited for their lock. */
static int pg__revoke(struct store *st, enum pg_stmt_id upd,
		      enum pg_stmt_id extra, enum pg_stmt_id exists,
		      const char *key, int64_t now, const char *what)
{
	struct pg_args a = { .n = 0 };
	int rc = pg__begin(st), n = 0;
	PGresult *r;

	if (rc != UMB_OK)
		return rc;
	rc = UMB_ERR;
	pg__text(&a, key);
	pg__i64(&a, now);
	if (!(r = pg__exec(st, upd, &a, what)))
		goto out;
	n = atoi(PQcmdTuples(r));
	PQclear(r);
	if (n == 0) {
		/* already revoked, or absent */
		a.n = 1;
		if (pg__run(st, exists, &a, what, &n) != UMB_OK)
			goto out;
		if (n == 0) {
			store__set_err(st, "no %s \"%s\"", what, key);
			rc = STORE_ENOTFOUND;
			goto out;
		}
	} else {
		if (extra != PG_NSTMT &&
		    pg__run(st, extra, &a, what, NULL) != UMB_OK)
			goto out;
		if (pg__bump(st) != UMB_OK)
			goto out;
	}
	if (pg__commit(st) != UMB_OK)
		goto out;
	rc = UMB_OK;
out:
	if (rc != UMB_OK)
		pg__rollback(st);
	return rc;
}

static int pg_identity_revoke(struct store *st, const char *name, int64_t now)
{
	int rc;

	/* its keys are revoked with it, so `key list` tells the truth */
	PG_RUN(st, rc, true, pg__revoke(st, PG_ID_REVOKE, PG_ID_REVOKE_KEYS,
					PG_ID_EXISTS, name, now, "identity"));
	return rc;
}

/* ---- keys ---- */

static int pg__key_create(struct store *st, const struct store_key *key)
{
	struct pg_args a = { .n = 0 };
	PGresult *r;
	int rc = pg__begin(st), n = 0;

	if (rc != UMB_OK)
		return rc;
	rc = UMB_ERR;
	/* FOR SHARE: a revocation of this identity waits for us (and then
	 * revokes the new key too), or we wait for it and see it */
	pg__text(&a, key->identity);
	if (!(r = pg__exec(st, PG_ID_LOCK, &a, "identity status")))
		goto out;
	if (PQntuples(r) == 0 || pg__int(r, 0, 0) != 0) {
		rc = PQntuples(r) == 0 ? STORE_ENOTFOUND : STORE_EREVOKED;
		store__set_err(st, "identity \"%s\" is %s", key->identity,
			       rc == STORE_ENOTFOUND ? "not registered" : "revoked");
		PQclear(r);
		goto out;
	}
	PQclear(r);
	a.n = 0;
	pg__text(&a, key->id);
	pg__text(&a, key->identity);
	pg__bytes(&a, key->secret_hash, STORE_HASH_LEN);
	pg__i64(&a, key->created);
	pg__i64(&a, key->expires);
	pg__text(&a, key->label);
	if (pg__run(st, PG_KEY_INSERT, &a, "key create", &n) != UMB_OK)
		goto out;
	if (n == 0) {
		store__set_err(st, "key id \"%s\" exists", key->id);
		rc = STORE_EEXISTS;
		goto out;
	}
	if (pg__bump(st) != UMB_OK || pg__commit(st) != UMB_OK)
		goto out;
	rc = UMB_OK;
out:
	if (rc != UMB_OK)
		pg__rollback(st);
	return rc;
}

static int pg_key_create(struct store *st, const struct store_key *key)
{
	int rc;

	/* not repeated once the INSERT was sent: if the lost COMMIT had
	 * landed, a second run would report the new key as taken */
	PG_RUN(st, rc, false, pg__key_create(st, key));
	return rc;
}

static int pg_key_get(struct store *st, const char *id, struct store_key *out)
{
	int rc;

	PG_RUN(st, rc, true, pg__get_one(st, PG_KEY_GET, id, "key",
					pg__row_key_cb, out));
	return rc;
}

static int pg__key_list(struct store *st, const char *identity,
			store_key_cb cb, void *ctx)
{
	struct pg_args a = { .n = 0 };
	struct store_key key;
	PGresult *r;
	int rc = UMB_OK;

	if (identity)
		pg__text(&a, identity);
	r = pg__exec(st, identity ? PG_KEY_LIST_ID : PG_KEY_LIST, &a, "key list");
	if (!r)
		return UMB_ERR;
	for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
		pg__row_key(r, i, &key);
		rc = cb(ctx, &key);
	}
	PQclear(r);
	return rc;
}

static int pg_key_list(struct store *st, const char *identity,
		       store_key_cb cb, void *ctx)
{
	int rc;

	PG_RUN(st, rc, true, pg__key_list(st, identity, cb, ctx));
	return rc;
}

static int pg_key_revoke(struct store *st, const char *id, int64_t now)
{
	int rc;

	PG_RUN(st, rc, true, pg__revoke(st, PG_KEY_REVOKE, PG_NSTMT,
					PG_KEY_EXISTS, id, now, "key"));
	return rc;
}

/* ---- enrollment tokens, revision ---- */

static int pg__token_mark_used(struct store *st, const char *jti,
			       int64_t expires, int64_t now)
{
	struct pg_args a = { .n = 0 };
	int rc = pg__begin(st), n = 0;

	if (rc != UMB_OK)
		return rc;
	rc = UMB_ERR;
	pg__i64(&a, now);
	if (pg__run(st, PG_TOK_PRUNE, &a, "token prune", NULL) != UMB_OK)
		goto out;
	a.n = 0;
	pg__text(&a, jti);
	pg__i64(&a, expires);
	if (pg__run(st, PG_TOK_INSERT, &a, "token mark", &n) != UMB_OK)
		goto out;
	if (n == 0) {
		store__set_err(st, "token \"%s\" was already used", jti);
		rc = STORE_EEXISTS;
		goto out;
	}
	if (pg__commit(st) != UMB_OK)
		goto out;
	rc = UMB_OK;
out:
	if (rc != UMB_OK)
		pg__rollback(st);
	return rc;
}

static int pg_token_mark_used(struct store *st, const char *jti,
			      int64_t expires, int64_t now)
{
	int rc;

	if (expires <= now) {
		store__set_err(st, "token \"%s\" has expired", jti);
		return STORE_EEXPIRED;
	}
	/* a repeat after a lost COMMIT would call a fresh token replayed */
	PG_RUN(st, rc, false, pg__token_mark_used(st, jti, expires, now));
	return rc;
}

static int pg__revision(struct store *st, uint64_t *out)
{
	PGresult *r = pg__exec(st, PG_REVISION, NULL, "revision");
	int rc = UMB_OK;

	if (!r)
		return UMB_ERR;
	if (PQntuples(r) == 1)
		*out = (uint64_t)pg__int(r, 0, 0);
	else
		rc = pg__fail(st, "revision", NULL);
	PQclear(r);
	return rc;
}

static int pg_revision(struct store *st, uint64_t *out)
{
	int rc;

	PG_RUN(st, rc, true, pg__revision(st, out));
	return rc;
}

/* ---- usage rollups ---- */

static int pg__usage_cmp(const void *a, const void *b)
{
	const struct store_usage *x = *(const struct store_usage *const *)a;
	const struct store_usage *y = *(const struct store_usage *const *)b;
	int c;

	if ((c = strcmp(x->day, y->day)) || (c = strcmp(x->identity, y->identity)) ||
	    (c = strcmp(x->team, y->team)) || (c = strcmp(x->model, y->model)))
		return c;
	return strcmp(x->provider, y->provider);
}

/* Rows are written in primary-key order: two replicas flushing the same
 * rows lock them in the same order and cannot deadlock. */
static int pg__usage_add(struct store *st, const struct store_usage *rows, size_t n)
{
	const struct store_usage **ord = umb_calloc(n, sizeof(*ord));
	int rc;

	for (size_t i = 0; i < n; i++)
		ord[i] = &rows[i];
	qsort(ord, n, sizeof(*ord), pg__usage_cmp);
	if ((rc = pg__begin(st)) != UMB_OK)
		goto out;
	for (size_t i = 0; i < n && rc == UMB_OK; i++) {
		const struct store_usage *u = ord[i];
		struct pg_args a = { .n = 0 };

		pg__text(&a, u->day);
		pg__text(&a, u->identity);
		pg__text(&a, u->team);
		pg__text(&a, u->model);
		pg__text(&a, u->provider);
		pg__i64(&a, (int64_t)u->requests);
		pg__i64(&a, (int64_t)u->prompt_tokens);
		pg__i64(&a, (int64_t)u->completion_tokens);
		pg__i64(&a, u->cost_nusd);
		rc = pg__run(st, PG_USAGE_ADD, &a, "usage add", NULL);
	}
	if (rc == UMB_OK)
		rc = pg__commit(st);
	if (rc != UMB_OK)
		pg__rollback(st);
out:
	free(ord);
	return rc;
}

static int pg_usage_add(struct store *st, const struct store_usage *rows, size_t n)
{
	int rc;

	/* sums: a repeat after a lost COMMIT would count twice */
	PG_RUN(st, rc, false, pg__usage_add(st, rows, n));
	return rc;
}

static int pg__usage_query(struct store *st, const struct store_usage_query *uq,
			   store_usage_cb cb, void *ctx)
{
	struct pg_args a = { .n = 0 };
	const char *f[3] = { uq->team, uq->identity, uq->since };
	PGresult *r;
	int rc = 0;

	if ((unsigned)uq->by > STORE_BY_TEAM) {
		store__set_err(st, "usage query: bad grouping %d", (int)uq->by);
		return STORE_EINVAL;
	}
	for (int i = 0; i < 3; i++)
		pg__text(&a, f[i] && *f[i] ? f[i] : NULL); /* "" = any */
	r = pg__exec(st, (enum pg_stmt_id)(PG_USAGE_BY_MODEL + uq->by), &a,
		     "usage query");
	if (!r)
		return UMB_ERR;
	for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
		struct store_usage row;

		memset(&row, 0, sizeof(row));
		switch (uq->by) {
		case STORE_BY_MODEL:
			pg__copy(row.model, sizeof(row.model), r, i, 0);
			break;
		case STORE_BY_DAY:
			pg__copy(row.day, sizeof(row.day), r, i, 0);
			break;
		case STORE_BY_IDENTITY:
			pg__copy(row.identity, sizeof(row.identity), r, i, 0);
			break;
		case STORE_BY_TEAM:
			pg__copy(row.team, sizeof(row.team), r, i, 0);
			break;
		}
		if (uq->team)
			snprintf(row.team, sizeof(row.team), "%s", uq->team);
		if (uq->identity)
			snprintf(row.identity, sizeof(row.identity), "%s", uq->identity);
		row.requests = (uint64_t)pg__int(r, i, 1);
		row.prompt_tokens = (uint64_t)pg__int(r, i, 2);
		row.completion_tokens = (uint64_t)pg__int(r, i, 3);
		row.cost_nusd = pg__int(r, i, 4);
		rc = cb(ctx, &row);
	}
	PQclear(r);
	return rc;
}

static int pg_usage_query(struct store *st, const struct store_usage_query *q,
			  store_usage_cb cb, void *ctx)
{
	int rc;

	PG_RUN(st, rc, true, pg__usage_query(st, q, cb, ctx));
	return rc;
}

/* ---- quotas ---- */

static int pg__quota_get(struct store *st, const char *key, int64_t window,
			 int64_t *used)
{
	struct pg_args a = { .n = 0 };
	PGresult *r;

	pg__text(&a, key);
	pg__i64(&a, window);
	if (!(r = pg__exec(st, PG_QUOTA_GET, &a, "quota read")))
		return UMB_ERR;
	*used = PQntuples(r) > 0 ? pg__int(r, 0, 0) : 0;
	PQclear(r);
	return UMB_OK;
}

static int pg__quota_take(struct store *st, const char *key, int64_t window,
			  int64_t cap, int64_t want, int64_t *granted,
			  int64_t *used)
{
	struct pg_args a = { .n = 0 };
	PGresult *r;

	pg__text(&a, key);
	pg__i64(&a, window);
	pg__i64(&a, cap);
	pg__i64(&a, want);
	if (!(r = pg__exec(st, PG_QUOTA_TAKE, &a, "quota take")))
		return UMB_ERR;
	if (PQntuples(r) == 1) {
		*used = pg__int(r, 0, 0);
		*granted = pg__int(r, 0, 1);
		PQclear(r);
		return UMB_OK;
	}
	PQclear(r);
	/* the cap was reached: nothing taken, report where the counter is */
	*granted = 0;
	return pg__quota_get(st, key, window, used);
}

static int pg_quota_take(struct store *st, const char *key, int64_t window,
			 int64_t cap, int64_t want, int64_t *granted, int64_t *used)
{
	int rc;

	/* a repeat after a lost reply can only take too much, never let the
	 * counter pass the cap: the safe side for a budget */
	PG_RUN(st, rc, true, pg__quota_take(st, key, window, cap, want, granted, used));
	return rc;
}

static int pg__quota_give(struct store *st, const char *key, int64_t window,
			  int64_t amount)
{
	struct pg_args a = { .n = 0 };

	pg__text(&a, key);
	pg__i64(&a, window);
	pg__i64(&a, amount);
	return pg__run(st, PG_QUOTA_GIVE, &a, "quota give", NULL);
}

static int pg_quota_give(struct store *st, const char *key, int64_t window,
			 int64_t amount)
{
	int rc;

	/* a repeat could give back twice and let spending pass the cap */
	PG_RUN(st, rc, false, pg__quota_give(st, key, window, amount));
	return rc;
}

static int pg_quota_get(struct store *st, const char *key, int64_t window,
			int64_t *used)
{
	int rc;

	PG_RUN(st, rc, true, pg__quota_get(st, key, window, used));
	return rc;
}

const struct store_ops store_postgres_ops = {
	.scheme = "postgres",
	.open = pg_open,
	.close = pg_close,
	.identity_put = pg_identity_put,
	.identity_get = pg_identity_get,
	.identity_list = pg_identity_list,
	.identity_revoke = pg_identity_revoke,
	.key_create = pg_key_create,
	.key_get = pg_key_get,
	.key_list = pg_key_list,
	.key_revoke = pg_key_revoke,
	.token_mark_used = pg_token_mark_used,
	.revision = pg_revision,
	.usage_add = pg_usage_add,
	.usage_query = pg_usage_query,
	.quota_take = pg_quota_take,
	.quota_give = pg_quota_give,
	.quota_get = pg_quota_get,
};
