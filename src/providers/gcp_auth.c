/* gcp_auth.c — service-account OAuth 2.0 for Vertex AI (gcp_auth.h).
 *
 * The protocol (Google's "Using OAuth 2.0 for Server to Server
 * Applications", RFC 7523): sign a JWT {iss: client_email, scope, aud:
 * token_uri, iat, exp <= iat + 1 h} with the account's RSA key (RS256),
 * POST it form-encoded to token_uri as grant_type=urn:ietf:params:oauth:
 * grant-type:jwt-bearer, get {"access_token","expires_in","token_type"}. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/json.h"
#include "providers/gcp_auth.h"

#define GCP_KEYFILE_MAX (64u << 10) /* a key file is ~2.3 KB */
#define GCP_ANSWER_MAX (64u << 10)
#define GCP_FETCH_TIMEOUT_MS 30000
#define GCP_BACKOFF_MIN_MS 1000
#define GCP_BACKOFF_MAX_MS 60000

/* ------------------------------------------------------------------ */
/* key file                                                            */

static char *json_dup(struct json_val root, const char *key, bool wipe_scratch)
{
	struct json_val v;
	struct buf b;
	if (!json_obj_get(root, key, &v) || v.type != JSON_STRING)
		return NULL;
	buf_init(&b, 0);
	if (json_str_decode(v, &b) || !b.n) {
		buf_clear(&b);
		return NULL;
	}
	char *s = umb_strndup(b.p, b.n);
	if (wipe_scratch)
		OPENSSL_cleanse(b.p, b.n);
	buf_clear(&b);
	return s;
}

/* An encrypted PEM must never make OpenSSL prompt on a terminal. */
static int pem_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	UMB_UNUSED(buf), UMB_UNUSED(size), UMB_UNUSED(rwflag), UMB_UNUSED(u);
	return -1;
}

static struct evp_pkey_st *load_rsa_pem(const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	if (!bio)
		return NULL;
	EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, pem_no_passphrase, NULL);
	BIO_free(bio);
	if (k && EVP_PKEY_base_id(k) != EVP_PKEY_RSA) {
		EVP_PKEY_free(k);
		k = NULL;
	}
	return k;
}

int gcp_sa_parse(struct str json, struct gcp_sa *out, char *why, size_t why_n)
{
	struct json_val root, type;
	memset(out, 0, sizeof *out);
	if (json_parse(json.p, json.n, &root, NULL) || root.type != JSON_OBJECT) {
		snprintf(why, why_n, "not a JSON object");
		return UMB_ERR;
	}
	if (json_obj_get(root, "type", &type) && !json_str_eq(type, "service_account")) {
		snprintf(why, why_n, "\"type\" is not \"service_account\" (only service-account keys are supported)");
		return UMB_ERR;
	}
	out->client_email = json_dup(root, "client_email", false);
	out->private_key_id = json_dup(root, "private_key_id", false);
	out->token_uri = json_dup(root, "token_uri", false);
	char *pem = json_dup(root, "private_key", true);
	if (!out->client_email || !pem) {
		snprintf(why, why_n, "missing %s", out->client_email ? "private_key" : "client_email");
		goto fail;
	}
	if (!out->token_uri)
		out->token_uri = umb_strdup(GCP_DEFAULT_TOKEN_URI);
	out->key = load_rsa_pem(pem);
	OPENSSL_cleanse(pem, strlen(pem));
	free(pem);
	pem = NULL;
	if (!out->key) {
		snprintf(why, why_n, "private_key is not an unencrypted PEM RSA key");
		goto fail;
	}
	return UMB_OK;
fail:
	free(pem);
	gcp_sa_clear(out);
	return UMB_ERR;
}

