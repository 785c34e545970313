/* bedrock.c — the AWS Bedrock Converse wire format
 * (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
 * and API_runtime_ConverseStream.html). Always translated (native = -1).
 *
 * Request: POST {origin}/model/{modelId}/converse (or /converse-stream),
 * the model id percent-encoded as one path segment (':' → %3A, '/' → %2F),
 * signed with SigV4 for service "bedrock" (sigv4.h), credentials from
 * aws_creds.h. The body is built from the canonical request:
 *   messages [{role, content: [text | image | toolUse | toolResult]}]
 *   system [{text}], inferenceConfig {maxTokens, temperature, topP,
 *   stopSequences}, toolConfig {tools: [{toolSpec}], toolChoice},
 *   additionalModelRequestFields {top_k} (top_k has no Converse field).
 * Bedrock wants turns that alternate, so consecutive same-role turns are
 * merged (tool results first in a merged user turn, as Anthropic models
 * require). It refuses blank text blocks, so empty texts are left out.
 *
 * tool_choice: Converse has auto / any / tool but no "none". For none we
 * leave toolConfig out, unless the conversation already holds toolUse or
 * toolResult blocks: Bedrock then requires toolConfig, so the tools are
 * sent with no toolChoice (the model may still call one). When the client
 * sends no tools but the history has tool blocks, minimal tool specs are
 * made from the called names for the same reason.
 *
 * Answer: output.message.content[] (text, toolUse) + stopReason + usage
 * {inputTokens, outputTokens, cacheReadInputTokens, cacheWriteInputTokens};
 * inputTokens excludes the cache counts, canon's prompt_tokens includes
 * them. Stream: an AWS event stream (eventstream.h) of messageStart,
 * contentBlockStart/Delta/Stop, messageStop, metadata events with JSON
 * payloads, or exceptions. */
#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/json.h"
#include "providers/aws_creds.h"
#include "providers/eventstream.h"
#include "providers/provider.h"
#include "providers/sigv4.h"

#define BEDROCK_SERVICE "bedrock"
#define BEDROCK_MAX_TOOLS 128          /* tool calls tracked in one stream */
#define BEDROCK_MAX_SYNTH_TOOLS 64     /* names made into tool specs */
#define BEDROCK_TOOL_ID_MAX 64         /* Bedrock's toolUseId pattern and length */
#define BEDROCK_MAX_TOKENS_COUNT (1ull << 40) /* a sane bound on reported counts */
#define BEDROCK_MAX_BODY (256u << 20)  /* worst-case reservation of a body */
#define BEDROCK_STREAM_DONE 1          /* stops the event-stream decoder after END */

/* The clock requests are signed with; tests replace it. */
static time_t (*bedrock_clock)(time_t *) = time;

/* ---------------------------------------------------------------- */
/* request body                                                      */
/* ---------------------------------------------------------------- */

/* Bedrock's toolUseId is [a-zA-Z0-9_-]{1,64}. Ids from other upstreams
 * ("functions.get:0") are mapped the same way in toolUse and toolResult,
 * so pairs still match: other bytes become '_', and an id too long keeps
 * 47 bytes plus '_' and 16 hex digits of a hash of all of it, so two long
 * ids sharing a prefix stay apart. */
