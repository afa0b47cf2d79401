"""Shared argument handling for the benchmark workloads.

Why this exists: every workload takes exactly one positional size argument
and prints one deterministic checksum line; keeping that parsing in one place
keeps the workloads themselves about the Python feature they exercise.
The harness (benches/run.py) compares the checksum lines of the vanilla and
instrumented runs, so a miscompiled rewrite cannot pass as "fast".
"""

import os
import sys

# benches/switch_cost.py: RETRACE_BENCH_SWITCH=unrelated|root registers a
# thread-switch callback that does nothing, in a fresh space or in the root
# space, before the workload runs (instrumented interpreters only).
SWITCH_MODE_VAR = "RETRACE_BENCH_SWITCH"


def _noop_switch(previous_delta, next_thread_id):
    return None


def _install_switch_callback():
    mode = os.environ.get(SWITCH_MODE_VAR)
    if not mode:
        return
    import retrace

    if mode == "unrelated":
        space = retrace.CoordinateSpace()
        space.thread_switch = _noop_switch
        _install_switch_callback.keep = space
    elif mode == "root":
        retrace.root_space.thread_switch = _noop_switch
    else:
        sys.exit("%s must be 'unrelated' or 'root', not %r" % (SWITCH_MODE_VAR, mode))


def size_from_argv(default):
    """Return the size argument (positive int) or `default` if none is given."""
    _install_switch_callback()
    if len(sys.argv) < 2:
        return default
    try:
        size = int(sys.argv[1])
    except ValueError:
        sys.exit("usage: %s [SIZE]  (SIZE must be a positive integer)" % sys.argv[0])
    if size <= 0:
        sys.exit("usage: %s [SIZE]  (SIZE must be a positive integer)" % sys.argv[0])
    return size


def report(name, size, checksum):
    """Print the single checksum line the harness compares."""
    print("%s size=%d checksum=%s" % (name, size, checksum))
