/* metrics.c — per-thread metric shards summed into a Prometheus exposition.
 *
 * Concurrency scheme (why there is no mutex at all):
 *  - A shard has one writer thread. Only that writer touches the shard's
 *    hash index (lookup, insert, grow), so the index needs no lock.
 *  - The renderer never touches the index. It walks the shard's list of
 *    series, a singly linked list the writer only ever pushes onto: a new
 *    series is fully built (labels copied, counters initialised) and then
 *    published with a release store of the list head; the renderer loads
 *    the head with acquire, so everything it can reach is initialised, and
 *    list links never change after publication.
 *  - Counters are C11 atomics. The single writer does a relaxed load and a
 *    relaxed store (no lock prefix, no cache-line bouncing); the renderer
 *    does relaxed loads, so it sees each counter whole (64-bit, no tearing)
 *    though not all counters at one instant. Histogram _count is derived
 *    from the buckets at render time, so +Inf always equals _count, and
 *    umbra_requests_total is derived from the same snapshot.
 *  - Series are freed only by metrics_shutdown, after all threads stopped.
 * A brief per-shard mutex around insertion would also work, but it would
 * add a lock to every render and buys nothing with one writer per shard.
 */
#include "metrics/metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* A runaway label set (someone passing client input as a label) must not
 * grow memory or the exposition without bound: past this many series in a
 * shard, new label sets fold into series whose label values are all
 * METRICS_OVERFLOW (the status code, a bounded set, is kept). */
#ifndef METRICS_MAX_SERIES
#define METRICS_MAX_SERIES 4096
#endif
#define METRICS_OVERFLOW "_overflow"

/* Histogram bounds in ns: sub-millisecond gateway overhead up to the two
 * minutes a long non-streamed completion may take. le strings are written
 * out so the exposition needs no float formatting. */
static const uint64_t hist_bound_ns[] = {
	500000ull,     1000000ull,    2500000ull,     5000000ull,
	10000000ull,   25000000ull,   50000000ull,    100000000ull,
	250000000ull,  500000000ull,  1000000000ull,  2500000000ull,
	5000000000ull, 10000000000ull, 30000000000ull, 60000000000ull,
	120000000000ull,
};
static const char *const hist_bound_str[] = {
	"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
	"0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5",
	"5",      "10",    "30",     "60",    "120",  "+Inf",
};
#define HIST_FINITE UMB_ARRAY_LEN(hist_bound_ns)
#define HIST_SLOTS (HIST_FINITE + 1) /* + the +Inf bucket */

/* Values held by a request series: non-cumulative bucket counts, then the
 * duration sum in ns, then the token counters. */
enum {
	RV_SUM_NS = HIST_SLOTS,
	RV_PROMPT,
	RV_COMPLETION,
	RV_COUNT,
};

/* What a stored series counts, and the label values it is keyed by. */
enum series_kind {
	SK_REQUEST, /* api, model, provider + status */
	SK_ATTEMPT, /* provider, endpoint */
	SK_ERROR,   /* provider, endpoint, kind */
	SK_ROUTE,   /* method, route */
	SK_DETECT,  /* detector */
	SK_BUDGET,  /* budget key */
	SK_KINDS,
};
static const int kind_nlab[SK_KINDS] = { 3, 2, 3, 2, 1, 1 };
static const int kind_nval[SK_KINDS] = { RV_COUNT, 1, 1, 1, 1, 1 };

struct metrics_series {
	struct metrics_series *list_next; /* older series; fixed once published */
	uint64_t hash;
	int kind;
	int status;
	const char *lv[3]; /* copies, stored after v[] in the same allocation */
	_Atomic uint64_t v[];
};

struct metrics_shard {
	/* Shared with the renderer. */
	struct metrics_series *_Atomic head;
	_Atomic int64_t inflight;
	_Atomic int64_t connections;
	/* Writer-private: open addressing with linear probing, power-of-2. */
	struct metrics_series **index;
	size_t index_cap;
	size_t count;
	bool overflow_warned;
	int id;
};

static struct metrics_shard **shards;
static int n_shards_total;
static double process_start_s; /* cached at init: it never changes */

/* ---- writer side ---- */

static inline void ctr_add(_Atomic uint64_t *c, uint64_t d)
{
	/* Single writer: a plain load+store is exact and avoids a locked RMW. */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
			      memory_order_relaxed);
}

