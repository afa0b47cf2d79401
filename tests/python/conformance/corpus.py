"""Generated corpus: coordinate transcripts of small programs, checked by rules.

Each program records `_retrace.coordinates()` samples at known points into a
transcript and runs RUNS times (the first run is cold, the specialising
interpreter has quickened everything by the last). Every transcript must
satisfy rules that hold regardless of specialisation (SEMANTICS §4, §5, §6,
§8.1):

R1  well-formed: a non-empty even-length tuple of words;
R2  the leaf ordinal is 0;
R3  samples of one frame segment (a frame between activation and
    deactivation) have equal length and equal words but the leaf pair
    (ancestors are frozen mid-instruction);
R4  successive samples of one frame (across its segments) have strictly
    increasing instruction words (loops never repeat a coordinate), except
    at a sample flagged "r" that follows a same-frame re-raise through a
    saved `lasti` (§4.2: such a handler can lie below earlier coordinates);
R5  a sample of a segment whose caller segment is known is exactly one pair
    longer than the caller's samples, with the caller's ancestors as prefix;
R6  inside a segment, the caller pair seen by children orders with the
    segment's own samples: children run at later instructions than earlier
    own samples and before later ones; children in the same instruction see
    strictly increasing ordinals. An asynchronous child (signal handler) is
    only required to follow the earlier own samples: run from the
    eval-breaker check of a JUMP_BACKWARD it sees the frame already rebased
    by the jump (§4.2) but still at the jump's index;
R7  a sample with an expected caller ordinal (an int, or a tuple for the
    caller, its caller, …) sees exactly that, e.g. map/sorted/filter
    callbacks 0, 1, 2, … and generator resumes bumping their resumer;
R8  programs flagged stable (no Python-level call inside the sampled
    region) give equal cold and warm transcripts below the driver's pair;
    the others may differ there (§4.2, 3.12: a call entered inline through a
    specialised instruction versus through C) and are checked by R1–R7 only.

Run as `corpus.py [program_<name> …]`; prints PASS/FAIL per program.
"""

import asyncio
import dis
import functools
import itertools
import operator
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _runner  # noqa: E402

import _retrace  # noqa: E402

WORD = 2**64
RUNS = 10

# Sampling must add no Python frame: only C callables appear in sample statements.
_c = _retrace.coordinates
_act = itertools.count(1).__next__

# A sample is (segment, caller segment or None, label, coordinates, expected caller ordinal(s) or None, flags).
# A segment is (frame token, segment token); plain functions use (token, 0).


# ---------------------------------------------------------------------------
# Programs. Each takes (rec, P): `rec` appends a sample, `P` is the driver's segment.


def prog_loops(rec, P):
    s = (_act(), 0)
    rec((s, P, "start", _c(), 0, ""))
    for i in range(4):
        rec((s, P, "for-range", _c(), 0, ""))
    i = 0
    while i < 4:
        rec((s, P, "while", _c(), 0, ""))
        i += 1
    for i in range(3):
        for j in range(4):
            if j == 1:
                continue
            rec((s, P, "nested", _c(), 0, ""))
            if i == 2 and j == 2:
                break
    for x in [1, 2, 3]:
        rec((s, P, "for-list", _c(), 0, ""))
    for x in (1, 2, 3):
        rec((s, P, "for-tuple", _c(), 0, ""))
    squares = [k * k for k in range(5)]
    rec((s, P, "after-comprehension", _c(), 0, ""))
    total = 0
    for k in squares:
        total += k
        if total > 5:
            rec((s, P, "branch", _c(), 0, ""))
    rec((s, P, "end", _c(), 0, ""))


def _big_source(n=300):
    """A function whose jumps need EXTENDED_ARG: a loop over > 256 statements and a forward skip over as many."""
    lines = [
        "def prog_big(rec, P):",
        "    s = (_act(), 0)",
        '    rec((s, P, "start", _c(), 0, ""))',
        "    x = 0",
        "    for i in range(3):",
        '        rec((s, P, "loop-top", _c(), 0, ""))',
        "        if i == 1:",
    ]
    lines += ["            x = x + 1"] * n
    lines += ['            rec((s, P, "skipped-block", _c(), 0, ""))']
    lines += ["        x = x + 2"] * n
    lines += ['        rec((s, P, "loop-bottom", _c(), 0, ""))']
    lines += ['    rec((s, P, "end", _c(), 0, ""))', "    return x"]
    return "\n".join(lines) + "\n"


