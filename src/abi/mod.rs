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
