"""Scheduling probes that must not depend on the inline fast paths.

Why this exists: the stubs and hook trampolines handle calls, returns and
generator resumes without the runtime; a thread-switch delta or a call_at
check that missed those activations would be wrong only in the default mode
(`RETRACE_SLOW_PATH` unset). Each case prints one line; tests/tests/fast_path.rs
runs this file with the fast paths on and off and compares the lines, and
each case also asserts its own expectation.

Usage: scheduling_fast_paths.py
"""

import threading

import _retrace as _r
import _thread
import retrace as R


def switch_delta_sees_frames_entered_inline():
    """The previous thread's delta includes frames it entered on the fast
    path since the runtime last ran for it (threading.Thread.join ->
    Event.wait -> Condition.wait)."""
    space = R.CoordinateSpace()
    main = _thread.get_ident()
    got = []

    def cb(delta, next_id):
        if next_id != main and not got:
            got.append((delta, _r.coordinates(main, 0, space.id)))

    def body():
        pass

    def top():
        space.thread_switch = cb
        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join(10)
        space.thread_switch = None

    space.run(top)
    assert got, "no switch callback on the worker"
    delta, actual = got[0]
    assert delta[1:] == actual[delta[0]:], (delta, actual)
    assert len(actual) >= 8, actual
    print("switch delta", delta)


def call_at_hits_inside_inline_callees():
    """A target in frames entered by inline calls after arming is hit
    exactly (every boundary of an armed thread is checked)."""
    hits = []
    space = [None]
    target = [None]

    def hit():
        hits.append(("hit", space[0].coordinates()))

    def miss():
        hits.append(("overshoot", space[0].coordinates()))

    @R.exclude
    def arm():
        if target[0] is not None:
            space[0].call_at(target[0], hit, miss)

    def leaf(log):
        x = 1
        log.append(space[0].coordinates())  # this CALL's boundary is the target
        return x

    def mid(log):
        leaf(log)

    def top(log):
        arm()
        mid(log)

    for _ in (1, 2):
        space[0] = R.CoordinateSpace()
        log = []
        space[0].run(top, log)
        target[0] = log[0]
    assert hits == [("hit", target[0])], (hits, target[0])
    print("call_at", hits)


switch_delta_sees_frames_entered_inline()
call_at_hits_inside_inline_callees()
