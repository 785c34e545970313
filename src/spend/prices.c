/* prices.c — the built-in price table, model-name matching and the cost
 * arithmetic (prices.h; the table and rules are written out in
 * docs/prices.md, keep both in step).
 *
 * Matching never uses prefixes: a name is looked up exactly, and the alias
 * rules only strip well-defined decorations (dates, versions, regions,
 * paths) before looking up exactly again. So `gpt-4o-mini` can reach only
 * the `gpt-4o-mini` row, and an unknown model stays unpriced instead of
 * borrowing a neighbour's price. */
#include "spend/prices.h"

#include <ctype.h>
#include <string.h>

#include "config/config.h"

__extension__ typedef unsigned __int128 u128;

/* USD per million tokens, written as on the vendor's page, to pico-USD per
 * token (a constant expression: the table stays in .rodata). */
#define USD(x) ((uint64_t)((x) * 1e6 + 0.5))

/* A chat row: input, cached input, output, cache write (USD per Mtok). */
#define CHAT(fam, nm, in, cached, out, cw, tier, src)                        \
	{ fam, nm, PRICE_CHAT, { USD(in), USD(out), USD(cached), USD(cw) },  \
	  tier, src }
/* A chat row with no cache prices: cached reads and writes cost input. */
#define CHAT0(fam, nm, in, out, tier, src) CHAT(fam, nm, in, in, out, in, tier, src)
/* An embedding row: input only. */
#define EMBED(fam, nm, in, src)                                              \
	{ fam, nm, PRICE_EMBED, { USD(in), 0, USD(in), USD(in) }, NULL, src }

#define SRC_OPENAI "openai.com/api/pricing"
#define SRC_ANTHROPIC "docs.anthropic.com/en/docs/about-claude/pricing"
#define SRC_BEDROCK "aws.amazon.com/bedrock/pricing"
#define SRC_VERTEX "cloud.google.com/vertex-ai/generative-ai/pricing"
#define SRC_GEMINI "ai.google.dev/gemini-api/docs/pricing"
#define TIER_200K "prompt <= 200k tokens"
#define TIER_128K "prompt <= 128k tokens"

/* List prices as known at build time (docs/prices.md gives the date and
 * the caveats). Names are lower case and canonical: what is left after
 * the alias rules. Columns: input, cached input, output, cache write. */
