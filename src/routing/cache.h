/* cache.h — a fixed-capacity LRU cache with a TTL for routing results
 * (embeddings of recent prompts, classifier answers), shared by the
 * gateway's worker threads.
 *
 * Keys are 128-bit keyed hashes of the text (cache_hash): SipHash-2-4 with
 * 128-bit output under a per-process random seed (cache_seed), so two
 * texts collide by accident with probability ~2^-128 and a client who does
 * not know the seed cannot craft a text that lands on another's entry (a
 * collision would serve one prompt's route to another). The cache compares
 * whole keys and never sees the text.
 *
 * Values are opaque blobs of value_size bytes, fixed per cache, copied in
 * and out (no pointer into the cache escapes the lock). Every entry is
 * allocated by cache_new: get and put do no allocation, and both are O(1)
 * (chained hash table over entry indices + an intrusive LRU list).
 *
 * One mutex per cache: the critical section is a table probe, a list move
 * and a value copy (tens of ns), far below the per-request work around it,
 * so sharding would add cost (per-shard LRU, split capacity) for nothing
 * (test_cache measures it). Time is the caller's monotonic now_ms. */
#ifndef UMB_CACHE_H
#define UMB_CACHE_H

#include "core/core.h"

/** Largest capacity accepted by cache_new (entries are indexed by u32). */
#define CACHE_MAX_CAPACITY (1u << 28)

/** A 128-bit cache key (the output of cache_hash). */
struct cache_key {
	uint64_t lo, hi;
};

struct cache;

/** The process's random hash seed (drawn from getrandom once, on first
 * use; thread-safe). Different in every process: keys are not stable
 * across restarts, which is fine for a memory-only cache. */
uint64_t cache_seed(void);

/** 128-bit keyed hash of text for cache keys; seed is normally
 * cache_seed(). Pure: same text and seed, same key. */
struct cache_key cache_hash(struct str text, uint64_t seed);

/** SipHash-2-4-128 of text under a 16-byte key (what cache_hash runs,
 * exposed for the reference test vectors). lo/hi are the output's first
 * and last 8 bytes read little-endian. */
struct cache_key cache_siphash128(const uint8_t key[16], struct str text);

/** A cache of `capacity` entries of value_size bytes each, expiring
 * ttl_s seconds after their last put (ttl_s <= 0: never). capacity 0 is a
 * disabled cache: get always misses, put does nothing. NULL if capacity
 * exceeds CACHE_MAX_CAPACITY or capacity * value_size overflows; aborts
 * on out-of-memory like umb_malloc. Free with cache_free. */
struct cache *cache_new(size_t capacity, size_t value_size, int ttl_s);

/** Free the cache and every entry (NULL is fine). No thread may still
 * use it. Every function below also takes NULL, as a disabled cache. */
void cache_free(struct cache *c);

/** Look key up at time now_ms. On a live hit copy the value to out_value
 * (if not NULL), make the entry most recently used and return true. An
 * expired entry is dropped and counts as a miss. */
bool cache_get(struct cache *c, struct cache_key key, void *out_value,
	       uint64_t now_ms);

/** Insert or replace key's value (value_size bytes from value), make it
 * most recently used and restart its TTL. When the cache is full, the
 * least recently used entry is evicted first (an expired one is reused
 * without counting as an eviction). */
void cache_put(struct cache *c, struct cache_key key, const void *value,
	       uint64_t now_ms);

/** Counters since cache_new: hits, misses (expired included) and
 * evictions (live entries dropped for room). Any pointer may be NULL. */
void cache_stats(struct cache *c, uint64_t *hits, uint64_t *misses,
		 uint64_t *evictions);

/** Live or expired entries currently held (for tests and metrics). */
size_t cache_count(struct cache *c);

#endif
