//! Per-opcode dispatch stubs: the code every redirected bytecode dispatch runs.
//!
//! The fast path keeps the coordinate state of the executing frame current
//! without calling into Rust (SEMANTICS §4, DESIGN-NOTES §4). The runtime
//! publishes `cur_record`, the [`retrace_abi::HotFrame`] of the frame that
//! executed the last boundary; a stub may handle a dispatch alone when
//!
//! * the record's `frame` is the dispatching frame (so the thread did not
//!   change either: a frame runs on one thread at a time), and
//! * the record's `last_n` is the frame's `prev_instr` (`Q`): nothing but
//!   this stub family moved the frame since the last boundary.
//!
//! It then classifies `Q → N` exactly as the runtime would (rules R0–R3):
//! `N == expect` (the natural successor of `Q`, stored by the previous stub),
//! `N == Q` (re-dispatch) and `N == Q + 1` (one code unit, 2 bytes) leave the
//! bias alone; anything else
//! is a jump, `bias += (Q + 2 − N) / 2` in code units. The stub then records
//! `N` and its own natural successor and resets the ordinal (harmless for
//! invisible frames, whose ordinal nobody reads and no child bumps).
//! Everything else goes to the runtime through the slow path, which counts
//! the dispatch and calls `rt_dispatch` with every register saved.
//!
//! ```text
//! stub_k:  mov  S0, [rip + cur_record]
//!          cmp  FRAME, [S0 + frame]
//!          jne  slow
//!          mov  S1, [FRAME + prev_instr]          ; Q
//!          cmp  S1, [S0 + last_n]
//!          jne  slow
//!          cmp  NEXT, [S0 + expect]
//!          jne  infer
//! hit:     mov  [S0 + last_n], NEXT               ; NEXT | 1 for SEND: runtime classifies the next
//!          lea  S1, [NEXT + width_k]
//!          mov  [S0 + expect], S1
//!          mov  qword [S0 + ord], 0
//!          jmp  handler_k
//! infer:   cmp  NEXT, S1 ; je hit                 ; R0
//!          add  S1, 2 ; cmp NEXT, S1 ; je hit     ; R1
//!          sub  S1, NEXT ; sar S1, 1
//!          add  [S0 + bias], S1                   ; R3
//!          jmp  hit
//! slow:    add  qword [rip + dispatch_counts + 8k], 1
//!          lea  rsp, [rsp - 128]
//!          push k
//!          call dispatch_common                  ; see `common`
//!          lea  rsp, [rsp + 136]
//!          cmp  qword [rip + raise_pending], 0    ; a callback raised (only
//!          jne  raise                             ; with a raise entry)
//!          jmp  handler_k
//! raise:   mov  qword [rip + raise_pending], 0    ; shared by all stubs
//!          jmp  raise_entry                       ; `mov rbp, [frame + prev_instr]`
//!                                                 ; → resume_with_error → error
//! ```
//!
//! The runtime sets `raise_pending` only after writing the frame's
//! `prev_instr` (the instruction of this boundary) and `stacktop`, with the
//! exception set: the error path then unwinds exactly as if that instruction
//! had raised (SEMANTICS §14.6).
//!
//! `S0`/`S1` are registers the analysis proved dead at every handler entry,
//! as are the flags; `FRAME`/`NEXT` hold the frame and `next_instr`.
//!
//! `INTERPRETER_EXIT`, dispatched only by the record-less entry frame of a
//! C-level evaluation, gets a stub of its own: `mov S0, [rsp + tstate];
//! cmp S0, [rip + last_tstate]; jne slow; jmp handler` (the runtime is needed
//! only for a thread change).

use dynasmrt::{dynasm, x64::X64Relocation, DynasmApi, DynasmLabelApi, VecAssembler};
use retrace_abi::hot;

/// The registers and offsets every fast path uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastPath {
    /// Hardware number of the register holding the frame at handler entry.
    pub frame: u8,
    /// Hardware number of the register holding `next_instr`.
    pub next_instr: u8,
    /// Two scratch registers dead at every handler entry.
    pub scratch: [u8; 2],
    /// Offset of `prev_instr` in `_PyInterpreterFrame`.
    pub prev_instr: i32,
    /// Address of the descriptor's `cur_record` word.
    pub cur_record: usize,
    /// Address of the descriptor's `last_tstate` word, and where the thread
    /// state is at handler entry (`[rsp + offset]`), for the entry-frame stub.
    pub last_tstate: usize,
    pub tstate_offset: Option<i32>,
    /// The shared raise block and the address of `raise_pending`: after the
    /// runtime returns, a set `raise_pending` sends the stub there instead of
    /// to the handler.
    pub raise: Option<(dynasmrt::DynamicLabel, usize)>,
}

