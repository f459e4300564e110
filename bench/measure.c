/* Run a command and report its wall time and resource usage, for the harness.
 *
 * Usage: measure OUTFILE PROGRAM [ARGS...]; writes "wall_ns maxrss_kib user_us sys_us status"
 * to OUTFILE (status: the exit status, or 128 + signal).
 *
 * Why a program of its own: the time runs from fork to wait4 of a small static process,
 * without the Python harness's own fork of its 20 MiB image. The rusage figures are kept
 * for the record only: the kernel's ru_maxrss includes the image replaced at exec and sums
 * per-CPU counters lazily (0 for a small threaded process), so the harness takes the peak
 * resident set from the program itself (VmHWM at its end). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fputs("usage: measure OUTFILE PROGRAM [ARGS...]\n", stderr);
		return 2;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork();
	if (pid < 0) {
		perror("measure: fork");
		return 2;
	}
	if (pid == 0) {
		execv(argv[2], argv + 2);
		perror("measure: exec");
		_exit(127);
	}
	int st;
	struct rusage ru;
	if (wait4(pid, &st, 0, &ru) != pid) {
		perror("measure: wait4");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	FILE *f = fopen(argv[1], "w");
	if (!f) {
		perror("measure: OUTFILE");
		return 2;
	}
	fprintf(f, "%lld %ld %lld %lld %d\n",
		(long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec), ru.ru_maxrss,
		(long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
		(long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec,
		WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	return fclose(f) ? 2 : 0;
}
