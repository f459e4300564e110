//! Pure policy: how many slots a new group gets and whether it is mapped on its own, and
//! the bounce detector that keeps a malloc/free loop at a group boundary from mapping and
//! unmapping every time. Plain integers in, integers out: tested without a heap.

use crate::config::{IB, UNIT};
use crate::size_class::{MED_CNT, SMALL_CNT, class_size, size_to_class};

/// How a new group of class `sc` gets its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPlan {
    /// Its own anonymous mapping of `len` bytes, `cnt` slots, slots `0..=active_idx` usable
    /// at once (the rest activated later, so untouched pages stay untouched).
    Mapped {
        /// Slots in the group.
        cnt: usize,
        /// Mapping length in bytes, a multiple of the page size.
        len: usize,
        /// Highest slot index activated at creation.
        active_idx: usize,
    },
    /// Nested inside one slot of class `host_class`, asking `host_req` bytes of it.
    Nested {
        /// Slots in the group.
        cnt: usize,
        /// Class of the slot that hosts the group.
        host_class: usize,
        /// Request size passed to the host slot.
        host_req: usize,
    },
}

/// Slot count before any page-size consideration (mallocng `alloc_group`, first half).
///
/// `usage` is the number of slots the class has now.
pub fn base_count(sc: usize, usage: usize, pagesize: usize) -> usize {
    let size = class_size(sc);
    let mut cnt;
    if sc < 9 {
        let mut i = 0;
        while i < 2 && 4 * SMALL_CNT[sc][i] as usize > usage {
            i += 1;
        }
        cnt = SMALL_CNT[sc][i] as usize;
    } else {
        // max number of slots fitting in a power-of-two size, then divide out factors of
        // two while that would allocate much more than the class uses so far.
        cnt = MED_CNT[sc & 3] as usize;
        while cnt & 1 == 0 && 4 * cnt > usage {
            cnt >>= 1;
        }
        // slot offsets in units must fit the 16-bit header field.
        while size * cnt >= 65536 * UNIT {
            cnt >>= 1;
        }
    }
    // A count of 1 that is too small for its own mapping would nest; 2 is as cheap.
    if cnt == 1 && size * cnt + UNIT <= pagesize / 2 {
        cnt = 2;
    }
    cnt
}

/// Whether a group of `cnt` slots of class `sc` gets whole pages of its own. All choices of
/// `size * cnt` are just below a power of two, so anything over half a page is mapped.
pub fn is_mapped(sc: usize, cnt: usize, pagesize: usize) -> bool {
    class_size(sc) * cnt + UNIT > pagesize / 2
}

/// The rest of mallocng's `alloc_group`: the final plan.
///
/// `usage` is the class's slot count, `coarse_usage` the usage of the next (coarse) class
/// when `sc` is even and below 32 (else 0), `req` the request that triggered the group.
/// A mapped group is a map event for the bounce detector.
pub fn plan_group(
    sc: usize,
    usage: usize,
    coarse_usage: usize,
    req: usize,
    pagesize: usize,
    bounce: &mut Bounce,
) -> GroupPlan {
    let size = class_size(sc);
    let mut cnt = base_count(sc, usage, pagesize);
    if !is_mapped(sc, cnt, pagesize) {
        return GroupPlan::Nested {
            cnt,
            host_class: size_to_class(UNIT + cnt * size - IB),
            host_req: UNIT + cnt * size - IB,
        };
    }
    // check/update the bounce counter to start/increase retention of freed maps, and
    // inhibit low-count, odd-size small mappings and single-slot groups if it triggered.
    let nosmall = bounce.is_bouncing(sc);
    bounce.account_bounce(sc);
    bounce.step_seq();
    // these count reductions cost absolute memory, so don't overdo them: count coarse
    // usage as part of usage.
    let usage = usage + coarse_usage;
    // drop to a lower count if the one found above increases usage by more than 25%. These
    // reduced counts roughly fill an integral number of pages, just not a power of two.
    if 4 * cnt > usage && !nosmall {
        let low = sc & 3;
        let bytes = size * cnt;
        if low == 1 && bytes > 8 * pagesize {
            cnt = 2;
        } else if (low == 2 && bytes > 4 * pagesize) || (low == 0 && bytes > 8 * pagesize) {
            cnt = 3;
        } else if low == 0 && bytes > 2 * pagesize {
            cnt = 5;
        }
    }
    let mut len = round_up(size * cnt + UNIT, pagesize);
    // an individually mapped slot if usage is low, the class isn't bouncing, and either it
    // saves memory or it avoids eager slot allocation without wasting too much.
    if !nosmall && cnt <= 7 {
        let single = round_up(req + IB + UNIT, pagesize);
        if single < size + UNIT || (single >= 4 * pagesize && 2 * cnt > usage) {
            cnt = 1;
            len = single;
        }
    }
    let fit = (4096 - UNIT) / size;
    let active_idx = fit.saturating_sub(1).min(cnt - 1);
    GroupPlan::Mapped {
        cnt,
        len,
        active_idx,
    }
}

/// `x` rounded up to a multiple of the power of two `to`.
#[inline]
pub const fn round_up(x: usize, to: usize) -> usize {
    (x + to - 1) & !(to - 1)
}

/// Classes 7..39 are the ones whose groups are mapped and may bounce.
const BOUNCE_FIRST: usize = 7;
const BOUNCE_CLASSES: usize = 32;

