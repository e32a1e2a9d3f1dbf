"""`python -m harness` exits with its command's code even after a KeyboardInterrupt caught inside PyRun_String.

CPython leaves its "unhandled KeyboardInterrupt" flag set in that case and `python -m` then kills itself with
SIGINT (harness/process_exit.py); `harness serve` interrupted while loading intermittently ended as -2
instead of 130 because of it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CATCH_AN_INTERRUPT_IN_PYRUN_STRING = """
import ctypes
run_string = ctypes.pythonapi.PyRun_String
run_string.restype = ctypes.py_object
run_string.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object]
try:
    run_string(b"raise KeyboardInterrupt", 257, {}, {})
except KeyboardInterrupt:
    pass
"""


def run_module(tmp_path: Path, body: str) -> int:
    (tmp_path / "interrupted_then_exits.py").write_text(CATCH_AN_INTERRUPT_IN_PYRUN_STRING + textwrap.dedent(body))
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "interrupted_then_exits"], cwd=tmp_path, env=env, timeout=60
    ).returncode


def test_a_plain_system_exit_after_a_caught_interrupt_dies_of_sigint(tmp_path: Path) -> None:
    # The CPython behaviour exit_with works around; if this fails, CPython fixed it and exit_with can go.
    assert run_module(tmp_path, "raise SystemExit(130)") == -2


def test_exit_with_keeps_the_code_after_a_caught_interrupt(tmp_path: Path) -> None:
    body = "from harness.process_exit import exit_with\nexit_with(130)\n"
    assert run_module(tmp_path, body) == 130


def test_exit_with_keeps_a_zero(tmp_path: Path) -> None:
    body = "from harness.process_exit import exit_with\nexit_with(0)\n"
    assert run_module(tmp_path, body) == 0
