/*
 * tcache.c: per-thread caches, their slow paths, and their life cycle.
 *
 * A thread's cache is created on its first slow-path call, from kalloc's
 * metadata (never from malloc), and registered with the thread-exit key.
 * Its state (tc_state) only moves forward:
 *   NONE -> CREATING -> LIVE -> DEAD
 * While CREATING (pthread_setspecific may call calloc) and once DEAD (glibc
 * frees and allocates after the key destructors ran) the thread runs
 * cacheless: every call goes to the slabs under their locks, and the cache
 * is never created again.
 *
 * Bins are bounded in bytes. A bin starts at
 *   min(tcache_max, START_OBJS, max(4, KA_TCACHE_BIN_BYTES / class size))
 * objects (1.9 MiB for all of them: 385 KiB for the twelve classes up to
 * 256 B, 64 KiB for each bigger one). Larson at 2 threads takes 1.05-1.3 s
 * with 64 KiB bins, 1.2 s with 32 KiB and 1.5 s with 16 KiB, which refill
 * and flush four times as often. A bin that overflows after a refill since
 * its last overflow runs empty and full in turn (the program's batches of
 * its class are bigger than the bin): it doubles, up to tcache_max objects,
 * while the maxima of all the thread's bins stay within KA_TCACHE_BYTES, so
 * that each round trip to the slabs becomes none (tcmalloc's free lists
 * grow the same way). The housekeeping GC halves a bin unused since its
 * last pass back towards its start. So one thread's bins never hold more
 * than KA_TCACHE_BYTES, whatever it does.
 * A refill brings `fill` objects from the slabs in locked batches, starting
 * at FILL_FIRST and doubling up to half the bin, so that a short thread that
 * uses a class a few times does not carry and then flush a hundred of its
 * objects; a full bin sends its older half back in one batch.
 *
 * Remote frees, batched by owner (the owner of a slab is the cache that
 * last refilled from it, named in its tags), except those the freer keeps:
 *  - A thread keeps a remote free in its own bin, as a local one, when
 *    it allocates the object's class itself (its bin has refilled, and
 *    has not only overflowed for a whole GC pass since: BUSY_KEEP), its
 *    remote frees were at least a quarter of its last housekeeping tick
 *    (KEEP_BYTES: tc->keeps; both together BUSY_KEEPS, the one bit the
 *    remote free tests), and the owner is live: a thread that trades
 *    blocks with others (mt_exchange) reuses what it is given, as
 *    tcmalloc and jemalloc always do. The frees that count are those
 *    posted and those kept of classes of whole cache lines (a multiple of
 *    64 bytes: 64, and every class from 128 up but 160 and 224): a kept
 *    block is a remote free again each time its new user frees it, and
 *    one that shares a line with its owner's blocks must not hold the
 *    gate open by itself (falseshare-traded, below). A thread that only
 *    frees the class (a consumer) sends it home, where it is reused, not
 *    flushed to the slabs and refilled under two locks; a thread whose
 *    frees are mostly local (larson's) sends its few remote ones home,
 *    since one it kept stays in its own cycle of malloc and free with
 *    each free a remote one; a retired owner's slab is adopted (below).
 *  - A thread that frees an object of a slab another live cache owns
 *    pushes it, marked free, onto its outbox for that owner: no atomic.
 *    An outbox goes out when it holds OUTBOX_OBJS objects or OUTBOX_BYTES
 *    bytes, when a different owner needs its place, and at the thread's
 *    next refill or flush, at trim and at exit.
 *  - post: one release compare-and-swap links the whole chain onto one
 *    of the owner's KA_INBOX_SLOTS inbox words, adding its bytes to the
 *    count in that word; a poster takes the words in turn (its `posts`),
 *    so that the owner walks several chains side by side (drain_inbox).
 *  - drain: the owner (or trim, or a fork child, for a cache whose thread
 *    is gone) takes each inbox word whole with one acquire exchange;
 *    nothing is ever popped singly, so there is no ABA. The owner drains at each
 *    refill and flush into its own bins, lock-free; what overflows a bin
 *    goes back to the slabs in one locked batch per class, as any flush.
 *  - An owner that stops allocating must not pin memory: a post that would
 *    take an inbox to its bound (inbox_max), or finds it closed, frees its
 *    chain to the slabs instead, in locked batches. The bound grows with
 *    what the owner takes, as a bin does: it starts at 0 (a cache takes no
 *    post before it has shown that it drains), a refused post flags the
 *    inbox, and the owner's next drain (its next refill, flush or tick)
 *    raises the bound to INBOX_MIN_BYTES, then doubles it at each drain
 *    after a refusal, up to INBOX_MAX_BYTES or the live caches' share of
 *    INBOX_BUDGET if that is less (set_inbox_cap_locked); a GC pass with
 *    no drain since the last one halves it back towards INBOX_MIN_BYTES
 *    (and lowers it to that share when threads were added). An owner that
 *    never drains is sent nothing: larson's main thread fills every
 *    partition and then only waits, and with a fixed 4 MiB bound its inbox
 *    kept all its 1 MiB of blocks (and their slabs) for the whole run, the
 *    workers touching fresh pages instead (peak RSS 3.6 -> 4.9 MiB; 3.9
 *    with a 64 KiB start). A producer that drains grows its bound to what
 *    its consumers send between two drains, or while it sleeps on a full
 *    queue: INBOX_MAX_BYTES (4 MiB: two caches at their starting size, one
 *    at its most, KA_TCACHE_BYTES); 1 MiB was too little for buffers of 8
 *    to 16 KiB: a consumer of a producer asleep on its full queue
 *    (prodcons-mixed) sent most of them through the class locks, and the
 *    producer took them back from the slabs (0.66 s of CPU there against
 *    0.55 s with 4 MiB).
 *  - At exit a cache closes its inbox (each word exchanged with KA_INBOX_CLOSED),
 *    drains it and gives everything back; its id reads 0 from then on, so
 *    a later free into a slab it owned adopts the slab (re-tags it to the
 *    freeing cache, under the cache lock) and takes the object into its own
 *    bin: the next frees of that slab are fast-path ones.
 *  - Slab free lists are written only under their cache's lock: the owner
 *    is only the last refiller, and any thread may take any partial slab.
 * A queued object is a free object: it carries the key, so freeing it again
 * from any thread is caught, and every object is checked (a slab object
 * start of a kmalloc class) when drained, so a corrupted link is fatal
 * rather than followed.
 * What sending objects home costs (bench/micro mt_exchange/512 at 2
 * threads, which swap blocks through shared slots and never touch one, so
 * that an allocator's own traffic on block lines is all there is): a
 * remote free reads the block's key, on a line the owner's malloc wrote,
 * and that load is 94% of ka_tcache_free_remote's samples (perf). Queuing
 * pointers in a ring per freer and owner instead of linking the blocks
 * (the freer writes no block, the owner walks no chain) took the best of
 * 21 runs from 17.1 to 15.6 ns, and dropping the key's check too, 16.3:
 * the loop's own exchange then had 56% of the samples; tcmalloc, which
 * keeps a remote free in the freer's cache, took 9.2. So the chains stay:
 * what is left of that gap is the home-sending itself, which falseshare-
 * passive needs: keeping remote frees in the freer's bin took it from 0.81
 * to 3.05 s. Keeping them only for the classes of whole cache lines (64,
 * 128, ... : a freer's malloc then shares no line with the owner's
 * blocks; their tags named no owner, which a table beside the tags kept
 * for the return of what a full bin overflowed) left falseshare-passive
 * where it was and took mt_exchange/512 from 18.5-23.3 to 12.9-19.3 ns
 * (4 runs each; tcmalloc 9.7-15.4): its sizes, 8 to 519 bytes, fall in
 * those classes a third of the time. But the owner's test cost every
 * malloc/free pair 4 instructions (bench/opcount under callgrind, loop
 * included: pair/32 57.0 -> 61.0, ring/512 72.7 -> 76.7), and a consumer
 * that never allocates paid the bin's round trip before each send home:
 * prodcons 0.163 -> 0.179 s (median of 25 interleaved runs; 130.8 ->
 * 136.9 million instructions, callgrind, quick), prodcons-mixed 0.513 ->
 * 0.542 s. A bin that overflowed with no refill since shrank to 32 and
 * sent all home, which a single thread's random-order frees also trip:
 * batch_random/64 69.5 -> 270.5 instructions. Not kept.
 * Kept on the slow path instead (free_remote_keep, BUSY_KEEPS above), the
 * fast path is as it was, and a consumer, which never refills, is not
 * touched: mt_exchange/512 at 2 threads 17.9-19.9 -> 14.4-15.5 ns
 * (medians of 7 interleaved runs; tcmalloc 9.7-10.8, jemalloc 10.5-11.0),
 * mt_exchange_used 19.4-20.8 -> 17.0-19.7. Keeping every class took it to
 * 12.2-13.4, and falseshare-passive from 0.62 to 2.05 s (tcmalloc 2.14):
 * two threads that refill from one partial slab share its lines, and each
 * kept its part for good, where sent home the objects gather at the slab's
 * last refiller. Keeping every class from 64 B up (13.4 ns) spared the 8 B
 * test, but a falseshare-passive of 96 B blocks went 1.16 -> 1.55 s (of
 * 160 B, 1.31 -> 1.65; jemalloc and mimalloc 1.12-1.24); the whole-line
 * rule leaves 96 B at 1.13 and 128 B at 0.66 -> 0.71 (jemalloc 0.71).
 * Kept by any thread that allocated the class, larson took 0.86 -> 0.94 s
 * (median of 11; mimalloc 0.89): a kept block stays in its freer's cycle
 * and its every free is a remote one (ka_tcache_free_remote 7% of the
 * samples, perf). With the quarter-tick gate larson is where it was
 * (base 0.963, gated 0.939, mimalloc 0.928, tcmalloc 1.003 s, medians of
 * 9 interleaved) and mt_exchange/512 at 2 threads goes 13.71 -> 9.39 ns
 * (tcmalloc 7.43, jemalloc 8.28; mt_exchange_used 14.24 -> 10.21,
 * tcmalloc 8.21), at 4 threads 13.45 -> 12.31 (tcmalloc 7.97). The test
 * of BUSY_KEEPS costs every remote free that is not kept 2 instructions,
 * the keeping out of line (free_remote_keep): xthread64 quick 435.8 ->
 * 438.8 million instructions (callgrind); inline, its registers made it
 * 442.0.
 * With the gate, keeping every class as well took mt_exchange/512 at 2
 * threads 9.72 -> 8.51 ns (tcmalloc 6.46), at 4 threads 11.27 -> 8.72
 * (tcmalloc 6.88), and left falseshare-passive of 8, 32, 96 and 160 B as
 * it was; but falseshare-traded at 8 threads (threads that traded blocks,
 * so that they keep, then each frees its block of main's, beside the
 * others', and writes small blocks) went 2.42 -> 4.21 s (mimalloc 2.55;
 * medians of 3; again 3.41 -> 4.62, minimums 2.56 -> 4.20): a kept block
 * freed again is a remote free again, kept and counted to the gate, so
 * the thread keeps on reusing the block it was handed, on the others'
 * line. Counting only the kept frees of whole-line classes toward the
 * gate, the block goes home at the next tick: falseshare-traded at 8
 * threads 2.03 s (whole-line rule 2.07, every class counted 4.48,
 * mimalloc 2.25; medians of 5), and mt_exchange/512 at 2 threads 9.45 ->
 * 7.08 ns (jemalloc 6.98, tcmalloc 7.68; medians of 7; the median of 15
 * paired ratios to the better of the two 1.04, at 4 threads 1.20). At 2
 * threads the test took 0.50-0.76 s under each rule against jemalloc's
 * 2.4-4.4 and tcmalloc's 2.1-2.6.
 * jemalloc keeps every remote free in the freer's cache and passes the 8 B
 * test because there a thread's first free, before any malloc, finds no
 * tcache and goes to its arena (LD_PRELOAD jemalloc 5.3.0: a worker that
 * mallocs once first gets the main thread's block back), and its threads
 * refill from arenas of their own.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "tcache.h"

#define KA_TCACHE_BIN_BYTES 65536
#define START_OBJS 256
/* busy[]: what a bin did since the last GC pass. */
#define BUSY_REFILL 1 /* refilled */
#define BUSY_FLUSH 2  /* flushed */
#define BUSY_CYCLE 4  /* refilled since it last overflowed (grow) */
#define BUSY_KEEP 8   /* refilled, and not only flushed since (kept across passes) */
#define BUSY_KEEPS 16 /* keeps remote frees: BUSY_KEEP, of a cache that keeps (tc->keeps) */
#define BATCH 64
#define FILL_FIRST 8
#define LINE 64 /* bytes in a cache line: kept frees of classes of whole ones hold the gate open */
#define KEEP_BYTES (KA_TICK_BYTES / 4) /* remote frees in a tick that make a thread keep them */
#define OUTBOX_OBJS 32
#define OUTBOX_BYTES 32768
#define INBOX_MIN_BYTES KA_INBOX_MIN_BYTES
#define INBOX_MAX_BYTES KA_INBOX_MAX_BYTES
#define INBOX_BUDGET KA_INBOX_BUDGET

