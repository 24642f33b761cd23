/*
 * t/remote.c: remote frees batched by owner (tcache.c: outboxes, inboxes).
 *  - a model test: producers hand objects of random sizes to consumers on
 *    other threads, which free them; no object is handed out twice while
 *    live, and at the end nothing is lost (every cache's active count back
 *    to what it was, every validate passes);
 *  - a thread that exits with objects in its outbox sends them on;
 *  - frees into the slabs of an owner that has exited adopt the slabs;
 *  - an owner that stops allocating while another thread frees into it
 *    keeps a bounded inbox: an empty one, as it never drained;
 *  - an inbox's bound, 0 at first, grows at each drain that follows a
 *    refused post (to KA_INBOX_MIN_BYTES, then doubling up to
 *    KA_INBOX_MAX_BYTES), and halves back at GC passes without one;
 *  - with more live caches, it grows only to KA_INBOX_BUDGET shared by
 *    them;
 *  - fork while another thread has objects in its outbox;
 *  - a remote free stays in the freer's bin when the freer allocates
 *    that class itself and its last tick was at least a quarter remote
 *    frees (posted, or kept of a whole-line class: a kept block that
 *    shares lines, freed again and again, does not hold the gate open),
 *    and goes to the owner's outbox otherwise (a thread that only frees
 *    it, or one with few remote frees), and stops when its bin of the
 *    class only overflows for a GC pass; an owner that exited has its
 *    slabs adopted all the same.
 * Also run under TSan.
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "../lib/tcache.h"
#include "tap.h"

static size_t active(unsigned cls)
{
	struct ka_cache_info in;
	ka_cache_info(&ka_kmalloc[cls], &in);
	return in.active_objs;
}

static size_t active_all(void)
{
	size_t n = 0;
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		n += active(c);
	return n;
}

static void validate_all(void)
{
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		ka_slab_validate(&ka_kmalloc[c]);
	ka_tcache_validate();
}

/* A block's stamp: its address and size, checked when it is freed. */
static void stamp(uint64_t *p, size_t n)
{
	p[0] = (uintptr_t)p ^ n;
	p[1] = n;
}
static int stamp_bad(const uint64_t *p)
{
	return p[0] != ((uintptr_t)p ^ p[1]);
}

/* Add a thread's count of bad blocks to a total, under the model's lock. */
static pthread_mutex_t count_mu = PTHREAD_MUTEX_INITIALIZER;
static void add_bad(int *total, int bad)
{
	pthread_mutex_lock(&count_mu);
	*total += bad;
	pthread_mutex_unlock(&count_mu);
}

/* ------------------------------------------------------------ the model */
/* Live objects: an open-addressing set of addresses under one lock. */
#define LIVE_CAP (1 << 16)
static uintptr_t live_set[LIVE_CAP];
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static int dup_handouts, lost, bad_contents;

static size_t slot_of(uintptr_t a)
{
	return (size_t)((a >> 4) * 0x9e3779b97f4a7c15ull >> 48) & (LIVE_CAP - 1);
}
static void live_add(void *p)
{
	uintptr_t a = (uintptr_t)p;
	pthread_mutex_lock(&live_mu);
	size_t i = slot_of(a);
	while (live_set[i] && live_set[i] != a)
		i = (i + 1) & (LIVE_CAP - 1);
	dup_handouts += live_set[i] == a;
	live_set[i] = a;
	pthread_mutex_unlock(&live_mu);
}
static void live_del(void *p)
{
	uintptr_t a = (uintptr_t)p;
	pthread_mutex_lock(&live_mu);
	size_t i = slot_of(a);
	while (live_set[i] && live_set[i] != a)
		i = (i + 1) & (LIVE_CAP - 1);
	if (live_set[i] != a) {
		lost++;
	} else {
		/* Backward-shift deletion keeps every probe chain whole. */
		size_t j = i;
		for (;;) {
			live_set[i] = 0;
			for (;;) {
				j = (j + 1) & (LIVE_CAP - 1);
				if (!live_set[j])
					goto out;
				size_t h = slot_of(live_set[j]);
				if (i <= j ? (h <= i || h > j) : (h <= i && h > j))
					break;
			}
			live_set[i] = live_set[j];
			i = j;
		}
	}
out:
	pthread_mutex_unlock(&live_mu);
}

/* Producer p hands to consumer (p + 1) % N through a ring. */
#define NTHREADS 4
#define QLEN 256
struct queue {
	uint64_t *slot[QLEN];
	long head __attribute__((aligned(64)));
	long tail __attribute__((aligned(64)));
};
static struct queue queues[NTHREADS];
static long model_ops = 40000;
static unsigned long long model_seed;

struct model_arg {
	int id;
};

