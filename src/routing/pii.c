/* pii.c — detectors for the sensitivity guard (see pii.h).
 *
 * One left-to-right pass. At each position the detectors are tried in a
 * fixed order — email (at the start of a run of address characters), IBAN
 * (at "CCdd"), then at the start of a number: card, SSN, phone — and a
 * position consumed by one token is never looked at again. That order is
 * what keeps the digits of an IBAN or a card from being read as a phone:
 * IBAN- and card-shaped clusters are consumed even when their checksum
 * fails, so their tails are not re-read as something else.
 *
 * Every parser reads through the bounds-checked helpers below; each step
 * advances at least one byte, and the email run scan is remembered so a
 * long run is scanned once: the pass is linear in the input. */
#include "routing/pii.h"
#include "routing/text.h"

#include <stdlib.h>

/* ---- bytes and boundaries ---- */

struct scan {
	const unsigned char *p;
	size_t n;
	unsigned mask, flags;
	struct pii_counts *out;
	pii_match_cb cb;
	void *arg;
	/* distinct set: open addressing on 64-bit hashes, 0 = empty */
	struct hset seen;        /* normalised values seen (distinct mode) */
};

static inline bool is_digit(int c) { return c >= '0' && c <= '9'; }
static inline bool is_upper(int c) { return c >= 'A' && c <= 'Z'; }
static inline bool is_alpha(int c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static inline bool is_alnum(int c) { return is_digit(c) || is_alpha(c); }

/* Byte at i, or 0 past the end: parsers may peek freely. */
static inline int at(const struct scan *s, size_t i)
{
	return i < s->n ? s->p[i] : 0;
}

/* Word characters as the rules and the embedder see them (text.h). */
static bool word_at(const struct scan *s, size_t i)
{
	return text_word_at(s->p, s->n, i);
}

static bool word_before(const struct scan *s, size_t i)
{
	return text_word_before(s->p, i);
}

static inline bool is_numsep(int c)
{
	return c == '.' || c == ',' || c == '-' || c == '/' || c == ':';
}

/* A number may start at i: not glued to a word, and not the tail of a
 * larger number such as a date, an amount or a time ("2024-05", "1,555"). */
static bool num_start(const struct scan *s, size_t i)
{
	if (word_before(s, i))
		return false;
	if (i >= 1 && s->p[i - 1] == '+')
		return false; /* "+CC..." is parsed from the '+' */
	if (i >= 2 && is_numsep(s->p[i - 1]) && is_digit(s->p[i - 2]))
		return false;
	return true;
}

/* A number may end at e (exclusive): same rule, mirrored. */
static bool num_end(const struct scan *s, size_t e)
{
	if (word_at(s, e))
		return false;
	if (is_numsep(at(s, e)) && is_digit(at(s, e + 1)))
		return false;
	return true;
}

/* Length of the digit run at i. */
static size_t digit_run(const struct scan *s, size_t i)
{
	size_t j = i;

	while (j < s->n && is_digit(s->p[j]))
		j++;
	return j - i;
}

/* ---- distinct values ---- */

#define FNV_OFF 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static inline uint64_t fnv(uint64_t h, int c)
{
	return (h ^ (unsigned char)c) * FNV_PRIME;
}

/* Report one match of `kind` over [off, off+len) whose normalised value
 * hashes to h. */
static void emit(struct scan *s, enum pii_kind kind, size_t off, size_t len,
		 uint64_t h)
{
	if (!(s->mask & PII_MASK(kind)))
		return;
	if (s->cb)
		s->cb(s->arg, kind, off, len);
	if (!s->out)
		return;
	if (!(s->flags & PII_SCAN_OCCURRENCES) &&
	    !hset_add(&s->seen, fnv(h, 'A' + (int)kind)))
		return;
	s->out->n[kind]++;
}

/* ---- email ---- */

static inline bool is_local(int c)
{
	return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' ||
	       c == '-';
}

/* Domain after the '@' at d: labels of [A-Za-z0-9-] joined by single
 * dots, at least two labels, the last alphabetic and 2+ long. Returns the
 * end (exclusive) or 0. A trailing dot or hyphen is sentence punctuation. */
static size_t email_domain(const struct scan *s, size_t d)
{
	size_t e = d, label = d, dots = 0;

	while (e < s->n && (is_alnum(s->p[e]) || s->p[e] == '-' || s->p[e] == '.'))
		e++;
	while (e > d && (s->p[e - 1] == '.' || s->p[e - 1] == '-'))
		e--;
	if (e == d)
		return 0;
	for (size_t i = d; i < e; i++) {
		if (s->p[i] != '.')
			continue;
		if (i == label || s->p[label] == '-' || s->p[i - 1] == '-')
			return 0; /* empty label or label edged by '-' */
		label = i + 1;
		dots++;
	}
	if (!dots || e - label < 2 || s->p[label] == '-')
		return 0;
	for (size_t i = label; i < e; i++)
		if (!is_alpha(s->p[i]))
			return 0;
	return e;
}

/* Try an email whose local part is the run of address characters that
 * starts at i. Returns the end of the address, or 0 with *run_end set to
 * the end of the run (no address can start inside it). */
static size_t email_try(struct scan *s, size_t i, size_t *run_end)
{
	size_t r = i, ls = i, e;
	uint64_t h = FNV_OFF;

	while (r < s->n && is_local(s->p[r]))
		r++;
	*run_end = r;
	if (at(s, r) != '@')
		return 0;
	while (ls < r && !is_alnum(s->p[ls]))
		ls++; /* "--jane@x.org", "+a@x.org" */
	if (ls == r)
		return 0;
	e = email_domain(s, r + 1);
	if (!e)
		return 0;
	for (size_t k = ls; k < e; k++)
		h = fnv(h, s->p[k] | (is_upper(s->p[k]) ? 0x20 : 0));
	emit(s, PII_EMAIL, ls, e - ls, h);
	return e;
}

/* ---- IBAN ---- */

/* Country code and IBAN length (SWIFT IBAN registry). */
static const char iban_table[] =
	"AD24AE23AL28AT20AZ28BA20BE16BG22BH22BI27BR29BY28CH21CR22CY28CZ24"
	"DE22DJ27DK18DO28EE20EG29ES24FI18FK18FO18FR27GB22GE22GI23GL18GR27"
	"GT28HR21HU28IE22IL23IQ23IS26IT27JO30KW30KZ20LB28LC32LI21LT20LU20"
	"LV21LY25MC27MD24ME22MK19MN20MR27MT31MU30NI28NL18NO15OM23PK24PL28"
	"PS29PT25QA29RO24RS22RU33SA24SC31SD18SE24SI19SK24SM27SO23ST25SV28"
	"TL23TN24TR26UA29VA22VG24XK20YE30";

static unsigned iban_len(int a, int b)
{
	for (size_t k = 0; k + 4 <= sizeof(iban_table) - 1; k += 4)
		if (iban_table[k] == a && iban_table[k + 1] == b)
			return (unsigned)(iban_table[k + 2] - '0') * 10 +
			       (unsigned)(iban_table[k + 3] - '0');
	return 0;
}

static inline bool is_ibanch(int c) { return is_upper(c) || is_digit(c); }

/* mod-97 of the rearranged IBAN (BBAN then country and check digits,
 * letters as 10..35) held in v[0..n). */
static unsigned iban_mod97(const char *v, size_t n)
{
	unsigned m = 0;

	for (size_t k = 0; k < n; k++) {
		int c = v[(k + 4) % n];

		if (is_digit(c))
			m = (m * 10 + (unsigned)(c - '0')) % 97;
		else
			m = (m * 100 + (unsigned)(c - 'A' + 10)) % 97;
	}
	return m;
}

/* At "CCdd" with a known country: read the IBAN compact or in groups of
 * four. Returns the end of the IBAN-shaped token (consumed either way) or
 * 0 if this is not one; *valid says length and mod-97 both hold. */
static size_t iban_try(struct scan *s, size_t i, bool *valid)
{
	char v[40];
	size_t nv = 0, j = i + 4;
	unsigned want = iban_len(s->p[i], s->p[i + 1]);
	uint64_t h = FNV_OFF;

	*valid = false;
	if (!want)
		return 0;
	memcpy(v, s->p + i, 4);
	nv = 4;
	if (is_ibanch(at(s, j))) { /* compact */
		while (j < s->n && is_ibanch(s->p[j])) {
			if (nv < sizeof(v))
				v[nv] = (char)s->p[j];
			nv++, j++;
		}
	} else if (at(s, j) == ' ' && is_ibanch(at(s, j + 1))) {
		/* groups of 4, the last 1-4, until the country's length */
		while (nv < want && at(s, j) == ' ' && is_ibanch(at(s, j + 1))) {
			size_t g = 0;

			j++;
			while (j < s->n && is_ibanch(s->p[j]) && g < 5) {
				if (nv < sizeof(v))
					v[nv] = (char)s->p[j];
				nv++, j++, g++;
			}
			if (g != 4)
				break;
		}
		while (j < s->n && is_ibanch(s->p[j]))
			j++, nv = sizeof(v); /* overlong group: not an IBAN */
	} else {
		return 0;
	}
	if (word_at(s, j) || nv != want || nv > 34)
		return j;
	if (iban_mod97(v, nv) != 1)
		return j;
	for (size_t k = 0; k < nv; k++)
		h = fnv(h, v[k]);
	*valid = true;
	emit(s, PII_IBAN, i, j - i, h);
	return j;
}

/* ---- payment cards ---- */

static bool luhn_ok(const unsigned char *d, size_t n)
{
	unsigned sum = 0;

	for (size_t k = 0; k < n; k++) {
		unsigned x = d[n - 1 - k];

		if (k & 1) {
			x *= 2;
			if (x > 9)
				x -= 9;
		}
		sum += x;
	}
	return sum % 10 == 0;
}

/* Issuer prefix plausible for this length (Visa, Mastercard incl. the
 * 2-series, Amex, Diners, Discover, JCB, UnionPay, Maestro). */
static bool iin_ok(const unsigned char *d, size_t n)
{
	unsigned p2 = d[0] * 10u + d[1];
	unsigned p3 = p2 * 10 + d[2];
	unsigned p4 = p3 * 10 + d[3];

	switch (d[0]) {
	case 4:
		return n == 13 || n == 16 || n == 19;
	case 2:
		return n == 16 && p4 >= 2221 && p4 <= 2720;
	case 5:
		if (p2 >= 51 && p2 <= 55)
			return n == 16;
		return (p2 == 50 || p2 >= 56) && n >= 13; /* Maestro */
	case 3:
		if (p2 == 34 || p2 == 37)
			return n == 15;
		if ((p3 >= 300 && p3 <= 305) || p2 == 36 || p2 == 38 || p2 == 39)
			return n >= 14;
		return p4 >= 3528 && p4 <= 3589 && n >= 16;
	case 6:
		if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649) || p2 == 62)
			return n >= 16;
		return n >= 13; /* Maestro 6x */
	default:
		return false;
	}
}

