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

use common::{Rng, TestHeap, advance_clock, calls, clock_reads, heap, in_child, locks};
use ngmalloc_core::cache::CACHE_BYTES;
use ngmalloc_core::retain::RETAIN_FROM;
use ngmalloc_core::size_class::request_class;
use ngmalloc_core::tcache::{
    KEPT_EMPTY, MAKE_BATCH, MAX_ABANDONED, ORPHAN_BATCH, RETIRE_BATCH, RETIRE_BYTES, TC_CLASSES,
    ThreadCache,
};

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
    assert_eq!((s.in_use, s.owned), (0, 0));
}

#[test]
fn a_thread_makes_its_groups_a_few_at_a_time_and_retires_them_in_batches() {
    let h = heap();
    let tc = cache(&h);
    let sc = request_class(40);
    let before = locks();
    let v: Vec<_> = (0..1000)
        .map(|_| h.malloc_cached(tc, 40).unwrap())
        .collect();
    let made = tc.groups(sc).count() as u64;
    let taken = locks() - before;
    // (without decay, one group per lock acquisition, as mallocng)
    let most = if MAKE_BATCH > 1 {
        made.div_ceil(2) + 2
    } else {
        made + 2
    };
    assert!(taken <= most, "{taken} locks for {made} groups");
    assert!(made < 1000 / 8, "{made} groups for 1000 blocks");
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.owned), (1000, made as usize));
    // the owner's frees go back to its groups; the emptied ones go in batches, but the
    // active one and those kept empty next to it
    let before = locks();
    for p in v {
        unsafe { h.free_cached(tc, p.as_ptr()) };
    }
    let batch = RETIRE_BATCH as u64;
    // (without decay, the wait the retired groups started is over when the active group
    // empties: one more lock gives back what is left at once)
    let decay_now = u64::from(ngmalloc_core::config::DECAY_MS == 0);
    assert_eq!(
        locks() - before,
        made.saturating_sub(1 + KEPT_EMPTY as u64) / batch + decay_now,
        "one lock per {batch} groups retired"
    );
    let s = h.walk().unwrap();
    assert_eq!(s.in_use, 0);
    assert!(s.owned <= 1 + KEPT_EMPTY + RETIRE_BATCH as usize);
    unsafe { h.cache_destroy(tc) };
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.owned), (0, 0));
}

#[test]
fn other_threads_frees_come_back_to_the_owner_without_the_lock() {
    let h = heap();
    let (owner, other) = (cache(&h), cache(&h));
    let v: Vec<_> = (0..2000)
        .map(|_| h.malloc_cached(owner, 100).unwrap())
        .collect();
    let groups = owner.groups(request_class(100)).count();
    let before = locks();
    for p in &v {
        unsafe { h.free_cached(other, p.as_ptr()) };
    }
    assert_eq!(locks() - before, 0, "a remote free took the lock");
    assert_eq!(h.walk().unwrap().in_use, 0);
    let before = locks();
    // the owner finds them all again, without a new group or the lock
    let w: Vec<_> = (0..2000)
        .map(|_| h.malloc_cached(owner, 100).unwrap())
        .collect();
    assert_eq!(
        (locks() - before, owner.groups(request_class(100)).count()),
        (0, groups),
        "the owner took the lock to reuse its groups"
    );
    assert_eq!(owner.groups(request_class(100)).count(), groups);
    for p in w {
        unsafe { h.free_cached(owner, p.as_ptr()) };
    }
    unsafe { h.cache_destroy(other) };
    unsafe { h.cache_destroy(owner) };
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.owned), (0, 0));
}

