//! Deciding what to redirect and what to hook, from the analysis alone.
//!
//! The plan is the list of table slots that get a dispatch stub (every real
//! opcode) and the hook sites with the runtime hook kind and argument each
//! one reports, and the function entries detoured to runtime replacements.
//! It is computed before any address is known, so the same plan drives
//! descriptor construction, code generation and verification.

use retrace_abi::DetourKind as RtDetour;
use retrace_abi::HookKind as RtHook;
use symbols::{
    Analysis, DetourKind, DetourSite, FunctionRole, Gpr, HookKind, HookSite, LabelRole, Location,
    OpcodeMeta, OpcodeTable,
};
use trampolines::{DispatchRegisters, HookFast};

/// One table slot to redirect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStub {
    pub opcode: u8,
    pub slot: u64,
    pub handler: u64,
    pub name: String,
    /// Bytes to the instruction's natural successor (see [`opcode_flags`]).
    pub width: u8,
    /// SEND family: the runtime classifies the dispatch that follows.
    pub classify_next: bool,
    /// `INTERPRETER_EXIT`: the entry frame's stub.
    pub entry_exit: bool,
}

/// One hook site to divert.
#[derive(Clone, Debug)]
pub struct PlannedHook {
    pub site: HookSite,
    pub kind: RtHook,
    /// Register number the runtime reads (frame or new current frame), or 0.
    pub arg: u32,
    pub flags_live: bool,
    /// The inline fast path of the trampoline (common call and return).
    pub fast: Option<HookFast>,
}

/// One function entry to detour; its index is its slot in the descriptor.
#[derive(Clone, Debug)]
pub struct PlannedDetour {
    pub site: DetourSite,
    pub kind: RtDetour,
}

impl PlannedDetour {
    /// `DetourInfo::flags` for this detour.
    pub fn flags(&self) -> u32 {
        if self.site.full_replacement {
            retrace_abi::DETOUR_FULL_REPLACEMENT
        } else {
            0
        }
    }
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub stubs: Vec<PlannedStub>,
    /// Registers and offsets the stubs' fast path uses.
    pub dispatch: DispatchRegisters,
    /// Per opcode: `retrace_abi::OPCODE_*` bits.
    pub opcode_flags: [u8; 256],
    pub hooks: Vec<PlannedHook>,
    pub detours: Vec<PlannedDetour>,
}

/// `PlannedHook::arg` when no register holds the value.
pub const NO_REGISTER: u32 = u32::MAX;

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the analysis found no opcode table")]
    NoTable,
    #[error("the analysis found no register layout")]
    NoRegisters,
    #[error("the dispatch fast path needs {0}")]
    NoFastPath(&'static str),
    #[error("the analysis found no inline-cache table (_PyOpcode_Caches/_PyOpcode_Deopt)")]
    NoOpcodeMeta,
    #[error("hook at {0:#x} ({1}) has no runtime counterpart")]
    UnknownHook(u64, String),
    #[error("{0} function detours, the descriptor has room for {1}")]
    TooManyDetours(usize, usize),
    #[error("detour of {0} is a full replacement; only _Py_Dealloc's verified body may be")]
    UnexpectedFullReplacement(String),
}

fn runtime_detour(kind: DetourKind) -> RtDetour {
    match kind {
        DetourKind::HashPointer => RtDetour::HashPointer,
        DetourKind::Dealloc => RtDetour::Dealloc,
        DetourKind::ThreadStateClear => RtDetour::ThreadStateClear,
        DetourKind::SetAsyncExc => RtDetour::SetAsyncExc,
        DetourKind::ThreadStateNew => RtDetour::ThreadStateNew,
    }
}

/// The detours of the analysis, checked against what the runtime can replace.
pub fn plan_detours(analysis: &Analysis) -> Result<Vec<PlannedDetour>, PlanError> {
    if analysis.detours.len() > retrace_abi::MAX_DETOURS {
        return Err(PlanError::TooManyDetours(
            analysis.detours.len(),
            retrace_abi::MAX_DETOURS,
        ));
    }
    analysis
        .detours
        .iter()
        .map(|d| {
            let kind = runtime_detour(d.kind);
            // The runtime implements a whole function only for the deallocator.
            if d.full_replacement && kind != RtDetour::Dealloc {
                return Err(PlanError::UnexpectedFullReplacement(d.function.clone()));
            }
            Ok(PlannedDetour {
                site: d.clone(),
                kind,
            })
        })
        .collect()
}

