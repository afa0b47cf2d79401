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

# Scheduling probes (SEMANTICS §12–§16): a thread-switch callback in a fresh
# space, a call_at target hit at exact coordinates, and two threads taking
# turns through a ThreadHandoff.
import threading

switches = []
sched = retrace.CoordinateSpace()
sched.thread_switch = lambda delta, tid: switches.append((delta is None, tid))
handoff = retrace.ThreadHandoff(timeout=10)
order = []


idents = {}


def worker(name, peer):
    idents[name] = threading.get_ident()  # a Retrace thread id
    handoff.start()  # park until another thread hands over
    for i in range(2):
        order.append(f"{name}{i}")
        handoff.to(idents[peer])  # wake the peer, park until it hands back
    handoff.close()  # releases the peer's last hand-over


threads = [threading.Thread(target=sched.run, args=(worker, *pair)) for pair in (("a", "b"), ("b", "a"))]
for t in threads:
    t.start()
for _ in range(1000):
    if len(idents) == 2:
        break
    threading.Event().wait(0.01)
handoff.to(idents["a"])  # worker "a" first; main parks until someone hands back or closes
for t in threads:
    t.join(10)
sched.thread_switch = None
print("ThreadHandoff turns:", order, f"({len(switches)} switch callbacks in space {sched.id})")

hits = []


def armed(k):
    c = _retrace.coordinates()
    try:
        retrace.call_at((*c[:-2], c[-2] + k, 0), lambda: hits.append(retrace.coordinates()[-2]))
    except ValueError:
        return None
    x = 1
    x += 1
    x += 2
    return c[-2] + k


for k in range(1, 200):
    target = armed(k)
    if hits:
        print(f"call_at hit its target instruction {target}: coordinates()[-2] inside the callback = {hits[0]}")
        break