static int w_tool_id(struct buf *b, struct str id)
{
	char tmp[BEDROCK_TOOL_ID_MAX + 1]; /* + snprintf's NUL */
	size_t n = UMB_MIN(id.n, (size_t)BEDROCK_TOOL_ID_MAX);
	for (size_t i = 0; i < n; i++) {
		char c = id.p[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-';
		tmp[i] = ok ? c : '_';
	}
	if (id.n > BEDROCK_TOOL_ID_MAX) {
		uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
		for (size_t i = 0; i < id.n; i++)
			h = (h ^ (unsigned char)id.p[i]) * 0x100000001b3ull;
		snprintf(tmp + 47, 18, "_%016llx", (unsigned long long)h); /* bytes 47..63 */
	}
	return n ? json_write_str(b, str_make(tmp, n)) : buf_append_lit(b, "\"tool\"");
}

/* A JSON text if it is an object, else "{}" (Bedrock's input and
 * inputSchema are documents that must be objects; a model's broken
 * arguments echoed back by a client cannot be sent as they are). */
static struct str json_object_or_empty(struct str s)
{
	struct json_val v;
	struct str t = str_trim(s);
	if (t.n && json_parse(t.p, t.n, &v, NULL) == 0 && v.type == JSON_OBJECT)
		return t;
	return STR("{}");
}

static int w_text(struct buf *b, struct str text)
{
	buf_append_lit(b, "{\"text\":");
	json_write_str_lossy(b, text);
	return buf_append_lit(b, "}");
}

/* "image/png" → "png"; NULL for what Converse does not take. */
static const char *image_format(struct str media_type, struct str url)
{
	static const char *const fmts[][2] = {
		{ "image/png", "png" }, { "image/jpeg", "jpeg" }, { "image/jpg", "jpeg" },
		{ "image/gif", "gif" }, { "image/webp", "webp" },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(fmts); i++)
		if (str_ieq(media_type, str_cstr(fmts[i][0])))
			return fmts[i][1];
	static const char *const exts[][2] = {
		{ ".png", "png" }, { ".jpg", "jpeg" }, { ".jpeg", "jpeg" }, { ".gif", "gif" },
		{ ".webp", "webp" },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(exts); i++) {
		struct str e = str_cstr(exts[i][0]);
		if (url.n > e.n && str_ieq(str_make(url.p + url.n - e.n, e.n), e))
			return exts[i][1];
	}
	return NULL;
}

/* Inline base64 goes as source.bytes; an s3:// URL as source.s3Location.
 * Converse cannot fetch http(s) URLs: the request cannot be built. */
static int w_image(struct buf *b, const struct canon_part *p, const char **why)
{
	bool s3 = p->url.n > 5 && !memcmp(p->url.p, "s3://", 5);
	const char *fmt = image_format(p->media_type, s3 ? p->url : STR_NULL);
	if (!p->data.n && !s3) {
		*why = "bedrock takes images inline (base64) or from s3://, not from an http(s) URL";
		return UMB_ERR;
	}
	if (!fmt) {
		*why = "bedrock takes png, jpeg, gif and webp images only";
		return UMB_ERR;
	}
	buf_printf(b, "{\"image\":{\"format\":\"%s\",\"source\":{", fmt);
	if (s3) {
		buf_append_lit(b, "\"s3Location\":{\"uri\":");
		json_write_str_lossy(b, p->url);
		buf_append_lit(b, "}");
	} else {
		buf_append_lit(b, "\"bytes\":");
		json_write_str_lossy(b, p->data);
	}
	return buf_append_lit(b, "}}}");
}

static int w_tool_use(struct buf *b, const struct canon_part *p)
{
	buf_append_lit(b, "{\"toolUse\":{\"toolUseId\":");
	w_tool_id(b, p->id);
	buf_append_lit(b, ",\"name\":");
	json_write_str_lossy(b, p->name);
	buf_append_lit(b, ",\"input\":");
	buf_append_str(b, json_object_or_empty(p->args));
	return buf_append_lit(b, "}}");
}

static int w_tool_result(struct buf *b, const struct canon_part *p)
{
	buf_append_lit(b, "{\"toolResult\":{\"toolUseId\":");
	w_tool_id(b, p->id);
	/* Bedrock refuses a blank text block, here too: an empty result is
	 * sent as an empty JSON document */
	buf_append_lit(b, ",\"content\":[");
	if (p->text.n)
		w_text(b, p->text);
	else
		buf_append_lit(b, "{\"json\":{}}");
	buf_append_lit(b, "]");
	if (p->is_error)
		buf_append_lit(b, ",\"status\":\"error\"");
	return buf_append_lit(b, "}}");
}

/* Does the part become a content block? (Blank text does not.) */
static bool part_emits(const struct canon_part *p)
{
	return p->type != CANON_TEXT || p->text.n > 0;
}

static bool msg_emits(const struct canon_msg *m)
{
	for (size_t i = 0; i < m->n_parts; i++)
		if (part_emits(&m->parts[i]))
			return true;
	return false;
}

static int w_part(struct buf *b, const struct canon_part *p, const char **why)
{
	switch (p->type) {
	case CANON_TEXT:
		return w_text(b, p->text);
	case CANON_IMAGE:
		return w_image(b, p, why);
	case CANON_TOOL_CALL:
		return w_tool_use(b, p);
	case CANON_TOOL_RESULT:
		return w_tool_result(b, p);
	}
	return UMB_ERR;
}

/* One merged turn: canon messages [from, to) share a role. Tool results
 * go first (pass 0), then everything else in order (pass 1). */
static int w_turn(struct buf *b, const struct canon_req *req, size_t from, size_t to,
		  const char **why)
{
	buf_append_cstr(b, req->msgs[from].role == CANON_USER ? "{\"role\":\"user\",\"content\":["
							      : "{\"role\":\"assistant\",\"content\":[");
	bool first = true;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = from; i < to; i++)
			for (size_t j = 0; j < req->msgs[i].n_parts; j++) {
				const struct canon_part *p = &req->msgs[i].parts[j];
				if (!part_emits(p) || (p->type == CANON_TOOL_RESULT) != (pass == 0))
					continue;
				if (!first)
					buf_append_lit(b, ",");
				first = false;
				if (w_part(b, p, why))
					return UMB_ERR;
			}
	return buf_append_lit(b, "]}");
}

static int w_messages(struct buf *b, const struct canon_req *req, const char **why)
{
	buf_append_lit(b, "\"messages\":[");
	bool first = true;
	size_t i = 0;
	while (i < req->n_msgs) {
		if (!msg_emits(&req->msgs[i])) {
			i++;
			continue;
		}
		/* the run of emitting messages with this role (empty ones between
		 * do not split it) */
		size_t j = i + 1;
		while (j < req->n_msgs &&
		       (!msg_emits(&req->msgs[j]) || req->msgs[j].role == req->msgs[i].role))
			j++;
		if (!first)
			buf_append_lit(b, ",");
		first = false;
		if (w_turn(b, req, i, j, why))
			return UMB_ERR;
		i = j;
	}
	return buf_append_lit(b, "]");
}

static int w_inference(struct buf *b, const struct canon_req *req)
{
	if (!req->max_tokens && !req->has_temperature && !req->has_top_p && !req->n_stop)
		return UMB_OK;
	buf_append_lit(b, ",\"inferenceConfig\":{");
	const char *sep = "";
	if (req->max_tokens) {
		buf_printf(b, "\"maxTokens\":%lld", (long long)req->max_tokens);
		sep = ",";
	}
	if (req->has_temperature) {
		buf_printf(b, "%s\"temperature\":", sep);
		canon_write_double(b, req->temperature);
		sep = ",";
	}
	if (req->has_top_p) {
		buf_printf(b, "%s\"topP\":", sep);
		canon_write_double(b, req->top_p);
		sep = ",";
	}
	if (req->n_stop) {
		buf_printf(b, "%s\"stopSequences\":[", sep);
		for (size_t i = 0; i < req->n_stop; i++) {
			if (i)
				buf_append_lit(b, ",");
			json_write_str_lossy(b, req->stop[i]);
		}
		buf_append_lit(b, "]");
	}
	return buf_append_lit(b, "}");
}

