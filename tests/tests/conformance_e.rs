//! Conformance checklist area E, thread identities (SEMANTICS §21 items 45–53):
//! one test per item, each running `python/conformance/area_e_threads.py item_N`
//! on the instrumented interpreter (items 45, 46 and 51 start their own child
//! processes with a controlled `RETRACE_ROOT_SEED`).

use retrace_tests::conformance::run_item;

const SCRIPT: &str = "area_e_threads.py";

#[test]
fn item_45_default_main_id() {
    run_item(SCRIPT, "item_45");
}

#[test]
fn item_46_seeded_main_ids() {
    run_item(SCRIPT, "item_46");
}

#[test]
fn item_47_main_id_shape() {
    run_item(SCRIPT, "item_47");
}

#[test]
fn item_48_threading_workers() {
    run_item(SCRIPT, "item_48");
}

#[test]
fn item_49_start_new_thread_result() {
    run_item(SCRIPT, "item_49");
}

#[test]
fn item_50_ids_carry_the_creating_space() {
    run_item(SCRIPT, "item_50");
}

#[test]
fn item_51_seeded_thread_ids_reproduce() {
    run_item(SCRIPT, "item_51");
}

#[test]
fn item_52_set_async_exc_by_retrace_id() {
    run_item(SCRIPT, "item_52");
}

#[test]
fn item_53_ident_surfaces() {
    run_item(SCRIPT, "item_53");
}
