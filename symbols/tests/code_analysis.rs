//! End-to-end tests of the machine-code analysis (`symbols::code`) on real
//! pyenv libpython builds, plus unit tests of liveness and hook points on
//! hand-assembled code.
//!
//! Inputs are built here directly from the ELF symbol table, `.rela.dyn` and
//! DWARF labels (independently of the ELF/DWARF half of the crate), so these
//! tests exercise only the machine-code half.

use object::read::elf::ElfFile64;
use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use symbols::code::cfg::Cfg;
use symbols::code::decode::Listing;
use symbols::code::image::{CodeImage, CodeSection};
use symbols::code::liveness::Liveness;
use symbols::code::{analyze_code, CodeFacts, CodeInputs, EvalCode};
use symbols::model::*;
use symbols::versions::{self, VersionProfile};

// ---------------------------------------------------------------- discovery

fn pyenv_root() -> PathBuf {
    std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"))
}

/// `$(pyenv root)/versions/<series>*/lib/libpython<series>.so.1.0`, newest first.
fn find_lib(series: &str) -> Option<PathBuf> {
    let dir = pyenv_root().join("versions");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n == series || n.starts_with(&format!("{series}."))
        })
        .map(|e| {
            e.path()
                .join("lib")
                .join(format!("libpython{series}.so.1.0"))
        })
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

fn require_lib(series: &str) -> PathBuf {
    find_lib(series).unwrap_or_else(|| {
        panic!(
            "no libpython{series}.so.1.0 under {}/versions/{series}*/lib: install CPython {series} with \
             `PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install {series}` (built with -g)",
            pyenv_root().display()
        )
    })
}

// ---------------------------------------------------------------- inputs

/// Struct offsets per series (DESIGN-NOTES §5), the test's stand-in for the DWARF half.
fn offsets(series: (u8, u8)) -> StructOffsets {
    let mut s = StructOffsets::default();
    let mut put = |st: &str, fields: &[(&str, u64)]| {
        let l = s.structs.entry(st.to_string()).or_default();
        for (f, o) in fields {
            l.fields.insert(f.to_string(), *o);
        }
    };
    let instr = if series == (3, 13) {
        "instr_ptr"
    } else {
        "prev_instr"
    };
    put(
        "_PyInterpreterFrame",
        &[(instr, 0x38), ("stacktop", 0x40), ("localsplus", 0x48)],
    );
    match series {
        (3, 11) => {
            put("_PyCFrame", &[("current_frame", 0x8)]);
            // Not in DESIGN-NOTES §5; read from the 3.11.7 disassembly (`mov %edx,0x20(%r12)`).
            put("_ts", &[("cframe", 0x38), ("recursion_remaining", 0x20)]);
        }
        (3, 12) => {
            put("_PyCFrame", &[("current_frame", 0x0)]);
            put("_ts", &[("cframe", 0x38), ("py_recursion_remaining", 0x1c)]);
        }
        _ => put(
            "_ts",
            &[("current_frame", 0x48), ("py_recursion_remaining", 0x2c)],
        ),
    }
    s
}

struct Lib {
    data: Vec<u8>,
    series: (u8, u8),
}

struct Inputs {
    eval: EvalFunction,
    table: OpcodeTable,
    labels: Vec<LabelSite>,
    functions: Vec<FunctionSite>,
    offsets: StructOffsets,
    profile: &'static VersionProfile,
}

fn load(series: &str) -> Lib {
    let path = require_lib(series);
    let data = std::fs::read(&path).expect("read libpython");
    let mut it = series.split('.').map(|p| p.parse::<u8>().expect("series"));
    let series = (it.next().expect("major"), it.next().expect("minor"));
    Lib { data, series }
}

fn symbol_map(file: &ElfFile64<'_>) -> HashMap<String, (u64, u64)> {
    file.symbols()
        .filter_map(|s| Some((s.name().ok()?.to_string(), (s.address(), s.size()))))
        .collect()
}

