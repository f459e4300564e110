//! The in-band slot header and the slot's tail, mallocng's layout drawn once.
//!
//! Every user pointer `p` is 16-aligned and preceded by 4 header bytes:
//!
//! ```text
//!   p-8        p-4     p-3                 p-2        p
//!   [big off ] [ flag ][ rsv:3 | idx:5    ][ off:16   ][ user bytes ... ][reserved][chk]
//!    u32 when                                                             ^end-rsv  ^end
//!    flag != 0
//! ```
//! - `off` is the distance from the group's storage to `p` in UNITs. When it does not fit
//!   16 bits (over-aligned allocations), `off == 0`, `flag == !canary(p-4)` and the 32-bit
//!   distance sits at `p-8`. Otherwise `flag` is a check byte: `canary(p-4)`.
//! - `idx` is the slot index in the group.
//! - `rsv` is the number of unused bytes at the end of the slot (0..=4), or one of the
//!   codes below. With [`RSV_EXT`] the count is a `u32` at `end-4` and `end[-5]` is zero.
//! - `end` is `start + stride - IB`: the last IB bytes of each stride belong to the next
//!   slot's header. The byte at `end` (the next header's flag byte) and the byte at
//!   `end - reserved` (the first byte after the data) hold their [`canary`]: an overflow
//!   that changes them, even by writing a NUL, is caught at free and realloc.
//!
//! Canaries are mallocng's zero check bytes made secret: a byte derived from the heap's
//! secret and the byte's own address, never 0 (what fresh memory and string overflows
//! write) and never 0xff. Knowing one does not give another.
//!
//! A slot whose user data starts at an offset inside it (offset cycling, alignment) keeps
//! a redirect header at its start: `rsv == 7` and `off` = distance to `p` in UNITs. A freed
//! header reads `idx|rsv == 0xff`, `off == 0`.

use core::sync::atomic::AtomicU8;
use core::sync::atomic::Ordering::Relaxed;

use crate::check::{Corrupt, check, ensure, ok};
use crate::config::{AREA, CLASS_MMAP, IB, NUM_CLASSES, UNIT, ZERO_ON_FREE};
use crate::meta::{Group, Meta, area_of, storage, stride};
use crate::pagemap::{contains, contains_area};

/// The size classes a meta record may carry, as a bit set: the real classes and the
/// mapped marker (one test instead of two in the decoder).
const REAL_CLASSES: u64 = ((1 << NUM_CLASSES) - 1) | (1 << CLASS_MMAP);
const _: () = assert!(NUM_CLASSES < 64 && CLASS_MMAP < 64);

/// `rsv` code: the reserved count is stored as a `u32` at `end - 4`.
pub const RSV_EXT: u8 = 5;
/// `rsv` code: the slot hosts a nested group.
pub const RSV_NESTED: u8 = 6;
/// `rsv` code: a slot-start header redirecting to user data at an offset.
pub const RSV_REDIRECT: u8 = 7;
/// `idx|rsv` byte of a freed header.
pub const FREED: u8 = 0xff;

