//! The builtin module `_retrace`: the coordinate and space API of SEMANTICS
//! §2 (in the submodules) and private diagnostics over the runtime's state
//! (here).
//!
//! Single-phase initialisation for now; the spec later wants per-interpreter
//! module state (multi-phase init with `m_size > 0`), and the types are
//! process-wide until then. Every function copies what it reports out of the
//! runtime first and only then creates Python objects, so no runtime lock is
//! held while Python code could run.

mod args;
mod callbacks;
mod dispatch;
mod errors;
mod ffi;
mod handoff;
mod hooks;
pub(crate) mod ident;
mod queries;
mod release;
mod results;
mod run;
mod space;
mod wrapper;

use crate::events::kind_name;
use crate::location::{register_name, Location};
use crate::runtime::{self, Runtime};
use pyo3_ffi::*;
use std::ffi::{c_char, c_int, CString};
use std::ptr::{addr_of_mut, null_mut};

const MODULE_DOC: &std::ffi::CStr = c"Private interface of the retrace runtime (libretrace_rt.so).

This module exists in an interpreter whose libpython was rewritten by the
retrace rewriter. Its functions are for tests and diagnostics; the public
API is the frozen module `retrace`.";

/// The runtime, or a RuntimeError if there is none (cannot happen once the
/// module is registered, since registration follows installation).
unsafe fn runtime_or_error() -> Option<&'static Runtime> {
    let rt = runtime::get();
    if rt.is_none() {
        // SAFETY: called with the GIL held from a module function.
        unsafe {
            PyErr_SetString(
                PyExc_RuntimeError,
                c"retrace runtime is not active".as_ptr(),
            )
        };
    }
    rt
}

