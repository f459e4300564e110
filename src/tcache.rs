//! Threads own groups: the path that takes no lock.
//!
//! mallocng takes the heap lock on every `malloc`; under threads that lock is the cost
//! (stock musl is 4-90x slower than glibc there). Here each thread's [`ThreadCache`] owns,
//! for each small class, a list of groups ([`Meta::owner`]), and allocates from the head
//! of the list (its *active* group) with no lock and no atomic read-modify-write:
//!
//! - `malloc` takes the lowest slot of the active group's `avail_mask` and frames it with
//!   [`crate::slot::enframe`] exactly as the locked path does (offset cycling, canaries,
//!   zero-on-free check);
//! - `free` validates the pointer with every check of the locked path (`find_slot`,
//!   `nominal_size`); the owner puts the slot back in `avail_mask`, any other thread
//!   ORs it into `freed_mask` ([`crate::masks::free_remote`]), never taking the lock;
//! - when the active group runs dry, the owner collects what other threads freed into it
//!   ([`crate::masks::collect`]) and walks on along its list, looking at [`WALK`] groups
//!   at most, before it takes a group of the heap's or makes one, under the lock. The
//!   walk goes round the list from where it stopped, so a group that other threads
//!   emptied is found within a few misses, and groups with no free slot cost one look
//!   each.
//!
//! The heap lock is taken to take or make a group, to retire a group its owner emptied
//! (not the active one, which is kept for the next malloc), and when a thread makes its
//! cache or exits. At exit the empty groups go and a cache still owning groups with slots
//! in use is *abandoned* whole; the next thread that makes a cache takes it over, groups
//! and all, so a program that starts threads again and again takes one lock for a new
//! thread's working set. A thread freeing into an abandoned cache's groups takes no lock
//! but to retire those its frees empty, [`ORPHAN_BATCH`] at a time. A cache no thread
//! takes over within the decay time, or beyond [`MAX_ABANDONED`] waiting, gives its groups
//! to the heap (`State::disown`): the empty ones are freed, the others become mallocng
//! groups on the heap's lists, which any thread's miss takes before it makes a group
//! (`State::adopt`), and the heap's release sweep sees them. (Merged into whichever
//! thread freed into them, as a first design had it, abandoned groups piled up in one
//! thread while new threads made new ones: the soak test's RSS rose from 70-80 to 97-140
//! MiB.)
//!
//! A remote free ORs its bit, then reads the owner; an exiting owner marks the owner (or
//! clears it), then reads `freed`: either the exiting side sees the bit, or the free sees
//! the mark (and retires the group it emptied) or the group the heap's (and settles it
//! under the lock): [`Heap::free_remote`], loom checks each order.
//!
//! The owner releases the whole pages of its long slots (a page or more) that stayed free
//! between two of its sweeps ([`Heap::sweep_owned`], every [`SWEEP_INTERVAL`] frees of
//! such slots by the thread), as the heap's sweep does for its groups.
//!
//! Invariants, for every cache registered with the heap (checked by [`crate::walk`]):
//! `secret` is the heap's; for each class `sc < TC_CLASSES`, `active[sc]` is null or the
//! head of a circular list (through `prev`/`next`) of live groups `g` with
//! `g.sizeclass == sc`, `g.owner == cache`, `g.mem.active_idx == g.last_idx`; every owned
//! group is on its owner's list.

use core::ptr::{NonNull, null_mut};
use core::sync::atomic::Ordering::{Relaxed, SeqCst};

use crate::check::{check, crash, ok};
use crate::config::{AREA, CANARY_ROOM, DECAY_MS, IB, QUARANTINE, RANDOM_SLOTS, UNIT};
use crate::heap::{Heap, State, Unmap};
use crate::list::{checked_links, dequeue, queue};
use crate::lock::RawLock;
use crate::masks::{Mask, collect, free_owned, free_remote, take_owned};
use crate::meta::{Meta, clear_zeroed, low_mask};
use crate::os::{Os, Prot};
use crate::release::{SWEEP_GROUPS, SWEEP_INTERVAL, SWEEP_MS, release_cold};
use crate::size_class::{class_size, request_class};
use crate::slot::{
    enframe_inline, find_slot_live, freed_word, nominal_size, owes_free_check, retire, validate,
};

/// Classes a thread owns groups of: all of them (slots up to 128 KiB; larger blocks are
/// mapped one by one).
pub const TC_CLASSES: usize = crate::config::NUM_CLASSES;
/// Groups a miss looks at, at most, before it makes a new one: a bound on a miss's work
/// in a thread owning many full groups. A full group it passes costs one look; the
/// memory a bounded walk can leave unseen is a fraction of what the thread holds (a new
/// group is made only after this many were found without a free slot).
pub const WALK: usize = 8;
/// Empty groups a thread keeps of each class (besides its active group) for its next
/// mallocs: more would hold memory a program freed, fewer made thread-local churn of
/// several classes retire and remake groups (4-local-8t: 1.5 lock acquisitions per 1,000
/// calls with one kept).
pub const KEPT_EMPTY: usize = if DECAY_MS == 0 { 0 } else { 2 };
/// Bytes of slots above which an empty group is not kept but given up (to `retiring`).
pub const KEPT_MAX_BYTES: usize = 16 << 10;
/// Groups a miss makes at most under one lock acquisition (see `next_group`).
pub const MAKE_BATCH: usize = if DECAY_MS == 0 { 1 } else { 4 };
/// Largest slot of the classes whose groups a miss makes several at a time (larger
/// groups would hold too much memory ahead).
const BATCH_SLOT_MAX: usize = 1024;
/// Groups after the head of a class's list that may be empty ones kept or made ahead.
const KEPT_AHEAD: usize = if KEPT_EMPTY > MAKE_BATCH - 1 {
    KEPT_EMPTY
} else {
    MAKE_BATCH - 1
};
/// Empty groups a thread gives up before it takes the lock to retire them, all at once:
/// what it holds empty beyond [`KEPT_EMPTY`] a class is at most this many groups.
pub const RETIRE_BATCH: u32 = if DECAY_MS == 0 { 1 } else { 16 };
/// Bytes of slots in `retiring` at which they are retired at once, decay or not: what a
/// thread holds empty beyond its kept groups stays below this.
pub const RETIRE_BYTES: usize = 256 << 10;
/// Whether caches are used at all: not with the options whose point is the order of
/// reuse (random slots; quarantine, which holds frees back itself).
pub const CACHE: bool = !RANDOM_SLOTS && QUARANTINE == 0;

