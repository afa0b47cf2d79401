//! The coordinate engine wired to the rewritten interpreter.
//!
//! The stubs and hooks deliver raw machine state (saved registers, the
//! descriptor's hook list); this module turns it into the engine's events
//! (SEMANTICS Appendix A, 3.12 column) and answers the queries of the Python
//! modules:
//!
//! | event | where it comes from | engine call |
//! |---|---|---|
//! | E5 boundary + E6 inferred bias site | dispatch stub slow path (`rt_dispatch`) | R0–R3 inference, [`Engine::begin_instruction`] |
//! | E1 + E3 new call | `start_frame` hook (non-generator frame) | [`Engine::init_frame`], [`Engine::activate`], inlined-call fix |
//! | E3 generator resume | `start_frame` hook (generator frame), throw entry hook | [`Engine::activate`] |
//! | E6 jump before the eval breaker | `handle_eval_breaker` hook | bias site settled early |
//! | E4 yield / return / unwind | current-frame store hooks (the frame being left) | [`Engine::deactivate`] |
//! | E4 + frame gone | `_PyEvalFrameClearAndPop`, `_PyThreadState_PopFrame` entry hooks | [`Engine::deactivate`], [`Engine::forget_frame`] |
//! | E1 generator frame | `_PyFrame_Copy` entry hook | [`Engine::init_frame`] on the destination |
//! | E2 | `_PyEval_EvalFrameDefault` entry hook | [`Engine::memo_reset`] |
//!
//! The stubs handle straight-line dispatch and plain jumps inline on the
//! frame's [`HotFrame`]; this module keeps `Descriptor::cur_record` pointing
//! at the record of the frame executing on the thread of the last boundary
//! (or at [`NO_RECORD`], which sends every dispatch here).
//!
//! Threads started by `_thread.start_new_thread` are registered by the
//! wrapped `_thread` module right after the start, with an id derived from the
//! starter (§9.4, `thread_ids`); every other thread state (the main thread,
//! foreign `PyGILState_Ensure` threads) is announced lazily at its first event
//! and derived parentless (root seed, then collision retries against the
//! interpreter's live thread states). The scheduling half of the boundary
//! procedure is in `sched`.

mod sched;
mod thread_ids;

pub use sched::{ArmError, PendingBoundary};

use crate::descriptor::LiveDescriptor;
use crate::engine::jumps::{infer_dispatch, OpcodeTables};
use crate::engine::{Engine, FrameKey, FrameView, Slot, ThreadKey, ROOT_SPACE};
use crate::hasher::PtrMap;
use crate::ids;
use crate::location::{Layout, Memory};
use crate::mixing::DEFAULT_MIXER;
use retrace_abi::{
    field, HookKind, HotFrame, Offsets, SavedRegisters, ABSENT, GEN_TABLE_SIZE, HOT_GEN,
    HOT_GEN_IDLE, OPCODE_SEND, OPCODE_SUPERINSTRUCTION,
};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Why a query could not be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// `thread_id` names no thread state of the interpreter (or is 0):
    /// Python `LookupError("unknown thread id")`.
    #[error("unknown thread id")]
    UnknownThread,
    /// The runtime has no coordinate engine (vanilla layout, standalone
    /// descriptor): Python `RuntimeError`.
    #[error("retrace coordinate engine is not active")]
    Inactive,
    /// `leave_space` without a matching `enter_space`: Python `SystemError`.
    #[error("unbalanced coordinate space exit")]
    Unbalanced,
}

/// The record published when no frame may take the fast path: its `frame`
/// (0) matches no dispatching frame.
pub static NO_RECORD: HotFrame = HotFrame {
    frame: AtomicU64::new(0),
    expect: AtomicU64::new(0),
    last_n: AtomicU64::new(1),
    ord: AtomicU64::new(0),
    bias: AtomicI64::new(0),
    parent: AtomicU64::new(0),
    flags: AtomicU64::new(0),
    persistent: AtomicU64::new(0),
};

/// Records per thread record stack (the `start_frame` fast path falls back
/// to the runtime when a thread's stack is full).
const STACK_RECORDS: usize = 1024;

/// The descriptor words the runtime publishes for the stubs and hook fast
/// paths, all describing the thread of the last boundary.
struct Words {
    cur_record: &'static AtomicU64,
    slot_record: &'static AtomicU64,
    stack_top: &'static AtomicU64,
    stack_limit: &'static AtomicU64,
    last_tstate: &'static AtomicU64,
}

impl Words {
    fn of(d: &LiveDescriptor) -> Words {
        Words {
            cur_record: d.static_word(field::CUR_RECORD),
            slot_record: d.static_word(field::SLOT_RECORD),
            stack_top: d.static_word(field::STACK_TOP),
            stack_limit: d.static_word(field::STACK_LIMIT),
            last_tstate: d.static_word(field::LAST_TSTATE),
        }
    }
}

fn record_address(hot: &HotFrame) -> u64 {
    hot as *const HotFrame as u64
}

/// The generator table the `start_frame` fast path resumes generators from:
/// direct-mapped `frame → record`, `GEN_TABLE_SIZE` entries. A frame whose
/// slot holds another frame is simply not found (the runtime resumes it).
struct GenTable {
    entries: &'static [[AtomicU64; 2]],
}

