"""`python -m harness compare` and its report: parity arithmetic, reading runs, the files it writes."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.studies.compare import build_report, image_parity, make_row, markdown, run_parity, write_chart

ROOT = Path(__file__).resolve().parent.parent


def test_parity_arithmetic() -> None:
    a = np.zeros((2, 2, 2, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0, 0] = 3
    b[1, 1, 1, 2] = 255
    p = image_parity(a, b)
    assert p.samples == 2 and p.max_abs_diff == 255
    assert p.mean_abs_diff == pytest.approx((3 + 255) / 24)
    assert p.psnr_db == pytest.approx(10 * math.log10(255**2 / ((9 + 255**2) / 24)))
    assert p.differing_fraction == pytest.approx(2 / 24)
    same = image_parity(a, a.copy())
    assert same.identical and same.psnr_db is None and same.mean_abs_diff == 0
    with pytest.raises(ValueError, match="shapes differ"):
        image_parity(a, a[:1])


def _fake_accuracy_run(folder: Path, images: dict[int, np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text("[model]\nheight = 2\nwidth = 2\n")
    entries = [
        {"seq_id": i, "qsl_idx": k, "data": img.tobytes().hex().upper()} for i, (k, img) in enumerate(images.items())
    ]
    entries.append({"seq_id": 99, "qsl_idx": 0, "data": "00" * 12})  # a repeat: the first entry counts
    (folder / "mlperf_log_accuracy.json").write_text(json.dumps(entries))
    return folder


def test_run_parity_compares_the_samples_both_runs_logged(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = {k: rng.integers(0, 256, (2, 2, 3), dtype=np.uint8) for k in range(3)}
    ref = _fake_accuracy_run(tmp_path / "ref", imgs)
    changed = {k: v.copy() for k, v in imgs.items() if k != 2}
    changed[1][0, 0, 0] ^= 1
    other = _fake_accuracy_run(tmp_path / "other", changed)
    p = run_parity(ref, other)
    assert p.samples == 2 and p.max_abs_diff == 1 and p.differing_fraction == pytest.approx(1 / 24)


def _row(name: str, sps: float | None, status_ok: bool = True, prompts: str = "abc") -> dict:
    row = make_row(name, None, 0 if status_ok else 1, None if status_ok else "boom", None)
    row.update(samples_per_second=sps, status="ok" if status_ok else "failed", prompts_sha256=prompts)
    row["latency_ms"] = {"p50": 100.0, "p90": 150.0, "p99": 190.0}
    return row


def test_report_speedups_and_input_check(tmp_path: Path) -> None:
    rows = [_row("diffusers-eager", 10.0), _row("torch-compile", 15.0), _row("onnxruntime", None, status_ok=False)]
    rows[1]["setup_s"] = {"compile": 31.5}
    rows[1]["parity"] = {"max_abs_diff": 1, "mean_abs_diff": 4e-5, "psnr_db": 93.8}
    report = build_report(rows, reference="diffusers-eager", model="tiny", scenario="Offline", command=[], sets=[])
    speedups = {r["backend"]: r["speedup"] for r in report["results"]}
    assert speedups == {"diffusers-eager": 1.0, "torch-compile": 1.5, "onnxruntime": None}
    assert report["same_inputs"] is True
    text = markdown(report)
    assert "| `torch-compile` | 15.000 | 1.50x |" in text
    assert "compile 31.5" in text and "1 / 4e-05 / 93.8 dB" in text
    assert "`onnxruntime` failed: boom" in text
    write_chart(report, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Where the time went" not in text  # no stage times, no stage table
    rows[0]["timing"] = {
        "stages": {"denoise": {"mean_ms": 80.0}},
        "steps": {"mean_ms": 10.0},
        "outside_backend_share": 0.02,
    }
    rows[1]["timing"] = {
        "stages": {"text_encode": {"mean_ms": 3.0}, "denoise": {"mean_ms": 40.0}},
        "steps": {"mean_ms": 5.0},
        "outside_backend_share": 0.04,
    }
    text = markdown(
        build_report(rows, reference="diffusers-eager", model="tiny", scenario="Offline", command=[], sets=[])
    )
    assert "| stage | `diffusers-eager` | `torch-compile` |" in text
    assert "| denoise | 80.00 | 40.00 |" in text and "| text_encode | - | 3.00 |" in text
    assert "| one denoising step | 10.00 | 5.00 |" in text and "| 2.0% | 4.0% |" in text
    rows[1]["prompts_sha256"] = "other"
    report = build_report(rows, reference="diffusers-eager", model="tiny", scenario="Offline", command=[], sets=[])
    assert report["same_inputs"] is False
    assert "did not see the same inputs" in markdown(report)


def test_the_median_round_is_reported(tmp_path: Path) -> None:
    from harness.commands.compare import _median_round

    def run(name: str, sps: float, code: int = 0) -> tuple[Path, int, str | None]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"samples_per_second": sps}))
        return tmp_path / name, code, None if code == 0 else "boom"

    rounds = [run("a", 3.0), run("b", 1.0), run("c", 2.0)]
    assert _median_round(rounds)[0].name == "c"
    assert _median_round(rounds[:2])[0].name == "b"  # of two, the slower: never flatter a backend
    failed = run("d", 9.0, code=1)
    assert _median_round([*rounds, failed]) == failed


def _compare(*args: str, cache: Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, HARNESS_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "harness", "compare", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backends", "diffusers-eager,nope"], "unknown backend 'nope'"),
        (["--backends", "fake,fake"], "needs at least two different backends"),
        (["--backends", "fake,onnxruntime"], "--reference 'diffusers-eager' is not in --backends"),
        (["--backend-set", "tensorrt:backend.precision=fp8"], "--backend-set expects NAME:KEY=VALUE"),
        (["--rounds", "0"], "--rounds must be >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(harness_cache: Path, tmp_path: Path, args: list, message: str) -> None:
    proc = _compare(*args, "--output-dir", str(tmp_path), cache=harness_cache, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # four child runs and an ONNX export; compare itself is covered by the fast tests above
def test_compare_eager_and_onnxruntime_end_to_end(harness_cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install -e '.[onnx]'")
    proc = _compare(
        "--backends",
        "diffusers-eager,onnxruntime",
        "--parity-samples",
        "3",
        "--output-dir",
        str(tmp_path / "out"),
        "--set",
        "sut.batch_size=3",
        "--set",
        "loadgen.min_duration_ms=500",
        "--set",
        "loadgen.min_query_count=6",
        "--backend-set",
        "onnxruntime:backend.graph_optimization_level=extended",
        cache=harness_cache,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out,) = (tmp_path / "out").iterdir()
    assert out.name.endswith("-compare-tiny-Offline")
    report = json.loads((out / "compare.json").read_text())
    eager, ort = report["results"]
    assert (eager["backend"], ort["backend"]) == ("diffusers-eager", "onnxruntime")
    assert eager["speedup"] == 1.0 and ort["speedup"] > 0 and ort["samples_per_second"] > 0
    assert report["same_inputs"] is True
    assert ort["options"]["graph_optimization_level"] == "extended"  # the per-backend override
    assert eager["options"].get("graph_optimization_level") is None
    assert set(ort["setup_s"]) == {"onnx_export", "session_create"} and eager["setup_s"] == {}
    assert ort["peak_memory"]["cpu_rss_mib"] > 0
    # The images agree within the parity suite's tolerance (tests/test_backend_contract.py).
    assert ort["parity"]["samples"] == 3 and ort["parity"]["max_abs_diff"] <= 2
    assert (out / "compare.png").stat().st_size > 1000
    text = (out / "compare.md").read_text()
    assert "`onnxruntime`" in text and "reference" in text
    assert text.strip() in proc.stdout
    # where each backend's time went, side by side (both backends time their stages)
    assert "| stage | `diffusers-eager` | `onnxruntime` |" in text
    for stage in ("text_encode", "denoise", "vae_decode", "to_uint8", "one denoising step"):
        assert f"| {stage} | " in text
    assert ort["timing"]["steps"]["count"] == eager["timing"]["steps"]["count"] > 0
    # the compare's report: the same results and the stage times per backend, exported
    report_md = (out / "report.md").read_text()
    assert "Backends side by side" in report_md and "Where each backend's time went" in report_md
    with (out / "tables" / "compare_stages.csv").open() as f:
        stages = {(r["backend"], r["stage"]) for r in csv.DictReader(f)}
    assert ("onnxruntime", "denoising_step") in stages and ("diffusers-eager", "vae_decode") in stages
    assert len([p for p in (out / "runs").iterdir() if p.is_dir()]) == 4 and len(list((out / "logs").iterdir())) == 4
