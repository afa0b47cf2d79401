#!/usr/bin/env python3
"""Instruction cost of one coordinate query on the instrumented interpreter.

For each query (`_retrace.coordinates()`, `_retrace.thread_delta()`,
`_retrace.hash()`) and each call depth (10, 100), runs a script under
`valgrind --tool=callgrind` twice, making N1 and N2 queries at that depth,
and prints (Ir(N2) - Ir(N1)) / (N2 - N1): the instructions one query costs,
start-up and the recursion itself cancelled out.

Usage: benches/query_cost.py --instrumented DIR/bin/python3.12
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

SCRIPT = r"""
import sys, _retrace
query = getattr(_retrace, sys.argv[1])
depth, n = int(sys.argv[2]), int(sys.argv[3])
def dive(d):
    if d > 1:
        return dive(d - 1)
    for _ in range(n):
        query()
dive(depth)
"""

N1, N2 = 200, 2200


def instructions(python, query, depth, n, workdir):
    out = os.path.join(workdir, f"cg.{query}.{depth}.{n}")
    script = os.path.join(workdir, "query.py")
    with open(script, "w") as f:
        f.write(SCRIPT)
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--trace-children=yes",
         f"--callgrind-out-file={out}.%p", python, script, query, str(depth), str(n)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    total = 0
    for name in os.listdir(workdir):
        if name.startswith(os.path.basename(out) + "."):
            with open(os.path.join(workdir, name)) as f:
                m = re.search(r"^summary:\s+(\d+)", f.read(), re.M)
                total += int(m.group(1)) if m else 0
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instrumented", default=os.environ.get("RETRACE_INSTRUMENTED"),
                    required="RETRACE_INSTRUMENTED" not in os.environ)
    args = ap.parse_args()
    print(f"{'query':<14}{'depth':>6}{'Ir per call':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for query in ("coordinates", "thread_delta", "hash"):
            for depth in (10, 100):
                a = instructions(args.instrumented, query, depth, N1, tmp)
                b = instructions(args.instrumented, query, depth, N2, tmp)
                print(f"{query:<14}{depth:>6}{(b - a) / (N2 - N1):>14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
