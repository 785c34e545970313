/* pool.c — endpoint pools: smooth weighted round robin (nginx's
 * algorithm: every pick adds each weight to its current weight, takes the
 * largest and subtracts the total), health from active checks, and
 * passive ejection with exponential backoff. */
#include <stdlib.h>

#include "tunnel/tunnel.h"
#include "upstream/upstream_int.h"

struct upstream_set *upstream_set_new(const struct config *cfg,
				      const struct upstream_set *prev)
{
	struct upstream_set *set = umb_calloc(1, sizeof *set);
	set->cfg = cfg;
	set->n = cfg->n_providers;
	set->pools = umb_calloc(set->n ? set->n : 1, sizeof *set->pools);
	for (size_t i = 0; i < set->n; i++) {
		struct pool *p = &set->pools[i];
		p->prov = &cfg->providers[i];
		p->ops = provider_ops_get(p->prov->type);
		if (p->ops->prepare)
			p->ops->prepare(p->prov);
		p->n = UMB_MIN(p->prov->n_endpoints, (size_t)POOL_MAX_ENDPOINTS);
		p->st = umb_calloc(p->n ? p->n : 1, sizeof *p->st);
		p->cw = umb_calloc(p->n ? p->n : 1, sizeof *p->cw);
		pthread_mutex_init(&p->lock, NULL);
		for (size_t j = 0; j < p->n; j++) {
			atomic_init(&p->st[j].healthy, true);
			const struct cfg_endpoint *ep = &p->prov->endpoints[j];
			/* carry health over a reload for the same provider+URL */
			for (size_t k = 0; prev && k < prev->n; k++) {
				const struct pool *q = &prev->pools[k];
				if (strcmp(q->prov->name, p->prov->name))
					continue;
				for (size_t l = 0; l < q->n; l++) {
					const struct cfg_endpoint *old = &q->prov->endpoints[l];
					if (old->url && ep->url && !strcmp(old->url, ep->url)) {
						atomic_store(&p->st[j].healthy, atomic_load(&q->st[l].healthy));
						p->st[j].hc_fail = q->st[l].hc_fail;
						p->st[j].hc_ok = q->st[l].hc_ok;
						atomic_store(&p->st[j].ejections, atomic_load(&q->st[l].ejections));
						atomic_store(&p->st[j].ejected_until_ms,
							     atomic_load(&q->st[l].ejected_until_ms));
					}
				}
			}
		}
	}
	return set;
}

void upstream_set_free(struct upstream_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++) {
		pthread_mutex_destroy(&set->pools[i].lock);
		free(set->pools[i].st);
		free(set->pools[i].cw);
	}
	free(set->pools);
	free(set);
}

struct pool *upstream__pool(struct upstream_set *set, const struct cfg_provider *p)
{
	size_t i = (size_t)(p - set->cfg->providers);
	UMB_BUG_ON(i >= set->n);
	return &set->pools[i];
}

bool upstream__usable(struct pool *p, size_t i, uint64_t now_ms)
{
	const struct cfg_endpoint *ep = &p->prov->endpoints[i];
	/* a dark service is healthy while a connector hosts it */
	if (ep->scheme == SCHEME_SERVICE && !tunnel_service_up(ep->service))
		return false;
	return atomic_load_explicit(&p->st[i].healthy, memory_order_relaxed) &&
	       atomic_load_explicit(&p->st[i].ejected_until_ms, memory_order_relaxed) <= now_ms;
}

static int pick_among(struct pool *p, uint64_t tried, uint64_t now_ms, bool backup)
{
	int best = -1, total = 0;
	for (size_t i = 0; i < p->n; i++) {
		const struct cfg_endpoint *ep = &p->prov->endpoints[i];
		if (ep->backup != backup || (tried >> i) & 1 || !upstream__usable(p, i, now_ms))
			continue;
		p->cw[i] += ep->weight;
		total += ep->weight;
		if (best < 0 || p->cw[i] > p->cw[best])
			best = (int)i;
	}
	if (best >= 0)
		p->cw[best] -= total;
	return best;
}

int upstream__pick(struct pool *p, uint64_t tried, uint64_t now_ms)
{
	pthread_mutex_lock(&p->lock);
	int i = pick_among(p, tried, now_ms, false);
	if (i < 0)
		i = pick_among(p, tried, now_ms, true);
	pthread_mutex_unlock(&p->lock);
	return i;
}

void upstream__report(struct pool *p, size_t i, bool ok, uint64_t now_ms)
{
	struct ep_state *s = &p->st[i];
	const struct cfg_ejection *ej = &p->prov->ejection;
	if (ok) {
		atomic_store_explicit(&s->consecutive_fail, 0, memory_order_relaxed);
		atomic_store_explicit(&s->ejections, 0, memory_order_relaxed);
		return;
	}
	int fails = atomic_fetch_add(&s->consecutive_fail, 1) + 1;
	int ejections = atomic_load(&s->ejections);
	/* On probation (just back from an ejection) one failure suffices. */
	if (fails < ej->consecutive_failures && ejections == 0)
		return;
	if (atomic_load(&s->ejected_until_ms) > now_ms)
		return; /* already out */
	uint64_t ms = (uint64_t)ej->base_ms;
	for (int k = 0; k < ejections && ms < (uint64_t)ej->max_ms; k++)
		ms *= 2;
	if (ms > (uint64_t)ej->max_ms)
		ms = (uint64_t)ej->max_ms;
	atomic_store(&s->ejected_until_ms, now_ms + ms);
	atomic_fetch_add(&s->ejections, 1);
	atomic_store(&s->consecutive_fail, 0);
	log_warn("endpoint %s/%s ejected for %llu ms after %d failure(s)", p->prov->name,
		 p->prov->endpoints[i].name, (unsigned long long)ms, fails);
}

void upstream__health_result(struct pool *p, size_t i, bool ok)
{
	struct ep_state *s = &p->st[i];
	const struct cfg_health *h = &p->prov->health;
	bool healthy = atomic_load(&s->healthy);
	if (ok) {
		s->hc_fail = 0;
		if (++s->hc_ok >= h->healthy_after && !healthy) {
			atomic_store(&s->healthy, true);
			log_info("endpoint %s/%s is healthy again", p->prov->name,
				 p->prov->endpoints[i].name);
		}
	} else {
		s->hc_ok = 0;
		if (++s->hc_fail >= h->unhealthy_after && healthy) {
			atomic_store(&s->healthy, false);
			log_warn("endpoint %s/%s failed %d health checks: marked unhealthy",
				 p->prov->name, p->prov->endpoints[i].name, s->hc_fail);
		}
	}
}
