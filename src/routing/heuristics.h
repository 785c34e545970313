/* heuristics.h — the first layer of the routing cascade: an ordered list
 * of rules (routing.heuristics.rules) over the request's text and facts,
 * and the custom detectors (routing.detectors) beside the built-in ones.
 *
 * heur_compile turns a struct cfg_routing into an immutable struct
 * heuristics: every keyword of every rule in one Aho-Corasick automaton,
 * every regex compiled by PCRE2 (JIT when available). After compile the
 * object is only read, so worker threads share one without locks; each
 * call keeps its scratch state on its own stack (plus one small PCRE2
 * match block per call when a regex runs).
 *
 * Keyword matching (keywords and exclude):
 *   - ASCII case-insensitive; non-ASCII bytes compare exactly (no Unicode
 *     case folding: "É" does not match "é").
 *   - A run of ASCII whitespace (space, \t, \n, \v, \f, \r) in the text
 *     matches one space in a keyword, so "customer record" matches
 *     "Customer\n  record". Keywords are trimmed and their inner
 *     whitespace collapsed at compile time.
 *   - Whole words: where a keyword begins with a word character, the
 *     character just before the hit must not be one; where it ends with a
 *     word character, the character just after must not be one. Word
 *     characters are ASCII letters, digits and '_', and well-formed
 *     non-ASCII code points other than punctuation and spaces (the
 *     PII detectors' set). Malformed bytes are separators; overlong
 *     forms, surrogates and values past U+10FFFF count as malformed.
 *     A side that is punctuation in the keyword is not checked, so "c++"
 *     matches in "write c++ code" and in "C++17", "c#" in "c#.", ".net"
 *     in "asp.net"; "c" does not match inside "cat", but does match the
 *     "c" of "c++" (its right neighbour '+' is not a word character).
 *
 * Regexes (rule regex, custom detectors) are compiled in UTF mode with
 * PCRE2_MATCH_INVALID_UTF, so any bytes can be searched; a search that
 * hits the match, depth or heap limit (or the JIT stack) counts as no
 * match. */
#ifndef UMB_HEURISTICS_H
#define UMB_HEURISTICS_H

#include "config/config.h"
#include "routing/routing.h"

struct heuristics;

/** PCRE2 limits for each search: backtracking steps and nesting depth. */
#define HEUR_MATCH_LIMIT 1000000u
#define HEUR_DEPTH_LIMIT 10000u

/** Compile rt's rules and custom detectors. Returns NULL on error with
 * one line in err, e.g. "rule 2 (line 40): regex \"(a\": missing closing
 * parenthesis at offset 2" or "rule 1 (line 12): unknown detector foo".
 * The result does not point into rt (strings are copied). */
struct heuristics *heur_compile(const struct cfg_routing *rt, char *err,
				size_t errlen);

/** Free a compiled set; NULL is fine. */
void heur_free(struct heuristics *h);

/** Detector slot of a name: a built-in kind (enum pii_kind) is its enum
 * value, custom detector i is PII_KINDS + i; -1 when unknown. */
int heur_detector_slot(const struct heuristics *h, const char *name);

/** Name of a slot (built-in or custom); "?" when out of range. */
const char *heur_detector_name(const struct heuristics *h, int slot);

/** Count DISTINCT matches of the detectors whose bit (1 << slot) is in
 * mask over text: built-ins through pii_scan, custom ones by their regex
 * (distinct matched strings; empty matches do not count; a custom
 * detector stops after 10,000 searches of one text). out is fully
 * written; slots outside the mask read 0. */
void heur_detect(const struct heuristics *h, struct str text, uint64_t mask,
		 struct det_counts *out);

/** The detectors named by any rule, as a slot mask, so the router scans
 * once for heuristics and whatever else it needs. */
uint64_t heur_detectors_needed(const struct heuristics *h);

/** The detectors routing.sensitive names, as a slot mask (0 when the
 * guard is off). */
uint64_t heur_sensitive_mask(const struct heuristics *h);

/** Number of compiled rules (rt->n_rules). */
size_t heur_rule_count(const struct heuristics *h);

/** Index of the first rule that matches t, or -1. dc holds counts for at
 * least heur_detectors_needed() (NULL reads as all zero). A rule with no
 * condition set matches every request. */
int heur_match(const struct heuristics *h, const struct route_text *t,
	       const struct det_counts *dc);

/** Evaluate rule i alone and write one short line saying why it matched
 * or which condition failed (for `umbra route --explain`); returns 1 when
 * it matched, 0 when not, UMB_ERR when i is out of range. Only config
 * strings (keywords, detector names) are quoted, never request text. */
int heur_explain(const struct heuristics *h, size_t i,
		 const struct route_text *t, const struct det_counts *dc,
		 char *out, size_t outlen);

#endif
