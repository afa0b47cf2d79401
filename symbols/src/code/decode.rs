//! Linear decoding of whole address ranges into instructions.
//!
//! GCC emits no data in `.text`, so a linear sweep from each range start
//! yields exactly the instructions; every instruction must be valid and end
//! inside its range, which is checked.

use super::error::CodeError;
use super::image::CodeImage;
use crate::model::AddrRange;
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic};
use std::collections::HashMap;

/// Functions that never return: a call to them has no fall-through successor.
/// (C library and CPython `noreturn` functions reached from the eval loop.)
pub const NORETURN_FUNCTIONS: &[&str] = &[
    "__stack_chk_fail",
    "abort",
    "exit",
    "_exit",
    "__assert_fail",
    "__fortify_fail",
    "__longjmp_chk",
    "longjmp",
    "_Py_FatalErrorFunc",
    "_Py_FatalErrorFormat",
    "Py_FatalError",
    "_Py_FatalRefcountErrorFunc",
    "_PyObject_AssertFailed",
    "Py_Exit",
];

/// The decoded instructions of a set of ranges, in address order.
#[derive(Clone, Debug)]
pub struct Listing {
    pub insns: Vec<Instruction>,
    pub ranges: Vec<AddrRange>,
    index: HashMap<u64, usize>,
}

impl Listing {
    /// Decodes every range linearly.
    pub fn decode(image: &CodeImage<'_>, ranges: &[AddrRange]) -> Result<Listing, CodeError> {
        if ranges.is_empty() {
            return Err(CodeError::NoRanges);
        }
        let mut ranges = ranges.to_vec();
        ranges.sort();
        let mut insns = Vec::new();
        for r in &ranges {
            let bytes = image
                .bytes(r.start, r.end)
                .ok_or(CodeError::NotMapped(r.start))?;
            let mut decoder = Decoder::with_ip(64, bytes, r.start, DecoderOptions::NONE);
            while decoder.can_decode() {
                let instr = decoder.decode();
                if instr.is_invalid() {
                    return Err(CodeError::InvalidInstruction(instr.ip()));
                }
                if instr.next_ip() > r.end {
                    return Err(CodeError::CrossesRange {
                        addr: instr.ip(),
                        end: r.end,
                    });
                }
                insns.push(instr);
            }
        }
        let index = insns.iter().enumerate().map(|(i, x)| (x.ip(), i)).collect();
        Ok(Listing {
            insns,
            ranges,
            index,
        })
    }

    /// Index of the instruction starting at `addr`.
    pub fn index_of(&self, addr: u64) -> Option<usize> {
        self.index.get(&addr).copied()
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.ranges.iter().any(|r| r.contains(addr))
    }

    /// Whether instruction `i + 1` directly follows instruction `i` in memory.
    pub fn falls_into_next(&self, i: usize) -> bool {
        self.insns
            .get(i + 1)
            .is_some_and(|n| n.ip() == self.insns[i].next_ip())
    }
}

/// Whether `instr` is a direct call to a function that never returns.
pub fn is_noreturn_call(image: &CodeImage<'_>, instr: &Instruction) -> bool {
    if instr.flow_control() != FlowControl::Call {
        return false;
    }
    let Some(name) = image.name_at(instr.near_branch_target()) else {
        return false;
    };
    let base = name.strip_suffix("@plt").unwrap_or(name);
    NORETURN_FUNCTIONS.contains(&base)
}

/// Whether `instr` is alignment padding.
pub fn is_nop(instr: &Instruction) -> bool {
    matches!(instr.mnemonic(), Mnemonic::Nop)
        || (instr.mnemonic() == Mnemonic::Xchg
            && instr.op_count() == 2
            && instr.op0_kind() == iced_x86::OpKind::Register
            && instr.op1_kind() == iced_x86::OpKind::Register
            && instr.op0_register() == instr.op1_register())
}

/// Whether control never continues to the next instruction after `instr`.
pub fn ends_flow(image: &CodeImage<'_>, instr: &Instruction) -> bool {
    match instr.flow_control() {
        FlowControl::UnconditionalBranch | FlowControl::IndirectBranch | FlowControl::Return => {
            true
        }
        FlowControl::Exception => true,
        FlowControl::Interrupt => instr.mnemonic() == Mnemonic::Int3,
        FlowControl::Call => is_noreturn_call(image, instr),
        _ => false,
    }
}