static void *model_thread(void *arg)
{
	int id = ((struct model_arg *)arg)->id;
	struct queue *out = &queues[id], *in = &queues[(id + NTHREADS - 1) % NTHREADS];
	unsigned long long s = model_seed * 2654435761u + (unsigned)id + 1;
	long sent = 0, got = 0;
	int bad = 0;
	while (sent < model_ops || got < model_ops) {
		if (sent < model_ops && sent - __atomic_load_n(&out->tail, __ATOMIC_ACQUIRE) < QLEN) {
			size_t n = 16 + rnd(&s) % (rnd(&s) % 8 ? 512 : 8000);
			uint64_t *p = kalloc_malloc(n);
			live_add(p);
			stamp(p, n);
			out->slot[sent % QLEN] = p;
			__atomic_store_n(&out->head, ++sent, __ATOMIC_RELEASE);
		}
		if (got < __atomic_load_n(&in->head, __ATOMIC_ACQUIRE)) {
			uint64_t *p = in->slot[got % QLEN];
			__atomic_store_n(&in->tail, ++got, __ATOMIC_RELEASE);
			bad += stamp_bad(p);
			live_del(p);
			kalloc_free(p);
		}
		if (rnd(&s) % 64 == 0) { /* some local traffic too */
			void *q = kalloc_malloc(rnd(&s) % 300);
			live_add(q);
			live_del(q);
			kalloc_free(q);
		}
	}
	add_bad(&bad_contents, bad);
	return NULL;
}

