/* test_sigv4.c — unit tests for providers/sigv4.c against AWS's published
 * Signature Version 4 vectors.
 *
 * Sources (data transcribed, not computed here):
 *  - aws-sig-v4-test-suite (2015-08-30 edition, the one the AWS
 *    "Signature Version 4 test suite" page links): get-vanilla,
 *    post-vanilla, get-vanilla-query-order-key-case, post-x-www-form-
 *    urlencoded(-parameters), get-header-value-trim, post-header-key-sort,
 *    post-header-value-case, ...; each case's .creq (canonical request),
 *    .sts (its SHA-256 is the last line checked here) and .authz.
 *  - awslabs/aws-c-auth tests/aws-signing-test-suite/v4/<case>/
 *    (header-signed-request.txt, context.json): the *-normalized path
 *    cases, get-header-key-duplicate, get-vanilla-with-session-token,
 *    get-vanilla-query-order-encoded, and the newer post-x-www-form-
 *    urlencoded that signs content-length and x-amz-content-sha256.
 *  - The IAM ListUsers example of the AWS General Reference
 *    ("Create a signed AWS API request"), service iam.
 * Every case signs with AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
 * us-east-1, at 20150830T123600Z; service "service" unless noted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "providers/sigv4.h"

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define DATE "20150830T123600Z"
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define FORM_SHA "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
#define HOST "Host:example.amazonaws.com\n"
#define XDATE "X-Amz-Date:" DATE "\n"

struct vector {
	const char *name;
	const char *method, *path, *query;
	const char *headers; /* "Name:value\n" lines, as the request sends them */
	const char *body;
	bool normalize;
	const char *service; /* NULL: "service" */
	const char *creq;    /* expected canonical request, when transcribed */
	const char *sts_hash;/* last line of the expected string to sign */
	const char *signature;
};

