//! Function sites and control labels of the frame lifecycle, by name.

use crate::dwarf::function::DwarfLabel;
use crate::elf::{ElfInput, SymbolKind};
use crate::model::{FunctionSite, LabelSite};
use crate::versions::VersionProfile;

/// Each of the profile's functions from the symbol table, or a sentence saying why not.
pub fn functions(
    elf: &ElfInput<'_>,
    profile: &VersionProfile,
) -> Vec<Result<FunctionSite, String>> {
    profile
        .functions
        .iter()
        .map(|&(role, name)| {
            let all = elf.symbols().all(name);
            let mut functions = all.iter().filter(|s| s.kind == SymbolKind::Function);
            let first = functions
                .next()
                .ok_or_else(|| format!("function {name} not found in the symbol table"))?;
            if functions.any(|s| s.address != first.address) {
                return Err(format!("function {name} is defined more than once"));
            }
            if first.size == 0 {
                return Err(format!("function {name} has size 0 in the symbol table"));
            }
            Ok(FunctionSite {
                role,
                name: name.to_string(),
                address: first.address,
                size: first.size,
            })
        })
        .collect()
}

/// Each of the profile's control labels from the eval function's own DWARF labels
/// (labels of inlined functions are ignored), or a sentence saying why not.
/// A label that DWARF declares without any address yields `Ok(None)`: GCC
/// merged its code away (3.12.1 `exception_unwind`), so there is no single
/// address to report, which is a fact about the binary rather than a failure.
pub fn control_labels(
    labels: &[DwarfLabel],
    profile: &VersionProfile,
) -> Vec<Result<Option<LabelSite>, String>> {
    profile
        .labels
        .iter()
        .map(|&(role, name)| {
            let own: Vec<&DwarfLabel> = labels
                .iter()
                .filter(|l| !l.inlined && l.name == name)
                .collect();
            let mut addresses: Vec<u64> = own.iter().filter_map(|l| l.address).collect();
            addresses.sort_unstable();
            addresses.dedup();
            match addresses.as_slice() {
                [address] => Ok(Some(LabelSite {
                    role,
                    name: name.to_string(),
                    address: *address,
                })),
                [] if !own.is_empty() => Ok(None),
                [] => Err(format!("label {name} of the eval function is not in DWARF")),
                many => Err(format!(
                    "label {name} of the eval function has {} different addresses in DWARF",
                    many.len()
                )),
            }
        })
        .collect()
}
