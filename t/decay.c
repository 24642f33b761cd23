/*
 * t/decay.c: memory goes back on its own. A program allocates 128 MiB in
 * pieces of one size, touches it, frees all of it and then makes only small
 * malloc/free pairs, which stay on the fast path: the housekeeping tick
 * they drive (tcache.c) must bring RSS down to at most twice the live data
 * plus 4 MiB. purge_delay_ms is 50: the frees themselves are too recent to
 * be purged, so only a tick while the small pairs run can give the memory
 * back; the pairs run until RSS is under the bound, for at most 60 delays
 * (no sleep; the assertion is on RSS, never on the time). RSS is read from
 * /proc/self/statm. Each case runs in its own child, from a fresh heap.
 * The same with the freed memory in buddy blocks under 16 pages that
 * cannot merge (a kept neighbour pins each), from slabs of 4 and 8 KiB
 * objects and from 16 KiB blocks; and with 10 threads that free 10 MiB
 * each and then idle, but for one that makes small pairs.
 * Also: malloc_trim returns 1 when it gave memory back and 0 when there was
 * nothing left to give.
 */
#include <pthread.h>
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

/*
 * Only small pairs, until RSS is at most `limit` KiB above `base` (or 60
 * purge delays passed): RSS above base at the end.
 */
static long pairs_until(long base, long limit)
{
	uint64_t t0 = ka_os_now_ms();
	long grown;
	while ((grown = rss_kib() - base) > limit && ka_os_now_ms() - t0 < 60 * 50)
		for (int i = 0; i < 10000; i++) {
			void *q = kalloc_malloc(100);
			*(volatile char *)q = 1;
			kalloc_free(q);
		}
	return grown;
}

/* Each case fills r[0] with RSS above its start (KiB), r[1] with its bound. */
static int run_pieces(size_t piece, long r[2])
{
	size_t n = TOTAL / piece;
	char **p = kalloc_malloc(n * sizeof *p);
	void *keep = kalloc_malloc(100); /* a little live data */
	long base = rss_kib();
	for (size_t i = 0; i < n; i++) {
		p[i] = kalloc_malloc(piece);
		if (!p[i])
			return 1;
		memset(p[i], 0x5a, piece);
	}
	for (size_t i = 0; i < n; i++)
		kalloc_free(p[i]);
	kalloc_free(p);
	r[1] = 4096;
	r[0] = pairs_until(base, r[1]);
	kalloc_free(keep);
	return 0;
}

/* KiB of free buddy blocks under 16 pages. */
static long small_free_kib(void)
{
	size_t counts[KA_NR_ORDERS];
	ka_buddy_info(counts);
	long kib = 0;
	for (unsigned o = 0; o < 4; o++)
		kib += (long)(counts[o] << o) * 4;
	return kib;
}

/*
 * 128 MiB of 4 and 8 KiB objects (slabs of 8 pages), freed but for the
 * first object of every slab at an even slab-sized slot: the other slabs
 * go back to the buddy as blocks of 8 pages whose buddy is pinned, so they
 * never merge into a big block. They must come back all the same: RSS at
 * most the pinned slabs, plus the descriptors and tags of the chunks that
 * hold them (68 KiB a chunk, 2.2 MiB here), plus 4 MiB.
 */
static int run_slab_holes(long r[2])
{
	size_t slab = ka_classes[ka_size_class[4096 >> 3]].slab_mask + 1;
	if (slab != ka_classes[ka_size_class[8192 >> 3]].slab_mask + 1 || slab >= (64 << 10))
		return 4; /* the layout this case builds is gone */
	size_t n = TOTAL / 6144, kept = 0;
	char **p = kalloc_malloc(n * sizeof *p);
	long base = rss_kib();
	for (size_t i = 0; i < n; i++) {
		size_t sz = i & 1 ? 8192 : 4096;
		if (!(p[i] = kalloc_malloc(sz)))
			return 1;
		memset(p[i], 0x5a, sz);
	}
	for (size_t i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)p[i];
		if ((a & (slab - 1)) == 0 && !(a & slab))
			kept++;
		else
			kalloc_free(p[i]);
	}
	long holes = small_free_kib();
	struct ka_buddy_stats st;
	ka_buddy_stats(&st);
	r[1] = (long)((kept * slab + st.nr_chunks * sizeof(struct ka_chunk)) >> 10) + 4096;
	r[0] = pairs_until(base, r[1]);
	/* The case's premise: at least a third of the memory was in small blocks. */
	return holes >= (long)(TOTAL >> 10) / 3 ? 0 : 5;
}

/*
 * 128 MiB of 16 KiB blocks (4 pages, served through the page lists), one
 * in four kept: the freed ones are blocks of 4 and 8 pages between kept
 * ones. RSS at most twice the live data plus 4 MiB.
 */
static int run_large_holes(long r[2])
{
	size_t piece = 16 << 10, n = TOTAL / piece, kept = 0;
	char **p = kalloc_malloc(n * sizeof *p);
	long base = rss_kib();
	for (size_t i = 0; i < n; i++) {
		if (!(p[i] = kalloc_malloc(piece)))
			return 1;
		memset(p[i], 0x5a, piece);
	}
	for (size_t i = 0; i < n; i++) {
		if ((((uintptr_t)p[i] >> 14) & 3) == 3)
			kept++;
		else
			kalloc_free(p[i]);
	}
	long holes = small_free_kib();
	r[1] = 2 * (long)(kept * piece >> 10) + 4096;
	r[0] = pairs_until(base, r[1]);
	return holes >= (long)(TOTAL >> 10) / 2 ? 0 : 5;
}

