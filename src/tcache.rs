//! Per-thread caches of free small slots: the path that takes no lock.
//!
//! mallocng takes the heap lock on every `malloc`; under threads that lock is the cost
//! (stock musl is 4-90x slower than glibc there). A [`ThreadCache`] keeps, for each small
//! class, a short stack of free slots (group record and index) that its thread hands out
//! and takes back without the lock and without atomic operations:
//!
//! - `malloc` pops a slot and frames it with [`crate::slot::enframe`] exactly as the locked
//!   path does (offset cycling, canaries, zero-on-free check);
//! - `free` validates the pointer with every check of the locked path (`find_slot`,
//!   `nominal_size`), marks the header freed and pushes the slot;
//! - an empty bin is refilled under one lock acquisition: 2 slots the first time, twice as
//!   many each time after, up to half its limit (a thread that uses a class a little takes
//!   little of it); a full bin gives its older half back to the groups
//!   ([`Heap::release_slot`]: lock-free where mallocng's free is), or, in a long run of
//!   frees ([`FREE_STREAK`]), the slot being freed;
//!   in such a run a class the thread never refilled keeps no slots at all.
//!
//! A cached slot is *in use* for its group (its bit is in neither `avail_mask` nor
//! `freed_mask`) and carries a *freed* header: a second `free`, a `realloc` or a
//! `malloc_usable_size` of it crashes as for any freed slot, and its group cannot be freed
//! nor its pages released while the slot is cached.
//!
//! The entries live in the cache, never in the freed memory: a write through a dangling
//! pointer cannot make `malloc` return an address of the attacker's choosing (what poisons
//! glibc's tcache).
//!
//! Bounds: classes up to [`TC_CLASSES`] (slots up to 4080 bytes), at most [`limit`] slots
//! per class (about [`BIN_BYTES`] of slots, 2 to 8): a thread holds at most about 76 KiB
//! of free slots, usually a few KiB. In a long run of frees (a thread freeing what it
//! built, [`FREE_STREAK`]) a group whose slots are all free or cached goes back whole, so
//! freeing everything returns memory as it would without caches. A cache is given back
//! whole when its thread exits.
//!
//! Invariants, for every cache registered with the heap (checked by [`crate::walk`]):
//! `secret` is the heap's; `count[sc] <= limit(sc)`; every entry `(g, i)` of bin `sc` (the record's address with
//! `i` in its top byte, [`IDX_SHIFT`]) is slot `i` of a live group
//! `g`, `i <= g.last_idx`, bit `i` in neither mask of `g`, `g.sizeclass < TC_CLASSES`; no
//! slot appears twice in all caches.

use core::ptr::{NonNull, null_mut};

use crate::check::{check, crash, ok};
use crate::config::{AREA, IB, QUARANTINE, RANDOM_SLOTS, ZERO_SIZE};
use crate::heap::Heap;
use crate::lock::RawLock;
use crate::meta::Meta;
use crate::meta::{clear_zeroed, low_mask, nested};
use crate::os::{Os, Prot};
use crate::policy::round_up;
use crate::size_class::{class_size, size_to_class};
use crate::slot::{
    Key, Slot, enframe_inline, find_host, find_slot_live, nominal_size, retire, slot_bounds,
};
use core::sync::atomic::Ordering::Relaxed;

