/*
 * meta.c: kalloc's own metadata (chunk descriptors, map leaves, thread
 * caches, user cache descriptors) comes from here, never from malloc.
 * A bump allocator over regions mapped with MAP_NORESERVE: pages are only
 * resident once touched. Nothing is ever given back; the owners of each kind
 * of metadata keep their own free lists for reuse, which is also what makes
 * racy reads of stale metadata safe.
 */
#include "internal.h"

#define META_REGION ((size_t)4 << 20)

static pthread_mutex_t meta_lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t cur, end;

void *ka_meta_alloc(size_t size, size_t align)
{
	void *r = NULL;
	pthread_mutex_lock(&meta_lock);
	uintptr_t a = (cur + align - 1) & ~(align - 1);
	if (!cur || a + size > end || a + size < a) {
		size_t want = size + align > META_REGION ? (size + align + KA_PAGE_SIZE - 1) & ~(KA_PAGE_SIZE - 1)
							  : META_REGION;
		char *p = ka_os_map_meta(want, KA_PAGE_SIZE);
		if (!p)
			goto out;
		cur = (uintptr_t)p;
		end = cur + want;
		a = (cur + align - 1) & ~(align - 1);
	}
	cur = a + size;
	r = (void *)a;
out:
	pthread_mutex_unlock(&meta_lock);
	return r;
}

void ka_meta_prefork(void) { pthread_mutex_lock(&meta_lock); }

void ka_meta_postfork(bool child)
{
	ka_postfork_unlock(&meta_lock, child);
}
