//! The facts the analysis derives from one libpython, as plain serialisable data.
//!
//! Everything downstream (trampoline generation, ELF emission, verification,
//! `rewriter inspect --json`) consumes these types and nothing else from the
//! analysis, so this file is the contract between analysis and emission.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A CPython version as read from the binary (`Py_Version`, i.e. `PY_VERSION_HEX`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PyVersion {
    pub major: u8,
    pub minor: u8,
    pub micro: u8,
    /// 0xA alpha, 0xB beta, 0xC candidate, 0xF final.
    pub level: u8,
    pub serial: u8,
}

impl PyVersion {
    pub fn from_hex(hex: u32) -> Self {
        PyVersion {
            major: (hex >> 24) as u8,
            minor: (hex >> 16) as u8,
            micro: (hex >> 8) as u8,
            level: ((hex >> 4) & 0xf) as u8,
            serial: (hex & 0xf) as u8,
        }
    }
    pub fn hex(&self) -> u32 {
        (self.major as u32) << 24
            | (self.minor as u32) << 16
            | (self.micro as u32) << 8
            | ((self.level as u32) & 0xf) << 4
            | (self.serial as u32 & 0xf)
    }
    /// `(major, minor)`, the key of per-version knowledge.
    pub fn series(&self) -> (u8, u8) {
        (self.major, self.minor)
    }
}

impl std::fmt::Display for PyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)?;
        match self.level {
            0xA => write!(f, "a{}", self.serial),
            0xB => write!(f, "b{}", self.serial),
            0xC => write!(f, "rc{}", self.serial),
            _ => Ok(()),
        }
    }
}

/// Half-open virtual address range `[start, end)`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddrRange {
    pub start: u64,
    pub end: u64,
}

impl AddrRange {
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// A 64-bit general-purpose register, in hardware encoding order.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Gpr {
    Rax,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    pub const ALL: [Gpr; 16] = [
        Gpr::Rax,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rsp,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];
    /// Hardware register number (0 = rax … 15 = r15).
    pub fn number(self) -> u8 {
        self as u8
    }
    pub fn from_number(n: u8) -> Option<Gpr> {
        Gpr::ALL.get(n as usize).copied()
    }
    pub fn name(self) -> &'static str {
        [
            "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ][self as usize]
    }
    /// Caller-saved in the System V AMD64 ABI.
    pub fn is_caller_saved(self) -> bool {
        matches!(
            self,
            Gpr::Rax
                | Gpr::Rcx
                | Gpr::Rdx
                | Gpr::Rsi
                | Gpr::Rdi
                | Gpr::R8
                | Gpr::R9
                | Gpr::R10
                | Gpr::R11
        )
    }
}

/// Where an eval-loop variable lives at handler entry.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// In a register (the full 64-bit register; 32-bit values are zero-extended).
    Reg(Gpr),
    /// In memory at `[rsp + offset]`, rsp being the eval function's fixed stack pointer.
    Stack(i32),
    /// Not held anywhere at handler entry (e.g. reloaded from memory by the handler).
    Unavailable,
}

/// The register layout shared by every opcode handler of the eval loop.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RegisterLayout {
    pub frame: Location,
    /// Points at the instruction being dispatched (3.11/3.12: `frame->prev_instr` is still the previous one).
    pub next_instr: Location,
    pub stack_pointer: Location,
    pub oparg: Location,
    pub opcode: Location,
    pub tstate: Location,
    /// Registers live on entry to at least one table target (from the liveness analysis).
    pub live_in_any: Vec<Gpr>,
    /// Registers dead on entry to every real table target: usable as scratch by a stub.
    pub dead_everywhere: Vec<Gpr>,
    /// Whether the flags register is live on entry to any table target.
    pub flags_live: bool,
    /// How each entry was derived and confirmed, for `inspect`.
    pub evidence: Vec<String>,
}

/// What a table slot leads to, which decides whether it is redirected.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TableEntryKind {
    /// A real instruction handler with an `INSTRUCTION_START`: redirected.
    Real,
    /// `INSTRUMENTED_LINE` (3.12+): no instruction start, never redirected.
    InstrumentedLine,
    /// 3.11 `DO_TRACING`: not a boundary, never redirected.
    DoTracing,
    /// `_unknown_opcode`: never redirected.
    Unknown,
    /// `CACHE` (opcode 0): unreachable, never redirected.
    Cache,
    /// `RESERVED`: unreachable, never redirected.
    Reserved,
}

impl TableEntryKind {
    pub fn is_redirected(self) -> bool {
        matches!(self, TableEntryKind::Real)
    }
}

