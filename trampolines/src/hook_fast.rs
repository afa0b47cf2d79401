//! Inline fast paths of the frame-link hooks: the common Python-to-Python
//! call and return handled without calling the runtime.
//!
//! The runtime keeps, per thread, a stack of [`retrace_abi::HotFrame`]
//! records and publishes, for the thread of the last boundary, its top
//! (`stack_top`, `stack_limit`) and the record that holds the thread's
//! activation slot (`slot_record`, SEMANTICS §5.2 `T.slot`; a record with
//! frame 0 when activations must go through the runtime).
//!
//! * `start_frame` of a fresh thread-owned frame `F` whose `previous` is the
//!   slot holder's frame (an inlined call on that very thread), or an entry
//!   frame whose `previous` is (a call from C: no caller fix then): apply the
//!   caller's inlined-call fix (DESIGN-NOTES §4.1: `bias += (last − prev) / 2`,
//!   then `last_n := prev`, `expect := prev + 2`), push a record for `F`
//!   (bias 0, ordinal 0, primed for its first dispatch, `parent` = the slot
//!   holder, flagged [`retrace_abi::HOT_PENDING`]) and make it the slot holder
//!   and the published record. The runtime adopts pending records the next
//!   time it runs for that thread (same effect as its own activation, §5.2).
//! * `_PyEvalFrameClearAndPop` / `_PyThreadState_PopFrame` of the frame of a
//!   pending top record: bump the parent's ordinal (§5.3), pop, and make the
//!   parent the slot holder and the published record; remember the frame in
//!   `last_popped`, so that the `_PyThreadState_PopFrame` call that
//!   `_PyEvalFrameClearAndPop` makes for it is skipped.
//! * `start_frame` of a suspended generator frame `G` resumed inline by the
//!   slot holder (`SEND_GEN`, `FOR_ITER_GEN`, `SEND`'s fast path) or from C
//!   called by it (`next`, `send`, `sum(genexpr)`): `G`'s own
//!   record `R` comes from the runtime's generator table and must be flagged
//!   [`retrace_abi::HOT_GEN_IDLE`] (suspended, not transparent). Same caller
//!   fix; `R` is primed and its ordinal reset, a marker record
//!   (`HOT_PENDING | HOT_GEN`, `persistent` = `R`, `parent` = the slot
//!   holder) is pushed, and `R` becomes the slot holder and the published
//!   record.
//! * a current-frame store on the thread of the last boundary, leaving the
//!   frame of its stack's top record: for a thread frame nothing is needed (a
//!   push is the `start_frame` hook's business, a return or unwind the
//!   `ClearAndPop` hook's, which deactivates it no later than the runtime's
//!   store handling would: no Python code runs in between); for a
//!   generator's marker, a push needs nothing, and its yield, return or
//!   unwind (the new frame is the marker's parent, or an entry frame: back to
//!   the C code that resumed it) deactivates it here when
//!   the marker is still pending (§5.3): the parent's ordinal is bumped, `R`'s
//!   ordinal reset and `R` flagged idle again, the marker popped, the parent
//!   made slot holder and published record.
//!
//! * `_PyEval_EvalFrameDefault` entry: nothing for a fresh thread frame; a
//!   known generator frame is flagged [`retrace_abi::HOT_MEMO_RESET`] (E2).
//!
//! Anything else falls through to the runtime call. The fast paths change no
//! register: mid-function they save the scratch registers (and the flags when
//! live) below the red zone.

use dynasmrt::{dynasm, x64::X64Relocation, DynasmApi, DynasmLabelApi, VecAssembler};
use retrace_abi::{hot, GEN_TABLE_SIZE, HOT_GEN, HOT_GEN_IDLE, HOT_MEMO_RESET, HOT_PENDING};

/// Descriptor words the fast paths use (absolute addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookWords {
    pub cur_record: usize,
    pub slot_record: usize,
    pub stack_top: usize,
    pub stack_limit: usize,
    pub last_tstate: usize,
    pub last_popped: usize,
    pub gen_table: usize,
}

