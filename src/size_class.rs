//! Size classes: mallocng's table and lookup, as pure functions.
//!
//! Classes are in UNITs. Below 10 units they step by one unit; above, four classes per
//! power of two, each just below `2^k * {1, 5/4... }` so that a power-of-two group of slots
//! (plus its 16-byte header) fits a power-of-two span with little waste.

use crate::config::{CANARY_ROOM, IB, NUM_CLASSES, UNIT};

/// Slot size of each class, in UNITs (mallocng's `size_classes`).
pub const SIZE_CLASSES: [u16; NUM_CLASSES] = [
    1, 2, 3, 4, 5, 6, 7, 8, //
    9, 10, 12, 15, //
    18, 20, 25, 31, //
    36, 42, 50, 63, //
    72, 84, 102, 127, //
    146, 170, 204, 255, //
    292, 340, 409, 511, //
    584, 682, 818, 1023, //
    1169, 1364, 1637, 2047, //
    2340, 2730, 3276, 4095, //
    4680, 5460, 6552, 8191, //
];

/// Slot counts for the small classes (`sc < 9`), from high to low usage tiers.
pub const SMALL_CNT: [[u8; 3]; 9] = [
    [30, 30, 30],
    [31, 15, 15],
    [20, 10, 10],
    [31, 15, 7],
    [25, 12, 6],
    [21, 10, 5],
    [18, 8, 4],
    [31, 15, 7],
    [28, 14, 6],
];

/// Largest slot count fitting a power-of-two span, by `sc & 3`, for `sc >= 9`.
pub const MED_CNT: [u8; 4] = [28, 24, 20, 32];

/// Slot size of class `sc` in bytes.
#[inline]
pub const fn class_size(sc: usize) -> usize {
    SIZE_CLASSES[sc] as usize * UNIT
}

/// The smallest class whose slot holds `n` bytes plus the in-band header.
///
/// Precondition: `n < MMAP_THRESHOLD`.
#[inline]
pub const fn size_to_class(n: usize) -> usize {
    // (n + IB - 1) >> 4 is one less than the units needed, so small requests index directly.
    let n = (n + IB - 1) >> 4;
    if n < 10 {
        return n;
    }
    let n = n + 1;
    let mut i = (28 - (n as u32).leading_zeros() as usize) * 4 + 8;
    if n > SIZE_CLASSES[i + 1] as usize {
        i += 2;
    }
    if n > SIZE_CLASSES[i] as usize {
        i += 1;
    }
    i
}

/// The class of a user's request of `n` bytes: the one of `n` plus [`CANARY_ROOM`].
/// Precondition: `n < MMAP_THRESHOLD`.
#[inline]
pub const fn request_class(n: usize) -> usize {
    size_to_class(n + CANARY_ROOM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MMAP_THRESHOLD;

    #[test]
    fn every_size_maps_to_the_smallest_fitting_class() {
        for n in 0..MMAP_THRESHOLD {
            let sc = size_to_class(n);
            assert!(sc < NUM_CLASSES, "n={n}");
            assert!(class_size(sc) >= n + IB, "n={n} sc={sc}");
            assert!(sc == 0 || class_size(sc - 1) < n + IB, "n={n} sc={sc}");
        }
        assert_eq!(size_to_class(MMAP_THRESHOLD - 1), NUM_CLASSES - 1);
    }

    #[test]
    fn table_is_increasing_and_counts_fit_sixteen_bit_offsets() {
        for w in SIZE_CLASSES.windows(2) {
            assert!(w[0] < w[1]);
        }
        for (sc, row) in SMALL_CNT.iter().enumerate() {
            for &cnt in row {
                // a small group (header + slots) stays within a 4 KiB page
                assert!(UNIT + cnt as usize * class_size(sc) <= 4096, "sc={sc}");
            }
        }
        for sc in 9..NUM_CLASSES {
            let cnt = MED_CNT[sc & 3] as usize;
            assert!(cnt <= 32);
        }
    }
}
