//! The register layout at handler entry, read from the `resume_frame`
//! dispatch sequence and confirmed with liveness at the table targets.
//!
//! The sequence loads `frame->prev_instr` (3.11/3.12) or `frame->instr_ptr`
//! (3.13) and `frame->stacktop` from one register (the frame), computes
//! `next_instr`, `stack_pointer = &frame->localsplus[stacktop]`, the opcode
//! and oparg bytes, and jumps through the table. A small symbolic execution
//! of that straight-line code names the registers.

use super::cfg::Cfg;
use super::decode::{ends_flow, Listing};
use super::holders::HolderAnalysis;
use super::image::CodeImage;
use super::liveness::Liveness;
use super::regs::{caller_saved, gpr_of, RegSet};
use crate::model::{DispatchSite, Gpr, Location};
use iced_x86::{FlowControl, Instruction, Mnemonic, OpKind, Register};

/// Abstract value of a register in the dispatch sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sym {
    Init(Gpr),
    Frame,
    /// The loaded instruction pointer plus a byte offset.
    Instr(i64),
    Stacktop,
    Localsplus,
    StackPtr,
    /// The byte at the loaded instruction pointer plus an offset.
    Byte(i64),
    Other,
}

/// Field offsets the symbolic execution recognises.
#[derive(Clone, Copy, Debug)]
pub struct FrameFields {
    pub instr: u64,
    pub stacktop: u64,
    pub localsplus: u64,
}

/// Start of the straight-line code that ends at instruction `j`.
pub fn trace_start(image: &CodeImage<'_>, listing: &Listing, j: usize, max: usize) -> usize {
    let mut s = j;
    while s > 0 && j - s < max && listing.falls_into_next(s - 1) {
        let p = &listing.insns[s - 1];
        if ends_flow(image, p) || !matches!(p.flow_control(), FlowControl::Next | FlowControl::Call)
        {
            break;
        }
        s -= 1;
    }
    s
}

/// Symbolically executes `insns` with `frame` holding the frame pointer.
pub fn execute(insns: &[Instruction], frame: Gpr, f: FrameFields) -> [Sym; 16] {
    let mut st: [Sym; 16] = std::array::from_fn(|i| Sym::Init(Gpr::ALL[i]));
    st[frame.number() as usize] = Sym::Frame;
    for ins in insns {
        step(&mut st, ins, f);
    }
    st
}

fn get(st: &[Sym; 16], r: Register) -> Option<Sym> {
    gpr_of(r).map(|g| st[g.number() as usize])
}

fn step(st: &mut [Sym; 16], ins: &Instruction, f: FrameFields) {
    let dst = if ins.mnemonic() == Mnemonic::Cdqe {
        Some(Register::RAX)
    } else {
        (ins.op_count() > 0 && ins.op0_kind() == OpKind::Register)
            .then(|| ins.op0_register())
            .filter(|r| r.is_gpr())
    };
    let mem_plain = ins.memory_index() == Register::None;
    let disp = ins.memory_displacement64() as i64;
    let base = get(st, ins.memory_base());
    let index = get(st, ins.memory_index());
    let value: Option<Sym> = match ins.mnemonic() {
        Mnemonic::Mov if ins.op1_kind() == OpKind::Register => {
            let src = get(st, ins.op1_register());
            match (dst, src) {
                (Some(d), Some(s)) if d.is_gpr64() => Some(s),
                (Some(d), Some(s @ (Sym::Byte(_) | Sym::Stacktop))) if d.is_gpr32() => Some(s),
                _ => Some(Sym::Other),
            }
        }
        Mnemonic::Mov | Mnemonic::Movsxd if ins.op1_kind() == OpKind::Memory => {
            let size = ins.memory_size().size();
            match (base, mem_plain) {
                (Some(Sym::Frame), true) if disp as u64 == f.instr && size == 8 => {
                    Some(Sym::Instr(0))
                }
                (Some(Sym::Frame), true) if disp as u64 == f.stacktop && size == 4 => {
                    Some(Sym::Stacktop)
                }
                _ => Some(Sym::Other),
            }
        }
        Mnemonic::Cdqe => match st[0] {
            Sym::Stacktop => Some(Sym::Stacktop),
            _ => Some(Sym::Other),
        },
        Mnemonic::Lea => match (base, index, ins.memory_index_scale()) {
            (Some(Sym::Instr(k)), None, _) if mem_plain => Some(Sym::Instr(k + disp)),
            (Some(Sym::Frame), None, _) if mem_plain && disp as u64 == f.localsplus => {
                Some(Sym::Localsplus)
            }
            (Some(Sym::Frame), Some(Sym::Stacktop), 8) if disp as u64 == f.localsplus => {
                Some(Sym::StackPtr)
            }
            (Some(Sym::Localsplus), Some(Sym::Stacktop), 8) if disp == 0 => Some(Sym::StackPtr),
            _ => Some(Sym::Other),
        },
        Mnemonic::Movzx if ins.memory_size().size() == 1 && ins.op1_kind() == OpKind::Memory => {
            match base {
                Some(Sym::Instr(k)) if mem_plain => Some(Sym::Byte(k + disp)),
                _ => Some(Sym::Other),
            }
        }
        _ => None,
    };
    match (value, dst.and_then(gpr_of)) {
        (Some(v), Some(d)) => st[d.number() as usize] = v,
        _ => {
            // Generic: anything written becomes unknown.
            let mut factory = iced_x86::InstructionInfoFactory::new();
            for u in factory.info(ins).used_registers() {
                if !matches!(
                    u.access(),
                    iced_x86::OpAccess::Read | iced_x86::OpAccess::CondRead
                ) {
                    if let Some(g) = gpr_of(u.register()) {
                        st[g.number() as usize] = Sym::Other;
                    }
                }
            }
        }
    }
    if matches!(
        ins.flow_control(),
        FlowControl::Call | FlowControl::IndirectCall
    ) {
        for g in caller_saved().gprs() {
            st[g.number() as usize] = Sym::Other;
        }
    }
}

