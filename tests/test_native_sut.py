"""The native SUT (native/sut/, harness/sut/native_sut.py) against the Python SUT: the same run once with
sut.kind=python and once with sut.kind=native must give the same verdict, the same batches, the same
accuracy log byte for byte, and fail or stop the same way.

Tests that run the native SUT skip only where it is not built (the reason is the one sut.kind=native
would refuse with); in CI it is built. The C++ batcher and core have their own unit tests under ctest
(native/sut/tests/)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.sut.choice import choose_sut, native_core

KINDS = ("python", "native")
_CORE, _WHY_NOT = native_core()
needs_native = pytest.mark.skipif(_CORE is None, reason=f"native SUT not available: {_WHY_NOT}")

# Short development runs on the fake backend (as tests/test_cli_e2e.py's QUICK): a few seconds each.
QUICK = [
    *("--backend", "fake", "--set", "backend.latency_ms=2"),
    *("--set", "loadgen.min_duration_ms=1500", "--set", "loadgen.min_query_count=8"),
    *("--set", "loadgen.offline_expected_qps=4", "--set", "loadgen.server_target_qps=20"),
    *("--set", "loadgen.single_stream_expected_latency_ns=2000000"),
]


def _run_both(run_cli_in_process, *args: str) -> dict[str, object]:
    runs = {}
    for kind in KINDS:
        run = run_cli_in_process(*args, "--set", f"sut.kind={kind}")
        assert run.returncode == 0, run.stderr[-3000:]
        manifest = json.loads((run.run_dir / "manifest.json").read_text())
        assert manifest["sut"]["kind"] == kind and manifest["sut"]["requested"] == kind
        runs[kind] = run
    return runs


def _completion_order(run_dir: Path) -> list[int]:
    """Sample indices in the order the SUT answered them (sample_latencies.csv)."""
    lines = (run_dir / "sample_latencies.csv").read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines]


def test_sut_kind_python_never_needs_the_native_core() -> None:
    assert choose_sut("python").kind == "python"


@needs_native
def test_auto_picks_the_native_sut_where_it_is_built() -> None:
    choice = choose_sut("auto")
    assert choice.kind == "native" and "source build" in choice.reason


@needs_native
def test_the_core_stamps_queries_on_the_clock_of_perf_counter_ns() -> None:
    # queue delays subtract the core's enqueue stamps from the worker's time.perf_counter_ns()
    before = time.perf_counter_ns()
    stamp = _CORE.now_ns()  # type: ignore[union-attr]
    after = time.perf_counter_ns()
    assert before <= stamp <= after


@needs_native
def test_the_core_without_loadgen_closes_and_refuses_bad_policies() -> None:
    core = _CORE.SutCore(4, 1_000_000)  # type: ignore[union-attr]
    assert (core.max_batch_size, core.max_wait_ns, core.issued, core.completed, core.pending) == (4, 1_000_000, 0, 0, 0)
    assert isinstance(core.handle(), int) and core.handle() != 0
    core.abort()  # nothing queued: nothing answered
    assert core.aborted and core.completed == 0
    core.close()
    assert core.next_batch() is None  # closed and empty: a worker ends at once
    with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
        _CORE.SutCore(0)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="max_wait_ns must be >= 0"):
        _CORE.SutCore(1, -1)  # type: ignore[union-attr]


def test_native_where_unavailable_is_one_line_and_exit_code_2(run_cli_in_process, monkeypatch) -> None:
    import harness.sut.choice as choice

    monkeypatch.setattr(choice, "native_core", lambda: (None, "the native SUT core is not built: test"))
    start = time.monotonic()
    run = run_cli_in_process("--backend", "fake", "--set", "sut.kind=native")
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "sut.kind=native is not available here" in lines[0], run.stderr[-2000:]
    assert "not built: test" in lines[0] and "Traceback" not in run.stderr
    assert run.run_dir is None or not (run.run_dir / "manifest.json").exists()  # refused before the model loads
    assert time.monotonic() - start < 10
    # auto falls back to the Python SUT, and says why
    fallback = choice.choose_sut("auto")
    assert fallback.kind == "python" and "not built" in fallback.reason


@needs_native
def test_offline_same_verdict_and_same_batches(run_cli_in_process) -> None:
    runs = _run_both(run_cli_in_process, "--scenario", "Offline", *QUICK, "--set", "sut.batch_size=4")
    py, nat = (runs[k].summary() for k in KINDS)  # type: ignore[attr-defined]
    for s in (py, nat):
        assert s["status"] == "ok" and s["loadgen"]["errors"] == []
    assert py["loadgen"]["result_validity"] == nat["loadgen"]["result_validity"]
    # Offline: LoadGen issues every sample in one call, in its seeded order; one worker takes batches of 4
    # in that order, so both SUTs form the same batches and answer the samples in the same order.
    assert py["batch_sizes"] == nat["batch_sizes"] and max(int(k) for k in nat["batch_sizes"]) == 4
    assert py["samples_completed"] == nat["samples_completed"] == nat["samples_generated"]
    assert _completion_order(runs["python"].run_dir) == _completion_order(runs["native"].run_dir)  # type: ignore[attr-defined]
    # the native SUT fills the same statistics
    for key in ("queue_delay_ms", "batch_time_ms"):
        assert set(nat["harness"][key]) == set(py["harness"][key]) and nat["harness"][key]["p50"] >= 0
    assert [w["samples"] for w in nat["workers"]] == [w["samples"] for w in py["workers"]]
    assert nat["workers"][0]["busy_s"] > 0
    assert set(nat["timing"]["stages"]) == set(py["timing"]["stages"]) and "handback" in nat["timing"]["stages"]
    assert len(_completion_order(runs["native"].run_dir)) == nat["samples_generated"]  # type: ignore[attr-defined]


@needs_native
def test_accuracy_log_is_byte_identical(run_cli_in_process) -> None:
    runs = _run_both(
        run_cli_in_process,
        *("--scenario", "Offline", "--mode", "accuracy", "--set", "dataset.count=10", "--set", "sut.batch_size=4"),
        *QUICK,
        *("--set", "accuracy.score=false"),
    )
    logs = {k: (runs[k].run_dir / "mlperf_log_accuracy.json").read_bytes() for k in KINDS}  # type: ignore[attr-defined]
    entries = json.loads(logs["native"])
    assert sorted({e["qsl_idx"] for e in entries}) == list(range(10))
    assert logs["python"] == logs["native"]
    # the image hook ran in both: the same PNGs
    pngs = {k: sorted(p.name for p in (runs[k].run_dir / "images").glob("*.png")) for k in KINDS}  # type: ignore[attr-defined]
    assert pngs["python"] == pngs["native"] and pngs["native"]


@needs_native
@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["SingleStream", "Server"])
def test_single_stream_and_server_same_verdict(run_cli_in_process, scenario: str) -> None:
    runs = _run_both(run_cli_in_process, "--scenario", scenario, *QUICK)
    py, nat = (runs[k].summary() for k in KINDS)  # type: ignore[attr-defined]
    assert nat["status"] == "ok" and nat["loadgen"]["errors"] == []
    assert py["loadgen"]["result_validity"] == nat["loadgen"]["result_validity"]
    limit = 1 if scenario == "SingleStream" else 8
    assert max(int(k) for k in nat["batch_sizes"]) <= limit
    assert sum(int(k) * v for k, v in nat["batch_sizes"].items()) == nat["samples_completed"]
    lat = nat["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]


@needs_native
@pytest.mark.slow
def test_server_batches_queued_queries_natively(run_cli_in_process) -> None:
    # tests/test_cli_e2e.py's test_server_batches_queued_queries with the native SUT: 40 queries/s against
    # a backend that needs 50 ms a call; the C++ batcher's max wait forms batches larger than 1.
    run = run_cli_in_process(
        *("--backend", "fake", "--scenario", "Server", "--set", "backend.latency_ms=50"),
        *("--set", "loadgen.server_target_qps=40", "--set", "loadgen.min_duration_ms=2000"),
        *("--set", "loadgen.min_query_count=40", "--set", "sut.max_wait_ms=20", "--set", "sut.kind=native"),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = run.summary()
    assert max(int(k) for k in summary["batch_sizes"]) > 1
    batch, queued = summary["harness"]["batch_time_ms"], summary["harness"]["queue_delay_ms"]
    assert 50 <= batch["p50"] < summary["latency_ms"]["p50"] and queued["p50"] > 0


@needs_native
def test_a_raising_backend_fails_both_runs_the_same_way(run_cli_in_process) -> None:
    # Offline with few samples: after the failure every query is answered empty (queued ones by abort, the
    # rest on arrival), LoadGen finishes, and both SUTs report the same failure with nothing unanswered.
    args = ("--scenario", "Offline", *QUICK, "--set", "backend.fail_at_call=3", "--set", "sut.batch_size=2")
    summaries = {}
    for kind in KINDS:
        run = run_cli_in_process(*args, "--set", f"sut.kind={kind}")
        assert run.returncode == 1, run.stderr[-3000:]
        assert "injected failure on call 3" in run.stderr
        summaries[kind] = run.summary()
    py, nat = summaries["python"], summaries["native"]
    assert nat["status"] == py["status"] == "failed"
    assert nat["failure"]["sample_indices"] == py["failure"]["sample_indices"]
    assert nat["batch_sizes"] == py["batch_sizes"] == {"2": 2}  # two batches ran before the failure
    assert nat["samples_completed"] == py["samples_completed"] > 4  # every issued query was answered


@needs_native
@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["Offline", "SingleStream", "Server"])
def test_a_raising_backend_ends_the_native_run_promptly(run_cli, scenario: str) -> None:
    # tests/test_cli_e2e.py's test with sut.kind=native: the failing batch is answered empty, every later
    # query on arrival in C++, and the run ends with the failure (LoadGen still running: a hard exit)
    start = time.monotonic()
    run = run_cli(
        *("--backend", "fake", "--scenario", scenario, "--set", "sut.kind=native"),
        *("--set", "backend.fail_at_call=3", "--set", "backend.latency_ms=5"),
        *("--set", "loadgen.min_duration_ms=60000", "--set", "loadgen.min_query_count=100000"),
        *("--set", "sut.drain_timeout_s=2"),
    )
    assert run.returncode == 1, run.stderr[-3000:]
    assert time.monotonic() - start < 30
    assert "backend 'fake'" in run.stderr and "injected failure on call 3" in run.stderr
    assert "Segmentation fault" not in run.stderr and "core dumped" not in run.stderr
    summary = run.summary()
    assert summary["status"] == "failed"
    assert summary["failure"]["backend"] == "fake" and summary["failure"]["sample_indices"]
    assert (run.run_dir / "mlperf_log_detail.txt").stat().st_size > 0
    assert json.loads((run.run_dir / "manifest.json").read_text())["sut"]["kind"] == "native"


@needs_native
@pytest.mark.slow
def test_retries_send_the_batch_to_another_worker_natively(run_cli_in_process) -> None:
    # tests/test_worker_pool.py's retry test with sut.kind=native: worker-1's process dies on its second
    # batch, the batch is requeued at the head of the C++ queue and worker-0 runs it; the run ends ok.
    run = run_cli_in_process(
        *("--backend", "fake", "--set", "sut.kind=native", "--set", "workers.count=2"),
        *("--set", "backend.exit_at_call=2", "--set", "backend.only_worker=worker-1", "--set", "workers.retries=1"),
        *("--set", "loadgen.min_duration_ms=1500", "--set", "loadgen.min_query_count=16"),
        *("--set", "loadgen.offline_expected_qps=20"),
        # One sample per batch, 50 ms each: while worker-0 is busy, worker-1 must take batches.
        *("--set", "sut.batch_size=1", "--set", "backend.latency_ms=50"),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = run.summary()
    assert summary["status"] == "ok" and len(summary["retried_failures"]) == 1
    assert summary["retried_failures"][0]["worker"] == "worker-1"
    assert summary["samples_completed"] == sum(w["samples"] for w in summary["workers"])


@needs_native
@pytest.mark.slow
def test_ctrl_c_keeps_the_logs_with_the_native_sut(harness_cache: Path, tmp_path: Path) -> None:
    # tests/test_cli_e2e.py's test_ctrl_c_keeps_the_logs_and_exits_130 with sut.kind=native
    out = tmp_path / "runs"
    env = dict(os.environ, HARNESS_CACHE_DIR=str(harness_cache))
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "harness", "--backend", "fake", "--scenario", "SingleStream"),
            *("--output-dir", str(out), "--no-progress", "--set", "sut.kind=native"),
            *("--set", "backend.latency_ms=20", "--set", "loadgen.min_duration_ms=120000"),
            *("--set", "loadgen.min_query_count=100000"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until LoadGen is issuing queries
        logs = list(out.glob("*/mlperf_log_detail.txt"))
        if logs and logs[0].stat().st_size > 0 and list(out.glob("*/manifest.json")):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the run did not stop within 30 s of Ctrl-C") from None
    assert proc.returncode == 130, stderr[-2000:]
    run_dir = next(p for p in out.iterdir() if p.is_dir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["samples_completed"] > 0
    assert (run_dir / "mlperf_log_detail.txt").stat().st_size > 0
    assert json.loads((run_dir / "manifest.json").read_text())["sut"]["kind"] == "native"
