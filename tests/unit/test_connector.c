/* test_connector.c — unit tests for tunnel/connector.c: the reconnect
 * backoff, header filtering both ways, service lookup, the announcement
 * JSON, the upstream URL join, the error bodies and the gateway address
 * split. connector.c is included to reach its static helpers; the config
 * comes from YAML so the tests see what a user's file produces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "tunnel/connector.c"

static const char conn_yaml[] =
	"identity: { cert: c.crt, key: c.key, ca: ca.crt }\n"
	"gateways: [\"gw1.example.com:8443\", \"[::1]:9443\"]\n"
	"services:\n"
	"  - { name: vllm-pii, upstream: \"http://127.0.0.1:8000\" }\n"
	"  - { name: ollama, upstream: \"unix:///run/ollama.sock\" }\n"
	"  - { name: prefixed, upstream: \"http://127.0.0.1:9000/base\" }\n";

static struct connector_config *load(const char *yaml)
{
	struct config_err err;
	memset(&err, 0, sizeof err);
	struct connector_config *cc =
		connector_config_load_string(yaml, strlen(yaml), "conn.yaml", "/tmp", &err);
	if (!cc)
		fail_msg("config refused: %s", err.msg);
	return cc;
}

/* ---- backoff (docs/tunnel.md point 8) ---- */

static void test_backoff_bounds(void **state)
{
	UMB_UNUSED(state);
	/* d = min(max, base × 2^n); the wait is in [d/2, d] */
	for (unsigned n = 0; n < 40; n++) {
		uint64_t d = n < 20 ? UMB_MIN(30000ull, 250ull << n) : 30000ull;
		for (int i = 0; i < 200; i++) {
			uint64_t w = connector_backoff_ms(250, 30000, n, rand_fast());
			assert_true(w >= d / 2);
			assert_true(w <= d);
		}
	}
}

static void test_backoff_extremes(void **state)
{
	UMB_UNUSED(state);
	/* rnd picks the ends exactly: 0 → d/2, d/2 → d */
	assert_int_equal(connector_backoff_ms(250, 30000, 0, 0), 125);
	assert_int_equal(connector_backoff_ms(250, 30000, 0, 125), 250);
	assert_int_equal(connector_backoff_ms(250, 30000, 0, 126), 125); /* wraps */
	assert_int_equal(connector_backoff_ms(250, 30000, 2, 0), 500);
	assert_int_equal(connector_backoff_ms(250, 30000, 2, 500), 1000);
	/* capped */
	assert_int_equal(connector_backoff_ms(250, 30000, 7, 0), 15000);
	assert_int_equal(connector_backoff_ms(250, 30000, 7, 15000), 30000);
	/* a huge n does not overflow the shift */
	assert_int_equal(connector_backoff_ms(250, 30000, 1000, 0), 15000);
	assert_int_equal(connector_backoff_ms(250, 30000, UINT32_MAX, 15000), 30000);
	/* degenerate inputs stay sane */
	assert_int_equal(connector_backoff_ms(1, 1, 0, 0), 0);
	assert_true(connector_backoff_ms(0, 0, 3, 7) <= 1);
}

static void test_backoff_spread(void **state)
{
	UMB_UNUSED(state);
	/* jitter: the waits are spread over the interval, not one value */
	uint64_t lo = UINT64_MAX, hi = 0;
	for (int i = 0; i < 2000; i++) {
		uint64_t w = connector_backoff_ms(1000, 30000, 3, rand_fast());
		lo = UMB_MIN(lo, w);
		hi = UMB_MAX(hi, w);
	}
	assert_true(lo < 4400);
	assert_true(hi > 7600);
}

/* ---- header filtering ---- */

static void test_hop_by_hop(void **state)
{
	UMB_UNUSED(state);
	const char *hop[] = { "connection", "Keep-Alive", "TRANSFER-ENCODING", "upgrade",
			      "proxy-connection", "te" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(hop); i++)
		assert_true(connector_hop_by_hop(str_cstr(hop[i])));
	const char *end[] = { "content-type", "x-request-id", "trailer", "tee", "t",
			      "content-length", "" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(end); i++)
		assert_false(connector_hop_by_hop(str_cstr(end[i])));
	/* request side: also what curl writes itself */
	assert_true(connector_request_header_dropped(STR("host")));
	assert_true(connector_request_header_dropped(STR("content-length")));
	assert_true(connector_request_header_dropped(STR("expect")));
	assert_true(connector_request_header_dropped(STR("te")));
	assert_false(connector_request_header_dropped(STR("content-type")));
	assert_false(connector_request_header_dropped(STR("authorization-ish")));
}

/* Collect rhdr's "name\0value\0" pairs as "name=value;" */
static void rhdr_dump(const struct buf *b, char *out, size_t cap)
{
	size_t o = 0;
	out[0] = 0;
	for (const char *p = b->p, *end = b->p + b->n; p && p < end;) {
		const char *v = p + strlen(p) + 1;
		o += (size_t)snprintf(out + o, cap - o, "%s=%s;", p, v);
		p = v + strlen(v) + 1;
	}
}

