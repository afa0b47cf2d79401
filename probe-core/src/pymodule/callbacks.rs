//! Retrace callbacks (SEMANTICS §12–§15): the Python half of the scheduling
//! probes.
//!
//! * The boundary driver [`run_boundary`], installed as the runtime's
//!   boundary handler: a dispatch that left call_at or thread-switch work
//!   (`coords::PendingBoundary`) runs it here, without the runtime lock,
//!   after writing the frame's `prev_instr` and `stacktop` so that Python code
//!   sees a consistent frame (DESIGN-NOTES risk 3). A call_at callback that
//!   raised makes the stub enter the error path (`raise_pending`).
//! * [`on_thread_clear`], installed as the `PyThreadState_Clear` observer:
//!   natural completion (§15) and the §11.5 clear.
//! * The `_retrace` entry points `set_thread_switch_callback`,
//!   `get_thread_switch_callback`, `call_at`, `call_at_current`,
//!   `completion_at`, and the `CoordinateSpace` members `thread_switch` and
//!   `call_at`.
//!
//! Callback objects live in the runtime's registry as raw pointers with a
//! strong reference each; every registry operation returns the references it
//! dropped, released here once the lock is gone.

use super::args::{callable, match_parameters, space_id, thread_id};
use super::errors::{raise, raise_api, type_error, Raised};
use super::results::none;
use super::wrapper::{self, Form};
use crate::api;
use crate::coords::{ArmError, Coords, PendingBoundary};
use crate::runtime::{self, Runtime};
use crate::sched::{Callback, SwitchDecision};
use pyo3_ffi::*;
use std::ffi::CStr;
use std::ptr::null_mut;
use std::sync::OnceLock;

/// The disabled space (§11.1): public callbacks are stored as `exclude` wrappers.
const DISABLED_SPACE: u32 = 1;

fn object(handle: Callback) -> *mut PyObject {
    handle as usize as *mut PyObject
}

fn handle(object: *mut PyObject) -> Callback {
    object as usize as Callback
}

/// Releases references the registry dropped.
///
/// # Safety
/// GIL held; each handle owns one reference.
unsafe fn release_all(handles: Vec<Callback>) {
    for h in handles {
        // SAFETY: the registry owned this reference (caller's contract).
        unsafe { Py_DECREF(object(h)) };
    }
}

/// Where the eval loop's state is written before Python runs at a boundary.
#[derive(Clone, Copy)]
struct FrameFields {
    prev_instr: u64,
    stacktop: u64,
    localsplus: u64,
}

fn frame_fields(rt: &Runtime) -> Option<FrameFields> {
    let o = rt.descriptor().info().offsets;
    let get = |v: u32| (v != retrace_abi::ABSENT).then_some(u64::from(v));
    Some(FrameFields {
        prev_instr: get(o.frame_prev_instr)?,
        stacktop: get(o.frame_stacktop)?,
        localsplus: get(o.frame_localsplus)?,
    })
}

/// Makes the dispatching frame look as it would inside the instruction's
/// handler (`prev_instr` = the instruction) with its value stack saved
/// (`stacktop`), so that frame walks, tracebacks and the error path see it.
///
/// # Safety
/// `p` is the boundary being processed: its frame is live and executing.
unsafe fn save_frame(fields: FrameFields, p: &PendingBoundary) {
    let frame = p.frame.0;
    let base = frame.wrapping_add(fields.localsplus);
    // SAFETY: the frame is the live executing frame of this thread (the
    // dispatch being processed), and these are its fields at the offsets the
    // rewriter derived from this library's DWARF.
    unsafe {
        *((frame + fields.prev_instr) as usize as *mut u64) = p.n_ptr;
        if p.stack_pointer >= base {
            let depth = ((p.stack_pointer - base) / 8) as i32;
            *((frame + fields.stacktop) as usize as *mut i32) = depth;
        }
    }
}

/// The running frame's `stacktop` again (−1).
///
/// # Safety
/// As [`save_frame`].
unsafe fn unsave_frame(fields: FrameFields, p: &PendingBoundary) {
    // SAFETY: as in `save_frame`.
    unsafe { *((p.frame.0 + fields.stacktop) as usize as *mut i32) = -1 };
}

