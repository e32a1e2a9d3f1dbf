"""`python -m harness [COMMAND] ...`: find the command and hand it the rest of the line.

A command is one module in harness/commands/ with `build_parser()` and `main(argv)`; without a command
name the line is a benchmark run (harness/commands/run.py). Only the CLI configures logging handlers
and prints (harness/commands/_shared.py).
"""

from __future__ import annotations

import importlib
import sys

import harness.loadgen.module  # noqa: F401  (T2I_HARNESS_LOADGEN is checked before any command makes a folder)
from harness.commands import subcommands

DEFAULT_COMMAND = "run"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = subcommands()
    name = argv[0] if argv and argv[0] in commands else None
    module = importlib.import_module(commands[name or DEFAULT_COMMAND])
    return int(module.main(argv[1:] if name else argv))
