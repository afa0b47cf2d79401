//! The raise entry: where a dispatch stub may send the eval loop when a
//! Retrace callback raised at a boundary (SEMANTICS §14.6: the exception
//! propagates "as if raised by the target instruction").
//!
//! CPython's own `resume_with_error` label restores `next_instr` and the
//! stack pointer from the frame (`SET_LOCALS_FROM_FRAME`) and falls into
//! `error`. GCC enters it after loading `frame->prev_instr` into a register
//! (3.12.1: `mov 0x38(%rbx),%rbp; jmp resume_with_error`). That load is the
//! raise entry: a stub that wrote `prev_instr` and `stacktop` into the frame
//! can jump there with nothing but the frame register (and the eval loop's
//! own stack slots) intact.
//!
//! The entry is accepted only when every such load uses the same register,
//! and no register other than the frame register (and `rsp`) carries a value
//! into it: each register the (call-conservative) liveness analysis reports
//! live there must be a caller-saved register that some entering path
//! clobbers with a call right before the load, so the code after the label
//! cannot depend on it.

use super::cfg::Cfg;
use super::decode::Listing;
use super::liveness::{use_def, Liveness};
use super::regs::{caller_saved, gpr_of, RegSet};
use crate::model::Gpr;
use iced_x86::{Code, FlowControl, Instruction, InstructionInfoFactory, OpKind, Register};

/// Instructions scanned backwards from an entering load for a call.
const SCAN_BACK: usize = 32;

/// Caller-saved registers holding garbage at the load `idx` on the straight
/// path that falls into it: those a call before it clobbered and nothing
/// redefined since.
fn clobbered_before(listing: &Listing, idx: usize) -> RegSet {
    let mut factory = InstructionInfoFactory::new();
    let mut defined = RegSet::EMPTY;
    let mut at = idx;
    for _ in 0..SCAN_BACK {
        let Some(p) = at.checked_sub(1) else { break };
        let ins = &listing.insns[p];
        let falls = matches!(
            ins.flow_control(),
            FlowControl::Next | FlowControl::ConditionalBranch | FlowControl::Call
        );
        if !falls || !listing.falls_into_next(p) {
            break;
        }
        if ins.flow_control() == FlowControl::Call {
            return caller_saved().minus(defined);
        }
        defined = defined.union(use_def(&mut factory, ins, false).defs);
        at = p;
    }
    RegSet::EMPTY
}

/// A verified raise entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaiseEntry {
    /// Address of the `mov R, [frame + prev_instr]` that enters the label.
    pub address: u64,
    /// The register the label reads `prev_instr` from.
    pub prev_register: Gpr,
    /// Evidence for `inspect`.
    pub evidence: String,
}

/// `mov R64, qword [frame + offset]` → `R`.
fn loads_field(i: &Instruction, frame: Register, offset: u64) -> Option<Register> {
    (i.code() == Code::Mov_r64_rm64
        && i.op1_kind() == OpKind::Memory
        && i.memory_base() == frame
        && i.memory_index() == Register::None
        && i.memory_displacement64() == offset)
        .then(|| i.op0_register())
}

fn jumps_to(i: &Instruction, target: u64) -> bool {
    matches!(
        i.op0_kind(),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    ) && i.near_branch_target() == target
        && matches!(i.code(), Code::Jmp_rel32_64 | Code::Jmp_rel8_64)
}

/// Finds the raise entry of `label` (`resume_with_error`), or says why there
/// is none.
pub fn raise_entry(
    listing: &Listing,
    cfg: &Cfg,
    liveness: &Liveness,
    label: u64,
    frame: Gpr,
    prev_instr: u64,
) -> Result<RaiseEntry, String> {
    let frame_reg = super::regs::iced_of(frame);
    let mut loads: Vec<(usize, Register)> = Vec::new();
    for (idx, pair) in listing.insns.windows(2).enumerate() {
        let (load, next) = (&pair[0], &pair[1]);
        let Some(r) = loads_field(load, frame_reg, prev_instr) else {
            continue;
        };
        let adjacent = load.next_ip() == next.ip();
        let enters = adjacent
            && (jumps_to(next, label) || (next.ip() == label && listing.falls_into_next(idx)));
        if enters {
            loads.push((idx, r));
        }
    }
    let Some(&(first, register)) = loads.first() else {
        return Err(format!(
            "no `mov R, [frame + {prev_instr:#x}]` enters resume_with_error at {label:#x}"
        ));
    };
    if let Some((idx, other)) = loads.iter().find(|(_, r)| *r != register) {
        return Err(format!(
            "resume_with_error is entered with prev_instr in {register:?} and in {other:?} (at {:#x})",
            listing.insns[*idx].ip()
        ));
    }
    let prev_register = gpr_of(register)
        .ok_or_else(|| format!("{register:?} is not a general-purpose register"))?;
    let live = liveness.live_before(cfg, first);
    let garbage = loads.iter().fold(RegSet::EMPTY, |acc, &(idx, _)| {
        acc.union(clobbered_before(listing, idx))
    });
    let extra: Vec<Gpr> = live
        .gprs()
        .into_iter()
        .filter(|&r| r != frame && r != Gpr::Rsp && !garbage.contains(r))
        .collect();
    if !extra.is_empty() {
        return Err(format!(
            "registers {extra:?} are live before the resume_with_error entry at {:#x}",
            listing.insns[first].ip()
        ));
    }
    let address = listing.insns[first].ip();
    Ok(RaiseEntry {
        address,
        prev_register,
        evidence: format!(
            "raise entry {address:#x}: `mov {register:?}, [{frame:?} + {prev_instr:#x}]` into resume_with_error at {label:#x} ({} entering loads agree; only the frame register carries a value in)",
            loads.len()
        ),
    })
}
