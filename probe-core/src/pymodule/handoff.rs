//! `_retrace.ThreadHandoff` (SEMANTICS §16), re-exported as
//! `retrace.ThreadHandoff`.
//!
//! It exists so that a scheduler written in Python can pass "the turn" from
//! one thread to another by Retrace id: `to(id)` wakes the target and parks
//! the caller until some thread transfers back, `start()` parks a thread
//! until its first turn, `close()` releases everyone. The state lives behind
//! an `Arc` shared by the object and every call parked on it, so it outlives
//! the object if the object goes away while a thread waits.
//!
//! Locking: the state mutex may be taken with the GIL held, but a thread
//! never waits for the GIL while holding it. A parked call releases the GIL
//! and waits on its entry's gate (a binary semaphore: a flag plus a
//! condition variable) without the GIL, then drops the mutex before it takes
//! the GIL back.

use super::errors::{finish, raise, type_error, Raised};
use super::results::none;
use pyo3_ffi::*;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::ptr::{addr_of_mut, null_mut};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One thread id's entry (§16.1), made the first time the id is mentioned.
#[derive(Default)]
struct Entry {
    /// A transfer to this id is pending.
    permit: bool,
    /// A call of this id is parked (§16.2).
    waiting: bool,
    /// The gate was released and not yet passed.
    gate: bool,
    /// Signalled when `gate` is released; used with [`Shared::state`].
    wake: Arc<Condvar>,
}

/// The mutable state of one handoff object.
#[derive(Default)]
struct State {
    closed: bool,
    entries: HashMap<u64, Entry>,
}

impl Entry {
    /// Releases the gate if a call of this id is parked without a permit.
    fn release_if_waiting(&mut self) {
        if self.waiting && !self.permit && !self.gate {
            self.gate = true;
            self.wake.notify_one();
        }
    }
}

impl State {
    fn entry(&mut self, id: u64) -> &mut Entry {
        self.entries.entry(id).or_default()
    }
}

/// Why a park ended without a turn.
#[derive(Debug, PartialEq, Eq)]
enum ParkError {
    /// A gate wait outlived the timeout.
    TimedOut,
    /// The wait itself failed (a poisoned lock).
    Failed,
}

/// Runs a blocking gate wait with the GIL released and returns its result.
type Unblocked<'a> =
    &'a mut dyn FnMut(&mut dyn FnMut() -> Result<(), ParkError>) -> Result<(), ParkError>;

/// The state shared by an object and the calls parked on it.
struct Shared {
    /// `None`: untimed; else the limit of each gate wait.
    timeout: Option<Duration>,
    state: Mutex<State>,
}

impl Shared {
    fn new(timeout: Option<Duration>) -> Self {
        Shared {
            timeout,
            state: Mutex::new(State::default()),
        }
    }

