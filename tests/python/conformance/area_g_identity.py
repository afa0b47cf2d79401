"""Conformance checklist area G, identity hashes (SEMANTICS §21 items 59–62; §10).

Item 59 compares two child processes running the same hashing script.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _runner  # noqa: E402

import _retrace  # noqa: E402,F401 - fail early when the runtime is absent


def raw(p):
    """CPython's pointer hash: `p` rotated right by 4 as a signed 64-bit value, −1 → −2."""
    r = ((p >> 4) | (p << 60)) & (2**64 - 1)
    if r >= 2**63:
        r -= 2**64
    return -2 if r == -1 else r


CHILD_59 = r"""
import json
functions = []
for i in range(12):
    def f():
        return i
    functions.append(f)
objects = [object() for _ in range(12)]
nans = [float("nan") for _ in range(12)]
print(json.dumps({
    "functions": [hash(f) for f in functions],
    "objects": [hash(o) for o in objects],
    "nans": [hash(n) for n in nans],
}))
"""


def item_59_identity_hashes_reproduce_across_processes():
    outs = []
    for _ in range(2):
        proc = _runner.run_python(["-c", CHILD_59])
        assert proc.returncode == 0, _runner.describe(proc)
        outs.append(proc.stdout.strip())
    assert outs[0] == outs[1], "hashes differ between processes:\n" + "\n".join(outs)
    data = json.loads(outs[0])
    for name, values in data.items():
        assert len(values) == 12 and len(set(values)) == 12, f"{name}: not 12 distinct values: {values}"


def item_60_hash_is_stable():
    o = object()
    a = hash(o)
    filler = [object() for _ in range(100)]
    [hash(x) for x in filler]
    b = hash(o)
    assert a == b, f"hash changed: {a} then {b}"


def item_61_same_boundary_collides():
    a = object()
    b = object()
    s = {a, b}
    assert hash(a) == hash(b), f"objects first hashed at one boundary differ: {hash(a)} {hash(b)}"
    assert len(s) == 2, s
    fresh_objects = [object() for _ in range(16)]
    hs = [hash(o) for o in fresh_objects]
    assert len(set(hs)) == len(hs), f"comprehension hashes not pairwise distinct: {hs}"


def item_62_hash_is_not_the_pointer_hash():
    o = object()
    h = hash(o)
    assert h != raw(id(o)), f"hash(o) is the raw pointer hash {h}"


if __name__ == "__main__":
    _runner.main(globals())
