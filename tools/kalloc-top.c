/*
 * kalloc-top: a live view of a process running under kalloc, like slabtop.
 *
 *   kalloc-top [-d SECONDS] [-n COUNT] [-s mem|objs|active|name|size] PID
 *   kalloc-top -l            list the processes that publish
 *
 * The process must run with KALLOC_CONF=publish:1 (tools/kalloc-run --top
 * sets it): kalloc then rewrites /dev/shm/kalloc.PID from its slow paths
 * (lib/shm.h has the layout). This tool only reads that file; it never
 * stops or signals the process. On a terminal it redraws in place every
 * SECONDS (default 1); otherwise, or with -n, it prints COUNT frames.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "shm.h"

enum sort_key { BY_MEM, BY_OBJS, BY_ACTIVE, BY_NAME, BY_SIZE };

static const struct ka_shm *map_shm(int pid)
{
	char path[64];
	snprintf(path, sizeof path, "/dev/shm/kalloc.%d", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	void *p = mmap(NULL, sizeof(struct ka_shm), PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

/* A consistent copy (the writer's seq is odd while it writes), or 0. */
static int snapshot(const struct ka_shm *m, struct ka_shm *out)
{
	for (int tries = 0; tries < 100; tries++) {
		uint64_t s1 = __atomic_load_n(&m->seq, __ATOMIC_ACQUIRE);
		if (s1 & 1) {
			usleep(1000);
			continue;
		}
		memcpy(out, (const void *)m, sizeof *out);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&m->seq, __ATOMIC_RELAXED) == s1)
			return out->magic == KA_SHM_MAGIC && out->version == KA_SHM_VERSION &&
			       out->ncaches <= KA_SHM_CACHES;
	}
	return 0;
}

static const char *human(double bytes, char *buf, size_t n)
{
	const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;
	while (bytes >= 1024 && u < 4) {
		bytes /= 1024;
		u++;
	}
	snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
	return buf;
}

static void bar(double frac, int width, int color)
{
	int full = (int)(frac * width + 0.5);
	if (full > width)
		full = width;
	fputs(color ? "\033[32m" : "", stdout);
	for (int i = 0; i < width; i++)
		fputs(i < full ? (color ? "\u2588" : "#") : (color ? "\033[2m\u2591\033[22m" : "."), stdout);
	fputs(color ? "\033[0m" : "", stdout);
}

static enum sort_key sort_by;
static uint64_t cache_mem(const struct ka_shm_cache *c) { return c->num_slabs * c->pagesperslab * 4096; }

static int cmp(const void *a, const void *b)
{
	const struct ka_shm_cache *x = a, *y = b;
	uint64_t u = 0, v = 0;
	switch (sort_by) {
	case BY_NAME:
		return strcmp(x->name, y->name);
	case BY_MEM: u = cache_mem(x), v = cache_mem(y); break;
	case BY_OBJS: u = x->num_objs, v = y->num_objs; break;
	case BY_ACTIVE: u = x->active_objs, v = y->active_objs; break;
	case BY_SIZE: u = x->objsize, v = y->objsize; break;
	}
	return u < v ? 1 : u > v ? -1 : strcmp(x->name, y->name);
}

static long long prev_active(const struct ka_shm *prev, const char *name)
{
	if (!prev)
		return -1;
	for (uint32_t i = 0; i < prev->ncaches; i++)
		if (strcmp(prev->caches[i].name, name) == 0)
			return (long long)prev->caches[i].active_objs;
	return 0;
}

