//! Individually mapped blocks (128 KiB and up): `[guard][group header, data][guard]`,
//! the guards `MADV_GUARD_INSTALL` markers where the kernel has them and PROT_NONE
//! sub-mappings where it does not, freed blocks kept guarded for reuse (`cache.rs`).

use core::ptr::{NonNull, null_mut};
use core::sync::atomic::Ordering::Relaxed;

use crate::check::check;
use crate::config::{AREA, CLASS_MMAP, GUARD_PAGES, IB, QUARANTINE, UNIT};
use crate::heap::{Heap, Resize, State, Unmap, init_group, unmap};
use crate::lock::RawLock;
use crate::meta::{Group, Meta, large_guards, set_large_guards, set_shape, storage};
use crate::os::{Os, Prot};
use crate::pagemap;
use crate::policy::round_up;
use crate::slot::{Key, Slot, enframe, reframe, set_size};

/// [`Heap::guard_mode`]'s states: not tried yet, markers, PROT_NONE sub-mappings.
pub(crate) const GUARD_UNTRIED: u8 = 0;
pub(crate) const GUARD_MADVISE: u8 = 1;
pub(crate) const GUARD_PROTNONE: u8 = 2;

/// The freed large blocks that the next large allocations do not take, newest first: at
/// least the last one, so that a write through a dangling pointer to a block just freed
/// faults on its guarded data instead of landing in the next block (which took its
/// mapping before: C's `free(p); q = malloc(n); p[i] = x`); with `harden-quarantine`,
/// [`QUARANTINE`]. Costs address space and a VMA (the data holds no memory), and one
/// mapping more in a loop of one large block at a time.
pub const LARGE_HELD: usize = if QUARANTINE == 0 { 1 } else { QUARANTINE };

impl<O: Os, L: RawLock> Heap<O, L> {
    /// An individually mapped allocation: `[guard][group header, data][guard]`, the data
    /// ending right before the trailing guard (see `enframe`), so an overflow faults
    /// within a few bytes and an underflow past the header faults too.
    pub(crate) fn malloc_large(&self, n: usize) -> Option<NonNull<u8>> {
        let ps = self.page_size();
        let data = round_up(n + IB + UNIT, ps);
        let guard = GUARD_PAGES * ps;
        if data / AREA > u32::MAX as usize {
            return None;
        }
        let (mem, lead, protnone) = match self.reuse_large(data) {
            Some((mem, lead)) => (mem, lead, false),
            None => {
                let len = data + 2 * guard;
                // SAFETY: a fresh anonymous mapping, ours.
                let map = || unsafe { O::mmap(null_mut(), len, Prot::ReadWrite, false) };
                let base = self.or_shed(map)?.as_ptr();
                let mem = base.wrapping_add(guard);
                // SAFETY: both guard ranges are ours and hold nothing.
                let protnone = unsafe {
                    let a = self.install_guard(base, guard);
                    let b = self.install_guard(mem.wrapping_add(data), guard);
                    a | b
                };
                (mem, guard, protnone)
            }
        };
        let base = mem.wrapping_sub(lead);
        let len = lead + data + guard;
        let Some(mut st) = self.locked() else {
            // SAFETY: the mapping is ours and unused.
            unsafe { unmap::<O>(base, len) };
            return None;
        };
        let secret = st.secret;
        st.bounce.step_seq();
        // A record and the page map's entries may need memory of their own, which the
        // caches may hold (the block's own mapping may just have fitted).
        // SAFETY: the lock is held; `g` is a fresh record and `mem` a fresh mapping, both
        // ours; the data is mapped readable; a failed registration undoes itself, so it
        // may be retried.
        let g = unsafe {
            let Some(g) = st.or_shed::<O, _>(|st| st.alloc_meta::<O>(secret)) else {
                drop(st);
                unmap::<O>(base, len);
                return None;
            };
            let register = |_: &mut State| pagemap::register::<O>(mem, data, g).then_some(());
            if st.or_shed::<O, _>(register).is_none() {
                st.free_meta(g);
                drop(st);
                unmap::<O>(base, len);
                return None;
            }
            init_group(g, mem, 0, 0, CLASS_MMAP, (data / AREA) as u32, 0, 0);
            (*g).zeroed_or_used = 1;
            set_large_guards(g, lead, guard, protnone);
            g
        };
        st.stats.large_mapped += 1;
        st.cycle = st.cycle.wrapping_add(1);
        let ctr = st.cycle;
        drop(st);
        // SAFETY: the only slot of a fresh group, which holds `n` bytes.
        NonNull::new(unsafe { enframe(g, 0, n, ctr, secret) })
    }

