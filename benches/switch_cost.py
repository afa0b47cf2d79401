#!/usr/bin/env python3
"""Cost of thread-switch callbacks, measured against the same run's baselines.

Why this exists: the scheduling probes promise that a switch callback
registered in a space the workload never runs in costs nothing measurable
when no call_at target is armed (SEMANTICS §13; issue 4: within 2 % of the
coordinates-only build), and report what a root-space callback that does
nothing costs on the threads workload.

For every workload of benches/workloads/ it measures callgrind instruction
counts Ir(n2) - Ir(n1) (start-up cancels) for four configurations in one run:

* ``vanilla``      the unmodified interpreter;
* ``coords``       the instrumented interpreter, no callback;
* ``unrelated``    instrumented + a no-op callback on a fresh CoordinateSpace;
* ``root``         instrumented + a no-op callback on retrace.root_space;

and prints ``unrelated/coords`` (the 2 % budget), ``root/vanilla`` and
``coords/vanilla`` with geometric means. The workloads' checksum lines must
agree across all four. Exit 1 when ``--budget`` is exceeded, 2 on usage
errors.

Usage: benches/switch_cost.py --instrumented DIR/bin/python3.12 [--only threads] [--budget 1.02]
"""

import argparse
import concurrent.futures
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as harness  # noqa: E402  (benches/run.py)

CONFIGS = (
    ("vanilla", None),
    ("coords", None),
    ("unrelated", "unrelated"),
    ("root", "root"),
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vanilla", help="vanilla interpreter (default: newest pyenv 3.12)")
    parser.add_argument("--instrumented", default=os.environ.get("RETRACE_INSTRUMENTED"))
    parser.add_argument("--only", action="append", metavar="NAMES")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=1.02,
                        help="exit 1 if the geomean of unrelated/coords exceeds it (default 1.02)")
    args = parser.parse_args(argv)
    only = [n.strip() for item in (args.only or []) for n in item.split(",") if n.strip()] or None
    try:
        vanilla = os.path.abspath(args.vanilla or harness.discover_vanilla("3.12"))
        if not args.instrumented:
            raise harness.BenchError("pass --instrumented DIR/bin/python3.12 or set RETRACE_INSTRUMENTED")
        instrumented = os.path.abspath(args.instrumented)
        harness.check_interpreter(vanilla, "vanilla")
        harness.check_interpreter(instrumented, "instrumented")
        valgrind = shutil.which("valgrind")
        if not valgrind:
            raise harness.BenchError("valgrind not found on PATH")
        workloads = harness.load_workloads(only)
    except harness.BenchError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2

    tasks = []
    for w in workloads:
        for name, mode in CONFIGS:
            interp = vanilla if name == "vanilla" else instrumented
            env = {"RETRACE_BENCH_SWITCH": mode} if mode else {}
            for size in (w.n1, w.n2):
                tasks.append((w, name, interp, size, env))
    results = {}
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {
                pool.submit(harness.callgrind_ir, valgrind, interp, w, size,
                            "callgrind %s %s n=%d" % (name, w.name, size), env): (w.name, name, size)
                for (w, name, interp, size, env) in tasks
            }
            for fut in concurrent.futures.as_completed(futures):
                results[futures[fut]] = fut.result()
    except harness.BenchError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1

    header = "%-12s %14s %14s %14s %14s %10s %10s %10s" % (
        "workload", "vanilla dIr", "coords dIr", "unrelated dIr", "root dIr",
        "unrel/crd", "root/van", "crd/van")
    print(header)
    print("-" * len(header))
    ratios = {"unrelated": [], "root": [], "coords": []}
    for w in workloads:
        delta = {}
        outs = set()
        for name, _ in CONFIGS:
            (ir1, o1), (ir2, o2) = results[(w.name, name, w.n1)], results[(w.name, name, w.n2)]
            delta[name] = ir2 - ir1
            outs.add((o1, o2))
        if len(outs) != 1:
            print("error: workload %s prints different results across configurations: %r" % (w.name, outs),
                  file=sys.stderr)
            return 1
        r_unrel = delta["unrelated"] / delta["coords"]
        r_root = delta["root"] / delta["vanilla"]
        r_coords = delta["coords"] / delta["vanilla"]
        ratios["unrelated"].append(r_unrel)
        ratios["root"].append(r_root)
        ratios["coords"].append(r_coords)
        print("%-12s %14s %14s %14s %14s %10.4f %10.3f %10.3f" % (
            w.name, "{:,}".format(delta["vanilla"]), "{:,}".format(delta["coords"]),
            "{:,}".format(delta["unrelated"]), "{:,}".format(delta["root"]), r_unrel, r_root, r_coords))
    g_unrel = harness.geomean(ratios["unrelated"])
    print("%-12s %14s %14s %14s %14s %10.4f %10.3f %10.3f" % (
        "geomean", "", "", "", "", g_unrel, harness.geomean(ratios["root"]), harness.geomean(ratios["coords"])))
    print("\nbudget: unrelated-space callback / coordinates only <= %.3f: %s"
          % (args.budget, "ok" if g_unrel <= args.budget else "EXCEEDED"))
    return 0 if g_unrel <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
