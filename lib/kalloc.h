/*
 * kalloc.h: kalloc's public interface.
 *
 * libkalloc.so exports the standard malloc family (malloc, free, ...) for
 * LD_PRELOAD and, for programs that link it directly, the same family under
 * kalloc_ names plus the object-cache API of the Linux kernel:
 *
 *   struct kmem_cache *c = kmem_cache_create("conn", sizeof(struct conn), 0,
 *                                            SLAB_HWCACHE_ALIGN, conn_init);
 *   struct conn *x = kmem_cache_alloc(c, 0);
 *   kmem_cache_free(c, x);
 *   kmem_cache_destroy(c);
 *
 * The kmem_cache_* names are macros over exported kalloc_cache_* symbols, so
 * a preloaded kalloc never interposes a same-named symbol of another library.
 */
#ifndef KALLOC_H
#define KALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void *kalloc_malloc(size_t size);
void kalloc_free(void *ptr);
void *kalloc_calloc(size_t nmemb, size_t size);
void *kalloc_realloc(void *ptr, size_t size);
void *kalloc_reallocarray(void *ptr, size_t nmemb, size_t size);
int kalloc_posix_memalign(void **out, size_t align, size_t size);
void *kalloc_aligned_alloc(size_t align, size_t size);
void *kalloc_memalign(size_t align, size_t size);
void *kalloc_valloc(size_t size);
void *kalloc_pvalloc(size_t size);
size_t kalloc_malloc_usable_size(void *ptr);
void kalloc_free_sized(void *ptr, size_t size);
void kalloc_free_aligned_sized(void *ptr, size_t align, size_t size);
int kalloc_malloc_trim(size_t pad);
void kalloc_malloc_stats(void);

/* Object caches. */
struct kmem_cache;
#define SLAB_HWCACHE_ALIGN 0x2000UL /* align objects to a cache line */
#define KALLOC_ZERO 0x100u          /* kmem_cache_alloc flag: zero the object */

/* NULL with errno EINVAL for a size, alignment or flag it cannot serve. */
struct kmem_cache *kalloc_cache_create(const char *name, size_t size, size_t align,
				       unsigned long flags, void (*ctor)(void *));
void *kalloc_cache_alloc(struct kmem_cache *cache, unsigned flags);
void kalloc_cache_free(struct kmem_cache *cache, void *obj);
/* 0, or EBUSY (reported on stderr, cache kept) while objects are live. */
int kalloc_cache_destroy(struct kmem_cache *cache);

#define kmem_cache_create kalloc_cache_create
#define kmem_cache_alloc kalloc_cache_alloc
#define kmem_cache_free kalloc_cache_free
#define kmem_cache_destroy kalloc_cache_destroy

/* Print the /proc/slabinfo- and /proc/buddyinfo-style tables to fd. */
void kalloc_slabinfo(int fd);
void kalloc_buddyinfo(int fd);

/*
 * Write the heap profile of KALLOC_CONF=prof:1 (gperftools heap format, for
 * google-pprof and jeprof) to path, truncated, or to prof_file if path is
 * NULL. 0, or -1 with errno: ENOENT when prof:1 is off, else open's or
 * write's error. Preloaded programs find it with dlsym(RTLD_DEFAULT, ...).
 */
int kalloc_prof_dump(const char *path);

#ifdef __cplusplus
}
#endif
#endif
