"""Workload: generator pipelines.

Why: generators suspend and resume frames (YIELD_VALUE / SEND / yield from),
which exercises the frame-link paths that are not ordinary calls.
Usage: generators.py [SIZE]   (SIZE = items pushed through the pipeline)
"""

from _common import report, size_from_argv

SIZES = {"default": 1_000_000, "callgrind": (20_000, 80_000)}


def numbers(n):
    for i in range(n):
        yield i


def evens(source):
    for x in source:
        if x % 2 == 0:
            yield x


def chained(n):
    yield from evens(numbers(n))
    yield from (x * 3 for x in range(n // 4))


def main():
    n = size_from_argv(SIZES["default"])
    total = 0
    for value in chained(n):
        total = (total + value) % 1_000_000_007
    total += sum(x & 7 for x in numbers(n // 2))
    report("generators", n, total)


main()