/// §12 `invoke` on the calling thread: transparent mode, the disabled space,
/// the call, and back. Returns the call's result (NULL with an exception).
///
/// # Safety
/// GIL held; `callback` valid; `args` a tuple.
unsafe fn invoke(rt: &Runtime, callback: *mut PyObject, args: *mut PyObject) -> *mut PyObject {
    let tstate = api::current_tstate();
    if rt
        .with_coords(|c| c.callback_enter(tstate))
        .is_none_or(|r| r.is_err())
    {
        // SAFETY: GIL held.
        unsafe {
            PyErr_SetString(
                PyExc_RuntimeError,
                c"cannot enter a Retrace callback".as_ptr(),
            )
        };
        return null_mut();
    }
    // SAFETY: GIL held; callback valid, args a tuple (caller's contract).
    let result = unsafe { PyObject_Call(callback, args, null_mut()) };
    let _ = rt.with_coords(|c| c.callback_exit(tstate));
    result
}

/// A switch or completion callback: the pending exception is saved around
/// it, its result ignored, its exception reported as unraisable with the
/// stored callback object.
///
/// # Safety
/// GIL held; `callback` valid; `args` a tuple.
unsafe fn invoke_unraisable(rt: &Runtime, callback: *mut PyObject, args: *mut PyObject) {
    // SAFETY: GIL held (caller's contract); the fetched triple is restored below.
    unsafe {
        let (mut t, mut v, mut tb) = (null_mut(), null_mut(), null_mut());
        PyErr_Fetch(&mut t, &mut v, &mut tb);
        let result = invoke(rt, callback, args);
        if result.is_null() {
            PyErr_WriteUnraisable(callback);
        } else {
            Py_DECREF(result);
        }
        PyErr_Restore(t, v, tb);
    }
}

/// A call_at callback: its exception (or a non-`None` result) propagates.
/// Returns false with the exception set.
///
/// # Safety
/// GIL held; `callback` valid.
unsafe fn invoke_call_at(rt: &Runtime, callback: *mut PyObject) -> bool {
    // SAFETY: GIL held (caller's contract).
    unsafe {
        let args = PyTuple_New(0);
        if args.is_null() {
            return false;
        }
        let result = invoke(rt, callback, args);
        Py_DECREF(args);
        if result.is_null() {
            return false;
        }
        let is_none = result == Py_None();
        Py_DECREF(result);
        if !is_none {
            type_error(c"call_at callback must return None");
        }
        is_none
    }
}

/// The thread-id object passed to switch callbacks (`next_thread_id`): the
/// thread's cached id object (§3 `tid_obj`), or an equal `int`.
///
/// # Safety
/// GIL held; `tstate` the calling thread's state.
unsafe fn thread_id_object(tstate: u64, tid: u64) -> *mut PyObject {
    // SAFETY: GIL held.
    unsafe {
        let cached = super::ident::cached_id_object(tstate);
        if !cached.is_null() {
            return cached;
        }
        PyErr_Clear();
        PyLong_FromUnsignedLongLong(tid)
    }
}

/// `(previous_delta, next_thread_id)`.
///
/// # Safety
/// GIL held.
unsafe fn switch_args(previous: Option<&[u64]>, tstate: u64, tid: u64) -> *mut PyObject {
    // SAFETY: GIL held; every reference created here is consumed by the tuple.
    unsafe {
        let delta = match previous {
            None => {
                Py_INCREF(Py_None());
                Py_None()
            }
            Some(words) => match super::results::words(words) {
                Ok(t) => t,
                Err(Raised) => return null_mut(),
            },
        };
        let id = thread_id_object(tstate, tid);
        if id.is_null() {
            Py_DECREF(delta);
            return null_mut();
        }
        let args = PyTuple_New(2);
        if args.is_null() {
            Py_DECREF(delta);
            Py_DECREF(id);
            return null_mut();
        }
        PyTuple_SetItem(args, 0, delta);
        PyTuple_SetItem(args, 1, id);
        args
    }
}

