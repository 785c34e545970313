/* test_prices.c — unit tests for spend/prices.c: table sanity, every
 * alias rule, that no name ever borrows another model's row (table-driven
 * over all entries), the config / onprem / builtin / unpriced order, the
 * cost and reservation arithmetic (cached tokens, rounding, saturation on
 * huge counts) and the prompt estimate. docs/prices.md must hold one row
 * per entry exactly as `test_prices --markdown` prints it. Runs under
 * ASan+UBSan too (make BUILD=build-asan SANITIZE=1 unit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <math.h>

#include <cmocka.h>

#include "config/config.h"
#include "spend/prices.h"

/* The row a name resolves to, by name ("" when unpriced). */
static const char *look(const char *model)
{
	const struct price_entry *e = prices_lookup(model);

	return e ? e->name : "";
}

#define assert_maps(model, want) assert_string_equal(look(model), want)
#define assert_unpriced(model) assert_string_equal(look(model), "")

/* USD per Mtok as the docs print it: at least 2 decimals, no trailing 0s. */
static void fmt_usd(char *out, size_t cap, uint64_t v)
{
	char frac[8];
	int k = 6;

	snprintf(frac, sizeof(frac), "%06llu", (unsigned long long)(v % 1000000));
	while (k > 2 && frac[k - 1] == '0')
		k--;
	frac[k] = '\0';
	snprintf(out, cap, "%llu.%s", (unsigned long long)(v / 1000000), frac);
}

/* One markdown row of docs/prices.md for an entry. */
static void fmt_row(char *out, size_t cap, const struct price_entry *e)
{
	char in[32], ca[32], o[32], cw[32];

	fmt_usd(in, sizeof(in), e->price.input);
	fmt_usd(ca, sizeof(ca), e->price.cached_input);
	fmt_usd(o, sizeof(o), e->price.output);
	fmt_usd(cw, sizeof(cw), e->price.cache_write);
	snprintf(out, cap, "| %s | `%s` | %s | %s | %s | %s | %s | %s | %s |",
		 e->family, e->name, e->kind == PRICE_EMBED ? "embed" : "chat",
		 in, ca, e->kind == PRICE_EMBED ? "-" : o, cw,
		 e->tier ? e->tier : "", e->source);
}

/* True when model is a listed alias of the row named to. */
static bool is_alias(const char *model, const char *to)
{
	size_t n;
	const struct price_alias *a = prices_alias_table(&n);

	for (size_t i = 0; i < n; i++)
		if (!strcmp(a[i].from, model) && !strcmp(a[i].to, to))
			return true;
	return false;
}

/* A lookup that found a row: its own name, or a listed alias of it. */
static bool same_model(const struct price_entry *e, const char *model)
{
	return !e || !strcmp(e->name, model) || is_alias(model, e->name);
}

/* ---- the table ---- */

static void test_table_sanity(void **state)
{
	size_t n;
	const struct price_entry *t = prices_table(&n);
	size_t fam[4] = { 0 };

	(void)state;
	assert_true(n > 60);
	for (size_t i = 0; i < n; i++) {
		const struct price_entry *e = &t[i];
		const struct price *p = &e->price;

		assert_non_null(e->name);
		assert_true(strlen(e->name) > 0 && strlen(e->name) <= PRICES_NAME_MAX);
		for (const char *c = e->name; *c; c++) /* canonical: lower case */
			assert_false(*c >= 'A' && *c <= 'Z');
		assert_non_null(e->source);
		assert_true(!e->tier || strlen(e->tier) > 0);
		if (!strcmp(e->family, "openai"))
			fam[0]++;
		else if (!strcmp(e->family, "anthropic"))
			fam[1]++;
		else if (!strcmp(e->family, "bedrock"))
			fam[2]++;
		else if (!strcmp(e->family, "vertex"))
			fam[3]++;
		else
			fail_msg("family %s", e->family);
		/* every row has a price, caches never cost more than input,
		 * cache writes never less */
		assert_true(p->input > 0);
		assert_true(p->cached_input <= p->input);
		assert_true(p->cache_write >= p->input);
		if (e->kind == PRICE_CHAT)
			assert_true(p->output >= p->input);
		else
			assert_int_equal(p->output, 0);
		/* $0.005..$600 per Mtok: a slip of the decimal point shows */
		assert_true(p->cached_input >= 5000);
		assert_true(p->output <= 600000000);
		for (size_t j = 0; j < i; j++)
			if (!strcasecmp(t[j].name, e->name))
				fail_msg("duplicate %s", e->name);
	}
	/* aliases: lower case, not a row's name, aimed at a row */
	{
		size_t na;
		const struct price_alias *a = prices_alias_table(&na);

		for (size_t i = 0; i < na; i++) {
			const struct price_entry *e = prices_lookup(a[i].to);

			for (const char *c = a[i].from; *c; c++)
				assert_false(*c >= 'A' && *c <= 'Z');
			assert_non_null(e);
			assert_string_equal(e->name, a[i].to);
			for (size_t j = 0; j < n; j++)
				assert_true(strcmp(t[j].name, a[i].from) != 0);
			assert_ptr_equal(prices_lookup(a[i].from), e);
		}
	}
	print_message("entries: openai %zu, anthropic %zu, bedrock %zu, vertex %zu\n",
		      fam[0], fam[1], fam[2], fam[3]);
}

