//! The heap: the one context that owns all global state, and the malloc/free/realloc
//! paths (mallocng's `malloc.c`, `free.c`, `realloc.c`, `aligned_alloc.c`, `donate.c`).
//!
//! State split, so a future per-thread fast path needs no rewrite:
//! - [`State`]: everything mutable, only touched with the heap lock held (a [`Guard`]);
//! - the secret: written once, read by the lock-free `free` path;
//! - per-group state (the two masks) lives in the meta records and is changed with atomic
//!   operations that would let a thread owning a group run them without the lock.
//!
//! The state and the secret live in a [`Region`], a mapping of their own between two
//! PROT_NONE pages, not in the heap object (which, inside musl, is libc's `.bss`): a leak
//! of libc's writable data shows neither the secret that tags meta areas nor the lists;
//! a linear overflow into or out of the region faults.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32};

use crate::cache::{MapCache, group_budget};
use crate::check::{check, ok};
use crate::config::size_overflows;
use crate::config::{
    AREA, CLASS_MMAP, GUARD_PAGES, IB, MAX_ALIGN, MMAP_THRESHOLD, NUM_CLASSES, QUARANTINE,
    RANDOM_SLOTS, UNIT, ZERO_ON_FREE, ZERO_SIZE,
};
use crate::list::{checked_links, dequeue, dequeue_head, queue};
use crate::lock::RawLock;
use crate::masks::{FastFree, free_fast, free_locked, free_slots};
use crate::meta::{
    AREA_SLOTS, Group, Meta, MetaArea, activate_group, area_slots, clear_zeroed, large_guards,
    low_mask, set_large_guards, set_shape, storage, stride,
};
use crate::os::{Os, Prot};
use crate::pagemap;
use crate::policy::{Bounce, GroupPlan, plan_group, round_up};
use crate::size_class::{SIZE_CLASSES, class_size, size_to_class};
use crate::slot::{
    Key, Slot, all_zero, enframe, find_host, find_meta, frame, mark_freed, mark_nested, retire,
    set_redirect, set_size, slot_bounds, validate,
};
use crate::tcache::ThreadCache;

/// Frees of multi-page slots between two release sweeps.
const SWEEP_INTERVAL: u32 = 256;
/// Groups one sweep looks at, at most, so its cost stays bounded in a large heap.
const SWEEP_GROUPS: usize = 128;
/// `State::brk` once the break is known to be unusable.
const BRK_FAILED: usize = usize::MAX;

/// Counters of slow-path events, for reports and tests. Updated under the lock only.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Groups given a mapping of their own.
    pub groups_mapped: u64,
    /// Groups nested in a slot of a larger class.
    pub groups_nested: u64,
    /// Allocations at or above the mmap threshold.
    pub large_mapped: u64,
    /// Meta areas set up.
    pub meta_areas: u64,
    /// Meta areas that came from the program break.
    pub brk_areas: u64,
    /// Release sweeps run.
    pub sweeps: u64,
    /// `MADV_DONTNEED` calls made by sweeps.
    pub releases: u64,
}

/// Everything mutable about the heap (mallocng's `malloc_context`). Only reached through
/// a [`Guard`], i.e. with the lock held.
pub struct State {
    pub(crate) pagesize: usize,
    /// Ticks on every group or large mapping created; seeds offset cycling of fresh slots,
    /// so a group recreated at the same address starts at a different offset.
    pub(crate) cycle: u32,
    pub(crate) free_meta_head: *mut Meta,
    pub(crate) avail_meta: *mut Meta,
    pub(crate) avail_meta_count: usize,
    pub(crate) avail_meta_area_count: usize,
    pub(crate) meta_alloc_shift: u32,
    pub(crate) meta_area_head: *mut MetaArea,
    pub(crate) meta_area_tail: *mut MetaArea,
    pub(crate) avail_meta_areas: *mut u8,
    pub(crate) active: [*mut Meta; NUM_CLASSES],
    pub(crate) usage_by_class: [usize; NUM_CLASSES],
    pub(crate) bounce: Bounce,
    pub(crate) brk: usize,
    pub(crate) sweep_class: usize,
    pub(crate) cache: MapCache,
    /// Bytes of live group mappings (what the group cache's budget is a share of).
    pub(crate) group_bytes: usize,
    /// Freed large blocks, guards kept and data guard-installed (inaccessible, no memory).
    pub(crate) large_cache: MapCache,
    /// xorshift state for randomised slot choice (`harden-random-slots`).
    pub(crate) rng: u64,
    /// Which of the zero-size region's 4096 pointers are live (`harden-zero-size`).
    pub(crate) zero_live: [u64; ZERO_SLOTS / 64],
    /// Freed small and medium slots held back (`harden-quarantine`): (group, slot, medium).
    pub(crate) quarantine: [(*mut Meta, usize, bool); QUARANTINE_SLOTS],
    pub(crate) quarantine_next: usize,
    /// The registry of thread caches (`tcache.rs`), for the walker and thread exit.
    pub(crate) caches: *mut crate::tcache::ThreadCache,
    /// Cache places no thread holds, zeroed, linked through `next` and `prev`
    /// (`tcache.rs`: the region's own, and the free places of cache pages).
    pub(crate) spare_caches: *mut crate::tcache::ThreadCache,
    pub(crate) stats: Stats,
}

/// Unmap heap memory, first taking it out of the page map (so the decoder never reads a
/// page that is listed but gone).
///
/// # Safety
/// The range is one the heap mapped and holds nothing live.
unsafe fn unmap<O: Os>(p: *mut u8, len: usize) {
    pagemap::unregister::<O>(p, len);
    // SAFETY: forwarded.
    unsafe { O::munmap(p, len) }
}

/// The heap's own mapping: the secret, the state and one thread cache, with a PROT_NONE
/// page on each side.
pub struct Region {
    /// Tags meta areas and seeds canaries. Written before the region is published, never
    /// changed, never 0.
    secret: u64,
    /// The page size (at least 4 KiB), read once; like the secret, never changed.
    pagesize: usize,
    /// Reached only with the lock held.
    state: UnsafeCell<State>,
    /// The first thread's cache place (a single-threaded program's only one): in the
    /// state's page, which is guarded as a cache page is, instead of a page of its own,
    /// which every process paid.
    home: UnsafeCell<ThreadCache>,
}

// the state and the home cache fit one 4 KiB page (the zero-size option's 512-byte table
// costs a second one)
const _: () = assert!(size_of::<Region>() <= AREA || ZERO_SIZE);

/// What [`Heap::resize`] did.
#[derive(Debug)]
pub enum Resize {
    /// Resized (the pointer, maybe moved by `mremap`), or `None`: out of memory, the
    /// block untouched.
    Done(Option<NonNull<u8>>),
    /// Not resizable where it is: copy this many bytes (the old size) to a new block.
    Copy(usize),
}

/// The allocator: one instance is one independent heap.
///
/// `O` is the OS backend, `L` the lock. The standalone library and musl each have one
/// static instance; tests make as many as they like.
pub struct Heap<O: Os, L: RawLock> {
    lock: L,
    /// The region, made by the first allocation (null before).
    region: AtomicPtr<Region>,
    /// Frees of multi-page slots, counted lock-free, to schedule release sweeps.
    medium_frees: AtomicU32,
    /// How guards are made: `GUARD_UNTRIED`, `GUARD_MADVISE` or `GUARD_PROTNONE`. The
    /// first large allocation tries `MADV_GUARD_INSTALL` and checks that the marker really
    /// faults (an emulator may accept the call and install nothing); that failing, or any
    /// later failure (EINVAL before Linux 6.13, or on a locked mapping after `mlockall`),
    /// turns it to PROT_NONE sub-mappings for good.
    guard_mode: AtomicU8,
    /// `harden-zero-size`: the never-accessible region `malloc(0)` points into (null
    /// until the first zero-size allocation).
    zero_region: AtomicPtr<u8>,
    _os: PhantomData<fn() -> O>,
}

