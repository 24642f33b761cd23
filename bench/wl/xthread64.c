/*
 * xthread64: one thread allocates 64-byte blocks, another frees them, so
 * that every free is a remote free and the allocating side never gets a
 * block back from its own frees. With more threads, threads/2 such pairs
 * (at least one) run side by side, each with its own ring.
 *
 * A pair shares a single-producer single-consumer ring of pointers. The
 * indices are published every BATCH blocks (a release store, read with an
 * acquire load), so the ring's own cache lines cross cores once per batch,
 * not once per block; a side that finds the ring full or empty yields.
 * The allocator stamps each block with a fill pattern (wl.h) and the
 * freer checks it before it frees.
 *
 * Usage: xthread64 [quick|full] [threads]; prints "xthread64 ops=N check=X".
 */
#include <sched.h>

#include "wl.h"

#define SIZE	64
#define RING	4096	/* slots, a power of two */
#define BATCH	64	/* blocks per index update */
#define MAXPAIRS 128

struct ring {
	unsigned char *slot[RING];
	long head __attribute__((aligned(64))); /* written by the allocator */
	long tail __attribute__((aligned(64))); /* written by the freer */
	long n;					 /* blocks to pass */
	uint64_t check;
} __attribute__((aligned(64)));

static unsigned char tag_of(long i)
{
	return (unsigned char)(1 + i % 255);
}

static void *allocator(void *arg)
{
	struct ring *r = arg;
	long tail = 0;

	for (long i = 0; i < r->n; i += BATCH) {
		long end = i + BATCH < r->n ? i + BATCH : r->n;
		while (end - tail > RING) {
			tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
			if (end - tail > RING)
				sched_yield();
		}
		for (long k = i; k < end; k++) {
			unsigned char *p = wl_xmalloc(SIZE);
			wl_fill(p, SIZE, 16, tag_of(k));
			r->slot[k % RING] = p;
		}
		__atomic_store_n(&r->head, end, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void *freer(void *arg)
{
	struct ring *r = arg;
	long head = 0;
	uint64_t check = 0;

	for (long i = 0; i < r->n;) {
		while (head == i) {
			head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
			if (head == i)
				sched_yield();
		}
		for (; i < head; i++) {
			unsigned char *p = r->slot[i % RING];
			if (!wl_intact(p, SIZE, SIZE, 16, tag_of(i)))
				wl_fail("xthread64", "fill pattern changed", p);
			check += p[SIZE - 1];
			free(p);
		}
		__atomic_store_n(&r->tail, i, __ATOMIC_RELEASE);
	}
	r->check = check;
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse(argc, argv);
	int pairs = a.threads / 2 > 0 ? a.threads / 2 : 1;
	long per;
	struct ring *r;
	pthread_t th[2 * MAXPAIRS];
	uint64_t check = 0;

	if (pairs > MAXPAIRS)
		pairs = MAXPAIRS;
	per = (a.quick ? 1600000L : 16000000L) / pairs;
	r = aligned_alloc(64, (size_t)pairs * sizeof *r);
	if (!r)
		wl_fail("xthread64", "out of memory", NULL);
	memset(r, 0, (size_t)pairs * sizeof *r);
	for (int k = 0; k < pairs; k++) {
		r[k].n = per;
		if (pthread_create(&th[2 * k], NULL, allocator, &r[k]) != 0 ||
		    pthread_create(&th[2 * k + 1], NULL, freer, &r[k]) != 0)
			wl_fail("xthread64", "pthread_create failed", NULL);
	}
	for (int k = 0; k < 2 * pairs; k++)
		pthread_join(th[k], NULL);
	for (int k = 0; k < pairs; k++)
		check += r[k].check;
	free(r);
	wl_done("xthread64", (uint64_t)per * (uint64_t)pairs, check);
	return 0;
}
