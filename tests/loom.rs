//! Model check (loom) of the lock-free free path racing the locked paths, with the heap's
//! own protocol code (`src/masks.rs`). Every interleaving (and every weak-memory outcome
//! loom models) of: two threads freeing slots of one group (the fast path, or the locked
//! path when it says so), and a thread taking slots under the lock and writing them. Each
//! slot's memory is a loom cell, so a reuse not ordered after the free's last write is a
//! reported data race. Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom`
//! (`ci/loom.sh`).
//!
//! And the protocol of groups a thread owns (`src/tcache.rs`): the owner taking, freeing
//! and collecting with no lock against other threads' frees, and an owner that exits
//! against the free that empties its group.
//!
//! And the bitmap of `malloc(0)`'s pointers (`src/zero_size.rs`): racing claims and
//! releases never hand one pointer out twice, and a second release is seen.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU8;
use loom::sync::atomic::AtomicU32;
use loom::sync::atomic::AtomicU64;
use loom::sync::{Arc, Mutex};
use ngmalloc_core::masks::{
    FastFree, Mask, activate, collect, free_fast, free_locked, free_owned, free_remote, free_slots,
    take_owned,
};
use std::sync::atomic::Ordering;

/// loom's atomics under the protocol's trait (a newtype: both are foreign here).
struct L(AtomicU32);

impl Mask for L {
    fn load(&self, o: Ordering) -> u32 {
        self.0.load(o)
    }
    fn store(&self, v: u32, o: Ordering) {
        self.0.store(v, o)
    }
    fn cas(&self, cur: u32, new: u32, ok: Ordering, fail: Ordering) -> Result<u32, u32> {
        self.0.compare_exchange(cur, new, ok, fail)
    }
    fn fetch_and(&self, v: u32, o: Ordering) -> u32 {
        self.0.fetch_and(v, o)
    }
    fn fetch_or(&self, v: u32, o: Ordering) -> u32 {
        self.0.fetch_or(v, o)
    }
    fn sc_order(&self) {
        loom::sync::atomic::fence(Ordering::SeqCst);
    }
}

const ALL: u32 = 0b111;

/// A group of three slots; what the heap lock guards besides `avail`.
struct Group {
    freed: L,
    avail: L,
    /// The heap lock, and under it: whether the group was torn down.
    lock: Mutex<bool>,
    /// Each slot's memory.
    data: [UnsafeCell<u32>; 3],
}

impl Group {
    /// `free` of slot `i` by its owner, which wrote to it last.
    fn free(&self, i: usize) {
        self.data[i].with_mut(|d| unsafe { *d = 100 + i as u32 });
        let bit = 1 << i;
        match free_fast(&self.freed, &self.avail, bit, ALL) {
            FastFree::Done => {}
            FastFree::AlreadyFree => panic!("slot {i} already free"),
            FastFree::NeedsLock => {
                let mut gone = self.lock.lock().unwrap();
                assert!(!*gone, "free into a torn-down group");
                // nontrivial_free: the last slot in use frees the group
                let mask = free_slots(&self.freed, &self.avail);
                assert_eq!(mask & bit, 0, "double free under the lock");
                if mask + bit == ALL {
                    // the memory goes back (to be reused by anyone): every slot written
                    for d in &self.data {
                        d.with_mut(|d| unsafe { *d = 0 });
                    }
                    *gone = true;
                } else {
                    free_locked(&self.freed, bit);
                }
            }
        }
    }

    /// `malloc` under the lock: a slot from `avail`, activating freed ones if empty; the
    /// new owner then writes the slot.
    fn take(&self) -> Option<usize> {
        let i = {
            let gone = self.lock.lock().unwrap();
            if *gone {
                return None;
            }
            let mut mask = self.avail.load(Ordering::Relaxed);
            if mask == 0 {
                mask = activate(&self.freed, &self.avail, ALL);
            }
            if mask == 0 {
                return None;
            }
            let first = mask & mask.wrapping_neg();
            self.avail.store(mask - first, Ordering::Relaxed);
            first.trailing_zeros() as usize
        };
        self.data[i].with_mut(|d| unsafe { *d = 7 });
        Some(i)
    }
}

