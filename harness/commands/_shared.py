"""What every subcommand shares: logging set-up, the run log file, and the one-line error exit.

Only the CLI configures logging handlers and prints; commands call these instead of their own copies.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

BAD_INPUT = 2  # exit code of every command for input it refuses before slow work starts


def configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("urllib3", "PIL", "filelock", "diffusers", "transformers", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def attach_run_log(run_dir: Path) -> None:
    fh = logging.FileHandler(run_dir / "harness.log", encoding="utf-8")
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(fh)
    logging.getLogger().setLevel(logging.DEBUG)


def fail(message: str, code: int = BAD_INPUT) -> int:
    """One `error: ...` line on stderr; returns the exit code for the command to return."""
    print(f"error: {message}", file=sys.stderr)
    return code
