"""Shared runner of the conformance scripts (SEMANTICS.md §21).

Each area script defines one function per checklist item, named
``item_<N>_<what>``, and ends with ``_runner.main(globals())``. The command
line selects items (``item_11``, ``11`` or the full name; none = all). Every
selected item runs once; the runner prints ``PASS item_11 <what>`` or
``FAIL item_11: <message>`` followed by the indented traceback, and exits 1
if any item failed (2 for an unknown selector). A watchdog ends a hung run
with a traceback of every thread instead of blocking the test suite.

Scripts import it by path: ``sys.path.insert(0, os.path.dirname(__file__))``.
"""

import faulthandler
import os
import sys
import traceback

# Seconds before a hung run is killed (with every thread's traceback on stderr).
WATCHDOG = float(os.environ.get("RETRACE_TEST_WATCHDOG", "240"))


def _items(namespace, prefix):
    found = []
    for name, fn in namespace.items():
        if name.startswith(prefix) and callable(fn):
            key = name[len(prefix):].split("_", 1)[0]
            found.append((int(key) if key.isdigit() else key, name, fn))
    found.sort(key=lambda t: (isinstance(t[0], str), t[0]))
    return found


def _short(name, prefix):
    """``item_11_consecutive_samples`` → (``item_11``, ``consecutive_samples``)."""
    parts = name[len(prefix):].split("_", 1)
    if parts[0].isdigit():
        return prefix + parts[0], (parts[1] if len(parts) > 1 else "")
    return name, ""


def selectors(argv=None):
    return [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]


def _matches(sel, name, prefix):
    short, _ = _short(name, prefix)
    return sel in (name, short, short[len(prefix):])


def selected(name, prefix="item_", argv=None):
    """Whether item `name` (e.g. ``"item_13"``) runs in this process (for module-level set-up)."""
    sels = selectors(argv)
    return not sels or any(_matches(s, name, prefix) for s in sels)


def main(namespace, prefix="item_", argv=None):
    faulthandler.dump_traceback_later(WATCHDOG, exit=True)
    items = _items(namespace, prefix)
    sels = selectors(argv)
    chosen = []
    for s in sels:
        hit = [it for it in items if _matches(s, it[1], prefix)]
        if not hit:
            print(f"FAIL {s}: no such item in {os.path.basename(sys.argv[0])}", flush=True)
            sys.exit(2)
        chosen.extend(h for h in hit if h not in chosen)
    if not sels:
        chosen = items
    failed = 0
    for _, name, fn in chosen:
        short, what = _short(name, prefix)
        try:
            fn()
        except BaseException as e:  # noqa: B902 - report everything, including SystemExit
            if isinstance(e, KeyboardInterrupt):
                raise
            failed += 1
            msg = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            print(f"FAIL {short}: {msg}", flush=True)
            for line in traceback.format_exc().rstrip().splitlines():
                print("    " + line, flush=True)
        else:
            print(f"PASS {short} {what}".rstrip(), flush=True)
    faulthandler.cancel_dump_traceback_later()
    sys.stdout.flush()
    sys.exit(1 if failed else 0)


def python():
    """The instrumented interpreter (launcher) for child processes, as discovered by the Rust side."""
    return os.environ.get("RETRACE_TEST_PYTHON") or sys.executable


def run_python(args, env=None, timeout=120, cwd=None, python_exe=None):
    """Run a child interpreter; returns the CompletedProcess (text mode)."""
    import subprocess

    return subprocess.run(
        [python_exe or python(), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def describe(proc):
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
