//! The native `CoordinateSpace` type (SEMANTICS §1.2), published as
//! `_retrace._CoordinateSpace` and re-exported by `retrace`.
//!
//! It is native so that its methods are C methods: a query, `run` or a
//! wrapper made by `wrap` adds no Python frame, and results equal the
//! `_retrace` call made at the caller's instruction (§1.3). The id is stored
//! as given and converted (§2.3) each time it is used; `None` is the root
//! space, whose handle `retrace.root_space` reports `.id is None`.

use super::args::{callable, drop_count, match_parameters, space_id, thread_id};
use super::callbacks;
use super::errors::{finish, type_error, Raised};
use super::hooks;
use super::queries::{coordinates_in, hash_in, thread_delta_in};
use super::release::{self, OneReference};
use super::results::{none, word};
use super::run::run_rest;
use super::wrapper::{self, Form};
use crate::api;
use pyo3_ffi::*;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::mem::offset_of;
use std::ptr::{addr_of_mut, null, null_mut};
use std::sync::atomic::{AtomicPtr, Ordering};

/// The instance layout.
#[repr(C)]
struct Space {
    ob_base: PyObject,
    /// The id object as given (strong reference; `NULL` only after `tp_clear`).
    id: *mut PyObject,
}

/// The type object, created by [`add_to`] and kept for the life of the process.
static TYPE: AtomicPtr<PyObject> = AtomicPtr::new(null_mut());

const DOC: &CStr = c"CoordinateSpace(space_id=<allocate>)

A handle on a Retrace coordinate space.

Without an argument a fresh space id is allocated; otherwise the id is
stored as given and checked when the space is used (None is the root space).";

/// The space id the methods act on.
///
/// # Safety
/// GIL held; `slf` an instance of the type.
unsafe fn target(slf: *mut PyObject) -> Result<u32, Raised> {
    // SAFETY: `slf` has the `Space` layout (caller's contract); a NULL id
    // (cleared) reads as the root space like `None`.
    unsafe { space_id((*slf.cast::<Space>()).id) }
}

/// The space id of `object` if it is a `CoordinateSpace` (converted per
/// §2.3), else `None`: the `target_space` check of §17.
///
/// # Safety
/// GIL held; `object` valid.
pub(super) unsafe fn handle_id(object: *mut PyObject) -> Option<Result<u32, Raised>> {
    let ty = TYPE.load(Ordering::Acquire);
    // SAFETY: GIL held; `ty` is the live type object when non-null, and an
    // instance of it has the `Space` layout.
    unsafe {
        if ty.is_null() || PyObject_TypeCheck(object, ty.cast()) == 0 {
            return None;
        }
        Some(target(object))
    }
}

/// `space.coordinates(thread_id=None, drop=0)`.
unsafe extern "C" fn coordinates(
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held, `slf` an instance of the
    // type and vectorcall arguments.
    finish(unsafe { coordinates_call(slf, args, nargs, kwnames) })
}

