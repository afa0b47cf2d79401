//! Orchestration of the machine-code analysis: runs the passes in order and
//! assembles [`CodeFacts`].

use super::cfg::Cfg;
use super::decode::Listing;
use super::dispatch::{
    check_no_other_entry, check_targets_are_boundaries, dispatch_sites, table_targets,
};
use super::error::CodeError;
use super::frame_stores::{cframe_local_stores, tstate_field_stores, FrameStores};
use super::holders::{HolderAnalysis, Holders, Tracked};
use super::hookable::{has_rip_relative, hook_point, HookRefusal};
use super::image::CodeImage;
use super::labels::{
    first_check_after, reachable_without_dispatch, recursion_checks, RecursionCheck,
};
use super::layout::{derive, LayoutInputs};
use super::liveness::Liveness;
use super::raise::raise_entry;
use super::registers::FrameFields;
use super::regs::RegSet;
use super::stack::rsp_offsets;
use super::{CodeFacts, CodeInputs};
use crate::model::{
    EvalFunction, FunctionRole, FunctionSite, Gpr, HookKind, HookPoint, HookSite, LabelRole,
    LabelSite, Location, OpcodeTable,
};
use crate::versions::{CurrentFrameHome, InstrField};
use iced_x86::FlowControl;
use std::collections::BTreeSet;

/// The decoded eval function with its CFG (the part of the analysis that needs only code + table).
pub struct EvalCode<'a> {
    pub image: &'a CodeImage<'a>,
    pub listing: Listing,
    pub cfg: Cfg,
}

impl<'a> EvalCode<'a> {
    /// Decodes the ranges and builds the CFG with table-dispatch edges.
    pub fn build(
        image: &'a CodeImage<'a>,
        eval: &EvalFunction,
        table: &OpcodeTable,
    ) -> Result<Self, CodeError> {
        let listing = Listing::decode(image, &eval.ranges)?;
        let targets = check_targets_are_boundaries(&listing, table)?;
        let cfg = Cfg::build(image, &listing, &targets);
        Ok(EvalCode {
            image,
            listing,
            cfg,
        })
    }

    /// Whether a direct branch or a table slot reaches `addr`.
    pub fn is_jump_target(&self, addr: u64) -> bool {
        self.cfg.is_jump_target(addr)
    }

    /// The hook point at `addr` inside the eval function.
    pub fn hook_point(&self, addr: u64) -> Result<HookPoint, HookRefusal> {
        hook_point(
            self.image,
            &self.listing,
            &|a| self.cfg.is_jump_target(a),
            addr,
        )
    }
}

fn offset(inputs: &CodeInputs<'_>, s: &str, f: &'static str) -> Result<u64, CodeError> {
    inputs
        .offsets
        .offset(s, f)
        .ok_or(CodeError::MissingOffset(f))
}

fn label(inputs: &CodeInputs<'_>, role: LabelRole) -> Option<u64> {
    inputs
        .labels
        .iter()
        .find(|l| l.role == role)
        .map(|l| l.address)
}

