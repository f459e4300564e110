//! The only `#[no_mangle]` exports, one submodule per build: C semantics live here and
//! only here. Each export delegates to the heap in a few lines.

#[cfg(feature = "musl")]
pub mod musl;
#[cfg(feature = "standalone")]
pub mod standalone;

/// `errno` values the exports report.
pub(crate) const ENOMEM: core::ffi::c_int = 12;
pub(crate) const EINVAL: core::ffi::c_int = 22;

/// Whether `align` is acceptable to `aligned_alloc`: a power of two, or 0 (which musl
/// accepts and treats as the minimum).
#[inline]
pub(crate) fn valid_align(align: usize) -> bool {
    align & align.wrapping_neg() == align
}

/// A heap result as C wants it: the pointer, or NULL with `errno = ENOMEM`.
#[inline]
pub(crate) fn or_enomem(
    p: Option<core::ptr::NonNull<u8>>,
    set_errno: fn(core::ffi::c_int),
) -> *mut core::ffi::c_void {
    match p {
        Some(p) => p.as_ptr().cast(),
        None => {
            set_errno(ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// C `malloc` on `heap` for a thread whose cache `tc` is known: the cache's pop inline,
/// calling nothing, and everything else a tail call out of line, so the pop sets up no
/// frame for calls it does not make: `miss` (the export's refill and locked path, for
/// the same cache) and `slow` (a thread with no cache known).
#[inline(always)]
pub(crate) fn malloc_through<O: crate::os::Os, L: crate::lock::RawLock>(
    heap: &crate::heap::Heap<O, L>,
    tc: Option<&'static mut crate::tcache::ThreadCache>,
    n: usize,
    miss: fn(Option<&'static mut crate::tcache::ThreadCache>, usize) -> *mut core::ffi::c_void,
    slow: fn(usize) -> *mut core::ffi::c_void,
) -> *mut core::ffi::c_void {
    match tc {
        Some(tc) => match heap.malloc_fast(tc, n) {
            Some(p) => p.as_ptr().cast(),
            None => miss(Some(tc), n),
        },
        None => slow(n),
    }
}

/// C `free` on `heap`: through the thread's cache `tc` if it is known, else `slow`.
///
/// # Safety
/// `p` is null or a live allocation of `heap`; `slow` is the export's C `free` for a
/// thread with no cache known.
#[inline(always)]
pub(crate) unsafe fn free_through<O: crate::os::Os, L: crate::lock::RawLock>(
    heap: &crate::heap::Heap<O, L>,
    tc: Option<&'static mut crate::tcache::ThreadCache>,
    p: *mut core::ffi::c_void,
    slow: unsafe fn(*mut core::ffi::c_void),
) {
    // SAFETY: the caller's contract.
    unsafe {
        match tc {
            Some(tc) => heap.free_cached(tc, p.cast()),
            None => slow(p),
        }
    }
}

/// C23 `free_sized`/`free_aligned_sized` on `heap`: through the thread's cache `tc` if it
/// is known (C++'s sized deletes call it for every `delete`), else the locked path.
///
/// # Safety
/// `p` is null or a live allocation of `heap`.
#[inline(always)]
pub(crate) unsafe fn free_sized_through<O: crate::os::Os, L: crate::lock::RawLock>(
    heap: &crate::heap::Heap<O, L>,
    tc: Option<&'static mut crate::tcache::ThreadCache>,
    p: *mut core::ffi::c_void,
    size: usize,
    align: Option<usize>,
) {
    // SAFETY: the caller's contract.
    unsafe {
        match tc {
            Some(tc) => heap.free_sized_cached(tc, p.cast(), size, align),
            None => heap.free_sized(p.cast(), size, align),
        }
    }
}

/// C `realloc` on `heap`, whose copy (and a null `p`) goes through the export's own
/// `malloc` and `free`, which use the thread's cache: a program that allocates with
/// `realloc(NULL, n)` and frees with `free` (Lua does) otherwise filled its bins with
/// frees that no cached `malloc` took back. Each export is one copy of the fast path
/// (calling them keeps realloc from inlining a third).
///
/// # Safety
/// `p` is null or a live allocation of `heap`; `malloc` and `free` are the exports over
/// `heap` (C semantics: NULL with errno set, and free of a live block).
#[inline(always)]
pub(crate) unsafe fn realloc_through<O: crate::os::Os, L: crate::lock::RawLock>(
    heap: &crate::heap::Heap<O, L>,
    p: *mut core::ffi::c_void,
    n: usize,
    malloc: unsafe extern "C" fn(usize) -> *mut core::ffi::c_void,
    free: unsafe extern "C" fn(*mut core::ffi::c_void),
    set_errno: fn(core::ffi::c_int),
) -> *mut core::ffi::c_void {
    // SAFETY: the caller's contract; on `Copy`, `p` holds `old` bytes, copied to the new
    // block before `p` is freed.
    unsafe {
        if p.is_null() {
            return malloc(n);
        }
        match heap.resize(p.cast(), n) {
            crate::heap::Resize::Done(r) => or_enomem(r, set_errno),
            crate::heap::Resize::Copy(old) => {
                let new = malloc(n);
                if !new.is_null() {
                    core::ptr::copy_nonoverlapping(p.cast::<u8>(), new.cast::<u8>(), n.min(old));
                    free(p);
                }
                new
            }
        }
    }
}