static bool has_tool_blocks(const struct canon_req *req)
{
	for (size_t i = 0; i < req->n_msgs; i++)
		for (size_t j = 0; j < req->msgs[i].n_parts; j++) {
			enum canon_part_type t = req->msgs[i].parts[j].type;
			if (t == CANON_TOOL_CALL || t == CANON_TOOL_RESULT)
				return true;
		}
	return false;
}

static int w_tool_spec(struct buf *b, struct str name, struct str description, struct str schema)
{
	buf_append_lit(b, "{\"toolSpec\":{\"name\":");
	json_write_str_lossy(b, name);
	if (description.n) { /* Bedrock refuses an empty description */
		buf_append_lit(b, ",\"description\":");
		json_write_str_lossy(b, description);
	}
	struct str s = json_object_or_empty(schema);
	buf_append_lit(b, ",\"inputSchema\":{\"json\":");
	/* an empty schema is not one Anthropic models take: say "an object" */
	buf_append_str(b, str_eq(s, STR("{}")) ? STR("{\"type\":\"object\",\"properties\":{}}") : s);
	return buf_append_lit(b, "}}}");
}

/* Tool specs for the names called in the history, when the client sent
 * no tools (Bedrock requires toolConfig once toolUse blocks exist). */
static void w_synth_tools(struct buf *b, const struct canon_req *req)
{
	struct str seen[BEDROCK_MAX_SYNTH_TOOLS];
	size_t n = 0;
	for (size_t i = 0; i < req->n_msgs; i++)
		for (size_t j = 0; j < req->msgs[i].n_parts; j++) {
			const struct canon_part *p = &req->msgs[i].parts[j];
			if ((p->type != CANON_TOOL_CALL && p->type != CANON_TOOL_RESULT) ||
			    !p->name.n || n == BEDROCK_MAX_SYNTH_TOOLS)
				continue;
			bool dup = false;
			for (size_t k = 0; k < n && !dup; k++)
				dup = str_eq(seen[k], p->name);
			if (dup)
				continue;
			if (n)
				buf_append_lit(b, ",");
			seen[n++] = p->name;
			w_tool_spec(b, p->name, STR_NULL, STR("{}"));
		}
}

static int w_tool_config(struct buf *b, const struct canon_req *req)
{
	bool history = has_tool_blocks(req);
	if (!history && (req->n_tools == 0 || req->tool_choice == CANON_TC_NONE))
		return UMB_OK;
	buf_append_lit(b, ",\"toolConfig\":{\"tools\":[");
	for (size_t i = 0; i < req->n_tools; i++) {
		if (i)
			buf_append_lit(b, ",");
		w_tool_spec(b, req->tools[i].name, req->tools[i].description, req->tools[i].schema);
	}
	if (req->n_tools == 0)
		w_synth_tools(b, req);
	buf_append_lit(b, "]");
	if (req->n_tools) {
		switch (req->tool_choice) {
		case CANON_TC_AUTO:
			buf_append_lit(b, ",\"toolChoice\":{\"auto\":{}}");
			break;
		case CANON_TC_ANY:
			buf_append_lit(b, ",\"toolChoice\":{\"any\":{}}");
			break;
		case CANON_TC_TOOL:
			buf_append_lit(b, ",\"toolChoice\":{\"tool\":{\"name\":");
			json_write_str_lossy(b, req->tool_choice_name);
			buf_append_lit(b, "}}");
			break;
		case CANON_TC_UNSET:
		case CANON_TC_NONE:
			break;
		}
	}
	return buf_append_lit(b, "}");
}

/* An upper bound of the encoded body: JSON escaping writes at most 6
 * bytes per input byte (\u00XX), and each block, tool or member adds a
 * bounded frame. With that room reserved up front no append can fail
 * halfway and leave a truncated document behind. */
static size_t encode_bound(const struct canon_req *req)
{
#define ESC(s) (6 * (s).n + 2)
	size_t n = 512 + ESC(req->system) + ESC(req->tool_choice_name);
	for (size_t i = 0; i < req->n_msgs; i++) {
		n += 64;
		for (size_t j = 0; j < req->msgs[i].n_parts; j++) {
			const struct canon_part *p = &req->msgs[i].parts[j];
			/* the name twice: a synthesised tool spec may repeat it */
			n += 256 + ESC(p->text) + ESC(p->data) + ESC(p->url) + 6 * BEDROCK_TOOL_ID_MAX +
			     2 * ESC(p->name) + p->args.n;
		}
	}
	for (size_t i = 0; i < req->n_tools; i++)
		n += 256 + ESC(req->tools[i].name) + ESC(req->tools[i].description) +
		     req->tools[i].schema.n;
	for (size_t i = 0; i < req->n_stop; i++)
		n += 8 + ESC(req->stop[i]);
	return n;
#undef ESC
}

/** The Converse request body for req (stream or not: the body is the
 * same, the path differs). UMB_ERR with *why when it cannot be said in
 * Converse or is too large. */
static int bedrock_req_encode(const struct canon_req *req, struct buf *b, const char **why)
{
	if (buf_reserve(b, encode_bound(req))) {
		*why = "request body too large";
		return UMB_ERR;
	}
	buf_append_lit(b, "{");
	if (w_messages(b, req, why))
		return UMB_ERR;
	if (req->system.n) {
		buf_append_lit(b, ",\"system\":[");
		w_text(b, req->system);
		buf_append_lit(b, "]");
	}
	w_inference(b, req);
	w_tool_config(b, req);
	if (req->has_top_k)
		buf_printf(b, ",\"additionalModelRequestFields\":{\"top_k\":%lld}",
			   (long long)req->top_k);
	return buf_append_lit(b, "}");
}