/// One of the 256 slots of the computed-goto table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TableEntry {
    pub opcode: u8,
    /// Address of the 8-byte slot (the `r_offset` of its relocation).
    pub slot: u64,
    /// The handler address (the relocation addend).
    pub target: u64,
    /// DWARF labels at `target` (`TARGET_<name>` with the prefix removed, or `_unknown_opcode`).
    pub labels: Vec<String>,
    /// The opcode's own name: the label matching this slot (`labels[0]` when unambiguous).
    pub name: String,
    pub kind: TableEntryKind,
}

/// The computed-goto table of the eval loop and how it is relocated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OpcodeTable {
    pub symbol: String,
    pub address: u64,
    pub entries: Vec<TableEntry>,
}

/// Per-opcode static tables copied out of the binary (`_PyOpcode_Caches`, `_PyOpcode_Deopt`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OpcodeMeta {
    /// Inline cache entries (code units) per opcode.
    pub caches: Vec<u8>,
    /// Base (deoptimised) opcode per opcode.
    pub deopt: Vec<u8>,
}

/// A source position from the DWARF line table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceLine {
    pub file: String,
    pub line: u32,
}

/// One indirect `jmp` of the eval loop that dispatches through the opcode table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DispatchSite {
    /// Address of the table load (`mov reg, [base + idx*8]`).
    pub load: u64,
    /// Address of the indirect `jmp reg`.
    pub jump: u64,
    /// Register holding the table base at the load.
    pub base: Gpr,
    pub line: Option<SourceLine>,
}

/// A store of the current frame pointer (`cframe.current_frame` on 3.11/3.12,
/// `tstate->current_frame` on 3.13+) inside the eval loop.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CurrentFrameStore {
    pub address: u64,
    pub len: u8,
    /// Register holding the new current frame.
    pub value: Gpr,
    /// Where the store writes: `[rsp+disp]` (cframe local) or `[reg+disp]` (tstate field).
    pub destination: String,
    pub line: Option<SourceLine>,
}

/// The role a whole function plays in the frame lifecycle or in identity hooks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum FunctionRole {
    EvalFrameDefault,
    FrameClearAndPop,
    ThreadStatePopFrame,
    FrameCopy,
    FramePushAndInit,
    HashPointer,
    Dealloc,
    /// `PyThreadState_Clear`: natural thread completion (SEMANTICS §15, §11.5).
    ThreadStateClear,
    /// `PyThreadState_SetAsyncExc`: Retrace ids accepted (SEMANTICS §9.5).
    SetAsyncExc,
    /// `PyThreadState_New`: thread states C code creates get parent-derived
    /// ids (SEMANTICS §9.4).
    ThreadStateNew,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FunctionSite {
    pub role: FunctionRole,
    pub name: String,
    pub address: u64,
    pub size: u64,
}

/// The role of a code label inside the eval function.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum LabelRole {
    StartFrame,
    ResumeFrame,
    ResumeWithError,
    HandleEvalBreaker,
    Error,
    ExceptionUnwind,
    ExitUnwind,
    /// The throw entry: the first instruction after the recursion check on the `throwflag` path.
    ThrowEntry,
    /// The first instruction after the recursion check on the normal `start_frame` path.
    StartFrameChecked,
    /// The `prev_instr` load that enters `resume_with_error`: where a dispatch
    /// stub sends the eval loop when a Retrace callback raised (see `code::raise`).
    RaiseEntry,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LabelSite {
    pub role: LabelRole,
    pub name: String,
    pub address: u64,
}

/// Everything that links, pushes, pops or copies interpreter frames.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct FrameLinks {
    pub current_frame_stores: Vec<CurrentFrameStore>,
    pub functions: Vec<FunctionSite>,
    pub labels: Vec<LabelSite>,
}

impl FrameLinks {
    pub fn label(&self, role: LabelRole) -> Option<&LabelSite> {
        self.labels.iter().find(|l| l.role == role)
    }
    pub fn function(&self, role: FunctionRole) -> Option<&FunctionSite> {
        self.functions.iter().find(|f| f.role == role)
    }
}

/// The layout of one C struct from DWARF.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct StructLayout {
    pub size: u64,
    /// Field name (nested fields joined with `.`) → byte offset.
    pub fields: BTreeMap<String, u64>,
}

/// The struct layouts the runtime needs, keyed by C struct name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct StructOffsets {
    pub structs: BTreeMap<String, StructLayout>,
}