impl GenTable {
    fn new() -> GenTable {
        GenTable {
            entries: Box::leak(
                (0..GEN_TABLE_SIZE)
                    .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                    .collect::<Box<[_]>>(),
            ),
        }
    }

    fn address(&self) -> u64 {
        self.entries.as_ptr() as u64
    }

    fn slot(&self, frame: FrameKey) -> Option<&[AtomicU64; 2]> {
        self.entries
            .get(usize::try_from(frame.0 >> 4).ok()? & (GEN_TABLE_SIZE - 1))
    }

    fn insert(&self, frame: FrameKey, record: &HotFrame) {
        if let Some([f, r]) = self.slot(frame) {
            f.store(0, Relaxed);
            r.store(record_address(record), Relaxed);
            f.store(frame.0, Relaxed);
        }
    }

    fn remove(&self, frame: FrameKey) {
        if let Some([f, _]) = self.slot(frame) {
            if f.load(Relaxed) == frame.0 {
                f.store(0, Relaxed);
            }
        }
    }
}

/// One thread's record stack: records the `start_frame` fast path pushes
/// for inlined calls, contiguous from a sentinel at `base`.
struct ThreadStack {
    records: &'static [HotFrame],
    /// Top record while the thread is not the published one (the
    /// descriptor's `stack_top` is authoritative while it is).
    top: u64,
    /// Highest record the runtime has adopted (`base` when none).
    adopted: u64,
}

impl ThreadStack {
    fn new() -> ThreadStack {
        let records: &'static [HotFrame] = Box::leak(
            (0..STACK_RECORDS)
                .map(|_| HotFrame::default())
                .collect::<Box<[_]>>(),
        );
        let base = records.first().map_or(0, record_address);
        ThreadStack {
            records,
            top: base,
            adopted: base,
        }
    }

    fn base(&self) -> u64 {
        self.records.first().map_or(0, record_address)
    }

    fn limit(&self) -> u64 {
        self.records.last().map_or(0, record_address)
    }

    /// The record at `address`, if it is one of this stack's.
    fn record(&self, address: u64) -> Option<&'static HotFrame> {
        let offset = address.checked_sub(self.base())?;
        let size = std::mem::size_of::<HotFrame>() as u64;
        if offset % size != 0 {
            return None;
        }
        self.records.get(usize::try_from(offset / size).ok()?)
    }
}

/// `_PyInterpreterFrame.owner` values (3.12).
const OWNED_BY_GENERATOR: u64 = 1;
const OWNED_BY_CSTACK: u64 = 3;

/// SysV argument registers (hardware numbers).
const RDI: usize = 7;
const RSI: usize = 6;

/// The struct offsets the engine reads, all present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameOffsets {
    pub previous: u64,
    pub prev_instr: u64,
    pub code: u64,
    pub owner: u64,
    pub code_adaptive: u64,
    pub firsttraceable: u64,
    pub tstate_cframe: u64,
    pub cframe_current_frame: u64,
    pub tstate_interp: u64,
    pub tstate_next: u64,
    pub tstate_id: u64,
    pub interp_threads_head: u64,
}

impl FrameOffsets {
    /// The offsets from the descriptor; `None` when one is missing (the
    /// engine then stays inactive).
    pub fn from_descriptor(o: &Offsets) -> Option<FrameOffsets> {
        let get = |v: u32| (v != ABSENT).then_some(u64::from(v));
        Some(FrameOffsets {
            previous: get(o.frame_previous)?,
            prev_instr: get(o.frame_prev_instr)?,
            code: get(o.frame_code)?,
            owner: get(o.frame_owner)?,
            code_adaptive: get(o.code_co_code_adaptive)?,
            firsttraceable: get(o.code_firsttraceable)?,
            tstate_cframe: get(o.tstate_cframe)?,
            cframe_current_frame: get(o.cframe_current_frame)?,
            tstate_interp: get(o.tstate_interp)?,
            tstate_next: get(o.tstate_next)?,
            tstate_id: get(o.tstate_id)?,
            interp_threads_head: get(o.interp_threads_head)?,
        })
    }
}

/// CPython's frames seen through the descriptor's offsets.
pub struct LiveView<'a, M: Memory> {
    pub offsets: FrameOffsets,
    pub memory: &'a M,
    /// The frame whose boundary is being processed and the index it is
    /// about to execute (its `prev_instr` still names the previous one).
    pub executing: Option<(FrameKey, i64)>,
}

impl<M: Memory> LiveView<'_, M> {
    fn word(&self, address: u64) -> u64 {
        self.memory.read_u64(address).unwrap_or(0)
    }

    /// Address of the first code unit of `frame`'s code object.
    pub fn code_start(&self, frame: FrameKey) -> u64 {
        let code = self.word(frame.0.wrapping_add(self.offsets.code));
        code.wrapping_add(self.offsets.code_adaptive)
    }

    /// Code-unit index of the instruction at `ptr` in `frame`.
    pub fn index_of(&self, frame: FrameKey, ptr: u64) -> i64 {
        (ptr.wrapping_sub(self.code_start(frame)) as i64) / 2
    }

    fn owner(&self, frame: FrameKey) -> u64 {
        self.word(frame.0.wrapping_add(self.offsets.owner)) & 0xff
    }

    pub fn prev_instr(&self, frame: FrameKey) -> u64 {
        self.word(frame.0.wrapping_add(self.offsets.prev_instr))
    }
}