static void model_test(void)
{
	kalloc_malloc_trim(0);
	size_t before = active_all();
	pthread_t t[NTHREADS];
	struct model_arg a[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		a[i].id = i;
		pthread_create(&t[i], NULL, model_thread, &a[i]);
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	ok(dup_handouts == 0 && lost == 0 && bad_contents == 0,
	   "model: %ld objects each from %d threads freed on another thread: none handed out twice while live, "
	   "none lost, contents intact (%d, %d, %d)",
	   model_ops, NTHREADS, dup_handouts, lost, bad_contents);
	kalloc_malloc_trim(0);
	validate_all();
	ok(active_all() == before, "model: after the threads exit and trim, every object is back (%zu active, %zu before)",
	   active_all(), before);
}

/* -------------------------------------------- exit with a full outbox */
#define FEW 10
static void *objs[16384];
static int nobjs;

static void *free_all(void *arg)
{
	(void)arg;
	for (int i = 0; i < nobjs; i++)
		kalloc_free(objs[i]);
	return NULL;
}

static void exit_with_outbox(void)
{
	unsigned cls = ka_size_class[(200 + 7) >> 3];
	/* This thread's inbox takes posts once it has drained after a refused
	 * one: an outbox's worth freed by another thread, then a drain. */
	nobjs = 64;
	for (int i = 0; i < nobjs; i++)
		objs[i] = kalloc_malloc(200);
	pthread_t t;
	pthread_create(&t, NULL, free_all, NULL);
	pthread_join(t, NULL);
	ka_tcache_flush_all();
	nobjs = FEW; /* fewer than an outbox sends on its own */
	for (int i = 0; i < nobjs; i++)
		objs[i] = kalloc_malloc(200);
	pthread_create(&t, NULL, free_all, NULL);
	pthread_join(t, NULL);
	/* The exiting thread sent them to this thread's inbox, and trim takes
	 * them back to the slabs: nothing stays behind. */
	size_t queued = ka_tcache_inbox_bytes(ka_tc), want = (size_t)FEW * ka_classes[cls].size;
	want = (want + (1u << KA_INBOX_UNIT_SHIFT) - 1) & ~(((size_t)1 << KA_INBOX_UNIT_SHIFT) - 1); /* one post, rounded up */
	validate_all();
	kalloc_malloc_trim(0);
	ok(queued == want && active(cls) == 0,
	   "a thread that exits with %d objects in its outbox sends them to their owner's inbox (%zu of %zu bytes), "
	   "and trim gives them back to the slabs (%zu still active)",
	   FEW, queued, want, active(cls));
}

/* ------------------------------------------------- an owner that exited */
static void *alloc_all(void *arg)
{
	(void)arg;
	for (int i = 0; i < nobjs; i++)
		objs[i] = kalloc_malloc(96);
	return NULL;
}

static void free_into_exited_owner(void)
{
	nobjs = 100;
	pthread_t t;
	pthread_create(&t, NULL, alloc_all, NULL);
	pthread_join(t, NULL);
	int adopted = 0;
	for (int i = 0; i < nobjs; i++) {
		kalloc_free(objs[i]);
		struct ka_slab *s = ka_slab_of(objs[i]);
		adopted += s && s->owner == ka_tc->id8 >> 8;
	}
	ok(adopted == nobjs, "frees into the slabs of an owner that exited adopt them (%d of %d now ours)", adopted,
	   nobjs);
	validate_all();
}

/* ------------------------------------------- an owner that stops allocating */
static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;
static int idle_stage, idle_alloc64;
static struct ka_tcache *idle_tc;

/* Stage 1: 16384 blocks of 1 KiB allocated; with idle_alloc64, stage 3 asks
 * for CLOSE_OBJS blocks of 64 B (stage 4: done); stage 2 ends it. */
#define CLOSE_OBJS (32 * (KA_INBOX_SLOTS + 1)) /* a full outbox for each inbox word, and one more */
static void *idle_owner(void *arg)
{
	(void)arg;
	nobjs = 16384;
	for (int i = 0; i < nobjs; i++)
		objs[i] = kalloc_malloc(1024);
	pthread_mutex_lock(&idle_mu);
	idle_tc = ka_tc;
	idle_stage = 1;
	pthread_cond_broadcast(&idle_cv);
	while (idle_stage != 2) {
		if (idle_stage == 3) {
			nobjs = CLOSE_OBJS;
			for (int i = 0; i < nobjs; i++)
				objs[i] = kalloc_malloc(64);
			idle_stage = 4;
			pthread_cond_broadcast(&idle_cv);
		}
		pthread_cond_wait(&idle_cv, &idle_mu);
	}
	pthread_mutex_unlock(&idle_mu);
	return NULL;
}

/* Start the idle owner and wait until it holds its 16384 blocks. */
static pthread_t start_idle_owner(void)
{
	pthread_t t;
	pthread_mutex_lock(&idle_mu);
	idle_stage = 0;
	pthread_mutex_unlock(&idle_mu);
	pthread_create(&t, NULL, idle_owner, NULL);
	pthread_mutex_lock(&idle_mu);
	while (idle_stage != 1)
		pthread_cond_wait(&idle_cv, &idle_mu);
	pthread_mutex_unlock(&idle_mu);
	return t;
}

static void idle_owner_test(void)
{
	pthread_t t = start_idle_owner();
	/* 16 MiB freed into an owner that makes no call meanwhile; then the
	 * objects its inbox holds are counted by walking it (it is idle, and
	 * this thread is the only one that posts). */
	for (int i = 0; i < nobjs; i++)
		kalloc_free(objs[i]);
	size_t queued = 0;
	for (unsigned i = 0; i < KA_INBOX_SLOTS; i++) {
		uintptr_t v = __atomic_load_n(&idle_tc->inbox[i], __ATOMIC_ACQUIRE);
		for (void *o = (void *)KA_INBOX_PTR(v); o; o = ka_link_decode(*(void **)o, o))
			queued += 1024;
	}
	size_t held = ka_tcache_held_bytes();
	ok(queued == 0 && held <= ((size_t)2 << 20),
	   "an owner that stops allocating before it ever drained: its inbox holds %zu KiB of the 16 MiB freed "
	   "into it, caches hold %zu KiB",
	   queued >> 10, held >> 10);
	pthread_mutex_lock(&idle_mu);
	idle_stage = 2;
	pthread_cond_broadcast(&idle_cv);
	pthread_mutex_unlock(&idle_mu);
	pthread_join(t, NULL);
	validate_all();
}

/* ------------------------------------------------ the inbox's bound */
/*
 * An owner thread that runs one command at a time: allocate objs[] (BOUND_OBJS
 * blocks of 1 KiB, more than the largest bound, with no housekeeping tick,
 * whose GC pass would find the inbox undrained), drain (ka_tcache_flush_all:
 * its inbox into its bins, the bins back to the slabs), or allocate and free
 * 128 MiB of its own (at least 128 ticks: 16 GC passes) with nobody posting
 * to it.
 */
#define BOUND_OBJS 6144
enum { CMD_NONE, CMD_ALLOC, CMD_DRAIN, CMD_SPIN, CMD_EXIT };
static pthread_mutex_t cmd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cmd_cv = PTHREAD_COND_INITIALIZER;
static int cmd;
static struct ka_tcache *cmd_tc;

static void *cmd_owner(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&cmd_mu);
	for (;;) {
		while (cmd == CMD_NONE)
			pthread_cond_wait(&cmd_cv, &cmd_mu);
		if (cmd == CMD_ALLOC) {
			ka_tls.tick = INT64_MAX;
			for (int i = 0; i < BOUND_OBJS; i++)
				objs[i] = kalloc_malloc(1024);
			ka_tls.tick = KA_TICK_BYTES;
			cmd_tc = ka_tc;
		} else if (cmd == CMD_DRAIN) {
			ka_tcache_flush_all();
		} else if (cmd == CMD_SPIN) {
			for (int i = 0; i < 131072; i++)
				kalloc_free(kalloc_malloc(1024));
		}
		int done = cmd == CMD_EXIT;
		cmd = CMD_NONE;
		pthread_cond_broadcast(&cmd_cv);
		if (done)
			break;
	}
	pthread_mutex_unlock(&cmd_mu);
	return NULL;
}

