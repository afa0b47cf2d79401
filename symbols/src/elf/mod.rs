//! ELF-level view of the input library: validation, symbols, dynamic entries,
//! relative relocations and reads at virtual addresses.
//!
//! [`ElfInput::parse`] performs every check that can be made without DWARF
//! (magic, class, machine, type, section bounds, "already instrumented"), so
//! the later stages can trust the section table they are handed.

mod dynamic;
mod info;
mod relocs;
mod symbols;
mod version;

pub use dynamic::DynamicInfo;
pub use info::library_info;
pub use relocs::RelativeRelocs;
pub use symbols::{SymbolIndex, SymbolInfo, SymbolKind};
pub use version::{detect_version, VersionSource};

use crate::error::AnalysisError;
use object::read::elf::{ElfFile64, FileHeader, SectionHeader};
use object::{Object, ObjectSection};

/// A parsed, validated x86-64 `ET_DYN` ELF file.
pub struct ElfInput<'a> {
    path: String,
    data: &'a [u8],
    file: ElfFile64<'a>,
    symbols: SymbolIndex,
    dynamic: DynamicInfo,
    relocs: RelativeRelocs,
}

impl<'a> ElfInput<'a> {
    /// Parses and validates `data`. `path` is only used in error messages.
    pub fn parse(path: &str, data: &'a [u8]) -> Result<Self, AnalysisError> {
        let path = path.to_string();
        if data.len() < 4 || &data[..4] != b"\x7fELF" {
            return Err(AnalysisError::NotElf(path));
        }
        if data.len() < 64 {
            return Err(AnalysisError::Truncated(
                path,
                format!("{} bytes, shorter than an ELF64 header", data.len()),
            ));
        }
        // EI_CLASS 2 = 64-bit, EI_DATA 1 = little endian.
        if data[4] != 2 || data[5] != 1 {
            return Err(AnalysisError::WrongMachine(path));
        }
        let file = ElfFile64::<object::Endianness>::parse(data)
            .map_err(|e| AnalysisError::Truncated(path.clone(), e.to_string()))?;
        let endian = file.endian();
        let header = file.elf_header();
        if header.e_machine(endian) != object::elf::EM_X86_64
            || header.e_type(endian) != object::elf::ET_DYN
        {
            return Err(AnalysisError::WrongMachine(path));
        }
        check_section_bounds(&path, &file, data.len() as u64)?;
        let symbols = SymbolIndex::build(&file);
        let dynamic = DynamicInfo::read(&path, &file)?;
        let relocs = RelativeRelocs::read(&path, &file)?;
        let input = ElfInput {
            path,
            data,
            file,
            symbols,
            dynamic,
            relocs,
        };
        input.check_not_instrumented()?;
        Ok(input)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The whole file.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The underlying `object` parser.
    pub fn file(&self) -> &ElfFile64<'a> {
        &self.file
    }

    pub fn symbols(&self) -> &SymbolIndex {
        &self.symbols
    }

    pub fn dynamic(&self) -> &DynamicInfo {
        &self.dynamic
    }

    /// `R_X86_64_RELATIVE` relocations of `.rela.dyn`, indexed by `r_offset`.
    pub fn relative_relocs(&self) -> &RelativeRelocs {
        &self.relocs
    }

    /// GNU build-id as lowercase hex, if the file has one.
    pub fn build_id(&self) -> Option<String> {
        let id = self.file.build_id().ok().flatten()?;
        Some(id.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Whether a section of this name exists.
    pub fn has_section(&self, name: &str) -> bool {
        self.file.section_by_name(name).is_some()
    }

    /// `len` bytes of file-backed data at virtual address `addr`.
    pub fn read(&self, addr: u64, len: u64) -> Result<&'a [u8], AnalysisError> {
        for section in self.file.sections() {
            let start = section.address();
            let end = start.saturating_add(section.size());
            if start <= addr && addr < end {
                return match section.data_range(addr, len) {
                    Ok(Some(bytes)) => Ok(bytes),
                    Ok(None) | Err(_) => Err(AnalysisError::Analysis(
                        self.path.clone(),
                        format!(
                            "cannot read {len} bytes at {addr:#x}: outside the file data of section {}",
                            section.name().unwrap_or("?")
                        ),
                    )),
                };
            }
        }
        Err(AnalysisError::Analysis(
            self.path.clone(),
            format!("address {addr:#x} is not inside any section"),
        ))
    }

    /// A little-endian `u32` at `addr`.
    pub fn read_u32(&self, addr: u64) -> Result<u32, AnalysisError> {
        let b = self.read(addr, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn check_not_instrumented(&self) -> Result<(), AnalysisError> {
        for name in [retrace_abi::TEXT_SECTION, retrace_abi::DATA_SECTION] {
            if self.has_section(name) {
                return Err(AnalysisError::AlreadyInstrumented(
                    self.path.clone(),
                    format!("section {name} present"),
                ));
            }
        }
        if self
            .dynamic
            .needed
            .iter()
            .any(|n| n == retrace_abi::RUNTIME_SONAME)
        {
            return Err(AnalysisError::AlreadyInstrumented(
                self.path.clone(),
                format!("DT_NEEDED {}", retrace_abi::RUNTIME_SONAME),
            ));
        }
        Ok(())
    }
}

/// Every section with file data must lie inside the file (catches truncated copies).
fn check_section_bounds(
    path: &str,
    file: &ElfFile64<'_>,
    file_len: u64,
) -> Result<(), AnalysisError> {
    let endian = file.endian();
    for (index, header) in file.elf_section_table().iter().enumerate() {
        if header.sh_type(endian) == object::elf::SHT_NOBITS {
            continue;
        }
        let offset = header.sh_offset(endian);
        let size = header.sh_size(endian);
        if offset.checked_add(size).is_none_or(|end| end > file_len) {
            return Err(AnalysisError::Truncated(
                path.to_string(),
                format!(
                    "section {index} data [{offset:#x}, +{size:#x}) extends past the end of the file ({file_len:#x} bytes)"
                ),
            ));
        }
    }
    Ok(())
}
