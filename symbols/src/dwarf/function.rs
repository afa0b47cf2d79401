//! A function's DIE in its unit: address ranges, labels and static variables.

use super::names::die_name;
use super::Reader;
use crate::model::AddrRange;
use gimli::{AttributeValue, Dwarf, Unit, UnitOffset};

/// A `DW_TAG_label` of the function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DwarfLabel {
    pub name: String,
    /// `DW_AT_low_pc`; `None` when GCC emitted the label without an address
    /// (e.g. 3.12.1's `exception_unwind`, whose code was merged away).
    pub address: Option<u64>,
    /// Whether the label belongs to a function inlined into this one.
    pub inlined: bool,
}

/// The concrete DIE of a function.
#[derive(Clone, Debug)]
pub struct FunctionDie {
    pub offset: UnitOffset,
    /// Sorted, merged address ranges.
    pub ranges: Vec<AddrRange>,
}

/// Finds the top-level subprogram named `name` whose ranges contain `address`.
pub fn find_function<'a>(
    dwarf: &Dwarf<Reader<'a>>,
    unit: &Unit<Reader<'a>>,
    name: &str,
    address: u64,
) -> Result<Option<FunctionDie>, gimli::Error> {
    let mut cursor = unit.entries();
    if cursor.next_dfs()?.is_none() {
        return Ok(None);
    }
    let mut next = cursor.next_dfs()?.is_some();
    while next {
        if let Some(entry) = cursor.current() {
            let has_code = entry.attr_value(gimli::DW_AT_low_pc).is_some()
                || entry.attr_value(gimli::DW_AT_ranges).is_some();
            if entry.tag() == gimli::DW_TAG_subprogram && has_code {
                let ranges = ranges_of(dwarf, unit, entry)?;
                if ranges.iter().any(|r| r.contains(address))
                    && die_name(dwarf, unit, entry)?.as_deref() == Some(name)
                {
                    return Ok(Some(FunctionDie {
                        offset: entry.offset(),
                        ranges,
                    }));
                }
            }
        }
        next = cursor.next_sibling()?.is_some();
    }
    Ok(None)
}

fn ranges_of<'a>(
    dwarf: &Dwarf<Reader<'a>>,
    unit: &Unit<Reader<'a>>,
    entry: &gimli::DebuggingInformationEntry<Reader<'a>>,
) -> Result<Vec<AddrRange>, gimli::Error> {
    let mut iter = dwarf.die_ranges(unit, entry)?;
    let mut ranges = Vec::new();
    while let Some(r) = iter.next()? {
        if r.end > r.begin {
            ranges.push(AddrRange {
                start: r.begin,
                end: r.end,
            });
        }
    }
    ranges.sort();
    let mut merged: Vec<AddrRange> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    Ok(merged)
}

/// All labels anywhere below the function DIE (nested blocks, inlined code).
pub fn labels<'a>(
    dwarf: &Dwarf<Reader<'a>>,
    unit: &Unit<Reader<'a>>,
    function: &FunctionDie,
) -> Result<Vec<DwarfLabel>, gimli::Error> {
    let mut out = Vec::new();
    let mut cursor = unit.entries_at_offset(function.offset)?;
    let Some(root) = cursor.next_dfs()? else {
        return Ok(out);
    };
    let base_depth = root.depth();
    // Depths of the enclosing DW_TAG_inlined_subroutine DIEs.
    let mut inlined_at: Vec<isize> = Vec::new();
    while let Some(entry) = cursor.next_dfs()? {
        let depth = entry.depth();
        if depth <= base_depth {
            break;
        }
        while inlined_at.last().is_some_and(|&d| d >= depth) {
            inlined_at.pop();
        }
        match entry.tag() {
            gimli::DW_TAG_inlined_subroutine => inlined_at.push(depth),
            gimli::DW_TAG_label => {
                let address = match entry.attr_value(gimli::DW_AT_low_pc) {
                    Some(low_pc) => dwarf.attr_address(unit, low_pc)?,
                    None => None,
                };
                if let Some(name) = die_name(dwarf, unit, entry)? {
                    out.push(DwarfLabel {
                        name,
                        address,
                        inlined: !inlined_at.is_empty(),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The address of a static variable `name` declared inside the function
/// (e.g. `opcode_targets`), from its `DW_OP_addr`/`DW_OP_addrx` location.
pub fn static_variable_address<'a>(
    dwarf: &Dwarf<Reader<'a>>,
    unit: &Unit<Reader<'a>>,
    function: &FunctionDie,
    name: &str,
) -> Result<Option<u64>, gimli::Error> {
    let mut cursor = unit.entries_at_offset(function.offset)?;
    let Some(root) = cursor.next_dfs()? else {
        return Ok(None);
    };
    let base_depth = root.depth();
    while let Some(entry) = cursor.next_dfs()? {
        if entry.depth() <= base_depth {
            break;
        }
        if entry.tag() != gimli::DW_TAG_variable {
            continue;
        }
        let Some(AttributeValue::Exprloc(expr)) = entry.attr_value(gimli::DW_AT_location) else {
            continue;
        };
        if die_name(dwarf, unit, entry)?.as_deref() != Some(name) {
            continue;
        }
        let mut ops = expr.operations(unit.encoding());
        match ops.next()? {
            Some(gimli::Operation::Address { address }) => return Ok(Some(address)),
            Some(gimli::Operation::AddressIndex { index }) => {
                return Ok(Some(dwarf.address(unit, index)?))
            }
            _ => continue,
        }
    }
    Ok(None)
}
