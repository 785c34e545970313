/* test_keys.c — virtual keys (identity/keys.c) and `umbra key`
 * (identity/keys_cmd.c): the key format, strict header parsing, creation,
 * verification (wrong secret, unknown id, revoked and expired keys and
 * identities, a revocation seen through a second handle), and the CLI
 * driven through keys_cmd_run with its output read back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "identity/keys.h"

struct fx {
	char dir[64];
	struct store *st;
};

static struct store *fx_open(struct fx *f)
{
	struct store *st = NULL;
	struct store_err err;

	assert_int_equal(store_open("sqlite://k.db", f->dir, &st, &err),
			 UMB_OK);
	return st;
}

static void put_identity(struct store *st, const char *name, int64_t expires)
{
	struct store_identity id = { .kind = STORE_KIND_CLIENT,
				     .created = 1000, .expires = expires };

	snprintf(id.name, sizeof(id.name), "%s", name);
	snprintf(id.team, sizeof(id.team), "eng");
	assert_int_equal(store_identity_put(st, &id), UMB_OK);
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/umbra-keys-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	f->st = fx_open(f);
	put_identity(f->st, "alice", 0);
	put_identity(f->st, "bob", 0);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	store_close(f->st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static bool all_base32(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '2' && p[i] <= '7')))
			return false;
	return true;
}

/* ---- format and parsing ---- */

