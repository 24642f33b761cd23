/*
 * os.c: the only file that talks to the kernel about memory (mmap, munmap,
 * madvise, mremap, brk). See os.h for the contract.
 *
 * brk is opt-in (page_source:brk). The break is shared with anything else in
 * the process that calls sbrk, so kalloc grows it only under os_lock, checks
 * that the break was where it looked, and shrinks it only when the top of
 * the break is still the end of kalloc's last piece.
 */

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static pthread_mutex_t os_lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t brk_end; /* end of kalloc's last brk piece, 0 if none */
static bool brk_failed;   /* the break could not grow once: stop trying */
static bool (*fail_hook)(const char *call);
/* Counted on every map, unmap and purge: slow paths only. */
static size_t mapped_heap, mapped_meta, peak_heap, returned;

void ka_os_set_fail_hook(bool (*hook)(const char *call)) { fail_hook = hook; }

__thread unsigned ka_locks_held;
static bool check_locks = KA_DEBUG;

void ka_os_check_locks(bool on) { __atomic_store_n(&check_locks, on, __ATOMIC_RELAXED); }

/* Before every system call on memory: no counted lock may be held (os.h). */
static void no_lock_held(const char *call)
{
	if (KA_UNLIKELY(ka_locks_held) && __atomic_load_n(&check_locks, __ATOMIC_RELAXED))
		ka_fatal(call, "system call made with a kalloc lock held; locks held:",
			 (void *)(uintptr_t)ka_locks_held, NULL);
}

void ka_os_counters(struct ka_os_counters *oc)
{
	oc->mapped_heap = __atomic_load_n(&mapped_heap, __ATOMIC_RELAXED);
	oc->mapped_meta = __atomic_load_n(&mapped_meta, __ATOMIC_RELAXED);
	oc->peak_heap = __atomic_load_n(&peak_heap, __ATOMIC_RELAXED);
	oc->returned = __atomic_load_n(&returned, __ATOMIC_RELAXED);
}

size_t ka_os_mapped_heap(void) { return __atomic_load_n(&mapped_heap, __ATOMIC_RELAXED); }
size_t ka_os_mapped_meta(void) { return __atomic_load_n(&mapped_meta, __ATOMIC_RELAXED); }

static void count(size_t *c, size_t add, bool sub)
{
	if (sub) {
		__atomic_fetch_sub(c, add, __ATOMIC_RELAXED);
		if (c == &mapped_heap)
			__atomic_fetch_add(&returned, add, __ATOMIC_RELAXED);
		return;
	}
	size_t now = __atomic_add_fetch(c, add, __ATOMIC_RELAXED);
	size_t peak = __atomic_load_n(&peak_heap, __ATOMIC_RELAXED);
	while (c == &mapped_heap && now > peak &&
	       !__atomic_compare_exchange_n(&peak_heap, &peak, now, true, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED))
		;
}

static bool failing(const char *call)
{
	bool (*h)(const char *) = fail_hook;
	if (h && h(call)) {
		errno = ENOMEM;
		return true;
	}
	return false;
}

