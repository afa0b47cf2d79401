//! `_retrace.CallWrapper` (SEMANTICS §11.3): the object returned by
//! `exclude`/`disable`, `include`/`enable`, `wrap_for_space` and
//! `space.wrap`.
//!
//! Calling a wrapper enters its target space, vectorcalls the wrapped object
//! with the caller's arguments and leaves again; being a C type, it adds no
//! Python frame. Fetched through an instance it binds a wrapped descriptor
//! and wraps the bound result, so decorated methods receive `self`. The type
//! is not a module attribute, cannot be instantiated or subclassed from
//! Python, compares and hashes by identity, and is GC-tracked.

use super::args::{callable, space_id};
use super::errors::{finish, raise, type_error, Raised};
use super::ffi::{PyVectorcall_Call, TPFLAGS_HAVE_VECTORCALL};
use super::release::{self, OneReference};
use super::run::call_in_space;
use pyo3_ffi::*;
use std::ffi::{c_int, c_uint, c_void};
use std::mem::offset_of;
use std::ptr::{addr_of_mut, null_mut};
use std::sync::atomic::{AtomicPtr, Ordering};

/// Which factory made a wrapper: decides the `repr` form and, for
/// [`Form::Trace`], how results are returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Form {
    /// `wrap_for_space`, `space.wrap` (so also `retrace.exclude`/`include`).
    Space,
    /// `_retrace.exclude` / `_retrace.disable`.
    Exclude,
    /// `_retrace.include` / `_retrace.enable`.
    Include,
    /// A local trace function returned through a `"trace"` `SpaceDispatch`
    /// (§17.1): callable results are wrapped the same way, its own wrapped
    /// object comes back as the wrapper itself.
    Trace,
}

/// The disabled space (§11.1).
const DISABLED_SPACE: u32 = 1;
/// The root space (§11.1).
const ROOT_SPACE: u32 = 0;

/// The instance layout.
#[repr(C)]
struct CallWrapper {
    ob_base: PyObject,
    /// This type's vectorcall entry (`__vectorcalloffset__` points here).
    vectorcall: Option<vectorcallfunc>,
    /// The wrapped callable (strong reference; `NULL` only after `tp_clear`).
    wrapped: *mut PyObject,
    /// The space entered around each call.
    space: u32,
    form: Form,
}

/// The type object, created by [`ready`] at module initialisation and kept
/// for the life of the process.
static TYPE: AtomicPtr<PyObject> = AtomicPtr::new(null_mut());

/// Members: the read-only `__wrapped__` and the vectorcall offset.
static mut MEMBERS: [PyMemberDef; 3] = [
    PyMemberDef {
        name: c"__wrapped__".as_ptr(),
        type_code: Py_T_OBJECT_EX,
        offset: offset_of!(CallWrapper, wrapped) as Py_ssize_t,
        flags: Py_READONLY,
        doc: c"The wrapped callable.".as_ptr(),
    },
    PyMemberDef {
        name: c"__vectorcalloffset__".as_ptr(),
        type_code: Py_T_PYSSIZET,
        offset: offset_of!(CallWrapper, vectorcall) as Py_ssize_t,
        flags: Py_READONLY,
        doc: std::ptr::null(),
    },
    PyMemberDef {
        name: std::ptr::null(),
        type_code: 0,
        offset: 0,
        flags: 0,
        doc: std::ptr::null(),
    },
];

const DOC: &std::ffi::CStr = c"Calls the wrapped callable inside a Retrace coordinate space.";

