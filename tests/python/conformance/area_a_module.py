"""Conformance checklist area A, module shape (SEMANTICS §21 items 1–9, §1, §2).

Item 1 runs under the vanilla interpreter; every other item under the
instrumented one. Nothing is imported from `_retrace`/`retrace` at module
level so that item 1 can run where they do not exist.
"""

import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _runner  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# §1.1: the public names, exactly.
PUBLIC = {
    "coordinates",
    "thread_delta",
    "hash",
    "exclude",
    "disable",
    "include",
    "enable",
    "run_disabled",
    "with_new_coordinates",
    "call_at",
    "CoordinateSpace",
    "root_space",
    "disabled_space",
    "ThreadHandoff",
}

# §1.1: names the public module must not define.
PUBLIC_FORBIDDEN = [
    "callbacks",
    "run_transparent",
    "set_replay_checkpoint",
] + [f"{verb}_thread_{what}_callback" for verb in ("set", "get") for what in ("start", "yield", "resume")]

# §2.1 and §2.2: the low-level names.
LOW_LEVEL = [
    "coordinates",
    "thread_delta",
    "hash",
    "allocate_space_id",
    "set_thread_switch_callback",
    "get_thread_switch_callback",
    "exclude",
    "disable",
    "include",
    "enable",
    "wrap_for_space",
    "run_in_space",
    "with_new_coordinates",
    "call_at",
    "ThreadHandoff",
    "call_at_current",
    "completion_at",
    "SpaceDispatch",
]

# §2.2: the nine names `_retrace` must not define.
LOW_LEVEL_FORBIDDEN = [
    "disable_for",
    "enable_for",
    "run_disabled",
    "run_transparent",
    "thread_id",
    "thread_id_from_ident",
    "common_coordinates_prefix_length",
    "U64Buffer",
    "set_replay_checkpoint",
]

# §1.2: the members of a CoordinateSpace.
SPACE_MEMBERS = [
    "id",
    "coordinates",
    "thread_delta",
    "hash",
    "run",
    "wrap",
    "call_at",
    "thread_switch",
    "monitoring",
    "settrace",
    "setprofile",
]


def item_1_vanilla_has_no_modules():
    assert importlib.util.find_spec("_retrace") is None, "vanilla interpreter finds _retrace"
    assert importlib.util.find_spec("retrace") is None, "vanilla interpreter finds retrace"
    # The capability probe exits 0 and reports both modules unavailable.
    proc = _runner.run_python([os.path.join(HERE, "probe.py")], python_exe=sys.executable)
    assert proc.returncode == 0, "probe script failed under vanilla: " + _runner.describe(proc)
    lines = proc.stdout.splitlines()
    for mod in ("_retrace", "retrace"):
        assert f"{mod}=unavailable" in lines, f"probe did not print {mod}=unavailable: " + _runner.describe(proc)


def item_2_builtin_and_isolated_import():
    assert "_retrace" in sys.builtin_module_names, f"_retrace not builtin: {sys.builtin_module_names}"
    home = os.environ.get("RETRACE_TEST_VANILLA_HOME")
    assert home, "RETRACE_TEST_VANILLA_HOME (the vanilla 3.12 install) not set by the test harness"
    env = dict(os.environ, PYTHONHOME=home)
    proc = _runner.run_python(["-I", "-S", "-c", "import retrace"], env=env, cwd="/")
    assert proc.returncode == 0, f"`-I -S -c 'import retrace'` with PYTHONHOME={home}: " + _runner.describe(proc)


def item_3_public_all():
    import retrace as R

    names = set(R.__all__)
    assert names == PUBLIC, f"missing {sorted(PUBLIC - names)}, unexpected {sorted(names - PUBLIC)}"
    missing = [n for n in sorted(PUBLIC) if not hasattr(R, n)]
    assert not missing, f"names in __all__ that are not attributes: {missing}"


def item_4_public_forbidden_names():
    import retrace as R

    present = [n for n in PUBLIC_FORBIDDEN if hasattr(R, n)]
    assert not present, f"retrace defines forbidden names {present}"


def item_5_low_level_names():
    import _retrace as _r

    missing = [n for n in LOW_LEVEL if not hasattr(_r, n)]
    assert not missing, f"_retrace lacks {missing}"
    assert hasattr(_r.ThreadHandoff, "start"), "_retrace.ThreadHandoff lacks start (§2.2)"
    present = [n for n in LOW_LEVEL_FORBIDDEN if hasattr(_r, n)]
    assert not present, f"_retrace defines forbidden names {present}"
    assert importlib.util.find_spec("_retrace_probe") is None, "a _retrace_probe module exists"
    # §2.1: each pair is two distinct functions.
    assert _r.exclude is not _r.disable, "_retrace.exclude is _retrace.disable"
    assert _r.include is not _r.enable, "_retrace.include is _retrace.enable"


def item_6_thread_handoff_shape():
    import _retrace as _r
    import retrace as R

    assert R.ThreadHandoff is _r.ThreadHandoff, (R.ThreadHandoff, _r.ThreadHandoff)
    h = R.ThreadHandoff()
    try:
        assert not callable(h), "a ThreadHandoff instance is callable"
        for name in ("start", "to", "close"):
            assert hasattr(h, name), f"ThreadHandoff instance lacks {name}"
        assert not hasattr(h, "wake"), "ThreadHandoff instance has wake"
    finally:
        h.close()


def item_7_space_handles_and_self():
    import retrace as R

    assert R.root_space.id is None, f"root_space.id = {R.root_space.id!r}"
    assert R.disabled_space.id == 1, f"disabled_space.id = {R.disabled_space.id!r}"
    for name in ("coordinates", "thread_delta", "hash", "include", "enable", "call_at"):
        owner = getattr(getattr(R, name), "__self__", None)
        assert owner is R.root_space, f"retrace.{name}.__self__ is {owner!r}, not root_space"
    for name in ("exclude", "disable", "run_disabled"):
        owner = getattr(getattr(R, name), "__self__", None)
        assert owner is R.disabled_space, f"retrace.{name}.__self__ is {owner!r}, not disabled_space"


def item_8_space_id_allocation():
    import _retrace as _r
    import retrace as R

    a = R.CoordinateSpace().id
    b = _r.allocate_space_id()
    c = R.CoordinateSpace().id
    assert a >= 2, f"first allocated id {a}"
    assert b == a + 1 and c == b + 1, f"ids not consecutive: {a}, {b}, {c}"


def item_9_space_members():
    import retrace as R

    S = R.CoordinateSpace()
    missing = [n for n in SPACE_MEMBERS if not hasattr(S, n)]
    assert not missing, f"CoordinateSpace lacks {missing}"
    # §1.2: `.id` is read-only.
    try:
        S.id = 99
    except AttributeError:
        pass
    else:
        raise AssertionError("CoordinateSpace.id is writable")


if __name__ == "__main__":
    _runner.main(globals())
