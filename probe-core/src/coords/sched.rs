//! The scheduling half of the boundary procedure (SEMANTICS §7 second half,
//! §13, §14, §15) on the coordinate state, and the registry operations of the
//! `_retrace` API.
//!
//! A boundary that reached the runtime and may need Python work comes back
//! from [`Coords::on_dispatch`] as a [`PendingBoundary`]; the runtime then
//! drops its lock and drives it through [`Coords::call_at_phase`],
//! [`Coords::switch_phase`] and [`Coords::resume_boundary`], running the
//! callbacks in between (without the lock: they run Python code, which
//! re-enters the runtime).

use super::{live, ApiError, Coords, InterpreterMemory, LiveView, NO_RECORD};
use crate::engine::{FrameKey, FrameView, SpaceId, ThreadKey};
use crate::location::Memory;
use crate::sched::{
    compare_target, CallAtFire, Callback, SlotContent, SwitchDecision, SwitchPlan, TargetOrder,
};
use std::sync::atomic::Ordering::Relaxed;

/// A boundary whose call_at or thread-switch work is still to be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingBoundary {
    pub tstate: u64,
    pub frame: FrameKey,
    /// The instruction being dispatched (`next_instr`).
    pub n_ptr: u64,
    /// The eval loop's stack pointer (the value stack's top).
    pub stack_pointer: u64,
    /// Its index in the frame's code.
    pub index: i64,
    /// The frame's space id when it is visible.
    pub space: Option<SpaceId>,
}

/// Why a `call_at` target cannot be armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArmError {
    /// `LookupError("unknown thread id")`.
    UnknownThread,
    /// `LookupError("unknown coordinate space")`.
    UnknownSpace,
    /// `ValueError("call_at coordinates are in the past")`.
    Past,
    Inactive,
}

impl From<ApiError> for ArmError {
    fn from(e: ApiError) -> ArmError {
        match e {
            ApiError::UnknownThread => ArmError::UnknownThread,
            _ => ArmError::Inactive,
        }
    }
}

impl Coords {
    /// Whether `tstate`'s dispatches must all reach the runtime: a coordinate
    /// target of its thread is armed (§7: checked at every visible boundary).
    pub(super) fn must_check(&self, tstate: u64) -> bool {
        self.sched.coordinate_armed()
            && self
                .engine
                .thread(ThreadKey(tstate))
                .is_some_and(|t| self.sched.coordinate_armed_for(t.tid))
    }

    /// After the coordinate part of a boundary: whether call_at or switch
    /// work remains (the common case — same thread, nothing armed — is
    /// settled here, under the lock).
    pub(super) fn boundary_work(
        &mut self,
        pending: PendingBoundary,
        in_callback: bool,
    ) -> Option<PendingBoundary> {
        if in_callback {
            return None;
        }
        let thread = ThreadKey(pending.tstate);
        let armed = pending.space.is_some() && self.must_check(pending.tstate);
        if !armed {
            // The common case, checked first: same thread, nothing armed.
            if self.sched.last_thread() == Some(thread) {
                return None;
            }
            if !self.sched.any_switch_callback() {
                if self.schedules(pending.tstate) {
                    self.sched.finish_switch(thread);
                }
                return None;
            }
        }
        self.schedules(pending.tstate).then_some(pending)
    }

    /// Whether `tstate` takes part in scheduling: a thread of the main
    /// interpreter (the registry and its callback objects belong to it; the
    /// runtime has no per-interpreter state yet) that was not cleared.
    pub(super) fn schedules(&self, tstate: u64) -> bool {
        let retired = self
            .engine
            .thread(ThreadKey(tstate))
            .is_none_or(|t| t.retired);
        !retired && self.main_interpreter(tstate)
    }

    /// Whether `tstate` belongs to the first interpreter the runtime saw a
    /// thread of (the main interpreter: its main thread runs first).
    pub(super) fn main_interpreter(&self, tstate: u64) -> bool {
        let interp = InterpreterMemory
            .read_u64(tstate.wrapping_add(self.offsets.tstate_interp))
            .unwrap_or(0);
        self.main_interp == 0 || interp == self.main_interp
    }

