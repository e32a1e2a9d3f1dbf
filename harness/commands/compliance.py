"""`python -m harness compliance --test TEST01|TEST04`: an MLPerf compliance test, run and verified.

Takes the same model, backend, scenario and --set flags as a run. The test run gets the official
audit.config (harness/loadgen/audit_config.py), then is verified against the normal runs as the official
scripts do (harness/mlperf/compliance.py). Its run directory holds LoadGen's logs, audit.config,
verify_accuracy.txt (TEST01), verify_performance.txt and compliance.json (verdict and numbers); give
it to `python -m harness submission` with the normal runs.

The normal runs come from --performance-run / --accuracy-run, or, when those are not given, are run
first with the same flags (their run directories are ordinary ones, reusable for the submission).

Exit codes: 0 the test passed; 1 it failed, could not be verified, or a run failed; 2 bad input;
130 interrupted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.commands._shared import configure_logging, fail
from harness.commands.run import build_parser as build_run_parser
from harness.commands.run import flag_overrides
from harness.config import RunConfig, resolve_config
from harness.errors import ConfigError, HarnessError, RunFailed
from harness.loadgen.audit_config import AUDIT_FILE, write_audit_config
from harness.loadgen.logs import read_detail_log
from harness.mlperf import compliance as verify
from harness.mlperf import rules
from harness.run.run_dir import make_run_dir, write_json
from harness.run.summary import RunSummary

log = logging.getLogger("harness")

EPILOG = """\
examples:
  python -m harness compliance --test TEST04 --backend fake --set backend.latency_ms=20
  python -m harness compliance --test TEST01 --performance-run runs/PERF --accuracy-run runs/ACC \\
      --model sdxl --model-path ~/models/sdxl --set backend.device=cuda --scenario Offline

