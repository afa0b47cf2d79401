//! Conformance checklist area A, module shape (SEMANTICS §21 items 1–9): one test
//! per item, each running `python/conformance/area_a_module.py item_N`. Item 1
//! runs on the vanilla interpreter, the others on the instrumented one.

use retrace_tests::conformance::{run_item, run_item_vanilla};

const SCRIPT: &str = "area_a_module.py";

#[test]
fn item_1_vanilla_has_no_modules() {
    run_item_vanilla(SCRIPT, "item_1");
}

#[test]
fn item_2_builtin_and_isolated_import() {
    run_item(SCRIPT, "item_2");
}

#[test]
fn item_3_public_all() {
    run_item(SCRIPT, "item_3");
}

#[test]
fn item_4_public_forbidden_names() {
    run_item(SCRIPT, "item_4");
}

#[test]
fn item_5_low_level_names() {
    run_item(SCRIPT, "item_5");
}

#[test]
fn item_6_thread_handoff_shape() {
    run_item(SCRIPT, "item_6");
}

#[test]
fn item_7_space_handles_and_self() {
    run_item(SCRIPT, "item_7");
}

#[test]
fn item_8_space_id_allocation() {
    run_item(SCRIPT, "item_8");
}

#[test]
fn item_9_space_members() {
    run_item(SCRIPT, "item_9");
}