exec(compile(_big_source(), "<corpus-big>", "exec"), globals())


def prog_exceptions(rec, P):
    s = (_act(), 0)
    rec((s, P, "start", _c(), 0, ""))
    for i in range(3):
        try:
            rec((s, P, "try", _c(), 0, ""))
            if i != 1:
                raise ValueError(i)
            rec((s, P, "no-raise", _c(), 0, ""))
        except ValueError:
            rec((s, P, "except", _c(), 0, ""))
        finally:
            rec((s, P, "finally", _c(), 0, ""))
    try:
        try:
            rec((s, P, "inner-try", _c(), 0, ""))
            raise KeyError("k")
        finally:
            rec((s, P, "inner-finally", _c(), 0, ""))
    except KeyError:
        rec((s, P, "outer-except", _c(), 0, "r"))
    lock = threading.Lock()
    with lock:
        rec((s, P, "with", _c(), 0, ""))
    try:
        with lock:
            rec((s, P, "with-raise", _c(), 0, ""))
            raise OSError("o")
    except OSError:
        rec((s, P, "after-with-raise", _c(), 0, "r"))
    try:
        try:
            raise ValueError("v")
        except ValueError as e:
            rec((s, P, "except-as", _c(), 0, ""))
            raise KeyError("k") from e
    except KeyError:
        rec((s, P, "reraised-from-except", _c(), 0, "r"))
    rec((s, P, "end", _c(), 0, ""))


def prog_recursion(rec, P):
    s = (_act(), 0)
    rec((s, P, "start", _c(), 0, ""))

    def fact(n, parent):
        t = (_act(), 0)
        rec((t, parent, "pre", _c(), 0, ""))
        r = 1 if n <= 1 else n * fact(n - 1, t)
        rec((t, parent, "post", _c(), 0, ""))
        return r

    def fib(n, parent):
        t = (_act(), 0)
        rec((t, parent, "fib", _c(), 0, ""))
        if n < 2:
            return n
        return fib(n - 1, t) + fib(n - 2, t)

    fact(6, s)
    rec((s, P, "between", _c(), 0, ""))
    fib(5, s)
    rec((s, P, "end", _c(), 0, ""))


def prog_generators(rec, P):
    s = (_act(), 0)
    rec((s, P, "start", _c(), 0, ""))

    def gen(n, listed):
        g = _act()
        for i in range(n):
            # Resumed by list(): the resumer's ordinal counts earlier resume/suspend cycles.
            rec(((g, _act()), s, "gen", _c(), i if listed else 0, ""))
            yield i

    list(gen(3, True))
    rec((s, P, "after-list", _c(), 0, ""))
    for v in gen(3, False):
        rec((s, P, "for-body", _c(), 0, ""))

    order = iter([0, 2])

    def cb():
        rec(((_act(), 0), s, "call", _c(), next(order), ""))

    def one():
        rec(((_act(), _act()), s, "one", _c(), 1, ""))
        yield 1

    g1 = one()
    # The generator's resume/suspend between the two calls bumps the caller once.
    list(map(operator.call, [cb, functools.partial(next, g1), cb]))
    rec((s, P, "after-map", _c(), 0, ""))

    def plain():
        rec(((_act(), 0), s, "plain", _c(), (0,), ""))

    def genfn():
        yield 1

    order2 = iter([0, 2])

    def cb2():
        rec(((_act(), 0), s, "call2", _c(), next(order2), ""))

    # A generator function's prologue frame bumps too (checklist item 20).
    list(map(operator.call, [cb2, genfn, cb2]))
    plain()

    cell = [None]

    def inner():
        it = _act()
        rec(((it, _act()), cell[0], "inner", _c(), 0, ""))
        yield 1
        # Resumed through the outer generator (caller ordinal 0, list() instruction at 1).
        rec(((it, _act()), None, "inner-2", _c(), (0, 1), ""))
        yield 2
        return 3

    def outer():
        ot = _act()
        seg = (ot, _act())
        rec((seg, s, "outer", _c(), 0, ""))
        cell[0] = seg
        r = yield from inner()
        rec(((ot, _act()), s, "outer-after", _c(), 2, ""))
        yield r

    assert list(outer()) == [1, 2, 3]
    rec((s, P, "end", _c(), 0, ""))