/* ---------------------------------------------------------------- */
/* building and signing                                              */
/* ---------------------------------------------------------------- */

/* Split an origin ("scheme://host[:port][/prefix]") into its host part
 * and path prefix. */
static void origin_split(const char *origin, struct str *hostport, struct str *prefix)
{
	const char *h = strstr(origin, "://");
	h = h ? h + 3 : origin;
	const char *slash = strchr(h, '/');
	*hostport = str_make(h, slash ? (size_t)(slash - h) : strlen(h));
	*prefix = str_cstr(slash ? slash : "");
}

static bool ip_literal(struct str hostport)
{
	if (hostport.n && hostport.p[0] == '[')
		return true;
	char host[64];
	const char *colon = memchr(hostport.p, ':', hostport.n);
	size_t n = colon ? (size_t)(colon - hostport.p) : hostport.n;
	if (n >= sizeof host)
		return false;
	memcpy(host, hostport.p, n);
	host[n] = 0;
	struct in_addr a4;
	return inet_pton(AF_INET, host, &a4) == 1;
}

/* The Host header the transport sends, which is what must be signed:
 * umbra's own HTTP/1.1 client (http to an IP literal, unix sockets,
 * dark services) sends the origin's host[:port] as written; libcurl
 * (https, http to a name) leaves a default port out. */
static struct str signing_host(const struct cfg_endpoint *ep, struct str hostport)
{
	bool curl = ep->scheme == SCHEME_HTTPS || (ep->scheme == SCHEME_HTTP && !ip_literal(hostport));
	const char *dflt = ep->scheme == SCHEME_HTTPS ? ":443" : ":80";
	size_t dn = strlen(dflt);
	if (curl && hostport.n > dn && !memcmp(hostport.p + hostport.n - dn, dflt, dn))
		hostport.n -= dn;
	return hostport;
}

/* The region: the provider's, else the one in a bedrock-runtime host
 * name, else AWS_REGION / AWS_DEFAULT_REGION. */
static struct str bedrock_region(const struct cfg_provider *prov, struct str hostport)
{
	if (prov->region && *prov->region)
		return str_cstr(prov->region);
	static const char *const pre[] = { "bedrock-runtime.", "bedrock-runtime-fips." };
	for (size_t i = 0; i < UMB_ARRAY_LEN(pre); i++) {
		size_t pn = strlen(pre[i]);
		if (hostport.n > pn && !memcmp(hostport.p, pre[i], pn)) {
			const char *r = hostport.p + pn;
			const char *dot = memchr(r, '.', hostport.n - pn);
			if (dot && dot > r)
				return str_make(r, (size_t)(dot - r));
		}
	}
	const char *env = getenv("AWS_REGION");
	if (!env || !*env)
		env = getenv("AWS_DEFAULT_REGION");
	return str_cstr(env && *env ? env : "");
}

/* Sign and add the headers. path is what follows the origin. */
static int bedrock_sign(struct arena *a, const struct cfg_endpoint *ep, const struct aws_creds *cr,
			struct str region, struct str path, struct str body, bool stream,
			struct provider_request *out)
{
	struct str hostport, prefix;
	origin_split(ep->origin, &hostport, &prefix);
	const char *accept = stream ? "application/vnd.amazon.eventstream" : "application/json";
	char date[SIGV4_DATE_LEN + 1], payload[SIGV4_HEX_LEN + 1];
	sigv4_amz_date(bedrock_clock(NULL), date);
	sigv4_sha256_hex(body.p, body.n, payload);
	struct sigv4_header h[] = {
		{ STR("host"), signing_host(ep, hostport) },
		{ STR("content-type"), STR("application/json") },
		{ STR("accept"), str_cstr(accept) },
		{ STR("x-amz-date"), str_cstr(date) },
		{ STR("x-amz-security-token"), cr->session_token },
	};
	struct buf wire, authz;
	buf_init(&wire, 0);
	buf_init(&authz, 0);
	buf_append_str(&wire, prefix);
	buf_append_str(&wire, path);
	struct sigv4_request r = {
		.method = STR("POST"),
		.path = buf_str(&wire),
		.query = STR(""),
		.headers = h,
		.n_headers = cr->session_token.n ? 5 : 4,
		.payload_hash = str_cstr(payload),
		.normalize_path = true,
	};
	struct sigv4_key k = { cr->access_key_id, cr->secret_access_key, region,
			       STR(BEDROCK_SERVICE), str_cstr(date) };
	int rc = sigv4_authorization(&r, &k, &authz);
	if (!rc) {
		size_t n = out->n_headers;
		out->headers[n++] = "Content-Type: application/json";
		out->headers[n++] = arena_join(a, "Accept: ", accept, NULL);
		out->headers[n++] = arena_join(a, "X-Amz-Date: ", date, NULL);
		if (cr->session_token.n)
			out->headers[n++] = arena_join(a, "X-Amz-Security-Token: ",
						       arena_strdup_str(a, cr->session_token), NULL);
		out->headers[n++] = arena_join(a, "Authorization: ", authz.p, NULL);
		out->n_headers = n;
	}
	buf_clear(&wire);
	buf_clear(&authz);
	return rc;
}

