//! Runs generated dispatch stubs for real and checks their fast path against
//! the algorithm of `trampolines::dispatch` (module doc), case by case and
//! with a property test against a pure-Rust model.
//!
//! One anonymous mapping holds the fake descriptor, the [`HotFrame`] that
//! `cur_record` points at, a fake `_PyInterpreterFrame` (only `prev_instr`
//! at 0x38 matters), a handler that counts its runs, a hand-written thunk
//! and the generated program. The thunk is
//!
//! ```text
//! thunk(frame: rdi, next_instr: rsi, stub: rdx, regs: rcx)
//!     push rbx, rbp, r12, r13, r14, r15, rcx, rdx
//!     mov  rbx, rdi                  ; FRAME  (3.12 layout)
//!     mov  r10, rsi                  ; NEXT
//!     mov  [rcx + 8*4], rsp          ; in.rsp := rsp at the call
//!     mov  r, [rcx + 8*r]            ; every other register but rsp (rcx last)
//!     call [rsp]                     ; the stub, which jumps to the handler
//!     xchg rcx, [rsp + 8]            ; rcx := regs, slot := the rcx after the call
//!     mov  [rcx + 128 + 8*r], r      ; out[r] (rcx from the slot)
//!     add  rsp, 16 ; pop r15 … rbx ; ret
//! ```
//!
//! so `regs[0..16]` is the register state entering the stub and
//! `regs[16..32]` the state the handler returned with.

mod common;
#[path = "common/thunk.rs"]
mod thunk;

use common::Mapping;
use proptest::prelude::*;
use retrace_abi::{field, Descriptor, HotFrame, SavedRegisters, HOT_PENDING};
use std::cell::RefCell;
use std::sync::atomic::Ordering::SeqCst;
use thunk::{red_zone_word, thunk_bytes as stack_thunk_bytes, ThunkCtx};
use trampolines::{generate, DispatchRegisters, ProgramInput, StubRequest};

// The real 3.12 layout.
const RBX: u8 = 3;
const R10: u8 = 10;
const SCRATCH: [u8; 2] = [0, 11];
const PREV_INSTR: usize = 0x38;
const RSP: usize = 4;

/// What the record's `parent`, `flags` and `persistent` hold in every test: the
/// stubs never touch them (they belong to the hook fast paths and the runtime).
const TAIL: [u64; 3] = [0x7a7a_0000_0000_1234, HOT_PENDING, 0x5eed_5eed_5eed_5eed];

// Mapping layout.
const MAP_LEN: usize = 0x7000;
const FRAME_OFF: usize = 0x2000;
const RECORD_OFF: usize = 0x2100;
const HANDLER_COUNT_OFF: usize = 0x2200;
/// "Bytecode": instruction pointers are addresses into this buffer (never dereferenced).
const CODE_OFF: usize = 0x3000;
const CODE_LEN: usize = 0x1000;
const EXEC_OFF: usize = 0x4000;
const HANDLER_OFF: usize = 0x4000;
/// The fake raise entry (counts its runs at `RAISE_COUNT_OFF`).
const RAISE_ENTRY_OFF: usize = 0x4040;
const RAISE_COUNT_OFF: usize = 0x2208;
const THUNK_OFF: usize = 0x4100;
const TEXT_OFF: usize = 0x4800;

/// The stubs of the fixture, by index.
#[derive(Clone, Copy, Debug)]
struct Shape {
    opcode: u8,
    width: u8,
    classify_next: bool,
}

const SHAPES: [Shape; 4] = [
    Shape {
        opcode: 10,
        width: 2,
        classify_next: false,
    },
    Shape {
        opcode: 20,
        width: 4,
        classify_next: false,
    },
    Shape {
        opcode: 30,
        width: 8,
        classify_next: false,
    },
    // SEND: one inline cache.
    Shape {
        opcode: 40,
        width: 4,
        classify_next: true,
    },
];
const PLAIN: usize = 0;
const WIDE: usize = 2;
const SEND: usize = 3;

/// What `rt_dispatch` saw: opcode, frame (rbx) and next_instr (r10).
type RuntimeCall = (u64, u64, u64);

