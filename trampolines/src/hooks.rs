//! Hook trampolines: optional runtime call, then the displaced instructions.
//!
//! The rewriter replaces the first bytes of a hook point with `jmp hook_i`
//! (padding the rest of the displaced instructions with `int3`). The
//! trampoline preserves every register and the flags, asks the descriptor
//! whether this hook's kind is enabled, calls the runtime if so, then runs
//! the displaced instructions (re-encoded for their new address) and jumps
//! back to the first byte after them:
//!
//! ```text
//! With the flags possibly live at the hook point:
//!
//! ```text
//! hook_i:  lea    rsp, [rsp - 128]
//!          pushfq
//!          test   qword [rip + hooks_enabled], 1 << kind
//!          jz     skip
//!          popfq
//!          push   i
//!          call   hook_common
//!          lea    rsp, [rsp + 8]
//!          jmp    done
//! skip:    popfq
//! done:    lea    rsp, [rsp + 128]
//!          <displaced instructions>
//!          jmp    site_end
//! ```
//!
//! Where the flags are dead (function entries) the gate is just
//! `test; jz skip` around the call, and no `pushfq`/`popfq` is paid.
//!
//! Frame-link hooks may start with an inline fast path (see `hook_fast`)
//! that handles the common call and return and jumps straight to the
//! displaced instructions.

use crate::error::CodegenError;
use crate::hook_fast::{emit_fast, HookFast, HookWords};
use crate::relocate::reencode;
use dynasmrt::{dynasm, x64::X64Relocation, DynasmApi, DynasmLabelApi, VecAssembler};

/// Where the pieces of one emitted hook trampoline are, as offsets into the buffer.
pub struct EmittedHook {
    pub start: usize,
    pub displaced_start: usize,
    pub displaced_len: usize,
}

/// Emit the trampoline of hook `index` for the hook point `address` whose
/// original bytes are `displaced`. `text_base` is the load address of the buffer.
#[allow(clippy::too_many_arguments)]
pub fn emit_hook(
    a: &mut VecAssembler<X64Relocation>,
    text_base: u64,
    index: u32,
    enable_bit: u32,
    flags_live: bool,
    address: u64,
    displaced: &[u8],
    hooks_enabled_word: usize,
    common: dynasmrt::DynamicLabel,
    fast: Option<(HookFast, &HookWords)>,
) -> Result<EmittedHook, CodegenError> {
    if displaced.len() < 5 {
        return Err(CodegenError::HookTooShort {
            address,
            len: displaced.len(),
        });
    }
    let start = a.offset().0;
    let mask = 1i32 << enable_bit;
    let idx = index as i32;
    let done = a.new_dynamic_label();
    if let Some((fast, words)) = fast {
        emit_fast(a, fast, flags_live, words, done);
    }
    if flags_live {
        dynasm!(a
            ; .arch x64
            ; lea rsp, [rsp - 128]
            ; pushfq
            ; test QWORD [extern hooks_enabled_word], mask
            ; jz >skip
            ; popfq
            ; push idx
            ; call =>common
            ; lea rsp, [rsp + 8]
            ; jmp >done
            ; skip:
            ; popfq
            ; done:
            ; lea rsp, [rsp + 128]
        );
    } else {
        dynasm!(a
            ; .arch x64
            ; test QWORD [extern hooks_enabled_word], mask
            ; jz >skip
            ; lea rsp, [rsp - 128]
            ; push idx
            ; call =>common
            ; lea rsp, [rsp + 136]
            ; skip:
        );
    }
    dynasm!(a ; .arch x64 ; =>done);
    let displaced_start = a.offset().0;
    let moved = reencode(address, displaced, text_base + displaced_start as u64)?;
    let displaced_len = moved.len();
    a.extend(moved);
    let resume = (address + displaced.len() as u64) as usize;
    dynasm!(a
        ; .arch x64
        ; jmp extern resume
    );
    Ok(EmittedHook {
        start,
        displaced_start,
        displaced_len,
    })
}
