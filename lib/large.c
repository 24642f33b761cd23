/*
 * large.c: blocks above the largest slab class.
 *
 * Up to KA_LARGE_MAX (1 MiB) a block is exactly as many buddy pages as it
 * needs (ka_buddy_alloc_pages gives the tail of the power-of-two block back
 * untouched, so a 36 KiB block keeps 9 pages, not 16); its head descriptor
 * is KA_PG_LARGE with npages. Realloc grows or shrinks it in place when the
 * pages after it are free. Blocks of up to KA_PCP_MAX_PAGES pages go
 * through the calling thread's page lists (pcp.c) first; a block sitting in
 * one is KA_PG_PCP, so freeing it again is caught as a double free.
 *
 * Above that, a block is a dedicated mapping (struct ka_huge) starting on a
 * chunk boundary, known to the address map. A freed mapping is kept in a
 * small cache for reuse, newest first, and unmapped once it has been free
 * for purge_delay_ms (checked on the slow paths), when the cache is over its
 * bounds, or on trim. Realloc uses mremap, in place when the kernel can.
 * A new mapping is madvised MADV_HUGEPAGE (thp:1, the default; mremap keeps
 * the advice): a program that writes its huge blocks takes one fault per
 * 2 MiB, not 512. bench/wl/bigmix (blocks of 5 to 25 MiB, every page
 * written) made 383K page faults and took 0.647 s at 2 threads, glibc
 * 300K and 0.495 s; advised, 89K and 0.442 s at a peak RSS of 383 MiB
 * (jemalloc 390). The cost: a block touched sparsely is backed 2 MiB at a
 * time, so thp:0 is there for a program that maps big arrays and touches
 * little of them.
 *
 * No system call is made with huge_lock held: a mapping is taken off the
 * cache (or a spare descriptor off the spare list) under the lock, mapped,
 * remapped or unmapped with it dropped, and accounted under it again. A
 * mapping in flight is on no list; a fork child forgets it (the parent's
 * call that owned it does not exist in the child).
 *
 * Lock order: nothing is taken under huge_lock.
 */
#include <string.h>

#include "internal.h"

/* Freed mappings kept for reuse: more would only raise peak RSS (bench/wl/bigobj
 * full: 462 MiB with 64 MiB allowed, 402 with 32; jemalloc 441). */
#define HUGE_CACHE_MAX 16
#define HUGE_CACHE_BYTES ((size_t)32 << 20)

static pthread_mutex_t huge_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ka_list cached = {&cached, &cached}, spare = {&spare, &spare};
/* Under huge_lock; nr_cached is stored atomically too, for
 * ka_large_purge's test without the lock. */
static size_t nr_cached, cached_bytes, live_bytes, nr_live;

static size_t page_round(size_t n) { return (n + KA_PAGE_SIZE - 1) & ~(KA_PAGE_SIZE - 1); }

static struct ka_huge *huge_of(const void *p)
{
	uintptr_t e = ka_map_entry((uintptr_t)p);
	return (e & KA_MAP_HUGE) ? (struct ka_huge *)(e & ~KA_MAP_TAGS) : NULL;
}

/* Take h off the cache of freed mappings; huge_lock held. */
static void uncache(struct ka_huge *h)
{
	ka_list_del(&h->node);
	ka_store_relaxed(&nr_cached, nr_cached - 1);
	cached_bytes -= h->map_size;
}

/* Unmap a mapping that is on no list; huge_lock not held. */
static void unmap(struct ka_huge *h)
{
	ka_map_set(h->base, h->map_size, 0);
	bool kept;
	ka_os_unmap((void *)h->base, h->map_size, KA_SRC_MMAP, &kept);
}

/* Give a descriptor whose mapping is gone back to the spare list. */
static void add_spare(struct ka_huge *h)
{
	ka_lock(&huge_lock);
	h->state = KA_HUGE_FREE;
	ka_list_add(&spare, &h->node);
	ka_unlock(&huge_lock);
}

/*
 * Move the mappings that are over the cache's bounds or older than the
 * delay (all, if `all`) onto `out`; huge_lock held. They stay CACHED (a
 * free of a stale pointer to one is still a double free) until
 * unmap_list() has unmapped them.
 */
