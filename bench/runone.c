/*
 * runone.c: run one command and print its wall time, CPU time and peak RSS
 * on the last line of stderr, "runone: wall=S cpu=S maxrss_kib=K status=N".
 * tools/kalloc-bench runs every benchmark process through it: a process
 * started straight from the runner would report the runner's own size as
 * its peak RSS (Linux keeps the high-water mark across exec), while a child
 * of this small program starts near zero.
 */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: runone COMMAND [ARG...]\n");
		return 2;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork();
	if (pid == 0) {
		execvp(argv[1], argv + 1);
		perror(argv[1]);
		_exit(127);
	}
	int st;
	struct rusage ru;
	if (pid < 0 || wait4(pid, &st, 0, &ru) != pid) {
		perror("runone");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
	double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		     (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	fprintf(stderr, "runone: wall=%.6f cpu=%.6f maxrss_kib=%ld status=%d\n", wall, cpu, ru.ru_maxrss, code);
	return code;
}
