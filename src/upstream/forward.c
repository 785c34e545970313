/* forward.c — one client request through the endpoint pool, retries and
 * the fallback chain, with the response streamed or relayed back.
 *
 * Attempt order: the model's provider pool (weighted round robin over
 * usable endpoints, at most max_attempts of them), then each fallback
 * model's pool in order. An attempt may fail over only while nothing has
 * reached the client; after that a failure ends the stream with an error
 * event.
 *
 * Re-entrancy: curl callbacks (header/write) only record and forward
 * bytes; every decision that ends a transfer runs from the done callback
 * or a timer, where removing an easy handle is allowed. */
#include <limits.h>
#include <stdlib.h>

#include <event2/event.h>

#include "api/api.h"
#include "providers/anthropic_fmt.h"
#include "providers/openai_fmt.h"
#include "spend/prices.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "tunnel/tunnel.h"
#include "upstream/upstream_int.h"

/* A stream with this much queued for a slow client pauses its upstream. */
#define FWD_STREAM_HIGH_WATER (256 * 1024)
#define FWD_MAX_EVENT (8 * 1024 * 1024)

struct uworker {
	struct umulti m;
	struct h1_pool *h1_pools;
};

struct fwd {
	struct umulti_xfer xfer; /* first: CURLOPT_PRIVATE points here */
	struct req *r;
	struct upstream_call call;
	struct uworker *uw;

	/* where we are in the chain */
	const struct cfg_model *model;
	size_t next_fallback;
	struct pool *pool;
	uint64_t tried;
	int pool_attempts;
	bool any_attempt;

	/* the current attempt */
	int ep;
	CURL *easy;           /* curl transfer, or */
	struct h1_xfer *h1;   /* our own HTTP/1.1 exchange, or */
	struct tunnel_xfer *tx; /* a stream through a connector (dark service) */
	struct curl_slist *hdrs;
	struct event *timer;
	uint64_t deadline_ns, attempt_start_ns;
	int status;
	bool got_head, is_sse, paused;
	const char *fail_kind;   /* set by us before aborting a transfer */
	char retry_after[32];
	char content_type[96];
	struct buf body;         /* non-stream body or error body */
	struct sse_parser sse;
	struct buf batch;        /* events forwarded from one read */
	struct provider_usage usage;
	bool client_started, client_done, saw_done;

	/* translation (docs/providers.md): the provider's wire format is not
	 * the client's dialect. dec decodes the upstream's stream into
	 * canonical events; enc writes them in the client's dialect. */
	bool xlate;
	void *dec;              /* ops->stream_size bytes, per attempt */
	struct canon_sink sink;
	union {
		struct openai_stream_enc oa;
		struct anthropic_stream_enc an;
	} enc;

	/* an internal call (routing classifier): the answer goes to done_cb,
	 * never to the client, within deadline_ns */
	upstream_done_cb done_cb;
	void *done_arg;
	uint64_t internal_deadline_ns;

	/* the last failure, for the final answer */
	const char *unsupported; /* a model could not express the request: why */
	const char *last_kind;
	int last_status;
	char last_retry_after[32];
	struct buf last_body;
};

static void fwd_next(struct fwd *f);

/* ---- worker glue ---- */

void upstream_worker_init(struct worker *w, struct runtime *rt)
{
	UMB_UNUSED(rt);
	struct uworker *uw = umb_calloc(1, sizeof *uw);
	upstream__multi_init(&uw->m, w->base);
	w->upstream = uw;
}

void upstream_worker_shutdown(struct worker *w)
{
	struct uworker *uw = w->upstream;
	if (!uw)
		return;
	upstream__multi_clear(&uw->m);
	upstream__h1_pools_free(uw->h1_pools);
	free(uw);
	w->upstream = NULL;
}

/* ---- helpers ---- */

static const struct cfg_endpoint *fwd_ep(const struct fwd *f)
{
	return &f->pool->prov->endpoints[f->ep];
}

static void fwd_timer_set(struct fwd *f, int ms)
{
	uint64_t now = clock_mono_ns();
	if (f->done_cb) {
		uint64_t left = f->internal_deadline_ns > now ? f->internal_deadline_ns - now : 0;
		if ((uint64_t)ms * 1000000u > left)
			ms = (int)(left / 1000000u) + 1;
	}
	f->deadline_ns = now + (uint64_t)ms * 1000000u;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(f->timer, &tv);
}