def prog_coroutines(rec, P):
    s = (_act(), 0)
    rec((s, P, "start", _c(), 0, ""))
    cell = [None]

    async def leaf(fut):
        lt = _act()
        rec(((lt, _act()), cell[0], "leaf", _c(), 0, ""))
        v = await fut
        rec(((lt, _act()), None, "leaf-after", _c(), 0, ""))
        return v

    async def waiter(fut):
        wt = _act()
        seg = (wt, _act())
        rec((seg, None, "waiter", _c(), None, ""))
        cell[0] = seg
        v = await leaf(fut)
        rec(((wt, _act()), None, "waiter-after", _c(), None, ""))
        return v + 1

    async def main():
        mt = _act()
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        task = loop.create_task(waiter(fut))
        rec(((mt, _act()), None, "main", _c(), None, ""))
        await asyncio.sleep(0)
        rec(((mt, _act()), None, "main-2", _c(), None, ""))
        fut.set_result(7)
        v = await task
        rec(((mt, _act()), None, "main-3", _c(), None, ""))
        return v

    assert asyncio.run(main()) == 8
    rec((s, P, "end", _c(), 0, ""))


def prog_callbacks(rec, P):
    s = (_act(), 0)
    rec((s, P, "start", _c(), 0, ""))
    n = [0]

    def helper(parent):
        rec(((_act(), 0), parent, "helper", _c(), 0, ""))

    def cb(v):
        t = (_act(), 0)
        rec((t, s, "callback", _c(), n[0], ""))
        n[0] += 1
        if v == 2:
            helper(t)
        return v

    list(map(cb, range(4)))
    rec((s, P, "after-map", _c(), 0, ""))
    n[0] = 0
    sorted([3, 1, 2, 5], key=cb)
    rec((s, P, "after-sorted", _c(), 0, ""))
    n[0] = 0
    list(filter(cb, [1, 2, 3]))
    rec((s, P, "after-filter", _c(), 0, ""))
    n[0] = 0
    max([4, 2, 7], key=cb)
    rec((s, P, "end", _c(), 0, ""))


def prog_properties(rec, P):
    s = (_act(), 0)
    rec((s, P, "start", _c(), 0, ""))

    class Obj:
        @property
        def prop(self):
            rec(((_act(), 0), s, "property", _c(), 0, ""))
            return 1

        def __getitem__(self, k):
            rec(((_act(), 0), s, "getitem", _c(), 0, ""))
            return k

    o = Obj()
    total = 0
    for i in range(4):
        rec((s, P, "loop", _c(), 0, ""))
        total += o.prop
        total += o[i]
        rec((s, P, "loop-end", _c(), 0, ""))
    rec((s, P, "end", _c(), 0, ""))


def prog_closures(rec, P):
    s = (_act(), 0)
    rec((s, P, "start", _c(), 0, ""))

    def make(k):
        def inner(parent):
            rec(((_act(), 0), parent, "inner", _c(), 0, ""))
            return k

        return inner

    fs = [make(k) for k in range(3)]
    for f in fs:
        f(s)
        rec((s, P, "after-inner", _c(), 0, ""))

    def counter():
        n = 0

        def bump():
            nonlocal n
            n += 1
            return n

        t = (_act(), 0)
        for i in range(3):
            rec((t, s, "counter", _c(), 0, ""))
            bump()
        return n

    counter()
    rec((s, P, "end", _c(), 0, ""))


