/* pki_cmd.c — `umbra pki init|issue|list|token`: argument parsing and
 * output only; the work is in pki.c and token.c.
 *
 * Registration in the store (`-c CFG`) goes through a hook main.c installs
 * (pki_cmd_set_hooks), so this module does not depend on the store. */
#include "identity/pki.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define PKI_CMD_MAX_NAMES 32

static const struct pki_cmd_hooks *hooks;

void pki_cmd_set_hooks(const struct pki_cmd_hooks *h)
{
	hooks = h;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: umbra pki init --dir D\n"
		"       umbra pki issue NAME --kind client|connector|gateway|admin [--team T]\n"
		"                 [--expires 90d] [--dns HOST]... [--ip ADDR]... [--break-glass]\n"
		"                 --dir D | -c CFG\n"
		"       umbra pki list --dir D | -c CFG\n"
		"       umbra pki token NAME --kind K [--team T] [--expires 24h] [--gateway URL]\n"
		"                 --dir D | -c CFG\n");
	return 2;
}

/* Options shared by the subcommands; each ignores what it does not use
 * and the parser rejects what no subcommand knows. */
struct pki_args {
	const char *name, *dir, *team, *expires, *gateway, *cfg;
	const char *kind;
	bool break_glass;
	const char *dns[PKI_CMD_MAX_NAMES], *ip[PKI_CMD_MAX_NAMES];
	size_t n_dns, n_ip;
};

static int args_parse(int argc, char **argv, struct pki_args *a)
{
	memset(a, 0, sizeof(*a));
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		const char **slot = NULL;
		if (strcmp(o, "--dir") == 0)
			slot = &a->dir;
		else if (strcmp(o, "--kind") == 0)
			slot = &a->kind;
		else if (strcmp(o, "--team") == 0)
			slot = &a->team;
		else if (strcmp(o, "--expires") == 0)
			slot = &a->expires;
		else if (strcmp(o, "--gateway") == 0)
			slot = &a->gateway;
		else if (strcmp(o, "-c") == 0)
			slot = &a->cfg;
		else if (strcmp(o, "--break-glass") == 0) {
			a->break_glass = true;
			continue;
		} else if (strcmp(o, "--dns") == 0 || strcmp(o, "--ip") == 0) {
			bool dns = o[2] == 'd';
			size_t *n = dns ? &a->n_dns : &a->n_ip;
			if (!v || *n == PKI_CMD_MAX_NAMES)
				return UMB_ERR;
			(dns ? a->dns : a->ip)[(*n)++] = v;
			i++;
			continue;
		} else if (o[0] != '-' && !a->name) {
			a->name = o;
			continue;
		} else
			return UMB_ERR;
		if (!v)
			return UMB_ERR;
		*slot = v;
		i++;
	}
	return UMB_OK;
}

