/*
 * micro.h: the micro benchmark cases, written in C against the plain malloc
 * family so that they run under any allocator (LD_PRELOAD). Two drivers
 * share them: bench/shim.cc registers each with Google Benchmark (timing,
 * make bench) and bench/opcount.c runs the single-thread ones under
 * callgrind (instructions per operation, make bench-callgrind).
 *
 * A case body does `iters` operations in one call: the loop is in C, so a
 * 10 ns operation is not measured together with a call through the shim.
 * One operation is what the case's line says (a malloc+free pair, one
 * object of a batch allocated and freed, one realloc ...).
 */
#ifndef KALLOC_MICRO_H
#define KALLOC_MICRO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct micro_case {
	const char *name;  /* "pair/64": family/argument */
	void (*run)(long iters, size_t arg, int thread, int nthreads);
	size_t arg;        /* a size, mostly */
	int threaded;      /* 1: also run at 2 and 4 threads (more than the 2 cores) */
};

extern const struct micro_case micro_cases[];
extern const int micro_ncases;

#ifdef __cplusplus
}
#endif

#endif