static void run_cmd(int c)
{
	pthread_mutex_lock(&cmd_mu);
	cmd = c;
	pthread_cond_broadcast(&cmd_cv);
	while (cmd != CMD_NONE)
		pthread_cond_wait(&cmd_cv, &cmd_mu);
	pthread_mutex_unlock(&cmd_mu);
}

/* A thread with a live cache, from the barrier's first wait to its second. */
static pthread_barrier_t live_bar;

static void *live_cache(void *arg)
{
	(void)arg;
	kalloc_free(kalloc_malloc(16));
	pthread_barrier_wait(&live_bar);
	pthread_barrier_wait(&live_bar);
	return NULL;
}

/* Each round as in inbox_bound_test; the bound it stops at. */
static size_t grow_bound(size_t *over)
{
	size_t bound = __atomic_load_n(&cmd_tc->inbox_max, __ATOMIC_RELAXED);
	for (int r = 0; r < 10; r++) {
		run_cmd(CMD_ALLOC);
		for (int i = 0; i < BOUND_OBJS; i++)
			kalloc_free(objs[i]);
		*over += ka_tcache_inbox_bytes(cmd_tc) > bound;
		run_cmd(CMD_DRAIN);
		bound = __atomic_load_n(&cmd_tc->inbox_max, __ATOMIC_RELAXED);
	}
	return bound;
}

/* With this thread, cmd_owner and 10 more live caches, the bound stops at
 * KA_INBOX_BUDGET / 12 (1 MiB, not KA_INBOX_MAX_BYTES); with the 10 gone,
 * it grows on to KA_INBOX_MAX_BYTES. */
static void inbox_budget_test(void)
{
	enum { MORE = 10 };
	pthread_t t[MORE];
	pthread_barrier_init(&live_bar, NULL, MORE + 1);
	for (int i = 0; i < MORE; i++)
		pthread_create(&t[i], NULL, live_cache, NULL);
	pthread_barrier_wait(&live_bar); /* every one has its cache */
	size_t over = 0, want = KA_INBOX_BUDGET / (MORE + 2);
	size_t shared = grow_bound(&over);
	pthread_barrier_wait(&live_bar);
	for (int i = 0; i < MORE; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&live_bar);
	size_t alone = grow_bound(&over);
	ok(shared == want && alone == KA_INBOX_MAX_BYTES && over == 0,
	   "with %d live caches an inbox's bound grows to %zu KiB (want %zu), with 2 to %zu KiB (want %zu); "
	   "%zu inboxes past their bound", MORE + 2, shared >> 10, want >> 10, alone >> 10, KA_INBOX_MAX_BYTES >> 10, over);
}

static void inbox_bound_test(void)
{
	pthread_t t;
	pthread_create(&t, NULL, cmd_owner, NULL);
	/* Each round sends the owner 6 MiB, past its bound, then lets it drain:
	 * the refused posts raise the bound at that drain. */
	size_t bound = 0, grew = 0, rounds = 0, over = 0;
	while (rounds < 10) {
		run_cmd(CMD_ALLOC);
		for (int i = 0; i < BOUND_OBJS; i++)
			kalloc_free(objs[i]);
		over += ka_tcache_inbox_bytes(cmd_tc) > bound;
		run_cmd(CMD_DRAIN);
		rounds++;
		size_t want = !bound ? KA_INBOX_MIN_BYTES : bound * 2 < KA_INBOX_MAX_BYTES ? bound * 2 : KA_INBOX_MAX_BYTES;
		size_t now = __atomic_load_n(&cmd_tc->inbox_max, __ATOMIC_RELAXED);
		if (now != want)
			break;
		grew += now > bound;
		bound = now;
	}
	ok(rounds == 10 && over == 0 && bound == KA_INBOX_MAX_BYTES && grew == 7,
	   "an inbox's bound grows at each drain after a refused post, from 0 to %zu KiB, doubling to %zu KiB "
	   "(%zu KiB after %zu of 10 rounds, %zu raises, %zu inboxes past their bound)",
	   KA_INBOX_MIN_BYTES >> 10, KA_INBOX_MAX_BYTES >> 10, bound >> 10, rounds, grew, over);
	/* Nothing posted while the owner allocates on: its GC passes halve the
	 * bound back to the start. */
	run_cmd(CMD_SPIN);
	size_t now = __atomic_load_n(&cmd_tc->inbox_max, __ATOMIC_RELAXED);
	ok(now == KA_INBOX_MIN_BYTES, "an inbox unused for 16 GC passes is back at its least grown bound (%zu KiB, want %zu)",
	   now >> 10, KA_INBOX_MIN_BYTES >> 10);
	inbox_budget_test();
	run_cmd(CMD_EXIT);
	pthread_join(t, NULL);
	kalloc_malloc_trim(0);
	validate_all();
}

