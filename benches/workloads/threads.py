"""Workload: several threads running Python code under the GIL.

Why: per-thread state (thread states, GIL hand-offs, per-thread shadow data
kept by the runtime) is a separate cost from single-threaded dispatch.
Usage: threads.py [SIZE]   (SIZE = total loop iterations across all threads)
"""

import threading

from _common import report, size_from_argv

SIZES = {"default": 1_600_000, "callgrind": (40_000, 160_000)}
THREADS = 4


def work(start, count, results, slot, lock, shared):
    acc = 0
    for i in range(start, start + count):
        acc = (acc + (i * i) % 97) % 1_000_003
        if i % 1024 == 0:
            with lock:
                shared[0] += 1
    results[slot] = acc


def main():
    n = size_from_argv(SIZES["default"])
    per = n // THREADS
    results = [0] * THREADS
    shared = [0]
    lock = threading.Lock()
    threads = [
        threading.Thread(target=work, args=(t * per, per, results, t, lock, shared))
        for t in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report("threads", n, "%d:%d" % (sum(results) % 1_000_003, shared[0]))


main()
