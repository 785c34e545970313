/* identity_cmd.c — the command-line glue between the identity modules
 * and a config: `umbra pki ...` and `umbra key ...` find their store (and
 * the CA) through `-c CONFIG`, as DESIGN.md's CLI contract says. */
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "identity/auth.h"
#include "identity/identity_cmd.h"
#include "identity/keys.h"
#include "identity/pki.h"
#include "store/store.h"

/* Copy a message into a fixed error buffer, cutting it if needed. */
static void set_err(char *err, size_t cap, const char *msg)
{
	size_t n = strlen(msg);
	if (n >= cap)
		n = utf8_complete_prefix(msg, cap - 1);
	memcpy(err, msg, n);
	err[n] = 0;
}

/* Load cfg_path and open its store; both freed by the caller. */
static int open_store(const char *cfg_path, struct config **cfg, struct store **st,
		      char *err, size_t errlen)
{
	struct config_err cerr;
	*cfg = config_load_file(cfg_path, &cerr);
	if (!*cfg) {
		set_err(err, errlen, cerr.msg);
		return UMB_ERR;
	}
	struct store_err serr;
	if (store_open((*cfg)->store_url, (*cfg)->dir, st, &serr)) {
		char tmp[1024];
		snprintf(tmp, sizeof tmp, "store %.200s: %.600s", (*cfg)->store_url, serr.msg);
		set_err(err, errlen, tmp);
		config_free(*cfg);
		*cfg = NULL;
		return UMB_ERR;
	}
	return UMB_OK;
}

/* pki hook: `pki issue ... -c CFG` registers the identity in the store. */
static int hook_register(const char *cfg_path, const struct pki_identity *id, bool break_glass,
			 char *err)
{
	struct config *cfg;
	struct store *st;
	if (open_store(cfg_path, &cfg, &st, err, PKI_ERR_LEN))
		return UMB_ERR;
	struct store_identity si;
	auth_record_from_cert(id, break_glass, (int64_t)time(NULL), &si);
	int rc = store_identity_put(st, &si);
	if (rc) {
		char tmp[1024];
		snprintf(tmp, sizeof tmp, "registering %s in the store: %.500s", id->name,
			 rc == STORE_EREVOKED ? "the identity was revoked (revocation is final)"
					      : store_errmsg(st));
		set_err(err, PKI_ERR_LEN, tmp);
	}
	store_close(st);
	config_free(cfg);
	return rc ? UMB_ERR : UMB_OK;
}

/* pki hook: without --dir, the CA is the directory of tls.client_ca. */
static int hook_resolve(const char *cfg_path, char *ca_dir, size_t dir_cap, char *gw_hint,
			size_t gw_cap, char *err)
{
	struct config_err cerr;
	struct config *cfg = config_load_file(cfg_path, &cerr);
	if (!cfg) {
		set_err(err, PKI_ERR_LEN, cerr.msg);
		return UMB_ERR;
	}
	int rc = UMB_OK;
	if (!cfg->tls.client_ca) {
		snprintf(err, PKI_ERR_LEN, "%.200s has no tls.client_ca: give --dir", cfg_path);
		rc = UMB_ERR;
	} else {
		char tmp[4096];
		set_err(tmp, sizeof tmp, cfg->tls.client_ca);
		set_err(ca_dir, dir_cap, dirname(tmp));
		snprintf(gw_hint, gw_cap, "%s://%s:%d", cfg->tls.enabled ? "https" : "http",
			 cfg->listen_host, cfg->listen_port);
	}
	config_free(cfg);
	return rc;
}

static const struct pki_cmd_hooks hooks = { hook_register, hook_resolve };

static const char *find_config(int argc, char **argv)
{
	for (int i = 0; i + 1 < argc; i++)
		if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config"))
			return argv[i + 1];
	return NULL;
}

/* `pki revoke NAME -c CFG`: the store is the source of truth; a running
 * gateway sees the revision move. */
static int pki_revoke(int argc, char **argv, struct store *st)
{
	const char *name = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config"))
			i++;
		else if (!name)
			name = argv[i];
	}
	if (!name) {
		fprintf(stderr, "usage: umbra pki revoke NAME -c CONFIG\n");
		return 2;
	}
	int rc = store_identity_revoke(st, name, (int64_t)time(NULL));
	if (rc == STORE_ENOTFOUND) {
		fprintf(stderr, "umbra pki revoke: identity \"%s\" is not registered in the store\n", name);
		return 1;
	}
	if (rc) {
		fprintf(stderr, "umbra pki revoke: %s\n", store_errmsg(st));
		return 1;
	}
	printf("revoked %s (and its keys)\n", name);
	return 0;
}

int identity_cmd_main(int argc, char **argv)
{
	/* argv[0] is "pki" or "key" */
	bool is_key = !strcmp(argv[0], "key");
	bool is_revoke = !is_key && argc > 1 && !strcmp(argv[1], "revoke");
	if (!is_key && !is_revoke) {
		pki_cmd_set_hooks(&hooks);
		return pki_cmd_main(argc - 1, argv + 1);
	}
	const char *cfg_path = find_config(argc, argv);
	if (!cfg_path) {
		fprintf(stderr, "umbra %s: -c CONFIG is required (it names the store)\n", argv[0]);
		return 2;
	}
	struct config *cfg;
	struct store *st;
	char err[600];
	if (open_store(cfg_path, &cfg, &st, err, sizeof err)) {
		fprintf(stderr, "umbra %s: %s\n", argv[0], err);
		return 1;
	}
	int rc = is_key ? keys_cmd_main(argc - 1, argv + 1, st) : pki_revoke(argc - 1, argv + 1, st);
	store_close(st);
	config_free(cfg);
	return rc;
}
