/*
 * stack.c: what leak.c and prof.c both record about an allocation: the
 * stack that made it (a frame-pointer walk bounded to the thread's stack
 * mapping), interned in a table of stack records, and a table of blocks by
 * address. Nothing here allocates but from ka_meta_alloc, and nothing
 * takes a lock: each table belongs to its owner, who holds its own lock
 * around every call that names the table.
 */
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "internal.h"

__thread uintptr_t ka_stack_lo, ka_stack_hi;

/* kalloc's own text: frames in it are not the program's. */
static uintptr_t text_lo, text_hi;

uint64_t ka_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

uintptr_t ka_parse_hex(const char **s)
{
	uintptr_t v = 0;
	for (;; (*s)++) {
		char c = **s;
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
			   : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 16;
		if (d == 16)
			return v;
		v = v << 4 | d;
	}
}

/*
 * Linux 6.11's PROCMAP_QUERY (linux/fs.h; Debian 12's headers predate it,
 * so the ABI is spelled here): an ioctl on an open /proc/self/maps that
 * returns the one mapping holding an address, with no text made. A
 * thread's first sample looks up its stack (bench/wl/shortthreads: 1,918
 * look-ups, one thread in ten): timed apart, in a small process, the text
 * read took 19 us and more with every mapping, the query 5 us, most of it
 * the open. A kernel without it answers ENOTTY once; it is not asked again.
 */
struct ka_procmap_query {
	uint64_t size, query_flags, query_addr;
	uint64_t vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
	uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
	uint64_t vma_name_addr, build_id_addr;
};
#define KA_PROCMAP_QUERY _IOWR('f', 17, struct ka_procmap_query)

static bool no_query; /* the kernel answered that it has no such query */

/* 1: found, 0: no mapping holds a, -1: the kernel has no such query. */
static int mapping_query(int fd, uintptr_t a, uintptr_t *lo, uintptr_t *hi)
{
	struct ka_procmap_query q = {.size = sizeof q, .query_addr = a};
	if (ka_load_relaxed(&no_query))
		return -1;
	if (ioctl(fd, KA_PROCMAP_QUERY, &q) == 0) {
		*lo = (uintptr_t)q.vma_start;
		*hi = (uintptr_t)q.vma_end;
		return 1;
	}
	if (errno == ENOENT)
		return 0;
	if (errno == ENOTTY || errno == EINVAL)
		ka_store_relaxed(&no_query, true);
	return -1;
}

/*
 * The same from the text, read into a stack buffer (no stdio, no
 * allocation: pthread_getattr_np allocates and reads the same file
 * through stdio). Only a line's leading "start-end" matters: the rest is
 * skipped with memchr, not looked at byte by byte (a byte loop took
 * 42,000 instructions a read in shortthreads, this 8,000). Lines are
 * sorted by address: the first that ends above a ends the search, and
 * only its start is parsed. The buffer is not a page: a page-sized read
 * ends at a line's end, so that only a rare long line would take the
 * partial-line path (t/stack meets it at every size of line).
 */
static bool mapping_read(int fd, uintptr_t a, uintptr_t *lo, uintptr_t *hi)
{
	char buf[2048];
	size_t have = 0; /* bytes of buf from the start of the current line */
	bool found = false, done = false;
	while (!done) {
		ssize_t r = read(fd, buf + have, sizeof buf - have);
		if (r <= 0)
			break;
		size_t end = have + (size_t)r, at = 0;
		for (;;) {
			const char *nl = memchr(buf + at, '\n', end - at);
			if (!nl) {
				/* A partial line: its head (enough for the range) waits
				 * for the rest, of which only the newline matters. */
				have = end - at < 64 ? end - at : 64;
				memmove(buf, buf + at, have);
				break;
			}
			const char *s = buf + at, *dash = memchr(s, '-', (size_t)(nl - s));
			at = (size_t)(nl - buf) + 1;
			if (!dash)
				continue;
			/* The first line that ends above a holds it, or none does. */
			const char *e = dash + 1;
			uintptr_t stop = ka_parse_hex(&e);
			if (a >= stop)
				continue;
			uintptr_t start = ka_parse_hex(&s);
			if (start <= a) {
				*lo = start;
				*hi = stop;
				found = true;
			}
			done = true;
			break;
		}
	}
	return found;
}

