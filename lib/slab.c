/*
 * slab.c: object caches (struct ka_cache, kmem_cache to users). The kmalloc
 * classes are the built-in caches; kmem_cache_create makes more of the same.
 *
 * A cache owns slabs (buddy blocks of 2^order pages) on three lists, with
 * the state table written above struct ka_slab in types.h. Allocation takes
 * from partial slabs first, then empty ones, then a new slab from the buddy;
 * an empty slab beyond the cache's reserve goes back to the buddy.
 *
 * Every page of a slab carries the slab's tag (ka_tag_make) and the
 * index of the slab's head page, so any address in a slab finds the slab
 * in O(1) through the address map. Free objects are linked through a word at
 * cache->link_off, encoded with ka_link_encode and checked when consumed: a
 * link must decode to an object boundary of the same slab.
 *
 * Lock order: a cache's lock, then the buddy's (slabs come and go while the
 * cache lock is held). caches_lock (the list of caches) comes before any
 * cache's lock; see init.c for the whole order.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

struct ka_cache ka_kmalloc[KA_NR_CLASSES];
uintptr_t ka_secret;

static pthread_mutex_t caches_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ka_list caches = {&caches, &caches};
static struct ka_list spare_caches = {&spare_caches, &spare_caches};

/* ------------------------------------------------------------- helpers */

static void **link_of(const struct ka_cache *c, void *obj)
{
	return (void **)(void *)((char *)obj + c->link_off);
}

static void *pop_link(struct ka_cache *c, struct ka_slab *s, void *obj)
{
	void *next = ka_link_decode(*link_of(c, obj), link_of(c, obj));
	if (next == KA_LIST_END)
		return NULL;
	if (!ka_slab_obj_ok(s, next))
		ka_fatal("malloc()", "corrupted free list (write after free?) in object", obj, c->name);
	return next;
}

/* Freed objects carry the key in their second word (ka_cache_keyed). */
static void mark_free(const struct ka_cache *c, void *obj)
{
	if (ka_cache_keyed(c) && !ka_opt.poison)
		((uint64_t *)obj)[1] = ka_key_of(obj);
}

struct ka_slab *ka_slab_of(const void *p)
{
	uintptr_t a = (uintptr_t)p, e = ka_map_entry(a);
	return ka_entry_tag(e, a) ? ka_page_slab(ka_entry_page(e, a)) : NULL;
}

static struct ka_list *list_head(struct ka_cache *c, int list)
{
	return list == KA_SLAB_EMPTY ? &c->empty : list == KA_SLAB_PARTIAL ? &c->partial : &c->full;
}

static size_t *list_count(struct ka_cache *c, int list)
{
	return list == KA_SLAB_EMPTY ? &c->nr_empty : list == KA_SLAB_PARTIAL ? &c->nr_partial : &c->nr_full;
}

static void set_tags(struct ka_slab *s, uint32_t tag)
{
	struct ka_page *head = ka_container_of(s, struct ka_page, slab);
	uint32_t *t = ka_page_tag(head);
	for (size_t i = 0; i < ((size_t)1 << head->order); i++)
		ka_store_relaxed(&t[i], tag);
}

/*
 * The owner in a kmalloc slab's tags is the one place where a slab's owner
 * is written (under the cache lock): s->owner and every page's tag agree.
 */
static void set_owner(struct ka_cache *c, struct ka_slab *s, uint32_t owner)
{
	set_tags(s, ka_tag_make(owner, c->cls));
	s->owner = owner;
}

bool ka_slab_adopt(struct ka_slab *s, uint32_t from, uint32_t to)
{
	struct ka_cache *c = s->cache;
	ka_lock(&c->lock);
	bool done = s->cache == c && ka_container_of(s, struct ka_page, slab)->kind == KA_PG_SLAB &&
		    s->owner == from;
	if (done)
		set_owner(c, s, to);
	ka_unlock(&c->lock);
	return done;
}

/* ------------------------------------------------------ slab life cycle */