/// The first PROT_NONE reservation for meta areas is `2 << FIRST_META_SHIFT` pages (15
/// areas), each next one twice the last. mallocng starts at 2 pages (one area); with 63
/// records an area, a program with 2000 large blocks then went through five reservations,
/// each a VMA or two of its own. Untouched reservation costs address space, no memory.
const FIRST_META_SHIFT: u32 = 3;

/// Distinct pointers in the zero-size region (16 bytes apart: 64 KiB). Without the
/// option the region is never made, and the state keeps one word of it, not 512 bytes:
/// the state and the first thread's cache share one page ([`Region`]).
const ZERO_SLOTS: usize = if ZERO_SIZE { 4096 } else { 64 };

/// [`Heap::guard_mode`]'s states.
const GUARD_UNTRIED: u8 = 0;
const GUARD_MADVISE: u8 = 1;
const GUARD_PROTNONE: u8 = 2;
/// Freed small and medium slots held back by `harden-quarantine` (0 without it).
pub(crate) const QUARANTINE_SLOTS: usize = if QUARANTINE != 0 { 64 } else { 1 };

// SAFETY: the region's state is only reached with `lock` held; the rest are atomics or
// written once before publication.
unsafe impl<O: Os, L: RawLock + Sync> Sync for Heap<O, L> {}
// SAFETY: the raw pointers point into the heap's own mappings, not thread-bound.
unsafe impl<O: Os, L: RawLock + Send> Send for Heap<O, L> {}

/// The heap lock, held; derefs to the state it protects.
pub struct Guard<'a, L: RawLock> {
    lock: &'a L,
    st: &'a mut State,
    /// The heap's secret.
    pub secret: u64,
}

impl<L: RawLock> Deref for Guard<'_, L> {
    type Target = State;
    fn deref(&self) -> &State {
        self.st
    }
}

impl<L: RawLock> DerefMut for Guard<'_, L> {
    fn deref_mut(&mut self) -> &mut State {
        self.st
    }
}

impl<L: RawLock> Drop for Guard<'_, L> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

/// Ranges to unmap once the lock is dropped.
type Unmap = crate::cache::Evicted;

/// Nothing to unmap.
const KEEP: Unmap = [None, None];

/// Whether a new group's memory comes straight from `mmap`.
enum Fresh {
    Yes,
    No,
}

impl<O: Os, L: RawLock> Heap<O, L> {
    /// An empty heap; nothing is mapped until the first allocation.
    pub const fn new(lock: L) -> Self {
        Heap {
            lock,
            region: AtomicPtr::new(null_mut()),
            medium_frees: AtomicU32::new(0),
            guard_mode: AtomicU8::new(GUARD_UNTRIED),
            zero_region: AtomicPtr::new(null_mut()),
            _os: PhantomData,
        }
    }

