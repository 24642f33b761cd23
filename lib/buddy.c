/*
 * buddy.c: the page allocator. Memory comes from the OS a chunk (4 MiB, one
 * block of order KA_MAX_ORDER) at a time and is handed out in blocks of
 * 2^order pages, split on allocation and merged with its buddy on free.
 *
 * Invariants (checked by ka_buddy_validate), all under zone.lock:
 *  1. A block on area[k].list[t][c] is 2^k pages, starts at a page index
 *     that is a multiple of 2^k within its chunk, and its head descriptor
 *     says kind == KA_PG_FREE, order == k, and KA_PGF_CLEAN iff c == 1. Every
 *     other page of it is KA_PG_TAIL. t is its chunk's type, or KA_MT_SLAB
 *     for a whole chunk (k == KA_MAX_ORDER).
 *  2. The buddy of a block of order k < KA_MAX_ORDER is at index ^ (1 << k).
 *     Two free buddies of the same order never coexist: ka_buddy_free merges
 *     for as long as the buddy (a) lies in the same chunk (always, since a
 *     chunk is one max-order block), (b) is free, i.e. a KA_PG_FREE head, and
 *     (c) has the same order. A block's tail pages are never KA_PG_FREE, so
 *     (b) and (c) cannot be fooled by a page in the middle of a block.
 *  3. free_pages = sum of 2^k over all free blocks; used + free = managed.
 *  4. A clean block has been returned to the OS (or never touched) and reads
 *     as zero. A merge is clean only if both halves are; a split keeps the
 *     flag. Dirty blocks are handed out before clean ones (they cost no page
 *     faults and no RSS), newest first. Dirty blocks of every order that
 *     stay free for purge_delay_ms are purged (from the slow paths, the
 *     thread caches' tick and the optional background thread), and a
 *     wholly free, purged chunk from mmap is unmapped.
 *  5. Grouping by mobility (the kernel's migrate types): a chunk's type is
 *     set when a request of that type first splits it, so that slabs, which
 *     live long and pin their pages, gather in slab chunks and large blocks
 *     in large chunks, where they merge back when freed. A request takes
 *     from its own type, then a whole chunk, then a new chunk, and only when
 *     the OS refuses one from the other type (the block stays in its
 *     chunk's type).
 *  6. Each dirty list is in age order: freed_ms never grows from its head
 *     (newest) to its tail (oldest), so a purge by age takes blocks from
 *     the tails and stops at the first young one: its cost is one look at
 *     each list plus the blocks it purges. area_add keeps the order by
 *     dating a block no older than the list's newest (a split's or carve's
 *     remainder keeps its parent's date unless that is older; a block
 *     dated by a thread that read the clock before another took the lock
 *     is not). That only delays a purge: a block still goes about
 *     purge_delay_ms after it was put on its list, at the latest. A
 *     merged block is dated by its youngest dirty part, so a part freed
 *     just now is never purged at once for having merged with an old one.
 *
 * No system call is made with zone.lock held, nor from the entry points
 * that slab.c calls with a cache lock held (ka_buddy_alloc_held,
 * ka_buddy_free): a new chunk is mapped before the lock is taken and added
 * under it (grow); blocks being purged are off the free lists, on
 * zone.purging, while madvise runs with the lock dropped; a wholly free
 * clean chunk is taken off the chunk list under the lock and unmapped after
 * it is dropped (put back if the OS layer keeps it). Purging by age runs
 * from the entry points whose callers hold no lock, and from
 * ka_buddy_maybe_purge, which callers that freed under their own lock call
 * once they dropped it.
 */
#include <string.h>

#include "internal.h"

static struct {
	pthread_mutex_t lock;
	bool ready;
	struct ka_free_area area[KA_NR_ORDERS];
	struct ka_list chunks; /* chunks kalloc holds */
	struct ka_list spare;  /* metadata of unmapped chunks, for reuse */
	size_t nr_chunks, managed_pages, free_pages, clean_pages;
	/* Written under the lock with relaxed stores, read without it by
	 * ka_buddy_maybe_purge to decide whether to take it. */
	size_t nr_dirty;       /* dirty free blocks */
	uint64_t next_purge;   /* no dirty block expires before this (ms) */
	size_t purged_bytes, unmapped_chunks;
	/* Blocks being purged with the lock dropped (KA_PG_RAW, on free.node):
	 * in a fork child their purger is gone, so they go back on the lists. */
	struct ka_list purging;
} zone = {
	/* Adaptive, as the class locks (ka_lock_init): held briefly, and as a
	 * plain mutex a contended take slept at once (bench/wl/larson under
	 * prof:1, 2 threads, whose samples take a page each: 838 futex calls,
	 * adaptive 291, prof:0's count). */
	.lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP,
};

/* Blocks taken off the lists per round of a purge, and so the madvise
 * calls it makes at most (adjacent blocks share one); the tick and the
 * slow paths make one round, trim and the background thread as many as
 * it takes. */
#define PURGE_BATCH 64

