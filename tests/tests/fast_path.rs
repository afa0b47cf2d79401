//! The stubs' and hooks' inline fast paths are a cache of what the runtime
//! computes: a transcript of coordinates, deltas and location hashes across
//! calls, returns, generators, coroutines, exceptions, callbacks from C and
//! spaces is identical with them on (`RETRACE_SLOW_PATH=0`) and off (`=1`).

use retrace_tests::{instrumented_312, run, scripts_dir};

#[test]
fn fast_paths_change_no_coordinate() {
    let inst = instrumented_312();
    let script = scripts_dir().join("fast_slow_transcript.py");
    let script = script.to_str().expect("utf-8 path");
    let transcript = |mode: &str| {
        let out = run(
            &inst.launcher,
            &[script],
            &[("RETRACE_SLOW_PATH", mode)],
            None,
        );
        assert!(
            out.status.success(),
            "RETRACE_SLOW_PATH={mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let fast = transcript("0");
    let slow = transcript("1");
    assert!(fast.len() > 1000, "transcript too short: {fast}");
    assert_eq!(fast, slow, "fast and slow paths disagree");
}

/// Thread-switch deltas and call_at checks see the activations the fast paths
/// made, and the boundary procedure keeps its order around a raising call_at
/// callback and a completing thread (regressions: a switch delta missing the
/// previous thread's inline callees; a target inside inline callees
/// overshot; a switch lost when a call_at callback raised; the completion
/// sentinel delivered to the completing thread's own clear-time code), with
/// the same output with the fast paths on and off.
#[test]
fn scheduling_probes_see_fast_path_activations() {
    let inst = instrumented_312();
    let script = scripts_dir().join("scheduling_fast_paths.py");
    let script = script.to_str().expect("utf-8 path");
    let output = |mode: &str| {
        let out = run(
            &inst.launcher,
            &[script],
            &[("RETRACE_SLOW_PATH", mode)],
            None,
        );
        assert!(
            out.status.success(),
            "RETRACE_SLOW_PATH={mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let fast = output("0");
    assert_eq!(fast.lines().count(), 4, "{fast}");
    assert_eq!(fast, output("1"), "fast and slow paths disagree");
}
