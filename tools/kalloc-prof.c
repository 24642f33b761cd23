/*
 * kalloc-prof: the top allocation sites of a heap profile, for machines
 * without google-pprof (tools/kalloc-run --prof falls back to it).
 *
 *   kalloc-prof [-n COUNT] FILE
 *
 * FILE is a heap profile in gperftools' text format, as KALLOC_CONF=prof:1
 * writes it (and google-pprof and jeprof read it):
 *
 *   heap profile: <objs>: <bytes> [<objs>: <bytes>] @ heap_v2/<rate>
 *   # a comment (kalloc says where its stacks come from)
 *   <objs>: <bytes> [<objs>: <bytes>] @ 0xADDR 0xADDR ...
 *   ...
 *   MAPPED_LIBRARIES:
 *   <the process's /proc/self/maps>
 *
 * Each stack line holds raw sampled counts, in use then allocated, of one
 * stack and one size. A block of s bytes is sampled with probability
 * 1 - exp(-s/rate) (a Poisson process over the bytes allocated), so a line's
 * in-use pair is unbiased as pprof does it: both scaled by
 * 1 / (1 - exp(-avg/rate)), avg = bytes/objs of that line. rate 0 means every
 * block was recorded (no scaling).
 *
 * A site is the first frame outside libkalloc (the frames of kalloc's own
 * malloc say nothing about the program), named with addr2line -f -C when it
 * is installed, else module+offset (the address addr2line -e MODULE takes).
 * Frames are return addresses: the name is looked up one byte before.
 *
 * This program uses the C library's malloc: kalloc-run runs it without
 * LD_PRELOAD, so that it never profiles itself.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* One mapping of the MAPPED_LIBRARIES section. */
struct mapping {
	uint64_t start, end, offset;
	char *path; /* NULL for anonymous memory */
	int kalloc; /* libkalloc's own code */
};

/* One stack line, reduced to its site, or one site after merging. */
struct site {
	uint64_t addr;  /* the site's frame; 0: the line had no frame */
	double bytes;   /* estimated bytes in use */
	double objs;    /* estimated objects in use */
	char *name;     /* after symbolizing */
};

static const char *file_name;
static unsigned long line_no;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "kalloc-prof: %s:", file_name);
	if (line_no)
		fprintf(stderr, "%lu:", line_no);
	fputc(' ', stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return p;
	size_t n = *cap ? *cap : 16;
	while (n < need)
		n *= 2;
	p = realloc(p, n * size);
	if (!p) {
		fprintf(stderr, "kalloc-prof: out of memory\n");
		exit(1);
	}
	*cap = n;
	return p;
}

