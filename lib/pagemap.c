/*
 * pagemap.c: the process-wide address map of DESIGN.md decision 2, which
 * answers "is this address kalloc's, and which page is it?" without ever
 * reading the address asked about.
 *
 * Invariants:
 *  - every root slot points to a leaf; slots not yet needed point to the
 *    shared all-zero empty_leaf, so a lookup needs no NULL test;
 *  - leaves are mapped with MAP_NORESERVE and never freed, so a lookup that
 *    races with a change reads valid memory;
 *  - entries change under map_lock and are read with relaxed loads: a reader
 *    that sees a stale entry was asking about memory that is not live (a
 *    use after free), and gets metadata that is stale but mapped.
 *  - the flat tag table (types.h, KA_TAGS_FLAT), when its reservation
 *    succeeded, holds the tags of every chunk whose tags page could be made
 *    writable (ka_map_open_tags): free's fast path reads a tag there with
 *    no map look-up. It is never unmapped, and its pages are never made
 *    read-only again: a tag read there is always of mapped memory, 0 for
 *    pages no slab holds. When it could not be reserved (refused, or the
 *    program holds the address: t/map-taken) its limit is 0, and every
 *    free takes the slow path, which reads the radix tree: correct, slower.
 */
#include "internal.h"

static struct ka_map_leaf empty_leaf;
struct ka_map_leaf *ka_map_root[KA_MAP_ROOT_SIZE] = {[0 ... KA_MAP_ROOT_SIZE - 1] = &empty_leaf};
static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;
uintptr_t ka_tags_limit;

void ka_map_init(void)
{
	if (ka_os_reserve(KA_TAGS_FLAT_SIZE * sizeof(uint32_t), (uintptr_t)KA_TAGS_FLAT))
		__atomic_store_n(&ka_tags_limit, KA_TAGS_FLAT_SIZE, __ATOMIC_RELEASE);
}

uint32_t *ka_map_open_tags(uintptr_t base)
{
	uint32_t *t = KA_TAGS_FLAT + (base >> KA_PAGE_SHIFT);
	if (!ka_load_relaxed(&ka_tags_limit) || base >= KA_ADDR_LIMIT)
		return NULL;
	/* A chunk's tags fill one page exactly: no neighbour's are opened. */
	_Static_assert(KA_CHUNK_PAGES * sizeof(uint32_t) == KA_PAGE_SIZE, "a chunk's tags are a page");
	return ka_os_open(t, KA_PAGE_SIZE) == 0 ? t : NULL;
}

int ka_map_set(uintptr_t base, size_t size, uintptr_t entry)
{
	int err = 0;
	if (size == 0 || base >= KA_ADDR_LIMIT || size > KA_ADDR_LIMIT - base)
		return 22; /* EINVAL: not a user address range */
	uintptr_t first = base >> KA_CHUNK_SHIFT, last = (base + size - 1) >> KA_CHUNK_SHIFT;
	pthread_mutex_lock(&map_lock);
	for (uintptr_t g = first; g <= last; g++) {
		struct ka_map_leaf **slot = &ka_map_root[g >> KA_MAP_LEAF_BITS];
		struct ka_map_leaf *leaf = *slot;
		if (leaf == &empty_leaf) {
			if (!entry)
				continue;
			leaf = ka_meta_alloc(sizeof *leaf, KA_PAGE_SIZE);
			if (!leaf) {
				err = 12; /* ENOMEM */
				break;
			}
			__atomic_store_n(slot, leaf, __ATOMIC_RELEASE);
		}
		__atomic_store_n(&leaf->entry[g & (KA_MAP_LEAF_SIZE - 1)], entry, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&map_lock);
	return err;
}

int ka_map_clear(uintptr_t base, size_t size, uintptr_t entry)
{
	if (size == 0 || base >= KA_ADDR_LIMIT || size > KA_ADDR_LIMIT - base)
		return 22;
	uintptr_t first = base >> KA_CHUNK_SHIFT, last = (base + size - 1) >> KA_CHUNK_SHIFT;
	pthread_mutex_lock(&map_lock);
	for (uintptr_t g = first; g <= last; g++) {
		uintptr_t *e = &ka_map_root[g >> KA_MAP_LEAF_BITS]->entry[g & (KA_MAP_LEAF_SIZE - 1)];
		if (ka_load_relaxed(e) == entry)
			__atomic_store_n(e, 0, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&map_lock);
	return 0;
}

void ka_map_prefork(void) { pthread_mutex_lock(&map_lock); }

void ka_map_postfork(bool child)
{
	ka_postfork_unlock(&map_lock, child);
}
