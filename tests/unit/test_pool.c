/* test_pool.c — unit tests for upstream/pool.c: smooth weighted round
 * robin, the tried-set, backups, health verdicts, passive ejection with
 * doubling backoff and probation, and state carried across reloads.
 *
 * pool.c is included; configs come from YAML through config_load_string
 * so the tests see exactly what a user's file produces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "upstream/pool.c"

static struct config *load(const char *yaml)
{
	struct config_err err;
	memset(&err, 0, sizeof err);
	struct config *cfg = config_load_string(yaml, strlen(yaml), "test.yaml", "/tmp", &err);
	if (!cfg)
		fail_msg("config refused: %s", err.msg);
	return cfg;
}

/* a:3 b:1 c:1 plus a backup z; health down after 2, up after 3; eject
 * after 3 failures for 1000 ms doubling up to 5000 ms. */
static const char cfg_311[] =
	"listen: \"127.0.0.1:8080\"\n"
	"log: { level: error }\n"
	"providers:\n"
	"  - name: p\n"
	"    type: openai\n"
	"    endpoints:\n"
	"      - { name: a, url: \"http://127.0.0.1:1001\", weight: 3 }\n"
	"      - { name: b, url: \"http://127.0.0.1:1002\" }\n"
	"      - { name: c, url: \"http://127.0.0.1:1003\" }\n"
	"      - { name: z, url: \"http://127.0.0.1:1009\", backup: true }\n"
	"    health_check: { interval_s: 10, unhealthy_after: 2, healthy_after: 3 }\n"
	"    ejection: { consecutive_failures: 3, base_ms: 1000, max_ms: 5000 }\n"
	"models:\n"
	"  - { name: m, provider: p }\n";

enum { A, B, C, Z };
#define T0 1000000ULL /* a wall-clock "now" in ms */

struct fixture {
	struct config *cfg;
	struct upstream_set *set;
	struct pool *p;
};

static int setup_311(void **state)
{
	log_min_level = LOG_ERROR; /* ejection warnings are expected noise */
	struct fixture *f = umb_calloc(1, sizeof *f);
	f->cfg = load(cfg_311);
	f->set = upstream_set_new(f->cfg, NULL);
	f->p = upstream__pool(f->set, &f->cfg->providers[0]);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	upstream_set_free(f->set);
	config_free(f->cfg);
	free(f);
	return 0;
}

/* ---- smooth weighted round robin ---- */

static void test_swrr_counts_and_interleave(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(f->p->n, 4);
	assert_ptr_equal(f->p->ops, provider_ops_get(PROVIDER_OPENAI));
	int seq[50], cnt[4] = { 0 };
	for (int i = 0; i < 50; i++) {
		seq[i] = upstream__pick(f->p, 0, T0);
		assert_in_range(seq[i], A, C); /* never the backup */
		cnt[seq[i]]++;
	}
	assert_int_equal(cnt[A], 30);
	assert_int_equal(cnt[B], 10);
	assert_int_equal(cnt[C], 10);
	assert_int_equal(cnt[Z], 0);
	/* nginx's smooth interleaving: a period of 5 is a,b,a,c,a, never a
	 * burst of the heavy endpoint */
	static const int period[5] = { A, B, A, C, A };
	for (int i = 0; i < 50; i++)
		assert_int_equal(seq[i], period[i % 5]);
	/* the property in general: in every window no endpoint gets more than
	 * its share + 1, and every 5 in a row hold exactly the weights */
	static const int w[3] = { 3, 1, 1 };
	for (int len = 1; len <= 50; len++)
		for (int s = 0; s + len <= 50; s++) {
			int k[3] = { 0 };
			for (int i = s; i < s + len; i++)
				k[seq[i]]++;
			for (int e = 0; e < 3; e++)
				if (k[e] * 5 > len * w[e] + 5)
					fail_msg("endpoint %d got %d of %d picks at %d", e, k[e], len, s);
			if (len == 5)
				assert_true(k[A] == 3 && k[B] == 1 && k[C] == 1);
		}
}

