/* Instructions per malloc+free pair (single thread): run under callgrind with N and 2N
 * pairs; (I(2N) - I(N)) / N is the cost of one pair, start-up excluded.
 * Usage: pair SIZE N [threaded]
 * With "threaded", a second thread sleeps through the loop: the process is multithreaded,
 * so an allocator that switches to locks or atomics once there are threads pays for it. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static void *idle(void *arg)
{
	(void)arg;
	for (;;) pause();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	size_t size = strtoul(argv[1], 0, 10);
	long n = strtol(argv[2], 0, 10);
	pthread_t t;
	if (argc > 3 && pthread_create(&t, 0, idle, 0)) return 2;
	void *keep = malloc(size); /* the group exists before the loop... */
	__asm__ volatile("" : : "r"(keep) : "memory"); /* ...and the compiler keeps it */
	for (long i = 0; i < n; i++) {
		void *p = malloc(size);
		__asm__ volatile("" : : "r"(p) : "memory");
		free(p);
	}
	free(keep);
	return 0;
}