/// Sets `dict[key] = value`, consuming both references; false on error.
unsafe fn set_item(dict: *mut PyObject, key: *mut PyObject, value: *mut PyObject) -> bool {
    let ok = !key.is_null()
        && !value.is_null()
        // SAFETY: dict, key and value are valid objects (checked non-null), GIL held.
        && unsafe { PyDict_SetItem(dict, key, value) } == 0;
    // SAFETY: we own these references (either may be NULL).
    unsafe {
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    ok
}

/// A dict from `(key, value)` pairs built by `make` (which returns new
/// references, possibly NULL with an exception set); NULL on failure.
unsafe fn dict_of<T>(
    items: impl IntoIterator<Item = T>,
    make: impl Fn(T) -> (*mut PyObject, *mut PyObject),
) -> *mut PyObject {
    // SAFETY: GIL held by the caller.
    let mut dict = unsafe { PyDict_New() };
    for item in items {
        let (k, v) = make(item);
        if dict.is_null() {
            // Keep consuming so that pre-built values are released.
            // SAFETY: we own k and v (either may be NULL).
            unsafe {
                Py_XDECREF(k);
                Py_XDECREF(v);
            }
            continue;
        }
        // SAFETY: dict is a valid dict; set_item consumes k and v.
        if !unsafe { set_item(dict, k, v) } {
            // SAFETY: we own `dict`.
            unsafe { Py_DECREF(dict) };
            dict = null_mut();
        }
    }
    dict
}

unsafe fn int(v: u64) -> *mut PyObject {
    // SAFETY: GIL held by the caller.
    unsafe { PyLong_FromUnsignedLongLong(v) }
}

unsafe fn text(s: &str) -> *mut PyObject {
    match CString::new(s) {
        // SAFETY: GIL held by the caller; NUL-terminated string.
        Ok(c) => unsafe { PyUnicode_FromString(c.as_ptr()) },
        Err(_) => {
            // SAFETY: GIL held by the caller.
            unsafe { PyErr_SetString(PyExc_ValueError, c"string with NUL".as_ptr()) };
            null_mut()
        }
    }
}

unsafe fn counts_dict(counts: [u64; 256]) -> *mut PyObject {
    let nonzero = counts.into_iter().enumerate().filter(|&(_, n)| n != 0);
    // SAFETY: GIL held by the caller.
    unsafe { dict_of(nonzero, |(op, n)| (int(op as u64), int(n))) }
}

unsafe extern "C" fn dispatch_counts(_m: *mut PyObject, _a: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held.
    unsafe {
        let Some(rt) = runtime_or_error() else {
            return null_mut();
        };
        counts_dict(rt.descriptor().dispatch_counts())
    }
}

unsafe extern "C" fn slow_path_counts(_m: *mut PyObject, _a: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held.
    unsafe {
        let Some(rt) = runtime_or_error() else {
            return null_mut();
        };
        counts_dict(rt.slow_path_counts())
    }
}

unsafe extern "C" fn reset_dispatch_counts(_m: *mut PyObject, _a: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held.
    unsafe {
        let Some(rt) = runtime_or_error() else {
            return null_mut();
        };
        rt.reset_dispatch_counts();
        let none = Py_None();
        Py_INCREF(none);
        none
    }
}

unsafe extern "C" fn hook_counts(_m: *mut PyObject, _a: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held.
    unsafe {
        let Some(rt) = runtime_or_error() else {
            return null_mut();
        };
        dict_of(rt.hook_counts(), |(kind, n)| {
            (text(kind_name(kind)), int(n))
        })
    }
}

unsafe extern "C" fn live_frames(_m: *mut PyObject, _a: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held.
    unsafe {
        let Some(rt) = runtime_or_error() else {
            return null_mut();
        };
        let n = rt.live_frames();
        int(n as u64)
    }
}

unsafe extern "C" fn identity_map_len(_m: *mut PyObject, _a: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held.
    unsafe {
        if runtime_or_error().is_none() {
            return null_mut();
        }
        int(crate::detours::identity_map_len() as u64)
    }
}

/// `None`, `("reg", name)` or `("stack", offset)`.
unsafe fn location_object(location: Location) -> *mut PyObject {
    // SAFETY: GIL held by the caller; format strings match the arguments.
    unsafe {
        match location {
            Location::Unavailable => {
                let none = Py_None();
                Py_INCREF(none);
                none
            }
            Location::Reg(n) => {
                let name = CString::new(register_name(n)).unwrap_or_default();
                Py_BuildValue(c"(ss)".as_ptr(), c"reg".as_ptr(), name.as_ptr())
            }
            Location::Stack(off) => {
                Py_BuildValue(c"(si)".as_ptr(), c"stack".as_ptr(), off as c_int)
            }
        }
    }
}

unsafe extern "C" fn descriptor(_m: *mut PyObject, _a: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held.
    unsafe {
        let Some(rt) = runtime_or_error() else {
            return null_mut();
        };
        let d = rt.descriptor();
        let info = d.info().clone();
        let (slow_path, hooks_enabled) = (d.slow_path(), d.hooks_enabled());
        let registers = dict_of(info.layout.entries(), |(name, loc)| {
            (text(name), location_object(loc))
        });
        if registers.is_null() {
            return null_mut();
        }
        let hooks = PyList_New(0);
        if hooks.is_null() {
            Py_DECREF(registers);
            return null_mut();
        }
        for hook in &info.hooks {
            let name =
                CString::new(hook.kind.map(kind_name).unwrap_or("unknown")).unwrap_or_default();
            let item = Py_BuildValue(
                c"(sIK)".as_ptr(),
                name.as_ptr(),
                hook.arg as std::ffi::c_uint,
                hook.address as std::ffi::c_ulonglong,
            );
            if item.is_null() || PyList_Append(hooks, item) != 0 {
                Py_XDECREF(item);
                Py_DECREF(hooks);
                Py_DECREF(registers);
                return null_mut();
            }
            Py_DECREF(item);
        }
        let frozen = crate::frozen::installed();
        let entries: [(&str, *mut PyObject); 10] = [
            ("py_version_hex", int(u64::from(info.py_version_hex))),
            ("hook_count", int(info.hooks.len() as u64)),
            ("registers", registers),
            ("hooks", hooks),
            ("input_sha256", text(&info.sha256_hex())),
            ("load_bias", int(info.load_bias)),
            ("standalone", PyBool_FromLong(c_long_from(info.standalone))),
            ("slow_path", int(slow_path)),
            ("hooks_enabled", int(hooks_enabled)),
            ("frozen_retrace", PyBool_FromLong(c_long_from(frozen))),
        ];
        dict_of(entries, |(key, value)| (text(key), value))
    }
}

fn c_long_from(b: bool) -> std::ffi::c_long {
    std::ffi::c_long::from(b)
}

/// A `METH_NOARGS` entry.
const fn method(
    name: &'static std::ffi::CStr,
    f: PyCFunction,
    doc: &'static std::ffi::CStr,
) -> PyMethodDef {
    PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: PyMethodDefPointer { PyCFunction: f },
        ml_flags: METH_NOARGS,
        ml_doc: doc.as_ptr(),
    }
}

/// A `METH_O` entry.
const fn method_o(
    name: &'static std::ffi::CStr,
    f: PyCFunction,
    doc: &'static std::ffi::CStr,
) -> PyMethodDef {
    PyMethodDef {
        ml_flags: METH_O,
        ..method(name, f, doc)
    }
}

