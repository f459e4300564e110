//! The heap: the one context that owns all global state, the groups' lists, and the
//! malloc/free/realloc paths (mallocng's `malloc.c`, `free.c`, `realloc.c`,
//! `aligned_alloc.c`). Its other parts each have a module: individually mapped blocks
//! ([`crate::large`]), meta areas ([`crate::meta_area`]), the release of cold pages
//! ([`crate::release`]), donated memory ([`crate::donate`]), `harden-zero-size`
//! ([`crate::zero_size`]), and the threads' caches ([`crate::tcache`]).
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
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32};

use crate::cache::{CACHE_BYTES, MapCache, group_budget};
use crate::check::{check, ok};
use crate::config::size_overflows;
use crate::config::{
    AREA, CLASS_MMAP, DECAY_MS, GUARD_PAGES, IB, MAX_ALIGN, MMAP_THRESHOLD, NUM_CLASSES,
    QUARANTINE, RANDOM_SLOTS, UNIT, ZERO_ON_FREE, ZERO_SIZE,
};
use crate::large::GUARD_UNTRIED;
use crate::list::{checked_links, dequeue, queue};
use crate::lock::RawLock;
use crate::masks::{FastFree, Mask, free_fast, free_locked, free_slots};
use crate::meta::{
    Group, Meta, MetaArea, activate_group, clear_zeroed, large_guards, low_mask, set_shape,
    storage, stride,
};
use crate::meta_area::FIRST_META_SHIFT;
use crate::os::{Os, Prot};
use crate::pagemap;
use crate::policy::{Bounce, GroupPlan, plan_group, round_up};
use crate::retain::{RETAIN_FROM, Retained};
use crate::size_class::{class_size, size_to_class};
use crate::slot::{
    Key, Slot, all_zero, enframe, find_host, find_meta, frame, mark_freed, mark_nested, retire,
    set_redirect, set_size, slot_bounds, validate,
};
use crate::tcache::ThreadCache;
use crate::zero_size::ZERO_SLOTS;

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
    /// Thread caches made.
    pub caches: u64,
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
    /// Freed group mappings held for reuse (`retain.rs`).
    pub(crate) cache: Retained,
    /// Bytes of live group mappings (what the held mappings' budget is a share of).
    pub(crate) group_bytes: usize,
    /// The peak of `group_bytes` since held mappings last expired: what may be held at
    /// most (with decay).
    pub(crate) retain_peak: usize,
    /// When the groups being freed now became free, if not now: a thread's decay retires
    /// groups that have waited [`DECAY_MS`] already, which are held no longer.
    pub(crate) freed_since: Option<u64>,
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
    /// Caches whose threads exited while they still owned groups with slots in use,
    /// newest first, linked through `next` and `prev` (`tcache.rs`): the next thread to
    /// make a cache takes one over whole; one left longer than the decay time, or beyond
    /// [`crate::tcache::MAX_ABANDONED`], gives its groups to the heap. Their lists
    /// change only under the lock.
    pub(crate) abandoned: *mut crate::tcache::ThreadCache,
    /// Caches on `abandoned`.
    pub(crate) abandoned_count: usize,
    pub(crate) stats: Stats,
}

