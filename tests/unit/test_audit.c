/* test_audit.c — unit tests for audit/audit.c: a written log verifies and
 * its hashes match the documented definition (recomputed here with plain
 * OpenSSL); every kind of tampering (an edited byte, a deleted, inserted,
 * swapped or forged line, a rechained edit, truncation mid-line and at a
 * line boundary, a corrupt signature, a wrong count, the wrong --pubkey)
 * fails naming the right line and seq; rotation keeps one chain across
 * files; recovery cuts a partial line and refuses a broken tail; four
 * threads get unique consecutive seqs; fsync policies and timed
 * checkpoints work; a child killed with SIGKILL mid-append leaves a log
 * that reopens and verifies. The append cost is printed, not asserted.
 * Everything happens in a temp dir. Runs under ASan+UBSan too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "audit/audit.h"
#include "audit/audit_cmd.h"
#include "core/json.h"

static char tmp_root[] = "/tmp/umbra-test-audit-XXXXXX";
static char keydir[256], key[300], pub[300], key2dir[256], pub2[300];
static int dir_seq;

/* ---- helpers ---- */

/* A fresh empty directory under root; returns its path in out. */
static void fresh_dir(char *out, size_t cap)
{
	snprintf(out, cap, "%s/t%d", tmp_root, ++dir_seq);
	assert_int_equal(mkdir(out, 0700), 0);
}

static void rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (e->d_type == DT_DIR)
			rm_tree(p);
		else
			unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

/* A fixed-size list of lines read from / written to a file. */
struct lines {
	char *v[4096];
	size_t n;
	char *tail; /* bytes after the last newline, if any */
};

static void lines_read(const char *path, struct lines *L)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	assert_non_null(f);
	memset(L, 0, sizeof(*L));
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] != '\n') {
			L->tail = strdup(line);
			break;
		}
		line[n - 1] = 0;
		assert_true(L->n < 4096);
		L->v[L->n++] = strdup(line);
	}
	free(line);
	fclose(f);
}

static void lines_write(const char *path, const struct lines *L)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	for (size_t i = 0; i < L->n; i++)
		if (L->v[i])
			fprintf(f, "%s\n", L->v[i]);
	if (L->tail)
		fputs(L->tail, f);
	fclose(f);
}

static void lines_free(struct lines *L)
{
	for (size_t i = 0; i < L->n; i++)
		free(L->v[i]);
	free(L->tail);
	memset(L, 0, sizeof(*L));
}

/* The documented hash, independently: hex SHA-256 of the line up to the
 * last ,"hash": */
static void doc_hash(const char *line, char out[65])
{
	const char *h = NULL;
	unsigned char d[32];
	unsigned int dn;

	for (const char *p = line; (p = strstr(p, ",\"hash\":\"")); p++)
		h = p;
	assert_non_null(h);
	assert_int_equal(EVP_Digest(line, (size_t)(h - line), d, &dn, EVP_sha256(), NULL), 1);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static const char *member(const char *line, const char *name)
{
	char k[64];

	snprintf(k, sizeof(k), ",\"%s\":\"", name);
	const char *p = NULL;
	for (const char *q = line; (q = strstr(q, k)); q++)
		p = q;
	return p ? p + strlen(k) : NULL;
}

/* Recompute prev and hash of lines[from..] so each line chains onto the
 * previous one: what an attacker who edits a line must do to keep the
 * hashes consistent. */
static void rechain(struct lines *L, size_t from)
{
	for (size_t i = from; i < L->n; i++) {
		char h[65];
		if (i > 0) {
			char *pv = (char *)member(L->v[i], "prev");
			memcpy(pv, member(L->v[i - 1], "hash"), 64);
		}
		doc_hash(L->v[i], h);
		memcpy((char *)member(L->v[i], "hash"), h, 64);
	}
}

static struct audit_record rec(int i, char *id, size_t idn)
{
	snprintf(id, idn, "req-%06d", i);
	return (struct audit_record){
		.id = id, .identity = "alice", .team = "payments", .src = "127.0.0.1:5000",
		.cert_fp = "ab12", .dialect = "openai", .model_requested = "gpt-4o",
		.route = "fast", .route_method = "heuristic", .provider = "openai",
		.endpoint = "primary", .model = "gpt-4o-mini",
		.decision = i % 7 == 3 ? "deny" : "allow", .reason = i % 7 == 3 ? "budget" : NULL,
		.detectors_json = "{\"email\":1}", .prompt_tokens = 10 + (uint64_t)i,
		.completion_tokens = 20, .cost_usd = 0.000125, .status = i % 7 == 3 ? 429 : 200,
		.latency_ms = 12.5,
	};
}

/* Write n request lines to dir/audit.jsonl and close (final checkpoint). */
static void write_log(const char *path, int n, int cp_every, const char *keyp)
{
	char err[256] = "";
	struct audit_opts o = { .path = path, .key_path = keyp, .checkpoint_every = cp_every };
	struct audit_log *l = audit_open(&o, err, sizeof(err));
	char id[32];

	assert_non_null(l);
	for (int i = 0; i < n; i++) {
		struct audit_record r = rec(i, id, sizeof(id));
		assert_int_equal(audit_append(l, &r), 0);
	}
	audit_close(l);
}

/* Verify files; the report text in *out (caller frees). */
static int verify(const char *const *files, size_t n, const char *pubkey, int flags, char **out)
{
	size_t tn;
	FILE *m = open_memstream(out, &tn);
	int rc = audit_verify(files, n, pubkey, flags, m);

	fclose(m);
	return rc;
}

static int verify1(const char *path, const char *pubkey, char **out)
{
	return verify(&path, 1, pubkey, 0, out);
}

/* Expect verify to fail naming "PATH:LINE: seq SEQ:" and `what`. */
static void expect_bad(const char *path, const char *pubkey, int line, const char *seq,
		       const char *what)
{
	char *rep = NULL, want[512];
	int rc = verify1(path, pubkey, &rep);

	snprintf(want, sizeof(want), "%s:%d: seq %s: ", path, line, seq);
	if (rc != 1 || !strstr(rep, want) || (what && !strstr(rep, what)))
		fprintf(stderr, "rc=%d want [%s] + [%s], report:\n%s", rc, want,
			what ? what : "", rep);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(rep, want));
	if (what)
		assert_non_null(strstr(rep, what));
	free(rep);
}

