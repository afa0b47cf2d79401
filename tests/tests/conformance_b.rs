//! Conformance checklist area B, coordinates (SEMANTICS §21 items 10–23): one
//! test per item, each running `python/conformance/area_b_coordinates.py item_N`
//! on the instrumented interpreter.

use retrace_tests::conformance::run_item;

const SCRIPT: &str = "area_b_coordinates.py";

#[test]
fn item_10_module_level_tuple() {
    run_item(SCRIPT, "item_10");
}

#[test]
fn item_11_consecutive_samples() {
    run_item(SCRIPT, "item_11");
}

#[test]
fn item_12_public_query_adds_no_frame() {
    run_item(SCRIPT, "item_12");
}

#[test]
fn item_13_drop() {
    run_item(SCRIPT, "item_13");
}

#[test]
fn item_14_thread_id_errors() {
    run_item(SCRIPT, "item_14");
}

#[test]
fn item_15_nested_call_lengths() {
    run_item(SCRIPT, "item_15");
}

#[test]
fn item_16_comprehension_samples_distinct() {
    run_item(SCRIPT, "item_16");
}

#[test]
fn item_17_loop_strictly_increasing() {
    run_item(SCRIPT, "item_17");
}

#[test]
fn item_18_map_ordinals() {
    run_item(SCRIPT, "item_18");
}

#[test]
fn item_19_sorted_key_and_after_map() {
    run_item(SCRIPT, "item_19");
}

#[test]
fn item_20_generator_prologue_bumps() {
    run_item(SCRIPT, "item_20");
}

#[test]
fn item_21_generator_resumes_bump() {
    run_item(SCRIPT, "item_21");
}

#[test]
fn item_22_space_before_and_after_use() {
    run_item(SCRIPT, "item_22");
}

#[test]
fn item_23_threads_get_well_formed_tuples() {
    run_item(SCRIPT, "item_23");
}
