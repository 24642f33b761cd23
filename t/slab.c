/*
 * t/slab.c: the slab layer and thread cache through kalloc_malloc/free,
 * against a model: random sizes over every class, each live object filled
 * with a pattern derived from its address and checked at free, live
 * objects never overlap, every cache and the buddy validate as it goes.
 * Also the class table's rules, and a write after free caught.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "tap.h"

#define MAXLIVE 4000

struct obj {
	unsigned char *p;
	size_t n;
};
static struct obj live[MAXLIVE];
static int nlive;

static unsigned char pat(const void *p, size_t i) { return (unsigned char)(((uintptr_t)p >> 4) + i * 7); }

static void fill(struct obj *o)
{
	for (size_t i = 0; i < o->n; i++)
		o->p[i] = pat(o->p, i);
}

static int check(struct obj *o)
{
	for (size_t i = 0; i < o->n; i++)
		if (o->p[i] != pat(o->p, i))
			return 0;
	return 1;
}

static void validate_all(void)
{
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		ka_slab_validate(&ka_kmalloc[c]);
	ka_buddy_validate();
}

static int cmp(const void *a, const void *b)
{
	const struct obj *x = a, *y = b;
	return x->p < y->p ? -1 : x->p > y->p;
}

static int disjoint(void)
{
	static struct obj s[MAXLIVE];
	memcpy(s, live, sizeof(struct obj) * (size_t)nlive);
	qsort(s, (size_t)nlive, sizeof *s, cmp);
	for (int i = 1; i < nlive; i++)
		if (s[i - 1].p + kalloc_malloc_usable_size(s[i - 1].p) > s[i].p)
			return 0;
	return 1;
}

/* Free b and a (a on top of b in the bin), overwrite a's link (the low
 * bits change, so the check catches it every time), take a back with
 * malloc, then malloc again or, with flush_bin, flush the bin. */
static bool flush_bin;
static void corrupt_link(void)
{
	ka_report_init(); /* stderr is now the test's pipe (report.c) */
	void **a = kalloc_malloc(64);
	void *b = kalloc_malloc(64);
	kalloc_free(b);
	kalloc_free(a);
	a[0] = (void *)((uintptr_t)a[0] ^ 0x4141414141414141ull);
	if (kalloc_malloc(64) != a)
		_exit(3);
	if (flush_bin)
		kalloc_malloc_trim(0);
	else
		kalloc_malloc(64);
}

/* True if corrupt_link aborted with the corrupted-list message. */
static bool corrupt_link_aborts(bool flush)
{
	char msg[512];
	flush_bin = flush;
	int st = run_child_stderr(corrupt_link, msg, sizeof msg);
	bool ok = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(msg, "corrupted free list");
	if (!ok)
		diag("child status %#x, message: %s", st, msg);
	return ok;
}

