//! Assembling the whole new text section and reporting where everything is.

use crate::common::emit_save_call_restore;
use crate::dispatch::{emit_stub, FastPath, StubShape};
use crate::error::CodegenError;
use crate::hook_fast::{HookFast, HookWords};
use crate::hooks::emit_hook;
use dynasmrt::{dynasm, x64::X64Relocation, DynasmApi, DynasmLabelApi, VecAssembler};
use retrace_abi::field;

/// One opcode whose table slot will point at a stub.
#[derive(Clone, Debug)]
pub struct StubRequest {
    pub opcode: u8,
    /// The original handler (the slot's current relocation addend).
    pub handler: u64,
    /// Bytes from an instruction with this opcode to its natural successor
    /// (`2 × (1 + inline caches)`, 4 for a superinstruction).
    pub width: u8,
    /// The runtime must classify the dispatch that follows this opcode (SEND).
    pub classify_next: bool,
    /// `INTERPRETER_EXIT` (see `dispatch`).
    pub entry_exit: bool,
}

/// Where the dispatch stubs find the eval loop's state at handler entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DispatchRegisters {
    /// Hardware register number holding the frame.
    pub frame: u8,
    /// Hardware register number holding `next_instr`.
    pub next_instr: u8,
    /// Two registers dead at every handler entry.
    pub scratch: [u8; 2],
    /// Offset of `prev_instr` in `_PyInterpreterFrame`.
    pub prev_instr_offset: i32,
    /// The thread state at `[rsp + offset]` at handler entry, if it lives there.
    pub tstate_offset: Option<i32>,
    /// Where a stub enters the eval loop's error path when the runtime set
    /// `raise_pending` (see `dispatch`); `None`: the stubs never check it.
    pub raise_entry: Option<u64>,
}

/// One hook point to divert through a trampoline.
#[derive(Clone, Debug)]
pub struct HookRequest {
    pub address: u64,
    /// Original bytes of the whole instructions the 5-byte jump displaces.
    pub displaced: Vec<u8>,
    /// Bit of `Descriptor::hooks_enabled` that gates the runtime call.
    pub enable_bit: u32,
    /// Whether the flags may be live at the hook point (function entries: never).
    /// When false the trampoline's gate test may clobber them.
    pub flags_live: bool,
    /// The inline fast path of this hook, if any.
    pub fast: Option<HookFast>,
}

