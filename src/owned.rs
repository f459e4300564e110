//! The heap's side of thread ownership: a group made for a thread cache, given back to
//! the heap when its thread exits (or leaves it), settled where mallocng would have it,
//! adopted by a thread that misses, and retired when its owner gave it up empty. Each
//! runs under the heap lock; the owner's side is `tcache.rs`.

use core::ptr::null_mut;
use core::sync::atomic::Ordering::{Relaxed, SeqCst};

use crate::check::{check, ok};
use crate::config::{IB, NUM_CLASSES};
use crate::heap::{KEEP, State, Unmap};
use crate::list::{checked_links, dequeue, queue};
use crate::masks::{Mask, free_slots};
use crate::meta::{Meta, activate_group, clear_zeroed, low_mask};
use crate::os::Os;
use crate::size_class::class_size;
use crate::tcache::ThreadCache;

impl State {
    /// A new group of class `sc` for the thread cache `owner` (`tcache.rs`): every slot
    /// in `avail_mask` (the owner hands them out lowest first, so untouched pages stay
    /// untouched without mallocng's progressive activation), unlisted. Its slots take
    /// any request of the class (a single-slot mapping is not cut to the request that
    /// made it: the owner reuses it for the class).
    ///
    /// # Safety
    /// The lock is held; `owner` is a live cache of this heap.
    pub(crate) unsafe fn own_group<O: Os>(
        &mut self,
        sc: usize,
        secret: u64,
        owner: *mut ThreadCache,
    ) -> Option<*mut Meta> {
        // SAFETY: the new group is fresh and unreachable from any other thread.
        unsafe {
            let m = self.alloc_group::<O>(sc, class_size(sc) - IB, secret)?;
            let last = (*m).last_idx;
            (*m).avail_mask.store(low_mask(last as usize), Relaxed);
            (*m).freed_mask.store(0, Relaxed);
            (*(*m).mem).active_idx = last;
            (*m).owner.store(owner, Relaxed);
            Some(m)
        }
    }

    /// Give the group `g`, which its owner has taken off its list, to the heap: its
    /// thread exits. Its free slots, the owner's and those other threads freed, become
    /// the heap's (`freed_mask`; the heap's `avail_mask` is the list head's), and it goes
    /// where mallocng would have it ([`State::settle`]).
    ///
    /// Sequentially consistent, against a remote free ([`crate::masks::free_remote`]):
    /// the owner is cleared, then `freed` read; the free ORs its bit, then reads the
    /// owner. Either this sees the bit, or the free sees the group disowned and settles it
    /// under the lock after this: a group emptied or first freed by that free is freed or
    /// listed either way (loom: `a_group_given_back_meets_a_remote_free`).
    ///
    /// # Safety
    /// The lock is held; `g` is live, owned by an exiting cache, off its list.
    pub(crate) unsafe fn disown<O: Os>(&mut self, g: *mut Meta, secret: u64) -> Unmap {
        // SAFETY: the caller's contract.
        unsafe {
            (*g).owner.store(null_mut(), SeqCst);
            (*g).freed_mask.sc_order();
            let a = (*g).avail_mask.load(Relaxed);
            // (the union `freed | avail` stays the free slots throughout, for a mallocng
            // free that reads both meanwhile)
            let free = (*g).freed_mask.fetch_or(a, SeqCst) | a;
            (*g).avail_mask.store(0, Relaxed);
            // (an owner's release marks are exact only for slots free since its last
            // sweep: `tcache::came_back`)
            (*g).clean_mask &= free & (*g).swept_mask;
            (*g).swept_mask &= free;
            self.settle::<O>(g, secret)
        }
    }

