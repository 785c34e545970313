/* test_auth.c — request authentication (identity/auth.c) against a real
 * SQLite store: every auth.mode, the refusal codes, team resolution order,
 * the per-worker key cache and how the revision poller invalidates it, and
 * the connection sweep after a revocation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "identity/auth.h"
#include "identity/keys.h"

#define NOW 2000000000LL

struct fx {
	char dir[64];
	struct store *st;      /* what the CLI would use */
	struct auth_worker *aw;
	struct auth_poller *poller;
	struct config *cfg;
	char key_alice[KEYS_TOKEN_LEN + 1], key_bob[KEYS_TOKEN_LEN + 1];
	char key_root[KEYS_TOKEN_LEN + 1];
	struct http_request_head head;
};

static void put_identity(struct store *st, const char *name, const char *team,
			 enum store_kind kind, bool break_glass)
{
	struct store_identity id = { .kind = kind, .created = 1000, .break_glass = break_glass };
	snprintf(id.name, sizeof id.name, "%s", name);
	snprintf(id.team, sizeof id.team, "%s", team);
	assert_int_equal(store_identity_put(st, &id), UMB_OK);
}

/* Load a config for `mode` whose store is the fixture's database. */
static void use_mode(struct fx *f, const char *mode)
{
	char yaml[1024];
	snprintf(yaml, sizeof yaml,
		 "tls: { cert: gw.crt, key: gw.key, client_ca: ca.crt }\n"
		 "auth: { mode: %s }\n"
		 "store: \"sqlite://a.db\"\n"
		 "providers: [ { name: p, type: openai, url: \"http://127.0.0.1:9\" } ]\n"
		 "models: [ { name: m-1, provider: p }, { name: other, provider: p } ]\n"
		 "teams: [ { name: eng, models: [\"m-*\"] }, { name: ops, models: [other] } ]\n"
		 "identities: [ { name: carol, team: ops } ]\n",
		 mode);
	struct config_err err;
	config_free(f->cfg);
	f->cfg = config_load_string(yaml, strlen(yaml), "t.yaml", f->dir, &err);
	if (!f->cfg)
		fail_msg("config: %s", err.msg);
	auth_poll(f->poller, f->cfg); /* publish the current revision */
}

static void set_header(struct fx *f, const char *name, const char *value)
{
	f->head.n_headers = 0;
	if (!name)
		return;
	f->head.headers[0].name = str_cstr(name);
	f->head.headers[0].value = str_cstr(value);
	f->head.n_headers = 1;
}

static void bearer(struct fx *f, const char *key)
{
	static char v[128];
	snprintf(v, sizeof v, "Bearer %s", key);
	set_header(f, "authorization", v);
}

static struct auth_conn cert_conn(const char *name, const char *ou, enum pki_kind kind)
{
	struct auth_conn ac;
	memset(&ac, 0, sizeof ac);
	ac.has_cert = true;
	snprintf(ac.cert.name, sizeof ac.cert.name, "%s", name);
	snprintf(ac.cert.team, sizeof ac.cert.team, "%s", ou);
	ac.cert.kind = kind;
	ac.cert.not_after = NOW + 3600;
	return ac;
}

