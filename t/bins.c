/*
 * t/bins.c: thread-cache bins that run empty and full in turn grow (so that
 * a batch bigger than the bin stops going to the slabs), within the
 * thread's budget, and shrink back when they go unused.
 */
#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "../lib/tcache.h"
#include "tap.h"

#define OBJS 1024

static void *objs[4096];

/* n objects of size bytes allocated, written, checked and freed, in LIFO order. */
static int cycle(size_t size, unsigned n)
{
	int bad = 0;
	for (unsigned i = 0; i < n; i++) {
		objs[i] = kalloc_malloc(size);
		bad |= objs[i] == NULL;
		if (objs[i])
			*(unsigned *)objs[i] = i;
	}
	for (unsigned i = n; i-- > 0;) {
		bad |= objs[i] && *(unsigned *)objs[i] != i;
		kalloc_free(objs[i]);
	}
	return bad;
}

/* The sum of every bin's maximum in bytes, as the budget counts it. */
static size_t max_bytes(const struct ka_tcache *tc)
{
	size_t sum = 0;
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		sum += (size_t)tc->max[c] * ka_classes[c].size;
	return sum;
}

static void ticks(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		ka_tls.tick = 0;
		ka_tcache_charge(1);
	}
}

int main(void)
{
	plan(8);
	kalloc_free(kalloc_malloc(64)); /* the cache exists from here */
	struct ka_tcache *tc = ka_tc;
	unsigned c64 = ka_size_class[64 / 8];
	struct ka_bin *b = &tc->bins[c64];
	uint16_t start = tc->max[c64];
	int bad = 0;
	for (int r = 0; r < 4; r++)
		bad |= cycle(64, OBJS);
	tc->busy[c64] = 0;
	bad |= cycle(64, OBJS);
	ok(!bad, "batches of %d objects of 64 B: contents intact", OBJS);
	ok(tc->max[c64] >= OBJS && ka_bin_count(tc, c64) == OBJS && tc->busy[c64] == 0,
	   "a bin that cycles grows to hold the batch: no refill or flush in a round (max %u -> %u, %u held)",
	   start, tc->max[c64], ka_bin_count(tc, c64));
	ok(tc->bin_bytes == max_bytes(tc), "the budget counts every bin's maximum (%zu bytes)", tc->bin_bytes);

	/* Every class at once wants more than the budget; no tick (whose GC
	 * would shrink the classes not in use) until the end. */
	ka_tls.tick = INT64_MAX;
	for (int r = 0; r < 4; r++)
		for (unsigned c = 1; c < KA_NR_CLASSES; c++) {
			size_t size = ka_classes[c].size, n = (1 << 20) / size;
			bad |= cycle(size, (unsigned)(n < 4096 ? n : 4096));
		}
	size_t held = 0;
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		held += (size_t)ka_bin_count(tc, c) * ka_classes[c].size;
	ok(!bad && max_bytes(tc) <= KA_TCACHE_BYTES && tc->bin_bytes == max_bytes(tc) && held <= KA_TCACHE_BYTES,
	   "1 MiB batches of every class: the bins' maxima stay within %zu bytes (%zu; %zu held)",
	   (size_t)KA_TCACHE_BYTES, max_bytes(tc), held);
	ok(max_bytes(tc) > KA_TCACHE_BYTES - (64 << 10) * 8, "and they grew up to the budget (%zu bytes)", max_bytes(tc));
	ka_tls.tick = KA_TICK_BYTES;

	/* Unused from here: the housekeeping shrinks every bin back. */
	ticks(400);
	ok(tc->max[c64] == start, "an unused bin shrinks back to its start (%u)", tc->max[c64]);
	size_t held_after = 0;
	for (unsigned c = 1; c < KA_NR_CLASSES; c++)
		held_after += (size_t)ka_bin_count(tc, c) * ka_classes[c].size;
	ok(held_after < held / 4 && tc->bin_bytes == max_bytes(tc),
	   "and gives its objects back (%zu -> %zu bytes held)", held, held_after);

	/* A flush sends back the most recently freed objects (in cache, so its
	 * walk misses nothing) and keeps the older ones. */
	ka_tcache_flush_all();
	unsigned k = tc->max[c64];
	for (unsigned i = 0; i < k; i++)
		objs[i] = kalloc_malloc(64);
	for (unsigned i = 0; i < k; i++)
		kalloc_free(objs[i]); /* objs[k - 1] last: the bin's head */
	tc->busy[c64] = 0;
	for (int i = 0; i < 200 && ka_bin_count(tc, c64) == k; i++)
		ticks(1);
	unsigned left = ka_bin_count(tc, c64), older = 0;
	for (unsigned i = 0; i < left; i++) {
		void *q = kalloc_malloc(64);
		for (unsigned j = 0; j < k - left; j++)
			older += q == objs[j];
	}
	ok(left > 0 && left < k && older == left,
	   "a flush keeps the %u objects freed first and sends back the %u freed last (%u of the kept are older)",
	   left, k - left, older);
	return 0;
}
