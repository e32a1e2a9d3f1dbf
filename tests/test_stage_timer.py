"""StageTimer: contiguous stages that add up to the batch, per-step times, no-op when disabled."""

from __future__ import annotations

import time

from backends.stage_timer import StageTimer
from harness.measure.stage_stats import summarise_stages


def test_stages_are_contiguous_and_add_up() -> None:
    t = StageTimer(enabled=True)
    start = time.perf_counter_ns()
    t.start("text_encode")
    time.sleep(0.01)
    t.mark("denoise")
    for _ in range(3):
        time.sleep(0.005)
        t.step()
    t.mark("vae_decode")
    time.sleep(0.01)
    t.mark("to_uint8")
    stages, steps = t.finish()
    wall = time.perf_counter_ns() - start
    assert list(stages) == ["text_encode", "denoise", "vae_decode", "to_uint8"]
    assert len(steps) == 3 and all(s >= 4_000_000 for s in steps)
    assert abs(sum(steps) - stages["denoise"]) < 2_000_000  # the steps fill the denoise stage
    assert sum(stages.values()) <= wall and wall - sum(stages.values()) < 2_000_000
    assert stages["text_encode"] >= 9_000_000


def test_disabled_timer_records_nothing() -> None:
    t = StageTimer(enabled=False)
    t.start("a")
    t.mark("b")
    t.step()
    assert t.finish() == ({}, ())


def test_summary_reports_percentiles_steps_and_the_share_outside_the_backend() -> None:
    out = summarise_stages(
        batch_stages=[{"denoise": 8_000_000, "vae_decode": 2_000_000}] * 4,
        steps_ns=[1_000_000] * 32,
        batch_times_ns=[10_000_000] * 4,
        handback_ns=[50_000] * 4,
        run_wall_s=0.05,
        workers=1,
    )
    assert out["stages"]["denoise"]["total_ms"] == 32.0 and out["stages"]["denoise"]["p50_ms"] == 8.0
    assert out["steps"]["count"] == 32 and out["steps"]["mean_ms"] == 1.0
    assert out["backend_busy_s"] == 0.04
    assert out["outside_backend_share"] == 0.2
    assert "handback" in out["stages"]


def test_a_tiny_run_reports_where_its_time_went(run_cli_in_process) -> None:
    run = run_cli_in_process(
        "--set",
        "loadgen.min_duration_ms=1000",
        "--set",
        "loadgen.min_query_count=16",
        "--set",
        "loadgen.offline_expected_qps=4",
        "--set",
        "sut.batch_size=4",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    s = run.summary()
    timing = s["timing"]
    batches = sum(s["batch_sizes"].values())
    assert list(timing["stages"])[:4] == ["text_encode", "denoise", "vae_decode", "to_uint8"]
    assert timing["steps"]["count"] == batches * 8  # tiny.toml: 8 steps per batch
    # The backend's stages cover its batch time (what the SUT measured around worker.run).
    stage_total = sum(v["total_ms"] for k, v in timing["stages"].items() if k != "handback")
    busy_ms = timing["backend_busy_s"] * 1000
    assert 0.95 * busy_ms <= stage_total <= busy_ms * 1.001 + 1
    assert 0 <= timing["outside_backend_share"] < 1
    assert "where the time went" in run.stdout


def test_stage_timing_can_be_turned_off(run_cli_in_process) -> None:
    run = run_cli_in_process(
        "--set",
        "backend.stage_timing=false",
        "--set",
        "loadgen.min_duration_ms=500",
        "--set",
        "loadgen.min_query_count=8",
        "--set",
        "loadgen.offline_expected_qps=4",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    timing = run.summary()["timing"]
    assert set(timing["stages"]) <= {"handback"} and timing["steps"]["count"] == 0
