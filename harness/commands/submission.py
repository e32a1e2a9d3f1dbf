"""`python -m harness submission --org NAME --system NAME --division closed RUN_DIRS...`: an MLPerf
submission tree from run directories (harness/mlperf/submission.py has the layout).

Give, per scenario, the performance run, the accuracy run and the TEST01 / TEST04 run directories of
`python -m harness compliance`. The tree lands in --output (default: submission/, which .gitignore
lists: a tree built in the checkout must not make later runs record `git.dirty: true`); check it with
`python -m harness check-submission DIR`. Make the runs for the round (`--set mlperf.round=v6.0`): the
tree warns about runs made for another round or none, and about runs that are not the benchmark.

Exit codes: 0 built (warnings name what the checker will reject); 2 bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys

from harness.errors import HarnessError
from harness.mlperf import rules

EPILOG = """\
examples:
  python -m harness submission --org MyOrg --system 1xH100_eager --division closed \\
      --system-info my_system.toml \\
      runs/OFFLINE_PERF_RUN runs/OFFLINE_ACC_RUN runs/OFFLINE_TEST01_RUN runs/OFFLINE_TEST04_RUN \\
      runs/SS_PERF_RUN runs/SS_ACC_RUN runs/SS_TEST01_RUN runs/SS_TEST04_RUN
  Name one run directory of each kind per scenario (a glob such as runs/*-Offline-performance matches
  every such run and is refused when it matches more than one). An edge system (the template's
  system_type) submits SingleStream and Offline. Template for --system-info:
  configs/submission/system.toml

exit codes: 0 built, 2 bad input
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness submission",
        description="Assemble an MLPerf Inference submission tree from harness run directories.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="performance, accuracy and compliance runs")
    p.add_argument("--org", required=True, help="submitting organization (the folder under the division)")
    p.add_argument("--system", required=True, help="system name: systems/<SYSTEM>.json, results/<SYSTEM>/")
    p.add_argument("--division", required=True, choices=rules.DIVISIONS)
    p.add_argument("--round", default="v6.0", choices=sorted(rules.ROUNDS), help="MLPerf round. Default: v6.0")
    p.add_argument(
        "--system-info",
        metavar="FILE.toml",
        help="[system] and [measurements] fields that cannot be read from the machine "
        "(template: configs/submission/system.toml)",
    )
    p.add_argument(
        "--output", default="submission", metavar="DIR", help="where the tree goes. Default: submission/ (git-ignored)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.commands._shared import configure_logging, fail

    configure_logging(args.verbose)
    from pathlib import Path

    from harness.mlperf.submission import Builder, read_run

    for name, value in (("--org", args.org), ("--system", args.system)):
        if not value or "/" in value or value.startswith("."):
            print(
                f"error: {name} {value!r} must be a plain folder name (no '/', not starting with '.')", file=sys.stderr
            )
            return 2
    builder = Builder(
        out=Path(args.output),
        division=args.division,
        org=args.org,
        system=args.system,
        round=rules.ROUNDS[args.round],
        system_info=args.system_info,
    )
    try:
        runs = [read_run(d) for d in args.run_dirs]
        root = builder.build(runs)
    except HarnessError as exc:
        return fail(str(exc))
    logging.getLogger("harness").info("submission tree: %s", root)
    print(f"submission tree ({args.round}, {len(runs)} runs): {root}")
    if builder.warnings:
        print(f"{len(builder.warnings)} warning(s): the checker will say more")
    print(f"check it: python -m harness check-submission {args.output}")
    return 0
