/* config.c — YAML text → validated, immutable struct config.
 *
 * Loading is driven by one key table per section (name, kind, offset,
 * default, range, validator), in the spirit of redis standardConfig and
 * nginx ngx_command_t: the same tables apply defaults, reject unknown keys
 * with a did-you-mean, and are what docs/config.md documents (a unit test
 * checks that every key in the tables appears there).
 *
 * We use libyaml's document API because its nodes carry marks, so every
 * error can say "FILE:LINE: path: what was wrong, what was expected".
 * The first error stops the load; all memory lives in one arena, so an
 * error path is just arena_free(). */
#include "config/config.h"
#include "providers/provider.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "routing/pii.h"
#include "routing/routing.h"

/* A scalar value may not grow past this after ${ENV} expansion. */
#define CFG_MAX_VALUE (64 * 1024)
/* Config files larger than this are surely a mistake. */
#define CFG_MAX_FILE (16 * 1024 * 1024)
/* Bound on nodes walked: YAML aliases can make a small file expand a lot. */
#define CFG_MAX_VISITS 1000000UL
/* Mapping/list nesting; the deepest real key is 4 levels down. */
#define CFG_MAX_DEPTH 32
/* Keys per section (the `seen` bitmap below). */
#define CFG_MAX_KEYS 64
/* Headers per mapping, fallbacks per model: the checks are quadratic. */
#define CFG_MAX_LIST 100
/* Providers, models, endpoints per list. */
#define CFG_MAX_ITEMS 10000
/* sun_path is 108 bytes on Linux, NUL included. */
#define CFG_MAX_UNIX_PATH 107

#define NODE_LINE(n) ((int)(n)->start_mark.line + 1)

/* ---- load context ---- */

struct cfg_ctx {
	struct config *cfg;      /* the gateway config being loaded; NULL while
	                          * loading a connector config */
	struct arena *a;
	yaml_document_t *doc;
	const char *name;        /* file name used in messages */
	const char *dir;         /* absolute; relative CK_PATH values join it */
	struct config_err *err;
	char path[256];          /* dotted path of the key being loaded */
	size_t path_len;
	unsigned long visits;
	enum provider_type ptype; /* type of the provider being loaded */
	size_t cur_item;          /* index cfg_load_items is loading */
	int **fb_lines;           /* [model][i]: line of fallbacks[i] */
	bool prose;               /* loading prompt text: newlines allowed */
};

/* Format "NAME:LINE: msg" without the key path (the caller puts the path
 * in the message itself). Always returns UMB_ERR. */
__attribute__((format(printf, 3, 4))) static int
cfg_err_raw(struct cfg_ctx *c, int line, const char *fmt, ...)
{
	char msg[448];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(c->err->msg, sizeof(c->err->msg), "%s:%d: %s", c->name,
		 line > 0 ? line : 1, msg);
	return UMB_ERR;
}

/* Format "NAME:LINE: path: msg". Always returns UMB_ERR. */
__attribute__((format(printf, 3, 4))) static int
cfg_err(struct cfg_ctx *c, int line, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->path_len)
		return cfg_err_raw(c, line, "%s: %s", c->path, msg);
	return cfg_err_raw(c, line, "%s", msg);
}

/* Append ".key" (or "key" at the top) to the path; returns the old length
 * for cfg_path_pop. Overlong paths are truncated, never overflowed. */
static size_t cfg_path_key(struct cfg_ctx *c, const char *key)
{
	size_t old = c->path_len;
	int w = snprintf(c->path + old, sizeof(c->path) - old, "%s%s",
			 old ? "." : "", key);
	if (w > 0)
		c->path_len = UMB_MIN(old + (size_t)w, sizeof(c->path) - 1);
	return old;
}

static size_t cfg_path_index(struct cfg_ctx *c, size_t i)
{
	size_t old = c->path_len;
	int w = snprintf(c->path + old, sizeof(c->path) - old, "[%zu]", i);
	if (w > 0)
		c->path_len = UMB_MIN(old + (size_t)w, sizeof(c->path) - 1);
	return old;
}

static void cfg_path_pop(struct cfg_ctx *c, size_t old)
{
	c->path_len = old;
	c->path[old] = 0;
}

static int cfg_visit(struct cfg_ctx *c, yaml_node_t *n)
{
	if (++c->visits > CFG_MAX_VISITS)
		return cfg_err(c, NODE_LINE(n),
			       "document too large (YAML aliases expand to more than %lu nodes)",
			       CFG_MAX_VISITS);
	return UMB_OK;
}

static const char *cfg_node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "mapping";
	case YAML_SEQUENCE_NODE:
		return "list";
	default:
		return "scalar";
	}
}

/* A plain `~`, `null` or nothing at all: YAML's null. */
static bool cfg_is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	struct str s = str_make((const char *)n->data.scalar.value,
				n->data.scalar.length);
	return s.n == 0 || str_eq_cstr(s, "~") || str_eq_cstr(s, "null") ||
	       str_eq_cstr(s, "Null") || str_eq_cstr(s, "NULL");
}

static struct str cfg_node_str(const yaml_node_t *n)
{
	return str_make((const char *)n->data.scalar.value,
			n->data.scalar.length);
}

/* Value of `key` in mapping n (first occurrence), or NULL. */
static yaml_node_t *cfg_map_get(struct cfg_ctx *c, yaml_node_t *n,
				const char *key)
{
	if (!n || n->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
	     p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		if (k && k->type == YAML_SCALAR_NODE &&
		    str_eq_cstr(cfg_node_str(k), key))
			return yaml_document_get_node(c->doc, p->value);
	}
	return NULL;
}

/* ---- did you mean ---- */

/* Case-insensitive optimal-string-alignment distance, so a swapped pair
 * ("lsiten") costs 1 like a typo. Long inputs are not worth comparing. */
static size_t cfg_distance(const char *a, size_t an, const char *b)
{
	size_t bn = strlen(b);
	if (an > 64 || bn > 64)
		return SIZE_MAX;
	size_t d[65][65];
	for (size_t i = 0; i <= an; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= bn; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= an; i++) {
		for (size_t j = 1; j <= bn; j++) {
			int ca = tolower((unsigned char)a[i - 1]);
			int cb = tolower((unsigned char)b[j - 1]);
			size_t cost = ca != cb;
			size_t v = UMB_MIN(d[i - 1][j] + 1, d[i][j - 1] + 1);
			v = UMB_MIN(v, d[i - 1][j - 1] + cost);
			if (i > 1 && j > 1 &&
			    ca == tolower((unsigned char)b[j - 2]) &&
			    tolower((unsigned char)a[i - 2]) == cb)
				v = UMB_MIN(v, d[i - 2][j - 2] + 1);
			d[i][j] = v;
		}
	}
	return d[an][bn];
}

/* Keeps the closest candidate seen so far within a typo's reach. */
struct cfg_suggest {
	const char *word;
	size_t wn;
	const char *best;
	size_t best_d;
};

static void cfg_suggest_init(struct cfg_suggest *s, struct str word)
{
	s->word = word.p;
	s->wn = word.n;
	s->best = NULL;
	s->best_d = SIZE_MAX;
}

static void cfg_suggest_try(struct cfg_suggest *s, const char *cand)
{
	size_t d = cfg_distance(s->word, s->wn, cand);
	size_t limit = strlen(cand) >= 5 ? 2 : 1;
	/* d < strlen: "q" is not a typo of "p" */
	if (d <= limit && d < strlen(cand) && d < s->best_d) {
		s->best = cand;
		s->best_d = d;
	}
}

/* " (did you mean "x"?)" or "" — a static-lifetime or arena string. */
static const char *cfg_suggest_text(struct cfg_ctx *c, struct cfg_suggest *s)
{
	if (!s->best)
		return "";
	return arena_printf(c->a, " (did you mean \"%s\"?)", s->best);
}

/* Quote a user value for a message, shortened so the message stays readable. */
static const char *cfg_quote(struct cfg_ctx *c, const char *s, size_t n)
{
	struct buf b;
	buf_init(&b, 0);
	buf_append_cstr(&b, "\"");
	for (size_t i = 0; i < n && i < 60; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f)
			buf_printf(&b, "\\x%02x", ch);
		else
			buf_append(&b, &s[i], 1);
	}
	buf_append_cstr(&b, n > 60 ? "...\"" : "\"");
	char *out = arena_strndup(c->a, b.p, b.n);
	buf_clear(&b);
	return out;
}

/* ---- ${ENV} expansion ---- */

/* Expand ${VAR}, ${VAR:-default} and $$ in a scalar value. A `$` followed
 * by anything else is literal. ${VAR:-d} uses d when VAR is unset or empty
 * (as the shell does); ${VAR} with VAR unset is an error, because silently
 * sending an empty api_key upstream is worse than refusing to start.
 * The result is NUL-terminated in the arena; control characters other than
 * tab are refused so nothing can smuggle CR/LF into an upstream header. */
static int cfg_expand(struct cfg_ctx *c, int line, const char *s, size_t n,
		      char **out)
{
	struct buf b;
	int rc = UMB_OK;
	size_t i = 0;

	buf_init(&b, CFG_MAX_VALUE);
	while (i < n) {
		/* prompt text is taken literally: "${{ matrix.os }}" is CI code */
		const char *d = c->prose ? NULL : memchr(s + i, '$', n - i);
		size_t lit = d ? (size_t)(d - (s + i)) : n - i;
		if (buf_append(&b, s + i, lit))
			goto toobig;
		i += lit;
		if (!d)
			break;
		if (i + 1 < n && s[i + 1] == '$') {
			if (buf_append(&b, "$", 1))
				goto toobig;
			i += 2;
			continue;
		}
		if (i + 1 >= n || s[i + 1] != '{') {
			if (buf_append(&b, "$", 1))
				goto toobig;
			i++;
			continue;
		}
		size_t start = i + 2;
		const char *close = memchr(s + start, '}', n - start);
		if (!close) {
			rc = cfg_err(c, line,
				     "unterminated \"${\", expected ${NAME} or ${NAME:-default} ($$ for a literal $)");
			goto out;
		}
		size_t end = (size_t)(close - s), j = start;
		while (j < end && (isalnum((unsigned char)s[j]) || s[j] == '_'))
			j++;
		size_t name_n = j - start;
		bool has_def = false;
		const char *def = NULL;
		size_t def_n = 0;
		if (j < end) {
			if (end - j >= 2 && s[j] == ':' && s[j + 1] == '-') {
				has_def = true;
				def = s + j + 2;
				def_n = end - j - 2;
			} else {
				name_n = 0; /* junk after the name */
			}
		}
		if (name_n == 0 || name_n > 255 || isdigit((unsigned char)s[start])) {
			rc = cfg_err(c, line,
				     "invalid variable reference %s, expected ${NAME} or ${NAME:-default} with NAME made of letters, digits and _",
				     cfg_quote(c, s + i, end + 1 - i));
			goto out;
		}
		char name[256];
		memcpy(name, s + start, name_n);
		name[name_n] = 0;
		const char *val = getenv(name);
		if (val && *val) {
			if (buf_append_cstr(&b, val))
				goto toobig;
		} else if (has_def) {
			if (buf_append(&b, def, def_n))
				goto toobig;
		} else if (!val) {
			rc = cfg_err(c, line,
				     "environment variable %s is not set (set it, or write ${%s:-default})",
				     name, name);
			goto out;
		}
		i = end + 1;
	}
	for (size_t k = 0; k < b.n; k++) {
		unsigned char ch = (unsigned char)b.p[k];
		bool nl_ok = c->prose && (ch == '\n' || ch == '\r');
		if (((ch < 0x20 && ch != '\t') || ch == 0x7f) && !nl_ok) {
			rc = cfg_err(c, line,
				     "control character 0x%02x in value, expected printable text",
				     ch);
			goto out;
		}
	}
	*out = arena_strndup(c->a, b.p ? b.p : "", b.n);
	goto out;
toobig:
	rc = cfg_err(c, line, "value longer than %d bytes after ${} expansion",
		     CFG_MAX_VALUE);
out:
	buf_clear(&b);
	return rc;
}

/* The expanded text of a scalar node; `want` names the expected value. */
static int cfg_scalar(struct cfg_ctx *c, yaml_node_t *n, const char *want,
		      char **out)
{
	if (n->type != YAML_SCALAR_NODE)
		return cfg_err(c, NODE_LINE(n), "expected %s, got a %s", want,
			       cfg_node_kind(n));
	if (cfg_is_null(n))
		return cfg_err(c, NODE_LINE(n), "expected %s, got an empty value",
			       want);
	return cfg_expand(c, NODE_LINE(n), (const char *)n->data.scalar.value,
			  n->data.scalar.length, out);
}

/* ---- key tables ---- */

enum cfg_kind {
	CK_STR,     /* char *; empty is an error unless allow_empty (→ NULL) */
	CK_PATH,    /* char *, made absolute against cfg->dir */
	CK_INT,     /* int in [min, max] */
	CK_U64,     /* uint64_t in [min, max] */
	CK_BOOL,    /* bool: true | false */
	CK_DOUBLE,  /* double in [min, max] */
	CK_ENUM,    /* int from a cfg_enum list */
	CK_TEXT,    /* scalar handed to parse() */
	CK_SECTION, /* nested mapping loaded with sub */
	CK_CUSTOM,  /* node handed to custom() */
	CK_UNIMPL,  /* recognised, refused in this build */
};

/** One accepted spelling of an enumerated value. */
struct cfg_enum {
	const char *name;
	int value;
	bool unimplemented; /* recognised, refused in this build */
};

struct cfg_key;
struct cfg_section;
typedef int (*cfg_parse_cb)(struct cfg_ctx *c, int line, const char *s,
			    void *base, const struct cfg_key *k);
typedef int (*cfg_custom_cb)(struct cfg_ctx *c, yaml_node_t *n, void *base,
			     const struct cfg_key *k);
typedef int (*cfg_post_cb)(struct cfg_ctx *c, yaml_node_t *n, void *base);

/** One key of a section: how to read it, where to store it, its default. */
struct cfg_key {
	const char *name;
	enum cfg_kind kind;
	size_t off, off2;          /* field; off2: count for lists */
	const char *def;           /* default as it would be written; NULL: none */
	double min, max;           /* CK_INT, CK_U64, CK_DOUBLE; for lists
	                            * (cfg_list_bounded) the item count: min 0
	                            * or 1, max 0 for the default cap */
	const struct cfg_enum *enums; /* CK_ENUM, NULL-name terminated */
	const struct cfg_section *sub;
	cfg_parse_cb parse;
	cfg_custom_cb custom;
	unsigned types;            /* provider types it applies to; 0: all */
	bool required, allow_empty;
	bool unique;               /* string lists: each item at most once */
	const char *want, *want_one; /* string lists: "model names", "a model name" */
	const char *doc;           /* one line for docs/config.md */
};

/** A mapping's keys plus a check run after keys and defaults. Sections
 * that are the items of a list (cfg_load_items) also say how big an item
 * is, where its name and line are, and how to speak of it in errors. */
struct cfg_section {
	const char *name;
	const struct cfg_key *keys;
	size_t n_keys;
	cfg_post_cb post; /* n is NULL when the section was absent */
	size_t size, name_off, line_off;
	const char *shape; /* "{ name, url, weight }" */
	const char *item;  /* "endpoint" in "duplicate endpoint name" */
	const char *scope; /* " within a provider", or "" */
};

#define PT(t) (1u << (t))

static const struct cfg_enum provider_types[] = {
	{ "openai", PROVIDER_OPENAI, false },
	{ "anthropic", PROVIDER_ANTHROPIC, false },
	{ "azure", PROVIDER_AZURE, false },
	{ "bedrock", PROVIDER_BEDROCK, false },
	{ "vertex", PROVIDER_VERTEX, false },
	{ "ollama", PROVIDER_OLLAMA, false },
	{ NULL, 0, false },
};
static const struct cfg_enum localities[] = {
	{ "onprem", LOCALITY_ONPREM, false },
	{ "cloud", LOCALITY_CLOUD, false },
	{ NULL, 0, false },
};
static const struct cfg_enum tristates[] = {
	{ "true", TRI_TRUE, false },
	{ "false", TRI_FALSE, false },
	{ NULL, 0, false },
};
static const struct cfg_enum rule_scopes[] = {
	{ "conversation", SCOPE_CONVERSATION, false },
	{ "last_user", SCOPE_LAST_USER, false },
	{ NULL, 0, false },
};
static const struct cfg_enum sem_comparisons[] = {
	{ "centroid", SEM_CENTROID, false },
	{ "max", SEM_MAX, false },
	{ "average", SEM_AVERAGE, false },
	{ NULL, 0, false },
};
static const struct cfg_enum sensitive_actions[] = {
	{ "reroute", SENSITIVE_REROUTE, false },
	{ "block", SENSITIVE_BLOCK, false },
	{ NULL, 0, false },
};
static const struct cfg_enum audit_fsyncs[] = {
	{ "interval", AUDIT_SYNC_INTERVAL, false },
	{ "always", AUDIT_SYNC_ALWAYS, false },
	{ "never", AUDIT_SYNC_NEVER, false },
	{ NULL, 0, false },
};
static const struct cfg_enum budget_periods[] = {
	{ "monthly", PERIOD_MONTHLY, false },
	{ "weekly", PERIOD_WEEKLY, false },
	{ "daily", PERIOD_DAILY, false },
	{ NULL, 0, false },
};
static const struct cfg_enum client_auths[] = {
	{ "none", CLIENT_AUTH_NONE, false },
	{ "optional", CLIENT_AUTH_OPTIONAL, false },
	{ "require", CLIENT_AUTH_REQUIRE, false },
	{ NULL, 0, false },
};
static const struct cfg_enum auth_modes[] = {
	{ "none", AUTH_NONE, false },
	{ "keys", AUTH_KEYS, false },
	{ "certs", AUTH_CERTS, false },
	{ "keys+certs", AUTH_KEYS_CERTS, false },
	{ NULL, 0, false },
};
static const struct cfg_enum log_levels[] = {
	{ "debug", LOG_DEBUG, false },
	{ "info", LOG_INFO, false },
	{ "warn", LOG_WARN, false },
	{ "error", LOG_ERROR, false },
	{ NULL, 0, false },
};

