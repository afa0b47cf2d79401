//! The post-recursion-check points of the eval function: `StartFrameChecked`
//! (normal `start_frame` path) and `ThrowEntry` (the `throwflag` path).
//!
//! A recursion check (`_Py_EnterRecursivePy`) is a decrement of
//! `tstate->py_recursion_remaining` stored back through a register proven to
//! hold tstate, followed in the same block by a conditional branch to the
//! exit path; the checked point is the branch's fall-through.

use super::cfg::Cfg;
use super::decode::Listing;
use super::dispatch::writes_gpr;
use super::holders::HolderAnalysis;
use super::regs::gpr_of;
use iced_x86::{FlowControl, InstructionInfoFactory, Mnemonic, OpKind, Register};
use std::collections::BTreeSet;

/// One inlined recursion check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecursionCheck {
    /// The store of the decremented counter.
    pub store: u64,
    /// The conditional branch to the overflow path.
    pub branch: u64,
    /// First instruction after the check (fall-through of `branch`).
    pub checked: u64,
    /// Block index of `checked`.
    pub checked_block: usize,
}

fn is_decrement(ins: &iced_x86::Instruction) -> bool {
    let imm = |k: u32| {
        ins.op_count() > k
            && matches!(
                ins.op_kind(k),
                OpKind::Immediate8to32 | OpKind::Immediate32 | OpKind::Immediate8
            )
    };
    match ins.mnemonic() {
        Mnemonic::Dec => true,
        Mnemonic::Sub => imm(1) && ins.immediate(1) == 1,
        Mnemonic::Add => imm(1) && ins.immediate(1) as u32 == u32::MAX,
        Mnemonic::Lea => {
            ins.memory_index() == Register::None && ins.memory_displacement64() as i64 == -1
        }
        _ => false,
    }
}

/// Every recursion check in the eval function.
pub fn recursion_checks(
    listing: &Listing,
    cfg: &Cfg,
    tstate: &HolderAnalysis<'_>,
    counter: u64,
) -> Vec<RecursionCheck> {
    let mut factory = InstructionInfoFactory::new();
    let mut out = Vec::new();
    for (i, ins) in listing.insns.iter().enumerate() {
        let to_counter = ins.op_count() >= 1
            && ins.op0_kind() == OpKind::Memory
            && ins.memory_index() == Register::None
            && ins.memory_displacement64() == counter
            && ins.memory_size().size() == 4;
        let Some(base) = to_counter.then(|| gpr_of(ins.memory_base())).flatten() else {
            continue;
        };
        if !tstate.before(i).is_some_and(|h| h.regs.contains(base)) {
            continue;
        }
        let b = cfg.block_of_insn[i];
        let blk = &cfg.blocks[b];
        let decrement = if ins.mnemonic() == Mnemonic::Mov && ins.op1_kind() == OpKind::Register {
            let Some(v) = gpr_of(ins.op1_register()) else {
                continue;
            };
            (blk.start..i)
                .rev()
                .find(|k| writes_gpr(&mut factory, &listing.insns[*k], v))
                .is_some_and(|k| is_decrement(&listing.insns[k]))
        } else {
            is_decrement(ins)
        };
        let last = &listing.insns[blk.end - 1];
        if !decrement || last.flow_control() != FlowControl::ConditionalBranch {
            continue;
        }
        if let (true, Some(next)) = (
            listing.falls_into_next(blk.end - 1),
            listing.insns.get(blk.end),
        ) {
            out.push(RecursionCheck {
                store: ins.ip(),
                branch: last.ip(),
                checked: next.ip(),
                checked_block: cfg.block_of_insn[blk.end],
            });
        }
    }
    out
}

/// The first check met walking forward from `addr` along fall-through and
/// direct unconditional jumps (at most `limit` instructions).
pub fn first_check_after(
    listing: &Listing,
    checks: &[RecursionCheck],
    addr: u64,
    limit: usize,
) -> Option<RecursionCheck> {
    let mut i = listing.index_of(addr)?;
    for _ in 0..limit {
        let ins = &listing.insns[i];
        if let Some(c) = checks.iter().find(|c| c.store == ins.ip()) {
            return Some(c.clone());
        }
        i = match ins.flow_control() {
            FlowControl::UnconditionalBranch => listing.index_of(ins.near_branch_target())?,
            FlowControl::Next | FlowControl::Call | FlowControl::ConditionalBranch => {
                if !listing.falls_into_next(i) {
                    return None;
                }
                i + 1
            }
            _ => return None,
        };
    }
    None
}

/// Blocks reachable from `from` without table dispatch edges and without entering `avoid`.
pub fn reachable_without_dispatch(
    cfg: &Cfg,
    from: usize,
    avoid: &BTreeSet<usize>,
) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut work = vec![from];
    while let Some(b) = work.pop() {
        if avoid.contains(&b) || !seen.insert(b) {
            continue;
        }
        if cfg.blocks[b].indirect {
            continue;
        }
        work.extend(cfg.blocks[b].succs.iter().copied());
    }
    seen
}
