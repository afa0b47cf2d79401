"""Conformance checklist area C, spaces and wrappers (SEMANTICS §21 items 24–36; §11).

Item 31 needs a process whose disabled space was never used, so it runs its
checks in a child interpreter.
"""

import inspect
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _runner  # noqa: E402

import _retrace as _r  # noqa: E402
import retrace as R  # noqa: E402
from _thread import get_ident as tid  # noqa: E402

WORD = 2**64
LOW48 = (1 << 48) - 1


def well_formed(c, what="tuple", nonempty=True):
    assert isinstance(c, tuple), f"{what} is {type(c).__name__}, not a tuple: {c!r}"
    assert len(c) % 2 == 0, f"{what} has odd length {len(c)}: {c!r}"
    if nonempty:
        assert c, f"{what} is empty"
    for w in c:
        assert type(w) is int and 0 <= w < WORD, f"{what} has a non-word {w!r}: {c!r}"


def _expect(exc_type, fn, *args, message=None, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        if message is not None:
            assert str(e) == message, f"{fn!r}{args!r} raised {e!r}, expected message {message!r}"
    except BaseException as e:
        raise AssertionError(f"{fn!r}{args!r} raised {e!r}, expected {exc_type.__name__}") from e
    else:
        raise AssertionError(f"{fn!r}{args!r} did not raise {exc_type.__name__}")


def nested():
    return R.coordinates()


@R.exclude
def hidden24():
    return (R.coordinates(), nested())


def item_24_excluded_function_sees_caller():
    L = len(R.coordinates())
    a, b = hidden24()
    well_formed(a, "R.coordinates() in hidden")
    assert a == b, f"excluded function and its callee disagree: {a} vs {b}"
    assert len(a) == L, f"excluded sample length {len(a)}, caller's {L}: {a}"


def visible():
    return R.coordinates()


def item_25_include_from_excluded():
    @R.exclude
    def excluded():
        X = R.coordinates()
        V = R.include(visible)()
        Y = R.coordinates()
        return X, V, Y

    X, V, Y = excluded()
    for name, c in (("X", X), ("V", V), ("Y", Y)):
        well_formed(c, name)
    assert V[: len(X)] == X, f"included frame not under the caller: X={X} V={V}"
    assert len(V) == len(X) + 2, f"X={X} V={V}"
    assert Y[:-1] == X[:-1], f"X={X} Y={Y}"
    assert Y[-1] == X[-1] + 1, f"caller ordinal not bumped by the included call: X={X} Y={Y}"


def item_26_low_level_exclude_wrapper():
    inner = []

    @_r.exclude
    def hidden(a, b=2, *, c=3):
        inner.append(_r.coordinates())
        return a + b + c

    L = len(_r.coordinates())
    assert hidden(1, c=4) == 7, "arguments not forwarded"
    well_formed(inner[0], "inner sample")
    assert len(inner[0]) == L, f"inner length {len(inner[0])}, caller {L}: {inner[0]}"
    assert inspect.unwrap(hidden).__name__ == "hidden", inspect.unwrap(hidden)

    calls = []

    def f():
        calls.append(1)

    w = _r.disable(f)
    assert calls == [], "_r.disable called its argument"
    w()
    assert calls == [1], calls
    w()
    assert calls == [1, 1], calls


class Target:
    @_r.exclude
    def hidden(self, extra=0):
        return self, extra

    @_r.include
    def visible(self):
        return R.coordinates()


def item_27_wrappers_as_methods():
    t = Target()
    got, extra = t.hidden(extra=5)
    assert got is t and extra == 5, (got, extra)
    got, extra = Target.hidden(t, 7)
    assert got is t and extra == 7, (got, extra)
    L = len(R.coordinates())
    v = t.visible()
    well_formed(v, "t.visible()")
    assert len(v) == L + 2, f"visible method length {len(v)}, caller {L}: {v}"


class Boom(Exception):
    pass


def item_28_exceptions_propagate():
    err = Boom("excluded")

    @_r.exclude
    def raiser():
        raise err

    before = len(R.coordinates())
    try:
        raiser()
    except Boom as e:
        assert e is err, f"a different exception came out: {e!r}"
    else:
        raise AssertionError("excluded exception swallowed")
    assert len(R.coordinates()) == before, "root length changed after an excluded exception"

    err2 = Boom("space")
    sid = _r.allocate_space_id()

    def f():
        raise err2

    before = len(R.coordinates())
    try:
        _r.run_in_space(sid, f)
    except Boom as e:
        assert e is err2, f"a different exception came out: {e!r}"
    else:
        raise AssertionError("run_in_space exception swallowed")
    assert len(R.coordinates()) == before, "root length changed after a run_in_space exception"


def item_29_run_in_space():
    sid = _r.allocate_space_id()
    assert _r.coordinates(None, 0, sid) is None, _r.coordinates(None, 0, sid)
    seen = {}

    def inner():
        return _r.coordinates(None, 0, sid)

    def leaf(tag, *, scale):
        seen["args"] = (tag, scale)
        seen["own"] = _r.coordinates(None, 0, sid)
        seen["nested"] = inner()
        return "done"

    assert _r.run_in_space(sid, leaf, "first", scale=2) == "done"
    assert seen["args"] == ("first", 2), seen
    well_formed(seen["own"], "leaf's space tuple")
    assert len(seen["own"]) == 2, seen["own"]
    well_formed(seen["nested"], "nested space tuple")
    assert len(seen["nested"]) == 4, seen["nested"]


def item_30_same_leaf_twice():
    S = R.CoordinateSpace()

    def leaf():
        return S.coordinates(), S.hash()

    a = S.run(leaf)
    b = S.run(leaf)
    assert a[0] == b[0], f"coordinates differ: {a[0]} {b[0]}"
    assert a[1] != b[1], f"hashes equal: {a[1]}"


CHILD_31 = r"""
import retrace as R
WORD = 2**64
def wf(c, what):
    assert isinstance(c, tuple) and len(c) % 2 == 0 and len(c) >= 2, (what, c)
    assert all(type(w) is int and 0 <= w < WORD for w in c), (what, c)
first = R.disabled_space.coordinates()
assert first is None, f"disabled space seen in a fresh process: {first!r}"
calls = []
def f():
    calls.append(1)
    return R.disabled_space.coordinates(), R.coordinates()
d, r = R.disable(f)()
wf(d, "disabled tuple inside R.disable(f)()")
assert r, f"R.coordinates() empty inside R.disable(f)(): {r!r}"
calls.clear()
res = R.run_disabled(f)
assert calls == [1], "run_disabled did not call f immediately"
d, r = res
wf(d, "disabled tuple inside R.run_disabled(f)")
assert r, f"R.coordinates() empty inside run_disabled: {r!r}"
print("ok")
"""


def item_31_disabled_space_in_fresh_process():
    proc = _runner.run_python(["-c", CHILD_31])
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", _runner.describe(proc)


def leaf32(a, right):
    return a + right


def item_32_space_wrap():
    S = R.CoordinateSpace()
    w = S.wrap(leaf32)
    assert inspect.unwrap(w) is leaf32, inspect.unwrap(w)
    assert w(2, right=3) == 5
    assert _r.wrap_for_space(S.id, leaf32)(4, right=5) == 9

    class C:
        @S.wrap
        def method(self):
            return self

    c = C()
    assert c.method() is c, "a method wrapped by S.wrap did not receive self"
    _expect(
        TypeError, _r.wrap_for_space, S.id, object(), message="wrap_for_space callable argument must be callable"
    )


def item_33_argument_errors():
    S = R.CoordinateSpace()

    def f():
        return _r.coordinates()

    _expect(TypeError, S.run, 5, message="space.run argument must be callable")
    _expect(TypeError, S.wrap, 5, message="space wrapper argument must be callable")
    _expect(TypeError, R.with_new_coordinates, 5, message="with_new_coordinates argument must be callable")
    _expect(TypeError, _r.run_in_space, 1, message="run_in_space expected at least 2 arguments")
    _expect(OverflowError, _r.run_in_space, 2**32, f, message="Retrace space id is too large")
    caller = _r.coordinates()
    inner = _r.run_in_space(None, f)
    well_formed(inner, "root tuple inside run_in_space(None, f)")
    L = len(caller)
    assert len(inner) == L + 2, f"f did not run as a root child of the caller: {caller} {inner}"
    assert inner[: L - 2] == caller[: L - 2], f"{caller} {inner}"


def item_34_wrapper_reprs():
    def f():
        pass

    a = repr(_r.exclude(f))
    b = repr(R.exclude(f))
    assert a.startswith("<_retrace.exclude wrapper for"), a
    assert b.startswith("<_retrace.wrap_for_space wrapper space_id=1 for"), b


def item_35_with_new_coordinates_thread_ids():
    seen = []

    def f():
        seen.append(len(_r.coordinates()))
        got = []
        t = threading.Thread(target=lambda: got.append(tid()), daemon=True)
        t.start()
        t.join(30)
        assert got, "thread did not run"
        assert t.ident == got[0], (t.ident, got)
        return t.ident

    L = len(_r.coordinates())
    a = R.with_new_coordinates(f)
    b = R.with_new_coordinates(f)
    assert a >> 48 >= 2, f"top bits of {a:#x}"
    assert b >> 48 >= 2, f"top bits of {b:#x}"
    assert a >> 48 != b >> 48, f"two fresh spaces gave the same top bits: {a:#x} {b:#x}"
    assert seen == [L, L], f"root length inside f {seen}, caller {L}"


def item_36_fresh_space_runs_reproduce():
    def body(S):
        c = S.coordinates()
        h = S.hash()
        got = []
        t = threading.Thread(target=lambda: got.append(tid()), daemon=True)
        t.start()
        t.join(30)
        return c, h, got[0] & LOW48

    for _ in range(4):
        S = R.CoordinateSpace()
        S.run(body, S)
    results = []
    for _ in range(12):
        S = R.CoordinateSpace()
        results.append(S.run(body, S))
        if len(set(results)) < len(results):
            break
    well_formed(results[0][0], "space coordinates in body")
    assert len(set(results)) < len(results), f"no two of {len(results)} fresh-space runs agree: {results}"


if __name__ == "__main__":
    _runner.main(globals())
