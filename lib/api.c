/*
 * api.c: the exported malloc family, thin over the layers below. The only
 * file that sets errno and the only one that exports symbols.
 *
 * Compiled twice: in the core with prefixed names (kalloc_malloc, ...), which
 * the unit tests call; and by preload.c with KA_PRELOAD defined, giving the
 * standard names that libkalloc.so exports for LD_PRELOAD. The fast paths of
 * malloc and free are inlined here from tcache.h in both builds.
 *
 * Semantics follow glibc's where glibc documents them: NULL with ENOMEM on
 * failure; calloc and reallocarray check overflow; realloc(p, 0) frees p
 * and returns NULL; a failed realloc leaves the block intact; free keeps
 * errno. Every block is 16-aligned (1 to 16 bytes come from kmalloc-16).
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "kalloc.h"
#include "tcache.h"

#define KA_EXPORT __attribute__((visibility("default")))
#ifdef KA_PRELOAD
#define KA_API(name) name
#else
#define KA_API(name) kalloc_##name
#endif
#ifdef KA_PRELOAD
/* C23 names glibc 2.36 does not declare yet. */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);
#endif

/* ------------------------------------------------------------ helpers */

/*
 * Where the program called, for leak:1's stack walk (leak.c): a frame
 * record {saved frame pointer, return address}. The family's slow paths
 * below are noinline and tail-called, so their own frame is that record
 * for the program's call: its return address is the call site, the frame
 * pointer it saved is the program's. Asking for it makes only the slow
 * path set up a frame, never the fast path.
 */
#define KA_SITE() ((const uintptr_t *)__builtin_frame_address(0))

/*
 * prof:1's count of a slow-path allocation (tcache.c). The sample walks
 * from site, a frame of this call chain: the barrier uses the result after
 * the call, so that it is never a tail call that pops the frame first.
 */
static inline void *prof_count(void *p, size_t n, const uintptr_t *site)
{
	p = ka_tcache_count(p, n, site);
	__asm__ volatile("" : "+r"(p));
	return p;
}

/* site NULL: malloc's, which tail-calls here. */
static KA_NOINLINE void *malloc_slow(size_t n, const uintptr_t *site)
{
	if (!site)
		site = KA_SITE();
	ka_init();
	ka_tcache_charge(n > KA_SMALL_MAX ? n : KA_SMALL_MAX);
	if (KA_UNLIKELY(ka_opt.publish))
		ka_stats_publish();
	void *p = n > PTRDIFF_MAX ? NULL : ka_debug_on ? ka_debug_alloc(n, 0, site) : ka_tcache_malloc_slow(n);
	if (!p)
		errno = ENOMEM;
	else if (KA_UNLIKELY(ka_prof_on))
		p = prof_count(p, n, site);
	return p;
}

/* malloc for the family's other members, from their site. */
static inline void *malloc_from(size_t n, const uintptr_t *site)
{
	void *p = ka_tcache_malloc(n);
	if (KA_LIKELY(p != NULL))
		return p;
	return malloc_slow(n, site);
}

static KA_NOINLINE void free_saving_errno(void *p, const char *func)
{
	int saved = errno;
	if (ka_debug_on) {
		ka_tcache_charge(KA_TCACHE_FREE_CHARGE);
		ka_debug_free(p, func);
	}
	else
		ka_tcache_free_slow(p, func);
	errno = saved;
}

/* The thread cache's slow free saves errno only past the remote frees'
 * common case, which leaves it alone. */
static KA_NOINLINE void free_slow(void *p, const char *func)
{
	if (KA_LIKELY(!ka_debug_on && p))
		ka_tcache_free_remote(p, func);
	else
		free_saving_errno(p, func);
}

/* Usable bytes of a live block; misuse is fatal, naming func. *slab (if
 * not NULL): its slab, NULL for a page block (or under a debug mode). */
static size_t usable_of(void *p, const char *func, struct ka_slab **slab)
{
	struct ka_slab *s = ka_debug_on ? NULL : ka_slab_of(p);
	if (slab)
		*slab = s;
	if (ka_debug_on)
		return ka_debug_usable(p, func);
	if (!s)
		return ka_large_usable(p, func);
	ka_tcache_check_live(p, s, func);
	return s->cache->size;
}

/* Every block malloc gives is 16-aligned (1 to 16 bytes: kmalloc-16). */
static inline bool malloc_aligns(size_t align, size_t size)
{
	(void)size;
	return align <= 16;
}

static void *alloc_aligned(size_t align, size_t size, const uintptr_t *site)
{
	if (malloc_aligns(align, size))
		return malloc_from(size, site);
	if (size > PTRDIFF_MAX) {
		errno = ENOMEM;
		return NULL;
	}
	ka_init();
	unsigned cls = ka_class_for_align(size ? size : 1, align);
	if (ka_debug_on || cls) {
		/* A sampled object of a class becomes a page block: aligned enough. */
		void *p = ka_debug_on ? ka_debug_alloc(size, align, site) : KA_API(malloc)(ka_classes[cls].size);
		if (!p)
			errno = ENOMEM;
		return p;
	}
	void *p = ka_large_alloc(size, align, false);
	if (!p)
		errno = ENOMEM;
	else if (KA_UNLIKELY(ka_prof_on))
		p = prof_count(p, size, site);
	return p;
}