/// Unmap heap memory, first taking it out of the page map (so the decoder never reads a
/// page that is listed but gone).
///
/// # Safety
/// The range is one the heap mapped and holds nothing live.
pub(crate) unsafe fn unmap<O: Os>(p: *mut u8, len: usize) {
    pagemap::unregister::<O>(p, len);
    // SAFETY: forwarded.
    unsafe { O::munmap(p, len) };
    pagemap::trim::<O>(p, len);
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
    pub(crate) lock: L,
    /// The region, made by the first allocation (null before).
    pub(crate) region: AtomicPtr<Region>,
    /// Frees of multi-page slots, counted lock-free, to schedule release sweeps.
    pub(crate) medium_frees: AtomicU32,
    /// How guards are made: `GUARD_UNTRIED`, `GUARD_MADVISE` or `GUARD_PROTNONE`. The
    /// first large allocation tries `MADV_GUARD_INSTALL` and checks that the marker really
    /// faults (an emulator may accept the call and install nothing); that failing, or any
    /// later failure (EINVAL before Linux 6.13, or on a locked mapping after `mlockall`),
    /// turns it to PROT_NONE sub-mappings for good.
    pub(crate) guard_mode: AtomicU8,
    /// `harden-zero-size`: the never-accessible region `malloc(0)` points into (null
    /// until the first zero-size allocation).
    pub(crate) zero_region: AtomicPtr<u8>,
    _os: PhantomData<fn() -> O>,
}

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
pub(crate) type Unmap = crate::cache::Evicted;

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
        // the decoder's page-map lookup takes the top array for granted once a secret exists
        if !pagemap::ensure_top::<O>() {
            return null_mut();
        }
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
            if !(*g).owner.load(Relaxed).is_null() {
                if self.free_remote(g, idx) {
                    self.retire_orphan(g);
                }
                return;
            }
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
            if sc >= NUM_CLASSES
                && n >= MMAP_THRESHOLD
                && !large_guards(g).2
                && let Some(r) = self.resize_large(p, &s, n, secret)
            {
                return r;
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

    /// musl's fork hook: `who < 0` before fork (take the lock, and the page map's),
    /// `0` in the parent afterwards (release them), `> 0` in the child (their holders
    /// are gone: reset).
    pub fn atfork(&self, who: i32) {
        match who {
            ..0 => {
                self.lock.lock();
                pagemap::fork_prepare();
            }
            0 => {
                pagemap::fork_parent();
                self.lock.unlock();
            }
            _ => {
                pagemap::fork_child();
                self.lock.reset();
            }
        }
    }
}

