//! `space.monitoring`, `space.settrace` and `space.setprofile` (SEMANTICS
//! §17.2–§17.3): the public registration side of space-filtered dispatch.
//!
//! It exists so that a coordinate space can hook CPython's monitoring,
//! tracing and profiling without seeing other spaces' events: each
//! registration becomes a case of a shared [`dispatch`](super::dispatch)
//! object, which is what CPython actually calls. Monitoring keeps one
//! dispatch per `(tool_id, event)` per interpreter (in the interpreter's
//! state dict); tracing and profiling keep one per thread, found again as
//! `sys.gettrace()` / `sys.getprofile()`. Everything else on the monitoring
//! proxy is `sys.monitoring`'s own attribute: event enabling stays global.
//! All of it is native; no helper Python frame runs.

use super::args::match_parameters;
use super::dispatch::{self, Kind};
use super::errors::{finish, raise, type_error, Raised};
use super::ffi::PyObject_Vectorcall;
use super::release::{self, release, OneReference};
use super::results::none;
use super::space;
use pyo3_ffi::*;
use std::ffi::{c_int, c_uint, c_void, CStr};
use std::mem::offset_of;
use std::ptr::{addr_of_mut, null_mut};
use std::sync::atomic::{AtomicPtr, Ordering};

/// The instance layout of the monitoring proxy.
#[repr(C)]
struct Proxy {
    ob_base: PyObject,
    /// The `CoordinateSpace` it is bound to (strong; `NULL` only after `tp_clear`).
    space: *mut PyObject,
}

/// The proxy type, created by [`ready`] and kept for the life of the process.
static TYPE: AtomicPtr<PyObject> = AtomicPtr::new(null_mut());

/// The interpreter-state dict key of the `{(tool_id, event): dispatch}` map.
const MAP_KEY: &CStr = c"_retrace.monitoring_dispatch";

const DOC: &CStr = c"sys.monitoring filtered to one coordinate space.

register_callback delivers events only while the space is active;
free_tool_id/clear_tool_id also drop the space-filtered callbacks of the
tool; every other attribute is sys.monitoring's.";

/// Names the proxy implements itself; all others come from `sys.monitoring`.
const OWN: [&CStr; 3] = [c"register_callback", c"free_tool_id", c"clear_tool_id"];

/// `sys.monitoring` (borrowed), or `RuntimeError` where it does not exist (3.11).
///
/// # Safety
/// GIL held.
unsafe fn sys_monitoring() -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held; PySys_GetObject returns a borrowed reference or NULL
    // without setting an exception.
    let monitoring = unsafe { PySys_GetObject(c"monitoring".as_ptr()) };
    if monitoring.is_null() {
        // SAFETY: GIL held.
        return Err(unsafe { raise(PyExc_RuntimeError, c"sys.monitoring is not available") });
    }
    Ok(monitoring)
}

/// The space id of a proxy's `CoordinateSpace`.
///
/// # Safety
/// GIL held; `slf` a proxy.
unsafe fn source(slf: *mut PyObject) -> Result<u32, Raised> {
    // SAFETY: `slf` has the proxy layout (caller's contract).
    let space = unsafe { (*slf.cast::<Proxy>()).space };
    if space.is_null() {
        // SAFETY: GIL held.
        return Err(unsafe { raise(PyExc_RuntimeError, c"the monitoring proxy was cleared") });
    }
    // SAFETY: GIL held; `space` valid.
    match unsafe { space::handle_id(space) } {
        Some(id) => id,
        // SAFETY: GIL held.
        None => Err(unsafe { raise(PyExc_SystemError, c"monitoring proxy without a space") }),
    }
}

/// `target_space`: not given → root (0); a `CoordinateSpace` → its id.
///
/// # Safety
/// GIL held; `object` `NULL` or valid.
unsafe fn target_space(object: *mut PyObject) -> Result<u32, Raised> {
    if object.is_null() {
        return Ok(0);
    }
    // SAFETY: GIL held; `object` valid.
    match unsafe { space::handle_id(object) } {
        Some(id) => id,
        // SAFETY: GIL held.
        None => Err(unsafe { type_error(c"target_space must be a CoordinateSpace") }),
    }
}