thread_local! {
    static RUNTIME_CALLS: RefCell<Vec<RuntimeCall>> = const { RefCell::new(Vec::new()) };
    /// When non-zero, the fake runtime sets `raise_pending` at this address
    /// (what the real runtime does when a callback raised).
    static RAISE_WORD: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

extern "C" fn rt_dispatch(regs: *mut SavedRegisters, opcode: u64) -> u64 {
    // SAFETY: the slow path passes a valid, exclusively ours block.
    let regs = unsafe { &*regs };
    let call = (
        opcode,
        regs.gpr[usize::from(RBX)],
        regs.gpr[usize::from(R10)],
    );
    RUNTIME_CALLS.with(|c| c.borrow_mut().push(call));
    let word = RAISE_WORD.with(|w| w.get());
    if word != 0 {
        // SAFETY: the test set it to the fixture descriptor's `raise_pending`.
        unsafe { std::ptr::write_volatile(word as *mut u64, 1) };
        return 1;
    }
    0
}

fn take_runtime_calls() -> Vec<RuntimeCall> {
    RUNTIME_CALLS.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

/// A [`HotFrame`]'s fields as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rec {
    frame: u64,
    expect: u64,
    last_n: u64,
    ord: u64,
    bias: i64,
}

/// The algorithm of the stub (module doc of `trampolines::dispatch`): the
/// record after dispatching `n` in `frame` with `prev_instr == q`, and whether
/// the dispatch went to the runtime.
fn model(rec: Rec, frame: u64, q: u64, n: u64, shape: Shape) -> (Rec, bool) {
    if rec.frame != frame || rec.last_n != q {
        return (rec, true);
    }
    let mut bias = rec.bias;
    // R2 (natural successor), R0 (re-dispatch), R1 (next code unit) keep the bias.
    if n != rec.expect && n != q && n != q.wrapping_add(2) {
        // R3: a jump, in code units.
        bias = bias.wrapping_add((q.wrapping_add(2).wrapping_sub(n) as i64) / 2);
    }
    let last_n = if shape.classify_next { n | 1 } else { n };
    let after = Rec {
        frame: rec.frame,
        expect: n.wrapping_add(u64::from(shape.width)),
        last_n,
        ord: 0,
        bias,
    };
    (after, false)
}

/// `mov r64, [rcx + disp32]`.
fn load_from_rcx(reg: u8, disp: i32) -> Vec<u8> {
    let mut v = vec![0x48 | ((reg >> 3) << 2), 0x8b, 0x80 | ((reg & 7) << 3) | 1];
    v.extend_from_slice(&disp.to_le_bytes());
    v
}

/// `mov [rcx + disp32], r64`.
fn store_to_rcx(reg: u8, disp: i32) -> Vec<u8> {
    let mut v = vec![0x48 | ((reg >> 3) << 2), 0x89, 0x80 | ((reg & 7) << 3) | 1];
    v.extend_from_slice(&disp.to_le_bytes());
    v
}

fn thunk_bytes() -> Vec<u8> {
    let mut t = vec![
        0x53, // push rbx
        0x55, // push rbp
        0x41, 0x54, // push r12
        0x41, 0x55, // push r13
        0x41, 0x56, // push r14
        0x41, 0x57, // push r15
        0x51, // push rcx (regs)
        0x52, // push rdx (stub)
        0x48, 0x89, 0xfb, // mov rbx, rdi
        0x49, 0x89, 0xf2, // mov r10, rsi
        0x48, 0x89, 0x61, 0x20, // mov [rcx + 32], rsp
    ];
    for r in [0u8, 2, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 1] {
        t.extend(load_from_rcx(r, 8 * i32::from(r)));
    }
    t.extend_from_slice(&[0xff, 0x14, 0x24]); // call [rsp]
    t.extend_from_slice(&[0x48, 0x87, 0x4c, 0x24, 0x08]); // xchg rcx, [rsp + 8]
    for r in (0u8..16).filter(|&r| r != 1) {
        t.extend(store_to_rcx(r, 128 + 8 * i32::from(r)));
    }
    t.extend_from_slice(&[0x48, 0x8b, 0x44, 0x24, 0x08]); // mov rax, [rsp + 8]
    t.extend(store_to_rcx(0, 128 + 8)); // out.rcx
    t.extend_from_slice(&[
        0x48, 0x83, 0xc4, 0x10, // add rsp, 16
        0x41, 0x5f, // pop r15
        0x41, 0x5e, // pop r14
        0x41, 0x5d, // pop r13
        0x41, 0x5c, // pop r12
        0x5d, // pop rbp
        0x5b, // pop rbx
        0xc3, // ret
    ]);
    t
}

type Thunk = extern "C" fn(u64, u64, u64, *mut u64);

/// Everything one dispatch did.
#[derive(Debug)]
struct Outcome {
    rec: Rec,
    runtime_calls: Vec<RuntimeCall>,
    /// Increase of `dispatch_counts[opcode]`.
    counted: u64,
    handler_runs: u64,
    regs_in: [u64; 16],
    regs_out: [u64; 16],
}

impl Outcome {
    fn slow(&self) -> bool {
        !self.runtime_calls.is_empty()
    }
}

struct Fixture {
    map: Mapping,
    stubs: Vec<u64>,
    thunk: Thunk,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::build(false)
    }

    /// With `raise`, the program has a raise entry (`RAISE_ENTRY_OFF`).
    fn build(raise: bool) -> Fixture {
        let mut map = Mapping::new(MAP_LEN);
        assert!(std::mem::size_of::<Descriptor>() <= FRAME_OFF);
        map.write(0, Descriptor::new().as_bytes());
        // The handler: inc qword [rip + handler_count]; ret
        let disp = map.addr(HANDLER_COUNT_OFF) as i64 - (map.addr(HANDLER_OFF) as i64 + 7);
        let mut handler = vec![0x48, 0xff, 0x05];
        handler.extend_from_slice(&i32::try_from(disp).unwrap().to_le_bytes());
        handler.push(0xc3);
        map.write(HANDLER_OFF, &handler);
        // The raise entry: inc qword [rip + raise_count]; ret
        let disp = map.addr(RAISE_COUNT_OFF) as i64 - (map.addr(RAISE_ENTRY_OFF) as i64 + 7);
        let mut entry = vec![0x48, 0xff, 0x05];
        entry.extend_from_slice(&i32::try_from(disp).unwrap().to_le_bytes());
        entry.push(0xc3);
        map.write(RAISE_ENTRY_OFF, &entry);
        let thunk = thunk_bytes();
        assert!(THUNK_OFF + thunk.len() <= TEXT_OFF);
        map.write(THUNK_OFF, &thunk);
        let requests: Vec<StubRequest> = SHAPES
            .iter()
            .map(|s| StubRequest {
                opcode: s.opcode,
                handler: map.addr(HANDLER_OFF),
                width: s.width,
                classify_next: s.classify_next,
                entry_exit: false,
            })
            .collect();
        let program = generate(&ProgramInput {
            text_vaddr: map.addr(TEXT_OFF),
            descriptor_vaddr: map.addr(0),
            stubs: &requests,
            registers: DispatchRegisters {
                frame: RBX,
                next_instr: R10,
                scratch: SCRATCH,
                prev_instr_offset: PREV_INSTR as i32,
                tstate_offset: Some(8),
                raise_entry: raise.then(|| map.addr(RAISE_ENTRY_OFF)),
            },
            hooks: &[],
            flags_live_at_handlers: false,
        })
        .unwrap();
        assert!(TEXT_OFF + program.bytes.len() <= MAP_LEN);
        map.write(TEXT_OFF, &program.bytes);
        map.descriptor().rt_dispatch = rt_dispatch as *const () as u64;
        map.descriptor().cur_record = map.addr(RECORD_OFF);
        const { assert!(std::mem::size_of::<HotFrame>() == 64) };
        const { assert!(RECORD_OFF + 64 <= HANDLER_COUNT_OFF) };
        for (i, w) in TAIL.iter().enumerate() {
            map.write(RECORD_OFF + 40 + 8 * i, &w.to_le_bytes());
        }
        map.protect_exec(EXEC_OFF, MAP_LEN - EXEC_OFF);
        let stubs = program.stubs.iter().map(|s| s.address).collect();
        // SAFETY: the thunk bytes above implement exactly this C signature
        // (callee-saved registers restored, stack balanced) and the mapping
        // holding them lives as long as the fixture.
        let thunk: Thunk = unsafe { std::mem::transmute(map.addr(THUNK_OFF) as usize) };
        take_runtime_calls();
        Fixture { map, stubs, thunk }
    }

    /// The fake frame's address (what the frame register holds).
    fn frame(&self) -> u64 {
        self.map.addr(FRAME_OFF)
    }

    /// The address of code unit `unit` of the fake bytecode.
    fn instr(&self, unit: u64) -> u64 {
        assert!(unit * 2 < CODE_LEN as u64);
        self.map.addr(CODE_OFF) + 2 * unit
    }

    fn hot(&self) -> &HotFrame {
        // SAFETY: RECORD_OFF is in bounds of the RW part of our mapping, which
        // is zero-initialised (a valid HotFrame: plain atomics) and 8-aligned;
        // the reference borrows `self`, which owns the mapping.
        unsafe { &*(self.map.addr(RECORD_OFF) as *const HotFrame) }
    }

    fn record(&self) -> Rec {
        let h = self.hot();
        Rec {
            frame: h.frame.load(SeqCst),
            expect: h.expect.load(SeqCst),
            last_n: h.last_n.load(SeqCst),
            ord: h.ord.load(SeqCst),
            bias: h.bias.load(SeqCst),
        }
    }

    fn set_record(&self, r: Rec) {
        let h = self.hot();
        h.frame.store(r.frame, SeqCst);
        h.expect.store(r.expect, SeqCst);
        h.last_n.store(r.last_n, SeqCst);
        h.ord.store(r.ord, SeqCst);
        h.bias.store(r.bias, SeqCst);
    }

    /// The record's `parent`, `flags` and `persistent` words.
    fn tail(&self) -> [u64; 3] {
        let h = self.hot();
        [
            h.parent.load(SeqCst),
            h.flags.load(SeqCst),
            h.persistent.load(SeqCst),
        ]
    }

    fn set_prev_instr(&self, q: u64) {
        self.map.write(FRAME_OFF + PREV_INSTR, &q.to_le_bytes());
    }

    fn read_u64(&self, off: usize) -> u64 {
        // SAFETY: `off` is an 8-aligned offset inside our RW data pages.
        unsafe { std::ptr::read_volatile(self.map.addr(off) as *const u64) }
    }

    fn count(&self, opcode: u8) -> u64 {
        self.read_u64(field::DISPATCH_COUNTS + 8 * usize::from(opcode))
    }

    /// Dispatch `n` through stub `stub` with the frame register holding
    /// `frame` and the fake frame's `prev_instr` holding `q`.
    fn dispatch(&self, stub: usize, frame: u64, q: u64, n: u64) -> Outcome {
        self.set_prev_instr(q);
        let opcode = SHAPES[stub].opcode;
        let count_before = self.count(opcode);
        let handler_before = self.read_u64(HANDLER_COUNT_OFF);
        let mut regs = [0u64; 32];
        for (r, v) in regs[..16].iter_mut().enumerate() {
            *v = 0x5a00_0000_0000_0000 | ((r as u64) << 40) | (n.rotate_left(r as u32) & 0xffff);
        }
        take_runtime_calls();
        (self.thunk)(frame, n, self.stubs[stub], regs.as_mut_ptr());
        let mut regs_in = [0u64; 16];
        regs_in.copy_from_slice(&regs[..16]);
        regs_in[usize::from(RBX)] = frame;
        regs_in[usize::from(R10)] = n;
        let mut regs_out = [0u64; 16];
        regs_out.copy_from_slice(&regs[16..]);
        assert_eq!(self.tail(), TAIL, "a stub wrote parent/flags/persistent");
        Outcome {
            rec: self.record(),
            runtime_calls: take_runtime_calls(),
            counted: self.count(opcode) - count_before,
            handler_runs: self.read_u64(HANDLER_COUNT_OFF) - handler_before,
            regs_in,
            regs_out,
        }
    }

    /// Dispatch and check everything the model and the register contract
    /// determine; returns the outcome for further checks.
    fn dispatch_checked(&self, stub: usize, frame: u64, q: u64, n: u64) -> Outcome {
        let before = self.record();
        let shape = SHAPES[stub];
        let (expected, slow) = model(before, frame, q, n, shape);
        let out = self.dispatch(stub, frame, q, n);
        assert_eq!(
            out.rec, expected,
            "record; before {before:x?}, q {q:#x}, n {n:#x}"
        );
        assert_eq!(out.handler_runs, 1, "the handler runs exactly once");
        if slow {
            assert_eq!(out.runtime_calls, [(u64::from(shape.opcode), frame, n)]);
            assert_eq!(out.counted, 1, "the slow path counts");
        } else {
            assert_eq!(
                out.runtime_calls,
                [],
                "the fast path must not call the runtime"
            );
            assert_eq!(out.counted, 0, "the fast path does not count");
        }
        assert_registers_preserved(&out);
        out
    }
}

