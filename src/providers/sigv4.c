/* sigv4.c — AWS Signature Version 4 (sigv4.h has the construction). */
#include <pthread.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "providers/sigv4.h"

/* ---- OpenSSL algorithms, fetched once: looking them up by name per
 * call costs a lock and a provider search each time ---- */

static EVP_MAC *sigv4_hmac;
static EVP_MD *sigv4_md;
static pthread_once_t sigv4_once = PTHREAD_ONCE_INIT;

static void sigv4_fetch(void)
{
	sigv4_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	sigv4_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void hex32(const unsigned char d[32], char out[SIGV4_HEX_LEN + 1])
{
	static const char hx[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hx[d[i] >> 4];
		out[2 * i + 1] = hx[d[i] & 15];
	}
	out[SIGV4_HEX_LEN] = 0;
}

void sigv4_sha256_hex(const void *p, size_t n, char out[SIGV4_HEX_LEN + 1])
{
	unsigned char d[32];
	unsigned int dn = 0;
	pthread_once(&sigv4_once, sigv4_fetch);
	/* cannot fail for SHA-256 short of OOM or a broken OpenSSL */
	if (!sigv4_md || EVP_Digest(p, n, d, &dn, sigv4_md, NULL) != 1 || dn != 32)
		umb_bug(__FILE__, __LINE__, "EVP_Digest(sha256)");
	hex32(d, out);
}

void sigv4_amz_date(time_t t, char out[SIGV4_DATE_LEN + 1])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, SIGV4_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

/* ---- encoding ---- */

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

int sigv4_uri_encode(struct buf *out, struct str s, bool keep_slash)
{
	static const char hx[] = "0123456789ABCDEF";
	int rc = buf_reserve(out, s.n * 3);
	if (rc)
		return rc;
	char *o = out->p + out->n;
	for (size_t i = 0; i < s.n; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (unreserved(c) || (keep_slash && c == '/')) {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hx[c >> 4];
			*o++ = hx[c & 15];
		}
	}
	out->n = (size_t)(o - out->p);
	out->p[out->n] = 0;
	return UMB_OK;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode s into out (a '%' not followed by two hex digits stays
 * as it is: it is then encoded as %25, as the SDKs do). */
static int percent_decode(struct buf *out, struct str s)
{
	int rc = buf_reserve(out, s.n);
	if (rc)
		return rc;
	for (size_t i = 0; i < s.n; i++) {
		int hi, lo;
		if (s.p[i] == '%' && i + 2 < s.n && (hi = hexval(s.p[i + 1])) >= 0 &&
		    (lo = hexval(s.p[i + 2])) >= 0) {
			out->p[out->n++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out->p[out->n++] = s.p[i];
		}
	}
	out->p[out->n] = 0;
	return UMB_OK;
}

/* ---- canonical URI ---- */

/* The path after removing empty, "." and ".." segments (RFC 3986 5.2.4
 * plus collapsing "//"), written to out with each segment encoded. */
static int uri_normalized(struct buf *out, struct str path)
{
	struct str seg[SIGV4_MAX_SEGMENTS];
	size_t n = 0, i = 0;
	while (i < path.n) {
		size_t j = i;
		while (j < path.n && path.p[j] != '/')
			j++;
		struct str s = str_make(path.p + i, j - i);
		if (str_eq(s, STR("..")))
			n -= n > 0;
		else if (s.n && !str_eq(s, STR("."))) {
			if (n == SIGV4_MAX_SEGMENTS)
				return UMB_ERR;
			seg[n++] = s;
		}
		i = j + 1;
	}
	bool trailing = path.n && path.p[path.n - 1] == '/';
	int rc = buf_append_lit(out, "/");
	for (size_t k = 0; k < n && !rc; k++) {
		rc = sigv4_uri_encode(out, seg[k], false);
		if (!rc && (k + 1 < n || trailing))
			rc = buf_append_lit(out, "/");
	}
	return rc;
}

static int canonical_uri(const struct sigv4_request *r, struct buf *out)
{
	if (r->normalize_path)
		return uri_normalized(out, r->path);
	if (r->path.n == 0 || r->path.p[0] != '/') {
		int rc = buf_append_lit(out, "/");
		if (rc)
			return rc;
	}
	/* each segment encoded; the '/' between them kept */
	return sigv4_uri_encode(out, r->path, true);
}

/* ---- canonical query ---- */

struct qparam {
	size_t name_off, name_len, value_off, value_len; /* in the scratch buf */
};

/* Order by encoded name, then encoded value (bytewise). */
static int qparam_cmp(const char *base, const struct qparam *x, const struct qparam *y)
{
	struct str xn = str_make(base + x->name_off, x->name_len);
	struct str yn = str_make(base + y->name_off, y->name_len);
	size_t n = UMB_MIN(xn.n, yn.n);
	int c = n ? memcmp(xn.p, yn.p, n) : 0;
	if (c || xn.n != yn.n)
		return c ? c : (xn.n < yn.n ? -1 : 1);
	struct str xv = str_make(base + x->value_off, x->value_len);
	struct str yv = str_make(base + y->value_off, y->value_len);
	n = UMB_MIN(xv.n, yv.n);
	c = n ? memcmp(xv.p, yv.p, n) : 0;
	if (c || xv.n == yv.n)
		return c;
	return xv.n < yv.n ? -1 : 1;
}

/* An insertion sort (n is capped small; qsort would need a global for
 * the base pointer, and the signer runs on every worker thread). */
static void qparam_sort(const char *base, struct qparam *ps, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct qparam cur = ps[i];
		size_t j = i;
		while (j > 0 && qparam_cmp(base, &ps[j - 1], &cur) > 0) {
			ps[j] = ps[j - 1];
			j--;
		}
		ps[j] = cur;
	}
}

/* Decode then strictly re-encode one name or value into enc. */
static int q_recode(struct buf *enc, struct buf *tmp, struct str s, size_t *off, size_t *len)
{
	buf_reset(tmp);
	int rc = percent_decode(tmp, s);
	*off = enc->n;
	if (!rc)
		rc = sigv4_uri_encode(enc, buf_str(tmp), false);
	*len = enc->n - *off;
	return rc;
}

static int canonical_query(struct str q, struct buf *out)
{
	struct qparam ps[SIGV4_MAX_QUERY];
	size_t n = 0, i = 0;
	struct buf enc, tmp;
	int rc = UMB_OK;
	buf_init(&enc, 0);
	buf_init(&tmp, 0);
	while (i < q.n && !rc) {
		size_t j = i;
		while (j < q.n && q.p[j] != '&')
			j++;
		struct str p = str_make(q.p + i, j - i);
		i = j + 1;
		if (p.n == 0)
			continue;
		if (n == SIGV4_MAX_QUERY) {
			rc = UMB_ERR;
			break;
		}
		const char *eq = memchr(p.p, '=', p.n);
		struct str name = eq ? str_make(p.p, (size_t)(eq - p.p)) : p;
		struct str value = eq ? str_make(eq + 1, p.n - name.n - 1) : STR("");
		rc = q_recode(&enc, &tmp, name, &ps[n].name_off, &ps[n].name_len);
		if (!rc)
			rc = q_recode(&enc, &tmp, value, &ps[n].value_off, &ps[n].value_len);
		n++;
	}
	if (!rc)
		qparam_sort(enc.p, ps, n);
	for (size_t k = 0; k < n && !rc; k++) {
		if (k)
			rc = buf_append_lit(out, "&");
		if (!rc)
			rc = buf_append(out, enc.p + ps[k].name_off, ps[k].name_len);
		if (!rc)
			rc = buf_append_lit(out, "=");
		if (!rc)
			rc = buf_append(out, enc.p + ps[k].value_off, ps[k].value_len);
	}
	buf_clear(&enc);
	buf_clear(&tmp);
	return rc;
}

/* ---- canonical headers ---- */

static int name_icmp(struct str a, struct str b)
{
	size_t n = UMB_MIN(a.n, b.n);
	for (size_t i = 0; i < n; i++) {
		int x = (unsigned char)a.p[i], y = (unsigned char)b.p[i];
		x += (x >= 'A' && x <= 'Z') * 32;
		y += (y >= 'A' && y <= 'Z') * 32;
		if (x != y)
			return x - y;
	}
	return a.n < b.n ? -1 : a.n > b.n;
}

/* Indexes of the headers sorted by lowercase name; equal names keep their
 * order (an insertion sort: stable, and n is small). */
static int header_order(const struct sigv4_request *r, size_t idx[SIGV4_MAX_HEADERS])
{
	if (r->n_headers > SIGV4_MAX_HEADERS)
		return UMB_ERR;
	for (size_t i = 0; i < r->n_headers; i++) {
		if (r->headers[i].name.n == 0)
			return UMB_ERR;
		size_t j = i;
		while (j > 0 && name_icmp(r->headers[idx[j - 1]].name, r->headers[i].name) > 0) {
			idx[j] = idx[j - 1];
			j--;
		}
		idx[j] = i;
	}
	return UMB_OK;
}

static int append_lower(struct buf *out, struct str s)
{
	int rc = buf_reserve(out, s.n);
	if (rc)
		return rc;
	for (size_t i = 0; i < s.n; i++) {
		char c = s.p[i];
		out->p[out->n++] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
	}
	out->p[out->n] = 0;
	return UMB_OK;
}

/* The value trimmed, with runs of spaces and tabs made one space. */
static int append_trimmed(struct buf *out, struct str v)
{
	int rc = buf_reserve(out, v.n);
	if (rc)
		return rc;
	bool pending_space = false, any = false;
	for (size_t i = 0; i < v.n; i++) {
		char c = v.p[i];
		if (c == ' ' || c == '\t') {
			pending_space = any;
			continue;
		}
		if (pending_space)
			out->p[out->n++] = ' ';
		pending_space = false;
		out->p[out->n++] = c;
		any = true;
	}
	out->p[out->n] = 0;
	return UMB_OK;
}

int sigv4_signed_headers(const struct sigv4_request *r, struct buf *out)
{
	size_t idx[SIGV4_MAX_HEADERS];
	int rc = header_order(r, idx);
	for (size_t i = 0; i < r->n_headers && !rc; i++) {
		struct str name = r->headers[idx[i]].name;
		if (i && !name_icmp(name, r->headers[idx[i - 1]].name))
			continue; /* a duplicate is listed once */
		if (i)
			rc = buf_append_lit(out, ";");
		if (!rc)
			rc = append_lower(out, name);
	}
	return rc;
}

static int canonical_headers(const struct sigv4_request *r, struct buf *out)
{
	size_t idx[SIGV4_MAX_HEADERS];
	int rc = header_order(r, idx);
	for (size_t i = 0; i < r->n_headers && !rc; i++) {
		const struct sigv4_header *h = &r->headers[idx[i]];
		bool same = i && !name_icmp(h->name, r->headers[idx[i - 1]].name);
		if (same) {
			rc = buf_append_lit(out, ",");
		} else {
			if (i)
				rc = buf_append_lit(out, "\n");
			if (!rc)
				rc = append_lower(out, h->name);
			if (!rc)
				rc = buf_append_lit(out, ":");
		}
		if (!rc)
			rc = append_trimmed(out, h->value);
	}
	if (!rc && r->n_headers)
		rc = buf_append_lit(out, "\n");
	return rc;
}

int sigv4_canonical_request(const struct sigv4_request *r, struct buf *out)
{
	int rc = buf_append_str(out, r->method);
	if (!rc)
		rc = buf_append_lit(out, "\n");
	if (!rc)
		rc = canonical_uri(r, out);
	if (!rc)
		rc = buf_append_lit(out, "\n");
	if (!rc)
		rc = canonical_query(r->query, out);
	if (!rc)
		rc = buf_append_lit(out, "\n");
	if (!rc)
		rc = canonical_headers(r, out);
	if (!rc)
		rc = buf_append_lit(out, "\n");
	if (!rc)
		rc = sigv4_signed_headers(r, out);
	if (!rc)
		rc = buf_append_lit(out, "\n");
	if (!rc)
		rc = buf_append_str(out, r->payload_hash);
	return rc;
}

/* ---- the signature ---- */

static int scope(const struct sigv4_key *k, struct buf *out)
{
	if (k->amz_date.n != SIGV4_DATE_LEN)
		return UMB_ERR;
	int rc = buf_append(out, k->amz_date.p, 8);
	if (!rc)
		rc = buf_printf(out, "/%.*s/%.*s/aws4_request", STR_FMT(k->region),
				STR_FMT(k->service));
	return rc;
}

int sigv4_string_to_sign(const struct sigv4_key *k, struct str creq, struct buf *out)
{
	char h[SIGV4_HEX_LEN + 1];
	sigv4_sha256_hex(creq.p, creq.n, h);
	int rc = buf_append_lit(out, "AWS4-HMAC-SHA256\n");
	if (!rc)
		rc = buf_append_str(out, k->amz_date);
	if (!rc)
		rc = buf_append_lit(out, "\n");
	if (!rc)
		rc = scope(k, out);
	if (!rc)
		rc = buf_printf(out, "\n%s", h);
	return rc;
}

/* One HMAC-SHA256 with a context whose digest is already set. */
static int hmac(EVP_MAC_CTX *ctx, const void *key, size_t kn, struct str msg,
		unsigned char out[32])
{
	size_t on = 0;
	if (EVP_MAC_init(ctx, key, kn, NULL) != 1 ||
	    EVP_MAC_update(ctx, (const unsigned char *)msg.p, msg.n) != 1 ||
	    EVP_MAC_final(ctx, out, &on, 32) != 1 || on != 32)
		return UMB_ERR;
	return UMB_OK;
}

int sigv4_signature(const struct sigv4_key *k, struct str sts, char out[SIGV4_HEX_LEN + 1])
{
	pthread_once(&sigv4_once, sigv4_fetch);
	if (!sigv4_hmac || k->amz_date.n != SIGV4_DATE_LEN || k->secret_access_key.n > 256)
		return UMB_ERR;
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(sigv4_hmac);
	if (!ctx)
		return UMB_ENOMEM;
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
		OSSL_PARAM_construct_end(),
	};
	unsigned char first[4 + 256], a[32], b[32];
	memcpy(first, "AWS4", 4);
	memcpy(first + 4, k->secret_access_key.p, k->secret_access_key.n);
	int rc = EVP_MAC_CTX_set_params(ctx, params) == 1 ? UMB_OK : UMB_ERR;
	if (!rc)
		rc = hmac(ctx, first, 4 + k->secret_access_key.n, str_make(k->amz_date.p, 8), a);
	if (!rc)
		rc = hmac(ctx, a, 32, k->region, b);
	if (!rc)
		rc = hmac(ctx, b, 32, k->service, a);
	if (!rc)
		rc = hmac(ctx, a, 32, STR("aws4_request"), b);
	if (!rc)
		rc = hmac(ctx, b, 32, sts, a);
	if (!rc)
		hex32(a, out);
	/* key material does not outlive the call */
	OPENSSL_cleanse(first, sizeof first);
	OPENSSL_cleanse(a, sizeof a);
	OPENSSL_cleanse(b, sizeof b);
	EVP_MAC_CTX_free(ctx);
	return rc;
}

int sigv4_authorization(const struct sigv4_request *r, const struct sigv4_key *k,
			struct buf *out)
{
	struct buf creq, sts;
	char sig[SIGV4_HEX_LEN + 1];
	buf_init(&creq, 0);
	buf_init(&sts, 0);
	int rc = sigv4_canonical_request(r, &creq);
	if (!rc)
		rc = sigv4_string_to_sign(k, buf_str(&creq), &sts);
	if (!rc)
		rc = sigv4_signature(k, buf_str(&sts), sig);
	if (!rc)
		rc = buf_printf(out, "AWS4-HMAC-SHA256 Credential=%.*s/", STR_FMT(k->access_key_id));
	if (!rc)
		rc = scope(k, out);
	if (!rc)
		rc = buf_append_lit(out, ", SignedHeaders=");
	if (!rc)
		rc = sigv4_signed_headers(r, out);
	if (!rc)
		rc = buf_printf(out, ", Signature=%s", sig);
	buf_clear(&creq);
	buf_clear(&sts);
	return rc;
}