static const struct vector vectors[] = {
	{ "get-vanilla", "GET", "/", "", HOST XDATE, "", false, NULL,
	  "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:" DATE "\n\nhost;x-amz-date\n" EMPTY_SHA,
	  "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
	  "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31" },
	{ "post-vanilla", "POST", "/", "", HOST XDATE, "", false, NULL,
	  "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:" DATE "\n\nhost;x-amz-date\n" EMPTY_SHA,
	  "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
	  "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b" },
	{ "get-vanilla-query-order-key-case", "GET", "/", "Param2=value2&Param1=value1", HOST XDATE,
	  "", false, NULL,
	  "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:" DATE
	  "\n\nhost;x-amz-date\n" EMPTY_SHA,
	  "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
	  "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500" },
	{ "get-vanilla-query-unreserved", "GET", "/",
	  "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
	  "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
	  HOST XDATE, "", false, NULL, NULL,
	  "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
	  "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197" },
	{ "get-vanilla-utf8-query", "GET", "/", "\xe1\x88\xb4=bar", HOST XDATE, "", false, NULL,
	  "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\nx-amz-date:" DATE
	  "\n\nhost;x-amz-date\n" EMPTY_SHA,
	  "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
	  "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04" },
	{ "get-vanilla-query-order-encoded (aws-c-auth)", "GET", "/",
	  "Param-3=Value3&Param=Value2&%E1%88%B4=Value1", HOST XDATE, "", false, NULL, NULL, NULL,
	  "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac" },
	{ "get-vanilla-empty-query-key (aws-c-auth)", "GET", "/", "Param1=value1", HOST XDATE, "",
	  false, NULL, NULL, NULL,
	  "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb" },
	{ "post-vanilla-query", "POST", "/", "Param1=value1", HOST XDATE, "", false, NULL, NULL,
	  "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
	  "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11" },
	{ "get-header-key-duplicate (aws-c-auth)", "GET", "/", "",
	  HOST "My-Header1:value2\nMy-Header1:value2\nMy-Header1:value1\n" XDATE, "", false, NULL,
	  "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:" DATE
	  "\n\nhost;my-header1;x-amz-date\n" EMPTY_SHA,
	  "dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
	  "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea" },
	{ "get-header-value-order", "GET", "/", "",
	  HOST "My-Header1:value4\nMy-Header1:value1\nMy-Header1:value3\nMy-Header1:value2\n" XDATE,
	  "", false, NULL,
	  "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\nx-amz-date:" DATE
	  "\n\nhost;my-header1;x-amz-date\n" EMPTY_SHA,
	  "31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
	  "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01" },
	{ "get-header-value-trim", "GET", "/", "",
	  HOST "My-Header1: value1\nMy-Header2: \"a   b   c\"\n" XDATE, "", false, NULL,
	  "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:" DATE
	  "\n\nhost;my-header1;my-header2;x-amz-date\n" EMPTY_SHA,
	  "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
	  "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736" },
	{ "post-header-key-sort", "POST", "/", "", HOST "My-Header1:value1\n" XDATE, "", false, NULL,
	  NULL, "9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65",
	  "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c" },
	{ "post-header-value-case", "POST", "/", "", HOST "My-Header1:VALUE1\n" XDATE, "", false, NULL,
	  "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:" DATE
	  "\n\nhost;my-header1;x-amz-date\n" EMPTY_SHA,
	  NULL, "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d" },
	{ "get-unreserved", "GET",
	  "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", "", HOST XDATE, "",
	  false, NULL, NULL, "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
	  "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f" },
	{ "get-utf8", "GET", "/\xe1\x88\xb4", "", HOST XDATE, "", true, NULL,
	  "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:" DATE
	  "\n\nhost;x-amz-date\n" EMPTY_SHA,
	  "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
	  "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85" },
	{ "get-space", "GET", "/example space/", "", HOST XDATE, "", true, NULL,
	  "GET\n/example%20space/\n\nhost:example.amazonaws.com\nx-amz-date:" DATE
	  "\n\nhost;x-amz-date\n" EMPTY_SHA,
	  "63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
	  "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741" },
	{ "get-slashes-unnormalized (aws-c-auth)", "GET", "//example//", "", HOST XDATE, "", false,
	  NULL,
	  "GET\n//example//\n\nhost:example.amazonaws.com\nx-amz-date:" DATE
	  "\n\nhost;x-amz-date\n" EMPTY_SHA,
	  "528ec3105ee1f34ab014bb0a1a45da0ed2742a4fea3555149e5b4d5d201eb240",
	  "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5" },
	{ "get-slashes-normalized (aws-c-auth)", "GET", "//example//", "", HOST XDATE, "", true, NULL,
	  NULL, NULL, "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84" },
	{ "get-relative-relative-normalized (aws-c-auth)", "GET", "/example1/example2/../..", "",
	  HOST XDATE, "", true, NULL, NULL, NULL,
	  "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31" },
	{ "get-slash-pointless-dot-normalized (aws-c-auth)", "GET", "/./example", "", HOST XDATE, "",
	  true, NULL, NULL, NULL,
	  "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5" },
	{ "post-x-www-form-urlencoded", "POST", "/", "",
	  "Content-Type:application/x-www-form-urlencoded\n" HOST XDATE, "Param1=value1", false, NULL,
	  "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
	  "x-amz-date:" DATE "\n\ncontent-type;host;x-amz-date\n" FORM_SHA,
	  "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
	  "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a" },
	{ "post-x-www-form-urlencoded-parameters", "POST", "/", "",
	  "Content-Type:application/x-www-form-urlencoded; charset=utf8\n" HOST XDATE, "Param1=value1",
	  false, NULL,
	  "POST\n/\n\ncontent-type:application/x-www-form-urlencoded; charset=utf8\n"
	  "host:example.amazonaws.com\nx-amz-date:" DATE "\n\ncontent-type;host;x-amz-date\n" FORM_SHA,
	  "2e1cf7ed91881a30569e46552437e4156c823447bf1781b921b5d486c568dd1c",
	  "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe" },
	{ "post-x-www-form-urlencoded (aws-c-auth)", "POST", "/", "",
	  "Content-Type:application/x-www-form-urlencoded\n" HOST "Content-Length:13\n" XDATE
	  "X-Amz-Content-Sha256:" FORM_SHA "\n",
	  "Param1=value1", false, NULL,
	  "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded\n"
	  "host:example.amazonaws.com\nx-amz-content-sha256:" FORM_SHA "\nx-amz-date:" DATE
	  "\n\ncontent-length;content-type;host;x-amz-content-sha256;x-amz-date\n" FORM_SHA,
	  "b1edd1d03544c25390e32085d55b57acc9a3961bb59415ff86c45c3d89d16cfb",
	  "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b" },
	{ "get-vanilla-with-session-token (aws-c-auth)", "GET", "/", "",
	  HOST XDATE "X-Amz-Security-Token:6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267\n",
	  "", true, NULL, NULL, NULL,
	  "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8" },
	{ "IAM ListUsers (AWS General Reference)", "GET", "/", "Action=ListUsers&Version=2010-05-08",
	  "Host:iam.amazonaws.com\nContent-Type:application/x-www-form-urlencoded; charset=utf-8\n" XDATE,
	  "", false, "iam",
	  "GET\n/\nAction=ListUsers&Version=2010-05-08\ncontent-type:application/x-www-form-urlencoded; "
	  "charset=utf-8\nhost:iam.amazonaws.com\nx-amz-date:" DATE "\n\ncontent-type;host;x-amz-date\n"
	  EMPTY_SHA,
	  "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59",
	  "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7" },
};

