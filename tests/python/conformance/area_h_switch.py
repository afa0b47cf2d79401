"""Conformance checklist area H, thread-switch callbacks (SEMANTICS §21 items 63–79; §13, §15).

Exactly sequenced scenarios use the HANDOFF setup of the §21 preamble:
workers (started in the stated space, with `S.run(t.start)` for `S`) record
their id, set a readiness event and park in `h.start()` on a shared
`h = R.ThreadHandoff(timeout=10)`; main waits for every readiness event plus
0.1 s, registers the callback and hands over. Busy-worker items use a small
`sys.setswitchinterval` and generous deadlines; item 79 uses a large one so
that main blocks on its lock before the new thread can take the GIL. Every
item clears the callbacks it registers and restores the switch interval and
`sys.unraisablehook`; every wait has a timeout that fails the item.

Callback records are `(previous_delta, next_thread_id, tid() inside the callback)`.
"""

import _thread
import concurrent.futures
import contextlib
import inspect
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _runner  # noqa: E402

import _retrace as _r  # noqa: E402
import retrace as R  # noqa: E402
from _thread import get_ident as tid  # noqa: E402

WORD = 2**64
SWITCH_MSG = "thread switch callback must be callable or None"


def well_formed(c, what="tuple", nonempty=True):
    assert isinstance(c, tuple), f"{what} is {type(c).__name__}, not a tuple: {c!r}"
    assert len(c) % 2 == 0, f"{what} has odd length {len(c)}: {c!r}"
    if nonempty:
        assert c, f"{what} is empty"
    for w in c:
        assert type(w) is int and 0 <= w < WORD, f"{what} has a non-word {w!r}: {c!r}"


def delta_shape(d, what="previous_delta"):
    assert isinstance(d, tuple), f"{what} is {type(d).__name__}, not a tuple: {d!r}"
    assert len(d) >= 1, f"{what} is empty: {d!r}"
    for w in d:
        assert type(w) is int and 0 <= w < WORD, f"{what} has a non-word {w!r}: {d!r}"
    assert d[0] >= 0, f"{what}[0] = {d[0]}"


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


def _set_switch(space, cb):
    space.thread_switch = cb


@contextlib.contextmanager
def switch_interval(seconds):
    old = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@contextlib.contextmanager
def unraisables():
    """Capture `sys.unraisablehook` calls as `(exc_type, exc_value, object, tid())`."""
    got = []
    old = sys.unraisablehook

    def hook(u):
        got.append((u.exc_type, u.exc_value, u.object, tid()))

    sys.unraisablehook = hook
    try:
        yield got
    finally:
        sys.unraisablehook = old


class Workers:
    """`threading.Thread`s whose exceptions are collected; `join()` re-raises the first one."""

    def __init__(self):
        self.threads = []
        self.errors = []
        self.on_error = []

    def thread(self, fn, *args, space=None):
        def run():
            try:
                fn(*args)
            except BaseException as e:  # noqa: B902 - re-raised by join()
                self.errors.append(e)
                for f in self.on_error:
                    f()

        t = threading.Thread(target=run, daemon=True)
        if space is None:
            t.start()
        else:
            space.run(t.start)
        self.threads.append(t)
        return t

    def join(self, timeout=60, quiet=False):
        """Join every thread; unless `quiet` (main is already failing), re-raise a worker's exception."""
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self.threads if t.is_alive()]
        if quiet:
            return
        if self.errors:
            raise self.errors[0]
        assert not alive, f"{len(alive)} worker(s) still running after {timeout} s"


def _busy(stop, started, counters, ids, i, limit):
    ids[i] = tid()
    started.set()
    deadline = time.monotonic() + limit
    n = 0
    while not stop.is_set() and time.monotonic() < deadline:
        n += 1
        counters[i] = n


