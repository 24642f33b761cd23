/*
 * t/prof-cost.c: what prof:1 must leave as prof:0 has it, and the state
 * its cheap paths keep. The test runs its first part with prof off, then
 * re-executes itself with KALLOC_CONF=prof:1,prof_sample:1 (options are
 * read at start-up; at that rate every allocation is sampled):
 *  - housekeeping ticks at the same pace: a thread's 64 KiB malloc/free
 *    pairs tick as often under prof:1 as under prof:0 (a slow allocation's
 *    bytes, counted for the sample clock, are not counted for housekeeping
 *    a second time);
 *  - a remote free (onto an outbox already queued for the owner: the
 *    quick path) moves no clock; the post of its outbox charges all it
 *    held to housekeeping's clock only, never to the sample clock;
 *  - a sampled block resized in place within its pages (no lock taken)
 *    and past them (a new line) shows its exact size in the profile at
 *    every step, and none once freed;
 *  - the page blocks of sampled small objects do not pile up in the page
 *    lists: of many freed at once, the lists keep one per size; what they
 *    keep goes back at thread exit and at trim, and the next sample takes
 *    the one kept; one from the buddy lies among the slabs.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "../lib/tcache.h"
#include "tap.h"

#define PAIRS 400
#define BIG (64 << 10)
#define SMALLS 100

static char dir[] = "/tmp/kalloc-prof-cost-XXXXXX";

/* Housekeeping passes of a fresh thread over PAIRS malloc/free pairs of BIG bytes. */
static void *pairs(void *arg)
{
	uint32_t *ticks = arg;
	/* A small malloc first: the thread's cache is live before the count starts. */
	kalloc_free(kalloc_malloc(32));
	uint32_t t0 = ka_tcache_ticks();
	for (int i = 0; i < PAIRS; i++) {
		char *p = kalloc_malloc(BIG);
		p[0] = 1;
		kalloc_free(p);
	}
	*ticks = ka_tcache_ticks() - t0;
	return NULL;
}

static uint32_t pair_ticks(void)
{
	uint32_t ticks = 0;
	pthread_t t;
	pthread_create(&t, NULL, pairs, &ticks);
	pthread_join(t, NULL);
	return ticks;
}

/* The profile's in-use count and bytes (its header), or -1 in n. */
static void in_use(long long *n, long long *bytes)
{
	char path[256];
	snprintf(path, sizeof path, "%s/now.heap", dir);
	*n = -1;
	*bytes = -1;
	if (kalloc_prof_dump(path) != 0)
		return;
	FILE *f = fopen(path, "r");
	if (f && fscanf(f, "heap profile: %lld: %lld [", n, bytes) != 2)
		*n = -1;
	if (f)
		fclose(f);
}

static void resize_in_place(void)
{
	long long n, b;
	char *p = kalloc_malloc(100000); /* 25 pages */
	in_use(&n, &b);
	ok(n == 1 && b == 100000, "a sampled 100000 B block: in use 1, %lld B", b);
	char *q = kalloc_realloc(p, 101000);
	in_use(&n, &b);
	ok(q == p && n == 1 && b == 101000, "grown in place within its pages: in use %lld, %lld B", n, b);
	q = kalloc_realloc(q, 99000);
	in_use(&n, &b);
	ok(q == p && n == 1 && b == 99000, "shrunk in place within its pages: in use %lld, %lld B", n, b);
	char *r = kalloc_realloc(q, 120000); /* 30 pages: another line */
	in_use(&n, &b);
	ok(r == p && n == 1 && b == 120000, "grown in place past its pages: in use %lld, %lld B", n, b);
	r = kalloc_realloc(r, 121000);
	in_use(&n, &b);
	ok(r == p && n == 1 && b == 121000, "then within its new pages: in use %lld, %lld B", n, b);
	kalloc_free(r);
	in_use(&n, &b);
	ok(n == 0 && b == 0, "freed: in use %lld, %lld B", n, b);
}

/* Many sampled small objects freed at once: the page lists keep one block
 * (the first freed: *first). */
static size_t smalls_held(void **first)
{
	static void *s[SMALLS];
	for (int i = 0; i < SMALLS; i++)
		s[i] = kalloc_malloc(100);
	for (int i = 0; i < SMALLS; i++)
		kalloc_free(s[i]);
	*first = s[0];
	return ka_pcp_held_bytes();
}

static size_t held_in_thread;
static void *kept_in_thread;

static void *smalls_thread(void *arg)
{
	(void)arg;
	void *first;
	held_in_thread = smalls_held(&first);
	/* The last one freed before the exit is kept (an idle tick may have
	 * given back the first already). */
	kept_in_thread = kalloc_malloc(100);
	kalloc_free(kept_in_thread);
	return NULL;
}

#define REMOTES 64 /* more than an outbox holds */
static void *remote_obj[REMOTES];
static int64_t s_clock[2], hk_clock[2];
static int queued_moved, posted_at = -1;

/* Frees the main thread's objects: the first queues an outbox for it, the
 * rest go onto it (the quick path) until one fills it and it is posted.
 * Each clock is the countdown plus its slack (tcache.c). */