    /// A cached large block of at least `span` bytes (at most twice), not among the
    /// [`LARGE_HELD`] freed last, made accessible
    /// again: its last `span` bytes become the new block's memory (reading as zero), the
    /// surplus before them stays guarded as a longer leading guard, so the data still ends
    /// right before the trailing guard and starts right after the leading one. Returns the
    /// new `mem` and its leading guard; `None` if there is none or it cannot be reopened.
    pub(crate) fn reuse_large(&self, span: usize) -> Option<(*mut u8, usize)> {
        let (old, len) = self.locked()?.large_cache.take(span, LARGE_HELD)?;
        let guard = GUARD_PAGES * self.page_size();
        let mem = old.wrapping_add(len - span);
        // SAFETY: the block left the cache: it is ours alone.
        unsafe {
            if O::guard(mem, span, false) {
                return Some((mem, guard + len - span));
            }
            unmap::<O>(old.wrapping_sub(guard), len + 2 * guard);
        }
        None
    }

    /// Make `p .. p + len` a guard; returns whether it had to be a PROT_NONE sub-mapping.
    /// A failure of both leaves the range accessible rather than fail the allocation.
    ///
    /// # Safety
    /// The range is the heap's and holds nothing live.
    pub(crate) unsafe fn install_guard(&self, p: *mut u8, len: usize) -> bool {
        // SAFETY: forwarded.
        unsafe {
            let mode = self.guard_mode.load(Relaxed);
            if mode != GUARD_PROTNONE {
                if O::guard(p, len, true) {
                    if mode == GUARD_MADVISE || O::guard_faults(p) {
                        // (a failure elsewhere meanwhile keeps PROT_NONE)
                        let _ = self.guard_mode.compare_exchange(
                            GUARD_UNTRIED,
                            GUARD_MADVISE,
                            Relaxed,
                            Relaxed,
                        );
                        return false;
                    }
                    // a marker that does not fault does not zap pages either: the cache of
                    // freed large blocks would hand out stale data as zeroed
                    O::guard(p, len, false);
                }
                self.guard_mode.store(GUARD_PROTNONE, Relaxed);
            }
            O::mprotect(p, len, Prot::None);
        }
        true
    }

    /// [`Heap::resize`] of an individually mapped block to `n` bytes, also mapped: in place
    /// (a shrink turns the tail into guard), or grown by `mremap` with its guards (markers
    /// move with the pages). `None`: copy it instead.
    ///
    /// # Safety
    /// `s` is the validated slot of the live block `p`; its guards are markers.
    pub(crate) unsafe fn resize_large(
        &self,
        p: *mut u8,
        s: &Slot,
        n: usize,
        secret: u64,
    ) -> Option<Resize> {
        let g = s.meta;
        // SAFETY: the block is the caller's, so its record's `mem` and `maplen` are ours
        // to change; every range changed lies in its mapping.
        unsafe {
            check!((*g).sizeclass == CLASS_MMAP);
            let ps = self.page_size();
            let off = p.addr() - s.start.addr();
            let needed = round_up(n + off + UNIT + IB, ps);
            let old_data = (*g).maplen as usize * AREA;
            let (lead, trail, _) = large_guards(g);
            let guard = GUARD_PAGES * ps;
            let mem = (*g).mem.cast::<u8>();
            if needed / AREA > u32::MAX as usize {
                // fall through to the copy, which fails the same way
            } else if needed <= old_data {
                // Shrink in place: the tail becomes trailing guard (its pages zapped).
                // No mremap, so no hole in the address space.
                if needed < old_data {
                    let (tail, tail_len) = (mem.wrapping_add(needed), old_data - needed);
                    pagemap::unregister::<O>(tail, tail_len);
                    if !O::guard(tail, tail_len, true) {
                        // cannot guard the tail: keep the block as it is (its leaves
                        // exist, so registering it again cannot fail)
                        pagemap::register::<O>(tail, tail_len, g);
                        set_size(p, s, n);
                        return Some(Resize::Done(NonNull::new(p)));
                    }
                    set_shape(g, 0, (*g).sizeclass, (needed / AREA) as u32);
                    set_large_guards(g, lead, trail + old_data - needed, false);
                }
                // the data now ends before the new trailing guard
                let end = mem.wrapping_add(needed - IB);
                set_size(p, &Slot { end, ..*s }, n);
                return Some(Resize::Done(NonNull::new(p)));
            } else if O::guard(mem.wrapping_add(old_data), trail, false) {
                // grow: the whole trailing guard becomes data, then the block grows into
                // it or moves (guards included) into a mapping with room, and gets a new
                // trailing guard. (Had the guard stayed, the grown block would fault
                // inside: copy instead.)
                let base = mem.wrapping_sub(lead);
                let old_len = lead + old_data + trail;
                let new_len = lead + needed + guard;
                // out of the page map until it has settled: a range it leaves may be
                // mapped and registered by another thread at once
                pagemap::unregister::<O>(mem, old_data);
                let to = if new_len <= old_len {
                    // it fits before the end of its mapping (it shrank before)
                    let register = || pagemap::register::<O>(mem, needed, g).then_some(());
                    self.or_shed(register).map(|()| base)
                } else {
                    self.or_shed(|| self.move_large(base, old_len, new_len, (lead, needed), g))
                };
                if let Some(to) = to {
                    let mem = to.wrapping_add(lead);
                    let trail = old_len.max(new_len) - lead - needed;
                    (*g).mem = mem.cast::<Group>();
                    set_shape(g, 0, (*g).sizeclass, (needed / AREA) as u32);
                    let protnone = self.install_guard(mem.wrapping_add(needed), trail);
                    set_large_guards(g, lead, trail, protnone);
                    let start = storage((*g).mem);
                    let p = start.wrapping_add(off);
                    // keys depend on the address: frame the block anew (the redirect at
                    // its start moved with it)
                    let end = mem.wrapping_add(needed - IB);
                    reframe(p, Key::of(secret, p), s, end, n);
                    return Some(Resize::Done(NonNull::new(p)));
                }
                // the block stays as it was: put it back in the map (its leaves exist,
                // that cannot fail) and its trailing guard back
                pagemap::register::<O>(mem, old_data, g);
                if self.install_guard(mem.wrapping_add(old_data), trail) {
                    set_large_guards(g, lead, trail, true);
                }
            }
        }
        None
    }

