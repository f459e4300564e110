//! The C exports of the standalone library (`libngmalloc.so`, `libngmalloc.a`): the only
//! `#[no_mangle]` items. C semantics live here and only here: NULL plus `errno = ENOMEM` on
//! failure and on sizes that overflow, EINVAL for bad alignments, `errno` untouched by
//! successful calls and by `free`. Each export delegates to the heap in a few lines.
//!
//! Behaviour follows musl where C leaves a choice: `realloc(p, 0)` returns a live
//! zero-size allocation; `aligned_alloc`/`memalign` take any power of two (0 too, as
//! musl does) and fail with EINVAL otherwise.

use core::ffi::{c_int, c_void};
use core::ptr::null_mut;

use crate::heap::Heap;
use crate::os::Os;
use crate::os::linux::{
    FutexLock, Linux, append_file, env_into, getpid, register_atfork, set_errno, tls_get, tls_set,
};
use crate::tcache::ThreadCache;
use crate::thread_word::{ExitHook, exit_cache, word_cache, word_cached};

use super::{
    EINVAL, ENOMEM, free_sized_through, free_through, malloc_through, or_enomem, realloc_through,
    valid_align,
};

/// The host libc owns the program break: meta areas come from mmap only.
type Sys = Linux<false>;

static HEAP: Heap<Sys, FutexLock> = Heap::new(FutexLock::new());

fn out(p: Option<core::ptr::NonNull<u8>>) -> *mut c_void {
    or_enomem(p, set_errno)
}

/// Where a thread's exit is learned: its destructor gives the thread's cache back.
static EXIT: ExitHook = ExitHook::new();

/// The calling thread's cache, made on its first call; `None`: use the locked paths.
/// (Its word is initial-exec TLS: see [`crate::thread_word`].)
#[inline(always)]
fn cache() -> Option<&'static mut ThreadCache> {
    word_cache(tls_get(), make_cache)
}

/// The calling thread's cache if it has one, with no call: the fast paths' test.
#[inline(always)]
fn cached() -> Option<&'static mut ThreadCache> {
    word_cached(tls_get())
}

#[cold]
fn make_cache() -> Option<&'static mut ThreadCache> {
    EXIT.make_cache(&HEAP, thread_exit, tls_set)
}

/// Thread exit: give the cache back.
unsafe extern "C" fn thread_exit(tc: *mut c_void) {
    // SAFETY: the cache this thread made; no one else uses it.
    unsafe { exit_cache(&HEAP, tc, tls_set) };
}

/// C `malloc`.
#[unsafe(no_mangle)]
pub extern "C" fn malloc(n: usize) -> *mut c_void {
    malloc_through(&HEAP, cached(), n, malloc_miss, malloc_slow)
}

/// Everything `malloc` does past the cache's pop (refills, the locked path, errno).
#[inline(never)]
fn malloc_miss(tc: Option<&'static mut ThreadCache>, n: usize) -> *mut c_void {
    out(HEAP.malloc_miss(tc, n))
}

/// `malloc` for a thread whose cache is not yet made, or that has none.
#[inline(never)]
fn malloc_slow(n: usize) -> *mut c_void {
    malloc_miss(cache(), n)
}

/// C `free`.
///
/// # Safety
/// `p` is null or a live allocation from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: the caller's contract; invalid pointers crash in the heap's checks.
    unsafe { free_through(&HEAP, cached(), p, free_slow) }
}

/// `free` for a thread whose cache is not yet made, or that has none.
///
/// # Safety
/// As [`free`].
#[inline(never)]
unsafe fn free_slow(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // The thread's first call makes its cache, which the next free finds; this one takes
    // the locked path (no second copy of the cached free in the text).
    let _ = cache();
    // SAFETY: forwarded.
    unsafe { HEAP.free(p.cast()) }
}

/// C23 `free_sized`: crashes if `n` is not the size `p` was allocated with.
///
/// # Safety
/// `p` is null or a live allocation from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_sized(p: *mut c_void, n: usize) {
    // SAFETY: the caller's contract.
    unsafe { free_sized_through(&HEAP, cached(), p, n, None) }
}

/// C23 `free_aligned_sized`: crashes if `n` or `align` does not match the allocation.
///
/// # Safety
/// `p` is null or a live allocation from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, n: usize) {
    // SAFETY: the caller's contract.
    unsafe { free_sized_through(&HEAP, cached(), p, n, Some(align)) }
}

/// C `calloc`.
#[unsafe(no_mangle)]
pub extern "C" fn calloc(m: usize, n: usize) -> *mut c_void {
    match m.checked_mul(n) {
        Some(len) => out(HEAP.calloc(len)),
        None => out(None),
    }
}

/// C `realloc`.
///
/// # Safety
/// `p` is null or a live allocation from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: the caller's contract; the functions are this heap's exports.
    unsafe { realloc_through(&HEAP, p, n, malloc, free, set_errno) }
}