/* ------------------------------------------------ fork with outboxes full */
static pthread_mutex_t fork_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fork_cv = PTHREAD_COND_INITIALIZER;
static int fork_stage;

static void *hold_outbox(void *arg)
{
	(void)arg;
	for (int i = 0; i < FEW; i++)
		kalloc_free(objs[i]); /* owned by the main thread: into the outbox */
	void *own[200];
	for (int i = 0; i < 200; i++)
		own[i] = kalloc_malloc(48);
	for (int i = 0; i < 200; i++)
		objs[100 + i] = own[i]; /* the child frees these into an abandoned cache's slabs */
	pthread_mutex_lock(&fork_mu);
	fork_stage = 1;
	pthread_cond_broadcast(&fork_cv);
	while (fork_stage != 2)
		pthread_cond_wait(&fork_cv, &fork_mu);
	pthread_mutex_unlock(&fork_mu);
	for (int i = 0; i < 200; i++)
		kalloc_free(own[i]);
	return NULL;
}

static void fork_test(void)
{
	for (int i = 0; i < FEW; i++)
		objs[i] = kalloc_malloc(320);
	pthread_t t;
	pthread_create(&t, NULL, hold_outbox, NULL);
	pthread_mutex_lock(&fork_mu);
	while (fork_stage != 1)
		pthread_cond_wait(&fork_cv, &fork_mu);
	pthread_mutex_unlock(&fork_mu);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(20);
		unsigned long long s = 7;
		void *held[256] = {0};
		for (int i = 0; i < 20000; i++) {
			int k = (int)(rnd(&s) % 256);
			kalloc_free(held[k]);
			held[k] = kalloc_malloc(rnd(&s) % 3000);
		}
		for (int k = 0; k < 256; k++)
			kalloc_free(held[k]);
		for (int i = 0; i < 200; i++)
			kalloc_free(objs[100 + i]);
		validate_all();
		ka_buddy_validate();
		_exit(0);
	}
	int st = -1;
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	   "fork while another thread holds objects in its outbox: the child allocates, frees into the other "
	   "thread's slabs and validates (status %d)",
	   st);
	pthread_mutex_lock(&fork_mu);
	fork_stage = 2;
	pthread_cond_broadcast(&fork_cv);
	pthread_mutex_unlock(&fork_mu);
	pthread_join(t, NULL);
	validate_all();
}

/* ------------------------------------ an owner that closes during a post */
/*
 * Posts take the owner's inbox words in turn, so the post after one to
 * each word links its chain's tail to the first post's chain. The hook
 * runs inside that post, after the link and before the CAS: it takes every
 * word's chain and closes the inbox, as an exiting owner does. The CAS then
 * fails and the post, finding its word closed, frees its own 32 objects to
 * the slabs, and must not follow its tail into the chain the owner took.
 */
static int hook_calls;
static uintptr_t taken[KA_INBOX_SLOTS];
static void close_inbox_hook(struct ka_tcache *to)
{
	if (++hook_calls == KA_INBOX_SLOTS + 1)
		for (unsigned i = 0; i < KA_INBOX_SLOTS; i++)
			taken[i] = __atomic_exchange_n(&to->inbox[i], KA_INBOX_CLOSED, __ATOMIC_ACQ_REL);
}

static void close_during_post(void)
{
	unsigned cls = ka_size_class[(64 + 7) >> 3];
	pthread_t t = start_idle_owner(); /* its 1 KiB blocks are not needed here */
	/* 64 blocks of 64 B from the idle owner's slabs: it allocates them now. */
	for (int i = 0; i < nobjs; i++)
		kalloc_free(objs[i]);
	kalloc_malloc_trim(0);
	idle_alloc64 = 1;
	pthread_mutex_lock(&idle_mu);
	idle_stage = 3;
	pthread_cond_broadcast(&idle_cv);
	while (idle_stage != 4)
		pthread_cond_wait(&idle_cv, &idle_mu);
	pthread_mutex_unlock(&idle_mu);
	size_t before = active(cls);
	/* No housekeeping tick meanwhile: it would send the outbox early. */
	ka_tls.tick = INT64_MAX;
	ka_tcache_post_hook = close_inbox_hook;
	ka_tc->posts = 0; /* the first post goes to inbox[0], and so does the hooked one */
	for (int i = 0; i < CLOSE_OBJS; i++) /* a full outbox, so a post, every 32 */
		kalloc_free(objs[i]);
	ka_tcache_post_hook = NULL;
	ka_tls.tick = KA_TICK_BYTES;
	size_t after = active(cls);
	ok(hook_calls == KA_INBOX_SLOTS + 1 && taken[0] != 0 && after == before - 32,
	   "an owner that closes its inbox during a post: the post frees its own 32 objects and none of the "
	   "chain the owner took (%zu active before, %zu after, %zu expected)",
	   before, after, before - 32);
	/* Give the taken chain back for the owner to drain at its exit. */
	for (unsigned i = 0; i < KA_INBOX_SLOTS; i++)
		__atomic_store_n(&idle_tc->inbox[i], taken[i], __ATOMIC_RELEASE);
	pthread_mutex_lock(&idle_mu);
	idle_stage = 2;
	pthread_cond_broadcast(&idle_cv);
	pthread_mutex_unlock(&idle_mu);
	pthread_join(t, NULL);
	idle_alloc64 = 0;
	kalloc_malloc_trim(0);
	validate_all();
}

