/* gemini_fmt.c — canon ↔ Gemini generateContent JSON, and the
 * streamGenerateContent?alt=sse decoder (gemini_fmt.h).
 *
 * References: Vertex AI v1 GenerateContentRequest / GenerateContentResponse
 * (google/cloud/aiplatform/v1/{content,tool,openapi}.proto and their REST
 * documentation). The JSON names are the proto fields in lowerCamelCase;
 * Vertex rejects unknown member names with 400 INVALID_ARGUMENT, so the
 * encoder writes nothing it is not sure of. */
#include <stdio.h>
#include <stdlib.h>

#include "core/json.h"
#include "providers/gemini_fmt.h"

/* ------------------------------------------------------------------ */
/* writer with a sticky error: write everything, check once            */

struct gw {
	struct buf *b;
	int rc;
	size_t ref_limit; /* schemas: no $ref is expanded once b->n passes this */
};

static void w_raw(struct gw *w, struct str s)
{
	if (!w->rc)
		w->rc = buf_append_str(w->b, s);
}

#define w_lit(w, lit) w_raw((w), STR(lit))

static void w_str(struct gw *w, struct str s)
{
	if (!w->rc)
		w->rc = json_write_str_lossy(w->b, s);
}

static void w_i64(struct gw *w, int64_t v)
{
	if (!w->rc)
		w->rc = buf_printf(w->b, "%lld", (long long)v);
}

/* The shortest decimal that reads back as the same double. */
static void w_double(struct gw *w, double v)
{
	char tmp[40];
	snprintf(tmp, sizeof tmp, "%.15g", v);
	if (strtod(tmp, NULL) != v)
		snprintf(tmp, sizeof tmp, "%.17g", v);
	w_raw(w, str_cstr(tmp));
}

/* ------------------------------------------------------------------ */
/* JSON Schema → Vertex Schema (an OpenAPI 3.0 subset)                 */

/* How deep $ref expansion and nesting may go: a recursive $ref (a tree
 * type) is cut here and becomes an empty schema. */
#define SCHEMA_MAX_DEPTH 24

/* The members of one JSON Schema object that Vertex can take, collected
 * first so each output member is written once, in a fixed order. */
struct schema_in {
	struct json_val type, nullable, format, title, description, pattern, dflt, example;
	struct json_val items, min_items, max_items, properties, required, ordering;
	struct json_val min_props, max_props, minimum, maximum, min_len, max_len;
	struct json_val enm, cnst, any_of, one_of, ref;
};

static const struct {
	const char *key;
	size_t off;
} schema_keys[] = {
#define SK(k, f) { k, offsetof(struct schema_in, f) }
	SK("type", type), SK("nullable", nullable), SK("format", format), SK("title", title),
	SK("description", description), SK("pattern", pattern), SK("default", dflt),
	SK("example", example), SK("items", items), SK("minItems", min_items),
	SK("maxItems", max_items), SK("properties", properties), SK("required", required),
	SK("propertyOrdering", ordering), SK("minProperties", min_props),
	SK("maxProperties", max_props), SK("minimum", minimum), SK("maximum", maximum),
	SK("minLength", min_len), SK("maxLength", max_len), SK("enum", enm), SK("const", cnst),
	SK("anyOf", any_of), SK("oneOf", one_of), SK("$ref", ref),
#undef SK
};

static void schema_collect(struct json_val obj, struct schema_in *in)
{
	struct json_iter it;
	struct str k;
	struct json_val v;
	memset(in, 0, sizeof *in);
	json_iter_init(&it, obj);
	while (json_obj_next(&it, &k, &v))
		for (size_t i = 0; i < UMB_ARRAY_LEN(schema_keys); i++)
			if (json_key_eq(k, schema_keys[i].key)) {
				*(struct json_val *)((char *)in + schema_keys[i].off) = v;
				break;
			}
}

/* JSON Schema type name → Vertex Type enum name; NULL for "null" and
 * anything unknown. */
static const char *schema_type_name(struct json_val t)
{
	static const char *const map[][2] = {
		{ "string", "STRING" }, { "number", "NUMBER" }, { "integer", "INTEGER" },
		{ "boolean", "BOOLEAN" }, { "array", "ARRAY" }, { "object", "OBJECT" },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(map); i++)
		if (json_str_eq(t, map[i][0]) || json_str_eq(t, map[i][1]))
			return map[i][1];
	return NULL;
}

/* Formats the Vertex Schema documents (NUMBER float/double, INTEGER
 * int32/int64, STRING enum/date-time/email/byte); others are dropped
 * rather than risk a 400. */
static bool schema_format_ok(struct json_val f)
{
	static const char *const ok[] = { "float", "double", "int32", "int64",
					  "enum", "date-time", "email", "byte" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(ok); i++)
		if (json_str_eq(f, ok[i]))
			return true;
	return false;
}

/* A "#/$defs/Name" or "#/definitions/Name" reference resolved against the
 * root schema. */
static bool schema_resolve(struct json_val root, struct json_val ref, struct json_val *out)
{
	static const char *const where[][2] = { { "#/$defs/", "$defs" },
						{ "#/definitions/", "definitions" } };
	if (ref.type != JSON_STRING || ref.raw.n < 2 || memchr(ref.raw.p, '\\', ref.raw.n))
		return false; /* escaped names are not worth the trouble */
	struct str s = str_make(ref.raw.p + 1, ref.raw.n - 2);
	for (size_t i = 0; i < UMB_ARRAY_LEN(where); i++) {
		size_t pn = strlen(where[i][0]);
		if (s.n <= pn || memcmp(s.p, where[i][0], pn))
			continue;
		struct str name = str_make(s.p + pn, s.n - pn);
		struct json_val defs, v;
		struct json_iter it;
		struct str k;
		if (!json_obj_get(root, where[i][1], &defs) || defs.type != JSON_OBJECT)
			return false;
		json_iter_init(&it, defs);
		while (json_obj_next(&it, &k, &v))
			if (str_eq(k, name)) {
				*out = v;
				return v.type == JSON_OBJECT;
			}
		return false;
	}
	return false;
}

static void schema_write_obj(struct gw *w, struct json_val root, struct json_val s, int depth);

static void schema_w_key(struct gw *w, bool *first, const char *name);

/* A member that is a non-negative integer (the int64 fields of Schema). */
static void schema_w_int(struct gw *w, bool *first, const char *name, struct json_val v)
{
	int64_t x;
	if (v.type != JSON_NUMBER || json_get_i64(v, &x) || x < 0)
		return;
	schema_w_key(w, first, name);
	w_i64(w, x);
}