/// Creates the type once; later calls (another module initialisation) reuse it.
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
        slot(
            Py_tp_dealloc,
            release::dealloc::<CallWrapper> as *mut c_void,
        ),
        slot(
            Py_tp_traverse,
            release::traverse::<CallWrapper> as *mut c_void,
        ),
        slot(Py_tp_clear, release::clear::<CallWrapper> as *mut c_void),
        slot(Py_tp_repr, repr as *mut c_void),
        slot(Py_tp_call, PyVectorcall_Call as *mut c_void),
        slot(Py_tp_descr_get, descr_get as *mut c_void),
        slot(Py_tp_members, addr_of_mut!(MEMBERS).cast()),
        slot(0, null_mut()),
    ];
    let mut spec = PyType_Spec {
        name: c"_retrace.CallWrapper".as_ptr(),
        basicsize: std::mem::size_of::<CallWrapper>() as c_int,
        itemsize: 0,
        flags: (Py_TPFLAGS_DEFAULT
            | Py_TPFLAGS_HAVE_GC
            | Py_TPFLAGS_IMMUTABLETYPE
            | Py_TPFLAGS_DISALLOW_INSTANTIATION
            | TPFLAGS_HAVE_VECTORCALL) as c_uint,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: GIL held; the spec and slots are read during the call; the
    // members array is static and CPython copies it into the heap type.
    let ty = unsafe { PyType_FromSpec(&mut spec) };
    if ty.is_null() {
        return Err(Raised);
    }
    TYPE.store(ty, Ordering::Release);
    Ok(())
}

/// A new wrapper calling `target` inside `space`.
///
/// # Safety
/// GIL held; `target` valid; [`ready`] succeeded.
pub(super) unsafe fn new(
    form: Form,
    space: u32,
    target: *mut PyObject,
) -> Result<*mut PyObject, Raised> {
    let ty = TYPE.load(Ordering::Acquire);
    if ty.is_null() {
        // SAFETY: GIL held by the caller.
        return Err(unsafe { raise(PyExc_SystemError, c"_retrace is not initialised") });
    }
    // SAFETY: GIL held; `ty` is our type object (kept alive by TYPE).
    let object = unsafe { PyType_GenericAlloc(ty.cast(), 0) };
    if object.is_null() {
        return Err(Raised);
    }
    let wrapper = object.cast::<CallWrapper>();
    // SAFETY: `object` is a fresh, zeroed instance of our type, whose layout
    // is `CallWrapper`; the wrapper takes a new reference to `target`.
    unsafe {
        Py_INCREF(target);
        (*wrapper).vectorcall = Some(call);
        (*wrapper).wrapped = target;
        (*wrapper).space = space;
        (*wrapper).form = form;
    }
    Ok(object)
}

/// `tp_vectorcall`: enter, call, leave.
unsafe extern "C" fn call(
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargsf: usize,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: CPython calls this with the GIL held, `slf` an instance of our
    // type and vectorcall arguments, which are forwarded unchanged.
    unsafe {
        let wrapper = slf.cast::<CallWrapper>();
        let (target, space, form) = ((*wrapper).wrapped, (*wrapper).space, (*wrapper).form);
        if target.is_null() {
            raise(PyExc_RuntimeError, c"the retrace wrapper was cleared");
            return null_mut();
        }
        // Wrapper chains recurse in C only: bound them by the C recursion limit.
        if Py_EnterRecursiveCall(c" while calling a retrace wrapper".as_ptr()) != 0 {
            return null_mut();
        }
        Py_INCREF(target);
        let result = if form == Form::Trace {
            // CPython calls `f_trace` without owning a reference; the tracer
            // may replace it, and the result may be this wrapper.
            Py_INCREF(slf);
            let result = call_in_space(space, target, args, nargsf, kwnames);
            let result = if result.is_null() {
                result
            } else {
                trace_result(slf, target, space, result)
            };
            Py_DECREF(slf);
            result
        } else {
            call_in_space(space, target, args, nargsf, kwnames)
        };
        Py_DECREF(target);
        Py_LeaveRecursiveCall();
        result
    }
}

/// The result of a trace wrapper's call (§17.1): `None` and non-callables
/// unchanged, the wrapped object itself as this wrapper, other callables as
/// new trace wrappers for the same space. Consumes `result`.
///
/// # Safety
/// GIL held; `slf` a trace wrapper around `target`; `result` owned.
unsafe fn trace_result(
    slf: *mut PyObject,
    target: *mut PyObject,
    space: u32,
    result: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: GIL held; `result` is owned and released on every path.
    unsafe {
        if result == target {
            Py_DECREF(result);
            Py_INCREF(slf);
            return slf;
        }
        if result == Py_None() || PyCallable_Check(result) == 0 {
            return result;
        }
        let wrapped = new(Form::Trace, space, result);
        Py_DECREF(result);
        finish(wrapped)
    }
}

