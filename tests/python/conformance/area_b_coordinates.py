"""Conformance checklist area B, coordinates (SEMANTICS §21 items 10–23; §4, §8.1).

Items 10 and 13 are about module level: their samples are taken by this
script's module body (only when the item is selected) and checked by the
item function.
"""

import operator
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _runner  # noqa: E402

import _retrace as _r  # noqa: E402
import retrace as R  # noqa: E402
from _thread import get_ident as tid  # noqa: E402

WORD = 2**64


def well_formed(c, what="tuple", nonempty=True):
    assert isinstance(c, tuple), f"{what} is {type(c).__name__}, not a tuple: {c!r}"
    assert len(c) % 2 == 0, f"{what} has odd length {len(c)}: {c!r}"
    if nonempty:
        assert c, f"{what} is empty"
    for w in c:
        assert type(w) is int and 0 <= w < WORD, f"{what} has a non-word {w!r}: {c!r}"


def probe():
    return _r.coordinates()


# Module-level samples (items 10 and 13), taken only when the item is selected.
if _runner.selected("item_10"):
    try:
        M10 = (_r.coordinates(), _r.coordinates(tid()))
    except Exception as e:  # re-raised by the item
        M10 = e
if _runner.selected("item_13"):
    try:
        n13 = len(_r.coordinates())
        M13 = (
            n13,
            len(_r.coordinates(None, 1)),
            len(_r.coordinates(None, n13 - 1)),
            _r.coordinates(None, n13 + 1),
            len(R.coordinates(drop=1)),
        )
    except Exception as e:  # re-raised by the item
        M13 = e


def item_10_module_level_tuple():
    if isinstance(M10, Exception):
        raise M10
    a, b = M10
    well_formed(a, "module-level _r.coordinates()")
    assert isinstance(b, tuple) and len(b) == len(a), f"_r.coordinates(tid()) {b!r} vs {a!r}"
    well_formed(b, "module-level _r.coordinates(tid())")


def item_11_consecutive_samples():
    a = _r.coordinates(); b = _r.coordinates()  # noqa: E702 - the item's exact statement
    well_formed(a, "a")
    well_formed(b, "b")
    assert len(a) == len(b), (a, b)
    assert a[:-2] == b[:-2], f"prefixes differ: {a} {b}"
    assert a[-1] == b[-1] == 0, f"leaf ordinals not 0: {a} {b}"
    assert b[-2] > a[-2], f"instruction did not advance: {a} {b}"


def item_12_public_query_adds_no_frame():
    a = R.coordinates(); b = _r.coordinates()  # noqa: E702 - the item's exact statement
    well_formed(a, "R.coordinates()")
    well_formed(b, "_r.coordinates()")
    assert len(a) == len(b), f"R.coordinates() has a helper frame: {a} vs {b}"
    assert a[:-2] == b[:-2], f"prefixes differ: {a} {b}"
    assert a[-1] == b[-1] == 0, f"leaf ordinals not 0: {a} {b}"
    assert b[-2] > a[-2], f"instruction did not advance: {a} {b}"


def item_13_drop():
    if isinstance(M13, Exception):
        raise M13
    n, d1, dn1, dover, pub1 = M13
    assert n >= 2, f"module-level length {n}"
    assert d1 == n - 1, f"len(coordinates(None, 1)) = {d1}, n = {n}"
    assert dn1 == 1, f"len(coordinates(None, n-1)) = {dn1}"
    assert dover == (), f"coordinates(None, n+1) = {dover!r}"
    assert pub1 == n - 1, f"len(R.coordinates(drop=1)) = {pub1}, n = {n}"
    try:
        _r.coordinates(None, -1)
    except ValueError as e:
        assert str(e) == "coordinates drop must be non-negative", repr(e)
    else:
        raise AssertionError("coordinates(None, -1) did not raise ValueError")


def _expect(exc_type, fn, *args, message=None):
    try:
        fn(*args)
    except exc_type as e:
        if message is not None:
            assert str(e) == message, f"{fn.__name__}{args!r} raised {e!r}, expected message {message!r}"
    except BaseException as e:
        raise AssertionError(f"{fn.__name__}{args!r} raised {e!r}, expected {exc_type.__name__}") from e
    else:
        raise AssertionError(f"{fn.__name__}{args!r} did not raise {exc_type.__name__}")


