/*
 * debug.c: the debug modes of KALLOC_CONF, named after the kernel's slab
 * debugging flags:
 *   poison       SLAB_POISON: a freed object is filled with 0x6b and its
 *                last byte with 0xa5; a new one with 0x5a. A changed poison
 *                byte found when the object is handed out again is a write
 *                after free. The free-list link (the first word, when the
 *                link lives in the object) is left out; objects of caches
 *                with a constructor are never poisoned (their state must
 *                survive), calloc'd ones are zeroed after.
 *   redzone      SLAB_RED_ZONE, but after the size the program asked for,
 *                not after the slot: the usable area U of every block ends
 *                with a trailer word holding the requested size n, and
 *                bytes [n, U - 8) (8 at least) hold 0xcc. Checked at free,
 *                realloc and malloc_usable_size, which returns n.
 *   consistency  SLAB_CONSISTENCY_CHECKS: every free is checked against
 *                its slab's own free state, so every double free is caught
 *                (even one whose key word was overwritten). poison implies it: a poisoned object has
 *                no room for the cheap double-free key.
 *
 *   leak         kmemleak: every block is recorded with its stack, the
 *                unreferenced ones reported at exit (leak.c).
 *
 * Any mode switches the thread caches off at start-up (tcache_max 0), so
 * every malloc and free misses the inline fast path and api.c hands it
 * here from its slow path: the fast path itself carries no flag test
 * (DESIGN.md, "What users see"). Objects come from and go to the slabs
 * under their locks, so there is never a cached object to check twice.
 */
#include <string.h>

#include "internal.h"

#define POISON_FREE 0x6b
#define POISON_END 0xa5
#define POISON_INUSE 0x5a
#define RED_ACTIVE 0xcc
#define RZ_MIN 8     /* guard bytes at least */
#define RZ_TRAILER 8 /* the requested size, encoded, at the end of the usable area */
#define RZ_MAGIC 0x6b616c6c6f63727aull

bool ka_debug_on;

void ka_debug_init(void)
{
	ka_debug_on = ka_opt.poison || ka_opt.redzone || ka_opt.consistency || ka_opt.leak;
	if (ka_debug_on)
		ka_opt.tcache_max = 0;
}

/* Poisoned bytes of an object of cache c: [8, slot), or none. */
static bool poisoned(const struct ka_cache *c)
{
	return ka_opt.poison && !c->ctor && c->link_off == 0 && c->slot > 8;
}

void ka_poison_object(const struct ka_cache *c, void *obj)
{
	if (!poisoned(c))
		return;
	unsigned char *p = obj;
	memset(p + 8, POISON_FREE, c->slot - 8);
	p[c->slot - 1] = POISON_END;
}

static void detail_bytes(struct ka_buf *b, const unsigned char *p, size_t from, size_t to)
{
	static const char hex[] = "0123456789abcdef";
	ka_buf_str(b, "  bytes ");
	ka_buf_u64(b, from, 0);
	ka_buf_str(b, "..");
	ka_buf_u64(b, to - 1, 0);
	ka_buf_str(b, ":");
	for (size_t i = from; i < to; i++) {
		char x[4] = {' ', hex[p[i] >> 4], hex[p[i] & 15], 0};
		ka_buf_str(b, x);
	}
	ka_buf_str(b, "\n");
}

/* A window of at most 32 bytes around offset `at` of an object of `size` bytes. */
static void detail_window(struct ka_buf *b, const unsigned char *p, size_t at, size_t size)
{
	size_t from = at >= 8 ? (at - 8) & ~(size_t)7 : 0, to = from + 32 < size ? from + 32 : size;
	detail_bytes(b, p, from, to);
}

