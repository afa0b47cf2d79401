//! Frame life-cycle events: record initialization (§5.1), activation (§5.2),
//! deactivation (§5.3), bias sites (§4.2), delta-memo reset (E2) and the
//! ordinal part of the boundary procedure (§7).

use super::jumps::{self, BiasSite};
use super::keys::{FrameKey, Slot, ThreadKey};
use super::state::FrameState;
use super::view::FrameView;
use super::{Engine, EngineError};
use retrace_abi::HotFrame;

/// What [`Engine::begin_instruction`] found at a boundary.
///
/// This is the extension point for §7's second half (issue 4): the caller
/// runs `check_call_at` when `visible && !in_callback` and a coordinate
/// target is armed, and the thread-switch procedure when `!in_callback`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Boundary {
    /// The executing frame is visible (§6); its ordinal was reset.
    pub visible: bool,
    /// The space id of the executing frame when it is visible.
    pub space: Option<super::keys::SpaceId>,
    /// The thread runs a Retrace callback: no call_at, no switch work.
    pub in_callback: bool,
}

impl Engine {
    /// E1: `frame`'s record is (re)initialized on `thread` (§5.1): initial
    /// values, `transparent := T.tmode`.
    pub fn init_frame(
        &mut self,
        thread: ThreadKey,
        frame: FrameKey,
    ) -> Result<&'static HotFrame, EngineError> {
        let tmode = self.thread_ref(thread)?.tmode;
        Ok(self.fresh_record(frame, tmode))
    }

    /// A new record for `frame` (reusing the stub record of a previous one
    /// at the same address).
    fn fresh_record(&mut self, frame: FrameKey, transparent: bool) -> &'static HotFrame {
        let hot = match self.frames.get(&frame.0) {
            Some(old) if !old.stacked => old.hot,
            _ => self.hot.alloc(),
        };
        self.frames
            .insert(frame.0, FrameState::new(hot, frame, transparent));
        hot
    }

    /// The frame's storage is released: forget its record. Returns the stub
    /// record it used (now free), if it was tracked.
    pub fn forget_frame(&mut self, frame: FrameKey) -> Option<(&'static HotFrame, bool)> {
        let state = self.frames.remove(&frame.0)?;
        if !state.stacked {
            self.hot.free(state.hot);
        }
        Some((state.hot, state.stacked))
    }

    /// Adopts the inline resumption of the suspended, non-transparent
    /// generator frame `frame` that the `start_frame` fast path performed on
    /// `thread` with parent slot `&parent.ord` (see
    /// [`Engine::adopt_pending`]); its record keeps its bias, its ordinal
    /// and dispatch cache are what the stubs made of them.
    pub fn adopt_resumed(
        &mut self,
        thread: ThreadKey,
        frame: FrameKey,
        parent: FrameKey,
    ) -> Result<(), EngineError> {
        let cur_space = self.thread_ref(thread)?.cur_space;
        let space = self.ensure_space(thread, cur_space)?;
        let t = self
            .threads
            .get_mut(&thread.0)
            .ok_or(EngineError::UnknownThread(thread))?;
        let Some(f) = self.frames.get_mut(&frame.0) else {
            return Ok(());
        };
        f.saved_tmode = t.tmode;
        t.tmode = f.transparent;
        f.space = Some(space);
        f.parent_slot = Some(Slot::FrameOrd(parent));
        t.slot = Some(Slot::FrameOrd(frame));
        if let Some(ts) = t.spaces.get_mut(&space.space) {
            ts.seen = true;
            ts.depth = ts.depth.saturating_add(1);
        }
        Ok(())
    }

    /// Adopts an activation the `start_frame` fast path performed on
    /// `thread`: `frame` started running with stub record `hot` (on the
    /// thread's record stack) and parent slot `&parent.ord`, while the
    /// thread was not in transparent mode and `&parent.ord` was its slot.
    /// The result is what [`Engine::init_frame`] + [`Engine::activate`]
    /// would have produced then, with the ordinal and bias the stubs have
    /// maintained since.
    pub fn adopt_pending(
        &mut self,
        thread: ThreadKey,
        frame: FrameKey,
        hot: &'static HotFrame,
        parent: FrameKey,
    ) -> Result<(), EngineError> {
        let cur_space = self.thread_ref(thread)?.cur_space;
        let space = self.ensure_space(thread, cur_space)?;
        if let Some(old) = self.frames.remove(&frame.0) {
            if !old.stacked {
                self.hot.free(old.hot);
            }
        }
        let t = self
            .threads
            .get_mut(&thread.0)
            .ok_or(EngineError::UnknownThread(thread))?;
        let mut f = FrameState::adopting(hot, false);
        f.stacked = true;
        f.saved_tmode = t.tmode;
        t.tmode = false;
        f.space = Some(space);
        f.parent_slot = Some(Slot::FrameOrd(parent));
        t.slot = Some(Slot::FrameOrd(frame));
        if let Some(ts) = t.spaces.get_mut(&space.space) {
            ts.seen = true;
            ts.depth = ts.depth.saturating_add(1);
        }
        self.frames.insert(frame.0, f);
        Ok(())
    }

    /// E2: `frame` becomes the first frame of a C-level evaluation; its
    /// delta memory is forgotten (§8.2).
    pub fn memo_reset(&mut self, frame: FrameKey) {
        if let Some(f) = self.frames.get_mut(&frame.0) {
            f.reset_memo();
        }
    }

    /// §4.2: a bias site with source index `source` and destination index
    /// `dest`: `bias += source + 1 − dest` (unclamped, wrapping). Returns
    /// whether the frame is tracked.
    pub fn bias_site(&mut self, frame: FrameKey, source: i64, dest: i64) -> bool {
        match self.frames.get_mut(&frame.0) {
            Some(f) => {
                f.set_bias(
                    f.bias()
                        .wrapping_add(source)
                        .wrapping_add(1)
                        .wrapping_sub(dest),
                );
                true
            }
            None => false,
        }
    }

    /// §5.2: `frame` starts or resumes executing on `thread`.
    ///
    /// A frame never initialized (created before the runtime saw it) gets a
    /// fresh record with the thread's `tmode`.
    pub fn activate(&mut self, thread: ThreadKey, frame: FrameKey) -> Result<(), EngineError> {
        let tmode = self.thread_ref(thread)?.tmode;
        let owner = self
            .frames
            .get(&frame.0)
            .and_then(|f| f.space)
            .map(|s| self.belongs(s, thread));
        if owner == Some(true) {
            return Ok(());
        }
        let cur_space = self.thread_ref(thread)?.cur_space;
        let space = self.ensure_space(thread, cur_space)?;
        if owner.is_none() && !self.frames.contains_key(&frame.0) {
            self.fresh_record(frame, tmode);
        }
        let Some(f) = self.frames.get_mut(&frame.0) else {
            return Ok(());
        };
        if owner == Some(false) {
            f.reset_keep_transparent(); // foreign-state rule
        }
        let t = self
            .threads
            .get_mut(&thread.0)
            .ok_or(EngineError::UnknownThread(thread))?;
        f.saved_tmode = t.tmode;
        t.tmode = f.transparent;
        f.space = Some(space);
        if f.transparent {
            return Ok(());
        }
        f.set_ord(0);
        f.parent_slot = t.slot;
        t.slot = Some(Slot::FrameOrd(frame));
        if let Some(ts) = t.spaces.get_mut(&space.space) {
            ts.seen = true;
            ts.depth = ts.depth.saturating_add(1);
        }
        Ok(())
    }

    /// §5.3: `frame` stops running on `thread` (return, unwind, suspension,
    /// `RETURN_GENERATOR` pop).
    pub fn deactivate(&mut self, thread: ThreadKey, frame: FrameKey) -> Result<(), EngineError> {
        self.thread_ref(thread)?;
        let Some(space) = self.frames.get(&frame.0).and_then(|f| f.space) else {
            return Ok(());
        };
        let belongs = self.belongs(space, thread);
        let Some(f) = self.frames.get_mut(&frame.0) else {
            return Ok(());
        };
        if !belongs {
            f.reset_keep_transparent();
            return Ok(());
        }
        let t = self
            .threads
            .get_mut(&thread.0)
            .ok_or(EngineError::UnknownThread(thread))?;
        t.tmode = f.saved_tmode;
        let mut bump = None;
        if !f.transparent {
            let parent = f.parent_slot;
            if t.slot == Some(Slot::FrameOrd(frame)) {
                t.slot = parent;
            }
            bump = parent;
            if let Some(ts) = t.spaces.get_mut(&space.space) {
                ts.depth = ts.depth.saturating_sub(1);
            }
        }
        f.space = None;
        f.parent_slot = None;
        f.set_ord(0);
        if t.slot.is_none() {
            t.slot = Some(Slot::RootCounter {
                thread,
                space: t.cur_space,
            });
        }
        if let Some(slot) = bump {
            self.bump(slot);
        }
        Ok(())
    }

    /// §7, ordinal part: the boundary before the instruction at `index` of
    /// `frame` on `thread`. Resets the frame's ordinal when it is visible and
    /// records `(frame, index)` as the thread's last dispatch.
    pub fn begin_instruction(
        &mut self,
        view: &impl FrameView,
        thread: ThreadKey,
        frame: FrameKey,
        index: i64,
    ) -> Result<Boundary, EngineError> {
        let space = self.visible_space(view, frame, index).map(|s| s.space);
        let visible = space.is_some();
        if visible {
            if let Some(f) = self.frames.get(&frame.0) {
                f.set_ord(0);
            }
        }
        let t = self.thread_mut(thread)?;
        t.last_dispatch = Some((frame, index));
        Ok(Boundary {
            visible,
            space,
            in_callback: t.in_callback,
        })
    }

    /// DESIGN-NOTES §4.1: at `start_frame` of a frame whose `previous` is the
    /// Python frame `caller`, whose `prev_instr` index is `caller_prev_instr`,
    /// apply the jump "last dispatched Q of this thread → caller_prev_instr + 1"
    /// when that last dispatch was in `caller`. Returns the applied site.
    pub fn start_frame_fix(
        &mut self,
        thread: ThreadKey,
        caller: FrameKey,
        caller_prev_instr: i64,
    ) -> Result<Option<BiasSite>, EngineError> {
        let t = self.thread_mut(thread)?;
        let Some((last_frame, q)) = t.last_dispatch else {
            return Ok(None);
        };
        if last_frame != caller {
            return Ok(None);
        }
        t.last_dispatch = None;
        let site = jumps::start_frame_fix(q, caller_prev_instr);
        if let Some(s) = site {
            self.bias_site(caller, s.source, s.dest);
        }
        Ok(site)
    }
}
