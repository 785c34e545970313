/* test_cache.c — unit tests for routing/cache.c: the hash against the
 * SipHash-2-4-128 reference vectors and its seeding, hits and misses, the
 * exact LRU eviction order, replacing a value, TTL expiry (an expired
 * entry is a miss, and is reused without counting as an eviction), the
 * disabled capacity-0 cache, value sizes from 0 to an embedding, bucket
 * collisions on the low key half, four threads hammering one cache (values
 * never torn, counters consistent), and the cost of get+put.
 * Runs under ASan+UBSan too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <pthread.h>

#include <cmocka.h>

#include "routing/cache.h"

/* A key from a small integer (tests need exact control over keys). */
static struct cache_key K(uint64_t i)
{
	return (struct cache_key){ i * 0x9e3779b97f4a7c15ull + 1, ~i };
}

static void stats_are(struct cache *c, uint64_t h, uint64_t m, uint64_t e)
{
	uint64_t hits, misses, ev;

	cache_stats(c, &hits, &misses, &ev);
	assert_int_equal(hits, h);
	assert_int_equal(misses, m);
	assert_int_equal(ev, e);
}

/* ---- hash ---- */

/* Reference vectors from the SipHash authors' vectors.h (sip128): key
 * 00..0f, message 00..(i-1). */
static const struct {
	size_t len;
	uint8_t out[16];
} sip_vectors[] = {
	{ 0, { 0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6,
	       0x72, 0x14, 0xc7, 0x55, 0x02, 0x93 } },
	{ 1, { 0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44, 0x34, 0x76,
	       0x59, 0x11, 0x9b, 0x22, 0xfc, 0x45 } },
	{ 7, { 0xa1, 0xf1, 0xeb, 0xbe, 0xd8, 0xdb, 0xc1, 0x53, 0xc0, 0xb8,
	       0x4a, 0xa6, 0x1f, 0xf0, 0x82, 0x39 } },
	{ 8, { 0x3b, 0x62, 0xa9, 0xba, 0x62, 0x58, 0xf5, 0x61, 0x0f, 0x83,
	       0xe2, 0x64, 0xf3, 0x14, 0x97, 0xb4 } },
	{ 15, { 0x54, 0x93, 0xe9, 0x99, 0x33, 0xb0, 0xa8, 0x11, 0x7e, 0x08,
		0xec, 0x0f, 0x97, 0xcf, 0xc3, 0xd9 } },
	{ 16, { 0x6e, 0xe2, 0xa4, 0xca, 0x67, 0xb0, 0x54, 0xbb, 0xfd, 0x33,
		0x15, 0xbf, 0x85, 0x23, 0x05, 0x77 } },
	{ 63, { 0x51, 0x50, 0xd1, 0x77, 0x2f, 0x50, 0x83, 0x4a, 0x50, 0x3e,
		0x06, 0x9a, 0x97, 0x3f, 0xbd, 0x7c } },
};

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void test_siphash_vectors(void **state)
{
	uint8_t key[16], msg[64];

	(void)state;
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 64; i++)
		msg[i] = (uint8_t)i;
	for (size_t v = 0; v < UMB_ARRAY_LEN(sip_vectors); v++) {
		struct cache_key k = cache_siphash128(
			key, str_make((const char *)msg, sip_vectors[v].len));

		assert_int_equal(k.lo, le64(sip_vectors[v].out));
		assert_int_equal(k.hi, le64(sip_vectors[v].out + 8));
	}
}

static void test_hash_seed(void **state)
{
	uint64_t s = cache_seed();
	struct cache_key a, b;

	(void)state;
	assert_int_equal(cache_seed(), s); /* once per process */
	a = cache_hash(STR("summarise this contract"), s);
	b = cache_hash(STR("summarise this contract"), s);
	assert_true(a.lo == b.lo && a.hi == b.hi);
	/* another text, another seed, an empty text: all different */
	b = cache_hash(STR("summarise this contract."), s);
	assert_false(a.lo == b.lo || a.hi == b.hi);
	b = cache_hash(STR("summarise this contract"), s + 1);
	assert_false(a.lo == b.lo || a.hi == b.hi);
	b = cache_hash(STR_NULL, s);
	assert_false(a.lo == b.lo || a.hi == b.hi);
	a = cache_hash(STR(""), s);
	assert_true(a.lo == b.lo && a.hi == b.hi);
	/* a prefix is not the same text (the length is hashed) */
	a = cache_hash(str_make("ab\0", 3), s);
	b = cache_hash(str_make("ab", 2), s);
	assert_false(a.lo == b.lo && a.hi == b.hi);
}