/// Classes with a bin: slots up to 255 units (4080 bytes).
pub const TC_CLASSES: usize = 28;
/// Entries per bin at most. Every cached slot keeps its group alive, and a thread-heavy
/// program of small blocks holds a bin for each class in each thread: 8 peaks lower than
/// 16 for a little more work in drains, and keeps the cache under 2 KiB.
pub const TC_SLOTS: usize = 8;
/// Frees in a row, with no malloc between, after which a thread is taken to be freeing
/// what it built: until its next malloc, a free that leaves its group with nothing in use
/// but slots in this bin gives the group back whole, if the thread ever refilled that bin
/// (it built slots of the class). A consumer, which frees what other threads built, gives
/// no group back whole (that made its producer map a new one at once) and keeps no slots
/// of classes it never refilled: each goes to its group, where the producers take it
/// again.
pub const FREE_STREAK: u32 = 256;
/// Bytes of slots a bin holds at most (at least two slots). Each cached slot may keep its
/// group alive, so what a thread can hold back is about this per class, plus the rest
/// of those groups.
pub const BIN_BYTES: usize = 4096;
/// Whether caches are used at all: not with the options whose point is the order of
/// reuse (random slots; quarantine, which holds frees back itself).
pub const CACHE: bool = !RANDOM_SLOTS && QUARANTINE == 0;

/// Slots bin `sc` holds at most: about [`BIN_BYTES`] of slots, between 2 and [`TC_SLOTS`].
#[inline]
pub const fn limit(sc: usize) -> usize {
    LIMITS[sc] as usize
}

/// Slots a refill of bin `sc` takes after `fills` earlier refills: 2, 4, 8, ... up to half
/// the bin's limit.
#[inline]
pub const fn refill_count(sc: usize, fills: u8) -> usize {
    let half = limit(sc).div_ceil(2);
    let want = 2usize << fills;
    if want < half { want } else { half }
}

/// Refills after which [`refill_count`] stops growing: the fewest with
/// `2 << MAX_FILLS >= TC_SLOTS / 2` (derived, so it follows [`TC_SLOTS`]).
const MAX_FILLS: u8 = {
    let mut n = 0;
    while 2 << n < TC_SLOTS / 2 {
        n += 1;
    }
    n
};
const _: () = assert!(2 << MAX_FILLS >= TC_SLOTS / 2);

/// Where an entry keeps its slot index: the top byte of the record's address, which is 0:
/// meta areas are heap memory, and the page map holds none above 2^48.
pub const IDX_SHIFT: u32 = 56;

/// [`limit`] by class, computed at compile time: the free path reads it on every call,
/// and a division there costs more than the rest of the push.
const LIMITS: [u8; TC_CLASSES] = {
    let mut t = [0; TC_CLASSES];
    let mut sc = 0;
    while sc < TC_CLASSES {
        let n = BIN_BYTES / class_size(sc);
        t[sc] = if n < 2 {
            2
        } else if n > TC_SLOTS {
            TC_SLOTS as u8
        } else {
            n as u8
        };
        sc += 1;
    }
    t
};

/// One thread's cache. Only its thread touches the bins; the list links belong to the
/// heap's registry and are changed with the heap lock held.
///
/// Aligned to cache lines: caches share pages (and the first one the heap state's page),
/// and a line of one thread's counts must not be written by another thread or under the
/// lock.
#[repr(C, align(64))]
pub struct ThreadCache {
    /// Entries in each bin (counts first: a thread using few classes touches few lines).
    pub(crate) count: [u8; TC_CLASSES],
    /// The heap's offset-cycling counter at the last refill (seeds fresh slots).
    pub(crate) cycle: u32,
    /// Frees since this thread's last malloc (see [`FREE_STREAK`]).
    pub(crate) streak: u32,
    /// Refills of each bin so far, up to [`MAX_FILLS`] (see [`refill_count`]).
    pub(crate) fills: [u8; TC_CLASSES],
    /// The heap's secret, copied here so the fast paths read it from the line they
    /// already touch instead of through the heap's region pointer.
    pub(crate) secret: u64,
    pub(crate) next: *mut ThreadCache,
    pub(crate) prev: *mut ThreadCache,
    /// The entries: a group record with the slot index in its top byte (one load a pop).
    pub(crate) ent: [[*mut Meta; TC_SLOTS]; TC_CLASSES],
}

/// The slots of `g` in use (for the group: cached slots count as in use).
///
/// # Safety
/// `g` is a live group.
#[inline(always)]
unsafe fn used_slots(g: *mut Meta) -> u32 {
    // SAFETY: the caller's contract.
    unsafe {
        low_mask((*g).last_idx as usize)
            & !((*g).avail_mask.load(Relaxed) | (*g).freed_mask.load(Relaxed))
    }
}

