//! `_retrace.SpaceDispatch` (SEMANTICS §17.1): one callable installed as a
//! CPython hook that forwards each invocation to the callback registered for
//! the coordinate space the calling thread is in, run inside that callback's
//! target space.
//!
//! It exists because CPython's hooks (`sys.monitoring` callbacks,
//! `sys.settrace`, `sys.setprofile`) belong to a tool or a thread, not to a
//! coordinate space: a dispatch installed as the hook lets each space see only
//! the events raised while it is active. `space.monitoring`, `space.settrace`
//! and `space.setprofile` (hooks.rs) create, fill and install dispatches.
//!
//! The cases live in a small Rust vector; no reference into it is held while
//! Python code runs, so a callback may change the cases of the dispatch that
//! is calling it.

use super::args::space_id;
use super::errors::{finish, raise, type_error, Raised};
use super::ffi::{PyObject_Vectorcall, PyVectorcall_Call, TPFLAGS_HAVE_VECTORCALL};
use super::release::release;
use super::results::{none, word};
use super::run::call_in_space;
use super::wrapper::{self, Form};
use crate::api;
use pyo3_ffi::*;
use std::ffi::{c_int, c_uint, c_void, CStr};
use std::ptr::{addr_of_mut, null, null_mut};
use std::sync::atomic::{AtomicPtr, Ordering};

/// What a dispatch is installed as; decides what a case's result becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    /// A `sys.monitoring` callback: results pass through (`DISABLE` works).
    Monitoring = 0,
    /// A `sys.settrace` function: results become trace wrappers.
    Trace = 1,
    /// A `sys.setprofile` function: results pass through.
    Profile = 2,
}

impl Kind {
    /// The kind's name as given to the constructor.
    pub(super) fn name(self) -> &'static CStr {
        match self {
            Kind::Monitoring => c"monitoring",
            Kind::Trace => c"trace",
            Kind::Profile => c"profile",
        }
    }
}

/// A registered case: events from `source` go to `callback`, run in `target`.
pub(super) struct Case {
    source: u32,
    /// Strong reference.
    callback: *mut PyObject,
    target: u32,
}

/// The instance layout; [`alloc`] initialises every field before the
/// instance is used.
#[repr(C)]
struct SpaceDispatch {
    ob_base: PyObject,
    /// This type's vectorcall entry (`__vectorcalloffset__` points here).
    vectorcall: Option<vectorcallfunc>,
    /// The default callable (strong reference) or `NULL`.
    default: *mut PyObject,
    /// The cases, at most one per source space.
    cases: Vec<Case>,
    kind: Kind,
}

/// The type object, created by [`add_to`] and kept for the life of the process.
static TYPE: AtomicPtr<PyObject> = AtomicPtr::new(null_mut());

const DOC: &CStr = c"SpaceDispatch(kind, default=None, /)

A hook callable that forwards each call to the callback registered for the
calling thread's current coordinate space (set_case), run inside the case's
target space. kind is 'monitoring', 'trace' or 'profile'; unmatched calls
(and calls from transparent callback code) go to default, or return None.";

/// The dispatch layout of `object` if it is a dispatch of `kind`.
///
/// # Safety
/// GIL held; `object` valid.
unsafe fn layout(object: *mut PyObject) -> Option<*mut SpaceDispatch> {
    let ty = TYPE.load(Ordering::Acquire);
    // SAFETY: GIL held; `ty` is our live type object when non-null.
    let is_dispatch = !ty.is_null() && unsafe { PyObject_TypeCheck(object, ty.cast()) } != 0;
    is_dispatch.then_some(object.cast())
}

/// Whether `object` is a dispatch of `kind`.
///
/// # Safety
/// GIL held; `object` valid.
pub(super) unsafe fn is_kind(object: *mut PyObject, kind: Kind) -> bool {
    // SAFETY: GIL held; `layout` checked the type.
    unsafe { layout(object).is_some_and(|d| (*d).kind == kind) }
}

