//! Machine-code analysis of the eval loop (placeholder interface).
//!
//! This file only fixes the interface between the ELF/DWARF half and the
//! machine-code half of the analysis; the real implementation (disassembly,
//! liveness, dispatch sites, register layout, current-frame stores, hook
//! points) replaces it. Until then `analyze_code` reports that it is missing.

use crate::model::{
    CurrentFrameStore, DispatchSite, EvalFunction, FunctionSite, HookSite, LabelSite,
    OpcodeTable, RegisterLayout, SourceLine, StructOffsets,
};
use object::read::elf::ElfFile64;
use object::{Object, ObjectSection, SectionKind};

/// The executable sections of the file: `(vaddr, bytes)`.
pub struct CodeImage<'a> {
    pub sections: Vec<(u64, &'a [u8])>,
}

impl<'a> CodeImage<'a> {
    pub fn from_elf(file: &ElfFile64<'a>) -> Self {
        let sections = file
            .sections()
            .filter(|s| s.kind() == SectionKind::Text)
            .filter_map(|s| s.data().ok().map(|d| (s.address(), d)))
            .collect();
        CodeImage { sections }
    }
}

/// Everything the machine-code analysis needs from the ELF/DWARF half.
pub struct CodeInputs<'a> {
    pub image: &'a CodeImage<'a>,
    pub profile: &'static crate::versions::VersionProfile,
    pub eval: &'a EvalFunction,
    pub table: &'a OpcodeTable,
    /// Control labels from DWARF.
    pub labels: &'a [LabelSite],
    pub functions: &'a [FunctionSite],
    pub offsets: &'a StructOffsets,
    pub line_at: &'a dyn Fn(u64) -> Option<SourceLine>,
}

/// What the machine-code analysis derives.
pub struct CodeFacts {
    pub dispatch_sites: Vec<DispatchSite>,
    pub registers: RegisterLayout,
    pub current_frame_stores: Vec<CurrentFrameStore>,
    /// StartFrameChecked, ThrowEntry.
    pub extra_labels: Vec<LabelSite>,
    pub hooks: Vec<HookSite>,
}

/// Why the machine-code analysis failed.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("code analysis not available")]
    NotAvailable,
}

/// Runs the machine-code analysis.
pub fn analyze_code(_inputs: &CodeInputs<'_>) -> Result<CodeFacts, CodeError> {
    Err(CodeError::NotAvailable)
}
