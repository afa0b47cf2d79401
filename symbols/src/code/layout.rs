//! Assembles the [`RegisterLayout`] from the resume sequence, liveness at the
//! table targets and the tstate dataflow, with the evidence for `inspect`.

use super::cfg::Cfg;
use super::decode::Listing;
use super::error::CodeError;
use super::holders::HolderAnalysis;
use super::image::CodeImage;
use super::liveness::Liveness;
use super::registers::{
    execute, live_counts, pick, resume_sequences, trace_start, tstate_location, FrameFields, Sym,
};
use super::regs::RegSet;
use crate::model::{DispatchSite, Gpr, Location, RegisterLayout};

/// Everything the layout derivation needs.
pub struct LayoutInputs<'a, 'l> {
    pub image: &'a CodeImage<'a>,
    pub listing: &'l Listing,
    pub cfg: &'l Cfg,
    pub sites: &'l [DispatchSite],
    pub liveness: &'l Liveness,
    pub tstate: &'l HolderAnalysis<'l>,
    pub fields: FrameFields,
    pub field_name: &'static str,
    /// Byte offset of next_instr from the loaded instruction pointer (2 for prev_instr, 0 for instr_ptr).
    pub next_off: i64,
    pub resume_label: Option<u64>,
    pub real_targets: &'l [u64],
    pub all_targets: &'l [u64],
    pub body_rsp: i64,
}

fn loc(r: Option<Gpr>) -> Location {
    r.map(Location::Reg).unwrap_or(Location::Unavailable)
}

fn name(l: &Location) -> String {
    match l {
        Location::Reg(g) => g.name().to_string(),
        Location::Stack(o) => format!("[rsp+{o:#x}]"),
        Location::Unavailable => "unavailable".into(),
    }
}