/* ------------------------------------------- owners that come and go */
/*
 * Waves of short threads share a pool: each frees what earlier threads
 * left there (their slabs' owners live, exiting or gone) and leaves half
 * of its own blocks for later ones, so posts race with each other and with
 * owners closing their inboxes. Every block carries a pattern checked at
 * its free; the end state must validate and give everything back.
 */
#define POOL 512
static uint64_t *pool[POOL];
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static int churn_bad;

static void *churn_thread(void *arg)
{
	unsigned long long s = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + model_seed + 1;
	uint64_t *mine[64];
	int bad = 0;
	for (int i = 0; i < 64; i++) {
		size_t n = 16 + rnd(&s) % 600;
		mine[i] = kalloc_malloc(n);
		stamp(mine[i], n);
	}
	for (int i = 0; i < 64; i++) {
		int k = (int)(rnd(&s) % POOL);
		pthread_mutex_lock(&pool_mu);
		uint64_t *old = pool[k];
		pool[k] = i % 2 ? mine[i] : NULL;
		pthread_mutex_unlock(&pool_mu);
		if (old) {
			bad += stamp_bad(old);
			kalloc_free(old);
		}
		if (i % 2 == 0)
			kalloc_free(mine[i]);
	}
	add_bad(&churn_bad, bad);
	return NULL;
}

static void churn_test(void)
{
	kalloc_malloc_trim(0);
	size_t before = active_all();
	int waves = 600, per = 4;
	for (int w = 0; w < waves; w++) {
		pthread_t t[4];
		for (int i = 0; i < per; i++)
			pthread_create(&t[i], NULL, churn_thread, (void *)(uintptr_t)(w * per + i));
		for (int i = 0; i < per; i++)
			pthread_join(t[i], NULL);
	}
	for (int k = 0; k < POOL; k++) {
		if (pool[k])
			churn_bad += stamp_bad(pool[k]);
		kalloc_free(pool[k]);
		pool[k] = NULL;
	}
	kalloc_malloc_trim(0);
	validate_all();
	ok(churn_bad == 0 && active_all() == before,
	   "%d short threads freeing each other's blocks: contents intact (%d bad), all back (%zu active, %zu before)",
	   waves * per, churn_bad, active_all(), before);
}

/* ------------------------------------- remote frees kept by the freer */
#define KEEP_N 16
/* Remote frees of 128 B (and 256 B) in one tick that make a thread keep
 * them from the next: more than a quarter of the tick (tcache.c,
 * KEEP_BYTES), so that the few another thread's refills leave in this
 * thread's own slabs do not fall short. */
#define BULK128 3000
#define BULK256 1500
#define ADOPT_N 100
#define CYCLE96 4000 /* 375 KiB of remote frees of one 96 B block */
static pthread_barrier_t keep_bar, consumer_bar;
static unsigned fresh_kept;
static void *bulk128[BULK128], *bulk128b[BULK128], *bulk256[BULK256], *adopt128[ADOPT_N];

static void *keep_owner(void *arg)
{
	(void)arg;
	for (int i = 0; i < KEEP_N; i++) {
		objs[i] = kalloc_malloc(128);
		objs[KEEP_N + i] = kalloc_malloc(96);
	}
	for (int i = 0; i < BULK128; i++) {
		bulk128[i] = kalloc_malloc(128);
		bulk128b[i] = kalloc_malloc(128);
	}
	for (int i = 0; i < BULK256; i++)
		bulk256[i] = kalloc_malloc(256);
	for (int i = 0; i < ADOPT_N; i++)
		adopt128[i] = kalloc_malloc(128);
	pthread_barrier_wait(&keep_bar); /* the objects are ready */
	/* The consumer's: allocated after its own refills, which may have
	 * taken this thread's partial slab (and its tags), by refills of this
	 * thread's from an empty bin, which tag what they take as its own. */
	pthread_barrier_wait(&consumer_bar);
	ka_tcache_flush_all();
	for (int i = 2 * KEEP_N; i < 3 * KEEP_N; i++)
		objs[i] = kalloc_malloc(128);
	pthread_barrier_wait(&consumer_bar);
	pthread_barrier_wait(&keep_bar); /* the others have freed them */
	return NULL;
}

