//! DWARF view of the input library, parsed with `gimli`.
//!
//! The 3.12 `.debug_info` is 14 MB, so nothing here walks all of it unless it
//! must: the eval function's compilation unit is found through
//! `.debug_aranges`, labels and ranges come from that unit alone, and struct
//! layouts look in the eval unit first and only then in other units.
//!
//! * [`units`]: address → compilation unit.
//! * [`names`]: DIE names through `DW_AT_abstract_origin` / `DW_AT_specification`.
//! * [`function`]: a function's ranges, labels and static variables.
//! * [`structs`]: struct sizes and (nested) field offsets.
//! * [`lines`]: address → source file and line.

pub mod function;
pub mod lines;
pub mod names;
pub mod structs;
pub mod units;

use crate::elf::ElfInput;
use crate::error::AnalysisError;
use object::{Object, ObjectSection};
use std::borrow::Cow;

/// The reader type used throughout: a little-endian slice of the file (x86-64 only).
pub type Reader<'a> = gimli::EndianSlice<'a, gimli::LittleEndian>;

/// The DWARF sections of the file, decompressed when needed.
pub struct DwarfData<'a> {
    sections: gimli::DwarfSections<Cow<'a, [u8]>>,
}

impl<'a> DwarfData<'a> {
    /// Loads the sections; `NoDebugInfo` when `.debug_info` is missing or empty.
    pub fn load(elf: &ElfInput<'a>) -> Result<Self, AnalysisError> {
        let has_info = elf
            .file()
            .section_by_name(".debug_info")
            .is_some_and(|s| s.size() > 0);
        if !has_info {
            return Err(AnalysisError::NoDebugInfo(elf.path().to_string()));
        }
        let sections = gimli::DwarfSections::load(|id| -> Result<Cow<'a, [u8]>, AnalysisError> {
            match elf.file().section_by_name(id.name()) {
                Some(section) => section.uncompressed_data().map_err(|e| {
                    AnalysisError::Truncated(elf.path().to_string(), format!("{}: {e}", id.name()))
                }),
                None => Ok(Cow::Borrowed(&[][..])),
            }
        })?;
        Ok(DwarfData { sections })
    }

    /// A `gimli::Dwarf` borrowing these sections.
    pub fn dwarf(&self) -> gimli::Dwarf<Reader<'_>> {
        self.sections
            .borrow(|section| gimli::EndianSlice::new(section, gimli::LittleEndian))
    }
}

/// Converts a gimli error into the crate's error for `path`.
pub fn dwarf_error(path: &str, err: gimli::Error) -> AnalysisError {
    AnalysisError::Dwarf(path.to_string(), err.to_string())
}
