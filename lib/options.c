/*
 * options.c: KALLOC_CONF, one environment variable of key:value pairs
 * separated by commas, parsed once at start-up. It is read from `environ`
 * (getenv may not be safe that early) and parsed in place, without
 * allocating. A bad key or value gets one warning and leaves the default;
 * the item "help" prints the table of options (tools/kalloc-run --help).
 * String values are copied into ka_opt's own buffers, never pointed at:
 * a program may rewrite environ (its process title) after start-up.
 *
 * Options name files (stats_file), so a secure-execution process (setuid,
 * setgid or file capabilities: AT_SECURE, the test secure_getenv makes)
 * ignores KALLOC_CONF with one warning: its caller must not choose where
 * it writes.
 */
#include <stddef.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

struct ka_options ka_opt = {
	.page_source = KA_PAGE_SOURCE_MMAP,
	.purge_delay_ms = 1000,
	.thp = 1,
	.tcache_max = 4096,
	.prof_sample = 524288,
	.prof_file = "kalloc.%p.heap",
};

/* Values that may be written as names; NULL-terminated, index = value. */
static const char *const page_sources[] = {"mmap", "brk", NULL};

/*
 * The one table of options: every key, its bounds and its help line. A
 * number is a uint64_t at off within [min, max] (or one of names, by
 * index); a string (cap != 0) is a char[cap] at off, 1 to cap - 1 bytes.
 */
static const struct option {
	const char *name;
	size_t off;
	uint64_t min, max;
	const char *const *names;
	const char *help;
	size_t cap;
} options[] = {
	{"page_source", offsetof(struct ka_options, page_source), 0, 1, page_sources,
	 "where the page layer gets memory: mmap (default) or brk, falling back to mmap", 0},
	{"purge_delay_ms", offsetof(struct ka_options, purge_delay_ms), 0, 3600000, NULL,
	 "free memory older than this (ms) goes back to the OS (default 1000)", 0},
	{"stats", offsetof(struct ka_options, stats), 0, 1, NULL,
	 "1: print slabinfo, buddyinfo, large mappings and totals at exit", 0},
	{"stats_file", offsetof(struct ka_options, stats_file), 0, 0, NULL,
	 "PATH: append the exit report (implies stats:1) to PATH, not stderr; %p: the pid",
	 sizeof ka_opt.stats_file},
	{"poison", offsetof(struct ka_options, poison), 0, 1, NULL,
	 "1: fill freed objects with 0x6b (last byte 0xa5), new ones with 0x5a; check on reuse", 0},
	{"redzone", offsetof(struct ka_options, redzone), 0, 1, NULL,
	 "1: guard bytes after the size asked for, checked at free and realloc", 0},
	{"consistency", offsetof(struct ka_options, consistency), 0, 1, NULL,
	 "1: check every free against its slab's free state (every double free caught)", 0},
	{"publish", offsetof(struct ka_options, publish), 0, 1, NULL,
	 "1: publish the stats tables in /dev/shm/kalloc.PID for tools/kalloc-top", 0},
	{"tcache_max", offsetof(struct ka_options, tcache_max), 0, 4096, NULL,
	 "objects per thread-cache bin at most (0: no thread cache, every call slow)", 0},
	{"leak", offsetof(struct ka_options, leak), 0, 1, NULL,
	 "1: record each block's stack; at exit report the blocks nothing points to (kmemleak)", 0},
	{"background_thread", offsetof(struct ka_options, background_thread), 0, 1, NULL,
	 "1: a thread purges free memory at the decay rate even when the program makes no call", 0},
	{"thp", offsetof(struct ka_options, thp), 0, 1, NULL,
	 "1 (default): huge blocks fault in 2 MiB pages where transparent huge pages allow; 0: 4 KiB pages", 0},
	{"prof", offsetof(struct ka_options, prof), 0, 1, NULL,
	 "1: sampled heap profile (gperftools format), written to prof_file at exit", 0},
	{"prof_sample", offsetof(struct ka_options, prof_sample), 1, (uint64_t)1 << 40, NULL,
	 "mean bytes allocated between two samples of prof:1 (default 524288)", 0},
	{"prof_file", offsetof(struct ka_options, prof_file), 0, 0, NULL,
	 "PATH: where prof:1 writes its profile at exit (default kalloc.%p.heap); %p: the pid",
	 sizeof ka_opt.prof_file},
	{"prof_step", offsetof(struct ka_options, prof_step), 0, (uint64_t)1 << 20, NULL,
	 "N: with prof:1, dump each time the in-use estimate passes its high-water mark by N MiB (0: off)", 0},
};