_Static_assert(INBOX_MAX_BYTES >> KA_INBOX_UNIT_SHIFT <= (1u << (64 - KA_INBOX_SHIFT)), "the inbox count stays below INBOX_MAX_BYTES and fits its bits");
_Static_assert(OUTBOX_BYTES + KA_SMALL_MAX < (1u << 16) << 4, "an outbox's count fits");
_Static_assert(OUTBOX_BYTES + KA_SMALL_MAX < INBOX_MIN_BYTES, "a grown inbox, empty, takes any post");
_Static_assert(INBOX_MIN_BYTES <= INBOX_MAX_BYTES && INBOX_MAX_BYTES <= UINT32_MAX, "inbox_max holds the bound");
_Static_assert(KA_ADDR_BITS <= KA_INBOX_SHIFT, "inbox pointers fit below the count");

enum { TC_NONE, TC_CREATING, TC_LIVE, TC_DEAD };

static struct ka_tcache empty_tcache = {
	.id8 = KA_TCACHE_ID_NONE << 8,
	.bins = {[0 ... KA_NR_CLASSES - 1] = {.head = KA_LIST_END}},
	.bin_off = {[0 ... KA_SMALL_MAX / 16] = offsetof(struct ka_tcache, bins)},
};
__thread struct ka_tls ka_tls = {&empty_tcache, KA_TICK_BYTES, KA_S_UNARMED, 0, 0};
static __thread uint8_t tc_state;

static pthread_mutex_t tcaches_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ka_list live = {&live, &live}, spare = {&spare, &spare};
static uint32_t nr_live; /* caches on live; tcaches_lock held */
static uint32_t inbox_cap = INBOX_MAX_BYTES; /* written under tcaches_lock, read relaxed */
/* slot -> cache, set once per slot (a cache keeps its slot for good). */
static struct ka_tcache *slots[KA_TCACHE_SLOTS];
static uint32_t next_slot = 1; /* 0 and KA_TCACHE_ID_NONE's slot are never handed out */
static pthread_key_t exit_key;
static uint32_t trim_epoch; /* bumped by malloc_trim: every cache flushes at its next tick */
static __thread uint32_t seen_epoch, ticks;
#define GC_TICKS 8

static void drain_inbox(struct ka_tcache *tc, const uintptr_t *v);

