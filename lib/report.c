/*
 * report.c: everything kalloc writes to a file descriptor, formatted into
 * buffers on the caller's stack: no allocation, no stdio, no locks, so it
 * works during start-up, inside a signal handler and on a corrupt heap.
 *
 * It also owns where reports go. Many programs close stderr before they
 * exit (coreutils' close_stdout), and a daemon that closed fds 0 to 2 may
 * have a socket or a database on fd 2 by the time kalloc reports. So at
 * start-up fd 2 is duplicated onto a private close-on-exec descriptor and
 * the identity (st_dev, st_ino) of what it was is kept; every report
 * (stats at exit, malloc_stats, warnings, the fatal misuse line) goes to
 * fd 2 if it is still that file, else to the duplicate if it still is,
 * else nowhere. Invariant: a report is written only to an open file
 * description that fstat names as the start-up stderr.
 *
 * A program that points its stderr elsewhere with dup2 after start-up
 * (a server's --log-file) is not followed: its reports go to the start-up
 * stderr through the duplicate. From fstat alone a dup2 redirect cannot
 * be told from a close(2) whose number an open() then reused for data, and
 * writing into the latter corrupts a file that outlives the process; the
 * start-up stderr is also where the user who set KALLOC_CONF looks. The
 * fatal line follows the same rule for the same reason: the process is
 * about to abort, but a database on fd 2 is not. (stats_file names a file
 * for the exit report when neither suits.)
 *
 * The duplicate is inherited by fork (the child reports to the same
 * place) and closed by exec (the new program's kalloc takes its own). A
 * program that closes every descriptor above 2 closes it too; if the
 * number is later reused, the identity check fails and nothing is written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static void (*fatal_hook)(const char *msg);

static void put(struct ka_buf *b, char c)
{
	if (b->len < b->cap)
		b->p[b->len++] = c;
}

void ka_buf_str(struct ka_buf *b, const char *s)
{
	while (s && *s)
		put(b, *s++);
}

void ka_buf_u64(struct ka_buf *b, uint64_t v, int width)
{
	char d[24];
	int n = 0;
	do {
		d[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (int i = n; i < width; i++)
		put(b, ' ');
	while (n)
		put(b, d[--n]);
}

void ka_buf_ustr(struct ka_buf *b, const char *s, int width)
{
	int n = 0;
	for (; s && s[n]; n++)
		put(b, s[n]);
	for (; n < width; n++)
		put(b, ' ');
}

void ka_buf_hex(struct ka_buf *b, uintptr_t v)
{
	char d[2 + 2 * sizeof v];
	int n = 0;
	do {
		d[n++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	ka_buf_str(b, "0x");
	while (n)
		put(b, d[--n]);
}

void ka_buf_flush(struct ka_buf *b, int fd)
{
	size_t off = 0;
	while (fd >= 0 && off < b->len) {
		ssize_t w = write(fd, b->p + off, b->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	b->len = 0;
}

/*
 * The report destination, set by ka_report_init (at start-up, under the
 * init lock and before ka_ready is published; read-only after). !init:
 * kalloc has not started (a unit test driving the parser): fd 2, as is.
 * !have: fd 2 was closed at start-up, so nothing on any descriptor is
 * known to be stderr. fd: the private duplicate, or -1.
 */
static struct {
	bool init, have;
	dev_t dev;
	ino_t ino;
	int fd;
} dest = {.fd = -1};

static bool is_start_stderr(int fd)
{
	struct stat st;
	return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == dest.dev && st.st_ino == dest.ino;
}

void ka_report_init(void)
{
	int saved = errno;
	/* Again (a test that moved fd 2): drop the old duplicate, unless the
	 * program has closed it and its number now is the program's. */
	if (dest.fd >= 0 && is_start_stderr(dest.fd))
		close(dest.fd);
	dest.fd = -1;
	struct stat st;
	dest.have = fstat(2, &st) == 0;
	if (dest.have) {
		dest.dev = st.st_dev;
		dest.ino = st.st_ino;
		/* High, out of the way of the numbers programs open and dup2
		 * onto (shells keep theirs at 10 and 255), but not near a
		 * large limit: the kernel sizes a process's descriptor table by
		 * its highest descriptor. 768 under the usual limit of 1024;
		 * never 0 or 1, which a program that closed them will reopen. */
		struct rlimit rl;
		rlim_t lim = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
		if (lim > 1024)
			lim = 1024;
		int lo = (int)(lim / 4 * 3);
		dest.fd = fcntl(2, F_DUPFD_CLOEXEC, lo > 3 ? lo : 3);
	}
	dest.init = true;
	errno = saved;
}

int ka_report_fd(void)
{
	if (!dest.init)
		return 2;
	int saved = errno, fd = -1;
	if (dest.have && is_start_stderr(2))
		fd = 2;
	else if (dest.have && is_start_stderr(dest.fd))
		fd = dest.fd;
	errno = saved;
	return fd;
}

void ka_path_expand(const char *pattern, char *path, size_t cap)
{
	struct ka_buf b = {path, 0, cap - 1};
	for (const char *s = pattern; *s; s++) {
		if (s[0] == '%' && s[1] == 'p')
			ka_buf_u64(&b, (uint64_t)getpid(), 0), s++;
		else if (s[0] == '%' && s[1] == '%')
			ka_buf_str(&b, "%"), s++;
		else
			put(&b, *s);
	}
	path[b.len] = 0;
}

int ka_path_open(const char *path, int flags)
{
	/* O_NOFOLLOW: a symlink planted at the name is not followed. */
	return open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | flags, 0600);
}

int ka_report_open(const char *pattern)
{
	char path[KA_PATH_MAX];
	ka_path_expand(pattern, path, sizeof path);
	int saved = errno;
	/* Appended: a parent and a child given the same name (no %p) both
	 * keep their report. */
	int fd = ka_path_open(path, O_APPEND);
	errno = saved;
	if (fd < 0)
		ka_warn("stats_file: cannot open, reporting on stderr", path);
	return fd;
}

void ka_set_fatal_hook(void (*hook)(const char *msg)) { fatal_hook = hook; }

void ka_fatal(const char *func, const char *what, const void *addr, const char *ctx)
{
	ka_fatal_detail(func, what, addr, ctx, NULL);
}

void ka_fatal_detail(const char *func, const char *what, const void *addr, const char *ctx,
		     const char *detail)
{
	char mem[1024];
	struct ka_buf b = {mem, 0, sizeof mem - 1};
	ka_buf_str(&b, "kalloc: ");
	if (func) {
		ka_buf_str(&b, func);
		ka_buf_str(&b, ": ");
	}
	ka_buf_str(&b, what);
	if (addr) {
		ka_buf_str(&b, " ");
		ka_buf_hex(&b, (uintptr_t)addr);
	}
	if (ctx) {
		ka_buf_str(&b, " (");
		ka_buf_str(&b, ctx);
		ka_buf_str(&b, ")");
	}
	ka_buf_str(&b, "\n");
	ka_buf_str(&b, detail);
	if (fatal_hook) {
		mem[b.len] = 0;
		fatal_hook(mem);
	}
	ka_buf_flush(&b, ka_report_fd());
	abort();
}

void ka_warn(const char *what, const char *detail)
{
	char mem[256];
	struct ka_buf b = {mem, 0, sizeof mem};
	ka_buf_str(&b, "kalloc: warning: ");
	ka_buf_str(&b, what);
	if (detail) {
		ka_buf_str(&b, ": ");
		ka_buf_str(&b, detail);
	}
	ka_buf_str(&b, "\n");
	ka_buf_flush(&b, ka_report_fd());
}
