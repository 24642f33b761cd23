/*
 * micro.c: the micro benchmark cases (see micro.h). Results are kept live
 * with an empty asm that takes the pointer, or the compiler would delete
 * free(malloc(n)) as a whole.
 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "micro.h"

#define ESC(p) __asm__ volatile("" : : "g"(p) : "memory")

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p) {
		fprintf(stderr, "micro: out of memory (%zu bytes)\n", n);
		abort();
	}
	return p;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* pair/N: malloc(N) and free it at once; the thread cache's best case. */
static void pair(long iters, size_t n, int thread, int nthreads)
{
	for (long i = 0; i < iters; i++) {
		void *p = malloc(n);
		ESC(p);
		free(p);
	}
}

/* ring/N: a ring of 256 blocks of random sizes 8..N; each op frees the
 * oldest and allocates a new one (DESIGN.md's "ring step"). */
static void ring(long iters, size_t n, int thread, int nthreads)
{
	void *r[256] = {0};
	uint64_t s = 88172645463325252ull;
	for (long i = 0; i < iters; i++) {
		unsigned k = (unsigned)i & 255;
		free(r[k]);
		r[k] = malloc(8 + rnd(&s) % (n - 7));
		ESC(r[k]);
	}
	for (unsigned k = 0; k < 256; k++)
		free(r[k]);
}

/* ------------------------------------------------------------------ batches */
/* A batch of B objects allocated, then freed in an order; one op per object. */
#define BATCH 1024

enum order { LIFO, FIFO, RANDOM };

static void batch(long iters, size_t n, enum order ord, int mixed)
{
	void *p[BATCH];
	size_t sz[BATCH];
	unsigned perm[BATCH];
	uint64_t s = 0x9e3779b97f4a7c15ull;
	for (unsigned i = 0; i < BATCH; i++) {
		sz[i] = mixed ? 8 + rnd(&s) % n : n;
		perm[i] = i;
	}
	for (unsigned i = BATCH - 1; i > 0; i--) { /* Fisher-Yates, fixed seed */
		unsigned j = (unsigned)(rnd(&s) % (i + 1)), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (long done = 0; done < iters; done += BATCH) {
		unsigned b = iters - done < BATCH ? (unsigned)(iters - done) : BATCH;
		for (unsigned i = 0; i < b; i++) {
			p[i] = malloc(sz[i]);
			ESC(p[i]);
		}
		/* perm is over BATCH slots: in a short last batch, skip those past b */
		unsigned m = ord == RANDOM ? BATCH : b;
		for (unsigned i = 0; i < m; i++) {
			unsigned k = ord == LIFO ? b - 1 - i : ord == FIFO ? i : perm[i];
			if (k < b)
				free(p[k]);
		}
	}
}

static void batch_lifo(long iters, size_t n, int t, int nt)
{
	batch(iters, n, LIFO, 0);
}

static void batch_fifo(long iters, size_t n, int t, int nt)
{
	batch(iters, n, FIFO, 0);
}

static void batch_random(long iters, size_t n, int t, int nt)
{
	batch(iters, n, RANDOM, 0);
}

/* Random sizes 8..n, freed in random order. */
static void batch_mixed(long iters, size_t n, int t, int nt)
{
	batch(iters, n, RANDOM, 1);
}

/* ---------------------------------------------------------- realloc, calloc */
/* A buffer grown by a quarter at a time from 16 bytes to n, written at its
 * end each time; one op per realloc. */
static void realloc_grow(long iters, size_t n, int t, int nt)
{
	long done = 0;
	while (done < iters) {
		size_t len = 16;
		char *buf = xmalloc(len);
		while (len < n && done < iters) {
			len += len / 4;
			buf = realloc(buf, len);
			if (!buf)
				abort();
			buf[len - 1] = 1;
			done++;
		}
		free(buf);
	}
}

static void calloc_free(long iters, size_t n, int t, int nt)
{
	for (long i = 0; i < iters; i++) {
		char *p = calloc(1, n);
		ESC(p);
		free(p);
	}
}

/* The aligned family: posix_memalign, aligned_alloc, memalign. */
static void align_pm(long iters, size_t n, int t, int nt)
{
	for (long i = 0; i < iters; i++) {
		void *p;
		if (posix_memalign(&p, 64, n))
			abort();
		ESC(p);
		free(p);
	}
}

static void align_page(long iters, size_t n, int t, int nt)
{
	for (long i = 0; i < iters; i++) {
		void *p = aligned_alloc(4096, n);
		ESC(p);
		free(p);
	}
}

/* ---------------------------------------------------------------- threaded */
/* Every thread swaps a new block into a random slot of one shared array and
 * frees what it took out: with several threads most frees are of another
 * thread's block (larson-like). The blocks left in the slots stay live. */
#define SLOTS 4096
static void *slots[SLOTS];

static void exchange(long iters, size_t n, int thread, int nthreads)
{
	uint64_t s = 0x2545f4914f6cdd1dull * (uint64_t)(thread + 1);
	for (long i = 0; i < iters; i++) {
		uint64_t r = rnd(&s);
		void *p = xmalloc(8 + r % n);
		free(__atomic_exchange_n(&slots[(r >> 32) % SLOTS], p, __ATOMIC_ACQ_REL));
	}
}

/* The same exchange, with each block used as a program uses what it
 * allocates: its allocator writes its first word, its freer reads it. In
 * exchange no block is ever touched, so an allocator that keeps no state in
 * free blocks moves no block's line between cores, and one that does (a
 * link, a free mark) moves each remotely freed block's line; here the
 * program moves it once in any case. */
static void exchange_used(long iters, size_t n, int thread, int nthreads)
{
	uint64_t s = 0x2545f4914f6cdd1dull * (uint64_t)(thread + 1);
	uint64_t sum = 0;
	for (long i = 0; i < iters; i++) {
		uint64_t r = rnd(&s);
		uint64_t *p = xmalloc(8 + r % n);
		*p = r;
		uint64_t *q = __atomic_exchange_n(&slots[(r >> 32) % SLOTS], p, __ATOMIC_ACQ_REL);
		if (q)
			sum += *q;
		free(q);
	}
	ESC((void *)(uintptr_t)sum);
}

/* Producer/consumer: each benchmark thread allocates, its own consumer
 * thread frees, through a ring; every free is cross-thread. */
#define RING 1024
struct ring {
	void *slot[RING];
	long head __attribute__((aligned(64))); /* written by the producer */
	long tail __attribute__((aligned(64))); /* written by the consumer */
};

static void relax(unsigned *spins)
{
	if (++*spins > 64) { /* more threads than cores: let the other side run */
		sched_yield();
		*spins = 0;
	} else {
		__builtin_ia32_pause();
	}
}

static void *consumer(void *arg)
{
	struct ring *r = arg;
	for (long t = 0;; t++) {
		unsigned spins = 0;
		while (__atomic_load_n(&r->head, __ATOMIC_ACQUIRE) == t)
			relax(&spins);
		void *p = r->slot[t % RING];
		__atomic_store_n(&r->tail, t + 1, __ATOMIC_RELEASE);
		if (!p)
			return NULL;
		free(p);
	}
}

static void xthread(long iters, size_t n, int thread, int nthreads)
{
	struct ring *r = aligned_alloc(64, sizeof *r);
	if (!r)
		abort();
	memset(r, 0, sizeof *r);
	pthread_t c;
	if (pthread_create(&c, NULL, consumer, r))
		abort();
	for (long h = 0; h <= iters; h++) {
		void *p = h < iters ? xmalloc(n) : NULL; /* NULL: the end */
		if (p)
			*(char *)p = 1;
		unsigned spins = 0;
		while (h - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) >= RING)
			relax(&spins);
		r->slot[h % RING] = p;
		__atomic_store_n(&r->head, h + 1, __ATOMIC_RELEASE);
	}
	pthread_join(c, NULL);
	free(r);
}

