/*
 * pcp.c: per-thread page lists in front of the buddy, after the kernel's
 * per-CPU pagesets (struct per_cpu_pages: count, high, batch), for large
 * blocks of up to KA_PCP_MAX_PAGES pages (types.h says why that top).
 *
 * A thread's lists (struct ka_pcp) are its own: malloc pops the newest
 * block of its size, free pushes onto the freeing thread's list (pages have
 * no owner, so a block freed by another thread serves that thread), with
 * no lock and no atomic read-modify-write. An empty list refills `batch`
 * blocks from the buddy under one zone lock; a push that would take the
 * lists over `high` first gives the coldest blocks back, down to 3/4 of
 * high, in batches under one zone lock each.
 *
 * Invariants, for a live thread's lists:
 *  - a block on lists[n - 1] is a buddy block of n pages whose head
 *    descriptor is KA_PG_PCP with npages == n (so a free of it, a double
 *    free, is caught by large.c), KA_PGF_CLEAN iff it reads as zero
 *    (refilled from clean pages and never handed out since);
 *  - count[n - 1] blocks are on lists[n - 1]; bytes is their sum in bytes;
 *  - bytes <= high as the thread last read it, high <= KA_PCP_THREAD_BYTES.
 * high is one process-wide value, KA_PCP_BUDGET shared by the threads that
 * have lists, capped; every push reads it (one relaxed load of a line that
 * changes only when a thread gets or drops its lists), so adding threads
 * lowers every thread's bound at its next free.
 *
 * Kept blocks (prof:1). A sampled small object is served as a page block of
 * its own (prof.c); the thread keeps one freed block per page count 1..4
 * (kept[], struct ka_pcp) for its next such sample, so that a program that
 * samples and frees takes no zone lock for it. They are not on the lists
 * and count neither in bytes nor against high: parked there they took the
 * lists' room from the sizes the program uses, and a push over high
 * drains a quarter of it (bench/wl/frag, whose shrinks free many sampled
 * blocks at once: 10% more refills and drains of its 5..16-page blocks,
 * 5% of its instructions). They go back wherever the lists do: at exit,
 * trim and an idle tick; a fork child keeps the forking thread's (the
 * other threads' are abandoned with their lists).
 *
 * Life cycle per thread, as the thread cache's (tcache.c):
 *   NONE -> CREATING -> LIVE -> DEAD
 * created on the first large malloc or free, registered with its own
 * thread-exit key (a thread may use large blocks only, and never create a
 * thread cache), drained at exit, after which the thread runs without
 * lists (glibc frees after the key destructors ran) and never makes them
 * again. A fork child abandons the other threads' lists (one of them may
 * have been halfway through a push): their blocks stay allocated in the
 * child and count as in use. The forking thread's lists are consistent
 * (it is inside fork, not inside a push) and are kept.
 *
 * Lock order: pcp_lock guards the list of live page lists, their number
 * and the spares; nothing else is taken under it (init.c).
 */
#include "internal.h"

#define BATCH_MAX 8  /* blocks a refill brings at most */
#define DRAIN_BATCH 16 /* blocks given back under one zone lock */

enum { PCP_NONE, PCP_CREATING, PCP_LIVE, PCP_DEAD };

static __thread struct ka_pcp *pcp_self; /* set while LIVE */
static __thread uint8_t pcp_state;

static pthread_mutex_t pcp_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ka_list live = {&live, &live}, spare = {&spare, &spare};
static size_t nr_live;
static size_t pcp_high = KA_PCP_THREAD_BYTES; /* written under pcp_lock, read relaxed */
static pthread_key_t exit_key;
static bool key_ok;

/* high for nr_live threads; pcp_lock held. */
static void set_high_locked(void)
{
	size_t h = nr_live ? KA_PCP_BUDGET / nr_live : KA_PCP_BUDGET;
	if (h > KA_PCP_THREAD_BYTES)
		h = KA_PCP_THREAD_BYTES;
	ka_store_relaxed(&pcp_high, h & ~(KA_PAGE_SIZE - 1));
}

static void destructor(void *arg)
{
	(void)arg;
	ka_pcp_thread_exit();
}

void ka_pcp_init(void)
{
	key_ok = pthread_key_create(&exit_key, destructor) == 0;
}