class Busy:
    """`n` busy workers (in `space`, root if None) that spin until `stop()`."""

    def __init__(self, n, space=None, limit=90):
        self.n = n
        self.space = space
        self.limit = limit
        self.counters = [0] * n
        self.ids = [None] * n
        self.stop_event = threading.Event()
        self.workers = Workers()

    def __enter__(self):
        started = [threading.Event() for _ in range(self.n)]
        try:
            for i in range(self.n):
                self.workers.thread(
                    _busy, self.stop_event, started[i], self.counters, self.ids, i, self.limit, space=self.space
                )
            for i, e in enumerate(started):
                assert e.wait(30), f"busy worker {i} did not start"
        except BaseException:
            self.stop_event.set()
            self.workers.join(quiet=True)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop_event.set()
        self.workers.join(quiet=exc_type is not None)
        return False

    def alive(self):
        return all(t.is_alive() for t in self.workers.threads)


class Handoff:
    """The HANDOFF setup: named workers record their id, signal readiness and park in `h.start()`."""

    def __init__(self, timeout=10):
        self.h = R.ThreadHandoff(timeout=timeout)
        self.ids = {}
        self.ready = {}
        self.workers = Workers()
        self.workers.on_error.append(self.h.close)

    def worker(self, name, body, space=None):
        ready = self.ready[name] = threading.Event()
        h, ids = self.h, self.ids

        def run():
            ids[name] = tid()
            ready.set()
            h.start()
            body()

        return self.workers.thread(run, space=space)

    def wait_parked(self):
        for name, e in self.ready.items():
            assert e.wait(30), f"worker {name} did not start"
        time.sleep(0.1)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        """Release every parked worker and join; worker errors are re-raised unless main already failed."""
        self.h.close()
        self.workers.join(quiet=exc_type is not None)
        return False


# ---------------------------------------------------------------- registration


def item_63_root_registration():
    def f(prev, nxt):
        pass

    assert R.root_space.thread_switch is None, f"initial root callback {R.root_space.thread_switch!r}"
    assert _r.get_thread_switch_callback() is None, _r.get_thread_switch_callback()
    R.root_space.thread_switch = f
    try:
        stored = R.root_space.thread_switch
        assert stored is not None, "root callback not stored"
        assert inspect.unwrap(stored) is f, f"inspect.unwrap(stored) is {inspect.unwrap(stored)!r}, not f"
        assert getattr(stored, "__wrapped__", None) is f, f"stored object {stored!r} is not an exclude wrapper of f"
        assert R.root_space.thread_switch is stored, "getter returns a different object each time"
        assert R.root_space.thread_switch is _r.get_thread_switch_callback(), (
            f"{R.root_space.thread_switch!r} is not _r.get_thread_switch_callback() "
            f"{_r.get_thread_switch_callback()!r}"
        )
    finally:
        R.root_space.thread_switch = None
    assert R.root_space.thread_switch is None, f"after None: {R.root_space.thread_switch!r}"
    assert _r.get_thread_switch_callback() is None, f"after None: {_r.get_thread_switch_callback()!r}"


def item_64_space_registration():
    S = R.CoordinateSpace()

    def f(prev, nxt):
        pass

    assert S.thread_switch is None, S.thread_switch
    S.thread_switch = f
    try:
        stored = _r.get_thread_switch_callback(S.id)
        assert stored is not None, "S callback not stored"
        assert stored.__wrapped__ is f, f"_r.get_thread_switch_callback(S.id).__wrapped__ is {stored.__wrapped__!r}"
        assert S.thread_switch is stored, f"S.thread_switch {S.thread_switch!r} is not the stored object {stored!r}"
        assert R.root_space.thread_switch is None, f"root affected: {R.root_space.thread_switch!r}"
        assert _r.get_thread_switch_callback() is None, f"root affected: {_r.get_thread_switch_callback()!r}"
    finally:
        S.thread_switch = None
    assert S.thread_switch is None, f"after None: {S.thread_switch!r}"
    assert _r.get_thread_switch_callback(S.id) is None, f"after None: {_r.get_thread_switch_callback(S.id)!r}"


