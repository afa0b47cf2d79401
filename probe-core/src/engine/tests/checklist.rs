//! SEMANTICS.md §21 checklist items, as far as they are engine logic,
//! replayed on synthetic stacks.

use super::sim::{apply_delta, Sim, T1};
use crate::engine::{DISABLED_SPACE, ROOT_SPACE};
use crate::ids::{self, DEFAULT_ROOT_SEED};
use crate::mixing::Mixer;

/// A module frame running at index 5.
fn module(sim: &mut Sim) {
    sim.call(T1);
    sim.step(T1, 5);
}

#[test]
fn item_11_two_samples_in_one_function() {
    let mut s = Sim::new();
    module(&mut s);
    s.call(T1);
    s.step(T1, 3);
    let a = s.root(T1);
    s.step(T1, 4);
    let b = s.root(T1);
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), 4);
    assert_eq!(a[..a.len() - 2], b[..b.len() - 2]);
    assert_eq!((a[a.len() - 1], b[b.len() - 1]), (0, 0));
    assert!(b[b.len() - 2] > a[a.len() - 2]);
}

#[test]
fn item_15_nested_call_lengths() {
    let mut s = Sim::new();
    module(&mut s);
    s.call(T1);
    s.step(T1, 2);
    let before = s.root(T1).len();
    s.step(T1, 1);
    s.call(T1);
    s.step(T1, 1);
    let inside = s.root(T1).len();
    s.ret(T1);
    s.step(T1, 4);
    let after = s.root(T1).len();
    assert_eq!((inside, after), (before + 2, before));
}

#[test]
fn item_17_loop_coordinates_strictly_increase_across_a_backward_jump() {
    let mut s = Sim::new();
    module(&mut s);
    let mut xs = Vec::new();
    for _ in 0..3 {
        s.step(T1, 2); // loop body: sample at index 7
        let c = s.root(T1);
        xs.push(c[c.len() - 2]);
        s.step(T1, 2); // JUMP_BACKWARD at index 9
        s.jump(T1, 5); // back to FOR_ITER at index 5
    }
    assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
    // The loop head after the jump is exactly one past the jump's
    // coordinate (sample + 2).
    let c = s.root(T1);
    assert_eq!(c[0], xs[2] + 3);
}

#[test]
fn item_18_c_driven_children_see_ordinals_0_1_2() {
    let mut s = Sim::new();
    module(&mut s);
    s.call(T1);
    s.step(T1, 6); // CALL list(map(p, range(3)))
    let mut samples = Vec::new();
    for _ in 0..3 {
        s.call_from_c(T1); // p
        s.step(T1, 2);
        samples.push(s.root(T1));
        s.ret(T1);
    }
    let pairs = samples[0].len() / 2;
    let mut matching = Vec::new();
    for p in 0..pairs {
        let instrs: Vec<u64> = samples.iter().map(|w| w[2 * p]).collect();
        let ords: Vec<u64> = samples.iter().map(|w| w[2 * p + 1]).collect();
        if instrs.iter().all(|&i| i == instrs[0]) && ords == [0, 1, 2] {
            matching.push(p);
        }
    }
    assert_eq!(matching.len(), 1, "{samples:?}");
    for w in &samples {
        for p in matching[0] + 1..pairs {
            assert_eq!(w[2 * p + 1], 0);
        }
    }
    assert!(samples[0] != samples[1] && samples[1] != samples[2]);
    // Item 19: the next sample after the call has leaf ordinal 0.
    s.step(T1, 4);
    assert_eq!(s.root(T1).last(), Some(&0));
}

#[test]
fn item_20_generator_prologue_bumps_like_a_call() {
    let mut s = Sim::new();
    module(&mut s);
    s.call(T1);
    s.step(T1, 6); // list(map(operator.call, [probe, genfn, probe]))
    s.call_from_c(T1);
    s.step(T1, 1);
    let first = s.root(T1);
    s.ret(T1);
    s.make_generator(T1); // called from C: its prologue still bumps
    s.call_from_c(T1);
    s.step(T1, 1);
    let third = s.root(T1);
    s.ret(T1);
    assert_eq!(first[first.len() - 3], 0);
    assert_eq!(third[third.len() - 3], 2);
}