/// Whether freeing a slot of `g`, of class `sc`, may leave the group with nothing in use
/// but slots in this cache's bin, and the bin was ever refilled (the thread built slots of
/// the class): `free_in_run`'s cheap tests, before it compares the bin's entries.
///
/// # Safety
/// `g` is a live group.
#[inline(always)]
unsafe fn group_may_go(tc: &ThreadCache, sc: usize, g: *mut Meta) -> bool {
    // SAFETY: the caller's contract.
    tc.fills[sc] != 0 && unsafe { used_slots(g) }.count_ones() as usize <= tc.count[sc] as usize + 1
}

/// An entry for slot `idx` of `g`.
#[inline(always)]
fn entry(g: *mut Meta, idx: usize) -> *mut Meta {
    g.map_addr(|a| a | idx << IDX_SHIFT)
}

/// The group and slot index of an entry.
#[inline(always)]
fn unpack(e: *mut Meta) -> (*mut Meta, usize) {
    (
        e.map_addr(|a| a & ((1 << IDX_SHIFT) - 1)),
        e.addr() >> IDX_SHIFT,
    )
}

/// Whether `malloc(n)` may be served by a bin: a cached class, and no zero-size block.
#[inline(always)]
fn cacheable(n: usize) -> bool {
    CACHE && n <= class_size(TC_CLASSES - 1) - IB && !(ZERO_SIZE && n == 0)
}

/// Take the newest entry of the non-empty bin `sc` and frame it for `n` bytes.
#[inline(always)]
fn pop(tc: &mut ThreadCache, sc: usize, n: usize) -> NonNull<u8> {
    debug_assert!(tc.count[sc] != 0 && cacheable(n) && size_to_class(n) <= sc);
    let k = tc.count[sc] as usize - 1;
    tc.count[sc] = k as u8;
    // (masked, not bounds-checked: see `push`)
    let (g, idx) = unpack(tc.ent[sc][k % TC_SLOTS]);
    tc.cycle = tc.cycle.wrapping_add(1);
    // SAFETY: the entry is a slot of a live group, taken out of both masks (the cache
    // invariant) and of class `sc`, which fits `n + IB`; a user pointer is never null.
    unsafe { NonNull::new_unchecked(enframe_inline(g, idx, n, tc.cycle, tc.secret)) }
}

/// What every free through a cache does to a validated slot first: [`retire`], and the
/// group loses its all-zero mark (the slot comes back dirty).
///
/// # Safety
/// As [`retire`].
#[inline(always)]
unsafe fn retire_slot(p: *mut u8, s: &Slot) {
    // SAFETY: forwarded.
    unsafe {
        retire(p, s);
        clear_zeroed(s.meta);
    }
}

/// Put `e` on bin `sc`, which holds `k < limit(sc)` entries.
#[inline(always)]
fn push(tc: &mut ThreadCache, sc: usize, k: usize, e: *mut Meta) {
    debug_assert!(k < limit(sc));
    // (the index is masked, not bounds-checked: a bounds check is a call to the panic
    // handler, and a call on the path makes it save registers)
    tc.ent[sc][k % TC_SLOTS] = e;
    tc.count[sc] = k as u8 + 1;
}

const _: () = assert!(TC_SLOTS.is_power_of_two());
const _: () = assert!(TC_SLOTS <= u8::MAX as usize && TC_CLASSES <= crate::config::NUM_CLASSES);
// every cached class is below a page, so a cached slot is never "medium" (sweep)
const _: () = assert!(class_size(TC_CLASSES - 1) <= AREA);