const char *provider_type_name(enum provider_type t)
{
	for (const struct cfg_enum *e = provider_types; e->name; e++)
		if (e->value == (int)t)
			return e->name;
	return "unknown";
}

/* "a, b or c" for messages. */
static const char *cfg_enum_list(struct cfg_ctx *c, const struct cfg_enum *e,
				 bool implemented_only)
{
	struct buf b;
	buf_init(&b, 0);
	size_t n = 0;
	for (; e->name; e++) {
		if (implemented_only && e->unimplemented)
			continue;
		buf_printf(&b, "%s%s", n++ ? ", " : "", e->name);
	}
	char *out = arena_strndup(c->a, b.p ? b.p : "", b.n);
	buf_clear(&b);
	return out;
}

/* ---- scalar setters shared by values and defaults ---- */

/* Strict decimal integer: optional sign, digits, nothing else. */
static int cfg_parse_ll(const char *s, long long *out)
{
	const char *p = s;
	bool neg = false;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (!isdigit((unsigned char)*p))
		return UMB_ERR;
	unsigned long long v = 0;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (ULLONG_MAX - d) / 10)
			return UMB_ETOOBIG;
		v = v * 10 + d;
	}
	if (*p)
		return UMB_ERR;
	if (v > (unsigned long long)LLONG_MAX)
		return UMB_ETOOBIG;
	*out = neg ? -(long long)v : (long long)v;
	return UMB_OK;
}

static int cfg_set_enum(struct cfg_ctx *c, int line, const char *s, int *out,
			const struct cfg_key *k)
{
	struct cfg_suggest sg;
	cfg_suggest_init(&sg, str_cstr(s));
	for (const struct cfg_enum *e = k->enums; e->name; e++) {
		if (strcmp(e->name, s) == 0) {
			if (e->unimplemented) {
				if (k->enums == provider_types)
					return cfg_err(c, line,
						       "provider type %s is not implemented in this build yet (implemented: %s)",
						       e->name,
						       cfg_enum_list(c, k->enums, true));
				return cfg_err(c, line,
					       "%s is not implemented in this build yet (implemented: %s)",
					       cfg_quote(c, s, strlen(s)),
					       cfg_enum_list(c, k->enums, true));
			}
			*out = e->value;
			return UMB_OK;
		}
		cfg_suggest_try(&sg, e->name);
	}
	return cfg_err(c, line, "unknown %s %s, expected one of %s%s",
		       k->enums == provider_types ? "provider type" : "value",
		       cfg_quote(c, s, strlen(s)),
		       cfg_enum_list(c, k->enums, false),
		       cfg_suggest_text(c, &sg));
}

/* Store text s into the field described by k. line is 0 when s is a
 * built-in default: a default that does not parse is a bug in the table. */
static int cfg_set_text(struct cfg_ctx *c, int line, const char *s,
			void *base, const struct cfg_key *k)
{
	char *field = (char *)base + k->off;
	long long v;
	int rc;

	switch (k->kind) {
	case CK_STR:
		if (!*s) {
			if (k->allow_empty) {
				*(char **)field = NULL;
				return UMB_OK;
			}
			return cfg_err(c, line, "expected a non-empty string");
		}
		*(char **)field = arena_strndup(c->a, s, strlen(s));
		return UMB_OK;
	case CK_PATH:
		if (!*s)
			return cfg_err(c, line, "expected a file path, got an empty string");
		*(char **)field = s[0] == '/' ? arena_strndup(c->a, s, strlen(s))
					      : arena_printf(c->a, "%s/%s",
							     c->dir, s);
		return UMB_OK;
	case CK_INT:
	case CK_U64:
		rc = cfg_parse_ll(s, &v);
		if (rc == UMB_ERR)
			return cfg_err(c, line,
				       "expected an integer from %.0f to %.0f, got %s",
				       k->min, k->max, cfg_quote(c, s, strlen(s)));
		if (rc || (double)v < k->min || (double)v > k->max)
			return cfg_err(c, line,
				       "%s is out of range, expected an integer from %.0f to %.0f",
				       cfg_quote(c, s, strlen(s)), k->min, k->max);
		if (k->kind == CK_INT)
			*(int *)field = (int)v;
		else
			*(uint64_t *)field = (uint64_t)v;
		return UMB_OK;
	case CK_DOUBLE: {
		char *end;
		errno = 0;
		double d = strtod(s, &end);
		if (end == s || *end || errno || !isfinite(d) ||
		    isspace((unsigned char)*s))
			return cfg_err(c, line, "expected a number, got %s",
				       cfg_quote(c, s, strlen(s)));
		if (d < k->min || d > k->max)
			return cfg_err(c, line,
				       "%s is out of range, expected a number from %g to %g",
				       cfg_quote(c, s, strlen(s)), k->min, k->max);
		*(double *)field = d;
		return UMB_OK;
	}
	case CK_BOOL:
		if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
			*(bool *)field = true;
		else if (!strcmp(s, "false") || !strcmp(s, "False") ||
			 !strcmp(s, "FALSE"))
			*(bool *)field = false;
		else
			return cfg_err(c, line, "expected true or false, got %s",
				       cfg_quote(c, s, strlen(s)));
		return UMB_OK;
	case CK_ENUM:
		return cfg_set_enum(c, line, s, (int *)field, k);
	case CK_TEXT:
		return k->parse(c, line, s, base, k);
	default:
		UMB_BUG_ON(1);
	}
	return UMB_ERR;
}

static int cfg_load_section(struct cfg_ctx *c, yaml_node_t *n,
			    const struct cfg_section *sec, void *base);

static const char *cfg_kind_want(const struct cfg_key *k)
{
	switch (k->kind) {
	case CK_INT:
	case CK_U64:
		return "an integer";
	case CK_DOUBLE:
		return "a number";
	case CK_BOOL:
		return "true or false";
	case CK_PATH:
		return "a file path";
	case CK_ENUM:
		return "one of the listed values";
	default:
		return "a string";
	}
}

/* Load one key's value node into base. The path already names the key. */
static int cfg_set_node(struct cfg_ctx *c, yaml_node_t *v, void *base,
			const struct cfg_key *k)
{
	char *s;
	int rc;

	switch (k->kind) {
	case CK_SECTION:
		return cfg_load_section(c, v, k->sub, (char *)base + k->off);
	case CK_CUSTOM:
		return k->custom(c, v, base, k);
	case CK_UNIMPL:
		return cfg_err_raw(c, NODE_LINE(v),
				   "%s is not implemented in this build yet",
				   c->path);
	case CK_ENUM:
		if (v->type != YAML_SCALAR_NODE || cfg_is_null(v))
			return cfg_err(c, NODE_LINE(v),
				       "expected one of %s, got %s",
				       cfg_enum_list(c, k->enums, false),
				       cfg_is_null(v) ? "an empty value"
						      : cfg_node_kind(v));
		break;
	default:
		break;
	}
	rc = cfg_scalar(c, v, cfg_kind_want(k), &s);
	if (rc)
		return rc;
	return cfg_set_text(c, NODE_LINE(v), s, base, k);
}

/* Apply k's default to base (k was absent). */
static int cfg_set_default(struct cfg_ctx *c, void *base,
			   const struct cfg_key *k)
{
	if (k->kind == CK_SECTION)
		return cfg_load_section(c, NULL, k->sub, (char *)base + k->off);
	if (!k->def)
		return UMB_OK;
	int rc = cfg_set_text(c, 0, k->def, base, k);
	UMB_BUG_ON(rc != UMB_OK);
	return rc;
}

/* "a, b, c" over the keys valid here, for an unknown-key message. */
static const char *cfg_key_list(struct cfg_ctx *c, const struct cfg_section *sec)
{
	struct buf b;
	buf_init(&b, 0);
	size_t n = 0;
	for (size_t i = 0; i < sec->n_keys; i++) {
		const struct cfg_key *k = &sec->keys[i];
		if (k->kind == CK_UNIMPL ||
		    (k->types && !(k->types & PT(c->ptype))))
			continue;
		buf_printf(&b, "%s%s", n++ ? ", " : "", k->name);
	}
	char *out = arena_strndup(c->a, b.p ? b.p : "", b.n);
	buf_clear(&b);
	return out;
}

/* Load mapping n (NULL: section absent, defaults only) into base using
 * the key table sec: rejects non-mappings, non-string and duplicate keys,
 * unknown keys (with a did-you-mean), keys of another provider type and
 * missing required keys (of a present section); then applies defaults and
 * sec->post. */
static int cfg_load_section(struct cfg_ctx *c, yaml_node_t *n,
			    const struct cfg_section *sec, void *base)
{
	bool seen[CFG_MAX_KEYS] = { false };
	int rc;

	UMB_BUG_ON(sec->n_keys > CFG_MAX_KEYS);
	/* "tls:" with nothing after it is an empty section; post still sees
	 * n, so "health_check:" alone enables health checks. */
	yaml_node_t *m = n && !cfg_is_null(n) ? n : NULL;
	if (m && m->type != YAML_MAPPING_NODE)
		return cfg_err(c, NODE_LINE(m),
			       "expected a mapping (key: value ...), got a %s",
			       cfg_node_kind(m));
	for (yaml_node_pair_t *p = m ? m->data.mapping.pairs.start : NULL;
	     m && p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
		if (!kn || !vn)
			return cfg_err(c, NODE_LINE(m), "malformed mapping");
		if ((rc = cfg_visit(c, kn)))
			return rc;
		if (kn->type != YAML_SCALAR_NODE)
			return cfg_err(c, NODE_LINE(kn),
				       "expected a plain key name, got a %s",
				       cfg_node_kind(kn));
		struct str key = cfg_node_str(kn);
		for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *qk = yaml_document_get_node(c->doc, q->key);
			if (qk && qk->type == YAML_SCALAR_NODE &&
			    str_eq(cfg_node_str(qk), key))
				return cfg_err(c, NODE_LINE(kn),
					       "duplicate key %s (first given at line %d), expected each key once",
					       cfg_quote(c, key.p, key.n),
					       NODE_LINE(qk));
		}
		size_t ki;
		for (ki = 0; ki < sec->n_keys; ki++)
			if (str_eq_cstr(key, sec->keys[ki].name))
				break;
		if (ki == sec->n_keys) {
			struct cfg_suggest sg;
			cfg_suggest_init(&sg, key);
			for (size_t i = 0; i < sec->n_keys; i++)
				cfg_suggest_try(&sg, sec->keys[i].name);
			if (sg.best)
				return cfg_err(c, NODE_LINE(kn), "unknown key %s%s",
					       cfg_quote(c, key.p, key.n),
					       cfg_suggest_text(c, &sg));
			return cfg_err(c, NODE_LINE(kn),
				       "unknown key %s, expected one of %s",
				       cfg_quote(c, key.p, key.n),
				       cfg_key_list(c, sec));
		}
		const struct cfg_key *k = &sec->keys[ki];
		size_t old = cfg_path_key(c, k->name);
		if (k->types && !(k->types & PT(c->ptype))) {
			const char *only = "";
			for (const struct cfg_enum *e = provider_types; e->name; e++)
				if (k->types & PT(e->value))
					only = arena_printf(c->a, "%s%s%s", only,
							    *only ? " or " : "", e->name);
			return cfg_err(c, NODE_LINE(kn),
				       "only valid for provider type %s, not %s",
				       only, provider_type_name(c->ptype));
		}
		seen[ki] = true;
		rc = cfg_set_node(c, vn, base, k);
		cfg_path_pop(c, old);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < sec->n_keys; i++) {
		if (seen[i])
			continue;
		/* an absent section (tunnel:) gets its defaults, not errors */
		if (sec->keys[i].required && n)
			return cfg_err(c, NODE_LINE(n),
				       "missing required key \"%s\" (%s)",
				       sec->keys[i].name, sec->keys[i].doc);
		if ((rc = cfg_set_default(c, base, &sec->keys[i])))
			return rc;
	}
	return sec->post ? sec->post(c, n, base) : UMB_OK;
}

/* ---- validators for CK_TEXT keys ---- */

/* Store s at k->off if it is 1 to 64 letters, digits and characters of
 * extra; the message lists extra as "'.', '_' or '-'", then adds also. */
static int cfg_parse_charset(struct cfg_ctx *c, int line, const char *s,
			     void *base, const struct cfg_key *k,
			     const char *extra, const char *also)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return cfg_err(c, line, "expected a name of 1 to 64 characters");
	for (size_t i = 0; i < n; i++) {
		if (isalnum((unsigned char)s[i]) || strchr(extra, s[i]))
			continue;
		const char *chars = "";
		for (const char *e = extra; *e; e++)
			chars = arena_printf(c->a, "%s%s'%c'", chars,
					     e == extra ? "" : e[1] ? ", " : " or ",
					     *e);
		return cfg_err(c, line,
			       "invalid name %s, expected letters, digits, %s%s",
			       cfg_quote(c, s, n), chars, also);
	}
	*(char **)((char *)base + k->off) = arena_strndup(c->a, s, n);
	return UMB_OK;
}

/* Provider and endpoint names end up in metrics labels, logs and the
 * x-umbra-provider header, so keep them to a safe alphabet. */
static int cfg_parse_ident(struct cfg_ctx *c, int line, const char *s,
			   void *base, const struct cfg_key *k)
{
	return cfg_parse_charset(c, line, s, base, k, "._-", "");
}

/* Team, identity and route names: the store's alphabet (store_name_valid,
 * STORE_NAME_MAX), '@' included, so a config identity can be the same name
 * as a registered one or a certificate's CN. */
static int cfg_parse_name(struct cfg_ctx *c, int line, const char *s,
			  void *base, const struct cfg_key *k)
{
	return cfg_parse_charset(c, line, s, base, k, "._@-", "");
}

/* A service's users: team or identity names, or exactly "*" (anyone). */
static int cfg_parse_user(struct cfg_ctx *c, int line, const char *s,
			  void *base, const struct cfg_key *k)
{
	if (!strcmp(s, "*")) {
		*(char **)((char *)base + k->off) = arena_strndup(c->a, s, 1);
		return UMB_OK;
	}
	return cfg_parse_charset(c, line, s, base, k, "._@-",
				 ", or \"*\" for anyone");
}

/* Model names are what clients send ("meta-llama/Llama-3.3-70B", "llama3:8b",
 * "gpt-4o*"), so allow any printable text without spaces. */
static int cfg_parse_model_name(struct cfg_ctx *c, int line, const char *s,
				void *base, const struct cfg_key *k)
{
	size_t n = strlen(s);
	if (n == 0 || n > 256)
		return cfg_err(c, line, "expected a model name of 1 to 256 characters");
	for (size_t i = 0; i < n; i++)
		if (isspace((unsigned char)s[i]))
			return cfg_err(c, line,
				       "invalid model name %s, expected no spaces",
				       cfg_quote(c, s, n));
	*(char **)((char *)base + k->off) = arena_strndup(c->a, s, n);
	return UMB_OK;
}

/* Port in [1, 65535] from exactly the n bytes at s. */
static int cfg_parse_port(const char *s, size_t n, int *out)
{
	if (n == 0 || n > 5)
		return UMB_ERR;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return UMB_ERR;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return UMB_ERR;
	*out = v;
	return UMB_OK;
}

/* Split "host:port" or "[v6]:port"; host is returned without brackets. */
static int cfg_split_hostport(const char *s, size_t n, const char **host,
			      size_t *host_n, const char **port, size_t *port_n)
{
	if (n && s[0] == '[') {
		const char *close = memchr(s, ']', n);
		if (!close || close == s + 1)
			return UMB_ERR;
		*host = s + 1;
		*host_n = (size_t)(close - s - 1);
		const char *rest = close + 1;
		size_t rn = n - (size_t)(rest - s);
		if (rn == 0) {
			*port = NULL;
			*port_n = 0;
			return UMB_OK;
		}
		if (rest[0] != ':')
			return UMB_ERR;
		*port = rest + 1;
		*port_n = rn - 1;
		return UMB_OK;
	}
	const char *colon = memchr(s, ':', n);
	if (colon && memchr(colon + 1, ':', n - (size_t)(colon + 1 - s)))
		return UMB_ERR; /* bare IPv6 without brackets */
	*host = s;
	*host_n = colon ? (size_t)(colon - s) : n;
	*port = colon ? colon + 1 : NULL;
	*port_n = colon ? n - (size_t)(colon + 1 - s) : 0;
	return *host_n ? UMB_OK : UMB_ERR;
}

/* Check that s is "host:port" or "[v6]:port" with port 1-65535; examples
 * end the message. When host is not NULL, the host (without brackets) and
 * the port are stored at *host and *port. */
static int cfg_hostport(struct cfg_ctx *c, int line, const char *s,
			const char *examples, char **host, int *port)
{
	const char *h, *p;
	size_t hn, pn;
	int portv;
	if (cfg_split_hostport(s, strlen(s), &h, &hn, &p, &pn) || !p ||
	    cfg_parse_port(p, pn, &portv))
		return cfg_err(c, line,
			       "invalid address %s, expected \"host:port\" (e.g. %s) with port 1-65535",
			       cfg_quote(c, s, strlen(s)), examples);
	for (size_t i = 0; i < hn; i++)
		if (isspace((unsigned char)h[i]) || h[i] == '/')
			return cfg_err(c, line, "invalid host in %s",
				       cfg_quote(c, s, strlen(s)));
	if (host) {
		*host = arena_strndup(c->a, h, hn);
		*port = portv;
	}
	return UMB_OK;
}

/* An address to listen on: the host goes to the char * at k->off, the
 * port to the int at k->off2 (listen:, tunnel.listen). */
static int cfg_parse_listen(struct cfg_ctx *c, int line, const char *s,
			    void *base, const struct cfg_key *k)
{
	return cfg_hostport(c, line, s,
			    "\"127.0.0.1:8080\", \"0.0.0.0:8080\" or \"[::1]:8080\"",
			    (char **)((char *)base + k->off),
			    (int *)((char *)base + k->off2));
}