/// The check byte expected at `addr`: 1..=254, from the secret and the address.
#[inline(always)]
pub fn canary(secret: u64, addr: usize) -> u8 {
    let h = (secret ^ addr as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // the hash scaled to 0..=253 by the high half of a widening multiply (a remainder
    // costs several times the instructions, and this runs up to eight times per malloc
    // and free), then 1..=254
    ((h as u128 * 254) >> 64) as u8 + 1
}

/// Read a check byte. The byte at a slot's end is also the next slot's header flag; with
/// thread caches the two slots' owners frame and check them at once with no lock between
/// them. Both write the same value (the canary of the byte's address), but only atomic
/// accesses make that defined; relaxed byte accesses are plain byte moves.
///
/// # Safety
/// `p` is readable.
#[inline(always)]
pub unsafe fn check_byte(p: *const u8) -> u8 {
    // SAFETY: the caller vouches for the byte; any byte may be accessed atomically.
    unsafe { AtomicU8::from_ptr(p.cast_mut()) }.load(Relaxed)
}

/// Write a check byte (see [`check_byte`]).
///
/// # Safety
/// `p` is writable.
#[inline(always)]
pub unsafe fn set_check_byte(p: *mut u8, v: u8) {
    // SAFETY: as check_byte.
    unsafe { AtomicU8::from_ptr(p) }.store(v, Relaxed)
}

// Header reads and writes. `p` is always 16-aligned, so these are aligned accesses; the
// callers vouch that `p - 8 .. p` lies in memory of the heap.

/// # Safety
/// `p - 4` is readable.
#[inline(always)]
pub unsafe fn flag(p: *const u8) -> u8 {
    // SAFETY: the caller vouches for the header bytes.
    unsafe { check_byte(p.wrapping_sub(4)) }
}
/// # Safety
/// `p - 3` is readable.
#[inline(always)]
pub unsafe fn idx_rsv(p: *const u8) -> u8 {
    // SAFETY: the caller vouches for the header bytes.
    unsafe { *p.wrapping_sub(3) }
}
/// # Safety
/// `p - 2 .. p` is readable.
#[inline(always)]
pub unsafe fn off16(p: *const u8) -> usize {
    // SAFETY: the caller vouches for the header bytes.
    unsafe { p.wrapping_sub(2).cast::<u16>().read_unaligned() as usize }
}
/// # Safety
/// `p - 4` is writable.
#[inline(always)]
pub unsafe fn set_flag(p: *mut u8, v: u8) {
    // SAFETY: the caller vouches for the header bytes.
    unsafe { set_check_byte(p.wrapping_sub(4), v) }
}
/// # Safety
/// `p - 3` is writable.
#[inline(always)]
pub unsafe fn set_idx_rsv(p: *mut u8, v: u8) {
    // SAFETY: the caller vouches for the header bytes.
    unsafe { *p.wrapping_sub(3) = v }
}
/// # Safety
/// `p - 2 .. p` is writable.
#[inline(always)]
pub unsafe fn set_off16(p: *mut u8, v: usize) {
    debug_assert!(v <= 0xffff);
    // SAFETY: the caller vouches for the header bytes.
    unsafe { p.wrapping_sub(2).cast::<u16>().write_unaligned(v as u16) }
}
/// # Safety
/// `p - 8 .. p - 4` is writable.
#[inline(always)]
pub unsafe fn set_big_off(p: *mut u8, v: u32) {
    // SAFETY: the caller vouches for the header bytes.
    unsafe { p.wrapping_sub(8).cast::<u32>().write_unaligned(v) }
}

/// Slot index recorded in the header of `p`.
///
/// # Safety
/// `p - 3` is readable.
#[inline(always)]
pub unsafe fn slot_index(p: *const u8) -> usize {
    // SAFETY: forwarded.
    (unsafe { idx_rsv(p) } & 31) as usize
}

/// mallocng `get_meta`: follow the header of `p` to its group and meta record and check
/// every link, without trusting anything the user could have written.
///
/// Reads only heap memory: the header is read only if its page is heap memory, and so is
/// every address derived from it (`pagemap`), so a forged header is rejected rather than
/// followed out of the heap.
///
/// # Safety
/// The heap memory the page map lists is mapped and readable.
#[inline(always)]
pub unsafe fn find_meta(p: *const u8, secret: u64) -> Result<*mut Meta, Corrupt> {
    // SAFETY: forwarded.
    Ok(unsafe { decode(p, secret) }?.0)
}

/// [`find_meta`] out of line, for the hosts of nested groups (cold paths: an inline copy
/// of the decoder is half a KiB of text, which every program maps).
///
/// # Safety
/// As [`find_meta`].
#[inline(never)]
pub unsafe fn find_host(p: *const u8, secret: u64) -> Result<*mut Meta, Corrupt> {
    // SAFETY: forwarded.
    unsafe { find_meta(p, secret) }
}

/// [`find_meta`], with the slot index it validated.
///
/// # Safety
/// As [`find_meta`].
#[inline(always)]
unsafe fn decode(p: *const u8, secret: u64) -> Result<(*mut Meta, usize), Corrupt> {
    ensure!(p.addr() & (UNIT - 1) == 0, Corrupt::Misaligned);
    ensure!(secret != 0, Corrupt::Uninitialised);
    // the header (the unit before `p`, one page) must be heap memory before it is read
    let hdr = p.addr().wrapping_sub(UNIT);
    ensure!(contains(hdr), Corrupt::Foreign);
    // SAFETY: the header is heap memory; every address derived from it is checked to be
    // heap memory before it is read, and what is read there is checked (secret first)
    // before it is trusted.
    unsafe {
        let mut offset = off16(p);
        let index = slot_index(p);
        let check = canary(secret, p.addr() - 4);
        let f = flag(p);
        if f != check {
            ensure!(f == !check, Corrupt::CheckByte);
            ensure!(offset == 0, Corrupt::Offset);
            offset = p.wrapping_sub(8).cast::<u32>().read_unaligned() as usize;
            ensure!(offset > 0xffff, Corrupt::Offset);
        }
        let base = p.wrapping_sub(UNIT * offset + UNIT).cast::<Group>();
        // a 16-byte group header lies in one page: the header's, already checked (most
        // small slots), or one to look up
        ensure!(
            (base.addr() ^ hdr) < AREA || contains(base.addr()),
            Corrupt::Foreign
        );
        let meta = (*base).meta;
        // a record lies whole in its area, on a record boundary past the area's header
        // (records and the header are 64 bytes, 64-aligned), and the area is heap memory
        let at = meta.addr() & (AREA - 1);
        ensure!(
            at & (size_of::<Meta>() - 1) == 0 && at != 0,
            Corrupt::GroupLink
        );
        let area = area_of(meta);
        ensure!(contains_area(area.addr()), Corrupt::Foreign);
        ensure!((*area).check == secret, Corrupt::Secret);
        ensure!((*meta).mem == base.cast_mut(), Corrupt::GroupLink);
        ensure!(index <= (*meta).last_idx as usize, Corrupt::Index);
        let bit = 1u32 << index;
        ensure!(
            ((*meta).avail_mask.load(Relaxed) | (*meta).freed_mask.load(Relaxed)) & bit == 0,
            Corrupt::DoubleFree
        );
        let sc = (*meta).sizeclass as usize;
        ensure!(sc < 64 && REAL_CLASSES >> sc & 1 != 0, Corrupt::Class);
        // the offset must lie in slot `index` (its stride: the class's, or a single-slot
        // mapping's whole mapping, which a reused mapping makes larger than the class)
        let units = (*meta).units as usize;
        ensure!(offset.wrapping_sub(units * index) < units, Corrupt::Bounds);
        // (`maplen == 0 || offset < maplen * AREA / UNIT`, in one comparison: with no
        // mapping the bound wraps to the largest value)
        let maplen = (*meta).maplen as usize;
        ensure!(
            offset <= (maplen * (AREA / UNIT)).wrapping_sub(1),
            Corrupt::Bounds
        );
        Ok((meta, index))
    }
}

/// The user pointer `p` resolved to its group: what free, realloc and the walker need.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    /// The meta record.
    pub meta: *mut Meta,
    /// Slot index.
    pub idx: usize,
    /// Slot stride.
    pub stride: usize,
    /// First byte of the slot.
    pub start: *mut u8,
    /// End of the slot's usable bytes (start of the next slot's header).
    pub end: *mut u8,
}