    /// §14.6 `check_call_at` at a pending boundary. Returns the callback to
    /// run (if any) and handles released by cleared slots.
    pub fn call_at_phase(&mut self, p: &PendingBoundary) -> (Option<CallAtFire>, Vec<Callback>) {
        if p.space.is_none() {
            return (None, Vec::new());
        }
        let thread = ThreadKey(p.tstate);
        let Some(tid) = self.engine.thread(thread).map(|t| t.tid) else {
            return (None, Vec::new());
        };
        let memory = InterpreterMemory;
        let view = LiveView {
            offsets: self.offsets,
            memory: &memory,
            executing: Some((p.frame, p.index)),
        };
        let engine = &self.engine;
        let fired = self.sched.check_call_at(tid, |space| {
            engine.coordinates(&view, thread, space, 0).ok().flatten()
        });
        self.publish_for(p.tstate, Some(p.frame));
        fired
    }

    /// §7's switch half at a pending boundary: the decision (the cursor
    /// already moved). A `Nothing` decision also finishes the switch.
    pub fn switch_phase(&mut self, p: &PendingBoundary) -> SwitchDecision {
        let thread = ThreadKey(p.tstate);
        // A cursor's thread may have run activations on the fast paths since
        // the runtime last ran for it: its delta must see those frames.
        for cursor in self.sched.cursors() {
            if cursor != thread {
                self.adopt(cursor.0);
            }
        }
        let memory = InterpreterMemory;
        let engine = &mut self.engine;
        let offsets = self.offsets;
        let plan = self.sched.plan_switch(thread, p.space, |old, space| {
            let view = live(offsets, &memory);
            engine.thread_delta(&view, old, space).map_err(|_| ())
        });
        match plan {
            SwitchPlan::Same => SwitchDecision::Nothing,
            SwitchPlan::Changed(SwitchDecision::Nothing) => {
                self.sched.finish_switch(thread);
                SwitchDecision::Nothing
            }
            SwitchPlan::Changed(decision) => decision,
        }
    }

    /// `interp.last_thread := T` after the switch callback returned.
    pub fn finish_switch(&mut self, tstate: u64) {
        self.sched.finish_switch(ThreadKey(tstate));
    }

    /// After Python ran at a boundary (callbacks, possibly on other threads
    /// too): make `tstate` the published thread again with `frame` current.
    pub fn resume_boundary(&mut self, p: &PendingBoundary) {
        self.switch_to(p.tstate);
        self.adopt(p.tstate);
        self.publish_for(p.tstate, Some(p.frame));
    }

    /// The Retrace id of the calling thread.
    fn caller_tid(&mut self, caller: u64) -> Result<(ThreadKey, u64), ApiError> {
        let me = self.current(caller)?;
        let tid = self
            .engine
            .thread(me)
            .map(|t| t.tid)
            .ok_or(ApiError::UnknownThread)?;
        Ok((me, tid))
    }

    /// §13.1 registration: `callback` (`None` clears) for `space`; the cursor
    /// starts at the caller when it has a frame visible in the space.
    /// Returns the handles the registry released.
    pub fn set_thread_switch_callback(
        &mut self,
        caller: u64,
        space: SpaceId,
        callback: Option<Callback>,
    ) -> Result<Vec<Callback>, ApiError> {
        let me = self.current(caller)?;
        let view = live(self.offsets, &InterpreterMemory);
        let visible = self
            .engine
            .coordinates(&view, me, space, 0)
            .ok()
            .flatten()
            .is_some_and(|c| !c.is_empty());
        Ok(self
            .sched
            .set_switch_callback(space, callback, visible.then_some(me)))
    }

    pub fn thread_switch_callback(&self, space: SpaceId) -> Option<Callback> {
        self.sched.switch_callback(space)
    }

    /// The current coordinates of `thread` in `space` (`None`: missing or unseen).
    fn current_vector(&self, thread: ThreadKey, space: SpaceId) -> Option<Vec<u64>> {
        let view = live(self.offsets, &InterpreterMemory);
        self.engine
            .coordinates(&view, thread, space, 0)
            .ok()
            .flatten()
    }

    /// §14.3: arm a coordinate target for the calling thread in `space`.
    /// On success returns the handles of the slot's previous content.
    pub fn arm_call_at_current(
        &mut self,
        caller: u64,
        space: SpaceId,
        target: Vec<u64>,
        hit: Callback,
        miss: Option<Callback>,
    ) -> Result<Vec<Callback>, ArmError> {
        let (me, tid) = self.caller_tid(caller)?;
        let now = self
            .current_vector(me, space)
            .ok_or(ArmError::UnknownSpace)?;
        if compare_target(&target, &now) == TargetOrder::Passed {
            return Err(ArmError::Past);
        }
        let released = self.sched.arm(
            space,
            SlotContent::Coordinate {
                owner: tid,
                target,
                hit,
                miss,
            },
        );
        self.publish_for(caller, self.current_frame(caller));
        Ok(released)
    }