static void expect_ok(const char *path, const char *pubkey)
{
	char *rep = NULL;
	int rc = verify1(path, pubkey, &rep);

	if (rc != 0)
		fprintf(stderr, "report:\n%s", rep);
	assert_int_equal(rc, 0);
	free(rep);
}

/* A fresh log of 30 requests, checkpoint every 10, signed: lines are
 * r1..r10 c11 r12..r21 c22 r23..r32 c33 — checkpoints at lines 11, 22, 33. */
static void std_log(char *path, size_t cap)
{
	char dir[256];

	fresh_dir(dir, sizeof(dir));
	snprintf(path, cap, "%s/audit.jsonl", dir);
	write_log(path, 30, 10, key);
}

/* ---- tests ---- */

static void test_write_and_verify(void **state)
{
	char path[300], *rep = NULL;
	struct lines L;
	(void)state;

	std_log(path, sizeof(path));
	lines_read(path, &L);
	assert_int_equal(L.n, 33);
	assert_null(L.tail);
	for (size_t i = 0; i < L.n; i++) {
		char h[65], s[32];
		struct json_val v, root;
		int64_t seq;
		/* every line is JSON with the right seq, prev and hash */
		assert_int_equal(json_parse(L.v[i], strlen(L.v[i]), &root, NULL), 0);
		assert_true(json_obj_get(root, "seq", &v));
		assert_int_equal(json_get_i64(v, &seq), 0);
		assert_int_equal(seq, (int64_t)i + 1);
		doc_hash(L.v[i], h);
		assert_memory_equal(member(L.v[i], "hash"), h, 64);
		assert_memory_equal(member(L.v[i], "prev"),
				    i ? member(L.v[i - 1], "hash")
				      : "0000000000000000000000000000000000000000000000000000000000000000",
				    64);
		snprintf(s, sizeof(s), "\"seq\":%zu,", i + 1);
		assert_non_null(strstr(L.v[i], s));
		bool cp = (i + 1) % 11 == 0;
		assert_int_equal(strncmp(L.v[i], cp ? "{\"type\":\"checkpoint\"" : "{\"type\":\"request\"",
					 cp ? 20 : 17),
				 0);
		if (cp) {
			assert_non_null(strstr(L.v[i], "\"count\":10,"));
			assert_non_null(strstr(L.v[i], "\"sig\":\""));
		}
	}
	const char *r0 = L.v[0];
	for (const char *f = "ts id identity team src cert_fp dialect model_requested route "
			     "route_method provider endpoint model decision reason detectors "
			     "prompt_tokens completion_tokens cost_usd status latency_ms prev hash";
	     *f;) {
		char k[40];
		size_t n = strcspn(f, " ");
		snprintf(k, sizeof(k), "\"%.*s\":", (int)n, f);
		assert_non_null(strstr(r0, k));
		f += n + (f[n] == ' ');
	}
	assert_null(strstr(r0, "payload_hash"));
	lines_free(&L);

	assert_int_equal(verify1(path, pub, &rep), 0);
	assert_non_null(strstr(rep, "33 lines (30 requests, 3 checkpoints, 0 recoveries)"));
	assert_non_null(strstr(rep, "last signed seq 33"));
	assert_non_null(strstr(rep, "matches --pubkey"));
	assert_non_null(strstr(rep, "unsigned: 0 lines"));
	free(rep);
	/* without --pubkey: consistent key, not pinned */
	assert_int_equal(verify1(path, NULL, &rep), 0);
	assert_non_null(strstr(rep, "not pinned"));
	free(rep);
	/* --strict holds for a cleanly closed log */
	const char *f1[] = { path };
	assert_int_equal(verify(f1, 1, pub, AUDIT_VERIFY_STRICT, &rep), 0);
	free(rep);
}

