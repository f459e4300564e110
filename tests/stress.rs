//! Multithreaded stress: threads allocate (through thread caches and not), realloc, free
//! their own blocks and each other's (blocks pass through a shared queue and outlive the
//! thread that made them), exit and are replaced, while the main thread forks with the
//! heap's atfork protocol and the child uses the heap. Contents are checked on every free
//! and the walker checks the heap at the end. In `make test` as it is, and built with
//! ThreadSanitizer by `ci/tsan.sh`, which must report nothing.
#![allow(clippy::undocumented_unsafe_blocks)]

mod common;

use std::sync::{Arc, Mutex};

use common::Rng;
use ngmalloc_core::Heap;
use ngmalloc_core::os::linux::{FutexLock, Linux};
use ngmalloc_core::os::{Os, Prot};
use ngmalloc_core::tcache::ThreadCache;
use std::ptr::NonNull;

/// The raw Linux backend with its mapping calls made through libc: ThreadSanitizer sees
/// libc's `mmap` and `munmap` (not raw system calls) and forgets what it knew of an
/// unmapped range, so an address range the kernel hands out again is not taken for a
/// racing reuse of the old memory (a report seen in CI with the raw backend).
struct LibcOs;

fn prot(p: Prot) -> libc::c_int {
    match p {
        Prot::None => libc::PROT_NONE,
        Prot::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
    }
}

// SAFETY: libc's calls are the system calls the raw backend makes.
unsafe impl Os for LibcOs {
    const USE_BRK: bool = false;

    unsafe fn mmap(at: *mut u8, len: usize, p: Prot, fixed: bool) -> Option<NonNull<u8>> {
        let flags =
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if fixed { libc::MAP_FIXED } else { 0 };
        let r = unsafe { libc::mmap(at.cast(), len, prot(p), flags, -1, 0) };
        if r == libc::MAP_FAILED {
            None
        } else {
            NonNull::new(r.cast())
        }
    }
    unsafe fn munmap(p: *mut u8, len: usize) {
        unsafe { libc::munmap(p.cast(), len) };
    }
    unsafe fn mremap_to(_p: *mut u8, _old: usize, new: usize, to: *mut u8) -> bool {
        // Refused (the destination given up), so large blocks grow by copy here: a
        // moving mremap unmaps its source range behind ThreadSanitizer's back (it does not
        // intercept mremap), and a later mapping there would be taken for a racing reuse.
        // Other tests cover mremap.
        unsafe { libc::munmap(to.cast(), new) };
        false
    }
    unsafe fn mprotect(p: *mut u8, len: usize, pr: Prot) -> bool {
        unsafe { libc::mprotect(p.cast(), len, prot(pr)) == 0 }
    }
    unsafe fn release(p: *mut u8, len: usize) -> bool {
        unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) == 0 }
    }
    unsafe fn guard(p: *mut u8, len: usize, install: bool) -> bool {
        // MADV_GUARD_INSTALL, MADV_GUARD_REMOVE
        unsafe { libc::madvise(p.cast(), len, if install { 102 } else { 103 }) == 0 }
    }
    unsafe fn guard_faults(p: *mut u8) -> bool {
        unsafe { Linux::<false>::guard_faults(p) }
    }
    unsafe fn brk(_to: usize) -> usize {
        0
    }
    fn page_size() -> usize {
        Linux::<false>::page_size()
    }
    fn random() -> u64 {
        Linux::<false>::random()
    }
}

type H = Heap<LibcOs, FutexLock>;

/// A block in flight: address, length, fill byte.
type Block = (usize, usize, u8);

fn fill(p: *mut u8, n: usize, v: u8) {
    unsafe { p.write_bytes(v, n) };
}

fn intact(a: usize, n: usize, v: u8) -> bool {
    let p = std::ptr::with_exposed_provenance::<u8>(a);
    (0..n).all(|i| unsafe { *p.add(i) } == v)
}

fn size(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=79 => r.below(512) as usize,
        80..=97 => r.below(8192) as usize,
        _ => r.below(300_000) as usize,
    }
}