static int bedrock_build(struct arena *a, const struct upstream_call *call,
			 const struct cfg_model *model, const struct cfg_endpoint *ep,
			 const char *request_id, struct provider_request *out)
{
	const struct cfg_provider *prov = model->provider;
	const char *why = NULL;
	char whybuf[320];
	struct aws_creds cr;
	struct buf body, path;
	int rc = UMB_ERR;
	buf_init(&body, BEDROCK_MAX_BODY);
	buf_init(&path, 0);
	if (call->op != UPSTREAM_CHAT || !call->canon) {
		why = "bedrock serves chat completions only";
		goto out;
	}
	if (aws_creds_resolve(a, prov, &cr, whybuf, sizeof whybuf)) {
		why = whybuf;
		goto out;
	}
	struct str hostport, prefix;
	origin_split(ep->origin, &hostport, &prefix);
	struct str region = bedrock_region(prov, hostport);
	if (!region.n) {
		why = "no AWS region: set region on the provider or AWS_REGION";
		goto out;
	}
	if (bedrock_req_encode(call->canon, &body, &why))
		goto out;
	buf_append_lit(&path, "/model/");
	sigv4_uri_encode(&path, provider_upstream_name(call, model), false);
	buf_append_cstr(&path, call->stream ? "/converse-stream" : "/converse");
	out->url = arena_join(a, ep->origin, path.p, NULL);
	provider_body_set(a, out, &body);
	out->n_headers = 0;
	out->headers[out->n_headers++] = arena_join(a, "x-request-id: ", request_id, NULL);
	out->headers[out->n_headers++] = "Expect:"; /* no 100-continue round trip */
	if (bedrock_sign(a, ep, &cr, region, buf_str(&path), out->parts[0], call->stream, out)) {
		why = "signing failed";
		goto out;
	}
	provider_extra_headers(a, model, out);
	rc = UMB_OK;
out:
	if (rc)
		log_warn("provider %s: cannot build a bedrock request: %s", prov->name,
			 why ? why : "error");
	buf_clear(&body);
	buf_clear(&path);
	return rc;
}

/* ---------------------------------------------------------------- */
/* answers                                                           */
/* ---------------------------------------------------------------- */

static uint64_t count_of(struct json_val obj, const char *key)
{
	struct json_val v;
	int64_t x;
	if (!json_obj_get(obj, key, &v) || json_get_i64(v, &x) || x < 0)
		return 0;
	return UMB_MIN((uint64_t)x, BEDROCK_MAX_TOKENS_COUNT);
}

/* TokenUsage: inputTokens counts only what was not read from or written
 * to the prompt cache. */
static void read_usage(struct json_val u, struct canon_usage *out)
{
	if (u.type != JSON_OBJECT)
		return;
	uint64_t in = count_of(u, "inputTokens");
	uint64_t cr = count_of(u, "cacheReadInputTokens");
	uint64_t cw = count_of(u, "cacheWriteInputTokens");
	out->seen = true;
	out->prompt_tokens = in + cr + cw;
	out->completion_tokens = count_of(u, "outputTokens");
	out->cached_prompt_tokens = cr;
	out->cache_write_tokens = cw;
}

static enum canon_finish finish_of(struct json_val v)
{
	static const struct {
		const char *name;
		enum canon_finish f;
	} map[] = {
		{ "end_turn", CANON_FIN_STOP },
		{ "tool_use", CANON_FIN_TOOL_CALLS },
		{ "max_tokens", CANON_FIN_LENGTH },
		{ "model_context_window_exceeded", CANON_FIN_LENGTH },
		{ "stop_sequence", CANON_FIN_STOP_SEQUENCE },
		{ "guardrail_intervened", CANON_FIN_CONTENT_FILTER },
		{ "content_filtered", CANON_FIN_CONTENT_FILTER },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(map); i++)
		if (json_str_eq(v, map[i].name))
			return map[i].f;
	return CANON_FIN_STOP; /* malformed_model_output and future reasons */
}

/* The matched stop sequence, which only some models report (Anthropic's
 * in additionalModelResponseFields.stop_sequence). */
static bool stop_sequence_of(struct json_val root, struct json_val *out)
{
	struct json_val f;
	return json_obj_get(root, "additionalModelResponseFields", &f) && f.type == JSON_OBJECT &&
	       json_obj_get(f, "stop_sequence", out) && out->type == JSON_STRING;
}

/* A JSON string's decoded text copied into the arena. Not canon_decode:
 * that one returns a view into the body when there is nothing to
 * unescape, and the gateway reuses the body's buffer for the answer it
 * writes from these strings. */
static struct str arena_text(struct arena *a, struct json_val v)
{
	struct buf b;
	buf_init(&b, 0);
	json_str_decode(v, &b);
	struct str out = str_make(arena_strndup(a, b.p ? b.p : "", b.n), b.n);
	buf_clear(&b);
	return out;
}

/* One content block of the answer into *p; false for blocks canon does
 * not carry (reasoningContent, ...). UMB_ERR in *bad for a toolUse
 * without its id or name. */
static bool block_part(struct arena *a, struct json_val blk, struct canon_part *p, bool *bad)
{
	struct json_val v, id, name, input;
	memset(p, 0, sizeof *p);
	if (blk.type != JSON_OBJECT)
		return false;
	if (json_obj_get(blk, "text", &v) && v.type == JSON_STRING) {
		p->type = CANON_TEXT;
		p->text = arena_text(a, v);
		return true;
	}
	if (!json_obj_get(blk, "toolUse", &v) || v.type != JSON_OBJECT)
		return false;
	if (!json_obj_get(v, "toolUseId", &id) || id.type != JSON_STRING ||
	    !json_obj_get(v, "name", &name) || name.type != JSON_STRING) {
		*bad = true;
		return false;
	}
	p->type = CANON_TOOL_CALL;
	p->id = arena_text(a, id);
	p->name = arena_text(a, name);
	p->args = json_obj_get(v, "input", &input) ? str_cstr(arena_strdup_str(a, input.raw))
						   : STR("{}");
	return true;
}