static void zone_ready(void)
{
	if (zone.ready)
		return;
	for (int o = 0; o < KA_NR_ORDERS; o++)
		for (int t = 0; t < KA_NR_MT; t++)
			for (int c = 0; c < 2; c++)
				ka_list_init(&zone.area[o].list[t][c]);
	ka_list_init(&zone.chunks);
	ka_list_init(&zone.spare);
	ka_list_init(&zone.purging);
	zone.ready = true;
}

/* The free list type of a block of `order` at pg (invariant 1). */
static unsigned list_type(struct ka_page *pg, unsigned order)
{
	return order == KA_MAX_ORDER ? KA_MT_SLAB : ka_page_chunk(pg)->type;
}

static struct ka_page *block_of(struct ka_list *l)
{
	return ka_container_of(l, struct ka_page, free.node);
}

static void area_add(struct ka_page *pg, unsigned order, bool clean, uint64_t freed_ms)
{
	unsigned t = list_type(pg, order);
	struct ka_list *head = &zone.area[order].list[t][clean];
	pg->kind = KA_PG_FREE;
	pg->order = (uint8_t)order;
	pg->flags = clean ? KA_PGF_CLEAN : 0;
	ka_store_relaxed(ka_page_tag(pg), 0);
	ka_list_add(head, &pg->free.node);
	zone.area[order].nr[t][clean]++;
	zone.free_pages += (size_t)1 << order;
	if (clean) {
		zone.clean_pages += (size_t)1 << order; /* its freed_ms is never read */
		return;
	}
	struct ka_list *older = pg->free.node.next;
	if (older != head && block_of(older)->free.freed_ms > freed_ms)
		freed_ms = block_of(older)->free.freed_ms; /* invariant 6 */
	pg->free.freed_ms = freed_ms;
	ka_store_relaxed(&zone.nr_dirty, zone.nr_dirty + 1);
	uint64_t due = freed_ms + ka_opt.purge_delay_ms;
	if (due < zone.next_purge)
		ka_store_relaxed(&zone.next_purge, due);
}

static void area_del(struct ka_page *pg)
{
	unsigned order = pg->order;
	bool clean = pg->flags & KA_PGF_CLEAN;
	ka_list_del(&pg->free.node);
	zone.area[order].nr[list_type(pg, order)][clean]--;
	zone.free_pages -= (size_t)1 << order;
	if (clean)
		zone.clean_pages -= (size_t)1 << order;
	else
		ka_store_relaxed(&zone.nr_dirty, zone.nr_dirty - 1);
	pg->kind = KA_PG_TAIL;
}

/*
 * The kind of a block head that may not be the caller's: a block in a
 * thread's page list flips between KA_PG_PCP and KA_PG_LARGE without the
 * zone lock (pcp.c), so such heads are read with a relaxed load. Both
 * values mean "not free", which is all the merge and the lookups ask.
 */
static unsigned kind_of(const struct ka_page *pg)
{
	return ka_load_relaxed(&pg->kind);
}

/*
 * Merge a block with its free buddies, then put the result on its list:
 * clean if every part is (invariant 4), dated by its youngest dirty part
 * (invariant 6; `now` is the freed block's date if it is dirty).
 */
static struct ka_page *free_block(struct ka_page *pg, unsigned order, bool clean, uint64_t now)
{
	struct ka_chunk *c = ka_page_chunk(pg);
	size_t idx = (size_t)(pg - c->pages);
	uint64_t when = clean ? 0 : now;
	pg->kind = KA_PG_TAIL;
	ka_store_relaxed(ka_page_tag(pg), 0);
	while (order < KA_MAX_ORDER) {
		size_t bidx = idx ^ ((size_t)1 << order);
		struct ka_page *b = &c->pages[bidx];
		if (kind_of(b) != KA_PG_FREE || b->order != order)
			break;
		if (!(b->flags & KA_PGF_CLEAN)) {
			clean = false;
			if (b->free.freed_ms > when)
				when = b->free.freed_ms;
		}
		area_del(b);
		idx &= bidx;
		order++;
	}
	pg = &c->pages[idx];
	area_add(pg, order, clean, when);
	return pg;
}

/* Free pages [idx, idx+n) of a chunk as the largest aligned blocks that fit. */
static void free_range(struct ka_chunk *c, size_t idx, size_t n, bool clean, uint64_t now)
{
	while (n) {
		unsigned o = (unsigned)__builtin_ctzl(idx | KA_CHUNK_PAGES);
		while (((size_t)1 << o) > n)
			o--;
		free_block(&c->pages[idx], o, clean, now);
		idx += (size_t)1 << o;
		n -= (size_t)1 << o;
	}
}

/*
 * Map a new chunk and add it to the free lists. Called with zone.lock not
 * held (the mmap, the metadata and the map leaf are made without it); takes
 * it to add the chunk. False if the OS refused.
 */
