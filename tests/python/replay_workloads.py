"""Multi-threaded workloads for record/replay (``retrace_replay``).

Each workload is ``workload(events) -> result``: it runs on the main thread,
starts named daemon threads (daemon, so that ``threading`` never probes other
threads' state locks, which depends on OS timing), makes every thread append
``(thread name, what, ...)`` tuples to ``events`` and joins everything before
it returns. Results carry invariant checks (``result["violations"]`` must be
empty). Every wait has a timeout (or, for a few short ``with lock:`` blocks,
a holder that never waits), so a broken replay ends instead of hanging. Threads synchronise only through Python-level primitives (locks,
conditions, queues, events); the asyncio loop is woken through a lock instead of
its self-pipe (see `WakeLoop`), because kernel I/O readiness is not part of a
recorded schedule.
"""

import asyncio
import queue
import selectors
import threading
import time
import _thread
from concurrent.futures import ThreadPoolExecutor

WAIT = 10.0  # seconds any single wait may take


def _start(specs):
    threads = [threading.Thread(target=fn, args=args, name=name, daemon=True) for name, fn, args in specs]
    for t in threads:
        t.start()
    return threads


def _join(threads, violations):
    deadline = time.monotonic() + 3 * WAIT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            violations.append(f"{t.name} still running")


# ------------------------------------------------------------------- queue


def _queue_threads(events, violations, n_items=10, n_consumers=2):
    q = queue.Queue(maxsize=2)
    got = []

    def producer():
        for i in range(n_items):
            q.put(i, timeout=WAIT)
            events.append(("q-prod", "put", i))
            if i % 3 == 0:
                time.sleep(0)
        for _ in range(n_consumers):
            q.put(None, timeout=WAIT)

    def consumer(name):
        while True:
            x = q.get(timeout=WAIT)
            if x is None:
                break
            got.append(x)
            events.append((name, "got", x))
            time.sleep(0)

    def check():
        if sorted(got) != list(range(n_items)):
            violations.append(f"queue items consumed {sorted(got)}")

    specs = [("q-prod", producer, ())] + [(f"q-cons{k}", consumer, (f"q-cons{k}",)) for k in range(n_consumers)]
    return specs, check


def queue_workload(events):
    violations = []
    specs, check = _queue_threads(events, violations)
    _join(_start(specs), violations)
    check()
    return {"violations": violations}


# ------------------------------------------------------------------- lock


def _lock_threads(events, violations, n_waiters=3):
    lock = threading.Lock()
    held = threading.Event()
    release = threading.Event()
    owners = []

    def holder():
        with lock:
            events.append(("lock-holder", "holds"))
            held.set()
            if not release.wait(WAIT):
                violations.append("release never set")
            events.append(("lock-holder", "releases"))

    def waiter(name):
        if not held.wait(WAIT):
            violations.append(f"{name}: lock never held")
            return
        events.append((name, "waits"))
        if not lock.acquire(timeout=WAIT):
            violations.append(f"{name}: lock timeout")
            return
        try:
            owners.append(name)
            events.append((name, "acquired"))
            time.sleep(0)
            if owners[-1] != name:
                violations.append(f"{name}: lock shared with {owners[-1]}")
        finally:
            lock.release()

    def releaser():
        if not held.wait(WAIT):
            return
        time.sleep(0)
        events.append(("lock-releaser", "sets"))
        release.set()

    def check():
        if sorted(owners) != sorted(f"lock-w{k}" for k in range(n_waiters)):
            violations.append(f"lock owners {owners}")

    specs = (
        [("lock-holder", holder, ())]
        + [(f"lock-w{k}", waiter, (f"lock-w{k}",)) for k in range(n_waiters)]
        + [("lock-releaser", releaser, ())]
    )
    return specs, check


def lock_workload(events):
    violations = []
    specs, check = _lock_threads(events, violations)
    _join(_start(specs), violations)
    check()
    return {"violations": violations}


# ------------------------------------------------------------------- primitives