const struct micro_case micro_cases[] = {
	{"pair/8", pair, 8, 0},
	{"pair/16", pair, 16, 0},
	{"pair/32", pair, 32, 0},
	{"pair/48", pair, 48, 0},
	{"pair/64", pair, 64, 0},
	{"pair/96", pair, 96, 0},
	{"pair/128", pair, 128, 0},
	{"pair/192", pair, 192, 0},
	{"pair/256", pair, 256, 0},
	{"pair/512", pair, 512, 0},
	{"pair/1024", pair, 1024, 0},
	{"pair/2048", pair, 2048, 0},
	{"pair/4096", pair, 4096, 0},
	{"pair/8192", pair, 8192, 0},
	{"pair/65536", pair, 65536, 0},
	{"pair/524288", pair, 524288, 0},
	{"ring/512", ring, 512, 0},
	{"batch_lifo/64", batch_lifo, 64, 0},
	{"batch_fifo/64", batch_fifo, 64, 0},
	{"batch_random/64", batch_random, 64, 0},
	{"batch_mixed/1024", batch_mixed, 1024, 0},
	{"realloc_grow/1048576", realloc_grow, 1048576, 0},
	{"calloc/64", calloc_free, 64, 0},
	{"calloc/4096", calloc_free, 4096, 0},
	{"calloc/65536", calloc_free, 65536, 0},
	{"posix_memalign64/64", align_pm, 64, 0},
	{"aligned_alloc4096/4096", align_page, 4096, 0},
	{"mt_pair/64", pair, 64, 1},
	{"mt_exchange/512", exchange, 512, 1},
	{"mt_exchange_used/512", exchange_used, 512, 1},
	{"xthread/64", xthread, 64, 1},
};
const int micro_ncases = sizeof micro_cases / sizeof micro_cases[0];