/* End the current transfer (if any) and keep the easy handle for reuse. */
static void fwd_attempt_end(struct fwd *f)
{
	if (f->timer)
		evtimer_del(f->timer);
	if (f->easy) {
		upstream__easy_put(&f->uw->m, f->easy, true);
		f->easy = NULL;
	}
	if (f->h1) {
		upstream__h1_cancel(f->h1);
		f->h1 = NULL;
	}
	if (f->tx) {
		tunnel_xfer_cancel(f->tx);
		f->tx = NULL;
	}
	if (f->hdrs) {
		curl_slist_free_all(f->hdrs);
		f->hdrs = NULL;
	}
	sse_clear(&f->sse);
	if (f->dec) {
		f->pool->ops->stream_clear(f->dec);
		f->dec = NULL;
	}
	buf_reset(&f->batch);
	f->paused = false;
}

static void fwd_cleanup(void *arg)
{
	struct fwd *f = arg;
	fwd_attempt_end(f);
	if (f->xlate && f->client_started && f->call.dialect == DIALECT_ANTHROPIC)
		anthropic_stream_enc_clear(&f->enc.an);
	if (f->timer)
		event_free(f->timer);
	f->timer = NULL;
	buf_clear(&f->body);
	buf_clear(&f->batch);
	buf_clear(&f->last_body);
}

static void fwd_note_served(struct fwd *f)
{
	struct req *r = f->r;
	if (f->done_cb)
		return; /* the request is not served by the classifier */
	r->model = f->model->name;
	r->model_shown = f->model->is_glob
		? arena_strdup_str(r->arena, f->call.requested_model) : f->model->name;
	r->provider = f->pool->prov->name;
	r->endpoint = fwd_ep(f)->name;
	r->usage_seen = f->usage.seen;
	if (f->usage.seen) {
		r->prompt_tokens = f->usage.prompt_tokens;
		r->completion_tokens = f->usage.completion_tokens;
		/* what the upstream's own counts cost (docs/prices.md) */
		struct price p;
		/* prices.h bills cache writes apart from the other prompt tokens */
		uint64_t writes = UMB_MIN(f->usage.cache_write_tokens, f->usage.prompt_tokens);
		struct usage_tokens u = { .prompt = f->usage.prompt_tokens - writes,
					  .completion = f->usage.completion_tokens,
					  .cached_prompt = f->usage.cached_prompt_tokens,
					  .cache_write = writes };
		const char *src;
		char req[PRICES_NAME_MAX + 1];
		snprintf(req, sizeof req, "%.*s", (int)UMB_MIN(f->call.requested_model.n, (size_t)PRICES_NAME_MAX),
			 f->call.requested_model.p ? f->call.requested_model.p : "");
		if (prices_for_model(f->model, req, &p, &src) == UMB_OK)
			r->cost_nusd = (int64_t)UMB_MIN(prices_cost_nusd(&p, &u), (uint64_t)INT64_MAX);
	}
}

/* ---- curl callbacks: record and forward only ---- */

static size_t fwd_on_header(char *p, size_t size, size_t n, void *arg)
{
	struct fwd *f = arg;
	size_t len = size * n;
	struct str line = str_make(p, len);
	while (line.n && (line.p[line.n - 1] == '\n' || line.p[line.n - 1] == '\r'))
		line.n--;
	if (line.n >= 5 && !memcmp(line.p, "HTTP/", 5)) {
		/* a new status line (also after a 1xx interim response) */
		const char *sp = memchr(line.p, ' ', line.n);
		f->status = sp && sp + 4 <= line.p + line.n ? atoi(sp + 1) : 0;
		f->retry_after[0] = f->content_type[0] = 0;
		return len;
	}
	if (line.n == 0) {
		if (f->status >= 200 && !f->got_head) {
			f->got_head = true;
			f->is_sse = strncasecmp(f->content_type, "text/event-stream", 17) == 0;
			/* from now on the idle timeout guards the body; it is
			 * usually shorter than first_byte_ms, so re-arm */
			fwd_timer_set(f, f->pool->prov->timeouts.idle_ms);
		}
		return len;
	}
	const char *colon = memchr(line.p, ':', line.n);
	if (!colon)
		return len;
	struct str name = str_make(line.p, (size_t)(colon - line.p));
	struct str value = str_trim(str_make(colon + 1, line.n - (size_t)(colon - line.p) - 1));
	char *dst = NULL;
	size_t cap = 0;
	if (str_ieq(name, STR("retry-after"))) {
		dst = f->retry_after;
		cap = sizeof f->retry_after;
	} else if (str_ieq(name, STR("content-type"))) {
		dst = f->content_type;
		cap = sizeof f->content_type;
	}
	if (dst) {
		size_t k = UMB_MIN(value.n, cap - 1);
		memcpy(dst, value.p, k);
		dst[k] = 0;
	}
	return len;
}