/* At a number start: a card-shaped cluster — 13-19 digits compact, or
 * 4-4-4-4[-1..4] (also 4-4-4-1) or 4-6-5 / 4-6-4 with one consistent
 * separator (space or hyphen). Returns the cluster end (consumed, valid
 * or not) or 0 if not card-shaped; *valid: Luhn and issuer prefix hold. */
static size_t card_try(struct scan *s, size_t i, bool *valid)
{
	unsigned char d[19];
	size_t g[8], ng = 0, nd = 0, j = i, a = digit_run(s, i);
	int sep;
	uint64_t h = FNV_OFF;

	*valid = false;
	if (a >= 13 && a <= 19) {
		if (!num_end(s, i + a))
			return 0;
		for (size_t k = 0; k < a; k++)
			d[nd++] = (unsigned char)(s->p[i + k] - '0');
		j = i + a;
		goto check;
	}
	if (a != 4)
		return 0;
	sep = at(s, i + 4);
	if (sep != ' ' && sep != '-')
		return 0;
	for (;;) {
		size_t r = digit_run(s, j);

		if (ng < UMB_ARRAY_LEN(g))
			g[ng] = r;
		ng++;
		for (size_t k = 0; k < r; k++)
			if (nd < sizeof(d))
				d[nd++] = (unsigned char)(s->p[j + k] - '0');
			else
				nd = sizeof(d) + 1;
		j += r;
		if (at(s, j) != sep || !is_digit(at(s, j + 1)))
			break;
		j++;
	}
	if (ng >= 4 && g[1] == 4 && g[2] == 4) {
		/* 4-4-4-x...: card-shaped, consumed whether valid or not (a
		 * 4-4-4 cluster is a code, left to the other detectors) */
		size_t tot = 0;
		bool ok = ng <= 6;

		for (size_t k = 0; ok && k < ng; k++) {
			tot += g[k];
			if (k + 1 < ng && g[k] != 4)
				ok = false;
		}
		if (!ok || tot < 13 || tot > 19 || g[ng - 1] > 4 || !num_end(s, j))
			return j;
		goto check;
	}
	if (ng == 3 && g[1] == 6 && (g[2] == 5 || g[2] == 4)) {
		if (!num_end(s, j))
			return j;
		goto check;
	}
	return 0;
check:
	if (nd < 13 || nd > 19 || !luhn_ok(d, nd) || !iin_ok(d, nd))
		return j;
	for (size_t k = 0; k < nd; k++)
		h = fnv(h, '0' + d[k]);
	*valid = true;
	emit(s, PII_CREDIT_CARD, i, j - i, h);
	return j;
}

