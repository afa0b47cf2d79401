//! Property test: random programs on two threads never make the engine fail
//! or panic, and every `(thread, space)` delta stream rebuilds
//! `coordinates()` exactly; location hashes agree with the pairs.

use super::sim::{apply_delta, Sim, T1, T2};
use crate::engine::{FrameKey, SpaceId, ThreadKey, ROOT_SPACE};
use crate::ids;
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Clone, Debug)]
enum Op {
    Call,
    CallFromC,
    Return,
    Step(i64),
    Jump(i64),
    MakeGenerator,
    Resume(usize, bool),
    Yield,
    Enter(SpaceId),
    Leave,
    CallbackEnter,
    CallbackExit,
    Delta(SpaceId),
    QueryOther(SpaceId),
    Switch,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Call),
        2 => Just(Op::CallFromC),
        3 => Just(Op::Return),
        4 => (1i64..4).prop_map(Op::Step),
        2 => (0i64..30).prop_map(Op::Jump),
        1 => Just(Op::MakeGenerator),
        2 => (0usize..8, any::<bool>()).prop_map(|(g, c)| Op::Resume(g, c)),
        2 => Just(Op::Yield),
        1 => (0u32..4).prop_map(Op::Enter),
        1 => Just(Op::Leave),
        1 => Just(Op::CallbackEnter),
        1 => Just(Op::CallbackExit),
        4 => (0u32..4).prop_map(Op::Delta),
        1 => (0u32..4).prop_map(Op::QueryOther),
        1 => Just(Op::Switch),
    ]
}

/// Per-thread bookkeeping of the driver: what may legally happen next.
#[derive(Default)]
struct Driver {
    /// Stack depth (frames incl. entry frames) at each active scope, and
    /// whether the scope is a callback.
    scopes: Vec<(usize, bool)>,
    /// Frames on the stack, with whether each is a generator.
    frames: Vec<(FrameKey, bool)>,
}

struct World {
    sim: Sim,
    drivers: HashMap<ThreadKey, Driver>,
    suspended: Vec<FrameKey>,
    streams: HashMap<(ThreadKey, SpaceId), Vec<u64>>,
}

impl World {
    fn driver(&mut self, t: ThreadKey) -> &mut Driver {
        self.drivers.entry(t).or_default()
    }

    fn depth(&self, t: ThreadKey) -> usize {
        self.drivers[&t].frames.len()
    }

    fn scope_floor(&self, t: ThreadKey) -> usize {
        self.drivers[&t].scopes.last().map_or(0, |s| s.0)
    }

    fn check_stream(&mut self, t: ThreadKey, sid: SpaceId) {
        let delta = self.sim.delta(t, sid);
        let coords = self.sim.coords(t, sid);
        match (delta, coords) {
            (None, None) => {}
            (Some(d), Some(c)) => {
                let stack = self.streams.entry((t, sid)).or_default();
                assert!(d[0] as usize <= stack.len() || stack.is_empty() && d[0] == 0);
                apply_delta(stack, &d);
                assert_eq!(*stack, c, "stream of {t:?} in space {sid}");
                let pairs: Vec<(u64, u64)> = c.chunks(2).map(|p| (p[0], p[1])).collect();
                let ts = self.sim.engine.thread(t).expect("thread").spaces[&sid].clone();
                let expected =
                    ids::location_hash(self.sim.engine.mixer(), ts.seed, ts.root_counter, &pairs);
                assert_eq!(self.sim.hash(t, sid), Some(expected));
            }
            (d, c) => panic!("delta {d:?} but coordinates {c:?}"),
        }
    }

