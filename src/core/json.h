/* json.h — umbra's hot-path JSON: a strict validating scanner for bodies
 * that pass through the gateway with surgical edits (never rebuilt), fast
 * navigation over already-validated text, and a small writer.
 *
 * Nothing here allocates except json_str_decode and the writers, which grow
 * a caller-owned struct buf (and so respect its cap). Values are views into
 * the caller's bytes: they live as long as those bytes do. */
#ifndef UMB_JSON_H
#define UMB_JSON_H

#include "core/core.h"

/** Deepest nesting of arrays/objects accepted; one more is an error. */
#define JSON_MAX_DEPTH 128

/** The kind of a JSON value; JSON_INVALID marks "no value". */
enum json_type {
	JSON_INVALID,
	JSON_OBJECT,
	JSON_ARRAY,
	JSON_STRING,
	JSON_NUMBER,
	JSON_TRUE,
	JSON_FALSE,
	JSON_NULL,
};

/** A value and its exact bytes (strings include their quotes). */
struct json_val {
	enum json_type type;
	struct str raw;
};

/** Where validation failed: byte offset plus a static message. */
struct json_err {
	size_t off;
	const char *msg;
};

/** One top-level member; key_raw is between the quotes, escapes intact. */
struct json_member {
	struct str key_raw;
	struct json_val val;
};

/** Cursor over the members/elements of a validated container. */
struct json_iter {
	const char *p, *end;
};

/** Validate a complete JSON text (RFC 8259, strict UTF-8, depth <= 128);
 * on success *root is the top value. UMB_ERR with *err filled otherwise.
 * root and err may be NULL. */
int json_parse(const char *p, size_t n, struct json_val *root,
	       struct json_err *err);

/** json_parse that also records the top-level object's members in the same
 * pass; a non-object root gives *n_members = 0. More than max_members
 * members is an error ("too many members"). */
int json_parse_top(const char *p, size_t n, struct json_member *members,
		   size_t max_members, size_t *n_members, struct json_val *root,
		   struct json_err *err);

/** Strict UTF-8 check (no overlongs, surrogates or code points > U+10FFFF). */
bool json_utf8_valid(const char *p, size_t n);

/** Start iterating an object or array value produced by the parser. */
void json_iter_init(struct json_iter *it, struct json_val container);
/** Next object member; false at the end. Text must be validated. */
bool json_obj_next(struct json_iter *it, struct str *key_raw,
		   struct json_val *val);
/** Next array element; false at the end. Text must be validated. */
bool json_arr_next(struct json_iter *it, struct json_val *val);
/** First member of obj whose unescaped key equals key (NUL-terminated). */
bool json_obj_get(struct json_val obj, const char *key, struct json_val *out);

/** Several members of obj in one pass: out[i] is the first member named
 * keys[i], or type JSON_INVALID. One pass matters when an object holds a
 * large value (a 200 KB message): each json_obj_get skips over it again. */
void json_obj_pick(struct json_val obj, const char *const *keys, size_t n, struct json_val *out);
/** Compare a raw key (escapes intact) with an unescaped C string. */
bool json_key_eq(struct str key_raw, const char *key);
/** True if v is a string whose unescaped content equals s. */
bool json_str_eq(struct json_val v, const char *s);
/** Append v's unescaped UTF-8 to out; surrogate pairs are combined and lone
 * surrogates become U+FFFD. UMB_ERR if v is not a string, or the buf error. */
int json_str_decode(struct json_val v, struct buf *out);
/** Integer value without fraction or exponent, range-checked to int64. */
int json_get_i64(struct json_val v, int64_t *out);
/** Number as a double; UMB_ERR if not a number or it overflows to inf. */
int json_get_double(struct json_val v, double *out);
/** True only for the literal true. */
bool json_is_true(struct json_val v);

/** Append s quoted and escaped (controls as \u00XX); s must be UTF-8. */
int json_write_str(struct buf *b, struct str s);
/** json_write_str for bytes that may not be UTF-8 (request text): each
 * byte of an invalid sequence is written as U+FFFD. */
int json_write_str_lossy(struct buf *b, struct str s);
/** Append s to b with each byte of an invalid UTF-8 sequence replaced by
 * U+FFFD; with flat, control characters become spaces too. */
int utf8_append_clean(struct buf *b, struct str s, bool flat);
/** json_write_str for a NUL-terminated string. */
int json_write_cstr(struct buf *b, const char *s);

#endif