fn worker(h: &H, queue: &Mutex<Vec<Block>>, seed: u64, ops: usize) {
    let tc = h.cache_create();
    let tc: Option<&mut ThreadCache> = unsafe { tc.as_mut() };
    let mut tc = tc;
    let mut r = Rng(seed);
    let mut mine: Vec<Block> = Vec::new();
    let v = seed as u8 | 1;
    for _ in 0..ops {
        match r.below(10) {
            0..=3 => {
                let n = size(&mut r);
                let p = h
                    .malloc_with(tc.as_deref_mut(), n)
                    .expect("malloc")
                    .as_ptr();
                fill(p, n, v);
                mine.push((p.expose_provenance(), n, v));
            }
            4 if !mine.is_empty() => {
                let k = r.below(mine.len() as u64) as usize;
                let (a, n, v) = mine[k];
                let m = size(&mut r);
                let p = std::ptr::with_exposed_provenance_mut(a);
                let q = unsafe { h.realloc(p, m) }.expect("realloc").as_ptr();
                assert!(
                    intact(q.expose_provenance(), n.min(m), v),
                    "realloc lost data"
                );
                fill(q, m, v);
                mine[k] = (q.expose_provenance(), m, v);
            }
            5 | 6 if !mine.is_empty() => {
                let b = mine.swap_remove(r.below(mine.len() as u64) as usize);
                queue.lock().unwrap().push(b);
            }
            7 | 8 => {
                let b = queue.lock().unwrap().pop();
                if let Some((a, n, v)) = b {
                    assert!(intact(a, n, v), "a block changed in flight");
                    let p = std::ptr::with_exposed_provenance_mut(a);
                    unsafe { h.free_with(tc.as_deref_mut(), p) };
                }
            }
            _ if !mine.is_empty() => {
                let (a, n, v) = mine.swap_remove(r.below(mine.len() as u64) as usize);
                assert!(intact(a, n, v), "a block changed");
                let p = std::ptr::with_exposed_provenance_mut(a);
                unsafe { h.free_with(tc.as_deref_mut(), p) };
            }
            _ => {}
        }
    }
    // what is left goes to the queue: it outlives this thread
    queue.lock().unwrap().extend(mine);
    if let Some(tc) = tc {
        unsafe { h.cache_destroy(tc) };
    }
}

/// Fork with the atfork protocol musl's glue follows; the child must find a working heap.
fn fork_and_use(h: &H) {
    h.atfork(-1);
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        h.atfork(1);
        // (no walk here: the other threads' caches were forked wherever those threads
        // were in their lock-free operations, and nothing reads them in a child)
        let ok = (0..100).all(|i| {
            h.malloc(i * 37).is_some_and(|p| {
                fill(p.as_ptr(), i * 37, 5);
                let ok = intact(p.as_ptr().expose_provenance(), i * 37, 5);
                unsafe { h.free(p.as_ptr()) };
                ok
            })
        });
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    h.atfork(0);
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed"
    );
}

#[test]
fn threads_free_each_others_blocks_exit_and_fork() {
    let h: Arc<H> = Arc::new(Heap::new(FutexLock::new()));
    let queue = Arc::new(Mutex::new(Vec::<Block>::new()));
    let ops = if cfg!(debug_assertions) {
        10_000
    } else {
        20_000
    };
    for round in 0..4u64 {
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (h, queue) = (h.clone(), queue.clone());
                std::thread::spawn(move || worker(&h, &queue, round * 16 + t + 1, ops))
            })
            .collect();
        fork_and_use(&h);
        for t in threads {
            t.join().unwrap();
        }
    }
    for (a, n, v) in std::mem::take(&mut *queue.lock().unwrap()) {
        assert!(intact(a, n, v));
        unsafe { h.free(std::ptr::with_exposed_provenance_mut(a)) };
    }
    let s = h.walk().unwrap();
    assert_eq!((s.in_use, s.large, s.owned), (0, 0, 0));
}