impl<M: Memory> FrameView for LiveView<'_, M> {
    fn innermost(&self, thread: ThreadKey) -> Option<FrameKey> {
        let cframe = self.word(thread.0.wrapping_add(self.offsets.tstate_cframe));
        if cframe == 0 {
            return None;
        }
        let frame = self.word(cframe.wrapping_add(self.offsets.cframe_current_frame));
        (frame != 0).then_some(FrameKey(frame))
    }

    fn previous(&self, frame: FrameKey) -> Option<FrameKey> {
        let p = self.word(frame.0.wrapping_add(self.offsets.previous));
        (p != 0).then_some(FrameKey(p))
    }

    fn index(&self, frame: FrameKey) -> i64 {
        match self.executing {
            Some((f, index)) if f == frame => index,
            _ => self.index_of(frame, self.prev_instr(frame)),
        }
    }

    fn owned_by_c_stack(&self, frame: FrameKey) -> bool {
        self.owner(frame) == OWNED_BY_CSTACK
    }

    fn is_generator(&self, frame: FrameKey) -> bool {
        self.owner(frame) == OWNED_BY_GENERATOR
    }

    fn first_traceable(&self, frame: FrameKey) -> i64 {
        let code = self.word(frame.0.wrapping_add(self.offsets.code));
        let v = self.word(code.wrapping_add(self.offsets.firsttraceable)) as u32;
        i64::from(v as i32)
    }
}

/// A view without an executing-frame override.
fn live<M: Memory>(offsets: FrameOffsets, memory: &M) -> LiveView<'_, M> {
    LiveView {
        offsets,
        memory,
        executing: None,
    }
}

/// Interpreter memory, read directly.
#[derive(Clone, Copy, Debug, Default)]
pub struct InterpreterMemory;

impl Memory for InterpreterMemory {
    fn read_u64(&self, address: u64) -> Option<u64> {
        if address < 4096 {
            return None;
        }
        // SAFETY: the engine reads fields of live interpreter structures at
        // the offsets the rewriter derived from this library's DWARF: frames
        // of the chain of a thread state (reachable while the GIL is held),
        // their code objects, thread states of the interpreter's list, and
        // the eval loop's C stack during a hook. All stay mapped while the
        // calling hook or query runs with the GIL held.
        Some(unsafe { std::ptr::read_unaligned(address as usize as *const u64) })
    }
}

/// Per-interpreter coordinate state (one interpreter for now).
pub struct Coords {
    engine: Engine,
    tables: OpcodeTables,
    flags: [u8; 256],
    offsets: FrameOffsets,
    layout: Layout,
    /// §7 `interp.last_thread`: the thread state of the last boundary.
    last_thread: u64,
    /// `PyThreadState.id` of each announced thread state (reuse detection).
    serials: PtrMap<u64>,
    /// The thread state (and its `PyThreadState.id`) that
    /// [`Coords::ensure_thread`] validated last.
    checked: Option<(u64, u64)>,
    root_seed: u64,
    next_space: u32,
    /// Whether the stubs may take their fast path (off with `RETRACE_SLOW_PATH=1`).
    publish: bool,
    words: Words,
    /// Record stacks by thread state.
    stacks: PtrMap<ThreadStack>,
    /// Generators the `start_frame` fast path may resume.
    gens: GenTable,
    /// Generator frames resumed by the fast path and adopted since: their
    /// activation marker on the thread's record stack.
    markers: PtrMap<u64>,
    /// Thread-switch callbacks and call_at slots (§13, §14).
    sched: crate::sched::Registry,
    /// The interpreter of the first thread state announced (the main
    /// interpreter): only its threads do scheduling work.
    main_interp: u64,
    /// Dispatches of frames the engine never saw activated.
    pub untracked_dispatches: u64,
}

