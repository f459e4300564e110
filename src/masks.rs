//! The lock-free part of the slot masks, on its own so that `loom` can model-check it
//! (`tests/loom.rs`) with the very code the heap runs: the free fast path that adds a bit
//! to `freed_mask` with no lock, racing the locked paths that move freed slots to
//! `avail_mask` ([`activate`]) or add a bit under the lock ([`free_locked`]).
//!
//! Protocol for the heap's groups (see `meta.rs` for the invariants): `avail_mask` is
//! written only under the heap lock; `freed_mask` gains bits with or without the lock and
//! loses them only under it. The fast path adds a bit only when the group already has a
//! freed slot (so it is queued) and will keep a slot in use (so it is not to be freed):
//! both decisions that need the lock are left to the locked path.
//!
//! For a group a thread owns: its owner takes and frees slots in `avail_mask` with plain
//! loads and stores ([`take_owned`], [`free_owned`]) and moves what others freed into it
//! with one atomic swap ([`collect`]); any other thread ORs its bit into `freed_mask`
//! ([`free_remote`]), never taking the lock.

use core::sync::atomic::Ordering::{self, AcqRel, Acquire, Relaxed, Release, SeqCst};

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
    /// Between a `SeqCst` access of this mask and a `SeqCst` access of another atomic
    /// (the exit protocol, [`free_remote`]): nothing for the real atomics, whose `SeqCst`
    /// accesses are ordered by C++'s single total order; loom models `SeqCst` accesses as
    /// acquire/release only, and its impl puts the `SeqCst` fence that loom does model.
    fn sc_order(&self) {}
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

/// A free into a group a thread owns, by any thread but its owner: `bit` joins `freed`
/// with no lock, whatever the group's state (its owner collects it with [`collect`]).
/// The group's free slots after it (`freed | avail`), or `None` if the slot was free
/// already (a double free: the caller crashes).
///
/// `avail` is the owner's and read here without synchronisation, before the OR: it gains
/// only bits of slots that are free (the owner's own frees, or collected ones), so until
/// this free's bit is in `freed` a slot in use is never in it, and seeing this slot's bit
/// there means the slot was free. (Read after the OR, it may hold the bit legitimately:
/// the owner may have collected it meanwhile.)
///
/// Sequentially consistent, against an owner that exits: it clears the group's owner,
/// then reads `freed` (both `SeqCst`), and this free ORs its bit, then reads the owner
/// (`SeqCst`): either the exiting owner sees the bit, or this free sees the group the
/// heap's and settles it under the lock after the owner is done (`State::disown`). On
/// x86 the OR costs what a release OR does.
#[inline(always)]
pub fn free_remote<M: Mask>(freed: &M, avail: &M, bit: u32) -> Option<u32> {
    let a = avail.load(Relaxed);
    // (also Release: our last writes to the slot happen before the owner reuses it)
    let f = freed.fetch_or(bit, SeqCst);
    if (f | a) & bit != 0 {
        return None;
    }
    Some(f | a | bit)
}

/// The owner of a group takes every slot other threads freed into its `avail`: the new
/// `avail`.
#[inline(always)]
pub fn collect<M: Mask>(freed: &M, avail: &M) -> u32 {
    let mut a = avail.load(Relaxed);
    // a plain load first: most groups a miss walks have no remote frees, and the swap is
    // a locked instruction (a free landing after the load is collected next time, as one
    // landing after the swap would be). Acquire on the swap: the freeing threads' last
    // writes to these slots happen before reuse.
    if freed.load(Relaxed) != 0 {
        a |= freed.fetch_and(0, Acquire);
    }
    avail.store(a, Relaxed);
    a
}

/// The owner frees slot `bit` of its group: the group's free slots after it, or `None`
/// if the slot was free already.
#[inline(always)]
pub fn free_owned<M: Mask>(freed: &M, avail: &M, bit: u32) -> Option<u32> {
    let a = avail.load(Relaxed);
    let f = freed.load(Relaxed);
    if (a | f) & bit != 0 {
        return None;
    }
    avail.store(a | bit, Relaxed);
    Some(a | f | bit)
}

/// The owner takes the lowest slot of `avail` (nonempty): the slot's bit.
#[inline(always)]
pub fn take_owned<M: Mask>(avail: &M, a: u32) -> u32 {
    avail.store(a & (a - 1), Relaxed);
    a & a.wrapping_neg()
}
