//! The coordinate queries (SEMANTICS §8): `coordinates`, `thread_delta` and
//! `hash` of `_retrace`, and the shared bodies behind the `CoordinateSpace`
//! methods of the same names.
//!
//! Arguments are converted in parameter order before the runtime is asked,
//! so a bad argument is reported even when the engine is inactive.

use super::args::{at_most, drop_count, match_parameters, space_id, thread_id};
use super::errors::{finish, raise_api, Raised};
use super::results::{none, optional_words, word};
use crate::api;
use pyo3_ffi::*;
use std::ptr::null_mut;

/// §8.1 in `space`: the words of `thread` (current when `None`) from `drop` on.
///
/// # Safety
/// GIL held.
pub(super) unsafe fn coordinates_in(
    space: u32,
    thread: Option<u64>,
    drop: usize,
) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held by the caller.
    unsafe { optional_words(api::coordinates(thread, drop, space)) }
}

/// §8.2 in `space`: `(common, *suffix)` of the current thread.
///
/// # Safety
/// GIL held.
pub(super) unsafe fn thread_delta_in(space: u32) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held by the caller.
    unsafe { optional_words(api::thread_delta(space)) }
}

/// §8.3 in `space`: the location hash of the current thread as an `int`.
///
/// # Safety
/// GIL held.
pub(super) unsafe fn hash_in(space: u32) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held by the caller.
    unsafe {
        match api::location_hash(space) {
            Ok(Some(value)) => word(value),
            Ok(None) => Ok(none()),
            Err(error) => Err(raise_api(error)),
        }
    }
}

/// `_retrace.coordinates(thread_id=None, drop=0, space_id=None)`.
pub(super) unsafe extern "C" fn coordinates(
    _module: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and vectorcall arguments.
    finish(unsafe { coordinates_call(args, nargs, kwnames) })
}

/// The body of [`coordinates`].
///
/// # Safety
/// GIL held; vectorcall arguments.
unsafe fn coordinates_call(
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held and vectorcall arguments (caller's contract).
    unsafe {
        let [thread, drop, space] = match_parameters(
            c"coordinates",
            [c"thread_id", c"drop", c"space_id"],
            args,
            nargs,
            kwnames,
        )?;
        let thread = thread_id(thread)?;
        let drop = drop_count(drop)?;
        coordinates_in(space_id(space)?, thread, drop)
    }
}

/// The optional positional `space_id` of `thread_delta`/`hash`.
///
/// # Safety
/// GIL held; `args` holds `nargs` objects.
unsafe fn only_space_id(
    function: &std::ffi::CStr,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
) -> Result<u32, Raised> {
    // SAFETY: GIL held by the caller; args[0] exists when nargs == 1.
    unsafe {
        at_most(function, 1, nargs)?;
        space_id(if nargs == 1 { *args } else { null_mut() })
    }
}

/// `_retrace.thread_delta(space_id=None, /)`.
pub(super) unsafe extern "C" fn thread_delta(
    _module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and `nargs` arguments.
    finish(unsafe { only_space_id(c"thread_delta", args, nargs).and_then(|s| thread_delta_in(s)) })
}

/// `_retrace.hash(space_id=None, /)`.
pub(super) unsafe extern "C" fn hash(
    _module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and `nargs` arguments.
    finish(unsafe { only_space_id(c"hash", args, nargs).and_then(|s| hash_in(s)) })
}