static bool grow(void)
{
	int source;
	void *base = ka_os_map_aligned(KA_CHUNK_SIZE, KA_CHUNK_SIZE, &source);
	if (!base)
		return false;
	ka_lock(&zone.lock);
	zone_ready();
	struct ka_list *e = ka_list_pop(&zone.spare);
	ka_unlock(&zone.lock);
	struct ka_chunk *c = e ? ka_container_of(e, struct ka_chunk, node) : NULL;
	if (c)
		memset(c, 0, sizeof *c);
	else
		c = ka_meta_alloc(sizeof *c, KA_CHUNK_META_ALIGN);
	bool kept;
	if (!c) {
		ka_os_unmap(base, KA_CHUNK_SIZE, source, &kept);
		return false;
	}
	c->base = (uintptr_t)base;
	c->source = (uint8_t)source;
	uint32_t *flat = ka_map_open_tags(c->base);
	c->tagv = flat ? flat : c->tags;
	bool mapped = ka_map_set(c->base, KA_CHUNK_SIZE, ka_map_chunk_entry(c)) == 0;
	if (!mapped) {
		ka_map_set(c->base, KA_CHUNK_SIZE, 0);
		ka_os_unmap(base, KA_CHUNK_SIZE, source, &kept);
	}
	ka_lock(&zone.lock);
	if (mapped) {
		ka_list_add(&zone.chunks, &c->node);
		zone.nr_chunks++;
		zone.managed_pages += KA_CHUNK_PAGES;
		area_add(&c->pages[0], KA_MAX_ORDER, true, 0);
	} else {
		ka_list_add(&zone.spare, &c->node);
	}
	ka_unlock(&zone.lock);
	return mapped;
}

/*
 * A wholly free, clean chunk: off the free lists and the chunk list, onto
 * `out` (linked by its node), to be unmapped once zone.lock is dropped.
 * Its page 0 stays KA_PG_TAIL meanwhile, so nothing takes or frees it.
 */
static void detach_chunk(struct ka_page *pg, struct ka_list *out)
{
	struct ka_chunk *c = ka_page_chunk(pg);
	area_del(pg);
	ka_list_del(&c->node);
	ka_list_add(out, &c->node);
	zone.nr_chunks--;
	zone.managed_pages -= KA_CHUNK_PAGES;
}

/*
 * Give the chunks on `out` back to the OS; zone.lock not held. A chunk the
 * OS layer keeps (a brk piece not at the top) is managed again. In a fork
 * child, a chunk another thread was releasing is forgotten: its map entries
 * are cleared and it is not resident, so the child loses address space
 * only.
 */
static void release_chunks(struct ka_list *out)
{
	while (!ka_list_empty(out)) {
		struct ka_chunk *c = ka_container_of(out->next, struct ka_chunk, node);
		ka_list_del(&c->node);
		ka_map_set(c->base, KA_CHUNK_SIZE, 0);
		/* Its page of the flat tag table holds zeros only (every page of
		 * it is free): purged before the unmap, since once the address is
		 * the OS's a new chunk there may write tags. */
		if (c->tagv != c->tags)
			ka_os_purge(c->tagv, KA_PAGE_SIZE);
		bool kept;
		bool gone = ka_os_unmap((void *)c->base, KA_CHUNK_SIZE, c->source, &kept) == 0 && !kept;
		if (!gone)
			ka_map_set(c->base, KA_CHUNK_SIZE, ka_map_chunk_entry(c));
		/* Its descriptors and tags go back too (68 KiB a chunk): they stay
		 * mapped and read as zero, which a stale lookup takes as "not a
		 * slab", and grow() clears recycled metadata anyway. The first page
		 * holds the header, the spare list's link among it. */
		if (gone)
			ka_os_purge((char *)c + KA_PAGE_SIZE, (sizeof *c - KA_PAGE_SIZE) & ~(KA_PAGE_SIZE - 1));
		ka_lock(&zone.lock);
		if (gone) {
			ka_list_add(&zone.spare, &c->node);
			zone.unmapped_chunks++;
		} else {
			ka_list_add(&zone.chunks, &c->node);
			zone.nr_chunks++;
			zone.managed_pages += KA_CHUNK_PAGES;
			area_add(&c->pages[0], KA_MAX_ORDER, true, 0);
		}
		ka_unlock(&zone.lock);
	}
}

/* Sort the batch by address, so that adjacent blocks share one madvise. */
static void sort_batch(struct ka_page **b, unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		struct ka_page *x = b[i];
		unsigned j = i;
		for (; j > 0 && ka_page_addr(b[j - 1]) > ka_page_addr(x); j--)
			b[j] = b[j - 1];
		b[j] = x;
	}
}

/* madvise the batch, one call per run of adjacent blocks; zone.lock not held. */
static size_t purge_batch(struct ka_page **b, unsigned n)
{
	size_t total = 0;
	sort_batch(b, n);
	for (unsigned i = 0; i < n;) {
		char *start = ka_page_addr(b[i]);
		size_t bytes = 0;
		for (; i < n && ka_page_addr(b[i]) == start + bytes; i++)
			bytes += KA_PAGE_SIZE << b[i]->order;
		if (ka_os_purge(start, bytes) == 0)
			total += bytes;
	}
	return total;
}

