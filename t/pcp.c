/*
 * t/pcp.c: per-thread page lists (lib/pcp.c). They are bounded per thread
 * (a thread that frees 100 MiB of 32 KiB blocks keeps at most its cap) and
 * all together (many threads share the budget); they are drained at thread
 * exit and at trim (RSS falls), and by the housekeeping tick once a whole
 * tick passed without a malloc or free of theirs; blocks freed on another thread come back
 * (reused, not leaked); a block in a list freed again is a double free; a
 * fork child of a thread whose sibling holds blocks in its lists allocates
 * and validates. Also run under TSan.
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "tap.h"

/* Page blocks: above the slab classes (KA_SMALL_MAX), within the lists (KA_PCP_MAX_PAGES). */
#define BLK (32 << 10)
_Static_assert(BLK > KA_SMALL_MAX && BLK <= KA_PCP_MAX_PAGES * KA_PAGE_SIZE, "BLK is a page-list block");

/* Pages out of the buddy (used by the program or in page lists). */
static size_t buddy_used(void)
{
	struct ka_buddy_stats st;
	ka_buddy_stats(&st);
	return st.managed_pages - st.free_pages;
}

/* 100 MiB of 32 KiB blocks, 8 MiB at a time: all freed by this thread. */
static void free_100mib(void)
{
	enum { K = (8 << 20) / BLK };
	static void *b[K];
	for (int round = 0; round < 100 * (1 << 20) / BLK / K; round++) {
		for (int i = 0; i < K; i++) {
			b[i] = kalloc_malloc(BLK);
			memset(b[i], 0x33, BLK);
		}
		for (int i = 0; i < K; i++)
			kalloc_free(b[i]);
	}
}

static size_t held_in_thread;
static long rss_in_thread;

static void *exiting(void *arg)
{
	(void)arg;
	free_100mib();
	ka_pcp_validate();
	held_in_thread = ka_pcp_held_bytes();
	rss_in_thread = rss_kib();
	return NULL;
}

/* 6 MiB of small pairs (six ticks), with a 16 KiB pair every 1000 if `use`. */
static void small_pairs(bool use)
{
	for (int i = 0; i < 64000; i++) {
		void *q = kalloc_malloc(100);
		*(volatile char *)q = 1;
		kalloc_free(q);
		if (use && i % 1000 == 0)
			kalloc_free(kalloc_malloc(BLK));
	}
}

/* ---------------------------------------------------- many threads */
#define NT 64
static pthread_barrier_t bar;
static size_t held_all;

static void *many(void *arg)
{
	(void)arg;
	kalloc_free(kalloc_malloc(BLK)); /* every thread has its lists first */
	pthread_barrier_wait(&bar);
	void *b[64];
	for (int i = 0; i < 64; i++)
		b[i] = kalloc_malloc(BLK);
	for (int i = 0; i < 64; i++)
		kalloc_free(b[i]);
	pthread_barrier_wait(&bar); /* main reads the total */
	pthread_barrier_wait(&bar);
	return NULL;
}

/* ---------------------------------------------------- cross-thread */
#define XK 256
#define XROUNDS 100
static void *xq[XK];
static pthread_barrier_t xbar;
static int reused;

static void *consumer(void *arg)
{
	(void)arg;
	for (int r = 0; r < XROUNDS; r++) {
		pthread_barrier_wait(&xbar); /* producer filled xq */
		for (int i = 0; i < XK; i++)
			kalloc_free(xq[i]);
		/* This thread's next blocks of the size are the ones it freed. */
		void *p = kalloc_malloc(BLK);
		for (int i = 0; i < XK; i++)
			reused += p == xq[i];
		kalloc_free(p);
		pthread_barrier_wait(&xbar);
	}
	return NULL;
}

static void double_free(void)
{
	close(2);
	void *p = kalloc_malloc(BLK);
	kalloc_free(p);
	kalloc_free(p); /* p is in this thread's page list */
}

static pthread_mutex_t park = PTHREAD_MUTEX_INITIALIZER;
static void *holder(void *arg)
{
	(void)arg;
	void *b[16];
	for (int i = 0; i < 16; i++)
		b[i] = kalloc_malloc(BLK + 4096 * (i % 3));
	for (int i = 0; i < 16; i++)
		kalloc_free(b[i]);
	pthread_barrier_wait(&bar);
	pthread_mutex_lock(&park); /* held by main until after the fork */
	pthread_mutex_unlock(&park);
	return NULL;
}

