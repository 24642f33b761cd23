/*
 * t/stack.c: ka_mapping_of (lib/stack.c), which a thread's first sample
 * uses to bound its stack walks: it asks the kernel (PROCMAP_QUERY) or
 * reads /proc/self/maps in pieces, and each way must find the mapping of
 * any address, wherever the piece boundaries fall. 300 anonymous mappings of alternating protections (so that none
 * merge), a file mapping with a long name (a line longer than the part
 * kept of it), the stack and a global are each looked up and compared
 * with the bounds the test reads from the file with stdio; an address in
 * no mapping is not found.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/internal.h"
#include "tap.h"

#define MAPS 300
#define ROUNDS 64

/* The bounds of the mapping holding a, from /proc/self/maps with stdio. */
static bool truth(uintptr_t a, uintptr_t *lo, uintptr_t *hi)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[4096];
	bool found = false;
	while (f && !found && fgets(line, sizeof line, f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && a >= s && a < e) {
			*lo = s;
			*hi = e;
			found = true;
		}
	}
	if (f)
		fclose(f);
	return found;
}

/* Both ways agree with the truth: the kernel's query (where it has one)
 * and the text read in pieces. */
static int same(uintptr_t a)
{
	uintptr_t tlo = 1, thi = 1;
	bool want = truth(a, &tlo, &thi);
	for (int text = 0; text < 2; text++) {
		uintptr_t lo = 0, hi = 0;
		bool got = ka_mapping_of_how(a, &lo, &hi, text);
		if (got != want || (got && (lo != tlo || hi != thi)))
			return 0;
	}
	return 1;
}

static int global_var;

int main(void)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	char *m[MAPS];
	int bad = 0;
	for (int i = 0; i < MAPS; i++) {
		m[i] = mmap(NULL, pg * (1 + i % 3), i % 2 ? PROT_READ : PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m[i] == MAP_FAILED)
			plan_skip_all("mmap failed");
	}
	for (int i = 0; i < MAPS; i++)
		bad += !same((uintptr_t)m[i] + pg / 2);
	ok(bad == 0, "%d anonymous mappings: each found with its bounds (%d wrong)", MAPS, bad);

	/* Files with names of over 400 characters, two long components in a
	 * fresh directory, one more character each round: the lines after
	 * the file's shift, so that the read boundaries fall at every place
	 * in them. */
	char dir[] = "/tmp/kalloc-stack-XXXXXX", sub[512], path[1024], name[201];
	memset(name, 'x', 200);
	name[200] = 0;
	if (!mkdtemp(dir))
		plan_skip_all("no temporary directory");
	snprintf(sub, sizeof sub, "%s/%s", dir, name);
	bool files_ok = mkdir(sub, 0700) == 0;
	int file_bad = 0;
	for (int round = 0; round < ROUNDS && files_ok; round++) {
		snprintf(path, sizeof path, "%s/%.*s", sub, 150 + round, name);
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		char *fm = fd >= 0 && ftruncate(fd, (off_t)pg) == 0 ? mmap(NULL, pg, PROT_READ, MAP_SHARED, fd, 0)
								       : MAP_FAILED;
		if (fm == MAP_FAILED) {
			files_ok = false;
			break;
		}
		file_bad += !same((uintptr_t)fm);
		for (int i = round % 4; i < MAPS; i += 4)
			bad += !same((uintptr_t)m[i] + (size_t)round % pg);
		munmap(fm, pg);
		close(fd);
		unlink(path);
	}
	rmdir(sub);
	rmdir(dir);
	ok(files_ok && file_bad == 0, "%d file mappings with names of %zu.. characters: each found", ROUNDS,
	   strlen(sub) + 151);
	ok(bad == 0, "and the anonymous ones, the file's line before theirs shifting them (%d wrong)", bad);

	int local;
	ok(same((uintptr_t)&local), "the stack's mapping");
	ok(same((uintptr_t)&global_var), "a global's mapping");
	uintptr_t lo, hi;
	munmap(m[0], pg);
	ok(!ka_mapping_of((uintptr_t)m[0], &lo, &hi) && !ka_mapping_of_how((uintptr_t)m[0], &lo, &hi, true),
	   "an address in no mapping: not found");
	errno = 1234;
	ka_mapping_of((uintptr_t)&local, &lo, &hi);
	ka_mapping_of((uintptr_t)m[0], &lo, &hi);
	ok(errno == 1234, "errno left as it was");
	return done_testing();
}
