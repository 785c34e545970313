/* fuzz_csr.c — POST /enroll's CSR handling (pki_enroll_sign) on arbitrary
 * bytes, for a token naming "fuzz": must never crash or leak, and anything
 * it signs must be a certificate for exactly that identity.
 *
 * Three shapes per input:
 *  - starting with '-': the bytes as is (the PEM parser);
 *  - otherwise as DER wrapped in a CERTIFICATE REQUEST PEM block, so the
 *    fuzzer mutates the ASN.1 rather than base64 text;
 *  - and, when that DER parses, given a fixed P-256 key and re-signed
 *    with it: a mutated body then still passes the self-signature check,
 *    which lets the fuzzer reach the CN and SAN checks behind it. */
#include "pki_fuzz_ca.h"

static struct pki_ca ca;
static struct pki_token_claims claims;
static EVP_PKEY *resign_key;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	UMB_UNUSED(argc);
	UMB_UNUSED(argv);
	fuzz_ca_load(&ca);
	strcpy(claims.sub, "fuzz");
	claims.kind = PKI_KIND_CLIENT;
	strcpy(claims.team, "red");
	memcpy(claims.ca_fp, ca.fp, sizeof(claims.ca_fp));
	resign_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!resign_key)
		abort();
	return 0;
}

static void one(struct str in)
{
	struct buf out;
	struct pki_identity id;
	char err[PKI_ERR_LEN];

	buf_init(&out, 1 << 16);
	if (pki_enroll_sign(&ca, &claims, in, FUZZ_NOW, &out, &id, err) == 0) {
		if (strcmp(id.name, "fuzz") != 0 || id.kind != PKI_KIND_CLIENT ||
		    strcmp(id.team, "red") != 0 || out.n == 0)
			abort();
	} else if (out.n != 0 || !err[0]) {
		abort();
	}
	buf_clear(&out);
}

/* DER bytes -> PEM text in a fresh memory BIO (the caller frees it). */
static BIO *der_to_pem(const void *der, long n, struct str *pem)
{
	char *p;
	long len;
	BIO *b = BIO_new(BIO_s_mem());
	if (!b || PEM_write_bio(b, "CERTIFICATE REQUEST", "", der, n) <= 0 ||
	    (len = BIO_get_mem_data(b, &p)) <= 0)
		abort();
	*pem = str_make(p, (size_t)len);
	return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct str pem;

	if (size == 0 || data[0] == '-') {
		one(str_make((const char *)data, size));
		return 0;
	}
	BIO *b = der_to_pem(data, (long)size, &pem);
	one(pem);
	BIO_free(b);

	const unsigned char *q = data;
	X509_REQ *req = d2i_X509_REQ(NULL, &q, (long)size);
	unsigned char *der = NULL;
	int n;
	if (req && X509_REQ_set_pubkey(req, resign_key) == 1 &&
	    X509_REQ_sign(req, resign_key, EVP_sha256()) > 0 &&
	    (n = i2d_X509_REQ(req, &der)) > 0) {
		b = der_to_pem(der, n, &pem);
		one(pem);
		BIO_free(b);
	}
	OPENSSL_free(der);
	X509_REQ_free(req);
	ERR_clear_error();
	return 0;
}
