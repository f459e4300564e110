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

    unsafe fn mremap_to(p: *mut u8, old: usize, new: usize, to: *mut u8) -> bool {
        // SAFETY: forwarded contract.
        unsafe { sys::__ngm_mremap(p.cast(), old, new, to.cast()) == 0 }
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

    fn now_ms() -> u64 {
        // SAFETY: reads the clock through musl's clock_gettime (the vDSO).
        unsafe { sys::__ngm_now_ms() }
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

/// Where the calling thread's cache word is, as a distance from the thread pointer; 0
/// until the first thread with a thread structure asked. The word is a field of musl's
/// `struct pthread` (musl-patches/0002), at the same distance from every thread's pointer,
/// so one glue call learns it and every later read is one load through the thread
/// pointer: malloc and free each read the word, and the call cost a tenth of the pair's
/// allocator-side instructions on x86_64.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
static TC_TPOFF: core::sync::atomic::AtomicIsize = core::sync::atomic::AtomicIsize::new(0);

/// The thread pointer: `%fs:0` (musl keeps the thread's own address there), `tpidr_el0`.
///
/// # Safety
/// The thread pointer is set up (the glue gave a thread slot).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
unsafe fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: reads the thread pointer, which the caller vouches is set up.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp,
            options(nostack, readonly, preserves_flags));
        #[cfg(target_arch = "aarch64")]
        core::arch::asm!("mrs {}, tpidr_el0", out(reg) tp,
            options(nostack, nomem, preserves_flags));
    }
    tp
}

/// The word at `off` from the thread pointer: one load through `%fs` on x86_64.
///
/// # Safety
/// The thread pointer is set up and the word at `off` from it is this thread's.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
unsafe fn read_thread_word(off: isize) -> usize {
    // SAFETY: the caller's contract.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        {
            let w: usize;
            core::arch::asm!("mov {}, qword ptr fs:[{}]", out(reg) w, in(reg) off,
                options(nostack, readonly, preserves_flags));
            w
        }
        #[cfg(target_arch = "aarch64")]
        {
            core::ptr::with_exposed_provenance::<usize>(thread_pointer().wrapping_add_signed(off))
                .read()
        }
    }
}

/// The calling thread's cache word ([`thread_slot`]'s content), read inline once its
/// place is known; `None` when the thread has no thread structure yet (early in the
/// dynamic linker).
#[inline(always)]
pub fn thread_word() -> Option<usize> {
    known_thread_word().or_else(learn_thread_word)
}

/// Whether [`known_thread_word`] reads the word inline once a thread has asked for it
/// (elsewhere it is always `None`, and every call goes through the glue).
pub const WORD_INLINE: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// [`thread_word`] when its place is already known (one load, no call); `None`
/// otherwise, or on an architecture that reads it through the glue.
#[inline(always)]
pub fn known_thread_word() -> Option<usize> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        let off = TC_TPOFF.load(core::sync::atomic::Ordering::Relaxed);
        if off != 0 {
            // SAFETY: a nonzero offset was learnt from a thread slot, so the thread
            // pointer scheme is set up, and once set up it is for every thread; the
            // word is this thread's own.
            return Some(unsafe { read_thread_word(off) });
        }
    }
    None
}

/// [`thread_word`] through the glue, learning the word's place for later calls.
#[cold]
fn learn_thread_word() -> Option<usize> {
    let slot = thread_slot()?;
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        // SAFETY: the glue gave a slot, so the thread pointer is set up.
        let off = slot.addr().wrapping_sub(unsafe { thread_pointer() }) as isize;
        TC_TPOFF.store(off, core::sync::atomic::Ordering::Relaxed);
    }
    // SAFETY: the slot is this thread's word.
    Some(unsafe { slot.read() })
}

/// The calling thread's cache word in musl's thread structure (0 until set), through the
/// glue; `None` before the thread pointer is set up.
pub fn thread_slot() -> Option<*mut usize> {
    // SAFETY: no preconditions: the glue checks that the thread has a structure.
    let slot = unsafe { sys::__ngm_thread_slot() };
    (!slot.is_null()).then_some(slot.cast())
}