int gcp_sa_load(const char *path, struct gcp_sa *out, char *why, size_t why_n)
{
	FILE *f = fopen(path, "rb");
	memset(out, 0, sizeof *out);
	if (!f) {
		snprintf(why, why_n, "cannot open %s: %s", path, strerror(errno));
		return UMB_ERR;
	}
	struct buf b;
	buf_init(&b, GCP_KEYFILE_MAX);
	char chunk[4096];
	size_t n;
	int rc = UMB_OK;
	while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
		rc = buf_append(&b, chunk, n);
	bool bad = ferror(f);
	fclose(f);
	if (rc || bad) {
		snprintf(why, why_n, "cannot read %s: %s", path, rc ? "too large" : "read error");
		rc = UMB_ERR;
	} else {
		char inner[200];
		rc = gcp_sa_parse(buf_str(&b), out, inner, sizeof inner);
		if (rc)
			snprintf(why, why_n, "%s: %s", path, inner);
	}
	if (b.p)
		OPENSSL_cleanse(b.p, b.n);
	buf_clear(&b);
	return rc;
}

void gcp_sa_clear(struct gcp_sa *sa)
{
	free(sa->client_email);
	free(sa->private_key_id);
	free(sa->token_uri);
	EVP_PKEY_free(sa->key);
	memset(sa, 0, sizeof *sa);
}

/* ------------------------------------------------------------------ */
/* JWT                                                                 */

/* base64url without padding (RFC 7515 §2). */
static int b64url(struct buf *b, const unsigned char *p, size_t n)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	int rc = buf_reserve(b, (n + 2) / 3 * 4);
	if (rc)
		return rc;
	char *q = b->p + b->n;
	size_t i = 0;
	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*q++ = tbl[v >> 18 & 63], *q++ = tbl[v >> 12 & 63];
		*q++ = tbl[v >> 6 & 63], *q++ = tbl[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
		*q++ = tbl[v >> 18 & 63], *q++ = tbl[v >> 12 & 63];
		if (i + 1 < n)
			*q++ = tbl[v >> 6 & 63];
	}
	b->n = (size_t)(q - b->p);
	b->p[b->n] = 0;
	return UMB_OK;
}

static int rs256(EVP_PKEY *key, struct str msg, unsigned char *sig, size_t *sig_n)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
		 EVP_DigestSign(md, sig, sig_n, (const unsigned char *)msg.p, msg.n) == 1;
	EVP_MD_CTX_free(md);
	return ok ? UMB_OK : UMB_ERR;
}

int gcp_jwt_sign(const struct gcp_sa *sa, int64_t iat, struct buf *out)
{
	struct buf js;
	int rc = UMB_OK;
	size_t n0 = out->n;
	buf_init(&js, 0);
	/* header */
	rc |= buf_append_lit(&js, "{\"alg\":\"RS256\",\"typ\":\"JWT\"");
	if (sa->private_key_id) {
		rc |= buf_append_lit(&js, ",\"kid\":");
		rc |= json_write_cstr(&js, sa->private_key_id);
	}
	rc |= buf_append_lit(&js, "}");
	rc |= b64url(out, (const unsigned char *)js.p, js.n);
	rc |= buf_append_lit(out, ".");
	/* claims */
	buf_reset(&js);
	rc |= buf_append_lit(&js, "{\"iss\":");
	rc |= json_write_cstr(&js, sa->client_email);
	rc |= buf_append_lit(&js, ",\"scope\":\"" GCP_SCOPE "\",\"aud\":");
	rc |= json_write_cstr(&js, sa->token_uri);
	rc |= buf_printf(&js, ",\"iat\":%lld,\"exp\":%lld}", (long long)iat,
			 (long long)(iat + GCP_JWT_LIFETIME_S));
	rc |= b64url(out, (const unsigned char *)js.p, js.n);
	buf_clear(&js);
	if (rc)
		goto out;
	/* signature over "header.claims" */
	unsigned char sig[1024]; /* RSA up to 8192 bits */
	size_t sig_n = (size_t)EVP_PKEY_get_size(sa->key);
	if (sig_n > sizeof sig || rs256(sa->key, str_make(out->p + n0, out->n - n0), sig, &sig_n)) {
		rc = UMB_ERR;
		goto out;
	}
	rc |= buf_append_lit(out, ".");
	rc |= b64url(out, sig, sig_n);
out:
	if (rc) {
		out->n = n0;
		if (out->p)
			out->p[n0] = 0;
		return UMB_ERR;
	}
	return UMB_OK;
}

