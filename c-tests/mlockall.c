/* The program from the hardening issue: after mlockall(MCL_FUTURE[|MCL_ONFAULT]) every new
 * mapping is locked and MADV_GUARD_INSTALL fails with EINVAL; the allocation must still
 * succeed (with PROT_NONE guards) and errno must stay untouched. Prints "ok".
 * Argument "onfault" adds MCL_ONFAULT. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	int flags = MCL_FUTURE | (argc > 1 && !strcmp(argv[1], "onfault") ? MCL_ONFAULT : 0);
	void *w = malloc(256 << 10);
	if (mlockall(flags)) { perror("mlockall"); return 2; }
	errno = 0;
	void *a = malloc(256 << 10);
	if (w && a != NULL && errno == 0) { puts("ok"); return 0; }
	printf("not ok: a=%p errno=%d\n", a, errno);
	return 1;
}
