//! Which 4 KiB pages hold heap memory, and of which group: group mappings, the data of
//! individually mapped blocks and donated ranges in a map, meta areas in a short table of
//! runs. The header decoder (`slot::find_meta`) checks every address it derives from
//! user-writable bytes here before it reads through it, so a forged offset or meta pointer
//! is rejected (a hardening crash) instead of making the decoder read wherever it points
//! (mallocng's `get_meta` faults there, or reads another mapping). One map serves every
//! heap of the process.
//!
//! An entry is a word per page: [`ABSENT`] (not heap memory), [`HEAP`] (heap memory of no
//! one group: donated ranges, meta areas the run table had no room for), or the address of
//! a meta record, the *hint*: the group whose own mapping holds the page, when it was
//! registered. The map is written only by the allocator, so a hint is always some record
//! in a meta area (areas are never unmapped: reading one is safe), and a record whose
//! `mem` is the group a header names is that group's record: `free` takes it from the map
//! in one lookup instead of following the header to the group and its record and checking
//! the record's area. A stale hint (the record freed or reused for other memory) or a
//! nested group (its pages are its host's) fails the `mem` test, and the decoder follows
//! the header as before.
//!
//! Layout: a top array of `TOP_LEN` leaf pointers, one per GiB of address space, and
//! leaves of one word per page (2 MiB each). Both are anonymous mappings made on first
//! use, whose untouched pages cost no memory; a page of a leaf covers 2 MiB of address
//! space. Leaves are never unmapped.
//!
//! Invariant: a page's entry is nonzero only while the page is mapped readable by the
//! heap: [`register`] after mapping (or unguarding), [`unregister`] before unmapping (or
//! guarding). Entries are single-word atomic stores, so ranges registered by different
//! threads at once (a large block is mapped without the lock) never lose each other's.

use core::ptr::null_mut;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize};

use crate::config::AREA;
use crate::meta::Meta;
use crate::os::{Os, Prot};

/// Address bits covered: 48 (x86_64 with 4-level paging, aarch64 with 48-bit VA). Higher
/// addresses (5-level paging's, never handed out unless asked for) are never heap pages.
const VA_BITS: u32 = 48;
const PAGE_SHIFT: u32 = AREA.trailing_zeros();
/// Address bits one leaf covers: 1 GiB.
const LEAF_SHIFT: u32 = 30;
const LEAF_LEN: usize = 1 << (LEAF_SHIFT - PAGE_SHIFT);
const LEAF_BYTES: usize = LEAF_LEN * size_of::<Entry>();
const TOP_LEN: usize = 1 << (VA_BITS - LEAF_SHIFT);
const TOP_BYTES: usize = TOP_LEN * size_of::<Leaf>();

type Entry = AtomicPtr<Meta>;
type Leaf = AtomicPtr<Entry>;

/// Entry of a page that is not heap memory (its address).
pub const ABSENT: usize = 0;
/// Entry of a heap page with no hint (its address).
pub const HEAP: usize = 1;

const _: () = assert!(AREA == 4096 && LEAF_BYTES == 2 << 20 && TOP_BYTES == 2 << 20);
// a hint is a record's address: never ABSENT nor HEAP
const _: () = assert!(align_of::<Meta>() > HEAP);

/// The top array (null until the first registration).
static TOP: AtomicPtr<Leaf> = AtomicPtr::new(null_mut());

/// The entry of the page holding `addr`: a pointer whose address is [`ABSENT`], [`HEAP`],
/// or a hint's.
#[inline(always)]
pub fn entry(addr: usize) -> *mut Meta {
    let top = TOP.load(Acquire);
    if top.is_null() {
        return null_mut();
    }
    in_map(top, addr)
}

/// [`entry`] for a process that has a heap: the top array exists (every heap makes it
/// before it publishes its secret, [`ensure_top`]), so it is not tested for null.
#[inline(always)]
pub fn entry_live(addr: usize) -> *mut Meta {
    let top = TOP.load(Acquire);
    debug_assert!(!top.is_null());
    in_map(top, addr)
}

/// Whether the page holding `addr` is heap memory.
#[inline(always)]
pub fn contains(addr: usize) -> bool {
    entry(addr).addr() != ABSENT
}