/* application/x-www-form-urlencoded: unreserved bytes as they are. */
static int form_escape(struct buf *b, struct str s)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = UMB_OK;
	for (size_t i = 0; i < s.n && !rc; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			rc = buf_append(b, &s.p[i], 1);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			rc = buf_append(b, e, 3);
		}
	}
	return rc;
}

int gcp_token_form(struct str jwt, struct buf *out)
{
	int rc = buf_append_lit(out, "grant_type=");
	rc |= form_escape(out, STR("urn:ietf:params:oauth:grant-type:jwt-bearer"));
	rc |= buf_append_lit(out, "&assertion=");
	rc |= form_escape(out, jwt);
	return rc ? UMB_ERR : UMB_OK;
}

/* "error: error_description" of an OAuth error answer, for the log. */
static void oauth_error(struct json_val root, long status, char *why, size_t why_n)
{
	char e[64] = "", d[160] = "";
	struct json_val v;
	struct buf b;
	buf_init(&b, 0);
	if (root.type == JSON_OBJECT && json_obj_get(root, "error", &v) && !json_str_decode(v, &b))
		snprintf(e, sizeof e, "%.*s", (int)b.n, b.p ? b.p : "");
	buf_reset(&b);
	if (root.type == JSON_OBJECT && json_obj_get(root, "error_description", &v) &&
	    !json_str_decode(v, &b))
		snprintf(d, sizeof d, ": %.*s", (int)b.n, b.p ? b.p : "");
	buf_clear(&b);
	snprintf(why, why_n, "token endpoint answered %ld%s%s%s", status, *e ? " " : "", e, d);
}

int gcp_token_parse(long status, struct str body, struct buf *token, int64_t *expires_in,
		    char *why, size_t why_n)
{
	struct json_val root = { 0 }, v;
	bool json_ok = !json_parse(body.p, body.n, &root, NULL) && root.type == JSON_OBJECT;
	if (status != 200) {
		oauth_error(json_ok ? root : (struct json_val){ 0 }, status, why, why_n);
		return UMB_ERR;
	}
	if (!json_ok) {
		snprintf(why, why_n, "token endpoint answered 200 with a body that is not JSON");
		return UMB_ERR;
	}
	if (json_obj_get(root, "token_type", &v) && v.type == JSON_STRING &&
	    !json_str_eq(v, "Bearer") && !json_str_eq(v, "bearer")) {
		snprintf(why, why_n, "token endpoint issued a token of another type than Bearer");
		return UMB_ERR;
	}
	int64_t exp = 0;
	if (!json_obj_get(root, "expires_in", &v) || json_get_i64(v, &exp) || exp <= 0 ||
	    exp > 7 * 86400) {
		snprintf(why, why_n, "token endpoint answer has no valid expires_in");
		return UMB_ERR;
	}
	size_t n0 = token->n;
	if (!json_obj_get(root, "access_token", &v) || json_str_decode(v, token) ||
	    token->n == n0 || token->n - n0 > GCP_TOKEN_MAX) {
		token->n = n0;
		snprintf(why, why_n, "token endpoint answer has no valid access_token");
		return UMB_ERR;
	}
	/* the token goes into a header line: nothing but visible ASCII */
	for (size_t i = n0; i < token->n; i++)
		if ((unsigned char)token->p[i] <= 0x20 || (unsigned char)token->p[i] >= 0x7f) {
			OPENSSL_cleanse(token->p + n0, token->n - n0);
			token->n = n0;
			snprintf(why, why_n, "token endpoint issued a token with bytes a header cannot carry");
			return UMB_ERR;
		}
	*expires_in = exp;
	return UMB_OK;
}

static size_t curl_body_cb(char *p, size_t sz, size_t n, void *ud)
{
	return buf_append(ud, p, sz * n) ? 0 : sz * n; /* over the cap: abort */
}

