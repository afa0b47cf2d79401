//! Function detours: divert a whole CPython function to a runtime replacement.
//!
//! The rewriter replaces the first bytes of a detoured function's entry with
//! `jmp detour_i` (padding the rest of the displaced instructions with
//! `int3`). At a function entry the status flags are dead (SysV ABI), so the
//! detour can test the descriptor's target slot directly:
//!
//! ```text
//! detour_i:   cmp  qword [rip + detour_targets + 8i], 0
//!             je   original_i
//!             jmp  qword [rip + detour_targets + 8i]   ; the runtime's replacement
//! original_i: <displaced entry instructions, re-encoded>
//!             jmp  site_end
//! ```
//!
//! `original_i` is a callable copy of the original function: the runtime's
//! replacement may call it. The displaced instructions may include direct
//! `call rel32`s (their absolute target is kept; the callee returns into
//! `original_i`), unlike hook trampolines, which only move straight-line code.
//!
//! A **full replacement** (the analysis proved the whole function body, e.g.
//! `_Py_Dealloc` = `mov rax, [rdi+8]; jmp [rax+0x30]`) has no callable
//! original: the displaced bytes end in an indirect jump. They are copied
//! verbatim after the `je` as the fallback that runs when no replacement is
//! installed (position-independent code only: no relative branch, no
//! RIP-relative operand), with no jump back.

use crate::error::CodegenError;
use crate::relocate::{decode_whole, encode_at};
use dynasmrt::{dynasm, x64::X64Relocation, DynasmApi, DynasmLabelApi, VecAssembler};
use iced_x86::{FlowControl, Instruction, OpKind};
use thiserror::Error;

/// Size of the `jmp rel32` at the detoured entry.
pub const JMP_LEN: usize = 5;

/// One function entry to detour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetourRequest {
    /// Link-time address of the function entry.
    pub site: u64,
    /// Original bytes of the whole displaced instructions (≥ 5).
    pub displaced: Vec<u8>,
    /// The displaced bytes are the whole function (no callable original).
    pub full_replacement: bool,
}

/// Where one emitted detour landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detour {
    pub index: u32,
    pub site: u64,
    pub site_len: usize,
    /// `detour_i`, the target of the jump written at the site.
    pub address: u64,
    /// The descriptor slot the detour reads (`detour_targets[i]`).
    pub target_slot: u64,
    /// `original_i` (for a full replacement: the verbatim fallback body).
    pub original: u64,
    /// Bytes of moved instructions at `original`, excluding the jump back.
    pub original_len: usize,
    pub full_replacement: bool,
}

/// The generated detour code, to be placed at `base` in the new text section.
#[derive(Clone, Debug)]
pub struct DetourProgram {
    pub base: u64,
    pub bytes: Vec<u8>,
    pub detours: Vec<Detour>,
}

/// Why a detour cannot be generated.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DetourError {
    #[error("{0} detours requested, the descriptor has room for {1}")]
    TooMany(usize, usize),
    #[error("detour at {site:#x} displaces only {len} bytes; a jump needs {JMP_LEN}")]
    TooShort { site: u64, len: usize },
    #[error("cannot decode the displaced entry at {address:#x}: {reason}")]
    Decode { address: u64, reason: String },
    #[error("displaced instruction at {address:#x} ({text}) cannot be moved")]
    NotMovable { address: u64, text: String },
    #[error("full-replacement body at {address:#x} is not position independent ({text})")]
    NotPositionIndependent { address: u64, text: String },
    #[error("full-replacement body at {0:#x} does not end in a control transfer")]
    FallsThrough(u64),
    #[error("cannot re-encode the entry of {address:#x} at {new_address:#x}: {reason}")]
    Reencode {
        address: u64,
        new_address: u64,
        reason: String,
    },
    #[error("assembler error: {0}")]
    Assembler(String),
}

