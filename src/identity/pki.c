/* pki.c — the CA, identity certificates, certificate -> identity,
 * chain verification, listing, and CSR signing for POST /enroll.
 *
 * Only OpenSSL 3 EVP/X509 APIs. Subject alternative names are built as
 * GENERAL_NAME objects rather than through the config-string parser so a
 * comma in a user-supplied host can never smuggle in an extra name. */
#include "identity/pki.h"
#include "identity/pki_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define PKI_URI_IDENTITY "umbra://identity/"
#define PKI_URI_KIND "umbra://kind/"

static const char *const kind_names[] = { "client", "connector", "gateway",
					  "admin" };

void pki__err(char *err, const char *fmt, ...)
{
	if (!err)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, PKI_ERR_LEN, fmt, ap);
	va_end(ap);
}

/* Append OpenSSL's last queued reason (if any) to a message, and drain the
 * queue so a later failure does not report a stale reason. */
static const char *pki__ossl(void)
{
	static _Thread_local char why[160];
	unsigned long e = ERR_peek_last_error();
	why[0] = 0;
	if (e)
		ERR_error_string_n(e, why, sizeof(why));
	ERR_clear_error();
	return why[0] ? why : "unknown OpenSSL error";
}

int pki_kind_parse(const char *s, enum pki_kind *out)
{
	for (size_t i = 0; s && i < UMB_ARRAY_LEN(kind_names); i++)
		if (strcmp(s, kind_names[i]) == 0) {
			*out = (enum pki_kind)i;
			return UMB_OK;
		}
	return UMB_ERR;
}

const char *pki_kind_name(enum pki_kind k)
{
	return (unsigned)k < UMB_ARRAY_LEN(kind_names) ? kind_names[k] : "?";
}

bool pki_name_valid(struct str s)
{
	if (s.n == 0 || s.n > PKI_NAME_MAX || !s.p)
		return false;
	if (str_eq_cstr(s, ".") || str_eq_cstr(s, ".."))
		return false;
	for (size_t i = 0; i < s.n; i++) {
		char c = s.p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

int pki_lifetime_parse(const char *s, int64_t *out_s)
{
	uint64_t ms;
	if (!s || duration_parse_ms(str_cstr(s), &ms) || ms < 1000 ||
	    ms / 1000 > (uint64_t)100 * 365 * 86400)
		return UMB_ERR;
	/* A bare number would be milliseconds in core; demand a unit here. */
	size_t n = strlen(s);
	if (n == 0 || !(s[n - 1] == 's' || s[n - 1] == 'm' || s[n - 1] == 'h' ||
			s[n - 1] == 'd'))
		return UMB_ERR;
	*out_s = (int64_t)(ms / 1000);
	return UMB_OK;
}

static void hex_encode(const unsigned char *p, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[p[i] >> 4];
		out[2 * i + 1] = hx[p[i] & 15];
	}
	out[2 * n] = 0;
}

int pki_cert_fp(X509 *cert, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	if (!cert || X509_digest(cert, EVP_sha256(), md, &len) != 1 || len != 32)
		return UMB_ERR;
	hex_encode(md, 32, out);
	return UMB_OK;
}

/* ---- files ---- */

static char *path_join(const char *dir, const char *name, const char *ext)
{
	size_t n = strlen(dir) + strlen(name) + strlen(ext) + 2;
	char *p = umb_malloc(n);
	snprintf(p, n, "%s/%s%s", dir, name, ext);
	return p;
}

/* Create `path` exclusively with `mode` and write PEM through `fn`; a
 * partial file is removed so a retry is not blocked by "exists". */
static int write_pem_excl(const char *path, mode_t mode,
			  int (*fn)(FILE *f, void *obj), void *obj, char *err)
{
	int rc = UMB_ERR;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		pki__err(err, "%s: %s%s", path, strerror(errno),
			 errno == EEXIST ? " (refusing to overwrite)" : "");
		return UMB_ERR;
	}
	/* umask may have narrowed the mode; the key must not be wider. */
	if (fchmod(fd, mode) != 0) {
		pki__err(err, "%s: chmod: %s", path, strerror(errno));
		close(fd);
		goto out;
	}
	FILE *f = fdopen(fd, "w");
	if (!f) {
		pki__err(err, "%s: %s", path, strerror(errno));
		close(fd);
		goto out;
	}
	int ok = fn(f, obj) == 1;
	if (fclose(f) != 0)
		ok = 0;
	if (!ok) {
		pki__err(err, "%s: write failed: %s", path, pki__ossl());
		goto out;
	}
	rc = UMB_OK;
out:
	if (rc)
		unlink(path);
	return rc;
}

