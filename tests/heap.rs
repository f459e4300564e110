//! Behaviour of the core on the host: each test states one property of the mallocng design
//! (or of ngmalloc's additions) and checks it through the heap's API, the syscall counters
//! of the test backend and the heap walker.
// Tests call the allocator's unsafe API on purpose, with pointers the test itself just got
// from the heap (or corrupts on purpose): the contract of each call is what is under test.
#![allow(clippy::undocumented_unsafe_blocks)]

mod common;

use std::sync::Arc;

use common::{
    Guards, Rng, brk_region, calls, fail_maps_after, heap, in_child, inject_fault, set_brk_fail,
    set_guards, stop_failing,
};
use ngmalloc_core::check::Corrupt;
use ngmalloc_core::config::{CANARY_ROOM, IB, MAX_ALIGN, MMAP_THRESHOLD, NUM_CLASSES, STRING_END};
use ngmalloc_core::size_class::class_size;

const SIGILL: i32 = libc::SIGILL;
/// Medium sizes: 8 KiB up to the mmap threshold.
const MEDIUM: u64 = (MMAP_THRESHOLD - 8192) as u64;

#[test]
fn usable_size_is_exactly_the_request() {
    let h = heap();
    let mut ps = Vec::new();
    for n in (0..5000).chain([MMAP_THRESHOLD - 1, MMAP_THRESHOLD, 1 << 20, (1 << 20) + 1]) {
        let p = h.malloc(n).unwrap().as_ptr();
        assert_eq!(p.addr() % 16, 0);
        assert_eq!(unsafe { h.usable_size(p) }, n);
        ps.push(p);
    }
    h.walk().unwrap();
    for p in ps {
        unsafe { h.free(p) };
    }
    assert_eq!(h.walk().unwrap().in_use, 0);
    assert_eq!(unsafe { h.usable_size(std::ptr::null_mut()) }, 0);
}

#[test]
#[cfg_attr(
    feature = "harden-quarantine",
    ignore = "the quarantine holds the freed slot, so its group is never freed and recreated"
)]
fn offset_cycling_survives_a_group_recreated_at_the_same_address() {
    let h = heap();
    // a small request in a large class leaves slack for offsets inside the slot
    let n = class_size(20) - 400;
    let mut seen = std::collections::HashSet::new();
    let mut groups = std::collections::HashSet::new();
    for _ in 0..8 {
        let p = h.malloc(n).unwrap().as_ptr();
        assert!(seen.insert(p.addr()), "address {p:p} reused too soon");
        groups.insert(p.addr() & !4095);
        unsafe { h.free(p) };
        // the group went away with its only slot
        assert_eq!(h.walk().unwrap().groups, 0);
    }
    assert!(
        groups.len() < 8,
        "the test needs a group recreated at the same address"
    );
}

#[test]
fn offset_cycling_on_slot_reuse() {
    let h = heap();
    // 161 bytes take a 192-byte slot: one unit of slack to cycle through
    let n = 161;
    let keep = h.malloc(n).unwrap();
    let a = h.malloc(n).unwrap().as_ptr();
    unsafe { h.free(a) };
    let b = h.malloc(n).unwrap().as_ptr();
    assert_ne!(a, b);
    unsafe { h.free(b) };
    unsafe { h.free(keep.as_ptr()) };
}

#[test]
fn meta_areas_come_from_brk_with_a_guard_page_below() {
    set_brk_fail(false);
    let h = heap();
    let p = h.malloc(32).unwrap();
    let s = h.stats();
    assert_eq!((s.brk_areas, s.meta_areas), (1, 1));
    let (base, _) = brk_region();
    let guard = (base + 123 + 4095) & !4095;
    // the page at the old break is PROT_NONE: touching it faults
    let r = in_child(|| unsafe {
        std::ptr::read_volatile(std::ptr::with_exposed_provenance::<u8>(guard));
    });
    assert_eq!(r, Err(libc::SIGSEGV));
    // the meta area right above it is usable
    assert_eq!(
        in_child(|| unsafe {
            std::ptr::read_volatile(std::ptr::with_exposed_provenance::<u8>(guard + 4096));
        }),
        Ok(0)
    );
    // many more metas: areas keep coming from the break
    let v: Vec<_> = (0..2000).map(|_| h.malloc(5000).unwrap()).collect();
    assert!(h.stats().brk_areas > 1);
    h.walk().unwrap();
    for q in v {
        unsafe { h.free(q.as_ptr()) };
    }
    unsafe { h.free(p.as_ptr()) };
    h.walk().unwrap();
}

#[test]
fn meta_areas_fall_back_to_mmap_when_brk_fails() {
    set_brk_fail(true);
    let h = heap();
    let v: Vec<_> = (0..500).map(|i| h.malloc(i * 7).unwrap()).collect();
    let s = h.stats();
    assert_eq!(s.brk_areas, 0);
    assert!(s.meta_areas >= 1);
    h.walk().unwrap();
    for p in v {
        unsafe { h.free(p.as_ptr()) };
    }
    set_brk_fail(false);
}