static struct ka_slab *new_slab(struct ka_cache *c)
{
	bool zero, grown = true;
	char *base;
	/* A new chunk is mapped with the cache lock dropped (no system call
	 * under a lock): the lists may change meanwhile, nothing here relies on
	 * them. A few rounds, since another thread may take the chunk first. */
	for (int round = 0; !(base = ka_buddy_alloc_held(c->order, KA_PG_SLAB, &zero, !grown)); round++) {
		if (!grown || round == 4)
			return NULL;
		ka_unlock(&c->lock);
		grown = ka_buddy_grow();
		ka_lock(&c->lock);
	}
	struct ka_page *head = ka_map_page(base);
	struct ka_chunk *ch = ka_page_chunk(head);
	uint32_t hidx = (uint32_t)(head - ch->pages);
	for (size_t i = 0; i < ((size_t)1 << c->order); i++)
		head[i].head = hidx;
	struct ka_slab *s = &head->slab;
	memset(s, 0, sizeof *s);
	s->cache = c;
	void *next = KA_LIST_END;
	/* A call per object to learn that poisoning is off took 0.4% of
	 * python3's samples (perf, bench/programs/pywork.py): asked once. */
	bool poison = ka_opt.poison;
	for (uint32_t i = c->objs; i-- > 0;) {
		char *obj = base + (size_t)i * c->slot;
		if (c->ctor)
			c->ctor(obj);
		if (poison)
			ka_poison_object(c, obj);
		mark_free(c, obj); /* a never-allocated object is free too: its free() is caught */
		*link_of(c, obj) = ka_link_encode(next, link_of(c, obj));
		next = obj;
	}
	s->freelist = next;
	s->list = KA_SLAB_EMPTY;
	ka_list_add(&c->empty, &s->node);
	c->nr_empty++;
	c->nr_slabs_total++;
	set_tags(s, c->cls ? ka_tag_make(0, c->cls) : KA_CLASS_USER);
	return s;
}

static void release_slab(struct ka_cache *c, struct ka_slab *s)
{
	ka_list_del(&s->node);
	(*list_count(c, s->list))--;
	set_tags(s, 0);
	ka_buddy_free(ka_slab_base(s), c->order);
}

/* Put a slab on the list its state asks for (the table in types.h). */
static void settle(struct ka_cache *c, struct ka_slab *s)
{
	int want = s->inuse == 0 ? KA_SLAB_EMPTY : s->freelist ? KA_SLAB_PARTIAL : KA_SLAB_FULL;
	if (want == KA_SLAB_EMPTY && c->nr_empty >= c->reserve) {
		release_slab(c, s);
		return;
	}
	if (want == s->list)
		return;
	ka_list_del(&s->node);
	(*list_count(c, s->list))--;
	s->list = (uint8_t)want;
	ka_list_add(list_head(c, want), &s->node);
	(*list_count(c, want))++;
}

/* Push obj, no longer in use, on its slab's free list. */
static void to_freelist(struct ka_cache *c, struct ka_slab *s, void *obj)
{
	*link_of(c, obj) = ka_link_encode(s->freelist ? s->freelist : KA_LIST_END, link_of(c, obj));
	s->freelist = obj;
	s->inuse--;
}

/* ------------------------------------------------------------ the cache API */

#define OWN_SCAN 8

/*
 * The slab a refill for `owner` takes from: a partial slab the owner last
 * refilled from (among the first OWN_SCAN), else an empty one, else any
 * partial one, else a new one. Threads that share a slab share its cache
 * lines, and writes to neighbouring objects from two cores fight over them
 * (false sharing): a slab stays with one thread while it can.
 */
static struct ka_slab *refill_slab(struct ka_cache *c, uint32_t owner)
{
	unsigned k = 0;
	for (struct ka_list *e = c->partial.next; owner && e != &c->partial && k < OWN_SCAN; e = e->next, k++) {
		struct ka_slab *s = ka_container_of(e, struct ka_slab, node);
		if (s->owner == owner)
			return s;
	}
	if (!ka_list_empty(&c->empty))
		return ka_container_of(c->empty.next, struct ka_slab, node);
	if (!ka_list_empty(&c->partial))
		return ka_container_of(c->partial.next, struct ka_slab, node);
	return new_slab(c);
}

unsigned ka_slab_alloc_batch(struct ka_cache *c, void **out, unsigned n, uint32_t owner)
{
	unsigned got = 0;
	ka_lock(&c->lock);
	while (got < n) {
		struct ka_slab *s = refill_slab(c, owner);
		if (!s)
			break;
		while (got < n && s->freelist) {
			void *obj = s->freelist;
			s->freelist = pop_link(c, s, obj);
			s->inuse++;
			out[got++] = obj;
		}
		if (c->cls && owner && s->owner != owner)
			set_owner(c, s, owner);
		settle(c, s);
	}
	c->active_objs += got;
	ka_unlock(&c->lock);
	ka_buddy_maybe_purge(); /* slabs given back under the lock purge now */
	return got;
}