static int pem_key_cb(FILE *f, void *obj)
{
	return PEM_write_PrivateKey(f, obj, NULL, NULL, 0, NULL, NULL);
}

static int pem_cert_cb(FILE *f, void *obj)
{
	return PEM_write_X509(f, obj);
}

/* A leaf then the CA, for gateway certificates served as a chain file. */
struct cert_pair {
	X509 *leaf, *ca;
};

static int pem_chain_cb(FILE *f, void *obj)
{
	struct cert_pair *cp = obj;
	return PEM_write_X509(f, cp->leaf) == 1 && PEM_write_X509(f, cp->ca) == 1;
}

static EVP_PKEY *key_new_p256(void)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static bool key_is_p256(EVP_PKEY *k)
{
	char grp[64];
	size_t glen = 0;
	return EVP_PKEY_get_base_id(k) == EVP_PKEY_EC &&
	       EVP_PKEY_get_group_name(k, grp, sizeof(grp), &glen) == 1 &&
	       strcmp(grp, SN_X9_62_prime256v1) == 0;
}

/* ---- certificate building ---- */

static int ext_add(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return UMB_ERR;
	int ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? UMB_OK : UMB_ERR;
}

/* 128 random bits, top bit cleared so the DER INTEGER stays positive and
 * 16 bytes long, never zero. */
static int serial_set(X509 *x)
{
	unsigned char r[16];
	rand_bytes(r, sizeof(r));
	r[0] = (unsigned char)((r[0] & 0x7f) | 0x40);
	BIGNUM *bn = BN_bin2bn(r, sizeof(r), NULL);
	int rc = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ?
			 UMB_OK :
			 UMB_ERR;
	BN_free(bn);
	return rc;
}

static int gen_push(GENERAL_NAMES *gens, int type, const char *val)
{
	GENERAL_NAME *g = GENERAL_NAME_new();
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();
	if (!g || !s || ASN1_STRING_set(s, val, (int)strlen(val)) != 1)
		goto fail;
	GENERAL_NAME_set0_value(g, type, s);
	if (!sk_GENERAL_NAME_push(gens, g)) {
		GENERAL_NAME_free(g);
		return UMB_ERR;
	}
	return UMB_OK;
fail:
	ASN1_IA5STRING_free(s);
	GENERAL_NAME_free(g);
	return UMB_ERR;
}

static bool dns_valid(const char *h)
{
	size_t n = strlen(h);
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = h[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '-' ||
		      (c == '*' && i == 0 && h[1] == '.')))
			return false;
	}
	return true;
}