/// A new dispatch of `kind` with an optional default (borrowed, may be `NULL`).
///
/// # Safety
/// GIL held; `default` `NULL` or a valid callable; [`add_to`] succeeded.
pub(super) unsafe fn new(kind: Kind, default: *mut PyObject) -> Result<*mut PyObject, Raised> {
    let ty = TYPE.load(Ordering::Acquire);
    if ty.is_null() {
        // SAFETY: GIL held by the caller.
        return Err(unsafe { raise(PyExc_SystemError, c"_retrace is not initialised") });
    }
    // SAFETY: GIL held; `ty` is our type object, kept alive by TYPE.
    unsafe { alloc(ty.cast(), kind, default) }
}

/// Allocates an instance of `ty` (our type) and fills it.
///
/// # Safety
/// GIL held; `ty` our type; `default` `NULL` or valid.
unsafe fn alloc(
    ty: *mut PyTypeObject,
    kind: Kind,
    default: *mut PyObject,
) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held; `ty` is our type (caller's contract).
    let object = unsafe { PyType_GenericAlloc(ty, 0) };
    if object.is_null() {
        return Err(Raised);
    }
    let d = object.cast::<SpaceDispatch>();
    // SAFETY: `object` is a fresh zeroed instance with the `SpaceDispatch`
    // layout; every field is written in place (the zeroed `cases` is not a
    // value to drop) before anything can reach it, since nothing here runs
    // Python code or the GC. The default gets a new reference.
    unsafe {
        Py_XINCREF(default);
        addr_of_mut!((*d).vectorcall).write(Some(call));
        addr_of_mut!((*d).default).write(default);
        addr_of_mut!((*d).cases).write(Vec::new());
        addr_of_mut!((*d).kind).write(kind);
    }
    Ok(object)
}

/// Sets (`Some`) or removes (`None`) the case of `source` and returns the
/// previous one, whose callback reference passes to the caller. The new
/// callback gets a new reference. Runs no Python code.
///
/// # Safety
/// GIL held; `object` a dispatch ([`is_kind`]); the new callback valid.
pub(super) unsafe fn replace_case(
    object: *mut PyObject,
    source: u32,
    case: Option<(*mut PyObject, u32)>,
) -> Option<(*mut PyObject, u32)> {
    let d = object.cast::<SpaceDispatch>();
    // SAFETY: `object` has the dispatch layout (caller's contract); the GIL
    // serialises access to the vector and nothing here runs Python code.
    let cases = unsafe { &mut (*d).cases };
    let index = cases.iter().position(|c| c.source == source);
    let old = index.map(|i| cases.remove(i));
    if let Some((callback, target)) = case {
        // SAFETY: GIL held; `callback` is valid (caller's contract).
        unsafe { Py_INCREF(callback) };
        cases.push(Case {
            source,
            callback,
            target,
        });
    }
    old.map(|c| (c.callback, c.target))
}

/// The number of cases.
///
/// # Safety
/// GIL held; `object` a dispatch.
pub(super) unsafe fn case_count(object: *mut PyObject) -> usize {
    // SAFETY: `object` has the dispatch layout (caller's contract).
    unsafe { (*object.cast::<SpaceDispatch>()).cases.len() }
}

/// Whether `source` has a case.
///
/// # Safety
/// GIL held; `object` a dispatch.
pub(super) unsafe fn has_case(object: *mut PyObject, source: u32) -> bool {
    // SAFETY: `object` has the dispatch layout (caller's contract).
    unsafe {
        (*object.cast::<SpaceDispatch>())
            .cases
            .iter()
            .any(|c| c.source == source)
    }
}

/// Removes every case and releases the callbacks (which may run Python code,
/// after the dispatch is already empty).
///
/// # Safety
/// GIL held; `object` a dispatch.
pub(super) unsafe fn clear_cases(object: *mut PyObject) {
    // SAFETY: `object` has the dispatch layout (caller's contract); the cases
    // are taken out before any reference is released.
    unsafe {
        let taken = std::mem::take(&mut (*object.cast::<SpaceDispatch>()).cases);
        release_cases(taken);
    }
}

/// Releases the callbacks of taken-out cases.
///
/// # Safety
/// GIL held; the cases own their callback references.
unsafe fn release_cases(cases: Vec<Case>) {
    for case in cases {
        // SAFETY: the case owned this reference (caller's contract).
        unsafe { release(case.callback) };
    }
}

