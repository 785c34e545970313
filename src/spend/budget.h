/* budget.h — hard caps that hold across gateways: budgets (nano-USD per
 * UTC period) and rate limits (requests or tokens per minute).
 *
 * Both are quotas in the store: a counter per (key, window) that may not
 * pass a cap (store_quota_take). A gateway takes a lease — a chunk of the
 * cap — and reserves requests' worst cases from it in memory; only when
 * the lease runs short does it go to the store again. The leases of all
 * gateways together never pass the cap, so neither do their reservations;
 * a request whose real cost exceeds its reservation takes the difference
 * at settlement (that is the "plus one request's worst case" of the
 * guarantee). On a refusal the gateway gives its unused lease back, so a
 * cap is not held hostage by one replica's leftovers. */
#ifndef UMB_BUDGET_H
#define UMB_BUDGET_H

#include "config/config.h"
#include "store/store.h"

/** Start and end (exclusive) of the UTC period containing now: daily
 * from 00:00, weekly from Monday 00:00, monthly from the 1st 00:00. */
int64_t budget_window_start(enum budget_period p, int64_t now);
int64_t budget_window_end(enum budget_period p, int64_t now);

struct spend_ledger;

struct spend_ledger *spend_ledger_new(void);
/** Give every unused lease back to st (when not NULL), then free. */
void spend_ledger_free(struct spend_ledger *l, struct store *st);

/** Reserve amount on (key, window) under cap. 0: reserved; 1: the cap is
 * reached (nothing reserved, the local lease given back); <0: the store
 * failed. *used: spent or reserved as this gateway knows it (the store's
 * counter at its last lease minus its unused lease), for alerts and
 * messages. */
int spend_reserve(struct spend_ledger *l, struct store *st, const char *key, int64_t window,
		  int64_t cap, int64_t amount, int64_t *used);

/** The request is over: what it reserved goes back to the local lease
 * minus what it really cost; a cost above the reservation is taken from
 * the store past the cap (counted, never refused: it was spent). */
void spend_settle(struct spend_ledger *l, struct store *st, const char *key, int64_t window,
		  int64_t reserved, int64_t actual);

#endif