fn frame_register(analysis: &Analysis) -> u32 {
    match analysis.registers.as_ref().map(|r| r.frame) {
        Some(Location::Reg(r)) => r.number() as u32,
        _ => u32::MAX,
    }
}

/// Per-opcode flags from the table's opcode names and the deopt table:
/// superinstructions are the `A__B` names of 3.11/3.12; the SEND family is
/// every opcode whose base opcode is named `SEND`.
pub fn opcode_flags(table: &OpcodeTable, meta: &OpcodeMeta) -> [u8; 256] {
    let send = table
        .entries
        .iter()
        .find(|e| e.name == "SEND")
        .map(|e| e.opcode);
    let mut flags = [0u8; 256];
    for e in &table.entries {
        let i = usize::from(e.opcode);
        if e.name.contains("__") {
            flags[i] |= retrace_abi::OPCODE_SUPERINSTRUCTION;
        }
        if send.is_some() && meta.deopt.get(i).copied() == send {
            flags[i] |= retrace_abi::OPCODE_SEND;
        }
    }
    flags
}

/// Bytes from an instruction with opcode `op` to its natural successor.
pub fn fall_through_width(op: u8, flags: &[u8; 256], meta: &OpcodeMeta) -> u8 {
    let i = usize::from(op);
    if flags[i] & retrace_abi::OPCODE_SUPERINSTRUCTION != 0 {
        return 4;
    }
    let base = meta.deopt.get(i).copied().unwrap_or(op);
    let caches = meta.caches.get(usize::from(base)).copied().unwrap_or(0);
    2u8.saturating_mul(caches.saturating_add(1))
}

/// The stubs' registers: frame and `next_instr` in registers, two scratch
/// registers dead at every handler, dead flags, a known `prev_instr`.
fn dispatch_registers(analysis: &Analysis) -> Result<DispatchRegisters, PlanError> {
    let regs = analysis.registers.as_ref().ok_or(PlanError::NoRegisters)?;
    let Location::Reg(frame) = regs.frame else {
        return Err(PlanError::NoFastPath("the frame in a register"));
    };
    let Location::Reg(next) = regs.next_instr else {
        return Err(PlanError::NoFastPath("next_instr in a register"));
    };
    if regs.flags_live {
        return Err(PlanError::NoFastPath("dead flags at every handler"));
    }
    let mut scratch = regs
        .dead_everywhere
        .iter()
        .filter(|r| !matches!(r, Gpr::Rsp | Gpr::Rbp) && **r != frame && **r != next)
        .map(|r| r.number());
    let (Some(s0), Some(s1)) = (scratch.next(), scratch.next()) else {
        return Err(PlanError::NoFastPath("two registers dead at every handler"));
    };
    let prev_instr = analysis
        .offsets
        .offset("_PyInterpreterFrame", "prev_instr")
        .and_then(|v| i32::try_from(v).ok())
        .ok_or(PlanError::NoFastPath("_PyInterpreterFrame.prev_instr"))?;
    Ok(DispatchRegisters {
        frame: frame.number(),
        next_instr: next.number(),
        scratch: [s0, s1],
        prev_instr_offset: prev_instr,
        tstate_offset: match regs.tstate {
            Location::Stack(off) => Some(off),
            _ => None,
        },
        raise_entry: analysis
            .frame_links
            .label(LabelRole::RaiseEntry)
            .map(|l| l.address),
    })
}

