//! Python objects for the runtime's answers: words become `int`s in
//! `[0, 2**64)`, word sequences tuples, "missing or unseen" `None`.

use super::errors::{raise_api, Raised};
use crate::api::ApiError;
use pyo3_ffi::*;

/// A new reference to `None`.
///
/// # Safety
/// GIL held.
pub(super) unsafe fn none() -> *mut PyObject {
    // SAFETY: GIL held by the caller.
    unsafe {
        let none = Py_None();
        Py_INCREF(none);
        none
    }
}

/// A word as a Python `int`.
///
/// # Safety
/// GIL held.
pub(super) unsafe fn word(value: u64) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held by the caller.
    let object = unsafe { PyLong_FromUnsignedLongLong(value) };
    if object.is_null() {
        Err(Raised)
    } else {
        Ok(object)
    }
}

/// A tuple of words.
///
/// # Safety
/// GIL held.
pub(super) unsafe fn words(values: &[u64]) -> Result<*mut PyObject, Raised> {
    let Ok(len) = Py_ssize_t::try_from(values.len()) else {
        // SAFETY: GIL held by the caller.
        unsafe { PyErr_NoMemory() };
        return Err(Raised);
    };
    // SAFETY: GIL held by the caller.
    let tuple = unsafe { PyTuple_New(len) };
    if tuple.is_null() {
        return Err(Raised);
    }
    for (index, &value) in (0..).zip(values) {
        // SAFETY: GIL held; `tuple` is a fresh tuple of `len` slots, `index <
        // len`, and PyTuple_SetItem steals the new reference.
        unsafe {
            let Ok(item) = word(value) else {
                Py_DECREF(tuple);
                return Err(Raised);
            };
            PyTuple_SetItem(tuple, index, item);
        }
    }
    Ok(tuple)
}

/// A query answer: the tuple, `None` for a missing or unseen thread-space,
/// or the runtime's error.
///
/// # Safety
/// GIL held.
pub(super) unsafe fn optional_words(
    answer: Result<Option<Vec<u64>>, ApiError>,
) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held by the caller.
    unsafe {
        match answer {
            Ok(Some(values)) => words(&values),
            Ok(None) => Ok(none()),
            Err(error) => Err(raise_api(error)),
        }
    }
}
