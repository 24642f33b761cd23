/*
 * types.h: every structure and constant of kalloc's core, and the static
 * assertions that tie the constants together.
 *
 * Address space layout, bottom up:
 *   page   4 KiB, the unit of the buddy allocator;
 *   block  2^order pages (order 0..KA_MAX_ORDER), aligned to its own size;
 *   chunk  one block of order KA_MAX_ORDER (4 MiB), the unit kalloc takes from
 *          the OS and the granule of the address map. Its page descriptors live
 *          outside it, in metadata (struct ka_chunk), so that a whole chunk is
 *          one buddy block and free() never reads the memory it is asked about.
 */
#ifndef KALLOC_TYPES_H
#define KALLOC_TYPES_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KA_LIKELY(x) __builtin_expect(!!(x), 1)
#define KA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define KA_NOINLINE __attribute__((noinline))
#define KA_COLD __attribute__((cold))
#define KA_INLINE static inline __attribute__((always_inline))

#ifndef KA_DEBUG
#define KA_DEBUG 0
#endif

/* ---------------------------------------------------------------- pages */
#define KA_PAGE_SHIFT 12
#define KA_PAGE_SIZE ((size_t)1 << KA_PAGE_SHIFT)

/*
 * MAX_ORDER 10: the largest block is 1024 pages (4 MiB), as in Linux. It is
 * large enough to serve the whole large-object range (up to
 * KA_LARGE_MAX = 1 MiB, order 8) and the biggest slabs with room to split,
 * and small enough that one chunk's descriptors (64 KiB) and the address
 * map's leaves stay small and that one idle chunk is little to hold.
 */
#define KA_MAX_ORDER 10
#define KA_NR_ORDERS (KA_MAX_ORDER + 1)
#define KA_CHUNK_SHIFT (KA_PAGE_SHIFT + KA_MAX_ORDER)
#define KA_CHUNK_SIZE ((size_t)1 << KA_CHUNK_SHIFT)
#define KA_CHUNK_PAGES ((size_t)1 << KA_MAX_ORDER)

/* ---------------------------------------------------------- address map */
/*
 * The map is a two-level radix tree over the 47-bit user address space,
 * keyed by chunk number (address >> KA_CHUNK_SHIFT): 12 bits of root, 13 of
 * leaf. Addresses at or above 2^47 (non-canonical, or kernel) are rejected
 * before indexing.
 */
#define KA_ADDR_BITS 47
#define KA_ADDR_LIMIT ((uintptr_t)1 << KA_ADDR_BITS)
#define KA_MAP_ROOT_BITS 12
#define KA_MAP_LEAF_BITS (KA_ADDR_BITS - KA_CHUNK_SHIFT - KA_MAP_ROOT_BITS)
#define KA_MAP_ROOT_SIZE ((size_t)1 << KA_MAP_ROOT_BITS)
#define KA_MAP_LEAF_SIZE ((size_t)1 << KA_MAP_LEAF_BITS)

/*
 * A map entry is 0 (not kalloc's); for a buddy chunk, its struct ka_chunk
 * pointer with KA_MAP_CHUNK set; or a struct ka_huge pointer with
 * KA_MAP_HUGE set (a dedicated mapping; the entry is repeated for every
 * chunk-sized granule the mapping touches).
 */
#define KA_MAP_CHUNK ((uintptr_t)1)
#define KA_MAP_HUGE ((uintptr_t)2)
#define KA_MAP_TAGS ((uintptr_t)3)

struct ka_map_leaf {
	uintptr_t entry[KA_MAP_LEAF_SIZE];
};

/*
 * The flat tag table (pagemap.c): the tag (struct ka_chunk) of every page
 * of the 47-bit address space, 2^35 words of 4 bytes at a fixed address,
 * so that free reads an address's tag with one load that depends on the
 * address alone: no map entry on the way, whose load the tag's used to
 * wait for (callgrind pair/32 66 -> 61 instructions). 128 GiB reserved
 * read-only, and so neither charged nor backed: a read of a page no chunk
 * has written maps the zero page, and a tag of 0 sends a free to the slow
 * path. A chunk's 4 KiB of tags, one page of the table, is made writable
 * when the chunk appears and purged when it goes.
 * 384 to 512 GiB is where Linux puts nothing on x86-64 unasked (the break
 * follows the program, near 85 TiB for PIE, 4 MiB otherwise; mmap and
 * stacks sit below 128 TiB) and where ThreadSanitizer and MemorySanitizer
 * allow programs' mappings (TSan ends a process that maps outside them: at
 * 16 TiB it did). When it cannot be had (taken, as by ASan's shadow gap, or
 * refused under ulimit -v) the limit stays 0 and every free takes the slow
 * path; when one chunk's tags cannot be made writable, that chunk keeps them
 * in its metadata (tags[]) and its frees go slow. Below 2 GiB a 32-bit
 * displacement would name it (one instruction fewer), but then it spans
 * ranges valgrind holds: refused there, every free went slow and callgrind
 * counted 377 instructions a pair/32 instead of 57.
 */
