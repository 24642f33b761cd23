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

/*
 * Fork with the child's stderr, and its stdout too if both, on a pipe: 0
 * in the child; in the parent the child's pid, *rd the pipe's read end;
 * -1 if it cannot.
 */
static inline pid_t fork_piped(int *rd, int both)
{
	int fd[2];
	if (pipe(fd) != 0)
		return -1;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		close(fd[0]);
		if (both)
			dup2(fd[1], 1);
		dup2(fd[1], 2);
		return 0;
	}
	close(fd[1]);
	*rd = fd[0];
	return pid;
}

/* What fork_piped's child writes, read to its end into out (NUL-terminated;
 * the rest is read and dropped, so that the child never blocks); then its
 * wait status. */
static inline int collect_child(pid_t pid, int rd, char *out, size_t cap)
{
	size_t n = 0;
	ssize_t r;
	char sink[4096];
	while ((r = read(rd, n < cap - 1 ? out + n : sink, n < cap - 1 ? cap - 1 - n : sizeof sink)) > 0)
		if (n < cap - 1)
			n += (size_t)r;
	out[n] = 0;
	close(rd);
	int st = -1;
	waitpid(pid, &st, 0);
	return st;
}

/* run_child, with what the child writes to stderr in out. */
static inline int run_child_stderr(void (*fn)(void), char *out, size_t cap)
{
	int rd;
	pid_t pid = fork_piped(&rd, 0);
	if (pid < 0)
		return -1;
	if (pid == 0) {
		fn();
		_exit(0);
	}
	return collect_child(pid, rd, out, cap);
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
