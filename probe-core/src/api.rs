//! The runtime's query and space-entry surface for the Python modules.
//!
//! `pymodule` converts Python arguments (SEMANTICS §2.3), calls these
//! functions and converts the results; everything about coordinates lives
//! behind them. Every function must be called with the GIL held, from the
//! thread it concerns ("current thread" = the calling thread's
//! `PyThreadState`). None of them runs Python code.

use crate::runtime;
use std::sync::OnceLock;

pub use crate::coords::ApiError;

/// The address of the first of `names` the process exports (CPython renames
/// some functions between versions), if any.
pub(crate) fn first_exported(names: &[&std::ffi::CStr]) -> Option<*mut libc::c_void> {
    names.iter().find_map(|name| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    })
}

/// The calling thread's `PyThreadState` (0 when it has none).
///
/// 3.12 exports `_PyThreadState_UncheckedGet`, 3.13 `PyThreadState_GetUnchecked`;
/// looked up once so that the runtime loads against either.
pub fn current_tstate() -> u64 {
    type Getter = unsafe extern "C" fn() -> *mut std::ffi::c_void;
    static GETTER: OnceLock<Option<Getter>> = OnceLock::new();
    let getter = GETTER.get_or_init(|| {
        first_exported(&[
            c"PyThreadState_GetUnchecked",
            c"_PyThreadState_UncheckedGet",
        ])
        // SAFETY: both symbols are `PyThreadState *(void)` functions.
        .map(|p| unsafe { std::mem::transmute::<*mut libc::c_void, Getter>(p) })
    });
    match getter {
        // SAFETY: the getter only reads the thread's current state pointer.
        Some(get) => unsafe { get() as u64 },
        None => 0,
    }
}

fn with_coords<T>(
    f: impl FnOnce(&mut crate::coords::Coords, u64) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let rt = runtime::get().ok_or(ApiError::Inactive)?;
    let tstate = current_tstate();
    rt.with_coords(|c| f(c, tstate)).ok_or(ApiError::Inactive)?
}

/// §8.1: the `(instruction, ordinal)` words of a thread in `space` from word
/// `drop` on. `thread_id` `None` = the current thread, else a Retrace id.
/// `Ok(None)` when the thread-space is missing or unseen.
pub fn coordinates(
    thread_id: Option<u64>,
    drop: usize,
    space: u32,
) -> Result<Option<Vec<u64>>, ApiError> {
    with_coords(|c, t| c.coordinates(t, thread_id, drop, space))
}

/// §8.2: `(common, *suffix)` of the current thread in `space`, updating its
/// delta memory; `Ok(None)` when the thread-space is missing or unseen.
pub fn thread_delta(space: u32) -> Result<Option<Vec<u64>>, ApiError> {
    with_coords(|c, t| c.thread_delta(t, space))
}

/// §8.3: the location hash of the current thread in `space` as a word;
/// `Ok(None)` when the thread-space is missing or unseen.
pub fn location_hash(space: u32) -> Result<Option<u64>, ApiError> {
    with_coords(|c, t| c.location_hash(t, space))
}

/// §11.1: the next dynamic space id (process-wide counter from 2; wraps to 2).
pub fn allocate_space_id() -> u32 {
    with_coords(|c, _| Ok(c.allocate_space_id())).unwrap_or(2)
}

/// §11.2 `enter(T, sid)` on the current thread. Must be paired with
/// [`leave_space`] on every path (return and exception).
pub fn enter_space(space: u32) -> Result<(), ApiError> {
    with_coords(|c, t| c.enter_space(t, space))
}

/// §11.2 `leave(T)` on the current thread.
pub fn leave_space() -> Result<(), ApiError> {
    with_coords(|c, t| c.leave_space(t))
}

/// The current thread's Retrace id (§9.4), `None` when it has none.
pub fn current_thread_id() -> Option<u64> {
    with_coords(|c, t| Ok(c.current_thread_id(t)))
        .ok()
        .flatten()
}

/// §17.1: the source space of a `SpaceDispatch` call on the current thread
/// (its current space; `None` while it runs transparent callback code).
pub fn dispatch_source_space() -> Result<Option<u32>, ApiError> {
    with_coords(|c, t| c.dispatch_source_space(t))
}

/// §10: the location hash for the identity hash of an object first hashed
/// now on the calling thread, `None` when no frame is visible.
pub fn identity_location() -> Option<u64> {
    with_coords(|c, t| Ok(c.nearest_visible_hash(t)))
        .ok()
        .flatten()
}
