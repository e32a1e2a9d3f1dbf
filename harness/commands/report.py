"""`python -m harness report RUN_DIR [RUN_DIR ...]`: report.md and a self-contained report.html.

    python -m harness report runs/20260101-120000-tiny-fake-Offline-performance
    python -m harness report runs/A runs/B --out reports/a-vs-b

Inputs: run directories, and sweep, scale and compare directories. Several runs get a side-by-side
comparison with deltas against the first. Every table is also written as tables/<name>.csv and .json
(see README, "Reports and exports"). Exit code 0 done (also when a reported run failed: the report says
so), 2 bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from harness.commands._shared import fail
from harness.errors import HarnessError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness report",
        description="Write report.md and a self-contained report.html (plots and images embedded, no network "
        "needed) for run, sweep, scale and compare directories, with every table also as CSV and JSON.",
        epilog="example: python -m harness report runs/A runs/B --out reports/a-vs-b",
    )
    p.add_argument("inputs", nargs="*", type=Path, metavar="RUN_DIR", help="run, sweep, scale or compare directories")
    p.add_argument(
        "--history",
        nargs="?",
        const="runs",
        metavar="DIR|URL",
        help="add the run history's trends (harness/report/history_section.py): a folder holding history.sqlite "
        "(default runs) or a database URL",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="output folder. Default: the input directory when there is one, else reports/<timestamp>",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    if not args.inputs and not args.history:
        return fail("report: give run directories, --history, or both")
    out = args.out
    if out is None:
        out = args.inputs[0] if len(args.inputs) == 1 else Path("reports") / time.strftime("%Y%m%d-%H%M%S")
    from harness.report import write_report

    try:
        if args.history:
            from harness.report.history_section import write_report_with_history

            md, html = write_report_with_history(args.inputs, out, args.history)
        else:
            md, html = write_report(args.inputs, out)
    except HarnessError as exc:
        return fail(str(exc))
    print(f"report: {md}")
    print(f"report: {html}")
    return 0