static void fwd_client_start(struct fwd *f)
{
	struct req *r = f->r;
	r->upstream_ns += clock_mono_ns() - f->attempt_start_ns;
	fwd_note_served(f);
	f->client_started = true;
	if (f->xlate) {
		struct str shown = str_cstr(r->model_shown);
		if (f->call.dialect == DIALECT_ANTHROPIC)
			anthropic_stream_enc_init(&f->enc.an, shown);
		else
			openai_stream_enc_init(&f->enc.oa, shown, f->call.client_wants_usage);
	}
	http_stream_begin(r, 200, "text/event-stream", STR_NULL);
}

/* A canonical event from the provider's stream decoder: count usage and
 * write it in the client's dialect. */
static int fwd_on_canon(void *arg, const struct canon_ev *ev)
{
	struct fwd *f = arg;
	if (ev->type == CEV_USAGE)
		f->usage = ev->usage;
	else if (ev->type == CEV_END)
		f->saw_done = true;
	if (!f->client_started)
		fwd_client_start(f);
	int rc = f->call.dialect == DIALECT_ANTHROPIC
		? anthropic_stream_enc_event(&f->enc.an, ev, &f->batch)
		: openai_stream_enc_event(&f->enc.oa, ev, &f->batch);
	return rc ? UMB_ERR : 0;
}

static int fwd_on_event(void *arg, const struct sse_event *ev)
{
	struct fwd *f = arg;
	enum provider_event_action act = f->pool->ops->stream_event(&f->call, ev, &f->usage);
	switch (act) {
	case PROVIDER_DROP:
		return 0;
	case PROVIDER_GARBAGE:
		return UMB_ERR;
	case PROVIDER_DONE:
		f->saw_done = true;
		/* fallthrough */
	case PROVIDER_FORWARD:
		if (!f->client_started)
			fwd_client_start(f);
		buf_append_str(&f->batch, ev->raw);
		return 0;
	}
	return 0;
}

/* A stream broke after the client got its first event: one error event in
 * the client's dialect, then the connection closes (DESIGN.md). */
static void fwd_stream_error(struct fwd *f, const char *code, const char *msg)
{
	struct buf b;
	buf_init(&b, 0);
	if (f->call.dialect == DIALECT_ANTHROPIC) {
		buf_append_lit(&b, "event: error\ndata: ");
		anthropic_error_body(!strcmp(code, "upstream_timeout") ? "timeout_error" : "api_error",
				     msg, &b);
		buf_append_lit(&b, "\n\n");
	} else {
		buf_append_cstr(&b, "data: {\"error\":{\"message\":");
		json_write_cstr(&b, msg);
		buf_append_cstr(&b, ",\"type\":\"api_error\",\"code\":");
		json_write_cstr(&b, code);
		buf_append_cstr(&b, "}}\n\n");
	}
	http_stream_write(f->r, b.p, b.n);
	buf_clear(&b);
	f->client_done = true;
	http_stream_end(f->r, true);
}

static size_t fwd_on_data(char *p, size_t size, size_t n, void *arg)
{
	struct fwd *f = arg;
	size_t len = size * n;
	f->deadline_ns = clock_mono_ns() + (uint64_t)f->pool->prov->timeouts.idle_ms * 1000000u;
	if (f->client_done)
		return CURL_WRITEFUNC_ERROR;
	bool streaming = f->call.stream && (f->is_sse || f->xlate) && f->status >= 200 &&
			 f->status < 300;
	if (!streaming) {
		int rc = buf_append(&f->body, p, len);
		if (rc) {
			f->fail_kind = "garbage"; /* larger than max_response_bytes */
			return CURL_WRITEFUNC_ERROR;
		}
		return len;
	}
	if (f->client_started && http_out_pending(f->r) > FWD_STREAM_HIGH_WATER) {
		f->paused = true; /* resumed by the drain hook */
		return CURL_WRITEFUNC_PAUSE;
	}
	int rc = f->xlate ? f->pool->ops->stream_feed(f->dec, p, len, &f->sink)
			  : sse_feed(&f->sse, p, len, fwd_on_event, f);
	if (f->batch.n) {
		http_stream_write(f->r, f->batch.p, f->batch.n);
		buf_reset(&f->batch);
	}
	if (rc < 0) {
		if (f->client_started) {
			fwd_stream_error(f, "upstream_error",
					 rc == UMB_ETOOBIG ? "upstream sent an oversized stream event"
							   : "upstream sent a malformed stream event");
		}
		f->fail_kind = "garbage";
		return CURL_WRITEFUNC_ERROR;
	}
	return len;
}