static int check(struct fx *f, struct auth_conn *ac, bool admin, struct auth_who *who,
		 struct auth_refusal *why)
{
	memset(why, 0, sizeof *why);
	return auth_check(f->aw, f->cfg, ac, &f->head, admin, NOW, who, why);
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	struct store_err err;
	snprintf(f->dir, sizeof f->dir, "/tmp/umbra-auth-XXXXXX");
	if (!mkdtemp(f->dir) || store_open("sqlite://a.db", f->dir, &f->st, &err))
		return -1;
	put_identity(f->st, "alice", "eng", STORE_KIND_CLIENT, false);
	put_identity(f->st, "bob", "eng", STORE_KIND_CLIENT, true);
	put_identity(f->st, "carol", "eng", STORE_KIND_CLIENT, false);
	put_identity(f->st, "root", "", STORE_KIND_ADMIN, false);
	struct store_key k;
	if (keys_create(f->st, "alice", 1000, 0, NULL, &k, f->key_alice) ||
	    keys_create(f->st, "bob", 1000, 0, NULL, &k, f->key_bob) ||
	    keys_create(f->st, "root", 1000, 0, NULL, &k, f->key_root))
		return -1;
	f->aw = auth_worker_new();
	f->poller = auth_poller_new();
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];
	auth_worker_free(f->aw);
	auth_poller_free(f->poller);
	store_close(f->st);
	config_free(f->cfg);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void test_keys_mode(void **state)
{
	struct fx *f = *state;
	struct auth_who who;
	struct auth_refusal why;
	use_mode(f, "keys");

	set_header(f, NULL, NULL);
	assert_int_equal(check(f, NULL, false, &who, &why), -1);
	assert_int_equal(why.status, 401);
	assert_string_equal(why.code, "missing_api_key");

	set_header(f, "authorization", "Bearer sk-umbra-nope");
	assert_int_equal(check(f, NULL, false, &who, &why), -1);
	assert_string_equal(why.code, "invalid_api_key");

	set_header(f, "x-api-key", f->key_alice);
	assert_int_equal(check(f, NULL, false, &who, &why), 0);
	assert_true(who.authenticated);
	assert_string_equal(who.name, "alice");
	assert_string_equal(who.team, "eng");
	assert_non_null(who.team_cfg);
	assert_string_equal(who.method, "key");
	assert_memory_equal(who.key_id, f->key_alice + KEYS_PREFIX_LEN, KEYS_ID_LEN);
	assert_false(who.break_glass);

	/* the config's identities entry beats the store's team */
	struct store_key k;
	char tok[KEYS_TOKEN_LEN + 1];
	assert_int_equal(keys_create(f->st, "carol", 1000, 0, NULL, &k, tok), UMB_OK);
	bearer(f, tok);
	assert_int_equal(check(f, NULL, false, &who, &why), 0);
	assert_string_equal(who.team, "ops");

	/* break-glass comes from the store */
	bearer(f, f->key_bob);
	assert_int_equal(check(f, NULL, false, &who, &why), 0);
	assert_true(who.break_glass);
}

static void test_key_cache_and_revocation(void **state)
{
	struct fx *f = *state;
	struct auth_who who;
	struct auth_refusal why;
	use_mode(f, "keys");

	bearer(f, f->key_alice);
	assert_int_equal(check(f, NULL, false, &who, &why), 0); /* now cached */

	/* a wrong secret for a cached id is refused like any bad key */
	char forged[KEYS_TOKEN_LEN + 1];
	memcpy(forged, f->key_alice, sizeof forged);
	forged[KEYS_TOKEN_LEN - 2] = forged[KEYS_TOKEN_LEN - 2] == 'a' ? 'b' : 'a';
	bearer(f, forged);
	assert_int_equal(check(f, NULL, false, &who, &why), -1);
	assert_string_equal(why.code, "invalid_api_key");

	/* the CLI revokes through its own handle */
	char id[KEYS_ID_LEN + 1];
	memcpy(id, f->key_alice + KEYS_PREFIX_LEN, KEYS_ID_LEN);
	id[KEYS_ID_LEN] = 0;
	assert_int_equal(store_key_revoke(f->st, id, NOW - 1), UMB_OK);

	/* the connection that used it is found by the sweep */
	struct auth_conn ac;
	memset(&ac, 0, sizeof ac);
	bearer(f, f->key_bob);
	assert_int_equal(check(f, &ac, false, &who, &why), 0);
	struct auth_conn alice_conn;
	memset(&alice_conn, 0, sizeof alice_conn);
	snprintf(alice_conn.ident, sizeof alice_conn.ident, "alice");
	memcpy(alice_conn.key_id, id, sizeof alice_conn.key_id);
	assert_true(auth_conn_revoked(f->aw, f->cfg, &alice_conn, NOW));
	assert_false(auth_conn_revoked(f->aw, f->cfg, &ac, NOW)); /* bob's is untouched */

	/* until the poller publishes the new revision the cache answers;
	 * afterwards the key is refused, and named as revoked */
	assert_true(auth_poll(f->poller, f->cfg));
	assert_false(auth_poll(f->poller, f->cfg));
	bearer(f, f->key_alice);
	assert_int_equal(check(f, NULL, false, &who, &why), -1);
	assert_int_equal(why.status, 401);
	assert_string_equal(why.code, "api_key_revoked");

	/* revoking an identity stops its other credentials too */
	assert_int_equal(store_identity_revoke(f->st, "bob", NOW - 1), UMB_OK);
	auth_poll(f->poller, f->cfg);
	bearer(f, f->key_bob);
	assert_int_equal(check(f, NULL, false, &who, &why), -1);
	/* the store revokes an identity's keys with it */
	assert_string_equal(why.code, "api_key_revoked");
	assert_true(auth_conn_revoked(f->aw, f->cfg, &ac, NOW));
}

