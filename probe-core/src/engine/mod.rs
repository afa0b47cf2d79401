//! The coordinate engine: call ordinals, instruction coordinates, spaces,
//! transparency and the queries over them (SEMANTICS.md §3–§9, §11, §12),
//! as pure logic independent of CPython memory.
//!
//! # Model
//!
//! The engine owns the abstract state of §3 in side tables keyed by address:
//!
//! * per frame ([`FrameState`], keyed by [`FrameKey`]): `bias`, `ord`,
//!   `parent_slot`, `space`, `transparent`, `saved_tmode`, `memo_space`,
//!   `memo_instr`, `memo_ord`;
//! * per thread ([`ThreadState`], keyed by [`ThreadKey`]): `tid`, `slot`,
//!   `cur_space`, `tmode`, `in_callback`, its thread-spaces and the stacks of
//!   active `enter`s and callback invocations;
//! * per thread-space ([`ThreadSpace`]): `id`, `seen`, `depth`,
//!   `root_counter`, `memo_root`, `seed`.
//!
//! The reference points `slot`/`parent_slot` at counters; here a counter is a
//! [`Slot`] (a frame's ordinal, a thread-space's root counter, or the local
//! root counter of an active `enter`) resolved when it is bumped. A slot whose
//! owner is gone resolves to nothing and the bump is dropped.
//!
//! # Events
//!
//! The runtime turns hooks into these calls (see each method for the rule it
//! implements):
//!
//! | event | method |
//! |---|---|
//! | E1 record initialization (new call, `_PyFrame_Copy` dest, entry frame) | [`Engine::init_frame`] |
//! | frame storage released | [`Engine::forget_frame`] |
//! | E2 frame becomes first frame of a C-level evaluation | [`Engine::memo_reset`] |
//! | E3 activation (start_frame, throw entry) | [`Engine::activate`], then [`Engine::start_frame_fix`] |
//! | E4 deactivation (return, unwind, yield, RETURN_GENERATOR pop) | [`Engine::deactivate`] |
//! | E5 boundary (table stub) | [`jumps::infer_dispatch`] → [`Engine::bias_site`], then [`Engine::begin_instruction`] |
//! | E6 explicit bias site (handler entry, eval-breaker settle) | [`Engine::bias_site`] |
//! | E7 thread creation / clear / delete | [`Engine::new_thread`], [`Engine::clear_thread`], [`Engine::remove_thread`] |
//! | space entry/exit (§11.2) | [`Engine::enter`], [`Engine::leave`] |
//! | callback invocation (§12) | [`Engine::callback_enter`], [`Engine::callback_exit`] |
//!
//! Queries walk the interpreter's frame chain through a [`FrameView`]:
//! [`Engine::coordinates`] (§8.1), [`Engine::thread_delta`] (§8.2),
//! [`Engine::location_hash`] (§9.3), [`Engine::visible_pairs`] (thread-id
//! seeding, §9.4).
//!
//! `call_at` and thread-switch work (§7's second half, §13, §14) are not
//! here: [`Engine::begin_instruction`] returns a [`Boundary`] telling the
//! caller whether that work may run.

mod error;
pub mod jumps;
mod keys;
mod lifecycle;
mod query;
mod spaces;
mod state;
mod threads;
mod view;
mod walk;

#[cfg(test)]
mod tests;

pub use error::EngineError;
pub use keys::{FrameKey, Slot, SpaceId, SpaceRef, ThreadKey, DISABLED_SPACE, ROOT_SPACE};
pub use lifecycle::Boundary;
pub use state::{
    reset_hot, CallbackRecord, EnterRecord, FrameState, HotPool, ThreadSpace, ThreadState,
    MEMO_INSTR_UNSET, MEMO_ORD_UNSET,
};
pub use view::FrameView;

use crate::hasher::PtrMap;
use crate::mixing::{Mixer, DEFAULT_MIXER};

