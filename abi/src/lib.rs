//! The binary contract between a rewritten libpython and the runtime library.
//!
//! The rewriter places one [`Descriptor`] at the start of the new RW segment
//! (`.retrace.data`) of the rewritten libpython. The trampolines read and
//! write its fields with RIP-relative addressing; the runtime finds it at
//! start-up by scanning the loaded object's RW `PT_LOAD` segments for
//! [`MAGIC`] (via `dl_iterate_phdr`), so the rewritten library needs no new
//! dynamic symbols or relocations. All addresses stored here are link-time
//! virtual addresses of the rewritten library; the runtime adds the load bias.
//!
//! This crate has no dependencies so that both sides (the emitter and the
//! `cdylib` runtime) share exactly one definition.

#![no_std]

/// First eight bytes of the descriptor.
pub const MAGIC: [u8; 8] = *b"RETRACE1";

/// Bumped whenever the layout of [`Descriptor`] changes.
pub const ABI_VERSION: u32 = 5;

/// File name of the runtime library added as `DT_NEEDED`.
pub const RUNTIME_SONAME: &str = "libretrace_rt.so";

/// Name of the ELF section holding the trampolines.
pub const TEXT_SECTION: &str = ".retrace.text";
/// Name of the ELF section holding the descriptor and runtime state.
pub const DATA_SECTION: &str = ".retrace.data";

/// Maximum number of non-dispatch hooks a descriptor can describe.
pub const MAX_HOOKS: usize = 64;

/// Maximum number of function detours a descriptor can describe.
pub const MAX_DETOURS: usize = 8;

/// How an eval-loop variable is held at handler entry (see `symbols::model::Location`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VarLocation {
    /// [`LOC_NONE`], [`LOC_REG`] or [`LOC_STACK`].
    pub kind: u32,
    /// Register number (0 = rax … 15 = r15) or signed `rsp` offset.
    pub value: i32,
}

pub const LOC_NONE: u32 = 0;
pub const LOC_REG: u32 = 1;
pub const LOC_STACK: u32 = 2;

/// The eval-loop register layout at handler entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegisterLayout {
    pub frame: VarLocation,
    pub next_instr: VarLocation,
    pub stack_pointer: VarLocation,
    pub oparg: VarLocation,
    pub opcode: VarLocation,
    pub tstate: VarLocation,
}

/// Struct offsets the runtime needs; `u32::MAX` when the field does not exist in this version.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    pub frame_size: u32,
    pub frame_code: u32,
    pub frame_previous: u32,
    pub frame_funcobj: u32,
    /// 3.11/3.12 `prev_instr` (index − 1 semantics).
    pub frame_prev_instr: u32,
    /// 3.13+ `instr_ptr`.
    pub frame_instr_ptr: u32,
    pub frame_stacktop: u32,
    pub frame_return_offset: u32,
    pub frame_owner: u32,
    pub frame_localsplus: u32,
    pub tstate_interp: u32,
    pub tstate_cframe: u32,
    pub tstate_current_frame: u32,
    pub tstate_thread_id: u32,
    pub tstate_native_thread_id: u32,
    pub cframe_current_frame: u32,
    pub code_co_code_adaptive: u32,
    /// `PyObject.ob_type` (`_object.ob_type`), read by the `_Py_Dealloc` replacement.
    pub object_ob_type: u32,
    /// `PyTypeObject.tp_dealloc` (`_typeobject.tp_dealloc`), read by the `_Py_Dealloc` replacement.
    pub type_tp_dealloc: u32,
    /// `PyCodeObject._co_firsttraceable`: index of the first traceable instruction.
    pub code_firsttraceable: u32,
    /// `PyThreadState.next` (the interpreter's thread list).
    pub tstate_next: u32,
    /// `PyThreadState.id`: unique per thread state of an interpreter, never reused.
    pub tstate_id: u32,
    /// `PyInterpreterState.threads.head`.
    pub interp_threads_head: u32,
    pub reserved: [u32; 9],
}

