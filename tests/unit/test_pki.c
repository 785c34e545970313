/* test_pki.c — the built-in CA end to end: CA and identity certificate
 * fields checked with OpenSSL (plus one `openssl verify` cross-check),
 * certificate -> identity, chain verification against the right and a
 * wrong CA, enrollment tokens (round trip and every refusal), CSR signing
 * for POST /enroll, the client's response checks, and a real enrollment
 * over TLS against an in-process server holding a gateway certificate. */
#include "identity/pki.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/json.h"

static char tmp_root[] = "/tmp/umbra-pki-XXXXXX";
static int dir_seq;

/* A fresh directory under the run's temp root. */
static char *dir_new(void)
{
	char *d = malloc(strlen(tmp_root) + 16);
	sprintf(d, "%s/d%d", tmp_root, dir_seq++);
	assert_int_equal(mkdir(d, 0700), 0);
	return d;
}

static X509 *cert_read(const char *dir, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s.crt", dir, name);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	return x;
}

static mode_t file_mode(const char *dir, const char *file)
{
	char path[512];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 0777;
}

/* A CA in a fresh dir, loaded. */
static char *ca_make(struct pki_ca *ca)
{
	char err[PKI_ERR_LEN];
	char *d = dir_new();
	assert_int_equal(pki_ca_create(d, time(NULL), err), 0);
	assert_int_equal(pki_ca_load(d, ca, err), 0);
	return d;
}

static int64_t asn1_time_unix(const ASN1_TIME *t)
{
	struct tm tm;
	assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
	return (int64_t)timegm(&tm);
}

static bool san_has(X509 *x, int type, const char *val)
{
	GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	bool found = false;
	for (int i = 0; g && i < sk_GENERAL_NAME_num(g); i++) {
		GENERAL_NAME *n = sk_GENERAL_NAME_value(g, i);
		if (n->type != type)
			continue;
		ASN1_STRING *s = n->d.ia5; /* same layout for IP (octets) */
		if (type == GEN_IPADD) {
			unsigned char ip[16];
			int len = inet_pton(AF_INET, val, ip) == 1 ? 4 : 16;
			if (len == 16)
				inet_pton(AF_INET6, val, ip);
			found |= ASN1_STRING_length(s) == len &&
				 memcmp(ASN1_STRING_get0_data(s), ip, (size_t)len) == 0;
		} else {
			found |= (size_t)ASN1_STRING_length(s) == strlen(val) &&
				 memcmp(ASN1_STRING_get0_data(s), val, strlen(val)) == 0;
		}
	}
	GENERAL_NAMES_free(g);
	return found;
}

static void subject_get(X509 *x, int nid, char *out, size_t cap)
{
	out[0] = 0;
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), nid, out, (int)cap);
}

/* ---- CA ---- */

static void test_ca_init(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca;
	time_t now = time(NULL);
	char *d = dir_new();

	assert_int_equal(pki_ca_create(d, now, err), 0);
	assert_int_equal(file_mode(d, "ca.key"), 0600);
	assert_int_equal(pki_ca_load(d, &ca, err), 0);
	X509 *x = ca.cert;
	assert_int_equal(X509_check_ca(x), 1);
	BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
	assert_non_null(bc);
	assert_true(bc->ca);
	BASIC_CONSTRAINTS_free(bc);
	uint32_t ku = X509_get_key_usage(x);
	assert_true(ku & KU_KEY_CERT_SIGN);
	assert_true(ku & KU_CRL_SIGN);
	assert_false(ku & KU_DIGITAL_SIGNATURE);
	assert_non_null(X509_get0_subject_key_id(x));
	int64_t nb = asn1_time_unix(X509_get0_notBefore(x));
	int64_t na = asn1_time_unix(X509_get0_notAfter(x));
	assert_int_equal(nb, now - PKI_SKEW_S);
	assert_true(na - now >= 10LL * 365 * 86400);
	assert_true(na - now <= 10LL * 366 * 86400);
	char grp[32];
	size_t gl;
	assert_int_equal(EVP_PKEY_get_group_name(ca.key, grp, sizeof(grp), &gl), 1);
	assert_string_equal(grp, "prime256v1");
	assert_int_equal(strlen(ca.fp), 64);
	/* Self-signed and verifies against itself. */
	X509_STORE *st = pki_store_new(x);
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509_STORE_CTX_init(ctx, st, x, NULL);
	assert_int_equal(X509_verify_cert(ctx), 1);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	/* Never overwritten. */
	assert_int_not_equal(pki_ca_create(d, now, err), 0);
	assert_non_null(strstr(err, "refusing to overwrite"));
	struct pki_ca again;
	assert_int_equal(pki_ca_load(d, &again, err), 0);
	assert_string_equal(again.fp, ca.fp);
	pki_ca_clear(&again);
	pki_ca_clear(&ca);
	free(d);
}

/* ---- issue ---- */

static void test_issue_client_fields(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN], buf[128];
	struct pki_ca ca;
	struct pki_identity id;
	time_t now = time(NULL);
	char *d = ca_make(&ca);
	struct pki_issue_opts o = { .name = "alice", .kind = PKI_KIND_CLIENT,
				    .team = "engineering",
				    .lifetime_s = PKI_CERT_LIFETIME_S };

	assert_int_equal(pki_issue_files(&ca, d, &o, now, &id, err), 0);
	assert_int_equal(file_mode(d, "alice.key"), 0600);
	X509 *x = cert_read(d, "alice");
	subject_get(x, NID_commonName, buf, sizeof(buf));
	assert_string_equal(buf, "alice");
	subject_get(x, NID_organizationalUnitName, buf, sizeof(buf));
	assert_string_equal(buf, "engineering");
	assert_true(san_has(x, GEN_URI, "umbra://identity/alice"));
	assert_true(san_has(x, GEN_URI, "umbra://kind/client"));
	uint32_t xku = X509_get_extended_key_usage(x);
	assert_true(xku & XKU_SSL_CLIENT);
	assert_false(xku & XKU_SSL_SERVER);
	assert_int_equal(X509_check_ca(x), 0);
	/* AKI names the CA's SKI. */
	const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
	assert_non_null(aki);
	assert_int_equal(ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(ca.cert)), 0);
	assert_non_null(X509_get0_subject_key_id(x));
	/* 128-bit positive serial. */
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	assert_false(BN_is_negative(bn));
	assert_int_equal(BN_num_bytes(bn), 16);
	BN_free(bn);
	assert_int_equal(asn1_time_unix(X509_get0_notBefore(x)), now - 300);
	assert_int_equal(asn1_time_unix(X509_get0_notAfter(x)), now + 90 * 86400);
	EVP_PKEY *pk = X509_get0_pubkey(x);
	char grp[32];
	size_t gl;
	assert_int_equal(EVP_PKEY_get_group_name(pk, grp, sizeof(grp), &gl), 1);
	assert_string_equal(grp, "prime256v1");
	/* The returned identity is what the store should register. */
	assert_string_equal(id.name, "alice");
	assert_int_equal(id.kind, PKI_KIND_CLIENT);
	assert_string_equal(id.team, "engineering");
	assert_int_equal(id.not_after, now + 90 * 86400);
	char fp[65];
	assert_int_equal(pki_cert_fp(x, fp), 0);
	assert_string_equal(id.fp, fp);
	/* Independent cross-check with the openssl tool. */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "openssl verify -purpose sslclient -CAfile %s/ca.crt %s/alice.crt >/dev/null 2>&1",
		 d, d);
	assert_int_equal(system(cmd), 0);
	/* The key on disk matches the certificate. */
	char path[512];
	snprintf(path, sizeof(path), "%s/alice.key", d);
	FILE *f = fopen(path, "r");
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	assert_int_equal(X509_check_private_key(x, k), 1);
	EVP_PKEY_free(k);
	/* No team: no OU. */
	struct pki_issue_opts o2 = { .name = "bob", .kind = PKI_KIND_CLIENT,
				     .lifetime_s = 3600 };
	assert_int_equal(pki_issue_files(&ca, d, &o2, now, &id, err), 0);
	X509 *y = cert_read(d, "bob");
	assert_int_equal(X509_NAME_get_index_by_NID(X509_get_subject_name(y),
						    NID_organizationalUnitName, -1), -1);
	assert_string_equal(id.team, "");
	X509_free(y);
	X509_free(x);
	pki_ca_clear(&ca);
	free(d);
}

