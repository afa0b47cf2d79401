"""Conformance checklist area I, public call_at for the current thread (SEMANTICS §21 items 80–97; §14, §15).

`arm(cb)` is ARM of the §21 preamble. Callbacks append to a log (with the
thread they ran on) and application code checks the log afterwards; every
negative check is paired with a witness showing the same mechanism does fire.
Completion targets are exercised on `threading.Thread` workers, whose `join`
returns only after the thread state is cleared (after natural completion, §15).
Item 91 starts a child interpreter (`sys.executable`).
"""

import contextlib
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
PAST = "call_at coordinates are in the past"
CB_MSG = "call_at callback must be callable"
OVER_MSG = "call_at overshoot callback must be callable or None"


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


def _noop():
    pass


def arm(cb, hit=_noop):
    """ARM(cb) of the §21 preamble: `cb` runs at the caller's first boundary after this returns."""
    c = _r.coordinates(); R.call_at((*c[:-2], c[-2] + 10**6, 0), hit, cb)  # noqa: E702


class Log(list):
    """Callback log; `rec(tag)` makes a callback that appends `(tag, tid())`."""

    def rec(self, tag):
        def cb():
            self.append((tag, tid()))

        return cb

    def tags(self):
        return [e[0] if isinstance(e, tuple) else e for e in self]


def run_in_thread(fn, *args, timeout=60):
    """Run `fn(*args)` on a fresh `threading.Thread`; join it; re-raise its exception; return (result, thread id)."""
    box = {}

    def target():
        box["id"] = tid()
        try:
            box["result"] = fn(*args)
        except BaseException as e:  # noqa: B902 - re-raised on the main thread
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"worker still running after {timeout} s (join did not return)"
    if "error" in box:
        raise box["error"]
    assert "id" in box, "worker never ran"
    return box.get("result"), box["id"]


@contextlib.contextmanager
def unraisables():
    got = []
    old = sys.unraisablehook

    def hook(u):
        got.append((u.exc_type, u.exc_value, u.object, tid()))

    sys.unraisablehook = hook
    try:
        yield got
    finally:
        sys.unraisablehook = old


def item_80_arm_runs_the_overshoot_once():
    log = Log()

    def g():
        arm(log.rec("cb"), log.rec("hit"))
        seen = list(log)
        x = 1
        y = x + 1
        return seen, y

    seen, _ = g()
    after = list(log)
    me = tid()
    assert seen == [("cb", me)], f"log at the statement after arm(cb): {seen}, expected [('cb', main)]"
    assert after == [("cb", me)], f"log afterwards {after}: cb must run exactly once and hit never"


def item_81_past_target_is_rejected():
    log = Log()

    def g():
        err = None
        c = _r.coordinates()
        try:
            R.call_at((*c[:-2], c[-2] - 1, 0), log.rec("hit"), log.rec("miss"))
        except ValueError as e:
            err = e
        x = 1
        y = x + 1
        return err, y

    err, _ = g()
    z = 3
    assert z == 3
    assert err is not None, "a past target was accepted"
    assert str(err) == PAST, f"message {str(err)!r}"
    assert list(log) == [], f"callbacks ran for a rejected target: {log}"


def _attempt82(k, log):
    c = _r.coordinates()
    t = (*c[:-2], c[-2] + k, 0)
    hit = lambda: log.append(("hit", k, R.coordinates(), t))  # noqa: E731
    miss = lambda: log.append(("miss", k))  # noqa: E731
    try:
        R.call_at(t, hit, miss)
    except ValueError as e:
        log.append(("past", k, str(e)))
    a = 1
    b = a + 1
    c1 = b * 2
    d = c1 - a
    e = d + b
    f = e * e
    g = f - d
    h = g + 1
    i = h - 2
    j = i + a
    return j


def item_82_every_attempt_has_one_outcome():
    log = []
    hits = 0
    for k in range(1, 1001):
        before = len(log)
        _attempt82(k, log)
        mine = log[before:]
        assert len(mine) == 1, f"attempt k={k} produced {len(mine)} outcomes: {mine}"
        kind = mine[0][0]
        assert mine[0][1] == k, f"outcome of another attempt at k={k}: {mine}"
        if kind == "past":
            assert mine[0][2] == PAST, f"k={k}: {mine}"
        elif kind == "hit":
            hits += 1
            _, _, here, t = mine[0]
            assert here == t, f"k={k}: R.coordinates() in hit {here} != target {t}"
        else:
            assert kind == "miss", mine
    assert hits >= 1, "no attempt hit its target"