static void bad(const char *what, const char *s, size_t n)
{
	char tmp[64];
	if (n >= sizeof tmp)
		n = sizeof tmp - 1;
	memcpy(tmp, s, n);
	tmp[n] = 0;
	ka_warn(what, tmp);
}

/* A string value: a path, where only %p (the pid) and %% may follow a %. */
static bool parse_string(const struct option *o, const char *v, size_t n)
{
	if (n == 0 || n >= o->cap)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (v[i] != '%')
			continue;
		if (i + 1 == n || (v[i + 1] != 'p' && v[i + 1] != '%'))
			return false;
		i++; /* the p or % after it, checked */
	}
	char *dst = (char *)&ka_opt + o->off;
	memcpy(dst, v, n);
	dst[n] = 0;
	return true;
}

static bool parse_value(const struct option *o, const char *v, size_t n, uint64_t *out)
{
	if (o->names) {
		for (uint64_t i = 0; o->names[i]; i++)
			if (strlen(o->names[i]) == n && memcmp(o->names[i], v, n) == 0) {
				*out = i;
				return true;
			}
	}
	if (n == 0 || n > 19)
		return false;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	if (x < o->min || x > o->max)
		return false;
	*out = x;
	return true;
}

void ka_options_parse(const char *conf)
{
	const char *s = conf;
	while (s && *s) {
		const char *end = strchr(s, ',');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		const char *colon = memchr(s, ':', len);
		if (len == 0) {
			/* an empty item ("a:1,,b:2") is harmless */
		} else if (len == 4 && memcmp(s, "help", 4) == 0) {
			ka_options_help(ka_report_fd());
		} else if (!colon) {
			bad("KALLOC_CONF: expected key:value, got", s, len);
		} else {
			size_t klen = (size_t)(colon - s);
			const struct option *o = NULL;
			for (size_t i = 0; i < sizeof options / sizeof *options; i++)
				if (strlen(options[i].name) == klen && memcmp(options[i].name, s, klen) == 0)
					o = &options[i];
			const char *val = colon + 1;
			size_t vlen = len - klen - 1;
			uint64_t v;
			if (!o)
				bad("KALLOC_CONF: unknown option", s, klen);
			else if (o->cap ? !parse_string(o, val, vlen) : !parse_value(o, val, vlen, &v))
				bad("KALLOC_CONF: bad value, default kept", s, len);
			else if (!o->cap)
				*(uint64_t *)(void *)((char *)&ka_opt + o->off) = v;
		}
		s = end ? end + 1 : NULL;
	}
}

void ka_options_init_from(char *const *env, unsigned long at_secure)
{
	static const char key[] = "KALLOC_CONF=";
	for (char *const *e = env; e && *e; e++)
		if (strncmp(*e, key, sizeof key - 1) == 0) {
			if (at_secure)
				ka_warn("KALLOC_CONF ignored in a secure-execution (setuid) process", NULL);
			else
				ka_options_parse(*e + sizeof key - 1);
			return;
		}
}

void ka_options_init(void) { ka_options_init_from(environ, getauxval(AT_SECURE)); }

void ka_options_help(int fd)
{
	char mem[4096];
	struct ka_buf b = {mem, 0, sizeof mem};
	for (size_t i = 0; i < sizeof options / sizeof *options; i++) {
		ka_buf_str(&b, "  ");
		ka_buf_ustr(&b, options[i].name, 18);
		ka_buf_str(&b, " ");
		ka_buf_str(&b, options[i].help);
		ka_buf_str(&b, "\n");
	}
	ka_buf_flush(&b, fd);
}