static void test_resp_headers(void **state)
{
	UMB_UNUSED(state);
	struct buf b;
	size_t n = 0;
	char dump[512];
	buf_init(&b, 4096);
	const char *lines[] = {
		"Content-Type: text/event-stream",
		"Transfer-Encoding: chunked",    /* hop-by-hop */
		"Connection: keep-alive",        /* hop-by-hop */
		"X-Request-Id:   abc  ",
		" folded continuation",          /* obs-fold: dropped */
		"no colon here",
		": empty name",
		"Bad Name: x",                   /* space in the name */
		"X-Empty:",
		"Keep-Alive: timeout=5",
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(lines); i++)
		assert_int_equal(connector_resp_header(&b, &n, str_cstr(lines[i])), 0);
	rhdr_dump(&b, dump, sizeof dump);
	assert_string_equal(dump, "content-type=text/event-stream;x-request-id=abc;x-empty=;");
	assert_int_equal(n, 3);
	buf_clear(&b);

	/* the count cap */
	buf_init(&b, 1 << 20);
	n = 0;
	int rc = 0;
	for (int i = 0; i <= CONNECTOR_MAX_RESP_HEADERS && !rc; i++)
		rc = connector_resp_header(&b, &n, STR("x-a: b"));
	assert_int_equal(rc, UMB_ETOOBIG);
	assert_int_equal(n, CONNECTOR_MAX_RESP_HEADERS);
	buf_clear(&b);

	/* the byte cap */
	buf_init(&b, 16);
	n = 0;
	assert_int_equal(connector_resp_header(&b, &n, STR("x-long: 0123456789abcdef")),
			 UMB_ETOOBIG);
	buf_clear(&b);
}

static void test_status_line(void **state)
{
	UMB_UNUSED(state);
	assert_int_equal(connector_status_line(STR("HTTP/1.1 200 OK")), 200);
	assert_int_equal(connector_status_line(STR("HTTP/1.1 100 Continue")), 100);
	assert_int_equal(connector_status_line(STR("HTTP/1.0 503 ")), 503);
	assert_int_equal(connector_status_line(STR("HTTP/2 404")), -1); /* too short */
	assert_int_equal(connector_status_line(STR("HTTP/1.1 2x0 OK")), -1);
	assert_int_equal(connector_status_line(STR("HTTP/1.1 099 Low")), -1);
	assert_int_equal(connector_status_line(STR("Content-Type: x")), -1);
	assert_int_equal(connector_status_line(STR("")), -1);
}

/* ---- services ---- */

static void test_find_service(void **state)
{
	UMB_UNUSED(state);
	struct connector_config *cc = load(conn_yaml);
	const struct conn_service *s = connector_find_service(cc, STR("vllm-pii"));
	assert_non_null(s);
	assert_string_equal(s->origin, "http://127.0.0.1:8000");
	assert_null(s->unix_path);
	s = connector_find_service(cc, STR("ollama"));
	assert_non_null(s);
	assert_string_equal(s->unix_path, "/run/ollama.sock");
	assert_string_equal(s->origin, "http://localhost");
	assert_null(connector_find_service(cc, STR("vllm")));
	assert_null(connector_find_service(cc, STR("VLLM-PII")));
	assert_null(connector_find_service(cc, STR("vllm-pii ")));
	assert_null(connector_find_service(cc, STR("")));
	connector_config_free(cc);
}

static void test_services_json(void **state)
{
	UMB_UNUSED(state);
	struct connector_config *cc = load(conn_yaml);
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(connector_services_json(&b, "gpu-connector-1", cc), 0);
	assert_string_equal(b.p, "{\"connector\":\"gpu-connector-1\","
				 "\"services\":[\"vllm-pii\",\"ollama\",\"prefixed\"]}");
	cJSON *j = cJSON_Parse(b.p);
	assert_non_null(j);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "services")), 3);
	cJSON_Delete(j);

	/* no services: an empty list; a capped buffer reports the cap */
	cc->n_services = 0;
	buf_reset(&b);
	assert_int_equal(connector_services_json(&b, "x", cc), 0);
	assert_string_equal(b.p, "{\"connector\":\"x\",\"services\":[]}");
	buf_clear(&b);
	buf_init(&b, 8);
	assert_int_equal(connector_services_json(&b, "gpu-connector-1", cc), UMB_ETOOBIG);
	buf_clear(&b);
	connector_config_free(cc);
}