def item_83_clearing_before_the_boundary():
    log = Log()

    def arm_then_clear(cb, hit):
        c = _r.coordinates(); R.call_at((*c[:-2], c[-2] + 10**6, 0), hit, cb)  # noqa: E702
        return R.call_at(None)

    def g():
        r = arm_then_clear(log.rec("miss"), log.rec("hit"))
        x = 1
        return r, x

    r, _ = g()
    y = 2
    assert y == 2
    assert r is None, f"R.call_at(None) returned {r!r}"
    assert list(log) == [], f"a cleared target fired: {log}"
    assert R.call_at(None) is None, "R.call_at(None) with nothing armed did not return None"

    def witness():
        arm(log.rec("witness"))
        return list(log)

    assert witness() == [("witness", tid())], f"witness ARM did not fire: {log}"


def item_84_rearming_replaces():
    log = Log()

    def arm2(m1, m2):
        c = _r.coordinates()
        R.call_at((*c[:-2], c[-2] + 10**6, 0), _noop, m1)
        R.call_at((*c[:-2], c[-2] + 10**6, 0), _noop, m2)

    def g():
        arm2(log.rec("miss1"), log.rec("miss2"))
        x = 1
        return x

    g()
    y = 1
    assert y == 1
    assert log.tags() == ["miss2"], f"log {log}, expected only miss2"


def _worker85(box):
    box["id"] = tid()
    x = 0
    for i in range(10**5):
        x += i
    box["x"] = x


def _scenario85():
    log = Log()
    box = {}

    def m():
        c = _r.coordinates(); R.call_at((*c[:-2], c[-2] + 10**6, 0), log.rec("hit"), log.rec("miss"))  # noqa: E702
        t = threading.Thread(target=_worker85, args=(box,), daemon=True)
        t.start()
        t.join(60)
        log.append(("m-end", t.is_alive()))

    m()
    log.append("after-m")
    me = tid()
    assert "x" in box and box["id"] != me, f"worker did not run its loop: {box}"
    assert list(log) == [("m-end", False), ("miss", me), "after-m"], (
        f"log {list(log)}: the overshoot must run once on the arming thread after m returns, nothing on the worker"
    )


def item_85_far_target_is_not_met_on_other_threads():
    _scenario85()  # main arms, as in the item
    # A worker arms too: its frames then line up word by word with the looping
    # thread's (_bootstrap, _bootstrap_inner, run, target function), whose loop
    # coordinates pass the target's words, so only the owner check keeps the
    # target from firing on the looping thread.
    run_in_thread(_scenario85)


def item_86_completion_target():
    log = Log()

    def cb():
        log.append(("cb", tid(), R.coordinates()))

    def work():
        log.append(("start", tid()))
        R.call_at(None, cb)
        log.append("end")

    _, wid = run_in_thread(work)
    assert list(log) == [("start", wid), "end", ("cb", wid, ())], (
        f"log {list(log)}: cb must run once after 'end', on the worker, with R.coordinates() == ()"
    )


def item_87_completion_argument_errors():
    log = Log()

    def work():
        cb = log.rec("cb")
        _expect(
            TypeError, R.call_at, None, cb, log.rec("miss"), message="call_at(None) does not accept overshoot_callback"
        )
        _expect(TypeError, R.call_at, None, 5, message=CB_MSG)
        log.append("end")

    _, wid = run_in_thread(work)
    assert log.tags() == ["end"], f"a rejected completion arming fired: {log}"