static void schema_w_key(struct gw *w, bool *first, const char *name)
{
	if (!*first)
		w_lit(w, ",");
	*first = false;
	w_str(w, str_cstr(name));
	w_lit(w, ":");
}

/* An enum value as Vertex wants it: a string (numbers and booleans keep
 * their JSON text). Returns false for null and containers. */
static bool schema_w_enum_value(struct gw *w, bool first, struct json_val v)
{
	if (v.type == JSON_NULL || v.type == JSON_OBJECT || v.type == JSON_ARRAY)
		return false;
	if (!first)
		w_lit(w, ",");
	if (v.type == JSON_STRING)
		w_raw(w, v.raw);
	else
		w_str(w, v.raw);
	return true;
}

static void schema_w_enum(struct gw *w, bool *first, struct schema_in *in)
{
	size_t mark = w->b->n;
	bool f = *first, any = false;
	schema_w_key(w, &f, "enum");
	w_lit(w, "[");
	if (in->enm.type == JSON_ARRAY) {
		struct json_iter it;
		struct json_val v;
		json_iter_init(&it, in->enm);
		while (json_arr_next(&it, &v))
			any |= schema_w_enum_value(w, !any, v);
	} else if (in->cnst.type != JSON_INVALID) {
		any = schema_w_enum_value(w, true, in->cnst);
	}
	w_lit(w, "]");
	if (!any) { /* nothing representable: no enum at all */
		w->b->n = mark;
		return;
	}
	*first = false;
}

/* properties: each member rewritten; returns how many. */
static size_t schema_w_properties(struct gw *w, bool *first, struct json_val root,
				  struct json_val props, int depth)
{
	struct json_iter it;
	struct str k;
	struct json_val v;
	size_t n = 0;
	schema_w_key(w, first, "properties");
	w_lit(w, "{");
	json_iter_init(&it, props);
	while (json_obj_next(&it, &k, &v)) {
		if (n++)
			w_lit(w, ",");
		w_lit(w, "\"");
		w_raw(w, k); /* the raw key: its escapes are valid JSON already */
		w_lit(w, "\":");
		schema_write_obj(w, root, v, depth + 1);
	}
	w_lit(w, "}");
	return n;
}

static bool props_has(struct json_val props, struct json_val name)
{
	struct json_iter it;
	struct str k;
	struct json_val v;
	if (props.type != JSON_OBJECT || name.type != JSON_STRING)
		return false;
	json_iter_init(&it, props);
	while (json_obj_next(&it, &k, &v))
		if (str_eq(k, str_make(name.raw.p + 1, name.raw.n - 2)))
			return true;
	return false;
}

/* A list of property names (required, propertyOrdering), keeping only
 * names that are declared: Vertex rejects a required name it has no
 * property for. */
static void schema_w_names(struct gw *w, bool *first, const char *key, struct json_val arr,
			   struct json_val props)
{
	struct json_iter it;
	struct json_val v;
	size_t mark = w->b->n, n = 0;
	bool f = *first;
	if (arr.type != JSON_ARRAY)
		return;
	schema_w_key(w, &f, key);
	w_lit(w, "[");
	json_iter_init(&it, arr);
	while (json_arr_next(&it, &v)) {
		if (!props_has(props, v))
			continue;
		if (n++)
			w_lit(w, ",");
		w_raw(w, v.raw);
	}
	w_lit(w, "]");
	if (!n) {
		w->b->n = mark;
		return;
	}
	*first = false;
}

static void schema_w_any_of(struct gw *w, bool *first, struct json_val root,
			    struct json_val arr, int depth)
{
	struct json_iter it;
	struct json_val v;
	size_t n = 0;
	schema_w_key(w, first, "anyOf");
	w_lit(w, "[");
	json_iter_init(&it, arr);
	while (json_arr_next(&it, &v)) {
		if (n++)
			w_lit(w, ",");
		schema_write_obj(w, root, v, depth + 1);
	}
	w_lit(w, "]");
}

/* What the values of an enum have in common (null aside). */
struct enum_kinds {
	bool any, str, integer, num, boolean;
};

static void enum_kind_add(struct enum_kinds *k, struct json_val v)
{
	int64_t x;
	if (v.type == JSON_NULL)
		return;
	k->any = true;
	k->str &= v.type == JSON_STRING;
	k->num &= v.type == JSON_NUMBER;
	k->integer &= v.type == JSON_NUMBER && !json_get_i64(v, &x);
	k->boolean &= v.type == JSON_TRUE || v.type == JSON_FALSE;
}

/* The type an untyped enum / const implies from its values: STRING,
 * INTEGER, NUMBER or BOOLEAN when they agree, else NULL. */
static const char *schema_enum_type(const struct schema_in *in)
{
	struct enum_kinds k = { false, true, true, true, true };
	if (in->enm.type == JSON_ARRAY) {
		struct json_iter it;
		struct json_val v;
		json_iter_init(&it, in->enm);
		while (json_arr_next(&it, &v))
			enum_kind_add(&k, v);
	} else if (in->cnst.type != JSON_INVALID) {
		enum_kind_add(&k, in->cnst);
	}
	if (!k.any)
		return NULL;
	return k.str ? "STRING" : k.integer ? "INTEGER" : k.num ? "NUMBER" : k.boolean ? "BOOLEAN" : NULL;
}

/* The type member: one name, or for a type list ["string","null"] the
 * non-null name plus nullable; several non-null names become anyOf.
 * Returns the name written (NULL: none). */
static const char *schema_w_type(struct gw *w, bool *first, struct schema_in *in, bool *nullable,
				 bool *wrote_any_of)
{
	const char *name = NULL;
	if (in->type.type == JSON_STRING) {
		name = schema_type_name(in->type);
		*nullable |= json_str_eq(in->type, "null");
	} else if (in->type.type == JSON_ARRAY) {
		struct json_iter it;
		struct json_val v;
		size_t n = 0;
		json_iter_init(&it, in->type);
		while (json_arr_next(&it, &v)) {
			*nullable |= json_str_eq(v, "null");
			if (schema_type_name(v) && n++ == 0)
				name = schema_type_name(v);
		}
		if (n > 1 && in->any_of.type == JSON_INVALID && in->one_of.type == JSON_INVALID) {
			schema_w_key(w, first, "anyOf");
			w_lit(w, "[");
			n = 0;
			json_iter_init(&it, in->type);
			while (json_arr_next(&it, &v))
				if (schema_type_name(v)) {
					w_raw(w, n++ ? STR(",{\"type\":\"") : STR("{\"type\":\""));
					w_raw(w, str_cstr(schema_type_name(v)));
					w_lit(w, "\"}");
				}
			w_lit(w, "]");
			*wrote_any_of = true;
			return NULL;
		}
	}
	/* an untyped schema with properties or items is an object / array,
	 * one with an enum has its values' type */
	if (!name && in->properties.type == JSON_OBJECT)
		name = "OBJECT";
	if (!name && in->items.type == JSON_OBJECT)
		name = "ARRAY";
	if (!name)
		name = schema_enum_type(in);
	if (!name)
		return NULL;
	schema_w_key(w, first, "type");
	w_lit(w, "\"");
	w_raw(w, str_cstr(name));
	w_lit(w, "\"");
	return name;
}