/*
 * Take up to PURGE_BATCH dirty blocks off the free lists into batch[]: all
 * of them, or those older than the delay, from the lists' old ends
 * (invariant 6), biggest orders first. They go on zone.purging, so that
 * nobody merges with them or takes them. Sets zone.next_purge.
 */
static unsigned take_batch(bool all, uint64_t now, struct ka_page **batch)
{
	uint64_t next = UINT64_MAX, delay = ka_opt.purge_delay_ms;
	unsigned n = 0;
	for (unsigned o = KA_NR_ORDERS; o-- > 0;)
		for (unsigned t = 0; t < KA_NR_MT; t++) {
			struct ka_list *head = &zone.area[o].list[t][0];
			while (!ka_list_empty(head)) {
				struct ka_page *b = block_of(head->prev);
				if (n == PURGE_BATCH) {
					next = now; /* more to do at once */
					break;
				}
				if (!all && b->free.freed_ms + delay > now) {
					if (b->free.freed_ms + delay < next)
						next = b->free.freed_ms + delay;
					break;
				}
				area_del(b);
				b->kind = KA_PG_RAW;
				b->order = (uint8_t)o;
				b->npages = 1u << o;
				ka_list_add(&zone.purging, &b->free.node);
				batch[n++] = b;
			}
		}
	ka_store_relaxed(&zone.next_purge, next);
	return n;
}

/*
 * Purge dirty free blocks: all of them, or those older than the delay, in
 * at most `rounds` rounds of one batch each. The lock is dropped around
 * madvise; the blocks go back clean, and wholly free chunks that result
 * are unmapped after it is dropped again. Called with zone.lock held and
 * no other lock; returns with zone.lock not held.
 */
static size_t purge_unlock(bool all, uint64_t now, unsigned rounds)
{
	size_t total = 0;
	struct ka_list out = {&out, &out};
	unsigned n;
	do {
		struct ka_page *batch[PURGE_BATCH];
		n = take_batch(all, now, batch);
		ka_unlock(&zone.lock);
		total += purge_batch(batch, n);
		ka_lock(&zone.lock);
		for (unsigned i = 0; i < n; i++) {
			ka_list_del(&batch[i]->free.node);
			struct ka_page *pg = free_block(batch[i], batch[i]->order, true, now);
			if (pg->order == KA_MAX_ORDER && (pg->flags & KA_PGF_CLEAN))
				detach_chunk(pg, &out);
		}
	} while (n == PURGE_BATCH && --rounds > 0);
	zone.purged_bytes += total;
	ka_unlock(&zone.lock);
	release_chunks(&out);
	return total;
}

/* Is anything due for purging? Racy reads: a stale answer only moves the
 * purge to a later call. */
static bool purge_due(uint64_t *now)
{
	if (ka_load_relaxed(&zone.nr_dirty) == 0)
		return false;
	*now = ka_os_now_ms();
	return *now >= ka_load_relaxed(&zone.next_purge);
}

/* Drop zone.lock, purging by age first if anything is due. */
static void unlock_maybe_purge(void)
{
	uint64_t now;
	if (purge_due(&now))
		purge_unlock(false, now, 1);
	else
		ka_unlock(&zone.lock);
}

void ka_buddy_maybe_purge(void)
{
	uint64_t now;
	if (!purge_due(&now))
		return;
	ka_lock(&zone.lock);
	purge_unlock(false, now, 1);
}

/* Split the free block pg of order o down to `order`, the rest freed. */
static struct ka_page *split(struct ka_page *pg, unsigned o, unsigned order)
{
	bool clean = pg->flags & KA_PGF_CLEAN;
	uint64_t freed_ms = pg->free.freed_ms;
	area_del(pg);
	while (o > order) {
		o--;
		area_add(pg + ((size_t)1 << o), o, clean, freed_ms);
	}
	pg->order = (uint8_t)order;
	pg->flags = clean ? KA_PGF_CLEAN : 0;
	return pg;
}

/* The first block on list [t] of orders [lo, hi], dirty before clean. */
static struct ka_page *first_free(unsigned lo, unsigned hi, unsigned t, unsigned *o_out)
{
	for (int clean = 0; clean < 2; clean++)
		for (unsigned o = lo; o <= hi; o++) {
			struct ka_list *head = &zone.area[o].list[t][clean];
			if (!ka_list_empty(head)) {
				*o_out = o;
				return block_of(head->next);
			}
		}
	return NULL;
}

/*
 * Take a block of `order` for a request of type t (invariant 5): from t's
 * chunks (dirty before clean, smallest order first), else a whole chunk,
 * which becomes t's; NULL if neither (the caller grows, then steals).
 */