/// `tp_descr_get`: bind a wrapped descriptor fetched through an instance.
unsafe extern "C" fn descr_get(
    slf: *mut PyObject,
    instance: *mut PyObject,
    owner: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: CPython calls this with the GIL held and `slf` an instance of
    // our type; `instance`/`owner` may be NULL.
    unsafe {
        let wrapper = slf.cast::<CallWrapper>();
        let target = (*wrapper).wrapped;
        let unbound = || {
            Py_INCREF(slf);
            slf
        };
        // Through the class (like functions, `None` counts as no instance).
        if target.is_null() || instance.is_null() || instance == Py_None() {
            return unbound();
        }
        let get = PyType_GetSlot(Py_TYPE(target), Py_tp_descr_get);
        if get.is_null() {
            return unbound();
        }
        // SAFETY: the slot holds a `descrgetfunc` (checked non-null).
        let get = std::mem::transmute::<*mut c_void, descrgetfunc>(get);
        Py_INCREF(target);
        let bound = get(target, instance, owner);
        Py_DECREF(target);
        if bound.is_null() {
            return null_mut();
        }
        let result = new((*wrapper).form, (*wrapper).space, bound);
        Py_DECREF(bound);
        finish(result)
    }
}

/// `tp_repr`: one of the three forms of §11.3.
unsafe extern "C" fn repr(slf: *mut PyObject) -> *mut PyObject {
    // SAFETY: CPython calls this with the GIL held and `slf` an instance of
    // our type; each format matches its arguments (%u: unsigned int, %R: object).
    unsafe {
        let wrapper = slf.cast::<CallWrapper>();
        let target = match (*wrapper).wrapped {
            p if p.is_null() => Py_None(),
            p => p,
        };
        Py_INCREF(target);
        let text = match (*wrapper).form {
            Form::Space => PyUnicode_FromFormat(
                c"<_retrace.wrap_for_space wrapper space_id=%u for %R>".as_ptr(),
                (*wrapper).space as c_uint,
                target,
            ),
            Form::Exclude => {
                PyUnicode_FromFormat(c"<_retrace.exclude wrapper for %R>".as_ptr(), target)
            }
            Form::Include => {
                PyUnicode_FromFormat(c"<_retrace.include wrapper for %R>".as_ptr(), target)
            }
            Form::Trace => PyUnicode_FromFormat(
                c"<_retrace.trace wrapper space_id=%u for %R>".as_ptr(),
                (*wrapper).space as c_uint,
                target,
            ),
        };
        Py_DECREF(target);
        text
    }
}

impl OneReference for CallWrapper {
    const OFFSET: usize = offset_of!(CallWrapper, wrapped);
}

/// Checks the callable, then wraps it.
///
/// # Safety
/// GIL held; `target` valid.
pub(super) unsafe fn checked(
    form: Form,
    space: u32,
    target: *mut PyObject,
    message: &std::ffi::CStr,
) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held by the caller.
    unsafe {
        callable(target, message)?;
        new(form, space, target)
    }
}

const NOT_CALLABLE: &std::ffi::CStr = c"Retrace coordinate wrapper argument must be callable";

/// `_retrace.exclude(callable)` and `_retrace.disable(callable)`.
pub(super) unsafe extern "C" fn exclude(
    _module: *mut PyObject,
    target: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython (METH_O) with the GIL held.
    finish(unsafe { checked(Form::Exclude, DISABLED_SPACE, target, NOT_CALLABLE) })
}

/// `_retrace.include(callable)` and `_retrace.enable(callable)`.
pub(super) unsafe extern "C" fn include(
    _module: *mut PyObject,
    target: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython (METH_O) with the GIL held.
    finish(unsafe { checked(Form::Include, ROOT_SPACE, target, NOT_CALLABLE) })
}

/// `_retrace.wrap_for_space(space_id, callable)`.
pub(super) unsafe extern "C" fn wrap_for_space(
    _module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: called by CPython (METH_FASTCALL) with the GIL held and `nargs`
    // arguments in `args`.
    unsafe {
        if nargs != 2 {
            type_error(c"wrap_for_space expected 2 arguments");
            return null_mut();
        }
        let (space, target) = (*args, *args.offset(1));
        finish(space_id(space).and_then(|space| {
            checked(
                Form::Space,
                space,
                target,
                c"wrap_for_space callable argument must be callable",
            )
        }))
    }
}
