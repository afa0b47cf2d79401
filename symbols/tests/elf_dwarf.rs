//! End-to-end checks of the ELF and DWARF half of the analysis against the
//! real pyenv libpython builds (3.12.1 required; 3.11 and 3.13 when present),
//! plus every input-validation error on real, deliberately damaged files.
//!
//! Expected values come from DESIGN-NOTES (measured with objdump/readelf) and
//! from the matching interpreter itself (`dis._all_opname`,
//! `opcode._inline_cache_entries`), never from this crate's own output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use symbols::dwarf::lines::LineTable;
use symbols::dwarf::DwarfData;
use symbols::elf::ElfInput;
use symbols::{
    analyze_bytes_with, analyze_file, analyze_file_with, Analysis, AnalysisError, AnalyzeOptions,
    LabelRole, TableEntryKind,
};

const NO_CODE: AnalyzeOptions = AnalyzeOptions {
    machine_code: false,
};

fn pyenv_root() -> PathBuf {
    std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"))
}

/// `(version directory name, libpython path)` of every installed `<series>.*`.
fn installed(series: &str) -> Vec<(String, PathBuf)> {
    let dir = pyenv_root().join("versions");
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let matches = name
                .strip_prefix(series)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|micro| micro.bytes().all(|b| b.is_ascii_digit()));
            let lib = entry
                .path()
                .join("lib")
                .join(format!("libpython{series}.so.1.0"));
            if matches && lib.is_file() {
                found.push((name, lib));
            }
        }
    }
    found.sort();
    found
}

/// The libpython of exactly `version`, or a failing test with instructions.
fn require(version: &str) -> PathBuf {
    let series = version.rsplit_once('.').map(|(s, _)| s).unwrap_or(version);
    installed(series)
        .into_iter()
        .find(|(name, _)| name == version)
        .map(|(_, lib)| lib)
        .unwrap_or_else(|| {
            panic!(
                "CPython {version} not found at {}/versions/{version}/lib/libpython{series}.so.1.0 \
                 (set PYENV_ROOT or run `pyenv install {version}` with --enable-shared and -g)",
                pyenv_root().display()
            )
        })
}

fn optional(version: &str) -> Option<PathBuf> {
    let series = version.rsplit_once('.').map(|(s, _)| s).unwrap_or(version);
    let found = installed(series)
        .into_iter()
        .find(|(name, _)| name == version)
        .map(|(_, lib)| lib);
    if found.is_none() {
        eprintln!("note: CPython {version} not installed; its checks are skipped");
    }
    found
}

fn analyse(lib: &Path) -> Analysis {
    analyze_file_with(lib, NO_CODE).unwrap_or_else(|e| panic!("analysis failed: {e}"))
}

