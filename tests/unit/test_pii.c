/* test_pii.c — unit tests for routing/pii.c: each detector's positives
 * and its tricky negatives (Luhn failures, bad IBAN checksums, invalid SSN
 * areas, phone-like order numbers and dates), distinct counting, word
 * boundaries across UTF-8 and hostile bytes, and the distinct set spilling
 * to the heap. The texts are fake data: documentation ranges and public
 * test numbers. Runs under ASan+UBSan too (make BUILD=build-asan
 * SANITIZE=1 unit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "routing/pii.h"

/* Distinct matches of one kind in a C string. */
static unsigned count(const char *text, enum pii_kind kind)
{
	struct pii_counts c;

	pii_scan(str_cstr(text), PII_ALL, &c);
	return c.n[kind];
}

/* Total matches of all kinds: negatives must not turn into another kind. */
static unsigned total(const char *text)
{
	struct pii_counts c;
	unsigned t = 0;

	pii_scan(str_cstr(text), PII_ALL, &c);
	for (unsigned k = 0; k < PII_KINDS; k++)
		t += c.n[k];
	return t;
}

/* The one match's span, through the callback. */
struct span {
	unsigned hits;
	enum pii_kind kind;
	size_t off, len;
};

static void span_cb(void *arg, enum pii_kind kind, size_t off, size_t len)
{
	struct span *sp = arg;

	sp->hits++;
	sp->kind = kind;
	sp->off = off;
	sp->len = len;
}

static void assert_span(const char *text, enum pii_kind kind, const char *want)
{
	struct span sp = { 0 };
	const char *at = strstr(text, want);

	assert_non_null(at);
	pii_scan_ex(str_cstr(text), PII_ALL, 0, NULL, span_cb, &sp);
	assert_int_equal(sp.hits, 1);
	assert_int_equal(sp.kind, kind);
	assert_int_equal(sp.off, (size_t)(at - text));
	assert_int_equal(sp.len, strlen(want));
}

/* ---- email ---- */

static void test_email(void **state)
{
	(void)state;
	assert_int_equal(count("mail d.okafor@example.com now", PII_EMAIL), 1);
	assert_int_equal(count("JANE.ROE@EXAMPLE.ORG", PII_EMAIL), 1);
	assert_int_equal(count("<no-reply+statements@mail.example.com>", PII_EMAIL), 1);
	assert_int_equal(count("mailto:support@example.net?subject=x", PII_EMAIL), 1);
	assert_int_equal(count("{\"e\":\"a_b@corp.example\"}", PII_EMAIL), 1);
	assert_int_equal(count("a@x.example, b@x.example; c@y.test", PII_EMAIL), 3);
	assert_span("Escalate to complaints@bank.example.", PII_EMAIL,
		    "complaints@bank.example");
	assert_span("to=noor79@example.net phone", PII_EMAIL, "noor79@example.net");
	assert_span("--jane@example.org", PII_EMAIL, "jane@example.org");

	/* not addresses */
	assert_int_equal(total("root@localhost and admin@db01"), 0);
	assert_int_equal(total("npm i lodash@4.17.21 left-pad@1.3.0"), 0);
	assert_int_equal(total("docker pull python@sha256:1f2e3d"), 0);
	assert_int_equal(total("@dataclass\nclass X: pass"), 0);
	assert_int_equal(total("thanks @maria and @tom.k"), 0);
	assert_int_equal(total("'jane.roe@' is incomplete"), 0);
	assert_int_equal(total("deploy@10.20.30.40:/srv/repo.git"), 0);
	assert_int_equal(total("x@example.c x@.example.com x@example..com"), 0);
	assert_int_equal(total("x@-bad.example"), 0);
}

/* ---- credit cards ---- */

