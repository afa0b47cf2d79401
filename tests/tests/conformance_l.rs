//! Conformance checklist area L, space-filtered dispatch (SEMANTICS §21 items
//! 113–127, §17): one test per item, each running
//! `python/conformance/area_l_dispatch.py item_N` on the instrumented 3.12
//! interpreter. Item 113 is the 3.11 proxy shape; the suite runs 3.12 only,
//! where the script checks the same entry points in their 3.12 form.

use retrace_tests::conformance::run_item;

const SCRIPT: &str = "area_l_dispatch.py";

#[test]
fn item_113_monitoring_proxy_shape() {
    run_item(SCRIPT, "item_113");
}

#[test]
fn item_114_root_monitoring_filters() {
    run_item(SCRIPT, "item_114");
}

#[test]
fn item_115_disabled_monitoring_filters() {
    run_item(SCRIPT, "item_115");
}

#[test]
fn item_116_callback_target_space() {
    run_item(SCRIPT, "item_116");
}

#[test]
fn item_117_register_returns_previous() {
    run_item(SCRIPT, "item_117");
}

#[test]
fn item_118_disable_passes_through() {
    run_item(SCRIPT, "item_118");
}

#[test]
fn item_119_transparent_source_is_none() {
    run_item(SCRIPT, "item_119");
}

#[test]
fn item_120_register_errors() {
    run_item(SCRIPT, "item_120");
}

#[test]
fn item_121_free_tool_id_drops_cases() {
    run_item(SCRIPT, "item_121");
}

#[test]
fn item_122_settrace_filters_calls() {
    run_item(SCRIPT, "item_122");
}

#[test]
fn item_123_local_trace_functions() {
    run_item(SCRIPT, "item_123");
}

#[test]
fn item_124_foreign_trace_replaced() {
    run_item(SCRIPT, "item_124");
}

#[test]
fn item_125_two_spaces_one_hook() {
    run_item(SCRIPT, "item_125");
}

#[test]
fn item_126_setprofile_filters() {
    run_item(SCRIPT, "item_126");
}

#[test]
fn item_127_low_level_dispatch() {
    run_item(SCRIPT, "item_127");
}