/* A gateway a connector dials: checked like a listen address, kept as
 * written (the TLS layer checks the host against the certificate). */
static int cfg_parse_gateway(struct cfg_ctx *c, int line, const char *s,
			     void *base, const struct cfg_key *k)
{
	int rc = cfg_hostport(c, line, s,
			      "\"gw.example.com:8443\" or \"[2001:db8::1]:8443\"",
			      NULL, NULL);
	if (rc == UMB_OK)
		*(char **)((char *)base + k->off) = arena_strndup(c->a, s, strlen(s));
	return rc;
}

/** Where a parsed upstream URL goes: the four fields that gateway
 * endpoints and connector services both have. */
struct cfg_url {
	char **url;
	enum endpoint_scheme *scheme;
	char **origin, **unix_path;
};

/* Parse an upstream URL into u: http(s)://host[:port][/prefix] or
 * unix:///abs/path.sock (https only when https_ok). The URL is an origin
 * plus an optional prefix; the gateway appends the API path, so an API
 * path here is a mistake. */
static int cfg_parse_url_into(struct cfg_ctx *c, int line, const char *s,
			      bool https_ok, const struct cfg_url *u)
{
	const char *want = https_ok
		? "expected http://host[:port][/prefix], https://host[:port][/prefix] or unix:///absolute/path.sock"
		: "expected http://host[:port][/prefix] or unix:///absolute/path.sock";
	size_t n = strlen(s);
	const char *rest, *scheme;

	for (size_t i = 0; i < n; i++)
		if (isspace((unsigned char)s[i]))
			return cfg_err(c, line, "invalid URL %s (contains a space), %s",
				       cfg_quote(c, s, n), want);
	if (strpbrk(s, "?#"))
		return cfg_err(c, line,
			       "URL %s has a query or fragment, %s",
			       cfg_quote(c, s, n), want);
	*u->url = arena_strndup(c->a, s, n);
	if (!strncasecmp(s, "unix://", 7)) {
		const char *p = s + 7;
		if (p[0] != '/' || p[1] == 0)
			return cfg_err(c, line,
				       "invalid unix socket URL %s, expected unix:///absolute/path.sock",
				       cfg_quote(c, s, n));
		if (strlen(p) > CFG_MAX_UNIX_PATH)
			return cfg_err(c, line,
				       "unix socket path is %zu bytes, expected at most %d",
				       strlen(p), CFG_MAX_UNIX_PATH);
		*u->scheme = SCHEME_UNIX;
		*u->unix_path = arena_strndup(c->a, p, strlen(p));
		*u->origin = arena_strndup(c->a, "http://localhost", 16);
		return UMB_OK;
	}
	if (!strncasecmp(s, "http://", 7)) {
		*u->scheme = SCHEME_HTTP;
		scheme = "http";
		rest = s + 7;
	} else if (!strncasecmp(s, "https://", 8)) {
		if (!https_ok)
			return cfg_err(c, line,
				       "URL %s uses https://; the connector reaches local servers over http:// or unix://",
				       cfg_quote(c, s, n));
		*u->scheme = SCHEME_HTTPS;
		scheme = "https";
		rest = s + 8;
	} else {
		return cfg_err(c, line, "unsupported URL %s, %s",
			       cfg_quote(c, s, n), want);
	}
	size_t an = strcspn(rest, "/");
	const char *host, *port;
	size_t hn, pn;
	int portv;
	if (memchr(rest, '@', an))
		return cfg_err(c, line,
			       "credentials in a URL are not supported, put them in api_key or headers");
	if (an == 0 || cfg_split_hostport(rest, an, &host, &hn, &port, &pn) ||
	    (port && cfg_parse_port(port, pn, &portv)))
		return cfg_err(c, line,
			       "invalid host or port in URL %s, %s (port 1-65535, IPv6 in brackets)",
			       cfg_quote(c, s, n), want);
	const char *path = rest + an;
	size_t path_n = strlen(path);
	while (path_n && path[path_n - 1] == '/')
		path_n--;
	static const char *const api_paths[] = { "/chat/completions",
						 "/completions", "/embeddings",
						 "/messages" };
	for (size_t i = 0; i < UMB_ARRAY_LEN(api_paths); i++) {
		size_t ln = strlen(api_paths[i]);
		if (path_n >= ln && !memcmp(path + path_n - ln, api_paths[i], ln))
			return cfg_err(c, line,
				       "URL %s ends with an API path; give only the origin and an optional prefix (the gateway appends %s)",
				       cfg_quote(c, s, n), api_paths[i]);
	}
	*u->origin = arena_printf(c->a, "%s://%.*s%.*s", scheme, (int)an, rest,
				 (int)path_n, path);
	return UMB_OK;
}

/* An endpoint's url (k unused: the provider's url: shorthand calls it
 * with NULL). */
static int cfg_parse_endpoint_url(struct cfg_ctx *c, int line, const char *s,
				  void *base, const struct cfg_key *k)
{
	struct cfg_endpoint *e = base;
	UMB_UNUSED(k);
	return cfg_parse_url_into(c, line, s, true, &(struct cfg_url){
		&e->url, &e->scheme, &e->origin, &e->unix_path });
}

/* A connector service's upstream: a local server, so no https. */
static int cfg_parse_conn_upstream(struct cfg_ctx *c, int line, const char *s,
				   void *base, const struct cfg_key *k)
{
	struct conn_service *sv = base;
	UMB_UNUSED(k);
	return cfg_parse_url_into(c, line, s, false, &(struct cfg_url){
		&sv->upstream, &sv->scheme, &sv->origin, &sv->unix_path });
}

/* Provider-level `url:` is shorthand for one endpoint named after the
 * provider (the name is filled in by provider_post, as `name:` may come
 * later in the mapping). */
static int cfg_parse_provider_url(struct cfg_ctx *c, int line, const char *s,
				  void *base, const struct cfg_key *k)
{
	struct cfg_provider *p = base;
	UMB_UNUSED(k);
	if (p->n_endpoints)
		return cfg_err(c, line,
			       "give either url or endpoints, not both");
	struct cfg_endpoint *e = arena_alloc(c->a, sizeof(*e));
	e->weight = 1;
	e->line = line;
	int rc = cfg_parse_endpoint_url(c, line, s, e, NULL);
	if (rc)
		return rc;
	p->endpoints = e;
	p->n_endpoints = 1;
	return UMB_OK;
}

/* The provider must already be loaded: models are loaded after providers
 * whatever their order in the file. */
static int cfg_parse_model_provider(struct cfg_ctx *c, int line, const char *s,
				    void *base, const struct cfg_key *k)
{
	struct cfg_model *m = base;
	struct cfg_suggest sg;
	UMB_UNUSED(k);
	cfg_suggest_init(&sg, str_cstr(s));
	for (size_t i = 0; i < c->cfg->n_providers; i++) {
		struct cfg_provider *p = &c->cfg->providers[i];
		if (!strcmp(p->name, s)) {
			m->provider = p;
			m->provider_name = p->name;
			return UMB_OK;
		}
		cfg_suggest_try(&sg, p->name);
	}
	return cfg_err(c, line, "unknown provider %s, expected the name of a provider in providers:%s",
		       cfg_quote(c, s, strlen(s)), cfg_suggest_text(c, &sg));
}

/* ---- custom (non-scalar) keys ---- */

static bool cfg_is_tchar(unsigned char ch)
{
	return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* headers: { Name: value, ... } into the (array, count) at k->off, k->off2.
 * Framing headers belong to the gateway: letting config set them would
 * corrupt the upstream request. */
static int cfg_load_headers(struct cfg_ctx *c, yaml_node_t *n, void *base,
			    const struct cfg_key *k)
{
	static const char *const reserved[] = {
		"host", "content-length", "transfer-encoding", "connection",
		"upgrade", "te", "trailer", "keep-alive", "expect",
	};
	if (cfg_is_null(n))
		return UMB_OK;
	if (n->type != YAML_MAPPING_NODE)
		return cfg_err(c, NODE_LINE(n),
			       "expected a mapping of header name to value, got a %s",
			       cfg_node_kind(n));
	size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (cnt > CFG_MAX_LIST)
		return cfg_err(c, NODE_LINE(n), "%zu headers, expected at most %d",
			       cnt, CFG_MAX_LIST);
	struct cfg_header *h = arena_alloc(c->a, sizeof(*h) * (cnt ? cnt : 1));
	size_t kept = 0;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
	     p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
		int rc;
		if (!kn || !vn)
			return cfg_err(c, NODE_LINE(n), "malformed mapping");
		if ((rc = cfg_visit(c, kn)))
			return rc;
		if (kn->type != YAML_SCALAR_NODE || cfg_node_str(kn).n == 0)
			return cfg_err(c, NODE_LINE(kn), "expected a header name");
		struct str name = cfg_node_str(kn);
		for (size_t j = 0; j < name.n; j++)
			if (!cfg_is_tchar((unsigned char)name.p[j]))
				return cfg_err(c, NODE_LINE(kn),
					       "invalid header name %s, expected letters, digits and -",
					       cfg_quote(c, name.p, name.n));
		for (size_t j = 0; j < UMB_ARRAY_LEN(reserved); j++)
			if (str_ieq(name, str_cstr(reserved[j])))
				return cfg_err(c, NODE_LINE(kn),
					       "header %s is set by the gateway and cannot be configured",
					       cfg_quote(c, name.p, name.n));
		for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *qk = yaml_document_get_node(c->doc, q->key);
			if (qk && qk->type == YAML_SCALAR_NODE &&
			    str_ieq(name, cfg_node_str(qk)))
				return cfg_err(c, NODE_LINE(kn),
					       "duplicate header %s (first given at line %d), expected each header once",
					       cfg_quote(c, name.p, name.n), NODE_LINE(qk));
		}
		struct cfg_header *hd = &h[kept];
		hd->name = arena_strndup(c->a, name.p, name.n);
		hd->value = NULL;
		rc = UMB_OK;
		size_t old = cfg_path_key(c, hd->name);
		if (!cfg_is_null(vn))
			rc = cfg_scalar(c, vn, "a header value", &hd->value);
		cfg_path_pop(c, old);
		if (rc)
			return rc;
		/* An empty value (e.g. "${ORG:-}") omits the header. */
		if (hd->value && hd->value[0])
			kept++;
	}
	*(struct cfg_header **)((char *)base + k->off) = h;
	*(size_t *)((char *)base + k->off2) = kept;
	return UMB_OK;
}

/* A YAML list node (an empty value counts as an empty list). */
static int cfg_list(struct cfg_ctx *c, yaml_node_t *n, const char *want,
		    size_t *count)
{
	if (cfg_is_null(n)) {
		*count = 0;
		return UMB_OK;
	}
	if (n->type != YAML_SEQUENCE_NODE)
		return cfg_err(c, NODE_LINE(n), "expected a list of %s, got a %s",
			       want, cfg_node_kind(n));
	*count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	/* name uniqueness checks are quadratic; no real config is this big */
	if (*count > CFG_MAX_ITEMS)
		return cfg_err(c, NODE_LINE(n), "%zu %s, expected at most %d",
			       *count, want, CFG_MAX_ITEMS);
	return UMB_OK;
}

static yaml_node_t *cfg_item(struct cfg_ctx *c, yaml_node_t *n, size_t i)
{
	return yaml_document_get_node(c->doc, n->data.sequence.items.start[i]);
}

/* The first of the n items at arr (laid out as sec says) named name. */
static const void *cfg_find_item(const void *arr, size_t n,
				 const struct cfg_section *sec, struct str name)
{
	for (size_t i = 0; i < n; i++) {
		const char *it = (const char *)arr + i * sec->size;
		if (str_eq_cstr(name, *(char *const *)(it + sec->name_off)))
			return it;
	}
	return NULL;
}

/* The item of the n at arr (laid out as sec says) named s; else NULL with
 * an error at line naming sec->item, with a did-you-mean. The message
 * lists the first 20 names, enough to spot a typo without a 10,000-name
 * line. */
static const void *cfg_lookup_item(struct cfg_ctx *c, int line, const char *s,
				   const void *arr, size_t n,
				   const struct cfg_section *sec)
{
	const void *it = cfg_find_item(arr, n, sec, str_cstr(s));
	struct cfg_suggest sg;
	struct buf b;
	if (it)
		return it;
	cfg_suggest_init(&sg, str_cstr(s));
	buf_init(&b, 0);
	for (size_t i = 0; i < n; i++) {
		const char *name = *(char *const *)((const char *)arr +
						    i * sec->size + sec->name_off);
		cfg_suggest_try(&sg, name);
		if (i < 20)
			buf_printf(&b, "%s%s", i ? ", " : "", name);
	}
	if (n > 20)
		buf_append_cstr(&b, ", ...");
	const char *names = arena_strndup(c->a, b.p ? b.p : "", b.n);
	buf_clear(&b);
	/* sec->name is the list's key plus "[]": "teams[]" */
	if (!n)
		cfg_err(c, line, "unknown %s %s, %.*s: lists no %s", sec->item,
			cfg_quote(c, s, strlen(s)), (int)strlen(sec->name) - 2,
			sec->name, sec->item);
	else
		cfg_err(c, line, "unknown %s %s, expected one of %s%s", sec->item,
			cfg_quote(c, s, strlen(s)), names, cfg_suggest_text(c, &sg));
	return NULL;
}

static const struct cfg_section team_section;

/* An identity's team must be in teams:, which config_post loads before
 * identities. */
static int cfg_parse_identity_team(struct cfg_ctx *c, int line, const char *s,
				   void *base, const struct cfg_key *k)
{
	struct cfg_identity *id = base;
	const struct cfg_team *t = cfg_lookup_item(c, line, s, c->cfg->teams,
						   c->cfg->n_teams, &team_section);
	UMB_UNUSED(k);
	if (!t)
		return UMB_ERR;
	id->team = t->name;
	return UMB_OK;
}

/* Load the cnt mappings of list n (cnt from cfg_list, bounds already
 * checked by the caller) with sec into a new arena array of sec->size
 * bytes per item, each item's line at sec->line_off and c->cur_item set
 * while it loads. Names at sec->name_off must be unique within the list.
 * On success the array goes to the pointer field at arr_field and cnt to
 * *count; on error they are left alone and the arena holds the partial
 * work. */
static int cfg_load_items(struct cfg_ctx *c, yaml_node_t *n, size_t cnt,
			  const struct cfg_section *sec, void *arr_field,
			  size_t *count)
{
	char *arr = arena_alloc(c->a, sec->size * (cnt ? cnt : 1));
	int rc;

	for (size_t i = 0; i < cnt; i++) {
		char *it = arr + i * sec->size;
		int *line = (int *)(it + sec->line_off);
		yaml_node_t *in = cfg_item(c, n, i);
		if (!in)
			return cfg_err(c, NODE_LINE(n), "malformed list");
		if ((rc = cfg_visit(c, in)))
			return rc;
		size_t old = cfg_path_index(c, i);
		*line = NODE_LINE(in);
		c->cur_item = i;
		if (in->type != YAML_MAPPING_NODE)
			rc = cfg_err(c, *line, "expected a mapping %s, got a %s",
				     sec->shape, cfg_node_kind(in));
		else
			rc = cfg_load_section(c, in, sec, it);
		const char *name = rc ? NULL : *(char **)(it + sec->name_off);
		const char *prev = name ? cfg_find_item(arr, i, sec, str_cstr(name)) : NULL;
		if (prev)
			rc = cfg_err(c, *line,
				     "duplicate %s name \"%s\" (first at line %d), expected unique names%s",
				     sec->item, name,
				     *(const int *)(prev + sec->line_off), sec->scope);
		cfg_path_pop(c, old);
		if (rc)
			return rc;
	}
	memcpy(arr_field, &arr, sizeof(arr));
	*count = cnt;
	return UMB_OK;
}

static const struct cfg_section endpoint_section;

static int cfg_load_endpoints(struct cfg_ctx *c, yaml_node_t *n, void *base,
			      const struct cfg_key *k)
{
	struct cfg_provider *p = base;
	size_t cnt;
	int rc;
	UMB_UNUSED(k);
	if (p->n_endpoints)
		return cfg_err(c, NODE_LINE(n), "give either url or endpoints, not both");
	if ((rc = cfg_list(c, n, "endpoints", &cnt)))
		return rc;
	if (cnt == 0)
		return cfg_err(c, NODE_LINE(n),
			       "expected at least one endpoint ({ name, url, weight })");
	/* a request's tried-set is one 64-bit mask (upstream/pool.c) */
	if (cnt > 64)
		return cfg_err(c, NODE_LINE(n),
			       "%zu endpoints; at most 64 per provider are supported", cnt);
	return cfg_load_items(c, n, cnt, &endpoint_section, &p->endpoints,
			      &p->n_endpoints);
}

/* cfg_list, then k's bounds on the count: at least k->min (0 or 1) and
 * at most k->max, or cap when k->max is 0. */
static int cfg_list_bounded(struct cfg_ctx *c, yaml_node_t *n,
			    const struct cfg_key *k, size_t cap, size_t *count)
{
	size_t max = k->max > 0 ? (size_t)k->max : cap;
	int rc = cfg_list(c, n, k->want, count);
	UMB_BUG_ON(k->min > 1);
	if (rc)
		return rc;
	if (*count > max)
		return cfg_err(c, NODE_LINE(n), "%zu %s, expected at most %zu",
			       *count, k->name, max);
	if (*count < (size_t)k->min)
		return cfg_err(c, NODE_LINE(n), "expected a non-empty list of %s",
			       k->want);
	return UMB_OK;
}

/* A list of scalars (at most CFG_MAX_LIST, or as k bounds it) into the
 * (char **, size_t) at k->off, k->off2; k->want and k->want_one name the
 * list and an item in messages. When k->parse is set each item goes
 * through it as a key at offset 0 of its own slot, so the scalar
 * validators serve lists too; k->unique refuses repeats. lines, unless
 * NULL, receives an arena array of the items' lines. */
