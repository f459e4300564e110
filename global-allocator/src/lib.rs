//! ngmalloc as Rust's global allocator.
//!
//! ngmalloc is musl's allocator, mallocng, redesigned for speed and hardened: groups of
//! equal slots with in-band headers checked against out-of-band records in secret-tagged
//! pages, per-thread groups with no lock on the fast paths, check bytes after every
//! block, guards around large blocks, freed memory given back. This crate puts it under a
//! Rust program, on stable Rust, with no C compiler and nothing downloaded at build time.
//!
//! # Quick start
//!
//! ```toml
//! [dependencies]
//! ngmalloc = { path = "/path/to/ngmalloc/global-allocator" } # or { git = "<its repository>" }
//! ```
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: ngmalloc::NgMalloc = ngmalloc::NgMalloc;
//!
//! fn main() {
//!     let v: Vec<u64> = (0..1000).collect();
//!     assert_eq!(v.iter().sum::<u64>(), 499_500);
//! }
//! ```
//!
//! Linux only (it maps memory with the kernel's system calls), `-gnu` and `-musl` targets,
//! x86_64 and aarch64, static and dynamic.
//!
//! # What is checked
//!
//! Every `dealloc` and `realloc` checks its pointer as C's `free` does in ngmalloc (a
//! pointer the allocator did not hand out, a double free, a corrupted header or check
//! bytes after the data all stop the process at once) and, what only a sized interface
//! allows, the [`Layout`] against the block: a size other than the one allocated, or an
//! alignment the pointer does not have, is a type confusion or a stale length, and stops
//! the process too (as C23's `free_aligned_sized`). A stop is an illegal instruction
//! (`SIGILL`): nothing is formatted or allocated on the way.
//!
//! # Options
//!
//! The hardening options of the C libraries (`make HARDEN=...`) are Cargo features of
//! the same names: `harden-zero-on-free`, `harden-random-slots`, `harden-quarantine`,
//! `harden-big-guards`, `harden-freed-word`, `harden-string-end`, `harden-canary-room`,
//! and `harden-all`. What each stops and costs is in the repository's README (Hardening).
//!
//! # With C code in the same program
//!
//! This heap is the Rust program's alone: C code linked into the program keeps calling its
//! libc's `malloc` (glibc's, musl's, or on the ngmalloc sysroot ngmalloc's C heap, a second
//! and independent ngmalloc). Memory crosses between them only by copying or by handing it
//! back to the side that allocated it: a block from Rust's `Box` or `Vec` must be freed by
//! Rust, a block from C's `malloc` by C's `free` (ngmalloc stops the process if it is given
//! a pointer it did not hand out).
//!
//! # Threads
//!
//! Each thread gets a cache of its own on its first allocation (its groups, served with no
//! lock); a thread's exit gives it back, through a pthread key's destructor. Memory freed
//! by another thread reaches the owner's groups with one atomic operation. `fork` is safe:
//! the heap's lock is taken around it.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ffi::c_void;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::AtomicBool;
use core::sync::atomic::Ordering::Relaxed;

use ngmalloc_core::Heap;
use ngmalloc_core::config::UNIT;
use ngmalloc_core::heap::Resize;
use ngmalloc_core::os::linux::{FutexLock, Linux, register_atfork};
use ngmalloc_core::tcache::ThreadCache;
use ngmalloc_core::thread_word::{ExitHook, WORD_NONE, exit_cache, word_cache, word_cached};

/// The program's libc owns the program break: meta areas come from `mmap` only.
type Sys = Linux<false>;

/// The Rust program's heap (a C library's `malloc` in the same process has its own).
static HEAP: Heap<Sys, FutexLock> = Heap::new(FutexLock::new());

/// Where a thread's exit is learned: its destructor gives the thread's cache back.
static EXIT: ExitHook = ExitHook::new();

/// Whether the fork handlers are registered (by the first thread to make a cache).
static FORK_HOOKS: AtomicBool = AtomicBool::new(false);

std::thread_local! {
    /// The thread's word (`ngmalloc_core::thread_word`): constant-initialised and without
    /// a destructor, so reading it is one load and it stays readable while other thread
    /// locals are destroyed (whose destructors may free).
    static WORD: Cell<usize> = const { Cell::new(WORD_NONE) };
}

/// Blocks up to this size are cleared by `alloc_zeroed` without asking whether their
/// memory is fresh from the system (the question costs more than clearing them).
const CLEAR_BELOW: usize = 4096;

/// ngmalloc as a [`GlobalAlloc`]: declare it the `#[global_allocator]`.
///
/// Every value of this type is the same allocator: the heap is one per process.
#[derive(Debug, Default, Clone, Copy)]
pub struct NgMalloc;

