//! Conformance checklist area H, thread-switch callbacks (SEMANTICS §21 items 63–79):
//! one test per item, each running `python/conformance/area_h_switch.py item_N`
//! on the instrumented interpreter (scenarios are sequenced with `ThreadHandoff`
//! or busy workers under a small switch interval).

use retrace_tests::conformance::run_item;

const SCRIPT: &str = "area_h_switch.py";

#[test]
fn item_63_root_registration() {
    run_item(SCRIPT, "item_63");
}

#[test]
fn item_64_space_registration() {
    run_item(SCRIPT, "item_64");
}

#[test]
fn item_65_registration_errors_and_raw_storage() {
    run_item(SCRIPT, "item_65");
}

#[test]
fn item_66_callbacks_between_busy_workers() {
    run_item(SCRIPT, "item_66");
}

#[test]
fn item_67_queries_inside_a_switch_callback() {
    run_item(SCRIPT, "item_67");
}

#[test]
fn item_68_callbacks_filtered_by_space() {
    run_item(SCRIPT, "item_68");
}

#[test]
fn item_69_single_thread_in_space_gets_no_callback() {
    run_item(SCRIPT, "item_69");
}

#[test]
fn item_70_callback_reports_the_previous_space_thread() {
    run_item(SCRIPT, "item_70");
}

#[test]
fn item_71_return_to_the_same_space_thread() {
    run_item(SCRIPT, "item_71");
}

#[test]
fn item_72_completed_thread_gives_none() {
    run_item(SCRIPT, "item_72");
}

#[test]
fn item_73_space_callback_across_a_worker_lifetime() {
    run_item(SCRIPT, "item_73");
}

#[test]
fn item_74_switch_precedes_the_worker_body() {
    run_item(SCRIPT, "item_74");
}

#[test]
fn item_75_thread_pool_worker() {
    run_item(SCRIPT, "item_75");
}

#[test]
fn item_76_callback_exceptions_and_results() {
    run_item(SCRIPT, "item_76");
}

#[test]
fn item_77_delta_is_the_previous_threads_thread_delta() {
    run_item(SCRIPT, "item_77");
}

#[test]
fn item_78_ids_are_known_thread_ids() {
    run_item(SCRIPT, "item_78");
}

#[test]
fn item_79_first_boundary_decides() {
    run_item(SCRIPT, "item_79");
}
