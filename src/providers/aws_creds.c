/* aws_creds.c — the AWS credentials chain (aws_creds.h has the order). */
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "providers/aws_creds.h"

#define CREDS_FILE_MAX (1u << 20)  /* a credentials file is a few lines */
#define CREDS_CACHE_SLOTS 16       /* distinct (file, profile) pairs kept */
#define CREDS_RECHECK_NS 1000000000ull

/* ---- parsing the INI text ---- */

static struct str line_next(struct str *rest)
{
	const char *nl = memchr(rest->p, '\n', rest->n);
	size_t n = nl ? (size_t)(nl - rest->p) : rest->n;
	struct str line = str_make(rest->p, n);
	rest->p += nl ? n + 1 : n;
	rest->n -= nl ? n + 1 : n;
	if (line.n && line.p[line.n - 1] == '\r')
		line.n--;
	return str_trim(line);
}

int aws_creds_parse(struct str text, struct str profile, struct aws_creds *out)
{
	bool in = false, found = false;
	*out = (struct aws_creds){ 0 };
	/* a UTF-8 BOM would make the first section name wrong */
	if (text.n >= 3 && !memcmp(text.p, "\xef\xbb\xbf", 3))
		text = str_make(text.p + 3, text.n - 3);
	while (text.n) {
		struct str l = line_next(&text);
		if (l.n == 0 || l.p[0] == '#' || l.p[0] == ';')
			continue;
		if (l.p[0] == '[') {
			const char *close = memchr(l.p, ']', l.n);
			in = close && str_eq(str_trim(str_make(l.p + 1, (size_t)(close - l.p - 1))),
					     profile);
			found |= in;
			continue;
		}
		const char *eq = memchr(l.p, '=', l.n);
		if (!in || !eq)
			continue;
		struct str k = str_trim(str_make(l.p, (size_t)(eq - l.p)));
		struct str v = str_trim(str_make(eq + 1, (size_t)(l.p + l.n - eq - 1)));
		/* option names are case-insensitive, as in the AWS CLI's parser */
		if (str_ieq(k, STR("aws_access_key_id")))
			out->access_key_id = v;
		else if (str_ieq(k, STR("aws_secret_access_key")))
			out->secret_access_key = v;
		else if (str_ieq(k, STR("aws_session_token")) ||
			 (str_ieq(k, STR("aws_security_token")) && out->session_token.n == 0))
			out->session_token = v;
	}
	return found ? UMB_OK : UMB_ERR;
}

/* ---- the file cache ---- */

enum slot_state { SLOT_OK, SLOT_NO_FILE, SLOT_NO_PROFILE, SLOT_TOO_BIG };

struct slot {
	char *path, *profile;       /* the key; NULL: free slot */
	enum slot_state state;
	int err;                    /* errno when the file could not be read */
	char *akid, *secret, *token;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	uint64_t checked_ns, used_ns;
};

static struct slot creds_slots[CREDS_CACHE_SLOTS];
static pthread_mutex_t creds_lock = PTHREAD_MUTEX_INITIALIZER;

static void slot_values_free(struct slot *s)
{
	free(s->akid);
	free(s->secret);
	free(s->token);
	s->akid = s->secret = s->token = NULL;
}

static void slot_free(struct slot *s)
{
	slot_values_free(s);
	free(s->path);
	free(s->profile);
	memset(s, 0, sizeof *s);
}

void aws_creds_cache_clear(void)
{
	pthread_mutex_lock(&creds_lock);
	for (size_t i = 0; i < CREDS_CACHE_SLOTS; i++)
		slot_free(&creds_slots[i]);
	pthread_mutex_unlock(&creds_lock);
}

