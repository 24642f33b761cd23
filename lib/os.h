/*
 * os.h: the contract of the OS layer (os.c), the only code in kalloc that
 * calls mmap, munmap, madvise, mremap and brk.
 *
 * Every function returns NULL or an errno value on failure and never crashes
 * on one; sizes and addresses passed in are multiples of the page size.
 * Memory returned by a map call is readable, writable and zero-filled.
 */
#ifndef KALLOC_OS_H
#define KALLOC_OS_H

#include "types.h"

/*
 * Map `size` bytes aligned to `align` (a power of two, >= page size) for the
 * heap, from the page source the options chose (brk, then mmap if brk cannot
 * grow; or mmap only). *source tells which one served it.
 * Post: NULL (and nothing mapped) or an aligned, zeroed, writable range.
 */
void *ka_os_map_aligned(size_t size, size_t align, int *source);

/* As ka_os_map_aligned, but always from mmap (for mappings that may be remapped). */
void *ka_os_map_region(size_t size, size_t align, int *source);

/*
 * Map `size` bytes with MAP_NORESERVE for metadata that is touched sparsely
 * (map leaves, chunk descriptors). Aligned to `align` (power of two).
 */
void *ka_os_map_meta(size_t size, size_t align);

/*
 * Reserve `size` bytes of address space at address `at` exactly, never
 * replacing a mapping there: read-only (so neither charged under strict
 * overcommit nor backed: reads see zeros) and left out of core dumps,
 * never given back. Not counted as metadata. NULL if refused (ulimit -v,
 * `at` taken).
 */
void *ka_os_reserve(size_t size, uintptr_t at);
/* Make part of a reservation writable (charged then): 0 or an errno. */
int ka_os_open(void *addr, size_t size);
/*
 * Give a range back. An mmap range is unmapped; a brk range is released only
 * when it is the top of the break and the break is still where kalloc left
 * it (other code may have moved it); otherwise it is purged and 0 returned
 * with *kept set, so the caller knows the address space is still its own.
 */
int ka_os_unmap(void *addr, size_t size, int source, bool *kept);

/* MADV_DONTNEED: the range stays mapped and reads as zero afterwards. */
int ka_os_purge(void *addr, size_t size);

/* MADV_HUGEPAGE: where transparent huge pages are "madvise" or "always",
 * the range faults in 2 MiB pages (those wholly inside it). A kernel
 * without them refuses, and the range keeps 4 KiB pages: no error. */
void ka_os_advise_huge(void *addr, size_t size);

/*
 * Resize a mapping made by ka_os_map_aligned(..., KA_SRC_MMAP). In place if
 * the kernel can; otherwise moved to a fresh range aligned to `align`.
 * Post: the new address, or NULL with the old mapping intact.
 */
void *ka_os_remap(void *addr, size_t old_size, size_t new_size, size_t align);

/* Milliseconds of CLOCK_MONOTONIC, for purge ages. */
uint64_t ka_os_now_ms(void);

/*
 * Check that no counted lock (internal.h, ka_lock) is held by the calling
 * thread at each system call of this layer; a breach is fatal. On in
 * debug builds (KA_DEBUG), off otherwise unless a test turns it on.
 */
void ka_os_check_locks(bool on);

/* Test hook: asked before each map call with the call's name ("mmap",
 * "brk", "mprotect", "mremap"); returning true makes it fail (ENOMEM). */
void ka_os_set_fail_hook(bool (*hook)(const char *call));

/* Fork: take the OS lock before fork, release (parent) or reset (child) after. */
void ka_os_prefork(void);
void ka_os_postfork(bool child);

/* Counters of the OS layer, bytes currently mapped for the heap and meta. */
size_t ka_os_mapped_heap(void);
size_t ka_os_mapped_meta(void);
struct ka_os_counters {
	size_t mapped_heap, mapped_meta;
	size_t peak_heap; /* high-water mark of mapped_heap */
	size_t returned;  /* bytes given back: purged (MADV_DONTNEED) or unmapped, in all */
};
void ka_os_counters(struct ka_os_counters *oc);

/* A shared file mapping of `size` bytes at path (created, truncated, 0600), or NULL. */
void *ka_os_map_file(const char *path, size_t size);
/* Unmap it, and remove the file if path is given. */
void ka_os_unmap_file(const char *path, void *addr, size_t size);

#endif