impl ThreadCache {
    /// The entries of bin `sc`, for the walker.
    pub(crate) fn entries(&self, sc: usize) -> impl Iterator<Item = (*mut Meta, usize)> + '_ {
        (0..self.count[sc] as usize).map(move |k| unpack(self.ent[sc][k]))
    }

    /// Slots bin `sc` holds.
    pub fn held(&self, sc: usize) -> usize {
        self.count[sc] as usize
    }

    /// Slots the next refill of bin `sc` takes.
    pub fn refill_size(&self, sc: usize) -> usize {
        refill_count(sc, self.fills[sc])
    }
}

/// Add `tc` to the registry at `head`.
///
/// # Safety
/// The heap lock is held; `tc` is live and on no list.
pub(crate) unsafe fn register(head: &mut *mut ThreadCache, tc: *mut ThreadCache) {
    // SAFETY: the caller's contract.
    unsafe {
        (*tc).prev = null_mut();
        (*tc).next = *head;
        if !head.is_null() {
            (**head).prev = tc;
        }
    }
    *head = tc;
}

/// Remove `tc` from the registry at `head`, checking both neighbours point back at it.
///
/// # Safety
/// The heap lock is held; `tc` is on the list.
pub(crate) unsafe fn unregister(head: &mut *mut ThreadCache, tc: *mut ThreadCache) {
    // SAFETY: the caller's contract; the links are checked before they are followed.
    unsafe {
        let (prev, next) = ((*tc).prev, (*tc).next);
        if prev.is_null() {
            check!(*head == tc);
            *head = next;
        } else {
            check!((*prev).next == tc);
            (*prev).next = next;
        }
        if !next.is_null() {
            check!((*next).prev == tc);
            (*next).prev = prev;
        }
    }
}

/// A page of thread caches, above a guard page of its own: this header, then as many
/// caches as fit (two in a 4 KiB page: a page each cost thread-heavy programs more). The
/// first cache of a heap is in its region instead.
#[repr(C)]
struct CachePage {
    /// Caches of this page that threads hold: the others are spare. The page is unmapped
    /// when this drops to 0.
    live: usize,
}

/// Where the first cache of a page starts.
const FIRST_CACHE: usize = round_up(size_of::<CachePage>(), align_of::<ThreadCache>());
// two caches and the page's header fit a 4 KiB page
const _: () = assert!(FIRST_CACHE + 2 * size_of::<ThreadCache>() <= AREA);

/// Cache place `k` of the cache page `page`.
fn place(page: *mut CachePage, k: usize) -> *mut ThreadCache {
    page.cast::<u8>()
        .wrapping_add(FIRST_CACHE + k * size_of::<ThreadCache>())
        .cast()
}

/// Put the zeroed cache place `tc` on the heap's spare list.
///
/// # Safety
/// The heap lock is held (or the region is not yet published); `tc` is a cache place of
/// this heap, zeroed, on no list.
pub(crate) unsafe fn add_spare(st: &mut crate::heap::State, tc: *mut ThreadCache) {
    // SAFETY: the caller's contract.
    unsafe { register(&mut st.spare_caches, tc) }
}

impl<O: Os, L: RawLock> Heap<O, L> {
    /// Caches in one cache page.
    fn places_per_page(&self) -> usize {
        (self.page_size() - FIRST_CACHE) / size_of::<ThreadCache>()
    }

    /// The cache page holding `tc` (not the region's place).
    fn page_of(&self, tc: *mut ThreadCache) -> *mut CachePage {
        let ps = self.page_size();
        tc.map_addr(|a| a & !(ps - 1)).cast()
    }