#define KA_TAGS_FLAT_SIZE ((uintptr_t)1 << (KA_ADDR_BITS - KA_PAGE_SHIFT))
#define KA_TAGS_FLAT ((uint32_t *)0x6000000000)

/* --------------------------------------------------------------- lists */
/* Circular doubly linked list with a sentinel; an empty list points at itself. */
struct ka_list {
	struct ka_list *next, *prev;
};

/* ---------------------------------------------------------------- slabs */
struct ka_cache;

/*
 * A slab is one buddy block of 2^cache->order pages holding cache->objs
 * objects at multiples of cache->slot from its start. Its state lives in the
 * descriptor of its head page. State table (changed under cache->lock):
 *
 *   list        freelist   inuse
 *   empty       full       0
 *   partial     non-empty  0 < inuse < objs
 *   full        NULL       objs
 * Objects in thread caches (bins, outboxes, inboxes) count in inuse.
 *
 * A slab's free list is written only under its cache's lock. Objects that
 * other threads free go back through thread caches (tcache.c: outboxes and
 * inboxes), never straight onto the free list.
 */
struct ka_slab {
	struct ka_cache *cache;
	void *freelist;      /* encoded links (ka_link_encode) */
	struct ka_list node; /* on cache->partial, ->full or ->empty */
	uintptr_t spare;
	uint32_t inuse;      /* objects not on freelist */
	uint32_t owner : 24; /* the owner in its pages' tags (read here, next to node, by a refill's scan) */
	uint32_t list : 8;   /* KA_SLAB_EMPTY / PARTIAL / FULL */
};

enum { KA_SLAB_EMPTY, KA_SLAB_PARTIAL, KA_SLAB_FULL };

/* --------------------------------------------------- page descriptors */
/*
 * Page kinds. Only a block's head page carries its kind; every other page of
 * a block is KA_PG_TAIL, with `head` naming the head's index in the chunk.
 * Slab pages are the exception that the free fast path needs: every page of
 * a slab carries the slab's `tag`.
 */
enum ka_page_kind {
	KA_PG_TAIL = 0, /* not the head of a block */
	KA_PG_FREE,     /* head of a free buddy block on free_area[order] */
	KA_PG_SLAB,     /* head of a slab */
	KA_PG_LARGE,    /* head of a large block handed to a program */
	KA_PG_RAW,      /* head of a block handed out by ka_buddy_alloc alone */
	KA_PG_PCP,      /* head of a large block cached in a thread's page list (pcp.c) */
};

/* Page flags. */
#define KA_PGF_CLEAN 0x1   /* free block: not resident, reads as zero */
#define KA_PGF_SAMPLED 0x2 /* large block: in prof.c's table of sampled blocks */

/*
 * struct ka_page: one per page of every chunk, 64 bytes (a cache line, so
 * that two slabs' heads never share one).
 */
struct ka_page {
	uint32_t pad1;
	uint8_t kind;
	uint8_t order; /* of the block this page heads */
	uint8_t flags;
	uint8_t pad0;
	uint32_t head;   /* index in the chunk of the head of this page's block */
	uint32_t npages; /* large: pages handed out from this head */
	union {
		struct {
			struct ka_list node; /* on free_area[order].list[clean] */
			uint64_t freed_ms;   /* when it last became free and dirty */
		} free;
		struct ka_slab slab;
		struct {
			size_t size; /* bytes the program asked for (rounded up) */
			/* prof:1, KA_PGF_SAMPLED: the block's site (a struct
			 * ka_stack), NULL if the table refused its sample; written
			 * by the block's owner only (prof.c). */
			void *prof;
		} large;
	};
};

