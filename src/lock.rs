//! The lock seam. The heap takes one lock around its shared state; which lock depends on
//! where ngmalloc runs (musl's `__malloc_lock`, or a futex of its own when standalone).

/// A mutual-exclusion lock with no owner tracking.
///
/// # Safety
/// `lock` must not return while another thread is between its own `lock` and `unlock`;
/// the lock must never allocate or call back into the allocator.
pub unsafe trait RawLock {
    /// Take the lock, waiting as long as needed.
    fn lock(&self);
    /// Release the lock taken by this thread.
    fn unlock(&self);
    /// Make the lock free again in a fork child, where the holder no longer exists.
    fn reset(&self);
}