/// A `METH_FASTCALL` entry (positional arguments only).
const fn method_positional(
    name: &'static std::ffi::CStr,
    f: PyCFunctionFast,
    doc: &'static std::ffi::CStr,
) -> PyMethodDef {
    PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: PyMethodDefPointer { PyCFunctionFast: f },
        ml_flags: METH_FASTCALL,
        ml_doc: doc.as_ptr(),
    }
}

/// A `METH_FASTCALL | METH_KEYWORDS` entry.
const fn method_fast(
    name: &'static std::ffi::CStr,
    f: PyCFunctionFastWithKeywords,
    doc: &'static std::ffi::CStr,
) -> PyMethodDef {
    PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: PyMethodDefPointer {
            PyCFunctionFastWithKeywords: f,
        },
        ml_flags: METH_FASTCALL | METH_KEYWORDS,
        ml_doc: doc.as_ptr(),
    }
}

static mut METHODS: [PyMethodDef; 24] = [
    method_fast(
        c"coordinates",
        queries::coordinates,
        c"coordinates($module, /, thread_id=None, drop=0, space_id=None)
--

The (instruction, ordinal) words of a thread (the current one for None) in a
space from word `drop` on, or None if the thread has not run in that space.",
    ),
    method_positional(
        c"thread_delta",
        queries::thread_delta,
        c"thread_delta($module, space_id=None, /)
--

(common, *suffix) against the current thread's previous delta in the space,
or None if the thread has not run in it.",
    ),
    method_positional(
        c"hash",
        queries::hash,
        c"hash($module, space_id=None, /)
--

The location hash of the current thread in the space as an int in
[0, 2**64), or None if the thread has not run in it.",
    ),
    method(
        c"allocate_space_id",
        run::allocate_space_id,
        c"allocate_space_id($module, /)
--

The next dynamic coordinate space id.",
    ),
    method_o(
        c"exclude",
        wrapper::exclude,
        c"exclude($module, callable, /)
--

A wrapper that calls `callable` in the disabled space (id 1).",
    ),
    method_o(
        c"disable",
        wrapper::exclude,
        c"disable($module, callable, /)
--

A wrapper that calls `callable` in the disabled space (id 1).",
    ),
    method_o(
        c"include",
        wrapper::include,
        c"include($module, callable, /)
--

A wrapper that calls `callable` in the root space (id 0).",
    ),
    method_o(
        c"enable",
        wrapper::include,
        c"enable($module, callable, /)
--

A wrapper that calls `callable` in the root space (id 0).",
    ),
    method_positional(
        c"wrap_for_space",
        wrapper::wrap_for_space,
        c"wrap_for_space($module, space_id, callable, /)
--

A wrapper that calls `callable` in the given space.",
    ),
    method_fast(
        c"run_in_space",
        run::run_in_space,
        c"run_in_space($module, space_id, callable, /, *args, **kwargs)
--

Call callable(*args, **kwargs) in the given space and return its result.",
    ),
    method_fast(
        c"with_new_coordinates",
        run::with_new_coordinates,
        c"with_new_coordinates($module, callable, /, *args, **kwargs)
--

Call callable(*args, **kwargs) as a root frame of a freshly allocated space.",
    ),
    method_positional(
        c"set_thread_switch_callback",
        callbacks::set_thread_switch_callback,
        c"set_thread_switch_callback($module, callback, space_id=None, /)
--

Register (or clear, with None) the thread-switch callback of a space.",
    ),
    method_positional(
        c"get_thread_switch_callback",
        callbacks::get_thread_switch_callback,
        c"get_thread_switch_callback($module, space_id=None, /)
--

The stored thread-switch callback of a space, or None.",
    ),
    method_positional(
        c"call_at",
        callbacks::call_at,
        c"call_at($module, thread_id, coordinates, callback, overshoot_callback=None, space_id=None, /)
--

Arm a coordinate target for a thread, or clear a slot with call_at(None[, space_id]).",
    ),
    method_positional(
        c"call_at_current",
        callbacks::call_at_current,
        c"call_at_current($module, coordinates, callback, overshoot_callback=None, space_id=None, /)
--

Arm a coordinate target for the current thread.",
    ),
    method_positional(
        c"completion_at",
        callbacks::completion_at,
        c"completion_at($module, callback, space_id=None, /)
--

Arm a completion target for the current thread.",
    ),
    method(
        c"_dispatch_counts",
        dispatch_counts,
        c"{opcode: count} of dispatches counted inline by the stubs (non-zero entries).",
    ),
    method(
        c"_slow_path_counts",
        slow_path_counts,
        c"{opcode: count} of dispatches that reached the runtime (non-zero entries).",
    ),
    method(
        c"_reset_dispatch_counts",
        reset_dispatch_counts,
        c"Zero the inline and slow-path dispatch counters.",
    ),
    method(
        c"_hook_counts",
        hook_counts,
        c"{hook kind: count} of hook calls that reached the runtime.",
    ),
    method(
        c"_live_frames",
        live_frames,
        c"Number of frames in the runtime's frame side table.",
    ),
    method(
        c"_descriptor",
        descriptor,
        c"The rewritten library's descriptor as a dict.",
    ),
    method(
        c"_identity_map_len",
        identity_map_len,
        c"Number of addresses whose identity hash is memoised.",
    ),
    PyMethodDef::zeroed(),
];