/// Which fast path a hook gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookFast {
    /// Nothing for the runtime to do at this hook: always skip the call
    /// (the entry push of a C-level evaluation, whose value the runtime
    /// cannot read and does not need).
    Pass,
    /// `start_frame`: the new frame is in register `frame` (hardware number).
    StartFrame {
        frame: u8,
        /// `_PyInterpreterFrame` offsets.
        previous: i32,
        prev_instr: i32,
        owner: i32,
    },
    /// Entry of `_PyEval_EvalFrameDefault(tstate, frame, throwflag)`: a fresh
    /// thread frame needs nothing (its record starts empty at `start_frame`);
    /// a generator frame of the table gets [`HOT_MEMO_RESET`] (E2, applied by
    /// the runtime when it next uses the frame's delta memory).
    EvalEntry {
        /// `_PyInterpreterFrame.owner`.
        owner: i32,
    },
    /// Entry of `_PyEvalFrameClearAndPop(tstate, frame)`: frame in `rsi`.
    ClearAndPop,
    /// Entry of `_PyThreadState_PopFrame(tstate, frame)`: like
    /// [`HookFast::ClearAndPop`], and a no-op for the frame
    /// `_PyEvalFrameClearAndPop`'s fast path just popped (it pops the frame's
    /// storage through this function).
    PopFrame,
    /// A store of register `new` to `cframe.current_frame`; the thread state
    /// is at `[rsp + tstate_offset]` of the interrupted code, the frame being
    /// left at `[[tstate + cframe] + current_frame]`.
    CurrentFrameStore {
        new: u8,
        tstate_offset: i32,
        cframe: i32,
        current_frame: i32,
        /// `_PyInterpreterFrame.owner`.
        owner: i32,
    },
}

/// Registers a mid-function fast path may borrow (saved and restored).
const CANDIDATES: [u8; 7] = [0, 1, 2, 8, 9, 10, 11];

/// Four borrowed registers avoiding `keep`.
fn scratch(keep: u8) -> [u8; 4] {
    let mut out = [0u8; 4];
    let mut it = CANDIDATES.iter().copied().filter(|&r| r != keep);
    for slot in &mut out {
        *slot = it.next().unwrap_or(0);
    }
    out
}

