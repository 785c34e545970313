/* test_metrics.c — exposition text, histogram math, shard sums, escaping,
 * concurrent writers against a renderer, and the cost of one recording.
 *
 * metrics.c is included so the tests reach its statics (hist_bucket, the
 * shard table) and can shrink METRICS_MAX_SERIES; link with core.o only. */
#define METRICS_MAX_SERIES 256
#include "metrics/metrics.c"

#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <time.h>

#include <cmocka.h>

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static int teardown(void **state)
{
	UMB_UNUSED(state);
	if (shards)
		metrics_shutdown();
	return 0;
}

/* Render into a fresh NUL-terminated string the caller frees. */
static char *render_str(void)
{
	struct buf b;

	buf_init(&b, 0);
	assert_int_equal(metrics_render(&b, NULL, NULL), 0);
	return b.p;
}

/* The value of the sample whose line starts with `series ` (name and
 * labels exactly as rendered); fails the test when absent. */
static double sample(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	fail_msg("no sample %s", series);
	return -1;
}

/* Every line is "# HELP name text", "# TYPE name type" or a sample
 * `name{k="v",...} value` whose family was declared by a TYPE line before;
 * no family is declared twice. Returns the number of bad lines (no cmocka
 * calls: the concurrent test runs it off the main thread). */
static int parse_back(const char *text, int *n_samples)
{
#define NAME "[a-zA-Z_:][a-zA-Z0-9_:]*"
#define LABEL "[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\[\\\"n])*\""
#define VALUE "(NaN|[+-]Inf|[-+]?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?)"
	regex_t re_sample, re_comment;
	char types[64][128];
	int ntypes = 0, bad = 0;
	const char *p = text;

	if (regcomp(&re_sample, "^(" NAME ")(\\{" LABEL "(," LABEL ")*\\})? " VALUE "$",
		    REG_EXTENDED) ||
	    regcomp(&re_comment,
		    "^# (HELP (" NAME ") .*|TYPE (" NAME ") (counter|gauge|histogram|summary|untyped))$",
		    REG_EXTENDED))
		return 1000;
	*n_samples = 0;
	while (*p) {
		const char *eol = strchr(p, '\n');
		char line[1024];
		regmatch_t m[4];
		size_t n;

		if (!eol) { /* the exposition must end with a newline */
			bad++;
			break;
		}
		n = (size_t)(eol - p);
		if (n >= sizeof(line)) {
			bad++;
			p = eol + 1;
			continue;
		}
		memcpy(line, p, n);
		line[n] = 0;
		p = eol + 1;
		if (line[0] == '#') {
			if (regexec(&re_comment, line, 4, m, 0)) {
				bad++;
			} else if (m[3].rm_so >= 0) {
				int len = (int)(m[3].rm_eo - m[3].rm_so);

				for (int i = 0; i < ntypes; i++)
					if ((int)strlen(types[i]) == len &&
					    !strncmp(types[i], line + m[3].rm_so, (size_t)len))
						bad++;
				if (ntypes < 64 && len < 128)
					snprintf(types[ntypes++], 128, "%.*s", len,
						 line + m[3].rm_so);
			}
			continue;
		}
		if (regexec(&re_sample, line, 2, m, 0)) {
			bad++;
			continue;
		}
		(*n_samples)++;
		/* the family: the name, or the name minus a histogram suffix */
		{
			int len = (int)(m[1].rm_eo - m[1].rm_so), found = 0;
			static const char *const sfx[] = { "", "_bucket", "_sum", "_count" };

			for (size_t s = 0; s < UMB_ARRAY_LEN(sfx) && !found; s++) {
				int fl = len - (int)strlen(sfx[s]);

				if (fl <= 0 || strncmp(line + fl, sfx[s], strlen(sfx[s])))
					continue;
				for (int i = 0; i < ntypes; i++)
					if ((int)strlen(types[i]) == fl &&
					    !strncmp(types[i], line, (size_t)fl))
						found = 1;
			}
			if (!found)
				bad++;
		}
	}
	regfree(&re_sample);
	regfree(&re_comment);
	return bad;
#undef NAME
#undef LABEL
#undef VALUE
}

/* ---- exact text ---- */