static const struct price_entry prices_builtin[] = {
	/* ---- OpenAI (also Azure OpenAI: same list prices) ---- */
	CHAT("openai", "gpt-5", 1.25, 0.125, 10.00, 1.25, NULL, SRC_OPENAI),
	CHAT("openai", "gpt-5-mini", 0.25, 0.025, 2.00, 0.25, NULL, SRC_OPENAI),
	CHAT("openai", "gpt-5-nano", 0.05, 0.005, 0.40, 0.05, NULL, SRC_OPENAI),
	CHAT("openai", "gpt-5-chat-latest", 1.25, 0.125, 10.00, 1.25, NULL, SRC_OPENAI),
	CHAT("openai", "gpt-4.1", 2.00, 0.50, 8.00, 2.00, NULL, SRC_OPENAI),
	CHAT("openai", "gpt-4.1-mini", 0.40, 0.10, 1.60, 0.40, NULL, SRC_OPENAI),
	CHAT("openai", "gpt-4.1-nano", 0.10, 0.025, 0.40, 0.10, NULL, SRC_OPENAI),
	CHAT("openai", "gpt-4o", 2.50, 1.25, 10.00, 2.50, NULL, SRC_OPENAI),
	CHAT0("openai", "gpt-4o-2024-05-13", 5.00, 15.00, NULL, SRC_OPENAI),
	CHAT("openai", "gpt-4o-mini", 0.15, 0.075, 0.60, 0.15, NULL, SRC_OPENAI),
	CHAT0("openai", "chatgpt-4o-latest", 5.00, 15.00, NULL, SRC_OPENAI),
	CHAT("openai", "o1", 15.00, 7.50, 60.00, 15.00, NULL, SRC_OPENAI),
	CHAT("openai", "o1-mini", 1.10, 0.55, 4.40, 1.10, NULL, SRC_OPENAI),
	CHAT0("openai", "o1-pro", 150.00, 600.00, NULL, SRC_OPENAI),
	CHAT("openai", "o3", 2.00, 0.50, 8.00, 2.00, NULL, SRC_OPENAI),
	CHAT("openai", "o3-mini", 1.10, 0.55, 4.40, 1.10, NULL, SRC_OPENAI),
	CHAT0("openai", "o3-pro", 20.00, 80.00, NULL, SRC_OPENAI),
	CHAT("openai", "o4-mini", 1.10, 0.275, 4.40, 1.10, NULL, SRC_OPENAI),
	CHAT0("openai", "gpt-4-turbo", 10.00, 30.00, NULL, SRC_OPENAI),
	CHAT0("openai", "gpt-4", 30.00, 60.00, NULL, SRC_OPENAI),
	CHAT0("openai", "gpt-3.5-turbo", 0.50, 1.50, NULL, SRC_OPENAI),
	CHAT0("openai", "gpt-3.5-turbo-1106", 1.00, 2.00, NULL, SRC_OPENAI),
	EMBED("openai", "text-embedding-3-small", 0.02, SRC_OPENAI),
	EMBED("openai", "text-embedding-3-large", 0.13, SRC_OPENAI),
	EMBED("openai", "text-embedding-ada-002", 0.10, SRC_OPENAI),

	/* ---- Anthropic (also Claude on Vertex): cached = cache read,
	 * cache write = 5-minute cache write ---- */
	CHAT("anthropic", "claude-opus-4-5", 5.00, 0.50, 25.00, 6.25, NULL, SRC_ANTHROPIC),
	CHAT("anthropic", "claude-opus-4-1", 15.00, 1.50, 75.00, 18.75, NULL, SRC_ANTHROPIC),
	CHAT("anthropic", "claude-opus-4", 15.00, 1.50, 75.00, 18.75, NULL, SRC_ANTHROPIC),
	CHAT("anthropic", "claude-sonnet-4-5", 3.00, 0.30, 15.00, 3.75, TIER_200K, SRC_ANTHROPIC),
	CHAT("anthropic", "claude-sonnet-4", 3.00, 0.30, 15.00, 3.75, TIER_200K, SRC_ANTHROPIC),
	CHAT("anthropic", "claude-haiku-4-5", 1.00, 0.10, 5.00, 1.25, NULL, SRC_ANTHROPIC),
	CHAT("anthropic", "claude-3-7-sonnet", 3.00, 0.30, 15.00, 3.75, NULL, SRC_ANTHROPIC),
	CHAT("anthropic", "claude-3-5-sonnet", 3.00, 0.30, 15.00, 3.75, NULL, SRC_ANTHROPIC),
	CHAT("anthropic", "claude-3-5-haiku", 0.80, 0.08, 4.00, 1.00, NULL, SRC_ANTHROPIC),
	CHAT("anthropic", "claude-3-opus", 15.00, 1.50, 75.00, 18.75, NULL, SRC_ANTHROPIC),
	CHAT("anthropic", "claude-3-haiku", 0.25, 0.03, 1.25, 0.30, NULL, SRC_ANTHROPIC),

	/* ---- AWS Bedrock, on-demand, US regions. Ids without region
	 * prefix, `:N`, `-vN` or date ---- */
	CHAT("bedrock", "anthropic.claude-opus-4-5", 5.00, 0.50, 25.00, 6.25, NULL, SRC_BEDROCK),
	CHAT("bedrock", "anthropic.claude-opus-4-1", 15.00, 1.50, 75.00, 18.75, NULL, SRC_BEDROCK),
	CHAT("bedrock", "anthropic.claude-opus-4", 15.00, 1.50, 75.00, 18.75, NULL, SRC_BEDROCK),
	CHAT("bedrock", "anthropic.claude-sonnet-4-5", 3.00, 0.30, 15.00, 3.75, TIER_200K, SRC_BEDROCK),
	CHAT("bedrock", "anthropic.claude-sonnet-4", 3.00, 0.30, 15.00, 3.75, TIER_200K, SRC_BEDROCK),
	CHAT("bedrock", "anthropic.claude-haiku-4-5", 1.00, 0.10, 5.00, 1.25, NULL, SRC_BEDROCK),
	CHAT("bedrock", "anthropic.claude-3-7-sonnet", 3.00, 0.30, 15.00, 3.75, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "anthropic.claude-3-5-sonnet", 3.00, 15.00, NULL, SRC_BEDROCK),
	CHAT("bedrock", "anthropic.claude-3-5-haiku", 0.80, 0.08, 4.00, 1.00, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "anthropic.claude-3-opus", 15.00, 75.00, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "anthropic.claude-3-haiku", 0.25, 1.25, NULL, SRC_BEDROCK),
	CHAT("bedrock", "amazon.nova-premier", 2.50, 0.625, 12.50, 2.50, NULL, SRC_BEDROCK),
	CHAT("bedrock", "amazon.nova-pro", 0.80, 0.20, 3.20, 0.80, NULL, SRC_BEDROCK),
	CHAT("bedrock", "amazon.nova-lite", 0.06, 0.015, 0.24, 0.06, NULL, SRC_BEDROCK),
	CHAT("bedrock", "amazon.nova-micro", 0.035, 0.00875, 0.14, 0.035, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "meta.llama4-maverick-17b-instruct", 0.24, 0.97, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "meta.llama4-scout-17b-instruct", 0.17, 0.66, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "meta.llama3-3-70b-instruct", 0.72, 0.72, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "meta.llama3-2-90b-instruct", 0.72, 0.72, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "meta.llama3-2-11b-instruct", 0.16, 0.16, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "meta.llama3-2-3b-instruct", 0.15, 0.15, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "meta.llama3-2-1b-instruct", 0.10, 0.10, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "meta.llama3-1-405b-instruct", 2.40, 2.40, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "meta.llama3-1-70b-instruct", 0.72, 0.72, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "meta.llama3-1-8b-instruct", 0.22, 0.22, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "meta.llama3-70b-instruct", 2.65, 3.50, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "meta.llama3-8b-instruct", 0.30, 0.60, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "mistral.pixtral-large-2502", 2.00, 6.00, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "mistral.mistral-large-2407", 2.00, 6.00, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "mistral.mistral-large-2402", 4.00, 12.00, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "mistral.mistral-small-2402", 1.00, 3.00, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "mistral.mixtral-8x7b-instruct", 0.45, 0.70, NULL, SRC_BEDROCK),
	CHAT0("bedrock", "mistral.mistral-7b-instruct", 0.15, 0.20, NULL, SRC_BEDROCK),
	EMBED("bedrock", "amazon.titan-embed-text-v2", 0.02, SRC_BEDROCK),
	EMBED("bedrock", "amazon.titan-embed-text-v1", 0.10, SRC_BEDROCK),
	EMBED("bedrock", "cohere.embed-english-v3", 0.10, SRC_BEDROCK),
	EMBED("bedrock", "cohere.embed-multilingual-v3", 0.10, SRC_BEDROCK),

	/* ---- Google Gemini on Vertex AI; tiered prices: the lower tier ---- */
	CHAT("vertex", "gemini-2.5-pro", 1.25, 0.125, 10.00, 1.25, TIER_200K, SRC_VERTEX),
	CHAT("vertex", "gemini-2.5-flash", 0.30, 0.03, 2.50, 0.30, NULL, SRC_VERTEX),
	CHAT("vertex", "gemini-2.5-flash-lite", 0.10, 0.01, 0.40, 0.10, NULL, SRC_VERTEX),
	CHAT("vertex", "gemini-2.0-flash", 0.15, 0.0375, 0.60, 0.15, NULL, SRC_VERTEX),
	CHAT0("vertex", "gemini-2.0-flash-lite", 0.075, 0.30, NULL, SRC_VERTEX),
	CHAT("vertex", "gemini-1.5-pro", 1.25, 0.3125, 5.00, 1.25, TIER_128K, SRC_GEMINI),
	CHAT("vertex", "gemini-1.5-flash", 0.075, 0.01875, 0.30, 0.075, TIER_128K, SRC_GEMINI),
	CHAT("vertex", "gemini-1.5-flash-8b", 0.0375, 0.01, 0.15, 0.0375, TIER_128K, SRC_GEMINI),
	EMBED("vertex", "gemini-embedding-001", 0.15, SRC_VERTEX),
};

