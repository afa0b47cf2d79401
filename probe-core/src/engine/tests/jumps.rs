//! DESIGN-NOTES §4 inference rules on the concrete CPython 3.12 cases.
//!
//! The opcode numbers and cache counts below are CPython 3.12's; the last
//! test checks them against a discovered 3.12 interpreter's `dis`/`opcode`
//! modules so they cannot drift silently.

use super::sim::{Sim, T1};
use crate::engine::jumps::{infer_dispatch, start_frame_fix, BiasSite, OpcodeTables, Rule};

/// `(name, opcode, base opcode, caches of the base)` for 3.12.
const OPS_312: &[(&str, u8, u8, u8)] = &[
    ("CACHE", 0, 0, 0),
    ("CALL", 171, 171, 3),
    ("CALL_PY_EXACT_ARGS", 23, 171, 3),
    ("CALL_PY_WITH_DEFAULTS", 24, 171, 3),
    ("CALL_NO_KW_LIST_APPEND", 43, 171, 3),
    ("CALL_FUNCTION_EX", 142, 142, 0),
    ("BINARY_SUBSCR", 25, 25, 1),
    ("BINARY_SUBSCR_GETITEM", 20, 25, 1),
    ("LOAD_ATTR", 106, 106, 9),
    ("LOAD_ATTR_PROPERTY", 77, 106, 9),
    ("LOAD_ATTR_GETATTRIBUTE_OVERRIDDEN", 72, 106, 9),
    ("FOR_ITER", 93, 93, 1),
    ("FOR_ITER_LIST", 62, 93, 1),
    ("FOR_ITER_RANGE", 64, 93, 1),
    ("FOR_ITER_GEN", 65, 93, 1),
    ("POP_JUMP_IF_FALSE", 114, 114, 0),
    ("POP_JUMP_IF_TRUE", 115, 115, 0),
    ("POP_JUMP_IF_NONE", 129, 129, 0),
    ("POP_JUMP_IF_NOT_NONE", 128, 128, 0),
    ("SEND", 123, 123, 1),
    ("SEND_GEN", 168, 123, 1),
    ("BINARY_OP", 122, 122, 1),
    ("BINARY_OP_INPLACE_ADD_UNICODE", 10, 122, 1),
    ("LOAD_FAST", 124, 124, 0),
    ("LOAD_FAST__LOAD_FAST", 88, 124, 0),
    ("LOAD_FAST__LOAD_CONST", 86, 124, 0),
    ("LOAD_CONST__LOAD_FAST", 84, 100, 0),
    ("STORE_FAST__LOAD_FAST", 154, 125, 0),
    ("STORE_FAST__STORE_FAST", 158, 125, 0),
    ("LOAD_GLOBAL", 116, 116, 4),
    ("LOAD_GLOBAL_MODULE", 112, 116, 4),
    ("JUMP_BACKWARD", 140, 140, 0),
    ("JUMP_FORWARD", 110, 110, 0),
];

const SUPERINSTRUCTIONS_312: [&str; 5] = [
    "LOAD_FAST__LOAD_FAST",
    "LOAD_FAST__LOAD_CONST",
    "LOAD_CONST__LOAD_FAST",
    "STORE_FAST__LOAD_FAST",
    "STORE_FAST__STORE_FAST",
];

fn op(name: &str) -> u8 {
    OPS_312
        .iter()
        .find(|o| o.0 == name)
        .map(|o| o.1)
        .unwrap_or_else(|| panic!("{name} not in the 3.12 table"))
}

fn tables_312() -> OpcodeTables {
    let mut caches = [0u8; 256];
    let mut deopt = [0u8; 256];
    for (i, d) in deopt.iter_mut().enumerate() {
        *d = i as u8; // unlisted opcodes are their own base with no caches
    }
    for &(_, code, base, n) in OPS_312 {
        deopt[usize::from(code)] = base;
        caches[usize::from(base)] = n;
    }
    let supers: Vec<u8> = SUPERINSTRUCTIONS_312.iter().map(|n| op(n)).collect();
    OpcodeTables::new(caches, deopt)
        .with_superinstructions(&supers)
        .with_send(op("SEND"))
}

