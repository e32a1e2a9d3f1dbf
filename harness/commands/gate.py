"""`python -m harness gate --baseline REF [--candidate REF]`: fail (exit 1) when the candidate run is
slower or worse than the baseline beyond a threshold AND beyond noise; refuse (exit 2) when the two were
not measured under the same conditions.

    python -m harness gate --baseline last:5                         # the newest run against the 5 before it
    python -m harness gate --baseline runs/A --candidate runs/B --max-slowdown 5% --max-p99-increase 10%

REF: a run id (or a unique prefix), a run folder (recorded first if it was not), or last:N (the N newest
runs before the candidate whose conditions match its own, pooled). The candidate defaults to the newest run.
Conditions that must match: model and weights, backend and its options, scenario, mode, resolution, steps,
batching, workers, prompts, latents, LoadGen settings, hardware. --allow-difference NAME lets one differ
(the change under test, e.g. backend.latency_ms or backend.compile_mode).
Exit codes: 0 no regression, 1 regression (the failing metrics listed), 2 bad input or conditions differ.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from harness.commands._history_args import add_database_flags, database_url
from harness.commands._shared import fail
from harness.errors import HarnessError

REGRESSION = 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness gate",
        description="Regression gate: exit 1 on a significant regression beyond a threshold, 0 otherwise, "
        "2 when the runs' conditions differ.",
        epilog="example: python -m harness gate --baseline last:5 --max-slowdown 5%%",
    )
    p.add_argument("--baseline", required=True, metavar="REF", help="run id, run folder or last:N")
    p.add_argument("--candidate", metavar="REF", help="run id or run folder. Default: the newest run")
    p.add_argument("--max-slowdown", default="5%", metavar="PCT", help="samples/s lost, e.g. 5%% (default) or 0.05")
    p.add_argument("--max-p99-increase", metavar="PCT", help="p99 latency increase, e.g. 10%%. Default: not checked")
    p.add_argument("--max-clip-drop", type=float, metavar="POINTS", help="CLIP score drop. Default: not checked")
    p.add_argument("--max-fid-increase", type=float, metavar="POINTS", help="FID increase. Default: not checked")
    p.add_argument(
        "--allow-difference",
        action="append",
        default=[],
        metavar="NAME",
        help="a condition that may differ (repeatable): a column such as hardware, or backend.<option>",
    )
    add_database_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.history.db import open_history
    from harness.history.gate import Thresholds, condition_differences, judge, parse_fraction
    from harness.history.query import latest, resolve
    from harness.history.schema import CONDITIONS

    for name in args.allow_difference:
        if name not in CONDITIONS and not name.startswith("backend."):
            return fail(f"--allow-difference {name!r}: allowed are {', '.join(CONDITIONS)} and backend.<option>")
    try:
        thresholds = Thresholds(
            max_slowdown=parse_fraction(args.max_slowdown),
            max_p99_increase=parse_fraction(args.max_p99_increase) if args.max_p99_increase else None,
            max_clip_drop=args.max_clip_drop,
            max_fid_increase=args.max_fid_increase,
        )
    except ValueError as exc:
        return fail(f"gate: {exc}")
    try:
        engine = open_history(database_url(args))
        candidate = resolve(engine, args.candidate or latest(engine))
        baseline = resolve(
            engine,
            args.baseline,
            like=candidate.first,
            exclude=candidate.first["run_id"],
            match=_matched(args.allow_difference),
            before=candidate.first["started_at"],
        )
        engine.dispose()
    except HarnessError as exc:
        return fail(str(exc))
    if any(r["run_id"] == candidate.first["run_id"] for r in baseline.rows):
        return fail(f"gate: the baseline {args.baseline!r} includes the candidate {candidate.first['run_id']}")
    for row in baseline.rows:
        differs = condition_differences(row, candidate.first, args.allow_difference)
        if differs:
            return fail(
                f"gate: refusing to compare {row['run_id']} with {candidate.first['run_id']}: conditions differ: "
                + "; ".join(differs)
            )
    print(f"baseline: {', '.join(_id_validity(r) for r in baseline.rows)}")
    print(f"candidate: {_id_validity(candidate.first)}")
    for line in baseline.invalid() + candidate.invalid():
        print(f"warning: LoadGen did not call this run VALID: {line}", file=sys.stderr)
    result = judge(baseline, candidate, thresholds)
    for line in result.checked:
        print(f"ok: {line}")
    for line in result.failures:
        print(f"REGRESSION: {line}")
    if result.failures:
        print(f"gate: FAIL ({len(result.failures)} metric(s) regressed)")
        return REGRESSION
    print("gate: PASS")
    return 0


def _matched(allowed: list[str]) -> list[str]:
    """The conditions last:N selects on: all but those allowed to differ (backend options then compared
    key by key afterwards)."""
    from harness.history.schema import CONDITIONS

    skip = set(allowed) | ({"backend_options"} if any(a.startswith("backend.") for a in allowed) else set())
    return [c for c in CONDITIONS if c not in skip]


def _id_validity(row: Mapping[str, Any]) -> str:
    v = row["result_validity"] or "no LoadGen result"
    return f"{row['run_id']} [{v}{': ' + row['invalid_reason'] if row['invalid_reason'] else ''}]"
