/*
 * leak.c: the leak report of KALLOC_CONF=leak:1, after the kernel's
 * kmemleak: every live block is recorded with the stack that allocated it,
 * and at exit the blocks that no root reaches, directly or through other
 * reachable blocks, are reported, grouped by stack, biggest group first.
 *
 * Recording. leak:1 is a debug mode (debug.c): thread caches are off, so
 * every call reaches debug.c, which calls ka_leak_alloc after a block is
 * taken and ka_leak_free before it is given back (never with a kalloc lock
 * held). A live block is therefore always in the side table while its
 * memory is the program's: the scan never reads memory kalloc took back.
 *  - blocks: {address, requested size, stack} in a ka_blocks table, and
 *    stacks interned in a ka_stacks table (stack.c, shared with prof.c); a
 *    stack record's frames never change and it is never removed, so the
 *    report prints them after the locks are dropped. Frames are return
 *    addresses from a frame-pointer walk of the calling thread's stack
 *    (ka_stack_walk), from the frame record of the program's call that
 *    api.c passes down (KA_SITE).
 *  - threads: the first allocation of a thread records its stack mapping
 *    (ka_stack_bounds) and registers a thread-exit key, as tcache.c does. A
 *    thread whose key destructor ran is no longer a root.
 * One lock, leak_lock, first in the lock order (init.c): a recording takes
 * it with no other kalloc lock held, and may take the metadata lock under
 * it.
 *
 * The scan, at exit (a destructor, in the thread that calls exit):
 *  1. Roots, collected before any kalloc lock is taken: the writable
 *     PT_LOAD segments of every loaded object but kalloc itself, and the
 *     exiting thread's TLS blocks (dl_iterate_phdr: it takes the loader's
 *     write lock and calls no malloc), its stack from the current frame up
 *     (callee-saved registers spilled into it first), its thread control
 *     block, and the stack mappings of the other threads kalloc knows
 *     (glibc keeps their static TLS and control block at the top of that
 *     mapping). Roots are read with process_vm_readv, which fails instead
 *     of faulting if a range went away (struct range).
 *  2. With every kalloc lock held (ka_lock_all), the live blocks are copied
 *     into a sorted array (scratch from ka_meta_alloc, taken before), every
 *     aligned word of the roots that falls inside a live block, at its start
 *     or inside it, marks that block and pushes it on a work list; blocks are
 *     scanned from the list until it is empty (no recursion).
 *  3. The locks are dropped; unmarked blocks are summed per stack and
 *     printed to stderr, frames resolved to object+offset from the same
 *     dl_iterate_phdr walk (no dladdr, no loader lock).
 * Threads still running at exit cannot be stopped: their stacks are read as
 * they are, and the report says "partial". Memory the program maps itself
 * (mmap) is not a root.
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <setjmp.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

#define MAX_ROOTS 2048    /* root ranges from loaded objects and threads */
#define MAX_OBJS 1024     /* loaded objects, for naming frames */
#define TCB_SCAN 4096     /* bytes of the exiting thread's control block scanned */
/* An ended thread's stack stays in glibc's cache with its TLS vector (DTV,
 * malloc'd), which it reuses for the next thread: the words of its control
 * block up to the DTV pointer are a root (tcbhead_t: tcb, dtv, self). */
#define DEAD_TCB_SCAN (3 * sizeof(void *))
#define PAGE ((uintptr_t)KA_PAGE_SIZE)

/* A thread that allocated; live until its exit key's destructor ran. */
struct leak_thread {
	struct leak_thread *next;
	uintptr_t lo, hi; /* its stack mapping; 0, 0 when unknown */
	uintptr_t tp;     /* its thread pointer (glibc: the control block) */
	bool live;
};

static pthread_mutex_t leak_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ka_blocks blocks;
static struct ka_stacks stacks;
static size_t untracked; /* blocks the table could not take (metadata refused) */
static struct leak_thread *threads;
static pthread_key_t exit_key;

enum { TH_NONE, TH_JOINING, TH_KNOWN, TH_GONE };
static __thread uint8_t th_state;
static __thread struct leak_thread *th_self;

/* stderr as it was at start-up, kept for the report: programs close theirs
 * before exit (coreutils' close_stdout). Used only while it is still the
 * same file, so that a program that closed it and reused the number does
 * not get the report in its data. */
static int out_fd = -1;
static struct stat out_st;

/* ------------------------------------------------------------ threads */

static void thread_gone(void *arg)
{
	struct leak_thread *t = arg;
	pthread_mutex_lock(&leak_lock);
	t->live = false;
	pthread_mutex_unlock(&leak_lock);
	th_state = TH_GONE;
}

