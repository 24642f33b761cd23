/*
 * stats.c: what kalloc holds, in the kernel's formats and in totals, for
 * malloc_stats(), mallinfo2(), KALLOC_CONF=stats:1 (the same report at
 * exit) and publish:1 (the same figures in /dev/shm for tools/kalloc-top).
 *
 * Nothing here is counted on the fast path: the figures are read from the
 * state the slow paths keep anyway (cache counts, free areas, mappings)
 * and from the OS layer's counters. "In use by the program" is what left
 * the slabs minus what sits in thread caches, plus large blocks not in
 * per-thread page lists: exact up to the objects in flight between a
 * thread cache and its slab, and the blocks of lists being pushed or
 * popped while they are read.
 */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "shm.h"
#include "tcache.h"

struct slab_sum {
	size_t slab_bytes, slab_used;
};

static void add_cache(const struct ka_cache *c, const struct ka_cache_info *in, void *arg)
{
	struct slab_sum *s = arg;
	s->slab_bytes += in->num_slabs * (KA_PAGE_SIZE << c->order);
	s->slab_used += in->active_objs * c->slot;
}

void ka_totals(struct ka_totals *t)
{
	struct ka_os_counters oc;
	struct ka_buddy_stats bs;
	struct ka_large_stats ls;
	struct slab_sum ss = {0, 0};
	ka_os_counters(&oc);
	ka_cache_walk(add_cache, &ss);
	ka_buddy_stats(&bs);
	ka_large_stats(&ls);
	memset(t, 0, sizeof *t);
	t->mapped = oc.mapped_heap;
	t->peak_mapped = oc.peak_heap;
	t->meta = oc.mapped_meta;
	t->returned = oc.returned;
	t->slab_bytes = ss.slab_bytes;
	t->slab_used = ss.slab_used;
	t->tcache = ka_tcache_held_bytes();
	if (t->tcache > t->slab_used)
		t->tcache = t->slab_used;
	size_t used_pages = bs.managed_pages - bs.free_pages;
	size_t slab_pages = ss.slab_bytes >> KA_PAGE_SHIFT;
	t->large_used = used_pages > slab_pages ? (used_pages - slab_pages) << KA_PAGE_SHIFT : 0;
	t->pcp = ka_pcp_held_bytes();
	if (t->pcp > t->large_used)
		t->pcp = t->large_used;
	t->large_used -= t->pcp;
	t->huge_used = ls.huge_bytes;
	t->huge_cached = ls.cached_bytes;
	t->nr_huge = ls.nr_huge;
	t->nr_cached = ls.nr_cached;
	t->buddy_free = bs.free_pages << KA_PAGE_SHIFT;
	t->buddy_clean = bs.clean_pages << KA_PAGE_SHIFT;
}

/* "12.34 MiB", right-aligned in width. */
static void buf_mib(struct ka_buf *b, size_t bytes, int width)
{
	uint64_t centi = ((uint64_t)bytes * 100 + (1 << 19)) >> 20;
	char mem[32];
	struct ka_buf t = {mem, 0, sizeof mem};
	ka_buf_u64(&t, centi / 100, 0);
	ka_buf_str(&t, ".");
	ka_buf_u64(&t, centi % 100 / 10, 0);
	ka_buf_u64(&t, centi % 10, 0);
	ka_buf_str(&t, " MiB");
	mem[t.len] = 0;
	ka_buf_ustr(b, "", width - (int)t.len > 0 ? width - (int)t.len : 0);
	ka_buf_str(b, mem);
}

static void line(struct ka_buf *b, const char *label, size_t bytes, const char *more, size_t extra)
{
	ka_buf_str(b, "  ");
	ka_buf_ustr(b, label, 24);
	buf_mib(b, bytes, 12);
	if (more) {
		ka_buf_str(b, more);
		buf_mib(b, extra, 0);
	}
	ka_buf_str(b, "\n");
}

void ka_stats_print(int fd)
{
	struct ka_totals t;
	ka_totals(&t);
	ka_slabinfo_print(fd, false);
	char mem[1536];
	struct ka_buf b = {mem, 0, sizeof mem};
	ka_buf_str(&b, "\nbuddyinfo: free blocks per order (order n = 2^n pages of 4 KiB; 10 = 4 MiB)\n"
		       "                      ");
	for (int o = 0; o < KA_NR_ORDERS; o++)
		ka_buf_u64(&b, (uint64_t)o, 7);
	ka_buf_str(&b, "\n");
	ka_buf_flush(&b, fd);
	ka_buddy_print(fd);
	ka_buf_str(&b, "\nlarge: ");
	buf_mib(&b, t.large_used, 0);
	ka_buf_str(&b, " in buddy pages; ");
	ka_buf_u64(&b, t.nr_huge, 0);
	ka_buf_str(&b, " mappings of ");
	buf_mib(&b, t.huge_used, 0);
	ka_buf_str(&b, "; ");
	ka_buf_u64(&b, t.nr_cached, 0);
	ka_buf_str(&b, " freed mappings cached, ");
	buf_mib(&b, t.huge_cached, 0);
	ka_buf_str(&b, "\n\ntotals\n");
	line(&b, "mapped from the OS", t.mapped, "   peak ", t.peak_mapped);
	line(&b, "in use by the program", ka_totals_in_use(&t), "   of which large ", t.large_used + t.huge_used);
	line(&b, "in per-thread caches", t.tcache, NULL, 0);
	line(&b, "in per-thread page lists", t.pcp, NULL, 0);
	line(&b, "free in slabs", t.slab_bytes - t.slab_used, NULL, 0);
	line(&b, "free in the buddy", t.buddy_free, "   of which not resident ", t.buddy_clean);
	line(&b, "returned to the OS", t.returned, "   in all; metadata mapped ", t.meta);
	/* Said, since a program that holds the table's address (or a tool that
	 * does, or ulimit -v) makes every free slow with no other sign. */
	ka_buf_str(&b, ka_load_relaxed(&ka_tags_limit)
			       ? "free fast path: on (flat tag table reserved)\n"
			       : "free fast path: off (flat tag table not reserved: every free takes the slow path)\n");
	ka_buf_flush(&b, fd);
}