static void test_card_valid(void **state)
{
	(void)state;
	assert_int_equal(count("card 4111 1111 1111 1111 ok", PII_CREDIT_CARD), 1);
	assert_int_equal(count("5555-5555-5555-4444.", PII_CREDIT_CARD), 1);
	assert_int_equal(count("4111111111111111", PII_CREDIT_CARD), 1);
	assert_int_equal(count("Amex 3782 822463 10005", PII_CREDIT_CARD), 1);
	assert_int_equal(count("Amex 378282246310005", PII_CREDIT_CARD), 1);
	assert_int_equal(count("Diners 3622 720627 1667", PII_CREDIT_CARD), 1);
	assert_int_equal(count("Visa13 4222222222222", PII_CREDIT_CARD), 1);
	assert_int_equal(count("Maestro 6799 9901 0000 0000 019", PII_CREDIT_CARD), 1);
	assert_int_equal(count("MC2 2223 0031 2200 3222", PII_CREDIT_CARD), 1);
	assert_int_equal(count("JCB 3530111333300000", PII_CREDIT_CARD), 1);
	assert_int_equal(count("UnionPay 6205500000000000004", PII_CREDIT_CARD), 1);
	assert_span("PAN=371449635398431 flagged", PII_CREDIT_CARD, "371449635398431");
	/* a card is never also a phone */
	assert_int_equal(total("Diners 3622 720627 1667"), 1);
}

static void test_card_invalid(void **state)
{
	(void)state;
	assert_int_equal(total("typo 4111 1111 1111 1112"), 0);      /* Luhn */
	assert_int_equal(total("Order 4532 0151 1283 0367 shipped"), 0);
	assert_int_equal(total("Invoice ref 3707607204540207"), 0);  /* 37: 15 only */
	assert_int_equal(total("Serial 2889610020520767"), 0);       /* no issuer */
	assert_int_equal(total("**** **** **** 0005 and 4111 11** **** 1111"), 0);
	assert_int_equal(total("masked 3782 ****** *0005"), 0);
	assert_int_equal(total("Card ending 4242 at 10:14"), 0);
	assert_int_equal(total("Tracking 9400 1118 9922 3344 5566 77"), 0);
	assert_int_equal(total("backup code 8841-2203-9917"), 0);
	assert_int_equal(total("mixed 4111 1111-1111 1111"), 0);
	assert_int_equal(total("account 123456789012"), 0);
	assert_int_equal(total("Epoch millis 1710499337123"), 0);
	assert_int_equal(total("x4111111111111111 4111111111111111y"), 0);
	assert_int_equal(total("v1.4111111111111111"), 0);
}

/* ---- SSN ---- */

static void test_ssn(void **state)
{
	(void)state;
	assert_int_equal(count("SSN 533-64-7293; DOB 1984-06-02", PII_SSN), 1);
	assert_int_equal(count("{'ssn': '045-48-8476'}", PII_SSN), 1);
	assert_int_equal(count("?ssn=534-95-3331&dob=1990-01-31", PII_SSN), 1);
	assert_int_equal(count("224-32-5763 and 105-44-9778", PII_SSN), 2);
	assert_int_equal(count("SSN 533 64 7293", PII_SSN), 1);
	assert_span("(517-86-9921)", PII_SSN, "517-86-9921");

	assert_int_equal(total("000-12-3456 666-01-2345 912-78-4567 984-08-8389"), 0);
	assert_int_equal(total("group 493-00-5886, serial 192-13-0000"), 0);
	assert_int_equal(total("EIN 12-3456789 and 84-1234567"), 0);
	assert_int_equal(total("masked ***-**-6789"), 0);
	assert_int_equal(total("ZIP+4 10001-1234, date 1999-09-09"), 0);
	assert_int_equal(total("mixed 533-64 7293"), 0);
	assert_int_equal(total("1533-64-7293 533-64-72931 533-64-7293-1"), 0);
}

/* ---- IBAN ---- */

