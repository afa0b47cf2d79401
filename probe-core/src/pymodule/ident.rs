//! Retrace thread ids on CPython's ident surfaces (SEMANTICS §9.4, §9.5).
//!
//! The constructor ([`install`]) wraps the `PyImport_Inittab` init functions
//! of `_thread` and `_signal` (before `Py_Initialize`). Each wrapper calls the
//! original and, on the returned module definition (multi-phase init) or
//! module (single-phase), swaps a few entries of the method table for the
//! functions below; the originals stay callable through their own
//! `PyMethodDef`s (libpython's static tables). The `_thread` wrapper also
//! replaces two functions of the interpreter's `sys`.
//!
//! | surface | replacement |
//! |---|---|
//! | `_thread.get_ident()` | the thread's cached id object ([`cached_id_object`]) |
//! | `_thread.start_new_thread()` / `start_new()` | the original, then the child's id is derived from the starter (§9.4) and its cached object returned (3.13+: an equal new `int`) |
//! | `_thread._excepthook` | the original; a thread without a name is reported by its Retrace id |
//! | `sys._current_frames()`, `sys._current_exceptions()` | the original dict re-keyed by Retrace id |
//! | `signal.pthread_kill(x, sig)` | `x` resolved (§9.5) to its native ident, else passed through |
//!
//! `threading` captures these at import (`get_ident`, `_start_new_thread`,
//! `excepthook`), so `Thread.ident`, `threading._active`, `main_thread()`
//! and logging's `%(thread)d` follow. The C function
//! `PyThreadState_SetAsyncExc` is a function detour
//! ([`crate::detours`]) resolving through [`resolve_for_c`].
//!
//! Every function here runs with the GIL held; the runtime's coordinate lock
//! is taken only around pure reads and never while Python code may run.

use super::ffi::PyObject_Vectorcall;
use crate::api::current_tstate;
use crate::coords::InterpreterMemory;
use crate::location::Memory;
use crate::runtime;
use pyo3_ffi::*;
use retrace_abi::ABSENT;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr};
use std::ptr::{addr_of_mut, null_mut};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// libpython's `struct _inittab`.
#[repr(C)]
struct Inittab {
    name: *const c_char,
    initfunc: Option<unsafe extern "C" fn() -> *mut PyObject>,
}

/// Offsets of `PyThreadState.id`, `.interp` and `.thread_id`.
#[derive(Clone, Copy, Debug)]
struct TstateOffsets {
    serial: u64,
    interp: u64,
    thread_id: u64,
}

static OFFSETS: OnceLock<TstateOffsets> = OnceLock::new();

/// Whether `start_new_thread` returns a new `int` (3.13+) rather than the
/// child's cached object (3.11/3.12), §20.
static NEW_INT_RESULT: OnceLock<bool> = OnceLock::new();

/// The original init functions of `_thread` and `_signal`.
static THREAD_INIT: AtomicUsize = AtomicUsize::new(0);
static SIGNAL_INIT: AtomicUsize = AtomicUsize::new(0);

/// The functions whose originals are kept (index into [`ORIGINALS`]).
#[derive(Clone, Copy)]
enum Orig {
    StartNewThread = 0,
    Excepthook = 1,
    PthreadKill = 2,
    CurrentFrames = 3,
    CurrentExceptions = 4,
}

/// The original `PyMethodDef` of each replaced function (libpython's static
/// method tables, alive for the whole process).
static ORIGINALS: [AtomicPtr<PyMethodDef>; 5] = [const { AtomicPtr::new(null_mut()) }; 5];

/// The patched method tables of `_thread` and `_signal` (leaked copies).
static THREAD_TABLE: AtomicPtr<PyMethodDef> = AtomicPtr::new(null_mut());
static SIGNAL_TABLE: AtomicPtr<PyMethodDef> = AtomicPtr::new(null_mut());

/// The replacement `PyMethodDef`s of the `sys` functions (leaked, made once).
static SYS_DEFS: [AtomicPtr<PyMethodDef>; 2] = [const { AtomicPtr::new(null_mut()) }; 2];