static void schema_w_copy(struct gw *w, bool *first, const char *key, struct json_val v,
			  enum json_type want)
{
	if (v.type == JSON_INVALID || (want != JSON_INVALID && v.type != want))
		return;
	schema_w_key(w, first, key);
	w_raw(w, v.raw);
}

/* One schema object, recursively; anything that is not an object (true,
 * false) becomes the empty schema. */
static void schema_write_obj(struct gw *w, struct json_val root, struct json_val s, int depth)
{
	struct schema_in in;
	bool first = true, nullable = false, wrote_any_of = false;
	if (s.type != JSON_OBJECT || depth > SCHEMA_MAX_DEPTH) {
		w_lit(w, "{}");
		return;
	}
	schema_collect(s, &in);
	struct json_val target;
	if (in.ref.type != JSON_INVALID) {
		/* a reference replaces the schema; its description, when
		 * given beside it, is kept. References that fan out (A uses B
		 * twice, B uses C twice, ...) would grow the output
		 * exponentially: past a size budget they are not expanded. */
		if (w->b->n > w->ref_limit || !schema_resolve(root, in.ref, &target)) {
			w_lit(w, "{}");
			return;
		}
		struct json_val desc = in.description;
		schema_collect(target, &in);
		if (desc.type == JSON_STRING)
			in.description = desc;
		depth++;
		if (depth > SCHEMA_MAX_DEPTH) {
			w_lit(w, "{}");
			return;
		}
	}
	w_lit(w, "{");
	const char *type = schema_w_type(w, &first, &in, &nullable, &wrote_any_of);
	bool has_enum = in.enm.type == JSON_ARRAY || in.cnst.type != JSON_INVALID;
	bool numeric = type && (!strcmp(type, "INTEGER") || !strcmp(type, "NUMBER"));
	if (type && !strcmp(type, "BOOLEAN"))
		has_enum = false; /* Vertex enums are string-valued: true/false need none */
	if (in.format.type == JSON_STRING && schema_format_ok(in.format)) {
		schema_w_copy(w, &first, "format", in.format, JSON_STRING);
	} else if (has_enum && numeric) {
		/* numeric enums: {type: INTEGER, format: enum, enum: ["101", ...]} */
		schema_w_key(w, &first, "format");
		w_lit(w, "\"enum\"");
	}
	schema_w_copy(w, &first, "title", in.title, JSON_STRING);
	schema_w_copy(w, &first, "description", in.description, JSON_STRING);
	if (in.nullable.type == JSON_TRUE)
		nullable = true;
	if (in.enm.type == JSON_ARRAY) {
		struct json_iter it;
		struct json_val v;
		json_iter_init(&it, in.enm);
		while (json_arr_next(&it, &v))
			nullable |= v.type == JSON_NULL;
	}
	if (nullable) {
		schema_w_key(w, &first, "nullable");
		w_lit(w, "true");
	}
	if (has_enum)
		schema_w_enum(w, &first, &in);
	if (in.items.type == JSON_OBJECT) {
		schema_w_key(w, &first, "items");
		schema_write_obj(w, root, in.items, depth + 1);
	} else if (in.items.type == JSON_ARRAY) { /* tuple form: the first one */
		struct json_iter it;
		struct json_val v;
		json_iter_init(&it, in.items);
		if (json_arr_next(&it, &v)) {
			schema_w_key(w, &first, "items");
			schema_write_obj(w, root, v, depth + 1);
		}
	}
	schema_w_int(w, &first, "minItems", in.min_items);
	schema_w_int(w, &first, "maxItems", in.max_items);
	if (in.properties.type == JSON_OBJECT)
		schema_w_properties(w, &first, root, in.properties, depth);
	schema_w_names(w, &first, "propertyOrdering", in.ordering, in.properties);
	schema_w_names(w, &first, "required", in.required, in.properties);
	schema_w_int(w, &first, "minProperties", in.min_props);
	schema_w_int(w, &first, "maxProperties", in.max_props);
	schema_w_copy(w, &first, "minimum", in.minimum, JSON_NUMBER);
	schema_w_copy(w, &first, "maximum", in.maximum, JSON_NUMBER);
	schema_w_int(w, &first, "minLength", in.min_len);
	schema_w_int(w, &first, "maxLength", in.max_len);
	schema_w_copy(w, &first, "pattern", in.pattern, JSON_STRING);
	schema_w_copy(w, &first, "default", in.dflt, JSON_INVALID);
	schema_w_copy(w, &first, "example", in.example, JSON_INVALID);
	/* anyOf wins over oneOf (Vertex has no oneOf: "any" is the looser
	 * reading, which the model can still satisfy) */
	struct json_val alts = in.any_of.type == JSON_ARRAY ? in.any_of : in.one_of;
	if (alts.type == JSON_ARRAY && !wrote_any_of)
		schema_w_any_of(w, &first, root, alts, depth);
	w_lit(w, "}");
}

/* True when the schema declares at least one parameter (properties or
 * alternatives): Vertex rejects an OBJECT parameters schema without
 * properties, and a function without parameters simply omits them. */
static bool schema_has_params(struct json_val root, struct json_val s, int depth)
{
	struct json_val v;
	struct json_iter it;
	struct str k;
	if (s.type != JSON_OBJECT || depth > SCHEMA_MAX_DEPTH)
		return false;
	if (json_obj_get(s, "anyOf", &v) || json_obj_get(s, "oneOf", &v))
		return v.type == JSON_ARRAY;
	if (json_obj_get(s, "$ref", &v))
		return schema_resolve(root, v, &v) && schema_has_params(root, v, depth + 1);
	if (!json_obj_get(s, "properties", &v) || v.type != JSON_OBJECT)
		return false;
	json_iter_init(&it, v);
	return json_obj_next(&it, &k, &v);
}

int gemini_schema_write(struct str schema, struct buf *out)
{
	struct json_val root;
	if (!schema.n || json_parse(schema.p, schema.n, &root, NULL) ||
	    !schema_has_params(root, root, 0))
		return UMB_AGAIN;
	/* expanded references may take four times the schema's own size */
	struct gw w = { out, 0, out->n + 4 * schema.n + 65536 };
	schema_write_obj(&w, root, root, 0);
	return w.rc;
}