/// The runtime's boundary handler: call_at, then the switch check, at a
/// boundary that reached the runtime with work left (§7). Returns true when
/// a call_at callback raised and the stub must enter the error path (the
/// exception is set, the frame saved).
pub(crate) fn run_boundary(rt: &Runtime, p: PendingBoundary) -> bool {
    let Some(fields) = frame_fields(rt) else {
        let _ = rt.with_coords(|c| c.finish_switch(p.tstate));
        return false;
    };
    // The error path restores the value stack from `stacktop`: only with a
    // known stack pointer may an exception be raised into the frame.
    let raise_supported = rt.descriptor().info().raise_entry != 0 && p.stack_pointer != 0;
    let mut saved = false;
    let mut raised = false;
    // SAFETY: called from `rt_dispatch` with the GIL held, on the thread of
    // the boundary `p`, without the runtime lock.
    unsafe {
        let (fire, released) = rt.with_coords(|c| c.call_at_phase(&p)).unwrap_or_default();
        if fire.is_some() || !released.is_empty() {
            // Releasing a callback or running one may run Python code.
            save_frame(fields, &p);
            saved = true;
        }
        release_all(released);
        if let Some(fire) = fire {
            let callback = object(fire.callback);
            let ok = invoke_call_at(rt, callback);
            let _ = rt.with_coords(|c| c.resume_boundary(&p));
            if !ok {
                if raise_supported {
                    // Raised into the frame once the switch check of this
                    // boundary has run (§7, §14.6): the exception stays set
                    // (switch callbacks save and restore it).
                    raised = true;
                } else {
                    // No raise entry in this library: the exception cannot
                    // reach the frame, so it is reported instead of lost.
                    PyErr_WriteUnraisable(callback);
                }
            }
            Py_DECREF(callback);
        }
        match rt
            .with_coords(|c| c.switch_phase(&p))
            .unwrap_or(SwitchDecision::Nothing)
        {
            SwitchDecision::Nothing => {}
            SwitchDecision::Invoke {
                callback,
                previous_delta,
            } => {
                if !saved {
                    save_frame(fields, &p);
                    saved = true;
                }
                let callback = object(callback);
                // Our own reference: the callback may unregister itself.
                Py_INCREF(callback);
                let tid = rt
                    .with_coords(|c| c.current_thread_id(p.tstate))
                    .flatten()
                    .unwrap_or(0);
                let args = switch_args(previous_delta.as_deref(), p.tstate, tid);
                if args.is_null() {
                    PyErr_WriteUnraisable(callback);
                } else {
                    invoke_unraisable(rt, callback, args);
                    Py_DECREF(args);
                }
                let _ = rt.with_coords(|c| {
                    c.finish_switch(p.tstate);
                    c.resume_boundary(&p);
                });
                Py_DECREF(callback);
            }
            SwitchDecision::Unraisable { callback } => {
                let callback = object(callback);
                Py_INCREF(callback);
                let (mut t, mut v, mut tb) = (null_mut(), null_mut(), null_mut());
                PyErr_Fetch(&mut t, &mut v, &mut tb);
                PyErr_SetString(
                    PyExc_RuntimeError,
                    c"cannot compute the previous thread's delta".as_ptr(),
                );
                PyErr_WriteUnraisable(callback);
                PyErr_Restore(t, v, tb);
                let _ = rt.with_coords(|c| c.finish_switch(p.tstate));
                Py_DECREF(callback);
            }
        }
        if saved && !raised {
            unsave_frame(fields, &p);
        }
    }
    raised
}

/// Whether the runtime is finalizing (3.12 `_Py_IsFinalizing`, 3.13+
/// `Py_IsFinalizing`).
fn finalizing() -> bool {
    type Query = unsafe extern "C" fn() -> std::ffi::c_int;
    static QUERY: OnceLock<Option<Query>> = OnceLock::new();
    let query = QUERY.get_or_init(|| {
        api::first_exported(&[c"Py_IsFinalizing", c"_Py_IsFinalizing"])
            // SAFETY: both are `int (void)` functions.
            .map(|p| unsafe { std::mem::transmute::<*mut libc::c_void, Query>(p) })
    });
    // SAFETY: reads the runtime's finalizing flag.
    query.is_some_and(|q| unsafe { q() } != 0)
}

