//! Fuzz bodies: bytes decoded into heap operations, checked against a shadow model and the
//! heap walker ([`ops`]), and corrupted in-band headers fed to the header decoder
//! ([`headers`]). One heap serves every input of a process, as a program's heap serves
//! every request: each input leaves it empty, and the next starts from what it left.
//! Any failed check panics (an abort, as `panic = "abort"`): libFuzzer reports it as a
//! crash with the input that caused it.
// The bodies call the allocator's unsafe API on purpose, with pointers they just got from
// the heap (or corrupt on purpose): the contract of each call is what is under test.
#![allow(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use ngmalloc_core::Heap;
use ngmalloc_core::config::{IB, MMAP_THRESHOLD, NUM_CLASSES, UNIT};
use ngmalloc_core::os::linux::{FutexLock, Linux};
use ngmalloc_core::size_class::class_size;
use ngmalloc_core::slot::{find_slot, nominal_size};
use ngmalloc_core::tcache::ThreadCache;

/// The heap under test: the raw Linux backend, no program break (the process's libc owns
/// it), the futex lock; as the standalone library builds it.
pub type FuzzHeap = Heap<Linux<false>, FutexLock>;

static HEAP: FuzzHeap = Heap::new(FutexLock::new());

/// One input at a time: the walker's counts are the whole heap's.
static SERIAL: Mutex<()> = Mutex::new(());

/// The input as a stream; past its end it reads zeros.
struct Bytes<'a> {
    d: &'a [u8],
    i: usize,
}

impl Bytes<'_> {
    fn done(&self) -> bool {
        self.i >= self.d.len()
    }
    fn u8(&mut self) -> u8 {
        let v = self.d.get(self.i).copied().unwrap_or(0);
        self.i += 1;
        v
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    /// A request size: tiny, at a class boundary, medium, or above the mmap threshold.
    fn size(&mut self) -> usize {
        match self.u8() % 8 {
            0..=2 => self.u8() as usize,
            3 => {
                let sc = self.u8() as usize % NUM_CLASSES;
                (class_size(sc) - IB + (self.u8() % 3) as usize).saturating_sub(1)
            }
            4 | 5 => self.u16() as usize,
            6 => self.u16() as usize * 2,
            _ => MMAP_THRESHOLD - 64 + self.u16() as usize * 16,
        }
    }
}

fn pattern(tag: u32, i: usize) -> u8 {
    (tag as u8) ^ (i as u8).wrapping_mul(29) ^ (i >> 9) as u8
}

/// The byte offsets of a `len`-byte block that carry its pattern: all of a small block; of
/// a large one its first and last 256 bytes and every 61st byte between (so a run stays
/// fast, and any page lost or swapped still shows).
fn marked(len: usize) -> impl Iterator<Item = usize> {
    let edge = 256.min(len);
    (0..edge)
        .chain((edge..len.saturating_sub(256)).step_by(61))
        .chain(len.saturating_sub(256).max(edge)..len)
}

/// The first of the bytes marked in a `len`-byte block, below `kept`, that lost its
/// pattern at `p`.
fn changed(p: *const u8, len: usize, kept: usize, tag: u32) -> Option<usize> {
    marked(len)
        .take_while(|&i| i < kept)
        .find(|&i| unsafe { *p.add(i) } != pattern(tag, i))
}

#[derive(Clone, Copy)]
struct Block {
    len: usize,
    tag: u32,
}

/// The shadow model: live blocks by address.
struct Model {
    live: BTreeMap<usize, Block>,
    tag: u32,
    caches: [*mut ThreadCache; 2],
}

const MAX_LIVE: usize = 64;

impl Model {
    fn add(&mut self, p: *mut u8, len: usize, align: usize, zeroed: bool) {
        let a = p.addr();
        assert_eq!(a % align.max(UNIT), 0, "alignment {align} of {a:#x}");
        let end = a + len.max(1);
        if let Some((&q, b)) = self.live.range(..a).next_back() {
            assert!(q + b.len.max(1) <= a, "overlaps the block below");
        }
        if let Some((&q, _)) = self.live.range(a..).next() {
            assert!(q >= end, "overlaps the block above");
        }
        if zeroed {
            let bytes = unsafe { std::slice::from_raw_parts(p, len) };
            assert!(bytes.iter().all(|&b| b == 0), "calloc memory not zero");
        }
        assert_eq!(unsafe { HEAP.usable_size(p) }, len, "usable size");
        self.tag = self.tag.wrapping_add(1);
        for i in marked(len) {
            unsafe { *p.add(i) = pattern(self.tag, i) };
        }
        self.live.insert(a, Block { len, tag: self.tag });
    }

