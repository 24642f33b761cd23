/*
 * prof.c: KALLOC_CONF=prof:1, a sampled heap profile in the gperftools
 * heap-profile text format, which google-pprof and jeprof read.
 *
 * Sampling. Allocated bytes are points of a Poisson process of rate
 * 1/prof_sample: each thread draws exponentially distributed intervals
 * (its own PRNG; -ln(u) computed here, no libm), and the allocation that
 * takes the thread past its interval is sampled, so an allocation of n
 * bytes is sampled with probability 1 - exp(-n / prof_sample). The bytes
 * are counted by the countdown that drives housekeeping (tcache.c,
 * settle): it is armed to run out at the nearer of the next tick and the
 * next sample, so an unsampled malloc pays nothing more than without prof,
 * and with prof:0 nothing here is reached at all. Bytes counted: what
 * malloc, calloc, realloc (when it moves), memalign and operator new
 * allocate; a realloc resized in place counts nothing.
 *
 * A sampled block must be told apart by free at no cost to its
 * neighbours, so:
 *  - a slab object is swapped for a page block of its own (as tcmalloc
 *    does): the object goes back to its bin and the program gets whole
 *    pages, a large block whose head descriptor carries KA_PGF_SAMPLED.
 *    Its tag is 0, so free's fast path sends it to the slow path, which
 *    reaches large.c; nothing else pays. malloc_usable_size reports the
 *    pages (the program may use them all);
 *  - a large block gets KA_PGF_SAMPLED on its head, a huge mapping its
 *    `sampled` flag;
 *  - large.c's free clears the flag and calls ka_prof_free before the
 *    block goes back, so that an address is never in the table twice;
 *  - realloc of a sampled large block keeps it sampled: resized in place
 *    (large.c; a huge mapping is copied instead), its bytes follow (without
 *    a lock while its pages stay as many, ka_prof_resize) and its record
 *    moves to its new size's line when they do, so a block that grows
 *    where it is neither drops out of the profile nor is copied at each
 *    step (strbuild copied twice the bytes when a sampled block always
 *    moved); moved, the old one is freed and the new
 *    one sampled or not on its own count. A sampled small block (a page
 *    block) moves when it shrinks or grows past its pages, as realloc of
 *    a small size from a page block always does.
 * Debug modes place blocks their own way: prof:1 is refused with them.
 *
 * Tables, under prof_lock (first in the lock order; the metadata lock may
 * be taken under it, no other): the live sampled blocks by address
 * (ka_blocks: size asked for, site), and the sites, interned as stacks
 * (stack.c) whose frame[0] is the size class and the rest the return
 * addresses of a frame-pointer walk, so that a line of the profile never
 * mixes size classes (the tools unbias each line by its average size).
 * A site keeps raw sampled counts: live objects and bytes, and all ever
 * sampled. Sites are never removed.
 *
 * Dumps (at exit to prof_file, kalloc_prof_dump, prof_step) hold
 * dump_lock, which only dumps take, for their scratch; they copy the
 * sites' counts out under prof_lock and write with no lock but dump_lock
 * held. A fork child inherits the table (the parent's blocks are the
 * child's too) and writes its own file, named by its own pid.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "tcache.h"

bool ka_prof_on;

static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;
/* Adaptive (spins a while before it sleeps): its holders hold it for a few
 * hundred instructions, and as a plain mutex every contended take was a
 * futex wait and wake (bench/wl/larson at 2 threads under prof:1: 3,852
 * futex calls; 838 with this lock adaptive, 291 with the zone lock's too,
 * as many as under prof:0). */
static pthread_mutex_t prof_lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
/* rec: the site; size: as sampled, or at the last change of line (a page
 * block's size now is its descriptor's, large.size, which frees pass in) */
static struct ka_blocks blocks;
static struct ka_stacks sites;
static uint64_t inuse_est;  /* prof_step: unbiased estimate of the sampled blocks' bytes */
static uint64_t high_water; /* of inuse_est at the last prof_step dump */
static unsigned step_seq;
static uint64_t dropped;    /* samples the tables could not take (metadata refused) */

static __thread uint64_t rng;
static __thread int64_t left; /* bytes to the next sample, once primed */
static __thread bool primed, in_sample, bounds_tried;