/// `None` (given as `None`) or a callable, else `TypeError(message)`.
///
/// # Safety
/// GIL held; `object` valid.
unsafe fn optional_callable(
    object: *mut PyObject,
    message: &CStr,
) -> Result<Option<*mut PyObject>, Raised> {
    // SAFETY: GIL held; `object` valid.
    unsafe {
        if object == Py_None() {
            Ok(None)
        } else if PyCallable_Check(object) != 0 {
            Ok(Some(object))
        } else {
            Err(type_error(message))
        }
    }
}

/// `getattr(object, name)(*args)` with borrowed arguments.
///
/// # Safety
/// GIL held; all objects valid.
unsafe fn call_method(
    object: *mut PyObject,
    name: &CStr,
    args: &[*mut PyObject],
) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held; `args` holds valid objects and no ARGUMENTS_OFFSET
    // is passed, so the callee does not write to the array.
    unsafe {
        let method = PyObject_GetAttrString(object, name.as_ptr());
        if method.is_null() {
            return Err(Raised);
        }
        let result = PyObject_Vectorcall(method, args.as_ptr(), args.len(), null_mut());
        Py_DECREF(method);
        if result.is_null() {
            Err(Raised)
        } else {
            Ok(result)
        }
    }
}

/// The interpreter's monitoring dispatch map (a new reference), created on
/// first use.
///
/// # Safety
/// GIL held.
unsafe fn dispatch_map() -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held; the state dict is a borrowed dict reference (NULL
    // only if the interpreter could not create it).
    unsafe {
        let state = PyInterpreterState_GetDict(PyInterpreterState_Get());
        if state.is_null() {
            if PyErr_Occurred().is_null() {
                raise(PyExc_RuntimeError, c"no interpreter state dict");
            }
            return Err(Raised);
        }
        let map = PyDict_GetItemString(state, MAP_KEY.as_ptr());
        if !map.is_null() {
            Py_INCREF(map);
            return Ok(map);
        }
        let map = PyDict_New();
        if map.is_null() || PyDict_SetItemString(state, MAP_KEY.as_ptr(), map) != 0 {
            Py_XDECREF(map);
            return Err(Raised);
        }
        Ok(map)
    }
}

/// The `(tool_id, event)` key, both as exact ints.
///
/// # Safety
/// GIL held; objects valid.
unsafe fn map_key(tool: *mut PyObject, event: *mut PyObject) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held; new references are released on every path.
    unsafe {
        let tool = PyNumber_Index(tool);
        if tool.is_null() {
            return Err(Raised);
        }
        let event = PyNumber_Index(event);
        if event.is_null() {
            Py_DECREF(tool);
            return Err(Raised);
        }
        let key = PyTuple_Pack(2, tool, event);
        Py_DECREF(tool);
        Py_DECREF(event);
        if key.is_null() {
            Err(Raised)
        } else {
            Ok(key)
        }
    }
}

/// `register_callback(tool_id, event, callback, target_space=root_space)`.
unsafe extern "C" fn register_callback(
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held, `slf` a proxy and
    // vectorcall arguments.
    finish(unsafe { register(slf, args, nargs, kwnames) })
}

/// The body of [`register_callback`].
///
/// # Safety
/// As [`register_callback`].
unsafe fn register(
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held; arguments per the vectorcall protocol.
    unsafe {
        let [tool, event, callback, target] = match_parameters(
            c"register_callback",
            [c"tool_id", c"event", c"callback", c"target_space"],
            args,
            nargs,
            kwnames,
        )?;
        for (object, message) in [
            (
                tool,
                c"register_callback() missing required argument 'tool_id' (pos 1)",
            ),
            (
                event,
                c"register_callback() missing required argument 'event' (pos 2)",
            ),
            (
                callback,
                c"register_callback() missing required argument 'callback' (pos 3)",
            ),
        ] {
            if object.is_null() {
                return Err(type_error(message));
            }
        }
        let callback =
            optional_callable(callback, c"monitoring callback must be callable or None")?;
        let target = target_space(target)?;
        let source = source(slf)?;
        let monitoring = sys_monitoring()?;
        let key = map_key(tool, event)?;
        let map = match dispatch_map() {
            Ok(map) => map,
            Err(Raised) => {
                Py_DECREF(key);
                return Err(Raised);
            }
        };
        let result = register_in(
            monitoring,
            map,
            key,
            [tool, event],
            source,
            callback,
            target,
        );
        Py_DECREF(map);
        Py_DECREF(key);
        result
    }
}