pub const ABSENT: u32 = u32::MAX;

impl Default for Offsets {
    fn default() -> Self {
        Offsets {
            frame_size: ABSENT,
            frame_code: ABSENT,
            frame_previous: ABSENT,
            frame_funcobj: ABSENT,
            frame_prev_instr: ABSENT,
            frame_instr_ptr: ABSENT,
            frame_stacktop: ABSENT,
            frame_return_offset: ABSENT,
            frame_owner: ABSENT,
            frame_localsplus: ABSENT,
            tstate_interp: ABSENT,
            tstate_cframe: ABSENT,
            tstate_current_frame: ABSENT,
            tstate_thread_id: ABSENT,
            tstate_native_thread_id: ABSENT,
            cframe_current_frame: ABSENT,
            code_co_code_adaptive: ABSENT,
            object_ob_type: ABSENT,
            type_tp_dealloc: ABSENT,
            code_firsttraceable: ABSENT,
            tstate_next: ABSENT,
            tstate_id: ABSENT,
            interp_threads_head: ABSENT,
            reserved: [ABSENT; 9],
        }
    }
}

/// What a non-dispatch hook observes (mirrors `symbols::model::HookKind`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    EvalEntry = 1,
    StartFrame = 2,
    ThrowEntry = 3,
    EvalBreaker = 4,
    CurrentFrameStore = 5,
    FrameClearAndPop = 6,
    ThreadStatePopFrame = 7,
    FrameCopy = 8,
}

impl HookKind {
    pub fn from_u32(v: u32) -> Option<HookKind> {
        Some(match v {
            1 => HookKind::EvalEntry,
            2 => HookKind::StartFrame,
            3 => HookKind::ThrowEntry,
            4 => HookKind::EvalBreaker,
            5 => HookKind::CurrentFrameStore,
            6 => HookKind::FrameClearAndPop,
            7 => HookKind::ThreadStatePopFrame,
            8 => HookKind::FrameCopy,
            _ => return None,
        })
    }
}

/// One hook of the rewritten library.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookInfo {
    /// A [`HookKind`] value (0 = unused slot).
    pub kind: u32,
    /// For [`HookKind::CurrentFrameStore`]: register number holding the new frame.
    pub arg: u32,
    /// Link-time address of the hooked instruction.
    pub address: u64,
}

/// Which function a detour diverts (mirrors `symbols::model::DetourKind`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetourKind {
    /// CPython's pointer hash (`_Py_HashPointer` on 3.11/3.12).
    HashPointer = 1,
    /// The generic deallocation entry `_Py_Dealloc`.
    Dealloc = 2,
    /// `PyThreadState_Clear`: natural completion and scheduling-state clear.
    ThreadStateClear = 3,
    /// `PyThreadState_SetAsyncExc`: its `id` is a Retrace id or a native
    /// ident (SEMANTICS §9.5).
    SetAsyncExc = 4,
    /// `PyThreadState_New`: parent-derived ids for thread states C code creates.
    ThreadStateNew = 5,
}

impl DetourKind {
    pub fn from_u32(v: u32) -> Option<DetourKind> {
        Some(match v {
            1 => DetourKind::HashPointer,
            2 => DetourKind::Dealloc,
            3 => DetourKind::ThreadStateClear,
            4 => DetourKind::SetAsyncExc,
            5 => DetourKind::ThreadStateNew,
            _ => return None,
        })
    }
}

/// [`DetourInfo::flags`] bit: the function's displaced entry cannot be moved,
/// so there is no callable original; the runtime replacement must implement
/// the whole function.
pub const DETOUR_FULL_REPLACEMENT: u32 = 1;

/// One function detour of the rewritten library.
///
/// The function's entry jumps to `detour_i`, which tail-jumps to
/// `Descriptor::detour_targets[i]` when the runtime stored a replacement
/// there, and otherwise runs the original function.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetourInfo {
    /// A [`DetourKind`] value (0 = unused slot).
    pub kind: u32,
    /// [`DETOUR_FULL_REPLACEMENT`] or 0.
    pub flags: u32,
    /// Link-time address of the detoured function's entry.
    pub site: u64,
    /// Link-time address of `original_i`: the displaced entry instructions
    /// followed by a jump back, callable as the original function. 0 for a
    /// full replacement.
    pub original: u64,
}

