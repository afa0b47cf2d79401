//! The per-frame, per-thread and per-thread-space records of SEMANTICS.md §3.
//!
//! Plain data with their initial values; the rules that change them live in
//! the event modules ([`super::lifecycle`], [`super::spaces`],
//! [`super::threads`]).

use super::keys::{FrameKey, Slot, SpaceId, SpaceRef};
use crate::mixing::n;
use retrace_abi::HotFrame;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

/// `memo_instr` of a frame that has no delta memory (Appendix B).
pub const MEMO_INSTR_UNSET: u64 = u64::MAX;
/// `memo_ord` of a frame without delta memory, and `memo_root` of a
/// thread-space that never produced a delta (Appendix B).
pub const MEMO_ORD_UNSET: u64 = u64::MAX - 1;

/// What the engine keeps per interpreter frame (§3).
///
/// `bias` and `ord` live in the frame's [`HotFrame`], which the dispatch
/// stubs read and write inline; the rest is only touched by the runtime.
#[derive(Clone, Debug)]
pub struct FrameState {
    /// The stub-visible record (`bias`, `ord`, dispatch cache).
    pub hot: &'static HotFrame,
    /// `hot` sits on its thread's record stack (pushed by the `start_frame`
    /// fast path) rather than in the [`HotPool`].
    pub stacked: bool,
    /// Counter bumped when the frame stops running.
    pub parent_slot: Option<Slot>,
    /// Owning thread-space while running.
    pub space: Option<SpaceRef>,
    /// Created while its thread was in transparent mode (§5.1); for life.
    pub transparent: bool,
    /// The thread's `tmode` saved at activation, restored at deactivation.
    pub saved_tmode: bool,
    /// Delta memory (§8.2).
    pub memo_space: Option<SpaceRef>,
    pub memo_instr: u64,
    pub memo_ord: u64,
}

impl FrameState {
    /// A freshly initialized record (§5.1) for `frame` on a thread whose
    /// `tmode` is `transparent`, using the stub record `hot`.
    pub fn new(hot: &'static HotFrame, frame: FrameKey, transparent: bool) -> Self {
        reset_hot(hot, frame);
        FrameState::adopting(hot, transparent)
    }

    /// A record around `hot` as it is (an activation the fast path already
    /// began: bias, ordinal and dispatch cache are live).
    pub fn adopting(hot: &'static HotFrame, transparent: bool) -> Self {
        FrameState {
            hot,
            stacked: false,
            parent_slot: None,
            space: None,
            transparent,
            saved_tmode: false,
            memo_space: None,
            memo_instr: MEMO_INSTR_UNSET,
            memo_ord: MEMO_ORD_UNSET,
        }
    }

    /// Back to the initial values, keeping `transparent` (§5.2 foreign-state
    /// rule) and the stub record.
    pub fn reset_keep_transparent(&mut self) {
        let frame = FrameKey(self.hot.frame.load(Relaxed));
        let stacked = self.stacked;
        *self = FrameState::new(self.hot, frame, self.transparent);
        self.stacked = stacked;
    }

    /// Forgets the delta memory (E2, §8.2).
    pub fn reset_memo(&mut self) {
        self.memo_space = None;
        self.memo_instr = MEMO_INSTR_UNSET;
        self.memo_ord = MEMO_ORD_UNSET;
    }

    /// Signed offset added to the instruction index (§4.1).
    pub fn bias(&self) -> i64 {
        self.hot.bias.load(Relaxed)
    }

    pub fn set_bias(&self, bias: i64) {
        self.hot.bias.store(bias, Relaxed);
    }

    /// Child-activation counter of the current instruction (§4.3).
    pub fn ord(&self) -> u64 {
        self.hot.ord.load(Relaxed)
    }

    pub fn set_ord(&self, ord: u64) {
        self.hot.ord.store(ord, Relaxed);
    }

    /// `coord(F) = max(0, bias + i)` for instruction index `index` (§4.1).
    pub fn coord(&self, index: i64) -> u64 {
        let sum = i128::from(self.bias()) + i128::from(index);
        // The sum of two i64 lies in (-2^64, 2^64 - 1): clamped at 0 it fits a word.
        u64::try_from(sum.max(0)).unwrap_or(u64::MAX)
    }
}

