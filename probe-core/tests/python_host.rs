//! End-to-end checks of the runtime inside real interpreters: the builtin
//! `_retrace`, the frozen `retrace`, the environment switches, and that a
//! vanilla process is left untouched. No rewritten libpython is needed: the
//! runtime is preloaded, with `RETRACE_RT_STANDALONE=1` where a descriptor
//! is required.

mod common;

use common::{expect_ok, interpreters, required_312, run, runtime_library, Interpreter};
use std::process::Command;

const STANDALONE: (&str, &str) = ("RETRACE_RT_STANDALONE", "1");

/// 3.12 (required) and 3.11 (if installed): the versions with frozen `retrace`.
fn frozen_capable() -> Vec<Interpreter> {
    let mut all = vec![required_312()];
    all.extend(interpreters((3, 11)).into_iter().take(1));
    all
}

#[test]
fn standalone_registers_builtin_and_frozen_modules() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for interp in frozen_capable() {
        let out = run(
            &interp,
            tmp.path(),
            &[STANDALONE],
            &[
                "-I",
                "-S",
                "-c",
                "import _retrace, retrace, sys; \
                 assert '_retrace' in sys.builtin_module_names; \
                 assert 'retrace' not in sys.builtin_module_names; \
                 import importlib.util as u; \
                 print(u.find_spec('_retrace').origin, u.find_spec('retrace').origin)",
            ],
        );
        assert_eq!(
            expect_ok(&interp, &out).trim(),
            "built-in frozen",
            "{interp:?}"
        );
    }
}

#[test]
fn module_functions_report_the_standalone_state() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = r#"
import _retrace, retrace
assert all(hasattr(retrace, n) for n in retrace.__all__), retrace.__all__
# Without a rewritten libpython there is no coordinate engine.
try:
    retrace.coordinates()
except RuntimeError:
    pass
else:
    raise AssertionError("coordinates() without an engine")
assert retrace.__doc__.startswith("retrace:"), retrace.__doc__
assert "retrace runtime" in _retrace.__doc__
assert _retrace._dispatch_counts() == {}
assert _retrace._slow_path_counts() == {}
assert _retrace._reset_dispatch_counts() is None
assert _retrace._live_frames() == 0
hooks = _retrace._hook_counts()
assert sorted(hooks) == sorted(["eval_entry", "start_frame", "throw_entry", "eval_breaker",
    "current_frame_store", "frame_clear_and_pop", "thread_state_pop_frame", "frame_copy"]), hooks
assert set(hooks.values()) == {0}
d = _retrace._descriptor()
assert d["standalone"] is True and d["frozen_retrace"] is True, d
assert d["py_version_hex"] == 0 and d["hook_count"] == 0 and d["hooks"] == [], d
assert d["input_sha256"] == "0" * 64, d
assert d["registers"] == dict.fromkeys(
    ["frame", "next_instr", "stack_pointer", "oparg", "opcode", "tstate"]), d
assert (d["slow_path"], d["hooks_enabled"]) == (0, 0), d
public = {n for n in dir(_retrace) if not n.startswith("_")}
assert public == {"allocate_space_id", "coordinates", "disable", "enable", "exclude", "hash",
    "include", "run_in_space", "thread_delta", "with_new_coordinates", "wrap_for_space",
    "set_thread_switch_callback", "get_thread_switch_callback", "call_at", "call_at_current",
    "completion_at", "ThreadHandoff", "SpaceDispatch"}, public
print("ok")
"#;
    for interp in frozen_capable() {
        let out = run(
            &interp,
            tmp.path(),
            &[STANDALONE],
            &["-I", "-S", "-c", script],
        );
        assert_eq!(expect_ok(&interp, &out).trim(), "ok", "{interp:?}");
    }
}

#[test]
fn environment_switches_reach_the_descriptor() {
    let interp = required_312();
    let tmp = tempfile::tempdir().expect("tempdir");
    let probe =
        "import _retrace; d = _retrace._descriptor(); print(d['slow_path'], d['hooks_enabled'])";
    let on = run(
        &interp,
        tmp.path(),
        &[
            STANDALONE,
            ("RETRACE_HOOKS", "1"),
            ("RETRACE_SLOW_PATH", "1"),
        ],
        &["-I", "-c", probe],
    );
    assert_eq!(expect_ok(&interp, &on).trim(), format!("1 {}", u64::MAX));
    let off = run(
        &interp,
        tmp.path(),
        &[
            STANDALONE,
            ("RETRACE_HOOKS", "yes"),
            ("RETRACE_SLOW_PATH", "0"),
        ],
        &["-I", "-c", probe],
    );
    assert_eq!(expect_ok(&interp, &off).trim(), "0 0");
}

