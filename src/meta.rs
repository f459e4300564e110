//! The out-of-band records: group header, meta record, meta area, and the slot-mask algebra.
//!
//! ```text
//! group (16-aligned)            meta area (4 KiB, page-aligned, in a PROT_NONE-guarded run)
//! +0  meta ----------------+    +0   check   = heap secret (validates every meta in the page)
//! +8  active_idx (u8)      |    +8   next    -> next area
//! +9  pad                  |    +16  nslots
//! +12 slot 0 header (IB)   +--> +64  Meta[63] (64 bytes each: one cache line)
//! +16 slot 0 ... slot n         
//! ```
//!
//! Mask invariants of a live meta `m` with `all = low_mask(m.last_idx)`:
//! - `avail_mask & freed_mask == 0` and `(avail_mask | freed_mask) ⊆ all`;
//! - a slot is *in use* iff its bit is in `all & !(avail_mask | freed_mask)`;
//! - `avail_mask ⊆ low_mask(group.active_idx)`;
//! - `clean_mask ⊆ freed_mask` (released slots are free) and `swept_mask ⊆ all`;
//! - `hosts ⊆ all & !(avail_mask | freed_mask)`: a slot hosting a nested group is in use.
//!
//! A group is *owned* (`owner` non-null: a thread cache's, `tcache.rs`) or the heap's:
//! - the heap's: `avail_mask != 0` only for the head of its class's active list (only the
//!   head hands out slots); `freed_mask != 0` or `avail_mask != 0` ⟹ `m` is on its class's
//!   active list, unless it is a single-slot group (those are freed, never listed).
//!   `avail_mask` changes only under the heap lock; `freed_mask` may gain bits without the
//!   lock (the free fast path) and loses them only under it, by `activate_group`;
//! - owned: on its owner's list of its class (or its list of groups to retire), never on
//!   the heap's; `group.active_idx == last_idx`. `avail_mask` changes only by its owner
//!   (or under the lock when ownership changes); `freed_mask` gains bits from any other
//!   thread without the lock, and loses them only to the owner's `collect`. Its
//!   `clean_mask` may keep the bit of a slot handed out since it was released; only
//!   `clean_mask & swept_mask` is released memory (the owner's free clears the slot's
//!   swept bit).
//!
//! Shape invariant: `units * UNIT == maplen * AREA - UNIT` if `last_idx == 0 && maplen != 0`
//! (a single-slot mapping), else `units * UNIT == class_size(sizeclass)`.

use core::sync::atomic::Ordering::Relaxed;
use core::sync::atomic::{AtomicPtr, AtomicU32};

use crate::check::check;
use crate::config::{AREA, UNIT};
use crate::size_class::SIZE_CLASSES;
use crate::tcache::ThreadCache;

/// Header of a group's memory. Slot 0's in-band header overlaps bytes 12..16.
#[repr(C)]
pub struct Group {
    /// Back-pointer to the group's meta record (null once the group is torn down).
    pub meta: *mut Meta,
    /// Slots `0..=active_idx` have been handed to `avail_mask` at least once.
    pub active_idx: u8,
    _pad: [u8; 7],
}

const _: () = assert!(core::mem::size_of::<Group>() == UNIT);
const _: () = assert!(core::mem::offset_of!(Group, active_idx) < UNIT - crate::config::IB);

/// First byte of slot 0 of the group at `g`.
#[inline(always)]
pub fn storage(g: *mut Group) -> *mut u8 {
    g.cast::<u8>().wrapping_add(UNIT)
}