static int bedrock_decode(struct arena *a, const struct upstream_call *call, struct str body,
			  struct canon_resp *out)
{
	UMB_UNUSED(call);
	struct json_val root, output, msg, content, v;
	memset(out, 0, sizeof *out);
	if (json_parse(body.p, body.n, &root, NULL) || root.type != JSON_OBJECT ||
	    !json_obj_get(root, "output", &output) || output.type != JSON_OBJECT ||
	    !json_obj_get(output, "message", &msg) || msg.type != JSON_OBJECT ||
	    !json_obj_get(msg, "content", &content) || content.type != JSON_ARRAY)
		return UMB_ERR;
	struct json_iter it;
	size_t n = 0;
	json_iter_init(&it, content);
	while (json_arr_next(&it, &v))
		n++;
	out->parts = arena_alloc(a, (n ? n : 1) * sizeof *out->parts);
	bool bad = false;
	json_iter_init(&it, content);
	while (json_arr_next(&it, &v))
		if (block_part(a, v, &out->parts[out->n_parts], &bad))
			out->n_parts++;
	if (bad)
		return UMB_ERR;
	out->finish = json_obj_get(root, "stopReason", &v) ? finish_of(v) : CANON_FIN_STOP;
	if (stop_sequence_of(root, &v))
		out->stop_sequence = arena_text(a, v);
	if (json_obj_get(root, "usage", &v))
		read_usage(v, &out->usage);
	return UMB_OK;
}

/* Bedrock errors: {"message": "..."} (some services spell it "Message");
 * the type is in the x-amzn-ErrorType header. */
static const char *bedrock_error_message(struct arena *a, struct str body)
{
	struct json_val root, m;
	if (json_parse(body.p, body.n, &root, NULL) || root.type != JSON_OBJECT)
		return NULL;
	if ((!json_obj_get(root, "message", &m) || m.type != JSON_STRING) &&
	    (!json_obj_get(root, "Message", &m) || m.type != JSON_STRING))
		return NULL;
	return arena_strdup_str(a, arena_text(a, m));
}

/* ---------------------------------------------------------------- */
/* the event stream                                                  */
/* ---------------------------------------------------------------- */

struct bedrock_stream {
	struct es_decoder es;
	const struct canon_sink *sink; /* during a feed */
	struct buf scratch;            /* one delta's decoded text */
	struct buf join;               /* a delta's JSON string with a carried escape */
	char carry[6];                 /* "\uD83D": a high surrogate ending a delta */
	bool carrying;
	int carry_stream;              /* -1: the text; else the tool index */
	bool started, finished, metadata, ended;
	bool sink_failed;              /* the sink, not the upstream, said stop */
	struct canon_usage usage;
	int n_tools;
	int64_t tool_block[BEDROCK_MAX_TOOLS]; /* contentBlockIndex of tool i */
};

static void bedrock_stream_init(void *state, const struct upstream_call *call)
{
	struct bedrock_stream *st = state;
	UMB_UNUSED(call);
	memset(st, 0, sizeof *st);
	es_decoder_init(&st->es, ES_MAX_MESSAGE);
	buf_init(&st->scratch, ES_MAX_MESSAGE);
	buf_init(&st->join, ES_MAX_MESSAGE);
}

static void bedrock_stream_clear(void *state)
{
	struct bedrock_stream *st = state;
	es_decoder_clear(&st->es);
	buf_clear(&st->scratch);
	buf_clear(&st->join);
}

static int emit(struct bedrock_stream *st, struct canon_ev *ev)
{
	if (st->ended)
		return 0; /* nothing after END */
	if (!st->started && ev->type != CEV_START) {
		struct canon_ev s = { .type = CEV_START };
		st->started = true;
		int rc = canon_emit(st->sink, &s);
		st->sink_failed |= rc != 0;
		if (rc)
			return rc;
	}
	st->started = true;
	if (ev->type == CEV_END)
		st->ended = true;
	int rc = canon_emit(st->sink, ev);
	st->sink_failed |= rc != 0;
	return rc;
}

/* END once both messageStop and metadata have come (either order). */
static int maybe_end(struct bedrock_stream *st)
{
	if (!st->finished || !st->metadata)
		return 0;
	struct canon_ev ev = { .type = CEV_END };
	return emit(st, &ev);
}

/* A JSON string decoded into the scratch buffer. */
static int scratch_decode(struct bedrock_stream *st, struct json_val v, struct str *out)
{
	buf_reset(&st->scratch);
	int rc = json_str_decode(v, &st->scratch);
	*out = buf_str(&st->scratch);
	return rc;
}

/* Does the JSON string text s end with an escaped high surrogate
 * ("\uD800".."\uDBFF" whose backslash is not itself escaped)? */
static bool ends_with_high_surrogate(struct str s)
{
	if (s.n < 6)
		return false;
	const char *e = s.p + s.n - 6;
	if (e[0] != '\\' || e[1] != 'u' || (e[2] != 'd' && e[2] != 'D') ||
	    !e[3] || !strchr("89abAB", e[3]) || !isxdigit((unsigned char)e[4]) ||
	    !isxdigit((unsigned char)e[5]))
		return false;
	size_t bs = 0; /* backslashes before e[0]: an odd count escapes it */
	while (e - bs > s.p && e[-(ptrdiff_t)bs - 1] == '\\')
		bs++;
	return bs % 2 == 0;
}

