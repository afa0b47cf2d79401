//! The retrace runtime (`libretrace_rt.so`), loaded by a rewritten libpython
//! as `DT_NEEDED`.
//!
//! At load time its constructor finds the rewriter's descriptor in the
//! rewritten library, publishes the entry points the trampolines call
//! ([`runtime::rt_dispatch`], [`runtime::rt_hook`]), registers the builtin
//! module `_retrace` and the frozen module `retrace`. Python symbols resolve
//! against the already-loaded libpython; the runtime never links it.
//!
//! The Python-facing glue (constructor, modules) is compiled out of unit-test
//! builds, which have no libpython to resolve against; it is exercised by the
//! integration tests, which run real interpreters.

pub mod config;
pub mod coords;
pub mod descriptor;
pub mod detours;
pub mod engine;
pub mod events;
pub mod frozen_table;
pub mod hasher;
pub mod identity_map;
pub mod ids;
pub mod location;
pub mod mixing;
pub mod runtime;
pub mod scan;
pub mod sched;

#[cfg(not(test))]
pub mod api;
#[cfg(not(test))]
mod frozen;
#[cfg(not(test))]
mod init;
#[cfg(not(test))]
mod pymodule;
