//! Donated memory: musl's dynamic linker gives the heap the gaps of loaded segments,
//! which become groups that are never unmapped (mallocng's `donate.c`).

use core::ptr::null_mut;

use crate::config::{NUM_CLASSES, UNIT};
use crate::heap::{Heap, init_group};
use crate::list::queue;
use crate::lock::RawLock;
use crate::os::Os;
use crate::pagemap;
use crate::policy::round_up;
use crate::size_class::SIZE_CLASSES;

impl<O: Os, L: RawLock> Heap<O, L> {
    /// Give the heap a range of otherwise unused memory (musl's dynamic linker donates the
    /// gaps in loaded segments). Bad ranges are ignored; the memory is never unmapped.
    ///
    /// # Safety
    /// `start .. end` is writable memory that nothing else uses, now or later.
    pub unsafe fn donate(&self, start: *mut u8, end: *mut u8) {
        if start.is_null() || end.addr() <= start.addr() {
            return;
        }
        let mut a = round_up(start.addr(), UNIT);
        let b = end.addr() & !(UNIT - 1);
        if b <= a {
            return;
        }
        // SAFETY: the caller gives us the whole range, readable for good.
        unsafe {
            start.write_bytes(0, end.addr() - start.addr());
            if !pagemap::register::<O>(start, end.addr() - start.addr(), null_mut()) {
                return;
            }
        }
        let Some(mut st) = self.locked() else {
            return;
        };
        let secret = st.secret;
        let mut sc = NUM_CLASSES - 1;
        while sc > 0 && b > a {
            let span = (SIZE_CLASSES[sc] as usize + 1) * UNIT;
            if b - a >= span {
                // SAFETY: the lock is held; `a .. a + span` is donated, zeroed memory.
                unsafe {
                    let Some(m) = st.alloc_meta::<O>(secret) else {
                        return;
                    };
                    let mem = start.with_addr(a);
                    // a free slot (zeroed memory: no header decodes in it)
                    init_group(m, mem, 0, 0, sc as u8, 0, 0, 1);
                    (*m).freeable = 0;
                    queue(&mut st.active[sc], m);
                }
                a += span;
            }
            sc = sc.saturating_sub(4);
        }
    }
}
