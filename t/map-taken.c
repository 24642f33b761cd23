/*
 * t/map-taken.c: kalloc's flat tag table wants a fixed address (types.h,
 * KA_TAGS_FLAT). When the program holds that address already, kalloc leaves
 * the program's mapping alone and runs without the table: every free
 * takes the radix tree, and allocation, reuse and misuse checks work as
 * before. This program maps the address before kalloc starts.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "tap.h"

static void double_free(void)
{
	char *q = kalloc_malloc(48);
	kalloc_free(q);
	kalloc_free(q);
}

static unsigned long *mine;

/* Before kalloc's own constructor (init.c), which reserves the flat table. */
__attribute__((constructor(101))) static void take_the_address(void)
{
	mine = mmap((void *)KA_TAGS_FLAT, KA_PAGE_SIZE, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (mine == (unsigned long *)KA_TAGS_FLAT)
		mine[0] = 0x6b616c6c6f63UL;
}

int main(void)
{
	if (mine != (unsigned long *)KA_TAGS_FLAT)
		plan_skip_all("the flat table's address cannot be mapped here");
	plan(6);
	void *p = kalloc_malloc(64);
	ok(p != NULL && ka_tags_limit == 0, "the address taken: no flat table (limit %lu)",
	   (unsigned long)ka_tags_limit);
	ok(mine[0] == 0x6b616c6c6f63UL && mine[1] == 0, "and the program's mapping is left as it was");
	FILE *f = tmpfile();
	char text[8192] = "";
	if (f) {
		ka_stats_print(fileno(f));
		rewind(f);
		text[fread(text, 1, sizeof text - 1, f)] = 0;
		fclose(f);
	}
	ok(strstr(text, "free fast path: off (flat tag table not reserved") != NULL,
	   "the stats say the free fast path is off");
	kalloc_free(p);
	ok(kalloc_malloc(64) == p, "a freed object is reused: frees go through the radix tree");
	/* A model check: 20000 random steps over 256 slots, contents verified. */
	static char *slot[256];
	static size_t len[256];
	unsigned long long seed = test_seed() | 1;
	unsigned bad = 0;
	for (int i = 0; i < 20000; i++) {
		unsigned long long r = rnd(&seed);
		unsigned k = (unsigned)(r >> 8) & 255;
		if (slot[k]) {
			for (size_t j = 0; j < len[k]; j++)
				bad += slot[k][j] != (char)(k + j);
			kalloc_free(slot[k]);
			slot[k] = NULL;
		} else {
			len[k] = 1 + (size_t)(r >> 16) % 3000;
			slot[k] = kalloc_malloc(len[k]);
			for (size_t j = 0; slot[k] && j < len[k]; j++)
				slot[k][j] = (char)(k + j);
			bad += slot[k] == NULL;
		}
	}
	ok(bad == 0, "random malloc and free of 1 to 3000 bytes: contents intact");
	/* A double free is still caught, inside the second free. */
	int st = run_child(double_free);
	ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "a double free without the flat table ends the process");
	return 0;
}