/* ------------------------------------------------------------ arithmetic */

#define LN2 0.69314718055994530942

/* ln(x) for x > 0 normal: x = m 2^e with m in [1, 2), ln m = 2 atanh(t)
 * with t = (m - 1) / (m + 1) <= 1/3; terms to t^13: error below 1e-8. */
static double ln(double x)
{
	uint64_t bits;
	memcpy(&bits, &x, sizeof bits);
	int e = (int)((bits >> 52) & 0x7ff) - 1023;
	bits = (bits & ((1ull << 52) - 1)) | (1023ull << 52);
	double m;
	memcpy(&m, &bits, sizeof m);
	double t = (m - 1) / (m + 1), t2 = t * t;
	/* Horner's rule with the coefficients 1/k folded at compile time (a
	 * loop over k divided at run time: 7 divisions, 127 instructions a
	 * draw in bench/wl/frag). */
	double sum = ((((((1.0 / 13 * t2 + 1.0 / 11) * t2 + 1.0 / 9) * t2 + 1.0 / 7) * t2 + 1.0 / 5) * t2 + 1.0 / 3) * t2 + 1);
	return e * LN2 + 2 * t * sum;
}

/* exp(-x) for x >= 0: 2^-k exp(-r), r in [0, ln 2), Taylor to r^14. */
static double exp_neg(double x)
{
	if (x > 700)
		return 0;
	int k = (int)(x / LN2);
	double r = x - k * LN2, sum = 1;
	for (int i = 14; i >= 1; i--)
		sum = 1 - sum * r / i;
	uint64_t bits = (uint64_t)(1023 - k) << 52;
	double scale;
	memcpy(&scale, &bits, sizeof scale);
	return sum * scale;
}

/* What a sample of n bytes stands for: n / P(sampled), as the tools unbias. */
static uint64_t weight(size_t n)
{
	double x = (double)n / (double)ka_opt.prof_sample;
	return x > 40 ? n : (uint64_t)((double)n / (1 - exp_neg(x)) + 0.5);
}

/* Seeds drawn so far, mixed into each: a joined thread's successor often has
 * its TLS at the same address, and seeded from the address alone it drew
 * the same intervals, so that short-lived threads were sampled all or none
 * (bench/wl/shortthreads: 0 or 500 samples in 2000 threads, never ~200). A
 * fork child starts its own sequence, from its pid. */
static uint64_t seeds;

