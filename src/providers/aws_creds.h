/* aws_creds.h — AWS credentials for a bedrock provider (DESIGN.md
 * "Credentials"), looked for in this order:
 *   1. the provider's access_key_id + secret_access_key (+ session_token);
 *   2. the environment: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY
 *      (+ AWS_SESSION_TOKEN);
 *   3. the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, else
 *      ~/.aws/credentials), section = the provider's `profile`, else
 *      AWS_PROFILE, else "default"; keys aws_access_key_id,
 *      aws_secret_access_key, aws_session_token.
 *
 * A file is read once and kept (thread-safe cache keyed by path and
 * profile); it is stat()ed again at most once a second and re-read when
 * it changed, so rotated keys are picked up without a reload. */
#ifndef UMB_AWS_CREDS_H
#define UMB_AWS_CREDS_H

#include "config/config.h"
#include "core/core.h"

/** Resolved credentials; strings live in the caller's arena. */
struct aws_creds {
	struct str access_key_id, secret_access_key;
	struct str session_token; /* empty: none */
	const char *source;       /* "config", "environment" or the file path */
};

/** Resolve prov's credentials into *out (strings copied into a).
 * UMB_ERR with a reason in why (for the log) when none is found or what
 * was found is unusable (one key without the other, control characters). */
int aws_creds_resolve(struct arena *a, const struct cfg_provider *prov, struct aws_creds *out,
		      char *why, size_t why_n);

/** The keys of [profile] in a credentials file's text; views into text.
 * UMB_ERR when the section is absent. Missing keys stay empty. */
int aws_creds_parse(struct str text, struct str profile, struct aws_creds *out);

/** Forget every cached file (tests; a reload needs nothing). */
void aws_creds_cache_clear(void);

#endif
