//! In-place byte patches of existing allocated PROGBITS sections (e.g. a `jmp` written over
//! an instruction in `.text`), addressed by virtual address.

use object::build::elf::{Builder, SectionData, SectionId};
use object::elf;

use super::EmitError;

/// Overwrite `bytes` at `vaddr`, which must lie wholly inside one allocated PROGBITS section
/// that is not in `exclude` (the sections this module added itself). Returns the old bytes.
pub(crate) fn patch(
    builder: &mut Builder<'_>,
    exclude: &[SectionId],
    vaddr: u64,
    bytes: &[u8],
) -> Result<Vec<u8>, EmitError> {
    let len = bytes.len() as u64;
    if bytes.is_empty() {
        return Err(EmitError::EmptyPatch { vaddr });
    }
    let outside = EmitError::PatchOutsideSection { vaddr, len };
    let end = vaddr
        .checked_add(len)
        .ok_or(EmitError::PatchOutsideSection { vaddr, len })?;
    let section = builder
        .sections
        .iter_mut()
        .find(|s| {
            s.is_alloc()
                && s.sh_type == elf::SHT_PROGBITS
                && !exclude.contains(&s.id())
                && matches!(s.data, SectionData::Data(_))
                && s.sh_addr <= vaddr
                && s.sh_addr.checked_add(s.sh_size).is_some_and(|e| end <= e)
        })
        .ok_or(outside)?;
    let start = usize::try_from(vaddr - section.sh_addr)
        .map_err(|_| EmitError::PatchOutsideSection { vaddr, len })?;
    let SectionData::Data(data) = &mut section.data else {
        return Err(EmitError::PatchOutsideSection { vaddr, len });
    };
    let range = start..start + bytes.len();
    if range.end > data.len() {
        return Err(EmitError::PatchOutsideSection { vaddr, len });
    }
    let data = data.to_mut();
    let old = data[range.clone()].to_vec();
    data[range].copy_from_slice(bytes);
    Ok(old)
}
