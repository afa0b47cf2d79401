//! Start-up of the instrumented interpreter: `_retrace` is a builtin module,
//! `retrace` imports from anywhere (also under `-I -S`), vanilla CPython is
//! unchanged, and the frame-link hooks report real frame events.

use retrace_tests::{instrumented_312, run, run_ok, scripts_dir, vanilla_python};

const SHAPE: &str = "import sys, importlib.util as u\n\
print('_retrace' in sys.builtin_module_names, 'retrace' in sys.builtin_module_names)\n\
s1 = u.find_spec('_retrace'); s2 = u.find_spec('retrace')\n\
print(s1 and s1.origin, s2 and s2.origin)\n";

#[test]
fn retrace_modules_are_available_when_instrumented() {
    let inst = instrumented_312();
    let out = run_ok(&inst.launcher, &["-c", SHAPE], &[], None);
    assert_eq!(out, "True False\nbuilt-in frozen\n");
}

#[test]
fn vanilla_interpreter_is_unchanged() {
    let inst = instrumented_312();
    let vanilla = vanilla_python(&inst.install, &inst.series);
    let out = run_ok(&vanilla, &["-c", SHAPE], &[], None);
    assert_eq!(out, "False False\nNone None\n");
}

#[test]
fn retrace_imports_under_isolated_mode_from_any_directory() {
    let inst = instrumented_312();
    let cwd = tempfile::tempdir().unwrap();
    // A decoy on sys.path must lose against the frozen module.
    std::fs::write(
        cwd.path().join("retrace.py"),
        "raise SystemExit('decoy imported')\n",
    )
    .unwrap();
    for args in [
        vec![
            "-I",
            "-S",
            "-c",
            "import retrace, _retrace; print(retrace.__spec__.origin)",
        ],
        vec!["-c", "import retrace; print(retrace.__spec__.origin)"],
    ] {
        let out = run_ok(&inst.launcher, &args, &[], Some(cwd.path()));
        assert_eq!(out.trim(), "frozen", "{args:?}");
    }
    let out = run(
        &inst.launcher,
        &["-I", "-S", "-c", "import retrace"],
        &[("PYTHONPATH", cwd.path().to_str().unwrap())],
        Some(std::path::Path::new("/")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn frame_hooks_see_every_inlined_call() {
    let inst = instrumented_312();
    let script = scripts_dir().join("hook_events.py");
    let out = run_ok(
        &inst.launcher,
        &[script.to_str().unwrap()],
        // No fast path: every hook event reaches the runtime and is counted.
        &[("RETRACE_SLOW_PATH", "1")],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let extra = &v["extra"];
    // 100 * 10 extra Python calls, each inlined by CALL_PY_EXACT_ARGS.
    assert_eq!(extra["start_frame"], 1000, "{out}");
    assert_eq!(extra["frame_clear_and_pop"], 1000, "{out}");
    assert_eq!(extra["current_frame_store"], 2000, "{out}");
    assert_eq!(
        v["live_before"], v["live_after"],
        "side table leaks frames: {out}"
    );
}

#[test]
fn plain_calls_and_returns_stay_inline() {
    // With the fast paths, the same 1000 extra inlined calls and returns
    // reach the runtime not once (trampolines::hook_fast).
    let inst = instrumented_312();
    let script = scripts_dir().join("hook_events.py");
    let out = run_ok(&inst.launcher, &[script.to_str().unwrap()], &[], None);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let extra = v["extra"].as_object().expect("object");
    assert!(extra.values().all(|n| n == 0), "{out}");
}

#[test]
fn hooks_run_with_the_coordinate_engine() {
    let inst = instrumented_312();
    let out = run_ok(
        &inst.launcher,
        &[
            "-c",
            "import _retrace; c = _retrace._hook_counts(); print(c['start_frame'] > 0, c['frame_clear_and_pop'] > 0)",
        ],
        &[],
        None,
    );
    assert_eq!(out.trim(), "True True");
}

/// The runtime's state is per process and belongs to the main interpreter:
/// `_retrace` refuses to load in a subinterpreter, isolated (CPython checks
/// the module's `Py_mod_multiple_interpreters` slot) or legacy (the module's
/// own check), even after the main interpreter imported it (multi-phase
/// initialisation: no copy of the main interpreter's module is handed out),
/// instead of sharing type objects and callbacks across interpreters; a
/// subinterpreter's threads leave the main interpreter's probes alone.
#[test]
fn subinterpreters_get_a_clear_import_error() {
    let inst = instrumented_312();
    let script = r#"
import _xxsubinterpreters as interps, threading, retrace
calls = []
retrace.root_space.thread_switch = lambda d, t: calls.append(t)
for isolated in (True, False):
    sub = interps.create(isolated=isolated)
    try:
        interps.run_string(sub, "import _retrace")
    except interps.RunFailedError as e:
        print(str(e))
    interps.run_string(sub, "x = sum(range(100000))")
    interps.destroy(sub)
def work():
    return sum(i for i in range(50000))
ts = [threading.Thread(target=work) for _ in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
retrace.root_space.thread_switch = None
print(len(calls) > 0)
"#;
    let out = run_ok(&inst.launcher, &["-c", script], &[], None);
    assert_eq!(
        out,
        "<class 'ImportError'>: module _retrace does not support loading in subinterpreters\n\
         <class 'ImportError'>: _retrace is only available in the main interpreter \
         (per-interpreter state is not implemented)\nTrue\n"
    );
}

/// Thread states C code creates with `PyThreadState_New` (the function
/// detour) get ids derived from the creating thread's coordinates, in root
/// and in a fresh space (SEMANTICS §9.4), checked against the Python model.
#[test]
fn thread_states_created_by_c_code_derive_their_ids() {
    let inst = instrumented_312();
    let script = scripts_dir().join("thread_state_new.py");
    let out = run_ok(
        &inst.launcher,
        &[script.to_str().expect("utf-8 path")],
        &[],
        None,
    );
    assert_eq!(out, "ok\n");
}
