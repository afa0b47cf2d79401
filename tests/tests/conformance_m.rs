//! Conformance checklist area M, scheduling scenarios (SEMANTICS §21 items 128–129):
//! one test per item, each running `python/conformance/area_m_scheduling.py item_N`
//! on the instrumented interpreter. Both record thread-switch schedules in fresh
//! coordinate spaces and replay them (`python/retrace_replay.py`); item 129 also
//! runs each scenario in a child interpreter seeded with the scenario name.

use retrace_tests::conformance::run_item;

const SCRIPT: &str = "area_m_scheduling.py";

#[test]
fn item_128_handoff_sequenced_pair_records_and_replays() {
    run_item(SCRIPT, "item_128");
}

#[test]
fn item_129_workloads_record_and_replay() {
    run_item(SCRIPT, "item_129");
}
