"""Conformance checklist area F, deltas and hashes (SEMANTICS §21 items 54–58; §8.2, §8.3, §9).

Item 58 checks the Python model of §9 (retrace_model.py) against every
Appendix C vector, then the runtime against the model where the inputs are
known: the main thread id, a fresh space's first and second run, and a
thread started from a fresh space without frames.
"""

import _thread
import functools
import operator
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _runner  # noqa: E402
import retrace_model  # noqa: E402

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


class Stack:
    """Consumer of a delta stream: `del stack[d[0]:]; stack.extend(d[1:])`."""

    def __init__(self):
        self.words = []
        self.count = 0

    def apply(self, d, what="delta"):
        assert isinstance(d, tuple) and d, f"{what} is not a non-empty tuple: {d!r}"
        assert all(type(w) is int and 0 <= w < WORD for w in d), f"{what} has non-words: {d!r}"
        if self.count == 0:
            assert d[0] == 0, f"first {what} of the thread has d[0] = {d[0]}: {d!r}"
        assert 0 <= d[0] <= len(self.words), f"{what} d[0] = {d[0]} outside [0, {len(self.words)}]: {d!r}"
        del self.words[d[0] :]
        self.words.extend(d[1:])
        self.count += 1
        return tuple(self.words)


def check_rebuilt(rebuilt, live, what):
    """`rebuilt` (from a delta) and `live` (a later sample in the same frame) agree but for the leaf pair."""
    well_formed(rebuilt, f"rebuilt stack at {what}")
    assert len(rebuilt) == len(live), f"rebuilt length {len(rebuilt)} != live {len(live)} at {what}: {rebuilt} {live}"
    assert rebuilt[:-2] == live[:-2], f"rebuilt prefix differs at {what}: {rebuilt} {live}"


def item_54_delta_stream_rebuilds_the_stack():
    def run_checks():
        st = Stack()
        r = st.apply(_r.thread_delta(), "top-level delta")
        check_rebuilt(r, _r.coordinates(), "top level")

        def nested():
            r = st.apply(_r.thread_delta(), "nested delta")
            check_rebuilt(r, _r.coordinates(), "nested")

        nested()
        r = st.apply(_r.thread_delta(), "second top-level delta")
        check_rebuilt(r, _r.coordinates(), "top level again")

    # On a thread that never took a delta before (a fresh worker), and on the main thread.
    errors = []

    def worker():
        try:
            run_checks()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    t.join(60)
    if errors:
        raise errors[0]
    run_checks()


def item_55_deltas_on_two_threads():
    barrier = threading.Barrier(2, timeout=30)
    errors = []

    def three():
        try:
            barrier.wait()
            st = Stack()
            for i in range(3):
                r = st.apply(_r.thread_delta(), f"delta {i}")
                check_rebuilt(r, _r.coordinates(), f"delta {i}")
        except BaseException as e:
            errors.append(e)

    ts = [threading.Thread(target=three, daemon=True) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    if errors:
        raise errors[0]

    def many():
        try:
            barrier.wait()
            st = Stack()
            for i in range(200):
                r = st.apply(_r.thread_delta(), f"delta {i}")
                live = _r.coordinates()
                assert len(r) == len(live), f"delta {i}: rebuilt {r}, live {live}"
        except BaseException as e:
            errors.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        ts = [threading.Thread(target=many, daemon=True) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
    finally:
        sys.setswitchinterval(old)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in ts), "delta threads did not finish"


def item_56_unused_space_gives_none():
    sid = _r.allocate_space_id()
    assert _r.thread_delta(sid) is None, _r.thread_delta(sid)
    assert _r.hash(sid) is None, _r.hash(sid)


def hash_helper():
    return _r.hash()


def item_57_hash_values():
    h = _r.hash()
    assert type(h) is int and 0 <= h < WORD, repr(h)
    hs = [hash_helper() for _ in range(3)]
    assert len(set(hs)) == 3, f"hashes from a comprehension not distinct: {hs}"


def item_58_location_hash_model():
    variant = "B" if (sys.maxsize <= 2**32 or (sys.platform == "win32" and "MSC" in sys.version)) else "A"
    for v in ("A", "B"):
        bad = retrace_model.check_appendix_c(v)
        assert not bad, f"the test's own §9 model misses Appendix C ({v}): {bad}"
    m = retrace_model.Model(variant)
    me = tid()
    problems = []  # every comparison runs; all mismatches are reported together

    # The main thread id from the seed in the environment (no parent, no collision).
    if os.name == "posix":
        seed = os.environb.get(b"RETRACE_ROOT_SEED", b"retrace")
    else:
        seed = os.environ.get("RETRACE_ROOT_SEED", "retrace").encode()
    want = m.assign(0, None, (), seed)
    if me != want:
        problems.append(f"main id {me:#x}, model {want:#x} (mixer {variant}, seed {seed!r})")

    # A fresh space: first run at root counter 0, second at 1, seed = the thread id. The
    # coordinates and the hash are taken at one boundary: both native queries are called
    # from C within the same instruction of `leaf`.
    S = R.CoordinateSpace()

    def leaf():
        return tuple(map(operator.call, [S.coordinates, S.hash]))

    c1, h1 = S.run(leaf)
    c2, h2 = S.run(leaf)
    well_formed(c1, "space tuple")
    for run, rc, c, h in ((1, 0, c1, h1), (2, 1, c2, h2)):
        w = m.location_hash(me, rc, c)
        if h != w:
            problems.append(f"fresh-space run {run} hash {h:#x}, model {w:#x} for {c} at root counter {rc}")

    # with_new_coordinates: the callable's frame is a root frame of a fresh space, root counter 0.
    fresh_sid = _r.allocate_space_id() + 1  # with_new_coordinates consumes the next id (§11.1)

    def fresh():
        queries = [functools.partial(_r.coordinates, None, 0, fresh_sid), functools.partial(_r.hash, fresh_sid)]
        return tuple(map(operator.call, queries))

    c3, h3 = R.with_new_coordinates(fresh)
    well_formed(c3, "with_new_coordinates tuple")
    want3 = m.location_hash(me, 0, c3)
    if h3 != want3:
        problems.append(f"with_new_coordinates hash {h3:#x}, model {want3:#x} for {c3}")

    # A thread started from a fresh space with no frame: thread_seed mixes only the parent id.
    S2 = R.CoordinateSpace()
    box = []
    done = threading.Event()

    def w():
        box.append(tid())
        done.set()

    child = S2.run(_thread.start_new_thread, w, ())
    assert done.wait(30), "thread did not run"
    want4 = m.assign(S2.id, me, ())
    if child != box[0]:
        problems.append(f"start_new_thread returned {child:#x}, the thread read {box[0]:#x}")
    if box[0] != want4:
        problems.append(f"child id {box[0]:#x}, model {want4:#x} (parent {me:#x}, space {S2.id})")
    assert not problems, "; ".join(problems)


if __name__ == "__main__":
    _runner.main(globals())