/// Runs the whole machine-code analysis.
pub fn analyze_code(inputs: &CodeInputs<'_>) -> Result<CodeFacts, CodeError> {
    let code = EvalCode::build(inputs.image, inputs.eval, inputs.table)?;
    let (listing, cfg) = (&code.listing, &code.cfg);
    let mut notes = check_no_other_entry(inputs.image, listing, cfg, inputs.table)?;
    for a in &cfg.falls_off {
        notes.push(format!(
            "control runs off the end of a range after {a:#x} (unreachable code)"
        ));
    }
    let entry = inputs
        .functions
        .iter()
        .find(|f| f.role == FunctionRole::EvalFrameDefault && listing.contains(f.address))
        .map(|f| f.address)
        .or_else(|| {
            inputs
                .eval
                .ranges
                .iter()
                .max_by_key(|r| r.len())
                .map(|r| r.start)
        })
        .ok_or(CodeError::NoEntry)?;
    let entry_block = cfg.block_of_insn[listing.index_of(entry).ok_or(CodeError::NoEntry)?];
    let rsp = rsp_offsets(listing, cfg, entry_block)?;
    let table_h = HolderAnalysis::run(
        listing,
        cfg,
        &rsp,
        entry_block,
        Tracked {
            at_entry: Holders::default(),
            rip_source: Some(inputs.table.address),
        },
    );
    let sites = dispatch_sites(listing, cfg, &table_h, inputs.line_at)?;
    let liveness = Liveness::run(listing, cfg, false);
    let targets = table_targets(inputs.table);
    let all_targets: Vec<u64> = targets.keys().copied().collect();
    let real_targets: Vec<u64> = targets
        .iter()
        .filter(|(_, r)| **r)
        .map(|(t, _)| *t)
        .collect();

    let body_rsp = body_rsp(listing, &rsp, &real_targets)?;
    let tstate_h = HolderAnalysis::run(
        listing,
        cfg,
        &rsp,
        entry_block,
        Tracked {
            at_entry: Holders {
                regs: RegSet::EMPTY.with(Gpr::Rdi),
                slots: BTreeSet::new(),
            },
            rip_source: None,
        },
    );
    let (field_name, next_off) = match inputs.profile.instr_field {
        InstrField::PrevInstr => ("prev_instr", 2),
        InstrField::InstrPtr => ("instr_ptr", 0),
    };
    let fields = FrameFields {
        instr: offset(inputs, "_PyInterpreterFrame", field_name)?,
        stacktop: offset(inputs, "_PyInterpreterFrame", "stacktop")?,
        localsplus: offset(inputs, "_PyInterpreterFrame", "localsplus")?,
    };
    let mut registers = derive(&LayoutInputs {
        image: inputs.image,
        listing,
        cfg,
        sites: &sites,
        liveness: &liveness,
        tstate: &tstate_h,
        fields,
        field_name,
        next_off,
        resume_label: label(inputs, LabelRole::ResumeFrame),
        real_targets: &real_targets,
        all_targets: &all_targets,
        body_rsp,
    })?;
    registers
        .evidence
        .push(rax_note(listing, cfg, &liveness, &all_targets));
    registers.evidence.push(format!(
        "{} dispatch sites, all proven to load from the table at {:#x}; {} distinct table targets ({} redirected)",
        sites.len(),
        inputs.table.address,
        all_targets.len(),
        real_targets.len()
    ));
    registers.evidence.push(indirect_calls(listing));
    registers.evidence.extend(notes);

    let stores = match inputs.profile.current_frame {
        CurrentFrameHome::CFrameLocal { .. } => cframe_local_stores(
            listing,
            cfg,
            &rsp,
            &tstate_h,
            body_rsp,
            (
                offset(inputs, "_ts", "cframe")?,
                offset(inputs, "_PyCFrame", "current_frame")?,
            ),
            inputs.line_at,
        )?,
        CurrentFrameHome::ThreadStateField { field } => {
            let off = inputs
                .offsets
                .offset("_ts", field)
                .ok_or(CodeError::MissingOffset("current_frame"))?;
            tstate_field_stores(listing, &tstate_h, off, inputs.line_at)
        }
    };
    registers.evidence.extend(stores.evidence.iter().cloned());
    for w in &stores.other_writes {
        registers.evidence.push(format!(
            "current-frame slot also written by a non-GPR store at {:#x} ({}, {} bytes): hooked, not listed as a CurrentFrameStore",
            w.address, w.text, w.len
        ));
    }

    let hook = |addr: u64, kind: HookKind, what: String| -> Result<HookSite, CodeError> {
        let mut point = code.hook_point(addr).map_err(|e| CodeError::Hook {
            addr,
            what: what.clone(),
            reason: e.to_string(),
        })?;
        // Inside the eval function the liveness analysis knows whether the
        // flags matter here; function entries are handled by the caller.
        if let Some(idx) = listing.index_of(addr) {
            point.flags_live = liveness.live_before(cfg, idx).has_flags();
        }
        let what = if has_rip_relative(listing, &point) {
            format!("{what} (displaces a RIP-relative instruction: re-encode)")
        } else {
            what
        };
        Ok(HookSite { kind, what, point })
    };
    // Hooks are a separate phase: when one cannot be placed, the dispatch
    // sites, register layout and stores found above are still reported.
    let layout_for_hooks = registers.clone();
    let hook_phase = || -> Result<HookPhase, CodeError> {
        let mut hooks = Vec::new();
        let mut evidence = Vec::new();
        hooks.push(hook(
            entry,
            HookKind::EvalEntry,
            inputs.eval.symbol.clone(),
        )?);
        push_store_hooks(&mut hooks, &stores, &hook)?;

        let (extra_labels, label_hooks) = recursion_points(
            inputs,
            listing,
            cfg,
            &tstate_h,
            entry_block,
            &layout_for_hooks,
            &hook,
        )?;
        hooks.extend(label_hooks);
        evidence.extend(extra_labels.1);
        if let Some(a) = label(inputs, LabelRole::HandleEvalBreaker) {
            hooks.push(hook(
                a,
                HookKind::EvalBreaker,
                "handle_eval_breaker".into(),
            )?);
        } else {
            evidence.push("no handle_eval_breaker label: no EvalBreaker hook".into());
        }
        for f in inputs.functions.iter().filter(|f| {
            matches!(
                f.role,
                FunctionRole::FrameClearAndPop
                    | FunctionRole::ThreadStatePopFrame
                    | FunctionRole::FrameCopy
            )
        }) {
            hooks.push(function_entry_hook(inputs.image, f)?);
        }
        Ok((hooks, extra_labels.0, evidence))
    };
    let (hooks, mut extra_labels, hook_failures) = match hook_phase() {
        Ok((hooks, labels, evidence)) => {
            registers.evidence.extend(evidence);
            (hooks, labels, Vec::new())
        }
        Err(e) => (Vec::new(), Vec::new(), vec![e.to_string()]),
    };
    match (label(inputs, LabelRole::ResumeWithError), registers.frame) {
        (Some(resume), Location::Reg(frame)) => {
            match raise_entry(listing, cfg, &liveness, resume, frame, fields.instr) {
                Ok(entry) => {
                    registers.evidence.push(entry.evidence.clone());
                    extra_labels.push(LabelSite {
                        role: LabelRole::RaiseEntry,
                        name: format!("raise entry (prev_instr into {:?})", entry.prev_register),
                        address: entry.address,
                    });
                }
                Err(why) => registers.evidence.push(format!(
                    "no raise entry: {why}; callback exceptions cannot propagate"
                )),
            }
        }
        _ => registers
            .evidence
            .push("no resume_with_error label or frame register: no raise entry".into()),
    }
    Ok(CodeFacts {
        dispatch_sites: sites,
        registers,
        current_frame_stores: stores.stores,
        extra_labels,
        hooks,
        hook_failures,
    })
}

