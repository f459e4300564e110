//! Raw Linux system calls: the backend of the standalone library and the host tests.
//!
//! Memory calls are issued directly (no libc wrapper), so they never touch `errno`. Only
//! three libc functions are used, all present in glibc and musl: `getauxval` (page size
//! and the AT_RANDOM fallback, once), `__errno_location` (to keep `getauxval`'s errno
//! from leaking out).

use core::ptr::NonNull;
use core::sync::atomic::AtomicU32;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::{Os, Prot};
use crate::lock::RawLock;

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const MMAP: usize = 9;
    pub const MPROTECT: usize = 10;
    pub const MUNMAP: usize = 11;
    pub const BRK: usize = 12;
    pub const MREMAP: usize = 25;
    pub const MADVISE: usize = 28;
    pub const FUTEX: usize = 202;
    pub const GETRANDOM: usize = 318;
    pub const OPENAT: usize = 257;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const GETPID: usize = 39;
    pub const CLOCK_GETRES: usize = 229;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const MMAP: usize = 222;
    pub const MPROTECT: usize = 226;
    pub const MUNMAP: usize = 215;
    pub const BRK: usize = 214;
    pub const MREMAP: usize = 216;
    pub const MADVISE: usize = 233;
    pub const FUTEX: usize = 98;
    pub const GETRANDOM: usize = 278;
    pub const OPENAT: usize = 56;
    pub const WRITE: usize = 64;
    pub const CLOSE: usize = 57;
    pub const GETPID: usize = 172;
    pub const CLOCK_GETRES: usize = 114;
}

const PROT_NONE: usize = 0;
const PROT_RW: usize = 3;
const MAP_PRIVATE: usize = 0x02;
const MAP_FIXED: usize = 0x10;
const MAP_ANONYMOUS: usize = 0x20;
const MAP_FIXED_NOREPLACE: usize = 0x10_0000;
const MREMAP_MAYMOVE: usize = 1;
const MREMAP_FIXED: usize = 2;
const MADV_DONTNEED: usize = 4;
const MADV_GUARD_INSTALL: usize = 102;
const MADV_GUARD_REMOVE: usize = 103;
const FUTEX_WAIT_PRIVATE: usize = 128;
const FUTEX_WAKE_PRIVATE: usize = 129;
const GRND_NONBLOCK: usize = 1;
const CLOCK_MONOTONIC: usize = 1;
const EFAULT: isize = 14;
const AT_PAGESZ: usize = 6;
const AT_RANDOM: usize = 25;

/// A system call with up to six arguments; returns the raw result (`-errno` on failure).
///
/// # Safety
/// The call and its arguments must be memory-safe for the caller.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn syscall(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the Linux x86_64 system call ABI; rcx and r11 are clobbered by `syscall`.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

/// A system call with up to six arguments; returns the raw result (`-errno` on failure).
///
/// # Safety
/// The call and its arguments must be memory-safe for the caller.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn syscall(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the Linux aarch64 system call ABI.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack)
        );
    }
    ret
}

/// A result that is a valid address, not `-errno`.
fn mapped(r: isize) -> Option<NonNull<u8>> {
    if (-4095..0).contains(&r) {
        None
    } else {
        NonNull::new(core::ptr::with_exposed_provenance_mut(r as usize))
    }
}

fn prot(p: Prot) -> usize {
    match p {
        Prot::None => PROT_NONE,
        Prot::ReadWrite => PROT_RW,
    }
}

// The standalone library is a `no_std` cdylib, linked with -nodefaultlibs: name libc so
// the library records its dependency.
#[link(name = "c")]
unsafe extern "C" {
    fn getauxval(t: core::ffi::c_ulong) -> core::ffi::c_ulong;
    fn clock_gettime(clock: core::ffi::c_int, ts: *mut i64) -> core::ffi::c_int;
    fn __errno_location() -> *mut core::ffi::c_int;
    fn getenv(name: *const core::ffi::c_char) -> *const core::ffi::c_char;
    fn pthread_key_create(
        key: *mut core::ffi::c_uint,
        dtor: Option<unsafe extern "C" fn(*mut core::ffi::c_void)>,
    ) -> core::ffi::c_int;
    fn pthread_setspecific(key: core::ffi::c_uint, v: *const core::ffi::c_void)
    -> core::ffi::c_int;
    fn pthread_atfork(
        prepare: Option<unsafe extern "C" fn()>,
        parent: Option<unsafe extern "C" fn()>,
        child: Option<unsafe extern "C" fn()>,
    ) -> core::ffi::c_int;
}

/// Set the calling thread's `errno` (the C-semantics layer reports failures this way).
pub fn set_errno(e: i32) {
    // SAFETY: the errno pointer is this thread's and valid for the thread's life.
    unsafe { *__errno_location() = e };
}

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    // SAFETY: as in set_errno.
    unsafe { *__errno_location() }
}

