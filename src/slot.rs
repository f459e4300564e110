//! The in-band slot header and the slot's tail, mallocng's layout drawn once, with its
//! fields keyed by the heap's secret.
//!
//! Every user pointer `p` is 16-aligned and preceded by 4 header bytes:
//!
//! ```text
//!   p-8          p-4       p-3                p-2          p
//!   [big off ^ w][ (prev) ][ idx:5 | rsv:3    ][ off:16     ][ user bytes ... ][rsv bytes]
//!    u32, only    not ours  `------- 24 bits XOR key.info --'                  ^p+n: up to 8
//!    when off is                                                                 check bytes
//!    OFF_BIG
//! ```
//! - `off` is the distance from the group's storage to `p` in UNITs. When it does not fit
//!   16 bits (over-aligned allocations), `off == OFF_BIG` and the 32-bit distance, XORed
//!   with `Key::word`, sits at `p-8` (inside the slot: such a `p` lies deep in it).
//! - `idx` is the slot index in the group.
//! - `rsv` is the number of unused bytes at the end of the slot (0..=4), or one of the
//!   codes below. With [`RSV_EXT`] the count, XORed with `Key::word`, is a `u32` at
//!   `end-4`.
//! - `end` is `start + stride - IB`: the last IB bytes of each stride belong to the next
//!   slot's header.
//! - The three bytes `p-3 .. p` hold the 24 bits `idx | rsv << 5 | off << 8` XORed with
//!   `Key::info`, a key derived from the heap's secret and `p` itself: a header cannot be
//!   forged, nor moved to another address, without the secret; a stray write into it
//!   (an underflow, a dangling pointer) makes it decode to fields that do not match the
//!   group, and the free crashes.
//! - The bytes from `p+n`, the first after the data, are *check bytes*: up to 8, as far as
//!   the slot has room ([`window`]: up to `end` included, or up to an extended count),
//!   each an odd byte from [`Key::tail`] of `p`: never 0 (what fresh memory and string
//!   overflows write). With no reserved bytes the one check byte is the
//!   byte at `end`, the first byte of the next slot's header, which that slot never reads
//!   nor writes (its header is `p-3 .. p`): the byte `p-4` before every header belongs to
//!   whatever precedes it. An overflow that changes one, even by writing a NUL, even past
//!   the first byte after the data, is caught at free and realloc.
//!
//! One hash of the secret and `p` gives every key a call needs ([`Key::of`]): `malloc`
//! computes it once to write the header and the check bytes, `free` once to read them.
//!
//! A slot whose user data starts at an offset inside it (offset cycling, alignment) keeps
//! a redirect header at its start, in plain: `rsv == RSV_REDIRECT`, `idx == 0`, `off` =
//! distance to `p` in UNITs (`OFF_BIG`, and the distance in the slot's first 4 bytes, if it
//! does not fit). It is what the walker follows; a stale pointer to the slot's start
//! decodes it, keyed, to garbage. A freed header holds the
//! 24 bits [`FREED`], keyed.

use core::sync::atomic::Ordering::Relaxed;

use crate::check::{Corrupt, check, ensure, ok};
use crate::config::{
    AREA, CANARY_ROOM, CLASS_MMAP, FREED_WORD, IB, RANDOM_SLOTS, STRING_END, UNIT, ZERO_ON_FREE,
};
use crate::meta::{Group, Meta, area_of, hand_out, storage, stride};
use crate::pagemap::{ABSENT, HEAP, contains, contains_area, entry, entry_live};

/// `rsv` code: the reserved count is stored as a keyed `u32` at `end - 4`.
pub const RSV_EXT: u8 = 5;
/// `rsv` code: the slot hosts a nested group.
pub const RSV_NESTED: u8 = 6;
/// `rsv` code: a slot-start header redirecting to user data at an offset.
pub const RSV_REDIRECT: u8 = 7;
/// The 24 header bits of a freed slot (before keying): `rsv == RSV_REDIRECT`, which no
/// user pointer's header has.
pub const FREED: u32 = 0xff_ffff;
/// `off` value saying the offset is a 32-bit word at `p - 8`.
const OFF_BIG: usize = 0xffff;

/// Multiplier of the frame hash (2^64 over the golden ratio, odd).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// The keys of the header and check byte of the user pointer `p`, from one hash of the
/// heap's secret and `p`: a multiply folded to 64 bits (its high and low halves XORed, so
/// every bit depends on every bit of the secret and the address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(u64);

impl Key {
    /// The keys of the frame at `p`.
    #[inline(always)]
    pub fn of(secret: u64, p: *const u8) -> Key {
        let m = (secret ^ p.addr() as u64) as u128 * K as u128;
        Key(m as u64 ^ (m >> 64) as u64)
    }

    /// XOR key of the header's 24 bits.
    #[inline(always)]
    fn info(self) -> u32 {
        (self.0 >> 40) as u32
    }

    /// The check bytes after the data, as the word [`window`] compares: eight odd bytes
    /// (never 0, what fresh memory and string overflows write), 7 bits of the key
    /// apiece, so that each byte is a separate guess.
    #[inline(always)]
    fn tail(self) -> u64 {
        self.0 | 0x0101_0101_0101_0101
    }