/// The coordinate state of one interpreter.
#[derive(Debug)]
pub struct Engine {
    mixer: Mixer,
    frames: PtrMap<FrameState>,
    threads: PtrMap<ThreadState>,
    /// Stub records of the frames.
    hot: HotPool,
    /// Next [`ThreadSpace::uid`].
    next_space_uid: u64,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(DEFAULT_MIXER)
    }
}

impl Engine {
    /// An engine hashing with `mixer` (§9.1).
    pub fn new(mixer: Mixer) -> Self {
        Engine {
            mixer,
            frames: PtrMap::default(),
            threads: PtrMap::default(),
            hot: HotPool::default(),
            next_space_uid: 1,
        }
    }

    pub fn mixer(&self) -> Mixer {
        self.mixer
    }

    /// The record of `frame`, if the engine tracks it.
    pub fn frame(&self, frame: FrameKey) -> Option<&FrameState> {
        self.frames.get(&frame.0)
    }

    /// The record of `thread`, if announced.
    pub fn thread(&self, thread: ThreadKey) -> Option<&ThreadState> {
        self.threads.get(&thread.0)
    }

    /// Number of tracked frames.
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    fn thread_mut(&mut self, thread: ThreadKey) -> Result<&mut ThreadState, EngineError> {
        self.threads
            .get_mut(&thread.0)
            .ok_or(EngineError::UnknownThread(thread))
    }

    fn thread_ref(&self, thread: ThreadKey) -> Result<&ThreadState, EngineError> {
        self.threads
            .get(&thread.0)
            .ok_or(EngineError::UnknownThread(thread))
    }

    /// `T`'s thread-space for `space`, created (unseen) if missing.
    fn ensure_space(&mut self, thread: ThreadKey, space: SpaceId) -> Result<SpaceRef, EngineError> {
        let uid = self.next_space_uid;
        let state = self
            .threads
            .get_mut(&thread.0)
            .ok_or(EngineError::UnknownThread(thread))?;
        let tid = state.tid;
        let ts = state
            .spaces
            .entry(space)
            .or_insert_with(|| ThreadSpace::new(space, uid, tid));
        if ts.uid == uid {
            self.next_space_uid += 1;
        }
        Ok(SpaceRef {
            thread,
            space,
            uid: ts.uid,
        })
    }

    /// The current incarnation of `T`'s thread-space for `space`.
    fn space_ref(&self, thread: ThreadKey, space: SpaceId) -> Option<SpaceRef> {
        let ts = self.threads.get(&thread.0)?.spaces.get(&space)?;
        Some(SpaceRef {
            thread,
            space,
            uid: ts.uid,
        })
    }

    /// `F.space belongs to T`: the thread-space still exists on `thread`.
    fn belongs(&self, space: SpaceRef, thread: ThreadKey) -> bool {
        space.thread == thread && self.space_ref(thread, space.space) == Some(space)
    }

    /// `*slot += 1` (wrapping, like the reference's unsigned counters); a
    /// slot whose owner is gone is ignored.
    fn bump(&mut self, slot: Slot) {
        match slot {
            Slot::FrameOrd(frame) => {
                if let Some(f) = self.frames.get(&frame.0) {
                    f.set_ord(f.ord().wrapping_add(1));
                }
            }
            Slot::RootCounter { thread, space } => {
                if let Some(ts) = self
                    .threads
                    .get_mut(&thread.0)
                    .and_then(|t| t.spaces.get_mut(&space))
                {
                    ts.root_counter = ts.root_counter.wrapping_add(1);
                }
            }
            Slot::Local { thread, entry } => {
                if let Some(local) = self
                    .threads
                    .get_mut(&thread.0)
                    .and_then(|t| t.enters.iter_mut().rev().find(|e| e.entry == entry))
                    .and_then(|e| e.local.as_mut())
                {
                    local.0 = local.0.wrapping_add(1);
                }
            }
        }
    }
}
