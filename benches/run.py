#!/usr/bin/env python3
"""Benchmark harness: overhead of the instrumented interpreter vs vanilla.

Why this exists: the product's promise is "tracing with low overhead", and
the only honest measure of overhead is the same workload run by the original
and by the rewritten libpython in the same harness run, on the same machine.
This script runs every workload in benches/workloads/ under both and prints

(a) instruction-count ratios from ``valgrind --tool=callgrind``: the total Ir
    of the whole process tree, measured at two sizes n1 < n2, so that
    ``Ir(n2) - Ir(n1)`` removes interpreter start-up and shutdown;
    ratio = instrumented delta / vanilla delta, plus the geometric mean;
(b) wall-time ratios: median of K interleaved runs (vanilla and instrumented
    alternate, in ABBA order so neither always runs first), plus the
    geometric mean.

Each workload prints one deterministic checksum line; the harness fails if
the two interpreters print different lines (a fast but wrong rewrite is not
a result).  Workloads declare their sizes in a module-level
``SIZES = {"default": N, "callgrind": (n1, n2)}`` literal, read with ``ast``
(the workload is never imported by the harness).

Exit status: 0 on success, 1 if outputs differ or the callgrind geometric
mean exceeds --target, 2 on usage or environment errors.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import glob
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD_DIR = os.path.join(HERE, "workloads")
RUN_TIMEOUT_S = 1800


class BenchError(Exception):
    """A usage, environment or correctness problem that stops the run."""


# --------------------------------------------------------------------------
# Interpreters
# --------------------------------------------------------------------------


def pyenv_root() -> str:
    """Return $(pyenv root): PYENV_ROOT if set, else `pyenv root`, else /root/.pyenv."""
    root = os.environ.get("PYENV_ROOT")
    if root:
        return root
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            out = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=20)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return "/root/.pyenv"


def _version_key(path: str) -> Tuple[int, ...]:
    match = re.search(r"versions/(\d+)\.(\d+)\.(\d+)", path)
    return tuple(int(g) for g in match.groups()) if match else (0,)


def discover_vanilla(series: str) -> str:
    pattern = os.path.join(pyenv_root(), "versions", series + ".*", "bin", "python" + series)
    found = [p for p in glob.glob(pattern) if os.access(p, os.X_OK)]
    if not found:
        raise BenchError(
            "no vanilla Python %s interpreter found (looked for %s); pass one with "
            "--vanilla /path/to/python%s or set PYENV_ROOT" % (series, pattern, series)
        )
    return sorted(found, key=_version_key)[-1]


def check_interpreter(path: str, role: str) -> str:
    """Return the interpreter's version string, or raise BenchError."""
    if not os.path.exists(path):
        raise BenchError("%s interpreter %r does not exist; pass it with --%s PATH" % (role, path, role))
    try:
        out = subprocess.run(
            [path, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BenchError("cannot run %s interpreter %r: %s" % (role, path, exc))
    if out.returncode != 0:
        raise BenchError(
            "%s interpreter %r failed to start (exit %d): %s"
            % (role, path, out.returncode, out.stderr.strip()[-2000:])
        )
    return out.stdout.strip()


# --------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------


class Workload:
    def __init__(self, name: str, path: str, default: int, n1: int, n2: int) -> None:
        self.name = name
        self.path = path
        self.default = default
        self.n1 = n1
        self.n2 = n2


def _read_sizes(path: str) -> Tuple[int, int, int]:
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "SIZES"
        ):
            try:
                sizes = ast.literal_eval(node.value)
                default = int(sizes["default"])
                n1, n2 = (int(x) for x in sizes["callgrind"])
            except (ValueError, KeyError, TypeError) as exc:
                raise BenchError("%s: malformed SIZES literal: %s" % (path, exc))
            if not (0 < n1 < n2) or default <= 0:
                raise BenchError("%s: SIZES must satisfy 0 < n1 < n2 and default > 0" % path)
            return default, n1, n2
    raise BenchError('%s: no module-level SIZES = {"default": N, "callgrind": (n1, n2)}' % path)


def load_workloads(only: Optional[List[str]]) -> List[Workload]:
    paths = sorted(
        p for p in glob.glob(os.path.join(WORKLOAD_DIR, "*.py")) if not os.path.basename(p).startswith("_")
    )
    workloads = []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        default, n1, n2 = _read_sizes(path)
        workloads.append(Workload(name, path, default, n1, n2))
    if not workloads:
        raise BenchError("no workloads found in %s" % WORKLOAD_DIR)
    if only:
        known = {w.name for w in workloads}
        unknown = [n for n in only if n not in known]
        if unknown:
            raise BenchError("unknown workload(s) %s; available: %s" % (", ".join(unknown), ", ".join(sorted(known))))
        workloads = [w for w in workloads if w.name in only]
    return workloads


def bench_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"  # deterministic str hashing => deterministic work
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in the tree; every run does the same work
    env.pop("PYTHONDEVMODE", None)
    env.pop("PYTHONTRACEMALLOC", None)
    return env


def _run(cmd: List[str], what: str, extra_env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    env = bench_env()
    env.update(extra_env or {})
    try:
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=WORKLOAD_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise BenchError("%s timed out after %ds: %s" % (what, RUN_TIMEOUT_S, " ".join(cmd)))
    except OSError as exc:
        raise BenchError("%s could not start: %s" % (what, exc))
    if out.returncode != 0:
        raise BenchError(
            "%s failed (exit %d): %s\n%s" % (what, out.returncode, " ".join(cmd), out.stderr.strip()[-3000:])
        )
    return out


def checksum_line(stdout: str, what: str) -> str:
    lines = [line for line in stdout.splitlines() if " checksum=" in line]
    if len(lines) != 1:
        raise BenchError("%s: expected exactly one checksum line, got: %r" % (what, stdout[-500:]))
    return lines[0].strip()


# --------------------------------------------------------------------------
# Callgrind
# --------------------------------------------------------------------------

_COLLECTED = re.compile(r"^==(\d+)==\s+Collected\s*:\s*([\d,]+)\s*$", re.M)
_IREFS = re.compile(r"^==(\d+)==\s+I\s+refs\s*:\s*([\d,]+)\s*$", re.M)


def parse_callgrind_ir(stderr: str) -> int:
    """Total Ir over every process valgrind reported on (one line per pid).

    Prefers the 'Collected :' lines (callgrind's event total) and falls back
    to 'I refs:'.  Numbers may contain thousands separators.
    """
    for regex in (_COLLECTED, _IREFS):
        totals: Dict[str, int] = {}
        for pid, value in regex.findall(stderr):
            # A pid that exec()s reports once per image; keep every report.
            totals[pid] = totals.get(pid, 0) + int(value.replace(",", ""))
        if totals:
            return sum(totals.values())
    raise BenchError("could not find 'Collected :' or 'I refs:' in callgrind output:\n" + stderr[-2000:])


def callgrind_ir(
    valgrind: str, interp: str, workload: Workload, size: int, what: str, extra_env: Optional[Dict[str, str]] = None
) -> Tuple[int, str]:
    with tempfile.TemporaryDirectory(prefix="bench_cg.") as tmp:
        cmd = [
            valgrind,
            "--tool=callgrind",
            "--trace-children=yes",  # launcher scripts exec the real interpreter
            "--callgrind-out-file=" + os.path.join(tmp, "callgrind.out.%p"),
            interp,
            workload.path,
            str(size),
        ]
        out = _run(cmd, what, extra_env)
    return parse_callgrind_ir(out.stderr), checksum_line(out.stdout, what)


def measure_callgrind(valgrind: str, interps: Dict[str, str], workloads: List[Workload], jobs: int) -> Dict[str, dict]:
    tasks = []
    for w in workloads:
        for role, interp in interps.items():
            for size in (w.n1, w.n2):
                tasks.append((w, role, interp, size))
    results: Dict[Tuple[str, str, int], Tuple[int, str]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(callgrind_ir, valgrind, interp, w, size, "callgrind %s %s n=%d" % (role, w.name, size)): (
                w.name,
                role,
                size,
            )
            for (w, role, interp, size) in tasks
        }
        for fut in concurrent.futures.as_completed(futures):
            results[futures[fut]] = fut.result()
    table = {}
    for w in workloads:
        row: Dict[str, object] = {"n1": w.n1, "n2": w.n2}
        for role in interps:
            ir1, out1 = results[(w.name, role, w.n1)]
            ir2, out2 = results[(w.name, role, w.n2)]
            row[role + "_ir_n1"] = ir1
            row[role + "_ir_n2"] = ir2
            row[role + "_delta"] = ir2 - ir1
            row[role + "_out"] = (out1, out2)
        if row["vanilla_out"] != row["instrumented_out"]:
            raise BenchError(
                "workload %s prints different results under callgrind: vanilla %r vs instrumented %r"
                % (w.name, row["vanilla_out"], row["instrumented_out"])
            )
        del row["vanilla_out"], row["instrumented_out"]
        if row["vanilla_delta"] <= 0:
            raise BenchError(
                "workload %s: vanilla Ir(n2) - Ir(n1) = %d is not positive; increase its callgrind sizes"
                % (w.name, row["vanilla_delta"])
            )
        row["ratio"] = row["instrumented_delta"] / row["vanilla_delta"]
        table[w.name] = row
    return table


# --------------------------------------------------------------------------
# Wall time
# --------------------------------------------------------------------------


def timed_run(interp: str, workload: Workload, what: str) -> Tuple[float, float, str]:
    """Run once at the default size; return (wall s, child CPU s, checksum line).

    CPU time (user + sys of the reaped child tree, from RUSAGE_CHILDREN) is
    reported next to wall time because it is far less sensitive to other
    load on the machine.  Wall runs are sequential, so the delta is exactly
    this run's process tree.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = _run([interp, workload.path, str(workload.default)], what)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, checksum_line(out.stdout, what)


def warn_if_loaded(log) -> None:
    """Wall time is meaningless on a busy machine: say so up front."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    cpus = os.cpu_count() or 1
    if load > max(0.5, cpus - 1.0):
        log(
            "warning: 1-minute load average %.2f on %d CPU(s): wall times will be noisy; "
            "prefer the callgrind and CPU-time ratios" % (load, cpus)
        )


def measure_wall(interps: Dict[str, str], workloads: List[Workload], runs: int, log) -> Dict[str, dict]:
    warn_if_loaded(log)
    table = {}
    for w in workloads:
        times: Dict[str, List[float]] = {role: [] for role in interps}
        cpu: Dict[str, List[float]] = {role: [] for role in interps}
        outputs: Dict[str, str] = {}
        # One untimed warm-up pair (page cache, CPU frequency).
        for role, interp in interps.items():
            _, _, outputs[role] = timed_run(interp, w, "warm-up %s %s" % (role, w.name))
        if outputs["vanilla"] != outputs["instrumented"]:
            raise BenchError(
                "workload %s prints different results: vanilla %r vs instrumented %r"
                % (w.name, outputs["vanilla"], outputs["instrumented"])
            )
        for k in range(runs):
            order = ["vanilla", "instrumented"] if k % 2 == 0 else ["instrumented", "vanilla"]
            for role in order:
                elapsed, cpu_s, line = timed_run(interps[role], w, "%s %s run %d" % (role, w.name, k))
                if line != outputs[role]:
                    raise BenchError("workload %s is not deterministic under %s: %r vs %r" % (w.name, role, line, outputs[role]))
                times[role].append(elapsed)
                cpu[role].append(cpu_s)
        v_med = statistics.median(times["vanilla"])
        i_med = statistics.median(times["instrumented"])
        v_cpu = statistics.median(cpu["vanilla"])
        i_cpu = statistics.median(cpu["instrumented"])
        table[w.name] = {
            "size": w.default,
            "vanilla_median_s": v_med,
            "instrumented_median_s": i_med,
            "vanilla_s": times["vanilla"],
            "instrumented_s": times["instrumented"],
            "ratio": i_med / v_med,
            "vanilla_cpu_median_s": v_cpu,
            "instrumented_cpu_median_s": i_cpu,
            "vanilla_cpu_s": cpu["vanilla"],
            "instrumented_cpu_s": cpu["instrumented"],
            "cpu_ratio": i_cpu / v_cpu if v_cpu > 0 else float("nan"),
        }
        log(
            "wall %-12s vanilla %.3fs instrumented %.3fs ratio %.3f (cpu ratio %.3f)"
            % (w.name, v_med, i_med, i_med / v_med, table[w.name]["cpu_ratio"])
        )
    return table


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def geomean(values: List[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def print_tables(workloads: List[Workload], cg: Optional[Dict[str, dict]], wall: Optional[Dict[str, dict]]) -> None:
    if cg:
        print("\nInstruction counts (callgrind, Ir(n2) - Ir(n1), whole process)")
        header = "%-12s %14s %16s %16s %8s" % ("workload", "n1 -> n2", "vanilla dIr", "instr dIr", "ratio")
        print(header)
        print("-" * len(header))
        for w in workloads:
            r = cg[w.name]
            print(
                "%-12s %14s %16s %16s %8.3f"
                % (w.name, "%d->%d" % (r["n1"], r["n2"]), "{:,}".format(r["vanilla_delta"]),
                   "{:,}".format(r["instrumented_delta"]), r["ratio"])
            )
        print("%-12s %14s %16s %16s %8.3f" % ("geomean", "", "", "", geomean([cg[w.name]["ratio"] for w in workloads])))
    if wall:
        print("\nWall time and CPU time (medians of interleaved runs, default size)")
        header = "%-12s %10s %10s %10s %8s %10s %10s %8s" % (
            "workload", "size", "vanilla s", "instr s", "ratio", "v cpu s", "i cpu s", "cpu rat",
        )
        print(header)
        print("-" * len(header))
        for w in workloads:
            r = wall[w.name]
            print(
                "%-12s %10d %10.4f %10.4f %8.3f %10.4f %10.4f %8.3f"
                % (w.name, r["size"], r["vanilla_median_s"], r["instrumented_median_s"], r["ratio"],
                   r["vanilla_cpu_median_s"], r["instrumented_cpu_median_s"], r["cpu_ratio"])
            )
        print(
            "%-12s %10s %10s %10s %8.3f %10s %10s %8.3f"
            % ("geomean", "", "", "", geomean([wall[w.name]["ratio"] for w in workloads]), "", "",
               geomean([wall[w.name]["cpu_ratio"] for w in workloads]))
        )


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Run the benchmark workloads under the vanilla and the instrumented "
            "interpreter in the same run; print callgrind instruction-count "
            "ratios and median wall-time ratios with geometric means."
        ),
        epilog=(
            "Example: benches/run.py --instrumented out/bin/python3.12 --target 1.10. "
            "Without --vanilla the newest $(pyenv root)/versions/3.12.*/bin/python3.12 is used."
        ),
    )
    parser.add_argument("--vanilla", help="vanilla interpreter (default: newest pyenv interpreter of --series)")
    parser.add_argument(
        "--instrumented",
        default=os.environ.get("RETRACE_INSTRUMENTED"),
        help="instrumented interpreter or launcher script (DIR/bin/python3.12 from "
        "`rewriter instrument`; default: $RETRACE_INSTRUMENTED)",
    )
    parser.add_argument("--series", default="3.12", help="Python series used to discover --vanilla (default 3.12)")
    parser.add_argument("--no-callgrind", action="store_true", help="skip the callgrind instruction counts")
    parser.add_argument("--no-wall", action="store_true", help="skip the wall-time measurements")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per interpreter and workload (default 7)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="concurrent callgrind runs (default 2; wall runs are always sequential)")
    parser.add_argument("--only", action="append", metavar="NAMES", help="comma-separated workload names (repeatable)")
    parser.add_argument("--json", metavar="OUT", help="write machine-readable results here")
    parser.add_argument("--target", type=float, metavar="RATIO", help="exit 1 if the callgrind geometric mean exceeds RATIO")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    only = [n.strip() for item in (args.only or []) for n in item.split(",") if n.strip()] or None
    try:
        if args.runs < 1 or args.jobs < 1:
            raise BenchError("--runs and -j must be >= 1")
        if args.no_callgrind and args.no_wall:
            raise BenchError("--no-callgrind and --no-wall together leave nothing to measure")
        if args.target is not None and args.no_callgrind:
            raise BenchError("--target applies to the callgrind geometric mean; drop --no-callgrind")
        if not args.vanilla:
            args.vanilla = discover_vanilla(args.series)
        if not args.instrumented:
            raise BenchError(
                "no instrumented interpreter given; pass --instrumented DIR/bin/python%s "
                "(the launcher written by `rewriter instrument LIB -o DIR`) or set RETRACE_INSTRUMENTED"
                % args.series
            )
        # Interpreters are run from other working directories: make paths absolute.
        args.vanilla = os.path.abspath(args.vanilla)
        args.instrumented = os.path.abspath(args.instrumented)
        v_version = check_interpreter(args.vanilla, "vanilla")
        i_version = check_interpreter(args.instrumented, "instrumented")
        if v_version != i_version:
            raise BenchError("interpreter versions differ: vanilla %s vs instrumented %s" % (v_version, i_version))
        valgrind = None
        if not args.no_callgrind:
            valgrind = shutil.which("valgrind")
            if not valgrind:
                raise BenchError("valgrind not found on PATH; install it (apt-get install valgrind) or pass --no-callgrind")
        workloads = load_workloads(only)
    except BenchError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2

    interps = {"vanilla": args.vanilla, "instrumented": args.instrumented}
    print("vanilla:      %s (Python %s)" % (args.vanilla, v_version))
    print("instrumented: %s (Python %s)" % (args.instrumented, i_version))
    print("workloads:    %s" % ", ".join(w.name for w in workloads), flush=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    cg = wall = None
    timings = {}
    try:
        if valgrind:
            start = time.perf_counter()
            cg = measure_callgrind(valgrind, interps, workloads, args.jobs)
            timings["callgrind_s"] = round(time.perf_counter() - start, 1)
            log("callgrind done in %.1fs" % timings["callgrind_s"])
        if not args.no_wall:
            start = time.perf_counter()
            wall = measure_wall(interps, workloads, args.runs, log)
            timings["wall_s"] = round(time.perf_counter() - start, 1)
            log("wall-time runs done in %.1fs" % timings["wall_s"])
    except BenchError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1

    print_tables(workloads, cg, wall)
    cg_geo = geomean([cg[w.name]["ratio"] for w in workloads]) if cg else None
    wall_geo = geomean([wall[w.name]["ratio"] for w in workloads]) if wall else None
    cpu_geo = geomean([wall[w.name]["cpu_ratio"] for w in workloads]) if wall else None

    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "vanilla": {"path": args.vanilla, "version": v_version},
                    "instrumented": {"path": args.instrumented, "version": i_version},
                    "callgrind": cg,
                    "callgrind_geomean": cg_geo,
                    "wall": wall,
                    "wall_geomean": wall_geo,
                    "cpu_geomean": cpu_geo,
                    "runs": args.runs,
                    "harness_time_s": timings,
                    "target": args.target,
                },
                handle,
                indent=2,
            )

    if args.target is not None and cg_geo is not None and cg_geo > args.target:
        print("\nFAIL: callgrind geometric mean %.3f exceeds target %.3f" % (cg_geo, args.target))
        return 1
    if args.target is not None:
        print("\nOK: callgrind geometric mean %.3f <= target %.3f" % (cg_geo, args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