/* Irregular names the rules do not reach: vendor aliases and older
 * snapshot ids. Each target is a row above (the unit test checks). */
static const struct price_alias prices_aliases[] = {
	{ "claude-opus-4-0", "claude-opus-4" },
	{ "claude-sonnet-4-0", "claude-sonnet-4" },
	{ "gpt-4-turbo-preview", "gpt-4-turbo" },
	{ "gpt-4-0125-preview", "gpt-4-turbo" },
	{ "gpt-4-1106-preview", "gpt-4-turbo" },
};

/* Bedrock cross-region inference-profile prefixes ("us.anthropic..."),
 * stripped only in front of a Bedrock vendor below. */
static const char *const prices_geo[] = {
	"us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.", "ca.",
};
static const char *const prices_vendors[] = {
	"anthropic.", "amazon.", "meta.", "mistral.", "cohere.", "ai21.",
	"deepseek.", "writer.",
};

const struct price_entry *prices_table(size_t *n)
{
	*n = UMB_ARRAY_LEN(prices_builtin);
	return prices_builtin;
}

const struct price_alias *prices_alias_table(size_t *n)
{
	*n = UMB_ARRAY_LEN(prices_aliases);
	return prices_aliases;
}

uint64_t prices_from_usd_per_mtok(double usd_per_mtok)
{
	double v;

	if (!(usd_per_mtok > 0)) /* also NaN */
		return 0;
	v = usd_per_mtok * 1e6 + 0.5;
	if (v >= 18446744073709551615.0)
		return UINT64_MAX;
	return (uint64_t)v;
}