static inline void gauge_add(_Atomic int64_t *g, int64_t d)
{
	atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + d,
			      memory_order_relaxed);
}

/* FNV-1a over kind, status and the label values, each value terminated by
 * 0xff (never valid in UTF-8) so ("ab","c") and ("a","bc") differ. */
static uint64_t key_hash(int kind, int status, const char *const *lv, int n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	h = (h ^ (uint64_t)kind) * 0x100000001b3ull;
	h = (h ^ (uint32_t)status) * 0x100000001b3ull;
	for (int i = 0; i < n; i++) {
		for (const unsigned char *p = (const unsigned char *)lv[i]; *p; p++)
			h = (h ^ *p) * 0x100000001b3ull;
		h = (h ^ 0xff) * 0x100000001b3ull;
	}
	return h;
}

static bool key_eq(const struct metrics_series *m, uint64_t h, int kind,
		   int status, const char *const *lv, int n)
{
	if (m->hash != h || m->kind != kind || m->status != status)
		return false;
	for (int i = 0; i < n; i++)
		if (strcmp(m->lv[i], lv[i]) != 0)
			return false;
	return true;
}

static void index_put(struct metrics_series **idx, size_t cap,
		      struct metrics_series *m)
{
	size_t i = m->hash & (cap - 1);

	while (idx[i])
		i = (i + 1) & (cap - 1);
	idx[i] = m;
}

/* Keep the load factor at or below 1/2 so probes stay short. */
static void index_grow(struct metrics_shard *s)
{
	size_t ncap = s->index_cap ? s->index_cap * 2 : 64;
	struct metrics_series **nidx = umb_calloc(ncap, sizeof(*nidx));

	for (size_t i = 0; i < s->index_cap; i++)
		if (s->index[i])
			index_put(nidx, ncap, s->index[i]);
	free(s->index);
	s->index = nidx;
	s->index_cap = ncap;
}

/* Build a series with its own copy of the labels, index it, then publish
 * it to the renderer (release: the renderer sees it fully built). */
static struct metrics_series *series_insert(struct metrics_shard *s,
					    uint64_t h, int kind, int status,
					    const char *const *lv, int n)
{
	size_t len[3], total = 0, nval = (size_t)kind_nval[kind];
	struct metrics_series *m;
	char *p;

	for (int i = 0; i < n; i++) {
		len[i] = strlen(lv[i]);
		total += len[i] + 1;
	}
	m = umb_malloc(sizeof(*m) + nval * sizeof(m->v[0]) + total);
	m->hash = h;
	m->kind = kind;
	m->status = status;
	for (size_t i = 0; i < nval; i++)
		atomic_init(&m->v[i], 0);
	p = (char *)&m->v[nval];
	for (int i = 0; i < 3; i++) {
		if (i >= n) {
			m->lv[i] = "";
			continue;
		}
		memcpy(p, lv[i], len[i] + 1);
		m->lv[i] = p;
		p += len[i] + 1;
	}
	if ((s->count + 1) * 2 > s->index_cap)
		index_grow(s);
	index_put(s->index, s->index_cap, m);
	s->count++;
	m->list_next = atomic_load_explicit(&s->head, memory_order_relaxed);
	atomic_store_explicit(&s->head, m, memory_order_release);
	return m;
}

/* Find or create the series for a label set; NULL values mean "". */
static struct metrics_series *shard_series(struct metrics_shard *s, int kind,
					   int status, const char *a,
					   const char *b, const char *c)
{
	const char *lv[3] = { a ? a : "", b ? b : "", c ? c : "" };
	int n = kind_nlab[kind];
	uint64_t h = key_hash(kind, status, lv, n);

	if (UMB_LIKELY(s->index_cap)) {
		for (size_t i = h & (s->index_cap - 1); s->index[i];
		     i = (i + 1) & (s->index_cap - 1))
			if (key_eq(s->index[i], h, kind, status, lv, n))
				return s->index[i];
	}
	if (UMB_UNLIKELY(s->count >= METRICS_MAX_SERIES)) {
		static const char *const ov[3] = { METRICS_OVERFLOW,
						   METRICS_OVERFLOW,
						   METRICS_OVERFLOW };
		if (!s->overflow_warned) {
			s->overflow_warned = true;
			log_warn("metrics: shard %d holds %d label sets; further "
				 "ones are counted as \"%s\" (label values must "
				 "come from the config)",
				 s->id, METRICS_MAX_SERIES, METRICS_OVERFLOW);
		}
		if (strcmp(lv[0], METRICS_OVERFLOW) != 0)
			return shard_series(s, kind, status, ov[0], ov[1], ov[2]);
	}
	return series_insert(s, h, kind, status, lv, n);
}