static void test_format_roundtrip(void **state)
{
	struct fx *f = *state;
	char tok[KEYS_TOKEN_LEN + 1], again[KEYS_TOKEN_LEN + 1];
	struct store_key k;
	struct keys_cred c;
	uint8_t h[STORE_HASH_LEN];

	assert_int_equal(KEYS_TOKEN_LEN, 74);
	assert_int_equal(keys_create(f->st, "alice", 1000, 0, "ci", &k, tok),
			 UMB_OK);
	assert_int_equal(strlen(tok), KEYS_TOKEN_LEN);
	assert_memory_equal(tok, "sk-umbra-", 9);
	assert_true(all_base32(tok + 9, 12));
	assert_int_equal(tok[21], '_');
	assert_true(all_base32(tok + 22, 52));
	assert_memory_equal(tok + 9, k.id, 12);
	assert_string_equal(k.identity, "alice");
	assert_string_equal(k.label, "ci");

	assert_int_equal(keys_parse_token(str_cstr(tok), &c), UMB_OK);
	assert_string_equal(c.id, k.id);
	keys_hash_secret(c.secret, h);
	assert_memory_equal(h, k.secret_hash, STORE_HASH_LEN);
	keys_format(&c, again);
	assert_string_equal(again, tok);
	/* the secret itself is not what the store keeps */
	assert_memory_not_equal(c.secret, k.secret_hash, STORE_HASH_LEN);

	/* a second key differs in id and secret */
	char tok2[KEYS_TOKEN_LEN + 1];
	assert_int_equal(keys_create(f->st, "alice", 1000, 0, NULL, NULL, tok2),
			 UMB_OK);
	assert_memory_not_equal(tok, tok2, 21);
	assert_memory_not_equal(tok + 22, tok2 + 22, 52);

	/* known-answer: all-zero secret, all-'a' id */
	struct keys_cred z = { .id = "aaaaaaaaaaaa" };
	keys_format(&z, again);
	assert_string_equal(again, "sk-umbra-aaaaaaaaaaaa_"
				   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	memset(z.secret, 0xff, sizeof(z.secret));
	keys_format(&z, again);
	/* 256 one bits then 4 zero pad bits: 51 '7' and a final 'q' */
	assert_string_equal(again + 22,
			    "777777777777777777777777777777777777777777777777777q");
	assert_int_equal(keys_parse_token(str_cstr(again), &c), UMB_OK);
	for (int i = 0; i < KEYS_SECRET_BYTES; i++)
		assert_int_equal(c.secret[i], 0xff);
}

static const char good[] = "sk-umbra-abcdefgh2345_"
			   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static void test_parse_token_strict(void **state)
{
	(void)state;
	struct keys_cred c;
	char t[128];

	assert_int_equal(keys_parse_token(STR(good), &c), UMB_OK);
	assert_string_equal(c.id, "abcdefgh2345");
	assert_int_equal(keys_parse_token(STR_NULL, &c), KEYS_EMALFORMED);
	/* one character too few / too many */
	assert_int_equal(keys_parse_token(str_make(good, sizeof(good) - 2), &c),
			 KEYS_EMALFORMED);
	snprintf(t, sizeof(t), "%sa", good);
	assert_int_equal(keys_parse_token(str_cstr(t), &c), KEYS_EMALFORMED);
	/* every single-byte change that leaves the alphabet is refused */
	const char swaps[] = { 'A', '1', '0', '8', '9', '_', '-', '=', ' ',
			       '\0', '\n', '\x80', '\xff' };
	for (size_t pos = 0; pos < sizeof(good) - 1; pos++) {
		for (size_t s = 0; s < sizeof(swaps); s++) {
			memcpy(t, good, sizeof(good));
			if (t[pos] == swaps[s])
				continue;
			t[pos] = swaps[s];
			assert_int_equal(keys_parse_token(str_make(t,
				sizeof(good) - 1), &c), KEYS_EMALFORMED);
		}
	}
	/* non-zero pad bits: 'b' is 00001, the low 4 bits are pad */
	memcpy(t, good, sizeof(good));
	t[sizeof(good) - 2] = 'b';
	assert_int_equal(keys_parse_token(str_make(t, sizeof(good) - 1), &c),
			 KEYS_EMALFORMED);
	t[sizeof(good) - 2] = 'q'; /* 10000: pad bits zero */
	assert_int_equal(keys_parse_token(str_make(t, sizeof(good) - 1), &c),
			 UMB_OK);
	/* other vendors' keys */
	assert_int_equal(keys_parse_token(STR("sk-proj-abcdef"), &c),
			 KEYS_EMALFORMED);
}

/* pat with its one "%s" replaced by the good key (patterns are data, so
 * they are not handed to printf). */
static void subst(char *v, size_t size, const char *pat)
{
	const char *at = strstr(pat, "%s");

	assert_non_null(at);
	snprintf(v, size, "%.*s%s%s", (int)(at - pat), pat, good, at + 2);
}

static void test_parse_header(void **state)
{
	(void)state;
	struct keys_cred c;
	char v[600];
	const char *ok_auth[] = { "Bearer %s", "bearer %s", "BEARER   %s",
				  "Bearer\t%s", " Bearer %s  ", "Bearer %s\t" };
	const char *bad_auth[] = { "%s", "Bearer%s", "Basic %s",
				   "Bearer  x %s", "Bearer %s x",
				   "Bearer %s,", "Token %s", "Bearer \"%s\"",
				   "Bearer: %s" };

	for (size_t i = 0; i < UMB_ARRAY_LEN(ok_auth); i++) {
		subst(v, sizeof(v), ok_auth[i]);
		memset(&c, 0, sizeof(c));
		assert_int_equal(keys_parse_header(str_cstr(v),
						   KEYS_HDR_AUTHORIZATION, &c),
				 UMB_OK);
		assert_string_equal(c.id, "abcdefgh2345");
	}
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad_auth); i++) {
		subst(v, sizeof(v), bad_auth[i]);
		assert_int_equal(keys_parse_header(str_cstr(v),
						   KEYS_HDR_AUTHORIZATION, &c),
				 KEYS_EMALFORMED);
	}
	assert_int_equal(keys_parse_header(STR("Bearer"),
					   KEYS_HDR_AUTHORIZATION, &c),
			 KEYS_EMALFORMED);
	assert_int_equal(keys_parse_header(STR("Bearer "),
					   KEYS_HDR_AUTHORIZATION, &c),
			 KEYS_EMALFORMED);
	assert_int_equal(keys_parse_header(STR(""), KEYS_HDR_AUTHORIZATION,
					   &c), KEYS_EMALFORMED);
	assert_int_equal(keys_parse_header(STR_NULL, KEYS_HDR_X_API_KEY, &c),
			 KEYS_EMALFORMED);

	/* x-api-key carries the bare key */
	assert_int_equal(keys_parse_header(STR(good), KEYS_HDR_X_API_KEY, &c),
			 UMB_OK);
	snprintf(v, sizeof(v), "  %s ", good);
	assert_int_equal(keys_parse_header(str_cstr(v), KEYS_HDR_X_API_KEY,
					   &c), UMB_OK);
	snprintf(v, sizeof(v), "Bearer %s", good);
	assert_int_equal(keys_parse_header(str_cstr(v), KEYS_HDR_X_API_KEY,
					   &c), KEYS_EMALFORMED);
	/* over the cap: refused before looking, even if it would trim */
	memset(v, ' ', sizeof(v));
	memcpy(v, good, sizeof(good) - 1);
	assert_int_equal(keys_parse_header(str_make(v, KEYS_HEADER_MAX),
					   KEYS_HDR_X_API_KEY, &c), UMB_OK);
	assert_int_equal(keys_parse_header(str_make(v, KEYS_HEADER_MAX + 1),
					   KEYS_HDR_X_API_KEY, &c),
			 KEYS_EMALFORMED);
	assert_int_equal(keys_parse_header(STR(good), (enum keys_header)9, &c),
			 KEYS_EMALFORMED);
}