/// DWARF labels of the eval function (names from the version profile).
fn dwarf_labels(
    file: &ElfFile64<'_>,
    profile: &VersionProfile,
    eval: &EvalFunction,
) -> Vec<LabelSite> {
    let load = |id: gimli::SectionId| -> Result<gimli::EndianSlice<'_, gimli::LittleEndian>, gimli::Error> {
        let data = file
            .section_by_name(id.name())
            .and_then(|s| s.data().ok())
            .unwrap_or(&[]);
        Ok(gimli::EndianSlice::new(data, gimli::LittleEndian))
    };
    let dwarf = gimli::Dwarf::load(load).expect("dwarf");
    let mut out = Vec::new();
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let is_ceval = unit
            .name
            .is_some_and(|n| String::from_utf8_lossy(n.slice()).ends_with("ceval.c"));
        if !is_ceval {
            continue;
        }
        let mut cursor = unit.entries();
        while let Ok(Some(entry)) = cursor.next_dfs() {
            if entry.tag() != gimli::DW_TAG_label {
                continue;
            }
            let (Some(name), Some(low)) = (
                entry.attr_value(gimli::DW_AT_name),
                entry.attr_value(gimli::DW_AT_low_pc),
            ) else {
                continue;
            };
            let (Ok(name), Ok(Some(addr))) = (
                dwarf.attr_string(&unit, name),
                dwarf.attr_address(&unit, low),
            ) else {
                continue;
            };
            let name = String::from_utf8_lossy(name.slice()).to_string();
            if let Some((role, _)) = profile.labels.iter().find(|(_, n)| *n == name) {
                if eval.contains(addr) && !out.iter().any(|l: &LabelSite| l.role == *role) {
                    out.push(LabelSite {
                        role: *role,
                        name,
                        address: addr,
                    });
                }
            }
        }
    }
    out
}

fn build_inputs(lib: &Lib, file: &ElfFile64<'_>, with_labels: bool) -> Inputs {
    let profile = versions::PROFILES
        .iter()
        .copied()
        .find(|p| p.series == lib.series)
        .expect("profile");
    let syms = symbol_map(file);
    let (ea, es) = syms[profile.eval_function];
    let mut ranges = vec![AddrRange {
        start: ea,
        end: ea + es,
    }];
    if let Some((ca, cs)) = syms.get(&format!("{}.cold", profile.eval_function)) {
        ranges.push(AddrRange {
            start: *ca,
            end: ca + cs,
        });
    }
    let eval = EvalFunction {
        symbol: profile.eval_function.to_string(),
        ranges,
    };
    let (tname, (taddr, _)) = syms
        .iter()
        .find(|(n, _)| n.starts_with(&format!("{}.", profile.table_variable)))
        .map(|(n, v)| (n.clone(), *v))
        .expect("opcode table symbol");
    let relocs: HashMap<u64, u64> = file
        .dynamic_relocations()
        .expect("dynamic relocations")
        .filter(|(_, r)| matches!(r.flags(), RelocationFlags::Elf { r_type } if r_type == object::elf::R_X86_64_RELATIVE))
        .map(|(off, r)| (off, r.addend() as u64))
        .collect();
    let targets: Vec<u64> = (0..256u64).map(|i| relocs[&(taddr + 8 * i)]).collect();
    let mut freq: BTreeMap<u64, usize> = BTreeMap::new();
    for t in &targets {
        *freq.entry(*t).or_default() += 1;
    }
    let unknown = freq.iter().max_by_key(|(_, c)| **c).map(|(t, _)| *t);
    let cold = eval.ranges.get(1).copied();
    let never = match lib.series {
        (3, 11) => Some((255u8, TableEntryKind::DoTracing)),
        _ => Some((254u8, TableEntryKind::InstrumentedLine)),
    };
    let entries = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let opcode = i as u8;
            let kind = if opcode == 0 {
                TableEntryKind::Cache
            } else if cold.is_some_and(|c| c.contains(*t)) {
                TableEntryKind::Reserved
            } else if Some(*t) == unknown {
                TableEntryKind::Unknown
            } else if never.is_some_and(|(o, _)| o == opcode) {
                never.map(|(_, k)| k).unwrap_or(TableEntryKind::Real)
            } else {
                TableEntryKind::Real
            };
            TableEntry {
                opcode,
                slot: taddr + 8 * i as u64,
                target: *t,
                labels: vec![],
                name: format!("op{i}"),
                kind,
            }
        })
        .collect();
    let table = OpcodeTable {
        symbol: tname,
        address: taddr,
        entries,
    };
    let functions = profile
        .functions
        .iter()
        .filter_map(|(role, name)| {
            syms.get(*name).map(|(a, s)| FunctionSite {
                role: *role,
                name: name.to_string(),
                address: *a,
                size: *s,
            })
        })
        .collect();
    let labels = if with_labels {
        dwarf_labels(file, profile, &eval)
    } else {
        vec![]
    };
    Inputs {
        eval,
        table,
        labels,
        functions,
        offsets: offsets(lib.series),
        profile,
    }
}

