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

static void *work(void *arg)
{
	struct wl_job *j = arg; /* arg: blocks alive on this thread */
	struct wl_block ring[LIVE] = {{0}};

	for (long i = 0; i < j->n; i++) {
		struct wl_block *b = &ring[i % j->arg];
		wl_block_free("bigmix", b, PAGE);
		b->n = wl_size(&j->seed, MINSZ, MAXSZ);
		b->p = wl_xmalloc(b->n);
		b->tag = wl_tag(&j->seed);
		wl_fill(b->p, b->n, PAGE, b->tag);
		j->check += b->n >> 20;
	}
	for (int k = 0; k < j->arg; k++)
		wl_block_free("bigmix", &ring[k], PAGE);
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse(argc, argv);
	int nt = a.threads < LIVE ? a.threads : LIVE;
	long total = a.quick ? 40 : 400;
	struct wl_job *j = calloc((size_t)nt, sizeof *j);

	if (!j)
		wl_fail("bigmix", "out of memory", NULL);
	for (int t = 0; t < nt; t++)
		j[t] = (struct wl_job){total / nt, LIVE / nt + (t < LIVE % nt), (uint64_t)t * 7919 + 1, 0};
	wl_run_jobs("bigmix", j, nt, work);
	free(j);
	return 0;
}