    /// The state. The flags stay consistent whatever a panicking holder did
    /// (no code between lock and unlock panics), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// §16.2 for `me`, whose state the caller locked as `guard`. `unblocked`
    /// runs its argument (a blocking gate wait) with the GIL released and
    /// returns its result; the state is unlocked around it.
    fn park<'a>(
        &'a self,
        me: u64,
        mut guard: MutexGuard<'a, State>,
        unblocked: Unblocked<'_>,
    ) -> Result<(), ParkError> {
        guard.entry(me).waiting = true;
        let outcome = loop {
            if guard.closed || guard.entry(me).permit {
                break Ok(());
            }
            drop(guard);
            let waited = unblocked(&mut || self.gate_wait(me));
            guard = self.lock();
            if let Err(error) = waited {
                break Err(error);
            }
        };
        // Any gate release happened while `waiting` was set, so it belonged
        // to this park: clear it together with the flags.
        let entry = guard.entry(me);
        entry.waiting = false;
        entry.gate = false;
        if outcome.is_ok() {
            entry.permit = false;
        }
        outcome
    }

    /// Waits until the gate of `me` is released and takes it; at most one
    /// timeout from now when the object has one. Runs without the GIL.
    fn gate_wait(&self, me: u64) -> Result<(), ParkError> {
        let mut guard = self.lock();
        let wake = Arc::clone(&guard.entry(me).wake);
        // A timeout too far away to represent is as good as none.
        let deadline = self.timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let entry = guard.entry(me);
            if entry.gate {
                entry.gate = false;
                return Ok(());
            }
            guard = match deadline {
                None => wake.wait(guard).map_err(|_| ParkError::Failed)?,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ParkError::TimedOut);
                    }
                    wake.wait_timeout(guard, left)
                        .map_err(|_| ParkError::Failed)?
                        .0
                }
            };
        }
    }

    /// `start()` after the checks of §16.3: consumes a pending permit or parks.
    fn start(
        &self,
        me: u64,
        mut guard: MutexGuard<'_, State>,
        unblocked: Unblocked<'_>,
    ) -> Result<(), ParkError> {
        let entry = guard.entry(me);
        if entry.permit {
            entry.permit = false;
            return Ok(());
        }
        self.park(me, guard, unblocked)
    }

    /// `to(target)` after the checks of §16.4 (`target != me`): discards the
    /// caller's permit, grants the target's, wakes it and parks the caller.
    fn transfer(
        &self,
        me: u64,
        target: u64,
        mut guard: MutexGuard<'_, State>,
        unblocked: Unblocked<'_>,
    ) -> Result<(), ParkError> {
        guard.entry(me).permit = false;
        let entry = guard.entry(target);
        entry.release_if_waiting();
        entry.permit = true;
        self.park(me, guard, unblocked)
    }

    /// §16.5: idempotent; releases every entry parked without a permit.
    fn close(&self) {
        let mut guard = self.lock();
        guard.closed = true;
        guard
            .entries
            .values_mut()
            .for_each(Entry::release_if_waiting);
    }
}

/// The instance layout.
#[repr(C)]
struct Handoff {
    ob_base: PyObject,
    /// `Arc::into_raw` of the shared state; `NULL` only before `tp_new`
    /// finished or after deallocation.
    shared: *const Shared,
}

/// The type object, created by [`add_to`] and kept for the life of the process.
static TYPE: AtomicPtr<PyObject> = AtomicPtr::new(null_mut());

const DOC: &CStr = c"ThreadHandoff(timeout=None)

Passes the turn between threads by Retrace thread id.

start() parks the calling thread until a transfer to it (returning at once
if one is pending); to(thread_id) hands the turn to that thread and parks
the caller until a later transfer back; close() releases every parked
thread. timeout (seconds, None for no limit) bounds each wait; a wait that
outlives it raises TimeoutError.";

/// The largest timeout in nanoseconds (CPython's `PyTime_t` range).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Why a timeout was rejected (§16.1).
#[derive(Debug, PartialEq, Eq)]
enum BadTimeout {
    NaN,
    Negative,
    TooLarge,
}

