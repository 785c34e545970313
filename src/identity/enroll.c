/* enroll.c — the device side of enrollment: `umbra enroll TOKEN`.
 *
 * The token is decoded without trusting it (we have no CA yet); what it
 * gives us is the CA's SHA-256 fingerprint. Trust in the gateway comes
 * only from that pin: the TLS verify callback looks in the chain the
 * gateway presents for a CA certificate whose fingerprint equals the
 * token's ca_fp and verifies the gateway certificate against that CA alone
 * (system roots are never consulted). `umbra pki issue --kind gateway`
 * writes NAME.crt as leaf + CA so a gateway serving it sends the CA. The
 * token (a one-time secret) is sent only once that check has passed, and
 * the response's `ca` must hash to the same pin.
 *
 * The private key is made here, written 0600, and never sent anywhere. */
#include "identity/pki.h"
#include "identity/pki_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/json.h"

#define ENROLL_RESP_MAX (64 * 1024)
#define ENROLL_TIMEOUT_S 30L

int enroll_csr_make(EVP_PKEY *key, const char *name, struct buf *out_pem,
		    char *err)
{
	int rc = UMB_ERR;
	X509_REQ *req = X509_REQ_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_EXTENSION *ext = NULL;
	BIO *mem = NULL;
	char uri[64 + PKI_NAME_MAX];

	if (!name || !pki_name_valid(str_cstr(name))) {
		pki__err(err, "invalid identity name");
		goto out;
	}
	snprintf(uri, sizeof(uri), "URI:umbra://identity/%s", name);
	if (!req || !exts || X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
	    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN",
				       MBSTRING_UTF8,
				       (const unsigned char *)name, -1, -1,
				       0) != 1 ||
	    X509_REQ_set_pubkey(req, key) != 1)
		goto fail;
	/* The name is validated ([A-Za-z0-9._-]) so the config string is safe. */
	if (!(ext = X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, uri)) ||
	    !sk_X509_EXTENSION_push(exts, ext))
		goto fail;
	ext = NULL;
	char *p;
	long n;
	if (X509_REQ_add_extensions(req, exts) != 1 ||
	    X509_REQ_sign(req, key, EVP_sha256()) <= 0 ||
	    !(mem = BIO_new(BIO_s_mem())) || PEM_write_bio_X509_REQ(mem, req) != 1 ||
	    (n = BIO_get_mem_data(mem, &p)) <= 0 ||
	    buf_append(out_pem, p, (size_t)n))
		goto fail;
	rc = UMB_OK;
	goto out;
fail:
	pki__err(err, "building CSR failed");
out:
	X509_EXTENSION_free(ext);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	BIO_free(mem);
	ERR_clear_error();
	return rc;
}

static X509 *pem_to_x509(struct str pem)
{
	BIO *b = BIO_new_mem_buf(pem.p, (int)pem.n);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	return x;
}

/* Decode a string member of a JSON object into b; UMB_ERR if absent. */
static int member_str(struct json_val obj, const char *key, struct buf *b)
{
	struct json_val v;
	return json_obj_get(obj, key, &v) && v.type == JSON_STRING ?
		       json_str_decode(v, b) :
		       UMB_ERR;
}

int enroll_response_check(struct str body,
			  const struct pki_token_claims *claims, EVP_PKEY *key,
			  struct buf *cert_pem, struct buf *ca_pem, char *err)
{
	int rc = UMB_ERR;
	struct json_val root;
	X509 *cert = NULL, *ca = NULL;
	X509_STORE *st = NULL;
	char fp[65];
	struct pki_identity id;

