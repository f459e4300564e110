//! The OS seam: every system call the allocator makes goes through [`Os`]. Implementations:
//! [`linux::Linux`] (raw system calls, for the standalone library and host tests),
//! `musl::Musl` (musl's own functions through the glue, for the object built into musl),
//! and those the tests build on top of them (counting, fault injection).
//!
//! Contract for every method: it never allocates, never calls back into the allocator and
//! never changes `errno` (raw system calls don't touch it; wrappers around libc calls must
//! save and restore it), so a `free` or a successful `malloc` leaves `errno` alone.

pub mod linux;
#[cfg(feature = "musl")]
pub mod musl;
#[cfg(feature = "musl")]
pub mod musl_sys;

use core::ptr::NonNull;

/// Page protections the allocator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prot {
    /// No access: guard pages and reserved meta-area space.
    None,
    /// Read and write.
    ReadWrite,
}

/// The memory calls of the allocator, as associated functions of a zero-sized type, so the
/// heap is monomorphised over its backend with no dispatch cost.
///
/// # Safety
/// Implementations behave as the Linux calls they are named after for anonymous private
/// memory, honour the contract in the module docs, and return page-aligned mappings.
pub unsafe trait Os {
    /// Whether [`Os::brk`] may be used for meta areas. The standalone library leaves the
    /// program break to the host libc, which may move it behind our back.
    const USE_BRK: bool;

    /// Map `len` bytes of anonymous private memory. With `fixed`, exactly at `at`
    /// (replacing what is there); otherwise anywhere.
    ///
    /// # Safety
    /// With `fixed`, `at .. at + len` must be memory the heap owns.
    unsafe fn mmap(at: *mut u8, len: usize, prot: Prot, fixed: bool) -> Option<NonNull<u8>>;

    /// Unmap a range the heap mapped.
    ///
    /// # Safety
    /// The range is the heap's and holds nothing live.
    unsafe fn munmap(p: *mut u8, len: usize);

    /// Move the mapping `p .. p + old` to `to`, resized to `new` bytes (`MREMAP_MAYMOVE |
    /// MREMAP_FIXED`): whatever was at `to .. to + new` is replaced. The caller reserves
    /// the destination first, so that it can prepare it (the page map) before the move
    /// and a failure leaves the mapping where it was. `false` on failure, and then the
    /// destination is no longer the heap's: the kernel may have unmapped it before failing
    /// (and another thread mapped something there since), so the implementation unmaps
    /// only what it can take back unused (`MAP_FIXED_NOREPLACE`), and a reservation left
    /// whole by an early failure stays reserved (address space only).
    ///
    /// # Safety
    /// `p .. p + old` is one mapping of the heap's; `to .. to + new` is the heap's, holds
    /// nothing live and does not overlap it.
    unsafe fn mremap_to(p: *mut u8, old: usize, new: usize, to: *mut u8) -> bool;

    /// Change protection; `false` on failure.
    ///
    /// # Safety
    /// The range is the heap's and holds nothing live if made inaccessible.
    unsafe fn mprotect(p: *mut u8, len: usize, prot: Prot) -> bool;

    /// `MADV_DONTNEED`: drop the pages; they read as zero afterwards. `false` on failure.
    ///
    /// # Safety
    /// The range is the heap's and holds nothing live.
    unsafe fn release(p: *mut u8, len: usize) -> bool;

    /// `MADV_GUARD_INSTALL` (or `_REMOVE`): make the pages fault on any access while the
    /// mapping stays one VMA (Linux 6.13+). `false` on failure: EINVAL on older kernels and
    /// on locked (mlockall) mappings.
    ///
    /// # Safety
    /// The range is the heap's and holds nothing live (installing zaps the pages).
    unsafe fn guard(p: *mut u8, len: usize, install: bool) -> bool;

    /// Whether the guard just installed at `p` really faults: the kernel's own write there
    /// fails with EFAULT. An emulator may accept `MADV_GUARD_INSTALL` and install nothing
    /// (qemu-user does), and the large-block cache relies on the markers zapping pages.
    ///
    /// # Safety
    /// `p` is the start of a guard range of the heap's, which holds nothing.
    unsafe fn guard_faults(p: *mut u8) -> bool;

    /// Set the program break to `to` (0 queries it) and return the break now in force.
    ///
    /// # Safety
    /// Only meta-area code may move the break, upwards, from a value it queried.
    unsafe fn brk(to: usize) -> usize;

    /// The page size.
    fn page_size() -> usize;

    /// 64 unpredictable bits for the heap secret.
    fn random() -> u64;

    /// A monotonic clock in milliseconds, for decay (only cold paths read it).
    fn now_ms() -> u64 {
        linux::monotonic_ms()
    }
}