def prog_signals(rec, P):
    s = (_act(), 0)
    rec((s, P, "start", _c(), 0, ""))
    code = sys._getframe().f_code
    active = [True]

    def handler(signum, frame):
        # Only handlers interrupting this program's own frame are related to `s`.
        if active[0] and frame is not None and frame.f_code is code:
            rec(((_act(), 0), s, "handler", _c(), None, "a"))

    old_usr1 = signal.signal(signal.SIGUSR1, handler)
    old_alrm = signal.signal(signal.SIGALRM, handler)
    try:
        for i in range(4):
            rec((s, P, "kill-loop", _c(), 0, ""))
            os.kill(os.getpid(), signal.SIGUSR1)
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        deadline = time.monotonic() + 0.015
        while time.monotonic() < deadline:
            rec((s, P, "timer-loop", _c(), 0, ""))
        signal.setitimer(signal.ITIMER_REAL, 0)
        for i in range(100):
            pass  # let a signal tripped before the disarm reach the handler
        active[0] = False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alrm)
        signal.signal(signal.SIGUSR1, old_usr1)
    rec((s, P, "end", _c(), 0, ""))


def prog_threads(rec, P):
    s = (_act(), 0)
    rec((s, P, "start", _c(), 0, ""))

    def leaf(parent):
        rec(((_act(), 0), parent, "leaf", _c(), 0, ""))

    def worker(k):
        w = (_act(), 0)
        for i in range(3):
            rec((w, None, "worker", _c(), None, ""))
            leaf(w)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    rec((s, P, "end", _c(), 0, ""))


# ---------------------------------------------------------------------------
# Driver and rules.


def drive(prog, runs=RUNS):
    transcripts = []
    for _ in range(runs):
        S = []
        rec = S.append
        d = (_act(), 0)
        rec((d, None, "driver", _c(), None, ""))
        prog(rec, d)
        transcripts.append(S)
    return transcripts


def check(transcript):
    """Rules R1–R7 on one transcript; returns a list of violations."""
    errs = []
    own = {}  # segment -> [(index, coordinates)]
    by_frame = {}  # frame token -> [(index, label, coordinates, flags)]
    for idx, (seg, parent, label, c, expect, flags) in enumerate(transcript):
        where = f"#{idx} {label}"
        if not (isinstance(c, tuple) and c and len(c) % 2 == 0 and all(type(w) is int and 0 <= w < WORD for w in c)):
            errs.append(f"R1 {where}: not a well-formed tuple: {c!r}")
            continue
        if c[-1] != 0:
            errs.append(f"R2 {where}: leaf ordinal {c[-1]}: {c}")
        own.setdefault(seg, []).append((idx, c))
        by_frame.setdefault(seg[0], []).append((idx, label, c, flags))
        if expect is not None:
            want = (expect,) if isinstance(expect, int) else tuple(expect)
            got = tuple(c[-3 - 2 * k] if 3 + 2 * k <= len(c) else None for k in range(len(want)))
            if got != want:
                errs.append(f"R7 {where}: caller ordinal(s) {got}, expected {want}: {c}")
    if errs:
        return errs
    for seg, samples in own.items():
        first = samples[0][1]
        for idx, c in samples[1:]:
            if len(c) != len(first) or c[:-2] != first[:-2]:
                errs.append(f"R3 #{idx}: segment {seg} changed its ancestors: {first} then {c}")
    for frame, samples in by_frame.items():
        for (i0, l0, c0, _), (i1, l1, c1, f1) in zip(samples, samples[1:]):
            if "r" not in f1 and not c1[-2] > c0[-2]:
                errs.append(f"R4 #{i1} {l1}: instruction {c1[-2]} not above #{i0} {l0} ({c0[-2]}) in one frame")
    events = {}  # parent segment -> [(index, kind, instruction, ordinal, child segment, flags)]
    for seg, samples in own.items():
        for idx, c in samples:
            events.setdefault(seg, []).append((idx, "own", c[-2], 0, seg, ""))
    for idx, (seg, parent, label, c, expect, flags) in enumerate(transcript):
        if parent is None:
            continue
        if parent not in own:
            errs.append(f"R5 #{idx} {label}: caller segment {parent} has no sample (corpus bug)")
            continue
        pc = own[parent][0][1]
        L = len(pc)
        if len(c) != L + 2 or c[: L - 2] != pc[:-2]:
            errs.append(f"R5 #{idx} {label}: not one pair below its caller: caller {pc}, sample {c}")
            continue
        events[parent].append((idx, "child", c[L - 2], c[L - 1], seg, flags))
    for seg, evs in events.items():
        evs.sort()
        # An asynchronous child (signal handler) may run in the eval-breaker check of a
        # JUMP_BACKWARD, after the jump rebased the frame but before the next boundary: it
        # then sees a word above the next iteration's boundaries. It is only required to
        # come after the segment's earlier own samples.
        last_own = None
        for ev in evs:
            if ev[1] == "own":
                last_own = ev
            elif "a" in ev[5] and last_own is not None and not ev[2] > last_own[2]:
                errs.append(
                    f"R6 segment {seg}: asynchronous child #{ev[0]} at instruction {ev[2]} "
                    f"not after own sample #{last_own[0]} ({last_own[2]})"
                )
        evs = [ev for ev in evs if not (ev[1] == "child" and "a" in ev[5])]
        for a, b in zip(evs, evs[1:]):
            ia, ka, xa, oa, sa, fa = a
            ib, kb, xb, ob, sb, fb = b
            if ka == "own" and kb == "own":
                continue  # R4
            if ka == "own":
                ok = xb > xa
            elif kb == "own":
                ok = xb > xa
            elif sa == sb:
                ok = (xa, oa) == (xb, ob)
            else:
                ok = xb > xa or (xb == xa and ob > oa)
            if not ok:
                errs.append(
                    f"R6 segment {seg}: #{ia} ({ka}, instruction {xa}, ordinal {oa}) then "
                    f"#{ib} ({kb}, instruction {xb}, ordinal {ob})"
                )
    return errs


