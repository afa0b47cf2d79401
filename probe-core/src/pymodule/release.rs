//! Releasing the reference a dying `CallWrapper` or `CoordinateSpace` owns
//! without unbounded C recursion.
//!
//! A wrapper of a wrapper of … (or a space whose id is a space …) would
//! otherwise free its chain recursively, one C frame per link, and overflow
//! the stack for long chains. While one deallocator of these types runs on a
//! thread, nested ones hand their reference to it instead of releasing it,
//! and it releases them one after the other. Every object is still freed by
//! an ordinary `Py_DECREF`, so CPython's deallocation entry sees each one.

use pyo3_ffi::{PyObject, Py_DECREF};
use std::cell::{Cell, RefCell};

thread_local! {
    /// A deallocator of these types is releasing references on this thread.
    static RELEASING: Cell<bool> = const { Cell::new(false) };
    /// References handed over by nested deallocators.
    static PENDING: RefCell<Vec<*mut PyObject>> = const { RefCell::new(Vec::new()) };
}

/// Releases `object` (an owned reference; `NULL` is ignored), deferring it
/// to the outermost running release on this thread.
///
/// # Safety
/// GIL held; the caller owns the reference.
pub(super) unsafe fn release(object: *mut PyObject) {
    if object.is_null() {
        return;
    }
    let nested = RELEASING
        .try_with(|flag| flag.replace(true))
        .unwrap_or(false);
    if nested {
        let deferred = PENDING
            .try_with(|pending| pending.try_borrow_mut().map(|mut p| p.push(object)).is_ok())
            .unwrap_or(false);
        if !deferred {
            // Thread-local storage is gone (thread teardown): release directly.
            // SAFETY: GIL held, reference owned (caller's contract).
            unsafe { Py_DECREF(object) };
        }
        return;
    }
    // SAFETY: GIL held, reference owned (caller's contract); any code the
    // release runs may only add to PENDING, which is drained here.
    unsafe { Py_DECREF(object) };
    while let Some(next) = PENDING
        .try_with(|pending| pending.try_borrow_mut().ok().and_then(|mut p| p.pop()))
        .ok()
        .flatten()
    {
        // SAFETY: a reference handed over by a nested deallocator, now ours.
        unsafe { Py_DECREF(next) };
    }
    let _ = RELEASING.try_with(|flag| flag.set(false));
}
