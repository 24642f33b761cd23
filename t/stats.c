/*
 * t/stats.c: the stats tables and counters, checked against allocations
 * the test makes itself. Cases run in children under kalloc (preload.h)
 * with tcache_max:0, so every object is counted in its slab at once.
 * Then where the exit report goes: to what stderr was at start-up when
 * the program closes or redirects it, nowhere when neither fd 2 nor
 * kalloc's duplicate is that file any more, and to stats_file:PATH.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "preload.h"

#define N 1000

static int child(const char *name)
{
	if (!strcmp(name, "slabinfo")) {
		fprintf(stderr, "--- before\n");
		malloc_stats();
		void *p[N];
		for (int i = 0; i < N; i++)
			p[i] = malloc(200); /* kmalloc-224 */
		fprintf(stderr, "--- after\n");
		malloc_stats();
		for (int i = 0; i < N; i++)
			free(p[i]);
		fprintf(stderr, "--- freed\n");
		malloc_stats();
	} else if (!strcmp(name, "mallinfo2")) {
		struct mallinfo2 a = mallinfo2();
		void *big[3], *mid[10];
		for (int i = 0; i < 3; i++)
			memset(big[i] = malloc(2 << 20), 1, 2 << 20);
		for (int i = 0; i < 10; i++)
			mid[i] = malloc(100 << 10);
		struct mallinfo2 b = mallinfo2();
		for (int i = 0; i < 3; i++)
			free(big[i]);
		for (int i = 0; i < 10; i++)
			free(mid[i]);
		struct mallinfo2 c = mallinfo2();
		printf("hblks=%zu hblkhd=%zu uord=%zu arena_ok=%d back=%d peak_ok=%d\n", b.hblks - a.hblks,
		       b.hblkhd - a.hblkhd, b.uordblks - a.uordblks, b.arena >= b.uordblks,
		       c.hblks == a.hblks && c.uordblks < b.uordblks, b.usmblks >= b.arena + b.hblkhd);
	} else if (!strcmp(name, "hold")) {
		/* For t/top.sh: hold objects, fork a child that holds others, and
		 * keep calling malloc (which publishes) until $T_STOP_FILE exists. */
		for (int i = 0; i < 5000; i++)
			malloc(200);
		fflush(stdout);
		pid_t kid = fork();
		if (kid == 0)
			for (int i = 0; i < 3000; i++)
				malloc(1000);
		if (kid != 0)
			printf("pid=%d child=%d\n", (int)getpid(), (int)kid);
		fflush(stdout);
		const char *stop = getenv("T_STOP_FILE");
		for (int i = 0; i < 600 && stop && access(stop, F_OK) != 0; i++) {
			free(malloc(64));
			usleep(50000);
		}
		if (kid > 0)
			waitpid(kid, NULL, 0);
	} else if (!strcmp(name, "exit")) {
		void *keep = malloc(3000); /* kmalloc-3k stays live to the end */
		printf("keep=%p\n", keep);
	} else if (!strcmp(name, "close-stderr")) {
		/* As coreutils' close_stdout does at exit. */
		printf("keep=%p\n", malloc(3000));
		fclose(stdout);
		fclose(stderr);
	} else if (!strcmp(name, "redirect-stderr")) {
		/* The program points its stderr at a log of its own. */
		int fd = open(getenv("T_FILE"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || dup2(fd, 2) != 2)
			return 1;
		close(fd);
		fprintf(stderr, "the program's own line\n");
	} else if (!strcmp(name, "daemon")) {
		/* Closes every descriptor (kalloc's duplicate too), then its
		 * data file lands on fd 2: nothing of kalloc's may go there. */
		struct rlimit rl;
		int top = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
		for (int fd = 0; fd < top; fd++)
			close(fd);
		if (open("/dev/null", O_RDONLY) != 0 || open("/dev/null", O_WRONLY) != 1 ||
		    open(getenv("T_FILE"), O_WRONLY | O_CREAT | O_TRUNC, 0600) != 2)
			return 1;
		if (write(2, "data\n", 5) != 5)
			return 1;
	} else if (!strcmp(name, "fork")) {
		fflush(stdout);
		pid_t kid = fork();
		if (kid == 0) {
			malloc(100);
			exit(0); /* destructors run: the child's own report */
		}
		waitpid(kid, NULL, 0);
		printf("pid=%d kid=%d\n", (int)getpid(), (int)kid);
	}
	return 0;
}

