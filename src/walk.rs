//! The whole-heap invariant walker: every meta area, record, list and in-use slot checked
//! against the invariants written at [`crate::meta`] and [`crate::slot`]. Tests run it
//! after every operation; it reports the first violation instead of crashing.

use core::sync::atomic::Ordering::Relaxed;

use crate::check::Corrupt;
use crate::config::{AREA, CLASS_MMAP, IB, NUM_CLASSES, UNIT};
use crate::heap::{Heap, State};
use crate::list::checked_links;
use crate::lock::RawLock;
use crate::meta::{
    AREA_SLOTS, Meta, area_of, area_slots, low_mask, nested, shape_stride, storage, stride,
};
use crate::os::Os;
use crate::pagemap;
use crate::slot::{RSV_EXT, find_host, find_slot, header_fields, nominal_size, redirect};
use crate::tcache::{ABANDONED, RETIRE_BATCH, TC_CLASSES};

/// What the walker found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Live groups (not counting individually mapped allocations).
    pub groups: usize,
    /// Individually mapped allocations.
    pub large: usize,
    /// Slots in use, nested-group hosts excluded.
    pub in_use: usize,
    /// Sum of the nominal sizes of the slots in use.
    pub bytes: usize,
    /// Bytes mapped for groups and large allocations (nested groups excluded).
    pub mapped: usize,
    /// Free meta records.
    pub free_metas: usize,
    /// Meta areas.
    pub areas: usize,
    /// Groups owned by thread caches (live or abandoned).
    pub owned: usize,
    /// Bytes of freed group mappings held for reuse (`retain.rs`).
    pub held: usize,
}

/// A violated invariant: which, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// The invariant, in words.
    pub what: &'static str,
    /// The address of the record or slot concerned.
    pub at: usize,
    /// The header check that failed, when it was one.
    pub corrupt: Option<Corrupt>,
}

fn fail<T>(what: &'static str, at: usize) -> Result<T, Violation> {
    Err(Violation {
        what,
        at,
        corrupt: None,
    })
}

macro_rules! want {
    ($cond:expr, $what:expr, $at:expr) => {
        if !$cond {
            return fail($what, $at as usize);
        }
    };
}

impl<O: Os, L: RawLock> Heap<O, L> {
    /// Walk the whole heap under its lock and check every invariant.
    pub fn walk(&self) -> Result<HeapStats, Violation> {
        if self.secret() == 0 {
            return Ok(HeapStats::default());
        }
        let Some(st) = self.locked() else {
            return fail("the heap's region vanished", 0);
        };
        // SAFETY: the lock is held, so nothing changes under the walk except freed_mask
        // bits added by lock-free frees (tests walk while no other thread frees).
        let mut s = unsafe { walk_state(&st, st.secret) }?;
        // live pointers into the zero-size region are allocations too
        s.in_use += self.zero_size_live();
        Ok(s)
    }
}

/// What an in-use slot holds.
pub(crate) enum InUse {
    /// An allocation at this user pointer.
    Block(*mut u8),
    /// A nested group (its memory at the slot's start).
    Host,
}

