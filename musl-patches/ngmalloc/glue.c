/* ngmalloc's glue to musl: the only C in the allocator, and the only code that touches
 * the rest of musl (its role matches mallocng's glue.h). The boundary is ngmalloc.h. */
#define _GNU_SOURCE /* MREMAP_MAYMOVE, MREMAP_FIXED, MADV_DONTNEED */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <elf.h>
#include "libc.h"
#include "lock.h"
#include "syscall.h"
#include "dynlink.h"
#include "pthread_impl.h"
#include "ngmalloc.h"
#include "ident.h" /* written by toolchain/build-sysroot.sh */

/* Which allocator served a binary, for bug reports: `readelf -p .comment prog` lists this
 * line beside the compiler's (static binaries carry it; dynamic ones through libc.so).
 * The section is where gcc's own .ident goes: merged strings, kept by strip. */
__asm__(".pushsection .comment,\"MS\",%progbits,1\n.asciz \"" NGM_IDENT "\"\n.popsection");

/* musl takes this lock around fork (fork_impl.h); internal, like every service */
hidden int __malloc_lock[1];

static int prot(int p)
{
	return p == NGM_PROT_RW ? PROT_READ | PROT_WRITE : PROT_NONE;
}

void *__ngm_mmap(void *addr, size_t len, int p, int fixed)
{
	int e = errno;
	void *r = __mmap(addr, len, prot(p), MAP_PRIVATE | MAP_ANONYMOUS | (fixed ? MAP_FIXED : 0), -1, 0);
	errno = e;
	return r == MAP_FAILED ? 0 : r;
}

void __ngm_munmap(void *addr, size_t len)
{
	int e = errno;
	__munmap(addr, len);
	errno = e;
}

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

int __ngm_mremap(void *addr, size_t old_len, size_t new_len, void *to)
{
	int e = errno;
	void *r = __mremap(addr, old_len, new_len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	if (r != to) {
		/* Give the destination up: the kernel may have unmapped it before failing, and
		 * another thread mapped there since. Map what of it is free and unmap that (a
		 * kernel without MAP_FIXED_NOREPLACE takes it as a hint: ours either way). */
		void *q = __mmap(to, new_len, PROT_NONE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (q != MAP_FAILED) __munmap(q, new_len);
	}
	errno = e;
	return r == to ? 0 : -1;
}

int __ngm_mprotect(void *addr, size_t len, int p)
{
	int e = errno;
	int r = __mprotect(addr, len, prot(p));
	/* nommu kernels have no mprotect: their memory is accessible anyway */
	if (r && errno == ENOSYS) r = 0;
	errno = e;
	return r;
}

int __ngm_release(void *addr, size_t len)
{
	int e = errno;
	int r = __madvise(addr, len, MADV_DONTNEED);
	errno = e;
	return r;
}

/* not in musl's headers: Linux 6.13 */
#define NGM_MADV_GUARD_INSTALL 102
#define NGM_MADV_GUARD_REMOVE 103

int __ngm_guard(void *addr, size_t len, int install)
{
	int e = errno;
	int r = __madvise(addr, len, install ? NGM_MADV_GUARD_INSTALL : NGM_MADV_GUARD_REMOVE);
	errno = e;
	return r;
}

int __ngm_guard_faults(void *addr)
{
	/* a raw call (no vDSO) that only writes its argument; errno untouched */
	return __syscall(SYS_clock_getres, CLOCK_MONOTONIC, addr) == -EFAULT;
}

uintptr_t __ngm_brk(uintptr_t to)
{
	return (uintptr_t)__syscall(SYS_brk, to);
}

size_t __ngm_page_size(void)
{
	return PAGE_SIZE;
}

uint64_t __ngm_now_ms(void)
{
	/* the vDSO's coarse clock (a tick's resolution, no system call): decay reads it on
	 * the thread caches' colder paths */
	struct timespec ts;
	if (__clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)) return 0;
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t __ngm_random(void)
{
	uint64_t s = 0;
	/* AT_RANDOM's first 8 bytes are the stack canary: take the next 8 */
	for (size_t i = 0; libc.auxv && libc.auxv[i]; i += 2)
		if (libc.auxv[i] == AT_RANDOM) {
			memcpy(&s, (char *)libc.auxv[i + 1] + 8, sizeof s);
			return s;
		}
	if (__syscall(SYS_getrandom, &s, sizeof s, 1 /* GRND_NONBLOCK */) == sizeof s)
		return s;
	/* no entropy at all: mix an address that ASLR moved (never address * constant) */
	s = (uintptr_t)&s ^ 0x9e3779b97f4a7c15ULL;
	s = (s ^ (s >> 30)) * 0xbf58476d1ce4e5b9ULL;
	s = (s ^ (s >> 27)) * 0x94d049bb133111ebULL;
	return s ^ (s >> 31);
}

/* The heap lock: 0 free, 1 held, 2 held with sleepers. Not musl's LOCK: that tries ten
 * compare-and-swaps back to back and then sleeps in the kernel, and ngmalloc's critical
 * sections (a thread cache's refill, a group's first or last free) outlast ten CASes but
 * not a short spin, so under two busy threads nearly every contended acquisition became
 * a futex wait and a wake (producer/consumer, 2 threads: 56,000 futex calls a run).
 * Here a waiter spins on a plain read for a while, as the standalone library's lock
 * does, and sleeps only after that. Skipped while the process is single-threaded, with
 * musl's rule for need_locks < 0 (the last other thread just exited: lock once more so
 * its last unlock is seen, then stop locking). */
void __ngm_lock(void)
{
	int need_locks = libc.need_locks;
	if (!need_locks) return;
	int taken = !a_cas(__malloc_lock, 0, 1);
	if (need_locks < 0) libc.need_locks = 0;
	if (taken) return;
	for (int i = 0; i < 100; i++) {
		a_spin();
		if (!*__malloc_lock && !a_cas(__malloc_lock, 0, 1)) return;
	}
	while (a_swap(__malloc_lock, 2)) __futexwait(__malloc_lock, 2, 1);
}

void __ngm_unlock(void)
{
	/* 0 when the lock was skipped: nothing to release */
	if (a_swap(__malloc_lock, 0) == 2) __wake(__malloc_lock, 1, 1);
}

void __ngm_lock_reset(void)
{
	__malloc_lock[0] = 0;
}

int __ngm_aligned_alloc_disabled(void)
{
	return __malloc_replaced && !__aligned_alloc_replaced;
}

void __ngm_set_errno(int e)
{
	errno = e;
}

void **__ngm_thread_slot(void)
{
	/* before the thread pointer is set up (early in the dynamic linker) there is no
	 * thread structure to read */
	if (!libc.can_do_threads) return 0;
	return &__pthread_self()->malloc_tc;
}