fn run(
    lib: &Lib,
    with_labels: bool,
) -> (
    Result<CodeFacts, symbols::code::CodeError>,
    std::time::Duration,
) {
    let file = ElfFile64::<object::Endianness>::parse(&lib.data[..]).expect("elf");
    let inputs = build_inputs(lib, &file, with_labels);
    let image = CodeImage::from_elf(&file);
    let line_at = |_: u64| None;
    let t = std::time::Instant::now();
    let facts = analyze_code(&CodeInputs {
        image: &image,
        profile: inputs.profile,
        eval: &inputs.eval,
        table: &inputs.table,
        labels: &inputs.labels,
        functions: &inputs.functions,
        offsets: &inputs.offsets,
        line_at: &line_at,
    });
    (facts, t.elapsed())
}

// ---------------------------------------------------------------- 3.12

#[test]
fn py312_dispatch_layout_stores_and_hooks() {
    let lib = load("3.12");
    let (facts, took) = run(&lib, true);
    let facts = facts.unwrap_or_else(|e| panic!("3.12 analysis failed: {e}"));
    eprintln!("3.12 analysis took {took:?}");
    for e in &facts.registers.evidence {
        eprintln!("evidence: {e}");
    }
    assert_eq!(facts.dispatch_sites.len(), 191);
    assert!(facts.dispatch_sites.iter().all(|s| s.base == Gpr::Rdi));
    let with_gap = facts
        .dispatch_sites
        .iter()
        .filter(|s| s.jump - s.load > 4)
        .count();
    assert_eq!(
        with_gap, 6,
        "sites with an instruction between load and jump"
    );

    let r = &facts.registers;
    assert_eq!(r.frame, Location::Reg(Gpr::Rbx));
    assert_eq!(r.next_instr, Location::Reg(Gpr::R10));
    assert_eq!(r.stack_pointer, Location::Reg(Gpr::R15));
    assert_eq!(r.oparg, Location::Reg(Gpr::R14));
    assert_eq!(r.opcode, Location::Reg(Gpr::R13));
    assert_eq!(r.tstate, Location::Stack(8));
    assert!(!r.flags_live);
    assert!(!r.live_in_any.contains(&Gpr::Rax));
    for g in [Gpr::Rbx, Gpr::R10, Gpr::R15] {
        assert!(r.live_in_any.contains(&g));
        assert!(!r.dead_everywhere.contains(&g));
    }

    let stores: BTreeSet<u64> = facts
        .current_frame_stores
        .iter()
        .map(|s| s.address)
        .collect();
    let expected: BTreeSet<u64> = [
        0x10c43e, 0x10c8a4, 0x10cc58, 0x10d527, 0x1105d7, 0x110ac2, 0x112c52, 0x10e163, 0x115117,
        0x1139d1, 0x115413, 0x11420e,
    ]
    .into_iter()
    .collect();
    assert_eq!(stores, expected, "GPR stores to cframe.current_frame");
    assert!(facts
        .current_frame_stores
        .iter()
        .all(|s| s.len == 8 && s.destination == "[rsp+0x80]"));
    let store_hooks: BTreeSet<u64> = facts
        .hooks
        .iter()
        .filter(|h| h.kind == HookKind::CurrentFrameStore)
        .map(|h| h.point.address)
        .collect();
    let mut all13 = expected.clone();
    all13.insert(0x10be66); // the movaps entry push
    assert_eq!(store_hooks, all13);

    let hook = |k: HookKind| {
        facts
            .hooks
            .iter()
            .find(|h| h.kind == k)
            .unwrap_or_else(|| panic!("no {k:?} hook"))
    };
    assert_eq!(hook(HookKind::StartFrame).point.address, 0x10be99);
    assert_eq!(hook(HookKind::StartFrame).point.bytes.len(), 7);
    assert_eq!(hook(HookKind::ThrowEntry).point.address, 0x10bee6);
    assert_eq!(hook(HookKind::EvalBreaker).point.address, 0x10c98d);
    assert_eq!(hook(HookKind::EvalEntry).point.address, 0x10bdc0);
    let fn_hooks: Vec<&HookSite> = facts
        .hooks
        .iter()
        .filter(|h| h.kind == HookKind::FunctionEntry)
        .collect();
    assert_eq!(fn_hooks.len(), 3, "ClearAndPop, PopFrame, Copy");
    let file = ElfFile64::<object::Endianness>::parse(&lib.data[..]).expect("elf");
    let image = CodeImage::from_elf(&file);
    for h in &facts.hooks {
        assert!(h.point.bytes.len() >= 5, "{h:?}");
        assert_eq!(
            image.bytes(h.point.address, h.point.end()),
            Some(&h.point.bytes[..])
        );
    }
    let labels: BTreeMap<LabelRole, u64> = facts
        .extra_labels
        .iter()
        .map(|l| (l.role, l.address))
        .collect();
    assert_eq!(labels.get(&LabelRole::StartFrameChecked), Some(&0x10be99));
    assert_eq!(labels.get(&LabelRole::ThrowEntry), Some(&0x10bee6));
    // `mov 0x38(%rbx),%rbp; jmp resume_with_error` right after the call to
    // _PyEvalFrameClearAndPop: the stubs' raise entry.
    assert_eq!(labels.get(&LabelRole::RaiseEntry), Some(&0x10c45f));
}