/// Find the user pointer of the in-use slot `i` of `m`: at the slot's start, or where its
/// redirect header says.
///
/// # Safety
/// `m` is live and slot `i` in use.
pub(crate) unsafe fn user_pointer(m: *mut Meta, i: usize, secret: u64) -> Result<InUse, Violation> {
    // SAFETY: all reads lie inside the group's memory, and every candidate's header is
    // validated before it is believed.
    unsafe {
        let st = stride(m);
        let start = storage((*m).mem).wrapping_add(i * st);
        let end = start.wrapping_add(st - IB);
        // Whether `q`'s header names this slot, and (`whole`) its check byte validates too.
        // (The fields first: the decoder follows the header's offset, and only one that
        // leads to this group keeps it inside the group's mapping.)
        let names = |q: *mut u8, whole: bool| {
            let (idx, rsv, off) = header_fields(q, secret);
            idx == i
                && rsv <= RSV_EXT
                && off == (q.addr() - storage((*m).mem).addr()) / UNIT
                && find_slot(q, secret).is_ok_and(|s| {
                    s.meta == m && s.idx == i && (!whole || nominal_size(q, &s).is_ok())
                })
        };
        if (*m).hosts.load(Relaxed) & 1 << i != 0 {
            want!(
                find_host(start, secret).is_ok_and(|s| s.meta == m && s.idx == i),
                "host slot's header",
                start
            );
            return Ok(InUse::Host);
        }
        // The redirect's target first, and a whole validation before a header's: a
        // redirect's plain bits, read as a keyed header at the slot's start, name this slot
        // by chance about once in three million slots (index, offset and reserved code all
        // fitting), which a walk of every slot after every step meets. A header alone is
        // the fallback, so a corrupted check byte is reported as what it is.
        let target = match redirect(start) {
            Some(off) if off != 0 && start.wrapping_add(off * UNIT) < end => {
                Some(start.wrapping_add(off * UNIT))
            }
            _ => None,
        };
        for whole in [true, false] {
            if let Some(p) = target
                && names(p, whole)
            {
                return Ok(InUse::Block(p));
            }
            if names(start, whole) {
                return Ok(InUse::Block(start));
            }
        }
        fail("in-use slot has no valid header", start.addr())
    }
}

unsafe fn walk_state(st: &State, secret: u64) -> Result<HeapStats, Violation> {
    let mut s = HeapStats::default();
    want!(secret != 0, "zero secret", 0);
    // SAFETY: the lock is held; every pointer followed is the heap's own and checked
    // before it is trusted further.
    unsafe {
        // free-meta list
        let mut free_list = 0;
        if !st.free_meta_head.is_null() {
            let mut m = st.free_meta_head;
            loop {
                if let Err(e) = checked_links(m) {
                    return Err(Violation {
                        what: "free-meta list link",
                        at: m.addr(),
                        corrupt: Some(e),
                    });
                }
                want!((*m).mem.is_null(), "free meta has memory", m);
                free_list += 1;
                want!(free_list <= 1 << 24, "free-meta list cycle", m);
                m = (*m).next;
                if m == st.free_meta_head {
                    break;
                }
            }
        }
        // active lists: links, classes, membership
        let mut listed = 0usize;
        for sc in 0..NUM_CLASSES {
            let head = st.active[sc];
            if head.is_null() {
                continue;
            }
            let mut m = head;
            let mut n = 0;
            loop {
                if let Err(e) = checked_links(m) {
                    return Err(Violation {
                        what: "active list link",
                        at: m.addr(),
                        corrupt: Some(e),
                    });
                }
                want!(
                    (*m).sizeclass as usize == sc,
                    "listed in the wrong class",
                    m
                );
                want!(!(*m).mem.is_null(), "listed record is free", m);
                let avail = (*m).avail_mask.load(Relaxed);
                let freed = (*m).freed_mask.load(Relaxed);
                want!(avail == 0 || m == head, "avail slots off the head", m);
                // freed bits only leave a group when it is the head, so others have some
                want!(
                    m == head || freed != 0,
                    "non-head listed group with no freed slot",
                    m
                );
                n += 1;
                want!(n <= 1 << 24, "active list cycle", m);
                m = (*m).next;
                if m == head {
                    break;
                }
            }
            listed += n;
        }
        // every record of every area
        walk_caches(st, secret, &mut s)?;
        let mut usage = [0usize; NUM_CLASSES];
        let mut group_bytes = 0;
        let mut live_listed = 0usize;
        let mut area = st.meta_area_head;
        while !area.is_null() {
            want!((*area).check == secret, "area without the secret", area);
            want!((*area).nslots == AREA_SLOTS, "area slot count", area);
            want!(area.addr() & (AREA - 1) == 0, "misaligned area", area);
            want!(
                pagemap::contains_area(area.addr()),
                "area not in the page map",
                area
            );
            s.areas += 1;
            let used = if area == st.meta_area_tail {
                AREA_SLOTS - st.avail_meta_count
            } else {
                AREA_SLOTS
            };
            for k in 0..used {
                let m = area_slots(area).wrapping_add(k);
                if (*m).mem.is_null() {
                    s.free_metas += 1;
                    continue;
                }
                // the cached stride is the one the group's shape gives
                want!(
                    Some(stride(m))
                        == shape_stride((*m).last_idx as usize, (*m).sizeclass, (*m).maplen),
                    "units field disagrees with the shape",
                    m
                );
                // every page of a group's memory (a nested group's is its host slot's) and
                // of a large block's data is heap memory to the decoder
                let (mem, len) = (
                    (*m).mem.cast::<u8>(),
                    stride(m) * ((*m).last_idx as usize + 1),
                );
                let pages = (mem.addr() & !(AREA - 1)..mem.addr() + UNIT + len).step_by(AREA);
                want!(
                    pages.into_iter().all(pagemap::contains),
                    "group memory not in the page map",
                    m
                );
                // a group with a mapping of its own is its pages' hint, so the decoder
                // finds its record in one lookup (a nested or donated group's pages name
                // its host, or no group)
                if (*m).maplen != 0 {
                    let own = (mem.addr()..mem.addr() + (*m).maplen as usize * AREA).step_by(AREA);
                    want!(
                        own.into_iter().all(|a| pagemap::entry(a) == m),
                        "a page of a group's mapping does not name its record",
                        m
                    );
                }
                walk_group(st, m, secret, &mut s, &mut usage, &mut group_bytes)?;
                if !(*m).next.is_null() {
                    live_listed += 1;
                }
            }
            area = (*area).next;
        }
        want!(
            s.free_metas == free_list,
            "free records off the free list",
            0
        );
        want!(
            live_listed == listed + s.owned,
            "listed records not reachable from a list",
            0
        );
        for (sc, (&seen, &kept)) in usage.iter().zip(&st.usage_by_class).enumerate() {
            want!(seen == kept, "usage_by_class", sc);
        }
        want!(group_bytes == st.group_bytes, "group_bytes", group_bytes);
        if let Err(what) = st.cache.check() {
            return fail(what, st.cache.bytes());
        }
        s.held = st.cache.bytes();
        Ok(s)
    }
}