/// Register fork handlers with the host libc. Call it from a constructor, not from the
/// allocator: the libc may allocate to record them.
pub fn register_atfork(
    prepare: unsafe extern "C" fn(),
    parent: unsafe extern "C" fn(),
    child: unsafe extern "C" fn(),
) -> bool {
    // SAFETY: plain libc call with valid function pointers.
    unsafe { pthread_atfork(Some(prepare), Some(parent), Some(child)) == 0 }
}

/// A thread-specific data key whose destructor runs `dtor` at each thread's exit.
pub fn thread_exit_key(dtor: unsafe extern "C" fn(*mut core::ffi::c_void)) -> Option<u32> {
    let mut key = 0;
    // SAFETY: plain libc call; `key` is a valid out-parameter.
    (unsafe { pthread_key_create(&mut key, Some(dtor)) } == 0).then_some(key)
}

/// Set the calling thread's value of `key` (what its exit destructor receives).
///
/// # Safety
/// `v` is what the key's destructor expects.
pub unsafe fn set_thread_value(key: u32, v: *mut core::ffi::c_void) -> bool {
    // SAFETY: plain libc call.
    unsafe { pthread_setspecific(key, v) == 0 }
}

// The calling thread's word of initial-exec TLS: the standalone library's thread-cache
// state. Defined in assembly because `#[thread_local]` is not stable Rust; initial-exec,
// so an access is a few instructions and no call (the library is loaded at start-up, by
// LD_PRELOAD or as a dependency, where static TLS is available).
#[cfg(all(
    feature = "standalone",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".globl __ngmalloc_tls",
    ".hidden __ngmalloc_tls",
    ".type __ngmalloc_tls, @object",
    ".size __ngmalloc_tls, 8",
    "__ngmalloc_tls:",
    ".zero 8",
    ".popsection",
);

/// Read the calling thread's TLS word (0 in a new thread). Elsewhere than x86_64 and
/// aarch64, where there is no TLS word yet, always 1: "no cache", the locked paths.
#[cfg(feature = "standalone")]
#[inline(always)]
pub fn tls_get() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let v: usize;
        // SAFETY: reads this thread's own TLS word through its GOT offset.
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr [rip + __ngmalloc_tls@GOTTPOFF]",
                "mov {v}, qword ptr fs:[{v}]",
                v = out(reg) v,
                options(nostack, readonly, preserves_flags)
            );
        }
        v
    }
    #[cfg(target_arch = "aarch64")]
    {
        let v: usize;
        // SAFETY: reads this thread's own TLS word: its offset from the thread pointer
        // through the GOT (initial-exec), the thread pointer from tpidr_el0.
        unsafe {
            core::arch::asm!(
                "adrp {v}, :gottprel:__ngmalloc_tls",
                "ldr {v}, [{v}, #:gottprel_lo12:__ngmalloc_tls]",
                "mrs {tp}, tpidr_el0",
                "ldr {v}, [{tp}, {v}]",
                v = out(reg) v,
                tp = out(reg) _,
                options(nostack, readonly, preserves_flags)
            );
        }
        v
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    1
}

