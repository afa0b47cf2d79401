"""Count frame-lifecycle hook events around Python-to-Python calls.

Run under an instrumented interpreter with RETRACE_HOOKS=1. The hooks fire
from the rewritten frame-link sites; the difference between two runs of the
same harness with recursion depths 20 and 10 isolates exactly 100 * 10 extra
calls (each one inlined call = one activation, one clear-and-pop, one push and
one pop of the current frame). Prints JSON.
"""

import json

import _retrace


def f(n):
    if n == 0:
        return 0
    return f(n - 1) + 1


def run(depth):
    before = _retrace._hook_counts()
    for _ in range(100):
        f(depth)
    after = _retrace._hook_counts()
    return {k: after[k] - before.get(k, 0) for k in after}


for _ in range(3):
    f(20)  # warm up: specialise CALL into CALL_PY_EXACT_ARGS
live0 = _retrace._live_frames()
d10 = run(10)
d20 = run(20)
print(json.dumps({
    "extra": {k: d20[k] - d10.get(k, 0) for k in d20},
    "d10": d10,
    "live_before": live0,
    "live_after": _retrace._live_frames(),
}))