/* ---- US SSN ---- */

static unsigned num_at(const struct scan *s, size_t i, size_t len)
{
	unsigned v = 0;

	for (size_t k = 0; k < len; k++)
		v = v * 10 + (unsigned)(s->p[i + k] - '0');
	return v;
}

/* AAA-GG-SSSS (or with single spaces) at a number start; the area is not
 * 000, 666 or 9xx, the group not 00, the serial not 0000. */
static size_t ssn_try(struct scan *s, size_t i)
{
	int sep = at(s, i + 3);
	unsigned area, grp, ser;
	uint64_t h = FNV_OFF;

	if (digit_run(s, i) != 3 || (sep != '-' && sep != ' '))
		return 0;
	if (digit_run(s, i + 4) != 2 || at(s, i + 6) != sep ||
	    digit_run(s, i + 7) != 4 || !num_end(s, i + 11))
		return 0;
	area = num_at(s, i, 3);
	grp = num_at(s, i + 4, 2);
	ser = num_at(s, i + 7, 4);
	if (area == 0 || area == 666 || area >= 900 || grp == 0 || ser == 0)
		return 0;
	for (size_t k = i; k < i + 11; k++)
		if (is_digit(s->p[k]))
			h = fnv(h, s->p[k]);
	emit(s, PII_SSN, i, 11, h);
	return i + 11;
}

