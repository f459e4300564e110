//! The standalone library: ngmalloc's core with its C exports (`ngmalloc::abi`), built as
//! `libngmalloc.so` (for `LD_PRELOAD`) and `libngmalloc.a` (to link in).
#![no_std]

extern crate ngmalloc;

/// A panic in the allocator cannot be reported (reporting would allocate): crash.
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    ngmalloc::check::crash()
}