static void frame(int pid, const struct ka_shm *s, const struct ka_shm *prev, int tty, int rows)
{
	char comm[64] = "?", b1[32], b2[32], b3[32], b4[32], b5[32];
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/comm", pid);
	FILE *f = fopen(path, "r");
	if (f) {
		if (fgets(comm, sizeof comm, f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
	}
	struct timeval tv;
	gettimeofday(&tv, NULL);
	double age = ((double)tv.tv_sec * 1000 + tv.tv_usec / 1000.0 - (double)s->time_ms) / 1000;
	const char *bold = tty ? "\033[1m" : "", *rev = tty ? "\033[7m" : "", *off = tty ? "\033[0m" : "";
	if (tty)
		fputs("\033[H\033[2J", stdout);
	printf("%skalloc-top%s  pid %d (%s)  updated %.1f s ago  (%llu updates)%s\n", bold, off, pid, comm,
	       age < 0 ? 0 : age, (unsigned long long)s->updates,
	       kill(pid, 0) != 0 && errno == ESRCH ? "  [process gone]" : "");
	uint64_t in_use = s->slab_used - s->tcache + s->large_used + s->huge_used;
	printf(" mapped %s (peak %s)   in use %s   thread caches %s   returned %s\n",
	       human((double)s->mapped, b1, sizeof b1), human((double)s->peak_mapped, b2, sizeof b2),
	       human((double)in_use, b3, sizeof b3), human((double)s->tcache, b4, sizeof b4),
	       human((double)s->returned, b5, sizeof b5));
	double frac = s->mapped ? (double)in_use / (double)s->mapped : 0;
	printf(" in use / mapped ");
	bar(frac, 40, tty);
	printf(" %5.1f%%\n", frac * 100);
	uint64_t ao = 0, to = 0, as = 0, ts = 0, ac = 0;
	for (uint32_t i = 0; i < s->ncaches; i++) {
		ao += s->caches[i].active_objs, to += s->caches[i].num_objs;
		as += s->caches[i].active_slabs, ts += s->caches[i].num_slabs;
		ac += s->caches[i].active_objs > 0;
	}
	printf(" Active / Total Objects (%% used) : %llu / %llu (%.1f%%)\n", (unsigned long long)ao,
	       (unsigned long long)to, to ? 100.0 * (double)ao / (double)to : 0.0);
	printf(" Active / Total Slabs (%% used)   : %llu / %llu (%.1f%%)\n", (unsigned long long)as,
	       (unsigned long long)ts, ts ? 100.0 * (double)as / (double)ts : 0.0);
	printf(" Active / Total Caches           : %llu / %u\n", (unsigned long long)ac, s->ncaches);
	printf(" large blocks %s in buddy pages, %s in mappings, %s cached;  slabs %s, free in buddy %s\n\n",
	       human((double)s->large_used, b1, sizeof b1), human((double)s->huge_used, b2, sizeof b2),
	       human((double)s->huge_cached, b3, sizeof b3), human((double)s->slab_bytes, b4, sizeof b4),
	       human((double)s->buddy_free, b5, sizeof b5));
	printf("%s %9s %9s %4s %8s %6s %8s %10s %8s  %-20s%s\n", rev, "OBJS", "ACTIVE", "USE", "OBJ SIZE",
	       "SLABS", "OBJ/SLAB", "CACHE SIZE", "CHANGE", "NAME", off);
	struct ka_shm_cache c[KA_SHM_CACHES];
	memcpy(c, s->caches, s->ncaches * sizeof *c);
	qsort(c, s->ncaches, sizeof *c, cmp);
	int shown = 0;
	for (uint32_t i = 0; i < s->ncaches; i++) {
		if (c[i].num_slabs == 0 || (rows > 0 && shown >= rows))
			continue;
		shown++;
		long long was = prev_active(prev, c[i].name);
		char delta[24] = "";
		if (was >= 0 && (long long)c[i].active_objs != was)
			snprintf(delta, sizeof delta, "%+lld", (long long)c[i].active_objs - was);
		printf(" %9llu %9llu %3.0f%% %7.2fK %6llu %8llu %10s %s%8s%s  %-20s\n",
		       (unsigned long long)c[i].num_objs, (unsigned long long)c[i].active_objs,
		       c[i].num_objs ? 100.0 * (double)c[i].active_objs / (double)c[i].num_objs : 0.0,
		       (double)c[i].objsize / 1024, (unsigned long long)c[i].num_slabs,
		       (unsigned long long)c[i].objperslab, human((double)cache_mem(&c[i]), b1, sizeof b1),
		       tty && delta[0] ? (delta[0] == '+' ? "\033[31m" : "\033[32m") : "", delta,
		       tty && delta[0] ? "\033[0m" : "", c[i].name);
	}
	printf("\n%s buddyinfo: free blocks per order (order n = 2^n pages)%s\n order", bold, off);
	for (int o = 0; o < KA_SHM_ORDERS; o++)
		printf(" %6d", o);
	printf("\n free ");
	uint64_t most = 1;
	for (int o = 0; o < KA_SHM_ORDERS; o++) {
		printf(" %6llu", (unsigned long long)s->buddy[o]);
		if (s->buddy[o] << o > most)
			most = s->buddy[o] << o;
	}
	printf("\n pages");
	for (int o = 0; o < KA_SHM_ORDERS; o++) {
		int w = (int)((double)(s->buddy[o] << o) / (double)most * 6 + 0.5);
		printf(" ");
		bar(w / 6.0, 6, tty);
	}
	printf("\n");
	fflush(stdout);
}

static int list(void)
{
	DIR *d = opendir("/dev/shm");
	if (!d)
		return 1;
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d))) {
		int pid;
		if (sscanf(e->d_name, "kalloc.%d", &pid) != 1)
			continue;
		const struct ka_shm *m = map_shm(pid);
		struct ka_shm s;
		if (m && snapshot(m, &s))
			printf("%d%s\n", pid, kill(pid, 0) != 0 && errno == ESRCH ? " (gone)" : "");
		n++;
	}
	closedir(d);
	if (!n)
		fprintf(stderr, "kalloc-top: no process publishes (run one with KALLOC_CONF=publish:1)\n");
	return n ? 0 : 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: kalloc-top [-d SECONDS] [-n COUNT] [-r ROWS] [-s mem|objs|active|name|size] PID\n"
			"       kalloc-top -l    (processes that publish)\n"
			"The process must run with KALLOC_CONF=publish:1 (tools/kalloc-run --top PROGRAM).\n");
	exit(2);
}

