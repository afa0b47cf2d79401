//! ELF emission: turns the unmodified upstream libpython into the rewritten one.
//!
//! Everything goes through `object`'s `build::elf::Builder` (it parses and serialises; there
//! is no hand-written ELF writer here). This module adds to the builder's model what the
//! rewriter needs: a `DT_NEEDED` on the runtime and a `DT_RUNPATH`, two new sections in
//! their own `PT_LOAD`s (RW descriptor data, R+X trampolines) at addresses fixed before code
//! generation, redirected `R_X86_64_RELATIVE` addends (the opcode table), byte patches in
//! existing code, and the relocation of sections that no longer fit (see [`moves`]).
//!
//! Layout policy (see [`layout`]): data at the first page above the original image, text at
//! the next page after it; sections moved at [`ElfRewrite::finish`] go above the final end
//! of the text, so the text may have any size and both addresses never change.

mod dynamic;
mod error;
mod layout;
mod moves;
mod patch;
mod relocs;

use std::collections::BTreeMap;

use object::build::elf::{Builder, Dynamic, SectionData, SectionId};
use object::elf;

pub use error::EmitError;
pub use moves::MovedSection;

use layout::Plan;
use relocs::RelativeIndex;

/// Virtual addresses chosen by [`ElfRewrite::place_new_sections`]; they stay exactly as
/// returned in the output of [`ElfRewrite::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Address of the new RW data section (start of its own `PT_LOAD`).
    pub data_vaddr: u64,
    /// Address of the new R+X text section (start of its own `PT_LOAD`).
    pub text_vaddr: u64,
}

/// What [`ElfRewrite::finish_with_report`] did besides the requested edits.
#[derive(Debug, Clone, Default)]
pub struct EmitReport {
    /// Sections moved to new `PT_LOAD`s because they no longer fitted.
    pub moved: Vec<MovedSection>,
    /// Number of program headers in the output.
    pub program_headers: usize,
}

/// An in-progress rewrite of one ELF64 x86-64 shared object.
pub struct ElfRewrite<'a> {
    builder: Builder<'a>,
    relatives: RelativeIndex,
    plan: Option<Plan>,
    data: Option<Vec<u8>>,
    text: Option<Vec<u8>>,
    /// slot -> addend, for the post-layout check that each target is mapped.
    redirects: BTreeMap<u64, u64>,
}

impl std::fmt::Debug for ElfRewrite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElfRewrite")
            .field("sections", &self.builder.sections.count())
            .field("segments", &self.builder.segments.count())
            .field("plan", &self.plan)
            .field("redirects", &self.redirects.len())
            .finish()
    }
}

impl<'a> ElfRewrite<'a> {
    /// Parse `input`, which must be an ELF64 x86-64 shared object (`ET_DYN`).
    pub fn read(input: &'a [u8]) -> Result<Self, EmitError> {
        let builder = Builder::read(input).map_err(EmitError::Parse)?;
        if !builder.is_64
            || builder.header.e_type != elf::ET_DYN
            || builder.header.e_machine != elf::EM_X86_64
        {
            return Err(EmitError::UnsupportedInput {
                e_type: builder.header.e_type.0,
                e_machine: builder.header.e_machine.0,
                is_64: builder.is_64,
            });
        }
        let relatives = RelativeIndex::build(&builder);
        Ok(ElfRewrite {
            builder,
            relatives,
            plan: None,
            data: None,
            text: None,
            redirects: BTreeMap::new(),
        })
    }

