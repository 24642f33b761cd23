/*
 * t/pagemap.c: the address map answers for any address without touching
 * it: the right descriptor for kalloc's pages, "not ours" for everything
 * else (stack, globals, glibc's heap, NULL, non-canonical, a PROT_NONE
 * mapping that would fault if read).
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "tap.h"

static int global_var;

int main(void)
{
	plan(13);
	bool z;
	char *p = ka_buddy_alloc(3, KA_PG_RAW, &z);
	size_t bytes = KA_PAGE_SIZE << 3;
	int right = 1;
	for (size_t off = 0; off < bytes; off += 1021) {
		struct ka_page *pg = ka_map_page(p + off);
		right &= pg && ka_page_addr(pg) == (void *)(((uintptr_t)p + off) & ~(KA_PAGE_SIZE - 1));
	}
	struct ka_page *last = ka_map_page(p + bytes - 1);
	right &= last && ka_page_addr(last) == p + bytes - KA_PAGE_SIZE;
	ok(right, "first, middle and last bytes of a block map to their own page descriptors");
	ok(ka_map_page(p)->kind == KA_PG_RAW && ka_map_page(p)->order == 3,
	   "the head descriptor says what the block is");
	int local;
	ok(ka_map_entry((uintptr_t)&local) == 0 && !ka_map_page(&local), "stack address: not ours");
	ok(ka_map_entry((uintptr_t)&global_var) == 0, "global: not ours");
	void *g = malloc(100), *big = malloc(1 << 22);
	ok(ka_map_entry((uintptr_t)g) == 0 && ka_map_entry((uintptr_t)big) == 0,
	   "glibc's heap and glibc's mmap'd block: not ours");
	free(g);
	free(big);
	ok(ka_map_entry(0) == 0 && !ka_map_page(NULL), "NULL: not ours");
	ok(ka_map_entry((uintptr_t)1 << 47) == 0 && ka_map_entry(~(uintptr_t)0) == 0 &&
		   ka_map_entry(0xffff800000000000ul) == 0,
	   "non-canonical and kernel addresses: not ours");
	char *none = mmap(NULL, 1 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ok(ka_map_entry((uintptr_t)none + 4096) == 0 && !ka_map_page(none + 4096),
	   "an address in a PROT_NONE mapping: answered without reading it");
	munmap(none, 1 << 20);
	ok(ka_map_entry((uintptr_t)(main)) == 0, "code: not ours");
	/* The chunk entry covers exactly its granule. */
	uintptr_t base = (uintptr_t)p & ~(KA_CHUNK_SIZE - 1);
	ok(ka_map_page((void *)base) != NULL && ka_map_page((void *)(base + KA_CHUNK_SIZE - 1)) != NULL,
	   "both ends of the chunk map");
	ok(ka_map_entry(base - 1) != ka_map_entry(base), "the byte before the chunk is another granule");
	kalloc_free(kalloc_malloc(16)); /* kalloc started: the flat map is reserved */
#ifdef __SANITIZE_ADDRESS__
	skip("ASan's shadow gap holds the flat map's address (t/map-taken tests the fallback)");
#else
	ok(ka_map_flat_limit == KA_MAP_FLAT_SIZE && ka_map_chunk_fast(base) == ka_map_entry(base),
	   "the flat map is at its address and repeats the chunk's entry, for the free fast path");
#endif
	ka_buddy_free(p, 3);
	ok(ka_map_page(p)->kind != KA_PG_RAW, "a freed block's descriptor no longer says it is used");
	return 0;
}