void *ka_slab_take_list(struct ka_cache *c, unsigned max, uint32_t owner, unsigned *n)
{
	void *list = NULL;
	*n = 0;
	ka_lock(&c->lock);
	struct ka_slab *s = refill_slab(c, owner);
	if (s && s->freelist && c->objs - s->inuse <= max) {
		/* A kmalloc slab's links are encoded as a bin's (link_off 0), and
		 * its last one encodes KA_LIST_END: the list moves as it stands. */
		list = s->freelist;
		*n = c->objs - s->inuse;
		s->freelist = NULL;
		s->inuse = c->objs;
		c->active_objs += *n;
		if (owner && s->owner != owner)
			set_owner(c, s, owner);
		settle(c, s);
	}
	ka_unlock(&c->lock);
	ka_buddy_maybe_purge();
	return list;
}

static bool holds_free_locked(struct ka_cache *c, struct ka_slab *s, void *obj)
{
	for (void *o = s->freelist; o; o = pop_link(c, s, o))
		if (o == obj)
			return true;
	return false;
}

static void free_locked(struct ka_cache *c, void *obj, const char *func)
{
	struct ka_slab *s = ka_slab_of(obj);
	if (!s || s->cache != c || !ka_slab_obj_ok(s, obj))
		ka_fatal(func, "invalid pointer (not an object of its cache)", obj, c->name);
	if (ka_obj_marked_free(c, obj))
		ka_fatal(func, "double free of", obj, c->name);
	mark_free(c, obj);
	to_freelist(c, s, obj);
	settle(c, s);
}

/*
 * Objects from a thread cache: already checked against double frees, and
 * keyed when they entered the cache. Neighbours in a flush are mostly from
 * one slab: its lookup is reused while they are, and it is settled once
 * when the batch moves on (a slab cannot empty, hence go back to the buddy,
 * while an object of the batch still counts in its inuse).
 */
void ka_slab_free_batch(struct ka_cache *c, void **objs, unsigned n)
{
	size_t bytes = KA_PAGE_SIZE << c->order;
	struct ka_slab *s = NULL;
	uintptr_t base = 0;
	ka_lock(&c->lock);
	for (unsigned i = 0; i < n; i++) {
		void *obj = objs[i];
		if ((uintptr_t)obj - base >= bytes) {
			if (s)
				settle(c, s);
			s = ka_slab_of(obj);
			if (!s || s->cache != c)
				ka_fatal("free()", "invalid pointer (not an object of its cache)", obj, c->name);
			base = (uintptr_t)ka_slab_base(s);
		}
		if (!ka_obj_offset_ok(c, (uintptr_t)obj - base))
			ka_fatal("free()", "invalid pointer (not an object of its cache)", obj, c->name);
		to_freelist(c, s, obj);
	}
	if (s)
		settle(c, s);
	c->active_objs -= n;
	ka_unlock(&c->lock);
	ka_buddy_maybe_purge();
}

/*
 * Is obj on its slab's free list? The consistency mode's check of every
 * free (debug.c); walks the whole slab.
 */
bool ka_slab_holds_free(struct ka_slab *s, void *obj)
{
	struct ka_cache *c = s->cache;
	ka_lock(&c->lock);
	bool found = holds_free_locked(c, s, obj);
	ka_unlock(&c->lock);
	return found;
}

void *ka_cache_alloc(struct ka_cache *c)
{
	void *obj;
	if (!ka_slab_alloc_batch(c, &obj, 1, 0))
		return NULL;
	if (ka_cache_keyed(c))
		((uint64_t *)obj)[1] = 0; /* no key on a live object (see mark_free) */
	return obj;
}

void ka_cache_free(struct ka_cache *c, void *obj, const char *func)
{
	ka_lock(&c->lock);
	free_locked(c, obj, func);
	c->active_objs--;
	ka_unlock(&c->lock);
	ka_buddy_maybe_purge();
}

/* Give every empty slab beyond `keep` back. */
static void shrink_locked(struct ka_cache *c, uint32_t keep)
{
	while (c->nr_empty > keep)
		release_slab(c, ka_container_of(c->empty.prev, struct ka_slab, node));
}

void ka_cache_shrink(struct ka_cache *c, bool all)
{
	ka_lock(&c->lock);
	shrink_locked(c, all ? 0 : c->reserve);
	ka_unlock(&c->lock);
	ka_buddy_maybe_purge();
}

/* ------------------------------------------------------------ set-up */