/// The registers a trampoline saves before calling the runtime, in memory order
/// (lowest address first). The runtime receives a pointer to this block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SavedRegisters {
    pub rflags: u64,
    /// Indexed by hardware register number; `gpr[4]` holds the `rsp` value of the
    /// interrupted code (before the trampoline touched the stack).
    pub gpr: [u64; 16],
}

/// Offset of the interrupted code's stack pointer relative to the saved block:
/// trampolines skip the 128-byte red zone before saving.
pub const RED_ZONE: u64 = 128;

/// Flag bits in [`Descriptor::hooks_enabled`] (one per [`HookKind`] value).
pub const fn hook_bit(kind: HookKind) -> u64 {
    1u64 << (kind as u32)
}

/// `opcode_flags` bit: a 3.11/3.12 superinstruction (`LOAD_FAST__LOAD_FAST`, …) whose
/// second half has no boundary: its natural successor is two code units on.
pub const OPCODE_SUPERINSTRUCTION: u8 = 1;
/// `opcode_flags` bit: `SEND` and its specialisations, whose StopIteration path moves
/// `next_instr` by `oparg + 1` (DESIGN-NOTES §4.2): the runtime classifies the dispatch
/// that follows.
pub const OPCODE_SEND: u8 = 2;

/// The per-frame record the dispatch stubs read and write inline (SEMANTICS §4.1–§4.3).
///
/// Owned by the runtime (stable address while the frame is tracked); the stub fast
/// path runs only when `frame` equals the dispatching frame and `last_n` equals its
/// `prev_instr`, i.e. nothing but straight-line dispatch happened since the runtime or
/// a stub last looked at the frame.
#[repr(C)]
#[derive(Debug, Default)]
pub struct HotFrame {
    /// Address of the `_PyInterpreterFrame` (0 = matches nothing).
    pub frame: core::sync::atomic::AtomicU64,
    /// Address of the natural successor of the last dispatched instruction.
    pub expect: core::sync::atomic::AtomicU64,
    /// Address of the last dispatched instruction (1 = let the runtime classify the next).
    pub last_n: core::sync::atomic::AtomicU64,
    /// Call ordinal of the current instruction (§4.3).
    pub ord: core::sync::atomic::AtomicU64,
    /// Coordinate bias in code units (§4.2).
    pub bias: core::sync::atomic::AtomicI64,
    /// For a record on a thread's record stack: the record whose ordinal this frame
    /// bumps when it stops running (its parent slot).
    pub parent: core::sync::atomic::AtomicU64,
    /// [`HOT_PENDING`], [`HOT_GEN`], [`HOT_GEN_IDLE`].
    pub flags: core::sync::atomic::AtomicU64,
    /// For a generator's activation marker on a record stack ([`HOT_GEN`]): the
    /// generator frame's own (persistent) record.
    pub persistent: core::sync::atomic::AtomicU64,
}

/// [`HotFrame::flags`]: the record was pushed by the `start_frame` fast path and the
/// runtime has not adopted it yet; the `_PyEvalFrameClearAndPop` fast path may pop it.
pub const HOT_PENDING: u64 = 1;
/// [`HotFrame::flags`] of a record-stack entry: it marks the activation of a
/// generator frame whose record is `persistent`.
pub const HOT_GEN: u64 = 2;
/// [`HotFrame::flags`] of a generator frame's own record: suspended and not
/// transparent, so the `start_frame` fast path may resume it inline.
pub const HOT_GEN_IDLE: u64 = 4;

/// [`HotFrame::flags`] of a generator frame's own record: it became the first frame
/// of a C-level evaluation (SEMANTICS Appendix A, E2) since the runtime last looked;
/// its delta memory is to be forgotten before it is next used.
pub const HOT_MEMO_RESET: u64 = 8;