    /// Take the heap lock, making the region first if there is none; `None` (unlocked)
    /// if it cannot be mapped.
    pub fn locked(&self) -> Option<Guard<'_, L>> {
        self.lock.lock();
        let mut r = self.region.load(Relaxed);
        if r.is_null() {
            r = Self::make_region();
            if r.is_null() {
                self.lock.unlock();
                return None;
            }
            self.region.store(r, Release);
        }
        Some(Guard {
            lock: &self.lock,
            // SAFETY: the lock is held until the guard drops, so this is the only reference
            // to the state; the secret is never written after publication.
            st: unsafe { &mut *(*r).state.get() },
            // SAFETY: as above.
            secret: unsafe { (*r).secret },
        })
    }

    /// Map the region: [PROT_NONE page][secret and state][PROT_NONE page]. Null on failure.
    fn make_region() -> *mut Region {
        let ps = O::page_size().max(AREA);
        let span = round_up(core::mem::size_of::<Region>(), ps);
        // SAFETY: a fresh mapping; the middle is made writable before it is written.
        unsafe {
            let Some(base) = O::mmap(null_mut(), span + 2 * ps, Prot::None, false) else {
                return null_mut();
            };
            let mid = base.as_ptr().wrapping_add(ps);
            if !O::mprotect(mid, span, Prot::ReadWrite) {
                O::munmap(base.as_ptr(), span + 2 * ps);
                return null_mut();
            }
            let r = mid.cast::<Region>();
            // 0 means "no heap yet" to find_meta.
            let secret = O::random() | 1;
            r.write(Region {
                secret,
                pagesize: ps,
                state: UnsafeCell::new(State::new(ps, secret.rotate_left(17))),
                // SAFETY: all-zero is an empty cache (raw pointers null, counts 0).
                home: UnsafeCell::new(core::mem::zeroed()),
            });
            crate::tcache::add_spare(&mut *(*r).state.get(), (*r).home.get());
            r
        }
    }

    /// The page size (at least 4 KiB): the region's copy once there is one, so the
    /// large-block paths make no call for it.
    pub(crate) fn page_size(&self) -> usize {
        let r = self.region.load(Acquire);
        if r.is_null() {
            return O::page_size().max(AREA);
        }
        // SAFETY: a published region is never unmapped and its page size never written again.
        unsafe { (*r).pagesize }
    }

    /// The region's cache place (null before the region is made).
    pub(crate) fn home_cache(&self) -> *mut ThreadCache {
        let r = self.region.load(Acquire);
        if r.is_null() {
            return null_mut();
        }
        // SAFETY: a published region is never unmapped.
        unsafe { (*r).home.get() }
    }

    /// The heap's secret (0 before the first allocation).
    pub fn secret(&self) -> u64 {
        let r = self.region.load(Acquire);
        if r.is_null() {
            return 0;
        }
        // SAFETY: a published region is never unmapped and its secret never written again.
        unsafe { (*r).secret }
    }

    /// A copy of the event counters (all zero before the first allocation).
    pub fn stats(&self) -> Stats {
        if self.region.load(Acquire).is_null() {
            return Stats::default();
        }
        self.locked().map(|g| g.stats).unwrap_or_default()
    }

    /// Allocate `n` bytes, 16-aligned. `None` when the size overflows or memory is out.
    pub fn malloc(&self, n: usize) -> Option<NonNull<u8>> {
        if size_overflows(n) {
            return None;
        }
        if ZERO_SIZE
            && n == 0
            && let Some(p) = self.zero_size()
        {
            return Some(p);
        }
        self.malloc_slot(n)
    }

    /// `malloc` that always returns a real slot (what `aligned_alloc` frames inside).
    fn malloc_slot(&self, n: usize) -> Option<NonNull<u8>> {
        if size_overflows(n) {
            return None;
        }
        if n >= MMAP_THRESHOLD {
            return self.malloc_large(n);
        }
        let mut st = self.locked()?;
        let secret = st.secret;
        // SAFETY: the lock is held.
        let (g, idx) = unsafe { st.take_slot::<O>(size_to_class(n), n, secret)? };
        st.cycle = st.cycle.wrapping_add(1);
        let ctr = st.cycle;
        drop(st);
        // SAFETY: slot `idx` of `g` was just taken from its avail mask and fits `n`.
        NonNull::new(unsafe { enframe(g, idx, n, ctr, secret) })
    }

    /// An individually mapped allocation: `[guard][group header, data][guard]`, the data
    /// ending right before the trailing guard (see `enframe`), so an overflow faults
    /// within a few bytes and an underflow past the header faults too.
    fn malloc_large(&self, n: usize) -> Option<NonNull<u8>> {
        let ps = self.page_size();
        let data = round_up(n + IB + UNIT, ps);
        let guard = GUARD_PAGES * ps;
        if data / AREA > u32::MAX as usize {
            return None;
        }
        let (mem, lead, protnone) = match self.reuse_large(data) {
            Some((mem, lead)) => (mem, lead, false),
            None => {
                let len = data + 2 * guard;
                // SAFETY: a fresh anonymous mapping, ours.
                let map = || unsafe { O::mmap(null_mut(), len, Prot::ReadWrite, false) };
                let base = map()
                    .or_else(|| {
                        // SAFETY: the lock is held (the guard is a temporary, dropped before
                        // the retry); the caches' mappings are unused.
                        let flushed = unsafe { self.locked()?.flush_map_caches::<O>() };
                        if flushed { map() } else { None }
                    })?
                    .as_ptr();
                let mem = base.wrapping_add(guard);
                // SAFETY: both guard ranges are ours and hold nothing.
                let protnone = unsafe {
                    let a = self.install_guard(base, guard);
                    let b = self.install_guard(mem.wrapping_add(data), guard);
                    a | b
                };
                (mem, guard, protnone)
            }
        };
        let base = mem.wrapping_sub(lead);
        let len = lead + data + guard;
        // SAFETY: the data is mapped readable and ours; the mapping is unused on failure.
        unsafe {
            if !pagemap::register::<O>(mem, data) {
                unmap::<O>(base, len);
                return None;
            }
        }
        let Some(mut st) = self.locked() else {
            // SAFETY: the mapping is ours and unused.
            unsafe { unmap::<O>(base, len) };
            return None;
        };
        let secret = st.secret;
        st.bounce.step_seq();
        // SAFETY: the lock is held.
        let Some(g) = (unsafe { st.alloc_meta::<O>(secret) }) else {
            drop(st);
            // SAFETY: the mapping is ours and unused.
            unsafe { unmap::<O>(base, len) };
            return None;
        };
        // SAFETY: `g` is a fresh record and `mem` a fresh mapping, both ours.
        unsafe {
            init_group(g, mem, 0, 0, CLASS_MMAP, (data / AREA) as u32, 0, 0);
            (*g).zeroed = 1;
            set_large_guards(g, lead, guard, protnone);
        }
        st.stats.large_mapped += 1;
        st.cycle = st.cycle.wrapping_add(1);
        let ctr = st.cycle;
        drop(st);
        // SAFETY: the only slot of a fresh group, which holds `n` bytes.
        NonNull::new(unsafe { enframe(g, 0, n, ctr, secret) })
    }

    /// `harden-zero-size`: a distinct pointer into the never-accessible region, or `None`
    /// (then `malloc(0)` takes a normal slot) if all are live or the region can't be mapped.
    fn zero_size(&self) -> Option<NonNull<u8>> {
        let mut st = self.locked()?;
        let mut zr = self.zero_region.load(Relaxed);
        if zr.is_null() {
            // SAFETY: a fresh reservation, never made accessible.
            zr = unsafe { O::mmap(null_mut(), ZERO_SLOTS * UNIT, Prot::None, false)? }.as_ptr();
            self.zero_region.store(zr, Release);
        }
        let (w, word) = st
            .zero_live
            .iter()
            .enumerate()
            .find(|(_, w)| **w != u64::MAX)?;
        let b = (!*word).trailing_zeros() as usize;
        st.zero_live[w] |= 1 << b;
        NonNull::new(zr.wrapping_add((w * 64 + b) * UNIT))
    }

    /// If `p` points into the zero-size region: its index there, after checking it is a
    /// live one (anything else there is a double or invalid free: crash).
    pub(crate) fn zero_index(&self, p: *mut u8) -> Option<usize> {
        if !ZERO_SIZE {
            return None;
        }
        let zr = self.zero_region.load(Acquire);
        let off = p.addr().wrapping_sub(zr.addr());
        if zr.is_null() || off >= ZERO_SLOTS * UNIT {
            return None;
        }
        check!(off.is_multiple_of(UNIT));
        let i = off / UNIT;
        let Some(st) = self.locked() else {
            crate::check::crash()
        };
        check!(st.zero_live[i / 64] & (1 << (i % 64)) != 0);
        Some(i)
    }

    /// Free a zero-size pointer (`harden-zero-size`); `false` if `p` is not one.
    fn free_zero_size(&self, p: *mut u8) -> bool {
        let Some(i) = self.zero_index(p) else {
            return false;
        };
        if let Some(mut st) = self.locked() {
            st.zero_live[i / 64] &= !(1 << (i % 64));
        }
        true
    }

    /// A cached large block of at least `span` bytes (at most twice), made accessible
    /// again: its last `span` bytes become the new block's memory (reading as zero), the
    /// surplus before them stays guarded as a longer leading guard, so the data still ends
    /// right before the trailing guard and starts right after the leading one. Returns the
    /// new `mem` and its leading guard; `None` if there is none or it cannot be reopened.
    fn reuse_large(&self, span: usize) -> Option<(*mut u8, usize)> {
        let (old, len) = self.locked()?.large_cache.take(span, QUARANTINE)?;
        let guard = GUARD_PAGES * self.page_size();
        let mem = old.wrapping_add(len - span);
        // SAFETY: the block left the cache: it is ours alone.
        unsafe {
            if O::guard(mem, span, false) {
                return Some((mem, guard + len - span));
            }
            unmap::<O>(old.wrapping_sub(guard), len + 2 * guard);
        }
        None
    }

    /// Make `p .. p + len` a guard; returns whether it had to be a PROT_NONE sub-mapping.
    /// A failure of both leaves the range accessible rather than fail the allocation.
    ///
    /// # Safety
    /// The range is the heap's and holds nothing live.
    pub(crate) unsafe fn install_guard(&self, p: *mut u8, len: usize) -> bool {
        // SAFETY: forwarded.
        unsafe {
            let mode = self.guard_mode.load(Relaxed);
            if mode != GUARD_PROTNONE {
                if O::guard(p, len, true) {
                    if mode == GUARD_MADVISE || O::guard_faults(p) {
                        // (a failure elsewhere meanwhile keeps PROT_NONE)
                        let _ = self.guard_mode.compare_exchange(
                            GUARD_UNTRIED,
                            GUARD_MADVISE,
                            Relaxed,
                            Relaxed,
                        );
                        return false;
                    }
                    // a marker that does not fault does not zap pages either: the cache of
                    // freed large blocks would hand out stale data as zeroed
                    O::guard(p, len, false);
                }
                self.guard_mode.store(GUARD_PROTNONE, Relaxed);
            }
            O::mprotect(p, len, Prot::None);
        }
        true
    }

    /// `malloc` whose memory reads as zero.
    pub fn calloc(&self, n: usize) -> Option<NonNull<u8>> {
        let p = self.malloc(n)?;
        // SAFETY: `p` is a live allocation of `n` bytes.
        unsafe {
            if !self.is_allzero(p.as_ptr()) {
                p.as_ptr().write_bytes(0, n);
            }
        }
        Some(p)
    }

    /// Whether the allocation at `p` is known to read as zero: the only slot of a mapping
    /// fresh from `mmap` (mallocng's `is_allzero`; cached mappings are not fresh).
    ///
    /// # Safety
    /// `p` is a live allocation of this heap.
    pub unsafe fn is_allzero(&self, p: *mut u8) -> bool {
        if self.zero_index(p).is_some() {
            return true;
        }
        // SAFETY: forwarded; the record was validated.
        unsafe { (*ok(find_meta(p, self.secret()))).zeroed != 0 }
    }

    /// The size `p` was allocated with (exact, as mallocng).
    ///
    /// # Safety
    /// `p` is null or a live allocation of this heap; anything else crashes or faults.
    pub unsafe fn usable_size(&self, p: *mut u8) -> usize {
        if p.is_null() || self.zero_index(p).is_some() {
            return 0;
        }
        // SAFETY: forwarded; every step is validated.
        unsafe { validate(p, self.secret()).1 }
    }

    /// Free `p` (null is ignored). Invalid pointers crash.
    ///
    /// # Safety
    /// `p` is null or a live allocation of this heap, not used afterwards.
    pub unsafe fn free(&self, p: *mut u8) {
        if p.is_null() || self.free_zero_size(p) {
            return;
        }
        let secret = self.secret();
        // SAFETY: every field read is validated by find_slot before use.
        unsafe {
            let (s, _) = validate(p, secret);
            self.free_slot(p, s, secret);
        }
    }

    /// The part of free after validation.
    ///
    /// # Safety
    /// `s` is the slot of the live allocation `p`, validated by `find_slot` and
    /// `nominal_size`; `p` is not used afterwards.
    pub(crate) unsafe fn free_slot(&self, p: *mut u8, s: Slot, secret: u64) {
        // SAFETY: the slot is ours until its bit reaches freed_mask.
        unsafe {
            let g = s.meta;
            let medium = s.stride > AREA && (*g).last_idx != 0;
            retire(p, &s);

            if QUARANTINE != 0 && (*g).sizeclass != CLASS_MMAP {
                // held back: the slot stays in use (its header marked freed, so a second
                // free or a realloc of it crashes) until QUARANTINE_SLOTS later frees
                let Some(mut st) = self.locked() else {
                    crate::check::crash()
                };
                let at = st.quarantine_next;
                let old = core::mem::replace(&mut st.quarantine[at], (g, s.idx, medium));
                st.quarantine_next = if at + 1 == QUARANTINE_SLOTS {
                    0
                } else {
                    at + 1
                };
                drop(st);
                if !old.0.is_null() {
                    if ZERO_ON_FREE {
                        // still as free left it, or a dangling pointer wrote to it
                        let q = ok(slot_bounds(old.0, old.1));
                        check!(all_zero(q.start, q.end.addr() - q.start.addr()));
                    }
                    self.release_slot(old.0, old.1, old.2, secret);
                }
                return;
            }
            self.release_slot(g, s.idx, medium, secret);
        }
    }

    /// Return slot `idx` of `g` to its group: the part of free after validation.
    ///
    /// # Safety
    /// The slot is in use and no longer referenced; its header is already marked freed.
    pub(crate) unsafe fn release_slot(&self, g: *mut Meta, idx: usize, medium: bool, secret: u64) {
        // SAFETY: the caller vouches for the slot; the group outlives it.
        unsafe {
            let bit = 1u32 << idx;
            let all = low_mask((*g).last_idx as usize);
            // atomic free without locking if this is neither the first freed slot (the
            // group may need queueing) nor the last in use (the group may be freed).
            match free_fast(&(*g).freed_mask, &(*g).avail_mask, bit, all) {
                FastFree::Done => {
                    self.after_free(medium);
                    return;
                }
                FastFree::AlreadyFree => crate::check::crash(),
                FastFree::NeedsLock => {}
            }
            // a valid pointer means the region exists: the lock cannot fail
            let Some(mut st) = self.locked() else {
                crate::check::crash()
            };
            let unmap = st.nontrivial_free::<O>(g, idx, secret);
            drop(st);
            for (base, len) in unmap.into_iter().flatten() {
                self::unmap::<O>(base, len);
            }
            self.after_free(medium);
        }
    }

    /// C23 `free_sized`/`free_aligned_sized`: free `p`, but first check that `size` is the
    /// size it was allocated with and, with an alignment, that it is a power of two `p` is
    /// aligned to. A mismatch means the caller's idea of the object is wrong
    /// (type confusion, a stale length): crash, as for any invalid free.
    ///
    /// # Safety
    /// As [`Heap::free`].
    pub unsafe fn free_sized(&self, p: *mut u8, size: usize, align: Option<usize>) {
        if p.is_null() {
            return;
        }
        // SAFETY: forwarded; usable_size validates `p` completely.
        unsafe {
            check!(self.usable_size(p) == size);
            if let Some(a) = align {
                check!(a.is_power_of_two() && p.addr() & (a - 1) == 0);
            }
            self.free(p);
        }
    }

    /// Count frees of multi-page slots and run a release sweep every `SWEEP_INTERVAL`.
    fn after_free(&self, medium: bool) {
        if medium
            && self.medium_frees.fetch_add(1, Relaxed) % SWEEP_INTERVAL == SWEEP_INTERVAL - 1
            && let Some(mut st) = self.locked()
        {
            // SAFETY: the lock is held.
            unsafe { st.sweep::<O>() };
        }
    }

    /// Resize `p` to `n` bytes: in place when the class allows, by `mremap` for large
    /// blocks, else by copying. `None` (with `p` untouched) when out of memory.
    ///
    /// # Safety
    /// `p` is null or a live allocation of this heap; on success it is no longer valid.
    pub unsafe fn realloc(&self, p: *mut u8, n: usize) -> Option<NonNull<u8>> {
        if p.is_null() {
            return self.malloc(n);
        }
        // SAFETY: the caller's contract; on `Copy`, `p` is a live allocation of `old`
        // bytes, copied to a fresh one before it is freed.
        unsafe {
            match self.resize(p, n) {
                Resize::Done(r) => r,
                Resize::Copy(old) => {
                    let new = self.malloc(n)?;
                    core::ptr::copy_nonoverlapping(p, new.as_ptr(), n.min(old));
                    self.free(p);
                    Some(new)
                }
            }
        }
    }

    /// [`Heap::realloc`] of a non-null `p` but the copy: resize in place or by `mremap`
    /// if possible, else say how many bytes to copy. The caller copies with its own
    /// `malloc` and `free`, which the C exports make those of the thread's cache.
    ///
    /// # Safety
    /// `p` is a live allocation of this heap; after `Done(Some)` it is no longer valid.
    pub unsafe fn resize(&self, p: *mut u8, n: usize) -> Resize {
        if size_overflows(n) {
            return Resize::Done(None);
        }
        if self.zero_index(p).is_some() {
            let Some(new) = self.malloc(n) else {
                return Resize::Done(None);
            };
            self.free_zero_size(p);
            return Resize::Done(Some(new));
        }
        // SAFETY: validated like free; the allocation is the caller's, so its record's
        // `mem` and `maplen` are ours to change.
        unsafe {
            let secret = self.secret();
            let (s, old) = validate(p, secret);
            let g = s.meta;
            let room = s.end.addr() - p.addr();
            let sc = (*g).sizeclass as usize;
            // only resize in place if the size class matches
            if n <= room && n < MMAP_THRESHOLD && size_to_class(n) + 1 >= sc {
                set_size(p, &s, n);
                return Resize::Done(NonNull::new(p));
            }
            // use mremap if old and new size are both mmap-worthy, and the guards are
            // MADV_GUARD_INSTALL markers, which move with the pages (PROT_NONE guards are
            // separate mappings that mremap cannot take along: those blocks are copied).
            if sc >= NUM_CLASSES && n >= MMAP_THRESHOLD && !large_guards(g).2 {
                check!(sc == CLASS_MMAP as usize);
                let ps = self.page_size();
                let base = p.addr() - s.start.addr();
                let needed = round_up(n + base + UNIT + IB, ps);
                let old_data = (*g).maplen as usize * AREA;
                let (lead, trail, _) = large_guards(g);
                let guard = GUARD_PAGES * ps;
                let mem = (*g).mem.cast::<u8>();
                if needed / AREA > u32::MAX as usize {
                    // fall through to the copy, which fails the same way
                } else if needed <= old_data {
                    // Shrink in place: the tail becomes trailing guard (its pages zapped).
                    // No mremap, so no hole in the address space.
                    if needed < old_data {
                        let (tail, tail_len) = (mem.wrapping_add(needed), old_data - needed);
                        pagemap::unregister::<O>(tail, tail_len);
                        if !O::guard(tail, tail_len, true) {
                            // cannot guard the tail: keep the block as it is (its leaves
                            // exist, so registering it again cannot fail)
                            pagemap::register::<O>(tail, tail_len);
                            set_size(p, &s, n);
                            return Resize::Done(NonNull::new(p));
                        }
                        set_shape(g, 0, (*g).sizeclass, (needed / AREA) as u32);
                        set_large_guards(g, lead, trail + old_data - needed, false);
                    }
                    // the data now ends before the new trailing guard
                    let end = mem.wrapping_add(needed - IB);
                    set_size(p, &Slot { end, ..s }, n);
                    return Resize::Done(NonNull::new(p));
                } else if O::guard(mem.wrapping_add(old_data), trail, false) {
                    // grow: the whole trailing guard becomes data, then mremap (which may
                    // move the block, guards included) and a new trailing guard. (Had the
                    // guard stayed, the grown block would fault inside: copy instead.)
                    let old_len = lead + old_data + trail;
                    // the block may move: out of the page map until it has settled
                    pagemap::unregister::<O>(mem, old_data);
                    match O::mremap(mem.wrapping_sub(lead), old_len, lead + needed + guard) {
                        Some(new) => {
                            let mem = new.as_ptr().wrapping_add(lead);
                            // A new 64 GiB window needs a new page-map leaf; with no memory
                            // even for that the block could never be freed: stop now.
                            check!(pagemap::register::<O>(mem, needed));
                            (*g).mem = mem.cast::<Group>();
                            set_shape(g, 0, (*g).sizeclass, (needed / AREA) as u32);
                            let protnone = self.install_guard(mem.wrapping_add(needed), guard);
                            set_large_guards(g, lead, guard, protnone);
                            let start = storage((*g).mem);
                            let p = start.wrapping_add(base);
                            // keys depend on the address: frame the moved block anew (the
                            // redirect at its start moved with it)
                            let end = mem.wrapping_add(needed - IB);
                            frame(p, Key::of(secret, p), 0, base / UNIT, end, n);
                            return Resize::Done(NonNull::new(p));
                        }
                        // the block stays as it was: put its trailing guard back (and the
                        // block in the map: its leaves exist, that cannot fail)
                        None => {
                            pagemap::register::<O>(mem, old_data);
                            if self.install_guard(mem.wrapping_add(old_data), trail) {
                                set_large_guards(g, lead, trail, true);
                            }
                        }
                    }
                }
            }
            Resize::Copy(old)
        }
    }

    /// `len` bytes aligned to `align`, a power of two. `None` when out of memory or the
    /// alignment is above [`MAX_ALIGN`].
    pub fn aligned_alloc(&self, align: usize, len: usize) -> Option<NonNull<u8>> {
        debug_assert!(align.is_power_of_two());
        if align > MAX_ALIGN || size_overflows(len) {
            return None;
        }
        let align = align.max(UNIT);
        let p = self.malloc_slot(len + align - UNIT)?.as_ptr();
        // SAFETY: `p` is our fresh allocation; everything written lies in its slot.
        unsafe {
            let secret = self.secret();
            let (s, _) = validate(p, secret);
            let adj = p.addr().wrapping_neg() & (align - 1);
            if adj == 0 {
                set_size(p, &s, len);
                return NonNull::new(p);
            }
            // the first framing is no allocation any more
            mark_freed(p, s.key);
            let p = p.wrapping_add(adj);
            let offset = (p.addr() - storage((*s.meta).mem).addr()) / UNIT;
            frame(p, Key::of(secret, p), s.idx, offset, s.end, len);
            // the offset to the aligned framing at the slot start lets heap walks find the
            // data (for an extreme over-alignment it does not fit: the walker scans)
            set_redirect(s.start, (p.addr() - s.start.addr()) / UNIT);
            NonNull::new(p)
        }
    }

    /// Give the heap a range of otherwise unused memory (musl's dynamic linker donates the
    /// gaps in loaded segments). Bad ranges are ignored; the memory is never unmapped.
    ///
    /// # Safety
    /// `start .. end` is writable memory that nothing else uses, now or later.
    pub unsafe fn donate(&self, start: *mut u8, end: *mut u8) {
        if start.is_null() || end.addr() <= start.addr() {
            return;
        }
        let mut a = round_up(start.addr(), UNIT);
        let b = end.addr() & !(UNIT - 1);
        if b <= a {
            return;
        }
        // SAFETY: the caller gives us the whole range, readable for good.
        unsafe {
            start.write_bytes(0, end.addr() - start.addr());
            if !pagemap::register::<O>(start, end.addr() - start.addr()) {
                return;
            }
        }
        let Some(mut st) = self.locked() else {
            return;
        };
        let secret = st.secret;
        let mut sc = NUM_CLASSES - 1;
        while sc > 0 && b > a {
            let span = (SIZE_CLASSES[sc] as usize + 1) * UNIT;
            if b - a >= span {
                // SAFETY: the lock is held; `a .. a + span` is donated, zeroed memory.
                unsafe {
                    let Some(m) = st.alloc_meta::<O>(secret) else {
                        return;
                    };
                    let mem = start.with_addr(a);
                    // a free slot (zeroed memory: no header decodes in it)
                    init_group(m, mem, 0, 0, sc as u8, 0, 0, 1);
                    (*m).freeable = 0;
                    queue(&mut st.active[sc], m);
                }
                a += span;
            }
            sc = sc.saturating_sub(4);
        }
    }

    /// musl's fork hook: `who < 0` before fork (take the lock), `0` in the parent
    /// afterwards (release it), `> 0` in the child (the lock's holder is gone: reset).
    pub fn atfork(&self, who: i32) {
        match who {
            ..0 => self.lock.lock(),
            0 => self.lock.unlock(),
            _ => self.lock.reset(),
        }
    }
}