/* ---- attempt outcomes ---- */

static const char *kind_of_curl(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
		return "connect";
	case CURLE_OPERATION_TIMEDOUT:
		return "timeout";
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return "garbage";
	default:
		return "reset"; /* GOT_NOTHING, RECV_ERROR, PARTIAL_FILE, SEND_ERROR, ... */
	}
}

/* The attempt failed before anything reached the client: remember why
 * and move on. */
static void fwd_attempt_failed(struct fwd *f, const char *kind, bool endpoint_fault)
{
	const struct cfg_endpoint *ep = fwd_ep(f);
	metrics_upstream_error(f->r->w->metrics, f->pool->prov->name, ep->name, kind);
	upstream__report(f->pool, (size_t)f->ep, !endpoint_fault, clock_wall_ms());
	log_info("request %s: upstream %s/%s failed (%s%s%.0d), trying the next", f->r->id,
		 f->pool->prov->name, ep->name, kind, f->status ? ", status " : "", f->status);
	f->last_kind = kind;
	f->last_status = f->status;
	memcpy(f->last_retry_after, f->retry_after, sizeof f->retry_after);
	buf_reset(&f->last_body);
	if (f->body.n)
		buf_append(&f->last_body, f->body.p, UMB_MIN(f->body.n, (size_t)65536));
	f->r->error_kind = kind;
	fwd_attempt_end(f);
	fwd_next(f);
}

static void fwd_finish_stream(struct fwd *f, CURLcode code)
{
	upstream__report(f->pool, (size_t)f->ep, true, clock_wall_ms());
	fwd_note_served(f);
	if (f->client_done) {
		fwd_attempt_end(f);
		return;
	}
	/* a stream that closed before its terminal event ([DONE],
	 * message_stop, ...) was cut short, however cleanly */
	bool cut = f->xlate ? code == CURLE_OK && f->pool->ops->stream_finish(f->dec, &f->sink)
			    : sse_pending(&f->sse) > 0 || !f->saw_done;
	if (f->batch.n) { /* what finishing the decoder produced */
		http_stream_write(f->r, f->batch.p, f->batch.n);
		buf_reset(&f->batch);
	}
	if (code != CURLE_OK || cut) {
		const char *kind = f->fail_kind ? f->fail_kind : code ? kind_of_curl(code) : "reset";
		metrics_upstream_error(f->r->w->metrics, f->pool->prov->name, fwd_ep(f)->name, kind);
		f->r->error_kind = kind;
		fwd_attempt_end(f);
		bool timeout = !strcmp(kind, "timeout");
		fwd_stream_error(f, timeout ? "upstream_timeout" : "upstream_error",
				 timeout ? "upstream stalled mid-stream"
					 : "upstream connection lost mid-stream");
		return;
	}
	fwd_attempt_end(f);
	f->client_done = true;
	http_stream_end(f->r, false);
}

/* The upstream's own error message (error.message, or a top-level
 * message), bounded, or NULL. */
static const char *upstream_message(struct arena *a, struct str body)
{
	struct json_val root, err, msg;
	struct json_err jerr;
	if (!body.n || json_parse(body.p, body.n, &root, &jerr) || root.type != JSON_OBJECT)
		return NULL;
	if (json_obj_get(root, "error", &err)) {
		if (err.type == JSON_STRING)
			msg = err;
		else if (err.type != JSON_OBJECT || !json_obj_get(err, "message", &msg))
			return NULL;
	} else if (!json_obj_get(root, "message", &msg)) {
		return NULL;
	}
	if (msg.type != JSON_STRING)
		return NULL;
	struct buf b;
	buf_init(&b, 0);
	json_str_decode(msg, &b);
	const char *out = arena_strndup(a, b.p ? b.p : "", UMB_MIN(b.n, (size_t)300));
	buf_clear(&b);
	return out;
}

