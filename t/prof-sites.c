/*
 * t/prof-sites: a program with two known allocation sites, for t/prof-tool.sh
 * (plain malloc: run under kalloc by the test, or not at all).
 *
 *   prof-sites maps          print "big 0xADDR", "small 0xADDR", "main 0xADDR"
 *                            (return addresses inside site_big, site_small
 *                            and main, as a stack walk records them), then
 *                            /proc/self/maps
 *   prof-sites hold [N]      site_big keeps 1000 x 4096 B live, site_small
 *                            10 x 65536 B; print "held", exit N (default 0)
 *   prof-sites kill          hold, then SIGKILL itself
 *   prof-sites wait          print "waiting", then wait for a signal (at
 *                            most 60 s)
 *   prof-sites session CMD...  run CMD in a new session (its process group
 *                            one that signals can be sent to) with SIGINT
 *                            and SIGQUIT at their defaults (a shell's
 *                            background job starts with them ignored)
 *   prof-sites fake [fork] [STATUS]  a stand-in for the library's profile writer (for
 *                            t/prof-run.sh): write, to KALLOC_CONF's
 *                            prof_file (%p: the pid), a heap_v2 profile of
 *                            1000 x 4096 B from site_big and 10 x 65536 B
 *                            from site_small, each under a first frame in
 *                            malloc (kalloc's, when preloaded); with fork, a
 *                            child writes one too (200 x 4096 B from
 *                            site_big). Then _exit(STATUS) (default 0),
 *                            so that a library that profiles writes
 *                            nothing over it.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG_N 1000
#define BIG_SIZE 4096
#define SMALL_N 10
#define SMALL_SIZE 65536

static void *held[BIG_N + SMALL_N];

/* The return address into its caller: what a frame walk records for a call
 * from that caller. */
static __attribute__((noinline)) void *caller_ra(void)
{
	void *ra = __builtin_return_address(0);
	__asm__ volatile("" : : "r"(ra) : "memory");
	return ra;
}

/* Each either allocates its blocks or returns the address of its call
 * site; the asm after each call keeps it from being a tail call. */
__attribute__((noinline)) void *site_big(int where);
__attribute__((noinline)) void *site_big(int where)
{
	if (where) {
		void *ra = caller_ra();
		__asm__ volatile("" : : "r"(ra) : "memory");
		return ra;
	}
	for (int i = 0; i < BIG_N; i++) {
		held[i] = malloc(BIG_SIZE);
		__asm__ volatile("" : : "r"(held[i]) : "memory");
		memset(held[i], 1, BIG_SIZE);
	}
	return NULL;
}

__attribute__((noinline)) void *site_small(int where);
__attribute__((noinline)) void *site_small(int where)
{
	if (where) {
		void *ra = caller_ra();
		__asm__ volatile("" : : "r"(ra) : "memory");
		return ra;
	}
	for (int i = 0; i < SMALL_N; i++) {
		held[BIG_N + i] = malloc(SMALL_SIZE);
		__asm__ volatile("" : : "r"(held[BIG_N + i]) : "memory");
		memset(held[BIG_N + i], 2, SMALL_SIZE);
	}
	return NULL;
}

/* KALLOC_CONF's prof_file, %p replaced by the pid; 0 if none. */
static int prof_path(char *buf, size_t n)
{
	const char *conf = getenv("KALLOC_CONF"), *p = conf ? strstr(conf, "prof_file:") : NULL;
	if (!p)
		return 0;
	size_t o = 0;
	for (p += 10; *p && *p != ',' && o + 24 < n; p++)
		if (p[0] == '%' && p[1] == 'p') {
			o += (size_t)snprintf(buf + o, n - o, "%d", (int)getpid());
			p++;
		} else {
			buf[o++] = *p;
		}
	buf[o] = 0;
	return 1;
}

static int write_fake(unsigned big_n, int small_n)
{
	char path[4096];
	if (!prof_path(path, sizeof path))
		return 1;
	FILE *f = fopen(path, "w"), *maps = fopen("/proc/self/maps", "r");
	if (!f || !maps)
		return 1;
	/* One byte into malloc: where a frame inside it would be. */
	char *in_malloc = (char *)(void *)&malloc + 1;
	void *big = site_big(1), *small = site_small(1), *m = caller_ra();
	unsigned long objs = big_n + (unsigned)small_n, bytes = big_n * (unsigned long)BIG_SIZE + (unsigned)small_n * (unsigned long)SMALL_SIZE;
	fprintf(f, "heap profile: %lu: %lu [ %lu: %lu] @ heap_v2/524288\n", objs, bytes, objs, bytes);
	fprintf(f, "%u: %lu [ %u: %lu] @ %p %p %p\n", big_n, big_n * (unsigned long)BIG_SIZE, big_n,
		big_n * (unsigned long)BIG_SIZE, (void *)in_malloc, big, m);
	if (small_n)
		fprintf(f, "%d: %lu [ %d: %lu] @ %p %p %p\n", small_n, small_n * (unsigned long)SMALL_SIZE, small_n,
			small_n * (unsigned long)SMALL_SIZE, (void *)in_malloc, small, m);
	fprintf(f, "\nMAPPED_LIBRARIES:\n");
	int c;
	while ((c = getc(maps)) != EOF)
		putc(c, f);
	fclose(maps);
	return fclose(f) != 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "session")) {
		signal(SIGINT, SIG_DFL);
		signal(SIGQUIT, SIG_DFL);
		if (setsid() < 0)
			return 126;
		execvp(argv[2], argv + 2);
		return 127;
	}
	if (argc >= 2 && !strcmp(argv[1], "wait")) {
		printf("waiting\n");
		fflush(stdout);
		alarm(60);
		pause();
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "fake")) {
		int st = 0, arg = 2;
		if (argc > arg && !strcmp(argv[arg], "fork")) {
			arg++;
			fflush(stdout);
			pid_t kid = fork();
			if (kid == 0)
				_exit(write_fake(200, 0));
			int kst;
			if (kid < 0 || waitpid(kid, &kst, 0) != kid || kst != 0)
				st = 1;
		}
		if (write_fake(BIG_N, SMALL_N))
			st = 1;
		printf("faked\n");
		fflush(stdout);
		_exit(st ? 1 : argc > arg ? atoi(argv[arg]) : 0);
	}
	if (argc >= 2 && !strcmp(argv[1], "maps")) {
		void *big = site_big(1), *small = site_small(1), *m = caller_ra();
		printf("big %p\nsmall %p\nmain %p\n", big, small, m);
		fflush(stdout);
		FILE *f = fopen("/proc/self/maps", "r");
		int c;
		while (f && (c = getc(f)) != EOF)
			putchar(c);
		return f ? 0 : 1;
	}
	if (argc >= 2 && (!strcmp(argv[1], "hold") || !strcmp(argv[1], "kill"))) {
		site_big(0);
		site_small(0);
		printf("held\n");
		fflush(stdout);
		if (!strcmp(argv[1], "kill"))
			raise(SIGKILL);
		return argc >= 3 ? atoi(argv[2]) : 0;
	}
	fprintf(stderr, "usage: prof-sites maps | hold [STATUS] | kill | wait | session CMD... | fake [fork] [STATUS]\n");
	return 2;
}