#[test]
fn medium_churn_costs_no_syscall_per_free() {
    let h = heap();
    let mut r = Rng(7);
    let mut live: Vec<*mut u8> = Vec::new();
    for _ in 0..64 {
        live.push(h.malloc(8192 + r.below(MEDIUM) as usize).unwrap().as_ptr());
    }
    let before = calls();
    let rounds = 20_000;
    for _ in 0..rounds {
        let i = r.below(live.len() as u64) as usize;
        unsafe { h.free(live[i]) };
        let n = 8192 + r.below(MEDIUM) as usize;
        live[i] = h.malloc(n).unwrap().as_ptr();
        unsafe { *live[i] = 1 };
    }
    let c = calls();
    let syscalls = (c.release - before.release)
        + (c.mmap - before.mmap)
        + (c.mremap - before.mremap)
        + (c.munmap - before.munmap)
        + (c.mprotect - before.mprotect);
    println!(
        "{rounds} frees of 8K-128K blocks: {syscalls} memory syscalls ({:?})",
        c
    );
    // mallocng: about 1.1 per free here (a single-slot mapping per block, unmapped on
    // free); the mapping cache brings it to about 0.13.
    assert!(
        syscalls * 5 < rounds,
        "{syscalls} syscalls for {rounds} frees"
    );
    h.walk().unwrap();
    for p in live {
        unsafe { h.free(p) };
    }
}

#[test]
fn cold_free_pages_in_medium_slots_are_given_back() {
    let h = heap();
    // many 20 KiB blocks; keep every 8th so no group can be unmapped whole
    let v: Vec<_> = (0..800)
        .map(|_| h.malloc(20 << 10).unwrap().as_ptr())
        .collect();
    for &p in &v {
        unsafe { p.write_bytes(0xab, 20 << 10) };
    }
    let before = calls();
    for (i, &p) in v.iter().enumerate() {
        if i % 8 != 0 {
            unsafe { h.free(p) };
        }
    }
    // a further churn elsewhere advances the sweep clock past the cold slots
    for _ in 0..2000 {
        let p = h.malloc(9000).unwrap().as_ptr();
        unsafe { h.free(p) };
    }
    let c = calls();
    let released = c.released_bytes - before.released_bytes;
    println!(
        "released {released} bytes in {} calls",
        c.release - before.release
    );
    // 700 freed blocks, 16 KiB of whole pages each at least
    assert!(released >= 400 * 16384, "released only {released} bytes");
    h.walk().unwrap();
    for (i, &p) in v.iter().enumerate() {
        if i % 8 == 0 {
            unsafe { h.free(p) };
        }
    }
    h.walk().unwrap();
}

#[test]
fn a_bouncing_class_keeps_its_last_group() {
    let h = heap();
    // a class whose first group is a mapping of its own
    let n = class_size(30) - IB - CANARY_ROOM;
    let before = calls();
    for _ in 0..1000 {
        let p = h.malloc(n).unwrap().as_ptr();
        unsafe { h.free(p) };
    }
    let maps = calls().mmap - before.mmap;
    assert!(maps < 150, "{maps} mmaps for 1000 malloc/free pairs");
}

#[test]
fn large_blocks_are_mapped_alone_and_remapped_on_realloc() {
    let h = heap();
    let _first = h.malloc(1);
    let before = calls();
    let p = h.malloc(1 << 20).unwrap().as_ptr();
    assert_eq!(calls().mmap - before.mmap, 1);
    assert!(unsafe { h.is_allzero(p) });
    unsafe { p.write_bytes(0x5a, 1 << 20) };
    let q = unsafe { h.realloc(p, 8 << 20) }.unwrap().as_ptr();
    assert!(calls().mremap - before.mremap >= 1);
    assert!((0..1 << 20).all(|i| unsafe { *q.add(i) } == 0x5a));
    // shrink, still above the threshold: mremap in place, check byte rewritten
    let q = unsafe { h.realloc(q, 200_000) }.unwrap().as_ptr();
    assert_eq!(unsafe { h.usable_size(q) }, 200_000);
    h.walk().unwrap();
    // below the threshold: copied into a slot
    let s = unsafe { h.realloc(q, 1000) }.unwrap().as_ptr();
    assert!((0..1000).all(|i| unsafe { *s.add(i) } == 0x5a));
    assert_eq!(h.walk().unwrap().large, 0);
    unsafe { h.free(s) };
    // a freed large block is kept, its data made a guard (no memory, faults on use), and
    // the next block of the same span reuses it whole: no munmap, no mmap
    let p = h.malloc(1 << 20).unwrap().as_ptr();
    let c = calls();
    unsafe { h.free(p) };
    assert_eq!((calls().munmap, calls().guard), (c.munmap, c.guard + 1));
    let r = in_child(move || unsafe {
        std::ptr::read_volatile(p);
    });
    assert_eq!(
        r,
        Err(libc::SIGSEGV),
        "use after free of a cached block faults"
    );
    // the block freed last is not the next one handed out: a write through the dangling
    // `p` still faults once `q` is made...
    let q = h.malloc(1 << 20).unwrap().as_ptr();
    assert_ne!(q, p, "the block freed last is not reused at once");
    let r = in_child(move || unsafe { p.add(65537).write_volatile(1) });
    assert_eq!(r, Err(libc::SIGSEGV), "a write after free lands in a guard");
    // ...and once another is freed after it, `p`'s mapping comes back for the next block
    // of its span, whole: no munmap, no mmap (with the quarantine, a few frees later)
    unsafe { h.free(q) };
    let c = calls();
    let q = h.malloc(1 << 20).unwrap().as_ptr();
    if ngmalloc_core::large::LARGE_HELD == 1 {
        assert_eq!(q, p, "the cached block came back");
        assert_eq!(calls().mmap, c.mmap);
    }
    assert!(unsafe { h.is_allzero(q) });
    assert!(
        (0..1 << 20)
            .step_by(4096)
            .all(|i| unsafe { *q.add(i) } == 0)
    );
    unsafe { h.free(q) };
}