/*
 * struct ka_chunk: the metadata of one chunk, kept outside the chunk and
 * aligned to KA_CHUNK_META_ALIGN, so that a page descriptor finds its chunk
 * by masking. Chunk metadata is recycled, never unmapped: a stale pointer's
 * map lookup may race with an unmap and must still read valid memory.
 */
struct ka_chunk {
	uintptr_t base;      /* address of page 0 */
	uint32_t *tagv;      /* page 0's tag: in the flat table, or tags[] below */
	struct ka_list node; /* on the zone's chunk list, or its free metadata list */
	uint8_t source;      /* KA_SRC_MMAP or KA_SRC_BRK */
	uint8_t type;        /* KA_MT_*: what its blocks are for (buddy.c) */
	uint8_t pad[64 - sizeof(uintptr_t) - sizeof(uint32_t *) - sizeof(struct ka_list) - 2];
	struct ka_page pages[KA_CHUNK_PAGES];
	/*
	 * tagv[i] (tags[i] when the chunk's tags are not in the flat table): 0
	 * unless page i belongs to a slab; then ka_tag_make(owner, class) for a
	 * kmalloc slab, KA_CLASS_USER for a user cache's; owner is the id of
	 * the thread cache that last refilled from the slab (0: none). free()
	 * reads it with one relaxed load: a match with the caller's id means
	 * "push into my cache", anything else goes slow. Dense, so that one
	 * cache line holds the tags of 16 pages: the free fast path misses less
	 * on a scattered heap. tags[] is never touched when the flat table
	 * holds them.
	 */
	uint32_t tags[KA_CHUNK_PAGES];
};
#define KA_CHUNK_META_ALIGN ((size_t)128 << 10)

enum { KA_SRC_MMAP, KA_SRC_BRK };

/* ------------------------------------------------------------- buddy */
/*
 * Mobility types, after the kernel's migrate types: a chunk serves slabs,
 * large blocks of up to 64 KiB or bigger ones, so that freed blocks merge
 * back into big ones instead of being pinned apart by long-lived small ones
 * between them (buddy.c, invariant 5).
 */
enum { KA_MT_SLAB, KA_MT_LARGE, KA_MT_BIG, KA_NR_MT };

struct ka_free_area {
	/* [type][0] dirty (resident) blocks, newest first and in age order
	 * (buddy.c, invariant 6); [type][1] clean
	 * (returned) ones. Whole free chunks (order KA_MAX_ORDER) are of no
	 * type: they are all on [KA_MT_SLAB]. */
	struct ka_list list[KA_NR_MT][2];
	size_t nr[KA_NR_MT][2];
};

/* ------------------------------------------------------- page lists */
/*
 * Per-thread page lists (pcp.c), after the kernel's per-CPU pagesets: freed
 * large blocks of 1..KA_PCP_MAX_PAGES pages wait in the freeing thread's
 * list for their size, for that thread's next malloc of the size, without
 * the zone lock. Bounded twice: a thread holds at most KA_PCP_THREAD_BYTES,
 * and all threads together about KA_PCP_BUDGET (each thread's high is the
 * budget shared by the threads that have lists, capped by the former).
 *
 * The top, 16 pages (64 KiB), is where the buddy's large-block mobility
 * type ends (KA_BIG_PAGES in buddy.c): above it blocks are few and big,
 * a zone lock per block is little next to touching 64 KiB, and one cached
 * block would take an eighth of a thread's cap. The cap (512 KiB) holds a
 * refill batch of every size at once; the budget (4 MiB) is the slack the
 * memory target allows above a program's live data ("RSS falls to 2x live
 * data + 4 MiB"), so page lists alone never break it: up to 8 threads get
 * the full cap, 1000 threads get 4 KiB each, which caches nothing.
 */
#define KA_PCP_MAX_PAGES 16
#define KA_PCP_THREAD_BYTES ((size_t)512 << 10)
#define KA_PCP_BUDGET ((size_t)4 << 20)
#define KA_PCP_KEPT 4 /* sizes of page blocks kept for samples: 1..KA_SMALL_MAX bytes */

