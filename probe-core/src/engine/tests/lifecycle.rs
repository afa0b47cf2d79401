//! Rule-level tests of activation, deactivation, transparency, spaces and
//! the start_frame fix.

use super::sim::{Sim, T1, T2};
use crate::engine::{
    EngineError, FrameKey, Slot, ThreadKey, DISABLED_SPACE, MEMO_INSTR_UNSET, MEMO_ORD_UNSET,
    ROOT_SPACE,
};

#[test]
fn initial_records_match_section_3() {
    let mut s = Sim::new();
    let f = s.call(T1);
    let state = s.engine.frame(f).cloned().expect("tracked");
    assert_eq!(
        (state.bias(), state.ord(), state.transparent),
        (0, 0, false)
    );
    assert_eq!(
        state.parent_slot,
        Some(Slot::RootCounter {
            thread: T1,
            space: ROOT_SPACE
        })
    );
    assert_eq!(
        (state.memo_instr, state.memo_ord),
        (MEMO_INSTR_UNSET, MEMO_ORD_UNSET)
    );
    let t = s.engine.thread(T1).expect("thread");
    assert_eq!(t.slot, Some(Slot::FrameOrd(f)));
    assert!(t.spaces[&ROOT_SPACE].seen);
    assert_eq!(t.spaces[&ROOT_SPACE].depth, 1);
    s.ret(T1);
    let t = s.engine.thread(T1).expect("thread");
    assert_eq!(t.spaces[&ROOT_SPACE].depth, 0);
    assert_eq!(t.spaces[&ROOT_SPACE].root_counter, 1);
}

#[test]
fn unknown_threads_and_unbalanced_leaves_are_errors() {
    let mut s = Sim::new();
    let ghost = ThreadKey(0xdead);
    assert_eq!(
        s.engine.activate(ghost, FrameKey(1)),
        Err(EngineError::UnknownThread(ghost))
    );
    assert_eq!(
        s.engine.coordinates(&s.view, ghost, 0, 0),
        Err(EngineError::UnknownThread(ghost))
    );
    assert_eq!(s.engine.leave(T1), Err(EngineError::UnbalancedLeave(T1)));
}

#[test]
fn prologue_frames_are_invisible_until_their_first_traceable_instruction() {
    let mut s = Sim::new();
    s.call(T1);
    s.step(T1, 3);
    let outer = s.root(T1);
    let g = s.make_generator(T1);
    // The prologue bumped the caller once.
    assert_eq!(s.root(T1), vec![outer[0], 1]);
    s.step(T1, 1);
    s.resume(T1, g);
    // Generator frames are always complete.
    assert_eq!(s.root(T1).len(), 4);
}

#[test]
fn c_stack_frames_are_never_visible() {
    let mut s = Sim::new();
    s.call(T1);
    s.step(T1, 3);
    s.call_from_c(T1);
    // entry frame between: still two pairs
    assert_eq!(s.root(T1).len(), 4);
}

#[test]
fn bias_keeps_coordinates_monotone_and_survives_suspension() {
    let mut s = Sim::new();
    s.call(T1);
    let g = s.make_generator(T1);
    s.resume(T1, g); // index 1
    s.step(T1, 5); // 6
    s.jump(T1, 2); // bias 5, coord 7
    let inside = s.root(T1);
    assert_eq!(inside[2], 7);
    s.yield_(T1); // boundary at 3, coord 8
    assert_eq!(s.engine.frame(g).map(|f| f.bias()), Some(5));
    s.resume(T1, g);
    assert_eq!(s.root(T1)[2], 9);
}

#[test]
fn coordinates_clamp_at_zero() {
    let mut s = Sim::new();
    let f = s.call(T1);
    s.engine.bias_site(f, 0, 50); // bias -49
    s.step(T1, 3);
    assert_eq!(s.root(T1), vec![0, 0]);
    assert_eq!(s.engine.frame(f).map(|f| f.coord(60)), Some(11));
}

#[test]
fn callback_frames_are_transparent_and_bump_nothing() {
    let mut s = Sim::new();
    s.call(T1);
    s.step(T1, 3);
    let p = s.root(T1);
    let root_before = s
        .engine
        .thread(T1)
        .map(|t| t.spaces[&ROOT_SPACE].root_counter);
    s.engine.callback_enter(&s.view, T1).unwrap();
    let helper = s.call(T1);
    assert!(s.engine.frame(helper).is_some_and(|f| f.transparent));
    s.step(T1, 1);
    s.call(T1);
    s.step(T1, 1);
    assert_eq!(s.root(T1), p, "queries resolve to the application boundary");
    // The disabled space shows no callback frames, and stays unseen.
    assert_eq!(s.coords(T1, DISABLED_SPACE), None);
    s.ret(T1);
    s.ret(T1);
    s.engine.callback_exit(T1).unwrap();
    assert_eq!(s.root(T1), p, "no ordinal bumped");
    let t = s.engine.thread(T1).expect("thread");
    assert_eq!(Some(t.spaces[&ROOT_SPACE].root_counter), root_before);
    assert!(!t.tmode && !t.in_callback);
}

