//! Compile-time constants of the layout. Each is load-bearing for a check elsewhere; the
//! `const` assertions below keep them consistent.

/// Granule of all sizes and offsets, and the alignment of every returned pointer.
pub const UNIT: usize = 16;
/// In-band header bytes just below each user pointer.
pub const IB: usize = 4;
/// Requests of this size or more are mapped individually (mallocng's value: the largest
/// size class, 8191 units, minus the in-band header; and minus [`CANARY_ROOM`]).
pub const MMAP_THRESHOLD: usize = 131052 - CANARY_ROOM;
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
const _: () = assert!(MMAP_THRESHOLD == 8191 * UNIT - IB - CANARY_ROOM);
const _: () = assert!(MAX_SLOTS == u32::BITS as usize);
const _: () = assert!((MAX_ALIGN as u64) < u32::MAX as u64);

/// How long, in milliseconds, a thread keeps the empty groups it gave up before it
/// returns them to the heap, which returns their memory to the system (or keeps it in
/// its bounded cache of mappings). Checked on the calls that take a thread's slow paths
/// (no thread of our own); what a thread keeps meanwhile is bounded in bytes as well
/// (`tcache::RETIRE_BYTES`). 0 gives them back at once, as mallocng does. Set when
/// building: `NGMALLOC_DECAY_MS=0 make` (default 1000).
pub const DECAY_MS: u64 = parse_ms(option_env!("NGMALLOC_DECAY_MS"), 1000);

/// A decimal number of milliseconds, or `default` if unset; a build error if malformed.
const fn parse_ms(v: Option<&str>, default: u64) -> u64 {
    let Some(v) = v else { return default };
    let b = v.as_bytes();
    assert!(!b.is_empty(), "NGMALLOC_DECAY_MS: a number of milliseconds");
    let mut n = 0u64;
    let mut i = 0;
    while i < b.len() {
        assert!(
            b[i].is_ascii_digit() && n < u64::MAX / 100,
            "NGMALLOC_DECAY_MS: a number of milliseconds"
        );
        n = n * 10 + (b[i] - b'0') as u64;
        i += 1;
    }
    n
}

/// mallocng's `size_overflows`: sizes this close to `SIZE_MAX` cannot be served, and
/// rejecting them early keeps every later `n + align + UNIT` free of overflow.
#[inline]
pub const fn size_overflows(n: usize) -> bool {
    n >= usize::MAX / 2 - 4096
}

/// Pages of guard on each side of an individually mapped allocation.
pub const GUARD_PAGES: usize = if cfg!(feature = "harden-big-guards") {
    16
} else {
    1
};

// Optional mitigations. Each is a Cargo feature (`harden-…`) and, inside musl, a word of
// `configure --enable-ngmalloc-hardening=…`. The default build has none of them: it
// already has the always-on checks, secret canaries and guard regions. Each is a `const`
// used with `if`, so every combination is type-checked in every build.

/// `harden-zero-on-free`. Threat: a write through a dangling pointer to a small or medium
/// block (use after free) anywhere in it ([`FREED_WORD`] checks a small block's first 8
/// bytes only, for less), and freed data read back by the block's next owner.
/// Freed slots are wiped, and a slot handed out again must still be all zero, or the
/// process stops.
/// Cost: a memset of the slot on every free and a scan of it on every malloc (proportional
/// to the slot size: 16 B to 128 KiB).
pub const ZERO_ON_FREE: bool = cfg!(feature = "harden-zero-on-free");

/// `harden-freed-word`. Threat: a write through a dangling pointer into the first 8 bytes
/// of a freed small block (slots up to 4 KiB), the bytes a stale pointer to a struct most
/// often writes (its first field). Each free writes a word there (a hash of the heap's
/// secret), which the next hand-out of the slot checks (`slot::retire`). Cost: measured on
/// x86_64, a malloc+free pair takes 21 more instructions (296 instead of 275 at 16-64 B);
/// the check reads the slot's first bytes at malloc, a cache miss when another thread
/// freed it (the harness's server churn 13% slower, thread-local churn 5%). With
/// `zero-on-free` it does nothing (that checks the whole slot).
pub const FREED_WORD: bool = cfg!(feature = "harden-freed-word");

/// `harden-string-end`. Threat: a string read past the end of its buffer (`strlen` of
/// a buffer filled to its end, with no NUL of its own, reads on into whatever follows,
/// another block's data or header). The byte right after the data is 0 (what ends the
/// string there), the check bytes follow it where the slot has room ([`slot::window`]).
/// Cost: an overflow of one byte that writes a NUL is no longer caught (the byte it
/// writes is the one there), nor is any overflow into that byte where the data ends at
/// the slot's end with no room (then it is the only check byte) when it writes a NUL; a
/// one-byte overflow of anything else, and one past that byte, still are. Measured on
/// x86_64 (standalone library), a malloc+free pair takes 17 more instructions (289
/// instead of 272 at 16-64 B): the free reads the record's class (a single mapping keeps
/// its check byte), and both sides mask the key.
///
/// [`slot::window`]: crate::slot
pub const STRING_END: bool = cfg!(feature = "harden-string-end");

/// `harden-canary-room`. Threat: an overflow of a few bytes past the check bytes, where
/// the slot has no room after the data (a block that fills its slot to within a few
/// bytes has 1 to 4 check bytes, then the next slot's header, which the block's free does
/// not check). Every small request takes 8 bytes more when its size class is chosen
/// (and the offset cycling leaves them), so that 8 bytes of check bytes, or check bytes
/// and the keyed count of reserved bytes, follow every block's data. Cost: memory, for
/// requests within 8 bytes of a class's capacity, which take the next class (at worst
/// twice the memory: `malloc(12)` takes a 32-byte slot, not 16), and 8 bytes less
/// before a request is mapped on its own. Measured on x86_64: peak RSS of the harness's
/// workloads +0.6% (orders) and +1.1% (frag), the rest within noise; a malloc+free pair
/// takes 3 more instructions.
pub const CANARY_ROOM: usize = if cfg!(feature = "harden-canary-room") {
    8
} else {
    0
};

/// `harden-random-slots`. Threat: heap grooming, which relies on the next allocation
/// landing at a predictable place (the lowest free slot) next to a chosen victim. Slots
/// are taken at random among the available ones. Cost: a few instructions per malloc
/// (a xorshift step and a select-bit); slightly more pages touched in partially used groups.
pub const RANDOM_SLOTS: bool = cfg!(feature = "harden-random-slots");

/// `harden-quarantine`. Threat: use after free and double free once the memory has been
/// handed out again (then a stale pointer looks valid). Freed large blocks stay
/// inaccessible (guarded) and are not reused until [`QUARANTINE`] younger ones were freed;
/// freed small and medium slots stay marked freed, unavailable, until 64 later frees (a
/// second free of them crashes). Cost: address space for large blocks (no memory: their
/// pages are zapped); up to 64 freed slots' memory held; every small free takes the lock.
pub const QUARANTINE: usize = if cfg!(feature = "harden-quarantine") {
    8
} else {
    0
};

/// `harden-big-guards`. Threat: an overflow or underflow of a large block that jumps over
/// a one-page guard (a large index, a struct copy at an offset). 16 pages of guard on each
/// side instead of 1. Cost: address space only (guard pages hold no memory).
pub const BIG_GUARDS: bool = cfg!(feature = "harden-big-guards");
