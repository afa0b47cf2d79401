//! Relocation of allocated sections that no longer fit where they were.
//!
//! Reproduces the approach of `object-rewrite` 0.1.1 (`move_sections`, MIT/Apache-2.0), ported
//! to `object` 0.40: every allocated section, the file header, the (grown) program header
//! table and the boundaries of each existing `PT_LOAD` become address blocks; where two
//! blocks overlap, the more movable one is moved into a new `PT_LOAD` (one per permission
//! set) appended above everything already mapped. The number of program headers depends on
//! how many segments get added, so the search repeats until that number is a fixed point.
//!
//! Differences from object-rewrite, each needed for libpython:
//! * `.dynamic` is movable (after the sections that nothing references by address), because
//!   adding `DT_NEEDED`/`DT_RUNPATH` may outgrow its slack; `PT_DYNAMIC` follows it.
//! * `PT_GNU_RELRO` is never split or shrunk: it keeps protecting the original range (the
//!   opcode table lives there); a moved section just leaves its section list.
//! * Moved sections also leave the section list of their old `PT_LOAD`, and symbols that
//!   pointed into a moved section (e.g. `_DYNAMIC`) are shifted with it.

use object::build::elf::{Builder, SectionData, SectionId};
use object::elf;

use super::EmitError;

/// What was moved, for reporting and for symbol fix-ups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedSection {
    /// Section name.
    pub name: String,
    /// Address before the move.
    pub old_addr: u64,
    /// Address after the move.
    pub new_addr: u64,
    /// Size after layout.
    pub size: u64,
}

enum BlockKind {
    Fixed,
    Section(SectionId),
}

struct Block {
    name: String,
    kind: BlockKind,
    address: u64,
    size: u64,
    /// Higher means better to move; 0 means never move.
    move_priority: u8,
}

/// Move every allocated section that overlaps something (or is flagged with `sh_offset == 0`)
/// into new `PT_LOAD`s placed above the current highest segment, with `page` alignment.
/// Section sizes must already be final (`Builder::set_section_sizes`).
pub(crate) fn move_sections(
    builder: &mut Builder<'_>,
    page: u64,
) -> Result<Vec<MovedSection>, EmitError> {
    let mut added_segments = 0usize;
    // SectionId is not Hash; only a handful of sections ever move.
    let mut old_addrs: Vec<(SectionId, u64, u64)> = Vec::new();
    loop {
        let mut to_move = find_move_sections(builder, added_segments)?;
        if to_move.is_empty() {
            return Ok(Vec::new());
        }
        let mut added_p_flags = Vec::new();
        for id in &to_move {
            let section = builder.sections.get_mut(*id);
            if !old_addrs.iter().any(|(known, _, _)| known == id) {
                old_addrs.push((*id, section.sh_addr, section.sh_size));
            }
            // Flag as needing a new home; find_move_sections picks flagged sections up again.
            section.sh_offset = 0;
            let p_flags = section.p_flags();
            if !added_p_flags.contains(&p_flags) {
                added_p_flags.push(p_flags);
            }
        }
        // Non-PT_LOAD segments that keep some sections but lose others need a second copy.
        let split_segments = builder
            .segments
            .iter()
            .filter(|s| s.p_type != elf::PT_LOAD && s.p_type != elf::PT_GNU_RELRO)
            .filter(|s| {
                let any = s.sections.iter().any(|id| to_move.contains(id));
                let all = s.sections.iter().all(|id| to_move.contains(id));
                any && !all
            })
            .count();
        let needed = split_segments + added_p_flags.len();
        if added_segments < needed {
            added_segments = needed;
            continue;
        }

        to_move.sort_by_key(|id| {
            let s = builder.sections.get(*id);
            (s.sh_addr, s.sh_size)
        });
        // Leave the old PT_LOADs (their ranges are unchanged) and PT_GNU_RELRO.
        for segment in &mut builder.segments {
            if segment.p_type == elf::PT_LOAD || segment.p_type == elf::PT_GNU_RELRO {
                segment.sections.retain(|id| !to_move.contains(id));
            }
        }
        for p_flags in added_p_flags {
            let segment = builder.segments.add_load_segment(p_flags, page);
            for id in &to_move {
                let section = builder.sections.get_mut(*id);
                if section.p_flags() == p_flags {
                    if section.sh_addralign == 0 {
                        section.sh_addralign = 1;
                    }
                    segment.append_section(section);
                }
            }
        }

        // Split or re-range the other non-PT_LOAD segments (PT_NOTE, PT_DYNAMIC, ...).
        let sections = &builder.sections;
        let mut splits = Vec::new();
        for segment in &mut builder.segments {
            if segment.p_type == elf::PT_LOAD || segment.p_type == elf::PT_GNU_RELRO {
                continue;
            }
            let any = segment.sections.iter().any(|id| to_move.contains(id));
            if !any {
                continue;
            }
            let all = segment.sections.iter().all(|id| to_move.contains(id));
            if !all {
                let mut split = Vec::new();
                segment.sections.retain(|id| {
                    if to_move.contains(id) {
                        split.push(*id);
                        false
                    } else {
                        true
                    }
                });
                splits.push((segment.id(), split));
            }
            segment.recalculate_ranges(sections);
        }
        for (segment_id, split) in splits {
            let segment = builder.segments.copy(segment_id);
            for id in split {
                segment.append_section(builder.sections.get_mut(id));
            }
        }

        let phdr_size = builder.program_headers_size();
        for segment in &mut builder.segments {
            if segment.p_type == elf::PT_PHDR {
                segment.p_filesz = phdr_size;
                segment.p_memsz = phdr_size;
            }
        }

        let mut moved = Vec::with_capacity(to_move.len());
        for id in &to_move {
            let section = builder.sections.get(*id);
            let (old_addr, old_size) = old_addrs
                .iter()
                .find(|(known, _, _)| known == id)
                .map_or((section.sh_addr, section.sh_size), |&(_, a, s)| (a, s));
            moved.push(MovedSection {
                name: String::from_utf8_lossy(&section.name).into_owned(),
                old_addr,
                new_addr: section.sh_addr,
                size: section.sh_size,
            });
            shift_symbols(builder, *id, old_addr, old_size, section.sh_addr);
        }
        return Ok(moved);
    }
}

