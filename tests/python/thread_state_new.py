"""Thread states that C code creates with PyThreadState_New get ids derived
from the creating thread (SEMANTICS §9.4: P is the thread state current on
the creating OS thread), in root and in a fresh space.

Why this exists: `_thread.start_new_thread` is covered by the wrapped
`_thread` module (area E); extensions that create thread states for their own
threads go through the `PyThreadState_New` detour instead. The creator's
coordinates at the creation are sampled by a C-level call from the same
instruction (`map` over C callables activates no Python frame), and the id
is checked against the Python model of §9.4 (retrace_model.py, variant A:
GCC/Clang 64-bit). Prints "ok".
"""

import ctypes
import functools
import operator
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "conformance"))

import _retrace as _r  # noqa: E402
import _thread  # noqa: E402
import retrace as R  # noqa: E402
import retrace_model  # noqa: E402

api = ctypes.pythonapi
api.PyInterpreterState_Get.restype = ctypes.c_void_p
api.PyThreadState_New.restype = ctypes.c_void_p
api.PyThreadState_New.argtypes = [ctypes.c_void_p]
api.PyThreadState_Clear.argtypes = [ctypes.c_void_p]
api.PyThreadState_Delete.argtypes = [ctypes.c_void_p]

model = retrace_model.Model("A")


def create(space):
    """(the creator's pairs in `space` at the creation, the new thread state)."""
    interp = api.PyInterpreterState_Get()
    words, tstate = list(map(operator.call, [
        functools.partial(_r.coordinates, None, 0, space),
        functools.partial(api.PyThreadState_New, interp),
    ]))
    return words, tstate


def check(space, words, tstate):
    assert tstate, "PyThreadState_New failed"
    try:
        expected = model.assign(space, _thread.get_ident(), list(words))
        # The new thread state is known under exactly that id (unseen: None).
        assert _r.coordinates(expected) is None, _r.coordinates(expected)
        # Without the detour it would be announced parentless: the root seed,
        # which the main thread holds, so the first collision retry.
        parentless = model.retry(0, model.assign(0, None, []))
        try:
            _r.coordinates(parentless)
        except LookupError:
            pass
        else:
            raise AssertionError("the new thread state got a parentless id")
        return expected
    finally:
        api.PyThreadState_Clear(tstate)
        api.PyThreadState_Delete(tstate)


root_id = check(0, *create(0))
assert root_id >> 48 == 0, hex(root_id)
space = R.CoordinateSpace()
space_id = space.run(lambda: check(space.id, *create(space.id)))
assert space_id >> 48 == space.id & 0xFFFF, (hex(space_id), space.id)
assert space_id & 0xFFFF_FFFF_FFFF != root_id & 0xFFFF_FFFF_FFFF
print("ok")
