/*
 * t/early.c: process life under LD_PRELOAD (run by t/preload-start.sh, not
 * linked with the core): threads started from a constructor before main
 * allocate; dlopen/dlclose of shared libraries while other threads
 * allocate; 10k short threads; fork from a threaded state; and exit()
 * while threads are still allocating.
 */

#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int stop_flag;
static pthread_t early[2];
static long early_ops[2];

static void *churn(void *arg)
{
	long *ops = arg;
	unsigned s = 12345;
	void *held[16] = {0};
	while (!__atomic_load_n(&stop_flag, __ATOMIC_RELAXED)) {
		s = s * 1103515245 + 12345;
		int k = (s >> 8) % 16;
		free(held[k]);
		held[k] = malloc((s >> 4) % 5000);
		if (held[k])
			memset(held[k], 1, (s >> 4) % 5000);
		__atomic_fetch_add(ops, 1, __ATOMIC_RELAXED);
	}
	for (int k = 0; k < 16; k++)
		free(held[k]);
	return NULL;
}

__attribute__((constructor)) static void before_main(void)
{
	void *p = calloc(10, 10); /* allocation in a constructor */
	free(p);
	for (int i = 0; i < 2; i++)
		pthread_create(&early[i], NULL, churn, &early_ops[i]);
}

static void *short_thread(void *arg)
{
	free(malloc((size_t)(uintptr_t)arg % 3000 + 1));
	return NULL;
}

int main(void)
{
	int fails = 0;
	/* kalloc is in use: its exported name resolves, and 24 bytes use kmalloc-32. */
	void *sym = dlsym(RTLD_DEFAULT, "kalloc_malloc");
	void *p = malloc(24);
	printf("kalloc loaded: %s\n", sym && malloc_usable_size(p) == 32 ? "yes" : "no");
	free(p);

	/* dlopen/dlclose while the early threads allocate. */
	const char *libs[] = {"libm.so.6", "libz.so.1", "libresolv.so.2"};
	int opened = 0;
	for (int i = 0; i < 200; i++) {
		void *h = dlopen(libs[i % 3], RTLD_NOW | RTLD_LOCAL);
		if (h) {
			opened++;
			double (*cosf_)(double) = (double (*)(double))dlsym(h, "cos");
			if (cosf_ && cosf_(0.0) != 1.0)
				fails++;
			dlclose(h);
		}
	}
	printf("dlopen/dlclose while threads allocate: %s\n", opened >= 100 ? "ok" : "failed");

	/* 10k short threads, in waves. */
	int made = 0;
	for (int w = 0; w < 100; w++) {
		pthread_t t[100];
		for (int i = 0; i < 100; i++)
			made += pthread_create(&t[i], NULL, short_thread, (void *)(uintptr_t)(w * 100 + i)) == 0;
		for (int i = 0; i < 100; i++)
			pthread_join(t[i], NULL);
	}
	printf("short threads: %d\n", made);

	/* fork from a threaded state; the child allocates. */
	int good = 0;
	for (int i = 0; i < 20; i++) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			char *q = malloc(100000);
			for (int j = 0; j < 1000; j++)
				free(malloc((size_t)j * 13 + 1));
			_exit(q ? 0 : 1);
		}
		int st;
		waitpid(pid, &st, 0);
		good += WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	printf("forked children ok: %d\n", good);
	void *a = NULL;
	printf("aligned: %s\n", posix_memalign(&a, 4096, 100) == 0 && ((uintptr_t)a & 4095) == 0 ? "ok" : "no");
	free(a);
	printf("early threads ran: %s\n", early_ops[0] > 0 && early_ops[1] > 0 ? "yes" : "no");
	fflush(stdout);
	/* exit() while the early threads still allocate. */
	exit(fails ? 1 : 0);
}