    /// A new cache for the calling thread, registered with the heap; null when out of
    /// memory (the caller then uses the locked paths).
    ///
    /// A cache is never in a heap slot: it is in the heap's region or in a cache page,
    /// each with a guard page below it, so a heap overflow cannot reach the entries,
    /// which `malloc` trusts.
    pub fn cache_create(&self) -> *mut ThreadCache {
        if !CACHE {
            return null_mut();
        }
        let Some(mut st) = self.locked() else {
            return null_mut();
        };
        // SAFETY: spare places are zeroed caches of this heap, and a fresh page is ours;
        // the lists are changed under the lock.
        unsafe {
            let tc = if st.spare_caches.is_null() {
                drop(st);
                let ps = self.page_size();
                let Some(base) = O::mmap(null_mut(), 2 * ps, Prot::ReadWrite, false) else {
                    return null_mut();
                };
                self.install_guard(base.as_ptr(), ps);
                let page = base.as_ptr().wrapping_add(ps).cast::<CachePage>();
                let Some(g) = self.locked() else {
                    O::munmap(base.as_ptr(), 2 * ps);
                    return null_mut();
                };
                st = g;
                // take the first place of this page, so that a page another thread mapped
                // meanwhile is no reason for this one to stay mapped with none in use
                for k in 1..self.places_per_page() {
                    add_spare(&mut st, place(page, k));
                }
                place(page, 0)
            } else {
                let tc = st.spare_caches;
                unregister(&mut st.spare_caches, tc);
                tc
            };
            if tc != self.home_cache() {
                (*self.page_of(tc)).live += 1;
            }
            (*tc).cycle = st.cycle;
            (*tc).secret = st.secret;
            register(&mut st.caches, tc);
            st.stats.caches += 1;
            tc
        }
    }

    /// Give everything in `tc` back to the groups and its place to the heap (unmapping
    /// its page if no other cache there is held): at thread exit.
    ///
    /// # Safety
    /// `tc` came from [`Heap::cache_create`] of this heap and no thread uses it any more.
    pub unsafe fn cache_destroy(&self, tc: *mut ThreadCache) {
        // (null: what cache_create gives with caches off or no memory)
        if tc.is_null() {
            return;
        }
        // SAFETY: the caller's contract; the lists are changed under the lock, and a page
        // is unmapped only when none of its places is held.
        unsafe {
            self.drain_all(&mut *tc);
            let Some(mut st) = self.locked() else { crash() };
            unregister(&mut st.caches, tc);
            tc.write_bytes(0, 1);
            if tc == self.home_cache() {
                return add_spare(&mut st, tc);
            }
            let page = self.page_of(tc);
            check!((*page).live != 0);
            (*page).live -= 1;
            if (*page).live != 0 {
                return add_spare(&mut st, tc);
            }
            // every other place of the page is spare
            for k in 0..self.places_per_page() {
                let other = place(page, k);
                if other != tc {
                    unregister(&mut st.spare_caches, other);
                }
            }
            drop(st);
            let ps = self.page_size();
            O::munmap(page.cast::<u8>().wrapping_sub(ps), 2 * ps);
        }
    }

    /// `malloc` through the thread's cache if it has one.
    pub fn malloc_with(&self, tc: Option<&mut ThreadCache>, n: usize) -> Option<NonNull<u8>> {
        match tc {
            Some(tc) => self.malloc_cached(tc, n),
            None => self.malloc(n),
        }
    }

    /// What `malloc` does when [`Heap::malloc_fast`] could not serve `n` or did not run
    /// (no cache known to the caller): a refill, or the locked path.
    pub fn malloc_miss(&self, tc: Option<&mut ThreadCache>, n: usize) -> Option<NonNull<u8>> {
        match tc {
            Some(tc) if cacheable(n) => {
                let sc = size_to_class(n);
                if tc.count[sc] == 0 && !self.refill(tc, sc, n) {
                    return self.malloc(n);
                }
                Some(pop(tc, sc, n))
            }
            _ => self.malloc(n),
        }
    }

    /// `free` through the thread's cache if it has one.
    ///
    /// # Safety
    /// As [`Heap::free`].
    pub unsafe fn free_with(&self, tc: Option<&mut ThreadCache>, p: *mut u8) {
        // SAFETY: forwarded.
        unsafe {
            match tc {
                Some(tc) => self.free_cached(tc, p),
                None => self.free(p),
            }
        }
    }

