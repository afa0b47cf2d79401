//! Per-opcode static arrays copied from `.rodata` (`_PyOpcode_Caches`, `_PyOpcode_Deopt`).

use crate::elf::ElfInput;
use crate::model::OpcodeMeta;
use crate::versions::VersionProfile;

/// Entries per array.
const LEN: u64 = 256;

/// Reads both arrays; the error is a sentence describing what is wrong.
pub fn read(elf: &ElfInput<'_>, profile: &VersionProfile) -> Result<OpcodeMeta, String> {
    let (caches, deopt) = profile.opcode_arrays;
    Ok(OpcodeMeta {
        caches: array(elf, caches)?,
        deopt: array(elf, deopt)?,
    })
}

fn array(elf: &ElfInput<'_>, name: &str) -> Result<Vec<u8>, String> {
    let symbol = elf
        .symbols()
        .get(name)
        .ok_or_else(|| format!("symbol {name} not found"))?;
    if symbol.size < LEN {
        return Err(format!(
            "{name} has {} bytes, expected at least {LEN}",
            symbol.size
        ));
    }
    elf.read(symbol.address, LEN)
        .map(<[u8]>::to_vec)
        .map_err(|e| format!("{name}: {e}"))
}