/// One replaced function: the name it has in its module's method table.
struct Patch {
    name: &'static CStr,
    /// Where the original is kept (`None`: never called).
    orig: Option<Orig>,
    meth: PyMethodDefPointer,
    flags: c_int,
}

fn thread_patches() -> [Patch; 4] {
    [
        Patch {
            name: c"get_ident",
            orig: None,
            meth: PyMethodDefPointer {
                PyCFunction: get_ident,
            },
            flags: METH_NOARGS,
        },
        Patch {
            name: c"start_new_thread",
            orig: Some(Orig::StartNewThread),
            meth: PyMethodDefPointer {
                PyCFunctionFast: start_new_thread,
            },
            flags: METH_FASTCALL,
        },
        Patch {
            name: c"start_new",
            orig: Some(Orig::StartNewThread),
            meth: PyMethodDefPointer {
                PyCFunctionFast: start_new_thread,
            },
            flags: METH_FASTCALL,
        },
        Patch {
            name: c"_excepthook",
            orig: Some(Orig::Excepthook),
            meth: PyMethodDefPointer {
                PyCFunction: excepthook,
            },
            flags: METH_O,
        },
    ]
}

fn signal_patches() -> [Patch; 1] {
    [Patch {
        name: c"pthread_kill",
        orig: Some(Orig::PthreadKill),
        meth: PyMethodDefPointer {
            PyCFunctionFast: pthread_kill,
        },
        flags: METH_FASTCALL,
    }]
}

fn sys_patches() -> [Patch; 2] {
    [
        Patch {
            name: c"_current_frames",
            orig: Some(Orig::CurrentFrames),
            meth: PyMethodDefPointer {
                PyCFunction: current_frames,
            },
            flags: METH_NOARGS,
        },
        Patch {
            name: c"_current_exceptions",
            orig: Some(Orig::CurrentExceptions),
            meth: PyMethodDefPointer {
                PyCFunction: current_exceptions,
            },
            flags: METH_NOARGS,
        },
    ]
}

/// Wraps the init functions of `_thread` and `_signal` in libpython's
/// `PyImport_Inittab`. Must run before `Py_Initialize` (the constructor);
/// does nothing without an active coordinate engine or the thread-state
/// offsets. Returns whether `_thread` was wrapped.
pub(crate) fn install() -> bool {
    let Some(rt) = runtime::get() else {
        return false;
    };
    let info = rt.descriptor().info();
    let o = info.offsets;
    if !rt.engine_active()
        || o.tstate_id == ABSENT
        || o.tstate_interp == ABSENT
        || o.tstate_thread_id == ABSENT
    {
        return false;
    }
    let _ = OFFSETS.set(TstateOffsets {
        serial: u64::from(o.tstate_id),
        interp: u64::from(o.tstate_interp),
        thread_id: u64::from(o.tstate_thread_id),
    });
    let _ = NEW_INT_RESULT.set(info.py_version_hex >= 0x030D_0000);
    let Some(table) = crate::api::first_exported(&[c"PyImport_Inittab"]) else {
        return false;
    };
    let mut wrapped = false;
    // SAFETY: `PyImport_Inittab` is libpython's `struct _inittab *`, pointing
    // at a writable table (the static one, or the heap copy
    // `PyImport_AppendInittab` made) ended by a NULL name. No other thread
    // runs Python yet (this is the constructor, before Py_Initialize).
    unsafe {
        let mut entry = *(table as *const *mut Inittab);
        let mut n = 0;
        while !entry.is_null() && !(*entry).name.is_null() && n < 4096 {
            let name = CStr::from_ptr((*entry).name);
            let target = match name.to_bytes() {
                b"_thread" => Some((&THREAD_INIT, init_thread as unsafe extern "C" fn() -> _)),
                b"_signal" => Some((&SIGNAL_INIT, init_signal as unsafe extern "C" fn() -> _)),
                _ => None,
            };
            if let (Some((saved, wrapper)), Some(original)) = (target, (*entry).initfunc) {
                if original as usize != wrapper as usize {
                    saved.store(original as usize, Ordering::Release);
                    (*entry).initfunc = Some(wrapper);
                    wrapped |= name.to_bytes() == b"_thread";
                }
            }
            entry = entry.add(1);
            n += 1;
        }
    }
    wrapped
}

