//! Why an input cannot be analysed, phrased for the person who supplied it.

use thiserror::Error;

/// Every way analysis of an input file can fail. Messages are one line and say what to do.
#[derive(Debug, Error)]
pub enum AnalysisError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not an ELF file; pass the shared library libpython3.X.so.1.0 (e.g. $(pyenv root)/versions/3.12.1/lib/libpython3.12.so.1.0)")]
    NotElf(String),
    #[error("{0}: truncated or malformed ELF file ({1}); pass a complete copy of libpython")]
    Truncated(String, String),
    #[error(
        "{0}: not an x86-64 ELF shared object; only x86-64 Linux libpython builds are supported"
    )]
    WrongMachine(String),
    #[error(
        "{0}: not a libpython (no {1}); pass the CPython shared library built with --enable-shared"
    )]
    NotLibpython(String, String),
    #[error("{0}: has no DWARF debug information (stripped?); rebuild CPython with -g or use an unstripped libpython")]
    NoDebugInfo(String),
    #[error(
        "{0}: already instrumented by this rewriter ({1}); pass the original, unmodified libpython"
    )]
    AlreadyInstrumented(String, String),
    #[error("{path}: CPython {version} is not supported (supported: {supported}); use a supported libpython")]
    UnsupportedVersion {
        path: String,
        version: String,
        supported: String,
    },
    #[error("{0}: malformed DWARF: {1}")]
    Dwarf(String, String),
    #[error("{0}: analysis failed: {1}")]
    Analysis(String, String),
}