/// The thread caches' invariant (`tcache.rs`), for the live caches and the abandoned
/// ones; counts the groups they own in `s.owned`.
///
/// # Safety
/// The lock is held and no thread uses its cache.
unsafe fn walk_caches(st: &State, secret: u64, s: &mut HeapStats) -> Result<(), Violation> {
    // SAFETY: registered caches are live while the lock is held; each listed record is
    // checked against the secret before anything else in it is read.
    unsafe {
        let mut abandoned_count = 0;
        for (head, abandoned) in [(st.caches, false), (st.abandoned, true)] {
            let (mut prev, mut tc) = (core::ptr::null_mut(), head);
            while !tc.is_null() {
                want!((*tc).prev == prev, "cache registry links", tc);
                want!((*tc).secret == secret, "cache's copy of the secret", tc);
                want!(
                    (*tc).freed_word == crate::slot::freed_word(secret),
                    "cache's copy of the freed word",
                    tc
                );
                want!((*tc).me == tc, "cache's own address", tc);
                let owner = if abandoned {
                    abandoned_count += 1;
                    tc.map_addr(|a| a | ABANDONED)
                } else {
                    tc
                };
                want!(
                    !abandoned || !(*tc).owns_nothing(),
                    "abandoned cache owning nothing",
                    tc
                );
                for sc in 0..TC_CLASSES {
                    let mut n = 0usize;
                    for m in (*tc).groups(sc) {
                        want!(
                            !m.is_null() && (*area_of(m)).check == secret && !(*m).mem.is_null(),
                            "owned group not live",
                            m
                        );
                        if let Err(e) = checked_links(m) {
                            return Err(Violation {
                                what: "owned list link",
                                at: m.addr(),
                                corrupt: Some(e),
                            });
                        }
                        want!(
                            (*m).sizeclass as usize == sc,
                            "owned group of another class",
                            m
                        );
                        want!((*m).owner.load(Relaxed) == owner, "owned group's owner", m);
                        want!(
                            (*(*m).mem).active_idx == (*m).last_idx,
                            "owned group not wholly active",
                            m
                        );
                        n += 1;
                        want!(n <= 1 << 24, "owned list cycle", m);
                    }
                    s.owned += n;
                }
                let mut n = 0usize;
                for m in (*tc).retiring() {
                    want!(
                        !m.is_null() && (*area_of(m)).check == secret && !(*m).mem.is_null(),
                        "retiring group not live",
                        m
                    );
                    if let Err(e) = checked_links(m) {
                        return Err(Violation {
                            what: "retiring list link",
                            at: m.addr(),
                            corrupt: Some(e),
                        });
                    }
                    want!((*m).owner.load(Relaxed) == tc, "retiring group's owner", m);
                    want!(
                        (*m).avail_mask.load(Relaxed) == low_mask((*m).last_idx as usize)
                            && (*m).freed_mask.load(Relaxed) == 0,
                        "retiring group not empty",
                        m
                    );
                    n += 1;
                    want!(n <= RETIRE_BATCH as usize, "retiring list too long", m);
                }
                want!(n == (*tc).retiring_count as usize, "retiring count", tc);
                s.owned += n;
                prev = tc;
                tc = (*tc).next;
            }
        }
        want!(
            abandoned_count == st.abandoned_count,
            "abandoned caches counted",
            abandoned_count
        );
        // spare places are zeroed caches held by no thread (cache_create hands them out
        // as empty ones)
        let (mut prev, mut tc) = (core::ptr::null_mut(), st.spare_caches);
        while !tc.is_null() {
            want!((*tc).prev == prev, "spare cache links", tc);
            want!(
                (*tc).secret == 0 && (*tc).owns_nothing(),
                "spare cache not empty",
                tc
            );
            prev = tc;
            tc = (*tc).next;
        }
    }
    Ok(())
}