#[inline(always)]
fn word() -> usize {
    WORD.with(Cell::get)
}

fn set_word(w: usize) {
    WORD.with(|c| c.set(w));
}

/// The calling thread's cache if it has one, with no call: the fast paths' test.
#[inline(always)]
fn cached() -> Option<&'static mut ThreadCache> {
    word_cached(word())
}

/// The calling thread's cache, made on its first call; `None`: the locked paths.
fn cache() -> Option<&'static mut ThreadCache> {
    word_cache(word(), make_cache)
}

#[cold]
fn make_cache() -> Option<&'static mut ThreadCache> {
    // (the libc records the handlers with its own malloc, not with this heap)
    if !FORK_HOOKS.swap(true, Relaxed) {
        register_atfork(fork_prepare, fork_parent, fork_child);
    }
    EXIT.make_cache(&HEAP, thread_exit, set_word)
}

/// A thread's exit: give its cache back.
unsafe extern "C" fn thread_exit(tc: *mut c_void) {
    // SAFETY: the cache this thread made; no one else uses it.
    unsafe { exit_cache(&HEAP, tc, set_word) };
}

unsafe extern "C" fn fork_prepare() {
    HEAP.atfork(-1);
}
unsafe extern "C" fn fork_parent() {
    HEAP.atfork(0);
}
unsafe extern "C" fn fork_child() {
    HEAP.atfork(1);
}

fn out(p: Option<NonNull<u8>>) -> *mut u8 {
    p.map_or(null_mut(), NonNull::as_ptr)
}

/// `n` bytes aligned to [`UNIT`]: the cache's pop inline, everything else out of line.
#[inline(always)]
fn malloc(n: usize) -> *mut u8 {
    match cached() {
        Some(tc) => match HEAP.malloc_fast(tc, n) {
            Some(p) => p.as_ptr(),
            None => malloc_miss(Some(tc), n),
        },
        None => malloc_slow(n),
    }
}

/// Everything `malloc` does past the cache's pop (refills, the locked path).
#[inline(never)]
fn malloc_miss(tc: Option<&'static mut ThreadCache>, n: usize) -> *mut u8 {
    out(HEAP.malloc_miss(tc, n))
}

/// `malloc` for a thread whose cache is not made yet, or that has none.
#[inline(never)]
fn malloc_slow(n: usize) -> *mut u8 {
    malloc_miss(cache(), n)
}

/// `dealloc` for a thread whose cache is not made yet, or that has none.
///
/// # Safety
/// As [`GlobalAlloc::dealloc`].
#[inline(never)]
unsafe fn dealloc_slow(p: *mut u8, size: usize, align: usize) {
    // the next call finds the cache made here; this one takes the locked path
    let _ = cache();
    // SAFETY: forwarded; the heap checks `p` and the layout before it frees.
    unsafe { HEAP.free_sized(p, size, Some(align)) }
}

// SAFETY: blocks are live until freed, never overlap, and have the layout's size and
// alignment (malloc's blocks are UNIT-aligned, larger alignments go through
// `aligned_alloc`); the heap is shared between threads through its lock and the caches'
// protocol, which the core model-checks.
unsafe impl GlobalAlloc for NgMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= UNIT {
            malloc(layout.size())
        } else {
            out(HEAP.aligned_alloc(layout.align(), layout.size()))
        }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        match cached() {
            // SAFETY: the caller's contract; the heap checks `p` and the layout.
            Some(tc) => unsafe { HEAP.free_layout_cached(tc, p, layout.size(), layout.align()) },
            // SAFETY: as above.
            None => unsafe { dealloc_slow(p, layout.size(), layout.align()) },
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract.
        let p = unsafe { self.alloc(layout) };
        // a block fresh from the system reads as zero already
        // SAFETY: `p` is a live block of `layout.size()` bytes.
        if !p.is_null() && (layout.size() < CLEAR_BELOW || !unsafe { HEAP.is_allzero(p) }) {
            // SAFETY: as above.
            unsafe { p.write_bytes(0, layout.size()) };
        }
        p
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract: `p` is a live block of `layout`, which the heap
        // checks first, as `dealloc` does; a resize leaves `p` valid only on `Copy`.
        unsafe {
            HEAP.check_sized(p, layout.size(), Some(layout.align()));
            // a larger alignment is not kept by every resize (a large block moved by
            // mremap has its data at its mapping's end): those blocks are copied
            if layout.align() <= UNIT
                && let Resize::Done(r) = HEAP.resize(p, new_size)
            {
                return out(r);
            }
            let r = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !r.is_null() {
                core::ptr::copy_nonoverlapping(p, r, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
            r
        }
    }
}
