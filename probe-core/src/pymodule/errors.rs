//! Raising Python exceptions from the module's Rust code.
//!
//! Functions of the API surface return `Result<_, Raised>`: `Raised` records
//! that a Python exception is set, so `?` propagates it and the C entry point
//! turns it into the `NULL` CPython expects. [`ApiError`]s of the runtime map
//! to the exception types SEMANTICS §8.1/§11 prescribe.

use crate::api::ApiError;
use pyo3_ffi::*;
use std::ffi::{CStr, CString};
use std::ptr::null_mut;

/// A Python exception is set on the current thread.
#[derive(Debug)]
pub(super) struct Raised;

/// Sets `kind(message)` as the current exception.
///
/// # Safety
/// GIL held; `kind` is an exception type.
pub(super) unsafe fn raise(kind: *mut PyObject, message: &CStr) -> Raised {
    // SAFETY: GIL held by the caller; `message` is NUL-terminated.
    unsafe { PyErr_SetString(kind, message.as_ptr()) };
    Raised
}

/// Sets `TypeError(message)`.
///
/// # Safety
/// GIL held.
pub(super) unsafe fn type_error(message: &CStr) -> Raised {
    // SAFETY: GIL held by the caller; reading libpython's exception type.
    unsafe { raise(PyExc_TypeError, message) }
}

/// Sets the exception for a runtime error: `LookupError("unknown thread id")`,
/// `RuntimeError` when the engine is inactive, `SystemError` for an
/// unbalanced space exit.
///
/// # Safety
/// GIL held.
pub(super) unsafe fn raise_api(error: ApiError) -> Raised {
    // SAFETY: GIL held by the caller; reading libpython's exception types.
    let kind = unsafe {
        match error {
            ApiError::UnknownThread => PyExc_LookupError,
            ApiError::Inactive => PyExc_RuntimeError,
            ApiError::Unbalanced => PyExc_SystemError,
        }
    };
    // The messages are fixed strings without NUL bytes.
    let message = CString::new(error.to_string()).unwrap_or_default();
    // SAFETY: GIL held by the caller.
    unsafe { raise(kind, &message) }
}

/// The C return value of a result: the object, or `NULL` with the exception set.
pub(super) fn finish(result: Result<*mut PyObject, Raised>) -> *mut PyObject {
    result.unwrap_or(null_mut())
}