/// Fill in a meta record for a group at `mem` and link the group to it.
///
/// # Safety
/// `m` is a fresh record, `mem` the group's writable memory; the lock is held.
#[allow(clippy::too_many_arguments)]
unsafe fn init_group(
    m: *mut Meta,
    mem: *mut u8,
    last_idx: usize,
    active_idx: usize,
    sc: u8,
    maplen: u32,
    avail: u32,
    freed: u32,
) {
    // SAFETY: the caller vouches for both.
    unsafe {
        let g = mem.cast::<Group>();
        (*m).mem = g;
        (*g).meta = m;
        (*g).active_idx = active_idx as u8;
        set_shape(m, last_idx, sc, maplen);
        (*m).freeable = 1;
        (*m).zeroed = 0;
        (*m).avail_mask.store(avail, Relaxed);
        (*m).freed_mask.store(freed, Relaxed);
        (*m).clean_mask = 0;
        (*m).swept_mask = 0;
        (*m).hosts.store(0, Relaxed);
    }
}

impl State {
    fn new(pagesize: usize, seed: u64) -> Self {
        State {
            pagesize,
            cycle: 0,
            free_meta_head: null_mut(),
            avail_meta: null_mut(),
            avail_meta_count: 0,
            avail_meta_area_count: 0,
            meta_alloc_shift: FIRST_META_SHIFT,
            meta_area_head: null_mut(),
            meta_area_tail: null_mut(),
            avail_meta_areas: null_mut(),
            active: [null_mut(); NUM_CLASSES],
            usage_by_class: [0; NUM_CLASSES],
            bounce: Bounce::new(),
            brk: 0,
            sweep_class: 0,
            cache: MapCache::groups(),
            group_bytes: 0,
            large_cache: MapCache::large(),
            rng: seed | 1,
            zero_live: [0; ZERO_SLOTS / 64],
            quarantine: [(null_mut(), 0, false); QUARANTINE_SLOTS],
            quarantine_next: 0,
            caches: null_mut(),
            spare_caches: null_mut(),
            stats: Stats::default(),
        }
    }