static void test_iban(void **state)
{
	(void)state;
	assert_int_equal(count("DE89370400440532013000", PII_IBAN), 1);
	assert_int_equal(count("IBAN DE89 3704 0044 0532 0130 00.", PII_IBAN), 1);
	assert_int_equal(count("GB82 WEST 1234 5698 7654 32", PII_IBAN), 1);
	assert_int_equal(count("FR14 2004 1010 0505 0001 3M02 606", PII_IBAN), 1);
	assert_int_equal(count("NO: BE68 5390 0754 7034 at month end", PII_IBAN), 1);
	assert_int_equal(count("iban=NL91ABNA0417164300&x", PII_IBAN), 1);
	assert_span("\"DE89370400440532013000\"", PII_IBAN, "DE89370400440532013000");

	/* bad checksum (the digits are then not a card or a phone either) */
	assert_int_equal(total("IBAN DE94 9298 6822 7180 8437 21 fails"), 0);
	assert_int_equal(total("NL00 ABNA 0417 1643 00"), 0);
	assert_int_equal(total("Truncated: DE89 3704 0044 0532 (rest)"), 0);
	assert_int_equal(total("VAT DE123456789 BE0123456749"), 0);
	assert_int_equal(total("ISIN CH0012032048 US0378331005"), 0);
	assert_int_equal(total("BIC DEUTDEFFXXX, LEI 5493001KJTIIGC8Y1R12"), 0);
	assert_int_equal(total("XDE89370400440532013000 DE89370400440532013000X"), 0);
	assert_int_equal(total("DE89 3704 0044 0532 0130 0012"), 0); /* overlong */
	assert_int_equal(total("de89370400440532013000"), 0);
}

/* ---- phone ---- */

static void test_phone_nanp(void **state)
{
	(void)state;
	assert_int_equal(count("mobile (704) 555-0140, email", PII_PHONE), 1);
	assert_int_equal(count("phone 512-555-0153", PII_PHONE), 1);
	assert_int_equal(count("202.555.0150", PII_PHONE), 1);
	assert_int_equal(count("phone=4695550167", PII_PHONE), 1);
	assert_int_equal(count("+1 (212) 555-0175", PII_PHONE), 1);
	assert_int_equal(count("+1-305-555-0119", PII_PHONE), 1);
	assert_int_equal(count("+1 206 555 0165", PII_PHONE), 1);
	assert_int_equal(count("1-614-555-0189", PII_PHONE), 1);
	assert_int_equal(count("tel:+12125550134", PII_PHONE), 1);
	assert_span("hotline ((512) 555-0124) open", PII_PHONE, "(512) 555-0124");
	assert_int_equal(count("Home (212) 555-0189, mobile 512-555-0104, work 704.555.0117",
			       PII_PHONE), 3);
}

static void test_phone_intl(void **state)
{
	(void)state;
	assert_int_equal(count("+44 (0) 20 7946 0937.", PII_PHONE), 1);
	assert_int_equal(count("+44 7700 900734", PII_PHONE), 1);
	assert_int_equal(count("+44 161 496 0379", PII_PHONE), 1);
	assert_int_equal(count("on 07700 900760, he", PII_PHONE), 1);
	assert_int_equal(count("020 7946 0113 (no answer)", PII_PHONE), 1);
	assert_int_equal(count("Ring 0113 496 0464", PII_PHONE), 1);
	assert_int_equal(count("+61 491 570 157", PII_PHONE), 1);
	assert_int_equal(count("mobile 0491 570 313.", PII_PHONE), 1);
	assert_int_equal(count("Sydney (02) 5550 5046", PII_PHONE), 1);
	assert_int_equal(count("Paris +33 1 23 45 67 89", PII_PHONE), 1);
	assert_int_equal(count("Paris 01 23 45 67 89", PII_PHONE), 1);
	assert_int_equal(count("Berlin +49 30 12345678", PII_PHONE), 1);
	assert_int_equal(count("Berlin 030 12345678", PII_PHONE), 1);
}

static void test_phone_negatives(void **state)
{
	(void)state;
	assert_int_equal(total("Epoch 1715678900, amount 1,234.56"), 0);
	assert_int_equal(total("PO 4500012345, qty 12"), 0); /* exchange 001 */
	assert_int_equal(total("Pages 212-255 of the report"), 0);
	assert_int_equal(total("Reference 2024-000987-55"), 0);
	assert_int_equal(total("IP 192.168.10.155, version 4.18.2"), 0);
	assert_int_equal(total("ISBN 978-3-16-148410-0 and 0-306-40615-2"), 0);
	assert_int_equal(total("sort code 20-00-00; account 40-47-84 12345678"), 0);
	assert_int_equal(total("Tracking 1Z 999 AA1 01 2345 6784"), 0);
	assert_int_equal(total("at 2024-03-15 10:42:17.555"), 0);
	assert_int_equal(total("Amount due: $1,555,014.20 by 03/15/2024"), 0);
	assert_int_equal(total("Timestamp 20240315104217, build 20240315.1042"), 0);
	assert_int_equal(total("ZIP+4 10001-1234 and T+2"), 0);
	assert_int_equal(total("OTP 442 918; code 884 221#"), 0);
	assert_int_equal(total("x512-555-0153 512-555-0153y 512-555-01534"), 0);
	assert_int_equal(total("+44 20 79"), 0); /* too short */
}

