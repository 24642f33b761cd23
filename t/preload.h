/*
 * preload.h: for tests that run cases in children under LD_PRELOAD (the
 * TAP process itself stays on glibc's malloc): the child is this same
 * program, re-executed with "child CASE" arguments, LD_PRELOAD set to
 * $KALLOC_LIB (exported by make check) and KALLOC_CONF as given.
 */
#ifndef KALLOC_T_PRELOAD_H
#define KALLOC_T_PRELOAD_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

/* The library under test, or a skip of the whole test. */
static inline const char *kalloc_lib(void)
{
	const char *lib = getenv("KALLOC_LIB");
	if (!lib || access(lib, R_OK) != 0)
		plan_skip_all("KALLOC_LIB not set or unreadable (run by make check)");
	return lib;
}

/*
 * Run case `name` in a child under kalloc with KALLOC_CONF=conf (NULL:
 * unset). Its stdout and stderr go to out (NUL-terminated); returns the
 * exit status as waitpid gives it.
 */
static inline int run_case(const char *conf, const char *name, char *out, size_t cap)
{
	int rd;
	pid_t pid = fork_piped(&rd, 1);
	if (pid < 0)
		return -1;
	if (pid == 0) {
		setenv("LD_PRELOAD", kalloc_lib(), 1);
		if (conf)
			setenv("KALLOC_CONF", conf, 1);
		else
			unsetenv("KALLOC_CONF");
		char self[4096];
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		if (n <= 0)
			_exit(126);
		self[n] = 0;
		execl(self, self, "child", name, (char *)NULL);
		_exit(127);
	}
	return collect_child(pid, rd, out, cap);
}

static inline int aborted(int st) { return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT; }
static inline int exited_ok(int st) { return WIFEXITED(st) && WEXITSTATUS(st) == 0; }

/* The value after "key=" in a child's output ("" if none): how a child names an address. */
static inline const char *noted(const char *out, const char *key, char *val, size_t cap)
{
	char pat[32];
	snprintf(pat, sizeof pat, "%s=", key);
	const char *a = strstr(out, pat);
	val[0] = 0;
	if (a) {
		a += strlen(pat);
		size_t i = 0;
		while (i < cap - 1 && a[i] && a[i] != '\n' && a[i] != ' ')
			val[i] = a[i], i++;
		val[i] = 0;
	}
	return val;
}

#endif
