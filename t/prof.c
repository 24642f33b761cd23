/*
 * t/prof.c: KALLOC_CONF=prof:1, the sampled heap profile. Children
 * (preload.h) run under kalloc and write profiles into a private
 * directory; the parent parses them (header, stack lines, mappings),
 * unbiases each line as google-pprof does (1 / (1 - exp(-avg / rate)))
 * and attributes lines to functions by their first return address
 * (functions of this program, exported with -rdynamic: dladdr1 gives
 * their sizes). Plain malloc: not linked with kalloc's core.
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "preload.h"

#define MiB (1024.0 * 1024.0)

/* ------------------------------------------------------------ the children */

static unsigned long long seed;

/* Sizes from 16 B to 1 MiB, log-uniform by power of two. */
static size_t mixed_size(void)
{
	unsigned bits = 4 + (unsigned)(rnd(&seed) % 17);
	size_t lo = (size_t)1 << bits, n = lo + (size_t)(rnd(&seed) % lo);
	return n > (1u << 20) ? 1u << 20 : n;
}

void *site_a(size_t n);
void *site_b(size_t n);
void *site_remote(size_t n);
void *site_forked(size_t n);

/* The sites: each allocates, then touches the block (no tail call, so
 * the return address in the site is the first frame). */
#define SITE(name, mark)                                 \
	__attribute__((noinline)) void *name(size_t n)   \
	{                                                \
		char *p = malloc(n);                     \
		p[0] = mark;                             \
		return p;                                \
	}
SITE(site_a, 1)
SITE(site_b, 2)
SITE(site_remote, 3)
SITE(site_forked, 4)

static void note(const char *k, const void *p) { fprintf(stderr, "%s=%p\n", k, p); }

static int (*dump_fn(void))(const char *)
{
	return (int (*)(const char *))dlsym(RTLD_DEFAULT, "kalloc_prof_dump");
}

/* 100 MiB live from site_a and 10 MiB from site_b, interleaved. */
static int child_accuracy(void)
{
	const char *s = getenv("PROF_SEED");
	seed = s ? strtoull(s, NULL, 0) : 1;
	size_t want_a = 100u << 20, want_b = 10u << 20, a = 0, b = 0, n = 0;
	void **keep = malloc(100000 * sizeof *keep);
	while ((a < want_a || b < want_b) && n < 100000) {
		size_t k = mixed_size();
		if (a < want_a && (b >= want_b || rnd(&seed) % 11)) {
			keep[n++] = site_a(k);
			a += k;
		} else {
			keep[n++] = site_b(k);
			b += k;
		}
	}
	fprintf(stderr, "bytes_a=%zu\nbytes_b=%zu\n", a, b);
	note("site_a", (void *)site_a);
	note("site_b", (void *)site_b);
	return 0; /* the profile is written at exit, the blocks still live */
}

struct remote {
	void **blocks;
	int n;
};

static void *free_half(void *arg)
{
	struct remote *r = arg;
	for (int i = 0; i < r->n; i += 2)
		free(r->blocks[i]);
	return NULL;
}

/* 64 sampled blocks (prof_sample:1), half freed by another thread. */
static int child_remote(const char *dir)
{
	void *blocks[64];
	for (int i = 0; i < 64; i++)
		blocks[i] = site_remote(200 + 40 * (size_t)i);
	struct remote r = {blocks, 64};
	pthread_t t;
	if (pthread_create(&t, NULL, free_half, &r) != 0 || pthread_join(t, NULL) != 0)
		return 1;
	char path[512];
	snprintf(path, sizeof path, "%s/remote.heap", dir);
	int (*dump)(const char *) = dump_fn();
	if (!dump || dump(path) != 0)
		return 2;
	note("site_remote", (void *)site_remote);
	return 0;
}

/* 32 KiB in 64-byte blocks, then freed: a short-lived thread's work. */
static void *seq_work(void *arg)
{
	static __thread void *b[512];
	for (int i = 0; i < 512; i++)
		b[i] = malloc(64);
	for (int i = 0; i < 512; i++)
		free(b[i]);
	return arg;
}

/* SEQ_THREADS threads one after another (each in the last one's TLS, as a
 * joined thread's stack is reused), at prof_sample:65536. */
