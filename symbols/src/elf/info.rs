//! Identification of the input file: size, soname, build-id and SHA-256.

use super::ElfInput;
use crate::model::LibraryInfo;
use sha2::{Digest, Sha256};

/// The [`LibraryInfo`] of a parsed input.
pub fn library_info(elf: &ElfInput<'_>) -> LibraryInfo {
    let digest = Sha256::digest(elf.data());
    LibraryInfo {
        path: elf.path().to_string(),
        size: elf.data().len() as u64,
        soname: elf.dynamic().soname.clone(),
        build_id: elf.build_id(),
        sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
    }
}