    /// XOR key of the 32-bit words a header points to (an extended reserved count, a big
    /// offset).
    #[inline(always)]
    fn word(self) -> u32 {
        self.0 as u32
    }
}

/// The word the first 8 bytes of a freed small block hold ([`retire`]): one per heap, a
/// hash of its secret that does not give the secret away (a program can read it back
/// through a dangling pointer). The thread caches keep a copy.
#[inline]
pub fn freed_word(secret: u64) -> u64 {
    // (never 0, what a slot's first bytes hold before a block past its start)
    Key::of(secret, core::ptr::without_provenance(0x6a09_e667_f3bc_c908)).0 | 1
}

/// The check byte of an allocation at `p` whose data ends `reserved` bytes before its
/// slot's end (what the byte after its data holds).
pub fn canary(secret: u64, p: *const u8, reserved: usize) -> u8 {
    let (_, below) = window(core::ptr::null_mut(), reserved);
    (pattern(Key::of(secret, p), below, STRING_END) >> (8 * below)) as u8
}

/// Where the check bytes after the data lie, as the 8-byte word at `at` whose bytes from
/// `below` on they are (the bytes [`CHECKED`]`[below]` covers): from `end - reserved`
/// (the first byte after the data) up to 8 bytes, as far as the slot has room: with a
/// reserved count in the header (0..=4) up to `end` included; with an extended count, up
/// to the count's word at `end - 4`.
///
/// With reserved bytes, an overflow of a few bytes that skips the first byte after the
/// data (a write at an index past the end) lands on another check byte.
///
/// Invariant: `at + below == end - reserved`, `below <= 7`, and `at >= p` for the user
/// pointer `p` of the slot (`p` is 16-aligned and `end` 12 past a multiple of 16, so the
/// data starts 12 bytes before `end` at least), so the word lies between the header of
/// `p` and `end` included.
#[inline(always)]
fn window(end: *mut u8, reserved: usize) -> (*mut u8, usize) {
    // the word ends at `end` included (7 bytes before it), or at the extended count's
    // word (12): `below` bytes of it lie below the check bytes, none if there is room for 8
    let ends = if reserved < RSV_EXT as usize { 7 } else { 12 };
    let below = ends - reserved.min(ends);
    (end.wrapping_sub(reserved).wrapping_sub(below), below & 7)
}

/// The bytes of a window's word from `b` on: its check bytes when `b` bytes of it lie
/// below them. A load with the compare (a shift by a computed count is two more
/// instructions on each side).
static CHECKED: [u64; 8] = {
    let mut t = [0u64; 8];
    let mut b = 0;
    while b < 8 {
        t[b] = !0 << (8 * b);
        b += 1;
    }
    t
};

/// Whether the check bytes after data that ends `reserved` bytes before `end` hold what
/// `key` says.
///
/// # Safety
/// `end` is the end of a slot, `reserved` at most its room.
#[inline(always)]
unsafe fn tail_intact(end: *mut u8, reserved: usize, key: Key, strings: bool) -> bool {
    let (at, below) = window(end, reserved);
    // SAFETY: the word lies in the slot (`window`).
    (unsafe { load_tail(at) } ^ pattern(key, below, strings)) & CHECKED[below] == 0
}

/// The word of check bytes whose first is byte `below`: [`Key::tail`], with a 0 as the
/// first if `strings` ([`ends_strings`]).
#[inline(always)]
fn pattern(key: Key, below: usize, strings: bool) -> u64 {
    if strings {
        key.tail() & !(0xff << (8 * below))
    } else {
        key.tail()
    }
}

/// Whether the byte after the data of the blocks of `m` is 0 (`harden-string-end`): in
/// slots of a size class only. An individually mapped block keeps a check byte there, so
/// that a NUL written one past its end is still caught (a string read past its end runs
/// into its guard within 16 bytes: a fault, not a leak).
///
/// # Safety
/// `m` is a live record.
#[inline(always)]
pub unsafe fn ends_strings(m: *mut Meta) -> bool {
    // SAFETY: the caller vouches for `m`.
    STRING_END && unsafe { (*m).sizeclass } != CLASS_MMAP
}

/// Write the check bytes after data that ends `reserved` bytes before `end`. Below them,
/// in their word, the data is kept with `KEEP` (a live allocation framed anew); else (a
/// fresh allocation, its bytes uninitialised) it is zeroed, one store: fresh memory reads
/// as zero, as calloc counts on and a read of uninitialised memory then sees.
///
/// # Safety
/// As [`tail_intact`], and the bytes writable.
#[inline(always)]
unsafe fn set_tail<const KEEP: bool>(end: *mut u8, reserved: usize, key: Key, strings: bool) {
    let (at, below) = window(end, reserved);
    let mask = CHECKED[below];
    // SAFETY: as tail_intact.
    unsafe {
        let w = if KEEP { load_tail(at) & !mask } else { 0 };
        store_tail(at, w | pattern(key, below, strings) & mask);
    }
}

