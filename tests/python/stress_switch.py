"""Stress: 16 threads switching under a root-space switch callback.

Usage: ``stress_switch.py [SECONDS] [THREADS]`` (default 1.5 s, 16 threads).
Prints ``PASS stress_switch ...`` and exits 0, or ``FAIL stress_switch: ...``
and exits 1. A watchdog ends a hung run with every thread's traceback (exit 1).

Workers also call ``time.sleep(0)`` every 64 iterations (a voluntary switch
point besides the eval breaker). The time is split between two phases with a
10 µs switch interval:

1. **C callback** (``functools.partial(print, file=io.StringIO())``): every
   invocation appends ``repr(previous_delta) repr(next_thread_id)`` to a
   buffer without running bytecode, so it cannot be interrupted. Each worker
   loops on a shared ``last`` cell: if another worker wrote the cell since this
   worker's previous iteration, the worker *observed a thread change*. The other
   worker ran visible root bytecode in between, so at this worker's first
   boundary after it got the GIL back the space's cursor named another thread
   and the callback had to run on it (SEMANTICS §13.2). The worker notes the
   buffer size before its iteration's store and after its next read of the cell;
   a change with no callback naming this worker between the two offsets is a
   **lost callback**. Afterwards every recorded line is parsed: a delta is a
   tuple of words with ``[0] >= 0`` (or ``None`` for a completed thread) and the
   id is one of the run's threads.

2. **Python callback**: checks on every invocation that the delta is well formed
   and that ``next_thread_id == _thread.get_ident()``; lost callbacks are not
   counted there, because a callback interrupted by the GIL legitimately moves
   the cursor (§13.2 consequence 4).

In both phases: callbacks keep arriving in every second (every quarter of a
shorter phase), all workers finish,
nothing reaches ``sys.unraisablehook``.
"""

import ast
import bisect
import faulthandler
import functools
import io
import sys
import threading
import time
import _thread

import retrace as R

WORD = 2**64
INTERVAL = 1e-5
# Iterations between two `time.sleep(0)` calls of a worker.
YIELD_EVERY = 64


def delta_ok(d):
    return d is None or (isinstance(d, tuple) and d and all(type(w) is int and 0 <= w < WORD for w in d))


class Phase:
    def __init__(self, name, n, seconds):
        self.name = name
        self.n = n
        self.seconds = seconds
        self.ids = {}
        self.last = [-1]
        self.stop = threading.Event()
        self.started = [threading.Event() for _ in range(n)]
        self.stats = [None] * n
        self.problems = []

    def run(self, callback, probe):
        """Run the workers with `callback` registered; `probe()` returns a monotonic
        callback position (buffer size or count)."""
        samples = []  # (time, position) taken by worker 0 about every 50 ms

        def worker(i):
            self.ids[_thread.get_ident()] = i
            self.started[i].set()
            windows = []  # (position before my previous store, position after my read)
            changes = iters = 0
            before = probe()
            self.last[0] = i
            next_sample = 0.0
            while not self.stop.is_set():
                seen = self.last[0]
                after = probe()
                if seen != i:
                    changes += 1
                    windows.append((before, after))
                before = after
                self.last[0] = i
                iters += 1
                if iters % YIELD_EVERY == 0:
                    time.sleep(0)  # a voluntary switch point besides the eval breaker
                if i == 0:
                    now = time.monotonic()
                    if now >= next_sample:
                        samples.append((now, after))
                        next_sample = now + 0.05
            self.stats[i] = (iters, changes, windows)

        threads = [
            threading.Thread(target=worker, args=(i,), name=f"{self.name}{i}", daemon=True) for i in range(self.n)
        ]
        R.root_space.thread_switch = callback
        try:
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for i, e in enumerate(self.started):
                if not e.wait(30):
                    self.problems.append(f"worker {i} did not start")
            self.stop.wait(self.seconds)
            self.stop.set()
            for t in threads:
                t.join(60)
            self.elapsed = time.monotonic() - t0
        finally:
            R.root_space.thread_switch = None
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            self.problems.append(f"workers still running: {alive}")
        if any(s is None for s in self.stats):
            self.problems.append(f"workers without stats: {[i for i, s in enumerate(self.stats) if s is None]}")
        self.changes = sum(s[1] for s in self.stats if s)
        self.iters = sum(s[0] for s in self.stats if s)
        if self.changes == 0:
            self.problems.append("no thread change observed")
        # Callbacks keep arriving: the position grows in every second (every
        # quarter of a shorter run) while the workers spin.
        width = min(1.0, self.seconds / 4)
        buckets = {}
        for t, p in samples:
            buckets.setdefault(int((t - t0) / width), []).append(p)
        growth = [max(v) - min(v) for k, v in sorted(buckets.items()) if (k + 1) * width <= self.seconds]
        self.growth = growth
        if not growth or min(growth) == 0:
            self.problems.append(f"a {width:g} s interval without callbacks (growth per interval {growth})")


