/*
 * t/pagemap.c: the address map answers for any address without touching
 * it: the right descriptor for kalloc's pages, "not ours" for everything
 * else (stack, globals, glibc's heap, NULL, non-canonical, a PROT_NONE
 * mapping that would fault if read); and the flat tag table holds every
 * chunk's tags, or, for a chunk whose page of it could not be made
 * writable, nothing, the chunk then keeping its tags in its metadata.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "../lib/internal.h"
#include "../lib/kalloc.h"
#include "tap.h"

static int global_var;

static bool refuse_mprotect(const char *call) { return strcmp(call, "mprotect") == 0; }

static void *in_metadata_tags; /* an object of a chunk whose tags are in its metadata */

static void double_free(void)
{
	kalloc_free(in_metadata_tags);
	kalloc_free(in_metadata_tags);
}

int main(void)
{
	plan(17);
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
	kalloc_free(kalloc_malloc(16)); /* kalloc started: the flat table is reserved */
	struct ka_chunk *c;
#ifdef __SANITIZE_ADDRESS__
	skip("ASan's shadow gap holds the flat table's address (t/map-taken tests the fallback)");
#else
	uintptr_t obj = (uintptr_t)kalloc_malloc(48);
	c = ka_page_chunk(ka_map_page((void *)obj));
	ok(ka_tags_limit == KA_TAGS_FLAT_SIZE && c->tagv == KA_TAGS_FLAT + (c->base >> KA_PAGE_SHIFT) &&
		   ka_tag_fast(obj) != 0 && ka_tag_fast(obj) == ka_tag_of(obj) &&
		   ka_tag_fast((uintptr_t)&local) == 0 && ka_tag_fast((uintptr_t)1 << 47) == 0 &&
		   ka_tag_fast(~(uintptr_t)0) == 0,
	   "the flat table holds the chunk's tags, and 0 for others' and non-canonical addresses");
	kalloc_free((void *)obj);
#endif
	/* A chunk whose page of the table cannot be made writable: its objects'
	 * frees go slow and work, misuse is still caught. */
	ka_os_set_fail_hook(refuse_mprotect);
	static void *held[1 << 16];
	size_t n = 0;
	struct ka_chunk *inmeta = NULL;
	while (n < sizeof held / sizeof held[0] && !inmeta) {
		held[n] = kalloc_malloc(256);
		c = ka_page_chunk(ka_map_page(held[n]));
		if (c->tagv == c->tags)
			inmeta = c;
		n++;
	}
	ka_os_set_fail_hook(NULL);
	void *q = held[n - 1];
	ok(inmeta && ka_tag_fast((uintptr_t)q) == 0 && (ka_tag_of((uintptr_t)q) & 0xff) != 0,
	   "mprotect refused: a new chunk keeps its tags in its metadata (%zu objects taken)", n);
	kalloc_free(q);
	ok(kalloc_malloc(256) == q, "and a free there goes slow and its object is reused");
	in_metadata_tags = q;
	int st = run_child(double_free);
	ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "a double free there is caught");
	for (size_t i = 0; i < n; i++)
		kalloc_free(held[i]);
	ka_buddy_validate();
	ok(1, "the buddy structures validate");
	ka_buddy_free(p, 3);
	ok(ka_map_page(p)->kind != KA_PG_RAW, "a freed block's descriptor no longer says it is used");
	return 0;
}
