//! Side tables: state the runtime keeps per thread state and per frame.
//!
//! The binary rewriter cannot add fields to CPython's structs, so everything
//! the runtime tracks lives here, keyed by the address of the `PyThreadState`
//! or `_PyInterpreterFrame`. The coordinate engine will add fields (bias,
//! ordinal chains, parent slots) to [`ThreadEntry`] and [`FrameEntry`].

use crate::hasher::PtrMap;

/// What the runtime knows about one thread state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadEntry {
    pub tstate: u64,
    /// Order of first sight (0 for the first thread state seen).
    pub ordinal: u64,
    /// The frame most recently seen executing (or stored as current) on this thread.
    pub current_frame: u64,
    /// `_PyEval_EvalFrameDefault` entries observed.
    pub eval_entries: u64,
    /// Dispatches that reached `rt_dispatch`.
    pub slow_dispatches: u64,
    /// `next_instr` at the last slow-path dispatch.
    pub last_next_instr: u64,
}

/// Thread states by address, with a one-entry cache for the common case of
/// consecutive events on the same thread.
#[derive(Debug, Default)]
pub struct ThreadTable {
    entries: Vec<ThreadEntry>,
    index: PtrMap<usize>,
    /// `(tstate, position in entries)` of the last lookup.
    last: Option<(u64, usize)>,
    next_ordinal: u64,
}

impl ThreadTable {
    /// The entry for `tstate`, created on first sight.
    pub fn get_or_insert(&mut self, tstate: u64) -> &mut ThreadEntry {
        let position = match self.last {
            Some((cached, position)) if cached == tstate => position,
            _ => {
                let position = match self.index.get(&tstate) {
                    Some(&p) => p,
                    None => {
                        let p = self.entries.len();
                        self.entries.push(ThreadEntry {
                            tstate,
                            ordinal: self.next_ordinal,
                            ..ThreadEntry::default()
                        });
                        self.next_ordinal += 1;
                        self.index.insert(tstate, p);
                        p
                    }
                };
                self.last = Some((tstate, position));
                position
            }
        };
        &mut self.entries[position]
    }

    pub fn get(&self, tstate: u64) -> Option<&ThreadEntry> {
        self.index.get(&tstate).and_then(|&p| self.entries.get(p))
    }

    /// Forgets a thread state (when it is cleared); returns its entry.
    pub fn remove(&mut self, tstate: u64) -> Option<ThreadEntry> {
        let position = self.index.remove(&tstate)?;
        let removed = self.entries.swap_remove(position);
        if let Some(moved) = self.entries.get(position) {
            self.index.insert(moved.tstate, position);
        }
        self.last = None;
        Some(removed)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ThreadEntry> {
        self.entries.iter()
    }
}

/// Life-cycle state of a tracked frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameStatus {
    /// Activated (start_frame / throw entry) and not yet popped.
    Active,
    /// Copied into a generator or coroutine (`_PyFrame_Copy`) and not started since.
    Suspended,
}

/// What the runtime knows about one interpreter frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameEntry {
    pub frame: u64,
    /// Thread state that last activated it (0 if never activated).
    pub tstate: u64,
    pub status: FrameStatus,
    /// Times the frame was activated (a generator frame is activated on every resume).
    pub activations: u64,
    /// Order of creation in the table; copies get a fresh ordinal.
    pub ordinal: u64,
}

/// Frames by address.
#[derive(Debug, Default)]
pub struct FrameTable {
    frames: PtrMap<FrameEntry>,
    next_ordinal: u64,
}

impl FrameTable {
    /// A frame starts or resumes executing on `tstate`.
    pub fn activate(&mut self, frame: u64, tstate: u64) -> &FrameEntry {
        let next_ordinal = &mut self.next_ordinal;
        let entry = self.frames.entry(frame).or_insert_with(|| {
            let ordinal = *next_ordinal;
            *next_ordinal += 1;
            FrameEntry {
                frame,
                tstate,
                status: FrameStatus::Active,
                activations: 0,
                ordinal,
            }
        });
        entry.status = FrameStatus::Active;
        entry.tstate = tstate;
        entry.activations += 1;
        entry
    }