/// [`find_meta`] plus the slot's bounds, for a pointer a user may hold (never a slot that
/// hosts a nested group).
///
/// # Safety
/// As [`find_meta`].
#[inline(always)]
pub unsafe fn find_slot(p: *const u8, secret: u64) -> Result<Slot, Corrupt> {
    // SAFETY: forwarded; `meta` was validated by find_meta, the index with it; the byte
    // read lies before the slot's start, in its group.
    unsafe {
        let (meta, idx) = decode(p, secret)?;
        let s = slot_at(meta, idx);
        // A slot hosting a nested group is in use, and a pointer into the nested group's
        // slots lies inside it: a forged header could name the host slot and have it freed
        // from under the nested group. No user pointer resolves to a host slot.
        ensure!(idx_rsv(s.start) >> 5 != RSV_NESTED, Corrupt::Index);
        Ok(s)
    }
}

/// The bounds of slot `idx` of the validated record `meta` (for a slot whose header has
/// been rewritten, such as a nested group's host).
///
/// # Safety
/// `meta` is a live meta record.
pub unsafe fn slot_bounds(meta: *mut Meta, idx: usize) -> Result<Slot, Corrupt> {
    // SAFETY: forwarded.
    unsafe {
        ensure!(idx <= (*meta).last_idx as usize, Corrupt::Index);
        Ok(slot_at(meta, idx))
    }
}