/// Hooks, the labels found while placing them, and evidence lines.
type HookPhase = (Vec<HookSite>, Vec<LabelSite>, Vec<String>);

type HookFn<'h> = dyn Fn(u64, HookKind, String) -> Result<HookSite, CodeError> + 'h;

fn push_store_hooks(
    hooks: &mut Vec<HookSite>,
    stores: &FrameStores,
    hook: &HookFn<'_>,
) -> Result<(), CodeError> {
    for s in &stores.stores {
        hooks.push(hook(
            s.address,
            HookKind::CurrentFrameStore,
            format!(
                "current_frame store {} <- {}",
                s.destination,
                s.value.name()
            ),
        )?);
    }
    for w in &stores.other_writes {
        hooks.push(hook(
            w.address,
            HookKind::CurrentFrameStore,
            format!("current_frame non-GPR store `{}`", w.text),
        )?);
    }
    hooks.sort_by_key(|h| h.point.address);
    Ok(())
}

/// rsp offset at the real targets, which must be the same everywhere.
fn body_rsp(listing: &Listing, rsp: &[Option<i64>], real: &[u64]) -> Result<i64, CodeError> {
    let mut seen: Option<i64> = None;
    for t in real {
        let Some(d) = listing.index_of(*t).and_then(|i| rsp[i]) else {
            continue;
        };
        match seen {
            None => seen = Some(d),
            Some(a) if a != d => return Err(CodeError::TargetStackMismatch { a, b: d }),
            _ => {}
        }
    }
    seen.ok_or_else(|| {
        CodeError::Layout("no table target is reachable from the function entry".into())
    })
}

