//! Thread caches (`src/tcache.rs`): the lock-free fast path, its hardening and its bounds.
//! Each test states one property and checks it through the heap's API, the per-thread lock
//! counter of the test backend and the heap walker.
// Tests call the allocator's unsafe API on purpose, with pointers the test itself just got
// from the heap (or corrupts on purpose): the contract of each call is what is under test.
#![allow(clippy::undocumented_unsafe_blocks)]
// these options turn the caches off (tcache::CACHE); `caches_are_off_with_...` covers them
#![cfg(not(any(feature = "harden-random-slots", feature = "harden-quarantine")))]

mod common;

use std::sync::Arc;

use common::{Rng, TestHeap, calls, heap, in_child, locks};
use ngmalloc::size_class::size_to_class;
use ngmalloc::tcache::{FREE_STREAK, TC_CLASSES, ThreadCache, limit};

const SIGILL: i32 = libc::SIGILL;
const SIGSEGV: i32 = libc::SIGSEGV;

fn cache(h: &TestHeap) -> &'static mut ThreadCache {
    let tc = h.cache_create();
    assert!(!tc.is_null());
    unsafe { &mut *tc }
}

#[test]
fn malloc_and_free_through_a_warm_cache_take_no_lock() {
    let h = heap();
    let tc = cache(&h);
    let mut r = Rng(3);
    // warm up: every size below gets its groups and bins
    for _ in 0..4 {
        let v: Vec<_> = (0..8)
            .map(|k| h.malloc_cached(tc, 16 + 100 * k).unwrap())
            .collect();
        for p in v {
            unsafe { h.free_cached(tc, p.as_ptr()) };
        }
    }
    let before = locks();
    for _ in 0..20_000 {
        let k = r.below(8) as usize;
        let p = h.malloc_cached(tc, 16 + 100 * k).unwrap().as_ptr();
        unsafe { p.write_bytes(0xa5, 16 + 100 * k) };
        unsafe { h.free_cached(tc, p) };
    }
    assert_eq!(locks() - before, 0, "lock taken on the cached path");
    unsafe { h.cache_destroy(tc) };
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.cached), (0, 0));
}

#[test]
fn refills_grow_from_two_slots_to_half_a_bin_each_under_one_lock() {
    let h = heap();
    let tc = cache(&h);
    let mut v = Vec::new();
    // 2, 4, 8: each refill one lock acquisition, twice the last, up to half the limit
    let mut sizes = Vec::new();
    for _ in 0..4 {
        let want = tc.refill_size(2);
        sizes.push(want);
        let before = locks();
        v.extend((0..want).map(|_| h.malloc_cached(tc, 40).unwrap()));
        assert_eq!(locks() - before, 1, "one refill for {want} allocations");
    }
    let half = limit(2).div_ceil(2);
    assert_eq!(sizes, [2, 4, 8, 8].map(|n: usize| n.min(half)));
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.cached), (v.len(), 0));
    let freed = v.len().min(limit(2));
    for p in v.drain(..freed) {
        unsafe { h.free_cached(tc, p.as_ptr()) };
    }
    let s = h.walk().unwrap();
    assert_eq!(s.cached, freed);
    for p in v {
        unsafe { h.free_cached(tc, p.as_ptr()) };
    }
    unsafe { h.cache_destroy(tc) };
}

#[test]
fn bins_stay_bounded_and_exit_gives_everything_back() {
    let h = heap();
    let tc = cache(&h);
    // many frees into one bin: it keeps at most its limit, the rest goes to the groups
    let v: Vec<_> = (0..1000).map(|_| h.malloc(32).unwrap()).collect();
    for p in v {
        unsafe { h.free_cached(tc, p.as_ptr()) };
    }
    let s = h.walk().unwrap();
    assert_eq!(s.in_use, 0);
    assert!(s.cached <= limit(2), "{} cached", s.cached);
    // every cached class filled to its limit: the whole cache stays small
    let mut all = Vec::new();
    for sc in 0..TC_CLASSES {
        let n = ngmalloc::size_class::class_size(sc) - ngmalloc::config::IB;
        all.extend((0..limit(sc)).map(|_| (h.malloc(n).unwrap(), n)));
    }
    let bytes: usize = all.iter().map(|&(_, n)| n).sum();
    for (p, _) in all {
        unsafe { h.free_cached(tc, p.as_ptr()) };
    }
    assert!(bytes <= 128 << 10, "a full cache holds {bytes} bytes");
    unsafe { h.cache_destroy(tc) };
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.cached), (0, 0));
}