/* ------------------------------------------------------------------ */
/* canon request → GenerateContentRequest                              */

#define ENC_MAX_CALLS 256 /* calls of one model turn matched by position */

/* Where the encoder stands: the open content and what the position
 * fallback for tool result names needs. */
struct enc {
	struct gw w;
	const struct canon_req *req;
	int open_role;                 /* -1: no content open */
	size_t n_contents, n_parts;    /* written so far / in the open content */
	const struct canon_part *calls[ENC_MAX_CALLS]; /* the last model turn's calls */
	size_t n_calls, n_results;     /* results in the open user content */
	char *why;
	size_t why_n;
};

static void enc_open(struct enc *e, enum canon_role role)
{
	if (e->open_role == (int)role) {
		if (e->n_parts)
			w_lit(&e->w, ",");
		return;
	}
	if (e->open_role >= 0)
		w_lit(&e->w, "]}");
	if (e->n_contents++)
		w_lit(&e->w, ",");
	w_raw(&e->w, role == CANON_USER ? STR("{\"role\":\"user\",\"parts\":[")
					: STR("{\"role\":\"model\",\"parts\":["));
	if (role == CANON_ASSISTANT)
		e->n_calls = 0; /* a new model turn: its calls are the reference */
	else
		e->n_results = 0;
	e->open_role = (int)role;
	e->n_parts = 0;
}

/* The function name a tool result answers: its own, else the call with
 * the same id earlier in the conversation, else (ids lost, e.g. a client
 * that rewrote them) the call at the same position in the model turn
 * just before. */
static struct str enc_result_name(struct enc *e, size_t mi, size_t pi)
{
	const struct canon_part *r = &e->req->msgs[mi].parts[pi];
	if (r->name.n)
		return r->name;
	for (size_t i = mi + 1; i-- > 0;) {
		const struct canon_msg *m = &e->req->msgs[i];
		for (size_t j = (i == mi ? pi : m->n_parts); j-- > 0;)
			if (m->parts[j].type == CANON_TOOL_CALL && r->id.n &&
			    str_eq(m->parts[j].id, r->id))
				return m->parts[j].name;
	}
	if (e->n_results < e->n_calls)
		return e->calls[e->n_results]->name;
	return STR_NULL;
}

/* A JSON object text kept as is; anything else is not one. */
static bool is_json_object(struct str s)
{
	struct json_val v;
	return s.n && !json_parse(s.p, s.n, &v, NULL) && v.type == JSON_OBJECT;
}

/* The MIME type of base64 data from its first bytes (the magic numbers
 * of PNG, JPEG, GIF, WebP and PDF); image/jpeg when unknown. */
static struct str sniff_mime(struct str b64)
{
	static const char *const magic[][2] = {
		{ "iVBORw0KGgo", "image/png" }, { "/9j/", "image/jpeg" },
		{ "R0lGOD", "image/gif" },      { "UklGR", "image/webp" },
		{ "JVBERi0", "application/pdf" },
	};
	for (size_t i = 0; i < UMB_ARRAY_LEN(magic); i++) {
		size_t n = strlen(magic[i][0]);
		if (b64.n >= n && !memcmp(b64.p, magic[i][0], n))
			return str_cstr(magic[i][1]);
	}
	return STR("image/jpeg");
}

/* The MIME type of a URL from its extension; image/jpeg when unknown
 * (fileData requires one). */
static struct str url_mime(struct str url)
{
	static const char *const ext[][2] = {
		{ ".png", "image/png" },   { ".jpg", "image/jpeg" }, { ".jpeg", "image/jpeg" },
		{ ".gif", "image/gif" },   { ".webp", "image/webp" }, { ".pdf", "application/pdf" },
		{ ".heic", "image/heic" }, { ".heif", "image/heif" },
	};
	size_t n = url.n;
	for (size_t i = 0; i < url.n; i++)
		if (url.p[i] == '?' || url.p[i] == '#') {
			n = i;
			break;
		}
	for (size_t i = 0; i < UMB_ARRAY_LEN(ext); i++) {
		size_t en = strlen(ext[i][0]);
		if (n >= en && !strncasecmp(url.p + n - en, ext[i][0], en))
			return str_cstr(ext[i][1]);
	}
	return STR("image/jpeg");
}

static void enc_inline(struct enc *e, struct str mime, struct str data)
{
	w_lit(&e->w, "{\"inlineData\":{\"mimeType\":");
	w_str(&e->w, mime.n ? mime : sniff_mime(data));
	w_lit(&e->w, ",\"data\":");
	w_str(&e->w, data);
	w_lit(&e->w, "}}");
}

static void enc_image(struct enc *e, const struct canon_part *p)
{
	if (p->data.n) {
		enc_inline(e, p->media_type, p->data);
		return;
	}
	/* a data: URL that reached us whole: inline it */
	struct str u = p->url;
	const char *comma = u.n > 5 && !strncasecmp(u.p, "data:", 5) ? memchr(u.p, ',', u.n) : NULL;
	if (comma) {
		struct str meta = str_make(u.p + 5, (size_t)(comma - u.p) - 5);
		const char *semi = memchr(meta.p, ';', meta.n);
		struct str mime = semi ? str_make(meta.p, (size_t)(semi - meta.p)) : meta;
		enc_inline(e, p->media_type.n ? p->media_type : mime,
			   str_make(comma + 1, u.n - (size_t)(comma + 1 - u.p)));
		return;
	}
	w_lit(&e->w, "{\"fileData\":{\"mimeType\":");
	w_str(&e->w, p->media_type.n ? p->media_type : url_mime(u));
	w_lit(&e->w, ",\"fileUri\":");
	w_str(&e->w, u);
	w_lit(&e->w, "}}");
}

/* Gemini 3 refuses a function-calling turn sent back without the
 * thoughtSignature its functionCall part came with, and the canonical
 * form has no place for it. Clients echo call ids, so the signature
 * travels in the id: GEMINI_SIG_MARK + the base64 signature in the URL
 * alphabet without padding ([A-Za-z0-9_-], which every client and
 * vendor accepts in an id). */
#define GEMINI_SIG_MARK "__ts_"

/* The call id for part p (a functionCall part), its signature folded in,
 * copied into the arena. */