/// Every interleaving with up to 3 preemptions (loom's advice: bugs need few, and the
/// unbounded search of three threads with a lock and a CAS loop takes hours).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// Slots 0 and 1 in use (by two threads), slot 2 already freed: the fast path is open.
fn group() -> Arc<Group> {
    Arc::new(Group {
        freed: L(AtomicU32::new(0b100)),
        avail: L(AtomicU32::new(0)),
        lock: Mutex::new(false),
        data: [UnsafeCell::new(0), UnsafeCell::new(0), UnsafeCell::new(0)],
    })
}

#[test]
fn the_free_fast_path_races_the_locked_paths() {
    model(|| {
        let g = group();
        let frees: Vec<_> = (0..2)
            .map(|i| {
                let g = g.clone();
                loom::thread::spawn(move || g.free(i))
            })
            .collect();
        let mut taken = 0u32;
        for _ in 0..2 {
            if let Some(i) = g.take() {
                assert_eq!(taken & 1 << i, 0, "slot {i} handed out twice");
                taken |= 1 << i;
            }
        }
        for t in frees {
            t.join().unwrap();
        }
        // every slot is exactly one of: freed, available, taken; or the group is gone
        let gone = *g.lock.lock().unwrap();
        let (f, a) = (
            g.freed.load(Ordering::Relaxed),
            g.avail.load(Ordering::Relaxed),
        );
        assert_eq!(f & a, 0, "a slot both freed and available");
        assert_eq!(f & taken, 0);
        assert_eq!(a & taken, 0);
        if gone {
            assert_eq!(taken, 0, "a group torn down with a slot in use");
        } else {
            assert_eq!(
                f | a | taken,
                ALL,
                "a slot lost: freed {f:b} avail {a:b} taken {taken:b}"
            );
        }
    });
}

#[test]
fn the_last_free_tears_the_group_down_once() {
    model(|| {
        // slots 0 and 1 in use, slot 2 freed: whichever free comes last takes the lock and
        // tears down the group; the other must have gone through freed_mask
        let g = group();
        let g2 = g.clone();
        let t = loom::thread::spawn(move || g2.free(1));
        g.free(0);
        t.join().unwrap();
        assert!(
            *g.lock.lock().unwrap(),
            "both slots free, the group not torn down"
        );
    });
}

/// Who a group is for (`Meta::owner`): its live owner, its owner's abandoned cache
/// (marked), or the heap (null).
const LIVE: u8 = 0;
const MARKED: u8 = 1;
const HEAP: u8 = 2;

/// A group of three slots owned by one thread: the owner's `take` and `free`, another
/// thread's `free_remote`, as `src/tcache.rs` runs them, and what happens at the owner's
/// exit: its cache abandoned (the group marked), and given to the heap (`State::disown`)
/// at once or once the abandoned cache expires.
struct Owned {
    freed: L,
    avail: L,
    owner: AtomicU8,
    /// The heap lock, and under it the group's place once it is the heap's.
    heap: Mutex<Place>,
    data: [UnsafeCell<u32>; 3],
}

/// Where the heap put the group: how many times it was retired, whether it is listed.
#[derive(Default)]
struct Place {
    retired: u32,
    listed: bool,
}

impl Owned {
    /// Slots 0 and 1 in use, slot 2 available to the owner.
    fn new() -> Arc<Owned> {
        Arc::new(Owned {
            freed: L(AtomicU32::new(0)),
            avail: L(AtomicU32::new(0b100)),
            owner: AtomicU8::new(LIVE),
            heap: Mutex::new(Place::default()),
            data: [UnsafeCell::new(0), UnsafeCell::new(0), UnsafeCell::new(0)],
        })
    }

    /// The owner's malloc: the active group's lowest slot, collecting when it has none.
    fn take(&self) -> Option<usize> {
        let mut a = self.avail.load(Ordering::Relaxed);
        if a == 0 {
            a = collect(&self.freed, &self.avail);
        }
        if a == 0 {
            return None;
        }
        let i = take_owned(&self.avail, a).trailing_zeros() as usize;
        self.data[i].with_mut(|d| unsafe { *d = 7 });
        Some(i)
    }