/// Nanoseconds (rounded up, at most [`MAX_NANOS`]) to a duration rounded up
/// to microseconds.
fn from_nanos(nanos: u128) -> Duration {
    let micros = nanos.div_ceil(1_000);
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// A timeout given as a float number of seconds: rounded up to nanoseconds
/// (like CPython's time conversion), then up to microseconds.
fn timeout_from_float(seconds: f64) -> Result<Duration, BadTimeout> {
    if seconds.is_nan() {
        return Err(BadTimeout::NaN);
    }
    if seconds < 0.0 {
        return Err(BadTimeout::Negative);
    }
    let nanos = (seconds * 1e9).ceil();
    // `MAX_NANOS as f64` rounds up to 2**63, itself out of range.
    if nanos >= MAX_NANOS as f64 {
        return Err(BadTimeout::TooLarge);
    }
    // In range and non-negative: the conversion is exact.
    Ok(from_nanos(nanos as u128))
}

/// A timeout given as a whole number of seconds (`None`: beyond `i64`, with
/// the sign `overflow`).
fn timeout_from_int(seconds: Option<i64>, overflow: c_int) -> Result<Duration, BadTimeout> {
    match seconds {
        None if overflow < 0 => Err(BadTimeout::Negative),
        None => Err(BadTimeout::TooLarge),
        Some(s) if s < 0 => Err(BadTimeout::Negative),
        Some(s) => {
            let nanos = u128::from(s.unsigned_abs()) * 1_000_000_000;
            if nanos > MAX_NANOS {
                Err(BadTimeout::TooLarge)
            } else {
                Ok(from_nanos(nanos))
            }
        }
    }
}

/// Converts the `timeout` argument: `NULL`/`None` → untimed; a `float` or an
/// `__index__` object → seconds; anything else `TypeError`.
///
/// # Safety
/// GIL held; `object` is `NULL` or a valid object.
unsafe fn timeout(object: *mut PyObject) -> Result<Option<Duration>, Raised> {
    // SAFETY: GIL held by the caller; `object` valid when non-null.
    unsafe {
        if object.is_null() || object == Py_None() {
            return Ok(None);
        }
        let converted = if PyFloat_Check(object) != 0 {
            let seconds = PyFloat_AsDouble(object);
            if seconds == -1.0 && !PyErr_Occurred().is_null() {
                return Err(Raised);
            }
            timeout_from_float(seconds)
        } else if PyIndex_Check(object) != 0 {
            let index = PyNumber_Index(object);
            if index.is_null() {
                return Err(Raised);
            }
            let mut overflow: c_int = 0;
            let value = PyLong_AsLongLongAndOverflow(index, &mut overflow);
            Py_DECREF(index);
            if value == -1 && !PyErr_Occurred().is_null() {
                return Err(Raised);
            }
            timeout_from_int((overflow == 0).then_some(value), overflow)
        } else {
            return Err(type_error(
                c"thread handoff timeout must be a number or None",
            ));
        };
        converted.map(Some).map_err(|bad| match bad {
            BadTimeout::NaN => raise(PyExc_ValueError, c"Invalid value NaN (not a number)"),
            BadTimeout::Negative => raise(
                PyExc_ValueError,
                c"thread handoff timeout must be non-negative",
            ),
            BadTimeout::TooLarge => {
                raise(PyExc_OverflowError, c"thread handoff timeout is too large")
            }
        })
    }
}

/// A target id (§2.3 word): an `int` in `[0, 2**64)`; `OverflowError`
/// outside it, `TypeError` for anything else (`None` included).
///
/// # Safety
/// GIL held; `object` is a valid object.
unsafe fn target_id(object: *mut PyObject) -> Result<u64, Raised> {
    // SAFETY: GIL held by the caller; `object` valid.
    unsafe {
        if PyLong_Check(object) == 0 {
            return Err(type_error(c"thread handoff target id must be an int"));
        }
        let value = PyLong_AsUnsignedLongLong(object);
        if value == u64::MAX && !PyErr_Occurred().is_null() {
            // OverflowError for negative values and values >= 2**64.
            return Err(Raised);
        }
        Ok(value)
    }
}

/// The shared state of an instance, as a new `Arc` for the duration of a call.
///
/// # Safety
/// GIL held; `slf` an instance of the type.
unsafe fn shared(slf: *mut PyObject) -> Result<Arc<Shared>, Raised> {
    // SAFETY: `slf` has the `Handoff` layout (caller's contract).
    let raw = unsafe { (*slf.cast::<Handoff>()).shared };
    if raw.is_null() {
        // SAFETY: GIL held by the caller.
        return Err(unsafe { raise(PyExc_RuntimeError, c"thread handoff is closed") });
    }
    // SAFETY: `raw` came from `Arc::into_raw` and the instance still owns
    // that count, so adding one is sound.
    unsafe {
        Arc::increment_strong_count(raw);
        Ok(Arc::from_raw(raw))
    }
}

/// The calling thread's Retrace id, else `RuntimeError`.
///
/// # Safety
/// GIL held.
unsafe fn caller_id() -> Result<u64, Raised> {
    crate::api::current_thread_id().ok_or_else(|| {
        // SAFETY: GIL held by the caller.
        unsafe { raise(PyExc_RuntimeError, c"no Retrace thread id") }
    })
}

/// The state, or `RuntimeError` if the object is closed.
///
/// # Safety
/// GIL held.
unsafe fn open(shared: &Shared) -> Result<MutexGuard<'_, State>, Raised> {
    let guard = shared.lock();
    if guard.closed {
        drop(guard);
        // SAFETY: GIL held by the caller.
        return Err(unsafe { raise(PyExc_RuntimeError, c"thread handoff is closed") });
    }
    Ok(guard)
}