#[test]
fn item_21_generator_resumes_from_c_give_ordinals_0_1_2() {
    let mut s = Sim::new();
    module(&mut s);
    s.call(T1);
    let g = s.make_generator(T1);
    s.step(T1, 3); // CALL list(g)
    let mut ords = Vec::new();
    for _ in 0..3 {
        s.resume_from_c(T1, g);
        s.step(T1, 1);
        let c = s.root(T1);
        ords.push(c[c.len() - 3]);
        s.yield_(T1);
    }
    assert_eq!(ords, [0, 1, 2]);
}

#[test]
fn item_22_fresh_space_is_none_before_use_and_empty_after() {
    let mut s = Sim::new();
    module(&mut s);
    let sid = 9;
    assert_eq!(s.coords(T1, sid), None);
    assert_eq!(s.hash(T1, sid), None);
    assert_eq!(s.delta(T1, sid), None);
    s.enter(T1, sid);
    // Entering alone does not make the space seen.
    assert_eq!(s.coords(T1, sid), None);
    s.call(T1);
    s.step(T1, 2);
    let inside = s.coords(T1, sid).expect("seen");
    assert_eq!(inside.len(), 2);
    assert_eq!(inside[1], 0);
    s.ret(T1);
    s.leave(T1);
    assert_eq!(s.coords(T1, sid), Some(vec![]));
    assert!(s.hash(T1, sid).is_some());
}

#[test]
fn item_24_excluded_frames_are_invisible_in_root() {
    let mut s = Sim::new();
    module(&mut s);
    s.call(T1);
    s.step(T1, 4);
    let caller = s.root(T1);
    s.enter(T1, DISABLED_SPACE); // R.exclude wrapper
    s.call(T1); // hidden
    s.step(T1, 2);
    let own = s.root(T1);
    s.call(T1); // nested
    s.step(T1, 1);
    let nested = s.root(T1);
    s.ret(T1);
    s.ret(T1);
    s.leave(T1);
    assert_eq!(own, nested);
    assert_eq!(own.len(), caller.len());
    assert_eq!(own, caller);
    // The disabled space saw both frames.
    assert_eq!(s.coords(T1, DISABLED_SPACE).map(|c| c.len()), Some(0));
}

#[test]
fn item_25_include_attaches_under_the_nearest_root_frame() {
    let mut s = Sim::new();
    module(&mut s);
    s.call(T1);
    s.step(T1, 4);
    s.enter(T1, DISABLED_SPACE);
    s.call(T1); // the excluded function
    s.step(T1, 2);
    let x = s.root(T1);
    s.step(T1, 1);
    s.enter(T1, ROOT_SPACE); // R.include(visible)()
    s.call(T1);
    s.step(T1, 1);
    let v = s.root(T1);
    s.ret(T1);
    s.leave(T1);
    s.step(T1, 2);
    let y = s.root(T1);
    assert_eq!(v[..x.len()], x[..]);
    assert_eq!(v.len(), x.len() + 2);
    assert_eq!(y[..y.len() - 1], x[..x.len() - 1]);
    assert_eq!(y[y.len() - 1], x[x.len() - 1] + 1);
}