/* "Name:value\n" lines into header views (into the vector's text). */
static size_t parse_headers(const char *text, struct sigv4_header *h, size_t max)
{
	size_t n = 0;
	const char *p = text;
	while (*p && n < max) {
		const char *nl = strchr(p, '\n');
		const char *colon = strchr(p, ':');
		assert_non_null(nl);
		assert_true(colon && colon < nl);
		h[n].name = str_make(p, (size_t)(colon - p));
		h[n].value = str_make(colon + 1, (size_t)(nl - colon - 1));
		n++;
		p = nl + 1;
	}
	return n;
}

static void run_vector(const struct vector *v)
{
	struct sigv4_header h[SIGV4_MAX_HEADERS];
	size_t nh = parse_headers(v->headers, h, SIGV4_MAX_HEADERS);
	char payload[SIGV4_HEX_LEN + 1];
	sigv4_sha256_hex(v->body, strlen(v->body), payload);
	struct sigv4_request r = {
		.method = str_cstr(v->method),
		.path = str_cstr(v->path),
		.query = str_cstr(v->query),
		.headers = h,
		.n_headers = nh,
		.payload_hash = str_cstr(payload),
		.normalize_path = v->normalize,
	};
	struct sigv4_key k = {
		.access_key_id = STR(AKID),
		.secret_access_key = STR(SECRET),
		.region = STR("us-east-1"),
		.service = str_cstr(v->service ? v->service : "service"),
		.amz_date = STR(DATE),
	};
	struct buf creq, sts, authz, want;
	buf_init(&creq, 0);
	buf_init(&sts, 0);
	buf_init(&authz, 0);
	buf_init(&want, 0);
	assert_int_equal(sigv4_canonical_request(&r, &creq), 0);
	if (v->creq && strcmp(creq.p, v->creq)) {
		fprintf(stderr, "%s: canonical request\n got: %s\nwant: %s\n", v->name, creq.p, v->creq);
		fail();
	}
	assert_int_equal(sigv4_string_to_sign(&k, buf_str(&creq), &sts), 0);
	if (v->sts_hash) {
		buf_printf(&want, "AWS4-HMAC-SHA256\n" DATE "\n20150830/us-east-1/%s/aws4_request\n%s",
			   v->service ? v->service : "service", v->sts_hash);
		if (strcmp(sts.p, want.p)) {
			fprintf(stderr, "%s: string to sign\n got: %s\nwant: %s\n", v->name, sts.p, want.p);
			fail();
		}
	}
	char sig[SIGV4_HEX_LEN + 1];
	assert_int_equal(sigv4_signature(&k, buf_str(&sts), sig), 0);
	if (strcmp(sig, v->signature)) {
		fprintf(stderr, "%s: signature\n got: %s\nwant: %s\n", v->name, sig, v->signature);
		fail();
	}
	/* the Authorization header puts the same pieces together */
	assert_int_equal(sigv4_authorization(&r, &k, &authz), 0);
	struct buf sh;
	buf_init(&sh, 0);
	assert_int_equal(sigv4_signed_headers(&r, &sh), 0);
	buf_reset(&want);
	buf_printf(&want,
		   "AWS4-HMAC-SHA256 Credential=" AKID "/20150830/us-east-1/%s/aws4_request, "
		   "SignedHeaders=%s, Signature=%s",
		   v->service ? v->service : "service", sh.p, v->signature);
	assert_string_equal(authz.p, want.p);
	buf_clear(&sh);
	buf_clear(&creq);
	buf_clear(&sts);
	buf_clear(&authz);
	buf_clear(&want);
}

static void test_suite_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < UMB_ARRAY_LEN(vectors); i++)
		run_vector(&vectors[i]);
}

/* The pieces the vectors fix, alone. */
static void test_helpers(void **state)
{
	(void)state;
	char d[SIGV4_DATE_LEN + 1];
	sigv4_amz_date(1440938160, d); /* 2015-08-30T12:36:00Z */
	assert_string_equal(d, DATE);
	sigv4_amz_date(0, d);
	assert_string_equal(d, "19700101T000000Z");

	char h[SIGV4_HEX_LEN + 1];
	sigv4_sha256_hex("", 0, h);
	assert_string_equal(h, EMPTY_SHA);
	sigv4_sha256_hex("Param1=value1", 13, h);
	assert_string_equal(h, FORM_SHA);

	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(sigv4_uri_encode(&b, STR("a:b/c d~\xc3\xa9"), false), 0);
	assert_string_equal(b.p, "a%3Ab%2Fc%20d~%C3%A9");
	buf_reset(&b);
	assert_int_equal(sigv4_uri_encode(&b, STR("/a:b/c"), true), 0);
	assert_string_equal(b.p, "/a%3Ab/c");
	buf_clear(&b);
}

