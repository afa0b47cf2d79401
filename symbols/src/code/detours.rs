//! Function detours: where a whole CPython function can be diverted to a
//! runtime replacement, and proof that doing so is sound.
//!
//! A detour replaces the first ≥ 5 bytes of a function's entry with a `jmp`.
//! Two shapes are accepted:
//!
//! * **relocatable entry**: the displaced bytes are whole instructions that
//!   either fall through (`FlowControl::Next`) or are direct `call rel32`s
//!   (their absolute target survives re-encoding; the callee returns into the
//!   moved copy), and no branch of the function lands inside them or on the
//!   entry itself. The moved copy plus a jump back is a callable original.
//! * **full replacement** (only for `_Py_Dealloc`): the function is exactly
//!   `mov R, [rdi + ob_type]; jmp [R + tp_dealloc]` with both displacements
//!   equal to the DWARF offsets of `_object.ob_type` and
//!   `_typeobject.tp_dealloc`. Its indirect tail jump cannot be moved into a
//!   callable original, but the body is fully understood, so the runtime may
//!   implement it as `Py_TYPE(op)->tp_dealloc(op)`.
//!
//! Anything else is refused with a [`DetourRefusal`].

use super::image::CodeImage;
use crate::model::{AddrRange, DetourKind, DetourSite, FunctionSite, HookPoint, StructOffsets};
use crate::versions::VersionProfile;
use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register};
use thiserror::Error;

/// Size of the `jmp rel32` written at the function entry.
pub const JMP_LEN: usize = 5;

/// Why a function cannot be detoured.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DetourRefusal {
    #[error("detour function {0} is not among the version's functions")]
    UnknownFunction(String),
    #[error("{function}: code at {address:#x} is not mapped or does not decode")]
    Undecodable { function: String, address: u64 },
    #[error("{function}: displaced instruction at {address:#x} ({text}) cannot be moved")]
    NotRelocatable {
        function: String,
        address: u64,
        text: String,
    },
    #[error("{function}: a branch at {from:#x} targets {target:#x}, inside the displaced entry")]
    BranchIntoEntry {
        function: String,
        from: u64,
        target: u64,
    },
    #[error("{function}: only {len} bytes of code; a detour jump needs {JMP_LEN}")]
    TooShort { function: String, len: usize },
    #[error("{function}: not the verified `mov R, [rdi + {ob_type}]; jmp [R + {tp_dealloc}]` body: {reason}")]
    NotDeallocBody {
        function: String,
        ob_type: u64,
        tp_dealloc: u64,
        reason: String,
    },
    #[error("{function}: full replacement needs the DWARF offset of {field}")]
    MissingOffset {
        function: String,
        field: &'static str,
    },
}

/// The detour sites of every function the profile lists.
pub fn detour_sites(
    image: &CodeImage<'_>,
    profile: &VersionProfile,
    functions: &[FunctionSite],
    offsets: &StructOffsets,
) -> Result<Vec<DetourSite>, DetourRefusal> {
    profile
        .detours
        .iter()
        .map(|&(kind, name)| {
            let f = functions
                .iter()
                .find(|f| f.name == name)
                .ok_or_else(|| DetourRefusal::UnknownFunction(name.to_string()))?;
            detour_site(image, kind, f, offsets)
        })
        .collect()
}

/// The detour site of one function.
pub fn detour_site(
    image: &CodeImage<'_>,
    kind: DetourKind,
    f: &FunctionSite,
    offsets: &StructOffsets,
) -> Result<DetourSite, DetourRefusal> {
    let insns = decode_function(image, f)?;
    let relocatable = relocatable_entry(f, &insns);
    let (bytes, full_replacement) = match (relocatable, kind) {
        (Ok(len), _) => (entry_bytes(image, f, len)?, false),
        // Only the generic deallocator has a known whole-function meaning.
        (Err(_), DetourKind::Dealloc) => {
            let len = dealloc_body(f, &insns, offsets)?;
            (entry_bytes(image, f, len)?, true)
        }
        (Err(e), _) => return Err(e),
    };
    Ok(DetourSite {
        kind,
        function: f.name.clone(),
        point: HookPoint {
            address: f.address,
            bytes,
            // The SysV ABI does not preserve the status flags across calls.
            flags_live: false,
        },
        full_replacement,
    })
}

