//! Generated from musl-patches/ngmalloc/ngmalloc.h by toolchain/bindings.sh: do not edit.
#![allow(non_camel_case_types, non_upper_case_globals, missing_docs, dead_code)]
#![allow(clippy::missing_safety_doc)]

pub const NGM_PROT_NONE: u32 = 0;
pub const NGM_PROT_RW: u32 = 1;
pub type __uint64_t = core::ffi::c_ulong;
unsafe extern "C" {
    pub fn __ngm_mmap(
        addr: *mut core::ffi::c_void,
        len: usize,
        prot: core::ffi::c_int,
        fixed: core::ffi::c_int,
    ) -> *mut core::ffi::c_void;
}
unsafe extern "C" {
    pub fn __ngm_munmap(addr: *mut core::ffi::c_void, len: usize);
}
unsafe extern "C" {
    pub fn __ngm_mremap(
        addr: *mut core::ffi::c_void,
        old_len: usize,
        new_len: usize,
        to: *mut core::ffi::c_void,
    ) -> core::ffi::c_int;
}
unsafe extern "C" {
    pub fn __ngm_mprotect(
        addr: *mut core::ffi::c_void,
        len: usize,
        prot: core::ffi::c_int,
    ) -> core::ffi::c_int;
}
unsafe extern "C" {
    pub fn __ngm_release(addr: *mut core::ffi::c_void, len: usize) -> core::ffi::c_int;
}
unsafe extern "C" {
    pub fn __ngm_guard(
        addr: *mut core::ffi::c_void,
        len: usize,
        install: core::ffi::c_int,
    ) -> core::ffi::c_int;
}
unsafe extern "C" {
    pub fn __ngm_guard_faults(addr: *mut core::ffi::c_void) -> core::ffi::c_int;
}
unsafe extern "C" {
    pub fn __ngm_brk(to: usize) -> usize;
}
unsafe extern "C" {
    pub fn __ngm_page_size() -> usize;
}
unsafe extern "C" {
    pub fn __ngm_now_ms() -> u64;
}
unsafe extern "C" {
    pub fn __ngm_random() -> u64;
}
unsafe extern "C" {
    pub fn __ngm_lock();
}
unsafe extern "C" {
    pub fn __ngm_unlock();
}
unsafe extern "C" {
    pub fn __ngm_lock_reset();
}
unsafe extern "C" {
    pub fn __ngm_aligned_alloc_disabled() -> core::ffi::c_int;
}
unsafe extern "C" {
    pub fn __ngm_set_errno(e: core::ffi::c_int);
}
unsafe extern "C" {
    pub fn __ngm_thread_slot() -> *mut *mut core::ffi::c_void;
}
unsafe extern "C" {
    pub fn __libc_malloc_impl(n: usize) -> *mut core::ffi::c_void;
}
unsafe extern "C" {
    pub fn __libc_free(p: *mut core::ffi::c_void);
}
unsafe extern "C" {
    pub fn __libc_realloc(p: *mut core::ffi::c_void, n: usize) -> *mut core::ffi::c_void;
}
unsafe extern "C" {
    pub fn aligned_alloc(align: usize, n: usize) -> *mut core::ffi::c_void;
}
unsafe extern "C" {
    pub fn malloc_usable_size(p: *mut core::ffi::c_void) -> usize;
}
unsafe extern "C" {
    pub fn __malloc_donate(start: *mut core::ffi::c_char, end: *mut core::ffi::c_char);
}
unsafe extern "C" {
    pub fn __malloc_allzerop(p: *mut core::ffi::c_void) -> core::ffi::c_int;
}
unsafe extern "C" {
    pub fn __malloc_atfork(who: core::ffi::c_int);
}
unsafe extern "C" {
    pub fn __malloc_thread_exit();
}
unsafe extern "C" {
    pub fn free_sized(p: *mut core::ffi::c_void, n: usize);
}
unsafe extern "C" {
    pub fn free_aligned_sized(p: *mut core::ffi::c_void, align: usize, n: usize);
}