    /// Put the heap's group `g` where its masks say, as mallocng's `nontrivial_free`
    /// would: freed if no slot is in use (and it can be), on its class's active list if
    /// it has a free slot, else off every list. Idempotent, so either side of a race
    /// ([`State::disown`]) may run it.
    ///
    /// # Safety
    /// The lock is held; `g` is a live record of the heap's (`owner` null) and either on
    /// its class's active list or on none.
    pub(crate) unsafe fn settle<O: Os>(&mut self, g: *mut Meta, secret: u64) -> Unmap {
        // SAFETY: the caller's contract; listed records are live.
        unsafe {
            let sc = (*g).sizeclass as usize;
            check!(sc < NUM_CLASSES);
            let free = free_slots(&(*g).freed_mask, &(*g).avail_mask);
            let listed = !(*g).next.is_null();
            if free == low_mask((*g).last_idx as usize) && (*g).freeable != 0 {
                if listed {
                    self.unlist(sc, g);
                }
                return self.free_group::<O>(g, secret);
            }
            clear_zeroed(g);
            if free != 0 && !listed {
                queue(&mut self.active[sc], g);
            }
            KEEP
        }
    }

    /// Take `g` off its class's active list; if it was the head, the new head hands out
    /// slots from now on (mallocng's `activate_group` of the next group).
    ///
    /// # Safety
    /// The lock is held; `g` is on the active list of class `sc`.
    pub(crate) unsafe fn unlist(&mut self, sc: usize, g: *mut Meta) {
        // SAFETY: the caller's contract; listed records are live.
        unsafe {
            let was_head = self.active[sc] == g;
            dequeue(&mut self.active[sc], g);
            if was_head && !self.active[sc].is_null() {
                activate_group(self.active[sc]);
            }
        }
    }

    /// A group of the heap's for the cache `owner`, whose own groups of class `sc` have
    /// no free slot: the first on the class's active list with one (groups there with
    /// none are dropped from the list, as `try_avail` does), made `owner`'s with every
    /// free slot in `avail_mask`. What exited threads gave back is reused before a group
    /// is made.
    ///
    /// # Safety
    /// The lock is held; `owner` is a live cache of this heap.
    pub(crate) unsafe fn adopt(&mut self, sc: usize, owner: *mut ThreadCache) -> Option<*mut Meta> {
        // SAFETY: listed records are live and the heap's; the lock is held.
        unsafe {
            let head = self.active[sc];
            if head.is_null() {
                return None;
            }
            let tail = ok(checked_links(head)).0;
            let mut g = head;
            loop {
                let next = ok(checked_links(g)).1;
                if free_slots(&(*g).freed_mask, &(*g).avail_mask) == 0 {
                    dequeue(&mut self.active[sc], g);
                } else if (*g).hosts.load(Relaxed) == 0 {
                    break;
                }
                // (a group hosting nested groups stays the heap's: their frees are
                // locked ones, and only the heap would see it empty when they go)
                if g == tail {
                    return None;
                }
                g = next;
            }
            dequeue(&mut self.active[sc], g);
            // Owner first: a free that still sees the group as the heap's takes the
            // lock for a first or last free, and `nontrivial_free` sees the owner.
            (*g).owner.store(owner, Relaxed);
            let a = crate::masks::collect(&(*g).freed_mask, &(*g).avail_mask);
            (*(*g).mem).active_idx = (*g).last_idx;
            // (released slots stay marked: the owner's sweep skips them, its free clears)
            (*g).clean_mask &= a;
            (*g).swept_mask &= a;
            clear_zeroed(g);
            if !self.active[sc].is_null() && (*self.active[sc]).avail_mask.load(Relaxed) == 0 {
                // (the head hands out `avail`: give the new head its freed slots)
                activate_group(self.active[sc]);
            }
            Some(g)
        }
    }

    /// Tear down the empty, unlisted group `g` its owner gives up; a group of donated
    /// memory, which is never unmapped, goes back to the heap's list instead.
    ///
    /// # Safety
    /// The lock is held; `g` is live, owned, off its owner's list, with every slot in
    /// `avail_mask` and none freed by another thread after it was collected.
    pub(crate) unsafe fn retire_owned<O: Os>(&mut self, g: *mut Meta, secret: u64) -> Unmap {
        // SAFETY: the caller's contract: nothing can reach the group's slots any more.
        unsafe {
            if (*g).freeable == 0 {
                return self.disown::<O>(g, secret);
            }
            (*g).owner.store(null_mut(), Relaxed);
            self.free_group::<O>(g, secret)
        }
    }
}