static struct ka_page *take(unsigned order, unsigned t)
{
	unsigned o;
	struct ka_page *pg = order < KA_MAX_ORDER ? first_free(order, KA_MAX_ORDER - 1, t, &o) : NULL;
	if (!pg && (pg = first_free(KA_MAX_ORDER, KA_MAX_ORDER, KA_MT_SLAB, &o)))
		ka_page_chunk(pg)->type = (uint8_t)t; /* a whole chunk's list has no type */
	return pg ? split(pg, o, order) : NULL;
}

/* From the other types' chunks, largest block first (it fragments least). */
static struct ka_page *steal(unsigned order, unsigned t)
{
	for (unsigned u = 0; u < KA_NR_MT; u++)
		for (unsigned o = KA_MAX_ORDER; u != t && o-- > order;)
			for (int clean = 0; clean < 2; clean++) {
				struct ka_list *head = &zone.area[o].list[u][clean];
				if (!ka_list_empty(head))
					return split(block_of(head->next), o, order);
			}
	return NULL;
}

/*
 * take(), else (if may_grow: the caller holds no lock but zone.lock) map a
 * chunk with zone.lock dropped and take again, else steal. Another thread
 * may take the new chunk first: a few rounds, then steal. zone.lock held.
 */
static struct ka_page *take_or_grow(unsigned order, unsigned t, bool may_grow)
{
	zone_ready();
	struct ka_page *pg = take(order, t);
	for (int round = 0; !pg && may_grow && round < 4; round++) {
		ka_unlock(&zone.lock);
		bool grown = grow();
		ka_lock(&zone.lock);
		if (!grown)
			break;
		pg = take(order, t);
	}
	return pg ? pg : steal(order, t);
}

/* Blocks above KA_BIG_PAGES are few and big; many smaller ones among them
 * would pin apart the holes they leave (bench/wl/frag: peak RSS 111 MiB
 * with one large type, 84 with two; jemalloc 80). */
#define KA_BIG_PAGES 16

static unsigned type_of(unsigned kind, size_t npages)
{
	return kind == KA_PG_SLAB ? KA_MT_SLAB : npages > KA_BIG_PAGES ? KA_MT_BIG : KA_MT_LARGE;
}

/* Hand out the block pg took for a request of `kind`; zone.lock held. */
static void *hand_out(struct ka_page *pg, unsigned kind, bool *zero)
{
	*zero = pg->flags & KA_PGF_CLEAN;
	pg->kind = (uint8_t)kind;
	pg->flags = 0;
	pg->npages = 1u << pg->order;
	return ka_page_addr(pg);
}

void *ka_buddy_alloc(unsigned order, unsigned kind, bool *zero)
{
	if (order > KA_MAX_ORDER)
		return NULL;
	ka_lock(&zone.lock);
	struct ka_page *pg = take_or_grow(order, type_of(kind, (size_t)1 << order), true);
	void *addr = pg ? hand_out(pg, kind, zero) : NULL;
	unlock_maybe_purge();
	return addr;
}

void *ka_buddy_alloc_held(unsigned order, unsigned kind, bool *zero, bool steal_other)
{
	if (order > KA_MAX_ORDER)
		return NULL;
	ka_lock(&zone.lock);
	zone_ready();
	unsigned t = type_of(kind, (size_t)1 << order);
	struct ka_page *pg = take(order, t);
	if (!pg && steal_other)
		pg = steal(order, t);
	void *addr = pg ? hand_out(pg, kind, zero) : NULL;
	ka_unlock(&zone.lock);
	return addr;
}

bool ka_buddy_grow(void)
{
	return grow();
}

static unsigned order_for(size_t npages)
{
	return npages <= 1 ? 0 : (unsigned)(64 - __builtin_clzl(npages - 1));
}

/* The free block that contains page idx of chunk c, or NULL. */
static struct ka_page *free_block_at(struct ka_chunk *c, size_t idx)
{
	for (unsigned o = 0; o < KA_NR_ORDERS; o++) {
		struct ka_page *h = &c->pages[idx & ~(((size_t)1 << o) - 1)];
		unsigned kind = kind_of(h);
		if (kind != KA_PG_TAIL) /* the head of the block holding idx */
			return kind == KA_PG_FREE && h->order >= o ? h : NULL;
	}
	return NULL;
}

/*
 * Take pages [s, e) of chunk c, all free, off the free lists: the parts of
 * their blocks outside the range stay free. True if every page was clean.
 */
static bool carve(struct ka_chunk *c, size_t s, size_t e)
{
	bool all_clean = true;
	for (size_t j = s; j < e;) {
		struct ka_page *h = free_block_at(c, j);
		size_t hs = (size_t)(h - c->pages), he = hs + ((size_t)1 << h->order);
		bool clean = h->flags & KA_PGF_CLEAN;
		uint64_t when = h->free.freed_ms;
		all_clean = all_clean && clean;
		area_del(h);
		free_range(c, hs, j - hs, clean, when);
		if (he > e)
			free_range(c, e, he - e, clean, when);
		j = he;
	}
	return all_clean;
}

