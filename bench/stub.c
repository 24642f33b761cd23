/*
 * stub.c: libkalloc-stub.so, an "allocator" whose calls return at once, for
 * tools/callgrind-ops.sh: the instructions a micro case costs under it are
 * the case's own loop (and the calls), which the script subtracts from
 * every allocator's count. Every block is the same static buffer: enough
 * for the micro cases, which never keep two blocks' contents apart (opcount
 * gives stdout a static buffer).
 */
#include <stddef.h>

#define STUB_EXPORT __attribute__((visibility("default")))

static char buf[(2 << 20) + 4096] __attribute__((aligned(64)));

/* One lea and a ret; free is one ret: with the two PLT jumps, 5 instructions
 * a malloc/free pair that the script counts back in (STUB_OWN there). */
STUB_EXPORT void *malloc(size_t n) { (void)n; return buf + 4096; }
STUB_EXPORT void free(void *p) { (void)p; }
STUB_EXPORT void *calloc(size_t a, size_t b) { (void)a; (void)b; return buf + 4096; }
STUB_EXPORT void *realloc(void *p, size_t n) { (void)p; return malloc(n); }
STUB_EXPORT int posix_memalign(void **out, size_t align, size_t n) { (void)align; *out = malloc(n); return 0; }
STUB_EXPORT void *aligned_alloc(size_t align, size_t n) { (void)align; return malloc(n); }
STUB_EXPORT void *memalign(size_t align, size_t n) { (void)align; return malloc(n); }
STUB_EXPORT size_t malloc_usable_size(void *p) { (void)p; return sizeof buf - 4096; }
