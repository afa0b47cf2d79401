"""Record a thread-switch schedule with ``space.thread_switch`` and replay it
with ``space.call_at`` + ``retrace.ThreadHandoff`` (SEMANTICS §13, §14, §16).

Shared by ``record_replay.py`` (the record/replay scenario test) and the area M
conformance items (``conformance/area_m_scheduling.py``).

A *workload* is a function ``workload(events) -> result`` run by the main
thread; it starts named ``threading.Thread``s, makes them append tuples to
``events`` and joins them. ``record(workload)`` runs it in a fresh
``CoordinateSpace`` with a switch callback registered and returns the schedule;
``replay(workload, recording)`` runs it in another fresh space and forces the
recorded schedule on it; ``check_replay`` compares the two.

Recording
---------
The switch callback appends ``(previous_delta, name of the next thread)``. The
previous thread is implicit: it is the space's cursor, i.e. the main thread
(which registers from a frame visible in the space) for the first switch and
the next thread of switch ``i - 1`` for switch ``i``. Applying each delta to
that thread's own stack (``del stack[d[0]:]; stack.extend(d[1:])``) gives the
coordinates where it was switched away; ``None`` means it completed naturally.
While recording, each reconstructed vector is also compared with
``_retrace.coordinates(previous thread)``: the previous thread is not running,
so both must be equal (§13.2, item 77).

Threads are identified by ``Thread.name``, not by id: ids of threads created
by other threads embed their creator's id, whose top 16 bits are the space id
(§9.4), so they differ between two spaces. During a run ``threading``'s thread
starter is replaced by `_Run.start_thread`, an ``exclude``-wrapped function (no
frame in the space) that creates the thread from the space and maps the id
``_thread.start_new_thread`` returns (§9.5) to the ``Thread``'s name.

Replaying
---------
Exactly one thread, the *token holder*, runs application code at a time; every
other thread is parked in a ``ThreadHandoff`` call made from a Retrace callback
(so parking adds nothing to the coordinates), or, before its first turn, at a
gate in front of ``Thread._bootstrap`` that C code waits on (so it reaches no
boundary early). The token holder arms its next recorded switch-out point with
``space.call_at(target, hit, overshoot)`` (``space.call_at(None, done)`` when
it next completes naturally); the callback advances the schedule and hands over
with ``handoff.to(next)`` (or opens the next thread's gate). A thread that gets
the token back returns from that callback after arming its own next switch-out.
The replay space's switch callback logs the switches the replay produces (they
must equal the recorded ones, deltas included) and arms a new thread's first
target at its first boundary. Coordinates of a thread grow monotonically along
its execution (bias sites keep loops from repeating them, §4.2), so the first
time the token holder reaches its target is the recorded switch.

What this replays exactly (the schedule subset)
-----------------------------------------------
A switch recorded at boundary ``T`` is replayed by parking *before* the
instruction at ``T``. That is where a thread that lost the GIL inside a
*blocking* call (a contended lock, ``Condition.wait``, a queue, a join, a
sleep) is reported, and deferring such a call is equivalent: in the recording
it completed only once the resource was available, which it is again when the
replayed thread resumes. It is not equivalent for a switch forced by the eval
breaker (``sys.setswitchinterval``): that happens *after* a C call at the same
coordinates, which a boundary cannot tell apart from before it. Nor for
GIL-releasing I/O whose kernel-level effect another thread observes, nor for a
C call that both wakes another thread and blocks (``ThreadHandoff.to`` inside
the workload). Recording and replaying therefore run with a huge switch
interval (threads switch only where they block or call ``time.sleep``) and the
workloads avoid I/O between their threads (the asyncio loop is woken through a
lock, not its self-pipe). Both runs disable the cyclic GC (finalizers would run
at allocation-dependent points) and follow warm-up runs (specialisation can
change coordinates, §4.2).
"""

import collections
import functools
import gc
import operator
import sys
import threading
import time
import _thread

import _retrace
import retrace as R

# Switches only where a thread releases the GIL itself (see the module doc).
SWITCH_INTERVAL = 100.0
# Seconds a parked thread waits in one ThreadHandoff call before it re-parks.
PARK_SLICE = 0.02
# Seconds a whole replay may take before it is aborted (and fails).
REPLAY_TIMEOUT = 60.0
# Seconds without a replayed switch before the replay is aborted (and fails).
STALL_TIMEOUT = 10.0