/* Each row's own name (in any case) reaches itself, and only itself. */
static void test_self_map(void **state)
{
	size_t n;
	const struct price_entry *t = prices_table(&n);
	char up[PRICES_NAME_MAX + 1];

	(void)state;
	for (size_t i = 0; i < n; i++) {
		size_t k = strlen(t[i].name);

		assert_ptr_equal(prices_lookup(t[i].name), &t[i]);
		for (size_t j = 0; j <= k; j++)
			up[j] = (char)(t[i].name[j] >= 'a' && t[i].name[j] <= 'z'
					       ? t[i].name[j] - 32 : t[i].name[j]);
		assert_ptr_equal(prices_lookup(up), &t[i]);
	}
}

/* No prefix and no extension of a row's name resolves to a row of another
 * name: "gpt-4o-mini" is not "gpt-4o", "gpt-4o-m" is nothing. */
static void test_no_borrowing(void **state)
{
	static const char *const ext[] = {
		"-mini", "-pro", "-nano", "-lite", "x", "1", "-1", "-2", ".5",
		"-preview", "-audio-preview", "-realtime", "-search-preview",
		"-instruct", "-8b", "-thinking", "-exp", "-0", "/x", ":free",
	};
	size_t n;
	const struct price_entry *t = prices_table(&n);
	char buf[PRICES_NAME_MAX + 32];

	(void)state;
	for (size_t i = 0; i < n; i++) {
		size_t k = strlen(t[i].name);

		for (size_t j = 1; j < k; j++) {
			const struct price_entry *e;

			memcpy(buf, t[i].name, j);
			buf[j] = '\0';
			e = prices_lookup(buf);
			if (!same_model(e, buf))
				fail_msg("prefix %s of %s maps to %s", buf, t[i].name, e->name);
		}
		for (size_t x = 0; x < sizeof(ext) / sizeof(ext[0]); x++) {
			const struct price_entry *e;

			snprintf(buf, sizeof(buf), "%s%s", t[i].name, ext[x]);
			e = prices_lookup(buf);
			if (!same_model(e, buf))
				fail_msg("%s maps to %s", buf, e->name);
		}
	}
}

/* ---- alias rules, one family at a time ---- */