	if (json_parse(body.p, body.n, &root, NULL) || root.type != JSON_OBJECT) {
		pki__err(err, "enroll response is not a JSON object");
		goto out;
	}
	if (member_str(root, "certificate", cert_pem) ||
	    member_str(root, "ca", ca_pem)) {
		pki__err(err, "enroll response lacks \"certificate\" or \"ca\"");
		goto out;
	}
	if (!(ca = pem_to_x509(buf_str(ca_pem))) || pki_cert_fp(ca, fp) ||
	    strcmp(fp, claims->ca_fp) != 0) {
		pki__err(err, "the CA in the response does not match the token's fingerprint");
		goto out;
	}
	if (!(cert = pem_to_x509(buf_str(cert_pem)))) {
		pki__err(err, "the response certificate is not PEM");
		goto out;
	}
	if (!(st = pki_store_new(ca)) ||
	    pki_verify_cert(st, cert, NULL, time(NULL), X509_PURPOSE_SSL_CLIENT,
			    &id, err))
		goto out;
	if (strcmp(id.name, claims->sub) != 0 || id.kind != claims->kind) {
		pki__err(err, "the certificate is for '%s' (%s), not '%s' (%s)",
			 id.name, pki_kind_name(id.kind), claims->sub,
			 pki_kind_name(claims->kind));
		goto out;
	}
	if (EVP_PKEY_eq(X509_get0_pubkey(cert), key) != 1) {
		pki__err(err, "the certificate does not carry this device's key");
		goto out;
	}
	rc = UMB_OK;
out:
	X509_free(cert);
	X509_free(ca);
	X509_STORE_free(st);
	ERR_clear_error();
	return rc;
}

/* ---- the pinned HTTPS POST ---- */

struct pin {
	const char *fp;
	char err[PKI_ERR_LEN];
};

/* Replaces OpenSSL's chain verification for this connection: the only
 * trust anchor is a CA from the presented chain with the pinned hash. */
static int pin_verify_cb(X509_STORE_CTX *ctx, void *arg)
{
	struct pin *pin = arg;
	X509 *leaf = X509_STORE_CTX_get0_cert(ctx);
	STACK_OF(X509) *chain = X509_STORE_CTX_get0_untrusted(ctx);
	X509 *anchor = NULL;
	X509_STORE *st = NULL;
	struct pki_identity id;
	char fp[65];
	int ok = 0;

	for (int i = 0; chain && i < sk_X509_num(chain) && !anchor; i++) {
		X509 *c = sk_X509_value(chain, i);
		if (pki_cert_fp(c, fp) == 0 && strcmp(fp, pin->fp) == 0 &&
		    X509_check_ca(c) == 1)
			anchor = c;
	}
	if (!anchor) {
		pki__err(pin->err, "the gateway did not present the umbra CA named by the token (serve tls.cert as leaf + CA)");
		X509_STORE_CTX_set_error(ctx, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
		goto out;
	}
	if (!(st = pki_store_new(anchor)) ||
	    pki_verify_cert(st, leaf, chain, time(NULL), X509_PURPOSE_SSL_SERVER,
			    &id, pin->err)) {
		X509_STORE_CTX_set_error(ctx, X509_V_ERR_CERT_UNTRUSTED);
		goto out;
	}
	if (id.kind != PKI_KIND_GATEWAY) {
		pki__err(pin->err, "the server certificate is not an umbra gateway (kind %s)",
			 pki_kind_name(id.kind));
		X509_STORE_CTX_set_error(ctx, X509_V_ERR_CERT_UNTRUSTED);
		goto out;
	}
	X509_STORE_CTX_set_error(ctx, X509_V_OK);
	ok = 1;
out:
	X509_STORE_free(st);
	return ok;
}

static CURLcode ssl_ctx_cb(CURL *c, void *sslctx, void *arg)
{
	UMB_UNUSED(c);
	SSL_CTX_set_cert_verify_callback(sslctx, pin_verify_cb, arg);
	return CURLE_OK;
}

static size_t write_cb(char *p, size_t sz, size_t n, void *arg)
{
	/* Returning short makes curl abort the transfer at the cap. */
	return buf_append(arg, p, sz * n) ? 0 : sz * n;
}

static int http_post(const char *url, const char *ca_fp, struct str body,
		     struct buf *resp, long *status, char *err)
{
	int rc = UMB_ERR;
	struct pin pin = { .fp = ca_fp };
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	CURL *c = curl_easy_init();
	char ebuf[CURL_ERROR_SIZE] = "";

	if (!c || !hdr) {
		pki__err(err, "curl init failed");
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.p);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.n);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, ENROLL_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
	curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, &pin);
	CURLcode cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		pki__err(err, "POST %s: %s%s%s", url, pin.err[0] ? pin.err : "",
			 pin.err[0] ? ": " : "", ebuf[0] ? ebuf : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	rc = UMB_OK;
out:
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	return rc;
}