exit codes: 0 passed, 1 failed or not verified, 2 bad input, 130 interrupted
"""


def build_parser() -> Any:
    p = build_run_parser()
    p.prog = "python -m harness compliance"
    p.description = "Run an MLPerf compliance test (TEST01: accuracy in performance mode; TEST04: no caching)."
    p.epilog = EPILOG
    p.add_argument("--test", required=True, choices=rules.COMPLIANCE_TESTS, help="which compliance test")
    p.add_argument(
        "--performance-run",
        metavar="RUN_DIR",
        help="the normal performance run to compare with (same scenario). Default: run it first",
    )
    p.add_argument(
        "--accuracy-run",
        metavar="RUN_DIR",
        help="TEST01: the accuracy run whose images the sampled responses must match. Default: run it first",
    )
    p.add_argument(
        "--audit-config",
        metavar="FILE",
        help="use this audit.config instead of the official one (e.g. a lower accuracy_log_sampling_target)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if args.mode == "accuracy":
        return fail("--mode accuracy: a compliance test is a performance run; leave --mode out")
    if args.accuracy_run and args.test != "TEST01":
        return fail(f"--accuracy-run is for TEST01; {args.test} compares performance only")
    needs_runs = not args.performance_run or (args.test == "TEST01" and not args.accuracy_run)
    if args.user_conf and needs_runs:
        # LoadGen takes one user.conf per process: a second load logs "Multiple conf files are used",
        # an error that fails the run it lands in (loadgen/test_settings_internal.cc, FromConfig).
        given = "--performance-run and --accuracy-run" if args.test == "TEST01" else "--performance-run"
        return fail(
            f"--user-conf {args.user_conf!r} with normal runs made in this process: LoadGen accepts one user.conf "
            f"per process, so the later run would log 'Multiple conf files are used'; make the normal runs "
            f"first (python -m harness ... --user-conf FILE) and give them with {given}"
        )
    try:
        cfg = resolve_config(args.model, args.config, flag_overrides(args, "performance"), args.sets)
        if cfg.run.audit_config:
            raise ConfigError("run.audit_config is set by the compliance command; use --audit-config FILE")
        if args.audit_config and not Path(args.audit_config).expanduser().is_file():
            raise ConfigError(f"--audit-config {args.audit_config!r}: file not found")
        # The accuracy run first: the first run in a process is the slowest (cold caches), and the
        # performance run is the one TEST01 compares speed with.
        accuracy_run = _reference(cfg, args.accuracy_run, "accuracy") if args.test == "TEST01" else None
        performance_run = _reference(cfg, args.performance_run, "performance")
        run_dir = make_run_dir(cfg, args.test)
        audit = write_audit_config(args.test, run_dir / AUDIT_FILE, args.audit_config)
    except RunFailed as exc:
        return fail(str(exc), 1)
    except HarnessError as exc:
        return fail(str(exc))

    test_cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, audit_config=str(audit)))
    log.info("%s run directory: %s", args.test, run_dir)
    try:
        result = _run(test_cfg, run_dir, args.test)
    except HarnessError as exc:
        return fail(str(exc))
    from harness.commands._summary_table import print_summary

    print_summary(result.summary)
    if result.exit_code != 0:
        return fail(f"the {args.test} run did not finish ({result.summary.error}); logs in {run_dir}", 1)

    if args.test == "TEST01":
        assert accuracy_run is not None
        report = _verify_test01(test_cfg, run_dir, performance_run, accuracy_run)
    else:
        report = _verify_test04(test_cfg, run_dir, performance_run)
    write_json(run_dir / "compliance.json", report)
    for line in report["verdict_lines"]:
        print(line)
    return 0 if report["passed"] else 1


# The runs ------------------------------------------------------------------------------------------
@contextmanager
def _run_log(run_dir: Path) -> Iterator[None]:
    """harness.log of one run directory (the command makes several runs in one process)."""
    handler = logging.FileHandler(run_dir / "harness.log", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def _run(cfg: RunConfig, run_dir: Path, label: str) -> Any:
    from harness.console import Progress
    from harness.run import first_image
    from harness.run.benchmark import run_benchmark

    first_image.mark_run_start()  # this command makes several runs in one process (harness/run/first_image.py)
    with _run_log(run_dir):
        try:
            with Progress(enabled=cfg.run.progress, label=f"{cfg.run.scenario} {label}") as bar:
                result = run_benchmark(cfg, run_dir, progress=bar.update)
        except HarnessError:
            _discard_if_unused(run_dir)
            raise
        except KeyboardInterrupt:
            print(f"error: interrupted before LoadGen started; logs in {run_dir}", file=sys.stderr)
            os._exit(130)
    if result.loadgen_alive or result.interrupted:
        # LoadGen has no abort and its thread keeps going: nothing more can run in this process.
        message = result.failure.message() if result.failure is not None else "interrupted"
        print(f"error: {message}; logs kept in {run_dir}", file=sys.stderr)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(result.exit_code or 1)
    return result


def _discard_if_unused(run_dir: Path) -> None:
    """A run that never started (bad input found while loading) leaves no directory behind."""
    if {p.name for p in run_dir.iterdir()} <= {"harness.log", AUDIT_FILE}:
        shutil.rmtree(run_dir, ignore_errors=True)


def _reference(cfg: RunConfig, given: str | None, mode: str) -> Path:
    """A normal run to compare with: the given run directory (checked), or a new run."""
    if given:
        path = Path(given).expanduser()
        summary = _read_summary(path, f"--{mode}-run")
        problems = []
        if summary.mode != mode:
            problems.append(f"it is a {summary.mode} run, not a {mode} run")
        if summary.scenario != cfg.run.scenario:
            problems.append(f"its scenario is {summary.scenario}, this test's is {cfg.run.scenario}")
        if summary.model != cfg.model.name:
            problems.append(f"its model is {summary.model}, this test's is {cfg.model.name}")
        if summary.status != "ok":
            problems.append(f"its status is {summary.status!r} (need 'ok')")
        if problems:
            raise ConfigError(f"--{mode}-run {str(path)!r}: {'; '.join(problems)}")
        return path
    run_cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, mode=mode))
    run_dir = make_run_dir(run_cfg)
    log.info("no --%s-run given: the %s run first, in %s", mode, mode, run_dir)
    result = _run(run_cfg, run_dir, mode)
    if result.summary.status != "ok":
        raise RunFailed(f"the {mode} run failed ({result.summary.error}); logs in {run_dir}")
    return run_dir


def _read_summary(path: Path, flag: str) -> RunSummary:
    file = path / "summary.json"
    if not file.is_file():
        what = "does not exist" if not path.is_dir() else "has no summary.json"
        raise ConfigError(f"{flag} {str(path)!r} {what}; give a run directory made by python -m harness")
    return RunSummary.read(file)


# Verification --------------------------------------------------------------------------------------
def _audit_problems(run_dir: Path, test: str) -> list[str]:
    """Did LoadGen find and apply the audit config, without complaining?"""
    detail = read_detail_log(run_dir / "mlperf_log_detail.txt")
    text = (run_dir / "mlperf_log_detail.txt").read_text(encoding="utf-8", errors="replace")
    problems = []
    if "Found Audit Config file" not in text:
        problems.append("LoadGen did not log 'Found Audit Config file'")
    if "Multiple conf files are used" in text:
        problems.append("LoadGen logged 'Multiple conf files are used' (a user.conf and the audit config)")
    other = [e for e in detail.errors if "Multiple conf files are used" not in e]
    if other:
        problems.append(f"LoadGen logged {len(other)} error(s) in the test run: {'; '.join(other[:2])}")
    if test == "TEST01" and not detail.get("effective_accuracy_log_sampling_target"):
        problems.append("effective_accuracy_log_sampling_target is 0: no responses were sampled")
    if test == "TEST04" and detail.get("effective_performance_issue_same") is not True:
        problems.append("effective_performance_issue_same is not true")
    return problems


def _scorer(cfg: RunConfig) -> tuple[verify.ScoreFn | None, str]:
    """The CLIP/FID scorer of accuracy/ with the run's accuracy settings, or why there is none."""
    from harness.data.prompts import load_prompts
    from harness.run import accuracy_step

    # The TEST01 subset is compared with itself run on the accuracy images: no reference run window.
    acc_cfg = dataclasses.replace(cfg, accuracy=dataclasses.replace(cfg.accuracy, reference=""))
    try:
        plan = accuracy_step.prepare(acc_cfg, 0)
    except ConfigError as exc:
        return None, str(exc)
    if plan is None:
        return None, "accuracy.score is false (--set accuracy.score=true scores the subset with CLIP and FID)"
    if plan.not_scored:  # e.g. a model with no accuracy window, no reference run and no scorer files
        return None, plan.not_scored
    from accuracy.scorer import score_log

    captions = load_prompts(cfg.dataset.path, cfg.model.negative_prompt).texts

    def score(path: Path) -> dict[str, float]:
        s = score_log(path, captions, plan.spec)
        return {rules.CLIP_SCORE: s.clip_score, rules.FID_SCORE: s.fid_score}

    return score, ""