impl StructOffsets {
    pub fn offset(&self, structure: &str, field: &str) -> Option<u64> {
        self.structs.get(structure)?.fields.get(field).copied()
    }
    pub fn size(&self, structure: &str) -> Option<u64> {
        self.structs.get(structure).map(|s| s.size)
    }
}

/// A place where the rewriter may put a 5-byte `jmp rel32` to a trampoline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HookPoint {
    pub address: u64,
    /// The original bytes of the whole instructions that the jump displaces (≥ 5).
    pub bytes: Vec<u8>,
    /// Whether the status flags may be live just before `address` (liveness analysis;
    /// `true` when unknown). A trampoline must preserve them if so.
    #[serde(default = "flags_unknown")]
    pub flags_live: bool,
}

fn flags_unknown() -> bool {
    true
}

impl HookPoint {
    pub fn end(&self) -> u64 {
        self.address + self.bytes.len() as u64
    }
}

/// What the rewriter hooks besides the table, and why.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// Entry of `_PyEval_EvalFrameDefault` (E2: C-level evaluation starts).
    EvalEntry,
    /// `start_frame` after the recursion check (E3: activation).
    StartFrame,
    /// Throw path after the recursion check (E3).
    ThrowEntry,
    /// `handle_eval_breaker` (settle a pending jump before Python code runs).
    EvalBreaker,
    /// A store of the current frame pointer (old and new frame visible).
    CurrentFrameStore,
    /// Entry of a frame lifecycle function (clear-and-pop, pop, copy).
    FunctionEntry,
}

/// A hook point with its purpose.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HookSite {
    pub kind: HookKind,
    /// Function or label name this hook belongs to.
    pub what: String,
    pub point: HookPoint,
}

/// Which CPython function a detour diverts to a runtime replacement.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DetourKind {
    /// The pointer hash (`_Py_HashPointer`): identity hashes (SEMANTICS §10).
    HashPointer,
    /// The generic deallocation entry (`_Py_Dealloc`): forget identity hashes.
    Dealloc,
    /// `PyThreadState_Clear`: natural thread completion and the clear of
    /// scheduling state (SEMANTICS §15, §11.5).
    ThreadStateClear,
    /// `PyThreadState_SetAsyncExc`: resolve a Retrace id or native ident
    /// (SEMANTICS §9.5) before the original runs.
    SetAsyncExc,
    /// `PyThreadState_New`: derive the id of a thread state created by C
    /// code from the creating thread (SEMANTICS §9.4).
    ThreadStateNew,
}

/// A function whose entry the rewriter diverts to a detour that calls the
/// runtime's replacement (or runs the original when none is installed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DetourSite {
    pub kind: DetourKind,
    /// The detoured function's symbol name.
    pub function: String,
    /// The function entry; `bytes` are the displaced entry instructions.
    pub point: HookPoint,
    /// The displaced instructions cannot be moved (e.g. they end in an
    /// indirect tail jump): `point.bytes` is the whole verified function body
    /// and the runtime must replace the whole function.
    pub full_replacement: bool,
}

/// The eval function and where its code lives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EvalFunction {
    pub symbol: String,
    /// All address ranges (hot part and `.cold` part), from DWARF `DW_AT_ranges`.
    pub ranges: Vec<AddrRange>,
}

impl EvalFunction {
    pub fn contains(&self, addr: u64) -> bool {
        self.ranges.iter().any(|r| r.contains(addr))
    }
}

/// Identification of the input file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LibraryInfo {
    pub path: String,
    pub size: u64,
    pub soname: Option<String>,
    pub build_id: Option<String>,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
}

/// Everything `rewriter inspect` prints.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Analysis {
    pub library: LibraryInfo,
    pub version: PyVersion,
    pub eval: EvalFunction,
    pub table: Option<OpcodeTable>,
    pub opcode_meta: Option<OpcodeMeta>,
    pub dispatch_sites: Vec<DispatchSite>,
    pub registers: Option<RegisterLayout>,
    pub frame_links: FrameLinks,
    pub hooks: Vec<HookSite>,
    /// Function entries diverted to runtime replacements (absent in older JSON).
    #[serde(default)]
    pub detours: Vec<DetourSite>,
    pub offsets: StructOffsets,
    /// Parts of the analysis this version does not support yet, each a precise sentence.
    /// Empty means the library can be instrumented.
    pub unsupported: Vec<String>,
}

impl Analysis {
    pub fn is_instrumentable(&self) -> bool {
        self.unsupported.is_empty()
            && self.table.is_some()
            && self.registers.is_some()
            && self.opcode_meta.is_some()
    }
}