/// Every register but the two scratch registers reaches the handler unchanged.
fn assert_registers_preserved(out: &Outcome) {
    for r in 0..16 {
        if SCRATCH.contains(&(r as u8)) {
            continue;
        }
        assert_eq!(
            out.regs_out[r], out.regs_in[r],
            "register {r} changed: {:#x} -> {:#x}",
            out.regs_in[r], out.regs_out[r]
        );
    }
    assert_eq!(out.regs_out[RSP], out.regs_in[RSP], "rsp");
}

/// A record whose fast path would hit for `q → q + width` if everything matched.
fn straight_line(f: &Fixture, q: u64, width: u64) -> Rec {
    Rec {
        frame: f.frame(),
        expect: q + width,
        last_n: q,
        ord: 3,
        bias: 5,
    }
}

#[test]
fn a_other_frame_takes_the_slow_path() {
    let f = Fixture::new();
    let q = f.instr(100);
    for other in [0, f.frame() + 0x100, f.frame() ^ 1 << 40] {
        let rec = Rec {
            frame: other,
            ..straight_line(&f, q, 2)
        };
        f.set_record(rec);
        let out = f.dispatch_checked(PLAIN, f.frame(), q, q + 2);
        assert!(out.slow());
        assert_eq!(out.rec, rec, "the slow path leaves the record alone");
        assert_eq!(out.runtime_calls, [(10, f.frame(), q + 2)]);
    }
    assert_eq!(f.count(10), 3);
    // Other opcodes' counters are untouched.
    assert_eq!((f.count(20), f.count(30), f.count(40)), (0, 0, 0));
}

#[test]
fn b_moved_prev_instr_takes_the_slow_path() {
    let f = Fixture::new();
    let q = f.instr(100);
    for last_n in [q + 2, q - 2, 1, q | 1, 0] {
        let rec = Rec {
            last_n,
            ..straight_line(&f, q, 4)
        };
        f.set_record(rec);
        // N is the expected successor: only the moved prev_instr sends it slow.
        let out = f.dispatch_checked(1, f.frame(), q, q + 4);
        assert!(out.slow());
        assert_eq!(out.rec, rec);
        assert_eq!(out.runtime_calls, [(20, f.frame(), q + 4)]);
    }
    assert_eq!(f.count(20), 5);
}

#[test]
fn c_natural_successor_is_a_hit() {
    let f = Fixture::new();
    for (stub, width) in [(0, 2u64), (1, 4), (2, 8)] {
        let q = f.instr(200);
        let n = q + 6; // what the previous instruction's stub expected
        f.set_record(Rec {
            expect: n,
            ..straight_line(&f, q, 6)
        });
        let out = f.dispatch_checked(stub, f.frame(), q, n);
        assert!(!out.slow());
        assert_eq!(
            out.rec,
            Rec {
                frame: f.frame(),
                expect: n + width,
                last_n: n,
                ord: 0,
                bias: 5,
            }
        );
    }
    // The expected successor may be anything the previous stub stored: no bias.
    let q = f.instr(10);
    let n = f.instr(300);
    f.set_record(Rec {
        expect: n,
        ..straight_line(&f, q, 2)
    });
    let out = f.dispatch_checked(PLAIN, f.frame(), q, n);
    assert_eq!(out.rec.bias, 5);
    assert_eq!((out.rec.last_n, out.rec.expect), (n, n + 2));
    assert_eq!(f.count(10) + f.count(20) + f.count(30), 0);
}