static int write_file_excl(const char *path, mode_t mode, struct str data,
			   char *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		pki__err(err, "%s: %s", path, strerror(errno));
		return UMB_ERR;
	}
	ssize_t w = fchmod(fd, mode) == 0 ? write(fd, data.p, data.n) : -1;
	if (close(fd) != 0 || w != (ssize_t)data.n) {
		pki__err(err, "%s: write failed", path);
		unlink(path);
		return UMB_ERR;
	}
	return UMB_OK;
}

/* The server's error message, if it sent a JSON error body. */
static void resp_error(struct str body, char *out, size_t cap)
{
	struct json_val root, e, m;
	struct buf b;
	buf_init(&b, cap - 1);
	out[0] = 0;
	if (json_parse(body.p, body.n, &root, NULL) == 0 &&
	    root.type == JSON_OBJECT && json_obj_get(root, "error", &e) &&
	    ((e.type == JSON_OBJECT && json_obj_get(e, "message", &m)) ||
	     (m = e, e.type == JSON_STRING)) &&
	    json_str_decode(m, &b) == 0 && b.n)
		snprintf(out, cap, "%s", b.p);
	buf_clear(&b);
}

int enroll_run(const char *token, const char *url, const char *out_dir,
	       char *err)
{
	int rc = UMB_ERR;
	struct pki_token_claims c;
	EVP_PKEY *key = NULL;
	struct buf csr, body, resp, cert_pem, ca_pem, full_url;
	char *key_path = NULL, *crt_path = NULL, *ca_path = NULL;
	bool key_written = false, crt_written = false;
	long status = 0;
	struct stat st;

	buf_init(&csr, PKI_CSR_MAX);
	buf_init(&body, PKI_CSR_MAX * 2 + PKI_TOKEN_MAX);
	buf_init(&resp, ENROLL_RESP_MAX);
	buf_init(&cert_pem, ENROLL_RESP_MAX);
	buf_init(&ca_pem, ENROLL_RESP_MAX);
	buf_init(&full_url, 4096);
	if (pki_token_decode_unverified(str_cstr(token), &c, err))
		goto out;
	if (!url || !*url)
		url = c.gw;
	if (strncmp(url, "https://", 8) != 0) {
		pki__err(err, "gateway URL must be https:// (got '%s')", url);
		goto out;
	}
	size_t ul = strlen(url);
	while (ul > 8 && url[ul - 1] == '/')
		ul--;
	if (buf_printf(&full_url, "%.*s/enroll", (int)ul, url)) {
		pki__err(err, "gateway URL too long");
		goto out;
	}
	if (mkdir(out_dir, 0700) != 0 && errno != EEXIST) {
		pki__err(err, "%s: %s", out_dir, strerror(errno));
		goto out;
	}
	key_path = umb_malloc(strlen(out_dir) + PKI_NAME_MAX + 8);
	crt_path = umb_malloc(strlen(out_dir) + PKI_NAME_MAX + 8);
	ca_path = umb_malloc(strlen(out_dir) + 8);
	sprintf(key_path, "%s/%s.key", out_dir, c.sub);
	sprintf(crt_path, "%s/%s.crt", out_dir, c.sub);
	sprintf(ca_path, "%s/ca.crt", out_dir);
	/* Check before spending the one-time token on files we cannot write. */
	if (stat(key_path, &st) == 0 || stat(crt_path, &st) == 0) {
		pki__err(err, "%s already holds an identity '%s' (refusing to overwrite)",
			 out_dir, c.sub);
		goto out;
	}
	if (!(key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) ||
	    enroll_csr_make(key, c.sub, &csr, err)) {
		pki__err(err, "key or CSR generation failed");
		goto out;
	}
	if (buf_append_lit(&body, "{\"token\":") || json_write_cstr(&body, token) ||
	    buf_append_lit(&body, ",\"csr\":") || json_write_str(&body, buf_str(&csr)) ||
	    buf_append_lit(&body, "}")) {
		pki__err(err, "request too large");
		goto out;
	}
	if (http_post(full_url.p, c.ca_fp, buf_str(&body), &resp, &status, err))
		goto out;
	if (status != 200) {
		char why[200];
		resp_error(buf_str(&resp), why, sizeof(why));
		pki__err(err, "gateway refused enrollment: HTTP %ld%s%s", status,
			 why[0] ? ": " : "", why);
		goto out;
	}
	if (enroll_response_check(buf_str(&resp), &c, key, &cert_pem, &ca_pem, err))
		goto out;
	BIO *kb = BIO_new(BIO_s_mem());
	char *kp;
	long kn;
	int kok = kb && PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) == 1 &&
		  (kn = BIO_get_mem_data(kb, &kp)) > 0 &&
		  write_file_excl(key_path, 0600, str_make(kp, (size_t)kn), err) == 0;
	BIO_free(kb);
	if (!kok) {
		if (err && !err[0])
			pki__err(err, "writing %s failed", key_path);
		goto out;
	}
	key_written = true;
	if (write_file_excl(crt_path, 0644, buf_str(&cert_pem), err))
		goto out;
	crt_written = true;
	/* An existing ca.crt is fine when it is the same CA. */
	if (write_file_excl(ca_path, 0644, buf_str(&ca_pem), err)) {
		FILE *f = fopen(ca_path, "r");
		X509 *old = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
		char fp[65];
		bool same = old && pki_cert_fp(old, fp) == 0 && strcmp(fp, c.ca_fp) == 0;
		X509_free(old);
		if (f)
			fclose(f);
		if (!same)
			goto out;
		if (err)
			err[0] = 0;
	}
	printf("enrolled '%s' (%s): %s, %s, %s\n", c.sub, pki_kind_name(c.kind),
	       crt_path, key_path, ca_path);
	rc = UMB_OK;