static const char expected_small[] =
	"# HELP umbra_requests_total Client requests finished, by API, model, provider and HTTP status.\n"
	"# TYPE umbra_requests_total counter\n"
	"umbra_requests_total{api=\"chat\",model=\"m1\",provider=\"p1\",status=\"200\"} 2\n"
	"umbra_requests_total{api=\"chat\",model=\"m1\",provider=\"p1\",status=\"502\"} 1\n"
	"umbra_requests_total{api=\"embeddings\",model=\"e1\",provider=\"p2\",status=\"200\"} 1\n"
	"# HELP umbra_request_duration_seconds Client request duration in seconds as seen by the gateway.\n"
	"# TYPE umbra_request_duration_seconds histogram\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"0.0005\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"0.001\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"0.0025\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"0.005\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"0.01\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"0.025\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"0.05\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"0.1\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"0.25\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"0.5\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"1\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"2.5\"} 2\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"5\"} 2\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"10\"} 2\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"30\"} 2\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"60\"} 2\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"120\"} 2\n"
	"umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m1\",le=\"+Inf\"} 3\n"
	"umbra_request_duration_seconds_sum{api=\"chat\",model=\"m1\"} 201.5003\n"
	"umbra_request_duration_seconds_count{api=\"chat\",model=\"m1\"} 3\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"0.0005\"} 0\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"0.001\"} 0\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"0.0025\"} 0\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"0.005\"} 0\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"0.01\"} 0\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"0.025\"} 0\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"0.05\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"0.1\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"0.25\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"0.5\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"1\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"2.5\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"5\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"10\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"30\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"60\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"120\"} 1\n"
	"umbra_request_duration_seconds_bucket{api=\"embeddings\",model=\"e1\",le=\"+Inf\"} 1\n"
	"umbra_request_duration_seconds_sum{api=\"embeddings\",model=\"e1\"} 0.05\n"
	"umbra_request_duration_seconds_count{api=\"embeddings\",model=\"e1\"} 1\n"
	"# HELP umbra_prompt_tokens_total Prompt tokens reported by providers.\n"
	"# TYPE umbra_prompt_tokens_total counter\n"
	"umbra_prompt_tokens_total{model=\"e1\",provider=\"p2\"} 8\n"
	"umbra_prompt_tokens_total{model=\"m1\",provider=\"p1\"} 30\n"
	"# HELP umbra_completion_tokens_total Completion tokens reported by providers.\n"
	"# TYPE umbra_completion_tokens_total counter\n"
	"umbra_completion_tokens_total{model=\"e1\",provider=\"p2\"} 0\n"
	"umbra_completion_tokens_total{model=\"m1\",provider=\"p1\"} 12\n"
	"# HELP umbra_upstream_attempts_total Upstream attempts, first tries and retries.\n"
	"# TYPE umbra_upstream_attempts_total counter\n"
	"umbra_upstream_attempts_total{provider=\"p1\",endpoint=\"e1\"} 2\n"
	"# HELP umbra_upstream_errors_total Failed upstream attempts by kind of failure.\n"
	"# TYPE umbra_upstream_errors_total counter\n"
	"umbra_upstream_errors_total{provider=\"p1\",endpoint=\"e1\",kind=\"status_5xx\"} 1\n"
	"# HELP umbra_route_decisions_total Chat requests by routing method and chosen route.\n"
	"# TYPE umbra_route_decisions_total counter\n"
	"# HELP umbra_detector_hits_total Distinct detector matches in chat requests (never the text).\n"
	"# TYPE umbra_detector_hits_total counter\n"
	"# HELP umbra_budget_alerts_total Requests admitted while a budget was past its alert_at fraction.\n"
	"# TYPE umbra_budget_alerts_total counter\n"
	"# HELP umbra_requests_in_flight Client requests being processed.\n"
	"# TYPE umbra_requests_in_flight gauge\n"
	"umbra_requests_in_flight 1\n"
	"# HELP umbra_connections_open Open client connections.\n"
	"# TYPE umbra_connections_open gauge\n"
	"umbra_connections_open 1\n"
	"# HELP umbra_build_info Build information; the value is always 1.\n"
	"# TYPE umbra_build_info gauge\n"
	"umbra_build_info{version=\"" UMBRA_VERSION "\"} 1\n";