#[test]
fn realloc_stays_in_place_within_the_class() {
    let h = heap();
    // (sizes of one class, 112 bytes, with the canary room an option may add)
    let p = h.malloc(100 - CANARY_ROOM).unwrap().as_ptr();
    let q = unsafe { h.realloc(p, 104 - CANARY_ROOM) }.unwrap().as_ptr();
    assert_eq!(p, q);
    let q = unsafe { h.realloc(q, 90 - CANARY_ROOM) }.unwrap().as_ptr();
    assert_eq!(p, q);
    // to a much smaller class: moves, so memory isn't wasted
    let r = unsafe { h.realloc(q, 8) }.unwrap().as_ptr();
    assert_ne!(q, r);
    unsafe { h.free(r) };
}

#[test]
fn every_power_of_two_alignment() {
    let h = heap();
    let mut v = Vec::new();
    let mut al = 1;
    while al <= 1 << 30 {
        for n in [0, 1, 100, 5000, 200_000] {
            let p = h.aligned_alloc(al, n).unwrap().as_ptr();
            assert_eq!(p.addr() % al, 0, "align {al}");
            assert_eq!(unsafe { h.usable_size(p) }, n);
            unsafe { p.write_bytes(1, n) };
            v.push(p);
        }
        h.walk().unwrap();
        al <<= 1;
    }
    assert!(h.aligned_alloc(MAX_ALIGN * 2, 1).is_none());
    for p in v {
        unsafe { h.free(p) };
    }
    assert_eq!(h.walk().unwrap().in_use, 0);
}

#[test]
fn calloc_zeroes_reused_memory_and_skips_fresh_maps() {
    let h = heap();
    for n in [10, 1000, 60_000, 300_000] {
        let p = h.malloc(n).unwrap().as_ptr();
        unsafe { p.write_bytes(0xff, n) };
        unsafe { h.free(p) };
        let q = h.calloc(n).unwrap().as_ptr();
        assert!((0..n).all(|i| unsafe { *q.add(i) } == 0));
        unsafe { h.free(q) };
    }
}

#[test]
fn donated_memory_is_used_and_bad_ranges_ignored() {
    let h = heap();
    let _ = h.malloc(1).unwrap();
    let buf: &'static mut [u8] = Box::leak(vec![0u8; 70_000].into_boxed_slice());
    let (lo, hi) = (buf.as_mut_ptr(), buf.as_mut_ptr().wrapping_add(buf.len()));
    unsafe {
        h.donate(std::ptr::null_mut(), hi);
        h.donate(hi, lo);
        h.donate(lo, lo);
        h.donate(lo, lo.wrapping_add(3));
    }
    h.walk().unwrap();
    unsafe { h.donate(lo, hi) };
    h.walk().unwrap();
    // the largest donated slot: class 47 (8191 units) fits 70000 bytes? no: the biggest
    // class that fits, which a request of that class then gets
    let mut from_donation = 0;
    for sc in (3..NUM_CLASSES).step_by(4) {
        let p = h
            .malloc(class_size(sc) - IB - CANARY_ROOM)
            .unwrap()
            .as_ptr();
        if p >= lo && p < hi {
            from_donation += 1;
        }
    }
    assert!(from_donation >= 1);
    h.walk().unwrap();
}

#[test]
fn out_of_memory_returns_none_and_keeps_the_heap_sound() {
    let h = heap();
    let keep: Vec<_> = (0..50).map(|i| h.malloc(i * 100).unwrap()).collect();
    for n in [16, 5000, 50_000, 1 << 20] {
        fail_maps_after(0);
        let mut got = 0;
        for _ in 0..200 {
            if let Some(p) = h.malloc(n) {
                got += 1;
                unsafe { h.free(p.as_ptr()) };
            }
        }
        stop_failing();
        let _ = got;
        h.walk().unwrap();
        // and it all works again afterwards
        let p = h.malloc(n).unwrap();
        unsafe { h.free(p.as_ptr()) };
    }
    // realloc growth that cannot be served leaves the block alone
    let p = h.malloc(1 << 20).unwrap().as_ptr();
    unsafe { p.write_bytes(3, 1 << 20) };
    fail_maps_after(0);
    assert!(unsafe { h.realloc(p, 64 << 20) }.is_none());
    stop_failing();
    assert!((0..1 << 20).all(|i| unsafe { *p.add(i) } == 3));
    unsafe { h.free(p) };
    assert!(h.malloc(usize::MAX - 100).is_none());
    assert!(h.malloc(usize::MAX / 2).is_none());
    for p in keep {
        unsafe { h.free(p.as_ptr()) };
    }
    h.walk().unwrap();
}