/// Slot `idx` of the live record `meta`, `idx <= last_idx` already checked.
///
/// # Safety
/// As stated.
#[inline(always)]
unsafe fn slot_at(meta: *mut Meta, idx: usize) -> Slot {
    // SAFETY: the caller vouches for `meta`.
    unsafe {
        let stride = stride(meta);
        let start = storage((*meta).mem).wrapping_add(stride * idx);
        Slot {
            meta,
            idx,
            stride,
            start,
            end: start.wrapping_add(stride - IB),
        }
    }
}

/// mallocng `get_nominal_size`: the size the user asked for, checking the reserved count
/// and both check bytes.
///
/// # Safety
/// `p` and `end` come from a validated [`Slot`].
#[inline(always)]
pub unsafe fn nominal_size(p: *const u8, end: *const u8, secret: u64) -> Result<usize, Corrupt> {
    // SAFETY: the bytes read lie between the header of `p` and `end`, inside the slot, or
    // are the byte at `end`, the next header's flag byte, which is in the group too.
    unsafe {
        let mut reserved = (idx_rsv(p) >> 5) as usize;
        if reserved >= RSV_EXT as usize {
            ensure!(reserved == RSV_EXT as usize, Corrupt::Reserved);
            reserved = end.wrapping_sub(4).cast::<u32>().read_unaligned() as usize;
            ensure!(reserved >= RSV_EXT as usize, Corrupt::Reserved);
            let at = end.wrapping_sub(5);
            ensure!(
                check_byte(at) == canary(secret, at.addr()),
                Corrupt::CheckByte
            );
        }
        let room = end.addr() - p.addr();
        ensure!(reserved <= room, Corrupt::Reserved);
        let at = end.wrapping_sub(reserved);
        ensure!(
            check_byte(at) == canary(secret, at.addr()),
            Corrupt::CheckByte
        );
        ensure!(
            check_byte(end) == canary(secret, end.addr()),
            Corrupt::CheckByte
        );
        Ok(room - reserved)
    }
}

/// [`find_slot`] and [`nominal_size`], crashing on a failed check: the validation of the
/// paths off the thread cache's (the locked free, `realloc`, `malloc_usable_size`,
/// `aligned_alloc`), out of line, so that the text holds one copy of the decoder for all
/// of them (a static program maps all of it).
///
/// # Safety
/// As [`find_meta`].
#[inline(never)]
pub unsafe fn validate(p: *const u8, secret: u64) -> (Slot, usize) {
    // SAFETY: forwarded.
    unsafe {
        let s = ok(find_slot(p, secret));
        (s, ok(nominal_size(p, s.end, secret)))
    }
}

