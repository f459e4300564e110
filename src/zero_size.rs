//! `malloc(0)`: a distinct pointer into a region that is never accessible, so that a read
//! or a write through it faults. (mallocng hands out a slot of the smallest class, whose
//! bytes a program can read and write unnoticed: its slack, or its neighbour's header.)
//!
//! ```text
//! zero region (one mapping, made by the first malloc(0))
//! +0                     +page - 4 KiB          +page
//! [ unused (RW) ........ | live bitmap, 4 KiB ] [ ZERO_SLOTS x 16 bytes, PROT_NONE ]
//!                                                ^ `Heap::zero_region`: pointer i is
//!                                                  region + 16 i, live iff bit i is set
//! ```
//!
//! Lock-free: a `malloc(0)` claims a clear bit with `fetch_or`, a `free` clears it with
//! `fetch_and`, which also tells a second free (the bit was clear: crash). The bits carry
//! no memory, only identity, so relaxed operations suffice; `tests/loom.rs` checks that
//! racing claims never hand out one pointer twice and that a double free is seen.
//! The heap lock is taken once, to make the region.
//!
//! The free fast path pays nothing for this: the region is not heap memory in the page
//! map, so the decoder rejects its pointers as foreign, and only then does the free look
//! here before it crashes. When all [`ZERO_SLOTS`] pointers are live, or the region cannot
//! be mapped, `malloc(0)` takes a normal slot, as mallocng does.

use core::ptr::{NonNull, null_mut};
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::{self, Acquire, Relaxed, Release};

use crate::check::check;
use crate::config::{AREA, UNIT};
use crate::heap::Heap;
use crate::lock::RawLock;
use crate::os::{Os, Prot};

/// Distinct zero-size pointers: one bit each in a 4 KiB bitmap (512 KiB of address
/// space, no memory).
pub const ZERO_SLOTS: usize = AREA * 8;
/// Words of the bitmap.
const WORDS: usize = ZERO_SLOTS / 64;

/// The atomic operations the bitmap protocol uses, for the real `AtomicU64` and loom's.
pub trait Word {
    /// Atomic load.
    fn load(&self, o: Ordering) -> u64;
    /// Atomic OR; the previous value.
    fn fetch_or(&self, v: u64, o: Ordering) -> u64;
    /// Atomic AND; the previous value.
    fn fetch_and(&self, v: u64, o: Ordering) -> u64;
}

impl Word for AtomicU64 {
    #[inline(always)]
    fn load(&self, o: Ordering) -> u64 {
        AtomicU64::load(self, o)
    }
    #[inline(always)]
    fn fetch_or(&self, v: u64, o: Ordering) -> u64 {
        AtomicU64::fetch_or(self, v, o)
    }
    #[inline(always)]
    fn fetch_and(&self, v: u64, o: Ordering) -> u64 {
        AtomicU64::fetch_and(self, v, o)
    }
}

/// Claim a clear bit of `words`: its index, set now and by no other claim, or `None` if
/// every bit is set.
pub fn claim<W: Word>(words: &[W]) -> Option<usize> {
    for (w, word) in words.iter().enumerate() {
        let mut cur = word.load(Relaxed);
        while cur != u64::MAX {
            let bit = 1u64 << (!cur).trailing_zeros();
            let prev = word.fetch_or(bit, Relaxed);
            if prev & bit == 0 {
                return Some(w * 64 + bit.trailing_zeros() as usize);
            }
            // another claim took it first: try the next clear bit of what it left
            cur = prev | bit;
        }
    }
    None
}

/// Clear bit `i` of `words`; whether it was set (a clear bit is a second free).
pub fn release<W: Word>(words: &[W], i: usize) -> bool {
    let bit = 1u64 << (i % 64);
    words[i / 64].fetch_and(!bit, Relaxed) & bit != 0
}