/* ---- single-threaded behaviour ---- */

static void test_hit_miss(void **state)
{
	struct cache *c = cache_new(4, sizeof(double), 60);
	double v = 0.75, out = 0;

	(void)state;
	assert_non_null(c);
	assert_false(cache_get(c, K(1), &out, 1000));
	cache_put(c, K(1), &v, 1000);
	assert_true(cache_get(c, K(1), &out, 1001));
	assert_true(out == 0.75);
	assert_true(cache_get(c, K(1), NULL, 1002)); /* presence only */
	assert_false(cache_get(c, K(2), &out, 1003));
	/* same low half, different high half: another key */
	assert_false(cache_get(c, (struct cache_key){ K(1).lo, 0 }, &out, 1004));
	assert_int_equal(cache_count(c), 1);
	stats_are(c, 2, 3, 0);
	cache_free(c);
}

static void test_lru_order(void **state)
{
	struct cache *c = cache_new(3, sizeof(int), 0);
	int v, out;

	(void)state;
	for (v = 1; v <= 3; v++)
		cache_put(c, K((uint64_t)v), &v, 0);
	/* use 1: the least recently used is now 2 */
	assert_true(cache_get(c, K(1), &out, 0));
	v = 4;
	cache_put(c, K(4), &v, 0);
	assert_false(cache_get(c, K(2), &out, 0));
	stats_are(c, 1, 1, 1);
	/* order now (old → new): 3, 1, 4; replacing 3 refreshes it */
	v = 33;
	cache_put(c, K(3), &v, 0);
	assert_int_equal(cache_count(c), 3);
	v = 5;
	cache_put(c, K(5), &v, 0); /* evicts 1 */
	v = 6;
	cache_put(c, K(6), &v, 0); /* evicts 4 */
	assert_false(cache_get(c, K(1), &out, 0));
	assert_false(cache_get(c, K(4), &out, 0));
	assert_true(cache_get(c, K(3), &out, 0));
	assert_int_equal(out, 33);
	assert_true(cache_get(c, K(5), &out, 0));
	assert_int_equal(out, 5);
	assert_true(cache_get(c, K(6), &out, 0));
	assert_int_equal(out, 6);
	assert_int_equal(cache_count(c), 3);
	stats_are(c, 4, 3, 3);
	cache_free(c);
}

static void test_ttl(void **state)
{
	struct cache *c = cache_new(2, sizeof(int), 2);
	int v = 7, out;

	(void)state;
	cache_put(c, K(1), &v, 1000);
	assert_true(cache_get(c, K(1), &out, 2999));
	assert_false(cache_get(c, K(1), &out, 3000)); /* 2 s after the put */
	assert_int_equal(cache_count(c), 0);	      /* dropped on the get */
	/* a put restarts the TTL */
	cache_put(c, K(1), &v, 5000);
	cache_put(c, K(1), &v, 6500);
	assert_true(cache_get(c, K(1), &out, 8000));
	/* a get does not */
	assert_false(cache_get(c, K(1), &out, 8500));
	stats_are(c, 2, 2, 0);

	/* full, with the LRU entry expired: reused, not an eviction */
	cache_put(c, K(2), &v, 10000);
	cache_put(c, K(3), &v, 11000);
	cache_put(c, K(4), &v, 12500); /* K(2) expired at 12000 */
	stats_are(c, 2, 2, 0);
	cache_put(c, K(5), &v, 12600); /* K(3) still live until 13000 */
	stats_are(c, 2, 2, 1);
	assert_false(cache_get(c, K(3), &out, 12700));
	assert_true(cache_get(c, K(4), &out, 12700));
	cache_free(c);

	/* ttl <= 0: never expires, even at the end of time */
	c = cache_new(1, sizeof(int), 0);
	cache_put(c, K(1), &v, 0);
	assert_true(cache_get(c, K(1), &out, UINT64_MAX - 1));
	cache_free(c);
	c = cache_new(1, sizeof(int), -5);
	cache_put(c, K(1), &v, 0);
	assert_true(cache_get(c, K(1), &out, UINT64_MAX - 1));
	cache_free(c);
	/* a put near the end of the clock does not wrap into the past */
	c = cache_new(1, sizeof(int), 60);
	cache_put(c, K(1), &v, UINT64_MAX - 10);
	assert_true(cache_get(c, K(1), &out, UINT64_MAX - 5));
	cache_free(c);
}

