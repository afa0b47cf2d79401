//! Identity hashes through the function detours (SEMANTICS §10), under the
//! instrumented 3.12 interpreter: `_Py_HashPointer` memoises, `_Py_Dealloc`
//! forgets, direct deallocations from the eval loop do not (errata 1), the
//! values are the location hash of the first hashing boundary (raw in the
//! vanilla interpreter), and CPython's own hash/dict/set/weakref/gc tests
//! pass with the detours active.

use retrace_tests::{instrumented_312, run, run_ok, vanilla_python};

/// `raw(p)` in Python: `p` rotated right by 4 as a signed 64-bit value, −1 → −2.
const RAW: &str = r#"
def raw(p):
    r = ((p >> 4) | (p << 60)) & (2**64 - 1)
    if r >= 2**63:
        r -= 2**64
    return -2 if r == -1 else r
"#;

fn script(body: &str) -> String {
    format!("{RAW}\n{body}")
}

#[test]
fn hash_pointer_memoises_and_dealloc_forgets() {
    let inst = instrumented_312();
    let code = script(
        r#"
import _retrace
base = _retrace._identity_map_len()
objs = [object() for _ in range(1000)]
first = [hash(o) for o in objs]
after_hash = _retrace._identity_map_len()
assert after_hash >= base + 1000, (base, after_hash)
# Same value for the same live object, and it is memoised (the map does not grow).
assert [hash(o) for o in objs] == first
assert _retrace._identity_map_len() == after_hash
# list_dealloc frees the items through _Py_Dealloc: every address is forgotten.
del objs
after_free = _retrace._identity_map_len()
assert after_free <= after_hash - 1000, (after_hash, after_free)
# Re-allocated objects get a fresh entry (the map grows again).
again = [object() for _ in range(1000)]
[hash(o) for o in again]
assert _retrace._identity_map_len() >= after_free + 1000
print("ok", base, after_hash, after_free)
"#,
    );
    let out = run_ok(&inst.launcher, &["-c", &code], &[], None);
    assert!(out.starts_with("ok "), "{out}");
}

#[test]
fn eval_loop_frees_do_not_forget() {
    // Errata 1: on 3.12 the eval loop calls tp_dealloc directly for `del` of a
    // local, so the memoised hash stays; a dict deletion frees through _Py_Dealloc.
    let inst = instrumented_312();
    let code = r#"
import _retrace
def local():
    o = object()
    hash(o)
    n = _retrace._identity_map_len()
    del o
    return n, _retrace._identity_map_len()
n1, n2 = local()
assert n2 == n1, (n1, n2)
d = {"o": object()}
hash(d["o"])
n3 = _retrace._identity_map_len()
del d["o"]
assert _retrace._identity_map_len() == n3 - 1
print("ok")
"#;
    let out = run_ok(&inst.launcher, &["-c", code], &[], None);
    assert_eq!(out.trim(), "ok");
}

#[test]
fn hashes_are_location_derived_and_raw_in_vanilla() {
    let inst = instrumented_312();
    // Vanilla: the raw pointer hash. Instrumented (SEMANTICS §10): the
    // location hash of the boundary that first hashed the object; `_retrace.hash`
    // and `hash(o)` called by `map` from one instruction see the same boundary.
    let vanilla_code = script(
        r#"
import sys
def f(): pass
class C: pass
objs = [object(), f, C, C(), sys, float("nan")]
for o in objs:
    assert hash(o) == raw(id(o)), (o, hash(o), raw(id(o)))
print("ok", len(objs))
"#,
    );
    let vanilla = vanilla_python(&inst.install, &inst.series);
    let out = run_ok(&vanilla, &["-c", &vanilla_code], &[], None);
    assert_eq!(out.trim(), "ok 6");
    let code = script(
        r#"
import _retrace, functools, operator, sys
def signed(v):
    v = v - 2**64 if v >= 2**63 else v
    return -2 if v == -1 else v
def f(): pass
class C: pass
objs = [object(), f, C, C(), float("nan")]
for o in objs:
    loc, h = list(map(operator.call, [_retrace.hash, functools.partial(hash, o)]))
    assert h == signed(loc), (o, h, loc)
    assert h != raw(id(o)), o
    assert hash(o) == h
print("ok", len(objs))
"#,
    );
    let out = run_ok(&inst.launcher, &["-c", &code], &[], None);
    assert_eq!(out.trim(), "ok 5");
}

#[test]
fn cpython_hash_dict_set_weakref_gc_tests_pass() {
    let inst = instrumented_312();
    let out = run(
        &inst.launcher,
        &[
            "-m",
            "test",
            "-j",
            "2",
            "test_hash",
            "test_dict",
            "test_set",
            "test_weakref",
            "test_gc",
        ],
        &[],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Result: SUCCESS"),
        "CPython tests failed under the instrumented interpreter ({}):\n{}\n{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
}