def _verify_test01(cfg: RunConfig, run_dir: Path, performance_run: Path, accuracy_run: Path) -> dict[str, Any]:
    h, w = cfg.model.height, cfg.model.width
    problems = _audit_problems(run_dir, "TEST01")
    test_log = run_dir / "mlperf_log_accuracy.json"
    ref_log = accuracy_run / "mlperf_log_accuracy.json"
    acc = verify.compare_accuracy_logs(ref_log, test_log, h, w)
    method, fallback = "bytes", None
    if not acc.passed and "qsl_idxs" in acc.numbers:
        score, reason = _scorer(cfg)
        fallback = verify.clip_fid_fallback(ref_log, test_log, acc.numbers["qsl_idxs"], run_dir, h, w, score, reason)
        method = "clip_fid" if fallback.numbers.get("state") == "scored" else "not scored"
    acc_passed = acc.passed or bool(fallback and fallback.passed)
    lines = acc.lines + (fallback.lines if fallback else [])
    if problems:  # the responses were logged by a run that cannot be trusted: no TEST PASS line
        lines = [line for line in lines if line.strip() != verify.PASS_LINE]
        lines += [f"{verify.FAIL_LINE}: {p}" for p in problems]
    (run_dir / "verify_accuracy.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    detail = "mlperf_log_detail.txt"
    perf = verify.compare_performance_detail(performance_run / detail, run_dir / detail)
    perf = verify.fail_verdict(perf, problems)
    (run_dir / "verify_performance.txt").write_text(perf.text(), encoding="utf-8")
    passed = acc_passed and perf.passed and not problems

    n = acc.numbers.get("num_perf_log_qsl_idx_match", 0)
    if acc.passed:
        acc_line = f"PASS ({n} sampled responses equal the accuracy run's in their first byte)"
    elif method == "clip_fid":
        acc_line = f"{'PASS' if fallback and fallback.passed else 'FAIL'} by CLIP/FID: " + "; ".join(
            fallback.lines[1:-1] if fallback else []
        )
    elif method == "not scored":
        reason = fallback.numbers["reason"] if fallback else ""
        acc_line = f"FAIL: responses differ and CLIP/FID was not scored: {reason}"
    else:
        acc_line = f"FAIL: {acc.lines[-1]}"
    report = _report("TEST01", cfg, run_dir, passed, problems, performance_run, accuracy_run)
    report["accuracy"] = {"passed": acc_passed, "method": method, **acc.numbers}
    if fallback is not None:
        report["accuracy"]["clip_fid"] = fallback.numbers
    report["performance"] = {"passed": perf.passed, **perf.numbers}
    report["verdict_lines"] = [
        f"TEST01 accuracy: {acc_line}",
        f"TEST01 performance: {_perf_line(perf)}",
        *[f"TEST01 audit: {p}" for p in problems],
        f"TEST01: {'PASS' if passed else 'FAIL'} (verify_accuracy.txt, verify_performance.txt in {run_dir})",
    ]
    return report


def _verify_test04(cfg: RunConfig, run_dir: Path, performance_run: Path) -> dict[str, Any]:
    problems = _audit_problems(run_dir, "TEST04")
    perf = verify.compare_no_caching(performance_run / "mlperf_log_summary.txt", run_dir / "mlperf_log_summary.txt")
    perf = verify.fail_verdict(perf, problems)
    (run_dir / "verify_performance.txt").write_text(perf.text(), encoding="utf-8")
    passed = perf.passed and not problems
    report = _report("TEST04", cfg, run_dir, passed, problems, performance_run, None)
    report["performance"] = {"passed": perf.passed, **perf.numbers}
    speed = perf.numbers.get("speedup")
    extra = f", {speed:.3f}x the normal run (at most {1 + perf.numbers['threshold']:.2f}x allowed)" if speed else ""
    report["verdict_lines"] = [
        f"TEST04 performance: {_perf_line(perf)}{extra}",
        *[f"TEST04 audit: {p}" for p in problems],
        f"TEST04: {'PASS' if passed else 'FAIL'} (verify_performance.txt in {run_dir})",
    ]
    return report


def _report(
    test: str, cfg: RunConfig, run_dir: Path, passed: bool, problems: list[str], perf_run: Path, acc_run: Path | None
) -> dict[str, Any]:
    return {
        "test": test,
        "passed": passed,
        "scenario": cfg.run.scenario,
        "model": cfg.model.name,
        "backend": cfg.run.backend,
        "run_dir": str(run_dir),
        "performance_run": str(perf_run),
        "accuracy_run": str(acc_run) if acc_run else None,
        "audit_problems": problems,
    }


def _perf_line(check: verify.Check) -> str:
    n = check.numbers
    if "reference_score" not in n:
        return f"FAIL: {check.lines[-1]}"
    verdict = "PASS" if check.passed else "FAIL"
    return f"{verdict} (test {n['test_score']:.6g} vs reference {n['reference_score']:.6g}, {n.get('metric', 'score')})"