#[test]
fn a_far_aligned_large_block_survives_an_mremap_growth() {
    // Regression (found by the ops fuzz body): the pointer of a large block aligned more
    // than 1 MiB into its mapping keeps a 32-bit offset, marked by the complement of its
    // check byte; growing it by mremap rewrote the plain check byte, and the next call on
    // the block crashed on a header it had written itself.
    let h = heap();
    for align in [1 << 21, 1 << 22] {
        let p = h.aligned_alloc(align, 900_000).unwrap().as_ptr();
        assert_eq!(p.addr() % align, 0);
        unsafe { p.write_bytes(7, 900_000) };
        let q = unsafe { h.realloc(p, 3 << 20) }.unwrap().as_ptr();
        assert_eq!(unsafe { h.usable_size(q) }, 3 << 20);
        assert!((0..900_000).all(|i| unsafe { *q.add(i) } == 7));
        let r = unsafe { h.realloc(q, 2 << 20) }.unwrap().as_ptr();
        assert_eq!(unsafe { h.usable_size(r) }, 2 << 20);
        unsafe { h.free(r) };
    }
    h.walk().unwrap();
}

#[test]
fn a_large_block_grown_where_the_page_map_cannot_follow_stays_where_it_was() {
    // Regression (c-tests/oom.c under RLIMIT_DATA, about once in 100 runs): a grown block
    // that mremap moved into address space with no page-map leaf yet, and no memory left
    // for one, could never have been freed, so realloc crashed. Its destination is now
    // reserved and entered in the map before the move. 4 GiB of address space (no
    // memory) spans windows no leaf covers; the first mapping call (the reservation)
    // succeeds, and the next (the leaf, or else the move) fails.
    let h = heap();
    let n = 3 << 20;
    let p = h.malloc(n).unwrap().as_ptr();
    unsafe { p.write_bytes(7, n) };
    fail_maps_after(1);
    let q = unsafe { h.realloc(p, 4 << 30) };
    stop_failing();
    assert!(q.is_none(), "no memory for its map entries: realloc fails");
    assert_eq!(unsafe { h.usable_size(p) }, n);
    assert!((0..n).all(|i| unsafe { *p.add(i) } == 7));
    h.walk().unwrap();
    // with memory, the same growth moves it, and it is heap memory where it lands
    let q = unsafe { h.realloc(p, 4 << 30) }.unwrap().as_ptr();
    assert!((0..n).all(|i| unsafe { *q.add(i) } == 7));
    unsafe { q.add((4 << 30) - 1).write(1) };
    h.walk().unwrap();
    unsafe { h.free(q) };
    assert_eq!(h.walk().unwrap().in_use, 0);
}

#[test]
fn a_failing_mapping_first_gives_up_the_cached_ones() {
    // Regression: freed large blocks and groups keep their address space in the map
    // caches, which counts against RLIMIT_AS/RLIMIT_DATA; under a limit, a new mapping
    // failed while they were kept (found by c-tests/oom.c).
    let h = heap();
    let big: Vec<_> = (0..5).map(|_| h.malloc(8 << 20).unwrap()).collect();
    let groups: Vec<_> = (0..64).map(|_| h.malloc(20_000).unwrap()).collect();
    for p in big.into_iter().chain(groups) {
        unsafe { h.free(p.as_ptr()) };
    }
    h.walk().unwrap();
    // the next mapping fails once, as under a limit the cached mappings fill
    let unmapped = calls().munmap;
    inject_fault(0, false);
    let p = h
        .malloc(24 << 20)
        .expect("the cached mappings are given up first");
    inject_fault(u64::MAX, false);
    assert!(calls().munmap > unmapped);
    unsafe { h.free(p.as_ptr()) };
    // the same for a group's mapping
    let q = h.malloc(30_000).unwrap();
    let r = h.malloc(8 << 20).unwrap();
    unsafe { h.free(r.as_ptr()) };
    inject_fault(0, false);
    let more: Vec<_> = (0..40).map(|_| h.malloc(30_000).unwrap()).collect();
    inject_fault(u64::MAX, false);
    for p in more.into_iter().chain([q]) {
        unsafe { h.free(p.as_ptr()) };
    }
    h.walk().unwrap();
}

#[test]
fn threads_allocate_and_free_across_each_other() {
    let h: Arc<common::TestHeap> = Arc::from(heap());
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    let producers: Vec<_> = (0..3)
        .map(|t| {
            let h = h.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut r = Rng(t + 1);
                let mut mine = Vec::new();
                for i in 0..20_000 {
                    let n = r.below(if i % 100 == 0 { 200_000 } else { 2000 }) as usize;
                    let p = h.malloc(n).unwrap().as_ptr();
                    unsafe { p.write_bytes(t as u8, n.min(64)) };
                    if r.chance(50) {
                        tx.send(p.addr()).unwrap();
                    } else {
                        mine.push(p);
                    }
                    if mine.len() > 100 {
                        let q = mine.swap_remove(r.below(100) as usize);
                        unsafe { h.free(q) };
                    }
                }
                for q in mine {
                    unsafe { h.free(q) };
                }
            })
        })
        .collect();
    drop(tx);
    let consumer = {
        let h = h.clone();
        std::thread::spawn(move || {
            for a in rx {
                unsafe { h.free(std::ptr::with_exposed_provenance_mut(a)) };
            }
        })
    };
    for p in producers {
        p.join().unwrap();
    }
    consumer.join().unwrap();
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.large), (0, 0));
}

