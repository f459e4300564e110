/* C semantics of every export, run against whichever allocator the program is linked
 * with or preloaded: ngmalloc's standalone library (LD_PRELOAD or libngmalloc.a; build
 * with -DNGM_STANDALONE) or the musl sysroot (static or dynamic). Each check prints "ok - name" or "not ok - name"; the last line is
 * "N passed, N failed". Exit status 0 only if all passed. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "served.h"

static int passed, failed;

static void check(int cond, const char *name)
{
	if (cond) passed++; else failed++;
	printf("%s - %s\n", cond ? "ok" : "not ok", name);
}

#define ERRNO_KEPT(expr, name) do { errno = 4321; expr; check(errno == 4321, name); } while (0)

static int aligned(void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static int all(const unsigned char *p, size_t n, unsigned char v)
{
	for (size_t i = 0; i < n; i++) if (p[i] != v) return 0;
	return 1;
}

/* Hide sizes from the compiler so it cannot fold the calls away. */
static volatile size_t huge = SIZE_MAX, half = SIZE_MAX / 2 + 1, three = 3;

static void basics(void)
{
	void *a, *b, *p, *q;
	/* proof of who serves: ngmalloc reports exactly the size asked for */
	p = malloc(13);
	check(p && malloc_usable_size(p) == 13, "malloc_usable_size is the exact request (ngmalloc)");
	free(p);
	check(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) == 0");

	a = malloc(0); b = malloc(0);
	check(a && b && a != b, "malloc(0) gives distinct pointers");
	free(a); free(b);
	ERRNO_KEPT(free(NULL), "free(NULL) keeps errno");
	ERRNO_KEPT(p = malloc(100); free(p), "malloc/free keep errno");
	ERRNO_KEPT(p = malloc(1 << 20); free(p), "large malloc/free (munmap) keeps errno");
	ERRNO_KEPT(p = calloc(10, 10); free(p), "calloc keeps errno");
	ERRNO_KEPT(p = aligned_alloc(4096, 10); free(p), "aligned_alloc keeps errno");
	ERRNO_KEPT(p = malloc(10); p = realloc(p, 100000); p = realloc(p, 1 << 20); p = realloc(p, 4 << 20); free(p),
		"realloc (copy and mremap) keeps errno");

	for (size_t n = 1; n < 300000; n = n * 3 + 1) {
		p = malloc(n);
		if (!p || !aligned(p, 16)) break;
		free(p);
	}
	check(1, "malloc of sizes 1..300000 is 16-aligned");

	errno = 0; p = malloc(huge);
	check(!p && errno == ENOMEM, "malloc(SIZE_MAX) fails with ENOMEM");
	errno = 0; p = malloc(half);
	check(!p && errno == ENOMEM, "malloc(SIZE_MAX/2+1) fails with ENOMEM");
	errno = 0; p = calloc(half, three);
	check(!p && errno == ENOMEM, "calloc overflow fails with ENOMEM");
	p = calloc(0, 0);
	check(p != NULL, "calloc(0, 0) gives a pointer");
	free(p);

	/* calloc on reused memory is zero */
	for (int round = 0; round < 3; round++) {
		size_t n = round == 0 ? 48 : round == 1 ? 5000 : 200000;
		p = malloc(n); memset(p, 0xee, n); free(p);
		q = calloc(1, n);
		check(q && all(q, n, 0), round == 0 ? "calloc zeroes reused small memory" :
			round == 1 ? "calloc zeroes reused medium memory" : "calloc of a large block is zero");
		free(q);
	}
}

static void reallocs(void)
{
	unsigned char *p, *q;
	p = realloc(NULL, 50);
	check(p && malloc_usable_size(p) == 50, "realloc(NULL, n) is malloc(n)");
	memset(p, 7, 50);
	q = realloc(p, 0);
	check(q != NULL && malloc_usable_size(q) == 0, "realloc(p, 0) returns a live zero-size block (musl)");
	free(q);

	p = malloc(1000); memset(p, 9, 1000);
	errno = 0; q = realloc(p, huge);
	check(!q && errno == ENOMEM && all(p, 1000, 9), "realloc(p, SIZE_MAX) fails with ENOMEM, p intact");
	errno = 0; q = reallocarray(p, half, 2);
	check(!q && errno == ENOMEM && all(p, 1000, 9), "reallocarray overflow fails with ENOMEM, p intact");
	q = reallocarray(p, 100, 30);
	check(q && all(q, 1000, 9) && malloc_usable_size(q) == 3000, "reallocarray grows and keeps contents");
	p = realloc(q, 10 << 20);
	check(p && all(p, 1000, 9), "realloc to 10 MiB keeps contents");
	q = realloc(p, 200000);
	check(q && all(q, 1000, 9) && malloc_usable_size(q) == 200000, "realloc shrink of a large block");
	p = realloc(q, 20);
	check(p && all(p, 20, 9) && malloc_usable_size(p) == 20, "realloc to small keeps the prefix");
	free(p);
}