/*
 * A thread's first allocation: its stack mapping, and a record that the
 * scan reads. A stack inside kalloc's heap (a thread on a malloc'd stack)
 * is no root of its own: the block holding it is scanned if reachable.
 * pthread_setspecific may call calloc: that nested call finds TH_JOINING
 * and is recorded without joining again.
 */
static void thread_join(void)
{
	int saved = errno;
	th_state = TH_JOINING;
	ka_stack_bounds();
	struct leak_thread *t = NULL;
	pthread_mutex_lock(&leak_lock);
	for (struct leak_thread *u = threads; u && !t; u = u->next)
		if (!u->live)
			t = u;
	if (!t && (t = ka_meta_alloc(sizeof *t, 16))) {
		t->next = threads;
		threads = t;
	}
	if (t) {
		t->lo = ka_stack_lo;
		t->hi = ka_stack_hi;
		t->tp = (uintptr_t)__builtin_thread_pointer();
		t->live = true;
	}
	pthread_mutex_unlock(&leak_lock);
	th_self = t;
	if (t)
		pthread_setspecific(exit_key, t);
	th_state = TH_KNOWN;
	errno = saved;
}

/* ------------------------------------------------------------ recording */

void ka_leak_alloc(void *p, size_t size, const uintptr_t *site)
{
	if (th_state == TH_NONE)
		thread_join();
	uintptr_t frames[KA_STACK_DEPTH];
	unsigned n = ka_stack_walk(frames, site);
	pthread_mutex_lock(&leak_lock);
	struct ka_stack *st = ka_stack_get(&stacks, frames, n);
	if (!ka_blocks_add(&blocks, (uintptr_t)p, size, st))
		untracked++;
	pthread_mutex_unlock(&leak_lock);
}

void ka_leak_free(void *p)
{
	pthread_mutex_lock(&leak_lock);
	ka_blocks_remove(&blocks, (uintptr_t)p, NULL);
	pthread_mutex_unlock(&leak_lock);
}

/* ------------------------------------------------------------ roots */

/* A root. Every root is read through process_vm_readv, which fails where
 * a read would fault; if the system refuses that call (seccomp), the
 * exiting thread's own ranges and the loaded objects' are read directly
 * (mapped for as long as the object is loaded), other threads' not at all. */
struct range {
	uintptr_t lo, hi;
	bool other; /* another thread's: it may go away under the scan */
};

struct object {
	const char *name;
	uintptr_t base, lo, hi; /* load bias; span of its executable segments */
};

static struct range roots[MAX_ROOTS];
static struct object objs[MAX_OBJS];
static unsigned nr_roots, nr_objs;
static bool roots_cut; /* some root did not fit */

static void add_root(uintptr_t lo, uintptr_t hi, bool other)
{
	if (hi <= lo)
		return;
	if (nr_roots == MAX_ROOTS) {
		roots_cut = true;
		return;
	}
	roots[nr_roots++] = (struct range){lo, hi, other};
}

static int object_roots(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)arg;
	bool has_tls = size >= offsetof(struct dl_phdr_info, dlpi_tls_data) + sizeof info->dlpi_tls_data;
	uintptr_t own = (uintptr_t)&ka_opt, lo = 0, hi = 0;
	bool self = false;
	for (unsigned i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && own >= a && own < a + ph->p_memsz)
			self = true;
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			if (!lo || a < lo)
				lo = a;
			if (a + ph->p_memsz > hi)
				hi = a + ph->p_memsz;
		}
	}
	if (nr_objs < MAX_OBJS && hi)
		objs[nr_objs++] = (struct object){info->dlpi_name, info->dlpi_addr, lo, hi};
	if (self)
		return 0; /* kalloc's own lists point at what they manage */
	for (unsigned i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W))
			add_root(a, a + ph->p_memsz, false);
		if (ph->p_type == PT_TLS && has_tls && info->dlpi_tls_data)
			add_root((uintptr_t)info->dlpi_tls_data,
				 (uintptr_t)info->dlpi_tls_data + ph->p_memsz, false);
	}
	return 0;
}