/* pcp_get's first use: the calling thread's lists made, NULL to run
 * without. A function of its own, so that the common call saves no
 * registers: whole, pcp_get pushed and popped five on every call, 18
 * instructions, and a 64 KiB pair calls it twice (callgrind pair/65536
 * 509 -> 478 instructions with the split). */
static KA_NOINLINE struct ka_pcp *pcp_make(void)
{
	if (pcp_state != PCP_NONE || !key_ok)
		return NULL;
	pcp_state = PCP_CREATING;
	ka_lock(&pcp_lock);
	struct ka_list *e = ka_list_pop(&spare);
	ka_unlock(&pcp_lock);
	struct ka_pcp *p = e ? ka_container_of(e, struct ka_pcp, node) : NULL;
	if (!p && !(p = ka_meta_alloc(sizeof *p, 64))) {
		pcp_state = PCP_NONE;
		return NULL;
	}
	for (unsigned i = 0; i < KA_PCP_MAX_PAGES; i++) {
		ka_list_init(&p->lists[i]);
		p->count[i] = 0;
	}
	for (unsigned i = 0; i < KA_PCP_KEPT; i++)
		p->kept[i] = NULL;
	p->bytes = 0;
	p->kept_bytes = 0;
	p->busy = false;
	/* May call calloc (small: served by the thread cache, not here). */
	if (pthread_setspecific(exit_key, p) != 0) {
		ka_lock(&pcp_lock);
		ka_list_add(&spare, &p->node);
		ka_unlock(&pcp_lock);
		pcp_state = PCP_DEAD;
		return NULL;
	}
	ka_lock(&pcp_lock);
	ka_list_add(&live, &p->node);
	nr_live++;
	set_high_locked();
	ka_unlock(&pcp_lock);
	pcp_self = p;
	pcp_state = PCP_LIVE;
	return p;
}

/* The calling thread's lists, made on first use; NULL to run without. */
KA_INLINE struct ka_pcp *pcp_get(void)
{
	if (KA_LIKELY(pcp_state == PCP_LIVE))
		return pcp_self;
	return pcp_make();
}

static struct ka_page *block_at(struct ka_list *l)
{
	return ka_container_of(l, struct ka_page, free.node);
}

/*
 * Give the coldest blocks back to the buddy until the lists hold at most
 * `target` bytes: list `first` (the size being freed) first, then the
 * largest sizes.
 */
static void drain(struct ka_pcp *p, size_t target, unsigned first)
{
	while (p->bytes > target) {
		void *blk[DRAIN_BATCH];
		unsigned n = 0;
		size_t bytes = p->bytes;
		for (unsigned k = 0; k <= KA_PCP_MAX_PAGES && n < DRAIN_BATCH && bytes > target; k++) {
			unsigned i = k == 0 ? first : KA_PCP_MAX_PAGES - k;
			struct ka_list *l = &p->lists[i];
			while (!ka_list_empty(l) && n < DRAIN_BATCH && bytes > target) {
				struct ka_page *pg = block_at(l->prev);
				ka_list_del(&pg->free.node);
				p->count[i]--;
				bytes -= (size_t)(i + 1) << KA_PAGE_SHIFT;
				blk[n++] = ka_page_addr(pg);
			}
		}
		ka_store_relaxed(&p->bytes, bytes);
		if (n == 0)
			break;
		ka_buddy_free_pages_batch(blk, n);
	}
}

/* The kept blocks, all back to the buddy. */
static void give_back_kept(struct ka_pcp *p)
{
	void *blk[KA_PCP_KEPT];
	unsigned n = 0;
	for (unsigned i = 0; i < KA_PCP_KEPT; i++)
		if (p->kept[i]) {
			blk[n++] = ka_page_addr(p->kept[i]);
			p->kept[i] = NULL;
		}
	ka_store_relaxed(&p->kept_bytes, 0);
	if (n)
		ka_buddy_free_pages_batch(blk, n);
}

/* As the kernel's pcp->batch: a quarter of high per refill, 1..BATCH_MAX. */
static unsigned batch_for(size_t high, size_t bytes)
{
	size_t b = high / 4 / bytes;
	return b < 1 ? 1 : b > BATCH_MAX ? BATCH_MAX : (unsigned)b;
}

