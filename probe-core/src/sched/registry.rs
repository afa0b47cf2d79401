//! The per-interpreter scheduling registry (SEMANTICS §3): one entry per
//! space with a switch callback or a non-root slot (new entries at the
//! front, pruned when both are empty), the root slot, §7's `last_thread`
//! and `pending_completion`.

use super::compare::{compare_target, TargetOrder};
use crate::engine::{SpaceId, ThreadKey, ROOT_SPACE};

/// An opaque callback handle (a `PyObject *` whose strong reference the
/// registry owns while it is stored).
pub type Callback = u64;

/// What a `call_at` slot holds (§14.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SlotContent {
    #[default]
    Empty,
    /// A coordinate target armed by (or for) thread `owner`.
    Coordinate {
        owner: u64,
        target: Vec<u64>,
        hit: Callback,
        miss: Option<Callback>,
    },
    /// A completion target of thread `owner` (§14.4).
    Completion { owner: u64, done: Callback },
}

impl SlotContent {
    /// The handles this content owns.
    fn handles(self) -> Vec<Callback> {
        match self {
            SlotContent::Empty => Vec::new(),
            SlotContent::Coordinate { hit, miss, .. } => std::iter::once(hit).chain(miss).collect(),
            SlotContent::Completion { done, .. } => vec![done],
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, SlotContent::Empty)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    space: SpaceId,
    switch_cb: Option<Callback>,
    /// The last thread seen executing visible bytecode in the space.
    cursor: Option<ThreadKey>,
    /// Retrace id of the cursor's thread that completed naturally (§15).
    completed: Option<u64>,
    slot: SlotContent,
}

impl Entry {
    fn new(space: SpaceId) -> Entry {
        Entry {
            space,
            switch_cb: None,
            cursor: None,
            completed: None,
            slot: SlotContent::Empty,
        }
    }
}

/// A `call_at` callback to run now (§14.6): the slot is already cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallAtFire {
    /// Owned handle: the caller releases it after the call.
    pub callback: Callback,
    /// The exact target (hit) rather than an overshoot.
    pub hit: bool,
}

/// What `deliver_switch` decided (§13.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwitchDecision {
    /// Nothing to deliver.
    Nothing,
    /// Invoke `callback` (borrowed from the registry) on the current thread
    /// with `previous_delta` (`None` = the completion sentinel).
    Invoke {
        callback: Callback,
        previous_delta: Option<Vec<u64>>,
    },
    /// Computing the previous thread's delta failed: report it as unraisable
    /// with `callback`; the cursor did not move.
    Unraisable { callback: Callback },
}

/// The work of §7's second half at a boundary of thread `cur`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwitchPlan {
    /// `last_thread` is already `cur`: nothing.
    Same,
    /// A thread change: deliver (or not), then [`Registry::finish_switch`].
    Changed(SwitchDecision),
}

/// What natural completion of a thread found (§15).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// Completion callbacks to invoke, in slot order (owned handles).
    pub callbacks: Vec<Callback>,
}

/// The registry of one interpreter.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    entries: Vec<Entry>,
    root_slot: SlotContent,
    /// §7 `interp.last_thread`.
    last_thread: Option<ThreadKey>,
    pending_completion: bool,
}

impl Registry {
    fn entry(&self, space: SpaceId) -> Option<&Entry> {
        self.entries.iter().find(|e| e.space == space)
    }

    fn entry_mut(&mut self, space: SpaceId) -> &mut Entry {
        let at = match self.entries.iter().position(|e| e.space == space) {
            Some(at) => at,
            None => {
                self.entries.insert(0, Entry::new(space));
                0
            }
        };
        &mut self.entries[at]
    }

    fn prune(&mut self) {
        self.entries
            .retain(|e| e.switch_cb.is_some() || !e.slot.is_empty());
    }

    /// §13.1: `callback` (`None` clears) for `space`; a new callback's cursor
    /// is `cursor` (the registering thread when it has a frame visible in the
    /// space). Returns the handles the registry no longer holds.
    pub fn set_switch_callback(
        &mut self,
        space: SpaceId,
        callback: Option<Callback>,
        cursor: Option<ThreadKey>,
    ) -> Vec<Callback> {
        let released = match callback {
            None => match self.entries.iter_mut().find(|e| e.space == space) {
                Some(e) => {
                    e.cursor = None;
                    e.completed = None;
                    e.switch_cb.take().into_iter().collect()
                }
                None => Vec::new(),
            },
            Some(cb) => {
                let e = self.entry_mut(space);
                let old = e.switch_cb.replace(cb);
                e.cursor = cursor;
                e.completed = None;
                old.into_iter().collect()
            }
        };
        self.prune();
        released
    }

