//! The exports of the object built into musl: musl's internal malloc interface (what
//! mallocng defines). `malloc`, `free`, `calloc`, `realloc`, `memalign`, `posix_memalign`
//! stay musl's generic files, which call these. `aligned_alloc` and `malloc_usable_size`
//! are public and made weak when the object is packaged (toolchain/rust-object.sh), so a
//! static program that defines its own still links.
//!
//! Each export's signature is checked at compile time against the declaration bindgen
//! generated from `ngmalloc.h`, so the two cannot drift.

use core::ffi::{c_char, c_int, c_void};
use core::ptr::null_mut;

use super::{
    EINVAL, ENOMEM, free_through, malloc_through, or_enomem, realloc_through, valid_align,
};
use crate::heap::Heap;
use crate::os::musl::{
    Musl, MuslLock, WORD_INLINE, aligned_alloc_disabled, known_thread_word, set_errno, thread_slot,
    thread_word,
};
use crate::os::musl_sys as sys;
use crate::tcache::ThreadCache;
use crate::thread_word::{WORD_LOCKED, word_cache, word_cached};

static HEAP: Heap<Musl, MuslLock> = Heap::new(MuslLock);

/// Compile-time proof that our export has the type of the declaration in ngmalloc.h.
macro_rules! same_signature {
    ($name:ident, fn($($arg:ty),*) $(-> $ret:ty)?) => {
        const _: () = {
            let _decl: unsafe extern "C" fn($($arg),*) $(-> $ret)? = sys::$name;
            let _ours: unsafe extern "C" fn($($arg),*) $(-> $ret)? = $name;
        };
    };
}

fn out(p: Option<core::ptr::NonNull<u8>>) -> *mut c_void {
    or_enomem(p, set_errno)
}

/// The calling thread's cache, made on its first call; `None`: use the locked paths.
/// (Its word is in musl's thread structure: see [`crate::thread_word`].)
#[inline(always)]
fn cache() -> Option<&'static mut ThreadCache> {
    word_cache(thread_word()?, make_cache)
}

/// The calling thread's cache if it has one and its word's place is known, with no call.
#[inline(always)]
fn cached() -> Option<&'static mut ThreadCache> {
    word_cached(known_thread_word()?)
}

#[cold]
fn make_cache() -> Option<&'static mut ThreadCache> {
    let slot = thread_slot()?;
    // SAFETY: the slot is this thread's own word, and the cache is fresh and this thread's.
    unsafe {
        *slot = WORD_LOCKED;
        let tc = HEAP.cache_create();
        // out of memory now: try again later
        *slot = tc.expose_provenance();
        tc.as_mut()
    }
}

/// musl's thread exit (after the thread's TSD destructors): give its cache back.
#[unsafe(no_mangle)]
pub extern "C" fn __malloc_thread_exit() {
    let Some(slot) = thread_slot() else {
        return;
    };
    // SAFETY: the slot is this thread's word, holding a cache made for this thread when
    // above WORD_LOCKED; whatever the thread allocates after this takes the locked paths.
    unsafe {
        let w = *slot;
        if w <= WORD_LOCKED {
            return;
        }
        *slot = WORD_LOCKED;
        HEAP.cache_destroy(core::ptr::with_exposed_provenance_mut(w));
    }
}
same_signature!(__malloc_thread_exit, fn());

/// musl's `malloc` backend (overrides lite_malloc's bump allocator).
#[unsafe(no_mangle)]
pub extern "C" fn __libc_malloc_impl(n: usize) -> *mut c_void {
    malloc_through(&HEAP, cached(), n, malloc_miss, malloc_slow)
}

/// `malloc` for a thread whose cache is not yet made or known, or that has none.
#[inline(never)]
fn malloc_slow(n: usize) -> *mut c_void {
    malloc_miss(cache(), n)
}

/// Everything `malloc` does past the cache's pop (refills, the locked path, errno), out
/// of line so that the pop calls nothing.
#[inline(never)]
fn malloc_miss(tc: Option<&'static mut ThreadCache>, n: usize) -> *mut c_void {
    out(HEAP.malloc_miss(tc, n))
}
same_signature!(__libc_malloc_impl, fn(usize) -> *mut c_void);