/* Refill the empty list of npages-page blocks; false if nothing came. */
static KA_NOINLINE bool refill(struct ka_pcp *p, size_t npages)
{
	size_t bytes = npages << KA_PAGE_SHIFT, high = ka_load_relaxed(&pcp_high);
	if (bytes > high)
		return false;
	unsigned want = batch_for(high, bytes), i = (unsigned)npages - 1;
	if (p->bytes + want * bytes > high)
		drain(p, high - want * bytes, i);
	void *blk[BATCH_MAX];
	bool zero[BATCH_MAX];
	unsigned n = ka_buddy_alloc_pages_batch(npages, KA_PG_PCP, blk, zero, want);
	/* Pushed in reverse, so that the list hands them out in address order. */
	for (unsigned j = n; j-- > 0;) {
		struct ka_page *pg = ka_map_page(blk[j]);
		pg->flags = zero[j] ? KA_PGF_CLEAN : 0;
		ka_list_add(&p->lists[i], &pg->free.node);
	}
	p->count[i] += n;
	ka_store_relaxed(&p->bytes, p->bytes + n * bytes);
	return n > 0;
}

void *ka_pcp_alloc(size_t npages, bool *zero)
{
	if (npages == 0 || npages > KA_PCP_MAX_PAGES)
		return NULL;
	struct ka_pcp *p = pcp_get();
	if (!p)
		return NULL;
	unsigned i = (unsigned)npages - 1;
	struct ka_list *l = &p->lists[i];
	if (KA_UNLIKELY(ka_list_empty(l)) && !refill(p, npages))
		return NULL;
	struct ka_page *pg = block_at(l->next);
	ka_list_del(&pg->free.node);
	p->count[i]--;
	ka_store_relaxed(&p->bytes, p->bytes - (npages << KA_PAGE_SHIFT));
	*zero = pg->flags & KA_PGF_CLEAN;
	pg->flags = 0;
	p->busy = true;
	ka_store_relaxed(&pg->kind, KA_PG_LARGE); /* read by the buddy's merges (buddy.c, kind_of) */
	return ka_page_addr(pg);
}

bool ka_pcp_free(struct ka_page *pg)
{
	size_t npages = pg->npages, bytes = npages << KA_PAGE_SHIFT;
	if (npages == 0 || npages > KA_PCP_MAX_PAGES)
		return false;
	struct ka_pcp *p = pcp_get();
	size_t high = ka_load_relaxed(&pcp_high);
	if (!p || bytes > high)
		return false;
	unsigned i = (unsigned)npages - 1;
	if (KA_UNLIKELY(p->bytes + bytes > high)) {
		size_t low = high - high / 4;
		drain(p, low > bytes ? low - bytes : 0, i);
	}
	ka_store_relaxed(&pg->kind, KA_PG_PCP);
	pg->flags = 0;
	ka_list_add(&p->lists[i], &pg->free.node);
	p->count[i]++;
	ka_store_relaxed(&p->bytes, p->bytes + bytes);
	p->busy = true;
	return true;
}

void *ka_pcp_take_kept(size_t npages, bool *zero)
{
	if (npages == 0 || npages > KA_PCP_KEPT || pcp_state != PCP_LIVE)
		return NULL;
	struct ka_pcp *p = pcp_self;
	struct ka_page *pg = p->kept[npages - 1];
	if (!pg)
		return NULL;
	p->kept[npages - 1] = NULL;
	ka_store_relaxed(&p->kept_bytes, p->kept_bytes - (npages << KA_PAGE_SHIFT));
	*zero = false;
	p->busy = true;
	ka_store_relaxed(&pg->kind, KA_PG_LARGE); /* read by the buddy's merges (buddy.c, kind_of) */
	return ka_page_addr(pg);
}

bool ka_pcp_keep(struct ka_page *pg)
{
	size_t npages = pg->npages;
	struct ka_pcp *p = npages && npages <= KA_PCP_KEPT ? pcp_get() : NULL;
	if (!p || p->kept[npages - 1])
		return false;
	ka_store_relaxed(&pg->kind, KA_PG_PCP);
	pg->flags = 0;
	p->kept[npages - 1] = pg;
	ka_store_relaxed(&p->kept_bytes, p->kept_bytes + (npages << KA_PAGE_SHIFT));
	p->busy = true;
	return true;
}