/* The contents of path (NUL-terminated, "" if absent) in buf. */
static const char *slurp(const char *path, char *buf, size_t cap)
{
	size_t n = 0;
	int fd = open(path, O_RDONLY);
	ssize_t r;
	while (fd >= 0 && n < cap - 1 && (r = read(fd, buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	if (fd >= 0)
		close(fd);
	buf[n] = 0;
	return buf;
}

/* The report of pid `pid` is in s: its header, then a slabinfo table. */
static int has_report(const char *s, const char *pid)
{
	char head[64];
	snprintf(head, sizeof head, "kalloc: stats at exit of pid %s ", pid);
	const char *h = strstr(s, head);
	return h && strstr(h, "slabinfo - version") && strstr(h, "totals");
}

/* active_objs of `cache` in the slabinfo block after `mark`, or -1. */
static long active(const char *out, const char *mark, const char *cache)
{
	const char *m = strstr(out, mark);
	if (!m)
		return -1;
	char pat[40];
	snprintf(pat, sizeof pat, "\n%s ", cache);
	const char *l = strstr(m, pat), *end = strstr(m + 1, "\n---");
	long v;
	if (!l || (end && l > end)) /* not in this block: no slab of that cache */
		return 0;
	return sscanf(l + strlen(pat), "%ld", &v) == 1 ? v : 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "child"))
		return child(argv[2]);
	kalloc_lib();
	plan(15);
	static char out[65536];
	int st = run_case("tcache_max:0", "slabinfo", out, sizeof out);
	long a = active(out, "--- before", "kmalloc-224"), b = active(out, "--- after", "kmalloc-224"),
	     c = active(out, "--- freed", "kmalloc-224");
	ok(exited_ok(st) && strstr(out, "slabinfo - version: 2.1") && strstr(out, "<active_objs> <num_objs>"),
	   "malloc_stats prints a /proc/slabinfo table");
	if (!ok(a >= 0 && b - a == N && c == a, "kmalloc-224 active objects: +%d after %d mallocs of 200 B, back after the frees (%ld, %ld, %ld)", N, N, a, b, c))
		diag("%s", out);
	const char *bi = strstr(out, "Node 0, zone   kalloc");
	int orders = 0;
	if (bi) {
		bi += strlen("Node 0, zone   kalloc");
		long x;
		int used;
		while (sscanf(bi, "%ld%n", &x, &used) == 1 && orders < 20)
			orders++, bi += used;
	}
	ok(orders == 11, "a /proc/buddyinfo line with 11 orders (%d)", orders);
	ok(strstr(out, "mapped from the OS") && strstr(out, "in use by the program") &&
		   strstr(out, "in per-thread caches") && strstr(out, "returned to the OS") &&
		   strstr(out, "free fast path: on (flat tag table reserved)"),
	   "totals: mapped, in use, thread caches, returned, and the free fast path on");

	st = run_case("tcache_max:0", "mallinfo2", out, sizeof out);
	size_t hblks = 0, hblkhd = 0, uord = 0;
	int arena_ok = 0, back = 0, peak_ok = 0;
	sscanf(out, "hblks=%zu hblkhd=%zu uord=%zu arena_ok=%d back=%d peak_ok=%d", &hblks, &hblkhd, &uord,
	       &arena_ok, &back, &peak_ok);
	ok(exited_ok(st) && hblks == 3 && hblkhd >= (size_t)6 << 20, "mallinfo2: 3 more mappings, >= 6 MiB (%zu, %zu)", hblks, hblkhd);
	ok(uord >= (size_t)1000 << 10 && arena_ok, "mallinfo2: uordblks grew by the 10 x 100 KiB blocks (%zu)", uord);
	ok(back && peak_ok, "mallinfo2: counts go back after free; usmblks holds the peak");

	st = run_case("stats:1", "exit", out, sizeof out);
	ok(exited_ok(st) && strstr(out, "kalloc: stats at exit") && strstr(out, "slabinfo - version") &&
		   strstr(out, "buddyinfo") && strstr(out, "totals"),
	   "stats:1 prints the tables at exit");
	ok(active(out, "kalloc: stats at exit", "kmalloc-3k") >= 1, "the object still live at exit is counted");

	st = run_case("stats:1", "close-stderr", out, sizeof out);
	ok(exited_ok(st) && strstr(out, "kalloc: stats at exit") && active(out, "kalloc: stats at exit", "kmalloc-3k") >= 1,
	   "a program that closes stdout and stderr before exit: the tables reach what stderr was");

	char dir[] = "/tmp/kalloc-t-stats-XXXXXX", file[128], conf[160], got[65536];
	if (!mkdtemp(dir)) {
		diag("mkdtemp: %s", strerror(errno));
		return 1;
	}
	snprintf(file, sizeof file, "%s/log", dir);
	setenv("T_FILE", file, 1);
	st = run_case("stats:1", "redirect-stderr", out, sizeof out);
	slurp(file, got, sizeof got);
	ok(exited_ok(st) && strstr(out, "kalloc: stats at exit") && strstr(got, "the program's own line") &&
		   !strstr(got, "kalloc"),
	   "stderr redirected with dup2: the tables go to the start-up stderr, not into the program's file");
	st = run_case("stats:1", "daemon", out, sizeof out);
	slurp(file, got, sizeof got);
	ok(exited_ok(st) && !strcmp(got, "data\n") && !strstr(out, "kalloc"),
	   "every descriptor closed and a data file on fd 2: nothing written anywhere");

	snprintf(conf, sizeof conf, "stats_file:%s/st.%%p", dir);
	st = run_case(conf, "fork", out, sizeof out);
	char pid[16], kid[16], path[160], got2[65536];
	noted(out, "pid", pid, sizeof pid);
	noted(out, "kid", kid, sizeof kid);
	snprintf(path, sizeof path, "%s/st.%s", dir, pid);
	slurp(path, got, sizeof got);
	struct stat sb;
	int mode = stat(path, &sb) == 0 ? (int)(sb.st_mode & 0777) : -1;
	snprintf(path, sizeof path, "%s/st.%s", dir, kid);
	slurp(path, got2, sizeof got2);
	ok(exited_ok(st) && has_report(got, pid) && has_report(got2, kid) && !strstr(got, kid),
	   "stats_file with %%p: a forked child and its parent each write their own file (%s, %s)", pid, kid);
	ok(mode == 0600 && !strstr(out, "kalloc"), "the stats file is 0600 (%o), and nothing goes to stderr", mode);
	unlink(path);
	snprintf(path, sizeof path, "%s/st.%s", dir, pid);
	unlink(path);

	char target[160];
	snprintf(target, sizeof target, "%s/target", dir);
	snprintf(path, sizeof path, "%s/link", dir);
	snprintf(conf, sizeof conf, "stats_file:%s", path);
	if (symlink(target, path) != 0) {
		diag("symlink: %s", strerror(errno));
		return 1;
	}
	st = run_case(conf, "exit", out, sizeof out);
	ok(exited_ok(st) && access(target, F_OK) != 0 && strstr(out, "stats_file: cannot open") &&
		   strstr(out, "kalloc: stats at exit"),
	   "stats_file is not followed through a symlink: a warning, and the tables on stderr");
	unlink(path);
	unlink(file);
	rmdir(dir);
	return tap_failed != 0;
}