/* An internal call ends: hand the answer over (status 0: nothing usable
 * arrived) and let go of the request's hooks. */
static void fwd_internal_done(struct fwd *f, int status)
{
	struct req *r = f->r;
	f->client_done = true;
	r->handler = NULL;
	r->hooks = (struct req_hooks){ 0 };
	upstream_done_cb cb = f->done_cb;
	f->done_cb = NULL;
	cb(f->done_arg, status, status ? buf_str(&f->body) : STR_NULL);
}

/* An upstream 4xx other than 429 is about the request (context too long,
 * unknown upstream model): the client gets the status in our error shape
 * with the upstream's message. 401/403 mean the gateway's own credentials
 * were refused, which is not the caller's fault: 502. */
static void fwd_relay_error(struct fwd *f)
{
	struct req *r = f->r;
	if (f->done_cb) {
		fwd_internal_done(f, f->status);
		return;
	}
	fwd_note_served(f);
	const char *msg = f->pool->ops->error_message
		? f->pool->ops->error_message(r->arena, buf_str(&f->body)) : NULL;
	if (!msg)
		msg = upstream_message(r->arena, buf_str(&f->body));
	const char *pn = f->pool->prov->name;
	int st = f->status;
	if (st == 401 || st == 403) {
		api_error(r, 502, "api_error", "upstream_error",
				   "upstream %s refused the gateway's credentials (status %d)", pn, st);
		return;
	}
	const char *type = st == 404 ? "not_found_error" : "invalid_request_error";
	if (msg)
		api_error(r, st, type, "upstream_error", "%s", msg);
	else
		api_error(r, st, type, "upstream_error",
				   "upstream %s returned status %d", pn, st);
}

/* A complete 2xx answer: read its usage and leave in f->body what the
 * client (or an internal caller, which speaks OpenAI) gets. UMB_ERR when
 * the upstream's body is garbage. */
static int fwd_answer(struct fwd *f)
{
	const struct provider_ops *ops = f->pool->ops;
	struct req *r = f->r;
	if (!f->xlate || (f->call.op == UPSTREAM_EMBEDDINGS && !ops->embeddings_to_openai))
		return ops->finish ? ops->finish(&f->call, buf_str(&f->body), &f->usage) : UMB_ERR;
	/* the decoded form may point into f->body: write the answer apart */
	struct buf out;
	buf_init(&out, r->rt->cfg->limits.max_response_bytes);
	int rc;
	if (f->call.op == UPSTREAM_EMBEDDINGS) {
		rc = ops->embeddings_to_openai(r->arena, &f->call, buf_str(&f->body), &out, &f->usage);
	} else {
		struct canon_resp resp;
		rc = ops->decode(r->arena, &f->call, buf_str(&f->body), &resp);
		if (rc == UMB_OK) {
			f->usage = resp.usage;
			fwd_note_served(f);
			struct str shown = f->done_cb ? f->call.requested_model : str_cstr(r->model_shown);
			rc = f->call.dialect == DIALECT_ANTHROPIC ? anthropic_resp_encode(&resp, shown, &out)
								  : openai_resp_encode(&resp, shown, &out);
		}
	}
	if (rc == UMB_OK) {
		buf_clear(&f->body);
		f->body = out; /* the buffer moves: nothing else points into it */
	} else {
		buf_clear(&out);
	}
	return rc;
}