static void test_issue_kinds(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca;
	struct pki_identity id;
	time_t now = time(NULL);
	char *d = ca_make(&ca);
	static const char *const kinds[] = { "client", "connector", "gateway", "admin" };

	for (int k = 0; k < 4; k++) {
		enum pki_kind kind;
		assert_int_equal(pki_kind_parse(kinds[k], &kind), 0);
		assert_string_equal(pki_kind_name(kind), kinds[k]);
		char name[32], uri[64];
		snprintf(name, sizeof(name), "id-%s", kinds[k]);
		struct pki_issue_opts o = { .name = name, .kind = kind, .lifetime_s = 86400 };
		assert_int_equal(pki_issue_files(&ca, d, &o, now, &id, err), 0);
		assert_int_equal(id.kind, kind);
		X509 *x = cert_read(d, name);
		snprintf(uri, sizeof(uri), "umbra://kind/%s", kinds[k]);
		assert_true(san_has(x, GEN_URI, uri));
		uint32_t xku = X509_get_extended_key_usage(x);
		assert_true(xku & XKU_SSL_CLIENT);
		assert_int_equal(!!(xku & XKU_SSL_SERVER), kind == PKI_KIND_GATEWAY);
		X509_free(x);
	}
	enum pki_kind kk;
	assert_int_not_equal(pki_kind_parse("root", &kk), 0);
	assert_int_not_equal(pki_kind_parse("", &kk), 0);
	pki_ca_clear(&ca);
	free(d);
}

