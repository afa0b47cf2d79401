"""Prints a transcript of coordinates, deltas and location hashes taken
across calls, returns, generators, coroutines, exceptions, callbacks from C
and spaces. Run twice, with the dispatch stubs' and hooks' fast paths on
(`RETRACE_SLOW_PATH=0`) and off (`=1`): the transcripts must be identical,
since the fast paths are only a cache of what the runtime computes."""

import asyncio
import functools
import json
import operator

import _retrace
import retrace

out = []


def sample(tag):
    out.append((tag, _retrace.coordinates(), _retrace.hash(), _retrace.thread_delta()))


def fib(n):
    if n < 2:
        sample("fib-leaf")
        return n
    return fib(n - 1) + fib(n - 2)


def gen(n):
    for i in range(n):
        sample("gen")
        yield i


def sub():
    yield from gen(2)
    sample("sub")


class C:
    @property
    def prop(self):
        sample("prop")
        return 1

    def __getitem__(self, i):
        sample("getitem")
        return i

    def method(self, x):
        sample("method")
        return x + 1


def raiser():
    sample("raiser")
    raise KeyError("k")


def exceptions():
    try:
        raiser()
    except KeyError:
        sample("except")
    finally:
        sample("finally")
    try:
        try:
            raiser()
        finally:
            sample("inner-finally")
    except KeyError:
        sample("outer-except")


def closure():
    x = 1

    def inner():
        sample("closure")
        return x

    return inner()


async def coro(fut):
    sample("coro-start")
    await fut
    sample("coro-after")
    return 1


async def amain():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_soon(fut.set_result, 1)
    await coro(fut)
    await asyncio.sleep(0)
    sample("amain")


def workload():
    fib(6)
    for _ in gen(3):
        sample("consumer")
    list(sub())
    c = C()
    _ = c.prop + c[3] + c.method(1)
    list(map(operator.call, [functools.partial(sample, "map")] * 3))
    sorted([3, 1, 2], key=lambda v: (sample("key"), v)[1])
    exceptions()
    closure()
    asyncio.run(amain())
    retrace.CoordinateSpace().run(lambda: (sample("space"), fib(3)))
    retrace.exclude(lambda: sample("excluded"))()


for _ in range(3):  # cold, then specialised
    workload()
print(json.dumps(out))
