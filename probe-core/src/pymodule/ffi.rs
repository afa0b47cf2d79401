//! C API pieces the runtime needs that pyo3-ffi hides under `abi3-py311`
//! (vectorcall, and `PyInterpreterState_Main` for the main-interpreter check).
//!
//! Vectorcall entered the limited API in 3.12, so pyo3-ffi declares neither
//! `PyObject_Vectorcall` nor `PyVectorcall_Call` for an abi3-py311 build, yet
//! every libpython the runtime loads into (3.11+) exports both. Forwarding
//! calls through vectorcall keeps positional and keyword arguments exactly as
//! the caller passed them, without building a tuple and a dict per call.

use pyo3_ffi::PyObject;
use std::ffi::c_ulong;

/// `PY_VECTORCALL_ARGUMENTS_OFFSET`: the callee may use `args[-1]` as scratch.
pub(super) const ARGUMENTS_OFFSET: usize = 1 << (usize::BITS - 1);

/// `Py_TPFLAGS_HAVE_VECTORCALL`.
pub(super) const TPFLAGS_HAVE_VECTORCALL: c_ulong = 1 << 11;

extern "C" {
    /// `PyObject_Vectorcall` (exported by libpython 3.11+).
    pub(super) fn PyObject_Vectorcall(
        callable: *mut PyObject,
        args: *const *mut PyObject,
        nargsf: usize,
        kwnames: *mut PyObject,
    ) -> *mut PyObject;

    /// `PyVectorcall_Call` (exported by libpython 3.8+): the `tp_call` of a
    /// type whose instances implement vectorcall.
    pub(super) fn PyVectorcall_Call(
        callable: *mut PyObject,
        tuple: *mut PyObject,
        dict: *mut PyObject,
    ) -> *mut PyObject;

    /// `PyInterpreterState_Main` (exported by libpython 3.8+; outside the
    /// limited API).
    pub(super) fn PyInterpreterState_Main() -> *mut pyo3_ffi::PyInterpreterState;
}