struct ka_pcp {
	/* lists[n - 1]: blocks of n pages, linked through their head
	 * descriptors' free.node, newest first (handed out from the front,
	 * given back to the buddy from the back, the coldest). */
	struct ka_list lists[KA_PCP_MAX_PAGES];
	uint32_t count[KA_PCP_MAX_PAGES];
	size_t bytes;        /* in all lists; written by the owner only, relaxed */
	/* kept[n - 1]: NULL or one block of n pages kept for the thread's next
	 * sampled small object of n pages (prof:1, pcp.c says why), KA_PG_PCP
	 * as the lists' blocks, but outside lists, bytes and high. */
	struct ka_page *kept[KA_PCP_KEPT];
	size_t kept_bytes;   /* in kept[]; written by the owner only, relaxed */
	bool busy;           /* allocated from or freed to since the last tick */
	struct ka_list node; /* on pcp.c's list of live page lists, or its spares */
};

/* ------------------------------------------------------- huge mappings */
/*
 * A dedicated mapping for a block larger than KA_LARGE_MAX. It starts on a
 * chunk boundary, so that no two of kalloc's regions share a map granule;
 * the map entry of every granule it touches points here, and lookups check
 * the bounds, since the end of its last granule may belong to anyone.
 */
struct ka_huge {
	uintptr_t base;
	size_t map_size;     /* bytes mapped, a multiple of the page size */
	size_t size;         /* bytes asked for */
	struct ka_list node; /* on the cache of freed mappings */
	uint64_t freed_ms;
	uint8_t state;       /* KA_HUGE_LIVE / KA_HUGE_CACHED */
	uint8_t sampled;     /* live: in prof.c's table of sampled blocks */
};
enum { KA_HUGE_FREE, KA_HUGE_LIVE, KA_HUGE_CACHED };

/* ----------------------------------------------------------- size classes */
#define KA_NR_CLASSES 38 /* class 0 is "none"; 1..37 are the kmalloc classes */
#define KA_SMALL_MAX 16384
#define KA_SMALL_ALIGN_MAX 4096
#define KA_SLAB_MAX_ORDER 3
#define KA_CLASS_USER 0xff /* tag class of a user cache's slab pages */
/* A kmalloc slab's tag holds its class times 4 (ka_tag_make), so that free
 * finds the class's bin (32 bytes) by scaling the tag's low byte by 8 in
 * the load's own address, with no shift or add; KA_CLASS_USER, odd, is no
 * multiple of 4. */
#define KA_TAG_CLASS_SHIFT 2
_Static_assert(((KA_NR_CLASSES - 1) << KA_TAG_CLASS_SHIFT) < KA_CLASS_USER, "a tag's low byte holds every class");
#define KA_LARGE_MAX ((size_t)1 << 20)

struct ka_class {
	uint32_t size;     /* object size and stride */
	uint8_t order;     /* slab order */
	uint16_t objs;     /* objects per slab */
	uint32_t slab_mask;/* slab bytes - 1 */
	uint64_t div, limit; /* see ka_obj_divisor (sizeclass.c) */
	char name[16];     /* "kmalloc-96" */
};

/* --------------------------------------------------------------- caches */
#define KA_CACHE_NAME_MAX 32

struct ka_cache {
	pthread_mutex_t lock;
	struct ka_list partial, full, empty;
	size_t nr_partial, nr_full, nr_empty;
	size_t nr_slabs_total;  /* slabs ever created, for stats */
	size_t active_objs;     /* objects handed out of slabs (incl. thread caches) */
	uint32_t size;          /* object size asked for */
	uint32_t slot;          /* stride between objects */
	uint64_t div, limit;    /* ka_obj_divisor(slot, objs), see ka_obj_offset_ok */
	uint32_t align;
	uint32_t link_off;      /* where a free object keeps its link */
	uint32_t objs;          /* objects per slab */
	uint8_t order;
	uint8_t cls;            /* kmalloc class, 0 for a user cache */
	uint32_t flags;         /* KA_CACHE_* */
	uint32_t reserve;       /* empty slabs kept rather than given back */
	void (*ctor)(void *);
	struct ka_list node;    /* on the list of all caches */
	char name[KA_CACHE_NAME_MAX];
};

/* -------------------------------------------------------- thread caches */
/*
 * A bin carries copies of what the free fast path needs about its class, so
 * that path reads the thread cache and the page's tag and nothing else.
 */
