"""Workload: method calls, attribute access, properties and super().

Why: object-oriented code goes through LOAD_ATTR / CALL specialisations and
bound-method frames; this shows the overhead on the most common call shape.
Usage: methods.py [SIZE]   (SIZE = loop iterations, three calls each)
"""

from _common import report, size_from_argv

SIZES = {"default": 600_000, "callgrind": (15_000, 60_000)}


class Counter:
    def __init__(self):
        self.value = 0

    def add(self, amount):
        self.value += amount
        return self.value

    @property
    def doubled(self):
        return self.value * 2


class ModCounter(Counter):
    def add(self, amount):
        return super().add(amount) % 65_521


def main():
    n = size_from_argv(SIZES["default"])
    counter = ModCounter()
    checksum = 0
    for i in range(n):
        checksum ^= counter.add(i & 255)
        checksum = (checksum + counter.doubled) & 0xFFFFFFFF
    report("methods", n, checksum)


main()