static const char *skip_space(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* A decimal count; NULL when there is none or it does not fit. */
static const char *parse_count(const char *s, uint64_t *v)
{
	if (!s)
		return NULL;
	s = skip_space(s);
	if (*s < '0' || *s > '9')
		return NULL;
	char *end;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno ? NULL : end;
}

static const char *expect(const char *s, char c)
{
	s = skip_space(s);
	return *s == c ? s + 1 : NULL;
}

/* At least one blank, then none or more: google-pprof's \\s+. */
static const char *blanks(const char *s)
{
	return s && (*s == ' ' || *s == '\t') ? skip_space(s) : NULL;
}

/*
 * "<objs>: <bytes> [<objs>: <bytes>] @": the in-use pair; NULL if
 * malformed. The blanks are required where google-pprof's pattern requires
 * them (it skips a line without them, silently), so that a file this
 * program accepts is one google-pprof reads whole.
 */
static const char *parse_pairs(const char *s, uint64_t *objs, uint64_t *bytes)
{
	uint64_t o2, b2;
	if (!(s = parse_count(s, objs)) || *s++ != ':' || !(s = parse_count(blanks(s), bytes)) ||
	    !(s = blanks(s)) || *s++ != '[' || !(s = parse_count(s, &o2)) || *s++ != ':' ||
	    !(s = parse_count(blanks(s), &b2)) || *s++ != ']' || !(s = expect(s, '@')))
		return NULL;
	return s;
}

static uint64_t parse_header(const char *s)
{
	static const char lead[] = "heap profile:";
	uint64_t objs, bytes, rate;
	if (strncmp(s, lead, sizeof lead - 1))
		die("not a heap profile (the first line does not start with \"%s\")", lead);
	s = parse_pairs(s + sizeof lead - 1, &objs, &bytes);
	if (!s)
		die("malformed header (want \"heap profile: N: B [N: B] @ heap_v2/RATE\")");
	s = skip_space(s);
	if (strncmp(s, "heap_v2/", 8))
		die("not a heap_v2 profile (the header names \"%.*s\")", (int)strcspn(s, " \n"), s);
	s = parse_count(s + 8, &rate);
	if (!s || *skip_space(s))
		die("malformed sampling rate in the header");
	return rate;
}

/* "start-end perms offset dev inode [path]" */
static void parse_mapping(const char *s, struct mapping *m)
{
	char *end;
	m->start = strtoull(s, &end, 16);
	if (end == s || *end != '-')
		die("malformed mapping (want a /proc/PID/maps line)");
	s = end + 1;
	m->end = strtoull(s, &end, 16);
	if (end == s || *end != ' ' || m->end < m->start)
		die("malformed mapping (want a /proc/PID/maps line)");
	s = skip_space(end);
	s += strcspn(s, " "); /* permissions */
	s = skip_space(s);
	m->offset = strtoull(s, &end, 16);
	if (end == s || *end != ' ')
		die("malformed mapping offset");
	s = end;
	for (int field = 0; field < 2; field++) { /* device, inode */
		s = skip_space(s);
		if (!*s)
			die("malformed mapping (device or inode missing)");
		s += strcspn(s, " ");
	}
	s = skip_space(s);
	m->path = *s ? strdup(s) : NULL;
	const char *base = m->path ? strrchr(m->path, '/') : NULL;
	m->kalloc = base && !strncmp(base + 1, "libkalloc.", 10);
}

static const struct mapping *mapping_of(const struct mapping *maps, size_t n, uint64_t a)
{
	for (size_t i = 0; i < n; i++)
		if (a >= maps[i].start && a < maps[i].end)
			return &maps[i];
	return NULL;
}

/*
 * The address inside the module's ELF file (what addr2line -e takes and
 * kalloc's leak report prints): the mapped file offset moved by its
 * PT_LOAD segment's vaddr - offset. 0 with *ok = 0 when the file cannot
 * be read as a 64-bit ELF file.
 */
static uint64_t elf_address(const char *path, uint64_t file_off, int *ok)
{
	*ok = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	Elf64_Ehdr eh;
	uint64_t r = 0;
	if (pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
	    eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr)) {
		for (unsigned i = 0; i < eh.e_phnum; i++) {
			Elf64_Phdr ph;
			if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + i * sizeof ph)) != (ssize_t)sizeof ph)
				break;
			if (ph.p_type == PT_LOAD && file_off >= ph.p_offset && file_off < ph.p_offset + ph.p_filesz) {
				r = file_off - ph.p_offset + ph.p_vaddr;
				*ok = 1;
				break;
			}
		}
	}
	close(fd);
	return r;
}

/*
 * Function names for addrs[0..n) of one module, from one run of
 * addr2line -f -C -e MODULE (two lines per address: function, file:line).
 * names[i] stays NULL where addr2line is missing or says "??".
 */