    /// `malloc` from the thread's cache when a bin can serve `n` at once; `None` when it
    /// cannot (a size without a bin, an empty bin), with nothing changed but the free
    /// streak. It calls nothing: the exports run it first and go to [`Heap::malloc_miss`]
    /// on `None` with a tail call, so no call it does not make sets up a frame for the
    /// pop (the registers it still saves are the framing's own).
    #[inline(always)]
    pub fn malloc_fast(&self, tc: &mut ThreadCache, n: usize) -> Option<NonNull<u8>> {
        if !cacheable(n) {
            return None;
        }
        let sc = size_to_class(n);
        tc.streak = 0;
        if tc.count[sc] == 0 {
            return None;
        }
        Some(pop(tc, sc, n))
    }

    /// `malloc` through the thread's cache: [`Heap::malloc_fast`], else a refill, else
    /// the locked path.
    pub fn malloc_cached(&self, tc: &mut ThreadCache, n: usize) -> Option<NonNull<u8>> {
        match self.malloc_fast(tc, n) {
            Some(p) => Some(p),
            None => self.malloc_miss(Some(tc), n),
        }
    }

    /// Take [`refill_count`] slots from the groups, under one lock acquisition. False when
    /// none could be had (out of memory).
    fn refill(&self, tc: &mut ThreadCache, sc: usize, n: usize) -> bool {
        let Some(mut st) = self.locked() else {
            return false;
        };
        let secret = st.secret;
        let want = tc.refill_size(sc);
        tc.fills[sc] = (tc.fills[sc] + 1).min(MAX_FILLS);
        let mut k = 0;
        while k < want {
            // SAFETY: the lock is held.
            let Some((g, idx)) = (unsafe { st.take_slot_of::<O>(sc, n, secret, false) }) else {
                break;
            };
            tc.ent[sc][k] = entry(g, idx);
            k += 1;
        }
        // taken in order: hand out the first-taken (lowest) slot first
        tc.ent[sc][..k].reverse();
        tc.count[sc] = k as u8;
        tc.cycle = st.cycle;
        k != 0
    }

    /// `free` through the thread's cache. Validation and a push to a bin call nothing;
    /// every other case is a tail call, so no call it does not make sets up a frame for
    /// the push (as [`Heap::malloc_fast`]).
    ///
    /// # Safety
    /// As [`Heap::free`].
    #[inline(always)]
    pub unsafe fn free_cached(&self, tc: &mut ThreadCache, p: *mut u8) {
        if !CACHE || p.is_null() || (ZERO_SIZE && self.zero_index(p).is_some()) {
            // SAFETY: forwarded.
            return unsafe { self.free_uncached(p) };
        }
        let secret = tc.secret;
        // SAFETY: validated exactly as in free before anything is written.
        unsafe {
            let s = ok(find_slot_live(p, secret));
            ok(nominal_size(p, &s));
            let g = s.meta;
            let sc = (*g).sizeclass as usize;
            if sc >= TC_CLASSES {
                return self.free_validated(tc, p, g, s.idx, s.key);
            }
            // In a long run of frees with no malloc between (a thread freeing what it
            // built), a group whose other slots are all free or in this bin goes back
            // whole (see `free_in_run`).
            tc.streak = tc.streak.saturating_add(1);
            // (free_in_run's cheap tests first, here: most frees of a run leave slots of
            // their group in use, and the call cost more than the tests)
            if tc.streak >= FREE_STREAK {
                if tc.streak == FREE_STREAK || group_may_go(tc, sc, g) {
                    return self.free_validated(tc, p, g, s.idx, s.key);
                }
                return self.retire_in_run(tc, p, s, sc, secret);
            }
            self.retire_to_bin(tc, p, s, sc)
        }
    }

    /// [`Heap::free`], out of line: the tail call of [`Heap::free_cached`] when it has
    /// no use for the cache.
    ///
    /// # Safety
    /// As [`Heap::free`].
    #[inline(never)]
    unsafe fn free_uncached(&self, p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { self.free(p) }
    }

