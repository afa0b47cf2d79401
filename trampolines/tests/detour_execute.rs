//! Runs detoured functions for real, in this process: with no runtime target
//! (the original runs through `original_i`), with a replacement that calls
//! the original, and a full replacement (`_Py_Dealloc`'s shape) both ways.
//!
//! Code and a fake descriptor live in one anonymous mapping; the detours are
//! generated for exactly those addresses and the entries patched as the
//! rewriter patches them.

mod common;

use common::Mapping;
use retrace_abi::Descriptor;
use std::sync::atomic::{AtomicU64, Ordering};
use trampolines::detour::{generate_detours, site_patch, DetourRequest};

/// The address of `original_0`, read by the replacement.
static ORIGINAL_0: AtomicU64 = AtomicU64::new(0);
static REPLACEMENT_CALLS: AtomicU64 = AtomicU64::new(0);

/// Replacement of function 0: `original(x) * 10`.
extern "C" fn times_ten(x: u64) -> u64 {
    REPLACEMENT_CALLS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: ORIGINAL_0 holds the address of `original_0`, an extern "C" fn(u64) -> u64.
    let original: extern "C" fn(u64) -> u64 =
        unsafe { std::mem::transmute(ORIGINAL_0.load(Ordering::SeqCst) as usize) };
    original(x) * 10
}

static DEALLOCATED: AtomicU64 = AtomicU64::new(0);
static REPLACED_DEALLOCS: AtomicU64 = AtomicU64::new(0);

/// The fake type's `tp_dealloc`.
extern "C" fn fake_tp_dealloc(op: *mut u64) {
    DEALLOCATED.store(op as u64, Ordering::SeqCst);
}

/// Full replacement of the fake `_Py_Dealloc`: `Py_TYPE(op)->tp_dealloc(op)` plus a count.
extern "C" fn replaced_dealloc(op: *mut u64) {
    REPLACED_DEALLOCS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `op` is our fake object: word 1 points at the fake type, whose
    // word 6 (offset 0x30) holds `fake_tp_dealloc`.
    unsafe {
        let ty = *op.add(1) as *const u64;
        let f: extern "C" fn(*mut u64) = std::mem::transmute(*ty.add(6) as usize);
        f(op)
    }
}

#[test]
fn detoured_functions_run_original_replacement_and_full_replacement() {
    let mut map = Mapping::new(0x6000);
    map.write(0, Descriptor::new().as_bytes());
    assert!(std::mem::size_of::<Descriptor>() <= 0x2000);
    let targets = map.addr(retrace_abi::field::DETOUR_TARGETS);

    // Function 0 (straight-line entry): lea rax, [rdi + rdi]; add rax, 1; ret  => 2x + 1
    let f0 = 0x2800;
    let code0 = [0x48, 0x8d, 0x04, 0x3f, 0x48, 0x83, 0xc0, 0x01, 0xc3];
    map.write(f0, &code0);
    // Helper called by function 1: lea rax, [rdi + 100]; ret
    let helper = 0x2900;
    map.write(helper, &[0x48, 0x8d, 0x47, 0x64, 0xc3]);
    // Function 1 (entry with a direct call, like _Py_HashPointer):
    // sub rsp, 8; call helper; add rsp, 8; add rax, 3; ret  => x + 103
    let f1 = 0x2a00;
    let call_rel = (helper as i64 - (f1 as i64 + 4 + 5)) as i32;
    let mut code1 = vec![0x48, 0x83, 0xec, 0x08, 0xe8];
    code1.extend_from_slice(&call_rel.to_le_bytes());
    code1.extend_from_slice(&[0x48, 0x83, 0xc4, 0x08, 0x48, 0x83, 0xc0, 0x03, 0xc3]);
    map.write(f1, &code1);
    // Function 2 (_Py_Dealloc shape): mov rax, [rdi+8]; jmp [rax+0x30]
    let f2 = 0x2b00;
    let code2 = [0x48, 0x8b, 0x47, 0x08, 0xff, 0x60, 0x30];
    map.write(f2, &code2);

    let requests = [
        DetourRequest {
            site: map.addr(f0),
            displaced: code0[..8].to_vec(),
            full_replacement: false,
        },
        DetourRequest {
            site: map.addr(f1),
            displaced: code1[..9].to_vec(),
            full_replacement: false,
        },
        DetourRequest {
            site: map.addr(f2),
            displaced: code2.to_vec(),
            full_replacement: true,
        },
    ];
    let text = 0x4000;
    let program = generate_detours(map.addr(text), targets, &requests).unwrap();
    assert_eq!(program.detours.len(), 3);
    assert!(program.detours[2].full_replacement);
    assert_eq!(program.detours[1].target_slot, targets + 8);
    map.write(text, &program.bytes);
    for (d, req) in program.detours.iter().zip(&requests) {
        let patch = site_patch(d.site, d.address, req.displaced.len()).unwrap();
        map.write((d.site - map.addr(0)) as usize, &patch);
    }
    ORIGINAL_0.store(program.detours[0].original, Ordering::SeqCst);
    map.protect_exec(0x2000, 0x4000);

    // SAFETY: the patched entries are extern "C" functions of these signatures.
    let (g0, g1, g2): (
        extern "C" fn(u64) -> u64,
        extern "C" fn(u64) -> u64,
        extern "C" fn(*mut u64),
    ) = unsafe {
        (
            std::mem::transmute::<usize, extern "C" fn(u64) -> u64>(map.addr(f0) as usize),
            std::mem::transmute::<usize, extern "C" fn(u64) -> u64>(map.addr(f1) as usize),
            std::mem::transmute::<usize, extern "C" fn(*mut u64)>(map.addr(f2) as usize),
        )
    };
    // A fake type whose tp_dealloc (offset 0x30) is `fake_tp_dealloc`, and an object of it.
    let mut fake_type = [0u64; 8];
    fake_type[6] = fake_tp_dealloc as *const () as u64;
    let mut object = [1u64, fake_type.as_ptr() as u64];

    // No runtime target: every function behaves as the original.
    assert_eq!(g0(20), 41);
    assert_eq!(g1(20), 123);
    g2(object.as_mut_ptr());
    assert_eq!(DEALLOCATED.load(Ordering::SeqCst), object.as_ptr() as u64);
    assert_eq!(REPLACEMENT_CALLS.load(Ordering::SeqCst), 0);
    assert_eq!(REPLACED_DEALLOCS.load(Ordering::SeqCst), 0);

    // The original copies are callable directly, too.
    // SAFETY: `original_i` is a callable copy of function i.
    let o1: extern "C" fn(u64) -> u64 =
        unsafe { std::mem::transmute(program.detours[1].original as usize) };
    assert_eq!(o1(1), 104);

    // Replacements installed.
    map.descriptor().detour_targets[0] = times_ten as *const () as u64;
    map.descriptor().detour_targets[2] = replaced_dealloc as *const () as u64;
    assert_eq!(g0(20), 410, "replacement calling the original");
    assert_eq!(REPLACEMENT_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(g1(20), 123, "function 1 has no target: still the original");
    DEALLOCATED.store(0, Ordering::SeqCst);
    g2(object.as_mut_ptr());
    assert_eq!(REPLACED_DEALLOCS.load(Ordering::SeqCst), 1);
    assert_eq!(DEALLOCATED.load(Ordering::SeqCst), object.as_ptr() as u64);

    // Uninstalled again.
    map.descriptor().detour_targets[0] = 0;
    assert_eq!(g0(5), 11);
    assert_eq!(REPLACEMENT_CALLS.load(Ordering::SeqCst), 1);
}