    /// The threads some switch cursor names (their deltas may be computed
    /// at the next thread change).
    pub fn cursors(&self) -> Vec<ThreadKey> {
        self.entries.iter().filter_map(|e| e.cursor).collect()
    }

    /// The stored switch callback of `space` (borrowed).
    pub fn switch_callback(&self, space: SpaceId) -> Option<Callback> {
        self.entry(space).and_then(|e| e.switch_cb)
    }

    /// Whether any space has a switch callback.
    pub fn any_switch_callback(&self) -> bool {
        self.entries.iter().any(|e| e.switch_cb.is_some())
    }

    /// Replaces the slot of `space` (§14.1: whatever its kind or owner).
    /// Returns the handles of the previous content.
    pub fn arm(&mut self, space: SpaceId, content: SlotContent) -> Vec<Callback> {
        let old = if space == ROOT_SPACE {
            std::mem::replace(&mut self.root_slot, content)
        } else {
            std::mem::replace(&mut self.entry_mut(space).slot, content)
        };
        self.prune();
        old.handles()
    }

    /// Empties the slot of `space`; returns the handles it held.
    pub fn clear_slot(&mut self, space: SpaceId) -> Vec<Callback> {
        if space != ROOT_SPACE && self.entry(space).is_none() {
            return Vec::new();
        }
        self.arm(space, SlotContent::Empty)
    }

    /// The slot of `space`.
    pub fn slot(&self, space: SpaceId) -> Option<&SlotContent> {
        if space == ROOT_SPACE {
            Some(&self.root_slot)
        } else {
            self.entry(space).map(|e| &e.slot)
        }
    }

    /// `(space, slot)` pairs: root first, then non-root slots in registry order.
    fn slots(&self) -> impl Iterator<Item = (SpaceId, &SlotContent)> {
        std::iter::once((ROOT_SPACE, &self.root_slot))
            .chain(self.entries.iter().map(|e| (e.space, &e.slot)))
    }

    fn take_slot(&mut self, space: SpaceId) -> SlotContent {
        let taken = if space == ROOT_SPACE {
            std::mem::take(&mut self.root_slot)
        } else {
            match self.entries.iter_mut().find(|e| e.space == space) {
                Some(e) => std::mem::take(&mut e.slot),
                None => SlotContent::Empty,
            }
        };
        self.prune();
        taken
    }

    /// Whether a coordinate target is armed anywhere (§7).
    pub fn coordinate_armed(&self) -> bool {
        self.slots()
            .any(|(_, s)| matches!(s, SlotContent::Coordinate { .. }))
    }

    /// Whether a coordinate target of thread `tid` is armed.
    pub fn coordinate_armed_for(&self, tid: u64) -> bool {
        self.slots()
            .any(|(_, s)| matches!(s, SlotContent::Coordinate { owner, .. } if *owner == tid))
    }

    /// §14.6 `check_call_at` for thread `tid`: `current(space)` gives the
    /// thread's coordinates in a space (walking from the executing frame),
    /// `None` when its thread-space is missing or unseen. Returns the
    /// callback to run (at most one per boundary) and the handles released
    /// by cleared slots.
    pub fn check_call_at(
        &mut self,
        tid: u64,
        mut current: impl FnMut(SpaceId) -> Option<Vec<u64>>,
    ) -> (Option<CallAtFire>, Vec<Callback>) {
        let mut released = Vec::new();
        let candidates: Vec<SpaceId> = self
            .slots()
            .filter(|(_, s)| matches!(s, SlotContent::Coordinate { owner, .. } if *owner == tid))
            .map(|(space, _)| space)
            .collect();
        for space in candidates {
            let Some(SlotContent::Coordinate { target, .. }) = self.slot(space) else {
                continue;
            };
            let order = current(space).map(|now| compare_target(target, &now));
            let fire = match order {
                Some(TargetOrder::NotReached) => continue,
                None => None,
                Some(o) => Some(o == TargetOrder::Hit),
            };
            let SlotContent::Coordinate { hit, miss, .. } = self.take_slot(space) else {
                continue;
            };
            match fire {
                // A missing or unseen thread-space clears the slot silently.
                None => released.extend(std::iter::once(hit).chain(miss)),
                Some(true) => {
                    released.extend(miss);
                    return (
                        Some(CallAtFire {
                            callback: hit,
                            hit: true,
                        }),
                        released,
                    );
                }
                Some(false) => {
                    released.push(hit);
                    if let Some(callback) = miss {
                        return (
                            Some(CallAtFire {
                                callback,
                                hit: false,
                            }),
                            released,
                        );
                    }
                    // No overshoot callback: the target silently expires.
                }
            }
        }
        (None, released)
    }