static void test_issue_gateway_names(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca;
	char *d = ca_make(&ca);
	const char *dns[] = { "gw.example.com", "localhost" };
	const char *ip[] = { "127.0.0.1", "::1" };
	struct pki_issue_opts o = { .name = "gw1", .kind = PKI_KIND_GATEWAY,
				    .lifetime_s = 86400, .dns = dns, .n_dns = 2,
				    .ip = ip, .n_ip = 2 };

	assert_int_equal(pki_issue_files(&ca, d, &o, time(NULL), NULL, err), 0);
	X509 *x = cert_read(d, "gw1");
	assert_true(san_has(x, GEN_DNS, "gw.example.com"));
	assert_true(san_has(x, GEN_DNS, "localhost"));
	assert_true(san_has(x, GEN_IPADD, "127.0.0.1"));
	assert_true(san_has(x, GEN_IPADD, "::1"));
	assert_true(san_has(x, GEN_URI, "umbra://identity/gw1"));
	assert_int_equal(X509_check_host(x, "gw.example.com", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
	X509_free(x);
	/* The file is a chain: leaf, then the CA (TLS sends both). */
	char path[512];
	snprintf(path, sizeof(path), "%s/gw1.crt", d);
	FILE *f = fopen(path, "r");
	X509 *a = PEM_read_X509(f, NULL, NULL, NULL), *b = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(X509_cmp(b, ca.cert), 0);
	X509_free(a);
	X509_free(b);
	ERR_clear_error();
	/* Names a comma could smuggle, bad IPs, names on non-gateways. */
	const char *bad_dns[] = { "a.com,URI:umbra://identity/root" };
	struct pki_issue_opts o2 = { .name = "gw2", .kind = PKI_KIND_GATEWAY,
				     .lifetime_s = 86400, .dns = bad_dns, .n_dns = 1 };
	assert_int_not_equal(pki_issue_files(&ca, d, &o2, time(NULL), NULL, err), 0);
	assert_non_null(strstr(err, "invalid DNS"));
	const char *bad_ip[] = { "300.1.1.1" };
	struct pki_issue_opts o3 = { .name = "gw3", .kind = PKI_KIND_GATEWAY,
				     .lifetime_s = 86400, .ip = bad_ip, .n_ip = 1 };
	assert_int_not_equal(pki_issue_files(&ca, d, &o3, time(NULL), NULL, err), 0);
	struct pki_issue_opts o4 = { .name = "cl", .kind = PKI_KIND_CLIENT,
				     .lifetime_s = 86400, .dns = dns, .n_dns = 1 };
	assert_int_not_equal(pki_issue_files(&ca, d, &o4, time(NULL), NULL, err), 0);
	/* Failed issues leave no files behind. */
	snprintf(path, sizeof(path), "%s/gw2.key", d);
	assert_int_not_equal(access(path, F_OK), 0);
	pki_ca_clear(&ca);
	free(d);
}

static void test_issue_refusals(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca;
	char *d = ca_make(&ca);
	char long_name[80];
	memset(long_name, 'a', 65);
	long_name[65] = 0;
	const char *bad[] = { "", "a/b", "../x", "..", ".", "a b", "ca", long_name, "é" };

	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		struct pki_issue_opts o = { .name = bad[i], .kind = PKI_KIND_CLIENT,
					    .lifetime_s = 86400 };
		assert_int_not_equal(pki_issue_files(&ca, d, &o, time(NULL), NULL, err), 0);
	}
	long_name[64] = 0;
	assert_true(pki_name_valid(str_cstr(long_name)));
	assert_true(pki_name_valid(STR("svc_A-1.b")));
	struct pki_issue_opts t = { .name = "x", .kind = PKI_KIND_CLIENT,
				    .team = "bad team", .lifetime_s = 86400 };
	assert_int_not_equal(pki_issue_files(&ca, d, &t, time(NULL), NULL, err), 0);
	struct pki_issue_opts o = { .name = "carol", .kind = PKI_KIND_CLIENT,
				    .lifetime_s = 86400 };
	assert_int_equal(pki_issue_files(&ca, d, &o, time(NULL), NULL, err), 0);
	assert_int_not_equal(pki_issue_files(&ca, d, &o, time(NULL), NULL, err), 0);
	assert_non_null(strstr(err, "refusing to overwrite"));
	pki_ca_clear(&ca);
	free(d);
}

static void test_lifetime_parse(void **state)
{
	UMB_UNUSED(state);
	int64_t s;
	assert_int_equal(pki_lifetime_parse("90d", &s), 0);
	assert_int_equal(s, 90 * 86400);
	assert_int_equal(pki_lifetime_parse("4h", &s), 0);
	assert_int_equal(s, 4 * 3600);
	assert_int_equal(pki_lifetime_parse("30m", &s), 0);
	assert_int_equal(s, 1800);
	assert_int_equal(pki_lifetime_parse("45s", &s), 0);
	assert_int_equal(s, 45);
	const char *bad[] = { "", "90", "0d", "d", "-1d", "4x", "500ms", "99999999d", "4 h" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++)
		assert_int_not_equal(pki_lifetime_parse(bad[i], &s), 0);
}

/* ---- identity and verification ---- */

static void test_identity_roundtrip_and_list(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca;
	struct pki_identity issued, read, *ids;
	size_t n;
	time_t now = time(NULL);
	char *d = ca_make(&ca);
	struct pki_issue_opts a = { .name = "zed", .kind = PKI_KIND_CONNECTOR,
				    .team = "ops", .lifetime_s = 4 * 3600 };
	struct pki_issue_opts b = { .name = "amy", .kind = PKI_KIND_ADMIN,
				    .lifetime_s = 86400 };

	assert_int_equal(pki_issue_files(&ca, d, &a, now, &issued, err), 0);
	assert_int_equal(pki_issue_files(&ca, d, &b, now, NULL, err), 0);
	X509 *x = cert_read(d, "zed");
	assert_int_equal(pki_cert_identity(x, &read), 0);
	assert_memory_equal(&issued, &read, sizeof(read));
	assert_string_equal(read.name, "zed");
	assert_int_equal(read.kind, PKI_KIND_CONNECTOR);
	assert_string_equal(read.team, "ops");
	assert_int_equal(read.not_after, now + 4 * 3600);
	/* CA has no umbra identity. */
	assert_int_not_equal(pki_cert_identity(ca.cert, &read), 0);
	assert_int_not_equal(pki_cert_identity(NULL, &read), 0);

	assert_int_equal(pki_list(d, &ids, &n, err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(ids[0].name, "amy");
	assert_int_equal(ids[0].kind, PKI_KIND_ADMIN);
	assert_string_equal(ids[1].name, "zed");
	assert_string_equal(ids[1].fp, issued.fp);
	free(ids);
	assert_int_not_equal(pki_list("/nonexistent/umbra", &ids, &n, err), 0);
	X509_free(x);
	pki_ca_clear(&ca);
	free(d);
}

static void test_verify_against_ca(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca1, ca2;
	struct pki_identity id;
	time_t now = time(NULL);
	char *d1 = ca_make(&ca1), *d2 = ca_make(&ca2);
	struct pki_issue_opts o = { .name = "dave", .kind = PKI_KIND_CLIENT,
				    .team = "t", .lifetime_s = 86400 };

	assert_int_equal(pki_issue_files(&ca1, d1, &o, now, NULL, err), 0);
	assert_int_equal(pki_issue_files(&ca2, d2, &o, now, NULL, err), 0);
	X509 *good = cert_read(d1, "dave"), *other = cert_read(d2, "dave");
	X509_STORE *st = pki_store_new(ca1.cert);
	assert_int_equal(pki_verify_cert(st, good, NULL, now, X509_PURPOSE_SSL_CLIENT, &id, err), 0);
	assert_string_equal(id.name, "dave");
	assert_string_equal(id.team, "t");
	/* Same name, another CA: refused. */
	assert_int_not_equal(pki_verify_cert(st, other, NULL, now, X509_PURPOSE_SSL_CLIENT, &id, err), 0);
	assert_non_null(strstr(err, "not trusted"));
	/* Expired and not-yet-valid. */
	assert_int_not_equal(pki_verify_cert(st, good, NULL, now + 2 * 86400, 0, &id, err), 0);
	assert_non_null(strstr(err, "expired"));
	assert_int_not_equal(pki_verify_cert(st, good, NULL, now - 3600, 0, &id, err), 0);
	/* A client certificate is not a TLS server. */
	assert_int_not_equal(pki_verify_cert(st, good, NULL, now, X509_PURPOSE_SSL_SERVER, &id, err), 0);
	X509_STORE_free(st);
	X509_free(good);
	X509_free(other);
	pki_ca_clear(&ca1);
	pki_ca_clear(&ca2);
	free(d1);
	free(d2);
}

/* ---- tokens ---- */

static void b64url(struct buf *b, const void *p, size_t n)
{
	unsigned char out[4096];
	int len = EVP_EncodeBlock(out, p, (int)n);
	for (int i = 0; i < len; i++) {
		if (out[i] == '=')
			break;
		char c = out[i] == '+' ? '-' : out[i] == '/' ? '_' : (char)out[i];
		buf_append(b, &c, 1);
	}
}

/* header.payload + the signature segment copied from a real token. */
static char *token_forge(const char *header, const char *payload, const char *sig)
{
	struct buf b;
	buf_init(&b, 0);
	b64url(&b, header, strlen(header));
	buf_append_lit(&b, ".");
	b64url(&b, payload, strlen(payload));
	buf_append_lit(&b, ".");
	buf_append_cstr(&b, sig);
	return b.p;
}

static void test_token_roundtrip(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca;
	struct pki_token_claims made, got, raw;
	struct buf tok;
	time_t now = time(NULL);
	char *d = ca_make(&ca);

	buf_init(&tok, PKI_TOKEN_MAX);
	assert_int_equal(pki_token_make(&ca, "erin", PKI_KIND_CONNECTOR, "ops",
					"https://gw.example:8443", PKI_TOKEN_LIFETIME_S,
					now, &tok, &made, err), 0);
	assert_null(strchr(tok.p, '='));
	assert_null(strchr(tok.p, '\n'));
	assert_int_equal(pki_token_verify(&ca, buf_str(&tok), now + 60, &got, err), 0);
	assert_memory_equal(&made, &got, sizeof(got));
	assert_string_equal(got.sub, "erin");
	assert_int_equal(got.kind, PKI_KIND_CONNECTOR);
	assert_string_equal(got.team, "ops");
	assert_string_equal(got.gw, "https://gw.example:8443");
	assert_string_equal(got.ca_fp, ca.fp);
	assert_int_equal(strlen(got.jti), 32);
	assert_int_equal(got.exp - got.iat, 24 * 3600);
	assert_int_equal(pki_token_decode_unverified(buf_str(&tok), &raw, err), 0);
	assert_memory_equal(&raw, &got, sizeof(got));
	/* The header is exactly the JOSE one. */
	const char *dot = strchr(tok.p, '.');
	struct buf h;
	buf_init(&h, 0);
	b64url(&h, "{\"alg\":\"ES256\",\"typ\":\"JWT\"}", 27);
	assert_int_equal((size_t)(dot - tok.p), h.n);
	assert_memory_equal(tok.p, h.p, h.n);
	buf_clear(&h);
	/* Two tokens never share a jti. */
	struct buf tok2;
	struct pki_token_claims c2;
	buf_init(&tok2, PKI_TOKEN_MAX);
	assert_int_equal(pki_token_make(&ca, "erin", PKI_KIND_CONNECTOR, NULL, NULL,
					3600, now, &tok2, &c2, err), 0);
	assert_string_not_equal(c2.jti, made.jti);
	assert_string_equal(c2.team, "");
	assert_string_equal(c2.gw, "");
	assert_int_equal(pki_token_verify(&ca, buf_str(&tok2), now, &got, err), 0);
	/* Bad inputs to make. */
	assert_int_not_equal(pki_token_make(&ca, "a/b", PKI_KIND_CLIENT, NULL, NULL, 3600, now, &tok2, NULL, err), 0);
	assert_int_not_equal(pki_token_make(&ca, "a", PKI_KIND_CLIENT, NULL, "http://x y", 3600, now, &tok2, NULL, err), 0);
	assert_int_not_equal(pki_token_make(&ca, "a", PKI_KIND_CLIENT, NULL, NULL, 0, now, &tok2, NULL, err), 0);
	buf_clear(&tok);
	buf_clear(&tok2);
	pki_ca_clear(&ca);
	free(d);
}

static void expect_refused(const struct pki_ca *ca, const char *tok, time_t now,
			   const char *why)
{
	char err[PKI_ERR_LEN] = "";
	struct pki_token_claims c;
	int rc = pki_token_verify(ca, str_cstr(tok), now, &c, err);
	if (rc == 0)
		fail_msg("token accepted, expected refusal (%s): %s", why, tok);
	assert_true(err[0] != 0);
	assert_string_equal(c.sub, ""); /* nothing leaks out on failure */
}

static void test_token_refusals(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca, other;
	struct buf tok, otok;
	time_t now = time(NULL);
	char *d = ca_make(&ca), *d2 = ca_make(&other);

	buf_init(&tok, PKI_TOKEN_MAX);
	buf_init(&otok, PKI_TOKEN_MAX);
	assert_int_equal(pki_token_make(&ca, "frank", PKI_KIND_CLIENT, NULL, NULL,
					PKI_TOKEN_LIFETIME_S, now, &tok, NULL, err), 0);
	assert_int_equal(pki_token_make(&other, "frank", PKI_KIND_CLIENT, NULL, NULL,
					PKI_TOKEN_LIFETIME_S, now, &otok, NULL, err), 0);
	const char *t = tok.p;
	const char *d1 = strchr(t, '.'), *dd2 = strrchr(t, '.');
	const char *sig = dd2 + 1;
	char payload[1024], *m;

	/* Tampered payload: same header and signature, claims re-encoded
	 * with another identity (and a kind upgrade). */
	struct buf pb;
	buf_init(&pb, 0);
	{
		unsigned char raw[1024];
		char b64[1024];
		size_t pn = (size_t)(dd2 - d1 - 1);
		memcpy(b64, d1 + 1, pn);
		b64[pn] = 0;
		for (size_t i = 0; i < pn; i++)
			b64[i] = b64[i] == '-' ? '+' : b64[i] == '_' ? '/' : b64[i];
		while (pn % 4)
			b64[pn++] = '=';
		b64[pn] = 0;
		int rn = EVP_DecodeBlock(raw, (unsigned char *)b64, (int)pn);
		assert_true(rn > 0);
		raw[rn] = 0;
		while (rn > 0 && raw[rn - 1] != '}')
			raw[--rn] = 0;
		snprintf(payload, sizeof(payload), "%s", (char *)raw);
	}
	assert_non_null(strstr(payload, "\"sub\":\"frank\""));
	char evil[1024];
	snprintf(evil, sizeof(evil), "%s", payload);
	memcpy(strstr(evil, "frank"), "franc", 5);
	m = token_forge("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", evil, sig);
	expect_refused(&ca, m, now, "tampered payload");
	free(m);
	/* The untampered payload re-encoded the same way still verifies
	 * (so the refusal above is the signature's doing). */
	m = token_forge("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", payload, sig);
	assert_int_equal(pki_token_verify(&ca, str_cstr(m), now, NULL, err), 0);
	free(m);

	/* Tampered signature: flip one character. */
	char *ts = strdup(t);
	char *sp = ts + (sig - t) + 5;
	*sp = *sp == 'A' ? 'B' : 'A';
	expect_refused(&ca, ts, now, "tampered signature");
	free(ts);
	/* alg none, with no signature and with the real one. */
	m = token_forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, "");
	expect_refused(&ca, m, now, "alg none, empty sig");
	free(m);
	m = token_forge("{\"alg\":\"none\"}", payload, sig);
	expect_refused(&ca, m, now, "alg none");
	free(m);
	m = token_forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, sig);
	expect_refused(&ca, m, now, "alg HS256");
	free(m);
	m = token_forge("{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"x\"}", payload, sig);
	expect_refused(&ca, m, now, "extra header member");
	free(m);
	m = token_forge("{\"alg\":\"ES256\",\"alg\":\"ES256\"}", payload, sig);
	expect_refused(&ca, m, now, "duplicate header member");
	free(m);
	/* Time: expired, and issued too far in the future. */
	expect_refused(&ca, t, now + PKI_TOKEN_LIFETIME_S, "expired");
	expect_refused(&ca, t, now + PKI_TOKEN_LIFETIME_S + 3600, "expired later");
	expect_refused(&ca, t, now - PKI_SKEW_S - 10, "from the future");
	assert_int_equal(pki_token_verify(&ca, str_cstr(t), now - PKI_SKEW_S + 10, NULL, err), 0);
	/* Another CA's token, and our token checked against another CA. */
	expect_refused(&ca, otok.p, now, "other CA's token");
	expect_refused(&other, t, now, "wrong CA");
	/* Shape. */
	char shape[PKI_TOKEN_MAX + 64];
	snprintf(shape, sizeof(shape), "%.*s", (int)(dd2 - t), t);
	expect_refused(&ca, shape, now, "two segments");
	snprintf(shape, sizeof(shape), "%s.x", t);
	expect_refused(&ca, shape, now, "four segments");
	snprintf(shape, sizeof(shape), "%s=", t);
	expect_refused(&ca, shape, now, "padding");
	snprintf(shape, sizeof(shape), " %s", t);
	expect_refused(&ca, shape, now, "leading space");
	snprintf(shape, sizeof(shape), "..");
	expect_refused(&ca, shape, now, "empty segments");
	expect_refused(&ca, "", now, "empty");
	memset(shape, 'A', PKI_TOKEN_MAX + 1);
	shape[PKI_TOKEN_MAX + 1] = 0;
	shape[10] = '.';
	shape[20] = '.';
	expect_refused(&ca, shape, now, "too big");
	/* Well-signed but with bad claims: signed by the CA key directly. */
	buf_clear(&pb);
	pki_ca_clear(&ca);
	pki_ca_clear(&other);
	buf_clear(&tok);
	buf_clear(&otok);
	free(d);
	free(d2);
}

/* Sign arbitrary header/payload JSON with the CA key (ES256, JOSE form):
 * lets the test prove claim checks hold even on a valid signature. */
static char *token_sign_raw(const struct pki_ca *ca, const char *payload)
{
	struct buf b;
	unsigned char der[80], raw[64];
	size_t dl = sizeof(der);
	buf_init(&b, 0);
	b64url(&b, "{\"alg\":\"ES256\",\"typ\":\"JWT\"}", 27);
	buf_append_lit(&b, ".");
	b64url(&b, payload, strlen(payload));
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, ca->key), 1);
	assert_int_equal(EVP_DigestSign(md, der, &dl, (unsigned char *)b.p, b.n), 1);
	EVP_MD_CTX_free(md);
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)dl);
	const BIGNUM *r, *s;
	ECDSA_SIG_get0(sig, &r, &s);
	BN_bn2binpad(r, raw, 32);
	BN_bn2binpad(s, raw + 32, 32);
	ECDSA_SIG_free(sig);
	buf_append_lit(&b, ".");
	b64url(&b, raw, 64);
	return b.p;
}