void ka_pcp_drain(void)
{
	if (pcp_state == PCP_LIVE) {
		drain(pcp_self, 0, 0);
		give_back_kept(pcp_self);
	}
}

/*
 * The housekeeping tick (tcache.c): lists that served no malloc and took
 * no free since the last tick go back to the buddy, which purges them by
 * age like any free block. A thread that uses its lists keeps them; one
 * that stopped calling kalloc keeps at most its high (it never ticks).
 */
void ka_pcp_tick(void)
{
	if (pcp_state != PCP_LIVE)
		return;
	struct ka_pcp *p = pcp_self;
	if (!p->busy && p->bytes)
		drain(p, 0, 0);
	if (!p->busy && p->kept_bytes)
		give_back_kept(p);
	p->busy = false;
}

void ka_pcp_thread_exit(void)
{
	if (pcp_state != PCP_LIVE) {
		pcp_state = PCP_DEAD;
		return;
	}
	struct ka_pcp *p = pcp_self;
	pcp_self = NULL;
	pcp_state = PCP_DEAD;
	drain(p, 0, 0);
	give_back_kept(p);
	ka_lock(&pcp_lock);
	ka_list_del(&p->node);
	ka_list_add(&spare, &p->node);
	nr_live--;
	set_high_locked();
	ka_unlock(&pcp_lock);
}

size_t ka_pcp_held_bytes(void)
{
	size_t bytes = 0;
	ka_lock(&pcp_lock);
	for (struct ka_list *e = live.next; e != &live; e = e->next) {
		struct ka_pcp *p = ka_container_of(e, struct ka_pcp, node);
		bytes += ka_load_relaxed(&p->bytes) + ka_load_relaxed(&p->kept_bytes);
	}
	ka_unlock(&pcp_lock);
	return bytes;
}

void ka_pcp_validate(void)
{
	if (pcp_state != PCP_LIVE)
		return;
	struct ka_pcp *p = pcp_self;
	size_t bytes = 0;
	for (unsigned i = 0; i < KA_PCP_MAX_PAGES; i++) {
		uint32_t n = 0;
		for (struct ka_list *l = p->lists[i].next; l != &p->lists[i]; l = l->next, n++) {
			struct ka_page *pg = block_at(l);
			if (pg->kind != KA_PG_PCP || pg->npages != i + 1)
				ka_fatal("ka_pcp_validate", "page list holds a wrong block at", ka_page_addr(pg), NULL);
			bytes += (size_t)(i + 1) << KA_PAGE_SHIFT;
		}
		if (n != p->count[i])
			ka_fatal("ka_pcp_validate", "page list count wrong", NULL, NULL);
	}
	if (bytes != p->bytes || bytes > KA_PCP_THREAD_BYTES)
		ka_fatal("ka_pcp_validate", "page list bytes wrong", NULL, NULL);
	size_t kept = 0;
	for (unsigned i = 0; i < KA_PCP_KEPT; i++) {
		struct ka_page *pg = p->kept[i];
		if (pg && (pg->kind != KA_PG_PCP || pg->npages != i + 1))
			ka_fatal("ka_pcp_validate", "a wrong block kept at", ka_page_addr(pg), NULL);
		kept += pg ? (size_t)(i + 1) << KA_PAGE_SHIFT : 0;
	}
	if (kept != p->kept_bytes)
		ka_fatal("ka_pcp_validate", "kept bytes wrong", NULL, NULL);
}

void ka_pcp_prefork(void) { pthread_mutex_lock(&pcp_lock); }

void ka_pcp_postfork(bool child)
{
	if (child) {
		/* Abandon the other threads' lists (see the top of this file). */
		for (struct ka_list *e = live.next, *nx; e != &live; e = nx) {
			nx = e->next;
			if (pcp_state != PCP_LIVE || ka_container_of(e, struct ka_pcp, node) != pcp_self) {
				ka_list_del(e);
				ka_list_add(&spare, e);
			}
		}
		nr_live = pcp_state == PCP_LIVE;
		set_high_locked();
	}
	ka_postfork_unlock(&pcp_lock, child);
}