static int cfg_str_list(struct cfg_ctx *c, yaml_node_t *n, void *base,
			const struct cfg_key *k, int **lines)
{
	const struct cfg_key slot = { .name = k->name, .off = 0 };
	size_t cnt;
	int rc;
	if ((rc = cfg_list_bounded(c, n, k, CFG_MAX_LIST, &cnt)))
		return rc;
	char **v = arena_alloc(c->a, sizeof(char *) * (cnt ? cnt : 1));
	int *ln = arena_alloc(c->a, sizeof(int) * (cnt ? cnt : 1));
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *in = cfg_item(c, n, i);
		if (!in)
			return cfg_err(c, NODE_LINE(n), "malformed list");
		if ((rc = cfg_visit(c, in)))
			return rc;
		size_t old = cfg_path_index(c, i);
		ln[i] = NODE_LINE(in);
		rc = cfg_scalar(c, in, k->want_one, &v[i]);
		if (!rc && k->parse)
			rc = k->parse(c, ln[i], v[i], &v[i], &slot);
		for (size_t j = 0; !rc && k->unique && j < i; j++)
			if (!strcmp(v[j], v[i]))
				rc = cfg_err(c, ln[i],
					     "%s is listed twice (first at line %d), expected each entry once",
					     cfg_quote(c, v[i], strlen(v[i])), ln[j]);
		cfg_path_pop(c, old);
		if (rc)
			return rc;
	}
	*(char ***)((char *)base + k->off) = v;
	*(size_t *)((char *)base + k->off2) = cnt;
	if (lines)
		*lines = ln;
	return UMB_OK;
}

static int cfg_load_strings(struct cfg_ctx *c, yaml_node_t *n, void *base,
			    const struct cfg_key *k)
{
	return cfg_str_list(c, n, base, k, NULL);
}

/* Example prompts: like strings, but multi-line text (code, tables) is
 * what prompts are made of, and they are literal (no ${} expansion). They
 * never reach a header. */
static int cfg_load_prompts(struct cfg_ctx *c, yaml_node_t *n, void *base,
			    const struct cfg_key *k)
{
	c->prose = true;
	int rc = cfg_str_list(c, n, base, k, NULL);
	c->prose = false;
	return rc;
}

/* Fallbacks are resolved once every model is loaded, and an error then
 * names the line of the entry: keep the lines. */
static int cfg_load_fallbacks(struct cfg_ctx *c, yaml_node_t *n, void *base,
			      const struct cfg_key *k)
{
	return cfg_str_list(c, n, base, k, &c->fb_lines[c->cur_item]);
}

static const struct cfg_section provider_section;
static const struct cfg_section model_section;

/* The entry for key name in sec's table; it must be there. */
static const struct cfg_key *cfg_key_get(const struct cfg_section *sec,
					 const char *name)
{
	for (size_t i = 0; i < sec->n_keys; i++)
		if (!strcmp(sec->keys[i].name, name))
			return &sec->keys[i];
	UMB_BUG_ON(1);
	return NULL;
}

static int cfg_load_providers(struct cfg_ctx *c, yaml_node_t *n, void *base,
			      const struct cfg_key *k)
{
	struct config *cfg = base;
	size_t cnt;
	int rc;
	UMB_UNUSED(k);
	if ((rc = cfg_list(c, n, "providers", &cnt)))
		return rc;
	if (cnt == 0)
		return cfg_err(c, NODE_LINE(n),
			       "at least one provider is required, expected a list of { name, type, url }");
	cfg->providers = arena_alloc(c->a, sizeof(*cfg->providers) * cnt);
	for (size_t i = 0; i < cnt; i++) {
		struct cfg_provider *p = &cfg->providers[i];
		yaml_node_t *in = cfg_item(c, n, i);
		if (!in)
			return cfg_err(c, NODE_LINE(n), "malformed list");
		if ((rc = cfg_visit(c, in)))
			return rc;
		size_t old = cfg_path_index(c, i);
		p->line = NODE_LINE(in);
		/* type first: it decides which keys are valid */
		yaml_node_t *tn = cfg_map_get(c, in, "type");
		if (in->type != YAML_MAPPING_NODE) {
			rc = cfg_err(c, p->line,
				     "expected a mapping { name, type, url | endpoints }, got a %s",
				     cfg_node_kind(in));
		} else if (!tn) {
			rc = cfg_err(c, p->line,
				     "missing required key \"type\", expected one of %s",
				     cfg_enum_list(c, provider_types, false));
		} else {
			const struct cfg_key *tk = cfg_key_get(&provider_section, "type");
			size_t old2 = cfg_path_key(c, "type");
			rc = cfg_set_node(c, tn, p, tk);
			cfg_path_pop(c, old2);
			if (!rc) {
				c->ptype = p->type;
				rc = cfg_load_section(c, in, &provider_section, p);
			}
		}
		for (size_t j = 0; !rc && j < i; j++)
			if (!strcmp(cfg->providers[j].name, p->name))
				rc = cfg_err(c, p->line,
					     "duplicate provider name \"%s\" (first at line %d), expected unique names",
					     p->name, cfg->providers[j].line);
		cfg_path_pop(c, old);
		if (rc)
			return rc;
		cfg->n_providers = i + 1;
	}
	return UMB_OK;
}

/* Keys that refer to others which may come later in the file (models name
 * providers, identities name teams) are loaded by config_post. */
static int cfg_later(struct cfg_ctx *c, yaml_node_t *n, void *base,
		     const struct cfg_key *k)
{
	UMB_UNUSED(c);
	UMB_UNUSED(n);
	UMB_UNUSED(base);
	UMB_UNUSED(k);
	return UMB_OK;
}

static int cfg_load_models(struct cfg_ctx *c, yaml_node_t *n)
{
	struct config *cfg = c->cfg;
	size_t cnt;
	int rc;
	if ((rc = cfg_list(c, n, "models", &cnt)))
		return rc;
	if (cnt == 0)
		return cfg_err(c, NODE_LINE(n),
			       "at least one model is required, expected a list of { name, provider }");
	c->fb_lines = arena_alloc(c->a, sizeof(int *) * cnt);
	return cfg_load_items(c, n, cnt, &model_section, &cfg->models,
			      &cfg->n_models);
}

/* A list of mappings (k->want: "teams"), up to CFG_MAX_ITEMS or as k
 * bounds it, each loaded with k->sub by cfg_load_items, into the
 * (array, count) at k->off, k->off2. */
static int cfg_load_list(struct cfg_ctx *c, yaml_node_t *n, void *base,
			 const struct cfg_key *k)
{
	size_t cnt;
	int rc = cfg_list_bounded(c, n, k, CFG_MAX_ITEMS, &cnt);
	if (rc)
		return rc;
	return cfg_load_items(c, n, cnt, k->sub, (char *)base + k->off,
			      (size_t *)((char *)base + k->off2));
}

/* Resolve every fallbacks entry to an exact, non-glob model, then refuse
 * cycles (a → b → a would bounce a failing request forever). */
static int cfg_resolve_fallbacks(struct cfg_ctx *c)
{
	struct config *cfg = c->cfg;
	size_t nm = cfg->n_models;

	for (size_t i = 0; i < nm; i++) {
		struct cfg_model *m = &cfg->models[i];
		m->fallback_models = arena_alloc(c->a, sizeof(struct cfg_model *) *
						       (m->n_fallbacks ? m->n_fallbacks : 1));
		for (size_t f = 0; f < m->n_fallbacks; f++) {
			const char *fb = m->fallbacks[f];
			int line = c->fb_lines[i][f];
			struct cfg_model *t = NULL;
			struct cfg_suggest sg;
			cfg_suggest_init(&sg, str_cstr(fb));
			for (size_t j = 0; j < nm; j++) {
				if (!strcmp(cfg->models[j].name, fb))
					t = &cfg->models[j];
				else if (!cfg->models[j].is_glob)
					cfg_suggest_try(&sg, cfg->models[j].name);
			}
			const char *path = arena_printf(c->a, "models[%zu].fallbacks[%zu]", i, f);
			if (!t)
				return cfg_err_raw(c, line,
						   "%s: unknown model \"%s\", expected the exact name of a model in models:%s",
						   path, fb, cfg_suggest_text(c, &sg));
			if (t->is_glob)
				return cfg_err_raw(c, line,
						   "%s: \"%s\" is a glob pattern, expected the exact name of a model",
						   path, fb);
			if (t == m)
				return cfg_err_raw(c, line,
						   "%s: model \"%s\" lists itself as a fallback",
						   path, fb);
			for (size_t g = 0; g < f; g++)
				if (m->fallback_models[g] == t)
					return cfg_err_raw(c, line,
							   "%s: \"%s\" is listed twice, expected each fallback once",
							   path, fb);
			m->fallback_models[f] = t;
		}
	}

	/* Iterative DFS with colours: 0 new, 1 on the stack, 2 done. */
	unsigned char *colour = arena_alloc(c->a, nm ? nm : 1);
	size_t *stack = arena_alloc(c->a, sizeof(size_t) * (nm ? nm : 1));
	size_t *next = arena_alloc(c->a, sizeof(size_t) * (nm ? nm : 1));
	for (size_t root = 0; root < nm; root++) {
		if (colour[root])
			continue;
		size_t sp = 0;
		stack[sp++] = root;
		colour[root] = 1;
		next[root] = 0;
		while (sp) {
			size_t u = stack[sp - 1];
			struct cfg_model *mu = &cfg->models[u];
			if (next[u] == mu->n_fallbacks) {
				colour[u] = 2;
				sp--;
				continue;
			}
			size_t f = next[u]++;
			size_t v = (size_t)(mu->fallback_models[f] - cfg->models);
			if (colour[v] == 0) {
				colour[v] = 1;
				next[v] = 0;
				stack[sp++] = v;
			} else if (colour[v] == 1) {
				struct buf b;
				buf_init(&b, 0);
				size_t s0 = 0;
				while (stack[s0] != v)
					s0++;
				for (size_t s = s0; s < sp; s++)
					buf_printf(&b, "%s -> ", cfg->models[stack[s]].name);
				buf_append_cstr(&b, cfg->models[v].name);
				const char *cyc = arena_strndup(c->a, b.p, b.n);
				buf_clear(&b);
				return cfg_err_raw(c, c->fb_lines[u][f],
						   "models[%zu].fallbacks[%zu]: fallback cycle %s, expected fallbacks to end somewhere",
						   u, f, cyc);
			}
		}
	}
	return UMB_OK;
}

/* ---- post checks ---- */

static int tls_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_tls *t = base;
	int line = n ? NODE_LINE(n) : 1;
	if (!n)
		return UMB_OK;
	if (!t->cert != !t->key)
		return cfg_err(c, line, "cert and key must be given together");
	t->enabled = t->cert != NULL;
	if (t->client_ca && !t->enabled)
		return cfg_err(c, line, "client_ca needs cert and key (TLS) as well");
	/* A CA given without client_auth means "identify callers that have a
	 * certificate" (DESIGN.md), i.e. optional. */
	if (t->client_ca && !cfg_map_get(c, n, "client_auth"))
		t->client_auth = CLIENT_AUTH_OPTIONAL;
	if (t->client_auth != CLIENT_AUTH_NONE && !t->client_ca)
		return cfg_err(c, line,
			       "client_auth %s needs client_ca to verify client certificates",
			       t->client_auth == CLIENT_AUTH_REQUIRE ? "require" : "optional");
	return UMB_OK;
}

static int health_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_health *h = base;
	h->enabled = n != NULL;
	if (!h->path) {
		if (c->ptype == PROVIDER_OLLAMA)
			h->path = arena_strndup(c->a, "/api/tags", 9);
		else if (c->ptype == PROVIDER_OPENAI)
			h->path = arena_strndup(c->a, "/v1/models", 10);
		else if (h->enabled)
			return cfg_err(c, NODE_LINE(n),
				       "missing required key \"path\" for provider type %s",
				       provider_type_name(c->ptype));
	} else if (h->path[0] != '/') {
		return cfg_err(c, n ? NODE_LINE(n) : 1,
			       "path %s must start with '/'",
			       cfg_quote(c, h->path, strlen(h->path)));
	}
	if (h->timeout_s > h->interval_s)
		return cfg_err(c, n ? NODE_LINE(n) : 1,
			       "timeout_s (%d) must not exceed interval_s (%d)",
			       h->timeout_s, h->interval_s);
	return UMB_OK;
}

static int ejection_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_ejection *e = base;
	if (e->max_ms < e->base_ms)
		return cfg_err(c, n ? NODE_LINE(n) : 1,
			       "max_ms (%d) must be at least base_ms (%d)",
			       e->max_ms, e->base_ms);
	return UMB_OK;
}

/* The vendor's public endpoint when a provider gives no url (DESIGN.md
 * "Provider URLs"); NULL when the type has none (openai-compatible
 * servers, Azure resources: the url names them). */
static const char *provider_default_url(struct cfg_ctx *c, const struct cfg_provider *p)
{
	switch (p->type) {
	case PROVIDER_ANTHROPIC:
		return "https://api.anthropic.com";
	case PROVIDER_OLLAMA:
		return "http://127.0.0.1:11434";
	case PROVIDER_BEDROCK:
		return p->region ? arena_printf(c->a, "https://bedrock-runtime.%s.amazonaws.com", p->region)
				 : NULL;
	case PROVIDER_VERTEX:
		if (!p->location)
			return NULL;
		return !strcmp(p->location, "global") ? "https://aiplatform.googleapis.com"
			: arena_printf(c->a, "https://%s-aiplatform.googleapis.com", p->location);
	default:
		return NULL;
	}
}

/* What a provider type cannot work without. */
static int provider_check_type(struct cfg_ctx *c, yaml_node_t *n, const struct cfg_provider *p)
{
	if (!provider_ops_get(p->type))
		return cfg_err(c, NODE_LINE(n), "provider type %s is not implemented in this build yet",
			       provider_type_name(p->type));
	if (p->type == PROVIDER_BEDROCK && !p->region)
		return cfg_err(c, NODE_LINE(n), "missing required key \"region\" for provider type bedrock "
			       "(the AWS region requests are signed for, e.g. us-east-1)");
	if (p->type == PROVIDER_VERTEX) {
		if (!p->project || !p->location)
			return cfg_err(c, NODE_LINE(n), "provider type vertex needs \"project\" and "
				       "\"location\" (e.g. us-central1)");
		if (!p->credentials_file == !p->access_token)
			return cfg_err(c, NODE_LINE(n), "provider type vertex needs exactly one of "
				       "\"credentials_file\" (service-account JSON) and \"access_token\"");
	}
	return UMB_OK;
}

static int provider_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_provider *p = base;
	int rc = provider_check_type(c, n, p);
	if (rc)
		return rc;
	const char *def = p->n_endpoints ? NULL : provider_default_url(c, p);
	if (def && (rc = cfg_parse_provider_url(c, NODE_LINE(n), def, p, NULL)))
		return rc;
	if (!p->n_endpoints)
		return cfg_err(c, NODE_LINE(n),
			       "missing url or endpoints, expected exactly one of them");
	if (p->n_endpoints == 1 && !p->endpoints[0].name)
		p->endpoints[0].name = p->name; /* url: shorthand */
	bool primary = false;
	for (size_t i = 0; i < p->n_endpoints; i++)
		primary |= !p->endpoints[i].backup;
	if (!primary)
		return cfg_err(c, NODE_LINE(n),
			       "every endpoint is a backup, expected at least one with backup: false");
	return UMB_OK;
}

/* Exactly one of url and service. A service endpoint is reached through
 * the tunnel: the origin only names it (the Host the connector sees);
 * config_post checks that the service exists. */
static int endpoint_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_endpoint *e = base;
	if (e->url && e->service)
		return cfg_err(c, NODE_LINE(n), "give either url or service, not both");
	if (!e->url && !e->service)
		return cfg_err(c, NODE_LINE(n),
			       "missing url or service, expected exactly one of them");
	if (e->service) {
		e->scheme = SCHEME_SERVICE;
		e->origin = arena_printf(c->a, "http://%s", e->service);
		e->unix_path = NULL;
	}
	return UMB_OK;
}

static int tunnel_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_tunnel *t = base;
	UMB_UNUSED(c);
	t->enabled = n != NULL;
	return UMB_OK;
}

static int audit_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_audit *a = base;
	UMB_UNUSED(c);
	a->enabled = n != NULL;
	return UMB_OK;
}

static int budget_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_budget *b = base;
	UMB_UNUSED(c);
	b->set = n != NULL;
	return UMB_OK;
}

static int rate_limit_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_rate_limit *r = base;
	r->set = n != NULL && (r->rpm || r->tpm);
	if (n && !r->rpm && !r->tpm)
		return cfg_err(c, NODE_LINE(n), "rate_limit needs rpm or tpm (or both)");
	return UMB_OK;
}

static int price_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_price *p = base;
	UMB_UNUSED(c);
	p->set = n != NULL;
	/* An unpriced cache read costs what a normal input token costs:
	 * over-estimating keeps budgets safe. */
	if (p->set && !cfg_map_get(c, n, "cached_input_per_mtok"))
		p->cached_input_per_mtok = p->input_per_mtok;
	return UMB_OK;
}

static int model_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_model *m = base;
	UMB_UNUSED(c);
	UMB_UNUSED(n);
	m->is_glob = strpbrk(m->name, "*?") != NULL;
	if (!m->fallbacks) {
		m->fallbacks = arena_alloc(c->a, sizeof(char *));
		c->fb_lines[c->cur_item] = arena_alloc(c->a, sizeof(int));
	}
	return UMB_OK;
}

/* Client certificates are verified only with a CA and client_auth
 * optional or require (tls_post makes a lone client_ca optional). */
static int auth_check(struct cfg_ctx *c, yaml_node_t *root)
{
	const struct config *cfg = c->cfg;
	if (cfg->auth_mode != AUTH_CERTS && cfg->auth_mode != AUTH_KEYS_CERTS)
		return UMB_OK;
	if (cfg->tls.client_ca && cfg->tls.client_auth != CLIENT_AUTH_NONE)
		return UMB_OK;
	yaml_node_t *mode = cfg_map_get(c, cfg_map_get(c, root, "auth"), "mode");
	return cfg_err_raw(c, mode ? NODE_LINE(mode) : 1,
			   "auth.mode: %s needs tls.client_ca (and client_auth optional or require) to verify client certificates",
			   auth_modes[cfg->auth_mode].name);
}