static void fwd_on_done(struct umulti_xfer *x, CURLcode code)
{
	struct fwd *f = (struct fwd *)x;
	struct req *r = f->r;
	if (!f->client_started)
		r->upstream_ns += clock_mono_ns() - f->attempt_start_ns;
	if (f->client_started) {
		fwd_finish_stream(f, code);
		return;
	}
	if (code != CURLE_OK) {
		const char *kind = f->fail_kind ? f->fail_kind : kind_of_curl(code);
		fwd_attempt_failed(f, kind, true);
		return;
	}
	if (f->status == 429) {
		fwd_attempt_failed(f, "status_429", false);
		return;
	}
	if (f->status >= 500 || f->status < 200) {
		fwd_attempt_failed(f, "status_5xx", true);
		return;
	}
	if (f->status >= 300) {
		upstream__report(f->pool, (size_t)f->ep, true, clock_wall_ms());
		fwd_attempt_end(f);
		fwd_relay_error(f);
		return;
	}
	if (f->call.stream && (f->is_sse || f->xlate)) {
		/* a 2xx stream that ended before any event: garbage */
		fwd_attempt_failed(f, "garbage", true);
		return;
	}
	if (fwd_answer(f)) {
		fwd_attempt_failed(f, "garbage", true);
		return;
	}
	upstream__report(f->pool, (size_t)f->ep, true, clock_wall_ms());
	fwd_attempt_end(f);
	if (f->done_cb) {
		fwd_internal_done(f, f->status);
		return;
	}
	fwd_note_served(f);
	f->client_done = true;
	struct http_resp resp = { .status = f->status,
				  .content_type = "application/json",
				  .body = buf_str(&f->body) };
	http_respond(r, &resp);
}

static void fwd_on_timer(evutil_socket_t fd, short what, void *arg)
{
	UMB_UNUSED(fd);
	UMB_UNUSED(what);
	struct fwd *f = arg;
	if (!f->easy && !f->h1 && !f->tx)
		return;
	uint64_t now = clock_mono_ns();
	if (now < f->deadline_ns) {
		uint64_t left = f->deadline_ns - now;
		struct timeval tv = { (time_t)(left / 1000000000u),
				      (suseconds_t)(left % 1000000000u) / 1000 + 1 };
		evtimer_add(f->timer, &tv);
		return;
	}
	f->fail_kind = "timeout";
	fwd_on_done(&f->xfer, CURLE_OPERATION_TIMEDOUT);
}

/* ---- client hooks ---- */

static void fwd_abort(struct req *r)
{
	struct fwd *f = r->handler;
	if (f->easy || f->h1 || f->tx) {
		metrics_upstream_error(r->w->metrics, f->pool->prov->name, fwd_ep(f)->name, "canceled");
		if (!f->client_started)
			r->upstream_ns += clock_mono_ns() - f->attempt_start_ns;
	}
	f->client_done = true;
	fwd_attempt_end(f); /* closes the upstream connection mid-transfer */
}

static void fwd_drain(struct req *r)
{
	struct fwd *f = r->handler;
	if (!f->paused)
		return;
	f->paused = false;
	if (f->easy)
		curl_easy_pause(f->easy, CURLPAUSE_CONT);
	else if (f->h1)
		upstream__h1_resume(f->h1);
	else if (f->tx)
		tunnel_xfer_resume(f->tx);
}

/* Our HTTP/1.1 client reports here; the exchange is already freed. */
static void fwd_on_h1_done(void *ctx, CURLcode code)
{
	struct fwd *f = ctx;
	f->h1 = NULL;
	fwd_on_done(&f->xfer, code);
}

/* Likewise for a tunnel exchange. */
static void fwd_on_tunnel_done(void *ctx, CURLcode code)
{
	struct fwd *f = ctx;
	f->tx = NULL;
	fwd_on_done(&f->xfer, code);
}

/* ---- attempts ---- */

/* The canonical request, built once the first time an attempt needs
 * translation (an OpenAI client's body is otherwise never re-parsed).
 * Nonzero when the body cannot be translated: the client got a 400. */
static int fwd_canon(struct fwd *f)
{
	struct req *r = f->r;
	struct canon_req *c = arena_alloc(r->arena, sizeof *c);
	if (f->call.canon) {
		*c = *f->call.canon;
	} else {
		char why[256];
		/* the ingress validated the body and kept its members */
		if (openai_req_decode_members(r->arena, f->call.members, f->call.n_members, c, why,
					      sizeof why)) {
			fwd_attempt_end(f);
			f->client_done = true;
			api_error(r, 400, "invalid_request_error", "invalid_value",
				  "cannot translate the request for model %s: %s", f->model->name, why);
			return UMB_ERR;
		}
	}
	c->stream = f->call.stream; /* an internal call never streams */
	canon_fill_result_names(c);
	f->call.canon = c;
	return UMB_OK;
}

