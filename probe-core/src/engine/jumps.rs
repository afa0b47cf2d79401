//! Bias-site inference at dispatch time (DESIGN-NOTES §4).
//!
//! The source patch updates the bias wherever CPython redirects
//! `next_instr` (`JUMPBY`/`JUMPTO`). The rewritten binary only sees each
//! dispatch: `N` (the `next_instr` index being dispatched), `Q` (the frame's
//! recorded previous instruction index, still stale, which is exactly the
//! source patch's jump source) and the opcode stored at `Q`. From these,
//! rules R0–R3 decide whether a bias site `Q → N` happened; SEND's
//! StopIteration path and inlined calls (via [`start_frame_fix`]) need the
//! corrections the notes list.

/// A bias site (§4.2): `bias += source + 1 − dest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BiasSite {
    pub source: i64,
    pub dest: i64,
}

/// Which rule classified a dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// R0: `N == Q`, the same instruction dispatched again (specialization
    /// `next_instr--`, instrumentation re-dispatch, `f_lineno` jumps).
    Redispatch,
    /// R1: `N == Q + 1`.
    Next,
    /// R2: `N` is the natural fall-through of the instruction at `Q`
    /// (`Q + 1 + caches(deopt(op))`, or `Q + 2` after a superinstruction).
    FallThrough,
    /// SEND's non-generator StopIteration path: `JUMPBY(oparg)` then
    /// `next_instr += 1`, a site `Q → N − 1`.
    SendStopIteration,
    /// R3: any other transfer, a site `Q → N`.
    Jump,
}

impl Rule {
    /// The bias site this rule implies for `Q → N`.
    pub fn site(self, q: i64, n: i64) -> Option<BiasSite> {
        match self {
            Rule::Redispatch | Rule::Next | Rule::FallThrough => None,
            Rule::SendStopIteration => Some(BiasSite {
                source: q,
                dest: n.wrapping_sub(1),
            }),
            Rule::Jump => Some(BiasSite { source: q, dest: n }),
        }
    }
}

/// Per-opcode facts of one CPython build the rules need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpcodeTables {
    /// `_PyOpcode_Caches`: inline cache entries per (base) opcode.
    pub caches: [u8; 256],
    /// `_PyOpcode_Deopt`: base opcode of each (specialized) opcode.
    pub deopt: [u8; 256],
    /// Superinstructions (`LOAD_FAST__LOAD_FAST`, …): their natural
    /// successor is at `Q + 2`.
    pub superinstruction: [bool; 256],
    /// The base `SEND` opcode, when the build has SEND's StopIteration path.
    pub send: Option<u8>,
}

impl OpcodeTables {
    /// Tables from the descriptor's cache and deopt arrays, with no
    /// superinstructions and no SEND rule yet.
    pub fn new(caches: [u8; 256], deopt: [u8; 256]) -> Self {
        OpcodeTables {
            caches,
            deopt,
            superinstruction: [false; 256],
            send: None,
        }
    }

    /// Marks `ops` as superinstructions.
    pub fn with_superinstructions(mut self, ops: &[u8]) -> Self {
        for &op in ops {
            self.superinstruction[usize::from(op)] = true;
        }
        self
    }

    /// Enables the SEND StopIteration rule for base opcode `send`.
    pub fn with_send(mut self, send: u8) -> Self {
        self.send = Some(send);
        self
    }

    /// The base opcode of `op`.
    pub fn deopt(&self, op: u8) -> u8 {
        self.deopt[usize::from(op)]
    }

    /// Inline cache entries following an instruction with opcode `op`.
    pub fn caches_of(&self, op: u8) -> u8 {
        self.caches[usize::from(self.deopt(op))]
    }

    /// Index of the natural successor of the instruction at `q` with opcode
    /// `op`.
    pub fn fall_through(&self, q: i64, op: u8) -> i64 {
        let width = if self.superinstruction[usize::from(op)] {
            2
        } else {
            1 + i64::from(self.caches_of(op))
        };
        q.wrapping_add(width)
    }
}

/// The classification of one dispatch and the bias site it implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inferred {
    pub rule: Rule,
    pub site: Option<BiasSite>,
}

/// Classifies the dispatch of index `n` in a frame whose previous
/// instruction index is `q`, holding opcode `op_at_q` (the byte in the live,
/// possibly specialized, bytecode; `CACHE` when `q` is a cache slot).
pub fn infer_dispatch(tables: &OpcodeTables, q: i64, n: i64, op_at_q: u8) -> Inferred {
    let rule = if n == q {
        Rule::Redispatch
    } else if n == q.wrapping_add(1) {
        Rule::Next
    } else if n == tables.fall_through(q, op_at_q) {
        Rule::FallThrough
    } else if tables
        .send
        .is_some_and(|send| tables.deopt(op_at_q) == send)
    {
        Rule::SendStopIteration
    } else {
        Rule::Jump
    };
    Inferred {
        rule,
        site: rule.site(q, n),
    }
}

/// The inlined-call correction (DESIGN-NOTES §4.1): when a frame starts
/// whose `previous` is a Python frame with `prev_instr` index
/// `caller_prev_instr`, the caller jumped from its last dispatched
/// instruction `last_q` to `caller_prev_instr + 1` (the cache skip before
/// `DISPATCH_INLINED`). `None` when that is the plain successor (no caches
/// skipped, e.g. `CALL_FUNCTION_EX`).
pub fn start_frame_fix(last_q: i64, caller_prev_instr: i64) -> Option<BiasSite> {
    let dest = caller_prev_instr.wrapping_add(1);
    (dest != last_q.wrapping_add(1)).then_some(BiasSite {
        source: last_q,
        dest,
    })
}