/// What one opcode's stub needs to know about its instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StubShape {
    pub opcode: u8,
    /// Bytes from the instruction to its natural successor.
    pub width: u8,
    /// After this instruction the runtime classifies the next dispatch (SEND).
    pub classify_next: bool,
    /// `INTERPRETER_EXIT`: only ever dispatched by a C-level evaluation's entry
    /// frame, which has no record and is never visible (§5.1, §6). Its
    /// boundary needs the runtime only when the thread changed (§7
    /// `last_thread`); the stub compares the thread state with `last_tstate`.
    pub entry_exit: bool,
}

/// Emit the stub for `shape.opcode` whose original handler is at `handler`.
// `Rq(register number)` expands to a conversion clippy finds redundant.
#[allow(clippy::useless_conversion)]
pub fn emit_stub(
    a: &mut VecAssembler<X64Relocation>,
    fast: &FastPath,
    shape: StubShape,
    handler: usize,
    counter: usize,
    common: dynasmrt::DynamicLabel,
) {
    let k = i32::from(shape.opcode);
    let (f, n, s0, s1) = (
        fast.frame,
        fast.next_instr,
        fast.scratch[0],
        fast.scratch[1],
    );
    let (frame_off, expect, last_n, ord, bias) = (
        hot::FRAME as i32,
        hot::EXPECT as i32,
        hot::LAST_N as i32,
        hot::ORD as i32,
        hot::BIAS as i32,
    );
    let width = i32::from(shape.width);
    let prev = fast.prev_instr;
    let cur = fast.cur_record;
    if let (true, Some(ts)) = (shape.entry_exit, fast.tstate_offset) {
        let last_ts = fast.last_tstate;
        dynasm!(a
            ; .arch x64
            ; mov Rq(s0), QWORD [rsp + ts]
            ; cmp Rq(s0), QWORD [extern last_ts]
            ; jne >slow
            ; jmp extern handler
            ; slow:
            ; add QWORD [extern counter], 1
            ; lea rsp, [rsp - 128]
            ; push k
            ; call =>common
            ; lea rsp, [rsp + 136]
            ; jmp extern handler
        );
        return;
    }
    dynasm!(a
        ; .arch x64
        ; mov Rq(s0), QWORD [extern cur]
        ; cmp Rq(f), QWORD [Rq(s0) + frame_off]
        ; jne >slow
        ; mov Rq(s1), QWORD [Rq(f) + prev]
        ; cmp Rq(s1), QWORD [Rq(s0) + last_n]
        ; jne >slow
        ; cmp Rq(n), QWORD [Rq(s0) + expect]
        ; jne >infer
        ; hit:
    );
    if shape.classify_next {
        dynasm!(a
            ; .arch x64
            ; lea Rq(s1), [Rq(n) + 1]
            ; mov QWORD [Rq(s0) + last_n], Rq(s1)
        );
    } else {
        dynasm!(a ; .arch x64 ; mov QWORD [Rq(s0) + last_n], Rq(n));
    }
    dynasm!(a
        ; .arch x64
        ; lea Rq(s1), [Rq(n) + width]
        ; mov QWORD [Rq(s0) + expect], Rq(s1)
        ; mov QWORD [Rq(s0) + ord], 0
        ; jmp extern handler
        ; infer:
        ; cmp Rq(n), Rq(s1)
        ; je <hit
        ; add Rq(s1), 2
        ; cmp Rq(n), Rq(s1)
        ; je <hit
        ; sub Rq(s1), Rq(n)
        ; sar Rq(s1), 1
        ; add QWORD [Rq(s0) + bias], Rq(s1)
        ; jmp <hit
        ; slow:
        ; add QWORD [extern counter], 1
        ; lea rsp, [rsp - 128]
        ; push k
        ; call =>common
        ; lea rsp, [rsp + 136]
    );
    if let Some((raise, pending)) = fast.raise {
        dynasm!(a
            ; .arch x64
            ; cmp QWORD [extern pending], 0
            ; jne =>raise
        );
    }
    dynasm!(a
        ; .arch x64
        ; jmp extern handler
    );
}
