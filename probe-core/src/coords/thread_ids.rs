//! Thread creation with parent-derived Retrace ids (SEMANTICS §9.4) and the
//! resolution of Retrace ids / native idents (§9.5), on the coordinate state.
//!
//! * [`Coords::register_started_thread`]: `_thread.start_new_thread` created a
//!   thread state for the thread it starts (before the OS thread runs any
//!   Python code); its id is derived from the starter (`P`): its id, its
//!   current space and the frames visible there, with collision retries
//!   against the ids live thread states hold. The child record starts in a
//!   fresh thread-space for the starter's current space (§11.4), and its
//!   serial is recorded so that [`Coords::ensure_thread`] accepts it instead
//!   of deriving a parentless id.
//! * [`Coords::ident_entries`] / [`Coords::resolve_ident`]: the thread
//!   states of the caller's interpreter with their native idents (CPython's
//!   `PyThreadState.thread_id`, else the ident recorded at start) and Retrace
//!   ids, and §9.5's rule choosing the one a number names.
//!
//! The native-ident offset is passed in by the caller (it is not among the
//! engine's frame offsets). Everything here reads interpreter memory only:
//! no Python code runs, so it may be called under the runtime's lock.

use super::{live, ApiError, Coords, InterpreterMemory};
use crate::engine::ThreadKey;
use crate::hasher::PtrMap;
use crate::ids::{self, Parent};
use crate::location::Memory;
use crate::mixing::DEFAULT_MIXER;
use std::sync::Mutex;

/// Thread-list walks give up after this many thread states (a corrupt or
/// cyclic list must not hang the interpreter).
const MAX_THREADS: usize = 1 << 16;

/// Native idents recorded when `_thread` started a thread, by thread-state
/// address: `(PyThreadState.id, ident)`. Consulted while CPython's own
/// `thread_id` is still 0 (the OS thread has not bound its state yet).
static STARTED: Mutex<Option<PtrMap<(u64, u64)>>> = Mutex::new(None);

fn started() -> std::sync::MutexGuard<'static, Option<PtrMap<(u64, u64)>>> {
    // A poisoned lock only means a panic elsewhere; the map stays usable.
    STARTED.lock().unwrap_or_else(|e| e.into_inner())
}

/// One thread state as §9.5's resolution sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentEntry {
    /// `PyThreadState` address.
    pub tstate: u64,
    /// CPython's ident (`PyThreadState.thread_id`), else the one recorded at
    /// `_thread` start, else 0.
    pub native: u64,
    /// The Retrace id.
    pub tid: u64,
}

/// §9.5: the thread state `x` names among `threads`, if any: one native
/// match and no Retrace match on another thread → it; no native match and
/// one Retrace match → it; otherwise (and for `x == 0`) none. Retrace ids are
/// compared as C `unsigned long`, a word on the LP64 targets supported.
pub fn resolve(threads: &[IdentEntry], x: u64) -> Option<IdentEntry> {
    if x == 0 {
        return None;
    }
    let mut native = threads.iter().filter(|t| t.native == x);
    let mut retrace = threads.iter().filter(|t| t.tid == x);
    match (native.next(), native.next()) {
        (Some(n), None) => retrace.all(|r| r.tstate == n.tstate).then_some(*n),
        (None, _) => match (retrace.next(), retrace.next()) {
            (Some(r), None) => Some(*r),
            _ => None,
        },
        _ => None,
    }
}

impl Coords {
    fn word(&self, address: u64) -> u64 {
        InterpreterMemory.read_u64(address).unwrap_or(0)
    }

    /// `PyThreadState.id` of `tstate`.
    fn serial_of(&self, tstate: u64) -> u64 {
        self.word(tstate.wrapping_add(self.offsets.tstate_id))
    }

    /// The head of the thread list of `tstate`'s interpreter (0 when
    /// `tstate` is 0 or unreadable).
    pub fn threads_head(&self, tstate: u64) -> u64 {
        if tstate == 0 {
            return 0;
        }
        let interp = self.word(tstate.wrapping_add(self.offsets.tstate_interp));
        if interp == 0 {
            return 0;
        }
        self.word(interp.wrapping_add(self.offsets.interp_threads_head))
    }