/// The case of `source`: a new reference to its callback and its target.
///
/// # Safety
/// GIL held; `d` a dispatch.
unsafe fn lookup(d: *mut SpaceDispatch, source: u32) -> Option<(*mut PyObject, u32)> {
    // SAFETY: `d` has the dispatch layout (caller's contract); the callback
    // reference is taken before any Python code can change the cases.
    unsafe {
        let case = (*d).cases.iter().find(|c| c.source == source)?;
        Py_INCREF(case.callback);
        Some((case.callback, case.target))
    }
}

/// `tp_vectorcall`: the §17.1 call.
unsafe extern "C" fn call(
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargsf: usize,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    let d = slf.cast::<SpaceDispatch>();
    // An engine that cannot name the thread's space counts as "no source":
    // a hook must not fail because of it.
    let source = api::dispatch_source_space().ok().flatten();
    // SAFETY: CPython calls this with the GIL held, `slf` an instance of our
    // type and vectorcall arguments, which are forwarded unchanged.
    unsafe {
        let Some((callback, target)) = source.and_then(|s| lookup(d, s)) else {
            let default = (*d).default;
            if default.is_null() {
                return none();
            }
            Py_INCREF(default);
            let result = PyObject_Vectorcall(default, args, nargsf, kwnames);
            Py_DECREF(default);
            return result;
        };
        if Py_EnterRecursiveCall(c" while calling a SpaceDispatch case".as_ptr()) != 0 {
            Py_DECREF(callback);
            return null_mut();
        }
        // Read before the call: CPython calls hooks without owning a
        // reference, so uninstalling one from its callback may free `slf`.
        let kind = (*d).kind;
        let result = call_in_space(target, callback, args, nargsf, kwnames);
        Py_LeaveRecursiveCall();
        Py_DECREF(callback);
        if result.is_null() || kind != Kind::Trace || result == Py_None() {
            return result;
        }
        // A local trace function: runs in the target space like the case.
        let wrapped = wrapper::new(Form::Trace, target, result);
        Py_DECREF(result);
        finish(wrapped)
    }
}

/// `tp_new`: `SpaceDispatch(kind, default=None)`, positional only.
unsafe extern "C" fn tp_new(
    ty: *mut PyTypeObject,
    args: *mut PyObject,
    kwargs: *mut PyObject,
) -> *mut PyObject {
    let mut kind: *mut PyObject = null_mut();
    let mut default: *mut PyObject = null_mut();
    // SAFETY: called by CPython with the GIL held; `args` is a tuple and
    // `kwargs` NULL or a dict; the format takes two objects written as
    // borrowed references.
    unsafe {
        if !kwargs.is_null() && PyDict_Size(kwargs) != 0 {
            type_error(c"SpaceDispatch() takes no keyword arguments");
            return null_mut();
        }
        if PyArg_ParseTuple(
            args,
            c"O|O:SpaceDispatch".as_ptr(),
            &mut kind as *mut *mut PyObject,
            &mut default as *mut *mut PyObject,
        ) == 0
        {
            return null_mut();
        }
        let kind = [Kind::Monitoring, Kind::Trace, Kind::Profile]
            .into_iter()
            .find(|k| {
                PyUnicode_Check(kind) != 0
                    && PyUnicode_CompareWithASCIIString(kind, k.name().as_ptr()) == 0
            });
        let Some(kind) = kind else {
            raise(PyExc_ValueError, c"unknown SpaceDispatch kind");
            return null_mut();
        };
        if default == Py_None() {
            default = null_mut();
        }
        if !default.is_null() && PyCallable_Check(default) == 0 {
            type_error(c"SpaceDispatch default must be callable or None");
            return null_mut();
        }
        finish(alloc(ty, kind, default))
    }
}

/// `d.set_case(source_space_id, callback, target_space_id=None)`.
unsafe extern "C" fn set_case(
    slf: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: called by CPython (METH_FASTCALL) with the GIL held, `slf` an
    // instance of our type and `nargs` arguments in `args`.
    unsafe {
        if !(2..=3).contains(&nargs) {
            type_error(c"set_case expected 2 or 3 arguments");
            return null_mut();
        }
        let callback = *args.offset(1);
        let checked = space_id(*args).and_then(|source| {
            if callback != Py_None() && PyCallable_Check(callback) == 0 {
                return Err(type_error(
                    c"SpaceDispatch callback must be callable or None",
                ));
            }
            let target = if nargs == 3 {
                *args.offset(2)
            } else {
                null_mut()
            };
            Ok((source, space_id(target)?))
        });
        let Ok((source, target)) = checked else {
            return null_mut();
        };
        let case = (callback != Py_None()).then_some((callback, target));
        match replace_case(slf, source, case) {
            Some((old, _)) => old,
            None => none(),
        }
    }
}