/// Each corruption crashes at once with SIGILL (the trap), not later.
#[test]
fn corruption_crashes_at_once() {
    type Case = (&'static str, Box<dyn Fn()>);
    let cases: Vec<Case> = vec![
        (
            "double free small",
            Box::new(|| {
                let h = heap();
                let _k = h.malloc(10);
                let p = h.malloc(10).unwrap().as_ptr();
                unsafe { h.free(p) };
                unsafe { h.free(p) };
            }),
        ),
        (
            "double free large",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(1 << 20).unwrap().as_ptr();
                let q = h.malloc(1 << 20).unwrap().as_ptr();
                unsafe { h.free(p) };
                let _ = q;
                // the mapping is gone: faults (SIGSEGV) rather than traps
                unsafe { h.free(p) };
            }),
        ),
        (
            "overflow by one nonzero byte",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(20).unwrap().as_ptr();
                // (a changed byte: a blind value matches the check byte once in 254)
                unsafe { *p.add(20) ^= 1 };
                unsafe { h.free(p) };
            }),
        ),
        (
            "overflow by a NUL, with slack in the slot",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(20).unwrap().as_ptr();
                unsafe { *p.add(20) = 0 };
                unsafe { h.free(p) };
            }),
        ),
        (
            "overflow past the first check byte: 4 of 4 reserved bytes",
            Box::new(|| overflow_at(8, 12)),
        ),
        (
            "overflow past the first check byte: 4 of 8 reserved bytes (extended count)",
            Box::new(|| overflow_at(20, 23)),
        ),
        (
            "overflow past the first check byte: 8 of 12 reserved bytes",
            Box::new(|| overflow_at(16, 23)),
        ),
        (
            "overflow by a NUL into the next slot's header (exact fit)",
            Box::new(|| {
                let h = heap();
                // 28 bytes fill a 32-byte slot: the next byte is the next header's flag
                let p = h.malloc(28).unwrap().as_ptr();
                let _q = h.malloc(28).unwrap();
                unsafe { *p.add(28) = 0 };
                unsafe { h.free(p) };
            }),
        ),
        (
            "overflow by a NUL, large block",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(300_000).unwrap().as_ptr();
                unsafe { *p.add(300_000) = 0 };
                unsafe { h.free(p) };
            }),
        ),
        (
            "overflow by a NUL caught by realloc",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(100).unwrap().as_ptr();
                unsafe { *p.add(100) = 0 };
                let _ = unsafe { h.realloc(p, 5000) };
            }),
        ),
        (
            "interior pointer",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(100).unwrap().as_ptr();
                unsafe { h.free(p.add(32)) };
            }),
        ),
        (
            "unaligned pointer",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(100).unwrap().as_ptr();
                unsafe { h.free(p.add(1)) };
            }),
        ),
        (
            "forged header",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(100).unwrap().as_ptr();
                // (a changed byte: a blind value matches a keyed one once in 256)
                unsafe { *p.sub(3) ^= 7 };
                unsafe { h.free(p) };
            }),
        ),
        (
            // the decoder must not follow a forged 16-bit offset out of the heap (it would
            // fault, or read whatever is mapped there): the page map rejects it, even when
            // the header is keyed right (as by an attacker who knows the secret)
            "forged offset out of the heap",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(100).unwrap().as_ptr();
                let key = ngmalloc_core::slot::Key::of(h.secret(), p);
                unsafe {
                    ngmalloc_core::slot::set_header(p, key, 0, 1, 0xfffe);
                    h.free(p)
                };
            }),
        ),
        (
            "forged 32-bit offset out of the heap",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(100).unwrap().as_ptr();
                let key = ngmalloc_core::slot::Key::of(h.secret(), p);
                unsafe {
                    ngmalloc_core::slot::set_header(p, key, 0, 1, 0x4000_0000);
                    h.free(p)
                };
            }),
        ),
        (
            "forged meta pointer in the group header",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(100).unwrap().as_ptr();
                let s = unsafe { ngmalloc_core::slot::find_slot(p, h.secret()) }.unwrap();
                let g = unsafe { (*s.meta).mem }.cast::<usize>();
                unsafe {
                    *g = 0x7000_0000_0018; // a record's place in an unmapped page
                    h.free(p)
                };
            }),
        ),
        (
            "realloc of freed",
            Box::new(|| {
                let h = heap();
                let _k = h.malloc(10);
                let p = h.malloc(10).unwrap().as_ptr();
                unsafe { h.free(p) };
                let _ = unsafe { h.realloc(p, 20) };
            }),
        ),
        (
            "usable size of freed",
            Box::new(|| {
                let h = heap();
                let _k = h.malloc(10);
                let p = h.malloc(10).unwrap().as_ptr();
                unsafe { h.free(p) };
                let _ = unsafe { h.usable_size(p) };
            }),
        ),
        (
            "pointer never allocated",
            Box::new(|| {
                let h = heap();
                let _k = h.malloc(10);
                let mut buf = [0u64; 64];
                unsafe { h.free(buf.as_mut_ptr().add(8).cast()) };
            }),
        ),
    ];
    for (name, f) in cases {
        let r = in_child(f);
        // (a double free of a large block too: its data, guarded once freed, is no longer
        // in the page map, so the header is not even read). With harden-string-end the
        // byte after the data of a small block is 0: a NUL written there changes nothing,
        // by design (a large block keeps its check byte).
        let seen = !(STRING_END
            && name.starts_with("overflow by a NUL")
            && !name.ends_with("large block"));
        assert_eq!(r, if seen { Err(SIGILL) } else { Ok(0) }, "{name}");
    }
}

/// Allocate `n` bytes (a size whose slot has no room for offset cycling, so the data ends
/// `reserved` bytes before the slot's end) and change the byte at index `i` past its end,
/// then free it.
fn overflow_at(n: usize, i: usize) {
    let h = heap();
    let p = h.malloc(n).unwrap().as_ptr();
    // (a changed byte: a blind value matches the check byte once in 254)
    unsafe { *p.add(i) ^= 1 };
    unsafe { h.free(p) };
}