/// Runs `wait` with the GIL released (the caller holds it).
fn without_gil(wait: &mut dyn FnMut() -> Result<(), ParkError>) -> Result<(), ParkError> {
    // SAFETY: the calling thread holds the GIL (every park runs inside a
    // method call); `wait` touches no Python object, and the GIL is taken
    // back before returning, after `wait` dropped the state lock.
    unsafe {
        let tstate = PyEval_SaveThread();
        let result = wait();
        PyEval_RestoreThread(tstate);
        result
    }
}

/// The result of a park: `None`, or the exception of §16.2.
///
/// # Safety
/// GIL held.
unsafe fn parked(result: Result<(), ParkError>) -> Result<*mut PyObject, Raised> {
    // SAFETY: GIL held by the caller.
    unsafe {
        match result {
            Ok(()) => Ok(none()),
            Err(ParkError::TimedOut) => Err(raise(PyExc_TimeoutError, c"thread handoff timed out")),
            Err(ParkError::Failed) => Err(raise(PyExc_RuntimeError, c"thread handoff wait failed")),
        }
    }
}

/// `handoff.start()`.
unsafe extern "C" fn start(slf: *mut PyObject, _args: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython (METH_NOARGS) with the GIL held and `slf` an
    // instance of the type.
    finish(unsafe { start_call(slf) })
}

/// The body of [`start`].
///
/// # Safety
/// As [`start`].
unsafe fn start_call(slf: *mut PyObject) -> Result<*mut PyObject, Raised> {
    // SAFETY: the caller's contract.
    unsafe {
        let shared = shared(slf)?;
        let me = caller_id()?;
        let guard = open(&shared)?;
        parked(shared.start(me, guard, &mut without_gil))
    }
}

/// `handoff.to(thread_id)`.
unsafe extern "C" fn to(slf: *mut PyObject, target: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython (METH_O) with the GIL held and `slf` an
    // instance of the type.
    finish(unsafe { to_call(slf, target) })
}

/// The body of [`to`].
///
/// # Safety
/// As [`to`].
unsafe fn to_call(slf: *mut PyObject, target: *mut PyObject) -> Result<*mut PyObject, Raised> {
    // SAFETY: the caller's contract.
    unsafe {
        let target = target_id(target)?;
        if target == 0 {
            return Err(raise(
                PyExc_ValueError,
                c"thread handoff target id must be non-zero",
            ));
        }
        let me = caller_id()?;
        let shared = shared(slf)?;
        let guard = open(&shared)?;
        if target == me {
            return Ok(none());
        }
        parked(shared.transfer(me, target, guard, &mut without_gil))
    }
}

/// `handoff.close()`.
unsafe extern "C" fn close(slf: *mut PyObject, _args: *mut PyObject) -> *mut PyObject {
    // SAFETY: called by CPython (METH_NOARGS) with the GIL held and `slf` an
    // instance of the type.
    finish(unsafe {
        shared(slf).map(|shared| {
            shared.close();
            none()
        })
    })
}

