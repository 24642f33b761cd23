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

/* A block of 1 byte (kmalloc-16 since kmalloc-8 went) freed twice. */
static void double_tiny(int m)
{
	void *p = kalloc_malloc(1), *q = kalloc_malloc(1);
	note(p);
	kalloc_free(p);
	kalloc_free(q);
	if (m)
		kalloc_free(p);
}

/* A frees p into its own bin, then B frees p again: B's call must end it. */
static void *free_twice_remote(void *p)
{
	kalloc_free(p);
	return NULL;
}
static void double_cross_thread(int m)
{
	void *p = kalloc_malloc(48);
	note(p);
	kalloc_free(p);
	if (m) {
		pthread_t t;
		pthread_create(&t, NULL, free_twice_remote, p);
		pthread_join(t, NULL);
	}
}

/* The address just past the last object of a slab of class `tail_cls`
 * (slabs are aligned to their size), and `tail_byte` bytes into the tail. */
static unsigned tail_cls;
static size_t tail_byte;
static char *tail_addr(void **block)
{
	const struct ka_class *k = &ka_classes[tail_cls];
	char *p = kalloc_malloc(k->size);
	*block = p;
	char *base = (char *)((uintptr_t)p & ~(uintptr_t)k->slab_mask);
	return base + (size_t)k->objs * k->size + tail_byte;
}
static void free_tail(int m)
{
	void *p;
	char *t = tail_addr(&p);
	note(t);
	kalloc_free(m ? t : p);
}
static void realloc_tail(int m)
{
	void *p;
	char *t = tail_addr(&p);
	note(t);
	p = kalloc_realloc(m ? t : p, 10);
	kalloc_free(p);
}
static void usable_tail(int m)
{
	void *p;
	char *t = tail_addr(&p);
	note(t);
	kalloc_malloc_usable_size(m ? t : p);
	kalloc_free(p);
}

/* One probe of the random test: free `probe_addr`, expected to be reported. */
static void *probe_addr;
static void free_probe(int m)
{
	note(probe_addr);
	if (m)
		kalloc_free(probe_addr);
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
	{double_tiny, "double free of a 1-byte block", "free(): double free of"},
	{double_cross_thread, "A frees, then B frees the same block", "free(): double free of"},
};

/* Run one case and check it as main() does for the table. */
static void check_case(void (*fn)(int), const char *what, const char *expect)
{
	int sig;
	const char *msg = kalloc_line(run(fn, 1, &sig));
	ok(sig == SIGABRT && addr[0] && strstr(msg, expect) && strstr(msg, addr), "%s: SIGABRT, \"%s\" and the address %s",
	   what, expect, addr);
	if (!(sig == SIGABRT && strstr(msg, expect)))
		diag("signal %d, stderr: %s", sig, msg);
	msg = run(fn, 0, &sig);
	ok(sig == 0 && !strstr(msg, "kalloc: "), "%s: the same program without the misuse exits cleanly", what);
}

/* Classes whose slab leaves a tail past its last object. */
static unsigned tail_classes(unsigned *out)
{
	unsigned n = 0;
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		if ((size_t)ka_classes[c].objs * ka_classes[c].size <= ka_classes[c].slab_mask)
			out[n++] = c;
	return n;
}

/*
 * Random addresses inside slabs, against a model of which are live object
 * starts: a live start is freed (and must be accepted: a false report kills
 * this process); any other address is freed in a child, which must be
 * reported and aborted.
 */
#define RLIVE 64
static void random_frees(unsigned long long *s)
{
	void *live[RLIVE];
	size_t size[RLIVE];
	for (int i = 0; i < RLIVE; i++) {
		size[i] = 1 + rnd(s) % 2048;
		live[i] = kalloc_malloc(size[i]);
	}
	int probes = 300, reported = 0, accepted = 0, bad = 0;
	for (int i = 0; i < probes; i++) {
		int k = (int)(rnd(s) % RLIVE);
		const struct ka_class *cl = &ka_classes[ka_size_class[(size[k] + 7) >> 3]];
		char *base = (char *)((uintptr_t)live[k] & ~(uintptr_t)cl->slab_mask);
		size_t off = rnd(s) % (cl->slab_mask + 1);
		if (rnd(s) % 2)
			off -= off % cl->size; /* an object boundary, or the tail's start */
		char *a = base + off;
		int j = -1;
		for (int m = 0; m < RLIVE; m++)
			if (live[m] == a)
				j = m;
		if (j >= 0) {
			kalloc_free(a);
			size[j] = 1 + rnd(s) % 2048;
			live[j] = kalloc_malloc(size[j]);
			accepted++;
			continue;
		}
		probe_addr = a;
		int sig;
		const char *msg = kalloc_line(run(free_probe, 1, &sig));
		if (sig == SIGABRT && strstr(msg, "kalloc: free(): ") && strstr(msg, addr)) {
			reported++;
		} else {
			bad++;
			diag("%p (offset %zu in a %s slab) not reported: signal %d, %s", (void *)a, off, cl->name, sig, msg);
		}
	}
	ok(bad == 0 && reported + accepted == probes,
	   "random frees inside slabs: %d live starts accepted, %d other addresses reported, %d missed", accepted,
	   reported, bad);
	for (int i = 0; i < RLIVE; i++)
		kalloc_free(live[i]);
}

int main(void)
{
	unsigned long seed = test_seed();
	unsigned long long s = seed ? seed : 1;
	kalloc_free(kalloc_malloc(1)); /* initialise: the class table */
	int n = (int)(sizeof cases / sizeof *cases);
	unsigned tails[KA_NR_CLASSES], nt = tail_classes(tails);
	plan(2 * n + 2 * 4 * (int)nt + 1);
	for (int i = 0; i < n; i++)
		check_case(cases[i].fn, cases[i].what, cases[i].expect);
	char what[96];
	for (unsigned i = 0; i < nt; i++) {
		tail_cls = tails[i];
		const char *name = ka_classes[tail_cls].name;
		tail_byte = 0;
		snprintf(what, sizeof what, "free just past the last object of a %s slab", name);
		check_case(free_tail, what, "free(): invalid pointer");
		snprintf(what, sizeof what, "realloc just past the last object of a %s slab", name);
		check_case(realloc_tail, what, "realloc(): invalid pointer");
		snprintf(what, sizeof what, "malloc_usable_size just past the last object of a %s slab", name);
		check_case(usable_tail, what, "malloc_usable_size(): invalid pointer");
		tail_byte = 8;
		snprintf(what, sizeof what, "free inside the tail of a %s slab", name);
		check_case(free_tail, what, "free(): invalid pointer");
	}
	random_frees(&s);
	return 0;
}