out:
	if (rc && crt_written)
		unlink(crt_path);
	if (rc && key_written)
		unlink(key_path);
	EVP_PKEY_free(key);
	buf_clear(&csr);
	buf_clear(&body);
	buf_clear(&resp);
	buf_clear(&cert_pem);
	buf_clear(&ca_pem);
	buf_clear(&full_url);
	free(key_path);
	free(crt_path);
	free(ca_path);
	ERR_clear_error();
	return rc;
}

static int enroll_usage(void)
{
	fprintf(stderr, "usage: umbra enroll TOKEN [--gateway URL] --out DIR\n"
			"  makes a key on this device, sends a CSR to URL/enroll and\n"
			"  writes DIR/NAME.crt, DIR/NAME.key and DIR/ca.crt\n");
	return 2;
}

int enroll_cmd_main(int argc, char **argv)
{
	const char *token = NULL, *gw = NULL, *out = NULL;
	char err[PKI_ERR_LEN] = "";

	/* argv[0] may be "enroll" (as main.c dispatches) or the token. */
	int i = argc > 0 && strcmp(argv[0], "enroll") == 0 ? 1 : 0;
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--gateway") == 0 && i + 1 < argc)
			gw = argv[++i];
		else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
			out = argv[++i];
		else if (argv[i][0] == '-' || token)
			return enroll_usage();
		else
			token = argv[i];
	}
	if (!token || !out)
		return enroll_usage();
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int rc = enroll_run(token, gw, out, err);
	if (rc)
		fprintf(stderr, "umbra enroll: %s\n", err[0] ? err : "failed");
	return rc ? 1 : 0;
}
