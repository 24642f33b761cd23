/*
 * t/options.c: the KALLOC_CONF parser, on good, unknown and malformed
 * input. Every bad item gets one warning on stderr and leaves its option's
 * default; good items around it still count. Linked with the core: the
 * parser runs here on strings, and the start-up check on a made-up
 * environment and AT_SECURE value.
 */
#include <string.h>

#include "../lib/internal.h"
#include "tap.h"

static char warned[4096];

/* Parse conf from the defaults; what it wrote on stderr goes to warned.
 * With env: start up from that environment as if AT_SECURE were secure. */
static void start(const char *conf, char *const *env, unsigned long secure)
{
	static const struct ka_options defaults = {
		.page_source = KA_PAGE_SOURCE_MMAP, .purge_delay_ms = 1000, .tcache_max = 4096};
	ka_opt = defaults;
	int fd[2];
	if (pipe(fd) != 0)
		return;
	int saved = dup(2);
	dup2(fd[1], 2);
	close(fd[1]);
	ka_report_init(); /* kalloc reports to what stderr is now: the pipe */
	if (env)
		ka_options_init_from(env, secure);
	else
		ka_options_parse(conf);
	dup2(saved, 2);
	close(saved);
	ka_report_init();
	ssize_t n = read(fd[0], warned, sizeof warned - 1);
	warned[n > 0 ? n : 0] = 0;
	close(fd[0]);
}

static void parse(const char *conf) { start(conf, NULL, 0); }

static int lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

int main(void)
{
	plan(22);
	parse("purge_delay_ms:5,tcache_max:7,page_source:brk,stats:1,poison:1,redzone:1,consistency:1,publish:1");
	ok(ka_opt.purge_delay_ms == 5 && ka_opt.tcache_max == 7 && ka_opt.page_source == KA_PAGE_SOURCE_BRK &&
		   ka_opt.stats && ka_opt.poison && ka_opt.redzone && ka_opt.consistency && ka_opt.publish,
	   "every key is set from good input");
	ok(warned[0] == 0, "good input: no warning");
	parse("page_source:1");
	ok(ka_opt.page_source == KA_PAGE_SOURCE_BRK, "a named value may also be given as its number");
	parse("stats:1,,stats:0,");
	ok(!ka_opt.stats && warned[0] == 0, "empty items are ignored; the last of a repeated key wins");
	parse("");
	ok(warned[0] == 0 && ka_opt.tcache_max == 4096, "empty input: defaults, no warning");

	parse("bogus:1,tcache_max:9");
	ok(strstr(warned, "unknown option: bogus") && lines(warned) == 1, "an unknown key: one warning naming it");
	ok(ka_opt.tcache_max == 9, "the good item after an unknown one still counts");
	parse("tcache_max:abc");
	ok(strstr(warned, "bad value, default kept: tcache_max:abc") && ka_opt.tcache_max == 4096,
	   "a non-number: warning, default kept");
	parse("tcache_max:99999");
	ok(strstr(warned, "bad value") && ka_opt.tcache_max == 4096, "a number out of range: warning, default kept");
	parse("tcache_max:");
	ok(strstr(warned, "bad value") && ka_opt.tcache_max == 4096, "an empty value: warning, default kept");
	parse("purge_delay_ms:123456789012345678901234");
	ok(strstr(warned, "bad value") && ka_opt.purge_delay_ms == 1000, "a number too long for 64 bits: warning");
	parse("page_source:sbrk");
	ok(strstr(warned, "bad value") && ka_opt.page_source == KA_PAGE_SOURCE_MMAP, "an unknown name: warning");
	parse("poison");
	ok(strstr(warned, "expected key:value, got: poison") && !ka_opt.poison, "a key without a value: warning");
	parse("stats:1:2");
	ok(strstr(warned, "bad value") && !ka_opt.stats, "a value with a colon in it: warning");
	parse("a_very_long_option_name_that_goes_on_and_on_and_on_past_any_buffer_we_have_here_at_all:1");
	ok(strstr(warned, "unknown option") && lines(warned) == 1, "a very long key: one warning, cut to size");
	parse("help");
	ok(strstr(warned, "page_source") && strstr(warned, "poison") && strstr(warned, "tcache_max") &&
		   strstr(warned, "stats_file") &&
		   lines(warned) >= 8,
	   "help prints the table, a line per option");

	char conf[64] = "stats_file:/tmp/kalloc.%p.%%";
	parse(conf);
	memset(conf, 'x', sizeof conf - 1);
	ok(!strcmp(ka_opt.stats_file, "/tmp/kalloc.%p.%%") && warned[0] == 0,
	   "stats_file: the path is copied, and stays when the string it came from changes");
	parse("stats_file:/tmp/a%d,stats:1");
	ok(strstr(warned, "bad value") && !ka_opt.stats_file[0] && ka_opt.stats, "stats_file: a %% other than %%p or %%%%: warning");
	static char longconf[KA_OPT_STR_MAX + 32] = "stats_file:/";
	memset(longconf + strlen(longconf), 'a', KA_OPT_STR_MAX);
	parse(longconf);
	ok(strstr(warned, "bad value") && !ka_opt.stats_file[0], "stats_file: a path too long for its buffer: warning");

	char *env[] = {"HOME=/", "KALLOC_CONF=stats:1,stats_file:/tmp/x", NULL};
	start(NULL, env, 0);
	ok(ka_opt.stats && !strcmp(ka_opt.stats_file, "/tmp/x") && warned[0] == 0, "an ordinary start reads KALLOC_CONF");
	start(NULL, env, 1);
	ok(!ka_opt.stats && !ka_opt.stats_file[0] && strstr(warned, "KALLOC_CONF ignored in a secure-execution") &&
		   lines(warned) == 1,
	   "a secure-execution start (AT_SECURE) ignores KALLOC_CONF, with one warning");
	char *plain[] = {"HOME=/", NULL};
	start(NULL, plain, 1);
	ok(warned[0] == 0, "a secure-execution start without KALLOC_CONF: no warning");
	return tap_failed != 0;
}