/// [`contains`] for a process that has a heap (as [`entry_live`]).
#[inline(always)]
pub fn contains_live(addr: usize) -> bool {
    entry_live(addr).addr() != ABSENT
}

/// The lookup of [`entry`] in the non-null top array `top`.
#[inline(always)]
fn in_map(top: *mut Leaf, addr: usize) -> *mut Meta {
    if addr >> VA_BITS != 0 {
        return null_mut();
    }
    // SAFETY: the top array has TOP_LEN entries and `addr >> LEAF_SHIFT < TOP_LEN`; a
    // non-null leaf has LEAF_LEN entries and the index is below that.
    unsafe {
        let leaf = (*top.add(addr >> LEAF_SHIFT)).load(Acquire);
        if leaf.is_null() {
            return null_mut();
        }
        (*leaf.add((addr >> PAGE_SHIFT) & (LEAF_LEN - 1))).load(Relaxed)
    }
}

/// Make the top array if there is none yet; false if it cannot be mapped. A heap calls it
/// before it publishes its secret, so a pointer validated against a secret never meets a
/// missing top array ([`contains_live`]).
pub fn ensure_top<O: Os>() -> bool {
    !install::<O, Leaf>(&TOP, TOP_BYTES).is_null()
}

/// Meta areas are listed here, as runs of consecutive pages (`first page << RUN_BITS |
/// pages`, oldest first), not in the map: they are never unregistered (no heap gives its
/// areas back) and come in few runs (the program break, or one run per reservation, whose
/// sizes double), and the break lies far from the mappings. Listing them in the map
/// touched a top-array page and a leaf page for the break's addresses alone, in every
/// process. The decoder checks every
/// record's area, on every free; the newest run answers that with a subtraction and a
/// compare. An entry is one word, so a reader never pairs one run's start with another's
/// length; 0 is no run (an entry claimed and not yet written). When the table is full,
/// areas go in the map.
static RUNS: Runs = Runs::new();
const MAX_RUNS: usize = 32;
const RUN_BITS: u32 = 16;
const RUN_MAX: u64 = (1 << RUN_BITS) - 1;

/// The table of runs ([`RUNS`]).
struct Runs {
    /// The run noted last (a copy; 0 before any): what the decoder looks at first. A
    /// run only grows, so an older copy of it, stored late by a racing heap, still holds
    /// nothing but areas.
    newest: AtomicU64,
    run: [AtomicU64; MAX_RUNS],
    /// Entries claimed.
    len: AtomicUsize,
}

/// Whether `page` (an address shifted by `PAGE_SHIFT`) lies in `run`.
#[inline(always)]
fn in_run(run: u64, page: u64) -> bool {
    page.wrapping_sub(run >> RUN_BITS) < run & RUN_MAX
}

impl Runs {
    const fn new() -> Self {
        Runs {
            newest: AtomicU64::new(0),
            run: [const { AtomicU64::new(0) }; MAX_RUNS],
            len: AtomicUsize::new(0),
        }
    }

    /// Whether `page` lies in a run (the newest is looked at first).
    #[inline(always)]
    fn contain(&self, page: u64) -> bool {
        // (a record a thread can name was made after its area was noted, and that store
        // is seen: relaxed loads suffice)
        in_run(self.newest.load(Relaxed), page) || self.older(page)
    }

    /// [`Runs::contain`] past the newest run: the whole table.
    #[cold]
    fn older(&self, page: u64) -> bool {
        let n = self.len.load(Relaxed).min(MAX_RUNS);
        self.run[..n].iter().any(|r| in_run(r.load(Relaxed), page))
    }

    /// Add `page`: to the newest run if it follows it, else as a new one. False if the
    /// table is full.
    fn note(&self, page: u64) -> bool {
        // heaps with different locks may note areas at once: a run only grows, by the
        // page that follows it, and an entry is claimed before it is written
        loop {
            let n = self.len.load(Acquire);
            if n != 0 {
                let last = &self.run[n - 1];
                let run = last.load(Relaxed);
                let (first, len) = (run >> RUN_BITS, run & RUN_MAX);
                if len != 0 && len < RUN_MAX && first + len == page {
                    if last
                        .compare_exchange(run, run + 1, Release, Relaxed)
                        .is_ok()
                    {
                        self.newest.store(run + 1, Release);
                        return true;
                    }
                    continue;
                }
            }
            if n == MAX_RUNS {
                return false;
            }
            if self.len.compare_exchange(n, n + 1, AcqRel, Relaxed).is_ok() {
                self.run[n].store(page << RUN_BITS | 1, Release);
                self.newest.store(page << RUN_BITS | 1, Release);
                return true;
            }
        }
    }
}

