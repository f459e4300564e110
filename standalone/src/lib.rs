//! The standalone library: ngmalloc's core with its C exports (`ngmalloc_core::abi`), built as
//! `libngmalloc.so` (for `LD_PRELOAD`) and `libngmalloc.a` (to link in).
#![no_std]

extern crate ngmalloc_core;

/// A panic in the allocator cannot be reported (reporting would allocate): crash.
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    ngmalloc_core::check::crash()
}
