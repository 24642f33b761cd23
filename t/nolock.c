/*
 * t/nolock.c: no system call on memory (mmap, munmap, mremap, madvise, brk)
 * is made while a cache lock, the zone lock or the huge lock is held. The
 * OS layer's check (ka_os_check_locks) is turned on and every path that
 * maps, unmaps, remaps or purges is driven, from several threads: slabs
 * that need new chunks and go back, large blocks through the page lists
 * and the buddy, huge mappings made, cached, resized and unmapped, purging
 * by age and by trim. Any system call under one of those locks is fatal,
 * and the fatal hook turns it into a failed test. The check itself is
 * shown to fire first (in a child, where it aborts).
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "tap.h"

static void *churn(void *arg)
{
	unsigned long long s = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
	enum { N = 256 };
	void *held[N] = {0};
	for (int round = 0; round < 6; round++) {
		for (int i = 0; i < 4000; i++) {
			int k = (int)(rnd(&s) % N);
			kalloc_free(held[k]);
			unsigned r = (unsigned)(rnd(&s) % 100);
			size_t n = r < 70 ? 8 + rnd(&s) % 8192 : r < 97 ? 8193 + rnd(&s) % (1 << 20)
								: (1 << 20) + rnd(&s) % (8 << 20);
			held[k] = kalloc_malloc(n);
			if (held[k])
				memset(held[k], 1, n < 4096 ? n : 4096);
			if (r == 99 && held[k])
				held[k] = kalloc_realloc(held[k], n * 2);
		}
		/* Free nearly everything: slabs and chunks go back, then purge. */
		for (int k = 0; k < N; k++) {
			kalloc_free(held[k]);
			held[k] = NULL;
		}
		if (round % 2)
			kalloc_malloc_trim(0);
	}
	return NULL;
}

static pthread_mutex_t test_lock = PTHREAD_MUTEX_INITIALIZER;

static void purge_under_lock(void)
{
	close(2); /* the expected message is not the test's output */
	ka_os_check_locks(true);
	void *p = kalloc_malloc(64 << 10);
	ka_lock(&test_lock);
	ka_os_purge(p, 64 << 10);
	ka_unlock(&test_lock);
}

/* A breach in the threaded part: a failed TAP line, not an abort. */
static void breach(const char *msg)
{
	printf("not ok 2 - no system call under a lock: %s", msg);
	fflush(stdout);
	_exit(1);
}

/* In this process, not a fork child: TSan does not follow the locks a
 * fork child re-initialises, and new threads take them. */
static void everything(void)
{
	ka_set_fatal_hook(breach);
	ka_os_check_locks(true);
	ka_opt.purge_delay_ms = 0; /* every slow path purges what is free */
	pthread_t t[3];
	for (uintptr_t i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, churn, (void *)(i + 1));
	churn((void *)99);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	kalloc_malloc_trim(0);
	ka_buddy_validate();
	ka_os_check_locks(false);
	ka_set_fatal_hook(NULL);
}

int main(void)
{
	plan(2);
	int st = run_child(purge_under_lock);
	ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "the check fires: madvise with a counted lock held aborts");
	everything();
	ok(ka_locks_held == 0,
	   "4 threads map, unmap, remap and purge through every layer: no system call under a lock");
	return 0;
}