def item_88_completion_and_coordinate_targets_share_the_slot():
    log = Log()

    def work1():
        R.call_at(None, log.rec("done1"))
        arm(log.rec("miss1"))
        log.append("after1")

    _, wid = run_in_thread(work1)
    assert list(log) == [("miss1", wid), "after1"], f"log {list(log)}: completion must be replaced by the far target"

    log.clear()

    def g2():
        c = _r.coordinates()
        R.call_at((*c[:-2], c[-2] + 10**6, 0), log.rec("hit2"), log.rec("miss2"))
        R.call_at(None, log.rec("done2"))

    def work2():
        g2()
        log.append("after2")

    _, wid = run_in_thread(work2)
    assert list(log) == ["after2", ("done2", wid)], f"log {list(log)}: completion arming must cancel the far target"


def item_89_cleared_completion_target():
    log = Log()

    def work():
        R.call_at(None, log.rec("cb"))
        R.call_at(None)
        log.append("end")

    run_in_thread(work)
    assert log.tags() == ["end"], f"a cleared completion target ran: {log}"

    def witness():
        R.call_at(None, log.rec("witness"))
        log.append("end2")

    _, wid = run_in_thread(witness)
    assert log.tags() == ["end", "end2", "witness"], f"witness completion target did not run: {log}"


def item_90_completion_exception_is_unraisable():
    calls = []

    def raiser():
        calls.append(tid())
        raise KeyError("completion failure (item 90)")

    def work():
        R.call_at(None, raiser)

    with unraisables() as got:
        _, wid = run_in_thread(work)
        snap = list(got)
    assert calls == [wid], f"completion callback ran on {calls}, worker {wid:#x}"
    assert len(snap) == 1, f"unraisable reports: {snap}"
    exc_type, exc, obj, _ = snap[0]
    assert exc_type is KeyError, f"unraisable {exc_type}: {exc!r}"
    assert obj is not None and inspect.unwrap(obj) is raiser, f"unraisable object {obj!r} is not the stored callback"


def item_91_main_thread_never_completes():
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", "import retrace; retrace.call_at(None, lambda: print('x'))"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, _runner.describe(proc)
    assert proc.stdout == "", f"completion callback ran on the main thread:\n{_runner.describe(proc)}"
    assert "Traceback" not in proc.stderr, _runner.describe(proc)


class Boom(KeyError):
    pass


def item_92_callback_exception_propagates_into_the_target():
    def raiser():
        raise Boom("k92")

    def g():
        y = None
        caught = None
        try:
            arm(raiser)
            y = 1
        except KeyError as e:
            caught = e
        return y, caught

    y, caught = g()
    assert isinstance(caught, Boom) and caught.args == ("k92",), f"caught {caught!r}"
    assert y is None, "the statement after arm(raiser) ran"

    def one():
        return 1

    def h():
        y = None
        caught = None
        try:
            arm(one)
            y = 1
        except TypeError as e:
            caught = e
        return y, caught

    y, caught = h()
    assert caught is not None, "a callback returning 1 raised nothing"
    assert str(caught) == "call_at callback must return None", f"caught {caught!r}"
    assert y is None, "the statement after arm(one) ran"


def item_93_argument_errors():
    log = Log()
    f = log.rec("f")
    pairs = "call_at coordinates must include frame pairs"
    _expect(ValueError, R.call_at, (1,), f, message=pairs)
    _expect(ValueError, R.call_at, (), f, message=pairs)
    _expect(TypeError, R.call_at, 5, f, message="call_at coordinates must be a sequence")
    _expect(TypeError, R.call_at, (1, 2), 5, message=CB_MSG)
    _expect(TypeError, R.call_at, (1, 2), message=CB_MSG)
    _expect(TypeError, R.call_at, (1, 2), f, 5, message=OVER_MSG)
    x = 1
    assert x == 1
    assert list(log) == [], f"a rejected arming fired: {log}"


def item_94_root_and_space_slots_are_independent():
    S = R.CoordinateSpace()
    log = Log()

    def helper():
        c = S.coordinates()
        S.call_at((*c[:-2], c[-2] + 10**6, 0), _noop, log.rec("sS"))

    def f():
        helper()
        log.append("f-after-helper")

    def g():
        c = _r.coordinates()
        R.call_at((*c[:-2], c[-2] + 10**6, 0), _noop, log.rec("sR"))
        S.run(f)
        log.append("g-end")

    g()
    log.append("after-g")
    assert log.tags() == ["sS", "f-after-helper", "g-end", "sR", "after-g"], f"log {list(log)}"
    me = tid()
    assert all(e[1] == me for e in log if isinstance(e, tuple)), f"callbacks on another thread: {list(log)}"