struct ka_bin {
	void *head;         /* encoded singly linked list */
	uint64_t div, limit;/* ka_classes[]: the object-start test of the free fast path */
	uint32_t slab_mask; /* ka_classes[].slab_mask */
	/* max - objects held (ka_bin_count): free's decrement must not borrow
	 * (tcache.h; a full bin's jump to the slow path sets it back to 0). 32 bits, not
	 * 16: malloc's increment and free's decrement are a chain through memory
	 * from each call to the next, and as 16-bit read-modify-writes they
	 * made the pair 6% slower (pair/32 4.15 -> 3.90 ns on an Intel Xeon;
	 * the maximum went to ka_tcache.max[] to make the room). */
	uint32_t room;
};
_Static_assert(sizeof(struct ka_bin) % (1u << KA_TAG_CLASS_SHIFT) == 0, "a tag's class scales to its bin");
#define KA_TCACHE_BIN_MAX 4096
/* What the maxima of one thread's bins add up to at most (tcache.c, grow). */
#define KA_TCACHE_BYTES ((size_t)4 << 20)

/*
 * Objects freed by this thread into slabs another thread cache owns, on
 * their way to that cache's inbox (tcache.c has the protocol).
 */
struct ka_outbox {
	void *head, *tail; /* encoded chain, as in a bin; tail's link is rewritten at post */
	uint32_t owner;    /* id of the cache it goes to; meaningful while count > 0 */
	uint16_t count;
	uint16_t units;    /* bytes / 16 */
};
#define KA_OUTBOXES 8  /* direct-mapped by owner id */

#define KA_INBOX_SLOTS 4 /* inbox words per cache (tcache.c, drain_inbox) */
struct ka_tcache {
	uint32_t id8;          /* owner id in slab tags, shifted as in the tag (id << 8) */
	uint32_t pad;
	uintptr_t secret;      /* ka_secret, copied next to the bins */
	struct ka_bin bins[KA_NR_CLASSES];
	uint16_t max[KA_NR_CLASSES];  /* bins[c] holds at most max[c] objects, <= KA_TCACHE_BIN_MAX */
	uint16_t fill[KA_NR_CLASSES]; /* objects the next refill brings: doubles up to max / 2 */
	uint8_t busy[KA_NR_CLASSES];  /* refilled or flushed since the last tick (tcache.c, gc) */
	/* Byte offset in this struct of the bin serving n bytes, at (n + 15) / 16:
	 * one load from the size to the bin. A copy in each cache (2 KiB), so
	 * that malloc needs no table address: one instruction fewer. */
	uint16_t bin_off[KA_SMALL_MAX / 16 + 1];
	struct ka_outbox out[KA_OUTBOXES];
	size_t out_bytes;      /* in out[], for stats (read racily) */
	size_t bin_bytes;      /* the sum of max[] * class size (tcache.c, grow) */
	bool inbox_used;       /* drained since the last GC pass (tcache.c, inbox bound) */
	bool keeps;            /* keeps remote frees (tcache.c): remote_bytes reached a quarter of the last tick */
	size_t remote_bytes;   /* freed into other caches' slabs this tick: posted, or kept of whole-line classes */
	struct ka_list node;   /* on the list of live thread caches */
	uint32_t slot;         /* index in the slot table (id's low bits) */
	uint32_t posts;        /* posts made: the next goes to inbox[posts % KA_INBOX_SLOTS] of its owner */
	/*
	 * What other threads read and write, on a line of its own: neither the
	 * owner's fast path nor any lock holder writes near it.
	 *  - id: the cache's id, 0 once retired; every remote free reads it (on
	 *    the bins' line, it missed whenever the owner used a small bin);
	 *  - inbox: chains posted by other threads, each word pointer |
	 *    bytes/64 << 48 (KA_INBOX_BYTES), or KA_INBOX_CLOSED; a poster
	 *    takes the words in turn, so that the drain walks several chains
	 *    at once (tcache.c, drain_inbox);
	 *  - inbox_max: the bytes a post keeps the inbox below: 0, or from
	 *    KA_INBOX_MIN_BYTES to KA_INBOX_MAX_BYTES; only the owner writes it;
	 *  - inbox_refused: set by a post the bound turned away, cleared by the
	 *    owner's drain that grows the bound for it.
	 */
	uint32_t id __attribute__((aligned(64)));
	uint32_t inbox_max;
	uint32_t inbox_refused;
	uintptr_t inbox[KA_INBOX_SLOTS];
}; /* `id` is aligned to a line, so the struct ends one line after it: nothing follows on it */
#define KA_INBOX_CLOSED ((uintptr_t)1)

