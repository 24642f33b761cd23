/*
 * falseshare-active: active false sharing (Berger et al.'s cache-scratch
 * test). Each thread allocates small objects and writes each many times;
 * an allocator that hands neighbouring bytes of one cache line to
 * different threads makes those writes fight over the line.
 */
#include "wl.h"

struct job {
	long objs, writes;
	uint64_t check;
} __attribute__((aligned(64)));

static void *work(void *arg)
{
	struct job *j = arg;
	j->check = wl_write_small(j->objs, j->writes);
	return NULL;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse(argc, argv);
	struct job *j = aligned_alloc(64, sizeof *j * (size_t)a.threads);
	pthread_t *th = calloc((size_t)a.threads, sizeof *th);
	uint64_t check = 0, ops = 0;
	for (int t = 0; t < a.threads; t++) {
		j[t] = (struct job){a.quick ? 200000 : 2000000, 1000, 0};
		pthread_create(&th[t], NULL, work, &j[t]);
	}
	for (int t = 0; t < a.threads; t++) {
		pthread_join(th[t], NULL);
		check += j[t].check;
		ops += (uint64_t)j[t].objs;
	}
	free(j);
	free(th);
	wl_done("falseshare-active", ops, check);
	return 0;
}