static int san_add(X509 *x, const struct pki_issue_opts *o, char *err)
{
	int rc = UMB_ERR;
	char uri[sizeof(PKI_URI_IDENTITY) + PKI_NAME_MAX + 1];
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	if (!gens)
		goto out;
	snprintf(uri, sizeof(uri), "%s%s", PKI_URI_IDENTITY, o->name);
	if (gen_push(gens, GEN_URI, uri))
		goto out;
	snprintf(uri, sizeof(uri), "%s%s", PKI_URI_KIND, pki_kind_name(o->kind));
	if (gen_push(gens, GEN_URI, uri))
		goto out;
	for (size_t i = 0; i < o->n_dns; i++) {
		if (!dns_valid(o->dns[i])) {
			pki__err(err, "invalid DNS name '%s'", o->dns[i]);
			goto out;
		}
		if (gen_push(gens, GEN_DNS, o->dns[i]))
			goto out;
	}
	for (size_t i = 0; i < o->n_ip; i++) {
		ASN1_OCTET_STRING *ip = a2i_IPADDRESS(o->ip[i]);
		GENERAL_NAME *g = ip ? GENERAL_NAME_new() : NULL;
		if (!g) {
			ASN1_OCTET_STRING_free(ip);
			ERR_clear_error();
			pki__err(err, "invalid IP address '%s'", o->ip[i]);
			goto out;
		}
		GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
		if (!sk_GENERAL_NAME_push(gens, g)) {
			GENERAL_NAME_free(g);
			goto out;
		}
	}
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
			      X509V3_ADD_DEFAULT) != 1)
		goto out;
	rc = UMB_OK;
out:
	if (rc && err && !err[0])
		pki__err(err, "subjectAltName: %s", pki__ossl());
	GENERAL_NAMES_free(gens);
	return rc;
}

int pki_cert_issue(const struct pki_ca *ca, EVP_PKEY *pub,
		   const struct pki_issue_opts *o, time_t now, X509 **out,
		   char *err)
{
	int rc = UMB_ERR;
	X509 *x = NULL;

	if (err)
		err[0] = 0;
	if (!o->name || !pki_name_valid(str_cstr(o->name))) {
		pki__err(err, "invalid identity name '%s' (1-%d of [A-Za-z0-9._-])",
			 o->name ? o->name : "", PKI_NAME_MAX);
		goto out;
	}
	if (o->team && !pki_name_valid(str_cstr(o->team))) {
		pki__err(err, "invalid team name '%s'", o->team);
		goto out;
	}
	if ((unsigned)o->kind >= UMB_ARRAY_LEN(kind_names) ||
	    o->lifetime_s <= 0) {
		pki__err(err, "invalid kind or lifetime");
		goto out;
	}
	if (o->kind != PKI_KIND_GATEWAY && (o->n_dns || o->n_ip)) {
		pki__err(err, "--dns/--ip apply to gateway certificates only");
		goto out;
	}
	x = X509_new();
	if (!x || X509_set_version(x, X509_VERSION_3) != 1 || serial_set(x) ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), now - PKI_SKEW_S) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), now + o->lifetime_s))
		goto fail;
	X509_NAME *subj = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
				       (const unsigned char *)o->name, -1, -1,
				       0) != 1)
		goto fail;
	if (o->team &&
	    X509_NAME_add_entry_by_txt(subj, "OU", MBSTRING_UTF8,
				       (const unsigned char *)o->team, -1, -1,
				       0) != 1)
		goto fail;
	if (X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) != 1 ||
	    X509_set_pubkey(x, pub) != 1)
		goto fail;
	const char *ku = EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA ?
				 "critical,digitalSignature,keyEncipherment" :
				 "critical,digitalSignature";
	const char *eku = o->kind == PKI_KIND_GATEWAY ? "serverAuth,clientAuth" :
							"clientAuth";
	if (ext_add(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") ||
	    ext_add(x, ca->cert, NID_key_usage, ku) ||
	    ext_add(x, ca->cert, NID_ext_key_usage, eku) ||
	    ext_add(x, ca->cert, NID_subject_key_identifier, "hash") ||
	    ext_add(x, ca->cert, NID_authority_key_identifier, "keyid:always"))
		goto fail;
	if (san_add(x, o, err))
		goto out;
	if (X509_sign(x, ca->key, EVP_sha256()) <= 0)
		goto fail;
	*out = x;
	x = NULL;
	rc = UMB_OK;
	goto out;
fail:
	pki__err(err, "building certificate: %s", pki__ossl());
out:
	X509_free(x);
	return rc;
}

/* ---- the CA ---- */