/*
 * The most an inbox may hold: INBOX_BUDGET shared by the live caches, at
 * least INBOX_MIN_BYTES, at most INBOX_MAX_BYTES; tcaches_lock held. At 8
 * threads of prodcons-mixed (4 producers) the 4 MiB bound of each producer
 * kept 34 MiB in flight (peak RSS), so the objects a producer stamped came
 * from memory, not cache: 1.01 s against tcmalloc's 0.90 s; 1 MiB bounds,
 * 0.85 s and 22 MiB. At 2 threads 1 MiB was too little (0.84 s against
 * 0.66 s; see the top of this file): the budget gives 4 MiB to each of up
 * to 3 caches (the workers and main).
 */
static void set_inbox_cap_locked(void)
{
	uint32_t c = nr_live ? (uint32_t)(INBOX_BUDGET / nr_live) : (uint32_t)INBOX_MAX_BYTES;
	if (c > INBOX_MAX_BYTES)
		c = (uint32_t)INBOX_MAX_BYTES;
	if (c < INBOX_MIN_BYTES)
		c = (uint32_t)INBOX_MIN_BYTES;
	ka_store_relaxed(&inbox_cap, c);
}

/* The cache an owner id names (its slot's; its generation is not checked). */
static struct ka_tcache *cache_of(uint32_t owner)
{
	return __atomic_load_n(&slots[owner & (KA_TCACHE_SLOTS - 1)], __ATOMIC_ACQUIRE);
}

/* True if owner names a live cache: one that has not retired (nor been
 * taken by a new thread since). The acquire pairs with the id's store at
 * creation, so what the owner set up before is visible. */
static bool owner_live(uint32_t owner)
{
	struct ka_tcache *to = cache_of(owner);
	return to && __atomic_load_n(&to->id, __ATOMIC_ACQUIRE) == owner;
}

static KA_NOINLINE KA_COLD __attribute__((noreturn)) void bin_corrupt(void *p, unsigned cls)
{
	ka_fatal("malloc()", "corrupted free list (write after free?) at", p, ka_classes[cls].name);
}

/* The objects a bin starts with at most (and shrinks back to). */
static uint32_t bin_start(unsigned cls)
{
	size_t m = KA_TCACHE_BIN_BYTES / ka_classes[cls].size;
	if (m < 4)
		m = 4;
	if (m > START_OBJS)
		m = START_OBJS;
	return (uint32_t)(m < ka_opt.tcache_max ? m : ka_opt.tcache_max);
}

/* A bin's new maximum m, its change accounted in the thread's budget. */
static void set_max(struct ka_tcache *tc, unsigned cls, uint32_t m)
{
	tc->bin_bytes = tc->bin_bytes - (size_t)tc->max[cls] * ka_classes[cls].size + (size_t)m * ka_classes[cls].size;
	tc->bins[cls].room = m - ka_bin_count(tc, cls);
	tc->max[cls] = (uint16_t)m;
}

/* A full bin doubles if it cycles (see above) and the budget allows. */
static bool grow(struct ka_tcache *tc, unsigned cls)
{
	uint32_t m = (uint32_t)tc->max[cls] * 2;
	if (m > ka_opt.tcache_max)
		m = (uint32_t)ka_opt.tcache_max;
	if (m > KA_TCACHE_BIN_MAX)
		m = KA_TCACHE_BIN_MAX;
	if (!(tc->busy[cls] & BUSY_CYCLE) || m <= tc->max[cls] ||
	    tc->bin_bytes + (size_t)(m - tc->max[cls]) * ka_classes[cls].size > KA_TCACHE_BYTES)
		return false;
	tc->busy[cls] &= (uint8_t)~BUSY_CYCLE;
	set_max(tc, cls, m);
	return true;
}

/* The most a refill brings: half the bin, at least one. */
static uint32_t fill_max(const struct ka_tcache *tc, unsigned cls)
{
	return tc->max[cls] / 2 ? tc->max[cls] / 2 : 1u;
}

static void destructor(void *arg)
{
	(void)arg;
	ka_tcache_thread_exit();
}

/* What every cache's bin_off[] is copied from (types.h). The empty cache's
 * leads every size to bins[0], which is always empty (class 0 is "none"). */
static uint16_t bin_off[KA_SMALL_MAX / 16 + 1];

void ka_tcache_init(void)
{
	for (size_t i = 0; i <= KA_SMALL_MAX / 16; i++)
		bin_off[i] = (uint16_t)offsetof(struct ka_tcache, bins[ka_size_class[(i * 16 + 7) >> 3]]);
	pthread_key_create(&exit_key, destructor);
}

/*
 * A cache for a new thread: a retired one (its generation bumped, so that
 * the slabs its last thread owned are not taken for this one's: two threads
 * that swap retired caches would each refill from slabs whose objects the
 * other uses, and their cores would share cache lines), or a new one with a
 * new slot. NULL when the slots or the metadata run out.
 */
static struct ka_tcache *take_cache(void)
{
	struct ka_tcache *tc = NULL;
	pthread_mutex_lock(&tcaches_lock);
	if (!ka_list_empty(&spare)) {
		tc = ka_container_of(spare.next, struct ka_tcache, node);
		ka_list_del(&tc->node);
	} else if (next_slot < (KA_TCACHE_ID_NONE & (KA_TCACHE_SLOTS - 1)) &&
		   (tc = ka_meta_alloc(sizeof *tc, 64))) {
		tc->slot = next_slot++;
		tc->id8 = tc->slot << 8; /* generation 0 after the bump below: 1 */
		__atomic_store_n(&slots[tc->slot], tc, __ATOMIC_RELEASE);
	}
	if (tc) {
		uint32_t gen = ((tc->id8 >> 8 >> KA_TCACHE_SLOT_BITS) + 1) & ((1u << (24 - KA_TCACHE_SLOT_BITS)) - 1);
		uint32_t id = gen << KA_TCACHE_SLOT_BITS | tc->slot;
		tc->id8 = id << 8;
		tc->inbox_used = false;
		ka_store_relaxed(&tc->inbox_max, 0);
		ka_store_relaxed(&tc->inbox_refused, 0);
		for (unsigned i = 0; i < KA_INBOX_SLOTS; i++)
			__atomic_store_n(&tc->inbox[i], 0, __ATOMIC_RELEASE);
		__atomic_store_n(&tc->id, id, __ATOMIC_RELEASE);
		ka_list_add(&live, &tc->node);
		nr_live++;
		set_inbox_cap_locked();
	}
	pthread_mutex_unlock(&tcaches_lock);
	return tc;
}

/* The calling thread's cache, created on first use; NULL to run cacheless. */
static struct ka_tcache *tcache_create(void);

static inline struct ka_tcache *tcache_get(void)
{
	return KA_LIKELY(tc_state == TC_LIVE) ? ka_tc : tcache_create();
}

static __attribute__((noinline)) KA_COLD struct ka_tcache *tcache_create(void)
{
	if (tc_state != TC_NONE || ka_opt.tcache_max == 0)
		return NULL;
	tc_state = TC_CREATING;
	struct ka_tcache *tc = take_cache();
	if (!tc) {
		tc_state = TC_NONE;
		return NULL;
	}
	tc->secret = ka_secret;
	tc->bin_bytes = 0;
	for (unsigned c = 1; c < KA_NR_CLASSES; c++) {
		struct ka_bin *b = &tc->bins[c];
		b->head = KA_LIST_END;
		b->room = 0;
		tc->max[c] = 0;
		set_max(tc, c, bin_start(c));
		b->div = ka_classes[c].div;
		b->limit = ka_classes[c].limit;
		b->slab_mask = ka_classes[c].slab_mask;
		tc->fill[c] = (uint16_t)(fill_max(tc, c) < FILL_FIRST ? fill_max(tc, c) : FILL_FIRST);
	}
	memset(tc->out, 0, sizeof tc->out);
	memset(tc->busy, 0, sizeof tc->busy);
	tc->keeps = false;
	tc->remote_bytes = 0;
	memcpy(tc->bin_off, bin_off, sizeof tc->bin_off);
	tc->out_bytes = 0;
	ka_tc = tc;
	ka_tls.tags_limit = ka_load_relaxed(&ka_tags_limit);
	pthread_setspecific(exit_key, tc);
	tc_state = TC_LIVE;
	return tc;
}