static void test_render_exact(void **state)
{
	struct metrics_shard *s;
	char *text, *proc;

	UMB_UNUSED(state);
	metrics_init(1);
	s = metrics_shard_get(0);
	metrics_request(s, "chat", "m1", "p1", 200, 300000, 10, 5);
	metrics_request(s, "chat", "m1", "p1", 200, 1500000000ull, 20, 7);
	metrics_request(s, "chat", "m1", "p1", 502, 200000000000ull, 0, 0);
	metrics_request(s, "embeddings", "e1", "p2", 200, 50000000ull, 8, 0);
	metrics_upstream_attempt(s, "p1", "e1");
	metrics_upstream_attempt(s, "p1", "e1");
	metrics_upstream_error(s, "p1", "e1", "status_5xx");
	metrics_inflight_add(s, 1);
	metrics_connections_add(s, 2);
	metrics_connections_add(s, -1);

	text = render_str();
	proc = strstr(text, "# HELP process_");
	assert_non_null(proc);
	*proc = 0; /* process values vary: checked in test_process */
	assert_string_equal(text, expected_small);
	free(text);
}

/* ---- histogram ---- */

static void test_hist_bucket_edges(void **state)
{
	UMB_UNUSED(state);
	assert_int_equal(HIST_SLOTS, UMB_ARRAY_LEN(hist_bound_str));
	assert_int_equal(hist_bucket(0), 0);
	assert_int_equal(hist_bucket(500000), 0); /* le is inclusive */
	assert_int_equal(hist_bucket(500001), 1);
	assert_int_equal(hist_bucket(1000000), 1);
	assert_int_equal(hist_bucket(999999999), 10);
	assert_int_equal(hist_bucket(1000000000), 10);
	assert_int_equal(hist_bucket(120000000000ull), 16);
	assert_int_equal(hist_bucket(120000000001ull), 17);
	assert_int_equal(hist_bucket(UINT64_MAX), 17);
	/* bounds ascend and their strings say the same seconds */
	for (size_t i = 0; i < HIST_FINITE; i++) {
		assert_true(i == 0 || hist_bound_ns[i] > hist_bound_ns[i - 1]);
		assert_true(fabs(strtod(hist_bound_str[i], NULL) -
				 (double)hist_bound_ns[i] / 1e9) < 1e-12);
		assert_int_equal(hist_bucket(hist_bound_ns[i]), i);
		assert_int_equal(hist_bucket(hist_bound_ns[i] + 1), i + 1);
	}
}

/* Cumulative counts equal a brute-force count of durations <= le, and
 * +Inf equals _count. */
static void test_hist_cumulative(void **state)
{
	uint64_t durs[500], sum = 0;
	char *text, key[256];

	UMB_UNUSED(state);
	metrics_init(2);
	/* log-spread durations from 1 us to ~300 s, exact bounds included */
	for (size_t i = 0; i < UMB_ARRAY_LEN(durs); i++) {
		durs[i] = i < HIST_FINITE ? hist_bound_ns[i] :
			(uint64_t)(1000.0 * pow(10, 8.5 * (double)i / 500.0));
		sum += durs[i];
		metrics_request(metrics_shard_get((int)(i % 2)), "chat", "m", "p",
				i % 3 ? 200 : 500, durs[i], 0, 0);
	}
	text = render_str();
	for (size_t k = 0; k < HIST_SLOTS; k++) {
		double want = 0;

		for (size_t i = 0; i < UMB_ARRAY_LEN(durs); i++)
			if (k == HIST_FINITE || durs[i] <= hist_bound_ns[k])
				want++;
		snprintf(key, sizeof(key),
			 "umbra_request_duration_seconds_bucket{api=\"chat\",model=\"m\",le=\"%s\"}",
			 hist_bound_str[k]);
		assert_true(sample(text, key) == want);
	}
	assert_true(sample(text, "umbra_request_duration_seconds_count{api=\"chat\",model=\"m\"}") ==
		    (double)UMB_ARRAY_LEN(durs));
	assert_true(fabs(sample(text, "umbra_request_duration_seconds_sum{api=\"chat\",model=\"m\"}") -
			 (double)sum / 1e9) < 1e-6);
	free(text);
}

/* ---- shards ---- */

