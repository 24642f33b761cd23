/*
 * t/api.c: the contract of every exported function (by its kalloc_ name),
 * glibc's semantics where glibc documents them, and the kmem_cache API.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "../lib/internal.h"
#include "../lib/tcache.h"
#include "../lib/kalloc.h"
#include "tap.h"

static void fillp(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 31 + seed);
}

static int checkp(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(i * 31 + seed))
			return 0;
	return 1;
}

static int ctor_calls;
static void ctor(void *p)
{
	ctor_calls++;
	memset(p, 0x77, 40);
}

static void free_copy_of_free(void)
{
	uint64_t *fa = kalloc_malloc(48), *fb = kalloc_malloc(48);
	kalloc_free(fa);
	memcpy(fb, fa, 16); /* what a copy of stale or uninitialised memory does */
	kalloc_free(fb);
}

/* Slab pages given back to the buddy and handed out as large blocks still
 * hold the marks of their old objects; realloc to a small size copies them
 * into the new block, which must free cleanly. */
static void realloc_former_slab_pages(void)
{
	void *smalls[2048];
	for (int i = 0; i < 2048; i++)
		smalls[i] = kalloc_malloc(1024);
	for (int i = 0; i < 2048; i++)
		kalloc_free(smalls[i]);
	ka_tcache_flush_all();
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		ka_cache_shrink(&ka_kmalloc[c], true);
	for (int i = 0; i < 64; i++) {
		void *blk = kalloc_malloc(32 << 10);
		kalloc_free(kalloc_realloc(blk, 48));
	}
}

