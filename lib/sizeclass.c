/*
 * sizeclass.c: the one table of kmalloc size classes. The sizes are data;
 * everything else (slab order, objects per slab, names, the size -> class
 * lookup) is derived from them at start-up by one rule.
 *
 * The kernel's classes (16 .. 8k with 96 and 192) are the backbone; 1 to 8
 * bytes come from kmalloc-16 too, as glibc's minimum block is 16 bytes: every
 * object then has a second word for the free key (tcache.h), and tiny blocks
 * get the 16-byte alignment programs assume. Below 128 every multiple of 16
 * is a class; above 128 there are four classes per
 * doubling (the kernel's 96 and 192 are two of them), which bounds the
 * internal waste of any request to 25% (20% above 256) where powers of two
 * alone would waste up to half. One more, 4608, takes the page-plus-header
 * blocks that databases allocate (sqlite3: 4104 and 4368 bytes), which
 * would waste a fifth in 5120.
 *
 * Slab order rule: the smallest order (0..KA_SLAB_MAX_ORDER) whose slab
 * holds at least 8 objects while wasting at most 1/8 of itself; failing
 * that, the smallest holding 4 objects with the same waste bound; failing
 * that, the smallest holding one with that bound, else KA_SLAB_MAX_ORDER.
 * Eight objects let a refill move a useful batch;
 * the order cap (32 KiB, as SLUB's default slub_max_order = 3) keeps a
 * mostly empty slab of a big class from pinning much memory. The classes
 * above 8 KiB take the last step: 32 KiB slabs of 3 (10 KiB) and 2
 * (12 KiB), 16 KiB slabs of one (14 and 16 KiB). They exist so that blocks
 * of 8 to 16 KiB, which programs pass between threads as buffers, go
 * through the thread caches and their outboxes (tcache.c) like any small
 * object: as page blocks they went to the freeing thread's page list and
 * back through the zone lock (prodcons-mixed took 1.6x the time). Not
 * more objects a slab: a live object pins its slab, and with 64 KiB slabs
 * of 4 to 6, one 16 KiB block kept in four pinned all of them (t/decay's
 * large-holes case: 134 MiB resident for 32 MiB live); now one pins at
 * most two others.
 */
#include <string.h>

#include "internal.h"

static const uint32_t class_sizes[KA_NR_CLASSES] = {
	0,          16,   32,   48,   64,   80,   96,   112,  128,  160,  192,
	224,  256,  320,  384,  448,  512,  640,  768,  896,  1024, 1280, 1536,
	1792, 2048, 2560, 3072, 3584, 4096, 4608, 5120, 6144, 7168, 8192,
	10240, 12288, 14336, 16384,
};

struct ka_class ka_classes[KA_NR_CLASSES];
uint8_t ka_size_class[KA_SMALL_MAX / 8 + 1];

unsigned ka_slab_order(size_t slot, unsigned max_order, unsigned *objs)
{
	for (unsigned want = 8; want >= 4; want /= 2)
		for (unsigned o = 0; o <= max_order; o++) {
			size_t bytes = KA_PAGE_SIZE << o, n = bytes / slot;
			if (n >= want && (bytes - n * slot) * 8 <= bytes) {
				*objs = (unsigned)n;
				return o;
			}
		}
	for (unsigned o = 0; o <= KA_MAX_ORDER; o++) {
		size_t bytes = KA_PAGE_SIZE << o, n = bytes / slot;
		if (n >= 1 && (o >= max_order || (bytes - n * slot) * 8 <= bytes)) {
			*objs = (unsigned)n;
			return o;
		}
	}
	*objs = 0;
	return KA_MAX_ORDER + 1;
}

/*
 * The object-start test in one multiply and one compare. With
 * div = ceil(2^64 / slot) and r = slot * div mod 2^64 (< slot), for any
 * offset below 2^32: off * div mod 2^64 < div exactly when slot divides off
 * (the divisibility test of Lemire, Kaser and Kurz), and for off = k * slot
 * the product is k * r, which grows with k. So `off * div < limit`, with
 * limit = objs * r, holds exactly for the starts of objects 0 .. objs-1: the
 * interior of an object and the slab's tail both fail. A power-of-two slot
 * has r = 0 and fills its slab with no tail, so limit = 1 accepts every
 * boundary inside the slab.
 */
void ka_obj_divisor(uint32_t slot, uint32_t objs, uint64_t *div, uint64_t *limit)
{
	*div = UINT64_MAX / slot + 1;
	uint64_t r = (uint64_t)slot * *div;
	*limit = r ? objs * r : 1;
}

void ka_class_name(char *out, size_t cap, const char *prefix, size_t size)
{
	char mem[KA_CACHE_NAME_MAX];
	struct ka_buf b = {mem, 0, sizeof mem - 1};
	ka_buf_str(&b, prefix);
	if (size >= 1024 && size % 1024 == 0) {
		ka_buf_u64(&b, size / 1024, 0);
		ka_buf_str(&b, "k");
	} else {
		ka_buf_u64(&b, size, 0);
	}
	mem[b.len] = 0;
	strncpy(out, mem, cap - 1);
	out[cap - 1] = 0;
}

void ka_sizeclass_init(void)
{
	for (unsigned c = 1; c < KA_NR_CLASSES; c++) {
		struct ka_class *k = &ka_classes[c];
		unsigned objs;
		k->size = class_sizes[c];
		k->order = (uint8_t)ka_slab_order(k->size, KA_SLAB_MAX_ORDER, &objs);
		k->objs = (uint16_t)objs;
		k->slab_mask = (uint32_t)((KA_PAGE_SIZE << k->order) - 1);
		ka_obj_divisor(k->size, k->objs, &k->div, &k->limit);
		ka_class_name(k->name, sizeof k->name, "kmalloc-", k->size);
	}
	unsigned c = 1;
	for (size_t i = 0; i <= KA_SMALL_MAX / 8; i++) {
		while (class_sizes[c] < i * 8)
			c++;
		ka_size_class[i] = (uint8_t)c;
	}
}

unsigned ka_class_for_align(size_t size, size_t align)
{
	if (size > KA_SMALL_MAX || align > KA_SMALL_ALIGN_MAX)
		return 0;
	/* Objects sit at multiples of the class size from a slab start that is
	 * aligned to at least a page, so a class whose size is a multiple of
	 * `align` gives aligned objects. */
	for (unsigned c = ka_size_class[(size + 7) >> 3]; c < KA_NR_CLASSES; c++)
		if (class_sizes[c] % align == 0)
			return c;
	return 0;
}