static struct str call_id_with_sig(struct arena *a, struct str response_id, int index,
				   struct json_val part)
{
	char id[GEMINI_ID_MAX];
	struct json_val sig;
	gemini_call_id(response_id, index, id);
	if (!json_obj_get(part, "thoughtSignature", &sig) || sig.type != JSON_STRING || sig.raw.n <= 2)
		return str_make(arena_strndup(a, id, strlen(id)), strlen(id));
	struct buf b;
	buf_init(&b, 0);
	buf_append_cstr(&b, id);
	buf_append_lit(&b, GEMINI_SIG_MARK);
	for (size_t i = 1; i + 1 < sig.raw.n; i++) {
		char c = sig.raw.p[i];
		c = c == '+' ? '-' : c == '/' ? '_' : c;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_')
			buf_append(&b, &c, 1); /* '=' padding and anything odd dropped */
	}
	struct str out = str_make(arena_strndup(a, b.p, b.n), b.n);
	buf_clear(&b);
	return out;
}

/* The signature folded into a call id, back in base64 with padding, or
 * an empty string when the id carries none (a call another model made). */
static void sig_from_id(struct str id, struct buf *out)
{
	const char *m = NULL;
	for (size_t i = 0; i + sizeof GEMINI_SIG_MARK - 1 <= id.n; i++)
		if (!memcmp(id.p + i, GEMINI_SIG_MARK, sizeof GEMINI_SIG_MARK - 1))
			m = id.p + i;
	if (!m)
		return;
	const char *p = m + sizeof GEMINI_SIG_MARK - 1, *end = id.p + id.n;
	size_t n = 0;
	for (; p < end; p++, n++) {
		char c = *p == '-' ? '+' : *p == '_' ? '/' : *p;
		buf_append(out, &c, 1);
	}
	while (n++ % 4)
		buf_append_lit(out, "=");
}

static void enc_call(struct enc *e, const struct canon_part *p)
{
	w_lit(&e->w, "{\"functionCall\":{\"name\":");
	w_str(&e->w, p->name);
	w_lit(&e->w, ",\"args\":");
	/* args is a Struct: a JSON object. Arguments that are not one (a
	 * model's broken output echoed back) become {}. */
	w_raw(&e->w, is_json_object(p->args) ? p->args : STR("{}"));
	w_lit(&e->w, "}");
	struct buf sig;
	buf_init(&sig, 0);
	sig_from_id(p->id, &sig);
	if (sig.n) {
		w_lit(&e->w, ",\"thoughtSignature\":");
		w_str(&e->w, buf_str(&sig));
	}
	buf_clear(&sig);
	w_lit(&e->w, "}");
	if (e->n_calls < ENC_MAX_CALLS)
		e->calls[e->n_calls++] = p;
}

/* A tool result as functionResponse. response must be an object; per the
 * FunctionResponse documentation, "output" carries the function's output
 * and "error" its error details. A result whose text is itself a JSON
 * object is passed as that object (the documented "whole response is the
 * output" form). */
static int enc_result(struct enc *e, size_t mi, size_t pi)
{
	const struct canon_part *p = &e->req->msgs[mi].parts[pi];
	struct str name = enc_result_name(e, mi, pi);
	e->n_results++;
	if (!name.n) {
		snprintf(e->why, e->why_n, "tool result \"%.*s\" answers no earlier tool call",
			 (int)UMB_MIN(p->id.n, 64), p->id.p ? p->id.p : "");
		return UMB_ERR;
	}
	w_lit(&e->w, "{\"functionResponse\":{\"name\":");
	w_str(&e->w, name);
	w_lit(&e->w, ",\"response\":");
	bool obj = is_json_object(p->text);
	if (!p->is_error && obj) {
		w_raw(&e->w, p->text);
	} else {
		w_raw(&e->w, p->is_error ? STR("{\"error\":") : STR("{\"output\":"));
		if (obj)
			w_raw(&e->w, p->text);
		else
			w_str(&e->w, p->text);
		w_lit(&e->w, "}");
	}
	w_lit(&e->w, "}}");
	return UMB_OK;
}

/* Whether a part produces anything (Vertex rejects empty text parts). */
static bool part_writes(const struct canon_part *p)
{
	switch (p->type) {
	case CANON_TEXT:
		return p->text.n > 0;
	case CANON_IMAGE:
		return p->data.n || p->url.n;
	case CANON_TOOL_CALL:
	case CANON_TOOL_RESULT:
		return true;
	}
	return false;
}

static int enc_contents(struct enc *e)
{
	w_lit(&e->w, "{\"contents\":[");
	for (size_t mi = 0; mi < e->req->n_msgs; mi++) {
		const struct canon_msg *m = &e->req->msgs[mi];
		for (size_t pi = 0; pi < m->n_parts; pi++) {
			const struct canon_part *p = &m->parts[pi];
			if (!part_writes(p))
				continue;
			enc_open(e, m->role);
			e->n_parts++;
			switch (p->type) {
			case CANON_TEXT:
				w_lit(&e->w, "{\"text\":");
				w_str(&e->w, p->text);
				w_lit(&e->w, "}");
				break;
			case CANON_IMAGE:
				enc_image(e, p);
				break;
			case CANON_TOOL_CALL:
				enc_call(e, p);
				break;
			case CANON_TOOL_RESULT:
				if (enc_result(e, mi, pi))
					return UMB_ERR;
				break;
			}
		}
	}
	if (e->open_role >= 0)
		w_lit(&e->w, "]}");
	w_lit(&e->w, "]");
	return UMB_OK;
}