/* ---- matching ---- */

static bool prices__starts(const char *s, size_t n, const char *pre)
{
	size_t k = strlen(pre);

	return n >= k && memcmp(s, pre, k) == 0;
}

static bool prices__ends(const char *s, size_t n, const char *suf)
{
	size_t k = strlen(suf);

	return n >= k && memcmp(s + n - k, suf, k) == 0;
}

static bool prices__digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static unsigned prices__num(const char *s, size_t n)
{
	unsigned v = 0;

	for (size_t i = 0; i < n; i++)
		v = v * 10 + (unsigned)(s[i] - '0');
	return v;
}

/* A plausible month and day: keeps "-2407" (Mistral's YYMM) from being
 * taken for a date. */
static bool prices__mmdd(const char *s)
{
	unsigned mm = prices__num(s, 2), dd = prices__num(s + 2, 2);

	return mm >= 1 && mm <= 12 && dd >= 1 && dd <= 31;
}

/* Exact row or alias for s[0..n) (already lower case); NULL if none. */
static const struct price_entry *prices__exact(const char *s, size_t n)
{
	for (size_t i = 0; i < UMB_ARRAY_LEN(prices_builtin); i++) {
		const char *nm = prices_builtin[i].name;

		if (strlen(nm) == n && memcmp(nm, s, n) == 0)
			return &prices_builtin[i];
	}
	for (size_t i = 0; i < UMB_ARRAY_LEN(prices_aliases); i++) {
		const char *from = prices_aliases[i].from;

		if (strlen(from) == n && memcmp(from, s, n) == 0)
			return prices__exact(prices_aliases[i].to,
					     strlen(prices_aliases[i].to));
	}
	return NULL;
}

/* True when s starts with a Bedrock vendor ("anthropic.", ...). */
static bool prices__bedrock(const char *s, size_t n)
{
	for (size_t i = 0; i < UMB_ARRAY_LEN(prices_vendors); i++)
		if (prices__starts(s, n, prices_vendors[i]))
			return true;
	return false;
}

/* Strip one version decoration from the end of s[0..n): "-latest", a date
 * ("-YYYY-MM-DD", "-YYYYMMDD", and "-MMDD" for gpt-*), "-vN" (Claude and
 * Bedrock revisions), "-NNN" (Gemini revisions). Returns false when there
 * is none. */