/* Threads of the process (/proc/self/task), 0 if unknown. */
static unsigned count_tasks(void)
{
	int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char buf[4096];
	unsigned n = 0;
	long r;
	while ((r = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
		for (long off = 0; off < r;) {
			const struct dirent64 *d = (const struct dirent64 *)(const void *)(buf + off);
			if (d->d_name[0] != '.')
				n++;
			off += d->d_reclen;
		}
	close(fd);
	return n;
}

/* ------------------------------------------------------------ the scan */

struct live {
	uintptr_t addr, end;
	struct ka_stack *stack;
	size_t size;
	bool marked;
};

struct scan {
	struct live *live;
	size_t n;
	uint32_t *work;
	size_t nwork;
	uintptr_t lo, hi; /* of all live blocks */
	bool no_vm_read;  /* process_vm_readv refused */
	bool skipped;     /* so other threads' ranges were not read */
};

static void sift(struct live *a, size_t i, size_t n)
{
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			return;
		if (c + 1 < n && a[c + 1].addr > a[c].addr)
			c++;
		if (a[i].addr >= a[c].addr)
			return;
		struct live t = a[i];
		a[i] = a[c];
		a[c] = t;
		i = c;
	}
}

/* Heapsort by address: no recursion, no allocation. */
static void sort_live(struct live *a, size_t n)
{
	for (size_t i = n / 2; i-- > 0;)
		sift(a, i, n);
	for (size_t end = n; end-- > 1;) {
		struct live t = a[0];
		a[0] = a[end];
		a[end] = t;
		sift(a, 0, end);
	}
}

/* Word v: if it points into a live block (its start or inside), mark it. */
static void consider(struct scan *s, uintptr_t v)
{
	if (v < s->lo || v >= s->hi || ka_map_entry(v) == 0)
		return;
	size_t lo = 0, hi = s->n;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->live[mid].addr <= v)
			lo = mid;
		else
			hi = mid;
	}
	struct live *b = &s->live[lo];
	if (v >= b->addr && v < b->end && !b->marked) {
		b->marked = true;
		s->work[s->nwork++] = (uint32_t)lo;
	}
}

static void scan_words(struct scan *s, const void *mem, size_t bytes)
{
	const uintptr_t *w = mem;
	for (size_t i = 0; i < bytes / sizeof *w; i++)
		consider(s, w[i]);
}

/* A range that may not be mapped all through: page by page, copied. */
static void scan_copied(struct scan *s, uintptr_t lo, uintptr_t hi)
{
	pid_t pid = getpid();
	uintptr_t buf[PAGE / sizeof(uintptr_t)];
	for (uintptr_t a = lo; a < hi && !s->no_vm_read;) {
		size_t len = (size_t)((a | (PAGE - 1)) + 1 - a);
		if (len > hi - a)
			len = (size_t)(hi - a);
		struct iovec here = {buf, len}, there = {(void *)a, len};
		ssize_t r = process_vm_readv(pid, &here, 1, &there, 1, 0);
		if (r < 0 && (errno == ENOSYS || errno == EPERM))
			s->no_vm_read = true;
		if (r > 0)
			scan_words(s, buf, (size_t)r);
		a += len;
	}
}

static void scan_range(struct scan *s, uintptr_t lo, uintptr_t hi, bool other)
{
	lo = (lo + 7) & ~(uintptr_t)7;
	if (hi <= lo)
		return;
	if (!s->no_vm_read)
		scan_copied(s, lo, hi);
	if (!s->no_vm_read)
		return;
	/* Refused (from the first page: seccomp refuses all or nothing). */
	if (other)
		s->skipped = true;
	else
		scan_words(s, (const void *)lo, (size_t)(hi - lo));
}

/* Everything the marked blocks reach, from the work list. */
static void scan_closure(struct scan *s)
{
	while (s->nwork) {
		struct live *b = &s->live[s->work[--s->nwork]];
		scan_words(s, (const void *)b->addr, b->size);
	}
}

/* The exiting thread's own stack, from `from` up: scanned first, before the
 * scan's own locals hold anything the program allocated. */
static KA_NOINLINE void mark(struct scan *s, uintptr_t from)
{
	if (from >= ka_stack_lo && from < ka_stack_hi)
		scan_words(s, (const void *)from, ka_stack_hi - from);
	for (unsigned i = 0; i < nr_roots; i++) {
		consider(s, roots[i].lo); /* a TLS block may itself be a live block */
		scan_range(s, roots[i].lo, roots[i].hi, roots[i].other);
	}
	for (struct leak_thread *t = threads; t; t = t->next)
		if (t->live && t != th_self && t->hi)
			scan_range(s, t->lo, t->hi, true);
		else if (!t->live && t->tp && !ka_map_entry(t->tp))
			scan_range(s, t->tp, t->tp + DEAD_TCB_SCAN, true);
	scan_closure(s);
}

/* ------------------------------------------------------------ the report */

