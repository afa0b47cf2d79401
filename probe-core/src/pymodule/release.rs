//! The GC slots of the module's types that own exactly one object
//! (`CallWrapper`, `CoordinateSpace`, the `space.monitoring` proxy), and
//! releasing that reference when an instance dies without unbounded C
//! recursion.
//!
//! Such a type implements [`OneReference`] and uses [`traverse`], [`clear`]
//! and [`dealloc`] instantiated for its layout as its `tp_traverse`,
//! `tp_clear` and `tp_dealloc`.
//!
//! A wrapper of a wrapper of … (or a space whose id is a space …) would
//! otherwise free its chain recursively, one C frame per link, and overflow
//! the stack for long chains. While one deallocator of these types runs on a
//! thread, nested ones hand their reference to it instead of releasing it,
//! and it releases them one after the other. Every object is still freed by
//! an ordinary `Py_DECREF`, so CPython's deallocation entry sees each one.

use pyo3_ffi::{
    visitproc, PyObject, PyObject_GC_Del, PyObject_GC_UnTrack, Py_DECREF, Py_TYPE, Py_XDECREF,
};
use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void};
use std::ptr::null_mut;

/// An instance layout whose one owned reference is the object field at
/// `OFFSET` (`NULL` only after `tp_clear`), of a GC-tracked heap type that
/// is not subclassable.
pub(super) trait OneReference {
    /// Byte offset of the owned field (`offset_of!`).
    const OFFSET: usize;
}

/// The owned field of `slf`.
///
/// # Safety
/// `slf` is an instance with the layout `T`.
unsafe fn field<T: OneReference>(slf: *mut PyObject) -> *mut *mut PyObject {
    // SAFETY: `T::OFFSET` is the offset of a pointer field of the instance
    // layout (the trait's contract), inside the instance.
    unsafe { slf.cast::<u8>().add(T::OFFSET).cast() }
}

/// `tp_traverse`: the owned object and, as for every heap type, the type.
pub(super) unsafe extern "C" fn traverse<T: OneReference>(
    slf: *mut PyObject,
    visit: visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: CPython's GC calls this with `slf` an instance of the type.
    unsafe {
        let owned = *field::<T>(slf);
        if !owned.is_null() {
            let status = visit(owned, arg);
            if status != 0 {
                return status;
            }
        }
        visit(Py_TYPE(slf).cast(), arg)
    }
}

/// `tp_clear`: drops the owned object.
pub(super) unsafe extern "C" fn clear<T: OneReference>(slf: *mut PyObject) -> c_int {
    // SAFETY: called with the GIL held and `slf` an instance of the type; the
    // field is emptied before the reference is released.
    unsafe {
        let owned = std::mem::replace(&mut *field::<T>(slf), null_mut());
        Py_XDECREF(owned);
    }
    0
}

/// `tp_dealloc`.
pub(super) unsafe extern "C" fn dealloc<T: OneReference>(slf: *mut PyObject) {
    // SAFETY: called once by CPython when the last reference goes, with the
    // GIL held; the type is GC-managed and not subclassable, so the memory
    // came from the GC allocator and the heap type holds one reference per
    // instance. The owned reference is taken out before the memory is freed.
    unsafe {
        let ty = Py_TYPE(slf);
        PyObject_GC_UnTrack(slf.cast());
        let owned = std::mem::replace(&mut *field::<T>(slf), null_mut());
        PyObject_GC_Del(slf.cast());
        Py_DECREF(ty.cast());
        release(owned);
    }
}

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
