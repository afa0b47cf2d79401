//! An independent decoder (capstone) for checking what we emit.
//!
//! Code generation uses dynasmrt and iced-x86; verification decodes the
//! result with capstone so that a bug shared by our encoder and our decoder
//! cannot hide itself.

use capstone::arch::x86::{ArchMode, X86OperandType, X86Reg};
use capstone::arch::{BuildsCapstone, DetailsArchInsn};
use capstone::{Capstone, RegId};

/// One instruction as capstone sees it, with resolved targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub address: u64,
    pub len: usize,
    pub mnemonic: String,
    pub op_str: String,
    /// Absolute address of a RIP-relative memory operand.
    pub rip_target: Option<u64>,
    /// Immediate operand (branch target for jumps and calls).
    pub imm: Option<i64>,
}

impl Decoded {
    /// Operand text with any RIP-relative expression replaced by its absolute target,
    /// so the same instruction at two addresses compares equal.
    pub fn normalised(&self) -> String {
        match (self.rip_target, self.op_str.find("[rip")) {
            (Some(t), Some(start)) => {
                let end = self.op_str[start..]
                    .find(']')
                    .map(|e| start + e + 1)
                    .unwrap_or(self.op_str.len());
                format!(
                    "{} {}[{t:#x}]{}",
                    self.mnemonic,
                    &self.op_str[..start],
                    &self.op_str[end..]
                )
            }
            _ => format!("{} {}", self.mnemonic, self.op_str),
        }
    }
}

pub struct CrossDecoder {
    cs: Capstone,
}

impl CrossDecoder {
    pub fn new() -> Result<Self, String> {
        let cs = Capstone::new()
            .x86()
            .mode(ArchMode::Mode64)
            .detail(true)
            .build()
            .map_err(|e| format!("capstone: {e}"))?;
        Ok(CrossDecoder { cs })
    }

    /// Decode `bytes` at `address`; fails unless every byte decodes.
    pub fn decode(&self, bytes: &[u8], address: u64) -> Result<Vec<Decoded>, String> {
        let insns = self
            .cs
            .disasm_all(bytes, address)
            .map_err(|e| format!("capstone at {address:#x}: {e}"))?;
        let rip = RegId(X86Reg::X86_REG_RIP as u16);
        let mut out = Vec::new();
        let mut total = 0usize;
        for insn in insns.iter() {
            let detail = self
                .cs
                .insn_detail(insn)
                .map_err(|e| format!("capstone detail at {:#x}: {e}", insn.address()))?;
            let mut rip_target = None;
            let mut imm = None;
            if let Some(x86) = detail.arch_detail().x86() {
                for op in x86.operands() {
                    match op.op_type {
                        X86OperandType::Mem(m) if m.base() == rip => {
                            rip_target =
                                Some((insn.address() as i64 + insn.len() as i64 + m.disp()) as u64);
                        }
                        X86OperandType::Imm(v) => imm = Some(v),
                        _ => {}
                    }
                }
            }
            total += insn.len();
            out.push(Decoded {
                address: insn.address(),
                len: insn.len(),
                mnemonic: insn.mnemonic().unwrap_or("").to_string(),
                op_str: insn.op_str().unwrap_or("").to_string(),
                rip_target,
                imm,
            });
        }
        if total != bytes.len() {
            return Err(format!(
                "capstone decoded only {total} of {} bytes at {address:#x}",
                bytes.len()
            ));
        }
        Ok(out)
    }
}