/// Documents whether treating rax as a call argument changes liveness at the targets.
fn rax_note(listing: &Listing, cfg: &Cfg, without: &Liveness, targets: &[u64]) -> String {
    let with = Liveness::run(listing, cfg, true);
    let differ: Vec<String> = targets
        .iter()
        .filter_map(|t| listing.index_of(*t))
        .filter(|i| {
            let b = cfg.block_of_insn[*i];
            with.block_in[b] != without.block_in[b]
        })
        .map(|i| format!("{:#x}", listing.insns[i].ip()))
        .collect();
    format!(
        "calls are assumed to read rdi, rsi, rdx, rcx, r8, r9 (not rax: al of variadic calls is set right before the call); \
         assuming rax too would change the live-in set at {} of {} targets {}",
        differ.len(),
        targets.len(),
        differ.join(" ")
    )
}

fn indirect_calls(listing: &Listing) -> String {
    let calls: Vec<String> = listing
        .insns
        .iter()
        .filter(|i| i.flow_control() == FlowControl::IndirectCall)
        .map(|i| format!("{:#x}", i.ip()))
        .collect();
    format!(
        "{} indirect calls (call reg / call [mem]) treated as ordinary calls; first ones: {}",
        calls.len(),
        calls.iter().take(8).cloned().collect::<Vec<_>>().join(" ")
    )
}

type Labels = (Vec<LabelSite>, Vec<String>);

