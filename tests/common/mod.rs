//! The host test backend: the raw Linux backend plus per-thread call counters, an emulated
//! program break (a private reservation, so the test harness's own libc malloc, which owns
//! the real break, is never disturbed) and fault injection.
// Tests call the allocator's unsafe API on purpose, with pointers the test itself just got
// from the heap (or corrupts on purpose): the contract of each call is what is under test.
#![allow(clippy::undocumented_unsafe_blocks, dead_code)]

use std::cell::Cell;
use std::ptr::NonNull;

use ngmalloc_core::Heap;
use ngmalloc_core::os::linux::{FutexLock, Linux};
use ngmalloc_core::os::{Os, Prot};

pub type Raw = Linux<false>;

/// Calls made by the current thread's heaps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    pub mmap: u64,
    pub munmap: u64,
    /// the range of the latest `munmap`: (start, length)
    pub last_munmap: (usize, usize),
    pub mremap: u64,
    pub mprotect: u64,
    pub release: u64,
    pub released_bytes: u64,
    pub guard: u64,
    pub brk: u64,
}

const BRK_SPAN: usize = 64 << 20;

thread_local! {
    static CALLS: Cell<Calls> = Cell::new(Calls::default());
    /// Emulated break: (reservation start, current break); 0 = not set up.
    static BRK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Whether the emulated break refuses to move.
    static BRK_FAIL: Cell<bool> = const { Cell::new(false) };
    /// Fail every mapping call (mmap, mremap, mprotect) once this many have been made;
    /// u64::MAX = never.
    static FAIL_AFTER: Cell<u64> = const { Cell::new(u64::MAX) };
    static MAP_CALLS: Cell<u64> = const { Cell::new(0) };
    /// Fault injection over every call that can fail (see [`inject_fault`]).
    static FAULT: Cell<Fault> = const { Cell::new(Fault::NONE) };
    static GUARDS: Cell<Guards> = const { Cell::new(Guards::Real) };
}

/// What `MADV_GUARD_INSTALL` does for this thread's heaps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Guards {
    /// installs real guards (Linux 6.13+)
    Real,
    /// fails with EINVAL, as on an older kernel or a locked mapping
    Missing,
    /// succeeds and installs nothing, as under qemu-user
    Fake,
}

pub fn set_guards(g: Guards) {
    GUARDS.with(|c| c.set(g));
}

pub fn calls() -> Calls {
    CALLS.with(|c| c.get())
}

fn bump(f: impl FnOnce(&mut Calls)) {
    CALLS.with(|c| {
        let mut v = c.get();
        f(&mut v);
        c.set(v)
    })
}

pub fn set_brk_fail(v: bool) {
    BRK_FAIL.with(|c| c.set(v));
}

/// Make mapping calls fail from the `n`-th one on (counting from now).
pub fn fail_maps_after(n: u64) {
    MAP_CALLS.with(|c| c.set(0));
    FAIL_AFTER.with(|c| c.set(n));
}

pub fn stop_failing() {
    FAIL_AFTER.with(|c| c.set(u64::MAX));
}

fn map_allowed() -> bool {
    let n = MAP_CALLS.with(|c| {
        let v = c.get();
        c.set(v + 1);
        v
    });
    n < FAIL_AFTER.with(|c| c.get())
}

/// Fault injection: calls that can fail (mmap, mremap, mprotect, madvise for release and
/// for guards, brk) are numbered from 0 as they are made; call `at` fails, and with
/// `persist` every later one too. The numbering is per thread, like the heaps' counters.
#[derive(Debug, Clone, Copy)]
struct Fault {
    calls: u64,
    at: u64,
    persist: bool,
}

impl Fault {
    const NONE: Fault = Fault {
        calls: 0,
        at: u64::MAX,
        persist: false,
    };
}

/// Start numbering fallible calls from 0 and fail call `at` (and, with `persist`, every
/// one after it). `u64::MAX` injects nothing and only counts.
pub fn inject_fault(at: u64, persist: bool) {
    FAULT.with(|c| {
        c.set(Fault {
            calls: 0,
            at,
            persist,
        })
    });
}

/// Fallible calls made since the last [`inject_fault`].
pub fn fault_calls() -> u64 {
    FAULT.with(|c| c.get().calls)
}

/// Number this call; whether it is to fail.
fn faulted() -> bool {
    FAULT.with(|c| {
        let mut f = c.get();
        let n = f.calls;
        f.calls += 1;
        c.set(f);
        n == f.at || (f.persist && n > f.at)
    })
}

/// The emulated break's reservation, for tests that inspect it.
pub fn brk_region() -> (usize, usize) {
    BRK.with(|c| c.get())
}

pub struct TestOs;

thread_local! {
    /// The test clock (milliseconds), per thread: what `TestOs::now_ms` reads.
    static CLOCK: Cell<u64> = const { Cell::new(1_000_000) };
    /// Reads of the test clock, per thread.
    static CLOCK_READS: Cell<u64> = const { Cell::new(0) };
}

/// How often this thread's heaps read the clock.
pub fn clock_reads() -> u64 {
    CLOCK_READS.with(|c| c.get())
}