static void test_fields_escaped(void **state)
{
	char dir[256], path[300], err[256], ph[65];
	struct lines L;
	struct json_val root, v;
	struct buf b;
	(void)state;

	fresh_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	struct audit_opts o = { .path = path };
	struct audit_log *l = audit_open(&o, err, sizeof(err));
	assert_non_null(l);
	audit_payload_hash("hello", 5, ph);
	struct audit_record r = {
		.id = "x\",\"hash\":\"00\"}\n{\"type\":\"request\"", /* injection attempt */
		.identity = "\xff\xfe bad utf8 \x01\t", .decision = "deny",
		.reason = "quote \" backslash \\ newline \n",
		.detectors_json = "{\"email\":\n 2,\r\n\"phone\":1}", .payload_hash = ph,
		.cost_usd = 0.0 / 0.0, .latency_ms = 1.0 / 0.0,
	};
	assert_int_equal(audit_append(l, &r), 0);
	r.detectors_json = "{\"email\":"; /* invalid: written as {} */
	r.payload_hash = "not-a-hash";    /* invalid: omitted */
	assert_int_equal(audit_append(l, &r), 0);
	r.detectors_json = "[1,2]"; /* not an object */
	assert_int_equal(audit_append(l, &r), 0);
	r.decision = "maybe";
	assert_int_equal(audit_append(l, &r), UMB_ERR);
	r.decision = NULL;
	assert_int_equal(audit_append(l, &r), UMB_ERR);
	char longs[3000];
	memset(longs, 'a', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = 0;
	r.decision = "allow";
	r.reason = longs;
	assert_int_equal(audit_append(l, &r), 0);
	audit_close(l);

	lines_read(path, &L);
	assert_int_equal(L.n, 5); /* 4 requests + the closing checkpoint */
	buf_init(&b, 0);
	assert_int_equal(json_parse(L.v[0], strlen(L.v[0]), &root, NULL), 0);
	assert_true(json_obj_get(root, "id", &v));
	assert_int_equal(json_str_decode(v, &b), 0);
	assert_string_equal(b.p, r.id ? "x\",\"hash\":\"00\"}\n{\"type\":\"request\"" : "");
	buf_reset(&b);
	assert_true(json_obj_get(root, "identity", &v));
	assert_int_equal(json_str_decode(v, &b), 0);
	assert_string_equal(b.p, "\xef\xbf\xbd\xef\xbf\xbd bad utf8 \x01\t");
	assert_non_null(strstr(L.v[0], "\"detectors\":{\"email\":  2,  \"phone\":1}"));
	assert_non_null(strstr(L.v[0], "\"payload_hash\":\"2cf24dba5fb0a30e26e83b2ac5b9e29e"));
	assert_non_null(strstr(L.v[0], "\"cost_usd\":0,"));
	assert_non_null(strstr(L.v[0], "\"latency_ms\":0,"));
	assert_non_null(strstr(L.v[0], "\"team\":null"));
	assert_non_null(strstr(L.v[1], "\"detectors\":{},"));
	assert_null(strstr(L.v[1], "payload_hash"));
	assert_non_null(strstr(L.v[2], "\"detectors\":{},"));
	/* the long reason is cut to AUDIT_FIELD_MAX */
	assert_int_equal(json_parse(L.v[3], strlen(L.v[3]), &root, NULL), 0);
	assert_true(json_obj_get(root, "reason", &v));
	assert_int_equal(v.raw.n, AUDIT_FIELD_MAX + 2);
	buf_clear(&b);
	lines_free(&L);
	expect_ok(path, NULL);
}

static void test_edit_byte(void **state)
{
	char path[300];
	struct lines L;
	(void)state;

	std_log(path, sizeof(path));
	lines_read(path, &L);
	char *m = strstr(L.v[4], "gpt-4o-mini");
	m[4] = '5'; /* gpt-5o-mini */
	lines_write(path, &L);
	lines_free(&L);
	expect_bad(path, pub, 5, "5", "hash mismatch");
	expect_bad(path, NULL, 5, "5", "hash mismatch");
}

static void test_rechained_edit(void **state)
{
	char path[300];
	struct lines L;
	(void)state;

	/* An edit with every later hash recomputed: the chain is consistent
	 * again, but the next checkpoint's signature covers the old prev. */
	std_log(path, sizeof(path));
	lines_read(path, &L);
	char *m = strstr(L.v[4], "\"prompt_tokens\":14");
	m[16] = '9';
	rechain(&L, 4);
	lines_write(path, &L);
	expect_bad(path, pub, 11, "11", "bad checkpoint signature");
	expect_bad(path, NULL, 11, "11", "bad checkpoint signature");
	/* the same edit after the last checkpoint is not detectable */
	lines_free(&L);
	std_log(path, sizeof(path));
	lines_read(path, &L);
	free(L.v[32]); /* drop the closing checkpoint, as a truncation would */
	L.n = 32;
	m = strstr(L.v[30], "\"prompt_tokens\":");
	m[16] = '9';
	rechain(&L, 30);
	lines_write(path, &L);
	lines_free(&L);
	char *rep = NULL;
	assert_int_equal(verify1(path, pub, &rep), 0);
	assert_non_null(strstr(rep, "unsigned: 10 lines after the last signed checkpoint"));
	free(rep);
}

static void test_delete_line(void **state)
{
	char path[300];
	struct lines L;
	(void)state;

	std_log(path, sizeof(path));
	lines_read(path, &L);
	free(L.v[4]);
	L.v[4] = NULL; /* line 5 (seq 5) gone: line 5 is now seq 6 */
	lines_write(path, &L);
	lines_free(&L);
	expect_bad(path, pub, 5, "6", "seq gap: expected 5, found 6");
	/* deleting the first line */
	std_log(path, sizeof(path));
	lines_read(path, &L);
	free(L.v[0]);
	L.v[0] = NULL;
	lines_write(path, &L);
	lines_free(&L);
	/* alone it looks like a mid-chain start; the count at seq 11 tells */
	expect_bad(path, pub, 10, "11", "count 10 does not match");
}

static void test_insert_forged(void **state)
{
	char path[300];
	struct lines L;
	(void)state;

	/* a forged line with its own correct hash but a made-up prev */
	std_log(path, sizeof(path));
	lines_read(path, &L);
	memmove(&L.v[5], &L.v[4], (L.n - 4) * sizeof(char *));
	L.n++;
	L.v[4] = strdup(L.v[5]);
	char *m = strstr(L.v[4], "\"identity\":\"alice\"");
	memcpy(m + 12, "mallo", 5);
	memset((char *)member(L.v[4], "prev"), 'a', 64);
	char h[65];
	doc_hash(L.v[4], h);
	memcpy((char *)member(L.v[4], "hash"), h, 64);
	lines_write(path, &L);
	expect_bad(path, pub, 5, "5", "prev does not match");
	/* with the right prev too: then the original line 5 no longer fits */
	memcpy((char *)member(L.v[4], "prev"), member(L.v[3], "hash"), 64);
	doc_hash(L.v[4], h);
	memcpy((char *)member(L.v[4], "hash"), h, 64);
	lines_write(path, &L);
	lines_free(&L);
	expect_bad(path, pub, 6, "5", "seq goes back: expected 6, found 5");
}

static void test_swap_lines(void **state)
{
	char path[300];
	struct lines L;
	(void)state;

	std_log(path, sizeof(path));
	lines_read(path, &L);
	char *t = L.v[4];
	L.v[4] = L.v[5];
	L.v[5] = t;
	lines_write(path, &L);
	lines_free(&L);
	expect_bad(path, pub, 5, "6", "seq gap");
}

static void test_truncate(void **state)
{
	char path[300], *rep = NULL;
	struct lines L;
	struct stat st;
	(void)state;

	/* mid-line: the partial last line is reported */
	std_log(path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(truncate(path, st.st_size - 40), 0);
	expect_bad(path, pub, 33, "? (after 32)", "truncated: partial last line");

	/* at a line boundary just before the closing checkpoint: provably
	 * nothing is wrong with what is left, but the tail is unsigned */
	std_log(path, sizeof(path));
	lines_read(path, &L);
	free(L.v[32]);
	L.n = 32;
	lines_write(path, &L);
	lines_free(&L);
	assert_int_equal(verify1(path, pub, &rep), 0);
	assert_non_null(strstr(rep, "last signed seq 22"));
	assert_non_null(strstr(rep, "unsigned: 10 lines after the last signed checkpoint are not covered"));
	free(rep);
	/* --strict expects a closed log to end with a signed checkpoint */
	const char *f1[] = { path };
	assert_int_equal(verify(f1, 1, pub, AUDIT_VERIFY_STRICT, &rep), 1);
	assert_non_null(strstr(rep, ":32: seq 32: --strict"));
	free(rep);

	/* lines cut out just before a checkpoint (kept): its count and the
	 * chain tell */
	std_log(path, sizeof(path));
	lines_read(path, &L);
	for (int i = 17; i < 21; i++) {
		free(L.v[i]);
		L.v[i] = NULL; /* seq 18..21 */
	}
	lines_write(path, &L);
	lines_free(&L);
	expect_bad(path, pub, 18, "22", "seq gap: expected 18, found 22");
}

static void test_bad_signature(void **state)
{
	char path[300];
	struct lines L;
	(void)state;

	std_log(path, sizeof(path));
	lines_read(path, &L);
	char *s = (char *)member(L.v[21], "sig");
	s[10] = s[10] == 'A' ? 'B' : 'A';
	rechain(&L, 21); /* keep the hashes right: only the signature is off */
	lines_write(path, &L);
	lines_free(&L);
	expect_bad(path, pub, 22, "22", "bad checkpoint signature");
	expect_bad(path, NULL, 22, "22", "bad checkpoint signature");
}

static void test_count_mismatch(void **state)
{
	char path[300];
	struct lines L;
	(void)state;

	std_log(path, sizeof(path));
	lines_read(path, &L);
	char *c = strstr(L.v[10], "\"count\":10");
	c[9] = '1'; /* count 11 */
	rechain(&L, 10);
	lines_write(path, &L);
	lines_free(&L);
	expect_bad(path, pub, 11, "11", "checkpoint count 11 does not match the 10 lines");
}

static void test_wrong_pubkey(void **state)
{
	char path[300], *rep = NULL;
	(void)state;

	std_log(path, sizeof(path));
	expect_bad(path, pub2, 11, "11", "not the --pubkey key");
	/* the private key file works as --pubkey too */
	expect_ok(path, key);
	/* a key file that is not a key */
	assert_int_equal(verify1(path, path, &rep), 2);
	free(rep);
	/* a log re-signed with another key: caught by --pubkey, and by the
	 * key fp consistency when only part was re-signed */
	char dir[256], p2[300];
	fresh_dir(dir, sizeof(dir));
	snprintf(p2, sizeof(p2), "%s/audit.jsonl", dir);
	char key2[300];
	snprintf(key2, sizeof(key2), "%s/audit.key", key2dir);
	write_log(p2, 30, 10, key2);
	expect_ok(p2, NULL);
	expect_bad(p2, pub, 11, "11", "not the --pubkey key");
	struct lines A, B;
	lines_read(path, &A);
	lines_read(p2, &B);
	/* a file whose first two checkpoints come from key 1, the last from key 2 */
	free(A.v[32]);
	A.v[32] = B.v[32];
	B.v[32] = NULL;
	lines_write(path, &A);
	lines_free(&A);
	lines_free(&B);
	/* (the chain breaks first: prev differs; re-chain to reach the key check) */
	lines_read(path, &A);
	rechain(&A, 32);
	lines_write(path, &A);
	lines_free(&A);
	expect_bad(path, NULL, 33, "33", "checkpoint key changed");
}

static void test_unsigned_checkpoints(void **state)
{
	char dir[256], path[300], *rep = NULL;
	(void)state;

	fresh_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	write_log(path, 12, 5, NULL);
	assert_int_equal(verify1(path, NULL, &rep), 0);
	assert_non_null(strstr(rep, "3 checkpoints"));
	assert_non_null(strstr(rep, "signatures: none"));
	free(rep);
	expect_bad(path, pub, 6, "6", "not signed");
}

static void test_rotation(void **state)
{
	char dir[256], path[300], err[256], id[32], *rep = NULL;
	char n1[310], n2[310], n3[310], n4[310];
	(void)state;

	fresh_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	struct audit_opts o = { .path = path, .key_path = key, .max_bytes = 8192, .keep = 3,
				.checkpoint_every = 25 };
	struct audit_log *l = audit_open(&o, err, sizeof(err));
	assert_non_null(l);
	for (int i = 0; i < 60; i++) {
		struct audit_record r = rec(i, id, sizeof(id));
		assert_int_equal(audit_append(l, &r), 0);
	}
	struct audit_stats st;
	audit_get_stats(l, &st);
	assert_true(st.rotations >= 3);
	audit_close(l);
	snprintf(n1, sizeof(n1), "%s.1", path);
	snprintf(n2, sizeof(n2), "%s.2", path);
	snprintf(n3, sizeof(n3), "%s.3", path);
	snprintf(n4, sizeof(n4), "%s.4", path);
	struct stat sb;
	assert_int_equal(stat(n3, &sb), 0);
	assert_true(sb.st_size <= 8192);
	assert_int_equal(stat(n4, &sb), -1); /* keep = 3 */
	/* rotated files end with a checkpoint */
	struct lines L;
	lines_read(n1, &L);
	assert_int_equal(strncmp(L.v[L.n - 1], "{\"type\":\"checkpoint\"", 20), 0);
	lines_free(&L);

	/* the kept files verify as one chain, starting mid-chain */
	const char *all[] = { n3, n2, n1, path };
	assert_int_equal(verify(all, 4, pub, 0, &rep), 0);
	assert_non_null(strstr(rep, "4 files"));
	assert_non_null(strstr(rep, "note: the chain starts at seq"));
	free(rep);
	/* the newest file alone */
	expect_ok(path, pub);
	/* the CLI puts a glob's order right */
	char *argv[] = { "audit", "verify", path, n1, n3, n2, "--pubkey", pub, NULL };
	assert_int_equal(audit_cmd_main(8, argv), 0);
	/* a missing middle file breaks the chain at the boundary */
	const char *gap[] = { n3, n1, path };
	assert_int_equal(verify(gap, 3, pub, 0, &rep), 1);
	char want[400];
	snprintf(want, sizeof(want), "%s:1: seq ", n1);
	assert_non_null(strstr(rep, want));
	assert_non_null(strstr(rep, "seq gap"));
	free(rep);
	/* the wrong order */
	const char *rev[] = { n1, n2, n3, path };
	assert_int_equal(verify(rev, 4, pub, 0, &rep), 1);
	free(rep);
	/* reopening continues the chain in the live file */
	l = audit_open(&o, err, sizeof(err));
	assert_non_null(l);
	struct audit_record r = rec(99, id, sizeof(id));
	assert_int_equal(audit_append(l, &r), 0);
	audit_close(l);
	const char *all2[] = { n3, n2, n1, path };
	assert_int_equal(verify(all2, 4, pub, AUDIT_VERIFY_STRICT, &rep), 0);
	free(rep);
}

static void test_rotation_empty_live(void **state)
{
	char dir[256], path[300], n1[310], err[256], id[32], *rep = NULL;
	(void)state;

	/* a crash after the rename, before any line in the new file */
	fresh_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	snprintf(n1, sizeof(n1), "%s.1", path);
	write_log(path, 5, 0, key);
	assert_int_equal(rename(path, n1), 0);
	struct audit_opts o = { .path = path, .key_path = key };
	struct audit_log *l = audit_open(&o, err, sizeof(err));
	assert_non_null(l);
	struct audit_record r = rec(1, id, sizeof(id));
	assert_int_equal(audit_append(l, &r), 0);
	audit_close(l);
	const char *all[] = { n1, path };
	assert_int_equal(verify(all, 2, pub, AUDIT_VERIFY_STRICT, &rep), 0);
	assert_non_null(strstr(rep, "seq 1..8"));
	free(rep);
}

static void test_recovery(void **state)
{
	char dir[256], path[300], err[256], id[32];
	struct lines L;
	(void)state;

	fresh_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	struct audit_opts o = { .path = path, .key_path = key, .checkpoint_every = 4 };
	struct audit_log *l = audit_open(&o, err, sizeof(err));
	assert_non_null(l);
	for (int i = 0; i < 6; i++) {
		struct audit_record r = rec(i, id, sizeof(id));
		assert_int_equal(audit_append(l, &r), 0);
	}
	/* a second writer is refused while the first holds the lock */
	assert_null(audit_open(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "in use"));
	/* A stray half line lands while the log is open (something else
	 * wrote to the file); the next batch of lines then fuses with it.
	 * Open checks only the last line (here the closing checkpoint, which
	 * is whole), so the damage is verify's to find, and it does. */
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"type\":\"request\",\"seq\":8,\"ts\":\"20", 34), 34);
	close(fd);
	audit_close(l);
	char *rep = NULL;
	assert_int_equal(verify1(path, pub, &rep), 1);
	free(rep);
	/* a last line that does not verify: open refuses to continue */
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"type\":\"request\",\"seq\":99,\"prev\":\"x\",\"hash\":\"y\"}\n", 50), 50);
	close(fd);
	assert_null(audit_open(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "does not verify"));
	assert_non_null(strstr(err, "refusing to continue a broken chain"));

	/* the real case (a crash mid-write): a clean file plus a partial line */
	fresh_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	o.path = path;
	write_log(path, 6, 4, key); /* r1-4 c5 r6 r7 c8 */
	fd = open(path, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "{\"type\":\"request\",\"seq\":9,\"ts\":\"20", 34), 34);
	close(fd);
	l = audit_open(&o, err, sizeof(err));
	assert_non_null(l);
	struct audit_stats st;
	audit_get_stats(l, &st);
	assert_int_equal(st.cut_bytes, 34);
	assert_int_equal(st.seq, 9); /* the recovery line */
	for (int i = 0; i < 3; i++) {
		struct audit_record r = rec(i, id, sizeof(id));
		assert_int_equal(audit_append(l, &r), 0);
	}
	audit_close(l);
	lines_read(path, &L);
	assert_null(L.tail);
	assert_int_equal(L.n, 13); /* r1-4 c5 r6 r7 c8 recovery9 r10-12 c13 */
	assert_int_equal(strncmp(L.v[8], "{\"type\":\"recovery\",\"seq\":9,", 27), 0);
	assert_non_null(strstr(L.v[8], "\"cut_bytes\":34,"));
	lines_free(&L);
	assert_int_equal(verify1(path, pub, &rep), 0);
	assert_non_null(strstr(rep, "1 recoveries cutting 34 bytes"));
	free(rep);

	/* a file that is nothing but a partial line starts a new chain */
	fresh_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	o.path = path;
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_int_equal(write(fd, "{\"type\":", 8), 8);
	close(fd);
	l = audit_open(&o, err, sizeof(err));
	assert_non_null(l);
	audit_close(l);
	expect_ok(path, pub);

	/* an edited last line refuses to open */
	fresh_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	o.path = path;
	write_log(path, 3, 0, key);
	lines_read(path, &L);
	char *m = strstr(L.v[L.n - 1], "\"count\":3");
	m[8] = '2';
	lines_write(path, &L);
	lines_free(&L);
	assert_null(audit_open(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "hash mismatch"));
	/* a file that is not an audit log */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "hello\nworld\n", 12), 12);
	close(fd);
	assert_null(audit_open(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "does not verify"));
}

