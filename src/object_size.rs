//! `malloc_object_size`: hardened_malloc's query of how many bytes of its allocation lie
//! at and after a pointer, interior pointers included, for bounds checks made at run time
//! (a fortified `memcpy` asks it). An address in heap memory that no live allocation
//! holds (a freed slot, a slot never handed out) is a dangling or forged pointer: the
//! process stops, as at a bad `free`.
//!
//! The lookup goes page map → the record of the group whose mapping holds the page →
//! slot index by the stride, down into the nested group a slot hosts, then the slot's
//! user pointer, found as the heap walker finds it (at its start, or where the plain
//! redirect header there says), which is then validated as `free` validates it. Every record followed is checked as the decoder
//! checks one: a hint by its `mem` covering the address, a nested group's by its area's
//! secret and back link.

use core::sync::atomic::Ordering::Relaxed;

use crate::check::{check, crash, ok};
use crate::heap::Heap;
use crate::meta::{Group, Meta, storage, stride};
use crate::os::Os;
use crate::pagemap::{ABSENT, HEAP, entry};
use crate::slot::{nested_meta, validate};
use crate::walk::{InUse, user_pointer};

/// What a pointer the allocator does not manage gets: no bound known (hardened_malloc's
/// answer too).
pub const UNKNOWN: usize = usize::MAX;

impl<O: Os, L: crate::lock::RawLock> Heap<O, L> {
    /// The bytes from `q` to the end of the live allocation holding it: 0 for null, a
    /// `malloc(0)` pointer or one past the data; [`UNKNOWN`] for memory that is not the
    /// heap's groups' (not heap memory, donated ranges); a crash for heap memory no live
    /// allocation holds.
    ///
    /// # Safety
    /// No other thread frees the allocation holding `q` meanwhile.
    pub unsafe fn object_size(&self, q: *const u8) -> usize {
        if q.is_null() || self.is_zero_size(q.cast_mut()) {
            return 0;
        }
        let secret = self.secret();
        let mut m = entry(q.addr());
        if secret == 0 || m.addr() == ABSENT || m.addr() == HEAP {
            return UNKNOWN;
        }
        // SAFETY: `m` is a record the page map holds (meta areas are never unmapped); the
        // group memory read lies in the mapping the record says, which holds `q`'s page.
        unsafe {
            // a stale hint (its group gone, the page another's) knows nothing of `q`
            if !holds(m, q) {
                return UNKNOWN;
            }
            loop {
                let stride = stride(m);
                let base = storage((*m).mem);
                let idx = (q.addr() - base.addr()) / stride;
                check!(idx <= (*m).last_idx as usize);
                let free = (*m).avail_mask.load(Relaxed) | (*m).freed_mask.load(Relaxed);
                check!(free & 1u32 << idx == 0);
                // the walker's search, redirect target first and wholly validated: a
                // redirect's plain bits name their own slot as a keyed header by chance
                let p = match user_pointer(m, idx, secret) {
                    Ok(InUse::Host) => {
                        // a nested group at the slot's start: its record, checked
                        let start = base.wrapping_add(idx * stride);
                        m = ok(nested_meta(start.cast::<Group>(), secret));
                        check!(holds(m, q));
                        continue;
                    }
                    Ok(InUse::Block(p)) => p,
                    Err(_) => crash(),
                };
                let (_, n) = validate(p, secret);
                if q < p {
                    // the slot's slack or header: no object there
                    crash()
                }
                return (p.addr() + n).saturating_sub(q.addr());
            }
        }
    }
}

/// Whether the slots of the group of `m` span `q`.
///
/// # Safety
/// `m` is a record (live or not).
unsafe fn holds(m: *mut Meta, q: *const u8) -> bool {
    // SAFETY: the caller vouches for the record.
    unsafe {
        let mem = (*m).mem;
        if mem.is_null() {
            return false;
        }
        let base = storage(mem);
        let len = ((*m).last_idx as usize + 1) * stride(m);
        q >= base.cast_const() && q.addr() - base.addr() < len
    }
}