/// # Safety
/// `m` is a live record of `st`; the lock is held.
unsafe fn walk_group(
    st: &State,
    m: *mut Meta,
    secret: u64,
    s: &mut HeapStats,
    usage: &mut [usize; NUM_CLASSES],
    group_bytes: &mut usize,
) -> Result<(), Violation> {
    // SAFETY: as walk_state.
    unsafe {
        let g = (*m).mem;
        want!(g.addr() & (UNIT - 1) == 0, "misaligned group", m);
        want!((*g).meta == m, "group does not point back", m);
        let last = (*m).last_idx as usize;
        want!(last < 32, "last_idx", m);
        let all = low_mask(last);
        let avail = (*m).avail_mask.load(Relaxed);
        let freed = (*m).freed_mask.load(Relaxed);
        let active_idx = (*g).active_idx as usize;
        want!(avail & freed == 0, "avail and freed overlap", m);
        want!(
            (avail | freed) & !all == 0,
            "mask bits beyond the last slot",
            m
        );
        want!(active_idx <= last, "active_idx beyond the last slot", m);
        want!(
            avail & !low_mask(active_idx) == 0,
            "avail slot beyond active_idx",
            m
        );
        let sc = (*m).sizeclass;
        if sc != CLASS_MMAP {
            // (an owner's groups may keep the mark of a slot it has handed out since:
            // its free clears it, see `tcache::came_back`)
            if (*m).owner.load(Relaxed).is_null() {
                want!((*m).clean_mask & !freed == 0, "released slot not free", m);
            }
            want!(
                (*m).hosts.load(Relaxed) & (avail | freed | !all) == 0,
                "a host slot is free",
                m
            );
            want!(
                (*m).swept_mask & !all == 0,
                "swept bits beyond the last slot",
                m
            );
            if crate::slot::marks_free(crate::meta::stride(m)) {
                // slots are handed out lowest first: those handed out form a prefix, and
                // those of it free now still hold the freed word
                let used = (*m).zeroed_or_used as usize;
                want!(
                    used <= last + 1,
                    "more slots handed out than the group has",
                    m
                );
                let free = avail | freed;
                let handed = if used == 0 { 0 } else { low_mask(used - 1) };
                want!(
                    all & !free & !handed == 0,
                    "a slot in use beyond those handed out",
                    m
                );
                for i in 0..used {
                    if free & (1 << i) != 0 {
                        want!(
                            crate::slot::free_intact(m, i, crate::slot::freed_word(secret)),
                            "a freed slot written after its free",
                            m
                        );
                    }
                }
            }
        } else {
            let (lead, trail, _) = crate::meta::large_guards(m);
            want!(
                lead != 0 && trail != 0,
                "large allocation without guards",
                m
            );
        }
        let listed = !(*m).next.is_null();
        if sc == CLASS_MMAP {
            want!(last == 0 && (*m).maplen != 0, "large allocation shape", m);
            want!(
                avail == 0 && freed == 0 && !listed,
                "large allocation is free",
                m
            );
            s.large += 1;
        } else {
            want!((sc as usize) < NUM_CLASSES, "bad size class", m);
            s.groups += 1;
            if (*m).freeable != 0 {
                usage[sc as usize] += last + 1;
                if last > 0 {
                    want!(
                        (avail | freed) == 0 || listed,
                        "group with free slots unlisted",
                        m
                    );
                }
                if !(*m).owner.load(Relaxed).is_null() {
                    want!(listed, "owned group off its owner's list", m);
                    want!(
                        (sc as usize) < TC_CLASSES,
                        "owned group of an unowned class",
                        m
                    );
                }
            } else {
                want!(listed, "donated group unlisted", m);
            }
            if nested(m) {
                // nested: its memory is an in-use slot of a larger class marked as host
                // (find_host checks the host slot is marked as one)
                let host = find_host(g.cast::<u8>(), secret).map_err(|e| Violation {
                    what: "nested group's host slot",
                    at: m.addr(),
                    corrupt: Some(e),
                })?;
                want!(
                    (*host.meta).sizeclass > sc && UNIT + (last + 1) * stride(m) <= host.stride,
                    "nested group overflows its host",
                    m
                );
            }
        }
        if (*m).maplen != 0 {
            s.mapped += (*m).maplen as usize * AREA;
            if (sc as usize) < NUM_CLASSES {
                *group_bytes += (*m).maplen as usize * AREA;
            }
            want!(
                UNIT + (last + 1) * stride(m) <= (*m).maplen as usize * AREA,
                "slots overflow the mapping",
                m
            );
        }
        let used = all & !(avail | freed);
        for i in 0..=last {
            if used & (1 << i) == 0 || st.quarantine.iter().any(|q| q.0 == m && q.1 == i) {
                continue;
            }
            let p = match user_pointer(m, i, secret)? {
                InUse::Block(p) => p,
                InUse::Host => {
                    // the nested group must exist (checked from its side)
                    let g = storage((*m).mem).wrapping_add(i * stride(m));
                    want!(
                        !(*g.cast::<crate::meta::Group>()).meta.is_null() || (*m).freeable == 0,
                        "host slot without a group",
                        g
                    );
                    continue;
                }
            };
            let slot = find_slot(p, secret).map_err(|e| Violation {
                what: "in-use slot header",
                at: p.addr(),
                corrupt: Some(e),
            })?;
            want!(
                slot.meta == m && slot.idx == i,
                "header points elsewhere",
                p
            );
            let n = nominal_size(p, &slot).map_err(|e| Violation {
                what: "in-use slot size or check bytes",
                at: p.addr(),
                corrupt: Some(e),
            })?;
            s.in_use += 1;
            s.bytes += n;
        }
        Ok(())
    }
}
