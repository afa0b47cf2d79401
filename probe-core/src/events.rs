//! What the runtime does on each event: a slow-path dispatch or a hook.
//!
//! Pure logic over [`SideTables`], the decoded register layout and the saved
//! registers, so it can be tested without a rewritten interpreter.

use crate::descriptor::Hook;
use crate::location::{Layout, Memory};
use crate::tables::SideTables;
use retrace_abi::{HookKind, SavedRegisters};

/// SysV argument registers (hardware numbers).
const RDI: usize = 7;
const RSI: usize = 6;

/// Every hook kind, in ABI order.
pub const ALL_KINDS: [HookKind; 8] = [
    HookKind::EvalEntry,
    HookKind::StartFrame,
    HookKind::ThrowEntry,
    HookKind::EvalBreaker,
    HookKind::CurrentFrameStore,
    HookKind::FrameClearAndPop,
    HookKind::ThreadStatePopFrame,
    HookKind::FrameCopy,
];

/// The name `_retrace._hook_counts()` reports for a kind.
pub fn kind_name(kind: HookKind) -> &'static str {
    match kind {
        HookKind::EvalEntry => "eval_entry",
        HookKind::StartFrame => "start_frame",
        HookKind::ThrowEntry => "throw_entry",
        HookKind::EvalBreaker => "eval_breaker",
        HookKind::CurrentFrameStore => "current_frame_store",
        HookKind::FrameClearAndPop => "frame_clear_and_pop",
        HookKind::ThreadStatePopFrame => "thread_state_pop_frame",
        HookKind::FrameCopy => "frame_copy",
    }
}

fn arg_register(regs: &SavedRegisters, arg: u32) -> Option<u64> {
    regs.gpr.get(usize::try_from(arg).ok()?).copied()
}

/// A slow-path dispatch: record the thread's position.
pub fn on_dispatch(
    tables: &mut SideTables,
    layout: &Layout,
    regs: &SavedRegisters,
    memory: &impl Memory,
) {
    let Some(tstate) = layout.tstate.read(regs, memory).filter(|&t| t != 0) else {
        return;
    };
    let frame = layout.frame.read(regs, memory);
    let next_instr = layout.next_instr.read(regs, memory);
    let thread = tables.threads.get_or_insert(tstate);
    thread.slow_dispatches += 1;
    if let Some(frame) = frame {
        thread.current_frame = frame;
    }
    if let Some(next_instr) = next_instr {
        thread.last_next_instr = next_instr;
    }
}