int pki_ca_create(const char *dir, time_t now, char *err)
{
	int rc = UMB_ERR;
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	char *crt_path = path_join(dir, "ca", ".crt");
	char *key_path = path_join(dir, "ca", ".key");
	struct stat st;

	if (stat(crt_path, &st) == 0 || stat(key_path, &st) == 0) {
		pki__err(err, "a CA already exists in %s (refusing to overwrite)",
			 dir);
		goto out;
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		pki__err(err, "%s: %s", dir, strerror(errno));
		goto out;
	}
	key = key_new_p256();
	x = X509_new();
	if (!key || !x || X509_set_version(x, X509_VERSION_3) != 1 ||
	    serial_set(x) ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), now - PKI_SKEW_S) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), now + PKI_CA_LIFETIME_S))
		goto fail;
	/* A random suffix keeps two CAs' subjects apart in logs and stores. */
	unsigned char r[4];
	char cn[32], rh[9];
	rand_bytes(r, sizeof(r));
	hex_encode(r, sizeof(r), rh);
	snprintf(cn, sizeof(cn), "umbra CA %s", rh);
	X509_NAME *subj = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(subj, "O", MBSTRING_UTF8,
				       (const unsigned char *)"umbra", -1, -1,
				       0) != 1 ||
	    X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
				       (const unsigned char *)cn, -1, -1,
				       0) != 1 ||
	    X509_set_issuer_name(x, subj) != 1 || X509_set_pubkey(x, key) != 1)
		goto fail;
	if (ext_add(x, x, NID_basic_constraints, "critical,CA:TRUE") ||
	    ext_add(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    ext_add(x, x, NID_subject_key_identifier, "hash") ||
	    ext_add(x, x, NID_authority_key_identifier, "keyid:always"))
		goto fail;
	if (X509_sign(x, key, EVP_sha256()) <= 0)
		goto fail;
	if (write_pem_excl(key_path, 0600, pem_key_cb, key, err))
		goto out;
	if (write_pem_excl(crt_path, 0644, pem_cert_cb, x, err)) {
		unlink(key_path);
		goto out;
	}
	rc = UMB_OK;
	goto out;
fail:
	pki__err(err, "building CA: %s", pki__ossl());
out:
	X509_free(x);
	EVP_PKEY_free(key);
	free(crt_path);
	free(key_path);
	return rc;
}

int pki_ca_load(const char *dir, struct pki_ca *ca, char *err)
{
	char *crt_path = path_join(dir, "ca", ".crt");
	char *key_path = path_join(dir, "ca", ".key");
	int rc = pki_ca_load_files(crt_path, key_path, ca, err);
	free(crt_path);
	free(key_path);
	return rc;
}

int pki_ca_load_files(const char *crt_path, const char *key_path,
		      struct pki_ca *ca, char *err)
{
	int rc = UMB_ERR;
	FILE *f = NULL;

	memset(ca, 0, sizeof(*ca));
	if (!(f = fopen(crt_path, "r")) ||
	    !(ca->cert = PEM_read_X509(f, NULL, NULL, NULL))) {
		pki__err(err, "%s: %s", crt_path,
			 f ? pki__ossl() : strerror(errno));
		goto out;
	}
	fclose(f);
	if (!(f = fopen(key_path, "r")) ||
	    !(ca->key = PEM_read_PrivateKey(f, NULL, NULL, NULL))) {
		pki__err(err, "%s: %s", key_path,
			 f ? pki__ossl() : strerror(errno));
		goto out;
	}
	if (!key_is_p256(ca->key) || X509_check_private_key(ca->cert, ca->key) != 1) {
		pki__err(err, "%s: not the EC P-256 key of %s", key_path, crt_path);
		ERR_clear_error();
		goto out;
	}
	if (pki_cert_fp(ca->cert, ca->fp))
		goto out;
	rc = UMB_OK;
out:
	if (f)
		fclose(f);
	if (rc)
		pki_ca_clear(ca);
	return rc;
}