/// Fill in a meta record for a group at `mem` and link the group to it.
///
/// # Safety
/// `m` is a fresh record, `mem` the group's writable memory; the lock is held.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn init_group(
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
        (*m).owner.store(null_mut(), Relaxed);
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
            cache: Retained::new(),
            group_bytes: 0,
            retain_peak: 0,
            freed_since: None,
            large_cache: MapCache::large(),
            rng: seed | 1,
            zero_live: [0; ZERO_SLOTS / 64],
            quarantine: [(null_mut(), 0, false); QUARANTINE_SLOTS],
            quarantine_next: 0,
            caches: null_mut(),
            spare_caches: null_mut(),
            abandoned: null_mut(),
            abandoned_count: 0,
            stats: Stats::default(),
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
    pub(crate) unsafe fn flush_map_caches<O: Os>(&mut self) -> bool {
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

    /// Bytes of freed group mappings that may be held when one of `len` bytes is put:
    /// a share of the live ones (`group_budget`); with decay, up to their recent peak.
    fn retain_budget(&self, len: usize) -> usize {
        let share = group_budget(self.group_bytes, len);
        if DECAY_MS == 0 || self.retain_peak < RETAIN_FROM {
            share.min(CACHE_BYTES)
        } else {
            share.max(self.retain_peak)
        }
    }

    /// When the oldest held group mapping was freed, and the bytes that can expire, if
    /// any can: what is held within the share of the live groups that stays does not make
    /// a thread wait (it would read the clock on its calls for nothing).
    pub(crate) fn retained_wait(&self) -> Option<(u64, usize)> {
        let keep = group_budget(self.group_bytes, 0);
        let over = self.cache.bytes().checked_sub(keep).filter(|&b| b != 0)?;
        Some((self.cache.oldest_at()?, over))
    }

    /// Unmap the held group mappings that have been free [`DECAY_MS`] (down to the share
    /// of the live groups that stays); the peak they are held against starts again.
    ///
    /// # Safety
    /// The lock is held.
    pub(crate) unsafe fn expire_retained<O: Os>(&mut self) {
        let Some(at) = self.cache.oldest_at() else {
            return;
        };
        if DECAY_MS == 0 {
            return;
        }
        let now = O::now_ms();
        if at.saturating_add(DECAY_MS) > now {
            return;
        }
        let keep = group_budget(self.group_bytes, 0);
        while let Some((p, len)) = self.cache.expired(now, keep) {
            // SAFETY: a held mapping is the heap's and holds nothing live.
            unsafe { unmap::<O>(p, len) };
        }
        self.retain_peak = self.group_bytes + self.cache.bytes();
    }

    /// mallocng `alloc_slot`: a slot of `sc` from the active list, or from a new group.
    ///
    /// # Safety
    /// The lock is held.
    pub(crate) unsafe fn alloc_slot<O: Os>(
        &mut self,
        sc: usize,
        req: usize,
        secret: u64,
    ) -> Option<usize> {
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

    /// A new group of class `sc` for the thread cache `owner` (`tcache.rs`): every slot
    /// in `avail_mask` (the owner hands them out lowest first, so untouched pages stay
    /// untouched without mallocng's progressive activation), unlisted. Its slots take
    /// any request of the class (a single-slot mapping is not cut to the request that
    /// made it: the owner reuses it for the class).
    ///
    /// # Safety
    /// The lock is held; `owner` is a live cache of this heap.
    pub(crate) unsafe fn own_group<O: Os>(
        &mut self,
        sc: usize,
        secret: u64,
        owner: *mut ThreadCache,
    ) -> Option<*mut Meta> {
        // SAFETY: the new group is fresh and unreachable from any other thread.
        unsafe {
            let m = self.alloc_group::<O>(sc, class_size(sc) - IB, secret)?;
            let last = (*m).last_idx;
            (*m).avail_mask.store(low_mask(last as usize), Relaxed);
            (*m).freed_mask.store(0, Relaxed);
            (*(*m).mem).active_idx = last;
            (*m).owner.store(owner, Relaxed);
            Some(m)
        }
    }

    /// Give the group `g`, which its owner has taken off its list, to the heap: its
    /// thread exits. Its free slots, the owner's and those other threads freed, become
    /// the heap's (`freed_mask`; the heap's `avail_mask` is the list head's), and it goes
    /// where mallocng would have it ([`State::settle`]).
    ///
    /// Sequentially consistent, against a remote free ([`crate::masks::free_remote`]):
    /// the owner is cleared, then `freed` read; the free ORs its bit, then reads the
    /// owner. Either this sees the bit, or the free sees the group disowned and settles it
    /// under the lock after this: a group emptied or first freed by that free is freed or
    /// listed either way (loom: `a_group_given_back_meets_a_remote_free`).
    ///
    /// # Safety
    /// The lock is held; `g` is live, owned by an exiting cache, off its list.
    pub(crate) unsafe fn disown<O: Os>(&mut self, g: *mut Meta, secret: u64) -> Unmap {
        // SAFETY: the caller's contract.
        unsafe {
            (*g).owner.store(null_mut(), SeqCst);
            (*g).freed_mask.sc_order();
            let a = (*g).avail_mask.load(Relaxed);
            // (the union `freed | avail` stays the free slots throughout, for a mallocng
            // free that reads both meanwhile)
            let free = (*g).freed_mask.fetch_or(a, SeqCst) | a;
            (*g).avail_mask.store(0, Relaxed);
            // (an owner's release marks are exact only for slots free since its last
            // sweep: `tcache::came_back`)
            (*g).clean_mask &= free & (*g).swept_mask;
            (*g).swept_mask &= free;
            self.settle::<O>(g, secret)
        }
    }

    /// Put the heap's group `g` where its masks say, as mallocng's `nontrivial_free`
    /// would: freed if no slot is in use (and it can be), on its class's active list if
    /// it has a free slot, else off every list. Idempotent, so either side of a race
    /// ([`State::disown`]) may run it.
    ///
    /// # Safety
    /// The lock is held; `g` is a live record of the heap's (`owner` null) and either on
    /// its class's active list or on none.
    pub(crate) unsafe fn settle<O: Os>(&mut self, g: *mut Meta, secret: u64) -> Unmap {
        // SAFETY: the caller's contract; listed records are live.
        unsafe {
            let sc = (*g).sizeclass as usize;
            check!(sc < NUM_CLASSES);
            let free = free_slots(&(*g).freed_mask, &(*g).avail_mask);
            let listed = !(*g).next.is_null();
            if free == low_mask((*g).last_idx as usize) && (*g).freeable != 0 {
                if listed {
                    self.unlist(sc, g);
                }
                return self.free_group::<O>(g, secret);
            }
            clear_zeroed(g);
            if free != 0 && !listed {
                queue(&mut self.active[sc], g);
            }
            KEEP
        }
    }

    /// Take `g` off its class's active list; if it was the head, the new head hands out
    /// slots from now on (mallocng's `activate_group` of the next group).
    ///
    /// # Safety
    /// The lock is held; `g` is on the active list of class `sc`.
    unsafe fn unlist(&mut self, sc: usize, g: *mut Meta) {
        // SAFETY: the caller's contract; listed records are live.
        unsafe {
            let was_head = self.active[sc] == g;
            dequeue(&mut self.active[sc], g);
            if was_head && !self.active[sc].is_null() {
                activate_group(self.active[sc]);
            }
        }
    }

    /// A group of the heap's for the cache `owner`, whose own groups of class `sc` have
    /// no free slot: the first on the class's active list with one (groups there with
    /// none are dropped from the list, as `try_avail` does), made `owner`'s with every
    /// free slot in `avail_mask`. What exited threads gave back is reused before a group
    /// is made.
    ///
    /// # Safety
    /// The lock is held; `owner` is a live cache of this heap.
    pub(crate) unsafe fn adopt(&mut self, sc: usize, owner: *mut ThreadCache) -> Option<*mut Meta> {
        // SAFETY: listed records are live and the heap's; the lock is held.
        unsafe {
            let head = self.active[sc];
            if head.is_null() {
                return None;
            }
            let tail = ok(checked_links(head)).0;
            let mut g = head;
            loop {
                let next = ok(checked_links(g)).1;
                if free_slots(&(*g).freed_mask, &(*g).avail_mask) == 0 {
                    dequeue(&mut self.active[sc], g);
                } else if (*g).hosts.load(Relaxed) == 0 {
                    break;
                }
                // (a group hosting nested groups stays the heap's: their frees are
                // locked ones, and only the heap would see it empty when they go)
                if g == tail {
                    return None;
                }
                g = next;
            }
            dequeue(&mut self.active[sc], g);
            // Owner first: a free that still sees the group as the heap's takes the
            // lock for a first or last free, and `nontrivial_free` sees the owner.
            (*g).owner.store(owner, Relaxed);
            let a = crate::masks::collect(&(*g).freed_mask, &(*g).avail_mask);
            (*(*g).mem).active_idx = (*g).last_idx;
            // (released slots stay marked: the owner's sweep skips them, its free clears)
            (*g).clean_mask &= a;
            (*g).swept_mask &= a;
            clear_zeroed(g);
            if !self.active[sc].is_null() && (*self.active[sc]).avail_mask.load(Relaxed) == 0 {
                // (the head hands out `avail`: give the new head its freed slots)
                activate_group(self.active[sc]);
            }
            Some(g)
        }
    }

    /// Tear down the empty, unlisted group `g` its owner gives up; a group of donated
    /// memory, which is never unmapped, goes back to the heap's list instead.
    ///
    /// # Safety
    /// The lock is held; `g` is live, owned, off its owner's list, with every slot in
    /// `avail_mask` and none freed by another thread after it was collected.
    pub(crate) unsafe fn retire_owned<O: Os>(&mut self, g: *mut Meta, secret: u64) -> Unmap {
        // SAFETY: the caller's contract: nothing can reach the group's slots any more.
        unsafe {
            if (*g).freeable == 0 {
                return self.disown::<O>(g, secret);
            }
            (*g).owner.store(null_mut(), Relaxed);
            self.free_group::<O>(g, secret)
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
                    self.expire_retained::<O>();
                    if let Some((p, len)) = self.cache.take(len) {
                        // the pages stay registered while held: a new hint cannot fail
                        pagemap::register::<O>(p, len, m);
                        self.group_bytes += len;
                        self.retain_peak = self.retain_peak.max(self.group_bytes);
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
                        if !pagemap::register::<O>(p.as_ptr(), len, m) {
                            O::munmap(p.as_ptr(), len);
                            self.free_meta(m);
                            return None;
                        }
                        self.stats.groups_mapped += 1;
                        self.group_bytes += len;
                        self.retain_peak = self.retain_peak.max(self.group_bytes);
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
            if !(*g).owner.load(Relaxed).is_null() {
                // a thread adopted the group since this free saw it the heap's: its
                // owner collects the slot (owners change only under the lock)
                free_locked(&(*g).freed_mask, bit);
                return KEEP;
            }
            let sc = (*g).sizeclass as usize;
            let mask = free_slots(&(*g).freed_mask, &(*g).avail_mask);
            if mask + bit == low_mask((*g).last_idx as usize) && self.okay_to_free(g) {
                // any multi-slot group is necessarily on an active list here, but
                // single-slot groups might or might not be.
                if !(*g).next.is_null() {
                    check!(sc < NUM_CLASSES);
                    self.unlist(sc, g);
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
    pub(crate) unsafe fn free_group<O: Os>(&mut self, g: *mut Meta, secret: u64) -> Unmap {
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
                    let now = match self.freed_since {
                        _ if DECAY_MS == 0 => 0,
                        Some(t) => t,
                        None => O::now_ms(),
                    };
                    let budget = self.retain_budget(len);
                    self.cache.put(mem, len, budget, now)
                } else {
                    self.retire_large::<O>(g, mem, len)
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
}
