//! Runs generated frame-link hook trampolines *with* their inline fast paths
//! (`trampolines::hook_fast`, module doc) for real, and checks their exact
//! effects on the [`HotFrame`] records and the descriptor words, whether the
//! runtime's `rt_hook` was called, that no register outside the allowed
//! scratch set changed and that the displaced original instructions still
//! run afterwards.
//!
//! One anonymous mapping holds the fake descriptor, an array of records (a
//! thread's record stack), a record outside it, a few generator records
//! (persistent, outside the stack), three fake `_PyInterpreterFrame`s (a
//! caller `C`, a new frame `F` and a frame `F2` that `F` calls, or that
//! serves as the entry frame `E` of a C-level evaluation), a fake
//! thread state whose `cframe` points at a fake `_PyCFrame` (plus a decoy
//! `_PyCFrame` every other word of the thread state points at), the runtime's
//! generator table (`GEN_TABLE_SIZE` pairs, junk except where a test puts an
//! entry), a context block for the thunk, the hooked "original code" (one
//! site per hook), the thunk and the generated program. Every site is
//!
//! ```text
//! site_i:  lea  r11, [rdi + 0x100]     ; displaced by `jmp hook_i; int3; int3`
//!          jmp  qword [rsp]            ; back to the thunk, rsp unchanged
//! ```
//!
//! so after the hook `r11` must hold `rdi + 0x100` (the displaced instruction
//! ran, computing a value from the "argument") and everything else must be
//! as the thunk set it. The thunk (no arguments; all its data lives in the
//! context block at a fixed address) is
//!
//! ```text
//! thunk:   push rbx, rbp, r12, r13, r14, r15
//!          mov  [saved_rsp], rsp
//!          push stack[3], stack[2], stack[1], stack[0]
//!          lea  rax, [back] ; push rax            ; rsp = H: [H] = back, [H + 8 + 8k] = stack[k]
//!          mov  [hook_rsp], rsp
//!          push [flags_in] ; popfq
//!          mov  [rsp - 8k], pattern_k  (k = 1..=16, via rax; flags untouched)
//!          mov  r, [regs_in + 8r]      (every register but rsp)
//!          jmp  [target]              ; the site: the hooked code "interrupted" at H
//! back:    mov  [regs_out + 8r], r     (every register, rsp included)
//!          red_zone[k - 1] := [rsp - 8k]   (k = 1..=16)
//!          pushfq ; pop [flags_out] ; cld
//!          mov  rsp, [saved_rsp] ; pop r15 … rbx ; ret
//! ```
//!
//! so the hooked code sees `[rsp + 8 + 8k] == stack[k]` (where the
//! `CurrentFrameStore` hook finds the thread state) and a red zone full of a
//! known pattern that must survive the hook.
//!
//! Every state check compares the whole data area (descriptor, records,
//! frames, thread state, `_PyCFrame`s, generator table) byte for byte against
//! the state before with exactly the expected words changed.

mod common;
#[path = "common/thunk.rs"]
mod thunk;

use common::Mapping;
use retrace_abi::{
    field, hook_bit, hot, Descriptor, HookKind, SavedRegisters, GEN_TABLE_SIZE, HOT_GEN,
    HOT_GEN_IDLE, HOT_MEMO_RESET, HOT_PENDING,
};
use std::cell::RefCell;
use thunk::{red_zone_word, thunk_bytes, ThunkCtx};
use trampolines::{generate, DispatchRegisters, HookFast, HookRequest, ProgramInput};

// 3.12 `_PyInterpreterFrame` offsets.
const PREVIOUS: usize = 0x08;
const PREV_INSTR: usize = 0x38;
const OWNER: usize = 0x46;

/// `HOT_PENDING | HOT_GEN`: a generator's activation marker pushed by the
/// `start_frame` fast path.
const MARKER: u64 = HOT_PENDING | HOT_GEN;

// Hardware register numbers.
const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RBX: usize = 3;
const RSP: usize = 4;
const RSI: usize = 6;
const RDI: usize = 7;
const R8: usize = 8;
const R9: usize = 9;
const R10: usize = 10;
const R11: usize = 11;
const R12: usize = 12;

/// What the displaced `lea r11, [rdi + 0x100]` adds.
const LEA_DISP: u64 = 0x100;
/// `lea r11, [rdi + 0x100]`: the displaced instruction of every site.
const DISPLACED: [u8; 7] = [0x4c, 0x8d, 0x9f, 0x00, 0x01, 0x00, 0x00];
/// `jmp qword [rsp]`: the rest of every site.
const SITE_TAIL: [u8; 3] = [0xff, 0x24, 0x24];

/// Registers a function-entry hook (`ClearAndPop`, `PopFrame`, `EvalEntry`)
/// may change: rax, rcx, rdx, r8–r11.
const ENTRY_SCRATCH: [usize; 7] = [RAX, RCX, RDX, R8, R9, R10, R11];

// Mapping layout.
const MAP_LEN: usize = 0x18000;
const RECORDS_OFF: usize = 0x2000;
const NRECORDS: usize = 32;
/// A record outside the stack (a slot holder or parent that is not `top − 64`).
const LONE_OFF: usize = 0x2800;
/// Generator frames' own records (the runtime's persistent records).
const GEN_RECS_OFF: usize = 0x2900;
const NGEN_RECS: usize = 4;
/// A frame `F` calls inline.
const F2_OFF: usize = 0x2a00;
/// The fake thread state, its `_PyCFrame` and a decoy `_PyCFrame`.
const TSTATE_OFF: usize = 0x2b00;
const TSTATE_LEN: usize = 0x80;
const CFRAME_OFF: usize = 0x2b80;
const DECOY_CFRAME_OFF: usize = 0x2bc0;
const CFRAME_LEN: usize = 0x40;
const C_OFF: usize = 0x2c00;
const F_OFF: usize = 0x2d00;
/// The generator table: `GEN_TABLE_SIZE` pairs `[frame, record]`.
const TABLE_OFF: usize = 0x3000;
/// End of the data area compared byte for byte.
const DATA_END: usize = TABLE_OFF + 16 * GEN_TABLE_SIZE;
const CTX_OFF: usize = DATA_END;
const EXEC_OFF: usize = CTX_OFF + 0x1000;
const SITES_OFF: usize = EXEC_OFF;
const SITE_STRIDE: usize = 16;
const THUNK_OFF: usize = EXEC_OFF + 0x400;
const TEXT_OFF: usize = EXEC_OFF + 0x1000;

/// rflags bits the tests set and compare: CF, PF, AF, ZF, SF, DF, OF.
const FLAG_MASK: u64 = 0x0001 | 0x0004 | 0x0010 | 0x0040 | 0x0080 | 0x0400 | 0x0800;
/// Flag values entering the hook (bit 1 and IF always set): none, all
/// arithmetic flags, and a mix with DF.
const FLAGS: [u64; 3] = [0x202, 0x202 | 0x08d5, 0x202 | 0x0400 | 0x0041];

/// The hooks of the fixture, by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    /// `_PyEvalFrameClearAndPop` entry: frame in rsi, flags dead.
    ClearAndPop = 0,
    /// `_PyThreadState_PopFrame` entry: frame in rsi, flags dead.
    PopFrame = 1,
    /// `start_frame`, frame in rbx, flags live.
    StartRbxLive = 2,
    /// `start_frame`, frame in rbx, flags dead.
    StartRbxDead = 3,
    /// `start_frame`, frame in r12 (REX base needing a SIB byte), flags live.
    StartR12Live = 4,
    /// `start_frame` with the frame in rax, the first register the fast path
    /// could borrow (it borrows rcx, rdx, r8, r9 instead), flags live.
    StartRaxLive = 5,
    /// Current-frame store of rax (the first register the fast path could
    /// borrow), thread state at `[rsp + 8]`, `cframe` at 0x38,
    /// `current_frame` at 0, flags live.
    StoreLive = 6,
    /// Current-frame store of r9 (a register the fast path borrows for other
    /// stores), thread state at `[rsp + 24]`, `cframe` at 0x50,
    /// `current_frame` at 0x18, flags dead.
    StoreDead = 7,
    /// `start_frame`, frame in rcx (borrowed: rax, rdx, r8, r9), flags dead.
    StartRcxDead = 8,
    /// [`HookFast::Pass`] with the flags live (kind `CurrentFrameStore`).
    PassLive = 9,
    /// [`HookFast::Pass`] with the flags dead (kind `StartFrame`).
    PassDead = 10,
    /// `_PyEval_EvalFrameDefault` entry: frame in rsi, flags dead.
    EvalEntry = 11,
}

const HOOKS: [Hook; 12] = [
    Hook::ClearAndPop,
    Hook::PopFrame,
    Hook::StartRbxLive,
    Hook::StartRbxDead,
    Hook::StartR12Live,
    Hook::StartRaxLive,
    Hook::StoreLive,
    Hook::StoreDead,
    Hook::StartRcxDead,
    Hook::PassLive,
    Hook::PassDead,
    Hook::EvalEntry,
];

impl Hook {
    fn request(self, address: u64) -> HookRequest {
        let start = |frame: usize| HookFast::StartFrame {
            frame: frame as u8,
            previous: PREVIOUS as i32,
            prev_instr: PREV_INSTR as i32,
            owner: OWNER as i32,
        };
        let (kind, flags_live, fast) = match self {
            Hook::ClearAndPop => (HookKind::FrameClearAndPop, false, HookFast::ClearAndPop),
            Hook::PopFrame => (HookKind::ThreadStatePopFrame, false, HookFast::PopFrame),
            Hook::StartRbxLive => (HookKind::StartFrame, true, start(RBX)),
            Hook::StartRbxDead => (HookKind::StartFrame, false, start(RBX)),
            Hook::StartR12Live => (HookKind::StartFrame, true, start(R12)),
            Hook::StartRaxLive => (HookKind::StartFrame, true, start(RAX)),
            Hook::StartRcxDead => (HookKind::StartFrame, false, start(RCX)),
            Hook::PassLive => (HookKind::CurrentFrameStore, true, HookFast::Pass),
            Hook::PassDead => (HookKind::StartFrame, false, HookFast::Pass),
            Hook::EvalEntry => (
                HookKind::EvalEntry,
                false,
                HookFast::EvalEntry {
                    owner: OWNER as i32,
                },
            ),
            Hook::StoreLive | Hook::StoreDead => (
                HookKind::CurrentFrameStore,
                self == Hook::StoreLive,
                HookFast::CurrentFrameStore {
                    new: self.new_reg() as u8,
                    tstate_offset: 8 + 8 * self.tstate_word() as i32,
                    cframe: self.cframe_offset() as i32,
                    current_frame: self.current_frame_offset() as i32,
                    owner: OWNER as i32,
                },
            ),
        };
        HookRequest {
            address,
            displaced: DISPLACED.to_vec(),
            enable_bit: kind as u32,
            flags_live,
            fast: Some(fast),
        }
    }

    fn flags_live(self) -> bool {
        self.request(0).flags_live
    }

    /// Registers the hook may change besides r11 (the displaced instruction's).
    fn scratch(self) -> &'static [usize] {
        match self {
            Hook::ClearAndPop | Hook::PopFrame | Hook::EvalEntry => &ENTRY_SCRATCH,
            _ => &[],
        }
    }

    /// The register holding the new frame, for the `start_frame` hooks.
    fn frame_reg(self) -> usize {
        match self {
            Hook::StartRbxLive | Hook::StartRbxDead => RBX,
            Hook::StartR12Live => R12,
            Hook::StartRaxLive => RAX,
            Hook::StartRcxDead => RCX,
            _ => panic!("{self:?} has no frame register"),
        }
    }

    /// The register holding the stored frame, for the store hooks.
    fn new_reg(self) -> usize {
        match self {
            Hook::StoreLive => RAX,
            Hook::StoreDead => R9,
            _ => panic!("{self:?} stores no frame"),
        }
    }

    /// `PyThreadState.cframe`, for the store hooks.
    fn cframe_offset(self) -> usize {
        match self {
            Hook::StoreLive => 0x38,
            Hook::StoreDead => 0x50,
            _ => panic!("{self:?} reads no thread state"),
        }
    }

    /// `_PyCFrame.current_frame`, for the store hooks.
    fn current_frame_offset(self) -> usize {
        match self {
            Hook::StoreLive => 0,
            Hook::StoreDead => 0x18,
            _ => panic!("{self:?} reads no thread state"),
        }
    }

    /// Index into the thunk's stack words of the thread state, for the store hooks.
    fn tstate_word(self) -> usize {
        match self {
            Hook::StoreLive => 0,
            Hook::StoreDead => 2,
            _ => panic!("{self:?} reads no thread state"),
        }
    }
}

const POP_HOOKS: [Hook; 2] = [Hook::ClearAndPop, Hook::PopFrame];
const START_HOOKS: [Hook; 5] = [
    Hook::StartRbxLive,
    Hook::StartRbxDead,
    Hook::StartR12Live,
    Hook::StartRaxLive,
    Hook::StartRcxDead,
];
const STORE_HOOKS: [Hook; 2] = [Hook::StoreLive, Hook::StoreDead];

/// The thunk's context block (at `CTX_OFF`): four stack words above H.
type Ctx = ThunkCtx<4>;

/// A runtime call: hook index and the registers it saw.
type RuntimeCall = (u64, SavedRegisters);

