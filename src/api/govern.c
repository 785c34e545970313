/* govern.c — budgets and rate limits on the request path (docs/spend.md).
 *
 * Before a request is forwarded, api_govern_admit reserves, for the
 * caller's identity and team (whichever have limits): one request against
 * `rpm`, the token estimate (prompt estimate + max output) against `tpm`,
 * and the worst-case cost against the budget. Any refusal releases what
 * was reserved and answers 429 with retry-after. api_govern_settle (from
 * api_request_done) replaces each reservation by what the upstream
 * reported; a request whose usage never arrived is charged its
 * reservation. */
#include <stdio.h>
#include <time.h>

#include "api/api.h"
#include "identity/auth.h"
#include "metrics/metrics.h"
#include "spend/budget.h"
#include "spend/prices.h"

enum hold_kind { HOLD_RPM, HOLD_TPM, HOLD_BUDGET };

struct hold {
	enum hold_kind kind;
	char key[160];
	int64_t window, amount;
};

struct govern {
	struct hold holds[6];
	int n;
};

static const char *const period_names[] = { "monthly", "weekly", "daily" };

/* One limit to reserve on. */
struct limit {
	enum hold_kind kind;
	const char *who_kind, *who;  /* "team"/"identity", its name */
	int64_t cap, window, resets; /* resets: unix time the window ends */
	enum budget_period period;
	double alert_at;
};

static void govern_release(struct req *r, struct govern *g, struct store *st)
{
	for (int i = 0; i < g->n; i++)
		spend_settle(r->rt->spend, st, g->holds[i].key, g->holds[i].window,
			     g->holds[i].amount, 0);
	g->n = 0;
}

/* Collect the limits that apply to the caller. */
static int govern_limits(struct req *r, int64_t now, struct limit *out)
{
	const struct config *cfg = r->rt->cfg;
	const struct cfg_identity *id = r->who.authenticated
		? config_find_identity(cfg, str_cstr(r->who.name)) : NULL;
	const struct cfg_team *tm = r->who.team_cfg;
	struct {
		const char *kind, *name;
		const struct cfg_budget *b;
		const struct cfg_rate_limit *rl;
	} who[2] = {
		{ "identity", id ? id->name : NULL, id ? &id->budget : NULL, id ? &id->rate_limit : NULL },
		{ "team", tm ? tm->name : NULL, tm ? &tm->budget : NULL, tm ? &tm->rate_limit : NULL },
	};
	int n = 0;
	int64_t minute = now - now % 60;
	for (int i = 0; i < 2; i++) {
		if (!who[i].name)
			continue;
		if (who[i].rl->set && who[i].rl->rpm)
			out[n++] = (struct limit){ HOLD_RPM, who[i].kind, who[i].name, who[i].rl->rpm,
						   minute, minute + 60, 0, 0 };
		if (who[i].rl->set && who[i].rl->tpm)
			out[n++] = (struct limit){ HOLD_TPM, who[i].kind, who[i].name, who[i].rl->tpm,
						   minute, minute + 60, 0, 0 };
		if (who[i].b->set) {
			enum budget_period p = who[i].b->period;
			out[n++] = (struct limit){ HOLD_BUDGET, who[i].kind, who[i].name,
						   (int64_t)(who[i].b->usd * 1e9 + 0.5),
						   budget_window_start(p, now), budget_window_end(p, now),
						   p, who[i].b->alert_at };
		}
	}
	return n;
}

static void govern_refuse(struct req *r, const struct limit *lim, int64_t used, int64_t now)
{
	char ra[64], when[32];
	int64_t wait = lim->resets - now;
	snprintf(ra, sizeof ra, "retry-after: %lld\r\n", (long long)(wait > 0 ? wait : 1));
	struct str extra = str_cstr(arena_strdup_str(r->arena, str_cstr(ra)));
	time_t t = (time_t)lim->resets;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (lim->kind == HOLD_BUDGET) {
		api_error_h(r, 429, extra, "rate_limit_error", "budget_exceeded",
			    "the %s budget of %s %s ($%.2f) cannot cover this request ($%.4f "
			    "spent or reserved); it resets at %s",
			    period_names[lim->period], lim->who_kind, lim->who,
			    (double)lim->cap / 1e9, (double)used / 1e9, when);
	} else {
		api_error_h(r, 429, extra, "rate_limit_error", "rate_limited",
			    "%s %s is over its limit of %lld %s per minute; retry at %s",
			    lim->who_kind, lim->who, (long long)lim->cap,
			    lim->kind == HOLD_RPM ? "requests" : "tokens", when);
	}
}

