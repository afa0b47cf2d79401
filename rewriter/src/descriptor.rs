//! Filling the runtime descriptor from the analysis.
//!
//! The descriptor (see `retrace_abi::Descriptor`) is the only channel through
//! which the runtime learns what the rewriter found: register layout, struct
//! offsets, per-opcode tables, hook list, detour list and original handlers.

use retrace_abi::{self as abi, Descriptor, VarLocation};
use symbols::{Analysis, Location, StructOffsets};

use crate::plan::Plan;

fn location(loc: Location) -> VarLocation {
    match loc {
        Location::Reg(r) => VarLocation {
            kind: abi::LOC_REG,
            value: r.number() as i32,
        },
        Location::Stack(off) => VarLocation {
            kind: abi::LOC_STACK,
            value: off,
        },
        Location::Unavailable => VarLocation::default(),
    }
}

fn field(offsets: &StructOffsets, structure: &str, names: &[&str]) -> u32 {
    names
        .iter()
        .find_map(|n| offsets.offset(structure, n))
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(abi::ABSENT)
}

/// Build the descriptor for `analysis` and `plan`, to live at `self_address`.
pub fn build(analysis: &Analysis, plan: &Plan, self_address: u64) -> Descriptor {
    let mut d = Descriptor::new();
    d.py_version_hex = analysis.version.hex();
    d.self_address = self_address;
    if let Some(regs) = &analysis.registers {
        d.registers = abi::RegisterLayout {
            frame: location(regs.frame),
            next_instr: location(regs.next_instr),
            stack_pointer: location(regs.stack_pointer),
            oparg: location(regs.oparg),
            opcode: location(regs.opcode),
            tstate: location(regs.tstate),
        };
    }
    let o = &analysis.offsets;
    const F: &str = "_PyInterpreterFrame";
    d.offsets = abi::Offsets {
        frame_size: o
            .size(F)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(abi::ABSENT),
        frame_code: field(o, F, &["f_code", "f_executable"]),
        frame_previous: field(o, F, &["previous"]),
        frame_funcobj: field(o, F, &["f_funcobj", "f_func"]),
        frame_prev_instr: field(o, F, &["prev_instr"]),
        frame_instr_ptr: field(o, F, &["instr_ptr"]),
        frame_stacktop: field(o, F, &["stacktop"]),
        frame_return_offset: field(o, F, &["return_offset"]),
        frame_owner: field(o, F, &["owner"]),
        frame_localsplus: field(o, F, &["localsplus"]),
        tstate_interp: field(o, "_ts", &["interp"]),
        tstate_cframe: field(o, "_ts", &["cframe"]),
        tstate_current_frame: field(o, "_ts", &["current_frame"]),
        tstate_thread_id: field(o, "_ts", &["thread_id"]),
        tstate_native_thread_id: field(o, "_ts", &["native_thread_id"]),
        cframe_current_frame: field(o, "_PyCFrame", &["current_frame"]),
        code_co_code_adaptive: field(o, "PyCodeObject", &["co_code_adaptive"]),
        object_ob_type: field(o, "_object", &["ob_type"]),
        type_tp_dealloc: field(o, "_typeobject", &["tp_dealloc"]),
        code_firsttraceable: field(o, "PyCodeObject", &["_co_firsttraceable"]),
        tstate_next: field(o, "_ts", &["next"]),
        tstate_id: field(o, "_ts", &["id"]),
        interp_threads_head: field(o, "_is", &["threads.head"]),
        ..abi::Offsets::default()
    };
    if let Some(meta) = &analysis.opcode_meta {
        for (i, v) in meta.caches.iter().take(256).enumerate() {
            d.opcode_caches[i] = *v;
        }
        for (i, v) in meta.deopt.iter().take(256).enumerate() {
            d.opcode_deopt[i] = *v;
        }
    }
    d.opcode_flags = plan.opcode_flags;
    d.raise_entry = plan.dispatch.raise_entry.unwrap_or(0);
    for stub in &plan.stubs {
        d.original_targets[stub.opcode as usize] = stub.handler;
    }
    d.hook_count = plan.hooks.len() as u32;
    for (i, h) in plan.hooks.iter().enumerate().take(abi::MAX_HOOKS) {
        d.hooks[i] = abi::HookInfo {
            kind: h.kind as u32,
            arg: h.arg,
            address: h.site.point.address,
        };
    }
    d.detour_count = plan.detours.len().min(abi::MAX_DETOURS) as u32;
    for (i, p) in plan.detours.iter().enumerate().take(abi::MAX_DETOURS) {
        d.detours[i] = abi::DetourInfo {
            kind: p.kind as u32,
            flags: p.flags(),
            site: p.site.point.address,
            // Known once the detour code is placed: see `set_detour_originals`.
            original: 0,
        };
    }
    if let Some(bytes) = hex_to_32(&analysis.library.sha256) {
        d.input_sha256 = bytes;
    }
    d
}

/// Records where each detour's callable original landed (`originals[i]` for
/// detour `i`; 0 for a full replacement, which has none).
pub fn set_detour_originals(d: &mut Descriptor, originals: &[u64]) {
    for (info, original) in d.detours.iter_mut().zip(originals) {
        info.original = if info.flags & abi::DETOUR_FULL_REPLACEMENT != 0 {
            0
        } else {
            *original
        };
    }
}

fn hex_to_32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}
