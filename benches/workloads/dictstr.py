"""Workload: dict and str manipulation.

Why: a typical "business logic" mix where most time is spent in C helpers
(dict lookups, string formatting, split/join), so interpreter overhead is a
smaller share; the ratio here bounds the overhead on realistic code.
Usage: dictstr.py [SIZE]   (SIZE = number of records processed)
"""

from _common import report, size_from_argv

SIZES = {"default": 200_000, "callgrind": (5_000, 20_000)}
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")


def main():
    n = size_from_argv(SIZES["default"])
    counts = {}
    index = {}
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        key = "%s-%d" % (word, i % 997)
        counts[key] = counts.get(key, 0) + 1
        line = " ".join((word, str(i), key.upper()))
        parts = line.split(" ")
        index[parts[2]] = len(parts[0]) + len(parts[1])
    checksum = 0
    for key in sorted(counts):
        checksum = (checksum * 31 + counts[key] + len(key)) % 1_000_000_007
    for key in sorted(index):
        checksum = (checksum * 17 + index[key]) % 1_000_000_007
    report("dictstr", n, checksum)


main()
