/*
 * t/leak.c: KALLOC_CONF=leak:1 reports every leaked block and no reachable
 * one. The child (preload.h) leaks 1000 blocks of 48 bytes from one site
 * and 10 of 320 from another, keeps others reachable in every way a root
 * can hold them (a list off a global, an interior pointer, a thread-local,
 * a pthread key, main's stack, another live block), clears a large stack
 * buffer so that stale copies do not hide leaks, and exits; the parent
 * reads the report. Plain malloc: not linked with kalloc's core.
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "preload.h"

struct node {
	struct node *next;
	char pad[56];
};

static struct node *list;   /* 100 nodes hang off it */
static char *volatile interior;  /* points 40 bytes into a block */
static __thread void *volatile tls_held;
static pthread_key_t key;

static void note(const char *k, const void *p) { fprintf(stderr, "%s=%p\n", k, p); }

__attribute__((noinline)) static void leak_a(int n)
{
	for (int i = 0; i < n; i++)
		memset(malloc(48), 0, 48);
}

__attribute__((noinline)) static void leak_b(int n)
{
	for (int i = 0; i < n; i++)
		memset(calloc(1, 320), 0, 320);
}

__attribute__((noinline)) static void hold(void)
{
	for (int i = 0; i < 100; i++) {
		struct node *n = calloc(1, sizeof *n);
		n->next = list;
		list = n;
	}
	interior = (char *)malloc(200) + 40;
	tls_held = malloc(136);
	pthread_key_create(&key, NULL);
	pthread_setspecific(key, malloc(152));
	/* Held only by a reachable block. */
	void **box = malloc(64);
	memset(box, 0, 64);
	box[3] = malloc(168);
	*(void ***)(void *)&list->pad[8] = box;
}

/* Overwrite the dead part of the stack, where old pointers may linger. */
__attribute__((noinline)) static void clear_stack(void)
{
	volatile char buf[256 << 10];
	memset((char *)buf, 0, sizeof buf);
}

/* fd[0]: never written, so the thread stays; fd[3]: "I hold my block". */
static void *blocked(void *arg)
{
	int *fd = arg;
	void *volatile mine = malloc(88); /* held on this thread's stack only */
	char c = 1;
	if (write(fd[3], &c, 1) != 1 || read(fd[0], &c, 1) < 0)
		return mine;
	return mine;
}

/* process_vm_readv fails with EPERM from now on, as under some container
 * profiles. */
static int refuse_vm_read(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1 /* EPERM */),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof f / sizeof *f, f};
	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static void *short_lived(void *arg)
{
	(void)arg;
	for (int i = 0; i < 3; i++)
		memset(malloc(104), 0, 104);
	return NULL;
}

static int child(const char *name)
{
	note("leak_a", (void *)leak_a);
	note("leak_b", (void *)leak_b);
	static int fd[4];
	pthread_t t;
	char c;
	if (!strcmp(name, "sites-no-vm-read") && refuse_vm_read() != 0)
		return 2;
	if (strncmp(name, "sites", 5) &&
	    (pipe(fd) != 0 || pipe(fd + 2) != 0 || pthread_create(&t, NULL, blocked, fd) != 0 ||
	     read(fd[2], &c, 1) != 1))
		return 1;
	if (!strncmp(name, "sites", 5)) {
		void *volatile on_stack = malloc(184);
		hold();
		leak_b(10);
		leak_a(1000);
		clear_stack();
		note("held", on_stack);
	} else if (!strcmp(name, "fork")) {
		/* The child has one thread: `blocked` is gone there, and so is
		 * what only its stack held. The parent leaves without a report. */
		fflush(stderr);
		pid_t kid = fork();
		if (kid == 0) {
			for (int i = 0; i < 7; i++)
				memset(malloc(56), 0, 56);
			clear_stack();
			exit(0);
		}
		int st;
		waitpid(kid, &st, 0);
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
	} else if (!strcmp(name, "threads")) {
		pthread_t s;
		pthread_create(&s, NULL, short_lived, NULL);
		pthread_join(s, NULL);
		for (int i = 0; i < 5; i++)
			memset(malloc(72), 0, 72);
		clear_stack();
		/* Exit with `blocked` still running. */
	}
	return 0;
}

struct group {
	unsigned long size, count;
	uintptr_t frame0;
};