void pki_ca_clear(struct pki_ca *ca)
{
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	memset(ca, 0, sizeof(*ca));
}

int pki_issue_files(const struct pki_ca *ca, const char *dir,
		    const struct pki_issue_opts *o, time_t now,
		    struct pki_identity *out, char *err)
{
	int rc = UMB_ERR;
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	char *crt_path = NULL, *key_path = NULL;
	struct stat st;

	if (err)
		err[0] = 0;
	/* Validate before the name reaches a path. */
	if (!o->name || !pki_name_valid(str_cstr(o->name)) ||
	    strcmp(o->name, "ca") == 0) {
		pki__err(err, "invalid identity name '%s' (1-%d of [A-Za-z0-9._-], not 'ca')",
			 o->name ? o->name : "", PKI_NAME_MAX);
		goto out;
	}
	crt_path = path_join(dir, o->name, ".crt");
	key_path = path_join(dir, o->name, ".key");
	if (stat(crt_path, &st) == 0 || stat(key_path, &st) == 0) {
		pki__err(err, "%s already exists (refusing to overwrite)",
			 stat(crt_path, &st) == 0 ? crt_path : key_path);
		goto out;
	}
	if (!(key = key_new_p256())) {
		pki__err(err, "key generation: %s", pki__ossl());
		goto out;
	}
	if (pki_cert_issue(ca, key, o, now, &x, err))
		goto out;
	if (out && pki_cert_identity(x, out)) {
		pki__err(err, "issued certificate does not parse back");
		goto out;
	}
	if (write_pem_excl(key_path, 0600, pem_key_cb, key, err))
		goto out;
	struct cert_pair cp = { x, ca->cert };
	if (o->kind == PKI_KIND_GATEWAY ?
		    write_pem_excl(crt_path, 0644, pem_chain_cb, &cp, err) :
		    write_pem_excl(crt_path, 0644, pem_cert_cb, x, err)) {
		unlink(key_path);
		goto out;
	}
	rc = UMB_OK;
out:
	X509_free(x);
	EVP_PKEY_free(key);
	free(crt_path);
	free(key_path);
	return rc;
}

/* ---- certificate -> identity ---- */

/* Copy an ASN1 string that must be a valid name into out[PKI_NAME_MAX+1]. */
static int name_copy(const unsigned char *p, int n, char *out)
{
	if (n <= 0 || !pki_name_valid(str_make((const char *)p, (size_t)n)))
		return UMB_ERR;
	memcpy(out, p, (size_t)n);
	out[n] = 0;
	return UMB_OK;
}

int pki_cert_identity(X509 *cert, struct pki_identity *out)
{
	int rc = UMB_ERR;
	bool have_name = false, have_kind = false;
	GENERAL_NAMES *gens = NULL;
	struct tm tm;

	memset(out, 0, sizeof(*out));
	if (!cert)
		goto out;
	gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type != GEN_URI)
			continue;
		const unsigned char *p = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
		int n = ASN1_STRING_length(g->d.uniformResourceIdentifier);
		size_t li = sizeof(PKI_URI_IDENTITY) - 1, lk = sizeof(PKI_URI_KIND) - 1;
		if ((size_t)n > li && memcmp(p, PKI_URI_IDENTITY, li) == 0) {
			/* Two identity URIs would make "who" ambiguous. */
			if (have_name || name_copy(p + li, n - (int)li, out->name))
				goto out;
			have_name = true;
		} else if ((size_t)n > lk && memcmp(p, PKI_URI_KIND, lk) == 0) {
			char k[16];
			if (have_kind || (size_t)n - lk >= sizeof(k))
				goto out;
			memcpy(k, p + lk, (size_t)n - lk);
			k[n - lk] = 0;
			if (pki_kind_parse(k, &out->kind))
				goto out;
			have_kind = true;
		}
	}
	if (!have_name || !have_kind)
		goto out;
	X509_NAME *subj = X509_get_subject_name(cert);
	int idx = X509_NAME_get_index_by_NID(subj, NID_organizationalUnitName, -1);
	if (idx >= 0) {
		ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
		if (name_copy(ASN1_STRING_get0_data(d), ASN1_STRING_length(d),
			      out->team))
			goto out;
	}
	if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1)
		goto out;
	out->not_after = (int64_t)timegm(&tm);
	if (pki_cert_fp(cert, out->fp))
		goto out;
	rc = UMB_OK;