static void test_sum_across_shards(void **state)
{
	char *text;

	UMB_UNUSED(state);
	metrics_init(3);
	for (int i = 0; i < 3; i++) {
		struct metrics_shard *s = metrics_shard_get(i);

		for (int j = 0; j <= i; j++)
			metrics_request(s, "chat", "m", "p", 200, 1000000, 100, 10);
		metrics_request(s, "models", "", "", 200, 1000, 0, 0);
		metrics_upstream_attempt(s, "p", "e");
		metrics_upstream_error(s, "p", "e", i == 2 ? "timeout" : "connect");
	}
	metrics_inflight_add(metrics_shard_get(0), 3);
	metrics_inflight_add(metrics_shard_get(1), -1); /* ended on another shard */
	metrics_connections_add(metrics_shard_get(2), 5);
	text = render_str();
	assert_true(sample(text, "umbra_requests_total{api=\"chat\",model=\"m\",provider=\"p\",status=\"200\"}") == 6);
	assert_true(sample(text, "umbra_requests_total{api=\"models\",model=\"\",provider=\"\",status=\"200\"}") == 3);
	assert_true(sample(text, "umbra_request_duration_seconds_count{api=\"chat\",model=\"m\"}") == 6);
	assert_true(sample(text, "umbra_request_duration_seconds_sum{api=\"chat\",model=\"m\"}") == 0.006);
	assert_true(sample(text, "umbra_prompt_tokens_total{model=\"m\",provider=\"p\"}") == 600);
	assert_true(sample(text, "umbra_completion_tokens_total{model=\"m\",provider=\"p\"}") == 60);
	assert_true(sample(text, "umbra_upstream_attempts_total{provider=\"p\",endpoint=\"e\"}") == 3);
	assert_true(sample(text, "umbra_upstream_errors_total{provider=\"p\",endpoint=\"e\",kind=\"connect\"}") == 2);
	assert_true(sample(text, "umbra_upstream_errors_total{provider=\"p\",endpoint=\"e\",kind=\"timeout\"}") == 1);
	assert_true(sample(text, "umbra_requests_in_flight") == 2);
	assert_true(sample(text, "umbra_connections_open") == 5);
	/* one sample per label set, not one per shard */
	{
		int hits = 0;

		for (const char *p = text; (p = strstr(p, "umbra_requests_total{api=\"chat\"")); p++)
			hits++;
		assert_int_equal(hits, 1);
	}
	free(text);
}

/* ---- escaping and inputs ---- */

static void test_label_escaping(void **state)
{
	char model[] = "a\"b\\c\nd";
	char *text;
	int n;

	UMB_UNUSED(state);
	metrics_init(1);
	metrics_request(metrics_shard_get(0), "chat", model, "p\\", 200, 1, 0, 0);
	memset(model, 'x', sizeof(model) - 1); /* labels were copied */
	text = render_str();
	assert_non_null(strstr(text, "umbra_requests_total{api=\"chat\",model=\"a\\\"b\\\\c\\nd\",provider=\"p\\\\\",status=\"200\"} 1\n"));
	assert_null(strstr(text, "xxxx"));
	assert_int_equal(parse_back(text, &n), 0);
	free(text);
}

static void test_null_shard_and_labels(void **state)
{
	char *text;

	UMB_UNUSED(state);
	/* before init: no shard, recording is a no-op */
	assert_null(metrics_shard_get(0));
	metrics_request(NULL, "chat", "m", "p", 200, 1, 1, 1);
	metrics_upstream_attempt(NULL, "p", "e");
	metrics_upstream_error(NULL, "p", "e", "reset");
	metrics_inflight_add(NULL, 1);
	metrics_connections_add(NULL, 1);
	text = render_str(); /* renders the families, without samples */
	assert_non_null(strstr(text, "umbra_requests_in_flight 0\n"));
	assert_null(strstr(text, "umbra_requests_total{"));
	free(text);
	metrics_init(1);
	metrics_request(metrics_shard_get(0), NULL, NULL, NULL, 0, 1, 0, 0);
	metrics_upstream_error(metrics_shard_get(0), NULL, NULL, NULL);
	text = render_str();
	assert_true(sample(text, "umbra_requests_total{api=\"\",model=\"\",provider=\"\",status=\"0\"}") == 1);
	assert_true(sample(text, "umbra_upstream_errors_total{provider=\"\",endpoint=\"\",kind=\"\"}") == 1);
	free(text);
}