static void test_alias_openai(void **state)
{
	(void)state;
	assert_maps("gpt-4o-2024-08-06", "gpt-4o");
	assert_maps("gpt-4o-2024-11-20", "gpt-4o");
	assert_maps("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"); /* own price */
	assert_maps("gpt-4o-mini-2024-07-18", "gpt-4o-mini");
	assert_maps("gpt-4.1-2025-04-14", "gpt-4.1");
	assert_maps("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini");
	assert_maps("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano");
	assert_maps("gpt-5-2025-08-07", "gpt-5");
	assert_maps("gpt-5-mini-2025-08-07", "gpt-5-mini");
	assert_maps("o1-2024-12-17", "o1");
	assert_maps("o1-mini-2024-09-12", "o1-mini");
	assert_maps("o3-2025-04-16", "o3");
	assert_maps("o3-mini-2025-01-31", "o3-mini");
	assert_maps("o4-mini-2025-04-16", "o4-mini");
	assert_maps("o1-pro-2025-03-19", "o1-pro");
	assert_maps("gpt-4-turbo-2024-04-09", "gpt-4-turbo");
	assert_maps("gpt-4-0613", "gpt-4");
	assert_maps("gpt-3.5-turbo-0125", "gpt-3.5-turbo");
	assert_maps("gpt-3.5-turbo-1106", "gpt-3.5-turbo-1106");
	assert_maps("gpt-4-1106-preview", "gpt-4-turbo");
	assert_maps("gpt-4-turbo-preview", "gpt-4-turbo");
	assert_maps("chatgpt-4o-latest", "chatgpt-4o-latest");
	assert_maps("gpt-5-chat-latest", "gpt-5-chat-latest");
	assert_maps("GPT-4o", "gpt-4o");
	assert_maps("  gpt-4o-mini\t", "gpt-4o-mini");
	assert_maps("text-embedding-3-small", "text-embedding-3-small");
	/* the same family, another model: never the base row */
	assert_unpriced("gpt-4o-audio-preview");
	assert_unpriced("gpt-4o-realtime-preview-2024-12-17");
	assert_unpriced("gpt-4o-mini-search-preview");
	assert_unpriced("o1-preview");
	assert_unpriced("gpt-4o-2024-13-01"); /* not a date */
	assert_maps("gpt-4o-20240806", "gpt-4o"); /* any dated snapshot */
	assert_unpriced("gpt-4o-0806x");
	assert_unpriced("gpt-4.5-preview");
}

static void test_alias_anthropic(void **state)
{
	(void)state;
	assert_maps("claude-3-5-sonnet-20241022", "claude-3-5-sonnet");
	assert_maps("claude-3-5-sonnet-20240620", "claude-3-5-sonnet");
	assert_maps("claude-3-5-sonnet-latest", "claude-3-5-sonnet");
	assert_maps("claude-3-7-sonnet-20250219", "claude-3-7-sonnet");
	assert_maps("claude-3-7-sonnet-latest", "claude-3-7-sonnet");
	assert_maps("claude-3-5-haiku-20241022", "claude-3-5-haiku");
	assert_maps("claude-3-haiku-20240307", "claude-3-haiku");
	assert_maps("claude-3-opus-20240229", "claude-3-opus");
	assert_maps("claude-sonnet-4-20250514", "claude-sonnet-4");
	assert_maps("claude-sonnet-4-0", "claude-sonnet-4");
	assert_maps("claude-sonnet-4-5-20250929", "claude-sonnet-4-5");
	assert_maps("claude-sonnet-4-5", "claude-sonnet-4-5");
	assert_maps("claude-opus-4-20250514", "claude-opus-4");
	assert_maps("claude-opus-4-0", "claude-opus-4");
	assert_maps("claude-opus-4-1-20250805", "claude-opus-4-1");
	assert_maps("claude-haiku-4-5-20251001", "claude-haiku-4-5");
	/* Claude on Vertex: @version and -v2 */
	assert_maps("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet");
	assert_maps("claude-3-5-haiku@20241022", "claude-3-5-haiku");
	assert_maps("claude-sonnet-4@20250514", "claude-sonnet-4");
	assert_maps("publishers/anthropic/models/claude-3-7-sonnet@20250219",
		    "claude-3-7-sonnet");
	/* versions that do not exist must not round down to a neighbour */
	assert_unpriced("claude-opus-4-6");
	assert_unpriced("claude-sonnet-4-7-20260101");
	assert_unpriced("claude-3-5-opus");
	assert_unpriced("claude-3-sonnet-20240229");
	assert_unpriced("claude-2.1");
	assert_unpriced("claude-3-5-sonnet-20241322"); /* month 13 */
}

