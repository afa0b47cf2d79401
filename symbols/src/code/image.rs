//! The executable bytes of the input file, addressed by virtual address,
//! plus the names of call targets (symbols and PLT stubs).
//!
//! Names are only used to recognise calls that never return
//! (`__stack_chk_fail`, `_Py_FatalErrorFunc`, …): control does not fall
//! through them, which matters for the CFG and for the fall-through check.

use iced_x86::{Decoder, DecoderOptions, OpKind};
use object::elf::{R_X86_64_JUMP_SLOT, SHF_EXECINSTR};
use object::read::elf::ElfFile64;
use object::{
    Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SectionFlags,
};
use std::collections::{BTreeMap, HashMap};

/// One executable section.
#[derive(Clone, Debug)]
pub struct CodeSection<'a> {
    pub name: String,
    pub vaddr: u64,
    pub bytes: &'a [u8],
}

/// The executable sections of a file and the names of addresses in them.
#[derive(Clone, Debug, Default)]
pub struct CodeImage<'a> {
    sections: Vec<CodeSection<'a>>,
    names: BTreeMap<u64, String>,
}

impl<'a> CodeImage<'a> {
    /// Collects the executable sections, the function symbols and the PLT stubs.
    pub fn from_elf(file: &ElfFile64<'a>) -> Self {
        let mut image = CodeImage::default();
        for section in file.sections() {
            let exec = matches!(section.flags(), SectionFlags::Elf { sh_flags, .. } if sh_flags.contains(SHF_EXECINSTR));
            if !exec || section.address() == 0 {
                continue;
            }
            // Sections without file data (none expected for code) are skipped.
            if let Ok(bytes) = section.data() {
                image.sections.push(CodeSection {
                    name: section.name().unwrap_or("").to_string(),
                    vaddr: section.address(),
                    bytes,
                });
            }
        }
        image.sections.sort_by_key(|s| s.vaddr);
        for sym in file.symbols().chain(file.dynamic_symbols()) {
            if sym.address() != 0 && sym.kind() == object::SymbolKind::Text {
                if let Ok(name) = sym.name() {
                    image
                        .names
                        .entry(sym.address())
                        .or_insert_with(|| name.to_string());
                }
            }
        }
        image.add_plt_names(file);
        image
    }

    /// Builds an image from raw sections (for tests and synthetic code).
    pub fn from_sections(sections: Vec<CodeSection<'a>>, names: BTreeMap<u64, String>) -> Self {
        let mut sections = sections;
        sections.sort_by_key(|s| s.vaddr);
        CodeImage { sections, names }
    }

    /// Maps each PLT stub (`jmp *GOT(%rip)`) to the name of the symbol its GOT slot resolves.
    fn add_plt_names(&mut self, file: &ElfFile64<'a>) {
        let mut slot_names: HashMap<u64, String> = HashMap::new();
        let (Some(relocs), Some(dynsyms)) =
            (file.dynamic_relocations(), file.dynamic_symbol_table())
        else {
            return;
        };
        use object::ObjectSymbolTable;
        for (offset, reloc) in relocs {
            let is_slot = matches!(reloc.flags(), RelocationFlags::Elf { r_type } if r_type == R_X86_64_JUMP_SLOT);
            if let (true, RelocationTarget::Symbol(idx)) = (is_slot, reloc.target()) {
                if let Ok(name) = dynsyms.symbol_by_index(idx).and_then(|s| s.name()) {
                    slot_names.insert(offset, name.to_string());
                }
            }
        }
        let mut stubs = Vec::new();
        for s in self.sections.iter().filter(|s| s.name.starts_with(".plt")) {
            let mut decoder = Decoder::with_ip(64, s.bytes, s.vaddr, DecoderOptions::NONE);
            for instr in &mut decoder {
                let is_got_jump = instr.op0_kind() == OpKind::Memory
                    && instr.is_ip_rel_memory_operand()
                    && instr.flow_control() == iced_x86::FlowControl::IndirectBranch;
                if let (true, Some(name)) =
                    (is_got_jump, slot_names.get(&instr.ip_rel_memory_address()))
                {
                    // PLT entries are 16 bytes, 16-aligned from the section start.
                    let stub = s.vaddr + ((instr.ip() - s.vaddr) & !15);
                    stubs.push((stub, format!("{name}@plt")));
                }
            }
        }
        for (addr, name) in stubs {
            self.names.entry(addr).or_insert(name);
        }
    }

    pub fn sections(&self) -> &[CodeSection<'a>] {
        &self.sections
    }

    /// The executable bytes from `addr` to the end of its section.
    pub fn bytes_from(&self, addr: u64) -> Option<&'a [u8]> {
        let s = self
            .sections
            .iter()
            .find(|s| s.vaddr <= addr && addr < s.vaddr + s.bytes.len() as u64)?;
        s.bytes.get((addr - s.vaddr) as usize..)
    }

    /// The executable bytes of `[start, end)`, if they lie in one section.
    pub fn bytes(&self, start: u64, end: u64) -> Option<&'a [u8]> {
        let from = self.bytes_from(start)?;
        from.get(..usize::try_from(end.checked_sub(start)?).ok()?)
    }

    /// The symbol or PLT name at an address (`foo@plt` for stubs).
    pub fn name_at(&self, addr: u64) -> Option<&str> {
        self.names.get(&addr).map(String::as_str)
    }
}
