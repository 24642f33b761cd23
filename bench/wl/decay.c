/*
 * decay: does freed memory go back to the OS while the program goes on?
 * Issue 12's experiment, for any allocator (LD_PRELOAD):
 *
 *   decay PIECE_KIB [pairs|sleep] [TOTAL_MIB] [KEEP]
 *     allocates TOTAL_MIB (default 1024) in pieces of PIECE_KIB, touches
 *     every page, frees all of it, then for 3 s makes only small
 *     malloc/free pairs (100 B; "pairs", the default) or only sleeps
 *     ("sleep"). Prints RSS right after the free, at 2 s and at 3 s.
 *     With KEEP > 1, one piece in KEEP (by address: the freed ones lie
 *     between kept ones, in holes that cannot merge) stays live.
 *   decay threads [pairs|sleep]
 *     10 threads each allocate 10 MiB in mixed sizes (16 B to 1 MiB,
 *     log-uniform), touch and free it, then idle on a condition variable,
 *     except thread 0, which goes on with small pairs ("pairs") or sleeps
 *     too ("sleep"); RSS as above.
 *
 * RSS is /proc/self/statm's second field, in MiB; the live data is the
 * pointer array (freed before the measurements) and a 100-byte block, so
 * about 0. One line: "decay piece=... free=N 2s=N 3s=N (MiB)".
 *
 * The table, every allocator:
 *   for a in "" /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ... lib/.libs/libkalloc.so; do
 *     for k in 4 64 1024 4096; do LD_PRELOAD=$a bench/wl/decay $k; done; done
 */
#include <time.h>
#include <unistd.h>

#include "wl.h"

static long rss_mib(void)
{
	long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return res * sysconf(_SC_PAGESIZE) >> 20;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Small pairs (or sleep) until `until`; returns the pairs made. */
static uint64_t idle_until(double until, int pairs)
{
	uint64_t n = 0;
	while (now_s() < until) {
		if (!pairs) {
			usleep(10000);
			continue;
		}
		for (int i = 0; i < 1000; i++, n++) {
			char *q = wl_xmalloc(100);
			q[0] = (char)i;
			ESC(q);
			free(q);
		}
	}
	return n;
}

/* Free, then report RSS now, at 2 s and at 3 s. */
static void measure(const char *what, int pairs)
{
	double t0 = now_s();
	long r0 = rss_mib();
	idle_until(t0 + 2, pairs);
	long r2 = rss_mib();
	idle_until(t0 + 3, pairs);
	long r3 = rss_mib();
	printf("decay %s %s: free=%ld 2s=%ld 3s=%ld (MiB RSS)\n", what, pairs ? "pairs" : "sleep", r0, r2, r3);
}

static void pieces(size_t piece, size_t total, int pairs, size_t one_in)
{
	size_t n = total / piece, kept = 0;
	char **p = wl_xmalloc(n * sizeof *p);
	void *keep = wl_xmalloc(100);
	for (size_t i = 0; i < n; i++) {
		p[i] = wl_xmalloc(piece);
		for (size_t j = 0; j < piece; j += 4096)
			p[i][j] = 1;
		p[i][piece - 1] = 1;
	}
	for (size_t i = 0; i < n; i++) {
		if (one_in > 1 && (uintptr_t)p[i] / piece % one_in == one_in - 1)
			p[kept++] = p[i];
		else
			free(p[i]);
	}
	char what[96];
	snprintf(what, sizeof what, "piece=%zuKiB total=%zuMiB live=%zuMiB", piece >> 10, total >> 20,
		 kept * piece >> 20);
	measure(what, pairs);
	for (size_t i = 0; i < kept; i++)
		free(p[i]);
	free(p);
	free(keep);
}

/* ---------------------------------------------------------------- threads */
#define NTHREADS 10
#define PER_THREAD ((size_t)10 << 20)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done_alloc, finished;

/* Allocate PER_THREAD in mixed sizes, touch it, free it. */
static void mixed(uint64_t seed)
{
	size_t cap = PER_THREAD / 16, n = 0, bytes = 0;
	char **v = wl_xmalloc(cap * sizeof *v);
	while (bytes < PER_THREAD && n < cap) {
		size_t sz = (size_t)16 << (wl_rand(&seed) % 17); /* 16 B .. 1 MiB, log-uniform */
		sz += wl_rand(&seed) % sz;
		if (sz > ((size_t)1 << 20))
			sz = (size_t)1 << 20;
		v[n] = wl_xmalloc(sz);
		memset(v[n], 1, sz);
		bytes += sz;
		n++;
	}
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void *worker(void *arg)
{
	mixed(0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1));
	pthread_mutex_lock(&mu);
	done_alloc++;
	pthread_cond_broadcast(&cv);
	while (!finished)
		pthread_cond_wait(&cv, &mu); /* idle: no allocator call */
	pthread_mutex_unlock(&mu);
	return NULL;
}

static void threads(int pairs)
{
	pthread_t t[NTHREADS];
	for (int i = 1; i < NTHREADS; i++)
		pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
	/* Thread 0 is this one: its share, then small pairs while the others idle. */
	mixed(0x9e3779b97f4a7c15ull);
	pthread_mutex_lock(&mu);
	while (done_alloc < NTHREADS - 1)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	measure("threads=10 each=10MiB", pairs);
	pthread_mutex_lock(&mu);
	finished = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (int i = 1; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: decay PIECE_KIB|threads [pairs|sleep] [TOTAL_MIB] [KEEP]\n");
		return 2;
	}
	int pairs = argc < 3 || strcmp(argv[2], "sleep") != 0;
	if (strcmp(argv[1], "threads") == 0) {
		threads(pairs);
		return 0;
	}
	size_t piece = (size_t)atol(argv[1]) << 10;
	size_t total = (argc > 3 ? (size_t)atol(argv[3]) : 1024) << 20;
	if (!piece || piece > total)
		return 2;
	pieces(piece, total, pairs, argc > 4 ? (size_t)atol(argv[4]) : 1);
	return 0;
}