    /// mallocng `alloc_meta`: a record from the free list, else from the current meta
    /// area, else from a new area: taken from the program break (first with a guard page
    /// below it), or carved from a PROT_NONE reservation that doubles each time, so that
    /// every area has an inaccessible page or area-sized gap below the first.
    ///
    /// # Safety
    /// The lock is held.
    unsafe fn alloc_meta<O: Os>(&mut self, secret: u64) -> Option<*mut Meta> {
        // SAFETY: free and area records are ours under the lock; new areas are fresh.
        unsafe {
            if let Some(m) = dequeue_head(&mut self.free_meta_head) {
                return Some(m);
            }
            if self.avail_meta_count == 0 {
                let pagesize = self.pagesize;
                let mut need_unprotect = true;
                if self.avail_meta_area_count == 0 && O::USE_BRK && self.brk != BRK_FAILED {
                    let mut new = self.brk + pagesize;
                    let mut need_guard = false;
                    if self.brk == 0 {
                        need_guard = true;
                        let b = O::brk(0);
                        // some ancient kernels returned _ebss instead of the next page.
                        self.brk = round_up(b, pagesize);
                        new = self.brk + 2 * pagesize;
                    }
                    if self.brk == 0 || O::brk(new) != new {
                        self.brk = BRK_FAILED;
                    } else {
                        if need_guard {
                            let at = core::ptr::with_exposed_provenance_mut(self.brk);
                            O::mmap(at, pagesize, Prot::None, true);
                        }
                        self.brk = new;
                        self.avail_meta_areas =
                            core::ptr::with_exposed_provenance_mut(new - pagesize);
                        self.avail_meta_area_count = pagesize / AREA;
                        self.stats.brk_areas += 1;
                        need_unprotect = false;
                    }
                }
                if self.avail_meta_area_count == 0 {
                    let n = 2usize << self.meta_alloc_shift;
                    let p = O::mmap(null_mut(), n * pagesize, Prot::None, false)?.as_ptr();
                    self.avail_meta_areas = p.wrapping_add(pagesize);
                    self.avail_meta_area_count = (n - 1) * (pagesize / AREA);
                    self.meta_alloc_shift = (self.meta_alloc_shift + 1).min(20);
                }
                let p = self.avail_meta_areas;
                if p.addr() & (pagesize - 1) != 0 {
                    need_unprotect = false;
                }
                if need_unprotect && !O::mprotect(p, pagesize, Prot::ReadWrite) {
                    return None;
                }
                // the decoder reads a record's area only if the page map lists it
                if !pagemap::note_area(p) && !pagemap::register::<O>(p, AREA) {
                    return None;
                }
                self.avail_meta_area_count -= 1;
                self.avail_meta_areas = p.wrapping_add(AREA);
                let area = p.cast::<MetaArea>();
                if self.meta_area_tail.is_null() {
                    self.meta_area_head = area;
                } else {
                    (*self.meta_area_tail).next = area;
                }
                self.meta_area_tail = area;
                (*area).check = secret;
                (*area).nslots = AREA_SLOTS;
                self.avail_meta_count = AREA_SLOTS;
                self.avail_meta = area_slots(area);
                self.stats.meta_areas += 1;
            }
            self.avail_meta_count -= 1;
            let m = self.avail_meta;
            self.avail_meta = m.wrapping_add(1);
            (*m).prev = null_mut();
            (*m).next = null_mut();
            Some(m)
        }
    }

