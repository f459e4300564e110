//! The per-thread word every front end keeps (musl's thread structure, the standalone
//! library's initial-exec TLS, the Rust crate's `thread_local!`): [`WORD_NONE`] before the
//! thread's first call, [`WORD_LOCKED`] while its cache is being made, after its exit hook
//! ran, or when it can have none, else the address of its cache. One state machine for
//! all: [`word_cache`] and [`word_cached`] read it, the front end supplies how the word is
//! read and written and how a cache is made ([`ExitHook::make_cache`] where a thread's exit
//! is learned through a pthread key).

use core::ffi::c_void;
use core::sync::atomic::Ordering::{Acquire, Release};
use core::sync::atomic::{AtomicBool, AtomicU64};

use crate::heap::Heap;
use crate::lock::RawLock;
use crate::os::Os;
use crate::os::linux::{set_thread_value, thread_exit_key};
use crate::tcache::ThreadCache;

/// See the module: the thread has made no call yet.
pub const WORD_NONE: usize = 0;
/// See the module: the thread takes the locked paths.
pub const WORD_LOCKED: usize = 1;

/// The thread's cache from its word `w`, made by `make` on its first call; `None`: use
/// the locked paths.
#[inline(always)]
pub fn word_cache(
    w: usize,
    make: fn() -> Option<&'static mut ThreadCache>,
) -> Option<&'static mut ThreadCache> {
    match w {
        WORD_NONE => make(),
        _ => word_cached(w),
    }
}

/// The thread's cache from its word `w` if it has one, with no call: the fast paths'
/// test (`None` sends them to their slow paths, which use [`word_cache`]).
#[inline(always)]
pub fn word_cached(w: usize) -> Option<&'static mut ThreadCache> {
    match w {
        WORD_NONE | WORD_LOCKED => None,
        // SAFETY: a value above WORD_LOCKED is a cache made for this thread (its address,
        // exposed when stored), valid until its exit hook, which sets WORD_LOCKED first;
        // only this thread uses it.
        w => Some(unsafe { &mut *core::ptr::with_exposed_provenance_mut::<ThreadCache>(w) }),
    }
}

/// A thread's exit learned through a pthread key whose destructor gives its cache back:
/// the key is made once per process, by the first thread that needs it.
pub struct ExitHook {
    /// The key: [`KEY_NONE`] until made, [`KEY_FAILED`] if it cannot be.
    key: AtomicU64,
    /// Held by the one thread making the key.
    making: AtomicBool,
}

const KEY_NONE: u64 = u64::MAX;
const KEY_FAILED: u64 = u64::MAX - 1;

impl ExitHook {
    /// A hook whose key is not made yet.
    pub const fn new() -> Self {
        ExitHook {
            key: AtomicU64::new(KEY_NONE),
            making: AtomicBool::new(false),
        }
    }

    /// Make the calling thread's cache on `heap`, its word written with `set`, and have
    /// `exit` (which calls [`exit_cache`]) run with it at the thread's exit. `None`: this
    /// call takes the locked paths (the word says whether later ones try again).
    #[cold]
    pub fn make_cache<O: Os, L: RawLock>(
        &self,
        heap: &Heap<O, L>,
        exit: unsafe extern "C" fn(*mut c_void),
        set: fn(usize),
    ) -> Option<&'static mut ThreadCache> {
        // anything allocated on the way (by pthread_setspecific, say) takes the locked paths
        set(WORD_LOCKED);
        let Some(key) = self.key(exit) else {
            if self.key.load(Acquire) != KEY_FAILED {
                set(WORD_NONE); // another thread is making the key: try again later
            }
            return None;
        };
        let tc = heap.cache_create();
        if tc.is_null() {
            set(WORD_NONE); // out of memory now: try again later
            return None;
        }
        // SAFETY: the destructor, `exit`, takes this thread's cache.
        if !unsafe { set_thread_value(key, tc.cast()) } {
            // SAFETY: just made, unused.
            unsafe { heap.cache_destroy(tc) };
            return None;
        }
        set(tc.expose_provenance());
        // SAFETY: the cache just made for this thread.
        Some(unsafe { &mut *tc })
    }

    /// The key whose destructor is `exit`, made once per process.
    fn key(&self, exit: unsafe extern "C" fn(*mut c_void)) -> Option<u32> {
        loop {
            match self.key.load(Acquire) {
                KEY_FAILED => return None,
                KEY_NONE => {}
                k => return Some(k as u32),
            }
            // one thread makes it; any other arriving meanwhile goes the locked way this once
            if self.making.swap(true, Acquire) {
                return None;
            }
            let k = thread_exit_key(exit).map_or(KEY_FAILED, u64::from);
            self.key.store(k, Release);
            self.making.store(false, Release);
        }
    }
}

impl Default for ExitHook {
    fn default() -> Self {
        Self::new()
    }
}

/// A thread's exit, from its [`ExitHook`]'s destructor: give the cache `tc` back to `heap`.
/// Later destructors that allocate take the locked paths (the word, written with `set`,
/// says so first).
///
/// # Safety
/// `tc` is the calling thread's cache on `heap`, which it no longer uses.
pub unsafe fn exit_cache<O: Os, L: RawLock>(heap: &Heap<O, L>, tc: *mut c_void, set: fn(usize)) {
    set(WORD_LOCKED);
    // SAFETY: the caller's contract.
    unsafe { heap.cache_destroy(tc.cast()) };
}
