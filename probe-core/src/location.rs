//! Decoding the descriptor's variable locations and reading eval-loop
//! variables (frame, next_instr, tstate, …) out of a trampoline's saved registers.

use retrace_abi::{SavedRegisters, VarLocation, LOC_NONE, LOC_REG, LOC_STACK};

/// Index of `rsp` in [`SavedRegisters::gpr`].
const RSP: usize = 4;

/// Where an eval-loop variable lives when a trampoline interrupts the eval loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// In a general-purpose register (hardware number 0..16).
    Reg(u8),
    /// In memory at `[rsp + offset]` of the interrupted code.
    Stack(i32),
    /// Not held anywhere.
    Unavailable,
}

/// A [`VarLocation`] the runtime cannot interpret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("unknown location kind {0}")]
    UnknownKind(u32),
    #[error("register number {0} is not in 0..16")]
    BadRegister(i32),
}

/// Reads 8 bytes of process memory; a trait so that decoding is testable.
pub trait Memory {
    fn read_u64(&self, address: u64) -> Option<u64>;
}

/// The interrupted thread's own stack, read directly.
#[derive(Clone, Copy, Debug, Default)]
pub struct LiveStack;

impl Memory for LiveStack {
    fn read_u64(&self, address: u64) -> Option<u64> {
        if address == 0 {
            return None;
        }
        // SAFETY: callers only pass `[rsp + offset]` of the eval function that a
        // trampoline interrupted, with the offset the rewriter derived for a
        // variable spilled in that function's fixed stack frame; the frame is
        // mapped and live while the trampoline (and thus this call) runs.
        Some(unsafe { std::ptr::read_unaligned(address as usize as *const u64) })
    }
}

impl Location {
    /// Interprets one descriptor entry.
    pub fn decode(raw: VarLocation) -> Result<Location, LocationError> {
        match raw.kind {
            LOC_NONE => Ok(Location::Unavailable),
            LOC_REG => match u8::try_from(raw.value) {
                Ok(n) if n < 16 => Ok(Location::Reg(n)),
                _ => Err(LocationError::BadRegister(raw.value)),
            },
            LOC_STACK => Ok(Location::Stack(raw.value)),
            other => Err(LocationError::UnknownKind(other)),
        }
    }

    /// The variable's value at the interruption point, if it is held anywhere.
    pub fn read(self, regs: &SavedRegisters, memory: &impl Memory) -> Option<u64> {
        match self {
            Location::Reg(n) => regs.gpr.get(usize::from(n)).copied(),
            Location::Stack(offset) => {
                memory.read_u64(regs.gpr[RSP].wrapping_add_signed(i64::from(offset)))
            }
            Location::Unavailable => None,
        }
    }
}

/// The register layout of the eval loop, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub frame: Location,
    pub next_instr: Location,
    pub stack_pointer: Location,
    pub oparg: Location,
    pub opcode: Location,
    pub tstate: Location,
}

impl Layout {
    pub fn decode(raw: &retrace_abi::RegisterLayout) -> Result<Layout, LocationError> {
        Ok(Layout {
            frame: Location::decode(raw.frame)?,
            next_instr: Location::decode(raw.next_instr)?,
            stack_pointer: Location::decode(raw.stack_pointer)?,
            oparg: Location::decode(raw.oparg)?,
            opcode: Location::decode(raw.opcode)?,
            tstate: Location::decode(raw.tstate)?,
        })
    }

    /// `(name, location)` for every variable, in a fixed order.
    pub fn entries(&self) -> [(&'static str, Location); 6] {
        [
            ("frame", self.frame),
            ("next_instr", self.next_instr),
            ("stack_pointer", self.stack_pointer),
            ("oparg", self.oparg),
            ("opcode", self.opcode),
            ("tstate", self.tstate),
        ]
    }
}

/// Name of a hardware register number.
pub fn register_name(n: u8) -> &'static str {
    const NAMES: [&str; 16] = [
        "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15",
    ];
    NAMES.get(usize::from(n)).copied().unwrap_or("?")
}

/// Memory backed by a map, for tests of code that reads the interrupted stack.
#[cfg(test)]
pub(crate) struct FakeMemory(pub(crate) std::collections::HashMap<u64, u64>);

#[cfg(test)]
impl Memory for FakeMemory {
    fn read_u64(&self, address: u64) -> Option<u64> {
        self.0.get(&address).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn loc(kind: u32, value: i32) -> VarLocation {
        VarLocation { kind, value }
    }

    #[test]
    fn decodes_every_kind() {
        assert_eq!(
            Location::decode(loc(LOC_NONE, 7)),
            Ok(Location::Unavailable)
        );
        assert_eq!(Location::decode(loc(LOC_REG, 15)), Ok(Location::Reg(15)));
        assert_eq!(
            Location::decode(loc(LOC_STACK, -376)),
            Ok(Location::Stack(-376))
        );
        assert_eq!(
            Location::decode(loc(LOC_REG, 16)),
            Err(LocationError::BadRegister(16))
        );
        assert_eq!(
            Location::decode(loc(LOC_REG, -1)),
            Err(LocationError::BadRegister(-1))
        );
        assert_eq!(
            Location::decode(loc(9, 0)),
            Err(LocationError::UnknownKind(9))
        );
    }

    #[test]
    fn reads_the_312_layout() {
        // 3.12.1: frame = rbx, next_instr = r10, tstate = [rsp+8].
        let raw = retrace_abi::RegisterLayout {
            frame: loc(LOC_REG, 3),
            next_instr: loc(LOC_REG, 10),
            stack_pointer: loc(LOC_REG, 15),
            oparg: loc(LOC_REG, 14),
            opcode: loc(LOC_REG, 13),
            tstate: loc(LOC_STACK, 8),
        };
        let layout = Layout::decode(&raw).expect("valid layout");
        let mut regs = SavedRegisters::default();
        regs.gpr[3] = 0x1000;
        regs.gpr[10] = 0x2002;
        regs.gpr[4] = 0x7ff0;
        let memory = FakeMemory(HashMap::from([(0x7ff8, 0xabcd)]));
        assert_eq!(layout.frame.read(&regs, &memory), Some(0x1000));
        assert_eq!(layout.next_instr.read(&regs, &memory), Some(0x2002));
        assert_eq!(layout.tstate.read(&regs, &memory), Some(0xabcd));
        assert_eq!(Location::Stack(16).read(&regs, &memory), None);
        assert_eq!(Location::Unavailable.read(&regs, &memory), None);
        assert_eq!(layout.entries()[5], ("tstate", Location::Stack(8)));
    }

    #[test]
    fn negative_stack_offsets_wrap_correctly() {
        let mut regs = SavedRegisters::default();
        regs.gpr[4] = 0x1000;
        let memory = FakeMemory(HashMap::from([(0x1000 - 376, 5)]));
        assert_eq!(Location::Stack(-376).read(&regs, &memory), Some(5));
    }

    #[test]
    fn live_stack_reads_real_memory() {
        let cell: u64 = 0x1122_3344_5566_7788;
        let mut regs = SavedRegisters::default();
        regs.gpr[4] = (&cell as *const u64 as u64) - 8;
        assert_eq!(Location::Stack(8).read(&regs, &LiveStack), Some(cell));
        assert_eq!(LiveStack.read_u64(0), None);
    }

    #[test]
    fn register_names() {
        assert_eq!(register_name(3), "rbx");
        assert_eq!(register_name(15), "r15");
        assert_eq!(register_name(16), "?");
    }
}