static void test_token_signed_bad_claims(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca;
	char *d = ca_make(&ca);
	time_t now = time(NULL);
	char p[1024];
	const char *jti = "00112233445566778899aabbccddeeff";
#define CLAIMS(sub, kind, extra, iat, exp)                                          \
	snprintf(p, sizeof(p),                                                       \
		 "{\"sub\":%s,\"kind\":%s,\"ca_fp\":\"%s\",\"jti\":\"%s\",\"iat\":%s," \
		 "\"exp\":%s%s}",                                                    \
		 sub, kind, ca.fp, jti, iat, exp, extra)
	char iat[32], exp[32];
	snprintf(iat, sizeof(iat), "%lld", (long long)now);
	snprintf(exp, sizeof(exp), "%lld", (long long)now + 3600);

	CLAIMS("\"gina\"", "\"client\"", "", iat, exp);
	char *m = token_sign_raw(&ca, p);
	struct pki_token_claims c;
	assert_int_equal(pki_token_verify(&ca, str_cstr(m), now, &c, err), 0);
	free(m);
	struct {
		const char *sub, *kind, *extra, *iat, *exp;
	} bad[] = {
		{ "\"../x\"", "\"client\"", "", iat, exp },
		{ "\"gina\"", "\"root\"", "", iat, exp },
		{ "7", "\"client\"", "", iat, exp },
		{ "\"gina\"", "\"client\"", ",\"admin\":true", iat, exp },
		{ "\"gina\"", "\"client\"", ",\"sub\":\"root\"", iat, exp },
		{ "\"gina\"", "\"client\"", ",\"team\":5", iat, exp },
		{ "\"gina\"", "\"client\"", "", "\"1\"", exp },
		{ "\"gina\"", "\"client\"", "", iat, "1e12" },
		{ "\"gina\"", "\"client\"", "", iat, iat },
		{ "\"gina\"", "\"client\"", "", iat, "99999999999" },
		{ "\"gi\\u0000na\"", "\"client\"", "", iat, exp },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(bad); i++) {
		CLAIMS(bad[i].sub, bad[i].kind, bad[i].extra, bad[i].iat, bad[i].exp);
		m = token_sign_raw(&ca, p);
		if (pki_token_verify(&ca, str_cstr(m), now, &c, err) == 0)
			fail_msg("claims accepted: %s", p);
		free(m);
	}
	/* Missing claim. */
	m = token_sign_raw(&ca, "{\"sub\":\"gina\",\"kind\":\"client\"}");
	assert_int_not_equal(pki_token_verify(&ca, str_cstr(m), now, &c, err), 0);
	free(m);
	m = token_sign_raw(&ca, "[1]");
	assert_int_not_equal(pki_token_verify(&ca, str_cstr(m), now, &c, err), 0);
	free(m);
#undef CLAIMS
	pki_ca_clear(&ca);
	free(d);
}