/* A delta's text into the scratch buffer. A character outside the BMP
 * can reach us as a UTF-16 surrogate pair split over two deltas
 * ("\ud83d" | "\ude00"): the high half is held back and joined to the
 * next delta of the same stream (-1: text, else a tool index), instead
 * of becoming two U+FFFD. */
static int delta_decode(struct bedrock_stream *st, struct json_val v, int stream, struct str *out)
{
	struct str inner = str_make(v.raw.p + 1, v.raw.n - 2);
	bool carry_in = st->carrying && st->carry_stream == stream;
	char carried[6];
	memcpy(carried, st->carry, sizeof carried);
	st->carrying = ends_with_high_surrogate(inner);
	if (st->carrying) {
		memcpy(st->carry, inner.p + inner.n - 6, 6);
		st->carry_stream = stream;
		inner.n -= 6;
	}
	buf_reset(&st->join);
	buf_append_lit(&st->join, "\"");
	if (carry_in)
		buf_append(&st->join, carried, sizeof carried);
	buf_append_str(&st->join, inner);
	if (buf_append_lit(&st->join, "\""))
		return UMB_ERR;
	struct json_val joined = { JSON_STRING, buf_str(&st->join) };
	return scratch_decode(st, joined, out);
}

/* A high surrogate still held when its stream is over, or another one
 * speaks, becomes U+FFFD as json_str_decode would have made it. */
static int carry_flush(struct bedrock_stream *st, int next_stream)
{
	if (!st->carrying || st->carry_stream == next_stream)
		return 0;
	st->carrying = false;
	struct canon_ev ev = { .type = st->carry_stream < 0 ? CEV_TEXT : CEV_TOOL_ARGS,
			       .index = st->carry_stream < 0 ? 0 : st->carry_stream,
			       .text = STR("\xef\xbf\xbd") };
	return emit(st, &ev);
}

static int tool_of_block(const struct bedrock_stream *st, int64_t block)
{
	for (int i = st->n_tools; i-- > 0;)
		if (st->tool_block[i] == block)
			return i;
	return -1;
}

static int block_index(struct json_val payload, int64_t *out)
{
	struct json_val v;
	*out = 0;
	return json_obj_get(payload, "contentBlockIndex", &v) && json_get_i64(v, out) == 0 ? 0
											 : UMB_ERR;
}

static int on_message_start(struct bedrock_stream *st, struct json_val payload)
{
	struct canon_ev ev = { .type = CEV_START };
	UMB_UNUSED(payload);
	return st->started ? 0 : emit(st, &ev);
}

static int on_block_start(struct bedrock_stream *st, struct json_val payload)
{
	struct json_val start, tu, id, name;
	int64_t block;
	if (st->finished)
		return UMB_ERR; /* content after messageStop */
	int rc = carry_flush(st, INT_MIN); /* a new block: what was held is over */
	if (rc)
		return rc;
	if (!json_obj_get(payload, "start", &start) || start.type != JSON_OBJECT ||
	    !json_obj_get(start, "toolUse", &tu) || tu.type != JSON_OBJECT)
		return 0; /* other block kinds need no announcement */
	if (block_index(payload, &block) || !json_obj_get(tu, "toolUseId", &id) ||
	    id.type != JSON_STRING || !json_obj_get(tu, "name", &name) || name.type != JSON_STRING ||
	    st->n_tools == BEDROCK_MAX_TOOLS || tool_of_block(st, block) >= 0)
		return UMB_ERR;
	/* id and name both need decoding: the name goes to the scratch,
	 * the id into a small local copy */
	struct buf idb;
	buf_init(&idb, 4096);
	rc = json_str_decode(id, &idb);
	struct canon_ev ev = { .type = CEV_TOOL_START, .index = st->n_tools };
	if (!rc)
		rc = scratch_decode(st, name, &ev.name);
	if (!rc) {
		ev.id = buf_str(&idb);
		st->tool_block[st->n_tools++] = block;
		rc = emit(st, &ev);
	} else {
		rc = UMB_ERR;
	}
	buf_clear(&idb);
	return rc;
}

static int on_block_delta(struct bedrock_stream *st, struct json_val payload)
{
	struct json_val delta, v, tu;
	struct canon_ev ev = { 0 };
	if (st->finished || !json_obj_get(payload, "delta", &delta) || delta.type != JSON_OBJECT)
		return UMB_ERR; /* content after messageStop, or no delta */
	int rc;
	if (json_obj_get(delta, "text", &v) && v.type == JSON_STRING) {
		ev.type = CEV_TEXT;
		if ((rc = carry_flush(st, -1)))
			return rc;
		if (delta_decode(st, v, -1, &ev.text))
			return UMB_ERR;
		return ev.text.n ? emit(st, &ev) : 0;
	}
	if (json_obj_get(delta, "toolUse", &tu) && tu.type == JSON_OBJECT) {
		int64_t block;
		int tool;
		if (block_index(payload, &block) || (tool = tool_of_block(st, block)) < 0 ||
		    !json_obj_get(tu, "input", &v) || v.type != JSON_STRING)
			return UMB_ERR;
		ev.type = CEV_TOOL_ARGS;
		ev.index = tool;
		if ((rc = carry_flush(st, tool)))
			return rc;
		if (delta_decode(st, v, tool, &ev.text))
			return UMB_ERR;
		return ev.text.n ? emit(st, &ev) : 0;
	}
	return 0; /* reasoningContent, citations, ...: not carried */
}