def item_14_thread_id_errors():
    _expect(TypeError, _r.coordinates, (0,))
    _expect(LookupError, _r.coordinates, 0, message="unknown thread id")
    _expect(LookupError, _r.coordinates, 12345, message="unknown thread id")
    _expect(OverflowError, _r.coordinates, -1)
    _expect(OverflowError, _r.coordinates, 2**64)


def item_15_nested_call_lengths():
    before = _r.coordinates()
    inside = probe()
    after = _r.coordinates()
    for name, c in (("before", before), ("inside", inside), ("after", after)):
        well_formed(c, name)
    L = len(before)
    assert (len(before), len(inside), len(after)) == (L, L + 2, L), (before, inside, after)


def item_16_comprehension_samples_distinct():
    r = [probe() for _ in range(5)]
    assert len(set(r)) == 5, f"not 5 distinct tuples: {r}"


def item_17_loop_strictly_increasing():
    xs = []
    for i in range(3):
        xs.append(_r.coordinates()[-2])
    assert xs[0] < xs[1] < xs[2], f"loop instruction words not strictly increasing: {xs}"


def p(v):
    return probe()


def item_18_map_ordinals():
    r = list(map(p, range(3)))
    for c in r:
        well_formed(c, "map sample")
    assert len({len(c) for c in r}) == 1, f"lengths differ: {r}"
    assert len(set(r)) == 3, f"tuples not distinct: {r}"
    positions = [
        k
        for k in range(len(r[0]) // 2)
        if r[0][2 * k] == r[1][2 * k] == r[2][2 * k] and [c[2 * k + 1] for c in r] == [0, 1, 2]
    ]
    assert len(positions) == 1, f"pair positions with equal instruction and ordinals 0,1,2: {positions}; {r}"
    k = positions[0]
    for c in r:
        later = c[2 * k + 3 :: 2]
        assert all(o == 0 for o in later), f"a pair after position {k} has a non-zero ordinal: {c}"


def item_19_sorted_key_and_after_map():
    keys = []

    def pk(v):
        c = probe()
        keys.append(c)
        return c

    sorted([2, 1, 3], key=pk)
    assert len(keys) == 3 and len(set(keys)) == 3, f"sorted key tuples not 3 distinct: {keys}"
    list(map(p, range(3)))
    s = _r.coordinates()
    assert s[-1] == 0, f"sample after map has leaf ordinal {s[-1]}: {s}"


def genfn():
    yield 1


def item_20_generator_prologue_bumps():
    r = list(map(operator.call, [probe, genfn, probe]))
    assert r[0][-3] == 0, f"first probe's caller ordinal {r[0][-3]}: {r[0]}"
    assert r[2][-3] == 2, f"third probe's caller ordinal {r[2][-3]} (generator prologue must bump): {r[2]}"


def gen3():
    yield _r.coordinates()
    yield _r.coordinates()
    yield _r.coordinates()


def item_21_generator_resumes_bump():
    r = list(gen3())
    assert [c[-3] for c in r] == [0, 1, 2], f"caller ordinals across resumes: {[c[-3] for c in r]}; {r}"


def item_22_space_before_and_after_use():
    S = R.CoordinateSpace()
    assert S.coordinates() is None, S.coordinates()
    assert S.hash() is None, S.hash()
    assert S.thread_delta() is None, S.thread_delta()

    def leaf():
        return S.coordinates()

    inner = S.run(leaf)
    well_formed(inner, "S.coordinates() in leaf")
    assert len(inner) == 2 and inner[-1] == 0, f"leaf's space tuple {inner!r}"
    after = S.coordinates()
    assert after == (), f"S.coordinates() after the run: {after!r}"


def item_23_threads_get_well_formed_tuples():
    barrier = threading.Barrier(2, timeout=30)
    results = {}
    errors = []

    def worker(k):
        try:
            barrier.wait()
            results[k] = (tid(), _r.coordinates(), _r.coordinates(tid()), R.coordinates())
        except BaseException as e:
            errors.append((k, e))

    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, f"worker errors: {errors!r}"
    assert len(results) == 2, f"workers did not finish: {results!r}"
    for k, (ident, a, b, c) in results.items():
        well_formed(a, f"worker {k} _r.coordinates()")
        well_formed(b, f"worker {k} _r.coordinates(tid())")
        well_formed(c, f"worker {k} R.coordinates()")
        assert len(a) == len(b) == len(c), (a, b, c)
    assert results[0][0] != results[1][0], f"thread ids equal: {results[0][0]}"


if __name__ == "__main__":
    _runner.main(globals())