#[test]
fn a_cached_slot_is_a_freed_slot_for_every_check() {
    type Case = (&'static str, fn(&TestHeap, &mut ThreadCache, *mut u8));
    let cases: [Case; 4] = [
        ("double free through the cache", |h, tc, p| unsafe {
            h.free_cached(tc, p)
        }),
        ("free after a cached free", |h, _, p| unsafe { h.free(p) }),
        ("realloc of a cached slot", |h, _, p| {
            let _ = unsafe { h.realloc(p, 10) };
        }),
        ("usable size of a cached slot", |h, _, p| {
            let _ = unsafe { h.usable_size(p) };
        }),
    ];
    for (what, f) in cases {
        let r = in_child(move || {
            let h = heap();
            let tc = cache(&h);
            let _keep = h.malloc_cached(tc, 24);
            let p = h.malloc_cached(tc, 24).unwrap().as_ptr();
            unsafe { h.free_cached(tc, p) };
            f(&h, tc, p);
        });
        assert_eq!(r, Err(SIGILL), "{what}");
    }
}

#[test]
fn an_overflow_checked_on_free_is_checked_on_the_cached_free() {
    let r = in_child(|| {
        let h = heap();
        let tc = cache(&h);
        let p = h.malloc_cached(tc, 20).unwrap().as_ptr();
        unsafe { *p.add(20) = 0 }; // a NUL one past the end: the canary catches it
        unsafe { h.free_cached(tc, p) };
    });
    assert_eq!(r, Err(SIGILL));
}

fn page_of(tc: &ThreadCache) -> usize {
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    (tc as *const ThreadCache).addr() & !(ps - 1)
}

#[test]
fn caches_live_outside_the_heap_behind_a_guard_page() {
    let h = heap();
    // the region's place, then two of a cache page
    let caches: Vec<_> = (0..3).map(|_| cache(&h) as *mut ThreadCache).collect();
    for &tc in &caches {
        let below = core::ptr::without_provenance_mut::<u8>(page_of(unsafe { &*tc }) - 1);
        let r = in_child(move || unsafe { below.write_volatile(1) });
        assert_eq!(r, Err(SIGSEGV), "the page below a cache's page is a guard");
    }
    for tc in caches {
        unsafe { h.cache_destroy(tc) };
    }
}

/// Whether the page at `page` is mapped (`msync` fails with ENOMEM on unmapped memory).
/// Only a "yes" means something: tests run side by side, and another one may map a page
/// that was just unmapped; whether a page was unmapped is read from this thread's calls.
fn mapped(page: usize) -> bool {
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    unsafe { libc::msync(core::ptr::without_provenance_mut(page), ps, libc::MS_ASYNC) == 0 }
}

#[test]
fn threads_share_cache_pages_and_a_page_goes_with_its_last_cache() {
    let h = heap();
    let home = cache(&h) as *mut ThreadCache; // in the region: no mapping of its own
    let before = calls();
    let a = cache(&h) as *mut ThreadCache;
    let b = cache(&h) as *mut ThreadCache;
    assert_eq!(calls().mmap - before.mmap, 1, "two caches, one page");
    let page = page_of(unsafe { &*a });
    assert_eq!(page, page_of(unsafe { &*b }));
    assert_ne!(page, page_of(unsafe { &*home }));
    // a cache given back with slots in it comes out empty for the next thread
    let p = h.malloc_cached(unsafe { &mut *a }, 40).unwrap();
    unsafe { h.free_cached(&mut *a, p.as_ptr()) };
    assert_ne!(unsafe { (*a).held(size_to_class(40)) }, 0);
    unsafe { h.cache_destroy(a) };
    assert!(mapped(page), "b still holds the page");
    let maps = calls().mmap;
    let a2 = cache(&h) as *mut ThreadCache;
    assert_eq!(a2, a, "a spare place is used before a new page is mapped");
    assert_eq!(calls().mmap, maps);
    assert_eq!(unsafe { (*a2).held(size_to_class(40)) }, 0);
    unsafe { h.cache_destroy(a2) };
    let unmaps = calls().munmap;
    unsafe { h.cache_destroy(b) };
    let (start, len) = calls().last_munmap;
    assert_eq!(calls().munmap, unmaps + 1, "the emptied page is unmapped");
    assert!(
        start <= page && page < start + len,
        "the unmapped range {start:#x}+{len:#x} holds the page {page:#x}"
    );
    h.walk().unwrap();
    unsafe { h.cache_destroy(home) };
    let maps = calls().mmap;
    assert_eq!(
        cache(&h) as *mut ThreadCache,
        home,
        "the region's place is used again"
    );
    assert_eq!(calls().mmap, maps);
    h.walk().unwrap();
}

#[test]
fn threads_with_caches_free_each_others_blocks() {
    let h: Arc<TestHeap> = Arc::from(heap());
    let (tx, rx) = std::sync::mpsc::sync_channel::<usize>(256);
    let producers: Vec<_> = (0..3)
        .map(|t| {
            let h = h.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let tc = cache(&h);
                let mut r = Rng(t + 1);
                let mut mine = Vec::new();
                for i in 0..20_000 {
                    let n = r.below(if i % 100 == 0 { 20_000 } else { 1000 }) as usize;
                    let p = h.malloc_cached(tc, n).unwrap().as_ptr();
                    unsafe { p.write_bytes(t as u8, n) };
                    if r.chance(50) {
                        tx.send(p.addr()).unwrap();
                    } else {
                        mine.push((p, n));
                    }
                    if mine.len() > 100 {
                        let (q, n) = mine.swap_remove(r.below(100) as usize);
                        assert!((0..n).all(|k| unsafe { *q.add(k) } == t as u8));
                        unsafe { h.free_cached(tc, q) };
                    }
                }
                for (q, _) in mine {
                    unsafe { h.free_cached(tc, q) };
                }
                unsafe { h.cache_destroy(tc) };
            })
        })
        .collect();
    drop(tx);
    let consumer = {
        let h = h.clone();
        std::thread::spawn(move || {
            let tc = cache(&h);
            for a in rx {
                unsafe { h.free_cached(tc, std::ptr::with_exposed_provenance_mut(a)) };
            }
            unsafe { h.cache_destroy(tc) };
        })
    };
    for p in producers {
        p.join().unwrap();
    }
    consumer.join().unwrap();
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.large, s.cached), (0, 0, 0));
}