/// BSD/C `reallocarray`.
///
/// # Safety
/// As [`realloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, m: usize, n: usize) -> *mut c_void {
    match m.checked_mul(n) {
        // SAFETY: the caller's contract.
        Some(len) => unsafe { realloc(p, len) },
        None => out(None),
    }
}

/// Aligned allocation shared by the exports; `Err(errno)` on failure.
fn aligned(align: usize, n: usize) -> Result<*mut c_void, c_int> {
    if !valid_align(align) {
        return Err(EINVAL);
    }
    HEAP.aligned_alloc(align.max(1), n)
        .map(|p| p.as_ptr().cast())
        .ok_or(ENOMEM)
}

fn with_errno(r: Result<*mut c_void, c_int>) -> *mut c_void {
    r.unwrap_or_else(|e| {
        set_errno(e);
        null_mut()
    })
}

/// C11 `aligned_alloc`.
#[unsafe(no_mangle)]
pub extern "C" fn aligned_alloc(align: usize, n: usize) -> *mut c_void {
    with_errno(aligned(align, n))
}

/// Legacy `memalign`.
#[unsafe(no_mangle)]
pub extern "C" fn memalign(align: usize, n: usize) -> *mut c_void {
    with_errno(aligned(align, n))
}

/// POSIX `posix_memalign`: returns the error, leaves `errno` alone.
///
/// # Safety
/// `res` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(res: *mut *mut c_void, align: usize, n: usize) -> c_int {
    if align < core::mem::size_of::<*mut c_void>() {
        return EINVAL;
    }
    match aligned(align, n) {
        Ok(p) => {
            // SAFETY: the caller vouches for `res`.
            unsafe { *res = p };
            0
        }
        Err(e) => e,
    }
}

/// Legacy `valloc`: page-aligned.
#[unsafe(no_mangle)]
pub extern "C" fn valloc(n: usize) -> *mut c_void {
    with_errno(aligned(Sys::page_size(), n))
}

/// Legacy `pvalloc`: page-aligned, size rounded up to whole pages (at least one).
#[unsafe(no_mangle)]
pub extern "C" fn pvalloc(n: usize) -> *mut c_void {
    let ps = Sys::page_size();
    match n.checked_add(ps - 1) {
        Some(m) => with_errno(aligned(ps, (m & !(ps - 1)).max(ps))),
        None => out(None),
    }
}

/// `malloc_usable_size`: exactly the size requested (0 for NULL).
///
/// # Safety
/// `p` is null or a live allocation from this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: the caller's contract.
    unsafe { HEAP.usable_size(p.cast()) }
}

/// hardened_malloc's `malloc_object_size`: the bytes from `p` to the end of the live
/// allocation holding it, interior pointers included (a run-time bounds check asks it);
/// `SIZE_MAX` for memory that is not the allocator's; a crash for heap memory no live
/// allocation holds (a dangling pointer).
///
/// # Safety
/// No other thread frees the allocation holding `p` meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_object_size(p: *mut c_void) -> usize {
    // SAFETY: the caller's contract.
    unsafe { HEAP.object_size(p.cast()) }
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

/// Where `NGMALLOC_REPORT` asked for a line at exit (NUL-terminated; empty: no report).
static mut REPORT_PATH: [u8; 256] = [0; 256];

/// Runs when the library is loaded, before `main`, outside any allocator call: fork
/// handlers (the libc may allocate to record them, which comes back here safely) and the
/// optional exit report.
extern "C" fn init() {
    register_atfork(fork_prepare, fork_parent, fork_child);
    // SAFETY: constructors run before any other thread of the program exists.
    unsafe {
        env_into(
            c"NGMALLOC_REPORT",
            &mut *core::ptr::addr_of_mut!(REPORT_PATH),
        )
    };
}

/// At exit, with `NGMALLOC_REPORT=path`, append one line proving which allocator served
/// this process: `ngmalloc pid=.. groups=.. nested=.. large=.. areas=.. caches=..`.
extern "C" fn fini() {
    // SAFETY: written once in `init`, read here at exit.
    let path = unsafe { &*core::ptr::addr_of!(REPORT_PATH) };
    if path[0] == 0 {
        return;
    }
    let s = HEAP.stats();
    let mut line = Line::new();
    line.push(b"ngmalloc pid=").num(getpid() as u64);
    line.push(b" groups=").num(s.groups_mapped);
    line.push(b" nested=").num(s.groups_nested);
    line.push(b" large=").num(s.large_mapped);
    line.push(b" areas=").num(s.meta_areas);
    line.push(b" caches=").num(s.caches);
    line.push(b"\n");
    append_file(path, line.bytes());
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = fini;

/// A fixed-size line buffer: formatting without allocating.
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Line {
            buf: [0; 160],
            len: 0,
        }
    }
    fn push(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self
    }
    fn num(&mut self, mut v: u64) -> &mut Self {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&d[i..])
    }
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
