//! The `R_X86_64_RELATIVE` relocations of `.rela.dyn`, indexed by `r_offset`.
//!
//! The opcode table's slots are filled by these relocations at load time
//! (their file bytes are zero), so the addend *is* the handler address.

use crate::error::AnalysisError;
use object::read::elf::{ElfFile64, SectionHeader};
use object::{Object, ObjectSection};
use std::collections::BTreeMap;

/// `R_X86_64_RELATIVE`.
const R_X86_64_RELATIVE: u32 = 8;
/// Size of one `Elf64_Rela`.
const RELA_SIZE: usize = 24;

/// Slot address → addend.
#[derive(Clone, Debug, Default)]
pub struct RelativeRelocs {
    by_offset: BTreeMap<u64, u64>,
}

impl RelativeRelocs {
    pub fn read(path: &str, file: &ElfFile64<'_>) -> Result<Self, AnalysisError> {
        let mut relocs = RelativeRelocs::default();
        let Some(section) = file.section_by_name(".rela.dyn") else {
            return Ok(relocs);
        };
        if section.elf_section_header().sh_type(file.endian()) != object::elf::SHT_RELA {
            return Err(AnalysisError::Truncated(
                path.to_string(),
                ".rela.dyn is not of type SHT_RELA".into(),
            ));
        }
        let bytes = section
            .data()
            .map_err(|e| AnalysisError::Truncated(path.to_string(), format!(".rela.dyn: {e}")))?;
        for rela in bytes.chunks_exact(RELA_SIZE) {
            let word = |i: usize| u64::from_le_bytes(rela[i..i + 8].try_into().unwrap_or_default());
            let (offset, info, addend) = (word(0), word(8), word(16));
            if info as u32 == R_X86_64_RELATIVE {
                relocs.by_offset.insert(offset, addend);
            }
        }
        Ok(relocs)
    }

    /// The addend of the relative relocation at `offset`.
    pub fn at(&self, offset: u64) -> Option<u64> {
        self.by_offset.get(&offset).copied()
    }

    pub fn len(&self) -> usize {
        self.by_offset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_offset.is_empty()
    }
}