#[test]
fn a_thread_that_exits_with_blocks_in_use_leaves_its_groups_to_the_next() {
    let h = heap();
    let other = cache(&h);
    let a = cache(&h) as *mut ThreadCache;
    let v: Vec<_> = (0..300)
        .map(|k| h.malloc_cached(unsafe { &mut *a }, 16 + k % 200).unwrap())
        .collect();
    let owned = h.walk().unwrap().owned;
    unsafe { h.cache_destroy(a) };
    // (its empty groups, made ahead, are retired)
    let left = h.walk().unwrap().owned;
    if MAX_ABANDONED == 0 {
        // without decay nothing is kept for the next thread: the groups are the heap's
        assert_eq!(left, 0, "kept though nothing may wait");
        for p in &v {
            unsafe { h.free_cached(other, p.as_ptr()) };
        }
        unsafe { h.cache_destroy(other) };
        let s = h.walk().unwrap();
        assert_eq!((s.in_use, s.owned), (0, 0));
        return;
    }
    assert!(left != 0 && left <= owned, "abandoned, groups and all");
    // the next thread takes the cache over, groups and all; other threads' frees into
    // them take no lock, and it allocates from them with no lock past its cache's
    let before = locks();
    let b = cache(&h);
    assert_eq!(b as *mut ThreadCache, a);
    for p in &v {
        unsafe { h.free_cached(other, p.as_ptr()) };
    }
    let w: Vec<_> = (0..300)
        .map(|k| h.malloc_cached(b, 16 + k % 200).unwrap())
        .collect();
    assert_eq!(locks() - before, 1, "only the cache's own lock");
    for p in w {
        unsafe { h.free_cached(b, p.as_ptr()) };
    }
    unsafe { h.cache_destroy(b) };
    unsafe { h.cache_destroy(other) };
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.owned), (0, 0));
}

#[test]
fn an_exited_cache_no_thread_takes_over_gives_its_groups_to_the_heap() {
    let h = heap();
    let a = cache(&h) as *mut ThreadCache;
    let mut v: Vec<_> = (0..600)
        .map(|k| h.malloc_cached(unsafe { &mut *a }, 16 + k % 200).unwrap())
        .collect();
    // every other block freed by its owner: its groups are half free
    let kept: Vec<_> = v
        .drain(..)
        .enumerate()
        .filter_map(|(k, p)| {
            if k % 2 == 0 {
                unsafe { h.free_cached(&mut *a, p.as_ptr()) };
                None
            } else {
                Some(p)
            }
        })
        .collect();
    unsafe { h.cache_destroy(a) };
    // (without decay no cache is kept: its groups are the heap's at once)
    assert_eq!(
        h.walk().unwrap().owned != 0,
        MAX_ABANDONED != 0,
        "abandoned for the next thread"
    );
    // no thread starts within the decay time: the next lock holder (here a cache being
    // made) gives the groups to the heap
    advance_clock(ngmalloc_core::config::DECAY_MS + 1);
    let b = cache(&h);
    assert!(b.owns_nothing(), "a fresh cache");
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.owned), (300, 0), "every group the heap's");
    // the thread fills the free slots the exited one left before it makes a group
    let w: Vec<_> = (0..300)
        .map(|k| h.malloc_cached(b, 16 + (2 * k) % 200).unwrap())
        .collect();
    let t = h.walk().unwrap();
    assert!(t.owned != 0, "nothing taken from the heap");
    assert!(
        t.groups <= s.groups,
        "{} groups made though {} had free slots",
        t.groups - s.groups,
        s.groups
    );
    for p in w.into_iter().chain(kept) {
        unsafe { h.free_cached(b, p.as_ptr()) };
    }
    unsafe { h.cache_destroy(b) };
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.owned), (0, 0));
}

#[test]
fn caches_of_threads_exiting_at_once_are_kept_up_to_a_bound() {
    let h = heap();
    let n = MAX_ABANDONED + 3;
    let caches: Vec<_> = (0..n).map(|_| cache(&h) as *mut ThreadCache).collect();
    let v: Vec<_> = caches
        .iter()
        .map(|&tc| h.malloc_cached(unsafe { &mut *tc }, 100).unwrap())
        .collect();
    for &tc in &caches {
        unsafe { h.cache_destroy(tc) };
    }
    let s = h.walk().unwrap();
    assert_eq!(s.in_use, n);
    // the rest gave their groups to the heap, where the first free of each settles it
    assert_eq!(
        s.owned, MAX_ABANDONED,
        "one group each, {MAX_ABANDONED} caches kept"
    );
    for p in v {
        unsafe { h.free(p.as_ptr()) };
    }
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.owned), (0, 0));
}