static void test_disabled(void **state)
{
	struct cache *c = cache_new(0, 16, 60);
	char v[16] = "value", out[16];

	(void)state;
	assert_non_null(c);
	cache_put(c, K(1), v, 0);
	assert_false(cache_get(c, K(1), out, 0));
	assert_false(cache_get(c, K(2), out, 0));
	assert_int_equal(cache_count(c), 0);
	stats_are(c, 0, 2, 0);
	cache_free(c);

	/* NULL behaves as a disabled cache */
	cache_put(NULL, K(1), v, 0);
	assert_false(cache_get(NULL, K(1), out, 0));
	assert_int_equal(cache_count(NULL), 0);
	stats_are(NULL, 0, 0, 0);
	cache_stats(NULL, NULL, NULL, NULL);
	cache_free(NULL);

	/* sizes that cannot be allocated are refused up front */
	assert_null(cache_new((size_t)CACHE_MAX_CAPACITY + 1, 4, 0));
	assert_null(cache_new(4, SIZE_MAX / 2, 0));
}

static void test_value_sizes(void **state)
{
	enum { DIM = 768 };
	struct cache *c;
	float *emb = malloc(DIM * sizeof(float)), *out = malloc(DIM * sizeof(float));
	uint8_t one = 0xab, one_out = 0;

	(void)state;
	assert_non_null(emb);
	assert_non_null(out);
	/* an embedding: the whole blob comes back */
	c = cache_new(8, DIM * sizeof(float), 60);
	for (int k = 0; k < 20; k++) {
		for (int i = 0; i < DIM; i++)
			emb[i] = (float)(k * DIM + i);
		cache_put(c, K((uint64_t)k), emb, 0);
	}
	for (int k = 12; k < 20; k++) {
		assert_true(cache_get(c, K((uint64_t)k), out, 1));
		for (int i = 0; i < DIM; i++)
			assert_true(out[i] == (float)(k * DIM + i));
	}
	cache_free(c);
	/* one byte: nothing next to it is written */
	c = cache_new(2, 1, 60);
	cache_put(c, K(1), &one, 0);
	assert_true(cache_get(c, K(1), &one_out, 0));
	assert_int_equal(one_out, 0xab);
	cache_free(c);
	/* zero bytes: a set */
	c = cache_new(2, 0, 60);
	cache_put(c, K(1), NULL, 0);
	assert_true(cache_get(c, K(1), NULL, 0));
	assert_false(cache_get(c, K(2), NULL, 0));
	cache_free(c);
	free(emb);
	free(out);
}

static void test_many_and_collisions(void **state)
{
	enum { CAP = 1000, N = 5000 };
	struct cache *c = cache_new(CAP, sizeof(uint64_t), 0);
	uint64_t out;

	(void)state;
	for (uint64_t i = 0; i < N; i++)
		cache_put(c, K(i), &i, i);
	assert_int_equal(cache_count(c), CAP);
	for (uint64_t i = 0; i < N; i++) {
		bool hit = cache_get(c, K(i), &out, N);
		assert_int_equal(hit, i >= N - CAP);
		if (hit)
			assert_int_equal(out, i);
	}
	stats_are(c, CAP, N - CAP, N - CAP);
	cache_free(c);

	/* every key in one bucket: still exact, still LRU */
	c = cache_new(64, sizeof(uint64_t), 0);
	for (uint64_t i = 0; i < 100; i++)
		cache_put(c, (struct cache_key){ 42, i }, &i, 0);
	for (uint64_t i = 0; i < 100; i++) {
		bool hit = cache_get(c, (struct cache_key){ 42, i }, &out, 0);
		assert_int_equal(hit, i >= 36);
		if (hit)
			assert_int_equal(out, i);
	}
	cache_free(c);
}