static void test_alias_bedrock(void **state)
{
	(void)state;
	assert_maps("anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic.claude-3-5-sonnet");
	assert_maps("anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude-3-5-sonnet");
	assert_maps("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic.claude-3-7-sonnet");
	assert_maps("eu.anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic.claude-3-7-sonnet");
	assert_maps("apac.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude-sonnet-4");
	assert_maps("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5");
	assert_maps("us-gov.anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude-3-5-sonnet");
	assert_maps("us.anthropic.claude-opus-4-1-20250805-v1:0", "anthropic.claude-opus-4-1");
	assert_maps("global.anthropic.claude-opus-4-5-20251101-v1:0", "anthropic.claude-opus-4-5");
	assert_maps("us.anthropic.claude-opus-4-20250514-v1:0", "anthropic.claude-opus-4");
	assert_maps("anthropic.claude-3-haiku-20240307-v1:0:200k", "anthropic.claude-3-haiku");
	assert_maps("anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-3-5-haiku");
	assert_maps("us.anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic.claude-haiku-4-5");
	assert_maps("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
		    "anthropic.claude-3-5-haiku");
	assert_maps("arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
		    "anthropic.claude-3-7-sonnet");
	assert_maps("meta.llama3-70b-instruct-v1:0", "meta.llama3-70b-instruct");
	assert_maps("meta.llama3-1-70b-instruct-v1:0", "meta.llama3-1-70b-instruct");
	assert_maps("us.meta.llama3-2-90b-instruct-v1:0", "meta.llama3-2-90b-instruct");
	assert_maps("us.meta.llama3-3-70b-instruct-v1:0", "meta.llama3-3-70b-instruct");
	assert_maps("us.meta.llama4-maverick-17b-instruct-v1:0", "meta.llama4-maverick-17b-instruct");
	assert_maps("amazon.nova-pro-v1:0", "amazon.nova-pro");
	assert_maps("us.amazon.nova-lite-v1:0", "amazon.nova-lite");
	assert_maps("amazon.nova-micro-v1:0", "amazon.nova-micro");
	assert_maps("us.amazon.nova-premier-v1:0", "amazon.nova-premier");
	assert_maps("mistral.mistral-large-2407-v1:0", "mistral.mistral-large-2407");
	assert_maps("mistral.mistral-large-2402-v1:0", "mistral.mistral-large-2402");
	assert_maps("mistral.mistral-7b-instruct-v0:2", "mistral.mistral-7b-instruct");
	assert_maps("mistral.mixtral-8x7b-instruct-v0:1", "mistral.mixtral-8x7b-instruct");
	assert_maps("amazon.titan-embed-text-v2:0", "amazon.titan-embed-text-v2");
	assert_maps("amazon.titan-embed-text-v1", "amazon.titan-embed-text-v1");
	assert_maps("cohere.embed-english-v3", "cohere.embed-english-v3");
	/* the version of an embedding model is part of its name */
	assert_unpriced("amazon.titan-embed-text-v3:0");
	assert_unpriced("amazon.titan-embed-text");
	assert_unpriced("amazon.nova-pro-v1:free"); /* a version is a digit */
	/* a region prefix only before a Bedrock vendor */
	assert_unpriced("us.gpt-4o");
	assert_unpriced("xx.anthropic.claude-3-5-sonnet-20241022-v2:0");
	assert_unpriced("us.");
	assert_unpriced("anthropic.");
	assert_unpriced("meta.llama3-2-70b-instruct-v1:0");   /* no such model */
	assert_unpriced("mistral.mistral-large-2411-v1:0");
	assert_unpriced("amazon.nova-pro-v");
	assert_unpriced("arn:aws:bedrock:us-east-1::foundation-model");
	/* an Ollama tag is not a Bedrock version */
	assert_unpriced("llama3.1:8b");
}

