//! The ELF constructor: runs when the loader maps the runtime, before
//! libpython's `Py_Initialize`, and wires the runtime into the rewritten
//! library (or does nothing at all in a vanilla process).

use crate::config::Config;
use crate::descriptor::LiveDescriptor;
use crate::frozen_table::FrozenTableError;
use crate::runtime::{self, rt_dispatch, rt_hook, Runtime};
use crate::{detours, frozen, ids, pymodule, scan};

/// Registered in `.init_array`; the loader calls it after relocating every object.
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = retrace_rt_constructor;

extern "C" fn retrace_rt_constructor() {
    // A panic must not unwind into the loader.
    let _ = std::panic::catch_unwind(start);
}

fn warn(message: std::fmt::Arguments<'_>) {
    eprintln!("retrace runtime: {message}");
}

fn start() {
    let config = Config::from_env();
    let (found, rejected) = scan::locate();
    for (candidate, error) in &rejected {
        warn(format_args!(
            "ignoring descriptor at {:#x} in {:?}: {error}",
            candidate.address, candidate.object
        ));
    }
    let descriptor = match found {
        Some(d) => d,
        // A rewritten library whose descriptor this runtime cannot use: its
        // dispatch stubs would dereference a record pointer nobody set.
        None if !rejected.is_empty() => {
            warn(format_args!(
                "the rewritten libpython does not match this runtime; \
                 re-run `rewriter instrument` to pair them. Exiting."
            ));
            // SAFETY: `_exit` ends the process without running anything else.
            unsafe { libc::_exit(70) }
        }
        None if config.standalone => match LiveDescriptor::standalone() {
            Ok(d) => d,
            Err(e) => {
                warn(format_args!("standalone descriptor rejected: {e}"));
                return;
            }
        },
        // A vanilla process: stay completely inert.
        None => return,
    };
    let seed = std::env::var_os(ids::ROOT_SEED_VAR)
        .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec())
        .unwrap_or_else(|| ids::DEFAULT_ROOT_SEED.to_vec());
    let Some(rt) = runtime::install(Runtime::new(descriptor, config.slow_path, &seed)) else {
        return;
    };
    let d = rt.descriptor();
    // Entry points first, then the flags that make trampolines call them.
    d.set_entry_points(rt_dispatch as *const () as u64, rt_hook as *const () as u64);
    detours::set_location_source(crate::api::identity_location);
    pymodule::install_callbacks();
    // Function replacements: before Py_Initialize, so every identity hash goes through them.
    for outcome in detours::install(d) {
        if let detours::Installed::Skipped { index, reason } = outcome {
            warn(format_args!(
                "detour {index} keeps the original function: {reason}"
            ));
        }
    }
    // The coordinate engine needs every hook; without it they stay off
    // unless RETRACE_HOOKS=1 asks for them (hook-count tests).
    d.set_hooks_enabled(if rt.engine_active() {
        u64::MAX
    } else {
        config.hooks_enabled()
    });
    d.set_slow_path(config.slow_path);
    if !pymodule::register() {
        warn(format_args!("PyImport_AppendInittab(\"_retrace\") failed"));
    }
    // Retrace ids on `_thread`, `signal` and `sys` (SEMANTICS §9.5).
    detours::set_ident_resolver(pymodule::ident::resolve_for_c);
    if rt.engine_active() && !pymodule::ident::install() {
        warn(format_args!(
            "_thread not wrapped: thread idents stay native"
        ));
    }
    match frozen::install() {
        // Expected on 3.13+ (reported by `_retrace._descriptor()["frozen_retrace"]`).
        Ok(()) | Err(FrozenTableError::UnsupportedVersion(_)) => {}
        Err(e) => warn(format_args!("frozen module retrace not installed: {e}")),
    }
}