/* ---- threads ---- */

enum { THREADS = 4, OPS = 200000, KEYS = 256 };

struct worker {
	struct cache *c;
	unsigned id;
	uint64_t gets, puts, torn;
};

/* Each value is its key's number repeated, so a torn copy shows. */
struct tval {
	uint64_t a, b, c, d;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	uint64_t x = 0x12345678u + w->id;
	struct tval v, out;

	for (unsigned i = 0; i < OPS; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t k = x % KEYS;
		if (x & 0x100) {
			v = (struct tval){ k, k, k, k };
			cache_put(w->c, K(k), &v, i);
			w->puts++;
		} else {
			w->gets++;
			if (cache_get(w->c, K(k), &out, i) &&
			    (out.a != k || out.b != k || out.c != k || out.d != k))
				w->torn++;
		}
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct cache *c = cache_new(64, sizeof(struct tval), 3600);
	struct worker w[THREADS];
	pthread_t t[THREADS];
	uint64_t hits, misses, ev, gets = 0, puts = 0, t0 = clock_mono_ns();

	(void)state;
	for (unsigned i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .c = c, .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	}
	for (unsigned i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].torn, 0);
		gets += w[i].gets;
		puts += w[i].puts;
	}
	print_message("cache %d threads: %.1f ns per operation overall\n",
		      THREADS, (double)(clock_mono_ns() - t0) / (THREADS * OPS));
	cache_stats(c, &hits, &misses, &ev);
	assert_int_equal(hits + misses, gets);
	assert_true(hits > 0 && misses > 0);
	assert_true(ev <= puts);
	assert_int_equal(cache_count(c), 64);
	cache_free(c);
}

/* ---- cost ---- */

static void test_timing(void **state)
{
	enum { N = 1000000 };
	struct cache *c = cache_new(10000, 16, 60);
	char v[16] = { 1 }, out[16];
	uint64_t seed = cache_seed(), t0, ns;
	struct cache_key keys[1024];
	char *text = malloc(65536);

	(void)state;
	for (unsigned i = 0; i < 1024; i++)
		keys[i] = K(i * 7919u);
	t0 = clock_mono_ns();
	for (unsigned i = 0; i < N; i++) {
		struct cache_key k = keys[i & 1023];
		if (!cache_get(c, k, out, i))
			cache_put(c, k, v, i);
		cache_put(c, k, v, i);
	}
	ns = clock_mono_ns() - t0;
	print_message("cache get+put uncontended: %.1f ns per pair\n",
		      (double)ns / N);
#ifndef __SANITIZE_ADDRESS__
	assert_true(ns / N < 1000); /* < 1 us per get+put */
#endif

	/* the hash over typical and long prompts (reported, not asserted) */
	assert_non_null(text);
	memset(text, 'a', 65536);
	for (size_t len = 256; len <= 65536; len *= 16) {
		unsigned reps = (unsigned)(16u * 1048576u / len);
		uint64_t acc = 0;

		t0 = clock_mono_ns();
		for (unsigned i = 0; i < reps; i++)
			acc ^= cache_hash(str_make(text, len), seed + i).lo;
		ns = clock_mono_ns() - t0;
		print_message("cache_hash %zu bytes: %.0f ns (%.2f GB/s) [%llx]\n",
			      len, (double)ns / reps,
			      (double)len * reps / (double)ns,
			      (unsigned long long)(acc & 0xf));
	}
	free(text);
	cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_siphash_vectors),
		cmocka_unit_test(test_hash_seed),
		cmocka_unit_test(test_hit_miss),
		cmocka_unit_test(test_lru_order),
		cmocka_unit_test(test_ttl),
		cmocka_unit_test(test_disabled),
		cmocka_unit_test(test_value_sizes),
		cmocka_unit_test(test_many_and_collisions),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_timing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