/* An address that binds every interface clashes with any on its port. */
static bool cfg_host_is_any(const char *h)
{
	return !strcmp(h, "0.0.0.0") || !strcmp(h, "::");
}

/* "host:port" again, brackets around an IPv6 host, for messages. */
static const char *cfg_addr_text(struct cfg_ctx *c, const char *host, int port)
{
	bool v6 = strchr(host, ':') != NULL;
	return arena_printf(c->a, "%s%s%s:%d", v6 ? "[" : "", host,
			    v6 ? "]" : "", port);
}

/* Once tls: is loaded too (it may come later in the file): the tunnel's
 * certificate and CA default to tls:'s, and it needs both; its address
 * must not be the gateway's own. Errors at the tunnel: line. */
static int tunnel_check(struct cfg_ctx *c, yaml_node_t *root)
{
	struct config *cfg = c->cfg;
	struct cfg_tunnel *t = &cfg->tunnel;
	yaml_node_t *tn = cfg_map_get(c, root, "tunnel");
	int rc = UMB_OK;
	if (!t->enabled)
		return UMB_OK;
	size_t old = cfg_path_key(c, "tunnel");
	if (!t->cert != !t->key) {
		rc = cfg_err(c, NODE_LINE(tn),
			     "cert and key must be given together (or neither, to use tls.cert and tls.key)");
	} else if (!t->cert && !cfg->tls.enabled) {
		rc = cfg_err(c, NODE_LINE(tn),
			     "no certificate, expected cert and key here or in tls:");
	} else if (!t->ca && !cfg->tls.client_ca) {
		rc = cfg_err(c, NODE_LINE(tn),
			     "no CA to verify connectors, expected ca here or tls.client_ca");
	} else if (t->listen_port == cfg->listen_port &&
		   (!strcasecmp(t->listen_host, cfg->listen_host) ||
		    cfg_host_is_any(t->listen_host) ||
		    cfg_host_is_any(cfg->listen_host))) {
		yaml_node_t *ln = cfg_map_get(c, tn, "listen");
		size_t old2 = cfg_path_key(c, "listen");
		rc = cfg_err(c, ln ? NODE_LINE(ln) : NODE_LINE(tn),
			     "%s clashes with the gateway's listen %s, expected a port of its own",
			     cfg_addr_text(c, t->listen_host, t->listen_port),
			     cfg_addr_text(c, cfg->listen_host, cfg->listen_port));
		cfg_path_pop(c, old2);
	}
	cfg_path_pop(c, old);
	if (rc)
		return rc;
	if (!t->cert) {
		t->cert = cfg->tls.cert;
		t->key = cfg->tls.key;
	}
	if (!t->ca)
		t->ca = cfg->tls.client_ca;
	return UMB_OK;
}

static const struct cfg_section service_section;

/* services: needs tunnel: (wherever it is in the file), and every
 * endpoint's service: names one of them. */
static int services_check(struct cfg_ctx *c, yaml_node_t *root)
{
	struct config *cfg = c->cfg;
	yaml_node_t *sn = cfg_map_get(c, root, "services");
	if (sn && !cfg->tunnel.enabled)
		return cfg_err_raw(c, NODE_LINE(sn),
				   "services: needs tunnel: as well (connectors dial in through it)");
	for (size_t i = 0; i < cfg->n_providers; i++) {
		const struct cfg_provider *p = &cfg->providers[i];
		for (size_t j = 0; j < p->n_endpoints; j++) {
			const struct cfg_endpoint *e = &p->endpoints[j];
			if (!e->service)
				continue;
			size_t old = c->path_len;
			cfg_path_key(c, "providers");
			cfg_path_index(c, i);
			cfg_path_key(c, "endpoints");
			cfg_path_index(c, j);
			cfg_path_key(c, "service");
			const void *sv = cfg_lookup_item(c, e->line, e->service,
							 cfg->services, cfg->n_services,
							 &service_section);
			cfg_path_pop(c, old);
			if (!sv)
				return UMB_ERR;
		}
	}
	return UMB_OK;
}


/* ---- routing: (docs/routing.md) ---- */

/* A PCRE2 pattern must compile; the message names pattern, reason and
 * offset. The gateway compiles again (with JIT) in routing/heuristics.c. */
static int cfg_check_regex(struct cfg_ctx *c, int line, const char *re)
{
	int code;
	PCRE2_SIZE off;
	pcre2_code *rc = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED,
				       PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &off, NULL);
	if (rc) {
		pcre2_code_free(rc);
		return UMB_OK;
	}
	PCRE2_UCHAR msg[160];
	pcre2_get_error_message(code, msg, sizeof msg);
	return cfg_err(c, line, "regex %s does not compile: %s at offset %zu",
		       cfg_quote(c, re, strlen(re)), (const char *)msg, (size_t)off);
}

static int rule_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_rule *r = base;
	UMB_UNUSED(n);
	if (!r->name)
		r->name = arena_printf(c->a, "rule-%zu", c->cur_item + 1);
	for (size_t i = 0; i < r->n_regex; i++)
		if (cfg_check_regex(c, r->line, r->regex[i]))
			return UMB_ERR;
	if (!r->n_keywords && !r->n_regex && !r->n_system_prompt_contains &&
	    r->has_tools == TRI_UNSET && !r->max_tokens_lt && !r->message_length_lt &&
	    !r->n_detectors)
		return cfg_err(c, r->line,
			       "rule has no condition, expected match: with keywords, regex, "
			       "system_prompt_contains, has_tools, max_tokens_lt, message_length_lt or detectors");
	return UMB_OK;
}

static int detector_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_detector *d = base;
	enum pii_kind k;
	UMB_UNUSED(n);
	if (pii_kind_parse(d->name, &k) == UMB_OK)
		return cfg_err(c, d->line, "\"%s\" is a built-in detector, expected another name",
			       d->name);
	return cfg_check_regex(c, d->line, d->regex);
}

static int semantic_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_semantic *s = base;
	s->enabled = s->enabled && n != NULL;
	if (!s->enabled)
		return UMB_OK;
	int line = NODE_LINE(n);
	if (s->provider && s->embedder)
		return cfg_err(c, line, "embedder and provider are exclusive, expected "
			       "embedder: builtin or provider: NAME with model: M");
	if (!s->provider && !s->embedder)
		s->embedder = arena_strndup(c->a, "builtin", 7);
	if (s->embedder && strcmp(s->embedder, "builtin"))
		return cfg_err(c, line, "unknown embedder \"%s\", expected builtin "
			       "(or provider: NAME with model: M)", s->embedder);
	if (s->provider && !s->model)
		return cfg_err(c, line, "provider needs model: (the embedding model's name)");
	if (s->provider && !config_find_provider(c->cfg, s->provider))
		return cfg_err(c, line, "unknown provider \"%s\", expected a name in providers:",
			       s->provider);
	/* The builtin embedder's cosines run lower than a neural model's
	 * (docs/routing.md, "Thresholds"): its own defaults, unless given. */
	if (s->embedder && !cfg_map_get(c, n, "threshold"))
		s->threshold = SEM_BUILTIN_THRESHOLD;
	if (s->embedder && !cfg_map_get(c, n, "ambiguous_threshold"))
		s->ambiguous_threshold = SEM_BUILTIN_AMBIGUOUS;
	if (s->ambiguous_threshold > s->threshold)
		return cfg_err(c, line, "ambiguous_threshold (%g) must not exceed threshold (%g)",
			       s->ambiguous_threshold, s->threshold);
	return UMB_OK;
}

static int classifier_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_classifier *k = base;
	k->enabled = k->enabled && n != NULL;
	if (!k->enabled)
		return UMB_OK;
	if (!k->model)
		return cfg_err(c, NODE_LINE(n), "missing required key \"model\" (the chat model asked to classify)");
	const struct cfg_model *m = config_find_model(c->cfg, str_cstr(k->model));
	if (!m || m->is_glob || strcmp(m->name, k->model))
		return cfg_err(c, NODE_LINE(n), "model \"%s\" is not the exact name of a model in models:",
			       k->model);
	return UMB_OK;
}

static int sensitive_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_sensitive *s = base;
	UMB_UNUSED(c);
	s->enabled = s->enabled && n != NULL;
	s->line = n ? NODE_LINE(n) : 0;
	return UMB_OK;
}

/* Is name a built-in detector or one of routing.detectors? */
static bool routing_detector_known(const struct cfg_routing *rt, const char *name)
{
	enum pii_kind k;
	if (pii_kind_parse(name, &k) == UMB_OK)
		return true;
	for (size_t i = 0; i < rt->n_detectors; i++)
		if (!strcmp(rt->detectors[i].name, name))
			return true;
	return false;
}

static const struct cfg_section route_section;

static const struct cfg_route *routing_route(struct cfg_ctx *c, int line,
					     const struct cfg_routing *rt, const char *name)
{
	return cfg_lookup_item(c, line, name, rt->routes, rt->n_routes, &route_section);
}

/* Cross-references inside routing: (keys may come in any order) and to
 * models:, loaded before routing: by config_post. */
static int routing_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct cfg_routing *rt = base;
	size_t old;
	if (!n)
		return UMB_OK;
	rt->enabled = true;
	int line = NODE_LINE(n);
	if (rt->n_routes == 0)
		return cfg_err(c, line, "routes: lists no route, expected at least one { name, model }");
	if (rt->n_detectors > DET_CUSTOM_MAX)
		return cfg_err(c, line, "%zu custom detectors, expected at most %d",
			       rt->n_detectors, DET_CUSTOM_MAX);
	for (size_t i = 0; i < rt->n_routes; i++) {
		struct cfg_route *r = &rt->routes[i];
		old = c->path_len;
		cfg_path_key(c, "routes");
		cfg_path_index(c, i);
		const struct cfg_model *m = config_find_model(c->cfg, str_cstr(r->model));
		int rc = UMB_OK;
		if (!m || m->is_glob || strcmp(m->name, r->model))
			rc = cfg_err(c, r->line, "model \"%s\" is not the exact name of a model in models:",
				     r->model);
		cfg_path_pop(c, old);
		if (rc)
			return rc;
		r->model_ref = m;
	}
	old = cfg_path_key(c, "default_route");
	const struct cfg_route *dr = routing_route(c, line, rt, rt->default_route);
	cfg_path_pop(c, old);
	if (!dr)
		return UMB_ERR;
	for (size_t i = 0; i < rt->n_rules; i++) {
		struct cfg_rule *r = &rt->rules[i];
		old = c->path_len;
		cfg_path_key(c, "heuristics");
		cfg_path_key(c, "rules");
		cfg_path_index(c, i);
		int rc = routing_route(c, r->line, rt, r->route) ? UMB_OK : UMB_ERR;
		for (size_t d = 0; !rc && d < r->n_detectors; d++)
			if (!routing_detector_known(rt, r->detectors[d]))
				rc = cfg_err(c, r->line, "unknown detector \"%s\", expected email, credit_card, "
					     "ssn, iban, phone or a name in routing.detectors", r->detectors[d]);
		cfg_path_pop(c, old);
		if (rc)
			return rc;
	}
	struct cfg_sensitive *sv = &rt->sensitive;
	if (sv->enabled) {
		int rc = UMB_OK;
		old = cfg_path_key(c, "sensitive");
		if (sv->n_detectors == 0) {
			/* default: every built-in detector */
			sv->detectors = arena_alloc(c->a, sizeof(char *) * PII_KINDS);
			for (int k = 0; k < PII_KINDS; k++)
				sv->detectors[k] = (char *)pii_kind_name((enum pii_kind)k);
			sv->n_detectors = PII_KINDS;
		}
		for (size_t d = 0; !rc && d < sv->n_detectors; d++)
			if (!routing_detector_known(rt, sv->detectors[d]))
				rc = cfg_err(c, sv->line, "unknown detector \"%s\", expected email, credit_card, "
					     "ssn, iban, phone or a name in routing.detectors", sv->detectors[d]);
		if (!rc && sv->action == SENSITIVE_REROUTE && !sv->route)
			rc = cfg_err(c, sv->line, "action: reroute needs route: (an on-prem route)");
		if (!rc && sv->route) {
			const struct cfg_route *r = routing_route(c, sv->line, rt, sv->route);
			if (!r)
				rc = UMB_ERR;
			else if (r->model_ref->locality != LOCALITY_ONPREM)
				rc = cfg_err(c, sv->line, "route \"%s\" serves model \"%s\", which is not "
					     "locality: onprem; sensitive data may only be rerouted on-prem",
					     r->name, r->model);
		}
		cfg_path_pop(c, old);
		if (rc)
			return rc;
	}
	/* teams' routes: name configured routes */
	for (size_t t = 0; t < c->cfg->n_teams; t++) {
		const struct cfg_team *tm = &c->cfg->teams[t];
		for (size_t i = 0; i < tm->n_routes; i++)
			if (!cfg_find_item(rt->routes, rt->n_routes, &route_section,
					   str_cstr(tm->routes[i])))
				return cfg_err_raw(c, tm->line, "teams[%zu].routes: unknown route \"%s\", "
						   "expected a name in routing.routes", t, tm->routes[i]);
	}
	return UMB_OK;
}

static const struct cfg_section config_section;
static const struct cfg_section routing_section;

/* n is the top-level mapping: every key is loaded, so the keys that refer
 * to others (cfg_later) can be loaded now. teams: present at all, even
 * `teams: []` or empty, turns model policy on. */
static int config_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct config *cfg = base;
	yaml_node_t *ids = cfg_map_get(c, n, "identities");
	int rc;
	cfg->teams_set = cfg_map_get(c, n, "teams") != NULL;
	size_t old = cfg_path_key(c, "models");
	rc = cfg_load_models(c, cfg_map_get(c, n, "models"));
	cfg_path_pop(c, old);
	if (rc || (rc = cfg_resolve_fallbacks(c)))
		return rc;
	if (ids) {
		old = cfg_path_key(c, "identities");
		if (!cfg->teams_set)
			rc = cfg_err(c, NODE_LINE(ids),
				     "needs teams: as well (each identity's team names an entry in teams:)");
		else
			rc = cfg_load_list(c, ids, cfg,
					   cfg_key_get(&config_section, "identities"));
		cfg_path_pop(c, old);
		if (rc)
			return rc;
	}
	if ((rc = tunnel_check(c, n)) || (rc = services_check(c, n)))
		return rc;
	yaml_node_t *rn = cfg_map_get(c, n, "routing");
	if (rn) {
		old = cfg_path_key(c, "routing");
		rc = cfg_load_section(c, rn, &routing_section, &cfg->routing);
		cfg_path_pop(c, old);
		if (rc)
			return rc;
	}
	return auth_check(c, n);
}

/* The connector's checks across keys. */
static int connector_post(struct cfg_ctx *c, yaml_node_t *n, void *base)
{
	struct connector_config *cc = base;
	if (cc->reconnect_max_ms < cc->reconnect_base_ms) {
		yaml_node_t *k = cfg_map_get(c, n, "reconnect_max_ms");
		if (!k)
			k = cfg_map_get(c, n, "reconnect_base_ms");
		return cfg_err(c, k ? NODE_LINE(k) : 1,
			       "reconnect_max_ms (%d) must be at least reconnect_base_ms (%d)",
			       cc->reconnect_max_ms, cc->reconnect_base_ms);
	}
	return UMB_OK;
}

/* ---- the tables ---- */

#define KEY(nm, k, st, fld, ...) \
	{ .name = nm, .kind = k, .off = offsetof(st, fld), __VA_ARGS__ }
#define UNIMPL(nm, what) \
	{ .name = nm, .kind = CK_UNIMPL, .doc = what }
#define TY(mask) .types = (mask)

static const struct cfg_key tls_keys[] = {
	KEY("cert", CK_PATH, struct cfg_tls, cert, .doc = "server certificate (PEM); enables TLS together with key"),
	KEY("key", CK_PATH, struct cfg_tls, key, .doc = "server private key (PEM)"),
	KEY("client_ca", CK_PATH, struct cfg_tls, client_ca, .doc = "CA bundle that verifies client certificates"),
	KEY("client_auth", CK_ENUM, struct cfg_tls, client_auth, .def = "none", .enums = client_auths,
	    .doc = "none | optional | require; optional when client_ca is set and this is not"),
};
static const struct cfg_section tls_section = { "tls", tls_keys, UMB_ARRAY_LEN(tls_keys), tls_post };

#define LIMIT_MS(nm, fld, d, lo, text) \
	KEY(nm, CK_INT, struct cfg_limits, fld, .def = d, .min = lo, .max = 86400000, .doc = text)
static const struct cfg_key limits_keys[] = {
	KEY("max_body_bytes", CK_U64, struct cfg_limits, max_body_bytes, .def = "8388608", .min = 1, .max = 1099511627776.0,
	    .doc = "largest request body accepted; larger gets 413"),
	KEY("max_header_bytes", CK_U64, struct cfg_limits, max_header_bytes, .def = "65536", .min = 1024, .max = 16777216,
	    .doc = "largest request head accepted; larger gets 431"),
	KEY("max_response_bytes", CK_U64, struct cfg_limits, max_response_bytes, .def = "67108864", .min = 1024, .max = 1099511627776.0,
	    .doc = "largest non-streaming upstream response body; larger gets 502"),
	LIMIT_MS("header_timeout_ms", header_timeout_ms, "10000", 1, "time for the whole request head to arrive"),
	LIMIT_MS("body_timeout_ms", body_timeout_ms, "30000", 1, "longest gap between request body reads"),
	LIMIT_MS("keepalive_timeout_ms", keepalive_timeout_ms, "75000", 1, "idle keep-alive connection lifetime"),
	LIMIT_MS("write_timeout_ms", write_timeout_ms, "60000", 1, "longest wait for a client that is not reading"),
	LIMIT_MS("drain_timeout_ms", drain_timeout_ms, "30000", 0, "grace for in-flight requests on SIGTERM"),
	KEY("max_connections", CK_INT, struct cfg_limits, max_connections, .def = "10000", .min = 1, .max = 1000000,
	    .doc = "concurrent client connections per gateway"),
};
static const struct cfg_section limits_section = { "limits", limits_keys, UMB_ARRAY_LEN(limits_keys), NULL };