/* ---- threads ---- */

struct thr {
	struct audit_log *l;
	int base, n;
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	char id[32];

	for (int i = 0; i < t->n; i++) {
		struct audit_record r = rec(t->base + i, id, sizeof(id));
		if (audit_append(t->l, &r))
			abort();
	}
	return NULL;
}

static void test_threads(void **state)
{
	char dir[256], path[300], err[256], *rep = NULL;
	enum { T = 4, N = 500 };
	pthread_t th[T];
	struct thr a[T];
	struct lines L;
	(void)state;

	fresh_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	struct audit_opts o = { .path = path, .key_path = key, .checkpoint_every = 100,
				.fsync = AUDIT_FSYNC_INTERVAL, .fsync_interval_ms = 5 };
	struct audit_log *l = audit_open(&o, err, sizeof(err));
	assert_non_null(l);
	for (int i = 0; i < T; i++) {
		a[i] = (struct thr){ l, i * 100000, N };
		assert_int_equal(pthread_create(&th[i], NULL, thr_main, &a[i]), 0);
	}
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	audit_close(l);
	assert_int_equal(verify1(path, pub, &rep), 0);
	free(rep);
	lines_read(path, &L);
	assert_int_equal(L.n, T * N + T * N / 100);
	static bool seen[T][N];
	memset(seen, 0, sizeof(seen));
	for (size_t i = 0; i < L.n; i++) {
		char s[32];
		snprintf(s, sizeof(s), "\"seq\":%zu,", i + 1);
		assert_non_null(strstr(L.v[i], s)); /* unique and consecutive */
		const char *p = strstr(L.v[i], "\"id\":\"req-");
		if (!p)
			continue;
		int k = atoi(p + 10);
		assert_false(seen[k / 100000][k % 100000]);
		seen[k / 100000][k % 100000] = true;
	}
	for (int i = 0; i < T; i++)
		for (int j = 0; j < N; j++)
			assert_true(seen[i][j]);
	lines_free(&L);
}

