"""The harness's exit status, as its commands return it, even after a Ctrl-C or SIGTERM they handled.

CPython (3.8 and later, Python/pythonrun.c run_eval_code_obj) sets its "unhandled KeyboardInterrupt" flag
when a KeyboardInterrupt leaves code run through PyRun_String (pybind11's py::exec, which some extensions
run while they import), even when Python code above catches it; `python -m` then ends the process with
SIGINT whatever its exit code (Modules/main.c, Py_RunMain). So a command that caught a Ctrl-C during a
model load and returned 130 reached its parent as killed by SIGINT, at random (seen in `harness serve`).
Each PyRun_String call resets that flag first: running one that cannot fail clears it before exiting.
"""

from __future__ import annotations

import ctypes
from typing import NoReturn

_PY_EVAL_INPUT = 258  # Include/compile.h


def exit_with(code: int) -> NoReturn:
    """Exit with `code` (SystemExit, so atexit handlers and finalization run as usual)."""
    run_string = ctypes.pythonapi.PyRun_String
    run_string.restype = ctypes.py_object
    run_string.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object]
    run_string(b"None", _PY_EVAL_INPUT, {}, {})
    raise SystemExit(code)
