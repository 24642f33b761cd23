/*
 * t/buddy.c: the buddy allocator against a shadow model. Random alloc/free
 * of random orders (and exact page counts, grown and shrunk in place);
 * after every step ka_buddy_validate checks the free lists (no overlap, no
 * two free buddies of one order, counts), and the model checks that live
 * blocks never overlap, are aligned, keep their contents, and that
 * free + used == managed.
 */
#include <string.h>

#include "../lib/internal.h"
#include "tap.h"

#define MAXLIVE 512

struct blk {
	char *p;
	size_t pages;
	int exact; /* from ka_buddy_alloc_pages */
};
static struct blk live[MAXLIVE];
static int nlive;
static size_t live_pages;

static void fatal_hook(const char *msg)
{
	printf("not ok - %s", msg);
	printf("1..%d\n", tap_n + 1);
	fflush(stdout);
	_exit(1);
}

static uint64_t pattern(const char *p) { return (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull; }

static void fill(struct blk *b)
{
	size_t n = b->pages * KA_PAGE_SIZE;
	*(uint64_t *)b->p = pattern(b->p);
	*(uint64_t *)(b->p + n - 8) = ~pattern(b->p);
}

static int intact(struct blk *b)
{
	size_t n = b->pages * KA_PAGE_SIZE;
	return *(uint64_t *)b->p == pattern(b->p) && *(uint64_t *)(b->p + n - 8) == ~pattern(b->p);
}

static int model_ok(void)
{
	for (int i = 0; i < nlive; i++)
		for (int j = i + 1; j < nlive; j++) {
			char *a = live[i].p, *b = live[j].p;
			if (a < b + live[j].pages * KA_PAGE_SIZE && b < a + live[i].pages * KA_PAGE_SIZE)
				return 0;
		}
	struct ka_buddy_stats st;
	ka_buddy_stats(&st);
	return st.free_pages + live_pages == st.managed_pages;
}

static int release(int i)
{
	struct blk *b = &live[i];
	int ok1 = intact(b);
	if (b->exact)
		ka_buddy_free_pages(b->p, b->pages);
	else
		ka_buddy_free(b->p, (unsigned)__builtin_ctzl(b->pages));
	live_pages -= b->pages;
	live[i] = live[--nlive];
	return ok1;
}

int main(void)
{
	unsigned long seed = test_seed();
	unsigned long long s = seed ? seed : 1;
	ka_set_fatal_hook(fatal_hook);
	int steps = 20000, bad = 0, misaligned = 0, corrupt = 0;
	for (int step = 0; step < steps; step++) {
		unsigned r = (unsigned)(rnd(&s) % 100);
		if (nlive > 0 && (r < 45 || nlive == MAXLIVE)) {
			corrupt += !release((int)(rnd(&s) % (unsigned)nlive));
		} else if (r < 90) {
			unsigned order = (unsigned)(rnd(&s) % 100);
			order = order < 60 ? order % 3 : order < 95 ? order % 7 : order % (KA_MAX_ORDER + 1);
			bool z;
			char *p = ka_buddy_alloc(order, KA_PG_RAW, &z);
			if (!p) {
				bad++;
				continue;
			}
			struct blk *b = &live[nlive++];
			*b = (struct blk){p, (size_t)1 << order, 0};
			misaligned += ((uintptr_t)p & ((KA_PAGE_SIZE << order) - 1)) != 0;
			live_pages += b->pages;
			fill(b);
		} else if (r < 96 || nlive == 0) {
			size_t n = 1 + rnd(&s) % 300, align = (size_t)1 << rnd(&s) % 5;
			align = align > n ? 1 : align;
			bool z;
			char *p = ka_buddy_alloc_pages(n, align, KA_PG_LARGE, &z);
			if (!p) {
				bad++;
				continue;
			}
			misaligned += ((uintptr_t)p & (KA_PAGE_SIZE * align - 1)) != 0;
			struct blk *b = &live[nlive++];
			*b = (struct blk){p, n, 1};
			live_pages += n;
			fill(b);
		} else {
			/* Grow or shrink an exact block in place. */
			struct blk *b = &live[rnd(&s) % (unsigned)nlive];
			if (!b->exact)
				continue;
			corrupt += !intact(b);
			size_t n = 1 + rnd(&s) % 300;
			if (n < b->pages) {
				ka_buddy_shrink_pages(b->p, b->pages, n);
				live_pages -= b->pages - n;
				b->pages = n;
			} else if (n > b->pages && ka_buddy_grow_pages(b->p, b->pages, n)) {
				live_pages += n - b->pages;
				b->pages = n;
			}
			fill(b);
		}
		ka_buddy_validate();
		if (!model_ok()) {
			ok(0, "model holds after step %d", step);
			return done_testing();
		}
	}
	ok(bad == 0, "%d random steps: every allocation served", steps);
	ok(misaligned == 0, "every block aligned to its size, exact page counts to what was asked");
	ok(corrupt == 0, "every block kept its contents");
	ok(1, "free lists valid and live blocks disjoint after every step");
	while (nlive)
		corrupt += !release(nlive - 1);
	ka_buddy_validate();
	struct ka_buddy_stats st;
	ka_buddy_stats(&st);
	ok(st.free_pages == st.managed_pages, "everything freed: free %zu == managed %zu pages",
	   st.free_pages, st.managed_pages);
	size_t counts[KA_NR_ORDERS];
	ka_buddy_info(counts);
	size_t small = 0;
	for (int o = 0; o < KA_MAX_ORDER; o++)
		small += counts[o];
	ok(small == 0 && counts[KA_MAX_ORDER] == st.nr_chunks,
	   "all blocks coalesced back into whole chunks (%zu of order 10)", counts[KA_MAX_ORDER]);

	/* 1024 single pages of one chunk, freed in random order, merge back. */
	void *pg[KA_CHUNK_PAGES];
	bool z;
	for (size_t i = 0; i < KA_CHUNK_PAGES; i++)
		pg[i] = ka_buddy_alloc(0, KA_PG_RAW, &z);
	for (size_t i = KA_CHUNK_PAGES - 1; i > 0; i--) {
		size_t j = rnd(&s) % (i + 1);
		void *t = pg[i];
		pg[i] = pg[j];
		pg[j] = t;
	}
	for (size_t i = 0; i < KA_CHUNK_PAGES; i++) {
		ka_buddy_free(pg[i], 0);
		if (i % 64 == 0)
			ka_buddy_validate();
	}
	ka_buddy_info(counts);
	small = 0;
	for (int o = 0; o < KA_MAX_ORDER; o++)
		small += counts[o];
	ok(small == 0, "1024 pages freed in random order coalesce into order-10 blocks");

	/*
	 * Slab pages and large blocks asked for in turn: grouped by type into
	 * chunks of their own, the large blocks merge back into big blocks when
	 * freed instead of being held apart by the slab pages between them.
	 */
	void *sl[256], *lg[256];
	for (int i = 0; i < 256; i++) {
		sl[i] = ka_buddy_alloc(0, KA_PG_SLAB, &z);
		lg[i] = ka_buddy_alloc_pages(5, 1, KA_PG_LARGE, &z);
	}
	for (int i = 0; i < 256; i++)
		ka_buddy_free_pages(lg[i], 5);
	int merged = 0;
	for (int i = 0; i < 256; i++)
		merged += ka_buddy_free_order(lg[i]) >= 9;
	ok(merged == 256, "large blocks freed between slabs merge into blocks of order >= 9 (%d of 256)",
	   merged);
	for (int i = 0; i < 256; i++)
		ka_buddy_free(sl[i], 0);
	ka_buddy_validate();

	/* buddyinfo format: "Node 0, zone   kalloc" and 11 counts. */
	FILE *f = tmpfile();
	ka_buddy_print(fileno(f));
	rewind(f);
	char line[256] = "";
	fgets(line, sizeof line, f);
	int nums = 0;
	for (char *t = strtok(line + 21, " \n"); t; t = strtok(NULL, " \n"))
		nums++;
	ok(strncmp(line, "Node 0, zone   kalloc", 21) == 0 && nums == KA_NR_ORDERS,
	   "buddyinfo line has the /proc/buddyinfo shape");
	return done_testing();
}
