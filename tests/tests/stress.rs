//! Stress (`python/stress_switch.py`): 16 threads switching under a registered
//! root-space switch callback, short form (2 s: 1 s with a C-level callback whose
//! every invocation is checked against the thread changes the workers observe,
//! 1 s with a Python callback). No crash, no hang (watchdog), no lost callback,
//! callbacks keep arriving, all workers finish. The 10 s form is
//! `scripts/stress_switch.sh`.

use retrace_tests::{instrumented_312, run, scripts_dir};

#[test]
fn sixteen_threads_switching_under_a_root_callback() {
    let inst = instrumented_312();
    let script = scripts_dir().join("stress_switch.py");
    let script = script.to_str().expect("utf-8 path");
    let out = run(&inst.launcher, &[script, "2", "16"], &[], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.lines().any(|l| l.starts_with("PASS stress_switch")),
        "stress_switch.py 2 16 failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}
