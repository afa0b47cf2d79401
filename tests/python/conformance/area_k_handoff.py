"""Conformance checklist area K, ThreadHandoff (SEMANTICS §21 items 103–112; §16).

Thread ids are Retrace ids from ``_thread.get_ident()`` (§9.5), which the
handoff keys its entries by. Every handoff that parks has a timeout (10 s,
the "HANDOFF setup" of §21) or a timer that closes it, and every join is
bounded, so a broken handoff fails an item instead of hanging the run.
"""

import gc
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _runner  # noqa: E402

import _retrace as _r  # noqa: E402
import retrace as R  # noqa: E402
from _thread import get_ident as tid  # noqa: E402

# Seconds a handoff call may park before it fails (§21 HANDOFF setup).
TIMEOUT = 10
# Seconds to wait for a worker to finish or become ready.
JOIN = 15
# Never a Retrace id (§9.4): ids are never 2**64 - 1.
NONEXISTENT = 2**64 - 1


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


def other_id():
    """A non-zero id that is not the caller's."""
    return 12345 if tid() != 12345 else 54321


class Workers:
    """Daemon worker threads whose exceptions are collected and re-raised by `finish`."""

    def __init__(self):
        self.threads = []
        self.errors = []
        self.ids = {}
        self.ready = {}

    def spawn(self, name, body):
        """Start `body()` on a thread; its id lands in ``ids[name]`` and
        ``ready[name]`` is set just before `body` runs."""
        ready = self.ready[name] = threading.Event()

        def run():
            try:
                self.ids[name] = tid()
                ready.set()
                body()
            except BaseException as e:  # noqa: B902 - reported by finish()
                self.errors.append((name, e))
                ready.set()

        t = threading.Thread(target=run, name=f"handoff-{name}", daemon=True)
        self.threads.append(t)
        t.start()
        return t

    def wait_ready(self, *names, settle=0.1):
        """Wait for the workers' readiness events, then `settle` seconds (§21 HANDOFF setup)."""
        for name in names:
            assert self.ready[name].wait(JOIN), f"worker {name} never became ready"
        self.check()
        time.sleep(settle)

    def check(self):
        if self.errors:
            name, e = self.errors[0]
            raise AssertionError(f"worker {name} raised {e!r}") from e

    def finish(self, handoff=None):
        """Close `handoff` (if given), join every worker and re-raise the first worker error."""
        if handoff is not None:
            handoff.close()
        for t in self.threads:
            t.join(JOIN)
            assert not t.is_alive(), f"{t.name} did not finish"
        self.check()


def item_103_to_self_returns_at_once():
    me = tid()
    assert type(me) is int and me != 0, f"tid() = {me!r}"
    for timeout in (None, 0):
        h = R.ThreadHandoff(timeout=timeout)
        # An untimed handoff that wrongly parks is released (and the item fails on time).
        closer = threading.Timer(5, h.close)
        closer.daemon = True
        closer.start()
        try:
            t0 = time.monotonic()
            got = h.to(me)
            elapsed = time.monotonic() - t0
        finally:
            closer.cancel()
        assert got is None, f"timeout={timeout!r}: to(own id) returned {got!r}"
        assert elapsed < 1, f"timeout={timeout!r}: to(own id) took {elapsed:.3f} s"
        # Still usable afterwards: nothing was parked or consumed.
        assert h.to(me) is None, f"timeout={timeout!r}: second to(own id)"
        h.close()


