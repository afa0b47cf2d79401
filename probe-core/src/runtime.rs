//! The process-wide runtime: the located descriptor, counters, side tables,
//! and the two `extern "C"` entry points the trampolines call.
//!
//! Concurrency: trampolines call in with the GIL held, so calls are already
//! serialised per interpreter. The coordinate state still sits behind a `Mutex`
//! (always uncontended under the GIL, a few nanoseconds) so the code stays
//! sound without relying on that, e.g. with 3.12 per-interpreter GILs. The
//! counters are atomics so readers never take the lock. One table set serves
//! the whole process for now; per-interpreter state (keyed by the
//! interpreter of the thread state) is where this will grow.
//!
//! Re-entrancy: nothing here calls into Python while holding the lock, so a
//! hook fired by code that Python runs (e.g. a finaliser during a dict
//! allocation in `_retrace`) cannot deadlock.

use crate::coords::{Coords, PendingBoundary, NO_RECORD};
use crate::descriptor::LiveDescriptor;
use crate::events::ALL_KINDS;
use crate::location::{LiveStack, Memory};
use retrace_abi::{field, HookKind, HotFrame, SavedRegisters};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Event counters, readable without the lock.
pub struct Counters {
    slow_path: [AtomicU64; 256],
    /// Indexed by `HookKind as usize` (slot 0 unused).
    hooks: [AtomicU64; 9],
    /// Hook calls whose index or kind the descriptor does not describe.
    invalid_hooks: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            slow_path: std::array::from_fn(|_| AtomicU64::new(0)),
            hooks: std::array::from_fn(|_| AtomicU64::new(0)),
            invalid_hooks: AtomicU64::new(0),
        }
    }
}

/// The runtime state for one located descriptor.
pub struct Runtime {
    descriptor: LiveDescriptor,
    counters: Counters,
    /// The coordinate engine; `None` when the descriptor lacks what it needs
    /// (standalone runtime, unit tests).
    coords: Option<Mutex<Coords>>,
}

impl Runtime {
    /// The runtime for `descriptor`; `slow_path` keeps every dispatch in the
    /// runtime (no stub fast path); `seed` is the root seed (§9.4).
    pub fn new(descriptor: LiveDescriptor, slow_path: bool, seed: &[u8]) -> Runtime {
        let coords = Coords::new(&descriptor, !slow_path, seed).map(Mutex::new);
        // Every record pointer the stubs and hook fast paths dereference must
        // be valid before the first dispatch: NO_RECORD matches no frame.
        let none = &NO_RECORD as *const HotFrame as u64;
        descriptor.set_cur_record(none);
        for word in [field::SLOT_RECORD, field::STACK_TOP] {
            descriptor.static_word(word).store(none, Ordering::Relaxed);
        }
        descriptor
            .static_word(field::STACK_LIMIT)
            .store(0, Ordering::Relaxed);
        Runtime {
            descriptor,
            counters: Counters::default(),
            coords,
        }
    }

    pub fn descriptor(&self) -> &LiveDescriptor {
        &self.descriptor
    }

    /// Whether the coordinate engine runs.
    pub fn engine_active(&self) -> bool {
        self.coords.is_some()
    }