/* Index of the bucket holding d: the first bound >= d (le is inclusive). */
static inline unsigned hist_bucket(uint64_t d)
{
	unsigned lo = 0, hi = HIST_FINITE; /* answer in [lo, hi] */

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;

		if (d <= hist_bound_ns[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

void metrics_request(struct metrics_shard *s, const char *route_api,
		     const char *model, const char *provider, int status,
		     uint64_t dur_ns, uint64_t prompt_tokens,
		     uint64_t completion_tokens)
{
	struct metrics_series *m;

	if (!s)
		return;
	m = shard_series(s, SK_REQUEST, status, route_api, model, provider);
	ctr_add(&m->v[hist_bucket(dur_ns)], 1);
	ctr_add(&m->v[RV_SUM_NS], dur_ns);
	if (prompt_tokens)
		ctr_add(&m->v[RV_PROMPT], prompt_tokens);
	if (completion_tokens)
		ctr_add(&m->v[RV_COMPLETION], completion_tokens);
}

void metrics_upstream_attempt(struct metrics_shard *s, const char *provider,
			      const char *endpoint)
{
	if (s)
		ctr_add(&shard_series(s, SK_ATTEMPT, 0, provider, endpoint, NULL)->v[0], 1);
}

void metrics_upstream_error(struct metrics_shard *s, const char *provider,
			    const char *endpoint, const char *kind)
{
	if (s)
		ctr_add(&shard_series(s, SK_ERROR, 0, provider, endpoint, kind)->v[0], 1);
}

void metrics_route(struct metrics_shard *s, const char *method, const char *route)
{
	if (s)
		ctr_add(&shard_series(s, SK_ROUTE, 0, method, route ? route : "", NULL)->v[0], 1);
}

void metrics_detector_hits(struct metrics_shard *s, const char *detector, uint64_t n)
{
	if (s && n)
		ctr_add(&shard_series(s, SK_DETECT, 0, detector, NULL, NULL)->v[0], n);
}

void metrics_budget_alert(struct metrics_shard *s, const char *budget)
{
	if (s)
		ctr_add(&shard_series(s, SK_BUDGET, 0, budget, NULL, NULL)->v[0], 1);
}

void metrics_inflight_add(struct metrics_shard *s, int delta)
{
	if (s)
		gauge_add(&s->inflight, delta);
}

void metrics_connections_add(struct metrics_shard *s, int delta)
{
	if (s)
		gauge_add(&s->connections, delta);
}

/* ---- lifecycle ---- */

/* Seconds since the epoch at which this process started: starttime (field
 * 22 of /proc/self/stat, in clock ticks since boot) + btime of /proc/stat.
 * Returns 0 when /proc is unavailable. */
static double proc_start_time(void)
{
	char buf[1024], *p, *line = NULL;
	size_t cap = 0;
	unsigned long long start_ticks = 0, btime = 0;
	long tck = sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/self/stat", "re");
	bool ok = false;

	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		/* after ")": field 3 is state, so starttime is token 20 */
		ok = sscanf(p + 1, " %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s"
			    " %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu",
			    &start_ticks) == 1;
	fclose(f);
	if (!ok || tck <= 0 || !(f = fopen("/proc/stat", "re")))
		return 0;
	/* getline: the "intr" line before btime can be very long */
	while (getline(&line, &cap, f) > 0)
		if (sscanf(line, "btime %llu", &btime) == 1)
			break;
	free(line);
	fclose(f);
	if (!btime)
		return 0;
	return (double)btime + (double)start_ticks / (double)tck;
}

void metrics_init(int n_shards)
{
	UMB_BUG_ON(shards != NULL);
	UMB_BUG_ON(n_shards <= 0);
	shards = umb_calloc((size_t)n_shards, sizeof(*shards));
	for (int i = 0; i < n_shards; i++) {
		/* One allocation per shard: each writer's hot gauges and index
		 * pointer live apart from the other writers'. */
		shards[i] = umb_calloc(1, sizeof(*shards[i]));
		atomic_init(&shards[i]->head, NULL);
		atomic_init(&shards[i]->inflight, 0);
		atomic_init(&shards[i]->connections, 0);
		shards[i]->id = i;
	}
	n_shards_total = n_shards;
	process_start_s = proc_start_time();
}

void metrics_shutdown(void)
{
	for (int i = 0; i < n_shards_total; i++) {
		struct metrics_series *m = atomic_load(&shards[i]->head), *next;

		for (; m; m = next) {
			next = m->list_next;
			free(m);
		}
		free(shards[i]->index);
		free(shards[i]);
	}
	free(shards);
	shards = NULL;
	n_shards_total = 0;
}

struct metrics_shard *metrics_shard_get(int idx)
{
	if (!shards)
		return NULL;
	UMB_BUG_ON(idx < 0 || idx >= n_shards_total);
	return shards[idx];
}

/* ---- exposition helpers ---- */

/* Output with a sticky error: the first failure is kept and later writes
 * are skipped, so the render code reads straight through. */
struct out {
	struct buf *b;
	int err;
};

static void out_put(struct out *o, const char *p, size_t n)
{
	if (!o->err && n)
		o->err = buf_append(o->b, p, n);
}

static void out_cstr(struct out *o, const char *s)
{
	out_put(o, s, strlen(s));
}

/* Copy s, escaping backslash, newline and (when quote) the double quote:
 * the escapes of label values (all three) and of HELP text (first two). */
static void out_escaped(struct out *o, const char *s, bool quote)
{
	const char *run = s;

	for (; *s; s++) {
		const char *esc;

		if (*s == '\\')
			esc = "\\\\";
		else if (*s == '\n')
			esc = "\\n";
		else if (*s == '"' && quote)
			esc = "\\\"";
		else
			continue;
		out_put(o, run, (size_t)(s - run));
		out_put(o, esc, 2);
		run = s + 1;
	}
	out_put(o, run, (size_t)(s - run));
}

/* {k="v",...} from a flat k,v array of npairs pairs; nothing when empty. */
static void out_labels(struct out *o, const char *const *kv, size_t npairs)
{
	for (size_t i = 0; i < npairs; i++) {
		out_put(o, i ? "," : "{", 1);
		out_cstr(o, kv[2 * i]);
		out_put(o, "=\"", 2);
		out_escaped(o, kv[2 * i + 1] ? kv[2 * i + 1] : "", true);
		out_put(o, "\"", 1);
	}
	if (npairs)
		out_put(o, "}", 1);
}

static void out_u64(struct out *o, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);

	out_put(o, tmp, (size_t)n);
}

/* Exact decimal seconds from ns, trailing zeros trimmed ("1.5", "0"). */
static void out_seconds(struct out *o, uint64_t ns)
{
	char tmp[40];
	int n = snprintf(tmp, sizeof(tmp), "%" PRIu64 ".%09" PRIu64,
			 ns / UINT64_C(1000000000), ns % UINT64_C(1000000000));

	while (tmp[n - 1] == '0')
		n--;
	if (tmp[n - 1] == '.')
		n--;
	out_put(o, tmp, (size_t)n);
}

/* Shortest of %.15g / %.17g that reads back exactly (0.1, not
 * 0.10000000000000001), with the exposition's spellings of NaN and Inf. */
static void out_double(struct out *o, double v)
{
	char tmp[40];

	if (isnan(v)) {
		out_cstr(o, "NaN");
		return;
	}
	if (isinf(v)) {
		out_cstr(o, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	snprintf(tmp, sizeof(tmp), "%.15g", v);
	if (strtod(tmp, NULL) != v)
		snprintf(tmp, sizeof(tmp), "%.17g", v);
	out_cstr(o, tmp);
}

static void out_header(struct out *o, const char *family, const char *type,
		       const char *help)
{
	out_cstr(o, "# HELP ");
	out_cstr(o, family);
	out_put(o, " ", 1);
	out_escaped(o, help, false);
	out_cstr(o, "\n# TYPE ");
	out_cstr(o, family);
	out_put(o, " ", 1);
	out_cstr(o, type);
	out_put(o, "\n", 1);
}

/* name+suffix labels value-prefix; the caller appends the value and '\n'. */
static void out_sample_head(struct out *o, const char *name, const char *suffix,
			    const char *const *kv, size_t npairs)
{
	out_cstr(o, name);
	out_cstr(o, suffix);
	out_labels(o, kv, npairs);
	out_put(o, " ", 1);
}

int metrics_write_header(struct buf *b, const char *family, const char *type,
			 const char *help)
{
	struct out o = { b, 0 };

	out_header(&o, family, type, help);
	return o.err;
}

int metrics_write_gauge(struct buf *b, const char *family,
			const char *labels_kv[], double value)
{
	struct out o = { b, 0 };
	size_t n = 0;

	while (labels_kv && labels_kv[2 * n])
		n++;
	out_sample_head(&o, family, "", labels_kv, n);
	out_double(&o, value);
	out_put(&o, "\n", 1);
	return o.err;
}

/* ---- render: snapshot, group, emit ---- */

/* One series as read at render time (plain integers, labels borrowed from
 * the series, which live until metrics_shutdown). */
struct rec {
	const char *lv[3];
	int status;
	uint64_t v[RV_COUNT];
};

struct recs {
	struct rec *r;
	size_t n, cap;
};

/* Which labels of a rec a family keeps (by index into lv), and their names;
 * recs equal on those are summed into one sample. */
struct proj {
	int nlab;
	int lab[3];
	const char *name[3];
	bool status;
};

static void recs_snapshot(struct recs *rs, int kind)
{
	for (int i = 0; i < n_shards_total; i++) {
		const struct metrics_series *m =
			atomic_load_explicit(&shards[i]->head, memory_order_acquire);

		for (; m; m = m->list_next) {
			struct rec *r;

			if (m->kind != kind)
				continue;
			if (rs->n == rs->cap) {
				rs->cap = rs->cap ? rs->cap * 2 : 64;
				rs->r = umb_realloc(rs->r, rs->cap * sizeof(*rs->r));
			}
			r = &rs->r[rs->n++];
			memcpy(r->lv, m->lv, sizeof(r->lv));
			r->status = m->status;
			for (int j = 0; j < RV_COUNT; j++)
				r->v[j] = j < kind_nval[kind] ?
					atomic_load_explicit(&m->v[j], memory_order_relaxed) : 0;
		}
	}
}

static int rec_cmp(const void *pa, const void *pb, void *arg)
{
	const struct rec *a = pa, *b = pb;
	const struct proj *pj = arg;

	for (int i = 0; i < pj->nlab; i++) {
		int c = strcmp(a->lv[pj->lab[i]], b->lv[pj->lab[i]]);

		if (c)
			return c;
	}
	if (pj->status)
		return (a->status > b->status) - (a->status < b->status);
	return 0;
}

static void recs_sort(struct recs *rs, struct proj *pj)
{
	if (rs->n > 1) /* rs->r is NULL when empty, and qsort_r wants nonnull */
		qsort_r(rs->r, rs->n, sizeof(*rs->r), rec_cmp, pj);
}

/* Sum the run of recs equal to r[i] under pj into *acc; return the index
 * after the run. The recs must be sorted by the same projection. */
static size_t rec_group(const struct recs *rs, size_t i, struct proj *pj,
			struct rec *acc)
{
	size_t j;

	*acc = rs->r[i];
	for (j = i + 1; j < rs->n && rec_cmp(&rs->r[i], &rs->r[j], pj) == 0; j++)
		for (int k = 0; k < RV_COUNT; k++)
			acc->v[k] += rs->r[j].v[k];
	return j;
}

/* kv pairs of acc under pj into kv (room for 5 pairs); returns the count.
 * status_buf holds the formatted status label value. */
static size_t proj_kv(const struct proj *pj, const struct rec *acc,
		      const char **kv, char status_buf[16])
{
	size_t n = 0;

	for (int i = 0; i < pj->nlab; i++, n++) {
		kv[2 * n] = pj->name[i];
		kv[2 * n + 1] = acc->lv[pj->lab[i]];
	}
	if (pj->status) {
		snprintf(status_buf, 16, "%d", acc->status);
		kv[2 * n] = "status";
		kv[2 * n + 1] = status_buf;
		n++;
	}
	return n;
}

/* A counter family: value slot vi of every group under pj. */
static void render_counter(struct out *o, struct recs *rs, struct proj *pj,
			   const char *name, const char *help, int vi)
{
	out_header(o, name, "counter", help);
	recs_sort(rs, pj);
	for (size_t i = 0; i < rs->n;) {
		const char *kv[10];
		char sb[16];
		struct rec acc;
		size_t n;
		uint64_t v = 0;

		i = rec_group(rs, i, pj, &acc);
		n = proj_kv(pj, &acc, kv, sb);
		if (vi >= 0) {
			v = acc.v[vi];
		} else {
			/* request count: sum of the histogram buckets */
			for (size_t k = 0; k < HIST_SLOTS; k++)
				v += acc.v[k];
		}
		out_sample_head(o, name, "", kv, n);
		out_u64(o, v);
		out_put(o, "\n", 1);
	}
}

static void render_histogram(struct out *o, struct recs *rs, struct proj *pj,
			     const char *name, const char *help)
{
	out_header(o, name, "histogram", help);
	recs_sort(rs, pj);
	for (size_t i = 0; i < rs->n;) {
		const char *kv[12];
		char sb[16];
		struct rec acc;
		uint64_t cum = 0;
		size_t n;

		i = rec_group(rs, i, pj, &acc);
		n = proj_kv(pj, &acc, kv, sb);
		kv[2 * n] = "le";
		for (size_t k = 0; k < HIST_SLOTS; k++) {
			cum += acc.v[k];
			kv[2 * n + 1] = hist_bound_str[k];
			out_sample_head(o, name, "_bucket", kv, n + 1);
			out_u64(o, cum);
			out_put(o, "\n", 1);
		}
		out_sample_head(o, name, "_sum", kv, n);
		out_seconds(o, acc.v[RV_SUM_NS]);
		out_put(o, "\n", 1);
		out_sample_head(o, name, "_count", kv, n);
		out_u64(o, cum);
		out_put(o, "\n", 1);
	}
}

/* A gauge summed over shards; a request may start on one shard and end on
 * another, so one shard's part can be negative while the sum is right. */
static void render_gauge_sum(struct out *o, const char *name, const char *help,
			     bool connections)
{
	int64_t sum = 0;
	char tmp[24];

	for (int i = 0; i < n_shards_total; i++)
		sum += atomic_load_explicit(connections ? &shards[i]->connections :
						    &shards[i]->inflight,
					    memory_order_relaxed);
	out_header(o, name, "gauge", help);
	snprintf(tmp, sizeof(tmp), "%" PRId64, sum);
	out_cstr(o, name);
	out_put(o, " ", 1);
	out_cstr(o, tmp);
	out_put(o, "\n", 1);
}

/* Read a small /proc file whole into buf (NUL-terminated); false if none. */
static bool proc_read(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = 0;
	return n > 0;
}

/* The standard process collector's families that matter for a gateway:
 * memory, CPU, file descriptors (connection leaks) and start time. */
static void render_process(struct out *o)
{
	char buf[1024], *p;
	unsigned long long pages, ut, st;
	long page = sysconf(_SC_PAGESIZE), tck = sysconf(_SC_CLK_TCK);
	DIR *d;

	if (proc_read("/proc/self/statm", buf, sizeof(buf)) &&
	    sscanf(buf, "%*u %llu", &pages) == 1) {
		out_header(o, "process_resident_memory_bytes", "gauge",
			   "Resident memory size in bytes.");
		out_cstr(o, "process_resident_memory_bytes ");
		out_u64(o, (uint64_t)pages * (uint64_t)page);
		out_put(o, "\n", 1);
	}
	/* utime, stime: fields 14, 15, i.e. tokens 12, 13 after ")" */
	if (tck > 0 && proc_read("/proc/self/stat", buf, sizeof(buf)) &&
	    (p = strrchr(buf, ')')) &&
	    sscanf(p + 1, " %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu",
		   &ut, &st) == 2) {
		out_header(o, "process_cpu_seconds_total", "counter",
			   "Total user and system CPU time spent in seconds.");
		out_cstr(o, "process_cpu_seconds_total ");
		out_double(o, (double)(ut + st) / (double)tck);
		out_put(o, "\n", 1);
	}
	if ((d = opendir("/proc/self/fd"))) {
		uint64_t n = 0;
		struct dirent *e;

		while ((e = readdir(d)))
			if (e->d_name[0] != '.')
				n++;
		closedir(d);
		out_header(o, "process_open_fds", "gauge",
			   "Number of open file descriptors.");
		out_cstr(o, "process_open_fds ");
		out_u64(o, n ? n - 1 : 0); /* minus the one opendir holds */
		out_put(o, "\n", 1);
	}
	if (process_start_s > 0) {
		out_header(o, "process_start_time_seconds", "gauge",
			   "Start time of the process since unix epoch in seconds.");
		out_cstr(o, "process_start_time_seconds ");
		out_double(o, process_start_s);
		out_put(o, "\n", 1);
	}
}

int metrics_render(struct buf *b, metrics_extra_cb extra, void *ctx)
{
	struct out o = { b, 0 };
	struct recs req = { 0 }, att = { 0 }, err = { 0 }, rte = { 0 }, det = { 0 }, bud = { 0 };
	struct proj p_req = { 3, { 0, 1, 2 }, { "api", "model", "provider" }, true };
	struct proj p_dur = { 2, { 0, 1 }, { "api", "model" }, false };
	struct proj p_tok = { 2, { 1, 2 }, { "model", "provider" }, false };
	struct proj p_att = { 2, { 0, 1 }, { "provider", "endpoint" }, false };
	struct proj p_err = { 3, { 0, 1, 2 }, { "provider", "endpoint", "kind" }, false };
	struct proj p_rte = { 2, { 0, 1 }, { "method", "route" }, false };
	struct proj p_det = { 1, { 0 }, { "detector" }, false };
	struct proj p_bud = { 1, { 0 }, { "budget" }, false };
	const char *build_kv[] = { "version", UMBRA_VERSION, NULL };

	/* One snapshot per kind: every family derived from it agrees. */
	recs_snapshot(&req, SK_REQUEST);
	recs_snapshot(&att, SK_ATTEMPT);
	recs_snapshot(&err, SK_ERROR);
	recs_snapshot(&rte, SK_ROUTE);
	recs_snapshot(&det, SK_DETECT);
	recs_snapshot(&bud, SK_BUDGET);

	render_counter(&o, &req, &p_req, "umbra_requests_total",
		       "Client requests finished, by API, model, provider and HTTP status.",
		       -1);
	render_histogram(&o, &req, &p_dur, "umbra_request_duration_seconds",
			 "Client request duration in seconds as seen by the gateway.");
	render_counter(&o, &req, &p_tok, "umbra_prompt_tokens_total",
		       "Prompt tokens reported by providers.", RV_PROMPT);
	render_counter(&o, &req, &p_tok, "umbra_completion_tokens_total",
		       "Completion tokens reported by providers.", RV_COMPLETION);
	render_counter(&o, &att, &p_att, "umbra_upstream_attempts_total",
		       "Upstream attempts, first tries and retries.", 0);
	render_counter(&o, &err, &p_err, "umbra_upstream_errors_total",
		       "Failed upstream attempts by kind of failure.", 0);
	render_counter(&o, &rte, &p_rte, "umbra_route_decisions_total",
		       "Chat requests by routing method and chosen route.", 0);
	render_counter(&o, &det, &p_det, "umbra_detector_hits_total",
		       "Distinct detector matches in chat requests (never the text).", 0);
	render_counter(&o, &bud, &p_bud, "umbra_budget_alerts_total",
		       "Requests admitted while a budget was past its alert_at fraction.", 0);
	render_gauge_sum(&o, "umbra_requests_in_flight",
			 "Client requests being processed.", false);
	render_gauge_sum(&o, "umbra_connections_open", "Open client connections.",
			 true);
	out_header(&o, "umbra_build_info", "gauge",
		   "Build information; the value is always 1.");
	out_sample_head(&o, "umbra_build_info", "", build_kv, 1);
	out_cstr(&o, "1\n");
	render_process(&o);

	free(req.r);
	free(att.r);
	free(err.r);
	free(rte.r);
	free(det.r);
	free(bud.r);
	if (!o.err && extra)
		o.err = extra(b, ctx);
	return o.err;
}
