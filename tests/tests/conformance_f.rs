//! Conformance checklist area F, deltas and hashes (SEMANTICS §21 items 54–58):
//! one test per item, each running `python/conformance/area_f_deltas.py item_N`
//! on the instrumented interpreter.

use retrace_tests::conformance::run_item;

const SCRIPT: &str = "area_f_deltas.py";

#[test]
fn item_54_delta_stream_rebuilds_the_stack() {
    run_item(SCRIPT, "item_54");
}

#[test]
fn item_55_deltas_on_two_threads() {
    run_item(SCRIPT, "item_55");
}

#[test]
fn item_56_unused_space_gives_none() {
    run_item(SCRIPT, "item_56");
}

#[test]
fn item_57_hash_values() {
    run_item(SCRIPT, "item_57");
}

#[test]
fn item_58_location_hash_model() {
    run_item(SCRIPT, "item_58");
}
