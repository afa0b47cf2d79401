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


def raising_call_at_then_switch_at_the_same_boundary():
    """A call_at overshoot that raises at the boundary where a thread change
    is also detected: the switch check of that boundary still runs (§7,
    §14.6) before the exception reaches the frame's handler."""
    log = []
    main_id = threading.get_ident()
    handoff = R.ThreadHandoff(timeout=10)
    ready = threading.Event()
    worker = []

    def cb(delta, next_id):
        who = "main" if next_id == main_id else "W"
        log.append(("switch", who, "None" if delta is None else "tuple"))

    def miss():
        log.append(("miss",))
        raise KeyError("from the overshoot")

    def body():
        worker.append(_thread.get_ident())
        try:
            ready.set()
            handoff.start()  # parked: main arms a target past this call
            log.append(("not raised",))
        except KeyError:
            log.append(("caught",))
        log.append(("end",))
        handoff.close()

    t = threading.Thread(target=body)
    t.start()
    assert ready.wait(10)
    threading.Event().wait(0.1)  # the HANDOFF setup of SEMANTICS §21
    R.root_space.thread_switch = cb
    # The worker's frozen coordinates plus a deeper pair: passed at its first
    # boundary after start() returns, the boundary of the thread change.
    c = _r.coordinates(worker[0])
    _r.call_at(worker[0], (*c, 10**6, 0), lambda: log.append(("hit",)), miss)
    handoff.to(worker[0])
    t.join(10)
    R.root_space.thread_switch = None
    assert ("miss",) in log, log
    at = log.index(("miss",))
    assert log[at + 1:at + 4] == [("switch", "W", "tuple"), ("caught",), ("end",)], log
    assert log[-1] == ("switch", "main", "None"), log
    print("raising call_at", log[at:])


def clear_time_code_does_no_switch_work():
    """Code that PyThreadState_Clear itself runs on a completing thread
    (finalizers of thread-local data) gets no switch callback and does not
    take the completion sentinel, which goes to the next thread (§15)."""
    log = []
    main_id = threading.get_ident()

    def cb(delta, next_id):
        on = "main" if threading.get_ident() == main_id else "W"
        log.append(("switch", "None" if delta is None else "tuple", on))

    def gen():
        yield from range(3)

    class Finalized:
        def __del__(self):
            for _ in gen():
                pass
            log.append(("del", "main" if threading.get_ident() == main_id else "W"))

    local = threading.local()

    def body():
        local.value = Finalized()
        total = 0
        for i in range(100):
            total += i

    R.root_space.thread_switch = cb
    t = threading.Thread(target=body)
    t.start()
    t.join(10)
    x = 0
    for i in range(10):
        x += i
    R.root_space.thread_switch = None
    assert ("del", "W") in log, log
    assert ("switch", "None", "W") not in log, log
    assert log[-1] == ("switch", "None", "main"), log
    print("clear-time code", log[log.index(("del", "W")):])


switch_delta_sees_frames_entered_inline()
call_at_hits_inside_inline_callees()
raising_call_at_then_switch_at_the_same_boundary()
clear_time_code_does_no_switch_work()
