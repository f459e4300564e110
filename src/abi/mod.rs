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
