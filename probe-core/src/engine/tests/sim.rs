//! A fake interpreter for engine tests: frame chains per thread, driven like
//! CPython 3.12 drives the hooks (initialize, activate, boundaries, bias
//! sites, deactivate).

use crate::engine::{Engine, FrameKey, FrameView, SpaceId, ThreadKey, ROOT_SPACE};
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct FakeFrame {
    pub previous: Option<FrameKey>,
    pub index: i64,
    pub c_stack: bool,
    pub generator: bool,
    pub first_traceable: i64,
}

#[derive(Default, Debug)]
pub struct FakeView {
    pub frames: HashMap<FrameKey, FakeFrame>,
    pub current: HashMap<ThreadKey, FrameKey>,
}

impl FrameView for FakeView {
    fn innermost(&self, thread: ThreadKey) -> Option<FrameKey> {
        self.current.get(&thread).copied()
    }
    fn previous(&self, frame: FrameKey) -> Option<FrameKey> {
        self.frames.get(&frame).and_then(|f| f.previous)
    }
    fn index(&self, frame: FrameKey) -> i64 {
        self.frames.get(&frame).map_or(-1, |f| f.index)
    }
    fn owned_by_c_stack(&self, frame: FrameKey) -> bool {
        self.frames.get(&frame).is_some_and(|f| f.c_stack)
    }
    fn is_generator(&self, frame: FrameKey) -> bool {
        self.frames.get(&frame).is_some_and(|f| f.generator)
    }
    fn first_traceable(&self, frame: FrameKey) -> i64 {
        self.frames.get(&frame).map_or(0, |f| f.first_traceable)
    }
}

/// Engine plus fake stacks. Every helper panics on engine errors: in tests
/// they are bugs.
#[derive(Debug)]
pub struct Sim {
    pub engine: Engine,
    pub view: FakeView,
    next_addr: u64,
}

impl Default for Sim {
    fn default() -> Self {
        Sim {
            engine: Engine::default(),
            view: FakeView::default(),
            next_addr: 0x1000,
        }
    }
}

pub const T1: ThreadKey = ThreadKey(0xAA00);
pub const T2: ThreadKey = ThreadKey(0xBB00);

impl Sim {
    /// A simulator with thread [`T1`] (tid 7) in root.
    pub fn new() -> Self {
        let mut s = Sim::default();
        s.engine.new_thread(T1, 7, ROOT_SPACE);
        s
    }

    fn addr(&mut self) -> FrameKey {
        self.next_addr += 0x100;
        FrameKey(self.next_addr)
    }

    pub fn leaf(&self, t: ThreadKey) -> Option<FrameKey> {
        self.view.innermost(t)
    }

    fn push(&mut self, t: ThreadKey, frame: FrameKey, mut fake: FakeFrame) {
        fake.previous = self.leaf(t);
        self.view.frames.insert(frame, fake);
        self.view.current.insert(t, frame);
    }

    fn pop(&mut self, t: ThreadKey) -> FrameKey {
        let leaf = self.leaf(t).expect("a frame to pop");
        match self.view.frames.get(&leaf).and_then(|f| f.previous) {
            Some(p) => self.view.current.insert(t, p),
            None => self.view.current.remove(&t),
        };
        leaf
    }

    /// A Python-to-Python call: new frame, initialized, activated, first
    /// boundary at its `RESUME` (index 0).
    pub fn call(&mut self, t: ThreadKey) -> FrameKey {
        let f = self.addr();
        self.push(
            t,
            f,
            FakeFrame {
                previous: None,
                index: -1,
                c_stack: false,
                generator: false,
                first_traceable: 0,
            },
        );
        self.engine.init_frame(t, f).unwrap();
        self.engine.activate(t, f).unwrap();
        self.boundary(t, 0);
        f
    }

    /// A C-level evaluation: an entry frame owned by the C stack (never
    /// activated), then a called frame that is its first frame (E2).
    pub fn call_from_c(&mut self, t: ThreadKey) -> FrameKey {
        let entry = self.addr();
        self.push(
            t,
            entry,
            FakeFrame {
                previous: None,
                index: -1,
                c_stack: true,
                generator: false,
                first_traceable: 0,
            },
        );
        self.engine.init_frame(t, entry).unwrap();
        let f = self.call(t);
        self.engine.memo_reset(f);
        f
    }

    /// Boundary of the leaf frame at `index`.
    pub fn boundary(&mut self, t: ThreadKey, index: i64) {
        let leaf = self.leaf(t).expect("a running frame");
        if let Some(f) = self.view.frames.get_mut(&leaf) {
            f.index = index;
        }
        self.engine
            .begin_instruction(&self.view, t, leaf, index)
            .unwrap();
    }

    /// The leaf advances by `k` instructions.
    pub fn step(&mut self, t: ThreadKey, k: i64) {
        let leaf = self.leaf(t).expect("a running frame");
        let index = self.view.index(leaf) + k;
        self.boundary(t, index);
    }