/// The 8-byte word at `at` in memory order (its first byte the least significant).
///
/// # Safety
/// `at .. at + 8` is readable.
#[inline(always)]
unsafe fn load_tail(at: *const u8) -> u64 {
    // SAFETY: forwarded.
    u64::from_le(unsafe { at.cast::<u64>().read_unaligned() })
}

/// Store [`load_tail`]'s word.
///
/// # Safety
/// `at .. at + 8` is writable.
#[inline(always)]
unsafe fn store_tail(at: *mut u8, w: u64) {
    // SAFETY: forwarded.
    unsafe { at.cast::<u64>().write_unaligned(w.to_le()) }
}

/// The header's 24 bits as stored (`p - 3 .. p`, the `u16` part aligned).
///
/// # Safety
/// `p - 3 .. p` is readable.
#[inline(always)]
unsafe fn load_bits(p: *const u8) -> u32 {
    // SAFETY: the caller vouches for the header bytes; `p` is 16-aligned, so `p - 2` is
    // 2-aligned.
    unsafe { *p.wrapping_sub(3) as u32 | (p.wrapping_sub(2).cast::<u16>().read() as u32) << 8 }
}

/// Store the header's 24 bits.
///
/// # Safety
/// `p - 3 .. p` is writable and `p` 16-aligned.
#[inline(always)]
unsafe fn store_bits(p: *mut u8, x: u32) {
    // SAFETY: as load_bits.
    unsafe {
        *p.wrapping_sub(3) = x as u8;
        p.wrapping_sub(2).cast::<u16>().write((x >> 8) as u16);
    }
}

/// The 24 header bits of slot `idx`, reserved code `rsv`, `off` units from storage.
#[inline(always)]
const fn bits(idx: usize, rsv: u8, off: usize) -> u32 {
    idx as u32 | (rsv as u32) << 5 | (off as u32) << 8
}

/// Write the keyed header of `p`: slot `idx`, reserved code `rsv`, `off` units from the
/// group's storage (a 32-bit word at `p - 8` if it does not fit 16 bits).
///
/// # Safety
/// `p - 3 .. p` is writable (and `p - 8 .. p - 4` when `off >= OFF_BIG`), in the slot.
#[inline(always)]
pub unsafe fn set_header(p: *mut u8, key: Key, idx: usize, rsv: u8, off: usize) {
    debug_assert!(idx < 32 && rsv < 8 && off <= u32::MAX as usize);
    // SAFETY: the caller vouches for the bytes.
    unsafe {
        let off = if off >= OFF_BIG {
            p.wrapping_sub(8)
                .cast::<u32>()
                .write_unaligned(off as u32 ^ key.word());
            OFF_BIG
        } else {
            off
        };
        store_bits(p, bits(idx, rsv, off) ^ key.info());
    }
}

/// The plain redirect header at a slot's `start` saying its data starts `off` units in
/// (an offset of 16 bits or more, over-aligned data deep in a single-slot mapping, also
/// in the slot's first four bytes, which such data leaves unused).
///
/// Without `BIG`, `off` is known to fit 16 bits (offset cycling's, 255 units at most),
/// which then is not tested.
///
/// # Safety
/// `start - 3 .. start + 8` is writable and the slot's (`off` is 1 at least: the data
/// starts 16 bytes in); without `BIG`, `off < 0xffff`.
#[inline(always)]
pub unsafe fn set_redirect<const BIG: bool>(start: *mut u8, off: usize) {
    // SAFETY: forwarded.
    unsafe {
        if MARKED_STRIDE != 0 {
            // the slot's first bytes, slack before the data (16 at least), are not a
            // freed word: what `free_intact` falls back to is the word of a block at the
            // start
            start.cast::<u64>().write(0);
        }
        debug_assert!(BIG || off < OFF_BIG);
        if BIG && off >= OFF_BIG {
            start.cast::<u32>().write(off as u32);
        }
        store_bits(
            start,
            bits(0, RSV_REDIRECT, if BIG { off.min(OFF_BIG) } else { off }),
        );
    }
}

/// The offset a plain redirect header at `start` gives, if it is one (the walker's).
///
/// # Safety
/// `start - 3 .. start + 4` is readable.
pub unsafe fn redirect(start: *const u8) -> Option<usize> {
    // SAFETY: forwarded.
    unsafe {
        let x = load_bits(start);
        if x & 0xff != bits(0, RSV_REDIRECT, 0) {
            return None;
        }
        let off = (x >> 8) as usize;
        Some(if off == OFF_BIG {
            start.cast::<u32>().read() as usize
        } else {
            off
        })
    }
}

/// The fields the header of `p` holds, unkeyed: slot index, reserved code and offset in
/// units from the group's storage (a big offset read from its word). The walker's test
/// before it decodes a candidate: a header whose offset is not the candidate's own would
/// send the decoder into another mapping.
///
/// # Safety
/// `p - 8 .. p` is readable.
pub unsafe fn header_fields(p: *const u8, secret: u64) -> (usize, u8, usize) {
    let key = Key::of(secret, p);
    // SAFETY: forwarded.
    unsafe {
        let x = load_bits(p) ^ key.info();
        let mut off = (x >> 8) as usize;
        if off == OFF_BIG {
            off = (p.wrapping_sub(8).cast::<u32>().read_unaligned() ^ key.word()) as usize;
        }
        ((x & 31) as usize, (x >> 5 & 7) as u8, off)
    }
}