thread_local! {
    static RUNTIME_CALLS: RefCell<Vec<RuntimeCall>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn rt_hook(regs: *mut SavedRegisters, index: u64) -> u64 {
    // SAFETY: the trampoline passes a valid register block, ours for the call.
    let regs = unsafe { *regs };
    RUNTIME_CALLS.with(|c| c.borrow_mut().push((index, regs)));
    0
}

fn take_runtime_calls() -> Vec<RuntimeCall> {
    RUNTIME_CALLS.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

/// A [`HotFrame`](retrace_abi::HotFrame)'s words as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rec {
    frame: u64,
    expect: u64,
    last_n: u64,
    ord: u64,
    bias: i64,
    parent: u64,
    flags: u64,
    persistent: u64,
}

impl Rec {
    /// Recognisable junk for record `tag`.
    fn junk(tag: u64) -> Rec {
        let w = |field: u64| 0xee00_0000_0000_0000 | (tag << 16) | (field << 4) | 8;
        Rec {
            frame: w(0),
            expect: w(1),
            last_n: w(2),
            ord: w(3),
            bias: w(4) as i64,
            parent: w(5),
            flags: 0,
            persistent: w(7),
        }
    }
}

/// Everything one run of a hook did.
#[derive(Debug)]
struct Outcome {
    hook: Hook,
    regs_in: [u64; 16],
    regs_out: [u64; 16],
    flags_in: u64,
    flags_out: u64,
    hook_rsp: u64,
    red_zone: [u64; 16],
    runtime_calls: Vec<RuntimeCall>,
}

impl Outcome {
    /// The register contract: only the hook's scratch registers may change;
    /// r11 holds what the displaced instruction computed; rsp, the red zone
    /// and (where live) the flags are intact.
    fn assert_transparent(&self) {
        let h = self.hook;
        for r in (0..16).filter(|r| ![RSP, R11].contains(r) && !h.scratch().contains(r)) {
            assert_eq!(
                self.regs_out[r], self.regs_in[r],
                "{h:?}: register {r} changed: {:#x} -> {:#x}",
                self.regs_in[r], self.regs_out[r]
            );
        }
        assert_eq!(
            self.regs_out[R11],
            self.regs_in[RDI].wrapping_add(LEA_DISP),
            "{h:?}: the displaced `lea r11, [rdi + 0x100]` did not run (or ran on a changed rdi)"
        );
        assert_eq!(self.regs_out[RSP], self.hook_rsp, "{h:?}: rsp");
        for (k, w) in self.red_zone.iter().enumerate() {
            assert_eq!(
                *w,
                red_zone_word(k + 1),
                "{h:?}: red zone word [rsp - {}]",
                8 * (k + 1)
            );
        }
        if h.flags_live() {
            assert_eq!(
                self.flags_out & FLAG_MASK,
                self.flags_in & FLAG_MASK,
                "{h:?}: live flags changed"
            );
        }
    }

    /// The runtime was called exactly once, by this hook, and saw the
    /// interrupted state (its non-scratch registers, rsp, live flags).
    fn assert_runtime_called(&self) {
        let h = self.hook;
        assert_eq!(self.runtime_calls.len(), 1, "{h:?}: runtime calls");
        let (index, regs) = &self.runtime_calls[0];
        assert_eq!(*index, h as u64, "{h:?}: hook index passed to the runtime");
        assert_eq!(
            regs.gpr[RSP], self.hook_rsp,
            "{h:?}: interrupted rsp seen by the runtime"
        );
        for r in (0..16).filter(|r| *r != RSP && !h.scratch().contains(r)) {
            assert_eq!(
                regs.gpr[r], self.regs_in[r],
                "{h:?}: the runtime saw register {r} changed"
            );
        }
        if h.flags_live() {
            assert_eq!(
                regs.rflags & FLAG_MASK,
                self.flags_in & FLAG_MASK,
                "{h:?}: the runtime saw changed flags"
            );
        }
    }

    fn assert_runtime_not_called(&self) {
        assert!(
            self.runtime_calls.is_empty(),
            "{:?}: the fast path must not call the runtime ({} calls)",
            self.hook,
            self.runtime_calls.len()
        );
    }
}

type Thunk = extern "C" fn();

struct Fixture {
    map: Mapping,
    thunk: Thunk,
}

impl Fixture {
    fn new() -> Fixture {
        let mut map = Mapping::new(MAP_LEN);
        const { assert!(std::mem::size_of::<Descriptor>() <= RECORDS_OFF) };
        const { assert!(hot::SIZE == 64) };
        const { assert!(RECORDS_OFF + NRECORDS * hot::SIZE <= LONE_OFF) };
        const { assert!(LONE_OFF + hot::SIZE <= GEN_RECS_OFF) };
        const { assert!(GEN_RECS_OFF + NGEN_RECS * hot::SIZE <= F2_OFF) };
        const { assert!(F2_OFF + 0x100 <= TSTATE_OFF) };
        const { assert!(TSTATE_OFF + TSTATE_LEN <= CFRAME_OFF) };
        const { assert!(CFRAME_OFF + CFRAME_LEN <= DECOY_CFRAME_OFF) };
        const { assert!(DECOY_CFRAME_OFF + CFRAME_LEN <= C_OFF) };
        const { assert!(F_OFF + 0x100 <= TABLE_OFF) };
        const { assert!(std::mem::size_of::<Ctx>() <= EXEC_OFF - CTX_OFF) };
        map.write(0, Descriptor::new().as_bytes());
        let requests: Vec<HookRequest> = HOOKS
            .iter()
            .enumerate()
            .map(|(i, h)| {
                assert_eq!(*h as usize, i);
                let site = SITES_OFF + SITE_STRIDE * i;
                let mut code = DISPLACED.to_vec();
                code.extend_from_slice(&SITE_TAIL);
                map.write(site, &code);
                h.request(map.addr(site))
            })
            .collect();
        let program = generate(&ProgramInput {
            text_vaddr: map.addr(TEXT_OFF),
            descriptor_vaddr: map.addr(0),
            stubs: &[],
            registers: DispatchRegisters {
                frame: RBX as u8,
                next_instr: R10 as u8,
                scratch: [RAX as u8, R11 as u8],
                prev_instr_offset: PREV_INSTR as i32,
                tstate_offset: Some(8),
                raise_entry: None,
            },
            hooks: &requests,
            flags_live_at_handlers: false,
        })
        .unwrap();
        assert!(TEXT_OFF + program.bytes.len() <= MAP_LEN);
        map.write(TEXT_OFF, &program.bytes);
        // Patch every site as the rewriter does: jmp hook_i; int3; int3.
        for (i, tramp) in program.hooks.iter().enumerate() {
            let site = map.addr(SITES_OFF + SITE_STRIDE * i);
            assert_eq!(tramp.site, site);
            let rel = i32::try_from(tramp.address as i64 - (site as i64 + 5)).unwrap();
            let mut patch = vec![0xe9];
            patch.extend_from_slice(&rel.to_le_bytes());
            patch.extend_from_slice(&[0xcc, 0xcc]);
            map.write(SITES_OFF + SITE_STRIDE * i, &patch);
        }
        let thunk = thunk_bytes::<4>(map.addr(THUNK_OFF) as usize, map.addr(CTX_OFF) as usize);
        assert!(THUNK_OFF + thunk.len() <= TEXT_OFF);
        map.write(THUNK_OFF, &thunk);
        // The generator table: junk pairs whose frames match nothing.
        let table: Vec<u8> = (0..GEN_TABLE_SIZE as u64)
            .flat_map(|i| [table_junk_frame(i), 0x6b00_0000_0000_0000 | (i << 4)])
            .flat_map(u64::to_le_bytes)
            .collect();
        map.write(TABLE_OFF, &table);
        let gen_table = map.addr(TABLE_OFF);
        let d = map.descriptor();
        d.gen_table = gen_table;
        d.rt_hook = rt_hook as *const () as u64;
        d.hooks_enabled = hook_bit(HookKind::StartFrame)
            | hook_bit(HookKind::EvalEntry)
            | hook_bit(HookKind::CurrentFrameStore)
            | hook_bit(HookKind::FrameClearAndPop)
            | hook_bit(HookKind::ThreadStatePopFrame);
        map.protect_exec(EXEC_OFF, MAP_LEN - EXEC_OFF);
        // SAFETY: the thunk bytes implement `extern "C" fn()`: callee-saved
        // registers restored, stack balanced, DF clear on return; the mapping
        // holding them lives as long as the fixture.
        let thunk: Thunk = unsafe { std::mem::transmute(map.addr(THUNK_OFF) as usize) };
        let fx = Fixture { map, thunk };
        for i in 0..NRECORDS {
            fx.set_rec(fx.rec_addr(i), Rec::junk(i as u64));
        }
        fx.set_rec(fx.lone(), Rec::junk(0xff));
        for i in 0..NGEN_RECS {
            fx.set_rec(fx.gen_rec(i), Rec::junk(0x80 + i as u64));
        }
        take_runtime_calls();
        fx
    }

    /// Generator record `i` (outside the record stack).
    fn gen_rec(&self, i: usize) -> u64 {
        assert!(i < NGEN_RECS);
        self.map.addr(GEN_RECS_OFF + hot::SIZE * i)
    }

    fn f2(&self) -> u64 {
        self.map.addr(F2_OFF)
    }

    fn tstate(&self) -> u64 {
        self.map.addr(TSTATE_OFF)
    }

    /// Puts the pair `[frame, record]` at table index `index`.
    fn set_table(&self, index: usize, frame: u64, record: u64) {
        let at = self.map.addr(TABLE_OFF) + 16 * index as u64;
        self.write_u64(at, frame);
        self.write_u64(at + 8, record);
    }

    /// Restores table entry `index` to its junk.
    fn clear_table(&self, index: usize) {
        let i = index as u64;
        self.set_table(index, table_junk_frame(i), 0x6b00_0000_0000_0000 | (i << 4));
    }

    /// The fake thread state as `hook` reads it: `[tstate + cframe]` points
    /// at the fake `_PyCFrame`, whose `current_frame` is `old`; every other
    /// thread state word points at the decoy `_PyCFrame`, every other word
    /// of either `_PyCFrame` is [`DECOY_FRAME`].
    fn set_thread_state(&self, hook: Hook, old: u64) {
        let decoy = self.map.addr(DECOY_CFRAME_OFF);
        for off in (0..TSTATE_LEN as u64).step_by(8) {
            self.write_u64(self.tstate() + off, decoy);
        }
        for base in [CFRAME_OFF, DECOY_CFRAME_OFF] {
            for off in (0..CFRAME_LEN as u64).step_by(8) {
                self.write_u64(self.map.addr(base) + off, DECOY_FRAME);
            }
        }
        let cframe = self.map.addr(CFRAME_OFF);
        self.write_u64(self.tstate() + hook.cframe_offset() as u64, cframe);
        self.write_u64(cframe + hook.current_frame_offset() as u64, old);
    }

    fn rec_addr(&self, i: usize) -> u64 {
        assert!(i < NRECORDS);
        self.map.addr(RECORDS_OFF + hot::SIZE * i)
    }

    fn lone(&self) -> u64 {
        self.map.addr(LONE_OFF)
    }

    fn c(&self) -> u64 {
        self.map.addr(C_OFF)
    }

    fn f(&self) -> u64 {
        self.map.addr(F_OFF)
    }

    fn data_off(&self, addr: u64) -> usize {
        let off = addr
            .checked_sub(self.map.addr(0))
            .expect("address below the mapping") as usize;
        assert!(off < DATA_END, "{addr:#x} is outside the data area");
        off
    }

    fn read_u64(&self, addr: u64) -> u64 {
        assert!(addr.is_multiple_of(8));
        self.data_off(addr);
        // SAFETY: an 8-aligned address inside the RW data area of our mapping.
        unsafe { std::ptr::read_volatile(addr as *const u64) }
    }

    fn write_u64(&self, addr: u64, v: u64) {
        let off = self.data_off(addr);
        self.map.write(off, &v.to_le_bytes());
    }

    fn write_u8(&self, addr: u64, v: u8) {
        let off = self.data_off(addr);
        self.map.write(off, &[v]);
    }

    fn word(&self, field: usize) -> u64 {
        self.read_u64(self.map.addr(field))
    }

    fn set_word(&self, field: usize, v: u64) {
        self.write_u64(self.map.addr(field), v);
    }

    fn rec(&self, at: u64) -> Rec {
        let w = |f: usize| self.read_u64(at + f as u64);
        Rec {
            frame: w(hot::FRAME),
            expect: w(hot::EXPECT),
            last_n: w(hot::LAST_N),
            ord: w(hot::ORD),
            bias: w(hot::BIAS) as i64,
            parent: w(hot::PARENT),
            flags: w(hot::FLAGS),
            persistent: w(hot::PERSISTENT),
        }
    }

    fn set_rec(&self, at: u64, r: Rec) {
        for (f, v) in [
            (hot::FRAME, r.frame),
            (hot::EXPECT, r.expect),
            (hot::LAST_N, r.last_n),
            (hot::ORD, r.ord),
            (hot::BIAS, r.bias as u64),
            (hot::PARENT, r.parent),
            (hot::FLAGS, r.flags),
            (hot::PERSISTENT, r.persistent),
        ] {
            self.write_u64(at + f as u64, v);
        }
    }

    fn snapshot(&self) -> Snapshot {
        let base = self.map.addr(0);
        let bytes = (0..DATA_END as u64)
            .step_by(8)
            .flat_map(|i| {
                // SAFETY: `base + i` is 8-aligned and lies in [0, DATA_END),
                // the RW data area of our mapping; volatile because the
                // generated code writes it.
                unsafe { std::ptr::read_volatile((base + i) as *const u64) }.to_le_bytes()
            })
            .collect();
        Snapshot {
            base: self.map.addr(0),
            bytes,
        }
    }

    fn ctx(&self) -> *mut Ctx {
        self.map.addr(CTX_OFF) as *mut Ctx
    }

    /// Run `hook` with the registers `regs_in`, the flags `flags_in` and
    /// `[rsp + 8 + 8k] == stack[k]` at the hook point.
    fn run(&self, hook: Hook, regs_in: [u64; 16], flags_in: u64, stack: [u64; 4]) -> Outcome {
        let ctx = Ctx {
            regs_in,
            regs_out: [0; 16],
            flags_in,
            flags_out: 0,
            target: self.map.addr(SITES_OFF + SITE_STRIDE * hook as usize),
            stack,
            saved_rsp: 0,
            hook_rsp: 0,
            red_zone: [0; 16],
        };
        // SAFETY: the context block is inside the RW part of our mapping,
        // 8-aligned, and nothing else refers to it.
        unsafe { std::ptr::write_volatile(self.ctx(), ctx) };
        take_runtime_calls();
        (self.thunk)();
        let runtime_calls = take_runtime_calls();
        // SAFETY: as above; the thunk has filled it in.
        let ctx = unsafe { std::ptr::read_volatile(self.ctx()) };
        Outcome {
            hook,
            regs_in,
            regs_out: ctx.regs_out,
            flags_in,
            flags_out: ctx.flags_out,
            hook_rsp: ctx.hook_rsp,
            red_zone: ctx.red_zone,
            runtime_calls,
        }
    }
}

/// The data area's bytes; expected states are built by editing a copy.
#[derive(Clone, PartialEq, Eq)]
struct Snapshot {
    base: u64,
    bytes: Vec<u8>,
}

impl Snapshot {
    fn set(&mut self, addr: u64, v: u64) {
        let off = (addr - self.base) as usize;
        self.bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn get(&self, addr: u64) -> u64 {
        let off = (addr - self.base) as usize;
        u64::from_le_bytes(self.bytes[off..off + 8].try_into().unwrap())
    }

    fn set_field(&mut self, field: usize, v: u64) {
        self.set(self.base + field as u64, v);
    }

    fn set_rec_field(&mut self, rec: u64, field: usize, v: u64) {
        self.set(rec + field as u64, v);
    }

    /// Panics listing every differing 8-byte word (with its meaning).
    fn assert_eq_to(&self, expected: &Snapshot, what: &str) {
        if self == expected {
            return;
        }
        let mut diffs = Vec::new();
        for off in (0..self.bytes.len()).step_by(8) {
            let (a, e) = (
                self.get(self.base + off as u64),
                expected.get(self.base + off as u64),
            );
            if a != e {
                diffs.push(format!("  {}: {a:#x}, expected {e:#x}", describe(off)));
            }
        }
        panic!(
            "{what}: memory differs from the expected state:\n{}",
            diffs.join("\n")
        );
    }
}

fn describe(off: usize) -> String {
    let names = [
        (field::CUR_RECORD, "descriptor.cur_record"),
        (field::SLOT_RECORD, "descriptor.slot_record"),
        (field::STACK_TOP, "descriptor.stack_top"),
        (field::STACK_LIMIT, "descriptor.stack_limit"),
        (field::LAST_TSTATE, "descriptor.last_tstate"),
        (field::LAST_POPPED, "descriptor.last_popped"),
        (field::GEN_TABLE, "descriptor.gen_table"),
    ];
    if let Some((_, n)) = names.iter().find(|(o, _)| *o == off) {
        return n.to_string();
    }
    let rec_field = |o: usize| {
        [
            "frame",
            "expect",
            "last_n",
            "ord",
            "bias",
            "parent",
            "flags",
            "persistent",
        ][o / 8]
    };
    if (RECORDS_OFF..RECORDS_OFF + NRECORDS * 64).contains(&off) {
        let o = off - RECORDS_OFF;
        return format!("records[{}].{}", o / 64, rec_field(o % 64));
    }
    if (LONE_OFF..LONE_OFF + 64).contains(&off) {
        return format!("lone record.{}", rec_field(off - LONE_OFF));
    }
    if (GEN_RECS_OFF..GEN_RECS_OFF + NGEN_RECS * 64).contains(&off) {
        let o = off - GEN_RECS_OFF;
        return format!("gen_rec({}).{}", o / 64, rec_field(o % 64));
    }
    if (F2_OFF..F2_OFF + 0x100).contains(&off) {
        return format!("frame F2 + {:#x}", off - F2_OFF);
    }
    if (TSTATE_OFF..TSTATE_OFF + TSTATE_LEN).contains(&off) {
        return format!("tstate + {:#x}", off - TSTATE_OFF);
    }
    if (CFRAME_OFF..CFRAME_OFF + CFRAME_LEN).contains(&off) {
        return format!("cframe + {:#x}", off - CFRAME_OFF);
    }
    if (DECOY_CFRAME_OFF..DECOY_CFRAME_OFF + CFRAME_LEN).contains(&off) {
        return format!("decoy cframe + {:#x}", off - DECOY_CFRAME_OFF);
    }
    if (TABLE_OFF..DATA_END).contains(&off) {
        let o = off - TABLE_OFF;
        let w = ["frame", "record"][(o % 16) / 8];
        return format!("gen_table[{:#x}].{w}", o / 16);
    }
    if (C_OFF..C_OFF + 0x100).contains(&off) {
        return format!("frame C + {:#x}", off - C_OFF);
    }
    if (F_OFF..F_OFF + 0x100).contains(&off) {
        return format!("frame F + {:#x}", off - F_OFF);
    }
    format!("data + {off:#x}")
}

/// The generator table index of `frame`.
fn table_index(frame: u64) -> usize {
    (frame >> 4) as usize & (GEN_TABLE_SIZE - 1)
}

/// The junk frame of table entry `i` (matches no frame of the tests).
fn table_junk_frame(i: u64) -> u64 {
    0x6a00_0000_0000_0000 | (i << 4)
}

/// What the `_PyCFrame` words a hook must not read hold (no record's frame).
const DECOY_FRAME: u64 = 0x7f00_dec0_f000;

/// Distinct recognisable register values for run `seed`.
fn regs(seed: u64) -> [u64; 16] {
    let mut r = [0u64; 16];
    for (i, v) in r.iter_mut().enumerate() {
        *v = 0x1100_0000_0000_0000 | ((i as u64) << 44) | (seed.wrapping_mul(0x9e37) & 0xffff_ffff);
    }
    r
}

/// Decoy stack words (never a thread state the tests use).
const STACK: [u64; 4] = [
    0xdec0_0000_0000_0000,
    0xdec0_0000_0000_0008,
    0xdec0_0000_0000_0010,
    0xdec0_0000_0000_0018,
];

// ---------------------------------------------------------------------------
// start_frame

/// Bytecode addresses: the caller's `prev_instr` and the new frame's.
const P: u64 = 0x7f12_3456_0200;
const Q: u64 = 0x7f65_4321_0040;

/// A `start_frame` scenario (module doc of `hook_fast`).
#[derive(Clone, Copy, Debug)]
struct Start {
    /// The slot holder.
    s: u64,
    /// `stack_top` before.
    t: u64,
    /// `S.last_n` before (the caller's last dispatched instruction, maybe marked).
    last_n: u64,
    s_bias: i64,
}

impl Start {
    fn new_record(&self) -> u64 {
        self.t + hot::SIZE as u64
    }
}

/// Sets up the state of a hit: `S` (the lone record unless `s_is_top`) holds
/// the caller `C`, whose `prev_instr` is `P`; `F.previous == C`, owner 0,
/// `F.prev_instr == Q`, no table entry for `F`; `stack_top == records[4]`,
/// room above; `last_tstate` is the fake thread state.
fn start_setup(fx: &Fixture, last_n: u64, s_bias: i64, s_is_top: bool) -> Start {
    let t = fx.rec_addr(4);
    let s = if s_is_top { t } else { fx.lone() };
    fx.set_rec(
        s,
        Rec {
            frame: fx.c(),
            expect: 0x1234_5678,
            last_n,
            ord: 3,
            bias: s_bias,
            parent: fx.rec_addr(1),
            flags: 0,
            persistent: 0x7e5e_7e5e,
        },
    );
    fx.set_word(field::STACK_TOP, t);
    fx.set_word(field::STACK_LIMIT, fx.rec_addr(NRECORDS - 1));
    fx.set_word(field::SLOT_RECORD, s);
    fx.set_word(field::CUR_RECORD, fx.rec_addr(9));
    fx.set_word(field::LAST_TSTATE, fx.tstate());
    // F is unknown to the generator table (and so are its neighbours).
    let i = table_index(fx.f());
    for idx in [i + GEN_TABLE_SIZE - 1, i, i + 1] {
        fx.clear_table(idx % GEN_TABLE_SIZE);
    }
    // The caller C.
    for off in (0..0x100).step_by(8) {
        fx.write_u64(fx.c() + off, 0xc0c0_0000_0000_0000 | off);
    }
    fx.write_u64(fx.c() + PREV_INSTR as u64, P);
    // The new frame F: owner 0 between non-zero bytes (only the byte counts).
    for off in (0..0x100).step_by(8) {
        fx.write_u64(fx.f() + off, 0xf0f0_0000_0000_0000 | off);
    }
    fx.write_u64(fx.f() + PREVIOUS as u64, fx.c());
    fx.write_u64(fx.f() + PREV_INSTR as u64, Q);
    fx.write_u64(fx.f() + 0x40, 0xff00_ffff_ffff_ffff);
    assert_eq!(OWNER, 0x46);
    Start {
        s,
        t,
        last_n,
        s_bias,
    }
}

/// The caller's inlined-call fix on the slot holder (`C.prev_instr == P`).
fn expect_caller_fix(e: &mut Snapshot, st: &Start) {
    let l = st.last_n & !1;
    let delta = (l.wrapping_sub(P) as i64) / 2;
    e.set_rec_field(st.s, hot::BIAS, st.s_bias.wrapping_add(delta) as u64);
    e.set_rec_field(st.s, hot::LAST_N, P);
    e.set_rec_field(st.s, hot::EXPECT, P + 2);
}

/// The state after a `start_frame` hit from `before`.
fn start_expected(fx: &Fixture, st: &Start, before: &Snapshot) -> Snapshot {
    let mut e = before.clone();
    expect_caller_fix(&mut e, st);
    let n = st.new_record();
    e.set_rec_field(n, hot::FRAME, fx.f());
    e.set_rec_field(n, hot::LAST_N, Q);
    e.set_rec_field(n, hot::EXPECT, Q + 2);
    e.set_rec_field(n, hot::ORD, 0);
    e.set_rec_field(n, hot::BIAS, 0);
    e.set_rec_field(n, hot::PARENT, st.s);
    e.set_rec_field(n, hot::FLAGS, HOT_PENDING);
    e.set_field(field::STACK_TOP, n);
    e.set_field(field::SLOT_RECORD, n);
    e.set_field(field::CUR_RECORD, n);
    e
}

fn start_regs(fx: &Fixture, hook: Hook, seed: u64) -> [u64; 16] {
    let mut r = regs(seed);
    r[hook.frame_reg()] = fx.f();
    r
}

/// Runs `hook` on the state set up by `start_setup` and checks a hit.
fn check_start_hit(fx: &Fixture, hook: Hook, st: &Start, flags: u64, what: &str) {
    let before = fx.snapshot();
    let expected = start_expected(fx, st, &before);
    let out = fx.run(hook, start_regs(fx, hook, flags ^ st.last_n), flags, STACK);
    out.assert_runtime_not_called();
    out.assert_transparent();
    fx.snapshot()
        .assert_eq_to(&expected, &format!("{hook:?} {what}"));
}

/// Runs `hook` and checks that it went to the runtime and changed nothing.
fn check_untouched_slow(
    fx: &Fixture,
    hook: Hook,
    regs_in: [u64; 16],
    flags: u64,
    stack: [u64; 4],
    what: &str,
) {
    let before = fx.snapshot();
    let out = fx.run(hook, regs_in, flags, stack);
    out.assert_runtime_called();
    out.assert_transparent();
    fx.snapshot()
        .assert_eq_to(&before, &format!("{hook:?} {what}"));
}

#[test]
fn start_frame_hit_pushes_a_pending_record() {
    let fx = Fixture::new();
    for hook in START_HOOKS {
        for flags in FLAGS {
            // L > P: the caller dispatched past its prev_instr (bias grows).
            let st = start_setup(&fx, P + 0x40, 5, false);
            check_start_hit(&fx, hook, &st, flags, "L = P + 0x40");
            let n = fx.rec(st.new_record());
            assert_eq!(
                n,
                Rec {
                    frame: fx.f(),
                    expect: Q + 2,
                    last_n: Q,
                    ord: 0,
                    bias: 0,
                    parent: st.s,
                    flags: HOT_PENDING,
                    persistent: Rec::junk(5).persistent,
                }
            );
            let s = fx.rec(st.s);
            assert_eq!((s.bias, s.last_n, s.expect), (5 + 0x20, P, P + 2));
            assert_eq!((s.ord, s.frame, s.flags), (3, fx.c(), 0));
        }
    }
}

#[test]
fn start_frame_hit_negative_and_zero_bias_delta() {
    let fx = Fixture::new();
    for hook in START_HOOKS {
        // L < P: bias += (L − P) / 2 < 0, with the sign kept.
        let st = start_setup(&fx, P - 0x60, -7, false);
        check_start_hit(&fx, hook, &st, FLAGS[1], "L = P - 0x60");
        assert_eq!(fx.rec(st.s).bias, -7 - 0x30);
        // A large negative bias going further down.
        let st = start_setup(&fx, P - 0x2000, -1_000_000, false);
        check_start_hit(&fx, hook, &st, FLAGS[2], "L = P - 0x2000");
        assert_eq!(fx.rec(st.s).bias, -1_000_000 - 0x1000);
        // L == P: no change of bias.
        let st = start_setup(&fx, P, 11, false);
        check_start_hit(&fx, hook, &st, FLAGS[0], "L = P");
        assert_eq!(fx.rec(st.s).bias, 11);
    }
}

#[test]
fn start_frame_hit_with_marked_last_n() {
    // After SEND (`classify_next`) the caller's last_n is `L | 1`: L is used.
    let fx = Fixture::new();
    for hook in START_HOOKS {
        let st = start_setup(&fx, (P + 0x10) | 1, 0, false);
        check_start_hit(&fx, hook, &st, FLAGS[1], "last_n = (P + 0x10) | 1");
        let s = fx.rec(st.s);
        assert_eq!((s.bias, s.last_n, s.expect), (8, P, P + 2));
    }
}

#[test]
fn start_frame_hit_when_the_slot_holder_is_the_top() {
    let fx = Fixture::new();
    for hook in START_HOOKS {
        let st = start_setup(&fx, P + 4, 1, true);
        assert_eq!(st.s, st.t);
        check_start_hit(&fx, hook, &st, FLAGS[2], "S == T");
        assert_eq!(fx.rec(st.new_record()).parent, st.t);
    }
}

#[test]
fn start_frame_hit_at_the_stack_limit() {
    // T + 64 == stack_limit: the last usable record.
    let fx = Fixture::new();
    for hook in START_HOOKS {
        let st = start_setup(&fx, P + 2, 0, false);
        fx.set_word(field::STACK_LIMIT, st.new_record());
        check_start_hit(&fx, hook, &st, FLAGS[0], "T + 64 == limit");
    }
}

#[test]
fn start_frame_hit_with_hooks_disabled() {
    // The fast path runs before (and regardless of) the runtime-call gate.
    let mut fx = Fixture::new();
    fx.map.descriptor().hooks_enabled = 0;
    for hook in START_HOOKS {
        let st = start_setup(&fx, P + 0x40, 5, false);
        check_start_hit(&fx, hook, &st, FLAGS[1], "hooks disabled");
    }
}

#[test]
fn start_frame_chain_of_inlined_calls() {
    // F calls G inline: the second push's slot holder is the first pushed record.
    let fx = Fixture::new();
    for hook in START_HOOKS {
        let st = start_setup(&fx, P + 0x40, 5, false);
        check_start_hit(&fx, hook, &st, FLAGS[0], "first push");
        let n1 = st.new_record();
        // F dispatched up to prev_instr Q2 (the record's last_n follows, as the
        // stubs keep it); G is a second frame whose previous is F.
        let q2 = Q + 0x30;
        fx.write_u64(fx.f() + PREV_INSTR as u64, q2);
        let mut rec = fx.rec(n1);
        rec.last_n = q2;
        rec.expect = q2 + 2;
        fx.set_rec(n1, rec);
        // Move C's contents to G's buffer role: reuse C as G (previous = F).
        for off in (0..0x100).step_by(8) {
            fx.write_u64(fx.c() + off, 0x6060_0000_0000_0000 | off);
        }
        fx.write_u64(fx.c() + PREVIOUS as u64, fx.f());
        fx.write_u64(fx.c() + PREV_INSTR as u64, 0x7f99_0000_0010);
        fx.write_u8(fx.c() + OWNER as u64, 0);
        let before = fx.snapshot();
        let mut r = regs(77);
        r[hook.frame_reg()] = fx.c();
        let out = fx.run(hook, r, FLAGS[2], STACK);
        out.assert_runtime_not_called();
        out.assert_transparent();
        let n2 = n1 + 64;
        let mut e = before.clone();
        // F's record: L == prev_instr, so no bias change.
        e.set_rec_field(n1, hot::LAST_N, q2);
        e.set_rec_field(n1, hot::EXPECT, q2 + 2);
        e.set_rec_field(n2, hot::FRAME, fx.c());
        e.set_rec_field(n2, hot::LAST_N, 0x7f99_0000_0010);
        e.set_rec_field(n2, hot::EXPECT, 0x7f99_0000_0012);
        e.set_rec_field(n2, hot::ORD, 0);
        e.set_rec_field(n2, hot::BIAS, 0);
        e.set_rec_field(n2, hot::PARENT, n1);
        e.set_rec_field(n2, hot::FLAGS, HOT_PENDING);
        e.set_field(field::STACK_TOP, n2);
        e.set_field(field::SLOT_RECORD, n2);
        e.set_field(field::CUR_RECORD, n2);
        fx.snapshot()
            .assert_eq_to(&e, &format!("{hook:?} second push"));
    }
}

/// Turns a hit scenario into a miss.
type Spoil = fn(&Fixture, &Start);

/// Each way a `start_frame` can miss, with what spoils a hit scenario.
fn start_miss_cases() -> Vec<(&'static str, Spoil)> {
    vec![
        ("owner 1 (generator unknown to the table)", |fx, _| {
            fx.write_u8(fx.f() + OWNER as u64, 1)
        }),
        ("owner 2 (frame object)", |fx, _| {
            fx.write_u8(fx.f() + OWNER as u64, 2)
        }),
        ("owner 3 (C stack)", |fx, _| {
            fx.write_u8(fx.f() + OWNER as u64, 3)
        }),
        ("owner 0x80", |fx, _| {
            fx.write_u8(fx.f() + OWNER as u64, 0x80)
        }),
        ("F.previous != S.frame", |fx, _| {
            fx.write_u64(fx.f() + PREVIOUS as u64, fx.c() + 0x100)
        }),
        ("F.previous == 0", |fx, _| {
            fx.write_u64(fx.f() + PREVIOUS as u64, 0)
        }),
        ("S.frame == 0 (slot through the runtime)", |fx, st| {
            fx.write_u64(st.s + hot::FRAME as u64, 0)
        }),
        ("S.frame differs by one bit", |fx, st| {
            fx.write_u64(st.s + hot::FRAME as u64, fx.c() ^ (1 << 40))
        }),
        ("stack full: limit == T + 63", |fx, st| {
            fx.set_word(field::STACK_LIMIT, st.new_record() - 1)
        }),
        ("stack full: limit == T", |fx, st| {
            fx.set_word(field::STACK_LIMIT, st.t)
        }),
        ("stack full: limit == 0", |fx, _| {
            fx.set_word(field::STACK_LIMIT, 0)
        }),
        ("S.last_n == 1 (runtime classifies)", |fx, st| {
            fx.write_u64(st.s + hot::LAST_N as u64, 1)
        }),
        ("S.last_n == 0", |fx, st| {
            fx.write_u64(st.s + hot::LAST_N as u64, 0)
        }),
    ]
}

#[test]
fn start_frame_misses_call_the_runtime_and_change_nothing() {
    let fx = Fixture::new();
    for hook in START_HOOKS {
        for (what, spoil) in start_miss_cases() {
            for flags in FLAGS {
                let st = start_setup(&fx, P + 0x40, 5, false);
                spoil(&fx, &st);
                let r = start_regs(&fx, hook, flags);
                check_untouched_slow(&fx, hook, r, flags, STACK, what);
            }
        }
    }
}

#[test]
fn start_frame_misses_with_hooks_disabled_change_nothing() {
    let mut fx = Fixture::new();
    fx.map.descriptor().hooks_enabled = 0;
    for hook in START_HOOKS {
        for (what, spoil) in start_miss_cases() {
            let st = start_setup(&fx, P + 0x40, 5, false);
            spoil(&fx, &st);
            let before = fx.snapshot();
            let out = fx.run(hook, start_regs(&fx, hook, 3), FLAGS[1], STACK);
            out.assert_runtime_not_called();
            out.assert_transparent();
            fx.snapshot()
                .assert_eq_to(&before, &format!("{hook:?} {what}, disabled"));
        }
    }
}

// ---------------------------------------------------------------------------
// start_frame of a suspended generator frame

/// A generator resume scenario: a `start_frame` scenario whose `F` is owned
/// by a generator (owner 1) and has its own record `r` in the table.
#[derive(Clone, Copy, Debug)]
struct Gen {
    st: Start,
    /// `F`'s own record (`gen_rec(1)`).
    r: u64,
}

/// `F`'s own record with flags `flags`: its bias (kept across activations)
/// and junk elsewhere.
fn gen_record(fx: &Fixture, flags: u64) -> Rec {
    Rec {
        frame: fx.f(),
        expect: 0x9e9e_0000_0001,
        last_n: 0x9e9e_0000_0002,
        ord: 9,
        bias: -0x33,
        parent: 0x9e9e_0000_0005,
        flags,
        persistent: 0x9e9e_0000_0007,
    }
}

/// Sets up the state of a generator resume hit: as [`start_setup`], with
/// `F` owned by a generator, `R = gen_rec(1)` suspended (`HOT_GEN_IDLE`) and
/// `[F, R]` at `F`'s table index.
fn gen_setup(fx: &Fixture, last_n: u64, s_bias: i64, s_is_top: bool) -> Gen {
    let st = start_setup(fx, last_n, s_bias, s_is_top);
    fx.write_u8(fx.f() + OWNER as u64, 1);
    let r = fx.gen_rec(1);
    fx.set_rec(r, gen_record(fx, HOT_GEN_IDLE));
    fx.set_table(table_index(fx.f()), fx.f(), r);
    Gen { st, r }
}

/// The state after a generator resume hit from `before`.
fn gen_expected(fx: &Fixture, g: &Gen, before: &Snapshot) -> Snapshot {
    let mut e = before.clone();
    expect_caller_fix(&mut e, &g.st);
    // The marker: frame, parent, flags, persistent; its other words untouched.
    let m = g.st.new_record();
    e.set_rec_field(m, hot::FRAME, fx.f());
    e.set_rec_field(m, hot::PARENT, g.st.s);
    e.set_rec_field(m, hot::FLAGS, MARKER);
    e.set_rec_field(m, hot::PERSISTENT, g.r);
    // R: no longer idle (other flag bits kept), primed, ordinal 0, bias kept.
    let r_flags = before.get(g.r + hot::FLAGS as u64);
    e.set_rec_field(g.r, hot::FLAGS, r_flags & !HOT_GEN_IDLE);
    e.set_rec_field(g.r, hot::LAST_N, Q);
    e.set_rec_field(g.r, hot::EXPECT, Q + 2);
    e.set_rec_field(g.r, hot::ORD, 0);
    e.set_field(field::STACK_TOP, m);
    e.set_field(field::SLOT_RECORD, g.r);
    e.set_field(field::CUR_RECORD, g.r);
    e
}

/// Runs `hook` on the state set up by `gen_setup` and checks a hit.
fn check_gen_hit(fx: &Fixture, hook: Hook, g: &Gen, flags: u64, what: &str) {
    let before = fx.snapshot();
    let expected = gen_expected(fx, g, &before);
    let out = fx.run(
        hook,
        start_regs(fx, hook, flags ^ g.st.last_n),
        flags,
        STACK,
    );
    out.assert_runtime_not_called();
    out.assert_transparent();
    fx.snapshot()
        .assert_eq_to(&expected, &format!("{hook:?} generator resume, {what}"));
}

#[test]
fn generator_resume_hit_pushes_a_marker_and_primes_the_record() {
    let fx = Fixture::new();
    for hook in START_HOOKS {
        for flags in FLAGS {
            let g = gen_setup(&fx, P + 0x40, 5, false);
            check_gen_hit(&fx, hook, &g, flags, "L = P + 0x40");
            let mut m = Rec::junk(5);
            m.frame = fx.f();
            m.parent = g.st.s;
            m.flags = MARKER;
            m.persistent = g.r;
            assert_eq!(fx.rec(g.st.new_record()), m);
            let mut r = gen_record(&fx, 0);
            r.last_n = Q;
            r.expect = Q + 2;
            r.ord = 0;
            assert_eq!(fx.rec(g.r), r);
            let s = fx.rec(g.st.s);
            assert_eq!((s.bias, s.last_n, s.expect), (5 + 0x20, P, P + 2));
            assert_eq!((s.ord, s.frame, s.flags), (3, fx.c(), 0));
            assert_eq!(fx.word(field::STACK_TOP), g.st.new_record());
            assert_eq!(fx.word(field::SLOT_RECORD), g.r);
            assert_eq!(fx.word(field::CUR_RECORD), g.r);
        }
    }
}

#[test]
fn generator_resume_hit_variants() {
    let fx = Fixture::new();
    for hook in START_HOOKS {
        // Negative bias delta (sign kept).
        let g = gen_setup(&fx, P - 0x60, -7, false);
        check_gen_hit(&fx, hook, &g, FLAGS[1], "L = P - 0x60");
        assert_eq!(fx.rec(g.st.s).bias, -7 - 0x30);
        // A marked last_n (after SEND): L = last_n & !1.
        let g = gen_setup(&fx, (P + 0x10) | 1, 0, false);
        check_gen_hit(&fx, hook, &g, FLAGS[2], "last_n = (P + 0x10) | 1");
        assert_eq!(fx.rec(g.st.s).bias, 8);
        // The slot holder is the top record.
        let g = gen_setup(&fx, P + 4, 1, true);
        check_gen_hit(&fx, hook, &g, FLAGS[0], "S == T");
        assert_eq!(fx.rec(g.st.new_record()).parent, g.st.t);
        // The last usable record.
        let g = gen_setup(&fx, P + 2, 0, false);
        fx.set_word(field::STACK_LIMIT, g.st.new_record());
        check_gen_hit(&fx, hook, &g, FLAGS[1], "T + 64 == limit");
        // Other flag bits of R are kept; only HOT_GEN_IDLE is cleared.
        let g = gen_setup(&fx, P + 0x40, 5, false);
        fx.write_u64(g.r + hot::FLAGS as u64, HOT_GEN_IDLE | 0x30);
        check_gen_hit(&fx, hook, &g, FLAGS[2], "R.flags = IDLE | 0x30");
        assert_eq!(fx.rec(g.r).flags, 0x30);
        // R's ordinal already 0, bias 0.
        let g = gen_setup(&fx, P + 0x40, 5, false);
        fx.write_u64(g.r + hot::ORD as u64, 0);
        fx.write_u64(g.r + hot::BIAS as u64, 0);
        check_gen_hit(&fx, hook, &g, FLAGS[0], "R.ord = 0");
        // The neighbouring table entries name F too, with other idle records
        // of F: only F's own index counts.
        let g = gen_setup(&fx, P + 0x40, 5, false);
        let i = table_index(fx.f());
        let (below, above) = (
            (i + GEN_TABLE_SIZE - 1) % GEN_TABLE_SIZE,
            (i + 1) % GEN_TABLE_SIZE,
        );
        for (idx, rec) in [(below, fx.gen_rec(2)), (above, fx.gen_rec(3))] {
            fx.set_rec(rec, gen_record(&fx, HOT_GEN_IDLE));
            fx.set_table(idx, fx.f(), rec);
        }
        check_gen_hit(&fx, hook, &g, FLAGS[1], "decoy entries around F's");
        fx.clear_table(below);
        fx.clear_table(above);
    }
}

#[test]
fn generator_resume_hit_with_hooks_disabled() {
    let mut fx = Fixture::new();
    fx.map.descriptor().hooks_enabled = 0;
    for hook in START_HOOKS {
        let g = gen_setup(&fx, P + 0x40, 5, false);
        check_gen_hit(&fx, hook, &g, FLAGS[1], "hooks disabled");
    }
}

/// Turns a generator resume hit scenario into a miss.
type GenSpoil = fn(&Fixture, &Gen);

/// Each way a generator resume can miss.
fn gen_miss_cases() -> Vec<(&'static str, GenSpoil)> {
    vec![
        ("table: another generator's entry (same index)", |fx, g| {
            fx.set_table(table_index(fx.f()), fx.f() + 0x10000, g.r)
        }),
        ("table: entry frame 0", |fx, g| {
            fx.set_table(table_index(fx.f()), 0, g.r)
        }),
        ("table: entry frame differs by one bit", |fx, g| {
            fx.set_table(table_index(fx.f()), fx.f() ^ (1 << 36), g.r)
        }),
        ("table: F's pair at the next index", |fx, g| {
            let i = table_index(fx.f());
            fx.clear_table(i);
            fx.set_table((i + 1) % GEN_TABLE_SIZE, fx.f(), g.r);
        }),
        ("table: F's pair at the previous index", |fx, g| {
            let i = table_index(fx.f());
            fx.clear_table(i);
            fx.set_table((i + GEN_TABLE_SIZE - 1) % GEN_TABLE_SIZE, fx.f(), g.r);
        }),
        ("R.frame == 0", |_, g| write_field(g.r, hot::FRAME, 0)),
        ("R.frame is another frame", |fx, g| {
            write_field(g.r, hot::FRAME, fx.f() + 0x40)
        }),
        ("R.frame differs by one bit", |fx, g| {
            write_field(g.r, hot::FRAME, fx.f() ^ (1 << 41))
        }),
        ("R running: flags 0", |_, g| write_field(g.r, hot::FLAGS, 0)),
        ("R flags HOT_PENDING", |_, g| {
            write_field(g.r, hot::FLAGS, HOT_PENDING)
        }),
        ("R flags HOT_GEN", |_, g| {
            write_field(g.r, hot::FLAGS, HOT_GEN)
        }),
        ("R flags: every bit but HOT_GEN_IDLE", |_, g| {
            write_field(g.r, hot::FLAGS, !HOT_GEN_IDLE)
        }),
        ("owner 2 (frame object)", |fx, _| {
            fx.write_u8(fx.f() + OWNER as u64, 2)
        }),
        ("owner 3 (C stack)", |fx, _| {
            fx.write_u8(fx.f() + OWNER as u64, 3)
        }),
        ("owner 0x81", |fx, _| {
            fx.write_u8(fx.f() + OWNER as u64, 0x81)
        }),
        ("F.previous != S.frame", |fx, _| {
            fx.write_u64(fx.f() + PREVIOUS as u64, fx.c() + 0x100)
        }),
        ("S.frame == 0", |_, g| write_field(g.st.s, hot::FRAME, 0)),
        ("stack full: limit == T + 63", |fx, g| {
            fx.set_word(field::STACK_LIMIT, g.st.new_record() - 1)
        }),
        ("S.last_n == 1", |_, g| write_field(g.st.s, hot::LAST_N, 1)),
        ("S.last_n == 0", |_, g| write_field(g.st.s, hot::LAST_N, 0)),
    ]
}

/// Writes a record word directly (the records live in the fixture's RW data
/// area, which the spoil functions reach through their addresses).
fn write_field(rec: u64, field: usize, v: u64) {
    // SAFETY: `rec` is a record of a live fixture's RW data area (8-aligned).
    unsafe { std::ptr::write_volatile((rec + field as u64) as *mut u64, v) }
}

#[test]
fn generator_resume_misses_call_the_runtime_and_change_nothing() {
    let fx = Fixture::new();
    for hook in START_HOOKS {
        for (what, spoil) in gen_miss_cases() {
            for flags in FLAGS {
                let g = gen_setup(&fx, P + 0x40, 5, false);
                spoil(&fx, &g);
                let r = start_regs(&fx, hook, flags);
                check_untouched_slow(&fx, hook, r, flags, STACK, what);
            }
        }
    }
}

#[test]
fn generator_resume_misses_with_hooks_disabled_change_nothing() {
    let mut fx = Fixture::new();
    fx.map.descriptor().hooks_enabled = 0;
    for hook in START_HOOKS {
        for (what, spoil) in gen_miss_cases() {
            let g = gen_setup(&fx, P + 0x40, 5, false);
            spoil(&fx, &g);
            let before = fx.snapshot();
            let out = fx.run(hook, start_regs(&fx, hook, 3), FLAGS[1], STACK);
            out.assert_runtime_not_called();
            out.assert_transparent();
            fx.snapshot()
                .assert_eq_to(&before, &format!("{hook:?} {what}, disabled"));
        }
    }
}

// ---------------------------------------------------------------------------
// _PyEvalFrameClearAndPop / _PyThreadState_PopFrame

/// The frame of the pending top record.
const POPPED: u64 = 0x7f00_f4a0_0010;

/// Top record `records[3]`, pending, frame [`POPPED`], parent `parent`;
/// `last_popped` 0.
fn pop_setup(fx: &Fixture, parent: u64, parent_ord: u64) -> u64 {
    let t = fx.rec_addr(3);
    fx.set_rec(
        t,
        Rec {
            frame: POPPED,
            expect: Q + 2,
            last_n: Q,
            ord: 0,
            bias: 0,
            parent,
            flags: HOT_PENDING,
            persistent: 0x7e5e,
        },
    );
    fx.write_u64(parent + hot::ORD as u64, parent_ord);
    fx.set_word(field::STACK_TOP, t);
    fx.set_word(field::STACK_LIMIT, fx.rec_addr(NRECORDS - 1));
    fx.set_word(field::SLOT_RECORD, t);
    fx.set_word(field::CUR_RECORD, t);
    fx.set_word(field::LAST_POPPED, 0);
    t
}

fn pop_regs(seed: u64, frame: u64) -> [u64; 16] {
    let mut r = regs(seed);
    r[RSI] = frame;
    r
}

/// The state after `hook` popped the pending top record `t` of frame
/// `frame`: only `ClearAndPop` remembers the frame in `last_popped`.
fn pop_expected(before: &Snapshot, hook: Hook, t: u64, frame: u64) -> Snapshot {
    let parent = before.get(t + hot::PARENT as u64);
    let mut e = before.clone();
    e.set_rec_field(
        parent,
        hot::ORD,
        before.get(parent + hot::ORD as u64).wrapping_add(1),
    );
    e.set_rec_field(t, hot::FRAME, 0);
    e.set_field(field::STACK_TOP, t - 64);
    e.set_field(field::SLOT_RECORD, parent);
    e.set_field(field::CUR_RECORD, parent);
    if hook == Hook::ClearAndPop {
        e.set_field(field::LAST_POPPED, frame);
    }
    e
}

/// Runs `hook` for `frame` and checks a fast pop of the top record.
fn check_pop_hit(fx: &Fixture, hook: Hook, frame: u64, flags: u64, what: &str) {
    let before = fx.snapshot();
    let t = fx.word(field::STACK_TOP);
    let e = pop_expected(&before, hook, t, frame);
    let out = fx.run(hook, pop_regs(flags, frame), flags, STACK);
    out.assert_runtime_not_called();
    out.assert_transparent();
    fx.snapshot().assert_eq_to(&e, &format!("{hook:?} {what}"));
}

#[test]
fn pop_hit_pops_the_pending_record() {
    let fx = Fixture::new();
    for hook in POP_HOOKS {
        for flags in FLAGS {
            // The parent right below (the usual shape).
            let parent = fx.rec_addr(2);
            pop_setup(&fx, parent, 6);
            check_pop_hit(&fx, hook, POPPED, flags, "parent below");
            assert_eq!(fx.rec(parent).ord, 7);
            let remembered = if hook == Hook::ClearAndPop { POPPED } else { 0 };
            assert_eq!(fx.word(field::LAST_POPPED), remembered);
            // A parent elsewhere: stack_top still moves down by one record.
            let parent = fx.lone();
            pop_setup(&fx, parent, 0);
            check_pop_hit(&fx, hook, POPPED, flags, "parent elsewhere");
            assert_eq!(fx.word(field::STACK_TOP), fx.rec_addr(2));
            assert_eq!(fx.word(field::SLOT_RECORD), parent);
            // The ordinal wraps like the runtime's.
            pop_setup(&fx, parent, u64::MAX);
            check_pop_hit(&fx, hook, POPPED, flags, "ordinal wraps");
            assert_eq!(fx.rec(parent).ord, 0);
            // An unrelated frame in last_popped: replaced by ClearAndPop,
            // kept by PopFrame.
            pop_setup(&fx, parent, 1);
            fx.set_word(field::LAST_POPPED, POPPED + 0x1000);
            check_pop_hit(&fx, hook, POPPED, flags, "unrelated last_popped");
        }
    }
}

#[test]
fn pop_hit_with_hooks_disabled() {
    let mut fx = Fixture::new();
    fx.map.descriptor().hooks_enabled = 0;
    for hook in POP_HOOKS {
        pop_setup(&fx, fx.rec_addr(2), 1);
        check_pop_hit(&fx, hook, POPPED, FLAGS[0], "hooks disabled");
    }
}

#[test]
fn pop_misses_call_the_runtime_and_change_nothing() {
    let fx = Fixture::new();
    let cases: [(&str, u64, u64); 6] = [
        ("frame mismatch", POPPED + 0x40, HOT_PENDING),
        ("frame differs by one bit", POPPED ^ (1 << 44), HOT_PENDING),
        ("flags 0 (adopted by the runtime)", POPPED, 0),
        ("flags HOT_GEN (adopted generator marker)", POPPED, HOT_GEN),
        (
            "flags HOT_PENDING | HOT_GEN (pending generator marker)",
            POPPED,
            MARKER,
        ),
        (
            "flags HOT_PENDING | HOT_GEN_IDLE",
            POPPED,
            HOT_PENDING | HOT_GEN_IDLE,
        ),
    ];
    for hook in POP_HOOKS {
        for (what, rsi, t_flags) in cases {
            for (flags, last_popped) in FLAGS.into_iter().zip([0, POPPED + 0x40 + 64, 1]) {
                let t = pop_setup(&fx, fx.rec_addr(2), 6);
                fx.write_u64(t + hot::FLAGS as u64, t_flags);
                fx.set_word(field::LAST_POPPED, last_popped);
                let r = pop_regs(flags, rsi);
                check_untouched_slow(&fx, hook, r, flags, STACK, what);
            }
        }
    }
    // ClearAndPop of frame 0 (last_popped non-zero: PopFrame would skip
    // rsi == last_popped == 0) misses, and so does the base sentinel (frame
    // 0, not pending).
    pop_setup(&fx, fx.rec_addr(2), 6);
    let r = pop_regs(9, 0);
    check_untouched_slow(&fx, Hook::ClearAndPop, r, FLAGS[0], STACK, "frame 0");
    for hook in POP_HOOKS {
        let t = pop_setup(&fx, fx.rec_addr(2), 6);
        fx.set_rec(t, Rec::junk(3));
        fx.write_u64(t + hot::FRAME as u64, 0);
        fx.set_word(field::LAST_POPPED, POPPED);
        check_untouched_slow(&fx, hook, pop_regs(9, 0), FLAGS[0], STACK, "sentinel");
    }
}

#[test]
fn pop_frame_skips_the_frame_clear_and_pop_just_popped() {
    // _PyEvalFrameClearAndPop(X) pops X's pending record on the fast path;
    // the _PyThreadState_PopFrame(X) it makes is then a no-op that only
    // forgets X. A second PopFrame(X) is not skipped.
    let fx = Fixture::new();
    for flags in FLAGS {
        pop_setup(&fx, fx.rec_addr(2), 6);
        check_pop_hit(&fx, Hook::ClearAndPop, POPPED, flags, "ClearAndPop");
        let before = fx.snapshot();
        let out = fx.run(Hook::PopFrame, pop_regs(flags, POPPED), flags, STACK);
        out.assert_runtime_not_called();
        out.assert_transparent();
        let mut e = before.clone();
        e.set_field(field::LAST_POPPED, 0);
        fx.snapshot().assert_eq_to(&e, "PopFrame after ClearAndPop");
        let r = pop_regs(flags ^ 1, POPPED);
        check_untouched_slow(&fx, Hook::PopFrame, r, flags, STACK, "second PopFrame");
    }
    // The skip does not depend on the hooks being enabled either.
    let mut fx = fx;
    fx.map.descriptor().hooks_enabled = 0;
    pop_setup(&fx, fx.rec_addr(2), 6);
    fx.set_word(field::LAST_POPPED, POPPED);
    fx.write_u64(fx.rec_addr(3) + hot::FLAGS as u64, 0);
    let before = fx.snapshot();
    let out = fx.run(Hook::PopFrame, pop_regs(5, POPPED), FLAGS[0], STACK);
    out.assert_runtime_not_called();
    out.assert_transparent();
    let mut e = before.clone();
    e.set_field(field::LAST_POPPED, 0);
    fx.snapshot()
        .assert_eq_to(&e, "PopFrame skip, hooks disabled");
}

#[test]
fn clear_and_pop_never_skips_last_popped() {
    // last_popped only concerns _PyThreadState_PopFrame.
    let fx = Fixture::new();
    // Not pending: the runtime is called.
    let t = pop_setup(&fx, fx.rec_addr(2), 6);
    fx.write_u64(t + hot::FLAGS as u64, 0);
    fx.set_word(field::LAST_POPPED, POPPED);
    let r = pop_regs(3, POPPED);
    check_untouched_slow(&fx, Hook::ClearAndPop, r, FLAGS[1], STACK, "last_popped");
    // Pending: an ordinary pop.
    pop_setup(&fx, fx.rec_addr(2), 6);
    fx.set_word(field::LAST_POPPED, POPPED);
    check_pop_hit(
        &fx,
        Hook::ClearAndPop,
        POPPED,
        FLAGS[1],
        "last_popped, pending",
    );
}

/// `_PyThreadState_PopFrame`'s own fast pop of `X` (no `ClearAndPop` fast
/// path ran for `X`, e.g. at a call site where `_PyEvalFrameClearAndPop` is
/// inlined and so not hooked) leaves `last_popped` alone: no
/// `_PyThreadState_PopFrame(X)` follows to consume it, and the next frame the
/// data stack allocates at the same address (LIFO reuse makes that the
/// common case), pushed on the fast path and popped through
/// `_PyThreadState_PopFrame`, must be popped, not skipped.
#[test]
fn pop_frame_own_pop_leaves_no_stale_skip() {
    let fx = Fixture::new();
    let parent = fx.rec_addr(2);
    for flags in FLAGS {
        // PopFrame pops X directly: last_popped stays 0.
        pop_setup(&fx, parent, 6);
        check_pop_hit(&fx, Hook::PopFrame, POPPED, flags, "own pop");
        assert_eq!(fx.word(field::LAST_POPPED), 0);
        assert_eq!(fx.rec(parent).ord, 7);
        let stale = fx.word(field::LAST_POPPED);
        // A new inlined call whose frame lands at the same address is pushed
        // (pending again) and popped through _PyThreadState_PopFrame;
        // whatever the first pop left in last_popped is kept.
        pop_setup(&fx, parent, 7);
        fx.set_word(field::LAST_POPPED, stale);
        check_pop_hit(&fx, Hook::PopFrame, POPPED, flags, "reused address");
        assert_eq!(fx.rec(parent).ord, 8);
    }
}

#[test]
fn push_then_pop_restores_the_stack() {
    // start_frame hit, then the ClearAndPop of the same frame, then the
    // PopFrame it makes: the caller's ordinal is bumped and everything is
    // published back to it.
    let fx = Fixture::new();
    for hook in START_HOOKS {
        let st = start_setup(&fx, P + 0x40, 5, true);
        fx.set_word(field::LAST_POPPED, 0);
        let before_push = fx.snapshot();
        assert_eq!(st.s, st.t);
        check_start_hit(&fx, hook, &st, FLAGS[1], "push");
        let after_push = fx.snapshot();
        let out = fx.run(Hook::ClearAndPop, pop_regs(1, fx.f()), FLAGS[0], STACK);
        out.assert_runtime_not_called();
        out.assert_transparent();
        let n = st.new_record();
        let mut e = after_push.clone();
        e.set_rec_field(st.s, hot::ORD, 4);
        e.set_rec_field(n, hot::FRAME, 0);
        e.set_field(field::STACK_TOP, st.t);
        e.set_field(field::SLOT_RECORD, st.s);
        e.set_field(field::CUR_RECORD, st.s);
        e.set_field(field::LAST_POPPED, fx.f());
        fx.snapshot()
            .assert_eq_to(&e, &format!("{hook:?} push, ClearAndPop"));
        let out = fx.run(Hook::PopFrame, pop_regs(2, fx.f()), FLAGS[0], STACK);
        out.assert_runtime_not_called();
        out.assert_transparent();
        e.set_field(field::LAST_POPPED, 0);
        fx.snapshot()
            .assert_eq_to(&e, &format!("{hook:?} push, ClearAndPop, PopFrame"));
        // Compared with before the push, only S changed (the inlined-call fix
        // and ord + 1) and the popped record's frame is 0.
        let mut e = before_push.clone();
        e.set_rec_field(st.s, hot::ORD, 4);
        e.set_rec_field(st.s, hot::BIAS, 5 + 0x20);
        e.set_rec_field(st.s, hot::LAST_N, P);
        e.set_rec_field(st.s, hot::EXPECT, P + 2);
        for (f, v) in [
            (hot::FRAME, 0),
            (hot::EXPECT, Q + 2),
            (hot::LAST_N, Q),
            (hot::ORD, 0),
            (hot::BIAS, 0),
            (hot::PARENT, st.s),
            (hot::FLAGS, HOT_PENDING),
        ] {
            e.set_rec_field(n, f, v);
        }
        e.set_field(field::CUR_RECORD, st.s);
        fx.snapshot()
            .assert_eq_to(&e, &format!("{hook:?} round trip"));
        // Another ClearAndPop of the same frame misses (the record is gone).
        let out = fx.run(Hook::ClearAndPop, pop_regs(3, fx.f()), FLAGS[0], STACK);
        out.assert_runtime_called();
    }
}

// ---------------------------------------------------------------------------
// Current-frame stores

/// The top record of the store scenarios.
const STORE_TOP: usize = 6;

/// The thread of the last boundary runs `F`, whose record `records[6]` (flags
/// `top_flags`, parent `records[5]`, the record of `C`) tops the stack; the
/// fake thread state's current frame is `old`, as `hook` reads it. The slot
/// holder and published record are the top.
fn store_setup(fx: &Fixture, hook: Hook, top_flags: u64, old: u64) -> u64 {
    let t = fx.rec_addr(STORE_TOP);
    let mut r = Rec::junk(STORE_TOP as u64);
    r.frame = fx.f();
    r.flags = top_flags;
    r.parent = fx.rec_addr(STORE_TOP - 1);
    fx.set_rec(t, r);
    let mut p = Rec::junk(STORE_TOP as u64 - 1);
    p.frame = fx.c();
    p.ord = 6;
    fx.set_rec(fx.rec_addr(STORE_TOP - 1), p);
    fx.set_word(field::STACK_TOP, t);
    fx.set_word(field::STACK_LIMIT, fx.rec_addr(NRECORDS - 1));
    fx.set_word(field::SLOT_RECORD, t);
    fx.set_word(field::CUR_RECORD, t);
    fx.set_word(field::LAST_TSTATE, fx.tstate());
    fx.set_thread_state(hook, old);
    t
}

/// A generator's marker (flags `marker_flags`) for `F` tops the stack, its
/// parent `parent` (frame `C`, ordinal `parent_ord`), its persistent record
/// `gen_rec(1)` (frame `F`, running: flags `r_flags`, ordinal 4), which is
/// the slot holder and the published record. Returns (marker, `R`).
fn marker_setup(
    fx: &Fixture,
    hook: Hook,
    marker_flags: u64,
    parent: u64,
    parent_ord: u64,
    r_flags: u64,
) -> (u64, u64) {
    let t = store_setup(fx, hook, marker_flags, fx.f());
    let r = fx.gen_rec(1);
    write_field(t, hot::PARENT, parent);
    write_field(t, hot::PERSISTENT, r);
    if parent != fx.rec_addr(STORE_TOP - 1) {
        fx.set_rec(parent, Rec::junk(0x77));
    }
    write_field(parent, hot::FRAME, fx.c());
    write_field(parent, hot::ORD, parent_ord);
    let mut rec = gen_record(fx, r_flags);
    rec.ord = 4;
    rec.last_n = Q + 0x10;
    rec.expect = Q + 0x12;
    fx.set_rec(r, rec);
    fx.set_word(field::SLOT_RECORD, r);
    fx.set_word(field::CUR_RECORD, r);
    (t, r)
}

/// The stack words with the thread state `ts` where `hook` reads it.
fn store_stack(hook: Hook, ts: u64) -> [u64; 4] {
    let mut s = STACK;
    s[hook.tstate_word()] = ts;
    s
}

/// Registers for a store of `new` by `hook`.
fn store_regs(hook: Hook, seed: u64, new: u64) -> [u64; 16] {
    let mut r = regs(seed);
    r[hook.new_reg()] = new;
    r
}

/// The state after the deactivation of the pending marker `t` on top.
fn deactivate_expected(before: &Snapshot, t: u64) -> Snapshot {
    let parent = before.get(t + hot::PARENT as u64);
    let r = before.get(t + hot::PERSISTENT as u64);
    let mut e = before.clone();
    e.set_rec_field(
        parent,
        hot::ORD,
        before.get(parent + hot::ORD as u64).wrapping_add(1),
    );
    e.set_rec_field(r, hot::ORD, 0);
    e.set_rec_field(
        r,
        hot::FLAGS,
        before.get(r + hot::FLAGS as u64) | HOT_GEN_IDLE,
    );
    e.set_rec_field(t, hot::FRAME, 0);
    e.set_field(field::STACK_TOP, t - 64);
    e.set_field(field::SLOT_RECORD, parent);
    e.set_field(field::CUR_RECORD, parent);
    e
}

/// Runs the store of `new` and checks it was handled inline with the state
/// becoming `expected`.
fn check_store_fast(
    fx: &Fixture,
    hook: Hook,
    new: u64,
    flags: u64,
    expected: &Snapshot,
    what: &str,
) {
    let r = store_regs(hook, flags ^ new, new);
    let out = fx.run(hook, r, flags, store_stack(hook, fx.tstate()));
    out.assert_runtime_not_called();
    out.assert_transparent();
    fx.snapshot()
        .assert_eq_to(expected, &format!("{hook:?} {what}"));
}

/// Runs the store of `new` and checks it was skipped (nothing changed).
fn check_store_skip(fx: &Fixture, hook: Hook, new: u64, flags: u64, what: &str) {
    let before = fx.snapshot();
    check_store_fast(fx, hook, new, flags, &before, what);
}

#[test]
fn current_frame_store_leaving_a_thread_frame_skips() {
    // The top is a thread frame's record (pending or adopted): a push is
    // start_frame's business, a return or unwind ClearAndPop's.
    let fx = Fixture::new();
    for hook in STORE_HOOKS {
        for flags in FLAGS {
            for top_flags in [0, HOT_PENDING] {
                for (what, new) in [
                    ("return to the caller", fx.c()),
                    ("push of a callee", fx.f2()),
                    ("new frame 0", 0),
                    ("new == old", fx.f()),
                ] {
                    store_setup(&fx, hook, top_flags, fx.f());
                    let what = format!("thread top, flags {top_flags}, {what}");
                    check_store_skip(&fx, hook, new, flags, &what);
                }
            }
        }
    }
}

#[test]
fn current_frame_store_yield_deactivates_a_pending_marker() {
    let fx = Fixture::new();
    for hook in STORE_HOOKS {
        for flags in FLAGS {
            for (what, parent, parent_ord, r_flags) in [
                ("parent below", fx.rec_addr(STORE_TOP - 1), 6, 0),
                ("parent elsewhere", fx.lone(), 0, 0),
                (
                    "parent ordinal wraps",
                    fx.rec_addr(STORE_TOP - 1),
                    u64::MAX,
                    0,
                ),
                (
                    "R with other flag bits",
                    fx.rec_addr(STORE_TOP - 1),
                    2,
                    0x30,
                ),
            ] {
                let (t, r) = marker_setup(&fx, hook, MARKER, parent, parent_ord, r_flags);
                let before = fx.snapshot();
                let e = deactivate_expected(&before, t);
                check_store_fast(&fx, hook, fx.c(), flags, &e, what);
                assert_eq!(fx.rec(parent).ord, parent_ord.wrapping_add(1));
                let rec = fx.rec(r);
                assert_eq!((rec.ord, rec.flags), (0, r_flags | HOT_GEN_IDLE));
                assert_eq!(fx.rec(t).frame, 0);
                assert_eq!(fx.word(field::STACK_TOP), t - 64);
                assert_eq!(fx.word(field::SLOT_RECORD), parent);
                assert_eq!(fx.word(field::CUR_RECORD), parent);
            }
        }
    }
}

#[test]
fn current_frame_store_push_from_a_generator_skips() {
    // The generator calls (or resumes) another frame: the new frame is not
    // the marker's parent's, whether the marker is pending or adopted.
    let fx = Fixture::new();
    for hook in STORE_HOOKS {
        for flags in FLAGS {
            for marker_flags in [MARKER, HOT_GEN] {
                for (what, new) in [
                    ("push of a callee", fx.f2()),
                    ("new frame 0", 0),
                    (
                        "new differs from the parent's by one bit",
                        fx.c() ^ (1 << 3),
                    ),
                ] {
                    let parent = fx.rec_addr(STORE_TOP - 1);
                    marker_setup(&fx, hook, marker_flags, parent, 6, 0);
                    let what = format!("marker flags {marker_flags}, {what}");
                    check_store_skip(&fx, hook, new, flags, &what);
                }
            }
        }
    }
}

#[test]
fn current_frame_store_otherwise_calls_the_runtime() {
    let fx = Fixture::new();
    let parent = fx.rec_addr(STORE_TOP - 1);
    for hook in STORE_HOOKS {
        let i = hook.tstate_word();
        for flags in FLAGS {
            let slow = |what: &str, new: u64, stack: [u64; 4]| {
                let r = store_regs(hook, flags, new);
                check_untouched_slow(&fx, hook, r, flags, stack, what);
            };
            let own = store_stack(hook, fx.tstate());
            // Yield of a marker the runtime adopted.
            marker_setup(&fx, hook, HOT_GEN, parent, 6, 0);
            slow("yield of an adopted marker", fx.c(), own);
            // Another thread's state (the last one only in the neighbouring
            // words), for a thread top and for a pending marker.
            let mut other = [fx.tstate(); 4];
            other[i] = fx.tstate() + 0x1000;
            store_setup(&fx, hook, 0, fx.f());
            slow("other thread, thread top", fx.c(), other);
            marker_setup(&fx, hook, MARKER, parent, 6, 0);
            slow("other thread, pending marker", fx.c(), other);
            // last_tstate 0 (no boundary yet).
            marker_setup(&fx, hook, MARKER, parent, 6, 0);
            fx.set_word(field::LAST_TSTATE, 0);
            slow("last_tstate 0", fx.c(), own);
            // The frame being left is not the top record's.
            for top_flags in [0, HOT_PENDING, MARKER, HOT_GEN] {
                for (what, old) in [
                    ("old is another frame", fx.f2()),
                    ("old is 0", 0),
                    ("old differs by one bit", fx.f() ^ (1 << 42)),
                ] {
                    if top_flags & HOT_GEN != 0 {
                        marker_setup(&fx, hook, top_flags, parent, 6, 0);
                        fx.set_thread_state(hook, old);
                    } else {
                        store_setup(&fx, hook, top_flags, old);
                    }
                    slow(&format!("top flags {top_flags}, {what}"), fx.c(), own);
                }
            }
            // The base sentinel on top (frame 0) while a frame runs.
            store_setup(&fx, hook, 0, fx.f());
            fx.set_rec(fx.rec_addr(STORE_TOP), Rec::junk(0x5e));
            write_field(fx.rec_addr(STORE_TOP), hot::FRAME, 0);
            slow("sentinel on top", fx.c(), own);
        }
    }
}

#[test]
fn current_frame_store_with_hooks_disabled() {
    // The fast path runs regardless of the gate; what would call the
    // runtime does nothing at all.
    let mut fx = Fixture::new();
    fx.map.descriptor().hooks_enabled = 0;
    let parent = fx.rec_addr(STORE_TOP - 1);
    for hook in STORE_HOOKS {
        store_setup(&fx, hook, HOT_PENDING, fx.f());
        check_store_skip(&fx, hook, fx.c(), FLAGS[1], "thread top, disabled");
        marker_setup(&fx, hook, MARKER, parent, 6, 0);
        check_store_skip(
            &fx,
            hook,
            fx.f2(),
            FLAGS[2],
            "push from generator, disabled",
        );
        let (t, _) = marker_setup(&fx, hook, MARKER, parent, 6, 0);
        let e = deactivate_expected(&fx.snapshot(), t);
        check_store_fast(&fx, hook, fx.c(), FLAGS[0], &e, "yield, disabled");
        for (what, marker_flags, ts) in [
            ("adopted marker", HOT_GEN, fx.tstate()),
            ("other thread", MARKER, fx.tstate() + 0x1000),
        ] {
            marker_setup(&fx, hook, marker_flags, parent, 6, 0);
            let before = fx.snapshot();
            let r = store_regs(hook, 5, fx.c());
            let out = fx.run(hook, r, FLAGS[1], store_stack(hook, ts));
            out.assert_runtime_not_called();
            out.assert_transparent();
            fx.snapshot()
                .assert_eq_to(&before, &format!("{hook:?} {what}, disabled"));
        }
    }
}

// ---------------------------------------------------------------------------
// Whole sequences

/// `(start_frame hook, store hook)` pairs covering every hook of each kind.
fn sequence_hooks() -> Vec<(Hook, Hook)> {
    START_HOOKS
        .iter()
        .enumerate()
        .map(|(i, &h)| (h, STORE_HOOKS[i % STORE_HOOKS.len()]))
        .collect()
}

#[test]
fn generator_resume_then_yield_round_trip() {
    // SEND_GEN from C: the store of F (a push: skipped), start_frame(F) (the
    // generator path), the yield's store of C (deactivation); then the same
    // again, since R is idle once more.
    let fx = Fixture::new();
    for (start, store) in sequence_hooks() {
        let g = gen_setup(&fx, P + 0x40, 5, true);
        assert_eq!(g.st.s, g.st.t);
        let before = fx.snapshot();
        // The push of F from C: the top (C's record, adopted) is a thread's.
        fx.set_thread_state(store, fx.c());
        check_store_skip(&fx, store, fx.f(), FLAGS[1], "SEND_GEN push");
        check_gen_hit(&fx, start, &g, FLAGS[2], "first resume");
        let m = g.st.new_record();
        // The yield: F's marker is pending, C is its parent's frame.
        fx.set_thread_state(store, fx.f());
        let e = deactivate_expected(&fx.snapshot(), m);
        check_store_fast(&fx, store, fx.c(), FLAGS[0], &e, "yield");
        // Compared with before: S fixed and its ordinal bumped; the marker
        // popped (its frame 0); R idle, primed, ordinal 0; all published
        // back to S. (The thread state words are the test's own.)
        let mut e = before.clone();
        expect_caller_fix(&mut e, &g.st);
        e.set_rec_field(g.st.s, hot::ORD, 4);
        e.set_rec_field(m, hot::FRAME, 0);
        e.set_rec_field(m, hot::PARENT, g.st.s);
        e.set_rec_field(m, hot::FLAGS, MARKER);
        e.set_rec_field(m, hot::PERSISTENT, g.r);
        e.set_rec_field(g.r, hot::LAST_N, Q);
        e.set_rec_field(g.r, hot::EXPECT, Q + 2);
        e.set_rec_field(g.r, hot::ORD, 0);
        e.set_field(field::CUR_RECORD, g.st.s);
        copy_thread_state(&fx, &mut e);
        fx.snapshot()
            .assert_eq_to(&e, &format!("{start:?}/{store:?} round trip"));
        assert_eq!(fx.rec(g.r).flags, HOT_GEN_IDLE);
        // Resumed again: S.last_n is now P (no bias change).
        let again = Gen {
            st: Start {
                last_n: P,
                s_bias: fx.rec(g.st.s).bias,
                ..g.st
            },
            r: g.r,
        };
        check_gen_hit(&fx, start, &again, FLAGS[1], "second resume");
        assert_eq!(fx.rec(g.r).ord, 0);
    }
}

/// Copies the thread state and `_PyCFrame` words from the current memory
/// into `e` (the sequences rewrite them between steps).
fn copy_thread_state(fx: &Fixture, e: &mut Snapshot) {
    let now = fx.snapshot();
    for off in (TSTATE_OFF..DECOY_CFRAME_OFF + CFRAME_LEN).step_by(8) {
        let a = fx.map.addr(off);
        e.set(a, now.get(a));
    }
}

#[test]
fn generator_calls_a_function_inline_then_yields() {
    // Inside the resumed generator F: the store of F2 (a push from the
    // generator: skipped), start_frame(F2) (a thread push with R as slot
    // holder), F2's return (store of F: skipped; ClearAndPop(F2) pops it and
    // bumps R's ordinal; PopFrame(F2) is skipped), then F's yield (store of
    // C: the marker is deactivated, R's ordinal reset).
    let fx = Fixture::new();
    let q2: u64 = 0x7f99_0000_0010;
    let q3 = Q + 0x20;
    for (start, store) in sequence_hooks() {
        let g = gen_setup(&fx, P + 0x40, 5, false);
        check_gen_hit(&fx, start, &g, FLAGS[0], "resume");
        let m = g.st.new_record();
        // F dispatched up to q3 (R follows, as the stubs keep it).
        fx.write_u64(fx.f() + PREV_INSTR as u64, q3);
        write_field(g.r, hot::LAST_N, q3);
        write_field(g.r, hot::EXPECT, q3 + 2);
        // F2, called by F.
        for off in (0..0x100).step_by(8) {
            fx.write_u64(fx.f2() + off, 0xf2f2_0000_0000_0000 | off);
        }
        fx.write_u64(fx.f2() + PREVIOUS as u64, fx.f());
        fx.write_u64(fx.f2() + PREV_INSTR as u64, q2);
        fx.write_u8(fx.f2() + OWNER as u64, 0);
        // The push of F2 from F.
        fx.set_thread_state(store, fx.f());
        check_store_skip(&fx, store, fx.f2(), FLAGS[1], "push of F2 from F");
        // start_frame(F2): R is the slot holder.
        let before = fx.snapshot();
        let mut r = regs(41);
        r[start.frame_reg()] = fx.f2();
        let out = fx.run(start, r, FLAGS[2], STACK);
        out.assert_runtime_not_called();
        out.assert_transparent();
        let n2 = m + 64;
        let mut e = before.clone();
        e.set_rec_field(g.r, hot::LAST_N, q3);
        e.set_rec_field(g.r, hot::EXPECT, q3 + 2);
        for (f, v) in [
            (hot::FRAME, fx.f2()),
            (hot::EXPECT, q2 + 2),
            (hot::LAST_N, q2),
            (hot::ORD, 0),
            (hot::BIAS, 0),
            (hot::PARENT, g.r),
            (hot::FLAGS, HOT_PENDING),
        ] {
            e.set_rec_field(n2, f, v);
        }
        e.set_field(field::STACK_TOP, n2);
        e.set_field(field::SLOT_RECORD, n2);
        e.set_field(field::CUR_RECORD, n2);
        fx.snapshot()
            .assert_eq_to(&e, &format!("{start:?} push of F2 from the generator"));
        // F2 returns: the store of F leaves a thread frame.
        fx.set_thread_state(store, fx.f2());
        check_store_skip(&fx, store, fx.f(), FLAGS[0], "return from F2");
        // ClearAndPop(F2), then the PopFrame(F2) it makes.
        let before = fx.snapshot();
        let e = pop_expected(&before, Hook::ClearAndPop, n2, fx.f2());
        let out = fx.run(Hook::ClearAndPop, pop_regs(3, fx.f2()), FLAGS[0], STACK);
        out.assert_runtime_not_called();
        out.assert_transparent();
        fx.snapshot().assert_eq_to(&e, "ClearAndPop(F2)");
        assert_eq!(fx.rec(g.r).ord, 1);
        let mut e = fx.snapshot();
        e.set_field(field::LAST_POPPED, 0);
        let out = fx.run(Hook::PopFrame, pop_regs(4, fx.f2()), FLAGS[0], STACK);
        out.assert_runtime_not_called();
        out.assert_transparent();
        fx.snapshot().assert_eq_to(&e, "PopFrame(F2)");
        // F yields to C.
        fx.set_thread_state(store, fx.f());
        let e = deactivate_expected(&fx.snapshot(), m);
        check_store_fast(&fx, store, fx.c(), FLAGS[1], &e, "yield after the call");
        let rec = fx.rec(g.r);
        assert_eq!((rec.ord, rec.flags, rec.last_n), (0, HOT_GEN_IDLE, q3));
        assert_eq!(fx.rec(g.st.s).ord, 4);
        assert_eq!(fx.word(field::STACK_TOP), g.st.t);
        assert_eq!(fx.word(field::SLOT_RECORD), g.st.s);
        assert_eq!(fx.word(field::CUR_RECORD), g.st.s);
    }
}

// ---------------------------------------------------------------------------
// start_frame of a frame called from C (previous: an entry frame)

/// `E.prev_instr` of the entry frame (never read by the fast path).
const E_PREV_INSTR: u64 = 0x7f77_0000_0100;

/// Makes `F2` an entry frame `E` (owner 3 between non-zero bytes, junk
/// elsewhere) whose `previous` is `previous`.
fn make_entry_frame(fx: &Fixture, previous: u64) -> u64 {
    let e = fx.f2();
    for off in (0..0x100).step_by(8) {
        fx.write_u64(e + off, 0xe0e0_0000_0000_0000 | off);
    }
    fx.write_u64(e + PREVIOUS as u64, previous);
    fx.write_u64(e + PREV_INSTR as u64, E_PREV_INSTR);
    fx.write_u8(e + OWNER as u64, 3);
    e
}

/// Turns a `start_frame` scenario into a call from C: `F.previous` is an
/// entry frame `E` (`F2`) whose `previous` is the slot holder's frame `C`.
fn from_c(fx: &Fixture) -> u64 {
    let e = make_entry_frame(fx, fx.c());
    fx.write_u64(fx.f() + PREVIOUS as u64, e);
    e
}

/// Takes back the caller fix `start_expected`/`gen_expected` put in `e`:
/// a call from C leaves the slot holder's bias, `last_n` and `expect` alone.
fn undo_caller_fix(e: &mut Snapshot, before: &Snapshot, s: u64) {
    for f in [hot::BIAS, hot::LAST_N, hot::EXPECT] {
        e.set_rec_field(s, f, before.get(s + f as u64));
    }
}

/// Runs `hook` on a `start_setup` + `from_c` state and checks a hit that
/// applies no caller fix.
fn check_start_from_c_hit(fx: &Fixture, hook: Hook, st: &Start, flags: u64, what: &str) {
    let before = fx.snapshot();
    let mut expected = start_expected(fx, st, &before);
    undo_caller_fix(&mut expected, &before, st.s);
    let s_before = fx.rec(st.s);
    let out = fx.run(hook, start_regs(fx, hook, flags ^ st.last_n), flags, STACK);
    out.assert_runtime_not_called();
    out.assert_transparent();
    fx.snapshot()
        .assert_eq_to(&expected, &format!("{hook:?} call from C, {what}"));
    assert_eq!(fx.rec(st.s), s_before, "the slot holder is untouched");
}

#[test]
fn start_frame_from_c_pushes_without_caller_fix() {
    let fx = Fixture::new();
    for hook in START_HOOKS {
        for flags in FLAGS {
            // S.last_n need not be non-zero (nor unmarked) for a call from C.
            for last_n in [P + 0x40, P - 0x60, (P + 0x10) | 1, 0, 1] {
                for s_is_top in [false, true] {
                    let st = start_setup(&fx, last_n, 5, s_is_top);
                    from_c(&fx);
                    let what = format!("last_n {last_n:#x}, S top {s_is_top}");
                    check_start_from_c_hit(&fx, hook, &st, flags, &what);
                    let n = fx.rec(st.new_record());
                    assert_eq!(
                        (n.frame, n.last_n, n.expect, n.ord, n.bias, n.parent, n.flags),
                        (fx.f(), Q, Q + 2, 0, 0, st.s, HOT_PENDING)
                    );
                    assert_eq!(fx.word(field::STACK_TOP), st.new_record());
                    assert_eq!(fx.word(field::SLOT_RECORD), st.new_record());
                    assert_eq!(fx.word(field::CUR_RECORD), st.new_record());
                }
            }
        }
    }
}

#[test]
fn start_frame_from_c_hit_variants() {
    let fx = Fixture::new();
    for hook in START_HOOKS {
        // The last usable record.
        let st = start_setup(&fx, P + 2, 0, false);
        from_c(&fx);
        fx.set_word(field::STACK_LIMIT, st.new_record());
        check_start_from_c_hit(&fx, hook, &st, FLAGS[0], "T + 64 == limit");
        // C's own owner byte is irrelevant (only E's is read), even 3.
        let st = start_setup(&fx, P + 2, 0, false);
        from_c(&fx);
        fx.write_u8(fx.c() + OWNER as u64, 3);
        check_start_from_c_hit(&fx, hook, &st, FLAGS[1], "C.owner == 3");
        // The gate does not matter.
        let mut fx2 = Fixture::new();
        fx2.map.descriptor().hooks_enabled = 0;
        let st = start_setup(&fx2, P + 0x40, 5, false);
        from_c(&fx2);
        check_start_from_c_hit(&fx2, hook, &st, FLAGS[2], "hooks disabled");
    }
}

#[test]
fn start_frame_from_c_then_pop_restores_the_stack() {
    // The record pushed for a call from C pops like any other; the slot
    // holder only gets its ordinal bumped.
    let fx = Fixture::new();
    for hook in START_HOOKS {
        let st = start_setup(&fx, P + 0x40, 5, true);
        from_c(&fx);
        fx.set_word(field::LAST_POPPED, 0);
        let s_before = fx.rec(st.s);
        check_start_from_c_hit(&fx, hook, &st, FLAGS[1], "push");
        let n = st.new_record();
        let before = fx.snapshot();
        let e = pop_expected(&before, Hook::ClearAndPop, n, fx.f());
        let out = fx.run(Hook::ClearAndPop, pop_regs(1, fx.f()), FLAGS[0], STACK);
        out.assert_runtime_not_called();
        out.assert_transparent();
        fx.snapshot()
            .assert_eq_to(&e, &format!("{hook:?} ClearAndPop after a call from C"));
        let s = fx.rec(st.s);
        assert_eq!(
            s,
            Rec {
                ord: s_before.ord + 1,
                ..s_before
            }
        );
    }
}

/// Each way a call from C can miss (on top of a `start_setup` + `from_c`
/// state; `e` is the entry frame).
type CSpoil = fn(&Fixture, &Start, u64);

fn from_c_miss_cases() -> Vec<(&'static str, CSpoil)> {
    vec![
        ("E.owner 0", |fx, _, e| fx.write_u8(e + OWNER as u64, 0)),
        ("E.owner 1", |fx, _, e| fx.write_u8(e + OWNER as u64, 1)),
        ("E.owner 2", |fx, _, e| fx.write_u8(e + OWNER as u64, 2)),
        ("E.owner 0x83", |fx, _, e| {
            fx.write_u8(e + OWNER as u64, 0x83)
        }),
        ("E.owner 0, 3 in the neighbouring bytes", |fx, _, e| {
            fx.write_u8(e + OWNER as u64 - 1, 3);
            fx.write_u8(e + OWNER as u64, 0);
            fx.write_u8(e + OWNER as u64 + 1, 3);
        }),
        ("E.previous == 0 (root activation)", |fx, _, e| {
            fx.write_u64(e + PREVIOUS as u64, 0)
        }),
        ("E.previous == 0 and S.frame == 0", |fx, st, e| {
            fx.write_u64(e + PREVIOUS as u64, 0);
            write_field(st.s, hot::FRAME, 0);
        }),
        ("E.previous is another frame", |fx, _, e| {
            fx.write_u64(e + PREVIOUS as u64, fx.c() + 0x40)
        }),
        ("E.previous differs by one bit", |fx, _, e| {
            fx.write_u64(e + PREVIOUS as u64, fx.c() ^ (1 << 39))
        }),
        ("E.previous == E", |fx, _, e| {
            fx.write_u64(e + PREVIOUS as u64, e)
        }),
        ("E.previous == F", |fx, _, e| {
            fx.write_u64(e + PREVIOUS as u64, fx.f())
        }),
        ("S.frame == 0 (slot through the runtime)", |_, st, _| {
            write_field(st.s, hot::FRAME, 0)
        }),
        ("stack full: limit == T + 63", |fx, st, _| {
            fx.set_word(field::STACK_LIMIT, st.new_record() - 1)
        }),
        ("stack full: limit == 0", |fx, _, _| {
            fx.set_word(field::STACK_LIMIT, 0)
        }),
        ("F owner 2", |fx, _, _| {
            fx.write_u8(fx.f() + OWNER as u64, 2)
        }),
        ("F owner 3", |fx, _, _| {
            fx.write_u8(fx.f() + OWNER as u64, 3)
        }),
        ("F owner 1 (generator unknown to the table)", |fx, _, _| {
            fx.write_u8(fx.f() + OWNER as u64, 1)
        }),
    ]
}

/// The inline-call miss cases that stay misses for a call from C (those
/// about `S.last_n` do not apply).
fn inline_misses_for_c() -> Vec<(&'static str, Spoil)> {
    start_miss_cases()
        .into_iter()
        .filter(|(what, _)| !what.starts_with("S.last_n"))
        .collect()
}

#[test]
fn start_frame_from_c_misses_call_the_runtime_and_change_nothing() {
    let fx = Fixture::new();
    for hook in START_HOOKS {
        for flags in FLAGS {
            for last_n in [P + 0x40, 0] {
                for (what, spoil) in from_c_miss_cases() {
                    let st = start_setup(&fx, last_n, 5, false);
                    let e = from_c(&fx);
                    spoil(&fx, &st, e);
                    let r = start_regs(&fx, hook, flags);
                    let what = format!("call from C, last_n {last_n:#x}: {what}");
                    check_untouched_slow(&fx, hook, r, flags, STACK, &what);
                }
            }
            for (what, spoil) in inline_misses_for_c() {
                let st = start_setup(&fx, P + 0x40, 5, false);
                from_c(&fx);
                spoil(&fx, &st);
                let r = start_regs(&fx, hook, flags);
                let what = format!("call from C: {what}");
                check_untouched_slow(&fx, hook, r, flags, STACK, &what);
            }
        }
    }
}

#[test]
fn start_frame_from_c_misses_with_hooks_disabled_change_nothing() {
    let mut fx = Fixture::new();
    fx.map.descriptor().hooks_enabled = 0;
    for hook in START_HOOKS {
        for (what, spoil) in from_c_miss_cases() {
            let st = start_setup(&fx, 0, 5, false);
            let e = from_c(&fx);
            spoil(&fx, &st, e);
            let before = fx.snapshot();
            let out = fx.run(hook, start_regs(&fx, hook, 7), FLAGS[1], STACK);
            out.assert_runtime_not_called();
            out.assert_transparent();
            fx.snapshot()
                .assert_eq_to(&before, &format!("{hook:?} call from C: {what}, disabled"));
        }
    }
}

/// Runs `hook` on a `gen_setup` + `from_c` state and checks a generator
/// resume hit without the caller fix.
fn check_gen_from_c_hit(fx: &Fixture, hook: Hook, g: &Gen, flags: u64, what: &str) {
    let before = fx.snapshot();
    let mut expected = gen_expected(fx, g, &before);
    undo_caller_fix(&mut expected, &before, g.st.s);
    let out = fx.run(
        hook,
        start_regs(fx, hook, flags ^ g.st.last_n),
        flags,
        STACK,
    );
    out.assert_runtime_not_called();
    out.assert_transparent();
    fx.snapshot().assert_eq_to(
        &expected,
        &format!("{hook:?} generator resumed from C, {what}"),
    );
}

#[test]
fn generator_resume_from_c_pushes_a_marker_without_caller_fix() {
    // next(g), g.send(v), sum(genexpr): C code called by the slot holder's
    // frame resumes the generator through an entry frame.
    let fx = Fixture::new();
    for hook in START_HOOKS {
        for flags in FLAGS {
            for last_n in [P + 0x40, 0, 1] {
                let g = gen_setup(&fx, last_n, 5, false);
                from_c(&fx);
                let s_before = fx.rec(g.st.s);
                check_gen_from_c_hit(&fx, hook, &g, flags, &format!("last_n {last_n:#x}"));
                assert_eq!(fx.rec(g.st.s), s_before);
                let m = fx.rec(g.st.new_record());
                assert_eq!(
                    (m.frame, m.parent, m.flags, m.persistent),
                    (fx.f(), g.st.s, MARKER, g.r)
                );
                let r = fx.rec(g.r);
                assert_eq!((r.last_n, r.expect, r.ord, r.flags), (Q, Q + 2, 0, 0));
                assert_eq!(fx.word(field::SLOT_RECORD), g.r);
                assert_eq!(fx.word(field::CUR_RECORD), g.r);
            }
        }
        // S the top, R with other flag bits.
        let g = gen_setup(&fx, P, 1, true);
        from_c(&fx);
        fx.write_u64(
            g.r + hot::FLAGS as u64,
            HOT_GEN_IDLE | HOT_MEMO_RESET | 0x30,
        );
        check_gen_from_c_hit(&fx, hook, &g, FLAGS[1], "S == T, R.flags extra bits");
        assert_eq!(fx.rec(g.r).flags, HOT_MEMO_RESET | 0x30);
    }
}

#[test]
fn generator_resume_from_c_misses_call_the_runtime_and_change_nothing() {
    let fx = Fixture::new();
    for hook in START_HOOKS {
        for flags in FLAGS {
            for (what, spoil) in gen_miss_cases()
                .into_iter()
                .filter(|(what, _)| !what.starts_with("S.last_n"))
            {
                let g = gen_setup(&fx, 0, 5, false);
                from_c(&fx);
                spoil(&fx, &g);
                let r = start_regs(&fx, hook, flags);
                let what = format!("generator from C: {what}");
                check_untouched_slow(&fx, hook, r, flags, STACK, &what);
            }
            for (what, spoil) in from_c_miss_cases()
                .into_iter()
                .filter(|(what, _)| !what.starts_with("F owner"))
            {
                let g = gen_setup(&fx, P + 0x40, 5, false);
                let e = from_c(&fx);
                spoil(&fx, &g.st, e);
                let r = start_regs(&fx, hook, flags);
                let what = format!("generator from C: {what}");
                check_untouched_slow(&fx, hook, r, flags, STACK, &what);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Current-frame stores back to an entry frame

#[test]
fn current_frame_store_to_an_entry_frame_deactivates_a_pending_marker() {
    // The generator yields, returns or unwinds to the C code that resumed it:
    // the new frame is the entry frame E, not the marker's parent's frame.
    let fx = Fixture::new();
    for hook in STORE_HOOKS {
        for flags in FLAGS {
            for (what, parent, parent_ord, r_flags) in [
                ("parent below", fx.rec_addr(STORE_TOP - 1), 6, 0),
                ("parent elsewhere", fx.lone(), 0, 0x30),
                ("ordinal wraps", fx.rec_addr(STORE_TOP - 1), u64::MAX, 0),
            ] {
                for e_previous in [fx.c(), 0, fx.f2() + 0x40] {
                    let (t, r) = marker_setup(&fx, hook, MARKER, parent, parent_ord, r_flags);
                    let e = make_entry_frame(&fx, e_previous);
                    let before = fx.snapshot();
                    let expected = deactivate_expected(&before, t);
                    let what = format!("{what}, E.previous {e_previous:#x}");
                    check_store_fast(&fx, hook, e, flags, &expected, &what);
                    assert_eq!(fx.rec(parent).ord, parent_ord.wrapping_add(1));
                    let rec = fx.rec(r);
                    assert_eq!((rec.ord, rec.flags), (0, r_flags | HOT_GEN_IDLE));
                    assert_eq!(fx.rec(t).frame, 0);
                    assert_eq!(fx.word(field::STACK_TOP), t - 64);
                    assert_eq!(fx.word(field::SLOT_RECORD), parent);
                    assert_eq!(fx.word(field::CUR_RECORD), parent);
                }
            }
        }
    }
}

#[test]
fn current_frame_store_to_a_non_entry_frame_from_a_generator_skips() {
    // Only the owner byte itself counts; 0 is never dereferenced.
    let fx = Fixture::new();
    let parent = fx.rec_addr(STORE_TOP - 1);
    for hook in STORE_HOOKS {
        for flags in FLAGS {
            for marker_flags in [MARKER, HOT_GEN] {
                for owner in [0u8, 1, 2, 4, 0x83] {
                    marker_setup(&fx, hook, marker_flags, parent, 6, 0);
                    let e = make_entry_frame(&fx, fx.c());
                    fx.write_u8(e + OWNER as u64 - 1, 3);
                    fx.write_u8(e + OWNER as u64, owner);
                    fx.write_u8(e + OWNER as u64 + 1, 3);
                    let what = format!("marker flags {marker_flags}, owner {owner:#x}");
                    check_store_skip(&fx, hook, e, flags, &what);
                }
                marker_setup(&fx, hook, marker_flags, parent, 6, 0);
                check_store_skip(&fx, hook, 0, flags, "new 0");
            }
        }
    }
}

#[test]
fn current_frame_store_to_an_entry_frame_from_a_thread_frame_skips() {
    let fx = Fixture::new();
    for hook in STORE_HOOKS {
        for flags in FLAGS {
            for top_flags in [0, HOT_PENDING] {
                store_setup(&fx, hook, top_flags, fx.f());
                let e = make_entry_frame(&fx, fx.f());
                check_store_skip(&fx, hook, e, flags, "thread top, new E");
            }
        }
    }
}

#[test]
fn current_frame_store_to_an_entry_frame_otherwise_calls_the_runtime() {
    let fx = Fixture::new();
    let parent = fx.rec_addr(STORE_TOP - 1);
    for hook in STORE_HOOKS {
        for flags in FLAGS {
            let own = store_stack(hook, fx.tstate());
            // An adopted marker: the runtime's.
            marker_setup(&fx, hook, HOT_GEN, parent, 6, 0);
            let e = make_entry_frame(&fx, fx.c());
            let r = store_regs(hook, flags, e);
            check_untouched_slow(&fx, hook, r, flags, own, "adopted marker, new E");
            // Another thread.
            marker_setup(&fx, hook, MARKER, parent, 6, 0);
            let e = make_entry_frame(&fx, fx.c());
            let r = store_regs(hook, flags, e);
            let other = store_stack(hook, fx.tstate() + 0x1000);
            check_untouched_slow(&fx, hook, r, flags, other, "other thread, new E");
            // The frame being left is not the top's.
            marker_setup(&fx, hook, MARKER, parent, 6, 0);
            fx.set_thread_state(hook, fx.c());
            let e = make_entry_frame(&fx, fx.c());
            let r = store_regs(hook, flags, e);
            check_untouched_slow(&fx, hook, r, flags, own, "old is not F, new E");
        }
    }
}

#[test]
fn generator_resumed_from_c_round_trip() {
    // C code called by C's frame (S) resumes F through the entry frame E:
    // start_frame(F) (previous E: marker pushed, no caller fix), then F
    // yields back to E (store of E: deactivation); then again.
    let fx = Fixture::new();
    for (start, store) in sequence_hooks() {
        let g = gen_setup(&fx, P + 0x40, 5, false);
        let e = from_c(&fx);
        let before = fx.snapshot();
        check_gen_from_c_hit(&fx, start, &g, FLAGS[2], "first resume");
        let m = g.st.new_record();
        fx.set_thread_state(store, fx.f());
        let expected = deactivate_expected(&fx.snapshot(), m);
        check_store_fast(&fx, store, e, FLAGS[0], &expected, "yield to E");
        // Compared with before: S only got its ordinal bumped; R idle, primed,
        // ordinal 0; the marker popped.
        let mut ex = before.clone();
        ex.set_rec_field(g.st.s, hot::ORD, 4);
        ex.set_rec_field(m, hot::FRAME, 0);
        ex.set_rec_field(m, hot::PARENT, g.st.s);
        ex.set_rec_field(m, hot::FLAGS, MARKER);
        ex.set_rec_field(m, hot::PERSISTENT, g.r);
        ex.set_rec_field(g.r, hot::LAST_N, Q);
        ex.set_rec_field(g.r, hot::EXPECT, Q + 2);
        ex.set_rec_field(g.r, hot::ORD, 0);
        ex.set_field(field::CUR_RECORD, g.st.s);
        copy_thread_state(&fx, &mut ex);
        fx.snapshot()
            .assert_eq_to(&ex, &format!("{start:?}/{store:?} round trip from C"));
        assert_eq!(fx.rec(g.r).flags, HOT_GEN_IDLE);
        check_gen_from_c_hit(&fx, start, &g, FLAGS[1], "second resume");
    }
}

// ---------------------------------------------------------------------------
// HookFast::Pass

const PASS_HOOKS: [Hook; 2] = [Hook::PassLive, Hook::PassDead];

#[test]
fn pass_always_skips_the_runtime() {
    // Whatever the state (one that would hit, one that would miss, the gate
    // on or off), nothing changes, the runtime is not called and the
    // displaced instruction runs.
    let mut fx = Fixture::new();
    for enabled in [true, false] {
        if !enabled {
            fx.map.descriptor().hooks_enabled = 0;
        }
        for hook in PASS_HOOKS {
            for flags in FLAGS {
                for (what, seed) in [("start hit state", 1u64), ("miss state", 2)] {
                    let st = start_setup(&fx, P + 0x40, 5, false);
                    if seed == 2 {
                        write_field(st.s, hot::FRAME, 0);
                        fx.set_word(field::LAST_TSTATE, 0);
                    }
                    let before = fx.snapshot();
                    let mut r = regs(seed ^ flags);
                    r[RBX] = fx.f();
                    r[RSI] = fx.f();
                    let out = fx.run(hook, r, flags, store_stack(Hook::StoreLive, fx.tstate()));
                    out.assert_runtime_not_called();
                    out.assert_transparent();
                    // Pass borrows nothing: every register but r11 is intact.
                    for i in (0..16).filter(|&i| i != R11 && i != RSP) {
                        assert_eq!(out.regs_out[i], out.regs_in[i], "{hook:?} register {i}");
                    }
                    if hook == Hook::PassDead {
                        // Flags dead here, but Pass is a bare jump: unchanged too.
                        assert_eq!(out.flags_out & FLAG_MASK, flags & FLAG_MASK);
                    }
                    fx.snapshot()
                        .assert_eq_to(&before, &format!("{hook:?} {what}, enabled {enabled}"));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// _PyEval_EvalFrameDefault entry

/// `F` (frame in rsi) with owner byte `owner`, `[F, gen_rec(1)]` at its
/// table index when `in_table`; `gen_rec(1)` is `F`'s record with flags
/// `r_flags`. Returns the record.
fn eval_setup(fx: &Fixture, owner: u8, in_table: bool, r_flags: u64) -> u64 {
    start_setup(fx, P + 0x40, 5, false);
    fx.write_u8(fx.f() + OWNER as u64, owner);
    let r = fx.gen_rec(1);
    fx.set_rec(r, gen_record(fx, r_flags));
    if in_table {
        fx.set_table(table_index(fx.f()), fx.f(), r);
    }
    r
}

/// Runs the `EvalEntry` hook for `frame` and checks it was handled inline
/// with the state becoming `expected`.
fn check_eval_fast(fx: &Fixture, frame: u64, flags: u64, expected: &Snapshot, what: &str) {
    let out = fx.run(Hook::EvalEntry, pop_regs(flags ^ 0x55, frame), flags, STACK);
    out.assert_runtime_not_called();
    out.assert_transparent();
    fx.snapshot()
        .assert_eq_to(expected, &format!("EvalEntry {what}"));
}

#[test]
fn eval_entry_of_a_thread_frame_skips() {
    let mut fx = Fixture::new();
    for enabled in [true, false] {
        if !enabled {
            fx.map.descriptor().hooks_enabled = 0;
        }
        for flags in FLAGS {
            // Known to the table or not, R idle or not: owner 0 needs nothing.
            for (in_table, r_flags) in [(false, 0), (true, HOT_GEN_IDLE), (true, 0)] {
                eval_setup(&fx, 0, in_table, r_flags);
                let before = fx.snapshot();
                let what = format!("owner 0, in table {in_table}, enabled {enabled}");
                check_eval_fast(&fx, fx.f(), flags, &before, &what);
            }
        }
    }
}

#[test]
fn eval_entry_of_a_known_generator_frame_flags_memo_reset() {
    let mut fx = Fixture::new();
    for enabled in [true, false] {
        if !enabled {
            fx.map.descriptor().hooks_enabled = 0;
        }
        for flags in FLAGS {
            for r_flags in [
                0,
                HOT_GEN_IDLE,
                HOT_GEN_IDLE | 0x30,
                HOT_MEMO_RESET,
                !HOT_MEMO_RESET,
            ] {
                let r = eval_setup(&fx, 1, true, r_flags);
                let before = fx.snapshot();
                let mut e = before.clone();
                e.set_rec_field(r, hot::FLAGS, r_flags | HOT_MEMO_RESET);
                let what = format!("R.flags {r_flags:#x}, enabled {enabled}");
                check_eval_fast(&fx, fx.f(), flags, &e, &what);
                let mut rec = gen_record(&fx, r_flags | HOT_MEMO_RESET);
                rec.flags = r_flags | HOT_MEMO_RESET;
                assert_eq!(fx.rec(r), rec);
            }
        }
    }
}

/// Turns an `eval_setup(fx, 1, true, HOT_GEN_IDLE)` hit into a miss.
type EvalSpoil = fn(&Fixture, u64);

fn eval_miss_cases() -> Vec<(&'static str, EvalSpoil)> {
    vec![
        ("owner 2", |fx, _| fx.write_u8(fx.f() + OWNER as u64, 2)),
        ("owner 3", |fx, _| fx.write_u8(fx.f() + OWNER as u64, 3)),
        ("owner 0x81", |fx, _| {
            fx.write_u8(fx.f() + OWNER as u64, 0x81)
        }),
        ("owner 0xff", |fx, _| {
            fx.write_u8(fx.f() + OWNER as u64, 0xff)
        }),
        ("not in the table", |fx, _| {
            fx.clear_table(table_index(fx.f()))
        }),
        ("table: entry frame 0", |fx, r| {
            fx.set_table(table_index(fx.f()), 0, r)
        }),
        ("table: entry frame differs by one bit", |fx, r| {
            fx.set_table(table_index(fx.f()), fx.f() ^ (1 << 37), r)
        }),
        ("table: F's pair at the next index", |fx, r| {
            let i = table_index(fx.f());
            fx.clear_table(i);
            fx.set_table((i + 1) % GEN_TABLE_SIZE, fx.f(), r);
        }),
        ("R.frame == 0", |_, r| write_field(r, hot::FRAME, 0)),
        ("R.frame is another frame", |fx, r| {
            write_field(r, hot::FRAME, fx.f() + 0x40)
        }),
        ("R.frame differs by one bit", |fx, r| {
            write_field(r, hot::FRAME, fx.f() ^ (1 << 43))
        }),
    ]
}

#[test]
fn eval_entry_misses_call_the_runtime_and_change_nothing() {
    let fx = Fixture::new();
    for flags in FLAGS {
        for (what, spoil) in eval_miss_cases() {
            let r = eval_setup(&fx, 1, true, HOT_GEN_IDLE);
            spoil(&fx, r);
            let regs_in = pop_regs(flags, fx.f());
            check_untouched_slow(&fx, Hook::EvalEntry, regs_in, flags, STACK, what);
        }
    }
    // Owner 1 in a neighbouring byte of an owner-0x80 frame.
    eval_setup(&fx, 0x80, true, HOT_GEN_IDLE);
    fx.write_u8(fx.f() + OWNER as u64 - 1, 1);
    fx.write_u8(fx.f() + OWNER as u64 + 1, 0);
    let regs_in = pop_regs(9, fx.f());
    check_untouched_slow(&fx, Hook::EvalEntry, regs_in, FLAGS[0], STACK, "owner 0x80");
}

#[test]
fn eval_entry_misses_with_hooks_disabled_change_nothing() {
    let mut fx = Fixture::new();
    fx.map.descriptor().hooks_enabled = 0;
    for (what, spoil) in eval_miss_cases() {
        let r = eval_setup(&fx, 1, true, HOT_GEN_IDLE);
        spoil(&fx, r);
        let before = fx.snapshot();
        check_eval_fast(&fx, fx.f(), FLAGS[1], &before, &format!("{what}, disabled"));
    }
}