/// The body of [`coordinates`].
///
/// # Safety
/// As [`coordinates`].
unsafe fn coordinates_call(
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> Result<*mut PyObject, Raised> {
    // SAFETY: the caller's contract.
    unsafe {
        let [thread, drop] = match_parameters(
            c"coordinates",
            [c"thread_id", c"drop"],
            args,
            nargs,
            kwnames,
        )?;
        let thread = thread_id(thread)?;
        let drop = drop_count(drop)?;
        coordinates_in(target(slf)?, thread, drop)
    }
}

/// `space.thread_delta()`.
unsafe extern "C" fn thread_delta(slf: *mut PyObject, _args: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython (METH_NOARGS) with the GIL held.
    finish(unsafe { target(slf).and_then(|space| thread_delta_in(space)) })
}

/// `space.hash()`.
unsafe extern "C" fn hash(slf: *mut PyObject, _args: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython (METH_NOARGS) with the GIL held.
    finish(unsafe { target(slf).and_then(|space| hash_in(space)) })
}

/// `space.run(callable, /, *args, **kwargs)`.
unsafe extern "C" fn run(
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held, `slf` an instance of the
    // type and vectorcall arguments.
    unsafe {
        if nargs < 1 {
            type_error(c"space.run expected at least 1 argument");
            return null_mut();
        }
        let checked =
            callable(*args, c"space.run argument must be callable").and_then(|()| target(slf));
        match checked {
            Ok(space) => run_rest(space, args, 0, nargs, kwnames),
            Err(Raised) => null_mut(),
        }
    }
}

/// `space.wrap(callable, /)`.
unsafe extern "C" fn wrap(slf: *mut PyObject, callable_object: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython (METH_O) with the GIL held.
    finish(unsafe {
        callable(callable_object, c"space wrapper argument must be callable")
            .and_then(|()| target(slf))
            .and_then(|space| wrapper::new(Form::Space, space, callable_object))
    })
}

static mut METHODS: [PyMethodDef; 9] = [
    super::method_fast(
        c"coordinates",
        coordinates,
        c"coordinates($self, /, thread_id=None, drop=0)
--

The (instruction, ordinal) words of a thread in this space from word `drop`
on, or None if the thread has not run in it.",
    ),
    super::method(
        c"thread_delta",
        thread_delta,
        c"thread_delta($self, /)
--

(common, *suffix) against this thread's previous delta in this space, or None.",
    ),
    super::method(
        c"hash",
        hash,
        c"hash($self, /)
--

The location hash of the current thread in this space, or None.",
    ),
    super::method_fast(
        c"run",
        run,
        c"run($self, callable, /, *args, **kwargs)
--

Call callable(*args, **kwargs) inside this space and return its result.",
    ),
    super::method_o(
        c"wrap",
        wrap,
        c"wrap($self, callable, /)
--

A wrapper that calls `callable` inside this space.",
    ),
    super::method_fast(
        c"call_at",
        call_at,
        c"call_at($self, /, coordinates, callback=None, overshoot_callback=None)
--

Arm a coordinate target of the current thread in this space (callback at the
exact coordinates, overshoot_callback at the first boundary past them);
call_at(None, callback) runs callback when the thread completes naturally;
call_at(None) clears this space's target.",
    ),
    super::method_fast(
        c"settrace",
        hooks::settrace,
        c"settrace($self, /, callback, target_space=root_space)
--

Trace the current thread's calls made in this space with callback (run in
target_space; local trace functions run there too); None removes it.",
    ),
    super::method_fast(
        c"setprofile",
        hooks::setprofile,
        c"setprofile($self, /, callback, target_space=root_space)
--

Profile the current thread's events in this space with callback (run in
target_space); None removes it.",
    ),
    PyMethodDef::zeroed(),
];

/// `space.call_at(coordinates, callback=None, overshoot_callback=None)`.
unsafe extern "C" fn call_at(
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held, `slf` an instance of the
    // type and vectorcall arguments.
    finish(unsafe { callbacks::space_call_at(target(slf), args, nargs, kwnames) })
}

/// `.thread_switch`: the stored callback (an `exclude` wrapper) or `None`.
unsafe extern "C" fn get_thread_switch(slf: *mut PyObject, _closure: *mut c_void) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and `slf` an instance of the type.
    finish(unsafe { target(slf).and_then(|space| callbacks::space_thread_switch(space)) })
}

/// `.thread_switch = cb`: registers `exclude(cb)` (`None` clears).
unsafe extern "C" fn set_thread_switch(
    slf: *mut PyObject,
    value: *mut PyObject,
    _closure: *mut c_void,
) -> c_int {
    // SAFETY: called by CPython with the GIL held and `slf` an instance of the type.
    let set =
        unsafe { target(slf).and_then(|space| callbacks::set_space_thread_switch(space, value)) };
    match set {
        Ok(()) => 0,
        Err(Raised) => -1,
    }
}

/// `.monitoring`: a `sys.monitoring` proxy bound to this space (§17.2).
unsafe extern "C" fn get_monitoring(slf: *mut PyObject, _closure: *mut c_void) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and `slf` an instance of the type.
    finish(unsafe { hooks::proxy(slf) })
}

/// `.id`: the stored id object.
unsafe extern "C" fn get_id(slf: *mut PyObject, _closure: *mut c_void) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and `slf` an instance of the type.
    unsafe {
        let id = (*slf.cast::<Space>()).id;
        if id.is_null() {
            return none();
        }
        Py_INCREF(id);
        id
    }
}

