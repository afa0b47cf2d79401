//! End-to-end tests of `rewriter::emit` on the real pyenv libpython 3.12: the rewritten
//! library must load into the unmodified `python3.12`, and `readelf`, `gdb` and `object`'s
//! reader must see exactly the requested edits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};
use rewriter::emit::{ElfRewrite, EmitError};

/// A discovered interpreter: its shared library and the executable that loads it.
struct Interp {
    lib: PathBuf,
    python: PathBuf,
}

/// Find `$(pyenv root)/versions/3.12*/lib/libpython3.12.so.1.0`; fail loudly if absent.
fn interp_312() -> Interp {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"));
    let versions = root.join("versions");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&versions)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", versions.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("3.12"))
        })
        .filter(|p| {
            p.join("lib/libpython3.12.so.1.0").is_file() && p.join("bin/python3.12").is_file()
        })
        .collect();
    found.sort();
    let dir = found.pop().unwrap_or_else(|| {
        panic!(
            "no CPython 3.12 found: need {}/3.12*/lib/libpython3.12.so.1.0 and bin/python3.12 \
             (set PYENV_ROOT or install one with pyenv, configured with --enable-shared)",
            versions.display()
        )
    });
    Interp {
        lib: dir.join("lib/libpython3.12.so.1.0"),
        python: dir.join("bin/python3.12"),
    }
}

/// Write `bytes` as `<tmp>/lib/libpython3.12.so.1.0` and return the lib directory.
fn install(tmp: &Path, bytes: &[u8]) -> PathBuf {
    let lib = tmp.join("lib");
    std::fs::create_dir_all(&lib).expect("create lib dir");
    std::fs::write(lib.join("libpython3.12.so.1.0"), bytes).expect("write library");
    lib
}

/// Run `python -c script` against the library in `libdir`; return stdout, panicking with
/// stderr on failure.
fn run_python(interp: &Interp, libdir: &Path, script: &str) -> String {
    let out = Command::new(&interp.python)
        .arg("-c")
        .arg(script)
        .env("LD_LIBRARY_PATH", libdir)
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .output()
        .expect("spawn python");
    assert!(
        out.status.success(),
        "python failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python stdout is utf-8")
}

fn tool(cmd: &str, args: &[&str], file: &Path) -> String {
    let out = Command::new(cmd)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Script that proves which libpython got mapped and that the interpreter works.
const MAPS_SCRIPT: &str = "import sys\n\
print(sys.version)\n\
maps = open('/proc/self/maps').read()\n\
print([l.split()[-1] for l in maps.splitlines() if 'libpython' in l][0])\n\
print('LIBUTIL' if 'libutil.so.1' in maps else 'NO-LIBUTIL')\n\
def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)\n\
print(sum(i * i for i in range(1000)), fib(20), sorted({'b': 1, 'a': 2}))\n";

fn addend_at(file: &object::File<'_>, slot: u64) -> Option<i64> {
    file.dynamic_relocations()?
        .find(|(offset, _)| *offset == slot)
        .map(|(_, rel)| rel.addend())
}

fn symbol_addr(file: &object::File<'_>, name: &str) -> u64 {
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("symbol {name} not found"))
        .address()
}

fn section_bytes<'d>(file: &object::File<'d>, name: &str) -> &'d [u8] {
    file.section_by_name(name)
        .unwrap_or_else(|| panic!("section {name} missing"))
        .data()
        .expect("section data")
}

#[test]
fn round_trip_without_changes_loads_and_runs() {
    let interp = interp_312();
    let input = std::fs::read(&interp.lib).expect("read libpython");
    let output = ElfRewrite::read(&input)
        .expect("read")
        .finish()
        .expect("finish");
    let tmp = tempfile::tempdir().expect("tempdir");
    let libdir = install(tmp.path(), &output);
    let stdout = run_python(&interp, &libdir, MAPS_SCRIPT);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("3.12"), "unexpected version: {stdout}");
    assert!(
        Path::new(lines[1]).starts_with(tmp.path()),
        "python mapped {} instead of the rewritten copy",
        lines[1]
    );
    assert_eq!(lines[2], "NO-LIBUTIL");
    assert_eq!(lines[3], "332833500 6765 ['a', 'b']");

    // Same segments and the same debug info and symbol table.
    let a = object::File::parse(&*input).expect("parse input");
    let b = object::File::parse(&*output).expect("parse output");
    assert_eq!(a.segments().count(), b.segments().count());
    assert_eq!(
        section_bytes(&a, ".debug_info"),
        section_bytes(&b, ".debug_info")
    );
    assert_eq!(section_bytes(&a, ".text"), section_bytes(&b, ".text"));
    assert_eq!(a.symbols().count(), b.symbols().count());
}