#[test]
fn freeing_everything_gives_the_cache_back_and_the_groups_with_it() {
    // seeds 10-13 left 1-4 slots cached before hosts of nested groups were given back
    for seed in 9..16 {
        free_everything(seed);
    }
}

fn free_everything(seed: u64) {
    let h = heap();
    let tc = cache(&h);
    let before = h.walk().unwrap().mapped;
    let mut r = Rng(seed);
    let mut v: Vec<_> = (0..20_000)
        .map(|_| h.malloc_cached(tc, 16 + r.below(2000) as usize).unwrap())
        .collect();
    let full = h.walk().unwrap().mapped;
    for k in (1..v.len()).rev() {
        v.swap(k, r.below(k as u64 + 1) as usize);
    }
    for p in v {
        unsafe { h.free_cached(tc, p.as_ptr()) };
    }
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.cached), (0, 0), "seed {seed}");
    assert!(
        s.mapped - before < (full - before) / 20,
        "{} of {} bytes still mapped",
        s.mapped - before,
        full - before
    );
    // the next malloc uses the cache again
    let want = tc.refill_size(ngmalloc::size_class::size_to_class(100));
    let p = h.malloc_cached(tc, 100).unwrap();
    unsafe { h.free_cached(tc, p.as_ptr()) };
    assert_eq!(h.walk().unwrap().cached, want);
    unsafe { h.cache_destroy(tc) };
}