static void test_swrr_equal_weights(void **state)
{
	(void)state;
	struct config *cfg = load(
		"listen: \"127.0.0.1:8080\"\n"
		"providers:\n"
		"  - name: p\n"
		"    type: openai\n"
		"    endpoints:\n"
		"      - { name: a, url: \"http://h1:1\" }\n"
		"      - { name: b, url: \"http://h2:1\" }\n"
		"      - { name: c, url: \"http://h3:1\" }\n"
		"models: [ { name: m, provider: p } ]\n");
	struct upstream_set *set = upstream_set_new(cfg, NULL);
	struct pool *p = &set->pools[0];
	for (int i = 0; i < 30; i++)
		assert_int_equal(upstream__pick(p, 0, T0), i % 3);
	upstream_set_free(set);
	config_free(cfg);

	/* a single url: provider is one endpoint named after the provider */
	cfg = load("listen: \"127.0.0.1:8080\"\n"
		   "providers: [ { name: solo, type: openai, url: \"http://h:1\" } ]\n"
		   "models: [ { name: m, provider: solo } ]\n");
	set = upstream_set_new(cfg, NULL);
	p = upstream__pool(set, &cfg->providers[0]);
	assert_int_equal(p->n, 1);
	for (int i = 0; i < 5; i++)
		assert_int_equal(upstream__pick(p, 0, T0), 0);
	assert_int_equal(upstream__pick(p, 1, T0), -1); /* tried: nothing left */
	upstream_set_free(set);
	config_free(cfg);
}

/* ---- tried-set and backups ---- */

static void test_tried_mask(void **state)
{
	struct fixture *f = *state;
	uint64_t tried = 1u << A;
	int cnt[4] = { 0 };
	for (int i = 0; i < 20; i++) {
		int e = upstream__pick(f->p, tried, T0);
		assert_true(e == B || e == C);
		cnt[e]++;
	}
	assert_int_equal(cnt[B], 10);
	assert_int_equal(cnt[C], 10);
	/* one request walking the pool: every primary once, then the backup,
	 * then nothing */
	tried = 0;
	int seen = 0;
	for (int i = 0; i < 3; i++) {
		int e = upstream__pick(f->p, tried, T0);
		assert_in_range(e, A, C);
		assert_false(tried & (1u << e));
		tried |= 1u << e;
		seen++;
	}
	assert_int_equal(seen, 3);
	assert_int_equal(upstream__pick(f->p, tried, T0), Z);
	tried |= 1u << Z;
	assert_int_equal(upstream__pick(f->p, tried, T0), -1);
}

static void test_backup_only_when_no_primary(void **state)
{
	struct fixture *f = *state;
	/* unhealthy primaries one by one; the backup appears only at the end */
	for (int e = A; e <= C; e++) {
		for (int i = 0; i < 10; i++)
			assert_int_not_equal(upstream__pick(f->p, 0, T0), Z);
		upstream__health_result(f->p, (size_t)e, false);
		upstream__health_result(f->p, (size_t)e, false);
		assert_false(upstream__usable(f->p, (size_t)e, T0));
	}
	for (int i = 0; i < 5; i++)
		assert_int_equal(upstream__pick(f->p, 0, T0), Z);
	/* the backup itself down: nothing */
	upstream__health_result(f->p, Z, false);
	upstream__health_result(f->p, Z, false);
	assert_int_equal(upstream__pick(f->p, 0, T0), -1);
	/* one primary back (3 good checks): it takes over from the backup */
	upstream__health_result(f->p, Z, true);
	upstream__health_result(f->p, Z, true);
	upstream__health_result(f->p, Z, true);
	assert_int_equal(upstream__pick(f->p, 0, T0), Z);
	for (int i = 0; i < 3; i++)
		upstream__health_result(f->p, B, true);
	for (int i = 0; i < 5; i++)
		assert_int_equal(upstream__pick(f->p, 0, T0), B);
}