    /// The thread states of `tstate`'s interpreter, newest first.
    pub(super) fn interpreter_threads(&self, tstate: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut ts = self.threads_head(tstate);
        while ts != 0 && out.len() < MAX_THREADS {
            out.push(ts);
            ts = self.word(ts.wrapping_add(self.offsets.tstate_next));
        }
        out
    }

    /// Whether the engine's record of `tstate` is of the thread state now
    /// at that address (it was announced with its current serial).
    fn announced(&self, tstate: u64) -> bool {
        self.engine.thread(ThreadKey(tstate)).is_some()
            && self.serials.get(&tstate) == Some(&self.serial_of(tstate))
    }

    /// The Retrace id `tstate` holds, if it was announced.
    pub(super) fn held_id(&self, tstate: u64) -> Option<u64> {
        self.announced(tstate)
            .then(|| self.engine.thread(ThreadKey(tstate)).map(|t| t.tid))
            .flatten()
    }

    /// `(PyThreadState.id, Retrace id)` of `tstate`, announcing it first if
    /// needed (parentless, §9.4, unless it was registered at its start).
    pub fn thread_identity(&mut self, tstate: u64) -> Option<(u64, u64)> {
        if tstate == 0 {
            return None;
        }
        let key = self.ensure_thread(tstate, &InterpreterMemory);
        let tid = self.engine.thread(key)?.tid;
        Some((self.serial_of(tstate), tid))
    }

    /// §9.4 for a thread started by `_thread.start_new_thread` on the
    /// calling thread `starter`: finds the thread state the start created
    /// (in front of `old_head`, the list head before the call, and not yet
    /// announced; bound to `native_ident` or not bound yet), derives its id
    /// from the starter and creates its record in a fresh thread-space for
    /// the starter's current space. `thread_id_offset` is the offset of
    /// `PyThreadState.thread_id`. Returns `(child thread state, child id)`.
    pub fn register_started_thread(
        &mut self,
        starter: u64,
        old_head: u64,
        native_ident: u64,
        thread_id_offset: u64,
    ) -> Result<(u64, u64), ApiError> {
        self.current(starter)?;
        let child = self.find_started(starter, old_head, native_ident, thread_id_offset)?;
        let tid = self.register_child(starter, child)?;
        started()
            .get_or_insert_with(PtrMap::default)
            .insert(child, (self.serial_of(child), native_ident));
        Ok((child, tid))
    }

    /// §9.4 for a thread state that C code created with
    /// `PyThreadState_New` on the calling thread `creator` (an extension's own
    /// threads): its id derives from the creator's coordinates at the call.
    /// Returns the child's id.
    pub fn register_created_thread(&mut self, creator: u64, child: u64) -> Result<u64, ApiError> {
        if child == 0 || child == creator || self.announced(child) {
            return Err(ApiError::UnknownThread);
        }
        self.current(creator)?;
        self.register_child(creator, child)
    }

    /// Derives the id of the new thread state `child` from `parent` (§9.4:
    /// its id, current space and visible pairs there; collisions retried
    /// against the live thread states of the interpreter) and creates its
    /// record in a fresh thread-space for the parent's current space.
    fn register_child(&mut self, parent: u64, child: u64) -> Result<u64, ApiError> {
        let parent_key = ThreadKey(parent);
        let (parent_tid, space) = self
            .engine
            .thread(parent_key)
            .map(|t| (t.tid, t.cur_space))
            .ok_or(ApiError::UnknownThread)?;
        let memory = InterpreterMemory;
        let frames = self
            .engine
            .visible_pairs(&live(self.offsets, &memory), parent_key, space)
            .unwrap_or_default();
        let derived_from = Parent {
            tid: parent_tid,
            space_id: space,
            frames: &frames,
        };
        let held: Vec<u64> = self
            .interpreter_threads(parent)
            .into_iter()
            .filter(|&ts| ts != child)
            .filter_map(|ts| self.held_id(ts))
            .collect();
        let tid = ids::assign(DEFAULT_MIXER, self.root_seed, Some(&derived_from), |id| {
            held.contains(&id)
        });
        let key = ThreadKey(child);
        let serial = self.serial_of(child);
        self.engine.remove_thread(key);
        self.engine.new_thread(key, tid, space);
        self.serials.insert(child, serial);
        Ok(tid)
    }