static void test_alias_vertex(void **state)
{
	(void)state;
	assert_maps("publishers/google/models/gemini-2.0-flash-001", "gemini-2.0-flash");
	assert_maps("projects/p/locations/us-central1/publishers/google/models/gemini-1.5-pro-002",
		    "gemini-1.5-pro");
	assert_maps("models/gemini-2.5-flash", "gemini-2.5-flash");
	assert_maps("gemini-2.5-pro", "gemini-2.5-pro");
	assert_maps("gemini-1.5-flash-latest", "gemini-1.5-flash");
	assert_maps("gemini-1.5-flash-002", "gemini-1.5-flash");
	assert_maps("gemini-2.0-flash-lite-001", "gemini-2.0-flash-lite");
	assert_maps("gemini-1.5-flash-8b-001", "gemini-1.5-flash-8b");
	assert_maps("gemini-2.5-flash-lite", "gemini-2.5-flash-lite");
	assert_maps("gemini-embedding-001", "gemini-embedding-001");
	/* previews and experiments have other prices */
	assert_unpriced("gemini-2.5-flash-preview-05-20");
	assert_unpriced("gemini-2.5-pro-exp-03-25");
	assert_unpriced("gemini-2.0-flash-thinking-exp-01-21");
	assert_unpriced("gemini-3-pro");
	assert_unpriced("gemini-2.0-pro");
	assert_unpriced("mymodels/gemini-2.0-flash");
	assert_unpriced("google/gemini-2.0-flash");
	assert_unpriced("models/");
}

static void test_odd_input(void **state)
{
	char big[PRICES_NAME_MAX + 2];

	(void)state;
	assert_null(prices_lookup(NULL));
	assert_unpriced("");
	assert_unpriced("   ");
	assert_unpriced("-latest");
	assert_unpriced("@");
	assert_unpriced("gpt-4o\n");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_unpriced(big);
	/* a long name of the right length still works */
	memset(big, ' ', PRICES_NAME_MAX);
	memcpy(big + PRICES_NAME_MAX - 6, "gpt-4o", 6);
	big[PRICES_NAME_MAX] = '\0';
	assert_maps(big, "gpt-4o");
	assert_unpriced("\xff\xfe-gpt-4o");
}

/* ---- configured models ---- */

static void test_for_model(void **state)
{
	struct cfg_provider openai = { .name = "o", .type = PROVIDER_OPENAI };
	struct cfg_provider azure = { .name = "az", .type = PROVIDER_AZURE };
	struct cfg_model m = { .name = "fast", .provider = &openai };
	struct price p;
	const char *src = NULL;
	const struct price_entry *e;

	(void)state;
	/* builtin by upstream_model */
	m.upstream_model = "gpt-4o-mini-2024-07-18";
	assert_int_equal(prices_for_model(&m, "fast", &p, &src), 0);
	assert_string_equal(src, "builtin");
	e = prices_lookup("gpt-4o-mini");
	assert_memory_equal(&p, &e->price, sizeof(p));

	/* config wins over the table, and over onprem */
	m.price = (struct cfg_price){ .set = true, .input_per_mtok = 1.5,
				      .output_per_mtok = 2.25,
				      .cached_input_per_mtok = 0.125 };
	m.locality = LOCALITY_ONPREM;
	assert_int_equal(prices_for_model(&m, "fast", &p, &src), 0);
	assert_string_equal(src, "config");
	assert_int_equal(p.input, 1500000);
	assert_int_equal(p.output, 2250000);
	assert_int_equal(p.cached_input, 125000);
	assert_int_equal(p.cache_write, 1500000);

	/* onprem is free */
	m.price.set = false;
	assert_int_equal(prices_for_model(&m, "fast", &p, &src), 0);
	assert_string_equal(src, "onprem");
	assert_int_equal(p.input | p.output | p.cached_input | p.cache_write, 0);

	/* an unknown upstream model is unpriced, even when the requested
	 * name is known: the model that runs is not that one */
	m.locality = LOCALITY_CLOUD;
	m.upstream_model = "my-finetune";
	assert_int_equal(prices_for_model(&m, "gpt-4o", &p, &src), UMB_ERR);
	assert_string_equal(src, "unpriced");
	assert_int_equal(p.input | p.output | p.cached_input | p.cache_write, 0);

	/* Azure: upstream_model may be a deployment name */
	m.provider = &azure;
	m.upstream_model = "prod-deployment-7";
	assert_int_equal(prices_for_model(&m, "gpt-4.1", &p, &src), 0);
	assert_string_equal(src, "builtin");
	assert_int_equal(p.input, 2000000);
	m.name = "gpt-4o";
	assert_int_equal(prices_for_model(&m, NULL, &p, &src), 0);
	assert_int_equal(p.input, 2500000);

	/* no upstream_model: the requested name (globs), then the name */
	m.provider = &openai;
	m.upstream_model = NULL;
	m.name = "claude-*";
	m.is_glob = true;
	assert_int_equal(prices_for_model(&m, "claude-3-5-haiku-20241022", &p, &src), 0);
	assert_int_equal(p.output, 4000000);
	assert_int_equal(prices_for_model(&m, "claude-9", &p, &src), UMB_ERR);
	assert_int_equal(prices_for_model(&m, NULL, &p, &src), UMB_ERR);
	m.name = "o3";
	m.is_glob = false;
	assert_int_equal(prices_for_model(&m, NULL, &p, NULL), 0);
	assert_int_equal(p.output, 8000000);

	/* no configured model at all */
	assert_int_equal(prices_for_model(NULL, "gemini-2.0-flash-001", &p, &src), 0);
	assert_string_equal(src, "builtin");
	assert_int_equal(prices_for_model(NULL, NULL, &p, &src), UMB_ERR);
	assert_string_equal(src, "unpriced");
}