/*
 * 10 threads allocate and free PER_THREAD each in mixed sizes (16 B to
 * 1 MiB), then 9 of them idle on a condition variable while this one makes
 * small pairs: RSS at most 4 MiB plus 9 times what an idle thread may keep
 * (tcache.c: bins KA_TCACHE_BYTES, page lists KA_PCP_THREAD_BYTES,
 * outboxes 8 x 32 KiB, inbox KA_INBOX_MAX_BYTES). The figure is 10 MiB a thread
 * (bench/wl/decay threads); 32 here, so that memory left unpurged cannot
 * hide under the nine idle bounds.
 */
#define NTHREADS 10
#define PER_THREAD ((size_t)32 << 20)
#define IDLE_KIB ((long)((KA_TCACHE_BYTES + KA_PCP_THREAD_BYTES + KA_OUTBOXES * (32 << 10) + KA_INBOX_MAX_BYTES) >> 10))
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int nr_done, finish;

static int mixed(uint64_t seed)
{
	size_t cap = 16384, n = 0, bytes = 0;
	char **v = kalloc_malloc(cap * sizeof *v);
	if (!v)
		return 1;
	while (bytes < PER_THREAD && n < cap) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		size_t sz = (size_t)16 << (seed >> 33) % 17; /* 16 B .. 1 MiB, log-uniform */
		sz += (seed >> 13) % sz;
		sz = sz > ((size_t)1 << 20) ? (size_t)1 << 20 : sz;
		if (!(v[n] = kalloc_malloc(sz)))
			return 1;
		memset(v[n], 0x5a, sz);
		bytes += sz;
		n++;
	}
	for (size_t i = 0; i < n; i++)
		kalloc_free(v[i]);
	kalloc_free(v);
	return 0;
}

static void *idler(void *arg)
{
	int err = mixed((uintptr_t)arg);
	pthread_mutex_lock(&mu);
	nr_done++;
	pthread_cond_broadcast(&cv);
	while (!finish)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return (void *)(uintptr_t)err;
}

static int run_threads(long r[2])
{
	pthread_t t[NTHREADS];
	long base = rss_kib();
	int err = 0;
	for (int i = 1; i < NTHREADS; i++)
		if (pthread_create(&t[i], NULL, idler, (void *)(uintptr_t)i) != 0)
			return 1;
	err |= mixed(0);
	pthread_mutex_lock(&mu);
	while (nr_done < NTHREADS - 1)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	r[1] = 4096 + (NTHREADS - 1) * IDLE_KIB;
	r[0] = pairs_until(base, r[1]);
	pthread_mutex_lock(&mu);
	finish = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (int i = 1; i < NTHREADS; i++) {
		void *ret;
		pthread_join(t[i], &ret);
		err |= (int)(uintptr_t)ret;
	}
	return err;
}

enum { CASE_PIECES, CASE_SLAB_HOLES, CASE_LARGE_HOLES, CASE_THREADS };

/* Run a case in a fork child with purge_delay_ms:50; true if it passed. */
static bool in_child(int what, size_t piece, long r[2])
{
	int fd[2];
	if (pipe(fd) != 0)
		return false;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		close(fd[0]);
		ka_options_parse("purge_delay_ms:50");
		long res[2] = {0, 0};
		int err = what == CASE_PIECES	   ? run_pieces(piece, res)
			  : what == CASE_SLAB_HOLES  ? run_slab_holes(res)
			  : what == CASE_LARGE_HOLES ? run_large_holes(res)
						     : run_threads(res);
		if (write(fd[1], res, sizeof res) != (ssize_t)sizeof res)
			_exit(3);
		_exit(err);
	}
	close(fd[1]);
	r[0] = r[1] = -1;
	ssize_t got = read(fd[0], r, 2 * sizeof *r);
	close(fd[0]);
	int st;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		diag("case %d: child status %d", what, st);
	return got == (ssize_t)(2 * sizeof *r) && WIFEXITED(st) && WEXITSTATUS(st) == 0 && r[0] <= r[1];
}

int main(void)
{
	static const size_t pieces[] = {4096, 64 << 10, 1 << 20, 4 << 20};
	int n = (int)(sizeof pieces / sizeof *pieces);
	plan(n + 8);
	long r[2];
	bool pass;
	for (int i = 0; i < n; i++) {
		pass = in_child(CASE_PIECES, pieces[i], r); /* before ok() reads r */
		ok(pass,
		   "128 MiB in %zu KiB pieces freed, then only small pairs: RSS %ld KiB above where it started "
		   "(at most 2 x live + 4 MiB: %ld)",
		   pieces[i] >> 10, r[0], r[1]);
	}
	pass = in_child(CASE_SLAB_HOLES, 0, r);
	ok(pass,
	   "128 MiB of 4 and 8 KiB objects freed but for one per other slab (8-page buddy blocks that cannot "
	   "merge), then small pairs: RSS %ld KiB above the start (at most the pinned slabs + their chunks' "
	   "metadata + 4 MiB: %ld)",
	   r[0], r[1]);
	pass = in_child(CASE_LARGE_HOLES, 0, r);
	ok(pass,
	   "128 MiB of 16 KiB blocks freed but for one in four (4- and 8-page buddy blocks), then small "
	   "pairs: RSS %ld KiB above the start (at most 2 x live + 4 MiB: %ld)",
	   r[0], r[1]);
	pass = in_child(CASE_THREADS, 0, r);
	ok(pass,
	   "10 threads free 32 MiB each, 9 then idle, 1 makes small pairs: RSS %ld KiB above the start "
	   "(at most 4 MiB + 9 idle threads' bound: %ld)",
	   r[0], r[1]);

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