static mut METHODS: [PyMethodDef; 4] = [
    super::method(
        c"start",
        start,
        c"start($self, /)
--

Park the calling thread until a transfer to it; return at once if one is
already pending.",
    ),
    super::method_o(
        c"to",
        to,
        c"to($self, thread_id, /)
--

Hand the turn to the thread with this Retrace id and park the calling
thread until a later transfer to it (None at once for the caller's own id).",
    ),
    super::method(
        c"close",
        close,
        c"close($self, /)
--

Release every parked thread; later start() and to() raise RuntimeError.",
    ),
    PyMethodDef::zeroed(),
];

/// `tp_new`: `ThreadHandoff(timeout=None)`.
unsafe extern "C" fn new(
    ty: *mut PyTypeObject,
    args: *mut PyObject,
    kwargs: *mut PyObject,
) -> *mut PyObject {
    let mut given: *mut PyObject = null_mut();
    let mut keywords: [*mut c_char; 2] = [c"timeout".as_ptr().cast_mut(), null_mut()];
    // SAFETY: called by CPython with the GIL held; the format takes one
    // optional object, written to `given` as a borrowed reference; the
    // keyword list is NULL-terminated and not modified by CPython.
    unsafe {
        if PyArg_ParseTupleAndKeywords(
            args,
            kwargs,
            c"|O:ThreadHandoff".as_ptr(),
            keywords.as_mut_ptr(),
            &mut given as *mut *mut PyObject,
        ) == 0
        {
            return null_mut();
        }
        let Ok(limit) = timeout(given) else {
            return null_mut();
        };
        let object = PyType_GenericAlloc(ty, 0);
        if object.is_null() {
            return null_mut();
        }
        (*object.cast::<Handoff>()).shared = Arc::into_raw(Arc::new(Shared::new(limit)));
        object
    }
}

/// `tp_dealloc`: closes (releasing parked calls, which keep the state alive
/// through their own `Arc`), then frees.
unsafe extern "C" fn dealloc(slf: *mut PyObject) {
    // SAFETY: called once by CPython when the last reference goes, with the
    // GIL held; the type is neither GC-managed nor subclassable, so the
    // memory came from PyObject_Malloc (PyType_GenericAlloc) and the heap
    // type holds one reference per instance. The state's count owned by the
    // instance is taken out before the memory is freed.
    unsafe {
        let ty = Py_TYPE(slf);
        let raw = std::mem::replace(&mut (*slf.cast::<Handoff>()).shared, std::ptr::null());
        if !raw.is_null() {
            let shared = Arc::from_raw(raw);
            shared.close();
        }
        PyObject_Free(slf.cast());
        Py_DECREF(ty.cast());
    }
}

/// Creates the type (once) and adds it to `module` as `ThreadHandoff`.
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
            slot(Py_tp_dealloc, dealloc as *mut c_void),
            slot(Py_tp_methods, addr_of_mut!(METHODS).cast()),
            slot(0, null_mut()),
        ];
        let mut spec = PyType_Spec {
            name: c"_retrace.ThreadHandoff".as_ptr(),
            basicsize: std::mem::size_of::<Handoff>() as c_int,
            itemsize: 0,
            flags: (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE) as c_uint,
            slots: slots.as_mut_ptr(),
        };
        // SAFETY: GIL held; spec and slots are read during the call; the
        // method table is static and outlives the type.
        ty = unsafe { PyType_FromSpec(&mut spec) };
        if ty.is_null() {
            return Err(Raised);
        }
        TYPE.store(ty, Ordering::Release);
    }
    // SAFETY: GIL held; `module` is a module, `ty` a live type object;
    // PyModule_AddObjectRef takes its own reference.
    if unsafe { PyModule_AddObjectRef(module, c"ThreadHandoff".as_ptr(), ty) } != 0 {
        return Err(Raised);
    }
    Ok(())
}