/// Sets or removes the case of `source` in the dispatch of `key` and keeps
/// `sys.monitoring` in step; returns the previous callback or `None`.
///
/// # Safety
/// GIL held; objects valid, `map` a dict.
unsafe fn register_in(
    monitoring: *mut PyObject,
    map: *mut PyObject,
    key: *mut PyObject,
    [tool, event]: [*mut PyObject; 2],
    source: u32,
    callback: Option<*mut PyObject>,
    target: u32,
) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held; references are counted on every path; the dispatch
    // is held strongly while Python code (sys.monitoring) runs.
    unsafe {
        let found = PyDict_GetItemWithError(map, key);
        if found.is_null() && !PyErr_Occurred().is_null() {
            return Err(Raised);
        }
        let found = (!found.is_null() && dispatch::is_kind(found, Kind::Monitoring)).then(|| {
            Py_INCREF(found);
            found
        });
        let Some(callback) = callback else {
            let Some(d) = found else {
                return Ok(none());
            };
            let result = unregister(monitoring, map, key, [tool, event], d, source);
            Py_DECREF(d);
            return result;
        };
        let d = match found {
            Some(d) => d,
            None => dispatch::new(Kind::Monitoring, null_mut())?,
        };
        let registered = call_method(monitoring, c"register_callback", &[tool, event, d]);
        let stored = registered.and_then(|previous| {
            Py_DECREF(previous);
            if PyDict_SetItem(map, key, d) != 0 {
                return Err(Raised);
            }
            Ok(())
        });
        if stored.is_err() {
            Py_DECREF(d);
            return Err(Raised);
        }
        let old = dispatch::replace_case(d, source, Some((callback, target)));
        Py_DECREF(d);
        Ok(match old {
            Some((old, _)) => old,
            None => none(),
        })
    }
}

/// Removes the case of `source` from `d`; when it was the last one,
/// unregisters the dispatch from `sys.monitoring` first and drops it.
///
/// # Safety
/// GIL held; objects valid, `d` a monitoring dispatch stored under `key`.
unsafe fn unregister(
    monitoring: *mut PyObject,
    map: *mut PyObject,
    key: *mut PyObject,
    [tool, event]: [*mut PyObject; 2],
    d: *mut PyObject,
    source: u32,
) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held; objects valid (caller's contract).
    unsafe {
        if !dispatch::has_case(d, source) {
            return Ok(none());
        }
        if dispatch::case_count(d) == 1 {
            let previous =
                call_method(monitoring, c"register_callback", &[tool, event, Py_None()])?;
            Py_DECREF(previous);
            if PyDict_DelItem(map, key) != 0 {
                PyErr_Clear();
            }
        }
        Ok(match dispatch::replace_case(d, source, None) {
            Some((old, _)) => old,
            None => none(),
        })
    }
}

/// `free_tool_id(tool_id)`: forwarded, then the tool's cases are dropped.
unsafe extern "C" fn free_tool_id(
    _slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and vectorcall arguments.
    finish(unsafe { forward_and_drop(c"free_tool_id", args, nargs, kwnames) })
}

/// `clear_tool_id(tool_id)` (3.13+): forwarded, then the tool's cases are dropped.
unsafe extern "C" fn clear_tool_id(
    _slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and vectorcall arguments.
    finish(unsafe { forward_and_drop(c"clear_tool_id", args, nargs, kwnames) })
}

