"""Record/replay scenario: record the thread-switch schedule of a multi-threaded
workload in a fresh CoordinateSpace and replay it with ThreadHandoff + call_at,
ROUNDS times in a row (default 20).

Usage: ``record_replay.py [ROUNDS] [SCENARIO]`` (scenario from
``replay_workloads.SCENARIOS``, default ``combined``: a queue pipeline, a lock
wait, Condition/Semaphore/Barrier/RLock/Event threads, a thread pool and an
asyncio loop fed from other threads with ``run_coroutine_threadsafe``, all at
once). Prints one line per round and ``PASS record_replay ...`` (exit 0) or
``FAIL record_replay: ...`` (exit 1).

Each round records a new schedule (the OS picks who runs when a thread blocks,
so schedules and event orders differ from round to round) and replays it in
another fresh space; the replay must hand over at every recorded switch exactly
at the recorded coordinates (``call_at`` hit, never an overshoot), produce the
recorded event order, let the replay space's own switch callback observe the
recorded switches (same deltas, same threads) and keep the workload's
invariants. How the schedule is reconstructed and which switches can be
replayed exactly is described in ``retrace_replay.py``.

Controls that show the comparison means something: the recorded event orders
must differ between rounds, and some recorded order must differ from every
order of the free (unrecorded, unreplayed) warm-up runs, so a replay that did
not force the schedule would not match.
"""

import faulthandler
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import retrace_replay as RR  # noqa: E402
import replay_workloads as W  # noqa: E402

WARMUP = 3


def fail(msg):
    print(f"FAIL record_replay: {msg}", flush=True)
    sys.exit(1)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    scenario = sys.argv[2] if len(sys.argv) > 2 else "combined"
    faulthandler.dump_traceback_later(120 + 90 * rounds, exit=True)
    wl = W.SCENARIOS[scenario]
    t_start = time.monotonic()

    free_orders = set()
    for _ in range(WARMUP + 2):
        events, res = RR.plain(wl)
        if res["violations"]:
            fail(f"warm-up violations: {res['violations']}")
        free_orders.add(tuple(events))

    recorded_orders = set()
    schedules = set()
    for r in range(rounds):
        t0 = time.monotonic()
        try:
            rec = RR.record(wl)
        except AssertionError as e:
            fail(f"round {r}: {e}")
        t1 = time.monotonic()
        if rec.result["violations"]:
            fail(f"round {r}: recording violates invariants: {rec.result['violations']}")
        if not rec.switches:
            fail(f"round {r}: empty schedule")
        rep = RR.replay(wl, rec)
        t2 = time.monotonic()
        if rep.result["violations"]:
            fail(f"round {r}: replay violates invariants: {rep.result['violations']} (driver: {rep.errors})")
        try:
            RR.check_replay(rec, rep)
        except AssertionError as e:
            fail(f"round {r}: {e}")
        recorded_orders.add(tuple(rec.events))
        schedules.add(tuple(rec.switches))
        print(
            f"round {r}: {len(rec.switches)} switches, {len(rec.events)} events, "
            f"{rep.hits} call_at hits; record {t1 - t0:.2f} s, replay {t2 - t1:.2f} s",
            flush=True,
        )

    # Controls.
    if rounds >= 2 and len(recorded_orders) < 2:
        fail(f"all {rounds} recordings have the same event order: the workload does not vary")
    if rounds >= 2 and recorded_orders <= free_orders:
        fail("every recorded event order also came out of a free run: the comparison shows nothing")
    print(
        f"PASS record_replay {scenario}: {rounds} rounds replayed exactly, "
        f"{len(recorded_orders)} distinct event orders, {len(schedules)} distinct schedules, "
        f"{time.monotonic() - t_start:.1f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
