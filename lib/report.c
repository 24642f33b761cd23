/*
 * report.c: everything kalloc writes to a file descriptor, formatted into
 * buffers on the caller's stack: no allocation, no stdio, no locks, so it
 * works during start-up, inside a signal handler and on a corrupt heap.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
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
	while (off < b->len) {
		ssize_t w = write(fd, b->p + off, b->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	b->len = 0;
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
	ka_buf_flush(&b, 2);
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
	ka_buf_flush(&b, 2);
}