def _primitive_threads(events, violations):
    """Condition turnstile, bounded semaphore, barrier, RLock and Event."""
    cond = threading.Condition()
    state = {"turn": 0, "active": 0, "max_active": 0, "rlock_depth": 0}
    sem = threading.BoundedSemaphore(2)
    barrier = threading.Barrier(3, timeout=WAIT)
    rlock = threading.RLock()
    go = threading.Event()
    rounds = 3

    def turnstile(k):
        name = f"turn{k}"
        for r in range(rounds):
            with cond:
                if not cond.wait_for(lambda: state["turn"] % 3 == k, timeout=WAIT):
                    violations.append(f"{name}: turn never came")
                    return
                events.append((name, "turn", state["turn"]))
                state["turn"] += 1
                cond.notify_all()
            time.sleep(0)

    def bounded(k):
        name = f"sem{k}"
        if not go.wait(WAIT):
            violations.append(f"{name}: go never set")
            return
        for r in range(2):
            if not sem.acquire(timeout=WAIT):
                violations.append(f"{name}: semaphore timeout")
                return
            try:
                state["active"] += 1
                state["max_active"] = max(state["max_active"], state["active"])
                events.append((name, "in", state["active"]))
                time.sleep(0)
                state["active"] -= 1
            finally:
                sem.release()
            with rlock:
                with rlock:
                    state["rlock_depth"] += 1
                    if state["rlock_depth"] != 1:
                        violations.append(f"{name}: rlock shared")
                    time.sleep(0)
                    state["rlock_depth"] -= 1

    def party(k):
        name = f"bar{k}"
        events.append((name, "before"))
        time.sleep(0)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            violations.append(f"{name}: barrier broken")
            return
        events.append((name, "after"))

    def starter():
        time.sleep(0)
        events.append(("prim-go", "set"))
        go.set()

    def check():
        turns = [e[2] for e in events if e[0].startswith("turn") and e[1] == "turn"]
        if turns != list(range(3 * rounds)):
            violations.append(f"turnstile order {turns}")
        for e in events:
            if e[0].startswith("turn") and e[1] == "turn" and e[0] != f"turn{e[2] % 3}":
                violations.append(f"turnstile: {e}")
        if state["max_active"] > 2:
            violations.append(f"semaphore admitted {state['max_active']}")
        bar = [e for e in events if e[0].startswith("bar")]
        before = [i for i, e in enumerate(bar) if e[1] == "before"]
        after = [i for i, e in enumerate(bar) if e[1] == "after"]
        if len(before) != 3 or len(after) != 3 or max(before) > min(after):
            violations.append(f"barrier order {bar}")

    specs = (
        [(f"turn{k}", turnstile, (k,)) for k in range(3)]
        + [(f"sem{k}", bounded, (k,)) for k in range(4)]
        + [(f"bar{k}", party, (k,)) for k in range(3)]
        + [("prim-go", starter, ())]
    )
    return specs, check


def primitives_workload(events):
    violations = []
    specs, check = _primitive_threads(events, violations)
    _join(_start(specs), violations)
    check()
    return {"violations": violations}


# ------------------------------------------------------------------- thread pool


def _pool_threads(events, violations, n_tasks=8):
    results = {}
    lock = threading.Lock()
    done = []

    def task(i):
        me = threading.current_thread().name
        events.append((me, "task", i))
        time.sleep(0)
        with lock:
            done.append(i)
        return i * i

    def client():
        ex = ThreadPoolExecutor(max_workers=3, thread_name_prefix="pool")
        try:
            futures = [ex.submit(task, i) for i in range(n_tasks)]
            events.append(("pool-client", "submitted"))
            for i, f in enumerate(futures):
                results[i] = f.result(timeout=WAIT)
                events.append(("pool-client", "result", i, results[i]))
        finally:
            ex.shutdown(wait=False)
            # Join in name order: the executor keeps its threads in a set,
            # whose order follows identity hashes (not the same in two runs).
            for t in sorted(ex._threads, key=lambda t: t.name):
                t.join(WAIT)
                if t.is_alive():
                    violations.append(f"{t.name} still running")

    def check():
        if results != {i: i * i for i in range(n_tasks)}:
            violations.append(f"pool results {results}")
        if sorted(done) != list(range(n_tasks)):
            violations.append(f"pool tasks done {done}")

    return [("pool-client", client, ())], check


def pool_workload(events):
    violations = []
    specs, check = _pool_threads(events, violations)
    _join(_start(specs), violations)
    check()
    return {"violations": violations}


# ------------------------------------------------------------------- asyncio


