//! Why code generation can fail.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CodegenError {
    #[error("the flags register is live at a handler entry; dispatch stubs would clobber it")]
    FlagsLive,
    #[error("assembler error: {0}")]
    Assembler(String),
    #[error("cannot decode the displaced instructions at {address:#x}: {reason}")]
    Decode { address: u64, reason: String },
    #[error("displaced instruction at {address:#x} is a branch ({text}); it cannot be moved")]
    DisplacedBranch { address: u64, text: String },
    #[error(
        "cannot re-encode the displaced instructions of {address:#x} at {new_address:#x}: {reason}"
    )]
    Reencode {
        address: u64,
        new_address: u64,
        reason: String,
    },
    #[error("hook point at {address:#x} displaces only {len} bytes; a jump needs 5")]
    HookTooShort { address: u64, len: usize },
    #[error("{0} hooks requested, the descriptor has room for {1}")]
    TooManyHooks(usize, usize),
}