    fn apply(&mut self, t: ThreadKey, op: &Op) {
        let depth = self.depth(t);
        let floor = self.scope_floor(t);
        match *op {
            Op::Call if depth < 40 => {
                let f = self.sim.call(t);
                self.driver(t).frames.push((f, false));
            }
            Op::CallFromC if depth < 40 => {
                let f = self.sim.call_from_c(t);
                self.driver(t).frames.push((f, false));
            }
            Op::Return if depth > floor => {
                let (f, gen) = self
                    .drivers
                    .get_mut(&t)
                    .and_then(|d| d.frames.pop())
                    .expect("frame");
                self.sim.step(t, 1);
                self.sim.ret(t);
                if gen {
                    self.suspended.retain(|&g| g != f);
                }
            }
            Op::Step(k) if depth > 0 => self.sim.step(t, k),
            Op::Jump(dest) if depth > 0 => self.sim.jump(t, dest),
            Op::MakeGenerator if depth > 0 && self.suspended.len() < 8 => {
                self.sim.step(t, 1);
                let g = self.sim.make_generator(t);
                self.suspended.push(g);
            }
            Op::Resume(i, from_c) if depth < 40 && !self.suspended.is_empty() => {
                let g = self.suspended.remove(i % self.suspended.len());
                if depth > 0 {
                    self.sim.step(t, 1);
                }
                if from_c {
                    self.sim.resume_from_c(t, g);
                } else {
                    self.sim.resume(t, g);
                }
                self.driver(t).frames.push((g, true));
            }
            Op::Yield if depth > floor && self.drivers[&t].frames.last().is_some_and(|f| f.1) => {
                let (g, _) = self
                    .drivers
                    .get_mut(&t)
                    .and_then(|d| d.frames.pop())
                    .expect("frame");
                self.sim.yield_(t);
                self.suspended.push(g);
            }
            Op::Enter(sid) if self.drivers[&t].scopes.len() < 6 => {
                if depth > 0 {
                    self.sim.step(t, 1);
                }
                self.sim.enter(t, sid);
                self.driver(t).scopes.push((depth, false));
            }
            Op::Leave if self.drivers[&t].scopes.last() == Some(&(depth, false)) => {
                self.sim.leave(t);
                self.driver(t).scopes.pop();
            }
            Op::CallbackEnter if self.drivers[&t].scopes.len() < 6 => {
                if depth > 0 {
                    self.sim.step(t, 1);
                }
                self.sim
                    .engine
                    .callback_enter(&self.sim.view, t)
                    .expect("known thread");
                self.driver(t).scopes.push((depth, true));
            }
            Op::CallbackExit if self.drivers[&t].scopes.last() == Some(&(depth, true)) => {
                self.sim.engine.callback_exit(t).expect("balanced");
                self.driver(t).scopes.pop();
            }
            Op::Delta(sid) => {
                // A query is a call made by the leaf at a new boundary.
                if depth > 0 {
                    self.sim.step(t, 1);
                }
                self.check_stream(t, sid);
            }
            _ => {}
        }
    }
}

fn run(ops: &[Op]) {
    let mut sim = Sim::new();
    sim.engine.new_thread(T2, 0x1234_5678, 2);
    let mut world = World {
        sim,
        drivers: HashMap::from([(T1, Driver::default()), (T2, Driver::default())]),
        suspended: Vec::new(),
        streams: HashMap::new(),
    };
    let mut t = T1;
    for op in ops {
        match *op {
            Op::Switch => t = if t == T1 { T2 } else { T1 },
            Op::QueryOther(sid) => {
                let other = if t == T1 { T2 } else { T1 };
                world.check_stream(other, sid);
            }
            _ => world.apply(t, op),
        }
        for th in [T1, T2] {
            for sid in [ROOT_SPACE, 1, 2, 3] {
                let c = world.sim.engine.coordinates(&world.sim.view, th, sid, 0);
                let c = c.expect("known thread");
                if let Some(words) = c {
                    assert_eq!(words.len() % 2, 0);
                }
            }
        }
    }
    for th in [T1, T2] {
        for sid in [ROOT_SPACE, 1, 2, 3] {
            world.check_stream(th, sid);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn delta_streams_rebuild_coordinates(ops in proptest::collection::vec(op(), 1..160)) {
        run(&ops);
    }
}