/* ---- verification ---- */

static void test_verify(void **state)
{
	struct fx *f = *state;
	char tok[KEYS_TOKEN_LEN + 1];
	struct store_key k, got;
	struct store_identity id;
	struct keys_cred c, wrong;

	assert_int_equal(keys_create(f->st, "alice", 1000, 0, "", &k, tok),
			 UMB_OK);
	assert_int_equal(keys_parse_token(str_cstr(tok), &c), UMB_OK);
	assert_int_equal(keys_verify(f->st, &c, 5000, &got, &id), UMB_OK);
	assert_string_equal(got.id, k.id);
	assert_string_equal(id.name, "alice");
	assert_string_equal(id.team, "eng");
	assert_int_equal(keys_verify(f->st, &c, 5000, NULL, NULL), UMB_OK);

	/* the right id with a wrong secret, one bit off */
	wrong = c;
	wrong.secret[31] ^= 1;
	assert_int_equal(keys_verify(f->st, &wrong, 5000, NULL, NULL),
			 KEYS_EMISMATCH);
	/* a wrong id with the right secret */
	wrong = c;
	wrong.id[0] = wrong.id[0] == 'a' ? 'b' : 'a';
	assert_int_equal(keys_verify(f->st, &wrong, 5000, NULL, NULL),
			 KEYS_EUNKNOWN);
	/* an all-zero secret never matches the unknown-id dummy hash */
	memset(&wrong, 0, sizeof(wrong));
	memcpy(wrong.id, "zzzzzzzzzzzz", 13);
	assert_int_equal(keys_verify(f->st, &wrong, 5000, NULL, NULL),
			 KEYS_EUNKNOWN);
	memcpy(wrong.id, "BAD", 4);
	assert_int_equal(keys_verify(f->st, &wrong, 5000, NULL, NULL),
			 KEYS_EUNKNOWN);

	/* revoked through another handle (the CLI): refused at once */
	struct store *cli = fx_open(f);
	assert_int_equal(store_key_revoke(cli, k.id, 6000), UMB_OK);
	store_close(cli);
	assert_int_equal(keys_verify(f->st, &c, 6001, NULL, NULL),
			 KEYS_EREVOKED);
	/* a wrong secret for a revoked key says mismatch, not revoked */
	wrong = c;
	wrong.secret[0] ^= 0x80;
	assert_int_equal(keys_verify(f->st, &wrong, 6001, NULL, NULL),
			 KEYS_EMISMATCH);
	assert_string_equal(keys_strerror(KEYS_EREVOKED), "key revoked");
	assert_string_equal(keys_strerror(UMB_ERR), "key store error");
}

static void test_verify_expiry(void **state)
{
	struct fx *f = *state;
	char tok[KEYS_TOKEN_LEN + 1];
	struct keys_cred c;

	assert_int_equal(keys_create(f->st, "bob", 1000, 2000, NULL, NULL, tok),
			 UMB_OK);
	assert_int_equal(keys_parse_token(str_cstr(tok), &c), UMB_OK);
	assert_int_equal(keys_verify(f->st, &c, 1999, NULL, NULL), UMB_OK);
	assert_int_equal(keys_verify(f->st, &c, 2000, NULL, NULL),
			 KEYS_EEXPIRED);

	/* the identity's own expiry binds its keys (break-glass) */
	put_identity(f->st, "glass", 3000);
	assert_int_equal(keys_create(f->st, "glass", 1000, 0, NULL, NULL, tok),
			 UMB_OK);
	assert_int_equal(keys_parse_token(str_cstr(tok), &c), UMB_OK);
	assert_int_equal(keys_verify(f->st, &c, 2999, NULL, NULL), UMB_OK);
	assert_int_equal(keys_verify(f->st, &c, 3000, NULL, NULL),
			 KEYS_EIDEXPIRED);

	/* revoking the identity refuses its keys */
	assert_int_equal(keys_create(f->st, "alice", 1000, 0, NULL, NULL, tok),
			 UMB_OK);
	assert_int_equal(keys_parse_token(str_cstr(tok), &c), UMB_OK);
	assert_int_equal(keys_verify(f->st, &c, 1500, NULL, NULL), UMB_OK);
	assert_int_equal(store_identity_revoke(f->st, "alice", 1600), UMB_OK);
	/* (the store revokes the identity's keys with it) */
	assert_int_equal(keys_verify(f->st, &c, 1700, NULL, NULL),
			 KEYS_EREVOKED);
	/* and no new keys for it; nor for strangers or bad names */
	assert_int_equal(keys_create(f->st, "alice", 1000, 0, NULL, NULL, tok),
			 STORE_EREVOKED);
	assert_int_equal(keys_create(f->st, "nobody", 1000, 0, NULL, NULL, tok),
			 STORE_ENOTFOUND);
	assert_int_equal(keys_create(f->st, "no body", 1000, 0, NULL, NULL,
				     tok), STORE_EINVAL);
}