static void test_fsync_policies(void **state)
{
	char dir[256], path[300], err[256], id[32];
	struct audit_stats st;
	(void)state;

	for (int pol = 0; pol < 3; pol++) {
		fresh_dir(dir, sizeof(dir));
		snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
		struct audit_opts o = { .path = path, .fsync = (enum audit_fsync)pol,
					.fsync_interval_ms = 10 };
		struct audit_log *l = audit_open(&o, err, sizeof(err));
		assert_non_null(l);
		for (int i = 0; i < 20; i++) {
			struct audit_record r = rec(i, id, sizeof(id));
			assert_int_equal(audit_append(l, &r), 0);
		}
		if (pol == AUDIT_FSYNC_INTERVAL)
			usleep(60000);
		audit_get_stats(l, &st);
		if (pol == AUDIT_FSYNC_NEVER)
			assert_int_equal(st.syncs, 0);
		else if (pol == AUDIT_FSYNC_ALWAYS)
			assert_int_equal(st.syncs, 20);
		else
			assert_true(st.syncs >= 1 && st.syncs < 20);
		audit_close(l);
		expect_ok(path, NULL);
	}
}

static void test_checkpoint_interval(void **state)
{
	char dir[256], path[300], err[256], id[32];
	struct audit_stats st;
	(void)state;

	fresh_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	struct audit_opts o = { .path = path, .key_path = key, .checkpoint_interval_ms = 20 };
	struct audit_log *l = audit_open(&o, err, sizeof(err));
	assert_non_null(l);
	for (int i = 0; i < 3; i++) {
		struct audit_record r = rec(i, id, sizeof(id));
		assert_int_equal(audit_append(l, &r), 0);
	}
	for (int i = 0; i < 50; i++) {
		audit_get_stats(l, &st);
		if (st.checkpoints)
			break;
		usleep(10000);
	}
	assert_int_equal(st.checkpoints, 1);
	usleep(60000); /* nothing pending: no more checkpoints */
	audit_get_stats(l, &st);
	assert_int_equal(st.checkpoints, 1);
	audit_close(l);
	expect_ok(path, pub);
}