static void put_frame(struct ka_buf *b, uintptr_t ra)
{
	ka_buf_str(b, "    [<");
	ka_buf_hex(b, ra);
	ka_buf_str(b, ">]");
	for (unsigned i = 0; i < nr_objs; i++)
		if (ra >= objs[i].lo && ra < objs[i].hi) {
			const char *name = objs[i].name && *objs[i].name ? objs[i].name
					   : program_invocation_short_name;
			const char *slash = strrchr(name, '/');
			ka_buf_str(b, " ");
			ka_buf_str(b, slash ? slash + 1 : name);
			ka_buf_str(b, "+");
			ka_buf_hex(b, ra - objs[i].base);
			break;
		}
	ka_buf_str(b, "\n");
}

static void put_group(const struct ka_stack *st, int fd)
{
	char mem[2048];
	struct ka_buf b = {mem, 0, sizeof mem};
	ka_buf_str(&b, "unreferenced object ");
	ka_buf_hex(&b, st->first);
	ka_buf_str(&b, " (size ");
	ka_buf_u64(&b, st->first_size, 0);
	ka_buf_str(&b, "):\n  comm \"");
	ka_buf_str(&b, program_invocation_short_name);
	ka_buf_str(&b, "\", pid ");
	ka_buf_u64(&b, (uint64_t)getpid(), 0);
	ka_buf_str(&b, "\n  objects from this stack: ");
	ka_buf_u64(&b, st->count, 0);
	ka_buf_str(&b, ", ");
	ka_buf_u64(&b, st->bytes, 0);
	ka_buf_str(&b, " bytes\n  backtrace:\n");
	if (!st->depth)
		ka_buf_str(&b, "    (no frames)\n");
	for (unsigned i = 0; i < st->depth; i++)
		put_frame(&b, st->frame[i]);
	ka_buf_flush(&b, fd);
}

/* Unmarked blocks into their stacks' sums; the stacks with any, biggest first. */
static size_t gather(struct scan *s, struct ka_stack **groups, size_t cap, struct ka_stack *none)
{
	for (struct ka_stack *st = stacks.all; st; st = st->all)
		st->count = st->bytes = 0;
	none->count = none->bytes = 0;
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++) {
		struct live *b = &s->live[i];
		if (b->marked)
			continue;
		struct ka_stack *st = b->stack ? b->stack : none;
		if (!st->count++) {
			st->first = b->addr;
			st->first_size = b->size;
			if (n < cap)
				groups[n++] = st;
		}
		st->bytes += b->size;
	}
	/* Insertion sort: groups are few next to blocks. */
	for (size_t i = 1; i < n; i++) {
		struct ka_stack *g = groups[i];
		size_t j = i;
		for (; j > 0 && groups[j - 1]->bytes < g->bytes; j--)
			groups[j] = groups[j - 1];
		groups[j] = g;
	}
	return n;
}

static void report(int fd, struct ka_stack **groups, size_t n, unsigned others, size_t nlive,
		   bool skipped)
{
	size_t objects = 0, bytes = 0;
	for (size_t i = 0; i < n; i++) {
		put_group(groups[i], fd);
		objects += groups[i]->count;
		bytes += groups[i]->bytes;
	}
	char mem[512];
	struct ka_buf b = {mem, 0, sizeof mem};
	ka_buf_str(&b, "kalloc: leak report: ");
	ka_buf_u64(&b, objects, 0);
	ka_buf_str(&b, " unreferenced objects, ");
	ka_buf_u64(&b, bytes, 0);
	ka_buf_str(&b, " bytes, from ");
	ka_buf_u64(&b, n, 0);
	ka_buf_str(&b, " stacks; ");
	ka_buf_u64(&b, nlive, 0);
	ka_buf_str(&b, " live blocks scanned\n");
	if (others || untracked || roots_cut || skipped) {
		ka_buf_str(&b, "kalloc: leak report is partial:");
		if (others) {
			ka_buf_str(&b, " ");
			ka_buf_u64(&b, others, 0);
			ka_buf_str(&b, " other threads still running;");
		}
		if (untracked) {
			ka_buf_str(&b, " ");
			ka_buf_u64(&b, untracked, 0);
			ka_buf_str(&b, " blocks untracked (metadata refused);");
		}
		if (roots_cut)
			ka_buf_str(&b, " too many root ranges;");
		if (skipped)
			ka_buf_str(&b, " other threads' stacks not read (process_vm_readv refused);");
		ka_buf_str(&b, "\n");
	}
	ka_buf_flush(&b, fd);
}

