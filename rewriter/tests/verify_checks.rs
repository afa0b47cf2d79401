//! The verifier catches what it claims to catch: a wrong stub, a corrupted
//! displaced instruction, a stray change in `.text`, a redirected slot that
//! no longer points at its stub.

use object::{Object, ObjectSection};
use rewriter::instrument::{instrument, InstrumentOptions};
use rewriter::manifest::Manifest;
use rewriter::verify::verify;
use std::path::PathBuf;

fn libpython312() -> PathBuf {
    let roots = [
        std::env::var("PYENV_ROOT").ok().map(PathBuf::from),
        Some(PathBuf::from("/root/.pyenv")),
    ];
    for root in roots.into_iter().flatten() {
        if let Ok(entries) = std::fs::read_dir(root.join("versions")) {
            let mut v: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path().join("lib/libpython3.12.so.1.0"))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            if let Some(p) = v.pop() {
                return p;
            }
        }
    }
    panic!("no CPython 3.12 shared build under pyenv; install one (--enable-shared, -g)")
}

fn runtime() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("libretrace_rt.so");
    assert!(
        p.is_file(),
        "{} missing: run `cargo test --workspace`",
        p.display()
    );
    p
}

/// File offset of a virtual address in `data`.
fn offset_of(data: &[u8], vaddr: u64) -> usize {
    let file = object::File::parse(data).unwrap();
    for s in file.sections() {
        // Only allocated sections have meaningful addresses (debug sections sit at 0).
        if s.address() == 0 {
            continue;
        }
        if let Some((off, size)) = s.file_range() {
            if vaddr >= s.address() && vaddr < s.address() + size && s.size() == size {
                return (off + vaddr - s.address()) as usize;
            }
        }
    }
    panic!("{vaddr:#x} not in a file-backed section")
}

struct Fixture {
    original: Vec<u8>,
    output: Vec<u8>,
    manifest: Manifest,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let input = libpython312();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let opts = InstrumentOptions {
        input: input.clone(),
        out_dir: out.clone(),
        force: false,
        runtime: Some(runtime()),
        python: None,
    };
    instrument(&opts, &mut |_| {}).expect("instrument");
    let manifest = Manifest::load(&out).unwrap();
    Fixture {
        original: std::fs::read(&input).unwrap(),
        output: std::fs::read(out.join("lib").join(&manifest.library)).unwrap(),
        manifest,
        _dir: dir,
    }
}

#[test]
fn verifier_accepts_the_real_output_and_rejects_each_corruption() {
    let f = fixture();
    let ok = verify(&f.output, &f.manifest, Some(&f.original)).expect("clean output verifies");
    assert_eq!(ok.stubs_checked, f.manifest.stubs.len());
    assert_eq!(ok.hooks_checked, f.manifest.hooks.len());
    assert_eq!(ok.detours_checked, f.manifest.detours.len());
    assert_eq!(
        f.manifest.detours.len(),
        5,
        "3.12 detours HashPointer, Dealloc, ThreadStateClear, SetAsyncExc and ThreadStateNew"
    );
    assert!(
        ok.slots_unchanged > 20_000,
        "all other relocations compared"
    );

    // 1. A stub counting into the wrong counter.
    let mut bad = f.output.clone();
    let stub = &f.manifest.stubs[0];
    let at = offset_of(&bad, stub.stub);
    bad[at + 3] ^= 0x08; // disp32 of `add [rip+disp], 1`
    let err = verify(&bad, &f.manifest, Some(&f.original)).unwrap_err();
    assert!(err.contains("does not decode as expected"), "{err}");

    // 2. A displaced instruction altered in its trampoline.
    let mut bad = f.output.clone();
    let hook = f
        .manifest
        .hooks
        .iter()
        .find(|h| h.kind == "FrameClearAndPop")
        .expect("clear-and-pop hook");
    let at = offset_of(&bad, hook.displaced_address);
    bad[at] ^= 0x01; // push rbp -> push rbx (or similar)
    let err = verify(&bad, &f.manifest, Some(&f.original)).unwrap_err();
    assert!(err.contains("displaced instructions differ"), "{err}");

    // 3. A stray byte changed in the original code.
    let mut bad = f.output.clone();
    let site = f.manifest.hooks[0].site;
    let at = offset_of(&bad, site + 0x40_000);
    bad[at] ^= 0xff;
    let err = verify(&bad, &f.manifest, Some(&f.original)).unwrap_err();
    assert!(err.contains(".text differs from the original"), "{err}");

    // 4. The manifest claims a stub the table does not point at.
    let mut m = f.manifest.clone();
    m.stubs[1].stub += 16;
    let err = verify(&f.output, &m, Some(&f.original)).unwrap_err();
    assert!(err.contains("expected stub"), "{err}");

    // 6. A detour reading the wrong target slot.
    let hash = f
        .manifest
        .detours
        .iter()
        .find(|d| d.kind == "HashPointer")
        .expect("hash-pointer detour");
    let mut bad = f.output.clone();
    let at = offset_of(&bad, hash.detour);
    bad[at + 3] ^= 0x08; // disp32 of `cmp qword [rip+disp], 0`
    let err = verify(&bad, &f.manifest, Some(&f.original)).unwrap_err();
    assert!(err.contains("detour does not decode"), "{err}");

    // 7. The moved copy of the detoured entry altered.
    let mut bad = f.output.clone();
    let at = offset_of(&bad, hash.moved_address);
    bad[at + 3] ^= 0x10; // sub rsp, 8 -> sub rsp, 0x18
    let err = verify(&bad, &f.manifest, Some(&f.original)).unwrap_err();
    assert!(err.contains("displaced instructions differ"), "{err}");

    // 8. The full-replacement fallback body altered (tp_dealloc offset).
    let dealloc = f
        .manifest
        .detours
        .iter()
        .find(|d| d.full_replacement)
        .expect("full-replacement detour");
    let mut bad = f.output.clone();
    let at = offset_of(&bad, dealloc.moved_address);
    bad[at + 6] ^= 0x08; // jmp [rax+0x30] -> jmp [rax+0x38]
    let err = verify(&bad, &f.manifest, Some(&f.original)).unwrap_err();
    assert!(err.contains("fallback body differs"), "{err}");

    // 9. A full replacement of a body that is not `Py_TYPE(op)->tp_dealloc(op)` with
    //    the descriptor's offsets (manifest and fallback agree on the wrong offset).
    let mut m = f.manifest.clone();
    let i = m.detours.iter().position(|d| d.full_replacement).unwrap();
    m.detours[i].original = "488b4708ff6038".into();
    let mut bad = f.output.clone();
    let at = offset_of(&bad, dealloc.moved_address);
    bad[at + 6] = 0x38;
    let err = verify(&bad, &m, Some(&f.original)).unwrap_err();
    assert!(
        err.contains("full replacement of an unverified body"),
        "{err}"
    );

    // 10. A detoured site that no longer jumps to its detour.
    let mut bad = f.output.clone();
    let at = offset_of(&bad, dealloc.site);
    bad[at + 1] ^= 0x01;
    let err = verify(&bad, &f.manifest, Some(&f.original)).unwrap_err();
    assert!(err.contains("does not jump to the detour"), "{err}");

    // 5. The original library is not the one the analysis saw.
    let mut other = f.original.clone();
    let at = offset_of(&other, f.manifest.hooks[1].site);
    other[at] ^= 0xff;
    let err = verify(&f.output, &f.manifest, Some(&other)).unwrap_err();
    assert!(err.contains("differs") || err.contains("differ"), "{err}");
}