MAIN = "MainThread"
# Seconds a new thread waits at its start gate at most (then it runs unsynchronised
# and the replay fails), beyond the replay deadline.
GATE_MARGIN = 10.0


class ReplayError(AssertionError):
    pass


def targets_of(switches, first=MAIN):
    """For each recorded switch, ``(previous thread, coordinates where it was switched away)``
    (coordinates ``None`` for a natural completion), reconstructed from the deltas."""
    stacks = {}
    out = []
    prev = first
    for d, nxt in switches:
        if d is None:
            out.append((prev, None))
            stacks.pop(prev, None)
        else:
            st = stacks.setdefault(prev, [])
            if not (isinstance(d, tuple) and d and 0 <= d[0] <= len(st)):
                raise ReplayError(f"delta {d!r} does not fit {prev}'s stack {st}")
            del st[d[0] :]
            st.extend(d[1:])
            out.append((prev, tuple(st)))
        prev = nxt
    return out


class Recording:
    def __init__(self, switches, events, result):
        self.switches = switches  # [(previous_delta, next thread name)]
        self.events = events
        self.result = result

    def names(self):
        return {MAIN} | {n for _, n in self.switches}


class _Run:
    """State of one record or replay run (lives on the main thread's stack)."""

    def __init__(self, space, mode, recording=None, timeout=REPLAY_TIMEOUT):
        self.space = space
        self.mode = mode
        self.main_id = _thread.get_ident()
        self.names = {self.main_id: MAIN}
        self.switches = []
        self.errors = []
        self.aborted = False
        if mode == "record":
            self.raw = []
            self.cursor = self.main_id
            self.stacks = {}
            self.bad_deltas = []
        if mode == "replay":
            self.sched = recording.switches
            self.targets = targets_of(self.sched)
            self.pos = 0
            self.token = self.main_id
            self.tid_of = {MAIN: self.main_id}
            self.gates = {}
            self.need_arm = None
            self.h = R.ThreadHandoff(timeout=PARK_SLICE)
            self.deadline = time.monotonic() + timeout
            self.progress = time.monotonic()
            self.hits = 0
            self.overshoots = []
            self.mismatch = []
            self.unexpected = []

    def fail(self, msg):
        self.errors.append(msg)
        if self.mode == "replay" and not self.aborted:
            self.abort()

    def abort(self):
        self.aborted = True
        self.h.close()
        for g in self.gates.values():
            g.release()
        self.gates.clear()

    # `begin`, `end` and `start_thread` are called through `exclude` wrappers,
    # so that the application bytecode is the same in every mode.

    def begin(self):
        if self.mode == "record":
            self.space.thread_switch = self._record_switch
        elif self.mode == "replay":
            self.space.thread_switch = self._replay_switch
            try:
                self._arm_next()
            except BaseException as e:  # noqa: B902
                self.fail(f"first target: {e!r}")

    def end(self):
        if self.mode == "plain":
            return
        self.space.thread_switch = None
        if self.mode == "replay":
            self.space.call_at(None)
            if not self.aborted and self.pos != len(self.sched):
                self.fail(f"replay ended after {self.pos} of {len(self.sched)} switches")
            self.abort()

    def start_thread(self, function, args, *kwargs):
        """Replaces ``threading._start_new_thread`` during the run (see `_Env`).

        Creates the thread from the space (a thread belongs to its creator's
        current space, §11.4) and names its id after its ``Thread``. When
        replaying, the new thread first waits at a gate (a lock acquired by C
        code only, so it reaches no boundary) until it is first handed the token.
        """
        t = getattr(function, "__self__", None)
        name = t._name if isinstance(t, threading.Thread) else None
        gate = None
        fn = function
        if self.mode == "replay" and name is not None and not self.aborted and args == () and not kwargs:
            gate = _thread.allocate_lock()
            gate.acquire()
            wait = functools.partial(gate.acquire, True, self.deadline - time.monotonic() + GATE_MARGIN)
            fn = functools.partial(collections.deque, map(operator.call, (wait, function)), 0)
        tid = self.space.run(_thread.start_new_thread, fn, args, *kwargs)
        if name is not None:
            if name in self.names.values():
                self.fail(f"two threads named {name!r}")
            self.names[tid] = name
            if self.mode == "replay":
                self.tid_of[name] = tid
                if gate is not None:
                    self.gates[tid] = gate
        return tid

    # ---------------------------------------------------------------- record

    def _record_switch(self, d, nxt):
        name = self.names.get(nxt)
        if name is None:
            self.errors.append(f"switch to unnamed thread {nxt:#x}")
            name = f"?{nxt:#x}"
        self.switches.append((d, name))
        self.raw.append((d, nxt))
        prev, self.cursor = self.cursor, nxt
        if d is None:
            self.stacks.pop(prev, None)
            return
        # The previous thread is not running: its coordinates now are where it
        # was switched away, which the delta must reproduce (§13.2, item 77).
        st = self.stacks.setdefault(prev, [])
        if 0 <= d[0] <= len(st):
            del st[d[0] :]
            st.extend(d[1:])
        try:
            now = _retrace.coordinates(prev, 0, self.space.id)
        except Exception as e:  # noqa: B902 - reported below
            now = e
        if now != tuple(st) and len(self.bad_deltas) < 5:
            self.bad_deltas.append((len(self.switches) - 1, self.names.get(prev, prev), d, now))

    # ---------------------------------------------------------------- replay

    def _give(self, nxt):
        """Make `nxt` the token holder; True when it must be woken with `h.to`."""
        self.token = nxt
        gate = self.gates.pop(nxt, None)
        if gate is None:
            return True
        self.need_arm = nxt
        gate.release()
        return False

    def _park(self, first):
        """Run `first` (a ThreadHandoff call), then wait until this thread holds the token."""
        me = _thread.get_ident()
        try:
            first()
        except TimeoutError:
            pass
        while self.token != me:
            if self.aborted:
                raise ReplayError("aborted")
            now = time.monotonic()
            if now > self.deadline or now - self.progress > STALL_TIMEOUT:
                holder = self.names.get(self.token, f"{self.token:#x}")
                raise ReplayError(
                    f"replay stalled at switch {self.pos} of {len(self.sched)}: {holder} holds the token "
                    f"and never reached {self.targets[self.pos] if self.pos < len(self.sched) else 'the end'}"
                )
            try:
                self.h.start()
            except TimeoutError:
                pass

    def _arm_next(self):
        if self.aborted or self.pos >= len(self.sched):
            return
        prev, target = self.targets[self.pos]
        me = self.names.get(_thread.get_ident())
        if prev != me:
            raise ReplayError(f"switch {self.pos}: {me} holds the token but {prev} is switched away")
        if target is None:
            self.space.call_at(None, self._on_complete)
        else:
            self.space.call_at(target, self._on_hit, self._on_overshoot)

    def _next_of(self, kind):
        i = self.pos
        prev, target = self.targets[i]
        if kind == "hit":
            self.hits += 1
            now = self.space.coordinates()
            if now != target:
                self.mismatch.append((i, target, now))
        elif kind == "overshoot":
            self.overshoots.append((i, target, self.space.coordinates()))
        self.pos = i + 1
        self.progress = time.monotonic()
        name = self.sched[i][1]
        nxt = self.tid_of.get(name)
        if nxt is None:
            raise ReplayError(f"switch {i}: no thread {name!r} was created")
        return nxt

    def _switch_out(self, kind):
        if self.aborted:
            return
        try:
            nxt = self._next_of(kind)
            if self._give(nxt):
                self._park(lambda: self.h.to(nxt))
            else:
                self._park(self.h.start)
            self._arm_next()
        except BaseException as e:  # noqa: B902 - never raise into the workload
            self.fail(f"switch-out {self.pos}: {e!r}")

    def _on_hit(self):
        self._switch_out("hit")

    def _on_overshoot(self):
        self._switch_out("overshoot")

    def _on_complete(self):
        if self.aborted:
            return
        try:
            nxt = self._next_of("complete")
            if self._give(nxt):
                try:
                    # Wakes the next thread; this one parks for one slice and
                    # then finishes (it is never scheduled again).
                    self.h.to(nxt)
                except TimeoutError:
                    pass
        except BaseException as e:  # noqa: B902
            self.fail(f"completion {self.pos}: {e!r}")

    def _replay_switch(self, d, me):
        if self.aborted:
            return
        try:
            self.switches.append((d, self.names.get(me, f"?{me:#x}")))
            if self.need_arm == me:
                # A new thread's first boundary, right after its gate opened.
                self.need_arm = None
                self._arm_next()
            elif self.token != me:
                # Only the token holder may run application code.
                self.unexpected.append((self.pos, self.names.get(me, f"?{me:#x}")))
                self._park(self.h.start)
                self._arm_next()
        except BaseException as e:  # noqa: B902
            self.fail(f"switch callback: {e!r}")