/* A child appends until SIGKILL; the log reopens (recovery when a line
 * was cut) and verifies with every line the child wrote. */
static void test_kill9(void **state)
{
	char dir[256], path[300], err[256], id[32], *rep = NULL;
	(void)state;

	for (int round = 0; round < 3; round++) {
		fresh_dir(dir, sizeof(dir));
		snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
		struct audit_opts o = { .path = path, .key_path = key, .checkpoint_every = 50,
					.max_bytes = 256 * 1024, .keep = 100 };
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct audit_log *l = audit_open(&o, err, sizeof(err));
			if (!l)
				_exit(3);
			for (int i = 0;; i++) {
				struct audit_record r = rec(i, id, sizeof(id));
				audit_append(l, &r);
			}
		}
		usleep(30000 + 20000 * round);
		kill(pid, SIGKILL);
		int status;
		waitpid(pid, &status, 0);
		assert_true(WIFSIGNALED(status));
		if (round == 2) {
			/* make it a torn write for sure */
			int fd = open(path, O_WRONLY | O_APPEND);
			assert_int_equal(write(fd, "{\"type\":\"req", 12), 12);
			close(fd);
		}
		struct audit_log *l = audit_open(&o, err, sizeof(err));
		if (!l)
			fprintf(stderr, "%s\n", err);
		assert_non_null(l);
		struct audit_stats st;
		audit_get_stats(l, &st);
		/* at least our 12 bytes: the killed writer may itself have
		 * left a partial batch (a write(2) cut by SIGKILL), seen
		 * under ASan as 213 more bytes */
		if (round == 2)
			assert_true(st.cut_bytes >= 12);
		struct audit_record r = rec(0, id, sizeof(id));
		assert_int_equal(audit_append(l, &r), 0);
		audit_close(l);
		/* all files, oldest first */
		const char *files[101];
		static char names[101][320];
		size_t n = 0;
		for (int k = 100; k >= 1; k--) {
			snprintf(names[n], sizeof(names[n]), "%s.%d", path, k);
			if (access(names[n], F_OK) == 0)
				files[n] = names[n], n++;
		}
		files[n++] = path;
		int rc = verify(files, n, pub, AUDIT_VERIFY_STRICT, &rep);
		if (rc)
			fprintf(stderr, "%s", rep);
		assert_int_equal(rc, 0);
		fprintf(stderr, "  kill -9 round %d: %s", round, rep);
		free(rep);
	}
}

