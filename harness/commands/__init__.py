"""The subcommands of `python -m harness`: one module per command, each with `build_parser()` and
`main(argv)`; `_shared.py` holds what they share (logging set-up, the one-line error exit)."""

from __future__ import annotations

from pathlib import Path


def subcommands() -> dict[str, str]:
    """Command name -> module: harness/commands/NAME.py (underscores become dashes); modules whose name
    starts with an underscore are shared helpers, not commands."""
    here = Path(__file__).resolve().parent
    return {p.stem.replace("_", "-"): f"{__name__}.{p.stem}" for p in here.glob("*.py") if not p.stem.startswith("_")}