bool api_govern_admit(struct req *r, const struct cfg_model *m, struct str requested,
		      struct str body, int64_t max_tokens)
{
	struct limit lims[6];
	int64_t now = (int64_t)time(NULL);
	int n = govern_limits(r, now, lims);
	if (!n)
		return true;
	const struct config *cfg = r->rt->cfg;
	struct store *st = auth_worker_store(r->w->auth, cfg);
	uint64_t prompt = prices_estimate_prompt_tokens(body);
	uint64_t out_max = max_tokens > 0 ? (uint64_t)max_tokens
		: m->max_output_tokens > 0 ? (uint64_t)m->max_output_tokens
		: (uint64_t)cfg->default_max_tokens;
	struct price p;
	const char *src;
	char req_name[PRICES_NAME_MAX + 1];
	snprintf(req_name, sizeof req_name, "%.*s", (int)UMB_MIN(requested.n, (size_t)PRICES_NAME_MAX),
		 requested.p ? requested.p : "");
	if (prices_for_model(m, req_name, &p, &src) != UMB_OK)
		memset(&p, 0, sizeof p); /* unpriced: budgets cannot hold it back */
	int64_t worst = (int64_t)UMB_MIN(prices_worst_case_nusd(&p, prompt, out_max), (uint64_t)INT64_MAX);
	struct govern *g = arena_alloc(r->arena, sizeof *g);
	for (int i = 0; i < n; i++) {
		const struct limit *lim = &lims[i];
		struct hold *h = &g->holds[g->n];
		h->kind = lim->kind;
		h->window = lim->window;
		h->amount = lim->kind == HOLD_RPM ? 1
			: lim->kind == HOLD_TPM ? (int64_t)UMB_MIN(prompt + out_max, (uint64_t)INT32_MAX)
			: worst;
		snprintf(h->key, sizeof h->key, "%s:%s:%s",
			 lim->kind == HOLD_RPM ? "rpm" : lim->kind == HOLD_TPM ? "tpm" : "budget",
			 lim->who_kind, lim->who);
		int64_t used = 0;
		int rc = spend_reserve(r->rt->spend, st, h->key, h->window, lim->cap, h->amount, &used);
		if (rc < 0) {
			/* the store is down: refuse rather than spend blind */
			govern_release(r, g, st);
			api_error(r, 503, "api_error", "store_unavailable",
				  "budgets and rate limits cannot be checked: the store is unavailable");
			return false;
		}
		if (rc > 0) {
			govern_release(r, g, st);
			govern_refuse(r, lim, used, now);
			return false;
		}
		g->n++;
		if (lim->kind == HOLD_BUDGET && lim->alert_at > 0 &&
		    (double)used >= lim->alert_at * (double)lim->cap) {
			metrics_budget_alert(r->w->metrics, h->key);
			log_warn("budget: %s %s has used %.0f%% of its %s budget ($%.2f of $%.2f)",
				 lim->who_kind, lim->who, 100.0 * (double)used / (double)lim->cap,
				 period_names[lim->period], (double)used / 1e9, (double)lim->cap / 1e9);
		}
	}
	r->govern = g;
	return true;
}

void api_govern_settle(struct req *r)
{
	struct govern *g = r->govern;
	if (!g)
		return;
	struct store *st = auth_worker_store(r->w->auth, r->rt->cfg);
	/* no usage from an upstream that was reached: charge the reservation */
	bool unknown = r->attempts > 0 && !r->usage_seen;
	for (int i = 0; i < g->n; i++) {
		struct hold *h = &g->holds[i];
		int64_t actual = h->kind == HOLD_RPM ? 1
			: unknown ? h->amount
			: h->kind == HOLD_TPM ? (int64_t)(r->prompt_tokens + r->completion_tokens)
			: r->cost_nusd;
		if (r->attempts == 0)
			actual = h->kind == HOLD_RPM ? 1 : 0; /* never sent: only the request counts */
		spend_settle(r->rt->spend, st, h->key, h->window, h->amount, actual);
	}
	if (unknown) {
		/* charged the reservation: the rollups and the audit say so */
		r->usage_missing = true;
		for (int i = 0; i < g->n; i++)
			if (g->holds[i].kind == HOLD_BUDGET)
				r->cost_nusd = g->holds[i].amount;
	}
	g->n = 0;
	r->govern = NULL;
}