/// A dispatch site whose straight-line code sets up the whole layout.
#[derive(Clone, Debug)]
pub struct ResumeSequence {
    pub site: DispatchSite,
    pub trace: (u64, u64),
    pub frame_in: Gpr,
    pub state: [Sym; 16],
}

/// Finds the dispatch sites whose sequence yields frame, next_instr and stack_pointer.
pub fn resume_sequences(
    image: &CodeImage<'_>,
    listing: &Listing,
    sites: &[DispatchSite],
    f: FrameFields,
    next_off: i64,
) -> Vec<ResumeSequence> {
    let mut out = Vec::new();
    for site in sites {
        let Some(j) = listing.index_of(site.jump) else {
            continue;
        };
        let s = trace_start(image, listing, j, 64);
        let insns = &listing.insns[s..=j];
        let mut bases: Vec<Gpr> = insns
            .iter()
            .filter(|i| {
                i.op_count() == 2
                    && i.op1_kind() == OpKind::Memory
                    && i.memory_index() == Register::None
                    && i.memory_displacement64() == f.instr
            })
            .filter_map(|i| gpr_of(i.memory_base()))
            .collect();
        bases.dedup();
        for b in bases {
            let st = execute(insns, b, f);
            let has = |v: Sym| st.contains(&v);
            if has(Sym::StackPtr) && has(Sym::Instr(next_off)) && has(Sym::Frame) {
                out.push(ResumeSequence {
                    site: site.clone(),
                    trace: (listing.insns[s].ip(), site.jump),
                    frame_in: b,
                    state: st,
                });
                break;
            }
        }
    }
    out
}

/// Live-in counts per GPR over a set of block-leader addresses.
pub fn live_counts(listing: &Listing, cfg: &Cfg, lv: &Liveness, targets: &[u64]) -> [usize; 17] {
    let mut c = [0usize; 17];
    for t in targets {
        if let Some(i) = listing.index_of(*t) {
            let live = lv.block_in[cfg.block_of_insn[i]];
            for (k, slot) in c.iter_mut().enumerate() {
                if live.0 & (1 << k) != 0 {
                    *slot += 1;
                }
            }
        }
    }
    c
}

/// The register holding `v` at the jump that is live-in at the most targets
/// (ties: `prefer`, then the lowest register number).
pub fn pick(st: &[Sym; 16], v: Sym, counts: &[usize; 17], prefer: Option<Gpr>) -> Option<Gpr> {
    Gpr::ALL
        .iter()
        .copied()
        .filter(|g| st[g.number() as usize] == v && *g != Gpr::Rsp)
        .max_by_key(|g| {
            (
                counts[g.number() as usize],
                Some(*g) == prefer,
                std::cmp::Reverse(g.number()),
            )
        })
}

/// Where the entry value of rdi (tstate) is held at every real target.
pub fn tstate_location(
    listing: &Listing,
    cfg: &Cfg,
    tstate: &HolderAnalysis<'_>,
    real_targets: &[u64],
    body_rsp: i64,
    counts: &[usize; 17],
) -> (Location, String) {
    let mut common: Option<super::holders::Holders> = None;
    for t in real_targets {
        let Some(i) = listing.index_of(*t) else {
            continue;
        };
        let h = tstate
            .block_in(cfg.block_of_insn[i])
            .cloned()
            .unwrap_or_default();
        common = Some(match common {
            None => h,
            Some(c) => super::holders::Holders {
                regs: RegSet(c.regs.0 & h.regs.0),
                slots: c.slots.intersection(&h.slots).copied().collect(),
            },
        });
    }
    let common = common.unwrap_or_default();
    let regs = common.regs.gprs();
    let slots: Vec<i64> = common.slots.iter().map(|k| k - body_rsp).collect();
    let desc = format!(
        "tstate (entry rdi) is held at all {} real targets by registers {:?} and stack slots {:?} (rsp-relative)",
        real_targets.len(),
        regs.iter().map(|g| g.name()).collect::<Vec<_>>(),
        slots
    );
    if let Some(r) = regs
        .iter()
        .copied()
        .max_by_key(|g| counts[g.number() as usize])
    {
        return (Location::Reg(r), desc);
    }
    match slots.first().and_then(|s| i32::try_from(*s).ok()) {
        Some(s) => (Location::Stack(s), desc),
        None => (Location::Unavailable, desc),
    }
}
