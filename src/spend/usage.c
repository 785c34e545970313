/* usage.c — in-memory usage rollups (usage.h). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "spend/usage.h"

/* Pending rows: an open-addressing table over an array of rows. A flush a
 * second keeps it small (distinct keys seen in one second). */
struct usage_acc {
	pthread_mutex_t mu;
	struct store_usage *rows;
	uint32_t *slots;   /* index + 1 into rows, 0 = empty */
	size_t n, cap;     /* rows used / slots (power of two, rows cap/2) */
};

struct usage_acc *usage_acc_new(void)
{
	struct usage_acc *a = umb_calloc(1, sizeof *a);
	pthread_mutex_init(&a->mu, NULL);
	return a;
}

void usage_acc_free(struct usage_acc *a)
{
	if (!a)
		return;
	pthread_mutex_destroy(&a->mu);
	free(a->rows);
	free(a->slots);
	free(a);
}

static uint64_t usage__hash(const struct store_usage *u)
{
	uint64_t h = 0xcbf29ce484222325ull;
	const char *parts[5] = { u->day, u->identity, u->team, u->model, u->provider };
	for (int i = 0; i < 5; i++) {
		for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++)
			h = (h ^ *p) * 0x100000001b3ull;
		h = (h ^ 0xff) * 0x100000001b3ull;
	}
	return h;
}

static bool usage__same(const struct store_usage *a, const struct store_usage *b)
{
	return !strcmp(a->day, b->day) && !strcmp(a->identity, b->identity) &&
	       !strcmp(a->team, b->team) && !strcmp(a->model, b->model) &&
	       !strcmp(a->provider, b->provider);
}

static void usage__grow(struct usage_acc *a)
{
	size_t cap = a->cap ? a->cap * 2 : 64;
	a->rows = umb_realloc(a->rows, cap / 2 * sizeof *a->rows);
	free(a->slots);
	a->slots = umb_calloc(cap, sizeof *a->slots);
	a->cap = cap;
	for (size_t i = 0; i < a->n; i++) {
		size_t k = usage__hash(&a->rows[i]) & (cap - 1);
		while (a->slots[k])
			k = (k + 1) & (cap - 1);
		a->slots[k] = (uint32_t)i + 1;
	}
}

/* Add key's sums into the pending row for key (under mu). */
static void usage__add_locked(struct usage_acc *a, const struct store_usage *key)
{
	if ((a->n + 1) * 2 > a->cap)
		usage__grow(a);
	size_t k = usage__hash(key) & (a->cap - 1);
	while (a->slots[k]) {
		struct store_usage *u = &a->rows[a->slots[k] - 1];
		if (usage__same(u, key)) {
			u->requests += key->requests;
			u->prompt_tokens += key->prompt_tokens;
			u->completion_tokens += key->completion_tokens;
			u->cost_nusd += key->cost_nusd;
			return;
		}
		k = (k + 1) & (a->cap - 1);
	}
	a->rows[a->n] = *key;
	a->slots[k] = (uint32_t)++a->n;
}

void usage_acc_add(struct usage_acc *a, const char *identity, const char *team,
		   const char *model, const char *provider, uint64_t prompt_tokens,
		   uint64_t completion_tokens, int64_t cost_nusd, int64_t now)
{
	struct store_usage key;
	memset(&key, 0, sizeof key);
	/* the day changes once a day: format it then, not per request */
	static _Thread_local int64_t last_day = INT64_MIN;
	static _Thread_local char last[11];
	if (now / 86400 != last_day) {
		time_t t = (time_t)now;
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(last, sizeof last, "%Y-%m-%d", &tm);
		last_day = now / 86400;
	}
	memcpy(key.day, last, sizeof key.day);
	snprintf(key.identity, sizeof key.identity, "%s", identity ? identity : "");
	snprintf(key.team, sizeof key.team, "%s", team ? team : "");
	snprintf(key.model, sizeof key.model, "%s", model ? model : "");
	snprintf(key.provider, sizeof key.provider, "%s", provider ? provider : "");
	key.requests = 1;
	key.prompt_tokens = prompt_tokens;
	key.completion_tokens = completion_tokens;
	key.cost_nusd = cost_nusd;
	pthread_mutex_lock(&a->mu);
	usage__add_locked(a, &key);
	pthread_mutex_unlock(&a->mu);
}

size_t usage_acc_take(struct usage_acc *a, struct store_usage **rows)
{
	pthread_mutex_lock(&a->mu);
	size_t n = a->n;
	*rows = n ? a->rows : NULL;
	if (n) {
		a->rows = NULL;
		free(a->slots);
		a->slots = NULL;
		a->n = a->cap = 0;
	}
	pthread_mutex_unlock(&a->mu);
	return n;
}

void usage_acc_putback(struct usage_acc *a, const struct store_usage *rows, size_t n)
{
	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; i < n; i++)
		usage__add_locked(a, &rows[i]);
	pthread_mutex_unlock(&a->mu);
}