int gcp_token_fetch(const char *credentials_file, const char *ca_file, int connect_timeout_ms,
		    int64_t now_s, struct buf *token, int64_t *expires_in, char *why, size_t why_n)
{
	struct gcp_sa sa;
	struct buf jwt, form, answer;
	struct curl_slist *h = NULL;
	CURL *c = NULL;
	int rc = UMB_ERR;
	if (gcp_sa_load(credentials_file, &sa, why, why_n))
		return UMB_ERR;
	buf_init(&jwt, 0);
	buf_init(&form, 0);
	buf_init(&answer, GCP_ANSWER_MAX);
	if (gcp_jwt_sign(&sa, now_s, &jwt) || gcp_token_form(buf_str(&jwt), &form)) {
		snprintf(why, why_n, "%s: cannot sign the JWT assertion", credentials_file);
		goto out;
	}
	c = curl_easy_init();
	if (!c) {
		snprintf(why, why_n, "curl_easy_init failed");
		goto out;
	}
	h = curl_slist_append(h, "Content-Type: application/x-www-form-urlencoded");
	h = curl_slist_append(h, "Accept: application/json");
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, sa.token_uri);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROXY, ""); /* like upstream requests: no proxy from the environment */
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect_timeout_ms > 0 ? connect_timeout_ms : 5000));
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)GCP_FETCH_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, form.p);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)form.n);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_body_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
	if (ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
	CURLcode cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		snprintf(why, why_n, "token endpoint %s: %s", sa.token_uri, curl_easy_strerror(cc));
		goto out;
	}
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	rc = gcp_token_parse(status, buf_str(&answer), token, expires_in, why, why_n);
out:
	curl_slist_free_all(h);
	if (c)
		curl_easy_cleanup(c);
	if (answer.p)
		OPENSSL_cleanse(answer.p, answer.n); /* it held the token */
	buf_clear(&jwt);
	buf_clear(&form);
	buf_clear(&answer);
	gcp_sa_clear(&sa);
	return rc;
}

/* ------------------------------------------------------------------ */
/* the cache                                                           */

/* One key file's token and its refresher. Every field is guarded by
 * g_mu; cv signals "the token or the fetch state changed" (and stop). */