#[test]
fn full_rewrite_adds_segments_needed_runpath_and_redirects() {
    let interp = interp_312();
    let input = std::fs::read(&interp.lib).expect("read libpython");
    let parsed = object::File::parse(&*input).expect("parse input");
    let table = symbol_addr(&parsed, "opcode_targets.0");
    let slot0_old = addend_at(&parsed, table).expect("slot 0 relocation") as u64;
    let slot1_old = addend_at(&parsed, table + 8).expect("slot 1 relocation") as u64;
    let fini = parsed.section_by_name(".fini").expect(".fini").address();

    let t0 = Instant::now();
    let mut rw = ElfRewrite::read(&input).expect("read");
    rw.add_needed("libutil.so.1").expect("add_needed");
    rw.set_runpath("$ORIGIN").expect("set_runpath");
    let placement = rw
        .place_new_sections(".retrace.data", 4096, ".retrace.text")
        .expect("place");
    assert_eq!(placement.data_vaddr % 4096, 0);
    assert_eq!(placement.text_vaddr % 4096, 0);
    assert!(placement.text_vaddr >= placement.data_vaddr + 4096);
    let max_end = parsed
        .segments()
        .map(|s| s.address() + s.size())
        .max()
        .expect("segments");
    assert!(placement.data_vaddr >= max_end);

    let mut data = vec![0u8; 4096];
    data[..8].copy_from_slice(b"RETRACE1");
    data[8..16].copy_from_slice(&placement.text_vaddr.to_le_bytes());
    rw.set_data(data.clone()).expect("set_data");
    let text = vec![0xc3u8; 3 * 4096 + 17];
    rw.set_text(text.clone()).expect("set_text");

    // No-op redirect of a real handler, and CACHE (never dispatched) into the new text.
    assert_eq!(
        rw.redirect_relative(table + 8, slot1_old).expect("slot 1"),
        slot1_old
    );
    assert_eq!(
        rw.redirect_relative(table, placement.text_vaddr)
            .expect("slot 0"),
        slot0_old
    );
    assert_eq!(
        rw.redirect_relative(table, placement.text_vaddr)
            .expect("slot 0 again"),
        placement.text_vaddr
    );

    // patch() round trip on .fini: write int3s, then put the original bytes back.
    let int3 = [0xccu8; 4];
    let orig = rw.patch(fini, &int3).expect("patch");
    assert_eq!(orig, &input[fini as usize..fini as usize + 4]);
    assert_eq!(rw.patch(fini, &orig).expect("unpatch"), int3.to_vec());

    let (output, report) = rw.finish_with_report().expect("finish");
    eprintln!(
        "read+edit+finish (this profile): {:?}; {} phdrs; moved {:?}",
        t0.elapsed(),
        report.program_headers,
        report.moved
    );
    for moved in &report.moved {
        assert!(
            moved.new_addr >= placement.text_vaddr + text.len() as u64,
            "{} moved below the end of the text",
            moved.name
        );
    }

    // object's reader sees the edits.
    let out = object::File::parse(&*output).expect("parse output");
    assert_eq!(addend_at(&out, table), Some(placement.text_vaddr as i64));
    assert_eq!(addend_at(&out, table + 8), Some(slot1_old as i64));
    let rdata = out.section_by_name(".retrace.data").expect(".retrace.data");
    assert_eq!(rdata.address(), placement.data_vaddr);
    assert_eq!(rdata.data().expect("data"), &data[..]);
    let rtext = out.section_by_name(".retrace.text").expect(".retrace.text");
    assert_eq!(rtext.address(), placement.text_vaddr);
    assert_eq!(rtext.data().expect("text"), &text[..]);
    assert_eq!(
        section_bytes(&out, ".fini"),
        section_bytes(&parsed, ".fini")
    );
    assert_eq!(
        section_bytes(&out, ".debug_info"),
        section_bytes(&parsed, ".debug_info")
    );
    assert_eq!(
        section_bytes(&out, ".debug_line"),
        section_bytes(&parsed, ".debug_line")
    );
    assert_eq!(out.symbols().count(), parsed.symbols().count());
    assert_eq!(symbol_addr(&out, "opcode_targets.0"), table);
    assert_eq!(
        out.dynamic_symbols().count(),
        parsed.dynamic_symbols().count()
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let libdir = install(tmp.path(), &output);
    let lib = libdir.join("libpython3.12.so.1.0");

    // readelf: the new PT_LOADs with their permissions, kept PT_GNU_STACK/RELRO, dynamic edits.
    let phdrs = tool("readelf", &["-lW"], &lib);
    let load_with = |vaddr: u64, flags: &str| {
        phdrs.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"LOAD")
                && u64::from_str_radix(f[2].trim_start_matches("0x"), 16) == Ok(vaddr)
                && l.contains(flags)
        })
    };
    assert!(
        load_with(placement.data_vaddr, " RW  "),
        "no RW LOAD at data:\n{phdrs}"
    );
    assert!(
        load_with(placement.text_vaddr, " R E "),
        "no R E LOAD at text:\n{phdrs}"
    );
    assert!(phdrs.contains("GNU_STACK"), "{phdrs}");
    assert!(phdrs.contains("GNU_RELRO"), "{phdrs}");
    assert!(!phdrs.contains(" RWE "), "W^X violated:\n{phdrs}");
    let out_dynamic = out.section_by_name(".dynamic").expect(".dynamic");
    let pt_dynamic = phdrs
        .lines()
        .find(|l| l.trim_start().starts_with("DYNAMIC"))
        .expect("PT_DYNAMIC");
    let expect = format!(
        "{:#018x} {:#018x} {:#08x} {:#08x}",
        out_dynamic.address(),
        out_dynamic.address(),
        out_dynamic.size(),
        out_dynamic.size()
    );
    assert!(
        pt_dynamic.contains(&expect),
        "PT_DYNAMIC {pt_dynamic} != .dynamic {expect}"
    );
    let dynamic = tool("readelf", &["-dW"], &lib);
    assert!(
        dynamic.contains("Shared library: [libutil.so.1]"),
        "{dynamic}"
    );
    assert!(dynamic.contains("Library runpath: [$ORIGIN]"), "{dynamic}");
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(
        needed.last().is_some_and(|l| l.contains("libutil.so.1")),
        "{dynamic}"
    );
    let sections = tool("readelf", &["-SW"], &lib);
    assert!(sections.contains(".retrace.data") && sections.contains(".retrace.text"));
    // gdb still reads the line table and the DWARF types.
    let gdb = tool(
        "gdb",
        &[
            "-batch",
            "-nx",
            "-ex",
            "info line PyList_Append",
            "-ex",
            "ptype struct _ts",
        ],
        &lib,
    );
    let append = symbol_addr(&parsed, "PyList_Append");
    assert!(
        gdb.contains(&format!("starts at address {append:#x} <PyList_Append>")),
        "gdb lost the line table: {gdb}"
    );
    assert!(
        gdb.contains("PyInterpreterState *interp;"),
        "gdb lost DWARF types: {gdb}"
    );

    // The loader accepts it, honours DT_NEEDED, and the interpreter works.
    let stdout = run_python(&interp, &libdir, MAPS_SCRIPT);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("3.12"), "{stdout}");
    assert!(Path::new(lines[1]).starts_with(tmp.path()), "{stdout}");
    assert_eq!(lines[2], "LIBUTIL");
    assert_eq!(lines[3], "332833500 6765 ['a', 'b']");
}

