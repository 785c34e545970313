/* usage.h — usage rollups: what each (day, identity, team, model,
 * provider) consumed, summed in memory by the workers and written to the
 * store in one transaction per flush (store_usage_add).
 *
 * Worker threads add under one short mutex (a hash lookup and four
 * additions); the main thread takes the pending rows every second and
 * writes them, so the request path never waits on the store. */
#ifndef UMB_USAGE_H
#define UMB_USAGE_H

#include "store/store.h"

struct usage_acc;

struct usage_acc *usage_acc_new(void);
void usage_acc_free(struct usage_acc *a);

/** Count one served request at unix time now (the UTC day bucket). */
void usage_acc_add(struct usage_acc *a, const char *identity, const char *team,
		   const char *model, const char *provider, uint64_t prompt_tokens,
		   uint64_t completion_tokens, int64_t cost_nusd, int64_t now);

/** Move the pending rows out: *rows (malloc'd, the caller frees) and their
 * count; 0 with *rows NULL when nothing is pending. */
size_t usage_acc_take(struct usage_acc *a, struct store_usage **rows);

/** Put rows back (a failed flush): they are added to what is pending. */
void usage_acc_putback(struct usage_acc *a, const struct store_usage *rows, size_t n);

#endif