/* The next object of a bin's list after obj, or KA_LIST_END; checked. */
static void *next_of(void *obj, unsigned cls)
{
	void *next = ka_link_decode(*(void **)obj, obj);
	if (ka_list_corrupt(next))
		bin_corrupt(obj, cls);
	return next;
}

/* A bin's head, checked: the fast path stores the links it pops unchecked
 * (tcache.h), so whatever walks a bin from its head tests it first. */
static void *bin_head(struct ka_tcache *tc, unsigned cls)
{
	void *h = tc->bins[cls].head;
	if (ka_list_corrupt(h))
		ka_fatal("malloc()", "corrupted free list (write after free?): a freed block's link decodes to", h,
			 ka_classes[cls].name);
	return h;
}

static void *pop(struct ka_bin *b, unsigned cls)
{
	char *p = b->head;
	b->head = next_of(p, cls);
	b->room++;
	((uint64_t *)p)[1] = 0;
	return p;
}

/* Link a free object (already marked) onto a bin. */
static void link_in(struct ka_bin *b, void *obj)
{
	*(void **)obj = ka_link_encode(b->head, obj);
	b->head = obj;
	b->room--;
}

static void refill(struct ka_tcache *tc, unsigned cls)
{
	struct ka_bin *b = &tc->bins[cls];
	tc->busy[cls] |= BUSY_REFILL | BUSY_CYCLE | (tc->keeps ? BUSY_KEEP | BUSY_KEEPS : BUSY_KEEP);
	uint32_t want = tc->fill[cls];
	if (want * 2 <= fill_max(tc, cls))
		tc->fill[cls] = (uint16_t)(want * 2);
	/* An empty bin takes a slab's whole free list when it is no more than
	 * twice the refill (and fits the bin), touching no object; else the
	 * objects come one by one. */
	if (b->head == KA_LIST_END) {
		unsigned n, most = want * 2 < tc->max[cls] ? want * 2 : tc->max[cls];
		void *list = ka_slab_take_list(&ka_kmalloc[cls], most, tc->id8 >> 8, &n);
		if (list) {
			b->head = list;
			b->room = tc->max[cls] - n;
			return;
		}
	}
	void *objs[BATCH];
	while (want) {
		unsigned n = ka_slab_alloc_batch(&ka_kmalloc[cls], objs, want < BATCH ? want : BATCH, tc->id8 >> 8);
		/* Pushed in reverse, so the bin hands them out in address order. */
		for (unsigned i = n; i-- > 0;)
			link_in(b, objs[i]);
		if (n < (want < BATCH ? want : BATCH))
			break;
		want -= n;
	}
}

/*
 * Send all but `keep` objects of a bin back, the most recently freed
 * first: they are in cache, and the list's walk is a chain of loads. Sent
 * from the far end, the walk took a cache miss at nearly every object
 * (python3: flush had 9% of all L1 data read misses, cachegrind); the
 * older objects kept now are touched once, by the malloc that hands each
 * out, where the program's own work hides the miss.
 */
static void flush(struct ka_tcache *tc, unsigned cls, uint32_t keep)
{
	struct ka_bin *b = &tc->bins[cls];
	if (ka_bin_count(tc, cls) <= keep)
		return;
	tc->busy[cls] |= BUSY_FLUSH;
	uint32_t n = ka_bin_count(tc, cls) - keep;
	void *cur = bin_head(tc, cls), *objs[BATCH];
	unsigned m = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (cur == KA_LIST_END)
			bin_corrupt(b->head, cls);
		objs[m++] = cur;
		cur = next_of(cur, cls);
		if (m == BATCH || i + 1 == n) {
			ka_slab_free_batch(&ka_kmalloc[cls], objs, m);
			m = 0;
		}
	}
	/* The kept objects' links are as they were: the last one's ends the list. */
	b->head = cur;
	b->room = tc->max[cls] - keep;
}

/* Take a free, marked object into the bin of its class, making room first. */
KA_INLINE void bin_take(struct ka_tcache *tc, unsigned cls, void *obj)
{
	struct ka_bin *b = &tc->bins[cls];
	if (!b->room && !grow(tc, cls))
		flush(tc, cls, tc->max[cls] / 2u);
	link_in(b, obj);
}

/* ------------------------------------------------------------ remote frees */

/*
 * The kmalloc class of an object found on a chain, checked: it must be the
 * start of an object of a kmalloc slab. A corrupted link ends here.
 */
KA_INLINE unsigned chain_class(void *obj)
{
	uintptr_t a = (uintptr_t)obj;
	unsigned cls = ka_tag_class(ka_tag_of(a));
	if (!cls || cls >= KA_NR_CLASSES || !ka_class_obj_ok(cls, a))
		ka_fatal("free()", "corrupted remote free list (write after free?) at", obj, NULL);
	return cls;
}

static void *chain_next(void *obj)
{
	void *next = ka_link_decode(*(void **)obj, obj);
	if ((uintptr_t)next & 15)
		ka_fatal("free()", "corrupted remote free list (write after free?) at", obj, NULL);
	return next;
}

/* Give a chain back to the slabs, in locked batches of one class. */
static void chain_to_slabs(void *obj)
{
	void *objs[BATCH];
	unsigned m = 0, cls = 0;
	while (obj) {
		void *next = chain_next(obj);
		unsigned k = chain_class(obj);
		if (m && (k != cls || m == BATCH)) {
			ka_slab_free_batch(&ka_kmalloc[cls], objs, m);
			m = 0;
		}
		cls = k;
		objs[m++] = obj;
		obj = next;
	}
	if (m)
		ka_slab_free_batch(&ka_kmalloc[cls], objs, m);
}

void (*ka_tcache_post_hook)(struct ka_tcache *to);

/* Post an outbox to its owner's inbox, or free it to the slabs when the
 * inbox is closed or full. */
