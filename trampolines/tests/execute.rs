//! Runs generated stubs and hook trampolines for real, in this process.
//!
//! A page of "descriptor" data and the generated code are mapped next to each
//! other at run-time addresses; the program is generated for exactly those
//! addresses, so the test exercises the same bytes the rewriter would emit.
//!
//! The stub's fast path is exercised by `dispatch_fast_path.rs`; here
//! `cur_record` points at a record whose frame is 0, which matches no frame,
//! so every dispatch takes the slow path.

mod common;

use common::Mapping;
use retrace_abi::{field, Descriptor, HotFrame, SavedRegisters};
use std::sync::atomic::{AtomicU64, Ordering};
use trampolines::{generate, DispatchRegisters, HookRequest, ProgramInput, StubRequest};

static SEEN_OPCODE: AtomicU64 = AtomicU64::new(0);
static SEEN_RDI: AtomicU64 = AtomicU64::new(0);
static SEEN_RSP: AtomicU64 = AtomicU64::new(0);
static DISPATCH_CALLS: AtomicU64 = AtomicU64::new(0);

extern "C" fn rt_dispatch(regs: *mut SavedRegisters, opcode: u64) -> u64 {
    // SAFETY: the trampoline passes a valid block.
    let regs = unsafe { &mut *regs };
    DISPATCH_CALLS.fetch_add(1, Ordering::SeqCst);
    SEEN_OPCODE.store(opcode, Ordering::SeqCst);
    SEEN_RDI.store(regs.gpr[7], Ordering::SeqCst);
    SEEN_RSP.store(regs.gpr[4], Ordering::SeqCst);
    // Change the argument register: the restore must pick it up.
    regs.gpr[7] += 1;
    0
}

static HOOK_CALLS: AtomicU64 = AtomicU64::new(0);
extern "C" fn rt_hook(regs: *mut SavedRegisters, index: u64) -> u64 {
    // SAFETY: valid block from the trampoline.
    let regs = unsafe { &*regs };
    assert!(index < 2, "hook index {index}");
    HOOK_CALLS.fetch_add(regs.gpr[7], Ordering::SeqCst);
    0
}

/// The record `cur_record` points at: frame 0 matches no frame.
fn unmatched_record() -> HotFrame {
    HotFrame {
        frame: AtomicU64::new(0),
        expect: AtomicU64::new(0x1234),
        last_n: AtomicU64::new(1),
        ord: AtomicU64::new(7),
        bias: std::sync::atomic::AtomicI64::new(-3),
        parent: AtomicU64::new(0x5150),
        flags: AtomicU64::new(0),
        persistent: AtomicU64::new(0x6e6e),
    }
}

fn record_fields(r: &HotFrame) -> [u64; 8] {
    [
        r.frame.load(Ordering::SeqCst),
        r.expect.load(Ordering::SeqCst),
        r.last_n.load(Ordering::SeqCst),
        r.ord.load(Ordering::SeqCst),
        r.bias.load(Ordering::SeqCst) as u64,
        r.parent.load(Ordering::SeqCst),
        r.flags.load(Ordering::SeqCst),
        r.persistent.load(Ordering::SeqCst),
    ]
}

