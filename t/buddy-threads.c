/*
 * t/buddy-threads.c: several threads allocating and freeing pages of random
 * orders at once, with contents checked, while purges run with a tiny
 * delay. Also run under TSan by make check-sanitize.
 */
#include <pthread.h>
#include <string.h>

#include "../lib/internal.h"
#include "tap.h"

#define THREADS 4
#define STEPS 4000

static int errors[THREADS];

static void *worker(void *arg)
{
	int id = (int)(uintptr_t)arg;
	unsigned long long s = 0x12345ull + (unsigned long long)id * 7919;
	struct {
		uint64_t *p;
		unsigned order;
	} held[32];
	int n = 0;
	for (int i = 0; i < STEPS; i++) {
		if (n && (rnd(&s) % 2 || n == 32)) {
			int k = (int)(rnd(&s) % (unsigned)n);
			errors[id] += held[k].p[0] != (uintptr_t)held[k].p;
			ka_buddy_free(held[k].p, held[k].order);
			held[k] = held[--n];
		} else {
			unsigned order = (unsigned)(rnd(&s) % 6);
			bool z;
			uint64_t *p = ka_buddy_alloc(order, KA_PG_RAW, &z);
			if (!p) {
				errors[id]++;
				continue;
			}
			p[0] = (uintptr_t)p;
			held[n].p = p;
			held[n++].order = order;
		}
		if (i % 500 == 0)
			ka_buddy_purge(false);
	}
	while (n) {
		n--;
		errors[id] += held[n].p[0] != (uintptr_t)held[n].p;
		ka_buddy_free(held[n].p, held[n].order);
	}
	return NULL;
}

int main(void)
{
	plan(3);
	ka_opt.purge_delay_ms = 1;
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	int e = 0;
	for (int i = 0; i < THREADS; i++)
		e += errors[i];
	ok(e == 0, "%d threads x %d steps: no failed allocation, no overwritten block", THREADS, STEPS);
	ka_buddy_validate();
	ok(1, "free lists valid afterwards");
	struct ka_buddy_stats st;
	ka_buddy_stats(&st);
	ok(st.free_pages == st.managed_pages, "all pages free again (%zu of %zu)", st.free_pages,
	   st.managed_pages);
	return 0;
}
