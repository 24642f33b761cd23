/*
 * tcache.h: the inline fast path of malloc and free for small sizes. A
 * thread's cache (struct ka_tcache) holds one bin per kmalloc class: a
 * singly linked list of free objects with encoded links. The fast path is a
 * class lookup and a pop or push: no lock, no atomic read-modify-write, no
 * initialisation test. A thread starts with ka_tcache_empty, whose bins are
 * empty (every malloc goes slow) and whose id matches no slab (every free
 * goes slow); the slow paths create the real cache.
 *
 * Checks kept on the fast path, all cheap:
 *  - malloc: the bin's head must be 16-aligned: a popped link is stored
 *    decoded (ka_link_code) and unchecked, and the next malloc of its
 *    class tests it with the empty test (KA_LIST_END), before it is
 *    followed (a write after free that hits a link is caught 15 times in
 *    16; the slow path reports it);
 *  - free: the bin must have room (a room count, whose decrement must not
 *    borrow);
 *  - free: the address must be in a slab page whose owner is this thread
 *    (its tag, read from the flat tag table by the address alone, types.h),
 *    at the start of one of the slab's objects (one multiply and one
 *    compare, ka_obj_divisor: not inside an object, not in the slab's tail),
 *    and not carry its free key (ka_key_of: the secret mixed with its
 *    address) in its second word. Every free object carries it (never-
 *    allocated ones too), wherever it waits, and no live one does, so a
 *    match is a double free: the slow path reports it.
 * What the fast path does not take goes to ka_tcache_free_slow, which makes
 * the same checks for every other case (check_object in tcache.c).
 * What the checks cost: the object start 5 instructions (mov, and, imul,
 * cmp, jae), the key 2 and malloc's clearing of it 1 (objdump): 8 of the
 * 50 instructions of a malloc(32)+free pair (make bench-callgrind), which
 * would be 42 without them. The tag table's bound (2) makes its load safe
 * for any address; the room and the tick (2 each) check nothing of the
 * program's.
 */
#ifndef KALLOC_TCACHE_H
#define KALLOC_TCACHE_H

#include "internal.h"

extern __thread struct ka_tls ka_tls;
#define ka_tc (ka_tls.tc)

void *ka_tcache_malloc_slow(size_t n);
/* After a fast-path malloc of n bytes that took the countdown below zero:
 * the housekeeping tick, or under prof:1 the tick or a sample (tcache.c,
 * settle); returns the block the program gets. */
__attribute__((returns_nonnull)) void *ka_tcache_tick_after(void *p, size_t n);
/* prof:1: a slow-path allocation of n bytes (p, NULL if it failed) from
 * site (api.c, KA_SITE); returns the block the program gets. The bytes
 * come off the sample clock's slack, and what exceeds it off the
 * countdown (tcache.c); inline unless that runs out or the clocks are not
 * armed yet. */
void *ka_tcache_count_slow(void *p, size_t n, const uintptr_t *site);
KA_INLINE void *ka_tcache_count(void *p, size_t n, const uintptr_t *site)
{
	int64_t b = (int64_t)n;
	if (KA_LIKELY(p != NULL && ka_tls.s_slack >= 0)) {
		if (KA_LIKELY(b <= ka_tls.s_slack)) {
			ka_tls.s_slack -= b;
			return p;
		}
		b -= ka_tls.s_slack;
		ka_tls.s_slack = 0;
		ka_tls.hk_slack += b;
		if ((ka_tls.tick -= b) >= 0)
			return p;
	}
	return ka_tcache_count_slow(p, n, site);
}
/* Count `bytes` of slow-path work down, ticking when due; call with no lock held. */
void ka_tcache_charge(size_t bytes);
/* What a slow free of a large block (or any, in a debug mode) counts: a
 * phase that only frees still ticks. A small object counts its size. */
#define KA_TCACHE_FREE_CHARGE (16 * KA_PAGE_SIZE)
void ka_tcache_free_slow(void *p, const char *func);
/* A slow free of p (not NULL, no debug mode) that errno survives: first
 * its common remote case (a kmalloc object of another thread's, onto an
 * outbox queued for its owner, needing no post, so no lock and no system
 * call; charged to housekeeping when its outbox is posted), else the rest
 * of ka_tcache_free_slow, errno saved. Misuse is fatal as there. */
void ka_tcache_free_remote(void *p, const char *func);
/* Fatal unless p is a live object of slab s (not freed, not inside one). */
void ka_tcache_check_live(void *p, struct ka_slab *s, const char *func);

