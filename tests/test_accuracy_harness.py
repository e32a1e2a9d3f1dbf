"""Accuracy mode end to end through `python -m harness`: the tiny model scored with the stand-in scorer,
a verdict against a reference run, exit code 3 on FAIL, and the errors that stop a run before it starts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_main

QUICK = ["--set", "loadgen.min_duration_ms=200", "--set", "loadgen.min_query_count=4", "--set", "dataset.count=4"]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path | None

    def json(self, name: str) -> dict:
        assert self.run_dir is not None, self.stderr[-3000:]
        return json.loads((self.run_dir / name).read_text())

    def error_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith("error:")]


@pytest.fixture
def harness(harness_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`python -m harness ARGS` through the CLI's main() in this process (the scorer's models stay
    loaded between runs), each call with its own output folder. main() configures logging and torch
    threads for a whole process; both are put back afterwards."""
    calls = iter(range(100))

    def _run(*args: str) -> Run:
        capsys.readouterr()
        code, run_dir = run_main(*args, out=tmp_path / f"runs{next(calls)}")
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err, run_dir)

    return _run


def test_tiny_accuracy_runs_are_scored_and_judged_against_a_reference_run(
    harness, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1. The eager run: scored with the stand-in scorer, no window -> UNCHECKED, can be a reference.
    eager = harness("--mode", "accuracy", *QUICK)
    assert eager.returncode == 0, eager.stderr[-3000:]
    report = eager.json("accuracy.json")
    assert report["verdict"] == "UNCHECKED" and report["count"] == 4 and report["standin"] is True
    lines = (eager.run_dir / "accuracy.txt").read_text().splitlines()
    assert lines[0].startswith("Accuracy Results: {'FID_SCORE': '") and lines[-1].startswith("hash=")
    summary = eager.json("summary.json")
    assert summary["accuracy"]["verdict"] == "UNCHECKED" and summary["accuracy"]["CLIP_SCORE"] == report["CLIP_SCORE"]
    assert "accuracy" in summary["phases_s"]
    assert "accuracy: UNCHECKED, CLIP_SCORE" in eager.stdout and "stand-in scorer" in eager.stdout
    assert not (eager.run_dir / "images" / "0.png").exists()  # tiny.toml: no compliance images

    # 2. Rescoring the eager log (`python -m accuracy`; settings from the run's config.toml) against
    #    the eager run itself: the same scores to the last digit, PASS.
    from accuracy.__main__ import main as rescore

    out = eager.run_dir.parent / "rescored"
    log = eager.run_dir / "mlperf_log_accuracy.json"
    assert rescore(["--log", str(log), "--reference", str(eager.run_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("accuracy: PASS")
    rescored = json.loads((out / "accuracy.json").read_text())
    assert (rescored["CLIP_SCORE"], rescored["FID_SCORE"]) == (report["CLIP_SCORE"], report["FID_SCORE"])
    assert (out / "accuracy.txt").read_text().splitlines()[0] == lines[0]

    # 3. Another backend whose images differ: FAIL, the numbers and the window, exit code 3.
    fake = harness("--mode", "accuracy", "--backend", "fake", *QUICK, "--set", f"accuracy.reference={eager.run_dir}")
    assert fake.returncode == 3, fake.stderr[-3000:]
    fake_report = fake.json("accuracy.json")
    assert fake_report["verdict"] == "FAIL" and fake_report["reasons"]
    assert fake.json("summary.json")["accuracy"]["verdict"] == "FAIL"
    assert "accuracy: FAIL" in fake.stdout and f"reference run {eager.run_dir}" in fake.stdout


def test_sdxl_without_its_scorer_files_stops_before_generating(harness) -> None:
    run = harness("--model", "sdxl", "--backend", "fake", "--mode", "accuracy", "--set", "accuracy.device=cpu")
    assert run.returncode == 2, run.stderr[-3000:]
    errors = run.error_lines()
    assert len(errors) == 1, run.stderr[-3000:]
    assert "ViT-B-32.pt' not found (accuracy.clip_weights)" in errors[0]
    assert "python -m tools.fetch_assets --only clip" in errors[0]
    assert "Traceback" not in run.stderr
    assert run.run_dir is None  # nothing was generated


def test_a_bad_reference_run_is_bad_input(harness, tmp_path: Path) -> None:
    run = harness("--mode", "accuracy", "--backend", "fake", *QUICK, "--set", f"accuracy.reference={tmp_path}/nope")
    assert run.returncode == 2
    errors = run.error_lines()
    assert len(errors) == 1 and f"accuracy.reference '{tmp_path}/nope' does not exist" in errors[0]


def test_scoring_can_be_turned_off(harness) -> None:
    run = harness("--mode", "accuracy", "--backend", "fake", *QUICK, "--set", "accuracy.score=false")
    assert run.returncode == 0, run.stderr[-3000:]
    assert not (run.run_dir / "accuracy.txt").exists()
    assert "accuracy" not in run.json("summary.json")
    assert (run.run_dir / "mlperf_log_accuracy.json").stat().st_size > 0
