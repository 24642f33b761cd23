/*
 * t/purge.c: free memory goes back to the OS: at once on trim; without
 * trim, once it has been free for purge_delay_ms and the allocator is
 * called again; a wholly free chunk is unmapped. Purged blocks read as
 * zero and say so; reused dirty ones do not claim to be.
 */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "tap.h"

static long rss_mib(void) { return rss_kib() >> 10; }

#define N 16

static void touch_all(char **b)
{
	for (int i = 0; i < N; i++)
		memset(b[i], 0xab, KA_CHUNK_SIZE);
}

int main(void)
{
	plan(9);
	char *b[N];
	bool z;
	long r0 = rss_mib();
	for (int i = 0; i < N; i++)
		b[i] = ka_buddy_alloc(KA_MAX_ORDER, KA_PG_RAW, &z);
	touch_all(b);
	long r1 = rss_mib();
	ok(r1 - r0 >= 60, "64 MiB touched: RSS rose by %ld MiB", r1 - r0);
	for (int i = 0; i < N; i++)
		ka_buddy_free(b[i], KA_MAX_ORDER);
	long r2 = rss_mib();
	ok(r2 - r0 >= 60, "freed but not purged: still resident for reuse (%ld MiB)", r2 - r0);
	struct ka_buddy_stats st0, st1;
	ka_buddy_stats(&st0);
	ka_buddy_purge(true);
	long r3 = rss_mib();
	ka_buddy_stats(&st1);
	ok(r2 - r3 >= 60, "trim: RSS fell by %ld MiB", r2 - r3);
	ok(st1.nr_chunks + N <= st0.nr_chunks && ka_map_entry((uintptr_t)b[0]) == 0,
	   "wholly free chunks unmapped (%zu -> %zu chunks), their addresses no longer ours",
	   st0.nr_chunks, st1.nr_chunks);
	ka_buddy_validate();

	/* Without trim: the delay passes, the next call purges. */
	ka_opt.purge_delay_ms = 100;
	for (int i = 0; i < N; i++)
		b[i] = ka_buddy_alloc(KA_MAX_ORDER, KA_PG_RAW, &z);
	touch_all(b);
	for (int i = 0; i < N; i++)
		ka_buddy_free(b[i], KA_MAX_ORDER);
	long r4 = rss_mib();
	usleep(300 * 1000);
	void *x = ka_buddy_alloc(0, KA_PG_RAW, &z);
	ka_buddy_free(x, 0);
	long r5 = rss_mib();
	ok(r4 - r5 >= 56, "after the purge delay and one more call, RSS fell by %ld MiB", r4 - r5);
	ka_buddy_validate();

	/* Zero knowledge: purged memory reads as zero and says so. */
	ka_opt.purge_delay_ms = 100000;
	char *d = ka_buddy_alloc(5, KA_PG_RAW, &z);
	memset(d, 0x5a, KA_PAGE_SIZE << 5);
	ka_buddy_free(d, 5);
	char *e = ka_buddy_alloc(5, KA_PG_RAW, &z);
	ok(e == d && !z, "a dirty block handed out again is not claimed to be zero");
	ka_buddy_free(e, 5);
	ka_buddy_purge(true);
	e = ka_buddy_alloc(5, KA_PG_RAW, &z);
	int zero = 1;
	for (size_t i = 0; i < (KA_PAGE_SIZE << 5); i++)
		zero &= e[i] == 0;
	ok(z && zero, "a purged block is claimed zero and reads as zero");
	ka_buddy_free(e, 5);

	/* page_source:brk, in a fresh child. */
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		/* A fresh allocator state is not available in the child, but the
		 * OS layer's policy is read at each chunk: force a new chunk. */
		ka_opt.page_source = KA_PAGE_SOURCE_BRK;
		ka_buddy_purge(true);
		char *before = sbrk(0);
		void *q[4];
		for (int i = 0; i < 4; i++)
			q[i] = ka_buddy_alloc(KA_MAX_ORDER, KA_PG_RAW, &z);
		char *after = sbrk(0);
		int from_brk = 0;
		for (int i = 0; i < 4; i++) {
			from_brk += (char *)q[i] >= before && (char *)q[i] < after;
			memset(q[i], 1, KA_CHUNK_SIZE);
		}
		for (int i = 0; i < 4; i++)
			ka_buddy_free(q[i], KA_MAX_ORDER);
		ka_buddy_validate();
		_exit(from_brk >= 3 ? 0 : 1);
	}
	int status;
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "page_source brk: chunks come from the break");
	ok(1, "validate passed throughout");
	return 0;
}
