/* cache.c — LRU + TTL cache for routing results (see cache.h).
 *
 * Layout: `cap` entries allocated once, with their values in one separate
 * array (cap * value_size bytes, entry i's value at i * value_size). Each
 * entry sits on exactly one of two lists, linked by u32 indices:
 *   - the LRU list (head = most recently used), while it holds a key, and
 *     then also on the chain of its hash bucket;
 *   - the free list (through `next`), before first use or after its key
 *     expired on a get.
 * Buckets are a power of two >= cap, so chains stay short; the bucket is
 * taken from the key's low bits, which are uniform because keys are keyed
 * hashes. Everything is under one mutex. */
#include "routing/cache.h"

#include <pthread.h>
#include <stdlib.h>

#define CACHE_NIL UINT32_MAX
#define CACHE_NEVER UINT64_MAX

struct cache_entry {
	struct cache_key key;
	uint64_t expires_ms; /* CACHE_NEVER without a TTL */
	uint32_t prev, next; /* LRU neighbours; next also links the free list */
	uint32_t chain;      /* next entry in the same bucket */
};

struct cache {
	pthread_mutex_t lock;
	size_t cap, vsize, mask;
	uint64_t ttl_ms; /* 0: no expiry */
	struct cache_entry *e;
	unsigned char *vals;
	uint32_t *bucket;
	uint32_t head, tail, free_list;
	size_t count;
	uint64_t hits, misses, evictions;
};

/* ---- the hash: SipHash-2-4 with 128-bit output ---- */

static inline uint64_t cache__rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static inline uint64_t cache__le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

#define CACHE_SIPROUND                                                         \
	do {                                                                   \
		v0 += v1;                                                      \
		v1 = cache__rotl(v1, 13);                                      \
		v1 ^= v0;                                                      \
		v0 = cache__rotl(v0, 32);                                      \
		v2 += v3;                                                      \
		v3 = cache__rotl(v3, 16);                                      \
		v3 ^= v2;                                                      \
		v0 += v3;                                                      \
		v3 = cache__rotl(v3, 21);                                      \
		v3 ^= v0;                                                      \
		v2 += v1;                                                      \
		v1 = cache__rotl(v1, 17);                                      \
		v1 ^= v2;                                                      \
		v2 = cache__rotl(v2, 32);                                      \
	} while (0)

/* The reference algorithm (Aumasson & Bernstein), 2 compression and 4
 * finalization rounds, 128-bit output. */
static struct cache_key cache__sip128(uint64_t k0, uint64_t k1,
				      const uint8_t *in, size_t len)
{
	uint64_t v0 = 0x736f6d6570736575ull ^ k0;
	uint64_t v1 = 0x646f72616e646f6dull ^ k1;
	uint64_t v2 = 0x6c7967656e657261ull ^ k0;
	uint64_t v3 = 0x7465646279746573ull ^ k1;
	uint64_t m, b = (uint64_t)len << 56;
	size_t whole = len - len % 8, i;
	struct cache_key out;

	v1 ^= 0xee;
	for (i = 0; i < whole; i += 8) {
		m = cache__le64(in + i);
		v3 ^= m;
		CACHE_SIPROUND;
		CACHE_SIPROUND;
		v0 ^= m;
	}
	for (size_t t = 0; t < len % 8; t++)
		b |= (uint64_t)in[whole + t] << (8 * t);
	v3 ^= b;
	CACHE_SIPROUND;
	CACHE_SIPROUND;
	v0 ^= b;
	v2 ^= 0xee;
	CACHE_SIPROUND;
	CACHE_SIPROUND;
	CACHE_SIPROUND;
	CACHE_SIPROUND;
	out.lo = v0 ^ v1 ^ v2 ^ v3;
	v1 ^= 0xdd;
	CACHE_SIPROUND;
	CACHE_SIPROUND;
	CACHE_SIPROUND;
	CACHE_SIPROUND;
	out.hi = v0 ^ v1 ^ v2 ^ v3;
	return out;
}

struct cache_key cache_siphash128(const uint8_t key[16], struct str text)
{
	return cache__sip128(cache__le64(key), cache__le64(key + 8),
			     (const uint8_t *)(text.n ? text.p : ""), text.n);
}

/* splitmix64's finalizer: spreads one 64-bit seed over the second key
 * half, so nearby seeds give unrelated keys. */
static uint64_t cache__mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

struct cache_key cache_hash(struct str text, uint64_t seed)
{
	return cache__sip128(seed, cache__mix64(seed),
			     (const uint8_t *)(text.n ? text.p : ""), text.n);
}

static pthread_once_t cache_seed_once = PTHREAD_ONCE_INIT;
static uint64_t cache_seed_value;

static void cache__seed_init(void)
{
	rand_bytes(&cache_seed_value, sizeof(cache_seed_value));
}

uint64_t cache_seed(void)
{
	pthread_once(&cache_seed_once, cache__seed_init);
	return cache_seed_value;
}

/* ---- lists and table (caller holds the lock) ---- */

static inline bool cache__key_eq(struct cache_key a, struct cache_key b)
{
	return a.lo == b.lo && a.hi == b.hi;
}

static void cache__lru_unlink(struct cache *c, uint32_t i)
{
	struct cache_entry *e = &c->e[i];

	if (e->prev != CACHE_NIL)
		c->e[e->prev].next = e->next;
	else
		c->head = e->next;
	if (e->next != CACHE_NIL)
		c->e[e->next].prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = CACHE_NIL;
}

