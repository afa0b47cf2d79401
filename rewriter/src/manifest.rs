//! The record an output folder keeps of what was rewritten (`retrace-manifest.json`).
//!
//! `rewriter verify DIR` re-checks an output against it, and against the
//! original library when that is still present and unchanged.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::error::RewriteError;

pub const FILE_NAME: &str = "retrace-manifest.json";

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Manifest {
    pub tool: String,
    pub tool_version: String,
    pub input: InputRecord,
    /// File name of the rewritten library inside `lib/`.
    pub library: String,
    pub output_sha256: String,
    pub runtime: String,
    pub launcher: String,
    pub python: String,
    pub text_vaddr: u64,
    pub data_vaddr: u64,
    /// The shared slow-path entry every dispatch stub calls.
    #[serde(default)]
    pub dispatch_common: u64,
    /// The stubs' shared raise block and the raise entry in the original code
    /// it jumps to (absent when the library has no raise entry).
    #[serde(default)]
    pub raise: Option<RaiseRecord>,
    pub stubs: Vec<StubRecord>,
    pub hooks: Vec<HookRecord>,
    /// Function detours (absent in manifests written before detours existed).
    #[serde(default)]
    pub detours: Vec<DetourRecord>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
pub struct RaiseRecord {
    pub block: u64,
    pub entry: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct InputRecord {
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub version: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct StubRecord {
    pub opcode: u8,
    pub name: String,
    pub slot: u64,
    pub stub: u64,
    pub handler: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct HookRecord {
    pub kind: String,
    pub what: String,
    pub site: u64,
    /// Original bytes at the site, lowercase hex.
    pub original: String,
    pub trampoline: u64,
    pub displaced_address: u64,
    pub displaced_len: usize,
}

/// One function entry diverted to a detour.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct DetourRecord {
    /// `retrace_abi::DetourKind` name.
    pub kind: String,
    pub function: String,
    pub site: u64,
    /// Original bytes displaced at the site, lowercase hex.
    pub original: String,
    /// `detour_i`, where the site jumps.
    pub detour: u64,
    /// `Descriptor::detour_targets[i]`, the slot the detour tests and jumps through.
    pub target_slot: u64,
    /// Address of the moved entry (`original_i`, or the fallback body of a full replacement).
    pub moved_address: u64,
    pub moved_len: usize,
    pub full_replacement: bool,
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Manifest, RewriteError> {
        let path = dir.join(FILE_NAME);
        let text = std::fs::read_to_string(&path)
            .map_err(|_| RewriteError::NotAnOutput(dir.display().to_string()))?;
        serde_json::from_str(&text).map_err(|e| RewriteError::Manifest {
            path: path.display().to_string(),
            message: format!("unreadable manifest: {e}"),
        })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
