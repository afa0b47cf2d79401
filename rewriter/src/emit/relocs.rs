//! Lookup and in-place editing of `R_X86_64_RELATIVE` dynamic relocations by `r_offset`.
//! The opcode table of the interpreter is filled by such relocations; redirecting a handler
//! means changing one addend, without adding or removing relocations (`.rela.dyn` cannot move).

use std::collections::HashMap;

use object::build::elf::{Builder, SectionData, SectionId};
use object::elf;

use super::EmitError;

/// Position of one relocation inside the builder's section list.
#[derive(Debug, Clone, Copy)]
struct RelocRef {
    section: SectionId,
    index: usize,
}

/// Index from `r_offset` to the `R_X86_64_RELATIVE` relocation applying there.
#[derive(Debug, Default)]
pub(crate) struct RelativeIndex {
    by_offset: HashMap<u64, RelocRef>,
}

impl RelativeIndex {
    /// Index every RELATIVE relocation of every allocated dynamic relocation section.
    /// If two relocations share an `r_offset` (never produced by linkers), the first wins.
    pub(crate) fn build(builder: &Builder<'_>) -> Self {
        let mut by_offset = HashMap::new();
        for section in &builder.sections {
            let SectionData::DynamicRelocation(relocs) = &section.data else {
                continue;
            };
            for (index, rel) in relocs.iter().enumerate() {
                if rel.r_type == elf::R_X86_64_RELATIVE && rel.symbol.is_none() {
                    by_offset.entry(rel.r_offset).or_insert(RelocRef {
                        section: section.id(),
                        index,
                    });
                }
            }
        }
        RelativeIndex { by_offset }
    }

    /// Set the addend of the RELATIVE relocation at `slot`; return the previous addend.
    pub(crate) fn redirect(
        &self,
        builder: &mut Builder<'_>,
        slot: u64,
        new_addend: u64,
    ) -> Result<u64, EmitError> {
        let found = self
            .by_offset
            .get(&slot)
            .ok_or(EmitError::RelocationNotFound { slot })?;
        let addend = i64::try_from(new_addend).map_err(|_| EmitError::AddendTooLarge {
            slot,
            addend: new_addend,
        })?;
        let section = builder.sections.get_mut(found.section);
        let SectionData::DynamicRelocation(relocs) = &mut section.data else {
            return Err(EmitError::RelocationNotFound { slot });
        };
        let rel = relocs
            .get_mut(found.index)
            .ok_or(EmitError::RelocationNotFound { slot })?;
        let old = u64::try_from(rel.r_addend).map_err(|_| EmitError::NegativeAddend {
            slot,
            addend: rel.r_addend,
        })?;
        rel.r_addend = addend;
        Ok(old)
    }
}
