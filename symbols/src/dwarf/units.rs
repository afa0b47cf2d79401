//! Finding the compilation unit that covers an address.
//!
//! Uses `.debug_aranges` (one small table) and falls back to the root DIE
//! ranges of each unit only if the address is not listed there.

use super::Reader;
use gimli::{Dwarf, Unit};

/// The unit whose address ranges contain `address`.
pub fn unit_containing<'a>(
    dwarf: &Dwarf<Reader<'a>>,
    address: u64,
) -> Result<Option<Unit<Reader<'a>>>, gimli::Error> {
    let mut headers = dwarf.debug_aranges.headers();
    while let Some(header) = headers.next()? {
        let mut entries = header.entries();
        while let Some(entry) = entries.next()? {
            let range = entry.range();
            if range.begin <= address && address < range.end {
                let unit_header = dwarf
                    .debug_info
                    .header_from_offset(header.debug_info_offset())?;
                return Ok(Some(dwarf.unit(unit_header)?));
            }
        }
    }
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        let mut cursor = unit.entries();
        let Some(root) = cursor.next_dfs()? else {
            continue;
        };
        let mut ranges = dwarf.die_ranges(&unit, root)?;
        let mut hit = false;
        while let Some(range) = ranges.next()? {
            hit |= range.begin <= address && address < range.end;
        }
        if hit {
            return Ok(Some(unit));
        }
    }
    Ok(None)
}
