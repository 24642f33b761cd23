/*
 * t/tcache-threads.c: thread caches under threads. Independent alloc/free
 * in several threads; producer/consumer where one thread frees what another
 * allocated (the remote path back to the owning slab); thousands of short
 * threads whose caches are flushed at exit. Also run under TSan.
 */
#include <pthread.h>
#include <string.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "../lib/tcache.h"
#include "tap.h"

static int errors;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *independent(void *arg)
{
	unsigned long long s = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
	uint64_t *held[64] = {0};
	int e = 0;
	for (int i = 0; i < 20000; i++) {
		int k = (int)(rnd(&s) % 64);
		if (held[k]) {
			e += held[k][0] != (uintptr_t)held[k];
			kalloc_free(held[k]);
		}
		held[k] = kalloc_malloc(8 + rnd(&s) % 2000);
		if (held[k])
			held[k][0] = (uintptr_t)held[k];
		else
			e++;
	}
	for (int k = 0; k < 64; k++)
		kalloc_free(held[k]);
	pthread_mutex_lock(&mu);
	errors += e;
	pthread_mutex_unlock(&mu);
	return NULL;
}

/* A ring of pointers from producer to consumer. */
#define RING 1024
static uint64_t *ring[RING];
static int ring_full[RING];
static long rounds = 100000;

static void *consumer(void *arg)
{
	(void)arg;
	int e = 0;
	for (long i = 0; i < rounds; i++) {
		int k = (int)(i % RING);
		while (!__atomic_load_n(&ring_full[k], __ATOMIC_ACQUIRE))
			;
		uint64_t *p = ring[k];
		e += p[0] != (uintptr_t)p;
		kalloc_free(p);
		__atomic_store_n(&ring_full[k], 0, __ATOMIC_RELEASE);
	}
	pthread_mutex_lock(&mu);
	errors += e;
	pthread_mutex_unlock(&mu);
	return NULL;
}

static void *short_thread(void *arg)
{
	(void)arg;
	void *p[100];
	for (int i = 0; i < 100; i++)
		p[i] = kalloc_malloc((size_t)(i * 37) % 3000 + 1);
	for (int i = 0; i < 100; i++)
		kalloc_free(p[i]);
	return NULL;
}

/* The cache a thread ran with and its id. */
struct seen {
	struct ka_tcache *tc;
	uint32_t id8;
};

static void *record_cache(void *arg)
{
	struct seen *s = arg;
	kalloc_free(kalloc_malloc(64));
	s->tc = ka_tc;
	s->id8 = ka_tc->id8;
	return NULL;
}

static size_t active_objs(void)
{
	size_t n = 0;
	for (unsigned c = 1; c < KA_NR_CLASSES; c++) {
		struct ka_cache_info in;
		ka_cache_info(&ka_kmalloc[c], &in);
		n += in.active_objs;
	}
	return n;
}

int main(void)
{
	plan(7);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, independent, (void *)(uintptr_t)(i + 1));
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ok(errors == 0, "4 threads of independent malloc/free: contents intact");

	/* Producer (this thread) and consumer: every free is cross-thread. */
	pthread_t c;
	pthread_create(&c, NULL, consumer, NULL);
	/*
	 * At most RING objects are live at once. If remotely freed objects never
	 * came back, kmalloc-48 would grow by one object per round; with them
	 * back it stays within RING plus what the two thread caches and the
	 * undrained remote lists hold, whatever the scheduling.
	 */
	struct ka_cache *c48 = &ka_kmalloc[ka_size_class[48 / 8]];
	struct ka_cache_info in;
	size_t peak = 0;
	for (long i = 0; i < rounds; i++) {
		int k = (int)(i % RING);
		while (__atomic_load_n(&ring_full[k], __ATOMIC_ACQUIRE))
			;
		uint64_t *p = kalloc_malloc(48);
		if (i % 256 == 0) {
			ka_cache_info(c48, &in);
			peak = in.num_objs > peak ? in.num_objs : peak;
		}
		p[0] = (uintptr_t)p;
		ring[k] = p;
		__atomic_store_n(&ring_full[k], 1, __ATOMIC_RELEASE);
	}
	pthread_join(c, NULL);
	ok(errors == 0, "producer/consumer, %ld objects freed by the other thread: contents intact", rounds);
	ok(peak < (size_t)rounds / 10,
	   "objects freed remotely come back to the producer (%s: at most %zu objects for %ld rounds)",
	   c48->name, peak, rounds);
	for (unsigned k = 1; k < KA_NR_CLASSES; k++)
		ka_slab_validate(&ka_kmalloc[k]);

	/*
	 * A thread that takes over a retired cache gets a new owner id, so it
	 * does not take over the slabs of the thread that retired it.
	 */
	struct seen s1, s2;
	pthread_t r;
	pthread_create(&r, NULL, record_cache, &s1);
	pthread_join(r, NULL);
	pthread_create(&r, NULL, record_cache, &s2);
	pthread_join(r, NULL);
	ok(s1.tc == s2.tc && s1.id8 != s2.id8, "a retired cache is reused with a fresh id (%u -> %u)",
	   s1.id8 >> 8, s2.id8 >> 8);

	/* Thousands of short threads: their caches are flushed at exit. */
	kalloc_malloc_trim(0);
	size_t before = active_objs();
	for (int wave = 0; wave < 30; wave++) {
		pthread_t s[100];
		for (int i = 0; i < 100; i++)
			pthread_create(&s[i], NULL, short_thread, NULL);
		for (int i = 0; i < 100; i++)
			pthread_join(s[i], NULL);
	}
	size_t after = active_objs();
	ok(after <= before + 64, "3000 short threads leave nothing behind (active objects %zu -> %zu)", before,
	   after);
	ok(ka_tcache_held_bytes() < 64 * 1024, "exited threads' caches hold nothing (%zu bytes in caches)",
	   ka_tcache_held_bytes());
	kalloc_malloc_trim(0);
	struct ka_buddy_stats st;
	ka_buddy_stats(&st);
	ok(active_objs() == 0 && st.free_pages == st.managed_pages,
	   "after trim: no active objects, every page back in the buddy");
	return 0;
}
