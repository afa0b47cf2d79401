//! Deciding what to redirect and what to hook, from the analysis alone.
//!
//! The plan is the list of table slots that get a dispatch stub (every real
//! opcode) and the hook sites with the runtime hook kind and argument each
//! one reports, and the function entries detoured to runtime replacements.
//! It is computed before any address is known, so the same plan drives
//! descriptor construction, code generation and verification.

use retrace_abi::DetourKind as RtDetour;
use retrace_abi::HookKind as RtHook;
use symbols::{Analysis, DetourKind, DetourSite, FunctionRole, HookKind, HookSite, Location};

/// One table slot to redirect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStub {
    pub opcode: u8,
    pub slot: u64,
    pub handler: u64,
    pub name: String,
}

/// One hook site to divert.
#[derive(Clone, Debug)]
pub struct PlannedHook {
    pub site: HookSite,
    pub kind: RtHook,
    /// Register number the runtime reads (frame or new current frame), or 0.
    pub arg: u32,
    pub flags_live: bool,
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

/// Build the plan for an instrumentable analysis.
pub fn plan(analysis: &Analysis) -> Result<Plan, PlanError> {
    let table = analysis.table.as_ref().ok_or(PlanError::NoTable)?;
    if analysis.registers.is_none() {
        return Err(PlanError::NoRegisters);
    }
    let stubs = table
        .entries
        .iter()
        .filter(|e| e.kind.is_redirected())
        .map(|e| PlannedStub {
            opcode: e.opcode,
            slot: e.slot,
            handler: e.target,
            name: e.name.clone(),
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
        });
    }
    let detours = plan_detours(analysis)?;
    Ok(Plan {
        stubs,
        hooks,
        detours,
    })
}