static void test_ejected_skipped(void **state)
{
	struct fixture *f = *state;
	for (int i = 0; i < 3; i++)
		upstream__report(f->p, A, false, T0);
	assert_false(upstream__usable(f->p, A, T0));
	assert_false(upstream__usable(f->p, A, T0 + 999));
	assert_true(upstream__usable(f->p, A, T0 + 1000));
	int cnt[4] = { 0 };
	for (int i = 0; i < 20; i++)
		cnt[upstream__pick(f->p, 0, T0 + 500)]++;
	assert_int_equal(cnt[A], 0);
	assert_int_equal(cnt[B], 10);
	assert_int_equal(cnt[C], 10);
	/* back after the ejection: picked again, and the weights still rule */
	memset(cnt, 0, sizeof cnt);
	for (int i = 0; i < 50; i++)
		cnt[upstream__pick(f->p, 0, T0 + 1000)]++;
	assert_in_range(cnt[A], 29, 31);
	assert_int_equal(cnt[Z], 0);
}

/* ---- passive ejection ---- */

static uint64_t until(struct fixture *f, int e)
{
	return atomic_load(&f->p->st[e].ejected_until_ms);
}

static void test_ejection_threshold(void **state)
{
	struct fixture *f = *state;
	/* fewer than 3 in a row, broken by a success: never ejected */
	for (int round = 0; round < 5; round++) {
		upstream__report(f->p, B, false, T0);
		upstream__report(f->p, B, false, T0);
		upstream__report(f->p, B, true, T0);
	}
	assert_true(upstream__usable(f->p, B, T0));
	assert_true(until(f, B) == 0);
	upstream__report(f->p, B, false, T0);
	upstream__report(f->p, B, false, T0);
	assert_true(upstream__usable(f->p, B, T0));
	upstream__report(f->p, B, false, T0);
	assert_false(upstream__usable(f->p, B, T0));
	assert_true(until(f, B) == T0 + 1000);
	/* failures while already out do not extend the ejection */
	for (int i = 0; i < 10; i++)
		upstream__report(f->p, B, false, T0 + 10);
	assert_true(until(f, B) == T0 + 1000);
	assert_int_equal(atomic_load(&f->p->st[B].ejections), 1);
	/* other endpoints are not affected */
	assert_true(upstream__usable(f->p, A, T0));
	assert_true(upstream__usable(f->p, C, T0));
}

static void test_ejection_backoff_and_probation(void **state)
{
	struct fixture *f = *state;
	uint64_t now = T0;
	for (int i = 0; i < 3; i++)
		upstream__report(f->p, C, false, now);
	assert_true(until(f, C) == now + 1000);
	/* on probation: each single failure after coming back ejects again,
	 * doubling 1000 → 2000 → 4000 → 5000 (cap) → 5000 */
	static const uint64_t want[] = { 2000, 4000, 5000, 5000, 5000 };
	for (size_t k = 0; k < UMB_ARRAY_LEN(want); k++) {
		now = until(f, C);
		assert_true(upstream__usable(f->p, C, now));
		upstream__report(f->p, C, false, now);
		assert_false(upstream__usable(f->p, C, now));
		if (until(f, C) != now + want[k])
			fail_msg("ejection %zu lasts %llu ms, want %llu", k + 2,
				 (unsigned long long)(until(f, C) - now),
				 (unsigned long long)want[k]);
	}
	/* a success ends probation: three failures needed again, base time */
	now = until(f, C);
	upstream__report(f->p, C, true, now);
	assert_int_equal(atomic_load(&f->p->st[C].ejections), 0);
	upstream__report(f->p, C, false, now);
	upstream__report(f->p, C, false, now);
	assert_true(upstream__usable(f->p, C, now));
	upstream__report(f->p, C, false, now);
	assert_false(upstream__usable(f->p, C, now));
	assert_true(until(f, C) == now + 1000);
}