class WakeSelector(selectors.SelectSelector):
    """A selector that reports no I/O and blocks on a lock that `wake` releases.

    The event loop's `select(timeout)` then blocks like any other lock wait,
    and a wake-up is ordered by the bytecode that calls `wake` (a self-pipe
    write would be ordered by the kernel, which a switch schedule does not
    record)."""

    def __init__(self):
        super().__init__()
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._pending = False

    def wake(self):
        if not self._pending:
            self._pending = True
            self._lock.release()

    def select(self, timeout=None):
        if timeout is None:
            got = self._lock.acquire(True, WAIT)
        elif timeout <= 0:
            got = self._lock.acquire(False)
        else:
            got = self._lock.acquire(True, min(timeout, WAIT))
        if got:
            self._pending = False
        return []


class WakeLoop(asyncio.SelectorEventLoop):
    """A selector event loop woken through `WakeSelector` (see its doc)."""

    def __init__(self):
        super().__init__(WakeSelector())

    def _write_to_self(self):
        self._selector.wake()


def _asyncio_threads(events, violations, n_clients=2, n_coros=3):
    loop = WakeLoop()
    running = threading.Event()
    results = {}

    async def consume(aq, name):
        while True:
            item = await aq.get()
            if item is None:
                return
            events.append(("aio-loop", name, item))

    async def coro(client, i, aq):
        events.append(("aio-loop", "coro", client, i, "start"))
        await asyncio.sleep(0)
        await aq.put((client, i))
        events.append(("aio-loop", "coro", client, i, "end"))
        return (client, i)

    state = {}

    async def setup():
        state["aq"] = asyncio.Queue()
        state["consumer"] = asyncio.ensure_future(consume(state["aq"], "consumer"))
        return True

    async def teardown():
        await state["aq"].put(None)
        await state["consumer"]
        return True

    def loop_thread():
        asyncio.set_event_loop(loop)
        loop.call_soon(running.set)
        loop.run_forever()
        events.append(("aio-loop", "stopped"))

    def client(name):
        if not running.wait(WAIT):
            violations.append(f"{name}: loop never ran")
            return
        for i in range(n_coros):
            fut = asyncio.run_coroutine_threadsafe(coro(name, i, state["aq"]), loop)
            events.append((name, "submitted", i))
            results[(name, i)] = fut.result(timeout=WAIT)
            events.append((name, "result", i))
            time.sleep(0)

    def driver():
        t_loop = threading.Thread(target=loop_thread, name="aio-loop", daemon=True)
        t_loop.start()
        if not running.wait(WAIT):
            violations.append("loop never ran")
        if not asyncio.run_coroutine_threadsafe(setup(), loop).result(timeout=WAIT):
            violations.append("setup failed")
        clients = _start([(f"aio-c{k}", client, (f"aio-c{k}",)) for k in range(n_clients)])
        _join(clients, violations)
        if not asyncio.run_coroutine_threadsafe(teardown(), loop).result(timeout=WAIT):
            violations.append("teardown failed")
        loop.call_soon_threadsafe(loop.stop)
        t_loop.join(WAIT)
        if t_loop.is_alive():
            violations.append("aio-loop still running")
        else:
            loop.close()

    def check():
        want = {(f"aio-c{k}", i): (f"aio-c{k}", i) for k in range(n_clients) for i in range(n_coros)}
        if results != want:
            violations.append(f"asyncio results {results}")
        consumed = [e[2] for e in events if e[:2] == ("aio-loop", "consumer")]
        if sorted(consumed) != sorted(want):
            violations.append(f"asyncio queue items {consumed}")

    return [("aio-driver", driver, ())], check


def asyncio_workload(events):
    violations = []
    specs, check = _asyncio_threads(events, violations)
    _join(_start(specs), violations)
    check()
    return {"violations": violations}


# ------------------------------------------------------------------- everything at once


def combined_workload(events):
    """Queue pipeline, lock wait, primitives, thread pool and asyncio, all concurrently."""
    violations = []
    specs, checks = [], []
    for part in (_queue_threads, _lock_threads, _primitive_threads, _pool_threads, _asyncio_threads):
        s, c = part(events, violations)
        specs += s
        checks.append(c)
    _join(_start(specs), violations)
    for c in checks:
        c()
    return {"violations": violations}


SCENARIOS = {
    "queue": queue_workload,
    "lock": lock_workload,
    "primitives": primitives_workload,
    "pool": pool_workload,
    "asyncio": asyncio_workload,
    "combined": combined_workload,
}
