//! Address and file-offset decisions for the two new sections, and the final checks of the
//! output layout.
//!
//! Policy: the data section goes at the first page above every existing segment, the text
//! section at the next page after the data, and the text is the last thing placed by the
//! caller so it can be any size. Sections moved at `finish` time (because the program header
//! table or `.dynstr`/`.dynamic` grew) are placed by [`super::moves`] above the *final* end of
//! the text, so no fixed reservation is needed and the text size is unbounded.

use object::build::elf::{Builder, SectionData, SectionId};
use object::build::ByteString;
use object::elf;

use super::EmitError;

/// Alignment of the new sections inside their segments.
const NEW_SECTION_ALIGN: u64 = 64;

/// The decisions of `place_new_sections`, kept until `finish` materialises them.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) data_name: String,
    pub(crate) data_size: u64,
    pub(crate) text_name: String,
    pub(crate) data_vaddr: u64,
    pub(crate) text_vaddr: u64,
}

/// Round `value` up to a multiple of the power of two `align`.
pub(crate) fn align_up(value: u64, align: u64, what: &'static str) -> Result<u64, EmitError> {
    let mask = align - 1;
    value
        .checked_add(mask)
        .map(|v| v & !mask)
        .ok_or(EmitError::AddressOverflow(what))
}

/// The page size new segments are aligned to: the input's `PT_LOAD` alignment, at least 4 KiB.
pub(crate) fn page_size(builder: &Builder<'_>) -> Result<u64, EmitError> {
    let page = builder.load_align.max(0x1000);
    if !page.is_power_of_two() {
        return Err(EmitError::Layout(format!(
            "PT_LOAD alignment {page:#x} is not a power of two"
        )));
    }
    Ok(page)
}

/// Highest virtual address (exclusive) used by any segment.
fn image_end(builder: &Builder<'_>) -> Result<u64, EmitError> {
    builder
        .segments
        .iter()
        .try_fold(0u64, |end, s| {
            s.p_vaddr.checked_add(s.p_memsz).map(|e| end.max(e))
        })
        .ok_or(EmitError::AddressOverflow("computing the end of the image"))
}

/// Highest file offset (exclusive) covered by any segment.
fn file_end(builder: &Builder<'_>) -> Result<u64, EmitError> {
    builder
        .segments
        .iter()
        .try_fold(0u64, |end, s| {
            s.p_offset.checked_add(s.p_filesz).map(|e| end.max(e))
        })
        .ok_or(EmitError::AddressOverflow("computing the end of the file"))
}

/// Decide the addresses of the new data and text sections.
pub(crate) fn plan(
    builder: &Builder<'_>,
    data_name: &str,
    data_size: u64,
    text_name: &str,
) -> Result<Plan, EmitError> {
    if data_size == 0 {
        return Err(EmitError::EmptyData);
    }
    for name in [data_name, text_name] {
        super::dynamic::check_string("section name", name)?;
        if builder
            .sections
            .iter()
            .any(|s| s.name.as_slice() == name.as_bytes())
        {
            return Err(EmitError::SectionNameTaken(name.to_owned()));
        }
    }
    if data_name == text_name {
        return Err(EmitError::SectionNameTaken(text_name.to_owned()));
    }
    let page = page_size(builder)?;
    let data_vaddr = align_up(image_end(builder)?, page, "placing the data section")?;
    let data_end = data_vaddr
        .checked_add(data_size)
        .ok_or(EmitError::AddressOverflow("placing the data section"))?;
    let text_vaddr = align_up(data_end, page, "placing the text section")?;
    Ok(Plan {
        data_name: data_name.to_owned(),
        data_size,
        text_name: text_name.to_owned(),
        data_vaddr,
        text_vaddr,
    })
}

/// Add one new section and its own `PT_LOAD` at `vaddr`, at the first page-aligned file
/// offset after everything else. Returns the section id.
fn add_section_with_segment(
    builder: &mut Builder<'_>,
    page: u64,
    name: &str,
    sh_flags: elf::SectionFlags,
    vaddr: u64,
    bytes: Vec<u8>,
) -> Result<SectionId, EmitError> {
    // vaddr is page aligned, so a page-aligned offset keeps p_offset == p_vaddr (mod page).
    let offset = align_up(
        file_end(builder)?,
        page,
        "placing a new section in the file",
    )?;
    let size = bytes.len() as u64;
    let section = builder.sections.add();
    section.name = ByteString::from(name.as_bytes().to_vec());
    section.sh_type = elf::SHT_PROGBITS;
    section.sh_flags = elf::SHF_ALLOC | sh_flags;
    section.sh_addr = vaddr;
    section.sh_offset = offset;
    section.sh_size = size;
    section.sh_addralign = NEW_SECTION_ALIGN;
    section.data = SectionData::Data(bytes.into());
    let id = section.id();
    let p_flags = section.p_flags();
    let segment = builder.segments.add();
    segment.p_type = elf::PT_LOAD;
    segment.p_flags = p_flags;
    segment.p_align = page;
    segment.append_section_range(builder.sections.get(id));
    segment.sections.push(id);
    Ok(id)
}