    fn lock(&self) -> Option<MutexGuard<'_, Coords>> {
        // A poisoned lock only means a panic elsewhere; the state stays usable.
        self.coords
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f` on the coordinate state; `None` without an engine.
    pub fn with_coords<T>(&self, f: impl FnOnce(&mut Coords) -> T) -> Option<T> {
        self.lock().map(|mut c| f(&mut c))
    }

    /// Handles `rt_dispatch(regs, opcode)`: the coordinate part under the
    /// lock, then (without it) any call_at or thread-switch work through the
    /// installed boundary handler. Returns 1 when a callback raised and the
    /// stub must enter the error path (`raise_pending` is set), else 0.
    pub fn dispatch(&self, regs: &SavedRegisters, opcode: u64, stack: &impl Memory) -> u64 {
        if let Some(counter) = usize::try_from(opcode)
            .ok()
            .and_then(|i| self.counters.slow_path.get(i))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let pending = match (self.lock(), u8::try_from(opcode)) {
            (Some(mut coords), Ok(op)) => coords.on_dispatch(regs, op, stack),
            _ => None,
        };
        let Some(pending) = pending else { return 0 };
        match BOUNDARY_HANDLER.get() {
            Some(handler) => {
                if handler(self, pending) {
                    self.descriptor
                        .static_word(field::RAISE_PENDING)
                        .store(1, Ordering::Relaxed);
                    return 1;
                }
            }
            // No Python side (unit tests): nothing can be delivered.
            None => {
                let _ = self.with_coords(|c| c.finish_switch(pending.tstate));
            }
        }
        0
    }

    /// Handles `rt_hook(regs, index)`; returns 0.
    pub fn hook(&self, regs: &SavedRegisters, index: u64, stack: &impl Memory) -> u64 {
        let info = self.descriptor.info();
        let hook = usize::try_from(index).ok().and_then(|i| info.hooks.get(i));
        let Some((hook, kind)) = hook.and_then(|h| h.kind.map(|k| (h, k))) else {
            self.counters.invalid_hooks.fetch_add(1, Ordering::Relaxed);
            return 0;
        };
        self.counters.hooks[kind as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(mut coords) = self.lock() {
            coords.on_hook(kind, hook.arg, regs, stack);
        }
        0
    }

    pub fn slow_path_counts(&self) -> [u64; 256] {
        std::array::from_fn(|i| self.counters.slow_path[i].load(Ordering::Relaxed))
    }

    pub fn hook_counts(&self) -> [(HookKind, u64); 8] {
        ALL_KINDS.map(|k| (k, self.counters.hooks[k as usize].load(Ordering::Relaxed)))
    }

    pub fn invalid_hook_calls(&self) -> u64 {
        self.counters.invalid_hooks.load(Ordering::Relaxed)
    }

    /// Zeroes the stubs' slow-path counters and the runtime's.
    pub fn reset_dispatch_counts(&self) {
        self.descriptor.reset_dispatch_counts();
        for c in &self.counters.slow_path {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Frames the coordinate engine tracks.
    pub fn live_frames(&self) -> usize {
        self.with_coords(|c| c.engine().frame_count()).unwrap_or(0)
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Runs the Python side of a boundary (callbacks); true = a callback raised.
pub type BoundaryHandler = fn(&Runtime, PendingBoundary) -> bool;

static BOUNDARY_HANDLER: OnceLock<BoundaryHandler> = OnceLock::new();

/// Installs the boundary handler (once, at start-up).
pub fn set_boundary_handler(handler: BoundaryHandler) {
    let _ = BOUNDARY_HANDLER.set(handler);
}

/// Installs the process-wide runtime; `None` if one is already installed.
pub fn install(runtime: Runtime) -> Option<&'static Runtime> {
    RUNTIME.set(runtime).ok()?;
    RUNTIME.get()
}

/// The process-wide runtime, if a descriptor was found.
pub fn get() -> Option<&'static Runtime> {
    RUNTIME.get()
}

/// Called by a dispatch stub's slow path with all registers saved.
///
/// Returns 0; non-zero will mean "an exception is set: go to the error label".
///
/// # Safety
/// `regs` is NULL or points at the register block the calling trampoline saved.
pub unsafe extern "C" fn rt_dispatch(regs: *mut SavedRegisters, opcode: u64) -> u64 {
    let Some(runtime) = get() else { return 0 };
    // SAFETY: guaranteed by the caller: the trampoline passes the register
    // block it saved on its own stack, valid for the duration of this call.
    let Some(regs) = (unsafe { regs.as_ref() }) else {
        return 0;
    };
    runtime.dispatch(regs, opcode, &LiveStack)
}

/// Called by a hook trampoline with all registers saved.
///
/// # Safety
/// As for [`rt_dispatch`].
pub unsafe extern "C" fn rt_hook(regs: *mut SavedRegisters, index: u64) -> u64 {
    let Some(runtime) = get() else { return 0 };
    // SAFETY: as for `rt_dispatch`.
    let Some(regs) = (unsafe { regs.as_ref() }) else {
        return 0;
    };
    runtime.hook(regs, index, &LiveStack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::{FakeMemory, Location};
    use std::collections::HashMap;

    #[test]
    fn counts_without_an_engine() {
        let descriptor = LiveDescriptor::standalone().expect("standalone");
        let runtime = Runtime::new(descriptor, false, b"retrace");
        // The standalone descriptor has no offsets: no engine, counts still work.
        assert!(!runtime.engine_active());
        assert_eq!(
            runtime.descriptor().info().layout.tstate,
            Location::Unavailable
        );
        assert_eq!(
            runtime.descriptor().cur_record(),
            &NO_RECORD as *const HotFrame as u64
        );
        let regs = SavedRegisters::default();
        let memory = FakeMemory(HashMap::new());
        assert_eq!(runtime.dispatch(&regs, 100, &memory), 0);
        assert_eq!(runtime.dispatch(&regs, 100, &memory), 0);
        assert_eq!(runtime.dispatch(&regs, 300, &memory), 0);
        assert_eq!(runtime.slow_path_counts()[100], 2);
        assert_eq!(runtime.slow_path_counts().iter().sum::<u64>(), 2);
        // The standalone descriptor describes no hooks: every index is invalid.
        assert_eq!(runtime.hook(&regs, 0, &memory), 0);
        assert_eq!(runtime.hook(&regs, u64::MAX, &memory), 0);
        assert_eq!(runtime.invalid_hook_calls(), 2);
        assert!(runtime.hook_counts().iter().all(|&(_, n)| n == 0));
        runtime.reset_dispatch_counts();
        assert_eq!(runtime.slow_path_counts(), [0; 256]);
        assert_eq!(runtime.live_frames(), 0);
    }

    #[test]
    fn entry_points_without_runtime_or_registers_return_zero() {
        // No runtime is installed in the unit-test process.
        assert!(get().is_none());
        let mut regs = SavedRegisters::default();
        // SAFETY: NULL and a valid register block are both allowed.
        unsafe {
            assert_eq!(rt_dispatch(std::ptr::null_mut(), 1), 0);
            assert_eq!(rt_hook(std::ptr::null_mut(), 1), 0);
            assert_eq!(rt_dispatch(&mut regs, 1), 0);
            assert_eq!(rt_hook(&mut regs, 1), 0);
        }
    }
}
