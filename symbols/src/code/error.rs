//! Why the machine code of an eval function cannot be analysed.
//!
//! Each variant is one precise, one-line sentence; the orchestration turns
//! them into "unsupported" entries for versions it only analyses.

use thiserror::Error;

/// Every way the machine-code analysis can fail.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodeError {
    #[error("address {0:#x} is not inside any executable section")]
    NotMapped(u64),
    #[error("invalid instruction at {0:#x}")]
    InvalidInstruction(u64),
    #[error("instruction at {addr:#x} crosses the end of its range {end:#x}")]
    CrossesRange { addr: u64, end: u64 },
    #[error("the eval function has no code ranges")]
    NoRanges,
    #[error("table entry for opcode {opcode} targets {target:#x}, outside the eval function")]
    TargetOutside { opcode: u8, target: u64 },
    #[error("table target {target:#x} (opcode {opcode}) is not an instruction boundary")]
    TargetNotBoundary { opcode: u8, target: u64 },
    #[error("direct branch at {from:#x} reaches table target {target:#x}")]
    BranchToTarget { from: u64, target: u64 },
    #[error("instruction at {from:#x} falls through into table target {target:#x}")]
    FallThroughToTarget { from: u64, target: u64 },
    #[error("indirect jump at {addr:#x} is not a proven table dispatch: {reason}")]
    NotTableDispatch { addr: u64, reason: String },
    #[error("rsp is adjusted in an untracked way at {0:#x}")]
    UntrackedStackAdjust(u64),
    #[error("rsp offset differs between paths at {addr:#x} ({a} vs {b})")]
    StackMismatch { addr: u64, a: i64, b: i64 },
    #[error("rsp offset is not the same at all table targets ({a} vs {b})")]
    TargetStackMismatch { a: i64, b: i64 },
    #[error("the eval function entry is unknown (no EvalFrameDefault function site inside the eval ranges)")]
    NoEntry,
    #[error("no dispatch sequence loads {field} and stacktop from one frame register; cannot derive the register layout")]
    NoResumeSequence { field: &'static str },
    #[error("register layout: {0}")]
    Layout(String),
    #[error("struct offset {0} is missing from the DWARF layouts")]
    MissingOffset(&'static str),
    #[error("current-frame store: {0}")]
    FrameStores(String),
    #[error("recursion check: {0}")]
    RecursionCheck(String),
    #[error("hook at {addr:#x} ({what}): {reason}")]
    Hook {
        addr: u64,
        what: String,
        reason: String,
    },
}