def item_104_argument_errors():
    assert R.ThreadHandoff is _r.ThreadHandoff, "retrace.ThreadHandoff is not _retrace.ThreadHandoff"
    # A zero timeout: a call that wrongly parks fails with TimeoutError instead of hanging.
    h = R.ThreadHandoff(timeout=0)
    _expect(TypeError, h.to)
    _expect(TypeError, h.to, 1, 2)
    _expect(TypeError, h.start, 1)
    _expect(TypeError, R.ThreadHandoff, timeout="soon")
    _expect(ValueError, h.to, 0, message="thread handoff target id must be non-zero")
    _expect(ValueError, R.ThreadHandoff, timeout=-1, message="thread handoff timeout must be non-negative")
    # The rest of §16.1 and §2.3 (thread id words).
    _expect(ValueError, R.ThreadHandoff, -0.5, message="thread handoff timeout must be non-negative")
    _expect(ValueError, R.ThreadHandoff, timeout=float("nan"))
    _expect(OverflowError, R.ThreadHandoff, timeout=1e300)
    _expect(OverflowError, R.ThreadHandoff, timeout=float("inf"))
    _expect(OverflowError, R.ThreadHandoff, timeout=10**30)
    _expect(TypeError, R.ThreadHandoff, timeout=b"1")
    _expect(TypeError, R.ThreadHandoff, timeout=1, extra=2)
    _expect(TypeError, R.ThreadHandoff, 1, 2)
    _expect(TypeError, h.to, None)
    _expect(TypeError, h.to, 1.0)
    _expect(TypeError, h.to, thread_id=1)
    _expect(OverflowError, h.to, -1)
    _expect(OverflowError, h.to, 2**64)
    _expect(TypeError, h.close, 1)
    for timeout in (None, 0, 0.0, 1, 2.5, 1e-9, True, 10**9):
        R.ThreadHandoff(timeout).close()
        R.ThreadHandoff(timeout=timeout).close()
    R.ThreadHandoff().close()
    # Shape (§16): not subclassable, not callable, no GC, start/to/close and no wake.
    try:

        class Sub(R.ThreadHandoff):
            pass

    except TypeError:
        pass
    else:
        raise AssertionError("ThreadHandoff can be subclassed")
    assert not callable(h), "ThreadHandoff instances are callable"
    assert not gc.is_tracked(h), "ThreadHandoff instances are GC-tracked"
    for name in ("start", "to", "close"):
        assert callable(getattr(h, name, None)), f"ThreadHandoff has no method {name}"
    assert not hasattr(h, "wake"), "ThreadHandoff has a wake method"
    h.close()


def item_105_closed_handoff():
    h = R.ThreadHandoff(timeout=TIMEOUT)
    assert h.close() is None
    assert h.close() is None
    closed = "thread handoff is closed"
    _expect(RuntimeError, h.to, other_id(), message=closed)
    _expect(RuntimeError, h.start, message=closed)
    _expect(RuntimeError, h.to, tid(), message=closed)
    assert h.close() is None


def item_106_zero_timeout_times_out():
    timed_out = "thread handoff timed out"
    for call in ("to", "start"):
        h = R.ThreadHandoff(timeout=0)
        args = (other_id(),) if call == "to" else ()
        t0 = time.monotonic()
        _expect(TimeoutError, getattr(h, call), *args, message=timed_out)
        elapsed = time.monotonic() - t0
        assert elapsed < 2, f"timeout=0 {call}() took {elapsed:.3f} s"
        h.close()
    # A positive timeout waits about that long.
    h = R.ThreadHandoff(timeout=0.05)
    t0 = time.monotonic()
    _expect(TimeoutError, h.start, message=timed_out)
    elapsed = time.monotonic() - t0
    assert 0.04 <= elapsed < 5, f"timeout=0.05 start() took {elapsed:.3f} s"
    h.close()


def item_107_start_parks_until_transfer():
    h = R.ThreadHandoff(timeout=TIMEOUT)
    main = tid()
    log = []
    w = Workers()

    def worker():
        h.start()
        log.append("worker")
        time.sleep(0.1)  # main must still be parked
        log.append("worker to main")
        h.to(main)
        log.append("worker resumed")

    w.spawn("w", worker)
    w.wait_ready("w")
    time.sleep(0.05)
    assert log == [], f"the worker ran before any transfer: {log}"
    got = h.to(w.ids["w"])
    assert got is None, f"to(worker) returned {got!r}"
    assert log == ["worker", "worker to main"], f"main's to() returned early: {log}"
    w.finish(h)
    assert log == ["worker", "worker to main", "worker resumed"], log