#[test]
fn the_walker_reports_corruption() {
    let h = heap();
    let p = h.malloc(20).unwrap().as_ptr();
    h.walk().unwrap();
    let canary = unsafe { *p.add(20) };
    assert_eq!(
        canary == 0,
        STRING_END,
        "the byte after the data is a nonzero canary (0 with string-end)"
    );
    unsafe { *p.add(20) = canary ^ 1 };
    let v = h.walk().unwrap_err();
    assert_eq!(v.corrupt, Some(Corrupt::CheckByte), "{v:?}");
    unsafe { *p.add(20) = canary };
    h.walk().unwrap();
    unsafe { *p.sub(2) ^= 1 };
    assert!(h.walk().is_err());
    unsafe { *p.sub(2) ^= 1 };
    h.walk().unwrap();
    // a freed slot's first bytes, written through a dangling pointer (harden-freed-word;
    // with zero-on-free, the slot's wipe is not the walker's to check)
    let q = h.malloc(20).unwrap().as_ptr();
    unsafe { h.free(q) };
    h.walk().unwrap();
    unsafe { *q.add(3) ^= 1 };
    if ngmalloc_core::slot::MARKED_STRIDE != 0 && !cfg!(feature = "harden-quarantine") {
        let v = h.walk().unwrap_err();
        assert_eq!(v.what, "a freed slot written after its free", "{v:?}");
    }
}

/// Regression (found by git under LD_PRELOAD): a single-slot group in a cached mapping
/// larger than its class cycles offsets through the whole mapping; every such pointer
/// must still validate. The offset of a fresh slot comes from the heap's cycle counter, so
/// drive that counter across 255 (the class-27 slot size in units) before creating it.
#[test]
#[cfg_attr(
    feature = "harden-quarantine",
    ignore = "the quarantine holds the freed slot, so its group is never freed and recreated"
)]
fn single_slot_groups_in_larger_cached_mappings_keep_valid_offsets() {
    for bump in 248..260 {
        let h = heap();
        // an 8 KiB single-slot group (class 31), freed into the mapping cache: cycle = 1
        let p = h.malloc(8000).unwrap().as_ptr();
        unsafe { h.free(p) };
        // each large allocation advances the cycle counter by one
        for _ in 0..bump {
            let q = h.malloc(200_000).unwrap().as_ptr();
            unsafe { h.free(q) };
        }
        // 4000 bytes: a single 4080-byte slot, in the cached 8 KiB mapping
        let q = h.malloc(4000).unwrap().as_ptr();
        let s = unsafe { ngmalloc_core::slot::find_slot(q, h.secret()) }.expect("valid header");
        assert_eq!(s.stride, 8192 - 16, "served from the cached mapping");
        assert_eq!(unsafe { h.usable_size(q) }, 4000);
        h.walk().unwrap();
        unsafe { h.free(q) };
    }
}

/// Individually mapped blocks sit between guards: an access just past the end or before
/// the header faults, also after realloc growth and shrink; with MADV_GUARD_INSTALL
/// (this kernel) and with the PROT_NONE fallback (as on a pre-6.13 kernel).
#[test]
fn large_blocks_are_guarded_with_madvise_and_with_the_fallback() {
    type Probe = fn(&common::TestHeap) -> *const u8;
    let probes: [(&str, Probe); 5] = [
        ("past the end", |h| {
            let p = h.malloc(256 << 10).unwrap().as_ptr();
            p.wrapping_add((256 << 10) + 32)
        }),
        ("before the start", |h| {
            let p = h.malloc(256 << 10).unwrap().as_ptr();
            p.wrapping_sub(4097)
        }),
        ("a page past the end after growth", |h| {
            let p = h.malloc(256 << 10).unwrap().as_ptr();
            let q = unsafe { h.realloc(p, 3 << 20) }.unwrap().as_ptr();
            q.wrapping_add((3 << 20) + 4096)
        }),
        // mremap keeps the data where it is in its pages: after a resize the guard is
        // within a page of the end (a fresh block's is within 20 bytes)
        ("a page past the end after a shrink", |h| {
            let p = h.malloc(1 << 20).unwrap().as_ptr();
            let q = unsafe { h.realloc(p, 200_000) }.unwrap().as_ptr();
            q.wrapping_add(200_000 + 4096)
        }),
        ("before the start after growth", |h| {
            let p = h.malloc(256 << 10).unwrap().as_ptr();
            let q = unsafe { h.realloc(p, 3 << 20) }.unwrap().as_ptr();
            q.wrapping_sub(4097)
        }),
    ];
    for guards in [Guards::Real, Guards::Missing, Guards::Fake] {
        let fallback = guards != Guards::Real;
        for (name, probe) in probes {
            // the block itself is accessible...
            let r = in_child(move || {
                set_guards(guards);
                let h = heap();
                let p = probe(&h);
                let _ = p;
                let before = calls();
                let q = h.malloc(300_000).unwrap().as_ptr();
                unsafe { q.write_bytes(1, 300_000) };
                // the madvise path used no mprotect; the fallback did
                let c = calls();
                let used_mprotect = c.mprotect > before.mprotect;
                if used_mprotect != fallback {
                    unsafe { libc::_exit(3) };
                }
            });
            assert_eq!(r, Ok(0), "{name}: {guards:?}");
            // ...and the byte beyond it faults
            let r = in_child(move || {
                set_guards(guards);
                let h = heap();
                let p = probe(&h);
                unsafe { std::ptr::read_volatile(p) };
            });
            assert_eq!(r, Err(libc::SIGSEGV), "{name}: {guards:?}");
        }
    }
}

