/*
 * t/decay.c: memory goes back on its own. A program allocates 128 MiB in
 * pieces of one size, touches it, frees all of it and then makes only small
 * malloc/free pairs, which stay on the fast path: the housekeeping tick
 * they drive (tcache.c) must bring RSS down to at most twice the live data
 * plus 4 MiB. purge_delay_ms is 50: the frees themselves are too recent to
 * be purged, so only a tick while the small pairs run can give the memory
 * back; the pairs run for three delays (no sleep). RSS is read from
 * /proc/self/statm. Each piece size runs in its own child, from a fresh heap.
 * Also: malloc_trim returns 1 when it gave memory back and 0 when there was
 * nothing left to give.
 */
#include <dirent.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "tap.h"

#define TOTAL ((size_t)128 << 20)

/* Threads of this process, from /proc/self/task. */
static int count_threads(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static int run_pieces(size_t piece, long *after_kib, long *base_kib)
{
	size_t n = TOTAL / piece;
	char **p = kalloc_malloc(n * sizeof *p);
	void *keep = kalloc_malloc(100); /* a little live data */
	*base_kib = rss_kib();
	for (size_t i = 0; i < n; i++) {
		p[i] = kalloc_malloc(piece);
		if (!p[i])
			return 1;
		memset(p[i], 0x5a, piece);
	}
	for (size_t i = 0; i < n; i++)
		kalloc_free(p[i]);
	kalloc_free(p);
	/* Only small pairs from now on, for three purge delays. */
	uint64_t t0 = ka_os_now_ms();
	while (ka_os_now_ms() - t0 < 150)
		for (int i = 0; i < 10000; i++) {
			void *q = kalloc_malloc(100);
			*(volatile char *)q = 1;
			kalloc_free(q);
		}
	*after_kib = rss_kib();
	kalloc_free(keep);
	return 0;
}

int main(void)
{
	static const size_t pieces[] = {4096, 64 << 10, 1 << 20, 4 << 20};
	int n = (int)(sizeof pieces / sizeof *pieces);
	plan(n + 5);
	for (int i = 0; i < n; i++) {
		int fd[2];
		if (pipe(fd) != 0)
			return 1;
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			close(fd[0]);
			ka_options_parse("purge_delay_ms:50");
			long r[2] = {0, 0};
			int err = run_pieces(pieces[i], &r[0], &r[1]);
			if (write(fd[1], r, sizeof r) != (ssize_t)sizeof r)
				_exit(3);
			_exit(err);
		}
		close(fd[1]);
		long r[2] = {-1, -1};
		ssize_t got = read(fd[0], r, sizeof r);
		close(fd[0]);
		int st;
		waitpid(pid, &st, 0);
		long grown = r[0] - r[1];
		ok(got == (ssize_t)sizeof r && WIFEXITED(st) && WEXITSTATUS(st) == 0 && grown <= 4096,
		   "128 MiB in %zu KiB pieces freed, then only small pairs: RSS %ld KiB above where it started "
		   "(at most 2 x live + 4 MiB)",
		   pieces[i] >> 10, grown);
	}

	/* Released chunks give their metadata back: 256 MiB of small pieces
	 * take 64 chunks, whose descriptors and tags are 4.3 MiB. */
	{
		long base = rss_kib();
		size_t cnt = ((size_t)256 << 20) / 2048;
		char **v = kalloc_malloc(cnt * sizeof *v);
		for (size_t i = 0; i < cnt; i++) {
			v[i] = kalloc_malloc(2048);
			v[i][0] = 1;
		}
		for (size_t i = 0; i < cnt; i++)
			kalloc_free(v[i]);
		kalloc_free(v);
		kalloc_malloc_trim(0);
		long left = rss_kib() - base;
		ok(left <= 1024, "256 MiB of 2 KiB pieces freed and trimmed: %ld KiB stay resident (chunk metadata "
				 "given back; at most 1 MiB)",
		   left);
	}

	/* malloc_trim's answer, glibc's: 1 if memory went back, else 0. */
	char *big[64];
	for (int i = 0; i < 64; i++) {
		big[i] = kalloc_malloc(64 << 10);
		memset(big[i], 1, 64 << 10);
	}
	for (int i = 0; i < 64; i++)
		kalloc_free(big[i]);
	long before = rss_kib();
	int r1 = kalloc_malloc_trim(0);
	long after = rss_kib();
	ok(r1 == 1 && after < before, "malloc_trim after freeing 4 MiB: returns 1 and RSS falls (%ld -> %ld KiB)",
	   before, after);
	ok(kalloc_malloc_trim(0) == 0, "malloc_trim with nothing left to give returns 0");
	/* background_thread:1, last (it purges from now on): the program
	 * frees, then only sleeps, and the thread purges. Its fork child
	 * starts none. Here in the test's own process: a fork child of it
	 * would never start one. */
	{
		ka_options_parse("background_thread:1,purge_delay_ms:50");
		long base = rss_kib();
		char *v[1024];
		for (int i = 0; i < 1024; i++) {
			v[i] = kalloc_malloc(64 << 10);
			memset(v[i], 1, 64 << 10);
		}
		for (int i = 0; i < 1024; i++)
			kalloc_free(v[i]);
		long grown = 1 << 30;
		for (int i = 0; i < 300 && grown > 4096; i++) { /* at most 3 s of sleep, no call */
			usleep(10000);
			grown = rss_kib() - base;
		}
		int threads = count_threads();
		ok(grown <= 4096 && threads == 2,
		   "background_thread:1: 64 MiB freed, then the program only sleeps: RSS %ld KiB above the start "
		   "(at most 4 MiB), %d threads",
		   grown, threads);
		fflush(stdout);
		pid_t c = fork();
		if (c == 0) {
			for (int i = 0; i < 256; i++)
				kalloc_free(kalloc_malloc(64 << 10));
			_exit(count_threads() == 1 ? 0 : 1);
		}
		int cst;
		waitpid(c, &cst, 0);
		ok(WIFEXITED(cst) && WEXITSTATUS(cst) == 0, "background_thread:1: a fork child starts no thread of its own");
	}
	return 0;
}
