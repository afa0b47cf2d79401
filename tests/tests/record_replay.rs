//! Record/replay scenario (`python/record_replay.py`): the thread-switch schedule
//! of a multi-threaded workload (queues, locks, conditions, a thread pool, an
//! asyncio loop fed with `run_coroutine_threadsafe`) is recorded with
//! `space.thread_switch` in a fresh coordinate space and replayed in another one
//! with `space.call_at` + `ThreadHandoff`; the replayed event order must equal
//! the recorded one, 20 rounds in a row. Every wait in the script is bounded and
//! a watchdog ends a hung run, so a broken runtime fails instead of hanging.

use retrace_tests::{instrumented_312, run, scripts_dir};

fn record_replay(rounds: u32, env: &[(&str, &str)]) {
    let inst = instrumented_312();
    let script = scripts_dir().join("record_replay.py");
    let script = script.to_str().expect("utf-8 path");
    let rounds = rounds.to_string();
    let out = run(&inst.launcher, &[script, &rounds, "combined"], env, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.lines().any(|l| l.starts_with("PASS record_replay")),
        "record_replay.py {rounds} {env:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

#[test]
fn recorded_schedules_replay_exactly_20_rounds() {
    record_replay(20, &[]);
}

/// The same with every dispatch through the runtime (`RETRACE_SLOW_PATH=1`):
/// separates the replay method from the inline fast paths.
#[test]
fn recorded_schedules_replay_exactly_slow_paths() {
    record_replay(5, &[("RETRACE_SLOW_PATH", "1")]);
}
