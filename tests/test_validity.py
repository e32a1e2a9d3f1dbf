"""LoadGen's verdict travels with every figure: the detail log's reasons (early stopping included), the
reruns a study makes for an INVALID point, plain progress lines without a terminal, and configuration
errors found before the inputs are prepared."""

from __future__ import annotations

import io
import json
import subprocess
import time
from pathlib import Path

import pytest

from harness.loadgen.logs import Verdict, read_detail_log
from harness.studies.rerun import rerun_sets


def _mllog(path: Path, values: dict[str, object]) -> Path:
    """A detail log as LoadGen writes it (results.cc, PerformanceSummary::LogDetail)."""
    lines = [
        ":::MLLOG " + json.dumps({"key": k, "value": v, "metadata": {"is_error": False, "is_warning": False}})
        for k, v in values.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


# What LoadGen 6.0 logged for the default Server run of issue 22 (early stopping only: an empty
# result_invalid_reason) and for a SingleStream run with too few queries.
SERVER_EARLY_STOPPING = {
    "result_validity": "INVALID",
    "result_perf_constraints_met": True,
    "result_min_duration_met": True,
    "result_min_queries_met": True,
    "early_stopping_met": False,
    "result_invalid_reason": "",
    "early_stopping_result": " * Run unsuccessful. * Processed 140 queries. * Would need to run at least 319 more "
    "queries,  with the run being successful if every additional  query were under latency.",
    "result_query_count": 140,
}
SINGLE_STREAM_TOO_FEW = {
    "result_validity": "INVALID",
    "result_min_duration_met": True,
    "result_min_queries_met": True,
    "early_stopping_met": False,
    "result_invalid_reason": "",
    "early_stopping_result": " * Only processed 46 queries. * Need to process at least 64 queries for early stopping.",
}


def test_early_stopping_is_the_reason_when_loadgen_gives_none(tmp_path: Path) -> None:
    verdict = read_detail_log(_mllog(tmp_path / "d.txt", SERVER_EARLY_STOPPING)).verdict()
    assert verdict == Verdict("INVALID", verdict.reason) and not verdict.valid
    assert verdict.reason.startswith("early stopping not met: Run unsuccessful. Processed 140 queries.")
    assert "Would need to run at least 319 more queries" in verdict.reason
    too_few = read_detail_log(_mllog(tmp_path / "s.txt", SINGLE_STREAM_TOO_FEW)).verdict()
    assert "Need to process at least 64 queries" in too_few.reason


def test_a_short_run_keeps_loadgens_own_reason(tmp_path: Path) -> None:
    short = {
        "result_validity": "INVALID",
        "result_min_duration_met": False,
        "result_min_queries_met": True,
        "early_stopping_met": True,
        "result_invalid_reason": "Increase expected QPS so the loadgen pre-generates a larger (coalesced) query. ",
    }
    verdict = read_detail_log(_mllog(tmp_path / "d.txt", short)).verdict()
    assert verdict.reason == "Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."
    assert read_detail_log(_mllog(tmp_path / "v.txt", {"result_validity": "VALID"})).verdict() == Verdict("VALID", "")
    assert read_detail_log(tmp_path / "missing.txt").verdict().validity is None


def _summary(scenario: str, reason: str, **loadgen: object) -> dict:
    return {
        "status": "ok",
        "mode": "performance",
        "scenario": scenario,
        "samples_per_second": 50.0,
        "latency_ms": {"mean": 40.0},
        "query_count": 140,
        "loadgen": {"result_validity": "INVALID", "invalid_reason": reason, **loadgen},
    }


def test_a_rerun_gets_what_loadgen_said_was_missing() -> None:
    offline = _summary("Offline", "Increase expected QPS so ...", min_duration_met=False)
    assert rerun_sets("Offline", offline) == ["loadgen.offline_expected_qps=65.0000"]  # 1.3 x the measured 50/s
    single = _summary("SingleStream", "Decrease the expected latency so the loadgen pre-generates more queries.")
    single["loadgen"]["min_duration_met"] = False
    assert rerun_sets("SingleStream", single) == ["loadgen.single_stream_expected_latency_ns=30769230"]
    server = _summary("Server", "early stopping not met: Would need to run at least 319 more queries, ...")
    assert rerun_sets("Server", server) == ["loadgen.min_query_count=505"]  # ceil((140 + 319) x 1.1)
    few = _summary(
        "SingleStream", "early stopping not met: Only processed 46 queries. Need to process at least 64 queries"
    )
    assert rerun_sets("SingleStream", few) == ["loadgen.min_query_count=71"]
    valid = _summary("Offline", "") | {"loadgen": {"result_validity": "VALID"}}
    assert rerun_sets("Offline", valid) == [] and rerun_sets("Offline", None) == []
    failed = _summary("Offline", "Increase expected QPS", min_duration_met=False) | {"status": "failed"}
    assert rerun_sets("Offline", failed) == []


def test_a_verdict_from_a_summary_names_missing_results() -> None:
    assert Verdict.from_summary(None) == Verdict(None, "no summary.json")
    assert Verdict.from_summary({"loadgen": {"result_validity": "VALID"}}).label() == "VALID"
    invalid = Verdict.from_summary({"loadgen": {"result_validity": "INVALID", "invalid_reason": "too short"}})
    assert invalid.label() == "INVALID (too short)"


# -- plain progress lines without a terminal -------------------------------------------------------


def _slow_run(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
    time.sleep(0.5)
    return subprocess.CompletedProcess(args=[], returncode=0, stdout="", stderr="")


def test_a_sweep_point_prints_a_line_every_few_seconds_without_a_tty(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from harness.commands import _child
    from harness.commands import sweep as cmd_sweep
    from harness.console import Heartbeat
    from harness.studies.sweep_plan import SweepPlan

    monkeypatch.setattr(Heartbeat, "interval_s", 0.1)
    monkeypatch.setattr(_child.subprocess, "run", _slow_run)
    args = cmd_sweep.build_parser().parse_args(["--backend", "fake"])
    sweep = cmd_sweep.Sweep(args, SweepPlan(), tmp_path)
    sweep._launch("r64-s8-b1-Offline-performance", "Offline", "performance", [])
    err = capsys.readouterr().err
    assert err.count("r64-s8-b1-Offline-performance: still running") >= 2


def test_a_compare_run_prints_a_line_every_few_seconds_without_a_tty(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from harness.commands import _child
    from harness.commands import compare as cmd_compare
    from harness.console import Heartbeat

    monkeypatch.setattr(Heartbeat, "interval_s", 0.1)
    monkeypatch.setattr(_child.subprocess, "run", _slow_run)
    (tmp_path / "runs").mkdir()
    (tmp_path / "logs").mkdir()
    cmd_compare._run(tmp_path, "fake", "fake", "performance", [], 60.0)
    assert capsys.readouterr().err.count("compare: fake performance: still running") >= 2


def test_a_terminal_gets_no_heartbeat_lines() -> None:
    from harness.console import Heartbeat

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out, tty = io.StringIO(), Tty()
    with Heartbeat("x", interval_s=0.05, stream=out):
        time.sleep(0.3)
    with Heartbeat("x", interval_s=0.05, stream=tty):
        time.sleep(0.3)
    assert out.getvalue().count("x: still running") >= 2 and tty.getvalue() == ""


# -- the whole configuration is checked before the inputs are prepared ----------------------------


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"run.backend": "no-such-backend"}, "unknown backend 'no-such-backend'"),
        ({"backend.device": "cuda"}, "torch.cuda.is_available() is False"),
        ({"loadgen.min_duration_ms": "soon"}, "loadgen.min_duration_ms"),
    ],
)
def test_bad_configuration_is_found_before_the_inputs_are_prepared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sets: dict[str, str], message: str
) -> None:
    import torch

    from harness.config import resolve_config
    from harness.errors import ConfigError
    from harness.run import benchmark as runner

    if "backend.device" in sets and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")

    def prepare_inputs(cfg: object) -> None:
        raise AssertionError("inputs prepared before the configuration was checked")

    monkeypatch.setattr(runner, "prepare_inputs", prepare_inputs)
    cli = {k: v for k, v in sets.items() if k.startswith("run.")}
    cfg = resolve_config("tiny", None, cli, [f"{k}={v}" for k, v in sets.items() if not k.startswith("run.")])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        runner.run_benchmark(cfg, tmp_path)