/* Keys that differ only in where one label ends must not merge. */
static void test_key_boundaries(void **state)
{
	char *text;

	UMB_UNUSED(state);
	metrics_init(1);
	metrics_request(metrics_shard_get(0), "chat", "ab", "c", 200, 1, 0, 0);
	metrics_request(metrics_shard_get(0), "chat", "a", "bc", 200, 1, 0, 0);
	metrics_request(metrics_shard_get(0), "chat", "a", "bc", 201, 1, 0, 0);
	text = render_str();
	assert_true(sample(text, "umbra_requests_total{api=\"chat\",model=\"ab\",provider=\"c\",status=\"200\"}") == 1);
	assert_true(sample(text, "umbra_requests_total{api=\"chat\",model=\"a\",provider=\"bc\",status=\"200\"}") == 1);
	assert_true(sample(text, "umbra_requests_total{api=\"chat\",model=\"a\",provider=\"bc\",status=\"201\"}") == 1);
	free(text);
}

/* Past METRICS_MAX_SERIES label sets, new ones fold into "_overflow" and
 * the total is kept. */
static void test_overflow(void **state)
{
	char *text, model[32];
	int n;

	UMB_UNUSED(state);
	metrics_init(1);
	for (int i = 0; i < 3 * METRICS_MAX_SERIES; i++) {
		snprintf(model, sizeof(model), "m%d", i);
		metrics_request(metrics_shard_get(0), "chat", model, "p", 200, 1, 0, 0);
	}
	assert_true(metrics_shard_get(0)->count <= METRICS_MAX_SERIES + 1);
	text = render_str();
	assert_true(sample(text, "umbra_requests_total{api=\"_overflow\",model=\"_overflow\",provider=\"_overflow\",status=\"200\"}") ==
		    2 * METRICS_MAX_SERIES);
	assert_true(sample(text, "umbra_requests_total{api=\"chat\",model=\"m0\",provider=\"p\",status=\"200\"}") == 1);
	assert_int_equal(parse_back(text, &n), 0);
	free(text);
}

/* ---- extra families, value formatting, caps ---- */

static int extra_cb(struct buf *out, void *ctx)
{
	const char *kv[] = { "provider", "p\"1", "endpoint", "e\n1", NULL };
	int rc;

	(*(int *)ctx)++;
	rc = metrics_write_header(out, "umbra_endpoint_healthy", "gauge",
				  "1 when the endpoint is healthy \\ up\nnext");
	if (!rc)
		rc = metrics_write_gauge(out, "umbra_endpoint_healthy", kv, 1);
	if (!rc)
		rc = metrics_write_gauge(out, "umbra_endpoint_healthy", NULL, 0.1);
	if (!rc)
		rc = metrics_write_gauge(out, "umbra_endpoint_healthy", NULL, 1e21);
	if (!rc)
		rc = metrics_write_gauge(out, "umbra_endpoint_healthy", NULL, NAN);
	if (!rc)
		rc = metrics_write_gauge(out, "umbra_endpoint_healthy", NULL, -INFINITY);
	return rc;
}

static void test_extra_and_gauge_format(void **state)
{
	struct buf b;
	int calls = 0, n;
	const char *tail;

	UMB_UNUSED(state);
	metrics_init(1);
	buf_init(&b, 0);
	assert_int_equal(metrics_render(&b, extra_cb, &calls), 0);
	assert_int_equal(calls, 1);
	tail = strstr(b.p, "# HELP umbra_endpoint_healthy");
	assert_non_null(tail);
	assert_string_equal(tail,
		"# HELP umbra_endpoint_healthy 1 when the endpoint is healthy \\\\ up\\nnext\n"
		"# TYPE umbra_endpoint_healthy gauge\n"
		"umbra_endpoint_healthy{provider=\"p\\\"1\",endpoint=\"e\\n1\"} 1\n"
		"umbra_endpoint_healthy 0.1\n"
		"umbra_endpoint_healthy 1e+21\n"
		"umbra_endpoint_healthy NaN\n"
		"umbra_endpoint_healthy -Inf\n");
	assert_int_equal(parse_back(b.p, &n), 0);
	buf_clear(&b);
}

static void test_buf_cap(void **state)
{
	struct buf b;
	int calls = 0;

	UMB_UNUSED(state);
	metrics_init(1);
	metrics_request(metrics_shard_get(0), "chat", "m", "p", 200, 1, 0, 0);
	buf_init(&b, 300);
	assert_int_equal(metrics_render(&b, extra_cb, &calls), UMB_ETOOBIG);
	assert_int_equal(calls, 0); /* not called once the output failed */
	assert_true(b.n <= 300);
	buf_clear(&b);
}

