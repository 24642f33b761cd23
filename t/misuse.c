/*
 * t/misuse.c: heap misuse ends the process with SIGABRT and one line that
 * names the function, the problem and the address. Each case runs in a
 * child; the same program without the misuse must exit cleanly, so a false
 * positive fails too.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "tap.h"

static int global_var;
static char addr[32];

/* Run fn(misuse) in a child; return its stderr; *sig = its signal or 0. */
static const char *run(void (*fn)(int), int misuse, int *sig)
{
	static char msg[1024];
	int fd[2];
	if (pipe(fd) != 0)
		return "";
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		close(fd[0]);
		dup2(fd[1], 2);
		ka_report_init(); /* the pipe is now this child's stderr (report.c) */
		fn(misuse);
		_exit(0);
	}
	close(fd[1]);
	size_t n = 0;
	ssize_t r;
	while (n < sizeof msg - 1 && (r = read(fd[0], msg + n, sizeof msg - 1 - n)) > 0)
		n += (size_t)r;
	msg[n] = 0;
	close(fd[0]);
	int st;
	waitpid(pid, &st, 0);
	*sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
	if (!WIFSIGNALED(st) && WEXITSTATUS(st) != 0)
		*sig = -1;
	return msg;
}

/* The child tells the parent, on the same pipe, which address to expect. */
static void note(const void *p)
{
	char line[64];
	int n = snprintf(line, sizeof line, "addr=%p\n", p);
	if (write(2, line, (size_t)n) != n)
		_exit(3);
}

/* The address the child noted, and the kalloc line in its output. */
static const char *kalloc_line(const char *msg)
{
	const char *a = strstr(msg, "addr=");
	addr[0] = 0;
	if (a)
		sscanf(a + 5, "%31s", addr);
	const char *k = strstr(msg, "kalloc: ");
	return k ? k : "";
}

static void free_stack(int m)
{
	int x;
	note(&x);
	if (m)
		kalloc_free(&x);
}
static void free_global(int m)
{
	note(&global_var);
	if (m)
		kalloc_free(&global_var);
}
static void free_middle_small(int m)
{
	char *p = kalloc_malloc(64);
	note(p + 16);
	kalloc_free(m ? p + 16 : p);
}
static void free_middle_large(int m)
{
	char *p = kalloc_malloc(64 << 10);
	note(p + 4096);
	kalloc_free(m ? p + 4096 : p);
}
static void double_small(int m)
{
	void *p = kalloc_malloc(64), *q = kalloc_malloc(64);
	note(p);
	kalloc_free(p);
	kalloc_free(q);
	if (m)
		kalloc_free(p);
}
static void double_small_late(int m)
{
	void *p = kalloc_malloc(48);
	note(p);
	kalloc_free(p);
	for (int i = 0; i < 2000; i++) /* p leaves the thread cache for its slab */
		kalloc_free(kalloc_malloc(48));
	void *hold[600];
	for (int i = 0; i < 600; i++)
		hold[i] = kalloc_malloc(48);
	for (int i = 0; i < 600; i++)
		kalloc_free(hold[i]);
	if (m)
		kalloc_free(p);
}
static void *free_it(void *p)
{
	kalloc_free(p);
	return NULL;
}
static void double_remote(int m)
{
	void *p = kalloc_malloc(96);
	note(p);
	pthread_t t;
	pthread_create(&t, NULL, free_it, p);
	pthread_join(t, NULL);
	if (m)
		kalloc_free(p);
}
static void double_large(int m)
{
	void *p = kalloc_malloc(64 << 10);
	note(p);
	kalloc_free(p);
	if (m)
		kalloc_free(p);
}
static void double_huge(int m)
{
	void *p = kalloc_malloc(8 << 20);
	note(p);
	kalloc_free(p);
	if (m)
		kalloc_free(p);
}
static void realloc_freed(int m)
{
	void *p = kalloc_malloc(200), *q = kalloc_malloc(200);
	note(p);
	kalloc_free(p);
	if (m)
		p = kalloc_realloc(p, 400);
	kalloc_free(q);
}
static void usable_foreign(int m)
{
	int x;
	note(&x);
	if (m)
		kalloc_malloc_usable_size(&x);
}

static const struct {
	void (*fn)(int);
	const char *what, *expect;
} cases[] = {
	{free_stack, "free of a stack address", "free(): invalid pointer"},
	{free_global, "free of a global", "free(): invalid pointer"},
	{free_middle_small, "free of a pointer inside a small block", "free(): invalid pointer"},
	{free_middle_large, "free of a pointer inside a large block", "free(): invalid pointer"},
	{double_small, "double free of a small block", "free(): double free of"},
	{double_small_late, "double free of a small block already back in its slab", "free(): double free of"},
	{double_remote, "double free after a cross-thread free", "free(): double free of"},
	{double_large, "double free of a large block", "free(): double free of"},
	{double_huge, "double free of a huge block", "free(): double free of"},
	{realloc_freed, "realloc of a freed block", "realloc(): "},
	{usable_foreign, "malloc_usable_size of a foreign pointer", "malloc_usable_size(): invalid pointer"},
};

int main(void)
{
	int n = (int)(sizeof cases / sizeof *cases);
	plan(2 * n);
	for (int i = 0; i < n; i++) {
		int sig;
		const char *msg = kalloc_line(run(cases[i].fn, 1, &sig));
		ok(sig == SIGABRT && addr[0] && strstr(msg, cases[i].expect) && strstr(msg, addr),
		   "%s: SIGABRT, \"%s\" and the address %s", cases[i].what, cases[i].expect, addr);
		if (!(sig == SIGABRT && strstr(msg, cases[i].expect)))
			diag("signal %d, stderr: %s", sig, msg);
		msg = run(cases[i].fn, 0, &sig);
		ok(sig == 0 && !strstr(msg, "kalloc: "), "%s: the same program without the misuse exits cleanly",
		   cases[i].what);
	}
	return 0;
}
