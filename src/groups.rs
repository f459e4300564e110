//! Groups made and freed under the heap lock: mallocng's `alloc_group` and `free_group`,
//! the choice between keeping an empty group and freeing it (`okay_to_free`), and what
//! the heap holds of freed group mappings (`retain.rs`) within its budget and the decay
//! time. The paths that take and give back slots are `heap.rs`'s; a thread's own groups
//! are `tcache.rs`'s, handed over by `owned.rs`.

use core::ptr::null_mut;
use core::sync::atomic::Ordering::Relaxed;

use crate::cache::{CACHE_BYTES, group_budget};
use crate::check::{check, ok};
use crate::config::{AREA, DECAY_MS, GUARD_PAGES, IB, NUM_CLASSES, ZERO_ON_FREE};
use crate::heap::{Heap, KEEP, State, Unmap, init_group, unmap};
use crate::list::queue;
use crate::lock::RawLock;
use crate::masks::{free_locked, free_slots};
use crate::meta::{Meta, clear_zeroed, low_mask, storage, stride};
use crate::os::{Os, Prot};
use crate::pagemap;
use crate::policy::{GroupPlan, plan_group};
use crate::retain::RETAIN_FROM;
use crate::size_class::class_size;
use crate::slot::{Key, MARKED_STRIDE, enframe, find_host, mark_freed, mark_nested, retire};

/// Whether a new group's memory comes straight from `mmap`.
enum Fresh {
    Yes,
    No,
}

impl<O: Os, L: RawLock> Heap<O, L> {
    /// [`State::or_shed`] without the lock: it is taken to shed the caches only.
    pub(crate) fn or_shed<T>(&self, mut f: impl FnMut() -> Option<T>) -> Option<T> {
        // (one call of `f`, so that it is inlined once)
        let mut shed = false;
        loop {
            if let Some(v) = f() {
                return Some(v);
            }
            if shed || !self.shed_caches() {
                return None;
            }
            shed = true;
        }
    }

    /// Take the lock and shed the caches' mappings; whether there were any.
    #[cold]
    #[inline(never)]
    fn shed_caches(&self) -> bool {
        // SAFETY: the lock is held (the guard is a temporary, dropped at the end of the
        // statement); the caches' mappings are unused.
        unsafe {
            self.locked()
                .is_some_and(|mut st| st.flush_map_caches::<O>())
        }
    }
}

impl State {
    /// Unmap every mapping the caches keep; whether there was any. Cached mappings hold
    /// address space, which counts against `RLIMIT_AS` and `RLIMIT_DATA` (and commit
    /// charge) though their pages are gone: when a mapping fails, they are what to give up
    /// before failing the allocation.
    ///
    /// # Safety
    /// The lock is held.
    pub(crate) unsafe fn flush_map_caches<O: Os>(&mut self) -> bool {
        let guard = GUARD_PAGES * self.pagesize;
        let mut any = false;
        // SAFETY: cached mappings are the heap's and hold nothing live; a large block is
        // cached without the configured guard on each side.
        unsafe {
            while let Some((p, len)) = self.cache.pop() {
                unmap::<O>(p, len);
                any = true;
            }
            while let Some((p, len)) = self.large_cache.pop() {
                unmap::<O>(p.wrapping_sub(guard), len + 2 * guard);
                any = true;
            }
            let (p, len) = core::mem::replace(&mut self.large_held, (null_mut(), 0));
            if !p.is_null() {
                unmap::<O>(p, len);
                any = true;
            }
        }
        any
    }

    /// `f`, and once more after the caches' mappings are shed if it failed and there were
    /// any: what a call that needs memory (a mapping, a record, page-map entries) does
    /// before it fails the allocation.
    ///
    /// # Safety
    /// The lock is held.
    pub(crate) unsafe fn or_shed<O: Os, T>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<T> {
        let mut shed = false;
        loop {
            if let Some(v) = f(self) {
                return Some(v);
            }
            // SAFETY: forwarded.
            if shed || !unsafe { self.flush_map_caches::<O>() } {
                return None;
            }
            shed = true;
        }
    }

    /// Bytes of freed group mappings that may be held when one of `len` bytes is put:
    /// a share of the live ones (`group_budget`); with decay, up to their recent peak.
    pub(crate) fn retain_budget(&self, len: usize) -> usize {
        let share = group_budget(self.group_bytes, len);
        if DECAY_MS == 0 || self.retain_peak < RETAIN_FROM {
            share.min(CACHE_BYTES)
        } else {
            share.max(self.retain_peak)
        }
    }

    /// When the oldest held group mapping was freed, and the bytes that can expire, if
    /// any can: what is held within the share of the live groups that stays does not make
    /// a thread wait (it would read the clock on its calls for nothing).
    pub(crate) fn retained_wait(&self) -> Option<(u64, usize)> {
        let keep = group_budget(self.group_bytes, 0);
        let over = self.cache.bytes().checked_sub(keep).filter(|&b| b != 0)?;
        Some((self.cache.oldest_at()?, over))
    }