def item_65_registration_errors_and_raw_storage():
    def f(prev, nxt):
        pass

    _expect(TypeError, _set_switch, R.root_space, 5, message=SWITCH_MSG)
    _expect(TypeError, _r.set_thread_switch_callback, 5, message=SWITCH_MSG)
    assert R.root_space.thread_switch is None, "a rejected registration stored something"
    try:
        assert _r.set_thread_switch_callback(f) is None, "registration did not return None"
        assert _r.get_thread_switch_callback() is f, f"_r stored {_r.get_thread_switch_callback()!r}, not f itself"
        assert R.root_space.thread_switch is f, f"root getter {R.root_space.thread_switch!r}, not f itself"
    finally:
        _r.set_thread_switch_callback(None)
    assert _r.get_thread_switch_callback() is None


# ---------------------------------------------------------------- busy workers


def item_66_callbacks_between_busy_workers():
    rec = []

    def cb(prev, nxt):
        rec.append((prev, nxt, tid()))

    with switch_interval(1e-6), Busy(2) as busy:
        R.root_space.thread_switch = cb
        try:
            # The item says "within 2 s"; the bound is generous for a loaded machine.
            deadline = time.monotonic() + 10
            while not rec and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.05)
            snap = list(rec)
            alive = busy.alive()
        finally:
            R.root_space.thread_switch = None
    assert alive, "a busy worker ended early"
    assert snap, "no switch callback within 10 s with two busy workers and a 1 µs switch interval"
    for prev, nxt, on in snap:
        delta_shape(prev)
        assert type(nxt) is int, f"next_thread_id {nxt!r}"
        assert nxt == on, f"next_thread_id {nxt:#x} != tid() {on:#x} inside the callback"


def _n4():
    return R.coordinates(), R.hash()


def _n3():
    return _n4()


def _n2():
    return _n3()


def _n1():
    return _n2()


def item_67_queries_inside_a_switch_callback():
    rec = []

    def cb(prev, nxt):
        direct = (R.coordinates(), R.hash())
        rec.append((direct, _n1()))

    with switch_interval(1e-6), Busy(2):
        R.root_space.thread_switch = cb
        try:
            deadline = time.monotonic() + 10
            while len(rec) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            snap = list(rec)
        finally:
            R.root_space.thread_switch = None
    assert snap, "no switch callback within 10 s"
    for direct, deep in snap:
        well_formed(direct[0], "R.coordinates() inside the switch callback")
        assert type(direct[1]) is int and 0 <= direct[1] < WORD, f"R.hash() {direct[1]!r}"
        assert deep == direct, f"four nested helpers see {deep}, the callback {direct}"


def item_68_callbacks_filtered_by_space():
    S = R.CoordinateSpace()
    recR, recS = [], []

    def cbR(prev, nxt):
        recR.append(tid())

    def cbS(prev, nxt):
        recS.append(tid())

    # Main registers, waits and snapshots inside the disabled space, so that it
    # never reaches a root or S boundary while the callbacks are registered.
    def measure():
        R.root_space.thread_switch = cbR
        S.thread_switch = cbS
        try:
            deadline = time.monotonic() + 10
            while (not recR or not recS) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.1)
            return list(recR), list(recS)
        finally:
            S.thread_switch = None
            R.root_space.thread_switch = None

    with switch_interval(1e-4), Busy(2) as root_busy, Busy(2, space=S) as s_busy:
        snapR, snapS = R.run_disabled(measure)
        root_ids, s_ids = set(root_busy.ids), set(s_busy.ids)
    assert len(root_ids) == 2 and len(s_ids) == 2 and not root_ids & s_ids, (root_ids, s_ids)
    assert snapR, "no root callback within 10 s"
    assert snapS, "no S callback within 10 s"
    bad = [hex(t) for t in snapR if t not in root_ids]
    assert not bad, f"root callback ran on non-root-worker threads {bad} (root workers {[hex(t) for t in root_ids]})"
    bad = [hex(t) for t in snapS if t not in s_ids]
    assert not bad, f"S callback ran on non-S-worker threads {bad} (S workers {[hex(t) for t in s_ids]})"


