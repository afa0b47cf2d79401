//! The layout of CPython's frozen-module table and building an extended copy.
//!
//! `PyImport_FrozenModules` points at a `struct _frozen` array terminated by
//! an entry whose name is NULL. The 3.11+ layout is mirrored by [`Frozen`].
//! The runtime builds a new array (its own entries first, so they win the
//! name lookup, then the old entries, then a terminator) and leaks it.

use std::ffi::{c_char, c_int};

/// `struct _frozen` of CPython 3.11+.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Frozen {
    pub name: *const c_char,
    pub code: *const u8,
    pub size: c_int,
    pub is_package: c_int,
    /// Called by `unmarshal_frozen_code` (main interpreter) instead of unmarshalling `code`.
    pub get_code: Option<unsafe extern "C" fn() -> *mut pyo3_ffi::PyObject>,
}

impl Frozen {
    pub const TERMINATOR: Frozen = Frozen {
        name: std::ptr::null(),
        code: std::ptr::null(),
        size: 0,
        is_package: 0,
        get_code: None,
    };
}

/// An existing table longer than this is treated as corrupt.
pub const MAX_ENTRIES: usize = 1 << 16;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrozenTableError {
    #[error("the existing frozen-module table has no terminator within {MAX_ENTRIES} entries")]
    Unterminated,
    #[error(
        "CPython {0:#x}: struct _frozen has no get_code (3.13+), so the module would need \
         version-specific marshalled code"
    )]
    UnsupportedVersion(u64),
}

/// Whether the running CPython (`Py_Version`) uses the [`Frozen`] layout with
/// `get_code`: 3.11 and 3.12. 3.13 dropped the field (24-byte entries).
pub fn layout_supported(py_version: u64) -> Result<(), FrozenTableError> {
    match (py_version >> 24, (py_version >> 16) & 0xff) {
        (3, 11) | (3, 12) => Ok(()),
        _ => Err(FrozenTableError::UnsupportedVersion(py_version)),
    }
}

/// `ours`, then the entries of the table at `old` (may be NULL), then a terminator.
///
/// # Safety
/// `old` is NULL or points at a table terminated by an entry with a NULL name.
pub unsafe fn extended(
    old: *const Frozen,
    ours: &[Frozen],
) -> Result<Vec<Frozen>, FrozenTableError> {
    let mut table: Vec<Frozen> = ours.to_vec();
    if !old.is_null() {
        let mut i = 0;
        loop {
            if i == MAX_ENTRIES {
                return Err(FrozenTableError::Unterminated);
            }
            // SAFETY: within the terminated table guaranteed by the caller
            // (we stop at the terminator).
            let entry = unsafe { old.add(i).read() };
            if entry.name.is_null() {
                break;
            }
            table.push(entry);
            i += 1;
        }
    }
    table.push(Frozen::TERMINATOR);
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn entry(name: &'static CStr, size: c_int) -> Frozen {
        Frozen {
            name: name.as_ptr(),
            code: b"N".as_ptr(),
            size,
            is_package: 0,
            get_code: None,
        }
    }

    fn names(table: &[Frozen]) -> Vec<Option<String>> {
        table
            .iter()
            .map(|f| {
                (!f.name.is_null())
                    // SAFETY: test entries point at static C strings.
                    .then(|| {
                        unsafe { CStr::from_ptr(f.name) }
                            .to_string_lossy()
                            .into_owned()
                    })
            })
            .collect()
    }

    #[test]
    fn prepends_ours_and_keeps_the_old_entries() {
        let old = [entry(c"hello", 3), entry(c"pkg", 7), Frozen::TERMINATOR];
        // SAFETY: `old` is terminated.
        let table = unsafe { extended(old.as_ptr(), &[entry(c"retrace", 1)]) }.expect("ok");
        assert_eq!(
            names(&table),
            vec![
                Some("retrace".into()),
                Some("hello".into()),
                Some("pkg".into()),
                None
            ]
        );
        assert_eq!(table[2].size, 7);
    }

    #[test]
    fn only_311_and_312_have_get_code() {
        assert_eq!(layout_supported(0x030b07f0), Ok(()));
        assert_eq!(layout_supported(0x030c01f0), Ok(()));
        assert_eq!(
            layout_supported(0x030d00f0),
            Err(FrozenTableError::UnsupportedVersion(0x030d00f0))
        );
        assert!(layout_supported(0x030a0df0).is_err());
        assert_eq!(std::mem::size_of::<Frozen>(), 32);
    }

    #[test]
    fn a_null_table_gets_only_ours() {
        // SAFETY: NULL is allowed.
        let table = unsafe { extended(std::ptr::null(), &[entry(c"retrace", 1)]) }.expect("ok");
        assert_eq!(names(&table), vec![Some("retrace".into()), None]);
    }

    #[test]
    fn an_unterminated_table_is_rejected() {
        let old = vec![entry(c"x", 1); MAX_ENTRIES + 1];
        // SAFETY: the scan stops at MAX_ENTRIES, within the allocation.
        let r = unsafe { extended(old.as_ptr(), &[]) };
        assert_eq!(r.err(), Some(FrozenTableError::Unterminated));
    }
}
