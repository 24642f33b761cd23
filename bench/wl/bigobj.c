/*
 * bigobj: big objects, 256 KiB to 64 MiB (log-uniform), every page
 * written, eight alive per thread. Measures the large path: page-level
 * allocation, mmap and munmap, and what is kept mapped between uses.
 */
#include "wl.h"

static void *work(void *arg)
{
	struct wl_job *j = arg;
	char *ring[8] = {0};
	for (long i = 0; i < j->n; i++) {
		/* log-uniform over [2^18, 2^26] */
		size_t size = (size_t)1 << (18 + wl_rand(&j->seed) % 8);
		size += wl_rand(&j->seed) % size;
		char *p = wl_xmalloc(size);
		for (size_t off = 0; off < size; off += 4096)
			p[off] = (char)(off >> 12); /* the page number: the check reads one back */
		j->check += (unsigned char)p[size / 2 & ~(size_t)4095];
		free(ring[i % 8]);
		ring[i % 8] = p;
	}
	for (int k = 0; k < 8; k++)
		free(ring[k]);
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse(argc, argv);
	struct wl_job *j = calloc((size_t)a.threads, sizeof *j);
	for (int t = 0; t < a.threads; t++)
		j[t] = (struct wl_job){a.quick ? 15 : 150, 0, (uint64_t)t * 7919 + 1, 0};
	wl_run_jobs("bigobj", j, a.threads, work);
	free(j);
	return 0;
}