/// Entries of the runtime's generator table (direct-mapped: frame address →
/// record), indexed by `(frame >> 4) & (GEN_TABLE_SIZE - 1)`.
pub const GEN_TABLE_SIZE: usize = 4096;

/// Byte offsets of [`HotFrame`] fields, for the stubs.
pub mod hot {
    use super::HotFrame;
    use core::mem::offset_of;
    pub const FRAME: usize = offset_of!(HotFrame, frame);
    pub const EXPECT: usize = offset_of!(HotFrame, expect);
    pub const LAST_N: usize = offset_of!(HotFrame, last_n);
    pub const ORD: usize = offset_of!(HotFrame, ord);
    pub const BIAS: usize = offset_of!(HotFrame, bias);
    pub const PARENT: usize = offset_of!(HotFrame, parent);
    pub const FLAGS: usize = offset_of!(HotFrame, flags);
    pub const PERSISTENT: usize = offset_of!(HotFrame, persistent);
    /// Records are 64 bytes apart on a record stack.
    pub const SIZE: usize = core::mem::size_of::<HotFrame>();
}

/// The descriptor at the start of `.retrace.data`.
///
/// Fields marked *runtime* are written by the runtime at start-up; the
/// trampolines read them on every dispatch, so they sit in the first cache line.
#[repr(C, align(64))]
pub struct Descriptor {
    pub magic: [u8; 8],
    pub abi_version: u32,
    pub descriptor_size: u32,
    /// *runtime*: non-zero makes every dispatch stub take its slow path.
    pub slow_path: u64,
    /// *runtime*: bit per [`HookKind`]; a hook trampoline calls the runtime only if its bit is set.
    pub hooks_enabled: u64,
    /// *runtime*: `extern "C" fn(*mut SavedRegisters, opcode: u64) -> u64`, called by the stub slow path.
    pub rt_dispatch: u64,
    /// *runtime*: `extern "C" fn(*mut SavedRegisters, hook_index: u64) -> u64`, called by hook trampolines.
    pub rt_hook: u64,
    /// *runtime*: interpreter-wide last thread state seen at a boundary (reserved for switch checks).
    pub last_tstate: u64,
    /// *runtime*: address of the [`HotFrame`] the dispatch stubs may fast-path: the record
    /// of the frame executing on the thread of the last boundary. A record whose `frame`
    /// is 0 never matches, which sends every dispatch to the runtime.
    pub cur_record: u64,
    /// *runtime*: the record of the frame whose ordinal the next activation on the last
    /// boundary's thread adopts as parent (`T.slot`), when that thread is not in
    /// transparent mode; a record whose `frame` is 0 otherwise.
    pub slot_record: u64,
    /// *runtime*: top record of the last boundary's thread's record stack (its base
    /// sentinel when empty), and the highest record address the stack may use.
    pub stack_top: u64,
    pub stack_limit: u64,
    /// *runtime and fast paths*: the frame the `_PyEvalFrameClearAndPop` fast path
    /// popped last, so that the `_PyThreadState_PopFrame` call inside it is known to
    /// be a no-op.
    pub last_popped: u64,
    /// *runtime*: address of the generator table, `GEN_TABLE_SIZE` pairs
    /// `(frame, record)`; a pair whose frame does not match means "not known".
    pub gen_table: u64,
    /// *runtime*: set to 1 by `rt_dispatch` when a Retrace callback raised at the
    /// boundary (the exception is set, the frame's `prev_instr` and `stacktop` are
    /// written); the stub clears it and enters the error path at `raise_entry`
    /// instead of the handler. Read only right after the runtime returned, with
    /// the GIL still held.
    pub raise_pending: u64,
    /// Link-time address of the raise entry the stubs jump to (0 when the
    /// rewriter found none: callback exceptions cannot propagate, and the runtime
    /// reports them as unraisable instead).
    pub raise_entry: u64,
    pub reserved_hot2: [u64; 1],
    /// Number of dispatches that took a stub's slow path, per opcode.
    pub dispatch_counts: [u64; 256],
    pub py_version_hex: u32,
    pub hook_count: u32,
    /// Link-time address of this descriptor (the runtime derives the load bias from it).
    pub self_address: u64,
    /// Link-time address of the original table target per opcode (0 when not redirected).
    pub original_targets: [u64; 256],
    pub registers: RegisterLayout,
    pub offsets: Offsets,
    pub opcode_caches: [u8; 256],
    pub opcode_deopt: [u8; 256],
    /// Per opcode: [`OPCODE_SUPERINSTRUCTION`], [`OPCODE_SEND`].
    pub opcode_flags: [u8; 256],
    pub hooks: [HookInfo; MAX_HOOKS],
    pub detour_count: u32,
    pub reserved_detour: u32,
    pub detours: [DetourInfo; MAX_DETOURS],
    /// *runtime*: per detour, the address of the replacement function (0 = run the original).
    pub detour_targets: [u64; MAX_DETOURS],
    /// SHA-256 of the original input library.
    pub input_sha256: [u8; 32],
    /// Pads the descriptor to a whole number of cache lines (no uninitialised tail).
    pub reserved_tail: [u8; 24],
}