fn rule(q: i64, n: i64, name: &str) -> (Rule, Option<BiasSite>) {
    let r = infer_dispatch(&tables_312(), q, n, op(name));
    (r.rule, r.site)
}

fn site(source: i64, dest: i64) -> Option<BiasSite> {
    Some(BiasSite { source, dest })
}

#[test]
fn r0_specialisation_redispatch_is_no_site() {
    // Adaptive `next_instr--; DISPATCH_SAME_OPARG`: the specialised opcode
    // now sits at Q and N == Q.
    assert_eq!(rule(40, 40, "LOAD_ATTR_PROPERTY"), (Rule::Redispatch, None));
    assert_eq!(rule(40, 40, "CALL"), (Rule::Redispatch, None));
}

#[test]
fn r1_and_r2_fall_throughs_are_no_site() {
    assert_eq!(rule(10, 11, "LOAD_FAST"), (Rule::Next, None));
    // Q is a cache slot after DISPATCH_INLINED: still R1.
    assert_eq!(rule(13, 14, "CACHE"), (Rule::Next, None));
    // Non-inlined CALL: +1 + 3 caches.
    assert_eq!(rule(10, 14, "CALL"), (Rule::FallThrough, None));
    assert_eq!(
        rule(10, 14, "CALL_PY_EXACT_ARGS"),
        (Rule::FallThrough, None)
    );
    assert_eq!(
        rule(10, 12, "BINARY_SUBSCR_GETITEM"),
        (Rule::FallThrough, None)
    );
    assert_eq!(
        rule(10, 20, "LOAD_ATTR_PROPERTY"),
        (Rule::FallThrough, None)
    );
    assert_eq!(
        rule(10, 15, "LOAD_GLOBAL_MODULE"),
        (Rule::FallThrough, None)
    );
    // FOR_ITER continuing: skips its cache.
    assert_eq!(rule(10, 12, "FOR_ITER_LIST"), (Rule::FallThrough, None));
    // SEND returning a value: skips its cache.
    assert_eq!(rule(10, 12, "SEND"), (Rule::FallThrough, None));
}

#[test]
fn superinstructions_fall_through_at_plus_two() {
    for name in SUPERINSTRUCTIONS_312 {
        assert_eq!(rule(10, 12, name), (Rule::FallThrough, None), "{name}");
    }
    // Not for a plain LOAD_FAST: +2 is a jump there.
    assert_eq!(rule(10, 12, "LOAD_FAST"), (Rule::Jump, site(10, 12)));
}

#[test]
fn pop_jump_if_taken_and_not_taken() {
    for name in [
        "POP_JUMP_IF_FALSE",
        "POP_JUMP_IF_TRUE",
        "POP_JUMP_IF_NONE",
        "POP_JUMP_IF_NOT_NONE",
    ] {
        assert_eq!(rule(30, 31, name), (Rule::Next, None), "{name} not taken");
        assert_eq!(
            rule(30, 38, name),
            (Rule::Jump, site(30, 38)),
            "{name} taken"
        );
    }
    assert_eq!(rule(30, 12, "JUMP_BACKWARD"), (Rule::Jump, site(30, 12)));
    assert_eq!(rule(30, 35, "JUMP_FORWARD"), (Rule::Jump, site(30, 35)));
}

#[test]
fn for_iter_exhaustion_is_a_site() {
    // FOR_ITER at 20, oparg 6: exhaustion jumps past END_FOR to 20+2+6+1.
    for name in ["FOR_ITER", "FOR_ITER_LIST", "FOR_ITER_RANGE"] {
        assert_eq!(rule(20, 29, name), (Rule::Jump, site(20, 29)), "{name}");
    }
}

#[test]
fn superinstruction_skips_of_the_specialised_forms_are_sites() {
    // BINARY_OP_INPLACE_ADD_UNICODE: JUMPBY(cache + STORE_FAST) → Q+3.
    assert_eq!(
        rule(10, 13, "BINARY_OP_INPLACE_ADD_UNICODE"),
        (Rule::Jump, site(10, 13))
    );
    // CALL_NO_KW_LIST_APPEND: JUMPBY(3 caches + POP_TOP) → Q+5.
    assert_eq!(
        rule(10, 15, "CALL_NO_KW_LIST_APPEND"),
        (Rule::Jump, site(10, 15))
    );
}

