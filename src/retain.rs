//! Freed group mappings held for reuse until they have been free for [`DECAY_MS`]: a
//! program that frees everything and builds again takes its mappings back instead of
//! paying an `munmap`, an `mmap` and a page fault per page for each group (mimalloc v3
//! holds freed memory 1 s, Scudo 5 s, jemalloc 10 s).
//!
//! What is held beyond a small share of the live groups (`cache::group_budget`, which a
//! churn of medium blocks reuses at any heap size and which stays) goes back to the
//! system once it has been free for `DECAY_MS`, checked on allocator calls (a thread's
//! decay, the locked paths): no thread of our own. How much is held at most: as many
//! bytes as the group mappings' recent peak, so holding never takes a program past the
//! footprint it just had; and nothing beyond the share while that peak is below
//! [`RETAIN_FROM`], so small heaps stay small. With `DECAY_MS == 0` only the small share is held, without
//! expiry: mallocng's behaviour but for that cache.
//!
//! Each held mapping carries its own record ([`Held`], at its start): a list by age for
//! expiry and a list per length for reuse, so a heap that frees thousands of groups keeps
//! them without a table of its own.

use core::ptr::null_mut;

use crate::cache::{CACHE_MAX_LEN, Evicted};
use crate::config::{AREA, DECAY_MS};

/// Peak bytes of group mappings below which freed ones are not held beyond the small
/// share (`cache::group_budget`): a small heap stays small. A program that builds a
/// structure and drops the last one holds one more structure's worth while the decay
/// runs (the tree workload at 0.5 MiB peaked a third higher held); a large heap's churn
/// is where the calls and faults saved pay (5 GB of faults in the orders workload).
pub const RETAIN_FROM: usize = 8 << 20;

/// Length classes: a mapping's length in 4 KiB units (group mappings are multiples of the
/// page size, at most [`CACHE_MAX_LEN`]).
const BINS: usize = CACHE_MAX_LEN / AREA + 1;

/// The record a held mapping carries in its first bytes (its memory is the heap's, mapped
/// read-write, and holds nothing live).
#[repr(C)]
struct Held {
    /// Age list: the mapping freed just before this one (null for the oldest).
    older: *mut Held,
    /// Age list: the one freed just after (null for the newest).
    newer: *mut Held,
    /// List of the same length, newest first.
    next: *mut Held,
    prev: *mut Held,
    /// When it was freed (`Os::now_ms`).
    freed_at: u64,
    /// Its length in bytes.
    len: usize,
}

const _: () = assert!(size_of::<Held>() <= AREA);

/// The held mappings. Invariant: `bytes` is the sum of the lengths of the mappings on the
/// age list, and each is on exactly one length list, that of its length; the age list is
/// ordered by `freed_at`.
pub struct Retained {
    bins: [*mut Held; BINS],
    oldest: *mut Held,
    newest: *mut Held,
    bytes: usize,
}

impl Default for Retained {
    fn default() -> Self {
        Self::new()
    }
}