static void *remote_frees(void *arg)
{
	(void)arg;
	kalloc_free(kalloc_malloc(32)); /* a live cache, the clocks armed */
	s_clock[0] = ka_tls.tick + ka_tls.s_slack;
	hk_clock[0] = ka_tls.tick + ka_tls.hk_slack;
	for (int i = 0; i < REMOTES && posted_at < 0; i++) {
		kalloc_free(remote_obj[i]);
		if (ka_tc->out_bytes == 0)
			posted_at = i;
		else if (ka_tls.tick + ka_tls.hk_slack != hk_clock[0])
			queued_moved++;
	}
	s_clock[1] = ka_tls.tick + ka_tls.s_slack;
	hk_clock[1] = ka_tls.tick + ka_tls.hk_slack;
	return NULL;
}

/* The objects' owner, alive while another thread frees them. */
static void *remote_owner(void *arg)
{
	int *sampled = arg;
	for (int i = 0; i < REMOTES; i++)
		*sampled += ka_prof_sampled(remote_obj[i] = kalloc_malloc(64));
	pthread_t t;
	pthread_create(&t, NULL, remote_frees, NULL);
	pthread_join(t, NULL);
	return NULL;
}

static void remote_free_charge(void)
{
	/* Unsampled objects: a new thread draws its first interval at the rate
	 * of its first allocation, here one that samples none of them. */
	uint64_t rate = ka_opt.prof_sample;
	ka_opt.prof_sample = (uint64_t)1 << 50;
	int sampled = 0;
	pthread_t t;
	pthread_create(&t, NULL, remote_owner, &sampled);
	pthread_join(t, NULL);
	ka_opt.prof_sample = rate;
	int64_t want = (posted_at + 1) * 64;
	ok(sampled == 0 && posted_at > 0 && queued_moved == 0,
	   "remote frees of 64 B queued on an outbox move no clock (%d moved one), until free number %d posts it", queued_moved,
	   posted_at + 1);
	ok(posted_at > 0 && s_clock[1] == s_clock[0] && hk_clock[0] - hk_clock[1] == want,
	   "the post charges them all to housekeeping's clock: %" PRId64 " B down (%" PRId64 " expected), the sample clock %" PRId64
	   " B (0 expected; %d of the objects sampled)",
	   hk_clock[0] - hk_clock[1], want, s_clock[0] - s_clock[1], sampled);
}

int main(int argc, char **argv)
{
	(void)argc;
	if (!getenv("KALLOC_PROF_COST_DIR")) {
		/* prof:0's pace, from a process of its own. */
		if (ka_prof_on || !mkdtemp(dir))
			plan_skip_all("prof on already, or no temporary directory");
		char conf[256], ticks[32];
		snprintf(ticks, sizeof ticks, "%u", pair_ticks());
		snprintf(conf, sizeof conf, "prof:1,prof_sample:1,prof_file:%s/t.%%p.heap", dir);
		setenv("KALLOC_CONF", conf, 1);
		setenv("KALLOC_PROF_COST_DIR", dir, 1);
		setenv("KALLOC_PROF_COST_TICKS", ticks, 1);
		execv("/proc/self/exe", argv);
		plan_skip_all("cannot re-execute");
	}
	snprintf(dir, sizeof dir, "%s", getenv("KALLOC_PROF_COST_DIR"));
	ok(ka_prof_on, "prof:1 is on (KALLOC_CONF=%s)", getenv("KALLOC_CONF"));

	unsigned t0 = (unsigned)atoi(getenv("KALLOC_PROF_COST_TICKS")), t1 = pair_ticks();
	ok(t0 > 0 && t1 + 1 >= t0 && t1 <= t0 + 1,
	   "%d malloc/free pairs of %d KiB tick as often under prof:1 as under prof:0 (%u, %u ticks)", PAIRS,
	   BIG >> 10, t1, t0);

	resize_in_place();
	remote_free_charge();

	pthread_t t;
	pthread_create(&t, NULL, smalls_thread, NULL);
	pthread_join(t, NULL);
	ok(held_in_thread <= KA_PAGE_SIZE,
	   "%d sampled small objects freed at once: the page lists keep %zu B of their blocks (one page at most)",
	   SMALLS, held_in_thread);
	ok(ka_pcp_held_bytes() == 0 && ka_buddy_free_order(kept_in_thread) >= 0,
	   "the thread's exit gave back the page it kept (%zu B held, its order in the buddy %d)",
	   ka_pcp_held_bytes(), ka_buddy_free_order(kept_in_thread));

	void *first;
	size_t held = smalls_held(&first);
	struct ka_buddy_stats b0, b1;
	ka_buddy_stats(&b0);
	void *p = kalloc_malloc(100);
	ka_buddy_stats(&b1);
	ok(held == KA_PAGE_SIZE && ka_pcp_held_bytes() == 0 && b1.free_pages == b0.free_pages,
	   "the next sampled small object takes the page kept (%zu B kept, %zu B after, buddy free pages %zu -> %zu)",
	   held, ka_pcp_held_bytes(), (size_t)b0.free_pages, (size_t)b1.free_pages);
	/* Taken from the buddy (none kept now): among the slabs. */
	void *q = kalloc_malloc(100);
	struct ka_page *pg = ka_map_page(q);
	ok(pg && pg->kind == KA_PG_LARGE && ka_page_chunk(pg)->type == KA_MT_SLAB,
	   "a sampled small object's page block from the buddy lies among the slabs (chunk type %d)",
	   pg ? (int)ka_page_chunk(pg)->type : -1);
	kalloc_free(q);
	kalloc_free(p);
	kalloc_malloc_trim(0);
	ok(ka_pcp_held_bytes() == 0, "trim gives back the page kept (%zu B held)", ka_pcp_held_bytes());

	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	ka_prof_on = false; /* no exit dump into the removed directory */
	return done_testing();
}
