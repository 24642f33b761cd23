/*
 * falseshare-passive: passive false sharing (Berger et al.'s
 * cache-thrash test). The main thread allocates one small object per
 * thread, side by side, and hands them out; each thread frees its object
 * and then allocates, writes and frees small objects in a loop. An
 * allocator that reuses a freed object in the thread that freed it gives
 * threads neighbouring bytes of one cache line.
 */
#include "wl.h"

struct job {
	char *first;
	long objs, writes;
	uint64_t check;
} __attribute__((aligned(64)));

static void *work(void *arg)
{
	struct job *j = arg;
	free(j->first);
	j->check = wl_write_small(j->objs, j->writes);
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse(argc, argv);
	struct job *j = aligned_alloc(64, sizeof *j * (size_t)a.threads);
	pthread_t *th = calloc((size_t)a.threads, sizeof *th);
	for (int t = 0; t < a.threads; t++)
		j[t] = (struct job){wl_xmalloc(8), a.quick ? 100000 : 1000000, 1000, 0};
	for (int t = 0; t < a.threads; t++)
		pthread_create(&th[t], NULL, work, &j[t]);
	uint64_t check = 0, ops = 0;
	for (int t = 0; t < a.threads; t++) {
		pthread_join(th[t], NULL);
		check += j[t].check;
		ops += (uint64_t)j[t].objs;
	}
	free(j);
	free(th);
	wl_done("falseshare-passive", ops, check);
	return 0;
}