/// The inline fast path for a hook of `kind` whose runtime argument is in
/// register `arg` (see `trampolines::hook_fast`), when the analysis knows
/// everything it needs.
fn hook_fast_path(analysis: &Analysis, kind: RtHook, arg: u32) -> Option<HookFast> {
    let frame_field = |name: &str| {
        analysis
            .offsets
            .offset("_PyInterpreterFrame", name)
            .and_then(|v| i32::try_from(v).ok())
    };
    match kind {
        RtHook::StartFrame => Some(HookFast::StartFrame {
            frame: u8::try_from(arg).ok().filter(|&r| r < 16)?,
            previous: frame_field("previous")?,
            prev_instr: frame_field("prev_instr")?,
            owner: frame_field("owner")?,
        }),
        // (tstate, frame) in (rdi, rsi) at the function entry.
        RtHook::FrameClearAndPop => Some(HookFast::ClearAndPop),
        RtHook::ThreadStatePopFrame => Some(HookFast::PopFrame),
        RtHook::EvalEntry => Some(HookFast::EvalEntry {
            owner: frame_field("owner")?,
        }),
        // The entry push: nothing the runtime needs (no register holds it).
        RtHook::CurrentFrameStore if arg == NO_REGISTER => Some(HookFast::Pass),
        RtHook::CurrentFrameStore => {
            let new = u8::try_from(arg).ok().filter(|&r| r < 16 && r != 4)?;
            let field = |s: &str, f: &str| {
                analysis
                    .offsets
                    .offset(s, f)
                    .and_then(|v| i32::try_from(v).ok())
            };
            match analysis.registers.as_ref()?.tstate {
                Location::Stack(off) => Some(HookFast::CurrentFrameStore {
                    new,
                    tstate_offset: off,
                    cframe: field("_ts", "cframe")?,
                    current_frame: field("_PyCFrame", "current_frame")?,
                    owner: field("_PyInterpreterFrame", "owner")?,
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Build the plan for an instrumentable analysis.
pub fn plan(analysis: &Analysis) -> Result<Plan, PlanError> {
    let table = analysis.table.as_ref().ok_or(PlanError::NoTable)?;
    let meta = analysis
        .opcode_meta
        .as_ref()
        .ok_or(PlanError::NoOpcodeMeta)?;
    let dispatch = dispatch_registers(analysis)?;
    let flags = opcode_flags(table, meta);
    let stubs = table
        .entries
        .iter()
        .filter(|e| e.kind.is_redirected())
        .map(|e| PlannedStub {
            opcode: e.opcode,
            slot: e.slot,
            handler: e.target,
            name: e.name.clone(),
            width: fall_through_width(e.opcode, &flags, meta),
            classify_next: flags[usize::from(e.opcode)] & retrace_abi::OPCODE_SEND != 0,
            entry_exit: e.name == "INTERPRETER_EXIT",
        })
        .collect();
    let frame_reg = frame_register(analysis);
    let mut hooks = Vec::new();
    for site in &analysis.hooks {
        let (kind, arg) = match site.kind {
            HookKind::EvalEntry => (RtHook::EvalEntry, 0),
            HookKind::StartFrame => (RtHook::StartFrame, frame_reg),
            HookKind::ThrowEntry => (RtHook::ThrowEntry, frame_reg),
            HookKind::EvalBreaker => (RtHook::EvalBreaker, frame_reg),
            HookKind::CurrentFrameStore => {
                // A store from a general-purpose register names it; the entry push
                // of 3.12 is an SSE store of two fields (`movaps`), whose value the
                // runtime cannot read from the saved registers.
                let value = analysis
                    .frame_links
                    .current_frame_stores
                    .iter()
                    .find(|s| s.address == site.point.address)
                    .map(|s| s.value.number() as u32)
                    .unwrap_or(NO_REGISTER);
                (RtHook::CurrentFrameStore, value)
            }
            HookKind::FunctionEntry => {
                let role = analysis
                    .frame_links
                    .functions
                    .iter()
                    .find(|f| f.address == site.point.address)
                    .map(|f| f.role);
                let kind = match role {
                    Some(FunctionRole::FrameClearAndPop) => RtHook::FrameClearAndPop,
                    Some(FunctionRole::ThreadStatePopFrame) => RtHook::ThreadStatePopFrame,
                    Some(FunctionRole::FrameCopy) => RtHook::FrameCopy,
                    Some(FunctionRole::EvalFrameDefault) => RtHook::EvalEntry,
                    _ => {
                        return Err(PlanError::UnknownHook(
                            site.point.address,
                            site.what.clone(),
                        ))
                    }
                };
                (kind, 0)
            }
        };
        hooks.push(PlannedHook {
            site: site.clone(),
            kind,
            arg,
            flags_live: site.point.flags_live,
            fast: hook_fast_path(analysis, kind, arg),
        });
    }
    let detours = plan_detours(analysis)?;
    Ok(Plan {
        stubs,
        dispatch,
        opcode_flags: flags,
        hooks,
        detours,
    })
}
