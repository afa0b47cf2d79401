//! Conformance checklist area G, identity hashes (SEMANTICS §21 items 59–62):
//! one test per item, each running `python/conformance/area_g_identity.py item_N`
//! on the instrumented interpreter.

use retrace_tests::conformance::run_item;

const SCRIPT: &str = "area_g_identity.py";

#[test]
fn item_59_identity_hashes_reproduce_across_processes() {
    run_item(SCRIPT, "item_59");
}

#[test]
fn item_60_hash_is_stable() {
    run_item(SCRIPT, "item_60");
}

#[test]
fn item_61_same_boundary_collides() {
    run_item(SCRIPT, "item_61");
}

#[test]
fn item_62_hash_is_not_the_pointer_hash() {
    run_item(SCRIPT, "item_62");
}