int main(void)
{
	/* Alignment of the aligned family, 8 bytes .. 8 MiB, small to huge sizes. */
	int al_ok = 1;
	size_t sizes[] = {1, 24, 100, 3000, 9000, 100000, 3 << 20};
	for (size_t a = 8; a <= ((size_t)8 << 20); a <<= 1)
		for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
			void *p = NULL;
			int r = kalloc_posix_memalign(&p, a, sizes[i]);
			void *q = kalloc_aligned_alloc(a, sizes[i]);
			void *m = kalloc_memalign(a, sizes[i]);
			al_ok &= r == 0 && p && q && m && ((uintptr_t)p % a) == 0 && ((uintptr_t)q % a) == 0 &&
				 ((uintptr_t)m % a) == 0 && kalloc_malloc_usable_size(p) >= sizes[i];
			memset(p, 1, sizes[i]);
			kalloc_free(p);
			kalloc_free(q);
			kalloc_free(m);
		}
	ok(al_ok, "posix_memalign/aligned_alloc/memalign honour alignments 8 B .. 8 MiB, freed by free");
	void *v = kalloc_valloc(10), *pv = kalloc_pvalloc(5000);
	ok(v && pv && (uintptr_t)v % 4096 == 0 && (uintptr_t)pv % 4096 == 0 &&
		   kalloc_malloc_usable_size(pv) >= 8192,
	   "valloc and pvalloc are page aligned, pvalloc rounds up to pages");
	kalloc_free(v);
	kalloc_free(pv);
	int a16 = 1;
	for (size_t n = 0; n < 20000; n += 7) {
		void *p = kalloc_malloc(n);
		a16 &= p && ((uintptr_t)p & (n >= 16 ? 15 : 7)) == 0;
		kalloc_free(p);
	}
	ok(a16, "malloc: 16-byte alignment from 16 bytes up, 8 below");

	/* Impossible sizes. */
	errno = 0;
	ok(!kalloc_malloc(SIZE_MAX) && errno == ENOMEM, "malloc(SIZE_MAX): NULL, ENOMEM");
	errno = 0;
	ok(!kalloc_malloc((size_t)PTRDIFF_MAX + 1) && errno == ENOMEM, "malloc(PTRDIFF_MAX+1): NULL, ENOMEM");
	errno = 0;
	ok(!kalloc_calloc(SIZE_MAX / 2, 3) && errno == ENOMEM, "calloc overflow: NULL, ENOMEM");
	errno = 0;
	void *ra = kalloc_malloc(10);
	ok(!kalloc_reallocarray(ra, SIZE_MAX / 2, 3) && errno == ENOMEM, "reallocarray overflow: NULL, ENOMEM");
	kalloc_free(ra);
	void *untouched = (void *)0x1234;
	ok(kalloc_posix_memalign(&untouched, 0, 10) == EINVAL && kalloc_posix_memalign(&untouched, 12, 10) == EINVAL &&
		   kalloc_posix_memalign(&untouched, 4, 10) == EINVAL && untouched == (void *)0x1234,
	   "posix_memalign: EINVAL for 0, 12, 4, and *out untouched");
	void *z1 = kalloc_malloc(0), *z2 = kalloc_malloc(0);
	ok(z1 && z2 && z1 != z2, "malloc(0): unique pointers");
	kalloc_free(z1);
	kalloc_free(z2);

	/* realloc. */
	unsigned char *r = kalloc_realloc(NULL, 100);
	ok(r && kalloc_malloc_usable_size(r) >= 100, "realloc(NULL, n) allocates");
	ok(kalloc_realloc(r, 0) == NULL, "realloc(p, 0) frees and returns NULL, as glibc");
	int kept = 1;
	size_t n = 1;
	unsigned char *p = kalloc_malloc(1);
	fillp(p, 1, 5);
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		for (int d = -1; d <= 1; d++) {
			size_t m = ka_classes[c].size + (size_t)d;
			if (m == 0)
				continue;
			p = kalloc_realloc(p, m);
			kept &= p && checkp(p, n < m ? n : m, 5);
			fillp(p, m, 5);
			n = m;
		}
	size_t steps[] = {100 << 10, 8 << 20, 3 << 20, 50, 200 << 10, 20 << 20, 10};
	for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
		p = kalloc_realloc(p, steps[i]);
		kept &= p && checkp(p, n < steps[i] ? n : steps[i], 5);
		fillp(p, steps[i], 5);
		n = steps[i];
	}
	ok(kept, "realloc across every class boundary and small->large->huge->small keeps contents");
	errno = 0;
	unsigned char *q = kalloc_realloc(p, (size_t)PTRDIFF_MAX + 1);
	ok(!q && errno == ENOMEM && checkp(p, n, 5), "a failed realloc returns NULL, ENOMEM, block intact");
	kalloc_free(p);

	/* Usable size and calloc. */
	int writable = 1;
	for (size_t m = 1; m < (3 << 20); m = m * 3 + 1) {
		unsigned char *b = kalloc_malloc(m);
		size_t u = kalloc_malloc_usable_size(b);
		writable &= u >= m;
		memset(b, 0xee, u);
		kalloc_free(b);
	}
	ok(writable, "usable size >= requested, and writable to its end");
	int zero = 1;
	size_t csz[] = {24, 700, 5000, 40000, 2 << 20};
	for (int round = 0; round < 3; round++)
		for (size_t i = 0; i < sizeof csz / sizeof *csz; i++) {
			unsigned char *d = kalloc_malloc(csz[i]);
			memset(d, 0xff, csz[i]);
			kalloc_free(d);
			unsigned char *c = kalloc_calloc(1, csz[i]);
			for (size_t j = 0; j < csz[i]; j++)
				zero &= c[j] == 0;
			kalloc_free(c);
		}
	ok(zero, "calloc zeroes, also memory reused dirty");
	errno = 1234;
	kalloc_free(NULL);
	kalloc_free(kalloc_malloc(50));
	kalloc_free_sized(kalloc_malloc(60), 60);
	kalloc_free_aligned_sized(kalloc_aligned_alloc(64, 128), 64, 128);
	ok(errno == 1234, "free(NULL), free, free_sized, free_aligned_sized keep errno");

	/* Large blocks keep only the pages they need and resize in place. */
	/* Pages taken: out of the buddy and not in the thread's page lists. */
	struct ka_buddy_stats s0, s1;
	void *warm = kalloc_malloc(36 << 10); /* make sure a chunk is mapped */
	ka_buddy_stats(&s0);
	size_t pcp0 = ka_pcp_held_bytes() >> KA_PAGE_SHIFT;
	void *big = kalloc_malloc(36 << 10);
	ka_buddy_stats(&s1);
	size_t pcp1 = ka_pcp_held_bytes() >> KA_PAGE_SHIFT;
	size_t taken = (s1.managed_pages - s1.free_pages - pcp1) - (s0.managed_pages - s0.free_pages - pcp0);
	ok(taken == 9 && kalloc_malloc_usable_size(big) == (36 << 10),
	   "a 36 KiB block takes 9 pages, not 16 (%zu taken)", taken);
	kalloc_free(warm);
	void *grown = kalloc_realloc(big, 60 << 10);
	ok(grown == big, "realloc 36 KiB -> 60 KiB grows in place when the pages after it are free");
	void *shrunk = kalloc_realloc(grown, 20 << 10);
	ok(shrunk == big && kalloc_malloc_usable_size(shrunk) == (20 << 10), "and shrinks in place");
	kalloc_free(shrunk);
	ok(kalloc_malloc_trim(0) >= 0, "malloc_trim returns");

	/* A freed mapping of another size is resized for the next huge block:
	 * its pages are reused (no new mapping), and calloc still zeroes. */
	struct ka_large_stats ls;
	char *h8 = kalloc_malloc(8 << 20);
	memset(h8, 0x55, 8 << 20);
	kalloc_free(h8);
	ka_large_stats(&ls);
	size_t cached_before = ls.nr_cached;
	unsigned char *h12 = kalloc_calloc(1, 12 << 20);
	ka_large_stats(&ls);
	int zeroed = 1;
	for (size_t i = 0; i < (12 << 20); i += 4093)
		zeroed &= h12[i] == 0;
	ok(cached_before == 1 && ls.nr_cached == 0 && ls.nr_huge == 1 && zeroed,
	   "a freed 8 MiB mapping serves a 12 MiB calloc, zeroed (cached %zu -> %zu)", cached_before,
	   ls.nr_cached);
	kalloc_free(h12);
	char *h3 = kalloc_malloc(3 << 20);
	ka_large_stats(&ls);
	ok(ls.nr_cached == 0 && ls.huge_bytes == (3 << 20) && kalloc_malloc_usable_size(h3) == (3 << 20),
	   "and shrinks to serve a 3 MiB one");
	kalloc_free(h3);
	kalloc_malloc_trim(0);

	/* A cached mapping goes back by age at a tick's purge (whose test
	 * without the lock must see it), and at once at malloc_trim. */
	uint64_t delay = ka_opt.purge_delay_ms;
	ka_opt.purge_delay_ms = 20;
	kalloc_free(kalloc_malloc(8 << 20));
	ka_large_stats(&ls);
	size_t cached = ls.nr_cached;
	for (uint64_t t0 = ka_os_now_ms(); ka_os_now_ms() - t0 < 50;)
		nanosleep(&(struct timespec){0, 5000000}, NULL);
	ka_large_purge(false);
	ka_large_stats(&ls);
	size_t aged = ls.nr_cached;
	kalloc_free(kalloc_malloc(8 << 20));
	kalloc_malloc_trim(0);
	ka_large_stats(&ls);
	ok(cached == 1 && aged == 0 && ls.nr_cached == 0,
	   "a freed mapping is cached (%zu), unmapped by a purge past purge_delay_ms (%zu left) and by malloc_trim (%zu left)",
	   cached, aged, ls.nr_cached);
	ka_opt.purge_delay_ms = delay;

	/* kmem_cache. */
	struct kmem_cache *kc = kmem_cache_create("test-obj", 40, 0, SLAB_HWCACHE_ALIGN, ctor);
	void *objs[100];
	int aligned = 1;
	for (int i = 0; i < 100; i++) {
		objs[i] = kmem_cache_alloc(kc, 0);
		aligned &= objs[i] && (uintptr_t)objs[i] % 64 == 0;
	}
	int calls = ctor_calls;
	ok(aligned, "kmem_cache with SLAB_HWCACHE_ALIGN: 64-byte aligned objects");
	ok(calls >= 100 && calls % (int)((struct ka_cache *)kc)->objs == 0,
	   "the constructor ran once per object of each new slab (%d calls)", calls);
	/* Free every other object (no slab empties), then take them back. */
	for (int i = 0; i < 100; i += 2)
		kmem_cache_free(kc, objs[i]);
	int intact = 1;
	for (int i = 0; i < 100; i += 2) {
		unsigned char *o = kmem_cache_alloc(kc, 0);
		for (int j = 0; j < 40; j++)
			intact &= o[j] == 0x77;
		objs[i] = o;
	}
	ok(intact && ctor_calls == calls,
	   "freed objects come back constructed, no constructor call: the free-list link is outside them");
	ok(kmem_cache_destroy(kc) == EBUSY, "destroy with live objects: EBUSY, reported, no crash");
	for (int i = 0; i < 100; i++)
		kmem_cache_free(kc, objs[i]);
	ok(kmem_cache_destroy(kc) == 0, "destroy with no live objects: 0");
	int align_ok = 1;
	size_t aligns[] = {8, 16, 64, 128, 4096};
	for (size_t i = 0; i < 5; i++) {
		struct kmem_cache *c2 = kmem_cache_create("al", 100, aligns[i], 0, NULL);
		for (int j = 0; j < 20; j++) {
			void *o = kmem_cache_alloc(c2, KALLOC_ZERO);
			align_ok &= o && (uintptr_t)o % aligns[i] == 0 && ((unsigned char *)o)[99] == 0;
			memset(o, 0xaa, 100);
			objs[j] = o;
		}
		for (int j = 0; j < 20; j++)
			kmem_cache_free(c2, objs[j]);
		align_ok &= kmem_cache_destroy(c2) == 0;
	}
	ok(align_ok, "kmem_cache alignments 8..4096 honoured; KALLOC_ZERO zeroes");
	errno = 0;
	ok(!kmem_cache_create("bad", 0, 0, 0, NULL) && errno == EINVAL &&
		   !kmem_cache_create("bad", 10, 3, 0, NULL) && !kmem_cache_create("bad", 10, 0, 1, NULL),
	   "kmem_cache_create rejects size 0, a non-power-of-two alignment, unknown flags (EINVAL)");
	struct kmem_cache *c3 = kmem_cache_create("via-free", 200, 0, 0, NULL);
	void *o3 = kmem_cache_alloc(c3, 0);
	kalloc_free(o3);
	ok(kmem_cache_destroy(c3) == 0, "free() of a kmem_cache object returns it to its cache");

	/* Copies of a free block's bytes are not free blocks: the mark a free
	 * object carries depends on its address (ka_key_of). A false double
	 * free would abort the child. */
	int st = run_child(free_copy_of_free);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	   "a block holding a copy of a free block's first words frees cleanly (status %d)", st);
	st = run_child(realloc_former_slab_pages);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	   "large blocks on former slab pages, shrunk to small by realloc, free cleanly (status %d)", st);
	return done_testing();
}