static void trim_cache_locked(bool all, uint64_t now, struct ka_list *out)
{
	while (!ka_list_empty(&cached)) {
		struct ka_huge *old = ka_container_of(cached.prev, struct ka_huge, node);
		if (!all && nr_cached <= HUGE_CACHE_MAX && cached_bytes <= HUGE_CACHE_BYTES &&
		    now - old->freed_ms < ka_opt.purge_delay_ms)
			break;
		uncache(old);
		ka_list_add(out, &old->node);
	}
}

/* Unmap what trim_cache_locked took out; huge_lock not held. */
static void unmap_list(struct ka_list *out)
{
	while (!ka_list_empty(out)) {
		struct ka_huge *h = ka_container_of(out->next, struct ka_huge, node);
		ka_list_del(&h->node);
		unmap(h);
		add_spare(h);
	}
}

/*
 * Resize h's mapping to map_size with mremap: in place, or moved to a chunk
 * boundary by the kernel without copying. Its pages stay resident, so a
 * reused mapping costs no page faults for what it already had. False if
 * the kernel refused. h is the caller's alone (live, or taken off the
 * cache): huge_lock not held.
 */
static bool remap(struct ka_huge *h, size_t map_size)
{
	void *p = (void *)h->base;
	uintptr_t entry = (uintptr_t)h | KA_MAP_HUGE;
	void *np = map_size == h->map_size ? p : ka_os_remap(p, h->map_size, map_size, KA_CHUNK_SIZE);
	/* What the kernel freed may be mapped by another thread already: clear
	 * only what still says h. */
	if (np && np != p) {
		ka_map_clear(h->base, h->map_size, entry);
		ka_map_set((uintptr_t)np, map_size, entry);
	} else if (np && map_size > h->map_size) {
		ka_map_set(h->base, map_size, entry);
	} else if (np && map_size < h->map_size) {
		/* Granules wholly past the new end are no longer ours. */
		uintptr_t g = (h->base + map_size + KA_CHUNK_SIZE - 1) & ~(KA_CHUNK_SIZE - 1);
		if (g < h->base + h->map_size)
			ka_map_clear(g, h->base + h->map_size - g, entry);
	}
	if (!np)
		return false;
	h->base = (uintptr_t)np;
	h->map_size = map_size;
	return true;
}

static void *huge_alloc(size_t size, size_t align, bool *zero)
{
	size_t map_size = page_round(size);
	if (map_size < size)
		return NULL;
	if (align < KA_CHUNK_SIZE)
		align = KA_CHUNK_SIZE;
	struct ka_huge *h = NULL;
	bool resize = false;
	struct ka_list out = {&out, &out};
	ka_lock(&huge_lock);
	trim_cache_locked(false, ka_os_now_ms(), &out);
	/* Reuse a cached mapping that fits without wasting more than a quarter;
	 * else resize the newest one (its resident pages fault no more). */
	for (struct ka_list *e = cached.next; e != &cached; e = e->next) {
		struct ka_huge *c = ka_container_of(e, struct ka_huge, node);
		if (c->map_size >= map_size && c->map_size - map_size <= map_size / 4 &&
		    (c->base & (align - 1)) == 0) {
			h = c;
			break;
		}
	}
	if (!h && !ka_list_empty(&cached) && align == KA_CHUNK_SIZE) {
		h = ka_container_of(cached.next, struct ka_huge, node);
		resize = true;
	}
	struct ka_list *e;
	if (h)
		uncache(h);
	else if ((e = ka_list_pop(&spare)))
		h = ka_container_of(e, struct ka_huge, node);
	bool reused = h && h->state == KA_HUGE_CACHED;
	ka_unlock(&huge_lock);
	unmap_list(&out);
	if (resize && !remap(h, map_size)) {
		unmap(h); /* h stays ours, as the descriptor of a new mapping */
		reused = false;
	}
	*zero = !reused; /* a new mapping reads as zero */
	if (!reused) {
		if (!h && !(h = ka_meta_alloc(sizeof *h, 64)))
			return NULL;
		int source;
		void *base = ka_os_map_region(map_size, align, &source);
		if (!base || ka_map_set((uintptr_t)base, map_size, (uintptr_t)h | KA_MAP_HUGE) != 0) {
			if (base) {
				bool kept;
				ka_map_set((uintptr_t)base, map_size, 0);
				ka_os_unmap(base, map_size, KA_SRC_MMAP, &kept);
			}
			add_spare(h);
			return NULL;
		}
		if (ka_opt.thp)
			ka_os_advise_huge(base, map_size);
		h->base = (uintptr_t)base;
		h->map_size = map_size;
	}
	ka_lock(&huge_lock);
	ka_list_init(&h->node);
	h->size = size;
	h->state = KA_HUGE_LIVE;
	ka_store_relaxed(&h->sampled, 0);
	live_bytes += h->map_size;
	nr_live++;
	ka_unlock(&huge_lock);
	return (void *)h->base;
}

