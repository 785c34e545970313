/* fuzz_token.c — enrollment token verification on arbitrary bytes with a
 * fixed CA: must never crash, leak or accept anything the CA did not sign.
 * Also runs the unverified decoder (the enrolling device's view). */
#include "pki_fuzz_ca.h"

static struct pki_ca ca;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	UMB_UNUSED(argc);
	UMB_UNUSED(argv);
	fuzz_ca_load(&ca);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pki_token_claims c;
	char err[PKI_ERR_LEN];
	struct str tok = str_make((const char *)data, size);

	if (pki_token_verify(&ca, tok, FUZZ_NOW, &c, err) == 0) {
		/* Whatever verifies must be fully valid claims. */
		if (!pki_name_valid(str_cstr(c.sub)) || strcmp(c.ca_fp, ca.fp) != 0 ||
		    strlen(c.jti) != 32 || c.exp <= FUZZ_NOW)
			abort();
	} else if (c.sub[0]) {
		abort(); /* nothing may leak out of a refused token */
	}
	pki_token_decode_unverified(tok, &c, err);
	return 0;
}
