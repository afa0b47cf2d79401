//! Entering and leaving coordinate spaces (§11.2).

use super::keys::{Slot, SpaceId, ThreadKey, DISABLED_SPACE};
use super::state::EnterRecord;
use super::view::FrameView;
use super::{Engine, EngineError};

impl Engine {
    /// `enter(T, sid)`: activations on `thread` go to space `space` until the
    /// matching [`Engine::leave`]. They attach below the nearest frame
    /// visible in that space, or count into a local copy of the space's root
    /// counter when there is none.
    pub fn enter(
        &mut self,
        view: &impl FrameView,
        thread: ThreadKey,
        space: SpaceId,
    ) -> Result<(), EngineError> {
        let target = self.ensure_space(thread, space)?;
        let nearest = self.walk(view, thread, target).last().copied();
        let t = self.thread_mut(thread)?;
        let entry = t.next_entry;
        t.next_entry = t.next_entry.wrapping_add(1);
        let mut record = EnterRecord {
            entry,
            space,
            saved_space: t.cur_space,
            saved_slot: t.slot,
            saved_tmode: t.tmode,
            local: None,
        };
        if space != DISABLED_SPACE {
            t.tmode = false;
        }
        match nearest {
            Some(frame) => t.slot = Some(Slot::FrameOrd(frame)),
            None => {
                let root = t.spaces.get(&space).map_or(0, |s| s.root_counter);
                record.local = Some((root, root));
                t.slot = Some(Slot::Local { thread, entry });
            }
        }
        t.cur_space = space;
        t.enters.push(record);
        Ok(())
    }

    /// `leave(T)`, on return and on exception: stores a local root counter
    /// (advanced by one if nothing bumped it and the thread is not in
    /// transparent mode) and restores the space, slot and `tmode` saved by
    /// the matching [`Engine::enter`].
    pub fn leave(&mut self, thread: ThreadKey) -> Result<(), EngineError> {
        let t = self.thread_mut(thread)?;
        let record = t.enters.pop().ok_or(EngineError::UnbalancedLeave(thread))?;
        if let Some((mut local, initial)) = record.local {
            if local == initial && !t.tmode {
                local = local.wrapping_add(1);
            }
            if let Some(ts) = t.spaces.get_mut(&record.space) {
                ts.root_counter = local;
            }
        }
        t.cur_space = record.saved_space;
        t.slot = record.saved_slot;
        t.tmode = record.saved_tmode;
        Ok(())
    }
}
