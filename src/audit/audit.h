/* audit.h — the tamper-evident audit log: one JSON line per gateway
 * request (allowed or denied), hash-chained, with periodic Ed25519-signed
 * checkpoints, size rotation, crash recovery, and the verifier behind
 * `umbra audit verify`. docs/audit.md is the long form of this contract.
 *
 * Every line is a JSON object whose members come in a fixed order and
 * always end with `,"prev":"<64 hex>","hash":"<64 hex>"}` then "\n":
 *
 *   {"type":"request","seq":S,"ts":"RFC3339Z","id":..,"identity":..,
 *    "team":..,"src":..,"cert_fp":..,"dialect":..,"model_requested":..,
 *    "route":..,"route_method":..,"provider":..,"endpoint":..,"model":..,
 *    "decision":"allow"|"deny","reason":..,"detectors":{..},
 *    "prompt_tokens":N,"completion_tokens":N,"cost_usd":X,"status":N,
 *    "latency_ms":X[,"payload_hash":"<64 hex>"],"prev":H,"hash":H}
 *   {"type":"checkpoint","seq":S,"ts":..,"count":C[,"key_fp":"<64 hex>",
 *    "pub":"<b64 raw key>","sig":"<b64>"],"prev":H,"hash":H}
 *   {"type":"recovery","seq":S,"ts":..,"cut_bytes":B,"prev":H,"hash":H}
 *
 * - seq numbers every line (all three types) 1, 2, 3, ... across rotations.
 * - hash = lowercase hex SHA-256 of the line's bytes from its first `{` up
 *   to (excluding) the `,"hash":` that precedes the final member; those
 *   bytes end with the prev member, so prev is covered.
 * - prev = the previous line's hash; 64 "0" for seq 1 of a new chain.
 * - count = lines since the previous checkpoint (0 when none) up to this
 *   one, both excluded: seq - previous checkpoint seq - 1.
 * - sig = Ed25519 over the ASCII message "umbra-audit/1\n" S "\n" C "\n"
 *   prev (decimal seq and count, prev as 64 hex), base64; pub = the raw
 *   32-byte public key, base64; key_fp = hex SHA-256 of those 32 bytes.
 *   Without a key, checkpoints carry only count (chained, unsigned).
 * - String fields are JSON-escaped, invalid UTF-8 replaced by U+FFFD, and
 *   cut to AUDIT_FIELD_MAX bytes; a NULL string is written as null.
 *
 * Threads: audit_append may be called from any number of threads; one
 * mutex covers seq/prev assignment, hashing and the single write(2). */
#ifndef UMB_AUDIT_H
#define UMB_AUDIT_H

#include <stdint.h>
#include <stdio.h>

#include "core/core.h"

/** Longest value kept for one string field (bytes, before escaping). */
#define AUDIT_FIELD_MAX 1024
/** Longest detectors JSON accepted; longer or invalid is written as {}. */
#define AUDIT_DETECTORS_MAX 4096
/** Longest line the writer produces and the verifier/recovery accept. */
#define AUDIT_LINE_MAX 65536
/** Hex digest length (SHA-256) and its buffer size with the NUL. */
#define AUDIT_HASH_HEX 64

/** When the file's data is forced to disk. */
enum audit_fsync {
	AUDIT_FSYNC_NEVER,    /* leave it to the kernel (close still syncs) */
	AUDIT_FSYNC_INTERVAL, /* a background thread, every fsync_interval_ms */
	AUDIT_FSYNC_ALWAYS,   /* fdatasync after every line */
};

/** How to open a log; zeroed fields pick "off". */
struct audit_opts {
	const char *path;      /* the live file, e.g. /var/log/umbra/audit.jsonl */
	const char *key_path;  /* Ed25519 private key PEM; NULL = unsigned checkpoints */
	uint64_t max_bytes;    /* rotate before a line would pass this; 0 = never */
	int keep;              /* rotated files kept: path.1 .. path.keep */
	int checkpoint_every;  /* a checkpoint after this many lines; 0 = off */
	int checkpoint_interval_ms; /* or after this long with lines pending; 0 = off */
	enum audit_fsync fsync;
	int fsync_interval_ms; /* for AUDIT_FSYNC_INTERVAL; <= 0 picks 1000 */
};

