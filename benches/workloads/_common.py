"""Shared argument handling for the benchmark workloads.

Why this exists: every workload takes exactly one positional size argument
and prints one deterministic checksum line; keeping that parsing in one place
keeps the workloads themselves about the Python feature they exercise.
The harness (benches/run.py) compares the checksum lines of the vanilla and
instrumented runs, so a miscompiled rewrite cannot pass as "fast".
"""

import sys


def size_from_argv(default):
    """Return the size argument (positive int) or `default` if none is given."""
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