/// The `PyThreadState_Clear` observer: §15 natural completion (the thread's
/// own state, cleared by its own OS thread, outside finalization), then the
/// §11.5 clear of its scheduling state.
pub(crate) fn on_thread_clear(tstate: u64) {
    let Some(rt) = runtime::get() else { return };
    let natural = tstate != 0 && tstate == api::current_tstate() && !finalizing();
    let callbacks = rt
        .with_coords(|c| c.thread_completing(tstate, natural))
        .unwrap_or_default();
    if !callbacks.is_empty() {
        // SAFETY: a natural completion runs on the thread's own OS thread
        // with its state current and the GIL held (CPython clears a thread
        // state only while holding the GIL); each handle owns a reference.
        unsafe {
            let args = PyTuple_New(0);
            for h in callbacks {
                let cb = object(h);
                if args.is_null() {
                    PyErr_WriteUnraisable(cb);
                } else {
                    invoke_unraisable(rt, cb, args);
                }
                Py_DECREF(cb);
            }
            Py_XDECREF(args);
        }
    }
    let _ = rt.with_coords(|c| {
        c.thread_cleared(tstate);
        c.forget_started(tstate);
    });
    // §11.5: the cached id object is released.
    super::ident::forget_thread(tstate);
}

/// The `PyThreadState_New` observer: a thread state created by C code on a
/// thread that runs Python (its state is current, so it holds the GIL) gets
/// an id derived from that thread's coordinates (§9.4); one created without
/// a current thread state is announced parentless at its first event.
pub(crate) fn on_thread_new(created: u64) {
    let creator = api::current_tstate();
    if creator == 0 {
        return;
    }
    if let Some(rt) = runtime::get() {
        let _ = rt.with_coords(|c| c.register_created_thread(creator, created));
    }
}

/// Installs the handlers above into the runtime (at start-up).
pub(crate) fn install() {
    runtime::set_boundary_handler(run_boundary);
    crate::detours::set_thread_clear_observer(on_thread_clear);
    crate::detours::set_thread_new_observer(on_thread_new);
}

// ---------------------------------------------------------------------------
// Argument conversion.

/// `None` or callable, else `TypeError(message)`; `NULL` (not given) is `None`.
///
/// # Safety
/// GIL held; `object` NULL or valid.
unsafe fn optional_callable(
    object: *mut PyObject,
    message: &CStr,
) -> Result<Option<*mut PyObject>, Raised> {
    // SAFETY: GIL held by the caller.
    unsafe {
        if object.is_null() || object == Py_None() {
            return Ok(None);
        }
        callable(object, message)?;
        Ok(Some(object))
    }
}

/// §2.3 call_at coordinates: a sequence of words with whole frame pairs.
///
/// # Safety
/// GIL held; `object` valid.
unsafe fn target_words(object: *mut PyObject) -> Result<Vec<u64>, Raised> {
    // SAFETY: GIL held by the caller.
    unsafe {
        if PySequence_Check(object) == 0 {
            return Err(type_error(c"call_at coordinates must be a sequence"));
        }
        let tuple = PySequence_Tuple(object);
        if tuple.is_null() {
            return Err(Raised);
        }
        let n = PyTuple_Size(tuple);
        let mut words = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        for i in 0..n {
            match thread_id(PyTuple_GetItem(tuple, i)) {
                Ok(Some(w)) => words.push(w),
                Ok(None) => {
                    Py_DECREF(tuple);
                    return Err(type_error(c"call_at coordinates must be ints"));
                }
                Err(Raised) => {
                    Py_DECREF(tuple);
                    return Err(Raised);
                }
            }
        }
        Py_DECREF(tuple);
        if words.is_empty() || words.len() % 2 != 0 {
            return Err(raise(
                PyExc_ValueError,
                c"call_at coordinates must include frame pairs",
            ));
        }
        Ok(words)
    }
}

fn runtime_or_raise() -> Result<&'static Runtime, Raised> {
    runtime::get().ok_or_else(|| {
        // SAFETY: called from module functions with the GIL held.
        unsafe { raise(PyExc_RuntimeError, c"retrace runtime is not active") }
    })
}

