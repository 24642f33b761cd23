/*
 * t/thp.c: a huge block's mapping (above KA_LARGE_MAX) is advised
 * MADV_HUGEPAGE under thp:1, the default, and not under thp:0; the advice
 * survives a realloc that moves or grows the mapping. Read from the
 * mapping's VmFlags in /proc/self/smaps ("hg"). Skipped where the kernel
 * has no transparent huge pages (it refuses the advice).
 */
#include <stdio.h>
#include <string.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "tap.h"

/* 1 if the mapping holding p has the hg flag, 0 if not, -1 if not found. */
static int advised(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	char line[512];
	int in = 0, r = -1;
	uintptr_t a = (uintptr_t)p;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = a >= lo && a < hi;
			continue;
		}
		if (in && strncmp(line, "VmFlags:", 8) == 0) {
			r = strstr(line, " hg") != NULL;
			break;
		}
	}
	fclose(f);
	return r;
}

int main(void)
{
	plan(4);
	FILE *t = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!t) {
		for (int i = 0; i < 4; i++)
			skip("no transparent huge pages in this kernel");
		return 0;
	}
	fclose(t);
	size_t n = (size_t)16 << 20;
	ok(ka_opt.thp == 1, "thp is on by default");
	char *a = kalloc_malloc(n);
	memset(a, 1, n);
	ok(advised(a) == 1, "under thp:1 a 16 MiB block's mapping is advised MADV_HUGEPAGE (hg: %d)", advised(a));
	a = kalloc_realloc(a, 4 * n);
	ok(a && a[n - 1] == 1 && advised(a) == 1, "grown by realloc to 64 MiB, it still is (hg: %d)", advised(a));
	ka_opt.thp = 0;
	char *b = kalloc_malloc(n); /* a new mapping: a is live, the cache is empty */
	ok(advised(b) == 0, "under thp:0 a new block's mapping is not (hg: %d)", advised(b));
	kalloc_free(b);
	kalloc_free(a);
	return 0;
}