    /// Move the large block mapped at `base .. base + old_len` (its guards markers) to a
    /// new mapping of `new_len` bytes, with `data` bytes at `lead` its data there and `g`
    /// its record; the new base, or `None` with the block where it was.
    ///
    /// The destination is reserved inaccessible first (which neither `RLIMIT_DATA` nor
    /// strict overcommit charges) and entered in the page map before the pages move: its
    /// entries may need a new leaf, and a block moved where the map has none, with no
    /// memory left to make one, could never be freed. Then one `mremap` moves and grows
    /// the mapping over the reservation, so it stays one VMA.
    ///
    /// Each step needs memory (address space, a leaf, the grown mapping's charge): the
    /// caller sheds the caches and tries again on failure.
    ///
    /// # Safety
    /// The block is the caller's, out of the page map, its trailing guard removed.
    unsafe fn move_large(
        &self,
        base: *mut u8,
        old_len: usize,
        new_len: usize,
        (lead, data): (usize, usize),
        g: *mut Meta,
    ) -> Option<*mut u8> {
        // SAFETY: a fresh reservation, ours until the move takes it over (or the failed
        // move gives it up); the block's mapping is the caller's.
        unsafe {
            let to = O::mmap(null_mut(), new_len, Prot::None, false)?.as_ptr();
            let mem = to.wrapping_add(lead);
            // (entries for memory not yet readable: nothing reads through them until the
            // block is handed back, and a forged pointer there names a record whose `mem`
            // is elsewhere until then)
            if !pagemap::register::<O>(mem, data, g) {
                O::munmap(to, new_len);
                return None;
            }
            if O::mremap_to(base, old_len, new_len, to) {
                return Some(to);
            }
            // (the failed move gave up the reservation)
            pagemap::unregister::<O>(mem, data);
            pagemap::trim::<O>(mem, data);
        }
        None
    }
}

impl State {
    /// The memory of a freed block, `len` bytes at `mem` (what `free_group` returns for
    /// unmapping after the lock is dropped).
    ///
    /// # Safety
    /// The lock is held; `g` is an individually mapped block, unlisted and freed.
    pub(crate) unsafe fn retire_large<O: Os>(
        &mut self,
        g: *mut Meta,
        mem: *mut u8,
        len: usize,
    ) -> Unmap {
        // SAFETY: the caller's contract: the mapping is the heap's and holds nothing live.
        unsafe {
            // Keep the block, guards and all, with its data made a guard too: the
            // pages are zapped (no memory), any use after free faults, and the
            // address range is reused whole instead of unmapped and remapped
            // (which fragments the address space into ever more VMAs). Blocks whose
            // data cannot be guarded are unmapped.
            let (lead, trail, protnone) = large_guards(g);
            let guard = GUARD_PAGES * self.pagesize;
            let whole = (mem.wrapping_sub(lead), lead + len + trail);
            // its data is no longer heap memory to the decoder (then guarded, or
            // unmapped with the rest)
            pagemap::unregister::<O>(mem, len);
            if protnone {
                // Not cached (its guards are sub-mappings, which the reuse's `mremap`
                // cannot move), but not unmapped at once either: the next large block
                // would get the same address from the kernel, and a write through a
                // dangling pointer land in it. Held inaccessible until the next such
                // block is freed (or the caches are shed), then unmapped.
                if O::mprotect(mem, len, Prot::None) {
                    let held = core::mem::replace(&mut self.large_held, whole);
                    return [(!held.0.is_null()).then_some(held), None];
                }
                return [Some(whole), None];
            }
            if O::guard(mem, len, true) {
                // cached as a span with the configured guard on each side: the
                // surplus guards are part of the span (already guarded)
                let (span_at, span) = (whole.0.wrapping_add(guard), whole.1 - 2 * guard);
                let guard_of = |e: Option<(*mut u8, usize)>| {
                    e.map(|(p, l)| (p.wrapping_sub(guard), l + 2 * guard))
                };
                let [a, b] = self.large_cache.put(span_at, span);
                [guard_of(a), guard_of(b)]
            } else {
                [Some(whole), None]
            }
        }
    }
}
