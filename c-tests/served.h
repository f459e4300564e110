/* Proof that ngmalloc serves this program, whatever it is linked with: a double free makes
 * ngmalloc stop the process with SIGILL (its trap instruction), where stock mallocng
 * stops it with SIGSEGV (hlt on x86_64) and glibc with SIGABRT. Done in a child, so the
 * caller carries on, with its stderr silenced (glibc reports the double free there).
 * Returns 1 for ngmalloc. */
#ifndef SERVED_H
#define SERVED_H
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int served_by_ngmalloc(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0) dup2(fd, 2);
		void *volatile p = malloc(32);
		free(p);
		free(p);
		_exit(0);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid) return 0;
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGILL;
}
#endif
