/* golden.h — golden files for the translator tests (included by
 * test_*.c after cmocka.h and core/core.h, with GOLDEN_DIR defined as
 * "tests/unit/golden/<format>/"; tests run from the repository root).
 *
 * UMBRA_UPDATE_GOLDEN=1 rewrites each expected file from the output
 * instead of comparing; review the diff before committing it. */
#ifndef UMB_TEST_GOLDEN_H
#define UMB_TEST_GOLDEN_H

/* The whole file GOLDEN_DIR name, NUL-terminated (free it). */
static char *golden_slurp(const char *name, size_t *n)
{
	char path[512];
	snprintf(path, sizeof path, GOLDEN_DIR "%s", name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s (run from the repository root)", path);
	struct buf b;
	buf_init(&b, 0);
	char tmp[4096];
	size_t k;
	while ((k = fread(tmp, 1, sizeof tmp, f)) > 0)
		assert_int_equal(buf_append(&b, tmp, k), 0);
	fclose(f);
	char *out = malloc(b.n + 1);
	memcpy(out, b.p ? b.p : "", b.n);
	out[b.n] = 0;
	*n = b.n;
	buf_clear(&b);
	return out;
}

/* got must equal the golden file `name` (one trailing newline in the file
 * is not part of the value). */
static void golden_check(const char *name, struct str got)
{
	if (getenv("UMBRA_UPDATE_GOLDEN")) {
		char path[512];
		snprintf(path, sizeof path, GOLDEN_DIR "%s", name);
		FILE *f = fopen(path, "wb");
		assert_non_null(f);
		fwrite(got.p, 1, got.n, f);
		fputc('\n', f);
		fclose(f);
		return;
	}
	size_t n;
	char *want = golden_slurp(name, &n);
	if (n && want[n - 1] == '\n')
		n--;
	if (n != got.n || (n && memcmp(want, got.p, n)))
		fail_msg("%s differs:\n--- want\n%.*s\n--- got\n%.*s", name, (int)n, want,
			 (int)got.n, got.p);
	free(want);
}

#endif
