//! Giving back the whole pages of free slots that stayed free for a sweep interval.

use core::sync::atomic::Ordering::Relaxed;

use crate::check::ok;
use crate::config::{IB, NUM_CLASSES};
use crate::heap::{Heap, State};
use crate::list::checked_links;
use crate::lock::RawLock;
use crate::meta::{Meta, low_mask, storage, stride};
use crate::os::Os;
use crate::policy::round_up;
use crate::size_class::class_size;

/// Frees of multi-page slots between two release sweeps.
pub(crate) const SWEEP_INTERVAL: u16 = 256;
/// Least time between two sweeps of a thread's groups, in ms (with decay): a page goes
/// back once it was free this long at least, and at most twice this plus the decay of
/// the frees between.
pub(crate) const SWEEP_MS: u32 = (crate::config::DECAY_MS / 4) as u32;

/// Groups one sweep looks at, at most, so its cost stays bounded in a large heap.
pub(crate) const SWEEP_GROUPS: usize = 128;

impl<O: Os, L: RawLock> Heap<O, L> {
    /// Count frees of multi-page slots and run a release sweep every `SWEEP_INTERVAL`.
    pub(crate) fn after_free(&self, medium: bool) {
        if medium
            && self.medium_frees.fetch_add(1, Relaxed) % SWEEP_INTERVAL as u32
                == SWEEP_INTERVAL as u32 - 1
            && let Some(mut st) = self.locked()
        {
            // SAFETY: the lock is held.
            unsafe { st.sweep::<O>() };
        }
    }
}

impl State {
    /// Give back the whole pages of free slots that stayed free for a full sweep
    /// interval. mallocng 1.2.1–1.2.3 released pages on *every* free of a multi-page slot
    /// and a churn of medium sizes became a storm of `madvise` calls (1.2.4 turned it
    /// off, never releasing). Here a slot is released only if it was free at the previous
    /// sweep and still is: slots reused within an interval (every churn loop) cost
    /// nothing, and adjacent cold slots are released in one call.
    ///
    /// DONTNEED rather than FREE, on purpose: only cold memory gets here, so the cheap
    /// reuse MADV_FREE offers hardly matters, while MADV_FREE pages stay in RSS (and in a
    /// container's memory charge) until the kernel feels pressure, which is what a user
    /// watching RSS after a large free would see as a leak.
    ///
    /// # Safety
    /// The lock is held.
    pub(crate) unsafe fn sweep<O: Os>(&mut self) {
        self.stats.sweeps += 1;
        let mut budget = SWEEP_GROUPS;
        for _ in 0..NUM_CLASSES {
            let sc = self.sweep_class;
            self.sweep_class = (sc + 1) % NUM_CLASSES;
            let head = self.active[sc];
            if head.is_null() || class_size(sc) < self.pagesize + IB {
                continue;
            }
            let mut m = head;
            loop {
                // SAFETY: listed records are live; the lock is held.
                unsafe {
                    self.release_cold::<O>(m);
                    m = ok(checked_links(m)).1;
                }
                budget -= 1;
                if m == head || budget == 0 {
                    break;
                }
            }
            if budget == 0 {
                break;
            }
        }
    }

    /// # Safety
    /// `m` is live; the lock is held.
    pub(crate) unsafe fn release_cold<O: Os>(&mut self, m: *mut Meta) {
        // SAFETY: freed slots cannot be handed out without the lock, which we hold.
        unsafe {
            let freed = (*m).freed_mask.load(Relaxed);
            self.stats.releases += release_cold::<O>(m, freed, self.pagesize);
        }
    }
}

/// Release the whole pages of the slots of `m` in `free` that were free at the previous
/// sweep of `m` too (`swept_mask`) and are not released yet (`clean_mask`), and remember
/// `free` for the next sweep; the `madvise` calls made. Only whole pages strictly inside
/// slots go, never a header.
///
/// # Safety
/// `m` is live and no slot in `free` can be handed out meanwhile: the lock is held (a
/// heap group's freed slots), or the caller owns `m` (its `avail_mask`).
pub(crate) unsafe fn release_cold<O: Os>(m: *mut Meta, free: u32, ps: usize) -> u64 {
    // SAFETY: the caller's contract.
    unsafe {
        if (*m).last_idx == 0 {
            return 0;
        }
        // slots never activated are untouched pages: nothing to give back
        let touched = low_mask((*(*m).mem).active_idx as usize);
        let cold = free & (*m).swept_mask & !(*m).clean_mask & touched;
        (*m).swept_mask = free;
        if cold == 0 {
            return 0;
        }
        let st = stride(m);
        let base = storage((*m).mem);
        let mut calls = 0;
        let mut rest = cold;
        while rest != 0 {
            let i = rest.trailing_zeros() as usize;
            let run = (rest >> i).trailing_ones() as usize;
            let lo = round_up(base.addr() + i * st, ps);
            let hi = (base.addr() + (i + run) * st - IB) & !(ps - 1);
            if hi > lo {
                O::release(base.with_addr(lo), hi - lo);
                calls += 1;
            }
            rest &= !(low_mask(i + run - 1));
        }
        (*m).clean_mask |= cold;
        calls
    }
}
