"""StageTimer: contiguous stages that add up to the batch, per-step times, no-op when disabled."""

from __future__ import annotations

import time

from backends.stage_timer import StageTimer
from harness.stage_stats import summarise_stages


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