#[test]
fn d_redispatch_keeps_the_bias() {
    let f = Fixture::new();
    let q = f.instr(50);
    f.set_record(straight_line(&f, q, 4));
    let out = f.dispatch_checked(WIDE, f.frame(), q, q);
    assert!(!out.slow());
    assert_eq!(
        out.rec,
        Rec {
            frame: f.frame(),
            expect: q + 8,
            last_n: q,
            ord: 0,
            bias: 5,
        }
    );
}

#[test]
fn e_next_code_unit_keeps_the_bias() {
    let f = Fixture::new();
    let q = f.instr(50);
    // The previous instruction had a cache: its natural successor is q + 4,
    // but q + 2 (the next code unit) is straight-line too.
    f.set_record(straight_line(&f, q, 4));
    let out = f.dispatch_checked(PLAIN, f.frame(), q, q + 2);
    assert!(!out.slow());
    assert_eq!(
        out.rec,
        Rec {
            frame: f.frame(),
            expect: q + 4,
            last_n: q + 2,
            ord: 0,
            bias: 5,
        }
    );
}

#[test]
fn f_jumps_move_the_bias() {
    let f = Fixture::new();
    let q = f.instr(500);
    // Backward: bias += (Q + 2 − N) / 2 = 22 / 2.
    f.set_record(straight_line(&f, q, 2));
    let n = q - 20;
    let out = f.dispatch_checked(PLAIN, f.frame(), q, n);
    assert!(!out.slow());
    assert_eq!(
        out.rec,
        Rec {
            frame: f.frame(),
            expect: n + 2,
            last_n: n,
            ord: 0,
            bias: 5 + 11,
        }
    );
    // Forward, not the expected successor: bias += (2 − 40) / 2.
    f.set_record(straight_line(&f, q, 4));
    let n = q + 40;
    let out = f.dispatch_checked(1, f.frame(), q, n);
    assert_eq!(
        out.rec,
        Rec {
            frame: f.frame(),
            expect: n + 4,
            last_n: n,
            ord: 0,
            bias: 5 - 19,
        }
    );
    // Negative biases accumulate with the sign intact.
    f.set_record(Rec {
        bias: -100,
        ..straight_line(&f, q, 2)
    });
    let out = f.dispatch_checked(PLAIN, f.frame(), q, q + 200);
    assert_eq!(out.rec.bias, -100 - 99);
    // A jump to the unit after next (Q + 4, not expected) is a jump too: -1.
    f.set_record(straight_line(&f, q, 2));
    let out = f.dispatch_checked(PLAIN, f.frame(), q, q + 4);
    assert_eq!(out.rec.bias, 5 - 1);
    // A chain of fast-path jumps, each following the previous one:
    // (2 + 100) / 2, then R1, then (q0 - 98 + 2 - (q0 + 300)) / 2.
    f.set_record(Rec {
        bias: 0,
        ..straight_line(&f, q, 2)
    });
    let mut q = q;
    for (n, delta) in [(q - 100, 51), (q - 100 + 2, 0), (q + 300, -198)] {
        let before = f.record().bias;
        let out = f.dispatch_checked(PLAIN, f.frame(), q, n);
        assert_eq!(out.rec.bias - before, delta);
        q = n;
    }
    assert_eq!(f.count(10) + f.count(20), 0);
}

#[test]
fn g_classify_next_forces_the_next_dispatch_to_the_runtime() {
    let f = Fixture::new();
    let q = f.instr(40);
    f.set_record(straight_line(&f, q, 2));
    let n = q + 2;
    let out = f.dispatch(SEND, f.frame(), q, n);
    assert!(!out.slow(), "SEND itself is dispatched on the fast path");
    assert_eq!(out.counted, 0);
    assert_eq!(out.handler_runs, 1);
    assert_registers_preserved(&out);
    assert_eq!(
        (out.rec.frame, out.rec.expect, out.rec.ord, out.rec.bias),
        (f.frame(), n + 4, 0, 5)
    );
    assert_eq!(out.rec.last_n & 1, 1, "last_n must carry the classify mark");
    // The dispatch after SEND (prev_instr = N now) goes to the runtime, even
    // to the natural successor.
    let rec = out.rec;
    let out = f.dispatch(PLAIN, f.frame(), n, n + 4);
    assert!(out.slow());
    assert_eq!(out.runtime_calls, [(10, f.frame(), n + 4)]);
    assert_eq!(out.counted, 1);
    assert_eq!(out.rec, rec);
}

/// SEND's stub must leave `N | 1` in `last_n`, as the runtime does
/// (`on_dispatch` stores `n_ptr | marker`): `inlined_call_fix` recovers the
/// last dispatched instruction as `last_n & !1` when SEND enters a generator
/// frame inline (`DISPATCH_INLINED`).
#[test]
fn g_classify_next_keeps_n_in_last_n() {
    let f = Fixture::new();
    let q = f.instr(40);
    f.set_record(straight_line(&f, q, 2));
    let n = q + 2;
    let out = f.dispatch_checked(SEND, f.frame(), q, n);
    assert_eq!(out.rec.last_n, n | 1);
    assert_eq!(out.rec.last_n & !1, n);
}

#[test]
fn h_fast_path_resets_the_ordinal() {
    let f = Fixture::new();
    let q = f.instr(60);
    for (ord, n) in [(1, q + 2), (u64::MAX, q), (0x1234_5678_9abc, q - 8)] {
        f.set_record(Rec {
            ord,
            ..straight_line(&f, q, 2)
        });
        let out = f.dispatch_checked(PLAIN, f.frame(), q, n);
        assert!(!out.slow());
        assert_eq!(out.rec.ord, 0);
    }
    // The slow path leaves it to the runtime.
    f.set_record(Rec {
        ord: 9,
        last_n: 1,
        ..straight_line(&f, q, 2)
    });
    let out = f.dispatch_checked(PLAIN, f.frame(), q, q + 2);
    assert!(out.slow());
    assert_eq!(out.rec.ord, 9);
}

#[test]
fn i_fast_path_preserves_registers() {
    let f = Fixture::new();
    let q = f.instr(70);
    // Hit, R0, R1 and R3, through different stub shapes.
    for (stub, n) in [(PLAIN, q + 4), (1, q), (WIDE, q + 2), (PLAIN, q - 30)] {
        f.set_record(straight_line(&f, q, 4));
        let out = f.dispatch_checked(stub, f.frame(), q, n);
        assert!(!out.slow());
        // Spelled out for the registers the eval loop keeps live.
        for r in [3usize, 10, 1, 2, 5, 6, 7, 8, 9, 12, 13, 14, 15] {
            assert_eq!(out.regs_out[r], out.regs_in[r], "register {r}");
        }
        assert_eq!(out.regs_out[3], f.frame());
        assert_eq!(out.regs_out[10], n);
    }
    // And so does the slow path.
    f.set_record(Rec {
        frame: 0,
        ..straight_line(&f, q, 2)
    });
    let out = f.dispatch_checked(PLAIN, f.frame(), q, q + 2);
    assert!(out.slow());
}