out:
	GENERAL_NAMES_free(gens);
	if (rc)
		memset(out, 0, sizeof(*out));
	ERR_clear_error();
	return rc;
}

X509_STORE *pki_store_new(X509 *ca)
{
	X509_STORE *st = X509_STORE_new();
	if (st && X509_STORE_add_cert(st, ca) != 1) {
		X509_STORE_free(st);
		st = NULL;
	}
	return st;
}

int pki_verify_cert(X509_STORE *store, X509 *leaf,
		    STACK_OF(X509) *untrusted, time_t now, int purpose,
		    struct pki_identity *out, char *err)
{
	int rc = UMB_ERR;
	struct pki_identity tmp;
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();

	if (!ctx || !leaf || X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1) {
		pki__err(err, "verify: %s", pki__ossl());
		goto out;
	}
	X509_STORE_CTX_set_time(ctx, 0, now);
	if (purpose && X509_STORE_CTX_set_purpose(ctx, purpose) != 1) {
		pki__err(err, "verify: bad purpose");
		goto out;
	}
	if (X509_verify_cert(ctx) != 1) {
		pki__err(err, "certificate not trusted: %s",
			 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		goto out;
	}
	if (pki_cert_identity(leaf, out ? out : &tmp)) {
		pki__err(err, "certificate carries no umbra identity");
		goto out;
	}
	rc = UMB_OK;
out:
	X509_STORE_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

static int ident_cmp(const void *a, const void *b)
{
	return strcmp(((const struct pki_identity *)a)->name,
		      ((const struct pki_identity *)b)->name);
}

int pki_list(const char *dir, struct pki_identity **out, size_t *n, char *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t cap = 0;

	*out = NULL;
	*n = 0;
	if (!d) {
		pki__err(err, "%s: %s", dir, strerror(errno));
		return UMB_ERR;
	}
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len < 5 || strcmp(de->d_name + len - 4, ".crt") != 0 ||
		    strcmp(de->d_name, "ca.crt") == 0)
			continue;
		char *path = path_join(dir, de->d_name, "");
		FILE *f = fopen(path, "r");
		X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
		if (f)
			fclose(f);
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			*out = umb_realloc(*out, cap * sizeof(**out));
		}
		if (!x || pki_cert_identity(x, &(*out)[*n]))
			fprintf(stderr, "umbra pki: skipping %s: not an umbra identity certificate\n",
				path);
		else
			(*n)++;
		X509_free(x);
		free(path);
		ERR_clear_error();
	}
	closedir(d);
	if (*n)
		qsort(*out, *n, sizeof(**out), ident_cmp);
	return UMB_OK;
}

/* ---- CSR signing (POST /enroll) ---- */

/* The CSR's requested SAN URIs may only repeat what the token grants. */
static int csr_check_san(X509_REQ *req, const struct pki_token_claims *c,
			 char *err)
{
	int rc = UMB_OK;
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	GENERAL_NAMES *gens = NULL;
	char want_id[sizeof(PKI_URI_IDENTITY) + PKI_NAME_MAX + 1];
	char want_kind[sizeof(PKI_URI_KIND) + 16];

	snprintf(want_id, sizeof(want_id), "%s%s", PKI_URI_IDENTITY, c->sub);
	snprintf(want_kind, sizeof(want_kind), "%s%s", PKI_URI_KIND,
		 pki_kind_name(c->kind));
	if (exts)
		gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type != GEN_URI)
			continue;
		struct str u = str_make(
			(const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
			(size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier));
		if (!str_eq_cstr(u, want_id) && !str_eq_cstr(u, want_kind)) {
			pki__err(err, "CSR asks for URI '%.*s' but the token is for identity '%s'",
				 (int)UMB_MIN(u.n, 80), u.p, c->sub);
			rc = UMB_ERR;
			break;
		}
	}
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return rc;
}

