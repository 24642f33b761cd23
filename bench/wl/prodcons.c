/*
 * prodcons.c: producer/consumer hand-off, where almost every free is a
 * remote free.
 *
 * T/2 producers (at least one) malloc objects of 16..256 B, stamp them and
 * pass them, 64 pointers per queue slot, through one bounded queue to the
 * other threads (at least one), which read them, overwrite them and free
 * them.  Message passing, request pipelines and work queues look like
 * this.  A thread cache that only refills from its own frees starves on
 * the producer side and overflows on the consumer side, so the cost of
 * sending freed objects home, or of reusing them where they die, is what
 * this measures.  The batches keep the queue's own locking small next to
 * the 64 mallocs and frees behind each hand-off.
 *
 * Built twice: as prodcons (16..256 B, the defaults below) and, with
 * -DWL_NAME='"prodcons-mixed"' -DMAXSZ=16384 -DBATCHES=..., as
 * prodcons-mixed, where the sizes reach past the small classes into whole
 * pages.  The consumer checks each object's stamps before it frees it.
 *
 * Usage: prodcons [quick|full] [threads]; prints "prodcons ops=N check=X".
 */
#include "wl.h"

#ifndef WL_NAME
#define WL_NAME		"prodcons"
#endif
#ifndef MAXSZ
#define MAXSZ		256
#endif
#ifndef BATCHES
#define BATCHES		80000	/* in full mode; a tenth in quick mode */
#endif
#define BATCH		64	/* objects per queue slot */
#define QSLOTS		16
#define MINSZ		16	/* >= sizeof(size_t): an object starts with its size */
#define MAXTHREADS	256

struct batch {
	unsigned char *obj[BATCH];
};

/*
 * slot[head], ..., slot[(head + count - 1) % QSLOTS] are full, in order.
 * taken counts batches handed to consumers; when it reaches total no more
 * will come, and a consumer that finds the queue empty then exits.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t nonempty, nonfull;
	struct batch slot[QSLOTS];
	unsigned head, count;
	long taken, total;
} q = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.nonempty = PTHREAD_COND_INITIALIZER,
	.nonfull = PTHREAD_COND_INITIALIZER,
};

struct job {
	uint64_t seed;		/* producers: xorshift state, never 0 */
	long batches;		/* producers: how many to make */
	uint64_t check;		/* consumers: sum over what they freed */
} __attribute__((aligned(64)));

static void *producer(void *arg)
{
	struct job *j = arg;
	uint64_t s = j->seed;
	struct batch b;

	for (long n = 0; n < j->batches; n++) {
		for (int i = 0; i < BATCH; i++) {
			size_t sz = wl_size(&s, MINSZ, MAXSZ);
			unsigned char *p = wl_xmalloc(sz);

			/* First bytes: size; last byte: position. */
			memcpy(p, &sz, sizeof sz);
			p[sz - 1] = (unsigned char)i;
			b.obj[i] = p;
		}
		pthread_mutex_lock(&q.lock);
		while (q.count == QSLOTS)
			pthread_cond_wait(&q.nonfull, &q.lock);
		q.slot[(q.head + q.count) % QSLOTS] = b;
		q.count++;
		pthread_cond_signal(&q.nonempty);
		pthread_mutex_unlock(&q.lock);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct job *j = arg;
	uint64_t check = 0;
	struct batch b;

	for (;;) {
		pthread_mutex_lock(&q.lock);
		while (q.count == 0 && q.taken < q.total)
			pthread_cond_wait(&q.nonempty, &q.lock);
		if (q.count == 0) {
			pthread_mutex_unlock(&q.lock);
			break;
		}
		b = q.slot[q.head];
		q.head = (q.head + 1) % QSLOTS;
		q.count--;
		/* The last batch out wakes every consumer so they can exit. */
		if (++q.taken == q.total)
			pthread_cond_broadcast(&q.nonempty);
		/*
		 * Producers sleep on a full queue until it is half empty: one
		 * wake-up per QSLOTS/2 batches, not one per batch.  count moves
		 * by one at a time, so it cannot drain past QSLOTS/2 unseen.
		 */
		if (q.count == QSLOTS / 2)
			pthread_cond_broadcast(&q.nonfull);
		pthread_mutex_unlock(&q.lock);

		for (int i = 0; i < BATCH; i++) {
			unsigned char *p = b.obj[i];
			size_t sz;

			memcpy(&sz, p, sizeof sz);
			if (sz < MINSZ || sz > MAXSZ || p[sz - 1] != (unsigned char)i)
				wl_fail(WL_NAME, "stamp changed", p);
			check += sz + p[sz - 1];
			memset(p, 0x5a, sz);	/* the consumer owns the lines now */
			ESC(p);
			free(p);
		}
	}
	j->check = check;
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse(argc, argv);
	int nthreads = a.threads;
	int nprod, ncons;
	long per;
	struct job *jobs;
	pthread_t *th;
	uint64_t check = 0;

	if (nthreads < 1 || nthreads > MAXTHREADS) {
		fprintf(stderr, "usage: " WL_NAME " [quick|full] [threads 1..%d]\n", MAXTHREADS);
		return 2;
	}
	nprod = nthreads / 2 > 0 ? nthreads / 2 : 1;
	ncons = nthreads - nprod > 0 ? nthreads - nprod : 1;
	per = (a.quick ? BATCHES / 10 : BATCHES) / nprod;	/* batches per producer */
	q.total = per * nprod;

	jobs = aligned_alloc(64, (size_t)(nprod + ncons) * sizeof(*jobs));
	th = malloc((size_t)(nprod + ncons) * sizeof(*th));
	if (!jobs || !th)
		wl_fail(WL_NAME, "out of memory", NULL);
	memset(jobs, 0, (size_t)(nprod + ncons) * sizeof(*jobs));
	for (int t = 0; t < nprod + ncons; t++) {
		int is_prod = t < nprod;

		jobs[t].seed = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1);
		jobs[t].batches = per;
		if (pthread_create(&th[t], NULL, is_prod ? producer : consumer, &jobs[t]) != 0)
			wl_fail(WL_NAME, "pthread_create failed", NULL);
	}
	for (int t = 0; t < nprod + ncons; t++) {
		pthread_join(th[t], NULL);
		if (t >= nprod)
			check += jobs[t].check;
	}
	free(th);
	free(jobs);
	wl_done(WL_NAME, (uint64_t)q.total * BATCH, check);
	return 0;
}