/// Move this thread's test clock on by `ms`.
pub fn advance_clock(ms: u64) {
    CLOCK.with(|c| c.set(c.get() + ms));
}

// SAFETY: forwards to the raw Linux backend; the emulated break lives in a reservation
// of its own that nothing else uses.
unsafe impl Os for TestOs {
    const USE_BRK: bool = true;

    fn now_ms() -> u64 {
        CLOCK_READS.with(|c| c.set(c.get() + 1));
        CLOCK.with(|c| c.get())
    }

    unsafe fn mmap(at: *mut u8, len: usize, prot: Prot, fixed: bool) -> Option<NonNull<u8>> {
        bump(|c| c.mmap += 1);
        if faulted() || !map_allowed() {
            return None;
        }
        unsafe { Raw::mmap(at, len, prot, fixed) }
    }
    unsafe fn munmap(p: *mut u8, len: usize) {
        bump(|c| {
            c.munmap += 1;
            c.last_munmap = (p.addr(), len);
        });
        unsafe { Raw::munmap(p, len) }
    }
    unsafe fn mremap_to(p: *mut u8, old: usize, new: usize, to: *mut u8) -> bool {
        bump(|c| c.mremap += 1);
        if faulted() || !map_allowed() {
            // a failure gives the destination up (the call never reached the kernel:
            // the reservation is still there, and ours)
            unsafe { Raw::munmap(to, new) };
            return false;
        }
        unsafe { Raw::mremap_to(p, old, new, to) }
    }
    unsafe fn mprotect(p: *mut u8, len: usize, prot: Prot) -> bool {
        bump(|c| c.mprotect += 1);
        if faulted() || !map_allowed() {
            return false;
        }
        unsafe { Raw::mprotect(p, len, prot) }
    }
    unsafe fn release(p: *mut u8, len: usize) -> bool {
        bump(|c| {
            c.release += 1;
            c.released_bytes += len as u64
        });
        if faulted() {
            return false;
        }
        unsafe { Raw::release(p, len) }
    }
    unsafe fn guard(p: *mut u8, len: usize, install: bool) -> bool {
        bump(|c| c.guard += 1);
        if faulted() {
            return false;
        }
        match GUARDS.with(|c| c.get()) {
            Guards::Real => unsafe { Raw::guard(p, len, install) },
            Guards::Missing => false,
            Guards::Fake => true,
        }
    }
    unsafe fn guard_faults(p: *mut u8) -> bool {
        // the real probe, also for fake guards: there the kernel's write succeeds
        unsafe { Raw::guard_faults(p) }
    }
    unsafe fn brk(to: usize) -> usize {
        bump(|c| c.brk += 1);
        let (base, cur) = BRK.with(|c| c.get());
        let (base, cur) = if base == 0 {
            let r = unsafe { Raw::mmap(std::ptr::null_mut(), BRK_SPAN, Prot::None, false) }
                .expect("brk reservation")
                .as_ptr()
                .addr();
            // an unaligned start, as a real break after .bss is
            BRK.with(|c| c.set((r, r + 123)));
            (r, r + 123)
        } else {
            (base, cur)
        };
        if to == 0 {
            return cur;
        }
        if faulted() || BRK_FAIL.with(|c| c.get()) || to < cur || to > base + BRK_SPAN {
            return cur;
        }
        let lo = cur & !4095;
        let hi = (to + 4095) & !4095;
        let p = std::ptr::with_exposed_provenance_mut(lo);
        assert!(unsafe { Raw::mprotect(p, hi - lo, Prot::ReadWrite) });
        BRK.with(|c| c.set((base, to)));
        to
    }
    fn page_size() -> usize {
        Raw::page_size()
    }
    fn random() -> u64 {
        Raw::random()
    }
}

/// The futex lock, counting acquisitions per thread (what the thread-cache tests assert).
pub struct TestLock(FutexLock);

thread_local! {
    static LOCKS: Cell<u64> = const { Cell::new(0) };
}

/// Lock acquisitions by the current thread so far.
pub fn locks() -> u64 {
    LOCKS.with(|c| c.get())
}

unsafe impl ngmalloc_core::lock::RawLock for TestLock {
    fn lock(&self) {
        LOCKS.with(|c| c.set(c.get() + 1));
        self.0.lock();
    }
    fn unlock(&self) {
        self.0.unlock();
    }
    fn reset(&self) {
        self.0.reset();
    }
}

pub type TestHeap = Heap<TestOs, TestLock>;

pub fn heap() -> Box<TestHeap> {
    Box::new(Heap::new(TestLock(FutexLock::new())))
}

/// A small deterministic PRNG (xorshift64*), so a failing seed can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Run `f` in a forked child and return how the child ended: `Ok(code)` for an exit,
/// `Err(signal)` for a signal.
pub fn in_child(f: impl FnOnce()) -> Result<i32, i32> {
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            // (the test threads fork without the heaps' atfork protocol: a page-map
            // update another test ran at the fork is not the child's)
            ngmalloc_core::pagemap::fork_child();
            f();
            libc::_exit(0);
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        if libc::WIFEXITED(status) {
            Ok(libc::WEXITSTATUS(status))
        } else {
            Err(libc::WTERMSIG(status))
        }
    }
}
