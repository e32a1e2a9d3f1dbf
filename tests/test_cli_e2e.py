"""The real CLI, reading the LoadGen logs it wrote: `python -m harness` in a subprocess where only a
child process shows it (the entry point itself, a run that ends with LoadGen still running, a user.conf,
Ctrl-C), the CLI's main() in this process for the rest (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backends.fake import FakeBackend
from harness.data.prompts import load_prompts
from harness.run.cuda_allocator import apply_default_allocator_settings

SCENARIOS = ["SingleStream", "Offline", "Server"]
# Short development runs: a few seconds each on 2 cores.
QUICK = [
    "--set",
    "loadgen.min_duration_ms=1500",
    "--set",
    "loadgen.min_query_count=8",
    "--set",
    "loadgen.offline_expected_qps=4",
    "--set",
    "loadgen.server_target_qps=20",
]


def _check_run_dir(run, scenario: str, mode: str, backend: str) -> dict:
    assert run.returncode == 0, run.stderr[-3000:]
    d = run.run_dir
    assert d.name.endswith(f"-tiny-{backend}-{scenario}-{mode}")
    for name in (
        "config.toml",
        "manifest.json",
        "summary.json",
        "mlperf_log_detail.txt",
        "mlperf_log_summary.txt",
        "harness.log",
    ):
        assert (d / name).is_file(), name
    summary = run.summary()
    assert summary["status"] == "ok"
    assert (summary["scenario"], summary["mode"], summary["backend"]) == (scenario, mode, backend)
    assert summary["valid_for_submission"] is False
    assert any("development model" in b for b in summary["submission_blockers"])
    assert summary["loadgen"]["errors"] == []
    detail = run.detail_log()
    assert f'"value": "{scenario}"' in detail  # LoadGen logged the scenario it ran
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["loadgen"]["version"] and manifest["loadgen"]["seeds"]["qsl_rng_seed"]
    assert manifest["libraries"]["mlcommons-loadgen"]
    assert manifest["git"]["commit"]
    # Every sample LoadGen counted went through the batcher within its limits.
    sizes = {int(k): v for k, v in summary["batch_sizes"].items()}
    limit = {"SingleStream": 1, "Offline": 8, "Server": 8}[scenario]
    assert sizes and max(sizes) <= limit
    assert sum(k * v for k, v in sizes.items()) == summary["samples_completed"]
    return summary


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_performance_runs_on_the_tiny_model(run_cli, run_cli_in_process, scenario: str) -> None:
    # `python -m harness` itself for one scenario; main() in this process for the others
    run = (run_cli if scenario == "SingleStream" else run_cli_in_process)("--scenario", scenario, *QUICK)
    summary = _check_run_dir(run, scenario, "performance", "diffusers-eager")
    assert summary["samples_per_second"] > 0
    lat = summary["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert summary["query_count"] >= 1
    assert "samples/s" in run.stdout  # the summary table
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["model"]["weights"]["sha256"]
    assert manifest["backend"]["device"] == "cpu"
    # `python -m harness` starts with the allocator default unless the caller set one; the manifest has it.
    expected = dict(os.environ)
    apply_default_allocator_settings(expected)
    assert manifest["environment"].get("PYTORCH_CUDA_ALLOC_CONF") == expected.get("PYTORCH_CUDA_ALLOC_CONF")


# Offline in the default run; SingleStream and Server (same accuracy path, other batching) in the slow set.
@pytest.mark.parametrize(
    "scenario", ["Offline", *(pytest.param(s, marks=pytest.mark.slow) for s in SCENARIOS if s != "Offline")]
)
def test_accuracy_runs_on_the_tiny_model(run_cli_in_process, scenario: str) -> None:
    run = run_cli_in_process("--scenario", scenario, "--mode", "accuracy", "--set", "dataset.count=6", *QUICK)
    summary = _check_run_dir(run, scenario, "accuracy", "diffusers-eager")
    log = json.loads((run.run_dir / "mlperf_log_accuracy.json").read_text())
    assert sorted({e["qsl_idx"] for e in log}) == list(range(6))  # every sample, once or more
    pngs = sorted((run.run_dir / "images").glob("sample_*.png"))
    assert len(pngs) == 4
    # The PNG and the bytes LoadGen logged are the same image.
    entry = next(e for e in log if e["qsl_idx"] == 0)
    logged = np.frombuffer(bytes.fromhex(entry["data"]), dtype=np.uint8).reshape(64, 64, 3)
    assert np.array_equal(np.asarray(Image.open(run.run_dir / "images" / "sample_00000.png")), logged)
    assert summary["samples_completed"] >= 6


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("mode", ["performance", "accuracy"])
def test_fake_backend_runs_every_scenario_and_mode(run_cli_in_process, scenario: str, mode: str) -> None:
    run = run_cli_in_process(
        "--backend",
        "fake",
        "--scenario",
        scenario,
        "--mode",
        mode,
        "--set",
        "backend.latency_ms=2",
        *QUICK,
        "--set",
        "loadgen.single_stream_expected_latency_ns=2000000",
        # the scorer has its own tests (test_accuracy_*); here the LoadGen side of accuracy mode
        "--set",
        "accuracy.score=false",
    )
    _check_run_dir(run, scenario, mode, "fake")
    if mode == "accuracy":
        log = json.loads((run.run_dir / "mlperf_log_accuracy.json").read_text())
        for entry in log[:5]:
            img = np.frombuffer(bytes.fromhex(entry["data"]), dtype=np.uint8).reshape(64, 64, 3)
            assert np.array_equal(img, FakeBackend.image_for(entry["qsl_idx"], 64, 64))


def test_server_batches_queued_queries(run_cli_in_process) -> None:
    # 40 queries/s against a backend that needs 50 ms a call: queries queue and get batched.
    run = run_cli_in_process(
        "--backend",
        "fake",
        "--scenario",
        "Server",
        "--set",
        "backend.latency_ms=50",
        "--set",
        "loadgen.server_target_qps=40",
        "--set",
        "loadgen.min_duration_ms=2000",
        "--set",
        "loadgen.min_query_count=40",
        "--set",
        "sut.max_wait_ms=20",
    )
    summary = _check_run_dir(run, "Server", "performance", "fake")
    assert max(int(k) for k in summary["batch_sizes"]) > 1
    # queueing in the SUT apart from generation: a batch takes the backend's 50 ms, the wait is the rest
    batch, queued = summary["harness"]["batch_time_ms"], summary["harness"]["queue_delay_ms"]
    assert 50 <= batch["p50"] < summary["latency_ms"]["p50"] and queued["p50"] > 0
    assert "queueing / generation ms p50/p99" in run.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_raising_backend_ends_the_run_promptly(run_cli, scenario: str) -> None:
    # a child process: LoadGen is still running when the run gives up, so the CLI exits the process hard
    start = time.monotonic()
    run = run_cli(
        "--backend",
        "fake",
        "--scenario",
        scenario,
        "--set",
        "backend.fail_at_call=3",
        "--set",
        "backend.latency_ms=5",
        "--set",
        "loadgen.min_duration_ms=60000",
        "--set",
        "loadgen.min_query_count=100000",
        "--set",
        "sut.drain_timeout_s=2",
    )
    elapsed = time.monotonic() - start
    assert run.returncode == 1
    assert elapsed < 30
    assert "backend 'fake'" in run.stderr and "injected failure on call 3" in run.stderr
    assert "failed on samples [" in run.stderr
    summary = run.summary()
    assert summary["status"] == "failed"
    assert summary["failure"]["backend"] == "fake" and summary["failure"]["sample_indices"]
    assert (run.run_dir / "mlperf_log_detail.txt").stat().st_size > 0  # logs kept


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "nope"], "unknown backend 'nope'; choose one of:"),
        (["--set", "model.stepz=3"], "unknown config key 'model.stepz'"),
        (["--set", "model.steps=abc"], "must be an integer"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--model-path", "/no/such/folder"], "model folder '/no/such/folder' does not exist"),
        (["--set", "backend.device=cuda:0"], "cuda"),
        (["--set", "loadgen.min_durration_ms=1"], "unknown LoadGen setting"),
        (["--set", "dataset.path=prompts.txt"], ".toml"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(run_cli_in_process, args: list[str], message: str) -> None:
    run = run_cli_in_process(*args)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], run.stderr[-2000:]
    assert "Traceback" not in run.stderr


def test_argparse_rejects_an_unknown_scenario(run_cli_in_process) -> None:
    run = run_cli_in_process("--scenario", "MultiStream")
    assert run.returncode == 2 and "invalid choice: 'MultiStream'" in run.stderr


def test_user_conf_is_applied_without_loadgen_errors(run_cli, tmp_path: Path) -> None:
    conf = tmp_path / "user.conf"
    conf.write_text("*.Offline.min_query_count = 24\n")
    # a child process: LoadGen counts user.conf files per process ("Multiple conf files" after the first)
    run = run_cli("--backend", "fake", "--user-conf", str(conf), "--set", "loadgen.min_duration_ms=500")
    summary = _check_run_dir(run, "Offline", "performance", "fake")
    assert summary["samples_completed"] >= 24
    assert "Multiple conf files" not in run.detail_log()


def test_an_audit_config_in_the_cwd_is_not_picked_up(run_cli_in_process, tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    (work / "audit.config").write_text("*.*.mode = 2\n*.*.accuracy_log_sampling_target = 1000\n")
    run = run_cli_in_process("--backend", "fake", *QUICK, cwd=work)
    _check_run_dir(run, "Offline", "performance", "fake")
    assert "Found Audit Config file" not in run.detail_log()


def test_ctrl_c_keeps_the_logs_and_exits_130(harness_cache: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "runs"
    env = dict(os.environ, HARNESS_CACHE_DIR=str(harness_cache))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "--backend",
            "fake",
            "--scenario",
            "SingleStream",
            "--output-dir",
            str(out),
            "--no-progress",
            "--set",
            "backend.latency_ms=20",
            "--set",
            "loadgen.min_duration_ms=120000",
            "--set",
            "loadgen.min_query_count=100000",
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
    run_dir = next(p for p in out.iterdir() if p.is_dir())  # out/ also holds history.sqlite
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["samples_completed"] > 0
    assert (run_dir / "mlperf_log_detail.txt").stat().st_size > 0


def test_mlperf_captions_feed_the_qsl(run_cli_in_process) -> None:
    from tests.conftest import SHARED

    tsv = SHARED / "data" / "mlperf-sdxl" / "captions_source.tsv"
    if not tsv.is_file():
        pytest.skip(f"needs the shared MLPerf captions at {tsv}")
    run = run_cli_in_process(
        "--backend", "fake", "--mode", "accuracy", "--set", f"dataset.path={tsv}", "--set", "dataset.count=12", *QUICK
    )
    _check_run_dir(run, "Offline", "accuracy", "fake")
    log = json.loads((run.run_dir / "mlperf_log_accuracy.json").read_text())
    assert sorted({e["qsl_idx"] for e in log}) == list(range(12))
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["prompts"]["source"].endswith("captions_source.tsv")
    assert manifest["prompts"]["count"] == 12


def test_backends_are_imported_only_when_chosen() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from backends.registry import backend_class; backend_class('fake'); "
        "print('diffusers' in sys.modules, 'torch' in sys.modules)"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_backend_option_the_backend_refuses_is_bad_input(run_cli_in_process) -> None:
    run = run_cli_in_process("--set", "backend.dtype=float8")
    assert run.returncode == 2
    assert "dtype 'float8' is not supported" in run.stderr and "Traceback" not in run.stderr


def test_accuracy_mode_saves_the_first_images_of_each_category(run_cli_in_process) -> None:
    run = run_cli_in_process(
        *("--backend", "fake", "--mode", "accuracy", "--set", "accuracy.score=false"),
        *("--set", "dataset.count=24", "--set", "accuracy.sample_images=2"),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    categories = load_prompts("", "").categories[:24]
    expected = [i for i in range(24) if categories[:i].count(categories[i]) < 2]
    assert len({categories[i] for i in expected}) >= 3  # the first 24 prompts span several categories
    saved = sorted(int(p.stem.removeprefix("sample_")) for p in (run.run_dir / "images").glob("sample_*.png"))
    assert saved == expected