static void addr2line(const char *module, const uint64_t *addrs, size_t n, char **names)
{
	char **argv = calloc(n + 6, sizeof *argv);
	char (*hex)[24] = calloc(n, sizeof *hex);
	int fds[2];
	if (!argv || !hex || pipe(fds)) {
		free(argv);
		free(hex);
		return;
	}
	argv[0] = "addr2line";
	argv[1] = "-f";
	argv[2] = "-C";
	argv[3] = "-e";
	argv[4] = (char *)module;
	for (size_t i = 0; i < n; i++) {
		snprintf(hex[i], sizeof hex[i], "0x%" PRIx64, addrs[i]);
		argv[5 + i] = hex[i];
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 2);
		dup2(fds[1], 1);
		close(fds[0]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	FILE *in = pid > 0 ? fdopen(fds[0], "r") : NULL;
	if (in) {
		char *line = NULL;
		size_t cap = 0;
		for (size_t i = 0; i < n && getline(&line, &cap, in) > 0; i++) {
			line[strcspn(line, "\n")] = 0;
			if (strcmp(line, "??") && *line)
				names[i] = strdup(line);
			if (getline(&line, &cap, in) <= 0)
				break;
		}
		free(line);
		fclose(in);
	} else {
		close(fds[0]);
	}
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	free(argv);
	free(hex);
}

/* Names the top sites: "function (module+0xaddr)", or module+0xaddr. */
static void symbolize(struct site *top, size_t n, const struct mapping *maps, size_t nmaps)
{
	uint64_t *elf = calloc(n ? n : 1, sizeof *elf);
	int *ok = calloc(n ? n : 1, sizeof *ok);
	char **fn = calloc(n ? n : 1, sizeof *fn);
	const struct mapping **mod = calloc(n ? n : 1, sizeof *mod);
	if (!elf || !ok || !fn || !mod) {
		fprintf(stderr, "kalloc-prof: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		mod[i] = top[i].addr ? mapping_of(maps, nmaps, top[i].addr) : NULL;
		if (mod[i] && mod[i]->path)
			elf[i] = elf_address(mod[i]->path, top[i].addr - mod[i]->start + mod[i]->offset, &ok[i]);
	}
	/* One addr2line per module, over that module's sites. */
	for (size_t i = 0; i < n; i++) {
		if (!ok[i] || fn[i] || ok[i] == 2)
			continue;
		uint64_t *a = calloc(n, sizeof *a);
		size_t *idx = calloc(n, sizeof *idx);
		char **got = calloc(n, sizeof *got);
		size_t k = 0;
		for (size_t j = i; j < n && a && idx && got; j++)
			if (ok[j] == 1 && !strcmp(mod[j]->path, mod[i]->path)) {
				idx[k] = j;
				a[k++] = elf[j] - 1; /* inside the call, not after it */
				ok[j] = 2;
			}
		if (k)
			addr2line(mod[i]->path, a, k, got);
		for (size_t j = 0; j < k; j++)
			fn[idx[j]] = got[j];
		free(a);
		free(idx);
		free(got);
	}
	for (size_t i = 0; i < n; i++) {
		char buf[4096];
		if (!top[i].addr) {
			snprintf(buf, sizeof buf, "(no stack)");
		} else if (!mod[i] || !mod[i]->path) {
			snprintf(buf, sizeof buf, "0x%" PRIx64, top[i].addr);
		} else {
			const char *base = strrchr(mod[i]->path, '/');
			base = base ? base + 1 : mod[i]->path;
			uint64_t off = ok[i] ? elf[i] : top[i].addr - mod[i]->start + mod[i]->offset;
			if (fn[i])
				snprintf(buf, sizeof buf, "%s (%s+0x%" PRIx64 ")", fn[i], base, off);
			else
				snprintf(buf, sizeof buf, "%s+0x%" PRIx64, base, off);
		}
		top[i].name = strdup(buf);
		free(fn[i]);
	}
	free(elf);
	free(ok);
	free(fn);
	free(mod);
}

static int by_addr(const void *a, const void *b)
{
	const struct site *x = a, *y = b;
	return (x->addr > y->addr) - (x->addr < y->addr);
}

static int by_bytes(const void *a, const void *b)
{
	const struct site *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? 1 : -1;
	return by_addr(a, b);
}

static void usage(void)
{
	fprintf(stderr, "usage: kalloc-prof [-n COUNT] FILE\n"
			"Prints the COUNT (default 10) allocation sites of a heap_v2 heap profile\n"
			"(KALLOC_CONF=prof:1) that hold the most estimated bytes in use.\n");
	exit(2);
}

int main(int argc, char **argv)
{
	long top_n = 10;
	int opt;
	while ((opt = getopt(argc, argv, "n:h")) != -1) {
		char *end;
		switch (opt) {
		case 'n':
			top_n = strtol(optarg, &end, 10);
			if (*end || end == optarg || top_n < 1)
				usage();
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1)
		usage();
	file_name = argv[optind];
	FILE *f = fopen(file_name, "r");
	if (!f) {
		fprintf(stderr, "kalloc-prof: %s: %s\n", file_name, strerror(errno));
		return 1;
	}

	/* Stack lines keep their frames until the mappings, which come last, are read. */
	struct line { uint64_t objs, bytes; size_t first, nframes; } *lines = NULL;
	size_t nlines = 0, cap_lines = 0;
	uint64_t *frames = NULL;
	size_t nframes = 0, cap_frames = 0;
	struct mapping *maps = NULL;
	size_t nmaps = 0, cap_maps = 0;
	uint64_t rate = 0, samples = 0;
	int in_maps = 0;
	char *buf = NULL;
	size_t cap = 0;
	ssize_t len;
	while ((len = getline(&buf, &cap, f)) > 0) {
		line_no++;
		if ((size_t)len != strlen(buf))
			die("a NUL byte (not a text profile)");
		buf[strcspn(buf, "\r\n")] = 0;
		if (line_no == 1) {
			rate = parse_header(buf);
			continue;
		}
		if (!*skip_space(buf))
			continue;
		/* kalloc's note on the stacks: a line google-pprof skips. */
		if (!in_maps && buf[0] == '#')
			continue;
		if (in_maps) {
			maps = grow(maps, &cap_maps, nmaps + 1, sizeof *maps);
			parse_mapping(buf, &maps[nmaps++]);
			continue;
		}
		if (!strcmp(buf, "MAPPED_LIBRARIES:")) {
			in_maps = 1;
			continue;
		}
		struct line l = {0, 0, nframes, 0};
		const char *s = parse_pairs(buf, &l.objs, &l.bytes);
		if (!s)
			die("malformed stack line (want \"N: B [N: B] @ 0xADDR ...\")");
		if (*skip_space(s) && !blanks(s))
			die("malformed stack line (want a blank after the @)");
		/* No frame at all is taken as a site "(no stack)" (google-pprof
		 * skips such a line). */
		for (s = skip_space(s); *s; s = skip_space(s)) {
			char *end;
			if (s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
				die("malformed frame \"%.*s\" (want 0x and hex digits)", (int)strcspn(s, " "), s);
			errno = 0;
			uint64_t a = strtoull(s + 2, &end, 16);
			if (errno || end == s + 2 || (*end && *end != ' ' && *end != '\t'))
				die("malformed frame \"%.*s\" (want 0x and hex digits)", (int)strcspn(s, " "), s);
			frames = grow(frames, &cap_frames, nframes + 1, sizeof *frames);
			frames[nframes++] = a;
			l.nframes++;
			s = end;
		}
		lines = grow(lines, &cap_lines, nlines + 1, sizeof *lines);
		lines[nlines++] = l;
		samples += l.objs;
	}
	int read_error = ferror(f);
	fclose(f);
	free(buf);
	int empty = line_no == 0;
	line_no = 0;
	if (read_error)
		die("read error");
	if (empty)
		die("empty file");
	if (!in_maps)
		die("no MAPPED_LIBRARIES section (a truncated profile?)");

	/* Each line's estimate, charged to its site, then sites merged. */
	struct site *sites = calloc(nlines ? nlines : 1, sizeof *sites);
	if (!sites)
		die("out of memory");
	double total_bytes = 0, total_objs = 0;
	for (size_t i = 0; i < nlines; i++) {
		const struct line *l = &lines[i];
		double scale = 1;
		if (l->objs && l->bytes && rate)
			scale = 1 / -expm1(-((double)l->bytes / (double)l->objs) / (double)rate);
		sites[i].bytes = (double)l->bytes * scale;
		sites[i].objs = (double)l->objs * scale;
		total_bytes += sites[i].bytes;
		total_objs += sites[i].objs;
		for (size_t j = 0; j < l->nframes; j++) {
			uint64_t a = frames[l->first + j];
			const struct mapping *m = mapping_of(maps, nmaps, a);
			if (!sites[i].addr)
				sites[i].addr = a; /* all of kalloc's own: its first frame */
			if (!m || !m->kalloc) {
				sites[i].addr = a;
				break;
			}
		}
	}
	qsort(sites, nlines, sizeof *sites, by_addr);
	size_t nsites = 0;
	for (size_t i = 0; i < nlines; i++) {
		if (nsites && sites[nsites - 1].addr == sites[i].addr) {
			sites[nsites - 1].bytes += sites[i].bytes;
			sites[nsites - 1].objs += sites[i].objs;
		} else {
			sites[nsites++] = sites[i];
		}
	}
	qsort(sites, nsites, sizeof *sites, by_bytes);
	size_t shown = nsites < (size_t)top_n ? nsites : (size_t)top_n;
	symbolize(sites, shown, maps, nmaps);

	printf("kalloc-prof: %s: heap_v2, one sample per %" PRIu64 " bytes allocated, %" PRIu64
	       " samples of %zu stacks\nestimated in use: %.2f MiB (%.0f bytes) in %.0f objects\n",
	       file_name, rate, samples, nlines, total_bytes / 1048576, total_bytes, total_objs);
	printf("%10s %6s %10s  %s\n", "MiB", "%", "objects", "site");
	for (size_t i = 0; i < shown; i++)
		printf("%10.2f %6.1f %10.0f  %s\n", sites[i].bytes / 1048576,
		       total_bytes > 0 ? 100 * sites[i].bytes / total_bytes : 0.0, sites[i].objs, sites[i].name);
	if (nsites > shown)
		printf("(%zu more sites; -n COUNT shows more)\n", nsites - shown);
	return 0;
}
