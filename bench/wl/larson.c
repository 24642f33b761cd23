/*
 * larson.c: the server pattern of Larson and Krishnan (ISMM '98).
 *
 * A shared array holds SLOTS blocks (16..1024 B) per thread; thread t owns
 * partition t.  A step frees a random block of the partition and puts a
 * fresh one in its place.  After `steps` steps a thread starts a successor
 * on the same partition and exits, as a server hands a connection to a new
 * worker, so most blocks die in a thread other than the one that made
 * them, and thread caches are set up and torn down all through the run.  This is
 * where an allocator whose thread caches only recycle their own frees
 * grows without bound, and where a locked remote-free path shows.
 *
 * Usage: larson [quick|full] [threads]; prints "larson ops=N check=X".
 *
 * Every thread is joined: a successor joins its predecessor first thing;
 * the last thread of a chain publishes its id in `last` and posts `done`,
 * and main joins it.  A partition is touched by one thread at a time (the
 * handover is pthread_create, which orders memory), so it needs no lock.
 */
#include <semaphore.h>

#include "wl.h"

#define SLOTS		1000	/* blocks per partition */
#define MINSZ		16	/* >= sizeof(size_t): a block starts with its size */
#define MAXSZ		1024
#define EPOCHS		20	/* threads per partition over the run */
#define MAXTHREADS	256

struct part {
	void **blk;		/* SLOTS entries of `blocks` */
	uint64_t seed;		/* xorshift state, never 0 */
	int epochs_left;	/* including the running thread's */
	int has_prev;
	pthread_t prev;		/* the thread to join, iff has_prev */
	pthread_t last;		/* written by the chain's last thread */
	uint64_t ops, check;
} __attribute__((aligned(64)));	/* no false sharing between partitions */

static void **blocks;		/* nthreads * SLOTS */
static long steps;		/* per thread (epoch) */
static sem_t done;		/* posted once per finished chain */

/* A block holds its size in its first bytes and the slot in its last. */
static void *new_block(uint64_t r, unsigned k)
{
	size_t n = MINSZ + (size_t)(r >> 32) % (MAXSZ - MINSZ + 1);
	unsigned char *b = wl_xmalloc(n);

	memcpy(b, &n, sizeof(n));
	b[n - 1] = (unsigned char)k;
	return b;
}

/* What a block contributes to the checksum; reads both ends of it. */
static uint64_t sum_block(const unsigned char *b)
{
	size_t n;

	memcpy(&n, b, sizeof(n));
	return n + b[n - 1];
}

static void *worker(void *arg)
{
	struct part *p = arg;
	uint64_t s = p->seed, check = 0;

	if (p->has_prev && pthread_join(p->prev, NULL) != 0) {
		fprintf(stderr, "larson: pthread_join failed\n");
		exit(1);
	}
	for (long i = 0; i < steps; i++) {
		uint64_t r = wl_rand(&s);
		unsigned k = (unsigned)(r % SLOTS);

		check += sum_block(p->blk[k]);
		free(p->blk[k]);
		p->blk[k] = new_block(r, k);
		ESC(p->blk[k]);
	}
	p->seed = s;
	p->check += check;
	p->ops += (uint64_t)steps;

	if (--p->epochs_left > 0) {
		pthread_t next;

		p->prev = pthread_self();
		p->has_prev = 1;
		/* From here on p belongs to the successor. */
		if (pthread_create(&next, NULL, worker, p) != 0) {
			fprintf(stderr, "larson: pthread_create failed\n");
			exit(1);
		}
	} else {
		p->last = pthread_self();
		sem_post(&done);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse(argc, argv);
	int nthreads = a.threads;
	uint64_t ops = 0, check = 0;
	struct part *parts;

	if (nthreads < 1 || nthreads > MAXTHREADS) {
		fprintf(stderr, "usage: larson [quick|full] [threads 1..%d]\n", MAXTHREADS);
		return 2;
	}
	steps = a.quick ? 400000 : 4000000;
	blocks = wl_xmalloc((size_t)nthreads * SLOTS * sizeof(*blocks));
	parts = aligned_alloc(64, (size_t)nthreads * sizeof(*parts));
	if (!parts) {
		fprintf(stderr, "larson: out of memory\n");
		return 1;
	}
	memset(parts, 0, (size_t)nthreads * sizeof(*parts));
	sem_init(&done, 0, 0);

	/* Main fills the array, so the first epoch's frees are remote too. */
	for (int t = 0; t < nthreads; t++) {
		struct part *p = &parts[t];

		p->blk = blocks + (size_t)t * SLOTS;
		p->seed = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1);
		p->epochs_left = EPOCHS;
		for (unsigned k = 0; k < SLOTS; k++)
			p->blk[k] = new_block(wl_rand(&p->seed), k);
	}
	for (int t = 0; t < nthreads; t++) {
		pthread_t first;

		if (pthread_create(&first, NULL, worker, &parts[t]) != 0) {
			fprintf(stderr, "larson: pthread_create failed\n");
			return 1;
		}
	}
	for (int t = 0; t < nthreads; t++)
		while (sem_wait(&done) != 0)
			;	/* EINTR */
	for (int t = 0; t < nthreads; t++) {
		struct part *p = &parts[t];

		pthread_join(p->last, NULL);
		for (unsigned k = 0; k < SLOTS; k++) {
			check += sum_block(p->blk[k]);
			free(p->blk[k]);
		}
		ops += p->ops;
		check += p->check;
	}
	sem_destroy(&done);
	free(parts);
	free(blocks);
	wl_done("larson", ops, check);
	return 0;
}