    /// §14.5: arm a coordinate target for the thread with Retrace id `tid`.
    pub fn arm_call_at_thread(
        &mut self,
        caller: u64,
        tid: u64,
        space: SpaceId,
        target: Vec<u64>,
        hit: Callback,
        miss: Option<Callback>,
    ) -> Result<Vec<Callback>, ArmError> {
        self.current(caller)?;
        let thread = self.thread_by_id(caller, tid)?;
        let now = self
            .current_vector(thread, space)
            .ok_or(ArmError::UnknownSpace)?;
        if miss.is_none() && compare_target(&target, &now) == TargetOrder::Passed {
            return Err(ArmError::Past);
        }
        let released = self.sched.arm(
            space,
            SlotContent::Coordinate {
                owner: tid,
                target,
                hit,
                miss,
            },
        );
        self.publish_for(caller, self.current_frame(caller));
        Ok(released)
    }

    /// §14.4: a completion target of the calling thread in the slot of `space`.
    pub fn arm_completion(
        &mut self,
        caller: u64,
        space: SpaceId,
        done: Callback,
    ) -> Result<Vec<Callback>, ApiError> {
        let (_, tid) = self.caller_tid(caller)?;
        Ok(self
            .sched
            .arm(space, SlotContent::Completion { owner: tid, done }))
    }

    /// `call_at(None)`: empties the slot of `space`.
    pub fn clear_call_at(&mut self, space: SpaceId) -> Vec<Callback> {
        self.sched.clear_slot(space)
    }

    fn current_frame(&self, tstate: u64) -> Option<FrameKey> {
        live(self.offsets, &InterpreterMemory).innermost(ThreadKey(tstate))
    }

    /// §15 + §11.5 at `PyThreadState_Clear(tstate)`. When `natural`, the
    /// switch bookkeeping of `complete(X)` runs and the completion callbacks
    /// to invoke are returned (their slots cleared); the caller invokes them
    /// and then calls [`Coords::thread_cleared`].
    pub fn thread_completing(&mut self, tstate: u64, natural: bool) -> Vec<Callback> {
        let thread = ThreadKey(tstate);
        let Some(tid) = self.engine.thread(thread).map(|t| t.tid) else {
            return Vec::new();
        };
        if !natural || !self.schedules(tstate) {
            return Vec::new();
        }
        self.sched.complete(thread, tid).callbacks
    }

    /// §11.5 thread-state clear: cursors and `last_thread` naming the thread
    /// become none, its non-root thread-spaces are freed and it returns to
    /// root; its published fast-path state is withdrawn.
    pub fn thread_cleared(&mut self, tstate: u64) {
        let thread = ThreadKey(tstate);
        self.sched.forget_thread(thread);
        let _ = self.engine.clear_thread(thread);
        if tstate == self.last_thread {
            self.words
                .cur_record
                .store(super::record_address(&NO_RECORD), Relaxed);
            self.publish_slot(tstate);
        }
    }

    /// §12 `invoke` bookkeeping before a Retrace callback runs on the
    /// calling thread.
    pub fn callback_enter(&mut self, caller: u64) -> Result<(), ApiError> {
        let me = self.current(caller)?;
        let view = live(self.offsets, &InterpreterMemory);
        let entered = self
            .engine
            .callback_enter(&view, me)
            .map_err(|_| ApiError::UnknownThread);
        if caller == self.last_thread {
            self.publish_slot(caller);
        }
        entered
    }

    /// §12 `invoke` bookkeeping after the callback returned or raised.
    pub fn callback_exit(&mut self, caller: u64) -> Result<(), ApiError> {
        let me = self.current(caller)?;
        let left = self
            .engine
            .callback_exit(me)
            .map_err(|_| ApiError::Unbalanced);
        if caller == self.last_thread {
            self.publish_slot(caller);
        }
        left
    }

    /// §17.1 source space of the calling thread: its current space, or
    /// `None` while it is in transparent mode (callback code).
    pub fn dispatch_source_space(&mut self, caller: u64) -> Result<Option<SpaceId>, ApiError> {
        let me = self.current(caller)?;
        Ok(self
            .engine
            .thread(me)
            .and_then(|t| (!t.tmode).then_some(t.cur_space)))
    }
}