#[test]
fn item_28_leave_after_an_exception_restores_the_caller() {
    let mut s = Sim::new();
    module(&mut s);
    s.call(T1);
    s.step(T1, 4);
    let before = s.root(T1).len();
    let thread_before = s.engine.thread(T1).cloned().expect("thread");
    for sid in [DISABLED_SPACE, 6] {
        s.enter(T1, sid);
        s.call(T1);
        s.step(T1, 3);
        s.call(T1);
        s.step(T1, 1);
        // An exception unwinds both frames, then the wrapper leaves.
        s.ret(T1);
        s.ret(T1);
        s.leave(T1);
    }
    assert_eq!(s.root(T1).len(), before);
    let after = s.engine.thread(T1).expect("thread");
    assert_eq!(after.cur_space, thread_before.cur_space);
    assert_eq!(after.slot, thread_before.slot);
    assert_eq!(after.tmode, thread_before.tmode);
    assert!(after.enters.is_empty());
}

#[test]
fn item_30_same_coordinates_different_hash_on_a_second_run() {
    let mut s = Sim::new();
    module(&mut s);
    let sid = 4;
    let mut runs = Vec::new();
    for _ in 0..2 {
        s.step(T1, 2);
        s.enter(T1, sid);
        s.call(T1); // leaf
        s.step(T1, 3);
        runs.push((s.coords(T1, sid), s.hash(T1, sid)));
        s.ret(T1);
        s.leave(T1);
    }
    assert_eq!(runs[0].0, runs[1].0);
    assert_ne!(runs[0].1, runs[1].1);
    let root = s
        .engine
        .thread(T1)
        .and_then(|t| t.spaces.get(&sid))
        .map(|ts| ts.root_counter);
    assert_eq!(root, Some(2));
}

#[test]
fn item_54_delta_stream_rebuilds_the_live_stack() {
    let mut s = Sim::new();
    module(&mut s);
    let mut stack = Vec::new();
    let first = s.delta(T1, ROOT_SPACE).expect("seen");
    assert_eq!(first[0], 0);
    assert_eq!(first[1..], s.root(T1)[..]);
    apply_delta(&mut stack, &first);
    // Nested, then top level again.
    s.call(T1);
    s.step(T1, 2);
    let d = s.delta(T1, ROOT_SPACE).expect("seen");
    assert!(d[0] as usize <= stack.len());
    apply_delta(&mut stack, &d);
    assert_eq!(stack, s.root(T1));
    s.ret(T1);
    s.step(T1, 1);
    let d = s.delta(T1, ROOT_SPACE).expect("seen");
    apply_delta(&mut stack, &d);
    assert_eq!(stack, s.root(T1));
    // No change: a pure "keep everything" delta.
    let d = s.delta(T1, ROOT_SPACE).expect("seen");
    assert_eq!(d, vec![stack.len() as u64]);
    // A root-counter change forces 0.
    s.ret(T1);
    s.call(T1);
    s.step(T1, 5);
    let d = s.delta(T1, ROOT_SPACE).expect("seen");
    assert_eq!(d[0], 0);
}

#[test]
fn item_58_location_hash_appendix_c_vectors_through_the_engine() {
    let main = ids::assign(
        Mixer::A,
        ids::root_seed(Mixer::A, DEFAULT_ROOT_SEED),
        None,
        |_| false,
    );
    // frames (10,0),(4,2), root counter 0
    let mut s = Sim::default();
    s.engine.new_thread(T1, main, ROOT_SPACE);
    s.call(T1);
    s.step(T1, 10);
    s.call(T1);
    s.step(T1, 4);
    for _ in 0..2 {
        s.call_from_c(T1);
        s.ret(T1);
    }
    assert_eq!(s.root(T1), vec![10, 0, 4, 2]);
    assert_eq!(s.hash(T1, ROOT_SPACE), Some(0xe68f_5483_ad96_da8e));

    // root counter 3, frame (10,0)
    let mut s = Sim::default();
    s.engine.new_thread(T1, main, ROOT_SPACE);
    for _ in 0..3 {
        s.call(T1);
        s.ret(T1);
    }
    s.call(T1);
    s.step(T1, 10);
    assert_eq!(s.root(T1), vec![10, 0]);
    assert_eq!(s.hash(T1, ROOT_SPACE), Some(0xb563_9f58_967a_9f43));
}