    /// The `k`-th live block (modulo their number), checked and removed from the model.
    fn take(&mut self, k: u8) -> Option<(*mut u8, Block)> {
        let n = self.live.len();
        let (&a, &b) = self.live.iter().nth(k as usize % n.max(1))?;
        self.live.remove(&a);
        let p = std::ptr::with_exposed_provenance_mut::<u8>(a);
        let bad = changed(p, b.len, b.len, b.tag);
        assert!(bad.is_none(), "block {a:#x} changed at {bad:?}");
        Some((p, b))
    }

    /// No cache, or one of the two.
    fn cache(&self, sel: u8) -> Option<&'static mut ThreadCache> {
        match sel % 3 {
            0 => None,
            k => unsafe { self.caches[k as usize - 1].as_mut() },
        }
    }

    fn free(&mut self, p: *mut u8, sel: u8) {
        match self.cache(sel) {
            Some(tc) => unsafe { HEAP.free_cached(tc, p) },
            None => unsafe { HEAP.free(p) },
        }
    }

    fn check(&self) {
        let s = HEAP.walk().unwrap_or_else(|v| panic!("heap walker: {v:?}"));
        assert_eq!(s.in_use, self.live.len(), "walker's live count");
        let bytes: usize = self.live.values().map(|b| b.len).sum();
        assert_eq!(s.bytes, bytes, "walker's live bytes");
    }
}

/// Decode `data` into up to 128 allocation calls (every call of the heap, through the
/// thread caches or not), check each result against the model and the whole heap with the
/// walker after every call, then free everything and check the heap is empty.
pub fn ops(data: &[u8]) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = Bytes { d: data, i: 0 };
    let mut m = Model {
        live: BTreeMap::new(),
        tag: 0,
        caches: [HEAP.cache_create(), HEAP.cache_create()],
    };
    let mut steps = 0;
    while !b.done() && steps < 128 {
        steps += 1;
        let op = b.u8();
        let full = m.live.len() >= MAX_LIVE;
        match op % 12 {
            0..=2 if !full => {
                let (sel, n) = (b.u8(), b.size());
                let p = match m.cache(sel) {
                    Some(tc) => HEAP.malloc_cached(tc, n),
                    None => HEAP.malloc(n),
                };
                m.add(p.expect("malloc").as_ptr(), n, 1, false);
            }
            3 if !full => {
                let n = b.size();
                m.add(HEAP.calloc(n).expect("calloc").as_ptr(), n, 1, true);
            }
            4 if !full => {
                let (al, n) = (1usize << (b.u8() % 22), b.size());
                let p = HEAP.aligned_alloc(al, n).expect("aligned_alloc");
                m.add(p.as_ptr(), n, al, false);
            }
            5 | 6 => {
                let (k, n) = (b.u8(), b.size());
                match m.take(k) {
                    Some((p, old)) => {
                        let q = unsafe { HEAP.realloc(p, n) }.expect("realloc").as_ptr();
                        let bad = changed(q, old.len, n, old.tag);
                        assert!(bad.is_none(), "realloc lost contents at {bad:?}");
                        m.add(q, n, 1, false);
                    }
                    None => {
                        let q = unsafe { HEAP.realloc(std::ptr::null_mut(), n) };
                        m.add(q.expect("realloc(NULL)").as_ptr(), n, 1, false);
                    }
                }
            }
            7 | 8 => {
                let (k, sel) = (b.u8(), b.u8());
                if let Some((p, _)) = m.take(k) {
                    m.free(p, sel);
                }
            }
            9 => {
                let k = b.u8();
                if let Some((p, blk)) = m.take(k) {
                    let align = 1usize << p.addr().trailing_zeros().min(12);
                    unsafe { HEAP.free_sized(p, blk.len, Some(align)) };
                }
            }
            10 => {
                // a thread exits, another starts
                let k = (b.u8() & 1) as usize;
                unsafe { HEAP.cache_destroy(m.caches[k]) };
                m.caches[k] = HEAP.cache_create();
            }
            _ => {
                let k = b.u8();
                if let Some(&a) = m.live.keys().nth(k as usize % m.live.len().max(1)) {
                    let p = std::ptr::with_exposed_provenance_mut::<u8>(a);
                    assert_eq!(unsafe { HEAP.usable_size(p) }, m.live[&a].len);
                }
            }
        }
        m.check();
    }
    while let Some((p, _)) = m.take(0) {
        m.free(p, 0);
    }
    for tc in m.caches {
        unsafe { HEAP.cache_destroy(tc) };
    }
    let s = HEAP.walk().unwrap_or_else(|v| panic!("heap walker: {v:?}"));
    assert_eq!((s.in_use, s.large, s.bytes, s.owned), (0, 0, 0, 0));
}