/// Whether bit `i` of `words` is set.
pub fn is_live<W: Word>(words: &[W], i: usize) -> bool {
    words[i / 64].load(Relaxed) & (1 << (i % 64)) != 0
}

/// The bitmap of the zero region whose pointers start at `slots`.
///
/// # Safety
/// `slots` is a zero region's (`Heap::zero_region`), which is never unmapped.
unsafe fn bitmap<'a>(slots: *mut u8) -> &'a [AtomicU64] {
    // SAFETY: the caller's contract: the 4 KiB before the pointers are the bitmap, mapped
    // read-write for the heap's life and only ever accessed atomically.
    unsafe { core::slice::from_raw_parts(slots.wrapping_sub(AREA).cast::<AtomicU64>(), WORDS) }
}

const _: () = assert!(WORDS * 8 == AREA);

impl<O: Os, L: RawLock> Heap<O, L> {
    /// A distinct pointer into the never-accessible region, or `None` (then `malloc(0)`
    /// takes a normal slot) if all are live or the region can't be mapped.
    pub(crate) fn zero_size(&self) -> Option<NonNull<u8>> {
        let slots = match self.zero_region.load(Acquire) {
            r if r.is_null() => self.make_zero_region()?,
            r => r,
        };
        // SAFETY: a published zero region.
        let i = claim(unsafe { bitmap(slots) })?;
        NonNull::new(slots.wrapping_add(i * UNIT))
    }

    /// Map the zero region (once, under the lock) and publish it.
    #[cold]
    fn make_zero_region(&self) -> Option<*mut u8> {
        let st = self.locked()?;
        let r = self.zero_region.load(Acquire);
        if !r.is_null() {
            return Some(r);
        }
        let ps = st.pagesize;
        let len = ps + ZERO_SLOTS * UNIT;
        // SAFETY: a fresh reservation; only its first page is made accessible, for the
        // bitmap (its last 4 KiB), and nothing else is ever made accessible.
        unsafe {
            let m = O::mmap(null_mut(), len, Prot::None, false)?.as_ptr();
            if !O::mprotect(m, ps, Prot::ReadWrite) {
                O::munmap(m, len);
                return None;
            }
            let slots = m.wrapping_add(ps);
            self.zero_region.store(slots, Release);
            Some(slots)
        }
    }

    /// If `p` points into the zero region: the region's bitmap and the index of `p` (a
    /// pointer there that is not one of its 16-byte-aligned pointers crashes).
    fn zero_bit(&self, p: *mut u8) -> Option<(&[AtomicU64], usize)> {
        let slots = self.zero_region.load(Acquire);
        let off = p.addr().wrapping_sub(slots.addr());
        if slots.is_null() || off >= ZERO_SLOTS * UNIT {
            return None;
        }
        check!(off.is_multiple_of(UNIT));
        // SAFETY: a published zero region.
        Some((unsafe { bitmap(slots) }, off / UNIT))
    }

    /// Whether `p` is a live zero-size pointer; a dead one crashes (a use after free).
    pub(crate) fn is_zero_size(&self, p: *mut u8) -> bool {
        let Some((words, i)) = self.zero_bit(p) else {
            return false;
        };
        check!(is_live(words, i));
        true
    }

    /// Free a zero-size pointer; `false` if `p` is not one. A second free crashes.
    pub(crate) fn free_zero_size(&self, p: *mut u8) -> bool {
        let Some((words, i)) = self.zero_bit(p) else {
            return false;
        };
        check!(release(words, i));
        true
    }

    /// Live zero-size pointers (the walker's count).
    pub(crate) fn zero_size_live(&self) -> usize {
        let slots = self.zero_region.load(Acquire);
        if slots.is_null() {
            return 0;
        }
        // SAFETY: a published zero region.
        let words = unsafe { bitmap(slots) };
        words
            .iter()
            .map(|w| w.load(Relaxed).count_ones() as usize)
            .sum()
    }
}
