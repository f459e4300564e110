/* The boundary between ngmalloc's Rust core and musl: declared here, once.
 *
 * glue.c (this directory, copied to src/malloc/ngmalloc/ in musl's tree) provides the
 * __ngm_* services; the Rust object provides musl's internal malloc interface. The Rust
 * declarations in src/os/musl_sys.rs are generated from this file with bindgen
 * (toolchain/bindings.sh); `make test` regenerates them and fails on any difference.
 *
 * Every service leaves errno unchanged and never allocates. */
#ifndef NGMALLOC_H
#define NGMALLOC_H

#include <stddef.h>
#include <stdint.h>

/* The services are internal to libc: hidden, so libc.so neither exports nor relocates
 * them through the GOT. */
#ifndef NGM_SERVICE
#define NGM_SERVICE __attribute__((__visibility__("hidden")))
#endif

/* Page protections for __ngm_mmap and __ngm_mprotect. */
#define NGM_PROT_NONE 0
#define NGM_PROT_RW 1

/* Services of the glue, called by Rust. */

/* An anonymous private mapping (exactly at addr if fixed); NULL on failure. */
NGM_SERVICE void *__ngm_mmap(void *addr, size_t len, int prot, int fixed);
NGM_SERVICE void __ngm_munmap(void *addr, size_t len);
/* Move a mapping to `to`, resized (MREMAP_MAYMOVE | MREMAP_FIXED: what was at `to` is
 * replaced); 0 on success. */
NGM_SERVICE int __ngm_mremap(void *addr, size_t old_len, size_t new_len, void *to);
/* 0 on success. */
NGM_SERVICE int __ngm_mprotect(void *addr, size_t len, int prot);
/* MADV_DONTNEED; 0 on success. */
NGM_SERVICE int __ngm_release(void *addr, size_t len);
/* MADV_GUARD_INSTALL (install != 0) or MADV_GUARD_REMOVE (Linux 6.13+); 0 on success. */
NGM_SERVICE int __ngm_guard(void *addr, size_t len, int install);
/* Nonzero if the kernel's own write to `addr` faults (EFAULT): a guard installed there is
 * real. An emulator (qemu-user) accepts MADV_GUARD_INSTALL and installs nothing. */
NGM_SERVICE int __ngm_guard_faults(void *addr);
/* The brk system call: sets the break to `to` (0 queries) and returns the break. */
NGM_SERVICE uintptr_t __ngm_brk(uintptr_t to);
NGM_SERVICE size_t __ngm_page_size(void);
/* CLOCK_MONOTONIC_COARSE in milliseconds (the vDSO's; 0 if it fails). */
NGM_SERVICE uint64_t __ngm_now_ms(void);
/* 64 unpredictable bits: AT_RANDOM, else the getrandom system call. */
NGM_SERVICE uint64_t __ngm_random(void);
/* The heap lock (the word mallocng called __malloc_lock), skipped while the process is
 * single-threaded; a waiter spins before it sleeps. */
NGM_SERVICE void __ngm_lock(void);
NGM_SERVICE void __ngm_unlock(void);
NGM_SERVICE void __ngm_lock_reset(void);
/* Nonzero when the program replaced malloc but not aligned_alloc: aligned_alloc must
 * then fail, as it can't hand out memory the program's free would understand. */
NGM_SERVICE int __ngm_aligned_alloc_disabled(void);
NGM_SERVICE void __ngm_set_errno(int e);
/* The calling thread's word for its cache (a field of musl's struct pthread, added by
 * musl-patches/0002), 0 until set; NULL before the thread pointer is set up. */
NGM_SERVICE void **__ngm_thread_slot(void);

/* musl's internal malloc interface, provided by the Rust object. */

void *__libc_malloc_impl(size_t n);
void __libc_free(void *p);
void *__libc_realloc(void *p, size_t n);
void *aligned_alloc(size_t align, size_t n);
size_t malloc_usable_size(void *p);
void __malloc_donate(char *start, char *end);
int __malloc_allzerop(void *p);
void __malloc_atfork(int who);
/* Called by pthread_exit after the thread's TSD destructors: gives its cache back. */
void __malloc_thread_exit(void);
/* C23, public (musl 1.2.5 has none): a wrong size or alignment crashes. */
void free_sized(void *p, size_t n);
void free_aligned_sized(void *p, size_t align, size_t n);

#endif
