//! Conformance checklist area K, ThreadHandoff (SEMANTICS §21 items 103–112):
//! one test per item, each running `python/conformance/area_k_handoff.py item_N`
//! on the instrumented interpreter.

use retrace_tests::conformance::run_item;

const SCRIPT: &str = "area_k_handoff.py";

#[test]
fn item_103_to_self_returns_at_once() {
    run_item(SCRIPT, "item_103");
}

#[test]
fn item_104_argument_errors() {
    run_item(SCRIPT, "item_104");
}

#[test]
fn item_105_closed_handoff() {
    run_item(SCRIPT, "item_105");
}

#[test]
fn item_106_zero_timeout_times_out() {
    run_item(SCRIPT, "item_106");
}

#[test]
fn item_107_start_parks_until_transfer() {
    run_item(SCRIPT, "item_107");
}

#[test]
fn item_108_pending_transfer_makes_start_return_at_once() {
    run_item(SCRIPT, "item_108");
}

#[test]
fn item_109_close_releases_parked_calls() {
    run_item(SCRIPT, "item_109");
}

#[test]
fn item_110_round_trip() {
    run_item(SCRIPT, "item_110");
}

#[test]
fn item_111_transfer_to_running_thread() {
    run_item(SCRIPT, "item_111");
}

#[test]
fn item_112_strict_alternation() {
    run_item(SCRIPT, "item_112");
}