/// Mark the header of `p` freed: a second free, a realloc or a stale pointer decodes a
/// header no allocation has.
///
/// # Safety
/// `p - 3 .. p` is writable.
#[inline(always)]
pub unsafe fn mark_freed(p: *mut u8, key: Key) {
    // SAFETY: forwarded.
    unsafe { store_bits(p, FREED ^ key.info()) }
}

/// Mark the slot of `p` (a live allocation, framed for its whole slot) as the host of a
/// nested group: no user pointer resolves to it any more.
///
/// # Safety
/// `p` is a live allocation of the heap with this secret.
pub unsafe fn mark_nested(p: *mut u8, secret: u64) {
    let key = Key::of(secret, p);
    // SAFETY: forwarded.
    unsafe {
        let x = load_bits(p) ^ key.info();
        store_bits(p, (x & !(7 << 5) | (RSV_NESTED as u32) << 5) ^ key.info());
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
    /// The keys of the pointer the slot was found from.
    pub key: Key,
    /// The header's reserved code.
    pub rsv: u8,
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
    Ok(unsafe { decode::<false, false>(p, secret) }?.meta)
}

/// [`find_slot`] of the pointer a nested group's memory is (its host slot's), out of line:
/// the host lookups are cold paths, and an inline copy of the decoder is half a KiB of
/// text, which every program maps.
///
/// # Safety
/// As [`find_meta`].
#[inline(never)]
pub unsafe fn find_host(p: *const u8, secret: u64) -> Result<Slot, Corrupt> {
    // SAFETY: forwarded.
    let s = unsafe { decode::<true, false>(p, secret) }?;
    ensure!(s.rsv == RSV_NESTED, Corrupt::Reserved);
    Ok(s)
}

/// [`find_meta`] plus the slot's bounds, for a pointer a user may hold (never a slot that
/// hosts a nested group: its header says so, and no allocation's does).
///
/// # Safety
/// As [`find_meta`].
#[inline(always)]
pub unsafe fn find_slot(p: *const u8, secret: u64) -> Result<Slot, Corrupt> {
    // SAFETY: forwarded.
    unsafe { decode::<false, false>(p, secret) }
}

/// [`find_slot`] with the secret of a heap that exists (a thread cache's copy): no test
/// for the uninitialised heap.
///
/// # Safety
/// As [`find_meta`]; `secret` is a live heap's.
#[inline(always)]
pub unsafe fn find_slot_live(p: *const u8, secret: u64) -> Result<Slot, Corrupt> {
    // SAFETY: forwarded.
    unsafe { decode::<false, true>(p, secret) }
}

/// The decoder: of a user pointer, or with `HOST` of a nested group's memory (the user
/// pointer of its host slot, which then must be marked as a host).
///
/// # Safety
/// As [`find_meta`].
#[inline(always)]
unsafe fn decode<const HOST: bool, const LIVE: bool>(
    p: *const u8,
    secret: u64,
) -> Result<Slot, Corrupt> {
    ensure!(p.addr() & (UNIT - 1) == 0, Corrupt::Misaligned);
    // (a live heap's secret is never 0, and its page map has a top array)
    debug_assert!(!LIVE || secret != 0);
    ensure!(LIVE || secret != 0, Corrupt::Uninitialised);
    // the header (the unit before `p`, one page) must be heap memory before it is read
    let hdr = p.addr().wrapping_sub(UNIT);
    let hint = if LIVE { entry_live(hdr) } else { entry(hdr) };
    ensure!(hint.addr() != ABSENT, Corrupt::Foreign);
    // SAFETY: the header is heap memory; every address derived from it is checked to be
    // heap memory before it is read, and what is read there is checked (secret first)
    // before it is trusted.
    unsafe {
        let key = Key::of(secret, p);
        let x = load_bits(p) ^ key.info();
        let (index, rsv) = ((x & 31) as usize, (x >> 5 & 7) as u8);
        let mut offset = (x >> 8) as usize;
        // an allocation's header: a reserved count (RSV_NESTED only for the host lookup);
        // a freed header, a redirect and a host are not one
        if rsv > RSV_EXT && !(HOST && rsv == RSV_NESTED) {
            return Err(if x == FREED {
                Corrupt::DoubleFree
            } else {
                Corrupt::Reserved
            });
        }
        if offset == OFF_BIG {
            offset = (p.wrapping_sub(8).cast::<u32>().read_unaligned() ^ key.word()) as usize;
            ensure!(offset >= OFF_BIG, Corrupt::Offset);
        }
        let base = p.wrapping_sub(UNIT * offset + UNIT).cast::<Group>();
        // The page's hint is a record (the map holds nothing else), and a record whose
        // group is `base` is the group's own: nothing more to check. Else (a nested group,
        // a stale hint, a forged offset) the header's links are followed and checked.
        let meta = if hint.addr() > HEAP && (*hint).mem == base.cast_mut() {
            hint
        } else if LIVE {
            group_meta_inline(base, hdr, secret)?
        } else {
            group_meta(base, hdr, secret)?
        };
        ensure!(index <= (*meta).last_idx as usize, Corrupt::Index);
        let bit = 1u32 << index;
        // a free slot, or one that hosts a nested group, holds no allocation: a pointer
        // resolves to a host slot only in the hosts' own lookup
        let hosts = (*meta).hosts.load(Relaxed);
        let free = (*meta).avail_mask.load(Relaxed) | (*meta).freed_mask.load(Relaxed);
        if HOST {
            ensure!(hosts & bit != 0, Corrupt::Reserved);
            ensure!(free & bit == 0, Corrupt::DoubleFree);
        } else {
            ensure!((free | hosts) & bit == 0, Corrupt::DoubleFree);
        }
        // the offset must lie in slot `index` (its stride: the class's, or a single-slot
        // mapping's whole mapping, which a reused mapping makes larger than the class)
        let units = (*meta).units as usize;
        let into = offset.wrapping_sub(units * index);
        ensure!(into < units, Corrupt::Bounds);
        let stride = units * UNIT;
        // `into` units into slot `index` of the group's storage, at `base + UNIT`
        let start = p.wrapping_sub(into * UNIT).cast_mut();
        debug_assert!(start == storage((*meta).mem).wrapping_add(stride * index));
        Ok(Slot {
            meta,
            idx: index,
            stride,
            start,
            end: start.wrapping_add(stride - IB),
            key,
            rsv,
        })
    }
}

/// The record of the group at `base`, which a header at `hdr` names, from the group's
/// header, every link checked: what the decoder does when the page map's hint is not the
/// group's record (a nested group, a stale hint, a forged offset). Out of line: its text
/// is shared by every caller, and most frees never run it.
///
/// # Safety
/// The heap memory the page map lists is mapped and readable; `hdr` is heap memory.
#[inline(never)]
unsafe fn group_meta(base: *const Group, hdr: usize, secret: u64) -> Result<*mut Meta, Corrupt> {
    // SAFETY: forwarded.
    unsafe { group_meta_inline(base, hdr, secret) }
}

/// The record of the nested group at `base`, the start of a slot that hosts one: its
/// group header's link checked as the decoder checks it ([`group_meta`]).
///
/// # Safety
/// As [`group_meta`], `base` heap memory.
pub unsafe fn nested_meta(base: *const Group, secret: u64) -> Result<*mut Meta, Corrupt> {
    // SAFETY: forwarded.
    unsafe { group_meta(base, base.addr(), secret) }
}

/// [`group_meta`], inline: the thread cache's `free`, where nested groups (every group of
/// the smallest classes while their use is small) take this path.
///
/// # Safety
/// As [`group_meta`].
#[inline(always)]
unsafe fn group_meta_inline(
    base: *const Group,
    hdr: usize,
    secret: u64,
) -> Result<*mut Meta, Corrupt> {
    // a 16-byte group header lies in one page: the header's, already checked (most
    // small slots), or one to look up
    ensure!(
        (base.addr() ^ hdr) < AREA || contains(base.addr()),
        Corrupt::Foreign
    );
    // SAFETY: the group header is heap memory; the record it names is read only once
    // its area is known to be heap memory.
    unsafe {
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
        // From here `meta` is a genuine record of this heap (its area carries the secret)
        // and, pointing back at `base`, a live one (a free record's `mem` is null): its
        // class and shape are the heap's own, so the offset bound below also keeps the slot
        // inside the mapping (mallocng's separate class and `maplen` checks).
        ensure!((*meta).mem == base.cast_mut(), Corrupt::GroupLink);
        Ok(meta)
    }
}

/// The bounds of slot `idx` of the validated record `meta`, for a slot whose header is
/// not read (a slot leaving the quarantine, the cache's entries): its `key` and `rsv` are
/// none (zero).
///
/// # Safety
/// `meta` is a live meta record.
pub unsafe fn slot_bounds(meta: *mut Meta, idx: usize) -> Result<Slot, Corrupt> {
    // SAFETY: the caller vouches for `meta`.
    unsafe {
        ensure!(idx <= (*meta).last_idx as usize, Corrupt::Index);
        let stride = stride(meta);
        let start = storage((*meta).mem).wrapping_add(stride * idx);
        Ok(Slot {
            meta,
            idx,
            stride,
            start,
            end: start.wrapping_add(stride - IB),
            key: Key(0),
            rsv: 0,
        })
    }
}

/// mallocng `get_nominal_size`: the size the user asked for, checking the reserved count
/// and the check byte after the data.
///
/// # Safety
/// `s` is the slot [`find_slot`] validated for `p`.
#[inline(always)]
pub unsafe fn nominal_size(p: *const u8, s: &Slot) -> Result<usize, Corrupt> {
    // SAFETY: the bytes read lie between the header of `p` and `s.end`, inside the slot,
    // or are the byte at `end`, the next header's first byte, which is in the group too.
    unsafe {
        let end = s.end;
        let room = end.addr() - p.addr();
        let strings = ends_strings(s.meta);
        let reserved = if s.rsv == RSV_EXT {
            let r = (end.wrapping_sub(4).cast::<u32>().read_unaligned() ^ s.key.word()) as usize;
            ensure!(r >= RSV_EXT as usize && r <= room, Corrupt::Reserved);
            // (the check in each arm: the window's arithmetic folds into the arm's)
            ensure!(tail_intact(end, r, s.key, strings), Corrupt::CheckByte);
            r
        } else {
            let r = s.rsv as usize;
            ensure!(r <= room, Corrupt::Reserved);
            ensure!(tail_intact(end, r, s.key, strings), Corrupt::CheckByte);
            r
        };
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
        (s, ok(nominal_size(p, &s)))
    }
}

/// mallocng `set_size` with `enframe`'s header: frame an `n`-byte allocation at `p`, in
/// slot `idx` whose usable bytes end at `end`, `off` units from its group's storage:
/// the keyed header, the check bytes after the data ([`window`]) and, past 4 reserved
/// bytes, the reserved count. With `KEEP`, the data below the check bytes is kept.
///
/// # Safety
/// `p .. end` lies in slot `idx`, `p`'s header is writable and the slot's, `n <= end - p`.
#[inline(always)]
unsafe fn frame<const KEEP: bool>(
    p: *mut u8,
    key: Key,
    idx: usize,
    off: usize,
    end: *mut u8,
    n: usize,
    strings: bool,
) {
    let reserved = end.addr() - p.addr() - n;
    // SAFETY: every byte written lies in `p - 8 ..= end`, which the caller vouches for.
    unsafe {
        let rsv = if reserved >= RSV_EXT as usize {
            debug_assert!(reserved <= u32::MAX as usize);
            end.wrapping_sub(4)
                .cast::<u32>()
                .write_unaligned(reserved as u32 ^ key.word());
            set_tail::<KEEP>(end, reserved, key, strings);
            RSV_EXT
        } else {
            set_tail::<KEEP>(end, reserved, key, strings);
            reserved as u8
        };
        set_header(p, key, idx, rsv, off);
    }
}

/// [`frame`] an allocation at `p` (keys `key`) in the slot of `s` anew, its data kept,
/// its usable bytes ending at `end`: a realloc in place, a block that moved or shrank,
/// an aligned framing inside a fresh one. Out of line, one copy for all of them.
///
/// # Safety
/// As [`frame`]; `s.meta` is the slot's record, its `mem` where the slot now is.
#[inline(never)]
pub unsafe fn reframe(p: *mut u8, key: Key, s: &Slot, end: *mut u8, n: usize) {
    // SAFETY: forwarded.
    unsafe {
        let off = (p.addr() - storage((*s.meta).mem).addr()) / UNIT;
        frame::<true>(p, key, s.idx, off, end, n, ends_strings(s.meta));
    }
}

/// [`reframe`] the live allocation `p` of the validated slot `s` for `n` bytes (realloc
/// in place).
///
/// # Safety
/// `s` is the slot of `p`, `n <= s.end - p`.
#[inline]
pub unsafe fn set_size(p: *mut u8, s: &Slot, n: usize) {
    // SAFETY: forwarded.
    unsafe { reframe(p, s.key, s, s.end, n) }
}

/// The offset at which the `ctr`-th framing of a slot with `slack` spare units starts:
/// `ctr` folded into `0..=slack`.
#[inline(always)]
fn cycled(ctr: u32, slack: usize) -> usize {
    let mut off = ctr as usize & 255;
    if off > slack {
        let mut m = slack;
        m |= m >> 1;
        m |= m >> 2;
        m |= m >> 4;
        off &= m;
        if off > slack {
            off -= slack + 1;
        }
    }
    debug_assert!(off <= slack);
    off
}

/// mallocng `enframe`: lay out slot `idx` of `g` for an `n`-byte allocation and return the
/// user pointer. The start offset cycles with `ctr`, which the caller advances on every
/// framing (mallocng keeps the last offset in the slot and adds one; a counter needs no
/// read of it): a slot reused at once lands at another offset, lengthening the interval
/// before an address is reused and making a stale pointer to the slot fail its header
/// check.
///
/// # Safety
/// `g` is live, slot `idx` was just taken from its `avail_mask`, `n + IB <= stride`.
pub unsafe fn enframe(g: *mut Meta, idx: usize, n: usize, ctr: u32, secret: u64) -> *mut u8 {
    // SAFETY: forwarded.
    unsafe { enframe_inline::<true>(g, idx, n, &mut { ctr }, secret, None) }
}

/// [`enframe`], inlined: for the thread cache's `malloc`, where the call and its register
/// saves were a tenth of the cost. With `freed`, the slot is one handed out before, whose
/// freed word (`freed`) is checked first ([`check_free`], here where the slot's start is
/// at hand). Without `MAPPED`, `g` is no individually mapped block (the thread cache's
/// groups never are), which then is not tested. The cache's counter `ctr` is advanced
/// here, and only by a framing that cycles (a slot with no spare unit does not).
///
/// # Safety
/// As [`enframe`]; with `freed`, as [`check_free`] too; without `MAPPED`, `g` is not of
/// class [`CLASS_MMAP`].
#[inline(always)]
pub unsafe fn enframe_inline<const MAPPED: bool>(
    g: *mut Meta,
    idx: usize,
    n: usize,
    ctr: &mut u32,
    secret: u64,
    freed: Option<u64>,
) -> *mut u8 {
    // SAFETY: the slot is ours; every byte written lies in its header or body, or is the
    // last check byte at `end` (the next slot's header's first byte, which that slot
    // never uses).
    unsafe {
        let stride = stride(g);
        // (with a canary room, a user's request leaves it: a nested group's host, which
        // fills its slot, has none)
        let slack = (stride - IB - n).saturating_sub(CANARY_ROOM) / UNIT;
        let base = storage((*g).mem);
        let start = base.wrapping_add(stride * idx);
        let end = start.wrapping_add(stride - IB);
        if let Some(word) = freed {
            check!(freed_at(start, stride, word));
        }
        debug_assert!(MAPPED || (*g).sizeclass != CLASS_MMAP);
        let mapped = MAPPED && (*g).sizeclass == CLASS_MMAP;
        if ZERO_ON_FREE && !mapped {
            // as free left it: all zero, or something wrote through a dangling pointer
            check!(all_zero(start, stride - IB));
        }
        // an individually mapped block ends right before its guard: data as far up as
        // the slot allows, so an overflow reaches the guard within a few bytes.
        let off = if mapped {
            slack
        } else if slack == 0 {
            0
        } else {
            // (advanced here, only when it is used: a call that does not cycle leaves it)
            *ctr = ctr.wrapping_add(1);
            cycled(*ctr, slack)
        };
        let p = start.wrapping_add(UNIT * off);
        if off != 0 {
            // (a single mapping's data may start far in; cycling's 255 units at most)
            set_redirect::<MAPPED>(start, off);
        }
        frame::<false>(
            p,
            Key::of(secret, p),
            idx,
            (p.addr() - base.addr()) / UNIT,
            end,
            n,
            STRING_END && !mapped,
        );
        p
    }
}

/// What every free does to a validated allocation before its slot goes anywhere (group,
/// quarantine, thread cache): mark the header freed and, with zero-on-free, wipe the slot
/// (and a header inside it), which is checked when the slot is handed out again; else,
/// with `harden-freed-word`, in a slot of a small group, write the heap's [`freed_word`]
/// over the block's first 8 bytes,
/// which the next hand-out of the slot checks ([`check_free`]) with the freed header: a
/// write through a dangling pointer into the block's first bytes or its header crashes
/// then, before the slot's new owner can see it.
///
/// # Safety
/// `s` is the validated slot of the live allocation `p`.
#[inline(always)]
pub unsafe fn retire(p: *mut u8, s: &Slot, word: u64) {
    // SAFETY: the slot is the caller's; the wipe stays inside it, and so do the 8 bytes
    // at `p` (a slot's room from a user pointer is 12 bytes at least: strides are
    // multiples of 16, and the header takes 4).
    unsafe {
        mark_freed(p, s.key);
        if ZERO_ON_FREE && (*s.meta).sizeclass != CLASS_MMAP {
            s.start.write_bytes(0, s.end.addr() - s.start.addr());
        } else if marks_free(s.stride) {
            p.cast::<u64>().write(word);
        }
    }
}

/// Strides up to which a freed block carries the freed word (`harden-freed-word`): no
/// slot holds a whole page, which the release of cold pages would give back (and zero).
/// 0 in a build without the word: none carries it (with zero-on-free, which checks the
/// whole slot, nor with random slots: [`crate::meta::hand_out`] counts on slots taken
/// lowest first).
pub const MARKED_STRIDE: usize = if MARKS { AREA } else { 0 };
const MARKS: bool = FREED_WORD && !ZERO_ON_FREE && !RANDOM_SLOTS;

/// Whether the freed blocks of a group of stride `stride` carry the freed word.
#[inline(always)]
pub fn marks_free(stride: usize) -> bool {
    MARKS && stride <= AREA
}

/// Whether slot `idx` of `g`, just taken from its `avail_mask`, was handed out before in a
/// group whose freed blocks carry the freed word: then [`check_free`] is owed. (Else, in
/// such a group, the slot is counted as handed out.)
///
/// # Safety
/// `g` is live and the slot the caller's, taken lowest first.
#[inline(always)]
pub unsafe fn owes_free_check(g: *mut Meta, idx: usize) -> bool {
    // SAFETY: forwarded.
    unsafe { marks_free(stride(g)) && hand_out(g, idx) }
}

/// Whether slot `idx` of `m`, freed after a use, still holds what its free left: the
/// freed word `word` at the block, which began at the slot's start or where the plain
/// redirect header there says (`enframe` leaves one for a block past the start).
///
/// # Safety
/// `m` is live with [`marks_free`], and slot `idx` free after a use, the caller's.
#[inline(always)]
pub unsafe fn free_intact(m: *mut Meta, idx: usize, word: u64) -> bool {
    // SAFETY: every byte read lies in the slot: its start's header, and 8 bytes at the
    // offset it gives once that is known to leave them in the slot.
    unsafe {
        let st = stride(m);
        freed_at(storage((*m).mem).wrapping_add(st * idx), st, word)
    }
}

/// [`free_intact`] of the slot at `start`, of stride `st`.
///
/// # Safety
/// As [`free_intact`].
#[inline(always)]
unsafe fn freed_at(start: *mut u8, st: usize, word: u64) -> bool {
    // SAFETY: as free_intact.
    unsafe {
        let x = load_bits(start);
        let off = (x >> 8) as usize;
        // (the freed header of a block at the start reads as a redirect once in 256: then
        // its word is not where that says, and it was at the start after all; a block
        // past the start left zeros there, `set_redirect`)
        (x & 0xff == bits(0, RSV_REDIRECT, 0)
            && off * UNIT + 8 <= st - IB
            && start.wrapping_add(off * UNIT).cast::<u64>().read() == word)
            || start.cast::<u64>().read() == word
    }
}

/// [`free_intact`], crashing if not: the check of a slot handed out again.
///
/// # Safety
/// As [`free_intact`].
#[inline(always)]
pub unsafe fn check_free(m: *mut Meta, idx: usize, word: u64) {
    // SAFETY: forwarded.
    check!(unsafe { free_intact(m, idx, word) });
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
    use super::{FREED, Key, RSV_EXT, RSV_NESTED, RSV_REDIRECT, bits, canary, cycled, window};
    use crate::config::STRING_END;

    /// Check bytes are never 0 (what fresh memory and string overflows write), and take
    /// every odd value; with `harden-string-end` the first is 0.
    #[test]
    fn check_bytes_are_odd_and_take_every_odd_value() {
        let mut seen = [[false; 256]; 8];
        let mut x = 0x1234_5678_9abc_def0u64;
        for i in 0..200_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (secret, p) = (x | 1, core::ptr::without_provenance(i * 16));
            let tail = Key::of(secret, p).tail();
            for (b, seen) in tail.to_le_bytes().iter().zip(&mut seen) {
                assert!(b & 1 == 1, "check byte {b}");
                seen[*b as usize] = true;
            }
            let first = canary(secret, p, i % 40);
            assert_eq!(first == 0, STRING_END, "first check byte {first}");
        }
        for seen in seen {
            assert_eq!(seen.iter().filter(|&&s| s).count(), 128);
        }
    }

    /// The check bytes start right after the data, and stay in the slot's room: up to
    /// `end` included with a count in the header, below the count's word with an
    /// extended one; 8 of them where there is room.
    #[test]
    fn the_check_bytes_fill_the_room_after_the_data() {
        let end = core::ptr::without_provenance_mut::<u8>(0x10_000c);
        for reserved in 0..100usize {
            let (at, below) = window(end, reserved);
            let first = at.addr() + below;
            let past = at.addr() + 8;
            assert_eq!(first, end.addr() - reserved, "reserved {reserved}");
            let room_end = if reserved < RSV_EXT as usize {
                end.addr() + 1
            } else {
                end.addr() - 4
            };
            assert!(past <= room_end, "reserved {reserved}");
            assert_eq!(
                past - first,
                (room_end - first).min(8),
                "reserved {reserved}"
            );
        }
    }

    /// A header's keys differ between neighbouring frames and between secrets: a header
    /// copied 16 bytes on, or made under another secret, decodes to other fields.
    #[test]
    fn keys_depend_on_the_address_and_the_secret() {
        let secret = 0x0123_4567_89ab_cdefu64;
        let mut same_info = 0;
        for i in 1..10_000usize {
            let p = core::ptr::without_provenance::<u8>(0x7f00_0000_0000 + i * 16);
            let (a, b) = (Key::of(secret, p), Key::of(secret, p.wrapping_add(16)));
            let c = Key::of(secret ^ 1 << (i % 64), p);
            same_info += (a.info() == b.info()) as u32 + (a.info() == c.info()) as u32;
        }
        assert!(
            same_info < 4,
            "24-bit keys collide {same_info} times in 20,000"
        );
    }

    /// No user pointer's header bits are a freed header's, a redirect's or a host's.
    #[test]
    fn the_header_codes_are_distinct() {
        for rsv in 0..=RSV_EXT {
            for idx in 0..32 {
                for off in [0, 1, 0xfffe, 0xffff] {
                    let x = bits(idx, rsv, off);
                    assert_ne!(x, FREED);
                    assert_ne!(x >> 5 & 7, RSV_REDIRECT as u32);
                    assert_ne!(x >> 5 & 7, RSV_NESTED as u32);
                }
            }
        }
        assert_eq!(FREED >> 5 & 7, RSV_REDIRECT as u32);
    }

    /// Offset cycling stays inside the slack and visits every offset.
    #[test]
    fn cycled_offsets_cover_the_slack() {
        for slack in 1..300usize {
            let mut seen = std::vec![false; slack + 1];
            for ctr in 0..512u32 {
                let off = cycled(ctr, slack);
                assert!(off <= slack);
                seen[off] = true;
            }
            assert!(
                seen.iter().all(|&s| s) || slack > 255,
                "slack {slack} not covered"
            );
        }
    }
}
