"""Traces on demand: torch.profiler Chrome traces with the stage names, LoadGen's trace, the manifest."""

from __future__ import annotations

import json

import pytest
import torch

from backends.stage_timer import StageTimer, set_annotations

FAST = [
    "--set",
    "loadgen.min_duration_ms=300",
    "--set",
    "loadgen.min_query_count=24",
    "--set",
    "loadgen.offline_expected_qps=4",
]
STAGES = ["text_encode", "denoise", "vae_decode", "to_uint8"]


def _event_names(path) -> set[str]:
    trace = json.loads(path.read_text())  # valid JSON, as Perfetto and chrome://tracing read it
    return {e.get("name") for e in trace["traceEvents"]}


def test_the_stage_timer_names_its_stages_in_a_profiler_trace() -> None:
    assert not StageTimer(False).active  # nothing listens by default: backends install no hooks
    set_annotations(profiler=True)
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            t = StageTimer(False)
            assert t.active
            t.start("text_encode")
            torch.ones(4).sum()
            t.mark("denoise")
            t.mark("vae_decode")
            assert t.finish() == ({}, ())  # ranges without timing
    finally:
        set_annotations(profiler=False)
    assert {"text_encode", "denoise", "vae_decode"} <= {e.name for e in prof.events()}


def test_a_trace_of_the_first_batches_with_stage_names_and_the_manifest_says_so(run_cli_in_process) -> None:
    # 24 samples in batches of 8: the run ends before 10 batches, so the trace is written at its end (on
    # the worker's thread), and the warm time-to-first-image call after the run is not traced again.
    run = run_cli_in_process(*FAST, "--set", "profile.trace=true", "--set", "profile.trace_batches=10")
    assert run.returncode == 0, run.stderr[-3000:]
    trace = run.run_dir / "profile" / "trace-worker-0.json"
    assert set(STAGES) <= _event_names(trace)
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["profile"]["trace"] is True and manifest["profile"]["trace_batches"] == 10
    assert "wrote" in run.stderr and "(3 batch(es))" in run.stderr
    assert run.summary()["time_to_first_image_s"]["warm"] > 0
    assert manifest["profile"]["nvtx"] is True and manifest["profile"]["loadgen_trace"] is False
    summary = run.summary()
    assert summary["profile"]["traces"] == [str(trace)]
    assert summary["profile"]["loadgen_trace"] is None
    assert not (run.run_dir / "mlperf_log_trace.json").exists()


def test_off_by_default_and_the_loadgen_trace_on_demand(run_cli_in_process) -> None:
    run = run_cli_in_process(*FAST, "--set", "profile.loadgen_trace=true")
    assert run.returncode == 0, run.stderr[-3000:]
    assert not (run.run_dir / "profile").exists()
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["profile"] == {
        "trace": False,
        "trace_batches": None,
        "trace_folder": None,
        "nvtx": False,
        "loadgen_trace": True,
    }
    loadgen_trace = run.run_dir / "mlperf_log_trace.json"
    assert loadgen_trace.stat().st_size > 0
    assert run.summary()["profile"]["loadgen_trace"] == str(loadgen_trace)


@pytest.mark.slow  # 25 s: a worker pool; the in-process trace test stays in the default set
def test_each_worker_process_writes_its_own_trace(run_cli_in_process) -> None:
    run = run_cli_in_process(
        *FAST, "--set", "profile.trace=true", "--set", "profile.trace_batches=1", "--set", "workers.count=2"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("worker-0", "worker-1"):
        assert set(STAGES) <= _event_names(run.run_dir / "profile" / f"trace-{name}.json")


def test_ray_actors_refuse_a_trace(run_cli_in_process) -> None:
    run = run_cli_in_process("--set", "profile.trace=true", "--set", "workers.ray_address=local")
    assert run.returncode == 2
    assert "not supported with Ray actors" in run.stderr