static void test_certs_mode(void **state)
{
	struct fx *f = *state;
	struct auth_who who;
	struct auth_refusal why;
	use_mode(f, "certs");
	set_header(f, NULL, NULL);

	assert_int_equal(check(f, NULL, false, &who, &why), -1);
	assert_string_equal(why.code, "client_certificate_required");

	/* not in the store: the certificate's OU is the team */
	struct auth_conn dave = cert_conn("dave", "ops", PKI_KIND_CLIENT);
	assert_int_equal(check(f, &dave, false, &who, &why), 0);
	assert_string_equal(who.name, "dave");
	assert_string_equal(who.team, "ops");
	assert_string_equal(who.method, "cert");
	assert_string_equal(dave.ident, "dave");

	/* in the store: its registration beats the OU */
	struct auth_conn alice = cert_conn("alice", "ops", PKI_KIND_CLIENT);
	assert_int_equal(check(f, &alice, false, &who, &why), 0);
	assert_string_equal(who.team, "eng");

	struct auth_conn old = cert_conn("alice", "", PKI_KIND_CLIENT);
	old.cert.not_after = NOW;
	assert_int_equal(check(f, &old, false, &who, &why), -1);
	assert_string_equal(why.code, "certificate_expired");

	assert_int_equal(store_identity_revoke(f->st, "alice", NOW - 1), UMB_OK);
	auth_poll(f->poller, f->cfg);
	assert_int_equal(check(f, &alice, false, &who, &why), -1);
	assert_int_equal(why.status, 401);
	assert_string_equal(why.code, "identity_revoked");
	assert_true(auth_conn_revoked(f->aw, f->cfg, &alice, NOW));
	assert_false(auth_conn_revoked(f->aw, f->cfg, &dave, NOW));
}

static void test_keys_certs_mode(void **state)
{
	struct fx *f = *state;
	struct auth_who who;
	struct auth_refusal why;
	use_mode(f, "keys+certs");
	struct auth_conn bob = cert_conn("bob", "", PKI_KIND_CLIENT);
	struct auth_conn alice = cert_conn("alice", "", PKI_KIND_CLIENT);

	bearer(f, f->key_alice); /* A's key over B's certificate */
	assert_int_equal(check(f, &bob, false, &who, &why), -1);
	assert_int_equal(why.status, 401);
	assert_string_equal(why.code, "key_identity_mismatch");

	assert_int_equal(check(f, &alice, false, &who, &why), 0);
	assert_string_equal(who.method, "key+cert");
	assert_string_equal(who.name, "alice");

	assert_int_equal(check(f, NULL, false, &who, &why), -1); /* key alone */
	assert_string_equal(why.code, "client_certificate_required");
	set_header(f, NULL, NULL); /* certificate alone */
	assert_int_equal(check(f, &alice, false, &who, &why), -1);
	assert_string_equal(why.code, "missing_api_key");
}

static void test_none_mode_and_admin(void **state)
{
	struct fx *f = *state;
	struct auth_who who;
	struct auth_refusal why;
	use_mode(f, "none");

	/* keys are not looked at for API calls: an SDK's dummy key passes */
	set_header(f, "authorization", "Bearer sk-anything");
	assert_int_equal(check(f, NULL, false, &who, &why), 0);
	assert_false(who.authenticated);
	assert_string_equal(who.method, "none");

	struct auth_conn dave = cert_conn("dave", "ops", PKI_KIND_CLIENT);
	assert_int_equal(check(f, &dave, false, &who, &why), 0);
	assert_true(who.authenticated);
	assert_string_equal(who.name, "dave");

	/* but the admin API checks them, and an admin key names the caller */
	bearer(f, f->key_root);
	assert_int_equal(check(f, &dave, true, &who, &why), 0);
	assert_string_equal(who.name, "root");
	assert_int_equal(who.kind, STORE_KIND_ADMIN);
	set_header(f, "authorization", "Bearer sk-umbra-bad");
	assert_int_equal(check(f, NULL, true, &who, &why), -1);
	assert_string_equal(why.code, "invalid_api_key");

	struct auth_conn adm = cert_conn("ops-admin", "", PKI_KIND_ADMIN);
	set_header(f, NULL, NULL);
	assert_int_equal(check(f, &adm, true, &who, &why), 0);
	assert_int_equal(who.kind, STORE_KIND_ADMIN);
}

static void test_team_policy_lookups(void **state)
{
	struct fx *f = *state;
	use_mode(f, "keys");
	const struct cfg_team *eng = config_find_team(f->cfg, STR("eng"));
	assert_non_null(eng);
	assert_true(config_team_allows(eng, STR("m-1")));
	assert_false(config_team_allows(eng, STR("other")));
	assert_null(config_find_team(f->cfg, STR("nope")));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keys_mode, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_key_cache_and_revocation, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_certs_mode, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_keys_certs_mode, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_none_mode_and_admin, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_team_policy_lookups, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
