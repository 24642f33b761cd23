/*
 * internal.h: prototypes shared between kalloc's core files, grouped by the
 * file that owns them. Layers call downward only:
 *   api -> tcache -> slab -> buddy -> os, with large beside slab,
 *   pagemap, meta, options, report used by all.
 */
#ifndef KALLOC_INTERNAL_H
#define KALLOC_INTERNAL_H

#include "os.h"
#include "types.h"

/* ------------------------------------------------------------- list helpers */
KA_INLINE void ka_list_init(struct ka_list *l) { l->next = l->prev = l; }
KA_INLINE bool ka_list_empty(const struct ka_list *l) { return l->next == l; }
KA_INLINE void ka_list_add(struct ka_list *head, struct ka_list *n)
{
	n->next = head->next;
	n->prev = head;
	head->next->prev = n;
	head->next = n;
}
KA_INLINE void ka_list_del(struct ka_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}
#define ka_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))
/* Take the first node off a list; NULL if it is empty. */
KA_INLINE struct ka_list *ka_list_pop(struct ka_list *head)
{
	struct ka_list *n = head->next;
	if (n == head)
		return NULL;
	ka_list_del(n);
	return n;
}

/*
 * Cache locks are held for short batches: an adaptive mutex spins a little
 * before it sleeps, which saves a futex sleep and wake-up per contended batch.
 */
KA_INLINE void ka_lock_init(pthread_mutex_t *l)
{
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(l, &a);
	pthread_mutexattr_destroy(&a);
}

/*
 * The locks no system call may be made under (each cache's lock, the zone
 * lock, the huge lock; DESIGN.md decision 5) are taken with ka_lock and
 * dropped with ka_unlock, which keep a count per thread; os.c checks that
 * it is zero before every mmap, munmap, mremap, madvise and brk when the
 * check is on (ka_os_check_locks). The OS layer's, the map's and the
 * metadata allocator's own locks serialise those calls and are not
 * counted. The fork handlers take and reset locks directly, uncounted.
 */
extern __thread unsigned ka_locks_held;
KA_INLINE void ka_lock(pthread_mutex_t *l)
{
	pthread_mutex_lock(l);
	ka_locks_held++;
}
KA_INLINE void ka_unlock(pthread_mutex_t *l)
{
	ka_locks_held--;
	pthread_mutex_unlock(l);
}

/* After fork: the parent unlocks what prefork took; the child starts it anew. */
KA_INLINE void ka_postfork_unlock(pthread_mutex_t *l, bool child)
{
	if (child)
		ka_lock_init(l);
	else
		pthread_mutex_unlock(l);
}

/* Relaxed atomics on plain fields: racy reads that are allowed to be stale. */
#define ka_load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define ka_store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

/* ------------------------------------------------------------------ report.c */
/* A formatting buffer on the caller's stack: no allocation, no stdio. */
struct ka_buf {
	char *p;
	size_t len, cap;
};
void ka_buf_str(struct ka_buf *b, const char *s);
void ka_buf_u64(struct ka_buf *b, uint64_t v, int width); /* right-aligned in width */
void ka_buf_ustr(struct ka_buf *b, const char *s, int width); /* left-aligned in width */
void ka_buf_hex(struct ka_buf *b, uintptr_t v);
void ka_buf_flush(struct ka_buf *b, int fd); /* write(2) everything, then empty */

/*
 * Misuse and corrupt metadata end here: one line on stderr,
 *   "kalloc: <func>: <what> <addr> (<ctx>)", written without locks, then
 * abort (or the test hook, which must not return into kalloc).
 */
__attribute__((noreturn)) KA_COLD void ka_fatal(const char *func, const char *what,
						  const void *addr, const char *ctx);
/* The same, followed by `detail`: lines of "  key value" that say more. */
__attribute__((noreturn)) KA_COLD void ka_fatal_detail(const char *func, const char *what,
							 const void *addr, const char *ctx,
							 const char *detail);
void ka_set_fatal_hook(void (*hook)(const char *msg));
void ka_warn(const char *what, const char *detail);
/*
 * Where reports go (see report.c): ka_report_init takes fd 2 as it is now
 * as the start-up stderr (kalloc's start-up; tests after they redirect
 * stderr); ka_report_fd gives the descriptor to write a report to, or -1
 * when neither fd 2 nor the private duplicate is still that file.
 */
void ka_report_init(void);
int ka_report_fd(void);
/* Open the stats file named by pattern ("%p": the pid, "%%": "%") for
 * appending, 0600, no symlink; -1 with a warning if it cannot. */
