/*
 * opcount.c: instructions per operation of the single-thread micro cases
 * (micro.h), for tools/callgrind-ops.sh. Run under
 *   valgrind --tool=callgrind --collect-atstart=no
 * each case runs once to warm up (slabs carved, caches filled), then
 * N operations with collection on, and callgrind dumps a profile named
 * after the case (N / 100 for blocks above 8 KiB, whose copies and clears
 * are slow under valgrind): the dump's total / N is the cost per operation,
 * the case's own loop included (the same few instructions for every
 * allocator). Without valgrind the requests do nothing.
 * Usage: opcount [N] [case...]   (default 200000, every single-thread case)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <valgrind/callgrind.h>

#include "micro.h"

int main(int argc, char **argv)
{
	static char obuf[4096]; /* not from malloc: under bench/stub.c every block is one */
	setvbuf(stdout, obuf, _IOLBF, sizeof obuf);
	long n = argc > 1 ? atol(argv[1]) : 200000;
	for (int i = 0; i < micro_ncases; i++) {
		const struct micro_case *c = &micro_cases[i];
		int want = argc <= 2;
		for (int a = 2; a < argc; a++)
			want |= strcmp(argv[a], c->name) == 0;
		if (!want || c->threaded)
			continue;
		long k = c->arg > 8192 ? n / 100 : n; /* big blocks: copies and clears */
		c->run(k / 4, c->arg, 0, 1);
		CALLGRIND_ZERO_STATS;
		CALLGRIND_TOGGLE_COLLECT;
		c->run(k, c->arg, 0, 1);
		CALLGRIND_TOGGLE_COLLECT;
		CALLGRIND_DUMP_STATS_AT(c->name);
		printf("%s %ld\n", c->name, k);
	}
	return 0;
}
