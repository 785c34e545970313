/* keys_cmd.c — `umbra key create / list / revoke` on an open store.
 *
 * main.c loads the config, opens its store and hands over argv starting at
 * the subcommand. Output goes to the FILE pointers given to keys_cmd_run
 * so tests read it back; keys_cmd_main uses stdout and stderr.
 * A `-c CFG` / `--config CFG` left in argv is skipped.
 * Exit codes: 0 OK, 1 error (message on stderr), 2 usage. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "core/json.h"
#include "identity/keys.h"

#define KC_OK 0
#define KC_ERR 1
#define KC_USAGE 2

static const char kc_usage[] =
	"usage: umbra key create -c CFG --identity NAME [--expires 30d]"
	" [--label L]\n"
	"       umbra key list -c CFG [--identity NAME] [--json]\n"
	"       umbra key revoke -c CFG KEYID\n";

/* Take the value of option `name` at argv[*i] ("--name V" or "--name=V");
 * 1 if it matched (value set, *i advanced), 0 if not, -1 if the value is
 * missing. */
static int kc__opt(int argc, char **argv, int *i, const char *name,
		   const char **val)
{
	size_t n = strlen(name);
	const char *a = argv[*i];

	if (strncmp(a, name, n) != 0)
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (a[n] != 0)
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*val = argv[++*i];
	return 1;
}

static void kc__time(int64_t t, char out[32])
{
	if (t == 0)
		snprintf(out, 32, "never");
	else
		clock_rfc3339((uint64_t)t * 1000, out);
}

static int kc_create(int argc, char **argv, struct store *st, FILE *out,
		     FILE *err)
{
	const char *identity = NULL, *expires = NULL, *label = NULL;
	char token[KEYS_TOKEN_LEN + 1], when[32];
	struct store_identity id;
	struct store_key k;
	uint64_t ms = 0;
	int64_t now = (int64_t)time(NULL), exp = 0;
	int rc = KC_USAGE, m;

	for (int i = 1; i < argc; i++) {
		if ((m = kc__opt(argc, argv, &i, "--identity", &identity)) ||
		    (m = kc__opt(argc, argv, &i, "--expires", &expires)) ||
		    (m = kc__opt(argc, argv, &i, "--label", &label))) {
			if (m < 0) {
				fprintf(err, "umbra key create: %s needs a"
					     " value\n", argv[i]);
				goto usage;
			}
			continue;
		}
		fprintf(err, "umbra key create: unknown argument \"%s\"\n",
			argv[i]);
		goto usage;
	}
	if (!identity) {
		fprintf(err, "umbra key create: --identity is required\n");
		goto usage;
	}
	if (expires) {
		/* a bare number would be milliseconds: demand a real span */
		if (duration_parse_ms(str_cstr(expires), &ms) != UMB_OK ||
		    ms < 1000 || ms / 1000 > (uint64_t)INT32_MAX * 4) {
			fprintf(err, "umbra key create: bad --expires \"%s\""
				     " (e.g. 90m, 12h, 30d)\n", expires);
			goto usage;
		}
		exp = now + (int64_t)(ms / 1000);
	}
	rc = KC_ERR;
	if (store_identity_get(st, identity, &id) != UMB_OK) {
		fprintf(err, "umbra key create: identity \"%s\" is not"
			     " registered in the store\n", identity);
		goto out;
	}
	if (id.revoked_at) {
		fprintf(err, "umbra key create: identity \"%s\" is revoked\n",
			identity);
		goto out;
	}
	if (keys_create(st, identity, now, exp, label, &k, token) != UMB_OK) {
		fprintf(err, "umbra key create: %s\n", store_errmsg(st));
		goto out;
	}
	kc__time(exp, when);
	fprintf(out, "# key %s for identity %s (team %s), expires %s\n",
		k.id, id.name, id.team[0] ? id.team : "-", when);
	fprintf(out, "# shown once: the store keeps only its hash\n");
	fprintf(out, "%s\n", token);
	OPENSSL_cleanse(token, sizeof(token));
	rc = fflush(out) == 0 ? KC_OK : KC_ERR;
	goto out;
usage:
	fputs(kc_usage, err);
out:
	return rc;
}

struct kc_list_ctx {
	FILE *out;
	bool json;
	size_t n;
	int64_t now;
	struct buf b;
};

