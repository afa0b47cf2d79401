//! Unit tests of the scheduling registry against SEMANTICS §13.2, §14.6, §15.

use super::*;
use crate::engine::ThreadKey;

const A: ThreadKey = ThreadKey(0xa000);
const B: ThreadKey = ThreadKey(0xb000);
const C: ThreadKey = ThreadKey(0xc000);

fn coord(owner: u64, target: &[u64], hit: Callback, miss: Option<Callback>) -> SlotContent {
    SlotContent::Coordinate {
        owner,
        target: target.to_vec(),
        hit,
        miss,
    }
}

#[test]
fn comparison_follows_the_vector_order() {
    assert_eq!(compare_target(&[1, 2], &[1, 2]), TargetOrder::Hit);
    assert_eq!(compare_target(&[1, 3], &[1, 2]), TargetOrder::NotReached);
    assert_eq!(compare_target(&[1, 1], &[1, 2]), TargetOrder::Passed);
    // A deeper target with a matching prefix is not reached.
    assert_eq!(
        compare_target(&[1, 2, 0, 0], &[1, 2]),
        TargetOrder::NotReached
    );
    // A strict prefix of the current vector is passed.
    assert_eq!(compare_target(&[1, 2], &[1, 2, 5, 0]), TargetOrder::Passed);
}

#[test]
fn hit_runs_the_hit_callback_once_and_releases_the_overshoot() {
    let mut r = Registry::default();
    assert!(r.arm(0, coord(7, &[10, 0], 100, Some(101))).is_empty());
    assert!(r.coordinate_armed_for(7));
    assert!(!r.coordinate_armed_for(8));
    // Another thread's boundary never consumes the target.
    assert_eq!(r.check_call_at(8, |_| Some(vec![10, 0])), (None, vec![]));
    assert_eq!(r.check_call_at(7, |_| Some(vec![9, 0])), (None, vec![]));
    let (fire, released) = r.check_call_at(7, |_| Some(vec![10, 0]));
    assert_eq!(
        fire,
        Some(CallAtFire {
            callback: 100,
            hit: true
        })
    );
    assert_eq!(released, vec![101]);
    assert!(!r.coordinate_armed());
    assert_eq!(r.check_call_at(7, |_| Some(vec![10, 0])), (None, vec![]));
}

#[test]
fn overshoot_without_callback_expires_silently_and_the_next_slot_may_fire() {
    let mut r = Registry::default();
    r.arm(0, coord(7, &[1, 0], 100, None));
    r.arm(5, coord(7, &[3, 0], 200, Some(201)));
    let (fire, released) = r.check_call_at(7, |space| {
        Some(if space == 0 { vec![2, 0] } else { vec![4, 0] })
    });
    assert_eq!(
        fire,
        Some(CallAtFire {
            callback: 201,
            hit: false
        })
    );
    assert_eq!(released, vec![100, 200]);
    assert!(r.slot(5).is_none(), "the emptied entry is pruned");
}

#[test]
fn an_unseen_space_clears_the_slot() {
    let mut r = Registry::default();
    r.arm(9, coord(7, &[1, 0], 100, Some(101)));
    assert_eq!(r.check_call_at(7, |_| None), (None, vec![100, 101]));
    assert!(!r.coordinate_armed());
}

#[test]
fn arming_replaces_whatever_the_slot_held() {
    let mut r = Registry::default();
    r.arm(0, SlotContent::Completion { owner: 7, done: 1 });
    assert_eq!(r.arm(0, coord(8, &[1, 0], 2, Some(3))), vec![1]);
    assert_eq!(r.clear_slot(0), vec![2, 3]);
    assert_eq!(r.clear_slot(0), Vec::<Callback>::new());
    assert_eq!(r.clear_slot(4), Vec::<Callback>::new());
}

#[test]
fn switch_registration_sets_the_cursor_and_clearing_prunes() {
    let mut r = Registry::default();
    assert!(r.set_switch_callback(3, Some(50), Some(A)).is_empty());
    assert_eq!(r.switch_callback(3), Some(50));
    assert_eq!(r.set_switch_callback(3, Some(51), None), vec![50]);
    assert_eq!(r.set_switch_callback(3, None, None), vec![51]);
    assert_eq!(r.switch_callback(3), None);
    assert!(!r.any_switch_callback());
    assert!(r.set_switch_callback(3, None, None).is_empty());
}

fn no_delta(_: ThreadKey, _: u32) -> Result<Option<Vec<u64>>, ()> {
    panic!("no delta expected")
}

