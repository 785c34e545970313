/* test_budget.c — UTC budget periods and quota leases (spend/budget.c)
 * against a real SQLite store in a temp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "spend/budget.h"

static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
			 .tm_hour = h, .tm_min = mi, .tm_sec = s };
	return (int64_t)timegm(&tm);
}

static void test_windows(void **state)
{
	(void)state;
	int64_t now = utc(2026, 11, 27, 13, 45, 10); /* a Friday */
	assert_int_equal(budget_window_start(PERIOD_DAILY, now), utc(2026, 11, 27, 0, 0, 0));
	assert_int_equal(budget_window_end(PERIOD_DAILY, now), utc(2026, 11, 28, 0, 0, 0));
	assert_int_equal(budget_window_start(PERIOD_WEEKLY, now), utc(2026, 11, 23, 0, 0, 0)); /* Monday */
	assert_int_equal(budget_window_end(PERIOD_WEEKLY, now), utc(2026, 11, 30, 0, 0, 0));
	assert_int_equal(budget_window_start(PERIOD_MONTHLY, now), utc(2026, 11, 1, 0, 0, 0));
	assert_int_equal(budget_window_end(PERIOD_MONTHLY, now), utc(2026, 12, 1, 0, 0, 0));
	/* December rolls into January; a Sunday belongs to the week before */
	now = utc(2026, 12, 31, 23, 59, 59);
	assert_int_equal(budget_window_end(PERIOD_MONTHLY, now), utc(2027, 1, 1, 0, 0, 0));
	now = utc(2026, 11, 29, 10, 0, 0); /* Sunday */
	assert_int_equal(budget_window_start(PERIOD_WEEKLY, now), utc(2026, 11, 23, 0, 0, 0));
	now = utc(2026, 11, 30, 0, 0, 0); /* Monday 00:00: a new week */
	assert_int_equal(budget_window_start(PERIOD_WEEKLY, now), now);
	/* leap February */
	now = utc(2028, 2, 15, 0, 0, 0);
	assert_int_equal(budget_window_end(PERIOD_MONTHLY, now), utc(2028, 3, 1, 0, 0, 0));
}

struct fx {
	char dir[64], url[128];
	struct store *st;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/umbra-budget-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->url, sizeof f->url, "sqlite://%s/s.db", f->dir);
	struct store_err err;
	assert_int_equal(store_open(f->url, "/", &f->st, &err), UMB_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	store_close(f->st);
	char cmd[160];
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void test_leases(void **state)
{
	struct fx *f = *state;
	struct spend_ledger *l = spend_ledger_new();
	int64_t used = 0, cap = 1000, w = 100;
	/* the first reservation leases a twentieth of the cap (50) */
	assert_int_equal(spend_reserve(l, f->st, "budget:team:a", w, cap, 10, &used), 0);
	int64_t c;
	assert_int_equal(store_quota_get(f->st, "budget:team:a", w, &c), UMB_OK);
	assert_int_equal(c, 50);
	/* the next four come from the lease: no store change */
	for (int i = 0; i < 4; i++)
		assert_int_equal(spend_reserve(l, f->st, "budget:team:a", w, cap, 10, &used), 0);
	assert_int_equal(store_quota_get(f->st, "budget:team:a", w, &c), UMB_OK);
	assert_int_equal(c, 50);
	/* settle cheaper than reserved: the rest returns to the lease */
	spend_settle(l, f->st, "budget:team:a", w, 10, 4);
	/* a reservation bigger than what is left of the cap is refused, and
	 * the gateway's unused lease goes back */
	assert_int_equal(spend_reserve(l, f->st, "budget:team:a", w, cap, 2000, &used), 1);
	assert_int_equal(store_quota_get(f->st, "budget:team:a", w, &c), UMB_OK);
	assert_int_equal(c, 44); /* 50 taken - 6 unused given back */
	/* exactly up to the cap, never past it */
	int ok = 0;
	while (spend_reserve(l, f->st, "budget:team:a", w, cap, 7, &used) == 0)
		ok++;
	assert_true(44 + ok * 7 <= cap && 44 + (ok + 1) * 7 > cap - 7);
	/* a cost above its reservation is counted past the cap */
	spend_settle(l, f->st, "budget:team:a", w, 7, 107);
	assert_int_equal(store_quota_get(f->st, "budget:team:a", w, &c), UMB_OK);
	assert_true(c > cap);
	/* a new window starts from zero */
	assert_int_equal(spend_reserve(l, f->st, "budget:team:a", w + 1, cap, 10, &used), 0);
	assert_int_equal(store_quota_get(f->st, "budget:team:a", w + 1, &c), UMB_OK);
	assert_int_equal(c, 50);
	/* freeing gives the unused lease back */
	spend_ledger_free(l, f->st);
	assert_int_equal(store_quota_get(f->st, "budget:team:a", w + 1, &c), UMB_OK);
	assert_int_equal(c, 10);
}

/* Two ledgers (two gateways) on one store never lease past the cap. */
static void test_two_gateways(void **state)
{
	struct fx *f = *state;
	struct spend_ledger *a = spend_ledger_new(), *b = spend_ledger_new();
	struct store *st2;
	struct store_err err;
	assert_int_equal(store_open(f->url, "/", &st2, &err), UMB_OK);
	int64_t used, granted = 0;
	for (int i = 0; i < 400; i++) {
		if (spend_reserve(i % 2 ? a : b, i % 2 ? f->st : st2, "rpm:identity:x", 7, 100, 1, &used) == 0)
			granted++;
	}
	assert_int_equal(granted, 100);
	spend_ledger_free(a, f->st);
	spend_ledger_free(b, st2);
	store_close(st2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_windows),
		cmocka_unit_test_setup_teardown(test_leases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_gateways, setup, teardown),
	};
	return cmocka_run_group_tests_name("budget", tests, NULL, NULL);
}
