/*
 * bigmix: blocks of 5 to 25 MiB, 20 alive in all (split between the
 * threads), each written on every page after malloc and read back on every
 * page before free, in a loop. Measures what the huge path costs once the
 * first round is mapped: whether freed mappings are reused or remapped
 * (page faults on every page), and how much is kept mapped to avoid that
 * (peak RSS).
 *
 * Usage: bigmix [quick|full] [threads]; prints "bigmix ops=N check=X".
 */
#include "wl.h"

#define LIVE	20
#define MINSZ	((size_t)5 << 20)
#define MAXSZ	((size_t)25 << 20)
#define PAGE	4096

struct job {
	long n;
	int live;
	uint64_t seed, check;
};

struct big {
	unsigned char *p;
	size_t n;
	unsigned char tag;
};

static void release(struct big *b)
{
	if (!b->p)
		return;
	if (!wl_intact(b->p, b->n, b->n, PAGE, b->tag))
		wl_fail("bigmix", "fill pattern changed", b->p);
	free(b->p);
	b->p = NULL;
}

static void *work(void *arg)
{
	struct job *j = arg;
	struct big ring[LIVE] = {{0}};

	for (long i = 0; i < j->n; i++) {
		struct big *b = &ring[i % j->live];
		release(b);
		b->n = wl_size(&j->seed, MINSZ, MAXSZ);
		b->p = wl_xmalloc(b->n);
		b->tag = wl_tag(&j->seed);
		wl_fill(b->p, b->n, PAGE, b->tag);
		j->check += b->n >> 20;
	}
	for (int k = 0; k < j->live; k++)
		release(&ring[k]);
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse(argc, argv);
	int nt = a.threads < LIVE ? a.threads : LIVE;
	long total = a.quick ? 40 : 400;
	struct job *j = calloc((size_t)nt, sizeof *j);
	pthread_t *th = calloc((size_t)nt, sizeof *th);
	uint64_t ops = 0, check = 0;

	if (!j || !th)
		wl_fail("bigmix", "out of memory", NULL);
	for (int t = 0; t < nt; t++) {
		j[t] = (struct job){total / nt, LIVE / nt + (t < LIVE % nt), (uint64_t)t * 7919 + 1, 0};
		if (pthread_create(&th[t], NULL, work, &j[t]) != 0)
			wl_fail("bigmix", "pthread_create failed", NULL);
	}
	for (int t = 0; t < nt; t++) {
		pthread_join(th[t], NULL);
		ops += (uint64_t)j[t].n;
		check += j[t].check;
	}
	free(j);
	free(th);
	wl_done("bigmix", ops, check);
	return 0;
}
