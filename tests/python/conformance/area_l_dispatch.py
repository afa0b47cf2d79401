"""Conformance checklist area L, space-filtered dispatch (SEMANTICS §21 items 113–127; §17).

Items 114–121 use `sys.monitoring` tool `T = 3` (claimed and released by each
item), `E = sys.monitoring.events` and `m = R.root_space.monitoring`. Item 113
is the 3.11 shape of the proxy; on 3.12+ it checks the same entry points in
their 3.12 form (the runner has no skip mechanism).
"""

import inspect
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _runner  # noqa: E402

import _retrace as _r  # noqa: E402
import retrace as R  # noqa: E402

T = 3
HAS_MONITORING = hasattr(sys, "monitoring")
E = sys.monitoring.events if HAS_MONITORING else None


def _expect(exc_type, fn, *args, message=None, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        if message is not None:
            assert str(e) == message, f"{fn!r}{args!r} raised {e!r}, expected message {message!r}"
        return e
    except BaseException as e:
        raise AssertionError(f"{fn!r}{args!r} raised {e!r}, expected {exc_type.__name__}") from e
    raise AssertionError(f"{fn!r}{args!r} did not raise {exc_type.__name__}")


def _noop():
    pass


def arm(cb, hit=_noop):
    """ARM(cb) of the §21 preamble: `cb` runs at the caller's first boundary after this returns."""
    c = _r.coordinates(); R.call_at((*c[:-2], c[-2] + 10**6, 0), hit, cb)  # noqa: E702


class Tool:
    """Claims tool T for an item and afterwards leaves it (and its callbacks, events) unused."""

    def __init__(self, *codes):
        self.codes = codes

    def __enter__(self):
        assert HAS_MONITORING, "sys.monitoring is missing on 3.12+"
        sys.monitoring.use_tool_id(T, "retrace-conformance")
        return R.root_space.monitoring

    def __exit__(self, *exc):
        mon = sys.monitoring
        mon.set_events(T, 0)
        for code in self.codes:
            mon.set_local_events(T, code, 0)
        R.root_space.monitoring.free_tool_id(T)
        singles = {v for v in vars(E).values() if isinstance(v, int) and v and v & (v - 1) == 0}
        for event in singles:
            mon.register_callback(T, event, None)
        mon.restart_events()
        return False


def f():
    return 1


def g():
    return 2


def code_log():
    seen = []

    def cb(code, offset):
        seen.append(code)

    return seen, cb


def item_113_monitoring_proxy_shape():
    m = R.root_space.monitoring
    if sys.version_info < (3, 12):
        _expect(RuntimeError, getattr, m, "register_callback", message="sys.monitoring is not available")
    else:
        # 3.12+: the same entry points exist and are the proxy's own.
        reg = m.register_callback
        assert callable(reg), reg
        assert getattr(reg, "__self__", None) is m, f"register_callback is not bound to the proxy: {reg!r}"
        assert m.events is sys.monitoring.events, "proxy does not delegate `events`"
        assert m.use_tool_id is sys.monitoring.use_tool_id, "proxy does not delegate `use_tool_id`"
    assert sys.gettrace() is None, sys.gettrace()
    assert R.root_space.settrace(None) is None
    assert sys.gettrace() is None, f"settrace(None) installed {sys.gettrace()!r}"


def item_114_root_monitoring_filters():
    seen, cb = code_log()
    with Tool() as m:
        assert m.register_callback(T, E.PY_START, cb) is None
        m.set_events(T, E.PY_START)
        f()
        R.run_disabled(g)
        events = (sys.monitoring.get_events(T), m.get_events(T))
        m.set_events(T, 0)
    assert f.__code__ in seen, f"root callback missed f: {seen}"
    assert g.__code__ not in seen, f"root callback saw g run in the disabled space: {seen}"
    assert events == (E.PY_START, E.PY_START), events


def item_115_disabled_monitoring_filters():
    seen, cb = code_log()
    with Tool():
        d = R.disabled_space.monitoring
        assert d.register_callback(T, E.PY_START, cb) is None
        d.set_events(T, E.PY_START)
        f()
        R.run_disabled(g)
        d.set_events(T, 0)
    assert g.__code__ in seen, f"disabled-space callback missed g: {seen}"
    assert f.__code__ not in seen, f"disabled-space callback saw f run in root: {seen}"


def sample_f():
    return len(_r.coordinates())


def item_116_callback_target_space():
    def run(**target):
        inside = []

        def cb(code, offset):
            if code is sample_f.__code__:
                inside.append((len(R.coordinates()), R.disabled_space.coordinates()))

        with Tool() as m:
            m.register_callback(T, E.PY_START, cb, **target)
            m.set_events(T, E.PY_START)
            L = sample_f()
            m.set_events(T, 0)
        assert len(inside) == 1, f"callback ran {len(inside)} times for sample_f: {inside}"
        return L, inside[0]

    L, (n, disabled) = run(target_space=R.disabled_space)
    assert n == L, f"callback in the disabled space shows {n} root words, sample_f has {L}"
    assert disabled, f"R.disabled_space.coordinates() in the callback is {disabled!r}"
    L, (n, _) = run()
    assert n == L + 2, f"root-target callback shows {n} root words, sample_f has {L} (expected + 2)"


def item_117_register_returns_previous():
    def a(code, offset):
        pass

    def b(code, offset):
        pass

    with Tool() as m:
        assert m.register_callback(T, E.PY_START, a) is None
        installed = sys.monitoring.register_callback(T, E.PY_START, None)
        assert isinstance(installed, _r.SpaceDispatch), f"sys.monitoring holds {installed!r}"
        assert installed.kind == "monitoring", installed.kind
        sys.monitoring.register_callback(T, E.PY_START, installed)
        prev = m.register_callback(T, E.PY_START, b)
        assert prev is a, f"second registration returned {prev!r}, not a"
        again = sys.monitoring.register_callback(T, E.PY_START, installed)
        assert again is installed, f"one dispatch per (tool, event) expected: {again!r} vs {installed!r}"
        prev = m.register_callback(T, E.PY_START, None)
        assert prev is b, f"removal returned {prev!r}, not b"
        left = sys.monitoring.register_callback(T, E.PY_START, None)
        assert left is None, f"dispatch still registered after the last case went: {left!r}"


def line_loop():
    total = 0
    for i in range(4):
        total += i
    return total


def item_118_disable_passes_through():
    code = line_loop.__code__
    target = code.co_firstlineno + 3  # `total += i`
    loop_line = code.co_firstlineno + 2  # `for i in range(4):`
    lines = []

    def cb(c, line):
        if c is code:
            lines.append(line)
            if line == target:
                return sys.monitoring.DISABLE
        return None

    with Tool(code) as m:
        m.register_callback(T, E.LINE, cb)
        m.set_local_events(T, code, E.LINE)
        assert line_loop() == 6
        m.set_local_events(T, code, 0)
    assert lines.count(target) == 1, f"DISABLE for line {target} did not stick: {lines}"
    assert lines.count(loop_line) >= 2, f"other lines stopped reporting too: {lines}"


def helper119():
    return 0


def visible119():
    return 1


def item_119_transparent_source_is_none():
    seen, cb = code_log()
    # Callback code runs in the disabled space, but transparently: a
    # disabled-space case must not see it either (the source is none).
    seen_disabled, cb_disabled = code_log()
    ran = []

    def body():
        helper119()
        R.include(visible119)()
        ran.append(True)

    def runner():
        arm(body)
        x = 1
        return x

    with Tool() as m:
        m.register_callback(T, E.PY_START, cb)
        R.disabled_space.monitoring.register_callback(T, E.PY_START, cb_disabled)
        m.set_events(T, E.PY_START)
        runner()
        m.set_events(T, 0)
    assert ran == [True], f"the ARM callback ran {len(ran)} times"
    assert runner.__code__ in seen, f"root case missed the application frame: {seen}"
    hidden = [c for c in (body.__code__, helper119.__code__) if c in seen_disabled]
    assert not hidden, f"callback code reached the disabled-space case: {hidden}"
    assert helper119.__code__ not in seen, "callback code produced a root PY_START event"
    assert visible119.__code__ in seen, f"include(v)() inside the callback produced no event: {seen}"


def item_120_register_errors():
    def a(code, offset):
        pass

    with Tool() as m:
        m.register_callback(T, E.PY_START, a)
        _expect(
            TypeError,
            m.register_callback,
            T,
            E.PY_START,
            f,
            target_space=1,
            message="target_space must be a CoordinateSpace",
        )
        _expect(TypeError, m.register_callback, T, E.PY_START, 5, message="monitoring callback must be callable or None")
        # 3.12 accepts any tool id in range, used or not; 7 is no tool at all.
        err = _expect(ValueError, m.register_callback, 7, E.PY_START, f)
        assert "tool" in str(err), f"not sys.monitoring's error: {err!r}"
        installed = sys.monitoring.register_callback(T, E.PY_START, None)
        assert isinstance(installed, _r.SpaceDispatch), installed
        assert len(installed) == 1 and installed.get_case(0) == (a, 0), (
            f"cases changed by failed registrations: {len(installed)} {installed.get_case(0)}"
        )
        sys.monitoring.register_callback(T, E.PY_START, installed)
        assert m.register_callback(7, E.PY_START, None) is None, "a case was stored for tool 7"


def item_121_free_tool_id_drops_cases():
    old_root, cb_old_root = code_log()
    old_disabled, cb_old_disabled = code_log()
    new, cb_new = code_log()
    with Tool() as m:
        m.register_callback(T, E.PY_START, cb_old_root)
        R.disabled_space.monitoring.register_callback(T, E.PY_START, cb_old_disabled)
        m.free_tool_id(T)
        sys.monitoring.use_tool_id(T, "retrace-conformance")
        prev = m.register_callback(T, E.PY_START, cb_new)
        m.set_events(T, E.PY_START)
        f()
        R.run_disabled(g)
        m.set_events(T, 0)
    assert prev is None, f"free_tool_id kept the root case: register_callback returned {prev!r}"
    assert f.__code__ in new, f"new callback missed f: {new}"
    assert not old_root and not old_disabled, f"dropped callbacks ran: {old_root} {old_disabled}"


class TraceLog(list):
    def tracer(self, result=None):
        def t(frame, event, arg):
            self.append((event, frame.f_code))
            return result

        return t


def item_122_settrace_filters_calls():
    log = TraceLog()
    try:
        assert R.root_space.settrace(log.tracer()) is None
        installed = sys.gettrace()
        f()
        R.run_disabled(g)
    finally:
        R.root_space.settrace(None)
    assert isinstance(installed, _r.SpaceDispatch) and installed.kind == "trace", installed
    assert ("call", f.__code__) in log, f"root tracer missed f: {log}"
    assert not any(code is g.__code__ for _, code in log), f"root tracer saw g: {log}"
    assert sys.gettrace() is None, sys.gettrace()


def traced123(out):
    out.append(sys._getframe().f_trace)
    c = R.coordinates()
    out.append(sys._getframe().f_trace)
    return c


def item_123_local_trace_functions():
    def run(**target):
        local_log = []
        out = []

        def local(frame, event, arg):
            if frame.f_code is traced123.__code__:
                local_log.append((event, len(R.coordinates())))
            return local

        def t(frame, event, arg):
            return local if frame.f_code is traced123.__code__ else None

        try:
            R.root_space.settrace(t, **target)
            c = traced123(out)
        finally:
            R.root_space.settrace(None)
        return local_log, out, c

    local_log, out, c = run(target_space=R.disabled_space)
    lines = [n for ev, n in local_log if ev == "line"]
    assert lines, f"local received no 'line' events: {local_log}"
    assert out[0] is not None and inspect.unwrap(out[0]).__name__ == "local", out
    assert out[0] is out[1], f"the trace wrapper was replaced though local returned itself: {out}"
    assert repr(out[0]).startswith("<_retrace.trace wrapper space_id=1 for "), repr(out[0])
    assert all(n == len(c) for n in lines), f"local's frame shows in root coordinates: {lines} vs {len(c)}"
    local_log, out, c = run()
    lines = [n for ev, n in local_log if ev == "line"]
    assert lines and all(n == len(c) + 2 for n in lines), f"root-target local: {lines} vs {len(c)} + 2"
    assert repr(out[0]).startswith("<_retrace.trace wrapper space_id=0 for "), repr(out[0])


def item_124_foreign_trace_replaced():
    foreign_log = TraceLog()
    log = TraceLog()
    foreign, t = foreign_log.tracer(), log.tracer()
    try:
        sys.settrace(foreign)
        f()
        n = len(foreign_log)
        R.root_space.settrace(t)
        f()
        g()
    finally:
        R.root_space.settrace(None)
        sys.settrace(None)
    assert ("call", f.__code__) in foreign_log[:n], f"the foreign tracer did not work: {foreign_log}"
    assert len(foreign_log) == n, f"foreign tracer called again: {foreign_log[n:]}"
    assert ("call", g.__code__) in log, f"replacement tracer missed g: {log}"


def item_125_two_spaces_one_hook():
    # The checks run after the hooks are gone: the root tracer would log them.
    log1, log2 = TraceLog(), TraceLog()
    t1, t2 = log1.tracer(), log2.tracer()
    try:
        R.root_space.settrace(t1)
        first = sys.gettrace()
        R.disabled_space.settrace(t2)
        second = sys.gettrace()
        cases = len(first)
        f()
        R.run_disabled(g)
        both1, both2 = list(log1), list(log2)
        R.root_space.settrace(None)
        third = sys.gettrace()
        n1, n2 = len(log1), len(log2)
        f()
        R.run_disabled(g)
        after1, after2 = log1[n1:], log2[n2:]
    finally:
        R.root_space.settrace(None)
        R.disabled_space.settrace(None)
    assert isinstance(first, _r.SpaceDispatch), first
    assert second is first and third is first, f"the hook changed: {first!r} {second!r} {third!r}"
    assert cases == 2, f"shared dispatch has {cases} cases"
    assert ("call", f.__code__) in both1 and ("call", g.__code__) in both2, (both1, both2)
    assert not any(c is g.__code__ for _, c in both1), f"root tracer saw g: {both1}"
    assert not any(c is f.__code__ for _, c in both2), f"disabled tracer saw f: {both2}"
    assert not after1, f"cleared root tracer still called: {after1}"
    assert ("call", g.__code__) in after2, f"disabled tracer inactive after clearing root: {after2}"
    assert not any(c is f.__code__ for _, c in after2), f"disabled tracer saw f: {after2}"
    assert sys.gettrace() is None, sys.gettrace()


def item_126_setprofile_filters():
    events = []

    def p(frame, event, arg):
        events.append((event, arg))

    try:
        R.root_space.setprofile(p)
        installed = sys.getprofile()
        len([])
        R.run_disabled(lambda: abs(-1))
    finally:
        R.root_space.setprofile(None)
    assert isinstance(installed, _r.SpaceDispatch) and installed.kind == "profile", installed
    assert any(ev == "c_call" and arg is len for ev, arg in events), f"no c_call for len: {events}"
    assert not any(ev == "c_call" and arg is abs for ev, arg in events), f"c_call for abs from disabled: {events}"
    assert sys.getprofile() is None, sys.getprofile()


def item_127_low_level_dispatch():
    def f2(a, b):
        return ("f2", a, b)

    def f3(a, b):
        return ("f3", a, b)

    d = _r.SpaceDispatch("monitoring")
    assert d.kind == "monitoring" and len(d) == 0
    assert d(1, 2) is None
    assert d.set_case(0, f2) is None
    assert len(d) == 1 and d.get_case(0) == (f2, 0), d.get_case(0)
    assert d(1, 2) == f2(1, 2), d(1, 2)
    assert d.set_case(0, None) is f2
    assert len(d) == 0 and d.get_case(0) is None
    assert d(1, 2) is None
    e = _r.SpaceDispatch("profile", f3)
    assert e(1, 2) == f3(1, 2), e(1, 2)
    e.set_case(1, f2)
    assert e(1, 2) == f3(1, 2), "a disabled-space case matched a root call"
    assert R.run_disabled(e, 1, 2) == f2(1, 2), R.run_disabled(e, 1, 2)
    _expect(ValueError, _r.SpaceDispatch, "x", message="unknown SpaceDispatch kind")
    _expect(TypeError, _r.SpaceDispatch, "trace", 5, message="SpaceDispatch default must be callable or None")
    _expect(AttributeError, setattr, d, "kind", "trace")


if __name__ == "__main__":
    _runner.main(globals())
