//! Queries over a walk: `coordinates` (§8.1), `thread_delta` (§8.2),
//! `location_hash` (§9.3) and the visible pairs used for thread-id seeding
//! (§9.4).

use super::keys::{FrameKey, SpaceId, SpaceRef, ThreadKey};
use super::state::MEMO_ORD_UNSET;
use super::view::FrameView;
use super::{Engine, EngineError};
use crate::ids::{self, FramePair};
use retrace_abi::HOT_MEMO_RESET;
use std::sync::atomic::Ordering::Relaxed;

impl Engine {
    /// The seen thread-space of `thread` for `space`, `None` when missing or
    /// unseen.
    fn seen_space(
        &self,
        thread: ThreadKey,
        space: SpaceId,
    ) -> Result<Option<SpaceRef>, EngineError> {
        let t = self.thread_ref(thread)?;
        Ok(t.spaces.get(&space).filter(|s| s.seen).map(|s| SpaceRef {
            thread,
            space,
            uid: s.uid,
        }))
    }

    /// `(coord, ord)` of every frame of `thread` visible in `space`, oldest
    /// first, whether or not the thread-space was seen (§9.4 seeds from the
    /// parent's current space unconditionally). Empty when the thread-space
    /// does not exist.
    pub fn visible_pairs(
        &self,
        view: &impl FrameView,
        thread: ThreadKey,
        space: SpaceId,
    ) -> Result<Vec<FramePair>, EngineError> {
        self.thread_ref(thread)?;
        let Some(sref) = self.space_ref(thread, space) else {
            return Ok(Vec::new());
        };
        Ok(self
            .walk(view, thread, sref)
            .into_iter()
            .map(|f| self.pair(view, f))
            .collect())
    }

    /// §8.1: the flattened `(instruction, ordinal)` words of `thread` in
    /// `space` from word `drop` on; `None` when the thread-space is missing
    /// or unseen.
    pub fn coordinates(
        &self,
        view: &impl FrameView,
        thread: ThreadKey,
        space: SpaceId,
        drop: usize,
    ) -> Result<Option<Vec<u64>>, EngineError> {
        let Some(sref) = self.seen_space(thread, space)? else {
            return Ok(None);
        };
        let words: Vec<u64> = self
            .walk(view, thread, sref)
            .into_iter()
            .flat_map(|f| {
                let (c, o) = self.pair(view, f);
                [c, o]
            })
            .collect();
        Ok(Some(
            words.get(drop..).map(<[u64]>::to_vec).unwrap_or_default(),
        ))
    }

    /// §8.2: `(common, *W[common:])` for `thread` in `space`, updating the
    /// delta memory; `None` when the thread-space is missing or unseen.
    /// Consumers rebuild with `del stack[d[0]:]; stack.extend(d[1:])`.
    pub fn thread_delta(
        &mut self,
        view: &impl FrameView,
        thread: ThreadKey,
        space: SpaceId,
    ) -> Result<Option<Vec<u64>>, EngineError> {
        let Some(sref) = self.seen_space(thread, space)? else {
            return Ok(None);
        };
        let frames: Vec<FrameKey> = self.walk(view, thread, sref);
        let mut words = Vec::with_capacity(frames.len() * 2);
        for &f in &frames {
            let (c, o) = self.pair(view, f);
            words.push(c);
            words.push(o);
        }
        let root_counter = self
            .threads
            .get(&thread.0)
            .and_then(|t| t.spaces.get(&space))
            .map_or(0, |s| s.root_counter);
        let memo_root = self
            .threads
            .get(&thread.0)
            .and_then(|t| t.spaces.get(&space))
            .map_or(MEMO_ORD_UNSET, |s| s.memo_root);
        let mut common = if memo_root != MEMO_ORD_UNSET && memo_root == root_counter {
            words.len()
        } else {
            0
        };
        for (p, &f) in frames.iter().enumerate() {
            let (instr, ord) = (words[2 * p], words[2 * p + 1]);
            if let Some(state) = self.frames.get_mut(&f.0) {
                // An E2 reset the eval-entry fast path recorded (§8.2).
                if state.hot.flags.load(Relaxed) & HOT_MEMO_RESET != 0 {
                    state.hot.flags.fetch_and(!HOT_MEMO_RESET, Relaxed);
                    state.reset_memo();
                }
                let same_space = state.memo_space == Some(sref);
                if !same_space || state.memo_instr != instr {
                    common = common.min(2 * p);
                }
                if !same_space || state.memo_ord != ord {
                    common = common.min(2 * p + 1);
                }
                state.memo_space = Some(sref);
                state.memo_instr = instr;
                state.memo_ord = ord;
            }
        }
        if let Some(ts) = self
            .threads
            .get_mut(&thread.0)
            .and_then(|t| t.spaces.get_mut(&space))
        {
            ts.memo_root = ts.root_counter;
        }
        let mut delta = Vec::with_capacity(1 + words.len() - common);
        delta.push(common as u64);
        delta.extend_from_slice(&words[common..]);
        Ok(Some(delta))
    }

    /// §9.3 / §8.3: the location hash of `thread` in `space`; `None` when
    /// the thread-space is missing or unseen.
    pub fn location_hash(
        &self,
        view: &impl FrameView,
        thread: ThreadKey,
        space: SpaceId,
    ) -> Result<Option<u64>, EngineError> {
        let Some(sref) = self.seen_space(thread, space)? else {
            return Ok(None);
        };
        let Some(ts) = self
            .threads
            .get(&thread.0)
            .and_then(|t| t.spaces.get(&space))
        else {
            return Ok(None);
        };
        let pairs: Vec<FramePair> = self
            .walk(view, thread, sref)
            .into_iter()
            .map(|f| self.pair(view, f))
            .collect();
        Ok(Some(ids::location_hash(
            self.mixer,
            ts.seed,
            ts.root_counter,
            &pairs,
        )))
    }
}

impl Engine {
    /// §10: the location hash of `thread` in the thread-space of the
    /// nearest frame visible in any space (walk §6), `None` when the walk
    /// finds no visible frame.
    pub fn nearest_visible_hash(
        &self,
        view: &impl FrameView,
        thread: ThreadKey,
    ) -> Result<Option<u64>, EngineError> {
        self.thread_ref(thread)?;
        let mut cursor = view.innermost(thread);
        let mut steps = 0;
        while let Some(frame) = cursor {
            if steps == super::walk::MAX_WALK {
                break;
            }
            steps += 1;
            if let Some(space) = self.visible_space(view, frame, view.index(frame)) {
                if self.belongs(space, thread) {
                    return self.location_hash(view, thread, space.space);
                }
            }
            cursor = view.previous(frame);
        }
        Ok(None)
    }
}
