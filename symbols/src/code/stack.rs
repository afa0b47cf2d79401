//! The rsp offset (relative to the value at function entry) before every instruction.
//!
//! Stack slots are identified by `rsp offset + displacement`, so a spill at
//! `[rsp+8]` after the prologue and the same slot addressed during the
//! prologue get the same key. rsp must be the same on every path into a block.

use super::cfg::Cfg;
use super::decode::Listing;
use super::error::CodeError;
use super::regs::gpr_of;
use crate::model::Gpr;
use iced_x86::{FlowControl, Instruction, Mnemonic, OpKind};

/// How an instruction changes rsp, or an error if it cannot be tracked.
pub fn rsp_effect(ins: &Instruction) -> Result<i64, CodeError> {
    match ins.flow_control() {
        FlowControl::Call | FlowControl::IndirectCall | FlowControl::Return => return Ok(0),
        _ => {}
    }
    if ins.mnemonic() == Mnemonic::Leave {
        return Err(CodeError::UntrackedStackAdjust(ins.ip()));
    }
    if ins.is_stack_instruction() {
        return Ok(i64::from(ins.stack_pointer_increment()));
    }
    let writes_rsp = ins.op_count() > 0
        && ins.op0_kind() == OpKind::Register
        && gpr_of(ins.op0_register()) == Some(Gpr::Rsp);
    if !writes_rsp {
        return Ok(0);
    }
    let imm = || -> Option<i64> {
        matches!(
            ins.op1_kind(),
            OpKind::Immediate8to64
                | OpKind::Immediate32to64
                | OpKind::Immediate8
                | OpKind::Immediate32
        )
        .then(|| ins.immediate(1) as i64)
    };
    match ins.mnemonic() {
        Mnemonic::Sub => imm().map(|v| -v),
        Mnemonic::Add => imm(),
        Mnemonic::Lea
            if gpr_of(ins.memory_base()) == Some(Gpr::Rsp)
                && ins.memory_index() == iced_x86::Register::None =>
        {
            Some(ins.memory_displacement64() as i64)
        }
        Mnemonic::Cmp | Mnemonic::Test => Some(0),
        _ => None,
    }
    .ok_or(CodeError::UntrackedStackAdjust(ins.ip()))
}

/// rsp offset before each instruction (None where unreachable from the entry).
pub fn rsp_offsets(
    listing: &Listing,
    cfg: &Cfg,
    entry_block: usize,
) -> Result<Vec<Option<i64>>, CodeError> {
    let mut block_in: Vec<Option<i64>> = vec![None; cfg.blocks.len()];
    block_in[entry_block] = Some(0);
    let mut work = vec![entry_block];
    while let Some(b) = work.pop() {
        let Some(mut d) = block_in[b] else { continue };
        let blk = &cfg.blocks[b];
        for ins in &listing.insns[blk.start..blk.end] {
            d += rsp_effect(ins)?;
        }
        for &s in &blk.succs {
            match block_in[s] {
                None => {
                    block_in[s] = Some(d);
                    work.push(s);
                }
                Some(old) if old != d => {
                    return Err(CodeError::StackMismatch {
                        addr: listing.insns[cfg.blocks[s].start].ip(),
                        a: old,
                        b: d,
                    })
                }
                _ => {}
            }
        }
    }
    let mut out = vec![None; listing.insns.len()];
    for (b, blk) in cfg.blocks.iter().enumerate() {
        if let Some(mut d) = block_in[b] {
            for (slot, ins) in out[blk.start..blk.end]
                .iter_mut()
                .zip(&listing.insns[blk.start..blk.end])
            {
                *slot = Some(d);
                d += rsp_effect(ins)?;
            }
        }
    }
    Ok(out)
}