/*
 * A thread's own words, side by side in TLS so that the fast path finds
 * both with one address: its cache, and the countdown of bytes allocated
 * until its next housekeeping tick (tcache.c). Never in a shared structure:
 * every thread writes its own. Under prof:1 the countdown runs out at the
 * nearer of the next tick and the next sample, and each clock has a slack
 * past it (tcache.c), here for the slow allocations' inline count
 * (tcache.h); s_slack is KA_S_UNARMED plus the slack until the thread's
 * first count arms the clocks (negative, so that count goes slow).
 */
struct ka_tls {
	struct ka_tcache *tc;
	int64_t tick;
	int64_t s_slack, hk_slack;
	/* ka_tags_limit once the thread has a live cache, 0 before: free's
	 * bound test then reads no other cache line and no GOT entry. */
	uintptr_t tags_limit;
};
#define KA_TICK_BYTES ((int64_t)1 << 20)
#define KA_S_UNARMED (INT64_MIN / 2)
#define KA_INBOX_SHIFT 48
/* The bytes an inbox word counts, in 64-byte units (each post rounds its
 * chain up), and the bounds of what a post may take it to: a cache's first
 * grown bound and the most it doubles to (tcache.c says why). */
#define KA_INBOX_UNIT_SHIFT 6
#define KA_INBOX_BYTES(v) (((v) >> KA_INBOX_SHIFT) << KA_INBOX_UNIT_SHIFT)
#define KA_INBOX_PTR(v) ((v) & (((uintptr_t)1 << KA_INBOX_SHIFT) - 1))
#define KA_INBOX_MIN_BYTES ((size_t)64 << 10)
#define KA_INBOX_MAX_BYTES ((size_t)4 << 20)
#define KA_INBOX_BUDGET ((size_t)12 << 20) /* shared by the live caches (tcache.c, set_inbox_cap_locked) */

/*
 * Thread cache ids fit the tag's 24 owner bits: a slot (the low
 * KA_TCACHE_SLOT_BITS, the cache's index in the slot table, so that another
 * thread finds the cache from a tag) and a generation that changes each
 * time a retired cache is taken by a new thread. 0 is "no owner" (fresh
 * slabs, user caches); the empty cache of a thread that has none has an id
 * no slab is ever tagged with (its slot is never handed out), so its every
 * free goes slow.
 */
#define KA_TCACHE_SLOT_BITS 14
#define KA_TCACHE_SLOTS (1u << KA_TCACHE_SLOT_BITS)
#define KA_TCACHE_ID_NONE ((1u << 24) - 1)

_Static_assert(sizeof(struct ka_bin) == 32, "a bin is found with one shift");
_Static_assert(offsetof(struct ka_tcache, inbox) + sizeof(((struct ka_tcache *)0)->inbox) -
			       offsetof(struct ka_tcache, id) <= 64,
	       "what posters write is on one line");
_Static_assert(sizeof(struct ka_page) == 64, "page descriptor is a cache line");
_Static_assert(sizeof(struct ka_chunk) == 64 + 68 * KA_CHUNK_PAGES, "chunk header is 64 bytes");
_Static_assert(sizeof(struct ka_chunk) <= KA_CHUNK_META_ALIGN, "chunk metadata fits its slot");
_Static_assert(KA_CHUNK_SHIFT + KA_MAP_ROOT_BITS + KA_MAP_LEAF_BITS == KA_ADDR_BITS,
	       "the map covers the user address space");
_Static_assert((KA_LARGE_MAX >> KA_PAGE_SHIFT) <= KA_CHUNK_PAGES, "large blocks fit a chunk");
_Static_assert(KA_SMALL_MAX < KA_LARGE_MAX, "large starts above small");
_Static_assert(KA_PCP_KEPT * KA_PAGE_SIZE == KA_SMALL_MAX && KA_PCP_KEPT <= KA_PCP_MAX_PAGES,
	       "a kept page block per page count of a small object");
_Static_assert((KA_PCP_MAX_PAGES << KA_PAGE_SHIFT) <= KA_LARGE_MAX, "page lists hold buddy blocks");
_Static_assert(KA_PCP_THREAD_BYTES <= KA_PCP_BUDGET, "one thread's cap fits the budget");

#endif