KA_INLINE void *ka_tcache_malloc(size_t n)
{
	if (KA_LIKELY(n <= KA_SMALL_MAX)) {
		struct ka_tcache *tc = ka_tc;
		struct ka_bin *b = (struct ka_bin *)(void *)((char *)tc + tc->bin_off[(n + 15) >> 4]);
		char *p = b->head;
		/* Neither KA_LIST_END (empty) nor a corrupted link (the slow path
		 * tells which): the link popped below is checked here by the
		 * next malloc of the class, before it is followed. */
		if (KA_LIKELY(((uintptr_t)p & 15) == 0)) {
			/* next = ka_link_code(*p, p, secret), the mask in a register
			 * first, so that the link's load is followed by one xor, not
			 * two (the pair's latency is a chain through this load and
			 * the free's head store); p in rax, where malloc returns it
			 * (else gcc keeps it elsewhere and adds a move at the end). */
			uintptr_t next = tc->secret;
			__asm__("xorq %1, %0" : "+r"(next) : "a"(p));
			__asm__("xorq %1, %0" : "+r"(next) : "m"(*(uintptr_t *)p));
			b->head = (void *)next;
			b->room++;
			/* Clear the key, so that a later free is not taken for a double one. */
			((uint64_t *)p)[1] = 0;
			if (KA_UNLIKELY((ka_tls.tick -= (int64_t)n) < 0))
				return ka_tcache_tick_after(p, n);
			return p;
		}
	}
	return NULL;
}

/* The objects a bin holds. */
KA_INLINE uint32_t ka_bin_count(const struct ka_tcache *tc, unsigned cls)
{
	return (uint32_t)tc->max[cls] - tc->bins[cls].room;
}

/* The bytes tc's inbox words count (read racily: for bounds, stats and tests). */
KA_INLINE size_t ka_tcache_inbox_bytes(struct ka_tcache *tc)
{
	size_t bytes = 0;
	for (unsigned i = 0; i < KA_INBOX_SLOTS; i++) {
		uintptr_t v = __atomic_load_n(&tc->inbox[i], __ATOMIC_RELAXED);
		if (v != KA_INBOX_CLOSED)
			bytes += KA_INBOX_BYTES(v);
	}
	return bytes;
}

/* Any class: ka_tcache_free_class's argument for a free that does not know the size. */
#define KA_ANY_CLASS 0xffffffffu

/*
 * True if the fast path took the object, which must be of class want (a
 * sized delete says which) unless want is KA_ANY_CLASS; a constant
 * KA_ANY_CLASS folds the test away.
 */
KA_INLINE bool ka_tcache_free_class(void *ptr, uint32_t want)
{
	uintptr_t a = (uintptr_t)ptr;
	struct ka_tcache *tc = ka_tc;
	/* < 256 exactly when the slab's owner is this thread; then it is the
	 * class times 4, and times 8 more the bin's offset in bins[]. */
	uint32_t x = ka_tag_below(a, ka_tls.tags_limit) ^ tc->id8;
	if (KA_LIKELY(x < 256 && (want == KA_ANY_CLASS || x == want << KA_TAG_CLASS_SHIFT))) {
		struct ka_bin *b = (struct ka_bin *)(void *)((char *)tc->bins +
			(uintptr_t)x * (sizeof(struct ka_bin) >> KA_TAG_CLASS_SHIFT));
		char *p = ptr;
		uint64_t *key = (uint64_t *)p + 1;
		uint64_t mark = ka_link_code(0, a, tc->secret); /* ka_key_of */
		if (KA_LIKELY((a & b->slab_mask) * b->div < b->limit && *key != mark)) {
			/* The room's test is its decrement's borrow: one instruction
			 * in place of a load, a test and the decrement. A full bin
			 * has wrapped to ~0 when it jumps, and gets its 0 back. */
			__asm__ goto("subl $1, %0\n\tjb %l[full]" : "+m"(b->room) : : "cc" : full);
			*key = mark;
			*(uintptr_t *)p = (uintptr_t)b->head ^ mark; /* ka_link_code(head, a, secret) */
			b->head = p;
			return true;
		full:
			b->room = 0;
		}
	}
	return false;
}

KA_INLINE bool ka_tcache_free(void *ptr) { return ka_tcache_free_class(ptr, KA_ANY_CLASS); }

/* tcache.c */
void ka_tcache_flush_all(void);   /* the calling thread's cache, outboxes and inbox */
void ka_tcache_trim(void);        /* that, and every inbox other threads have not drained */
void ka_tcache_validate(void);    /* the calling thread's bins, outboxes and inbox; fatal on a breach */
/* Test hook: called by a post between linking its chain and its CAS. */
extern void (*ka_tcache_post_hook)(struct ka_tcache *to);
void ka_tcache_thread_exit(void); /* flush, and run cacheless from now on */
size_t ka_tcache_held_bytes(void); /* in all threads' caches, approximate */
uint32_t ka_tcache_ticks(void);    /* housekeeping passes of the calling thread with a live cache (tests) */
void ka_tcache_prefork(void);
void ka_tcache_postfork(bool child);
void ka_tcache_init(void);

#endif
