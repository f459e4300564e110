//! The crash path. A failed hardening check means the heap is corrupt or under attack: the
//! process stops at once, with no output and no allocation, on an instruction that cannot
//! be caught and resumed in a useful way (SIGILL). Checks an attacker can reach are always
//! on, in release builds too.

/// What a validation found wrong with a pointer or header. The always-on checks crash on
/// any of these; the heap walker and the fuzz targets report them instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrupt {
    /// The pointer is not 16-byte aligned.
    Misaligned,
    /// The heap has no secret yet, so no pointer can be valid.
    Uninitialised,
    /// The offset fields of the slot header contradict each other.
    Offset,
    /// The meta record's page does not carry the heap's secret.
    Secret,
    /// The group and its meta record do not point at each other.
    GroupLink,
    /// The slot index is beyond the group's last slot.
    Index,
    /// The slot is already free (in `avail_mask` or `freed_mask`).
    DoubleFree,
    /// The offset lies outside the slot or the mapping.
    Bounds,
    /// The size class is not a real class nor the mapped marker.
    Class,
    /// The reserved-byte count is malformed or too large.
    Reserved,
    /// A check byte after the allocation was overwritten.
    CheckByte,
    /// A neighbour in a meta list does not point back.
    ListLink,
    /// An address the header leads to is not heap memory (`pagemap`).
    Foreign,
}

/// Stop the process now (mallocng's `a_crash`).
#[cold]
#[inline(never)]
pub fn crash() -> ! {
    trap()
}

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
#[inline(always)]
fn trap() -> ! {
    // SAFETY: `ud2` raises SIGILL and never falls through; it touches no memory or stack.
    unsafe { core::arch::asm!("ud2", options(noreturn, nomem, nostack)) }
}

#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn trap() -> ! {
    // SAFETY: `udf` is permanently undefined: SIGILL, never falls through.
    unsafe { core::arch::asm!("udf #0", options(noreturn, nomem, nostack)) }
}

#[cfg(target_arch = "riscv64")]
#[inline(always)]
fn trap() -> ! {
    // SAFETY: `unimp` is an illegal instruction: SIGILL, never falls through.
    unsafe { core::arch::asm!("unimp", options(noreturn, nomem, nostack)) }
}

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
compile_error!("ngmalloc: add this architecture's trap instruction to check.rs");

/// Crash on a failed validation; otherwise the value.
#[inline(always)]
pub fn ok<T>(r: Result<T, Corrupt>) -> T {
    match r {
        Ok(v) => v,
        Err(_) => crash(),
    }
}

/// Crash unless the condition holds.
macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            $crate::check::crash()
        }
    };
}
pub(crate) use check;

/// Turn a failed condition into an error of the given kind.
macro_rules! ensure {
    ($cond:expr, $err:expr) => {
        if !$cond {
            return Err($err);
        }
    };
}
pub(crate) use ensure;
