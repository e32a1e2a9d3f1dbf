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
A failing throughput or p99 check is confirmed before exit 1 (--confirm N, default 2): the candidate's
configuration (its config.toml) runs N more times, on this machine, from the same git commit, and a metric
fails only if it fails in every one of those runs too. One slow run on a machine other work shares is not a
regression; a slower backend is slow every time. It cannot confirm (and the failure stands, saying why) when
the candidate folder is gone, was made from another commit, or the confirmation run fails. CLIP and FID are
not rerun: fixed seeds give the same images again.
Exit codes: 0 no regression, 1 regression (the failing metrics listed), 2 bad input or conditions differ.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.commands._history_args import add_database_flags, database_url
from harness.commands._shared import fail
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.history.gate import GateResult, Thresholds
    from harness.history.query import RunSet

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
    p.add_argument(
        "--confirm",
        type=int,
        default=2,
        metavar="N",
        help="before failing on throughput or p99, run the candidate's configuration N more times here; fail "
        "only if every run fails (default 2; 0: never rerun)",
    )
    add_database_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.history.db import open_history
    from harness.history.gate import Thresholds, condition_differences, judge, parse_fraction
    from harness.history.query import latest, resolve
    from harness.history.schema import CONDITIONS

    if args.confirm < 0:
        return fail(f"--confirm {args.confirm}: must be >= 0 (0: never rerun)")
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
        url = database_url(args)
        engine = open_history(url)
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
    if result.failures and args.confirm and result.timing_only:
        result = _confirmed(url, baseline, candidate, thresholds, result, args.confirm)
    for line in result.checked:
        print(f"ok: {line}")
    for line in result.failures:
        print(f"REGRESSION: {line}")
    if result.failures:
        print(f"gate: FAIL ({len(result.failures)} metric(s) regressed)")
        return REGRESSION
    print("gate: PASS")
    return 0


def _confirmed(
    url: str, baseline: RunSet, candidate: RunSet, thresholds: Thresholds, first: GateResult, times: int
) -> GateResult:
    """`first` with only the failures that every one of `times` runs of the candidate's configuration repeats;
    the others move to `checked`, saying so. When no confirmation run can be made, `first` stands, with why."""
    from dataclasses import replace

    from harness.commands._child import run_child
    from harness.history.db import open_history
    from harness.history.gate import condition_differences, judge
    from harness.history.query import resolve
    from harness.run.manifest import git_revision
    from harness.run.replay import replay_args

    row = candidate.first
    run_dir = Path(str(row["run_dir"]))
    commit = git_revision()["commit"]
    why_not = ""
    if not (run_dir / "config.toml").is_file():
        why_not = f"{run_dir} has no config.toml to run again"
    elif row["git_commit"] != commit:
        why_not = f"the candidate was made from commit {str(row['git_commit'])[:12]}, this checkout is {commit[:12]}"
    if why_not:
        return replace(first, checked=(*first.checked, f"not confirmed by another run: {why_not}; the result stands"))
    remaining = set(first.failed_metrics)
    notes: list[str] = []
    for i in range(1, times + 1):
        print(f"gate: {len(remaining)} metric(s) over the limit; confirmation run {i}/{times} of the candidate's "
              f"configuration ...", file=sys.stderr, flush=True)  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="gate-confirm-") as tmp:
            args = replay_args(
                run_dir, config_path=Path(tmp) / "replay.toml", output_dir=run_dir.parent, history_url=url
            )
            child = run_child(args, output_dir=run_dir.parent, heartbeat="gate: confirmation run")
        if child.returncode != 0 or child.run_dir is None:
            why = f"confirmation run {i} failed ({child.error_line()}); the result stands"
            return replace(first, checked=(*first.checked, *notes, why))
        engine = open_history(url)
        again = resolve(engine, str(child.run_dir))
        engine.dispose()
        differs = condition_differences(row, again.first)
        if differs:
            why = (
                f"confirmation run {again.first['run_id']} ran under other conditions ({'; '.join(differs)}); "
                "the result stands"
            )
            return replace(first, checked=(*first.checked, *notes, why))
        repeat = judge(baseline, again, thresholds)
        for line, metric in zip(repeat.failures, repeat.failed_metrics, strict=True):
            if metric in remaining:
                notes.append(f"confirmation run {again.first['run_id']}: {line}")
        for metric in sorted(remaining - set(repeat.failed_metrics)):
            notes.append(f"confirmation run {again.first['run_id']}: {metric} within the limit")
        remaining &= set(repeat.failed_metrics)
        if not remaining:
            break
    kept = tuple((line, m) for line, m in zip(first.failures, first.failed_metrics, strict=True) if m in remaining)
    dropped = tuple(line for line, m in zip(first.failures, first.failed_metrics, strict=True) if m not in remaining)
    return replace(
        first,
        failures=tuple(f"{line} (repeated in the confirmation run(s))" for line, _ in kept),
        failed_metrics=tuple(m for _, m in kept),
        checked=(
            *first.checked,
            *(f"{line}: not repeated, one slow run is not a regression" for line in dropped),
            *notes,
        ),
    )


def _matched(allowed: list[str]) -> list[str]:
    """The conditions last:N selects on: all but those allowed to differ (backend options then compared
    key by key afterwards)."""
    from harness.history.schema import CONDITIONS

    skip = set(allowed) | ({"backend_options"} if any(a.startswith("backend.") for a in allowed) else set())
    return [c for c in CONDITIONS if c not in skip]


def _id_validity(row: Mapping[str, Any]) -> str:
    v = row["result_validity"] or "no LoadGen result"
    return f"{row['run_id']} [{v}{': ' + row['invalid_reason'] if row['invalid_reason'] else ''}]"