#[test]
fn freeing_what_an_exited_thread_left_gives_its_groups_back() {
    let h = heap();
    let before_mapped = h.walk().unwrap().mapped;
    let (producer, consumer) = (cache(&h), cache(&h));
    let v: Vec<_> = (0..2000)
        .map(|k| h.malloc_cached(producer, 16 + k % 1000).unwrap())
        .collect();
    let full = h.walk().unwrap();
    unsafe { h.cache_destroy(producer) };
    // the groups are an abandoned cache's: the consumer's frees take no lock but to
    // retire the groups they empty, ORPHAN_BATCH at a time
    let before = locks();
    for p in v {
        unsafe { h.free_cached(consumer, p.as_ptr()) };
    }
    let taken = locks() - before;
    // (without decay the groups were the heap's: its frees take the lock as mallocng's)
    let most = if MAX_ABANDONED != 0 {
        full.owned.div_ceil(ORPHAN_BATCH)
    } else {
        2 * full.owned
    };
    assert!(
        taken as usize <= most,
        "{taken} locks for {} groups",
        full.owned
    );
    unsafe { h.cache_destroy(consumer) };
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.owned), (0, 0));
    assert!(
        s.mapped - before_mapped < (full.mapped - before_mapped) / 10,
        "{} of {} bytes still mapped",
        s.mapped - before_mapped,
        full.mapped - before_mapped
    );
}

#[test]
fn a_thread_without_a_cache_frees_what_an_exited_thread_left() {
    let h = heap();
    let producer = cache(&h);
    let v: Vec<_> = (0..2000)
        .map(|k| h.malloc_cached(producer, 16 + k % 1000).unwrap())
        .collect();
    unsafe { h.cache_destroy(producer) };
    for p in v {
        unsafe { h.free(p.as_ptr()) };
    }
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.owned), (0, 0), "each emptied group retired");
    assert!(
        cache(&h).owns_nothing(),
        "the exited cache's place went back"
    );
}

