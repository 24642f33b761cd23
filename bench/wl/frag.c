/*
 * frag: random-size churn over a long-lived working set, the pattern that
 * shows fragmentation. A working set of about 40 MiB (blocks mostly
 * 16..512 B, some 1..64 KiB, a few 100 KiB..1 MiB) is churned by random
 * replacement, then shrunk to a tenth and grown back, several times. Peak
 * RSS is the figure that matters: an allocator that cannot reuse the
 * holes the shrink leaves grows at every phase.
 */
#include "wl.h"

#define SLOTS 200000

static size_t pick(uint64_t *s)
{
	unsigned r = (unsigned)(wl_rand(s) % 1000);
	if (r < 900)
		return wl_size(s, 16, 512);
	if (r < 995)
		return wl_size(s, 1024, 64 << 10);
	return wl_size(s, 100 << 10, 1 << 20);
}

/* Live blocks are slot[0..n): churn and shrink pick among them only. */
static void *slot[SLOTS];
static size_t len[SLOTS];
static unsigned n;

static void add(uint64_t *s, unsigned k)
{
	len[k] = pick(s);
	char *b = slot[k] = wl_xmalloc(len[k]);
	/* Touch every page, so that RSS counts what the allocator holds. */
	memset(b, (int)k, len[k] < 64 ? len[k] : 64);
	for (size_t off = 4096; off < len[k]; off += 4096)
		b[off] = (char)k;
}

int main(int argc, char **argv)
{
	struct wl_args a = wl_parse(argc, argv);
	size_t target = (size_t)40 << 20, live = 0;
	uint64_t s = 42, ops = 0, check = 0;
	int phases = a.quick ? 2 : 6;
	long churn = a.quick ? 300000 : 3000000;
	for (int ph = 0; ph < phases; ph++) {
		while (live < target && n < SLOTS) { /* grow to the target */
			add(&s, n);
			live += len[n++];
			ops++;
		}
		for (long i = 0; i < churn; i++) { /* replace random blocks */
			unsigned k = (unsigned)(wl_rand(&s) % n);
			check += ((unsigned char *)slot[k])[0];
			free(slot[k]);
			live -= len[k];
			add(&s, k);
			live += len[k];
			ops++;
		}
		while (live > target / 10) { /* shrink to a tenth, at random */
			unsigned k = (unsigned)(wl_rand(&s) % n);
			free(slot[k]);
			live -= len[k];
			slot[k] = slot[--n];
			len[k] = len[n];
			ops++;
		}
	}
	for (unsigned k = 0; k < n; k++)
		free(slot[k]);
	wl_done("frag", ops, check);
	return 0;
}