static void fwd_start_attempt(struct fwd *f)
{
	struct req *r = f->r;
	const struct cfg_endpoint *ep = fwd_ep(f);
	const struct cfg_provider *prov = f->pool->prov;
	const struct provider_ops *ops = f->pool->ops;
	struct provider_request pr = { 0 };
	f->xlate = ops->native != f->call.dialect;
	if (f->xlate && f->call.op == UPSTREAM_CHAT && fwd_canon(f))
		return; /* answered 400 */
	if (ops->build(r->arena, &f->call, f->model, ep, r->id, &pr)) {
		/* debug: a provider logs its own trouble (a missing token) once */
		log_debug("request %s: provider %s cannot build a request for model %s%s%s", r->id,
			  prov->name, f->model->name, pr.unsupported ? ": " : "",
			  pr.unsupported ? pr.unsupported : "");
		if (pr.unsupported)
			f->unsupported = pr.unsupported;
		fwd_attempt_failed(f, pr.unsupported ? "unsupported" : "build", false);
		return;
	}
	if (f->xlate && f->call.stream) {
		f->dec = arena_alloc(r->arena, ops->stream_size);
		ops->stream_init(f->dec, &f->call);
		f->sink = (struct canon_sink){ fwd_on_canon, f };
	}
	r->attempts++;
	f->any_attempt = true;
	f->status = 0;
	f->got_head = f->is_sse = false;
	f->fail_kind = NULL;
	f->retry_after[0] = f->content_type[0] = 0;
	buf_reset(&f->body);
	f->body.max = r->rt->cfg->limits.max_response_bytes;
	sse_init(&f->sse, FWD_MAX_EVENT);
	f->usage = (struct provider_usage){ 0 };
	metrics_upstream_attempt(r->w->metrics, prov->name, ep->name);

	if (ep->scheme == SCHEME_SERVICE || upstream__h1_eligible(ep)) {
		struct h1_req rq = {
			.path = str_cstr(pr.url + strlen(ep->origin)),
			.headers = pr.headers,
			.n_headers = pr.n_headers,
			.n_parts = pr.n_parts,
			.connect_timeout_ms = prov->timeouts.connect_ms,
			.keepalive = prov->keepalive,
			.on_header = fwd_on_header,
			.on_data = fwd_on_data,
			.on_done = fwd_on_h1_done,
			.ctx = f,
		};
		memcpy(rq.parts, pr.parts, pr.n_parts * sizeof pr.parts[0]);
		f->attempt_start_ns = clock_mono_ns();
		fwd_timer_set(f, prov->timeouts.first_byte_ms);
		if (ep->scheme == SCHEME_SERVICE) {
			rq.on_done = fwd_on_tunnel_done;
			f->tx = tunnel_xfer_start(r->w->base, ep->service, &rq);
			return;
		}
		struct h1_pool *hp = upstream__h1_pool(&f->uw->h1_pools, r->w->base, ep);
		f->h1 = upstream__h1_start(hp, &rq);
		return;
	}

	CURL *e = upstream__easy_get(&f->uw->m);
	f->easy = e;
	for (size_t i = 0; i < pr.n_headers; i++)
		f->hdrs = curl_slist_append(f->hdrs, pr.headers[i]);
	upstream__easy_common(e, prov, ep);
	curl_easy_setopt(e, CURLOPT_URL, pr.url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->hdrs);
	struct str body = provider_body_join(r->arena, &pr); /* curl wants one piece */
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.n);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.p);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, fwd_on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, fwd_on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(e, CURLOPT_PRIVATE, &f->xfer);
	f->attempt_start_ns = clock_mono_ns();
	fwd_timer_set(f, prov->timeouts.first_byte_ms);
	upstream__multi_add(&f->uw->m, e);
}

/* Everything failed: answer with the contract's status for the last
 * failure (or 503 when there was nothing to try). */