/* ---- umbra key ... ---- */

struct run {
	int rc;
	char *out, *err;
	size_t out_n, err_n;
};

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

static struct run cmd(struct store *st, int argc, ...)
{
	char *argv[16];
	struct run r = { 0 };
	va_list ap;
	FILE *out = open_memstream(&r.out, &r.out_n);
	FILE *err = open_memstream(&r.err, &r.err_n);

	va_start(ap, argc);
	for (int i = 0; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	argv[argc] = NULL;
	r.rc = keys_cmd_run(argc, argv, st, out, err);
	fclose(out);
	fclose(err);
	return r;
}

/* The last line of a text (without its newline), into line. */
static void last_line(const char *s, char *line, size_t size)
{
	size_t n = strlen(s);
	const char *end, *start;

	while (n > 0 && s[n - 1] == '\n')
		n--;
	end = s + n;
	start = end;
	while (start > s && start[-1] != '\n')
		start--;
	snprintf(line, size, "%.*s", (int)(end - start), start);
}

static void test_cmd_create_list_revoke(void **state)
{
	struct fx *f = *state;
	char key[256], key2[256];
	struct keys_cred c;
	struct store_key k;

	struct run r = cmd(f->st, 7, "-c", "/etc/umbra.yaml", "create",
			   "--identity", "alice", "--label", "laptop");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.err, "");
	last_line(r.out, key, sizeof(key));
	assert_int_equal(strlen(key), KEYS_TOKEN_LEN);
	assert_int_equal(keys_parse_token(str_cstr(key), &c), UMB_OK);
	assert_int_equal(keys_verify(f->st, &c, (int64_t)time(NULL), &k, NULL),
			 UMB_OK);
	assert_int_equal(k.expires, 0);
	assert_string_equal(k.label, "laptop");
	assert_non_null(strstr(r.out, "alice"));
	run_free(&r);

	r = cmd(f->st, 4, "create", "--identity=bob", "--expires", "30d");
	assert_int_equal(r.rc, 0);
	last_line(r.out, key2, sizeof(key2));
	assert_int_equal(keys_parse_token(str_cstr(key2), &c), UMB_OK);
	assert_int_equal(keys_verify(f->st, &c, (int64_t)time(NULL), &k, NULL),
			 UMB_OK);
	int64_t span = k.expires - k.created;
	assert_int_equal(span, 30 * 86400);
	run_free(&r);