static void test_from_usd(void **state)
{
	(void)state;
	assert_int_equal(prices_from_usd_per_mtok(2.5), 2500000);
	assert_int_equal(prices_from_usd_per_mtok(0.01875), 18750);
	assert_int_equal(prices_from_usd_per_mtok(0.00875), 8750);
	assert_int_equal(prices_from_usd_per_mtok(0.1), 100000);
	assert_int_equal(prices_from_usd_per_mtok(0), 0);
	assert_int_equal(prices_from_usd_per_mtok(-1), 0);
	assert_int_equal(prices_from_usd_per_mtok(NAN), 0);
	assert_int_equal(prices_from_usd_per_mtok(1e9), 1000000000000000ULL);
	assert_true(prices_from_usd_per_mtok(1e300) == UINT64_MAX);
	assert_true(prices_from_usd_per_mtok(INFINITY) == UINT64_MAX);
}

/* ---- arithmetic ---- */

static void test_cost(void **state)
{
	const struct price *gpt4o = &prices_lookup("gpt-4o")->price;
	const struct price *sonnet = &prices_lookup("claude-3-5-sonnet")->price;
	const struct price *flash = &prices_lookup("gemini-1.5-flash")->price;
	struct usage_tokens u;

	(void)state;
	/* OpenAI: 1000 prompt of which 400 cached, 500 out:
	 * 600 × 2.50 + 400 × 1.25 + 500 × 10 = 7000 µUSD */
	u = (struct usage_tokens){ .prompt = 1000, .cached_prompt = 400, .completion = 500 };
	assert_int_equal(prices_cost_nusd(gpt4o, &u), 7000000);
	assert_true(fabs(prices_cost(gpt4o, &u) - 0.007) < 1e-15);
	/* Anthropic, normalised: input 100 + read 1000, write 2000, out 300:
	 * 100 × 3 + 1000 × 0.30 + 2000 × 3.75 + 300 × 15 = 12600 µUSD */
	u = (struct usage_tokens){ .prompt = 1100, .cached_prompt = 1000,
				   .cache_write = 2000, .completion = 300 };
	assert_int_equal(prices_cost_nusd(sonnet, &u), 12600000);
	/* cached above prompt is clamped: all 10 at the cached price */
	u = (struct usage_tokens){ .prompt = 10, .cached_prompt = 50 };
	assert_int_equal(prices_cost_nusd(sonnet, &u), 3000);
	/* nothing costs nothing */
	u = (struct usage_tokens){ 0 };
	assert_int_equal(prices_cost_nusd(sonnet, &u), 0);
	assert_true(prices_cost(sonnet, &u) == 0.0);
	/* rounding half up: 1 cached token at $0.01875/Mtok is 18.75 nUSD */
	u = (struct usage_tokens){ .prompt = 1, .cached_prompt = 1 };
	assert_int_equal(prices_cost_nusd(flash, &u), 19);
	u = (struct usage_tokens){ .prompt = 2, .cached_prompt = 2 };
	assert_int_equal(prices_cost_nusd(flash, &u), 38); /* 37.5 */
	u = (struct usage_tokens){ .prompt = 4, .cached_prompt = 4 };
	assert_int_equal(prices_cost_nusd(flash, &u), 75); /* exact */
}