/* ---- phone numbers ---- */

/* Digits of a phone number being parsed, normalised to country code +
 * national significant number. */
struct phone {
	char d[24];
	size_t n;
};

static void ph_put(struct phone *ph, const struct scan *s, size_t i, size_t len)
{
	for (size_t k = 0; k < len; k++)
		if (ph->n < sizeof(ph->d))
			ph->d[ph->n++] = (char)s->p[i + k];
}

static inline bool nxx_ok(const struct scan *s, size_t i)
{
	return at(s, i) >= '2' && at(s, i) <= '9';
}

/* NANP number after any "+1"/"1-" prefix: (NXX) NXX-XXXX, NXX-NXX-XXXX
 * with one of "-. " throughout, or NXXNXXXXXX. Returns the end or 0. */
static size_t nanp_body(const struct scan *s, size_t i, struct phone *ph)
{
	size_t j;
	int sep;

	if (at(s, i) == '(') {
		if (digit_run(s, i + 1) != 3 || !nxx_ok(s, i + 1) ||
		    at(s, i + 4) != ')')
			return 0;
		ph_put(ph, s, i + 1, 3);
		j = i + 5;
		if (at(s, j) == ' ')
			j++;
		if (digit_run(s, j) == 7 && nxx_ok(s, j)) {
			ph_put(ph, s, j, 7);
			return j + 7;
		}
		if (digit_run(s, j) != 3 || !nxx_ok(s, j))
			return 0;
		sep = at(s, j + 3);
		if ((sep != '-' && sep != '.' && sep != ' ') ||
		    digit_run(s, j + 4) != 4)
			return 0;
		ph_put(ph, s, j, 3);
		ph_put(ph, s, j + 4, 4);
		return j + 8;
	}
	if (!nxx_ok(s, i))
		return 0;
	if (digit_run(s, i) == 10) {
		if (!nxx_ok(s, i + 3))
			return 0;
		ph_put(ph, s, i, 10);
		return i + 10;
	}
	sep = at(s, i + 3);
	if (digit_run(s, i) != 3 || (sep != '-' && sep != '.' && sep != ' '))
		return 0;
	if (digit_run(s, i + 4) != 3 || !nxx_ok(s, i + 4) ||
	    at(s, i + 7) != sep || digit_run(s, i + 8) != 4)
		return 0;
	ph_put(ph, s, i, 3);
	ph_put(ph, s, i + 4, 3);
	ph_put(ph, s, i + 8, 4);
	return i + 12;
}

