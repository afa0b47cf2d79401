//! A machine-code thunk that enters generated code with every register, the
//! flags, `N` stack words and a red-zone pattern set from a context block,
//! and records what the code left behind: the shared harness of the
//! fast-path execution tests (`dispatch_fast_path`, `hook_fast_path`).
//!
//! ```text
//! thunk:   push rbx, rbp, r12, r13, r14, r15
//!          mov  [saved_rsp], rsp
//!          push stack[N-1] … stack[0]
//!          push back                   ; the entered code returns here
//!          mov  [hook_rsp], rsp        ; H
//!          load flags_in; write red_zone_word(k) at [H − 8k], k = 1..=16
//!          load every register but rsp from regs_in
//!          jmp  [target]
//! back:    store every register to regs_out
//!          copy [H − 8k] to red_zone
//!          store the flags to flags_out; restore rsp and the callee-saved; ret
//! ```

use dynasmrt::{dynasm, x64::X64Relocation, DynasmApi, DynasmLabelApi, VecAssembler};
use std::mem::offset_of;

/// Hardware number of rsp.
const RSP: u8 = 4;

/// The thunk's context block; `N` words are pushed above the return address.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ThunkCtx<const N: usize> {
    pub regs_in: [u64; 16],
    pub regs_out: [u64; 16],
    pub flags_in: u64,
    pub flags_out: u64,
    pub target: u64,
    /// `[H + 8 + 8k]` of the entered code.
    pub stack: [u64; N],
    pub saved_rsp: u64,
    /// The entered code's rsp (H).
    pub hook_rsp: u64,
    /// `[H − 8k]` after the code ran, k = 1..=16.
    pub red_zone: [u64; 16],
}

/// The pattern written at `[H − 8k]` before entering.
pub fn red_zone_word(k: usize) -> u64 {
    0x5ed0_0000_0000_0000 | (k as u64 * 0x0101_0101)
}

/// The thunk assembled for `base`, using the context block at `ctx`.
// `Rq(register number)` expands to a conversion clippy finds redundant.
#[allow(clippy::useless_conversion)]
pub fn thunk_bytes<const N: usize>(base: usize, ctx: usize) -> Vec<u8> {
    let at = |off: usize| ctx + off;
    let saved_rsp = at(offset_of!(ThunkCtx<N>, saved_rsp));
    let hook_rsp = at(offset_of!(ThunkCtx<N>, hook_rsp));
    let flags_in = at(offset_of!(ThunkCtx<N>, flags_in));
    let flags_out = at(offset_of!(ThunkCtx<N>, flags_out));
    let target = at(offset_of!(ThunkCtx<N>, target));
    let mut a = VecAssembler::<X64Relocation>::new(base);
    let back = a.new_dynamic_label();
    dynasm!(a
        ; .arch x64
        ; push rbx
        ; push rbp
        ; push r12
        ; push r13
        ; push r14
        ; push r15
        ; mov QWORD [extern saved_rsp], rsp
    );
    for k in (0..N).rev() {
        let w = at(offset_of!(ThunkCtx<N>, stack) + 8 * k);
        dynasm!(a ; .arch x64 ; push QWORD [extern w]);
    }
    dynasm!(a
        ; .arch x64
        ; lea rax, [=>back]
        ; push rax
        ; mov QWORD [extern hook_rsp], rsp
        ; push QWORD [extern flags_in]
        ; popfq
    );
    for k in 1..=16usize {
        let v = red_zone_word(k) as i64;
        let d = -8 * k as i32;
        dynasm!(a ; .arch x64 ; mov rax, QWORD v ; mov QWORD [rsp + d], rax);
    }
    for r in (0u8..16).filter(|&r| r != RSP) {
        let w = at(offset_of!(ThunkCtx<N>, regs_in) + 8 * usize::from(r));
        dynasm!(a ; .arch x64 ; mov Rq(r), QWORD [extern w]);
    }
    dynasm!(a ; .arch x64 ; jmp QWORD [extern target] ; =>back);
    for r in 0u8..16 {
        let w = at(offset_of!(ThunkCtx<N>, regs_out) + 8 * usize::from(r));
        dynasm!(a ; .arch x64 ; mov QWORD [extern w], Rq(r));
    }
    // The red zone relative to H, whether the code came back with `ret`
    // (rsp = H + 8) or with `jmp [rsp]` (rsp = H).
    dynasm!(a ; .arch x64 ; mov rcx, QWORD [extern hook_rsp]);
    for k in 1..=16usize {
        let w = at(offset_of!(ThunkCtx<N>, red_zone) + 8 * (k - 1));
        let d = -8 * k as i32;
        dynasm!(a ; .arch x64 ; mov rax, QWORD [rcx + d] ; mov QWORD [extern w], rax);
    }
    dynasm!(a
        ; .arch x64
        ; pushfq
        ; pop QWORD [extern flags_out]
        ; cld
        ; mov rsp, QWORD [extern saved_rsp]
        ; pop r15
        ; pop r14
        ; pop r13
        ; pop r12
        ; pop rbp
        ; pop rbx
        ; ret
    );
    a.finalize().unwrap()
}