/// Calls the original init function stored in `saved`.
///
/// # Safety
/// GIL held (called from the import system).
unsafe fn call_init(saved: &AtomicUsize) -> *mut PyObject {
    let f = saved.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: GIL held by the caller.
        unsafe {
            PyErr_SetString(
                PyExc_SystemError,
                c"retrace: missing original module init".as_ptr(),
            )
        };
        return null_mut();
    }
    // SAFETY: `f` is the init function libpython's inittab held, stored by
    // `install` (an `extern "C" fn() -> PyObject *`).
    unsafe {
        let f = std::mem::transmute::<usize, unsafe extern "C" fn() -> *mut PyObject>(f);
        f()
    }
}

unsafe extern "C" fn init_thread() -> *mut PyObject {
    // SAFETY: called by the import system with the GIL held.
    unsafe {
        let m = call_init(&THREAD_INIT);
        if !m.is_null() {
            patch_module(m, &THREAD_TABLE, &thread_patches());
            patch_sys();
        }
        m
    }
}

unsafe extern "C" fn init_signal() -> *mut PyObject {
    // SAFETY: called by the import system with the GIL held.
    unsafe {
        let m = call_init(&SIGNAL_INIT);
        if !m.is_null() {
            patch_module(m, &SIGNAL_TABLE, &signal_patches());
        }
        m
    }
}

/// A copy of the NULL-terminated method table `table` with the entries
/// named in `patches` replaced (the originals recorded in [`ORIGINALS`]);
/// NULL when no entry matched.
///
/// # Safety
/// `table` is a valid method table that lives for the whole process.
unsafe fn patched_table(table: *mut PyMethodDef, patches: &[Patch]) -> *mut PyMethodDef {
    let mut copy = Vec::new();
    let mut any = false;
    // SAFETY: guaranteed by the caller; the walk stops at the sentinel.
    unsafe {
        let mut i = 0;
        while !(*table.add(i)).ml_name.is_null() && i < 4096 {
            let original = table.add(i);
            let mut entry = std::ptr::read(original);
            let name = CStr::from_ptr(entry.ml_name);
            if let Some(p) = patches.iter().find(|p| p.name == name) {
                if let Some(slot) = p.orig {
                    let _ = ORIGINALS[slot as usize].compare_exchange(
                        null_mut(),
                        original,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                entry.ml_meth = p.meth;
                entry.ml_flags = p.flags;
                any = true;
            }
            copy.push(entry);
            i += 1;
        }
        copy.push(std::ptr::read(table.add(i)));
    }
    if !any {
        return null_mut();
    }
    Box::leak(copy.into_boxed_slice()).as_mut_ptr()
}

/// Patches the method table of `def` once (`done` remembers the copy).
///
/// # Safety
/// GIL held; `def` is a module definition of libpython (writable, static).
unsafe fn patch_def(def: *mut PyModuleDef, done: &AtomicPtr<PyMethodDef>, patches: &[Patch]) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let current = (*def).m_methods;
        if current.is_null() || current == done.load(Ordering::Acquire) {
            return;
        }
        let table = patched_table(current, patches);
        if !table.is_null() {
            (*def).m_methods = table;
            done.store(table, Ordering::Release);
        }
    }
}