fn decode_function(
    image: &CodeImage<'_>,
    f: &FunctionSite,
) -> Result<Vec<Instruction>, DetourRefusal> {
    let range = AddrRange {
        start: f.address,
        end: f.address.saturating_add(f.size),
    };
    let undecodable = |address| DetourRefusal::Undecodable {
        function: f.name.clone(),
        address,
    };
    let bytes = image
        .bytes(range.start, range.end)
        .ok_or_else(|| undecodable(range.start))?;
    let mut decoder = Decoder::with_ip(64, bytes, range.start, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        let ins = decoder.decode();
        if ins.is_invalid() || ins.next_ip() > range.end {
            return Err(undecodable(ins.ip()));
        }
        out.push(ins);
    }
    Ok(out)
}

/// Whether an instruction can run at another address after re-encoding.
fn movable(ins: &Instruction) -> bool {
    match ins.flow_control() {
        FlowControl::Next => true,
        FlowControl::Call => ins.op0_kind() == OpKind::NearBranch64,
        _ => false,
    }
}

/// Length of the relocatable displaced entry, or why there is none.
fn relocatable_entry(f: &FunctionSite, insns: &[Instruction]) -> Result<usize, DetourRefusal> {
    let mut len = 0usize;
    for ins in insns {
        if !movable(ins) {
            return Err(DetourRefusal::NotRelocatable {
                function: f.name.clone(),
                address: ins.ip(),
                text: format!("{ins}"),
            });
        }
        len += ins.len();
        if len >= JMP_LEN {
            break;
        }
    }
    if len < JMP_LEN {
        return Err(DetourRefusal::TooShort {
            function: f.name.clone(),
            len,
        });
    }
    let end = f.address + len as u64;
    for ins in insns {
        let branch = matches!(
            ins.flow_control(),
            FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch
        );
        // Any branch to the entry would re-enter the detour; inside it, it would hit the jump.
        if branch && (f.address..end).contains(&ins.near_branch_target()) {
            return Err(DetourRefusal::BranchIntoEntry {
                function: f.name.clone(),
                from: ins.ip(),
                target: ins.near_branch_target(),
            });
        }
    }
    Ok(len)
}

/// Verifies the two-instruction `_Py_Dealloc` body; returns its length.
fn dealloc_body(
    f: &FunctionSite,
    insns: &[Instruction],
    offsets: &StructOffsets,
) -> Result<usize, DetourRefusal> {
    let missing = |field| DetourRefusal::MissingOffset {
        function: f.name.clone(),
        field,
    };
    let ob_type = offsets
        .offset("_object", "ob_type")
        .ok_or_else(|| missing("_object.ob_type"))?;
    let tp_dealloc = offsets
        .offset("_typeobject", "tp_dealloc")
        .ok_or_else(|| missing("_typeobject.tp_dealloc"))?;
    let refuse = |reason: String| DetourRefusal::NotDeallocBody {
        function: f.name.clone(),
        ob_type,
        tp_dealloc,
        reason,
    };
    let body: Vec<&Instruction> = insns
        .iter()
        .filter(|i| !matches!(i.mnemonic(), Mnemonic::Nop | Mnemonic::Int3))
        .collect();
    let [load, jump] = body.as_slice() else {
        return Err(refuse(format!("{} instructions", body.len())));
    };
    let plain_memory = |i: &Instruction, op: u32, base: Register, disp: u64| {
        i.op_kind(op) == OpKind::Memory
            && i.memory_base() == base
            && i.memory_index() == Register::None
            && i.memory_segment() == Register::DS
            && i.memory_size().size() == 8
            && i.memory_displacement64() == disp
    };
    let loaded = load.op0_register();
    let load_ok = load.mnemonic() == Mnemonic::Mov
        && load.op_count() == 2
        && load.op0_kind() == OpKind::Register
        && loaded.is_gpr64()
        && plain_memory(load, 1, Register::RDI, ob_type);
    if !load_ok {
        return Err(refuse(format!("first instruction is `{load}`")));
    }
    let jump_ok = jump.mnemonic() == Mnemonic::Jmp
        && jump.flow_control() == FlowControl::IndirectBranch
        && jump.op_count() == 1
        && plain_memory(jump, 0, loaded, tp_dealloc);
    if !jump_ok {
        return Err(refuse(format!("second instruction is `{jump}`")));
    }
    if load.next_ip() != jump.ip() || load.ip() != f.address {
        return Err(refuse(
            "the two instructions are not the contiguous entry".into(),
        ));
    }
    Ok(load.len() + jump.len())
}

