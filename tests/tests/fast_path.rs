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