    /// The owner's free of slot `i`, which it wrote last.
    fn free_owned(&self, i: usize) {
        self.data[i].with_mut(|d| unsafe { *d = 100 + i as u32 });
        assert!(
            free_owned(&self.freed, &self.avail, 1 << i).is_some(),
            "slot {i} already free (owner)"
        );
    }

    /// Another thread's free of slot `i`, then what `Heap::free_remote` does if the
    /// owner gave the group to the heap meanwhile (settle it under the lock), or if the
    /// owner's cache is abandoned and the group empty (`retire_orphan`: retire it,
    /// rechecked under the lock).
    fn free_remote(&self, i: usize) {
        self.data[i].with_mut(|d| unsafe { *d = 200 + i as u32 });
        let free = free_remote(&self.freed, &self.avail, 1 << i);
        let free = free.unwrap_or_else(|| panic!("slot {i} already free (remote)"));
        self.freed.sc_order();
        match self.owner.load(Ordering::SeqCst) {
            HEAP => {
                let mut p = self.heap.lock().unwrap();
                self.settle(&mut p);
            }
            MARKED if free | self.avail.load(Ordering::Relaxed) == ALL => {
                let mut p = self.heap.lock().unwrap();
                if self.owner.load(Ordering::Relaxed) == MARKED
                    && p.retired == 0
                    && collect(&self.freed, &self.avail) == ALL
                {
                    self.reuse();
                    p.retired += 1;
                }
            }
            _ => {}
        }
    }

    /// The owner's exit with its cache abandoned (`cache_destroy`): marked, then the
    /// group retired if it is empty.
    fn abandon(&self) {
        let mut p = self.heap.lock().unwrap();
        self.owner.store(MARKED, Ordering::SeqCst);
        self.freed.sc_order();
        let free = self.avail.load(Ordering::Relaxed) | self.freed.load(Ordering::SeqCst);
        if free == ALL && p.retired == 0 {
            self.reuse();
            p.retired += 1;
        }
    }

    /// The group given to the heap (`State::disown`), by its exiting owner or when its
    /// abandoned cache expires: unowned, then its free slots the heap's (`freed`), then
    /// settled.
    fn exit(&self) {
        let mut p = self.heap.lock().unwrap();
        if p.retired != 0 {
            // (retired while abandoned: off every list, nothing to give)
            return;
        }
        self.owner.store(HEAP, Ordering::SeqCst);
        self.freed.sc_order();
        let a = self.avail.load(Ordering::Relaxed);
        self.freed.fetch_or(a, Ordering::SeqCst);
        self.avail.store(0, Ordering::Relaxed);
        self.settle(&mut p);
    }

    /// `State::settle`: retired if no slot is in use, listed if one is free.
    fn settle(&self, p: &mut Place) {
        if p.retired != 0 {
            return;
        }
        let free = self.freed.load(Ordering::Acquire) | self.avail.load(Ordering::Relaxed);
        if free == ALL {
            self.reuse();
            p.retired += 1;
            p.listed = false;
        } else if free != 0 {
            p.listed = true;
        }
    }

    /// A retired group's memory goes to anyone: every slot written.
    fn reuse(&self) {
        for d in &self.data {
            d.with_mut(|d| unsafe { *d = 0 });
        }
    }
}

#[test]
fn an_owner_collects_what_another_thread_frees() {
    model(|| {
        let g = Owned::new();
        let g2 = g.clone();
        let t = loom::thread::spawn(move || g2.free_remote(0));
        g.free_owned(1);
        let mut taken = 0u32;
        for _ in 0..3 {
            if let Some(i) = g.take() {
                assert_eq!(taken & 1 << i, 0, "slot {i} handed out twice");
                taken |= 1 << i;
            }
        }
        t.join().unwrap();
        let (f, a) = (
            g.freed.load(Ordering::Relaxed),
            g.avail.load(Ordering::Relaxed),
        );
        assert_eq!(f & a, 0, "a slot both freed and available");
        assert_eq!((f | a) & taken, 0, "a slot taken and free");
        assert_eq!(f | a | taken, ALL, "a slot lost: {f:b} {a:b} {taken:b}");
    });
}