/* A thread that has never allocated 128 B frees the first half. */
static void *fresh_freer(void *arg)
{
	(void)arg;
	for (int i = 0; i < KEEP_N / 2; i++)
		kalloc_free(objs[i]);
	fresh_kept = ka_bin_count(ka_tc, ka_size_class[(128 + 7) >> 3]);
	return NULL;
}

/* One housekeeping tick, then none until the next call: a thread keeps
 * remote frees after a tick whose remote frees reached a quarter of it. */
static void one_tick(void)
{
	ka_tls.tick = 0;
	kalloc_free(kalloc_malloc(16));
	ka_tls.tick = INT64_MAX;
}

/* Frees the n objects of another live thread in one tick, so that this
 * thread keeps remote frees from the next. */
static void keep_on(void **bulk, int n)
{
	one_tick();
	for (int i = 0; i < n; i++)
		kalloc_free(bulk[i]);
	one_tick();
}

/* Housekeeping ticks until one that makes a GC pass (tcache.c: every 8th). */
static void to_gc_pass(void)
{
	uint32_t t0 = ka_tcache_ticks();
	for (int i = 0; i < 1000 && (ka_tcache_ticks() == t0 || ka_tcache_ticks() % 8); i++) {
		ka_tls.tick = 0;
		kalloc_free(kalloc_malloc(16));
	}
}

/*
 * A thread that allocated 128 B blocks, then in a whole GC pass only freed
 * them (its bin overflowed, it never refilled): a consumer. It stops
 * keeping remote frees of the class, though it keeps those of 256 B, which
 * it allocates; its own frees stay fast-path ones.
 */
static uint32_t consumer_kept, consumer_foreign;
static size_t consumer_queued;
static bool consumer_keeps;
static void *consumer(void *arg)
{
	(void)arg;
	void *mine[600];
	for (int i = 0; i < 600; i++)
		mine[i] = kalloc_malloc(128);
	to_gc_pass(); /* it refilled: it keeps on */
	for (int i = 0; i < 600; i++)
		kalloc_free(mine[i]);
	to_gc_pass(); /* it only flushed */
	kalloc_free(kalloc_malloc(256)); /* a refill: it allocates 256 B */
	keep_on(bulk256, BULK256);
	consumer_keeps = ka_tc->keeps;
	pthread_barrier_wait(&consumer_bar);
	pthread_barrier_wait(&consumer_bar); /* the owner's objects are ready */
	unsigned c = ka_size_class[(128 + 7) >> 3];
	size_t out0 = ka_tc->out_bytes;
	/* Only those of the owner's slabs count: a block the owner took from
	 * its bin may sit in a slab this thread's refills took over since. */
	for (int i = 2 * KEEP_N; i < 3 * KEEP_N; i++) {
		bool foreign = ka_tag_of((uintptr_t)objs[i]) >> 8 != ka_tc->id8 >> 8;
		uint32_t n0 = ka_bin_count(ka_tc, c);
		kalloc_free(objs[i]);
		consumer_foreign += foreign;
		consumer_kept += foreign && ka_bin_count(ka_tc, c) != n0;
	}
	consumer_queued = ka_tc->out_bytes - out0;
	ka_tls.tick = KA_TICK_BYTES;
	return NULL;
}