    /// The leaf jumps from its current instruction to `dest`.
    pub fn jump(&mut self, t: ThreadKey, dest: i64) {
        let leaf = self.leaf(t).expect("a running frame");
        let q = self.view.index(leaf);
        assert!(self.engine.bias_site(leaf, q, dest));
        self.boundary(t, dest);
    }

    /// The leaf returns (or unwinds); a C entry frame under it is popped too
    /// when `from_c`.
    pub fn ret(&mut self, t: ThreadKey) {
        let leaf = self.pop(t);
        self.engine.deactivate(t, leaf).unwrap();
        self.engine.forget_frame(leaf);
        if let Some(entry) = self.leaf(t) {
            if self.view.owned_by_c_stack(entry) {
                self.pop(t);
                self.engine.forget_frame(entry);
                self.view.frames.remove(&entry);
            }
        }
        self.view.frames.remove(&leaf);
    }

    /// Calls a generator function (3.12): the prologue frame runs to
    /// `RETURN_GENERATOR` (index 0, before the first traceable index 2), is
    /// copied into a generator frame and popped. Returns the suspended
    /// generator frame.
    pub fn make_generator(&mut self, t: ThreadKey) -> FrameKey {
        let prologue = self.addr();
        self.push(
            t,
            prologue,
            FakeFrame {
                previous: None,
                index: -1,
                c_stack: false,
                generator: false,
                first_traceable: 2,
            },
        );
        self.engine.init_frame(t, prologue).unwrap();
        self.engine.activate(t, prologue).unwrap();
        self.boundary(t, 0);
        let gen = self.addr();
        self.engine.init_frame(t, gen).unwrap();
        self.view.frames.insert(
            gen,
            FakeFrame {
                previous: None,
                index: 0,
                c_stack: false,
                generator: true,
                first_traceable: 2,
            },
        );
        self.ret(t);
        gen
    }

    /// Resumes a suspended generator inline (`SEND_GEN`/`FOR_ITER_GEN`);
    /// its first boundary is the instruction after the one it stopped at.
    pub fn resume(&mut self, t: ThreadKey, gen: FrameKey) {
        let fake = self.view.frames.get(&gen).cloned().expect("a generator");
        self.push(t, gen, fake);
        self.engine.activate(t, gen).unwrap();
        self.step(t, 1);
    }

    /// Resumes a generator from C (`next(g)` from C code): entry frame, E2.
    pub fn resume_from_c(&mut self, t: ThreadKey, gen: FrameKey) {
        let entry = self.addr();
        self.push(
            t,
            entry,
            FakeFrame {
                previous: None,
                index: -1,
                c_stack: true,
                generator: false,
                first_traceable: 0,
            },
        );
        self.engine.init_frame(t, entry).unwrap();
        self.engine.memo_reset(gen);
        self.resume(t, gen);
    }

    /// The leaf generator yields: a boundary at `YIELD_VALUE`, then
    /// suspension (the frame stays alive, off the stack).
    pub fn yield_(&mut self, t: ThreadKey) {
        self.step(t, 1);
        let gen = self.pop(t);
        self.engine.deactivate(t, gen).unwrap();
        if let Some(entry) = self.leaf(t) {
            if self.view.owned_by_c_stack(entry) {
                self.pop(t);
                self.engine.forget_frame(entry);
                self.view.frames.remove(&entry);
            }
        }
    }

    pub fn enter(&mut self, t: ThreadKey, sid: SpaceId) {
        self.engine.enter(&self.view, t, sid).unwrap();
    }

    pub fn leave(&mut self, t: ThreadKey) {
        self.engine.leave(t).unwrap();
    }

    pub fn coords(&self, t: ThreadKey, sid: SpaceId) -> Option<Vec<u64>> {
        self.engine.coordinates(&self.view, t, sid, 0).unwrap()
    }

    pub fn root(&self, t: ThreadKey) -> Vec<u64> {
        self.coords(t, ROOT_SPACE).expect("root seen")
    }

    pub fn delta(&mut self, t: ThreadKey, sid: SpaceId) -> Option<Vec<u64>> {
        self.engine.thread_delta(&self.view, t, sid).unwrap()
    }

    pub fn hash(&self, t: ThreadKey, sid: SpaceId) -> Option<u64> {
        self.engine.location_hash(&self.view, t, sid).unwrap()
    }
}

/// `del stack[d[0]:]; stack.extend(d[1:])`.
pub fn apply_delta(stack: &mut Vec<u64>, delta: &[u64]) {
    let (&common, rest) = delta.split_first().expect("a delta has a count");
    let common = usize::try_from(common).expect("small count");
    assert!(common <= stack.len(), "common {common} > {}", stack.len());
    stack.truncate(common);
    stack.extend_from_slice(rest);
}
