/* main.c — command-line dispatch only. */
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "http/http.h"
#include "identity/identity_cmd.h"
#include "identity/pki.h"
#include "audit/audit_cmd.h"
#include "spend/usage_cmd.h"
#include "routing/route_cmd.h"
#include "tunnel/connector.h"

static int usage(FILE *out)
{
	fprintf(out,
		"usage: umbra <command> [options]\n"
		"\n"
		"  serve [-c FILE]     run the gateway (embedded default config without -c)\n"
		"  check -c FILE       validate a config and print model -> provider -> endpoints\n"
		"  pki init|issue|list|token|revoke ...  the built-in CA and identities\n"
		"  key create|list|revoke -c FILE ...    virtual API keys in the config's store\n"
		"  enroll TOKEN --gateway URL --out DIR  get a certificate with a one-time token\n"
		"  connect -c FILE     run a dark-service connector (docs/tunnel.md)\n"
		"  route -c FILE --explain  routing decisions for chat requests on stdin (JSON lines)\n"
		"  audit verify FILE... [--pubkey K] | keygen --out DIR   the audit log (docs/audit.md)\n"
		"  usage -c FILE [--team T] [--identity I] [--since DATE] [--by model|day|identity|team] [--json|--csv]\n"
		"  version             print the version\n");
	return out == stderr ? 2 : 0;
}

/* Find "-c FILE" / "--config FILE" among argv[2..]. */
static int opt_config(int argc, char **argv, const char **path)
{
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "umbra: %s needs a file\n", argv[i]);
				return -1;
			}
			*path = argv[++i];
		} else {
			fprintf(stderr, "umbra: unknown option %s\n", argv[i]);
			return -1;
		}
	}
	return 0;
}

static int cmd_check(const char *path)
{
	struct config_err err;
	struct config *cfg = path ? config_load_file(path, &err) : config_load_default(&err);
	if (!cfg) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	config_print_table(cfg, stdout);
	printf("config OK\n");
	config_free(cfg);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	const char *cmd = argv[1];
	if (!strcmp(cmd, "help") || !strcmp(cmd, "-h") || !strcmp(cmd, "--help"))
		return usage(stdout);
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("umbra %s\n", UMBRA_VERSION);
		return 0;
	}
	const char *path = NULL;
	if (!strcmp(cmd, "serve")) {
		if (opt_config(argc, argv, &path))
			return 2;
		struct serve_opts o = { .config_path = path };
		return http_serve(&o);
	}
	if (!strcmp(cmd, "check")) {
		if (opt_config(argc, argv, &path))
			return 2;
		return cmd_check(path);
	}
	if (!strcmp(cmd, "key") || !strcmp(cmd, "pki"))
		return identity_cmd_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "enroll"))
		return enroll_cmd_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "connect"))
		return connector_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "route"))
		return route_cmd_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "audit"))
		return audit_cmd_main(argc - 1, argv + 1);
	if (!strcmp(cmd, "usage"))
		return usage_cmd_main(argc - 1, argv + 1);
	fprintf(stderr, "umbra: unknown command '%s'\n", cmd);
	return usage(stderr);
}