impl Descriptor {
    /// A zeroed descriptor with magic and sizes filled in.
    pub fn new() -> Self {
        Descriptor {
            magic: MAGIC,
            abi_version: ABI_VERSION,
            descriptor_size: core::mem::size_of::<Descriptor>() as u32,
            slow_path: 0,
            hooks_enabled: 0,
            rt_dispatch: 0,
            rt_hook: 0,
            last_tstate: 0,
            cur_record: 0,
            slot_record: 0,
            stack_top: 0,
            stack_limit: 0,
            last_popped: 0,
            gen_table: 0,
            raise_pending: 0,
            raise_entry: 0,
            reserved_hot2: [0; 1],
            dispatch_counts: [0; 256],
            py_version_hex: 0,
            hook_count: 0,
            self_address: 0,
            original_targets: [0; 256],
            registers: RegisterLayout::default(),
            offsets: Offsets::default(),
            opcode_caches: [0; 256],
            opcode_deopt: [0; 256],
            opcode_flags: [0; 256],
            hooks: [HookInfo::default(); MAX_HOOKS],
            detour_count: 0,
            reserved_detour: 0,
            detours: [DetourInfo::default(); MAX_DETOURS],
            detour_targets: [0; MAX_DETOURS],
            input_sha256: [0; 32],
            reserved_tail: [0; 24],
        }
    }

    /// The descriptor as raw bytes, for embedding in the output file.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: Descriptor is repr(C), contains only integers and arrays of
        // integers, and every byte (padding included, see the layout test) is
        // initialised because the struct is built from zeroed fields.
        unsafe {
            core::slice::from_raw_parts(
                self as *const Descriptor as *const u8,
                core::mem::size_of::<Descriptor>(),
            )
        }
    }
}

impl Default for Descriptor {
    fn default() -> Self {
        Self::new()
    }
}