static const struct cfg_key log_keys[] = {
	KEY("level", CK_ENUM, struct config, log_level, .def = "info", .enums = log_levels,
	    .doc = "debug | info | warn | error"),
	KEY("requests", CK_BOOL, struct config, log_requests, .def = "true",
	    .doc = "one JSON line per request on stderr"),
};
static const struct cfg_section log_section = { "log", log_keys, UMB_ARRAY_LEN(log_keys), NULL };

static const struct cfg_key auth_keys[] = {
	KEY("mode", CK_ENUM, struct config, auth_mode, .def = "none", .enums = auth_modes,
	    .doc = "none | keys | certs | keys+certs; certs needs tls.client_ca"),
};
static const struct cfg_section auth_section = { "auth", auth_keys, UMB_ARRAY_LEN(auth_keys), NULL };

static const struct cfg_key metrics_keys[] = {
	KEY("public", CK_BOOL, struct config, metrics_public, .def = "false",
	    .doc = "serve /metrics without admin credentials (always open with auth.mode none)"),
};
static const struct cfg_section metrics_section = { "metrics", metrics_keys, UMB_ARRAY_LEN(metrics_keys), NULL };

static const struct cfg_key health_keys[] = {
	KEY("path", CK_STR, struct cfg_health, path, .doc = "GET path probed; default /v1/models (openai), /api/tags (ollama)"),
	KEY("interval_s", CK_INT, struct cfg_health, interval_s, .def = "30", .min = 1, .max = 86400,
	    .doc = "seconds between probes"),
	KEY("timeout_s", CK_INT, struct cfg_health, timeout_s, .def = "5", .min = 1, .max = 3600,
	    .doc = "probe timeout, at most interval_s"),
	KEY("unhealthy_after", CK_INT, struct cfg_health, unhealthy_after, .def = "2", .min = 1, .max = 100,
	    .doc = "consecutive failed probes that mark an endpoint down"),
	KEY("healthy_after", CK_INT, struct cfg_health, healthy_after, .def = "1", .min = 1, .max = 100,
	    .doc = "consecutive good probes that mark it up again"),
};
static const struct cfg_section health_section = { "health_check", health_keys, UMB_ARRAY_LEN(health_keys), health_post };

static const struct cfg_key timeouts_keys[] = {
	KEY("connect_ms", CK_INT, struct cfg_timeouts, connect_ms, .def = "5000", .min = 1, .max = 86400000,
	    .doc = "TCP/TLS connect timeout (→ next endpoint, finally 504)"),
	KEY("first_byte_ms", CK_INT, struct cfg_timeouts, first_byte_ms, .def = "120000", .min = 1, .max = 86400000,
	    .doc = "wait for the upstream response head"),
	KEY("idle_ms", CK_INT, struct cfg_timeouts, idle_ms, .def = "60000", .min = 1, .max = 86400000,
	    .doc = "longest gap between upstream body bytes"),
};
static const struct cfg_section timeouts_section = { "timeouts", timeouts_keys, UMB_ARRAY_LEN(timeouts_keys), NULL };

static const struct cfg_key ejection_keys[] = {
	KEY("consecutive_failures", CK_INT, struct cfg_ejection, consecutive_failures, .def = "3", .min = 1, .max = 1000,
	    .doc = "failures in a row that eject an endpoint"),
	KEY("base_ms", CK_INT, struct cfg_ejection, base_ms, .def = "1000", .min = 1, .max = 86400000,
	    .doc = "first ejection time, doubled on each repeat"),
	KEY("max_ms", CK_INT, struct cfg_ejection, max_ms, .def = "60000", .min = 1, .max = 86400000,
	    .doc = "longest ejection time"),
};
static const struct cfg_section ejection_section = { "ejection", ejection_keys, UMB_ARRAY_LEN(ejection_keys), ejection_post };

static const struct cfg_key endpoint_keys[] = {
	KEY("name", CK_TEXT, struct cfg_endpoint, name, .parse = cfg_parse_ident, .required = true,
	    .doc = "endpoint name, unique within the provider"),
	KEY("url", CK_TEXT, struct cfg_endpoint, url, .parse = cfg_parse_endpoint_url,
	    .doc = "http://host[:port][/prefix], https://... or unix:///path.sock; exclusive with service"),
	KEY("service", CK_TEXT, struct cfg_endpoint, service, .parse = cfg_parse_name,
	    .doc = "name of a dark service in services, reached through a connector; exclusive with url"),
	KEY("weight", CK_INT, struct cfg_endpoint, weight, .def = "1", .min = 1, .max = 10000,
	    .doc = "share of traffic among healthy primary endpoints"),
	KEY("backup", CK_BOOL, struct cfg_endpoint, backup, .def = "false",
	    .doc = "used only when no primary endpoint is healthy"),
};
/* The item sections of cfg_load_items. */
#define ITEMS(st, what, shp, scp) \
	.size = sizeof(st), .name_off = offsetof(st, name), \
	.line_off = offsetof(st, line), .item = what, .shape = shp, .scope = scp

static const struct cfg_section endpoint_section = {
	"endpoints[]", endpoint_keys, UMB_ARRAY_LEN(endpoint_keys), endpoint_post,
	ITEMS(struct cfg_endpoint, "endpoint", "{ name, url | service, weight }", " within a provider"),
};

#define AZ PT(PROVIDER_AZURE)
#define BR PT(PROVIDER_BEDROCK)
#define VX PT(PROVIDER_VERTEX)
static const struct cfg_key provider_keys[] = {
	KEY("name", CK_TEXT, struct cfg_provider, name, .parse = cfg_parse_ident, .required = true,
	    .doc = "provider name that models refer to"),
	KEY("type", CK_ENUM, struct cfg_provider, type, .enums = provider_types, .required = true,
	    .doc = "openai | anthropic | azure | bedrock | vertex | ollama (docs/providers.md)"),
	KEY("url", CK_TEXT, struct cfg_provider, endpoints, .parse = cfg_parse_provider_url,
	    .doc = "one endpoint named after the provider; exclusive with endpoints"),
	KEY("endpoints", CK_CUSTOM, struct cfg_provider, endpoints, .custom = cfg_load_endpoints,
	    .doc = "list of endpoints; exclusive with url"),
	KEY("api_key", CK_STR, struct cfg_provider, api_key, .allow_empty = true,
	    .doc = "openai, ollama: Authorization: Bearer; anthropic: x-api-key; azure: api-key; empty means none"),
	KEY("headers", CK_CUSTOM, struct cfg_provider, headers, .off2 = offsetof(struct cfg_provider, n_headers),
	    .custom = cfg_load_headers, .doc = "extra upstream headers (name: value)"),
	KEY("health_check", CK_SECTION, struct cfg_provider, health, .sub = &health_section,
	    .doc = "active health checks; present (even empty) enables them"),
	KEY("timeouts", CK_SECTION, struct cfg_provider, timeouts, .sub = &timeouts_section,
	    .doc = "upstream timeouts"),
	KEY("ejection", CK_SECTION, struct cfg_provider, ejection, .sub = &ejection_section,
	    .doc = "passive ejection of failing endpoints"),
	KEY("keepalive", CK_INT, struct cfg_provider, keepalive, .def = "256", .min = 0, .max = 100000,
	    .doc = "idle upstream connections kept per endpoint and worker"),
	KEY("max_attempts", CK_INT, struct cfg_provider, max_attempts, .def = "3", .min = 1, .max = 100,
	    .doc = "endpoints tried per request before fallbacks"),
	KEY("ca_file", CK_PATH, struct cfg_provider, ca_file,
	    .doc = "PEM CA bundle trusted for https endpoints (default: the system store)"),
	KEY("api_version", CK_STR, struct cfg_provider, api_version, TY(AZ), .doc = "azure: api-version"),
	KEY("deployment", CK_STR, struct cfg_provider, deployment, TY(AZ), .doc = "azure: deployment (default upstream_model)"),
	KEY("region", CK_STR, struct cfg_provider, region, TY(BR), .doc = "bedrock: AWS region"),
	KEY("profile", CK_STR, struct cfg_provider, profile, TY(BR), .doc = "bedrock: ~/.aws/credentials profile"),
	KEY("access_key_id", CK_STR, struct cfg_provider, access_key_id, TY(BR), .doc = "bedrock: AWS access key id"),
	KEY("secret_access_key", CK_STR, struct cfg_provider, secret_access_key, TY(BR), .doc = "bedrock: AWS secret key"),
	KEY("session_token", CK_STR, struct cfg_provider, session_token, TY(BR), .doc = "bedrock: AWS session token"),
	KEY("project", CK_STR, struct cfg_provider, project, TY(VX), .doc = "vertex: GCP project"),
	KEY("location", CK_STR, struct cfg_provider, location, TY(VX), .doc = "vertex: GCP location"),
	KEY("credentials_file", CK_PATH, struct cfg_provider, credentials_file, TY(VX), .doc = "vertex: service-account JSON"),
	KEY("access_token", CK_STR, struct cfg_provider, access_token, TY(VX), .doc = "vertex: OAuth access token"),
};
static const struct cfg_section provider_section = { "providers[]", provider_keys, UMB_ARRAY_LEN(provider_keys), provider_post };

static const struct cfg_key price_keys[] = {
	KEY("input_per_mtok", CK_DOUBLE, struct cfg_price, input_per_mtok, .def = "0", .min = 0, .max = 1e9,
	    .doc = "USD per million prompt tokens"),
	KEY("output_per_mtok", CK_DOUBLE, struct cfg_price, output_per_mtok, .def = "0", .min = 0, .max = 1e9,
	    .doc = "USD per million completion tokens"),
	KEY("cached_input_per_mtok", CK_DOUBLE, struct cfg_price, cached_input_per_mtok, .def = "0", .min = 0, .max = 1e9,
	    .doc = "USD per million cached prompt tokens; default input_per_mtok"),
};
static const struct cfg_section price_section = { "price", price_keys, UMB_ARRAY_LEN(price_keys), price_post };

static const struct cfg_key model_keys[] = {
	KEY("name", CK_TEXT, struct cfg_model, name, .parse = cfg_parse_model_name, .required = true,
	    .doc = "name clients ask for; may be a glob (*, ?)"),
	KEY("provider", CK_TEXT, struct cfg_model, provider_name, .parse = cfg_parse_model_provider, .required = true,
	    .doc = "name of a provider in providers"),
	KEY("upstream_model", CK_STR, struct cfg_model, upstream_model,
	    .doc = "model name sent upstream; default: the requested name"),
	KEY("api_key", CK_STR, struct cfg_model, api_key, .allow_empty = true,
	    .doc = "overrides the provider's api_key"),
	KEY("headers", CK_CUSTOM, struct cfg_model, headers, .off2 = offsetof(struct cfg_model, n_headers),
	    .custom = cfg_load_headers, .doc = "extra upstream headers for this model"),
	KEY("locality", CK_ENUM, struct cfg_model, locality, .enums = localities,
	    .doc = "onprem | cloud: where the data goes (sensitivity guard)"),
	KEY("price", CK_SECTION, struct cfg_model, price, .sub = &price_section,
	    .doc = "prices in USD per million tokens"),
	KEY("max_output_tokens", CK_INT, struct cfg_model, max_output_tokens, .def = "0", .min = 0, .max = 100000000,
	    .doc = "worst-case output for budget reservations; 0 = unset"),
	KEY("fallbacks", CK_CUSTOM, struct cfg_model, fallbacks, .off2 = offsetof(struct cfg_model, n_fallbacks),
	    .custom = cfg_load_fallbacks, .want = "model names", .want_one = "a model name",
	    .doc = "exact model names tried in order when this one fails"),
};
static const struct cfg_section model_section = {
	"models[]", model_keys, UMB_ARRAY_LEN(model_keys), model_post,
	ITEMS(struct cfg_model, "model", "{ name, provider, ... }", ""),
};

static const struct cfg_key budget_keys[] = {
	KEY("usd", CK_DOUBLE, struct cfg_budget, usd, .required = true, .min = 0, .max = 1e12,
	    .doc = "the cap in USD per period"),
	KEY("period", CK_ENUM, struct cfg_budget, period, .def = "monthly", .enums = budget_periods,
	    .doc = "monthly | weekly | daily, UTC calendar (month 1st, Monday, midnight)"),
	KEY("alert_at", CK_DOUBLE, struct cfg_budget, alert_at, .def = "0.8", .min = 0, .max = 1,
	    .doc = "fraction of the cap that logs a warning once per period; 0 = off"),
};
static const struct cfg_section budget_section = { "budget", budget_keys, UMB_ARRAY_LEN(budget_keys), budget_post };

static const struct cfg_key rate_limit_keys[] = {
	KEY("rpm", CK_INT, struct cfg_rate_limit, rpm, .def = "0", .min = 0, .max = 100000000,
	    .doc = "requests per minute; 0 = no limit"),
	KEY("tpm", CK_INT, struct cfg_rate_limit, tpm, .def = "0", .min = 0, .max = 2000000000,
	    .doc = "tokens (prompt + completion) per minute; 0 = no limit"),
};
static const struct cfg_section rate_limit_section = { "rate_limit", rate_limit_keys, UMB_ARRAY_LEN(rate_limit_keys), rate_limit_post };

static const struct cfg_key budgets_keys[] = {
	KEY("default_max_tokens", CK_INT, struct config, default_max_tokens, .def = "4096", .min = 1, .max = 100000000,
	    .doc = "worst-case output tokens when neither the request nor the model says"),
};
static const struct cfg_section budgets_section = { "budgets", budgets_keys, UMB_ARRAY_LEN(budgets_keys), NULL };

static const struct cfg_key team_keys[] = {
	KEY("name", CK_TEXT, struct cfg_team, name, .parse = cfg_parse_name, .required = true,
	    .doc = "team name: 1-64 letters, digits, '.', '_', '@', '-'; unique"),
	KEY("models", CK_CUSTOM, struct cfg_team, models, .off2 = offsetof(struct cfg_team, n_models),
	    .custom = cfg_load_strings, .parse = cfg_parse_model_name,
	    .want = "model names or globs", .want_one = "a model name or glob",
	    .doc = "globs (*, ?) over the requested model name; none: no model"),
	KEY("routes", CK_CUSTOM, struct cfg_team, routes, .off2 = offsetof(struct cfg_team, n_routes),
	    .custom = cfg_load_strings, .parse = cfg_parse_name,
	    .want = "route names", .want_one = "a route name",
	    .doc = "routes the team may use; absent: any route whose model the team may use"),
	KEY("budget", CK_SECTION, struct cfg_team, budget, .sub = &budget_section,
	    .doc = "hard cap on the team's spend: { usd, period, alert_at }"),
	KEY("rate_limit", CK_SECTION, struct cfg_team, rate_limit, .sub = &rate_limit_section,
	    .doc = "the team's requests and tokens per minute: { rpm, tpm }"),
};
static const struct cfg_section team_section = {
	"teams[]", team_keys, UMB_ARRAY_LEN(team_keys), NULL,
	ITEMS(struct cfg_team, "team", "{ name, models, routes }", ""),
};

static const struct cfg_key identity_keys[] = {
	KEY("name", CK_TEXT, struct cfg_identity, name, .parse = cfg_parse_name, .required = true,
	    .doc = "identity name, as authenticated (key's identity, certificate CN)"),
	KEY("team", CK_TEXT, struct cfg_identity, team, .parse = cfg_parse_identity_team, .required = true,
	    .doc = "name of a team in teams"),
	KEY("budget", CK_SECTION, struct cfg_identity, budget, .sub = &budget_section,
	    .doc = "hard cap on this identity's spend: { usd, period, alert_at }"),
	KEY("rate_limit", CK_SECTION, struct cfg_identity, rate_limit, .sub = &rate_limit_section,
	    .doc = "this identity's requests and tokens per minute: { rpm, tpm }"),
};
static const struct cfg_section identity_section = {
	"identities[]", identity_keys, UMB_ARRAY_LEN(identity_keys), NULL,
	ITEMS(struct cfg_identity, "identity", "{ name, team }", ""),
};

/* tunnel: and connector settings share these ranges. */
#define PING_MS(st, nm, fld, text) \
	KEY(nm, CK_INT, st, fld, .def = "10000", .min = 100, .max = 3600000, .doc = text)

static const struct cfg_key tunnel_keys[] = {
	KEY("listen", CK_TEXT, struct cfg_tunnel, listen_host, .off2 = offsetof(struct cfg_tunnel, listen_port),
	    .parse = cfg_parse_listen, .required = true,
	    .doc = "address connectors dial, host:port or [v6]:port; not the gateway's listen"),
	KEY("cert", CK_PATH, struct cfg_tunnel, cert, .doc = "certificate shown to connectors (PEM); default tls.cert"),
	KEY("key", CK_PATH, struct cfg_tunnel, key, .doc = "its private key (PEM); default tls.key"),
	KEY("ca", CK_PATH, struct cfg_tunnel, ca, .doc = "CA bundle that verifies connectors; default tls.client_ca"),
	PING_MS(struct cfg_tunnel, "ping_interval_ms", ping_interval_ms, "HTTP/2 PING period on each connector connection"),
	PING_MS(struct cfg_tunnel, "ping_timeout_ms", ping_timeout_ms, "no PING ACK within this: the connection is dropped"),
	KEY("max_streams", CK_INT, struct cfg_tunnel, max_streams, .def = "1000", .min = 1, .max = 100000,
	    .doc = "concurrent requests per connector connection"),
};
static const struct cfg_section tunnel_section = { "tunnel", tunnel_keys, UMB_ARRAY_LEN(tunnel_keys), tunnel_post };