static bool prices__strip_suffix(const char *s, size_t *n)
{
	size_t len = *n, k;

	if (prices__ends(s, len, "-latest")) {
		*n = len - 7;
		return true;
	}
	/* -YYYY-MM-DD */
	if (len > 11 && s[len - 11] == '-' && s[len - 6] == '-' && s[len - 3] == '-' &&
	    prices__digits(s + len - 10, 4) && prices__digits(s + len - 5, 2) &&
	    prices__digits(s + len - 2, 2)) {
		char mmdd[4] = { s[len - 5], s[len - 4], s[len - 2], s[len - 1] };

		if (prices__mmdd(mmdd)) {
			*n = len - 11;
			return true;
		}
	}
	/* -YYYYMMDD, year 20xx */
	if (len > 9 && s[len - 9] == '-' && prices__digits(s + len - 8, 8) &&
	    s[len - 8] == '2' && s[len - 7] == '0' && prices__mmdd(s + len - 4)) {
		*n = len - 9;
		return true;
	}
	/* -MMDD: OpenAI's older snapshots (gpt-4-0613, gpt-3.5-turbo-0125) */
	if (prices__starts(s, len, "gpt-") && len > 5 && s[len - 5] == '-' &&
	    prices__digits(s + len - 4, 4) && prices__mmdd(s + len - 4)) {
		*n = len - 5;
		return true;
	}
	/* -vN: Bedrock model revisions and Vertex's claude-3-5-sonnet-v2 */
	if (prices__starts(s, len, "claude-") || prices__bedrock(s, len)) {
		for (k = len; k > 0 && s[k - 1] >= '0' && s[k - 1] <= '9'; k--)
			;
		if (k < len && len - k <= 2 && k >= 2 && s[k - 1] == 'v' && s[k - 2] == '-') {
			*n = k - 2;
			return true;
		}
	}
	/* -NNN: Gemini stable revisions (gemini-2.0-flash-001) */
	if (prices__starts(s, len, "gemini-") && len > 4 && s[len - 4] == '-' &&
	    prices__digits(s + len - 3, 3)) {
		*n = len - 4;
		return true;
	}
	return false;
}

/* Contract in prices.h. The name is lowered into a stack buffer; every
 * rule only moves the start or the end of the view s[0..n). */
const struct price_entry *prices_lookup(const char *model)
{
	char buf[PRICES_NAME_MAX + 1];
	const struct price_entry *e;
	const char *s, *p;
	size_t n, len;

	if (!model)
		return NULL;
	len = strlen(model);
	while (len > 0 && (model[0] == ' ' || model[0] == '\t'))
		model++, len--;
	while (len > 0 && (model[len - 1] == ' ' || model[len - 1] == '\t'))
		len--;
	if (len == 0 || len > PRICES_NAME_MAX)
		return NULL;
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)tolower((unsigned char)model[i]);
	buf[len] = '\0';
	s = buf;
	n = len;
	if ((e = prices__exact(s, n)))
		return e;

	/* Paths: a Bedrock ARN ends in "/<model id>"; Vertex and the Gemini
	 * API name "…/publishers/google/models/<id>" and "models/<id>". */
	if (prices__starts(s, n, "arn:")) {
		p = memrchr(s, '/', n);
		if (!p)
			return NULL;
		n -= (size_t)(p + 1 - s);
		s = p + 1;
	} else {
		for (p = s + n; p > s; p--) {
			if (p - s >= 7 && memcmp(p - 7, "models/", 7) == 0 &&
			    (p - 7 == s || p[-8] == '/')) {
				n -= (size_t)(p - s);
				s = p;
				break;
			}
		}
	}
	/* Vertex version tags: claude-3-5-sonnet-v2@20241022 */
	if ((p = memchr(s, '@', n)))
		n = (size_t)(p - s);
	/* Bedrock: an inference-profile prefix before a vendor, and the
	 * ":0" (or ":0:200k") version after it: a colon and a digit */
	for (size_t i = 0; i < UMB_ARRAY_LEN(prices_geo); i++) {
		size_t k = strlen(prices_geo[i]);

		if (prices__starts(s, n, prices_geo[i]) && prices__bedrock(s + k, n - k)) {
			s += k;
			n -= k;
			break;
		}
	}
	if (prices__bedrock(s, n) && (p = memchr(s, ':', n)) &&
	    (size_t)(p - s) + 1 < n && p[1] >= '0' && p[1] <= '9')
		n = (size_t)(p - s);
	if (n == 0)
		return NULL;
	if ((e = prices__exact(s, n)))
		return e;

	/* Decorations at the end, one at a time: claude-…-20241022-v2 */
	while (prices__strip_suffix(s, &n))
		if ((e = prices__exact(s, n)))
			return e;
	return NULL;
}