#[test]
fn py312_without_labels_has_no_raise_entry() {
    // Without the DWARF `resume_with_error` label there is nothing to prove
    // the entry against: no raise entry, and the evidence says why.
    let lib = load("3.12");
    let (facts, _) = run(&lib, false);
    let facts = facts.unwrap_or_else(|e| panic!("3.12 analysis without labels failed: {e}"));
    assert!(facts
        .extra_labels
        .iter()
        .all(|l| l.role != LabelRole::RaiseEntry));
    assert!(facts
        .registers
        .evidence
        .iter()
        .any(|e| e.contains("no raise entry") || e.contains("no resume_with_error")));
}

#[test]
fn py312_without_labels_derives_the_same_layout() {
    let lib = load("3.12");
    let (facts, _) = run(&lib, false);
    let facts = facts.unwrap_or_else(|e| panic!("3.12 analysis without labels failed: {e}"));
    assert_eq!(facts.registers.frame, Location::Reg(Gpr::Rbx));
    assert_eq!(facts.registers.next_instr, Location::Reg(Gpr::R10));
    assert_eq!(facts.registers.stack_pointer, Location::Reg(Gpr::R15));
    assert!(facts.hooks.iter().all(|h| h.kind != HookKind::EvalBreaker));
}

#[test]
fn other_versions_report() {
    for series in ["3.11", "3.13"] {
        let lib = load(series);
        let (facts, took) = run(&lib, true);
        match facts {
            Ok(f) => {
                eprintln!(
                    "{series}: {} dispatch sites, {} stores, {} hooks in {took:?}",
                    f.dispatch_sites.len(),
                    f.current_frame_stores.len(),
                    f.hooks.len()
                );
                for e in &f.registers.evidence {
                    eprintln!("{series} evidence: {e}");
                }
            }
            Err(e) => {
                eprintln!("{series}: analysis error: {e}");
                // The dispatch proof itself must hold on every version (DESIGN-NOTES §1).
                use symbols::code::CodeError as E;
                assert!(
                    !matches!(
                        e,
                        E::NotTableDispatch { .. }
                            | E::BranchToTarget { .. }
                            | E::FallThroughToTarget { .. }
                    ),
                    "{series}: {e}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- property: hook points

fn eval_code_312() -> &'static (Vec<u8>, Inputs) {
    static CELL: std::sync::OnceLock<(Vec<u8>, Inputs)> = std::sync::OnceLock::new();
    CELL.get_or_init(|| {
        let lib = load("3.12");
        let file = ElfFile64::<object::Endianness>::parse(&lib.data[..]).expect("elf");
        let inputs = build_inputs(&lib, &file, false);
        (lib.data.clone(), inputs)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn hook_point_never_covers_a_jump_target(offset in 0u64..0xc82d) {
        let (data, inputs) = eval_code_312();
        let file = ElfFile64::<object::Endianness>::parse(&data[..]).expect("elf");
        let image = CodeImage::from_elf(&file);
        let code = EvalCode::build(&image, &inputs.eval, &inputs.table).expect("eval code");
        // Independent target set: every direct branch target plus every table target.
        let mut targets: BTreeSet<u64> = inputs.table.entries.iter().map(|e| e.target).collect();
        for i in &code.listing.insns {
            if matches!(i.flow_control(), iced_x86::FlowControl::ConditionalBranch | iced_x86::FlowControl::UnconditionalBranch) {
                targets.insert(i.near_branch_target());
            }
        }
        let addr = inputs.eval.ranges[0].start + offset;
        if let Ok(p) = code.hook_point(addr) {
            prop_assert!(p.bytes.len() >= 5);
            prop_assert!(targets.range(p.address + 1..p.end()).next().is_none(), "{:#x}", p.address);
            prop_assert_eq!(image.bytes(p.address, p.end()), Some(&p.bytes[..]));
        }
    }
}

// ---------------------------------------------------------------- liveness on hand-made code

/// Builds a one-range listing and CFG from raw bytes at 0x1000.
fn small(bytes: &'static [u8], table: &BTreeSet<u64>) -> (Listing, Cfg, Liveness) {
    let image = Box::leak(Box::new(CodeImage::from_sections(
        vec![CodeSection {
            name: ".text".into(),
            vaddr: 0x1000,
            bytes,
        }],
        BTreeMap::new(),
    )));
    let range = AddrRange {
        start: 0x1000,
        end: 0x1000 + bytes.len() as u64,
    };
    let listing = Listing::decode(image, &[range]).expect("decode");
    let cfg = Cfg::build(image, &listing, table);
    let lv = Liveness::run(&listing, &cfg, false);
    (listing, cfg, lv)
}

fn live_at(l: &Listing, c: &Cfg, lv: &Liveness, addr: u64) -> Vec<Gpr> {
    lv.live_before(c, l.index_of(addr).expect("boundary"))
        .gprs()
}

#[test]
fn liveness_32bit_write_kills_8bit_write_does_not() {
    // 1000: mov eax, ecx        (89 c8)      full def of rax
    // 1002: mov bl, dl          (88 d3)      partial: rbx stays live
    // 1004: add rax, rbx        (48 01 d8)
    // 1007: ret                 (c3)
    static CODE: [u8; 8] = [0x89, 0xc8, 0x88, 0xd3, 0x48, 0x01, 0xd8, 0xc3];
    let (l, c, lv) = small(&CODE, &BTreeSet::new());
    let live = live_at(&l, &c, &lv, 0x1000);
    assert!(live.contains(&Gpr::Rcx));
    assert!(live.contains(&Gpr::Rdx));
    assert!(live.contains(&Gpr::Rbx), "8-bit write is not a kill");
    assert!(!live.contains(&Gpr::Rax), "32-bit write kills rax");
}

#[test]
fn liveness_xor_idiom_and_calls() {
    // 1000: xor esi, esi        (31 f6)      def only
    // 1002: call 0x1002+5+0     (e8 00 00 00 00) -> uses rdi,rsi,rdx,rcx,r8,r9; kills caller-saved
    // 1007: mov rax, r12        (4c 89 e0)
    // 100a: ret                 (c3)
    static CODE: [u8; 11] = [0x31, 0xf6, 0xe8, 0, 0, 0, 0, 0x4c, 0x89, 0xe0, 0xc3];
    let (l, c, lv) = small(&CODE, &BTreeSet::new());
    let at_call = live_at(&l, &c, &lv, 0x1002);
    assert!(
        at_call.contains(&Gpr::Rsi) && at_call.contains(&Gpr::Rdi) && at_call.contains(&Gpr::R12)
    );
    assert!(!at_call.contains(&Gpr::Rax) && !at_call.contains(&Gpr::R10));
    let entry = live_at(&l, &c, &lv, 0x1000);
    assert!(!entry.contains(&Gpr::Rsi), "xor esi,esi only defines rsi");
    assert!(
        entry.contains(&Gpr::Rbx),
        "callee-saved registers are used by ret"
    );
    assert!(!lv.live_before(&c, 0).has_flags());
}

#[test]
fn liveness_flags_and_table_dispatch_successors() {
    // 1000: cmp rax, rbx        (48 39 d8)
    // 1003: jmp [rdi+rcx*8]     (ff 24 cf)   dispatch: successors = table targets
    // 1006: jne 0x100a          (75 02)      table target A: reads flags
    // 1008: mov r11, r9         (4d 89 cb)   (falls to B: not allowed for real code, fine here)
    // 100b: ret
    static CODE: [u8; 12] = [
        0x48, 0x39, 0xd8, 0xff, 0x24, 0xcf, 0x75, 0x03, 0x4d, 0x89, 0xcb, 0xc3,
    ];
    let table: BTreeSet<u64> = [0x1006].into_iter().collect();
    let (l, c, lv) = small(&CODE, &table);
    assert!(lv
        .live_before(&c, l.index_of(0x1006).expect("a"))
        .has_flags());
    assert!(
        lv.live_before(&c, l.index_of(0x1003).expect("jmp"))
            .has_flags(),
        "flags flow back over the dispatch edge"
    );
    assert!(
        !lv.live_before(&c, 0).has_flags(),
        "cmp defines all status flags"
    );
    let at_jump = live_at(&l, &c, &lv, 0x1003);
    assert!(
        at_jump.contains(&Gpr::R9),
        "live at the target, so live before the dispatch"
    );
}