#define SEQ_THREADS 400
static int child_seq(const char *dir)
{
	for (int i = 0; i < SEQ_THREADS; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, seq_work, NULL) != 0 || pthread_join(t, NULL) != 0)
			return 1;
	}
	char path[512];
	snprintf(path, sizeof path, "%s/seq.heap", dir);
	int (*dump)(const char *) = dump_fn();
	return !dump || dump(path) != 0 ? 2 : 0;
}

/* The child of a fork allocates on its own and exits; its profile is its own. */
static int child_fork(void)
{
	void *before = site_a(5000);
	fflush(stderr);
	pid_t kid = fork();
	if (kid == 0) {
		for (int i = 0; i < 20; i++)
			site_forked(3000);
		fprintf(stderr, "kid=%d\n", (int)getpid());
		exit(0);
	}
	int st;
	waitpid(kid, &st, 0);
	fprintf(stderr, "parent=%d\n", (int)getpid());
	note("site_a", (void *)site_a);
	note("site_forked", (void *)site_forked);
	free(before);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

/* A randomized model: every block's contents and usable size checked, under prof_sample small. */
static int child_model(void)
{
	const char *s = getenv("PROF_SEED");
	seed = s ? strtoull(s, NULL, 0) : 1;
	enum { SLOTS = 512 };
	static unsigned char *p[SLOTS];
	static size_t len[SLOTS];
	static unsigned char tag[SLOTS];
	size_t live = 0;
	for (int step = 0; step < 40000; step++) {
		unsigned i = (unsigned)(rnd(&seed) % SLOTS);
		size_t n = 16 + (rnd(&seed) % 4 ? rnd(&seed) % 2048 : rnd(&seed) % (300u << 10));
		if (p[i]) {
			for (size_t k = 0; k < len[i]; k += 61)
				if (p[i][k] != tag[i]) {
					fprintf(stderr, "model: block %p changed at %zu\n", (void *)p[i], k);
					return 1;
				}
			if (p[i][len[i] - 1] != tag[i])
				return 1;
		}
		unsigned op = (unsigned)(rnd(&seed) % 5);
		if (p[i] && op < 2) {
			free(p[i]);
			p[i] = NULL;
			live--;
			continue;
		}
		if (p[i] && op == 2) {
			unsigned char *q = realloc(p[i], n);
			if (!q)
				return 2;
			for (size_t k = 0; k < (n < len[i] ? n : len[i]); k += 61)
				if (q[k] != tag[i]) {
					fprintf(stderr, "model: realloc lost byte %zu\n", k);
					return 3;
				}
			p[i] = q;
		} else {
			if (p[i]) {
				free(p[i]);
				live--;
			}
			if (op == 3) {
				p[i] = calloc(1, n);
				for (size_t k = 0; p[i] && k < n; k++)
					if (p[i][k]) {
						fprintf(stderr, "model: calloc byte %zu not zero\n", k);
						return 4;
					}
			} else {
				size_t align = (size_t)16 << (rnd(&seed) % 10); /* 16 .. 8192 */
				if (posix_memalign((void **)&p[i], align, n) != 0)
					return 5;
				if ((uintptr_t)p[i] & (align - 1)) {
					fprintf(stderr, "model: %p not aligned to %zu\n", (void *)p[i], align);
					return 6;
				}
			}
			if (!p[i])
				return 7;
			live++;
		}
		size_t u = malloc_usable_size(p[i]);
		if (u < n) {
			fprintf(stderr, "model: usable %zu < %zu\n", u, n);
			return 8;
		}
		len[i] = u; /* the program may use all of it */
		tag[i] = (unsigned char)(rnd(&seed) | 1);
		memset(p[i], tag[i], u);
	}
	/* C++ sized delete of sampled blocks (prof_sample small: all are). */
	void *(*nw)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "_Znwm");
	void (*dl)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "_ZdlPvm");
	if (!nw || !dl)
		return 9;
	for (size_t n = 8; n <= 20000; n = n * 3 / 2 + 1)
		dl(nw(n), n);
	fprintf(stderr, "live=%zu\n", live);
	return 0;
}

