//! Scheduling probes as pure state: the per-interpreter registry of
//! thread-switch callbacks and `call_at` slots (SEMANTICS §3 "per
//! interpreter", §13, §14, §15), independent of CPython.
//!
//! Callback objects are opaque [`Callback`] handles: the registry decides
//! *which* callback runs *where*, never calls anything. Every method that
//! drops a stored handle returns it, so the Python layer can release the
//! reference after the runtime lock is gone (a release may run arbitrary
//! Python code).
//!
//! * [`compare`]: the target/current vector order of §14.6.
//! * [`registry`]: entries, slots, cursors, `last_thread`, and the decisions
//!   of §7's second half, §13.2 `deliver_switch`, §14.6 `check_call_at` and
//!   §15 `complete`.

pub mod compare;
pub mod registry;

#[cfg(test)]
mod tests;

pub use compare::{compare_target, TargetOrder};
pub use registry::{
    CallAtFire, Callback, Completion, Registry, SlotContent, SwitchDecision, SwitchPlan,
};
