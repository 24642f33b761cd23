/*
 * t/oom.c: when the OS refuses memory, allocation returns NULL and the
 * allocator stays usable: through the OS layer's failure hook, and for real
 * under RLIMIT_AS (in a child, skipped under ASan/TSan whose shadow memory
 * needs the address space).
 */
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "tap.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

static bool refuse(const char *call)
{
	(void)call;
	return true;
}

int main(void)
{
	plan(5);
	bool z;
	/* Use up what is mapped, so the next request needs a new chunk. */
	void *held[64];
	int n = 0;
	ka_os_set_fail_hook(refuse);
	void *p;
	while (n < 64 && (p = ka_buddy_alloc(KA_MAX_ORDER, KA_PG_RAW, &z)))
		held[n++] = p;
	ok(n < 64 && ka_buddy_alloc(KA_MAX_ORDER, KA_PG_RAW, &z) == NULL,
	   "the OS refuses: a request that needs a new chunk returns NULL");
	ka_buddy_validate();
	ka_os_set_fail_hook(NULL);
	p = ka_buddy_alloc(KA_MAX_ORDER, KA_PG_RAW, &z);
	ok(p != NULL, "the OS gives again: the same request succeeds");
	ka_buddy_free(p, KA_MAX_ORDER);
	while (n)
		ka_buddy_free(held[--n], KA_MAX_ORDER);
	ka_buddy_validate();
	ok(1, "structures valid after the refusal");

#ifdef SANITIZED
	skip("RLIMIT_AS under a sanitizer");
	skip("RLIMIT_AS under a sanitizer");
#else
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		long vm = 0;
		FILE *f = fopen("/proc/self/statm", "r");
		if (!f || fscanf(f, "%ld", &vm) != 1)
			_exit(3);
		fclose(f);
		struct rlimit rl = {(rlim_t)vm * 4096 + (64 << 20), (rlim_t)vm * 4096 + (64 << 20)};
		setrlimit(RLIMIT_AS, &rl);
		void *b[256];
		int k = 0;
		while (k < 256 && (b[k] = ka_buddy_alloc(KA_MAX_ORDER, KA_PG_RAW, &z)))
			memset(b[k++], 1, 4096);
		if (k == 256)
			_exit(1); /* the limit was never hit */
		ka_buddy_validate();
		while (k)
			ka_buddy_free(b[--k], KA_MAX_ORDER);
		ka_buddy_purge(true);
		void *again = ka_buddy_alloc(KA_MAX_ORDER, KA_PG_RAW, &z);
		_exit(again ? 0 : 2);
	}
	int st;
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) != 1, "RLIMIT_AS: allocation eventually returns NULL, no crash");
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "after freeing, allocation succeeds again");
#endif
	return 0;
}
