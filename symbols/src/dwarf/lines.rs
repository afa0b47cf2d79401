//! Address → source line, through `addr2line` over the already loaded DWARF.
//!
//! `addr2line` parses line programs lazily, so only the units that are
//! actually queried are decoded.

use super::Reader;
use crate::model::SourceLine;

/// A line-table lookup over the whole file.
pub struct LineTable<'a> {
    context: addr2line::Context<Reader<'a>>,
}

impl<'a> LineTable<'a> {
    pub fn new(dwarf: gimli::Dwarf<Reader<'a>>) -> Result<Self, gimli::Error> {
        Ok(LineTable {
            context: addr2line::Context::from_dwarf(dwarf)?,
        })
    }

    /// The source file (base name) and line of the instruction at `address`.
    pub fn line_at(&self, address: u64) -> Option<SourceLine> {
        let location = self.context.find_location(address).ok()??;
        let file = location.file?;
        let base = file.rsplit('/').next().unwrap_or(file);
        Some(SourceLine {
            file: base.to_string(),
            line: location.line?,
        })
    }
}