/// Out-of-band record of one group. One cache line: a record never shares a line with
/// another group's (remote frees write `freed_mask` from other threads), and the decoder
/// checks a record's place in its area with a mask instead of a division.
#[repr(C, align(64))]
pub struct Meta {
    /// Previous record in the class's circular active list (null when unlisted).
    pub prev: *mut Meta,
    /// Next record in the class's circular active list (null when unlisted).
    pub next: *mut Meta,
    /// The group's memory (null for a free record).
    pub mem: *mut Group,
    /// Slots ready to hand out now.
    pub avail_mask: AtomicU32,
    /// Slots freed and not yet reactivated.
    pub freed_mask: AtomicU32,
    /// Index of the last slot: the group has `last_idx + 1` slots.
    pub last_idx: u8,
    /// Zero for donated memory, which is never unmapped.
    pub freeable: u8,
    /// Size class, or [`crate::config::CLASS_MMAP`] for an individually mapped allocation.
    pub sizeclass: u8,
    /// Two uses, by the group's stride (neither needs the other's):
    /// - up to [`crate::slot::MARKED_STRIDE`] (`harden-freed-word`): how many of its first slots have been
    ///   handed out since the group was made, see [`hand_out`]. Slots are taken lowest
    ///   first, so those form a prefix; a freed one carries the freed word
    ///   (`slot::retire`), checked when it is handed out again. Written by whoever takes
    ///   slots: the owner, or the lock holder for the heap's groups;
    /// - beyond: for a group of one slot, nonzero while its slot is memory fresh from
    ///   `mmap` (reads as zero), see [`is_zeroed`] (a smaller slot is cleared by calloc).
    pub zeroed_or_used: u8,
    /// Length of the group's own mapping in 4 KiB units; 0 when nested in another slot.
    pub maplen: u32,
    /// Free slots whose whole pages were given back to the kernel. For an individually
    /// mapped allocation ([`crate::config::CLASS_MMAP`]): the guard before `mem`, in 4 KiB
    /// units (see [`large_guards`]).
    pub clean_mask: u32,
    /// Slots that were free when the release sweep last looked at this group. For an
    /// individually mapped allocation: bit 0 set if its guards are PROT_NONE sub-mappings
    /// (3 VMAs, which `mremap` cannot move), clear for `MADV_GUARD_INSTALL` markers (one
    /// VMA); the other bits the guard after the data, in 4 KiB units.
    pub swept_mask: u32,
    /// The slot stride in UNITs, `stride(m) / UNIT`: what the decoder's bounds check and
    /// `enframe` need on every call, kept here so they read one field instead of
    /// deriving it from `last_idx`, `maplen` and the class table. Set by [`set_shape`].
    pub units: u32,
    /// Slots that host a nested group (in use for this group; no user pointer resolves to
    /// them). Changed under the heap lock, read by the decoder without it.
    pub hosts: AtomicU32,
    /// The thread cache that owns the group (`tcache.rs`), or null: an owned group is on
    /// its owner's list of its class, never on the heap's, and only the owner takes its
    /// slots or changes `avail_mask`. Set when the group is made for a cache or taken
    /// from the heap's lists (`State::adopt`), and cleared, under the lock, when it is
    /// retired empty or its owner exits (`State::disown`).
    pub owner: AtomicPtr<ThreadCache>,
}

const _: () = assert!(core::mem::size_of::<Meta>() == 64);

/// A 4 KiB page of meta records tagged with the heap's secret. The header takes a whole
/// record's place, so records start at multiples of 64 bytes.
#[repr(C, align(64))]
pub struct MetaArea {
    /// The heap's secret: a meta pointer is trusted only if its page starts with it.
    pub check: u64,
    /// Next area in allocation order.
    pub next: *mut MetaArea,
    /// Number of records in this area.
    pub nslots: usize,
}

/// Records per meta area.
pub const AREA_SLOTS: usize =
    (AREA - core::mem::size_of::<MetaArea>()) / core::mem::size_of::<Meta>();
const _: () =
    assert!(core::mem::size_of::<MetaArea>().is_multiple_of(core::mem::align_of::<Meta>()));
const _: () = assert!(size_of::<MetaArea>() == size_of::<Meta>() && AREA_SLOTS == 63);

/// First record of the area at `a`.
#[inline(always)]
pub fn area_slots(a: *mut MetaArea) -> *mut Meta {
    a.wrapping_add(1).cast::<Meta>()
}

/// The area a meta record lives in.
#[inline(always)]
pub fn area_of(m: *const Meta) -> *const MetaArea {
    m.map_addr(|a| a & !(AREA - 1)).cast::<MetaArea>()
}

/// Bits `0..=i` set (`i < 32`): mallocng's `(2u << i) - 1`, without the shift overflow.
#[inline(always)]
pub const fn low_mask(i: usize) -> u32 {
    u32::MAX >> (31 - i)
}

/// Distance between slots of `m` (mallocng `get_stride`), from [`Meta::units`].
///
/// # Safety
/// `m` points to a live meta record.
#[inline(always)]
pub unsafe fn stride(m: *const Meta) -> usize {
    // SAFETY: the caller vouches for `m`.
    unsafe { (*m).units as usize * UNIT }
}

/// The stride a group's shape gives (mallocng `get_stride`): a single-slot mapping spans
/// its whole mapping, every other group its class size; `None` for a class with no size.
#[inline]
pub fn shape_stride(last_idx: usize, sc: u8, maplen: u32) -> Option<usize> {
    if last_idx == 0 && maplen != 0 {
        Some(maplen as usize * AREA - UNIT)
    } else {
        SIZE_CLASSES.get(sc as usize).map(|&u| u as usize * UNIT)
    }
}

/// Set the fields that fix a group's stride and keep [`Meta::units`] in step
/// ([`shape_stride`]).
///
/// # Safety
/// `m` points to a record the caller may write; the shape has a stride.
#[inline]
pub unsafe fn set_shape(m: *mut Meta, last_idx: usize, sc: u8, maplen: u32) {
    let stride = shape_stride(last_idx, sc, maplen);
    debug_assert!(stride.is_some());
    // SAFETY: the caller vouches for `m`.
    unsafe {
        (*m).last_idx = last_idx as u8;
        (*m).sizeclass = sc;
        (*m).maplen = maplen;
        (*m).units = (stride.unwrap_or(0) / UNIT) as u32;
    }
}

