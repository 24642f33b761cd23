/*
 * tcache.c: per-thread caches, their slow paths, and their life cycle.
 *
 * A thread's cache is created on its first slow-path call, from kalloc's
 * metadata (never from malloc), and registered with the thread-exit key.
 * Its state (tc_state) only moves forward:
 *   NONE -> CREATING -> LIVE -> DEAD
 * While CREATING (pthread_setspecific may call calloc) and once DEAD (glibc
 * frees and allocates after the key destructors ran) the thread runs
 * cacheless: every call goes to the slabs under their locks, and the cache
 * is never created again.
 *
 * Bins are bounded in bytes: a bin holds at most
 *   min(tcache_max, max(4, KA_TCACHE_BIN_BYTES / class size))
 * objects, so a thread's whole cache stays under ~0.5 MiB whatever it does.
 * A refill brings `fill` objects from the slabs in locked batches, starting
 * at FILL_FIRST and doubling up to half the bin, so that a short thread that
 * uses a class a few times does not carry and then flush a hundred of its
 * objects; a full bin sends its older half back in one batch.
 */
#include <string.h>

#include "internal.h"
#include "tcache.h"

#define KA_TCACHE_BIN_BYTES 16384
#define BATCH 64
#define FILL_FIRST 8

enum { TC_NONE, TC_CREATING, TC_LIVE, TC_DEAD };

static struct ka_tcache empty_tcache = {.id8 = KA_TCACHE_ID_NONE << 8};
__thread struct ka_tcache *ka_tc = &empty_tcache;
static __thread uint8_t tc_state;

static pthread_mutex_t tcaches_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ka_list live = {&live, &live}, spare = {&spare, &spare};
static uint32_t next_id = 1;
static pthread_key_t exit_key;

void ka_tcache_corrupt(void *p, unsigned cls)
{
	ka_fatal("malloc()", "corrupted free list (write after free?) at", p, ka_classes[cls].name);
}

static uint32_t bin_max(unsigned cls)
{
	size_t m = KA_TCACHE_BIN_BYTES / ka_classes[cls].size;
	if (m < 4)
		m = 4;
	return (uint32_t)(m < ka_opt.tcache_max ? m : ka_opt.tcache_max);
}

/* The most a refill brings: half the bin, at least one. */
static uint32_t fill_max(const struct ka_bin *b)
{
	return b->max / 2 ? b->max / 2 : 1;
}

static void destructor(void *arg)
{
	(void)arg;
	ka_tcache_thread_exit();
}

void ka_tcache_init(void)
{
	pthread_key_create(&exit_key, destructor);
}

/* The calling thread's cache, created on first use; NULL to run cacheless. */
static struct ka_tcache *tcache_get(void)
{
	if (KA_LIKELY(tc_state == TC_LIVE))
		return ka_tc;
	if (tc_state != TC_NONE || ka_opt.tcache_max == 0)
		return NULL;
	tc_state = TC_CREATING;
	struct ka_tcache *tc = NULL;
	pthread_mutex_lock(&tcaches_lock);
	if (!ka_list_empty(&spare)) {
		tc = ka_container_of(spare.next, struct ka_tcache, node);
		ka_list_del(&tc->node);
	} else {
		tc = ka_meta_alloc(sizeof *tc, 64);
	}
	/*
	 * A fresh id even for a retired cache: with its old id a thread would
	 * take over the slabs of whichever thread retired it, and two threads
	 * that swap retired caches (larson's successor threads) each refill
	 * from the slabs whose objects the other uses: their cores share cache
	 * lines (larson 2.0 s against 1.27 s). Ids wrap after KA_TCACHE_ID_MAX;
	 * a repeated id costs locality, not correctness, since a slab's owner
	 * only decides which frees go into the freeing thread's own cache.
	 */
	if (tc) {
		tc->id8 = next_id << 8;
		next_id = next_id == KA_TCACHE_ID_MAX ? 1 : next_id + 1;
		ka_list_add(&live, &tc->node);
	}
	pthread_mutex_unlock(&tcaches_lock);
	if (!tc) {
		tc_state = TC_NONE;
		return NULL;
	}
	tc->key = ka_free_key;
	tc->secret = ka_secret;
	for (unsigned c = 1; c < KA_NR_CLASSES; c++) {
		struct ka_bin *b = &tc->bins[c];
		b->head = NULL;
		b->count = 0;
		b->max = bin_max(c);
		b->div = ka_classes[c].div;
		b->limit = ka_classes[c].limit;
		b->slab_mask = ka_classes[c].slab_mask;
		tc->fill[c] = (uint16_t)(fill_max(b) < FILL_FIRST ? fill_max(b) : FILL_FIRST);
	}
	ka_tc = tc;
	pthread_setspecific(exit_key, tc);
	tc_state = TC_LIVE;
	return tc;
}