/// `d.get_case(source_space_id)` → `(callback, target_space_id)` or `None`.
unsafe extern "C" fn get_case(
    slf: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: called by CPython (METH_FASTCALL) with the GIL held, `slf` an
    // instance of our type and `nargs` arguments in `args`.
    unsafe {
        if nargs != 1 {
            type_error(c"get_case expected 1 argument");
            return null_mut();
        }
        let Ok(source) = space_id(*args) else {
            return null_mut();
        };
        let Some((callback, target)) = lookup(slf.cast(), source) else {
            return none();
        };
        let target = match word(u64::from(target)) {
            Ok(target) => target,
            Err(Raised) => {
                Py_DECREF(callback);
                return null_mut();
            }
        };
        let pair = PyTuple_Pack(2, callback, target);
        Py_DECREF(callback);
        Py_DECREF(target);
        pair
    }
}

/// `len(d)`: the number of cases.
unsafe extern "C" fn length(slf: *mut PyObject) -> Py_ssize_t {
    // SAFETY: called by CPython with the GIL held and `slf` an instance of our type.
    let count = unsafe { case_count(slf) };
    Py_ssize_t::try_from(count).unwrap_or(Py_ssize_t::MAX)
}

/// `.kind`: the kind's name.
unsafe extern "C" fn get_kind(slf: *mut PyObject, _closure: *mut c_void) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and `slf` an instance of our type.
    unsafe { PyUnicode_FromString((*slf.cast::<SpaceDispatch>()).kind.name().as_ptr()) }
}

/// `tp_repr`: `<_retrace.SpaceDispatch kind='trace' cases=N>`.
unsafe extern "C" fn repr(slf: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and `slf` an instance of
    // our type; the format matches its arguments (%s: C string, %zd: Py_ssize_t).
    unsafe {
        PyUnicode_FromFormat(
            c"<_retrace.SpaceDispatch kind='%s' cases=%zd>".as_ptr(),
            (*slf.cast::<SpaceDispatch>()).kind.name().as_ptr(),
            length(slf),
        )
    }
}

/// `tp_traverse`: the default, every case callback and the heap type.
unsafe extern "C" fn traverse(slf: *mut PyObject, visit: visitproc, arg: *mut c_void) -> c_int {
    // SAFETY: CPython's GC calls this with `slf` an instance of our type; it
    // runs no Python code, so the cases cannot change meanwhile.
    unsafe {
        let d = slf.cast::<SpaceDispatch>();
        let callbacks = (*d).cases.iter().map(|c| c.callback);
        for object in std::iter::once((*d).default).chain(callbacks) {
            if !object.is_null() {
                let status = visit(object, arg);
                if status != 0 {
                    return status;
                }
            }
        }
        visit(Py_TYPE(slf).cast(), arg)
    }
}

/// `tp_clear`: drops the default and the cases.
unsafe extern "C" fn clear(slf: *mut PyObject) -> c_int {
    // SAFETY: called with the GIL held and `slf` an instance of our type; the
    // fields are emptied before any reference is released.
    unsafe {
        let d = slf.cast::<SpaceDispatch>();
        let default = std::mem::replace(&mut (*d).default, null_mut());
        let cases = std::mem::take(&mut (*d).cases);
        Py_XDECREF(default);
        release_cases(cases);
    }
    0
}

/// `tp_dealloc`.
unsafe extern "C" fn dealloc(slf: *mut PyObject) {
    // SAFETY: called once by CPython when the last reference goes, with the
    // GIL held; the type is GC-managed and not subclassable, so the memory
    // came from the GC allocator and the heap type holds one reference per
    // instance. Owned references are taken out before the memory is freed.
    unsafe {
        let ty = Py_TYPE(slf);
        PyObject_GC_UnTrack(slf.cast());
        let d = slf.cast::<SpaceDispatch>();
        let default = std::mem::replace(&mut (*d).default, null_mut());
        let cases = std::mem::take(&mut (*d).cases);
        PyObject_GC_Del(slf.cast());
        Py_DECREF(ty.cast());
        release(default);
        release_cases(cases);
    }
}