#[test]
fn stubs_count_and_slow_path_preserves_state() {
    let mut map = Mapping::new(0x5000);
    assert!(std::mem::size_of::<Descriptor>() <= 0x1c00);
    map.write(0, Descriptor::new().as_bytes());
    // The hot record, in the data page after the descriptor.
    let record_off = 0x1c00;
    let record_ptr = map.addr(record_off) as *const HotFrame;
    // SAFETY: the offset is in bounds of our RW mapping and suitably aligned
    // (page base + 0x1c00); HotFrame is plain atomics, so any bytes are valid.
    unsafe { std::ptr::write(record_ptr as *mut HotFrame, unmatched_record()) };
    // SAFETY: as above; the mapping outlives `record` (both live to the end of the test).
    let record = unsafe { &*record_ptr };
    let record_before = record_fields(record);
    // The "original code" of a hook: mov rax, rdi; add rax, 1; ret
    let original_off = 0x2800;
    let original = [0x48, 0x89, 0xf8, 0x48, 0x83, 0xc0, 0x01, 0xc3];
    map.write(original_off, &original);
    // The "handler": lea rax, [rdi + rdi*2]; ret (must be within rel32 reach of the stubs).
    let handler_off = 0x2900;
    map.write(handler_off, &[0x48, 0x8d, 0x04, 0x7f, 0xc3]);
    let stubs = [StubRequest {
        opcode: 200,
        handler: map.addr(handler_off),
        width: 2,
        classify_next: false,
        entry_exit: false,
    }];
    // The same function a second time, hooked with the cheaper flags-dead gate.
    let second_off = 0x2a00;
    map.write(second_off, &original);
    let hooks = [
        HookRequest {
            address: map.addr(original_off),
            displaced: original[..7].to_vec(),
            enable_bit: 3,
            flags_live: true,
            fast: None,
        },
        HookRequest {
            address: map.addr(second_off),
            displaced: original[..7].to_vec(),
            enable_bit: 3,
            flags_live: false,
            fast: None,
        },
    ];
    let text_off = 0x3000;
    let program = generate(&ProgramInput {
        text_vaddr: map.addr(text_off),
        descriptor_vaddr: map.addr(0),
        stubs: &stubs,
        // The stub is called as a C function here: the argument register
        // stands in for the frame (never 0, so the record never matches).
        registers: DispatchRegisters {
            frame: 7,
            next_instr: 6,
            scratch: [0, 11],
            prev_instr_offset: 0x38,
            tstate_offset: Some(8),
            raise_entry: None,
        },
        hooks: &hooks,
        flags_live_at_handlers: false,
    })
    .unwrap();
    assert!(text_off + program.bytes.len() <= 0x5000);
    map.write(text_off, &program.bytes);
    // Patch the original code: jmp hook_0; int3; int3
    let rel = program.hooks[0].address as i64 - (map.addr(original_off) as i64 + 5);
    let mut patch = vec![0xe9];
    patch.extend_from_slice(&(rel as i32).to_le_bytes());
    patch.extend_from_slice(&[0xcc, 0xcc, 0xc3]);
    map.write(original_off, &patch);
    let rel2 = program.hooks[1].address as i64 - (map.addr(second_off) as i64 + 5);
    let mut patch2 = vec![0xe9];
    patch2.extend_from_slice(&(rel2 as i32).to_le_bytes());
    patch2.extend_from_slice(&[0xcc, 0xcc, 0xc3]);
    map.write(second_off, &patch2);
    map.descriptor().rt_dispatch = rt_dispatch as *const () as u64;
    map.descriptor().rt_hook = rt_hook as *const () as u64;
    map.descriptor().cur_record = map.addr(record_off);
    assert_eq!(
        field::CUR_RECORD,
        std::mem::offset_of!(Descriptor, cur_record)
    );
    map.protect_exec(0x2000, 0x3000);

    // SAFETY: the stub jumps to `handler`, an extern "C" fn(u64) -> u64; its
    // frame/next_instr registers are rdi/rsi, and with frame 0 in the record
    // it never dereferences them.
    let stub: extern "C" fn(u64) -> u64 =
        unsafe { std::mem::transmute(program.stubs[0].address as usize) };
    // Every dispatch takes the slow path; the runtime's change of rdi (+1)
    // must be restored into the handler: 3 * (x + 1).
    assert_eq!(stub(5), 18);
    assert_eq!(SEEN_OPCODE.load(Ordering::SeqCst), 200);
    assert_eq!(SEEN_RDI.load(Ordering::SeqCst), 5);
    assert_eq!(map.descriptor().dispatch_counts[200], 1);
    assert_eq!(stub(7), 24);
    assert_eq!(SEEN_RDI.load(Ordering::SeqCst), 7);
    assert_eq!(map.descriptor().dispatch_counts[200], 2);
    assert_eq!(DISPATCH_CALLS.load(Ordering::SeqCst), 2);

    let rsp_before: u64;
    // SAFETY: reads rsp only.
    unsafe { std::arch::asm!("mov {}, rsp", out(reg) rsp_before) };
    assert_eq!(
        stub(10),
        33,
        "the runtime's change of rdi must be restored into the handler"
    );
    assert_eq!(SEEN_OPCODE.load(Ordering::SeqCst), 200);
    assert_eq!(SEEN_RDI.load(Ordering::SeqCst), 10);
    let seen_rsp = SEEN_RSP.load(Ordering::SeqCst);
    // The interrupted rsp is the stub's entry rsp: just below our frame.
    assert!(
        seen_rsp < rsp_before && rsp_before - seen_rsp < 4096,
        "{seen_rsp:#x} vs {rsp_before:#x}"
    );
    assert_eq!(map.descriptor().dispatch_counts[200], 3);
    assert_eq!(DISPATCH_CALLS.load(Ordering::SeqCst), 3);
    // Other opcodes' counters are untouched, and so is the record.
    assert_eq!(map.descriptor().dispatch_counts.iter().sum::<u64>(), 3);
    assert_eq!(record_fields(record), record_before);

    // Hook: disabled -> original semantics, no runtime call.
    // SAFETY: the patched original code is an extern "C" fn(u64) -> u64.
    let f: extern "C" fn(u64) -> u64 =
        unsafe { std::mem::transmute(map.addr(original_off) as usize) };
    assert_eq!(f(41), 42);
    assert_eq!(HOOK_CALLS.load(Ordering::SeqCst), 0);
    map.descriptor().hooks_enabled = 1 << 3;
    assert_eq!(f(41), 42);
    assert_eq!(f(1), 2);
    assert_eq!(HOOK_CALLS.load(Ordering::SeqCst), 42);
    // SAFETY: as above, for the second patched copy.
    let g: extern "C" fn(u64) -> u64 =
        unsafe { std::mem::transmute(map.addr(second_off) as usize) };
    assert_eq!(g(9), 10);
    assert_eq!(HOOK_CALLS.load(Ordering::SeqCst), 51);
    map.descriptor().hooks_enabled = 1 << 2; // another kind only
    assert_eq!(f(100), 101);
    assert_eq!(g(100), 101);
    assert_eq!(HOOK_CALLS.load(Ordering::SeqCst), 51);
}