def relative(transcript):
    """The transcript below the driver's pair, for cold/warm comparison (R8)."""
    base = len(transcript[0][3])
    return [(label, c[base:], flags) for (_, _, label, c, _, flags) in transcript[1:]]


def run_program(prog, stable):
    transcripts = drive(prog)
    problems = []
    for k, t in enumerate(transcripts):
        if len(t) < 3:
            problems.append(f"run {k}: only {len(t)} samples")
        for e in check(t):
            problems.append(f"run {k}: {e}")
    if stable:
        cold, warm = relative(transcripts[0]), relative(transcripts[-1])
        if cold != warm:
            diff = next(
                (f"#{i + 1}: cold {a} warm {b}" for i, (a, b) in enumerate(zip(cold, warm)) if a != b),
                f"lengths {len(cold)} vs {len(warm)}",
            )
            problems.append(f"R8 cold and warm transcripts differ at {diff}")
    assert not problems, f"{len(problems)} violation(s):\n" + "\n".join(problems[:40])


def program_loops():
    run_program(prog_loops, stable=True)


def program_big_function():
    ops = [i for i in dis.get_instructions(prog_big) if i.opname == "EXTENDED_ARG"]
    assert ops, "the generated function has no EXTENDED_ARG (corpus bug)"
    run_program(prog_big, stable=True)


def program_exceptions():
    run_program(prog_exceptions, stable=True)


def program_recursion():
    run_program(prog_recursion, stable=False)


def program_generators():
    run_program(prog_generators, stable=False)


def program_coroutines():
    run_program(prog_coroutines, stable=False)


def program_callbacks():
    run_program(prog_callbacks, stable=False)


def program_properties_getitem():
    run_program(prog_properties, stable=False)


def program_closures():
    run_program(prog_closures, stable=False)


def program_signals():
    run_program(prog_signals, stable=False)


def program_threads():
    run_program(prog_threads, stable=False)


if __name__ == "__main__":
    _runner.main(globals(), prefix="program_")
