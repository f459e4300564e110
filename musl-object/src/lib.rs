//! ngmalloc as musl's allocator: the core with its musl exports (`ngmalloc_core::abi::musl`),
//! packaged by toolchain/rust-object.sh into the object musl links into libc.
#![no_std]

extern crate ngmalloc_core;

/// A panic in the allocator cannot be reported (reporting would allocate): crash.
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    ngmalloc_core::check::crash()
}
