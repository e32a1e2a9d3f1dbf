"""`python -m harness check-submission DIR`: check a submission tree offline, as the official MLPerf
submission checker does for stable-diffusion-xl (harness/mlperf/checker.py lists the rules).

Every failed rule prints one line: `FAIL [rule] file: reason`. Exit codes: 0 every rule holds;
1 a rule failed; 2 bad input (no submission tree at DIR).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.commands._shared import fail
from harness.errors import HarnessError
from harness.mlperf import rules


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness check-submission",
        description="Check an MLPerf submission tree (stable-diffusion-xl) offline, rule by rule.",
        epilog="exit codes: 0 every rule holds, 1 a rule failed, 2 bad input",
    )
    p.add_argument("dir", metavar="DIR", help="the top of the tree: the folder holding closed/ or open/")
    p.add_argument("--round", default="v6.0", choices=sorted(rules.ROUNDS), help="MLPerf round. Default: v6.0")
    p.add_argument("--json", metavar="FILE", help="also write the failures as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.mlperf.checker import check_tree, summarize

    root = Path(args.dir)
    try:
        failures, results = check_tree(root, args.round)
    except HarnessError as exc:
        return fail(str(exc))
    for f in failures:
        print(f.line(root))
    by_rule = summarize(failures)
    if args.json:
        data = {
            "round": args.round,
            "results_checked": results,
            "passed": not failures,
            "failures": [{"rule": f.rule, "path": str(f.path), "reason": f.reason} for f in failures],
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if failures:
        rules_text = ", ".join(f"{rule} ({n})" for rule, n in by_rule.items())
        print(f"{len(failures)} failure(s) in {results} result(s), rules: {rules_text}")
        return 1
    print(f"PASS: {results} result(s) checked against the {args.round} rules; every rule holds")
    return 0