    /// Return a record to the free list, wiped.
    ///
    /// # Safety
    /// `m` is live and unlisted; the lock is held.
    unsafe fn free_meta(&mut self, m: *mut Meta) {
        // SAFETY: forwarded.
        unsafe {
            m.write(Meta::empty());
            queue(&mut self.free_meta_head, m);
        }
    }

    /// A slot of class `sc` (or its coarse neighbour) for an `n`-byte request.
    ///
    /// # Safety
    /// The lock is held.
    pub(crate) unsafe fn take_slot<O: Os>(
        &mut self,
        sc: usize,
        n: usize,
        secret: u64,
    ) -> Option<(*mut Meta, usize)> {
        // SAFETY: forwarded.
        unsafe { self.take_slot_of::<O>(sc, n, secret, true) }
    }

    /// [`State::take_slot`], with the coarse neighbour only if `coarse` (a thread cache
    /// refills with exact classes: a slot goes back to the bin of its own class, so a
    /// coarse one would drift to the neighbour's bin and leave this one to refill again).
    ///
    /// # Safety
    /// The lock is held.
    // (inlined by attribute, as the list operations: the crate is optimised for size, and
    // a refill takes slots in a loop)
    #[inline(always)]
    pub(crate) unsafe fn take_slot_of<O: Os>(
        &mut self,
        mut sc: usize,
        n: usize,
        secret: u64,
        coarse: bool,
    ) -> Option<(*mut Meta, usize)> {
        // SAFETY: listed records are live; the lock is held.
        unsafe {
            let mut g = self.active[sc];
            // use coarse size classes initially when there are not yet any groups of the
            // desired size. This allows counts of 2 or 3 to be allocated at first rather
            // than starting with 7 or 5, the min counts for even size classes.
            if coarse
                && g.is_null()
                && (4..32).contains(&sc)
                && sc != 6
                && sc & 1 == 0
                && self.usage_by_class[sc] == 0
            {
                let mut usage = self.usage_by_class[sc | 1];
                let c = self.active[sc | 1];
                // if a new group may be allocated, count it toward usage in deciding if
                // we can use the coarse class.
                if c.is_null()
                    || ((*c).avail_mask.load(Relaxed) == 0 && (*c).freed_mask.load(Relaxed) == 0)
                {
                    usage += 3;
                }
                if usage <= 12 {
                    sc |= 1;
                }
                g = self.active[sc];
            }
            if !g.is_null() {
                let mask = (*g).avail_mask.load(Relaxed);
                if mask != 0 {
                    let first = self.pick(mask);
                    (*g).avail_mask.store(mask - first, Relaxed);
                    return Some((g, first.trailing_zeros() as usize));
                }
            }
            let idx = self.alloc_slot::<O>(sc, n, secret)?;
            Some((self.active[sc], idx))
        }
    }

    /// The slot to take from a nonempty `mask`: the lowest (mallocng), or a random one
    /// with `harden-random-slots`.
    fn pick(&mut self, mask: u32) -> u32 {
        if !RANDOM_SLOTS {
            return mask & mask.wrapping_neg();
        }
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let mut m = mask;
        for _ in 0..(x >> 32) % mask.count_ones() as u64 {
            m &= m - 1;
        }
        m & m.wrapping_neg()
    }