#[test]
fn grown_dynamic_section_is_moved_and_still_loads() {
    let interp = interp_312();
    let input = std::fs::read(&interp.lib).expect("read libpython");
    let mut rw = ElfRewrite::read(&input).expect("read");
    // More entries than the .dynamic slack (4 spare slots in 3.12.1).
    for lib in [
        "libutil.so.1",
        "libdl.so.2",
        "librt.so.1",
        "libpthread.so.0",
        "libanl.so.1",
        "libresolv.so.2",
    ] {
        rw.add_needed(lib).expect("add_needed");
    }
    rw.set_runpath("$ORIGIN/../lib").expect("set_runpath");
    let placement = rw
        .place_new_sections(".retrace.data", 64, ".retrace.text")
        .expect("place");
    rw.set_text(vec![0xc3]).expect("set_text");
    let (output, report) = rw.finish_with_report().expect("finish");
    let moved: Vec<&str> = report.moved.iter().map(|m| m.name.as_str()).collect();
    assert!(moved.contains(&".dynamic"), "moved only {moved:?}");
    let out = object::File::parse(&*output).expect("parse output");
    let dynamic = out.section_by_name(".dynamic").expect(".dynamic");
    assert!(dynamic.address() > placement.text_vaddr);
    let dyn_sym = out
        .symbols()
        .find(|s| s.name() == Ok("_DYNAMIC"))
        .expect("_DYNAMIC");
    assert_eq!(dyn_sym.address(), dynamic.address());

    let tmp = tempfile::tempdir().expect("tempdir");
    let libdir = install(tmp.path(), &output);
    let phdrs = tool("readelf", &["-lW"], &libdir.join("libpython3.12.so.1.0"));
    let pt_dynamic = phdrs
        .lines()
        .find(|l| l.trim_start().starts_with("DYNAMIC"))
        .expect("PT_DYNAMIC");
    assert!(
        pt_dynamic.contains(&format!("{:#018x}", dynamic.address())),
        "PT_DYNAMIC does not follow .dynamic: {pt_dynamic}"
    );
    let stdout = run_python(&interp, &libdir, MAPS_SCRIPT);
    assert!(stdout.contains("LIBUTIL"), "{stdout}");
    assert!(stdout.contains("332833500 6765"), "{stdout}");
}