static int child_dump(const char *dir)
{
	void *keep = site_b(100000);
	char path[512];
	snprintf(path, sizeof path, "%s/ondemand.heap", dir);
	int (*dump)(const char *) = dump_fn();
	if (!dump)
		return 1;
	errno = 0;
	int r = dump(path);
	fprintf(stderr, "dump=%d errno=%d\n", r, errno);
	snprintf(path, sizeof path, "%s/no-such-dir/x.heap", dir);
	errno = 0;
	r = dump(path);
	fprintf(stderr, "baddir=%d errno=%d\n", r, errno);
	free(keep);
	return 0;
}

/* A sampled large block grown in place, within its pages and past them. */
static int child_grow(const char *dir)
{
	char *p = site_b(100000), *q = realloc(p, 102000), *r = q ? realloc(q, 120000) : NULL;
	fprintf(stderr, "inplace=%d\n", p == q && q == r);
	char path[512];
	snprintf(path, sizeof path, "%s/grow.heap", dir);
	int (*dump)(const char *) = dump_fn();
	int st = dump ? dump(path) : 1;
	free(r);
	return st;
}

/* The heap grows by 16 MiB in 64 KiB blocks: prof_step:2 leaves files. */
static int child_step(void)
{
	for (int i = 0; i < 256; i++)
		site_a(64 << 10);
	fprintf(stderr, "pid=%d\n", (int)getpid());
	return 0;
}

/* ------------------------------------------------------------ the parser */

struct pline {
	double n1, s1, n2, s2;
	int depth;
	uintptr_t frame[32];
};

struct prof {
	long long hdr[4];
	long rate;
	int nlines, maps, comments;
	bool blank_before_maps, has_maps_header;
	struct pline line[4096];
};

static struct prof prof;

/* 0 if path parses as a heap_v2 profile (into prof), else a reason. */
static const char *parse(const char *path)
{
	memset(&prof, 0, sizeof prof);
	FILE *f = fopen(path, "r");
	if (!f)
		return "cannot open";
	char buf[8192];
	if (!fgets(buf, sizeof buf, f) ||
	    sscanf(buf, "heap profile: %lld: %lld [%lld: %lld] @ heap_v2/%ld", &prof.hdr[0], &prof.hdr[1],
		   &prof.hdr[2], &prof.hdr[3], &prof.rate) != 5) {
		fclose(f);
		return "bad header";
	}
	bool blank = false;
	while (fgets(buf, sizeof buf, f)) {
		if (!strcmp(buf, "MAPPED_LIBRARIES:\n")) {
			prof.has_maps_header = true;
			prof.blank_before_maps = blank;
			break;
		}
		blank = buf[0] == '\n';
		if (blank)
			continue;
		if (buf[0] == '#') {
			prof.comments++;
			continue;
		}
		long long n1, s1, n2, s2;
		int used;
		if (sscanf(buf, "%lld: %lld [%lld: %lld] @%n", &n1, &s1, &n2, &s2, &used) != 4 ||
		    prof.nlines == 4096) {
			fclose(f);
			return "bad stack line";
		}
		struct pline *l = &prof.line[prof.nlines++];
		*l = (struct pline){(double)n1, (double)s1, (double)n2, (double)s2, 0, {0}};
		char *s = buf + used, *end;
		for (;;) {
			unsigned long long v = strtoull(s, &end, 16);
			if (end == s || l->depth == 32)
				break;
			l->frame[l->depth++] = (uintptr_t)v;
			s = end;
		}
	}
	while (fgets(buf, sizeof buf, f)) {
		unsigned long lo, hi;
		if (sscanf(buf, "%lx-%lx ", &lo, &hi) == 2 && lo < hi)
			prof.maps++;
	}
	fclose(f);
	return NULL;
}

/* The size of one of this program's functions (same binary as the child). */
static size_t fn_size(void *fn)
{
	Dl_info info;
	const ElfW(Sym) *sym = NULL;
	if (!dladdr1(fn, &info, (void **)&sym, RTLD_DL_SYMENT) || !sym)
		return 0;
	return sym->st_size;
}

