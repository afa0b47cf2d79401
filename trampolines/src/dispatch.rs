//! Per-opcode dispatch stubs: the code every redirected bytecode dispatch runs.
//!
//! Fast path (no call into Rust): count the dispatch, test the runtime's
//! slow-path word, jump to the original handler. Only the flags are written,
//! which the analysis proved dead at every handler entry; no register is
//! touched, so the handler sees exactly the state the dispatch jump left.
//!
//! ```text
//! stub_k:  add  qword [rip + dispatch_counts + 8k], 1
//!          cmp  qword [rip + slow_path], 0
//!          jne  slow_k
//!          jmp  handler_k
//! slow_k:  lea  rsp, [rsp - 128]
//!          push k
//!          call dispatch_common          ; see `common`
//!          lea  rsp, [rsp + 136]
//!          jmp  handler_k
//! ```

use dynasmrt::{dynasm, x64::X64Relocation, DynasmApi, DynasmLabelApi, VecAssembler};

/// Emit the stub for `opcode` whose original handler is at `handler`.
/// Returns nothing; the caller records `a.offset()` before calling.
pub fn emit_stub(
    a: &mut VecAssembler<X64Relocation>,
    opcode: u8,
    handler: usize,
    counter: usize,
    slow_path_word: usize,
    common: dynasmrt::DynamicLabel,
) {
    let k = opcode as i32;
    dynasm!(a
        ; .arch x64
        ; add QWORD [extern counter], 1
        ; cmp QWORD [extern slow_path_word], 0
        ; jne >slow
        ; jmp extern handler
        ; slow:
        ; lea rsp, [rsp - 128]
        ; push k
        ; call =>common
        ; lea rsp, [rsp + 136]
        ; jmp extern handler
    );
}