#[test]
fn callback_created_generators_stay_transparent_when_resumed_by_the_application() {
    // Checklist item 39.
    let mut s = Sim::new();
    s.call(T1);
    s.step(T1, 3);
    s.engine.callback_enter(&s.view, T1).unwrap();
    let cb_gen = s.make_generator(T1);
    s.engine.callback_exit(T1).unwrap();
    let app_gen = s.make_generator(T1);
    s.step(T1, 2); // list(map(operator.call, [probe, partial(next, g), probe]))
    let run = |s: &mut Sim, g: FrameKey| {
        s.call_from_c(T1);
        s.ret(T1);
        s.resume_from_c(T1, g);
        let mid = s.root(T1);
        s.yield_(T1);
        s.call_from_c(T1);
        s.step(T1, 1);
        let last = s.root(T1);
        s.ret(T1);
        (mid, last)
    };
    let (mid, last) = run(&mut s, cb_gen);
    assert_eq!(mid, last[..last.len() - 2]);
    assert_eq!(last[last.len() - 3], 1);
    s.step(T1, 1);
    let (_, last) = run(&mut s, app_gen);
    assert_eq!(last[last.len() - 3], 2);
}

#[test]
fn include_inside_a_callback_is_visible_and_bumps_the_application_frame() {
    // Checklist item 42.
    let mut s = Sim::new();
    s.call(T1);
    s.step(T1, 3);
    let p = s.root(T1);
    s.engine.callback_enter(&s.view, T1).unwrap();
    s.call(T1);
    s.enter(T1, ROOT_SPACE);
    s.call(T1);
    s.step(T1, 1);
    let v = s.root(T1);
    s.call(T1);
    let nested = s.root(T1);
    s.ret(T1);
    s.ret(T1);
    s.leave(T1);
    let after = s.root(T1);
    s.ret(T1);
    s.engine.callback_exit(T1).unwrap();
    assert_eq!(v[..p.len()], p[..]);
    assert!(v.len() > p.len());
    assert!(nested.len() > v.len() && nested[..v.len() - 1] == v[..v.len() - 1]);
    assert_eq!(after[..p.len() - 1], p[..p.len() - 1]);
    assert_eq!(after[p.len() - 1], p[p.len() - 1] + 1);
}

#[test]
fn entering_a_space_from_a_callback_adds_no_minimum_root_bump() {
    let mut s = Sim::new();
    s.call(T1);
    s.step(T1, 3);
    s.engine.callback_enter(&s.view, T1).unwrap();
    // run_disabled(f) with f creating no frame: transparent mode, no bump.
    s.enter(T1, DISABLED_SPACE);
    s.leave(T1);
    s.engine.callback_exit(T1).unwrap();
    let disabled = s
        .engine
        .thread(T1)
        .map(|t| t.spaces[&DISABLED_SPACE].root_counter);
    assert_eq!(disabled, Some(0));
    // From application code the same scope advances the root by one.
    s.enter(T1, DISABLED_SPACE);
    s.leave(T1);
    let disabled = s
        .engine
        .thread(T1)
        .map(|t| t.spaces[&DISABLED_SPACE].root_counter);
    assert_eq!(disabled, Some(1));
}

#[test]
fn a_frame_running_on_another_thread_is_reset_on_activation() {
    // §5.2 foreign-state rule: a record left running by another thread
    // state is reset (bias included) before activation; transparency kept.
    let mut s = Sim::new();
    s.engine.new_thread(T2, 9, ROOT_SPACE);
    let f = s.call(T1);
    s.engine.bias_site(f, 0, 40);
    s.engine.activate(T2, f).unwrap();
    let state = s.engine.frame(f).cloned().expect("tracked");
    assert_eq!(state.bias(), 0);
    assert_eq!(state.space.map(|r| r.thread), Some(T2));
    // Deactivating it on T1 now only resets it.
    s.engine.deactivate(T1, f).unwrap();
    assert_eq!(s.engine.frame(f).and_then(|f| f.space), None);
    let t1 = s.engine.thread(T1).expect("thread");
    assert_eq!(t1.spaces[&ROOT_SPACE].root_counter, 0);
}

#[test]
fn clearing_a_thread_frees_its_spaces_and_orphans_their_frames() {
    let mut s = Sim::new();
    s.call(T1);
    s.enter(T1, 5);
    let f = s.call(T1);
    s.engine.clear_thread(T1).unwrap();
    let t = s.engine.thread(T1).expect("thread");
    assert_eq!(
        t.spaces.keys().copied().collect::<Vec<_>>(),
        vec![ROOT_SPACE]
    );
    assert_eq!(t.cur_space, ROOT_SPACE);
    // The frame's thread-space is gone: activation treats it as foreign.
    s.engine.bias_site(f, 0, 9);
    s.engine.activate(T1, f).unwrap();
    assert_eq!(s.engine.frame(f).map(|f| f.bias()), Some(0));
}

#[test]
fn start_frame_fix_applies_to_the_callers_last_dispatch_only() {
    let mut s = Sim::new();
    let caller = s.call(T1);
    s.step(T1, 10); // CALL at 10 with 3 caches, inlined
    let site = s.engine.start_frame_fix(T1, caller, 13).unwrap();
    assert_eq!(site.map(|x| (x.source, x.dest)), Some((10, 14)));
    assert_eq!(s.engine.frame(caller).map(|f| f.coord(13)), Some(10));
    assert_eq!(s.engine.frame(caller).map(|f| f.coord(14)), Some(11));
    // Applied once: a second start_frame without a dispatch does nothing.
    assert_eq!(s.engine.start_frame_fix(T1, caller, 13), Ok(None));
    // A different frame's dispatch does not move the caller.
    s.call(T1);
    assert_eq!(s.engine.start_frame_fix(T1, caller, 20), Ok(None));
}