/// Calls `sys.monitoring.<name>` with the caller's arguments; on success
/// drops every dispatch of the tool (its first argument) from the map and
/// empties it, so a dispatch CPython still holds delivers nothing.
///
/// # Safety
/// GIL held; vectorcall arguments.
unsafe fn forward_and_drop(
    name: &CStr,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held; arguments per the vectorcall protocol, forwarded
    // unchanged (without ARGUMENTS_OFFSET: the array is the caller's).
    unsafe {
        let monitoring = sys_monitoring()?;
        let method = PyObject_GetAttrString(monitoring, name.as_ptr());
        if method.is_null() {
            return Err(Raised);
        }
        let result = PyObject_Vectorcall(method, args, nargs as usize, kwnames);
        Py_DECREF(method);
        if result.is_null() {
            return Err(Raised);
        }
        if nargs >= 1 {
            if let Err(Raised) = drop_tool(*args) {
                Py_DECREF(result);
                return Err(Raised);
            }
        }
        Ok(result)
    }
}

/// Drops and empties the dispatches of tool `tool` in this interpreter.
///
/// # Safety
/// GIL held; `tool` valid.
unsafe fn drop_tool(tool: *mut PyObject) -> Result<(), Raised> {
    // SAFETY: GIL held; keys and dispatches are held strongly while removed;
    // comparisons of exact ints run no Python code, so the map does not
    // change during iteration.
    unsafe {
        let tool = PyNumber_Index(tool);
        if tool.is_null() {
            return Err(Raised);
        }
        let map = match dispatch_map() {
            Ok(map) => map,
            Err(Raised) => {
                Py_DECREF(tool);
                return Err(Raised);
            }
        };
        let mut dropped = Vec::new();
        let (mut pos, mut key, mut value): (Py_ssize_t, *mut PyObject, *mut PyObject) =
            (0, null_mut(), null_mut());
        while PyDict_Next(map, &mut pos, &mut key, &mut value) != 0 {
            let matches = PyTuple_Check(key) != 0
                && PyTuple_Size(key) == 2
                && PyObject_RichCompareBool(PyTuple_GetItem(key, 0), tool, Py_EQ) == 1;
            if matches {
                Py_INCREF(key);
                Py_INCREF(value);
                dropped.push((key, value));
            }
        }
        PyErr_Clear();
        Py_DECREF(tool);
        for &(key, _) in &dropped {
            if PyDict_DelItem(map, key) != 0 {
                PyErr_Clear();
            }
        }
        Py_DECREF(map);
        for (key, d) in dropped {
            if dispatch::is_kind(d, Kind::Monitoring) {
                dispatch::clear_cases(d);
            }
            Py_DECREF(key);
            Py_DECREF(d);
        }
        Ok(())
    }
}

/// `tp_getattro`: own methods and dunders generically, the rest from
/// `sys.monitoring`; without `sys.monitoring` (3.11) every other name raises
/// `RuntimeError`.
unsafe extern "C" fn getattro(slf: *mut PyObject, name: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held, `slf` a proxy and `name`
    // an attribute name (str, possibly a subclass; anything else is left to
    // the generic lookup, which raises TypeError).
    unsafe {
        if PyUnicode_Check(name) == 0 {
            return PyObject_GenericGetAttr(slf, name);
        }
        let mut size: Py_ssize_t = 0;
        let text = PyUnicode_AsUTF8AndSize(name, &mut size);
        if text.is_null() {
            return null_mut();
        }
        // SAFETY: CPython keeps `size` UTF-8 bytes at `text` alive with `name`.
        let bytes =
            std::slice::from_raw_parts(text.cast::<u8>(), usize::try_from(size).unwrap_or(0));
        if bytes.starts_with(b"__") {
            return PyObject_GenericGetAttr(slf, name);
        }
        let monitoring = match sys_monitoring() {
            Ok(monitoring) => monitoring,
            Err(Raised) => return null_mut(),
        };
        // Our methods exist where sys.monitoring has them (clear_tool_id: 3.13+).
        let attribute = PyObject_GetAttr(monitoring, name);
        if attribute.is_null() || !OWN.iter().any(|own| own.to_bytes() == bytes) {
            return attribute;
        }
        Py_DECREF(attribute);
        PyObject_GenericGetAttr(slf, name)
    }
}

