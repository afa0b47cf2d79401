"""Conformance checklist area M, scheduling scenarios (SEMANTICS §21 items 128–129; §13, §14, §16).

Recording and replaying use ``tests/python/retrace_replay.py`` (its module
doc explains the method and the schedule subset it replays exactly); the
workloads are in ``tests/python/replay_workloads.py``. A recording runs the
workload in a fresh ``CoordinateSpace`` with ``space.thread_switch`` capturing
``(previous_delta, next_thread_id)``; a replay runs it in another fresh space,
with every recorded switch forced at the recorded coordinates by
``space.call_at`` callbacks that hand over with ``ThreadHandoff.to``.

Item 128's workload is sequenced by its own ``R.ThreadHandoff``, so the second
run in a fresh space reproduces it without the replay driver (a workload
thread's ``to()`` wakes its peer and parks in one C call, which a replay cannot
split); item 129 replays real schedules of the queue, lock, asyncio and
primitives workloads, in this process and in child interpreters seeded
(``RETRACE_ROOT_SEED``) with the scenario name.

Every wait is bounded (workload waits 10 s, a replay 60 s and 10 s without
progress), so a broken runtime fails an item instead of hanging the run.
"""

import faulthandler
import json
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import _runner  # noqa: E402

import retrace as R  # noqa: E402
import retrace_replay as RR  # noqa: E402
import replay_workloads as W  # noqa: E402
from _thread import get_ident as tid  # noqa: E402

WORD = 2**64
WARMUP = 3
SCENARIOS_129 = ("queue", "lock", "asyncio", "primitives")


def delta_shape(d, what="previous_delta"):
    assert isinstance(d, tuple), f"{what} is {type(d).__name__}, not a tuple: {d!r}"
    assert len(d) >= 1, f"{what} is empty: {d!r}"
    for w in d:
        assert type(w) is int and 0 <= w < WORD, f"{what} has a non-word {w!r}: {d!r}"
    assert d[0] >= 0, f"{what}[0] = {d[0]}"


def captured_shape(raw):
    for d, nxt in raw:
        assert type(nxt) is int and nxt > 0, f"next_thread_id {nxt!r}"
        if d is not None:
            delta_shape(d)


# ---------------------------------------------------------------- item 128


ROUNDS_128 = 4


def handoff_pair(events):
    """A and B alternate strictly through one ThreadHandoff: A0 B0 A1 B1 …"""
    h = R.ThreadHandoff(timeout=10)
    ids = {}
    ready = {"A": threading.Event(), "B": threading.Event()}
    errors = []

    def a():
        ids["A"] = tid()
        ready["A"].set()
        try:
            h.start()
            for r in range(ROUNDS_128):
                x = 0
                for i in range(200):
                    x += i
                events.append(("A", r, x))
                h.to(ids["B"])
        except Exception as e:  # noqa: B902 - reported in the result
            errors.append(("A", repr(e)))
            h.close()

    def b():
        ids["B"] = tid()
        ready["B"].set()
        try:
            h.start()
            for r in range(ROUNDS_128):
                events.append(("B", r, sum(i * i for i in range(50))))
                if r < ROUNDS_128 - 1:
                    h.to(ids["A"])
        except Exception as e:  # noqa: B902
            errors.append(("B", repr(e)))
        finally:
            h.close()  # releases A, parked after its last to(B)

    ta = threading.Thread(target=a, name="pair-A", daemon=True)
    tb = threading.Thread(target=b, name="pair-B", daemon=True)
    ta.start()
    tb.start()
    for k in ("A", "B"):
        if not ready[k].wait(10):
            errors.append((k, "not ready"))
    if not errors:
        # Main gives A the first turn and stays parked until B closes the handoff.
        h.to(ids["A"])
    ta.join(30)
    tb.join(30)
    if ta.is_alive() or tb.is_alive():
        errors.append(("join", "pair still running"))
    return {"errors": errors, "violations": []}


def item_128_handoff_sequenced_pair_records_and_replays():
    for _ in range(WARMUP):
        RR.plain(handoff_pair)
    rec = None
    for attempt in range(10):
        rec = RR.record(handoff_pair)
        if rec.raw:
            break
    assert rec.raw, "no switch captured in 10 recordings"
    assert rec.result["errors"] == [], rec.result
    captured_shape(rec.raw)
    want = [(k, r) for r in range(ROUNDS_128) for k in ("A", "B")]
    assert [e[:2] for e in rec.events] == want, f"recorded results {rec.events}"
    names = {n for _, n in rec.switches}
    assert {"pair-A", "pair-B"} <= names, f"switches never reached both workers: {rec.switches}"
    # The second run, in another fresh space, gives equal results and, up to B's
    # last turn (the threads' exits race after B closes the handoff), the same
    # schedule: same threads, same deltas (coordinates are space-independent).
    again = RR.record(handoff_pair)
    assert again.result["errors"] == [], again.result
    assert again.events == rec.events, f"replayed results {again.events} != recorded {rec.events}"
    assert again.raw, "second run captured no switch"
    captured_shape(again.raw)
    k = max(i for i, (_, n) in enumerate(rec.switches) if n == "pair-B") + 1
    assert again.switches[:k] == rec.switches[:k], (
        f"schedules differ before B's last turn:\n{rec.switches[:k]}\n{again.switches[:k]}"
    )


# ---------------------------------------------------------------- item 129


def record_and_replay(name, warmup=WARMUP):
    """Warm up, record and replay scenario `name`; returns a summary (raises on failure)."""
    wl = W.SCENARIOS[name]
    for _ in range(warmup):
        _, res = RR.plain(wl)
        assert res["violations"] == [], f"{name} warm-up: {res['violations']}"
    rec = RR.record(wl)
    assert rec.result["violations"] == [], f"{name} recording: {rec.result['violations']}"
    assert rec.switches, f"{name}: empty schedule"
    captured_shape(rec.raw)
    rep = RR.replay(wl, rec)
    assert rep.result["violations"] == [], f"{name} replay: {rep.result['violations']}"
    RR.check_replay(rec, rep)
    return {
        "scenario": name,
        "switches": len(rec.switches),
        "events": len(rec.events),
        "hits": rep.hits,
        "main_id": tid(),
    }


def child(name):
    """`area_m_scheduling.py --child NAME`: one scenario in this (fresh) interpreter."""
    faulthandler.dump_traceback_later(200, exit=True)
    try:
        summary = record_and_replay(name)
    except BaseException as e:  # noqa: B902 - reported to the parent
        print(f"CHILD-FAIL {name}: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
    print("CHILD-OK " + json.dumps(summary), flush=True)
    sys.exit(0)


def item_129_workloads_record_and_replay():
    summaries = []
    for name in SCENARIOS_129:
        summaries.append(record_and_replay(name))
    for s in summaries:
        assert s["switches"] > 0 and s["hits"] > 0, s
    # Subprocess variants, each seeded with its scenario name.
    main_ids = set()
    for name in SCENARIOS_129:
        env = dict(os.environ, RETRACE_ROOT_SEED=name)
        proc = _runner.run_python([os.path.abspath(__file__), "--child", name], env=env, timeout=240)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("CHILD-")]
        assert proc.returncode == 0 and lines and lines[-1].startswith("CHILD-OK "), (
            f"child {name}: {_runner.describe(proc)}"
        )
        got = json.loads(lines[-1][len("CHILD-OK ") :])
        assert got["scenario"] == name and got["switches"] > 0, got
        main_ids.add(got["main_id"])
    assert len(main_ids) == len(SCENARIOS_129), f"children seeded alike: main ids {main_ids}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    _runner.main(globals())