/// Under qemu-user `MADV_GUARD_INSTALL` succeeds and installs nothing, so it zaps nothing
/// either: the heap must notice (the kernel's write into the "guard" succeeds) and use
/// PROT_NONE guards, whose blocks are unmapped when freed, never cached as zapped. Were the
/// cache used, a reused block would keep its old bytes though marked zeroed.
#[test]
fn fake_guards_are_detected_and_large_blocks_reused_clean() {
    let r = in_child(|| {
        set_guards(Guards::Fake);
        let h = heap();
        let mut rng = Rng(99);
        for round in 0..300 {
            let n = MMAP_THRESHOLD + (rng.next() as usize % (3 << 20));
            let p = if round % 2 == 0 {
                h.calloc(n)
            } else {
                h.malloc(n)
            };
            let p = p.unwrap().as_ptr();
            if round % 2 == 0 && (0..n).step_by(509).any(|i| unsafe { *p.add(i) } != 0) {
                unsafe { libc::_exit(3) };
            }
            unsafe {
                p.write_bytes(0xa5, n);
                h.free(p);
            }
            h.walk().expect("walk");
        }
        // the guards are PROT_NONE sub-mappings
        let before = calls();
        let p = h.malloc(300_000).unwrap().as_ptr();
        if calls().mprotect == before.mprotect {
            unsafe { libc::_exit(4) };
        }
        unsafe { h.free(p) };
    });
    assert_eq!(r, Ok(0));
}

/// The options whose point is the order of reuse turn the thread caches off: with them
/// every call takes the locked paths, and a thread asking for a cache gets none.
#[test]
#[cfg(any(feature = "harden-random-slots", feature = "harden-quarantine"))]
fn caches_are_off_with_random_slots_or_quarantine() {
    const { assert!(!ngmalloc_core::tcache::CACHE) };
    let h = heap();
    assert!(h.cache_create().is_null());
}

/// `malloc(0)` returns distinct pointers into a region that is never accessible: a read or
/// a write through one faults, a second free or a stale use crashes, `realloc` to and from
/// 0 moves between it and the slots, and the thread cache's paths agree with the locked
/// ones.
#[test]
fn malloc_zero_points_where_nothing_can_be_touched() {
    let h = heap();
    // (no cache with the options that turn caches off: then the locked paths again)
    let tc = h.cache_create();
    let mut tc = (!tc.is_null()).then(|| unsafe { &mut *tc });
    let mut ps: Vec<*mut u8> = (0..100).map(|_| h.malloc(0).unwrap().as_ptr()).collect();
    ps.extend((0..100).map(|_| h.malloc_with(tc.as_deref_mut(), 0).unwrap().as_ptr()));
    let mut sorted = ps.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 200, "distinct pointers");
    for &p in &ps {
        assert_eq!(p.addr() % 16, 0);
        assert_eq!(unsafe { h.usable_size(p) }, 0);
        // not a slot of any group: the decoder does not know it
        assert_eq!(
            unsafe { ngmalloc_core::slot::find_slot(p, h.secret()) }.err(),
            Some(Corrupt::Foreign)
        );
    }
    assert_eq!(h.walk().unwrap().in_use, 200);
    // realloc to 0 gives a zero-size pointer and frees the block; from 0, a real block
    let q = h.malloc(40).unwrap().as_ptr();
    let z = unsafe { h.realloc(q, 0) }.unwrap().as_ptr();
    assert_eq!(unsafe { h.usable_size(z) }, 0);
    assert!(!sorted.contains(&z));
    let r = unsafe { h.realloc(z, 24) }.unwrap().as_ptr();
    assert_eq!(unsafe { h.usable_size(r) }, 24);
    unsafe { r.write_bytes(1, 24) };
    unsafe { h.free(r) };
    for (i, &p) in ps.iter().enumerate() {
        if i % 2 == 0 {
            unsafe { h.free(p) };
        } else {
            unsafe { h.free_with(tc.as_deref_mut(), p) };
        }
    }
    assert_eq!(h.walk().unwrap().in_use, 0);
    // every pointer of the region, then a normal slot (as mallocng's malloc(0))
    let all: Vec<*mut u8> = (0..ngmalloc_core::zero_size::ZERO_SLOTS + 1)
        .map(|_| h.malloc(0).unwrap().as_ptr())
        .collect();
    let last = *all.last().unwrap();
    assert!(unsafe { ngmalloc_core::slot::find_slot(last, h.secret()) }.is_ok());
    assert_eq!(unsafe { h.usable_size(last) }, 0);
    for p in all {
        unsafe { h.free(p) };
    }
    assert_eq!(h.walk().unwrap().in_use, 0);

    type Fault = (&'static str, Box<dyn Fn()>, i32);
    let faults: [Fault; 5] = [
        (
            "read",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(0).unwrap().as_ptr();
                let _ = unsafe { p.read_volatile() };
            }),
            libc::SIGSEGV,
        ),
        (
            "write",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(0).unwrap().as_ptr();
                unsafe { p.write_volatile(1) };
            }),
            libc::SIGSEGV,
        ),
        (
            "double free",
            Box::new(|| {
                let h = heap();
                let tc = h.cache_create();
                let mut tc = (!tc.is_null()).then(|| unsafe { &mut *tc });
                let p = h.malloc(0).unwrap().as_ptr();
                unsafe { h.free_with(tc.as_deref_mut(), p) };
                unsafe { h.free_with(tc, p) };
            }),
            SIGILL,
        ),
        (
            "size of a freed one",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(0).unwrap().as_ptr();
                unsafe { h.free(p) };
                let _ = unsafe { h.usable_size(p) };
            }),
            SIGILL,
        ),
        (
            "free inside the region, not a pointer of it",
            Box::new(|| {
                let h = heap();
                let p = h.malloc(0).unwrap().as_ptr();
                unsafe { h.free(p.add(8)) };
            }),
            SIGILL,
        ),
    ];
    for (name, f, sig) in faults {
        assert_eq!(in_child(f), Err(sig), "{name}");
    }
}

