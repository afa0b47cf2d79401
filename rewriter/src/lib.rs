//! The rewriter: from an analysed libpython to a verified, instrumented output folder.
//!
//! Analysis lives in the `symbols` crate and machine-code generation in
//! `trampolines`; this crate decides what to patch ([`plan`]), fills the
//! runtime descriptor ([`descriptor`]), writes the ELF ([`emit`]), checks the
//! result with an independent decoder ([`verify`], [`crosscheck`]) and
//! publishes the output folder atomically ([`instrument`]).

pub mod crosscheck;
pub mod descriptor;
pub mod emit;
pub mod error;
pub mod instrument;
pub mod launcher;
pub mod manifest;
pub mod plan;
pub mod report;
pub mod verify;

pub use error::RewriteError;