#[test]
fn a_freed_slot_is_free_for_every_check() {
    type Case = (&'static str, fn(&TestHeap, &mut ThreadCache, *mut u8));
    let cases: [Case; 4] = [
        ("double free through the owner", |h, tc, p| unsafe {
            h.free_cached(tc, p)
        }),
        ("free after the owner's free", |h, _, p| unsafe {
            h.free(p)
        }),
        ("realloc of a freed slot", |h, _, p| {
            let _ = unsafe { h.realloc(p, 10) };
        }),
        ("usable size of a freed slot", |h, _, p| {
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
fn an_overflow_checked_on_free_is_checked_on_the_owners_free() {
    let r = in_child(|| {
        let h = heap();
        let tc = cache(&h);
        let p = h.malloc_cached(tc, 20).unwrap().as_ptr();
        // a byte changed one past the end (with string-end 0 is what it holds): the
        // check byte catches it
        unsafe { *p.add(20) ^= 1 };
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
fn threads_share_cache_pages_which_stay_for_the_next_threads() {
    let h = heap();
    let home = cache(&h) as *mut ThreadCache; // in the region: no mapping of its own
    let before = calls();
    let a = cache(&h) as *mut ThreadCache;
    let b = cache(&h) as *mut ThreadCache;
    assert_eq!(calls().mmap - before.mmap, 1, "two caches, one page");
    let page = page_of(unsafe { &*a });
    assert_eq!(page, page_of(unsafe { &*b }));
    assert_ne!(page, page_of(unsafe { &*home }));
    // a cache given back owning nothing (its one group emptied) is a spare place
    let p = h.malloc_cached(unsafe { &mut *a }, 40).unwrap();
    unsafe { h.free_cached(&mut *a, p.as_ptr()) };
    assert!(!unsafe { (*a).owns_nothing() });
    unsafe { h.cache_destroy(a) };
    assert!(mapped(page), "b still holds the page");
    let maps = calls().mmap;
    let a2 = cache(&h) as *mut ThreadCache;
    assert_eq!(a2, a, "a spare place is used before a new page is mapped");
    assert_eq!(calls().mmap, maps);
    assert!(unsafe { (*a2).owns_nothing() });
    unsafe { h.cache_destroy(a2) };
    // a page is kept when its last cache goes (a remote free may still read a cache's
    // mark after its last group went), and its places serve the next threads
    let unmaps = calls().munmap;
    unsafe { h.cache_destroy(b) };
    assert_eq!(calls().munmap, unmaps, "a cache page is kept");
    let maps = calls().mmap;
    let b2 = cache(&h) as *mut ThreadCache;
    assert_eq!(page_of(unsafe { &*b2 }), page);
    assert_eq!(calls().mmap, maps);
    unsafe { h.cache_destroy(b2) };
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
    assert_eq!((s.in_use, s.large, s.owned), (0, 0, 0));
}

#[test]
fn freeing_everything_gives_back_all_groups_but_a_few_a_class() {
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
    assert_eq!(s.in_use, 0, "seed {seed}");
    let classes = (0..TC_CLASSES)
        .filter(|&sc| tc.groups(sc).next().is_some())
        .count();
    assert!(
        (classes..=(1 + KEPT_EMPTY.max(MAKE_BATCH - 1)) * classes + RETIRE_BATCH as usize)
            .contains(&s.owned),
        "seed {seed}: {} groups kept for {classes} classes",
        s.owned
    );
    assert!(
        s.mapped - before < (full - before) / 10,
        "{} of {} bytes still mapped",
        s.mapped - before,
        full - before
    );
    unsafe { h.cache_destroy(tc) };
    assert_eq!(h.walk().unwrap().owned, 0);
}

#[test]
fn a_slot_back_from_the_cache_is_not_taken_for_fresh_memory() {
    // Regression: a fresh single-slot group is marked all-zero for calloc; its slot, freed
    // into its group dirty and taken again, kept the mark, and musl's calloc skipped the
    // memset (found by c-tests/oom.c). (Slots above 4 KiB: smaller ones are not marked,
    // their groups count the slots handed out in that byte instead.)
    let h = heap();
    let tc = cache(&h);
    let p = h.malloc_cached(tc, 12000).unwrap().as_ptr();
    assert!(
        unsafe { h.is_allzero(p) },
        "a fresh single-slot group reads as zero"
    );
    unsafe { p.write_bytes(0xab, 12000) };
    unsafe { h.free_cached(tc, p) };
    let q = h.malloc_cached(tc, 12000).unwrap().as_ptr();
    // the same slot (offset cycling may move the start within it)
    assert!(
        q.addr().abs_diff(p.addr()) < 16384,
        "the freed slot is reused"
    );
    assert!(
        !unsafe { h.is_allzero(q) },
        "a reused slot is not fresh memory"
    );
    unsafe { h.free_cached(tc, q) };
    unsafe { h.cache_destroy(tc) };
    h.walk().unwrap();
}

#[test]
fn empty_groups_a_thread_gave_up_go_back_after_the_decay_time() {
    let h = heap();
    let tc = cache(&h);
    let v: Vec<_> = (0..2000)
        .map(|_| h.malloc_cached(tc, 40).unwrap())
        .collect();
    // a few groups of another class: its first miss after the decay time is the check
    let w: Vec<_> = (0..3).map(|_| h.malloc_cached(tc, 3000).unwrap()).collect();
    for p in v {
        unsafe { h.free_cached(tc, p.as_ptr()) };
    }
    let waiting = tc.retiring().count();
    if ngmalloc_core::config::DECAY_MS == 0 {
        // nothing waits: given up, a group goes at once
        assert_eq!(waiting, 0, "a group waits though the decay time is 0");
        for p in w {
            unsafe { h.free_cached(tc, p.as_ptr()) };
        }
        unsafe { h.cache_destroy(tc) };
        let s = h.walk().unwrap();
        assert_eq!((s.in_use, s.owned), (0, 0));
        return;
    }
    assert!(waiting != 0, "nothing given up");
    // misses before the time is up keep them
    let groups = tc.groups(request_class(3000)).count();
    let mut more: Vec<_> = (0..20)
        .map(|_| h.malloc_cached(tc, 3000).unwrap())
        .collect();
    assert!(tc.groups(request_class(3000)).count() > groups, "no miss");
    assert_eq!(tc.retiring().count(), waiting, "retired before their time");
    advance_clock(ngmalloc_core::config::DECAY_MS);
    for _ in 0..100 {
        more.push(h.malloc_cached(tc, 3000).unwrap());
    }
    assert_eq!(tc.retiring().count(), 0, "not retired after the decay time");
    for p in w.into_iter().chain(more) {
        unsafe { h.free_cached(tc, p.as_ptr()) };
    }
    unsafe { h.cache_destroy(tc) };
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.owned), (0, 0));
}

/// Workload 7 of the harness: a heap past `RETAIN_FROM` freed whole, then one small
/// malloc and free after the decay time. That call's free empties its active group and
/// must look at the wait (reading the clock) whatever the phase of the thread's framing
/// counter: the groups given up and the mappings held for reuse go back then.
#[test]
fn one_call_after_the_decay_time_gives_back_what_a_free_all_left() {
    let h = heap();
    let tc = cache(&h);
    let mut r = Rng(7);
    for round in 0..3 {
        let mut v: Vec<_> = (0..6000)
            .map(|_| {
                let n = [40, 700, 3000, 20_000][r.below(4) as usize];
                h.malloc_cached(tc, n).unwrap()
            })
            .collect();
        let s = h.walk().unwrap();
        assert!(
            s.mapped >= RETAIN_FROM,
            "{} bytes mapped: below RETAIN_FROM",
            s.mapped
        );
        for k in (1..v.len()).rev() {
            v.swap(k, r.below(k as u64 + 1) as usize);
        }
        for p in v {
            unsafe { h.free_cached(tc, p.as_ptr()) };
        }
        // phases of the framing counter differ from round to round
        for _ in 0..round * 5 {
            let p = h.malloc_cached(tc, 64).unwrap();
            unsafe { h.free_cached(tc, p.as_ptr()) };
        }
        let held = h.walk().unwrap();
        advance_clock(ngmalloc_core::config::DECAY_MS + 1);
        let p = h.malloc_cached(tc, 64).unwrap();
        unsafe { h.free_cached(tc, p.as_ptr()) };
        let s = h.walk().unwrap();
        assert_eq!(s.in_use, 0);
        assert!(
            s.held + s.mapped <= CACHE_BYTES + (256 << 10),
            "round {round}: {} bytes held and {} mapped after the decay time (before it: {} \
             and {})",
            s.held,
            s.mapped,
            held.held,
            held.mapped
        );
    }
    unsafe { h.cache_destroy(tc) };
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.owned), (0, 0));
}

/// Workload 4 of the harness: a thread frees a few blocks of many classes, so each free
/// empties its class's active group. While a small wait is pending (a few groups given
/// up), that reads the clock on one emptying in 16 at most, not on each.
#[test]
fn emptying_active_groups_reads_the_clock_rarely_while_little_waits() {
    let h = heap();
    let tc = cache(&h);
    let v: Vec<_> = (0..2000)
        .map(|_| h.malloc_cached(tc, 40).unwrap())
        .collect();
    for p in v {
        unsafe { h.free_cached(tc, p.as_ptr()) };
    }
    let waiting = tc.retiring().count();
    if ngmalloc_core::config::DECAY_MS != 0 {
        assert!(waiting != 0, "nothing waits");
    }
    let mut r = Rng(4);
    let before = clock_reads();
    let rounds = 1000;
    for _ in 0..rounds {
        let v: Vec<_> = (0..8)
            .map(|k| {
                h.malloc_cached(tc, 16 + 32 * k + r.below(16) as usize)
                    .unwrap()
            })
            .collect();
        for p in v {
            unsafe { h.free_cached(tc, p.as_ptr()) };
        }
    }
    let reads = clock_reads() - before;
    assert!(
        reads <= rounds * 8 / 16 + 8,
        "{reads} clock reads in {} frees",
        rounds * 8
    );
    unsafe { h.cache_destroy(tc) };
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.owned), (0, 0));
}

#[test]
fn what_a_thread_keeps_empty_stays_below_its_byte_bound() {
    let h = heap();
    let tc = cache(&h);
    for n in [4000, 2000, 700, 100] {
        let v: Vec<_> = (0..3000).map(|_| h.malloc_cached(tc, n).unwrap()).collect();
        for p in v {
            unsafe { h.free_cached(tc, p.as_ptr()) };
            let bytes: usize = tc
                .retiring()
                .map(|g| unsafe { ngmalloc_core::meta::stride(g) * ((*g).last_idx as usize + 1) })
                .sum();
            assert!(bytes < RETIRE_BYTES, "{bytes} bytes waiting");
        }
    }
    unsafe { h.cache_destroy(tc) };
}

#[test]
fn a_slot_another_thread_freed_is_not_taken_for_fresh_memory() {
    // Regression (the soak test's calloc): a fresh single-slot group is marked all-zero;
    // its slot, freed by another thread and collected by the owner, kept the mark.
    let h = heap();
    let (owner, other) = (cache(&h), cache(&h));
    let p = h.malloc_cached(owner, 7044).unwrap().as_ptr();
    assert!(
        unsafe { h.is_allzero(p) },
        "a fresh single-slot group reads as zero"
    );
    unsafe { p.write_bytes(0xab, 7044) };
    unsafe { h.free_cached(other, p) };
    let q = h.malloc_cached(owner, 7044).unwrap().as_ptr();
    assert!(
        q.addr().abs_diff(p.addr()) < 4096,
        "the slot freed by the other thread is reused"
    );
    assert!(
        !unsafe { h.is_allzero(q) },
        "a reused slot is not fresh memory"
    );
    unsafe { h.free_cached(owner, q) };
    unsafe { h.cache_destroy(other) };
    unsafe { h.cache_destroy(owner) };
    h.walk().unwrap();
}

#[test]
fn a_thread_churning_through_many_groups_comes_back_to_its_older_ones() {
    // Regression: a new group went first in the list followed by the groups a miss had
    // just seen full, so the next misses saw them again, made more groups, and never came
    // back to older groups whose slots had been freed (workload 8, 10% of blocks kept
    // live: peak RSS 2.2 times the live bytes, against 1.2 for stock musl).
    let h = heap();
    let tc = cache(&h);
    let mut r = Rng(8);
    let mut window = std::collections::VecDeque::new();
    let mut kept = Vec::new();
    for _ in 0..60_000 {
        if window.len() == 256 {
            let p: std::ptr::NonNull<u8> = window.pop_front().unwrap();
            if r.below(10) == 0 {
                kept.push(p);
            } else {
                unsafe { h.free_cached(tc, p.as_ptr()) };
            }
        }
        window.push_back(h.malloc_cached(tc, 100).unwrap());
    }
    let s = h.walk().unwrap();
    let slots: usize = tc
        .groups(request_class(100))
        .map(|g| unsafe { (*g).last_idx as usize + 1 })
        .sum();
    assert!(
        slots < s.in_use * 3 / 2,
        "{slots} slots in groups for {} blocks in use",
        s.in_use
    );
    for p in window.into_iter().chain(kept) {
        unsafe { h.free_cached(tc, p.as_ptr()) };
    }
    unsafe { h.cache_destroy(tc) };
}

#[test]
fn a_donated_group_a_thread_took_goes_back_to_the_heap_not_unmapped() {
    // Regression: a cache took a group of donated memory (musl's dynamic linker donates
    // its leftover pages) from the heap's list, emptied it, and retired it like its own:
    // free_group crashed on memory the heap may never unmap.
    let h = heap();
    let buf: &'static mut [u8] = Box::leak(vec![0u8; 70_000].into_boxed_slice());
    let (lo, hi) = (buf.as_mut_ptr(), buf.as_mut_ptr().wrapping_add(buf.len()));
    unsafe { h.donate(lo, hi) };
    let donated = |p: *mut u8| p >= lo && p < hi;
    let mut from_donation = vec![];
    for round in 0..2 {
        let tc = cache(&h);
        for sc in (3..TC_CLASSES).step_by(4) {
            let n =
                ngmalloc_core::size_class::class_size(sc) - 4 - ngmalloc_core::config::CANARY_ROOM;
            let p = h.malloc_cached(tc, n).unwrap().as_ptr();
            if donated(p) {
                from_donation.push((round, n));
            }
            unsafe { h.free_cached(tc, p) };
        }
        // decay retires the empty groups the thread holds: the donated one too
        advance_clock(ngmalloc_core::config::DECAY_MS + 1);
        let p = h.malloc_cached(tc, 1).unwrap().as_ptr();
        unsafe { h.free_cached(tc, p) };
        h.walk().unwrap();
        unsafe { h.cache_destroy(tc) };
        h.walk().unwrap();
    }
    assert!(
        from_donation.iter().any(|&(r, _)| r == 0) && from_donation.iter().any(|&(r, _)| r == 1),
        "donated memory not used by a cache, or not again by the next: {from_donation:?}"
    );
}

/// The sized free through the cache (C23 `free_sized`, C++'s sized deletes): the right
/// size and alignment free the block as `free` does, with no lock; a wrong size or an
/// alignment the pointer does not have crashes; `malloc(0)`'s pointer is freed with size 0.
#[test]
fn a_sized_free_through_the_cache_checks_size_and_alignment() {
    let h = heap();
    let tc = cache(&h);
    let keep = h.malloc_cached(tc, 100).unwrap();
    // each class's group made first
    let warm: Vec<_> = [1, 24, 1000]
        .map(|n| h.malloc_cached(tc, n).unwrap())
        .into();
    let before = locks();
    for n in [1, 24, 100, 1000] {
        let p = h.malloc_cached(tc, n).unwrap().as_ptr();
        unsafe { h.free_sized_cached(tc, p, n, Some(16)) };
        let p = h.malloc_cached(tc, n).unwrap().as_ptr();
        unsafe { h.free_sized_cached(tc, p, n, None) };
    }
    assert_eq!(locks() - before, 0, "the sized frees took the lock");
    for (p, n) in warm.into_iter().zip([1, 24, 1000]) {
        unsafe { h.free_sized_cached(tc, p.as_ptr(), n, None) };
    }
    for n in [1, 24, 100, 1000] {
        let p = h.aligned_alloc(64, n).unwrap().as_ptr();
        unsafe { h.free_sized_cached(tc, p, n, Some(64)) };
    }
    let z = h.malloc_cached(tc, 0).unwrap().as_ptr();
    unsafe { h.free_sized_cached(tc, z, 0, None) };
    unsafe { h.free_cached(tc, keep.as_ptr()) };
    assert_eq!(h.walk().unwrap().in_use, 0);
    let wrong: [(&str, usize, Option<usize>); 4] = [
        ("a size too large", 41, None),
        ("a size too small", 39, None),
        ("an alignment the pointer lacks", 40, Some(1 << 20)),
        ("an alignment that is no power of two", 40, Some(48)),
    ];
    for (name, n, align) in wrong {
        let r = in_child(|| {
            let h = heap();
            let tc = cache(&h);
            let p = h.malloc_cached(tc, 40).unwrap().as_ptr();
            unsafe { h.free_sized_cached(tc, p, n, align) };
        });
        assert_eq!(r, Err(SIGILL), "{name}");
    }
}

#[test]
fn fresh_memory_said_to_read_as_zero_does() {
    // A fresh framing writes its check bytes' whole word, over the data's last bytes
    // (one store), zero there: `is_allzero` is what musl's calloc asks before it skips
    // its memset.
    let h = heap();
    let tc = cache(&h);
    let mut fresh = 0;
    let mut kept = Vec::new();
    // every class's sizes whose data ends 0 to 11 bytes before the slot's end (offset
    // cycling aside): the check bytes' word then holds data bytes too
    let sizes = (0..ngmalloc_core::config::NUM_CLASSES).flat_map(|sc| {
        let top = ngmalloc_core::size_class::class_size(sc) - ngmalloc_core::config::IB;
        (0..12).map(move |k| top - k).filter(|&n| n > 0)
    });
    for n in sizes.chain([200_000]) {
        for _ in 0..3 {
            let p = h.malloc_cached(tc, n).unwrap().as_ptr();
            if unsafe { h.is_allzero(p) } {
                fresh += 1;
                assert!(
                    (0..n).all(|i| unsafe { *p.add(i) } == 0),
                    "{n} bytes said to read as zero"
                );
            }
            kept.push(p);
        }
    }
    assert!(fresh > 0, "no allocation was fresh memory");
    for p in kept {
        unsafe { h.free_cached(tc, p) };
    }
    unsafe { h.cache_destroy(tc) };
    h.walk().unwrap();
}