/// One thread's cache: the groups it owns. Only its thread touches the lists while it
/// is live; the registry links change under the
/// heap lock.
///
/// Aligned to cache lines: caches share pages (and the first one the heap state's page),
/// and a line of one thread's heads must not be written by another thread or under the
/// lock.
#[repr(C, align(64))]
pub struct ThreadCache {
    /// The head of each class's list of owned groups: the group `malloc` takes from.
    pub(crate) active: [*mut Meta; TC_CLASSES],
    /// The heap's secret, copied here so the fast paths read it from the line they
    /// already touch instead of through the heap's region pointer.
    pub(crate) secret: u64,
    /// [`crate::slot::freed_word`] of the secret, which every free and reuse of a small
    /// slot needs.
    pub(crate) freed_word: u64,
    /// Offset cycling's counter, ticked by every slot this thread frames.
    pub(crate) cycle: u32,
    /// Groups in `retiring`.
    pub(crate) retiring_count: u16,
    /// Emptyings of active groups until the next looks at the wait (0: the next does).
    pub(crate) decay_in: u16,
    /// Bytes of slots in `retiring` (below [`RETIRE_BYTES`] and a group's).
    pub(crate) retiring_bytes: u32,
    /// Bytes of groups this thread gave up since its decay last ran, and of held
    /// mappings that can expire when it was re-armed (saturating): past [`WAIT_BIG`],
    /// each emptying of an active group looks at the wait.
    pub(crate) given: u32,
    /// When what waits is to go ([`DECAY_MS`] after the first of it began to wait), by
    /// `Os::now_ms`; 0 when nothing waits. What waits: `retiring`, and a large active
    /// group left empty.
    pub(crate) decay_at: u64,
    /// The owner's frees of slots of a page or more until it sweeps its groups for cold
    /// pages ([`Heap::sweep_owned`]).
    pub(crate) sweep_in: u16,
    /// Entries of `orphans` in use.
    pub(crate) orphan_count: u16,
    /// When the owner last swept (`Os::now_ms`, its low 32 bits: compared wrapping).
    pub(crate) swept_at: u32,
    /// Groups of abandoned caches this thread's frees emptied, retired together under
    /// one lock acquisition when the array is full (a thread freeing what exited threads
    /// left took the lock for each group before), or at the thread's next decay or exit.
    /// Hints: each is rechecked under the lock.
    pub(crate) orphans: [*mut Meta; ORPHAN_BATCH],
    /// While the cache is abandoned: when its groups go to the heap unless a thread takes
    /// it over first (`Os::now_ms`).
    pub(crate) expires_at: u64,
    /// Empty groups this cache gave up, still owned, retired together under one lock
    /// acquisition when there are [`RETIRE_BATCH`] (a circular list through `prev`/`next`).
    pub(crate) retiring: *mut Meta,
    pub(crate) next: *mut ThreadCache,
    pub(crate) prev: *mut ThreadCache,
    /// This cache, as `cache_create` made it: what its groups' [`Meta::owner`] holds (a
    /// pointer derived from the `&mut` the owner's calls hold is not one other threads
    /// may compare or follow under Miri's borrow rules).
    pub(crate) me: *mut ThreadCache,
}

/// Emptyings of active groups between two looks at a pending wait ([`Heap::decay_head`])
/// while what waits is small.
const DECAY_TICK: u16 = 16;
/// What waits past which every emptying of an active group looks at the wait: more than
/// a late decay may leave resident (the speed issue allows 1 MiB over stock musl after
/// a free-all).
const WAIT_BIG: u32 = 1 << 20;

/// Groups of abandoned caches a thread's frees empty before it takes the lock to retire
/// them (as many as fit the cache's last line).
pub const ORPHAN_BATCH: usize = 5;

/// Caches of exited threads kept whole for the next threads at most; the caches of more
/// threads exiting at once give their groups to the heap.
pub const MAX_ABANDONED: usize = if DECAY_MS == 0 { 0 } else { 32 };

/// The mark in [`Meta::owner`] of a group whose owning cache was abandoned (caches are
/// 64-byte aligned): set on each of its groups when the thread exits, cleared when the
/// next thread takes the cache over or the cache gives its groups to the heap. In the
/// group, not the cache: a remote free reads it, and it must not read the cache of a
/// thread that may be running.
pub const ABANDONED: usize = 1;

/// `owner`, marked abandoned.
#[inline(always)]
fn abandoned(owner: *mut ThreadCache) -> *mut ThreadCache {
    owner.map_addr(|a| a | ABANDONED)
}

/// Make `tc` the owner of its groups again (unmarked: taken over by a new thread).
///
/// # Safety
/// The heap lock is held; `tc` is a cache just taken off the abandoned list.
unsafe fn own_all(tc: *mut ThreadCache) {
    // SAFETY: the caller's contract; an abandoned cache's lists are the lock's.
    unsafe {
        for sc in 0..TC_CLASSES {
            for m in (*tc).groups(sc) {
                (*m).owner.store(tc, Relaxed);
            }
        }
    }
}

/// Whether `malloc(n)` may be served by an owned group: an owned class, and not
/// `malloc(0)` (`zero_size.rs`). One compare: 0 wraps around.
#[inline(always)]
fn cacheable(n: usize) -> bool {
    CACHE && n.wrapping_sub(1) < class_size(TC_CLASSES - 1) - IB - CANARY_ROOM
}

