/* pii.h — the sensitivity guard's detectors: email, payment card, US SSN,
 * IBAN and phone numbers found in free text.
 *
 * The detectors are pure functions over a byte view: no global state, no
 * locale, thread-safe, and no allocation unless one text holds more than
 * PII_SEEN_INLINE distinct matches (then the distinct set moves to the
 * heap; on allocation failure counting continues without de-duplication
 * of further values). Input is arbitrary bytes; UTF-8 is decoded only to
 * decide word boundaries, never trusted for lengths.
 *
 * Matched text is never copied out: callers get counts, and optionally the
 * offset and length of each match (for redaction). Log the counts only. */
#ifndef UMB_PII_H
#define UMB_PII_H

#include "core/core.h"

/** The detectors, in the order of the config's `detectors:` names. */
enum pii_kind {
	PII_EMAIL,
	PII_CREDIT_CARD,
	PII_SSN,
	PII_IBAN,
	PII_PHONE,
	PII_KINDS
};

/** Bit for one kind in a kinds mask. */
#define PII_MASK(k) (1u << (k))
/** Every detector. */
#define PII_ALL ((1u << PII_KINDS) - 1u)
/** Distinct values held on the stack before the set spills to the heap. */
#define PII_SEEN_INLINE (HSET_INLINE * 3 / 4)

/** Matches per kind (distinct values unless PII_SCAN_OCCURRENCES). */
struct pii_counts {
	unsigned n[PII_KINDS];
};

/** Flags for pii_scan_ex. */
enum {
	/** Count every occurrence instead of distinct values. */
	PII_SCAN_OCCURRENCES = 1u << 0,
};

/** Called once per occurrence with its byte range in the text. */
typedef void (*pii_match_cb)(void *arg, enum pii_kind kind, size_t off,
			     size_t len);

/** Count the DISTINCT matches of each kind in kinds_mask found in text
 * (out is fully overwritten; kinds outside the mask read 0). Values are
 * compared after normalisation: emails lowercased, cards/SSNs as digits,
 * IBANs without spaces, phones as country code + national number (so
 * "+44 20 7946 0000" and "020 7946 0000" are one value). */
void pii_scan(struct str text, unsigned kinds_mask, struct pii_counts *out);

/** pii_scan with flags (PII_SCAN_*) and an optional per-match callback
 * (cb may be NULL; out may be NULL when only the callback is wanted). */
void pii_scan_ex(struct str text, unsigned kinds_mask, unsigned flags,
		 struct pii_counts *out, pii_match_cb cb, void *arg);

/** "email", "credit_card", "ssn", "iban", "phone"; "?" if out of range. */
const char *pii_kind_name(enum pii_kind kind);

/** Parse a detector name (exact, lower case); UMB_ERR if unknown. */
int pii_kind_parse(const char *name, enum pii_kind *out);

#endif
