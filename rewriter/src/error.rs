//! Errors of the rewriting pipeline, one line each, naming the problem and the fix.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RewriteError {
    #[error(transparent)]
    Analysis(#[from] symbols::AnalysisError),
    #[error("{path}: CPython {version} can be inspected but not instrumented yet: {reason}")]
    NotInstrumentable {
        path: String,
        version: String,
        reason: String,
    },
    #[error("code generation failed: {0}")]
    Codegen(#[from] trampolines::CodegenError),
    #[error("detour code generation failed: {0}")]
    Detour(#[from] trampolines::detour::DetourError),
    #[error("ELF emission failed: {0}")]
    Emit(#[from] crate::emit::EmitError),
    #[error("verification of the rewritten library failed: {0}")]
    Verify(String),
    #[error("{path}: {message}")]
    Output { path: String, message: String },
    #[error("{0} already exists; pass --force to replace it")]
    Exists(String),
    #[error("runtime library not found at {0}; build it with `cargo build --release -p probe-core` or pass --runtime PATH")]
    RuntimeMissing(String),
    #[error("original interpreter executable not found (looked for {0}); pass --python PATH")]
    PythonMissing(String),
    #[error("{0}: not a rewriter output folder (no retrace-manifest.json); run `rewriter instrument` first")]
    NotAnOutput(String),
    #[error("{path}: {message}")]
    Manifest { path: String, message: String },
}

impl RewriteError {
    pub fn output(path: impl AsRef<std::path::Path>, e: impl std::fmt::Display) -> Self {
        RewriteError::Output {
            path: path.as_ref().display().to_string(),
            message: e.to_string(),
        }
    }
}