    /// Unmap the held group mappings that have been free [`DECAY_MS`] (down to the share
    /// of the live groups that stays); the peak they are held against starts again.
    ///
    /// # Safety
    /// The lock is held.
    pub(crate) unsafe fn expire_retained<O: Os>(&mut self) {
        let Some(at) = self.cache.oldest_at() else {
            return;
        };
        if DECAY_MS == 0 {
            return;
        }
        let now = O::now_ms();
        if at.saturating_add(DECAY_MS) > now {
            return;
        }
        let keep = group_budget(self.group_bytes, 0);
        while let Some((p, len)) = self.cache.expired(now, keep) {
            // SAFETY: a held mapping is the heap's and holds nothing live.
            unsafe { unmap::<O>(p, len) };
        }
        self.retain_peak = self.group_bytes + self.cache.bytes();
    }

    /// mallocng `alloc_group`: a new group for `sc`, sized from usage by [`plan_group`].
    ///
    /// # Safety
    /// The lock is held.
    pub(crate) unsafe fn alloc_group<O: Os>(
        &mut self,
        sc: usize,
        req: usize,
        secret: u64,
    ) -> Option<*mut Meta> {
        // SAFETY: the lock is held; the memory set up is fresh (a new mapping, or a slot
        // just taken from the host class).
        unsafe {
            let m = self.alloc_meta::<O>(secret)?;
            let usage = self.usage_by_class[sc];
            let coarse = if sc & 1 == 0 && sc < 32 {
                self.usage_by_class[sc + 1]
            } else {
                0
            };
            let plan = plan_group(sc, usage, coarse, req, self.pagesize, &mut self.bounce);
            let (p, cnt, active_idx, maplen, fresh) = match plan {
                GroupPlan::Mapped {
                    cnt,
                    len,
                    active_idx,
                } => {
                    self.expire_retained::<O>();
                    if let Some((p, len)) = self.cache.take(len) {
                        // the pages stay registered while held: a new hint cannot fail
                        pagemap::register::<O>(p, len, m);
                        self.group_bytes += len;
                        self.retain_peak = self.retain_peak.max(self.group_bytes);
                        (p, cnt, active_idx, (len / AREA) as u32, Fresh::No)
                    } else {
                        let map = |_: &mut Self| O::mmap(null_mut(), len, Prot::ReadWrite, false);
                        let Some(p) = self.or_shed::<O, _>(map) else {
                            self.free_meta(m);
                            return None;
                        };
                        if !pagemap::register::<O>(p.as_ptr(), len, m) {
                            O::munmap(p.as_ptr(), len);
                            self.free_meta(m);
                            return None;
                        }
                        self.stats.groups_mapped += 1;
                        self.group_bytes += len;
                        self.retain_peak = self.retain_peak.max(self.group_bytes);
                        (p.as_ptr(), cnt, active_idx, (len / AREA) as u32, Fresh::Yes)
                    }
                }
                GroupPlan::Nested {
                    cnt,
                    host_class,
                    host_req,
                } => {
                    let Some(idx) = self.alloc_slot::<O>(host_class, host_req, secret) else {
                        self.free_meta(m);
                        return None;
                    };
                    let host = self.active[host_class];
                    let p = enframe(host, idx, class_size(host_class) - IB, self.cycle, secret);
                    mark_nested(p, secret);
                    (*host).hosts.fetch_or(1 << idx, Relaxed);
                    self.stats.groups_nested += 1;
                    (p, cnt, cnt - 1, 0, Fresh::No)
                }
            };
            self.cycle = self.cycle.wrapping_add(1);
            self.usage_by_class[sc] += cnt;
            let avail = low_mask(active_idx);
            let freed = low_mask(cnt - 1) & !avail;
            init_group(m, p, cnt - 1, active_idx, sc as u8, maplen, avail, freed);
            match fresh {
                Fresh::Yes => (*m).zeroed_or_used = (cnt == 1 && stride(m) > MARKED_STRIDE) as u8,
                // Reused memory holds stale data: an old allocation's header at a slot's
                // start, keyed by the same secret and address, would still decode, so each
                // is marked freed.
                Fresh::No => {
                    let (st, base) = (stride(m), storage((*m).mem));
                    if ZERO_ON_FREE {
                        // slots must read as zero when first handed out
                        base.write_bytes(0, cnt * st - IB);
                    }
                    for i in 0..cnt {
                        let p = base.wrapping_add(i * st);
                        mark_freed(p, Key::of(secret, p));
                    }
                }
            }
            Some(m)
        }
    }