static bool same_file(const struct slot *s, const struct stat *st)
{
	return s->dev == st->st_dev && s->ino == st->st_ino && s->size == st->st_size &&
	       s->mtime.tv_sec == st->st_mtim.tv_sec && s->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static char *str_dup(struct str s)
{
	return umb_strndup(s.n ? s.p : "", s.n);
}

/* Read the file and fill the slot's values (under the lock). */
static void slot_load(struct slot *s, const struct stat *st)
{
	slot_values_free(s);
	s->dev = st->st_dev;
	s->ino = st->st_ino;
	s->size = st->st_size;
	s->mtime = st->st_mtim;
	if (st->st_size > (off_t)CREDS_FILE_MAX) {
		s->state = SLOT_TOO_BIG;
		return;
	}
	FILE *f = fopen(s->path, "rb");
	if (!f) {
		s->state = SLOT_NO_FILE;
		s->err = errno;
		return;
	}
	char *text = umb_malloc(CREDS_FILE_MAX + 1);
	size_t n = fread(text, 1, CREDS_FILE_MAX + 1, f);
	fclose(f);
	struct aws_creds c;
	if (n > CREDS_FILE_MAX) {
		s->state = SLOT_TOO_BIG;
	} else if (aws_creds_parse(str_make(text, n), str_cstr(s->profile), &c)) {
		s->state = SLOT_NO_PROFILE;
	} else {
		s->state = SLOT_OK;
		s->akid = str_dup(c.access_key_id);
		s->secret = str_dup(c.secret_access_key);
		s->token = str_dup(c.session_token);
	}
	/* the secret does not linger in freed memory */
	memset(text, 0, n < CREDS_FILE_MAX + 1 ? n : CREDS_FILE_MAX + 1);
	free(text);
}

/* The slot for (path, profile), refreshed if its file changed; the least
 * recently used slot is reused for a new pair. Under the lock. */
static struct slot *slot_get(const char *path, const char *profile, uint64_t now)
{
	struct slot *s = NULL, *lru = &creds_slots[0];
	for (size_t i = 0; i < CREDS_CACHE_SLOTS && !s; i++) {
		struct slot *c = &creds_slots[i];
		if (c->path && !strcmp(c->path, path) && !strcmp(c->profile, profile))
			s = c;
		else if (!c->path || (lru->path && c->used_ns < lru->used_ns))
			lru = c;
	}
	if (!s) {
		s = lru;
		slot_free(s);
		s->path = umb_strdup(path);
		s->profile = umb_strdup(profile);
		s->checked_ns = 0;
		s->state = SLOT_NO_FILE;
		s->err = ENOENT;
	}
	s->used_ns = now;
	if (s->checked_ns && now - s->checked_ns < CREDS_RECHECK_NS)
		return s;
	s->checked_ns = now;
	struct stat st;
	if (stat(path, &st)) {
		slot_values_free(s);
		s->state = SLOT_NO_FILE;
		s->err = errno;
		s->dev = 0;
		s->ino = 0;
		return s;
	}
	if (s->state == SLOT_NO_FILE || !same_file(s, &st))
		slot_load(s, &st);
	return s;
}

/* ---- the chain ---- */

static bool usable(struct str s)
{
	for (size_t i = 0; i < s.n; i++)
		if ((unsigned char)s.p[i] < 0x20 || s.p[i] == 0x7f)
			return false; /* would break the Authorization header */
	return s.n > 0;
}

static int creds_check(struct aws_creds *c, char *why, size_t why_n)
{
	if (c->access_key_id.n == 0 || c->secret_access_key.n == 0) {
		snprintf(why, why_n, "%s: %s without %s", c->source,
			 c->access_key_id.n ? "an access key id" : "a secret access key",
			 c->access_key_id.n ? "a secret access key" : "an access key id");
		return UMB_ERR;
	}
	if (!usable(c->access_key_id) || !usable(c->secret_access_key) ||
	    (c->session_token.n && !usable(c->session_token)) || c->secret_access_key.n > 256) {
		snprintf(why, why_n, "%s: credentials contain control characters or are too long",
			 c->source);
		return UMB_ERR;
	}
	return UMB_OK;
}

static void creds_set(struct arena *a, struct aws_creds *out, const char *akid,
		      const char *secret, const char *token, const char *source)
{
	out->access_key_id = str_cstr(arena_strdup_str(a, str_cstr(akid)));
	out->secret_access_key = str_cstr(arena_strdup_str(a, str_cstr(secret)));
	out->session_token = str_cstr(arena_strdup_str(a, str_cstr(token ? token : "")));
	out->source = source;
}

/* AWS_SHARED_CREDENTIALS_FILE (with ~/ expanded) or ~/.aws/credentials. */
static const char *creds_file_path(struct arena *a)
{
	const char *f = getenv("AWS_SHARED_CREDENTIALS_FILE");
	if (f && *f && strncmp(f, "~/", 2))
		return f;
	const char *home = getenv("HOME");
	char pwbuf[1024];
	struct passwd pw, *res = NULL;
	if ((!home || !*home) && getpwuid_r(getuid(), &pw, pwbuf, sizeof pwbuf, &res) == 0 && res)
		home = res->pw_dir;
	if (!home)
		home = "";
	return f && *f ? arena_join(a, home, f + 1, NULL) : arena_join(a, home, "/.aws/credentials", NULL);
}

static int creds_from_file(struct arena *a, const struct cfg_provider *prov,
			   struct aws_creds *out, char *why, size_t why_n)
{
	const char *path = creds_file_path(a);
	const char *profile = prov->profile && *prov->profile ? prov->profile : getenv("AWS_PROFILE");
	if (!profile || !*profile)
		profile = "default";
	pthread_mutex_lock(&creds_lock);
	struct slot *s = slot_get(path, profile, clock_mono_ns());
	int rc = UMB_ERR;
	switch (s->state) {
	case SLOT_OK:
		creds_set(a, out, s->akid, s->secret, s->token, arena_strdup_str(a, str_cstr(path)));
		rc = creds_check(out, why, why_n);
		break;
	case SLOT_NO_FILE:
		snprintf(why, why_n,
			 "no AWS credentials: none in the config, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY not set, and %s: %s",
			 path, strerror(s->err));
		break;
	case SLOT_NO_PROFILE:
		snprintf(why, why_n, "no AWS credentials: profile [%s] not found in %s", profile, path);
		break;
	case SLOT_TOO_BIG:
		snprintf(why, why_n, "%s is larger than %u bytes", path, CREDS_FILE_MAX);
		break;
	}
	pthread_mutex_unlock(&creds_lock);
	return rc;
}

int aws_creds_resolve(struct arena *a, const struct cfg_provider *prov, struct aws_creds *out,
		      char *why, size_t why_n)
{
	*out = (struct aws_creds){ 0 };
	if (prov->access_key_id || prov->secret_access_key) {
		creds_set(a, out, prov->access_key_id ? prov->access_key_id : "",
			  prov->secret_access_key ? prov->secret_access_key : "",
			  prov->session_token, "config");
		return creds_check(out, why, why_n);
	}
	const char *ek = getenv("AWS_ACCESS_KEY_ID"), *es = getenv("AWS_SECRET_ACCESS_KEY");
	if ((ek && *ek) || (es && *es)) {
		creds_set(a, out, ek ? ek : "", es ? es : "", getenv("AWS_SESSION_TOKEN"),
			  "environment");
		return creds_check(out, why, why_n);
	}
	return creds_from_file(a, prov, out, why, why_n);
}