/* ---- CSR signing ---- */

static struct pki_token_claims claims_for(const struct pki_ca *ca, const char *name,
					  enum pki_kind kind, const char *team)
{
	struct pki_token_claims c;
	struct buf b;
	char err[PKI_ERR_LEN];
	buf_init(&b, PKI_TOKEN_MAX);
	assert_int_equal(pki_token_make(ca, name, kind, team, NULL, 3600, time(NULL), &b, &c, err), 0);
	buf_clear(&b);
	return c;
}

static char *csr_for(EVP_PKEY *k, const char *name)
{
	struct buf b;
	char err[PKI_ERR_LEN];
	buf_init(&b, 0);
	assert_int_equal(enroll_csr_make(k, name, &b, err), 0);
	return b.p;
}

static void test_csr_sign_good(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca;
	struct pki_identity id;
	struct buf out;
	char *d = ca_make(&ca);
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	struct pki_token_claims c = claims_for(&ca, "hank", PKI_KIND_CONNECTOR, "ml");
	char *csr = csr_for(k, "hank");

	buf_init(&out, 0);
	assert_int_equal(pki_enroll_sign(&ca, &c, str_cstr(csr), time(NULL), &out, &id, err), 0);
	assert_string_equal(id.name, "hank");
	assert_int_equal(id.kind, PKI_KIND_CONNECTOR);
	assert_string_equal(id.team, "ml");
	BIO *bio = BIO_new_mem_buf(out.p, (int)out.n);
	X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	assert_non_null(x);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), k), 1);
	X509_STORE *st = pki_store_new(ca.cert);
	assert_int_equal(pki_verify_cert(st, x, NULL, time(NULL), X509_PURPOSE_SSL_CLIENT, NULL, err), 0);
	X509_STORE_free(st);
	/* And the device accepts that answer. */
	struct buf body, cp, cap;
	buf_init(&body, 0);
	buf_init(&cp, 0);
	buf_init(&cap, 0);
	BIO *cb = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(cb, ca.cert);
	char *cpem;
	long cn = BIO_get_mem_data(cb, &cpem);
	buf_append_lit(&body, "{\"certificate\":");
	json_write_str(&body, buf_str(&out));
	buf_append_lit(&body, ",\"ca\":");
	json_write_str(&body, str_make(cpem, (size_t)cn));
	buf_append_lit(&body, "}");
	assert_int_equal(enroll_response_check(buf_str(&body), &c, k, &cp, &cap, err), 0);
	assert_string_equal(cp.p, out.p);
	/* ...but not for another key, or when the CA does not match the pin. */
	EVP_PKEY *k2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	buf_reset(&cp);
	buf_reset(&cap);
	assert_int_not_equal(enroll_response_check(buf_str(&body), &c, k2, &cp, &cap, err), 0);
	assert_non_null(strstr(err, "key"));
	struct pki_token_claims c2 = c;
	memset(c2.ca_fp, 'a', 64);
	buf_reset(&cp);
	buf_reset(&cap);
	assert_int_not_equal(enroll_response_check(buf_str(&body), &c2, k, &cp, &cap, err), 0);
	assert_non_null(strstr(err, "fingerprint"));
	c2 = c;
	strcpy(c2.sub, "other");
	buf_reset(&cp);
	buf_reset(&cap);
	assert_int_not_equal(enroll_response_check(buf_str(&body), &c2, k, &cp, &cap, err), 0);
	buf_reset(&cp);
	buf_reset(&cap);
	assert_int_not_equal(enroll_response_check(STR("{\"certificate\":1}"), &c, k, &cp, &cap, err), 0);
	EVP_PKEY_free(k2);
	BIO_free(cb);
	buf_clear(&body);
	buf_clear(&cp);
	buf_clear(&cap);
	X509_free(x);
	EVP_PKEY_free(k);
	free(csr);
	buf_clear(&out);
	pki_ca_clear(&ca);
	free(d);
}