/// Patches what a module init function returned: a module definition
/// (multi-phase: its functions are created from the patched table), or a
/// module (single-phase: its functions are replaced as attributes too).
///
/// # Safety
/// GIL held; `m` is what a libpython init function returned (non-NULL).
unsafe fn patch_module(m: *mut PyObject, done: &AtomicPtr<PyMethodDef>, patches: &[Patch]) {
    // SAFETY: guaranteed by the caller; the def type is libpython's.
    unsafe {
        if PyObject_TypeCheck(m, addr_of_mut!(PyModuleDef_Type)) != 0 {
            patch_def(m.cast::<PyModuleDef>(), done, patches);
            return;
        }
        if PyModule_Check(m) == 0 {
            return;
        }
        let def = PyModule_GetDef(m);
        if def.is_null() {
            return;
        }
        patch_def(def, done, patches);
        let table = done.load(Ordering::Acquire);
        if table.is_null() {
            return;
        }
        let module_name = PyModule_GetNameObject(m);
        let mut i = 0;
        while !(*table.add(i)).ml_name.is_null() {
            let entry = table.add(i);
            let name = CStr::from_ptr((*entry).ml_name);
            if patches.iter().any(|p| p.name == name) {
                let f = PyCFunction_NewEx(entry, m, module_name);
                if f.is_null() || PyObject_SetAttrString(m, (*entry).ml_name, f) != 0 {
                    PyErr_Clear();
                }
                Py_XDECREF(f);
            }
            i += 1;
        }
        Py_XDECREF(module_name);
        // A successful init must not return with an exception set.
        PyErr_Clear();
    }
}

