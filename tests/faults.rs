//! Fault injection: a fixed scenario (every allocation call, sizes in every class and above
//! the mmap threshold, realloc within and across classes and by mremap, thread caches made
//! and destroyed) is run once per fallible system call it makes, with that call failing
//! (once, and from there on). After every step the heap walker must pass and the model's
//! live blocks keep their contents; a call may fail only if a fault was injected while it
//! ran; afterwards, with faults off, the same heap must serve the whole scenario again.
// Tests call the allocator's unsafe API on purpose, with pointers the test itself just got
// from the heap: the contract of each call is what is under test.
#![allow(clippy::undocumented_unsafe_blocks)]

mod common;

use std::ptr::NonNull;

use common::{Rng, TestHeap, fault_calls, heap, inject_fault};
use ngmalloc_core::config::MMAP_THRESHOLD;
use ngmalloc_core::tcache::{CACHE, ThreadCache};

struct Block {
    p: *mut u8,
    len: usize,
    tag: u8,
}

fn fill(b: &Block) {
    for i in 0..b.len {
        unsafe { *b.p.add(i) = b.tag ^ (i as u8).wrapping_mul(13) };
    }
}

fn intact(b: &Block) -> bool {
    (0..b.len).all(|i| unsafe { *b.p.add(i) } == b.tag ^ (i as u8).wrapping_mul(13))
}

fn size(r: &mut Rng) -> usize {
    match r.below(10) {
        0..=4 => r.below(600) as usize,
        5..=7 => 600 + r.below(20_000) as usize,
        8 => 20_000 + r.below(MMAP_THRESHOLD as u64) as usize,
        _ => MMAP_THRESHOLD + r.below(400_000) as usize,
    }
}

/// The scenario's state: the heap, its live blocks, the thread caches in use.
struct Run<'a> {
    h: &'a TestHeap,
    live: Vec<Block>,
    caches: Vec<*mut ThreadCache>,
    tag: u8,
    /// The injected call's number; a result may be missing only if it was made by now.
    at: u64,
}

