/*
 * tap.h: the Test Anything Protocol, as small as it goes. stdout is a pipe
 * under automake's driver, so every line is flushed at once (a forked child
 * would print buffered lines twice); children leave with _exit.
 */
#ifndef KALLOC_TAP_H
#define KALLOC_TAP_H

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static int tap_n, tap_failed;

static inline void plan(int n)
{
	printf("1..%d\n", n);
	fflush(stdout);
}

static inline void plan_skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	fflush(stdout);
	exit(0);
}

static inline void diag(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("# ");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
}

static inline int ok(int cond, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
	if (!cond)
		tap_failed++;
	return cond;
}

static inline void skip(const char *why)
{
	printf("ok %d # SKIP %s\n", ++tap_n, why);
	fflush(stdout);
}

/* Plan printed at the end, for tests whose count depends on the run. */
static inline int done_testing(void)
{
	printf("1..%d\n", tap_n);
	fflush(stdout);
	return tap_failed ? 1 : 0;
}

/* Seed for randomized tests: KALLOC_TEST_SEED replays a run. */
static inline unsigned long test_seed(void)
{
	const char *s = getenv("KALLOC_TEST_SEED");
	unsigned long seed = s ? strtoul(s, NULL, 0) : (unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16);
	printf("# seed=%lu (KALLOC_TEST_SEED=%lu replays it)\n", seed, seed);
	fflush(stdout);
	return seed;
}

/*
 * Resident set size in KiB, from /proc/self/statm; -1 if unreadable. With
 * read(2) into a stack buffer, not stdio: a test that polls RSS must not
 * grow it (under ASan every freed FILE stays in its quarantine).
 */
static inline long rss_kib(void)
{
	char buf[128];
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *p = strchr(buf, ' ');
	return p ? strtol(p + 1, NULL, 10) * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

/* Run fn in a forked child, which then exits 0; its wait status. */
static inline int run_child(void (*fn)(void))
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		fn();
		_exit(0);
	}
	int st = -1;
	waitpid(pid, &st, 0);
	return st;
}

/* xorshift64*: the tests' own generator, so a seed replays everywhere. */
static inline unsigned long long rnd(unsigned long long *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

#endif