/* A million requests summed in nano-dollars land on the exact total. */
static void test_no_drift(void **state)
{
	const struct price *mini = &prices_lookup("gpt-4o-mini")->price;
	struct usage_tokens u = { .prompt = 1234, .cached_prompt = 1000, .completion = 77 };
	uint64_t sum = 0;

	(void)state;
	/* 234 × 0.15 + 1000 × 0.075 + 77 × 0.60 = 156.3 µUSD */
	for (int i = 0; i < 1000000; i++)
		sum += prices_cost_nusd(mini, &u);
	assert_int_equal(sum, 156300000000ULL); /* $156.30 */
	u.prompt = 1000000ULL * 1234;
	u.cached_prompt = 1000000ULL * 1000;
	u.completion = 1000000ULL * 77;
	assert_int_equal(prices_cost_nusd(mini, &u), sum);
}

static void test_worst_case(void **state)
{
	size_t n;
	const struct price_entry *t = prices_table(&n);
	const struct price *gpt4o = &prices_lookup("gpt-4o")->price;
	const struct price *sonnet = &prices_lookup("claude-3-5-sonnet")->price;
	const struct price *f8b = &prices_lookup("gemini-1.5-flash-8b")->price;

	(void)state;
	/* 1000 × 2.50 + 4096 × 10 = 43460 µUSD */
	assert_int_equal(prices_worst_case_nusd(gpt4o, 1000, 4096), 43460000);
	assert_true(fabs(prices_worst_case(gpt4o, 1000, 4096) - 0.04346) < 1e-15);
	/* Anthropic: a prompt may all be cache writes (3.75) */
	assert_int_equal(prices_worst_case_nusd(sonnet, 1000, 0), 3750000);
	/* rounded up: 1 token at $0.0375/Mtok is 37.5 nUSD */
	assert_int_equal(prices_worst_case_nusd(f8b, 1, 0), 38);
	assert_int_equal(prices_worst_case_nusd(f8b, 0, 0), 0);
	/* never below the settled cost of a request within the reservation */
	for (size_t i = 0; i < n; i++) {
		const struct price *p = &t[i].price;
		static const struct usage_tokens us[] = {
			{ 1000, 4096, 0, 0 }, { 1000, 4096, 1000, 0 },
			{ 400, 4096, 100, 600 }, { 0, 4096, 0, 1000 },
			{ 1, 1, 1, 0 }, { 999, 3, 0, 1 },
		};
		for (size_t k = 0; k < sizeof(us) / sizeof(us[0]); k++) {
			uint64_t w = prices_worst_case_nusd(p, 1000, 4096);

			assert_true(w >= prices_cost_nusd(p, &us[k]));
			assert_true(prices_worst_case(p, 1000, 4096) >= prices_cost(p, &us[k]));
		}
	}
}

static void test_huge(void **state)
{
	const struct price *pro = &prices_lookup("o1-pro")->price;
	struct price max = { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX };
	struct usage_tokens u = { UINT64_MAX, UINT64_MAX, UINT64_MAX / 2, UINT64_MAX };
	double d;

	(void)state;
	/* 1e12 tokens out at $600/Mtok: $600M, exact in nano-dollars */
	u = (struct usage_tokens){ .completion = 1000000000000ULL };
	assert_int_equal(prices_cost_nusd(pro, &u), 600000000000000000ULL);
	assert_true(fabs(prices_cost(pro, &u) - 6e8) < 1e-3);
	/* past what nano-dollars hold: saturate, never wrap */
	u = (struct usage_tokens){ UINT64_MAX, UINT64_MAX, UINT64_MAX / 2, UINT64_MAX };
	assert_true(prices_cost_nusd(pro, &u) == UINT64_MAX);
	assert_true(prices_worst_case_nusd(pro, UINT64_MAX, UINT64_MAX) == UINT64_MAX);
	d = prices_cost(pro, &u);
	assert_true(isfinite(d) && d > 1e15);
	d = prices_worst_case(pro, UINT64_MAX, UINT64_MAX);
	assert_true(isfinite(d) && d > 1e15);
	/* even the 128-bit sum saturates instead of wrapping */
	assert_true(prices_cost_nusd(&max, &u) == UINT64_MAX);
	assert_true(prices_worst_case_nusd(&max, UINT64_MAX, UINT64_MAX) == UINT64_MAX);
	d = prices_cost(&max, &u);
	assert_true(isfinite(d) && d > 1e26);
}

