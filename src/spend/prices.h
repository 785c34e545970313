/* prices.h — the built-in price table and the cost of one request
 * (DESIGN.md "Spend, budgets, audit", "Budgets"; docs/prices.md).
 *
 * The table is compiled in: an air-gapped gateway fetches nothing at start.
 * Its prices are list prices as known at build time, to be checked, and
 * overridden per model in config (`models[].price`).
 *
 * Unit. A price is an integer number of pico-dollars (1e-12 USD) per token,
 * which is the same number as micro-dollars per million tokens: $2.50/Mtok
 * is 2500000. A token count times a price is then an exact integer of
 * pico-dollars; the sum is formed in unsigned __int128 (no overflow for any
 * uint64_t counts) and converted once. Budgets add up nano-dollars
 * (1e-9 USD, uint64_t: up to $18.4e9) so that sums over millions of
 * requests do not drift: each request is off by at most 0.5 nUSD (cost) or
 * 1 nUSD (worst case, rounded up). */
#ifndef UMB_PRICES_H
#define UMB_PRICES_H

#include <stdint.h>

#include "core/core.h"

struct cfg_model;

/** Prices in pico-USD per token (= micro-USD per million tokens). */
struct price {
	uint64_t input;        /* prompt tokens not read from a cache */
	uint64_t output;       /* completion tokens (reasoning included) */
	uint64_t cached_input; /* prompt tokens read from a cache */
	uint64_t cache_write;  /* prompt tokens written to a cache (Anthropic,
	                        * Bedrock); = input where there is no such price */
};

/** Token counts of one request, normalised by the caller:
 * `prompt` counts every prompt token read, cached ones included, cache
 * writes excluded; `cached_prompt` <= prompt are those read from a cache;
 * `cache_write` are prompt tokens written to a cache, billed on their own.
 *   OpenAI/Azure: prompt = prompt_tokens, cached = prompt_tokens_details.
 *     cached_tokens.
 *   Vertex: prompt = promptTokenCount, cached = cachedContentTokenCount.
 *   Anthropic: prompt = input_tokens + cache_read_input_tokens, cached =
 *     cache_read_input_tokens, cache_write = cache_creation_input_tokens.
 *   Bedrock Converse: prompt = inputTokens + cacheReadInputTokens, cached =
 *     cacheReadInputTokens, cache_write = cacheWriteInputTokens. */
struct usage_tokens {
	uint64_t prompt, completion, cached_prompt, cache_write;
};

enum price_kind { PRICE_CHAT, PRICE_EMBED };

/** One row of the built-in table. */
struct price_entry {
	const char *family;  /* "openai" (also Azure), "anthropic" (also
	                      * Vertex Claude), "bedrock", "vertex" */
	const char *name;    /* canonical model name, lower case */
	enum price_kind kind;
	struct price price;
	const char *tier;    /* the tier chosen when prices are tiered, or NULL */
	const char *source;  /* the vendor's pricing page it was read from */
};

/** An irregular name the rules do not reach ("claude-opus-4-0"). */
struct price_alias {
	const char *from; /* lower case */
	const char *to;   /* a row's name */
};

/** The longest model name looked up; longer names are unpriced. */
#define PRICES_NAME_MAX 255

/** Convert USD per million tokens (config) to pico-USD per token, rounded
 * to the nearest; negatives and NaN give 0, huge values saturate. */
uint64_t prices_from_usd_per_mtok(double usd_per_mtok);

/** The built-in table and its length (for docs, `umbra check`, tests). */
const struct price_entry *prices_table(size_t *n);
/** The alias list and its length (docs, tests). */
const struct price_alias *prices_alias_table(size_t *n);

/** The built-in entry for a model name: case-insensitive exact match, then
 * the aliasing rules of docs/prices.md (dated snapshots, Bedrock
 * inference-profile prefixes and `:N` suffixes, Vertex publisher paths and
 * `@version`, `-latest`). Never a prefix match. NULL when unknown. */
const struct price_entry *prices_lookup(const char *model);

/** The price of a configured model: the config `price:` if set, else 0
 * when locality is onprem, else the table by upstream_model (or, when it
 * is not set, requested_name, then m->name). m may be NULL (table by
 * requested_name only). *source (if non-NULL) is set to "config",
 * "builtin", "onprem" or "unpriced". Returns 0, or UMB_ERR when unpriced
 * (then *out is all zero). */
int prices_for_model(const struct cfg_model *m, const char *requested_name,
		     struct price *out, const char **source);

/** Cost of a request in USD: (prompt - cached) at input, cached at
 * cached_input, cache_write at cache_write, completion at output. cached
 * above prompt is clamped to prompt. Exact until the final conversion. */
double prices_cost(const struct price *p, const struct usage_tokens *u);
/** The same in nano-USD, rounded half up; saturates at UINT64_MAX. */
uint64_t prices_cost_nusd(const struct price *p, const struct usage_tokens *u);

/** The reservation in USD: every prompt token at the dearer of input and
 * cache_write, max_output at output. Never below the cost of a request of
 * those sizes. */
double prices_worst_case(const struct price *p, uint64_t prompt_estimate,
			 uint64_t max_output);
/** The same in nano-USD, rounded up; saturates at UINT64_MAX. */
uint64_t prices_worst_case_nusd(const struct price *p, uint64_t prompt_estimate,
				uint64_t max_output);

/** A cheap estimate of a request body's prompt tokens: ceil(bytes / 3).
 * Above the real count for ordinary text and JSON (about 4 bytes a token
 * plus framing the tokenizer does not bill); adversarial text can beat it
 * (docs/prices.md), which settlement then corrects. */
uint64_t prices_estimate_prompt_tokens(struct str body);

#endif