/// Raw choices for one dispatch; resolved against a fixture by [`Case::resolve`].
#[derive(Clone, Debug)]
struct Case {
    stub: usize,
    frame_sel: u8,
    q_unit: u64,
    last_sel: u8,
    last_unit: u64,
    expect_sel: u8,
    expect_unit: u64,
    n_sel: u8,
    n_unit: u64,
    ord: u64,
    bias: i64,
}

const UNITS: u64 = (CODE_LEN / 2) as u64;

fn case(stubs: std::ops::Range<usize>) -> impl Strategy<Value = Case> {
    (
        stubs,
        0u8..4,
        0..UNITS,
        (0u8..6, 0..UNITS),
        (0u8..5, 0..UNITS),
        (0u8..6, 0..UNITS),
        prop_oneof![Just(0u64), any::<u64>()],
        -1_000_000i64..1_000_000,
    )
        .prop_map(
            |(
                stub,
                frame_sel,
                q_unit,
                (last_sel, last_unit),
                (expect_sel, expect_unit),
                (n_sel, n_unit),
                ord,
                bias,
            )| Case {
                stub,
                frame_sel,
                q_unit,
                last_sel,
                last_unit,
                expect_sel,
                expect_unit,
                n_sel,
                n_unit,
                ord,
                bias,
            },
        )
}

impl Case {
    /// (record, frame register, Q, N); the boundary cases are favoured.
    fn resolve(&self, f: &Fixture) -> (Rec, u64, u64, u64) {
        let frame = f.frame();
        let q = f.instr(self.q_unit);
        let any = |unit: u64| f.instr(unit);
        let record_frame = match self.frame_sel {
            0 => 0,
            1 => frame + 0x40,
            _ => frame,
        };
        let last_n = match self.last_sel {
            0 => 1,
            1 => any(self.last_unit),
            2 => any(self.last_unit) | 1,
            _ => q,
        };
        let expect = match self.expect_sel {
            0 => q + 2,
            1 => q + 4,
            2 => q + 8,
            3 => any(self.expect_unit),
            _ => 0,
        };
        let n = match self.n_sel {
            0 => expect,
            1 => q,
            2 => q + 2,
            3 => q + 4,
            _ => any(self.n_unit),
        };
        let rec = Rec {
            frame: record_frame,
            expect,
            last_n,
            ord: self.ord,
            bias: self.bias,
        };
        (rec, frame, q, n)
    }
}

fn check_case(f: &Fixture, c: &Case) -> Result<(), TestCaseError> {
    let (rec, frame, q, n) = c.resolve(f);
    f.set_record(rec);
    let (expected, slow) = model(rec, frame, q, n, SHAPES[c.stub]);
    let out = f.dispatch(c.stub, frame, q, n);
    prop_assert_eq!(out.rec, expected, "q {:#x}, n {:#x}", q, n);
    prop_assert_eq!(out.slow(), slow);
    prop_assert_eq!(out.counted, u64::from(slow));
    prop_assert_eq!(out.handler_runs, 1);
    if slow {
        let call = (u64::from(SHAPES[c.stub].opcode), frame, n);
        prop_assert_eq!(out.runtime_calls.as_slice(), &[call][..]);
    }
    for r in (0..16).filter(|r| !SCRATCH.contains(&(*r as u8))) {
        prop_assert_eq!(out.regs_out[r], out.regs_in[r], "register {}", r);
    }
    Ok(())
}

/// One step of a dispatch sequence in one frame: which stub, where the
/// handler went next, and whether something else moved `prev_instr`.
#[derive(Clone, Debug)]
struct Step {
    stub: usize,
    next_sel: u8,
    next_unit: u64,
    moved: Option<u64>,
}

fn step(stubs: std::ops::Range<usize>) -> impl Strategy<Value = Step> {
    (
        stubs,
        0u8..5,
        0..UNITS - 8,
        prop::option::weighted(0.1, 0..UNITS - 8),
    )
        .prop_map(|(stub, next_sel, next_unit, moved)| Step {
            stub,
            next_sel,
            next_unit,
            moved,
        })
}

