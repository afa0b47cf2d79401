//! The trampolines are on the hot path: per-opcode dispatch counts of known
//! loops, counted inline by the stubs, equal what `dis` predicts after warm-up.

use retrace_tests::{instrumented_312, run_ok, scripts_dir};

#[test]
fn dispatch_counts_match_quickened_bytecode() {
    let inst = instrumented_312();
    let script = scripts_dir().join("dispatch_counts.py");
    // The stubs count their slow path; with it forced every dispatch counts.
    let out = run_ok(
        &inst.launcher,
        &[script.to_str().unwrap()],
        &[("RETRACE_SLOW_PATH", "1")],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json from dispatch_counts.py");
    let obj = v.as_object().expect("object");
    assert_eq!(obj.len(), 3, "three workloads expected: {out}");
    for (name, w) in obj {
        let predicted = &w["predicted_ops"];
        let measured = &w["measured_ops"];
        let p = predicted.as_object().unwrap();
        assert!(!p.is_empty(), "{name}: empty prediction");
        // Every predicted opcode is dispatched exactly that many times per iteration,
        // and nothing else is dispatched per iteration.
        let m: std::collections::BTreeMap<String, f64> = measured
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
            .collect();
        let pm: std::collections::BTreeMap<String, f64> = p
            .iter()
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
            .collect();
        assert_eq!(
            m, pm,
            "{name}: measured per-iteration dispatches differ from dis (adaptive=True): {}",
            w["predicted"]
        );
    }
}
