//! Moving the instructions a hook jump displaces into its trampoline.
//!
//! The displaced bytes are decoded with iced-x86 at their original address
//! and re-encoded at the trampoline address with iced's `BlockEncoder`, which
//! rewrites RIP-relative memory operands so they still reach the same
//! absolute address. Branches are refused: the analysis only proposes hook
//! points made of straight-line instructions.

use crate::error::CodegenError;
use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Decoder, DecoderOptions, FlowControl, Instruction,
    InstructionBlock,
};

/// Decode `bytes` (located at `address`) into whole instructions, whatever they are.
pub fn decode_whole(address: u64, bytes: &[u8]) -> Result<Vec<Instruction>, CodegenError> {
    let mut decoder = Decoder::with_ip(64, bytes, address, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let ins = decoder.decode();
        if ins.is_invalid() {
            return Err(CodegenError::Decode {
                address: ins.ip(),
                reason: "invalid instruction".into(),
            });
        }
        out.push(ins);
    }
    if decoder.position() != bytes.len() {
        return Err(CodegenError::Decode {
            address,
            reason: "bytes do not end on an instruction boundary".into(),
        });
    }
    Ok(out)
}

/// Decode `bytes` (located at `address`) into whole instructions, refusing branches.
pub fn decode_displaced(address: u64, bytes: &[u8]) -> Result<Vec<Instruction>, CodegenError> {
    let out = decode_whole(address, bytes)?;
    if let Some(ins) = out.iter().find(|i| i.flow_control() != FlowControl::Next) {
        return Err(CodegenError::DisplacedBranch {
            address: ins.ip(),
            text: format!("{ins}"),
        });
    }
    Ok(out)
}

/// Encode `instructions` (decoded at `address`) to run at `new_address`,
/// keeping RIP-relative operands and branch targets absolute.
pub fn encode_at(
    instructions: &[Instruction],
    address: u64,
    new_address: u64,
) -> Result<Vec<u8>, CodegenError> {
    let block = InstructionBlock::new(instructions, new_address);
    let result = BlockEncoder::encode(64, block, BlockEncoderOptions::NONE).map_err(|e| {
        CodegenError::Reencode {
            address,
            new_address,
            reason: e.to_string(),
        }
    })?;
    Ok(result.code_buffer)
}

/// Re-encode the displaced instructions of `address` so they run at `new_address`.
pub fn reencode(address: u64, bytes: &[u8], new_address: u64) -> Result<Vec<u8>, CodegenError> {
    encode_at(&decode_displaced(address, bytes)?, address, new_address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rip_relative_lea_keeps_its_absolute_target() {
        // 3.12.1 start_frame: lea rdi, [rip + 0x3c3080] at 0x10be99 -> 0x4cef20.
        let bytes = [0x48, 0x8d, 0x3d, 0x80, 0x30, 0x3c, 0x00];
        let moved = reencode(0x10be99, &bytes, 0x800_0000).unwrap();
        let ins = decode_displaced(0x800_0000, &moved).unwrap();
        assert_eq!(ins.len(), 1);
        assert_eq!(ins[0].ip_rel_memory_address(), 0x4cef20);
    }

    #[test]
    fn branches_are_refused() {
        // jmp rel32
        let err = reencode(0x1000, &[0xe9, 0, 0, 0, 0], 0x2000).unwrap_err();
        assert!(matches!(err, CodegenError::DisplacedBranch { .. }));
    }

    #[test]
    fn partial_instruction_is_refused() {
        // mov rax, [rbx+0x10] cut after 3 bytes
        let err = decode_displaced(0x1000, &[0x48, 0x8b, 0x43]).unwrap_err();
        assert!(matches!(err, CodegenError::Decode { .. }));
    }
}