/* Unbiased in-use bytes of the lines whose first frame is in [lo, lo + size). */
static double site_bytes(uintptr_t lo, size_t size, double *objs)
{
	double bytes = 0;
	*objs = 0;
	for (int i = 0; i < prof.nlines; i++) {
		struct pline *l = &prof.line[i];
		if (!l->depth || l->frame[0] < lo || l->frame[0] >= lo + size || l->n1 == 0)
			continue;
		double scale = 1 / (1 - exp(-(l->s1 / l->n1) / (double)prof.rate));
		bytes += l->s1 * scale;
		*objs += l->n1;
	}
	return bytes;
}

static uintptr_t noted_addr(const char *out, const char *key)
{
	char v[64];
	return (uintptr_t)strtoull(noted(out, key, v, sizeof v), NULL, 16);
}

static long noted_long(const char *out, const char *key)
{
	char v[64];
	return strtol(noted(out, key, v, sizeof v), NULL, 10);
}

/* Run google-pprof --text on path; the MB it gives to function fn, or -1. */
static double pprof_mb(const char *exe, const char *path, const char *fn, char *text, size_t cap)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "google-pprof --text '%s' '%s' 2>/dev/null", exe, path);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	size_t n = fread(text, 1, cap - 1, p);
	text[n] = 0;
	pclose(p);
	double mb = -1;
	for (char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		double flat;
		char name[256];
		if (sscanf(line, " %lf %*f%% %*f%% %*f %*f%% %255s", &flat, name) == 2 && !strcmp(name, fn))
			mb = flat;
	}
	return mb;
}

static char out[1 << 16];
static char dir[] = "/tmp/kalloc-prof-XXXXXX";

static const char *conf(const char *extra)
{
	static char c[1024];
	snprintf(c, sizeof c, "prof:1,prof_file:%s/c.%%p.heap%s%s", dir, extra ? "," : "", extra ? extra : "");
	return c;
}