/* The end of the run of free pages that starts at page s of chunk c, up to `want` pages on. */
static size_t free_run_end(struct ka_chunk *c, size_t s, size_t want)
{
	size_t e = s;
	struct ka_page *h;
	while (e - s < want && e < KA_CHUNK_PAGES && (h = free_block_at(c, e)))
		e = (size_t)(h - c->pages) + ((size_t)1 << h->order);
	return e;
}

#define RUN_SCAN 16

/*
 * npages (of `order`, at a multiple of align) from a run of free blocks in
 * t's chunks that no single block holds: a run longer than 2^(order-1)
 * pages holds an aligned block of order-1 or order-2, so the runs around
 * the first RUN_SCAN such blocks are tried. This fills the holes that freed
 * large blocks leave before a bigger block is split; NULL if none fits.
 */
static struct ka_page *take_run(size_t npages, size_t align, unsigned order, unsigned t, bool *clean)
{
	unsigned scanned = 0;
	for (unsigned k = 1; order >= 2 && k <= 2; k++)
		for (int cl = 0; cl < 2; cl++) {
			unsigned o = order - k;
			struct ka_list *head = &zone.area[o].list[t][cl];
			for (struct ka_list *l = head->next; l != head; l = l->next) {
				if (++scanned > RUN_SCAN)
					return NULL;
				struct ka_page *pg = block_of(l);
				struct ka_chunk *c = ka_page_chunk(pg);
				size_t s = (size_t)(pg - c->pages), e = free_run_end(c, s, npages + align - 1);
				while (e - s < npages + align - 1 && s > 0 && (pg = free_block_at(c, s - 1)))
					s = (size_t)(pg - c->pages);
				s = (s + align - 1) & ~(align - 1); /* chunks are chunk-aligned */
				if (e < s + npages)
					continue;
				*clean = carve(c, s, s + npages);
				return &c->pages[s];
			}
		}
	return NULL;
}

static bool pages_args_ok(size_t npages, size_t align)
{
	return npages && npages <= KA_CHUNK_PAGES && !(align & (align - 1)) && align <= npages * 2;
}

/* ka_buddy_alloc_pages with zone.lock held (dropped and taken again to grow), from type t. */
static void *alloc_pages_locked(size_t npages, size_t align, unsigned kind, unsigned t, bool *zero)
{
	unsigned order = order_for(npages);
	zone_ready();
	bool clean = false;
	/* A block of exactly npages, else a run that fits, else a split. */
	unsigned o;
	struct ka_page *pg = npages == (size_t)1 << order ? first_free(order, order, t, &o) : NULL;
	if (pg) {
		clean = pg->flags & KA_PGF_CLEAN;
		pg = split(pg, o, order);
	} else {
		pg = take_run(npages, align, order, t, &clean);
	}
	if (!pg && (pg = take_or_grow(order, t, true))) {
		clean = pg->flags & KA_PGF_CLEAN;
		struct ka_chunk *c = ka_page_chunk(pg);
		size_t idx = (size_t)(pg - c->pages);
		/* The tail was never handed out: it keeps the block's state. */
		free_range(c, idx + npages, ((size_t)1 << order) - npages, clean,
			   clean ? 0 : ka_os_now_ms());
	}
	void *addr = NULL;
	if (pg) {
		*zero = clean;
		pg->kind = (uint8_t)kind;
		pg->flags = 0;
		pg->order = (uint8_t)order;
		pg->npages = (uint32_t)npages;
		addr = ka_page_addr(pg);
	}
	return addr;
}

void *ka_buddy_alloc_pages(size_t npages, size_t align, unsigned kind, bool *zero)
{
	if (!pages_args_ok(npages, align))
		return NULL;
	ka_lock(&zone.lock);
	void *addr = alloc_pages_locked(npages, align, kind, type_of(kind, npages), zero);
	unlock_maybe_purge();
	return addr;
}

void *ka_buddy_alloc_pages_small(size_t npages, bool *zero)
{
	if (!pages_args_ok(npages, 1) || npages > KA_SMALL_MAX / KA_PAGE_SIZE)
		return NULL;
	ka_lock(&zone.lock);
	void *addr = alloc_pages_locked(npages, 1, KA_PG_LARGE, KA_MT_SLAB, zero);
	unlock_maybe_purge();
	return addr;
}

unsigned ka_buddy_alloc_pages_batch(size_t npages, unsigned kind, void **out, bool *zero, unsigned n)
{
	if (!pages_args_ok(npages, 1))
		return 0;
	unsigned got = 0, t = type_of(kind, npages);
	ka_lock(&zone.lock);
	while (got < n && (out[got] = alloc_pages_locked(npages, 1, kind, t, &zero[got])))
		got++;
	unlock_maybe_purge();
	return got;
}

static struct ka_page *used_head(void *addr, const char *func)
{
	struct ka_page *pg = ka_map_page(addr);
	if (!pg || ((uintptr_t)addr & (KA_PAGE_SIZE - 1)) || pg->kind == KA_PG_TAIL ||
	    pg->kind == KA_PG_FREE)
		ka_fatal(func, "not the start of a used block:", addr, "buddy");
	return pg;
}