    /// §7's second half for a boundary of `cur` (not in a callback) whose
    /// executing frame is visible in `frame_space` (`None`: invisible).
    /// `delta_of(old, space)` is `thread_delta_for` of §8.2 (consuming the
    /// old thread's stream). After the decision's callback (if any) ran, the
    /// caller must call [`Registry::finish_switch`].
    pub fn plan_switch(
        &mut self,
        cur: ThreadKey,
        frame_space: Option<SpaceId>,
        mut delta_of: impl FnMut(ThreadKey, SpaceId) -> Result<Option<Vec<u64>>, ()>,
    ) -> SwitchPlan {
        if self.last_thread == Some(cur) {
            return SwitchPlan::Same;
        }
        if (self.last_thread.is_none() && !self.pending_completion) || !self.any_switch_callback() {
            return SwitchPlan::Changed(SwitchDecision::Nothing);
        }
        for e in &mut self.entries {
            let Some(callback) = e.switch_cb else {
                continue;
            };
            if frame_space != Some(e.space) {
                continue;
            }
            let decision = match e.cursor {
                Some(old) if old == cur => SwitchDecision::Nothing,
                None => {
                    e.cursor = Some(cur);
                    match e.completed.take() {
                        Some(_) => SwitchDecision::Invoke {
                            callback,
                            previous_delta: None,
                        },
                        None => SwitchDecision::Nothing,
                    }
                }
                Some(old) => match delta_of(old, e.space) {
                    Err(()) => SwitchDecision::Unraisable { callback },
                    Ok(d) => {
                        e.cursor = Some(cur);
                        match d {
                            None => SwitchDecision::Nothing,
                            Some(d) => SwitchDecision::Invoke {
                                callback,
                                previous_delta: Some(d),
                            },
                        }
                    }
                },
            };
            return SwitchPlan::Changed(decision);
        }
        SwitchPlan::Changed(SwitchDecision::Nothing)
    }

    /// After a thread change of `cur` was handled: `last_thread := cur`,
    /// `pending_completion := false`.
    pub fn finish_switch(&mut self, cur: ThreadKey) {
        self.last_thread = Some(cur);
        self.pending_completion = false;
    }

    /// §7 `interp.last_thread`.
    pub fn last_thread(&self) -> Option<ThreadKey> {
        self.last_thread
    }

    /// §15 `complete(X)` for the thread state `thread` with Retrace id `tid`:
    /// switch bookkeeping, then the completion callbacks to invoke (their
    /// slots already cleared).
    pub fn complete(&mut self, thread: ThreadKey, tid: u64) -> Completion {
        let mut marked = false;
        for e in &mut self.entries {
            if e.cursor == Some(thread) {
                e.cursor = None;
                e.completed = Some(tid);
                marked = true;
            }
        }
        if self.last_thread == Some(thread) {
            marked = true;
        }
        if marked {
            self.last_thread = None;
            self.pending_completion = true;
        }
        let spaces: Vec<SpaceId> = self
            .slots()
            .filter(|(_, s)| matches!(s, SlotContent::Completion { owner, .. } if *owner == tid))
            .map(|(space, _)| space)
            .collect();
        let mut callbacks = Vec::new();
        for space in spaces {
            if let SlotContent::Completion { done, .. } = self.take_slot(space) {
                callbacks.push(done);
            }
        }
        Completion { callbacks }
    }

    /// §11.5 at thread-state clear (after any natural completion): cursors
    /// and `last_thread` naming `thread` become none, silently.
    pub fn forget_thread(&mut self, thread: ThreadKey) {
        for e in &mut self.entries {
            if e.cursor == Some(thread) {
                e.cursor = None;
            }
        }
        if self.last_thread == Some(thread) {
            self.last_thread = None;
        }
    }
}