int ka_report_open(const char *pattern);
/* Big enough that nothing is cut: each pattern character gives at most 5
 * bytes ("%p" gives a pid, at most 10 digits). */
#define KA_PATH_MAX (KA_OPT_STR_MAX * 5 + 16)
/* A file name pattern's expansion, into path[cap]. */
void ka_path_expand(const char *pattern, char *path, size_t cap);
/* open(path) for writing, created 0600, no symlink followed, close-on-exec, plus flags. */
int ka_path_open(const char *path, int flags);

#define ka_assert(c)                                                               \
	do {                                                                       \
		if (KA_DEBUG && !(c))                                              \
			ka_fatal(__func__, "assertion failed: " #c " at", NULL, NULL); \
	} while (0)

/* ----------------------------------------------------------------- options.c */
enum { KA_PAGE_SOURCE_MMAP, KA_PAGE_SOURCE_BRK };
/* A string option's buffer, its NUL included. */
#define KA_OPT_STR_MAX 1024

struct ka_options {
	uint64_t page_source;    /* KA_PAGE_SOURCE_* */
	uint64_t purge_delay_ms; /* free dirty blocks older than this go back */
	uint64_t stats;          /* print tables at exit */
	uint64_t poison;
	uint64_t redzone;
	uint64_t consistency;    /* check every free against its slab's free state */
	uint64_t publish;        /* publish counters in /dev/shm for kalloc-top */
	uint64_t tcache_max;     /* objects per thread-cache bin at most; 0 = no cache */
	/* The exit report goes here ("" = stderr); copied out of environ at
	 * start-up, as programs may rewrite environ for their process title. */
	char stats_file[KA_OPT_STR_MAX];
	uint64_t leak;           /* record every block's stack; report unreferenced ones at exit */
	uint64_t background_thread; /* a thread that purges at the decay rate with no calls */
	uint64_t thp;            /* huge blocks' mappings madvised MADV_HUGEPAGE (large.c) */
	uint64_t prof;           /* sampled heap profile (prof.c) */
	uint64_t prof_sample;    /* mean bytes between samples */
	uint64_t prof_step;      /* MiB of in-use growth between dumps; 0: none */
	char prof_file[KA_OPT_STR_MAX]; /* where the exit dump goes */
};
extern struct ka_options ka_opt;

/* Parse "key:value,..." into ka_opt; warns once per bad key or value. */
void ka_options_parse(const char *conf);
/* Find KALLOC_CONF in environ (no getenv) and parse it, unless the
 * process runs in secure-execution mode (AT_SECURE). */
void ka_options_init(void);
/* The same on env, with at_secure as getauxval(AT_SECURE) would give it. */
void ka_options_init_from(char *const *env, unsigned long at_secure);
/* Print one line per option with its help text, for --help. */
void ka_options_help(int fd);

/* --------------------------------------------------------------------- meta.c */
/* Internal metadata: bump-allocated from the OS, zeroed, never freed. */
void *ka_meta_alloc(size_t size, size_t align);
void ka_meta_prefork(void);
void ka_meta_postfork(bool child);

/* ------------------------------------------------------------------ pagemap.c */
extern struct ka_map_leaf *ka_map_root[KA_MAP_ROOT_SIZE];

/* The map entry of an address, 0 for any address that is not kalloc's. */
KA_INLINE uintptr_t ka_map_entry(uintptr_t a)
{
	if (KA_UNLIKELY(a >= KA_ADDR_LIMIT))
		return 0;
	struct ka_map_leaf *leaf = ka_load_relaxed(&ka_map_root[a >> (KA_CHUNK_SHIFT + KA_MAP_LEAF_BITS)]);
	return ka_load_relaxed(&leaf->entry[(a >> KA_CHUNK_SHIFT) & (KA_MAP_LEAF_SIZE - 1)]);
}

extern uintptr_t ka_tags_limit; /* KA_TAGS_FLAT_SIZE, or 0 when not reserved */
void ka_map_init(void);

/*
 * The free fast path's look-up: the tag of the page holding a from the
 * flat table, with limit ka_tags_limit or a copy of it (0 when there is no
 * table), 0 for an address it does not hold a tag of (huge mappings,
 * foreign or non-canonical addresses, a chunk whose tags are in its
 * metadata, no table). Its load depends on a alone, so it issues beside
 * the bound's, not after a map entry's (ka_tcache_free_class).
 */
KA_INLINE uint32_t ka_tag_below(uintptr_t a, uintptr_t limit)
{
	uintptr_t i = a >> KA_PAGE_SHIFT;
	if (KA_UNLIKELY(i >= limit))
		return 0;
	const uint32_t *t = KA_TAGS_FLAT;
	__asm__("" : "+r"(t)); /* else gcc adds the index with a lea of its own */
	return ka_load_relaxed(&t[i]);
}
KA_INLINE uint32_t ka_tag_fast(uintptr_t a) { return ka_tag_below(a, ka_tags_limit); }

/* A kmalloc slab's tag (types.h, struct ka_chunk). */
KA_INLINE uint32_t ka_tag_make(uint32_t owner, unsigned cls)
{
	return owner << 8 | cls << KA_TAG_CLASS_SHIFT;
}
/* The kmalloc class a tag names: 0 for none, KA_NR_CLASSES or more for a user cache's slab. */
KA_INLINE unsigned ka_tag_class(uint32_t tag)
{
	return (tag & 0xff) >> KA_TAG_CLASS_SHIFT;
}

KA_INLINE struct ka_chunk *ka_entry_chunk(uintptr_t e)
{
	return (struct ka_chunk *)(e - KA_MAP_CHUNK);
}

/* The tag (types.h, struct ka_chunk) of the page holding a, for a map entry e of a chunk. */
KA_INLINE uint32_t *ka_map_tag(uintptr_t e, uintptr_t a)
{
	return ka_entry_chunk(e)->tagv + ((a >> KA_PAGE_SHIFT) & (KA_CHUNK_PAGES - 1));
}

/* The tag of the page holding a, for any map entry e of a (0 if none). */
KA_INLINE uint32_t ka_entry_tag(uintptr_t e, uintptr_t a)
{
	return (e & KA_MAP_CHUNK) ? ka_load_relaxed(ka_map_tag(e, a)) : 0;
}

/* The tag of the page holding a: 0 outside buddy chunks' slabs. */
KA_INLINE uint32_t ka_tag_of(uintptr_t a)
{
	uint32_t t = ka_tag_fast(a);
	return t ? t : ka_entry_tag(ka_map_entry(a), a);
}

/* The descriptor of the page holding a, for a map entry e of a chunk. */
KA_INLINE struct ka_page *ka_entry_page(uintptr_t e, uintptr_t a)
{
	return &ka_entry_chunk(e)->pages[(a >> KA_PAGE_SHIFT) & (KA_CHUNK_PAGES - 1)];
}

/* The descriptor of the page holding `p` if p is in a buddy chunk, else NULL. */
KA_INLINE struct ka_page *ka_map_page(const void *p)
{
	uintptr_t a = (uintptr_t)p, e = ka_map_entry(a);
	return (e & KA_MAP_CHUNK) ? ka_entry_page(e, a) : NULL;
}

/* The map entry of a buddy chunk (see types.h). */
KA_INLINE uintptr_t ka_map_chunk_entry(const struct ka_chunk *c)
{
	return (uintptr_t)c | KA_MAP_CHUNK;
}

/* Where the tags of a new chunk at base go: the flat table's, made writable
 * (a system call: no lock held), or NULL when they must stay in its metadata. */
uint32_t *ka_map_open_tags(uintptr_t base);

/* Set the entry of every granule that [base, base+size) touches. 0 or ENOMEM. */
int ka_map_set(uintptr_t base, size_t size, uintptr_t entry);
/*
 * Clear the entries of the granules [base, base+size) touches that still
 * equal `entry`: for a range just given back to the OS, which another
 * thread may have mapped and entered already (no lock is held across the
 * system call). 0 or EINVAL.
 */
int ka_map_clear(uintptr_t base, size_t size, uintptr_t entry);
void ka_map_prefork(void);
void ka_map_postfork(bool child);

/* ------------------------------------------------------------------- buddy.c */
KA_INLINE struct ka_chunk *ka_page_chunk(const struct ka_page *pg)
{
	return (struct ka_chunk *)((uintptr_t)pg & ~(KA_CHUNK_META_ALIGN - 1));
}
KA_INLINE size_t ka_page_index(const struct ka_page *pg)
{
	return (size_t)(pg - ka_page_chunk(pg)->pages);
}
KA_INLINE void *ka_page_addr(const struct ka_page *pg)
{
	return (void *)(ka_page_chunk(pg)->base + (ka_page_index(pg) << KA_PAGE_SHIFT));
}
KA_INLINE uint32_t *ka_page_tag(const struct ka_page *pg)
{
	return &ka_page_chunk(pg)->tagv[ka_page_index(pg)];
}

/*
 * Allocate one block of 2^order pages, aligned to its size; its head
 * descriptor gets `kind`. *zero says whether it is known to read as zero.
 * NULL when the OS refuses memory.
 */
void *ka_buddy_alloc(unsigned order, unsigned kind, bool *zero);
/* Free a block from ka_buddy_alloc: merges with free buddies. Never purges
 * (callers may hold a lock): see ka_buddy_maybe_purge. */
void ka_buddy_free(void *addr, unsigned order);
/*
 * Allocate exactly npages (<= KA_CHUNK_PAGES) pages starting at a multiple
 * of align_pages pages (a power of two <= the power of two above npages):
 * a hole that fits, else the head of a block whose tail goes straight back
 * to the free lists, never touched.
 */
void *ka_buddy_alloc_pages(size_t npages, size_t align_pages, unsigned kind, bool *zero);
/* The same for a KA_PG_LARGE block of at most KA_SMALL_MAX bytes, placed among
 * the slabs (prof.c's sampled small objects: not among the large blocks). */
void *ka_buddy_alloc_pages_small(size_t npages, bool *zero);
void ka_buddy_free_pages(void *addr, size_t npages);
/* n blocks of npages pages (align 1) under one lock: how many were got; zero[i] as *zero. */
unsigned ka_buddy_alloc_pages_batch(size_t npages, unsigned kind, void **out, bool *zero, unsigned n);
/* ka_buddy_free_pages of n blocks (each of its head's npages) under one lock. */
void ka_buddy_free_pages_batch(void **addrs, unsigned n);
/*
 * For callers that hold a lock of their own (slab.c): ka_buddy_alloc from
 * blocks the zone holds, never mapping; NULL when it must grow: the caller
 * drops its lock, calls ka_buddy_grow (false: the OS refused) and tries
 * again, with steal_other set if the zone could not grow (invariant 5).
 */
void *ka_buddy_alloc_held(unsigned order, unsigned kind, bool *zero, bool steal_other);
bool ka_buddy_grow(void);
/* Purge by age if anything is due; call with no lock held (after a
 * ka_buddy_free made under one). Cheap when nothing is due. */
void ka_buddy_maybe_purge(void);
/* The order of the free block holding p, or -1 if p is not in one (tells a
 * double free from a wild pointer). */
int ka_buddy_free_order(const void *p);
/* Grow a block from ka_buddy_alloc_pages in place if the pages after it are free. */
bool ka_buddy_grow_pages(void *addr, size_t old_npages, size_t new_npages);
/* Shrink it in place: the pages past new_npages go back. */
void ka_buddy_shrink_pages(void *addr, size_t old_npages, size_t new_npages);

/* Give free dirty blocks back to the OS: all of them, or those older than the delay. */
size_t ka_buddy_purge(bool all);
/* Free blocks per order, as /proc/buddyinfo counts them. */
void ka_buddy_info(size_t counts[KA_NR_ORDERS]);
void ka_buddy_print(int fd);
struct ka_buddy_stats {
	size_t managed_pages; /* pages in chunks kalloc holds */
	size_t free_pages;    /* of which in free blocks */
	size_t clean_pages;   /* of which returned to the OS (or never touched) */
	size_t nr_chunks;
	size_t purged_bytes;  /* total given back with MADV_DONTNEED */
	size_t unmapped_chunks;
};
void ka_buddy_stats(struct ka_buddy_stats *st);
/* Check every invariant of the free lists and descriptors; fatal on a breach. */
void ka_buddy_validate(void);
void ka_buddy_prefork(void);
void ka_buddy_postfork(bool child);

/* ---------------------------------------------------------------- sizeclass.c */
extern struct ka_class ka_classes[KA_NR_CLASSES];
/* Size -> class for sizes 0..KA_SMALL_MAX, indexed by (size + 7) / 8. */
extern uint8_t ka_size_class[KA_SMALL_MAX / 8 + 1];
void ka_sizeclass_init(void);
/* The object-start test's constants for objects of `slot` bytes, `objs` to a slab. */
void ka_obj_divisor(uint32_t slot, uint32_t objs, uint64_t *div, uint64_t *limit);
/* The slab order for objects of `slot` bytes, by the rule atop sizeclass.c. */
unsigned ka_slab_order(size_t slot, unsigned max_order, unsigned *objs);
/* "prefix" + size, in the kernel's way: kmalloc-96, kmalloc-1k. */
void ka_class_name(char *out, size_t cap, const char *prefix, size_t size);
/* The smallest class holding `size` bytes aligned to `align`; 0 if none. */
unsigned ka_class_for_align(size_t size, size_t align);

/* --------------------------------------------------------------------- slab.c */
#define KA_CACHE_HWCACHE_ALIGN 0x2000u /* as SLAB_HWCACHE_ALIGN */
#define KA_CACHE_FLAGS KA_CACHE_HWCACHE_ALIGN

extern struct ka_cache ka_kmalloc[KA_NR_CLASSES];
extern uintptr_t ka_secret; /* random, not 0: scrambles free-list links and marks free objects */

/*
 * Free-list links are stored as next ^ where ^ secret (the process's
 * ka_secret, or a thread cache's copy of it), so a write after free cannot
 * aim the next allocation at a chosen address; a link that decodes to a
 * misaligned or foreign address is caught when the list is consumed.
 * glibc's safe-linking shifts `where` right by 12 because its only secret
 * is the address's random bits; with a random secret the shift adds nothing
 * but two instructions on the fast path. `where ^ secret` is known before
 * the link is loaded, so decoding adds one xor to the load's latency.
 */
KA_INLINE uintptr_t ka_link_code(uintptr_t v, uintptr_t where, uintptr_t secret)
{
	return v ^ (where ^ secret);
}
KA_INLINE void *ka_link_encode(const void *next, const void *where)
{
	return (void *)ka_link_code((uintptr_t)next, (uintptr_t)where, ka_secret);
}
KA_INLINE void *ka_link_decode(const void *link, const void *where)
{
	return (void *)ka_link_code((uintptr_t)link, (uintptr_t)where, ka_secret);
}

/*
 * The end of a bin's or a slab's free list: the last object's link
 * encodes it, and an empty bin's head is it. It is not 16-aligned, so
 * malloc's fast path tests a bin's head once for both "empty" and "a link
 * that decoded to no object" (a write after free), and goes slow for
 * either, where they are told apart: the link popped is stored unchecked
 * and checked by the next malloc of its class, before it is followed (2
 * instructions fewer than a NULL end and a check of each link at its pop).
 * A slab's own freelist field stays NULL when empty (pop_link maps the
 * end to it); remote-free chains, which never become bins as they stand,
 * end with NULL.
 */
#define KA_LIST_END ((void *)(uintptr_t)1)
/* A decoded bin link or head that is neither an object start's alignment
 * nor the end: a corrupted link. */
KA_INLINE bool ka_list_corrupt(const void *v)
{
	return ((uintptr_t)v & 15) && v != KA_LIST_END;
}

/*
 * The mark a free object at p carries in its second word: the secret
 * mixed with the object's own address, so that a copy of a free object's
 * bytes (realloc of a block whose memory once held slab objects, a copy of
 * uninitialised memory, a struct copied by value) never reads as free at
 * the address it was copied to. It is the link code's mask at p (the link
 * of a list's last object), so the fast free computes one value for both
 * of its stores: with a second random key, 3 instructions more a free
 * (pair/32 56 -> 53, callgrind). What that gives up: a free object's two
 * words xor to its next link in the clear, so a read after free shows a
 * heap address, as glibc's safe-linking does; a write after free still
 * cannot aim malloc at an address without knowing the secret.
 */
KA_INLINE uint64_t ka_key_of(const void *p)
{
	return ka_link_code(0, (uintptr_t)p, ka_secret);
}

struct ka_cache_info {
	size_t active_objs, num_objs, active_slabs, num_slabs;
};

void ka_slab_init(void);
int ka_cache_setup(struct ka_cache *c, const char *name, size_t size, size_t align,
		   unsigned flags, void (*ctor)(void *), unsigned cls);
struct ka_cache *ka_cache_create(const char *name, size_t size, size_t align, unsigned flags,
				 void (*ctor)(void *));
/* 0, or EBUSY when objects are still live (the cache is then kept). */
int ka_cache_destroy(struct ka_cache *c);
/* The slab of a page whose tag is nonzero. */
KA_INLINE struct ka_slab *ka_page_slab(const struct ka_page *pg)
{
	struct ka_page *head = &ka_page_chunk(pg)->pages[pg->head];
	return head->kind == KA_PG_SLAB ? &head->slab : NULL;
}
/* The slab holding p, for any address inside a slab; NULL otherwise. */
struct ka_slab *ka_slab_of(const void *p);

/*
 * Is `off` (bytes from a slab's start) the start of one of cache c's
 * objects? This is the one object-start test: it rejects the inside of an
 * object and the slab's tail past its last object alike. The bound makes it
 * exact for any offset; for offsets inside the slab the multiply alone is
 * (ka_obj_divisor), which is what the free fast path uses.
 */
KA_INLINE bool ka_obj_offset_ok(const struct ka_cache *c, size_t off)
{
	return off < (size_t)c->objs * c->slot && off * c->div < c->limit;
}

/*
 * The object-start test by class, for a page whose tag names kmalloc class
 * cls (slabs are aligned to their size, so a & slab_mask is the offset in
 * the slab): the same test as the fast path's, with no slab descriptor.
 */
KA_INLINE bool ka_class_obj_ok(unsigned cls, uintptr_t a)
{
	const struct ka_class *k = &ka_classes[cls];
	return (a & k->slab_mask) * k->div < k->limit;
}

KA_INLINE char *ka_slab_base(const struct ka_slab *s)
{
	return ka_page_addr(ka_container_of(s, struct ka_page, slab));
}
/* Is p the start of one of slab s's objects? */
KA_INLINE bool ka_slab_obj_ok(const struct ka_slab *s, const void *p)
{
	return ka_obj_offset_ok(s->cache, (uintptr_t)p - (uintptr_t)ka_slab_base(s));
}

/*
 * Does a free object of cache c carry its key (ka_key_of) in its second word? Not
 * when the link lives past the object (constructed caches keep the object
 * intact) or when there is no second word (user caches of 8-byte objects;
 * every kmalloc class has one).
 */
KA_INLINE bool ka_cache_keyed(const struct ka_cache *c)
{
	return c->link_off == 0 && c->slot >= 16;
}
/* Is obj marked free? A live object never carries the key (every
 * allocation path clears it), so a match is a double free, short of a
 * 2^-64 coincidence. */
KA_INLINE bool ka_obj_marked_free(const struct ka_cache *c, const void *obj)
{
	return ka_cache_keyed(c) && ((const uint64_t *)obj)[1] == ka_key_of(obj);
}
/* Take up to n objects; tags the slabs they came from with owner (if not 0). */
unsigned ka_slab_alloc_batch(struct ka_cache *c, void **out, unsigned n, uint32_t owner);
void ka_slab_free_batch(struct ka_cache *c, void **objs, unsigned n);
/*
 * A kmalloc cache's refill in one move: the whole free list of the slab a
 * refill for owner would take, if it holds at most max objects (*n of
 * them), as a chain linked and marked as in a bin; else NULL and nothing
 * taken. No object is touched.
 */
void *ka_slab_take_list(struct ka_cache *c, unsigned max, uint32_t owner, unsigned *n);
/* Re-tag slab s, owned by `from` (a retired or no cache), to `to`; false if
 * its owner is no longer `from`. */
bool ka_slab_adopt(struct ka_slab *s, uint32_t from, uint32_t to);
bool ka_slab_holds_free(struct ka_slab *s, void *obj);
void *ka_cache_alloc(struct ka_cache *c);
void ka_cache_free(struct ka_cache *c, void *obj, const char *func);
/* Give empty slabs back (all of them, or beyond the reserve). */
void ka_cache_shrink(struct ka_cache *c, bool all);
void ka_cache_info(struct ka_cache *c, struct ka_cache_info *info);
/* Call fn for every cache (kmalloc classes first), with its counts, under the list lock. */
void ka_cache_walk(void (*fn)(const struct ka_cache *, const struct ka_cache_info *, void *),
		   void *arg);
void ka_slab_validate(struct ka_cache *c);
void ka_slabinfo_print(int fd, bool all);
void ka_slab_prefork(void);
void ka_slab_postfork(bool child);

/* -------------------------------------------------------------------- stats.c */
/* What kalloc holds, in bytes (see stats.c for how each is read). */
struct ka_totals {
	size_t mapped, peak_mapped, meta, returned; /* the OS layer's counters */
	size_t slab_bytes;  /* in slabs */
	size_t slab_used;   /* objects out of the slabs, thread caches included */
	size_t tcache;      /* objects in thread caches */
	size_t pcp;         /* large blocks in per-thread page lists */
	size_t large_used;  /* buddy pages handed out as large blocks */
	size_t huge_used, huge_cached, nr_huge, nr_cached;
	size_t buddy_free, buddy_clean;
};
void ka_totals(struct ka_totals *t);
KA_INLINE size_t ka_totals_in_use(const struct ka_totals *t)
{
	return t->slab_used - t->tcache + t->large_used + t->huge_used;
}
/* slabinfo, buddyinfo, large mappings and totals, as malloc_stats prints them. */
void ka_stats_print(int fd);
/* Rewrite /dev/shm/kalloc.PID if KA_SHM_PERIOD_MS passed; call with no lock held. */
void ka_stats_publish(void);
void ka_stats_prefork(void);
void ka_stats_postfork(bool child);

/* -------------------------------------------------------------------- debug.c */
/* The debug modes (poison, redzone, consistency); see debug.c. */
extern bool ka_debug_on;
void ka_debug_init(void); /* after the options: sets ka_debug_on, turns thread caches off */
void ka_poison_object(const struct ka_cache *c, void *obj); /* no-op unless poisoning */
/* site: the program's call as a frame record {frame pointer, return
 * address} (api.c, KA_SITE), for leak:1's stack walk; NULL: walk from here */
void *ka_debug_alloc(size_t n, size_t align, const uintptr_t *site); /* align 0: malloc's */
void ka_debug_free(void *p, const char *func);
void *ka_debug_realloc(void *p, size_t n, const uintptr_t *site);
size_t ka_debug_usable(void *p, const char *func);
void *ka_debug_cache_alloc(struct ka_cache *c, const uintptr_t *site);
void ka_debug_cache_free(struct ka_cache *c, void *p);

/* -------------------------------------------------------------------- stack.c */
/* Stacks and block tables, for leak.c and prof.c (see stack.c). */
#define KA_STACK_DEPTH 16 /* frames kept per stack, as kmemleak's MAX_TRACE */
struct ka_stack {
	struct ka_stack *next; /* in its bucket */
	struct ka_stack *all;  /* every stack of its table, newest first */
	uint64_t hash;
	uint32_t depth;
	/* The owner's counters, under its lock: leak.c's report sums; prof.c's
	 * sampled counts of the site (frame[0] is its size class there). */
	union {
		struct {
			size_t count, bytes, first_size;
			uintptr_t first;
		};
		struct {
			uint64_t live_n, live_bytes, total_n, total_bytes;
		};
	};
	uintptr_t frame[KA_STACK_DEPTH];
};
struct ka_stacks {
	struct ka_stack **buckets, *all;
	size_t mask, n;
};
/* A block by address; addr 0 marks an empty slot. rec: the owner's record. */
struct ka_block {
	uintptr_t addr;
	size_t size;
	void *rec;
};
/* Open addressing, linear probing, backward-shift deletion, load <= 1/2,
 * doubled from ka_meta_alloc (the old table stays in the metadata). */
struct ka_blocks {
	struct ka_block *slot;
	size_t mask, n;
};
/* The calling thread's stack mapping, for walks; 0, 0 until ka_stack_bounds. */
extern __thread uintptr_t ka_stack_lo, ka_stack_hi;
void ka_stack_bounds(void);
void ka_stack_init(void); /* finds kalloc's own text, whose frames walks leave out */
/* Return addresses from site (a frame record {fp, ra}; NULL: the caller's frame) up. */
unsigned ka_stack_walk(uintptr_t *out, const uintptr_t *site);
/* The record of frames[0..n), added if new; NULL if metadata is refused. */
struct ka_stack *ka_stack_get(struct ka_stacks *t, const uintptr_t *frames, unsigned n);
bool ka_blocks_add(struct ka_blocks *t, uintptr_t addr, size_t size, void *rec); /* false: no memory */
bool ka_blocks_remove(struct ka_blocks *t, uintptr_t addr, struct ka_block *out); /* false: not there */
struct ka_block *ka_blocks_find(struct ka_blocks *t, uintptr_t addr); /* NULL: not there */
uint64_t ka_mix(uint64_t x);
uintptr_t ka_parse_hex(const char **s);
/* The /proc/self/maps mapping holding a (no allocation, no stdio; errno kept). */
bool ka_mapping_of(uintptr_t a, uintptr_t *lo, uintptr_t *hi);
/* The same, text: read the file's text even where the kernel answers the query (t/stack). */
bool ka_mapping_of_how(uintptr_t a, uintptr_t *lo, uintptr_t *hi, bool text);

/* --------------------------------------------------------------------- leak.c */
/* leak:1, after kmemleak (see leak.c). Called from debug.c with no lock held:
 * after a block is taken, and before it is given back. */
void ka_leak_alloc(void *p, size_t size, const uintptr_t *site);
void ka_leak_free(void *p);
void ka_leak_init(void); /* after ka_debug_init */
void ka_leak_prefork(void);
void ka_leak_postfork(bool child);

/* --------------------------------------------------------------------- prof.c */
/* prof:1, the sampled heap profile (see prof.c). */
extern bool ka_prof_on;
void ka_prof_init(void); /* after ka_debug_init: refused with a debug mode */
/* The sample clock: `used` more bytes allocated; true if the allocation
 * that ended them is sampled (a new interval is then drawn). */
bool ka_prof_clock(int64_t used);
int64_t ka_prof_left(void); /* bytes to the next sample */
/* Sample the new block p of n bytes (site: as ka_leak_alloc's); returns
 * the block the program gets: a slab object is swapped for a page block. */
void *ka_prof_sample(void *p, size_t n, const uintptr_t *site);
/* A sampled block about to be freed (its flag already cleared). */
void ka_prof_free(void *p, size_t size); /* a sampled block of size bytes (its size now) */
bool ka_prof_sampled(const void *p); /* p: a live block */
/* A sampled page block (pg its head) resized in place from old to n bytes. */
void ka_prof_resize(void *p, struct ka_page *pg, size_t old, size_t n);
int ka_prof_dump(const char *path); /* kalloc_prof_dump */
void ka_prof_prefork(void);
void ka_prof_postfork(bool child);

/* -------------------------------------------------------------------- large.c */
/* size > KA_SMALL_MAX, or any size with align > KA_SMALL_ALIGN_MAX. NULL if refused. */
void *ka_large_alloc(size_t size, size_t align, bool zero);
void *ka_large_alloc_sampled(size_t size); /* the page block of a sampled small object (prof.c) */
void ka_large_free(void *p, const char *func);
size_t ka_large_usable(void *p, const char *func);
/* Resize in place (or by mremap); NULL if it cannot (a sampled huge mapping: it
 * is copied), p then intact. A sampled large block's record follows (prof.c). */
void *ka_large_resize(void *p, size_t size, const char *func);
void ka_large_purge(bool all);
struct ka_large_stats {
	size_t nr_huge, huge_bytes;     /* live dedicated mappings */
	size_t nr_cached, cached_bytes; /* freed ones kept for reuse */
};
void ka_large_stats(struct ka_large_stats *st);
void ka_large_prefork(void);
void ka_large_postfork(bool child);

/* ---------------------------------------------------------------------- pcp.c */
/*
 * The calling thread's page lists (types.h, struct ka_pcp). ka_pcp_alloc:
 * a block of npages (<= KA_PCP_MAX_PAGES) pages, its head KA_PG_LARGE, or
 * NULL when the thread has no lists (exited, being set up, a budget too
 * small) or the buddy has no memory: the caller goes to the buddy.
 * ka_pcp_free: keep a block whose head is KA_PG_LARGE; false if not kept.
 * Neither takes a lock unless it refills or drains.
 */
void *ka_pcp_alloc(size_t npages, bool *zero);
bool ka_pcp_free(struct ka_page *pg);
/* The block of a sampled small object (large.c, ka_large_alloc_sampled):
 * take the one kept for npages, NULL if none; keep pg, false if one is kept. */
void *ka_pcp_take_kept(size_t npages, bool *zero);
bool ka_pcp_keep(struct ka_page *pg);
void ka_pcp_drain(void);       /* the calling thread's lists, all back to the buddy (trim) */
void ka_pcp_tick(void);        /* the same if they were idle since the last tick (tcache.c) */
void ka_pcp_thread_exit(void); /* drain and run without lists from now on */
size_t ka_pcp_held_bytes(void); /* in all threads' lists */
void ka_pcp_validate(void);    /* the calling thread's lists */
void ka_pcp_init(void);
void ka_pcp_prefork(void);
void ka_pcp_postfork(bool child);

/* --------------------------------------------------------------------- init.c */
extern bool ka_ready;
void ka_init_slow(void);
/*
 * Test hooks (core only; libkalloc.so exports none of them). Locks are
 * numbered in init.c's lock order, 0 first; ka_test_lock_name gives NULL
 * past the last. ka_test_lock(k) takes lock k as the fork handler does
 * (KA_LOCK_CACHES: every cache too) and ka_test_unlock(k) gives it back,
 * from the same thread. The prefork hook is called just before prefork
 * takes lock k.
 */
void ka_set_prefork_hook(void (*hook)(int lock));
const char *ka_test_lock_name(int lock);
void ka_test_lock(int lock);
void ka_test_unlock(int lock);
/* Take every kalloc lock in the written order (as fork does), and give them back. */
void ka_lock_all(void);
void ka_unlock_all(void);
KA_INLINE void ka_init(void)
{
	if (KA_UNLIKELY(!__atomic_load_n(&ka_ready, __ATOMIC_ACQUIRE)))
		ka_init_slow();
}

#endif
