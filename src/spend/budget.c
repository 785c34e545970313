/* budget.c — leases on store quotas (budget.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "spend/budget.h"

/* A lease asks for a twentieth of the cap (or the request, if larger):
 * at most ~20 store round trips per period and key per gateway, and at
 * most a twentieth of a cap idle in another gateway's hands. */
#define LEASE_DIVISOR 20

int64_t budget_window_start(enum budget_period p, int64_t now)
{
	time_t t = (time_t)now;
	struct tm tm;
	gmtime_r(&t, &tm);
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	if (p == PERIOD_MONTHLY)
		tm.tm_mday = 1;
	int64_t day = (int64_t)timegm(&tm);
	if (p == PERIOD_WEEKLY)
		day -= (int64_t)((tm.tm_wday + 6) % 7) * 86400; /* back to Monday */
	return day;
}

int64_t budget_window_end(enum budget_period p, int64_t now)
{
	int64_t start = budget_window_start(p, now);
	if (p == PERIOD_DAILY)
		return start + 86400;
	if (p == PERIOD_WEEKLY)
		return start + 7 * 86400;
	time_t t = (time_t)start;
	struct tm tm;
	gmtime_r(&t, &tm);
	tm.tm_mon += 1; /* timegm normalises December + 1 */
	return (int64_t)timegm(&tm);
}

struct lease {
	char key[160];
	int64_t window;
	int64_t left;   /* taken from the store, not reserved */
	int64_t stored; /* the store's counter at our last take */
	struct lease *next;
};

struct spend_ledger {
	pthread_mutex_t mu;
	struct lease *leases; /* few keys: teams and identities with limits */
};

struct spend_ledger *spend_ledger_new(void)
{
	struct spend_ledger *l = umb_calloc(1, sizeof *l);
	pthread_mutex_init(&l->mu, NULL);
	return l;
}

void spend_ledger_free(struct spend_ledger *l, struct store *st)
{
	if (!l)
		return;
	for (struct lease *e = l->leases, *next; e; e = next) {
		next = e->next;
		if (st && e->left > 0)
			store_quota_give(st, e->key, e->window, e->left);
		free(e);
	}
	pthread_mutex_destroy(&l->mu);
	free(l);
}

/* The lease of (key, window), created empty; an entry of an older window
 * of the key is reused (that period is over: its leftovers lapse). */
static struct lease *lease_get(struct spend_ledger *l, const char *key, int64_t window)
{
	for (struct lease *e = l->leases; e; e = e->next) {
		if (strcmp(e->key, key))
			continue;
		if (e->window != window) {
			e->window = window;
			e->left = e->stored = 0;
		}
		return e;
	}
	struct lease *e = umb_calloc(1, sizeof *e);
	snprintf(e->key, sizeof e->key, "%s", key);
	e->window = window;
	e->next = l->leases;
	l->leases = e;
	return e;
}

int spend_reserve(struct spend_ledger *l, struct store *st, const char *key, int64_t window,
		  int64_t cap, int64_t amount, int64_t *used)
{
	int rc = 0;
	pthread_mutex_lock(&l->mu);
	struct lease *e = lease_get(l, key, window);
	if (e->left < amount) {
		int64_t want = UMB_MAX(amount - e->left, cap / LEASE_DIVISOR);
		int64_t granted = 0;
		if (!st) {
			rc = UMB_ERR;
		} else if ((rc = store_quota_take(st, key, window, cap, want, &granted, &e->stored)) == UMB_OK) {
			e->left += granted;
			if (e->left < amount) {
				/* the cap is reached: let the others use what is left */
				store_quota_give(st, key, window, e->left);
				e->left = 0;
				rc = 1;
			}
		}
	}
	if (rc == 0)
		e->left -= amount;
	/* spent or reserved, as far as this gateway knows: no store read on
	 * the hot path (the counter is re-read at the next lease) */
	*used = e->stored - e->left;
	pthread_mutex_unlock(&l->mu);
	return rc;
}

void spend_settle(struct spend_ledger *l, struct store *st, const char *key, int64_t window,
		  int64_t reserved, int64_t actual)
{
	pthread_mutex_lock(&l->mu);
	struct lease *e = l->leases;
	while (e && strcmp(e->key, key))
		e = e->next;
	if (actual <= reserved) {
		/* unused: back to the lease, unless its period is over */
		if (e && e->window == window)
			e->left += reserved - actual;
	} else if (st) {
		/* spent beyond the reservation: count it, past the cap if need be */
		int64_t granted, used;
		store_quota_take(st, key, window, INT64_MAX, actual - reserved, &granted, &used);
	}
	pthread_mutex_unlock(&l->mu);
}
