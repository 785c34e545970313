/* text.h — what a word character is, shared by the PII detectors, the
 * heuristic rules and the builtin embedder so that all three split text
 * the same way.
 *
 * A word character is an ASCII letter, digit or '_', or a well-formed
 * non-ASCII code point that is not punctuation, a symbol or a space.
 * Malformed UTF-8 (overlong forms, surrogates, truncated sequences, values
 * past U+10FFFF) is not text: such bytes separate words. */
#ifndef UMB_TEXT_H
#define UMB_TEXT_H

#include "core/core.h"

/** Decode the well-formed UTF-8 sequence at p[0..n) into *cp; its length
 * (1-4), or 0 if malformed or truncated. */
size_t text_utf8_decode(const unsigned char *p, size_t n, uint32_t *cp);

/** Non-ASCII code points that separate words: Latin-1 controls and
 * symbols, general punctuation, arrows, mathematical and technical
 * symbols, box drawing, CJK and full-width punctuation, BOM. */
bool text_uni_is_sep(uint32_t cp);

static inline bool text_ascii_word(int c)
{
	return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '_';
}

/** Is the character that starts at p[i] a word character? (false at n) */
bool text_word_at(const unsigned char *p, size_t n, size_t i);
/** Is the character that ends just before p[i] one? (false at 0) */
bool text_word_before(const unsigned char *p, size_t i);

#endif