static void check_poison(const struct ka_cache *c, unsigned char *p, const char *func)
{
	if (!poisoned(c))
		return;
	size_t bad = 0, first = 0, last = 0;
	for (size_t i = 8; i < c->slot; i++)
		if (p[i] != (i == c->slot - 1 ? POISON_END : POISON_FREE)) {
			if (!bad++)
				first = i;
			last = i;
		}
	if (!bad)
		return;
	char mem[640];
	struct ka_buf b = {mem, 0, sizeof mem - 1};
	ka_buf_str(&b, "  object ");
	ka_buf_hex(&b, (uintptr_t)p);
	ka_buf_str(&b, ", ");
	ka_buf_u64(&b, c->slot, 0);
	ka_buf_str(&b, " bytes, freed and poisoned\n  first changed byte at offset ");
	ka_buf_u64(&b, first, 0);
	ka_buf_str(&b, " (");
	ka_buf_hex(&b, (uintptr_t)(p + first));
	ka_buf_str(&b, "): ");
	ka_buf_hex(&b, p[first]);
	ka_buf_str(&b, ", poison ");
	ka_buf_hex(&b, first == c->slot - 1 ? POISON_END : POISON_FREE);
	ka_buf_str(&b, "\n  changed bytes: ");
	ka_buf_u64(&b, bad, 0);
	ka_buf_str(&b, ", offsets ");
	ka_buf_u64(&b, first, 0);
	ka_buf_str(&b, "..");
	ka_buf_u64(&b, last, 0);
	ka_buf_str(&b, "\n");
	detail_window(&b, p, first, c->slot);
	mem[b.len] = 0;
	ka_fatal_detail(func, "write after free in", p, c->name, mem);
}

static void set_redzone(unsigned char *p, size_t n, size_t usable)
{
	memset(p + n, RED_ACTIVE, usable - RZ_TRAILER - n);
	*(uint64_t *)(void *)(p + usable - RZ_TRAILER) = n ^ RZ_MAGIC;
}

/* The requested size of a live block with a red zone; fatal if it was overrun. */
static size_t check_redzone(unsigned char *p, size_t usable, const char *func, const char *ctx)
{
	size_t n = *(uint64_t *)(void *)(p + usable - RZ_TRAILER) ^ RZ_MAGIC, at;
	if (n + RZ_MIN + RZ_TRAILER <= usable) {
		for (at = n; at < usable - RZ_TRAILER; at++)
			if (p[at] != RED_ACTIVE)
				break;
		if (at == usable - RZ_TRAILER)
			return n;
	} else {
		/* The trailer itself was overwritten: the size asked for is lost. */
		n = 0;
		at = usable - RZ_TRAILER;
	}
	char mem[640];
	struct ka_buf b = {mem, 0, sizeof mem - 1};
	ka_buf_str(&b, "  object ");
	ka_buf_hex(&b, (uintptr_t)p);
	if (n) {
		ka_buf_str(&b, ", requested ");
		ka_buf_u64(&b, n, 0);
		ka_buf_str(&b, " bytes");
	} else {
		ka_buf_str(&b, ", requested size unknown (its record at the end was overwritten)");
	}
	ka_buf_str(&b, "\n  red zone byte at offset ");
	ka_buf_u64(&b, at, 0);
	ka_buf_str(&b, " (");
	ka_buf_hex(&b, (uintptr_t)(p + at));
	ka_buf_str(&b, ") changed: ");
	ka_buf_hex(&b, p[at]);
	ka_buf_str(&b, ", guard ");
	ka_buf_hex(&b, RED_ACTIVE);
	ka_buf_str(&b, "\n");
	detail_window(&b, p, at, usable);
	mem[b.len] = 0;
	ka_fatal_detail(func, "buffer overrun of", p, ctx, mem);
}

/* Take one object of c from its slabs and check what was written while it was free. */
static void *take(struct ka_cache *c)
{
	void *obj;
	if (!ka_slab_alloc_batch(c, &obj, 1, 0))
		return NULL;
	check_poison(c, obj, "malloc()");
	if (!poisoned(c) && ka_cache_keyed(c))
		((uint64_t *)obj)[1] = 0; /* the free key (slab.c mark_free) */
	return obj;
}

