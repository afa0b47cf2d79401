//! Backward liveness of the 16 GPRs and the flags over the eval function's CFG.
//!
//! Conventions (System V AMD64):
//! * 32-bit register writes zero-extend: a full definition. 8/16-bit writes
//!   and conditional writes (cmov) do not kill. `xor r,r`-style clears are
//!   definitions only (iced-x86 reports them so).
//! * Flags are one unit: read if any flag is read; killed only when all six
//!   status flags are written.
//! * Calls use the six argument registers (and rax when `call_uses_rax`, for
//!   variadic callees: conservative), kill every caller-saved register and the flags.
//! * `ret` uses rax, rdx and the callee-saved registers; a tail jump uses the
//!   argument registers, rax and the callee-saved registers.
//! * A table dispatch has every table target as successor.

use super::cfg::{Cfg, Exit};
use super::decode::Listing;
use super::regs::{caller_saved, gpr_of, RegSet, ARG_REGS, CALLEE_SAVED};
use crate::model::Gpr;
use iced_x86::{FlowControl, Instruction, InstructionInfoFactory, OpAccess, RflagsBits};

const STATUS_FLAGS: u32 = RflagsBits::OF
    | RflagsBits::SF
    | RflagsBits::ZF
    | RflagsBits::AF
    | RflagsBits::CF
    | RflagsBits::PF;

/// Registers an instruction reads and fully overwrites.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UseDef {
    pub uses: RegSet,
    pub defs: RegSet,
}

/// Uses and definitions of one instruction.
pub fn use_def(
    factory: &mut InstructionInfoFactory,
    ins: &Instruction,
    call_uses_rax: bool,
) -> UseDef {
    let mut ud = UseDef::default();
    for u in factory.info(ins).used_registers() {
        let Some(g) = gpr_of(u.register()) else {
            continue;
        };
        let full = u.register().size() >= 4;
        match u.access() {
            OpAccess::Read | OpAccess::CondRead => ud.uses = ud.uses.with(g),
            OpAccess::ReadWrite | OpAccess::ReadCondWrite => ud.uses = ud.uses.with(g),
            OpAccess::Write if full => ud.defs = ud.defs.with(g),
            _ => {}
        }
    }
    if ins.rflags_read() != 0 {
        ud.uses = ud.uses.union(RegSet::FLAGS);
    }
    if ins.rflags_modified() & STATUS_FLAGS == STATUS_FLAGS {
        ud.defs = ud.defs.union(RegSet::FLAGS);
    }
    if matches!(
        ins.flow_control(),
        FlowControl::Call | FlowControl::IndirectCall
    ) {
        let mut args = RegSet::of(&ARG_REGS).with(Gpr::Rsp);
        if call_uses_rax {
            args = args.with(Gpr::Rax);
        }
        ud.uses = ud.uses.union(args);
        ud.defs = ud.defs.union(caller_saved()).union(RegSet::FLAGS);
    }
    ud
}

/// Registers used by leaving the function.
pub fn exit_uses(exit: Exit) -> RegSet {
    let saved = RegSet::of(&CALLEE_SAVED);
    match exit {
        Exit::Return => saved.with(Gpr::Rax).with(Gpr::Rdx),
        Exit::TailCall => saved.union(RegSet::of(&ARG_REGS)).with(Gpr::Rax),
    }
}

/// The liveness fixpoint.
pub struct Liveness {
    pub block_in: Vec<RegSet>,
    pub block_out: Vec<RegSet>,
    per_insn: Vec<UseDef>,
}

impl Liveness {
    pub fn run(listing: &Listing, cfg: &Cfg, call_uses_rax: bool) -> Liveness {
        let mut factory = InstructionInfoFactory::new();
        let per_insn: Vec<UseDef> = listing
            .insns
            .iter()
            .map(|i| use_def(&mut factory, i, call_uses_rax))
            .collect();
        let nb = cfg.blocks.len();
        let preds = cfg.preds();
        let mut lv = Liveness {
            block_in: vec![RegSet::EMPTY; nb],
            block_out: vec![RegSet::EMPTY; nb],
            per_insn,
        };
        let mut work: Vec<usize> = (0..nb).collect();
        let mut queued = vec![true; nb];
        while let Some(b) = work.pop() {
            queued[b] = false;
            let blk = &cfg.blocks[b];
            let mut out = blk.exit.map(exit_uses).unwrap_or(RegSet::EMPTY);
            for s in &blk.succs {
                out = out.union(lv.block_in[*s]);
            }
            lv.block_out[b] = out;
            let live_in = lv.transfer_back(blk.start, blk.end, out);
            if live_in != lv.block_in[b] {
                lv.block_in[b] = live_in;
                for &p in &preds[b] {
                    if !queued[p] {
                        queued[p] = true;
                        work.push(p);
                    }
                }
            }
        }
        lv
    }

    fn transfer_back(&self, start: usize, end: usize, mut live: RegSet) -> RegSet {
        for ud in self.per_insn[start..end].iter().rev() {
            live = live.minus(ud.defs).union(ud.uses);
        }
        live
    }

    /// Registers live just before instruction `idx`.
    pub fn live_before(&self, cfg: &Cfg, idx: usize) -> RegSet {
        let b = cfg.block_of_insn[idx];
        self.transfer_back(idx, cfg.blocks[b].end, self.block_out[b])
    }
}