/// Take the lowest free slot of `g` (the owner's, `avail` its nonempty mask) and frame it
/// for `n` bytes.
#[inline(always)]
fn pop(tc: &mut ThreadCache, g: *mut Meta, avail: u32, n: usize) -> NonNull<u8> {
    // SAFETY: `g` is a live group this cache owns, of a class that fits `n + IB` (a size
    // class: no single mapping); the slot taken is free and becomes in use; a user
    // pointer is never null.
    unsafe {
        let idx = take_owned(&(*g).avail_mask, avail).trailing_zeros() as usize;
        let freed = owes_free_check(g, idx).then_some(tc.freed_word);
        let p = enframe_inline::<false>(g, idx, n, &mut tc.cycle, tc.secret, freed);
        NonNull::new_unchecked(p)
    }
}

/// Slot strides from which the owner's frees count towards a sweep of its groups (a
/// slot this long holds a whole 4 KiB page at least).
const SWEPT_STRIDE: usize = AREA + UNIT;

/// Slots `bits` of the owned group `g` are free again after use: their free time starts
/// now (not swept), and a release mark they kept from before they were handed out is
/// dropped at the owner's next sweep (`clean_mask &= swept_mask` there). One store on
/// the owner's free of a long slot.
///
/// # Safety
/// `g` is a live group the caller owns.
#[inline(always)]
unsafe fn came_back(g: *mut Meta, bits: u32) {
    // SAFETY: the caller's contract: the owner alone writes this field.
    unsafe { (*g).swept_mask &= !bits }
}

/// Start the decay wait of `tc` unless something is already waiting.
fn pend<O: Os>(tc: &mut ThreadCache) {
    if tc.decay_at == 0 {
        // (never 0 once set)
        tc.decay_at = O::now_ms().saturating_add(DECAY_MS).max(1);
    }
}

/// Bytes of the slots of the live group `g`.
///
/// # Safety
/// `g` is live.
unsafe fn group_bytes(g: *mut Meta) -> usize {
    // SAFETY: the caller's contract.
    unsafe { crate::meta::stride(g) * ((*g).last_idx as usize + 1) }
}

const _: () = assert!(TC_CLASSES <= crate::config::NUM_CLASSES);

/// The records of the circular list at `head`, head first.
///
/// # Safety
/// The list's records are live and stay so while the iterator is used.
unsafe fn ring<'a>(head: *mut Meta) -> impl Iterator<Item = *mut Meta> + 'a {
    let mut m = head;
    core::iter::from_fn(move || {
        if m.is_null() {
            return None;
        }
        let here = m;
        // SAFETY: the caller's contract
        m = unsafe { (*m).next };
        if m == head {
            m = null_mut();
        }
        Some(here)
    })
}

impl ThreadCache {
    /// The groups this cache owns of class `sc`, head first.
    pub fn groups(&self, sc: usize) -> impl Iterator<Item = *mut Meta> + '_ {
        // SAFETY: listed records are live (the cache invariant)
        unsafe { ring(self.active[sc]) }
    }

    /// Whether the cache owns no group.
    pub fn owns_nothing(&self) -> bool {
        self.active.iter().all(|g| g.is_null()) && self.retiring.is_null()
    }

    /// The empty groups waiting to be retired together.
    pub fn retiring(&self) -> impl Iterator<Item = *mut Meta> + '_ {
        // SAFETY: listed records are live (the cache invariant)
        unsafe { ring(self.retiring) }
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

/// Cache place `k` of a cache page: a page of caches above a guard page of its own
/// (as many as fit: a page each cost thread-heavy programs more). The first cache of a
/// heap is in its region instead. Cache pages are never unmapped (see
/// `give_place_back`): a program that once ran many threads keeps a page per
/// `AREA / size_of::<ThreadCache>()` of them.
fn place(page: *mut u8, k: usize) -> *mut ThreadCache {
    page.wrapping_add(k * size_of::<ThreadCache>()).cast()
}

// several caches fit a 4 KiB page
const _: () = assert!(8 * size_of::<ThreadCache>() <= AREA);
// the counters' types hold their bounds
const _: () = assert!(RETIRE_BATCH <= u16::MAX as u32 && RETIRE_BYTES < (u32::MAX / 2) as usize);

/// Put the zeroed cache place `tc` on the heap's spare list.
///
/// # Safety
/// The heap lock is held (or the region is not yet published); `tc` is a cache place of
/// this heap, zeroed, on no list.
pub(crate) unsafe fn add_spare(st: &mut State, tc: *mut ThreadCache) {
    // SAFETY: the caller's contract.
    unsafe { register(&mut st.spare_caches, tc) }
}

impl<O: Os, L: RawLock> Heap<O, L> {
    /// Caches in one cache page.
    fn places_per_page(&self) -> usize {
        self.page_size() / size_of::<ThreadCache>()
    }

    /// A new cache for the calling thread, registered with the heap; null when out of
    /// memory (the caller then uses the locked paths).
    ///
    /// A cache is never in a heap slot: it is in the heap's region or in a cache page,
    /// each with a guard page below it, so a heap overflow cannot reach its list heads,
    /// which `malloc` trusts.
    pub fn cache_create(&self) -> *mut ThreadCache {
        if !CACHE {
            return null_mut();
        }
        let Some(mut st) = self.locked() else {
            return null_mut();
        };
        // SAFETY: the lock is held; spare places are zeroed caches of this heap, and a
        // fresh page is ours.
        unsafe {
            self.expire(&mut st);
            if !st.abandoned.is_null() {
                // the newest: its groups are the warmest
                let tc = st.abandoned;
                unregister(&mut st.abandoned, tc);
                st.abandoned_count -= 1;
                own_all(tc);
                register(&mut st.caches, tc);
                st.stats.caches += 1;
                return tc;
            }
            let tc = if st.spare_caches.is_null() {
                drop(st);
                let ps = self.page_size();
                let Some(base) = O::mmap(null_mut(), 2 * ps, Prot::ReadWrite, false) else {
                    return null_mut();
                };
                self.install_guard(base.as_ptr(), ps);
                let page = base.as_ptr().wrapping_add(ps);
                let Some(g) = self.locked() else {
                    O::munmap(base.as_ptr(), 2 * ps);
                    return null_mut();
                };
                st = g;
                for k in 1..self.places_per_page() {
                    add_spare(&mut st, place(page, k));
                }
                place(page, 0)
            } else {
                let tc = st.spare_caches;
                unregister(&mut st.spare_caches, tc);
                tc
            };
            (*tc).cycle = st.cycle;
            (*tc).secret = st.secret;
            (*tc).freed_word = freed_word(st.secret);
            (*tc).sweep_in = SWEEP_INTERVAL;
            (*tc).me = tc;
            register(&mut st.caches, tc);
            st.stats.caches += 1;
            tc
        }
    }