/* A large ejection count must not overflow the doubling. */
static void test_ejection_many(void **state)
{
	struct fixture *f = *state;
	uint64_t now = T0;
	for (int i = 0; i < 3; i++)
		upstream__report(f->p, A, false, now);
	for (int k = 0; k < 200; k++) {
		now = until(f, A);
		upstream__report(f->p, A, false, now);
		assert_true(until(f, A) - now <= 5000);
		assert_true(until(f, A) > now);
	}
	assert_true(until(f, A) - now == 5000);
}

/* ---- active health checks ---- */

static void test_health_result(void **state)
{
	struct fixture *f = *state;
	assert_true(upstream__usable(f->p, A, T0)); /* healthy at start */
	upstream__health_result(f->p, A, false);
	assert_true(upstream__usable(f->p, A, T0)); /* 1 of 2 */
	upstream__health_result(f->p, A, true);     /* resets the count */
	upstream__health_result(f->p, A, false);
	assert_true(upstream__usable(f->p, A, T0));
	upstream__health_result(f->p, A, false);
	assert_false(upstream__usable(f->p, A, T0)); /* 2 in a row */
	upstream__health_result(f->p, A, false);
	assert_false(upstream__usable(f->p, A, T0));
	/* up again only after 3 good checks in a row */
	upstream__health_result(f->p, A, true);
	upstream__health_result(f->p, A, true);
	assert_false(upstream__usable(f->p, A, T0));
	upstream__health_result(f->p, A, false); /* breaks the run */
	upstream__health_result(f->p, A, true);
	upstream__health_result(f->p, A, true);
	assert_false(upstream__usable(f->p, A, T0));
	upstream__health_result(f->p, A, true);
	assert_true(upstream__usable(f->p, A, T0));
	/* unhealthy and ejected are independent: both must clear */
	for (int i = 0; i < 3; i++)
		upstream__report(f->p, A, false, T0);
	upstream__health_result(f->p, A, true);
	assert_false(upstream__usable(f->p, A, T0 + 1));
	assert_true(upstream__usable(f->p, A, T0 + 1000));
}

static void test_carry_over(void **state)
{
	struct fixture *f = *state;
	/* state in the old set: a ejected on probation, b unhealthy, c with a
	 * half-counted health failure */
	for (int i = 0; i < 3; i++)
		upstream__report(f->p, A, false, T0);
	upstream__health_result(f->p, B, false);
	upstream__health_result(f->p, B, false);
	upstream__health_result(f->p, C, false);

	/* the new config reorders, renames, changes b's weight, drops z, adds
	 * n, moves c to another URL, and has a second provider with a's URL */
	struct config *cfg2 = load(
		"listen: \"127.0.0.1:8080\"\n"
		"log: { level: error }\n"
		"providers:\n"
		"  - name: other\n"
		"    type: openai\n"
		"    endpoints:\n"
		"      - { name: a, url: \"http://127.0.0.1:1001\" }\n"
		"  - name: p\n"
		"    type: openai\n"
		"    endpoints:\n"
		"      - { name: new, url: \"http://127.0.0.1:1005\" }\n"
		"      - { name: bee, url: \"http://127.0.0.1:1002\", weight: 7 }\n"
		"      - { name: c, url: \"http://127.0.0.1:1033\" }\n"
		"      - { name: aa, url: \"http://127.0.0.1:1001\", weight: 3 }\n"
		"    health_check: { interval_s: 10, unhealthy_after: 2, healthy_after: 3 }\n"
		"    ejection: { consecutive_failures: 3, base_ms: 1000, max_ms: 5000 }\n"
		"models:\n"
		"  - { name: m, provider: p }\n");
	struct upstream_set *set2 = upstream_set_new(cfg2, f->set);
	struct pool *other = upstream__pool(set2, &cfg2->providers[0]);
	struct pool *p2 = upstream__pool(set2, &cfg2->providers[1]);
	/* different provider, same URL: fresh state */
	assert_true(upstream__usable(other, 0, T0));
	assert_int_equal(atomic_load(&other->st[0].ejections), 0);
	/* same provider + URL: carried whatever the name or position */
	assert_false(upstream__usable(p2, 3, T0));      /* aa = old a, ejected */
	assert_true(upstream__usable(p2, 3, T0 + 1000));
	assert_int_equal(atomic_load(&p2->st[3].ejections), 1);
	assert_false(upstream__usable(p2, 1, T0));      /* bee = old b, unhealthy */
	assert_int_equal(p2->st[1].hc_fail, 2);
	/* new URL: fresh, even with the old name */
	assert_true(upstream__usable(p2, 2, T0));
	assert_int_equal(p2->st[2].hc_fail, 0);
	assert_true(upstream__usable(p2, 0, T0));
	/* probation survives the reload: one failure ejects aa for 2000 ms */
	upstream__report(p2, 3, false, T0 + 1000);
	assert_true(atomic_load(&p2->st[3].ejected_until_ms) == T0 + 3000);
	/* b needs 3 good checks on the new set too */
	upstream__health_result(p2, 1, true);
	upstream__health_result(p2, 1, true);
	assert_false(upstream__usable(p2, 1, T0));
	upstream__health_result(p2, 1, true);
	assert_true(upstream__usable(p2, 1, T0));
	/* the old set is independent and can be freed first */
	upstream_set_free(f->set);
	f->set = set2;
	config_free(f->cfg);
	f->cfg = cfg2;
	f->p = p2;
	/* picking on the new pool obeys the new weights */
	int cnt[4] = { 0 };
	for (int i = 0; i < 120; i++)
		cnt[upstream__pick(p2, 0, T0 + 10000)]++;
	assert_int_equal(cnt[0], 10);
	assert_int_equal(cnt[1], 70);
	assert_int_equal(cnt[2], 10);
	assert_int_equal(cnt[3], 30); /* aa's 2000 ms ejection is over */
}