/// Emits the fast path; jumps to `done` when it handled the event, falls
/// through (state unchanged) otherwise. `flags_live`: the flags must be kept.
// `Rq(register number)` expands to a conversion clippy finds redundant.
#[allow(clippy::useless_conversion)]
pub fn emit_fast(
    a: &mut VecAssembler<X64Relocation>,
    fast: HookFast,
    flags_live: bool,
    w: &HookWords,
    done: dynasmrt::DynamicLabel,
) {
    let (frame_off, last_n, expect, ord, bias, parent, flags, persistent) = (
        hot::FRAME as i32,
        hot::LAST_N as i32,
        hot::EXPECT as i32,
        hot::ORD as i32,
        hot::BIAS as i32,
        hot::PARENT as i32,
        hot::FLAGS as i32,
        hot::PERSISTENT as i32,
    );
    let size = hot::SIZE as i32;
    let pending = HOT_PENDING as i32;
    let gen_marker = (HOT_PENDING | HOT_GEN) as i32;
    let gen_flag = HOT_GEN as i32;
    let idle = HOT_GEN_IDLE as i32;
    let memo_reset = HOT_MEMO_RESET as i32;
    let not_idle = !(HOT_GEN_IDLE as i32);
    let table_mask = (GEN_TABLE_SIZE - 1) as i32;
    let (cur, slot, top, limit, last_ts, popped, table) = (
        w.cur_record,
        w.slot_record,
        w.stack_top,
        w.stack_limit,
        w.last_tstate,
        w.last_popped,
        w.gen_table,
    );
    match fast {
        HookFast::Pass => {
            dynasm!(a ; .arch x64 ; jmp =>done);
        }
        HookFast::EvalEntry { owner } => {
            // Function entry: rax, rcx, rdx, r8–r11 and the flags are free.
            dynasm!(a
                ; .arch x64
                ; cmp BYTE [rsi + owner], 0
                ; je =>done
                ; cmp BYTE [rsi + owner], 1
                ; jne >fail
                ; mov rax, rsi
                ; shr rax, 4
                ; and rax, table_mask
                ; shl rax, 4
                ; add rax, QWORD [extern table]
                ; cmp rsi, QWORD [rax]
                ; jne >fail
                ; mov rax, QWORD [rax + 8]
                ; cmp rsi, QWORD [rax + frame_off]
                ; jne >fail
                ; or QWORD [rax + flags], memo_reset
                ; jmp =>done
                ; fail:
            );
        }
        HookFast::ClearAndPop | HookFast::PopFrame => {
            // Function entry: rax, rcx, rdx, r8–r11 and the flags are free.
            if fast == HookFast::PopFrame {
                dynasm!(a
                    ; .arch x64
                    ; cmp rsi, QWORD [extern popped]
                    ; jne >pop
                    ; mov QWORD [extern popped], 0
                    ; jmp =>done
                    ; pop:
                );
            }
            dynasm!(a
                ; .arch x64
                ; mov rax, QWORD [extern top]
                ; cmp rsi, QWORD [rax + frame_off]
                ; jne >fail
                ; cmp QWORD [rax + flags], pending
                ; jne >fail
                ; mov rcx, QWORD [rax + parent]
                ; add QWORD [rcx + ord], 1
                ; mov QWORD [rax + frame_off], 0
                ; sub rax, size
                ; mov QWORD [extern top], rax
                ; mov QWORD [extern slot], rcx
                ; mov QWORD [extern cur], rcx
            );
            if fast == HookFast::ClearAndPop {
                dynasm!(a ; .arch x64 ; mov QWORD [extern popped], rsi);
            }
            dynasm!(a ; .arch x64 ; jmp =>done ; fail:);
        }
        HookFast::StartFrame {
            frame: f,
            previous,
            prev_instr,
            owner,
        } => {
            let [r0, r1, r2, r3] = scratch(f);
            save(a, flags_live, &[r0, r1, r2, r3]);
            dynasm!(a
                ; .arch x64
                ; mov Rq(r0), QWORD [extern slot]
                ; mov Rq(r1), QWORD [Rq(f) + previous]
                ; cmp Rq(r1), QWORD [Rq(r0) + frame_off]
                ; je >inl
                // Entered from C: previous is an entry frame whose previous is
                // the slot holder's frame. No caller fix then (r3 = 0).
                ; test Rq(r1), Rq(r1)
                ; jz >fail
                ; cmp BYTE [Rq(r1) + owner], 3
                ; jne >fail
                ; mov Rq(r1), QWORD [Rq(r1) + previous]
                // No Python frame below: a root activation, the runtime's.
                ; test Rq(r1), Rq(r1)
                ; jz >fail
                ; cmp Rq(r1), QWORD [Rq(r0) + frame_off]
                ; jne >fail
                ; xor Rq(r3), Rq(r3)
                ; jmp >room
                ; inl:
                ; mov Rq(r3), QWORD [Rq(r0) + last_n]
                ; and Rq(r3), -2
                ; jz >fail
                ; room:
                ; mov Rq(r2), QWORD [extern top]
                ; add Rq(r2), size
                ; cmp Rq(r2), QWORD [extern limit]
                ; ja >fail
                ; cmp BYTE [Rq(f) + owner], 0
                ; je >thread
                ; cmp BYTE [Rq(f) + owner], 1
                ; jne >fail
                // A generator frame: its record from the table, idle.
                ; mov Rq(r1), Rq(f)
                ; shr Rq(r1), 4
                ; and Rq(r1), table_mask
                ; shl Rq(r1), 4
                ; add Rq(r1), QWORD [extern table]
                ; cmp Rq(f), QWORD [Rq(r1)]
                ; jne >fail
                ; mov Rq(r1), QWORD [Rq(r1) + 8]
                ; cmp Rq(f), QWORD [Rq(r1) + frame_off]
                ; jne >fail
                ; test QWORD [Rq(r1) + flags], idle
                ; jz >fail
                // Committed: the marker, then the record.
                ; mov QWORD [Rq(r2) + frame_off], Rq(f)
                ; mov QWORD [Rq(r2) + parent], Rq(r0)
                ; mov QWORD [Rq(r2) + flags], gen_marker
                ; mov QWORD [Rq(r2) + persistent], Rq(r1)
                ; mov QWORD [extern top], Rq(r2)
                ; and QWORD [Rq(r1) + flags], not_idle
                ; mov Rq(r2), Rq(r1)
                ; jmp >fix
                ; thread:
                // A fresh thread frame: its record on the stack.
                ; mov QWORD [Rq(r2) + frame_off], Rq(f)
                ; mov QWORD [Rq(r2) + bias], 0
                ; mov QWORD [Rq(r2) + parent], Rq(r0)
                ; mov QWORD [Rq(r2) + flags], pending
                ; mov QWORD [extern top], Rq(r2)
                ; fix:
                // r2 = the new frame's record: primed, ordinal 0.
                ; mov Rq(r1), QWORD [Rq(f) + prev_instr]
                ; mov QWORD [Rq(r2) + last_n], Rq(r1)
                ; add Rq(r1), 2
                ; mov QWORD [Rq(r2) + expect], Rq(r1)
                ; mov QWORD [Rq(r2) + ord], 0
                ; mov QWORD [extern slot], Rq(r2)
                ; mov QWORD [extern cur], Rq(r2)
                // The caller's inlined-call fix (inline calls only).
                ; test Rq(r3), Rq(r3)
                ; jz >nofix
                ; mov Rq(r1), QWORD [Rq(f) + previous]
                ; mov Rq(r1), QWORD [Rq(r1) + prev_instr]
                ; sub Rq(r3), Rq(r1)
                ; sar Rq(r3), 1
                ; add QWORD [Rq(r0) + bias], Rq(r3)
                ; mov QWORD [Rq(r0) + last_n], Rq(r1)
                ; add Rq(r1), 2
                ; mov QWORD [Rq(r0) + expect], Rq(r1)
                ; nofix:
            );
            restore(a, flags_live, &[r0, r1, r2, r3]);
            dynasm!(a ; .arch x64 ; jmp =>done ; fail:);
            restore(a, flags_live, &[r0, r1, r2, r3]);
        }
        HookFast::CurrentFrameStore {
            new,
            tstate_offset,
            cframe,
            current_frame,
            owner,
        } => {
            let regs = scratch(new);
            let [r0, r1, r2, r3] = regs;
            save(a, flags_live, &regs);
            // Interrupted rsp = rsp + 128 + saved words.
            let words = regs.len() as i32 + i32::from(flags_live);
            let ts = tstate_offset + 128 + 8 * words;
            dynasm!(a
                ; .arch x64
                ; mov Rq(r0), QWORD [rsp + ts]
                ; cmp Rq(r0), QWORD [extern last_ts]
                ; jne >fail
                // The frame being left must be the stack's top record's.
                ; mov Rq(r0), QWORD [Rq(r0) + cframe]
                ; mov Rq(r0), QWORD [Rq(r0) + current_frame]
                ; mov Rq(r1), QWORD [extern top]
                ; cmp Rq(r0), QWORD [Rq(r1) + frame_off]
                ; jne >fail
                ; mov Rq(r0), QWORD [Rq(r1) + flags]
                // A thread frame: a push is start_frame's business, a return or
                // unwind ClearAndPop's.
                ; test Rq(r0), gen_flag
                ; jz >skip
                // A generator's marker: a push from it needs nothing either.
                ; mov Rq(r2), QWORD [Rq(r1) + parent]
                ; cmp Rq(new), QWORD [Rq(r2) + frame_off]
                ; je >leave
                // Back to C (the entry frame of the evaluation that resumed it).
                ; test Rq(new), Rq(new)
                ; jz >skip
                ; cmp BYTE [Rq(new) + owner], 3
                ; jne >skip
                ; leave:
                // It stops running; only a marker the runtime has not adopted
                // is handled here.
                ; test Rq(r0), pending
                ; jz >fail
                ; add QWORD [Rq(r2) + ord], 1
                ; mov Rq(r3), QWORD [Rq(r1) + persistent]
                ; mov QWORD [Rq(r3) + ord], 0
                ; or QWORD [Rq(r3) + flags], idle
                ; mov QWORD [Rq(r1) + frame_off], 0
                ; sub Rq(r1), size
                ; mov QWORD [extern top], Rq(r1)
                ; mov QWORD [extern slot], Rq(r2)
                ; mov QWORD [extern cur], Rq(r2)
                ; skip:
            );
            restore(a, flags_live, &regs);
            dynasm!(a ; .arch x64 ; jmp =>done ; fail:);
            restore(a, flags_live, &regs);
        }
    }
}

// `Rq(register number)` expands to a conversion clippy finds redundant.
#[allow(clippy::useless_conversion)]
fn save(a: &mut VecAssembler<X64Relocation>, flags_live: bool, regs: &[u8]) {
    dynasm!(a ; .arch x64 ; lea rsp, [rsp - 128]);
    if flags_live {
        dynasm!(a ; .arch x64 ; pushfq);
    }
    for &r in regs {
        dynasm!(a ; .arch x64 ; push Rq(r));
    }
}

// `Rq(register number)` expands to a conversion clippy finds redundant.
#[allow(clippy::useless_conversion)]
fn restore(a: &mut VecAssembler<X64Relocation>, flags_live: bool, regs: &[u8]) {
    for &r in regs.iter().rev() {
        dynasm!(a ; .arch x64 ; pop Rq(r));
    }
    if flags_live {
        dynasm!(a ; .arch x64 ; popfq);
    }
    dynasm!(a ; .arch x64 ; lea rsp, [rsp + 128]);
}
