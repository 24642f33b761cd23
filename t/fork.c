/*
 * t/fork.c: fork from a program whose threads are busy allocating leaves a
 * consistent, usable allocator in the child (the fork handlers take every
 * lock in one order). Each child allocates and frees across all sizes, in
 * itself and in a new thread, then exits 0. Also run under TSan.
 */
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "tap.h"

static int stop; /* read and written with atomics */

static void *busy(void *arg)
{
	unsigned long long s = (uintptr_t)arg + 1;
	void *held[32] = {0};
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		int k = (int)(rnd(&s) % 32);
		kalloc_free(held[k]);
		held[k] = kalloc_malloc(rnd(&s) % 3 ? rnd(&s) % 512 : rnd(&s) % 200000);
	}
	for (int k = 0; k < 32; k++)
		kalloc_free(held[k]);
	return NULL;
}

static int churn(void)
{
	int bad = 0;
	for (int i = 0; i < 2000; i++) {
		size_t n = (size_t)(i * 997) % (i % 10 ? 600 : 300000);
		unsigned char *p = kalloc_malloc(n + 1);
		if (!p)
			return 1;
		memset(p, (int)i, n + 1);
		bad += p[n] != (unsigned char)i;
		kalloc_free(p);
	}
	return bad;
}

static void *child_thread(void *arg)
{
	*(int *)arg = churn();
	return NULL;
}

int main(void)
{
	plan(2);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, busy, (void *)(uintptr_t)i);
	int good = 0, forks = 100;
	for (int i = 0; i < forks; i++) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			int r = churn(), rt = 0;
/*
 * Under the sanitizers a thread started in the child of a threaded parent
 * can block forever on the sanitizer's own allocator lock (held by a parent
 * thread at the fork), or is refused (TSan): that part runs only in plain
 * builds.
 */
#if !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
			pthread_t ct;
			rt = 1;
			if (pthread_create(&ct, NULL, child_thread, &rt) == 0)
				pthread_join(ct, NULL);
#endif
			for (unsigned c = 1; c < KA_NR_CLASSES; c++)
				ka_slab_validate(&ka_kmalloc[c]);
			ka_buddy_validate();
			_exit(r || rt ? 1 : 0);
		}
		int st;
		waitpid(pid, &st, 0);
		good += WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ok(good == forks, "%d of %d children of a busy threaded parent allocated, validated and exited 0", good,
	   forks);
	ok(churn() == 0, "the parent still allocates after the forks");
	return 0;
}