static void enc_tools(struct enc *e)
{
	const struct canon_req *r = e->req;
	if (!r->n_tools)
		return;
	w_lit(&e->w, ",\"tools\":[{\"functionDeclarations\":[");
	for (size_t i = 0; i < r->n_tools; i++) {
		const struct canon_tool *t = &r->tools[i];
		w_raw(&e->w, i ? STR(",{\"name\":") : STR("{\"name\":"));
		w_str(&e->w, t->name);
		if (t->description.n) {
			w_lit(&e->w, ",\"description\":");
			w_str(&e->w, t->description);
		}
		size_t mark = e->w.b->n;
		w_lit(&e->w, ",\"parameters\":");
		if (!e->w.rc) {
			int rc = gemini_schema_write(t->schema, e->w.b);
			if (rc == UMB_AGAIN) /* no parameters: the member goes */
				e->w.b->n = mark;
			else if (rc)
				e->w.rc = rc;
		}
		w_lit(&e->w, "}");
	}
	w_lit(&e->w, "]}]");
	if (r->tool_choice == CANON_TC_UNSET)
		return;
	static const char *const modes[] = {
		[CANON_TC_AUTO] = "AUTO", [CANON_TC_NONE] = "NONE",
		[CANON_TC_ANY] = "ANY",   [CANON_TC_TOOL] = "ANY",
	};
	w_lit(&e->w, ",\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"");
	w_raw(&e->w, str_cstr(modes[r->tool_choice]));
	w_lit(&e->w, "\"");
	if (r->tool_choice == CANON_TC_TOOL) {
		w_lit(&e->w, ",\"allowedFunctionNames\":[");
		w_str(&e->w, r->tool_choice_name);
		w_lit(&e->w, "]");
	}
	w_lit(&e->w, "}}");
}

static void enc_generation(struct enc *e)
{
	const struct canon_req *r = e->req;
	size_t n_stop = 0;
	for (size_t i = 0; i < r->n_stop; i++)
		n_stop += r->stop[i].n > 0;
	if (!r->max_tokens && !r->has_temperature && !r->has_top_p && !r->has_top_k && !n_stop)
		return;
	bool first = true;
	w_lit(&e->w, ",\"generationConfig\":{");
#define GEN_KEY(lit) do { w_raw(&e->w, first ? STR(lit) : STR("," lit)); first = false; } while (0)
	if (r->max_tokens > 0) {
		GEN_KEY("\"maxOutputTokens\":");
		w_i64(&e->w, r->max_tokens);
	}
	if (r->has_temperature) {
		GEN_KEY("\"temperature\":");
		w_double(&e->w, r->temperature);
	}
	if (r->has_top_p) {
		GEN_KEY("\"topP\":");
		w_double(&e->w, r->top_p);
	}
	if (r->has_top_k) {
		GEN_KEY("\"topK\":");
		w_i64(&e->w, r->top_k);
	}
	if (n_stop) {
		GEN_KEY("\"stopSequences\":[");
		size_t k = 0;
		for (size_t i = 0; i < r->n_stop && k < GEMINI_MAX_STOP; i++) {
			if (!r->stop[i].n)
				continue;
			if (k++)
				w_lit(&e->w, ",");
			w_str(&e->w, r->stop[i]);
		}
		w_lit(&e->w, "]");
	}
#undef GEN_KEY
	w_lit(&e->w, "}");
}

int gemini_req_encode(const struct canon_req *req, struct buf *out, char *why, size_t why_n)
{
	struct enc *e = calloc(1, sizeof *e);
	if (!e)
		return UMB_ENOMEM;
	size_t n0 = out->n;
	int rc;
	e->w.b = out;
	e->req = req;
	e->open_role = -1;
	e->why = why;
	e->why_n = why_n;
	if ((rc = enc_contents(e)))
		goto out;
	if (req->system.n) {
		w_lit(&e->w, ",\"systemInstruction\":{\"parts\":[{\"text\":");
		w_str(&e->w, req->system);
		w_lit(&e->w, "}]}");
	}
	enc_tools(e);
	enc_generation(e);
	w_lit(&e->w, "}");
	rc = e->w.rc;
	if (rc)
		snprintf(why, why_n, "request too large to encode");
out:
	if (rc) { /* never a partial document */
		out->n = n0;
		if (out->p)
			out->p[n0] = 0;
	}
	free(e);
	return rc;
}

/* ------------------------------------------------------------------ */
/* GenerateContentResponse → canon                                     */

static struct str dup_decoded(struct arena *a, struct json_val v)
{
	struct buf b;
	buf_init(&b, 0);
	if (json_str_decode(v, &b) || !b.n) {
		buf_clear(&b);
		return STR_NULL;
	}
	struct str s = str_make(arena_strndup(a, b.p, b.n), b.n);
	buf_clear(&b);
	return s;
}

void gemini_call_id(struct str response_id, int index, char out[GEMINI_ID_MAX])
{
	char base[49];
	size_t n = 0;
	/* keep what every client accepts in an id: [A-Za-z0-9_-] */
	for (size_t i = 0; i < response_id.n && n < sizeof base - 1; i++) {
		char c = response_id.p[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '-')
			base[n++] = c;
	}
	if (!n) {
		unsigned char r[12];
		rand_bytes(r, sizeof r);
		for (size_t i = 0; i < sizeof r; i++)
			n += (size_t)snprintf(base + n, sizeof base - n, "%02x", r[i]);
	}
	base[n] = 0;
	snprintf(out, GEMINI_ID_MAX, "call_%s_%d", base, index);
}


static uint64_t usage_num(struct json_val um, const char *key, bool *seen)
{
	struct json_val v;
	int64_t x;
	if (!json_obj_get(um, key, &v))
		return 0;
	/* int32 counts; proto3 JSON may also quote integers */
	if (v.type == JSON_STRING && v.raw.n > 2) {
		uint64_t u;
		if (str_to_u64(str_make(v.raw.p + 1, v.raw.n - 2), &u))
			return 0;
		*seen = true;
		return u;
	}
	if (json_get_i64(v, &x) || x < 0)
		return 0;
	*seen = true;
	return (uint64_t)x;
}

/* usageMetadata → canon_usage. prompt_tokens counts every input token:
 * promptTokenCount (cached content included, per its documentation) plus
 * toolUsePromptTokenCount; completion counts candidates and thoughts
 * (both billed as output). Chunks that carry no count at all (Vertex
 * streams send {"trafficType":...} alone) leave *u untouched. */
static bool read_usage(struct json_val root, struct canon_usage *u)
{
	struct json_val um;
	bool seen = false;
	if (!json_obj_get(root, "usageMetadata", &um) || um.type != JSON_OBJECT)
		return false;
	struct canon_usage x = { .seen = true };
	x.prompt_tokens = usage_num(um, "promptTokenCount", &seen) +
			  usage_num(um, "toolUsePromptTokenCount", &seen);
	x.completion_tokens = usage_num(um, "candidatesTokenCount", &seen) +
			      usage_num(um, "thoughtsTokenCount", &seen);
	x.cached_prompt_tokens = UMB_MIN(usage_num(um, "cachedContentTokenCount", &seen),
					 x.prompt_tokens);
	usage_num(um, "totalTokenCount", &seen);
	if (!seen)
		return false;
	*u = x;
	return true;
}

/* Candidate.FinishReason → canon. STOP after function calls is a tool
 * call stop; the safety family is a content filter; the rest (OTHER,
 * MALFORMED_FUNCTION_CALL, unknown future names) is a plain stop. */
static enum canon_finish map_finish(struct json_val fr, bool has_calls)
{
	static const char *const filtered[] = {
		"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
		"IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "LANGUAGE",
	};
	if (json_str_eq(fr, "MAX_TOKENS"))
		return CANON_FIN_LENGTH;
	for (size_t i = 0; i < UMB_ARRAY_LEN(filtered); i++)
		if (json_str_eq(fr, filtered[i]))
			return CANON_FIN_CONTENT_FILTER;
	return has_calls ? CANON_FIN_TOOL_CALLS : CANON_FIN_STOP;
}

/* The first candidate's parts array and finishReason, if any. */
static void first_candidate(struct json_val root, struct json_val *parts, struct json_val *fr)
{
	struct json_val cands, c, content;
	struct json_iter it;
	*parts = *fr = (struct json_val){ 0 };
	if (!json_obj_get(root, "candidates", &cands) || cands.type != JSON_ARRAY)
		return;
	json_iter_init(&it, cands);
	if (!json_arr_next(&it, &c) || c.type != JSON_OBJECT)
		return;
	if (json_obj_get(c, "finishReason", fr) && fr->type != JSON_STRING)
		*fr = (struct json_val){ 0 };
	if (json_obj_get(c, "content", &content) && content.type == JSON_OBJECT &&
	    json_obj_get(content, "parts", parts) && parts->type != JSON_ARRAY)
		*parts = (struct json_val){ 0 };
}

/* A prompt the service refused to answer (promptFeedback.blockReason). */
static bool prompt_blocked(struct json_val root)
{
	struct json_val pf, br;
	return json_obj_get(root, "promptFeedback", &pf) && pf.type == JSON_OBJECT &&
	       json_obj_get(pf, "blockReason", &br) && br.type == JSON_STRING;
}

/* A part the client should see: not a thought summary. */
static bool part_visible(struct json_val part)
{
	struct json_val th;
	return part.type == JSON_OBJECT && !(json_obj_get(part, "thought", &th) && json_is_true(th));
}

/* A validated JSON text without the whitespace between tokens (Vertex
 * pretty-prints its answers; clients get compact arguments). */
static int json_compact(struct buf *out, struct str j)
{
	size_t run = 0;
	bool in_str = false;
	int rc = UMB_OK;
	for (size_t i = 0; i < j.n && !rc; i++) {
		char c = j.p[i];
		if (in_str) {
			if (c == '\\')
				i++; /* the escaped byte cannot end the string */
			else if (c == '"')
				in_str = false;
		} else if (c == '"') {
			in_str = true;
		} else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
			rc = buf_append(out, j.p + run, i - run);
			run = i + 1;
		}
	}
	return rc ? rc : buf_append(out, j.p + run, j.n - run);
}