    /// mallocng `nontrivial_free`: the locked part of free, when slot `i` of `g` is the
    /// first freed (the group must be listed again) or the last in use (it may go away).
    ///
    /// # Safety
    /// The lock is held; `g` is live and slot `i` in use and validated.
    pub(crate) unsafe fn nontrivial_free<O: Os>(
        &mut self,
        g: *mut Meta,
        i: usize,
        secret: u64,
    ) -> Unmap {
        // SAFETY: the lock is held; listed records are live.
        unsafe {
            let bit = 1u32 << i;
            if !(*g).owner.load(Relaxed).is_null() {
                // a thread adopted the group since this free saw it the heap's: its
                // owner collects the slot (owners change only under the lock)
                free_locked(&(*g).freed_mask, bit);
                return KEEP;
            }
            let sc = (*g).sizeclass as usize;
            let mask = free_slots(&(*g).freed_mask, &(*g).avail_mask);
            if mask + bit == low_mask((*g).last_idx as usize) && self.okay_to_free(g) {
                // any multi-slot group is necessarily on an active list here, but
                // single-slot groups might or might not be.
                if !(*g).next.is_null() {
                    check!(sc < NUM_CLASSES);
                    self.unlist(sc, g);
                }
                return self.free_group::<O>(g, secret);
            } else if mask == 0 {
                check!(sc < NUM_CLASSES);
                // might still be active if there were no allocations after the last
                // available slot was taken.
                if self.active[sc] != g {
                    queue(&mut self.active[sc], g);
                }
            }
            // a kept single-slot group's memory is no longer fresh
            clear_zeroed(g);
            free_locked(&(*g).freed_mask, bit);
            KEEP
        }
    }

    /// mallocng `free_group`: tear down an empty group; its mapping is returned for
    /// unmapping after the lock is dropped, a nested group's host slot is freed.
    ///
    /// # Safety
    /// The lock is held; `g` is live, unlisted and empty.
    pub(crate) unsafe fn free_group<O: Os>(&mut self, g: *mut Meta, secret: u64) -> Unmap {
        // SAFETY: the lock is held; the host slot of a nested group is validated.
        unsafe {
            let sc = (*g).sizeclass as usize;
            if sc < NUM_CLASSES {
                self.usage_by_class[sc] -= (*g).last_idx as usize + 1;
            }
            let unmap = if (*g).maplen != 0 {
                self.bounce.step_seq();
                self.bounce.record_seq(sc);
                let (mem, len) = ((*g).mem.cast::<u8>(), (*g).maplen as usize * AREA);
                if sc < NUM_CLASSES {
                    self.group_bytes = self.group_bytes.saturating_sub(len);
                    let now = match self.freed_since {
                        _ if DECAY_MS == 0 => 0,
                        Some(t) => t,
                        None => O::now_ms(),
                    };
                    let budget = self.retain_budget(len);
                    self.cache.put(mem, len, budget, now)
                } else {
                    self.retire_large::<O>(g, mem, len)
                }
            } else {
                let p = (*g).mem.cast::<u8>();
                let host = ok(find_host(p, secret));
                (*(*g).mem).meta = null_mut();
                // not checking size/reserved here; it's intentionally invalid
                retire(p, &host, crate::slot::freed_word(secret));
                (*host.meta).hosts.fetch_and(!(1 << host.idx), Relaxed);
                self.nontrivial_free::<O>(host.meta, host.idx, secret)
            };
            self.free_meta(g);
            unmap
        }
    }

    /// mallocng `okay_to_free`: whether an empty group should go, or be kept for reuse.
    ///
    /// # Safety
    /// `g` is live; the lock is held.
    pub(crate) unsafe fn okay_to_free(&self, g: *mut Meta) -> bool {
        // SAFETY: forwarded.
        unsafe {
            let sc = (*g).sizeclass as usize;
            if (*g).freeable == 0 {
                return false;
            }
            // always free individual mmaps not suitable for reuse
            if sc >= NUM_CLASSES || stride(g) < class_size(sc) {
                return true;
            }
            // always free groups allocated inside another group's slot since recreating
            // them should not be expensive and they might be blocking freeing of a much
            // larger group.
            if (*g).maplen == 0 {
                return true;
            }
            // if there is another non-full group, free this one to consolidate future
            // allocations, reduce fragmentation.
            if (*g).next != g {
                return true;
            }
            // free any group in a size class that's not bouncing
            if !self.bounce.is_bouncing(sc) {
                return true;
            }
            let cnt = (*g).last_idx as usize + 1;
            let usage = self.usage_by_class[sc];
            // if usage is high enough that a larger count should be used, free the
            // low-count group so a new one will be made.
            if 9 * cnt <= usage && cnt < 20 {
                return true;
            }
            // otherwise, keep the last group in a bouncing class.
            false
        }
    }
}
