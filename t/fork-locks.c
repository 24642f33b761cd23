/*
 * t/fork-locks.c: every lock of init.c's order is taken by the fork
 * handlers, shown one lock at a time, every time (not by luck).
 *
 * For each lock k a holder thread takes it through ka_test_lock(k), as the
 * fork handler would, marks itself inside (as a thread halfway through the
 * lock's work would be), tells the main thread, and waits. The main thread
 * forks. kalloc's prefork calls the test's hook just before it takes k;
 * the hook tells the holder to leave, the holder clears its mark and lets
 * go of k, and only then can prefork take it: the child is made with the
 * mark clear. If prefork does not take k, the hook is not called for it
 * either (init.c calls both from one line), the holder is still inside
 * when the child is made, and the child sees the mark: failure, however
 * the threads are scheduled. The main thread lets the holder go once fork
 * has returned, so no case hangs.
 *
 * A parked lock re-initialised in the child would not deadlock it (postfork
 * starts every lock anew there), so the mark, not a hang, is what fails the
 * broken case; the child still runs every path under alarm(), so a lock
 * left held would fail it by a signal rather than hang the suite.
 *
 * Besides the eight locks (KA_LOCK_CACHES: the list and every cache), two
 * single cache locks: a user kmem cache's and kmalloc-64's, each released
 * at the caches' turn.
 *
 * In the child: small, large and huge blocks, a user cache, a new user
 * cache, the stats tables, malloc_trim, a new thread (plain builds), and
 * ka_*_validate; exit 0 if all of it held.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "tap.h"

enum { CHILD_OK, CHILD_INSIDE = 2, CHILD_BROKEN = 3 };

/* The case being run: how its holder takes and gives, and at which prefork step it lets go. */
static struct {
	int lock;		 /* ka_test_lock number, or -1: hold `mutex` */
	pthread_mutex_t *mutex;	 /* a single cache lock */
	int release_at;		 /* the prefork step whose hook lets the holder go */
} cur;

/* Handshake between the main thread, the hook (on the main thread) and the holder. */
static pthread_mutex_t hs = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hs_cv = PTHREAD_COND_INITIALIZER;
static int holding, leave, hooked;
static int inside; /* atomic: the holder is between taking and giving */

static struct kmem_cache *user_cache;

static void signal_leave(void)
{
	pthread_mutex_lock(&hs);
	leave = 1;
	pthread_cond_broadcast(&hs_cv);
	pthread_mutex_unlock(&hs);
}

static void hook(int lock)
{
	if (lock == cur.release_at) {
		__atomic_store_n(&hooked, 1, __ATOMIC_RELAXED);
		signal_leave();
	}
}

static void *holder(void *arg)
{
	(void)arg;
	if (cur.lock >= 0)
		ka_test_lock(cur.lock);
	else
		pthread_mutex_lock(cur.mutex);
	__atomic_store_n(&inside, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&hs);
	holding = 1;
	pthread_cond_broadcast(&hs_cv);
	while (!leave)
		pthread_cond_wait(&hs_cv, &hs);
	pthread_mutex_unlock(&hs);
	__atomic_store_n(&inside, 0, __ATOMIC_RELAXED);
	if (cur.lock >= 0)
		ka_test_unlock(cur.lock);
	else
		pthread_mutex_unlock(cur.mutex);
	return NULL;
}

/* Allocate, write and free across every path; 0 if every byte read back. */
static int every_path(void)
{
	static const size_t sizes[] = {1, 48, 700, 8192, 20000, 300000, (size_t)3 << 20};
	int bad = 0;
	for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		unsigned char *p = kalloc_malloc(sizes[i]);
		if (!p)
			return 1;
		memset(p, (int)i + 1, sizes[i]);
		p = kalloc_realloc(p, sizes[i] * 2);
		bad += !p || p[0] != i + 1 || p[sizes[i] - 1] != i + 1;
		kalloc_free(p);
	}
	void *obj = kalloc_cache_alloc(user_cache, 0);
	bad += obj == NULL;
	kalloc_cache_free(user_cache, obj);
	struct kmem_cache *c = kalloc_cache_create("fork-child", 40, 0, 0, NULL);
	obj = c ? kalloc_cache_alloc(c, 0) : NULL;
	bad += obj == NULL;
	if (obj)
		kalloc_cache_free(c, obj);
	bad += !c || kalloc_cache_destroy(c) != 0;
	return bad;
}