static void time_fmt(int64_t t, char out[32])
{
	struct tm tm;
	time_t tt = (time_t)t;
	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int cmd_issue(struct pki_args *a)
{
	struct pki_ca ca;
	struct pki_identity id;
	char err[PKI_ERR_LEN] = "", t[32];
	enum pki_kind kind;
	int64_t life = PKI_CERT_LIFETIME_S;

	if (!a->name || !a->kind)
		return usage();
	if (pki_kind_parse(a->kind, &kind)) {
		fprintf(stderr, "umbra pki: unknown kind '%s' (client|connector|gateway|admin)\n", a->kind);
		return 2;
	}
	if (a->expires && pki_lifetime_parse(a->expires, &life)) {
		fprintf(stderr, "umbra pki: bad --expires '%s' (e.g. 90d, 4h)\n", a->expires);
		return 2;
	}
	if (a->break_glass && !a->cfg) {
		fprintf(stderr, "umbra pki: --break-glass is recorded in the store: it needs -c CFG\n");
		return 2;
	}
	if (a->cfg && !(hooks && hooks->register_identity)) {
		/* Refuse rather than silently skip: the caller asked for it. */
		fprintf(stderr, "umbra pki: -c: store registration is not available in this build\n");
		return 1;
	}
	if (pki_ca_load(a->dir, &ca, err)) {
		fprintf(stderr, "umbra pki: %s\n", err);
		return 1;
	}
	struct pki_issue_opts o = {
		.name = a->name, .kind = kind, .team = a->team, .lifetime_s = life,
		.dns = a->dns, .n_dns = a->n_dns, .ip = a->ip, .n_ip = a->n_ip,
	};
	int rc = pki_issue_files(&ca, a->dir, &o, time(NULL), &id, err);
	pki_ca_clear(&ca);
	if (rc) {
		fprintf(stderr, "umbra pki: %s\n", err);
		return 1;
	}
	if (a->cfg && hooks->register_identity(a->cfg, &id, a->break_glass, err)) {
		fprintf(stderr, "umbra pki: certificate written but not registered: %s\n", err);
		return 1;
	}
	time_fmt(id.not_after, t);
	printf("issued %s/%s.crt and %s/%s.key: kind %s%s%s, expires %s, sha256 %s\n",
	       a->dir, id.name, a->dir, id.name, pki_kind_name(id.kind),
	       id.team[0] ? ", team " : "", id.team, t, id.fp);
	return 0;
}

static int cmd_list(struct pki_args *a)
{
	struct pki_identity *ids;
	size_t n;
	char err[PKI_ERR_LEN] = "", t[32];

	if (a->name)
		return usage();
	if (pki_list(a->dir, &ids, &n, err)) {
		fprintf(stderr, "umbra pki: %s\n", err);
		return 1;
	}
	printf("%-24s %-10s %-16s %-20s %s\n", "NAME", "KIND", "TEAM", "EXPIRES", "SHA256");
	for (size_t i = 0; i < n; i++) {
		time_fmt(ids[i].not_after, t);
		printf("%-24s %-10s %-16s %-20s %s\n", ids[i].name,
		       pki_kind_name(ids[i].kind), ids[i].team[0] ? ids[i].team : "-",
		       t, ids[i].fp);
	}
	free(ids);
	return 0;
}

static int cmd_token(struct pki_args *a)
{
	struct pki_ca ca;
	struct buf tok;
	char err[PKI_ERR_LEN] = "";
	enum pki_kind kind;
	int64_t life = PKI_TOKEN_LIFETIME_S;

	if (!a->name || !a->kind)
		return usage();
	if (pki_kind_parse(a->kind, &kind)) {
		fprintf(stderr, "umbra pki: unknown kind '%s'\n", a->kind);
		return 2;
	}
	if (a->expires && pki_lifetime_parse(a->expires, &life)) {
		fprintf(stderr, "umbra pki: bad --expires '%s' (e.g. 24h)\n", a->expires);
		return 2;
	}
	if (pki_ca_load(a->dir, &ca, err)) {
		fprintf(stderr, "umbra pki: %s\n", err);
		return 1;
	}
	buf_init(&tok, PKI_TOKEN_MAX);
	int rc = pki_token_make(&ca, a->name, kind, a->team, a->gateway, life,
				time(NULL), &tok, NULL, err);
	pki_ca_clear(&ca);
	if (rc)
		fprintf(stderr, "umbra pki: %s\n", err);
	else
		printf("%s\n", tok.p);
	buf_clear(&tok);
	return rc ? 1 : 0;
}

int pki_cmd_main(int argc, char **argv)
{
	struct pki_args a;
	char err[PKI_ERR_LEN] = "";
	static char cfg_dir[4096], cfg_gw[PKI_URL_MAX + 1];

	if (argc < 1 || args_parse(argc, argv, &a))
		return usage();
	/* With -c and no --dir the config names the CA (and the gateway).
	 * With --dir as well, -c is only for the store (and the gateway
	 * hint): a config without tls.client_ca is fine then. */
	if (a.cfg && hooks && hooks->cfg_resolve && strcmp(argv[0], "init") != 0) {
		if (hooks->cfg_resolve(a.cfg, cfg_dir, sizeof(cfg_dir), cfg_gw,
				       sizeof(cfg_gw), err) && !a.dir) {
			fprintf(stderr, "umbra pki: %s: %s\n", a.cfg, err);
			return 1;
		}
		if (!a.dir)
			a.dir = cfg_dir;
		if (!a.gateway && cfg_gw[0])
			a.gateway = cfg_gw;
	}
	if (!a.dir) {
		fprintf(stderr, "umbra pki: --dir (or -c CFG) is required\n");
		return 2;
	}
	if (strcmp(argv[0], "init") == 0) {
		if (a.name || a.kind)
			return usage();
		if (pki_ca_create(a.dir, time(NULL), err)) {
			fprintf(stderr, "umbra pki: %s\n", err);
			return 1;
		}
		printf("created %s/ca.crt and %s/ca.key\n", a.dir, a.dir);
		return 0;
	}
	if (strcmp(argv[0], "issue") == 0)
		return cmd_issue(&a);
	if (strcmp(argv[0], "list") == 0)
		return cmd_list(&a);
	if (strcmp(argv[0], "token") == 0)
		return cmd_token(&a);
	return usage();
}