static void cache__lru_push(struct cache *c, uint32_t i)
{
	struct cache_entry *e = &c->e[i];

	e->prev = CACHE_NIL;
	e->next = c->head;
	if (c->head != CACHE_NIL)
		c->e[c->head].prev = i;
	else
		c->tail = i;
	c->head = i;
}

static uint32_t cache__find(const struct cache *c, struct cache_key key)
{
	uint32_t i = c->bucket[key.lo & c->mask];

	while (i != CACHE_NIL && !cache__key_eq(c->e[i].key, key))
		i = c->e[i].chain;
	return i;
}

/* Take entry i (present in the table) out of its bucket chain. */
static void cache__table_remove(struct cache *c, uint32_t i)
{
	uint32_t *link = &c->bucket[c->e[i].key.lo & c->mask];

	while (*link != i) {
		UMB_BUG_ON(*link == CACHE_NIL);
		link = &c->e[*link].chain;
	}
	*link = c->e[i].chain;
	c->e[i].chain = CACHE_NIL;
}

/* Drop entry i completely and put it on the free list. */
static void cache__release(struct cache *c, uint32_t i)
{
	cache__lru_unlink(c, i);
	cache__table_remove(c, i);
	c->e[i].next = c->free_list;
	c->free_list = i;
	c->count--;
}

/* ---- API ---- */

struct cache *cache_new(size_t capacity, size_t value_size, int ttl_s)
{
	struct cache *c;
	size_t nb = 1;

	if (capacity > CACHE_MAX_CAPACITY ||
	    (value_size && capacity > SIZE_MAX / value_size))
		return NULL;
	while (nb < capacity)
		nb <<= 1;
	c = umb_calloc(1, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	c->cap = capacity;
	c->vsize = value_size;
	c->mask = nb - 1;
	c->ttl_ms = ttl_s > 0 ? (uint64_t)ttl_s * 1000 : 0;
	c->bucket = umb_malloc(nb * sizeof(*c->bucket));
	for (size_t b = 0; b < nb; b++)
		c->bucket[b] = CACHE_NIL;
	c->e = capacity ? umb_calloc(capacity, sizeof(*c->e)) : NULL;
	c->vals = capacity && value_size ? umb_malloc(capacity * value_size)
					 : NULL;
	c->head = c->tail = CACHE_NIL;
	c->free_list = capacity ? 0 : CACHE_NIL;
	for (size_t i = 0; i < capacity; i++) {
		c->e[i].prev = c->e[i].chain = CACHE_NIL;
		c->e[i].next = i + 1 < capacity ? (uint32_t)(i + 1) : CACHE_NIL;
	}
	return c;
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c->e);
	free(c->vals);
	free(c->bucket);
	free(c);
}

bool cache_get(struct cache *c, struct cache_key key, void *out_value,
	       uint64_t now_ms)
{
	uint32_t i;
	bool hit = false;

	if (!c)
		return false;
	pthread_mutex_lock(&c->lock);
	i = cache__find(c, key);
	if (i == CACHE_NIL) {
		c->misses++;
	} else if (now_ms >= c->e[i].expires_ms) {
		cache__release(c, i);
		c->misses++;
	} else {
		if (out_value && c->vsize)
			memcpy(out_value, c->vals + (size_t)i * c->vsize,
			       c->vsize);
		if (c->head != i) {
			cache__lru_unlink(c, i);
			cache__lru_push(c, i);
		}
		c->hits++;
		hit = true;
	}
	pthread_mutex_unlock(&c->lock);
	return hit;
}

void cache_put(struct cache *c, struct cache_key key, const void *value,
	       uint64_t now_ms)
{
	uint64_t exp = CACHE_NEVER;
	uint32_t i;

	if (!c || !c->cap)
		return;
	if (c->ttl_ms)
		exp = now_ms > CACHE_NEVER - c->ttl_ms ? CACHE_NEVER - 1
						      : now_ms + c->ttl_ms;
	pthread_mutex_lock(&c->lock);
	i = cache__find(c, key);
	if (i != CACHE_NIL) {
		if (c->head != i) {
			cache__lru_unlink(c, i);
			cache__lru_push(c, i);
		}
	} else {
		if (c->free_list == CACHE_NIL) {
			/* full: recycle the least recently used entry */
			i = c->tail;
			if (now_ms < c->e[i].expires_ms)
				c->evictions++;
			cache__release(c, i);
		}
		i = c->free_list;
		c->free_list = c->e[i].next;
		c->e[i].key = key;
		c->e[i].chain = c->bucket[key.lo & c->mask];
		c->bucket[key.lo & c->mask] = i;
		cache__lru_push(c, i);
		c->count++;
	}
	c->e[i].expires_ms = exp;
	if (c->vsize)
		memcpy(c->vals + (size_t)i * c->vsize, value, c->vsize);
	pthread_mutex_unlock(&c->lock);
}

void cache_stats(struct cache *c, uint64_t *hits, uint64_t *misses,
		 uint64_t *evictions)
{
	if (!c) {
		if (hits)
			*hits = 0;
		if (misses)
			*misses = 0;
		if (evictions)
			*evictions = 0;
		return;
	}
	pthread_mutex_lock(&c->lock);
	if (hits)
		*hits = c->hits;
	if (misses)
		*misses = c->misses;
	if (evictions)
		*evictions = c->evictions;
	pthread_mutex_unlock(&c->lock);
}

size_t cache_count(struct cache *c)
{
	size_t n;

	if (!c)
		return 0;
	pthread_mutex_lock(&c->lock);
	n = c->count;
	pthread_mutex_unlock(&c->lock);
	return n;
}
