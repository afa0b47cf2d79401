"""Workload: a tight arithmetic loop in one frame.

Why: measures pure bytecode-dispatch overhead with no calls, the cost the
rewritten dispatch sites add to every instruction.
Usage: loop.py [SIZE]   (SIZE = loop iterations)
"""

from _common import report, size_from_argv

SIZES = {"default": 2_500_000, "callgrind": (100_000, 400_000)}


def main():
    n = size_from_argv(SIZES["default"])
    total = 0
    i = 0
    while i < n:
        total = (total + i * 7) % 1_000_003
        i += 1
    report("loop", n, total)


main()