static void accuracy(const char *extra, bool strict, const char *exe)
{
	int st = run_case(conf(extra), "accuracy", out, sizeof out);
	char path[600];
	snprintf(path, sizeof path, "%s/c.%ld.heap", dir, noted_long(out, "pid"));
	const char *bad = parse(path);
	ok(exited_ok(st) && !bad, "accuracy (%s): the child writes a profile that parses (%s)", extra ? extra : "default rate",
	   bad ? bad : "ok");
	double truth_a = (double)noted_long(out, "bytes_a"), truth_b = (double)noted_long(out, "bytes_b");
	double oa, ob;
	double est_a = site_bytes(noted_addr(out, "site_a"), fn_size((void *)site_a), &oa);
	double est_b = site_bytes(noted_addr(out, "site_b"), fn_size((void *)site_b), &ob);
	double err_a = est_a / truth_a - 1, err_b = est_b / truth_b - 1;
	diag("accuracy (%s): site_a %.2f MiB estimated of %.2f (%+.1f%%, %.0f samples), site_b %.2f of %.2f (%+.1f%%, %.0f samples)",
	     extra ? extra : "default rate", est_a / MiB, truth_a / MiB, 100 * err_a, oa, est_b / MiB, truth_b / MiB,
	     100 * err_b, ob);
	if (strict) {
		ok(prof.rate == 4096, "the header says heap_v2/4096 (got %ld)", prof.rate);
		ok(prof.nlines > 2 && prof.comments >= 1 && prof.blank_before_maps && prof.maps > 3,
		   "stack lines (%d), a comment, a blank line, MAPPED_LIBRARIES: with mappings (%d)", prof.nlines, prof.maps);
		double n = 0, s = 0;
		for (int i = 0; i < prof.nlines; i++)
			n += prof.line[i].n1, s += prof.line[i].s1;
		ok(n == prof.hdr[0] && s == prof.hdr[1] && prof.hdr[2] >= prof.hdr[0],
		   "the header's totals are the lines' sums (raw counts)");
		ok(fabs(err_a) < 0.10, "site_a's 100 MiB estimated within 10%% (%+.1f%%)", 100 * err_a);
		ok(fabs(err_b) < 0.10, "site_b's 10 MiB estimated within 10%% (%+.1f%%)", 100 * err_b);
		if (system("command -v google-pprof >/dev/null 2>&1") != 0) {
			skip("google-pprof is not installed");
			skip("google-pprof is not installed");
			return;
		}
		static char text[1 << 16];
		double mb_a = pprof_mb(exe, path, "site_a", text, sizeof text);
		double mb_b = pprof_mb(exe, path, "site_b", text, sizeof text);
		ok(mb_a > 0 && fabs(mb_a * MiB / truth_a - 1) < 0.10,
		   "google-pprof --text: site_a %.1f MB in use, truth %.1f", mb_a, truth_a / MiB);
		ok(mb_b > 0 && fabs(mb_b * MiB / truth_b - 1) < 0.10,
		   "google-pprof --text: site_b %.1f MB in use, truth %.1f", mb_b, truth_b / MiB);
		if (mb_a <= 0 || mb_b <= 0)
			diag("google-pprof said:\n%.2000s", text);
	} else {
		ok(est_a > 0 && est_b >= 0 && prof.rate == 524288, "default rate: heap_v2/524288, site_a seen");
	}
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "child")) {
		fprintf(stderr, "pid=%d\n", (int)getpid());
		const char *d = getenv("PROF_DIR");
		if (!strcmp(argv[2], "accuracy"))
			return child_accuracy();
		if (!strcmp(argv[2], "remote"))
			return child_remote(d);
		if (!strcmp(argv[2], "fork"))
			return child_fork();
		if (!strcmp(argv[2], "model"))
			return child_model();
		if (!strcmp(argv[2], "dump"))
			return child_dump(d);
		if (!strcmp(argv[2], "step"))
			return child_step();
		if (!strcmp(argv[2], "grow"))
			return child_grow(d);
		if (!strcmp(argv[2], "seq"))
			return child_seq(d);
		return 127;
	}
	kalloc_lib();
	char exe[4096];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
	exe[len > 0 ? len : 0] = 0;
	if (!mkdtemp(dir))
		plan_skip_all("no temporary directory");
	setenv("PROF_DIR", dir, 1);
	char s[32];
	snprintf(s, sizeof s, "%lu", test_seed() | 1);
	setenv("PROF_SEED", s, 1);

	accuracy("prof_sample:4096", true, exe);
	accuracy(NULL, false, exe);

	/* A sampled block freed by another thread leaves the profile. */
	int st = run_case(conf("prof_sample:1"), "remote", out, sizeof out);
	char path[600];
	snprintf(path, sizeof path, "%s/remote.heap", dir);
	const char *bad = parse(path);
	double objs;
	site_bytes(noted_addr(out, "site_remote"), fn_size((void *)site_remote), &objs);
	ok(exited_ok(st) && !bad && objs == 32,
	   "remote free: 32 of site_remote's 64 sampled blocks left in use after another thread freed 32 (%.0f)", objs);

	/* Threads that reuse one another's TLS sample independently: 400
	 * allocating 32 KiB each at prof_sample:65536 take some 200 samples
	 * (Poisson: within 120..300 but once in 10^9); the same draws in
	 * every thread give each the same count, 0, 400 or 800 in all. */
	st = run_case(conf("prof_sample:65536"), "seq", out, sizeof out);
	snprintf(path, sizeof path, "%s/seq.heap", dir);
	bad = parse(path);
	ok(exited_ok(st) && !bad && prof.hdr[2] >= 120 && prof.hdr[2] <= 300,
	   "%d threads one after another, 32 KiB each at prof_sample:65536: sampled independently "
	   "(%lld samples, about 200 expected; a multiple of %d if they shared draws)", SEQ_THREADS,
	   bad ? -1 : prof.hdr[2], SEQ_THREADS);

	/* Fork: the child writes its own file, with its own allocations. */
	st = run_case(conf("prof_sample:1"), "fork", out, sizeof out);
	long kid = noted_long(out, "kid"), parent = noted_long(out, "parent");
	snprintf(path, sizeof path, "%s/c.%ld.heap", dir, kid);
	bad = parse(path);
	size_t forked_size = fn_size((void *)site_forked);
	double kid_forked, kid_a;
	site_bytes(noted_addr(out, "site_forked"), forked_size, &kid_forked);
	site_bytes(noted_addr(out, "site_a"), fn_size((void *)site_a), &kid_a);
	ok(exited_ok(st) && kid > 0 && !bad && kid_forked == 20 && kid_a == 1,
	   "fork: the child's profile (its pid) has its 20 blocks and the inherited one (%.0f, %.0f)", kid_forked, kid_a);
	snprintf(path, sizeof path, "%s/c.%ld.heap", dir, parent);
	bad = parse(path);
	double par_forked, par_a;
	site_bytes(noted_addr(out, "site_forked"), forked_size, &par_forked);
	site_bytes(noted_addr(out, "site_a"), fn_size((void *)site_a), &par_a);
	ok(!bad && par_forked == 0 && par_a == 0, "fork: the parent's own profile has none of the child's blocks");

	/* Every entry point on sampled blocks. */
	for (int i = 0; i < 2; i++) {
		const char *rate = i ? "prof_sample:1" : "prof_sample:8192";
		st = run_case(conf(rate), "model", out, sizeof out);
		snprintf(path, sizeof path, "%s/c.%ld.heap", dir, noted_long(out, "pid"));
		bad = parse(path);
		ok(exited_ok(st), "model (%s): malloc, realloc, calloc, posix_memalign, free, usable sizes, sized delete",
		   rate);
		if (!exited_ok(st))
			diag("child output:\n%.2000s", out);
		if (i)
			ok(!bad && prof.hdr[0] >= noted_long(out, "live") && prof.hdr[0] <= noted_long(out, "live") + 8,
			   "model (%s): the profile's in-use count is the model's live blocks (%lld, %ld; a few more: "
			   "the run's own)", rate, prof.hdr[0], noted_long(out, "live"));
	}

	/* kalloc_prof_dump. */
	st = run_case(conf("prof_sample:1"), "dump", out, sizeof out);
	snprintf(path, sizeof path, "%s/ondemand.heap", dir);
	bad = parse(path);
	struct stat sb;
	ok(exited_ok(st) && noted_long(out, "dump") == 0 && !bad && stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600,
	   "kalloc_prof_dump(path) returns 0 and writes a profile, mode 0600");
	ok(strstr(out, "baddir=-1 errno=2") != NULL, "kalloc_prof_dump to a missing directory: -1, ENOENT");
	st = run_case(NULL, "dump", out, sizeof out);
	ok(exited_ok(st) && strstr(out, "dump=-1 errno=2") != NULL, "kalloc_prof_dump with prof off: -1, ENOENT");

	/* realloc in place keeps a sampled block in the profile, at its new size. */
	st = run_case(conf("prof_sample:1"), "grow", out, sizeof out);
	snprintf(path, sizeof path, "%s/grow.heap", dir);
	bad = parse(path);
	int at_new = 0, at_old = 0;
	for (int i = 0; !bad && i < prof.nlines; i++) {
		at_new += prof.line[i].n1 == 1 && prof.line[i].s1 == 120000;
		at_old += prof.line[i].s1 == 100000 || prof.line[i].s1 == 102000;
	}
	ok(exited_ok(st) && noted_long(out, "inplace") == 1 && at_new == 1 && at_old == 0,
	   "a sampled block grown in place by realloc (100000 -> 102000 -> 120000 B) is not copied and "
	   "stays in the profile at its new size (in place %ld, lines at 120000: %d, at the old sizes: %d)",
	   noted_long(out, "inplace"), at_new, at_old);

	/* prof_step. */
	st = run_case(conf("prof_sample:4096,prof_step:2"), "step", out, sizeof out);
	long pid = noted_long(out, "pid");
	int files = 0;
	for (int k = 1; k <= 12; k++) {
		snprintf(path, sizeof path, "%s/c.%ld.%d.heap", dir, pid, k);
		if (!parse(path))
			files++;
	}
	ok(exited_ok(st) && files >= 5 && files <= 10, "prof_step:2: a profile per 2 MiB of growth to 16 MiB (%d)", files);

	/* Refused with a debug mode. */
	st = run_case(conf("poison:1"), "step", out, sizeof out);
	snprintf(path, sizeof path, "%s/c.%ld.heap", dir, noted_long(out, "pid"));
	ok(exited_ok(st) && strstr(out, "prof:1 ignored") && access(path, F_OK) != 0,
	   "prof:1 with poison:1: a warning and no profile");

	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	return done_testing();
}