/* National formats starting with the trunk 0 (UK, Australia, France,
 * Germany): groups with one separator, matched against the written
 * layouts of each numbering plan. Returns the end or 0. */
static size_t trunk_try(const struct scan *s, size_t i, struct phone *ph)
{
	size_t g[6], ng = 0, j = i, nd = 0;
	int sep = 0, d1;
	const char *cc = NULL;
	bool paren = false;

	if (at(s, j) == '(') { /* AU "(0X) XXXX XXXX" */
		if (digit_run(s, j + 1) != 2 || at(s, j + 1) != '0' ||
		    at(s, j + 3) != ')' || at(s, j + 4) != ' ')
			return 0;
		g[ng++] = 2;
		j += 5;
		paren = true;
		sep = ' ';
	}
	for (;;) {
		size_t r = digit_run(s, j);

		if (!r || ng == UMB_ARRAY_LEN(g))
			return 0;
		g[ng++] = r;
		nd += r;
		j += r;
		if (!is_digit(at(s, j + 1)))
			break;
		if (!sep && (at(s, j) == ' ' || at(s, j) == '-' || at(s, j) == '.'))
			sep = at(s, j);
		if (at(s, j) != sep)
			break;
		j++;
	}
	d1 = paren ? at(s, i + 2) : at(s, i + 1);
	if ((paren ? at(s, i + 1) : at(s, i)) != '0' || d1 == '0')
		return 0;
#define LAYOUT(a, b, c) (g[0] == (a) && g[1] == (b) && (ng == 2 ? (c) == 0 : ng == 3 && g[2] == (c)))
	if (ng == 1) {
		if (nd == 11 && d1 != '4' && d1 != '6')
			cc = "44"; /* 07700900760 */
		else if (nd == 10 && d1 == '4')
			cc = "61"; /* 0491570313 */
	} else if (ng == 5 && g[0] == 2 && g[1] == 2 && g[2] == 2 && g[3] == 2 &&
		   g[4] == 2) {
		cc = "33"; /* 01 23 45 67 89 */
	} else if (ng <= 3) {
		if (LAYOUT(3, 4, 4) && d1 == '2')
			cc = "44"; /* 020 7946 0000 */
		else if (LAYOUT(4, 3, 4) && (d1 == '1' || d1 == '3' || d1 == '8' || d1 == '9'))
			cc = "44"; /* 0113 496 0000, 0800 123 4567 */
		else if ((LAYOUT(5, 6, 0) || LAYOUT(5, 5, 0)) && (d1 == '1' || d1 == '7'))
			cc = "44"; /* 07700 900760, 01632 960000 */
		else if (LAYOUT(2, 4, 4) && (d1 == '2' || d1 == '3' || d1 == '7' || d1 == '8'))
			cc = "61"; /* (02) 5550 5046 */
		else if (LAYOUT(4, 3, 3) && d1 == '4')
			cc = "61"; /* 0491 570 313 */
		else if ((LAYOUT(3, 7, 0) || LAYOUT(3, 8, 0) || LAYOUT(4, 7, 0) ||
			  LAYOUT(4, 6, 0)) && sep != '.')
			cc = "49"; /* 030 12345678, 0171 1234567 */
	}
#undef LAYOUT
	if (!cc || !num_end(s, j))
		return 0;
	ph->d[ph->n++] = cc[0];
	ph->d[ph->n++] = cc[1];
	for (size_t k = i + (paren ? 2 : 1); k < j; k++)
		if (is_digit(s->p[k]) && ph->n < sizeof(ph->d))
			ph->d[ph->n++] = (char)s->p[k];
	return j;
}

