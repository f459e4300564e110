//! Shadow-model property test: random sequences of malloc/calloc/realloc/aligned_alloc/free
//! with sizes across every class and beyond the mmap threshold, checked against a model
//! (a map of live ranges) and by the whole-heap walker after every step.
// Tests call the allocator's unsafe API on purpose, with pointers the test itself just got
// from the heap (or corrupts on purpose): the contract of each call is what is under test.
#![allow(clippy::undocumented_unsafe_blocks)]

mod common;

use std::collections::BTreeMap;

use common::{Rng, TestHeap, heap};
use ngmalloc_core::config::{IB, MMAP_THRESHOLD, NUM_CLASSES};
use ngmalloc_core::size_class::class_size;
use ngmalloc_core::tcache::ThreadCache;

#[derive(Clone, Copy, Debug)]
struct Block {
    len: usize,
    tag: u8,
}

fn pattern(tag: u8, i: usize) -> u8 {
    tag ^ (i as u8).wrapping_mul(31) ^ (i >> 8) as u8
}

unsafe fn fill(p: *mut u8, len: usize, tag: u8) {
    for i in 0..len {
        unsafe { *p.add(i) = pattern(tag, i) };
    }
}

unsafe fn intact(p: *const u8, len: usize, tag: u8) -> bool {
    (0..len).all(|i| unsafe { *p.add(i) } == pattern(tag, i))
}

fn pick_size(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=49 => r.below(256) as usize,
        50..=74 => r.below(4096) as usize,
        75..=84 => {
            // right at a class boundary
            let sc = r.below(NUM_CLASSES as u64) as usize;
            (class_size(sc) - IB + r.below(3) as usize).saturating_sub(1)
        }
        85..=96 => 4096 + r.below(MMAP_THRESHOLD as u64) as usize,
        _ => MMAP_THRESHOLD - 8 + r.below(1 << 20) as usize,
    }
}

fn pick_align(r: &mut Rng) -> usize {
    if r.chance(5) {
        1 << (13 + r.below(9)) // up to 2 MiB
    } else {
        1 << r.below(13)
    }
}

struct Model {
    h: Box<TestHeap>,
    live: BTreeMap<usize, Block>,
    keys: Vec<usize>,
    bytes: usize,
    tag: u8,
    /// Thread caches in use (empty: every call takes the locked paths). Several caches
    /// used from one test thread stand for several threads freeing each other's blocks.
    caches: Vec<*mut ThreadCache>,
}

impl Model {
    /// The cache the next call goes through: none, or one of `caches`.
    fn pick_cache(&self, r: &mut Rng) -> Option<*mut ThreadCache> {
        if self.caches.is_empty() {
            return None;
        }
        let k = r.below(self.caches.len() as u64 + 1) as usize;
        self.caches.get(k).copied()
    }

    fn malloc(&self, r: &mut Rng, n: usize) -> *mut u8 {
        match self.pick_cache(r) {
            Some(tc) => self.h.malloc_cached(unsafe { &mut *tc }, n),
            None => self.h.malloc(n),
        }
        .expect("malloc")
        .as_ptr()
    }

    fn free(&self, r: &mut Rng, a: usize) {
        let p = std::ptr::with_exposed_provenance_mut(a);
        match self.pick_cache(r) {
            Some(tc) => unsafe { self.h.free_cached(&mut *tc, p) },
            None => unsafe { self.h.free(p) },
        }
    }

    fn add(&mut self, p: *mut u8, len: usize, align: usize, zeroed: bool) {
        let a = p.addr();
        assert_eq!(a % align.max(16), 0, "alignment {align} of {a:#x}");
        let end = a + len.max(1);
        if let Some((&q, b)) = self.live.range(..a).next_back() {
            assert!(q + b.len.max(1) <= a, "overlaps the block below");
        }
        if let Some((&q, _)) = self.live.range(a..).next() {
            assert!(q >= end, "overlaps the block above");
        }
        if zeroed {
            assert!(
                (0..len).all(|i| unsafe { *p.add(i) } == 0),
                "calloc not zero"
            );
        }
        assert_eq!(unsafe { self.h.usable_size(p) }, len, "usable size");
        self.tag = self.tag.wrapping_add(1);
        unsafe { fill(p, len, self.tag) };
        self.live.insert(a, Block { len, tag: self.tag });
        self.keys.push(a);
        self.bytes += len;
    }

