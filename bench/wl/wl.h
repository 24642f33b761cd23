/*
 * wl.h: what every workload program shares. Each workload is one process
 * run under one allocator (LD_PRELOAD) by tools/kalloc-bench, which
 * measures wall time, CPU time and peak RSS from outside; the program only
 * does the work and prints one line, "<name> ops=<n> check=<x>", so that a
 * run that did something else is visible. Arguments: [quick|full] [threads].
 */
#ifndef KALLOC_WL_H
#define KALLOC_WL_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keep a pointer live: the compiler may not drop free(malloc(n)). */
#define ESC(p) __asm__ volatile("" : : "g"(p) : "memory")

struct wl_args {
	int quick;   /* 1: a tenth of the work */
	int threads; /* default 2 */
};

static inline struct wl_args wl_parse(int argc, char **argv)
{
	struct wl_args a = {0, 2};
	if (argc > 1)
		a.quick = strcmp(argv[1], "quick") == 0;
	if (argc > 2 && atoi(argv[2]) > 0)
		a.threads = atoi(argv[2]);
	return a;
}

/* xorshift64: deterministic per seed. */
static inline uint64_t wl_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Mostly small, sometimes medium: the size mix allocator papers use. */
static inline size_t wl_size(uint64_t *s, size_t lo, size_t hi)
{
	return lo + wl_rand(s) % (hi - lo + 1);
}

static inline void wl_done(const char *name, uint64_t ops, uint64_t check)
{
	printf("%s ops=%llu check=%llu\n", name, (unsigned long long)ops, (unsigned long long)check);
}

static inline void *wl_xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p) {
		fprintf(stderr, "out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

/*
 * The false-sharing loop: objs times, malloc 8 bytes, write them `writes`
 * times, free. Two threads whose 8-byte objects share a cache line make
 * each other's writes miss. Returns a checksum of what was written.
 */
static inline uint64_t wl_write_small(long objs, long writes)
{
	uint64_t check = 0;
	for (long i = 0; i < objs; i++) {
		volatile char *p = (volatile char *)wl_xmalloc(8);
		for (int b = 0; b < 8; b++)
			p[b] = 0;
		for (long w = 0; w < writes; w++)
			p[w & 7] = (char)(p[w & 7] + 1);
		check += (unsigned char)p[0];
		free((void *)p);
	}
	return check;
}

#endif
