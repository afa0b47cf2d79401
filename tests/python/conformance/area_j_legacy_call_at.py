"""Conformance checklist area J, legacy `_retrace.call_at` (SEMANTICS §21 items 98–102; §14.5, §14.6).

Items 98 and 101 arm targets on another thread while it is parked in
`Event.wait()`. Each round takes the parked worker's coordinates, arms a
target a few instruction words ahead of its leaf, wakes it and waits until it
parks again. A large `sys.setswitchinterval` makes "parked" exact: a thread
keeps the GIL until it blocks, so when main runs again after the worker's
`done` signal the worker is blocked in its next `wait()`.
"""

import contextlib
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


@contextlib.contextmanager
def switch_interval(seconds):
    old = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


class Parked:
    """A worker parked on an Event between rounds; every instance runs identical code."""

    def __init__(self):
        self.go = threading.Event()
        self.done = threading.Event()
        self.ready = threading.Event()
        self.stop = False
        self.error = None
        self.id = None
        self.rounds = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.id = tid()
            self.ready.set()
            while True:
                self.go.wait()
                self.go.clear()
                if self.stop:
                    return
                a = 1
                b = a + 1
                c = b * 2
                d = c - a
                self.rounds += d - 2
                self.done.set()
        except BaseException as e:  # noqa: B902 - re-raised by round()/close()
            self.error = e
            self.done.set()

    def start(self):
        self.thread.start()
        assert self.ready.wait(30), "parked worker did not start"

    def wake(self):
        self.go.set()

    def wait_parked(self):
        assert self.done.wait(30), "worker did not finish its round"
        self.done.clear()
        if self.error is not None:
            raise self.error

    def close(self):
        self.stop = True
        self.go.set()
        self.thread.join(30)
        if self.error is not None:
            raise self.error
        assert not self.thread.is_alive(), "parked worker did not stop"


def item_98_cross_thread_target_hits():
    hits = []

    def cb():
        hits.append(tid())

    p = Parked()
    with switch_interval(5.0):
        p.start()
        try:
            tries = 0
            for k in range(1, 1001):
                tries = k
                base = _r.coordinates(p.id)
                well_formed(base, "parked worker's coordinates")
                _r.call_at(p.id, (*base[:-2], base[-2] + k, 0), cb)
                p.wake()
                p.wait_parked()
                if hits:
                    break
        finally:
            try:
                _r.call_at(None)
            finally:
                p.close()
    assert hits, "no hit within 1000 tries"
    assert hits == [p.id], f"hit callback ran on {[hex(h) for h in hits]}, worker {p.id:#x} (after {tries} tries)"


def item_99_past_target_with_overshoot_is_accepted():
    log = []

    def hit():
        log.append(("hit", tid()))

    def miss():
        log.append(("miss", tid()))

    def g():
        c = _r.coordinates()
        r = _r.call_at(tid(), (*c[:-2], c[-2] - 1, 0), hit, miss)
        log.append("next")
        x = 1
        y = x + 1
        return r, y

    r, _ = g()
    z = 1
    assert z == 1
    me = tid()
    assert r is None, f"_r.call_at returned {r!r}"
    assert log == [("miss", me), "next"], f"log {log}: miss must run once right after the call, hit never"


def item_100_argument_errors():
    log = []

    def f():
        log.append("f")

    sid = _r.allocate_space_id()
    _expect(ValueError, _r.call_at, 0, (1, 2), f, message="call_at thread id must be non-zero")
    _expect(LookupError, _r.call_at, 12345, (1, 2), f, message="unknown thread id")
    _expect(LookupError, _r.call_at, tid(), (1, 2), f, None, sid, message="unknown coordinate space")
    _expect(
        TypeError,
        _r.call_at,
        tid(),
        message="call_at expects None or (thread_id, coordinates, callback[, overshoot_callback[, space_id]])",
    )
    x = 1
    assert x == 1
    assert log == [], f"a rejected arming fired: {log}"


def item_101_owner_only():
    log = []

    def hit():
        log.append(("hit", tid()))

    def miss():
        log.append(("miss", tid()))

    target, bystander = Parked(), Parked()
    with switch_interval(5.0):
        target.start()
        bystander.start()
        try:
            for k in range(1, 41):
                base = _r.coordinates(target.id)
                well_formed(base, "target's coordinates")
                _r.call_at(target.id, (*base[:-2], base[-2] + k, 0), hit, miss)
                target.wake()
                bystander.wake()
                target.wait_parked()
                bystander.wait_parked()
        finally:
            try:
                _r.call_at(None)
            finally:
                target.close()
                bystander.close()
    assert target.rounds == bystander.rounds == 40, (target.rounds, bystander.rounds)
    kinds = {e[0] for e in log}
    assert "hit" in kinds and "miss" in kinds, f"need both hits and overshoots on the target: {log}"
    bad = [e for e in log if e[1] != target.id]
    assert not bad, f"callbacks ran on {bad}; target {target.id:#x}, bystander {bystander.id:#x}"


def item_102_clear_forms():
    S = R.CoordinateSpace()
    log = []

    def rec(tag):
        def cb():
            log.append(tag)

        return cb

    def inner(clear):
        c = S.coordinates()
        S.call_at((*c[:-2], c[-2] + 10**6, 0), _noop, rec("mS"))
        if clear:
            _r.call_at(None, S.id)

    def body(clear):
        inner(clear)
        log.append("after-inner")

    def g(clear):
        c = _r.coordinates()
        R.call_at((*c[:-2], c[-2] + 10**6, 0), _noop, rec("mR"))
        S.run(body, clear)
        log.append("g-end")

    g(False)  # witness: both targets fire
    log.append("after-g")
    assert log == ["mS", "after-inner", "g-end", "mR", "after-g"], f"witness log {log}"
    log.clear()
    g(True)
    log.append("after-g")
    assert log == ["after-inner", "g-end", "mR", "after-g"], f"_r.call_at(None, S.id) must clear only S: {log}"

    def run_thread(fn):
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        t.join(60)
        assert not t.is_alive(), "worker did not finish"

    log.clear()

    def cleared():
        R.call_at(None, rec("done"))
        _r.call_at(None)
        log.append("end")

    run_thread(cleared)
    assert log == ["end"], f"_r.call_at(None) did not cancel the completion target: {log}"

    def witness():
        R.call_at(None, rec("done-witness"))
        log.append("end2")

    run_thread(witness)
    assert log == ["end", "end2", "done-witness"], f"witness completion target did not run: {log}"


if __name__ == "__main__":
    _runner.main(globals())