def _top(run, workload, events):
    run.begin()
    try:
        return workload(events)
    finally:
        run.end()


class _Env:
    """While a run is active: a huge switch interval, no cyclic GC, and
    ``threading``'s thread starter replaced by `_Run.start_thread`."""

    def __init__(self, run):
        self.run = run

    def __enter__(self):
        self.starter = threading._start_new_thread
        threading._start_new_thread = R.exclude(self.run.start_thread)
        gc.collect()
        self.gc = gc.isenabled()
        gc.disable()
        self.interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        return self

    def __exit__(self, *exc):
        threading._start_new_thread = self.starter
        sys.setswitchinterval(self.interval)
        if self.gc:
            gc.enable()
        return False


def _run(workload, mode, recording=None, timeout=REPLAY_TIMEOUT):
    space = R.CoordinateSpace()
    run = _Run(space, mode, recording, timeout)
    run.begin = R.exclude(run.begin)
    run.end = R.exclude(run.end)
    events = []
    with _Env(run):
        result = space.run(_top, run, workload, events)
    return run, events, result


def plain(workload):
    """Run `workload` once in a fresh space with nothing registered (warm-up)."""
    _, events, result = _run(workload, "plain")
    return events, result


def record(workload, validate=True):
    """Run `workload` in a fresh space and record its switch schedule."""
    run, events, result = _run(workload, "record")
    if run.errors:
        raise ReplayError(f"recording failed: {run.errors}")
    if validate and run.bad_deltas:
        raise ReplayError(
            "recorded previous_delta does not end the previous thread's coordinates "
            "(switch index, previous thread, delta, _retrace.coordinates(previous, 0, space)): "
            f"{run.bad_deltas}"
        )
    rec = Recording(run.switches, events, result)
    rec.raw = run.raw
    return rec


