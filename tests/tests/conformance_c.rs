//! Conformance checklist area C, spaces and wrappers (SEMANTICS §21 items 24–36):
//! one test per item, each running `python/conformance/area_c_spaces.py item_N`
//! on the instrumented interpreter (item 31 starts its own fresh child process).

use retrace_tests::conformance::run_item;

const SCRIPT: &str = "area_c_spaces.py";

#[test]
fn item_24_excluded_function_sees_caller() {
    run_item(SCRIPT, "item_24");
}

#[test]
fn item_25_include_from_excluded() {
    run_item(SCRIPT, "item_25");
}

#[test]
fn item_26_low_level_exclude_wrapper() {
    run_item(SCRIPT, "item_26");
}

#[test]
fn item_27_wrappers_as_methods() {
    run_item(SCRIPT, "item_27");
}

#[test]
fn item_28_exceptions_propagate() {
    run_item(SCRIPT, "item_28");
}

#[test]
fn item_29_run_in_space() {
    run_item(SCRIPT, "item_29");
}

#[test]
fn item_30_same_leaf_twice() {
    run_item(SCRIPT, "item_30");
}

#[test]
fn item_31_disabled_space_in_fresh_process() {
    run_item(SCRIPT, "item_31");
}

#[test]
fn item_32_space_wrap() {
    run_item(SCRIPT, "item_32");
}

#[test]
fn item_33_argument_errors() {
    run_item(SCRIPT, "item_33");
}

#[test]
fn item_34_wrapper_reprs() {
    run_item(SCRIPT, "item_34");
}

#[test]
fn item_35_with_new_coordinates_thread_ids() {
    run_item(SCRIPT, "item_35");
}

#[test]
fn item_36_fresh_space_runs_reproduce() {
    run_item(SCRIPT, "item_36");
}
