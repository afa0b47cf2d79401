//! The computed-goto opcode table: slots, relocated targets, DWARF labels, names and kinds.
//!
//! The table variable is located through DWARF (the eval function's static
//! `opcode_targets`) and cross-checked against the `opcode_targets.N` symbol.
//! Its slots hold zeros in the file; each is filled by an `R_X86_64_RELATIVE`
//! relocation whose addend is the handler address.

use crate::dwarf::function::{static_variable_address, DwarfLabel, FunctionDie};
use crate::dwarf::Reader;
use crate::elf::{ElfInput, SymbolKind};
use crate::model::{OpcodeTable, TableEntry, TableEntryKind};
use crate::versions::VersionProfile;
use std::collections::{BTreeMap, BTreeSet};

/// Number of slots of the table.
pub const SLOTS: usize = 256;
/// Bytes per slot.
const SLOT_SIZE: u64 = 8;
/// Prefix of instrumented opcodes, which CPython numbers above their base opcodes.
const INSTRUMENTED_PREFIX: &str = "INSTRUMENTED_";

/// Builds the table; the error is a sentence describing what is wrong.
pub fn build(
    elf: &ElfInput<'_>,
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    function: &FunctionDie,
    profile: &VersionProfile,
    labels: &[DwarfLabel],
) -> Result<OpcodeTable, String> {
    let (symbol, address) = locate(elf, dwarf, unit, function, profile)?;
    let by_target = handler_labels(labels, profile);
    let mut slots: Vec<(u64, u64)> = Vec::with_capacity(SLOTS);
    for opcode in 0..SLOTS as u64 {
        let slot = address + opcode * SLOT_SIZE;
        let target = elf.relative_relocs().at(slot).ok_or_else(|| {
            format!("opcode table slot {opcode} at {slot:#x} has no R_X86_64_RELATIVE relocation")
        })?;
        if !by_target.contains_key(&target) {
            return Err(format!(
                "opcode table slot {opcode} targets {target:#x}, which carries no {}* or {} DWARF label",
                profile.handler_label_prefix, profile.unknown_opcode_label
            ));
        }
        slots.push((slot, target));
    }
    let names = assign_names(&slots, &by_target, profile);
    let entries = slots
        .iter()
        .enumerate()
        .map(|(opcode, &(slot, target))| {
            let labels: Vec<String> = by_target[&target].iter().cloned().collect();
            let name = names[opcode].clone();
            let kind = kind_of(&labels, &name, profile);
            TableEntry {
                opcode: opcode as u8,
                slot,
                target,
                labels,
                name,
                kind,
            }
        })
        .collect();
    Ok(OpcodeTable {
        symbol,
        address,
        entries,
    })
}

/// The table's symbol name and address.
fn locate(
    elf: &ElfInput<'_>,
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    function: &FunctionDie,
    profile: &VersionProfile,
) -> Result<(String, u64), String> {
    let variable = profile.table_variable;
    let candidates = elf.symbols().numbered(variable);
    let from_dwarf = static_variable_address(dwarf, unit, function, variable)
        .map_err(|e| format!("reading the DWARF location of {variable}: {e}"))?;
    let symbol = match from_dwarf {
        Some(address) => candidates
            .iter()
            .find(|s| s.address == address)
            .copied()
            .or_else(|| elf.symbols().at(address, SymbolKind::Object))
            .ok_or_else(|| {
                format!("DWARF places {variable} at {address:#x} but no symbol starts there")
            })?,
        None => match candidates.as_slice() {
            [only] => *only,
            [] => {
                return Err(format!(
                    "no {variable}.N symbol and no DWARF location for {variable}"
                ))
            }
            many => {
                return Err(format!(
                    "{} symbols named {variable}.N and no DWARF location to choose between them",
                    many.len()
                ))
            }
        },
    };
    let expected = SLOTS as u64 * SLOT_SIZE;
    if symbol.size != expected {
        return Err(format!(
            "{} at {:#x} has size {}, expected {expected}",
            symbol.name, symbol.address, symbol.size
        ));
    }
    Ok((symbol.name.clone(), symbol.address))
}

/// Target address → handler names (prefix stripped) and the unknown-opcode label.
fn handler_labels(
    labels: &[DwarfLabel],
    profile: &VersionProfile,
) -> BTreeMap<u64, BTreeSet<String>> {
    let mut map: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for label in labels.iter().filter(|l| !l.inlined) {
        let Some(address) = label.address else {
            continue;
        };
        let name = if label.name == profile.unknown_opcode_label {
            label.name.clone()
        } else if let Some(op) = label.name.strip_prefix(profile.handler_label_prefix) {
            op.to_string()
        } else {
            continue;
        };
        map.entry(address).or_default().insert(name);
    }
    map
}

/// Each slot's own name. Slots sharing a target share its labels; when the
/// split is one base opcode plus one `INSTRUMENTED_` opcode, the base one
/// takes the lower slot (CPython numbers instrumented opcodes last).
/// Otherwise the name is every label joined with `|`.
fn assign_names(
    slots: &[(u64, u64)],
    by_target: &BTreeMap<u64, BTreeSet<String>>,
    profile: &VersionProfile,
) -> Vec<String> {
    let mut names = vec![String::new(); slots.len()];
    let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (opcode, &(_, target)) in slots.iter().enumerate() {
        groups.entry(target).or_default().push(opcode);
    }
    for (target, opcodes) in groups {
        let labels = &by_target[&target];
        if labels.contains(profile.unknown_opcode_label) || labels.len() == 1 {
            let name = if labels.contains(profile.unknown_opcode_label) {
                profile.unknown_opcode_label.to_string()
            } else {
                labels.iter().next().cloned().unwrap_or_default()
            };
            for &op in &opcodes {
                names[op] = name.clone();
            }
            continue;
        }
        let (instrumented, plain): (Vec<&String>, Vec<&String>) = labels
            .iter()
            .partition(|l| l.starts_with(INSTRUMENTED_PREFIX));
        let orderable =
            opcodes.len() == labels.len() && plain.len() <= 1 && instrumented.len() <= 1;
        if orderable {
            for (&op, name) in opcodes.iter().zip(plain.iter().chain(instrumented.iter())) {
                names[op] = (*name).clone();
            }
        } else {
            let joined = labels.iter().cloned().collect::<Vec<_>>().join("|");
            for &op in &opcodes {
                names[op] = joined.clone();
            }
        }
    }
    names
}

fn kind_of(labels: &[String], name: &str, profile: &VersionProfile) -> TableEntryKind {
    if labels.iter().any(|l| l == profile.unknown_opcode_label) {
        return TableEntryKind::Unknown;
    }
    name.split('|')
        .find_map(|part| {
            profile
                .never_redirected
                .iter()
                .find(|(n, _)| *n == part)
                .map(|&(_, kind)| kind)
        })
        .unwrap_or(TableEntryKind::Real)
}
