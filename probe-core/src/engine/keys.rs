//! Identifiers the coordinate engine uses to name interpreter objects and
//! counters without holding pointers.
//!
//! CPython's reference keeps raw pointers to counters (`T.slot = &F.ord`);
//! here a counter is named by a [`Slot`] and resolved through the side tables
//! at the moment it is bumped, so a slot whose owner has gone away resolves to
//! nothing instead of dangling.

/// Address of a `_PyInterpreterFrame` (the key of its side-table record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameKey(pub u64);

/// Address of a `PyThreadState` (the key of its side-table record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadKey(pub u64);

/// A coordinate space id (§11.1): 0 root, 1 disabled, ≥ 2 dynamic.
pub type SpaceId = u32;

/// The root space.
pub const ROOT_SPACE: SpaceId = 0;
/// The disabled space (entering it keeps the thread's transparent mode).
pub const DISABLED_SPACE: SpaceId = 1;

/// One thread-space: space `space` on thread `thread`, incarnation `uid`.
///
/// The `uid` distinguishes a thread-space from a later one with the same
/// `(thread, space)` (thread states are reused by address, non-root
/// thread-spaces are freed at thread clear), so a frame that ran in a freed
/// thread-space is treated like a frame of another thread (§5.2's
/// foreign-state rule) instead of silently joining the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpaceRef {
    pub thread: ThreadKey,
    pub space: SpaceId,
    pub uid: u64,
}

/// A counter that ordinals and root counters live in (§3 `slot`,
/// `parent_slot`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// `&F.ord` of a frame.
    FrameOrd(FrameKey),
    /// `&S.root_counter` of one of the thread's thread-spaces.
    RootCounter { thread: ThreadKey, space: SpaceId },
    /// The local root counter of an active `enter` (§11.2), named by the
    /// entry's per-thread serial number.
    Local { thread: ThreadKey, entry: u64 },
}
