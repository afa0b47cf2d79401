//! Basic blocks and control-flow edges of the eval function.
//!
//! Indirect jumps are given every table target as successors; that they
//! really are table dispatches is proven afterwards by [`super::dispatch`],
//! which makes the assumption sound.

use super::decode::{ends_flow, is_noreturn_call, Listing};
use super::image::CodeImage;
use iced_x86::FlowControl;
use std::collections::{BTreeMap, BTreeSet};

/// How control leaves the function at the end of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `ret`.
    Return,
    /// A direct jump (conditional or not) to code outside the ranges: a tail call.
    TailCall,
}

/// A maximal straight-line run of instructions `[start, end)` (listing indices).
#[derive(Clone, Debug)]
pub struct Block {
    pub start: usize,
    pub end: usize,
    pub succs: Vec<usize>,
    pub exit: Option<Exit>,
    /// Ends with an indirect jump (a table dispatch once proven).
    pub indirect: bool,
}

/// The control-flow graph over a [`Listing`].
#[derive(Clone, Debug)]
pub struct Cfg {
    pub blocks: Vec<Block>,
    pub block_of_insn: Vec<usize>,
    /// Direct branch target → addresses of the branches reaching it (inside the ranges only).
    pub branch_sources: BTreeMap<u64, Vec<u64>>,
    /// Distinct table targets (all kinds) inside the ranges.
    pub table_targets: BTreeSet<u64>,
    /// Instructions after which control runs off the end of a range (e.g. `__builtin_unreachable`).
    pub falls_off: Vec<u64>,
}

impl Cfg {
    /// Builds blocks and edges; `table_targets` must all be instruction boundaries.
    pub fn build(image: &CodeImage<'_>, listing: &Listing, table_targets: &BTreeSet<u64>) -> Cfg {
        let n = listing.insns.len();
        let mut leader = vec![false; n];
        let mut branch_sources: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for r in &listing.ranges {
            if let Some(i) = listing.index_of(r.start) {
                leader[i] = true;
            }
        }
        for t in table_targets {
            if let Some(i) = listing.index_of(*t) {
                leader[i] = true;
            }
        }
        for (i, ins) in listing.insns.iter().enumerate() {
            let fc = ins.flow_control();
            if matches!(
                fc,
                FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch
            ) {
                let t = ins.near_branch_target();
                if let Some(ti) = listing.index_of(t) {
                    leader[ti] = true;
                    branch_sources.entry(t).or_default().push(ins.ip());
                }
            }
            let terminates = ends_flow(image, ins) || fc == FlowControl::ConditionalBranch;
            if terminates && i + 1 < n {
                leader[i + 1] = true;
            }
        }
        let mut blocks = Vec::new();
        let mut block_of_insn = vec![0; n];
        let mut start = 0;
        for i in 0..n {
            if i > start && leader[i] {
                blocks.push(Block {
                    start,
                    end: i,
                    succs: vec![],
                    exit: None,
                    indirect: false,
                });
                start = i;
            }
            block_of_insn[i] = blocks.len();
        }
        if n > 0 {
            blocks.push(Block {
                start,
                end: n,
                succs: vec![],
                exit: None,
                indirect: false,
            });
        }
        let target_blocks: Vec<usize> = table_targets
            .iter()
            .filter_map(|t| listing.index_of(*t).map(|i| block_of_insn[i]))
            .collect();
        let mut falls_off = Vec::new();
        for b in &mut blocks {
            let last = b.end - 1;
            let ins = &listing.insns[last];
            let mut fall = true;
            match ins.flow_control() {
                FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
                    let t = ins.near_branch_target();
                    match listing.index_of(t) {
                        Some(ti) => b.succs.push(block_of_insn[ti]),
                        None => b.exit = Some(Exit::TailCall),
                    }
                    fall = ins.flow_control() == FlowControl::ConditionalBranch;
                }
                FlowControl::IndirectBranch => {
                    b.indirect = true;
                    b.succs.extend(target_blocks.iter().copied());
                    fall = false;
                }
                FlowControl::Return => {
                    b.exit = Some(Exit::Return);
                    fall = false;
                }
                _ => {
                    if ends_flow(image, ins) || is_noreturn_call(image, ins) {
                        fall = false;
                    }
                }
            }
            if fall {
                if listing.falls_into_next(last) {
                    b.succs.push(block_of_insn[last + 1]);
                } else {
                    falls_off.push(ins.ip());
                }
            }
            b.succs.sort_unstable();
            b.succs.dedup();
        }
        Cfg {
            blocks,
            block_of_insn,
            branch_sources,
            table_targets: table_targets.clone(),
            falls_off,
        }
    }

    /// Predecessor lists.
    pub fn preds(&self) -> Vec<Vec<usize>> {
        let mut p = vec![Vec::new(); self.blocks.len()];
        for (i, b) in self.blocks.iter().enumerate() {
            for s in &b.succs {
                p[*s].push(i);
            }
        }
        p
    }

    /// Whether a direct branch or a table slot can transfer control to `addr`.
    pub fn is_jump_target(&self, addr: u64) -> bool {
        self.branch_sources.contains_key(&addr) || self.table_targets.contains(&addr)
    }
}