	/* list: both keys, never a secret */
	r = cmd(f->st, 1, "list");
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.out, "ID"));
	assert_non_null(strstr(r.out, "laptop"));
	assert_non_null(strstr(r.out, "bob"));
	assert_null(strstr(r.out, key + 22));
	assert_null(strstr(r.out, key2 + 22));
	run_free(&r);

	r = cmd(f->st, 4, "list", "--identity", "bob", "--json");
	assert_int_equal(r.rc, 0);
	cJSON *j = cJSON_Parse(r.out);
	assert_non_null(j);
	assert_true(cJSON_IsArray(j));
	assert_int_equal(cJSON_GetArraySize(j), 1);
	cJSON *e = cJSON_GetArrayItem(j, 0);
	assert_string_equal(cJSON_GetObjectItem(e, "id")->valuestring, k.id);
	assert_string_equal(cJSON_GetObjectItem(e, "identity")->valuestring,
			    "bob");
	assert_string_equal(cJSON_GetObjectItem(e, "status")->valuestring,
			    "active");
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(e, "revoked")));
	assert_null(strstr(r.out, key2 + 22));
	cJSON_Delete(j);
	run_free(&r);

	/* revoke: the key stops working at once */
	r = cmd(f->st, 2, "revoke", k.id);
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.out, "revoked"));
	run_free(&r);
	assert_int_equal(keys_verify(f->st, &c, (int64_t)time(NULL), NULL,
				     NULL), KEYS_EREVOKED);
	r = cmd(f->st, 4, "revoke", "-c", "umbra.yaml", k.id);
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.out, "already"));
	run_free(&r);
	r = cmd(f->st, 3, "list", "--json", "--identity=bob");
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.out, "\"status\":\"revoked\""));
	run_free(&r);

	/* an empty listing is still valid JSON */
	r = cmd(f->st, 4, "list", "--identity", "nobody", "--json");
	assert_int_equal(r.rc, 0);
	j = cJSON_Parse(r.out);
	assert_non_null(j);
	assert_int_equal(cJSON_GetArraySize(j), 0);
	cJSON_Delete(j);
	run_free(&r);
}

static void test_cmd_errors(void **state)
{
	struct fx *f = *state;
	struct run r;
	struct {
		int rc, argc;
		const char *argv[6];
		const char *err;
	} cases[] = {
		{ 2, 0, { NULL }, "usage" },
		{ 2, 1, { "frobnicate" }, "unknown command" },
		{ 2, 1, { "create" }, "--identity is required" },
		{ 2, 2, { "create", "--identity" }, "needs a value" },
		{ 2, 4, { "create", "--identity", "alice", "--bogus" },
		  "unknown argument" },
		{ 2, 5, { "create", "--identity", "alice", "--expires", "30" },
		  "bad --expires" },
		{ 2, 5, { "create", "--identity", "alice", "--expires", "soon" },
		  "bad --expires" },
		{ 1, 3, { "create", "--identity", "ghost" }, "not registered" },
		{ 1, 3, { "create", "--identity", "bad name" },
		  "not registered" },
		{ 1, 5, { "create", "--identity", "alice", "--label", "a\tb" },
		  "invalid key label" },
		{ 2, 2, { "list", "--wat" }, "unknown argument" },
		{ 2, 2, { "list", "--identity" }, "needs a value" },
		{ 1, 3, { "list", "--identity", "a b" }, "invalid identity" },
		{ 2, 1, { "revoke" }, "usage" },
		{ 2, 3, { "revoke", "--config=x.yaml", "-c" }, "usage" },
		{ 2, 3, { "revoke", "a", "b" }, "usage" },
		{ 2, 2, { "revoke", "--all" }, "usage" },
		{ 1, 2, { "revoke", "zzzzzzzzzzzz" }, "no key" },
		{ 1, 2, { "revoke", "'; DROP TABLE keys" }, "no key" },
	};

	for (size_t i = 0; i < UMB_ARRAY_LEN(cases); i++) {
		char *argv[8] = { 0 };
		for (int a = 0; a < cases[i].argc; a++)
			argv[a] = (char *)cases[i].argv[a];
		r = (struct run){ 0 };
		FILE *out = open_memstream(&r.out, &r.out_n);
		FILE *err = open_memstream(&r.err, &r.err_n);
		r.rc = keys_cmd_run(cases[i].argc, argv, f->st, out, err);
		fclose(out);
		fclose(err);
		if (r.rc != cases[i].rc || !strstr(r.err, cases[i].err))
			fail_msg("case %zu: rc %d, stderr \"%s\"", i, r.rc,
				 r.err);
		assert_string_equal(r.out, ""); /* errors print no key */
		run_free(&r);
	}
	r = cmd(f->st, 1, "--help");
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.out, "umbra key create"));
	run_free(&r);
	/* a revoked identity gets no key */
	assert_int_equal(store_identity_revoke(f->st, "bob", 1), UMB_OK);
	r = cmd(f->st, 3, "create", "--identity", "bob");
	assert_int_equal(r.rc, 1);
	assert_non_null(strstr(r.err, "revoked"));
	run_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_format_roundtrip, fx_setup,
						fx_teardown),
		cmocka_unit_test(test_parse_token_strict),
		cmocka_unit_test(test_parse_header),
		cmocka_unit_test_setup_teardown(test_verify, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_verify_expiry, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_cmd_create_list_revoke,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_cmd_errors, fx_setup,
						fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
