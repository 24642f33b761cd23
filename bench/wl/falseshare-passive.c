/*
 * falseshare-passive: passive false sharing (Berger et al.'s
 * cache-thrash test). The main thread allocates one small object per
 * thread, side by side, and hands them out; each thread frees its object
 * and then allocates, writes and frees small objects in a loop. An
 * allocator that reuses a freed object in the thread that freed it gives
 * threads neighbouring bytes of one cache line.
 *
 * Built again with -DWL_NAME='"falseshare-traded"' -DTRADE_SWAPS=N as
 * falseshare-traded: before they free main's objects, the threads swap N
 * blocks each of 8 to 519 bytes through shared slots (as bench/micro's
 * mt_exchange), so that most of their frees are of each other's blocks;
 * an allocator that keeps such frees in the freeing thread once it mostly
 * trades then hands each thread back the object it freed.
 */
#include "wl.h"

#ifndef WL_NAME
#define WL_NAME "falseshare-passive"
#endif
#ifndef TRADE_SWAPS
#define TRADE_SWAPS 0
#endif
#define SLOTS 4096
#define STAMP 0x9e3779b97f4a7c15ull

static void *slots[SLOTS];
static pthread_barrier_t traded;

struct job {
	char *first;
	long objs, writes, swaps;
	uint64_t seed, check;
} __attribute__((aligned(64)));

/* A block in the slots holds its own address, stamped: whoever takes it
 * out checks that nobody else wrote it, and frees it. */
static void take_slot(uint64_t *q)
{
	if (q && *q != ((uint64_t)(uintptr_t)q ^ STAMP)) {
		fprintf(stderr, WL_NAME ": block %p overwritten\n", (void *)q);
		exit(1);
	}
	free(q);
}

static void *work(void *arg)
{
	struct job *j = arg;
	if (TRADE_SWAPS) {
		for (long i = 0; i < j->swaps; i++) {
			uint64_t r = wl_rand(&j->seed);
			uint64_t *p = wl_xmalloc(8 + r % 512);
			*p = (uint64_t)(uintptr_t)p ^ STAMP;
			take_slot(__atomic_exchange_n(&slots[(r >> 32) % SLOTS], p, __ATOMIC_ACQ_REL));
		}
		pthread_barrier_wait(&traded);
	}
	free(j->first);
	j->check = wl_write_small(j->objs, j->writes);
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse(argc, argv);
	struct job *j = aligned_alloc(64, sizeof *j * (size_t)a.threads);
	pthread_t *th = calloc((size_t)a.threads, sizeof *th);
	if (TRADE_SWAPS && pthread_barrier_init(&traded, NULL, (unsigned)a.threads) != 0)
		return 1;
	long swaps = a.quick ? TRADE_SWAPS / 10 : TRADE_SWAPS;
	for (int t = 0; t < a.threads; t++)
		j[t] = (struct job){wl_xmalloc(8), a.quick ? 100000 : 1000000, 1000, swaps,
				    0x2545f4914f6cdd1dull * (uint64_t)(t + 1), 0};
	for (int t = 0; t < a.threads; t++)
		pthread_create(&th[t], NULL, work, &j[t]);
	uint64_t check = 0, ops = 0;
	for (int t = 0; t < a.threads; t++) {
		pthread_join(th[t], NULL);
		check += j[t].check;
		ops += (uint64_t)(j[t].objs + j[t].swaps);
	}
	for (int i = 0; TRADE_SWAPS && i < SLOTS; i++)
		take_slot(slots[i]);
	free(j);
	free(th);
	wl_done(WL_NAME, ops, check);
	return 0;
}