/** One request as the gateway saw it. All strings are borrowed for the
 * call only and may be NULL (written as null) except decision. */
struct audit_record {
	const char *id, *identity, *team, *src, *cert_fp, *dialect;
	const char *model_requested, *route, *route_method, *provider;
	const char *endpoint, *model;
	const char *decision;       /* "allow" or "deny"; anything else is refused */
	const char *reason;
	const char *detectors_json; /* e.g. {"email":2}; NULL or invalid -> {} */
	const char *payload_hash;   /* 64 hex (audit_payload_hash) or NULL */
	uint64_t prompt_tokens, completion_tokens;
	double cost_usd;
	int status;
	double latency_ms;
};

/** Counters since audit_open, for metrics and tests. */
struct audit_stats {
	uint64_t lines, requests, checkpoints, rotations, syncs, bytes;
	uint64_t seq;       /* seq of the last line written (0 if none yet) */
	uint64_t cut_bytes; /* bytes cut away by recovery at open */
};

struct audit_log;

/** Open (create 0600) the log at o->path, take an exclusive flock on it,
 * and recover the chain: the last complete line must verify on its own
 * (else NULL with a message naming the file — a broken chain is never
 * continued); a partial last line is cut away and a recovery line records
 * how many bytes went. When the live file is empty the chain continues
 * from path.1 if it exists. NULL with err filled on any failure. */
struct audit_log *audit_open(const struct audit_opts *o, char *err, size_t errlen);

/** Append one request line (thread-safe); it is written with one write(2)
 * and may trigger a checkpoint or a rotation. 0, or UMB_ERR when decision
 * is not allow|deny or the write failed (then the file is cut back to its
 * previous size and the chain is unchanged). */
int audit_append(struct audit_log *l, const struct audit_record *r);

/** Write a checkpoint now if lines are pending (thread-safe). */
int audit_checkpoint(struct audit_log *l);

/** Copy the counters (thread-safe). */
void audit_get_stats(struct audit_log *l, struct audit_stats *out);

/** Stop the background thread, write a final checkpoint when lines are
 * pending, fdatasync, close and free. NULL is fine. */
void audit_close(struct audit_log *l);

/** Hex SHA-256 of a request body, for audit_record.payload_hash. */
void audit_payload_hash(const void *p, size_t n, char out[AUDIT_HASH_HEX + 1]);

/** Make DIR (0700 if missing) and write DIR/audit.key (Ed25519 private
 * key, PEM, 0600) and DIR/audit.pub (public key PEM); existing files are
 * never overwritten. fp_out (may be NULL) receives the key fingerprint. */
int audit_keygen(const char *dir, char fp_out[AUDIT_HASH_HEX + 1], char *err,
		 size_t errlen);

/** Verifier flags. */
enum {
	AUDIT_VERIFY_STRICT = 1, /* the last line must be a signed checkpoint */
};

/** Verify files[0..n) as one chain, oldest first. pubkey_path (PEM public
 * or private key) pins the signing key; without it the checkpoints must
 * agree on one key fp and each signature must verify against the key it
 * carries. Writes "FILE:LINE: seq S: problem" for the first bad line, or a
 * summary, to report (may be NULL). 0 intact, 1 tampered or broken, 2 a
 * file or the key could not be read. */
int audit_verify(const char *const *files, size_t n, const char *pubkey_path,
		 int flags, FILE *report);

/** audit_verify over in-memory files (names are for messages; pubkey_pem
 * may be NULL). The fuzz target's entry point. */
int audit_verify_mem(const struct str *files, const char *const *names, size_t n,
		     const char *pubkey_pem, size_t pem_len, int flags, FILE *report);

#endif
