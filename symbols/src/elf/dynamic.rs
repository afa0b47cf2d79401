//! The `.dynamic` entries the analysis needs: `DT_SONAME` and `DT_NEEDED`.
//!
//! Read directly from the `SHT_DYNAMIC` section and its linked string table,
//! with bounds checks, so a malformed file yields an error rather than a panic.

use crate::error::AnalysisError;
use object::read::elf::{ElfFile64, SectionHeader};
use object::SectionIndex;

/// Dynamic-section facts.
#[derive(Clone, Debug, Default)]
pub struct DynamicInfo {
    pub soname: Option<String>,
    pub needed: Vec<String>,
}

impl DynamicInfo {
    pub fn read(path: &str, file: &ElfFile64<'_>) -> Result<Self, AnalysisError> {
        let endian = file.endian();
        let data = file.data();
        let table = file.elf_section_table();
        let malformed = |what: String| AnalysisError::Truncated(path.to_string(), what);
        let mut info = DynamicInfo::default();
        let Some((index, header)) = table
            .iter()
            .enumerate()
            .find(|(_, h)| h.sh_type(endian) == object::elf::SHT_DYNAMIC)
        else {
            return Ok(info);
        };
        let bytes = header
            .data(endian, data)
            .map_err(|_| malformed(format!("section {index} (.dynamic) data out of bounds")))?;
        let strtab = table
            .section(SectionIndex(header.sh_link(endian) as usize))
            .and_then(|s| s.data(endian, data))
            .map_err(|_| malformed("string table of .dynamic out of bounds".into()))?;
        let string = |offset: u64| -> Result<String, AnalysisError> {
            let start = usize::try_from(offset)
                .ok()
                .filter(|&s| s < strtab.len())
                .ok_or_else(|| {
                    malformed(format!("dynamic string offset {offset:#x} out of bounds"))
                })?;
            let tail = &strtab[start..];
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
        };
        for entry in bytes.chunks_exact(16) {
            let tag = u64::from_le_bytes(entry[..8].try_into().unwrap_or_default());
            let val = u64::from_le_bytes(entry[8..].try_into().unwrap_or_default());
            if tag as i64 == object::elf::DT_NULL.0 {
                break;
            } else if tag as i64 == object::elf::DT_SONAME.0 {
                info.soname = Some(string(val)?);
            } else if tag as i64 == object::elf::DT_NEEDED.0 {
                info.needed.push(string(val)?);
            }
        }
        Ok(info)
    }
}