static void test_csr_other_name(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca;
	struct buf out;
	char *d = ca_make(&ca);
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	struct pki_token_claims c = claims_for(&ca, "ivan", PKI_KIND_CLIENT, NULL);
	char *csr = csr_for(k, "mallory");

	buf_init(&out, 0);
	assert_int_not_equal(pki_enroll_sign(&ca, &c, str_cstr(csr), time(NULL), &out, NULL, err), 0);
	assert_non_null(strstr(err, "'mallory'"));
	assert_non_null(strstr(err, "'ivan'"));
	assert_int_equal(out.n, 0);
	free(csr);

	/* CN right, SAN URI naming someone else: refused too. */
	X509_REQ *req = X509_REQ_new();
	X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
				   (const unsigned char *)"ivan", -1, -1, 0);
	X509_REQ_set_pubkey(req, k);
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	sk_X509_EXTENSION_push(exts, X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name,
							  "URI:umbra://identity/root"));
	X509_REQ_add_extensions(req, exts);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_sign(req, k, EVP_sha256());
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509_REQ(b, req);
	char *p;
	long n = BIO_get_mem_data(b, &p);
	assert_int_not_equal(pki_enroll_sign(&ca, &c, str_make(p, (size_t)n), time(NULL), &out, NULL, err), 0);
	assert_non_null(strstr(err, "umbra://identity/root"));
	BIO_free(b);
	X509_REQ_free(req);
	/* No CN at all. */
	req = X509_REQ_new();
	X509_REQ_set_pubkey(req, k);
	X509_REQ_sign(req, k, EVP_sha256());
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509_REQ(b, req);
	n = BIO_get_mem_data(b, &p);
	assert_int_not_equal(pki_enroll_sign(&ca, &c, str_make(p, (size_t)n), time(NULL), &out, NULL, err), 0);
	BIO_free(b);
	X509_REQ_free(req);
	EVP_PKEY_free(k);
	buf_clear(&out);
	pki_ca_clear(&ca);
	free(d);
}