#[test]
fn errors_are_reported() {
    let interp = interp_312();
    let input = std::fs::read(&interp.lib).expect("read libpython");
    let parsed = object::File::parse(&*input).expect("parse input");
    let table = symbol_addr(&parsed, "opcode_targets.0");
    let text = parsed.section_by_name(".text").expect(".text");

    let mut rw = ElfRewrite::read(&input).expect("read");
    assert!(matches!(
        rw.redirect_relative(table + 4, 0x1000),
        Err(EmitError::RelocationNotFound { slot }) if slot == table + 4
    ));
    assert!(matches!(
        rw.redirect_relative(table, u64::MAX),
        Err(EmitError::AddendTooLarge { .. })
    ));
    assert!(matches!(
        rw.patch(0xdead_0000_0000, &[0x90]),
        Err(EmitError::PatchOutsideSection { .. })
    ));
    // Straddling the end of .text.
    assert!(matches!(
        rw.patch(text.address() + text.size() - 2, &[0x90; 4]),
        Err(EmitError::PatchOutsideSection { .. })
    ));
    // .bss is NOBITS, not patchable.
    let bss = parsed.section_by_name(".bss").expect(".bss").address();
    assert!(matches!(
        rw.patch(bss, &[1]),
        Err(EmitError::PatchOutsideSection { .. })
    ));
    assert!(matches!(
        rw.patch(text.address(), &[]),
        Err(EmitError::EmptyPatch { .. })
    ));
    assert!(matches!(
        rw.set_text(vec![0xc3]),
        Err(EmitError::NotPlaced(_))
    ));
    assert!(matches!(
        rw.add_needed(""),
        Err(EmitError::InvalidString { .. })
    ));
    assert!(matches!(
        rw.place_new_sections(".text", 16, ".retrace.text"),
        Err(EmitError::SectionNameTaken(_))
    ));
    assert!(matches!(
        rw.place_new_sections(".retrace.data", 0, ".retrace.text"),
        Err(EmitError::EmptyData)
    ));
    rw.place_new_sections(".retrace.data", 16, ".retrace.text")
        .expect("first placement");
    assert!(matches!(
        rw.place_new_sections(".retrace.data", 16, ".retrace.text"),
        Err(EmitError::AlreadyPlaced)
    ));
    assert!(matches!(
        rw.set_data(vec![0; 15]),
        Err(EmitError::DataSizeMismatch {
            expected: 16,
            got: 15
        })
    ));
    // Finishing without text is refused.
    assert!(matches!(rw.finish(), Err(EmitError::TextNotSet)));

    // A redirect whose target is never mapped is caught at layout time.
    let mut rw = ElfRewrite::read(&input).expect("read");
    let placement = rw
        .place_new_sections(".retrace.data", 16, ".retrace.text")
        .expect("place");
    rw.set_text(vec![0xc3; 16]).expect("set_text");
    rw.redirect_relative(table, placement.text_vaddr + 0x100_0000)
        .expect("redirect");
    assert!(matches!(
        rw.finish(),
        Err(EmitError::AddendOutsideImage { slot, .. }) if slot == table
    ));

    // Not an ELF shared object.
    assert!(matches!(
        ElfRewrite::read(b"not an elf file"),
        Err(EmitError::Parse(_))
    ));
    let exe = std::fs::read("/proc/self/exe").expect("read test binary");
    if let Err(e) = ElfRewrite::read(&exe) {
        panic!("a PIE executable is ET_DYN x86-64 and must be accepted: {e}");
    }
}

#[test]
fn read_and_finish_time() {
    let interp = interp_312();
    let input = std::fs::read(&interp.lib).expect("read libpython");
    let t0 = Instant::now();
    let mut rw = ElfRewrite::read(&input).expect("read");
    rw.add_needed("libretrace_rt.so").expect("add_needed");
    let placement = rw
        .place_new_sections(".retrace.data", 1 << 16, ".retrace.text")
        .expect("place");
    rw.set_text(vec![0xc3; 1 << 20]).expect("set_text");
    let parsed = object::File::parse(&*input).expect("parse input");
    let table = symbol_addr(&parsed, "opcode_targets.0");
    for k in 0..256u64 {
        rw.redirect_relative(table + 8 * k, placement.text_vaddr + 16 * k)
            .expect("redirect");
    }
    let out = rw.finish().expect("finish");
    let elapsed = t0.elapsed();
    eprintln!(
        "read + 256 redirects + 1 MiB text + finish: {elapsed:?} for {} -> {} bytes",
        input.len(),
        out.len()
    );
    // Generous bound so that unoptimised builds pass; release is measured in the report.
    assert!(
        elapsed.as_secs_f64() < 10.0,
        "emission too slow: {elapsed:?}"
    );
}
