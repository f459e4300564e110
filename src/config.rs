//! Compile-time constants of the layout. Each is load-bearing for a check elsewhere; the
//! `const` assertions below keep them consistent.

/// Granule of all sizes and offsets, and the alignment of every returned pointer.
pub const UNIT: usize = 16;
/// In-band header bytes just below each user pointer.
pub const IB: usize = 4;
/// Requests of this size or more are mapped individually (mallocng's value: the largest
/// size class, 8191 units, minus the in-band header).
pub const MMAP_THRESHOLD: usize = 131052;
/// Meta areas are this size, and `Meta::maplen` counts this unit, whatever the page size,
/// so that `meta & !(AREA - 1)` finds the area's secret on every architecture.
pub const AREA: usize = 4096;
/// Slots per group at most: the width of `avail_mask`/`freed_mask`.
pub const MAX_SLOTS: usize = 32;
/// Number of real size classes.
pub const NUM_CLASSES: usize = 48;
/// Size class recorded for individually mapped allocations.
pub const CLASS_MMAP: u8 = 63;
/// Largest alignment `aligned_alloc` serves. The distance from the aligned pointer to the
/// end of its slot is kept as a `u32` reserved count, so it must stay below 4 GiB.
pub const MAX_ALIGN: usize = 1 << 31;

const _: () = assert!(UNIT.is_power_of_two() && IB < UNIT);
const _: () = assert!(MMAP_THRESHOLD == 8191 * UNIT - IB);
const _: () = assert!(MAX_SLOTS == u32::BITS as usize);
const _: () = assert!((MAX_ALIGN as u64) < u32::MAX as u64);

/// mallocng's `size_overflows`: sizes this close to `SIZE_MAX` cannot be served, and
/// rejecting them early keeps every later `n + align + UNIT` free of overflow.
#[inline]
pub const fn size_overflows(n: usize) -> bool {
    n >= usize::MAX / 2 - 4096
}

/// Pages of guard on each side of an individually mapped allocation.
pub const GUARD_PAGES: usize = 1;