/// mallocng's bounce detector. A class "bounces" when its groups are unmapped and soon
/// mapped again; once it does, its last group is kept when it empties and it stops using
/// small odd-size mappings. `seq` is a clock ticking on every map/unmap of a group;
/// `bounces` decays by one each time a group of the class is reactivated from freed slots.
#[derive(Debug, Clone, Copy)]
pub struct Bounce {
    unmap_seq: [u8; BOUNCE_CLASSES],
    bounces: [u8; BOUNCE_CLASSES],
    seq: u8,
}

impl Default for Bounce {
    fn default() -> Self {
        Self::new()
    }
}

impl Bounce {
    /// A detector with no history.
    pub const fn new() -> Self {
        Bounce {
            unmap_seq: [0; BOUNCE_CLASSES],
            bounces: [0; BOUNCE_CLASSES],
            seq: 0,
        }
    }

    #[inline]
    fn slot(sc: usize) -> Option<usize> {
        sc.checked_sub(BOUNCE_FIRST).filter(|&i| i < BOUNCE_CLASSES)
    }

    /// Advance the clock; on wrap, forget every unmap time so old ones don't look recent.
    pub fn step_seq(&mut self) {
        if self.seq == 255 {
            self.unmap_seq = [0; BOUNCE_CLASSES];
            self.seq = 1;
        } else {
            self.seq += 1;
        }
    }

    /// Note that a group of `sc` was unmapped now.
    pub fn record_seq(&mut self, sc: usize) {
        if let Some(i) = Self::slot(sc) {
            self.unmap_seq[i] = self.seq;
        }
    }

    /// A group of `sc` is being mapped: if one was unmapped within the last 10 ticks, count
    /// a bounce; at 100 the class is bouncing and jumps to 150 so it stays so a while.
    pub fn account_bounce(&mut self, sc: usize) {
        if let Some(i) = Self::slot(sc) {
            let seq = self.unmap_seq[i];
            if seq != 0 && self.seq.wrapping_sub(seq) < 10 {
                if self.bounces[i] + 1 < 100 {
                    self.bounces[i] += 1;
                } else {
                    self.bounces[i] = 150;
                }
            }
        }
    }

    /// Slots of `sc` were reused from freed ones: the class is less likely bouncing.
    pub fn decay_bounces(&mut self, sc: usize) {
        if let Some(i) = Self::slot(sc) {
            self.bounces[i] = self.bounces[i].saturating_sub(1);
        }
    }

    /// Whether `sc` is bouncing.
    pub fn is_bouncing(&self, sc: usize) -> bool {
        Self::slot(sc).is_some_and(|i| self.bounces[i] >= 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MAX_SLOTS, NUM_CLASSES};

    #[test]
    fn every_plan_is_well_formed() {
        for pagesize in [4096usize, 16384, 65536] {
            for sc in 0..NUM_CLASSES {
                for usage in (0..200).chain([1000, 100_000]) {
                    for nosmall in [false, true] {
                        let size = class_size(sc);
                        let req = size - IB;
                        let mut b = Bounce::new();
                        if nosmall && (7..39).contains(&sc) {
                            b.bounces[sc - 7] = 150;
                        }
                        match plan_group(sc, usage, usage / 2, req, pagesize, &mut b) {
                            GroupPlan::Mapped {
                                cnt,
                                len,
                                active_idx,
                            } => {
                                assert!((1..=MAX_SLOTS).contains(&cnt));
                                assert_eq!(len % pagesize, 0);
                                assert!(len >= UNIT + if cnt == 1 { req + IB } else { cnt * size });
                                assert!(active_idx < cnt);
                                // 16-bit slot offsets
                                assert!((cnt - 1) * size / UNIT <= 0xffff);
                            }
                            GroupPlan::Nested {
                                cnt,
                                host_class,
                                host_req,
                            } => {
                                assert!((2..=MAX_SLOTS).contains(&cnt), "sc={sc}");
                                assert!(host_class > sc && host_class < NUM_CLASSES);
                                assert!(class_size(host_class) >= host_req + IB);
                                assert!(host_req + IB == UNIT + cnt * size);
                                assert!(UNIT + cnt * size <= pagesize / 2);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn small_usage_gets_small_groups() {
        // first group of 16-byte slots: the low-usage count
        assert_eq!(base_count(0, 0, 4096), 30);
        assert_eq!(base_count(3, 0, 4096), 7);
        assert_eq!(base_count(3, 1000, 4096), 31);
        // a large class with no usage: one slot, mapped on its own
        match plan_group(40, 0, 0, 30000, 4096, &mut Bounce::new()) {
            GroupPlan::Mapped { cnt, .. } => assert_eq!(cnt, 1),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn bounce_detector_needs_repeated_quick_remaps_and_decays() {
        let mut b = Bounce::new();
        let sc = 20;
        assert!(!b.is_bouncing(sc));
        for _ in 0..99 {
            b.step_seq();
            b.record_seq(sc);
            b.step_seq();
            b.account_bounce(sc);
        }
        assert!(!b.is_bouncing(sc));
        b.step_seq();
        b.account_bounce(sc);
        assert!(b.is_bouncing(sc));
        for _ in 0..51 {
            b.decay_bounces(sc);
        }
        assert!(!b.is_bouncing(sc));
        // classes outside 7..39 never bounce
        b.account_bounce(3);
        assert!(!b.is_bouncing(3));
        // a remap long after the unmap is no bounce
        let mut b = Bounce::new();
        b.step_seq();
        b.record_seq(sc);
        for _ in 0..20 {
            b.step_seq();
        }
        b.account_bounce(sc);
        assert_eq!(b.bounces[sc - 7], 0);
    }
}
