//! Which CPython the library is, read from the binary itself.
//!
//! 3.11+ export `Py_Version` (`PY_VERSION_HEX`). Older releases do not; for
//! them the series comes from the SONAME (`libpython3.10.so.1.0`); the full
//! version from the `PY_VERSION` string literal ("3.10.13") in `.rodata` when
//! GCC kept it, else from the `PY_VERSION_HEX` immediate that `sys.hexversion`
//! is built from (`mov r32, 0x030a0df0` in `.text`) when exactly one such
//! value occurs. That is enough to say precisely which unsupported version
//! was passed.

use super::ElfInput;
use crate::error::AnalysisError;
use crate::model::PyVersion;
use object::{Object, ObjectSection};

/// Where the version was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionSource {
    /// The exported `Py_Version` object.
    PyVersionSymbol,
    /// The SONAME plus, when found, the `PY_VERSION` string.
    Soname,
}

/// Reads the version; fails with `NotLibpython` when the file is not a libpython at all.
pub fn detect_version(elf: &ElfInput<'_>) -> Result<(PyVersion, VersionSource), AnalysisError> {
    let symbols = elf.symbols();
    let has_eval = symbols.get("_PyEval_EvalFrameDefault").is_some();
    if let Some(sym) = symbols.get("Py_Version") {
        if !has_eval {
            return Err(AnalysisError::NotLibpython(
                elf.path().to_string(),
                "_PyEval_EvalFrameDefault symbol".into(),
            ));
        }
        let hex = elf.read_u32(sym.address)?;
        let version = PyVersion::from_hex(hex);
        if version.major != 3 {
            return Err(AnalysisError::Analysis(
                elf.path().to_string(),
                format!("Py_Version holds {hex:#010x}, which is not a CPython 3 version"),
            ));
        }
        return Ok((version, VersionSource::PyVersionSymbol));
    }
    let from_soname = elf.dynamic().soname.as_deref().and_then(parse_soname);
    match from_soname {
        Some((major, minor)) => {
            if let Some(version) = find_version_hex(elf, major, minor) {
                return Ok((version, VersionSource::Soname));
            }
            let micro = find_version_string(elf, major, minor).unwrap_or(0);
            Ok((
                PyVersion {
                    major,
                    minor,
                    micro,
                    level: 0xF,
                    serial: 0,
                },
                VersionSource::Soname,
            ))
        }
        None => Err(AnalysisError::NotLibpython(
            elf.path().to_string(),
            "Py_Version or _PyEval_EvalFrameDefault symbols, no libpython SONAME".into(),
        )),
    }
}

/// `libpython3.10.so.1.0` / `libpython3.6m.so.1.0` → `(3, 10)` / `(3, 6)`.
pub fn parse_soname(soname: &str) -> Option<(u8, u8)> {
    let rest = soname.strip_prefix("libpython")?;
    let (ver, _) = rest.split_once(".so")?;
    let ver = ver.trim_end_matches(['m', 'd', 'u']);
    let (major, minor) = ver.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Finds `\0<major>.<minor>.<micro>` followed by `\0` or `+` in `.rodata`.
fn find_version_string(elf: &ElfInput<'_>, major: u8, minor: u8) -> Option<u8> {
    let rodata = elf.file().section_by_name(".rodata")?.data().ok()?;
    let needle = format!("\0{major}.{minor}.");
    let needle = needle.as_bytes();
    let mut start = 0;
    while let Some(pos) = find(&rodata[start..], needle) {
        let digits_at = start + pos + needle.len();
        let digits: Vec<u8> = rodata[digits_at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect();
        let after = rodata.get(digits_at + digits.len()).copied();
        if !digits.is_empty() && matches!(after, Some(0) | Some(b'+')) {
            if let Some(micro) = std::str::from_utf8(&digits)
                .ok()
                .and_then(|s| s.parse().ok())
            {
                return Some(micro);
            }
        }
        start = digits_at;
    }
    None
}

/// The single `PY_VERSION_HEX` for `major.minor` loaded by a `mov r32, imm32` in `.text`.
fn find_version_hex(elf: &ElfInput<'_>, major: u8, minor: u8) -> Option<PyVersion> {
    let text = elf.file().section_by_name(".text")?.data().ok()?;
    let mut found = std::collections::BTreeSet::new();
    for window in text.windows(5) {
        let is_mov = (0xb8..=0xbf).contains(&window[0]);
        if is_mov && window[4] == major && window[3] == minor {
            let hex = u32::from_le_bytes([window[1], window[2], window[3], window[4]]);
            if matches!((hex >> 4) & 0xf, 0xa | 0xb | 0xc | 0xf) {
                found.insert(hex);
            }
        }
    }
    match found.len() {
        1 => found.first().map(|&hex| PyVersion::from_hex(hex)),
        _ => None,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::parse_soname;

    #[test]
    fn sonames() {
        assert_eq!(parse_soname("libpython3.10.so.1.0"), Some((3, 10)));
        assert_eq!(parse_soname("libpython3.6m.so.1.0"), Some((3, 6)));
        assert_eq!(parse_soname("libpython3.so"), None);
        assert_eq!(parse_soname("libc.so.6"), None);
    }
}