static void fwd_fail_final(struct fwd *f)
{
	struct req *r = f->r;
	if (f->done_cb) {
		fwd_internal_done(f, 0);
		return;
	}
	f->client_done = true;
	r->model = f->call.model->name; /* x-umbra-model on the error too */
	r->model_shown = f->call.model->is_glob
		? arena_strdup_str(r->arena, f->call.requested_model) : r->model;
	const char *name = r->model_shown;
	if (!f->any_attempt && f->unsupported) {
		api_error(r, 400, "invalid_request_error", "unsupported_request",
			  "model %s cannot take this request: %s", name, f->unsupported);
		return;
	}
	if (!f->any_attempt) {
		api_error(r, 503, "api_error", "no_healthy_endpoint",
			  "no healthy endpoint for model %s", name);
		return;
	}
	const char *k = f->last_kind;
	if (!strcmp(k, "status_429")) {
		struct str extra = f->last_retry_after[0]
			? str_cstr(arena_printf(r->arena, "retry-after: %s\r\n", f->last_retry_after))
			: STR_NULL;
		const char *msg = upstream_message(r->arena, buf_str(&f->last_body));
		api_error_h(r, 429, extra, "rate_limit_error", "rate_limited",
			    "upstream rate limit reached for model %s%s%s", name,
			    msg ? ": " : "", msg ? msg : "");
		return;
	}
	if (!strcmp(k, "timeout")) {
		api_error(r, 504, "api_error", "upstream_timeout",
			  "upstream timed out for model %s", name);
		return;
	}
	if (!strcmp(k, "status_5xx"))
		api_error(r, 502, "api_error", "upstream_error",
			  "upstream returned status %d for model %s", f->last_status,
			  name);
	else
		api_error(r, 502, "api_error", "upstream_error",
			  "upstream failed (%s) for model %s", k, name);
}

static void fwd_next(struct fwd *f)
{
	uint64_t now = clock_wall_ms();
	if (f->done_cb && clock_mono_ns() >= f->internal_deadline_ns) {
		fwd_fail_final(f);
		return;
	}
	for (;;) {
		if (f->pool && f->pool_attempts < f->pool->prov->max_attempts) {
			int i = upstream__pick(f->pool, f->tried, now);
			if (i >= 0) {
				f->tried |= 1ull << i;
				f->pool_attempts++;
				f->ep = i;
				fwd_start_attempt(f);
				return;
			}
		}
		/* this pool is exhausted: the next model in the chain */
		const struct cfg_model *first = f->call.model;
		if (!f->pool) {
			f->model = first;
		} else if (f->next_fallback < first->n_fallbacks) {
			f->model = first->fallback_models[f->next_fallback++];
			if (f->call.onprem_only && f->model->locality != LOCALITY_ONPREM) {
				/* the sensitivity guard: personal data never leaves */
				log_info("request %s: skipping fallback %s (not on-prem, request is sensitive)",
					 f->r->id, f->model->name);
				f->pool_attempts = INT_MAX;
				continue;
			}
			const char *svc;
			if (!tunnel_provider_allows(f->r->rt->cfg, f->model->provider, &f->r->who, &svc)) {
				log_info("request %s: skipping fallback %s (service %s not allowed)",
					 f->r->id, f->model->name, svc);
				f->pool_attempts = INT_MAX; /* on to the next fallback */
				continue;
			}
			log_info("request %s: falling back to model %s", f->r->id, f->model->name);
		} else {
			fwd_fail_final(f);
			return;
		}
		f->pool = upstream__pool(f->r->rt->ups, f->model->provider);
		f->tried = 0;
		f->pool_attempts = 0;
	}
}

static struct fwd *fwd_new(struct req *r, const struct upstream_call *call)
{
	struct fwd *f = arena_alloc(r->arena, sizeof *f);
	f->xfer.done = fwd_on_done;
	f->r = r;
	f->call = *call;
	f->uw = r->w->upstream;
	f->timer = evtimer_new(r->w->base, fwd_on_timer, f);
	buf_init(&f->body, r->rt->cfg->limits.max_response_bytes);
	buf_init(&f->batch, 0);
	buf_init(&f->last_body, 0);
	sse_init(&f->sse, FWD_MAX_EVENT);
	arena_cleanup_add(r->arena, fwd_cleanup, f);
	r->handler = f;
	r->hooks.abort = fwd_abort;
	r->hooks.drain = fwd_drain;
	return f;
}

void upstream_forward(struct req *r, const struct upstream_call *call)
{
	struct fwd *f = fwd_new(r, call);
	r->stream = call->stream;
	r->upstream_bound = true;
	metrics_inflight_add(r->w->metrics, 1);
	fwd_next(f);
}

void upstream_call_internal(struct req *r, const struct upstream_call *call, int timeout_ms,
			    upstream_done_cb cb, void *arg)
{
	struct fwd *f = fwd_new(r, call);
	f->call.stream = false;
	f->done_cb = cb;
	f->done_arg = arg;
	f->internal_deadline_ns = clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
	fwd_next(f);
}
