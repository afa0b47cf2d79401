//! Stores of the current frame pointer inside the eval function.
//!
//! 3.11/3.12 keep it in the `_PyCFrame cframe` local: its rsp offset is read
//! from `tstate->cframe = &cframe` (`lea r,[rsp+X]` … `mov [tstate+cframe],r`),
//! then every write to `[rsp + X + current_frame]` is a store. 3.13 stores to
//! `tstate->current_frame` through a register proven to hold tstate.

use super::cfg::Cfg;
use super::decode::Listing;
use super::dispatch::writes_gpr;
use super::error::CodeError;
use super::holders::HolderAnalysis;
use super::regs::gpr_of;
use crate::model::{CurrentFrameStore, Gpr, SourceLine};
use iced_x86::{
    Formatter, GasFormatter, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register,
};

/// A write to the current-frame slot that is not a plain 8-byte GPR store
/// (e.g. the entry push `movaps %xmm0,0x80(%rsp)` storing current_frame and previous together).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherFrameWrite {
    pub address: u64,
    pub len: u8,
    pub text: String,
}

/// Result of the current-frame store search.
#[derive(Clone, Debug, Default)]
pub struct FrameStores {
    pub stores: Vec<CurrentFrameStore>,
    pub other_writes: Vec<OtherFrameWrite>,
    pub evidence: Vec<String>,
}

fn text(ins: &iced_x86::Instruction) -> String {
    let mut s = String::new();
    GasFormatter::new().format(ins, &mut s);
    s
}

/// Stores into the `_PyCFrame` local (3.11/3.12); the offsets are
/// `(_ts.cframe, _PyCFrame.current_frame)`.
pub fn cframe_local_stores(
    listing: &Listing,
    cfg: &Cfg,
    rsp: &[Option<i64>],
    tstate: &HolderAnalysis<'_>,
    body_rsp: i64,
    (ts_cframe, current_frame): (u64, u64),
    line_at: &dyn Fn(u64) -> Option<SourceLine>,
) -> Result<FrameStores, CodeError> {
    let mut factory = InstructionInfoFactory::new();
    let mut keys = Vec::new();
    for (i, ins) in listing.insns.iter().enumerate() {
        let is_store = ins.mnemonic() == Mnemonic::Mov
            && ins.op0_kind() == OpKind::Memory
            && ins.op1_kind() == OpKind::Register
            && ins.op1_register().is_gpr64()
            && ins.memory_index() == Register::None
            && ins.memory_displacement64() == ts_cframe;
        let Some(base) = is_store.then(|| gpr_of(ins.memory_base())).flatten() else {
            continue;
        };
        if !tstate.before(i).is_some_and(|h| h.regs.contains(base)) {
            continue;
        }
        let value = gpr_of(ins.op1_register())
            .ok_or_else(|| CodeError::FrameStores("bad register".into()))?;
        let b = cfg.block_of_insn[i];
        let writer = (cfg.blocks[b].start..i)
            .rev()
            .find(|k| writes_gpr(&mut factory, &listing.insns[*k], value));
        let Some(k) = writer else { continue };
        let w = &listing.insns[k];
        if w.mnemonic() == Mnemonic::Lea
            && gpr_of(w.memory_base()) == Some(Gpr::Rsp)
            && w.memory_index() == Register::None
        {
            if let Some(d) = rsp[k] {
                keys.push((d + w.memory_displacement64() as i64, w.ip(), ins.ip()));
            }
        }
    }
    let Some(&(cframe_key, lea_at, store_at)) = keys.first() else {
        return Err(CodeError::FrameStores(format!(
            "no `tstate->cframe = &local` (store to [tstate+{ts_cframe:#x}] of an rsp address) found"
        )));
    };
    if keys.iter().any(|k| k.0 != cframe_key) {
        return Err(CodeError::FrameStores(format!(
            "tstate->cframe is set to different stack addresses: {:?}",
            keys.iter().map(|k| k.0 - body_rsp).collect::<Vec<_>>()
        )));
    }
    let slot = cframe_key + current_frame as i64;
    let mut out = FrameStores::default();
    out.evidence.push(format!(
        "cframe local at [rsp+{:#x}] (lea at {lea_at:#x}, tstate->cframe store at {store_at:#x}); current_frame at [rsp+{:#x}]",
        cframe_key - body_rsp,
        slot - body_rsp
    ));
    for (i, ins) in listing.insns.iter().enumerate() {
        let Some(d) = rsp[i] else { continue };
        for um in factory.info(ins).used_memory() {
            let writes = !matches!(
                um.access(),
                OpAccess::Read | OpAccess::CondRead | OpAccess::NoMemAccess
            );
            if !writes || gpr_of(um.base()) != Some(Gpr::Rsp) || um.index() != Register::None {
                continue;
            }
            let lo = d + um.displacement() as i64;
            let hi = lo + um.memory_size().size() as i64;
            if !(lo < slot + 8 && slot < hi) {
                continue;
            }
            let gpr_store = ins.mnemonic() == Mnemonic::Mov
                && lo == slot
                && hi == slot + 8
                && ins.op1_kind() == OpKind::Register
                && ins.op1_register().is_gpr64();
            match gpr_store.then(|| gpr_of(ins.op1_register())).flatten() {
                Some(value) => out.stores.push(CurrentFrameStore {
                    address: ins.ip(),
                    len: ins.len() as u8,
                    value,
                    destination: format!("[rsp+{:#x}]", lo - body_rsp),
                    line: line_at(ins.ip()),
                }),
                None => out.other_writes.push(OtherFrameWrite {
                    address: ins.ip(),
                    len: ins.len() as u8,
                    text: text(ins),
                }),
            }
        }
    }
    Ok(out)
}

/// Stores to `tstate->current_frame` (3.13).
pub fn tstate_field_stores(
    listing: &Listing,
    tstate: &HolderAnalysis<'_>,
    field: u64,
    line_at: &dyn Fn(u64) -> Option<SourceLine>,
) -> FrameStores {
    let mut out = FrameStores::default();
    let mut unproven = 0usize;
    for (i, ins) in listing.insns.iter().enumerate() {
        let store = ins.op_count() == 2
            && ins.op0_kind() == OpKind::Memory
            && ins.memory_index() == Register::None
            && ins.memory_displacement64() == field
            && ins.memory_size().size() == 8
            && ins.memory_base().is_gpr64();
        if !store {
            continue;
        }
        let Some(base) = gpr_of(ins.memory_base()) else {
            continue;
        };
        let proven = tstate.before(i).is_some_and(|h| h.regs.contains(base));
        if !proven {
            unproven += 1;
            continue;
        }
        let value = (ins.mnemonic() == Mnemonic::Mov && ins.op1_kind() == OpKind::Register)
            .then(|| gpr_of(ins.op1_register()))
            .flatten();
        match value {
            Some(v) => out.stores.push(CurrentFrameStore {
                address: ins.ip(),
                len: ins.len() as u8,
                value: v,
                destination: format!("[{}+{field:#x}]", base.name()),
                line: line_at(ins.ip()),
            }),
            None => out.other_writes.push(OtherFrameWrite {
                address: ins.ip(),
                len: ins.len() as u8,
                text: text(ins),
            }),
        }
    }
    out.evidence.push(format!(
        "{} stores to [tstate+{field:#x}] through a register proven to hold tstate; {unproven} 8-byte stores at that displacement through other registers were not counted",
        out.stores.len() + out.other_writes.len()
    ));
    out
}
