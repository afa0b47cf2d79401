//! Forward "must hold" dataflow: which registers and rsp stack slots hold one
//! particular value (the table address, or the entry value of `rdi` = tstate)
//! on every path to an instruction.
//!
//! Tracked moves: `lea reg,[rip+X]` (source), `mov r64,r64`, spills
//! `mov [rsp+d],r64`, reloads `mov r64,[rsp+d]`, push/pop. Any other write
//! kills. Calls kill caller-saved registers. Stack slots are keyed by the
//! entry-relative rsp offset ([`super::stack`]). Assumption (checked as far
//! as the code shows): a slot is only written through rsp-based addressing;
//! slots within 128 bytes above an address taken with `lea r,[rsp+d]` (or a
//! copy of rsp) are never trusted.

use super::cfg::Cfg;
use super::decode::Listing;
use super::regs::{caller_saved, gpr_of, RegSet};
use crate::model::Gpr;
use iced_x86::{
    FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register,
};
use std::collections::BTreeSet;

/// Registers and stack slots holding the tracked value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holders {
    pub regs: RegSet,
    /// Entry-relative rsp offsets of 8-byte slots.
    pub slots: BTreeSet<i64>,
}

impl Holders {
    fn meet(&self, o: &Holders) -> Holders {
        Holders {
            regs: RegSet(self.regs.0 & o.regs.0),
            slots: self.slots.intersection(&o.slots).copied().collect(),
        }
    }
}

/// What is tracked and where it comes from.
#[derive(Clone, Debug)]
pub struct Tracked {
    /// Holders at function entry.
    pub at_entry: Holders,
    /// `lea reg,[rip+addr]` produces the value.
    pub rip_source: Option<u64>,
}

/// The fixpoint of the analysis.
pub struct HolderAnalysis<'l> {
    listing: &'l Listing,
    cfg: &'l Cfg,
    rsp: &'l [Option<i64>],
    tracked: Tracked,
    taken: Vec<i64>,
    block_in: Vec<Option<Holders>>,
}

const ESCAPE_WINDOW: i64 = 128;