static void *map_raw(size_t size, int flags)
{
	no_lock_held("mmap");
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/*
 * mmap aligned: the kernel usually places a new mapping right below the last
 * one, so a mapping of a multiple of the alignment is often aligned already;
 * when it is not, map size + align and cut off both ends.
 */
static void *map_aligned(size_t size, size_t align, int flags)
{
	if (failing("mmap"))
		return NULL;
	char *p = map_raw(size, flags);
	if (!p || ((uintptr_t)p & (align - 1)) == 0)
		return p;
	munmap(p, size);
	size_t over = size + align - KA_PAGE_SIZE;
	if (over < size)
		return NULL;
	p = map_raw(over, flags);
	if (!p)
		return NULL;
	char *a = (char *)(((uintptr_t)p + align - 1) & ~(align - 1));
	size_t lead = (size_t)(a - p), trail = over - lead - size;
	if (lead)
		munmap(p, lead);
	if (trail)
		munmap(a + size, trail);
	return a;
}

static void *brk_grow(size_t size, size_t align)
{
	void *r = NULL;
	no_lock_held("brk");
	pthread_mutex_lock(&os_lock);
	if (brk_failed)
		goto out;
	char *cur = sbrk(0);
	if (cur == (char *)-1)
		goto fail;
	uintptr_t a = ((uintptr_t)cur + align - 1) & ~(align - 1);
	size_t inc = a - (uintptr_t)cur + size;
	if (inc < size || (intptr_t)inc < 0)
		goto fail;
	char *old = sbrk((intptr_t)inc);
	if (old == (char *)-1)
		goto fail;
	if (old != cur) {
		/* Someone moved the break between our two calls: undo if we can. */
		if ((char *)sbrk(0) == old + inc)
			sbrk(-(intptr_t)inc);
		goto out;
	}
	brk_end = a + size;
	r = (void *)a;
	goto out;
fail:
	brk_failed = true;
out:
	pthread_mutex_unlock(&os_lock);
	return r;
}

void *ka_os_map_aligned(size_t size, size_t align, int *source)
{
	void *p;
	if (ka_opt.page_source == KA_PAGE_SOURCE_BRK && !failing("brk")) {
		p = brk_grow(size, align);
		if (p) {
			*source = KA_SRC_BRK;
			count(&mapped_heap, size, false);
			return p;
		}
	}
	return ka_os_map_region(size, align, source);
}

void *ka_os_map_region(size_t size, size_t align, int *source)
{
	void *p = map_aligned(size, align, 0);
	if (p) {
		*source = KA_SRC_MMAP;
		count(&mapped_heap, size, false);
	}
	return p;
}

void *ka_os_map_meta(size_t size, size_t align)
{
	void *p = map_aligned(size, align, MAP_NORESERVE);
	if (p)
		count(&mapped_meta, size, false);
	return p;
}

void *ka_os_reserve(size_t size, uintptr_t at)
{
	if (failing("mmap"))
		return NULL;
	no_lock_held("mmap");
	void *p = mmap((void *)at, size, PROT_READ,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (p != (void *)at) { /* a kernel before 4.17 took the address as a hint */
		munmap(p, size);
		return NULL;
	}
#ifdef MADV_DONTDUMP
	madvise(p, size, MADV_DONTDUMP); /* a core file need not hold its zeros */
#endif
	return p;
}

int ka_os_open(void *addr, size_t size)
{
	int saved = errno, err = 0; /* a refusal here is no failure of the caller's */
	no_lock_held("mprotect");
	if (failing("mprotect"))
		err = ENOMEM;
	else if (mprotect(addr, size, PROT_READ | PROT_WRITE) != 0)
		err = errno;
	errno = saved;
	return err;
}

int ka_os_unmap(void *addr, size_t size, int source, bool *kept)
{
	*kept = false;
	no_lock_held("munmap");
	if (source == KA_SRC_BRK) {
		int err = 0;
		pthread_mutex_lock(&os_lock);
		if ((uintptr_t)addr + size == brk_end && (char *)sbrk(0) == (char *)brk_end &&
		    sbrk(-(intptr_t)size) != (void *)-1) {
			brk_end = (uintptr_t)addr;
			count(&mapped_heap, size, true);
		} else {
			*kept = true;
			err = ka_os_purge(addr, size);
		}
		pthread_mutex_unlock(&os_lock);
		return err;
	}
	if (munmap(addr, size) != 0)
		return errno;
	count(&mapped_heap, size, true);
	return 0;
}

int ka_os_purge(void *addr, size_t size)
{
	no_lock_held("madvise");
	if (madvise(addr, size, MADV_DONTNEED) != 0)
		return errno;
	__atomic_fetch_add(&returned, size, __ATOMIC_RELAXED);
	return 0;
}

void ka_os_advise_huge(void *addr, size_t size)
{
	no_lock_held("madvise");
	(void)madvise(addr, size, MADV_HUGEPAGE);
}

void *ka_os_map_file(const char *path, size_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return NULL;
	void *p = MAP_FAILED;
	if (ftruncate(fd, (off_t)size) == 0)
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

void ka_os_unmap_file(const char *path, void *addr, size_t size)
{
	munmap(addr, size);
	if (path)
		unlink(path);
}

void *ka_os_remap(void *addr, size_t old_size, size_t new_size, size_t align)
{
	if (new_size > old_size && failing("mremap"))
		return NULL;
	no_lock_held("mremap");
	void *p = mremap(addr, old_size, new_size, 0);
	if (p == MAP_FAILED) {
		/* Move it to a fresh aligned range, reserved first, replaced by mremap. */
		void *dst = map_aligned(new_size, align, MAP_NORESERVE);
		if (!dst)
			return NULL;
		p = mremap(addr, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
		if (p == MAP_FAILED) {
			munmap(dst, new_size);
			return NULL;
		}
	}
	if (new_size > old_size)
		count(&mapped_heap, new_size - old_size, false);
	else
		count(&mapped_heap, old_size - new_size, true);
	return p;
}

void ka_os_prefork(void) { pthread_mutex_lock(&os_lock); }

void ka_os_postfork(bool child)
{
	ka_postfork_unlock(&os_lock, child);
}

/* The coarse clock (a few ms of resolution) is enough for delays counted in
 * ms, and costs a fraction of the precise one: it is read on every buddy free. */
uint64_t ka_os_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