/* A call's args as compact JSON text appended to out ({} when absent). */
static int call_args(struct json_val fc, struct buf *out)
{
	struct json_val args;
	if (json_obj_get(fc, "args", &args) && args.type == JSON_OBJECT)
		return json_compact(out, args.raw);
	return buf_append_lit(out, "{}");
}

/* The text gathered so far as one TEXT part (adjacent text parts of the
 * answer become one). */
static void flush_text(struct arena *a, struct buf *text, struct canon_resp *out)
{
	if (!text->n)
		return;
	out->parts[out->n_parts++] = (struct canon_part){
		.type = CANON_TEXT, .text = str_make(arena_strndup(a, text->p, text->n), text->n) };
	buf_reset(text);
}

/* The response parts into out->parts: adjacent text parts joined, calls
 * with generated ids, thoughts and other part kinds (code execution,
 * inline data) left out. There are never more canonical parts than JSON
 * parts. */
static void decode_parts(struct arena *a, struct json_val parts, struct str rid,
			 struct canon_resp *out)
{
	struct json_iter it;
	struct json_val p, v;
	size_t n = 0, n_calls = 0;
	json_iter_init(&it, parts);
	while (json_arr_next(&it, &p))
		n++;
	out->parts = arena_alloc(a, (n ? n : 1) * sizeof *out->parts);
	struct buf text, args;
	buf_init(&text, 0);
	buf_init(&args, 0);
	json_iter_init(&it, parts);
	while (json_arr_next(&it, &p)) {
		if (!part_visible(p))
			continue;
		if (json_obj_get(p, "text", &v) && v.type == JSON_STRING) {
			json_str_decode(v, &text);
			continue;
		}
		if (!json_obj_get(p, "functionCall", &v) || v.type != JSON_OBJECT)
			continue;
		flush_text(a, &text, out);
		struct json_val name = { 0 };
		json_obj_get(v, "name", &name);
		buf_reset(&args);
		call_args(v, &args);
		out->parts[out->n_parts++] = (struct canon_part){
			.type = CANON_TOOL_CALL,
			.id = call_id_with_sig(a, rid, (int)n_calls++, p),
			.name = dup_decoded(a, name),
			.args = str_make(arena_strndup(a, args.p ? args.p : "{}", args.p ? args.n : 2),
					 args.p ? args.n : 2),
		};
	}
	flush_text(a, &text, out);
	buf_clear(&text);
	buf_clear(&args);
}

int gemini_resp_decode(struct arena *a, struct str body, struct canon_resp *out)
{
	struct json_val root, parts, fr, v;
	memset(out, 0, sizeof *out);
	if (json_parse(body.p, body.n, &root, NULL) || root.type != JSON_OBJECT ||
	    json_obj_get(root, "error", &v))
		return UMB_ERR;
	bool has_cands = json_obj_get(root, "candidates", &v) && v.type == JSON_ARRAY;
	bool blocked = prompt_blocked(root);
	if (!has_cands && !blocked)
		return UMB_ERR; /* not a GenerateContentResponse */
	if (json_obj_get(root, "responseId", &v))
		out->id = dup_decoded(a, v);
	if (json_obj_get(root, "modelVersion", &v))
		out->model = dup_decoded(a, v);
	first_candidate(root, &parts, &fr);
	if (parts.type == JSON_ARRAY)
		decode_parts(a, parts, out->id, out);
	bool has_calls = false;
	for (size_t i = 0; i < out->n_parts; i++)
		has_calls |= out->parts[i].type == CANON_TOOL_CALL;
	if (fr.type == JSON_STRING)
		out->finish = map_finish(fr, has_calls);
	else if (blocked && !has_cands)
		out->finish = CANON_FIN_CONTENT_FILTER;
	else
		out->finish = has_calls ? CANON_FIN_TOOL_CALLS : CANON_FIN_STOP;
	read_usage(root, &out->usage);
	return UMB_OK;
}

/* ------------------------------------------------------------------ */
/* streamGenerateContent?alt=sse                                       */

void gemini_stream_dec_init(struct gemini_stream_dec *d)
{
	memset(d, 0, sizeof *d);
	sse_init(&d->sse, GEMINI_MAX_EVENT);
	buf_init(&d->scratch, GEMINI_MAX_EVENT);
}

void gemini_stream_dec_clear(struct gemini_stream_dec *d)
{
	sse_clear(&d->sse);
	buf_clear(&d->scratch);
}

static int dec_emit(struct gemini_stream_dec *d, struct canon_ev ev)
{
	int rc = canon_emit(d->sink, &ev);
	if (rc && !d->err)
		d->err = rc;
	return rc;
}