int main(int argc, char **argv)
{
	double delay = 1;
	long count = -1;
	int opt, rows = -1;
	while ((opt = getopt(argc, argv, "d:n:r:s:lh")) != -1) {
		switch (opt) {
		case 'd': delay = atof(optarg); break;
		case 'n': count = atol(optarg); break;
		case 'r': rows = atoi(optarg); break;
		case 'l': return list();
		case 's':
			sort_by = !strcmp(optarg, "objs") ? BY_OBJS : !strcmp(optarg, "active") ? BY_ACTIVE
				  : !strcmp(optarg, "name") ? BY_NAME : !strcmp(optarg, "size") ? BY_SIZE : BY_MEM;
			break;
		default: usage();
		}
	}
	if (optind != argc - 1 || delay <= 0)
		usage();
	int pid = atoi(argv[optind]);
	const struct ka_shm *m = map_shm(pid);
	if (!m) {
		fprintf(stderr, "kalloc-top: no kalloc counters for pid %d (/dev/shm/kalloc.%d): is it "
				"running under kalloc with KALLOC_CONF=publish:1?\n", pid, pid);
		return 1;
	}
	int tty = isatty(1) && count < 0;
	if (count < 0 && !tty)
		count = 1;
	static struct ka_shm cur, prev;
	int have_prev = 0;
	for (long i = 0; count < 0 || i < count; i++) {
		if (i)
			usleep((useconds_t)(delay * 1e6));
		if (!snapshot(m, &cur)) {
			fprintf(stderr, "kalloc-top: pid %d: counters unreadable (version mismatch?)\n", pid);
			return 1;
		}
		frame(pid, &cur, have_prev ? &prev : NULL, tty, rows);
		prev = cur;
		have_prev = 1;
	}
	return 0;
}