#[test]
fn send_stop_iteration_jumps_to_n_minus_one() {
    // SEND at 10, oparg 4: JUMPBY(4) then +1 → N = 10 + 2 + 4.
    assert_eq!(
        rule(10, 16, "SEND"),
        (Rule::SendStopIteration, site(10, 15))
    );
    assert_eq!(
        rule(10, 16, "SEND_GEN"),
        (Rule::SendStopIteration, site(10, 15))
    );
    // Through the engine: coord(N) = coord(Q) + 2, as in the source patch.
    let mut s = Sim::new();
    let f = s.call(T1);
    s.step(T1, 10);
    let r = infer_dispatch(&tables_312(), 10, 16, op("SEND"));
    let bias = r.site.map(|x| s.engine.bias_site(f, x.source, x.dest));
    assert_eq!(bias, Some(true));
    s.boundary(T1, 16);
    assert_eq!(s.root(T1)[0], 12);
}

#[test]
fn inlined_calls_are_fixed_at_start_frame() {
    // CALL (3 caches), BINARY_SUBSCR_GETITEM (1), LOAD_ATTR_PROPERTY (9):
    // the handler stores prev_instr = Q + caches before DISPATCH_INLINED.
    for (name, caches) in [
        ("CALL", 3),
        ("CALL_PY_EXACT_ARGS", 3),
        ("BINARY_SUBSCR_GETITEM", 1),
        ("LOAD_ATTR_PROPERTY", 9),
        ("FOR_ITER_GEN", 1),
        ("SEND_GEN", 1),
    ] {
        let tables = tables_312();
        assert_eq!(i64::from(tables.caches_of(op(name))), caches, "{name}");
        let q = 50;
        assert_eq!(
            start_frame_fix(q, q + caches),
            site(q, q + caches + 1),
            "{name}"
        );
        let mut s = Sim::new();
        let caller = s.call(T1);
        s.step(T1, q);
        let before = s.root(T1)[0];
        s.engine.start_frame_fix(T1, caller, q + caches).unwrap();
        s.call(T1);
        // During the call the caller (prev_instr = Q + caches) shows coord(Q).
        if let Some(f) = s.view.frames.get_mut(&caller) {
            f.index = q + caches;
        }
        assert_eq!(s.root(T1)[0], before, "{name}");
        s.ret(T1);
        // Return: N = Q + caches + 1 dispatched from Q' = Q + caches: R1.
        let r = infer_dispatch(&tables, q + caches, q + caches + 1, 0);
        assert_eq!(r.rule, Rule::Next);
        s.boundary(T1, q + caches + 1);
        assert_eq!(s.root(T1)[0], before + 1, "{name}");
    }
    // CALL_FUNCTION_EX: no caches, no JUMPBY: the fix is a no-op.
    assert_eq!(start_frame_fix(50, 50), None);
}

/// `$(pyenv root)/versions/3.12*/bin/python3.12`.
fn find_python312() -> std::path::PathBuf {
    let root = std::env::var("PYENV_ROOT").unwrap_or_else(|_| "/root/.pyenv".into());
    let versions = std::path::Path::new(&root).join("versions");
    let mut found: Vec<_> = std::fs::read_dir(&versions)
        .unwrap_or_else(|e| panic!("no pyenv versions at {}: {e}", versions.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("3.12"))
        .map(|e| e.path().join("bin/python3.12"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no CPython 3.12 interpreter under {}", versions.display()))
}

#[test]
fn the_312_table_matches_a_real_interpreter() {
    let python = find_python312();
    let script = r#"
import dis, opcode
for name, code in sorted(dis._all_opmap.items()):
    base = name
    for b, specs in opcode._specializations.items():
        if name in specs:
            base = b
    b = dis._all_opmap[base]
    if b < len(opcode._inline_cache_entries):
        print(name, code, b, opcode._inline_cache_entries[b])
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for &(name, code, base, caches) in OPS_312 {
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from {}", python.display()));
        assert_eq!(line, format!("{name} {code} {base} {caches}"));
    }
}
