//! Model check (loom) of the lock-free free path racing the locked paths, with the heap's
//! own protocol code (`src/masks.rs`). Every interleaving (and every weak-memory outcome
//! loom models) of: two threads freeing slots of one group (the fast path, or the locked
//! path when it says so), and a thread taking slots under the lock and writing them. Each
//! slot's memory is a loom cell, so a reuse not ordered after the free's last write is a
//! reported data race. Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom`
//! (`ci/loom.sh`).
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU32;
use loom::sync::{Arc, Mutex};
use ngmalloc::masks::{FastFree, Mask, activate, free_fast, free_locked, free_slots};
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