    /// At thread exit: retire the empty groups of `tc`, and abandon it to the next
    /// thread if it still owns any; else give its place back to the heap (unmapping its
    /// page if no other cache there is held).
    ///
    /// # Safety
    /// `tc` came from [`Heap::cache_create`] of this heap and no thread uses it any more.
    pub unsafe fn cache_destroy(&self, tc: *mut ThreadCache) {
        // (null: what cache_create gives with caches off or no memory)
        if tc.is_null() {
            return;
        }
        let Some(mut st) = self.locked() else { crash() };
        let secret = st.secret;
        // SAFETY: the caller's contract; the cache's lists are ours under the lock, as
        // is the registry.
        unsafe {
            unregister(&mut st.caches, tc);
            self.retire_batch(&mut st, &mut *tc);
            self.retire_orphans(&mut st, &mut *tc);
            if st.abandoned_count >= MAX_ABANDONED {
                return self.give_groups_back(&mut st, tc);
            }
            for sc in 0..TC_CLASSES {
                let mut left = (*tc).groups(sc).count();
                while left != 0 {
                    left -= 1;
                    let g = (*tc).active[sc];
                    // marked first, then `freed` read: a remote free that empties the
                    // group either is seen here or sees the mark (`free_remote`)
                    (*g).owner.store(abandoned(tc), SeqCst);
                    (*g).freed_mask.sc_order();
                    // (read, not collected: a remote free judges emptiness from `avail`,
                    // which must not change once the group is marked)
                    let free = (*g).avail_mask.load(Relaxed) | (*g).freed_mask.load(SeqCst);
                    if free != low_mask((*g).last_idx as usize) {
                        (*tc).active[sc] = (*g).next;
                        continue;
                    }
                    dequeue(&mut (*tc).active[sc], g);
                    self.unmap_now(st.retire_owned::<O>(g, secret));
                }
            }
            if (*tc).owns_nothing() {
                return self.give_place_back(&mut st, tc);
            }
            (*tc).expires_at = O::now_ms().saturating_add(DECAY_MS);
            register(&mut st.abandoned, tc);
            st.abandoned_count += 1;
            self.expire(&mut st);
        }
    }

    /// Give every group of `tc` (an exited thread's, live or abandoned, off every
    /// registry) to the heap, and its place back.
    ///
    /// # Safety
    /// The lock is held (`st`); no thread uses `tc`, which retires nothing.
    unsafe fn give_groups_back(&self, st: &mut State, tc: *mut ThreadCache) {
        // SAFETY: the cache's copy of the heap's secret
        let secret = unsafe { (*tc).secret };
        // SAFETY: the caller's contract; the cache's lists are the lock's.
        unsafe {
            for sc in 0..TC_CLASSES {
                while let Some(g) = crate::list::dequeue_head(&mut (*tc).active[sc]) {
                    self.unmap_now(st.disown::<O>(g, secret));
                }
            }
            self.give_place_back(st, tc);
        }
    }

    /// Give the groups of the abandoned caches that no thread took over within the
    /// decay time to the heap: what an exited thread held goes to the other threads
    /// (their misses take the heap's groups before they make any) and to the heap's
    /// release sweep.
    ///
    /// # Safety
    /// The lock is held (`st`).
    unsafe fn expire(&self, st: &mut State) {
        if st.abandoned.is_null() {
            return;
        }
        let now = O::now_ms();
        // SAFETY: abandoned caches are the lock's.
        unsafe {
            let mut tc = st.abandoned;
            while !tc.is_null() {
                let next = (*tc).next;
                if now >= (*tc).expires_at {
                    unregister(&mut st.abandoned, tc);
                    st.abandoned_count -= 1;
                    self.give_groups_back(st, tc);
                }
                tc = next;
            }
        }
    }

    /// Unmap what a retired group left to unmap (under the lock: at thread exit, where a
    /// batch of groups goes at once, and the group cache usually keeps them anyway).
    fn unmap_now(&self, unmap: Unmap) {
        for (base, len) in unmap.into_iter().flatten() {
            // SAFETY: a retired group's mapping holds nothing live.
            unsafe { crate::heap::unmap::<O>(base, len) };
        }
    }