def item_69_single_thread_in_space_gets_no_callback():
    S = R.CoordinateSpace()
    rec = []

    def cb(prev, nxt):
        rec.append((prev, nxt, tid()))

    with switch_interval(1e-4), Busy(1, space=S) as s_busy, Busy(1) as root_busy:
        S.thread_switch = cb
        try:
            before = (s_busy.counters[0], root_busy.counters[0])
            time.sleep(0.5)
            after = (s_busy.counters[0], root_busy.counters[0])
            snap = list(rec)
        finally:
            S.thread_switch = None
    assert after[0] > before[0] and after[1] > before[1], f"workers did not both run in the window: {before} {after}"
    assert snap == [], f"S callback with a single S thread: {snap}"


# ---------------------------------------------------------------- handoff scenarios


def item_70_callback_reports_the_previous_space_thread():
    S = R.CoordinateSpace()
    rec = []
    res = {}

    def cb(prev, nxt):
        rec.append((prev, nxt, tid()))

    ho = Handoff()
    h, ids = ho.h, ho.ids

    def a():
        x = 0
        for i in range(1000):
            x += i
        h.to(ids["B"])

    def b():
        y = sum(i * i for i in range(200))
        res["y"] = y
        h.to(ids["C"])

    def c():
        res["first"] = list(rec)
        res["C"] = tid()
        h.close()

    with ho:
        try:
            ho.worker("A", a, space=S)
            ho.worker("B", b)
            ho.worker("C", c, space=S)
            ho.wait_parked()
            S.thread_switch = cb
            h.to(ids["A"])
        finally:
            S.thread_switch = None
    assert "first" in res, f"C never ran: {res}"
    first = res["first"]
    C = ids["C"]
    assert len(first) == 1, f"C's first statement sees {len(first)} callbacks: {first}"
    prev, nxt, on = first[0]
    assert on == C, f"callback delivered on {on:#x}, not C {C:#x}"
    assert nxt == C, f"next_thread_id {nxt:#x}, not C {C:#x}"
    delta_shape(prev)
    assert prev[0] == 0, f"A's first S delta has [0] = {prev[0]}: {prev}"
    assert len(prev) >= 3, f"A's first S delta carries no frame: {prev}"


def item_71_return_to_the_same_space_thread():
    S = R.CoordinateSpace()
    rec = []
    res = {}

    def cb(prev, nxt):
        rec.append((prev, nxt, tid()))

    ho = Handoff()
    h, ids = ho.h, ho.ids

    def a():
        x = 0
        for i in range(1000):
            x += i
        h.to(ids["B"])
        res["at_A"] = list(rec)
        # Witness that the callback is live: a different S thread is reported.
        h.to(ids["C"])

    def b():
        y = sum(i * i for i in range(200))
        res["y"] = y
        h.to(ids["A"])

    def c():
        res["first_C"] = list(rec)
        h.close()

    with ho:
        try:
            ho.worker("A", a, space=S)
            ho.worker("B", b)
            ho.worker("C", c, space=S)
            ho.wait_parked()
            S.thread_switch = cb
            h.to(ids["A"])
        finally:
            S.thread_switch = None
    assert "at_A" in res, f"A was not resumed by B: {res}"
    assert res["at_A"] == [], f"A in S, B outside, A in S reported callbacks: {res['at_A']}"
    first_C = res.get("first_C")
    assert first_C is not None, "C never ran"
    assert len(first_C) == 1 and first_C[0][2] == ids["C"], f"witness: C should see one callback on C: {first_C}"
    delta_shape(first_C[0][0])


def _a72(box):
    box["sentinel"] = _thread._set_sentinel()
    box["id"] = tid()
    x = 0
    for i in range(1000):
        x += i
    box["x"] = x
    box["signal"].release()