/* ------------------------------------------------------------ publishing */

static pthread_mutex_t publish_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ka_shm *shm;
static char shm_path[48];
static uint64_t next_publish;

static void shm_cache(const struct ka_cache *c, const struct ka_cache_info *in, void *arg)
{
	struct ka_shm *m = arg;
	if (m->ncaches >= KA_SHM_CACHES || (in->num_slabs == 0 && c->cls == 0))
		return;
	struct ka_shm_cache *sc = &m->caches[m->ncaches++];
	memcpy(sc->name, c->name, sizeof sc->name);
	sc->name[sizeof sc->name - 1] = 0;
	sc->active_objs = in->active_objs;
	sc->num_objs = in->num_objs;
	sc->objsize = c->slot;
	sc->objperslab = c->objs;
	sc->pagesperslab = (uint64_t)1 << c->order;
	sc->active_slabs = in->active_slabs;
	sc->num_slabs = in->num_slabs;
}

static bool shm_open_own(void)
{
	struct ka_buf b = {shm_path, 0, sizeof shm_path - 1};
	ka_buf_str(&b, "/dev/shm/kalloc.");
	ka_buf_u64(&b, (uint64_t)getpid(), 0);
	shm_path[b.len] = 0;
	shm = ka_os_map_file(shm_path, sizeof *shm);
	if (!shm) {
		ka_warn("publish: cannot create", shm_path);
		ka_opt.publish = 0;
		return false;
	}
	shm->magic = KA_SHM_MAGIC;
	shm->version = KA_SHM_VERSION;
	shm->pid = (uint32_t)getpid();
	return true;
}

void ka_stats_publish(void)
{
	uint64_t now = ka_os_now_ms();
	if (now < __atomic_load_n(&next_publish, __ATOMIC_RELAXED) || pthread_mutex_trylock(&publish_lock))
		return;
	if (!ka_opt.publish || now < next_publish || (!shm && !shm_open_own())) {
		pthread_mutex_unlock(&publish_lock);
		return;
	}
	__atomic_store_n(&next_publish, now + KA_SHM_PERIOD_MS, __ATOMIC_RELAXED);
	struct ka_totals t;
	ka_totals(&t);
	size_t counts[KA_NR_ORDERS];
	ka_buddy_info(counts);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	__atomic_store_n(&shm->seq, shm->seq + 1, __ATOMIC_RELAXED); /* odd: writing */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	shm->time_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	shm->updates++;
	shm->mapped = t.mapped;
	shm->peak_mapped = t.peak_mapped;
	shm->meta = t.meta;
	shm->returned = t.returned;
	shm->slab_bytes = t.slab_bytes;
	shm->slab_used = t.slab_used;
	shm->tcache = t.tcache;
	shm->large_used = t.large_used;
	shm->huge_used = t.huge_used;
	shm->huge_cached = t.huge_cached;
	shm->buddy_free = t.buddy_free;
	shm->buddy_clean = t.buddy_clean;
	for (int o = 0; o < KA_NR_ORDERS && o < KA_SHM_ORDERS; o++)
		shm->buddy[o] = counts[o];
	shm->ncaches = 0;
	ka_cache_walk(shm_cache, shm);
	__atomic_store_n(&shm->seq, shm->seq + 1, __ATOMIC_RELEASE); /* even: done */
	pthread_mutex_unlock(&publish_lock);
}

void ka_stats_prefork(void) { pthread_mutex_lock(&publish_lock); }

void ka_stats_postfork(bool child)
{
	if (child && shm) {
		/* The mapping is the parent's file: the child publishes its own. */
		ka_os_unmap_file(NULL, shm, sizeof *shm);
		shm = NULL;
		next_publish = 0;
	}
	ka_postfork_unlock(&publish_lock, child);
}

/*
 * At exit: the report (stats:1, or stats_file:PATH, which implies it), and
 * the published file goes away. Library destructors run after the
 * program's atexit handlers, which may have closed stderr: the report
 * goes to what stderr was at start-up (report.c), or to the stats file.
 */
__attribute__((destructor)) static void stats_at_exit(void)
{
	if (!ka_ready)
		return;
	if (ka_opt.stats || ka_opt.stats_file[0]) {
		int file = ka_opt.stats_file[0] ? ka_report_open(ka_opt.stats_file) : -1;
		int fd = file >= 0 ? file : ka_report_fd();
		char mem[96];
		struct ka_buf b = {mem, 0, sizeof mem};
		ka_buf_str(&b, "kalloc: stats at exit of pid ");
		ka_buf_u64(&b, (uint64_t)getpid(), 0);
		ka_buf_str(&b, " (KALLOC_CONF=stats:1)\n");
		ka_buf_flush(&b, fd);
		if (fd >= 0)
			ka_stats_print(fd);
		if (file >= 0)
			close(file);
	}
	if (shm) {
		pthread_mutex_lock(&publish_lock);
		ka_os_unmap_file(shm_path, shm, sizeof *shm);
		shm = NULL;
		ka_opt.publish = 0;
		pthread_mutex_unlock(&publish_lock);
	}
}