/* More endpoints than the tried-mask holds (64) are accepted by the config
 * but the pool keeps only the first 64: the rest are never used. */
static void test_more_than_64_endpoints(void **state)
{
	(void)state;
	struct buf y;
	buf_init(&y, 0);
	buf_append_cstr(&y, "listen: \"127.0.0.1:8080\"\nproviders:\n  - name: p\n"
			    "    type: openai\n    endpoints:\n");
	for (int i = 0; i < 65; i++)
		buf_printf(&y, "      - { name: e%d, url: \"http://127.0.0.1:%d\" }\n", i, 2000 + i);
	buf_append_cstr(&y, "models: [ { name: m, provider: p } ]\n");
	struct config_err err;
	struct config *cfg = config_load_string(y.p, y.n, "t.yaml", "/tmp", &err);
	buf_clear(&y);
	if (!cfg)
		return; /* refusing the config is a fine fix */
	struct upstream_set *set = upstream_set_new(cfg, NULL);
	struct pool *p = &set->pools[0];
	for (size_t i = 0; i < 64 && i < p->n; i++) {
		upstream__health_result(p, i, false);
		upstream__health_result(p, i, false);
	}
	int e = upstream__pick(p, 0, T0);
	upstream_set_free(set);
	config_free(cfg);
	assert_int_equal(e, 64);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_swrr_counts_and_interleave, setup_311, teardown),
		cmocka_unit_test(test_swrr_equal_weights),
		cmocka_unit_test_setup_teardown(test_tried_mask, setup_311, teardown),
		cmocka_unit_test_setup_teardown(test_backup_only_when_no_primary, setup_311, teardown),
		cmocka_unit_test_setup_teardown(test_ejected_skipped, setup_311, teardown),
		cmocka_unit_test_setup_teardown(test_ejection_threshold, setup_311, teardown),
		cmocka_unit_test_setup_teardown(test_ejection_backoff_and_probation, setup_311, teardown),
		cmocka_unit_test_setup_teardown(test_ejection_many, setup_311, teardown),
		cmocka_unit_test_setup_teardown(test_health_result, setup_311, teardown),
		cmocka_unit_test_setup_teardown(test_carry_over, setup_311, teardown),
		cmocka_unit_test(test_more_than_64_endpoints),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