/* ---- distinct counting ---- */

static void test_distinct(void **state)
{
	struct pii_counts c;
	const char *t = "li.roe@example.com and LI.ROE@example.com; "
			"4111 1111 1111 1111 = 4111-1111-1111-1111 = 4111111111111111; "
			"+44 20 7946 0146 aka 020 7946 0146; "
			"(212) 555-0189 = +1 212 555 0189; "
			"GB82 WEST 1234 5698 7654 32 = GB82WEST12345698765432";

	(void)state;
	pii_scan(str_cstr(t), PII_ALL, &c);
	assert_int_equal(c.n[PII_EMAIL], 1);
	assert_int_equal(c.n[PII_CREDIT_CARD], 1);
	assert_int_equal(c.n[PII_PHONE], 2);
	assert_int_equal(c.n[PII_IBAN], 1);
	pii_scan_ex(str_cstr(t), PII_ALL, PII_SCAN_OCCURRENCES, &c, NULL, NULL);
	assert_int_equal(c.n[PII_EMAIL], 2);
	assert_int_equal(c.n[PII_CREDIT_CARD], 3);
	assert_int_equal(c.n[PII_PHONE], 4);
	assert_int_equal(c.n[PII_IBAN], 2);
	/* same digits, different kinds: counted once in each */
	pii_scan(str_cstr("533-64-7293 and 533 64 7293"), PII_ALL, &c);
	assert_int_equal(c.n[PII_SSN], 1);
}

/* More distinct values than the inline set holds: spills to the heap. */
static void test_distinct_many(void **state)
{
	struct buf b;
	struct pii_counts c;

	(void)state;
	buf_init(&b, 0);
	for (int k = 0; k < 1000; k++)
		buf_printf(&b, "u%d@example.com u%d@example.com ", k, k % 500);
	pii_scan(buf_str(&b), PII_ALL, &c);
	assert_int_equal(c.n[PII_EMAIL], 1000);
	pii_scan_ex(buf_str(&b), PII_ALL, PII_SCAN_OCCURRENCES, &c, NULL, NULL);
	assert_int_equal(c.n[PII_EMAIL], 2000);
	buf_clear(&b);
}

/* ---- mask, names, boundaries, hostile input ---- */

static void test_mask_and_names(void **state)
{
	struct pii_counts c;
	enum pii_kind k;
	const char *t = "a@example.com 4111111111111111 533-64-7293 "
			"DE89370400440532013000 512-555-0153";

	(void)state;
	pii_scan(str_cstr(t), PII_ALL, &c);
	for (unsigned i = 0; i < PII_KINDS; i++)
		assert_int_equal(c.n[i], 1);
	pii_scan(str_cstr(t), PII_MASK(PII_SSN), &c);
	assert_int_equal(c.n[PII_SSN], 1);
	assert_int_equal(c.n[PII_EMAIL] + c.n[PII_CREDIT_CARD] + c.n[PII_IBAN] +
				 c.n[PII_PHONE], 0);
	/* an IBAN's digits stay masked when only phones are asked for */
	pii_scan(str_cstr("DE89 3704 0044 0532 0130 00"), PII_MASK(PII_PHONE), &c);
	assert_int_equal(c.n[PII_PHONE], 0);
	pii_scan(str_cstr(t), 0, &c);
	assert_int_equal(c.n[PII_EMAIL], 0);

	for (unsigned i = 0; i < PII_KINDS; i++) {
		assert_int_equal(pii_kind_parse(pii_kind_name(i), &k), UMB_OK);
		assert_int_equal(k, i);
	}
	assert_string_equal(pii_kind_name(PII_KINDS), "?");
	assert_int_equal(pii_kind_parse("Email", &k), UMB_ERR);
	assert_int_equal(pii_kind_parse("", &k), UMB_ERR);
	assert_int_equal(pii_kind_parse(NULL, &k), UMB_ERR);
}

