//! Struct sizes and field offsets from DWARF.
//!
//! Names may be typedef names (`PyCodeObject`) or struct tags (`_ts`, `_is`,
//! `_PyInterpreterFrame`). Fields may be dotted (`threads.head`), walking
//! through nested struct/union members; anonymous members are searched
//! transparently. A unit may only declare a struct (`_is` is incomplete in
//! many units), so units are searched in turn until every struct is complete:
//! the preferred unit (the eval function's) first, then the others in order.

use super::names::{die_name, type_ref};
use super::Reader;
use crate::model::{StructLayout, StructOffsets};
use gimli::{AttributeValue, Dwarf, Unit, UnitOffset};
use std::collections::HashMap;

/// How many typedef/qualifier links are followed.
const MAX_TYPE_CHAIN: usize = 16;
/// How deep anonymous/nested members are searched.
const MAX_NESTING: usize = 8;

/// Struct layouts plus what could not be found, one sentence per problem.
#[derive(Clone, Debug, Default)]
pub struct StructReport {
    pub offsets: StructOffsets,
    pub problems: Vec<String>,
}

/// Resolves `(struct, fields)` requests, looking in `preferred` first.
pub fn struct_layouts<'a>(
    dwarf: &Dwarf<Reader<'a>>,
    preferred: &Unit<Reader<'a>>,
    requests: &[(&str, &[&str])],
) -> Result<StructReport, gimli::Error> {
    let mut report = StructReport::default();
    let mut pending: Vec<(&str, &[&str])> = requests.to_vec();
    resolve_in_unit(dwarf, preferred, &mut pending, &mut report)?;
    let preferred_offset = preferred.header.offset();
    let mut headers = dwarf.units();
    while !pending.is_empty() {
        let Some(header) = headers.next()? else { break };
        if header.offset() == preferred_offset {
            continue;
        }
        let unit = dwarf.unit(header)?;
        resolve_in_unit(dwarf, &unit, &mut pending, &mut report)?;
    }
    for (name, _) in pending {
        report.problems.push(format!(
            "struct {name}: no complete definition in any compilation unit"
        ));
    }
    Ok(report)
}

/// Resolves every pending struct defined completely in `unit`.
fn resolve_in_unit<'a>(
    dwarf: &Dwarf<Reader<'a>>,
    unit: &Unit<Reader<'a>>,
    pending: &mut Vec<(&str, &[&str])>,
    report: &mut StructReport,
) -> Result<(), gimli::Error> {
    let index = index_types(dwarf, unit)?;
    let mut still = Vec::new();
    for (name, fields) in pending.drain(..) {
        let Some(definition) = find_definition(unit, &index, name)? else {
            still.push((name, fields));
            continue;
        };
        let size = unit
            .entry(definition)?
            .attr_value(gimli::DW_AT_byte_size)
            .and_then(|v| v.udata_value())
            .unwrap_or(0);
        let mut layout = StructLayout {
            size,
            fields: Default::default(),
        };
        for field in fields.iter() {
            let path: Vec<&str> = field.split('.').collect();
            match field_offset(dwarf, unit, definition, &path, 0)? {
                Some(offset) => {
                    layout.fields.insert(field.to_string(), offset);
                }
                None => report
                    .problems
                    .push(format!("struct {name}: field {field} not found")),
            }
        }
        report.offsets.structs.insert(name.to_string(), layout);
    }
    *pending = still;
    Ok(())
}

/// Top-level struct/union/typedef DIEs of the unit, by name.
fn index_types<'a>(
    dwarf: &Dwarf<Reader<'a>>,
    unit: &Unit<Reader<'a>>,
) -> Result<HashMap<String, Vec<UnitOffset>>, gimli::Error> {
    let mut index: HashMap<String, Vec<UnitOffset>> = HashMap::new();
    let mut cursor = unit.entries();
    if cursor.next_dfs()?.is_none() {
        return Ok(index);
    }
    let mut next = cursor.next_dfs()?.is_some();
    while next {
        if let Some(entry) = cursor.current() {
            if matches!(
                entry.tag(),
                gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type | gimli::DW_TAG_typedef
            ) {
                if let Some(value) = entry.attr_value(gimli::DW_AT_name) {
                    let name = dwarf
                        .attr_string(unit, value)?
                        .to_string_lossy()
                        .into_owned();
                    index.entry(name).or_default().push(entry.offset());
                }
            }
        }
        next = cursor.next_sibling()?.is_some();
    }
    Ok(index)
}