def item_72_completed_thread_gives_none():
    S = R.CoordinateSpace()
    rec = []
    res = {}

    def cb(prev, nxt):
        rec.append((prev, nxt, tid()))

    ho = Handoff()
    h, ids = ho.h, ho.ids

    def b():
        res["first"] = list(rec)
        h.close()

    with ho:
        try:
            ho.worker("B", b, space=S)
            ho.wait_parked()
            S.thread_switch = cb
            box = {"signal": _thread.allocate_lock()}
            box["signal"].acquire()
            # Erratum 3: start A with _thread.start_new_thread inside S, so that
            # main's own thread-start bookkeeping does not run in S.
            S.run(_thread.start_new_thread, _a72, (box,))
            assert box["signal"].acquire(timeout=30), "A did not finish its loop"
            assert box["sentinel"].acquire(timeout=30), "A's thread state was not released (join)"
            time.sleep(0.05)
            h.to(ids["B"])
        finally:
            S.thread_switch = None
    assert "first" in res, "B never ran"
    B = ids["B"]
    assert box.get("id") not in (None, B), box
    assert res["first"] == [(None, B, B)], (
        f"B's first statement sees {res['first']}, expected [(None, B={B:#x}) on B]"
    )


def item_73_space_callback_across_a_worker_lifetime():
    S = R.CoordinateSpace()
    rec = []
    box = {}

    def cb(prev, nxt):
        rec.append((prev, nxt, tid()))

    def work():
        box["id"] = tid()
        x = 0
        for i in range(20000):
            x += i
        box["x"] = x

    def body():
        S.thread_switch = cb
        try:
            t = threading.Thread(target=work, daemon=True)
            t.start()
            t.join(60)
            box["alive"] = t.is_alive()
            return list(rec)
        finally:
            S.thread_switch = None

    main_id = tid()
    snap = S.run(body)
    assert box.get("alive") is False, "worker did not finish"
    W = box["id"]
    assert snap, "no S callback"
    prev, nxt, on = snap[0]
    assert on == W and nxt == W, f"first callback not on the worker {W:#x}: {snap[0]}"
    delta_shape(prev, "first callback's previous_delta")
    assert snap[-1] == (None, main_id, main_id), f"last callback {snap[-1]}, expected (None, main={main_id:#x}) on main"


def item_74_switch_precedes_the_worker_body():
    events = []

    def cb(prev, nxt):
        events.append(("switch", tid(), prev, nxt))

    def body():
        events.append(("body", tid()))

    main_id = tid()
    R.root_space.thread_switch = cb
    try:
        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join(60)
        alive = t.is_alive()
        snap = list(events)
    finally:
        R.root_space.thread_switch = None
    assert not alive, "worker did not finish"
    bodies = [e for e in snap if e[0] == "body"]
    assert len(bodies) == 1, f"body events {bodies}"
    W = bodies[0][1]
    mine = [e for e in snap if e[1] == W]
    assert mine[0][0] == "switch", f"worker's first event is not a switch: {mine}"
    first_other = next(e for e in mine if e[0] != "switch")
    assert first_other[0] == "body", f"worker's first non-switch event {first_other}"
    assert mine[0][3] == W, f"first switch on the worker has next_thread_id {mine[0][3]!r}, worker {W:#x}"
    delta_shape(mine[0][2], "worker's first previous_delta")
    switches = [e for e in snap if e[0] == "switch"]
    assert switches[-1] == ("switch", main_id, None, main_id), (
        f"last callback {switches[-1]}, expected (None, main={main_id:#x}) on main"
    )


def item_75_thread_pool_worker():
    events = []

    def cb(prev, nxt):
        events.append(("switch", tid()))

    def body():
        events.append(("body", tid()))

    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        ex.submit(lambda: None).result(timeout=30)  # warm-up: the worker exists and idles
        R.root_space.thread_switch = cb
        try:
            ex.submit(body).result(timeout=30)
            snap = list(events)
        finally:
            R.root_space.thread_switch = None
    finally:
        ex.shutdown(wait=True)
    bodies = [e for e in snap if e[0] == "body"]
    assert len(bodies) == 1, f"body events {bodies}"
    W = bodies[0][1]
    mine = [e[0] for e in snap if e[1] == W]
    assert mine and mine[0] == "switch", f"no switch precedes the worker's body: worker events {mine}"


