"""retrace: deterministic execution coordinates for CPython.

This module is frozen into the retrace runtime (libretrace_rt.so) and is
available in any interpreter whose libpython was rewritten by the retrace
rewriter. Everything it exports is native (``_retrace``): queries, runs and
wrappers add no Python frame between the caller and the runtime.

Coordinates are ``(instruction, ordinal)`` word pairs from the outermost
visible frame to the caller. A ``CoordinateSpace`` keeps its own
coordinates: ``root_space`` is where ordinary code runs, ``disabled_space``
is where excluded code runs.
"""

import _retrace

CoordinateSpace = _retrace._CoordinateSpace

root_space = CoordinateSpace(None)
disabled_space = CoordinateSpace(1)

coordinates = root_space.coordinates
thread_delta = root_space.thread_delta
hash = root_space.hash
include = root_space.wrap
enable = root_space.wrap
exclude = disabled_space.wrap
disable = disabled_space.wrap
run_disabled = disabled_space.run
with_new_coordinates = _retrace.with_new_coordinates
call_at = root_space.call_at
ThreadHandoff = _retrace.ThreadHandoff

__all__ = [
    "CoordinateSpace",
    "root_space",
    "disabled_space",
    "coordinates",
    "thread_delta",
    "hash",
    "include",
    "enable",
    "exclude",
    "disable",
    "run_disabled",
    "with_new_coordinates",
    "call_at",
    "ThreadHandoff",
]
