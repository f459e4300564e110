//! The heap: the one context that owns all global state, the groups' lists, and the
//! malloc/free/realloc paths (mallocng's `malloc.c`, `free.c`, `realloc.c`,
//! `aligned_alloc.c`). Its other parts each have a module: groups made and freed
//! ([`crate::groups`]), freed group mappings held for reuse ([`crate::retain`]),
//! individually mapped blocks ([`crate::large`]), meta areas ([`crate::meta_area`]), the
//! release of cold pages ([`crate::release`]), donated memory ([`crate::donate`]),
//! `malloc(0)`'s pointers ([`crate::zero_size`]), the threads' caches ([`crate::tcache`]) and
//! the heap's side of their groups ([`crate::owned`]).
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

use crate::cache::MapCache;
use crate::check::{check, ok};
use crate::config::size_overflows;
use crate::config::{
    AREA, CANARY_ROOM, CLASS_MMAP, MAX_ALIGN, MMAP_THRESHOLD, NUM_CLASSES, QUARANTINE,
    RANDOM_SLOTS, UNIT, ZERO_ON_FREE,
};
use crate::large::GUARD_UNTRIED;
use crate::list::{checked_links, dequeue, queue};
use crate::lock::RawLock;
use crate::masks::{FastFree, free_fast};
use crate::meta::{
    Group, Meta, MetaArea, activate_group, is_zeroed, large_guards, low_mask, set_shape,
};
use crate::meta_area::FIRST_META_SHIFT;
use crate::os::{Os, Prot};
use crate::pagemap;
use crate::policy::{Bounce, round_up};
use crate::retain::Retained;
use crate::size_class::{class_size, request_class};
use crate::slot::{
    Key, Slot, all_zero, check_free, enframe, freed_word, mark_freed, owes_free_check, reframe,
    retire, set_redirect, set_size, slot_bounds, validate,
};
use crate::tcache::ThreadCache;

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
    /// The whole mapping of the large block freed last whose guards are PROT_NONE
    /// sub-mappings (`large.rs`: not cached, but not unmapped at once either), made
    /// inaccessible; null when none.
    pub(crate) large_held: (*mut u8, usize),
    /// xorshift state for randomised slot choice (`harden-random-slots`).
    pub(crate) rng: u64,
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

// the state and the home cache fit one 4 KiB page
const _: () = assert!(size_of::<Region>() <= AREA);

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
    /// The never-accessible region `malloc(0)` points into (`zero_size.rs`; null until
    /// the first zero-size allocation).
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
pub(crate) const KEEP: Unmap = [None, None];

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
        if n == 0
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
        let (g, idx) = unsafe { st.take_slot::<O>(request_class(n), n, secret)? };
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
        if self.is_zero_size(p) {
            return true;
        }
        // SAFETY: forwarded; the record was validated.
        unsafe { is_zeroed(validate(p, self.secret()).0.meta) }
    }

    /// The size `p` was allocated with (exact, as mallocng).
    ///
    /// # Safety
    /// `p` is null or a live allocation of this heap; anything else crashes or faults.
    pub unsafe fn usable_size(&self, p: *mut u8) -> usize {
        if p.is_null() || self.is_zero_size(p) {
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
            retire(p, &s, freed_word(secret));

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
        // SAFETY: forwarded.
        unsafe {
            self.check_sized(p, size, align);
            self.free(p);
        }
    }

    /// The checks of [`Heap::free_sized`], crashing on a mismatch; `p` is then freed by
    /// the caller (musl's `free_sized`, which frees through the thread's cache with the
    /// plain `free`: it keeps no copy of the cached free of its own in libc's text).
    ///
    /// # Safety
    /// As [`Heap::free`].
    pub unsafe fn check_sized(&self, p: *mut u8, size: usize, align: Option<usize>) {
        if p.is_null() {
            return;
        }
        // SAFETY: forwarded; usable_size validates `p` completely.
        unsafe {
            check!(self.usable_size(p) == size);
            if let Some(a) = align {
                check!(a.is_power_of_two() && p.addr() & (a - 1) == 0);
            }
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
        if self.is_zero_size(p) {
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
            if n == 0 {
                // a zero-size pointer like malloc(0)'s: nothing to copy
                return Resize::Copy(old);
            }
            let g = s.meta;
            let room = s.end.addr() - p.addr();
            let sc = (*g).sizeclass as usize;
            // only resize in place if the size class matches
            if n + CANARY_ROOM <= room && n < MMAP_THRESHOLD && request_class(n) + 1 >= sc {
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
            reframe(p, Key::of(secret, p), &s, s.end, len);
            // the offset to the aligned framing at the slot start lets heap walks find the
            // data (for an extreme over-alignment it does not fit: the walker scans)
            set_redirect::<true>(s.start, (p.addr() - s.start.addr()) / UNIT);
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
        (*m).zeroed_or_used = 0;
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
            large_held: (null_mut(), 0),
            rng: seed | 1,
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
                    let idx = first.trailing_zeros() as usize;
                    handed_out(g, idx, secret);
                    return Some((g, idx));
                }
            }
            let idx = self.alloc_slot::<O>(sc, n, secret)?;
            Some((self.active[sc], idx))
        }
    }

    /// The slot to take from a nonempty `mask`: the lowest (mallocng), or a random one
    /// with `harden-random-slots`.
    pub(crate) fn pick(&mut self, mask: u32) -> u32 {
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
    pub(crate) unsafe fn try_avail(&mut self, sc: usize) -> u32 {
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
                let idx = first.trailing_zeros() as usize;
                handed_out(self.active[sc], idx, secret);
                return Some(idx);
            }
            let g = self.alloc_group::<O>(sc, req, secret)?;
            // take slot 0
            (*g).avail_mask.fetch_sub(1, Relaxed);
            handed_out(g, 0, secret);
            queue(&mut self.active[sc], g);
            Some(0)
        }
    }
}

/// Slot `idx` of `g` was just taken from its `avail_mask`: if it was handed out before,
/// it must be as its free left it ([`check_free`]).
///
/// # Safety
/// The caller took the slot (under the lock for a heap group).
#[inline(always)]
unsafe fn handed_out(g: *mut Meta, idx: usize, secret: u64) {
    // SAFETY: forwarded.
    unsafe {
        if owes_free_check(g, idx) {
            check_free(g, idx, freed_word(secret));
        }
    }
}