static int dec_start(struct gemini_stream_dec *d, struct json_val root)
{
	struct json_val v;
	struct canon_ev ev = { .type = CEV_START };
	d->started = true;
	buf_reset(&d->scratch);
	if (json_obj_get(root, "responseId", &v) && !json_str_decode(v, &d->scratch)) {
		size_t n = UMB_MIN(d->scratch.n, sizeof d->resp_id - 1);
		memcpy(d->resp_id, d->scratch.p, n);
		d->resp_id[n] = 0;
	}
	ev.id = str_cstr(d->resp_id);
	size_t model_off = d->scratch.n;
	if (json_obj_get(root, "modelVersion", &v) && !json_str_decode(v, &d->scratch))
		ev.model = str_make(d->scratch.p + model_off, d->scratch.n - model_off);
	return dec_emit(d, ev);
}

static int dec_call(struct gemini_stream_dec *d, struct json_val part, struct json_val fc)
{
	struct json_val name;
	int idx = d->n_tools++;
	int rc;
	struct arena *a = arena_new(0); /* the id, for this event only */
	struct str id = call_id_with_sig(a, str_cstr(d->resp_id), idx, part);
	buf_reset(&d->scratch);
	if (json_obj_get(fc, "name", &name))
		json_str_decode(name, &d->scratch);
	struct canon_ev ev = { .type = CEV_TOOL_START, .index = idx, .id = id,
			       .name = buf_str(&d->scratch) };
	rc = dec_emit(d, ev);
	arena_free(a);
	if (rc)
		return rc;
	buf_reset(&d->scratch);
	if (call_args(fc, &d->scratch))
		return UMB_ERR;
	return dec_emit(d, (struct canon_ev){ .type = CEV_TOOL_ARGS, .index = idx,
					      .text = buf_str(&d->scratch) });
}

static int dec_parts(struct gemini_stream_dec *d, struct json_val parts)
{
	struct json_iter it;
	struct json_val p, v;
	int rc;
	json_iter_init(&it, parts);
	while (json_arr_next(&it, &p)) {
		if (!part_visible(p))
			continue;
		if (json_obj_get(p, "text", &v) && v.type == JSON_STRING) {
			buf_reset(&d->scratch);
			if (json_str_decode(v, &d->scratch))
				return UMB_ERR;
			if (d->scratch.n &&
			    (rc = dec_emit(d, (struct canon_ev){ .type = CEV_TEXT,
								 .text = buf_str(&d->scratch) })))
				return rc;
		} else if (json_obj_get(p, "functionCall", &v) && v.type == JSON_OBJECT) {
			if ((rc = dec_call(d, p, v)))
				return rc;
		}
	}
	return UMB_OK;
}

/* One chunk: a whole GenerateContentResponse. */
static int dec_chunk(struct gemini_stream_dec *d, struct json_val root)
{
	struct json_val parts, fr, v;
	struct canon_usage u;
	int rc;
	if (json_obj_get(root, "error", &v))
		return UMB_ERR; /* the service failed mid-stream */
	if (!d->started && (rc = dec_start(d, root)))
		return rc;
	first_candidate(root, &parts, &fr);
	/* nothing may follow FINISH but usage: late content is dropped */
	if (!d->finished && parts.type == JSON_ARRAY && (rc = dec_parts(d, parts)))
		return rc;
	if (!d->finished && (fr.type == JSON_STRING || prompt_blocked(root))) {
		d->finished = true;
		enum canon_finish f = fr.type == JSON_STRING ? map_finish(fr, d->n_tools > 0)
							     : CANON_FIN_CONTENT_FILTER;
		if ((rc = dec_emit(d, (struct canon_ev){ .type = CEV_FINISH, .finish = f })))
			return rc;
	}
	if (read_usage(root, &u) &&
	    (rc = dec_emit(d, (struct canon_ev){ .type = CEV_USAGE, .usage = u })))
		return rc;
	return UMB_OK;
}

static int dec_event_cb(void *ctx, const struct sse_event *ev)
{
	struct gemini_stream_dec *d = ctx;
	struct json_val root;
	if (!ev->has_data)
		return UMB_OK; /* comments, keep-alives */
	if (json_parse(ev->data.p, ev->data.n, &root, NULL) || root.type != JSON_OBJECT)
		return UMB_ERR;
	int rc = dec_chunk(d, root);
	return rc ? (rc > 0 ? -rc : rc) : UMB_OK; /* the parser stops on negatives */
}

int gemini_stream_dec_feed(struct gemini_stream_dec *d, const char *p, size_t n,
			   const struct canon_sink *sink)
{
	if (d->err)
		return d->err;
	d->sink = sink;
	int rc = sse_feed(&d->sse, p, n, dec_event_cb, d);
	if (rc) {
		/* a sink's own answer goes back as it came; anything else
		 * (garbage, an oversized event) is UMB_ERR */
		if (!d->err)
			d->err = UMB_ERR;
		return d->err;
	}
	return UMB_OK;
}

int gemini_stream_dec_finish(struct gemini_stream_dec *d, const struct canon_sink *sink)
{
	if (d->err)
		return d->err;
	/* a last event the upstream did not end with a blank line */
	if (sse_pending(&d->sse) && gemini_stream_dec_feed(d, "\n\n", 2, sink))
		return d->err;
	if (!d->finished)
		return UMB_ERR; /* cut short: no finishReason */
	if (d->ended)
		return UMB_OK;
	d->ended = true;
	d->sink = sink;
	return dec_emit(d, (struct canon_ev){ .type = CEV_END });
}

/* ------------------------------------------------------------------ */
/* errors                                                              */

const char *gemini_error_message(struct arena *a, struct str body)
{
	struct json_val root, err, msg, status;
	if (json_parse(body.p, body.n, &root, NULL))
		return NULL;
	if (root.type == JSON_ARRAY) { /* non-SSE streams wrap errors in [...] */
		struct json_iter it;
		json_iter_init(&it, root);
		if (!json_arr_next(&it, &root))
			return NULL;
	}
	if (root.type != JSON_OBJECT || !json_obj_get(root, "error", &err) || err.type != JSON_OBJECT)
		return NULL;
	struct str m = json_obj_get(err, "message", &msg) ? dup_decoded(a, msg) : STR_NULL;
	struct str s = json_obj_get(err, "status", &status) ? dup_decoded(a, status) : STR_NULL;
	if (!m.n && !s.n)
		return NULL;
	if (!s.n)
		return m.p;
	if (!m.n)
		return s.p;
	return arena_printf(a, "%.*s: %.*s", STR_FMT(s), STR_FMT(m));
}
