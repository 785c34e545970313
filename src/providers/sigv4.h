/* sigv4.h — AWS Signature Version 4, header form
 * (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html).
 *
 *   canonical request = METHOD \n canonical URI \n canonical query \n
 *                       canonical headers \n signed headers \n payload hash
 *   string to sign    = AWS4-HMAC-SHA256 \n amz-date \n scope \n hex(SHA256(creq))
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region),
 *                       service), "aws4_request")
 *   Authorization     = AWS4-HMAC-SHA256 Credential=AKID/scope,
 *                       SignedHeaders=..., Signature=hex(HMAC(key, sts))
 *
 * The path given is URI-encoded once more, segment by segment: every AWS
 * service but S3 signs the path that goes on the wire (already encoded)
 * encoded again, so a Bedrock model id "a:0" travels as "a%3A0" and is
 * signed as "a%253A0". The AWS test suite's paths are raw text, which
 * this same rule encodes once.
 *
 * The time is a parameter (sigv4_amz_date): callers inject the clock. */
#ifndef UMB_SIGV4_H
#define UMB_SIGV4_H

#include <time.h>

#include "core/core.h"

#define SIGV4_MAX_HEADERS 32   /* signed headers per request */
#define SIGV4_MAX_QUERY 64     /* query parameters */
#define SIGV4_MAX_SEGMENTS 64  /* path segments kept by normalisation */
#define SIGV4_DATE_LEN 16      /* "20150830T123600Z" */
#define SIGV4_HEX_LEN 64       /* a SHA-256 in lowercase hex */

struct sigv4_header {
	struct str name, value; /* as sent: canonicalisation lowercases and trims */
};

/** What is signed. The headers are the ones to sign, in any order and
 * case, duplicates allowed (their values join with ","); they must
 * include host and x-amz-date (and x-amz-security-token with a session
 * token), exactly as the request sends them. */
struct sigv4_request {
	struct str method;
	struct str path;           /* encoded once more into the canonical URI */
	struct str query;          /* the query string without '?', "" if none */
	const struct sigv4_header *headers;
	size_t n_headers;
	struct str payload_hash;   /* lowercase hex SHA-256 of the body */
	bool normalize_path;       /* drop "." / ".." / empty segments (not S3) */
};

/** Who signs, where, when. */
struct sigv4_key {
	struct str access_key_id, secret_access_key;
	struct str region, service;
	struct str amz_date;       /* SIGV4_DATE_LEN chars, from sigv4_amz_date */
};

/** t as the ISO 8601 basic UTC stamp SigV4 uses; out gets a NUL too. */
void sigv4_amz_date(time_t t, char out[SIGV4_DATE_LEN + 1]);
/** Lowercase hex SHA-256 of p[0..n); out gets a NUL too. */
void sigv4_sha256_hex(const void *p, size_t n, char out[SIGV4_HEX_LEN + 1]);
/** RFC 3986 percent-encoding of everything but A-Z a-z 0-9 - _ . ~ (and
 * '/' when keep_slash), uppercase hex, appended to out. */
int sigv4_uri_encode(struct buf *out, struct str s, bool keep_slash);

/** Append the canonical request. UMB_ERR: more headers, query
 * parameters or path segments than the caps, or an empty header name. */
int sigv4_canonical_request(const struct sigv4_request *r, struct buf *out);
/** Append the signed headers list ("host;x-amz-date"). */
int sigv4_signed_headers(const struct sigv4_request *r, struct buf *out);
/** Append the string to sign for a canonical request. */
int sigv4_string_to_sign(const struct sigv4_key *k, struct str creq, struct buf *out);
/** The hex signature of a string to sign; out gets a NUL too. */
int sigv4_signature(const struct sigv4_key *k, struct str sts, char out[SIGV4_HEX_LEN + 1]);
/** The whole Authorization header value, appended to out. */
int sigv4_authorization(const struct sigv4_request *r, const struct sigv4_key *k,
			struct buf *out);

#endif