/// Write the calling thread's TLS word.
#[cfg(feature = "standalone")]
#[inline(always)]
pub fn tls_set(v: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: writes this thread's own TLS word through its GOT offset.
    unsafe {
        core::arch::asm!(
            "mov {t}, qword ptr [rip + __ngmalloc_tls@GOTTPOFF]",
            "mov qword ptr fs:[{t}], {v}",
            t = out(reg) _,
            v = in(reg) v,
            options(nostack, preserves_flags)
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: writes this thread's own TLS word (as tls_get finds it).
    unsafe {
        core::arch::asm!(
            "adrp {t}, :gottprel:__ngmalloc_tls",
            "ldr {t}, [{t}, #:gottprel_lo12:__ngmalloc_tls]",
            "mrs {tp}, tpidr_el0",
            "str {v}, [{tp}, {t}]",
            t = out(reg) _,
            tp = out(reg) _,
            v = in(reg) v,
            options(nostack, preserves_flags)
        );
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = v;
}

/// Copy the value of environment variable `name` (NUL-terminated) into `out`, NUL
/// terminated; `false` if it is unset, empty or does not fit.
pub fn env_into(name: &core::ffi::CStr, out: &mut [u8]) -> bool {
    // SAFETY: getenv returns null or a NUL-terminated string owned by the environment.
    let v = unsafe { getenv(name.as_ptr()) };
    if v.is_null() {
        return false;
    }
    // SAFETY: as above.
    let bytes = unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes();
    if bytes.is_empty() || bytes.len() >= out.len() {
        return false;
    }
    out[..bytes.len()].copy_from_slice(bytes);
    out[bytes.len()] = 0;
    true
}

/// Append `data` to the file at the NUL-terminated `path` (created if missing), with raw
/// system calls: usable at exit, whatever state the libc is in.
pub fn append_file(path: &[u8], data: &[u8]) {
    const AT_FDCWD: isize = -100;
    const O_WRONLY_CREAT_APPEND_CLOEXEC: usize = 0o1 | 0o100 | 0o2000 | 0o2000000;
    if !path.contains(&0) {
        return;
    }
    let a = [
        AT_FDCWD as usize,
        path.as_ptr().addr(),
        O_WRONLY_CREAT_APPEND_CLOEXEC,
        0o644,
        0,
        0,
    ];
    // SAFETY: `path` is NUL-terminated (checked above); `data` is readable.
    unsafe {
        let fd = syscall(nr::OPENAT, a);
        if fd < 0 {
            return;
        }
        syscall(
            nr::WRITE,
            [fd as usize, data.as_ptr().addr(), data.len(), 0, 0, 0],
        );
        syscall(nr::CLOSE, [fd as usize, 0, 0, 0, 0, 0]);
    }
}

/// The process id.
pub fn getpid() -> u32 {
    // SAFETY: getpid has no arguments and cannot fail.
    unsafe { syscall(nr::GETPID, [0; 6]) as u32 }
}

/// `getauxval` with errno preserved (it sets ENOENT for a missing entry).
fn auxv(t: usize) -> usize {
    // SAFETY: both are plain libc calls with no preconditions; the errno pointer is this
    // thread's and valid for the thread's life.
    unsafe {
        let e = __errno_location();
        let saved = *e;
        let v = getauxval(t as _) as usize;
        *e = saved;
        v
    }
}

/// The raw-syscall backend. `BRK` says whether meta areas may come from the program break.
pub struct Linux<const BRK: bool>;

/// Milliseconds of `CLOCK_MONOTONIC_COARSE` (a tick's resolution, which decay needs),
/// through the host libc's `clock_gettime` (its vDSO: no system call), errno preserved.
pub fn monotonic_ms() -> u64 {
    const CLOCK_MONOTONIC_COARSE: core::ffi::c_int = 6;
    let mut ts = [0i64; 2];
    // SAFETY: clock_gettime writes one `struct timespec` (two 64-bit words on the 64-bit
    // targets this backend builds for) into `ts`; the errno pointer is this thread's.
    unsafe {
        let e = __errno_location();
        let saved = *e;
        let r = clock_gettime(CLOCK_MONOTONIC_COARSE, ts.as_mut_ptr());
        *e = saved;
        if r != 0 {
            return 0;
        }
    }
    (ts[0] as u64).wrapping_mul(1000) + ts[1] as u64 / 1_000_000
}
// `struct timespec` is two 64-bit words (time_t and long) where this backend builds
const _: () = assert!(size_of::<core::ffi::c_long>() == size_of::<i64>());

// SAFETY: each method is the Linux system call of the same name for anonymous private
// memory; raw system calls never touch errno; nothing here allocates.
unsafe impl<const BRK: bool> Os for Linux<BRK> {
    const USE_BRK: bool = BRK;

    unsafe fn mmap(at: *mut u8, len: usize, p: Prot, fixed: bool) -> Option<NonNull<u8>> {
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | if fixed { MAP_FIXED } else { 0 };
        let a = [at.expose_provenance(), len, prot(p), flags, usize::MAX, 0];
        // SAFETY: an anonymous mapping; with MAP_FIXED the caller vouches for the range.
        mapped(unsafe { syscall(nr::MMAP, a) })
    }

    unsafe fn munmap(p: *mut u8, len: usize) {
        // SAFETY: the caller vouches for the range.
        unsafe { syscall(nr::MUNMAP, [p.addr(), len, 0, 0, 0, 0]) };
    }

    unsafe fn mremap_to(p: *mut u8, old: usize, new: usize, to: *mut u8) -> bool {
        let a = [
            p.addr(),
            old,
            new,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            to.addr(),
            0,
        ];
        // SAFETY: the caller vouches for both ranges.
        if unsafe { syscall(nr::MREMAP, a) } as usize == to.addr() {
            return true;
        }
        // Give the destination up (the trait's contract): map whatever of it is free, and
        // unmap that. (A kernel without MAP_FIXED_NOREPLACE takes it as a hint: what it
        // returns is ours either way.)
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
        let b = [to.addr(), new, PROT_NONE, flags, usize::MAX, 0];
        // SAFETY: a fresh anonymous mapping, which replaces nothing; then unmapped.
        unsafe {
            if let Some(q) = mapped(syscall(nr::MMAP, b)) {
                syscall(nr::MUNMAP, [q.as_ptr().addr(), new, 0, 0, 0, 0]);
            }
        }
        false
    }

    unsafe fn mprotect(p: *mut u8, len: usize, pr: Prot) -> bool {
        // SAFETY: the caller vouches for the range.
        unsafe { syscall(nr::MPROTECT, [p.addr(), len, prot(pr), 0, 0, 0]) == 0 }
    }

    unsafe fn release(p: *mut u8, len: usize) -> bool {
        // SAFETY: the caller vouches for the range.
        unsafe { syscall(nr::MADVISE, [p.addr(), len, MADV_DONTNEED, 0, 0, 0]) == 0 }
    }

    unsafe fn guard(p: *mut u8, len: usize, install: bool) -> bool {
        let advice = if install {
            MADV_GUARD_INSTALL
        } else {
            MADV_GUARD_REMOVE
        };
        // SAFETY: the caller vouches for the range.
        unsafe { syscall(nr::MADVISE, [p.addr(), len, advice, 0, 0, 0]) == 0 }
    }

    unsafe fn guard_faults(p: *mut u8) -> bool {
        // SAFETY: clock_getres only writes its 16-byte argument, which lies in the range the
        // caller vouches for (a raw call: no vDSO, so no fault in user space).
        unsafe { syscall(nr::CLOCK_GETRES, [CLOCK_MONOTONIC, p.addr(), 0, 0, 0, 0]) == -EFAULT }
    }

    unsafe fn brk(to: usize) -> usize {
        if !BRK {
            return 0;
        }
        // SAFETY: the caller only grows the break from a value it queried.
        let r = unsafe { syscall(nr::BRK, [to, 0, 0, 0, 0, 0]) };
        r as usize
    }

    fn page_size() -> usize {
        match auxv(AT_PAGESZ) {
            0 => 4096,
            p => p,
        }
    }

    fn random() -> u64 {
        let mut buf = [0u8; 8];
        let a = [buf.as_mut_ptr().addr(), 8, GRND_NONBLOCK, 0, 0, 0];
        // SAFETY: getrandom writes at most 8 bytes into `buf`.
        if unsafe { syscall(nr::GETRANDOM, a) } == 8 {
            return u64::from_ne_bytes(buf);
        }
        // No getrandom (pre-3.17 kernel, seccomp): the kernel's AT_RANDOM bytes. Bytes 0..8
        // are the libc's stack canary, so take 8..16, mixed with an address that ASLR moved.
        let at = auxv(AT_RANDOM);
        let mut v = 0u64;
        if at != 0 {
            let p = core::ptr::with_exposed_provenance::<u8>(at + 8);
            // SAFETY: AT_RANDOM points at 16 readable bytes for the life of the process.
            v = unsafe { p.cast::<u64>().read_unaligned() };
        }
        v ^ splitmix((&buf as *const [u8; 8]).addr() as u64)
    }
}

/// A bijective mixer, so a fallback secret never equals a raw address.
const fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A futex lock (Drepper's "mutex 2"): 0 free, 1 taken, 2 taken with waiters.
pub struct FutexLock(AtomicU32);

impl FutexLock {
    /// A free lock.
    pub const fn new() -> Self {
        FutexLock(AtomicU32::new(0))
    }

    fn wait(&self) {
        let a = [self.0.as_ptr().addr(), FUTEX_WAIT_PRIVATE, 2, 0, 0, 0];
        // SAFETY: the futex word is ours and lives as long as `self`.
        unsafe { syscall(nr::FUTEX, a) };
    }

    fn wake(&self) {
        let a = [self.0.as_ptr().addr(), FUTEX_WAKE_PRIVATE, 1, 0, 0, 0];
        // SAFETY: as in `wait`.
        unsafe { syscall(nr::FUTEX, a) };
    }
}

impl Default for FutexLock {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: mutual exclusion by compare-and-swap on one word; the futex calls neither
// allocate nor call back into the allocator.
unsafe impl RawLock for FutexLock {
    #[inline]
    fn lock(&self) {
        if self.0.compare_exchange(0, 1, Acquire, Relaxed).is_ok() {
            return;
        }
        // spin briefly: critical sections are short
        for _ in 0..100 {
            core::hint::spin_loop();
            if self.0.load(Relaxed) == 0 && self.0.compare_exchange(0, 1, Acquire, Relaxed).is_ok()
            {
                return;
            }
        }
        while self.0.swap(2, Acquire) != 0 {
            self.wait();
        }
    }

    #[inline]
    fn unlock(&self) {
        if self.0.swap(0, Release) == 2 {
            self.wake();
        }
    }

    fn reset(&self) {
        self.0.store(0, Relaxed);
    }
}