static void test_estimate(void **state)
{
	static const char chat[] =
		"{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
		"\"content\":\"Hello, how are you?\"}]}";
	char big[3001];

	(void)state;
	assert_int_equal(prices_estimate_prompt_tokens(STR_NULL), 0);
	assert_int_equal(prices_estimate_prompt_tokens(STR("a")), 1);
	assert_int_equal(prices_estimate_prompt_tokens(STR("abc")), 1);
	assert_int_equal(prices_estimate_prompt_tokens(STR("abcd")), 2);
	assert_int_equal(prices_estimate_prompt_tokens(STR("abcdef")), 2);
	memset(big, 'x', sizeof(big));
	assert_int_equal(prices_estimate_prompt_tokens(str_make(big, 3000)), 1000);
	assert_int_equal(prices_estimate_prompt_tokens(str_make(big, 3001)), 1001);
	/* OpenAI bills this request 13 prompt tokens (6 of text + framing) */
	assert_true(prices_estimate_prompt_tokens(STR(chat)) >= 13);
	/* the biggest body there can be */
	assert_true(prices_estimate_prompt_tokens(str_make(big, SIZE_MAX)) ==
		    SIZE_MAX / 3 + (SIZE_MAX % 3 != 0));
}

/* docs/prices.md carries each row as --markdown prints it. */
static void test_docs_in_step(void **state)
{
	size_t n, len;
	const struct price_entry *t = prices_table(&n);
	FILE *f = fopen("docs/prices.md", "r");
	char *doc, row[512];

	(void)state;
	if (!f) { /* run from elsewhere: find it next to this file */
		char path[1024];
		const char *file = __FILE__, *slash = strrchr(file, '/');

		snprintf(path, sizeof(path), "%.*s/../../docs/prices.md",
			 slash ? (int)(slash - file) : 1, slash ? file : ".");
		f = fopen(path, "r");
	}
	if (!f)
		fail_msg("docs/prices.md not found: run from the repository root");
	doc = malloc(1 << 20);
	assert_non_null(doc);
	len = fread(doc, 1, (1 << 20) - 1, f);
	doc[len] = '\0';
	fclose(f);
	for (size_t i = 0; i < n; i++) {
		fmt_row(row, sizeof(row), &t[i]);
		if (!strstr(doc, row))
			fail_msg("docs/prices.md lacks: %s", row);
	}
	t = NULL;
	{
		const struct price_alias *a = prices_alias_table(&n);

		for (size_t i = 0; i < n; i++) {
			snprintf(row, sizeof(row), "| `%s` | `%s` |", a[i].from, a[i].to);
			if (!strstr(doc, row))
				fail_msg("docs/prices.md lacks: %s", row);
		}
	}
	free(doc);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_sanity),
		cmocka_unit_test(test_self_map),
		cmocka_unit_test(test_no_borrowing),
		cmocka_unit_test(test_alias_openai),
		cmocka_unit_test(test_alias_anthropic),
		cmocka_unit_test(test_alias_bedrock),
		cmocka_unit_test(test_alias_vertex),
		cmocka_unit_test(test_odd_input),
		cmocka_unit_test(test_for_model),
		cmocka_unit_test(test_from_usd),
		cmocka_unit_test(test_cost),
		cmocka_unit_test(test_no_drift),
		cmocka_unit_test(test_worst_case),
		cmocka_unit_test(test_huge),
		cmocka_unit_test(test_estimate),
		cmocka_unit_test(test_docs_in_step),
	};

	/* `test_prices --markdown`: the docs table, one row per entry */
	if (argc > 1 && !strcmp(argv[1], "--markdown")) {
		size_t n;
		const struct price_entry *t = prices_table(&n);
		char row[512];

		const struct price_alias *a;

		for (size_t i = 0; i < n; i++) {
			fmt_row(row, sizeof(row), &t[i]);
			puts(row);
		}
		a = prices_alias_table(&n);
		for (size_t i = 0; i < n; i++)
			printf("| `%s` | `%s` |\n", a[i].from, a[i].to);
		return 0;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