class Replay:
    def __init__(self, run, events, result):
        self.events = events
        self.result = result
        self.switches = run.switches
        self.errors = run.errors
        self.hits = run.hits
        self.overshoots = run.overshoots
        self.mismatch = run.mismatch
        self.pos = run.pos
        self.unexpected = run.unexpected


def replay(workload, recording, timeout=REPLAY_TIMEOUT):
    """Run `workload` in another fresh space, forcing `recording`'s schedule on it."""
    run, events, result = _run(workload, "replay", recording, timeout)
    return Replay(run, events, result)


def check_replay(rec, rep, exact_switches=True):
    """Assert that `rep` replayed `rec`: no driver error, every switch handed over at
    its recorded coordinates, the same events in the same order and (by default) the
    same switches observed by the replay space's own callback."""
    if rep.errors:
        raise ReplayError(f"replay failed: {rep.errors}")
    n = len(rec.switches)
    if rep.pos != n:
        raise ReplayError(f"replayed {rep.pos} of {n} switches")
    if rep.unexpected:
        raise ReplayError(f"threads ran without the token (switch index, thread): {rep.unexpected[:5]}")
    if rep.mismatch:
        raise ReplayError(f"call_at hits away from the target: {rep.mismatch[:3]}")
    if rep.overshoots:
        raise ReplayError(f"{len(rep.overshoots)} switch-out point(s) overshot: {rep.overshoots[:3]}")
    if rep.events != rec.events:
        for k, (a, b) in enumerate(zip(rec.events, rep.events)):
            if a != b:
                break
        else:
            k = min(len(rec.events), len(rep.events))
        raise ReplayError(
            f"event order differs at {k}: recorded {rec.events[k:k + 4]} replayed {rep.events[k:k + 4]} "
            f"({len(rec.events)} vs {len(rep.events)} events)"
        )
    if exact_switches and rep.switches != rec.switches:
        for k, (a, b) in enumerate(zip(rec.switches, rep.switches)):
            if a != b:
                break
        else:
            k = min(len(rec.switches), len(rep.switches))
        raise ReplayError(
            f"replay space saw other switches from {k}: recorded {rec.switches[k:k + 3]} "
            f"replay {rep.switches[k:k + 3]} ({len(rec.switches)} vs {len(rep.switches)})"
        )
