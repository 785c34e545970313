/* usage_cmd.c — `umbra usage -c CFG [--team T] [--identity I] [--since
 * DATE] [--by model|day|identity|team] [--json|--csv]`: the usage rollups
 * from the store (DESIGN.md "CLI"). The table, JSON and CSV writers are
 * shared with GET /admin/usage (usage_write_json). */
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"
#include "core/json.h"
#include "spend/usage_cmd.h"

static const char *const by_names[] = { "model", "day", "identity", "team" };

int usage_by_parse(const char *s, enum store_usage_by *out)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, by_names[i])) {
			*out = (enum store_usage_by)i;
			return UMB_OK;
		}
	return UMB_ERR;
}

bool usage_day_valid(const char *s)
{
	int y, m, d;
	char tail;
	return strlen(s) == 10 && sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) == 3 &&
	       s[4] == '-' && s[7] == '-' && m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

struct usage_out {
	struct buf *b;
	enum store_usage_by by;
	int fmt; /* 0 table, 1 json, 2 csv */
	size_t rows;
};

static int usage_row_cb(void *ctx, const struct store_usage *u)
{
	struct usage_out *o = ctx;
	struct buf *b = o->b;
	double cost = (double)u->cost_nusd / 1e9;
	if (o->fmt == 1) {
		buf_append_cstr(b, o->rows ? ",{" : "{");
		if (o->by == STORE_BY_DAY) {
			buf_append_cstr(b, "\"day\":");
			json_write_cstr(b, u->day);
			buf_append_cstr(b, ",");
		}
		buf_append_cstr(b, "\"team\":");
		json_write_cstr(b, u->team);
		buf_append_cstr(b, ",\"identity\":");
		json_write_cstr(b, u->identity);
		buf_append_cstr(b, ",\"model\":");
		json_write_cstr(b, u->model);
		buf_printf(b, ",\"requests\":%llu,\"prompt_tokens\":%llu,\"completion_tokens\":%llu,"
			   "\"cost_usd\":%.9g}",
			   (unsigned long long)u->requests, (unsigned long long)u->prompt_tokens,
			   (unsigned long long)u->completion_tokens, cost);
	} else {
		const char *key = o->by == STORE_BY_MODEL ? u->model : o->by == STORE_BY_DAY ? u->day
				  : o->by == STORE_BY_IDENTITY ? u->identity : u->team;
		buf_printf(b, o->fmt == 2 ? "%s,%llu,%llu,%llu,%.9g\n" : "%-32s %10llu %14llu %17llu %14.6f\n",
			   key[0] ? key : "-", (unsigned long long)u->requests,
			   (unsigned long long)u->prompt_tokens, (unsigned long long)u->completion_tokens,
			   cost);
	}
	o->rows++;
	return 0;
}

int usage_write(struct store *st, const struct store_usage_query *q, int fmt, struct buf *out)
{
	struct usage_out o = { out, q->by, fmt, 0 };
	if (fmt == 1)
		buf_append_cstr(out, "[");
	else if (fmt == 2)
		buf_printf(out, "%s,requests,prompt_tokens,completion_tokens,cost_usd\n", by_names[q->by]);
	else
		buf_printf(out, "%-32s %10s %14s %17s %14s\n", by_names[q->by], "requests",
			   "prompt_tokens", "completion_tokens", "cost_usd");
	int rc = store_usage_query(st, q, usage_row_cb, &o);
	if (fmt == 1)
		buf_append_cstr(out, "]\n");
	return rc;
}

static int usage_usage(void)
{
	fprintf(stderr, "usage: umbra usage -c CONFIG [--team T] [--identity I] [--since YYYY-MM-DD]\n"
			"                   [--by model|day|identity|team] [--json|--csv]\n");
	return 2;
}

int usage_cmd_main(int argc, char **argv)
{
	const char *path = NULL;
	struct store_usage_query q = { .by = STORE_BY_MODEL };
	int fmt = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--json")) {
			fmt = 1;
		} else if (!strcmp(a, "--csv")) {
			fmt = 2;
		} else if (v && !strcmp(a, "-c")) {
			path = v, i++;
		} else if (v && !strcmp(a, "--team")) {
			q.team = v, i++;
		} else if (v && !strcmp(a, "--identity")) {
			q.identity = v, i++;
		} else if (v && !strcmp(a, "--since")) {
			if (!usage_day_valid(v)) {
				fprintf(stderr, "umbra usage: --since %s: expected YYYY-MM-DD\n", v);
				return 2;
			}
			q.since = v, i++;
		} else if (v && !strcmp(a, "--by")) {
			if (usage_by_parse(v, &q.by)) {
				fprintf(stderr, "umbra usage: --by %s: expected model, day, identity or team\n", v);
				return 2;
			}
			i++;
		} else {
			return usage_usage();
		}
	}
	if (!path)
		return usage_usage();
	struct config_err cerr;
	struct config *cfg = config_load_file(path, &cerr);
	if (!cfg) {
		fprintf(stderr, "%s\n", cerr.msg);
		return 1;
	}
	struct store *st;
	struct store_err serr;
	if (store_open(cfg->store_url, cfg->dir, &st, &serr)) {
		fprintf(stderr, "umbra usage: store %s: %s\n", cfg->store_url, serr.msg);
		config_free(cfg);
		return 1;
	}
	struct buf out;
	buf_init(&out, 0);
	int rc = usage_write(st, &q, fmt, &out);
	if (rc)
		fprintf(stderr, "umbra usage: %s\n", store_errmsg(st));
	else
		fwrite(out.p, 1, out.n, stdout);
	buf_clear(&out);
	store_close(st);
	config_free(cfg);
	return rc ? 1 : 0;
}
