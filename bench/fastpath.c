/*
 * fastpath.c: the two fast-path loops whose instructions per iteration
 * tools/callgrind-ops.sh counts under each allocator (plain malloc/free,
 * so it runs under any LD_PRELOAD):
 *   fastpath pair N   malloc(32) + free, N times
 *   fastpath ring N   a ring of 256 blocks of random sizes 8..512: free the
 *                     oldest, malloc a new one, N times
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#define ESC(p) __asm__ volatile("" : : "g"(p) : "memory")
int main(int argc, char **argv)
{
	long n = atol(argv[2]);
	if (!strcmp(argv[1], "pair")) {
		for (long i = 0; i < n; i++) { void *p = malloc(32); ESC(p); free(p); }
	} else {
		void *ring[256] = {0};
		unsigned long long s = 88172645463325252ULL;
		for (long i = 0; i < n; i++) {
			s ^= s << 13; s ^= s >> 7; s ^= s << 17;
			unsigned k = i & 255;
			free(ring[k]);
			ring[k] = malloc(8 + s % 505);
			ESC(ring[k]);
		}
	}
	return 0;
}
