"""Inputs for the report tests: real run directories from the fake backend (a few seconds each) and
sweep / scale / compare directories written to their contracts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

QUICK = [
    "--set",
    "loadgen.min_duration_ms=1000",
    "--set",
    "loadgen.min_query_count=8",
    "--set",
    "loadgen.offline_expected_qps=4",
]

PACK = """\
name = "report-test"

[[prompts]]
category = "animals"
text = "a red fox in snow"

[[prompts]]
category = "animals"
text = "an owl on a branch"

[[prompts]]
category = "food"
text = "a bowl of ramen"

[[prompts]]
category = "food"
text = "a slice of lemon cake"

[[prompts]]
category = "city"
text = "a tram at night"

[[prompts]]
category = "city"
text = "a rooftop garden"
"""
PACK_CATEGORIES = ["animals", "animals", "food", "food", "city", "city"]


def run_harness(out: Path, cache: Path, *args: str, expect: int = 0) -> Path:
    """`python -m harness --backend fake ARGS` into out/; the run directory it made."""
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.iterdir())
    env = dict(os.environ, HARNESS_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "harness", "--backend", "fake", "--scenario", "Offline", "--no-progress"]
    proc = subprocess.run(
        [*cmd, "--output-dir", str(out), *args], capture_output=True, text=True, env=env, timeout=120, cwd=out
    )
    assert proc.returncode == expect, proc.stderr[-3000:]
    (run_dir,) = {p for p in set(out.iterdir()) - before if p.is_dir()}  # out/ also holds history.sqlite
    return run_dir


def make_runs(base: Path, cache: Path) -> dict[str, Path]:
    """accuracy (6 images, 3 categories), two performance runs at different speeds, and a failed run."""
    pack = base / "pack.toml"
    pack.write_text(PACK)
    runs = base / "runs"
    return {
        "accuracy": run_harness(
            runs,
            cache,
            "--mode=accuracy",
            *("--set", f"dataset.path={pack}", "--set", "accuracy.score=false", "--set", "accuracy.sample_images=6"),
            *QUICK,
        ),
        # LoadGen's trace (per-sample latencies) is off by default; the slow run shows the percentile fallback.
        "fast": run_harness(
            runs, cache, "--set", "backend.latency_ms=2", "--set", "profile.loadgen_trace=true", *QUICK
        ),
        "slow": run_harness(runs, cache, "--set", "backend.latency_ms=200", *QUICK),  # far slower than any load noise
        "failed": run_harness(
            runs,
            cache,
            *("--set", "backend.fail_at_call=2", "--set", "backend.latency_ms=5", "--set", "sut.batch_size=2"),
            *("--set", "loadgen.min_duration_ms=60000", "--set", "loadgen.min_query_count=1000"),
            *("--set", "sut.drain_timeout_s=2"),
            expect=1,
        ),
    }


def scored_copy(accuracy_run: Path, dest: Path) -> Path:
    """The accuracy run as if it had been scored, with the figures other steps add to summary.json:
    accuracy.json by category, LPIPS diversity, cost, energy and time to first image."""
    shutil.copytree(accuracy_run, dest)
    accuracy = {
        "CLIP_SCORE": 31.5,
        "FID_SCORE": 23.4,
        "count": 6,
        "verdict": "PASS",
        "standin": True,
        "by_category": {
            "animals": {"clip_score": 32.25, "count": 2},
            "food": {"clip_score": 30.75, "count": 2},
            "city": {"clip_score": 31.5, "count": 2},
        },
    }
    (dest / "accuracy.json").write_text(json.dumps(accuracy))
    summary = json.loads((dest / "summary.json").read_text())
    summary["accuracy"] = {k: v for k, v in accuracy.items() if k != "by_category"}
    summary["quality"] = {
        "lpips_diversity": {
            "mean": 0.4125,
            "seeds": 3,
            "by_category": {"animals": 0.5, "food": 0.325},
            "per_prompt": [
                # the run's own sample PNGs stand in for the seeds' images (images/diversity/ in a real run)
                {"prompt": "a red fox in snow", "category": "animals", "mean": 0.5, "pairs": 3}
                | {"images": [f"images/sample_0000{i}.png" for i in (0, 1, 2)]},
                {"prompt": "a bowl of ramen", "category": "food", "mean": 0.325, "pairs": 3}
                | {"images": [f"images/sample_0000{i}.png" for i in (3, 4, 5)]},
            ],
        }
    }
    summary["cost"] = {"gpu_hour_usd": 2.5, "usd_per_image": 0.0125, "usd_per_1000_images": 12.5}
    summary["energy"] = {"joules_per_image": 123.0, "source": "nvml"}
    summary["time_to_first_image_s"] = 1.75
    (dest / "summary.json").write_text(json.dumps(summary))
    return dest


def _sweep_row(res: int, steps: int, batch: int, ips: float | None, clip: float | None, **kw: Any) -> dict[str, Any]:
    return {
        "resolution": res,
        "steps": steps,
        "batch_size": batch,
        "scenario": "Offline",
        "seconds_per_image": round(1 / ips, 6) if ips else None,
        "images_per_second": ips,
        "latency_p50_ms": 100.0 * batch if ips else None,
        "latency_p95_ms": 110.0 * batch if ips else None,
        "latency_p99_ms": 120.0 * batch if ips else None,
        "peak_memory_mib": 1000.0 + res * batch if ips else None,
        "clip_score": clip,
        "status": kw.get("status", "ok"),
        "error": kw.get("error"),
        "run_dir": f"runs/{res}-{steps}-{batch}",
    }


def make_sweep(dest: Path, quality_run: Path | None = None, latency_run: Path | None = None) -> Path:
    """sweep.json to its contract; `quality_run` stands for the quality run of (64, 4) (contact sheet,
    LPIPS) and `latency_run` for a SingleStream point (latency distribution)."""
    rows = [
        _sweep_row(64, 4, 1, 8.0, 30.5),
        _sweep_row(64, 8, 1, 4.5, 31.25),
        _sweep_row(128, 4, 1, 2.5, 30.75),
        _sweep_row(128, 8, 1, 1.25, 31.75),
        _sweep_row(128, 8, 4, None, None, status="failed", error="CUDA out of memory at batch 4"),
    ]
    ramp = [
        {"resolution": 64, "steps": 4, "batch_size": b, "images_per_second": ips, "peak_memory_mib": 900.0 + b}
        | {"status": "ok", "error": None, "best": b == 4}
        for b, ips in ((1, 8.0), (2, 12.0), (4, 14.5), (8, 14.0))
    ]
    by_category = [
        {"resolution": 64, "steps": s, "category": c, "clip_score": 30.0 + s / 4 + i, "count": 2}
        for s in (4, 8)
        for i, c in enumerate(("animals", "food"))
    ]
    quality = [
        {"resolution": 64, "steps": 4, "clip_score": 30.5, "fid_score": 40.0, "lpips_diversity": 0.4125}
        | {"accepted_share": 0.75, "status": "ok", "error": None, "run_dir": str(quality_run or "")},
    ]
    if latency_run is not None:
        rows.append(_sweep_row(64, 4, 1, 9.0, 30.5) | {"scenario": "SingleStream", "run_dir": str(latency_run)})
    dest.mkdir(parents=True)
    (dest / "runs").mkdir()
    doc = {"rows": rows, "ramp": ramp, "by_category": by_category, "quality": quality}
    (dest / "sweep.json").write_text(json.dumps(doc))
    return dest


def make_scale(dest: Path, run_dirs: list[Path]) -> Path:
    rows = [
        {
            "scenario": "Offline",
            "workers": n,
            "samples_per_second": sps,
            "speedup": speedup,
            "efficiency": eff,
            "latency_p50_ms": 50.0 / n,
            "latency_p99_ms": 60.0 / n,
            "result_valid": valid,
            "status": "ok",
            "run_dir": str(d),
        }
        for n, sps, speedup, eff, valid, d in zip(
            (1, 2), (10.0, 18.0), (1.0, 1.8), (1.0, 0.9), (True, False), run_dirs, strict=True
        )
    ]
    dest.mkdir(parents=True)
    (dest / "scale.json").write_text(json.dumps({"model": "tiny", "backend": "fake", "rows": rows, "cpu_count": 2}))
    return dest


def make_compare(dest: Path, fast: Path, slow: Path) -> Path:
    """compare.json as `python -m harness compare` writes it, from two real runs."""
    from harness.studies.compare import build_report, make_row

    rows = [make_row("fake", fast, 0, None, None), make_row("slow-fake", slow, 0, None, None)]
    report = build_report(rows, reference="fake", model="tiny", scenario="Offline", command=[], sets=[])
    dest.mkdir(parents=True)
    (dest / "compare.json").write_text(json.dumps(report))
    return dest
