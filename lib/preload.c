/*
 * preload.c: the front door for LD_PRELOAD. api.c again, with the standard
 * names, plus glibc's internal aliases, so that a block allocated inside
 * glibc through __libc_malloc is never freed by another allocator, and the
 * C++ operators new and delete (cxx.c; hence -fexceptions for this file).
 */
#define KA_PRELOAD 1
#include "api.c"
#include "cxx.c"

#if defined(__GNUC__) && !defined(__clang__)
/* The aliases need not repeat glibc's attributes on their targets. */
#pragma GCC diagnostic ignored "-Wmissing-attributes"
#endif
#define KA_ALIAS(name) __attribute__((alias(#name), visibility("default")))
void *__libc_malloc(size_t n) KA_ALIAS(malloc);
void __libc_free(void *p) KA_ALIAS(free);
void *__libc_calloc(size_t nmemb, size_t size) KA_ALIAS(calloc);
void *__libc_realloc(void *p, size_t n) KA_ALIAS(realloc);
void *__libc_memalign(size_t align, size_t size) KA_ALIAS(memalign);
void *__libc_valloc(size_t size) KA_ALIAS(valloc);
void *__libc_pvalloc(size_t size) KA_ALIAS(pvalloc);
int __posix_memalign(void **out, size_t align, size_t size) KA_ALIAS(posix_memalign);