/// Byte offsets of the fields the trampolines address directly.
pub mod field {
    use super::Descriptor;
    use core::mem::offset_of;
    pub const SLOW_PATH: usize = offset_of!(Descriptor, slow_path);
    pub const HOOKS_ENABLED: usize = offset_of!(Descriptor, hooks_enabled);
    pub const RT_DISPATCH: usize = offset_of!(Descriptor, rt_dispatch);
    pub const RT_HOOK: usize = offset_of!(Descriptor, rt_hook);
    pub const LAST_TSTATE: usize = offset_of!(Descriptor, last_tstate);
    pub const CUR_RECORD: usize = offset_of!(Descriptor, cur_record);
    pub const SLOT_RECORD: usize = offset_of!(Descriptor, slot_record);
    pub const STACK_TOP: usize = offset_of!(Descriptor, stack_top);
    pub const STACK_LIMIT: usize = offset_of!(Descriptor, stack_limit);
    pub const LAST_POPPED: usize = offset_of!(Descriptor, last_popped);
    pub const GEN_TABLE: usize = offset_of!(Descriptor, gen_table);
    pub const RAISE_PENDING: usize = offset_of!(Descriptor, raise_pending);
    pub const RAISE_ENTRY: usize = offset_of!(Descriptor, raise_entry);
    pub const DISPATCH_COUNTS: usize = offset_of!(Descriptor, dispatch_counts);
    pub const DETOURS: usize = offset_of!(Descriptor, detours);
    pub const DETOUR_TARGETS: usize = offset_of!(Descriptor, detour_targets);
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    // The fields every stub reads share the first cache line.
    const _: () = assert!(field::LAST_TSTATE + 8 <= 64);

    #[test]
    fn dispatch_counts_follow_the_two_hot_lines() {
        // Line 1: what every dispatch stub reads; line 2: what the hook fast paths use.
        assert_eq!(field::SLOT_RECORD, 64);
        assert_eq!(field::DISPATCH_COUNTS, 128);
    }

    #[test]
    fn layout_has_no_implicit_padding() {
        // Every field is laid out back to back, so as_bytes() exposes no uninitialised bytes.
        let d = Descriptor::new();
        let end = offset_of!(Descriptor, reserved_tail) + d.reserved_tail.len();
        assert_eq!(size_of::<Descriptor>(), end.next_multiple_of(64));
        assert_eq!(end % 64, 0, "tail padding would be uninitialised");
        assert_eq!(offset_of!(Descriptor, self_address) % 8, 0);
        assert_eq!(size_of::<SavedRegisters>(), 17 * 8);
        // The detour block follows the hooks back to back.
        let hooks_end = offset_of!(Descriptor, hooks) + size_of::<[HookInfo; MAX_HOOKS]>();
        assert_eq!(offset_of!(Descriptor, detour_count), hooks_end);
        assert_eq!(size_of::<DetourInfo>(), 24);
        assert_eq!(field::DETOURS, offset_of!(Descriptor, reserved_detour) + 4);
        assert_eq!(
            field::DETOUR_TARGETS,
            field::DETOURS + size_of::<[DetourInfo; MAX_DETOURS]>()
        );
        assert_eq!(field::DETOUR_TARGETS % 8, 0);
        assert_eq!(
            offset_of!(Descriptor, input_sha256),
            field::DETOUR_TARGETS + 8 * MAX_DETOURS
        );
        // Offsets keeps its size: the two new fields came out of `reserved`.
        assert_eq!(size_of::<Offsets>(), 32 * 4);
        assert_eq!(
            offset_of!(Offsets, reserved),
            offset_of!(Offsets, interp_threads_head) + 4
        );
        assert_eq!(size_of::<HotFrame>(), 64);
        assert_eq!((hot::PARENT, hot::FLAGS), (40, 48));
        assert_eq!(
            (hot::FRAME, hot::EXPECT, hot::LAST_N, hot::ORD, hot::BIAS),
            (0, 8, 16, 24, 32)
        );
        const { assert!(field::CUR_RECORD + 8 <= 64) };
    }

    #[test]
    fn detour_kinds_round_trip() {
        for k in [
            DetourKind::HashPointer,
            DetourKind::Dealloc,
            DetourKind::ThreadStateClear,
            DetourKind::SetAsyncExc,
            DetourKind::ThreadStateNew,
        ] {
            assert_eq!(DetourKind::from_u32(k as u32), Some(k));
        }
        assert_eq!(DetourKind::from_u32(0), None);
        assert_eq!(DetourKind::from_u32(6), None);
    }

    #[test]
    fn magic_leads() {
        let d = Descriptor::new();
        assert_eq!(&d.as_bytes()[..8], b"RETRACE1");
        assert_eq!(d.descriptor_size as usize, size_of::<Descriptor>());
    }
}
