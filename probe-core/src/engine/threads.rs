//! Thread-state life cycle (§3, §11.4, §11.5) and callback invocation
//! (§12).

use super::keys::{Slot, SpaceId, ThreadKey, DISABLED_SPACE, ROOT_SPACE};
use super::state::{CallbackRecord, ThreadSpace, ThreadState};
use super::view::FrameView;
use super::{Engine, EngineError};
use std::collections::BTreeMap;

impl Engine {
    /// E7: a thread state with Retrace id `tid` is created; it starts in a
    /// fresh thread-space for `space` (its creator's current space, 0
    /// without creator), plus root. Replaces any previous record at the same
    /// address.
    pub fn new_thread(&mut self, thread: ThreadKey, tid: u64, space: SpaceId) {
        let mut spaces = BTreeMap::new();
        for id in [ROOT_SPACE, space] {
            if let std::collections::btree_map::Entry::Vacant(slot) = spaces.entry(id) {
                slot.insert(ThreadSpace::new(id, self.next_space_uid, tid));
                self.next_space_uid += 1;
            }
        }
        self.threads.insert(
            thread.0,
            ThreadState {
                tid,
                cur_space: space,
                slot: Some(Slot::RootCounter { thread, space }),
                tmode: false,
                in_callback: false,
                spaces,
                enters: Vec::new(),
                callbacks: Vec::new(),
                next_entry: 0,
                last_dispatch: None,
                retired: false,
            },
        );
    }

    /// §11.5 thread-state clear: non-root thread-spaces are freed, the
    /// thread returns to root and is retired (no more scheduling work).
    pub fn clear_thread(&mut self, thread: ThreadKey) -> Result<(), EngineError> {
        let t = self.thread_mut(thread)?;
        t.spaces.retain(|&id, _| id == ROOT_SPACE);
        t.cur_space = ROOT_SPACE;
        t.slot = Some(Slot::RootCounter {
            thread,
            space: ROOT_SPACE,
        });
        t.enters.clear();
        t.callbacks.clear();
        t.tmode = false;
        t.in_callback = false;
        t.last_dispatch = None;
        t.retired = true;
        Ok(())
    }

    /// Thread-state deletion: forgets the thread.
    pub fn remove_thread(&mut self, thread: ThreadKey) -> Option<ThreadState> {
        self.threads.remove(&thread.0)
    }

    /// §12 `invoke`, before the callback runs: `in_callback := true`,
    /// `tmode := true` (both saved), then `enter(T, 1)`.
    pub fn callback_enter(
        &mut self,
        view: &impl FrameView,
        thread: ThreadKey,
    ) -> Result<(), EngineError> {
        let t = self.thread_mut(thread)?;
        t.callbacks.push(CallbackRecord {
            saved_tmode: t.tmode,
            saved_in_callback: t.in_callback,
        });
        t.in_callback = true;
        t.tmode = true;
        self.enter(view, thread, DISABLED_SPACE)
    }

    /// §12 `invoke`, after the callback returned or raised: `leave(T)`, then
    /// restore `tmode` and `in_callback`.
    pub fn callback_exit(&mut self, thread: ThreadKey) -> Result<(), EngineError> {
        self.leave(thread)?;
        let t = self.thread_mut(thread)?;
        let saved = t
            .callbacks
            .pop()
            .ok_or(EngineError::UnbalancedCallback(thread))?;
        t.tmode = saved.saved_tmode;
        t.in_callback = saved.saved_in_callback;
        Ok(())
    }
}