def item_76_callback_exceptions_and_results():
    calls = []
    done = []

    def raising(prev, nxt):
        calls.append(tid())
        raise RuntimeError("switch callback failure (item 76)")

    def work():
        x = 0
        for i in range(10000):
            x += i
        done.append(x)

    with unraisables() as got:
        R.root_space.thread_switch = raising
        try:
            stored = R.root_space.thread_switch
            t = threading.Thread(target=work, daemon=True)
            t.start()
            t.join(60)
            alive = t.is_alive()
            after_join = True
        finally:
            R.root_space.thread_switch = None
        snap = list(got)
    assert after_join and not alive, "main or the worker did not continue"
    assert done, "worker did not complete its body after a failing callback"
    assert calls, "the raising callback never ran"
    assert snap, "no sys.unraisablehook call for the raising callback"
    for exc_type, exc, obj, _ in snap:
        assert exc_type is RuntimeError, f"unraisable {exc_type}: {exc!r}"
        assert obj is stored, f"unraisable object {obj!r} is not the stored callback {stored!r}"

    calls2 = []
    done.clear()

    def returning(prev, nxt):
        calls2.append(tid())
        return 42

    with unraisables() as got2:
        R.root_space.thread_switch = returning
        try:
            t = threading.Thread(target=work, daemon=True)
            t.start()
            t.join(60)
            alive = t.is_alive()
        finally:
            R.root_space.thread_switch = None
        snap2 = list(got2)
    assert not alive and done, "worker did not complete with a value-returning callback"
    assert calls2, "the value-returning callback never ran"
    assert snap2 == [], f"a callback's return value was reported: {snap2}"


def item_77_delta_is_the_previous_threads_thread_delta():
    S = R.CoordinateSpace()
    sid = S.id
    rec = []
    res = {}
    ho = Handoff()
    h, ids = ho.h, ho.ids

    def cb(prev, nxt):
        me = tid()
        other = ids["B"] if me == ids["A"] else ids["A"]
        try:
            W = _r.coordinates(other, 0, sid)
        except Exception as e:  # noqa: B902 - recorded, checked below
            W = e
        rec.append((me, prev, nxt, W))

    def a_helper():
        res["pre"] = _r.coordinates(None, 0, sid)
        res["m"] = _r.thread_delta(sid)
        h.to(ids["B"])  # switch 2: reported on B relative to the manual delta

    def a():
        h.to(ids["B"])  # switch 1: A's first S delta, reported on B
        a_helper()

    def b():
        h.to(ids["A"])
        res["rec"] = list(rec)  # before close(): later wake-ups add unrelated callbacks
        h.close()

    with ho:
        try:
            ho.worker("A", a, space=S)
            ho.worker("B", b, space=S)
            ho.wait_parked()
            S.thread_switch = cb
            h.to(ids["A"])
        finally:
            S.thread_switch = None
    A, B = ids["A"], ids["B"]
    assert "rec" in res, f"B did not get its second turn: {res}"
    snap = res["rec"]
    onB = [r for r in snap if r[0] == B]
    onA = [r for r in snap if r[0] == A]
    assert len(onB) == 2, f"callbacks on B: {onB}"
    assert len(onA) == 1, f"callbacks on A: {onA}"
    assert len(snap) == 3, f"callbacks on other threads: {snap}"
    for me, prev, nxt, W in snap:
        assert nxt == me, f"next_thread_id {nxt:#x} != thread {me:#x}"
        well_formed(W, "previous thread's S coordinates")
        delta_shape(prev)
        assert 0 <= prev[0] <= len(W) and prev[1:] == W[prev[0] :], (
            f"delta {prev} does not end the previous thread's coordinates {W}"
        )
    # Switch 1: A's first delta in S.
    _, d1, _, W1 = onB[0]
    assert d1 == (0, *W1), f"first delta of A {d1}, expected (0, *{W1})"
    # B's first delta, reported on A.
    _, dB, _, WB = onA[0]
    assert dB == (0, *WB), f"first delta of B {dB}, expected (0, *{WB})"
    # The manual delta in a_helper is relative to switch 1 (a_main's pair changed).
    pre, m = res["pre"], res["m"]
    well_formed(pre, "A's S coordinates in a_helper")
    assert isinstance(m, tuple) and len(m) == 5, f"manual _r.thread_delta() {m!r}, coordinates {pre}"
    assert m[0] == len(pre) - 4, f"manual delta {m} not relative to the switch-1 delta (coordinates {pre})"
    assert m[1:3] == pre[-4:-2] and m[4] == 0 and m[3] > pre[-2], f"manual delta {m} vs coordinates {pre}"
    # Switch 2: relative to the manual delta, so only a_helper's instruction changed.
    _, d2, _, W3 = onB[1]
    assert len(W3) == len(pre), f"A's coordinates at switch 2 {W3} vs in a_helper {pre}"
    assert d2[0] == len(W3) - 2, (
        f"switch-2 delta {d2} is not relative to the manual _r.thread_delta() {m} "
        f"(expected [0] = {len(W3) - 2}; relative to switch 1 it would be {len(W3) - 4})"
    )
    assert d2 == (len(W3) - 2, *W3[-2:]), f"switch-2 delta {d2}, coordinates {W3}"