/// Whether `m` is a nested group (its memory a slot of a larger group): it has no mapping
/// of its own, and is not donated memory, which has none either.
///
/// # Safety
/// `m` is a live record.
#[inline]
pub unsafe fn nested(m: *const Meta) -> bool {
    // SAFETY: the caller vouches for `m`.
    unsafe { (*m).maplen == 0 && (*m).freeable != 0 }
}

/// mallocng `activate_group`: move the freed slots inside the active range to `avail_mask`
/// and return them. The slots leave the freed set to be written soon, so they are no longer
/// cold nor released.
///
/// # Safety
/// `m` is live, its `avail_mask` is empty, and the heap lock is held.
pub unsafe fn activate_group(m: *mut Meta) -> u32 {
    // SAFETY: the caller vouches for `m` and holds the lock, so the plain fields are ours.
    unsafe {
        check!((*m).avail_mask.load(Relaxed) == 0);
        let act = low_mask((*(*m).mem).active_idx as usize);
        let mask = crate::masks::activate(&(*m).freed_mask, &(*m).avail_mask, act);
        (*m).clean_mask &= !mask;
        (*m).swept_mask &= !mask;
        mask
    }
}

/// The guards of an individually mapped allocation: (bytes before `mem`, bytes after the
/// data, whether they are PROT_NONE sub-mappings). Guards can be longer than the configured
/// size: a block reused from a larger cached one keeps the surplus as guard, and a block
/// shrunk in place turns its tail into guard, so neither leaves a hole in the address
/// space.
///
/// # Safety
/// `m` is a live record of an individually mapped allocation.
#[inline]
pub unsafe fn large_guards(m: *const Meta) -> (usize, usize, bool) {
    // SAFETY: the caller vouches for `m`.
    let (lead, s) = unsafe { ((*m).clean_mask, (*m).swept_mask) };
    (lead as usize * AREA, (s >> 1) as usize * AREA, s & 1 != 0)
}

/// A slot of `m` is being freed: its memory is no longer fresh, so calloc must not take
/// the group's all-zero mark for it. Only a large slot's mark is read (a group of one,
/// whose slot is the caller's) and written only when set: a group of small slots keeps
/// its count of slots handed out in that byte, which their taker writes while others
/// free.
///
/// # Safety
/// `m` is live and the caller frees one of its slots.
#[inline(always)]
pub unsafe fn clear_zeroed(m: *mut Meta) {
    // SAFETY: the caller vouches for `m`; see above for who else touches the field.
    unsafe {
        if (crate::slot::MARKED_STRIDE == 0 || stride(m) > crate::slot::MARKED_STRIDE)
            && (*m).zeroed_or_used != 0
        {
            (*m).zeroed_or_used = 0;
        }
    }
}

/// Whether the only slot of `m` is memory fresh from `mmap` (calloc need not clear it).
///
/// # Safety
/// `m` is live and the caller holds one of its slots.
#[inline(always)]
pub unsafe fn is_zeroed(m: *mut Meta) -> bool {
    // SAFETY: the caller vouches for `m`.
    unsafe {
        (crate::slot::MARKED_STRIDE == 0 || stride(m) > crate::slot::MARKED_STRIDE)
            && (*m).zeroed_or_used != 0
    }
}

/// Slot `idx` of `m` (of small slots) is being handed out: whether it was before (then
/// it is free after a use, and carries the freed word), counting it if not.
///
/// # Safety
/// `m` is live, of small slots, and the caller takes its slots (its owner, or the lock
/// holder for a heap group); slots are taken lowest first.
#[inline(always)]
pub unsafe fn hand_out(m: *mut Meta, idx: usize) -> bool {
    // SAFETY: the caller's contract.
    unsafe {
        let used = (*m).zeroed_or_used as usize;
        if idx < used {
            return true;
        }
        debug_assert_eq!(idx, used, "slots are taken lowest first");
        (*m).zeroed_or_used = idx as u8 + 1;
        false
    }
}

/// Record the guards of an individually mapped allocation (see [`large_guards`]).
///
/// # Safety
/// `m` is a live record of an individually mapped allocation; the lengths are multiples of
/// 4 KiB.
#[inline]
pub unsafe fn set_large_guards(m: *mut Meta, lead: usize, trail: usize, protnone: bool) {
    // SAFETY: the caller vouches for `m`.
    unsafe {
        (*m).clean_mask = (lead / AREA) as u32;
        (*m).swept_mask = ((trail / AREA) as u32) << 1 | protnone as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(low_mask(0), 1);
        assert_eq!(low_mask(4), 0b11111);
        assert_eq!(low_mask(31), u32::MAX);
        for i in 0..32 {
            assert_eq!(low_mask(i).count_ones() as usize, i + 1);
            assert_eq!(low_mask(i) as u64, (2u64 << i) - 1);
        }
        assert_eq!(AREA_SLOTS, 63);
    }
}