void *ka_large_alloc(size_t size, size_t align, bool zero)
{
	if (size > PTRDIFF_MAX)
		return NULL;
	void *p;
	bool is_zero = false;
	if (size <= KA_LARGE_MAX && align <= KA_LARGE_MAX) {
		size_t npages = page_round(size) >> KA_PAGE_SHIFT;
		size_t apages = align >> KA_PAGE_SHIFT;
		/* Asking for apages pages at least keeps align <= the block's order. */
		size_t want = npages < apages ? apages : npages;
		p = apages <= 1 ? ka_pcp_alloc(npages, &is_zero) : NULL;
		if (!p)
			p = ka_buddy_alloc_pages(want, apages ? apages : 1, KA_PG_LARGE, &is_zero);
		if (p && want > npages)
			ka_buddy_shrink_pages(p, want, npages);
		if (p)
			ka_map_page(p)->large.size = size;
	} else {
		p = huge_alloc(size, align, &is_zero);
	}
	if (p && zero && !is_zero)
		memset(p, 0, size);
	return p;
}

/*
 * The page block a sampled small object is swapped for (prof.c): the one
 * the thread keeps for its page count (pcp.c), else one from the buddy,
 * among the slabs; its free keeps it if none is kept (ka_pcp_keep). Not
 * from the page lists: a refill brings a batch of a size the program may
 * not otherwise use (large blocks start above KA_SMALL_MAX), which then
 * sits there, taking the lists' room from the sizes it does (bench/wl/frag
 * under prof:1: 29% more refills and drains of its 5..16-page blocks, 9%
 * of its instructions). Among the slabs, where blocks of 1..4 pages are
 * the rule, not among the large blocks, whose runs of free pages a page
 * taken here and there would cut up (frag: the buddy's searches cost
 * prof:1 +1.7M and +2.6M instructions in two runs, +1.2M and +1.4M so).
 */
void *ka_large_alloc_sampled(size_t size)
{
	size_t npages = page_round(size ? size : 1) >> KA_PAGE_SHIFT;
	bool zero;
	void *p = ka_pcp_take_kept(npages, &zero);
	if (!p)
		p = ka_buddy_alloc_pages_small(npages, &zero);
	if (p)
		ka_map_page(p)->large.size = size;
	return p;
}

static struct ka_page *large_head(void *p, const char *func)
{
	struct ka_page *pg = ka_map_page(p);
	bool head = pg && ((uintptr_t)p & (KA_PAGE_SIZE - 1)) == 0;
	if (head && pg->kind == KA_PG_LARGE)
		return pg;
	if ((head && pg->kind == KA_PG_PCP) || (pg && ka_buddy_free_order(p) >= 0))
		ka_fatal(func, "double free of", p, "large");
	ka_fatal(func, "invalid pointer (not the start of a block)", p, pg ? "large" : NULL);
}

static struct ka_huge *huge_head(void *p, const char *func)
{
	struct ka_huge *h = huge_of(p);
	if (!h || h->state == KA_HUGE_FREE || (uintptr_t)p >= h->base + h->map_size)
		ka_fatal(func, "invalid pointer (not from kalloc)", p, NULL);
	if (h->state == KA_HUGE_CACHED && (uintptr_t)p == h->base)
		ka_fatal(func, "double free of", p, "huge");
	if ((uintptr_t)p != h->base)
		ka_fatal(func, "invalid pointer (inside a block)", p, "huge");
	return h;
}

/* A sampled block leaves prof.c's table before it is given back: its
 * address may be sampled again at once by another thread. */
static void unsample(void *p, struct ka_page *pg)
{
	if (pg && (pg->flags & KA_PGF_SAMPLED)) {
		pg->flags &= (uint8_t)~KA_PGF_SAMPLED;
		ka_prof_free(p, pg->large.size);
	}
	struct ka_huge *h = pg ? NULL : huge_of(p);
	/* The caller's live block: its flag is the caller's to read. */
	if (h && (uintptr_t)p == h->base && ka_load_relaxed(&h->sampled)) {
		ka_store_relaxed(&h->sampled, 0);
		ka_prof_free(p, h->size);
	}
}