/// StartFrameChecked and ThrowEntry with their hooks.
fn recursion_points(
    inputs: &CodeInputs<'_>,
    listing: &Listing,
    cfg: &Cfg,
    tstate: &HolderAnalysis<'_>,
    entry_block: usize,
    registers: &crate::model::RegisterLayout,
    hook: &HookFn<'_>,
) -> Result<(Labels, Vec<HookSite>), CodeError> {
    let counter = inputs
        .offsets
        .offset("_ts", "py_recursion_remaining")
        .or_else(|| inputs.offsets.offset("_ts", "recursion_remaining"))
        .ok_or(CodeError::MissingOffset("py_recursion_remaining"))?;
    let checks = recursion_checks(listing, cfg, tstate, counter);
    let mut evidence = vec![format!(
        "{} recursion checks (decrement of [tstate+{counter:#x}] + conditional branch): {}",
        checks.len(),
        checks
            .iter()
            .map(|c| format!("{:#x}", c.checked))
            .collect::<Vec<_>>()
            .join(" ")
    )];
    let start: RecursionCheck = match label(inputs, LabelRole::StartFrame) {
        Some(l) => first_check_after(listing, &checks, l, 64).ok_or_else(|| {
            CodeError::RecursionCheck(format!(
                "no recursion check follows the start_frame label {l:#x}"
            ))
        })?,
        None => {
            let first_seq = registers.evidence.first().cloned().unwrap_or_default();
            checks.first().cloned().ok_or_else(|| {
                CodeError::RecursionCheck(format!(
                    "no start_frame label and no recursion check found ({first_seq})"
                ))
            })?
        }
    };
    // Only the start path may reach the StartFrame hook.
    let avoid: BTreeSet<usize> = [start.checked_block].into_iter().collect();
    let check_block = cfg.block_of_insn[listing.index_of(start.branch).unwrap_or(0)];
    let from_check = reachable_without_dispatch(cfg, check_block, &avoid);
    let foreign: Vec<String> = cfg
        .branch_sources
        .get(&start.checked)
        .into_iter()
        .flatten()
        .filter(|src| {
            listing
                .index_of(**src)
                .is_some_and(|i| !from_check.contains(&cfg.block_of_insn[i]))
        })
        .map(|s| format!("{s:#x}"))
        .collect();
    if !foreign.is_empty() {
        return Err(CodeError::RecursionCheck(format!(
            "the point after the start_frame check {:#x} is shared with other paths (branches from {})",
            start.checked,
            foreign.join(", ")
        )));
    }
    evidence.push(format!(
        "start_frame check at {:#x}: point {:#x} is reached only from the check itself ({} direct branches, all from its slow path); resume_frame {}",
        start.store,
        start.checked,
        cfg.branch_sources.get(&start.checked).map_or(0, |v| v.len()),
        match label(inputs, LabelRole::ResumeFrame) {
            Some(r) => format!("label at {r:#x} is a different address"),
            None => "label not provided".into(),
        }
    ));
    // Throw path: another check reachable from the entry without dispatch.
    let reach = reachable_without_dispatch(cfg, entry_block, &avoid);
    let throw: Vec<&RecursionCheck> = checks
        .iter()
        .filter(|c| c.checked != start.checked)
        .filter(|c| {
            listing
                .index_of(c.store)
                .is_some_and(|i| reach.contains(&cfg.block_of_insn[i]))
        })
        .collect();
    let throw = match throw.as_slice() {
        [one] => *one,
        [] => {
            return Err(CodeError::RecursionCheck(
                "no second recursion check (throw path) is reachable from the function entry"
                    .into(),
            ))
        }
        many => {
            return Err(CodeError::RecursionCheck(format!(
                "{} candidate throw-path recursion checks: {}",
                many.len(),
                many.iter()
                    .map(|c| format!("{:#x}", c.checked))
                    .collect::<Vec<_>>()
                    .join(" ")
            )))
        }
    };
    let labels = vec![
        LabelSite {
            role: LabelRole::StartFrameChecked,
            name: "start_frame (after recursion check)".into(),
            address: start.checked,
        },
        LabelSite {
            role: LabelRole::ThrowEntry,
            name: "throw entry (after recursion check)".into(),
            address: throw.checked,
        },
    ];
    let hooks = vec![
        hook(
            start.checked,
            HookKind::StartFrame,
            "start_frame after recursion check".into(),
        )?,
        hook(
            throw.checked,
            HookKind::ThrowEntry,
            "throw entry after recursion check".into(),
        )?,
    ];
    Ok(((labels, evidence), hooks))
}

/// Hook at the entry of an out-of-line function.
fn function_entry_hook(image: &CodeImage<'_>, f: &FunctionSite) -> Result<HookSite, CodeError> {
    let err = |reason: String| CodeError::Hook {
        addr: f.address,
        what: f.name.clone(),
        reason,
    };
    if f.size == 0 {
        return Err(err("function has no size".into()));
    }
    let range = crate::model::AddrRange {
        start: f.address,
        end: f.address + f.size,
    };
    let listing = Listing::decode(image, &[range])?;
    let targets: BTreeSet<u64> = listing
        .insns
        .iter()
        .filter(|i| {
            matches!(
                i.flow_control(),
                FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch
            )
        })
        .map(|i| i.near_branch_target())
        .collect();
    let mut point = hook_point(image, &listing, &|a| targets.contains(&a), f.address)
        .map_err(|e| err(e.to_string()))?;
    // The SysV ABI does not preserve the status flags across calls: dead at entry.
    point.flags_live = false;
    Ok(HookSite {
        kind: HookKind::FunctionEntry,
        what: f.name.clone(),
        point,
    })
}