/* E.164 country codes of one or two digits; all others have three. */
static size_t cc_len(const struct scan *s, size_t i)
{
	static const unsigned char two[] = { 20, 27, 30, 31, 32, 33, 34, 36, 39, 40,
		41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55, 56, 57, 58,
		60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94,
		95, 98 };
	unsigned v;

	if (at(s, i) == '1' || at(s, i) == '7')
		return 1;
	v = (unsigned)(at(s, i) - '0') * 10 + (unsigned)(at(s, i + 1) - '0');
	for (size_t k = 0; k < sizeof(two); k++)
		if (two[k] == v)
			return 2;
	return 3;
}

/* "+CC ..." at i (the '+'): NANP rules for +1, the national significant
 * number's length and first digit for +44, +61, +33, a plain 6-12 digit
 * count elsewhere. Groups take one separator ("-. "), "(0)" may follow the
 * country code. Returns the end or 0. */
static size_t intl_try(const struct scan *s, size_t i, struct phone *ph)
{
	size_t j = i + 1, run = digit_run(s, j), cl, nsn = 0, min = 6, max = 12;
	int sep = 0;
	char f;

	if (!run)
		return 0;
	if (at(s, j) == '1') {
		ph->d[ph->n++] = '1';
		if (run == 11)
			return nanp_body(s, j + 1, ph);
		if (run != 1)
			return 0;
		j++;
		if (at(s, j) == ' ' || at(s, j) == '-' || at(s, j) == '.')
			j++;
		return nanp_body(s, j, ph);
	}
	cl = cc_len(s, j);
	if (run < cl)
		return 0;
	ph_put(ph, s, j, cl);
	if (run > cl) { /* compact: +447700900734 */
		nsn = run - cl;
		ph_put(ph, s, j + cl, nsn);
		j += run;
	} else {
		j += cl;
		if (at(s, j) == ' ' || at(s, j) == '-' || at(s, j) == '.')
			sep = at(s, j++);
		if (at(s, j) == '(' && at(s, j + 1) == '0' && at(s, j + 2) == ')') {
			j += 3; /* "(0)": the trunk prefix, not dialled */
			if (sep && at(s, j) == sep)
				j++;
			else if (at(s, j) == ' ')
				j++;
		}
		for (;;) {
			size_t r = digit_run(s, j);

			if (!r)
				return 0;
			ph_put(ph, s, j, r);
			nsn += r;
			j += r;
			if (!is_digit(at(s, j + 1)) || nsn > 14)
				break;
			if (!sep && (at(s, j) == ' ' || at(s, j) == '-' || at(s, j) == '.'))
				sep = at(s, j);
			if (at(s, j) != sep)
				break;
			j++;
		}
	}
	f = ph->d[cl];
	if (f == '0')
		return 0;
	if (ph->d[0] == '4' && ph->d[1] == '4' && cl == 2)
		min = 9, max = 10;
	else if (ph->d[0] == '6' && ph->d[1] == '1' && cl == 2)
		min = max = 9;
	else if (ph->d[0] == '3' && ph->d[1] == '3' && cl == 2)
		min = max = 9;
	if (nsn < min || nsn > max || !num_end(s, j))
		return 0;
	return j;
}

