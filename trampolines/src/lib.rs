//! Machine-code generation for a rewritten libpython.
//!
//! Given where the new text and data sections will live and what the analysis
//! found, this crate emits (with `dynasmrt`) the code of the new executable
//! section:
//!
//! * [`common`]: the two shared slow-path routines that save the complete
//!   register state, call into the runtime and restore it;
//! * [`dispatch`]: one stub per redirected opcode, with the inline fast path
//!   that every bytecode dispatch runs;
//! * [`hooks`]: one trampoline per hook site, running the displaced original
//!   instructions ([`relocate`]) after the optional runtime call;
//! * [`detour`]: function entries diverted to a runtime replacement, with a
//!   callable copy of the original.
//!
//! The result ([`Program`]) says where everything landed so the ELF emitter can
//! point table slots and patched sites at it and the verifier can check it.

pub mod common;
pub mod detour;
pub mod dispatch;
pub mod error;
pub mod hook_fast;
pub mod hooks;
pub mod program;
pub mod relocate;

pub use error::CodegenError;
pub use hook_fast::HookFast;
pub use program::{
    generate, DispatchRegisters, HookRequest, HookTrampoline, Program, ProgramInput, Stub,
    StubRequest,
};