impl Retained {
    /// Nothing held.
    pub const fn new() -> Self {
        Retained {
            bins: [null_mut(); BINS],
            oldest: null_mut(),
            newest: null_mut(),
            bytes: 0,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Hold the freed mapping `p .. p + len` (freed at `now`) within `budget` bytes in
    /// all; returns what to unmap instead: the oldest mapping if the new one needs its
    /// room, and the new one if it still does not fit (or is too long to hold).
    ///
    /// # Safety
    /// The mapping is the heap's, read-write, at least `size_of::<Held>()` long and holds
    /// nothing live; it is the pool's until it is taken or handed back.
    pub unsafe fn put(&mut self, p: *mut u8, len: usize, budget: usize, now: u64) -> Evicted {
        if len > CACHE_MAX_LEN || len > budget || !len.is_multiple_of(AREA) {
            return [Some((p, len)), None];
        }
        let mut out: Evicted = [None, None];
        if self.bytes + len > budget {
            out[0] = self.pop();
        }
        if self.bytes + len > budget {
            out[1] = Some((p, len));
            return out;
        }
        let h = p.cast::<Held>();
        let bin = &mut self.bins[len / AREA];
        // SAFETY: the caller gives us the mapping's first bytes; listed records are held
        // mappings'.
        unsafe {
            // freed before the newest (a thread's decay gives up what waited already):
            // first in line to expire, the age list staying in order
            let early = !self.newest.is_null() && now < (*self.newest).freed_at;
            h.write(Held {
                older: if early { null_mut() } else { self.newest },
                newer: if early { self.oldest } else { null_mut() },
                next: *bin,
                prev: null_mut(),
                freed_at: if early {
                    now.min((*self.oldest).freed_at)
                } else {
                    now
                },
                len,
            });
            if !bin.is_null() {
                (**bin).prev = h;
            }
            *bin = h;
            if early {
                (*self.oldest).older = h;
                self.oldest = h;
            } else {
                if self.newest.is_null() {
                    self.oldest = h;
                } else {
                    (*self.newest).newer = h;
                }
                self.newest = h;
            }
        }
        self.bytes += len;
        out
    }

    /// A held mapping of at least `len` bytes and at most twice that (the newest of the
    /// shortest length that has one), taken out: its address and length.
    pub fn take(&mut self, len: usize) -> Option<(*mut u8, usize)> {
        let first = len.div_ceil(AREA);
        let last = (2 * len / AREA).min(BINS - 1);
        let k = (first..=last).find(|&k| !self.bins[k].is_null())?;
        let h = self.bins[k];
        // SAFETY: a listed record is a held mapping's.
        unsafe { self.unlink(h) };
        Some((h.cast(), k * AREA))
    }

    /// Take out the oldest mapping.
    pub fn pop(&mut self) -> Option<(*mut u8, usize)> {
        let h = self.oldest;
        if h.is_null() {
            return None;
        }
        // SAFETY: a listed record is a held mapping's.
        Some((h.cast(), unsafe { self.unlink(h) }))
    }

    /// The oldest mapping, taken out, if it was freed [`DECAY_MS`] or longer before `now`
    /// and more than `keep` bytes are held.
    pub fn expired(&mut self, now: u64, keep: usize) -> Option<(*mut u8, usize)> {
        let at = self.oldest_at()?;
        if DECAY_MS == 0 || self.bytes <= keep || at.saturating_add(DECAY_MS) > now {
            return None;
        }
        self.pop()
    }

    /// When the oldest mapping was freed, if any is held.
    pub fn oldest_at(&self) -> Option<u64> {
        // SAFETY: a listed record is a held mapping's.
        (!self.oldest.is_null()).then(|| unsafe { (*self.oldest).freed_at })
    }

    /// The invariant, checked (the walker's): the age list is ordered by time and its
    /// lengths sum to `bytes`; each length list holds only mappings of its length, newest
    /// first, and all of them together are the age list. `Err` names what is broken.
    pub fn check(&self) -> Result<(), &'static str> {
        // SAFETY: listed records are held mappings' (what is checked is their links).
        unsafe {
            let (mut n, mut bytes, mut last, mut prev) = (0usize, 0usize, 0u64, null_mut());
            let mut h = self.oldest;
            while !h.is_null() {
                if (*h).older != prev || (*h).freed_at < last {
                    return Err("held mappings' age list");
                }
                (n, bytes, last, prev) = (n + 1, bytes + (*h).len, (*h).freed_at, h);
                h = (*h).newer;
            }
            if prev != self.newest || bytes != self.bytes {
                return Err("held mappings' bytes");
            }
            let mut m = 0;
            for (k, &head) in self.bins.iter().enumerate() {
                let (mut h, mut prev) = (head, null_mut());
                while !h.is_null() {
                    if (*h).prev != prev || (*h).len != k * AREA {
                        return Err("held mappings' length lists");
                    }
                    (m, prev) = (m + 1, h);
                    h = (*h).next;
                }
            }
            if m != n {
                return Err("held mappings on no length list");
            }
        }
        Ok(())
    }

    /// Take `h` off both lists; its length.
    ///
    /// # Safety
    /// `h` is listed.
    unsafe fn unlink(&mut self, h: *mut Held) -> usize {
        // SAFETY: the caller's contract; the neighbours are listed records.
        unsafe {
            let Held {
                older,
                newer,
                next,
                prev,
                len,
                ..
            } = h.read();
            if prev.is_null() {
                self.bins[len / AREA] = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            if older.is_null() {
                self.oldest = newer;
            } else {
                (*older).newer = newer;
            }
            if newer.is_null() {
                self.newest = older;
            } else {
                (*newer).older = older;
            }
            self.bytes -= len;
            len
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Page-aligned memory standing in for mappings.
    #[repr(C, align(4096))]
    struct Pages([u8; 4096 * 40]);

    fn pages() -> std::boxed::Box<Pages> {
        std::boxed::Box::new(Pages([0; 4096 * 40]))
    }

    /// Page `page` of the stand-in memory whose first byte is `base` (every pointer
    /// derived from the one raw pointer, so none invalidates another).
    fn at(base: *mut u8, page: usize) -> *mut u8 {
        base.wrapping_add(page * 4096)
    }

    #[test]
    fn takes_the_newest_of_the_shortest_length_within_twice_the_request() {
        let mut m = pages();
        let m = m.0.as_mut_ptr();
        let mut r = Retained::new();
        let (a, b, c, d) = (at(m, 0), at(m, 4), at(m, 8), at(m, 20));
        // SAFETY: distinct stand-in mappings, unused.
        unsafe {
            assert_eq!(r.put(a, 4 << 12, 1 << 30, 1), [None, None]);
            assert_eq!(r.put(b, 4 << 12, 1 << 30, 2), [None, None]);
            assert_eq!(r.put(c, 8 << 12, 1 << 30, 3), [None, None]);
            assert_eq!(r.put(d, 2 << 12, 1 << 30, 4), [None, None]);
        }
        assert_eq!(r.bytes(), 18 << 12);
        assert_eq!(r.check(), Ok(()));
        // 3 pages: the 4-page ones (newest first), not 2 (too short) nor 8 (over twice)
        assert_eq!(r.take(3 << 12), Some((b, 4 << 12)));
        assert_eq!(r.take(3 << 12), Some((a, 4 << 12)));
        assert_eq!(r.take(3 << 12), None);
        assert_eq!(r.take(5 << 12), Some((c, 8 << 12)));
        assert_eq!(r.bytes(), 2 << 12);
        assert_eq!(r.pop(), Some((d, 2 << 12)));
        assert_eq!(r.pop(), None);
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn a_full_budget_evicts_the_oldest_and_refuses_what_still_does_not_fit() {
        let mut m = pages();
        let m = m.0.as_mut_ptr();
        let mut r = Retained::new();
        let (a, b, c) = (at(m, 0), at(m, 10), at(m, 20));
        // SAFETY: as above.
        unsafe {
            assert_eq!(r.put(a, 4 << 12, 8 << 12, 1), [None, None]);
            assert_eq!(r.put(b, 4 << 12, 8 << 12, 2), [None, None]);
            assert_eq!(r.put(c, 4 << 12, 8 << 12, 3), [Some((a, 4 << 12)), None]);
            assert_eq!(
                r.put(a, 12 << 12, 12 << 12, 4),
                [Some((b, 4 << 12)), Some((a, 12 << 12))]
            );
            // too long to hold at all
            let long = CACHE_MAX_LEN + 4096;
            assert_eq!(r.put(a, long, usize::MAX, 5), [Some((a, long)), None]);
        }
        assert_eq!(r.bytes(), 4 << 12);
    }

    #[test]
    fn mappings_expire_oldest_first_after_the_decay_time_down_to_what_is_kept() {
        if DECAY_MS == 0 {
            let mut r = Retained::new();
            assert_eq!(r.expired(u64::MAX, 0), None, "no expiry without decay");
            return;
        }
        let mut m = pages();
        let m = m.0.as_mut_ptr();
        let mut r = Retained::new();
        let (a, b, c) = (at(m, 0), at(m, 10), at(m, 20));
        // SAFETY: as above.
        unsafe {
            r.put(a, 1 << 12, usize::MAX, 100);
            r.put(b, 2 << 12, usize::MAX, 200);
            r.put(c, 3 << 12, usize::MAX, 300);
        }
        assert_eq!(r.oldest_at(), Some(100));
        assert_eq!(r.expired(100 + DECAY_MS - 1, 0), None);
        assert_eq!(r.expired(200 + DECAY_MS, 0), Some((a, 1 << 12)));
        // a taken mapping leaves the age list too
        assert_eq!(r.take(2 << 12), Some((b, 2 << 12)));
        assert_eq!(r.expired(200 + DECAY_MS, 0), None);
        // one freed earlier than the newest goes first in line
        let d = at(m, 30);
        // SAFETY: as above.
        unsafe { r.put(d, 1 << 12, usize::MAX, 150) };
        assert_eq!(r.oldest_at(), Some(150));
        assert_eq!(r.check(), Ok(()));
        assert_eq!(r.expired(150 + DECAY_MS, 0), Some((d, 1 << 12)));
        // what is kept does not expire
        assert_eq!(r.expired(u64::MAX, 3 << 12), None);
        assert_eq!(r.expired(u64::MAX, 0), Some((c, 3 << 12)));
        assert_eq!(r.oldest_at(), None);
    }
}