    /// A frame's life ends (cleared and popped, or its storage released).
    pub fn remove(&mut self, frame: u64) -> Option<FrameEntry> {
        self.frames.remove(&frame)
    }

    /// `_PyFrame_Copy(src, dest)`: `dest` inherits `src`'s state, suspended.
    /// Returns false when `src` is not tracked (nothing to inherit).
    pub fn copy(&mut self, src: u64, dest: u64) -> bool {
        let Some(source) = self.frames.get(&src).cloned() else {
            return false;
        };
        let copy = FrameEntry {
            frame: dest,
            tstate: source.tstate,
            status: FrameStatus::Suspended,
            activations: source.activations,
            ordinal: self.next_ordinal,
        };
        self.next_ordinal += 1;
        self.frames.insert(dest, copy);
        true
    }

    pub fn get(&self, frame: u64) -> Option<&FrameEntry> {
        self.frames.get(&frame)
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// Both side tables of one interpreter.
#[derive(Debug, Default)]
pub struct SideTables {
    pub threads: ThreadTable,
    pub frames: FrameTable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_created_once_and_cached() {
        let mut t = ThreadTable::default();
        t.get_or_insert(0x100).eval_entries += 1;
        t.get_or_insert(0x100).eval_entries += 1;
        t.get_or_insert(0x200).eval_entries += 5;
        t.get_or_insert(0x100).eval_entries += 1;
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.get(0x100).map(|e| (e.eval_entries, e.ordinal)),
            Some((3, 0))
        );
        assert_eq!(
            t.get(0x200).map(|e| (e.eval_entries, e.ordinal)),
            Some((5, 1))
        );
        assert!(t.get(0x300).is_none());
    }

    #[test]
    fn removing_a_thread_keeps_the_index_and_cache_consistent() {
        let mut t = ThreadTable::default();
        for ts in [0x100, 0x200, 0x300] {
            t.get_or_insert(ts).current_frame = ts + 1;
        }
        // Cache points at 0x300 (last position), which swap_remove moves.
        assert_eq!(t.remove(0x100).map(|e| e.tstate), Some(0x100));
        assert_eq!(t.get(0x300).map(|e| e.current_frame), Some(0x301));
        assert_eq!(t.get_or_insert(0x300).current_frame, 0x301);
        assert_eq!(t.get_or_insert(0x200).current_frame, 0x201);
        assert_eq!(t.len(), 2);
        assert!(t.remove(0x100).is_none());
        // A re-created thread state gets a new ordinal.
        assert_eq!(t.get_or_insert(0x100).ordinal, 3);
    }

    #[test]
    fn frame_lifecycle() {
        let mut f = FrameTable::default();
        assert_eq!(f.activate(0x1000, 0x10).activations, 1);
        assert_eq!(f.activate(0x2000, 0x10).ordinal, 1);
        // RETURN_GENERATOR: copy the thread frame into the generator, pop the original.
        assert!(f.copy(0x2000, 0x9000));
        assert!(f.remove(0x2000).is_some());
        let gen = f.get(0x9000).cloned().expect("copied");
        assert_eq!(gen.status, FrameStatus::Suspended);
        assert_eq!((gen.tstate, gen.activations, gen.ordinal), (0x10, 1, 2));
        // Resumed on another thread.
        let resumed = f.activate(0x9000, 0x20).clone();
        assert_eq!(resumed.status, FrameStatus::Active);
        assert_eq!(
            (resumed.tstate, resumed.activations, resumed.ordinal),
            (0x20, 2, 2)
        );
        assert_eq!(f.len(), 2);
        assert!(!f.copy(0x5555, 0x6666), "untracked source");
        assert!(f.get(0x6666).is_none());
        assert!(f.remove(0x1000).is_some());
        assert!(f.remove(0x1000).is_none());
        assert!(f.remove(0x9000).is_some());
        assert!(f.is_empty());
    }
}