void ka_large_free(void *p, const char *func)
{
	if (!(ka_map_entry((uintptr_t)p) & KA_MAP_HUGE)) {
		struct ka_page *pg = large_head(p, func);
		bool kept;
		if (KA_UNLIKELY(ka_prof_on) && (pg->flags & KA_PGF_SAMPLED)) {
			unsample(p, pg);
			/* A sampled small object's block: see ka_large_alloc_sampled. */
			kept = pg->large.size <= KA_SMALL_MAX ? ka_pcp_keep(pg) : ka_pcp_free(pg);
		} else {
			kept = ka_pcp_free(pg);
		}
		if (!kept)
			ka_buddy_free_pages(p, pg->npages);
		return;
	}
	if (KA_UNLIKELY(ka_prof_on))
		unsample(p, NULL);
	struct ka_list out = {&out, &out};
	ka_lock(&huge_lock);
	struct ka_huge *h = huge_head(p, func);
	h->state = KA_HUGE_CACHED;
	uint64_t now = ka_os_now_ms();
	h->freed_ms = now;
	live_bytes -= h->map_size;
	nr_live--;
	ka_list_add(&cached, &h->node);
	ka_store_relaxed(&nr_cached, nr_cached + 1);
	cached_bytes += h->map_size;
	trim_cache_locked(false, now, &out);
	ka_unlock(&huge_lock);
	unmap_list(&out);
}

size_t ka_large_usable(void *p, const char *func)
{
	if (!(ka_map_entry((uintptr_t)p) & KA_MAP_HUGE))
		return (size_t)large_head(p, func)->npages << KA_PAGE_SHIFT;
	ka_lock(&huge_lock);
	size_t n = huge_head(p, func)->map_size;
	ka_unlock(&huge_lock);
	return n;
}

void *ka_large_resize(void *p, size_t size, const char *func)
{
	if (!(ka_map_entry((uintptr_t)p) & KA_MAP_HUGE)) {
		struct ka_page *pg = large_head(p, func);
		if (size <= KA_SMALL_MAX || size > KA_LARGE_MAX)
			return NULL;
		size_t old = pg->npages, want = page_round(size) >> KA_PAGE_SHIFT;
		if (want < old)
			ka_buddy_shrink_pages(p, old, want);
		else if (want > old && !ka_buddy_grow_pages(p, old, want))
			return NULL;
		size_t was = pg->large.size;
		pg->large.size = size;
		if (pg->flags & KA_PGF_SAMPLED)
			ka_prof_resize(p, pg, was, size);
		return p;
	}
	if (size <= KA_LARGE_MAX)
		return NULL;
	ka_lock(&huge_lock);
	struct ka_huge *h = huge_head(p, func);
	ka_unlock(&huge_lock);
	/* mremap may move a mapping, and its old address be mapped and sampled
	 * by another thread before a record could follow: a sampled one moves
	 * by copy (realloc), its record leaving with its free. */
	if (ka_load_relaxed(&h->sampled))
		return NULL;
	/* h is live, the caller's: resized with the lock dropped. */
	size_t old = h->map_size;
	bool ok = remap(h, page_round(size));
	if (ok) {
		ka_lock(&huge_lock);
		live_bytes += h->map_size;
		live_bytes -= old;
		h->size = size;
		ka_unlock(&huge_lock);
	}
	return ok ? (void *)h->base : NULL;
}

void ka_large_purge(bool all)
{
	/* Every thread's tick comes here: with nothing cached it takes no lock
	 * and reads no clock (nr_cached is read racily; a mapping cached
	 * meanwhile is trimmed by its own free and by the next tick). */
	if (!ka_load_relaxed(&nr_cached))
		return;
	struct ka_list out = {&out, &out};
	ka_lock(&huge_lock);
	trim_cache_locked(all, ka_os_now_ms(), &out);
	ka_unlock(&huge_lock);
	unmap_list(&out);
}

void ka_large_stats(struct ka_large_stats *st)
{
	ka_lock(&huge_lock);
	st->nr_huge = nr_live;
	st->huge_bytes = live_bytes;
	st->nr_cached = nr_cached;
	st->cached_bytes = cached_bytes;
	ka_unlock(&huge_lock);
}

void ka_large_prefork(void) { pthread_mutex_lock(&huge_lock); }

void ka_large_postfork(bool child)
{
	ka_postfork_unlock(&huge_lock, child);
}