/// Raises the Python error of an [`ArmError`].
///
/// # Safety
/// GIL held.
unsafe fn raise_arm(e: ArmError) -> Raised {
    // SAFETY: GIL held by the caller.
    unsafe {
        match e {
            ArmError::UnknownThread => raise(PyExc_LookupError, c"unknown thread id"),
            ArmError::UnknownSpace => raise(PyExc_LookupError, c"unknown coordinate space"),
            ArmError::Past => raise(PyExc_ValueError, c"call_at coordinates are in the past"),
            ArmError::Inactive => raise(
                PyExc_RuntimeError,
                c"retrace coordinate engine is not active",
            ),
        }
    }
}

/// New strong references for storing (`store` wraps in `exclude`).
///
/// # Safety
/// GIL held; `object` valid.
unsafe fn stored(object: *mut PyObject, wrap: bool) -> Result<Callback, Raised> {
    // SAFETY: GIL held by the caller.
    unsafe {
        if wrap {
            wrapper::new(Form::Space, DISABLED_SPACE, object).map(handle)
        } else {
            Py_INCREF(object);
            Ok(handle(object))
        }
    }
}

/// Arms a coordinate target of the current thread (§14.3) or of thread `tid`
/// (§14.5).
///
/// # Safety
/// GIL held; objects valid.
#[allow(clippy::too_many_arguments)]
unsafe fn arm_coordinates(
    space: u32,
    tid: Option<u64>,
    target: Vec<u64>,
    hit: *mut PyObject,
    miss: Option<*mut PyObject>,
    wrap: bool,
) -> Result<*mut PyObject, Raised> {
    let rt = runtime_or_raise()?;
    // SAFETY: GIL held by the caller.
    unsafe {
        let hit = stored(hit, wrap)?;
        let miss = match miss.map(|m| stored(m, wrap)).transpose() {
            Ok(m) => m,
            Err(Raised) => {
                release_all(vec![hit]);
                return Err(Raised);
            }
        };
        let new = std::iter::once(hit).chain(miss).collect();
        update_registry(
            rt,
            new,
            |c, caller| match tid {
                None => c.arm_call_at_current(caller, space, target, hit, miss),
                Some(tid) => c.arm_call_at_thread(caller, tid, space, target, hit, miss),
            },
            raise_arm,
        )?;
        Ok(none())
    }
}

/// Hands the new references `new` to the registry through `update` (run on
/// the coordinate state with the calling thread's state), then releases
/// what the registry dropped, or `new` itself when the update failed.
///
/// # Safety
/// GIL held; each handle of `new` owns one reference.
unsafe fn update_registry<E>(
    rt: &Runtime,
    new: Vec<Callback>,
    update: impl FnOnce(&mut Coords, u64) -> Result<Vec<Callback>, E>,
    raise_error: unsafe fn(E) -> Raised,
) -> Result<(), Raised> {
    let caller = api::current_tstate();
    let updated = rt.with_coords(|c| update(c, caller));
    // SAFETY: GIL held by the caller; the released handles are the
    // registry's references, `new` the caller's.
    unsafe {
        match updated {
            Some(Ok(released)) => {
                release_all(released);
                Ok(())
            }
            Some(Err(e)) => {
                release_all(new);
                Err(raise_error(e))
            }
            None => {
                release_all(new);
                Err(raise_arm(ArmError::Inactive))
            }
        }
    }
}

/// Arms a completion target of the current thread (§14.4).
///
/// # Safety
/// GIL held; `done` valid and callable.
unsafe fn arm_completion(
    space: u32,
    done: *mut PyObject,
    wrap: bool,
) -> Result<*mut PyObject, Raised> {
    let rt = runtime_or_raise()?;
    // SAFETY: GIL held by the caller.
    unsafe {
        let done = stored(done, wrap)?;
        update_registry(
            rt,
            vec![done],
            |c, caller| c.arm_completion(caller, space, done),
            raise_api,
        )?;
        Ok(none())
    }
}

/// Empties the slot of `space`.
///
/// # Safety
/// GIL held.
unsafe fn clear_slot(space: u32) -> Result<*mut PyObject, Raised> {
    let rt = runtime_or_raise()?;
    let released = rt
        .with_coords(|c| c.clear_call_at(space))
        .unwrap_or_default();
    // SAFETY: GIL held by the caller.
    unsafe {
        release_all(released);
        Ok(none())
    }
}