/* The aligned family's slow path (tail-called: KA_SITE). */
static KA_NOINLINE void *aligned_from(size_t align, size_t size)
{
	return alloc_aligned(align, size, KA_SITE());
}

/* glibc's memalign: an alignment that is not a power of two is rounded up. */
static void *memalign_glibc(size_t align, size_t size)
{
	if (align > SIZE_MAX / 2 + 1) {
		errno = EINVAL;
		return NULL;
	}
	if (align & (align - 1))
		align = (size_t)1 << (64 - __builtin_clzl(align));
	return aligned_from(align, size);
}

/* ------------------------------------------------------------ the family */

KA_EXPORT void *KA_API(malloc)(size_t n)
{
	void *p = ka_tcache_malloc(n);
	if (KA_LIKELY(p != NULL))
		return p;
	return malloc_slow(n, NULL);
}

KA_EXPORT void KA_API(free)(void *p)
{
	if (KA_LIKELY(ka_tcache_free(p)))
		return;
	free_slow(p, "free()");
}

/* calloc past the thread cache (tail-called: KA_SITE). */
static KA_NOINLINE void *calloc_slow(size_t n)
{
	ka_init();
	if (n > KA_SMALL_MAX && !ka_debug_on) {
		void *p = ka_large_alloc(n, KA_PAGE_SIZE, true);
		if (!p)
			errno = ENOMEM;
		else if (KA_UNLIKELY(ka_prof_on))
			p = prof_count(p, n, KA_SITE()); /* a large block is flagged, not moved */
		return p;
	}
	void *p = malloc_slow(n, KA_SITE());
	if (p)
		memset(p, 0, n);
	return p;
}

KA_EXPORT void *KA_API(calloc)(size_t nmemb, size_t size)
{
	size_t n;
	if (__builtin_mul_overflow(nmemb, size, &n) || n > PTRDIFF_MAX) {
		errno = ENOMEM;
		return NULL;
	}
	void *p = ka_tcache_malloc(n);
	if (KA_LIKELY(p != NULL))
		return memset(p, 0, n);
	return calloc_slow(n);
}

/* realloc and reallocarray tail-call this: KA_SITE. */
static KA_NOINLINE void *realloc_from(void *p, size_t n)
{
	const uintptr_t *site = KA_SITE();
	if (!p)
		return malloc_from(n, site);
	if (n == 0) {
		free_slow(p, "realloc()");
		return NULL;
	}
	if (ka_debug_on) {
		void *q = n <= PTRDIFF_MAX ? ka_debug_realloc(p, n, site) : NULL;
		if (!q)
			errno = ENOMEM;
		return q;
	}
	struct ka_slab *slab;
	size_t old = usable_of(p, "realloc()", &slab);
	/* A slab object stays put while the smaller class would save under half.
	 * A sampled block (prof.c) is a page block, never a slab object, and
	 * ka_large_resize refuses it: it moves, and the new block is sampled
	 * on its own count. */
	if (slab && n <= old && ka_classes[ka_size_class[(n + 7) >> 3]].size * 2 >= old)
		return p;
	if (!slab && old > KA_SMALL_MAX && n > KA_SMALL_MAX) {
		void *q = ka_large_resize(p, n, "realloc()");
		if (q)
			return q;
	}
	if (n > PTRDIFF_MAX) {
		errno = ENOMEM;
		return NULL;
	}
	void *q = KA_API(malloc)(n);
	if (!q)
		return NULL;
	memcpy(q, p, n < old ? n : old);
	KA_API(free)(p);
	return q;
}

KA_EXPORT void *KA_API(realloc)(void *p, size_t n) { return realloc_from(p, n); }

