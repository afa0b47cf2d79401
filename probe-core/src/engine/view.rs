//! The facts about frames that live in CPython memory, behind a trait.
//!
//! Visibility (§6) and coordinates need the interpreter's frame chain and
//! each frame's instruction index. The runtime implements [`FrameView`] by
//! reading `_PyInterpreterFrame`/`PyThreadState` fields at the offsets of the
//! descriptor; unit tests implement it with a fake stack.

use super::keys::{FrameKey, ThreadKey};

/// Read-only access to the interpreter's frames.
pub trait FrameView {
    /// The thread's real innermost frame (`tstate->cframe->current_frame` on
    /// 3.12), `None` when it runs no Python code.
    fn innermost(&self, thread: ThreadKey) -> Option<FrameKey>;
    /// `frame->previous`.
    fn previous(&self, frame: FrameKey) -> Option<FrameKey>;
    /// Instruction index (§0): −1 before the first instruction on 3.11/3.12.
    fn index(&self, frame: FrameKey) -> i64;
    /// 3.12+ `FRAME_OWNED_BY_CSTACK` (entry frames).
    fn owned_by_c_stack(&self, frame: FrameKey) -> bool;
    /// The frame belongs to a generator, coroutine or async generator.
    fn is_generator(&self, frame: FrameKey) -> bool;
    /// Index of the code object's first traceable instruction (its first
    /// `RESUME`).
    fn first_traceable(&self, frame: FrameKey) -> i64;
}
