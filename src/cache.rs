//! The budget of freed group mappings kept for reuse ([`group_budget`], used by
//! `retain.rs`), and a small cache of freed individually mapped blocks
//! ([`MapCache::large`]), so a churn reuses mappings instead of paying an `munmap` and an
//! `mmap` per operation.
//!
//! mallocng maps medium groups at low usage as single slots and unmaps them as soon as
//! they empty; its bounce detector only covers classes up to 38, so a malloc/free churn
//! of 40–128 KiB blocks costs two system calls per pair. A [`MapCache`] keeps at most
//! [`CACHE_ENTRIES`] mappings within its byte budget; a put that doesn't fit evicts the
//! oldest entry.

/// Mappings kept at most.
pub const CACHE_ENTRIES: usize = 32;
/// Freed group mappings: bytes kept at most without decay (dirty memory, counted in RSS).
pub const CACHE_BYTES: usize = 896 << 10;
/// Freed group mappings: bytes kept at most, as a fraction of the bytes of live group mappings
/// (`1 / GROUP_CACHE_SHARE`) once those reach [`GROUP_CACHE_FULL`] (see [`group_budget`]).
pub const GROUP_CACHE_SHARE: usize = 4;
/// Freed group mappings: live group bytes from which the full share applies.
pub const GROUP_CACHE_FULL: usize = 1 << 20;
/// Freed group mappings: the longest kept, a single-slot group of the largest class (4 KiB
/// pages).
pub const CACHE_MAX_LEN: usize = 132 << 10;
/// Large cache: address space kept at most. Its blocks hold no memory: their pages were
/// zapped by the guard install that makes them inaccessible.
pub const LARGE_CACHE_BYTES: usize = 256 << 20;
/// Large cache: largest block kept.
pub const LARGE_CACHE_MAX_LEN: usize = 64 << 20;

/// Bytes of freed group mappings the cache may hold when `live` bytes of group mappings
/// remain and a mapping of `len` bytes is put: `live / GROUP_CACHE_SHARE`, scaled down by
/// `live / GROUP_CACHE_FULL` below that, and never less than `len`.
///
/// Why scaled: the cached mappings are dirty memory, in RSS until reused. In a small
/// program they were most of what ngmalloc used beyond mallocng. A small heap churns few
/// groups, so the system calls this adds cost little next to mallocng's own; a large
/// heap keeps the full share, and a churn of medium blocks stays at about one call in
/// eight frees (the figures: docs/decisions.md).
///
/// Why at least `len`: the newest mapping always fits (evicting older ones), so a program
/// that frees and allocates one medium block over and over reuses its mapping whatever
/// the size of its heap.
pub const fn group_budget(live: usize, len: usize) -> usize {
    let share = live / GROUP_CACHE_SHARE;
    let budget = if live < GROUP_CACHE_FULL {
        // (live < 1 MiB: no overflow)
        share * (live >> 10) / (GROUP_CACHE_FULL >> 10)
    } else {
        share
    };
    if budget > len { budget } else { len }
}

/// Mappings the cache hands back for unmapping after one `put`: at most the oldest entry
/// and the new mapping itself.
pub type Evicted = [Option<(*mut u8, usize)>; 2];

/// Freed mappings, oldest first. Lengths are multiples of the page size.
pub struct MapCache {
    ents: [(*mut u8, usize); CACHE_ENTRIES],
    n: usize,
    bytes: usize,
    max_bytes: usize,
    max_len: usize,
}

impl MapCache {
    /// The cache of freed individually mapped blocks.
    pub const fn large() -> Self {
        Self::new(LARGE_CACHE_BYTES, LARGE_CACHE_MAX_LEN)
    }

