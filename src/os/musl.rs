//! The musl backend: musl's own (hidden) functions, reached through the glue in
//! `musl-patches/ngmalloc/glue.c`, whose boundary is `ngmalloc.h` ([`super::musl_sys`]).
//! The glue saves and restores errno around every call.

use core::ffi::c_int;
use core::ptr::NonNull;

use super::musl_sys as sys;
use super::{Os, Prot};
use crate::lock::RawLock;

fn prot(p: Prot) -> c_int {
    (match p {
        Prot::None => sys::NGM_PROT_NONE,
        Prot::ReadWrite => sys::NGM_PROT_RW,
    }) as c_int
}

/// musl's memory calls.
pub struct Musl;

// SAFETY: the glue forwards to musl's __mmap/__munmap/__mremap/__mprotect/__madvise and
// the brk system call, keeps errno, and never allocates.
unsafe impl Os for Musl {
    const USE_BRK: bool = true;

    unsafe fn mmap(at: *mut u8, len: usize, p: Prot, fixed: bool) -> Option<NonNull<u8>> {
        // SAFETY: forwarded contract.
        NonNull::new(unsafe { sys::__ngm_mmap(at.cast(), len, prot(p), fixed as c_int) }.cast())
    }

    unsafe fn munmap(p: *mut u8, len: usize) {
        // SAFETY: forwarded contract.
        unsafe { sys::__ngm_munmap(p.cast(), len) }
    }

    unsafe fn mremap(p: *mut u8, old: usize, new: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded contract.
        NonNull::new(unsafe { sys::__ngm_mremap(p.cast(), old, new) }.cast())
    }

    unsafe fn mprotect(p: *mut u8, len: usize, pr: Prot) -> bool {
        // SAFETY: forwarded contract.
        unsafe { sys::__ngm_mprotect(p.cast(), len, prot(pr)) == 0 }
    }

    unsafe fn release(p: *mut u8, len: usize) -> bool {
        // SAFETY: forwarded contract.
        unsafe { sys::__ngm_release(p.cast(), len) == 0 }
    }

    unsafe fn guard(p: *mut u8, len: usize, install: bool) -> bool {
        // SAFETY: forwarded contract.
        unsafe { sys::__ngm_guard(p.cast(), len, install as c_int) == 0 }
    }

    unsafe fn guard_faults(p: *mut u8) -> bool {
        // SAFETY: forwarded contract.
        unsafe { sys::__ngm_guard_faults(p.cast()) != 0 }
    }

    unsafe fn brk(to: usize) -> usize {
        // SAFETY: forwarded contract.
        unsafe { sys::__ngm_brk(to) }
    }

    fn page_size() -> usize {
        // SAFETY: reads libc.page_size.
        unsafe { sys::__ngm_page_size() }
    }

    fn random() -> u64 {
        // SAFETY: reads the auxiliary vector or calls getrandom.
        unsafe { sys::__ngm_random() }
    }
}

/// The glue's heap lock on `__malloc_lock`: spins, then sleeps on a futex; skipped while
/// the process is single-threaded (musl's `libc.need_locks`).
pub struct MuslLock;

// SAFETY: compare-and-swap on one word, futex wait and wake (glue.c); they neither
// allocate nor re-enter.
unsafe impl RawLock for MuslLock {
    fn lock(&self) {
        // SAFETY: no preconditions.
        unsafe { sys::__ngm_lock() }
    }
    fn unlock(&self) {
        // SAFETY: called by the thread that locked.
        unsafe { sys::__ngm_unlock() }
    }
    fn reset(&self) {
        // SAFETY: only in a fork child, where no other thread exists.
        unsafe { sys::__ngm_lock_reset() }
    }
}

/// Set `errno` (musl's, through the glue).
pub fn set_errno(e: c_int) {
    // SAFETY: no preconditions.
    unsafe { sys::__ngm_set_errno(e) }
}

/// Whether the program replaced malloc but not aligned_alloc.
pub fn aligned_alloc_disabled() -> bool {
    // SAFETY: reads two ints of musl's.
    unsafe { sys::__ngm_aligned_alloc_disabled() != 0 }
}
