//! Register sets for the dataflow analyses: the 16 GPRs plus one bit for the flags.
//!
//! iced-x86 names sub-registers (eax, r14d, al …); everything here works on
//! the full 64-bit register ([`Gpr`]) they belong to.

use crate::model::Gpr;
use iced_x86::Register;

/// Bit index of the status flags in a [`RegSet`].
pub const FLAGS_BIT: u32 = 16;

/// A set of GPRs (bits 0–15, hardware numbering) plus the flags (bit 16).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RegSet(pub u32);

impl RegSet {
    pub const EMPTY: RegSet = RegSet(0);
    pub const FLAGS: RegSet = RegSet(1 << FLAGS_BIT);

    pub fn of(regs: &[Gpr]) -> RegSet {
        regs.iter().fold(RegSet::EMPTY, |s, r| s.with(*r))
    }
    pub fn with(self, r: Gpr) -> RegSet {
        RegSet(self.0 | 1 << r.number())
    }
    pub fn without(self, r: Gpr) -> RegSet {
        RegSet(self.0 & !(1 << r.number()))
    }
    pub fn contains(self, r: Gpr) -> bool {
        self.0 & (1 << r.number()) != 0
    }
    pub fn has_flags(self) -> bool {
        self.0 & (1 << FLAGS_BIT) != 0
    }
    pub fn union(self, o: RegSet) -> RegSet {
        RegSet(self.0 | o.0)
    }
    pub fn minus(self, o: RegSet) -> RegSet {
        RegSet(self.0 & !o.0)
    }
    pub fn gprs(self) -> Vec<Gpr> {
        Gpr::ALL
            .iter()
            .copied()
            .filter(|r| self.contains(*r))
            .collect()
    }
}

/// Integer argument registers of the System V AMD64 ABI.
pub const ARG_REGS: [Gpr; 6] = [Gpr::Rdi, Gpr::Rsi, Gpr::Rdx, Gpr::Rcx, Gpr::R8, Gpr::R9];
/// Callee-saved registers (plus rsp) of the System V AMD64 ABI.
pub const CALLEE_SAVED: [Gpr; 7] = [
    Gpr::Rbx,
    Gpr::Rbp,
    Gpr::R12,
    Gpr::R13,
    Gpr::R14,
    Gpr::R15,
    Gpr::Rsp,
];

/// All caller-saved GPRs.
pub fn caller_saved() -> RegSet {
    Gpr::ALL
        .iter()
        .copied()
        .filter(|r| r.is_caller_saved())
        .fold(RegSet::EMPTY, |s, r| s.with(r))
}

/// The full 64-bit GPR an iced register belongs to (None for non-GPRs and rip).
pub fn gpr_of(reg: Register) -> Option<Gpr> {
    if !reg.is_gpr() {
        return None;
    }
    let full = reg.full_register();
    let n = (full as u32).checked_sub(Register::RAX as u32)?;
    if n < 16 {
        Gpr::from_number(n as u8)
    } else {
        None
    }
}

/// The iced 64-bit register for a [`Gpr`].
pub fn iced_of(gpr: Gpr) -> Register {
    const REGS: [Register; 16] = [
        Register::RAX,
        Register::RCX,
        Register::RDX,
        Register::RBX,
        Register::RSP,
        Register::RBP,
        Register::RSI,
        Register::RDI,
        Register::R8,
        Register::R9,
        Register::R10,
        Register::R11,
        Register::R12,
        Register::R13,
        Register::R14,
        Register::R15,
    ];
    REGS[gpr.number() as usize]
}