impl From<CodegenError> for DetourError {
    /// The shared decoder/encoder of `relocate` reports in codegen terms.
    fn from(e: CodegenError) -> Self {
        match e {
            CodegenError::Decode { address, reason } => DetourError::Decode { address, reason },
            CodegenError::Reencode {
                address,
                new_address,
                reason,
            } => DetourError::Reencode {
                address,
                new_address,
                reason,
            },
            other => DetourError::Assembler(other.to_string()),
        }
    }
}

fn decode_all(address: u64, bytes: &[u8]) -> Result<Vec<Instruction>, DetourError> {
    Ok(decode_whole(address, bytes)?)
}

/// Re-encode a displaced function entry (straight-line code and direct calls)
/// so it runs at `new_address`.
pub fn relocate_entry(
    address: u64,
    bytes: &[u8],
    new_address: u64,
) -> Result<Vec<u8>, DetourError> {
    let instructions = decode_all(address, bytes)?;
    for ins in &instructions {
        let ok = match ins.flow_control() {
            FlowControl::Next => true,
            FlowControl::Call => ins.op0_kind() == OpKind::NearBranch64,
            _ => false,
        };
        if !ok {
            return Err(DetourError::NotMovable {
                address: ins.ip(),
                text: format!("{ins}"),
            });
        }
    }
    Ok(encode_at(&instructions, address, new_address)?)
}

/// Check that a full-replacement body can run verbatim anywhere and never
/// falls off its end.
pub fn check_full_body(address: u64, bytes: &[u8]) -> Result<(), DetourError> {
    let instructions = decode_all(address, bytes)?;
    for ins in &instructions {
        let relative = (0..ins.op_count()).any(|i| {
            matches!(
                ins.op_kind(i),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            )
        });
        if relative || ins.is_ip_rel_memory_operand() {
            return Err(DetourError::NotPositionIndependent {
                address: ins.ip(),
                text: format!("{ins}"),
            });
        }
    }
    match instructions.last().map(Instruction::flow_control) {
        Some(FlowControl::IndirectBranch | FlowControl::Return) => Ok(()),
        _ => Err(DetourError::FallsThrough(address)),
    }
}

/// Generate the detours of `requests`, placed at `base`; `targets_vaddr` is the
/// link-time address of `Descriptor::detour_targets[0]`.
pub fn generate_detours(
    base: u64,
    targets_vaddr: u64,
    requests: &[DetourRequest],
) -> Result<DetourProgram, DetourError> {
    if requests.len() > retrace_abi::MAX_DETOURS {
        return Err(DetourError::TooMany(
            requests.len(),
            retrace_abi::MAX_DETOURS,
        ));
    }
    let mut a = VecAssembler::<X64Relocation>::new(base as usize);
    let mut detours = Vec::with_capacity(requests.len());
    for (i, req) in requests.iter().enumerate() {
        if req.displaced.len() < JMP_LEN {
            return Err(DetourError::TooShort {
                site: req.site,
                len: req.displaced.len(),
            });
        }
        align16(&mut a);
        let start = a.offset().0;
        let slot = targets_vaddr + 8 * i as u64;
        let slot_ref = slot as usize;
        let original = a.new_dynamic_label();
        dynasm!(a
            ; .arch x64
            ; cmp QWORD [extern slot_ref], 0
            ; je =>original
            ; jmp QWORD [extern slot_ref]
            ; =>original
        );
        let original_at = a.offset().0;
        let original_address = base + original_at as u64;
        let moved = if req.full_replacement {
            check_full_body(req.site, &req.displaced)?;
            req.displaced.clone()
        } else {
            relocate_entry(req.site, &req.displaced, original_address)?
        };
        let original_len = moved.len();
        a.extend(moved);
        if !req.full_replacement {
            let resume = (req.site + req.displaced.len() as u64) as usize;
            dynasm!(a
                ; .arch x64
                ; jmp extern resume
            );
        }
        detours.push(Detour {
            index: i as u32,
            site: req.site,
            site_len: req.displaced.len(),
            address: base + start as u64,
            target_slot: slot,
            original: original_address,
            original_len,
            full_replacement: req.full_replacement,
        });
    }
    let bytes = a
        .finalize()
        .map_err(|e| DetourError::Assembler(e.to_string()))?;
    Ok(DetourProgram {
        base,
        bytes,
        detours,
    })
}