fn entry_bytes(
    image: &CodeImage<'_>,
    f: &FunctionSite,
    len: usize,
) -> Result<Vec<u8>, DetourRefusal> {
    image
        .bytes(f.address, f.address + len as u64)
        .map(<[u8]>::to_vec)
        .ok_or(DetourRefusal::Undecodable {
            function: f.name.clone(),
            address: f.address,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::image::CodeSection;
    use crate::model::{FunctionRole, StructLayout};
    use std::collections::BTreeMap;

    const BASE: u64 = 0x1000;

    fn image(code: &'static [u8]) -> CodeImage<'static> {
        CodeImage::from_sections(
            vec![CodeSection {
                name: ".text".into(),
                vaddr: BASE,
                bytes: code,
            }],
            BTreeMap::new(),
        )
    }

    fn site(name: &str, size: u64) -> FunctionSite {
        FunctionSite {
            role: FunctionRole::Dealloc,
            name: name.into(),
            address: BASE,
            size,
        }
    }

    fn offsets(ob_type: u64, tp_dealloc: u64) -> StructOffsets {
        let mut o = StructOffsets::default();
        for (s, f, v) in [
            ("_object", "ob_type", ob_type),
            ("_typeobject", "tp_dealloc", tp_dealloc),
        ] {
            o.structs.insert(
                s.into(),
                StructLayout {
                    size: 0,
                    fields: [(f.to_string(), v)].into_iter().collect(),
                },
            );
        }
        o
    }

    // mov rax, [rdi+8]; jmp [rax+0x30]
    const DEALLOC: &[u8] = &[0x48, 0x8b, 0x47, 0x08, 0xff, 0x60, 0x30];

    #[test]
    fn dealloc_body_is_a_full_replacement() {
        let img = image(DEALLOC);
        let s = detour_site(
            &img,
            DetourKind::Dealloc,
            &site("_Py_Dealloc", 7),
            &offsets(8, 0x30),
        )
        .unwrap();
        assert!(s.full_replacement);
        assert_eq!(s.point.bytes, DEALLOC);
        assert!(!s.point.flags_live);
    }

    #[test]
    fn dealloc_with_other_offsets_is_refused() {
        let img = image(DEALLOC);
        let e = detour_site(
            &img,
            DetourKind::Dealloc,
            &site("_Py_Dealloc", 7),
            &offsets(8, 0x38),
        )
        .unwrap_err();
        assert!(matches!(e, DetourRefusal::NotDeallocBody { .. }), "{e}");
        let e = detour_site(
            &img,
            DetourKind::Dealloc,
            &site("_Py_Dealloc", 7),
            &StructOffsets::default(),
        )
        .unwrap_err();
        assert!(matches!(e, DetourRefusal::MissingOffset { .. }), "{e}");
    }

    #[test]
    fn hash_pointer_entry_with_a_direct_call_is_relocatable() {
        // 3.12.1 _Py_HashPointer: sub rsp,8; call rel32; cmp rax,-1; je +9; add rsp,8; ret
        const CODE: &[u8] = &[
            0x48, 0x83, 0xec, 0x08, 0xe8, 0x00, 0x01, 0x00, 0x00, 0x48, 0x83, 0xf8, 0xff, 0x74,
            0x05, 0x48, 0x83, 0xc4, 0x08, 0xc3,
        ];
        let img = image(CODE);
        let s = detour_site(
            &img,
            DetourKind::HashPointer,
            &site("_Py_HashPointer", CODE.len() as u64),
            &StructOffsets::default(),
        )
        .unwrap();
        assert!(!s.full_replacement);
        assert_eq!(s.point.bytes, &CODE[..9]);
    }

    #[test]
    fn indirect_jump_in_entry_is_refused_for_hash_pointer() {
        let img = image(DEALLOC);
        let e = detour_site(
            &img,
            DetourKind::HashPointer,
            &site("f", 7),
            &offsets(8, 0x30),
        )
        .unwrap_err();
        assert!(matches!(e, DetourRefusal::NotRelocatable { .. }), "{e}");
    }

    #[test]
    fn branch_back_to_the_entry_is_refused() {
        // push rbx; mov rbx, rdi; mov rax, rsi; jmp <entry>
        const CODE: &[u8] = &[0x53, 0x48, 0x89, 0xfb, 0x48, 0x89, 0xf0, 0xeb, 0xf7];
        let img = image(CODE);
        let e = detour_site(
            &img,
            DetourKind::HashPointer,
            &site("f", 9),
            &StructOffsets::default(),
        )
        .unwrap_err();
        assert!(matches!(e, DetourRefusal::BranchIntoEntry { .. }), "{e}");
    }
}
