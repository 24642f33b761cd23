/*
 * t/debug.c: the debug modes catch their bugs. Each case is a small buggy
 * program run in a child under kalloc (preload.h): with its mode on it must
 * end with SIGABRT and a report that names the problem, the address, the
 * class and the offset; with every mode off the same program must run to
 * its end, so that it is the mode that catches the bug. Plain malloc/free:
 * this file is not linked with kalloc's core.
 */
#include <malloc.h>
#include <stdint.h>
#include <string.h>

#include "preload.h"

/* Stores through this are not dead to the compiler, even into freed memory. */
__attribute__((noinline)) static void poke(void *p, size_t off, int v) { ((volatile unsigned char *)p)[off] = (unsigned char)v; }
static void note(const char *key, const void *p) { fprintf(stderr, "%s=%p\n", key, p); }

static int child(const char *name)
{
	if (!strcmp(name, "use-after-free")) {
		char *p = malloc(48);
		note("addr", p);
		free(p);
		poke(p, 24, 0);
		/* Reuse: the next 48-byte object comes back from the slab. */
		void *q = malloc(48), *r = malloc(48);
		free(q);
		free(r);
	} else if (!strcmp(name, "overrun")) {
		char *p = malloc(48);
		note("addr", p);
		poke(p, 50, 'x');
		free(p);
	} else if (!strcmp(name, "overrun-realloc")) {
		char *p = malloc(48);
		note("addr", p);
		poke(p, 48, 'x');
		p = realloc(p, 100);
		free(p);
	} else if (!strcmp(name, "overrun-large")) {
		char *p = malloc(100000);
		note("addr", p);
		poke(p, 100003, 'x');
		free(p);
	} else if (!strcmp(name, "double-free-scribbled")) {
		/* The write after free clears the free key: only a mode that
		 * checks the slab's free state still sees the double free. */
		char *p = malloc(1), *q = malloc(1);
		note("addr", p);
		free(p);
		memset(p + 8, 0, 8);
		free(q);
		free(p);
	} else if (!strcmp(name, "contents")) {
		/* Behaviour of a correct program under poison and redzone. */
		unsigned char *p = malloc(100);
		int bad = 0;
		for (int i = 0; i < 100; i++)
			bad += p[i] != 0x5a;
		unsigned char *z = calloc(1, 100);
		for (int i = 0; i < 100; i++)
			bad += z[i] != 0;
		printf("poisoned=%d usable=%zu\n", bad == 0, malloc_usable_size(p));
		void *a;
		if (posix_memalign(&a, 256, 200) || (uintptr_t)a % 256)
			return 1;
		memset(a, 1, 200);
		p = realloc(p, 5000);
		memset(p, 2, 5000);
		free(a);
		free(p);
		free(z);
	}
	return 0;
}

struct expect {
	const char *name, *conf, *what, *cls, *extra;
};

static const struct expect cases[] = {
	{"use-after-free", "poison:1", "malloc(): write after free in", "(kmalloc-48)", "first changed byte at offset 24"},
	{"overrun", "redzone:1", "free(): buffer overrun of", "(kmalloc-64)", "red zone byte at offset 50"},
	{"overrun-realloc", "redzone:1", "realloc(): buffer overrun of", "(kmalloc-64)", "requested 48 bytes"},
	{"overrun-large", "redzone:1", "free(): buffer overrun of", "(large)", "red zone byte at offset 100003"},
	{"double-free-scribbled", "consistency:1", "free(): double free of", "(kmalloc-16)", NULL},
	{"double-free-scribbled", "poison:1", "free(): double free of", "(kmalloc-16)", NULL},
};

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "child"))
		return child(argv[2]);
	kalloc_lib();
	plan(3 * (int)(sizeof cases / sizeof *cases) + 4);
	static char out[8192];
	char addr[64], want[160];
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		const struct expect *e = &cases[i];
		int st = run_case(e->conf, e->name, out, sizeof out);
		noted(out, "addr", addr, sizeof addr);
		snprintf(want, sizeof want, "kalloc: %s %s %s", e->what, addr, e->cls);
		ok(aborted(st), "%s with %s: SIGABRT", e->name, e->conf);
		if (!ok(addr[0] && strstr(out, want) && (!e->extra || strstr(out, e->extra)),
			"%s with %s: the report names the problem, address %s, class and offset", e->name,
			e->conf, addr))
			diag("wanted \"%s\" and \"%s\" in:\n%s", want, e->extra ? e->extra : "", out);
		st = run_case("tcache_max:256", e->name, out, sizeof out);
		if (!ok(exited_ok(st) && !strstr(out, "kalloc:"), "%s with the modes off: runs to the end", e->name))
			diag("status %d, output:\n%s", st, out);
	}
	int st = run_case("poison:1,redzone:1", "contents", out, sizeof out);
	ok(exited_ok(st) && strstr(out, "poisoned=1"), "poison: new objects read 0x5a, calloc'd ones 0");
	ok(strstr(out, "usable=100") != NULL, "redzone: malloc_usable_size is the size asked for");
	st = run_case("poison:1,redzone:1,consistency:1", "contents", out, sizeof out);
	ok(exited_ok(st) && !strstr(out, "kalloc:"), "all modes: a correct program (memalign, realloc, calloc) runs clean");
	st = run_case(NULL, "contents", out, sizeof out);
	ok(exited_ok(st) && strstr(out, "usable=112"), "modes off: usable size is the class size (kmalloc-112)");
	return tap_failed != 0;
}