static void test_process(void **state)
{
	char *text;
	int n;
	double start;

	UMB_UNUSED(state);
	metrics_init(1);
	text = render_str();
	assert_true(sample(text, "process_resident_memory_bytes") > 100000);
	assert_true(sample(text, "process_open_fds") >= 3);
	assert_true(sample(text, "process_cpu_seconds_total") >= 0);
	start = sample(text, "process_start_time_seconds");
	/* started within the last hour, not in the future */
	assert_true(start <= (double)time(NULL) + 1);
	assert_true(start > (double)time(NULL) - 3600);
	assert_int_equal(parse_back(text, &n), 0);
	free(text);
}

/* ---- parse-back of a busy exposition ---- */

static void test_parse_back_full(void **state)
{
	static const char *const apis[] = { "chat", "embeddings", "models", "other" };
	static const char *const kinds[] = { "connect", "timeout", "status_5xx",
		"status_429", "garbage", "reset", "canceled" };
	char *text;
	int n;

	UMB_UNUSED(state);
	metrics_init(2);
	for (int i = 0; i < 200; i++) {
		struct metrics_shard *s = metrics_shard_get(i % 2);

		metrics_request(s, apis[i % 4], i % 5 ? "gpt-4o-mini" : "llama \"3\"",
				i % 3 ? "openai" : "on\\prem", 200 + (i % 4) * 100,
				(uint64_t)i * 7919 * 1000, (uint64_t)i, (uint64_t)i / 2);
		metrics_upstream_attempt(s, "openai", "ep-1");
		metrics_upstream_error(s, "openai", "ep-1", kinds[i % 7]);
	}
	text = render_str();
	assert_int_equal(parse_back(text, &n), 0);
	assert_true(n > 100);
	/* the checker itself rejects bad lines */
	assert_int_equal(parse_back("x{a=\"b} 1\n", &n), 1);
	assert_int_equal(parse_back("x{a=\"\\q\"} 1\n", &n), 1);
	assert_int_equal(parse_back("x 1\n", &n), 1); /* no TYPE */
	assert_int_equal(parse_back("# TYPE x gauge\nx 1\n", &n), 0);
	assert_int_equal(parse_back("# TYPE x gauge\nx one\n", &n), 1);
	free(text);
}

/* ---- concurrency: one writer per shard and a renderer ---- */

#define CONC_WRITERS 4
#define CONC_MODELS 37

static atomic_int conc_done;
static atomic_int conc_bad;
static atomic_int conc_renders;
static int conc_iters;

static void *conc_writer(void *arg)
{
	int id = (int)(intptr_t)arg;
	struct metrics_shard *s = metrics_shard_get(id);
	char models[CONC_MODELS][24];

	for (int m = 0; m < CONC_MODELS; m++)
		snprintf(models[m], sizeof(models[m]), "model-%d", m);
	for (int i = 0; i < conc_iters; i++) {
		/* new label sets keep appearing while the renderer walks */
		int m = (int)((long)i * CONC_MODELS / conc_iters);

		metrics_inflight_add(s, 1);
		metrics_upstream_attempt(s, "prov", models[m]);
		if (i % 10 == 0)
			metrics_upstream_error(s, "prov", models[m], "timeout");
		metrics_request(s, "chat", models[m], "prov", i % 7 ? 200 : 502,
				(uint64_t)(i % 1000) * 1000000, 3, 2);
		metrics_inflight_add(s, -1);
	}
	return NULL;
}

/* Sum of umbra_requests_total samples in one exposition. */
static double total_requests(const char *text)
{
	double t = 0;

	for (const char *p = text; (p = strstr(p, "\numbra_requests_total{")); p++)
		t += strtod(strchr(p, '}') + 2, NULL);
	return t;
}

