//! Installs the pure-Python module `retrace` as a frozen module.
//!
//! Frozen modules are found by `FrozenImporter`, which sits ahead of the path
//! finders in `sys.meta_path`, so `import retrace` works under `-I -S` and no
//! `retrace.py` on `sys.path` can shadow it; unlike a builtin module it does
//! not appear in `sys.builtin_module_names`.
//!
//! CPython 3.12's `find_frozen` rejects an entry unless `code != NULL`,
//! `code[0] != 0` and `size > 0`, then (in the main interpreter)
//! `unmarshal_frozen_code` calls `get_code()` instead of unmarshalling.
//! The entry therefore carries a one-byte placeholder (`N`, marshalled `None`,
//! so an interpreter that does unmarshal it gets a clean "not a code object"
//! TypeError) and a `get_code` that compiles the embedded source.

use crate::frozen_table::{extended, layout_supported, Frozen, FrozenTableError};
use pyo3_ffi::{PyErr_SetString, PyExc_SystemError, PyObject, Py_CompileString, Py_file_input};
use std::ffi::CStr;
use std::ptr::{addr_of, addr_of_mut, null_mut};
use std::sync::atomic::{AtomicBool, Ordering};

extern "C" {
    /// Exported by libpython 3.11+ (`NULL` unless an embedder set it).
    static mut PyImport_FrozenModules: *const Frozen;
    /// `PY_VERSION_HEX` of the running libpython (3.11+), a `const unsigned long`.
    static Py_Version: std::ffi::c_ulong;
}

/// Set once the table has been replaced.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Whether `retrace` was installed as a frozen module.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// The module source, NUL-terminated for the C API.
const SOURCE: &str = concat!(include_str!("../python/retrace.py"), "\0");

/// Marshalled `None`: non-empty placeholder for `struct _frozen.code`.
static PLACEHOLDER_CODE: [u8; 1] = *b"N";

/// `get_code` of the frozen entry: compiles the embedded source.
unsafe extern "C" fn get_code() -> *mut PyObject {
    match CStr::from_bytes_with_nul(SOURCE.as_bytes()) {
        // SAFETY: called by the import system with the GIL held; both strings
        // are NUL-terminated and outlive the call.
        Ok(source) => unsafe {
            Py_CompileString(source.as_ptr(), c"<frozen retrace>".as_ptr(), Py_file_input)
        },
        Err(_) => {
            // SAFETY: GIL held (see above).
            unsafe {
                PyErr_SetString(
                    PyExc_SystemError,
                    c"the embedded retrace source contains a NUL byte".as_ptr(),
                )
            };
            null_mut()
        }
    }
}

/// The frozen-table entry for `retrace`.
pub fn entry() -> Frozen {
    Frozen {
        name: c"retrace".as_ptr(),
        code: PLACEHOLDER_CODE.as_ptr(),
        size: PLACEHOLDER_CODE.len() as std::ffi::c_int,
        is_package: 0,
        get_code: Some(get_code),
    }
}

/// Replaces `PyImport_FrozenModules` with a leaked table holding `retrace`
/// followed by the existing entries. Must run before `Py_Initialize`.
pub fn install() -> Result<(), FrozenTableError> {
    // SAFETY: a constant data symbol of libpython, relocated before constructors run.
    let version: u64 = unsafe { addr_of!(Py_Version).read() };
    layout_supported(version)?;
    // SAFETY: constructors run single-threaded before Py_Initialize, so
    // nothing reads or writes PyImport_FrozenModules concurrently; the old
    // table, if any, is terminated as CPython requires.
    unsafe {
        let slot = addr_of_mut!(PyImport_FrozenModules);
        let table = extended(slot.read(), &[entry()])?;
        let leaked: &'static mut [Frozen] = Box::leak(table.into_boxed_slice());
        slot.write(leaked.as_ptr());
    }
    INSTALLED.store(true, Ordering::Relaxed);
    Ok(())
}