/// A hook fired: update the side tables according to its kind.
pub fn on_hook(
    tables: &mut SideTables,
    layout: &Layout,
    hook: &Hook,
    kind: HookKind,
    regs: &SavedRegisters,
    memory: &impl Memory,
) {
    let tstate_in_loop = || layout.tstate.read(regs, memory).filter(|&t| t != 0);
    match kind {
        HookKind::EvalEntry => {
            // _PyEval_EvalFrameDefault(tstate, frame, throwflag)
            let (tstate, frame) = (regs.gpr[RDI], regs.gpr[RSI]);
            if tstate != 0 {
                let thread = tables.threads.get_or_insert(tstate);
                thread.eval_entries += 1;
                thread.current_frame = frame;
            }
        }
        HookKind::StartFrame | HookKind::ThrowEntry => {
            let (Some(frame), Some(tstate)) = (arg_register(regs, hook.arg), tstate_in_loop())
            else {
                return;
            };
            if frame == 0 {
                return;
            }
            tables.frames.activate(frame, tstate);
            tables.threads.get_or_insert(tstate).current_frame = frame;
        }
        HookKind::EvalBreaker => {
            if let (Some(frame), Some(tstate)) = (arg_register(regs, hook.arg), tstate_in_loop()) {
                tables.threads.get_or_insert(tstate).current_frame = frame;
            }
        }
        HookKind::CurrentFrameStore => {
            if let (Some(new), Some(tstate)) = (arg_register(regs, hook.arg), tstate_in_loop()) {
                tables.threads.get_or_insert(tstate).current_frame = new;
            }
        }
        HookKind::FrameClearAndPop | HookKind::ThreadStatePopFrame => {
            // _PyEvalFrameClearAndPop(tstate, frame) / _PyThreadState_PopFrame(tstate, frame)
            let (tstate, frame) = (regs.gpr[RDI], regs.gpr[RSI]);
            tables.frames.remove(frame);
            if tstate != 0 {
                tables.threads.get_or_insert(tstate);
            }
        }
        HookKind::FrameCopy => {
            // _PyFrame_Copy(src, dest)
            tables.frames.copy(regs.gpr[RDI], regs.gpr[RSI]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::FakeMemory;
    use crate::location::Location;
    use crate::tables::FrameStatus;
    use std::collections::HashMap;

    const TSTATE: u64 = 0x5555_0000;
    const RSP: u64 = 0x7fff_0000;

    /// The 3.12.1 layout: frame = rbx, next_instr = r10, tstate = [rsp+8].
    fn layout() -> Layout {
        Layout {
            frame: Location::Reg(3),
            next_instr: Location::Reg(10),
            stack_pointer: Location::Reg(15),
            oparg: Location::Reg(14),
            opcode: Location::Reg(13),
            tstate: Location::Stack(8),
        }
    }

    fn memory() -> FakeMemory {
        FakeMemory(HashMap::from([(RSP + 8, TSTATE)]))
    }

    fn regs(set: &[(usize, u64)]) -> SavedRegisters {
        let mut r = SavedRegisters::default();
        r.gpr[4] = RSP;
        for &(n, v) in set {
            r.gpr[n] = v;
        }
        r
    }

    fn hook(kind: HookKind, arg: u32) -> Hook {
        Hook {
            kind: Some(kind),
            arg,
            address: 0,
        }
    }

    fn fire(t: &mut SideTables, kind: HookKind, arg: u32, set: &[(usize, u64)]) {
        on_hook(t, &layout(), &hook(kind, arg), kind, &regs(set), &memory());
    }

    #[test]
    fn dispatch_records_thread_position() {
        let mut t = SideTables::default();
        on_dispatch(
            &mut t,
            &layout(),
            &regs(&[(3, 0xf000), (10, 0xc0de)]),
            &memory(),
        );
        on_dispatch(
            &mut t,
            &layout(),
            &regs(&[(3, 0xf000), (10, 0xc0e0)]),
            &memory(),
        );
        let thread = t.threads.get(TSTATE).expect("created on first sight");
        assert_eq!(thread.slow_dispatches, 2);
        assert_eq!(thread.current_frame, 0xf000);
        assert_eq!(thread.last_next_instr, 0xc0e0);
        // Without a readable tstate nothing is recorded.
        on_dispatch(&mut t, &layout(), &regs(&[]), &FakeMemory(HashMap::new()));
        assert_eq!(t.threads.len(), 1);
    }

    #[test]
    fn generator_lifecycle_through_hooks() {
        let mut t = SideTables::default();
        // Entry and activation of a function frame (frame in rbx).
        fire(
            &mut t,
            HookKind::EvalEntry,
            0,
            &[(RDI, TSTATE), (RSI, 0xa000)],
        );
        fire(&mut t, HookKind::StartFrame, 3, &[(3, 0xa000)]);
        // RETURN_GENERATOR: copy into the generator, pop the thread frame.
        fire(
            &mut t,
            HookKind::FrameCopy,
            0,
            &[(RDI, 0xa000), (RSI, 0xb000)],
        );
        fire(
            &mut t,
            HookKind::ThreadStatePopFrame,
            0,
            &[(RDI, TSTATE), (RSI, 0xa000)],
        );
        assert_eq!(t.frames.len(), 1);
        assert_eq!(
            t.frames.get(0xb000).map(|f| f.status),
            Some(FrameStatus::Suspended)
        );
        // Resume through throw(), then finish.
        fire(&mut t, HookKind::ThrowEntry, 5, &[(5, 0xb000)]);
        assert_eq!(
            t.frames.get(0xb000).map(|f| f.status),
            Some(FrameStatus::Active)
        );
        fire(&mut t, HookKind::CurrentFrameStore, 12, &[(12, 0xc000)]);
        assert_eq!(t.threads.get(TSTATE).map(|e| e.current_frame), Some(0xc000));
        fire(
            &mut t,
            HookKind::FrameClearAndPop,
            0,
            &[(RDI, TSTATE), (RSI, 0xb000)],
        );
        assert!(t.frames.is_empty());
        let thread = t.threads.get(TSTATE).expect("thread");
        assert_eq!(thread.eval_entries, 1);
        assert_eq!(t.threads.len(), 1);
    }

    #[test]
    fn bad_hook_arguments_are_ignored() {
        let mut t = SideTables::default();
        fire(&mut t, HookKind::StartFrame, 99, &[]);
        fire(&mut t, HookKind::StartFrame, 3, &[(3, 0)]);
        assert!(t.frames.is_empty());
        // No tstate readable: nothing recorded.
        let no_memory = FakeMemory(HashMap::new());
        let k = HookKind::StartFrame;
        on_hook(
            &mut t,
            &layout(),
            &hook(k, 3),
            k,
            &regs(&[(3, 0xa000)]),
            &no_memory,
        );
        assert!(t.frames.is_empty());
        assert!(t.threads.is_empty());
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = ALL_KINDS.iter().map(|&k| kind_name(k)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 8);
    }
}