# -- compare and scale rows -----------------------------------------------------------------------


def test_compare_and_scale_rows_carry_the_reason_into_the_report(tmp_path: Path) -> None:
    from harness.report.collect import DirData
    from harness.report.problems import problems
    from harness.studies.compare import build_report, make_row, markdown

    reason = "early stopping not met: Would need to run at least 319 more queries"
    run = tmp_path / "run"
    run.mkdir()
    summary = _summary("Server", reason)
    (run / "summary.json").write_text(json.dumps(summary))
    row = make_row("fake", run, 0, None, None)
    assert (row["loadgen_result"], row["invalid_reason"]) == ("INVALID", reason)
    report = build_report([row], reference="fake", model="tiny", scenario="Server", command=[], sets=[])
    text = markdown(report)
    assert "| **INVALID** |" in text and f"`fake` LoadGen INVALID: {reason}" in text
    scale_row = {"scenario": "Server", "workers": 2, "status": "ok", "loadgen_validity": "INVALID"}
    scale_row["invalid_reason"] = reason
    found = problems(
        [DirData("compare", "c", tmp_path, report), DirData("scale", "s", tmp_path, {"rows": [scale_row]})]
    ).rows
    assert [r["problem"] for r in found] == [
        f"backend fake: LoadGen result INVALID: {reason}",
        f"scale point scenario=Server, workers=2: LoadGen result INVALID: {reason}",
    ]