/* A phone number at i (a digit at a number start, '(' or '+'). */
static size_t phone_try(struct scan *s, size_t i)
{
	struct phone ph = { .n = 0 };
	size_t e = 0;
	uint64_t h = FNV_OFF;
	int c = s->p[i];

	if (c == '+') {
		e = intl_try(s, i, &ph);
	} else {
		if (c == '1' && (at(s, i + 1) == '-' || at(s, i + 1) == '.' ||
				 at(s, i + 1) == ' ')) {
			/* "1-614-555-0189": the separator must repeat */
			ph.d[ph.n++] = '1';
			e = nanp_body(s, i + 2, &ph);
			if (e && at(s, i + 2) != '(' && at(s, i + 5) != at(s, i + 1))
				e = 0;
		} else if (c == '(' || c != '0') {
			ph.d[ph.n++] = '1';
			e = nanp_body(s, i, &ph);
		}
		if (!e) {
			ph.n = 0;
			e = trunk_try(s, i, &ph);
		}
	}
	if (!e || !num_end(s, e))
		return 0;
	for (size_t k = 0; k < ph.n; k++)
		h = fnv(h, ph.d[k]);
	emit(s, PII_PHONE, i, e - i, h);
	return e;
}

/* ---- the pass ---- */

void pii_scan_ex(struct str text, unsigned kinds_mask, unsigned flags,
		 struct pii_counts *out, pii_match_cb cb, void *arg)
{
	struct scan s = {
		.p = (const unsigned char *)text.p, .n = text.p ? text.n : 0,
		.mask = kinds_mask & PII_ALL, .flags = flags, .out = out,
		.cb = cb, .arg = arg,
	};
	size_t i = 0, email_until = 0, e;
	bool valid;

	if (out)
		memset(out, 0, sizeof(*out));
	hset_init(&s.seen);
	if (!s.mask)
		return;

	while (i < s.n) {
		int c = s.p[i];

		if (i >= email_until && is_local(c) && (i == 0 || !is_local(s.p[i - 1]))) {
			e = email_try(&s, i, &email_until);
			if (e) {
				i = email_until = e;
				continue;
			}
		}
		if (is_upper(c) && is_upper(at(&s, i + 1)) && is_digit(at(&s, i + 2)) &&
		    is_digit(at(&s, i + 3)) && !word_before(&s, i)) {
			e = iban_try(&s, i, &valid);
			if (e) {
				i = e;
				continue;
			}
		}
		if (is_digit(c) && num_start(&s, i)) {
			e = card_try(&s, i, &valid);
			if (!e)
				e = ssn_try(&s, i);
			if (!e)
				e = phone_try(&s, i);
			if (!e)
				e = i + digit_run(&s, i); /* not a start inside */
			i = e;
			continue;
		}
		if ((c == '+' || c == '(') && !word_before(&s, i) &&
		    (is_digit(at(&s, i + 1)) || at(&s, i + 1) == '(')) {
			e = phone_try(&s, i);
			if (e) {
				i = e;
				continue;
			}
		}
		i++;
	}
	hset_clear(&s.seen);
}

void pii_scan(struct str text, unsigned kinds_mask, struct pii_counts *out)
{
	pii_scan_ex(text, kinds_mask, 0, out, NULL, NULL);
}

static const char *const kind_names[PII_KINDS] = {
	[PII_EMAIL] = "email",
	[PII_CREDIT_CARD] = "credit_card",
	[PII_SSN] = "ssn",
	[PII_IBAN] = "iban",
	[PII_PHONE] = "phone",
};

const char *pii_kind_name(enum pii_kind kind)
{
	if ((unsigned)kind >= PII_KINDS)
		return "?";
	return kind_names[kind];
}

int pii_kind_parse(const char *name, enum pii_kind *out)
{
	if (!name)
		return UMB_ERR;
	for (unsigned k = 0; k < PII_KINDS; k++) {
		if (strcmp(name, kind_names[k]) == 0) {
			*out = (enum pii_kind)k;
			return UMB_OK;
		}
	}
	return UMB_ERR;
}