/// musl's `free` backend.
///
/// # Safety
/// `p` is null or a live allocation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: the caller's contract; invalid pointers crash in the heap's checks.
    unsafe { free_through(&HEAP, cached(), p, free_slow) }
}
same_signature!(__libc_free, fn(*mut c_void));

/// `free` for a thread whose cache is not yet made or known, or that has none.
///
/// # Safety
/// As [`__libc_free`].
#[inline(never)]
unsafe fn free_slow(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: forwarded.
    unsafe {
        match cache() {
            // where the word is read inline, this was the thread's first call, which made
            // its cache: the next free finds it, and this one takes the locked path (no
            // second copy of the cached free in the text, which every program maps)
            Some(tc) if !WORD_INLINE => HEAP.free_cached(tc, p.cast()),
            _ => HEAP.free(p.cast()),
        }
    }
}

/// musl's `realloc` backend.
///
/// # Safety
/// `p` is null or a live allocation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: the caller's contract; the functions are this heap's exports.
    unsafe { realloc_through(&HEAP, p, n, __libc_malloc_impl, __libc_free, set_errno) }
}
same_signature!(__libc_realloc, fn(*mut c_void, usize) -> *mut c_void);

/// C11 `aligned_alloc` (also behind musl's `memalign` and `posix_memalign`).
#[unsafe(no_mangle)]
pub extern "C" fn aligned_alloc(align: usize, n: usize) -> *mut c_void {
    if !valid_align(align) {
        set_errno(EINVAL);
        return null_mut();
    }
    // memory from here could not be freed by a program's own free
    if aligned_alloc_disabled() {
        set_errno(ENOMEM);
        return null_mut();
    }
    out(HEAP.aligned_alloc(align.max(1), n))
}
same_signature!(aligned_alloc, fn(usize, usize) -> *mut c_void);

/// `malloc_usable_size`: exactly the size requested (0 for NULL).
///
/// # Safety
/// `p` is null or a live allocation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: the caller's contract.
    unsafe { HEAP.usable_size(p.cast()) }
}
same_signature!(malloc_usable_size, fn(*mut c_void) -> usize);

/// The dynamic linker gives the gaps of loaded segments to the heap.
///
/// # Safety
/// The range is unused writable memory (empty or inverted ranges are ignored).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __malloc_donate(start: *mut c_char, end: *mut c_char) {
    // SAFETY: the caller's contract.
    unsafe { HEAP.donate(start.cast(), end.cast()) }
}
same_signature!(__malloc_donate, fn(*mut c_char, *mut c_char));

/// Whether `calloc` may skip clearing `p`.
///
/// # Safety
/// `p` is a live allocation, just returned by malloc.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __malloc_allzerop(p: *mut c_void) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { HEAP.is_allzero(p.cast()) as c_int }
}
same_signature!(__malloc_allzerop, fn(*mut c_void) -> c_int);

/// musl's fork hook.
#[unsafe(no_mangle)]
pub extern "C" fn __malloc_atfork(who: c_int) {
    HEAP.atfork(who);
}
same_signature!(__malloc_atfork, fn(c_int));

/// C23 `free_sized` (public; weak in the packaged object): crashes if `n` is not the size
/// `p` was allocated with. Checked, then freed by `free`: the standalone library's faster
/// path (for C++'s deletes) would be a third copy of the cached free in libc, and musl's
/// sysroot has no C++.
///
/// # Safety
/// `p` is null or a live allocation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_sized(p: *mut c_void, n: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        HEAP.check_sized(p.cast(), n, None);
        __libc_free(p)
    }
}
same_signature!(free_sized, fn(*mut c_void, usize));

/// C23 `free_aligned_sized` (public; weak in the packaged object): crashes if `n` or
/// `align` does not match the allocation.
///
/// # Safety
/// `p` is null or a live allocation.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, n: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        HEAP.check_sized(p.cast(), n, Some(align));
        __libc_free(p)
    }
}
same_signature!(free_aligned_sized, fn(*mut c_void, usize, usize));
