/*
 * shm.h: the counters a process under kalloc publishes for tools/kalloc-top
 * (KALLOC_CONF=publish:1), in a shared file /dev/shm/kalloc.PID that the
 * process rewrites at most every KA_SHM_PERIOD_MS from its slow paths and
 * removes at exit. A fork child publishes under its own pid.
 *
 * Readers copy the whole struct and keep the copy only if `seq` was even
 * and unchanged before and after (the writer makes it odd while writing).
 * Plain C types only: this header is shared with the tool.
 */
#ifndef KALLOC_SHM_H
#define KALLOC_SHM_H

#include <stdint.h>

#define KA_SHM_MAGIC 0x6d68732d636f6c6bull /* "klco-shm" */
#define KA_SHM_VERSION 1
#define KA_SHM_CACHES 120
#define KA_SHM_ORDERS 11
#define KA_SHM_PERIOD_MS 250

struct ka_shm_cache {
	char name[32];
	uint64_t active_objs, num_objs, objsize, objperslab, pagesperslab, active_slabs, num_slabs;
};

struct ka_shm {
	uint64_t magic;
	uint32_t version, pid;
	uint64_t seq;       /* odd while the writer is writing */
	uint64_t time_ms;   /* CLOCK_REALTIME of the last update */
	uint64_t updates;
	/* Totals, bytes (see struct ka_totals in lib/internal.h). */
	uint64_t mapped, peak_mapped, meta, returned;
	uint64_t slab_bytes, slab_used, tcache, large_used, huge_used, huge_cached;
	uint64_t buddy_free, buddy_clean;
	uint64_t buddy[KA_SHM_ORDERS]; /* free blocks per order */
	uint32_t ncaches, pad;
	struct ka_shm_cache caches[KA_SHM_CACHES];
};

#endif