static mut METHODS: [PyMethodDef; 3] = [
    super::method_positional(
        c"set_case",
        set_case,
        c"set_case($self, source_space_id, callback, target_space_id=None, /)
--

Route calls made in source_space_id to callback, run in target_space_id;
None removes the case. Returns the source's previous callback or None.",
    ),
    super::method_positional(
        c"get_case",
        get_case,
        c"get_case($self, source_space_id, /)
--

(callback, target_space_id) of the source's case, or None.",
    ),
    PyMethodDef::zeroed(),
];

static mut GETSET: [PyGetSetDef; 2] = [
    PyGetSetDef {
        name: c"kind".as_ptr(),
        get: Some(get_kind),
        set: None,
        doc: c"'monitoring', 'trace' or 'profile'; read-only.".as_ptr(),
        closure: null_mut(),
    },
    PyGetSetDef {
        name: null(),
        get: None,
        set: None,
        doc: null(),
        closure: null_mut(),
    },
];

/// The vectorcall offset member.
static mut MEMBERS: [PyMemberDef; 2] = [
    PyMemberDef {
        name: c"__vectorcalloffset__".as_ptr(),
        type_code: Py_T_PYSSIZET,
        offset: std::mem::offset_of!(SpaceDispatch, vectorcall) as Py_ssize_t,
        flags: Py_READONLY,
        doc: null(),
    },
    PyMemberDef {
        name: null(),
        type_code: 0,
        offset: 0,
        flags: 0,
        doc: null(),
    },
];

/// Creates the type (once) and adds it to `module` as `SpaceDispatch`; also
/// readies the `space.monitoring` proxy type.
///
/// # Safety
/// GIL held; `module` a module object.
pub(super) unsafe fn add_to(module: *mut PyObject) -> Result<(), Raised> {
    let mut ty = TYPE.load(Ordering::Acquire);
    if ty.is_null() {
        let slot = |slot: c_int, pfunc: *mut c_void| PyType_Slot { slot, pfunc };
        let mut slots = [
            slot(Py_tp_doc, DOC.as_ptr() as *mut c_void),
            slot(Py_tp_new, tp_new as *mut c_void),
            slot(Py_tp_dealloc, dealloc as *mut c_void),
            slot(Py_tp_traverse, traverse as *mut c_void),
            slot(Py_tp_clear, clear as *mut c_void),
            slot(Py_tp_repr, repr as *mut c_void),
            slot(Py_tp_call, PyVectorcall_Call as *mut c_void),
            slot(Py_mp_length, length as *mut c_void),
            slot(Py_tp_methods, addr_of_mut!(METHODS).cast()),
            slot(Py_tp_getset, addr_of_mut!(GETSET).cast()),
            slot(Py_tp_members, addr_of_mut!(MEMBERS).cast()),
            slot(0, null_mut()),
        ];
        let mut spec = PyType_Spec {
            name: c"_retrace.SpaceDispatch".as_ptr(),
            basicsize: std::mem::size_of::<SpaceDispatch>() as c_int,
            itemsize: 0,
            flags: (Py_TPFLAGS_DEFAULT
                | Py_TPFLAGS_HAVE_GC
                | Py_TPFLAGS_IMMUTABLETYPE
                | TPFLAGS_HAVE_VECTORCALL) as c_uint,
            slots: slots.as_mut_ptr(),
        };
        // SAFETY: GIL held; spec and slots are read during the call; the
        // method, getset and member tables are static and outlive the type.
        ty = unsafe { PyType_FromSpec(&mut spec) };
        if ty.is_null() {
            return Err(Raised);
        }
        TYPE.store(ty, Ordering::Release);
    }
    // SAFETY: GIL held; `module` is a module, `ty` a live type object;
    // PyModule_AddObjectRef takes its own reference.
    if unsafe { PyModule_AddObjectRef(module, c"SpaceDispatch".as_ptr(), ty) } != 0 {
        return Err(Raised);
    }
    // SAFETY: GIL held.
    unsafe { super::hooks::ready() }
}