    /// mallocng `try_avail`: make the head of `sc`'s active list one with available slots
    /// and take the lowest; 0 when the list runs empty.
    ///
    /// # Safety
    /// The lock is held.
    unsafe fn try_avail(&mut self, sc: usize) -> u32 {
        // Every step along the list checks that the next record points back (mallocng
        // followed `next` as it found it: a forged link took it anywhere).
        // SAFETY: listed records are live; the lock is held.
        unsafe {
            let mut m = self.active[sc];
            if m.is_null() {
                return 0;
            }
            let mut mask = (*m).avail_mask.load(Relaxed);
            if mask == 0 {
                if (*m).freed_mask.load(Relaxed) == 0 {
                    dequeue(&mut self.active[sc], m);
                    m = self.active[sc];
                    if m.is_null() {
                        return 0;
                    }
                } else {
                    m = ok(checked_links(m)).1;
                    self.active[sc] = m;
                }
                mask = (*m).freed_mask.load(Relaxed);
                // skip a fully-free group unless it's the only one or it's a permanently
                // non-freeable group
                if mask == low_mask((*m).last_idx as usize) && (*m).freeable != 0 {
                    m = ok(checked_links(m)).1;
                    self.active[sc] = m;
                    mask = (*m).freed_mask.load(Relaxed);
                }
                // activate more slots in a not-fully-active group if needed, but only as
                // a last resort. Prefer using any other group with free slots: this avoids
                // touching and dirtying as-yet-unused pages.
                let active_idx = (*(*m).mem).active_idx as usize;
                if mask & low_mask(active_idx) == 0 {
                    if (*m).next != m {
                        m = ok(checked_links(m)).1;
                        self.active[sc] = m;
                    } else {
                        let size = class_size(sc);
                        let mut cnt = active_idx + 2;
                        let mut span = UNIT + size * cnt;
                        // activate up to the next 4k boundary
                        while (span ^ (span + size - 1)) < 4096 {
                            cnt += 1;
                            span += size;
                        }
                        cnt = cnt.min((*m).last_idx as usize + 1);
                        (*(*m).mem).active_idx = (cnt - 1) as u8;
                    }
                }
                mask = activate_group(m);
                check!(mask != 0);
                self.bounce.decay_bounces(sc);
            }
            let first = self.pick(mask);
            (*m).avail_mask.store(mask - first, Relaxed);
            first
        }
    }

    /// Unmap every mapping the caches keep; whether there was any. Cached mappings hold
    /// address space, which counts against `RLIMIT_AS` and `RLIMIT_DATA` (and commit
    /// charge) though their pages are gone: when a mapping fails, they are what to give up
    /// before failing the allocation.
    ///
    /// # Safety
    /// The lock is held.
    unsafe fn flush_map_caches<O: Os>(&mut self) -> bool {
        let guard = GUARD_PAGES * self.pagesize;
        let mut any = false;
        // SAFETY: cached mappings are the heap's and hold nothing live; a large block is
        // cached without the configured guard on each side.
        unsafe {
            while let Some((p, len)) = self.cache.pop() {
                unmap::<O>(p, len);
                any = true;
            }
            while let Some((p, len)) = self.large_cache.pop() {
                unmap::<O>(p.wrapping_sub(guard), len + 2 * guard);
                any = true;
            }
        }
        any
    }

    /// mallocng `alloc_slot`: a slot of `sc` from the active list, or from a new group.
    ///
    /// # Safety
    /// The lock is held.
    unsafe fn alloc_slot<O: Os>(&mut self, sc: usize, req: usize, secret: u64) -> Option<usize> {
        // SAFETY: forwarded; the new group is fresh and ours.
        unsafe {
            let first = self.try_avail(sc);
            if first != 0 {
                return Some(first.trailing_zeros() as usize);
            }
            let g = self.alloc_group::<O>(sc, req, secret)?;
            // take slot 0
            (*g).avail_mask.fetch_sub(1, Relaxed);
            queue(&mut self.active[sc], g);
            Some(0)
        }
    }

    /// mallocng `alloc_group`: a new group for `sc`, sized from usage by [`plan_group`].
    ///
    /// # Safety
    /// The lock is held.
    unsafe fn alloc_group<O: Os>(
        &mut self,
        sc: usize,
        req: usize,
        secret: u64,
    ) -> Option<*mut Meta> {
        // SAFETY: the lock is held; the memory set up is fresh (a new mapping, or a slot
        // just taken from the host class).
        unsafe {
            let m = self.alloc_meta::<O>(secret)?;
            let usage = self.usage_by_class[sc];
            let coarse = if sc & 1 == 0 && sc < 32 {
                self.usage_by_class[sc + 1]
            } else {
                0
            };
            let plan = plan_group(sc, usage, coarse, req, self.pagesize, &mut self.bounce);
            let (p, cnt, active_idx, maplen, fresh) = match plan {
                GroupPlan::Mapped {
                    cnt,
                    len,
                    active_idx,
                } => {
                    if let Some((p, len)) = self.cache.take(len, 0) {
                        self.group_bytes += len;
                        (p, cnt, active_idx, (len / AREA) as u32, Fresh::No)
                    } else {
                        let mut p = O::mmap(null_mut(), len, Prot::ReadWrite, false);
                        if p.is_none() && self.flush_map_caches::<O>() {
                            p = O::mmap(null_mut(), len, Prot::ReadWrite, false);
                        }
                        let Some(p) = p else {
                            self.free_meta(m);
                            return None;
                        };
                        if !pagemap::register::<O>(p.as_ptr(), len) {
                            O::munmap(p.as_ptr(), len);
                            self.free_meta(m);
                            return None;
                        }
                        self.stats.groups_mapped += 1;
                        self.group_bytes += len;
                        (p.as_ptr(), cnt, active_idx, (len / AREA) as u32, Fresh::Yes)
                    }
                }
                GroupPlan::Nested {
                    cnt,
                    host_class,
                    host_req,
                } => {
                    let Some(idx) = self.alloc_slot::<O>(host_class, host_req, secret) else {
                        self.free_meta(m);
                        return None;
                    };
                    let host = self.active[host_class];
                    let p = enframe(host, idx, class_size(host_class) - IB, self.cycle, secret);
                    mark_nested(p, secret);
                    (*host).hosts.fetch_or(1 << idx, Relaxed);
                    self.stats.groups_nested += 1;
                    (p, cnt, cnt - 1, 0, Fresh::No)
                }
            };
            self.cycle = self.cycle.wrapping_add(1);
            self.usage_by_class[sc] += cnt;
            let avail = low_mask(active_idx);
            let freed = low_mask(cnt - 1) & !avail;
            init_group(m, p, cnt - 1, active_idx, sc as u8, maplen, avail, freed);
            match fresh {
                Fresh::Yes => (*m).zeroed = (cnt == 1) as u8,
                // Reused memory holds stale data: an old allocation's header at a slot's
                // start, keyed by the same secret and address, would still decode, so each
                // is marked freed.
                Fresh::No => {
                    let (st, base) = (stride(m), storage((*m).mem));
                    if ZERO_ON_FREE {
                        // slots must read as zero when first handed out
                        base.write_bytes(0, cnt * st - IB);
                    }
                    for i in 0..cnt {
                        let p = base.wrapping_add(i * st);
                        mark_freed(p, Key::of(secret, p));
                    }
                }
            }
            Some(m)
        }
    }

    /// mallocng `nontrivial_free`: the locked part of free, when slot `i` of `g` is the
    /// first freed (the group must be listed again) or the last in use (it may go away).
    ///
    /// # Safety
    /// The lock is held; `g` is live and slot `i` in use and validated.
    unsafe fn nontrivial_free<O: Os>(&mut self, g: *mut Meta, i: usize, secret: u64) -> Unmap {
        // SAFETY: the lock is held; listed records are live.
        unsafe {
            let bit = 1u32 << i;
            let sc = (*g).sizeclass as usize;
            let mask = free_slots(&(*g).freed_mask, &(*g).avail_mask);
            if mask + bit == low_mask((*g).last_idx as usize) && self.okay_to_free(g) {
                // any multi-slot group is necessarily on an active list here, but
                // single-slot groups might or might not be.
                if !(*g).next.is_null() {
                    check!(sc < NUM_CLASSES);
                    let activate_new = self.active[sc] == g;
                    dequeue(&mut self.active[sc], g);
                    if activate_new && !self.active[sc].is_null() {
                        activate_group(self.active[sc]);
                    }
                }
                return self.free_group::<O>(g, secret);
            } else if mask == 0 {
                check!(sc < NUM_CLASSES);
                // might still be active if there were no allocations after the last
                // available slot was taken.
                if self.active[sc] != g {
                    queue(&mut self.active[sc], g);
                }
            }
            // a kept single-slot group's memory is no longer fresh
            clear_zeroed(g);
            free_locked(&(*g).freed_mask, bit);
            KEEP
        }
    }