int pki_enroll_sign(const struct pki_ca *ca,
		    const struct pki_token_claims *claims, struct str csr_pem,
		    time_t now, struct buf *out_cert_pem,
		    struct pki_identity *out_id, char *err)
{
	int rc = UMB_ERR;
	BIO *in = NULL, *mem = NULL;
	X509_REQ *req = NULL;
	X509 *x = NULL;
	EVP_PKEY *pub;

	if (err)
		err[0] = 0;
	if (csr_pem.n == 0 || csr_pem.n > PKI_CSR_MAX) {
		pki__err(err, "CSR is empty or larger than %d bytes", PKI_CSR_MAX);
		goto out;
	}
	if (!pki_name_valid(str_cstr(claims->sub))) {
		pki__err(err, "token names no valid identity");
		goto out;
	}
	in = BIO_new_mem_buf(csr_pem.p, (int)csr_pem.n);
	if (!in || !(req = PEM_read_bio_X509_REQ(in, NULL, NULL, NULL))) {
		pki__err(err, "CSR is not a PEM certificate request");
		goto out;
	}
	if (!(pub = X509_REQ_get0_pubkey(req))) {
		pki__err(err, "CSR has no usable public key");
		goto out;
	}
	if (key_is_p256(pub)) {
		/* accepted */
	} else if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA) {
		int bits = EVP_PKEY_get_bits(pub);
		/* The upper bound keeps a hostile CSR from costing seconds. */
		if (bits < 2048 || bits > 8192) {
			pki__err(err, "CSR RSA key is %d bits (2048-8192 accepted)", bits);
			goto out;
		}
	} else {
		pki__err(err, "CSR key must be EC P-256 or RSA >= 2048");
		goto out;
	}
	if (X509_REQ_verify(req, pub) != 1) {
		pki__err(err, "CSR signature does not verify");
		goto out;
	}
	X509_NAME *subj = X509_REQ_get_subject_name(req);
	int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
	if (idx < 0 || X509_NAME_get_index_by_NID(subj, NID_commonName, idx) >= 0) {
		pki__err(err, "CSR subject must have exactly one CN (the identity '%s')",
			 claims->sub);
		goto out;
	}
	ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
	struct str cns = str_make((const char *)ASN1_STRING_get0_data(cn),
				  (size_t)ASN1_STRING_length(cn));
	if (!str_eq_cstr(cns, claims->sub)) {
		pki__err(err, "CSR is for '%.*s' but the token is for identity '%s'",
			 (int)UMB_MIN(cns.n, 80), cns.p, claims->sub);
		goto out;
	}
	if (csr_check_san(req, claims, err))
		goto out;
	struct pki_issue_opts o = {
		.name = claims->sub,
		.kind = claims->kind,
		.team = claims->team[0] ? claims->team : NULL,
		.lifetime_s = PKI_CERT_LIFETIME_S,
	};
	if (pki_cert_issue(ca, pub, &o, now, &x, err))
		goto out;
	if (out_id && pki_cert_identity(x, out_id)) {
		pki__err(err, "issued certificate does not parse back");
		goto out;
	}
	char *p;
	long n;
	if (!(mem = BIO_new(BIO_s_mem())) || PEM_write_bio_X509(mem, x) != 1 ||
	    (n = BIO_get_mem_data(mem, &p)) <= 0 ||
	    buf_append(out_cert_pem, p, (size_t)n)) {
		pki__err(err, "writing certificate: %s", pki__ossl());
		goto out;
	}
	rc = UMB_OK;
out:
	X509_free(x);
	X509_REQ_free(req);
	BIO_free(in);
	BIO_free(mem);
	ERR_clear_error();
	return rc;
}