/// Registers (or clears, `None`) the switch callback of `space` (§13.1).
///
/// # Safety
/// GIL held; `callback` NULL/None or callable and valid.
unsafe fn set_switch(
    space: u32,
    callback: Option<*mut PyObject>,
    wrap: bool,
) -> Result<(), Raised> {
    let rt = runtime_or_raise()?;
    // SAFETY: GIL held by the caller.
    unsafe {
        let stored = callback.map(|cb| stored(cb, wrap)).transpose()?;
        update_registry(
            rt,
            stored.into_iter().collect(),
            |c, caller| c.set_thread_switch_callback(caller, space, stored),
            raise_api,
        )
    }
}

/// The stored switch callback of `space` (new reference) or `None`.
///
/// # Safety
/// GIL held.
unsafe fn get_switch(space: u32) -> Result<*mut PyObject, Raised> {
    let rt = runtime_or_raise()?;
    let stored = rt
        .with_coords(|c| c.thread_switch_callback(space))
        .flatten();
    // SAFETY: GIL held; the registry holds a reference to the stored object.
    unsafe {
        match stored {
            Some(h) => {
                Py_INCREF(object(h));
                Ok(object(h))
            }
            None => Ok(none()),
        }
    }
}

const SWITCH_NOT_CALLABLE: &CStr = c"thread switch callback must be callable or None";
const CALLBACK_NOT_CALLABLE: &CStr = c"call_at callback must be callable";
const OVERSHOOT_NOT_CALLABLE: &CStr = c"call_at overshoot callback must be callable or None";

// ---------------------------------------------------------------------------
// `_retrace` functions.

/// `_retrace.set_thread_switch_callback(callback, space_id=None)`.
pub(super) unsafe extern "C" fn set_thread_switch_callback(
    _module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: called by CPython (METH_FASTCALL) with the GIL held.
    super::errors::finish(unsafe {
        (|| {
            if !(1..=2).contains(&nargs) {
                return Err(type_error(
                    c"set_thread_switch_callback expects (callback[, space_id])",
                ));
            }
            let callback = optional_callable(*args, SWITCH_NOT_CALLABLE)?;
            let space = space_id(if nargs > 1 {
                *args.offset(1)
            } else {
                null_mut()
            })?;
            set_switch(space, callback, false)?;
            Ok(none())
        })()
    })
}

/// `_retrace.get_thread_switch_callback(space_id=None)`.
pub(super) unsafe extern "C" fn get_thread_switch_callback(
    _module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: called by CPython (METH_FASTCALL) with the GIL held.
    super::errors::finish(unsafe {
        (|| {
            super::args::at_most(c"get_thread_switch_callback", 1, nargs)?;
            let space = space_id(if nargs > 0 { *args } else { null_mut() })?;
            get_switch(space)
        })()
    })
}

/// `_retrace.call_at(thread_id, coordinates, callback[, overshoot[, space_id]])`
/// and `_retrace.call_at(None[, space_id])` (§14.5).
pub(super) unsafe extern "C" fn call_at(
    _module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: called by CPython (METH_FASTCALL) with the GIL held.
    super::errors::finish(unsafe {
        (|| {
            let arg = |i: Py_ssize_t| {
                if i < nargs {
                    *args.offset(i)
                } else {
                    null_mut()
                }
            };
            if (1..=2).contains(&nargs) && arg(0) == Py_None() {
                return clear_slot(space_id(arg(1))?);
            }
            if !(3..=5).contains(&nargs) {
                return Err(type_error(
                    c"call_at expects None or (thread_id, coordinates, callback[, overshoot_callback[, space_id]])",
                ));
            }
            let Some(tid) = thread_id(arg(0))? else {
                return Err(type_error(c"call_at thread id must be an int"));
            };
            if tid == 0 {
                return Err(raise(
                    PyExc_ValueError,
                    c"call_at thread id must be non-zero",
                ));
            }
            callable(arg(2), CALLBACK_NOT_CALLABLE)?;
            let miss = optional_callable(arg(3), OVERSHOOT_NOT_CALLABLE)?;
            let space = space_id(arg(4))?;
            let target = target_words(arg(1))?;
            arm_coordinates(space, Some(tid), target, arg(2), miss, false)
        })()
    })
}

