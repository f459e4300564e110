/* Guard regions around individually mapped blocks, as a program sees them.
 *   guards            MADV_GUARD_INSTALL (Linux 6.13+): 2000 live 256 KiB blocks add only a
 *                     few VMAs (one mapping each, merged), accesses past the end and before
 *                     the start fault, and a churn of allocate/free/realloc-shrink does not
 *                     grow the VMA count (freed blocks are reused in place, shrinks turn the
 *                     tail into guard: no hole is ever punched into the address space).
 *   guards fallback   first mlockall(MCL_FUTURE|MCL_ONFAULT), which makes guard installs
 *                     fail with EINVAL: the PROT_NONE fallback must be used (three VMAs a
 *                     block, so the count grows) and must fault the same way.
 *   guards real       as plain `guards`, and fails unless the kernel installs real markers
 *                     (a kernel of 6.13 or later: the test image's newer kernel).
 * A number among the arguments sets the churn's rounds (default 60000; the rootfs image,
 * under software emulation, takes fewer).
 * Where guards are not to be had, the fallback is expected either way: a kernel before 6.13
 * refuses MADV_GUARD_INSTALL; an emulator (qemu-user) accepts it and installs nothing,
 * which the program detects as the allocator does (the kernel's own write to the page
 * succeeds). Under an emulator the churn's VMA count is not checked: placement and
 * /proc/self/maps are the emulator's there; the program says so on a "skip" line. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (256 << 10)
#define N 2000

static int passed, failed;
static void check(int c, const char *name) { c ? passed++ : failed++; printf("%s - %s\n", c ? "ok" : "not ok", name); }

/* Lines of /proc/self/maps, read without allocating. */
static int vmas(void)
{
	static char buf[1 << 16];
	int fd = open("/proc/self/maps", O_RDONLY), n = 0;
	ssize_t r;
	while ((r = read(fd, buf, sizeof buf)) > 0)
		for (ssize_t i = 0; i < r; i++) n += buf[i] == '\n';
	close(fd);
	return n;
}

/* What MADV_GUARD_INSTALL does here. */
enum { REFUSED, FAKE, REAL };
static int guard_support(void)
{
	char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int r = REFUSED;
	if (p != MAP_FAILED && madvise(p, 4096, 102 /* MADV_GUARD_INSTALL */) == 0)
		r = syscall(SYS_clock_getres, CLOCK_MONOTONIC, p) == -1 && errno == EFAULT ? REAL : FAKE;
	if (p != MAP_FAILED) munmap(p, 4096);
	return r;
}

/* Run f(p) in a child; the signal that ended it (0 for a clean exit). */
static int in_child(void (*f)(char *), char *p)
{
	pid_t pid = fork();
	if (pid == 0) { f(p); _exit(0); }
	int st;
	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}
static void read_past(char *p) { (void)*(volatile char *)(p + BLOCK + 32); }
static void write_before(char *p) { *(volatile char *)(p - 4097) = 1; }
static void read_inside(char *p) { for (int i = 0; i < BLOCK; i += 4096) (void)*(volatile char *)(p + i); }

int main(int argc, char **argv)
{
	int locked = 0, rounds = 60000, want_real = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "fallback")) locked = 1;
		else if (!strcmp(argv[i], "real")) want_real = 1;
		else if (atoi(argv[i]) > 0) rounds = atoi(argv[i]);
	}
	setvbuf(stdout, 0, _IONBF, 0);
	int support = guard_support();
	printf("# MADV_GUARD_INSTALL: %s\n", support == REAL ? "installs guards" :
		support == FAKE ? "accepted, nothing installed (an emulator): PROT_NONE fallback expected" :
		"refused (Linux before 6.13): PROT_NONE fallback expected");
	if (want_real) check(support == REAL, "the kernel installs real guard markers");
	int fallback = locked || support != REAL;
	if (locked && mlockall(MCL_FUTURE | MCL_ONFAULT)) { perror("mlockall"); return 2; }
	static char *blk[N];
	int before = vmas();
	for (int i = 0; i < N; i++) blk[i] = malloc(BLOCK);
	int grown = vmas() - before;
	char name[160];
	if (!fallback) {
		snprintf(name, sizeof name, "2000 live 256 KiB blocks add %d VMAs (madvise guards: one mapping each)", grown);
		check(blk[N - 1] && grown <= 16, name);
	} else {
		snprintf(name, sizeof name, "%s the PROT_NONE fallback is used: 2000 blocks add %d VMAs",
			locked ? "after mlockall" : "without guards", grown);
		check(blk[N - 1] && grown >= N, name);
	}
	check(in_child(read_inside, blk[7]) == 0, "the block itself is accessible");
	check(in_child(read_past, blk[7]) == SIGSEGV, "reading 32 bytes past the end faults");
	check(in_child(write_before, blk[7]) == SIGSEGV, "writing before the start faults");

	/* churn: free, reallocate, shrink with realloc; the count must not grow */
	int base = vmas();
	unsigned x = 1;
	for (int round = 0; round < rounds; round++) {
		x = x * 1103515245 + 12345;
		int i = (x >> 8) % N;
		free(blk[i]);
		blk[i] = malloc(BLOCK + (x >> 20) % 4096);
		if (round % 3 == 0) blk[i] = realloc(blk[i], BLOCK / 2 + (x >> 12) % 8192);
		if (!blk[i]) break;
	}
	int after = vmas();
	snprintf(name, sizeof name, "%d rounds of free/malloc/realloc-shrink: VMAs %d before, %d after", rounds, base, after);
	if (support == FAKE)
		printf("skip - %s (not checked under an emulator)\n", name);
	else
		check(after <= base + (fallback ? base / 10 : 2), name);
	for (int i = 0; i < N; i++) free(blk[i]);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
