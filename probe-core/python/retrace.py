"""retrace: deterministic execution coordinates for CPython.

This module is frozen into the retrace runtime (libretrace_rt.so) and is
available in any interpreter whose libpython was rewritten by the retrace
rewriter. Its public API arrives with the coordinate engine; for now it only
binds the private builtin module ``_retrace``.
"""

import _retrace

__all__ = []