pub fn derive(x: &LayoutInputs<'_, '_>) -> Result<RegisterLayout, CodeError> {
    let seqs = resume_sequences(x.image, x.listing, x.sites, x.fields, x.next_off);
    let chosen = x
        .resume_label
        .and_then(|l| seqs.iter().find(|s| s.trace.0 <= l && l <= s.trace.1))
        .or_else(|| seqs.first())
        .ok_or(CodeError::NoResumeSequence {
            field: x.field_name,
        })?;
    let counts = live_counts(x.listing, x.cfg, x.liveness, x.real_targets);
    let n_real = x.real_targets.len();
    let st = &chosen.state;
    let frame = pick(st, Sym::Frame, &counts, Some(chosen.frame_in));
    let next = pick(st, Sym::Instr(x.next_off), &counts, None);
    let sp = pick(st, Sym::StackPtr, &counts, None);
    let oparg = pick(st, Sym::Byte(x.next_off + 1), &counts, None);
    let opcode = pick(st, Sym::Byte(x.next_off), &counts, None);
    let mut evidence = vec![format!(
        "resume sequence {:#x}..{:#x} (dispatch jump {:#x}, {} candidate sequences): loads {} and stacktop from {}",
        chosen.trace.0,
        chosen.trace.1,
        chosen.site.jump,
        seqs.len(),
        x.field_name,
        chosen.frame_in.name()
    )];
    for (what, r) in [
        ("frame", frame),
        ("next_instr", next),
        ("stack_pointer", sp),
        ("oparg", oparg),
        ("opcode", opcode),
    ] {
        match r {
            Some(g) => evidence.push(format!(
                "{what} = {} (live-in at {}/{} real targets)",
                g.name(),
                counts[g.number() as usize],
                n_real
            )),
            None => evidence.push(format!("{what}: no register holds it at the dispatch jump")),
        }
    }
    for (what, r) in [
        ("frame", frame),
        ("next_instr", next),
        ("stack_pointer", sp),
    ] {
        let g = r.ok_or_else(|| {
            CodeError::Layout(format!(
                "{what} is not in a register at the resume dispatch"
            ))
        })?;
        let c = counts[g.number() as usize];
        if c * 10 < n_real * 9 {
            return Err(CodeError::Layout(format!(
                "{what} register {} is live-in at only {c}/{n_real} real targets",
                g.name()
            )));
        }
    }
    // Other sequences that set up the layout must agree.
    let mut disagree = Vec::new();
    for s in seqs.iter().filter(|s| s.site.jump != chosen.site.jump) {
        let same = [
            (Sym::Frame, frame),
            (Sym::Instr(x.next_off), next),
            (Sym::StackPtr, sp),
        ]
        .iter()
        .all(|(v, r)| r.is_some_and(|g| s.state[g.number() as usize] == *v));
        if !same {
            disagree.push(format!("{:#x}", s.site.jump));
        }
    }
    if !disagree.is_empty() {
        return Err(CodeError::Layout(format!(
            "resume-like sequences at {} put frame/next_instr/stack_pointer elsewhere",
            disagree.join(", ")
        )));
    }
    evidence.push(format!(
        "{} other resume-like dispatch sequences agree on frame/next_instr/stack_pointer",
        seqs.len() - 1
    ));
    evidence.push(site_writes(x, [frame, next, sp]));
    let (tstate, tdesc) = tstate_location(
        x.listing,
        x.cfg,
        x.tstate,
        x.real_targets,
        x.body_rsp,
        &counts,
    );
    evidence.push(tdesc);

    let mut any = RegSet::EMPTY;
    let mut live_real = RegSet::EMPTY;
    for t in x.all_targets {
        if let Some(i) = x.listing.index_of(*t) {
            let l = x.liveness.block_in[x.cfg.block_of_insn[i]];
            any = any.union(l);
            if x.real_targets.contains(t) {
                live_real = live_real.union(l);
            }
        }
    }
    let dead: Vec<Gpr> = Gpr::ALL
        .iter()
        .copied()
        .filter(|g| *g != Gpr::Rsp && !live_real.contains(*g))
        .collect();
    evidence.push(format!(
        "live-in counts over {n_real} real targets: {}",
        Gpr::ALL
            .iter()
            .filter(|g| counts[g.number() as usize] > 0)
            .map(|g| format!("{} {}", g.name(), counts[g.number() as usize]))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let layout = RegisterLayout {
        frame: loc(frame),
        next_instr: loc(next),
        stack_pointer: loc(sp),
        oparg: loc(oparg),
        opcode: loc(opcode),
        tstate,
        live_in_any: any.gprs(),
        dead_everywhere: dead,
        flags_live: any.has_flags(),
        evidence,
    };
    let summary = format!(
        "layout: frame {}, next_instr {}, stack_pointer {}, oparg {}, opcode {}, tstate {}",
        name(&layout.frame),
        name(&layout.next_instr),
        name(&layout.stack_pointer),
        name(&layout.oparg),
        name(&layout.opcode),
        name(&layout.tstate)
    );
    let mut layout = layout;
    layout.evidence.insert(0, summary);
    Ok(layout)
}

/// How the layout registers are last written in the straight-line code before each dispatch jump.
fn site_writes(x: &LayoutInputs<'_, '_>, regs: [Option<Gpr>; 3]) -> String {
    let mut parts = Vec::new();
    for (what, r) in ["frame", "next_instr", "stack_pointer"].iter().zip(regs) {
        let Some(g) = r else { continue };
        let mut written = 0;
        for s in x.sites {
            let Some(j) = x.listing.index_of(s.jump) else {
                continue;
            };
            let start = trace_start(x.image, x.listing, j, 64);
            // Execute with a frame register that cannot collide, to see only writes.
            let st = execute(&x.listing.insns[start..=j], Gpr::Rsp, x.fields);
            if st[g.number() as usize] != Sym::Init(g) {
                written += 1;
            }
        }
        parts.push(format!(
            "{what} {} written before {written}/{} jumps",
            g.name(),
            x.sites.len()
        ));
    }
    format!(
        "straight-line code before the dispatch jumps (checked, not proven equal): {}",
        parts.join("; ")
    )
}
