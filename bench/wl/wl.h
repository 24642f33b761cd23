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

/* A workload whose data changed under it stops: a broken allocator fails the run. */
static inline void wl_fail(const char *name, const char *what, const void *p)
{
	fprintf(stderr, "%s: %s at %p\n", name, what, p);
	exit(1);
}

/*
 * Fill patterns: wl_fill writes every stride-th byte of an n-byte block and
 * its last byte, byte i getting tag + i / stride (so a page that moved is
 * seen as well as a block given out twice); wl_intact says whether those of
 * them below lim still hold it (a block shrunk by realloc keeps a prefix).
 * tag is never 0 in the workloads, so a fresh zero page does not pass.
 */
static inline void wl_fill(unsigned char *p, size_t n, size_t stride, unsigned char tag)
{
	for (size_t i = 0; i < n; i += stride)
		p[i] = (unsigned char)(tag + i / stride);
	p[n - 1] = (unsigned char)(tag + (n - 1) / stride);
}

static inline int wl_intact(const unsigned char *p, size_t n, size_t lim, size_t stride, unsigned char tag)
{
	size_t end = n < lim ? n : lim;
	for (size_t i = 0; i < end; i += stride)
		if (p[i] != (unsigned char)(tag + i / stride))
			return 0;
	return n > lim || p[n - 1] == (unsigned char)(tag + (n - 1) / stride);
}

/* A tag for wl_fill: any byte but 0. */
static inline unsigned char wl_tag(uint64_t *s)
{
	return (unsigned char)(1 + wl_rand(s) % 255);
}

/* A block with its fill pattern: wl_block_free checks the pattern, then frees. */
struct wl_block {
	unsigned char *p; /* NULL: none */
	size_t n;
	unsigned char tag;
};

static inline void wl_block_free(const char *name, struct wl_block *b, size_t stride)
{
	if (!b->p)
		return;
	if (!wl_intact(b->p, b->n, b->n, stride, b->tag))
		wl_fail(name, "fill pattern changed", b->p);
	free(b->p);
	b->p = NULL;
}

/*
 * Threads that each do n steps of one job and add to check: wl_run_jobs
 * starts fn on each of j[0..nt), joins them and prints the result line
 * with the sums of n and check. arg is the workload's own.
 */
struct wl_job {
	long n;
	int arg;
	uint64_t seed, check;
};

static inline void wl_run_jobs(const char *name, struct wl_job *j, int nt, void *(*fn)(void *))
{
	pthread_t th[nt];
	uint64_t ops = 0, check = 0;
	for (int t = 0; t < nt; t++)
		if (pthread_create(&th[t], NULL, fn, &j[t]) != 0)
			wl_fail(name, "pthread_create failed", NULL);
	for (int t = 0; t < nt; t++) {
		pthread_join(th[t], NULL);
		ops += (uint64_t)j[t].n;
		check += j[t].check;
	}
	wl_done(name, ops, check);
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