void ka_buddy_free(void *addr, unsigned order)
{
	struct ka_page *pg = used_head(addr, "ka_buddy_free");
	if (pg->order != order || pg->npages != 1u << order)
		ka_fatal("ka_buddy_free", "order does not match the block at", addr, "buddy");
	/* No purge here: slab.c calls this with its cache lock held. */
	ka_lock(&zone.lock);
	free_block(pg, order, false, ka_os_now_ms());
	ka_unlock(&zone.lock);
}

static void free_pages_locked(struct ka_page *pg, uint64_t now)
{
	struct ka_chunk *c = ka_page_chunk(pg);
	free_range(c, (size_t)(pg - c->pages), pg->npages, false, now);
}

void ka_buddy_free_pages(void *addr, size_t npages)
{
	struct ka_page *pg = used_head(addr, "ka_buddy_free_pages");
	if (pg->npages != npages)
		ka_fatal("ka_buddy_free_pages", "size does not match the block at", addr, "buddy");
	ka_lock(&zone.lock);
	free_pages_locked(pg, ka_os_now_ms());
	unlock_maybe_purge();
}

void ka_buddy_free_pages_batch(void **addrs, unsigned n)
{
	struct ka_page *pgs[n ? n : 1];
	for (unsigned i = 0; i < n; i++)
		pgs[i] = used_head(addrs[i], "ka_buddy_free_pages");
	uint64_t now = ka_os_now_ms();
	ka_lock(&zone.lock);
	for (unsigned i = 0; i < n; i++)
		free_pages_locked(pgs[i], now);
	unlock_maybe_purge();
}


int ka_buddy_free_order(const void *p)
{
	struct ka_page *pg = ka_map_page(p);
	if (!pg)
		return -1;
	struct ka_chunk *c = ka_page_chunk(pg);
	ka_lock(&zone.lock);
	struct ka_page *h = free_block_at(c, (size_t)(pg - c->pages));
	int order = h ? h->order : -1;
	ka_unlock(&zone.lock);
	return order;
}

bool ka_buddy_grow_pages(void *addr, size_t old_npages, size_t new_npages)
{
	struct ka_page *pg = used_head(addr, "ka_buddy_grow_pages");
	struct ka_chunk *c = ka_page_chunk(pg);
	size_t idx = (size_t)(pg - c->pages), s = idx + old_npages, e = idx + new_npages;
	if (new_npages <= old_npages || e > KA_CHUNK_PAGES)
		return false;
	ka_lock(&zone.lock);
	bool ok = free_run_end(c, s, e - s) >= e;
	if (ok) {
		carve(c, s, e);
		pg->npages = (uint32_t)new_npages;
		pg->order = (uint8_t)order_for(new_npages);
	}
	ka_unlock(&zone.lock);
	return ok;
}

void ka_buddy_shrink_pages(void *addr, size_t old_npages, size_t new_npages)
{
	struct ka_page *pg = used_head(addr, "ka_buddy_shrink_pages");
	if (new_npages == 0 || new_npages >= old_npages || pg->npages != old_npages)
		return;
	struct ka_chunk *c = ka_page_chunk(pg);
	ka_lock(&zone.lock);
	free_range(c, (size_t)(pg - c->pages) + new_npages, old_npages - new_npages, false,
		   ka_os_now_ms());
	pg->npages = (uint32_t)new_npages;
	pg->order = (uint8_t)order_for(new_npages);
	ka_unlock(&zone.lock);
}

size_t ka_buddy_purge(bool all)
{
	ka_lock(&zone.lock);
	zone_ready();
	return purge_unlock(all, ka_os_now_ms(), UINT32_MAX);
}

void ka_buddy_info(size_t counts[KA_NR_ORDERS])
{
	ka_lock(&zone.lock);
	for (int o = 0; o < KA_NR_ORDERS; o++) {
		counts[o] = 0;
		for (int t = 0; t < KA_NR_MT; t++)
			counts[o] += zone.area[o].nr[t][0] + zone.area[o].nr[t][1];
	}
	ka_unlock(&zone.lock);
}

void ka_buddy_print(int fd)
{
	size_t counts[KA_NR_ORDERS];
	ka_buddy_info(counts);
	char mem[256];
	struct ka_buf b = {mem, 0, sizeof mem};
	ka_buf_str(&b, "Node 0, zone   kalloc");
	for (int o = 0; o < KA_NR_ORDERS; o++) {
		ka_buf_str(&b, " ");
		ka_buf_u64(&b, counts[o], 6);
	}
	ka_buf_str(&b, "\n");
	ka_buf_flush(&b, fd);
}

void ka_buddy_stats(struct ka_buddy_stats *st)
{
	ka_lock(&zone.lock);
	st->managed_pages = zone.managed_pages;
	st->free_pages = zone.free_pages;
	st->clean_pages = zone.clean_pages;
	st->nr_chunks = zone.nr_chunks;
	st->purged_bytes = zone.purged_bytes;
	st->unmapped_chunks = zone.unmapped_chunks;
	ka_unlock(&zone.lock);
}

