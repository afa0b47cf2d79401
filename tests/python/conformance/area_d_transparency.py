"""Conformance checklist area D, transparency (SEMANTICS §21 items 37–44; §5, §6, §12).

Every item runs code inside a Retrace callback with ARM (§21 preamble):
`arm(cb)` arms a far root target for the current thread whose overshoot `cb`
runs once, on the calling thread, at the caller's first boundary after `arm`
returns (item 80). Values are collected inside the callback and checked by
application code afterwards. Items 38, 40 and 43 need a thread with a fresh
history and run in a worker.
"""

import functools
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


def _noop():
    pass


def arm(cb, hit=_noop):
    """ARM(cb) of the §21 preamble: `cb` runs at the caller's first boundary after this returns."""
    c = _r.coordinates(); R.call_at((*c[:-2], c[-2] + 10**6, 0), hit, cb)  # noqa: E702


def probe():
    return _r.coordinates()


def run_in_thread(fn, *args, timeout=60):
    """Run `fn(*args)` on a fresh `threading.Thread`, join it, re-raise its exception, return its result."""
    box = {}

    def target():
        try:
            box["result"] = fn(*args)
        except BaseException as e:  # noqa: B902 - re-raised on the main thread
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"worker still running after {timeout} s"
    if "error" in box:
        raise box["error"]
    assert "result" in box, "worker ended without a result"
    return box["result"]


def _ran_once(box, key="calls"):
    assert box.get(key) == 1, f"the ARM callback ran {box.get(key, 0)} times, expected once: {box}"


# Item 37: helpers four levels deep inside the callback.
def _h4():
    return R.coordinates(), R.hash()


def _h3():
    return _h4()


def _h2():
    return _h3()


def _h1():
    return _h2()


def item_37_callback_sees_the_pinned_boundary():
    box = {}

    def cb():
        box["calls"] = box.get("calls", 0) + 1
        box["P"] = R.coordinates()
        box["hash"] = R.hash()
        box["deep"] = _h1()

    def g():
        arm(cb)
        Q = _r.coordinates()
        return Q

    Q = g()
    _ran_once(box)
    P = box["P"]
    well_formed(P, "P = R.coordinates() in the callback")
    well_formed(Q, "Q = _r.coordinates() in g after arm")
    assert len(P) == len(Q), f"callback sees a different depth than g: P={P} Q={Q}"
    assert P[:-2] == Q[:-2], f"P={P} Q={Q}"
    assert P[-1] == 0, f"pinned leaf ordinal {P[-1]} != 0: {P}"
    assert P[-2] < Q[-2], f"pinned boundary is not before g's next sample: P={P} Q={Q}"
    h = box["hash"]
    assert type(h) is int and 0 <= h < WORD, f"R.hash() in the callback: {h!r}"
    assert box["deep"] == (P, h), f"helpers four levels deep see {box['deep']}, the callback ({P}, {h})"


def item_38_first_root_delta_in_a_callback():
    def work():
        box = {}

        def cb():
            box["calls"] = box.get("calls", 0) + 1
            box["P"] = R.coordinates()
            box["d"] = R.thread_delta()

        def g():
            arm(cb)

        g()
        return box

    box = run_in_thread(work)
    _ran_once(box)
    P = box["P"]
    well_formed(P, "P in the callback")
    assert box["d"] == (0, *P), f"first root delta in the callback {box['d']}, expected (0, *{P})"


def gen39():
    while True:
        yield _r.coordinates()


def item_39_callback_generator_stays_transparent():
    box = {}

    def cb():
        box["calls"] = box.get("calls", 0) + 1
        box["P"] = R.coordinates()
        g2 = gen39()
        box["g2"] = g2
        box["first"] = next(g2)

    def g():
        arm(cb)
        g2 = box["g2"]
        r = list(map(operator.call, [probe, functools.partial(next, g2), probe]))
        return r

    r = g()
    _ran_once(box)
    P = box["P"]
    well_formed(P, "P in the callback")
    assert box["first"] == P, f"next(g2) inside the callback gave {box['first']}, R.coordinates() {P}"
    for i, c in enumerate(r):
        well_formed(c, f"r[{i}]")
    assert r[0][-3] == 0, f"first probe's caller ordinal {r[0][-3]}: {r}"
    assert r[1] == r[2][:-2], f"resumed callback generator is visible or bumped the caller: {r}"
    assert r[2][-3] == 1, f"caller ordinal at the second probe {r[2][-3]}, expected 1 (probe only): {r}"

    def h():
        g3 = gen39()
        next(g3)
        r = list(map(operator.call, [probe, functools.partial(next, g3), probe]))
        return r

    r = h()
    for i, c in enumerate(r):
        well_formed(c, f"r[{i}] (application generator)")
    assert r[0][-3] == 0, f"first probe's caller ordinal {r[0][-3]}: {r}"
    assert r[2][-3] == 2, f"application generator did not bump the caller: ordinal {r[2][-3]}, expected 2: {r}"


def _disabled_coordinates():
    return R.disabled_space.coordinates()