static void alignment(void)
{
	void *p;
	int ok = 1;
	for (size_t a = 1; a <= ((size_t)1 << 26); a <<= 1) {
		p = aligned_alloc(a, 100);
		if (!p || !aligned(p, a) || malloc_usable_size(p) != 100) ok = 0;
		free(p);
		if (posix_memalign(&p, a < sizeof(void *) ? sizeof(void *) : a, 3000) || !aligned(p, a)) ok = 0;
		free(p);
		p = memalign(a, 70000);
		if (!p || !aligned(p, a)) ok = 0;
		free(p);
	}
	check(ok, "aligned_alloc/posix_memalign/memalign for every power of two to 64 MiB");

	errno = 0; p = aligned_alloc(24, 10);
	check(!p && errno == EINVAL, "aligned_alloc(24, n) fails with EINVAL");
	errno = 0; p = memalign(12, 10);
	check(!p && errno == EINVAL, "memalign(12, n) fails with EINVAL");
	p = aligned_alloc(0, 10);
	check(p != NULL, "aligned_alloc(0, n) is accepted (musl)");
	free(p);
	errno = 0; p = aligned_alloc(64, huge);
	check(!p && errno == ENOMEM, "aligned_alloc(64, SIZE_MAX) fails with ENOMEM");

	errno = 4321;
	check(posix_memalign(&p, 24, 10) == EINVAL && errno == 4321, "posix_memalign bad alignment: EINVAL, errno kept");
	check(posix_memalign(&p, sizeof(void *) / 2, 10) == EINVAL, "posix_memalign below sizeof(void*): EINVAL");
	check(posix_memalign(&p, 64, huge) == ENOMEM, "posix_memalign(64, SIZE_MAX): ENOMEM");
	p = NULL;
	check(posix_memalign(&p, 64, 10) == 0 && aligned(p, 64), "posix_memalign(64) succeeds aligned");
	free(p);

	long ps = sysconf(_SC_PAGESIZE);
	p = valloc(10);
	check(p && aligned(p, ps), "valloc is page-aligned");
	free(p);
#ifdef NGM_STANDALONE /* pvalloc is a glibc extension: only the standalone library has it */
	p = pvalloc(10);
	check(p && aligned(p, ps) && malloc_usable_size(p) == (size_t)ps, "pvalloc rounds to a page");
	free(p);
	errno = 0; p = pvalloc(huge);
	check(!p && errno == ENOMEM, "pvalloc(SIZE_MAX) fails with ENOMEM");
#endif
}

/* 8 threads; each frees blocks the previous thread allocated (cross-thread frees). */
#define NT 8
#define RING 4096
static void *volatile ring[NT][RING];

static void *worker(void *arg)
{
	long t = (long)arg;
	unsigned x = 12345 + t;
	for (int round = 0; round < 40; round++) {
		for (int i = 0; i < RING; i++) {
			x = x * 1103515245 + 12345;
			size_t n = (x >> 8) % (i % 64 == 0 ? 150000 : 600);
			void *p = malloc(n);
			if (!p) abort();
			memset(p, (int)t, n < 32 ? n : 32);
			void *old = __atomic_exchange_n(&ring[(t + 1) % NT][i], p, __ATOMIC_ACQ_REL);
			free(old);
		}
	}
	return 0;
}

static void threads(void)
{
	pthread_t th[NT];
	for (long t = 0; t < NT; t++) pthread_create(&th[t], 0, worker, (void *)t);
	for (int t = 0; t < NT; t++) pthread_join(th[t], 0);
	for (int t = 0; t < NT; t++) for (int i = 0; i < RING; i++) free(ring[t][i]);
	check(1, "8 threads allocating and freeing across threads");
}

/* Threads allocate while the main thread forks; each child allocates and exits. A child
 * that deadlocks in malloc is killed by alarm() and counted as a failure. */
static volatile int stop;
static void *churn(void *arg)
{
	(void)arg;
	while (!stop) { void *p = malloc(100); free(malloc(5000)); free(p); }
	return 0;
}

static void forks(void)
{
	pthread_t th[3];
	for (int i = 0; i < 3; i++) pthread_create(&th[i], 0, churn, 0);
	int good = 0, n = 200;
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			alarm(5);
			for (int k = 0; k < 100; k++) free(malloc(k * 37));
			void *big = malloc(1 << 20);
			_exit(big ? 0 : 1);
		}
		int st;
		if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0) good++;
	}
	stop = 1;
	for (int i = 0; i < 3; i++) pthread_join(th[i], 0);
	check(good == n, "fork while other threads allocate: every child allocates and exits");
}

int main(void)
{
	setvbuf(stdout, 0, _IONBF, 0);
	check(served_by_ngmalloc(), "served by ngmalloc (a double free traps with SIGILL)");
	basics();
	reallocs();
	alignment();
	threads();
	forks();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