static void test_keygen_and_cli(void **state)
{
	char dir[256], kd[300], kp[320], fp[65], err[256], logp[300];
	struct stat st;
	(void)state;

	fresh_dir(dir, sizeof(dir));
	snprintf(kd, sizeof(kd), "%s/keys", dir);
	assert_int_equal(audit_keygen(kd, fp, err, sizeof(err)), 0);
	assert_int_equal(strlen(fp), 64);
	snprintf(kp, sizeof(kp), "%s/audit.key", kd);
	assert_int_equal(stat(kp, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(kd, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	/* never overwrites */
	assert_int_equal(audit_keygen(kd, fp, err, sizeof(err)), UMB_ERR);
	assert_non_null(strstr(err, "refusing to overwrite"));
	/* a non-Ed25519 key is refused by audit_open */
	snprintf(logp, sizeof(logp), "%s/audit.jsonl", dir);
	struct audit_opts o = { .path = logp, .key_path = logp };
	int fd = open(logp, O_WRONLY | O_CREAT, 0600);
	close(fd);
	assert_null(audit_open(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "not a PEM private key"));

	char *a1[] = { "audit", NULL };
	assert_int_equal(audit_cmd_main(1, a1), 2);
	char *a2[] = { "audit", "verify", "--pubkey", NULL };
	assert_int_equal(audit_cmd_main(3, a2), 2);
	char *a3[] = { "audit", "verify", "/nonexistent/audit.jsonl", NULL };
	assert_int_equal(audit_cmd_main(3, a3), 2);
	char *a4[] = { "audit", "keygen", "--out", kd, NULL };
	assert_int_equal(audit_cmd_main(4, a4), 1);
	char *a5[] = { "audit", "bogus", NULL };
	assert_int_equal(audit_cmd_main(2, a5), 2);
	/* an empty log is intact */
	char *a6[] = { "audit", "verify", logp, NULL };
	assert_int_equal(audit_cmd_main(3, a6), 0);
	/* a tampered one exits 1 */
	fd = open(logp, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "{}\n", 3), 3);
	close(fd);
	assert_int_equal(audit_cmd_main(3, a6), 1);
}

static void test_verify_garbage(void **state)
{
	static const char *const inputs[] = {
		"", "\n", "{}\n", "not json\n", "{\"type\":\"request\"}",
		"{\"type\":\"checkpoint\",\"seq\":1,\"count\":0,\"prev\":\"00\",\"hash\":\"00\"}\n",
		"\xff\xfe\n\n\n", "[1,2,3]\n", "{\"a\":1,\"a\":2}\n",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		struct str f = str_cstr(inputs[i]);
		const char *name = "g";
		int rc = audit_verify_mem(&f, &name, 1, NULL, 0, 0, NULL);
		assert_int_equal(rc, i == 0 ? 0 : 1);
	}
	/* a bad pem is an I/O-class error */
	struct str f = STR("");
	assert_int_equal(audit_verify_mem(&f, NULL, 1, "junk", 4, 0, NULL), 2);
	/* a line longer than AUDIT_LINE_MAX */
	size_t n = AUDIT_LINE_MAX + 10;
	char *big = malloc(n);
	memset(big, 'x', n);
	f = str_make(big, n);
	assert_int_equal(audit_verify_mem(&f, NULL, 1, NULL, 0, 0, NULL), 1);
	free(big);
}

/* ---- the append cost (printed, not asserted) ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void bench_one(const char *label, enum audit_fsync pol, int threads)
{
	char dir[256], path[300], err[256], id[32];
	enum { N = 20000 };
	static uint64_t t[N];

	fresh_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	struct audit_opts o = { .path = path, .key_path = key, .checkpoint_every = 1000,
				.fsync = pol, .fsync_interval_ms = 100 };
	struct audit_log *l = audit_open(&o, err, sizeof(err));
	assert_non_null(l);
	int n = pol == AUDIT_FSYNC_ALWAYS ? 500 : N;
	uint64_t all0 = clock_mono_ns();
	for (int i = 0; i < n; i++) {
		struct audit_record r = rec(i, id, sizeof(id));
		uint64_t t0 = clock_mono_ns();
		audit_append(l, &r);
		t[i] = clock_mono_ns() - t0;
	}
	uint64_t all = clock_mono_ns() - all0;
	qsort(t, (size_t)n, sizeof(t[0]), cmp_u64);
	fprintf(stderr, "  append cost, fsync %-8s: median %6" PRIu64 " ns, p99 %7" PRIu64
			" ns, mean %6" PRIu64 " ns/record (%d records, checkpoint every 1000)\n",
		label, t[n / 2], t[n * 99 / 100], all / (uint64_t)n, n);
	audit_close(l);
	(void)threads;
}

static void *bench_thr(void *arg)
{
	struct thr *t = arg;
	char id[32];

	for (int i = 0; i < t->n; i++) {
		struct audit_record r = rec(i, id, sizeof(id));
		audit_append(t->l, &r);
	}
	return NULL;
}

static void test_bench(void **state)
{
	char dir[256], path[300], err[256];
	(void)state;

	bench_one("never", AUDIT_FSYNC_NEVER, 1);
	bench_one("interval", AUDIT_FSYNC_INTERVAL, 1);
	bench_one("always", AUDIT_FSYNC_ALWAYS, 1);
	/* 4 threads contending on the mutex */
	fresh_dir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/audit.jsonl", dir);
	struct audit_opts o = { .path = path, .key_path = key, .checkpoint_every = 1000,
				.fsync = AUDIT_FSYNC_INTERVAL, .fsync_interval_ms = 100 };
	struct audit_log *l = audit_open(&o, err, sizeof(err));
	pthread_t th[4];
	struct thr a[4];
	uint64_t t0 = clock_mono_ns();
	for (int i = 0; i < 4; i++) {
		a[i] = (struct thr){ l, 0, 10000 };
		pthread_create(&th[i], NULL, bench_thr, &a[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	uint64_t dt = clock_mono_ns() - t0;
	fprintf(stderr, "  append throughput, 4 threads, fsync interval: %.0f records/s (%" PRIu64
			" ns/record wall)\n",
		40000.0 * 1e9 / (double)dt, dt / 40000);
	audit_close(l);
	char *rep = NULL;
	assert_int_equal(verify1(path, pub, &rep), 0);
	free(rep);
	/* and the verifier's speed */
	t0 = clock_mono_ns();
	assert_int_equal(verify1(path, pub, &rep), 0);
	dt = clock_mono_ns() - t0;
	free(rep);
	fprintf(stderr, "  verify: %" PRIu64 " ns/line\n", dt / 40040);
}

static int setup(void **state)
{
	char fp[65], err[256];
	(void)state;

	if (!mkdtemp(tmp_root))
		return -1;
	snprintf(keydir, sizeof(keydir), "%s/keys", tmp_root);
	snprintf(key2dir, sizeof(key2dir), "%s/keys2", tmp_root);
	if (audit_keygen(keydir, fp, err, sizeof(err)) ||
	    audit_keygen(key2dir, fp, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	snprintf(key, sizeof(key), "%s/audit.key", keydir);
	snprintf(pub, sizeof(pub), "%s/audit.pub", keydir);
	snprintf(pub2, sizeof(pub2), "%s/audit.pub", key2dir);
	log_min_level = LOG_ERROR; /* recovery warnings are expected */
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rm_tree(tmp_root);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_and_verify),
		cmocka_unit_test(test_fields_escaped),
		cmocka_unit_test(test_edit_byte),
		cmocka_unit_test(test_rechained_edit),
		cmocka_unit_test(test_delete_line),
		cmocka_unit_test(test_insert_forged),
		cmocka_unit_test(test_swap_lines),
		cmocka_unit_test(test_truncate),
		cmocka_unit_test(test_bad_signature),
		cmocka_unit_test(test_count_mismatch),
		cmocka_unit_test(test_wrong_pubkey),
		cmocka_unit_test(test_unsigned_checkpoints),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_rotation_empty_live),
		cmocka_unit_test(test_recovery),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_fsync_policies),
		cmocka_unit_test(test_checkpoint_interval),
		cmocka_unit_test(test_kill9),
		cmocka_unit_test(test_keygen_and_cli),
		cmocka_unit_test(test_verify_garbage),
		cmocka_unit_test(test_bench),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