static int kc_list_cb(void *ctx, const struct store_key *k)
{
	struct kc_list_ctx *c = ctx;
	char created[32], expires[32];

	kc__time(k->created, created);
	kc__time(k->expires, expires);
	if (!c->json) {
		fprintf(c->out, "%-12s  %-20s  %-24s  %-24s  %-7s  %s\n", k->id,
			k->identity, created, expires, keys_status(k, c->now),
			k->label[0] ? k->label : "-");
		c->n++;
		return 0;
	}
	buf_reset(&c->b);
	if (buf_append_cstr(&c->b, c->n ? ",\n  " : "\n  ") ||
	    keys_write_json(&c->b, k, c->now))
		return UMB_ENOMEM;
	fwrite(c->b.p, 1, c->b.n, c->out);
	c->n++;
	return 0;
}

static int kc_list(int argc, char **argv, struct store *st, FILE *out,
		   FILE *err)
{
	struct kc_list_ctx c = { .out = out, .now = (int64_t)time(NULL) };
	const char *identity = NULL;
	int rc = KC_USAGE, m;

	buf_init(&c.b, 4096);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			c.json = true;
			continue;
		}
		if ((m = kc__opt(argc, argv, &i, "--identity", &identity))) {
			if (m < 0) {
				fprintf(err, "umbra key list: --identity needs"
					     " a value\n");
				goto usage;
			}
			continue;
		}
		fprintf(err, "umbra key list: unknown argument \"%s\"\n",
			argv[i]);
		goto usage;
	}
	rc = KC_ERR;
	if (identity && !store_name_valid(identity)) {
		fprintf(err, "umbra key list: invalid identity name\n");
		goto out;
	}
	if (c.json)
		fputs("[", out);
	else
		fprintf(out, "%-12s  %-20s  %-24s  %-24s  %-7s  %s\n", "ID",
			"IDENTITY", "CREATED", "EXPIRES", "STATUS", "LABEL");
	if (store_key_list(st, identity, kc_list_cb, &c) != 0) {
		fprintf(err, "umbra key list: %s\n", store_errmsg(st));
		goto out;
	}
	if (c.json)
		fputs(c.n ? "\n]\n" : "]\n", out);
	rc = fflush(out) == 0 ? KC_OK : KC_ERR;
	goto out;
usage:
	fputs(kc_usage, err);
out:
	buf_clear(&c.b);
	return rc;
}

static int kc_revoke(int argc, char **argv, struct store *st, FILE *out,
		     FILE *err)
{
	struct store_key k;
	int rc;

	if (argc != 2 || argv[1][0] == '-') {
		fputs(kc_usage, err);
		return KC_USAGE;
	}
	rc = store_key_get(st, argv[1], &k);
	if (rc == STORE_ENOTFOUND || rc == STORE_EINVAL) {
		fprintf(err, "umbra key revoke: no key \"%s\"\n", argv[1]);
		return KC_ERR;
	}
	if (rc != UMB_OK || store_key_revoke(st, argv[1],
					     (int64_t)time(NULL)) != UMB_OK) {
		fprintf(err, "umbra key revoke: %s\n", store_errmsg(st));
		return KC_ERR;
	}
	if (k.revoked_at)
		fprintf(out, "key %s (identity %s) was already revoked\n",
			k.id, k.identity);
	else
		fprintf(out, "revoked key %s (identity %s)\n", k.id,
			k.identity);
	return fflush(out) == 0 ? KC_OK : KC_ERR;
}

int keys_cmd_run(int argc, char **argv, struct store *st, FILE *out,
		 FILE *err)
{
	char **av = umb_calloc((size_t)(argc > 0 ? argc : 0) + 1, sizeof(*av));
	int ac = 0, rc = KC_USAGE;

	/* main.c has used `-c CFG` to open the store; it may be left anywhere
	 * in argv, so drop it here rather than make every caller do so */
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 ||
		    strcmp(argv[i], "--config") == 0) {
			i++;
			continue;
		}
		if (strncmp(argv[i], "--config=", 9) == 0)
			continue;
		av[ac++] = argv[i];
	}
	if (ac < 1) {
		fputs(kc_usage, err);
		goto out;
	}
	if (strcmp(av[0], "create") == 0) {
		rc = kc_create(ac, av, st, out, err);
	} else if (strcmp(av[0], "list") == 0) {
		rc = kc_list(ac, av, st, out, err);
	} else if (strcmp(av[0], "revoke") == 0) {
		rc = kc_revoke(ac, av, st, out, err);
	} else if (strcmp(av[0], "-h") == 0 || strcmp(av[0], "--help") == 0) {
		fputs(kc_usage, out);
		rc = KC_OK;
	} else {
		fprintf(err, "umbra key: unknown command \"%s\"\n", av[0]);
		fputs(kc_usage, err);
	}
out:
	free(av);
	return rc;
}

int keys_cmd_main(int argc, char **argv, struct store *st)
{
	return keys_cmd_run(argc, argv, st, stdout, stderr);
}