/* The report's groups, in order; returns how many. */
static int groups(const char *out, struct group *g, int cap)
{
	int n = 0;
	for (const char *p = out; (p = strstr(p, "unreferenced object ")) && n < cap; p++) {
		struct group x = {0, 0, 0};
		const char *s = strstr(p, "(size ");
		if (s)
			x.size = strtoul(s + 6, NULL, 10);
		s = strstr(p, "objects from this stack: ");
		if (s)
			x.count = strtoul(s + 25, NULL, 10);
		s = strstr(p, "backtrace:\n    [<");
		if (s)
			x.frame0 = strtoull(s + 17, NULL, 16);
		g[n++] = x;
	}
	return n;
}

static const struct group *find(const struct group *g, int n, unsigned long size)
{
	for (int i = 0; i < n; i++)
		if (g[i].size == size)
			return &g[i];
	return NULL;
}

static uintptr_t noted_addr(const char *out, const char *k)
{
	char v[64];
	return (uintptr_t)strtoull(noted(out, k, v, sizeof v), NULL, 16);
}

/* frame within the first bytes of function f (the call inside it) */
static int in_fn(uintptr_t frame, uintptr_t f) { return frame > f && frame < f + 512; }

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "child"))
		return child(argv[2]);
	kalloc_lib();
	plan(19);
	static char out[1 << 20];
	struct group g[16];

	int st = run_case("leak:1", "sites", out, sizeof out);
	ok(exited_ok(st), "sites: exits 0 under leak:1");
	int n = groups(out, g, 16);
	const struct group *a = find(g, n, 48), *b = find(g, n, 320);
	ok(n == 2, "sites: exactly two groups reported (got %d): nothing reachable is", n);
	ok(a && a->count >= 990 && a->count <= 1000, "sites: site A's 1000 leaks counted within 1%% (%lu)",
	   a ? a->count : 0);
	ok(b && b->count == 10, "sites: site B's 10 leaks counted (%lu)", b ? b->count : 0);
	ok(n == 2 && g[0].size == 48, "sites: the biggest group comes first");
	ok(a && in_fn(a->frame0, noted_addr(out, "leak_a")) && b && in_fn(b->frame0, noted_addr(out, "leak_b")),
	   "sites: each group's first frame is its call site (malloc and calloc)");
	ok(strstr(out, "kalloc: leak report: ") && !strstr(out, "partial"),
	   "sites: the total is printed and the report is complete (one thread)");
	if (n != 2 || !a || !b)
		diag("child output:\n%.3000s", out);

	st = run_case("leak:1", "sites-no-vm-read", out, sizeof out);
	n = groups(out, g, 16);
	a = find(g, n, 48);
	b = find(g, n, 320);
	ok(exited_ok(st), "sites, process_vm_readv refused: exits 0");
	ok(n == 2 && a && a->count >= 990 && b && b->count == 10,
	   "sites, process_vm_readv refused: the same two groups (globals and TLS read directly)");
	ok(!strstr(out, "partial"), "sites, process_vm_readv refused: complete (no other thread to read)");
	if (n != 2)
		diag("child output:\n%.3000s", out);

	st = run_case(NULL, "sites", out, sizeof out);
	ok(exited_ok(st) && !strstr(out, "unreferenced") && !strstr(out, "leak report"),
	   "sites: no report without leak:1");

	st = run_case("leak:1", "threads", out, sizeof out);
	ok(exited_ok(st), "threads: exits 0 with a thread still running");
	n = groups(out, g, 16);
	const struct group *m = find(g, n, 72), *d = find(g, n, 104);
	ok(m && m->count == 5, "threads: main's 5 leaks reported");
	ok(d && d->count == 3, "threads: the 3 leaks of a thread that ended reported");
	ok(!find(g, n, 88) && n == 2, "threads: the block held on a running thread's stack is not");
	ok(strstr(out, "leak report is partial: 1 other threads still running") != NULL,
	   "threads: the report says it is partial");
	if (n != 2)
		diag("child output:\n%.3000s", out);

	st = run_case("leak:1", "fork", out, sizeof out);
	n = groups(out, g, 16);
	const struct group *k = find(g, n, 56), *h = find(g, n, 88);
	ok(exited_ok(st) && k && k->count == 7, "fork: the child's 7 leaks reported by the child");
	ok(h && h->count == 1 && n == 2,
	   "fork: the block only a thread of the parent held is a leak in the child, nothing else");
	ok(strstr(out, "leak report: ") && !strstr(out, "partial"),
	   "fork: the child's report is complete (its only thread is the one that exits)");
	if (n != 2)
		diag("child output:\n%.3000s", out);
	return tap_failed != 0;
}