    fn dynamics(&mut self) -> Result<&mut Vec<Dynamic<'a>>, EmitError> {
        self.builder
            .sections
            .iter_mut()
            .find_map(|s| match &mut s.data {
                SectionData::Dynamic(d) if !s.delete => Some(d),
                _ => None,
            })
            .ok_or(EmitError::NoDynamicSection)
    }

    /// Add a `DT_NEEDED` entry (after the existing ones). Already-needed names are left as is.
    pub fn add_needed(&mut self, soname: &str) -> Result<(), EmitError> {
        dynamic::add_needed(self.dynamics()?, soname).map(|_| ())
    }

    /// Set `DT_RUNPATH` (add it if absent, replace if present).
    pub fn set_runpath(&mut self, runpath: &str) -> Result<(), EmitError> {
        dynamic::set_runpath(self.dynamics()?, runpath)
    }

    /// Decide the virtual addresses of two new sections, each in its own new `PT_LOAD`:
    /// `data_name` (RW, `data_size` bytes, zero-initialised unless [`Self::set_data`] is
    /// called) and `text_name` (R+X) whose size is not known yet (text is placed last so it
    /// can grow). Both page aligned, above every existing segment. Must be called once,
    /// before `set_*`.
    pub fn place_new_sections(
        &mut self,
        data_name: &str,
        data_size: u64,
        text_name: &str,
    ) -> Result<Placement, EmitError> {
        if self.plan.is_some() {
            return Err(EmitError::AlreadyPlaced);
        }
        let plan = layout::plan(&self.builder, data_name, data_size, text_name)?;
        let placement = Placement {
            data_vaddr: plan.data_vaddr,
            text_vaddr: plan.text_vaddr,
        };
        self.plan = Some(plan);
        Ok(placement)
    }

    /// Set the contents of the text section (generated for the address returned by
    /// [`Self::place_new_sections`]). May be called again to replace them.
    pub fn set_text(&mut self, bytes: Vec<u8>) -> Result<(), EmitError> {
        if self.plan.is_none() {
            return Err(EmitError::NotPlaced("set_text"));
        }
        if bytes.is_empty() {
            return Err(EmitError::EmptyText);
        }
        self.text = Some(bytes);
        Ok(())
    }

    /// Set the contents of the data section; `bytes.len()` must equal the planned size.
    pub fn set_data(&mut self, bytes: Vec<u8>) -> Result<(), EmitError> {
        let plan = self.plan.as_ref().ok_or(EmitError::NotPlaced("set_data"))?;
        if bytes.len() as u64 != plan.data_size {
            return Err(EmitError::DataSizeMismatch {
                expected: plan.data_size,
                got: bytes.len() as u64,
            });
        }
        self.data = Some(bytes);
        Ok(())
    }

    /// Change the addend of the `R_X86_64_RELATIVE` relocation whose `r_offset` is `slot`;
    /// returns the old addend. That the new target is mapped is checked by `finish`.
    pub fn redirect_relative(&mut self, slot: u64, new_addend: u64) -> Result<u64, EmitError> {
        let old = self
            .relatives
            .redirect(&mut self.builder, slot, new_addend)?;
        self.redirects.insert(slot, new_addend);
        Ok(old)
    }

    /// Overwrite bytes at a virtual address inside an existing allocated PROGBITS section
    /// (e.g. `.text`); returns the old bytes.
    pub fn patch(&mut self, vaddr: u64, bytes: &[u8]) -> Result<Vec<u8>, EmitError> {
        // The new sections are only added to the builder by finish(), so they cannot match.
        let exclude: [SectionId; 0] = [];
        patch::patch(&mut self.builder, &exclude, vaddr, bytes)
    }

    /// Lay out (moving sections that no longer fit into new `PT_LOAD`s above the text) and
    /// serialise.
    pub fn finish(self) -> Result<Vec<u8>, EmitError> {
        self.finish_with_report().map(|(bytes, _)| bytes)
    }

    /// [`Self::finish`], also reporting which sections were moved.
    pub fn finish_with_report(mut self) -> Result<(Vec<u8>, EmitReport), EmitError> {
        if let Some(plan) = &self.plan {
            let text = self.text.take().ok_or(EmitError::TextNotSet)?;
            let data = match self.data.take() {
                Some(data) => data,
                None => vec![
                    0;
                    usize::try_from(plan.data_size).map_err(|_| {
                        EmitError::AddressOverflow("sizing the data section")
                    })?
                ],
            };
            layout::materialise(&mut self.builder, plan, data, text)?;
        }
        self.builder.delete_orphans();
        self.builder.delete_unused_versions();
        self.builder.set_section_sizes();
        let page = layout::page_size(&self.builder)?;
        let moved = moves::move_sections(&mut self.builder, page)?;
        layout::fit_dynamic_segment(&mut self.builder);
        let redirects: Vec<(u64, u64)> = self.redirects.into_iter().collect();
        layout::verify(&self.builder, self.plan.as_ref(), &redirects)?;
        let report = EmitReport {
            moved,
            program_headers: self.builder.segments.count(),
        };
        let mut out = Vec::new();
        self.builder.write(&mut out).map_err(EmitError::Write)?;
        Ok((out, report))
    }
}
