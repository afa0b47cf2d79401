#!/usr/bin/env python3
"""Regression gate: run CPython's own test suite under the vanilla and the
instrumented interpreter and report every per-test-case difference.

Why this exists: the rewriter patches dispatch and frame-link sites inside an
unmodified libpython.  The strongest cheap evidence that the rewrite is
behaviour-preserving is that CPython's regression suite produces *exactly the
same per-test-case outcomes* with the rewritten library as with the original
one, on the same machine, with the same standard library.  Absolute pass/fail
does not matter (environment-dependent tests may fail or be skipped in both);
only differences do.

How it works:

* each test module runs in its own process (``INTERP -m test MOD
  --junit-xml FILE``) with a wall-clock timeout, ``-j`` modules at a time;
* the JUnit XML written by libregrtest (3.11-3.13) is parsed into
  ``test id -> outcome`` (pass, fail, error, skip, xfail, xpass);
* a module is "same" iff both runs have the same set of test ids, the same
  outcome for every id, and the same regrtest exit status (a crash or a
  timeout is a difference even when the XML happens to match);
* flaky-test policy: differing test ids are re-run once in both interpreters
  (``--matchfile`` with the ids); only ids that differ again are reported.  A
  differing exit status alone triggers one full re-run of the module.

Exit status: 0 iff every module is the same, 1 if any differs, 2 on usage or
environment errors (e.g. interpreter not found).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Tuple

DEFAULT_MODULES = [
    "test_sys",
    "test_generators",
    "test_coroutines",
    "test_asyncgen",
    "test_exceptions",
    "test_sys_settrace",
    "test_sys_setprofile",
    "test_monitoring",
    "test_frame",
    "test_threading",
    "test_dis",
    "test_traceback",
    "test_contextlib",
    "test_scope",
    "test_with",
    "test_raise",
    "test_import",
    "test_embed",
    "test_signal",
    "test_gc",
    # Thread ids on the ident surfaces (SEMANTICS §9.5), thread-state clears
    # (the PyThreadState_Clear detour) and thread bootstrap.
    "test_thread",
    "test_threading_local",
    "test_threadsignals",
    "test_queue",
    "test_faulthandler",
    "test_logging",
]

# regrtest exit codes (Lib/test/libregrtest/results.py, 3.11-3.13).
REGRTEST_EXIT = {
    0: "ok",
    1: "error",
    2: "failed",
    3: "env_changed",
    4: "no_tests_run",
    5: "rerun_failed",
    130: "interrupted",
}

FAILING_OUTCOMES = ("fail", "error", "xpass")
PASSING_OUTCOMES = ("pass", "xfail")
MISSING = "missing"
MESSAGE_LINES = 6


class GateError(Exception):
    """A usage or environment problem that prevents running the gate."""


# --------------------------------------------------------------------------
# Interpreter discovery
# --------------------------------------------------------------------------


def _default_sigint():
    """In the child: SIGINT back to its default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def pyenv_root() -> str:
    """Return $(pyenv root): PYENV_ROOT if set, else `pyenv root`, else /root/.pyenv."""
    root = os.environ.get("PYENV_ROOT")
    if root:
        return root
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            out = subprocess.run(
                [pyenv, "root"], capture_output=True, text=True, timeout=20
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return "/root/.pyenv"


def _version_key(path: str) -> Tuple[int, ...]:
    match = re.search(r"versions/(\d+)\.(\d+)\.(\d+)", path)
    if not match:
        return (0,)
    return tuple(int(g) for g in match.groups())


def discover_vanilla(series: str) -> str:
    """Newest pyenv interpreter of the given series (e.g. '3.12')."""
    root = pyenv_root()
    pattern = os.path.join(root, "versions", series + ".*", "bin", "python" + series)
    found = [p for p in glob.glob(pattern) if os.access(p, os.X_OK)]
    # Exclude e.g. 3.12-dev style dirs without a numeric patch level last.
    if not found:
        raise GateError(
            "no vanilla Python %s interpreter found (looked for %s); "
            "pass one explicitly with --vanilla /path/to/python%s "
            "or set PYENV_ROOT" % (series, pattern, series)
        )
    return sorted(found, key=_version_key)[-1]


def probe_interpreter(path: str, role: str) -> Dict[str, str]:
    """Run the interpreter once; return its version and executable."""
    if not os.path.exists(path):
        raise GateError(
            "%s interpreter %r does not exist; pass it with --%s PATH"
            % (role, path, role)
        )
    if not os.access(path, os.X_OK):
        raise GateError("%s interpreter %r is not executable" % (role, path))
    code = (
        "import sys, sysconfig; "
        "print('%d.%d.%d' % sys.version_info[:3]); print(sys.executable); "
        "print(sysconfig.get_config_var('INSTSONAME') or '')"
    )
    try:
        out = subprocess.run(
            [path, "-c", code], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise GateError("cannot run %s interpreter %r: %s" % (role, path, exc))
    if out.returncode != 0:
        raise GateError(
            "%s interpreter %r failed to start (exit %d): %s"
            % (role, path, out.returncode, out.stderr.strip()[-2000:])
        )
    lines = out.stdout.splitlines()
    if len(lines) < 2:
        raise GateError("%s interpreter %r printed unexpected output" % (role, path))
    return {
        "path": path,
        "version": lines[0],
        "executable": lines[1],
        "soname": lines[2] if len(lines) > 2 else "",
    }


# --------------------------------------------------------------------------
# Running regrtest and parsing JUnit XML
# --------------------------------------------------------------------------


class Case:
    """Outcome of one test id in one run."""

    __slots__ = ("outcome", "message")

    def __init__(self, outcome: str, message: str = "") -> None:
        self.outcome = outcome
        self.message = message


class RunResult:
    """Result of one `INTERP -m test MOD` process."""

    def __init__(self) -> None:
        self.rc: Optional[int] = None
        self.status = "not_run"
        self.wall_s = 0.0
        self.cases: Dict[str, Case] = {}
        self.junit_ok = False
        self.log_tail = ""

    def counts(self) -> Dict[str, int]:
        counts = {"pass": 0, "fail": 0, "skip": 0}
        for case in self.cases.values():
            if case.outcome in PASSING_OUTCOMES:
                counts["pass"] += 1
            elif case.outcome in FAILING_OUTCOMES:
                counts["fail"] += 1
            else:
                counts["skip"] += 1
        return counts

    def to_json(self) -> dict:
        return {
            "rc": self.rc,
            "status": self.status,
            "wall_s": round(self.wall_s, 3),
            "junit_ok": self.junit_ok,
            "counts": self.counts(),
        }


def status_from_rc(rc: Optional[int], timed_out: bool) -> str:
    if timed_out:
        return "timeout"
    if rc is None:
        return "not_run"
    if rc < 0:
        try:
            return "signal:" + signal.Signals(-rc).name
        except ValueError:
            return "signal:%d" % -rc
    return REGRTEST_EXIT.get(rc, "exit:%d" % rc)


def _first_lines(text: str, count: int = MESSAGE_LINES) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[:count])


def classify_testcase(elem: ET.Element) -> Case:
    """Map a libregrtest <testcase> element to an outcome."""
    error = elem.find("error")
    if error is not None:
        return Case("error", error.get("message") or (error.text or ""))
    failure = elem.find("failure")
    if failure is not None:
        return Case("fail", failure.get("message") or (failure.text or ""))
    skipped = elem.find("skipped")
    if skipped is not None:
        return Case("skip", skipped.text or "")
    outcome = elem.find("outcome")
    if outcome is not None and (outcome.text or "").strip() == "UNEXPECTED_SUCCESS":
        return Case("xpass", "unexpected success")
    if elem.find("output") is not None:
        return Case("xfail", "")
    return Case("pass", "")


def parse_junit(path: str) -> Dict[str, Case]:
    """Parse a libregrtest JUnit file into {test id: Case}.

    Duplicate ids (rare: e.g. a test reported twice) get a '#N' suffix so the
    comparison still sees every report.
    """
    root = ET.parse(path).getroot()
    cases: Dict[str, Case] = {}
    for elem in root.iter("testcase"):
        name = elem.get("name") or "<unnamed>"
        key = name
        index = 2
        while key in cases:
            key = "%s#%d" % (name, index)
            index += 1
        cases[key] = classify_testcase(elem)
    return cases


def _tail(path: str, max_bytes: int = 4000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_regrtest(
    interp: str,
    module: str,
    workdir: str,
    tag: str,
    timeout: float,
    match_ids: Optional[List[str]] = None,
) -> RunResult:
    """Run one module in one interpreter, in its own process and cwd."""
    result = RunResult()
    os.makedirs(workdir, exist_ok=True)
    junit = os.path.join(workdir, "%s.%s.xml" % (module, tag))
    log = os.path.join(workdir, "%s.%s.log" % (module, tag))
    cwd = os.path.join(workdir, "%s.%s.cwd" % (module, tag))
    if os.path.exists(junit):
        os.unlink(junit)  # never parse a stale file from an earlier run
    os.makedirs(cwd, exist_ok=True)
    cmd = [interp, "-m", "test", module, "--junit-xml", junit]
    if match_ids:
        matchfile = os.path.join(workdir, "%s.%s.match" % (module, tag))
        with open(matchfile, "w", encoding="utf-8") as handle:
            handle.write("\n".join(match_patterns(match_ids)) + "\n")
        cmd += ["--matchfile", matchfile]
    timed_out = False
    start = time.perf_counter()
    with open(log, "wb") as out:
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # A gate started in the background (`cmd &`) inherits SIGINT as
                # ignored; CPython then installs no SIGINT handler and tests that
                # use _thread.interrupt_main() spin forever. Restore the default.
                preexec_fn=_default_sigint,
            )
        except OSError as exc:
            result.status = "spawn_error"
            result.log_tail = str(exc)
            return result
        try:
            result.rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            result.rc = proc.wait()
    result.wall_s = time.perf_counter() - start
    result.status = status_from_rc(result.rc, timed_out)
    if os.path.exists(junit):
        try:
            result.cases = parse_junit(junit)
            result.junit_ok = True
        except (ET.ParseError, OSError) as exc:
            result.log_tail = "unreadable junit file %s: %s\n" % (junit, exc)
    if not result.junit_ok or result.status not in ("ok", "failed"):
        result.log_tail += _tail(log)
    shutil.rmtree(cwd, ignore_errors=True)
    return result


def match_patterns(ids: List[str]) -> List[str]:
    """Turn reported test ids into regrtest --matchfile patterns.

    * subtest ids 'pkg.Cls.test_x (param=1)' -> 'pkg.Cls.test_x'
    * fixture errors 'setUpClass (pkg.Cls)' -> 'pkg.Cls.*'
    * duplicate-id suffixes '#N' are dropped
    """
    patterns = []
    for test_id in ids:
        test_id = re.sub(r"#\d+$", "", test_id)
        fixture = re.match(r"^(setUpClass|tearDownClass|setUpModule|tearDownModule) \((.+)\)$", test_id)
        if fixture:
            pattern = fixture.group(2) + ".*"
        else:
            pattern = test_id.split(" ", 1)[0]
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


# --------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------


def diff_cases(
    vanilla: Dict[str, Case], instr: Dict[str, Case], only: Optional[List[str]] = None
) -> List[str]:
    """Test ids whose outcome (or presence) differs."""
    ids = only if only is not None else sorted(set(vanilla) | set(instr))
    out = []
    for test_id in ids:
        v = vanilla.get(test_id)
        i = instr.get(test_id)
        v_out = v.outcome if v else MISSING
        i_out = i.outcome if i else MISSING
        if v_out != i_out:
            out.append(test_id)
    return out


class ModuleReport:
    """Everything known about one module after both runs (and re-runs)."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.vanilla = RunResult()
        self.instr = RunResult()
        self.differences: List[dict] = []
        self.status_differs = False
        self.reruns: List[str] = []

    @property
    def same(self) -> bool:
        return not self.differences and not self.status_differs

    def to_json(self) -> dict:
        return {
            "module": self.module,
            "verdict": "same" if self.same else "DIFFERENT",
            "vanilla": self.vanilla.to_json(),
            "instrumented": self.instr.to_json(),
            "status_differs": self.status_differs,
            "differences": self.differences,
            "reruns": self.reruns,
        }


def _describe(case: Optional[Case]) -> str:
    return case.outcome if case else MISSING


def _run_pair(args, module, workdir, tag, match_ids=None) -> Tuple[RunResult, RunResult]:
    vanilla = run_regrtest(args.vanilla, module, workdir, "vanilla" + tag, args.timeout, match_ids)
    instr = run_regrtest(args.instrumented, module, workdir, "instrumented" + tag, args.timeout, match_ids)
    return vanilla, instr


def compare_module(args, module: str, workdir: str, log) -> ModuleReport:
    report = ModuleReport(module)
    report.vanilla, report.instr = _run_pair(args, module, workdir, "")
    diff_ids = diff_cases(report.vanilla.cases, report.instr.cases)
    status_differs = report.vanilla.status != report.instr.status
    # A failing test case turns regrtest's exit status from "ok" into
    # "failed": such a status difference is explained by the differing ids
    # and is handled by the per-id re-run.  Anything else (crash, timeout,
    # env changed, or a status difference without any differing id) needs a
    # full module re-run.
    explained = bool(diff_ids) and {report.vanilla.status, report.instr.status} <= {"ok", "failed"}

    if status_differs and not explained:
        # The re-run replaces the first result.
        log(
            "rerun: %s exit status differs (vanilla=%s, instrumented=%s); re-running module"
            % (module, report.vanilla.status, report.instr.status)
        )
        report.reruns.append(
            "module re-run: exit status vanilla=%s instrumented=%s"
            % (report.vanilla.status, report.instr.status)
        )
        report.vanilla, report.instr = _run_pair(args, module, workdir, ".rerun")
        diff_ids = diff_cases(report.vanilla.cases, report.instr.cases)
        status_differs = report.vanilla.status != report.instr.status
        confirmed = diff_ids
        first_v, first_i = report.vanilla, report.instr
        rerun_v, rerun_i = None, None
    elif diff_ids:
        log("rerun: %s has %d differing test id(s); re-running them once in both" % (module, len(diff_ids)))
        report.reruns.append("test re-run of %d id(s)" % len(diff_ids))
        rerun_v, rerun_i = _run_pair(args, module, workdir, ".rerun", diff_ids)
        confirmed = []
        for test_id in diff_ids:
            rv = rerun_v.cases.get(test_id)
            ri = rerun_i.cases.get(test_id)
            if rv is None and ri is None:
                # The re-run could not select this id (e.g. a module-level
                # error): no evidence of flakiness, keep the difference.
                confirmed.append(test_id)
            elif _describe(rv) != _describe(ri):
                confirmed.append(test_id)
        flaky = len(diff_ids) - len(confirmed)
        if flaky:
            report.reruns.append("%d id(s) agreed on re-run (flaky, not reported)" % flaky)
        if not confirmed:
            # Every differing id was flaky, so the status difference it
            # caused is flaky too.
            status_differs = False
        first_v, first_i = report.vanilla, report.instr
    else:
        confirmed = []
        first_v = first_i = rerun_v = rerun_i = None

    report.status_differs = status_differs
    for test_id in confirmed:
        entry = {
            "id": test_id,
            "vanilla": _describe(first_v.cases.get(test_id)),
            "instrumented": _describe(first_i.cases.get(test_id)),
        }
        case = first_i.cases.get(test_id)
        message = case.message if case else ""
        if rerun_v is not None and rerun_i is not None:
            entry["rerun_vanilla"] = _describe(rerun_v.cases.get(test_id))
            entry["rerun_instrumented"] = _describe(rerun_i.cases.get(test_id))
            rcase = rerun_i.cases.get(test_id)
            if not message and rcase is not None:
                message = rcase.message
        if not message and case is None:
            tail = first_i.log_tail.strip().splitlines()[-(MESSAGE_LINES - 1):]
            message = "(no result for this id in the instrumented run; status %s)\n%s" % (
                first_i.status,
                "\n".join(tail),
            )
        entry["message"] = _first_lines(message)
        report.differences.append(entry)
    return report


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def _counts_str(result: RunResult) -> str:
    c = result.counts()
    return "%d/%d/%d" % (c["pass"], c["fail"], c["skip"])


def print_table(reports: List[ModuleReport], out=sys.stdout) -> None:
    header = "%-22s %-16s %-16s %8s %8s %-14s %-14s %s" % (
        "module", "vanilla p/f/s", "instr p/f/s", "v wall", "i wall", "v status", "i status", "verdict",
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in reports:
        verdict = "same" if r.same else "DIFFERENT"
        if r.reruns:
            verdict += " (rerun)"
        print(
            "%-22s %-16s %-16s %7.1fs %7.1fs %-14s %-14s %s"
            % (
                r.module,
                _counts_str(r.vanilla),
                _counts_str(r.instr),
                r.vanilla.wall_s,
                r.instr.wall_s,
                r.vanilla.status,
                r.instr.status,
                verdict,
            ),
            file=out,
        )


def print_differences(reports: List[ModuleReport], out=sys.stdout) -> None:
    for r in reports:
        if r.same:
            continue
        print("\n== %s ==" % r.module, file=out)
        for note in r.reruns:
            print("  [%s]" % note, file=out)
        if r.status_differs:
            print(
                "  exit status differs: vanilla=%s (rc=%s) instrumented=%s (rc=%s)"
                % (r.vanilla.status, r.vanilla.rc, r.instr.status, r.instr.rc),
                file=out,
            )
            tail = "\n".join(r.instr.log_tail.strip().splitlines()[-10:])
            if tail:
                print("  instrumented log tail:", file=out)
                for line in tail.splitlines():
                    print("    | " + line, file=out)
        for d in r.differences:
            line = "  %s: vanilla=%s instrumented=%s" % (d["id"], d["vanilla"], d["instrumented"])
            if "rerun_vanilla" in d:
                line += " (rerun: vanilla=%s instrumented=%s)" % (d["rerun_vanilla"], d["rerun_instrumented"])
            print(line, file=out)
            for msg_line in d.get("message", "").splitlines():
                print("      " + msg_line, file=out)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def list_all_tests(interp: str) -> List[str]:
    out = subprocess.run(
        [interp, "-m", "test", "--list-tests"], capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        raise GateError("`%s -m test --list-tests` failed: %s" % (interp, out.stderr[-2000:]))
    tests = [line.strip() for line in out.stdout.splitlines() if line.strip().startswith("test")]
    if not tests:
        raise GateError("`%s -m test --list-tests` listed no tests" % interp)
    return tests


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Run CPython regression test modules under the vanilla and the "
            "instrumented interpreter and report every per-test-case "
            "difference. Exit 0 iff all outcomes are identical."
        ),
        epilog=(
            "Example: scripts/regrtest_compare.py --instrumented "
            "out/bin/python3.12 -j2 --json gate.json. Without --vanilla the "
            "newest $(pyenv root)/versions/3.12.*/bin/python3.12 is used."
        ),
    )
    parser.add_argument("tests", nargs="*", help="test modules to run (default: a curated list of %d)" % len(DEFAULT_MODULES))
    parser.add_argument("--all", action="store_true", help="run the whole suite (as listed by `-m test --list-tests`)")
    parser.add_argument("--vanilla", help="vanilla interpreter (default: newest pyenv interpreter of --series)")
    parser.add_argument(
        "--instrumented",
        default=os.environ.get("RETRACE_INSTRUMENTED"),
        help="instrumented interpreter or launcher script, e.g. DIR/bin/python3.12 from "
        "`rewriter instrument` (default: $RETRACE_INSTRUMENTED)",
    )
    parser.add_argument("--series", default="3.12", help="Python series used to discover --vanilla (default 3.12)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="test modules run at once (default 2)")
    parser.add_argument("--timeout", type=float, default=900.0, help="per-module, per-interpreter timeout in seconds (default 900)")
    parser.add_argument("--json", metavar="OUT", help="write a machine-readable summary here")
    parser.add_argument("--keep", metavar="DIR", help="keep JUnit files and logs in DIR (default: temporary, deleted)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        print("error: -j must be >= 1", file=sys.stderr)
        return 2
    try:
        if not args.vanilla:
            args.vanilla = discover_vanilla(args.series)
        if not args.instrumented:
            raise GateError(
                "no instrumented interpreter given; pass --instrumented DIR/bin/python%s "
                "(the launcher written by `rewriter instrument LIB -o DIR`) or set "
                "RETRACE_INSTRUMENTED" % args.series
            )
        # Interpreters are run from other working directories: make paths absolute.
        args.vanilla = os.path.abspath(args.vanilla)
        args.instrumented = os.path.abspath(args.instrumented)
        v_info = probe_interpreter(args.vanilla, "vanilla")
        i_info = probe_interpreter(args.instrumented, "instrumented")
        if v_info["version"] != i_info["version"]:
            raise GateError(
                "interpreter versions differ: vanilla %s vs instrumented %s"
                % (v_info["version"], i_info["version"])
            )
        if args.all:
            modules = list_all_tests(args.vanilla)
        else:
            modules = args.tests or list(DEFAULT_MODULES)
    except GateError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2

    print("vanilla:      %s (Python %s)" % (v_info["path"], v_info["version"]))
    print("instrumented: %s (Python %s)" % (i_info["path"], i_info["version"]))
    print("modules: %d, jobs: %d, timeout: %gs" % (len(modules), args.jobs, args.timeout))
    sys.stdout.flush()

    workdir = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="regrtest_compare.")
    os.makedirs(workdir, exist_ok=True)
    lock = threading.Lock()

    def log(msg: str) -> None:
        with lock:
            print(msg, flush=True)

    start = time.perf_counter()
    reports: Dict[str, ModuleReport] = {}
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(compare_module, args, m, workdir, log): m for m in modules}
            for fut in concurrent.futures.as_completed(futures):
                report = fut.result()
                reports[report.module] = report
                log(
                    "[%d/%d] %s: %s (vanilla %.1fs, instrumented %.1fs)"
                    % (
                        len(reports),
                        len(modules),
                        report.module,
                        "same" if report.same else "DIFFERENT",
                        report.vanilla.wall_s,
                        report.instr.wall_s,
                    )
                )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    total = time.perf_counter() - start
    ordered = [reports[m] for m in modules]

    print()
    print_table(ordered)
    print_differences(ordered)
    n_diff = sum(1 for r in ordered if not r.same)
    v_sum = sum(r.vanilla.wall_s for r in ordered)
    i_sum = sum(r.instr.wall_s for r in ordered)
    print(
        "\n%d module(s), %d different; total wall %.1fs with -j%d "
        "(sum of module times: vanilla %.1fs, instrumented %.1fs)"
        % (len(ordered), n_diff, total, args.jobs, v_sum, i_sum)
    )
    if args.keep:
        print("junit files and logs kept in %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)

    if args.json:
        summary = {
            "ok": n_diff == 0,
            "vanilla": v_info,
            "instrumented": i_info,
            "jobs": args.jobs,
            "timeout_s": args.timeout,
            "total_wall_s": round(total, 3),
            "modules": [r.to_json() for r in ordered],
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
    return 0 if n_diff == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
