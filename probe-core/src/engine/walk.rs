//! Visibility (§6) and the walk every query shares: from the thread's real
//! innermost frame along `previous` links, skipping non-matching frames,
//! reported oldest first.

use super::keys::{FrameKey, SpaceRef, ThreadKey};
use super::view::FrameView;
use super::Engine;

/// Frames followed before a walk gives up (a corrupt or cyclic chain must not
/// hang the interpreter).
pub const MAX_WALK: usize = 1 << 20;

impl Engine {
    /// The thread-space `frame` is visible in when its instruction index is
    /// `index`, or `None` when it is not visible (§6): not running,
    /// transparent, owned by the C stack, or an incomplete non-generator
    /// frame.
    pub(super) fn visible_space(
        &self,
        view: &impl FrameView,
        frame: FrameKey,
        index: i64,
    ) -> Option<SpaceRef> {
        let f = self.frames.get(&frame.0)?;
        let space = f.space?;
        if f.transparent || view.owned_by_c_stack(frame) {
            return None;
        }
        if !view.is_generator(frame) && index < view.first_traceable(frame) {
            return None;
        }
        Some(space)
    }

    /// The frames of `thread` visible in `space`, oldest first.
    pub(super) fn walk(
        &self,
        view: &impl FrameView,
        thread: ThreadKey,
        space: SpaceRef,
    ) -> Vec<FrameKey> {
        let mut out = Vec::new();
        let mut cursor = view.innermost(thread);
        let mut steps = 0;
        while let Some(frame) = cursor {
            if steps == MAX_WALK {
                break;
            }
            steps += 1;
            if self.visible_space(view, frame, view.index(frame)) == Some(space) {
                out.push(frame);
            }
            cursor = view.previous(frame);
        }
        out.reverse();
        out
    }

    /// `(coord, ord)` of `frame` at its current index.
    pub(super) fn pair(&self, view: &impl FrameView, frame: FrameKey) -> (u64, u64) {
        match self.frames.get(&frame.0) {
            Some(f) => (f.coord(view.index(frame)), f.ord()),
            None => (0, 0),
        }
    }
}