static void *next_of(void *obj, unsigned cls)
{
	void *next = ka_link_decode(*(void **)obj, obj);
	if ((uintptr_t)next & 7)
		ka_tcache_corrupt(obj, cls);
	return next;
}

static void *pop(struct ka_bin *b, unsigned cls)
{
	char *p = b->head;
	b->head = next_of(p, cls);
	b->count--;
	((uint64_t *)p)[1] = 0;
	return p;
}

static void push(struct ka_bin *b, void *obj)
{
	char *p = obj;
	((uint64_t *)p)[1] = ka_free_key;
	*(void **)p = ka_link_encode(b->head, p);
	b->head = p;
	b->count++;
}

static void refill(struct ka_tcache *tc, unsigned cls)
{
	struct ka_bin *b = &tc->bins[cls];
	uint32_t want = tc->fill[cls];
	if (want * 2 <= fill_max(b))
		tc->fill[cls] = (uint16_t)(want * 2);
	void *objs[BATCH];
	while (want) {
		unsigned n = ka_slab_alloc_batch(&ka_kmalloc[cls], objs, want < BATCH ? want : BATCH, tc->id8 >> 8);
		/* Pushed in reverse, so the bin hands them out in address order. */
		for (unsigned i = n; i-- > 0;) {
			uint64_t *p = objs[i];
			p[0] = (uint64_t)ka_link_encode(b->head, p);
			b->head = p;
			b->count++;
		}
		if (n < (want < BATCH ? want : BATCH))
			break;
		want -= n;
	}
}

/* Send all but the `keep` most recently freed objects of a bin back. */
static void flush(struct ka_tcache *tc, unsigned cls, uint32_t keep)
{
	struct ka_bin *b = &tc->bins[cls];
	if (b->count <= keep)
		return;
	void *cur = b->head, *last_kept = NULL;
	for (uint32_t i = 0; i < keep; i++) {
		last_kept = cur;
		cur = next_of(cur, cls);
	}
	if (last_kept)
		*(void **)last_kept = ka_link_encode(NULL, last_kept);
	else
		b->head = NULL;
	uint32_t n = b->count - keep;
	b->count = keep;
	void *objs[BATCH];
	unsigned m = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (!cur)
			ka_tcache_corrupt(b->head, cls);
		objs[m++] = cur;
		cur = next_of(cur, cls);
		if (m == BATCH || i + 1 == n) {
			ka_slab_free_batch(&ka_kmalloc[cls], objs, m);
			m = 0;
		}
	}
}

void ka_tcache_flush_all(void)
{
	if (tc_state != TC_LIVE)
		return;
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		flush(ka_tc, c, 0);
}

static void retire(struct ka_tcache *tc)
{
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		flush(tc, c, 0);
	pthread_mutex_lock(&tcaches_lock);
	ka_list_del(&tc->node);
	ka_list_add(&spare, &tc->node);
	pthread_mutex_unlock(&tcaches_lock);
}

void ka_tcache_thread_exit(void)
{
	if (tc_state != TC_LIVE)
		return;
	struct ka_tcache *tc = ka_tc;
	ka_tc = &empty_tcache;
	tc_state = TC_DEAD;
	retire(tc);
}

