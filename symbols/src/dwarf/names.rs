//! Names of DIEs, following `DW_AT_abstract_origin` and `DW_AT_specification`.
//!
//! GCC emits concrete out-of-line instances (and their labels) without a
//! `DW_AT_name`, pointing at the abstract DIE that carries it.

use super::Reader;
use gimli::{AttributeValue, DebuggingInformationEntry, Dwarf, Unit, UnitOffset};

/// How many origin links are followed before giving up (guards against cycles).
const MAX_ORIGIN_DEPTH: usize = 8;

/// The name of `entry`, directly or through its origin/specification.
pub fn die_name<'a>(
    dwarf: &Dwarf<Reader<'a>>,
    unit: &Unit<Reader<'a>>,
    entry: &DebuggingInformationEntry<Reader<'a>>,
) -> Result<Option<String>, gimli::Error> {
    let mut current = entry.clone();
    for _ in 0..MAX_ORIGIN_DEPTH {
        if let Some(value) = current.attr_value(gimli::DW_AT_name) {
            let name = dwarf.attr_string(unit, value)?;
            return Ok(Some(name.to_string_lossy().into_owned()));
        }
        let origin = current
            .attr_value(gimli::DW_AT_abstract_origin)
            .or_else(|| current.attr_value(gimli::DW_AT_specification));
        match origin {
            Some(AttributeValue::UnitRef(offset)) => current = unit.entry(offset)?,
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// The `DW_AT_type` of `entry` when it points into the same unit.
pub fn type_ref<'a>(entry: &DebuggingInformationEntry<Reader<'a>>) -> Option<UnitOffset> {
    match entry.attr_value(gimli::DW_AT_type) {
        Some(AttributeValue::UnitRef(offset)) => Some(offset),
        _ => None,
    }
}
