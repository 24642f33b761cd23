/*
 * scale.c: two quick measurements for the slab layer, run under any
 * allocator with LD_PRELOAD (plain malloc/free):
 *   scale local T N   T threads, each N rounds of 64 mallocs of random small
 *                     sizes then 64 frees; prints Mops/s (malloc+free pairs)
 *   scale xfree N     round trip of objects freed by another thread: a
 *                     producer allocates batches of 64, a consumer frees
 *                     them; prints ns per object, beside the same loop with
 *                     local frees (ratio = cross-thread cost / local cost)
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ESC(p) __asm__ volatile("" : : "g"(p) : "memory")
#define BATCH 64

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long rounds;

static void *local_worker(void *arg)
{
	unsigned long long s = (unsigned long long)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
	void *p[BATCH];
	for (long r = 0; r < rounds; r++) {
		for (int i = 0; i < BATCH; i++) {
			s ^= s << 13, s ^= s >> 7, s ^= s << 17;
			p[i] = malloc(8 + s % 249);
			ESC(p[i]);
		}
		for (int i = 0; i < BATCH; i++)
			free(p[i]);
	}
	return NULL;
}

/* A ring of batches between producer and consumer; each side spins on
 * its slot's flag (acquire/release), so neither sleeps on a condition. */
#define SLOTS 256
static void *box[SLOTS][BATCH];
static int full[SLOTS];

static void *consumer(void *arg)
{
	(void)arg;
	for (long r = 0; r < rounds; r++) {
		int k = r % SLOTS;
		while (!__atomic_load_n(&full[k], __ATOMIC_ACQUIRE))
			;
		for (int i = 0; i < BATCH; i++)
			free(box[k][i]);
		__atomic_store_n(&full[k], 0, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void produce(int remote)
{
	for (long r = 0; r < rounds; r++) {
		int k = r % SLOTS;
		while (__atomic_load_n(&full[k], __ATOMIC_ACQUIRE))
			;
		for (int i = 0; i < BATCH; i++) {
			box[k][i] = malloc(48);
			ESC(box[k][i]);
		}
		if (!remote) {
			for (int i = 0; i < BATCH; i++)
				free(box[k][i]);
			continue;
		}
		__atomic_store_n(&full[k], 1, __ATOMIC_RELEASE);
	}
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "local")) {
		int t = atoi(argv[2]);
		rounds = atol(argv[3]);
		pthread_t th[64];
		double t0 = now();
		for (int i = 0; i < t; i++)
			pthread_create(&th[i], NULL, local_worker, (void *)(uintptr_t)(i + 1));
		for (int i = 0; i < t; i++)
			pthread_join(th[i], NULL);
		double dt = now() - t0;
		printf("%.1f Mops/s\n", t * rounds * BATCH / dt / 1e6);
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "xfree")) {
		rounds = atol(argv[2]);
		double t0 = now();
		produce(0);
		double local = (now() - t0) / (rounds * BATCH) * 1e9;
		pthread_t th;
		pthread_create(&th, NULL, consumer, NULL);
		t0 = now();
		produce(1);
		pthread_join(th, NULL);
		double remote = (now() - t0) / (rounds * BATCH) * 1e9;
		printf("local %.1f ns, cross-thread %.1f ns, ratio %.2f\n", local, remote, remote / local);
		return 0;
	}
	fprintf(stderr, "usage: scale local THREADS ROUNDS | scale xfree ROUNDS\n");
	return 2;
}
