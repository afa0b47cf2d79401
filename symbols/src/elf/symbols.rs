//! Name → symbol index over `.symtab` and `.dynsym`, including LOCAL symbols.
//!
//! GCC renames function-scope statics (`opcode_targets` → `opcode_targets.0`)
//! and splits cold code into `<function>.cold`; lookups here understand both.

use object::read::elf::ElfFile64;
use object::{Object, ObjectSymbol};
use std::collections::HashMap;

/// What a symbol names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolKind {
    Function,
    Object,
    Other,
}

/// One defined symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolInfo {
    pub name: String,
    pub address: u64,
    pub size: u64,
    pub kind: SymbolKind,
    pub global: bool,
}

/// All defined symbols of the file, by name (a name may occur more than once).
#[derive(Default)]
pub struct SymbolIndex {
    by_name: HashMap<String, Vec<SymbolInfo>>,
}

impl SymbolIndex {
    pub fn build(file: &ElfFile64<'_>) -> Self {
        let mut index = SymbolIndex::default();
        for sym in file.symbols().chain(file.dynamic_symbols()) {
            if sym.is_undefined() {
                continue;
            }
            let Ok(name) = sym.name() else { continue };
            if name.is_empty() {
                continue;
            }
            let kind = match sym.kind() {
                object::SymbolKind::Text => SymbolKind::Function,
                object::SymbolKind::Data => SymbolKind::Object,
                _ => SymbolKind::Other,
            };
            let info = SymbolInfo {
                name: name.to_string(),
                address: sym.address(),
                size: sym.size(),
                kind,
                global: sym.is_global(),
            };
            let entry = index.by_name.entry(info.name.clone()).or_default();
            if !entry
                .iter()
                .any(|s| s.address == info.address && s.size == info.size)
            {
                entry.push(info);
            }
        }
        index
    }

    /// The symbol with exactly this name (the first one when duplicated).
    pub fn get(&self, name: &str) -> Option<&SymbolInfo> {
        self.by_name.get(name)?.first()
    }

    /// All symbols with exactly this name.
    pub fn all(&self, name: &str) -> &[SymbolInfo] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Symbols named `base.N` (N decimal), GCC's name for a function-scope static.
    pub fn numbered(&self, base: &str) -> Vec<&SymbolInfo> {
        let mut found: Vec<&SymbolInfo> = self
            .by_name
            .iter()
            .filter(|(name, _)| {
                name.strip_prefix(base)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .flat_map(|(_, v)| v.iter())
            .collect();
        found.sort_by_key(|s| s.address);
        found
    }

    /// The `<function>.cold` part of a function, if GCC split one off.
    pub fn cold_part(&self, function: &str) -> Option<&SymbolInfo> {
        self.get(&format!("{function}.cold"))
    }

    /// The symbol of `kind` starting exactly at `address`.
    pub fn at(&self, address: u64, kind: SymbolKind) -> Option<&SymbolInfo> {
        self.by_name
            .values()
            .flat_map(|v| v.iter())
            .filter(|s| s.address == address && s.kind == kind)
            .min_by(|a, b| a.name.cmp(&b.name))
    }
}