void *ka_debug_alloc(size_t n, size_t align, const uintptr_t *site)
{
	size_t need = n, usable;
	if (ka_opt.redzone && __builtin_add_overflow(n, RZ_MIN + RZ_TRAILER, &need))
		return NULL;
	unsigned cls = align > 16 ? ka_class_for_align(need, align)
		       : need <= KA_SMALL_MAX ? ka_size_class[(need + 7) >> 3] : 0;
	unsigned char *p;
	if (cls) {
		if (!(p = take(&ka_kmalloc[cls])))
			return NULL;
		usable = ka_classes[cls].size;
	} else {
		if (!(p = ka_large_alloc(need, align > KA_PAGE_SIZE ? align : KA_PAGE_SIZE, false)))
			return NULL;
		usable = ka_large_usable(p, "malloc()");
	}
	if (ka_opt.poison)
		memset(p, POISON_INUSE, n);
	if (ka_opt.redzone)
		set_redzone(p, n, usable);
	if (ka_opt.leak)
		ka_leak_alloc(p, n, site);
	return p;
}

/* The slab of a pointer the program hands back, after the checks every mode makes. */
static struct ka_slab *slab_checked(void *p, const char *func)
{
	if (!ka_map_entry((uintptr_t)p))
		ka_fatal(func, "invalid pointer (not from kalloc)", p, NULL);
	struct ka_slab *s = ka_slab_of(p);
	if (!s)
		return NULL;
	struct ka_cache *c = s->cache;
	if (!ka_slab_obj_ok(s, p))
		ka_fatal(func, "invalid pointer (not the start of an object)", p, c->name);
	if (ka_slab_holds_free(s, p))
		ka_fatal(func, strcmp(func, "free()") == 0 ? "double free of" : "use of a freed block", p,
			 c->name);
	return s;
}

size_t ka_debug_usable(void *p, const char *func)
{
	struct ka_slab *s = slab_checked(p, func);
	if (!s) {
		size_t u = ka_large_usable(p, func);
		return ka_opt.redzone ? check_redzone(p, u, func, "large") : u;
	}
	struct ka_cache *c = s->cache;
	return ka_opt.redzone && c->cls ? check_redzone(p, c->size, func, c->name) : c->size;
}

void ka_debug_free(void *p, const char *func)
{
	if (!p)
		return;
	struct ka_slab *s = slab_checked(p, func);
	if (ka_opt.leak)
		ka_leak_free(p);
	if (!s) {
		if (ka_opt.redzone)
			check_redzone(p, ka_large_usable(p, func), func, "large");
		ka_large_free(p, func);
		return;
	}
	struct ka_cache *c = s->cache;
	if (ka_opt.redzone && c->cls)
		check_redzone(p, c->size, func, c->name);
	ka_poison_object(c, p);
	ka_cache_free(c, p, func);
}

void *ka_debug_realloc(void *p, size_t n, const uintptr_t *site)
{
	size_t old = ka_debug_usable(p, "realloc()");
	void *q = ka_debug_alloc(n, 0, site);
	if (!q)
		return NULL;
	memcpy(q, p, old < n ? old : n);
	ka_debug_free(p, "realloc()");
	return q;
}

void *ka_debug_cache_alloc(struct ka_cache *c, const uintptr_t *site)
{
	void *p = take(c);
	if (p && poisoned(c))
		memset(p, POISON_INUSE, c->size);
	if (p && ka_opt.leak)
		ka_leak_alloc(p, c->size, site);
	return p;
}

void ka_debug_cache_free(struct ka_cache *c, void *p)
{
	struct ka_slab *s = slab_checked(p, "kmem_cache_free()");
	if (!s || s->cache != c)
		ka_fatal("kmem_cache_free()", "object of another cache:", p, c->name);
	if (ka_opt.leak)
		ka_leak_free(p);
	ka_poison_object(c, p);
	ka_cache_free(c, p, "kmem_cache_free()");
}
