"""`python -m harness history`: the runs recorded in the history database, and `history import`.

    python -m harness history --model tiny --scenario Offline --since 2026-12-01
    python -m harness history --format csv > runs.csv
    python -m harness history import runs/*/          # existing run folders; importing again adds nothing

Every run records itself when it ends (history.enabled, default true) into <output dir>/history.sqlite,
or the database of `--set history.url=...`. LoadGen's verdict is a column of every listing.
Exit codes: 0 done, 2 bad input (an unusable database, a folder that is not a run).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from harness.commands._history_args import add_database_flags, database_url
from harness.commands._shared import fail
from harness.errors import HarnessError

FORMATS = ("table", "csv", "json")
COLUMNS = (
    "run_id",
    "started_at",
    "model",
    "backend",
    "scenario",
    "mode",
    "hardware",
    "git_commit",
    "result_validity",
    "samples_per_second",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "clip_score",
    "fid_score",
    "invalid_reason",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness history",
        description="List the runs in the history database (newest last). "
        "`python -m harness history import DIR...` records existing run folders.",
        epilog="example: python -m harness history --model tiny --backend fake --format json",
    )
    p.add_argument("--model")
    p.add_argument("--backend")
    p.add_argument("--scenario")
    p.add_argument("--hardware", help="a part of the hardware label, e.g. H100")
    p.add_argument("--since", metavar="DATE", help="ISO date or time (UTC), e.g. 2026-12-01 or 2026-12-01T08:00")
    p.add_argument("--git-commit", metavar="SHA", help="a commit or its prefix")
    p.add_argument("--last", type=int, metavar="N", help="only the N newest")
    p.add_argument("--format", choices=FORMATS, default="table")
    add_database_flags(p)
    sub = p.add_subparsers(dest="action", metavar="import")
    imp = sub.add_parser(
        "import",
        prog="python -m harness history import",
        help="record existing run folders",
        description="Record existing run folders in the history (a folder recorded before is skipped).",
    )
    imp.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="run folders, or folders holding run folders")
    add_database_flags(imp)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.action == "import":
        return _import(args)
    from harness.history.db import open_history
    from harness.history.query import RunFilter, list_runs

    try:
        since = _since(args.since) if args.since else None
        engine = open_history(database_url(args))
        rows = list_runs(
            engine,
            RunFilter(args.model, args.backend, args.scenario, args.hardware, since, args.git_commit, args.last),
        )
        engine.dispose()
    except HarnessError as exc:
        return fail(str(exc))
    write_rows(rows, args.format)
    return 0


def write_rows(rows: list[dict[str, Any]], fmt: str) -> None:
    table = [{c: _cell(r[c]) for c in COLUMNS} for r in rows]
    if fmt == "json":
        print(json.dumps(table, indent=2))
    elif fmt == "csv":
        w = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(table)
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"{len(rows)} runs")
        shown = ("run_id", "started_at", "backend", "scenario", "hardware", "git_commit", "result_validity")
        for c in (*shown, "samples_per_second", "latency_p90_ms", "latency_p99_ms"):
            t.add_column(c.replace("_", " ").replace("result validity", "LoadGen"))
        for r in table:
            validity = str(r["result_validity"] or "no result")
            if r["invalid_reason"]:
                validity += f" ({r['invalid_reason']})"
            t.add_row(
                str(r["run_id"]),
                str(r["started_at"])[:19],
                str(r["backend"]),
                str(r["scenario"]),
                str(r["hardware"]),
                str(r["git_commit"] or "")[:10],
                validity,
                *(_fmt(r[c]) for c in ("samples_per_second", "latency_p90_ms", "latency_p99_ms")),
            )
        Console(width=220).print(t)


def _import(args: argparse.Namespace) -> int:
    from harness.history.db import open_history, shown
    from harness.history.record import record_run_dir

    try:
        url = database_url(args)
        engine = open_history(url)
    except HarnessError as exc:
        return fail(str(exc))
    added = skipped = 0
    problems = []
    for folder in _run_folders(args.dirs):
        try:
            outcome = record_run_dir(engine, folder)
        except HarnessError as exc:
            problems.append(str(exc))
            continue
        added += outcome.added
        skipped += not outcome.added
    engine.dispose()
    for line in problems:
        print(f"warning: not imported: {line}", file=sys.stderr)
    print(f"history: {added} runs added, {skipped} already there, {len(problems)} not imported ({shown(url)})")
    return 2 if problems and not (added or skipped) else 0


def _run_folders(dirs: list[Path]) -> list[Path]:
    out = []
    for d in dirs:
        if (d / "summary.json").is_file() or (d / "manifest.json").is_file():
            out.append(d)
        elif d.is_dir():
            out.extend(sorted(p.parent for p in d.rglob("summary.json")))
        else:
            out.append(d)  # reported as not a run directory
    return out


def _since(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise HarnessError(f"--since {text!r}: expected an ISO date or time, e.g. 2026-12-01") from exc
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    return value


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