    /// The thread state a `_thread` start just created (see
    /// [`Coords::register_started_thread`]): the one bound to
    /// `native_ident`, else the only unbound one.
    fn find_started(
        &self,
        starter: u64,
        old_head: u64,
        native_ident: u64,
        thread_id_offset: u64,
    ) -> Result<u64, ApiError> {
        let mut unbound = Vec::new();
        for ts in self.interpreter_threads(starter) {
            if ts == old_head {
                break;
            }
            if ts == starter || self.announced(ts) {
                continue;
            }
            match self.word(ts.wrapping_add(thread_id_offset)) {
                bound if bound == native_ident && bound != 0 => return Ok(ts),
                0 => unbound.push(ts),
                _ => {}
            }
        }
        match unbound.as_slice() {
            [ts] => Ok(*ts),
            _ => Err(ApiError::UnknownThread),
        }
    }

    /// Every thread state of `caller`'s interpreter with its native ident
    /// and Retrace id (announcing the ones not seen yet).
    pub fn ident_entries(&mut self, caller: u64, thread_id_offset: u64) -> Vec<IdentEntry> {
        let threads = self.interpreter_threads(caller);
        let recorded = started();
        let mut out = Vec::with_capacity(threads.len());
        for ts in threads {
            let key = self.ensure_thread(ts, &InterpreterMemory);
            let Some(tid) = self.engine.thread(key).map(|t| t.tid) else {
                continue;
            };
            let mut native = self.word(ts.wrapping_add(thread_id_offset));
            if native == 0 {
                let serial = self.serial_of(ts);
                native = recorded
                    .as_ref()
                    .and_then(|m| m.get(&ts))
                    .filter(|&&(s, _)| s == serial)
                    .map_or(0, |&(_, ident)| ident);
            }
            out.push(IdentEntry {
                tstate: ts,
                native,
                tid,
            });
        }
        out
    }

    /// §9.5: the thread state of `caller`'s interpreter that `x` (a Retrace
    /// id or a native ident) names, if exactly one does.
    pub fn resolve_ident(
        &mut self,
        caller: u64,
        x: u64,
        thread_id_offset: u64,
    ) -> Option<IdentEntry> {
        if caller == 0 || x == 0 {
            return None;
        }
        resolve(&self.ident_entries(caller, thread_id_offset), x)
    }

    /// Forgets what was recorded at `tstate`'s start (thread-state clear or
    /// delete).
    pub fn forget_started(&mut self, tstate: u64) {
        if let Some(m) = started().as_mut() {
            m.remove(&tstate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(tstate: u64, native: u64, tid: u64) -> IdentEntry {
        IdentEntry {
            tstate,
            native,
            tid,
        }
    }

    #[test]
    fn a_retrace_id_or_a_native_ident_names_its_thread() {
        let threads = [e(0x100, 7001, 0xaaaa), e(0x200, 7002, 0xbbbb)];
        assert_eq!(resolve(&threads, 0xaaaa), Some(threads[0]));
        assert_eq!(resolve(&threads, 7002), Some(threads[1]));
        assert_eq!(resolve(&threads, 12345), None);
        assert_eq!(resolve(&threads, 0), None);
    }

    #[test]
    fn ambiguous_numbers_name_nothing() {
        // 7001 is A's native ident and B's Retrace id.
        let threads = [e(0x100, 7001, 0xaaaa), e(0x200, 7002, 7001)];
        assert_eq!(resolve(&threads, 7001), None);
        // The same thread matching both ways is not ambiguous.
        let threads = [e(0x100, 7001, 7001), e(0x200, 7002, 0xbbbb)];
        assert_eq!(resolve(&threads, 7001), Some(threads[0]));
        // Two Retrace matches, no native one.
        let threads = [e(0x100, 1, 9), e(0x200, 2, 9)];
        assert_eq!(resolve(&threads, 9), None);
        // Two native matches.
        let threads = [e(0x100, 5, 8), e(0x200, 5, 9)];
        assert_eq!(resolve(&threads, 5), None);
    }

    #[test]
    fn unbound_threads_do_not_match_zero() {
        let threads = [e(0x100, 0, 0xaaaa)];
        assert_eq!(resolve(&threads, 0), None);
        assert_eq!(resolve(&threads, 0xaaaa), Some(threads[0]));
    }
}