    /// The rest of [`Heap::free_cached`] after validating `p` as slot `idx` of `g`: a
    /// class without a bin, or a free in a run that may give the group back (the streak
    /// already counts this free).
    ///
    /// # Safety
    /// `p` is a live allocation, validated as slot `idx` of `g`, with the keys `key`.
    #[inline(never)]
    unsafe fn free_validated(
        &self,
        tc: &mut ThreadCache,
        p: *mut u8,
        g: *mut Meta,
        idx: usize,
        key: Key,
    ) {
        let secret = tc.secret;
        // SAFETY: the caller's contract.
        unsafe {
            let s = Slot {
                key,
                ..ok(slot_bounds(g, idx))
            };
            let sc = (*g).sizeclass as usize;
            if sc >= TC_CLASSES {
                return self.free_slot(p, s, secret);
            }
            if !self.free_in_run(tc, p, s, secret) {
                self.retire_in_run(tc, p, s, sc, secret);
            }
        }
    }

    /// Retire the validated allocation `p` (slot `s`, of the cached class `sc`) and put
    /// its slot in the bin, making room if it is full.
    ///
    /// # Safety
    /// `s` is the validated slot of the live allocation `p`, of class `sc < TC_CLASSES`.
    #[inline(always)]
    unsafe fn retire_to_bin(&self, tc: &mut ThreadCache, p: *mut u8, s: Slot, sc: usize) {
        // SAFETY: the caller's contract.
        unsafe {
            retire_slot(p, &s);
            let k = tc.count[sc] as usize;
            if k == limit(sc) {
                return self.push_full(tc, sc, entry(s.meta, s.idx));
            }
            push(tc, sc, k, entry(s.meta, s.idx));
        }
    }

