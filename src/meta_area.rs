//! Meta areas: the pages of out-of-band records, tagged with the heap's secret, from the
//! program break (first with a guard page below it) or from PROT_NONE reservations that
//! double in size (mallocng's `alloc_meta`).

use core::ptr::null_mut;
use core::sync::atomic::Ordering::Relaxed;

use crate::config::AREA;
use crate::heap::State;
use crate::list::{dequeue_head, queue};
use crate::meta::{AREA_SLOTS, Meta, MetaArea, area_slots};
use crate::os::{Os, Prot};
use crate::pagemap;
use crate::policy::round_up;

/// The first PROT_NONE reservation for meta areas is `2 << FIRST_META_SHIFT` pages (15
/// areas), each next one twice the last. mallocng starts at 2 pages (one area); with 63
/// records an area, a program with 2000 large blocks then went through five reservations,
/// each a VMA or two of its own. Untouched reservation costs address space, no memory.
pub(crate) const FIRST_META_SHIFT: u32 = 3;

/// `State::brk` once the break is known to be unusable.
pub(crate) const BRK_FAILED: usize = usize::MAX;

impl State {
    /// mallocng `alloc_meta`: a record from the free list, else from the current meta
    /// area, else from a new area: taken from the program break (first with a guard page
    /// below it), or carved from a PROT_NONE reservation that doubles each time, so that
    /// every area has an inaccessible page or area-sized gap below the first.
    ///
    /// # Safety
    /// The lock is held.
    pub(crate) unsafe fn alloc_meta<O: Os>(&mut self, secret: u64) -> Option<*mut Meta> {
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
                if !pagemap::note_area(p) && !pagemap::register::<O>(p, AREA, null_mut()) {
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
    /// A free from another thread than a group's owner may still read the record after
    /// the owner took its slot back and retired the group: it publishes its bit, then
    /// reads `owner` (`tcache::free_remote`). So the atomics are wiped with atomic
    /// stores, field by field, never by a plain write of the whole record (a data race,
    /// ThreadSanitizer found it); that free then sees no owner and settles the record
    /// under the lock, which leaves a free record alone. `last_idx`, which it reads when
    /// the owner was marked abandoned, is left as it is (a free record's is never read;
    /// `init_group` sets it).
    ///
    /// # Safety
    /// `m` is live and unlisted; the lock is held.
    pub(crate) unsafe fn free_meta(&mut self, m: *mut Meta) {
        // SAFETY: forwarded; plain fields are the lock holder's alone.
        unsafe {
            (*m).owner.store(null_mut(), Relaxed);
            (*m).avail_mask.store(0, Relaxed);
            (*m).freed_mask.store(0, Relaxed);
            (*m).hosts.store(0, Relaxed);
            (*m).mem = null_mut();
            (*m).prev = null_mut();
            (*m).next = null_mut();
            (*m).freeable = 0;
            (*m).sizeclass = 0;
            (*m).zeroed_or_used = 0;
            (*m).maplen = 0;
            (*m).clean_mask = 0;
            (*m).swept_mask = 0;
            (*m).units = 0;
            queue(&mut self.free_meta_head, m);
        }
    }
}