impl Run<'_> {
    /// A failed result is allowed only if the injected call has been made.
    fn got(&mut self, what: &str, p: Option<NonNull<u8>>) -> Option<*mut u8> {
        match p {
            Some(p) => Some(p.as_ptr()),
            None => {
                let n = fault_calls();
                assert!(
                    n > self.at,
                    "{what} failed with no fault injected ({n} calls)"
                );
                None
            }
        }
    }

    fn keep(&mut self, p: *mut u8, len: usize) {
        self.tag = self.tag.wrapping_add(1);
        let b = Block {
            p,
            len,
            tag: self.tag,
        };
        assert_eq!(unsafe { self.h.usable_size(p) }, len);
        fill(&b);
        self.live.push(b);
    }

    fn cache(&self, r: &mut Rng) -> Option<*mut ThreadCache> {
        let k = r.below(self.caches.len() as u64 + 1) as usize;
        self.caches.get(k).copied()
    }

    fn step(&mut self, r: &mut Rng) {
        let h = self.h;
        match r.below(16) {
            0..=4 => {
                let n = size(r);
                let p = match self.cache(r) {
                    Some(tc) => h.malloc_cached(unsafe { &mut *tc }, n),
                    None => h.malloc(n),
                };
                if let Some(p) = self.got("malloc", p) {
                    self.keep(p, n);
                }
            }
            5 => {
                let n = size(r);
                if let Some(p) = self.got("calloc", h.calloc(n)) {
                    assert!((0..n).all(|i| unsafe { *p.add(i) } == 0), "calloc not zero");
                    self.keep(p, n);
                }
            }
            6 => {
                let (n, al) = (size(r), 1 << r.below(17));
                if let Some(p) = self.got("aligned_alloc", h.aligned_alloc(al, n)) {
                    assert_eq!(p.addr() % al, 0);
                    self.keep(p, n);
                }
            }
            7..=9 if !self.live.is_empty() => {
                let k = r.below(self.live.len() as u64) as usize;
                let n = size(r);
                let old = &self.live[k];
                let (p, len, tag) = (old.p, old.len, old.tag);
                match self.got("realloc", unsafe { h.realloc(p, n) }) {
                    Some(q) => {
                        let b = Block {
                            p: q,
                            len: len.min(n),
                            tag,
                        };
                        assert!(intact(&b), "realloc lost contents");
                        self.live.swap_remove(k);
                        self.keep(q, n);
                    }
                    // a failed realloc leaves the block as it was
                    None => assert!(intact(&self.live[k]), "failed realloc changed the block"),
                }
            }
            10 if self.caches.len() < 3 => {
                let tc = h.cache_create();
                if tc.is_null() {
                    // a cache is an optimisation: no memory for one is no error (and some
                    // hardening options turn caches off)
                    assert!(
                        !CACHE || fault_calls() > self.at,
                        "no thread cache with no fault injected"
                    );
                } else {
                    self.caches.push(tc);
                }
            }
            11 if !self.caches.is_empty() => {
                let tc = self
                    .caches
                    .swap_remove(r.below(self.caches.len() as u64) as usize);
                unsafe { h.cache_destroy(tc) };
            }
            _ if !self.live.is_empty() => self.free_one(r),
            _ => {}
        }
    }

    fn free_one(&mut self, r: &mut Rng) {
        let b = self
            .live
            .swap_remove(r.below(self.live.len() as u64) as usize);
        assert!(intact(&b), "block changed before free");
        match self.cache(r) {
            Some(tc) => unsafe { self.h.free_cached(&mut *tc, b.p) },
            None => unsafe { self.h.free(b.p) },
        }
    }

    fn check(&self, all: bool) {
        let s = self
            .h
            .walk()
            .unwrap_or_else(|v| panic!("heap walker: {v:?}"));
        assert_eq!(s.in_use, self.live.len(), "walker's live count");
        if all {
            assert!(self.live.iter().all(intact), "a live block changed");
        }
    }

    /// The scenario: `steps` steps from `seed`, then everything freed.
    fn scenario(&mut self, seed: u64, steps: usize) {
        let mut r = Rng(seed);
        for _ in 0..steps {
            let before = fault_calls();
            self.step(&mut r);
            // the step in which the fault hit gets the full check
            self.check(before <= self.at && fault_calls() > self.at);
        }
        self.check(true);
        while !self.live.is_empty() {
            self.free_one(&mut r);
        }
        for tc in std::mem::take(&mut self.caches) {
            unsafe { self.h.cache_destroy(tc) };
        }
        let s = self.h.walk().unwrap();
        assert_eq!((s.in_use, s.large, s.owned), (0, 0, 0));
    }
}

const SEED: u64 = 0x5eed_fa17;
const STEPS: usize = 250;

/// Run the scenario with call `at` failing (`u64::MAX`: none), then once more with no
/// faults on the same heap; the number of fallible calls the first run made.
fn run(at: u64, persist: bool) -> u64 {
    // a thread of its own: the emulated break and the counters start afresh
    std::thread::spawn(move || {
        let h = heap();
        let mut run = Run {
            h: &h,
            live: Vec::new(),
            caches: Vec::new(),
            tag: 0,
            at,
        };
        inject_fault(at, persist);
        run.scenario(SEED, STEPS);
        let calls = fault_calls();
        // later calls still work
        inject_fault(u64::MAX, false);
        run.at = u64::MAX;
        run.scenario(SEED ^ 1, STEPS);
        calls
    })
    .join()
    .unwrap_or_else(|_| panic!("fault at call {at} (persist: {persist})"))
}

#[test]
fn every_failing_call_is_survived() {
    let total = run(u64::MAX, false);
    assert!(total > 50, "the scenario makes few fallible calls: {total}");
    for at in 0..total {
        run(at, false);
    }
}

#[test]
fn out_of_memory_from_every_call_on_is_survived() {
    let total = run(u64::MAX, false);
    for at in 0..total {
        run(at, true);
    }
}
