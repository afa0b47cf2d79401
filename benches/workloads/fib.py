"""Workload: recursive calls (naive Fibonacci).

Why: every call pushes and pops an interpreter frame, so this measures the
frame-link sites (frame entry/exit) more than dispatch.
Usage: fib.py [SIZE]   (SIZE = how many times fib(DEPTH) is computed)
"""

from _common import report, size_from_argv

SIZES = {"default": 150, "callgrind": (4, 16)}
DEPTH = 20  # fib(20): 21891 calls


def fib(k):
    if k < 2:
        return k
    return fib(k - 1) + fib(k - 2)


def main():
    n = size_from_argv(SIZES["default"])
    total = 0
    for _ in range(n):
        total += fib(DEPTH)
    report("fib", n, total)


main()