    const fn new(max_bytes: usize, max_len: usize) -> Self {
        MapCache {
            ents: [(core::ptr::null_mut(), 0); CACHE_ENTRIES],
            n: 0,
            bytes: 0,
            max_bytes,
            max_len,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn remove(&mut self, i: usize) -> (*mut u8, usize) {
        let e = self.ents[i];
        self.ents.copy_within(i + 1..self.n, i);
        self.n -= 1;
        self.bytes -= e.1;
        e
    }

    /// The best-fitting mapping of at least `len` bytes and at most twice that (so a small
    /// request never pins a much larger mapping), removed from the cache; the `skip_newest`
    /// most recently put are not considered (a quarantine).
    pub fn take(&mut self, len: usize, skip_newest: usize) -> Option<(*mut u8, usize)> {
        let mut best: Option<usize> = None;
        let old = self.n.saturating_sub(skip_newest);
        for (i, e) in self.ents[..old].iter().enumerate() {
            if e.1 >= len && e.1 / 2 <= len && best.is_none_or(|b| e.1 < self.ents[b].1) {
                best = Some(i);
            }
        }
        best.map(|i| self.remove(i))
    }

    /// Remove the newest entry.
    pub fn pop(&mut self) -> Option<(*mut u8, usize)> {
        self.n.checked_sub(1).map(|i| self.remove(i))
    }

    /// Keep a freed mapping; returns what to unmap instead: the oldest entry if the new
    /// one needs its room, and the new one if it still does not fit (or is too large).
    pub fn put(&mut self, p: *mut u8, len: usize) -> Evicted {
        self.put_within(p, len, self.max_bytes)
    }

    /// [`MapCache::put`] holding at most `budget` bytes (and never more than the cache's
    /// own maximum).
    pub fn put_within(&mut self, p: *mut u8, len: usize, budget: usize) -> Evicted {
        let max_bytes = budget.min(self.max_bytes);
        if len > self.max_len || len > max_bytes {
            return [Some((p, len)), None];
        }
        let mut out: Evicted = [None, None];
        if self.n != 0 && (self.n == CACHE_ENTRIES || self.bytes + len > max_bytes) {
            out[0] = Some(self.remove(0));
        }
        if self.n < CACHE_ENTRIES && self.bytes + len <= max_bytes {
            self.ents[self.n] = (p, len);
            self.n += 1;
            self.bytes += len;
        } else {
            out[1] = Some((p, len));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: usize) -> *mut u8 {
        core::ptr::without_provenance_mut(a)
    }

    #[test]
    fn the_group_budget_shrinks_with_the_heap_but_fits_the_newest_mapping() {
        // a large heap: the full share
        assert_eq!(group_budget(8 << 20, 4096), 2 << 20);
        assert_eq!(group_budget(GROUP_CACHE_FULL, 4096), GROUP_CACHE_FULL / 4);
        // half of it: half its share
        assert_eq!(
            group_budget(GROUP_CACHE_FULL / 2, 4096),
            GROUP_CACHE_FULL / 16
        );
        // 180 KiB of groups (the tree workload): about 8 KiB
        assert_eq!(group_budget(180 << 10, 4096), 8100);
        // the mapping put always fits, even with nothing else live
        assert_eq!(group_budget(0, 132 << 10), 132 << 10);
        assert_eq!(group_budget(64 << 10, 16 << 10), 16 << 10);
        // monotone in the heap's size
        let mut last = 0;
        for live in (0..4 << 20).step_by(4096) {
            let b = group_budget(live, 4096);
            assert!(b >= last && b <= (live / GROUP_CACHE_SHARE).max(4096));
            last = b;
        }
    }

    #[test]
    fn best_fit_within_twice_the_request_and_bounded() {
        let mut c = MapCache::new(CACHE_BYTES, CACHE_MAX_LEN);
        assert_eq!(
            c.put(p(0x1000), 200 << 10),
            [Some((p(0x1000), 200 << 10)), None]
        );
        assert_eq!(c.put(p(0x10000), 64 << 10), [None, None]);
        assert_eq!(c.put(p(0x20000), 16 << 10), [None, None]);
        assert_eq!(c.put(p(0x30000), 32 << 10), [None, None]);
        assert_eq!(c.bytes(), 112 << 10);
        // 12 KiB: 16 KiB fits (within 2x), 32 and 64 don't win
        assert_eq!(c.take(12 << 10, 0), Some((p(0x20000), 16 << 10)));
        // 8 KiB: nothing within twice
        assert_eq!(c.take(8 << 10, 0), None);
        assert_eq!(c.take(40 << 10, 0), Some((p(0x10000), 64 << 10)));
        // fill by bytes: the oldest goes first
        for i in 0..6 {
            assert_eq!(c.put(p(0x100000 * (i + 1)), 132 << 10), [None, None]);
        }
        assert_eq!(c.bytes(), (32 + 6 * 132) << 10);
        let out = c.put(p(0x9000000), 128 << 10);
        assert_eq!(
            out,
            [
                Some((p(0x30000), 32 << 10)),
                Some((p(0x9000000), 128 << 10))
            ]
        );
        assert!(c.bytes() <= CACHE_BYTES);
        // fill by count
        let mut c = MapCache::new(CACHE_BYTES, CACHE_MAX_LEN);
        for i in 0..CACHE_ENTRIES {
            assert_eq!(c.put(p(0x1000 * (i + 1)), 4096), [None, None]);
        }
        assert_eq!(c.put(p(0x777000), 4096), [Some((p(0x1000), 4096)), None]);
    }
}
