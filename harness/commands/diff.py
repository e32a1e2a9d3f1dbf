"""`python -m harness diff A B`: two runs side by side, every metric with its delta and whether it is
more than noise (judged on the per-sample latencies: harness/history/stats.py), and quality by category.

    python -m harness diff runs/20261207-101500-tiny-fake-Offline-performance runs/20261207-102000-...
    python -m harness diff last:5 20261207-102000-tiny-fake-Offline-performance-1a2b3c4d --format json

A and B: run ids (or a unique prefix), run folders (recorded first if they were not), or last:N.
Exit codes: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from harness.commands._history_args import add_database_flags, database_url
from harness.commands._shared import fail
from harness.errors import HarnessError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness diff",
        description="Compare two runs metric by metric: delta, 95%% CI and whether it is significant.",
        epilog="example: python -m harness diff runs/A runs/B",
    )
    p.add_argument("a", metavar="A", help="run id, run folder or last:N (the reference)")
    p.add_argument("b", metavar="B", help="run id, run folder or last:N")
    p.add_argument("--format", choices=("table", "json"), default="table")
    add_database_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.history.db import open_history
    from harness.history.gate import condition_differences
    from harness.history.query import resolve
    from harness.history.stats import compare, quality_deltas

    try:
        engine = open_history(database_url(args))
        a = resolve(engine, args.a)
        b = resolve(engine, args.b, exclude=None)
        engine.dispose()
    except HarnessError as exc:
        return fail(str(exc))
    deltas = compare(a, b)
    quality = quality_deltas(a, b)
    differs = condition_differences(a.first, b.first)
    invalid = a.invalid() + b.invalid()
    if args.format == "json":
        out: dict[str, Any] = {
            "a": [r["run_id"] for r in a.rows],
            "b": [r["run_id"] for r in b.rows],
            "loadgen": {r["run_id"]: r["result_validity"] for r in (*a.rows, *b.rows)},
            "invalid": invalid,
            "conditions_differ": differs,
            "metrics": [
                {
                    "metric": d.metric,
                    "a": d.a,
                    "b": d.b,
                    "change": d.change,
                    "ci95": list(d.ci) if d.ci else None,
                    "mannwhitney_p": d.p_value,
                    "verdict": d.verdict(),
                    "note": d.note,
                }
                for d in deltas
            ],
            "quality_by_category": [
                {"metric": m, "category": c, "a": va, "b": vb, "delta": dv} for m, c, va, vb, dv in quality
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"A: {a.label} ({_validity(a.first)})")
    print(f"B: {b.label} ({_validity(b.first)})")
    for line in invalid:
        print(f"warning: LoadGen did not call this run VALID: {line}")
    for line in differs:
        print(f"note: conditions differ: {line}")
    print_deltas(deltas)
    if quality:
        print("\nquality by category (B - A):")
        for metric, category, va, vb, dv in quality:
            print(f"  {metric:16} {category:24} {_num(va):>10} {_num(vb):>10} {_num(dv, signed=True):>10}")
    return 0


def print_deltas(deltas: Any) -> None:
    print(f"{'metric':18} {'A':>12} {'B':>12} {'change':>9} {'95% CI of change':>22} {'verdict':>11}  note")
    for d in deltas:
        change = "-" if d.change is None else f"{d.change * 100:+.2f}%"
        ci = "-" if d.ci is None else f"{d.ci[0] * 100:+.2f}%..{d.ci[1] * 100:+.2f}%"
        note = d.note + (f"; Mann-Whitney p={d.p_value:.3g}" if d.p_value is not None else "")
        print(f"{d.label:18} {_num(d.a):>12} {_num(d.b):>12} {change:>9} {ci:>22} {d.verdict():>11}  {note}")


def _validity(row: Any) -> str:
    v = row["result_validity"] or "no LoadGen result"
    return f"{v}: {row['invalid_reason']}" if row["invalid_reason"] else v


def _num(x: float | None, signed: bool = False) -> str:
    return "-" if x is None else (f"{x:+.4g}" if signed else f"{x:.4g}")