int ka_cache_setup(struct ka_cache *c, const char *name, size_t size, size_t align,
		   unsigned flags, void (*ctor)(void *), unsigned cls)
{
	if (size == 0 || size > KA_CHUNK_SIZE || (align & (align - 1)) || align > KA_PAGE_SIZE)
		return EINVAL;
	memset(c, 0, sizeof *c);
	ka_lock_init(&c->lock);
	ka_list_init(&c->partial);
	ka_list_init(&c->full);
	ka_list_init(&c->empty);
	if (align < 8)
		align = size >= 16 ? 16 : 8;
	if ((flags & KA_CACHE_HWCACHE_ALIGN) && align < 64)
		align = 64;
	size_t slot = (size + align - 1) & ~(align - 1);
	c->link_off = 0;
	if (ctor) {
		/* The link lives past the object, so a free object stays constructed. */
		c->link_off = (uint32_t)((size + 7) & ~(size_t)7);
		slot = (c->link_off + sizeof(void *) + align - 1) & ~(align - 1);
	}
	unsigned objs;
	c->order = (uint8_t)ka_slab_order(slot, cls ? KA_SLAB_MAX_ORDER : KA_MAX_ORDER, &objs);
	if (c->order > KA_MAX_ORDER)
		return EINVAL;
	c->size = (uint32_t)size;
	c->slot = (uint32_t)slot;
	ka_obj_divisor((uint32_t)slot, objs, &c->div, &c->limit);
	c->align = (uint32_t)align;
	c->objs = objs;
	c->flags = flags;
	c->ctor = ctor;
	c->cls = (uint8_t)cls;
	c->reserve = 1;
	strncpy(c->name, name ? name : "unnamed", sizeof c->name - 1);
	pthread_mutex_lock(&caches_lock);
	ka_list_add(caches.prev, &c->node);
	pthread_mutex_unlock(&caches_lock);
	return 0;
}

void ka_slab_init(void)
{
	for (unsigned i = 1; i < KA_NR_CLASSES; i++)
		ka_cache_setup(&ka_kmalloc[i], ka_classes[i].name, ka_classes[i].size,
			       16, 0, NULL, i);
}

struct ka_cache *ka_cache_create(const char *name, size_t size, size_t align, unsigned flags,
				 void (*ctor)(void *))
{
	struct ka_cache *c = NULL;
	pthread_mutex_lock(&caches_lock);
	if (!ka_list_empty(&spare_caches)) {
		c = ka_container_of(spare_caches.next, struct ka_cache, node);
		ka_list_del(&c->node);
	}
	pthread_mutex_unlock(&caches_lock);
	if (!c && !(c = ka_meta_alloc(sizeof *c, 64)))
		return NULL;
	int err = ka_cache_setup(c, name, size, align, flags & KA_CACHE_FLAGS, ctor, 0);
	if (err) {
		pthread_mutex_lock(&caches_lock);
		ka_list_add(&spare_caches, &c->node);
		pthread_mutex_unlock(&caches_lock);
		errno = err;
		return NULL;
	}
	return c;
}

int ka_cache_destroy(struct ka_cache *c)
{
	pthread_mutex_lock(&caches_lock);
	ka_lock(&c->lock);
	shrink_locked(c, 0);
	size_t live = c->active_objs;
	if (live == 0) {
		ka_list_del(&c->node);
		ka_list_add(&spare_caches, &c->node);
	}
	ka_unlock(&c->lock);
	pthread_mutex_unlock(&caches_lock);
	return live ? EBUSY : 0;
}

/* ------------------------------------------------------------ inspection */

#define CHECK(cond, what, addr)                                         \
	do {                                                            \
		if (!(cond))                                            \
			ka_fatal("ka_slab_validate", what, addr, c->name); \
	} while (0)

