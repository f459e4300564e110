//! `harden-zero-size`: `malloc(0)` returns a distinct pointer into a region that is never
//! accessible, tracked in a map of live pointers.

use core::ptr::{NonNull, null_mut};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::check::check;
use crate::config::{UNIT, ZERO_SIZE};
use crate::heap::Heap;
use crate::lock::RawLock;
use crate::os::{Os, Prot};

/// Distinct pointers in the zero-size region (16 bytes apart: 64 KiB). Without the
/// option the region is never made, and the state keeps one word of it, not 512 bytes:
/// the state and the first thread's cache share one page ([`Region`]).
pub(crate) const ZERO_SLOTS: usize = if ZERO_SIZE { 4096 } else { 64 };

impl<O: Os, L: RawLock> Heap<O, L> {
    /// `harden-zero-size`: a distinct pointer into the never-accessible region, or `None`
    /// (then `malloc(0)` takes a normal slot) if all are live or the region can't be mapped.
    pub(crate) fn zero_size(&self) -> Option<NonNull<u8>> {
        let mut st = self.locked()?;
        let mut zr = self.zero_region.load(Relaxed);
        if zr.is_null() {
            // SAFETY: a fresh reservation, never made accessible.
            zr = unsafe { O::mmap(null_mut(), ZERO_SLOTS * UNIT, Prot::None, false)? }.as_ptr();
            self.zero_region.store(zr, Release);
        }
        let (w, word) = st
            .zero_live
            .iter()
            .enumerate()
            .find(|(_, w)| **w != u64::MAX)?;
        let b = (!*word).trailing_zeros() as usize;
        st.zero_live[w] |= 1 << b;
        NonNull::new(zr.wrapping_add((w * 64 + b) * UNIT))
    }

    /// If `p` points into the zero-size region: its index there, after checking it is a
    /// live one (anything else there is a double or invalid free: crash).
    pub(crate) fn zero_index(&self, p: *mut u8) -> Option<usize> {
        if !ZERO_SIZE {
            return None;
        }
        let zr = self.zero_region.load(Acquire);
        let off = p.addr().wrapping_sub(zr.addr());
        if zr.is_null() || off >= ZERO_SLOTS * UNIT {
            return None;
        }
        check!(off.is_multiple_of(UNIT));
        let i = off / UNIT;
        let Some(st) = self.locked() else {
            crate::check::crash()
        };
        check!(st.zero_live[i / 64] & (1 << (i % 64)) != 0);
        Some(i)
    }

    /// Free a zero-size pointer (`harden-zero-size`); `false` if `p` is not one.
    pub(crate) fn free_zero_size(&self, p: *mut u8) -> bool {
        let Some(i) = self.zero_index(p) else {
            return false;
        };
        if let Some(mut st) = self.locked() {
            st.zero_live[i / 64] &= !(1 << (i % 64));
        }
        true
    }
}