static mut GETSET: [PyGetSetDef; 4] = [
    PyGetSetDef {
        name: c"id".as_ptr(),
        get: Some(get_id),
        set: None,
        doc: c"The space id (None for the root space); read-only.".as_ptr(),
        closure: null_mut(),
    },
    PyGetSetDef {
        name: c"thread_switch".as_ptr(),
        get: Some(get_thread_switch),
        set: Some(set_thread_switch),
        doc: c"The thread-switch callback of this space (None when unset); assign a callable or None.".as_ptr(),
        closure: null_mut(),
    },
    PyGetSetDef {
        name: c"monitoring".as_ptr(),
        get: Some(get_monitoring),
        set: None,
        doc: c"sys.monitoring filtered to this space (register_callback delivers only its events).".as_ptr(),
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

/// `tp_new`: `CoordinateSpace()` allocates an id, `CoordinateSpace(x)` stores `x`.
unsafe extern "C" fn new(
    ty: *mut PyTypeObject,
    args: *mut PyObject,
    kwargs: *mut PyObject,
) -> *mut PyObject {
    let mut given: *mut PyObject = null_mut();
    let mut keywords: [*mut c_char; 2] = [c"space_id".as_ptr().cast_mut(), null_mut()];
    // SAFETY: called by CPython with the GIL held; the format takes one
    // optional object, written to `given` as a borrowed reference; the
    // keyword list is NULL-terminated and not modified by CPython.
    unsafe {
        if PyArg_ParseTupleAndKeywords(
            args,
            kwargs,
            c"|O:CoordinateSpace".as_ptr(),
            keywords.as_mut_ptr(),
            &mut given as *mut *mut PyObject,
        ) == 0
        {
            return null_mut();
        }
        let id = if given.is_null() {
            match word(u64::from(api::allocate_space_id())) {
                Ok(id) => id,
                Err(Raised) => return null_mut(),
            }
        } else {
            Py_INCREF(given);
            given
        };
        let object = PyType_GenericAlloc(ty, 0);
        if object.is_null() {
            Py_DECREF(id);
            return null_mut();
        }
        (*object.cast::<Space>()).id = id;
        object
    }
}

/// `tp_repr`: `<retrace.CoordinateSpace id=R>`.
unsafe extern "C" fn repr(slf: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held; the format matches (%R: object).
    unsafe {
        let id = get_id(slf, null_mut());
        if id.is_null() {
            return null_mut();
        }
        let text = PyUnicode_FromFormat(c"<retrace.CoordinateSpace id=%R>".as_ptr(), id);
        Py_DECREF(id);
        text
    }
}

impl OneReference for Space {
    const OFFSET: usize = offset_of!(Space, id);
}

/// Creates the type (once) and adds it to `module` as `_CoordinateSpace`.
///
/// # Safety
/// GIL held; `module` a module object.
pub(super) unsafe fn add_to(module: *mut PyObject) -> Result<(), Raised> {
    let mut ty = TYPE.load(Ordering::Acquire);
    if ty.is_null() {
        let slot = |slot: c_int, pfunc: *mut c_void| PyType_Slot { slot, pfunc };
        let mut slots = [
            slot(Py_tp_doc, DOC.as_ptr() as *mut c_void),
            slot(Py_tp_new, new as *mut c_void),
            slot(Py_tp_dealloc, release::dealloc::<Space> as *mut c_void),
            slot(Py_tp_traverse, release::traverse::<Space> as *mut c_void),
            slot(Py_tp_clear, release::clear::<Space> as *mut c_void),
            slot(Py_tp_repr, repr as *mut c_void),
            slot(Py_tp_methods, addr_of_mut!(METHODS).cast()),
            slot(Py_tp_getset, addr_of_mut!(GETSET).cast()),
            slot(0, null_mut()),
        ];
        let mut spec = PyType_Spec {
            name: c"retrace.CoordinateSpace".as_ptr(),
            basicsize: std::mem::size_of::<Space>() as c_int,
            itemsize: 0,
            flags: (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE) as c_uint,
            slots: slots.as_mut_ptr(),
        };
        // SAFETY: GIL held; spec and slots are read during the call; the
        // method and getset tables are static and outlive the type.
        ty = unsafe { PyType_FromSpec(&mut spec) };
        if ty.is_null() {
            return Err(Raised);
        }
        TYPE.store(ty, Ordering::Release);
    }
    // SAFETY: GIL held; `module` is a module, `ty` a live type object;
    // PyModule_AddObjectRef takes its own reference.
    if unsafe { PyModule_AddObjectRef(module, c"_CoordinateSpace".as_ptr(), ty) } != 0 {
        return Err(Raised);
    }
    Ok(())
}