#[test]
fn a_group_given_back_meets_a_remote_free() {
    model(|| {
        // slot 1 freed by its owner before it exits, slot 0 by another thread: whichever
        // order, the emptied group is retired, once
        let g = Owned::new();
        let g2 = g.clone();
        let t = loom::thread::spawn(move || g2.free_remote(0));
        g.free_owned(1);
        g.exit();
        t.join().unwrap();
        assert_eq!(
            g.heap.lock().unwrap().retired,
            1,
            "the empty group not retired"
        );
    });
}

#[test]
fn an_exiting_owner_or_the_last_free_retires_the_group() {
    model(|| {
        // as above, the cache abandoned instead: whichever order, the emptied group is
        // retired, once
        let g = Owned::new();
        let g2 = g.clone();
        let t = loom::thread::spawn(move || g2.free_remote(0));
        g.free_owned(1);
        g.abandon();
        t.join().unwrap();
        assert_eq!(
            g.heap.lock().unwrap().retired,
            1,
            "the empty group not retired"
        );
    });
}

#[test]
fn an_abandoned_group_given_to_the_heap_meets_a_remote_free() {
    model(|| {
        // abandoned with slot 0 in use, then given to the heap as the cache expires,
        // while another thread frees slot 0: retired once, by whichever sees it empty
        let g = Owned::new();
        let g2 = g.clone();
        let t = loom::thread::spawn(move || g2.free_remote(0));
        g.free_owned(1);
        g.abandon();
        g.exit();
        t.join().unwrap();
        assert_eq!(
            g.heap.lock().unwrap().retired,
            1,
            "the empty group not retired"
        );
    });
}

#[test]
fn a_group_given_back_with_a_slot_in_use_is_listed() {
    model(|| {
        // slot 1 still in use at the exit, slot 0 freed by another thread meanwhile: the
        // group is the heap's with free slots, so it is on its list (else no free would
        // ever list it: mallocng lists a group on its first free only)
        let g = Owned::new();
        let g2 = g.clone();
        let t = loom::thread::spawn(move || g2.free_remote(0));
        g.exit();
        t.join().unwrap();
        let p = g.heap.lock().unwrap();
        assert_eq!(
            (p.retired, p.listed),
            (0, true),
            "not where the heap wants it"
        );
    });
}

/// loom's 64-bit atomics under the zero-size bitmap's trait.
struct W(AtomicU64);

impl ngmalloc_core::zero_size::Word for W {
    fn load(&self, o: Ordering) -> u64 {
        self.0.load(o)
    }
    fn fetch_or(&self, v: u64, o: Ordering) -> u64 {
        self.0.fetch_or(v, o)
    }
    fn fetch_and(&self, v: u64, o: Ordering) -> u64 {
        self.0.fetch_and(v, o)
    }
}

#[test]
fn racing_zero_size_claims_and_frees_never_share_a_pointer() {
    use ngmalloc_core::zero_size::{claim, is_live, release};
    model(|| {
        // word 0 has one clear bit (63) and bit 0 live, held by the freeing thread;
        // word 1 is empty
        let words = Arc::new([W(AtomicU64::new(!(1 << 63))), W(AtomicU64::new(0))]);
        let w = words.clone();
        let claimer = loom::thread::spawn(move || claim(&w[..]).unwrap());
        let w = words.clone();
        let freer = loom::thread::spawn(move || {
            assert!(release(&w[..], 0));
            claim(&w[..]).unwrap()
        });
        let a = claimer.join().unwrap();
        let b = freer.join().unwrap();
        assert_ne!(a, b, "one pointer handed out twice");
        for i in [a, b] {
            assert!(is_live(&words[..], i));
            assert!(release(&words[..], i));
            assert!(!release(&words[..], i), "a second free not seen");
        }
    });
}