static bool same_file(int fd)
{
	struct stat st;
	return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == out_st.st_dev && st.st_ino == out_st.st_ino;
}

static int report_fd(void) { return same_file(out_fd) ? out_fd : 2; }

/*
 * The whole report. __builtin_unwind_init and setjmp put the callee-saved
 * registers (which may hold the program's pointers) into this frame, which
 * lies inside the stack range mark() scans.
 */
static KA_NOINLINE void leak_report(void)
{
	jmp_buf regs;
	__builtin_unwind_init();
	setjmp(regs);
	unsigned tasks = count_tasks();
	uintptr_t lo, hi;
	if (!ka_stack_hi && ka_mapping_of((uintptr_t)&regs, &lo, &hi) && !ka_map_entry((uintptr_t)&regs)) {
		ka_stack_lo = lo; /* the exiting thread never allocated */
		ka_stack_hi = hi;
	}
	nr_roots = nr_objs = 0;
	roots_cut = false;
	dl_iterate_phdr(object_roots, NULL);
	/* The control block of the exiting thread (for the main thread it is
	 * not in its stack mapping): pthread_setspecific values live there. */
	uintptr_t tp = (uintptr_t)__builtin_thread_pointer();
	if (ka_mapping_of(tp, &lo, &hi))
		add_root(tp, tp + TCB_SCAN < hi ? tp + TCB_SCAN : hi, false);

	struct scan s;
	memset(&s, 0, sizeof s);
	struct ka_stack **groups = NULL, none;
	memset(&none, 0, sizeof none);
	size_t cap_blocks = 0, cap_stacks = 0;
	for (int tries = 0;; tries++) {
		pthread_mutex_lock(&leak_lock);
		size_t nb = blocks.n, ns = stacks.n;
		pthread_mutex_unlock(&leak_lock);
		if (nb > cap_blocks || ns + 1 > cap_stacks) {
			cap_blocks = nb + nb / 8 + 64;
			cap_stacks = ns + ns / 8 + 64;
			s.live = ka_meta_alloc(cap_blocks * sizeof *s.live, 64);
			s.work = ka_meta_alloc(cap_blocks * sizeof *s.work, 64);
			groups = ka_meta_alloc(cap_stacks * sizeof *groups, 64);
			if (!s.live || !s.work || !groups) {
				ka_warn("leak report", "no memory for the scan");
				return;
			}
		}
		ka_lock_all();
		if ((blocks.n <= cap_blocks && stacks.n + 1 <= cap_stacks) || tries == 3)
			break;
		ka_unlock_all();
	}
	for (size_t i = 0; blocks.slot && i <= blocks.mask && s.n < cap_blocks; i++)
		if (blocks.slot[i].addr) {
			struct live *l = &s.live[s.n++];
			l->addr = blocks.slot[i].addr;
			l->size = blocks.slot[i].size;
			l->end = l->addr + (l->size ? l->size : 1);
			l->stack = blocks.slot[i].rec;
			l->marked = false;
		}
	untracked += blocks.n - s.n; /* the tables outgrew the scratch: not scanned */
	sort_live(s.live, s.n);
	if (s.n) {
		s.lo = s.live[0].addr;
		for (size_t i = 0; i < s.n; i++)
			if (s.live[i].end > s.hi)
				s.hi = s.live[i].end;
	}
	mark(&s, (uintptr_t)&regs);
	size_t n = gather(&s, groups, cap_stacks, &none);
	size_t nlive = s.n;
	ka_unlock_all();
	report(report_fd(), groups, n, tasks > 1 ? tasks - 1 : 0, nlive, s.skipped);
}

__attribute__((destructor)) static void leak_at_exit(void)
{
	static bool done;
	if (!ka_ready || !ka_opt.leak || done)
		return;
	done = true;
	leak_report();
}

/* ------------------------------------------------------------ life cycle */

void ka_leak_init(void)
{
	if (!ka_opt.leak)
		return;
	ka_stack_init();
	pthread_key_create(&exit_key, thread_gone);
	int fd = fcntl(2, F_DUPFD_CLOEXEC, 100);
	if (fd >= 0 && fstat(fd, &out_st) == 0)
		out_fd = fd;
	else if (fd >= 0)
		close(fd);
}

void ka_leak_prefork(void) { pthread_mutex_lock(&leak_lock); }

void ka_leak_postfork(bool child)
{
	if (child) {
		/* Only the forking thread lives on in the child. */
		for (struct leak_thread *t = threads; t; t = t->next)
			if (t != th_self)
				t->live = false;
	}
	ka_postfork_unlock(&leak_lock, child);
}