/// Replaces `sys._current_frames` and `sys._current_exceptions` of the
/// current interpreter by functions of the same `sys` module.
///
/// # Safety
/// GIL held; no exception set.
unsafe fn patch_sys() {
    for (k, p) in sys_patches().iter().enumerate() {
        let Some(slot) = p.orig else { continue };
        // SAFETY: GIL held; borrowed references are used before any call
        // that could release them.
        unsafe {
            let f = PySys_GetObject(p.name.as_ptr());
            if f.is_null() {
                continue;
            }
            let sys = PyObject_GetAttrString(f, c"__self__".as_ptr());
            if sys.is_null() || PyModule_Check(sys) == 0 {
                Py_XDECREF(sys);
                PyErr_Clear();
                continue;
            }
            let def = PyModule_GetDef(sys);
            let original = if def.is_null() || (*def).m_methods.is_null() {
                null_mut()
            } else {
                find_entry((*def).m_methods, p.name)
            };
            if original.is_null() {
                Py_DECREF(sys);
                PyErr_Clear();
                continue;
            }
            let _ = ORIGINALS[slot as usize].compare_exchange(
                null_mut(),
                original,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            let mut ours = SYS_DEFS[k].load(Ordering::Acquire);
            if ours.is_null() {
                let mut entry = std::ptr::read(original);
                entry.ml_meth = p.meth;
                entry.ml_flags = p.flags;
                ours = Box::leak(Box::new(entry));
                SYS_DEFS[k].store(ours, Ordering::Release);
            }
            let module_name = PyModule_GetNameObject(sys);
            let g = PyCFunction_NewEx(ours, sys, module_name);
            if g.is_null() || PyObject_SetAttrString(sys, p.name.as_ptr(), g) != 0 {
                PyErr_Clear();
            }
            Py_XDECREF(g);
            Py_XDECREF(module_name);
            Py_DECREF(sys);
        }
    }
    // SAFETY: GIL held; no exception was set when this started.
    unsafe { PyErr_Clear() };
}

/// The entry named `name` of a NULL-terminated method table, or NULL.
///
/// # Safety
/// `table` is a valid method table.
unsafe fn find_entry(table: *mut PyMethodDef, name: &CStr) -> *mut PyMethodDef {
    // SAFETY: guaranteed by the caller; the walk stops at the sentinel.
    unsafe {
        let mut i = 0;
        while !(*table.add(i)).ml_name.is_null() && i < 4096 {
            if CStr::from_ptr((*table.add(i)).ml_name) == name {
                return table.add(i);
            }
            i += 1;
        }
    }
    null_mut()
}

/// Calls the original function `which` bound to `module` with the
/// positional arguments `args`.
///
/// # Safety
/// GIL held; `args` are valid objects.
unsafe fn call_original(
    which: Orig,
    module: *mut PyObject,
    args: &[*mut PyObject],
) -> *mut PyObject {
    let def = ORIGINALS[which as usize].load(Ordering::Acquire);
    // SAFETY: GIL held by the caller; `def` is a static libpython entry.
    unsafe {
        if def.is_null() {
            PyErr_SetString(
                PyExc_SystemError,
                c"retrace: original function missing".as_ptr(),
            );
            return null_mut();
        }
        let f = PyCFunction_NewEx(def, module, null_mut());
        if f.is_null() {
            return null_mut();
        }
        let r = PyObject_Vectorcall(f, args.as_ptr(), args.len(), null_mut());
        Py_DECREF(f);
        r
    }
}

/// The vectorcall arguments as a slice.
///
/// # Safety
/// `args` points at `nargs` valid objects (or `nargs` is 0).
unsafe fn positional<'a>(args: *mut *mut PyObject, nargs: Py_ssize_t) -> &'a [*mut PyObject] {
    match usize::try_from(nargs) {
        // SAFETY: guaranteed by the caller.
        Ok(n) if n > 0 && !args.is_null() => unsafe { std::slice::from_raw_parts(args, n) },
        _ => &[],
    }
}

// ---------------------------------------------------------------------------
// The per-thread id objects.

/// One thread state's cached id object.
struct Cached {
    /// `(PyThreadState.id, PyThreadState.interp)` when it was made: a new
    /// thread state at the same address gets a new object (`id` is unique
    /// only per interpreter).
    serial: (u64, u64),
    /// The `int`, whose one reference this map owns (as an address).
    object: usize,
}

static CACHE: Mutex<Option<HashMap<u64, Cached>>> = Mutex::new(None);

fn cache() -> MutexGuard<'static, Option<HashMap<u64, Cached>>> {
    // A poisoned lock only means a panic elsewhere; the map stays usable.
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// `(PyThreadState.id, PyThreadState.interp)` of `tstate` (zeros when
/// unknown).
fn serial_of(tstate: u64) -> (u64, u64) {
    match OFFSETS.get() {
        Some(o) if tstate != 0 => {
            let read = |off: u64| {
                InterpreterMemory
                    .read_u64(tstate.wrapping_add(off))
                    .unwrap_or(0)
            };
            (read(o.serial), read(o.interp))
        }
        _ => (0, 0),
    }
}

/// Sets `RuntimeError("no Retrace thread id")`.
///
/// # Safety
/// GIL held.
unsafe fn no_id() -> *mut PyObject {
    // SAFETY: GIL held by the caller.
    unsafe { PyErr_SetString(PyExc_RuntimeError, c"no Retrace thread id".as_ptr()) };
    null_mut()
}

/// Makes and caches the id object of `tstate` (serial `serial`, id `tid`);
/// a new reference, or NULL with an exception set.
///
/// # Safety
/// GIL held.
unsafe fn store_id_object(tstate: u64, serial: (u64, u64), tid: u64) -> *mut PyObject {
    // SAFETY: GIL held by the caller.
    let object = unsafe { PyLong_FromUnsignedLongLong(tid) };
    if object.is_null() {
        return null_mut();
    }
    // SAFETY: `object` is a new reference: one for the map, one returned.
    unsafe { Py_INCREF(object) };
    // A replaced entry (its thread state was never reported cleared) is left
    // alive: its interpreter may be gone, so releasing it is not safe.
    cache().get_or_insert_with(HashMap::new).insert(
        tstate,
        Cached {
            serial,
            object: object as usize,
        },
    );
    object
}

/// The cached Retrace id object of the thread state `tstate` (§3 `tid_obj`,
/// one `int` per thread state, made on first use): a new reference, or NULL
/// with `RuntimeError("no Retrace thread id")` set when it has none.
///
/// # Safety
/// GIL held; `tstate` is a live thread state of the current interpreter (or 0).
pub(crate) unsafe fn cached_id_object(tstate: u64) -> *mut PyObject {
    if tstate == 0 {
        // SAFETY: GIL held by the caller.
        return unsafe { no_id() };
    }
    let serial = serial_of(tstate);
    if let Some(c) = cache().as_ref().and_then(|m| m.get(&tstate)) {
        if c.serial == serial {
            let object = c.object as *mut PyObject;
            // SAFETY: the map owns a reference, so the object is alive.
            unsafe { Py_INCREF(object) };
            return object;
        }
    }
    let identity = runtime::get()
        .and_then(|rt| rt.with_coords(|c| c.thread_identity(tstate)))
        .flatten();
    match identity {
        // SAFETY: GIL held by the caller.
        Some((_, tid)) => unsafe { store_id_object(tstate, serial, tid) },
        // SAFETY: GIL held by the caller.
        None => unsafe { no_id() },
    }
}

/// Releases the cached id object of `tstate` (SEMANTICS §11.5: at thread-state
/// clear). Must be called with the GIL held and without the runtime's
/// coordinate lock; does nothing when there is none.
pub(crate) fn forget_thread(tstate: u64) {
    let removed = cache().as_mut().and_then(|m| m.remove(&tstate));
    if let Some(c) = removed {
        // SAFETY: the map owned this reference; the GIL is held (contract).
        unsafe { Py_DECREF(c.object as *mut PyObject) };
    }
}

/// The `PyThreadState.thread_id` offset (set by [`install`]).
fn thread_id_offset() -> Option<u64> {
    OFFSETS.get().map(|o| o.thread_id)
}

/// §9.5 for C callers (`PyThreadState_SetAsyncExc`): the native ident to
/// act on for `x`. `Some(x)` unchanged when nothing can be resolved here (no
/// engine, no current thread state); `None` when `x` names no thread.
pub(crate) fn resolve_for_c(x: u64) -> Option<u64> {
    let caller = current_tstate();
    let (Some(rt), Some(off)) = (runtime::get(), thread_id_offset()) else {
        return Some(x);
    };
    if caller == 0 {
        return Some(x);
    }
    match rt.with_coords(|c| c.resolve_ident(caller, x, off)) {
        None => Some(x),
        Some(None) => None,
        Some(Some(e)) => (e.native != 0).then_some(e.native),
    }
}

// ---------------------------------------------------------------------------
// The replacements.

/// `_thread.get_ident()`.
unsafe extern "C" fn get_ident(_module: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held.
    unsafe { cached_id_object(current_tstate()) }
}

/// `_thread.start_new_thread(function, args[, kwargs])`.
unsafe extern "C" fn start_new_thread(
    module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    let starter = current_tstate();
    let rt = runtime::get();
    let old_head = rt
        .and_then(|rt| rt.with_coords(|c| c.threads_head(starter)))
        .unwrap_or(0);
    // SAFETY: called by CPython with the GIL held and `nargs` arguments.
    let result = unsafe { call_original(Orig::StartNewThread, module, positional(args, nargs)) };
    let (Some(rt), Some(off)) = (rt, thread_id_offset()) else {
        return result;
    };
    if result.is_null() || starter == 0 || old_head == 0 {
        return result;
    }
    // SAFETY: GIL held; `result` is the `int` ident the original returned.
    let native = unsafe { PyLong_AsUnsignedLongLong(result) };
    // SAFETY: GIL held.
    if native == u64::MAX && unsafe { !PyErr_Occurred().is_null() } {
        // SAFETY: GIL held; the ident was not an int in range: keep it.
        unsafe { PyErr_Clear() };
        return result;
    }
    let registered = rt
        .with_coords(|c| c.register_started_thread(starter, old_head, native, off))
        .and_then(Result::ok);
    let Some((child, tid)) = registered else {
        // Not found: the child is announced (parentless) when first seen.
        return result;
    };
    // SAFETY: GIL held; we own `result`.
    unsafe {
        Py_DECREF(result);
        let object = store_id_object(child, serial_of(child), tid);
        if object.is_null() || !NEW_INT_RESULT.get().copied().unwrap_or(false) {
            return object;
        }
        Py_DECREF(object);
        PyLong_FromUnsignedLongLong(tid)
    }
}

/// `signal.pthread_kill(thread_id, signalnum)`.
unsafe extern "C" fn pthread_kill(
    module: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held and `nargs` arguments.
    unsafe {
        let args = positional(args, nargs);
        let resolved = match args.first() {
            Some(&x) if args.len() == 2 && PyLong_Check(x) != 0 => {
                let v = PyLong_AsUnsignedLongMask(x);
                if v == std::ffi::c_ulong::MAX && !PyErr_Occurred().is_null() {
                    PyErr_Clear();
                    None
                } else {
                    resolve_for_c(v).filter(|&n| n != v)
                }
            }
            _ => None,
        };
        let Some(native) = resolved else {
            return call_original(Orig::PthreadKill, module, args);
        };
        let ident = PyLong_FromUnsignedLongLong(native);
        if ident.is_null() {
            return null_mut();
        }
        let r = call_original(Orig::PthreadKill, module, &[ident, args[1]]);
        Py_DECREF(ident);
        r
    }
}

/// `_thread._excepthook(args)`: CPython's, except that a thread without a
/// `name` (e.g. `thread=None`) is reported by its Retrace id instead of its
/// native ident (§9.5 "`threading.excepthook` fallback text").
unsafe extern "C" fn excepthook(module: *mut PyObject, args: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held.
    unsafe {
        let renamed = with_named_thread(module, args);
        if renamed.is_null() {
            PyErr_Clear();
            return call_original(Orig::Excepthook, module, &[args]);
        }
        let r = call_original(Orig::Excepthook, module, &[renamed]);
        Py_DECREF(renamed);
        r
    }
}

/// A copy of the `_thread._ExceptHookArgs` `args` whose `thread` is a
/// namespace named after the current Retrace id, when CPython would fall
/// back to the native ident; NULL (maybe with an exception set) otherwise.
///
/// # Safety
/// GIL held.
unsafe fn with_named_thread(module: *mut PyObject, args: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held by the caller; every new reference is released.
    unsafe {
        let hook_type = PyObject_GetAttrString(module, c"_ExceptHookArgs".as_ptr());
        if hook_type.is_null() {
            return null_mut();
        }
        let same = Py_TYPE(args).cast::<PyObject>() == hook_type;
        if !same {
            Py_DECREF(hook_type);
            return null_mut();
        }
        let exc_type = PyStructSequence_GetItem(args, 0);
        let thread = PyStructSequence_GetItem(args, 3);
        let none = Py_None();
        if exc_type == PyExc_SystemExit
            || thread.is_null()
            || (thread != none && PyObject_HasAttrString(thread, c"name".as_ptr()) != 0)
        {
            Py_DECREF(hook_type);
            return null_mut();
        }
        let shim = thread_shim(thread);
        if shim.is_null() {
            Py_DECREF(hook_type);
            return null_mut();
        }
        let copy = PyStructSequence_New(hook_type.cast::<PyTypeObject>());
        Py_DECREF(hook_type);
        if copy.is_null() {
            Py_DECREF(shim);
            return null_mut();
        }
        for i in 0..3 {
            let item = PyStructSequence_GetItem(args, i);
            Py_XINCREF(item);
            PyStructSequence_SetItem(copy, i, item);
        }
        PyStructSequence_SetItem(copy, 3, shim);
        copy
    }
}

/// `types.SimpleNamespace(name=str(tid()), _stderr=…)` standing for `thread`
/// (None or an object without `name`): `_stderr` is None for None (CPython
/// then prints nothing when `sys.stderr` is None), the thread's own
/// `_stderr` when it has one, and absent otherwise.
///
/// # Safety
/// GIL held; `thread` is a valid object.
unsafe fn thread_shim(thread: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held by the caller; every new reference is released.
    unsafe {
        let implementation = PySys_GetObject(c"implementation".as_ptr());
        if implementation.is_null() {
            return null_mut();
        }
        let namespace = Py_TYPE(implementation).cast::<PyObject>();
        let id = cached_id_object(current_tstate());
        if id.is_null() {
            return null_mut();
        }
        let name = PyObject_Str(id);
        Py_DECREF(id);
        if name.is_null() {
            return null_mut();
        }
        let kwargs = PyDict_New();
        if kwargs.is_null() || PyDict_SetItemString(kwargs, c"name".as_ptr(), name) != 0 {
            Py_DECREF(name);
            Py_XDECREF(kwargs);
            return null_mut();
        }
        Py_DECREF(name);
        let stderr = if thread == Py_None() {
            let none = Py_None();
            Py_INCREF(none);
            none
        } else {
            let s = PyObject_GetAttrString(thread, c"_stderr".as_ptr());
            if s.is_null() {
                PyErr_Clear();
            }
            s
        };
        if !stderr.is_null() {
            let failed = PyDict_SetItemString(kwargs, c"_stderr".as_ptr(), stderr) != 0;
            Py_DECREF(stderr);
            if failed {
                Py_DECREF(kwargs);
                return null_mut();
            }
        }
        let empty = PyTuple_New(0);
        if empty.is_null() {
            Py_DECREF(kwargs);
            return null_mut();
        }
        let shim = PyObject_Call(namespace, empty, kwargs);
        Py_DECREF(empty);
        Py_DECREF(kwargs);
        shim
    }
}

/// `sys._current_frames()`.
unsafe extern "C" fn current_frames(sys: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held.
    unsafe { rekeyed(call_original(Orig::CurrentFrames, sys, &[])) }
}

/// `sys._current_exceptions()`.
unsafe extern "C" fn current_exceptions(
    sys: *mut PyObject,
    _unused: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: called by CPython with the GIL held.
    unsafe { rekeyed(call_original(Orig::CurrentExceptions, sys, &[])) }
}

/// A copy of the `{native ident: value}` dict `d` (consumed) whose keys are
/// Retrace ids where a thread state of the current interpreter has that
/// native ident (other interpreters' keys are kept).
///
/// # Safety
/// GIL held; `d` is NULL (an exception set) or a new reference to a dict.
unsafe fn rekeyed(d: *mut PyObject) -> *mut PyObject {
    if d.is_null() {
        return d;
    }
    let caller = current_tstate();
    let entries = match (runtime::get(), thread_id_offset()) {
        (Some(rt), Some(off)) if caller != 0 => rt
            .with_coords(|c| c.ident_entries(caller, off))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    // SAFETY: GIL held by the caller; `d` is a dict we own; borrowed keys and
    // values are used before the dict can change (nothing here runs code
    // that could mutate it: int keys hash and compare without Python code).
    unsafe {
        let out = PyDict_New();
        if out.is_null() {
            Py_DECREF(d);
            return null_mut();
        }
        let mut pos: Py_ssize_t = 0;
        let mut key = null_mut();
        let mut value = null_mut();
        while PyDict_Next(d, &mut pos, &mut key, &mut value) != 0 {
            let native = PyLong_AsUnsignedLongLong(key);
            if native == u64::MAX && !PyErr_Occurred().is_null() {
                PyErr_Clear();
            }
            let entry = entries.iter().find(|e| e.native != 0 && e.native == native);
            let new_key = match entry {
                Some(e) => {
                    let k = cached_id_object(e.tstate);
                    if k.is_null() {
                        PyErr_Clear();
                        Py_INCREF(key);
                        key
                    } else {
                        k
                    }
                }
                None => {
                    Py_INCREF(key);
                    key
                }
            };
            let failed = PyDict_SetItem(out, new_key, value) != 0;
            Py_DECREF(new_key);
            if failed {
                Py_DECREF(out);
                Py_DECREF(d);
                return null_mut();
            }
        }
        Py_DECREF(d);
        out
    }
}