/// Whether the page holding `addr`, a meta area's address, is heap memory: in a run of
/// areas, or in the map.
#[inline(always)]
pub fn contains_area(addr: usize) -> bool {
    RUNS.contain((addr >> PAGE_SHIFT) as u64) || contains(addr)
}

/// List the page at `p`, a new meta area that stays heap memory. False if the table of
/// runs is full: then the caller [`register`]s it in the map.
pub fn note_area(p: *const u8) -> bool {
    RUNS.note((p.addr() >> PAGE_SHIFT) as u64)
}

/// A mapping of `len` zeroed bytes, or null.
fn map<O: Os>(len: usize) -> *mut u8 {
    // SAFETY: a fresh anonymous mapping, ours.
    unsafe { O::mmap(null_mut(), len, Prot::ReadWrite, false) }.map_or(null_mut(), |p| p.as_ptr())
}

/// Install `*slot` from null to a fresh mapping of `len` bytes, unless another thread did
/// first; the pointer in force, or null if no mapping could be made.
fn install<O: Os, T>(slot: &AtomicPtr<T>, len: usize) -> *mut T {
    let cur = slot.load(Acquire);
    if !cur.is_null() {
        return cur;
    }
    let new = map::<O>(len).cast::<T>();
    if new.is_null() {
        return null_mut();
    }
    match slot.compare_exchange(null_mut(), new, AcqRel, Acquire) {
        Ok(_) => new,
        Err(won) => {
            // SAFETY: our mapping lost the race and was never published.
            unsafe { O::munmap(new.cast(), len) };
            won
        }
    }
}

/// Held while entries are made non-null ([`update`]) and while [`trim`] gives back leaf
/// pages whose entries are all null: a page is given back only while no entry of it can
/// become non-null. (Clearing entries needs no lock: a null store into a page given back
/// stores what the page reads as, or is skipped.)
static WRITING: AtomicBool = AtomicBool::new(false);

/// Run `f` holding [`WRITING`]. Its holders store a few entries or map a leaf: a spin.
fn writing<R>(f: impl FnOnce() -> R) -> R {
    while WRITING.swap(true, Acquire) {
        core::hint::spin_loop();
    }
    let r = f();
    WRITING.store(false, Release);
    r
}

/// Before `fork`: hold [`WRITING`], so the child does not inherit it held by a thread
/// it does not have (taken after the heap lock, as the heap's paths nest them).
pub fn fork_prepare() {
    while WRITING.swap(true, Acquire) {
        core::hint::spin_loop();
    }
}

/// After `fork`, in the parent: release [`WRITING`].
pub fn fork_parent() {
    WRITING.store(false, Release);
}

/// After `fork`, in the child, where no other thread exists (also a fork that did not
/// go through [`fork_prepare`]: a holder that is gone left the entries it wrote, which
/// are whole words).
pub fn fork_child() {
    WRITING.store(false, Relaxed);
}

/// Set the entries of the pages of `p .. p + len` to `value` (making leaves as needed
/// unless it is null); false if a leaf cannot be made.
fn update<O: Os>(p: *const u8, len: usize, value: *mut Meta) -> bool {
    if value.is_null() {
        update_in::<O>(p, len, value)
    } else {
        writing(|| update_in::<O>(p, len, value))
    }
}