    /// mallocng `free_group`: tear down an empty group; its mapping is returned for
    /// unmapping after the lock is dropped, a nested group's host slot is freed.
    ///
    /// # Safety
    /// The lock is held; `g` is live, unlisted and empty.
    unsafe fn free_group<O: Os>(&mut self, g: *mut Meta, secret: u64) -> Unmap {
        // SAFETY: the lock is held; the host slot of a nested group is validated.
        unsafe {
            let sc = (*g).sizeclass as usize;
            if sc < NUM_CLASSES {
                self.usage_by_class[sc] -= (*g).last_idx as usize + 1;
            }
            let unmap = if (*g).maplen != 0 {
                self.bounce.step_seq();
                self.bounce.record_seq(sc);
                let (mem, len) = ((*g).mem.cast::<u8>(), (*g).maplen as usize * AREA);
                if sc < NUM_CLASSES {
                    self.group_bytes = self.group_bytes.saturating_sub(len);
                    self.cache
                        .put_within(mem, len, group_budget(self.group_bytes, len))
                } else {
                    // Keep the block, guards and all, with its data made a guard too: the
                    // pages are zapped (no memory), any use after free faults, and the
                    // address range is reused whole instead of unmapped and remapped
                    // (which fragments the address space into ever more VMAs). Blocks
                    // with PROT_NONE guards, or whose data cannot be guarded, are unmapped.
                    let (lead, trail, protnone) = large_guards(g);
                    let guard = GUARD_PAGES * self.pagesize;
                    let whole = (mem.wrapping_sub(lead), lead + len + trail);
                    // its data is no longer heap memory to the decoder (then guarded, or
                    // unmapped with the rest)
                    pagemap::unregister::<O>(mem, len);
                    if !protnone && O::guard(mem, len, true) {
                        // cached as a span with the configured guard on each side: the
                        // surplus guards are part of the span (already guarded)
                        let (span_at, span) = (whole.0.wrapping_add(guard), whole.1 - 2 * guard);
                        let guard_of = |e: Option<(*mut u8, usize)>| {
                            e.map(|(p, l)| (p.wrapping_sub(guard), l + 2 * guard))
                        };
                        let [a, b] = self.large_cache.put(span_at, span);
                        [guard_of(a), guard_of(b)]
                    } else {
                        [Some(whole), None]
                    }
                }
            } else {
                let p = (*g).mem.cast::<u8>();
                let host = ok(find_host(p, secret));
                (*(*g).mem).meta = null_mut();
                // not checking size/reserved here; it's intentionally invalid
                mark_freed(p, host.key);
                (*host.meta).hosts.fetch_and(!(1 << host.idx), Relaxed);
                if ZERO_ON_FREE {
                    p.write_bytes(0, host.end.addr() - p.addr());
                }
                self.nontrivial_free::<O>(host.meta, host.idx, secret)
            };
            self.free_meta(g);
            unmap
        }
    }

    /// mallocng `okay_to_free`: whether an empty group should go, or be kept for reuse.
    ///
    /// # Safety
    /// `g` is live; the lock is held.
    unsafe fn okay_to_free(&self, g: *mut Meta) -> bool {
        // SAFETY: forwarded.
        unsafe {
            let sc = (*g).sizeclass as usize;
            if (*g).freeable == 0 {
                return false;
            }
            // always free individual mmaps not suitable for reuse
            if sc >= NUM_CLASSES || stride(g) < class_size(sc) {
                return true;
            }
            // always free groups allocated inside another group's slot since recreating
            // them should not be expensive and they might be blocking freeing of a much
            // larger group.
            if (*g).maplen == 0 {
                return true;
            }
            // if there is another non-full group, free this one to consolidate future
            // allocations, reduce fragmentation.
            if (*g).next != g {
                return true;
            }
            // free any group in a size class that's not bouncing
            if !self.bounce.is_bouncing(sc) {
                return true;
            }
            let cnt = (*g).last_idx as usize + 1;
            let usage = self.usage_by_class[sc];
            // if usage is high enough that a larger count should be used, free the
            // low-count group so a new one will be made.
            if 9 * cnt <= usage && cnt < 20 {
                return true;
            }
            // otherwise, keep the last group in a bouncing class.
            false
        }
    }

    /// Give back the whole pages of free slots that stayed free for a full sweep
    /// interval. mallocng 1.2.1–1.2.3 released pages on *every* free of a multi-page slot
    /// and a churn of medium sizes became a storm of `madvise` calls (1.2.4 turned it
    /// off, never releasing). Here a slot is released only if it was free at the previous
    /// sweep and still is: slots reused within an interval (every churn loop) cost
    /// nothing, and adjacent cold slots are released in one call.
    ///
    /// DONTNEED rather than FREE, on purpose: only cold memory gets here, so the cheap
    /// reuse MADV_FREE offers hardly matters, while MADV_FREE pages stay in RSS (and in a
    /// container's memory charge) until the kernel feels pressure, which is what a user
    /// watching RSS after a large free would see as a leak.
    ///
    /// # Safety
    /// The lock is held.
    pub(crate) unsafe fn sweep<O: Os>(&mut self) {
        self.stats.sweeps += 1;
        let mut budget = SWEEP_GROUPS;
        for _ in 0..NUM_CLASSES {
            let sc = self.sweep_class;
            self.sweep_class = (sc + 1) % NUM_CLASSES;
            let head = self.active[sc];
            if head.is_null() || class_size(sc) < self.pagesize + IB {
                continue;
            }
            let mut m = head;
            loop {
                // SAFETY: listed records are live; the lock is held.
                unsafe {
                    self.release_cold::<O>(m);
                    m = ok(checked_links(m)).1;
                }
                budget -= 1;
                if m == head || budget == 0 {
                    break;
                }
            }
            if budget == 0 {
                break;
            }
        }
    }

    /// # Safety
    /// `m` is live; the lock is held.
    unsafe fn release_cold<O: Os>(&mut self, m: *mut Meta) {
        // SAFETY: freed slots cannot be handed out without the lock, which we hold; only
        // whole pages strictly inside slots are released, never a header.
        unsafe {
            if (*m).last_idx == 0 {
                return;
            }
            let freed = (*m).freed_mask.load(Relaxed);
            // slots never activated are untouched pages: nothing to give back
            let touched = low_mask((*(*m).mem).active_idx as usize);
            let cold = freed & (*m).swept_mask & !(*m).clean_mask & touched;
            (*m).swept_mask = freed;
            if cold == 0 {
                return;
            }
            let ps = self.pagesize;
            let st = stride(m);
            let base = storage((*m).mem);
            let mut rest = cold;
            while rest != 0 {
                let i = rest.trailing_zeros() as usize;
                let run = (rest >> i).trailing_ones() as usize;
                let lo = round_up(base.addr() + i * st, ps);
                let hi = (base.addr() + (i + run) * st - IB) & !(ps - 1);
                if hi > lo {
                    O::release(base.with_addr(lo), hi - lo);
                    self.stats.releases += 1;
                }
                rest &= !(low_mask(i + run - 1));
            }
            (*m).clean_mask |= cold;
        }
    }
}