impl Coords {
    /// The state for a rewritten library described by `descriptor`; `None`
    /// when it lacks what the engine needs.
    pub fn new(descriptor: &LiveDescriptor, publish: bool, seed: &[u8]) -> Option<Coords> {
        let info = descriptor.info();
        let offsets = FrameOffsets::from_descriptor(&info.offsets)?;
        let send = (0..=255u8).find(|&op| {
            info.opcode_flags[usize::from(op)] & OPCODE_SEND != 0
                && info.opcode_deopt[usize::from(op)] == op
        });
        let supers: Vec<u8> = (0..=255u8)
            .filter(|&op| info.opcode_flags[usize::from(op)] & OPCODE_SUPERINSTRUCTION != 0)
            .collect();
        let mut tables = OpcodeTables::new(info.opcode_caches, info.opcode_deopt)
            .with_superinstructions(&supers);
        if let Some(send) = send {
            tables = tables.with_send(send);
        }
        let gens = GenTable::new();
        descriptor
            .static_word(field::GEN_TABLE)
            .store(gens.address(), Relaxed);
        Some(Coords {
            engine: Engine::new(DEFAULT_MIXER),
            tables,
            flags: info.opcode_flags,
            offsets,
            layout: info.layout,
            last_thread: 0,
            serials: PtrMap::default(),
            checked: None,
            root_seed: ids::root_seed(DEFAULT_MIXER, seed),
            next_space: 2,
            publish,
            words: Words::of(descriptor),
            stacks: PtrMap::default(),
            gens,
            markers: PtrMap::default(),
            sched: crate::sched::Registry::default(),
            main_interp: 0,
            untracked_dispatches: 0,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Announces `tstate` on first sight, or again when its address now
    /// holds a different thread state (`PyThreadState.id` changed).
    fn ensure_thread(&mut self, tstate: u64, memory: &impl Memory) -> ThreadKey {
        let key = ThreadKey(tstate);
        let serial = memory
            .read_u64(tstate.wrapping_add(self.offsets.tstate_id))
            .unwrap_or(0);
        if self.checked == Some((tstate, serial)) {
            return key;
        }
        if self.engine.thread(key).is_some() && self.serials.get(&tstate) == Some(&serial) {
            self.checked = Some((tstate, serial));
            return key;
        }
        if self.main_interp == 0 {
            self.main_interp = memory
                .read_u64(tstate.wrapping_add(self.offsets.tstate_interp))
                .unwrap_or(0);
        }
        self.engine.remove_thread(key);
        // §9.4: only ids held by live thread states of the interpreter block.
        let held: Vec<u64> = self
            .interpreter_threads(tstate)
            .into_iter()
            .filter(|&ts| ts != tstate)
            .filter_map(|ts| self.held_id(ts))
            .collect();
        let tid = ids::assign(DEFAULT_MIXER, self.root_seed, None, |id| held.contains(&id));
        self.engine.new_thread(key, tid, ROOT_SPACE);
        self.serials.insert(tstate, serial);
        self.checked = Some((tstate, serial));
        key
    }

    fn hot(&self, frame: FrameKey) -> Option<&'static HotFrame> {
        self.engine.frame(frame).map(|f| f.hot)
    }

    /// Points the stubs at `frame`'s record when `tstate` ran the last boundary.
    fn publish_for(&self, tstate: u64, frame: Option<FrameKey>) {
        if tstate != self.last_thread {
            return;
        }
        let fast = self.fast_paths_for(tstate);
        let record = match frame.and_then(|f| self.hot(f)) {
            Some(hot) if fast => record_address(hot),
            _ => record_address(&NO_RECORD),
        };
        self.words.cur_record.store(record, Relaxed);
        self.publish_slot_with(tstate, fast);
    }

    /// Whether the stubs and hook fast paths may run for `tstate`: they are
    /// not switched off (`RETRACE_SLOW_PATH=1`) and no coordinate target of
    /// the thread is armed (§7: every boundary of such a thread is checked,
    /// so neither its dispatches nor the activations whose records the hook
    /// fast paths would publish may bypass the runtime).
    fn fast_paths_for(&self, tstate: u64) -> bool {
        self.publish && !self.must_check(tstate)
    }

    /// Publishes `slot_record` for `tstate` (the thread of the last
    /// boundary): the record holding `T.slot` when it is a frame's ordinal,
    /// `T` is not in transparent mode and its fast paths may run, else
    /// [`NO_RECORD`].
    fn publish_slot(&self, tstate: u64) {
        self.publish_slot_with(tstate, self.fast_paths_for(tstate));
    }

    /// [`Coords::publish_slot`] with `fast` = [`Coords::fast_paths_for`].
    fn publish_slot_with(&self, tstate: u64, fast: bool) {
        let holder = self
            .engine
            .thread(ThreadKey(tstate))
            .filter(|t| !t.tmode && fast)
            .and_then(|t| match t.slot {
                Some(Slot::FrameOrd(f)) => self.hot(f),
                _ => None,
            });
        self.words.slot_record.store(
            holder.map_or(record_address(&NO_RECORD), record_address),
            Relaxed,
        );
    }

    /// The current top of `tstate`'s record stack.
    fn stack_top(&self, tstate: u64) -> Option<u64> {
        let stack = self.stacks.get(&tstate)?;
        Some(if tstate == self.last_thread {
            self.words.stack_top.load(Relaxed)
        } else {
            stack.top
        })
    }

    /// Makes `tstate` the thread of the last boundary (§7 `last_thread`):
    /// its record stack becomes the published one.
    fn switch_to(&mut self, tstate: u64) {
        if tstate == self.last_thread {
            return;
        }
        let previous_top = self.words.stack_top.load(Relaxed);
        if let Some(old) = self.stacks.get_mut(&self.last_thread) {
            old.top = previous_top;
        }
        self.last_thread = tstate;
        self.words.last_tstate.store(tstate, Relaxed);
        let stack = self.stacks.entry(tstate).or_insert_with(ThreadStack::new);
        let (top, limit) = (stack.top, stack.limit());
        self.words.stack_top.store(top, Relaxed);
        self.words
            .stack_limit
            .store(if self.publish { limit } else { 0 }, Relaxed);
        self.words
            .cur_record
            .store(record_address(&NO_RECORD), Relaxed);
        self.publish_slot(tstate);
    }

    /// Adopts the activations the `start_frame` fast path made on `tstate`
    /// since the runtime last ran for it (see `trampolines::hook_fast`).
    /// Every runtime entry does this first, so the engine sees every frame.
    fn adopt(&mut self, tstate: u64) {
        let Some(stack) = self.stacks.get(&tstate) else {
            return;
        };
        let top = if tstate == self.last_thread {
            self.words.stack_top.load(Relaxed)
        } else {
            stack.top
        };
        let size = std::mem::size_of::<HotFrame>() as u64;
        let mut at = stack.adopted;
        let mut pending = Vec::new();
        while at < top {
            at += size;
            if let Some(rec) = stack.record(at) {
                pending.push(rec);
            }
        }
        if pending.is_empty() {
            return;
        }
        let thread = self.ensure_thread(tstate, &InterpreterMemory);
        for rec in pending {
            let frame = FrameKey(rec.frame.load(Relaxed));
            let parent_address = rec.parent.load(Relaxed);
            // SAFETY: `parent` is a record address the fast path copied from
            // `slot_record`: a pool record or a stack record, both live for
            // the whole process (never freed, only recycled).
            let parent = unsafe { &*(parent_address as usize as *const HotFrame) };
            let parent = FrameKey(parent.frame.load(Relaxed));
            if rec.flags.load(Relaxed) & HOT_GEN != 0 {
                // A generator resumed inline: its own record is the engine's.
                let _ = self.engine.adopt_resumed(thread, frame, parent);
                self.markers.insert(frame.0, record_address(rec));
                rec.flags.store(HOT_GEN, Relaxed);
            } else {
                let _ = self.engine.adopt_pending(thread, frame, rec, parent);
                rec.flags.store(0, Relaxed);
            }
        }
        if let Some(stack) = self.stacks.get_mut(&tstate) {
            stack.adopted = top;
        }
    }

    /// Pops the activation marker of the generator frame `frame` from
    /// `tstate`'s record stack, if the fast path resumed it and the runtime
    /// adopted that.
    fn pop_marker(&mut self, tstate: u64, frame: FrameKey) {
        if let Some(marker) = self.markers.remove(&frame.0) {
            self.pop_record(tstate, marker);
        }
    }

    /// Pops the record at `address` off `tstate`'s record stack when it is
    /// the top (a frame above it outliving it would be a fast-path bug: the
    /// stack is then left as it is), clearing it so that it matches nothing.
    fn pop_record(&mut self, tstate: u64, address: u64) {
        let published = tstate == self.last_thread;
        let Some(top) = self.stack_top(tstate) else {
            return;
        };
        let Some(stack) = self.stacks.get_mut(&tstate) else {
            return;
        };
        if top != address {
            return;
        }
        if let Some(rec) = stack.record(address) {
            rec.frame.store(0, Relaxed);
            rec.flags.store(0, Relaxed);
        }
        let below = address - std::mem::size_of::<HotFrame>() as u64;
        stack.adopted = stack.adopted.min(below);
        if published {
            self.words.stack_top.store(below, Relaxed);
        } else {
            stack.top = below;
        }
    }

    /// `frame` stops running on `tstate` (§5.3): the engine's deactivation,
    /// plus the fast paths' bookkeeping: an adopted generator marker is
    /// popped, and a suspended non-transparent generator becomes resumable
    /// by the fast path again.
    fn deactivate(&mut self, tstate: u64, thread: ThreadKey, frame: FrameKey, suspended: bool) {
        let _ = self.engine.deactivate(thread, frame);
        self.pop_marker(tstate, frame);
        if let Some(f) = self.engine.frame(frame) {
            if suspended && !f.transparent && f.space.is_none() {
                f.hot.flags.fetch_or(HOT_GEN_IDLE, Relaxed);
            }
        }
    }

    /// Forgets `frame`, unpublishing its record if the stubs use it; a
    /// stack record (necessarily its stack's top) is popped.
    fn forget(&mut self, tstate: u64, frame: FrameKey) {
        self.gens.remove(frame);
        self.pop_marker(tstate, frame);
        let Some((hot, stacked)) = self.engine.forget_frame(frame) else {
            return;
        };
        hot.flags.store(0, Relaxed);
        let address = record_address(hot);
        if self.words.cur_record.load(Relaxed) == address {
            self.words
                .cur_record
                .store(record_address(&NO_RECORD), Relaxed);
        }
        if self.words.slot_record.load(Relaxed) == address {
            self.words
                .slot_record
                .store(record_address(&NO_RECORD), Relaxed);
        }
        if stacked {
            hot.frame.store(0, Relaxed);
            self.pop_record(tstate, address);
        }
    }

    /// A dispatch that reached the runtime: the boundary before the
    /// instruction at `next_instr` (opcode `opcode`) of the frame.
    ///
    /// Returns the boundary when call_at or thread-switch work remains for
    /// it (see the `sched` submodule), which the caller must drive without
    /// holding the runtime lock.
    pub fn on_dispatch(
        &mut self,
        regs: &SavedRegisters,
        opcode: u8,
        stack: &impl Memory,
    ) -> Option<PendingBoundary> {
        let memory = InterpreterMemory;
        let (Some(tstate), Some(frame), Some(n_ptr)) = (
            self.layout.tstate.read(regs, stack).filter(|&t| t != 0),
            self.layout.frame.read(regs, stack).filter(|&f| f != 0),
            self.layout.next_instr.read(regs, stack),
        ) else {
            return None;
        };
        let stack_pointer = self.layout.stack_pointer.read(regs, stack).unwrap_or(0);
        let thread = self.ensure_thread(tstate, &memory);
        let frame = FrameKey(frame);
        self.switch_to(tstate);
        self.adopt(tstate);
        let mut pending = PendingBoundary {
            tstate,
            frame,
            n_ptr,
            stack_pointer,
            index: 0,
            space: None,
        };
        if self.engine.frame(frame).is_none() {
            // The entry frame's INTERPRETER_EXIT (never activated, §5.1), or a
            // frame the hooks missed: an invisible boundary either way.
            if !live(self.offsets, &memory).owned_by_c_stack(frame) {
                self.untracked_dispatches += 1;
            }
            self.words
                .cur_record
                .store(record_address(&NO_RECORD), Relaxed);
            let in_callback = self.engine.thread(thread).is_some_and(|t| t.in_callback);
            return self.boundary_work(pending, in_callback);
        }
        let hot = self.hot(frame)?;
        self.apply_transfer(frame, hot, n_ptr);
        let n = live(self.offsets, &memory).index_of(frame, n_ptr);
        let view = LiveView {
            offsets: self.offsets,
            memory: &memory,
            executing: Some((frame, n)),
        };
        let boundary = self.engine.begin_instruction(&view, thread, frame, n).ok();
        let marker = u64::from(self.flags[usize::from(opcode)] & OPCODE_SEND != 0);
        hot.last_n.store(n_ptr | marker, Relaxed);
        hot.expect.store(
            // Code units to the natural successor, as bytes.
            n_ptr.wrapping_add(2 * self.tables.fall_through(0, opcode) as u64),
            Relaxed,
        );
        self.publish_for(tstate, Some(frame));
        pending.index = n;
        pending.space = boundary.and_then(|b| b.space);
        let in_callback = boundary.is_some_and(|b| b.in_callback);
        self.boundary_work(pending, in_callback)
    }

    /// A hook fired.
    pub fn on_hook(
        &mut self,
        kind: HookKind,
        arg: u32,
        regs: &SavedRegisters,
        stack: &impl Memory,
    ) {
        let memory = InterpreterMemory;
        let reg = |n: u32| {
            usize::try_from(n)
                .ok()
                .and_then(|i| regs.gpr.get(i))
                .copied()
        };
        let layout = self.layout;
        let loop_tstate = || layout.tstate.read(regs, stack).filter(|&t| t != 0);
        let hook_tstate = match kind {
            HookKind::EvalEntry | HookKind::FrameClearAndPop | HookKind::ThreadStatePopFrame => {
                regs.gpr[RDI]
            }
            HookKind::FrameCopy => self.last_thread,
            _ => loop_tstate().unwrap_or(0),
        };
        if hook_tstate != 0 {
            self.adopt(hook_tstate);
        }
        match kind {
            HookKind::EvalEntry => {
                let (tstate, frame) = (regs.gpr[RDI], regs.gpr[RSI]);
                if tstate != 0 {
                    self.ensure_thread(tstate, &memory);
                    self.engine.memo_reset(FrameKey(frame));
                }
            }
            HookKind::StartFrame | HookKind::ThrowEntry => {
                let (Some(frame), Some(tstate)) = (reg(arg).filter(|&f| f != 0), loop_tstate())
                else {
                    return;
                };
                self.start_frame(tstate, FrameKey(frame), kind, &memory);
            }
            HookKind::EvalBreaker => {
                let (Some(frame), Some(tstate), Some(n_ptr)) = (
                    reg(arg).filter(|&f| f != 0),
                    loop_tstate(),
                    self.layout.next_instr.read(regs, stack),
                ) else {
                    return;
                };
                self.settle(tstate, FrameKey(frame), n_ptr, &memory);
            }
            HookKind::CurrentFrameStore => {
                let (Some(new), Some(tstate)) = (reg(arg), loop_tstate()) else {
                    return;
                };
                self.current_frame_store(tstate, new, &memory);
            }
            HookKind::FrameClearAndPop | HookKind::ThreadStatePopFrame => {
                let (tstate, frame) = (regs.gpr[RDI], FrameKey(regs.gpr[RSI]));
                if tstate != 0 {
                    let thread = self.ensure_thread(tstate, &memory);
                    self.deactivate(tstate, thread, frame, false);
                    let caller = live(self.offsets, &memory).previous(frame);
                    self.forget(tstate, frame);
                    self.publish_for(tstate, caller);
                }
            }
            HookKind::FrameCopy => {
                // _PyFrame_Copy(src, dest): dest is a new generator frame (E1),
                // initialized on the thread current when it is copied.
                let dest = FrameKey(regs.gpr[RSI]);
                if dest.0 == 0 {
                    return;
                }
                let thread = ThreadKey(self.last_thread);
                if self.engine.thread(thread).is_some() {
                    if let Ok(hot) = self.engine.init_frame(thread, dest) {
                        let transparent = self.engine.frame(dest).is_some_and(|f| f.transparent);
                        if !transparent {
                            hot.flags.store(HOT_GEN_IDLE, Relaxed);
                            self.gens.insert(dest, hot);
                        }
                    }
                }
            }
        }
    }

    /// E1 + E3 at `start_frame` / the throw entry.
    fn start_frame(
        &mut self,
        tstate: u64,
        frame: FrameKey,
        kind: HookKind,
        memory: &InterpreterMemory,
    ) {
        let thread = self.ensure_thread(tstate, memory);
        let view = live(self.offsets, memory);
        let generator = view.is_generator(frame);
        let caller = view.previous(frame).filter(|&c| !view.owned_by_c_stack(c));
        if !generator && kind == HookKind::StartFrame {
            let _ = self.engine.init_frame(thread, frame);
        }
        let _ = self.engine.activate(thread, frame);
        if let Some(f) = self.engine.frame(frame) {
            // Running: the fast path must not resume it again.
            f.hot.flags.fetch_and(!HOT_GEN_IDLE, Relaxed);
        }
        if let Some(hot) = self.hot(frame) {
            // The first dispatch (prev_instr + 1) is then straight-line.
            let prev = view.prev_instr(frame);
            hot.last_n.store(prev, Relaxed);
            hot.expect.store(prev.wrapping_add(2), Relaxed);
        }
        if kind == HookKind::StartFrame {
            if let Some(caller) = caller {
                self.inlined_call_fix(caller, memory);
            }
        }
        self.publish_for(tstate, Some(frame));
    }

    /// DESIGN-NOTES §4.1: a frame entered inline from the Python frame
    /// `caller`, whose last dispatched instruction `Q` jumped over its inline
    /// caches to `caller.prev_instr + 1` before `DISPATCH_INLINED`.
    fn inlined_call_fix(&mut self, caller: FrameKey, memory: &InterpreterMemory) {
        let Some(hot) = self.hot(caller) else { return };
        let last = hot.last_n.load(Relaxed) & !1;
        if last == 0 {
            return;
        }
        let view = live(self.offsets, memory);
        let prev_ptr = view.prev_instr(caller);
        let last_q = view.index_of(caller, last);
        let prev = view.index_of(caller, prev_ptr);
        if let Some(site) = crate::engine::jumps::start_frame_fix(last_q, prev) {
            self.engine.bias_site(caller, site.source, site.dest);
        }
        // The return dispatch (prev_instr + 1) is then straight-line.
        hot.last_n.store(prev_ptr, Relaxed);
        hot.expect.store(prev_ptr.wrapping_add(2), Relaxed);
    }

    /// DESIGN-NOTES §4.3: at `handle_eval_breaker`, apply the pending
    /// transfer `prev_instr → next_instr` now, so that signal handlers and
    /// pending calls see the coordinate the reference has; the dispatch that
    /// follows then finds it cached as straight-line.
    fn settle(&mut self, tstate: u64, frame: FrameKey, n_ptr: u64, memory: &InterpreterMemory) {
        self.ensure_thread(tstate, memory);
        let Some(hot) = self.hot(frame) else { return };
        let q_ptr = self.apply_transfer(frame, hot, n_ptr);
        hot.last_n.store(q_ptr, Relaxed);
        hot.expect.store(n_ptr, Relaxed);
    }

    /// The bias site (if any) of the transfer `prev_instr → n_ptr` of
    /// `frame` (rules R0–R3 with the opcode at `prev_instr`, DESIGN-NOTES
    /// §4), unless `hot` already caches it as straight-line (the stubs' rule,
    /// or a transfer settled earlier). Returns `prev_instr`.
    fn apply_transfer(&mut self, frame: FrameKey, hot: &HotFrame, n_ptr: u64) -> u64 {
        let memory = InterpreterMemory;
        let view = live(self.offsets, &memory);
        let q_ptr = view.prev_instr(frame);
        if hot.last_n.load(Relaxed) == q_ptr && hot.expect.load(Relaxed) == n_ptr {
            return q_ptr;
        }
        let (q, n) = (view.index_of(frame, q_ptr), view.index_of(frame, n_ptr));
        let op_q = if q >= 0 {
            (memory.read_u64(q_ptr).unwrap_or(0) & 0xff) as u8
        } else {
            0
        };
        if let Some(site) = infer_dispatch(&self.tables, q, n, op_q).site {
            self.engine.bias_site(frame, site.source, site.dest);
        }
        q_ptr
    }

    /// A store to `cframe.current_frame`: when the new current frame is
    /// already running or is an entry frame (the caller resumed by a yield,
    /// return or unwind),
    /// the frame being left stops running (E4). A push stores a frame that
    /// is not running yet (fresh, or a suspended generator), whose start is
    /// the `start_frame` hook's business. (`new->previous` cannot tell the
    /// two apart: the compiler may store it after `current_frame`.)
    fn current_frame_store(&mut self, tstate: u64, new: u64, memory: &InterpreterMemory) {
        let view = live(self.offsets, memory);
        let Some(old) = view.innermost(ThreadKey(tstate)) else {
            return;
        };
        let running = |f: FrameKey| self.engine.frame(f).is_some_and(|s| s.space.is_some());
        // Returning into C (the entry frame of a C-level evaluation) too.
        let resumed = |f: FrameKey| running(f) || view.owned_by_c_stack(f);
        if new == 0 || old.0 == new || !resumed(FrameKey(new)) || !running(old) {
            return;
        }
        let thread = self.ensure_thread(tstate, memory);
        let suspended = view.is_generator(old);
        self.deactivate(tstate, thread, old, suspended);
        self.publish_for(tstate, Some(FrameKey(new)));
    }

    /// The thread state announced for `tstate` (the caller's own, current).
    fn current(&mut self, tstate: u64) -> Result<ThreadKey, ApiError> {
        if tstate == 0 {
            return Err(ApiError::UnknownThread);
        }
        let key = self.ensure_thread(tstate, &InterpreterMemory);
        self.adopt(tstate);
        Ok(key)
    }

    /// The live thread state of the caller's interpreter whose Retrace id
    /// is `tid`.
    fn thread_by_id(&mut self, caller: u64, tid: u64) -> Result<ThreadKey, ApiError> {
        if tid == 0 {
            return Err(ApiError::UnknownThread);
        }
        let memory = InterpreterMemory;
        let interp = memory
            .read_u64(caller.wrapping_add(self.offsets.tstate_interp))
            .unwrap_or(0);
        let mut ts = memory
            .read_u64(interp.wrapping_add(self.offsets.interp_threads_head))
            .unwrap_or(0);
        let mut steps = 0;
        while ts != 0 && steps < 1 << 16 {
            steps += 1;
            let key = self.ensure_thread(ts, &memory);
            if self.engine.thread(key).map(|t| t.tid) == Some(tid) {
                self.adopt(ts);
                return Ok(key);
            }
            ts = memory
                .read_u64(ts.wrapping_add(self.offsets.tstate_next))
                .unwrap_or(0);
        }
        Err(ApiError::UnknownThread)
    }

    pub fn coordinates(
        &mut self,
        caller: u64,
        thread_id: Option<u64>,
        drop: usize,
        space: u32,
    ) -> Result<Option<Vec<u64>>, ApiError> {
        let me = self.current(caller)?;
        let thread = match thread_id {
            None => me,
            Some(tid) => self.thread_by_id(caller, tid)?,
        };
        let view = live(self.offsets, &InterpreterMemory);
        self.engine
            .coordinates(&view, thread, space, drop)
            .map_err(|_| ApiError::UnknownThread)
    }

    pub fn thread_delta(&mut self, caller: u64, space: u32) -> Result<Option<Vec<u64>>, ApiError> {
        let me = self.current(caller)?;
        let memory = InterpreterMemory;
        let view = live(self.offsets, &memory);
        self.engine
            .thread_delta(&view, me, space)
            .map_err(|_| ApiError::UnknownThread)
    }

    pub fn location_hash(&mut self, caller: u64, space: u32) -> Result<Option<u64>, ApiError> {
        let me = self.current(caller)?;

        let view = live(self.offsets, &InterpreterMemory);
        self.engine
            .location_hash(&view, me, space)
            .map_err(|_| ApiError::UnknownThread)
    }

    /// §10: the identity-hash location of the calling thread, if any.
    pub fn nearest_visible_hash(&mut self, caller: u64) -> Option<u64> {
        let me = self.current(caller).ok()?;
        let view = live(self.offsets, &InterpreterMemory);
        self.engine.nearest_visible_hash(&view, me).ok().flatten()
    }

    pub fn allocate_space_id(&mut self) -> u32 {
        let id = self.next_space;
        self.next_space = match self.next_space.wrapping_add(1) {
            0 | 1 => 2,
            v => v,
        };
        id
    }

    pub fn enter_space(&mut self, caller: u64, space: u32) -> Result<(), ApiError> {
        let me = self.current(caller)?;
        let memory = InterpreterMemory;
        let view = live(self.offsets, &memory);
        let entered = self
            .engine
            .enter(&view, me, space)
            .map_err(|_| ApiError::UnknownThread);
        if caller == self.last_thread {
            self.publish_slot(caller);
        }
        entered
    }

    pub fn leave_space(&mut self, caller: u64) -> Result<(), ApiError> {
        let me = self.current(caller)?;
        let left = self.engine.leave(me).map_err(|_| ApiError::Unbalanced);
        if caller == self.last_thread {
            self.publish_slot(caller);
        }
        left
    }

    pub fn current_thread_id(&mut self, caller: u64) -> Option<u64> {
        let me = self.current(caller).ok()?;
        self.engine.thread(me).map(|t| t.tid)
    }
}