/// `_retrace.call_at_current(coordinates, callback, overshoot_callback=None, space_id=None)` (§14.3).
pub(super) unsafe extern "C" fn call_at_current(
    _module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: called by CPython (METH_FASTCALL) with the GIL held.
    super::errors::finish(unsafe {
        (|| {
            if !(2..=4).contains(&nargs) {
                return Err(type_error(
                    c"call_at_current expects (coordinates, callback[, overshoot_callback[, space_id]])",
                ));
            }
            let arg = |i: Py_ssize_t| {
                if i < nargs {
                    *args.offset(i)
                } else {
                    null_mut()
                }
            };
            callable(arg(1), CALLBACK_NOT_CALLABLE)?;
            let miss = optional_callable(arg(2), OVERSHOOT_NOT_CALLABLE)?;
            let space = space_id(arg(3))?;
            let target = target_words(arg(0))?;
            arm_coordinates(space, None, target, arg(1), miss, false)
        })()
    })
}

/// `_retrace.completion_at(callback, space_id=None)` (§14.4).
pub(super) unsafe extern "C" fn completion_at(
    _module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: called by CPython (METH_FASTCALL) with the GIL held.
    super::errors::finish(unsafe {
        (|| {
            if !(1..=2).contains(&nargs) {
                return Err(type_error(c"completion_at expects (callback[, space_id])"));
            }
            callable(*args, c"completion callback must be callable")?;
            let space = space_id(if nargs > 1 {
                *args.offset(1)
            } else {
                null_mut()
            })?;
            arm_completion(space, *args, false)
        })()
    })
}

// ---------------------------------------------------------------------------
// `CoordinateSpace` members (the public forms, §13.1 and §14.2).

/// The `thread_switch` getter of the space `space`.
///
/// # Safety
/// GIL held.
pub(super) unsafe fn space_thread_switch(space: u32) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held by the caller.
    unsafe { get_switch(space) }
}

/// The `thread_switch` setter: `None` clears, a callable is stored as
/// `exclude(callable)`.
///
/// # Safety
/// GIL held; `value` NULL (delete) or valid.
pub(super) unsafe fn set_space_thread_switch(
    space: u32,
    value: *mut PyObject,
) -> Result<(), Raised> {
    // SAFETY: GIL held by the caller.
    unsafe {
        let callback = optional_callable(value, SWITCH_NOT_CALLABLE)?;
        set_switch(space, callback, true)
    }
}

/// `space.call_at(coordinates, callback=None, overshoot_callback=None)`.
///
/// # Safety
/// GIL held; vectorcall arguments.
pub(super) unsafe fn space_call_at(
    space: Result<u32, Raised>,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    kwnames: *mut PyObject,
) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held; arguments per the vectorcall protocol (caller's contract).
    unsafe {
        let [coordinates, callback, overshoot] = match_parameters(
            c"call_at",
            [c"coordinates", c"callback", c"overshoot_callback"],
            args,
            nargs,
            kwnames,
        )?;
        if coordinates.is_null() {
            return Err(type_error(
                c"call_at() missing required argument 'coordinates' (pos 1)",
            ));
        }
        let given = |o: *mut PyObject| !o.is_null() && o != Py_None();
        if coordinates == Py_None() {
            if given(overshoot) {
                return Err(type_error(
                    c"call_at(None) does not accept overshoot_callback",
                ));
            }
            let space = space?;
            if !given(callback) {
                return clear_slot(space);
            }
            callable(callback, CALLBACK_NOT_CALLABLE)?;
            return arm_completion(space, callback, true);
        }
        if callback.is_null() {
            return Err(type_error(CALLBACK_NOT_CALLABLE));
        }
        callable(callback, CALLBACK_NOT_CALLABLE)?;
        let miss = optional_callable(overshoot, OVERSHOOT_NOT_CALLABLE)?;
        let space = space?;
        let target = target_words(coordinates)?;
        arm_coordinates(space, None, target, callback, miss, true)
    }
}