def item_40_disabled_space_in_a_callback_of_a_fresh_worker():
    def work():
        box = {"before": R.disabled_space.coordinates()}

        def cb():
            box["calls"] = box.get("calls", 0) + 1
            box["direct"] = R.disabled_space.coordinates()
            box["run"] = R.run_disabled(_disabled_coordinates)

        def g():
            arm(cb)

        g()
        box["app"] = R.run_disabled(_disabled_coordinates)
        return box

    box = run_in_thread(work)
    assert box["before"] is None, f"fresh worker already sees the disabled space: {box['before']!r}"
    _ran_once(box)
    assert box["direct"] is None, f"R.disabled_space.coordinates() in the callback: {box['direct']!r}"
    assert box["run"] is None, f"R.run_disabled(f) in the callback: {box['run']!r}"
    well_formed(box["app"], "R.run_disabled(f) from application code afterwards")
    assert len(box["app"]) == 2, f"application run_disabled frame: {box['app']}"


def item_41_other_space_entered_from_a_callback():
    S = R.CoordinateSpace()
    box = {}

    def f():
        return S.coordinates()

    def cb():
        box["calls"] = box.get("calls", 0) + 1
        box["run"] = S.run(f)
        box["after"] = S.coordinates()

    def g():
        arm(cb)

    g()
    _ran_once(box)
    well_formed(box["run"], "S.run(f) in the callback")
    assert len(box["run"]) == 2, f"f is not the only visible S frame: {box['run']}"
    assert box["after"] == (), f"S.coordinates() after S.run in the callback: {box['after']!r}"
    assert S.coordinates() == (), f"S.coordinates() in application code afterwards: {S.coordinates()!r}"


def item_42_include_inside_a_callback():
    events = []

    def nested():
        return R.coordinates()

    def visible():
        V = R.coordinates()
        N = nested()
        events.append(("visible", V, N))

    def cb():
        events.append(("before", R.coordinates()))
        R.include(visible)()
        events.append(("after", R.coordinates()))

    def g():
        arm(cb)

    g()
    kinds = [e[0] for e in events]
    assert kinds == ["before", "visible", "after"], f"events {kinds}"
    P = events[0][1]
    _, V, N = events[1]
    A = events[2][1]
    well_formed(P, "P (callback, before)")
    well_formed(V, "visible's R.coordinates()")
    well_formed(N, "nested's R.coordinates()")
    well_formed(A, "callback sample after the include call")
    assert P[-1] == 0, f"pinned leaf ordinal {P[-1]}: {P}"
    assert len(V) > len(P) and V[: len(P)] == P, f"visible is not under the pinned boundary: P={P} V={V}"
    assert len(V) == len(P) + 2, f"visible added more than one frame: P={P} V={V}"
    assert len(N) > len(V), f"nested is not deeper than visible: V={V} N={N}"
    assert N[: len(V) - 2] == V[:-2], f"nested does not share visible's prefix: V={V} N={N}"
    assert N[: len(P)] == P, f"nested is not under the pinned boundary: P={P} N={N}"
    assert A[:-1] == P[:-1], f"after differs from P beyond the ordinal: P={P} A={A}"
    assert A[-1] == P[-1] + 1, f"included call did not bump the pinned frame's ordinal: P={P} A={A}"


def item_43_thread_started_in_a_callback():
    box = {}
    ready = threading.Event()
    release = threading.Event()

    def child():
        box["id"] = tid()
        ready.set()
        release.wait(60)

    def cb():
        box["calls"] = box.get("calls", 0) + 1
        t = threading.Thread(target=child, daemon=True)
        t.start()
        box["thread"] = t

    def g():
        arm(cb)

    g()
    t = box.get("thread")
    try:
        _ran_once(box)
        assert ready.wait(30), "thread started in the callback did not run"
        cid = box["id"]
        root = _r.coordinates(cid)
        disabled = _r.coordinates(cid, 0, 1)
    finally:
        release.set()
        if t is not None:
            t.join(30)
    assert t is not None and not t.is_alive(), "child thread did not finish"
    assert type(cid) is int and cid >> 48 == 1, f"thread started in a callback has id {cid:#x}, top bits not 1"
    assert root is None, f"_r.coordinates(child) = {root!r} while it runs disabled-space code"
    well_formed(disabled, "_r.coordinates(child, 0, 1)")


def item_44_identity_hash_in_a_callback():
    box = {}

    def cb():
        box["calls"] = box.get("calls", 0) + 1
        o = object()
        box["h"] = hash(o)
        box["R"] = R.hash()

    def g():
        arm(cb)

    g()
    _ran_once(box)
    rh = box["R"]
    assert type(rh) is int and 0 <= rh < WORD, f"R.hash() in the callback: {rh!r}"
    want = rh - WORD if rh >= 2**63 else rh
    if want == -1:
        want = -2
    h = box["h"]
    assert h == want, f"hash(object()) in the callback {h} ({h % WORD:#x}), R.hash() {rh:#x}"
    assert h % WORD == rh or rh == WORD - 1, f"hash(o) % 2**64 = {h % WORD:#x} != R.hash() {rh:#x}"


if __name__ == "__main__":
    _runner.main(globals())
