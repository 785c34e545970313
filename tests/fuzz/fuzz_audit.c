/* fuzz_audit.c — libFuzzer target for the audit verifier and the writer's
 * crash recovery (audit/audit.c).
 *
 * The first byte picks the mode, the rest is file content:
 *   bit 0  pin the fixed test key below as --pubkey
 *   bit 1  split the content at the first '\f' into two files (rotation)
 *   bit 2  --strict
 *   bit 3  recovery: also write the content to a temp file, audit_open it
 *          (which cuts a partial tail or refuses a broken one), append one
 *          record and close
 * Properties: nothing crashes; the verdict is 0, 1 or 2; and when the
 * content verified intact (without a pinned key), a log that audit_open
 * accepted still verifies after the append and the close — the writer
 * continues exactly the chain the verifier accepts. The content is copied
 * to exact-size heap blocks so ASan catches reads past the end. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "audit/audit.h"

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			__builtin_trap();                                      \
	} while (0)

/* A throwaway Ed25519 key for the fuzzer and its seed corpus only. */
static const char test_key[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MC4CAQAwBQYDK2VwBCIEIBC6Gzks0HuIaVX7goj3iFL11YwZvoAv4F7PEtZEv1z5\n"
	"-----END PRIVATE KEY-----\n";

static char dir[64], log_path[96], key_path[96];

static void setup_once(void)
{
	if (dir[0])
		return;
	snprintf(dir, sizeof(dir), "/tmp/umbra-fuzz-audit-XXXXXX");
	CHECK(mkdtemp(dir));
	snprintf(log_path, sizeof(log_path), "%s/audit.jsonl", dir);
	snprintf(key_path, sizeof(key_path), "%s/audit.key", dir);
	FILE *f = fopen(key_path, "w");
	CHECK(f);
	fputs(test_key, f);
	fclose(f);
	log_min_level = LOG_ERROR + 1; /* quiet */
}

static void recovery(const uint8_t *p, size_t n, int intact)
{
	char err[512];
	struct audit_opts o = { .path = log_path, .key_path = key_path, .checkpoint_every = 2 };
	char id[] = "fuzz";
	struct audit_record r = { .id = id, .decision = "allow", .detectors_json = "{}" };

	unlink(log_path);
	FILE *f = fopen(log_path, "w");
	CHECK(f);
	if (n)
		CHECK(fwrite(p, 1, n, f) == n);
	fclose(f);
	struct audit_log *l = audit_open(&o, err, sizeof(err));
	if (!l)
		return;
	CHECK(audit_append(l, &r) == 0);
	audit_close(l);
	const char *files[] = { log_path };
	int rc = audit_verify(files, 1, NULL, 0, NULL);
	CHECK(!intact || rc == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	setup_once();
	uint8_t mode = data[0];
	const uint8_t *p = data + 1;
	size_t n = size - 1, cut = n;
	if (mode & 2) {
		const uint8_t *ff = memchr(p, '\f', n);
		if (ff)
			cut = (size_t)(ff - p);
	}
	char *a = malloc(cut ? cut : 1), *b = NULL;
	CHECK(a);
	memcpy(a, p, cut);
	struct str files[2] = { str_make(a, cut), STR_NULL };
	const char *names[2] = { "a", "b" };
	size_t nf = 1;
	if (cut < n) {
		size_t bn = n - cut - 1;
		b = malloc(bn ? bn : 1);
		CHECK(b);
		memcpy(b, p + cut + 1, bn);
		files[1] = str_make(b, bn);
		nf = 2;
	}
	int flags = mode & 4 ? AUDIT_VERIFY_STRICT : 0;
	int rc = audit_verify_mem(files, names, nf, mode & 1 ? test_key : NULL,
				  mode & 1 ? sizeof(test_key) - 1 : 0, flags, NULL);
	CHECK(rc == 0 || rc == 1);
	if (mode & 8) {
		int plain = audit_verify_mem(files, names, 1, NULL, 0, 0, NULL);
		recovery(p, cut, plain == 0);
	}
	free(a);
	free(b);
	return 0;
}
