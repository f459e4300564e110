//! Circular intrusive lists of meta records (the per-class active lists and the free-meta
//! list), with checked unlink.
//!
//! mallocng's `dequeue` wrote `m->prev->next = m->next; m->next->prev = m->prev` unchecked:
//! with a forged meta area that is a write-what-where (a public exploit did exactly that).
//! Here every unlink first checks that both neighbours point back at `m`.

use core::ptr::null_mut;

use crate::check::{Corrupt, check, ok};
use crate::meta::Meta;

/// Append `m` at the tail of the list at `head` (before the head).
///
/// # Safety
/// `m` and every record on the list are live meta records; the heap lock is held.
#[inline(always)]
pub unsafe fn queue(head: &mut *mut Meta, m: *mut Meta) {
    // SAFETY: the caller vouches for `m` and the list, and holds the lock.
    unsafe {
        check!((*m).next.is_null() && (*m).prev.is_null());
        if head.is_null() {
            (*m).prev = m;
            (*m).next = m;
            *head = m;
        } else {
            let h = *head;
            let tail = (*h).prev;
            check!((*tail).next == h);
            (*m).next = h;
            (*m).prev = tail;
            (*h).prev = m;
            (*tail).next = m;
        }
    }
}

/// The neighbours of `m`, checked to point back at it.
///
/// # Safety
/// `m` is a live meta record on a list.
pub unsafe fn checked_links(m: *const Meta) -> Result<(*mut Meta, *mut Meta), Corrupt> {
    // SAFETY: the caller vouches for `m`; the neighbours are read before being trusted.
    unsafe {
        let (prev, next) = ((*m).prev, (*m).next);
        if prev.is_null() || next.is_null() {
            return Err(Corrupt::ListLink);
        }
        if !core::ptr::eq((*prev).next, m) || !core::ptr::eq((*next).prev, m) {
            return Err(Corrupt::ListLink);
        }
        Ok((prev, next))
    }
}

/// Remove `m` from the list at `head`.
///
/// # Safety
/// `m` is on the list at `head`; the heap lock is held.
#[inline(always)]
pub unsafe fn dequeue(head: &mut *mut Meta, m: *mut Meta) {
    // SAFETY: the caller vouches for `m`; the neighbours were checked to point back at it.
    unsafe {
        let (prev, next) = ok(checked_links(m));
        if next != m {
            (*prev).next = next;
            (*next).prev = prev;
            if *head == m {
                *head = next;
            }
        } else {
            *head = null_mut();
        }
        (*m).prev = null_mut();
        (*m).next = null_mut();
    }
}

/// Remove and return the head of the list, if any.
///
/// # Safety
/// As [`dequeue`].
pub unsafe fn dequeue_head(head: &mut *mut Meta) -> Option<*mut Meta> {
    let m = *head;
    if m.is_null() {
        return None;
    }
    // SAFETY: `m` is the head of the list; the caller's contract covers the rest.
    unsafe { dequeue(head, m) };
    Some(m)
}