bool ka_mapping_of_how(uintptr_t a, uintptr_t *lo, uintptr_t *hi, bool text)
{
	int saved = errno, got = 0, fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		got = text ? -1 : mapping_query(fd, a, lo, hi);
		if (got < 0)
			got = mapping_read(fd, a, lo, hi);
		close(fd);
	}
	errno = saved;
	return got > 0;
}

bool ka_mapping_of(uintptr_t a, uintptr_t *lo, uintptr_t *hi) { return ka_mapping_of_how(a, lo, hi, false); }

void ka_stack_bounds(void)
{
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0), lo = 0, hi = 0;
	/* A stack inside kalloc's heap (a thread on a malloc'd stack) is left unknown. */
	if (ka_mapping_of(sp, &lo, &hi) && ka_map_entry(sp) == 0) {
		ka_stack_lo = lo;
		ka_stack_hi = hi;
	}
}

/* kalloc's text, from its own program headers (the linker's __ehdr_start);
 * none when kalloc is linked into the program itself. */
extern const ElfW(Ehdr) __ehdr_start __attribute__((visibility("hidden")));

void ka_stack_init(void)
{
	const ElfW(Ehdr) *eh = &__ehdr_start;
	const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(const void *)((const char *)eh + eh->e_phoff);
	if ((uintptr_t)ph == getauxval(AT_PHDR) || text_hi)
		return;
	uintptr_t bias = 0;
	bool first = true;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		if (first)
			bias = (uintptr_t)eh - (ph[i].p_vaddr - ph[i].p_offset);
		first = false;
		if (ph[i].p_flags & PF_X) {
			uintptr_t lo = bias + ph[i].p_vaddr, hi = lo + ph[i].p_memsz;
			if (!text_lo || lo < text_lo)
				text_lo = lo;
			if (hi > text_hi)
				text_hi = hi;
		}
	}
}

static bool in_kalloc(uintptr_t ra) { return ra >= text_lo && ra < text_hi; }

/*
 * Return addresses of the calling thread, frame-pointer walk: each frame
 * must lie above the last, 8-aligned and inside the thread's stack
 * mapping (ka_stack_bounds), so the walk reads only that mapping and never
 * faults. Frames in kalloc itself are left out. Code built without frame
 * pointers breaks the chain: its stacks come out short (or, when a
 * register happens to look like a frame, wrong past the first frame).
 */
KA_NOINLINE unsigned ka_stack_walk(uintptr_t *out, const uintptr_t *site)
{
	unsigned n = 0;
	uintptr_t fp = site ? (uintptr_t)site : (uintptr_t)__builtin_frame_address(0), lo = fp;
	if (fp < ka_stack_lo || fp >= ka_stack_hi) {
		/* A stack kalloc does not know (a coroutine's, a signal stack):
		 * only the call site, from api.c's own frame. */
		if (site && !in_kalloc(site[1]))
			out[n++] = site[1];
		return n;
	}
	while (n < KA_STACK_DEPTH && !(fp & 7) && fp >= lo && fp <= ka_stack_hi - 16) {
		const uintptr_t *f = (const uintptr_t *)fp;
		uintptr_t next = f[0], ra = f[1];
		if (ra < KA_PAGE_SIZE)
			break;
		if (!in_kalloc(ra))
			out[n++] = ra;
		lo = fp + 16;
		fp = next;
	}
	return n;
}

/* Records are never removed and their frames never change, so a reader
 * that found one may use it with the table's lock dropped. */
