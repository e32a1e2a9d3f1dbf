"""`python -m harness [run] --scenario ...`: parse flags, layer the config, run, print the summary.

Exit codes: 0 done; 1 the run failed (a backend raised); 2 bad input (one line on stderr);
3 accuracy mode's verdict is FAIL; 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from backends.registry import BACKENDS
from harness.commands import subcommands
from harness.commands._shared import attach_run_log, configure_logging, fail
from harness.config import MODES, SCENARIOS, available_models, resolve_config
from harness.errors import HarnessError
from harness.run.run_dir import make_run_dir

log = logging.getLogger("harness")

EPILOG = """\
examples:
  python -m harness --scenario Offline                      tiny model, CPU, about a minute
  python -m harness --scenario Server --backend fake --set backend.latency_ms=20
  python -m harness --model sdxl --model-path ~/models/sdxl --backend diffusers-eager \\
      --set backend.device=cuda --set backend.dtype=float16 --scenario Offline
  python -m harness --mode accuracy --scenario Offline --set dataset.count=16

exit codes: 0 done, 1 run failed, 2 bad input, 3 accuracy FAIL, 130 interrupted
"""


def _epilog() -> str:
    names = sorted(set(subcommands()) - {"run"})
    more = f"\nother commands (python -m harness COMMAND --help): {', '.join(names)}\n" if names else ""
    return EPILOG + more


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness",
        description="MLPerf-style LoadGen scenario runner for text-to-image models.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        help="LoadGen scenario: SingleStream (one query at a time, latency), Offline (all "
        "samples at once, throughput), Server (Poisson arrivals at a target rate, tail latency). "
        "Default: Offline",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        help="performance (timed LoadGen run) or accuracy (LoadGen AccuracyOnly: every sample "
        "once, images logged to mlperf_log_accuracy.json). Default: performance",
    )
    p.add_argument(
        "--backend",
        help=f"which backend runs the model: {', '.join(sorted(BACKENDS))}. "
        "Default: the model config's (diffusers-eager)",
    )
    p.add_argument(
        "--model",
        default="tiny",
        help=f"model config in configs/models/: {', '.join(available_models())}. Default: tiny "
        "(an embedded random-weight model built on first use)",
    )
    p.add_argument(
        "--model-path",
        metavar="DIR",
        help="local diffusers pipeline folder (model_index.json at its top); nothing is downloaded",
    )
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="a TOML file layered over the model config (same sections as config.toml in a run dir)",
    )
    p.add_argument(
        "--user-conf",
        metavar="FILE",
        help="a LoadGen user.conf (model.scenario.key = value), applied by LoadGen itself after "
        "the TOML layers and before --set loadgen.* overrides",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, repeatable: e.g. --set sut.batch_size=4 "
        "--set backend.device=cuda --set loadgen.min_duration_ms=10000",
    )
    p.add_argument(
        "--output-dir",
        metavar="DIR",
        help="where run directories are created. Default: runs/",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    return p


def flag_overrides(args: argparse.Namespace, mode: str | None) -> dict[str, Any]:
    """The run flags as config keys (the layer between --config and --set); compliance shares them."""
    overrides: dict[str, Any] = {
        "run.scenario": args.scenario,
        "run.mode": mode,
        "run.backend": args.backend,
        "run.output_dir": args.output_dir,
        "model.path": args.model_path,
        "loadgen.user_conf": args.user_conf,
    }
    if args.no_progress:
        overrides["run.progress"] = False
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        cfg = resolve_config(args.model, args.config, flag_overrides(args, args.mode), args.sets)
    except HarnessError as exc:
        return fail(str(exc))

    run_dir = make_run_dir(cfg)
    attach_run_log(run_dir)
    log.info("run directory: %s", run_dir)
    from harness.commands._summary_table import print_summary
    from harness.console import Progress
    from harness.run.benchmark import run_benchmark

    try:
        with Progress(enabled=cfg.run.progress, label=f"{cfg.run.scenario} {cfg.run.mode}") as bar:
            result = run_benchmark(cfg, run_dir, progress=bar.update)
    except HarnessError as exc:
        _discard_if_empty(run_dir)
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail(f"interrupted before LoadGen started; logs in {run_dir}", 130)

    print_summary(result.summary)
    from harness.history.record import record_finished_run

    record_finished_run(cfg, run_dir)  # warns, never fails the run
    accuracy = result.summary.accuracy
    if accuracy is not None:
        from harness.run.accuracy_step import verdict_line

        if accuracy.get("verdict") == "ERROR":
            print(f"error: accuracy: {accuracy.get('error')}", file=sys.stderr)
        else:
            line = verdict_line(dict(accuracy))
            endpoint = result.summary.endpoint
            if endpoint is not None and not endpoint.comparable_with_mlperf_accuracy:
                line += f" (not comparable with MLPerf accuracy: {endpoint.not_comparable_reason or 'the endpoint'})"
            print(line)
    if result.failure is not None:
        print(f"error: {result.failure.message()}", file=sys.stderr)
        print(f"logs kept in {run_dir}", file=sys.stderr)
    code = result.exit_code
    if result.loadgen_alive:
        # LoadGen has no abort; its thread would keep the process alive. Everything of ours is
        # written; leave now.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _discard_if_empty(run_dir: Path) -> None:
    """A run that never started (bad input found while loading) leaves no directory behind."""
    names: list[Any] = [p.name for p in run_dir.iterdir()]
    if set(names) <= {"harness.log"}:
        for h in list(logging.getLogger().handlers):
            if isinstance(h, logging.FileHandler):
                logging.getLogger().removeHandler(h)
                h.close()
        shutil.rmtree(run_dir, ignore_errors=True)
