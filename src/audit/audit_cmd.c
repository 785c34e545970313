/* audit_cmd.c — `umbra audit verify FILE... [--pubkey PEM] [--strict]` and
 * `umbra audit keygen --out DIR`: argument parsing and output only; the
 * work is in audit.c.
 *
 * verify takes the files oldest first. When every name is BASE or BASE.N
 * for one BASE (a shell glob such as audit.jsonl*), they are put in
 * rotation order first: highest N first, BASE last. */
#include "audit/audit_cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"

static int usage(void)
{
	fprintf(stderr,
		"usage: umbra audit verify FILE... [--pubkey PEM] [--strict]\n"
		"         FILEs oldest first (audit.jsonl.2 audit.jsonl.1 audit.jsonl);\n"
		"         --pubkey pins the checkpoint signing key; --strict also\n"
		"         requires the log to end with a signed checkpoint (closed logs)\n"
		"       umbra audit keygen --out DIR\n"
		"         writes DIR/audit.key (Ed25519, PEM, 0600) and DIR/audit.pub\n");
	return 2;
}

/* The rotation index of name relative to base: 0 for base itself, N for
 * base.N, -1 for anything else. */
static long rot_index(const char *base, const char *name)
{
	size_t bn = strlen(base);
	char *end;

	if (strcmp(base, name) == 0)
		return 0;
	if (strncmp(base, name, bn) != 0 || name[bn] != '.' || name[bn + 1] < '1' ||
	    name[bn + 1] > '9')
		return -1;
	long n = strtol(name + bn + 1, &end, 10);
	return *end || n <= 0 ? -1 : n;
}

/* Sort into rotation order when all names share one base (see above). */
static void rotation_order(const char **files, size_t n)
{
	const char *base = NULL;

	for (size_t i = 0; i < n && !base; i++) {
		const char *dot = strrchr(files[i], '.');
		char *end;
		if (dot && dot[1] && (strtol(dot + 1, &end, 10), !*end))
			continue;
		base = files[i];
	}
	if (!base)
		return; /* only numbered names: keep the given order */
	for (size_t i = 0; i < n; i++)
		if (rot_index(base, files[i]) < 0)
			return;
	/* insertion sort, descending index (n is small) */
	for (size_t i = 1; i < n; i++) {
		const char *f = files[i];
		long k = rot_index(base, f);
		size_t j = i;
		for (; j > 0; j--) {
			long kj = rot_index(base, files[j - 1]);
			if (kj == 0 ? k == 0 : kj >= k)
				break;
			files[j] = files[j - 1];
		}
		files[j] = f;
	}
}

static int cmd_verify(int argc, char **argv)
{
	const char **files = calloc((size_t)argc, sizeof(*files));
	const char *pub = NULL;
	size_t n = 0;
	int flags = 0, rc;

	if (!files)
		return 2;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--pubkey")) {
			if (i + 1 >= argc) {
				free(files);
				return usage();
			}
			pub = argv[++i];
		} else if (!strcmp(argv[i], "--strict")) {
			flags |= AUDIT_VERIFY_STRICT;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "umbra audit verify: unknown option %s\n", argv[i]);
			free(files);
			return usage();
		} else {
			files[n++] = argv[i];
		}
	}
	if (!n) {
		free(files);
		return usage();
	}
	rotation_order(files, n);
	/* The verdict goes to stdout when intact, stderr when not. */
	char *text = NULL;
	size_t tn = 0;
	FILE *mem = open_memstream(&text, &tn);
	if (!mem) {
		free(files);
		return 2;
	}
	rc = audit_verify(files, n, pub, flags, mem);
	fclose(mem);
	fputs(text ? text : "", rc == 0 ? stdout : stderr);
	if (rc == 1)
		fprintf(stderr, "audit verify: FAILED: the log was modified or damaged "
				"(the first bad line is named above)\n");
	free(text);
	free(files);
	return rc;
}

static int cmd_keygen(int argc, char **argv)
{
	const char *dir = NULL;
	char fp[AUDIT_HASH_HEX + 1], err[512];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--out") && i + 1 < argc)
			dir = argv[++i];
		else
			return usage();
	}
	if (!dir)
		return usage();
	if (audit_keygen(dir, fp, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	printf("wrote %s/audit.key (keep it secret) and %s/audit.pub\n", dir, dir);
	printf("key fp %s\n", fp);
	return 0;
}

int audit_cmd_main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (!strcmp(argv[1], "verify"))
		return cmd_verify(argc - 1, argv + 1);
	if (!strcmp(argv[1], "keygen"))
		return cmd_keygen(argc - 1, argv + 1);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage();
		return 0;
	}
	fprintf(stderr, "umbra audit: unknown subcommand '%s'\n", argv[1]);
	return usage();
}