static uint64_t next_random(void)
{
	if (KA_UNLIKELY(!rng)) {
		uint64_t n = __atomic_add_fetch(&seeds, 1, __ATOMIC_RELAXED);
		rng = ka_mix(ka_secret ^ (uintptr_t)__builtin_thread_pointer() ^ ka_mix(n)) | 1;
	}
	/* xorshift64* */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

/* An exponentially distributed interval of mean prof_sample bytes. */
static int64_t draw(void)
{
	double u = (double)((next_random() >> 11) + 1) * (1.0 / 9007199254740992.0); /* (0, 1] */
	return (int64_t)(-ln(u) * (double)ka_opt.prof_sample);
}

bool ka_prof_clock(int64_t used)
{
	if (KA_UNLIKELY(!primed)) {
		primed = true;
		left = draw();
	}
	left -= used;
	if (left >= 0)
		return false;
	/* A fresh interval from the end of this allocation: by the process's
	 * lack of memory, the same as one from the sampled byte. */
	left = draw();
	return true;
}

int64_t ka_prof_left(void) { return left; }

/* ------------------------------------------------------------ sampling */

/* The size class of a line: a kmalloc class, else whole pages. */
static uintptr_t size_class(size_t n)
{
	if (n <= KA_SMALL_MAX)
		return ka_classes[ka_size_class[(n + 7) >> 3]].size;
	return (n + KA_PAGE_SIZE - 1) & ~(uintptr_t)(KA_PAGE_SIZE - 1);
}

/* Mark p sampled, swapping a slab object for a page block; NULL if a page
 * block cannot be had (p is then left as it is, unsampled). *head: the
 * block's head descriptor, NULL for a huge mapping. */
static void *mark_sampled(void *p, size_t n, struct ka_page **head)
{
	uintptr_t a = (uintptr_t)p, e = ka_map_entry(a);
	*head = NULL;
	if (e & KA_MAP_HUGE) {
		ka_store_relaxed(&((struct ka_huge *)(e & ~KA_MAP_TAGS))->sampled, 1);
		return p;
	}
	void *q = p;
	if (ka_load_relaxed(ka_map_tag(e, a))) {
		q = ka_large_alloc_sampled(n);
		if (!q)
			return NULL;
		if (!ka_tcache_free(p))
			ka_tcache_free_slow(p, "malloc()");
	}
	struct ka_page *pg = ka_map_page(q);
	pg->large.prof = NULL;
	pg->flags |= KA_PGF_SAMPLED;
	*head = pg;
	return q;
}

static void dump_step(unsigned seq);

/* A site's live bytes: added to under prof_lock, and by resizes without it
 * (ka_prof_resize), so always atomically; size_t arithmetic, so a drop is
 * the negated count. */
static void add_bytes(struct ka_stack *st, size_t n)
{
	__atomic_fetch_add(&st->live_bytes, n, __ATOMIC_RELAXED);
}

void *ka_prof_sample(void *p, size_t n, const uintptr_t *site)
{
	if (in_sample)
		return p;
	in_sample = true;
	int saved = errno;
	struct ka_page *pg;
	void *q = mark_sampled(p, n, &pg);
	if (!q) {
		q = p;
		goto out;
	}
	if (!bounds_tried) {
		bounds_tried = true;
		ka_stack_bounds();
	}
	uintptr_t frames[KA_STACK_DEPTH + 1];
	unsigned depth = ka_stack_walk(frames + 1, site) + 1;
	frames[0] = size_class(n);
	if (depth > KA_STACK_DEPTH)
		depth = KA_STACK_DEPTH;
	unsigned step = 0;
	pthread_mutex_lock(&prof_lock);
	struct ka_stack *st = ka_stack_get(&sites, frames, depth);
	if (st && ka_blocks_add(&blocks, (uintptr_t)q, n, st)) {
		if (pg)
			pg->large.prof = st;
		st->live_n++;
		add_bytes(st, n);
		st->total_n++;
		st->total_bytes += n;
		uint64_t by = ka_opt.prof_step << 20;
		if (by) {
			inuse_est += weight(n);
			if (inuse_est >= high_water + by) {
				high_water = inuse_est;
				step = ++step_seq;
			}
		}
	} else {
		dropped++;
	}
	pthread_mutex_unlock(&prof_lock);
	if (step)
		dump_step(step);
out:
	in_sample = false;
	errno = saved;
	return q;
}

void ka_prof_free(void *p, size_t size)
{
	struct ka_block b;
	pthread_mutex_lock(&prof_lock);
	if (ka_blocks_remove(&blocks, (uintptr_t)p, &b)) {
		struct ka_stack *st = b.rec;
		st->live_n--;
		add_bytes(st, -size);
		if (ka_opt.prof_step)
			inuse_est -= weight(size);
	}
	pthread_mutex_unlock(&prof_lock);
}

/*
 * Within its line (the same pages: size_class) a resize changes only the
 * site's live bytes, so it takes no lock and no lookup: the site is in the
 * block's head descriptor, and the add is atomic against other blocks of
 * the site and the locked changes (strbuild resizes its sampled strings
 * 275,000 times in quick mode, at 140 instructions each under the lock).
 * Another line, or prof_step's estimate, takes the lock.
 */
static KA_NOINLINE void resize_locked(void *p, struct ka_page *pg, struct ka_stack *st, uintptr_t cls,
				      size_t old, size_t n)
{
	pthread_mutex_lock(&prof_lock);
	struct ka_block *b = ka_blocks_find(&blocks, (uintptr_t)p);
	struct ka_stack *to = NULL;
	if (b && cls != st->frame[0]) {
		/* Another size class: the same stack's line for it (the old line
		 * keeps the block if metadata is refused). */
		uintptr_t frames[KA_STACK_DEPTH];
		memcpy(frames, st->frame, st->depth * sizeof *frames);
		frames[0] = cls;
		to = ka_stack_get(&sites, frames, st->depth);
	}
	if (!to)
		to = st;
	if (b) {
		st->live_n--;
		add_bytes(st, -old);
		to->live_n++;
		add_bytes(to, n);
		if (ka_opt.prof_step)
			inuse_est = inuse_est - weight(old) + weight(n);
		b->rec = to;
		b->size = n;
		pg->large.prof = to;
	}
	pthread_mutex_unlock(&prof_lock);
}

void ka_prof_resize(void *p, struct ka_page *pg, size_t old, size_t n)
{
	struct ka_stack *st = pg->large.prof;
	if (!st)
		return; /* its sample was dropped */
	uintptr_t cls = size_class(n);
	if (cls == st->frame[0] && !ka_opt.prof_step)
		add_bytes(st, n - old);
	else
		resize_locked(p, pg, st, cls, old, n);
}

bool ka_prof_sampled(const void *p)
{
	uintptr_t e = ka_map_entry((uintptr_t)p);
	if (e & KA_MAP_HUGE)
		return ka_load_relaxed(&((struct ka_huge *)(e & ~KA_MAP_TAGS))->sampled);
	struct ka_page *pg = ka_map_page(p);
	return pg && pg->kind == KA_PG_LARGE && (pg->flags & KA_PGF_SAMPLED);
}

/* ------------------------------------------------------------ dumps */

/* A site's counts as copied out for a dump (its frames never change). */
struct line {
	const struct ka_stack *st;
	uint64_t live_n, live_bytes, total_n, total_bytes;
};

static struct line *scratch; /* dump_lock */
static size_t scratch_cap;

/* Output through a stack buffer; the first failed write is kept in err. */
struct out {
	int fd, err;
	struct ka_buf b;
};

static void out_flush(struct out *o)
{
	size_t off = 0;
	while (!o->err && off < o->b.len) {
		ssize_t w = write(o->fd, o->b.p + off, o->b.len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			o->err = w < 0 ? errno : EIO;
		else
			off += (size_t)w;
	}
	o->b.len = 0;
}

/* Room for one more line (16 frames of 18 characters and four counts). */
static void out_room(struct out *o)
{
	if (o->b.len + 512 > o->b.cap)
		out_flush(o);
}

static void put_counts(struct out *o, uint64_t n1, uint64_t s1, uint64_t n2, uint64_t s2)
{
	ka_buf_u64(&o->b, n1, 0);
	ka_buf_str(&o->b, ": ");
	ka_buf_u64(&o->b, s1, 0);
	ka_buf_str(&o->b, " [");
	ka_buf_u64(&o->b, n2, 0);
	ka_buf_str(&o->b, ": ");
	ka_buf_u64(&o->b, s2, 0);
	ka_buf_str(&o->b, "] @");
}

/*
 * The profile. Frames are return addresses; the tools subtract 1 from
 * every frame but the first (which they take for a sampled PC) to land in
 * the call instruction, so the first is written less 1 here: a call that
 * ends its function (a noreturn callee) would otherwise name the next one.
 */
static void write_profile(struct out *o, const struct line *l, size_t n)
{
	uint64_t t[4] = {0, 0, 0, 0};
	for (size_t i = 0; i < n; i++) {
		t[0] += l[i].live_n;
		t[1] += l[i].live_bytes;
		t[2] += l[i].total_n;
		t[3] += l[i].total_bytes;
	}
	ka_buf_str(&o->b, "heap profile: ");
	put_counts(o, t[0], t[1], t[2], t[3]);
	ka_buf_str(&o->b, " heap_v2/");
	ka_buf_u64(&o->b, ka_opt.prof_sample, 0);
	ka_buf_str(&o->b, "\n# kalloc prof:1: raw sampled counts, one line per stack and size class;"
		   " stacks from frame pointers (code built without them gives short stacks)\n");
	for (size_t i = 0; i < n; i++) {
		out_room(o);
		put_counts(o, l[i].live_n, l[i].live_bytes, l[i].total_n, l[i].total_bytes);
		for (uint32_t f = 1; f < l[i].st->depth; f++) {
			ka_buf_str(&o->b, " ");
			ka_buf_hex(&o->b, l[i].st->frame[f] - (f == 1));
		}
		ka_buf_str(&o->b, "\n");
	}
	ka_buf_str(&o->b, "\nMAPPED_LIBRARIES:\n");
	out_flush(o);
	int maps = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (maps < 0) {
		o->err = o->err ? o->err : errno;
		return;
	}
	ssize_t r;
	while ((r = read(maps, o->b.p, o->b.cap)) > 0) {
		o->b.len = (size_t)r;
		out_flush(o);
	}
	if (r < 0 && !o->err)
		o->err = errno;
	close(maps);
}

/* Dump to path: 0, or an errno value. dump_lock held. */
static int dump_locked(const char *path)
{
	size_t n;
	for (;;) {
		pthread_mutex_lock(&prof_lock);
		if (sites.n <= scratch_cap)
			break;
		size_t want = sites.n + sites.n / 4 + 64;
		pthread_mutex_unlock(&prof_lock);
		struct line *l = ka_meta_alloc(want * sizeof *l, 64);
		if (!l)
			return ENOMEM;
		scratch = l; /* the old one stays in the metadata, as tables do */
		scratch_cap = want;
	}
	n = 0;
	for (const struct ka_stack *st = sites.all; st; st = st->all)
		scratch[n++] = (struct line){st, st->live_n, __atomic_load_n(&st->live_bytes, __ATOMIC_RELAXED),
					     st->total_n, st->total_bytes};
	pthread_mutex_unlock(&prof_lock);

	int fd = ka_path_open(path, O_TRUNC);
	if (fd < 0)
		return errno;
	char mem[8192];
	struct out o = {fd, 0, {mem, 0, sizeof mem}};
	write_profile(&o, scratch, n);
	if (close(fd) != 0 && !o.err && errno != EINTR)
		o.err = errno;
	return o.err;
}

static int dump(const char *path)
{
	int saved = errno;
	pthread_mutex_lock(&dump_lock);
	int err = dump_locked(path);
	pthread_mutex_unlock(&dump_lock);
	errno = saved;
	return err;
}

/* prof_file, with ".seq" before a final ".heap" (or at the end) for seq > 0. */
static void profile_path(char *path, size_t cap, unsigned seq)
{
	ka_path_expand(ka_opt.prof_file, path, cap);
	if (!seq)
		return;
	size_t len = strlen(path);
	bool heap = len >= 5 && !strcmp(path + len - 5, ".heap");
	char tail[32];
	struct ka_buf b = {tail, 0, sizeof tail - 1};
	ka_buf_str(&b, ".");
	ka_buf_u64(&b, seq, 0);
	if (heap)
		ka_buf_str(&b, ".heap");
	tail[b.len] = 0;
	if (heap)
		len -= 5;
	if (len + b.len < cap) {
		memcpy(path + len, tail, b.len + 1);
	}
}

static void dump_step(unsigned seq)
{
	char path[KA_PATH_MAX];
	profile_path(path, sizeof path, seq);
	if (dump(path))
		ka_warn("prof_step: cannot write the profile", path);
}

int ka_prof_dump(const char *path)
{
	if (!ka_prof_on) {
		errno = ENOENT;
		return -1;
	}
	char name[KA_PATH_MAX];
	if (!path) {
		profile_path(name, sizeof name, 0);
		path = name;
	}
	int err = dump(path);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

__attribute__((destructor)) static void prof_at_exit(void)
{
	if (!ka_prof_on)
		return;
	char path[KA_PATH_MAX];
	profile_path(path, sizeof path, 0);
	if (dump(path))
		ka_warn("prof_file: cannot write the profile", path);
	if (dropped)
		ka_warn("prof: samples dropped (no memory for the table)", NULL);
}

/* ------------------------------------------------------------ life cycle */

void ka_prof_init(void)
{
	if (!ka_opt.prof)
		return;
	if (ka_debug_on) {
		ka_warn("prof:1 ignored: it does not combine with poison, redzone, consistency or leak", NULL);
		ka_opt.prof = 0;
		return;
	}
	ka_stack_init();
	ka_prof_on = true;
}

void ka_prof_prefork(void)
{
	pthread_mutex_lock(&dump_lock);
	pthread_mutex_lock(&prof_lock);
}

void ka_prof_postfork(bool child)
{
	if (child) {
		seeds = (uint64_t)getpid() << 32;
		rng = 0; /* the parent's thread goes on with the same draws */
	}
	ka_postfork_unlock(&prof_lock, child);
	ka_postfork_unlock(&dump_lock, child);
}