struct gcp_entry {
	struct gcp_entry *next;
	char *file, *ca_file;
	int timeout_ms;
	pthread_cond_t cv;
	pthread_t thread;
	bool thread_up;
	char *token;                  /* heap; wiped when replaced */
	uint64_t obtained_ms, expires_ms; /* hooks' monotonic clock */
	uint64_t next_fetch_ms;       /* when the refresher fetches next */
	unsigned attempts, failures;  /* fetches done; consecutive failures */
	bool fetching;
	char last_error[256];
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gcp_entry *g_entries;
static bool g_stop;

static uint64_t default_mono_ms(void)
{
	return clock_mono_ns() / 1000000u;
}

static int64_t default_wall_s(void)
{
	return (int64_t)(clock_wall_ms() / 1000u);
}

static int default_fetch(void *ctx, const char *file, const char *ca_file, int timeout_ms,
			 int64_t now_s, struct buf *token, int64_t *expires_in, char *why,
			 size_t why_n)
{
	UMB_UNUSED(ctx);
	return gcp_token_fetch(file, ca_file, timeout_ms, now_s, token, expires_in, why, why_n);
}

static struct gcp_auth_hooks g_hooks = { default_mono_ms, default_wall_s, default_fetch, NULL };

void gcp_auth_set_hooks(const struct gcp_auth_hooks *h)
{
	pthread_mutex_lock(&g_mu);
	g_hooks.mono_ms = h && h->mono_ms ? h->mono_ms : default_mono_ms;
	g_hooks.wall_s = h && h->wall_s ? h->wall_s : default_wall_s;
	g_hooks.fetch = h && h->fetch ? h->fetch : default_fetch;
	g_hooks.ctx = h ? h->ctx : NULL;
	pthread_mutex_unlock(&g_mu);
}

/* A token's life in ms, and the two moments that matter: refresh when
 * GCP_REFRESH_MARGIN_S is left (half the life for short-lived tokens), and
 * stop using it a little before it expires (10 s, or a tenth of a short
 * life), so a request in flight does not arrive with a dead token. */
static uint64_t lifetime(const struct gcp_entry *e)
{
	return e->expires_ms - e->obtained_ms;
}

static uint64_t refresh_at(const struct gcp_entry *e)
{
	return e->expires_ms - UMB_MIN((uint64_t)GCP_REFRESH_MARGIN_S * 1000, lifetime(e) / 2);
}

static bool usable(const struct gcp_entry *e, uint64_t now)
{
	return e->token && now + UMB_MIN(10000u, lifetime(e) / 10) < e->expires_ms;
}

static void entry_set_token(struct gcp_entry *e, struct buf *tok, int64_t expires_in, uint64_t now)
{
	if (e->token) {
		OPENSSL_cleanse(e->token, strlen(e->token));
		free(e->token);
	}
	e->token = umb_strndup(tok->p, tok->n);
	e->obtained_ms = now;
	e->expires_ms = now + (uint64_t)expires_in * 1000u;
	e->next_fetch_ms = refresh_at(e);
	if (e->failures)
		log_info("vertex: access token for %s obtained after %u failed attempts", e->file,
			 e->failures);
	e->failures = 0;
	e->last_error[0] = 0;
}

static void entry_fail(struct gcp_entry *e, const char *why, uint64_t now)
{
	unsigned shift = UMB_MIN(e->failures, 6u);
	uint64_t backoff = UMB_MIN((uint64_t)GCP_BACKOFF_MIN_MS << shift, (uint64_t)GCP_BACKOFF_MAX_MS);
	e->failures++;
	e->next_fetch_ms = now + backoff;
	snprintf(e->last_error, sizeof e->last_error, "%s", why);
	/* once per run of failures; the rest at debug level */
	if (e->failures == 1)
		log_warn("vertex: cannot get an access token for %s: %s (retrying with backoff)",
			 e->file, why);
	else
		log_debug("vertex: access token for %s: attempt %u failed: %s", e->file,
			  e->failures, why);
}

/* Wait on e->cv for delay_ms of real time (at most 60 s, so a jump of
 * the hooks' clock is noticed), or until signalled. g_mu is held. */
static void entry_wait(struct gcp_entry *e, uint64_t delay_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	delay_ms = UMB_MIN(delay_ms, 60000u);
	ts.tv_sec += (time_t)(delay_ms / 1000);
	ts.tv_nsec += (long)(delay_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&e->cv, &g_mu, &ts);
}

/* The refresher: fetch when due, sleep until the next due time or a
 * getter's signal. The fetch itself runs without the lock. */
static void *refresher_main(void *arg)
{
	struct gcp_entry *e = arg;
	struct buf tok;
	buf_init(&tok, 0);
	pthread_mutex_lock(&g_mu);
	while (!g_stop) {
		uint64_t now = g_hooks.mono_ms();
		if (now < e->next_fetch_ms) {
			entry_wait(e, e->next_fetch_ms - now);
			continue;
		}
		struct gcp_auth_hooks h = g_hooks;
		e->fetching = true;
		pthread_mutex_unlock(&g_mu);

		char why[256] = "";
		int64_t expires_in = 0;
		buf_reset(&tok);
		int rc = h.fetch(h.ctx, e->file, e->ca_file, e->timeout_ms, h.wall_s(), &tok,
				 &expires_in, why, sizeof why);

		pthread_mutex_lock(&g_mu);
		e->fetching = false;
		e->attempts++;
		now = g_hooks.mono_ms();
		if (!rc && tok.n && expires_in > 0)
			entry_set_token(e, &tok, expires_in, now);
		else
			entry_fail(e, *why ? why : "token fetch failed", now);
		if (tok.p)
			OPENSSL_cleanse(tok.p, tok.n);
		pthread_cond_broadcast(&e->cv);
	}
	pthread_mutex_unlock(&g_mu);
	buf_clear(&tok);
	return NULL;
}

static bool str_same(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* The entry for (file, ca_file), created with its refresher on first use.
 * g_mu is held. NULL if the thread cannot start. */
static struct gcp_entry *entry_get(const char *file, const char *ca_file, int timeout_ms)
{
	for (struct gcp_entry *e = g_entries; e; e = e->next)
		if (!strcmp(e->file, file) && str_same(e->ca_file, ca_file))
			return e;
	struct gcp_entry *e = umb_calloc(1, sizeof *e);
	e->file = umb_strdup(file);
	e->ca_file = ca_file ? umb_strdup(ca_file) : NULL;
	e->timeout_ms = timeout_ms;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* the refresher takes no signals: they belong to the main loop */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&e->thread, NULL, refresher_main, e);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		log_error("vertex: cannot start the token refresher for %s: %s", file, strerror(rc));
		pthread_cond_destroy(&e->cv);
		free(e->file);
		free(e->ca_file);
		free(e);
		return NULL;
	}
	e->thread_up = true;
	e->next = g_entries;
	g_entries = e;
	return e;
}