/// [`update`], unlocked.
fn update_in<O: Os>(p: *const u8, len: usize, value: *mut Meta) -> bool {
    if len == 0 {
        return true;
    }
    let on = !value.is_null();
    let first = p.addr() >> PAGE_SHIFT;
    let last = (p.addr() + len - 1) >> PAGE_SHIFT;
    if last >> (VA_BITS - PAGE_SHIFT) != 0 {
        return false;
    }
    let top = if on {
        install::<O, Leaf>(&TOP, TOP_BYTES)
    } else {
        TOP.load(Acquire)
    };
    if top.is_null() {
        return !on;
    }
    let mut page = first;
    while page <= last {
        // SAFETY: `page / LEAF_LEN < TOP_LEN` (checked above for `last`).
        let slot = unsafe { &*top.add(page / LEAF_LEN) };
        let leaf = if on {
            install::<O, Entry>(slot, LEAF_BYTES)
        } else {
            slot.load(Acquire)
        };
        let stop = (last + 1).min((page / LEAF_LEN + 1) * LEAF_LEN);
        if leaf.is_null() {
            if on {
                return false;
            }
            page = stop;
            continue;
        }
        while page < stop {
            // SAFETY: the index is below LEAF_LEN.
            let e = unsafe { &*leaf.add(page % LEAF_LEN) };
            // (a page of a leaf never written reads as the shared zero page: storing 0
            // into it would make it memory)
            if e.load(Relaxed) != value {
                e.store(value, Relaxed);
            }
            page += 1;
        }
    }
    true
}

/// Mark the pages of `p .. p + len` heap memory, with `hint` the record of the group
/// whose own mapping they are (null: none); false (nothing to undo) if the map could not
/// be extended to them, and then the memory must not be handed out. Registering pages
/// again (a new hint for a reused mapping) cannot fail.
///
/// # Safety
/// The range is mapped readable by the heap and stays so until [`unregister`]; `hint` is
/// null or a record in a meta area.
pub unsafe fn register<O: Os>(p: *const u8, len: usize, hint: *const Meta) -> bool {
    let value = if hint.is_null() {
        core::ptr::without_provenance_mut(HEAP)
    } else {
        hint.cast_mut()
    };
    if update::<O>(p, len, value) {
        return true;
    }
    update::<O>(p, len, null_mut());
    false
}

/// The pages of `p .. p + len` are no longer heap memory (before they are unmapped or
/// guarded).
pub fn unregister<O: Os>(p: *const u8, len: usize) {
    update::<O>(p, len, null_mut());
}

/// Give back the pages of the leaves that hold the entries of `p .. p + len` (after it
/// was unregistered) if every entry on them is null: a heap that shrank from gigabytes
/// does not keep the map of them (2 MiB per GiB).
pub fn trim<O: Os>(p: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let per_page = AREA / size_of::<Entry>();
    let first = (p.addr() >> PAGE_SHIFT) / per_page;
    let last = ((p.addr() + len - 1) >> PAGE_SHIFT) / per_page;
    let top = TOP.load(Acquire);
    if top.is_null() || (last * per_page) >> (VA_BITS - PAGE_SHIFT) != 0 {
        return;
    }
    writing(|| {
        for k in first..=last {
            let page = k * per_page;
            // SAFETY: `page / LEAF_LEN < TOP_LEN` (checked for `last`); a non-null leaf
            // has LEAF_LEN entries, and the page's lie in it.
            unsafe {
                let leaf = (*top.add(page / LEAF_LEN)).load(Acquire);
                if leaf.is_null() {
                    continue;
                }
                let at = leaf.add(page % LEAF_LEN);
                let entries = core::slice::from_raw_parts(at, per_page);
                if entries.iter().all(|e| e.load(Relaxed).is_null()) {
                    // (no entry of it can become non-null while WRITING is held; it
                    // reads as zero again afterwards, which is null)
                    O::release(at.cast(), AREA);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_make_runs_and_a_full_table_says_so() {
        let r = Runs::new();
        assert!(!r.contain(100));
        assert!(r.note(100) && r.note(101) && r.note(102));
        assert!((100..103).all(|p| r.contain(p)));
        assert!(!r.contain(99) && !r.contain(103));
        // a gap starts a new run; the old one is still found
        assert!(r.note(200));
        assert!(r.contain(200) && r.contain(101) && !r.contain(201));
        assert_eq!(r.len.load(Relaxed), 2);
        for k in 2..MAX_RUNS as u64 {
            assert!(r.note(1000 * k));
        }
        assert!(!r.note(5), "table full");
        assert!(
            r.note(1000 * (MAX_RUNS as u64 - 1) + 1),
            "the newest run still grows"
        );
        assert!(r.contain(101) && !r.contain(5));
    }
}
