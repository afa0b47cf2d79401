"""Compare the runtime's per-opcode dispatch counters with what dis predicts.

Run under an instrumented interpreter. For each workload function, after
warm-up (so specialisation has settled), the counters are read around two
calls with different iteration counts; the difference divided by the
difference in iterations is the number of dispatches per loop iteration for
each opcode. The prediction comes from `dis.get_instructions(f, adaptive=True)`:
every instruction of the loop body (from the JUMP_BACKWARD target to the
JUMP_BACKWARD) is one dispatch, except the second half of a
superinstruction (LOAD_FAST__LOAD_FAST etc.), which has no dispatch of its own.

Prints one JSON object: {name: {"predicted": {...}, "measured": {...}}}.
"""

import dis
import json
import sys

import _retrace

ALL_OPMAP = getattr(dis, "_all_opmap", dis.opmap)


def loop_while(n):
    i = 0
    while i < n:
        i += 1
    return i


def loop_for_call(n):
    total = 0
    for k in range(n):
        total += abs(k)
    return total


def loop_attr(n):
    class P:
        def __init__(self):
            self.x = 1
    p = P()
    s = 0
    for _ in range(n):
        s = s + p.x
    return s


def predicted(f):
    ins = list(dis.get_instructions(f, adaptive=True))
    back = [i for i in ins if i.opname.startswith("JUMP_BACKWARD")]
    if len(back) != 1:
        raise SystemExit(f"{f.__name__}: expected one JUMP_BACKWARD, found {len(back)}")
    jb = back[0]
    start = jb.argval
    body = [i for i in ins if start <= i.offset <= jb.offset]
    counts = {}
    skip = False
    for i in body:
        if skip:
            skip = False
            continue
        op = ALL_OPMAP[i.opname]
        counts[op] = counts.get(op, 0) + 1
        if "__" in i.opname:  # superinstruction: its second half is not dispatched
            skip = True
    return counts


def measure(f, n1, n2):
    _retrace._reset_dispatch_counts()
    f(n1)
    c1 = _retrace._dispatch_counts()
    _retrace._reset_dispatch_counts()
    f(n2)
    c2 = _retrace._dispatch_counts()
    out = {}
    for op in set(c1) | set(c2):
        d = c2.get(op, 0) - c1.get(op, 0)
        if d:
            out[op] = d / (n2 - n1)
    return out


def main():
    result = {}
    for f in (loop_while, loop_for_call, loop_attr):
        for _ in range(5):
            f(2000)  # warm up: quicken and specialise
        m = measure(f, 1000, 5000)
        p = predicted(f)
        result[f.__name__] = {
            "predicted": {dis.opname[k] if k < len(dis.opname) else str(k): v for k, v in sorted(p.items())},
            "predicted_ops": {str(k): v for k, v in sorted(p.items())},
            "measured_ops": {str(k): v for k, v in sorted(m.items())},
        }
    json.dump(result, sys.stdout, indent=1, sort_keys=True)


main()