/// Create the planned sections with their final contents. Returns (data id, text id).
pub(crate) fn materialise(
    builder: &mut Builder<'_>,
    plan: &Plan,
    data: Vec<u8>,
    text: Vec<u8>,
) -> Result<(SectionId, SectionId), EmitError> {
    let page = page_size(builder)?;
    let data_id = add_section_with_segment(
        builder,
        page,
        &plan.data_name,
        elf::SHF_WRITE,
        plan.data_vaddr,
        data,
    )?;
    let text_id = add_section_with_segment(
        builder,
        page,
        &plan.text_name,
        elf::SHF_EXECINSTR,
        plan.text_vaddr,
        text,
    )?;
    Ok((data_id, text_id))
}

/// Make `PT_DYNAMIC` cover exactly the (possibly shrunk, grown or moved) `.dynamic`, as the
/// linker does; the builder writes only the live entries plus `DT_NULL`.
pub(crate) fn fit_dynamic_segment(builder: &mut Builder<'_>) {
    let sections = &builder.sections;
    for segment in &mut builder.segments {
        if segment.p_type == elf::PT_DYNAMIC && !segment.sections.is_empty() {
            segment.recalculate_ranges(sections);
        }
    }
}

/// Check the invariants the loader and the runtime rely on, after all moves.
pub(crate) fn verify(
    builder: &Builder<'_>,
    plan: Option<&Plan>,
    redirects: &[(u64, u64)],
) -> Result<(), EmitError> {
    let loads: Vec<_> = builder
        .segments
        .iter()
        .filter(|s| s.p_type == elf::PT_LOAD)
        .collect();
    for pair in loads.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.p_vaddr.saturating_add(a.p_memsz) > b.p_vaddr {
            return Err(EmitError::Layout(format!(
                "PT_LOAD at {:#x} is not below and disjoint from PT_LOAD at {:#x}",
                a.p_vaddr, b.p_vaddr
            )));
        }
    }
    for s in &loads {
        if s.p_align > 1 && s.p_offset % s.p_align != s.p_vaddr % s.p_align {
            return Err(EmitError::Layout(format!(
                "PT_LOAD at {:#x} has offset {:#x} incongruent modulo {:#x}",
                s.p_vaddr, s.p_offset, s.p_align
            )));
        }
        if s.p_flags.contains(elf::PF_W) && s.p_flags.contains(elf::PF_X) {
            return Err(EmitError::Layout(format!(
                "PT_LOAD at {:#x} is both writable and executable",
                s.p_vaddr
            )));
        }
    }
    if let Some(plan) = plan {
        for (name, vaddr, flags) in [
            (&plan.data_name, plan.data_vaddr, elf::PF_R | elf::PF_W),
            (&plan.text_name, plan.text_vaddr, elf::PF_R | elf::PF_X),
        ] {
            let found = loads.iter().any(|s| {
                s.p_vaddr == vaddr
                    && s.p_flags == flags
                    && s.sections.iter().any(|id| {
                        let sec = builder.sections.get(*id);
                        sec.name.as_slice() == name.as_bytes() && sec.sh_addr == vaddr
                    })
            });
            if !found {
                return Err(EmitError::Layout(format!(
                    "section {name} is not at the start of its own PT_LOAD at {vaddr:#x}"
                )));
            }
        }
    }
    for &(slot, addend) in redirects {
        if !loads.iter().any(|s| s.contains_address(addend)) {
            return Err(EmitError::AddendOutsideImage { slot, addend });
        }
    }
    for sec in builder.sections.iter() {
        if !matches!(sec.data, SectionData::Dynamic(_)) {
            continue;
        }
        let ok = builder
            .segments
            .iter()
            .any(|s| s.p_type == elf::PT_DYNAMIC && s.p_vaddr == sec.sh_addr);
        if !ok {
            return Err(EmitError::Layout(
                "PT_DYNAMIC does not start at .dynamic".into(),
            ));
        }
    }
    Ok(())
}
