//! Table dispatch: every indirect jump must load its target from the opcode
//! table, and no direct branch or fall-through may reach a redirected target.

use super::cfg::Cfg;
use super::decode::{ends_flow, is_nop, Listing};
use super::error::CodeError;
use super::holders::HolderAnalysis;
use super::image::CodeImage;
use super::regs::gpr_of;
use crate::model::{DispatchSite, Gpr, OpcodeTable, SourceLine, TableEntryKind};
use iced_x86::{Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register};
use std::collections::{BTreeMap, BTreeSet};

/// Distinct table targets, and whether any slot leading there is redirected.
pub fn table_targets(table: &OpcodeTable) -> BTreeMap<u64, bool> {
    let mut out: BTreeMap<u64, bool> = BTreeMap::new();
    for e in &table.entries {
        *out.entry(e.target).or_default() |= e.kind == TableEntryKind::Real;
    }
    out
}

/// Checks that every target is an instruction of the eval function.
pub fn check_targets_are_boundaries(
    listing: &Listing,
    table: &OpcodeTable,
) -> Result<BTreeSet<u64>, CodeError> {
    for e in &table.entries {
        if !listing.contains(e.target) {
            return Err(CodeError::TargetOutside {
                opcode: e.opcode,
                target: e.target,
            });
        }
        if listing.index_of(e.target).is_none() {
            return Err(CodeError::TargetNotBoundary {
                opcode: e.opcode,
                target: e.target,
            });
        }
    }
    Ok(table.entries.iter().map(|e| e.target).collect())
}

/// Checks that no direct branch or fall-through enters a table target.
/// Violations at redirected targets are errors; at never-redirected targets
/// (CACHE/RESERVED fall into each other in 3.12) they are returned as notes.
pub fn check_no_other_entry(
    image: &CodeImage<'_>,
    listing: &Listing,
    cfg: &Cfg,
    table: &OpcodeTable,
) -> Result<Vec<String>, CodeError> {
    let mut notes = Vec::new();
    for (target, redirected) in table_targets(table) {
        let violation = other_entry(image, listing, cfg, target);
        match (violation, redirected) {
            (None, _) => {}
            (Some(e), true) => return Err(e),
            (Some(e), false) => notes.push(format!("never-redirected target: {e}")),
        }
    }
    Ok(notes)
}

fn other_entry(
    image: &CodeImage<'_>,
    listing: &Listing,
    cfg: &Cfg,
    target: u64,
) -> Option<CodeError> {
    if let Some(src) = cfg.branch_sources.get(&target).and_then(|v| v.first()) {
        return Some(CodeError::BranchToTarget { from: *src, target });
    }
    let mut i = listing.index_of(target)?;
    while i > 0 && listing.falls_into_next(i - 1) {
        let prev = &listing.insns[i - 1];
        if is_nop(prev) {
            if let Some(src) = cfg.branch_sources.get(&prev.ip()).and_then(|v| v.first()) {
                return Some(CodeError::BranchToTarget { from: *src, target });
            }
            i -= 1;
            continue;
        }
        if !ends_flow(image, prev) {
            return Some(CodeError::FallThroughToTarget {
                from: prev.ip(),
                target,
            });
        }
        break;
    }
    None
}

/// Whether `ins` writes (any part of) `gpr`.
pub fn writes_gpr(factory: &mut InstructionInfoFactory, ins: &Instruction, gpr: Gpr) -> bool {
    factory.info(ins).used_registers().iter().any(|u| {
        gpr_of(u.register()) == Some(gpr)
            && matches!(
                u.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            )
    })
}

/// `[base + index*8]` with no displacement: returns the base register.
fn table_operand(ins: &Instruction) -> Option<Gpr> {
    let ok = ins.memory_index() != Register::None
        && ins.memory_index_scale() == 8
        && ins.memory_displacement64() == 0
        && ins.memory_size().size() == 8;
    if ok {
        gpr_of(ins.memory_base())
    } else {
        None
    }
}

/// Proves every indirect jump is a table dispatch and returns the sites.
pub fn dispatch_sites(
    listing: &Listing,
    cfg: &Cfg,
    table_holders: &HolderAnalysis<'_>,
    line_at: &dyn Fn(u64) -> Option<SourceLine>,
) -> Result<Vec<DispatchSite>, CodeError> {
    let mut factory = InstructionInfoFactory::new();
    let mut sites = Vec::new();
    for blk in cfg.blocks.iter().filter(|b| b.indirect) {
        let j = blk.end - 1;
        let jump = &listing.insns[j];
        let fail = |reason: String| CodeError::NotTableDispatch {
            addr: jump.ip(),
            reason,
        };
        let (load_idx, base) = match jump.op0_kind() {
            OpKind::Memory => {
                let base = table_operand(jump)
                    .ok_or_else(|| fail("memory operand is not [base + index*8]".into()))?;
                (j, base)
            }
            OpKind::Register => {
                let r = gpr_of(jump.op0_register())
                    .ok_or_else(|| fail("jump register is not a GPR".into()))?;
                let mut found = None;
                for k in (blk.start..j).rev() {
                    if writes_gpr(&mut factory, &listing.insns[k], r) {
                        found = Some(k);
                        break;
                    }
                }
                let k = found.ok_or_else(|| {
                    fail(format!(
                        "no load of {} in the two preceding instructions",
                        r.name()
                    ))
                })?;
                let load = &listing.insns[k];
                let is_load = load.mnemonic() == Mnemonic::Mov
                    && load.op0_kind() == OpKind::Register
                    && load.op0_register().is_gpr64()
                    && load.op1_kind() == OpKind::Memory;
                let base = is_load
                    .then(|| table_operand(load))
                    .flatten()
                    .ok_or_else(|| {
                        fail(format!(
                            "{} is set at {:#x} by something other than mov r64,[base+index*8]",
                            r.name(),
                            load.ip()
                        ))
                    })?;
                (k, base)
            }
            _ => return Err(fail("unexpected operand kind".into())),
        };
        let load_addr = listing.insns[load_idx].ip();
        let holders = table_holders
            .before(load_idx)
            .ok_or_else(|| fail("the load is unreachable from the function entry".into()))?;
        if !holders.regs.contains(base) {
            return Err(fail(format!(
                "{} is not proven to hold the table address at the load {load_addr:#x}",
                base.name()
            )));
        }
        sites.push(DispatchSite {
            load: load_addr,
            jump: jump.ip(),
            base,
            line: line_at(jump.ip()),
        });
    }
    Ok(sites)
}
