//! Analysis of an unmodified upstream libpython.
//!
//! Reads the ELF file, its DWARF and its machine code and derives everything
//! the rewriter needs (see [`model::Analysis`]). Nothing here writes files or
//! generates code: emission lives in the `trampolines` and `rewriter` crates.
//!
//! * [`elf`]: ELF-level facts (sections, symbols, dynamic entries, relocations, version).
//! * [`dwarf`]: DWARF facts (function ranges, labels, struct layouts, line table).
//! * [`code`]: machine-code facts (dispatch sites, liveness, register layout, hook points).
//! * [`versions`]: every piece of per-CPython-version knowledge, in one place.
//! * [`analyze`]: the orchestration producing a [`model::Analysis`].

pub mod analyze;
pub mod code;
pub mod dwarf;
pub mod elf;
pub mod error;
pub mod model;
pub mod versions;

pub use analyze::{
    analyze_bytes, analyze_bytes_with, analyze_file, analyze_file_with, AnalyzeOptions,
};
pub use error::AnalysisError;
pub use model::*;