/// A new proxy bound to `space` (a `CoordinateSpace`): `space.monitoring`.
///
/// # Safety
/// GIL held; `space` valid; [`ready`] succeeded.
pub(super) unsafe fn proxy(space: *mut PyObject) -> Result<*mut PyObject, Raised> {
    let ty = TYPE.load(Ordering::Acquire);
    if ty.is_null() {
        // SAFETY: GIL held by the caller.
        return Err(unsafe { raise(PyExc_SystemError, c"_retrace is not initialised") });
    }
    // SAFETY: GIL held; `ty` is our type object, kept alive by TYPE; the
    // fresh instance has the `Proxy` layout and takes a new reference.
    unsafe {
        let object = PyType_GenericAlloc(ty.cast(), 0);
        if object.is_null() {
            return Err(Raised);
        }
        Py_INCREF(space);
        (*object.cast::<Proxy>()).space = space;
        Ok(object)
    }
}

/// `tp_repr`: `<retrace monitoring proxy for <space repr>>`.
unsafe extern "C" fn repr(slf: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and `slf` a proxy; the
    // format matches its argument (%R: object).
    unsafe {
        let space = match (*slf.cast::<Proxy>()).space {
            p if p.is_null() => Py_None(),
            p => p,
        };
        Py_INCREF(space);
        let text = PyUnicode_FromFormat(c"<retrace monitoring proxy for %R>".as_ptr(), space);
        Py_DECREF(space);
        text
    }
}

impl OneReference for Proxy {
    const OFFSET: usize = offset_of!(Proxy, space);
}

static mut METHODS: [PyMethodDef; 4] = [
    super::method_fast(
        c"register_callback",
        register_callback,
        c"register_callback($self, /, tool_id, event, callback, target_space=root_space)
--

Deliver `event` of `tool_id` to `callback` (run in target_space) only while
this space is active; None removes this space's callback. Returns this
space's previous callback or None.",
    ),
    super::method_fast(
        c"free_tool_id",
        free_tool_id,
        c"free_tool_id($self, tool_id, /)
--

sys.monitoring.free_tool_id(tool_id), then drop the tool's space-filtered
callbacks.",
    ),
    super::method_fast(
        c"clear_tool_id",
        clear_tool_id,
        c"clear_tool_id($self, tool_id, /)
--

sys.monitoring.clear_tool_id(tool_id), then drop the tool's space-filtered
callbacks.",
    ),
    PyMethodDef::zeroed(),
];