int main(void)
{
	plan(11);
	/* Bounded per thread, drained at thread exit. */
	long r0 = rss_kib();
	size_t used0 = buddy_used();
	pthread_t t;
	pthread_create(&t, NULL, exiting, NULL);
	pthread_join(t, NULL);
	ok(held_in_thread <= KA_PCP_THREAD_BYTES && held_in_thread > 0,
	   "a thread that freed 100 MiB of 32 KiB blocks keeps %zu KiB in its lists (cap %zu KiB)",
	   held_in_thread >> 10, KA_PCP_THREAD_BYTES >> 10);
	size_t after_exit = ka_pcp_held_bytes(), used1 = buddy_used();
	ka_buddy_purge(true);
	long r1 = rss_kib();
	ok(after_exit == 0 && used1 <= used0 && r1 < rss_in_thread - (long)(KA_PCP_THREAD_BYTES >> 10) / 2 &&
	   r1 - r0 < 4096,
	   "drained at exit: nothing held (%zu), pages out of the buddy %zu -> %zu, RSS %ld KiB in the thread -> %ld after exit and purge (start %ld)",
	   after_exit, used0, used1, rss_in_thread, r1, r0);

	/* Drained at trim, in this thread. */
	free_100mib();
	size_t held = ka_pcp_held_bytes();
	ka_buddy_purge(true);
	long r2 = rss_kib();
	kalloc_malloc_trim(0);
	long r3 = rss_kib();
	ka_pcp_validate();
	ok(held > 0 && held <= KA_PCP_THREAD_BYTES && ka_pcp_held_bytes() == 0 &&
	   r2 - r3 >= (long)(held >> 10) / 2,
	   "trim drains this thread's lists: %zu KiB -> 0, RSS %ld -> %ld KiB", held >> 10, r2, r3);

	/* Given back by the tick once idle, kept while in use. */
	free_100mib();
	size_t h0 = ka_pcp_held_bytes();
	small_pairs(true);
	size_t h1 = ka_pcp_held_bytes();
	ok(h0 > 0 && h1 > 0, "lists used once a tick are kept: %zu KiB -> %zu KiB", h0 >> 10, h1 >> 10);
	small_pairs(false);
	size_t h2 = ka_pcp_held_bytes();
	ka_pcp_validate();
	ok(h2 == 0, "lists idle for a tick go back at the next: %zu KiB -> %zu KiB", h1 >> 10, h2 >> 10);
	kalloc_malloc_trim(0); /* whatever the answer, nothing stays for the next cases */

	/* Many threads: the budget is shared. */
	pthread_barrier_init(&bar, NULL, NT + 1);
	pthread_t th[NT];
	for (int i = 0; i < NT; i++)
		pthread_create(&th[i], NULL, many, NULL);
	pthread_barrier_wait(&bar);
	pthread_barrier_wait(&bar);
	held_all = ka_pcp_held_bytes();
	pthread_barrier_wait(&bar);
	for (int i = 0; i < NT; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	ok(held_all <= KA_PCP_BUDGET && held_all < NT * (size_t)KA_PCP_THREAD_BYTES / 4,
	   "%d threads that each freed 1 MiB keep %zu KiB in all (budget %zu KiB)", NT, held_all >> 10,
	   KA_PCP_BUDGET >> 10);
	ok(ka_pcp_held_bytes() == 0, "and nothing once they exited");

	/* Freed on another thread: reused there, not leaked. */
	kalloc_malloc_trim(0);
	size_t u0 = buddy_used();
	size_t peak = 0;
	pthread_barrier_init(&xbar, NULL, 2);
	pthread_create(&t, NULL, consumer, NULL);
	for (int r = 0; r < XROUNDS; r++) {
		for (int i = 0; i < XK; i++)
			xq[i] = kalloc_malloc(BLK);
		size_t u = buddy_used();
		if (u > peak)
			peak = u;
		pthread_barrier_wait(&xbar);
		pthread_barrier_wait(&xbar);
	}
	pthread_join(t, NULL);
	pthread_barrier_destroy(&xbar);
	size_t bound = (size_t)XK * (BLK >> KA_PAGE_SHIFT) + 2 * (KA_PCP_THREAD_BYTES >> KA_PAGE_SHIFT);
	ok(reused == XROUNDS && peak - u0 <= bound,
	   "%d rounds of %d blocks freed by another thread: it reused them (%d of %d), pages out of the buddy peak at %zu (bound %zu)",
	   XROUNDS, XK, reused, XROUNDS, peak - u0, bound);
	kalloc_malloc_trim(0);
	ok(buddy_used() <= u0, "all back in the buddy after exit and trim (%zu -> %zu pages)", u0, buddy_used());

	/* A block in a page list freed again. */
	int st = run_child(double_free);
	ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "a double free of a block in a page list aborts");

	/* Fork while another thread holds blocks in its lists. */
	pthread_barrier_init(&bar, NULL, 2);
	pthread_mutex_lock(&park);
	pthread_create(&t, NULL, holder, NULL);
	pthread_barrier_wait(&bar);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		void *b[64];
		for (int i = 0; i < 64; i++)
			memset(b[i] = kalloc_malloc(BLK + 4096 * (i % 5)), 1, BLK);
		for (int i = 0; i < 64; i++)
			kalloc_free(b[i]);
		ka_pcp_validate();
		ka_buddy_validate();
		kalloc_malloc_trim(0);
		_exit(ka_pcp_held_bytes() == 0 ? 0 : 1);
	}
	waitpid(pid, &st, 0);
	pthread_mutex_unlock(&park);
	pthread_join(t, NULL);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	   "fork while a sibling holds page-list blocks: the child allocates, frees, validates, trims");
	return 0;
}