/* ---- configured models ---- */

int prices_for_model(const struct cfg_model *m, const char *requested_name,
		     struct price *out, const char **source)
{
	const struct price_entry *e = NULL;
	const char *src = "unpriced";
	int rc = UMB_ERR;

	memset(out, 0, sizeof(*out));
	if (m && m->price.set) {
		out->input = prices_from_usd_per_mtok(m->price.input_per_mtok);
		out->output = prices_from_usd_per_mtok(m->price.output_per_mtok);
		out->cached_input = prices_from_usd_per_mtok(m->price.cached_input_per_mtok);
		/* config has no cache-write price: bill writes as input */
		out->cache_write = out->input;
		src = "config";
		rc = UMB_OK;
		goto out;
	}
	if (m && m->locality == LOCALITY_ONPREM) {
		src = "onprem";
		rc = UMB_OK;
		goto out;
	}
	if (m && m->upstream_model) {
		e = prices_lookup(m->upstream_model);
		/* Azure's upstream_model may be a deployment name: the model
		 * name clients ask for is then the better guess. */
		if (!e && !(m->provider && m->provider->type == PROVIDER_AZURE))
			goto out;
	}
	if (!e && requested_name)
		e = prices_lookup(requested_name);
	if (!e && m && !m->is_glob)
		e = prices_lookup(m->name);
	if (e) {
		*out = e->price;
		src = "builtin";
		rc = UMB_OK;
	}
out:
	if (source)
		*source = src;
	return rc;
}

/* ---- arithmetic, in pico-USD ---- */

static u128 prices__add(u128 a, u128 b)
{
	u128 s = a + b;

	return s < a ? ~(u128)0 : s;
}

static u128 prices__cost_pusd(const struct price *p, const struct usage_tokens *u)
{
	uint64_t cached = UMB_MIN(u->cached_prompt, u->prompt);
	u128 c;

	/* each product of two uint64_t fits in 128 bits; only sums saturate */
	c = (u128)(u->prompt - cached) * p->input;
	c = prices__add(c, (u128)cached * p->cached_input);
	c = prices__add(c, (u128)u->cache_write * p->cache_write);
	c = prices__add(c, (u128)u->completion * p->output);
	return c;
}

static u128 prices__worst_pusd(const struct price *p, uint64_t prompt, uint64_t max_output)
{
	uint64_t in = UMB_MAX(UMB_MAX(p->input, p->cache_write), p->cached_input);

	return prices__add((u128)prompt * in, (u128)max_output * p->output);
}

/* pico to nano, adding `bias` (0..999) first; saturating. */
static uint64_t prices__nusd(u128 pusd, unsigned bias)
{
	u128 n = prices__add(pusd, bias) / 1000;

	return n > UINT64_MAX ? UINT64_MAX : (uint64_t)n;
}

static double prices__usd(u128 pusd)
{
	return (double)((long double)pusd / 1e12L);
}

double prices_cost(const struct price *p, const struct usage_tokens *u)
{
	return prices__usd(prices__cost_pusd(p, u));
}

uint64_t prices_cost_nusd(const struct price *p, const struct usage_tokens *u)
{
	return prices__nusd(prices__cost_pusd(p, u), 500);
}

double prices_worst_case(const struct price *p, uint64_t prompt_estimate,
			 uint64_t max_output)
{
	return prices__usd(prices__worst_pusd(p, prompt_estimate, max_output));
}

uint64_t prices_worst_case_nusd(const struct price *p, uint64_t prompt_estimate,
				uint64_t max_output)
{
	return prices__nusd(prices__worst_pusd(p, prompt_estimate, max_output), 999);
}

uint64_t prices_estimate_prompt_tokens(struct str body)
{
	return body.n / 3 + (body.n % 3 != 0);
}