/// The 5-byte `jmp rel32` from `site` to `detour`, padded with `int3` to `len`.
pub fn site_patch(site: u64, detour: u64, len: usize) -> Option<Vec<u8>> {
    let rel = i32::try_from(detour as i64 - (site as i64 + JMP_LEN as i64)).ok()?;
    let mut patch = vec![0xe9];
    patch.extend_from_slice(&rel.to_le_bytes());
    patch.resize(len.max(JMP_LEN), 0xcc);
    Some(patch)
}

/// Pad with `int3` to a 16-byte boundary.
fn align16(a: &mut VecAssembler<X64Relocation>) {
    while !a.offset().0.is_multiple_of(16) {
        a.push(0xcc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_call_keeps_its_absolute_target() {
        // sub rsp, 8; call 0x2d0990+4+5+0x100
        let bytes = [0x48, 0x83, 0xec, 0x08, 0xe8, 0x00, 0x01, 0x00, 0x00];
        let moved = relocate_entry(0x2d0990, &bytes, 0x60_0000).unwrap();
        let ins = decode_all(0x60_0000, &moved).unwrap();
        assert_eq!(ins.len(), 2);
        assert_eq!(ins[1].near_branch_target(), 0x2d0990 + 9 + 0x100);
    }

    #[test]
    fn branches_and_indirect_jumps_are_not_moved() {
        let e = relocate_entry(0x1000, &[0xe9, 0, 0, 0, 0], 0x2000).unwrap_err();
        assert!(matches!(e, DetourError::NotMovable { .. }));
        // mov rax, [rdi+8]; jmp [rax+0x30]
        let dealloc = [0x48, 0x8b, 0x47, 0x08, 0xff, 0x60, 0x30];
        let e = relocate_entry(0x1000, &dealloc, 0x2000).unwrap_err();
        assert!(matches!(e, DetourError::NotMovable { .. }));
        check_full_body(0x1000, &dealloc).unwrap();
    }

    #[test]
    fn full_bodies_must_be_position_independent_and_closed() {
        // mov rax, [rip+0x10]; jmp [rax]
        let rip = [0x48, 0x8b, 0x05, 0x10, 0, 0, 0, 0xff, 0x20];
        assert!(matches!(
            check_full_body(0x1000, &rip),
            Err(DetourError::NotPositionIndependent { .. })
        ));
        // mov rax, [rdi+8]; add rax, 1
        let open = [0x48, 0x8b, 0x47, 0x08, 0x48, 0x83, 0xc0, 0x01];
        assert_eq!(
            check_full_body(0x1000, &open),
            Err(DetourError::FallsThrough(0x1000))
        );
    }

    #[test]
    fn short_and_too_many_requests_are_refused() {
        let short = DetourRequest {
            site: 0x1000,
            displaced: vec![0x90; 4],
            full_replacement: false,
        };
        assert!(matches!(
            generate_detours(0x10_0000, 0x20_0000, &[short]),
            Err(DetourError::TooShort { .. })
        ));
        let ok = DetourRequest {
            site: 0x1000,
            displaced: vec![0x90; 5],
            full_replacement: false,
        };
        let many = vec![ok; retrace_abi::MAX_DETOURS + 1];
        assert!(matches!(
            generate_detours(0x10_0000, 0x20_0000, &many),
            Err(DetourError::TooMany(..))
        ));
    }

    #[test]
    fn site_patch_is_a_padded_jump() {
        assert_eq!(
            site_patch(0x1000, 0x2000, 7).unwrap(),
            vec![0xe9, 0xfb, 0x0f, 0, 0, 0xcc, 0xcc]
        );
        assert!(site_patch(0, 1 << 40, 5).is_none());
    }
}