/// `harden-freed-word`: a write through a dangling pointer into the first 8 bytes of a
/// freed small block crashes when the slot is handed out again (the freed word), on the locked path and the
/// thread cache's, whatever offset the block had in its slot; slots freed untouched are
/// handed out again and again as usual.
#[test]
#[cfg_attr(
    not(any(feature = "harden-freed-word", feature = "harden-zero-on-free")),
    ignore = "the freed word is harden-freed-word's (zero-on-free checks the whole slot)"
)]
#[cfg_attr(
    feature = "harden-quarantine",
    ignore = "the quarantine holds the freed slot back past the test's allocations"
)]
fn a_write_after_free_into_a_small_block_crashes_at_its_reuse() {
    let h = heap();
    let tc = h.cache_create();
    let mut tc = (!tc.is_null()).then(|| unsafe { &mut *tc });
    for n in [1, 8, 24, 100, 1000, 4000] {
        for _ in 0..300 {
            let p = h.malloc(n).unwrap().as_ptr();
            let q = h.malloc_with(tc.as_deref_mut(), n).unwrap().as_ptr();
            unsafe { p.write_bytes(0xa5, n) };
            unsafe { q.write_bytes(0x5a, n) };
            unsafe { h.free(p) };
            unsafe { h.free_with(tc.as_deref_mut(), q) };
        }
    }
    assert_eq!(h.walk().unwrap().in_use, 0);
    for n in [8, 100, 1000] {
        for (at, what) in [(0, "first byte"), (7, "eighth byte")] {
            for cached in [false, true] {
                let r = in_child(|| {
                    let h = heap();
                    let tc = h.cache_create();
                    let mut tc = (!tc.is_null() && cached).then(|| unsafe { &mut *tc });
                    let keep = h.malloc(n);
                    // blocks first: past the locked path's first groups of a coarser
                    // class, which later mallocs of the size leave alone
                    let before: Vec<_> = (0..100).map(|_| h.malloc(n)).collect();
                    let p = h.malloc_with(tc.as_deref_mut(), n).unwrap().as_ptr();
                    unsafe {
                        h.free_with(tc.as_deref_mut(), p);
                        let b = p.offset(at);
                        b.write_volatile(b.read_volatile() ^ 0x41);
                    }
                    // enough for the freed slot to be handed out again (the locked path
                    // takes freed slots once a group's fresh ones are gone)
                    let after: Vec<_> = (0..300)
                        .map(|_| h.malloc_with(tc.as_deref_mut(), n))
                        .collect();
                    let _ = (keep, before, after);
                });
                assert_eq!(r, Err(SIGILL), "{n} bytes, {what}, cached {cached}");
            }
        }
    }
}

#[test]
fn object_size_bounds_interior_pointers_and_stops_on_dangling_ones() {
    use ngmalloc_core::object_size::UNKNOWN;
    let h = heap();
    let mut kept = Vec::new();
    for n in [1, 16, 20, 100, 1000, 5000, 70_000, 300_000] {
        for _ in 0..3 {
            let p = h.malloc(n).unwrap().as_ptr();
            unsafe {
                assert_eq!(h.object_size(p), n, "{n}");
                assert_eq!(h.object_size(p.add(n / 2)), n - n / 2, "{n}");
                assert_eq!(h.object_size(p.add(n)), 0, "{n}: one past the end");
            }
            kept.push(p);
        }
    }
    let z = h.malloc(0).unwrap().as_ptr();
    let local = 0u64;
    unsafe {
        assert_eq!(h.object_size(z), 0);
        assert_eq!(h.object_size(std::ptr::null()), 0);
        assert_eq!(h.object_size((&raw const local).cast()), UNKNOWN);
        h.free(z);
        for p in kept {
            h.free(p);
        }
    }
    h.walk().unwrap();
    for (what, n) in [("small", 16), ("medium", 5000), ("large", 300_000)] {
        let r = in_child(move || {
            let h = heap();
            let _keep = h.malloc(n);
            let p = h.malloc(n).unwrap().as_ptr();
            unsafe { h.free(p) };
            unsafe { h.object_size(p.add(1)) };
        });
        // (a freed large block is guarded and out of the page map: unknown memory)
        let want = if n > MMAP_THRESHOLD {
            Ok(0)
        } else {
            Err(SIGILL)
        };
        assert_eq!(r, want, "object_size of a freed {what} block");
    }
}
