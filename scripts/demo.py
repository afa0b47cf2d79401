"""A short look at an instrumented interpreter: the builtin `_retrace`, the
frozen `retrace` module, and execution coordinates computed by the rewritten
dispatch path (SEMANTICS §4–§11)."""

import importlib.util
import sys

import _retrace
import retrace

print(sys.version.split()[0], "with", _retrace.__name__, "(", importlib.util.find_spec("_retrace").origin, ") and",
      retrace.__name__, "(", importlib.util.find_spec("retrace").origin, ")")


def leaf():
    return retrace.coordinates()


def caller():
    before = retrace.coordinates()
    inside = leaf()
    after = retrace.coordinates()
    return before, inside, after


before, inside, after = caller()
print("(instruction, ordinal) pairs, oldest frame first:")
print("  in caller, before the call:", before)
print("  in the callee:             ", inside)
print("  in caller, after the call: ", after)

print("a loop never repeats a coordinate:", [retrace.coordinates()[-2] for _ in range(4)])
print("C code calling back (map) gives the caller's pair ordinals 0, 1, 2:",
      [c[-3] for c in list(map(lambda _: retrace.coordinates(), range(3)))])

space = retrace.CoordinateSpace()
print(f"a fresh space {space.id}: before use {space.coordinates()},"
      f" inside run {space.run(lambda: space.coordinates())}, after {space.coordinates()}")
o = object()
print(f"identity hash of a new object: {hash(o)} (location hash here: {retrace.hash()})")
_retrace._reset_dispatch_counts()
sum(range(100_000))
for _ in range(10_000):
    pass
print("dispatches that needed the runtime during a 10000-iteration loop:", sum(_retrace._dispatch_counts().values()))
