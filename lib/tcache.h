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
 *  - malloc: the popped link must decode to an 8-aligned address (a write
 *    after free that hits the link is caught before it is followed);
 *  - free: the address must be in a slab page whose owner is this thread,
 *    at an object boundary (one multiply, see struct ka_class.div), and not
 *    carry the free key in its second word (a free object has it: the slow
 *    path then scans for the object and reports a double free if found).
 *    kmalloc-8 objects have no second word: the key goes in word 0, which
 *    the link overwrites at once, so their double frees are not caught by
 *    default (a full check against the slab's free state is a debug mode).
 */
#ifndef KALLOC_TCACHE_H
#define KALLOC_TCACHE_H

#include "internal.h"

extern __thread struct ka_tcache *ka_tc;

void *ka_tcache_malloc_slow(size_t n);
void ka_tcache_free_slow(void *p, const char *func);
/* Fatal unless p is a live object of slab s (not freed, not inside one). */
void ka_tcache_check_live(void *p, struct ka_slab *s, const char *func);
__attribute__((noreturn)) KA_COLD void ka_tcache_corrupt(void *p, unsigned cls);

KA_INLINE void *ka_tcache_malloc(size_t n)
{
	if (KA_LIKELY(n <= KA_SMALL_MAX)) {
		unsigned cls = ka_size_class[(n + 7) >> 3];
		struct ka_tcache *tc = ka_tc;
		struct ka_bin *b = &tc->bins[cls];
		char *p = b->head;
		if (KA_LIKELY(p != NULL)) {
			uintptr_t next = *(uintptr_t *)p ^ ((uintptr_t)p >> 12) ^ tc->secret;
			if (KA_UNLIKELY(next & 7))
				ka_tcache_corrupt(p, cls);
			b->head = (void *)next;
			b->count--;
			/* Clear the key, so that a later free is not taken for a double one. */
			*(uint64_t *)(p + b->key_off) = 0;
			return p;
		}
	}
	return NULL;
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
	uintptr_t a = (uintptr_t)ptr, e = ka_map_entry(a);
	if (KA_LIKELY(e & KA_MAP_CHUNK)) {
		struct ka_tcache *tc = ka_tc;
		/* < 256 exactly when the slab's owner is this thread; then it is the class. */
		uint32_t cls = ka_load_relaxed(ka_map_tag(e, a)) ^ tc->id8;
		if (KA_LIKELY(cls < 256 && (want == KA_ANY_CLASS || cls == want))) {
			struct ka_bin *b = &tc->bins[cls];
			char *p = ptr;
			uint64_t *key = (uint64_t *)(p + b->key_off);
			if (KA_LIKELY((a & b->slab_mask) * b->div < b->div && *key != tc->key &&
				      b->count < b->max)) {
				*key = tc->key;
				*(uintptr_t *)p = (uintptr_t)b->head ^ (a >> 12) ^ tc->secret;
				b->head = p;
				b->count++;
				return true;
			}
		}
	}
	return false;
}

KA_INLINE bool ka_tcache_free(void *ptr) { return ka_tcache_free_class(ptr, KA_ANY_CLASS); }

/* tcache.c */
void ka_tcache_flush_all(void);   /* the calling thread's cache */
void ka_tcache_thread_exit(void); /* flush, and run cacheless from now on */
size_t ka_tcache_held_bytes(void); /* in all threads' caches, approximate */
void ka_tcache_prefork(void);
void ka_tcache_postfork(bool child);
void ka_tcache_init(void);

#endif