static const struct cfg_key service_keys[] = {
	KEY("name", CK_TEXT, struct cfg_service, name, .parse = cfg_parse_name, .required = true,
	    .doc = "service name, as endpoints and connectors give it; unique"),
	KEY("hosts", CK_CUSTOM, struct cfg_service, hosts, .off2 = offsetof(struct cfg_service, n_hosts),
	    .custom = cfg_load_strings, .parse = cfg_parse_name, .min = 1, .unique = true, .required = true,
	    .want = "connector identity names", .want_one = "a connector identity name",
	    .doc = "bind policy: the connector identities that may host the service"),
	KEY("users", CK_CUSTOM, struct cfg_service, users, .off2 = offsetof(struct cfg_service, n_users),
	    .custom = cfg_load_strings, .parse = cfg_parse_user, .unique = true, .required = true,
	    .want = "team or identity names", .want_one = "a team or identity name, or \"*\"",
	    .doc = "dial policy: the teams or identities that may use it, \"*\" for anyone; empty: nobody"),
};
static const struct cfg_section service_section = {
	"services[]", service_keys, UMB_ARRAY_LEN(service_keys), NULL,
	ITEMS(struct cfg_service, "service", "{ name, hosts, users }", ""),
};


static const struct cfg_key rule_match_keys[] = {
	KEY("keywords", CK_CUSTOM, struct cfg_rule, keywords, .off2 = offsetof(struct cfg_rule, n_keywords),
	    .custom = cfg_load_strings, .want = "keywords", .want_one = "a keyword",
	    .doc = "any of these words or phrases, case-insensitive, whole words (c++ works)"),
	KEY("exclude", CK_CUSTOM, struct cfg_rule, exclude, .off2 = offsetof(struct cfg_rule, n_exclude),
	    .custom = cfg_load_strings, .want = "keywords", .want_one = "a keyword",
	    .doc = "none of these words or phrases (matched like keywords)"),
	KEY("regex", CK_CUSTOM, struct cfg_rule, regex, .off2 = offsetof(struct cfg_rule, n_regex),
	    .custom = cfg_load_strings, .want = "PCRE2 patterns", .want_one = "a PCRE2 pattern",
	    .doc = "any of these PCRE2 patterns matches (case-sensitive unless (?i))"),
	KEY("system_prompt_contains", CK_CUSTOM, struct cfg_rule, system_prompt_contains,
	    .off2 = offsetof(struct cfg_rule, n_system_prompt_contains),
	    .custom = cfg_load_strings, .want = "strings", .want_one = "a string",
	    .doc = "the system prompt contains any of these (case-insensitive)"),
	KEY("has_tools", CK_ENUM, struct cfg_rule, has_tools, .enums = tristates,
	    .doc = "true: the request carries tools; false: it does not"),
	KEY("max_tokens_lt", CK_INT, struct cfg_rule, max_tokens_lt, .def = "0", .min = 0, .max = 1e9,
	    .doc = "max_tokens is given and below this"),
	KEY("message_length_lt", CK_INT, struct cfg_rule, message_length_lt, .def = "0", .min = 0, .max = 1e9,
	    .doc = "the last user message has fewer characters than this"),
	KEY("detectors", CK_CUSTOM, struct cfg_rule, detectors, .off2 = offsetof(struct cfg_rule, n_detectors),
	    .custom = cfg_load_strings, .unique = true, .want = "detector names", .want_one = "a detector name",
	    .doc = "any of these detectors finds something"),
	KEY("scope", CK_ENUM, struct cfg_rule, scope, .def = "conversation", .enums = rule_scopes,
	    .doc = "conversation | last_user: the text keywords, exclude and regex look at"),
};
static const struct cfg_section rule_match_section = {
	"match", rule_match_keys, UMB_ARRAY_LEN(rule_match_keys), NULL,
};

static const struct cfg_key rule_keys[] = {
	KEY("name", CK_TEXT, struct cfg_rule, name, .parse = cfg_parse_name,
	    .doc = "shown in traces; default rule-N"),
	{ .name = "match", .kind = CK_SECTION, .off = 0, .sub = &rule_match_section, .required = true,
	  .doc = "conditions, all of which must hold" },
	KEY("route", CK_TEXT, struct cfg_rule, route, .parse = cfg_parse_name, .required = true,
	    .doc = "the route chosen when the rule matches"),
};
static const struct cfg_section rule_section = {
	"rules[]", rule_keys, UMB_ARRAY_LEN(rule_keys), rule_post,
	ITEMS(struct cfg_rule, "rule", "{ match: {...}, route }", ""),
};

static const struct cfg_key heuristics_keys[] = {
	KEY("enabled", CK_BOOL, struct cfg_routing, heuristics_enabled, .def = "true",
	    .doc = "false switches the layer off"),
	KEY("rules", CK_CUSTOM, struct cfg_routing, rules, .off2 = offsetof(struct cfg_routing, n_rules),
	    .custom = cfg_load_list, .sub = &rule_section, .want = "rules",
	    .doc = "tried in order; the first whose conditions all hold picks the route"),
};
static const struct cfg_section heuristics_section = {
	"heuristics", heuristics_keys, UMB_ARRAY_LEN(heuristics_keys), NULL,
};

#define CACHE_KEYS(st) \
	KEY("cache_size", CK_INT, st, cache_size, .def = "10000", .min = 0, .max = 10000000, \
	    .doc = "cached answers (LRU); 0 = no cache"), \
	KEY("cache_ttl_s", CK_INT, st, cache_ttl_s, .def = "3600", .min = 1, .max = 31536000, \
	    .doc = "how long a cached answer stays valid")

static const struct cfg_key semantic_keys[] = {
	KEY("enabled", CK_BOOL, struct cfg_semantic, enabled, .def = "true", .doc = "false switches the layer off"),
	KEY("embedder", CK_STR, struct cfg_semantic, embedder,
	    .doc = "builtin (in-process, default); exclusive with provider"),
	KEY("provider", CK_TEXT, struct cfg_semantic, provider, .parse = cfg_parse_ident,
	    .doc = "a provider with an OpenAI-compatible /v1/embeddings (dark services too)"),
	KEY("model", CK_STR, struct cfg_semantic, model, .doc = "the provider's embedding model"),
	KEY("comparison", CK_ENUM, struct cfg_semantic, comparison, .def = "centroid", .enums = sem_comparisons,
	    .doc = "centroid | max | average over each route's examples"),
	KEY("threshold", CK_DOUBLE, struct cfg_semantic, threshold, .def = "0.75", .min = -1, .max = 1,
	    .doc = "similarity at or above which the best route is taken (builtin: default 0.25)"),
	KEY("ambiguous_threshold", CK_DOUBLE, struct cfg_semantic, ambiguous_threshold, .def = "0.5",
	    .min = -1, .max = 1, .doc = "between this and threshold the classifier decides; below: the default route (builtin: default 0.1)"),
	KEY("timeout_ms", CK_INT, struct cfg_semantic, timeout_ms, .def = "2000", .min = 1, .max = 600000,
	    .doc = "provider embedder: give up after this (the cascade goes on)"),
	CACHE_KEYS(struct cfg_semantic),
};
static const struct cfg_section semantic_section = {
	"semantic", semantic_keys, UMB_ARRAY_LEN(semantic_keys), semantic_post,
};

static const struct cfg_key classifier_keys[] = {
	KEY("enabled", CK_BOOL, struct cfg_classifier, enabled, .def = "true", .doc = "false switches the layer off"),
	KEY("model", CK_STR, struct cfg_classifier, model, .doc = "a model in models: asked to name the route"),
	KEY("timeout_ms", CK_INT, struct cfg_classifier, timeout_ms, .def = "2000", .min = 1, .max = 600000,
	    .doc = "give up after this (the default route is used)"),
	KEY("confidence_threshold", CK_DOUBLE, struct cfg_classifier, confidence_threshold, .def = "0.6",
	    .min = 0, .max = 1, .doc = "answers below this confidence are ignored"),
	CACHE_KEYS(struct cfg_classifier),
};
static const struct cfg_section classifier_section = {
	"classifier", classifier_keys, UMB_ARRAY_LEN(classifier_keys), classifier_post,
};

static const struct cfg_key sensitive_keys[] = {
	KEY("enabled", CK_BOOL, struct cfg_sensitive, enabled, .def = "true", .doc = "false switches the guard off"),
	KEY("detectors", CK_CUSTOM, struct cfg_sensitive, detectors, .off2 = offsetof(struct cfg_sensitive, n_detectors),
	    .custom = cfg_load_strings, .unique = true, .want = "detector names", .want_one = "a detector name",
	    .doc = "built-in or custom detectors; default every built-in one"),
	KEY("action", CK_ENUM, struct cfg_sensitive, action, .def = "reroute", .enums = sensitive_actions,
	    .doc = "reroute (to route) | block (403 naming the detector)"),
	KEY("route", CK_TEXT, struct cfg_sensitive, route, .parse = cfg_parse_name,
	    .doc = "reroute target; its model must be locality: onprem"),
};
static const struct cfg_section sensitive_section = {
	"sensitive", sensitive_keys, UMB_ARRAY_LEN(sensitive_keys), sensitive_post,
};

static const struct cfg_key detector_keys[] = {
	KEY("name", CK_TEXT, struct cfg_detector, name, .parse = cfg_parse_name, .required = true,
	    .doc = "detector name, not a built-in one; unique"),
	KEY("regex", CK_STR, struct cfg_detector, regex, .required = true,
	    .doc = "PCRE2 pattern; distinct matched strings are counted"),
};
static const struct cfg_section detector_section = {
	"detectors[]", detector_keys, UMB_ARRAY_LEN(detector_keys), detector_post,
	ITEMS(struct cfg_detector, "detector", "{ name, regex }", ""),
};

static const struct cfg_key route_keys[] = {
	KEY("name", CK_TEXT, struct cfg_route, name, .parse = cfg_parse_name, .required = true,
	    .doc = "route name (x-umbra-route); unique"),
	KEY("model", CK_STR, struct cfg_route, model, .required = true, .doc = "exact name of a model in models:"),
	KEY("description", CK_STR, struct cfg_route, description, .doc = "what belongs here (the classifier reads it)"),
	KEY("examples", CK_CUSTOM, struct cfg_route, examples, .off2 = offsetof(struct cfg_route, n_examples),
	    .custom = cfg_load_prompts, .want = "example prompts", .want_one = "an example prompt",
	    .doc = "prompts that belong here (the semantic layer compares with them)"),
};
static const struct cfg_section route_section = {
	"routes[]", route_keys, UMB_ARRAY_LEN(route_keys), NULL,
	ITEMS(struct cfg_route, "route", "{ name, model, description, examples }", ""),
};

static const struct cfg_key routing_keys[] = {
	KEY("default_route", CK_TEXT, struct cfg_routing, default_route, .parse = cfg_parse_name, .required = true,
	    .doc = "the route when no layer decides"),
	{ .name = "heuristics", .kind = CK_SECTION, .off = 0, .sub = &heuristics_section,
	  .doc = "rules over keywords, regexes, detectors and request facts" },
	KEY("semantic", CK_SECTION, struct cfg_routing, semantic, .sub = &semantic_section,
	    .doc = "embedding similarity to route examples"),
	KEY("classifier", CK_SECTION, struct cfg_routing, classifier, .sub = &classifier_section,
	    .doc = "a chat model names the route when the semantic layer is unsure"),
	KEY("sensitive", CK_SECTION, struct cfg_routing, sensitive, .sub = &sensitive_section,
	    .doc = "the guard: personal data stays on-prem (every request)"),
	KEY("detectors", CK_CUSTOM, struct cfg_routing, detectors, .off2 = offsetof(struct cfg_routing, n_detectors),
	    .custom = cfg_load_list, .sub = &detector_section, .want = "detectors",
	    .doc = "custom detectors: { name, regex }"),
	KEY("routes", CK_CUSTOM, struct cfg_routing, routes, .off2 = offsetof(struct cfg_routing, n_routes),
	    .custom = cfg_load_list, .sub = &route_section, .want = "routes", .required = true,
	    .doc = "the routes: { name, model, description, examples }"),
};
static const struct cfg_section routing_section = {
	"routing", routing_keys, UMB_ARRAY_LEN(routing_keys), routing_post,
};

static const struct cfg_key audit_keys[] = {
	KEY("path", CK_PATH, struct cfg_audit, path, .required = true,
	    .doc = "the log file (JSON lines); rotated files get .1, .2, ..."),
	KEY("key", CK_PATH, struct cfg_audit, key,
	    .doc = "Ed25519 private key (PEM, `umbra audit keygen`) that signs checkpoints"),
	KEY("checkpoint_every", CK_INT, struct cfg_audit, checkpoint_every, .def = "1000", .min = 0, .max = 100000000,
	    .doc = "a signed checkpoint after this many lines; 0 = off"),
	KEY("checkpoint_interval_s", CK_INT, struct cfg_audit, checkpoint_interval_s, .def = "60", .min = 0, .max = 86400,
	    .doc = "and at least this often while records arrive; 0 = off"),
	KEY("max_bytes", CK_U64, struct cfg_audit, max_bytes, .def = "104857600", .min = 0, .max = 1099511627776.0,
	    .doc = "rotate when the file would grow past this; 0 = never"),
	KEY("keep", CK_INT, struct cfg_audit, keep, .def = "10", .min = 1, .max = 100000,
	    .doc = "rotated files kept"),
	KEY("fsync", CK_ENUM, struct cfg_audit, fsync, .def = "interval", .enums = audit_fsyncs,
	    .doc = "interval | always (every record) | never (the kernel decides)"),
	KEY("fsync_interval_ms", CK_INT, struct cfg_audit, fsync_interval_ms, .def = "1000", .min = 1, .max = 3600000,
	    .doc = "fsync: interval period"),
	KEY("payload_hash", CK_BOOL, struct cfg_audit, payload_hash, .def = "false",
	    .doc = "add the SHA-256 of each request body (never the body itself)"),
};
static const struct cfg_section audit_section = { "audit", audit_keys, UMB_ARRAY_LEN(audit_keys), audit_post };

static const struct cfg_key config_keys[] = {
	KEY("listen", CK_TEXT, struct config, listen_host, .off2 = offsetof(struct config, listen_port),
	    .def = "127.0.0.1:8080", .parse = cfg_parse_listen,
	    .doc = "address the gateway listens on, host:port or [v6]:port"),
	KEY("workers", CK_INT, struct config, workers, .def = "0", .min = 0, .max = 1024,
	    .doc = "worker threads; 0 = number of CPUs"),
	KEY("tls", CK_SECTION, struct config, tls, .sub = &tls_section, .doc = "TLS and client certificates"),
	KEY("limits", CK_SECTION, struct config, limits, .sub = &limits_section, .doc = "request limits and timeouts"),
	{ .name = "log", .kind = CK_SECTION, .off = 0, .sub = &log_section, .doc = "logging" },
	{ .name = "auth", .kind = CK_SECTION, .off = 0, .sub = &auth_section, .doc = "caller authentication" },
	{ .name = "metrics", .kind = CK_SECTION, .off = 0, .sub = &metrics_section, .doc = "Prometheus /metrics" },
	KEY("providers", CK_CUSTOM, struct config, providers, .custom = cfg_load_providers, .required = true,
	    .doc = "model backends"),
	KEY("models", CK_CUSTOM, struct config, models, .custom = cfg_later, .required = true,
	    .doc = "the model names clients use"),
	KEY("tunnel", CK_SECTION, struct config, tunnel, .sub = &tunnel_section,
	    .doc = "where connectors dial in; present: the tunnel is on"),
	KEY("store", CK_STR, struct config, store_url, .def = "sqlite://umbra.db",
	    .doc = "the store (identities, keys, usage, quotas): sqlite://PATH (relative to the config file), sqlite:///ABS or postgres://USER@HOST[:PORT]/DB"),
	KEY("audit", CK_SECTION, struct config, audit, .sub = &audit_section,
	    .doc = "the tamper-evident request log; present: on"),
	UNIMPL("crypto", "crypto mode"),
	UNIMPL("airgapped", "refuse endpoints outside the perimeter"),
	KEY("routing", CK_CUSTOM, struct config, routing, .custom = cfg_later,
	    .doc = "automatic routing (model omitted or \"auto\") and the sensitivity guard"),
	KEY("teams", CK_CUSTOM, struct config, teams, .off2 = offsetof(struct config, n_teams),
	    .custom = cfg_load_list, .sub = &team_section, .want = "teams",
	    .doc = "who may use which models; present: model policy is on"),
	/* loaded by config_post with cfg_load_list, after teams */
	KEY("identities", CK_CUSTOM, struct config, identities, .off2 = offsetof(struct config, n_identities),
	    .custom = cfg_later, .sub = &identity_section, .want = "identities",
	    .doc = "identity name to team, over the store and the certificate's OU"),
	KEY("services", CK_CUSTOM, struct config, services, .off2 = offsetof(struct config, n_services),
	    .custom = cfg_load_list, .sub = &service_section, .want = "services",
	    .doc = "dark services reached through connectors; needs tunnel"),
	{ .name = "budgets", .kind = CK_SECTION, .off = 0, .sub = &budgets_section,
	  .doc = "defaults for budget reservations" },
};
static const struct cfg_section config_section = { "", config_keys, UMB_ARRAY_LEN(config_keys), config_post };

/* The connector's config (umbra connect -c FILE). */

static const struct cfg_key conn_identity_keys[] = {
	KEY("cert", CK_PATH, struct connector_config, cert, .required = true,
	    .doc = "this connector's certificate (PEM, kind connector)"),
	KEY("key", CK_PATH, struct connector_config, key, .required = true, .doc = "its private key (PEM)"),
	KEY("ca", CK_PATH, struct connector_config, ca, .required = true,
	    .doc = "CA bundle that verifies the gateways' certificates"),
};
static const struct cfg_section conn_identity_section = {
	"identity", conn_identity_keys, UMB_ARRAY_LEN(conn_identity_keys), NULL,
};