#define CHECK(c, what, addr)                                        \
	do {                                                        \
		if (!(c))                                           \
			ka_fatal("ka_buddy_validate", what, addr, NULL); \
	} while (0)

void ka_buddy_validate(void)
{
	ka_lock(&zone.lock);
	zone_ready();
	size_t nr[KA_NR_ORDERS][KA_NR_MT][2] = {{{0}}}, free_pages = 0, clean_pages = 0, chunks = 0;
	for (struct ka_list *l = zone.chunks.next; l != &zone.chunks; l = l->next) {
		struct ka_chunk *c = ka_container_of(l, struct ka_chunk, node);
		chunks++;
		CHECK(ka_map_entry(c->base) == (ka_map_chunk_entry(c)), "map entry wrong for chunk",
		      (void *)c->base);
		CHECK(c->tagv == c->tags || c->tagv == KA_TAGS_FLAT + (c->base >> KA_PAGE_SHIFT),
		      "tags misplaced for chunk", (void *)c->base);
		for (size_t i = 0; i < KA_CHUNK_PAGES;) {
			struct ka_page *pg = &c->pages[i];
			void *a = (void *)(c->base + (i << KA_PAGE_SHIFT));
			unsigned kind = kind_of(pg);
			CHECK(kind != KA_PG_TAIL, "block does not start with a head page at", a);
			size_t n = kind == KA_PG_FREE ? (size_t)1 << pg->order : pg->npages;
			CHECK(n >= 1 && i + n <= KA_CHUNK_PAGES, "block overruns its chunk at", a);
			if (kind == KA_PG_FREE) {
				CHECK((i & (n - 1)) == 0, "free block misaligned at", a);
				CHECK(c->tagv[i] == 0, "free block has a slab tag at", a);
				bool clean = pg->flags & KA_PGF_CLEAN;
				nr[pg->order][list_type(pg, pg->order)][clean]++;
				free_pages += n;
				if (clean)
					clean_pages += n;
				if (pg->order < KA_MAX_ORDER) {
					struct ka_page *b = &c->pages[i ^ n];
					CHECK(!(b->kind == KA_PG_FREE && b->order == pg->order),
					      "two free buddies of one order at", a);
				}
			}
			for (size_t j = 1; j < n; j++) {
				CHECK(c->pages[i + j].kind == KA_PG_TAIL, "overlapping blocks at",
				      (void *)(c->base + ((i + j) << KA_PAGE_SHIFT)));
				if (kind != KA_PG_SLAB)
					CHECK(c->tagv[i + j] == 0, "stale slab tag at",
					      (void *)(c->base + ((i + j) << KA_PAGE_SHIFT)));
			}
			i += n;
		}
	}
	CHECK(chunks == zone.nr_chunks && chunks * KA_CHUNK_PAGES == zone.managed_pages,
	      "chunk count mismatch", NULL);
	CHECK(free_pages == zone.free_pages, "free page count mismatch", NULL);
	CHECK(clean_pages == zone.clean_pages, "clean page count mismatch", NULL);
	size_t nr_dirty = 0;
	for (unsigned o = 0; o < KA_NR_ORDERS; o++)
		for (unsigned t = 0; t < KA_NR_MT; t++)
			for (int c = 0; c < 2; c++) {
				size_t k = 0;
				uint64_t newer = UINT64_MAX;
				struct ka_list *head = &zone.area[o].list[t][c];
				for (struct ka_list *l = head->next; l != head; l = l->next, k++) {
					struct ka_page *pg = block_of(l);
					CHECK(pg->kind == KA_PG_FREE && pg->order == o &&
						      !!(pg->flags & KA_PGF_CLEAN) == c && list_type(pg, o) == t,
					      "free list holds a wrong block at", ka_page_addr(pg));
					CHECK(c || pg->free.freed_ms <= newer, "dirty list out of age order at",
					      ka_page_addr(pg));
					newer = pg->free.freed_ms;
				}
				CHECK(k == zone.area[o].nr[t][c] && k == nr[o][t][c], "free list count mismatch",
				      NULL);
				if (!c)
					nr_dirty += k;
			}
	CHECK(nr_dirty == zone.nr_dirty, "dirty block count mismatch", NULL);
	ka_unlock(&zone.lock);
}

void ka_buddy_prefork(void) { pthread_mutex_lock(&zone.lock); }

void ka_buddy_postfork(bool child)
{
	/* Dirty: the purger may have been halfway through them. */
	while (child && zone.ready && !ka_list_empty(&zone.purging)) {
		struct ka_page *pg = ka_container_of(zone.purging.next, struct ka_page, free.node);
		ka_list_del(&pg->free.node);
		free_block(pg, pg->order, false, ka_os_now_ms());
	}
	ka_postfork_unlock(&zone.lock, child);
}