def item_95_unused_space():
    _expect(LookupError, R.CoordinateSpace().call_at, (1, 2), _noop, message="unknown coordinate space")


def _attempt96(k, hit, miss):
    c = _r.coordinates()
    try:
        R.call_at((*c[:-2], c[-2] + k, 0), hit, miss)
    except ValueError:
        return False
    # Only instructions that never specialise follow (erratum 2).
    a = 1
    b = a
    c2 = b
    d = c2
    e = d
    f = e
    g = f
    h = g
    return h


def item_96_rearming_the_current_boundary_inside_a_hit():
    log = []

    def hit2():
        log.append("hit2")

    def miss2():
        log.append("miss2")

    def hit():
        here = R.coordinates()
        log.append(("hit", here))
        try:
            r = R.call_at(here, hit2, miss2)
        except BaseException as e:  # noqa: B902 - recorded, checked below
            log.append(("arm-error", repr(e)))
        else:
            log.append(("armed", r))

    def miss():
        log.append("miss")

    for k in range(1, 200):
        _attempt96(k, hit, miss)
        if any(isinstance(e, tuple) and e[0] == "hit" for e in log):
            break
    x = 1
    assert x == 1
    tagged = [e for e in log if e != "miss"]
    assert tagged, "no attempt hit its target"
    assert tagged[0][0] == "hit", tagged
    well_formed(tagged[0][1], "R.coordinates() in the hit callback")
    assert tagged[1:2] == [("armed", None)], f"re-arming at the current boundary failed: {tagged}"
    assert tagged[2:] == ["miss2"], f"after the hit callback: {tagged[2:]}, expected miss2 exactly once, hit2 never"


def _attempt97(k, arm_fn, hit):
    c = _r.coordinates()
    t = (*c[:-2], c[-2] + k, 0)
    try:
        r = arm_fn(t, hit, None, None)
    except ValueError as e:
        return ("past", str(e))
    a = 1
    b = a
    c2 = b
    d = c2
    e = d
    return ("armed", r, t, e)


def _r_call_at_4(t, f, over, space):
    assert over is None and space is None
    return R.call_at(t, f)


def item_97_low_level_entry_points():
    log = Log()

    def g():
        c = _r.coordinates()
        try:
            _r.call_at_current((*c[:-2], c[-2] - 1, 0), log.rec("f"), None, None)
        except ValueError as e:
            return e
        return None

    err = g()
    assert err is not None and str(err) == PAST, f"past target via call_at_current: {err!r}"
    assert list(log) == [], log

    def scan(arm_fn):
        outcomes = []
        for k in range(1, 200):
            seen = []

            def hit():
                seen.append((R.coordinates(), tid()))

            res = _attempt97(k, arm_fn, hit)
            y = 0
            assert y == 0
            if res[0] == "past":
                assert res[1] == PAST, res
                assert not seen, f"k={k}: callback after a rejected arming"
                outcomes.append("past")
                continue
            assert res[1] is None, f"arming returned {res[1]!r}"
            assert len(seen) <= 1, f"k={k}: hit ran {len(seen)} times"
            if seen:
                assert seen[0] == (res[2], tid()), f"k={k}: hit sees {seen[0][0]}, target {res[2]}"
                outcomes.append("hit")
            else:
                outcomes.append("expired")
        return outcomes

    low = scan(_r.call_at_current)
    assert "hit" in low, f"_r.call_at_current never hit: {low}"
    high = scan(_r_call_at_4)
    assert "hit" in high, f"R.call_at never hit: {high}"
    assert set(low) <= {"past", "hit", "expired"} and set(high) <= {"past", "hit", "expired"}
    _expect(
        TypeError,
        _r.call_at_current,
        (1, 2),
        message="call_at_current expects (coordinates, callback[, overshoot_callback[, space_id]])",
    )
    _expect(TypeError, _r.completion_at, 5, message="completion callback must be callable")


if __name__ == "__main__":
    _runner.main(globals())
