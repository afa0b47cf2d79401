//! Conformance checklist area I, public call_at for the current thread
//! (SEMANTICS §21 items 80–97): one test per item, each running
//! `python/conformance/area_i_call_at.py item_N` on the instrumented interpreter
//! (completion targets run on worker threads; item 91 starts a child interpreter).

use retrace_tests::conformance::run_item;

const SCRIPT: &str = "area_i_call_at.py";

#[test]
fn item_80_arm_runs_the_overshoot_once() {
    run_item(SCRIPT, "item_80");
}

#[test]
fn item_81_past_target_is_rejected() {
    run_item(SCRIPT, "item_81");
}

#[test]
fn item_82_every_attempt_has_one_outcome() {
    run_item(SCRIPT, "item_82");
}

#[test]
fn item_83_clearing_before_the_boundary() {
    run_item(SCRIPT, "item_83");
}

#[test]
fn item_84_rearming_replaces() {
    run_item(SCRIPT, "item_84");
}

#[test]
fn item_85_far_target_is_not_met_on_other_threads() {
    run_item(SCRIPT, "item_85");
}

#[test]
fn item_86_completion_target() {
    run_item(SCRIPT, "item_86");
}

#[test]
fn item_87_completion_argument_errors() {
    run_item(SCRIPT, "item_87");
}

#[test]
fn item_88_completion_and_coordinate_targets_share_the_slot() {
    run_item(SCRIPT, "item_88");
}

#[test]
fn item_89_cleared_completion_target() {
    run_item(SCRIPT, "item_89");
}

#[test]
fn item_90_completion_exception_is_unraisable() {
    run_item(SCRIPT, "item_90");
}

#[test]
fn item_91_main_thread_never_completes() {
    run_item(SCRIPT, "item_91");
}

#[test]
fn item_92_callback_exception_propagates_into_the_target() {
    run_item(SCRIPT, "item_92");
}

#[test]
fn item_93_argument_errors() {
    run_item(SCRIPT, "item_93");
}

#[test]
fn item_94_root_and_space_slots_are_independent() {
    run_item(SCRIPT, "item_94");
}

#[test]
fn item_95_unused_space() {
    run_item(SCRIPT, "item_95");
}

#[test]
fn item_96_rearming_the_current_boundary_inside_a_hit() {
    run_item(SCRIPT, "item_96");
}

#[test]
fn item_97_low_level_entry_points() {
    run_item(SCRIPT, "item_97");
}