#[test]
fn frozen_retrace_wins_over_a_decoy_on_sys_path() {
    let decoy = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        decoy.path().join("retrace.py"),
        "raise SystemExit('decoy retrace.py was imported')\n",
    )
    .expect("write decoy");
    let decoy_dir = decoy.path().to_str().expect("utf-8 temp path");
    let check = "import retrace; print(retrace.__spec__.origin, 'coordinates' in retrace.__all__)";
    for interp in frozen_capable() {
        // The decoy is in the working directory ('' on sys.path) and on PYTHONPATH,
        // with frozen stdlib modules on and off.
        for frozen in ["-Xfrozen_modules=on", "-Xfrozen_modules=off"] {
            let out = run(
                &interp,
                decoy.path(),
                &[STANDALONE, ("PYTHONPATH", decoy_dir)],
                &[frozen, "-c", check],
            );
            assert_eq!(
                expect_ok(&interp, &out).trim(),
                "frozen True",
                "{interp:?} {frozen}"
            );
        }
        // Control: without the runtime's switch the decoy is what gets imported,
        // so the check above is meaningful.
        let out = run(&interp, decoy.path(), &[], &["-c", "import retrace"]);
        assert!(!out.status.success(), "{interp:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("decoy retrace.py"));
    }
}

#[test]
fn a_vanilla_process_is_left_untouched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = "import sys, importlib.util as u; \
                  assert '_retrace' not in sys.builtin_module_names; \
                  assert u.find_spec('_retrace') is None and u.find_spec('retrace') is None; \
                  print(sum(i * i for i in range(1000)))";
    let mut all = vec![required_312()];
    all.extend(interpreters((3, 11)).into_iter().take(1));
    all.extend(interpreters((3, 13)).into_iter().take(1));
    for interp in all {
        let out = run(&interp, tmp.path(), &[], &["-I", "-S", "-c", script]);
        assert_eq!(expect_ok(&interp, &out).trim(), "332833500", "{interp:?}");
    }
}

#[test]
fn on_313_only_the_builtin_module_is_registered() {
    // 3.13 dropped `get_code` from `struct _frozen`; the runtime must not
    // write a 3.12-layout table there.
    let Some(interp) = interpreters((3, 13)).into_iter().next() else {
        eprintln!("no CPython 3.13 installed: skipping the 3.13 check");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = "import sys, _retrace, importlib.util as u; \
                  assert '_retrace' in sys.builtin_module_names; \
                  assert u.find_spec('retrace') is None; \
                  print(_retrace._descriptor()['frozen_retrace'])";
    let out = run(
        &interp,
        tmp.path(),
        &[STANDALONE],
        &["-I", "-S", "-c", script],
    );
    assert_eq!(expect_ok(&interp, &out).trim(), "False");
}

#[test]
fn runtime_does_not_link_libpython() {
    let lib = runtime_library();
    let readelf = |arg: &str| {
        let out = Command::new("readelf")
            .args([arg, "-W"])
            .arg(&lib)
            .output()
            .expect("readelf (binutils) is needed for this test");
        assert!(out.status.success(), "readelf {arg} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dynamic = readelf("-d");
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(!needed.is_empty(), "no NEEDED entries parsed:\n{dynamic}");
    assert!(
        needed.iter().all(|l| !l.contains("libpython")),
        "runtime links libpython: {needed:?}"
    );
    // It does use the C API: the symbols stay undefined, for the loaded libpython.
    let symbols = readelf("--dyn-syms");
    for sym in [
        "PyImport_AppendInittab",
        "PyImport_FrozenModules",
        "Py_Version",
    ] {
        assert!(
            symbols
                .lines()
                .any(|l| l.contains(" UND ") && l.ends_with(sym)),
            "{sym} is not an undefined dynamic symbol"
        );
    }
    assert!(dynamic.contains("(INIT_ARRAY)"), "no constructor array");
}