    /// Zero the unregistered cache `tc`, which owns nothing, and make its place spare.
    /// Cache pages are never unmapped: a remote free reads its group's owner after its
    /// slot is free, when the owner may give up its last group at once.
    ///
    /// # Safety
    /// The lock is held (`st`); `tc` is a cache place of this heap on no list, owning
    /// nothing.
    unsafe fn give_place_back(&self, st: &mut State, tc: *mut ThreadCache) {
        // SAFETY: the caller's contract.
        unsafe {
            tc.write_bytes(0, 1);
            add_spare(st, tc);
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
    /// (no cache known to the caller): the walk to another group, a new group, or the
    /// locked path.
    pub fn malloc_miss(&self, tc: Option<&mut ThreadCache>, n: usize) -> Option<NonNull<u8>> {
        match tc {
            Some(tc) if cacheable(n) => {
                let sc = request_class(n);
                match self.next_group(tc, sc) {
                    Some((g, avail)) => Some(pop(tc, g, avail, n)),
                    None => self.malloc(n),
                }
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

    /// `malloc` from the thread's active group of the class of `n` when it has a free
    /// slot; `None` when not (a size without owned groups, an exhausted group), with
    /// nothing changed. It calls nothing: the exports run it first and go to
    /// [`Heap::malloc_miss`] on `None` with a tail call, so no call it does not make sets
    /// up a frame (the registers it still saves are the framing's own).
    #[inline(always)]
    pub fn malloc_fast(&self, tc: &mut ThreadCache, n: usize) -> Option<NonNull<u8>> {
        if !cacheable(n) {
            return None;
        }
        let g = tc.active[request_class(n)];
        if g.is_null() {
            return None;
        }
        // SAFETY: a listed group is live and owned by this cache, whose thread alone
        // changes its `avail_mask`.
        let avail = unsafe { (*g).avail_mask.load(Relaxed) };
        if avail == 0 {
            return None;
        }
        Some(pop(tc, g, avail, n))
    }

    /// `malloc` through the thread's cache: [`Heap::malloc_fast`], else
    /// [`Heap::malloc_miss`].
    pub fn malloc_cached(&self, tc: &mut ThreadCache, n: usize) -> Option<NonNull<u8>> {
        match self.malloc_fast(tc, n) {
            Some(p) => Some(p),
            None => self.malloc_miss(Some(tc), n),
        }
    }

    /// A group of class `sc` with a free slot, made the head of the class's list, and its
    /// `avail_mask`: the first of [`WALK`] groups along the list that has one once
    /// collected, else a new group. `None` when out of memory.
    fn next_group(&self, tc: &mut ThreadCache, sc: usize) -> Option<(*mut Meta, u32)> {
        let head = tc.active[sc];
        let mut g = head;
        // SAFETY: listed groups are live and this cache's; their links are checked
        // before they are followed.
        unsafe {
            let mut seen = 0;
            while seen < WALK && !g.is_null() {
                let before = (*g).avail_mask.load(Relaxed);
                let avail = collect(&(*g).freed_mask, &(*g).avail_mask);
                if avail != before {
                    clear_zeroed(g);
                    came_back(g, avail & !before);
                }
                if avail != 0 {
                    tc.active[sc] = g;
                    return Some((g, avail));
                }
                seen += 1;
                g = ok(checked_links(g)).1;
                if g == head {
                    break;
                }
            }
            // where the walk stopped, unless decay ran (it may retire groups)
            let mut unseen = if g == head { null_mut() } else { g };
            if tc.decay_at != 0 && self.decay(tc) {
                unseen = null_mut();
            }
            // A thread that already fills several groups of the class gets up to
            // MAKE_BATCH at once, under one lock acquisition: the working set of a
            // thread-heavy program is made with a lock per few groups, not per group.
            let make = if class_size(sc) <= BATCH_SLOT_MAX {
                seen.div_ceil(2).clamp(1, MAKE_BATCH)
            } else {
                1
            };
            let mut st = self.locked()?;
            let secret = st.secret;
            // what exited threads gave back first; else new groups
            let adopted = st.adopt(sc, tc.me);
            let make = if adopted.is_some() { 0 } else { make };
            let new = match adopted {
                Some(g) => g,
                None => st.own_group::<O>(sc, secret, tc.me)?,
            };
            let mut spare = [null_mut(); MAKE_BATCH];
            for s in spare.iter_mut().take(make).skip(1) {
                match st.own_group::<O>(sc, secret, tc.me) {
                    Some(m) => *s = m,
                    None => break,
                }
            }
            tc.cycle = tc.cycle.wrapping_add(st.cycle);
            drop(st);
            // The new group goes first, before the first group the walk did not reach
            // (`g` is where it stopped), the spare ones next (as empty ones kept): the
            // groups seen full fall behind, and the next walk goes on where this one
            // stopped. (Put before the old head instead, it was followed by the groups
            // just seen full again and again, and a thread churning through many groups
            // never came back to its older ones, free slots and all: a fragmentation
            // workload peaked at 2.2 times its live bytes, against 1.2.)
            let h = if unseen.is_null() {
                &mut tc.active[sc]
            } else {
                &mut unseen
            };
            queue(h, new);
            tc.active[sc] = new;
            let g = new;
            for &m in spare.iter().skip(1).take_while(|m| !m.is_null()) {
                let mut after = (*g).next;
                queue(&mut after, m);
            }
            Some((g, (*g).avail_mask.load(Relaxed)))
        }
    }

    /// `free` through the thread's cache. Validation and a free into an owned group call
    /// nothing; every other case is a tail call, so no call it does not make sets up a
    /// frame (as [`Heap::malloc_fast`]).
    ///
    /// # Safety
    /// As [`Heap::free`].
    #[inline(always)]
    pub unsafe fn free_cached(&self, tc: &mut ThreadCache, p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { self.free_cached_checking(tc, p, None) }
    }

    /// [`Heap::free_cached`] with the block's size and alignment checked as
    /// `free_aligned_sized` checks them, inline: for Rust's `dealloc`, which always knows
    /// the layout (the C exports keep one copy out of line, [`Heap::free_sized_cached`]).
    ///
    /// # Safety
    /// As [`Heap::free`]; `align` is a power of two.
    #[inline(always)]
    pub unsafe fn free_layout_cached(
        &self,
        tc: &mut ThreadCache,
        p: *mut u8,
        size: usize,
        align: usize,
    ) {
        // SAFETY: forwarded.
        unsafe { self.free_cached_checking(tc, p, Some((size, align))) }
    }

    /// [`Heap::free_cached`], and with `layout` (size, alignment) the block checked
    /// against it.
    ///
    /// # Safety
    /// As [`Heap::free_layout_cached`].
    #[inline(always)]
    unsafe fn free_cached_checking(
        &self,
        tc: &mut ThreadCache,
        p: *mut u8,
        layout: Option<(usize, usize)>,
    ) {
        // SAFETY: validated exactly as in free before anything is written; the fallbacks
        // validate completely.
        unsafe {
            let fallback = |p| match layout {
                None => self.free_uncached(p),
                Some((size, align)) => self.free_sized(p, size, Some(align)),
            };
            if !CACHE || p.is_null() {
                return fallback(p);
            }
            let secret = tc.secret;
            let Ok(s) = find_slot_live(p, secret) else {
                // not heap memory: malloc(0)'s, or an invalid free (the locked free
                // tells them apart)
                return fallback(p);
            };
            let n = ok(nominal_size(p, &s));
            if let Some((size, align)) = layout {
                check!(n == size && p.addr() & (align - 1) == 0);
            }
            let owner = (*s.meta).owner.load(Relaxed);
            if !core::ptr::eq(owner, tc) {
                return self.free_not_mine(tc, p, s, secret);
            }
            self.free_mine(tc, p, s)
        }
    }

    /// [`Heap::free_sized`] through the thread's cache: the size and alignment checked,
    /// then the slot freed as [`Heap::free_cached`] does (C23 `free_sized` and
    /// `free_aligned_sized`, C++'s sized and aligned deletes: every `delete` of a C++
    /// program). One copy, out of line, with the shared decoder ([`validate`]): an inline
    /// copy of the cached free in each of the two exports was 2.5 KB of text, which
    /// every static program maps.
    ///
    /// # Safety
    /// As [`Heap::free`].
    #[inline(never)]
    pub unsafe fn free_sized_cached(
        &self,
        tc: &mut ThreadCache,
        p: *mut u8,
        size: usize,
        align: Option<usize>,
    ) {
        // SAFETY: forwarded; `validate` checks `p` completely before anything is written.
        unsafe {
            if !CACHE || p.is_null() || self.is_zero_size(p) {
                return self.free_sized(p, size, align);
            }
            let secret = tc.secret;
            let (s, n) = validate(p, secret);
            check!(n == size);
            if let Some(a) = align {
                check!(a.is_power_of_two() && p.addr() & (a - 1) == 0);
            }
            let owner = (*s.meta).owner.load(Relaxed);
            if !core::ptr::eq(owner, tc) {
                return self.free_not_mine(tc, p, s, secret);
            }
            self.free_mine(tc, p, s)
        }
    }

    /// The owner's free of `p`, validated as `s`: into `avail_mask`, no lock.
    ///
    /// # Safety
    /// `p` is a live allocation, validated as `s`, of a group `tc` owns.
    #[inline(always)]
    unsafe fn free_mine(&self, tc: &mut ThreadCache, p: *mut u8, s: crate::slot::Slot) {
        let g = s.meta;
        // SAFETY: the caller's contract; only this thread changes the group's avail_mask.
        unsafe {
            retire(p, &s, tc.freed_word);
            clear_zeroed(g);
            let Some(free) = free_owned(&(*g).freed_mask, &(*g).avail_mask, 1 << s.idx) else {
                crash()
            };
            if s.stride >= SWEPT_STRIDE {
                came_back(g, 1 << s.idx);
                self.count_sweep(tc);
            }
            if free == low_mask((*g).last_idx as usize) {
                let sc = (*g).sizeclass as usize;
                if tc.active[sc] != g {
                    self.emptied(tc, sc, g);
                } else if tc.decay_at != 0 {
                    if tc.decay_in <= 1 {
                        self.decay_head(tc);
                    } else {
                        tc.decay_in -= 1;
                    }
                } else if (*g).maplen as usize * AREA > KEPT_MAX_BYTES {
                    // a large active group left empty is what decay is for as well
                    self.decay_head(tc);
                }
            }
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

    /// The rest of [`Heap::free_cached`] for a slot of a group this cache does not own.
    /// Its frees of long slots count towards the sweep of its own groups as its own
    /// frees do (a thread freeing mostly what others made must sweep all the same).
    ///
    /// # Safety
    /// `p` is a live allocation, validated as `s`.
    #[inline(never)]
    unsafe fn free_not_mine(
        &self,
        tc: &mut ThreadCache,
        p: *mut u8,
        s: crate::slot::Slot,
        secret: u64,
    ) {
        let long = s.stride >= SWEPT_STRIDE;
        // SAFETY: forwarded; a group owned by a cache (live or abandoned) stays live
        // while this slot is in use.
        unsafe {
            if (*s.meta).owner.load(Relaxed).is_null() {
                self.free_slot(p, s, secret);
            } else {
                retire(p, &s, tc.freed_word);
                if self.free_remote(s.meta, s.idx) {
                    self.defer_orphan(tc, s.meta);
                }
            }
        }
        if long {
            self.count_sweep(tc);
        }
    }

    /// Count a free of a slot of a page or more; sweep every [`SWEEP_INTERVAL`].
    #[inline(always)]
    fn count_sweep(&self, tc: &mut ThreadCache) {
        tc.sweep_in -= 1;
        if tc.sweep_in == 0 {
            self.sweep_owned(tc);
        }
    }

    /// The owner freed the last slot in use of `g`, which is not its active group. Up to
    /// [`KEPT_EMPTY`] empty groups a class are kept, next after the active one, where the
    /// walk looks first (a thread whose use of a class goes up and down by a few blocks
    /// would otherwise retire a group and make another, two lock acquisitions, each
    /// time); one more is retired, so what a thread holds empty stays bounded.
    ///
    /// # Safety
    /// `g` is a group of class `sc` on `tc`'s list, not its head, with no slot in use.
    #[cold]
    #[inline(never)]
    unsafe fn emptied(&self, tc: &mut ThreadCache, sc: usize, g: *mut Meta) {
        // SAFETY: the caller's contract; listed groups are live and this cache's, their
        // links checked before they are followed.
        unsafe {
            let head = tc.active[sc];
            let all = |m: *mut Meta| low_mask((*m).last_idx as usize);
            let mut after = ok(checked_links(head)).1;
            let mut m = after;
            let mut kept = 0;
            while m != head && kept < KEPT_EMPTY {
                if m == g {
                    // already among the kept ones
                    return;
                }
                if (*m).avail_mask.load(Relaxed) | (*m).freed_mask.load(Relaxed) != all(m) {
                    break;
                }
                kept += 1;
                m = ok(checked_links(m)).1;
            }
            let bytes = group_bytes(g);
            if kept < KEPT_EMPTY && bytes <= KEPT_MAX_BYTES {
                dequeue(&mut tc.active[sc], g);
                // (queued before `after` is after the head)
                queue(&mut after, g);
                return;
            }
            // no slot of `g` is in use, so no other thread frees into it
            check!(collect(&(*g).freed_mask, &(*g).avail_mask) == all(g));
            dequeue(&mut tc.active[sc], g);
            pend::<O>(tc);
            queue(&mut tc.retiring, g);
            tc.retiring_count += 1;
            // (a group is far below 4 GiB)
            tc.retiring_bytes += bytes as u32;
            tc.given = tc.given.saturating_add(bytes as u32);
            if tc.given >= WAIT_BIG {
                tc.decay_in = 0;
            }
            if u32::from(tc.retiring_count) >= RETIRE_BATCH
                || tc.retiring_bytes as usize >= RETIRE_BYTES
            {
                let Some(mut st) = self.locked() else { crash() };
                self.retire_batch(&mut st, tc);
            } else {
                self.decay(tc);
            }
        }
    }

    /// Decay, checked when `tc` has given groups up: once they have waited [`DECAY_MS`],
    /// retire them, and the empty groups it kept (and its empty active groups), all
    /// under one lock acquisition. Checked on a miss, when a group is given up, and when
    /// the active group empties: the calls of a program that frees everything and calls
    /// again later (a kept or active group is what its next malloc takes, so they go only
    /// once the thread has been giving groups up and time has passed).
    #[cold]
    #[inline(never)]
    fn decay(&self, tc: &mut ThreadCache) -> bool {
        if O::now_ms() < tc.decay_at {
            return false;
        }
        // what it retires has waited since then: the heap holds it no longer
        let since = tc.decay_at - DECAY_MS.min(tc.decay_at);
        tc.decay_at = 0;
        let Some(mut st) = self.locked() else { crash() };
        let secret = tc.secret;
        st.freed_since = Some(since);
        // SAFETY: `tc` is this thread's; the groups retired are empty, so no other thread
        // frees into them; links are checked before they are followed.
        unsafe {
            self.retire_batch(&mut st, tc);
            self.retire_orphans(&mut st, tc);
            self.expire(&mut st);
            for sc in 0..TC_CLASSES {
                // kept groups are next after the head, made ones too
                let mut near = [null_mut(); 1 + KEPT_AHEAD];
                for (k, g) in tc.groups(sc).take(near.len()).enumerate() {
                    near[k] = g;
                }
                for &g in near.iter().take_while(|g| !g.is_null()) {
                    let all = low_mask((*g).last_idx as usize);
                    if collect(&(*g).freed_mask, &(*g).avail_mask) == all {
                        dequeue(&mut tc.active[sc], g);
                        self.unmap_now(st.retire_owned::<O>(g, secret));
                    }
                }
            }
            st.freed_since = None;
            st.expire_retained::<O>();
            // what this thread gave the heap to hold is looked at again once it may go
            tc.given = 0;
            if let Some((at, bytes)) = st.retained_wait() {
                tc.decay_at = at.saturating_add(DECAY_MS).max(1);
                tc.given = u32::try_from(bytes).unwrap_or(u32::MAX);
            }
        }
        true
    }

    /// [`Heap::decay`] when the owner's free empties its active group, starting the wait
    /// if it is the first thing waiting. While a wait is on, the free calls it on one
    /// emptying in [`DECAY_TICK`] unless more than [`WAIT_BIG`] waits: a loop that empties
    /// its active group on every free (a few blocks of many classes, or one block of a
    /// class whose group is a single slot) read the clock on every free, a sixth of a
    /// thread-local churn's time, for a wait that holds little; decay then runs late by
    /// as many emptyings at most. With much waiting it looks each time: that is the call
    /// of a program that freed everything and calls again later.
    #[cold]
    #[inline(never)]
    fn decay_head(&self, tc: &mut ThreadCache) {
        pend::<O>(tc);
        self.decay(tc);
        tc.decay_in = if tc.given >= WAIT_BIG { 0 } else { DECAY_TICK };
    }

    /// The owner's release sweep, every [`SWEEP_INTERVAL`] of its frees of slots of a page
    /// or more: the whole pages of its groups' free slots that stayed free since its last
    /// sweep go back to the system (as the heap's sweep does for its groups, with no lock:
    /// only the owner hands these slots out).
    #[cold]
    #[inline(never)]
    fn sweep_owned(&self, tc: &mut ThreadCache) {
        tc.sweep_in = SWEEP_INTERVAL;
        // A page is released once it stayed free from one sweep to the next: sweeps at
        // least SWEEP_MS apart keep a page a program frees and takes again within that
        // time (a churn frees thousands a second) instead of releasing and faulting it in.
        let now = O::now_ms() as u32;
        if SWEEP_MS != 0 && now.wrapping_sub(tc.swept_at) < SWEEP_MS {
            return;
        }
        tc.swept_at = now;
        let ps = self.page_size();
        let mut budget = SWEEP_GROUPS;
        // SAFETY: listed groups are live and this cache's; their free slots are handed
        // out only by this thread, which is here.
        unsafe {
            for sc in 0..TC_CLASSES {
                if class_size(sc) < ps + IB {
                    continue;
                }
                for g in tc.groups(sc).take(budget) {
                    budget -= 1;
                    let before = (*g).avail_mask.load(Relaxed);
                    let avail = collect(&(*g).freed_mask, &(*g).avail_mask);
                    clear_zeroed(g);
                    came_back(g, avail & !before);
                    // a slot not free at the last sweep, or handed out since, is no
                    // longer released memory whatever its mark
                    (*g).clean_mask &= (*g).swept_mask;
                    release_cold::<O>(g, avail, ps);
                }
                if budget == 0 {
                    break;
                }
            }
        }
    }

    /// Retire the groups `tc` gave up.
    ///
    /// # Safety
    /// `st` is the heap lock; `tc` satisfies the cache invariant.
    unsafe fn retire_batch(&self, st: &mut State, tc: &mut ThreadCache) {
        let secret = tc.secret;
        // SAFETY: retiring groups are empty, so no other thread frees into them.
        unsafe {
            while let Some(g) = crate::list::dequeue_head(&mut tc.retiring) {
                self.unmap_now(st.retire_owned::<O>(g, secret));
            }
        }
        tc.retiring_count = 0;
        tc.retiring_bytes = 0;
    }

    /// Free slot `idx` of `g`, owned by a thread cache, from a thread that is not its
    /// owner (or has no cache): into `freed_mask`, no lock. If the owner gave the group
    /// to the heap meanwhile (it exited), the heap may not have seen this slot free:
    /// settle the group under the lock (see [`State::disown`]).
    ///
    /// # Safety
    /// The slot is in use, validated and retired; `g` is owned.
    pub(crate) unsafe fn free_remote(&self, g: *mut Meta, idx: usize) -> bool {
        // SAFETY: the slot, in use until now, kept `g` live.
        unsafe {
            let Some(free) = free_remote(&(*g).freed_mask, &(*g).avail_mask, 1 << idx) else {
                crash()
            };
            (*g).freed_mask.sc_order();
            let owner = (*g).owner.load(SeqCst);
            if owner.is_null() {
                self.settle_disowned(g);
                return false;
            }
            owner.addr() & ABANDONED != 0
                && free | (*g).avail_mask.load(Relaxed) == low_mask((*g).last_idx as usize)
        }
    }

    /// Retire `g`, a group of an abandoned cache a free without a cache emptied (see
    /// [`Heap::retire_orphan_locked`]).
    ///
    /// # Safety
    /// `g` is a meta record of this heap.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn retire_orphan(&self, g: *mut Meta) {
        let Some(mut st) = self.locked() else { crash() };
        // SAFETY: forwarded.
        unsafe { self.retire_orphan_locked(&mut st, g) }
    }

    /// Note `g`, a group of an abandoned cache this thread's free emptied, for retiring
    /// with others; retire them all once [`ORPHAN_BATCH`] wait.
    ///
    /// # Safety
    /// `g` is a meta record of this heap.
    #[cold]
    #[inline(never)]
    unsafe fn defer_orphan(&self, tc: &mut ThreadCache, g: *mut Meta) {
        tc.orphans[tc.orphan_count as usize] = g;
        tc.orphan_count += 1;
        pend::<O>(tc);
        if tc.orphan_count as usize == ORPHAN_BATCH {
            let Some(mut st) = self.locked() else { crash() };
            // SAFETY: noted groups are meta records of this heap.
            unsafe { self.retire_orphans(&mut st, tc) };
        }
    }

    /// Retire the groups `tc` noted ([`Heap::defer_orphan`]) that are still empty groups
    /// of abandoned caches.
    ///
    /// # Safety
    /// The lock is held (`st`).
    unsafe fn retire_orphans(&self, st: &mut State, tc: &mut ThreadCache) {
        for k in 0..core::mem::replace(&mut tc.orphan_count, 0) as usize {
            // SAFETY: noted groups are meta records of this heap.
            unsafe { self.retire_orphan_locked(st, tc.orphans[k]) };
        }
    }

    /// Retire `g` if it is (still) an empty group of an abandoned cache: a thread may
    /// have taken the cache over meanwhile and allocated from it, or the cache expired
    /// and gave it to the heap, or it was retired and its record reused. Give the cache's
    /// place back once it owns nothing.
    ///
    /// # Safety
    /// The lock is held (`st`); `g` is a meta record of this heap.
    unsafe fn retire_orphan_locked(&self, st: &mut State, g: *mut Meta) {
        // SAFETY: an abandoned cache's lists and its groups' marks are changed only under
        // the lock, held here: a live group marked with an abandoned cache is on its list.
        unsafe {
            let owner = (*g).owner.load(Relaxed);
            if owner.addr() & ABANDONED == 0
                || (*g).mem.is_null()
                || collect(&(*g).freed_mask, &(*g).avail_mask) != low_mask((*g).last_idx as usize)
            {
                return;
            }
            let owner = owner.map_addr(|a| a & !ABANDONED);
            let sc = (*g).sizeclass as usize;
            dequeue(&mut (*owner).active[sc], g);
            self.unmap_now(st.retire_owned::<O>(g, (*owner).secret));
            if (*owner).owns_nothing() {
                unregister(&mut st.abandoned, owner);
                st.abandoned_count -= 1;
                self.give_place_back(st, owner);
            }
        }
    }

    /// [`Heap::free_remote`] found `g` given to the heap after its OR.
    ///
    /// # Safety
    /// `g` is a meta record of this heap (it may have been freed or reused since).
    #[cold]
    #[inline(never)]
    unsafe fn settle_disowned(&self, g: *mut Meta) {
        let Some(mut st) = self.locked() else { crash() };
        let secret = st.secret;
        // SAFETY: under the lock a record is live iff its `mem` is set; a live record of
        // the heap's (no owner) of a size class is one `settle` may put in its place,
        // whichever group it now describes (settling is idempotent).
        unsafe {
            if (*g).mem.is_null()
                || !(*g).owner.load(Relaxed).is_null()
                || (*g).sizeclass as usize >= crate::config::NUM_CLASSES
            {
                return;
            }
            self.unmap_now(st.settle::<O>(g, secret));
        }
    }
}