    /// [`Heap::retire_to_bin`] in a run of frees, where no malloc takes a slot back. A
    /// full bin stays full until the next malloc: the slot goes to its group at once
    /// (draining the bin to push it would only give back older slots instead). And a
    /// class this thread never refilled (a consumer's, which frees what others built)
    /// keeps no slots: they would be out of its producers' reach for as long as the
    /// thread lives, and their groups with them.
    ///
    /// # Safety
    /// As [`Heap::retire_to_bin`].
    #[inline(always)]
    unsafe fn retire_in_run(
        &self,
        tc: &mut ThreadCache,
        p: *mut u8,
        s: Slot,
        sc: usize,
        secret: u64,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            retire_slot(p, &s);
            let k = tc.count[sc] as usize;
            if k == limit(sc) || tc.fills[sc] == 0 {
                return self.release_slot(s.meta, s.idx, false, secret);
            }
            push(tc, sc, k, entry(s.meta, s.idx));
        }
    }

    /// Push `e` to the full bin `sc`, after giving its older half back to the groups.
    ///
    /// # Safety
    /// `tc` satisfies the cache invariant; `e` is a retired slot of class `sc`, in use for
    /// its group.
    #[cold]
    #[inline(never)]
    unsafe fn push_full(&self, tc: &mut ThreadCache, sc: usize, e: *mut Meta) {
        // SAFETY: the caller's contract.
        unsafe { self.drain(tc, sc, limit(sc).div_ceil(2)) };
        push(tc, sc, tc.count[sc] as usize, e);
    }

    /// A free in a long run of frees: if the group of `s` has nothing else in use but
    /// slots in this bin, give the group back whole (so it can be freed: cached slots
    /// would keep its memory alive, one group per cached slot) and return true. The bin
    /// is searched only when the count allows it.
    ///
    /// # Safety
    /// As `free_cached`, after `p` was validated as `s`, of a cached class.
    #[inline(never)]
    unsafe fn free_in_run(&self, tc: &mut ThreadCache, p: *mut u8, s: Slot, secret: u64) -> bool {
        // SAFETY: the caller's contract.
        unsafe {
            if tc.streak == FREE_STREAK {
                // what the bins held before the run began: its groups' last frees may
                // be past, so no later free would give them back
                self.drain_all(tc);
            }
            let g = s.meta;
            let sc = (*g).sizeclass as usize;
            let bit = 1u32 << s.idx;
            if !group_may_go(tc, sc, g) || !self.give_back_group(tc, sc, g, used_slots(g) & !bit) {
                return false;
            }
            // the group goes; if it is nested, its host slot is freed on the locked path,
            // which does not see this cache: the host's group may be left with nothing in
            // use but slots in this cache
            let mut host = self.cached_host(tc, g, secret);
            self.free_slot(p, s, secret);
            while let Some(h) = host {
                host = self.cached_host(tc, h, secret);
                if !self.give_back_group(tc, (*h).sizeclass as usize, h, used_slots(h)) {
                    break;
                }
            }
            true
        }
    }

    /// The group hosting `g` if `g` is nested in a slot of a cached class and this cache
    /// holds slots of that group (which then cannot go away while `g` is freed).
    ///
    /// # Safety
    /// `tc` satisfies the cache invariant; `g` is a live group.
    unsafe fn cached_host(&self, tc: &ThreadCache, g: *mut Meta, secret: u64) -> Option<*mut Meta> {
        // SAFETY: a nested group's memory is the user pointer of its host slot, whose
        // header find_host validates.
        unsafe {
            if !nested(g) {
                return None;
            }
            let h = ok(find_host((*g).mem.cast::<u8>(), secret)).meta;
            let hsc = (*h).sizeclass as usize;
            (hsc < TC_CLASSES && tc.entries(hsc).any(|(m, _)| m == h)).then_some(h)
        }
    }

    /// If the slots `others` of `g` are exactly those of `g` in bin `sc`, give them back
    /// to the group and return true.
    ///
    /// # Safety
    /// `tc` satisfies the cache invariant; `g` is a live group of class `sc`.
    unsafe fn give_back_group(
        &self,
        tc: &mut ThreadCache,
        sc: usize,
        g: *mut Meta,
        others: u32,
    ) -> bool {
        let mine = tc
            .entries(sc)
            .filter(|&(m, _)| m == g)
            .fold(0u32, |mine, (_, i)| mine | 1 << i);
        if mine != others {
            return false;
        }
        // SAFETY: the caller's contract.
        unsafe { self.release_where(tc, sc, |_, m| m == g) };
        true
    }

    /// Give every entry of every bin back to its group.
    ///
    /// # Safety
    /// `tc` satisfies the cache invariant.
    unsafe fn drain_all(&self, tc: &mut ThreadCache) {
        for sc in 0..TC_CLASSES {
            // SAFETY: the caller's contract.
            unsafe { self.drain(tc, sc, tc.count[sc] as usize) };
        }
    }

    /// Give the `n` oldest entries of bin `sc` back to their groups.
    ///
    /// # Safety
    /// `tc` satisfies the cache invariant.
    unsafe fn drain(&self, tc: &mut ThreadCache, sc: usize, n: usize) {
        // SAFETY: the caller's contract.
        unsafe { self.release_where(tc, sc, |k, _| k < n) };
    }

    /// Give the entries of bin `sc` that `pick(position, group)` selects back to their
    /// groups; the others keep their order.
    ///
    /// # Safety
    /// `tc` satisfies the cache invariant.
    unsafe fn release_where(
        &self,
        tc: &mut ThreadCache,
        sc: usize,
        pick: impl Fn(usize, *mut Meta) -> bool,
    ) {
        let secret = self.secret();
        let mut kept = 0;
        for k in 0..tc.count[sc] as usize {
            let e = tc.ent[sc][k];
            let (m, i) = unpack(e);
            if pick(k, m) {
                // SAFETY: a cached slot is in use for its group and its header already
                // marked freed: what release_slot expects. Cached classes are never medium.
                unsafe { self.release_slot(m, i, false, secret) };
            } else {
                tc.ent[sc][kept] = e;
                kept += 1;
            }
        }
        tc.count[sc] = kept as u8;
    }
}