/// Runs `steps` in one frame: `prev_instr` is the previous N unless a step
/// moves it, as the handlers of 3.12 set it.
fn check_sequence(f: &Fixture, start: u64, steps: &[Step]) -> Result<(), TestCaseError> {
    let frame = f.frame();
    let mut q = f.instr(start);
    f.set_record(Rec {
        frame,
        expect: q + 2,
        last_n: q,
        ord: 1,
        bias: 0,
    });
    let mut expect_natural = q + 2;
    for s in steps {
        if let Some(unit) = s.moved {
            q = f.instr(unit);
        }
        let n = match s.next_sel {
            0 | 1 => expect_natural,
            2 => q,
            3 => q + 2,
            _ => f.instr(s.next_unit),
        };
        let n = n.min(f.instr(UNITS - 8));
        let before = f.record();
        let (expected, slow) = model(before, frame, q, n, SHAPES[s.stub]);
        let out = f.dispatch(s.stub, frame, q, n);
        prop_assert_eq!(out.rec, expected, "step {:?}, q {:#x}, n {:#x}", s, q, n);
        prop_assert_eq!(out.slow(), slow);
        prop_assert_eq!(out.counted, u64::from(slow));
        if slow {
            // Stand in for the runtime: it resynchronises the record.
            f.set_record(Rec {
                frame,
                expect: n + u64::from(SHAPES[s.stub].width),
                last_n: n,
                ord: 0,
                bias: before.bias,
            });
        }
        q = n;
        expect_natural = n + u64::from(SHAPES[s.stub].width);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn stub_matches_model(c in case(0..SEND)) {
        let f = Fixture::new();
        check_case(&f, &c)?;
    }

    #[test]
    fn dispatch_sequences_match_model(
        start in 8..UNITS - 8,
        steps in prop::collection::vec(step(0..SEND), 1..40),
    ) {
        let f = Fixture::new();
        check_sequence(&f, start, &steps)?;
    }
}

proptest! {
    // Every stub shape, the SEND (`classify_next`) one included.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Includes the SEND stub (`classify_next`); see `g_classify_next_keeps_n_in_last_n`.
    #[test]
    fn all_stubs_match_model(c in case(0..SHAPES.len())) {
        let f = Fixture::new();
        check_case(&f, &c)?;
    }

    #[test]
    fn all_stub_sequences_match_model(
        start in 8..UNITS - 8,
        steps in prop::collection::vec(step(0..SHAPES.len()), 1..40),
    ) {
        let f = Fixture::new();
        check_sequence(&f, start, &steps)?;
    }
}

// ---------------------------------------------------------------------------
// INTERPRETER_EXIT: the entry-frame stub (`StubShape.entry_exit`)
//
// A fixture of its own: the stub reads the thread state at `[rsp + offset]`
// of the code that jumped to it, so its thunk *jumps* to the stub (as the
// eval loop's dispatch does) with known words above rsp:
//
// ```text
// thunk:   push rbx, rbp, r12, r13, r14, r15
//          mov  [saved_rsp], rsp
//          push stack[7], …, stack[0]
//          lea  rax, [back] ; push rax          ; rsp = H: [H] = back, [H + 8 + 8k] = stack[k]
//          mov  [hook_rsp], rsp
//          push [flags_in] ; popfq
//          mov  [rsp - 8k], pattern_k  (k = 1..=16)
//          mov  r, [regs_in + 8r]      (every register but rsp)
//          jmp  [target]               ; the stub; its handler returns to back
// back:    mov  [regs_out + 8r], r     (rsp = H + 8 after the handler's ret)
//          red_zone[k - 1] := [H - 8k]
//          pushfq ; pop [flags_out] ; cld
//          mov  rsp, [saved_rsp] ; pop r15 … rbx ; ret
// ```
//
// and the handler is `mov [handler_rsp], rsp; add qword [handler_count], 1; ret`.

use dynasmrt::{dynasm, x64::X64Relocation, DynasmApi, DynasmLabelApi, VecAssembler};

/// `INTERPRETER_EXIT`'s opcode in 3.12.
const EXIT_OPCODE: u8 = 3;
/// The entry-exit stub, a plain stub sharing the fixture, and an
/// `entry_exit` stub of another opcode.
const X_EXIT: usize = 0;
const X_PLAIN: usize = 1;
const X_EXIT2: usize = 2;
const X_SHAPES: [(u8, u8, bool); 3] = [(EXIT_OPCODE, 2, true), (10, 2, false), (77, 4, true)];

const X_HANDLER_COUNT_OFF: usize = 0x2200;
const X_HANDLER_RSP_OFF: usize = 0x2208;
const X_CTX_OFF: usize = 0x2400;

/// The thread states of the tests (never dereferenced).
const TSTATE: u64 = 0x7f10_7575_0000;
const OTHER_TSTATE: u64 = 0x7f10_7575_1000;

/// The exit thunk's context block (at `X_CTX_OFF`): eight stack words above H.
type XCtx = ThunkCtx<8>;

fn x_handler_bytes(base: usize, count: usize, rsp_word: usize) -> Vec<u8> {
    let mut a = VecAssembler::<X64Relocation>::new(base);
    dynasm!(a
        ; .arch x64
        ; mov QWORD [extern rsp_word], rsp
        ; add QWORD [extern count], 1
        ; ret
    );
    a.finalize().unwrap()
}

thread_local! {
    static EXIT_CALLS: RefCell<Vec<(u64, SavedRegisters)>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn rt_dispatch_exit(regs: *mut SavedRegisters, opcode: u64) -> u64 {
    // SAFETY: the slow path passes a valid, exclusively ours block.
    let regs = unsafe { *regs };
    EXIT_CALLS.with(|c| c.borrow_mut().push((opcode, regs)));
    0
}

fn take_exit_calls() -> Vec<(u64, SavedRegisters)> {
    EXIT_CALLS.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

type XThunk = extern "C" fn();

struct ExitFixture {
    map: Mapping,
    stubs: Vec<u64>,
    thunk: XThunk,
    tstate_offset: Option<i32>,
}

/// Everything one jump to a stub did.
#[derive(Debug)]
struct XOutcome {
    regs_in: [u64; 16],
    regs_out: [u64; 16],
    hook_rsp: u64,
    handler_rsp: u64,
    red_zone: [u64; 16],
    runtime_calls: Vec<(u64, SavedRegisters)>,
    counted: u64,
    handler_runs: u64,
    /// The data pages before the record, the record and the counters:
    /// (descriptor + record) before and after, minus the counters.
    data_before: Vec<u64>,
    data_after: Vec<u64>,
}

impl ExitFixture {
    fn new(tstate_offset: Option<i32>) -> ExitFixture {
        let mut map = Mapping::new(MAP_LEN);
        map.write(0, Descriptor::new().as_bytes());
        let handler = x_handler_bytes(
            map.addr(HANDLER_OFF) as usize,
            map.addr(X_HANDLER_COUNT_OFF) as usize,
            map.addr(X_HANDLER_RSP_OFF) as usize,
        );
        assert!(HANDLER_OFF + handler.len() <= THUNK_OFF);
        map.write(HANDLER_OFF, &handler);
        let thunk =
            stack_thunk_bytes::<8>(map.addr(THUNK_OFF) as usize, map.addr(X_CTX_OFF) as usize);
        assert!(THUNK_OFF + thunk.len() <= TEXT_OFF);
        map.write(THUNK_OFF, &thunk);
        const { assert!(X_CTX_OFF + std::mem::size_of::<XCtx>() <= CODE_OFF) };
        let requests: Vec<StubRequest> = X_SHAPES
            .iter()
            .map(|&(opcode, width, entry_exit)| StubRequest {
                opcode,
                handler: map.addr(HANDLER_OFF),
                width,
                classify_next: false,
                entry_exit,
            })
            .collect();
        let program = generate(&ProgramInput {
            text_vaddr: map.addr(TEXT_OFF),
            descriptor_vaddr: map.addr(0),
            stubs: &requests,
            registers: DispatchRegisters {
                frame: RBX,
                next_instr: R10,
                scratch: SCRATCH,
                prev_instr_offset: PREV_INSTR as i32,
                tstate_offset,
                raise_entry: None,
            },
            hooks: &[],
            flags_live_at_handlers: false,
        })
        .unwrap();
        assert!(TEXT_OFF + program.bytes.len() <= MAP_LEN);
        map.write(TEXT_OFF, &program.bytes);
        map.descriptor().rt_dispatch = rt_dispatch_exit as *const () as u64;
        map.descriptor().cur_record = map.addr(RECORD_OFF);
        map.descriptor().last_tstate = TSTATE;
        for (i, w) in TAIL.iter().enumerate() {
            map.write(RECORD_OFF + 40 + 8 * i, &w.to_le_bytes());
        }
        map.protect_exec(EXEC_OFF, MAP_LEN - EXEC_OFF);
        let stubs = program.stubs.iter().map(|s| s.address).collect();
        // SAFETY: the thunk bytes implement `extern "C" fn()`: callee-saved
        // registers restored, stack balanced, DF clear on return; the mapping
        // holding them lives as long as the fixture.
        let thunk: XThunk = unsafe { std::mem::transmute(map.addr(THUNK_OFF) as usize) };
        take_exit_calls();
        ExitFixture {
            map,
            stubs,
            thunk,
            tstate_offset,
        }
    }

    fn read_u64(&self, off: usize) -> u64 {
        // SAFETY: `off` is an 8-aligned offset inside our RW data pages.
        unsafe { std::ptr::read_volatile(self.map.addr(off) as *const u64) }
    }

    fn write_u64(&self, off: usize, v: u64) {
        self.map.write(off, &v.to_le_bytes());
    }

    fn set_last_tstate(&self, v: u64) {
        self.write_u64(field::LAST_TSTATE, v);
    }

    fn count(&self, opcode: u8) -> u64 {
        self.read_u64(field::DISPATCH_COUNTS + 8 * usize::from(opcode))
    }

    /// The descriptor and the record, counters zeroed.
    fn data(&self) -> Vec<u64> {
        let mut v: Vec<u64> = (0..RECORD_OFF + 64)
            .step_by(8)
            .filter(|&off| off < std::mem::size_of::<Descriptor>() || off >= RECORD_OFF)
            .map(|off| self.read_u64(off))
            .collect();
        let counts = field::DISPATCH_COUNTS / 8;
        for w in &mut v[counts..counts + 256] {
            *w = 0;
        }
        v
    }

    /// The stack words: the thread state `ts` where the stub reads it
    /// (`[H + offset]`), distinct decoys elsewhere.
    fn stack(&self, ts: u64) -> [u64; 8] {
        let mut s: [u64; 8] = std::array::from_fn(|k| 0xdec0_0000_0000_0000 | (8 * k as u64));
        if let Some(off) = self.tstate_offset {
            s[(off as usize - 8) / 8] = ts;
        }
        s
    }

    fn run(&self, stub: usize, regs_in: [u64; 16], flags: u64, stack: [u64; 8]) -> XOutcome {
        let opcode = X_SHAPES[stub].0;
        let ctx_ptr = self.map.addr(X_CTX_OFF) as *mut XCtx;
        let ctx = XCtx {
            regs_in,
            regs_out: [0; 16],
            flags_in: flags,
            flags_out: 0,
            target: self.stubs[stub],
            stack,
            saved_rsp: 0,
            hook_rsp: 0,
            red_zone: [0; 16],
        };
        // SAFETY: the context block is inside the RW part of our mapping,
        // 8-aligned, and nothing else refers to it.
        unsafe { std::ptr::write_volatile(ctx_ptr, ctx) };
        let count_before = self.count(opcode);
        let handler_before = self.read_u64(X_HANDLER_COUNT_OFF);
        let data_before = self.data();
        take_exit_calls();
        (self.thunk)();
        let runtime_calls = take_exit_calls();
        // SAFETY: as above; the thunk has filled it in.
        let ctx = unsafe { std::ptr::read_volatile(ctx_ptr) };
        XOutcome {
            regs_in,
            regs_out: ctx.regs_out,
            hook_rsp: ctx.hook_rsp,
            handler_rsp: self.read_u64(X_HANDLER_RSP_OFF),
            red_zone: ctx.red_zone,
            runtime_calls,
            counted: self.count(opcode) - count_before,
            handler_runs: self.read_u64(X_HANDLER_COUNT_OFF) - handler_before,
            data_before,
            data_after: self.data(),
        }
    }
}

fn x_regs(seed: u64) -> [u64; 16] {
    std::array::from_fn(|r| 0x1100_0000_0000_0000 | ((r as u64) << 44) | (seed & 0xffff_ffff))
}

impl XOutcome {
    /// The handler ran once, jumped to (rsp at the stub's entry), with every
    /// register but the scratch ones as the stub got them; the red zone is
    /// intact; no descriptor or record word changed (but the counters).
    fn assert_transparent(&self) {
        assert_eq!(self.handler_runs, 1, "the handler runs exactly once");
        assert_eq!(
            self.handler_rsp, self.hook_rsp,
            "the handler is jumped to at rsp H"
        );
        assert_eq!(
            self.regs_out[RSP],
            self.hook_rsp + 8,
            "rsp after the handler's ret"
        );
        for r in (0..16).filter(|&r| r != RSP && !SCRATCH.contains(&(r as u8))) {
            assert_eq!(
                self.regs_out[r], self.regs_in[r],
                "register {r} changed: {:#x} -> {:#x}",
                self.regs_in[r], self.regs_out[r]
            );
        }
        for (k, w) in self.red_zone.iter().enumerate() {
            assert_eq!(
                *w,
                red_zone_word(k + 1),
                "red zone word [H - {}]",
                8 * (k + 1)
            );
        }
        assert!(
            self.data_before == self.data_after,
            "descriptor or record changed"
        );
    }

    fn assert_fast(&self) {
        self.assert_transparent();
        assert_eq!(
            self.runtime_calls.len(),
            0,
            "the fast path must not call the runtime"
        );
        assert_eq!(self.counted, 0, "the fast path does not count");
    }

    /// One runtime call for `opcode`, which saw the interrupted state.
    fn assert_slow(&self, opcode: u8) {
        self.assert_transparent();
        assert_eq!(self.counted, 1, "the slow path counts");
        assert_eq!(self.runtime_calls.len(), 1, "runtime calls");
        let (op, regs) = &self.runtime_calls[0];
        assert_eq!(*op, u64::from(opcode));
        assert_eq!(
            regs.gpr[RSP], self.hook_rsp,
            "interrupted rsp seen by the runtime"
        );
        for r in (0..16).filter(|&r| r != RSP && !SCRATCH.contains(&(r as u8))) {
            assert_eq!(
                regs.gpr[r], self.regs_in[r],
                "the runtime saw register {r} changed"
            );
        }
    }
}

const X_FLAGS: [u64; 3] = [0x202, 0x202 | 0x08d5, 0x202 | 0x0400 | 0x0041];
const X_OFFSETS: [i32; 3] = [8, 0x20, 0x40];

#[test]
fn exit_stub_same_thread_jumps_to_the_handler() {
    for off in X_OFFSETS {
        let f = ExitFixture::new(Some(off));
        for flags in X_FLAGS {
            for stub in [X_EXIT, X_EXIT2] {
                // Whatever cur_record says (the entry frame has no record).
                for rec_frame in [0, 0x7f00_1234_5000] {
                    f.write_u64(RECORD_OFF, rec_frame);
                    let mut r = x_regs(flags ^ off as u64);
                    r[usize::from(RBX)] = rec_frame;
                    let out = f.run(stub, r, flags, f.stack(TSTATE));
                    out.assert_fast();
                }
            }
        }
        assert_eq!((f.count(EXIT_OPCODE), f.count(77)), (0, 0));
    }
}

#[test]
fn exit_stub_thread_change_calls_the_runtime() {
    for off in X_OFFSETS {
        let f = ExitFixture::new(Some(off));
        let mut n = 0;
        for flags in X_FLAGS {
            for (what, last, ts) in [
                ("other thread", TSTATE, OTHER_TSTATE),
                ("differs by one bit", TSTATE, TSTATE ^ (1 << 40)),
                ("no boundary yet", 0, TSTATE),
                ("stack word 0", TSTATE, 0),
            ] {
                f.set_last_tstate(last);
                let r = x_regs(flags ^ 0x77);
                let out = f.run(X_EXIT, r, flags, f.stack(ts));
                out.assert_slow(EXIT_OPCODE);
                n += 1;
                assert_eq!(f.read_u64(field::LAST_TSTATE), last, "{what}");
            }
            // The last thread state in every other stack word: only
            // [rsp + off] counts.
            f.set_last_tstate(TSTATE);
            let mut s = [TSTATE; 8];
            s[(off as usize - 8) / 8] = OTHER_TSTATE;
            let out = f.run(X_EXIT, x_regs(flags), flags, s);
            out.assert_slow(EXIT_OPCODE);
            n += 1;
            // ... and the return address slot [rsp] is not it either.
            f.set_last_tstate(out.hook_rsp);
            let out = f.run(X_EXIT, x_regs(flags), flags, f.stack(OTHER_TSTATE));
            out.assert_slow(EXIT_OPCODE);
            n += 1;
        }
        assert_eq!(f.count(EXIT_OPCODE), n);
        assert_eq!(f.count(10), 0);
    }
}

#[test]
fn exit_stub_back_to_the_same_thread_after_a_change() {
    let f = ExitFixture::new(Some(0x20));
    f.set_last_tstate(TSTATE);
    f.run(X_EXIT, x_regs(1), X_FLAGS[0], f.stack(OTHER_TSTATE))
        .assert_slow(EXIT_OPCODE);
    // The stub itself never writes last_tstate (the runtime would).
    assert_eq!(f.read_u64(field::LAST_TSTATE), TSTATE);
    f.set_last_tstate(OTHER_TSTATE);
    f.run(X_EXIT, x_regs(2), X_FLAGS[1], f.stack(OTHER_TSTATE))
        .assert_fast();
    f.run(X_EXIT, x_regs(3), X_FLAGS[2], f.stack(TSTATE))
        .assert_slow(EXIT_OPCODE);
}

/// Sets the record so that the plain-stub path would hit for `q → q + 2`
/// in frame `frame`.
fn x_set_hit_record(f: &ExitFixture, frame: u64, q: u64) {
    for (i, w) in [frame, q + 2, q, 3, 5].iter().enumerate() {
        f.write_u64(RECORD_OFF + 8 * i, *w);
    }
    f.write_u64(FRAME_OFF + PREV_INSTR, q);
}

#[test]
fn exit_stub_without_tstate_offset_is_a_plain_stub() {
    // No known thread state location: INTERPRETER_EXIT gets the ordinary
    // record-following stub.
    let f = ExitFixture::new(None);
    let frame = f.map.addr(FRAME_OFF);
    let q = f.map.addr(CODE_OFF) + 0x100;
    x_set_hit_record(&f, frame, q);
    let mut r = x_regs(5);
    r[usize::from(RBX)] = frame;
    r[usize::from(R10)] = q + 2;
    let out = f.run(X_EXIT, r, X_FLAGS[1], f.stack(TSTATE));
    assert_eq!(out.runtime_calls.len(), 0);
    assert_eq!(out.handler_runs, 1);
    // The record moved as a plain stub moves it: last_n = N, expect = N + 2, ord 0.
    assert_eq!(
        [0, 1, 2, 3, 4].map(|i| f.read_u64(RECORD_OFF + 8 * i)),
        [frame, q + 4, q + 2, 0, 5]
    );
    // And a frame mismatch goes to the runtime even with last_tstate equal.
    f.write_u64(RECORD_OFF, frame + 0x40);
    let out = f.run(X_EXIT, r, X_FLAGS[0], f.stack(TSTATE));
    out.assert_slow(EXIT_OPCODE);
}

#[test]
fn exit_stub_leaves_plain_stubs_alone() {
    // A stub without entry_exit in a program with a tstate offset still
    // follows the record, whatever the thread state.
    let f = ExitFixture::new(Some(8));
    let frame = f.map.addr(FRAME_OFF);
    let q = f.map.addr(CODE_OFF) + 0x200;
    for ts in [TSTATE, OTHER_TSTATE] {
        x_set_hit_record(&f, frame, q);
        let mut r = x_regs(6);
        r[usize::from(RBX)] = frame;
        r[usize::from(R10)] = q + 2;
        let out = f.run(X_PLAIN, r, X_FLAGS[2], f.stack(ts));
        assert_eq!(out.runtime_calls.len(), 0);
        assert_eq!(f.read_u64(RECORD_OFF + 16), q + 2, "last_n follows");
        // Other frame: the runtime, though the thread state matches.
        f.write_u64(RECORD_OFF, 0);
        let out = f.run(X_PLAIN, r, X_FLAGS[2], f.stack(TSTATE));
        out.assert_slow(10);
    }
}

/// A runtime that reports a raised callback sends the slow path to the raise
/// entry instead of the handler, clearing `raise_pending` on the way; without
/// it the handler runs and nothing else changes.
#[test]
fn a_set_raise_pending_enters_the_raise_entry_once() {
    let f = Fixture::build(true);
    let raise_pending = f.map.addr(field::RAISE_PENDING);
    let frame = f.frame();
    // Slow path (the record names another frame), no raise: the handler runs.
    f.set_record(Rec {
        frame: 0,
        expect: 0,
        last_n: 1,
        ord: 0,
        bias: 0,
    });
    let out = f.dispatch(PLAIN, frame, f.instr(3), f.instr(4));
    assert!(out.slow());
    assert_eq!(out.handler_runs, 1);
    assert_eq!(f.read_u64(RAISE_COUNT_OFF), 0);
    assert_registers_preserved(&out);
    // The runtime sets raise_pending: the raise entry runs instead.
    RAISE_WORD.with(|w| w.set(raise_pending));
    let out = f.dispatch(WIDE, frame, f.instr(4), f.instr(5));
    RAISE_WORD.with(|w| w.set(0));
    assert!(out.slow());
    assert_eq!(out.handler_runs, 0, "the handler must not run");
    assert_eq!(f.read_u64(RAISE_COUNT_OFF), 1, "the raise entry runs once");
    assert_eq!(
        f.read_u64(field::RAISE_PENDING),
        0,
        "the stub clears raise_pending"
    );
    // The frame register still holds the frame at the raise entry (its only input).
    assert_eq!(out.regs_out[usize::from(RBX)], frame);
    // Back to normal on the next dispatch.
    let out = f.dispatch(PLAIN, frame, f.instr(5), f.instr(6));
    assert_eq!(out.handler_runs, 1);
    assert_eq!(f.read_u64(RAISE_COUNT_OFF), 1);
}

/// A fast-path dispatch never looks at `raise_pending` (only the runtime sets it).
#[test]
fn the_fast_path_ignores_raise_pending() {
    let f = Fixture::build(true);
    let frame = f.frame();
    f.map.write(field::RAISE_PENDING, &1u64.to_le_bytes());
    f.set_record(Rec {
        frame,
        expect: f.instr(4),
        last_n: f.instr(3),
        ord: 0,
        bias: 0,
    });
    let out = f.dispatch_checked(PLAIN, frame, f.instr(3), f.instr(4));
    assert!(!out.slow());
    assert_eq!(f.read_u64(RAISE_COUNT_OFF), 0);
}
