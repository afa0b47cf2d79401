//! The shared slow-path routine: save everything, call the runtime, restore.
//!
//! Callers reach it with
//!
//! ```text
//!     lea  rsp, [rsp - 128]      ; step over the interrupted code's red zone
//!     push <arg>                 ; opcode or hook index
//!     call <routine>
//!     lea  rsp, [rsp + 136]
//! ```
//!
//! so on entry `[rsp]` is the return address, `[rsp + 8]` the argument and
//! the interrupted code's stack pointer is `rsp + 144`. The routine pushes a
//! [`retrace_abi::SavedRegisters`] block (flags lowest, then rax … r15, with
//! the interrupted `rsp` in slot 4), saves the x87/SSE state with `fxsave`
//! (handlers and hook sites may have live xmm registers), aligns the stack,
//! calls `extern "C" fn(*mut SavedRegisters, u64) -> u64` through a function
//! pointer in the descriptor, and restores everything, including any register
//! values the runtime changed in the block.

use dynasmrt::{dynasm, x64::X64Relocation, DynasmApi, DynasmLabelApi, VecAssembler};

/// Bytes between the routine's entry `rsp` and the interrupted code's `rsp`.
pub const ENTRY_TO_INTERRUPTED_RSP: i32 = 8 + 8 + 128;
/// Size of the pushed register block.
pub const SAVED_BLOCK: i32 = 17 * 8;

/// Emit the routine at the assembler's current offset; it calls through the
/// 8-byte function pointer stored at absolute address `fn_pointer`.
pub fn emit_save_call_restore(a: &mut VecAssembler<X64Relocation>, fn_pointer: usize) {
    dynasm!(a
        ; .arch x64
        ; push r15
        ; push r14
        ; push r13
        ; push r12
        ; push r11
        ; push r10
        ; push r9
        ; push r8
        ; push rdi
        ; push rsi
        ; push rbp
        ; push rsp            // placeholder, fixed below
        ; push rbx
        ; push rdx
        ; push rcx
        ; push rax
        ; pushfq
        // rsp -> SavedRegisters. Slot 4 (rsp) := the interrupted stack pointer.
        ; lea rax, [rsp + SAVED_BLOCK + ENTRY_TO_INTERRUPTED_RSP]
        ; mov [rsp + 8 + 4 * 8], rax
        ; mov rbx, rsp
        ; sub rsp, 512
        ; and rsp, -16
        ; fxsave [rsp]
        ; mov rdi, rbx
        ; mov rsi, [rbx + SAVED_BLOCK + 8]
        ; cld
        ; call QWORD [extern fn_pointer]
        ; fxrstor [rsp]
        ; mov rsp, rbx
        ; popfq
        ; pop rax
        ; pop rcx
        ; pop rdx
        ; pop rbx
        ; lea rsp, [rsp + 8]   // skip the rsp slot
        ; pop rbp
        ; pop rsi
        ; pop rdi
        ; pop r8
        ; pop r9
        ; pop r10
        ; pop r11
        ; pop r12
        ; pop r13
        ; pop r14
        ; pop r15
        ; ret
    );
}