/* Bedrock's case: the model id's ':' goes on the wire as %3A and is signed
 * as %253A (non-S3 services double-encode); '/' in an ARN likewise. */
static void test_double_encoding(void **state)
{
	(void)state;
	const char *paths[][2] = {
		{ "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
		  "/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse" },
		{ "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.x/converse-stream",
		  "/model/arn%253Aaws%253Abedrock%253Aus-east-1%253A123%253Ainference-profile%252Fus.x/converse-stream" },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(paths); i++) {
		for (int norm = 0; norm < 2; norm++) {
			struct sigv4_header h[] = { { STR("host"), STR("h") } };
			struct sigv4_request r = { .method = STR("POST"), .path = str_cstr(paths[i][0]),
						   .headers = h, .n_headers = 1,
						   .payload_hash = STR(EMPTY_SHA),
						   .normalize_path = norm };
			struct buf c;
			buf_init(&c, 0);
			assert_int_equal(sigv4_canonical_request(&r, &c), 0);
			const char *nl = strchr(c.p, '\n');
			const char *nl2 = strchr(nl + 1, '\n');
			assert_int_equal((size_t)(nl2 - nl - 1), strlen(paths[i][1]));
			assert_memory_equal(nl + 1, paths[i][1], strlen(paths[i][1]));
			buf_clear(&c);
		}
	}
}

static void test_query_and_header_edges(void **state)
{
	(void)state;
	struct sigv4_header h[] = { { STR("Host"), STR("  x   y  ") }, { STR("b"), STR("") } };
	struct sigv4_request r = {
		.method = STR("GET"),
		.path = STR(""),
		/* a bare name, an empty pair, a stray '%', '+' kept literally,
		 * repeated names ordered by value */
		.query = STR("z&&a=2&a=1&p=%zz&s=a+b&e=%41"),
		.headers = h,
		.n_headers = 2,
		.payload_hash = STR(EMPTY_SHA),
	};
	struct buf c;
	buf_init(&c, 0);
	assert_int_equal(sigv4_canonical_request(&r, &c), 0);
	assert_string_equal(c.p, "GET\n/\na=1&a=2&e=A&p=%25zz&s=a%2Bb&z=\nb:\nhost:x y\n\nb;host\n" EMPTY_SHA);
	buf_clear(&c);

	/* caps */
	struct sigv4_header many[SIGV4_MAX_HEADERS + 1];
	for (size_t i = 0; i < UMB_ARRAY_LEN(many); i++)
		many[i] = (struct sigv4_header){ STR("x"), STR("y") };
	r.headers = many;
	r.n_headers = UMB_ARRAY_LEN(many);
	buf_init(&c, 0);
	assert_int_equal(sigv4_canonical_request(&r, &c), UMB_ERR);
	buf_clear(&c);
	struct sigv4_header noname[] = { { STR(""), STR("y") } };
	r.headers = noname;
	r.n_headers = 1;
	buf_init(&c, 0);
	assert_int_equal(sigv4_canonical_request(&r, &c), UMB_ERR);
	buf_clear(&c);
}

static void test_wrong_inputs_change_the_signature(void **state)
{
	(void)state;
	struct sigv4_header h[] = { { STR("host"), STR("example.amazonaws.com") },
				    { STR("x-amz-date"), STR(DATE) } };
	struct sigv4_request r = { .method = STR("GET"), .path = STR("/"), .headers = h,
				   .n_headers = 2, .payload_hash = STR(EMPTY_SHA) };
	struct sigv4_key k = { STR(AKID), STR(SECRET), STR("us-east-1"), STR("service"), STR(DATE) };
	struct buf a, b;
	buf_init(&a, 0);
	buf_init(&b, 0);
	assert_int_equal(sigv4_authorization(&r, &k, &a), 0);
	k.secret_access_key = STR("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEz");
	assert_int_equal(sigv4_authorization(&r, &k, &b), 0);
	assert_string_not_equal(a.p, b.p);
	k.secret_access_key = STR(SECRET);
	k.region = STR("us-west-2");
	buf_reset(&b);
	assert_int_equal(sigv4_authorization(&r, &k, &b), 0);
	assert_string_not_equal(a.p, b.p);
	assert_non_null(strstr(b.p, "/us-west-2/service/aws4_request"));
	/* a malformed date is refused, not signed */
	k.amz_date = STR("2015");
	buf_reset(&b);
	assert_int_equal(sigv4_authorization(&r, &k, &b), UMB_ERR);
	buf_clear(&a);
	buf_clear(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_suite_vectors),
		cmocka_unit_test(test_helpers),
		cmocka_unit_test(test_double_encoding),
		cmocka_unit_test(test_query_and_header_edges),
		cmocka_unit_test(test_wrong_inputs_change_the_signature),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
