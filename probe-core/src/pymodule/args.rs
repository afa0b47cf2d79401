//! Python arguments to runtime values (SEMANTICS §2.3) and the matching of
//! vectorcall arguments to parameters.
//!
//! The parameter matcher reproduces CPython's own messages for too many
//! arguments, unknown keywords and arguments given twice, so the functions
//! behave like `PyArg_ParseTupleAndKeywords` ones without building a tuple
//! and a dict per call.

use super::errors::{raise, type_error, Raised};
use pyo3_ffi::*;
use std::ffi::{c_int, CStr};
use std::ptr::null_mut;

/// Matches `args[..nargs]` and the keywords named by `kwnames` (values after
/// the positional ones, vectorcall layout) against `names`, all optional
/// positional-or-keyword parameters of the function `function`. Returns
/// borrowed references, `NULL` for parameters not given.
///
/// # Safety
/// GIL held; `args` holds `nargs` objects followed by one per `kwnames`
/// entry; `kwnames` is `NULL` or a tuple of `str`.
pub(super) unsafe fn match_parameters<const N: usize>(
    function: &CStr,
    names: [&CStr; N],
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> Result<[*mut PyObject; N], Raised> {
    // SAFETY: GIL held by the caller.
    unsafe { at_most(function, N, nargs)? };
    let mut given = [null_mut(); N];
    for (index, slot) in (0..nargs).zip(given.iter_mut()) {
        // SAFETY: index < nargs, within `args`.
        *slot = unsafe { *args.offset(index) };
    }
    if kwnames.is_null() {
        return Ok(given);
    }
    // SAFETY: kwnames is a tuple (vectorcall protocol).
    let count = unsafe { PyTuple_Size(kwnames) };
    for k in 0..count {
        // SAFETY: k < len(kwnames); the value follows the positional arguments.
        let (key, value) = unsafe { (PyTuple_GetItem(kwnames, k), *args.offset(nargs + k)) };
        let position = names.iter().position(|name| {
            // SAFETY: key is a str (vectorcall protocol), name NUL-terminated ASCII.
            unsafe { PyUnicode_CompareWithASCIIString(key, name.as_ptr()) == 0 }
        });
        let Some(position) = position else {
            // SAFETY: GIL held; the format matches the arguments (%U: str object).
            unsafe {
                PyErr_Format(
                    PyExc_TypeError,
                    c"'%U' is an invalid keyword argument for %s()".as_ptr(),
                    key,
                    function.as_ptr(),
                )
            };
            return Err(Raised);
        };
        if !given[position].is_null() {
            // SAFETY: GIL held; the format matches the arguments.
            unsafe {
                PyErr_Format(
                    PyExc_TypeError,
                    c"argument for %s() given by name ('%s') and position (%d)".as_ptr(),
                    function.as_ptr(),
                    names[position].as_ptr(),
                    c_int::try_from(position + 1).unwrap_or(c_int::MAX),
                )
            };
            return Err(Raised);
        }
        given[position] = value;
    }
    Ok(given)
}

/// `TypeError("f() takes at most N arguments (M given)")` when `nargs > max`.
///
/// # Safety
/// GIL held.
pub(super) unsafe fn at_most(function: &CStr, max: usize, nargs: Py_ssize_t) -> Result<(), Raised> {
    if usize::try_from(nargs).is_ok_and(|n| n <= max) {
        return Ok(());
    }
    let plural = if max == 1 { c"" } else { c"s" };
    // SAFETY: GIL held; the format matches the arguments (%zd: Py_ssize_t).
    unsafe {
        PyErr_Format(
            PyExc_TypeError,
            c"%s() takes at most %d argument%s (%zd given)".as_ptr(),
            function.as_ptr(),
            c_int::try_from(max).unwrap_or(c_int::MAX),
            plural.as_ptr(),
            nargs,
        )
    };
    Err(Raised)
}

/// A space id: `None` (or not given) → 0; an `int` in `[0, 2**32)`;
/// `OverflowError` outside it, `TypeError` for anything else.
///
/// # Safety
/// GIL held; `object` is `NULL` or a valid object.
pub(super) unsafe fn space_id(object: *mut PyObject) -> Result<u32, Raised> {
    // SAFETY: GIL held by the caller; object valid when non-null.
    unsafe {
        if object.is_null() || object == Py_None() {
            return Ok(0);
        }
        if PyLong_Check(object) == 0 {
            return Err(type_error(c"Retrace space id must be an int or None"));
        }
        let mut overflow: c_int = 0;
        let value = PyLong_AsLongLongAndOverflow(object, &mut overflow);
        if value == -1 && !PyErr_Occurred().is_null() {
            return Err(Raised);
        }
        if overflow > 0 {
            return Err(raise(PyExc_OverflowError, c"Retrace space id is too large"));
        }
        if overflow < 0 || value < 0 {
            return Err(raise(
                PyExc_OverflowError,
                c"can't convert negative int to unsigned",
            ));
        }
        u32::try_from(value)
            .map_err(|_| raise(PyExc_OverflowError, c"Retrace space id is too large"))
    }
}

/// A thread id: `None` (or not given) → `None`; an `int` in `[0, 2**64)`;
/// `OverflowError` outside it, `TypeError` for anything else (also for
/// objects that only implement `__index__`).
///
/// # Safety
/// GIL held; `object` is `NULL` or a valid object.
pub(super) unsafe fn thread_id(object: *mut PyObject) -> Result<Option<u64>, Raised> {
    // SAFETY: GIL held by the caller; object valid when non-null.
    unsafe {
        if object.is_null() || object == Py_None() {
            return Ok(None);
        }
        if PyLong_Check(object) == 0 {
            return Err(type_error(c"thread id must be an int or None"));
        }
        let value = PyLong_AsUnsignedLongLong(object);
        if value == u64::MAX && !PyErr_Occurred().is_null() {
            // OverflowError for negative values and values >= 2**64.
            return Err(Raised);
        }
        Ok(Some(value))
    }
}

/// The `drop` of a coordinates query: not given → 0; any `__index__` object;
/// `ValueError` when negative, `OverflowError` when too large.
///
/// # Safety
/// GIL held; `object` is `NULL` or a valid object.
pub(super) unsafe fn drop_count(object: *mut PyObject) -> Result<usize, Raised> {
    if object.is_null() {
        return Ok(0);
    }
    // SAFETY: GIL held by the caller; object valid. TypeError for non-index
    // objects, OverflowError beyond Py_ssize_t.
    let value = unsafe { PyNumber_AsSsize_t(object, PyExc_OverflowError) };
    // SAFETY: GIL held by the caller.
    if value == -1 && unsafe { !PyErr_Occurred().is_null() } {
        return Err(Raised);
    }
    usize::try_from(value).map_err(|_| {
        // SAFETY: GIL held by the caller.
        unsafe { raise(PyExc_ValueError, c"coordinates drop must be non-negative") }
    })
}

/// Checks that `object` is callable, else `TypeError(message)`.
///
/// # Safety
/// GIL held; `object` is a valid object.
pub(super) unsafe fn callable(object: *mut PyObject, message: &CStr) -> Result<(), Raised> {
    // SAFETY: GIL held by the caller; object valid.
    if unsafe { PyCallable_Check(object) } != 0 {
        Ok(())
    } else {
        // SAFETY: GIL held by the caller.
        Err(unsafe { type_error(message) })
    }
}