/// mallocng `set_size`: record that `n` bytes from `p` are in use, the rest of the slot up
/// to `end` reserved.
///
/// # Safety
/// `p .. end` lies in one slot, `p`'s header is writable, and `n <= end - p`.
#[inline(always)]
pub unsafe fn set_size(p: *mut u8, end: *mut u8, n: usize, secret: u64) {
    let mut reserved = end.addr() - p.addr() - n;
    // SAFETY: every byte written lies in `p - 3 ..= end`, which the caller vouches for.
    unsafe {
        // the first byte after the data (the next slot's flag when nothing is reserved)
        let at = end.wrapping_sub(reserved);
        set_check_byte(at, canary(secret, at.addr()));
        if reserved >= RSV_EXT as usize {
            debug_assert!(reserved <= u32::MAX as usize);
            end.wrapping_sub(4)
                .cast::<u32>()
                .write_unaligned(reserved as u32);
            let at = end.wrapping_sub(5);
            set_check_byte(at, canary(secret, at.addr()));
            reserved = RSV_EXT as usize;
        }
        set_idx_rsv(p, (idx_rsv(p) & 31) | ((reserved as u8) << 5));
    }
}

/// mallocng `enframe`: lay out slot `idx` of `g` for an `n`-byte allocation and return the
/// user pointer. The start offset cycles on every reuse of the slot (increasing the interval
/// before an address is reused, and making a stale pointer to a reused slot fail its header
/// check); a fresh slot starts from `ctr`.
///
/// # Safety
/// `g` is live, slot `idx` was just taken from its `avail_mask`, `n + IB <= stride`.
pub unsafe fn enframe(g: *mut Meta, idx: usize, n: usize, ctr: u32, secret: u64) -> *mut u8 {
    // SAFETY: forwarded.
    unsafe { enframe_inline(g, idx, n, ctr, secret) }
}

/// [`enframe`], inlined: for the thread cache's `malloc`, where the call and its register
/// saves were a tenth of the cost.
///
/// # Safety
/// As [`enframe`].
#[inline(always)]
pub unsafe fn enframe_inline(g: *mut Meta, idx: usize, n: usize, ctr: u32, secret: u64) -> *mut u8 {
    // SAFETY: the slot is ours; every byte written lies in its header or body, or is the
    // check byte at `end` (the next slot's header flag, which must read zero anyway).
    unsafe {
        let stride = stride(g);
        let slack = (stride - IB - n) / UNIT;
        let base = storage((*g).mem);
        let mut p = base.wrapping_add(stride * idx);
        let end = p.wrapping_add(stride - IB);
        if ZERO_ON_FREE && (*g).sizeclass != CLASS_MMAP {
            // as free left it: all zero, or something wrote through a dangling pointer
            check!(all_zero(p, stride - IB));
        }
        let mut off = if idx_rsv(p) != 0 {
            off16(p) + 1
        } else {
            ctr as usize
        } & 255;
        // the previous slot's overflow check: its end byte (our flag) is untouched or its
        // canary; make it the canary either way.
        let check = canary(secret, p.addr() - 4);
        let f = flag(p);
        check!(f == 0 || f == check);
        set_flag(p, check);
        if (*g).sizeclass == CLASS_MMAP {
            // an individually mapped block ends right before its guard: data as far up as
            // the slot allows, so an overflow reaches the guard within a few bytes.
            off = slack;
        } else if off > slack {
            let mut m = slack;
            m |= m >> 1;
            m |= m >> 2;
            m |= m >> 4;
            off &= m;
            if off > slack {
                off -= slack + 1;
            }
            debug_assert!(off <= slack);
        }
        if off != 0 {
            // keep the offset in the slot-start header, then frame the data further in;
            // with a nonzero offset there is no permanent check byte, so make one.
            set_off16(p, off);
            set_idx_rsv(p, RSV_REDIRECT << 5);
            p = p.wrapping_add(UNIT * off);
            set_flag(p, canary(secret, p.addr() - 4));
        }
        set_off16(p, (p.addr() - base.addr()) / UNIT);
        set_idx_rsv(p, idx as u8);
        set_check_byte(end, canary(secret, end.addr()));
        set_size(p, end, n, secret);
        p
    }
}