def item_108_pending_transfer_makes_start_return_at_once():
    h = R.ThreadHandoff(timeout=TIMEOUT)
    main = tid()
    transferring = threading.Event()
    took = []
    w = Workers()

    def worker():
        assert transferring.wait(JOIN), "main never transferred"
        time.sleep(0.05)
        t0 = time.monotonic()
        h.start()
        took.append(time.monotonic() - t0)
        h.to(main)

    w.spawn("w", worker)
    assert w.ready["w"].wait(JOIN), "worker never became ready"
    transferring.set()
    h.to(w.ids["w"])
    assert took, "main's to() returned before the worker's start()"
    assert took[0] < 1, f"start() with a pending transfer took {took[0]:.3f} s"
    w.finish(h)


def item_109_close_releases_parked_calls():
    for how in ("start", "to"):
        h = R.ThreadHandoff(timeout=TIMEOUT)
        results = []
        w = Workers()

        def worker(h=h, how=how, results=results):
            results.append(h.start() if how == "start" else h.to(NONEXISTENT))

        w.spawn("w", worker)
        w.wait_ready("w")
        time.sleep(0.05)
        assert results == [], f"{how}: the parked call returned {results} without a transfer"
        assert w.threads[0].is_alive(), f"{how}: the worker is not parked"
        h.close()
        w.finish()
        assert results == [None], f"{how}: after close() the call returned {results}"


def item_110_round_trip():
    h = R.ThreadHandoff(timeout=TIMEOUT)
    main = tid()
    log = []
    third = []
    w = Workers()

    def worker():
        h.start()
        for i in range(3):
            log.append(("worker", i))
            try:
                h.to(main)
            except RuntimeError as e:
                third.append((i, str(e)))
                return

    w.spawn("w", worker)
    w.wait_ready("w")
    for i in range(2):
        h.to(w.ids["w"])
        log.append(("main", i))
    want = [("worker", 0), ("main", 0), ("worker", 1), ("main", 1)]
    assert log == want, f"round trip log {log}, expected {want}"
    w.finish(h)
    # close() released the worker's second to(main); its third meets the closed handoff.
    assert log == want + [("worker", 2)], f"after close: {log}"
    assert third == [(2, "thread handoff is closed")], f"third to(main): {third}"


def item_111_transfer_to_running_thread():
    h = R.ThreadHandoff(timeout=TIMEOUT)
    main = tid()
    log = []
    w = Workers()

    def worker():
        time.sleep(0.2)  # running (not parked) when main transfers
        log.append("worker to main")
        h.to(main)
        log.append("worker resumed")

    w.spawn("w", worker)
    assert w.ready["w"].wait(JOIN), "worker never became ready"
    t0 = time.monotonic()
    h.to(w.ids["w"])
    elapsed = time.monotonic() - t0
    assert log == ["worker to main"], f"main's to() returned before the worker's to(main): {log}"
    assert elapsed >= 0.1, f"main's to() returned after {elapsed:.3f} s"
    # The worker's own pending permit was discarded by its to(main): it stays parked.
    time.sleep(0.1)
    assert log == ["worker to main"], f"the worker progressed past to(main): {log}"
    assert w.threads[0].is_alive(), "the worker is not parked"
    w.finish(h)
    assert log == ["worker to main", "worker resumed"], log


def item_112_strict_alternation():
    h = R.ThreadHandoff(timeout=TIMEOUT)
    main = tid()
    log = []
    rounds = 25
    w = Workers()

    def ring(name, successor):
        def body():
            h.start()
            for r in range(rounds):
                log.append((name, r))
                h.to(w.ids[successor])

        return body

    w.ids["main"] = main
    w.spawn("a", ring("a", "b"))
    w.spawn("b", ring("b", "main"))
    w.wait_ready("a", "b")
    # While the workers are parked the GIL is free: main runs Python code.
    deadline = time.monotonic() + 0.25
    spins = 0
    while time.monotonic() < deadline:
        spins += 1
    assert spins > 1000, f"main ran only {spins} loop iterations in 250 ms"
    assert log == [], f"workers ran without a transfer: {log}"
    for r in range(rounds):
        log.append(("main", r))
        h.to(w.ids["a"])
    want = [(name, r) for r in range(rounds) for name in ("main", "a", "b")]
    assert log == want, f"ping-pong log (first difference at {_first_difference(log, want)}): {log}"
    w.finish(h)
    assert log == want, f"log changed after close(): {log[len(want):]}"


def _first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


_runner.main(globals())
