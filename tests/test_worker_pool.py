"""Worker processes behind one batcher: every scenario runs, images do not depend on the worker,
and a worker that raises or dies ends the run promptly (or, with retries, hands its batch on)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from backends.diffusers_eager import DiffusersEagerOptions
from harness.config import resolve_config
from harness.run.benchmark import _pretokenize_at_load
from harness.run.model import prepare_inputs
from harness.workers.process_pool import ProcessWorker, WorkerSpec, cpu_slices

SHORT = [
    "--set",
    "loadgen.min_duration_ms=1500",
    "--set",
    "loadgen.min_query_count=16",
    "--set",
    "loadgen.server_target_qps=40",
    "--set",
    "loadgen.offline_expected_qps=20",
    "--set",
    "loadgen.single_stream_expected_latency_ns=5000000",
    "--set",
    "backend.latency_ms=5",
]


@pytest.mark.parametrize("scenario", ["SingleStream", "Offline", "Server"])
def test_two_worker_processes_run_every_scenario(run_cli_in_process, scenario: str) -> None:
    run = run_cli_in_process("--backend", "fake", "--scenario", scenario, "--set", "workers.count=2", *SHORT)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = run.summary()
    assert summary["status"] == "ok" and summary["loadgen"]["errors"] == []
    names = {w["name"] for w in summary["workers"]}
    assert names <= {"worker-0", "worker-1"} and names
    if scenario != "SingleStream":  # SingleStream keeps one query in flight: one worker may do it all
        assert names == {"worker-0", "worker-1"}
    assert sum(w["samples"] for w in summary["workers"]) == summary["samples_completed"]
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert [w["worker"] for w in manifest["workers"]] == ["worker-0", "worker-1"]
    assert all(w["pid"] for w in manifest["workers"])


def _accuracy_images(run) -> dict[int, bytes]:
    log = json.loads((run.run_dir / "mlperf_log_accuracy.json").read_text())
    return {e["qsl_idx"]: bytes.fromhex(e["data"]) for e in log}


@pytest.mark.slow  # three runs of the tiny model; two-worker runs stay in the default set below
def test_images_are_the_same_with_one_and_two_workers(run_cli_in_process) -> None:
    args = [
        "--mode",
        "accuracy",
        "--set",
        "dataset.count=6",
        "--set",
        "sut.batch_size=2",
        "--set",
        "latents.mode=per-sample",
    ]
    one = run_cli_in_process(*args)
    two = run_cli_in_process(*args, "--set", "workers.count=2")
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _accuracy_images(one), _accuracy_images(two)
    assert sorted(a) == sorted(b) == list(range(6))
    assert {w["name"] for w in two.summary()["workers"]} == {"worker-0", "worker-1"}
    # both tokenized at load time: in the harness process, and through worker-0 of the pool
    assert one.summary()["harness"]["pretokenized_samples"] == two.summary()["harness"]["pretokenized_samples"] == 6
    for idx in a:
        assert a[idx] == b[idx], f"sample {idx} differs between 1 and 2 workers"
    # and the images are real (not all equal), so the comparison means something
    arrays = [np.frombuffer(a[i], np.uint8) for i in range(6)]
    assert any(not np.array_equal(arrays[0], x) for x in arrays[1:])


def test_a_dying_worker_ends_the_run_promptly(run_cli) -> None:
    # a child process: LoadGen is still running when the run gives up, so the CLI exits the process hard
    start = time.monotonic()
    run = run_cli(
        "--backend",
        "fake",
        "--scenario",
        "Server",
        "--set",
        "workers.count=2",
        "--set",
        "backend.exit_at_call=2",
        "--set",
        "backend.only_worker=worker-1",
        "--set",
        "sut.drain_timeout_s=2",
        *SHORT,
        "--set",
        "loadgen.min_duration_ms=60000",
    )
    assert run.returncode == 1
    assert time.monotonic() - start < 40
    assert "worker-1" in run.stderr and "WorkerDied" in run.stderr
    summary = run.summary()
    assert summary["status"] == "failed" and summary["failure"]["worker"] == "worker-1"
    assert summary["failure"]["sample_indices"]


def test_a_raising_worker_reports_the_remote_error(run_cli) -> None:
    # a child process: a failed run may end with LoadGen still running (the CLI then exits the process hard)
    run = run_cli(
        "--backend",
        "fake",
        "--scenario",
        "Server",
        "--set",
        "workers.count=2",
        "--set",
        "backend.fail_at_call=2",
        "--set",
        "backend.only_worker=worker-0",
        "--set",
        "sut.drain_timeout_s=2",
        *SHORT,
    )
    assert run.returncode == 1
    assert "worker-0" in run.stderr and "injected failure on call 2" in run.stderr
    assert "in generate" in run.summary()["failure"]["traceback"]  # the child's own traceback


def test_retries_send_the_batch_to_another_worker(run_cli_in_process) -> None:
    run = run_cli_in_process(
        "--backend",
        "fake",
        "--set",
        "workers.count=2",
        "--set",
        "backend.exit_at_call=2",
        "--set",
        "backend.only_worker=worker-1",
        "--set",
        "workers.retries=1",
        *SHORT,
        # One sample per batch, 50 ms each: while worker-0 is busy, worker-1 must take batches.
        "--set",
        "sut.batch_size=1",
        "--set",
        "backend.latency_ms=50",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = run.summary()
    assert summary["status"] == "ok"
    assert len(summary["retried_failures"]) == 1
    assert summary["retried_failures"][0]["worker"] == "worker-1"
    assert summary["samples_completed"] == sum(w["samples"] for w in summary["workers"])


@pytest.mark.slow  # 27 s: two worker processes import the stack; dying and raising workers stay in the default set
def test_a_worker_that_cannot_load_is_bad_input(run_cli, tmp_path: Path) -> None:
    # A model folder that passes the parent's checks (it has a model_index.json) but that diffusers cannot
    # load: the refusal comes from the workers' load. (A CUDA device this machine lacks is refused earlier,
    # by the parent's configuration check.)
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}'
    )
    run = run_cli("--model-path", str(folder), "--set", "workers.count=2")
    assert run.returncode == 2
    line = [ln for ln in run.stderr.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "could not load backend 'diffusers-eager'" in line[0] and str(folder) in line[0]


def test_cpu_slices_split_the_cores() -> None:
    assert cpu_slices(1, [0, 1]) == [(0,)]  # one core kept for LoadGen
    assert cpu_slices(2, [0, 1]) == [(0,), (1,)]
    assert cpu_slices(2, [0, 1, 2, 3, 4]) == [(0, 1), (2, 3)]
    assert cpu_slices(3, [0, 1]) == [(0,), (1,), (0,)]


def test_a_worker_process_pretokenizes_for_the_qsl(harness_cache) -> None:
    """With worker processes the QSL still tokenizes at load time (through worker-0, outside the timed
    path) and the ids travel with each batch; the images equal those made from the prompt text."""
    cfg = resolve_config("tiny", sets=["backend.num_threads=1"])
    inputs = prepare_inputs(cfg)
    assert inputs.spec.pretokenize  # tiny.toml asks for it
    worker = ProcessWorker(WorkerSpec("diffusers-eager", inputs.spec, DiffusersEagerOptions(num_threads=1), None), "w0")
    worker.start()
    try:
        worker.wait_ready(300)
        _pretokenize_at_load(inputs.qsl, [worker])
        inputs.qsl.load_samples([0, 1])
        with_ids = inputs.qsl.batch([0, 1])
        assert len(with_ids.encoded) == 2 and with_ids.encoded[0]["ids"]
        text_only = replace(with_ids, encoded=())
        np.testing.assert_array_equal(worker.run(with_ids).images, worker.run(text_only).images)
    finally:
        worker.close()