/// Creates the proxy type once (it is not a module attribute).
///
/// # Safety
/// GIL held.
pub(super) unsafe fn ready() -> Result<(), Raised> {
    if !TYPE.load(Ordering::Acquire).is_null() {
        return Ok(());
    }
    let slot = |slot: c_int, pfunc: *mut c_void| PyType_Slot { slot, pfunc };
    let mut slots = [
        slot(Py_tp_doc, DOC.as_ptr() as *mut c_void),
        slot(Py_tp_dealloc, release::dealloc::<Proxy> as *mut c_void),
        slot(Py_tp_traverse, release::traverse::<Proxy> as *mut c_void),
        slot(Py_tp_clear, release::clear::<Proxy> as *mut c_void),
        slot(Py_tp_repr, repr as *mut c_void),
        slot(Py_tp_getattro, getattro as *mut c_void),
        slot(Py_tp_methods, addr_of_mut!(METHODS).cast()),
        slot(0, null_mut()),
    ];
    let mut spec = PyType_Spec {
        name: c"_retrace.MonitoringProxy".as_ptr(),
        basicsize: std::mem::size_of::<Proxy>() as c_int,
        itemsize: 0,
        flags: (Py_TPFLAGS_DEFAULT
            | Py_TPFLAGS_HAVE_GC
            | Py_TPFLAGS_IMMUTABLETYPE
            | Py_TPFLAGS_DISALLOW_INSTANTIATION) as c_uint,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: GIL held; spec and slots are read during the call; the method
    // table is static and outlives the type.
    let ty = unsafe { PyType_FromSpec(&mut spec) };
    if ty.is_null() {
        return Err(Raised);
    }
    TYPE.store(ty, Ordering::Release);
    Ok(())
}

/// The per-thread hook a kind installs: its getter, its setter, the
/// `settrace`/`setprofile` method name and the callback error.
struct Hook {
    kind: Kind,
    get: &'static CStr,
    set: &'static CStr,
    missing: &'static CStr,
    not_callable: &'static CStr,
}

const TRACE: Hook = Hook {
    kind: Kind::Trace,
    get: c"gettrace",
    set: c"settrace",
    missing: c"settrace() missing required argument 'callback' (pos 1)",
    not_callable: c"trace callback must be callable or None",
};

const PROFILE: Hook = Hook {
    kind: Kind::Profile,
    get: c"getprofile",
    set: c"setprofile",
    missing: c"setprofile() missing required argument 'callback' (pos 1)",
    not_callable: c"profile callback must be callable or None",
};

/// `space.settrace(callback, target_space=root_space)` (§17.3).
pub(super) unsafe extern "C" fn settrace(
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held, `slf` a CoordinateSpace
    // and vectorcall arguments.
    finish(unsafe { set_hook(&TRACE, slf, args, nargs, kwnames) })
}

/// `space.setprofile(callback, target_space=root_space)` (§17.3).
pub(super) unsafe extern "C" fn setprofile(
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held, `slf` a CoordinateSpace
    // and vectorcall arguments.
    finish(unsafe { set_hook(&PROFILE, slf, args, nargs, kwnames) })
}

/// Sets or removes this space's case in the current thread's dispatch of
/// `hook.kind` (a foreign hook is replaced by a new dispatch) and installs
/// the dispatch, or nothing when no case remains. On failure to install, the
/// case is restored.
///
/// # Safety
/// GIL held; `slf` a CoordinateSpace; vectorcall arguments.
unsafe fn set_hook(
    hook: &Hook,
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held; arguments per the vectorcall protocol; references
    // are counted on every path and the dispatch is held strongly while
    // Python code (sys.set*) runs.
    unsafe {
        let [callback, target] = match_parameters(
            hook.set,
            [c"callback", c"target_space"],
            args,
            nargs,
            kwnames,
        )?;
        if callback.is_null() {
            return Err(type_error(hook.missing));
        }
        let callback = optional_callable(callback, hook.not_callable)?;
        let target = target_space(target)?;
        let source = match space::handle_id(slf) {
            Some(id) => id?,
            None => return Err(raise(PyExc_SystemError, c"not a CoordinateSpace")),
        };
        let sys = PyImport_ImportModule(c"sys".as_ptr());
        if sys.is_null() {
            return Err(Raised);
        }
        let result = set_hook_in(hook, sys, source, callback, target);
        Py_DECREF(sys);
        result
    }
}

/// The body of [`set_hook`] once the arguments are checked.
///
/// # Safety
/// GIL held; `sys` the sys module; `callback` valid.
unsafe fn set_hook_in(
    hook: &Hook,
    sys: *mut PyObject,
    source: u32,
    callback: Option<*mut PyObject>,
    target: u32,
) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held; see set_hook.
    unsafe {
        let current = call_method(sys, hook.get, &[])?;
        let installed = dispatch::is_kind(current, hook.kind);
        let d = if installed {
            current
        } else {
            Py_DECREF(current);
            dispatch::new(hook.kind, null_mut())?
        };
        let old = dispatch::replace_case(d, source, callback.map(|cb| (cb, target)));
        let empty = dispatch::case_count(d) == 0;
        let set = if installed && !empty {
            Ok(())
        } else {
            let value = if empty { Py_None() } else { d };
            call_method(sys, hook.set, &[value]).map(|r| Py_DECREF(r))
        };
        if set.is_err() {
            if let Some((new, _)) = dispatch::replace_case(d, source, old) {
                Py_DECREF(new);
            }
            if let Some((old, _)) = old {
                Py_DECREF(old);
            }
            Py_DECREF(d);
            return Err(Raised);
        }
        Py_DECREF(d);
        if let Some((old, _)) = old {
            release(old);
        }
        Ok(none())
    }
}