/// A stub record in its initial state for `frame`: no dispatch cached
/// (`last_n` 1 matches no `prev_instr`), bias and ordinal 0, no fast-path
/// flags.
pub fn reset_hot(hot: &HotFrame, frame: FrameKey) {
    hot.frame.store(frame.0, Relaxed);
    hot.expect.store(0, Relaxed);
    hot.last_n.store(1, Relaxed);
    hot.ord.store(0, Relaxed);
    hot.bias.store(0, Relaxed);
    hot.flags.store(0, Relaxed);
    hot.persistent.store(0, Relaxed);
}

/// Stub records with addresses that never change: pages are allocated once
/// and kept for the life of the process, records are recycled.
#[derive(Debug, Default)]
pub struct HotPool {
    free: Vec<&'static HotFrame>,
    allocated: usize,
}

/// Records per page.
const HOT_PAGE: usize = 256;

impl HotPool {
    /// A record (in no particular state).
    pub fn alloc(&mut self) -> &'static HotFrame {
        loop {
            if let Some(hot) = self.free.pop() {
                return hot;
            }
            let page: &'static [HotFrame] = Box::leak(
                (0..HOT_PAGE)
                    .map(|_| HotFrame::default())
                    .collect::<Box<[_]>>(),
            );
            self.allocated += HOT_PAGE;
            self.free.extend(page.iter().rev());
        }
    }

    /// Returns `hot` to the pool; it matches no frame until reused.
    pub fn free(&mut self, hot: &'static HotFrame) {
        hot.frame.store(0, Relaxed);
        hot.last_n.store(1, Relaxed);
        self.free.push(hot);
    }

    /// Records ever allocated (in use or free).
    pub fn allocated(&self) -> usize {
        self.allocated
    }
}

/// One space's state on one thread (§3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadSpace {
    pub id: SpaceId,
    /// Incarnation number (see [`SpaceRef::uid`]).
    pub uid: u64,
    /// Set by the first non-transparent activation; never reset.
    pub seen: bool,
    /// Running non-transparent frames of this space (saturating).
    pub depth: u32,
    /// Root activations completed in this space on this thread.
    pub root_counter: u64,
    /// Root counter at the last delta ([`MEMO_ORD_UNSET`] = none yet).
    pub memo_root: u64,
    /// `N(tid)`: the location-hash seed.
    pub seed: u64,
}

impl ThreadSpace {
    pub fn new(id: SpaceId, uid: u64, tid: u64) -> Self {
        ThreadSpace {
            id,
            uid,
            seen: false,
            depth: 0,
            root_counter: 0,
            memo_root: MEMO_ORD_UNSET,
            seed: n(tid),
        }
    }
}

/// What `enter` saved, restored by the matching `leave` (§11.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnterRecord {
    /// Serial number naming this entry's local counter ([`Slot::Local`]).
    pub entry: u64,
    /// The entered space.
    pub space: SpaceId,
    pub saved_space: SpaceId,
    pub saved_slot: Option<Slot>,
    pub saved_tmode: bool,
    /// `(local, initial)` when the space was entered at its root.
    pub local: Option<(u64, u64)>,
}

/// What a callback invocation saved (§12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallbackRecord {
    pub saved_tmode: bool,
    pub saved_in_callback: bool,
}

/// What the engine keeps per thread state (§3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadState {
    /// Retrace thread id (never 0).
    pub tid: u64,
    /// Where activations go.
    pub cur_space: SpaceId,
    /// The counter the next activation adopts as its parent slot.
    pub slot: Option<Slot>,
    /// Transparent mode (§5.1).
    pub tmode: bool,
    /// A Retrace callback is running on this thread (§12).
    pub in_callback: bool,
    /// Thread-spaces by id (root always present).
    pub spaces: BTreeMap<SpaceId, ThreadSpace>,
    /// Active `enter`s, innermost last.
    pub enters: Vec<EnterRecord>,
    /// Active callback invocations, innermost last.
    pub callbacks: Vec<CallbackRecord>,
    /// Next [`EnterRecord::entry`] serial.
    pub next_entry: u64,
    /// Frame and instruction index of this thread's last boundary (the `Q`
    /// of the start_frame fix, DESIGN-NOTES §4.1).
    pub last_dispatch: Option<(FrameKey, i64)>,
    /// The thread state was cleared (§11.5): whatever Python code the clear
    /// itself still runs (finalizers of thread-local data) does no call_at or
    /// switch work and never becomes a cursor or the last thread again.
    pub retired: bool,
}