void *ka_tcache_malloc_slow(size_t n)
{
	ka_init();
	if (n > KA_SMALL_MAX)
		return ka_large_alloc(n, KA_PAGE_SIZE, false);
	unsigned cls = ka_size_class[(n + 7) >> 3];
	struct ka_tcache *tc = tcache_get();
	if (!tc)
		return ka_cache_alloc(&ka_kmalloc[cls]);
	struct ka_bin *b = &tc->bins[cls];
	if (!b->head)
		refill(tc, cls);
	return b->head ? pop(b, cls) : NULL;
}

/*
 * The slow path's checks of a pointer into slab s, for every caller (free,
 * realloc, malloc_usable_size): it must be an object start (not inside an
 * object, not in the slab's tail) and not marked free. A marked object is
 * free wherever it waits (a bin of any thread, an outbox, an inbox, its
 * slab), so a match is fatal without a search: that is what catches the
 * second free of an object that another thread freed first.
 */
static void check_object(void *p, struct ka_slab *s, const char *func, const char *freed)
{
	struct ka_cache *c = s->cache;
	char *base = ka_page_addr(ka_container_of(s, struct ka_page, slab));
	if (!ka_obj_offset_ok(c, (size_t)((char *)p - base)))
		ka_fatal(func, "invalid pointer (not the start of an object)", p, c->name);
	if (ka_obj_marked_free(c, p))
		ka_fatal(func, freed, p, c->name);
}

void ka_tcache_check_live(void *p, struct ka_slab *s, const char *func)
{
	check_object(p, s, func, "use of a freed block");
}

void ka_tcache_free_slow(void *p, const char *func)
{
	if (!p)
		return;
	uintptr_t e = ka_map_entry((uintptr_t)p);
	if (!e)
		ka_fatal(func, "invalid pointer (not from kalloc)", p, NULL);
	/* One map lookup for the tag and the slab (the remote frees come here). */
	uint32_t *tagp = (e & KA_MAP_CHUNK) ? ka_map_tag(e, (uintptr_t)p) : NULL;
	uint32_t tag = tagp ? ka_load_relaxed(tagp) : 0;
	struct ka_slab *s = tag ? ka_tag_slab(tagp) : NULL;
	if (!s) {
		ka_large_free(p, func);
		return;
	}
	struct ka_cache *c = s->cache;
	check_object(p, s, func, "double free of");
	if (!c->cls) {
		ka_cache_free(c, p, func);
		return;
	}
	unsigned cls = c->cls;
	struct ka_tcache *tc = tcache_get();
	if (!tc) {
		ka_cache_free(c, p, func);
	} else if ((tag >> 8) == tc->id8 >> 8) {
		struct ka_bin *b = &tc->bins[cls];
		if (b->count >= b->max)
			flush(tc, cls, b->max / 2);
		push(b, p);
	} else {
		ka_slab_free_remote(s, p);
	}
}

size_t ka_tcache_held_bytes(void)
{
	size_t bytes = 0;
	pthread_mutex_lock(&tcaches_lock);
	for (struct ka_list *e = live.next; e != &live; e = e->next) {
		struct ka_tcache *tc = ka_container_of(e, struct ka_tcache, node);
		for (unsigned c = 1; c < KA_NR_CLASSES; c++)
			bytes += (size_t)ka_load_relaxed(&tc->bins[c].count) * ka_classes[c].size;
	}
	pthread_mutex_unlock(&tcaches_lock);
	return bytes;
}

void ka_tcache_prefork(void) { pthread_mutex_lock(&tcaches_lock); }

void ka_tcache_postfork(bool child)
{
	if (!child) {
		pthread_mutex_unlock(&tcaches_lock);
		return;
	}
	pthread_mutex_init(&tcaches_lock, NULL);
	/*
	 * The other threads are gone in the child, but one of them may have
	 * been halfway through a fast-path push or pop (no lock is held
	 * there), so their bins cannot be trusted: they are abandoned, not
	 * flushed. What they held (at most a few hundred KiB a thread) stays
	 * allocated in the child.
	 */
	for (struct ka_list *e = live.next, *nx; e != &live; e = nx) {
		nx = e->next;
		if (ka_container_of(e, struct ka_tcache, node) != ka_tc)
			ka_list_del(e);
	}
}
