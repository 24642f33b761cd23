/*
 * init.c: start-up, fork and the lock order.
 *
 * The first call into kalloc may come from the dynamic loader, a
 * constructor, another preloaded library's dlsym (which calls calloc) or a
 * thread started before main. ka_init_slow therefore calls nothing that
 * allocates before kalloc is ready: options come from `environ` (no getenv),
 * secrets from the getrandom system call, the thread-exit key is created
 * (pthread_key_create does not allocate). Only then is ka_ready set; the
 * fork handlers are registered after that, since pthread_atfork may call
 * malloc, which is then served normally.
 *
 * Lock order (every path that holds two takes them in this order; the fork
 * handlers take all of them in it, so the child finds them consistent):
 */
enum ka_lock_order {
	KA_LOCK_LEAK,    /* leak.c: the live-block and stack tables (its scan takes all below) */
	KA_LOCK_PUBLISH, /* stats.c: the published counters (it reads all below) */
	KA_LOCK_TCACHES, /* tcache.c: the list of thread caches */
	KA_LOCK_CACHES,  /* slab.c: the list of caches, then each cache's lock in list order */
	KA_LOCK_HUGE,    /* large.c: dedicated mappings */
	KA_LOCK_ZONE,    /* buddy.c: free areas and chunks */
	KA_LOCK_MAP,     /* pagemap.c: leaf creation */
	KA_LOCK_OS,      /* os.c: the break */
	KA_LOCK_META,    /* meta.c: the metadata bump allocator */
};

#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "tcache.h"

bool ka_ready;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

static void prefork(void)
{
	ka_init();
	ka_leak_prefork();
	ka_stats_prefork();
	ka_tcache_prefork();
	ka_slab_prefork();
	ka_large_prefork();
	ka_buddy_prefork();
	ka_map_prefork();
	ka_os_prefork();
	ka_meta_prefork();
}

static void postfork(bool child)
{
	ka_meta_postfork(child);
	ka_os_postfork(child);
	ka_map_postfork(child);
	ka_buddy_postfork(child);
	ka_large_postfork(child);
	ka_slab_postfork(child);
	ka_tcache_postfork(child);
	ka_stats_postfork(child);
	ka_leak_postfork(child);
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
	ka_options_init();
	ka_debug_init();
	ka_leak_init();
	ka_secret = (uintptr_t)random_word();
	do
		ka_free_key = random_word();
	while (ka_free_key == 0);
	ka_sizeclass_init();
	ka_slab_init();
	ka_tcache_init();
	__atomic_store_n(&ka_ready, true, __ATOMIC_RELEASE);
	pthread_atfork(ka_lock_all, ka_unlock_all, postfork_child);
	pthread_mutex_unlock(&init_lock);
}

/* Initialise at load time too, so that start-up cost is not paid inside a timed loop. */
__attribute__((constructor)) static void init_at_load(void) { ka_init(); }