/// Runs the interpreter next to `lib` and returns its stdout lines.
fn python_lines(lib: &Path, script: &str) -> Vec<String> {
    let bin = lib
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("bin").join("python3"))
        .expect("libpython path has a prefix");
    let out = Command::new(&bin)
        .arg("-c")
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    assert!(out.status.success(), "{} failed: {:?}", bin.display(), out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

// ---------------------------------------------------------------- 3.12.1

#[test]
fn version_and_identity_3_12() {
    let lib = require("3.12.1");
    let a = analyse(&lib);
    assert_eq!(a.version.to_string(), "3.12.1");
    assert_eq!(a.version.hex(), 0x030c01f0);
    assert_eq!(a.library.soname.as_deref(), Some("libpython3.12.so.1.0"));
    let size = std::fs::metadata(&lib).expect("metadata").len();
    assert_eq!(a.library.size, size);
    let sha = Command::new("sha256sum")
        .arg(&lib)
        .output()
        .expect("sha256sum");
    let expected = String::from_utf8_lossy(&sha.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(a.library.sha256, expected);
    let readelf = Command::new("readelf")
        .arg("-n")
        .arg(&lib)
        .output()
        .expect("readelf");
    let notes = String::from_utf8_lossy(&readelf.stdout);
    let build_id = a.library.build_id.clone().expect("build-id present");
    assert!(
        notes.contains(&format!("Build ID: {build_id}")),
        "readelf -n does not show build id {build_id}"
    );
}

#[test]
fn eval_ranges_3_12() {
    let a = analyse(&require("3.12.1"));
    assert_eq!(a.eval.symbol, "_PyEval_EvalFrameDefault");
    assert!(a.eval.contains(0x10bdc0), "{:x?}", a.eval.ranges);
    assert!(a.eval.contains(0x1185ec), "{:x?}", a.eval.ranges);
    assert!(!a.eval.contains(0x1185ed), "{:x?}", a.eval.ranges);
    assert!(
        a.eval
            .ranges
            .iter()
            .any(|r| r.start == 0x10ba24 && r.end == 0x10ba2c),
        "the 8-byte .cold part is missing: {:x?}",
        a.eval.ranges
    );
}

#[test]
fn opcode_table_3_12() {
    let lib = require("3.12.1");
    let a = analyse(&lib);
    let table = a.table.as_ref().expect("table");
    assert_eq!(table.symbol, "opcode_targets.0");
    assert_eq!(table.address, 0x4cef20);
    assert_eq!(table.entries.len(), 256);
    for (i, e) in table.entries.iter().enumerate() {
        assert_eq!(e.opcode as usize, i);
        assert_eq!(e.slot, 0x4cef20 + 8 * i as u64);
        assert!(
            a.eval.contains(e.target),
            "opcode {i} target {:#x}",
            e.target
        );
        assert!(!e.labels.is_empty());
    }
    let unknown: Vec<_> = table
        .entries
        .iter()
        .filter(|e| e.kind == TableEntryKind::Unknown)
        .collect();
    assert_eq!(unknown.len(), 63);
    assert!(unknown.iter().all(|e| e.target == 0x10f7a0));
    let line = &table.entries[254];
    assert_eq!(line.name, "INSTRUMENTED_LINE");
    assert_eq!(line.kind, TableEntryKind::InstrumentedLine);
    assert!(!line.kind.is_redirected());
    assert_eq!(table.entries[0].name, "CACHE");
    assert_eq!(table.entries[0].target, 0x10ba24);
    assert_eq!(table.entries[0].kind, TableEntryKind::Cache);
    let distinct: std::collections::BTreeSet<u64> =
        table.entries.iter().map(|e| e.target).collect();
    assert_eq!(distinct.len(), 193);
    // A relocation read straight from readelf.
    assert_eq!(table.entries[1].target, 0x113069);

    // Every named opcode must match the interpreter's own numbering.
    let names = python_lines(&lib, "import dis\nfor n in dis._all_opname[:256]: print(n)");
    assert_eq!(names.len(), 256);
    let mut checked = 0;
    for e in &table.entries {
        let py = &names[e.opcode as usize];
        if e.kind == TableEntryKind::Unknown {
            assert!(
                py.starts_with('<'),
                "opcode {} is {py} but unknown",
                e.opcode
            );
        } else {
            assert_eq!(&e.name, py, "opcode {}", e.opcode);
            checked += 1;
        }
    }
    assert_eq!(checked, 256 - 63);
    let shared = &table.entries[142];
    assert_eq!(shared.name, "CALL_FUNCTION_EX");
    assert_eq!(shared.labels.len(), 2);
}

#[test]
fn opcode_meta_3_12() {
    let lib = require("3.12.1");
    let a = analyse(&lib);
    let meta = a.opcode_meta.as_ref().expect("opcode meta");
    assert_eq!(meta.caches.len(), 256);
    assert_eq!(meta.deopt.len(), 256);
    let py = python_lines(
        &lib,
        "import opcode\nfor n in opcode._inline_cache_entries: print(n)",
    );
    let base: Vec<u8> = py.iter().map(|l| l.parse().expect("number")).collect();
    let names = python_lines(&lib, "import dis\nfor n in dis._all_opname[:256]: print(n)");
    let mut bases = 0;
    for op in 0..256 {
        // Base opcodes (their own deopt target): the C table agrees with opcode.py.
        if names[op].starts_with('<') || meta.deopt[op] as usize != op {
            continue;
        }
        assert_eq!(
            meta.caches[op], base[op],
            "caches of opcode {op} ({})",
            names[op]
        );
        bases += 1;
    }
    assert!(bases > 100, "only {bases} base opcodes");
    assert!(meta.caches.iter().any(|&c| c > 0));
    let load_attr = names
        .iter()
        .position(|n| n == "LOAD_ATTR")
        .expect("LOAD_ATTR");
    let specialised = names
        .iter()
        .position(|n| n == "LOAD_ATTR_INSTANCE_VALUE")
        .expect("specialised opcode");
    assert_eq!(meta.deopt[specialised] as usize, load_attr);
    assert_eq!(meta.deopt[load_attr] as usize, load_attr);
}

#[test]
fn struct_offsets_3_12() {
    let a = analyse(&require("3.12.1"));
    let o = &a.offsets;
    let frame = "_PyInterpreterFrame";
    assert_eq!(o.size(frame), Some(80));
    assert_eq!(o.offset(frame, "f_code"), Some(0x00));
    assert_eq!(o.offset(frame, "previous"), Some(0x08));
    assert_eq!(o.offset(frame, "f_funcobj"), Some(0x10));
    assert_eq!(o.offset(frame, "f_globals"), Some(0x18));
    assert_eq!(o.offset(frame, "frame_obj"), Some(0x30));
    assert_eq!(o.offset(frame, "prev_instr"), Some(0x38));
    assert_eq!(o.offset(frame, "stacktop"), Some(0x40));
    assert_eq!(o.offset(frame, "return_offset"), Some(0x44));
    assert_eq!(o.offset(frame, "owner"), Some(0x46));
    assert_eq!(o.offset(frame, "localsplus"), Some(0x48));
    assert_eq!(o.offset("_PyCFrame", "current_frame"), Some(0));
    assert_eq!(o.offset("_PyCFrame", "previous"), Some(8));
    assert_eq!(o.offset("_ts", "interp"), Some(0x10));
    assert_eq!(o.offset("_ts", "cframe"), Some(0x38));
    assert_eq!(o.offset("_ts", "thread_id"), Some(0x88));
    assert_eq!(o.offset("_ts", "native_thread_id"), Some(0x90));
    assert_eq!(o.offset("_ts", "py_recursion_remaining"), Some(0x1c));
    assert_eq!(o.offset("_ts", "datastack_top"), Some(0xf0));
    assert_eq!(o.offset("_ts", "datastack_limit"), Some(0xf8));
    assert_eq!(o.offset("_is", "threads.head"), Some(0x48));
    assert_eq!(o.offset("_is", "ceval.eval_breaker"), Some(0x170));
    assert_eq!(o.offset("_is", "eval_frame"), Some(0x6d0));
    assert_eq!(o.offset("PyCodeObject", "co_code_adaptive"), Some(0xc0));
    assert_eq!(o.offset("PyCodeObject", "co_framesize"), Some(0x4c));
    assert_eq!(o.offset("PyCodeObject", "co_nlocalsplus"), Some(0x48));
}

#[test]
fn functions_and_labels_3_12() {
    let a = analyse(&require("3.12.1"));
    let links = &a.frame_links;
    let f = |name: &str| {
        links
            .functions
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(f("_PyEval_EvalFrameDefault").address, 0x10bdc0);
    assert_eq!(f("_PyEval_EvalFrameDefault").size, 51245);
    assert_eq!(f("_PyEvalFrameClearAndPop").address, 0x280d00);
    assert_eq!(f("_PyFrame_Copy").size, 43);
    assert_eq!(f("PyThreadState_Clear").address, 0x2d8760);
    assert_eq!(links.functions.len(), 10);
    // GCC emitted 3.12.1's `exception_unwind` label without an address.
    assert!(links.label(LabelRole::ExceptionUnwind).is_none());
    assert_eq!(
        links.label(LabelRole::ExitUnwind).map(|l| l.address),
        Some(0x10c432)
    );
    for role in [
        LabelRole::StartFrame,
        LabelRole::ResumeFrame,
        LabelRole::ResumeWithError,
        LabelRole::HandleEvalBreaker,
        LabelRole::Error,
        LabelRole::ExitUnwind,
    ] {
        let label = links
            .label(role)
            .unwrap_or_else(|| panic!("{role:?} missing"));
        assert!(
            a.eval.contains(label.address),
            "{role:?} at {:#x}",
            label.address
        );
    }
    // Only the machine-code analysis was left out.
    assert_eq!(
        a.unsupported,
        vec!["machine-code analysis not run (disabled by the caller)".to_string()]
    );
}

#[test]
fn line_table_3_12() {
    let lib = require("3.12.1");
    let data = std::fs::read(&lib).expect("read");
    let elf = ElfInput::parse("lib", &data).expect("elf");
    let dwarf = DwarfData::load(&elf).expect("dwarf");
    let lines = LineTable::new(dwarf.dwarf()).expect("lines");
    // DESIGN-NOTES §1: the resume_frame dispatch jump is ceval.c:770.
    let at = lines.line_at(0x10bed6).expect("line of 0x10bed6");
    assert_eq!((at.file.as_str(), at.line), ("ceval.c", 770));
    // _PyFrame_Copy (0x2a6540) is in another unit: Python/frame.c.
    let copy = lines.line_at(0x2a6540).expect("line of _PyFrame_Copy");
    assert_eq!(copy.file, "frame.c");
    // The ELF header is not code.
    assert_eq!(lines.line_at(0x10), None);
}

#[test]
fn elf_facts_3_12() {
    let lib = require("3.12.1");
    let data = std::fs::read(&lib).expect("read");
    let elf = ElfInput::parse("lib", &data).expect("elf");
    let cold = elf
        .symbols()
        .cold_part("_PyEval_EvalFrameDefault")
        .expect(".cold symbol");
    assert_eq!((cold.address, cold.size), (0x10ba24, 8));
    let numbered = elf.symbols().numbered("opcode_targets");
    assert_eq!(numbered.len(), 1);
    assert_eq!(numbered[0].name, "opcode_targets.0");
    assert_eq!(elf.relative_relocs().at(0x4cef28), Some(0x113069));
    assert_eq!(elf.read_u32(0x3d30f0).expect("Py_Version"), 0x030c01f0);
    assert_eq!(
        elf.dynamic().needed,
        vec!["libm.so.6", "libc.so.6", "ld-linux-x86-64.so.2"]
    );
}

#[test]
fn full_analysis_reports_missing_code_analysis_as_error_or_succeeds_3_12() {
    // With machine-code analysis on, 3.12 (an Instrument version) either
    // succeeds completely or fails with an Analysis error naming that stage.
    let lib = require("3.12.1");
    let start = Instant::now();
    let result = analyze_file(&lib);
    eprintln!(
        "full analysis of 3.12.1: {:?}, {}",
        start.elapsed(),
        match &result {
            Ok(a) => format!(
                "ok: {} dispatch sites, {} hooks, unsupported {:?}",
                a.dispatch_sites.len(),
                a.hooks.len(),
                a.unsupported
            ),
            Err(e) => format!("error: {e}"),
        }
    );
    match result {
        Ok(a) => {
            assert!(a.unsupported.is_empty(), "{:?}", a.unsupported);
            assert!(a.is_instrumentable());
        }
        Err(AnalysisError::Analysis(_, msg)) => {
            assert!(msg.starts_with("machine-code analysis:"), "{msg}")
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn timing_3_12() {
    let lib = require("3.12.1");
    let data = std::fs::read(&lib).expect("read");
    let start = Instant::now();
    let a = analyze_bytes_with("lib", &data, NO_CODE).expect("analysis");
    let elapsed = start.elapsed();
    eprintln!(
        "ELF+DWARF analysis of 3.12.1 ({} bytes): {:?} ({} build)",
        data.len(),
        elapsed,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    assert!(a.table.is_some());
    let limit = if cfg!(debug_assertions) { 10.0 } else { 1.0 };
    assert!(elapsed.as_secs_f64() < limit, "took {elapsed:?}");
}

// ---------------------------------------------------------------- 3.11 / 3.13

#[test]
fn analyse_only_3_11() {
    let Some(lib) = optional("3.11.7") else {
        return;
    };
    let a = analyse(&lib);
    assert_eq!(a.version.to_string(), "3.11.7");
    assert!(a.unsupported[0].starts_with("3.11 dispatches through DO_TRACING"));
    let table = a.table.as_ref().expect("table");
    assert_eq!(table.symbol, "opcode_targets.3");
    assert_eq!(table.entries[255].name, "DO_TRACING");
    assert_eq!(table.entries[255].kind, TableEntryKind::DoTracing);
    let names = python_lines(&lib, "import dis\nfor n in dis._all_opname[:256]: print(n)");
    for e in table
        .entries
        .iter()
        .filter(|e| e.kind != TableEntryKind::Unknown)
    {
        if e.opcode != 255 {
            assert_eq!(e.name, names[e.opcode as usize], "opcode {}", e.opcode);
        }
    }
    let o = &a.offsets;
    assert_eq!(o.offset("_PyInterpreterFrame", "previous"), Some(0x30));
    assert_eq!(o.offset("_PyInterpreterFrame", "f_code"), Some(0x20));
    assert_eq!(o.offset("_PyCFrame", "current_frame"), Some(0x8));
    assert_eq!(o.offset("_ts", "cframe"), Some(0x38));
    assert_eq!(o.offset("_ts", "thread_id"), Some(0x98));
    assert_eq!(o.offset("PyCodeObject", "co_code_adaptive"), Some(0xb8));
    assert!(a.eval.contains(0xfab70));
    assert!(a.eval.contains(0xfa7f6), ".cold part {:x?}", a.eval.ranges);
}

#[test]
fn analyse_only_3_13() {
    let Some(lib) = optional("3.13.0") else {
        return;
    };
    let a = analyse(&lib);
    assert_eq!(a.version.to_string(), "3.13.0");
    assert!(a.unsupported[0].starts_with("3.13 keeps the current frame"));
    // 3.13 has no _PyFrame_Copy symbol (inlined): reported, not fatal.
    assert!(
        a.unsupported
            .iter()
            .any(|s| s == "function _PyFrame_Copy not found in the symbol table"),
        "{:?}",
        a.unsupported
    );
    let table = a.table.as_ref().expect("table");
    assert_eq!(table.symbol, "opcode_targets.0");
    let names = python_lines(&lib, "import dis\nfor n in dis._all_opname[:256]: print(n)");
    for e in table
        .entries
        .iter()
        .filter(|e| e.kind != TableEntryKind::Unknown)
    {
        assert_eq!(e.name, names[e.opcode as usize], "opcode {}", e.opcode);
    }
    let o = &a.offsets;
    assert_eq!(o.offset("_PyInterpreterFrame", "instr_ptr"), Some(0x38));
    assert_eq!(o.offset("_ts", "current_frame"), Some(0x48));
    assert_eq!(o.offset("_ts", "eval_breaker"), Some(0x18));
    assert_eq!(o.offset("_ts", "thread_id"), Some(0x98));
    assert_eq!(o.offset("PyCodeObject", "co_code_adaptive"), Some(0xc8));
}

// ---------------------------------------------------------------- errors

fn analyse_err(path: &Path) -> AnalysisError {
    match analyze_file_with(path, NO_CODE) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e,
    }
}

#[test]
fn missing_file_is_io_error() {
    let dir = tempdir();
    let e = analyse_err(&dir.path().join("nope.so"));
    assert!(matches!(e, AnalysisError::Io { .. }), "{e}");
}

#[test]
fn non_elf_and_empty_files() {
    let dir = tempdir();
    let text = dir.path().join("text.so");
    std::fs::write(&text, b"hello, this is not an ELF file\n").expect("write");
    assert!(matches!(analyse_err(&text), AnalysisError::NotElf(_)));
    let empty = dir.path().join("empty.so");
    std::fs::write(&empty, b"").expect("write");
    assert!(matches!(analyse_err(&empty), AnalysisError::NotElf(_)));
}

#[test]
fn other_elf_files_are_not_libpython() {
    for path in ["/bin/ls", "/lib/x86_64-linux-gnu/libc.so.6"] {
        let path = Path::new(path);
        assert!(path.exists(), "{} missing on this machine", path.display());
        let e = analyse_err(path);
        assert!(
            matches!(e, AnalysisError::NotLibpython(..)),
            "{}: {e}",
            path.display()
        );
    }
}

#[test]
fn truncated_copy_is_rejected() {
    let data = std::fs::read(require("3.12.1")).expect("read");
    for len in [40usize, 4096, data.len() / 2, data.len() - 1] {
        match analyze_bytes_with("cut", &data[..len], NO_CODE) {
            Err(AnalysisError::Truncated(..)) => {}
            Err(e) => panic!("length {len}: wrong error {e}"),
            Ok(_) => panic!("length {len}: accepted"),
        }
    }
}

fn objcopy(args: &[&str], input: &Path, output: &Path) {
    let status = Command::new("objcopy")
        .args(args)
        .arg(input)
        .arg(output)
        .status()
        .expect("objcopy not found; install it with `apt-get install -y binutils`");
    assert!(status.success(), "objcopy {args:?} failed");
}

#[test]
fn stripped_copy_has_no_debug_info() {
    let dir = tempdir();
    let out = dir.path().join("libpython3.12.so.1.0");
    objcopy(&["--strip-debug"], &require("3.12.1"), &out);
    let e = analyse_err(&out);
    assert!(matches!(e, AnalysisError::NoDebugInfo(_)), "{e}");
}

#[test]
fn instrumented_copy_is_refused() {
    let dir = tempdir();
    let payload = dir.path().join("payload");
    std::fs::write(&payload, [0u8; 16]).expect("write");
    let out = dir.path().join("libpython3.12.so.1.0");
    let section = format!(".retrace.data={}", payload.display());
    objcopy(&["--add-section", &section], &require("3.12.1"), &out);
    let e = analyse_err(&out);
    assert!(matches!(e, AnalysisError::AlreadyInstrumented(..)), "{e}");
}

#[test]
fn python_3_10_is_unsupported() {
    let lib = installed("3.10")
        .into_iter()
        .next()
        .map(|(_, l)| l)
        .unwrap_or_else(|| panic!("no CPython 3.10 under {}/versions", pyenv_root().display()));
    match analyse_err(&lib) {
        AnalysisError::UnsupportedVersion { version, .. } => {
            let dir = lib
                .parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            assert_eq!(version, dir);
        }
        e => panic!("wrong error {e}"),
    }
}