/// A consumer's cache and 2000 blocks of 100 bytes a producer built, whose cache is gone
/// (no slot of their groups is left in its bin).
fn built_by_another(h: &TestHeap) -> (&'static mut ThreadCache, Vec<std::ptr::NonNull<u8>>) {
    let (producer, consumer) = (cache(h), cache(h));
    let v = (0..2000)
        .map(|_| h.malloc_cached(producer, 100).unwrap())
        .collect();
    unsafe { h.cache_destroy(producer) };
    (consumer, v)
}

#[test]
fn a_consumer_run_keeps_no_slots_of_a_class_it_never_refilled() {
    // A thread that frees what another built (a consumer) never refilled the class: in its
    // long run of frees, every slot goes straight to its group, where producers take it
    // again (a bin of such slots would keep them, and their groups, from everyone for as
    // long as the thread lives).
    let h = heap();
    let (consumer, v) = built_by_another(&h);
    let sc = ngmalloc::size_class::size_to_class(100);
    for (k, p) in v.into_iter().enumerate() {
        let in_use = h.walk().unwrap().in_use;
        unsafe { h.free_cached(consumer, p.as_ptr()) };
        if k >= FREE_STREAK as usize {
            assert_eq!(consumer.held(sc), 0, "free {k}: the bin kept a slot");
            assert_eq!(
                h.walk().unwrap().in_use,
                in_use - 1,
                "free {k}: not given back"
            );
        }
    }
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.cached), (0, 0));
    unsafe { h.cache_destroy(consumer) };
}

#[test]
fn in_a_run_of_frees_a_full_bin_stays_full_and_frees_go_to_the_groups() {
    // In a long run of frees no malloc takes a slot back: a full bin (of a class the
    // thread refilled) gives each further slot straight to its group instead of draining
    // half of itself to take it in. Every other block stays in use, so no group can go
    // back whole.
    let h = heap();
    let (tc, v) = built_by_another(&h);
    let sc = ngmalloc::size_class::size_to_class(100);
    let mine = h.malloc_cached(tc, 100).unwrap();
    unsafe { h.free_cached(tc, mine.as_ptr()) };
    for (k, p) in v.iter().step_by(2).enumerate() {
        let in_use = h.walk().unwrap().in_use;
        unsafe { h.free_cached(tc, p.as_ptr()) };
        if k >= FREE_STREAK as usize + limit(sc) {
            assert_eq!(tc.held(sc), limit(sc), "free {k}: the bin was drained");
            assert_eq!(
                h.walk().unwrap().in_use,
                in_use - 1,
                "free {k}: not given back"
            );
        }
    }
    for p in v.iter().skip(1).step_by(2) {
        unsafe { h.free_cached(tc, p.as_ptr()) };
    }
    unsafe { h.cache_destroy(tc) };
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.cached), (0, 0));
}

#[test]
fn a_slot_back_from_the_cache_is_not_taken_for_fresh_memory() {
    // Regression: a fresh single-slot group is marked all-zero for calloc; its slot, freed
    // into the cache dirty and taken again, kept the mark, and musl's calloc skipped the
    // memset (found by c-tests/oom.c).
    let h = heap();
    let tc = cache(&h);
    let p = h.malloc_cached(tc, 4000).unwrap().as_ptr();
    assert!(
        unsafe { h.is_allzero(p) },
        "a fresh single-slot group reads as zero"
    );
    unsafe { p.write_bytes(0xab, 4000) };
    unsafe { h.free_cached(tc, p) };
    let q = h.malloc_cached(tc, 4000).unwrap().as_ptr();
    // the same slot (offset cycling may move the start within it)
    assert!(
        q.addr().abs_diff(p.addr()) < 4096,
        "the cached slot is reused"
    );
    assert!(
        !unsafe { h.is_allzero(q) },
        "a reused slot is not fresh memory"
    );
    unsafe { h.free_cached(tc, q) };
    unsafe { h.cache_destroy(tc) };
    h.walk().unwrap();
}