/// Everything code generation needs.
pub struct ProgramInput<'a> {
    /// Link-time address of the new text section.
    pub text_vaddr: u64,
    /// Link-time address of the descriptor (start of the new data section).
    pub descriptor_vaddr: u64,
    pub stubs: &'a [StubRequest],
    pub registers: DispatchRegisters,
    pub hooks: &'a [HookRequest],
    /// Whether the flags are live at any handler entry (from the liveness analysis).
    pub flags_live_at_handlers: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stub {
    pub opcode: u8,
    pub address: u64,
    pub handler: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookTrampoline {
    pub index: u32,
    pub site: u64,
    pub site_len: usize,
    pub address: u64,
    pub displaced_address: u64,
    pub displaced_len: usize,
}

/// The generated text section.
#[derive(Clone, Debug)]
pub struct Program {
    pub base: u64,
    pub bytes: Vec<u8>,
    pub dispatch_common: u64,
    pub hook_common: u64,
    /// The shared raise block the stubs branch to (with the raise entry it
    /// jumps to), when there is a raise entry.
    pub raise_block: Option<(u64, u64)>,
    pub stubs: Vec<Stub>,
    pub hooks: Vec<HookTrampoline>,
}

/// Generate the new text section for `input`.
pub fn generate(input: &ProgramInput<'_>) -> Result<Program, CodegenError> {
    if input.flags_live_at_handlers {
        return Err(CodegenError::FlagsLive);
    }
    if input.hooks.len() > retrace_abi::MAX_HOOKS {
        return Err(CodegenError::TooManyHooks(
            input.hooks.len(),
            retrace_abi::MAX_HOOKS,
        ));
    }
    let base = input.text_vaddr;
    let d = input.descriptor_vaddr as usize;
    let mut a = VecAssembler::<X64Relocation>::new(base as usize);

    let dispatch_common = a.new_dynamic_label();
    let hook_common = a.new_dynamic_label();
    let dispatch_common_at = a.offset().0;
    dynasm!(a ; .arch x64 ; =>dispatch_common);
    emit_save_call_restore(&mut a, d + field::RT_DISPATCH);
    align16(&mut a);
    let hook_common_at = a.offset().0;
    dynasm!(a ; .arch x64 ; =>hook_common);
    emit_save_call_restore(&mut a, d + field::RT_HOOK);

    let r = input.registers;
    let raise_pending = d + field::RAISE_PENDING;
    let mut raise_block = None;
    let raise = r.raise_entry.map(|entry| {
        let label = a.new_dynamic_label();
        align16(&mut a);
        raise_block = Some((base + a.offset().0 as u64, entry));
        let entry = entry as usize;
        dynasm!(a
            ; .arch x64
            ; =>label
            ; mov QWORD [extern raise_pending], 0
            ; jmp extern entry
        );
        label
    });
    let fast = FastPath {
        frame: r.frame,
        next_instr: r.next_instr,
        scratch: r.scratch,
        prev_instr: r.prev_instr_offset,
        cur_record: d + field::CUR_RECORD,
        last_tstate: d + field::LAST_TSTATE,
        tstate_offset: r.tstate_offset,
        raise: raise.map(|label| (label, raise_pending)),
    };
    let mut stubs = Vec::with_capacity(input.stubs.len());
    for req in input.stubs {
        align16(&mut a);
        let at = a.offset().0;
        emit_stub(
            &mut a,
            &fast,
            StubShape {
                opcode: req.opcode,
                width: req.width,
                classify_next: req.classify_next,
                entry_exit: req.entry_exit,
            },
            req.handler as usize,
            d + field::DISPATCH_COUNTS + 8 * req.opcode as usize,
            dispatch_common,
        );
        stubs.push(Stub {
            opcode: req.opcode,
            address: base + at as u64,
            handler: req.handler,
        });
    }

    let words = HookWords {
        cur_record: d + field::CUR_RECORD,
        slot_record: d + field::SLOT_RECORD,
        stack_top: d + field::STACK_TOP,
        stack_limit: d + field::STACK_LIMIT,
        last_tstate: d + field::LAST_TSTATE,
        last_popped: d + field::LAST_POPPED,
        gen_table: d + field::GEN_TABLE,
    };
    let mut hooks = Vec::with_capacity(input.hooks.len());
    for (i, req) in input.hooks.iter().enumerate() {
        align16(&mut a);
        let emitted = emit_hook(
            &mut a,
            base,
            i as u32,
            req.enable_bit,
            req.flags_live,
            req.address,
            &req.displaced,
            d + field::HOOKS_ENABLED,
            hook_common,
            req.fast.map(|f| (f, &words)),
        )?;
        hooks.push(HookTrampoline {
            index: i as u32,
            site: req.address,
            site_len: req.displaced.len(),
            address: base + emitted.start as u64,
            displaced_address: base + emitted.displaced_start as u64,
            displaced_len: emitted.displaced_len,
        });
    }

    let bytes = a
        .finalize()
        .map_err(|e| CodegenError::Assembler(e.to_string()))?;
    Ok(Program {
        base,
        bytes,
        dispatch_common: base + dispatch_common_at as u64,
        hook_common: base + hook_common_at as u64,
        raise_block,
        stubs,
        hooks,
    })
}

/// Pad with `int3` to a 16-byte boundary (nothing falls through into a stub).
fn align16(a: &mut VecAssembler<X64Relocation>) {
    while !a.offset().0.is_multiple_of(16) {
        a.push(0xcc);
    }
}

impl Program {
    /// The bytes of the text section at `address` (`len` bytes), if inside.
    pub fn bytes_at(&self, address: u64, len: usize) -> Option<&[u8]> {
        let start = address.checked_sub(self.base)? as usize;
        self.bytes.get(start..start.checked_add(len)?)
    }
}