/// Allocate a few blocks, corrupt bytes of their in-band metadata (the header before the
/// pointer, the group header, the reserved-size and check bytes at the slot's end), and
/// decode a pointer at or near one of them. The decoder must either reject it (where free
/// would crash) or return a validated result: a live slot of this heap that holds the
/// pointer, with a size that fits the slot. Then restore the bytes and free everything.
pub fn headers(data: &[u8]) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = Bytes { d: data, i: 0 };
    let n = 1 + b.u8() as usize % 8;
    let mut blocks = Vec::with_capacity(n);
    for _ in 0..n {
        // (malloc(0) is not a slot: nothing to decode)
        let len = b.size().max(1);
        let p = if b.u8() & 1 == 0 {
            HEAP.malloc(len)
        } else {
            HEAP.aligned_alloc(1 << (b.u8() % 14), len)
        };
        blocks.push((p.expect("malloc").as_ptr(), len));
    }
    let secret = HEAP.secret();
    // every live slot, as the decoder saw it before any corruption
    let slots: Vec<_> = blocks
        .iter()
        .map(|&(p, _)| unsafe { find_slot(p, secret) }.expect("a fresh block decodes"))
        .collect();
    let k = b.u8() as usize % n;
    let (p, len) = blocks[k];
    let s = slots[k];
    // the pointer decoded: the block's, or one inside it, whose "header" is user data
    let d = b.u8() as usize % 4;
    let q = if d * UNIT < len {
        p.wrapping_add(d * UNIT)
    } else {
        p
    };
    let group = unsafe { (*s.meta).mem }.cast::<u8>();
    // The bytes to corrupt (remembered for the restore): the 8 bytes before the decoded
    // pointer (check byte, index and reserved bits, 16- and 32-bit offsets), the group
    // header (meta pointer, active_idx, padding), the reserved-size and check bytes at
    // the slot's end. A forged offset or meta pointer may lead anywhere: the decoder must
    // read only heap memory (the page map) and reject the rest.
    let mut saved: Vec<(*mut u8, u8)> = Vec::new();
    let writes = 1 + b.u8() % 6;
    for _ in 0..writes {
        let at = match b.u8() % 4 {
            0 | 1 => q.wrapping_sub(8 - b.u8() as usize % 8),
            2 => group.wrapping_add(b.u8() as usize % UNIT),
            _ => s.end.wrapping_sub(5 - b.u8() as usize % 6),
        };
        saved.push((at, unsafe { *at }));
        unsafe { *at = b.u8() };
    }
    if let Ok(d) = unsafe { find_slot(q, secret) } {
        let ours = slots.iter().any(|s| s.meta == d.meta && s.idx == d.idx);
        assert!(ours, "decoded to a slot that is not live: {d:?}");
        assert!(
            d.start <= q && q <= d.end,
            "decoded slot does not hold the pointer"
        );
        if let Ok(len) = unsafe { nominal_size(q, &d) } {
            assert!(
                q.addr() + len <= d.end.addr(),
                "decoded size overruns the slot"
            );
        }
    }
    for &(at, v) in saved.iter().rev() {
        unsafe { *at = v };
    }
    for (p, _) in blocks {
        unsafe { HEAP.free(p) };
    }
    let s = HEAP.walk().unwrap_or_else(|v| panic!("heap walker: {v:?}"));
    assert_eq!((s.in_use, s.large), (0, 0));
}
