//! Conformance checklist area J, legacy `_retrace.call_at` (SEMANTICS §21 items 98–102):
//! one test per item, each running `python/conformance/area_j_legacy_call_at.py item_N`
//! on the instrumented interpreter (items 98 and 101 arm targets on parked
//! worker threads).

use retrace_tests::conformance::run_item;

const SCRIPT: &str = "area_j_legacy_call_at.py";

#[test]
fn item_98_cross_thread_target_hits() {
    run_item(SCRIPT, "item_98");
}

#[test]
fn item_99_past_target_with_overshoot_is_accepted() {
    run_item(SCRIPT, "item_99");
}

#[test]
fn item_100_argument_errors() {
    run_item(SCRIPT, "item_100");
}

#[test]
fn item_101_owner_only() {
    run_item(SCRIPT, "item_101");
}

#[test]
fn item_102_clear_forms() {
    run_item(SCRIPT, "item_102");
}
