"""A short look at an instrumented interpreter: the builtin `_retrace`, the
frozen `retrace` module, and the per-opcode dispatch counters that the
rewritten dispatch path increments on every bytecode instruction."""

import dis
import importlib.util
import sys

import _retrace
import retrace

print(sys.version.split()[0], "with", _retrace.__name__, "(", importlib.util.find_spec("_retrace").origin, ") and",
      retrace.__name__, "(", importlib.util.find_spec("retrace").origin, ")")


def loop(n):
    i = 0
    while i < n:
        i += 1


loop(1000)  # warm up: specialise
_retrace._reset_dispatch_counts()
loop(100_000)
counts = _retrace._dispatch_counts()
names = getattr(dis, "_all_opname", None) or {v: k for k, v in getattr(dis, "_all_opmap", dis.opmap).items()}
print("dispatches counted by the trampolines during loop(100000):")
for op, n in sorted(counts.items(), key=lambda kv: -kv[1])[:8]:
    name = names[op] if isinstance(names, list) else names.get(op, op)
    print(f"  {name:<28} {n:>8}")
print("total", sum(counts.values()))