def c_phase(n, seconds, main_id):
    ph = Phase("c", n, seconds)
    buf = io.StringIO()
    ph.run(functools.partial(print, file=buf), buf.tell)
    text = buf.getvalue()
    # Parse "repr(delta) id" lines with their start offsets.
    entries = []
    offset = 0
    bad = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        head, _, tid = body.rpartition(" ")
        try:
            d = ast.literal_eval(head)
            nxt = int(tid)
        except (ValueError, SyntaxError):
            d, nxt = "unparsable", None
        if not delta_ok(d) or nxt not in ph.ids and nxt != main_id:
            if len(bad) < 5:
                bad.append(body)
        entries.append((offset, ph.ids.get(nxt, -1)))
        offset += len(line)  # StringIO.tell() counts characters
    if bad:
        ph.problems.append(f"malformed callback arguments: {bad}")
    by_worker = {}
    for off, i in entries:
        by_worker.setdefault(i, []).append(off)
    lost = []
    for i, s in enumerate(ph.stats):
        if not s:
            continue
        offs = by_worker.get(i, [])
        for lo, hi in s[2]:
            k = bisect.bisect_left(offs, lo)
            if not (k < len(offs) and offs[k] < hi):
                lost.append((i, lo, hi))
    ph.callbacks = len(entries)
    ph.lost = lost
    if lost:
        ph.problems.append(f"{len(lost)} observed thread changes without a callback on the worker: {lost[:5]}")
    idle = [i for i in range(n) if i not in by_worker]
    if idle:
        ph.problems.append(f"workers that never got a callback: {idle}")
    return ph


def py_phase(n, seconds):
    ph = Phase("py", n, seconds)
    count = [0]
    bad = []

    def cb(d, nxt):
        count[0] += 1
        if not delta_ok(d) or nxt != _thread.get_ident():
            if len(bad) < 5:
                bad.append((d, nxt, _thread.get_ident()))

    ph.run(cb, lambda: count[0])
    ph.callbacks = count[0]
    if bad:
        ph.problems.append(f"malformed callback arguments (delta, next_thread_id, get_ident()): {bad}")
    return ph


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.5
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    faulthandler.dump_traceback_later(seconds + 180, exit=True)
    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: unraisable.append((u.exc_type, u.exc_value, u.object))
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(INTERVAL)
    try:
        phases = [c_phase(n, seconds / 2, _thread.get_ident()), py_phase(n, seconds / 2)]
    finally:
        sys.setswitchinterval(old_interval)
        sys.unraisablehook = old_hook
    problems = []
    parts = []
    for ph in phases:
        problems += [f"{ph.name} phase: {p}" for p in ph.problems]
        parts.append(
            f"{ph.name}: {ph.callbacks} callbacks, {ph.changes} observed changes, {ph.iters} iterations "
            f"in {ph.elapsed:.1f} s, callback growth per interval {ph.growth}"
        )
    if unraisable:
        problems.append(f"unraisable: {unraisable[:5]}")
    summary = f"{n} threads; " + "; ".join(parts)
    if problems:
        print(f"FAIL stress_switch: {'; '.join(problems)} ({summary})", flush=True)
        sys.exit(1)
    print(f"PASS stress_switch {summary}", flush=True)


if __name__ == "__main__":
    main()
