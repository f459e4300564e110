//! The heap under Miri (`ci/miri.sh`: `cargo +nightly miri test` with
//! `-Zmiri-strict-provenance`): a shadow-model run of every allocation call, through thread
//! caches and not, checked by the walker, on a backend Miri can run: mappings are
//! page-aligned allocations of the interpreter (Miri cannot make raw system calls), so
//! every pointer the heap makes keeps the provenance of a mapping and Miri checks each
//! access against it. Protections are not modelled (guards don't fault here: the native
//! tests cover them); pages given back read as zero, as after `MADV_DONTNEED`.
//! Runs natively too, in `make test`.
#![allow(clippy::undocumented_unsafe_blocks)]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;
use std::sync::Mutex;

use ngmalloc_core::Heap;
use ngmalloc_core::config::{IB, MMAP_THRESHOLD, NUM_CLASSES};
use ngmalloc_core::os::linux::FutexLock;
use ngmalloc_core::os::{Os, Prot};
use ngmalloc_core::size_class::class_size;

const PAGE: usize = 4096;

/// Live mappings (start, length): munmap and mremap must name one exactly.
static MAPS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

fn layout(len: usize) -> Layout {
    Layout::from_size_align(len, PAGE).unwrap()
}

struct MiriOs;

// SAFETY: mappings are fresh zeroed page-aligned allocations, unmapped only whole.
unsafe impl Os for MiriOs {
    const USE_BRK: bool = false;

    unsafe fn mmap(_at: *mut u8, len: usize, _prot: Prot, fixed: bool) -> Option<NonNull<u8>> {
        if fixed {
            return None; // only for brk's guard page, and there is no brk here
        }
        let p = NonNull::new(unsafe { alloc_zeroed(layout(len)) })?;
        MAPS.lock().unwrap().push((p.as_ptr().addr(), len));
        Some(p)
    }
    unsafe fn munmap(p: *mut u8, len: usize) {
        let mut maps = MAPS.lock().unwrap();
        let i = maps
            .iter()
            .position(|&m| m == (p.addr(), len))
            .unwrap_or_else(|| panic!("munmap of {p:?}+{len:#x}: not one whole mapping"));
        maps.swap_remove(i);
        unsafe { dealloc(p, layout(len)) };
    }
    unsafe fn mremap_to(p: *mut u8, old: usize, new: usize, to: *mut u8) -> bool {
        // the destination is one whole reservation here (zeroed, so the growth reads as
        // zero): the contents move over and the source goes
        assert!(MAPS.lock().unwrap().contains(&(to.addr(), new)));
        unsafe {
            to.copy_from_nonoverlapping(p, old.min(new));
            Self::munmap(p, old);
        }
        true
    }
    unsafe fn mprotect(_p: *mut u8, _len: usize, _prot: Prot) -> bool {
        true
    }
    fn now_ms() -> u64 {
        // (no system calls under Miri: a clock that ticks on every read)
        static T: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        T.fetch_add(7, std::sync::atomic::Ordering::Relaxed)
    }
    unsafe fn release(p: *mut u8, len: usize) -> bool {
        unsafe { p.write_bytes(0, len) };
        true
    }
    unsafe fn guard(p: *mut u8, len: usize, install: bool) -> bool {
        if install {
            unsafe { p.write_bytes(0, len) }; // installing zaps the pages
        }
        true
    }
    unsafe fn guard_faults(_p: *mut u8) -> bool {
        true // as a real marker, `guard` zaps (it cannot fault here)
    }
    unsafe fn brk(_to: usize) -> usize {
        0
    }
    fn page_size() -> usize {
        PAGE
    }
    fn random() -> u64 {
        0x0123_4567_89ab_cdef
    }
}

type H = Heap<MiriOs, FutexLock>;

/// Fewer steps under Miri, which interprets every access.
const STEPS: usize = if cfg!(miri) { 150 } else { 5000 };

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn size(r: &mut Rng) -> usize {
    match r.below(10) {
        0..=5 => r.below(300) as usize,
        6 => class_size(r.below(NUM_CLASSES as u64) as usize) - IB,
        7 | 8 => r.below(20_000) as usize,
        _ => MMAP_THRESHOLD + r.below(100_000) as usize,
    }
}

struct Block {
    p: *mut u8,
    len: usize,
    v: u8,
}

/// The first and last byte carry the block's mark (Miri is slow to check every byte; it
/// checks each access for provenance and bounds anyway).
fn mark(b: &Block) {
    if b.len != 0 {
        unsafe {
            *b.p = b.v;
            *b.p.add(b.len - 1) = b.v;
        }
    }
}

fn marked(b: &Block) -> bool {
    b.len == 0 || unsafe { *b.p == b.v && *b.p.add(b.len - 1) == b.v }
}

#[test]
fn a_shadow_model_run_under_strict_provenance() {
    let h: H = Heap::new(FutexLock::new());
    let mut caches = [h.cache_create(), h.cache_create()];
    let mut live: Vec<Block> = Vec::new();
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    for step in 0..STEPS {
        let v = step as u8 | 1;
        let tc = r.below(3) as usize;
        let cache = |caches: &mut [*mut ngmalloc_core::tcache::ThreadCache; 2]| {
            caches.get(tc).and_then(|c| unsafe { c.as_mut() })
        };
        match r.below(10) {
            0..=3 if live.len() < 60 => {
                let n = size(&mut r);
                let p = h.malloc_with(cache(&mut caches), n).unwrap().as_ptr();
                assert_eq!(unsafe { h.usable_size(p) }, n);
                live.push(Block { p, len: n, v });
                mark(&live[live.len() - 1]);
            }
            4 if live.len() < 60 => {
                let n = size(&mut r);
                let p = h.calloc(n).unwrap().as_ptr();
                assert!((0..n.min(64)).all(|i| unsafe { *p.add(i) } == 0));
                live.push(Block { p, len: n, v });
                mark(&live[live.len() - 1]);
            }
            5 if live.len() < 60 => {
                let (al, n) = (1usize << r.below(16), size(&mut r));
                let p = h.aligned_alloc(al, n).unwrap().as_ptr();
                assert_eq!(p.addr() % al, 0);
                live.push(Block { p, len: n, v });
                mark(&live[live.len() - 1]);
            }
            6 | 7 if !live.is_empty() => {
                let k = r.below(live.len() as u64) as usize;
                let n = size(&mut r);
                let q = unsafe { h.realloc(live[k].p, n) }.unwrap().as_ptr();
                let kept = unsafe { *q } == live[k].v || n == 0 || live[k].len == 0;
                assert!(kept, "realloc lost the first byte");
                live[k] = Block { p: q, len: n, v };
                mark(&live[k]);
            }
            8 => {
                let k = r.below(2) as usize;
                unsafe { h.cache_destroy(caches[k]) };
                caches[k] = h.cache_create();
            }
            _ if !live.is_empty() => {
                let b = live.swap_remove(r.below(live.len() as u64) as usize);
                assert!(marked(&b), "a block changed");
                unsafe { h.free_with(cache(&mut caches), b.p) };
            }
            _ => {}
        }
        if step % 50 == 0 {
            let s = h.walk().unwrap_or_else(|v| panic!("heap walker: {v:?}"));
            assert_eq!(s.in_use, live.len());
        }
    }
    for b in live.drain(..) {
        assert!(marked(&b));
        unsafe { h.free(b.p) };
    }
    for tc in caches {
        unsafe { h.cache_destroy(tc) };
    }
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.large, s.owned), (0, 0, 0));
}