static void *conc_renderer(void *arg)
{
	double last = 0;

	UMB_UNUSED(arg);
	while (!atomic_load(&conc_done)) {
		struct buf b;
		int n;
		double t;

		buf_init(&b, 0);
		if (metrics_render(&b, NULL, NULL) || parse_back(b.p, &n))
			atomic_fetch_add(&conc_bad, 1);
		t = total_requests(b.p);
		if (t < last) /* counters never go backwards */
			atomic_fetch_add(&conc_bad, 1);
		last = t;
		buf_clear(&b);
		atomic_fetch_add(&conc_renders, 1);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	pthread_t w[CONC_WRITERS], r;
	char *text, key[128];

	UMB_UNUSED(state);
	conc_iters = SANITIZED ? 100000 : 1000000;
	atomic_store(&conc_done, 0);
	atomic_store(&conc_bad, 0);
	atomic_store(&conc_renders, 0);
	metrics_init(CONC_WRITERS);
	assert_int_equal(pthread_create(&r, NULL, conc_renderer, NULL), 0);
	for (int i = 0; i < CONC_WRITERS; i++)
		assert_int_equal(pthread_create(&w[i], NULL, conc_writer,
						(void *)(intptr_t)i), 0);
	for (int i = 0; i < CONC_WRITERS; i++)
		pthread_join(w[i], NULL);
	atomic_store(&conc_done, 1);
	pthread_join(r, NULL);
	assert_int_equal(atomic_load(&conc_bad), 0);
	assert_true(atomic_load(&conc_renders) >= 1);

	text = render_str();
	assert_true(total_requests(text) == (double)CONC_WRITERS * conc_iters);
	assert_true(sample(text, "umbra_requests_in_flight") == 0);
	assert_true(sample(text, "umbra_prompt_tokens_total{model=\"model-0\",provider=\"prov\"}") ==
		    3.0 * CONC_WRITERS * (conc_iters / CONC_MODELS + (conc_iters % CONC_MODELS != 0)));
	for (int m = 0; m < CONC_MODELS; m++) {
		snprintf(key, sizeof(key),
			 "umbra_upstream_attempts_total{provider=\"prov\",endpoint=\"model-%d\"}", m);
		assert_true(sample(text, key) > 0);
	}
	print_message("concurrent: %d writers x %d requests, %d renders meanwhile\n",
		      CONC_WRITERS, conc_iters, atomic_load(&conc_renders));
	free(text);
}

/* ---- cost of one recording ---- */

static void test_bench_request(void **state)
{
	static const char *const models[] = { "gpt-4o-mini", "claude-sonnet",
		"llama-3.3-70b", "llama-3.1-8b", "text-embedding-3-small",
		"bedrock-titan", "gemini-2.0-flash", "qwen2.5-coder-32b" };
	static const char *const provs[] = { "openai", "anthropic", "onprem",
		"onprem", "openai", "bedrock", "vertex", "onprem" };
	struct metrics_shard *s;
	const int iters = SANITIZED ? 200000 : 10000000;
	struct timespec t0, t1;
	double ns;

	UMB_UNUSED(state);
	metrics_init(1);
	s = metrics_shard_get(0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < iters; i++)
		metrics_request(s, "chat", models[i & 7], provs[i & 7],
				i % 13 ? 200 : 429, (uint64_t)i * 977 % 30000000000ull,
				812, 240);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
	      (double)(t1.tv_nsec - t0.tv_nsec)) / iters;
	print_message("metrics_request: %.1f ns/op (%d ops, 16 label sets%s)\n",
		      ns, iters, SANITIZED ? ", sanitized build" : "");
	if (!SANITIZED)
		assert_true(ns < 1000);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < iters; i++)
		metrics_upstream_attempt(s, provs[i & 7], "endpoint-1");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
	      (double)(t1.tv_nsec - t0.tv_nsec)) / iters;
	print_message("metrics_upstream_attempt: %.1f ns/op\n", ns);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_render_exact, teardown),
		cmocka_unit_test_teardown(test_hist_bucket_edges, teardown),
		cmocka_unit_test_teardown(test_hist_cumulative, teardown),
		cmocka_unit_test_teardown(test_sum_across_shards, teardown),
		cmocka_unit_test_teardown(test_label_escaping, teardown),
		cmocka_unit_test_teardown(test_null_shard_and_labels, teardown),
		cmocka_unit_test_teardown(test_key_boundaries, teardown),
		cmocka_unit_test_teardown(test_overflow, teardown),
		cmocka_unit_test_teardown(test_extra_and_gauge_format, teardown),
		cmocka_unit_test_teardown(test_buf_cap, teardown),
		cmocka_unit_test_teardown(test_process, teardown),
		cmocka_unit_test_teardown(test_parse_back_full, teardown),
		cmocka_unit_test_teardown(test_concurrent, teardown),
		cmocka_unit_test_teardown(test_bench_request, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
