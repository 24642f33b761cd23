/*
 * shortthreads: many short-lived threads, in waves of twice the thread
 * count. Each allocates 200 small blocks, keeps 50 of them to its end and
 * exits. Measures thread-cache creation and teardown, and whether a
 * thread's leftovers come back for the next ones to use.
 */
#include "wl.h"

static void *work(void *arg)
{
	uint64_t s = (uint64_t)(uintptr_t)arg * 2654435761u + 1, check = 0;
	void *keep[50];
	for (int i = 0; i < 200; i++) {
		char *p = wl_xmalloc(wl_size(&s, 8, 512));
		p[0] = (char)i;
		check += (unsigned char)p[0];
		if (i % 4 == 0)
			keep[i / 4] = p;
		else
			free(p);
	}
	for (int i = 0; i < 50; i++)
		free(keep[i]);
	return (void *)(uintptr_t)check;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse(argc, argv);
	int total = a.quick ? 2000 : 20000, wave = 2 * a.threads;
	pthread_t *th = calloc((size_t)wave, sizeof *th);
	uint64_t check = 0;
	for (int done = 0; done < total; done += wave) {
		for (int t = 0; t < wave; t++)
			pthread_create(&th[t], NULL, work, (void *)(uintptr_t)(done + t + 1));
		for (int t = 0; t < wave; t++) {
			void *r;
			pthread_join(th[t], &r);
			check += (uint64_t)(uintptr_t)r;
		}
	}
	free(th);
	wl_done("shortthreads", (uint64_t)total * 200, check);
	return 0;
}
