//! Running a callable inside a coordinate space (SEMANTICS §11.2):
//! `_retrace.run_in_space`, `_retrace.with_new_coordinates`,
//! `_retrace.allocate_space_id`, and the enter/call/leave sequence that
//! `space.run` and every `CallWrapper` call share.
//!
//! The callable is invoked with vectorcall on the caller's own argument
//! array, so positional and keyword arguments reach it unchanged and no
//! Python frame is added between the caller and the callable.

use super::args::{callable, space_id};
use super::errors::{finish, raise_api, type_error, Raised};
use super::ffi::{PyObject_Vectorcall, ARGUMENTS_OFFSET};
use super::results::word;
use crate::api;
use pyo3_ffi::*;
use std::ptr::null_mut;

/// Enters `space`, vectorcalls `target` with `args`/`nargsf`/`kwnames`, and
/// leaves the space again whether the call returned or raised. The callee's
/// exception is preserved; a failure to leave after a successful call is
/// reported instead of the result.
///
/// # Safety
/// GIL held; `target` valid; `args`, `nargsf`, `kwnames` follow the
/// vectorcall protocol (`ARGUMENTS_OFFSET` only when `args[-1]` may be
/// overwritten temporarily).
pub(super) unsafe fn call_in_space(
    space: u32,
    target: *mut PyObject,
    args: *const *mut PyObject,
    nargsf: usize,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    if let Err(error) = api::enter_space(space) {
        // SAFETY: GIL held by the caller.
        unsafe { raise_api(error) };
        return null_mut();
    }
    // SAFETY: GIL held; arguments valid by the caller's contract.
    let result = unsafe { PyObject_Vectorcall(target, args, nargsf, kwnames) };
    match api::leave_space() {
        Ok(()) => result,
        // Keep the callee's exception: it is the one the caller must see.
        Err(_) if result.is_null() => result,
        Err(error) => {
            // SAFETY: GIL held; we own `result`.
            unsafe {
                Py_DECREF(result);
                raise_api(error);
            }
            null_mut()
        }
    }
}

/// Runs `args[first]` with the arguments after it (positional from
/// `first + 1` to `nargs`, then the keyword values) inside `space`.
///
/// # Safety
/// GIL held; METH_FASTCALL|METH_KEYWORDS arguments with `first < nargs`.
pub(super) unsafe fn run_rest(
    space: u32,
    args: *const *mut PyObject,
    first: Py_ssize_t,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: first < nargs, so `args + first + 1` stays within (or one past)
    // the argument array and its `[-1]` is `args[first]`, an element of the
    // same array the callee may borrow temporarily (as `operator.call` does).
    unsafe {
        let target = *args.offset(first);
        let rest = args.offset(first + 1);
        let count = (nargs - first - 1) as usize;
        call_in_space(space, target, rest, count | ARGUMENTS_OFFSET, kwnames)
    }
}

/// `_retrace.run_in_space(space_id, callable, *args, **kwargs)`.
pub(super) unsafe extern "C" fn run_in_space(
    _module: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and vectorcall arguments.
    unsafe {
        if nargs < 2 {
            type_error(c"run_in_space expected at least 2 arguments");
            return null_mut();
        }
        let checked = space_id(*args).and_then(|space| {
            callable(
                *args.offset(1),
                c"run_in_space callable argument must be callable",
            )
            .map(|()| space)
        });
        match checked {
            Ok(space) => run_rest(space, args, 1, nargs, kwnames),
            Err(Raised) => null_mut(),
        }
    }
}

/// `_retrace.with_new_coordinates(callable, *args, **kwargs)`: allocates a
/// space id and runs the callable as a root frame of that fresh space.
pub(super) unsafe extern "C" fn with_new_coordinates(
    _module: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and vectorcall arguments.
    unsafe {
        if nargs < 1 {
            type_error(c"with_new_coordinates expected at least 1 argument");
            return null_mut();
        }
        if callable(*args, c"with_new_coordinates argument must be callable").is_err() {
            return null_mut();
        }
        run_rest(api::allocate_space_id(), args, 0, nargs, kwnames)
    }
}

/// `_retrace.allocate_space_id()`: the next dynamic space id (§11.1).
pub(super) unsafe extern "C" fn allocate_space_id(
    _module: *mut PyObject,
    _args: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held.
    finish(unsafe { word(u64::from(api::allocate_space_id())) })
}