def item_78_ids_are_known_thread_ids():
    rec = []

    def cb(prev, nxt):
        rec.append((nxt, nxt in threading._active))

    def work():
        x = 0
        for i in range(30000):
            x += i

    raw = {"lock": _thread.allocate_lock()}
    raw["lock"].acquire()

    def raw_worker():
        raw["id"] = tid()
        work()
        raw["lock"].release()

    ws = Workers()
    with switch_interval(1e-5):
        R.root_space.thread_switch = cb
        try:
            for _ in range(3):
                ws.thread(work)
            _thread.start_new_thread(raw_worker, ())
            assert raw["lock"].acquire(timeout=60), "_thread worker did not finish"
            ws.join()
            snap = list(rec)
        finally:
            R.root_space.thread_switch = None
    known = {tid(), raw["id"]} | {t.ident for t in ws.threads}
    assert snap, "no switch callback"
    for nxt, active in snap:
        assert type(nxt) is int, f"next_thread_id {nxt!r}"
        assert active or nxt in known, f"callback id {nxt:#x} is neither in threading._active nor a worker id"


def _w79_plain(box):
    box["sentinel"] = _thread._set_sentinel()
    box["id"] = tid()
    box["lock"].release()


def _w79_closure(box):
    def w():
        box["sentinel"] = _thread._set_sentinel()
        box["id"] = tid()
        box["lock"].release()

    assert w.__code__.co_freevars, "w is not a closure"
    return w


def _run_79(start):
    rec = []

    def cb(prev, nxt):
        rec.append((prev, nxt, tid()))

    box = {"lock": _thread.allocate_lock()}
    box["lock"].acquire()
    R.root_space.thread_switch = cb
    try:
        start(box)
        assert box["lock"].acquire(timeout=30), "worker did not run"
        assert box["sentinel"].acquire(timeout=30), "worker's thread state was not released"
        snap = list(rec)
    finally:
        R.root_space.thread_switch = None
    return box["id"], snap


def item_79_first_boundary_decides():
    # A large switch interval keeps main from being preempted before it blocks
    # on the lock, so the worker's first boundary is the first after a change.
    with switch_interval(1.0):
        wid, snap = _run_79(lambda box: _thread.start_new_thread(_w79_closure(box), ()))
        on_worker = [r for r in snap if r[2] == wid]
        assert on_worker == [], f"closure worker (first boundary COPY_FREE_VARS) got callbacks {on_worker}"

        wid, snap = _run_79(lambda box: _thread.start_new_thread(_w79_plain, (box,)))
        on_worker = [r for r in snap if r[2] == wid]
        assert len(on_worker) == 1, f"non-closure worker got {len(on_worker)} callbacks: {snap}"
        prev, nxt, _ = on_worker[0]
        assert nxt == wid, f"next_thread_id {nxt!r}, worker {wid:#x}"
        delta_shape(prev)


if __name__ == "__main__":
    _runner.main(globals())