static void test_boundaries_utf8(void **state)
{
	(void)state;
	/* a letter glued on (é, Cyrillic) is a word: no match */
	assert_int_equal(total("\xc3\xa9" "4111111111111111"), 0);
	assert_int_equal(total("4111111111111111" "\xd0\xb6"), 0);
	/* NBSP, narrow NBSP, en dash, guillemets are separators */
	assert_int_equal(count("\xc2\xa0" "4111111111111111" "\xc2\xa0", PII_CREDIT_CARD), 1);
	assert_int_equal(count("\xe2\x80\xaf" "533-64-7293" "\xe2\x80\x93", PII_SSN), 1);
	assert_int_equal(count("\xc2\xab" "DE89370400440532013000" "\xc2\xbb", PII_IBAN), 1);
	assert_int_equal(count("m\xc3\xb3vil +1 860 555 0183", PII_PHONE), 1);
	/* malformed or truncated sequences around a match: separators */
	assert_int_equal(count("\xff" "4111111111111111" "\xc3", PII_CREDIT_CARD), 1);
	assert_int_equal(count("\x80\x80\x80\x80" "533-64-7293", PII_SSN), 1);
	assert_int_equal(count("\xf0\x9f\x98" "533-64-7293" "\xe2\x80", PII_SSN), 1);
}

static void test_empty_and_edges(void **state)
{
	struct pii_counts c;
	char one[1] = { '4' };

	(void)state;
	memset(&c, 0xff, sizeof(c));
	pii_scan(STR_NULL, PII_ALL, &c);
	for (unsigned i = 0; i < PII_KINDS; i++)
		assert_int_equal(c.n[i], 0);
	pii_scan(str_make("", 0), PII_ALL, &c);
	assert_int_equal(c.n[PII_EMAIL], 0);
	pii_scan(str_make(one, 1), PII_ALL, &c); /* no NUL after the byte */
	assert_int_equal(c.n[PII_CREDIT_CARD], 0);
	/* a view that cuts a match: only the bytes inside count */
	pii_scan(str_make("4111111111111111", 15), PII_ALL, &c);
	assert_int_equal(c.n[PII_CREDIT_CARD], 0);
	pii_scan(str_make("a@example.com", 12), PII_ALL, &c);
	assert_int_equal(c.n[PII_EMAIL], 1); /* "example.co" is still an address */
	pii_scan(str_make("a@example.com", 11), PII_ALL, &c);
	assert_int_equal(c.n[PII_EMAIL], 0); /* "example.c": one-letter TLD */
	/* NULs inside the text are just bytes */
	pii_scan(str_make("\0" "533-64-7293\0", 13), PII_ALL, &c);
	assert_int_equal(c.n[PII_SSN], 1);
}

/* Pathological inputs stay linear (a quadratic scan would time out). */
static void test_pathological(void **state)
{
	static const char *const unit[] = { "a.", "a@", "1 ", "1-", "+1", "AB12 ",
					    "@a.", "(0", "0 " };
	size_t n = 200000;
	char *t = malloc(n);
	struct pii_counts c;
	uint64_t t0;

	(void)state;
	assert_non_null(t);
	for (size_t u = 0; u < UMB_ARRAY_LEN(unit); u++) {
		size_t l = strlen(unit[u]);

		for (size_t k = 0; k < n; k++)
			t[k] = unit[u][k % l];
		t0 = clock_mono_ns();
		pii_scan(str_make(t, n), PII_ALL, &c);
		assert_true(clock_mono_ns() - t0 < 200000000ull); /* < 0.2 s */
	}
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_email),
		cmocka_unit_test(test_card_valid),
		cmocka_unit_test(test_card_invalid),
		cmocka_unit_test(test_ssn),
		cmocka_unit_test(test_iban),
		cmocka_unit_test(test_phone_nanp),
		cmocka_unit_test(test_phone_intl),
		cmocka_unit_test(test_phone_negatives),
		cmocka_unit_test(test_distinct),
		cmocka_unit_test(test_distinct_many),
		cmocka_unit_test(test_mask_and_names),
		cmocka_unit_test(test_boundaries_utf8),
		cmocka_unit_test(test_empty_and_edges),
		cmocka_unit_test(test_pathological),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
