//! Conformance checklist area D, transparency (SEMANTICS §21 items 37–44):
//! one test per item, each running `python/conformance/area_d_transparency.py item_N`
//! on the instrumented interpreter (items 38, 40 and 43 run their checks on a
//! fresh worker thread).

use retrace_tests::conformance::run_item;

const SCRIPT: &str = "area_d_transparency.py";

#[test]
fn item_37_callback_sees_the_pinned_boundary() {
    run_item(SCRIPT, "item_37");
}

#[test]
fn item_38_first_root_delta_in_a_callback() {
    run_item(SCRIPT, "item_38");
}

#[test]
fn item_39_callback_generator_stays_transparent() {
    run_item(SCRIPT, "item_39");
}

#[test]
fn item_40_disabled_space_in_a_callback_of_a_fresh_worker() {
    run_item(SCRIPT, "item_40");
}

#[test]
fn item_41_other_space_entered_from_a_callback() {
    run_item(SCRIPT, "item_41");
}

#[test]
fn item_42_include_inside_a_callback() {
    run_item(SCRIPT, "item_42");
}

#[test]
fn item_43_thread_started_in_a_callback() {
    run_item(SCRIPT, "item_43");
}

#[test]
fn item_44_identity_hash_in_a_callback() {
    run_item(SCRIPT, "item_44");
}