static const struct cfg_key conn_service_keys[] = {
	KEY("name", CK_TEXT, struct conn_service, name, .parse = cfg_parse_name, .required = true,
	    .doc = "service name, as the gateway's services list it; unique"),
	KEY("upstream", CK_TEXT, struct conn_service, upstream, .parse = cfg_parse_conn_upstream, .required = true,
	    .doc = "local server: http://host[:port][/prefix] or unix:///path.sock"),
};
static const struct cfg_section conn_service_section = {
	"services[]", conn_service_keys, UMB_ARRAY_LEN(conn_service_keys), NULL,
	ITEMS(struct conn_service, "service", "{ name, upstream }", ""),
};

static const struct cfg_key conn_log_keys[] = {
	KEY("level", CK_ENUM, struct connector_config, log_level, .def = "info", .enums = log_levels,
	    .doc = "debug | info | warn | error"),
};
static const struct cfg_section conn_log_section = { "log", conn_log_keys, UMB_ARRAY_LEN(conn_log_keys), NULL };

#define CONN_MS(nm, fld, d, lo, hi, text) \
	KEY(nm, CK_INT, struct connector_config, fld, .def = d, .min = lo, .max = hi, .doc = text)
static const struct cfg_key connector_keys[] = {
	{ .name = "identity", .kind = CK_SECTION, .off = 0, .sub = &conn_identity_section, .required = true,
	  .doc = "certificate, key and CA: { cert, key, ca }" },
	KEY("gateways", CK_CUSTOM, struct connector_config, gateways, .off2 = offsetof(struct connector_config, n_gateways),
	    .custom = cfg_load_strings, .parse = cfg_parse_gateway, .min = 1, .max = 64, .unique = true, .required = true,
	    .want = "gateway addresses", .want_one = "a gateway address (host:port)",
	    .doc = "gateways to dial, host:port or [v6]:port; one connection each"),
	KEY("services", CK_CUSTOM, struct connector_config, services, .off2 = offsetof(struct connector_config, n_services),
	    .custom = cfg_load_list, .sub = &conn_service_section, .min = 1, .required = true, .want = "services",
	    .doc = "the services this connector offers: { name, upstream }"),
	PING_MS(struct connector_config, "ping_interval_ms", ping_interval_ms, "HTTP/2 PING period on each gateway connection"),
	PING_MS(struct connector_config, "ping_timeout_ms", ping_timeout_ms, "no PING ACK within this: reconnect"),
	CONN_MS("reconnect_base_ms", reconnect_base_ms, "250", 1, 3600000, "first reconnect backoff, doubled on each failure"),
	CONN_MS("reconnect_max_ms", reconnect_max_ms, "30000", 1, 3600000, "backoff cap, at least reconnect_base_ms"),
	CONN_MS("drain_timeout_ms", drain_timeout_ms, "30000", 0, 86400000, "grace for in-flight streams on SIGTERM"),
	CONN_MS("connect_timeout_ms", connect_timeout_ms, "5000", 1, 86400000, "connect timeout to a gateway or a local upstream"),
	{ .name = "log", .kind = CK_SECTION, .off = 0, .sub = &conn_log_section, .doc = "logging" },
};
static const struct cfg_section connector_section = {
	"", connector_keys, UMB_ARRAY_LEN(connector_keys), connector_post,
};

/* ---- entry points ---- */

static int cfg_syntax_err(struct cfg_ctx *c, yaml_parser_t *p)
{
	return cfg_err_raw(c, (int)p->problem_mark.line + 1,
			   "YAML syntax error: %s%s%s",
			   p->problem ? p->problem : "malformed document",
			   p->context ? " " : "", p->context ? p->context : "");
}

/* Walk the events once before building the document, refusing deep
 * nesting: libyaml's scanner slows down quadratically with nesting depth
 * ("[[[[..." of a few hundred KB takes minutes), and no real config nests
 * more than a handful of levels. */
static int cfg_precheck(struct cfg_ctx *c, const char *yaml, size_t len)
{
	yaml_parser_t p;
	yaml_event_t ev;
	int depth = 0, rc = UMB_OK;

	if (!yaml_parser_initialize(&p))
		return cfg_err_raw(c, 1, "out of memory");
	yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);
	for (;;) {
		if (!yaml_parser_parse(&p, &ev)) {
			rc = cfg_syntax_err(c, &p);
			break;
		}
		yaml_event_type_t t = ev.type;
		int line = (int)ev.start_mark.line + 1;
		yaml_event_delete(&ev);
		if (t == YAML_STREAM_END_EVENT)
			break;
		if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) {
			if (++depth > CFG_MAX_DEPTH) {
				rc = cfg_err_raw(c, line,
						 "nesting deeper than %d levels, expected a flatter document",
						 CFG_MAX_DEPTH);
				break;
			}
		} else if (t == YAML_MAPPING_END_EVENT || t == YAML_SEQUENCE_END_EVENT) {
			depth--;
		}
	}
	yaml_parser_delete(&p);
	return rc;
}

/* An absolute form of dir (NULL: the working directory), in the arena. */
static char *cfg_abs_dir(struct arena *a, const char *dir)
{
	char cwd[PATH_MAX];
	if (dir && dir[0] == '/')
		return arena_strndup(a, dir, strlen(dir));
	if (!getcwd(cwd, sizeof(cwd)))
		strcpy(cwd, "/");
	if (!dir || !*dir || !strcmp(dir, "."))
		return arena_strndup(a, cwd, strlen(cwd));
	return arena_printf(a, "%s/%s", strcmp(cwd, "/") ? cwd : "", dir);
}

/** What a document loads into: the gateway's struct config or the
 * connector's struct connector_config, each owning its arena and keeping
 * its file name and directory at these offsets. */
struct cfg_root {
	const struct cfg_section *sec;
	size_t size, arena_off, path_off, dir_off;
	bool gateway;       /* the struct is a struct config (cfg_ctx.cfg) */
	const char *needs;  /* "providers: and models:" */
	const char *top;    /* "listen:, providers:, models: ..." */
};

#define ROOT(st) .size = sizeof(st), .arena_off = offsetof(st, arena), \
	.path_off = offsetof(st, path), .dir_off = offsetof(st, dir)

static const struct cfg_root gateway_root = {
	&config_section, ROOT(struct config), true,
	"providers: and models:", "listen:, providers:, models: ...",
};
static const struct cfg_root connector_root = {
	&connector_section, ROOT(struct connector_config), false,
	"identity:, gateways: and services:", "identity:, gateways:, services: ...",
};

/* Load one YAML document of len bytes as r says: the depth pre-check, one
 * document with a mapping at the top, ${ENV} in values, r->sec's tables.
 * Returns the new struct (it and everything it points to live in its
 * arena), or NULL with err filled. name is used in messages; relative
 * paths resolve against dir (NULL: the working directory). */
static void *cfg_load_root(const struct cfg_root *r, const char *yaml,
			   size_t len, const char *name, const char *dir,
			   struct config_err *err)
{
	struct config_err scratch;
	struct arena *a = arena_new(0);
	char *base = arena_alloc(a, r->size);
	struct cfg_ctx c = { 0 };
	yaml_parser_t parser;
	yaml_document_t doc;
	bool have_doc = false;
	int rc = UMB_ERR;

	if (!err)
		err = &scratch;
	err->msg[0] = 0;
	if (!name)
		name = "<string>";
	*(struct arena **)(base + r->arena_off) = a;
	c.name = *(char **)(base + r->path_off) = arena_strndup(a, name, strlen(name));
	c.dir = *(char **)(base + r->dir_off) = cfg_abs_dir(a, dir);
	c.cfg = r->gateway ? (struct config *)base : NULL;
	c.a = a;
	c.err = err;
	c.doc = &doc;

	if (cfg_precheck(&c, yaml, len))
		goto out_arena;
	if (!yaml_parser_initialize(&parser)) {
		snprintf(err->msg, sizeof(err->msg), "%s: out of memory", c.name);
		goto out_arena;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	if (!yaml_parser_load(&parser, &doc)) {
		cfg_syntax_err(&c, &parser);
		goto out;
	}
	have_doc = true;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (!root) {
		cfg_err_raw(&c, 1,
			    "empty configuration, expected a mapping with at least %s",
			    r->needs);
		goto out;
	}
	{
		/* A second document would be silently ignored: refuse it. */
		yaml_document_t extra;
		if (!yaml_parser_load(&parser, &extra)) {
			cfg_syntax_err(&c, &parser);
			goto out;
		}
		bool more = yaml_document_get_root_node(&extra) != NULL;
		int line = more ? NODE_LINE(yaml_document_get_root_node(&extra)) : 0;
		yaml_document_delete(&extra);
		if (more) {
			cfg_err_raw(&c, line,
				    "a second YAML document (---), expected exactly one");
			goto out;
		}
	}
	if (root->type != YAML_MAPPING_NODE) {
		cfg_err_raw(&c, NODE_LINE(root),
			    "expected a mapping at the top level (%s), got a %s",
			    r->top, cfg_node_kind(root));
		goto out;
	}
	rc = cfg_load_section(&c, root, r->sec, base);
out:
	if (have_doc)
		yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (rc == UMB_OK)
		return base;
out_arena:
	arena_free(a);
	return NULL;
}

/* Read the file at path (at most CFG_MAX_FILE bytes) and load it with
 * cfg_load_root, relative paths resolving against the file's directory. */
static void *cfg_load_root_file(const struct cfg_root *r, const char *path,
				struct config_err *err)
{
	struct config_err scratch;
	struct buf b;
	void *base = NULL;
	FILE *f;
	char chunk[16384];
	size_t n;

	if (!err)
		err = &scratch;
	buf_init(&b, CFG_MAX_FILE);
	f = fopen(path, "rb");
	if (!f) {
		snprintf(err->msg, sizeof(err->msg), "%s: cannot open: %s", path,
			 strerror(errno));
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (buf_append(&b, chunk, n)) {
			snprintf(err->msg, sizeof(err->msg),
				 "%s: file larger than %d bytes", path, CFG_MAX_FILE);
			goto out;
		}
	}
	if (ferror(f)) {
		snprintf(err->msg, sizeof(err->msg), "%s: cannot read: %s", path,
			 strerror(errno));
		goto out;
	}
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	char real[PATH_MAX];
	const char *d = realpath(dir, real) ? real : dir;
	base = cfg_load_root(r, b.p ? b.p : "", b.n, path, d, err);
out:
	fclose(f);
	buf_clear(&b);
	return base;
}

struct config *config_load_string(const char *yaml, size_t len,
				  const char *name, const char *dir,
				  struct config_err *err)
{
	return cfg_load_root(&gateway_root, yaml, len, name, dir, err);
}

struct config *config_load_file(const char *path, struct config_err *err)
{
	return cfg_load_root_file(&gateway_root, path, err);
}

struct connector_config *connector_config_load_string(const char *yaml, size_t len,
						      const char *name, const char *dir,
						      struct config_err *err)
{
	return cfg_load_root(&connector_root, yaml, len, name, dir, err);
}

struct connector_config *connector_config_load_file(const char *path,
						    struct config_err *err)
{
	return cfg_load_root_file(&connector_root, path, err);
}

void connector_config_free(struct connector_config *cc)
{
	if (cc)
		arena_free(cc->arena); /* cc itself lives in the arena */
}

struct config *config_load_default(struct config_err *err)
{
	return config_load_string(config_default_yaml, strlen(config_default_yaml),
				  "<embedded>", NULL, err);
}

void config_free(struct config *cfg)
{
	if (cfg)
		arena_free(cfg->arena); /* cfg itself lives in the arena */
}

const struct cfg_model *config_find_model(const struct config *cfg,
					  struct str name)
{
	for (size_t i = 0; i < cfg->n_models; i++)
		if (!cfg->models[i].is_glob && str_eq_cstr(name, cfg->models[i].name))
			return &cfg->models[i];
	for (size_t i = 0; i < cfg->n_models; i++)
		if (cfg->models[i].is_glob && str_glob(cfg->models[i].name, name))
			return &cfg->models[i];
	return NULL;
}

const struct cfg_service *config_find_service(const struct config *cfg,
					      struct str name)
{
	return cfg_find_item(cfg->services, cfg->n_services, &service_section,
			     name);
}

const struct cfg_team *config_find_team(const struct config *cfg,
					struct str name)
{
	return cfg_find_item(cfg->teams, cfg->n_teams, &team_section, name);
}

const struct cfg_identity *config_find_identity(const struct config *cfg,
						struct str name)
{
	return cfg_find_item(cfg->identities, cfg->n_identities,
			     &identity_section, name);
}

/* No team (t NULL) admits nothing: the policy fails closed. */
bool config_team_allows(const struct cfg_team *t, struct str model)
{
	for (size_t i = 0; t && i < t->n_models; i++)
		if (str_glob(t->models[i], model))
			return true;
	return false;
}

const struct cfg_provider *config_find_provider(const struct config *cfg,
						const char *name)
{
	for (size_t i = 0; i < cfg->n_providers; i++)
		if (!strcmp(cfg->providers[i].name, name))
			return &cfg->providers[i];
	return NULL;
}

/* ---- umbra check table ---- */

static const char *cfg_locality_name(enum locality l)
{
	return l == LOCALITY_ONPREM ? "onprem" : l == LOCALITY_CLOUD ? "cloud" : "-";
}

void config_print_table(const struct config *cfg, FILE *out)
{
	enum { C_MODEL, C_PROV, C_UP, C_LOC, C_FB, C_EP, NCOL };
	static const char *const head[NCOL] = { "MODEL", "PROVIDER", "UPSTREAM MODEL",
						"LOCALITY", "FALLBACKS", "ENDPOINTS" };
	struct arena *a = arena_new(0);
	size_t rows = cfg->n_models;
	char **cell = arena_alloc(a, sizeof(char *) * NCOL * (rows ? rows : 1));
	size_t w[NCOL];

	for (int k = 0; k < NCOL; k++)
		w[k] = strlen(head[k]);
	for (size_t i = 0; i < rows; i++) {
		const struct cfg_model *m = &cfg->models[i];
		const struct cfg_provider *p = m->provider;
		char **r = &cell[i * NCOL];
		struct buf b;
		r[C_MODEL] = m->name;
		r[C_PROV] = arena_printf(a, "%s (%s)", p->name, provider_type_name(p->type));
		r[C_UP] = m->upstream_model ? m->upstream_model : "(as requested)";
		r[C_LOC] = (char *)cfg_locality_name(m->locality);
		buf_init(&b, 0);
		for (size_t f = 0; f < m->n_fallbacks; f++)
			buf_printf(&b, "%s%s", f ? "," : "", m->fallbacks[f]);
		r[C_FB] = b.n ? arena_strndup(a, b.p, b.n) : "-";
		buf_reset(&b);
		for (size_t e = 0; e < p->n_endpoints; e++) {
			const struct cfg_endpoint *ep = &p->endpoints[e];
			buf_printf(&b, "%s%s=%s%s (weight %d%s)", e ? ", " : "",
				   ep->name, ep->service ? "service:" : "",
				   ep->service ? ep->service : ep->url, ep->weight,
				   ep->backup ? ", backup" : "");
		}
		r[C_EP] = arena_strndup(a, b.p ? b.p : "", b.n);
		buf_clear(&b);
		for (int k = 0; k < NCOL - 1; k++)
			w[k] = UMB_MAX(w[k], strlen(r[k]));
	}
	fprintf(out, "listen %s:%d%s, workers %s, auth %s\n", cfg->listen_host,
		cfg->listen_port, cfg->tls.enabled ? " (tls)" : "",
		cfg->workers ? arena_printf(a, "%d", cfg->workers) : "auto",
		auth_modes[cfg->auth_mode].name);
	for (int k = 0; k < NCOL - 1; k++)
		fprintf(out, "%-*s  ", (int)w[k], head[k]);
	fprintf(out, "%s\n", head[NCOL - 1]);
	for (size_t i = 0; i < rows; i++)
		for (int k = 0; k < NCOL; k++) {
			if (k == NCOL - 1)
				fprintf(out, "%s\n", cell[i * NCOL + k]);
			else
				fprintf(out, "%-*s  ", (int)w[k], cell[i * NCOL + k]);
		}
	for (size_t i = 0; i < cfg->n_providers; i++) {
		const struct cfg_provider *p = &cfg->providers[i];
		fprintf(out, "provider %s (%s): ", p->name, provider_type_name(p->type));
		if (p->health.enabled)
			fprintf(out, "health_check GET %s every %ds (timeout %ds, down after %d, up after %d)",
				p->health.path, p->health.interval_s, p->health.timeout_s,
				p->health.unhealthy_after, p->health.healthy_after);
		else
			fprintf(out, "health_check off (passive only)");
		fprintf(out, "; timeouts connect %dms, first byte %dms, idle %dms; max_attempts %d; eject after %d failures for %d..%dms\n",
			p->timeouts.connect_ms, p->timeouts.first_byte_ms,
			p->timeouts.idle_ms, p->max_attempts,
			p->ejection.consecutive_failures, p->ejection.base_ms,
			p->ejection.max_ms);
	}
	if (cfg->tunnel.enabled)
		fprintf(out, "tunnel %s%s%s:%d: max_streams %d, ping every %dms (timeout %dms)\n",
			strchr(cfg->tunnel.listen_host, ':') ? "[" : "",
			cfg->tunnel.listen_host,
			strchr(cfg->tunnel.listen_host, ':') ? "]" : "",
			cfg->tunnel.listen_port, cfg->tunnel.max_streams,
			cfg->tunnel.ping_interval_ms, cfg->tunnel.ping_timeout_ms);
	for (size_t i = 0; i < cfg->n_services; i++) {
		const struct cfg_service *sv = &cfg->services[i];
		fprintf(out, "service %s: hosts ", sv->name);
		for (size_t j = 0; j < sv->n_hosts; j++)
			fprintf(out, "%s%s", j ? ", " : "", sv->hosts[j]);
		fprintf(out, "; users ");
		for (size_t j = 0; j < sv->n_users; j++)
			fprintf(out, "%s%s", j ? ", " : "", sv->users[j]);
		fprintf(out, "%s\n", sv->n_users ? "" : "(nobody)");
	}
	arena_free(a);
}