/// The complete struct/union definition for `name` (tag or typedef name) in this unit.
fn find_definition<'a>(
    unit: &Unit<Reader<'a>>,
    index: &HashMap<String, Vec<UnitOffset>>,
    name: &str,
) -> Result<Option<UnitOffset>, gimli::Error> {
    let Some(candidates) = index.get(name) else {
        return Ok(None);
    };
    for &offset in candidates {
        let Some(resolved) = strip_type(unit, offset)? else {
            continue;
        };
        let entry = unit.entry(resolved)?;
        let is_record = matches!(
            entry.tag(),
            gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type
        );
        if is_record && entry.attr_value(gimli::DW_AT_declaration).is_none() {
            return Ok(Some(resolved));
        }
    }
    Ok(None)
}

/// Follows typedefs and const/volatile qualifiers to the underlying type.
fn strip_type<'a>(
    unit: &Unit<Reader<'a>>,
    mut offset: UnitOffset,
) -> Result<Option<UnitOffset>, gimli::Error> {
    for _ in 0..MAX_TYPE_CHAIN {
        let entry = unit.entry(offset)?;
        match entry.tag() {
            gimli::DW_TAG_typedef
            | gimli::DW_TAG_const_type
            | gimli::DW_TAG_volatile_type
            | gimli::DW_TAG_atomic_type => match type_ref(&entry) {
                Some(next) => offset = next,
                None => return Ok(None),
            },
            _ => return Ok(Some(offset)),
        }
    }
    Ok(None)
}

/// Offset of the dotted `path` inside the record at `record`.
fn field_offset<'a>(
    dwarf: &Dwarf<Reader<'a>>,
    unit: &Unit<Reader<'a>>,
    record: UnitOffset,
    path: &[&str],
    nesting: usize,
) -> Result<Option<u64>, gimli::Error> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(Some(0));
    };
    if nesting > MAX_NESTING {
        return Ok(None);
    }
    let mut tree = unit.entries_tree(Some(record))?;
    let root = tree.root()?;
    let mut children = root.children();
    let mut members = Vec::new();
    while let Some(child) = children.next()? {
        let entry = child.entry();
        if entry.tag() != gimli::DW_TAG_member {
            continue;
        }
        let name = die_name(dwarf, unit, entry)?;
        let location = member_location(entry);
        members.push((name, location, type_ref(entry)));
    }
    for (name, location, ty) in members {
        let Some(location) = location else { continue };
        match name.as_deref() {
            Some(n) if n == *first => {
                if rest.is_empty() {
                    return Ok(Some(location));
                }
                let Some(inner) = ty.map(|t| strip_type(unit, t)).transpose()?.flatten() else {
                    return Ok(None);
                };
                return Ok(
                    field_offset(dwarf, unit, inner, rest, nesting + 1)?.map(|o| location + o)
                );
            }
            None => {
                // Anonymous struct/union member: search inside it.
                let Some(inner) = ty.map(|t| strip_type(unit, t)).transpose()?.flatten() else {
                    continue;
                };
                if let Some(o) = field_offset(dwarf, unit, inner, path, nesting + 1)? {
                    return Ok(Some(location + o));
                }
            }
            Some(_) => {}
        }
    }
    Ok(None)
}

/// `DW_AT_data_member_location` as a constant (union members have none: 0).
fn member_location<'a>(entry: &gimli::DebuggingInformationEntry<Reader<'a>>) -> Option<u64> {
    match entry.attr_value(gimli::DW_AT_data_member_location) {
        None => Some(0),
        Some(AttributeValue::Exprloc(expr)) => {
            // Old-style `DW_OP_plus_uconst N`.
            let bytes = expr.0.slice();
            if bytes.first() == Some(&0x23) {
                let mut reader = gimli::EndianSlice::new(&bytes[1..], gimli::LittleEndian);
                gimli::Reader::read_uleb128(&mut reader).ok()
            } else {
                None
            }
        }
        Some(value) => value.udata_value(),
    }
}