/// Mark the header of `p` freed: the slot index is invalid and the offset to the group
/// is gone, so a second free or a stale pointer fails [`find_meta`].
///
/// # Safety
/// `p`'s header is writable.
#[inline(always)]
pub unsafe fn mark_freed(p: *mut u8) {
    // SAFETY: forwarded.
    unsafe {
        set_idx_rsv(p, FREED);
        set_off16(p, 0);
    }
}

/// What every free does to a validated allocation before its slot goes anywhere (group,
/// quarantine, thread cache): mark the header freed and, with zero-on-free, wipe the slot
/// (and a header inside it), which is checked when the slot is handed out again.
///
/// # Safety
/// `s` is the validated slot of the live allocation `p`.
#[inline(always)]
pub unsafe fn retire(p: *mut u8, s: &Slot) {
    // SAFETY: the slot is the caller's; the wipe stays inside it.
    unsafe {
        mark_freed(p);
        if ZERO_ON_FREE && (*s.meta).sizeclass != CLASS_MMAP {
            s.start.write_bytes(0, s.end.addr() - s.start.addr());
        }
    }
}

/// Whether the `len` bytes at `p` are all zero.
///
/// # Safety
/// The bytes are readable.
pub unsafe fn all_zero(p: *const u8, len: usize) -> bool {
    let words = len / 8;
    // SAFETY: every read lies in `p .. p + len`.
    unsafe {
        let word = |i: usize| p.wrapping_add(i * 8).cast::<u64>().read_unaligned();
        let mut acc = 0u64;
        // eight words a step: at opt-level "s" LLVM neither unrolls nor vectorises the loop,
        // and a word a step cost zero-on-free four instructions a word
        let mut i = 0;
        while i + 8 <= words {
            acc |= word(i)
                | word(i + 1)
                | word(i + 2)
                | word(i + 3)
                | word(i + 4)
                | word(i + 5)
                | word(i + 6)
                | word(i + 7);
            i += 8;
        }
        for i in i..words {
            acc |= word(i);
        }
        for i in words * 8..len {
            acc |= *p.wrapping_add(i) as u64;
        }
        acc == 0
    }
}

#[cfg(test)]
mod tests {
    use super::{AREA, CLASS_MMAP, NUM_CLASSES, REAL_CLASSES, UNIT, canary};

    /// The decoder's one-comparison forms of the class and mapping-bound checks accept
    /// exactly what the two-comparison forms (mallocng's) accept.
    #[test]
    fn the_decoders_folded_checks_match_their_plain_forms() {
        for sc in 0..=u8::MAX as usize {
            let plain = sc < NUM_CLASSES || sc == CLASS_MMAP as usize;
            let folded = sc < 64 && REAL_CLASSES >> sc & 1 != 0;
            assert_eq!(plain, folded, "class {sc}");
        }
        for maplen in [0usize, 1, 2, 3, 31, 4096, u32::MAX as usize] {
            for offset in [
                0usize,
                1,
                255,
                256,
                257,
                511,
                512,
                0xffff,
                1 << 20,
                u32::MAX as usize,
            ] {
                let plain = maplen == 0 || offset < maplen * AREA / UNIT;
                let folded = offset <= (maplen * (AREA / UNIT)).wrapping_sub(1);
                assert_eq!(plain, folded, "maplen {maplen}, offset {offset}");
            }
        }
    }

    /// Canaries are never 0 (what fresh memory and string overflows write) nor 0xff, and
    /// take every other value.
    #[test]
    fn canaries_are_1_to_254_and_take_every_value() {
        let mut seen = [false; 256];
        let mut x = 0x1234_5678_9abc_def0u64;
        for i in 0..200_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let c = canary(x | 1, i * 16 + 12);
            assert!((1..=254).contains(&c), "canary {c}");
            seen[c as usize] = true;
        }
        assert_eq!(seen.iter().filter(|&&s| s).count(), 254);
    }
}