#[test]
fn first_observation_is_silent_then_changes_deliver_the_previous_delta() {
    let mut r = Registry::default();
    r.set_switch_callback(0, Some(50), None);
    // No last thread yet: nothing, even with a callback.
    assert_eq!(
        r.plan_switch(A, Some(0), no_delta),
        SwitchPlan::Changed(SwitchDecision::Nothing)
    );
    r.finish_switch(A);
    assert_eq!(r.plan_switch(A, Some(0), no_delta), SwitchPlan::Same);
    // B: the cursor was none → initialised silently.
    assert_eq!(
        r.plan_switch(B, Some(0), no_delta),
        SwitchPlan::Changed(SwitchDecision::Nothing)
    );
    r.finish_switch(B);
    // A again: B's delta is reported on A.
    let plan = r.plan_switch(A, Some(0), |t, s| {
        assert_eq!((t, s), (B, 0));
        Ok(Some(vec![2, 9]))
    });
    assert_eq!(
        plan,
        SwitchPlan::Changed(SwitchDecision::Invoke {
            callback: 50,
            previous_delta: Some(vec![2, 9])
        })
    );
    r.finish_switch(A);
}

#[test]
fn other_spaces_and_invisible_boundaries_are_not_examined() {
    let mut r = Registry::default();
    r.set_switch_callback(4, Some(50), Some(A));
    r.finish_switch(A);
    // B runs in root: S's cursor stays on A.
    assert_eq!(
        r.plan_switch(B, Some(0), no_delta),
        SwitchPlan::Changed(SwitchDecision::Nothing)
    );
    r.finish_switch(B);
    assert_eq!(
        r.plan_switch(A, None, no_delta),
        SwitchPlan::Changed(SwitchDecision::Nothing)
    );
    r.finish_switch(A);
    // A in S again: same thread as the cursor, nothing consumed.
    r.finish_switch(B);
    assert_eq!(
        r.plan_switch(A, Some(4), no_delta),
        SwitchPlan::Changed(SwitchDecision::Nothing)
    );
    r.finish_switch(A);
    // C in S: one callback with A's delta.
    r.finish_switch(B);
    let plan = r.plan_switch(C, Some(4), |t, _| {
        assert_eq!(t, A);
        Ok(Some(vec![0, 1, 0]))
    });
    assert!(matches!(
        plan,
        SwitchPlan::Changed(SwitchDecision::Invoke { .. })
    ));
}

#[test]
fn a_failed_delta_is_unraisable_and_keeps_the_cursor() {
    let mut r = Registry::default();
    r.set_switch_callback(0, Some(50), Some(A));
    r.finish_switch(A);
    assert_eq!(
        r.plan_switch(B, Some(0), |_, _| Err(())),
        SwitchPlan::Changed(SwitchDecision::Unraisable { callback: 50 })
    );
    r.finish_switch(B);
    // The cursor still names A: C gets A's delta.
    let plan = r.plan_switch(C, Some(0), |t, _| {
        assert_eq!(t, A);
        Ok(Some(vec![0]))
    });
    assert!(matches!(
        plan,
        SwitchPlan::Changed(SwitchDecision::Invoke { .. })
    ));
}

#[test]
fn natural_completion_marks_the_sentinel_and_runs_completion_targets() {
    let mut r = Registry::default();
    r.set_switch_callback(0, Some(50), Some(A));
    r.arm(
        0,
        SlotContent::Completion {
            owner: 0xa1,
            done: 60,
        },
    );
    r.arm(
        6,
        SlotContent::Completion {
            owner: 0xa1,
            done: 61,
        },
    );
    r.arm(
        7,
        SlotContent::Completion {
            owner: 0xb1,
            done: 62,
        },
    );
    r.finish_switch(A);
    let done = r.complete(A, 0xa1);
    assert_eq!(done.callbacks, vec![60, 61]);
    assert_eq!(r.last_thread(), None);
    // The next visible thread gets the sentinel, once.
    assert_eq!(
        r.plan_switch(B, Some(0), no_delta),
        SwitchPlan::Changed(SwitchDecision::Invoke {
            callback: 50,
            previous_delta: None
        })
    );
    r.finish_switch(B);
    assert_eq!(r.plan_switch(B, Some(0), no_delta), SwitchPlan::Same);
    // The other thread's completion target is untouched.
    assert!(matches!(
        r.slot(7),
        Some(SlotContent::Completion { owner: 0xb1, .. })
    ));
}

#[test]
fn a_delta_of_none_moves_the_cursor_without_a_callback() {
    let mut r = Registry::default();
    r.set_switch_callback(0, Some(50), Some(A));
    r.finish_switch(A);
    assert_eq!(
        r.plan_switch(B, Some(0), |_, _| Ok(None)),
        SwitchPlan::Changed(SwitchDecision::Nothing)
    );
    r.finish_switch(B);
    assert_eq!(
        r.plan_switch(A, Some(0), |t, _| {
            assert_eq!(t, B);
            Ok(Some(vec![0]))
        }),
        SwitchPlan::Changed(SwitchDecision::Invoke {
            callback: 50,
            previous_delta: Some(vec![0])
        })
    );
}

#[test]
fn forgetting_a_thread_resets_its_cursor_silently() {
    let mut r = Registry::default();
    r.set_switch_callback(0, Some(50), Some(A));
    r.finish_switch(A);
    r.forget_thread(A);
    assert_eq!(r.last_thread(), None);
    // No last thread and no pending completion: nothing.
    assert_eq!(
        r.plan_switch(B, Some(0), no_delta),
        SwitchPlan::Changed(SwitchDecision::Nothing)
    );
}
