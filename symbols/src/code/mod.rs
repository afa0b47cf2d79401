//! Machine-code half of the analysis: decodes the eval function, proves
//! every indirect jump is a table dispatch, computes liveness, derives the
//! register layout, finds current-frame stores, recursion-check points and
//! hook points. Everything is derived from code + table + struct offsets;
//! DWARF labels are optional hints.
//!
//! * [`image`]: executable bytes by address, names of call targets.
//! * [`decode`]: linear decoding of ranges. [`cfg`]: blocks and edges.
//! * [`stack`]: rsp offsets. [`holders`]: "which locations hold value V" dataflow.
//! * [`dispatch`]: table dispatch proof. [`liveness`]: backward liveness.
//! * [`registers`]/[`layout`]: register layout. [`frame_stores`]: current-frame stores.
//! * [`labels`]: recursion-check points. [`hookable`]: 5-byte hook points.
//! * [`detours`]: function entries diverted to runtime replacements.
//! * [`raise`]: where a stub re-enters the error path when a callback raised.

pub mod cfg;
pub mod decode;
pub mod detours;
pub mod dispatch;
pub mod error;
pub mod frame_stores;
pub mod holders;
pub mod hookable;
pub mod image;
pub mod labels;
pub mod layout;
pub mod liveness;
pub mod raise;
pub mod registers;
pub mod regs;
pub mod stack;

mod facts;

pub use error::CodeError;
pub use facts::{analyze_code, EvalCode};
pub use hookable::HookRefusal;
pub use image::CodeImage;

use crate::model::{
    CurrentFrameStore, DispatchSite, EvalFunction, FunctionSite, HookSite, LabelSite, OpcodeTable,
    RegisterLayout, SourceLine, StructOffsets,
};
use crate::versions::VersionProfile;

/// What the machine-code analysis reads.
pub struct CodeInputs<'a> {
    pub image: &'a CodeImage<'a>,
    pub profile: &'static VersionProfile,
    /// Ranges including `.cold`.
    pub eval: &'a EvalFunction,
    /// 256 slots: target, labels, kind.
    pub table: &'a OpcodeTable,
    /// Control labels from DWARF (optional hints).
    pub labels: &'a [LabelSite],
    /// Out-of-line functions (address, size).
    pub functions: &'a [FunctionSite],
    pub offsets: &'a StructOffsets,
    pub line_at: &'a dyn Fn(u64) -> Option<SourceLine>,
}

/// What the machine-code analysis derives.
#[derive(Clone, Debug)]
pub struct CodeFacts {
    pub dispatch_sites: Vec<DispatchSite>,
    pub registers: RegisterLayout,
    pub current_frame_stores: Vec<CurrentFrameStore>,
    /// StartFrameChecked, ThrowEntry.
    pub extra_labels: Vec<LabelSite>,
    pub hooks: Vec<HookSite>,
    /// Why hooks could not be placed (empty on success). The other facts stay valid.
    pub hook_failures: Vec<String>,
}
