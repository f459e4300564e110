//! The lock-free part of the slot masks, on its own so that `loom` can model-check it
//! (`tests/loom.rs`) with the very code the heap runs: the free fast path that adds a bit
//! to `freed_mask` with no lock, racing the locked paths that move freed slots to
//! `avail_mask` ([`activate`]) or add a bit under the lock ([`free_locked`]).
//!
//! Protocol (see `meta.rs` for the invariants): `avail_mask` is written only under the
//! heap lock; `freed_mask` gains bits with or without the lock and loses them only under
//! it. The fast path adds a bit only when the group already has a freed slot (so it is
//! queued) and will keep a slot in use (so it is not to be freed): both decisions that
//! need the lock are left to the locked path.

use core::sync::atomic::Ordering::{self, AcqRel, Acquire, Relaxed, Release};

/// The atomic operations the protocol uses, for the real `AtomicU32` and loom's.
pub trait Mask {
    /// Atomic load.
    fn load(&self, o: Ordering) -> u32;
    /// Atomic store.
    fn store(&self, v: u32, o: Ordering);
    /// Strong compare-and-exchange.
    fn cas(&self, cur: u32, new: u32, ok: Ordering, fail: Ordering) -> Result<u32, u32>;
    /// Atomic AND; the previous value.
    fn fetch_and(&self, v: u32, o: Ordering) -> u32;
    /// Atomic OR; the previous value.
    fn fetch_or(&self, v: u32, o: Ordering) -> u32;
}

impl Mask for core::sync::atomic::AtomicU32 {
    #[inline(always)]
    fn load(&self, o: Ordering) -> u32 {
        self.load(o)
    }
    #[inline(always)]
    fn store(&self, v: u32, o: Ordering) {
        self.store(v, o)
    }
    #[inline(always)]
    fn cas(&self, cur: u32, new: u32, ok: Ordering, fail: Ordering) -> Result<u32, u32> {
        self.compare_exchange(cur, new, ok, fail)
    }
    #[inline(always)]
    fn fetch_and(&self, v: u32, o: Ordering) -> u32 {
        self.fetch_and(v, o)
    }
    #[inline(always)]
    fn fetch_or(&self, v: u32, o: Ordering) -> u32 {
        self.fetch_or(v, o)
    }
}

/// What the fast path did with a freed slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastFree {
    /// The bit is in `freed_mask`: done, no lock taken.
    Done,
    /// The first freed slot or the last in use: the caller takes the lock.
    NeedsLock,
    /// The bit was already free: a double free (the caller crashes).
    AlreadyFree,
}

/// The free fast path: add `bit` to `freed` unless that needs the lock. `all` is the
/// group's full mask.
#[inline(always)]
pub fn free_fast<M: Mask>(freed: &M, avail: &M, bit: u32, all: u32) -> FastFree {
    loop {
        let f = freed.load(Relaxed);
        let a = avail.load(Relaxed);
        let mask = f | a;
        if mask & bit != 0 {
            return FastFree::AlreadyFree;
        }
        if f == 0 || mask + bit == all {
            return FastFree::NeedsLock;
        }
        // Release: our last writes to the slot happen before its reuse.
        if freed.cas(f, f + bit, Release, Relaxed).is_ok() {
            return FastFree::Done;
        }
    }
}

/// The locked free's view of the slots not in use: `freed | avail`, read under the lock.
/// Acquire: if the slot being freed is the last in use, the group is torn down next, and
/// every other slot's free (fast-path ones included, which released their last reads of
/// the group's record and memory) must happen before that.
#[inline(always)]
pub fn free_slots<M: Mask>(freed: &M, avail: &M) -> u32 {
    freed.load(Acquire) | avail.load(Relaxed)
}

/// The locked free's last step: `bit` joins `freed` (fast-path frees may add theirs
/// meanwhile, hence the atomic OR).
#[inline(always)]
pub fn free_locked<M: Mask>(freed: &M, bit: u32) {
    freed.fetch_or(bit, Release);
}

/// mallocng `activate_group`'s mask step, under the lock with `avail` empty: move the
/// freed slots inside `act` to `avail` and return them.
#[inline(always)]
pub fn activate<M: Mask>(freed: &M, avail: &M, act: u32) -> u32 {
    // AcqRel: acquire the freeing threads' last writes to these slots before reuse.
    let mask = freed.fetch_and(!act, AcqRel) & act;
    avail.store(mask, Relaxed);
    mask
}