/// Move symbols that pointed into a moved section along with it.
fn shift_symbols(builder: &mut Builder<'_>, id: SectionId, old: u64, size: u64, new: u64) {
    if old == 0 || old == new {
        // A newly added section has no symbols pointing at an old address.
        return;
    }
    let inside = |v: u64| v >= old && v - old <= size;
    for sym in &mut builder.symbols {
        if sym.section == Some(id) && inside(sym.st_value) {
            sym.st_value = sym.st_value - old + new;
        }
    }
    for sym in &mut builder.dynamic_symbols {
        if sym.section == Some(id) && inside(sym.st_value) {
            sym.st_value = sym.st_value - old + new;
        }
    }
}

fn find_move_sections(
    builder: &Builder<'_>,
    added_segments: usize,
) -> Result<Vec<SectionId>, EmitError> {
    let mut to_move = Vec::new();
    let mut blocks = Vec::new();
    let phdr_size = builder.program_headers_size()
        + added_segments as u64 * builder.encoder().program_header_size();
    if let Some(segment) = builder.segments.find_load_segment_from_offset(0) {
        blocks.push(Block {
            name: "file header".into(),
            kind: BlockKind::Fixed,
            address: segment.address_from_offset(0),
            size: builder.file_header_size(),
            move_priority: 0,
        });
    }
    if let Some(segment) = builder
        .segments
        .find_load_segment_from_offset(builder.header.e_phoff)
    {
        blocks.push(Block {
            name: "program headers".into(),
            kind: BlockKind::Fixed,
            address: segment.address_from_offset(builder.header.e_phoff),
            size: phdr_size,
            move_priority: 0,
        });
    }
    for segment in &builder.segments {
        if segment.p_type != elf::PT_LOAD {
            continue;
        }
        // Zero-sized blocks pin each PT_LOAD's start and end.
        for address in [
            segment.p_vaddr,
            segment.p_vaddr.saturating_add(segment.p_memsz),
        ] {
            blocks.push(Block {
                name: "segment boundary".into(),
                kind: BlockKind::Fixed,
                address,
                size: 0,
                move_priority: 0,
            });
        }
    }
    let interp = builder.interp_section();
    for section in &builder.sections {
        if !section.is_alloc() {
            continue;
        }
        if section.sh_offset == 0 {
            to_move.push(section.id());
            continue;
        }
        if section.sh_type == elf::SHT_NOBITS && section.sh_flags.contains(elf::SHF_TLS) {
            // .tbss takes no address space of its own.
            continue;
        }
        let move_priority = match &section.data {
            SectionData::Data(_) => u8::from(Some(section.id()) == interp),
            SectionData::Dynamic(_) => 1,
            SectionData::UninitializedData(_) | SectionData::DynamicRelocation(_) => 0,
            SectionData::Relocation(_)
            | SectionData::Note(_)
            | SectionData::Attributes(_)
            | SectionData::SectionString
            | SectionData::Symbol
            | SectionData::SymbolSectionIndex
            | SectionData::String
            | SectionData::DynamicSymbol
            | SectionData::DynamicString
            | SectionData::Hash
            | SectionData::GnuHash
            | SectionData::GnuVersym
            | SectionData::GnuVerdef
            | SectionData::GnuVerneed => 2,
        };
        blocks.push(Block {
            name: String::from_utf8_lossy(&section.name).into_owned(),
            kind: BlockKind::Section(section.id()),
            address: section.sh_addr,
            size: section.sh_size,
            move_priority,
        });
    }
    blocks.sort_by_key(|b| (b.address, b.size));

    let mut i = 0;
    while i + 1 < blocks.len() {
        let end = blocks[i].address.saturating_add(blocks[i].size);
        if end <= blocks[i + 1].address {
            i += 1;
            continue;
        }
        // Prefer moving the earlier block: it is the one that grew into its neighbour.
        let victim = if blocks[i].move_priority >= blocks[i + 1].move_priority {
            i
        } else {
            i + 1
        };
        if blocks[victim].move_priority == 0 {
            return Err(EmitError::ImmovableOverlap {
                first: blocks[i].name.clone(),
                end,
                second: blocks[i + 1].name.clone(),
                start: blocks[i + 1].address,
            });
        }
        let block = blocks.remove(victim);
        if let BlockKind::Section(id) = block.kind {
            to_move.push(id);
        }
    }
    Ok(to_move)
}