static void keep_test(void)
{
	unsigned c128 = ka_size_class[(128 + 7) >> 3], c96 = ka_size_class[(96 + 7) >> 3];
	/* This thread's bins of both classes empty, then refilled: it
	 * allocates them. */
	ka_tcache_flush_all();
	kalloc_free(kalloc_malloc(128));
	kalloc_free(kalloc_malloc(96));
	pthread_t t, f;
	pthread_barrier_init(&keep_bar, NULL, 2);
	pthread_barrier_init(&consumer_bar, NULL, 2);
	pthread_create(&t, NULL, keep_owner, NULL);
	pthread_barrier_wait(&keep_bar);
	pthread_create(&f, NULL, fresh_freer, NULL);
	pthread_join(f, NULL);
	/* A tick with no remote frees: this thread keeps none. */
	one_tick();
	one_tick();
	uint32_t n0 = ka_bin_count(ka_tc, c128);
	size_t out0 = ka_tc->out_bytes;
	for (int i = KEEP_N / 2; i < 3 * KEEP_N / 4; i++)
		kalloc_free(objs[i]);
	uint32_t kept_few = ka_bin_count(ka_tc, c128) - n0;
	size_t out_few = ka_tc->out_bytes - out0;
	keep_on(bulk128, BULK128);
	bool keeps = ka_tc->keeps;
	n0 = ka_bin_count(ka_tc, c128);
	uint32_t m0 = ka_bin_count(ka_tc, c96);
	out0 = ka_tc->out_bytes;
	for (int i = 3 * KEEP_N / 4; i < KEEP_N; i++)
		kalloc_free(objs[i]);
	uint32_t kept = ka_bin_count(ka_tc, c128) - n0;
	size_t out128 = ka_tc->out_bytes - out0;
	for (int i = KEEP_N; i < 2 * KEEP_N; i++)
		kalloc_free(objs[i]);
	uint32_t kept96 = ka_bin_count(ka_tc, c96) - m0;
	size_t out96 = ka_tc->out_bytes - out0 - out128;
	void *again = kalloc_malloc(128);
	kalloc_free(again);
	/* One kept 96 B block, taken and freed again and again in a tick: each
	 * free is a remote one, kept, but none holds the gate open (a block
	 * that shares lines would stay beside its owner's for good). */
	for (int i = 0; i < CYCLE96; i++)
		kalloc_free(kalloc_malloc(96));
	one_tick();
	bool keeps_cycled = ka_tc->keeps;
	keep_on(bulk128b, BULK128);
	pthread_create(&f, NULL, consumer, NULL);
	pthread_join(f, NULL);
	pthread_barrier_wait(&keep_bar);
	pthread_join(t, NULL);
	/* Still keeping (no tick since), it frees into the slabs of an owner
	 * that exited: it adopts them, as a thread that keeps nothing does.
	 * Its outboxes posted first: one still queued for that owner would
	 * take the frees (and its post free them to the slabs). */
	ka_tcache_flush_all();
	int adopted = 0;
	for (int i = 0; i < ADOPT_N; i++) {
		kalloc_free(adopt128[i]);
		struct ka_slab *s = ka_slab_of(adopt128[i]);
		adopted += s && s->owner == ka_tc->id8 >> 8;
	}
	bool keeps_after = ka_tc->keeps;
	ka_tls.tick = KA_TICK_BYTES;
	pthread_barrier_destroy(&keep_bar);
	pthread_barrier_destroy(&consumer_bar);
	ok(fresh_kept == 0 && kept_few == 0 && out_few == (size_t)KEEP_N / 4 * 128 && keeps && kept == KEEP_N / 4 &&
	   out128 == 0 && again == objs[KEEP_N - 1] && kept96 == KEEP_N && out96 == 0,
	   "remote frees of 128 B: a thread that never allocated them keeps none (%u); one that allocates them keeps "
	   "none after a tick without remote frees (%u kept, %zu of %zu bytes queued), and all %u after a tick of "
	   "%d KiB of them (keeps: %s; %u kept, %zu bytes queued), its next malloc returning the last (%s); of "
	   "96 B, which it allocates too, it keeps all %d (%u kept, %zu bytes queued)",
	   fresh_kept, kept_few, out_few, (size_t)KEEP_N / 4 * 128, KEEP_N / 4, BULK128 * 128 / 1024,
	   keeps ? "yes" : "no", kept, out128, again == objs[KEEP_N - 1] ? "yes" : "no", KEEP_N, kept96, out96);
	ok(consumer_keeps && consumer_foreign > 0 && consumer_kept == 0 &&
		   consumer_queued == (size_t)consumer_foreign * 128,
	   "a thread whose 128 B bin only overflowed for a GC pass stops keeping remote frees of the class, while "
	   "it keeps those of 256 B (keeps: %s; %u of %u kept, %zu of %zu bytes queued)",
	   consumer_keeps ? "yes" : "no", consumer_kept, consumer_foreign, consumer_queued,
	   (size_t)consumer_foreign * 128);
	ok(!keeps_cycled && keeps_after,
	   "remote frees of a 96 B block it keeps, freed again %d times in a tick, leave the gate closed "
	   "(keeps: %s), and 375 KiB of 128 B open it again (keeps: %s)",
	   CYCLE96, keeps_cycled ? "yes" : "no", keeps_after ? "yes" : "no");
	ok(keeps_after && adopted == ADOPT_N,
	   "a thread that keeps remote frees of 128 B adopts the slabs of an owner that exited (keeps: %s; %d of %d "
	   "now ours)",
	   keeps_after ? "yes" : "no", adopted, ADOPT_N);
	kalloc_malloc_trim(0);
	validate_all();
}

int main(void)
{
	model_seed = test_seed();
	plan(15);
	kalloc_free(kalloc_malloc(1)); /* this thread's cache */
	model_test();
	exit_with_outbox();
	free_into_exited_owner();
	idle_owner_test();
	inbox_bound_test();
	fork_test();
	churn_test();
	close_during_post();
	keep_test();
	return 0;
}