static void *child_thread(void *arg)
{
	*(int *)arg = every_path();
	return NULL;
}

static int child(void)
{
	if (__atomic_load_n(&inside, __ATOMIC_RELAXED))
		return CHILD_INSIDE;
	alarm(60); /* a lock left held fails the child by SIGALRM, not by a hang */
	int bad = every_path();
	int devnull = open("/dev/null", O_WRONLY);
	ka_stats_print(devnull);
	ka_slabinfo_print(devnull, true);
	close(devnull);
	kalloc_malloc_trim(0);
#if !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
	/* As in t/fork.c: under the sanitizers a thread in the child may block on theirs. */
	pthread_t t;
	int rt = 1;
	if (pthread_create(&t, NULL, child_thread, &rt) == 0)
		pthread_join(t, NULL);
	bad += rt;
#endif
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		ka_slab_validate(&ka_kmalloc[c]);
	ka_slab_validate((struct ka_cache *)user_cache);
	ka_buddy_validate();
	return bad ? CHILD_BROKEN : CHILD_OK;
}

static void run_case(const char *what, int lock, pthread_mutex_t *mutex, int release_at)
{
	cur.lock = lock;
	cur.mutex = mutex;
	cur.release_at = release_at;
	holding = leave = 0;
	__atomic_store_n(&hooked, 0, __ATOMIC_RELAXED);

	pthread_t t;
	pthread_create(&t, NULL, holder, NULL);
	pthread_mutex_lock(&hs);
	while (!holding)
		pthread_cond_wait(&hs_cv, &hs);
	pthread_mutex_unlock(&hs);

	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		_exit(child());
	signal_leave(); /* prefork did not wait for the holder: let it go now */
	pthread_join(t, NULL);
	int st = 0;
	waitpid(pid, &st, 0);
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	if (code == CHILD_INSIDE)
		diag("the child was made while the holder was inside %s: prefork did not take it", what);
	else if (WIFSIGNALED(st))
		diag("the child died of signal %d", WTERMSIG(st));
	ok(code == CHILD_OK && __atomic_load_n(&hooked, __ATOMIC_RELAXED),
	   "fork while a thread holds %s: prefork waited for it, the child used every path and validated", what);
	ok(every_path() == 0, "the parent still uses every path after it");
}

int main(void)
{
	alarm(300); /* a prefork that never gets its lock fails the test instead of hanging make check */
	kalloc_free(kalloc_malloc(1)); /* initialised, so the fork handlers are registered */
	user_cache = kalloc_cache_create("fork-user", 100, 0, 0, NULL);
	void *keep = kalloc_cache_alloc(user_cache, 0);
	ka_set_prefork_hook(hook);

	int nlocks = 0;
	while (ka_test_lock_name(nlocks))
		nlocks++;
	plan(2 * (nlocks + 2));
	for (int k = 0; k < nlocks; k++) {
		char what[64];
		snprintf(what, sizeof what, "the %s lock", ka_test_lock_name(k));
		run_case(what, k, NULL, k);
	}
	int caches = 0;
	while (strcmp(ka_test_lock_name(caches), "caches") != 0)
		caches++;
	run_case("a user kmem cache's lock", -1, &((struct ka_cache *)user_cache)->lock, caches);
	run_case("kmalloc-64's lock", -1, &ka_kmalloc[ka_size_class[64 >> 3]].lock, caches);

	kalloc_cache_free(user_cache, keep);
	return tap_failed != 0;
}