int gcp_auth_token(struct arena *a, const char *credentials_file, const char *ca_file,
		   int wait_ms, const char **token, char *why, size_t why_n)
{
	int rc = UMB_ERR;
	pthread_mutex_lock(&g_mu);
	struct gcp_entry *e = g_stop ? NULL : entry_get(credentials_file, ca_file, wait_ms);
	if (!e) {
		snprintf(why, why_n, "no token refresher for %s", credentials_file);
		goto out;
	}
	uint64_t now = g_hooks.mono_ms();
	/* due for a refresh, or nothing usable: make sure the refresher is
	 * awake (it sleeps until its own due time) */
	if (!usable(e, now) || now >= e->next_fetch_ms)
		pthread_cond_broadcast(&e->cv);
	if (!usable(e, now) && (e->fetching || e->attempts == 0) && wait_ms > 0) {
		/* the first token, or one being fetched right now: wait a
		 * bounded time for it (real time, whatever the hooks' clock) */
		uint64_t deadline = clock_mono_ns() / 1000000u + (uint64_t)wait_ms;
		unsigned attempts = e->attempts;
		while (!g_stop && !usable(e, g_hooks.mono_ms()) && e->attempts == attempts) {
			uint64_t t = clock_mono_ns() / 1000000u;
			if (t >= deadline)
				break;
			entry_wait(e, deadline - t);
		}
		now = g_hooks.mono_ms();
	}
	if (usable(e, now)) {
		*token = arena_strndup(a, e->token, strlen(e->token));
		rc = UMB_OK;
	} else if (e->last_error[0]) {
		snprintf(why, why_n, "no access token for %s: %s", credentials_file, e->last_error);
	} else {
		snprintf(why, why_n, "no access token for %s yet", credentials_file);
	}
out:
	pthread_mutex_unlock(&g_mu);
	return rc;
}

void gcp_auth_shutdown(void)
{
	pthread_mutex_lock(&g_mu);
	g_stop = true;
	for (struct gcp_entry *e = g_entries; e; e = e->next)
		pthread_cond_broadcast(&e->cv);
	struct gcp_entry *list = g_entries;
	g_entries = NULL;
	pthread_mutex_unlock(&g_mu);
	for (struct gcp_entry *e = list; e; e = e->next)
		if (e->thread_up)
			pthread_join(e->thread, NULL);
	while (list) {
		struct gcp_entry *e = list;
		list = e->next;
		if (e->token) {
			OPENSSL_cleanse(e->token, strlen(e->token));
			free(e->token);
		}
		pthread_cond_destroy(&e->cv);
		free(e->file);
		free(e->ca_file);
		free(e);
	}
	pthread_mutex_lock(&g_mu);
	g_stop = false;
	pthread_mutex_unlock(&g_mu);
}