void ka_slab_validate(struct ka_cache *c)
{
	ka_lock(&c->lock);
	size_t inuse = 0;
	for (int l = KA_SLAB_EMPTY; l <= KA_SLAB_FULL; l++) {
		struct ka_list *head = list_head(c, l);
		size_t n = 0;
		for (struct ka_list *e = head->next; e != head; e = e->next, n++) {
			struct ka_slab *s = ka_container_of(e, struct ka_slab, node);
			char *base = ka_slab_base(s);
			struct ka_page *hp = ka_container_of(s, struct ka_page, slab);
			CHECK(s->cache == c && s->list == l && hp->kind == KA_PG_SLAB && hp->order == c->order,
			      "slab header wrong at", base);
			uint8_t seen[(1u << 15) / 8 / 8 + 1] = {0}; /* a bit per object */
			size_t nfree = 0;
			for (void *o = s->freelist; o; o = pop_link(c, s, o)) {
				size_t i = (size_t)((char *)o - base) / c->slot;
				CHECK(nfree < c->objs && i < sizeof seen * 8 && !(seen[i / 8] & (1 << i % 8)),
				      "object twice on a free list, in slab", base);
				seen[i / 8] |= (uint8_t)(1 << i % 8);
				nfree++;
			}
			CHECK(nfree + s->inuse == c->objs, "free + inuse != objects in slab", base);
			CHECK(l != KA_SLAB_EMPTY || (s->inuse == 0 && nfree == c->objs), "empty slab in use", base);
			CHECK(l != KA_SLAB_FULL || (s->freelist == NULL), "full slab with free objects", base);
			CHECK(l != KA_SLAB_PARTIAL || s->inuse > 0, "partial slab unused", base);
			uint32_t tag = c->cls ? ka_tag_make(s->owner, c->cls) : KA_CLASS_USER;
			for (size_t i = 0; i < ((size_t)1 << c->order); i++)
				CHECK(ka_page_tag(hp)[i] == tag && hp[i].head == hp->head,
				      "slab page tag wrong in slab", base);
			inuse += s->inuse;
		}
		CHECK(n == *list_count(c, l), "slab list count wrong", NULL);
	}
	CHECK(inuse == c->active_objs, "active object count wrong", NULL);
	ka_unlock(&c->lock);
}

void ka_cache_info(struct ka_cache *c, struct ka_cache_info *info)
{
	ka_lock(&c->lock);
	info->active_objs = c->active_objs;
	info->num_slabs = c->nr_partial + c->nr_full + c->nr_empty;
	info->active_slabs = c->nr_partial + c->nr_full;
	info->num_objs = info->num_slabs * c->objs;
	ka_unlock(&c->lock);
}

void ka_cache_walk(void (*fn)(const struct ka_cache *, const struct ka_cache_info *, void *),
		   void *arg)
{
	pthread_mutex_lock(&caches_lock);
	for (struct ka_list *e = caches.next; e != &caches; e = e->next) {
		struct ka_cache *c = ka_container_of(e, struct ka_cache, node);
		struct ka_cache_info in;
		ka_cache_info(c, &in);
		fn(c, &in, arg);
	}
	pthread_mutex_unlock(&caches_lock);
}

struct slabinfo_arg {
	int fd;
	bool all;
};

static void slabinfo_line(const struct ka_cache *c, const struct ka_cache_info *in, void *arg)
{
	const struct slabinfo_arg *a = arg;
	if (!a->all && in->num_slabs == 0)
		return;
	char mem[160];
	struct ka_buf b = {mem, 0, sizeof mem};
	ka_buf_ustr(&b, c->name, 17);
	ka_buf_u64(&b, in->active_objs, 13);
	ka_buf_u64(&b, in->num_objs, 11);
	ka_buf_u64(&b, c->slot, 10);
	ka_buf_u64(&b, c->objs, 12);
	ka_buf_u64(&b, (uint64_t)1 << c->order, 15);
	ka_buf_str(&b, " : slabdata ");
	ka_buf_u64(&b, in->active_slabs, 14);
	ka_buf_u64(&b, in->num_slabs, 12);
	ka_buf_str(&b, "\n");
	ka_buf_flush(&b, a->fd);
}

void ka_slabinfo_print(int fd, bool all)
{
	char mem[256];
	struct ka_buf b = {mem, 0, sizeof mem};
	ka_buf_str(&b, "slabinfo - version: 2.1 (kalloc)\n"
		       "# name            <active_objs> <num_objs> <objsize> <objperslab> "
		       "<pagesperslab> : slabdata <active_slabs> <num_slabs>\n");
	ka_buf_flush(&b, fd);
	struct slabinfo_arg a = {fd, all};
	ka_cache_walk(slabinfo_line, &a);
}

void ka_slab_prefork(void)
{
	pthread_mutex_lock(&caches_lock);
	for (struct ka_list *e = caches.next; e != &caches; e = e->next)
		pthread_mutex_lock(&ka_container_of(e, struct ka_cache, node)->lock);
}

void ka_slab_postfork(bool child)
{
	for (struct ka_list *e = caches.next; e != &caches; e = e->next) {
		pthread_mutex_t *l = &ka_container_of(e, struct ka_cache, node)->lock;
		ka_postfork_unlock(l, child);
	}
	ka_postfork_unlock(&caches_lock, child);
}
