"""Capability probe (SEMANTICS §19): reports what this interpreter offers, never fails.

Prints one ``name=available|unavailable`` line per module and feature and
exits 0, on vanilla and instrumented interpreters alike (checklist item 1).
"""

import importlib.util

lines = []
for mod in ("_retrace", "retrace"):
    lines.append((mod, importlib.util.find_spec(mod) is not None))
if lines[1][1]:
    import retrace

    handoff = getattr(retrace, "ThreadHandoff", None)
    lines.append(("retrace.ThreadHandoff.start", hasattr(handoff, "start")))
    lines.append(("retrace.call_at", hasattr(retrace, "call_at")))
    space = getattr(retrace, "root_space", None)
    lines.append(("retrace.root_space.monitoring", hasattr(type(space), "monitoring")))
else:
    for name in ("retrace.ThreadHandoff.start", "retrace.call_at", "retrace.root_space.monitoring"):
        lines.append((name, False))
for name, ok in lines:
    print(f"{name}={'available' if ok else 'unavailable'}")
