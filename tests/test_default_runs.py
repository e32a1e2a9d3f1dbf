"""The three default runs (`python -m harness --scenario X` on the tiny model) come out LoadGen VALID on
this 2-core machine, and a run LoadGen calls INVALID for early stopping says why."""

from __future__ import annotations

import pytest


@pytest.mark.slow  # three full default runs: `python -m pytest -m slow` (.ci/run's second step)
@pytest.mark.parametrize("scenario", ["SingleStream", "Server", "Offline"])
def test_the_default_run_is_valid(run_cli, scenario: str) -> None:
    run = run_cli("--scenario", scenario, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = run.summary()
    loadgen = summary["loadgen"]
    assert (summary["status"], summary["result_valid"], loadgen["result_validity"]) == ("ok", True, "VALID"), loadgen
    assert loadgen["early_stopping_met"] is True and loadgen["invalid_reason"] is None
    assert '"key": "result_validity", "value": "VALID"' in run.detail_log()  # LoadGen's own word
    assert "VALID" in run.stdout and "INVALID" not in run.stdout


def test_an_early_stopping_failure_has_a_reason(run_cli_in_process) -> None:
    """Too few SingleStream queries for early stopping: LoadGen's result_invalid_reason is empty, and the
    summary takes the reason from its early_stopping_result."""
    run = run_cli_in_process(
        "--backend",
        "fake",
        "--scenario",
        "SingleStream",
        "--set",
        "backend.latency_ms=30",
        "--set",
        "loadgen.min_duration_ms=200",
        "--set",
        "loadgen.min_query_count=8",
        "--set",
        "loadgen.single_stream_expected_latency_ns=2000000",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = run.summary()
    assert summary["loadgen"]["result_validity"] == "INVALID" and summary["loadgen"]["early_stopping_met"] is False
    assert "Need to process at least 64 queries" in summary["loadgen"]["invalid_reason"]
    assert any("early stopping not met" in b for b in summary["submission_blockers"])
    assert "INVALID" in run.stdout and "not a result" in run.stdout
