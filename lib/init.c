/*
 * init.c: start-up, fork and the lock order.
 *
 * The first call into kalloc may come from the dynamic loader, a
 * constructor, another preloaded library's dlsym (which calls calloc) or a
 * thread started before main. ka_init_slow therefore calls nothing that
 * allocates before kalloc is ready: the report destination is taken first
 * (fd 2 and its private duplicate, report.c), so that option warnings go
 * through it; options come from `environ` (no getenv),
 * secrets from the getrandom system call, the thread-exit key is created
 * (pthread_key_create does not allocate). Only then is ka_ready set; the
 * fork handlers are registered after that, since pthread_atfork may call
 * malloc, which is then served normally.
 *
 * Lock order (every path that holds two takes them in this order; the fork
 * handlers take all of them in it, so the child finds them consistent).
 * No system call on memory is made with a cache lock, the zone lock or the
 * huge lock held (internal.h, ka_lock; os.c checks it):
 */
enum ka_lock_order {
	KA_LOCK_PROF,    /* prof.c: its dumps' lock, then its tables (the metadata lock under them) */
	KA_LOCK_LEAK,    /* leak.c: the live-block and stack tables (its scan takes all below) */
	KA_LOCK_PUBLISH, /* stats.c: the published counters (it reads all below) */
	KA_LOCK_TCACHES, /* tcache.c: the list of thread caches */
	KA_LOCK_PCP,     /* pcp.c: the list of page lists (nothing is taken under it) */
	KA_LOCK_CACHES,  /* slab.c: the list of caches, then each cache's lock in list order */
	KA_LOCK_HUGE,    /* large.c: dedicated mappings */
	KA_LOCK_ZONE,    /* buddy.c: free areas and chunks */
	KA_LOCK_MAP,     /* pagemap.c: leaf creation */
	KA_LOCK_OS,      /* os.c: the break */
	KA_LOCK_META,    /* meta.c: the metadata bump allocator */
	KA_NR_LOCKS
};

#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "tcache.h"

bool ka_ready;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * Each lock of the order with the owner's handlers: take is its prefork
 * (KA_LOCK_CACHES: the list, then every cache, user caches included), give
 * its postfork. Tests take one with ka_test_lock to hold it across a fork.
 */
static const struct {
	const char *name;
	void (*take)(void);
	void (*give)(bool child);
} locks[KA_NR_LOCKS] = {
	[KA_LOCK_PROF] = {"prof", ka_prof_prefork, ka_prof_postfork},
	[KA_LOCK_LEAK] = {"leak", ka_leak_prefork, ka_leak_postfork},
	[KA_LOCK_PUBLISH] = {"publish", ka_stats_prefork, ka_stats_postfork},
	[KA_LOCK_TCACHES] = {"tcaches", ka_tcache_prefork, ka_tcache_postfork},
	[KA_LOCK_PCP] = {"pcp", ka_pcp_prefork, ka_pcp_postfork},
	[KA_LOCK_CACHES] = {"caches", ka_slab_prefork, ka_slab_postfork},
	[KA_LOCK_HUGE] = {"huge", ka_large_prefork, ka_large_postfork},
	[KA_LOCK_ZONE] = {"zone", ka_buddy_prefork, ka_buddy_postfork},
	[KA_LOCK_MAP] = {"map", ka_map_prefork, ka_map_postfork},
	[KA_LOCK_OS] = {"os", ka_os_prefork, ka_os_postfork},
	[KA_LOCK_META] = {"meta", ka_meta_prefork, ka_meta_postfork},
};

/*
 * Test hook, called by prefork just before it takes lock k (from the same
 * line, so that a missing prefork step also misses its hook call): a test
 * that holds k on another thread lets go of it then, and only then, so the
 * fork waits for it; if the step is missing, the test still holds k when
 * the child is made, and the child sees it.
 */
static void (*prefork_hook)(int lock);

void ka_set_prefork_hook(void (*hook)(int lock)) { prefork_hook = hook; }

const char *ka_test_lock_name(int lock) { return lock >= 0 && lock < KA_NR_LOCKS ? locks[lock].name : NULL; }

void ka_test_lock(int lock) { locks[lock].take(); }

void ka_test_unlock(int lock) { locks[lock].give(false); }

static void take(int lock)
{
	void (*h)(int) = prefork_hook;
	if (KA_UNLIKELY(h != NULL))
		h(lock);
	locks[lock].take();
}

static void prefork(void)
{
	ka_init();
	take(KA_LOCK_PROF);
	take(KA_LOCK_LEAK);
	take(KA_LOCK_PUBLISH);
	take(KA_LOCK_TCACHES);
	take(KA_LOCK_PCP);
	take(KA_LOCK_CACHES);
	take(KA_LOCK_HUGE);
	take(KA_LOCK_ZONE);
	take(KA_LOCK_MAP);
	take(KA_LOCK_OS);
	take(KA_LOCK_META);
}

static void postfork(bool child)
{
	for (int k = KA_NR_LOCKS - 1; k >= 0; k--)
		locks[k].give(child);
}

/* The fork handlers, also leak.c's scan at exit. */
void ka_lock_all(void) { prefork(); }
void ka_unlock_all(void) { postfork(false); }
static void postfork_child(void) { postfork(true); }

static uint64_t random_word(void)
{
	uint64_t r = 0;
	if (syscall(SYS_getrandom, &r, sizeof r, 1 /* GRND_NONBLOCK */) != sizeof r) {
		/* No getrandom: mix what differs between runs. */
		const uint64_t *at = (const uint64_t *)getauxval(AT_RANDOM);
		r = (at ? at[1] : 0) ^ (uint64_t)(uintptr_t)&r ^ ka_os_now_ms() * 0x9e3779b97f4a7c15ull;
	}
	return r;
}

void ka_init_slow(void)
{
	pthread_mutex_lock(&init_lock);
	if (ka_ready) {
		pthread_mutex_unlock(&init_lock);
		return;
	}
	ka_report_init();
	ka_options_init();
	ka_debug_init();
	ka_leak_init();
	ka_prof_init();
	do
		ka_secret = (uintptr_t)random_word();
	while (ka_secret == 0);
	ka_map_init();
	ka_sizeclass_init();
	ka_slab_init();
	ka_tcache_init();
	ka_pcp_init();
	__atomic_store_n(&ka_ready, true, __ATOMIC_RELEASE);
	pthread_atfork(ka_lock_all, ka_unlock_all, postfork_child);
	pthread_mutex_unlock(&init_lock);
}

/* Initialise at load time too, so that start-up cost is not paid inside a timed loop. */
__attribute__((constructor)) static void init_at_load(void) { ka_init(); }