static int on_block_stop(struct bedrock_stream *st, struct json_val payload)
{
	UMB_UNUSED(payload);
	return carry_flush(st, INT_MIN);
}

static int on_message_stop(struct bedrock_stream *st, struct json_val payload)
{
	struct json_val v;
	struct canon_ev ev = { .type = CEV_FINISH };
	if (st->finished)
		return UMB_ERR;
	int rc = carry_flush(st, INT_MIN); /* no stream continues */
	if (rc)
		return rc;
	ev.finish = json_obj_get(payload, "stopReason", &v) ? finish_of(v) : CANON_FIN_STOP;
	if (stop_sequence_of(payload, &v) && scratch_decode(st, v, &ev.stop_sequence))
		return UMB_ERR;
	st->finished = true;
	rc = emit(st, &ev);
	return rc ? rc : maybe_end(st);
}

static int on_metadata(struct bedrock_stream *st, struct json_val payload)
{
	struct json_val u;
	st->metadata = true;
	if (json_obj_get(payload, "usage", &u) && u.type == JSON_OBJECT) {
		struct canon_ev ev = { .type = CEV_USAGE };
		read_usage(u, &ev.usage);
		st->usage = ev.usage;
		int rc = emit(st, &ev);
		if (rc)
			return rc;
	}
	return maybe_end(st);
}

/* An exception message ends the stream as an error: the status it would
 * have had is in :exception-type (throttlingException, ...). */
static int on_exception(const struct es_message *m)
{
	struct str type = es_message_str(m, ":exception-type");
	struct str text = STR("");
	struct json_val root, v;
	if (json_parse(m->payload.p, m->payload.n, &root, NULL) == 0 && root.type == JSON_OBJECT &&
	    ((json_obj_get(root, "message", &v) && v.type == JSON_STRING) ||
	     (json_obj_get(root, "Message", &v) && v.type == JSON_STRING)))
		text = str_make(v.raw.p + 1, v.raw.n - 2);
	log_warn("bedrock stream exception %.*s: %.*s", STR_FMT(type),
		 (int)UMB_MIN(text.n, (size_t)300), text.p);
	return UMB_ERR;
}

static int bedrock_event(struct bedrock_stream *st, const struct es_message *m);

/* One message; a malformed one is logged with its type (the sink's own
 * refusals and exceptions are not garbage). */
static int bedrock_on_message(void *ctx, const struct es_message *m)
{
	struct bedrock_stream *st = ctx;
	int rc = bedrock_event(st, m);
	if (rc == 0 && st->ended)
		return BEDROCK_STREAM_DONE; /* whatever follows END is not read */
	if (rc == UMB_ERR && !st->sink_failed &&
	    !str_eq(es_message_str(m, ":message-type"), STR("exception")))
		log_warn("bedrock stream: malformed %.*s message (%.*s)",
			 STR_FMT(es_message_str(m, ":message-type")),
			 STR_FMT(es_message_str(m, ":event-type")));
	return rc;
}

static int bedrock_event(struct bedrock_stream *st, const struct es_message *m)
{
	static const struct {
		const char *type;
		int (*fn)(struct bedrock_stream *, struct json_val);
	} handlers[] = {
		{ "messageStart", on_message_start },
		{ "contentBlockStart", on_block_start },
		{ "contentBlockDelta", on_block_delta },
		{ "contentBlockStop", on_block_stop },
		{ "messageStop", on_message_stop },
		{ "metadata", on_metadata },
	};
	struct str mtype = es_message_str(m, ":message-type");
	if (str_eq(mtype, STR("exception")) || str_eq(mtype, STR("error")))
		return on_exception(m);
	struct str etype = es_message_str(m, ":event-type");
	if (!str_eq(mtype, STR("event")) || !etype.n)
		return UMB_ERR;
	for (size_t i = 0; i < UMB_ARRAY_LEN(handlers); i++) {
		if (!str_eq(etype, str_cstr(handlers[i].type)))
			continue;
		struct json_val payload;
		if (json_parse(m->payload.p, m->payload.n, &payload, NULL) ||
		    payload.type != JSON_OBJECT)
			return UMB_ERR;
		return handlers[i].fn(st, payload);
	}
	return 0; /* event types added later */
}

static int bedrock_stream_feed(void *state, const char *p, size_t n, const struct canon_sink *sink)
{
	struct bedrock_stream *st = state;
	st->sink = sink;
	if (st->ended)
		return 0;
	int rc = es_decoder_feed(&st->es, p, n, bedrock_on_message, st);
	if (rc == BEDROCK_STREAM_DONE && st->ended && !st->sink_failed)
		return 0;
	if (rc && !st->sink_failed && st->es.why)
		log_warn("bedrock stream: %s", st->es.why);
	return rc;
}

static int bedrock_stream_finish(void *state, const struct canon_sink *sink)
{
	struct bedrock_stream *st = state;
	st->sink = sink;
	return st->ended ? UMB_OK : UMB_ERR;
}

static const struct provider_ops bedrock_ops = {
	.name = "bedrock",
	.native = -1,
	.build = bedrock_build,
	.decode = bedrock_decode,
	.stream_size = sizeof(struct bedrock_stream),
	.stream_init = bedrock_stream_init,
	.stream_feed = bedrock_stream_feed,
	.stream_finish = bedrock_stream_finish,
	.stream_clear = bedrock_stream_clear,
	.error_message = bedrock_error_message,
	.health_path = NULL, /* bedrock-runtime has no cheap GET to probe */
};

const struct provider_ops *provider_bedrock_ops(void)
{
	return &bedrock_ops;
}