KA_EXPORT void *KA_API(reallocarray)(void *p, size_t nmemb, size_t size)
{
	size_t n;
	if (__builtin_mul_overflow(nmemb, size, &n)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc_from(p, n);
}

/* posix_memalign's body, tail-called (KA_SITE). */
static KA_NOINLINE int posix_memalign_from(void **out, size_t align, size_t size)
{
	if (align < sizeof(void *) || (align & (align - 1)))
		return EINVAL;
	int saved = errno;
	void *p = alloc_aligned(align, size, KA_SITE());
	errno = saved;
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

KA_EXPORT int KA_API(posix_memalign)(void **out, size_t align, size_t size)
{
	return posix_memalign_from(out, align, size);
}

KA_EXPORT void *KA_API(aligned_alloc)(size_t align, size_t size)
{
	return memalign_glibc(align, size);
}

KA_EXPORT void *KA_API(memalign)(size_t align, size_t size)
{
	return memalign_glibc(align, size);
}

KA_EXPORT void *KA_API(valloc)(size_t size) { return aligned_from(KA_PAGE_SIZE, size); }

KA_EXPORT void *KA_API(pvalloc)(size_t size)
{
	size_t n = (size + KA_PAGE_SIZE - 1) & ~(KA_PAGE_SIZE - 1);
	if (n < size) {
		errno = ENOMEM;
		return NULL;
	}
	return aligned_from(KA_PAGE_SIZE, n ? n : KA_PAGE_SIZE);
}

KA_EXPORT size_t KA_API(malloc_usable_size)(void *p)
{
	return p ? usable_of(p, "malloc_usable_size()", NULL) : 0;
}

KA_EXPORT void KA_API(free_sized)(void *p, size_t size)
{
	(void)size;
	KA_API(free)(p);
}

KA_EXPORT void KA_API(free_aligned_sized)(void *p, size_t align, size_t size)
{
	(void)align;
	(void)size;
	KA_API(free)(p);
}

KA_EXPORT int KA_API(malloc_trim)(size_t pad)
{
	(void)pad;
	ka_init();
	ka_tcache_trim();
	ka_pcp_drain();
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		ka_cache_shrink(&ka_kmalloc[c], true);
	ka_large_purge(true);
	return ka_buddy_purge(true) > 0;
}

KA_EXPORT void KA_API(malloc_stats)(void)
{
	ka_init();
	/* glibc's writes to stderr; here, to what stderr was (report.c). */
	ka_stats_print(ka_report_fd());
}

#ifdef KA_PRELOAD
/* glibc's fields, filled from kalloc's totals (stats.c). */
KA_EXPORT struct mallinfo2 mallinfo2(void)
{
	struct mallinfo2 mi;
	struct ka_totals t;
	memset(&mi, 0, sizeof mi);
	ka_init();
	ka_totals(&t);
	mi.arena = t.mapped - t.huge_used;   /* non-mmapped space: the buddy's chunks */
	mi.hblks = t.nr_huge;                /* dedicated mappings */
	mi.hblkhd = t.huge_used;
	mi.uordblks = ka_totals_in_use(&t) - t.huge_used; /* in use, outside mappings */
	mi.fordblks = mi.arena > mi.uordblks ? mi.arena - mi.uordblks : 0;
	mi.fsmblks = t.tcache + t.pcp;       /* "fastbin" bytes: thread caches and page lists */
	mi.usmblks = t.peak_mapped;
	mi.keepcost = t.buddy_free - t.buddy_clean; /* free and resident: what trim would give back */
	return mi;
}

KA_EXPORT struct mallinfo mallinfo(void)
{
	struct mallinfo2 m2 = mallinfo2();
	struct mallinfo mi;
	memset(&mi, 0, sizeof mi);
	mi.arena = (int)m2.arena;
	mi.fordblks = (int)m2.fordblks;
	mi.uordblks = (int)m2.uordblks;
	mi.hblks = (int)m2.hblks;
	mi.hblkhd = (int)m2.hblkhd;
	mi.fsmblks = (int)m2.fsmblks;
	return mi;
}

/* kalloc tunes itself through KALLOC_CONF; glibc's knobs are accepted and ignored. */
KA_EXPORT int mallopt(int param, int value)
{
	(void)param;
	(void)value;
	return 1;
}
#else
/* ------------------------------------------------------------ object caches */

KA_EXPORT struct kmem_cache *kalloc_cache_create(const char *name, size_t size, size_t align,
						 unsigned long flags, void (*ctor)(void *))
{
	ka_init();
	if (flags & ~(unsigned long)KA_CACHE_FLAGS) {
		errno = EINVAL;
		return NULL;
	}
	return (struct kmem_cache *)ka_cache_create(name, size, align, (unsigned)flags, ctor);
}

KA_EXPORT void *kalloc_cache_alloc(struct kmem_cache *cache, unsigned flags)
{
	struct ka_cache *c = (struct ka_cache *)cache;
	void *p = ka_debug_on ? ka_debug_cache_alloc(c, NULL) : ka_cache_alloc(c);
	if (!p)
		errno = ENOMEM;
	else if (flags & KALLOC_ZERO)
		memset(p, 0, c->size);
	return p;
}

KA_EXPORT void kalloc_cache_free(struct kmem_cache *cache, void *obj)
{
	if (obj && ka_debug_on)
		ka_debug_cache_free((struct ka_cache *)cache, obj);
	else if (obj)
		ka_cache_free((struct ka_cache *)cache, obj, "kmem_cache_free()");
}

KA_EXPORT int kalloc_cache_destroy(struct kmem_cache *cache)
{
	struct ka_cache *c = (struct ka_cache *)cache;
	if (!c)
		return 0;
	int err = ka_cache_destroy(c);
	if (err)
		ka_warn("kmem_cache_destroy(): objects still in use, cache kept", c->name);
	return err;
}

KA_EXPORT void kalloc_slabinfo(int fd)
{
	ka_init();
	ka_slabinfo_print(fd, false);
}

KA_EXPORT void kalloc_buddyinfo(int fd)
{
	ka_init();
	ka_buddy_print(fd);
}

KA_EXPORT int kalloc_prof_dump(const char *path)
{
	ka_init();
	return ka_prof_dump(path);
}
#endif