impl<'l> HolderAnalysis<'l> {
    pub fn run(
        listing: &'l Listing,
        cfg: &'l Cfg,
        rsp: &'l [Option<i64>],
        entry_block: usize,
        tracked: Tracked,
    ) -> HolderAnalysis<'l> {
        let taken = address_taken_slots(listing, rsp);
        let mut a = HolderAnalysis {
            listing,
            cfg,
            rsp,
            tracked,
            taken,
            block_in: vec![None; cfg.blocks.len()],
        };
        let mut factory = InstructionInfoFactory::new();
        a.block_in[entry_block] = Some(a.tracked.at_entry.clone());
        let mut work: Vec<usize> = vec![entry_block];
        let mut queued = vec![false; cfg.blocks.len()];
        queued[entry_block] = true;
        while let Some(b) = work.pop() {
            queued[b] = false;
            let Some(mut st) = a.block_in[b].clone() else {
                continue;
            };
            let blk = &cfg.blocks[b];
            for i in blk.start..blk.end {
                a.step(&mut st, i, &mut factory);
            }
            for &s in &blk.succs {
                let new = match &a.block_in[s] {
                    None => st.clone(),
                    Some(old) => old.meet(&st),
                };
                if a.block_in[s].as_ref() != Some(&new) {
                    a.block_in[s] = Some(new);
                    if !queued[s] {
                        queued[s] = true;
                        work.push(s);
                    }
                }
            }
        }
        a
    }

    /// Holders on entry to block `b` (None if unreachable from the entry).
    pub fn block_in(&self, b: usize) -> Option<&Holders> {
        self.block_in[b].as_ref()
    }

    /// Holders just before instruction `idx`.
    pub fn before(&self, idx: usize) -> Option<Holders> {
        let b = self.cfg.block_of_insn[idx];
        let mut st = self.block_in[b].clone()?;
        let mut factory = InstructionInfoFactory::new();
        for i in self.cfg.blocks[b].start..idx {
            self.step(&mut st, i, &mut factory);
        }
        Some(st)
    }

    fn trackable(&self, key: i64) -> bool {
        !self
            .taken
            .iter()
            .any(|t| *t <= key && key < t + ESCAPE_WINDOW)
    }

    fn step(&self, st: &mut Holders, idx: usize, factory: &mut InstructionInfoFactory) {
        let ins = &self.listing.insns[idx];
        let delta = self.rsp[idx];
        let gen = self.gen_value(st, ins, delta);
        let info = factory.info(ins);
        for ur in info.used_registers() {
            if matches!(
                ur.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            ) {
                if let Some(g) = gpr_of(ur.register()) {
                    st.regs = st.regs.without(g);
                }
            }
        }
        for um in info.used_memory() {
            let writes = matches!(
                um.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            );
            if writes && gpr_of(um.base()) == Some(Gpr::Rsp) {
                match delta {
                    Some(d) => {
                        let lo = d + um.displacement() as i64;
                        let hi = lo + um.memory_size().size() as i64;
                        st.slots.retain(|k| *k + 8 <= lo || *k >= hi);
                    }
                    None => st.slots.clear(),
                }
            }
        }
        if matches!(
            ins.flow_control(),
            FlowControl::Call | FlowControl::IndirectCall
        ) {
            st.regs = st.regs.minus(caller_saved());
        }
        match gen {
            Gen::Reg(r) => st.regs = st.regs.with(r),
            Gen::Slot(k) if self.trackable(k) => {
                st.slots.insert(k);
            }
            _ => {}
        }
    }

    /// Whether the instruction copies the tracked value into a new place.
    fn gen_value(&self, st: &Holders, ins: &Instruction, delta: Option<i64>) -> Gen {
        let reg64 = |r: Register| if r.is_gpr64() { gpr_of(r) } else { None };
        let rsp_slot = |ins: &Instruction| -> Option<i64> {
            (gpr_of(ins.memory_base()) == Some(Gpr::Rsp)
                && ins.memory_index() == Register::None
                && ins.memory_size().size() == 8)
                .then_some(())?;
            Some(delta? + ins.memory_displacement64() as i64)
        };
        match ins.mnemonic() {
            Mnemonic::Lea if ins.is_ip_rel_memory_operand() => {
                match (reg64(ins.op0_register()), self.tracked.rip_source) {
                    (Some(r), Some(a)) if ins.ip_rel_memory_address() == a => Gen::Reg(r),
                    _ => Gen::None,
                }
            }
            Mnemonic::Mov => match (ins.op0_kind(), ins.op1_kind()) {
                (OpKind::Register, OpKind::Register) => {
                    match (reg64(ins.op0_register()), reg64(ins.op1_register())) {
                        (Some(d), Some(s)) if st.regs.contains(s) => Gen::Reg(d),
                        _ => Gen::None,
                    }
                }
                (OpKind::Register, OpKind::Memory) => {
                    match (reg64(ins.op0_register()), rsp_slot(ins)) {
                        (Some(d), Some(k)) if st.slots.contains(&k) => Gen::Reg(d),
                        _ => Gen::None,
                    }
                }
                (OpKind::Memory, OpKind::Register) => {
                    match (reg64(ins.op1_register()), rsp_slot(ins)) {
                        (Some(s), Some(k)) if st.regs.contains(s) => Gen::Slot(k),
                        _ => Gen::None,
                    }
                }
                _ => Gen::None,
            },
            Mnemonic::Push if ins.op0_kind() == OpKind::Register => {
                match (reg64(ins.op0_register()), delta) {
                    (Some(s), Some(d)) if st.regs.contains(s) => Gen::Slot(d - 8),
                    _ => Gen::None,
                }
            }
            Mnemonic::Pop if ins.op0_kind() == OpKind::Register => {
                match (reg64(ins.op0_register()), delta) {
                    (Some(r), Some(d)) if st.slots.contains(&d) => Gen::Reg(r),
                    _ => Gen::None,
                }
            }
            _ => Gen::None,
        }
    }
}

enum Gen {
    None,
    Reg(Gpr),
    Slot(i64),
}

/// Entry-relative offsets of stack addresses that escape into registers.
fn address_taken_slots(listing: &Listing, rsp: &[Option<i64>]) -> Vec<i64> {
    let mut out = Vec::new();
    for (i, ins) in listing.insns.iter().enumerate() {
        let Some(d) = rsp[i] else { continue };
        let escapes = match ins.mnemonic() {
            Mnemonic::Lea => gpr_of(ins.memory_base()) == Some(Gpr::Rsp),
            Mnemonic::Mov => {
                ins.op1_kind() == OpKind::Register
                    && gpr_of(ins.op1_register()) == Some(Gpr::Rsp)
                    && ins.op0_kind() == OpKind::Register
            }
            _ => false,
        };
        if escapes {
            let disp = if ins.mnemonic() == Mnemonic::Lea {
                ins.memory_displacement64() as i64
            } else {
                0
            };
            out.push(d + disp);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}