    fn take(&mut self, r: &mut Rng) -> Option<(usize, Block)> {
        if self.keys.is_empty() {
            return None;
        }
        let i = r.below(self.keys.len() as u64) as usize;
        let a = self.keys.swap_remove(i);
        let b = self.live.remove(&a).unwrap();
        self.bytes -= b.len;
        assert!(
            unsafe { intact(std::ptr::with_exposed_provenance(a), b.len, b.tag) },
            "contents of {a:#x} ({b:?}) changed"
        );
        Some((a, b))
    }

    fn step(&mut self, r: &mut Rng) {
        let h = &*self.h as *const TestHeap;
        let h = unsafe { &*h };
        match r.below(100) {
            0..=34 => {
                let n = pick_size(r);
                let p = self.malloc(r, n);
                self.add(p, n, 1, false);
            }
            35..=44 => {
                let n = pick_size(r);
                let p = h.calloc(n).expect("calloc");
                self.add(p.as_ptr(), n, 1, true);
            }
            45..=54 => {
                let (n, al) = (pick_size(r), pick_align(r));
                let p = h.aligned_alloc(al, n).expect("aligned_alloc");
                self.add(p.as_ptr(), n, al, false);
            }
            55..=69 => {
                let n = pick_size(r);
                match self.take(r) {
                    Some((a, b)) => {
                        let p = std::ptr::with_exposed_provenance_mut::<u8>(a);
                        let q = unsafe { h.realloc(p, n) }.expect("realloc").as_ptr();
                        let keep = n.min(b.len);
                        assert!(unsafe { intact(q, keep, b.tag) }, "realloc lost contents");
                        // realloc keeps only 16-byte alignment
                        self.add(q, n, 1, false);
                    }
                    None => {
                        let q = unsafe { h.realloc(std::ptr::null_mut(), n) }.unwrap();
                        self.add(q.as_ptr(), n, 1, false);
                    }
                }
            }
            _ => {
                if let Some((a, _)) = self.take(r) {
                    self.free(r, a);
                }
            }
        }
        // now and then a thread exits and another starts
        if !self.caches.is_empty() && r.chance(1) {
            let k = r.below(self.caches.len() as u64) as usize;
            unsafe { h.cache_destroy(self.caches[k]) };
            self.caches[k] = h.cache_create();
            assert!(!self.caches[k].is_null());
        }
    }

    fn check(&self) {
        let s = self
            .h
            .walk()
            .unwrap_or_else(|v| panic!("heap walker: {v:?}"));
        assert_eq!(s.in_use, self.live.len(), "walker's live count");
        assert_eq!(s.bytes, self.bytes, "walker's live bytes");
    }
}

fn run(seed: u64, steps: usize) {
    run_with(seed, steps, 0);
}

fn run_with(seed: u64, steps: usize, caches: usize) {
    let mut r = Rng(seed);
    let h = heap();
    let caches = (0..caches).map(|_| h.cache_create()).collect::<Vec<_>>();
    assert!(caches.iter().all(|c| !c.is_null()));
    let mut m = Model {
        h,
        live: BTreeMap::new(),
        keys: Vec::new(),
        bytes: 0,
        tag: 0,
        caches,
    };
    for i in 0..steps {
        m.step(&mut r);
        // keep the live set bounded, drifting up and down
        let shrink = m.keys.len() > 400 || (i / 2000) % 2 == 1 && r.chance(30);
        if let Some((a, _)) = shrink.then(|| m.take(&mut r)).flatten() {
            m.free(&mut r, a);
        }
        m.check();
    }
    while let Some((a, _)) = m.take(&mut r) {
        m.free(&mut r, a);
        m.check();
    }
    for tc in std::mem::take(&mut m.caches) {
        unsafe { m.h.cache_destroy(tc) };
        m.check();
    }
    let s = m.h.walk().unwrap();
    assert_eq!((s.in_use, s.large, s.bytes, s.owned), (0, 0, 0, 0));
}

#[test]
fn shadow_model_seed_1() {
    run(0x9e37_79b9_7f4a_7c15, 12_000);
}

#[test]
fn shadow_model_seed_2() {
    run(0xdead_beef_cafe_f00d, 12_000);
}

#[test]
fn shadow_model_seed_3() {
    run(12345, 12_000);
}

#[test]
#[cfg_attr(
    any(feature = "harden-random-slots", feature = "harden-quarantine"),
    ignore = "these options turn thread caches off (tcache::CACHE)"
)]
fn shadow_model_thread_caches_seed_1() {
    run_with(0x1234_5678_9abc_def1, 12_000, 3);
}

#[test]
#[cfg_attr(
    any(feature = "harden-random-slots", feature = "harden-quarantine"),
    ignore = "these options turn thread caches off (tcache::CACHE)"
)]
fn shadow_model_thread_caches_seed_2() {
    run_with(777, 12_000, 2);
}