static void post(struct ka_tcache *tc, struct ka_outbox *ob)
{
	if (!ob->count)
		return;
	struct ka_tcache *to = cache_of(ob->owner);
	uintptr_t *slot = &to->inbox[tc->posts++ % KA_INBOX_SLOTS];
	uintptr_t old = __atomic_load_n(slot, __ATOMIC_RELAXED), nw;
	size_t units = ((size_t)ob->units + 3) >> (KA_INBOX_UNIT_SHIFT - 4); /* 16s -> 64s, rounded up */
	size_t max = ka_load_relaxed(&to->inbox_max);
	do {
		if (old == KA_INBOX_CLOSED || ka_tcache_inbox_bytes(to) + (units << KA_INBOX_UNIT_SHIFT) >= max) {
			if (old != KA_INBOX_CLOSED && !ka_load_relaxed(&to->inbox_refused))
				ka_store_relaxed(&to->inbox_refused, 1);
			/* A failed try may have linked the tail to the inbox's chain. */
			*(void **)ob->tail = ka_link_encode(NULL, ob->tail);
			chain_to_slabs(ob->head);
			goto done;
		}
		*(void **)ob->tail = ka_link_encode((void *)KA_INBOX_PTR(old), ob->tail);
		if (KA_UNLIKELY(ka_tcache_post_hook != NULL))
			ka_tcache_post_hook(to);
		nw = (uintptr_t)ob->head | (((old >> KA_INBOX_SHIFT) + units) << KA_INBOX_SHIFT);
	} while (!__atomic_compare_exchange_n(slot, &old, nw, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
done:
	tc->remote_bytes += (size_t)ob->units << 4;
	tc->out_bytes -= (size_t)ob->units << 4;
	ob->head = ob->tail = NULL;
	ob->count = ob->units = 0;
}

static void post_all(struct ka_tcache *tc)
{
	for (unsigned i = 0; i < KA_OUTBOXES; i++)
		post(tc, &tc->out[i]);
}

/* True if pushing `size` more bytes fills the outbox (it is then posted). */
KA_INLINE bool outbox_fills(const struct ka_outbox *ob, uint32_t size)
{
	return ob->count + 1u >= OUTBOX_OBJS || ob->units + (size >> 4) >= OUTBOX_BYTES >> 4;
}

/* Push obj (of `size` bytes) onto an outbox that already holds at least
 * one object (its owner and tail are set); true if that filled it. */
KA_INLINE bool outbox_push(struct ka_tcache *tc, struct ka_outbox *ob, void *obj, uint32_t size)
{
	bool full = outbox_fills(ob, size);
	*(void **)obj = ka_link_encode(ob->head, obj);
	ob->head = obj;
	ob->count++;
	ob->units = (uint16_t)(ob->units + (size >> 4));
	tc->out_bytes += size;
	return full;
}

/* Queue a free, marked object for its slab's live owner `owner`. */
static void queue_remote(struct ka_tcache *tc, void *obj, uint32_t owner, unsigned cls)
{
	struct ka_outbox *ob = &tc->out[owner & (KA_OUTBOXES - 1)];
	if (ob->count && ob->owner != owner)
		post(tc, ob);
	if (ob->count) {
		if (outbox_push(tc, ob, obj, ka_classes[cls].size))
			post(tc, ob);
		return;
	}
	ob->owner = owner;
	*(void **)obj = ka_link_encode(NULL, obj);
	ob->head = ob->tail = obj;
	ob->count = 1;
	ob->units = (uint16_t)(ka_classes[cls].size >> 4);
	tc->out_bytes += ka_classes[cls].size;
}

/* The chain an inbox word holds: none when empty or closed. */
static void *inbox_chain(uintptr_t v)
{
	return v == KA_INBOX_CLOSED ? NULL : (void *)KA_INBOX_PTR(v);
}

/*
 * Take the chains of inbox words v[] (taken with exchanges) into tc's bins,
 * a step of each in turn: each step waits on a line the poster wrote on
 * another core, and with the chains walked side by side those misses
 * overlap. One chain walked alone was 40% of prodcons' time on an Intel
 * Xeon (perf), and the run took 0.67 s against 0.32 s with four.
 */
static void drain_inbox(struct ka_tcache *tc, const uintptr_t *v)
{
	void *c[KA_INBOX_SLOTS];
	unsigned chains = 0;
	for (unsigned i = 0; i < KA_INBOX_SLOTS; i++) {
		c[i] = inbox_chain(v[i]);
		chains += c[i] != NULL;
	}
	while (chains)
		for (unsigned i = 0; i < KA_INBOX_SLOTS; i++) {
			void *obj = c[i];
			if (!obj)
				continue;
			c[i] = chain_next(obj);
			chains -= c[i] == NULL;
			bin_take(tc, chain_class(obj), obj);
		}
}

/*
 * Take every inbox word of tc into v[] with one exchange each, leaving
 * `with` (0, or KA_INBOX_CLOSED to close it); false if none held a chain.
 * Taking with 0 leaves a closed word closed, even one closed between the
 * test and the exchange (trim takes other threads' inboxes while they may
 * exit).
 */
static bool take_inbox(struct ka_tcache *tc, uintptr_t *v, uintptr_t with)
{
	bool any = false;
	for (unsigned i = 0; i < KA_INBOX_SLOTS; i++) {
		v[i] = 0;
		if (!with && __atomic_load_n(&tc->inbox[i], __ATOMIC_RELAXED) <= KA_INBOX_CLOSED)
			continue;
		v[i] = __atomic_exchange_n(&tc->inbox[i], with, __ATOMIC_ACQUIRE);
		if (!with && v[i] == KA_INBOX_CLOSED)
			__atomic_store_n(&tc->inbox[i], KA_INBOX_CLOSED, __ATOMIC_RELEASE);
		any |= inbox_chain(v[i]) != NULL;
	}
	return any;
}

/* Give the chains of inbox words v[] (take_inbox) back to the slabs. */
static void inbox_to_slabs(const uintptr_t *v)
{
	for (unsigned i = 0; i < KA_INBOX_SLOTS; i++)
		chain_to_slabs(inbox_chain(v[i]));
}

/* The owner's drain, at its refills and flushes: no atomic unless posted
 * to. A post refused since the last drain raises the inbox's bound (the
 * inbox may be empty: the first bound is 0). */
static void drain_own(struct ka_tcache *tc)
{
	if (KA_UNLIKELY(ka_load_relaxed(&tc->inbox_refused))) {
		ka_store_relaxed(&tc->inbox_refused, 0);
		uint32_t m = tc->inbox_max ? tc->inbox_max * 2 : (uint32_t)INBOX_MIN_BYTES;
		uint32_t cap = ka_load_relaxed(&inbox_cap);
		ka_store_relaxed(&tc->inbox_max, m < cap ? m : cap);
		tc->inbox_used = true;
	}
	uintptr_t v[KA_INBOX_SLOTS];
	if (!take_inbox(tc, v, 0))
		return;
	tc->inbox_used = true;
	drain_inbox(tc, v);
}

/* ------------------------------------------------------------ life cycle */

void ka_tcache_flush_all(void)
{
	if (tc_state != TC_LIVE)
		return;
	struct ka_tcache *tc = ka_tc;
	post_all(tc);
	drain_own(tc);
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		flush(tc, c, 0);
}

/*
 * malloc_trim: besides the caller's own cache, what other threads were
 * sent and have not taken gives back too, and every other thread flushes
 * its whole cache at its next tick (no thread may touch another's bins). Taking another cache's inbox is
 * a drain like its owner's (one exchange): it is freed to the slabs.
 */
void ka_tcache_trim(void)
{
	__atomic_fetch_add(&trim_epoch, 1, __ATOMIC_RELAXED);
	ka_tcache_flush_all();
	pthread_mutex_lock(&tcaches_lock);
	for (struct ka_list *e = live.next; e != &live; e = e->next) {
		struct ka_tcache *tc = ka_container_of(e, struct ka_tcache, node);
		uintptr_t v[KA_INBOX_SLOTS];
		if (take_inbox(tc, v, 0))
			inbox_to_slabs(v);
	}
	pthread_mutex_unlock(&tcaches_lock);
}

static void retire(struct ka_tcache *tc)
{
	__atomic_store_n(&tc->id, 0, __ATOMIC_RELEASE);
	post_all(tc);
	uintptr_t v[KA_INBOX_SLOTS];
	take_inbox(tc, v, KA_INBOX_CLOSED);
	drain_inbox(tc, v);
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		flush(tc, c, 0);
	pthread_mutex_lock(&tcaches_lock);
	ka_list_del(&tc->node);
	ka_list_add(&spare, &tc->node);
	nr_live--;
	set_inbox_cap_locked();
	pthread_mutex_unlock(&tcaches_lock);
}

void ka_tcache_thread_exit(void)
{
	if (tc_state != TC_LIVE)
		return;
	struct ka_tcache *tc = ka_tc;
	ka_tc = &empty_tcache;
	tc_state = TC_DEAD;
	retire(tc);
}

/*
 * Housekeeping, driven by allocation: every KA_TICK_BYTES a thread
 * allocates (on the fast path: one subtract and one branch) or spends in
 * slow paths (ka_tcache_charge: refills, flushes, frees of large blocks,
 * remote frees, every call of a cacheless thread or a debug mode), it
 *  - gives free pages older than purge_delay_ms back to the OS and ages the
 *    cache of freed huge mappings, so that memory goes back while the
 *    program runs on its fast paths;
 *  - every GC_TICKS ticks, returns half of every bin that neither refilled
 *    nor flushed since the last such pass and halves a grown one's maximum
 *    (a bin in use keeps its objects; an idle one decays by half a pass),
 *    and sends its outboxes on. Every
 *    tick would cost ring/512 19 instructions an operation in refills of
 *    bins that were only balanced, not idle; every 8th costs ~2;
 *  - gives back page lists idle since the last tick (pcp.c);
 *  - refreshes the published stats.
 * It runs with no kalloc lock held. A thread that stops calling kalloc does
 * not tick: what it keeps is bounded by its bins (KA_TCACHE_BYTES, 4 MiB;
 * 1.9 MiB unless some grew), page lists (512 KiB), outboxes (8 x 32 KiB)
 * and what others may post to its inbox (its bound: 0 unless it drained
 * after a refused post, INBOX_MAX_BYTES, 4 MiB, at most): 8.75 MiB in all,
 * plus the rest of the slabs its objects sit in.
 */
/*
 * The optional background thread (background_thread:1): it purges at the
 * decay rate when the program makes no call at all. It is started from a
 * tick, so with no kalloc lock held (pthread_create allocates), with every
 * signal blocked so that it never takes one meant for the program's
 * threads; it sleeps holding no lock and madvises only through the purge
 * paths, which drop their locks first. A fork child never starts one: a
 * child that execs would pay for nothing, and some sandboxed children may
 * not create threads. If creation fails, one warning, and none is tried
 * again.
 */
enum { BG_OFF, BG_STARTING, BG_RUNNING, BG_NEVER };
static int bg_state;

static void *background(void *arg)
{
	(void)arg;
	for (;;) {
		uint64_t ms = ka_opt.purge_delay_ms / 2;
		struct timespec ts = {0, (long)((ms < 10 ? 10 : ms > 999 ? 999 : ms) * 1000000)};
		nanosleep(&ts, NULL);
		ka_buddy_purge(false); /* not bounded to a batch, as a tick's purge is */
		ka_large_purge(false);
	}
	return NULL;
}

static void start_background(void)
{
	int off = BG_OFF;
	if (!__atomic_compare_exchange_n(&bg_state, &off, BG_STARTING, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		return;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 64 << 10);
	int err = pthread_create(&t, &a, background, NULL);
	pthread_attr_destroy(&a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	__atomic_store_n(&bg_state, err ? BG_NEVER : BG_RUNNING, __ATOMIC_RELEASE);
	if (err)
		ka_warn("background_thread: cannot create the thread, going on without it", NULL);
}

/* A bin unused since the last pass: half its objects go back, and it
 * shrinks halfway back to its start. */
static void gc_bin(struct ka_tcache *tc, unsigned cls)
{
	uint32_t start = bin_start(cls), m = tc->max[cls] / 2u > start ? tc->max[cls] / 2u : start;
	uint32_t half = ka_bin_count(tc, cls) / 2;
	flush(tc, cls, half < m ? half : m);
	if (m < tc->max[cls]) {
		set_max(tc, cls, m);
		if (tc->fill[cls] > fill_max(tc, cls))
			tc->fill[cls] = (uint16_t)fill_max(tc, cls);
	}
}

static void housekeeping(void)
{
	if (tc_state == TC_LIVE) {
		struct ka_tcache *tc = ka_tc;
		uint32_t epoch = __atomic_load_n(&trim_epoch, __ATOMIC_RELAXED);
		post_all(tc);
		drain_own(tc);
		bool gc = ++ticks % GC_TICKS == 0;
		bool keeps = tc->remote_bytes >= KEEP_BYTES;
		tc->remote_bytes = 0;
		if (keeps != tc->keeps) {
			tc->keeps = keeps;
			for (unsigned c = 1; c < KA_NR_CLASSES; c++)
				if (tc->busy[c] & BUSY_KEEP)
					tc->busy[c] ^= BUSY_KEEPS;
		}
		if (gc) {
			uint32_t m = tc->inbox_max, cap = ka_load_relaxed(&inbox_cap);
			if (!tc->inbox_used && m > INBOX_MIN_BYTES)
				m /= 2;
			if (m > cap) /* threads were added */
				m = cap;
			if (m != tc->inbox_max) /* posters read its line */
				ka_store_relaxed(&tc->inbox_max, m);
			tc->inbox_used = false;
		}
		for (unsigned c = 1; c < KA_NR_CLASSES && (gc || epoch != seen_epoch); c++) {
			uint8_t was = tc->busy[c];
			if (epoch != seen_epoch)
				flush(tc, c, 0);
			else if (!(was & (BUSY_REFILL | BUSY_FLUSH)))
				gc_bin(tc, c);
			/* A bin that only overflowed in this pass (a consumer's)
			 * stops keeping remote frees; one that refilled, or was
			 * balanced, keeps on. */
			tc->busy[c] = (was & (BUSY_KEEP | BUSY_REFILL | BUSY_FLUSH)) == (BUSY_KEEP | BUSY_FLUSH)
					      ? 0
					      : was & (BUSY_KEEP | BUSY_KEEPS);
		}
		seen_epoch = epoch;
	}
	ka_pcp_tick();
	ka_buddy_maybe_purge();
	ka_large_purge(false);
	if (ka_opt.publish)
		ka_stats_publish();
	if (KA_UNLIKELY(ka_opt.background_thread) && ka_load_relaxed(&bg_state) == BG_OFF)
		start_background();
}

static void tick(void)
{
	ka_tls.tick = KA_TICK_BYTES;
	housekeeping();
}

/*
 * prof:1 (prof.c) shares the countdown: it runs out at the nearer of the
 * next tick and the next sample. Both clocks count the fast path's bytes,
 * which are the countdown's own; each also counts bytes of its own:
 * housekeeping the charged work (ka_tcache_charge), the sample clock the
 * slow allocations' bytes (ka_tcache_count; housekeeping counts those by
 * malloc_slow's charge, or not at all, as with prof:0). So each clock is
 * the countdown plus a slack: it has tick + slack bytes left, and a slow
 * path's bytes come off its own slack first; only what exceeds it brings
 * the countdown (the nearer deadline) forward, and adds to the other's
 * slack. The countdown thus runs out only when a sample or a tick is due,
 * and the allocation that takes the sample clock below zero is the one
 * sampled. With one count for both, slow allocations made housekeeping
 * tick half as often again where large blocks dominate, and the countdown
 * ran out three times for each sample or tick due (bench/wl/frag quick
 * under callgrind: 11% more instructions, in the ticks' purges and
 * page-list drains, then 1.5% in settling). The sample clock's slack is
 * in ka_tls, for the inline count (tcache.h); s_left is its bytes left
 * when the countdown was last armed (what prof.c's clock is told is
 * counted since). A thread's first slow allocation (every thread's
 * first: its cache is empty) settles at once, so that its first sample is
 * drawn from its start.
 */
static __thread int64_t s_left = KA_TICK_BYTES;

/* The countdown ran out under prof:1: true if the allocation just counted is sampled. */
static bool settle(void)
{
	int64_t slack = ka_tls.s_slack < 0 ? ka_tls.s_slack - KA_S_UNARMED : ka_tls.s_slack;
	int64_t s = ka_tls.tick + slack, hk = ka_tls.tick + ka_tls.hk_slack;
	bool sample = ka_prof_clock(s_left - s);
	bool due = hk < 0;
	if (due)
		hk = KA_TICK_BYTES;
	s = s_left = ka_prof_left();
	/* Armed before the housekeeping, which may allocate (pthread_create). */
	int64_t next = s < hk ? s : hk;
	ka_tls.tick = next;
	ka_tls.s_slack = s - next;
	ka_tls.hk_slack = hk - next;
	if (due)
		housekeeping();
	return sample;
}

void *ka_tcache_tick_after(void *p, size_t n)
{
	if (KA_UNLIKELY(ka_prof_on)) {
		/* malloc tail-calls here: this frame is the program's call site,
		 * which the sample reads, so no tail call out of it (the barrier). */
		if (settle()) {
			p = ka_prof_sample(p, n, (const uintptr_t *)__builtin_frame_address(0));
			__asm__ volatile("" : "+r"(p));
		}
		return p;
	}
	tick();
	return p;
}

void *ka_tcache_count_slow(void *p, size_t n, const uintptr_t *site)
{
	if (ka_tls.s_slack < 0) {
		settle(); /* arms the clocks */
		return p ? ka_tcache_count(p, n, site) : p;
	}
	if (!p)
		return p;
	/* The countdown ran out: a sample or a tick is due. */
	if (settle())
		return ka_prof_sample(p, n, site);
	return p;
}

/* ka_tcache_charge's count of b under prof:1: housekeeping's slack first,
 * the rest brings the countdown forward (never a sample: the countdown is
 * at most the sample clock's deadline). True: a tick is due. */
KA_INLINE bool charge_count(int64_t b)
{
	if (b <= ka_tls.hk_slack) {
		ka_tls.hk_slack -= b;
		return false;
	}
	b -= ka_tls.hk_slack;
	ka_tls.hk_slack = 0;
	ka_tls.s_slack += b;
	return (ka_tls.tick -= b) < 0;
}

/* ka_tcache_charge under prof:1 (out of line: prof:0's path is as it was). */
static KA_NOINLINE void charge_prof(int64_t b)
{
	if (charge_count(b))
		settle();
}

void ka_tcache_charge(size_t bytes)
{
	int64_t b = (int64_t)(bytes < KA_TICK_BYTES ? bytes : KA_TICK_BYTES);
	if (KA_UNLIKELY(ka_prof_on))
		charge_prof(b);
	else if ((ka_tls.tick -= b) < 0)
		tick();
}

void *ka_tcache_malloc_slow(size_t n)
{
	ka_init();
	if (n > KA_SMALL_MAX)
		return ka_large_alloc(n, KA_PAGE_SIZE, false);
	unsigned cls = ka_size_class[(n + 7) >> 3];
	struct ka_tcache *tc = tcache_get();
	if (!tc)
		return ka_cache_alloc(&ka_kmalloc[cls]);
	struct ka_bin *b = &tc->bins[cls];
	bin_head(tc, cls); /* checked before a drain links objects onto it */
	post_all(tc);
	drain_own(tc);
	if (b->head == KA_LIST_END)
		refill(tc, cls);
	return b->head != KA_LIST_END ? pop(b, cls) : NULL;
}

/*
 * The slow path's checks of a pointer into slab s, for every caller (free,
 * realloc, malloc_usable_size): it must be an object start (not inside an
 * object, not in the slab's tail) and not marked free. A marked object is
 * free wherever it waits (a bin of any thread, an outbox, an inbox, its
 * slab), so a match is fatal without a search: that is what catches the
 * second free of an object that another thread freed first.
 */
static void check_object(void *p, struct ka_slab *s, const char *func, const char *freed)
{
	struct ka_cache *c = s->cache;
	if (!ka_slab_obj_ok(s, p))
		ka_fatal(func, "invalid pointer (not the start of an object)", p, c->name);
	if (ka_obj_marked_free(c, p))
		ka_fatal(func, freed, p, c->name);
}

void ka_tcache_check_live(void *p, struct ka_slab *s, const char *func)
{
	check_object(p, s, func, "use of a freed block");
}

/* A free of a kmalloc object of cls, tagged tag, marked free here:
 * into the bin (a full one, the fast path's only other way here), the
 * owner's outbox, or the freeing cache's bin after adopting the slab. */
static void free_small(struct ka_tcache *tc, void *p, uint32_t tag, unsigned cls)
{
	((uint64_t *)p)[1] = ka_key_of(p);
	for (;;) {
		uint32_t owner = tag >> 8;
		if (owner == tc->id8 >> 8) {
			post_all(tc);
			drain_own(tc);
			bin_take(tc, cls, p);
			return;
		}
		/* An outbox already queued for this owner needs no second look at
		 * its id: a post copes with an owner that retired since (its inbox
		 * is closed), as it must for one that retires after the post. */
		struct ka_outbox *ob = &tc->out[owner & (KA_OUTBOXES - 1)];
		bool queue = ob->count && ob->owner == owner;
		if (!queue && owner)
			queue = owner_live(owner);
		if (queue) {
			queue_remote(tc, p, owner, cls);
			return;
		}
		/* No owner, or a retired one: the slab becomes ours. */
		if (ka_slab_adopt(ka_slab_of(p), owner, tc->id8 >> 8)) {
			bin_take(tc, cls, p);
			return;
		}
		tag = ka_tag_of((uintptr_t)p);
	}
}

/*
 * The common remote free, when it is all it takes: p (cls, tagged tag) onto
 * the outbox already queued for its owner (see free_small), with no post,
 * so no lock, no system call and errno untouched. False: nothing was done.
 * It is not charged to housekeeping's clock: an object queued on an outbox
 * is charged when the outbox is posted (ka_tcache_free_slow), so this path
 * reads no clock under either prof setting. (Charged here, under prof:1 it
 * took the clocks' slack apart for each object: 9 instructions a remote
 * free, prodcons +2.8% instructions in all.)
 */
KA_INLINE bool free_remote_quick(struct ka_tcache *tc, void *p, uint32_t tag, unsigned cls)
{
	uint32_t owner = tag >> 8, size = ka_classes[cls].size;
	struct ka_outbox *ob = &tc->out[owner & (KA_OUTBOXES - 1)];
	/* Queued, so not for this cache (nothing is ever queued for its own
	 * owner), and live: a cache that is not (empty_tcache, or one still
	 * being created) has nothing queued. */
	if (!ob->count || ob->owner != owner || outbox_fills(ob, size))
		return false;
	((uint64_t *)p)[1] = ka_key_of(p);
	outbox_push(tc, ob, p, size);
	return true;
}

/*
 * A slow free's look-up and checks for a kmalloc object (check_object's, by
 * the class alone, with no descriptor read): its class, or 0 if p is no
 * kmalloc object; its tag in *tag either way (0 outside slabs). Misuse is
 * fatal, naming func.
 */
KA_INLINE unsigned small_checked(void *p, const char *func, uint32_t *tag)
{
	uintptr_t a = (uintptr_t)p;
	*tag = ka_tag_fast(a);
	if (!*tag) { /* not a slab's in the flat table: the radix tree says what it is */
		uintptr_t e = ka_map_entry(a);
		if (!e)
			ka_fatal(func, "invalid pointer (not from kalloc)", p, NULL);
		*tag = ka_entry_tag(e, a);
	}
	unsigned cls = ka_tag_class(*tag);
	if (!cls || cls >= KA_NR_CLASSES)
		return 0;
	if (!ka_class_obj_ok(cls, a))
		ka_fatal(func, "invalid pointer (not the start of an object)", p, ka_classes[cls].name);
	if (((uint64_t *)p)[1] == ka_key_of(p))
		ka_fatal(func, "double free of", p, ka_classes[cls].name);
	return cls;
}

/* A slow free past small_checked (its class and tag of p). */
static void free_checked(void *p, const char *func, uint32_t tag, unsigned cls)
{
	if (cls) {
		/* A kmalloc object: the bin, the owner's outbox or an adoption;
		 * the slabs under their lock for a cacheless thread. */
		struct ka_tcache *tc = tcache_get();
		size_t charge = ka_classes[cls].size;
		if (tc) {
			/* What left the outboxes (posted here, with what was queued
			 * on them since: free_remote_quick charges nothing), this
			 * object unless it stays queued. */
			size_t queued = tc->out_bytes + charge;
			free_small(tc, p, tag, cls);
			charge = queued - tc->out_bytes;
		} else {
			ka_cache_free(&ka_kmalloc[cls], p, func);
		}
		if (charge)
			ka_tcache_charge(charge);
		return;
	}
	struct ka_slab *s = tag ? ka_slab_of(p) : NULL;
	if (!s) {
		ka_large_free(p, func);
		ka_tcache_charge(KA_TCACHE_FREE_CHARGE);
		return;
	}
	/* An object of a user cache (kmem_cache_create). */
	check_object(p, s, func, "double free of");
	ka_cache_free(s->cache, p, func);
	ka_tcache_charge(KA_SMALL_MAX);
}

void ka_tcache_free_slow(void *p, const char *func)
{
	if (!p)
		return;
	uint32_t tag;
	unsigned cls = small_checked(p, func, &tag); /* sets tag: not in free_checked's arguments, read in any order */
	free_checked(p, func, tag, cls);
}

/* free_checked keeping errno: what follows may make a system call. */
static KA_NOINLINE void free_checked_errno(void *p, const char *func, uint32_t tag, unsigned cls)
{
	int saved = errno;
	free_checked(p, func, tag, cls);
	errno = saved;
}

/* The quick path needs no frame: the rest is a tail call, with the look-up
 * and the checks made once (they were made twice, the call's return
 * tested in api.c: 17 instructions a remote free, callgrind). */
/*
 * A remote free of a class this thread keeps (cls, BUSY_KEEPS; see the top
 * of this file): into its bin if the bin has room and the owner is live.
 * A retired owner's object goes on to free_small, which adopts its slab,
 * so that the slab's later frees are local ones, not each kept here again.
 * Out of line, and a tail call: the path that keeps nothing saves no more
 * registers for it.
 */
static KA_NOINLINE void free_remote_keep(void *p, const char *func, uint32_t tag, unsigned cls)
{
	struct ka_tcache *tc = ka_tc;
	if (tc->bins[cls].room && owner_live(tag >> 8)) {
		((uint64_t *)p)[1] = ka_key_of(p);
		link_in(&tc->bins[cls], p);
		if ((ka_classes[cls].size & (LINE - 1)) == 0)
			tc->remote_bytes += ka_classes[cls].size;
		return;
	}
	if (!free_remote_quick(tc, p, tag, cls))
		free_checked_errno(p, func, tag, cls);
}

void ka_tcache_free_remote(void *p, const char *func)
{
	uint32_t tag;
	unsigned cls = small_checked(p, func, &tag);
	if (KA_LIKELY(cls != 0)) {
		/* empty_tcache's busy[] is 0: a thread without a cache keeps nothing. */
		if (ka_tc->busy[cls] & BUSY_KEEPS) {
			free_remote_keep(p, func, tag, cls);
			return;
		}
		if (free_remote_quick(ka_tc, p, tag, cls))
			return;
	}
	free_checked_errno(p, func, tag, cls);
}

uint32_t ka_tcache_ticks(void) { return ticks; }

size_t ka_tcache_held_bytes(void)
{
	size_t bytes = 0;
	pthread_mutex_lock(&tcaches_lock);
	for (struct ka_list *e = live.next; e != &live; e = e->next) {
		struct ka_tcache *tc = ka_container_of(e, struct ka_tcache, node);
		for (unsigned c = 1; c < KA_NR_CLASSES; c++) {
			/* Read racily: never below zero. */
			uint32_t m = ka_load_relaxed(&tc->max[c]), r = ka_load_relaxed(&tc->bins[c].room);
			bytes += (size_t)(r < m ? m - r : 0) * ka_classes[c].size;
		}
		bytes += ka_load_relaxed(&tc->out_bytes) + ka_tcache_inbox_bytes(tc);
	}
	pthread_mutex_unlock(&tcaches_lock);
	return bytes;
}

void ka_tcache_validate(void)
{
	if (tc_state != TC_LIVE)
		return;
	struct ka_tcache *tc = ka_tc;
	for (unsigned c = 1; c < KA_NR_CLASSES; c++) {
		struct ka_bin *b = &tc->bins[c];
		uint32_t n = 0;
		for (void *o = bin_head(tc, c); o != KA_LIST_END; o = next_of(o, c), n++)
			if (n >= ka_bin_count(tc, c) || chain_class(o) != c || !ka_obj_marked_free(&ka_kmalloc[c], o))
				ka_fatal("ka_tcache_validate", "bad object in a bin at", o, ka_classes[c].name);
		if (n != ka_bin_count(tc, c))
			ka_fatal("ka_tcache_validate", "bin count wrong", b->head, ka_classes[c].name);
	}
	size_t out = 0;
	for (unsigned i = 0; i < KA_OUTBOXES; i++) {
		struct ka_outbox *ob = &tc->out[i];
		size_t units = 0, n = 0;
		void *last = NULL;
		for (void *o = ob->head; o && n < ob->count; o = chain_next(o), n++) {
			unsigned c = chain_class(o);
			if (!ka_obj_marked_free(&ka_kmalloc[c], o))
				ka_fatal("ka_tcache_validate", "unmarked object in an outbox at", o, NULL);
			units += ka_classes[c].size >> 4;
			last = o;
		}
		if (n != ob->count || units != ob->units || last != ob->tail ||
		    (ob->count && (ob->owner & (KA_OUTBOXES - 1)) != i))
			ka_fatal("ka_tcache_validate", "outbox counts wrong", ob->head, NULL);
		out += units << 4;
	}
	if (out != tc->out_bytes)
		ka_fatal("ka_tcache_validate", "outbox bytes wrong", NULL, NULL);
	for (unsigned i = 0; i < KA_INBOX_SLOTS; i++) {
		uintptr_t v = __atomic_load_n(&tc->inbox[i], __ATOMIC_ACQUIRE);
		size_t bytes = 0;
		for (void *o = inbox_chain(v); o; o = chain_next(o)) {
			unsigned c = chain_class(o);
			if (!ka_obj_marked_free(&ka_kmalloc[c], o))
				ka_fatal("ka_tcache_validate", "unmarked object in the inbox at", o, NULL);
			bytes += ka_classes[c].size;
		}
		if (bytes > KA_INBOX_BYTES(v)) /* posts may land while we walk: never fewer counted */
			ka_fatal("ka_tcache_validate", "inbox count wrong", (void *)KA_INBOX_PTR(v), NULL);
	}
}

void ka_tcache_prefork(void) { pthread_mutex_lock(&tcaches_lock); }

void ka_tcache_postfork(bool child)
{
	if (!child) {
		pthread_mutex_unlock(&tcaches_lock);
		return;
	}
	pthread_mutex_init(&tcaches_lock, NULL);
	bg_state = BG_NEVER; /* the background thread is the parent's alone */
	/*
	 * The other threads are gone in the child, but one of them may have
	 * been halfway through a fast-path push or pop, or an outbox push (no
	 * lock is held there), so their bins and outboxes cannot be trusted:
	 * they are abandoned, not flushed, and what they held (at most a few
	 * hundred KiB a thread) stays allocated in the child. Their inboxes
	 * can: a chain is private until the one exchange that publishes it
	 * whole. They are closed and given back, and the caches read as
	 * retired, so frees into their slabs adopt them.
	 */
	for (struct ka_list *e = live.next, *nx; e != &live; e = nx) {
		nx = e->next;
		struct ka_tcache *tc = ka_container_of(e, struct ka_tcache, node);
		if (tc == ka_tc)
			continue;
		ka_list_del(e);
		nr_live--;
		tc->id = 0;
		uintptr_t v[KA_INBOX_SLOTS];
		take_inbox(tc, v, KA_INBOX_CLOSED);
		inbox_to_slabs(v);
	}
	set_inbox_cap_locked();
}