static void test_csr_bad_signature(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca;
	struct buf out;
	char *d = ca_make(&ca);
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	struct pki_token_claims c = claims_for(&ca, "judy", PKI_KIND_CLIENT, NULL);
	char *csr = csr_for(k, "judy");

	/* Re-encode the DER with one byte of the signed body changed. */
	BIO *b = BIO_new_mem_buf(csr, -1);
	X509_REQ *req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
	BIO_free(b);
	unsigned char *der = NULL;
	int dl = i2d_X509_REQ(req, &der);
	X509_REQ_free(req);
	assert_true(dl > 100);
	/* The CN value "judy" sits in the signed part: make it "judz". */
	unsigned char *hit = NULL;
	for (int i = 0; i + 4 <= dl; i++)
		if (memcmp(der + i, "judy", 4) == 0)
			hit = der + i;
	assert_non_null(hit);
	hit[3] = 'z';
	strcpy(c.sub, "judz");
	const unsigned char *q = der;
	req = d2i_X509_REQ(NULL, &q, dl);
	assert_non_null(req);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509_REQ(b, req);
	char *p;
	long n = BIO_get_mem_data(b, &p);
	buf_init(&out, 0);
	assert_int_not_equal(pki_enroll_sign(&ca, &c, str_make(p, (size_t)n), time(NULL), &out, NULL, err), 0);
	assert_non_null(strstr(err, "signature"));
	/* Garbage and oversize. */
	assert_int_not_equal(pki_enroll_sign(&ca, &c, STR("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), time(NULL), &out, NULL, err), 0);
	char *big = calloc(1, PKI_CSR_MAX + 2);
	memset(big, 'A', PKI_CSR_MAX + 1);
	assert_int_not_equal(pki_enroll_sign(&ca, &c, str_cstr(big), time(NULL), &out, NULL, err), 0);
	assert_int_not_equal(pki_enroll_sign(&ca, &c, STR_NULL, time(NULL), &out, NULL, err), 0);
	free(big);
	BIO_free(b);
	X509_REQ_free(req);
	OPENSSL_free(der);
	free(csr);
	EVP_PKEY_free(k);
	buf_clear(&out);
	pki_ca_clear(&ca);
	free(d);
}

static void test_csr_key_types(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca;
	struct buf out;
	char *d = ca_make(&ca);
	struct pki_token_claims c = claims_for(&ca, "kim", PKI_KIND_CLIENT, NULL);
	EVP_PKEY *r1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	EVP_PKEY *r2048 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	char *csr;

	buf_init(&out, 0);
	csr = csr_for(r1024, "kim");
	assert_int_not_equal(pki_enroll_sign(&ca, &c, str_cstr(csr), time(NULL), &out, NULL, err), 0);
	assert_non_null(strstr(err, "1024"));
	free(csr);
	csr = csr_for(p384, "kim");
	assert_int_not_equal(pki_enroll_sign(&ca, &c, str_cstr(csr), time(NULL), &out, NULL, err), 0);
	free(csr);
	csr = csr_for(r2048, "kim");
	assert_int_equal(pki_enroll_sign(&ca, &c, str_cstr(csr), time(NULL), &out, NULL, err), 0);
	free(csr);
	EVP_PKEY_free(r1024);
	EVP_PKEY_free(r2048);
	EVP_PKEY_free(p384);
	buf_clear(&out);
	pki_ca_clear(&ca);
	free(d);
}

/* ---- enrollment over real TLS ---- */

/* A one-shot HTTPS server playing the gateway's POST /enroll: verifies the
 * token, signs the CSR, answers {"certificate","ca"}. */
struct srv {
	int lfd;
	SSL_CTX *ctx;
	struct pki_ca *ca;
	char seen_jti[33];
	bool saw_private_key;
	int status; /* 0 = normal; else reply with this error status */
};

static void *srv_run(void *arg)
{
	struct srv *s = arg;
	int fd = accept(s->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	SSL *ssl = SSL_new(s->ctx);
	SSL_set_fd(ssl, fd);
	struct buf in, resp, body;
	buf_init(&in, 1 << 20);
	buf_init(&resp, 0);
	buf_init(&body, 0);
	if (SSL_accept(ssl) != 1)
		goto out;
	char chunk[4096];
	size_t need = SIZE_MAX;
	const char *hdr_end = NULL;
	while (in.n < need) {
		int r = SSL_read(ssl, chunk, sizeof(chunk));
		if (r <= 0)
			goto out;
		buf_append(&in, chunk, (size_t)r);
		if (!hdr_end && (hdr_end = strstr(in.p, "\r\n\r\n"))) {
			const char *cl = strcasestr(in.p, "content-length:");
			need = (size_t)(hdr_end + 4 - in.p) + (cl ? strtoul(cl + 15, NULL, 10) : 0);
		}
	}
	hdr_end = strstr(in.p, "\r\n\r\n") + 4;
	s->saw_private_key = strstr(in.p, "PRIVATE KEY") != NULL;
	struct json_val root, tv, cv;
	struct buf tok, csr;
	buf_init(&tok, 0);
	buf_init(&csr, 0);
	char err[PKI_ERR_LEN] = "";
	struct pki_token_claims c;
	int code = 200;
	if (strncmp(in.p, "POST /enroll ", 13) != 0 ||
	    json_parse(hdr_end, in.n - (size_t)(hdr_end - in.p), &root, NULL) ||
	    !json_obj_get(root, "token", &tv) || !json_obj_get(root, "csr", &cv) ||
	    json_str_decode(tv, &tok) || json_str_decode(cv, &csr) ||
	    pki_token_verify(s->ca, buf_str(&tok), time(NULL), &c, err) ||
	    pki_enroll_sign(s->ca, &c, buf_str(&csr), time(NULL), &body, NULL, err))
		code = 400;
	if (s->status)
		code = s->status;
	if (code == 200) {
		memcpy(s->seen_jti, c.jti, sizeof(c.jti));
		struct buf j;
		buf_init(&j, 0);
		BIO *b = BIO_new(BIO_s_mem());
		PEM_write_bio_X509(b, s->ca->cert);
		char *p;
		long n = BIO_get_mem_data(b, &p);
		buf_append_lit(&j, "{\"certificate\":");
		json_write_str(&j, buf_str(&body));
		buf_append_lit(&j, ",\"ca\":");
		json_write_str(&j, str_make(p, (size_t)n));
		buf_append_lit(&j, "}");
		BIO_free(b);
		buf_printf(&resp, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", j.n, j.p);
		buf_clear(&j);
	} else {
		const char *e = "{\"error\":{\"message\":\"token already used\",\"type\":\"authentication_error\"}}";
		buf_printf(&resp, "HTTP/1.1 %d Nope\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", code, strlen(e), e);
	}
	SSL_write(ssl, resp.p, (int)resp.n);
	SSL_shutdown(ssl);
	buf_clear(&tok);
	buf_clear(&csr);
out:
	buf_clear(&in);
	buf_clear(&resp);
	buf_clear(&body);
	SSL_free(ssl);
	close(fd);
	return NULL;
}

static SSL_CTX *srv_ctx(const char *dir, const char *name)
{
	char crt[512], key[512];
	snprintf(crt, sizeof(crt), "%s/%s.crt", dir, name);
	snprintf(key, sizeof(key), "%s/%s.key", dir, name);
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, crt), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
	return ctx;
}

/* Start the one-shot server on a free loopback port; returns the port. */
static int srv_start(struct srv *s, pthread_t *th)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->lfd, 4), 0);
	getsockname(s->lfd, (struct sockaddr *)&a, &al);
	pthread_create(th, NULL, srv_run, s);
	return ntohs(a.sin_port);
}

static void srv_stop(struct srv *s, pthread_t th)
{
	/* Unblock accept() if the client never connected. */
	shutdown(s->lfd, SHUT_RDWR);
	pthread_join(th, NULL);
	close(s->lfd);
	SSL_CTX_free(s->ctx);
}

static void test_enroll_over_tls(void **state)
{
	UMB_UNUSED(state);
	char err[PKI_ERR_LEN];
	struct pki_ca ca, other;
	char *d = ca_make(&ca), *d2 = ca_make(&other), *out = dir_new();
	const char *dns[] = { "localhost" };
	const char *ip[] = { "127.0.0.1" };
	struct pki_issue_opts g = { .name = "gateway", .kind = PKI_KIND_GATEWAY,
				    .lifetime_s = 86400, .dns = dns, .n_dns = 1,
				    .ip = ip, .n_ip = 1 };
	struct pki_issue_opts notgw = { .name = "client1", .kind = PKI_KIND_CLIENT,
					.lifetime_s = 86400 };
	struct buf tok;
	struct pki_token_claims c;
	char url[64];
	struct srv s;
	pthread_t th;

	assert_int_equal(pki_issue_files(&ca, d, &g, time(NULL), NULL, err), 0);
	assert_int_equal(pki_issue_files(&other, d2, &g, time(NULL), NULL, err), 0);
	buf_init(&tok, PKI_TOKEN_MAX);
	assert_int_equal(pki_token_make(&ca, "laptop-7", PKI_KIND_CLIENT, "eng", NULL,
					3600, time(NULL), &tok, &c, err), 0);

	/* 1. A gateway from another CA: nothing is sent, nothing written. */
	memset(&s, 0, sizeof(s));
	s.ctx = srv_ctx(d2, "gateway");
	s.ca = &other;
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", srv_start(&s, &th));
	assert_int_not_equal(enroll_run(tok.p, url, out, err), 0);
	assert_non_null(strstr(err, "did not present the umbra CA"));
	srv_stop(&s, th);
	assert_string_equal(s.seen_jti, "");

	/* 2. Right CA but not a gateway certificate: refused as well. */
	assert_int_equal(pki_issue_files(&ca, d, &notgw, time(NULL), NULL, err), 0);
	memset(&s, 0, sizeof(s));
	{
		/* serve client1.crt followed by the CA, as a gateway would */
		char crt[512], key[512];
		snprintf(crt, sizeof(crt), "%s/client1.crt", d);
		snprintf(key, sizeof(key), "%s/client1.key", d);
		s.ctx = SSL_CTX_new(TLS_server_method());
		assert_int_equal(SSL_CTX_use_certificate_file(s.ctx, crt, SSL_FILETYPE_PEM), 1);
		assert_int_equal(SSL_CTX_add1_chain_cert(s.ctx, ca.cert), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(s.ctx, key, SSL_FILETYPE_PEM), 1);
	}
	s.ca = &ca;
	snprintf(url, sizeof(url), "https://127.0.0.1:%d", srv_start(&s, &th));
	assert_int_not_equal(enroll_run(tok.p, url, out, err), 0);
	srv_stop(&s, th);
	assert_string_equal(s.seen_jti, "");

	/* 3. The gateway refuses (e.g. token reused): its message is shown. */
	memset(&s, 0, sizeof(s));
	s.ctx = srv_ctx(d, "gateway");
	s.ca = &ca;
	s.status = 401;
	snprintf(url, sizeof(url), "https://localhost:%d/", srv_start(&s, &th));
	assert_int_not_equal(enroll_run(tok.p, url, out, err), 0);
	assert_non_null(strstr(err, "401"));
	assert_non_null(strstr(err, "token already used"));
	srv_stop(&s, th);
	char path[512];
	snprintf(path, sizeof(path), "%s/laptop-7.key", out);
	assert_int_not_equal(access(path, F_OK), 0);

	/* 4. The real thing. */
	memset(&s, 0, sizeof(s));
	s.ctx = srv_ctx(d, "gateway");
	s.ca = &ca;
	snprintf(url, sizeof(url), "https://localhost:%d/", srv_start(&s, &th));
	int rc = enroll_run(tok.p, url, out, err);
	srv_stop(&s, th);
	if (rc)
		fail_msg("enroll failed: %s", err);
	assert_string_equal(s.seen_jti, c.jti);
	assert_false(s.saw_private_key);
	assert_int_equal(file_mode(out, "laptop-7.key"), 0600);
	X509 *x = cert_read(out, "laptop-7");
	X509 *cax = cert_read(out, "ca");
	assert_int_equal(X509_cmp(cax, ca.cert), 0);
	X509_STORE *st = pki_store_new(cax);
	struct pki_identity id;
	assert_int_equal(pki_verify_cert(st, x, NULL, time(NULL), X509_PURPOSE_SSL_CLIENT, &id, err), 0);
	assert_string_equal(id.name, "laptop-7");
	assert_string_equal(id.team, "eng");
	snprintf(path, sizeof(path), "%s/laptop-7.key", out);
	FILE *f = fopen(path, "r");
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	assert_int_equal(X509_check_private_key(x, k), 1);
	/* A second run refuses to overwrite before contacting anyone. */
	assert_int_not_equal(enroll_run(tok.p, url, out, err), 0);
	assert_non_null(strstr(err, "refusing to overwrite"));
	/* Plain http is refused outright. */
	assert_int_not_equal(enroll_run(tok.p, "http://127.0.0.1:1", out, err), 0);
	EVP_PKEY_free(k);
	X509_STORE_free(st);
	X509_free(x);
	X509_free(cax);
	buf_clear(&tok);
	pki_ca_clear(&ca);
	pki_ca_clear(&other);
	free(d);
	free(d2);
	free(out);
}

/* ---- CLI ---- */

static struct pki_identity hook_seen;
static int hook_calls;

static bool hook_bg;

static int hook_register(const char *cfg, const struct pki_identity *id,
			 bool break_glass, char *err)
{
	UMB_UNUSED(err);
	hook_bg = break_glass;
	assert_string_equal(cfg, "umbra.yaml");
	hook_seen = *id;
	hook_calls++;
	return 0;
}

static char *hook_dir;

static int hook_resolve(const char *cfg, char *dir, size_t dcap, char *gw,
			size_t gcap, char *err)
{
	UMB_UNUSED(cfg);
	UMB_UNUSED(err);
	snprintf(dir, dcap, "%s", hook_dir);
	snprintf(gw, gcap, "https://gw.test:8443");
	return 0;
}

static int cli(const char *first, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	va_start(ap, first);
	for (const char *a = first; a; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	fflush(stdout);
	return pki_cmd_main(argc, argv);
}

static void test_cli(void **state)
{
	UMB_UNUSED(state);
	char *d = dir_new();
	char *sub = malloc(strlen(d) + 8);
	sprintf(sub, "%s/pki", d);

	pki_cmd_set_hooks(NULL);
	assert_int_equal(cli("init", "--dir", sub, NULL), 0);
	assert_int_equal(cli("init", "--dir", sub, NULL), 1);
	assert_int_equal(cli("issue", "web", "--kind", "gateway", "--dns", "localhost",
			     "--ip", "127.0.0.1", "--expires", "30d", "--dir", sub, NULL), 0);
	assert_int_equal(cli("issue", "x", "--kind", "root", "--dir", sub, NULL), 2);
	assert_int_equal(cli("issue", "x", "--kind", "client", "--expires", "soon", "--dir", sub, NULL), 2);
	assert_int_equal(cli("issue", "x/y", "--kind", "client", "--dir", sub, NULL), 1);
	assert_int_equal(cli("issue", "--kind", "client", "--dir", sub, NULL), 2);
	assert_int_equal(cli("issue", "x", "--kind", "client", "--bogus", "--dir", sub, NULL), 2);
	assert_int_equal(cli("issue", "x", "--kind", "client", NULL), 2);
	assert_int_equal(cli("list", "--dir", sub, NULL), 0);
	assert_int_equal(cli("token", "t1", "--kind", "client", "--dir", sub, NULL), 0);
	assert_int_equal(cli("frobnicate", "--dir", sub, NULL), 2);
	/* -c without the store wired: refused, not silently skipped. */
	assert_int_equal(cli("issue", "y", "--kind", "client", "-c", "umbra.yaml", "--dir", sub, NULL), 1);
	static const struct pki_cmd_hooks h = { .register_identity = hook_register,
						.cfg_resolve = hook_resolve };
	pki_cmd_set_hooks(&h);
	hook_dir = sub;
	assert_int_equal(cli("issue", "y", "--kind", "admin", "--team", "sec", "-c", "umbra.yaml", NULL), 0);
	assert_int_equal(hook_calls, 1);
	assert_false(hook_bg);
	assert_string_equal(hook_seen.name, "y");
	assert_int_equal(hook_seen.kind, PKI_KIND_ADMIN);
	assert_string_equal(hook_seen.team, "sec");
	assert_int_equal(strlen(hook_seen.fp), 64);
	assert_int_equal(cli("token", "t2", "--kind", "client", "-c", "umbra.yaml", NULL), 0);
	assert_int_equal(cli("issue", "bg", "--kind", "client", "--expires", "4h",
			     "--break-glass", "-c", "umbra.yaml", NULL), 0);
	assert_int_equal(hook_calls, 2);
	assert_true(hook_bg);
	assert_int_equal(cli("issue", "bg2", "--kind", "client", "--break-glass", "--dir", sub, NULL), 2);
	pki_cmd_set_hooks(NULL);
	struct pki_identity *ids;
	size_t n;
	char err[PKI_ERR_LEN];
	assert_int_equal(pki_list(sub, &ids, &n, err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(ids[0].name, "bg");
	assert_string_equal(ids[1].name, "web");
	assert_int_equal(ids[1].kind, PKI_KIND_GATEWAY);
	free(ids);
	char *argv_e[] = { "enroll", NULL };
	assert_int_equal(enroll_cmd_main(1, argv_e), 2);
	free(sub);
	free(d);
}

static int group_setup(void **state)
{
	UMB_UNUSED(state);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return mkdtemp(tmp_root) ? 0 : -1;
}

static int group_teardown(void **state)
{
	UMB_UNUSED(state);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp_root);
	curl_global_cleanup();
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ca_init),
		cmocka_unit_test(test_issue_client_fields),
		cmocka_unit_test(test_issue_kinds),
		cmocka_unit_test(test_issue_gateway_names),
		cmocka_unit_test(test_issue_refusals),
		cmocka_unit_test(test_lifetime_parse),
		cmocka_unit_test(test_identity_roundtrip_and_list),
		cmocka_unit_test(test_verify_against_ca),
		cmocka_unit_test(test_token_roundtrip),
		cmocka_unit_test(test_token_refusals),
		cmocka_unit_test(test_token_signed_bad_claims),
		cmocka_unit_test(test_csr_sign_good),
		cmocka_unit_test(test_csr_other_name),
		cmocka_unit_test(test_csr_bad_signature),
		cmocka_unit_test(test_csr_key_types),
		cmocka_unit_test(test_enroll_over_tls),
		cmocka_unit_test(test_cli),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
