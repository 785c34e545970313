/* routing.h — the vocabulary the routing modules share: what a chat
 * request looks like to the router, and detector hit counts.
 *
 * The router (router.c) extracts a struct route_text from the request body
 * once; heuristics, detectors, embedders and the classifier all read it.
 * The views point into one arena-owned buffer and live as long as the
 * request. */
#ifndef UMB_ROUTING_H
#define UMB_ROUTING_H

#include "core/core.h"
#include "routing/pii.h"

/** The text and facts of a chat request that routing decisions use. */
struct route_text {
	struct str conversation; /* every message's text content in order,
	                          * system included, joined by '\n' */
	struct str system;       /* the system message(s), joined by '\n' */
	struct str last_user;    /* the last user message's text */
	size_t last_user_chars;  /* its length in Unicode characters */
	bool has_tools;          /* a non-empty `tools` array */
	long max_tokens;         /* max_tokens / max_completion_tokens; -1 absent */
};

/** Custom detectors a config may name (routing.detectors). */
#define DET_CUSTOM_MAX 32
/** Detector slots: the built-in ones (enum pii_kind) first, then custom
 * detector i at PII_KINDS + i. */
#define DET_MAX (PII_KINDS + DET_CUSTOM_MAX)

/** Distinct matches per detector slot. */
struct det_counts {
	unsigned n[DET_MAX];
};

#endif
