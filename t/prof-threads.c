/*
 * t/prof-threads.c: prof:1 with threads (also run under TSan). The test
 * re-executes itself with KALLOC_CONF set (options are read at start-up).
 * Threads allocate blocks of random sizes at a small prof_sample, so that
 * many are sampled, hand half of them to the next thread, which frees
 * them (remote frees of sampled blocks), while one thread dumps the
 * profile over and over and the main thread forks: the fork child dumps
 * its own profile. At the end every block is freed, and the profile's
 * in-use count must be 0 while its allocation count is not.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "tap.h"

#define THREADS 4
#define ROUNDS 300
#define BATCH 32

static char dir[] = "/tmp/kalloc-prof-threads-XXXXXX";
static unsigned long base_seed;

/* One mailbox per thread: blocks the previous thread sends it to free. */
static struct mailbox {
	pthread_mutex_t lock;
	void *blocks[BATCH * ROUNDS];
	size_t n;
} box[THREADS];

static int dumps_failed, stop;

static void *worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	unsigned long long s = base_seed + (unsigned long long)id * 7919;
	struct mailbox *next = &box[(id + 1) % THREADS], *mine = &box[id];
	void *own[BATCH];
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < BATCH; i++) {
			size_t n = rnd(&s) % 8 ? 16 + rnd(&s) % 2000 : 9000 + rnd(&s) % 200000;
			own[i] = rnd(&s) % 4 ? kalloc_malloc(n) : kalloc_calloc(1, n);
			memset(own[i], id, n < 64 ? n : 64);
		}
		pthread_mutex_lock(&next->lock);
		for (int i = 0; i < BATCH / 2; i++)
			next->blocks[next->n++] = own[i];
		pthread_mutex_unlock(&next->lock);
		for (int i = BATCH / 2; i < BATCH; i++)
			kalloc_free(own[i]);
		pthread_mutex_lock(&mine->lock);
		while (mine->n)
			kalloc_free(mine->blocks[--mine->n]);
		pthread_mutex_unlock(&mine->lock);
	}
	return NULL;
}

static void *dumper(void *arg)
{
	(void)arg;
	char path[256];
	snprintf(path, sizeof path, "%s/running.heap", dir);
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE))
		if (kalloc_prof_dump(path) != 0)
			__atomic_add_fetch(&dumps_failed, 1, __ATOMIC_RELAXED);
	return NULL;
}

/* The header's counts, or -1. */
static int header(const char *path, long long c[4])
{
	FILE *f = fopen(path, "r");
	int n = f ? fscanf(f, "heap profile: %lld: %lld [%lld: %lld] @ heap_v2/", &c[0], &c[1], &c[2], &c[3]) : 0;
	if (f)
		fclose(f);
	return n == 4 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (!getenv("KALLOC_PROF_THREADS_DIR")) {
		if (!mkdtemp(dir))
			plan_skip_all("no temporary directory");
		char conf[256];
		snprintf(conf, sizeof conf, "prof:1,prof_sample:256,prof_file:%s/t.%%p.heap", dir);
		setenv("KALLOC_CONF", conf, 1);
		setenv("KALLOC_PROF_THREADS_DIR", dir, 1);
		execv("/proc/self/exe", argv);
		plan_skip_all("cannot re-execute");
	}
	(void)argc;
	snprintf(dir, sizeof dir, "%s", getenv("KALLOC_PROF_THREADS_DIR"));
	base_seed = test_seed();
	ok(ka_prof_on, "prof:1 is on (KALLOC_CONF=%s)", getenv("KALLOC_CONF"));
	for (int i = 0; i < THREADS; i++)
		pthread_mutex_init(&box[i].lock, NULL);
	pthread_t t[THREADS], d;
	pthread_create(&d, NULL, dumper, NULL);
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);

	/* A fork while the others run: the child's profile is its own. */
	void *mine = kalloc_malloc(100000);
	fflush(stdout);
	pid_t kid = fork();
	if (kid == 0) {
		_exit(kalloc_prof_dump(NULL) == 0 ? 0 : 1);
	}
	int st = -1;
	waitpid(kid, &st, 0);
	char path[256];
	long long c[4];
	snprintf(path, sizeof path, "%s/t.%d.heap", dir, (int)kid);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0 && header(path, c) == 0 && c[0] >= 1,
	   "a fork child dumps its own profile (t.<its pid>.heap) while threads run");

	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	pthread_join(d, NULL);
	for (int i = 0; i < THREADS; i++)
		while (box[i].n)
			kalloc_free(box[i].blocks[--box[i].n]);
	kalloc_free(mine);
	ok(dumps_failed == 0, "every dump made while threads allocated succeeded");
	snprintf(path, sizeof path, "%s/end.heap", dir);
	ok(kalloc_prof_dump(path) == 0 && header(path, c) == 0, "the final profile parses");
	ok(c[0] == 0 && c[1] == 0 && c[2] > 1000,
	   "every sampled block freed (some on other threads) left the profile: %lld in use, %lld sampled", c[0], c[2]);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	/* The exit dump would land in the removed directory: nothing to check there. */
	ka_prof_on = false;
	return done_testing();
}