static void test_url_join(void **state)
{
	UMB_UNUSED(state);
	struct connector_config *cc = load(conn_yaml);
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(connector_url(&b, cc->services[0].origin, STR("/v1/chat/completions")), 0);
	assert_string_equal(b.p, "http://127.0.0.1:8000/v1/chat/completions");
	buf_reset(&b);
	assert_int_equal(connector_url(&b, cc->services[2].origin, STR("/v1/models?x=1")), 0);
	assert_string_equal(b.p, "http://127.0.0.1:9000/base/v1/models?x=1");
	buf_reset(&b);
	assert_int_equal(connector_url(&b, cc->services[1].origin, STR("/")), 0);
	assert_string_equal(b.p, "http://localhost/");
	/* not origin-form, or nothing a request line can carry */
	const char *bad[] = { "", "*", "v1/chat", "http://evil/", "/a b", "/a\r\nX: y",
			      "/a#frag", "/\x7f" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		buf_reset(&b);
		assert_int_equal(connector_url(&b, "http://127.0.0.1:8000", str_cstr(bad[i])),
				 UMB_ERR);
		assert_int_equal(b.n, 0);
	}
	buf_clear(&b);
	connector_config_free(cc);
}

static void test_error_json(void **state)
{
	UMB_UNUSED(state);
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(connector_error_json(&b, "not_found_error", "unknown_service",
					      "no service 'a\"b'"), 0);
	assert_string_equal(b.p, "{\"error\":{\"message\":\"no service 'a\\\"b'\","
				 "\"type\":\"not_found_error\",\"code\":\"unknown_service\"}}");
	cJSON *j = cJSON_Parse(b.p);
	assert_non_null(j);
	cJSON_Delete(j);
	buf_clear(&b);
}

static void test_split_addr(void **state)
{
	UMB_UNUSED(state);
	char h[256], p[8];
	assert_int_equal(connector_split_addr("gw1.example.com:8443", h, sizeof h, p, sizeof p), 0);
	assert_string_equal(h, "gw1.example.com");
	assert_string_equal(p, "8443");
	assert_int_equal(connector_split_addr("[::1]:9443", h, sizeof h, p, sizeof p), 0);
	assert_string_equal(h, "::1");
	assert_string_equal(p, "9443");
	assert_int_equal(connector_split_addr("127.0.0.1:1", h, sizeof h, p, sizeof p), 0);
	assert_string_equal(h, "127.0.0.1");
	const char *bad[] = { "host", "host:", ":80", "[::1]9443", "[::1]:", "h:80x",
			      "h:1234567", "[]:80" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++)
		assert_int_equal(connector_split_addr(bad[i], h, sizeof h, p, sizeof p), UMB_ERR);
	char tiny[4];
	assert_int_equal(connector_split_addr("abcd:80", tiny, sizeof tiny, p, sizeof p), UMB_ERR);
}

/* ---- the data provider and the pause marks, without a session ---- */

static void test_read_cb_queue(void **state)
{
	UMB_UNUSED(state);
	struct connector c = { 0 };
	struct gwc g = { .c = &c };
	c.base = event_base_new();
	g.kick = event_new(c.base, -1, 0, gwc_on_kick, &g);
	struct cstream *s = cstream_new(&g, 1);
	nghttp2_data_source src = { .ptr = s };
	uint8_t dst[4096];
	uint32_t flags = 0;

	/* nothing queued and not done: DEFERRED */
	assert_int_equal(cstream_read_cb(NULL, 1, dst, sizeof dst, &flags, &src, NULL),
			 NGHTTP2_ERR_DEFERRED);
	assert_true(s->deferred);

	/* queued past the high mark and paused: draining below the low mark
	 * asks for a resume (through the kick, never inline) */
	char chunk[16384];
	memset(chunk, 'x', sizeof chunk);
	while (cstream_queued(s) < CONNECTOR_HIGH_WATER)
		assert_int_equal(buf_append(&s->out, chunk, sizeof chunk), 0);
	s->paused = true;
	size_t taken = 0;
	while (!s->want_unpause) {
		ssize_t n = cstream_read_cb(NULL, 1, dst, sizeof dst, &flags, &src, NULL);
		assert_true(n > 0);
		taken += (size_t)n;
	}
	assert_true(cstream_queued(s) < CONNECTOR_LOW_WATER);
	assert_true(taken > CONNECTOR_HIGH_WATER - CONNECTOR_LOW_WATER);
	assert_int_equal(flags & NGHTTP2_DATA_FLAG_EOF, 0);

	/* done: the rest, then EOF */
	s->eof = true;
	while (!(flags & NGHTTP2_DATA_FLAG_EOF))
		assert_true(cstream_read_cb(NULL, 1, dst, sizeof dst, &flags, &src, NULL) >= 0);
	assert_int_equal(cstream_queued(s), 0);

	cstream_free(s);
	assert_int_equal(g.n_streams, 0);
	assert_null(g.streams);
	event_free(g.kick);
	event_base_free(c.base);
}

int main(void)
{
	log_min_level = LOG_ERROR;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_bounds),
		cmocka_unit_test(test_backoff_extremes),
		cmocka_unit_test(test_backoff_spread),
		cmocka_unit_test(test_hop_by_hop),
		cmocka_unit_test(test_resp_headers),
		cmocka_unit_test(test_status_line),
		cmocka_unit_test(test_find_service),
		cmocka_unit_test(test_services_json),
		cmocka_unit_test(test_url_join),
		cmocka_unit_test(test_error_json),
		cmocka_unit_test(test_split_addr),
		cmocka_unit_test(test_read_cb_queue),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