struct ka_stack *ka_stack_get(struct ka_stacks *t, const uintptr_t *frames, unsigned n)
{
	uint64_t h = n;
	for (unsigned i = 0; i < n; i++)
		h = ka_mix(h ^ frames[i]) + i;
	if (t->n >= t->mask + 1 || !t->buckets) {
		size_t cap = t->buckets ? (t->mask + 1) * 2 : 1024;
		struct ka_stack **nb = ka_meta_alloc(cap * sizeof *nb, 64);
		if (nb) {
			for (struct ka_stack *s = t->all; s; s = s->all) {
				size_t b = s->hash & (cap - 1);
				s->next = nb[b];
				nb[b] = s;
			}
			t->buckets = nb;
			t->mask = cap - 1;
		} else if (!t->buckets) {
			return NULL;
		}
	}
	struct ka_stack **bucket = &t->buckets[h & t->mask];
	for (struct ka_stack *s = *bucket; s; s = s->next)
		if (s->hash == h && s->depth == n && !memcmp(s->frame, frames, n * sizeof *frames))
			return s;
	struct ka_stack *s = ka_meta_alloc(sizeof *s, 16);
	if (!s)
		return NULL;
	s->hash = h;
	s->depth = n;
	memcpy(s->frame, frames, n * sizeof *frames);
	s->next = *bucket;
	s->all = t->all;
	__atomic_store_n(bucket, s, __ATOMIC_RELEASE);
	__atomic_store_n(&t->all, s, __ATOMIC_RELEASE);
	t->n++;
	return s;
}

/* ------------------------------------------------------------ blocks */

static size_t home(const struct ka_blocks *t, uintptr_t a) { return (size_t)ka_mix(a >> 4) & t->mask; }

/* Field by field, from scalars: a struct copy goes through vector
 * registers, where a block's address outlives the call (a lazy-binding
 * trampoline later spills them to the stack, which leak:1 scans). */
KA_INLINE void insert(struct ka_blocks *t, uintptr_t addr, size_t size, void *rec)
{
	size_t i = home(t, addr);
	while (t->slot[i].addr)
		i = (i + 1) & t->mask;
	t->slot[i].addr = addr;
	t->slot[i].size = size;
	t->slot[i].rec = rec;
	t->n++;
}

bool ka_blocks_add(struct ka_blocks *t, uintptr_t addr, size_t size, void *rec)
{
	if (!t->slot || t->n + 1 > (t->mask + 1) / 2) {
		size_t cap = t->slot ? (t->mask + 1) * 2 : 4096, old_cap = t->slot ? t->mask + 1 : 0;
		struct ka_block *nb = ka_meta_alloc(cap * sizeof *nb, 64), *old = t->slot;
		if (!nb)
			return false;
		t->slot = nb;
		t->mask = cap - 1;
		t->n = 0;
		for (size_t i = 0; i < old_cap; i++)
			if (old[i].addr)
				insert(t, old[i].addr, old[i].size, old[i].rec);
	}
	insert(t, addr, size, rec);
	return true;
}

/* The slot of a, or of the empty slot that ends its run. */
static size_t slot_of(const struct ka_blocks *t, uintptr_t a)
{
	size_t i = home(t, a);
	while (t->slot[i].addr && t->slot[i].addr != a)
		i = (i + 1) & t->mask;
	return i;
}

struct ka_block *ka_blocks_find(struct ka_blocks *t, uintptr_t a)
{
	if (!t->slot)
		return NULL;
	struct ka_block *b = &t->slot[slot_of(t, a)];
	return b->addr ? b : NULL;
}

bool ka_blocks_remove(struct ka_blocks *t, uintptr_t a, struct ka_block *out)
{
	if (!t->slot)
		return false;
	size_t i = slot_of(t, a);
	if (!t->slot[i].addr)
		return false;
	if (out)
		*out = t->slot[i];
	/* Backward shift: pull later entries of the run into the hole unless
	 * their home lies cyclically in (hole, j]. */
	for (size_t j = i;;) {
		j = (j + 1) & t->mask;
		if (!t->slot[j].addr)
			break;
		size_t k = home(t, t->slot[j].addr);
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		t->slot[i] = t->slot[j];
		i = j;
	}
	t->slot[i].addr = 0;
	t->n--;
	return true;
}