int main(void)
{
	unsigned long seed = test_seed();
	unsigned long long s = seed ? seed : 1;
	kalloc_free(kalloc_malloc(1)); /* initialise */

	/* The class table. */
	int table_ok = 1, names_ok = 1, waste_ok = 1;
	for (size_t n = 0; n <= KA_SMALL_MAX; n++) {
		unsigned c = ka_size_class[(n + 7) >> 3];
		table_ok &= ka_classes[c].size >= n && (c == 1 || ka_classes[c - 1].size < n);
	}
	for (unsigned c = 1; c < KA_NR_CLASSES; c++) {
		const struct ka_class *k = &ka_classes[c];
		table_ok &= k->size % 16 == 0;
		size_t bytes = KA_PAGE_SIZE << k->order;
		size_t waste = bytes - (size_t)k->objs * k->size;
		if ((size_t)k->size * 4 <= (KA_PAGE_SIZE << KA_SLAB_MAX_ORDER))
			waste_ok &= k->objs >= 4 && waste * 8 <= bytes;
		else /* 4 do not fit the largest slab: the rule's last step (sizeclass.c) */
			waste_ok &= k->objs >= 1 && (waste * 8 <= bytes || k->order == KA_SLAB_MAX_ORDER) &&
				    waste * 4 <= bytes;
	}
	names_ok = !strcmp(ka_classes[ka_size_class[12]].name, "kmalloc-96") &&
		   !strcmp(ka_classes[ka_size_class[24]].name, "kmalloc-192") &&
		   !strcmp(ka_classes[ka_size_class[128]].name, "kmalloc-1k") &&
		   !strcmp(ka_classes[ka_size_class[1024]].name, "kmalloc-8k") &&
		   !strcmp(ka_classes[ka_size_class[48]].name, "kmalloc-384") &&
		   !strcmp(ka_classes[1].name, "kmalloc-16") && ka_size_class[0] == 1 && ka_size_class[1] == 1;
	ok(table_ok, "every size 0..KA_SMALL_MAX maps to the smallest class that holds it; every class is a multiple of 16 (1..16 bytes: kmalloc-16)");
	ok(waste_ok, "every class's slab wastes at most 1/8 and holds at least 4 objects (above 8 KiB: "
		     "the smallest slab that wastes at most 1/8, else the largest, at most 1/4 wasted)");
	ok(names_ok, "classes are named as the kernel names them (kmalloc-96, kmalloc-1k, ...)");

	/* The object-start test (ka_obj_divisor) against division, for every
	 * offset of every class's slab: starts of objects 0..objs-1 only. */
	int start_ok = 1;
	for (unsigned c = 1; c < KA_NR_CLASSES; c++) {
		const struct ka_class *k = &ka_classes[c];
		for (size_t off = 0; off <= k->slab_mask; off++) {
			int want = off % k->size == 0 && off / k->size < k->objs;
			start_ok &= (off * k->div < k->limit) == want;
		}
	}
	ok(start_ok, "off * div < limit holds exactly at the starts of a slab's objects (not inside one, not in the tail)");

	int steps = 30000, bad_pattern = 0, bad_align = 0, bad_usable = 0, nulls = 0;
	for (int step = 0; step < steps; step++) {
		unsigned r = (unsigned)(rnd(&s) % 100);
		if (nlive && (r < 45 || nlive == MAXLIVE)) {
			int k = (int)(rnd(&s) % (unsigned)nlive);
			bad_pattern += !check(&live[k]);
			kalloc_free(live[k].p);
			live[k] = live[--nlive];
		} else if (nlive && r < 50) {
			struct obj *o = &live[rnd(&s) % (unsigned)nlive];
			bad_pattern += !check(o);
			size_t n = rnd(&s) % 2 ? rnd(&s) % 600 : rnd(&s) % 9000;
			unsigned char *q = kalloc_realloc(o->p, n ? n : 1);
			if (!q) {
				nulls++;
				continue;
			}
			size_t keep = o->n < (n ? n : 1) ? o->n : (n ? n : 1);
			for (size_t i = 0; i < keep; i++)
				bad_pattern += q[i] != pat(o->p, i);
			o->p = q;
			o->n = n ? n : 1;
			fill(o);
		} else {
			size_t n = rnd(&s) % 4 ? rnd(&s) % 257 : rnd(&s) % 8193;
			unsigned char *p = kalloc_malloc(n);
			if (!p) {
				nulls++;
				continue;
			}
			bad_align += ((uintptr_t)p & (n >= 16 ? 15 : 7)) != 0;
			bad_usable += kalloc_malloc_usable_size(p) < n;
			live[nlive] = (struct obj){p, n};
			fill(&live[nlive++]);
		}
		if (step % 100 == 0) {
			validate_all();
			if (!disjoint()) {
				ok(0, "live objects disjoint at step %d", step);
				return done_testing();
			}
		}
	}
	ok(nulls == 0, "%d random steps, no allocation failed", steps);
	ok(bad_pattern == 0, "every object kept its contents (and realloc kept them)");
	ok(bad_align == 0, "16-byte alignment for 16 bytes and more, 8 below");
	ok(bad_usable == 0, "usable size at least the size asked for");
	ok(disjoint(), "live objects never overlap (checked every 100 steps)");
	while (nlive)
		kalloc_free(live[--nlive].p);
	kalloc_malloc_trim(0);
	validate_all();
	size_t active = 0, slabs = 0;
	for (unsigned c = 1; c < KA_NR_CLASSES; c++) {
		struct ka_cache_info in;
		ka_cache_info(&ka_kmalloc[c], &in);
		active += in.active_objs;
		slabs += in.num_slabs;
	}
	struct ka_buddy_stats st;
	ka_buddy_stats(&st);
	ok(active == 0 && slabs == 0 && st.free_pages == st.managed_pages,
	   "everything freed and trimmed: no active objects (%zu), no slabs (%zu), all pages free", active, slabs);

	/* A write after free that hits the link is caught when the list is
	 * used: by the malloc after the one that pops it, or by a walk of the
	 * bin (malloc_trim flushes the caller's cache), never followed. */
	ok(corrupt_link_aborts(false), "a write after free into a free-list link aborts the next malloc with a message");
	ok(corrupt_link_aborts(true), "... and the flush of its bin, with the message");
	return done_testing();
}