static mut MODULE_DEF: PyModuleDef = PyModuleDef {
    m_base: PyModuleDef_HEAD_INIT,
    m_name: c"_retrace".as_ptr(),
    m_doc: MODULE_DOC.as_ptr(),
    m_size: 0,
    // Set in `init_module` (a static initialiser cannot take the address of a `static mut`
    // on the workspace's minimum Rust version).
    m_methods: null_mut(),
    m_slots: null_mut(),
    m_traverse: None,
    m_clear: None,
    m_free: None,
};

/// `Py_mod_exec` and `Py_mod_multiple_interpreters` (3.12+; the runtime is
/// built against the 3.11 limited API, which lacks the latter).
const PY_MOD_EXEC: c_int = 2;
const PY_MOD_MULTIPLE_INTERPRETERS: c_int = 3;
/// `Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED`.
const MULTIPLE_INTERPRETERS_NOT_SUPPORTED: *mut std::ffi::c_void = null_mut();

/// Multi-phase initialisation slots, filled by [`init_module`].
static mut SLOTS: [PyModuleDef_Slot; 3] = [
    PyModuleDef_Slot {
        slot: 0,
        value: null_mut(),
    },
    PyModuleDef_Slot {
        slot: 0,
        value: null_mut(),
    },
    PyModuleDef_Slot {
        slot: 0,
        value: null_mut(),
    },
];

/// `Py_mod_exec`: the types, once per import. The runtime's state
/// (coordinates, registry, these types) is per process and belongs to the
/// main interpreter (SEMANTICS §2 wants it per interpreter; not implemented
/// yet), so any other interpreter gets a clear ImportError: 3.12 refuses
/// through the `Py_mod_multiple_interpreters` slot before this runs, and
/// this check covers interpreters that do not look at the slot.
unsafe extern "C" fn exec_module(module: *mut PyObject) -> c_int {
    // SAFETY: called by the import system with the GIL held and `module`
    // the module object being initialised.
    unsafe {
        if PyInterpreterState_Get() != ffi::PyInterpreterState_Main() {
            PyErr_SetString(
                PyExc_ImportError,
                c"_retrace is only available in the main interpreter (per-interpreter state is not implemented)".as_ptr(),
            );
            return -1;
        }
        if wrapper::ready().is_err()
            || space::add_to(module).is_err()
            || handoff::add_to(module).is_err()
            || dispatch::add_to(module).is_err()
        {
            return -1;
        }
        0
    }
}

/// The init function registered with `PyImport_AppendInittab`.
pub unsafe extern "C" fn init_module() -> *mut PyObject {
    // SAFETY: called by the import system with the GIL held; MODULE_DEF and
    // SLOTS are only ever handed to CPython, which reads them from then on.
    unsafe {
        let slots = addr_of_mut!(SLOTS).cast::<PyModuleDef_Slot>();
        *slots = PyModuleDef_Slot {
            slot: PY_MOD_EXEC,
            value: exec_module as *mut std::ffi::c_void,
        };
        let version = runtime::get().map_or(0, |rt| rt.descriptor().info().py_version_hex);
        if version >= 0x030c_0000 {
            *slots.add(1) = PyModuleDef_Slot {
                slot: PY_MOD_MULTIPLE_INTERPRETERS,
                value: MULTIPLE_INTERPRETERS_NOT_SUPPORTED,
            };
        }
        let def = addr_of_mut!(MODULE_DEF);
        (*def).m_methods = addr_of_mut!(METHODS).cast::<PyMethodDef>();
        (*def).m_slots = slots;
        PyModuleDef_Init(def)
    }
}

/// Installs the Python side of the scheduling probes into the runtime.
pub fn install_callbacks() {
    callbacks::install();
}

/// The module name as registered.
pub const MODULE_NAME: &std::ffi::CStr = c"_retrace";

/// Registers `_retrace` as a builtin module; must run before `Py_Initialize`.
pub fn register() -> bool {
    // SAFETY: PyImport_AppendInittab only touches libpython's static data,
    // initialised by the loader before any constructor runs; the name is a
    // static string.
    unsafe { PyImport_AppendInittab(MODULE_NAME.as_ptr() as *const c_char, Some(init_module)) == 0 }
}
